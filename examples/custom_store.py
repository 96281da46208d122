"""Writing your own token store: the nine methods of ``TokenStore`` over a dict and a lock.

``DictStore`` below is what an afternoon's store looks like: three dicts (tokens by hash, the
hashes of each group, the revocation list) behind one ``threading.Lock``. Any object with
these methods works as the ``store=`` of an ``Issuer``; the rules a store follows are in the
docstring of ``oauth2_token_manager/_stores/_base.py`` (keys are token hashes, never values;
lookups skip expired and revoked tokens; newest first). The demo then uses it with an
``AccessTokenManager``: a token is cached in it, revoked (its hash goes on the list), replaced.

Environment: ``OAUTH2_ISSUER``, ``OAUTH2_CLIENT_ID``, ``OAUTH2_CLIENT_SECRET``. Run it against the
local test server with
``.venv/bin/python scripts/run_with_authserver.py .venv/bin/python examples/custom_store.py``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from oauth2_token_manager import (
    AccessTokenManager,
    ClientConfig,
    GroupKey,
    Issuer,
    Page,
    Token,
    TokenQuery,
    TokenRevokedError,
    TokenStore,
)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _newest_first(tokens: Iterable[Token]) -> list[Token]:
    return sorted(tokens, key=lambda t: (t.updated_at, t.issued_at), reverse=True)


class DictStore:
    """A ``TokenStore`` in plain dicts, for one process. Thread-safe with one lock."""

    def __init__(self, retain_expired: float = 0.0, clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}  # token_hash -> token
        self._groups: dict[GroupKey, set[str]] = {}  # group -> token hashes (find reads one)
        self._revoked: dict[str, float] = {}  # token_hash -> revoked until (epoch seconds)
        self._retain = retain_expired  # keep expired tokens this many seconds longer
        self._clock = clock

    def _alive(self, token: Token, now: float) -> bool:
        return token.expires_at is None or token.expires_at + self._retain > now

    def _add(self, token: Token) -> None:  # with the lock held
        now = self._clock()
        if self._revoked.get(token.token_hash, now) > now:
            raise TokenRevokedError(f"token {token.short_hash} is revoked")
        self._remove(token.token_hash)  # same hash: replaced (maybe in another group)
        if self._alive(token, now):
            self._tokens[token.token_hash] = token
            self._groups.setdefault(token.group, set()).add(token.token_hash)

    def _remove(self, token_hash: str) -> Token | None:  # with the lock held
        token = self._tokens.pop(token_hash, None)
        if token is not None:
            hashes = self._groups[token.group]
            hashes.discard(token_hash)
            if not hashes:
                del self._groups[token.group]
        return token

    # -- the nine methods of the TokenStore protocol ------------------------------------

    def put(self, token: Token) -> None:
        with self._lock:
            self._add(token)

    def get(self, token_hash: str) -> Token | None:
        with self._lock:
            token = self._tokens.get(token_hash)
        return token if token is not None and self._alive(token, self._clock()) else None

    def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        with self._lock:
            tokens = [self._tokens[h] for h in self._groups.get(group, ())]
        now = self._clock()
        return _newest_first(
            t
            for t in tokens
            if self._alive(t, now) and (scope_key is None or t.scope_key == scope_key)
        )

    def replace(self, old_hash: str, new: Token) -> None:
        with self._lock:
            self._add(new)  # raises (keeping the old token) if the new one is revoked
            if old_hash != new.token_hash:
                self._remove(old_hash)

    def delete(self, token_hash: str) -> Token | None:
        with self._lock:
            token = self._remove(token_hash)
        return token if token is not None and self._alive(token, self._clock()) else None

    def revoke(self, token_hash: str, until: float) -> None:
        if not _SHA256_HEX.fullmatch(token_hash):  # a token value must never become a key
            raise ValueError("revoke() takes a token_hash (SHA-256 hex), not a token value")
        with self._lock:
            self._remove(token_hash)
            if until > self._clock():
                self._revoked[token_hash] = max(until, self._revoked.get(token_hash, until))

    def is_revoked(self, token_hash: str) -> bool:
        with self._lock:
            return self._revoked.get(token_hash, 0.0) > self._clock()

    def list(self, query: TokenQuery) -> Page:
        now = self._clock()
        with self._lock:
            found = [t for t in self._tokens.values() if self._alive(t, now) and query.matches(t)]
        found.sort(key=lambda t: (t.updated_at, t.issued_at, t.token_hash), reverse=True)
        start = max(query.offset, 0)
        stop = None if query.limit is None else start + max(query.limit, 0)
        return Page(found[start:stop], len(found), query.offset, query.limit)

    def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        # ``query`` (a manager's issuer, client and kind) limits the sweep to its tokens.
        with self._lock:
            expired = [
                h
                for h, t in self._tokens.items()
                if t.expired(now) and (query is None or query.matches_group(t.group))
            ]
            for token_hash in expired:
                self._remove(token_hash)
            current = self._clock()
            for token_hash in [h for h, until in self._revoked.items() if until <= current]:
                del self._revoked[token_hash]
        return len(expired)

    def __len__(self) -> int:
        return len(self._tokens)


def main() -> int:
    issuer_url = os.environ["OAUTH2_ISSUER"]
    loopback = urlsplit(issuer_url).hostname in ("127.0.0.1", "localhost", "::1")
    client = ClientConfig(
        client_id=os.environ["OAUTH2_CLIENT_ID"],
        client_secret=os.environ["OAUTH2_CLIENT_SECRET"],
        auth_method="client_secret_basic",
    )
    store = DictStore()
    print(f"1. DictStore is a TokenStore: {isinstance(store, TokenStore)}")

    with Issuer(issuer_url, client, store=store, allow_insecure_loopback=loopback) as issuer:
        access = AccessTokenManager(issuer)
        token = access.get(scopes=["api:read"])
        print(f"2. got {token!r}")
        print(f"   tokens in the DictStore: {len(store)}")

        again = access.get(scopes=["api:read"])
        cached = again.token_hash == token.token_hash
        print(f"3. second get served from the DictStore: {cached}")

        access.revoke(token)
        revoked = store.is_revoked(token.token_hash)
        print(f"4. revoked: on the DictStore's revocation list: {revoked}, tokens: {len(store)}")

        fresh = access.get(scopes=["api:read"])
        print(f"5. the next get obtains a new token: {fresh.token_hash != token.token_hash}")
        print(f"   stored access tokens: {[t.short_hash for t in access.list().items]}")

    return 0 if cached and revoked and fresh.token_hash != token.token_hash else 1


if __name__ == "__main__":
    sys.exit(main())
