"""Calling an API with httpx: ``auth=access.auth(...)`` puts a managed Bearer token on requests.

``access.auth(scopes=["api:read"], allowed_origins=[...])`` is an ``httpx.Auth``: every request
of the client gets ``Authorization: Bearer <token>`` from the manager (cached, refreshed or
obtained as needed), but only when it goes to an allowed origin. A 401 ``invalid_token`` from
the API makes it fetch a new token and send the request once more. Two calls, one token request.

Environment: ``OAUTH2_ISSUER``, ``OAUTH2_CLIENT_ID``, ``OAUTH2_CLIENT_SECRET`` and ``API_URL``,
the base URL of an API that accepts this server's tokens with scope ``api:read`` at ``/read``.
``.venv/bin/python scripts/run_with_authserver.py .venv/bin/python tests/_resource_server.py
.venv/bin/python examples/httpx_sync.py`` runs it against the local test servers.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import httpx

from oauth2_token_manager import AccessTokenManager, ClientConfig, Issuer


def main() -> int:
    issuer_url = os.environ["OAUTH2_ISSUER"]
    loopback = urlsplit(issuer_url).hostname in ("127.0.0.1", "localhost", "::1")
    client = ClientConfig(
        client_id=os.environ["OAUTH2_CLIENT_ID"],
        client_secret=os.environ["OAUTH2_CLIENT_SECRET"],
        auth_method="client_secret_basic",
    )
    api_url = os.environ["API_URL"].rstrip("/")
    parts = urlsplit(api_url)
    api_origin = f"{parts.scheme}://{parts.netloc}"

    token_requests: list[str] = []

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/token"):
            token_requests.append(request.url.path)

    # One client talks to the authorization server, the other to the API.
    with httpx.Client(timeout=10, event_hooks={"request": [record]}) as oauth_http:
        issuer = Issuer(issuer_url, client, http=oauth_http, allow_insecure_loopback=loopback)
        access = AccessTokenManager(issuer)
        auth = access.auth(scopes=["api:read"], allowed_origins=[api_origin])
        print(f"1. {auth!r}")

        statuses = []
        with httpx.Client(auth=auth, timeout=10) as api:
            for n in (1, 2):
                resp = api.get(f"{api_url}/read")
                statuses.append(resp.status_code)
                print(f"{n + 1}. GET {api_url}/read -> {resp.status_code} {resp.json()}")
                print(f"   token requests so far: {len(token_requests)}")

        stored = access.list()
        print(f"4. stored access tokens: {[t.short_hash for t in stored.items]}")

    return 0 if statuses == [200, 200] and len(token_requests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
