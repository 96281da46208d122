"""Token stores: the ``TokenStore`` protocol, the memory and disk stores, the async adapter."""

from ._base import (
    AsyncStoreAdapter,
    AsyncTokenStore,
    LockingTokenStore,
    Page,
    TokenQuery,
    TokenStatus,
    TokenStore,
    async_store,
    sync_store,
)
from ._disk import DiskStore
from ._memory import MemoryStore

__all__ = [
    "AsyncStoreAdapter",
    "AsyncTokenStore",
    "DiskStore",
    "LockingTokenStore",
    "MemoryStore",
    "Page",
    "TokenQuery",
    "TokenStatus",
    "TokenStore",
    "async_store",
    "sync_store",
]
