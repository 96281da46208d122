"""The stores the managers use: ``AsyncStoreAdapter`` and the default ``MemoryStore``.

The async managers take an ``AsyncTokenStore`` or a sync ``TokenStore``: ``async_store`` wraps a
sync one in ``AsyncStoreAdapter`` (``AsyncLockingStoreAdapter`` when it has the cross-process
lock), whose calls run inline. Both ``async_store`` and ``sync_store`` give a ``MemoryStore`` on
the issuer's clock when no store is given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import cast

from .._models import GroupKey, Token
from ._base import AsyncTokenStore, LockingTokenStore, Page, TokenQuery, TokenStore
from ._memory import MemoryStore

__all__ = [
    "AsyncLockingStoreAdapter",
    "AsyncStoreAdapter",
    "async_store",
    "scoped_expunge",
    "sync_store",
]


class AsyncStoreAdapter:
    """Use a fast synchronous store (memory, disk) from the async managers.

    The calls run inline: ``MemoryStore`` answers in about a microsecond and ``DiskStore`` in
    tens of microseconds, less than handing work to a thread would cost.
    """

    __slots__ = ("sync",)

    def __init__(self, store: TokenStore) -> None:
        self.sync = store

    def __repr__(self) -> str:
        return f"AsyncStoreAdapter({self.sync!r})"

    @property
    def version(self) -> int | None:
        """The wrapped store's ``version``, if it has one."""
        return getattr(self.sync, "version", None)

    async def put(self, token: Token) -> None:
        """See ``TokenStore.put``."""
        self.sync.put(token)

    async def get(self, token_hash: str) -> Token | None:
        """See ``TokenStore.get``."""
        return self.sync.get(token_hash)

    async def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        """See ``TokenStore.find``."""
        return self.sync.find(group, scope_key)

    async def replace(self, old_hash: str, new: Token) -> None:
        """See ``TokenStore.replace``."""
        self.sync.replace(old_hash, new)

    async def delete(self, token_hash: str) -> Token | None:
        """See ``TokenStore.delete``."""
        return self.sync.delete(token_hash)

    async def revoke(self, token_hash: str, until: float) -> None:
        """See ``TokenStore.revoke``."""
        self.sync.revoke(token_hash, until)

    async def is_revoked(self, token_hash: str) -> bool:
        """See ``TokenStore.is_revoked``."""
        return self.sync.is_revoked(token_hash)

    async def list(self, query: TokenQuery) -> Page:
        """See ``TokenStore.list``."""
        return self.sync.list(query)

    async def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        """See ``TokenStore.expunge_expired`` (``query`` is passed on only when given)."""
        if query is None:
            return self.sync.expunge_expired(now)
        return self.sync.expunge_expired(now, query)


class AsyncLockingStoreAdapter(AsyncStoreAdapter):
    """``AsyncStoreAdapter`` for a sync store with a cross-process lock."""

    __slots__ = ()
    sync: LockingTokenStore

    async def try_lock(self, name: str, owner: str, lease: float) -> bool:
        """See ``LockingTokenStore.try_lock``."""
        return self.sync.try_lock(name, owner, lease)

    async def renew_lock(self, name: str, owner: str, lease: float) -> bool:
        """See ``LockingTokenStore.renew_lock``."""
        return self.sync.renew_lock(name, owner, lease)

    async def unlock(self, name: str, owner: str) -> None:
        """See ``LockingTokenStore.unlock``."""
        self.sync.unlock(name, owner)


def async_store(
    store: AsyncTokenStore | TokenStore | None, clock: Callable[[], float]
) -> AsyncTokenStore:
    """The store the async managers use: a ``MemoryStore`` on the issuer's clock when none is
    given, a sync store wrapped in ``AsyncStoreAdapter``."""
    if store is None:
        return AsyncStoreAdapter(MemoryStore(clock=clock))
    # Both protocols have the same method names: tell them apart by the coroutine functions.
    if inspect.iscoroutinefunction(store.put):
        return cast(AsyncTokenStore, store)
    if hasattr(store, "try_lock"):
        return AsyncLockingStoreAdapter(cast(LockingTokenStore, store))
    return AsyncStoreAdapter(cast(TokenStore, store))


def sync_store(store: TokenStore | None, clock: Callable[[], float]) -> TokenStore:
    """The store the sync managers use: a ``MemoryStore`` on the issuer's clock when none is
    given."""
    if store is None:
        return MemoryStore(clock=clock)
    return store


def scoped_expunge(store: object) -> bool:
    """Whether ``store.expunge_expired`` takes ``query`` (every shipped store does; a custom
    store written before it existed may not, and the managers then list and delete instead).
    Looks through ``AsyncStoreAdapter`` at the store it wraps."""
    target = store.sync if isinstance(store, AsyncStoreAdapter) else store
    try:
        parameters = inspect.signature(target.expunge_expired).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError):  # no signature to read: assume the old one
        return False
    return "query" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
