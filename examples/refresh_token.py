"""A user's refresh token obtained elsewhere: registered, then used for narrowed access tokens.

The refresh token (from your login flow, here the environment) is registered with a
``RefreshTokenManager`` for its subject; its scopes and expiry come from introspection.
``access.get(subject, ["api:read"])`` then refreshes it, asking for just ``api:read`` (a
narrowed token). When the server rotates refresh tokens, the stored refresh token is replaced:
its hash changes. The next ``get`` is served from the store. Tokens are shown by hash only.

Environment: ``OAUTH2_ISSUER``, ``OAUTH2_CLIENT_ID``, ``OAUTH2_CLIENT_SECRET``,
``OAUTH2_REFRESH_TOKEN`` (issued to that client with ``api:read`` among its scopes) and
``OAUTH2_SUBJECT`` (the user it belongs to, default ``alice``). ``tests/test_examples.py`` runs
it with a refresh token obtained from the local test server by an authorization-code flow.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import httpx

from oauth2_token_manager import (
    AccessTokenManager,
    ClientConfig,
    Issuer,
    MemoryStore,
    RefreshTokenManager,
)

SCOPES = ["api:read"]


def main() -> int:
    issuer_url = os.environ["OAUTH2_ISSUER"]
    loopback = urlsplit(issuer_url).hostname in ("127.0.0.1", "localhost", "::1")
    client = ClientConfig(
        client_id=os.environ["OAUTH2_CLIENT_ID"],
        client_secret=os.environ["OAUTH2_CLIENT_SECRET"],
        auth_method="client_secret_basic",
    )
    subject = os.environ.get("OAUTH2_SUBJECT", "alice")

    token_requests: list[str] = []

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/token"):
            token_requests.append(request.url.path)

    with httpx.Client(timeout=10, event_hooks={"request": [record]}) as http:
        issuer = Issuer(
            issuer_url, client, store=MemoryStore(), http=http, allow_insecure_loopback=loopback
        )
        refresh = RefreshTokenManager(issuer)
        access = AccessTokenManager(issuer)

        registered = refresh.register(os.environ["OAUTH2_REFRESH_TOKEN"], subject=subject)
        granted = " ".join(sorted(registered.scopes or ()))
        print(f"1. registered the refresh token of {subject!r}: {registered!r}")
        print(f"   scopes (from introspection): {granted!r}")

        token = access.get(subject, SCOPES)
        narrowed = " ".join(sorted(token.scopes or ()))
        print(f"2. access.get({subject!r}, {SCOPES}): {token!r}")
        print(f"   refreshed with scope={SCOPES}: the access token has {narrowed!r} only")
        print(f"   token requests so far: {len(token_requests)}")

        current = refresh.get(subject)
        rotated = current.token_hash != registered.token_hash
        print(f"3. stored refresh token: {registered.short_hash} -> {current.short_hash}")
        print(f"   rotated by the server and replaced in the store: {rotated}")
        print(f"   refresh tokens stored for {subject!r}: {refresh.list(subject=subject).total}")

        again = access.get(subject, SCOPES)
        same = again.token_hash == token.token_hash
        print(f"4. get again: same access token from the store: {same}")
        print(f"   token requests so far: {len(token_requests)}")

    ok = narrowed == " ".join(SCOPES) and same
    return 0 if ok and len(token_requests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
