"""The store protocol: the pluggable local cache of tokens.

A store keeps ``Token`` values (access and refresh tokens) and answers lookups by group and
canonical scope string (see ``_models.GroupKey``), by token hash, and paged listings. The rules
every store follows (the contract test suite ``tests/store_contract.py`` checks each one):

- Keys never contain a raw token value: tokens are identified by ``token_hash``.
- ``find(group, scope_key)`` reads only that group (never scans other tokens) and returns the
  newest first; ``scope_key=None`` returns every token of the group.
- ``put`` of a token whose hash is already stored replaces it (moving it if its scopes changed).
- ``replace(old_hash, new)`` is rotation: the new token is written before the old one is
  removed, atomically where the backend allows it; after it, ``old_hash`` is not found.
- ``revoke(hash, until)`` removes the token and keeps its hash on a revocation list until
  ``until`` (epoch seconds); ``put`` of a revoked token raises ``TokenRevokedError``. Lookups
  never return a revoked token.
- Entries may disappear once their token expired (plus the store's ``retain_expired``);
  ``expunge_expired(now)`` removes expired entries and returns how many;
  ``expunge_expired(now, query)`` only those in the groups ``query`` matches
  (``TokenQuery.matches_group``: issuer, kind, client, subject), so that a manager sweeps its
  own issuer's and client's tokens and leaves the rest of a shared store alone. A store
  written before ``query`` existed still works: the managers then list and delete instead
  (``_adapters.scoped_expunge``).
- Failures raise ``StoreError`` (never return "not found" for a failure): callers treat a
  failing revocation check as revoked (fail closed).

A store shared by processes (``DiskStore``, ``RedisStore``) also offers a cross-process lock
with a lease, so that one token request is made for a key across processes:
``try_lock(name, owner, lease) -> bool`` (take it if free or its lease ran out),
``renew_lock(name, owner, lease) -> bool`` and ``unlock(name, owner)`` (both only for the
owner that holds it: compare-and-delete). ``LockingTokenStore`` is that protocol.

A store private to one process may also expose ``version``, an int that changes on every
write (``MemoryStore`` does); ``TokenAuth`` then reuses the token it read while the version is
unchanged instead of asking the store on every request. Shared stores must not have it.

A user-written store needs these nine methods; ``AsyncTokenStore`` is the same with coroutines.
Sync stores are usable by the async managers through ``AsyncStoreAdapter`` (``_adapters``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol, runtime_checkable

from .._arguments import option
from .._models import GroupKey, Token, TokenKind

__all__ = [
    "AsyncTokenStore",
    "ExpiringStore",
    "LockingTokenStore",
    "Page",
    "TokenQuery",
    "TokenStatus",
    "TokenStore",
    "alive",
    "newest_first",
    "page_of",
    "report_unreadable",
]

TokenStatus = Literal["valid", "expired", "all"]


@dataclasses.dataclass(frozen=True, slots=True)
class TokenQuery:
    """A listing filter. ``subject=None`` means any subject, ``""`` client credentials only."""

    issuer: str | None = None
    kind: TokenKind | None = None
    client_id: str | None = None
    subject: str | None = None
    status: TokenStatus = "all"
    now: float = 0.0
    offset: int = 0
    limit: int | None = None

    def matches_group(self, group: GroupKey) -> bool:
        """Whether a group can hold matching tokens (every filter but status is a group field)."""
        return (
            (self.issuer is None or group.issuer == self.issuer)
            and (self.kind is None or group.kind == self.kind)
            and (self.client_id is None or group.client_id == self.client_id)
            and (self.subject is None or group.subject == self.subject)
        )

    def matches(self, token: Token) -> bool:
        """Whether ``token`` passes this filter (paging aside)."""
        if self.issuer is not None and token.issuer != self.issuer:
            return False
        if self.kind is not None and token.kind != self.kind:
            return False
        if self.client_id is not None and token.client_id != self.client_id:
            return False
        if self.subject is not None and (token.subject or "") != self.subject:
            return False
        if self.status == "valid":
            return token.active and not token.expired(self.now)
        if self.status == "expired":
            return token.expired(self.now)
        return True


def newest_first(tokens: Iterable[Token]) -> list[Token]:
    """Listing order of every store: ``updated_at`` then ``issued_at``, newest first (stable)."""
    return sorted(tokens, key=lambda t: (t.updated_at, t.issued_at), reverse=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing and the total count of matching tokens."""

    items: Sequence[Token]
    total: int
    offset: int
    limit: int | None


def page_of(matches: Iterable[Token], query: TokenQuery) -> Page:
    """The page of ``matches`` that ``query`` asks for (its offset and limit), in the listing
    order of ``newest_first`` with the token hash last (so that pages never overlap), and the
    total count."""
    ordered = sorted(matches, key=lambda t: (t.updated_at, t.issued_at, t.token_hash), reverse=True)
    start = max(query.offset, 0)
    stop = None if query.limit is None else start + max(query.limit, 0)
    return Page(ordered[start:stop], len(ordered), query.offset, query.limit)


def alive(token: Token, retain_expired: float, now: float) -> bool:
    """Whether ``token`` is before its deadline at ``now``: ``expires_at + retain_expired`` is
    later, or its expiry is unknown. Stores return no token past its deadline."""
    expires_at = token.expires_at
    return expires_at is None or expires_at + retain_expired > now


def report_unreadable(what: str, count: int) -> None:
    """One warning for the unreadable entries an operation skipped or removed."""
    if count:
        logging.getLogger("oauth2_token_manager").warning(
            "%s %d unreadable store entries", what, count
        )


class ExpiringStore:
    """What the shipped stores share about expiry: ``retain_expired`` (checked here) and the
    clock deadlines are judged by (the wall clock, epoch seconds, unless one is injected)."""

    def __init__(self, retain_expired: float, clock: Callable[[], float]) -> None:
        self._retain = option("retain_expired", retain_expired)
        self._clock = clock

    @property
    def retain_expired(self) -> float:
        """Seconds an expired token is still kept (and returned) after ``expires_at``."""
        return self._retain


@runtime_checkable
class TokenStore(Protocol):
    """A synchronous token store."""

    def put(self, token: Token) -> None:
        """Store ``token`` (replacing a stored token of the same hash)."""

    def get(self, token_hash: str) -> Token | None:
        """The stored token with this hash, or ``None``."""

    def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        """Tokens of ``group`` with this canonical scope string (all when ``None``)."""

    def replace(self, old_hash: str, new: Token) -> None:
        """Rotation: store ``new``, then remove ``old_hash``."""

    def delete(self, token_hash: str) -> Token | None:
        """Remove and return the token with this hash (``None`` if absent)."""

    def revoke(self, token_hash: str, until: float) -> None:
        """Remove the token and keep its hash on the revocation list until ``until``."""

    def is_revoked(self, token_hash: str) -> bool:
        """Whether the hash is on the revocation list."""

    def list(self, query: TokenQuery) -> Page:
        """Tokens matching ``query``, newest first, paged, with the total count."""

    def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        """Remove tokens expired at ``now`` (only in the groups ``query`` matches, when given);
        return how many were removed."""


class LockingTokenStore(TokenStore, Protocol):
    """A ``TokenStore`` shared by processes, with a cross-process lock."""

    def try_lock(self, name: str, owner: str, lease: float) -> bool:
        """Take lock ``name`` for ``lease`` seconds if it is free or its lease ran out."""

    def renew_lock(self, name: str, owner: str, lease: float) -> bool:
        """Extend the lease if ``owner`` still holds the lock."""

    def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it."""


@runtime_checkable
class AsyncTokenStore(Protocol):
    """An asynchronous token store: ``TokenStore`` with coroutine methods."""

    async def put(self, token: Token) -> None:
        """See ``TokenStore.put``."""

    async def get(self, token_hash: str) -> Token | None:
        """See ``TokenStore.get``."""

    async def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        """See ``TokenStore.find``."""

    async def replace(self, old_hash: str, new: Token) -> None:
        """See ``TokenStore.replace``."""

    async def delete(self, token_hash: str) -> Token | None:
        """See ``TokenStore.delete``."""

    async def revoke(self, token_hash: str, until: float) -> None:
        """See ``TokenStore.revoke``."""

    async def is_revoked(self, token_hash: str) -> bool:
        """See ``TokenStore.is_revoked``."""

    async def list(self, query: TokenQuery) -> Page:
        """See ``TokenStore.list``."""

    async def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        """See ``TokenStore.expunge_expired``."""
