"""Client credentials: one AccessTokenManager over a MemoryStore, two scope sets, the cache.

Each scope set gets its own token (one token request each); asking again for either is
served from the store without a request. Tokens are printed with ``repr``, which shows a hash
of the token, never its value.

Environment: ``OAUTH2_ISSUER``, ``OAUTH2_CLIENT_ID``, ``OAUTH2_CLIENT_SECRET`` (a
client_secret_basic client allowed the ``api:read`` and ``api:write`` scopes). Run it against
the local test server with
``.venv/bin/python scripts/run_with_authserver.py .venv/bin/python examples/client_credentials.py``.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlsplit

import httpx

from oauth2_token_manager import AccessTokenManager, ClientConfig, Issuer, MemoryStore

READ = ["api:read"]
READ_WRITE = ["api:read", "api:write"]


def main() -> int:
    issuer_url = os.environ["OAUTH2_ISSUER"]
    loopback = urlsplit(issuer_url).hostname in ("127.0.0.1", "localhost", "::1")
    client = ClientConfig(
        client_id=os.environ["OAUTH2_CLIENT_ID"],
        client_secret=os.environ["OAUTH2_CLIENT_SECRET"],
        auth_method="client_secret_basic",
    )

    # Count the requests to the token endpoint, to show what the cache saves.
    token_requests: list[str] = []

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/token"):
            token_requests.append(request.url.path)

    with httpx.Client(timeout=10, event_hooks={"request": [record]}) as http:
        issuer = Issuer(
            issuer_url,
            client,
            store=MemoryStore(),
            http=http,
            allow_insecure_loopback=loopback,
        )
        access = AccessTokenManager(issuer)

        read = access.get(scopes=READ)
        print(f"1. get(scopes={READ}): {read!r}")
        print(f"   token requests so far: {len(token_requests)}")

        read_write = access.get(scopes=READ_WRITE)
        print(f"2. get(scopes={READ_WRITE}): {read_write!r}")
        print(f"   a different token: {read_write.token_hash != read.token_hash}")
        print(f"   token requests so far: {len(token_requests)}")

        again_read = access.get(scopes=READ)
        again_read_write = access.get(scopes=READ_WRITE)
        cached = (
            again_read.token_hash == read.token_hash
            and again_read_write.token_hash == read_write.token_hash
        )
        print(f"3. both scope sets again: the same two tokens from the store: {cached}")
        print(f"   token requests so far: {len(token_requests)}")

        page = access.list()
        print(f"4. stored access tokens: {page.total}")
        for token in page.items:
            scopes = " ".join(sorted(token.scopes or ()))
            left = round((token.expires_at or 0) - time.time())
            print(f"   hash {token.short_hash}  scopes {scopes!r}  expires in {left} s")

    return 0 if cached and len(token_requests) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
