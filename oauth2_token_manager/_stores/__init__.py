"""Token stores: the ``TokenStore`` protocol, every store, and the adapters the managers use.

The modules, each hand-written unless said otherwise:

- ``_base.py``: the protocols (``TokenStore``, ``AsyncTokenStore``, ``LockingTokenStore``), the
  rules every store follows, ``TokenQuery`` and ``Page``.
- ``_adapters.py``: ``AsyncStoreAdapter`` (a sync store used by the async managers),
  ``async_store``/``sync_store`` (the store a manager uses, a ``MemoryStore`` by default).
- ``_kv.py``: ``KVStore``, the indexing logic shared by the memory and disk stores.
- ``_memory.py``: ``MemoryStore``, in process memory (TLRU cache).
- ``_disk.py``: ``DiskStore``, in a SQLite file through diskcache, shared by processes.
- ``_crypto.py``: encryption at rest (Fernet) for the disk and Redis stores.
- ``_async_redis.py``: ``AsyncRedisStore``, in Redis (``redis.asyncio``), shared by hosts.
- ``_redis.py``: ``RedisStore``, GENERATED from ``_async_redis.py`` by ``scripts/unasync.py``
  (never edit it by hand: CI fails when it is stale).
- ``_redis_lua.py`` and ``_redis_codec.py``: what both Redis stores share without I/O, the Lua
  scripts and the encoding of lines, ids and errors.

The Redis stores need redis-py (the ``oauth2_token_manager[redis]`` extra): this package never
imports them; ``oauth2_token_manager.RedisStore`` and ``.AsyncRedisStore`` load them lazily, on
first use. Imports within the package go one way, never in a cycle: ``_base`` <- ``_kv`` <-
``_memory``, ``_disk``; ``_adapters`` uses ``_base`` and ``_memory``; the Redis modules use
``_base``, ``_crypto`` and their two shared modules.
"""

from ._adapters import AsyncStoreAdapter, async_store, scoped_expunge, sync_store
from ._base import (
    AsyncTokenStore,
    LockingTokenStore,
    Page,
    TokenQuery,
    TokenStatus,
    TokenStore,
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
    "scoped_expunge",
    "sync_store",
]
