"""The async twin of ``httpx_sync.py``: concurrent API calls sharing one managed token.

``AsyncAccessTokenManager.auth(...)`` is an ``httpx.Auth`` for ``httpx.AsyncClient``. Five
requests started together with ``asyncio.gather`` all find no token yet; the manager's
single-flight lock lets one of them fetch it while the others wait, so the authorization server
sees one token request.

Environment: ``OAUTH2_ISSUER``, ``OAUTH2_CLIENT_ID``, ``OAUTH2_CLIENT_SECRET`` and ``API_URL``,
the base URL of an API that accepts this server's tokens with scope ``api:read`` at ``/read``.
``.venv/bin/python scripts/run_with_authserver.py .venv/bin/python tests/_resource_server.py
.venv/bin/python examples/httpx_async.py`` runs it against the local test servers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from urllib.parse import urlsplit

import httpx

from oauth2_token_manager import AsyncAccessTokenManager, AsyncIssuer, ClientConfig

CONCURRENT = 5


async def main() -> int:
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

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/token"):
            token_requests.append(request.url.path)

    async with httpx.AsyncClient(timeout=10, event_hooks={"request": [record]}) as oauth_http:
        issuer = AsyncIssuer(issuer_url, client, http=oauth_http, allow_insecure_loopback=loopback)
        access = AsyncAccessTokenManager(issuer)
        auth = access.auth(scopes=["api:read"], allowed_origins=[api_origin])
        print(f"1. {auth!r}")

        async with httpx.AsyncClient(auth=auth, timeout=10) as api:
            print(f"2. {CONCURRENT} concurrent GET {api_url}/read with asyncio.gather")
            responses = await asyncio.gather(
                *(api.get(f"{api_url}/read") for _ in range(CONCURRENT))
            )
            for n, resp in enumerate(responses, 1):
                print(f"   #{n}: {resp.status_code} {resp.json()}")
        statuses = [r.status_code for r in responses]
        print(f"3. token requests for all {CONCURRENT}: {len(token_requests)}")

        stored = await access.list()
        print(f"4. stored access tokens: {[t.short_hash for t in stored.items]}")

    return 0 if statuses == [200] * CONCURRENT and len(token_requests) == 1 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
