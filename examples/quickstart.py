"""Quickstart: a client-credentials token, cached on disk, introspected, revoked and deleted.

Run it through ``scripts/demo`` (which starts a local test authorization server), or point it
at your own server with the environment variables ``OAUTH2_ISSUER``, ``OAUTH2_CLIENT_ID`` and
``OAUTH2_CLIENT_SECRET``. Tokens are kept in a ``DiskStore`` in your cache directory, so a
second run of the first step (``--only-get``) is served from disk without a token request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

import httpx

from oauth2_token_manager import AccessTokenManager, ClientConfig, DiskStore, Issuer

SCOPES = ["api:read"]


def token_requests_counter() -> tuple[httpx.Client, list[str]]:
    """An httpx client that records every request to a token endpoint (to show the cache)."""
    seen: list[str] = []

    def record(request: httpx.Request) -> None:
        if urlsplit(str(request.url)).path.endswith("/token"):
            seen.append(str(request.url))

    return httpx.Client(timeout=10, event_hooks={"request": [record]}), seen


def main() -> int:
    issuer_url = os.environ["OAUTH2_ISSUER"]
    loopback = urlsplit(issuer_url).hostname in ("127.0.0.1", "localhost", "::1")
    client = ClientConfig(
        client_id=os.environ["OAUTH2_CLIENT_ID"],
        client_secret=os.environ["OAUTH2_CLIENT_SECRET"],
        auth_method="client_secret_basic",
    )
    http, token_requests = token_requests_counter()
    store = DiskStore.default()
    issuer = Issuer(issuer_url, client, store=store, http=http, allow_insecure_loopback=loopback)
    access = AccessTokenManager(issuer)

    token = access.get(scopes=SCOPES)
    if "--only-get" in sys.argv:
        print(f"  new process: {token!r}, token requests: {len(token_requests)}")
        return 0 if not token_requests else 1
    print(f"got {token!r} (token requests: {len(token_requests)})")

    print(f"disk store: {store.directory}")
    again = access.get(scopes=SCOPES)
    print(
        f"second get, same token: {again.token_hash == token.token_hash}, "
        f"token requests so far: {len(token_requests)}"
    )

    rerun = subprocess.run([sys.executable, __file__, "--only-get"], check=False)
    print(f"a new process got it from disk without a token request: {rerun.returncode == 0}")

    info = access.introspect(token)
    print(f"introspection: active={info.active}, scope={sorted(info.scopes or ())}, exp={info.exp}")

    access.revoke(token)
    after = access.issuer.introspect_value(token.value, "access_token")
    print(
        f"revoked: the server now says active={after.active}; "
        f"on the local revocation list: {store.is_revoked(token.token_hash)}"
    )

    fresh = access.get(scopes=SCOPES)
    print(f"the next get obtains a new token: {fresh!r} (token requests: {len(token_requests)})")
    removed = access.delete(fresh)
    print(
        f"deleted (revoked at the server first): {removed}; "
        f"stored access tokens left: {access.list().total}"
    )
    http.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
