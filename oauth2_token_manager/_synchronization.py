"""Locks with an ``Async``-named twin each, so that ``scripts/unasync.py`` maps one to the other.

``AsyncLock`` is an anyio lock (asyncio and trio); a cancelled waiter never keeps it.
``Lock`` is a ``threading.Lock``. ``KeyedLocks`` hands out one lock per cache key and forgets
it when no caller holds or awaits it, so the single-flight key space does not grow forever.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Generic, TypeVar

import anyio

__all__ = ["AsyncKeyedLocks", "AsyncLock", "KeyedLocks", "Lock"]

K = TypeVar("K")


class AsyncLock:
    """An anyio lock used with ``async with``."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


class Lock:
    """A thread lock used with ``with``."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


class _Entry(Generic[K]):
    __slots__ = ("lock", "users")

    def __init__(self, lock: AsyncLock | Lock) -> None:
        self.lock = lock
        self.users = 0


class AsyncKeyedLocks(Generic[K]):
    """One ``AsyncLock`` per key, dropped when its last user leaves (single-flight per key)."""

    def __init__(self) -> None:
        self._entries: dict[K, _Entry[K]] = {}

    def hold(self, key: K) -> _AsyncHeld[K]:
        """``async with locks.hold(key):`` runs alone among holders of ``key``."""
        return _AsyncHeld(self, key)


class _AsyncHeld(Generic[K]):
    __slots__ = ("_entry", "_key", "_owner")

    def __init__(self, owner: AsyncKeyedLocks[K], key: K) -> None:
        self._owner = owner
        self._key = key
        self._entry: _Entry[K] | None = None

    async def __aenter__(self) -> None:
        entries = self._owner._entries
        entry = entries.get(self._key)
        if entry is None:
            entry = entries[self._key] = _Entry(AsyncLock())
        entry.users += 1
        self._entry = entry
        try:
            await entry.lock.__aenter__()  # type: ignore[union-attr]
        except BaseException:
            self._leave()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._entry is not None
        await self._entry.lock.__aexit__(exc_type, exc, tb)  # type: ignore[union-attr]
        self._leave()

    def _leave(self) -> None:
        assert self._entry is not None
        self._entry.users -= 1
        if self._entry.users == 0:
            self._owner._entries.pop(self._key, None)


class KeyedLocks(Generic[K]):
    """One ``Lock`` per key, dropped when its last user leaves (single-flight per key)."""

    def __init__(self) -> None:
        self._entries: dict[K, _Entry[K]] = {}
        self._guard = threading.Lock()

    def hold(self, key: K) -> _Held[K]:
        """``with locks.hold(key):`` runs alone among holders of ``key``."""
        return _Held(self, key)


class _Held(Generic[K]):
    __slots__ = ("_entry", "_key", "_owner")

    def __init__(self, owner: KeyedLocks[K], key: K) -> None:
        self._owner = owner
        self._key = key
        self._entry: _Entry[K] | None = None

    def __enter__(self) -> None:
        owner = self._owner
        with owner._guard:
            entry = owner._entries.get(self._key)
            if entry is None:
                entry = owner._entries[self._key] = _Entry(Lock())
            entry.users += 1
        self._entry = entry
        entry.lock.__enter__()  # type: ignore[union-attr]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._entry is not None
        self._entry.lock.__exit__(exc_type, exc, tb)  # type: ignore[union-attr]
        with self._owner._guard:
            self._entry.users -= 1
            if self._entry.users == 0:
                self._owner._entries.pop(self._key, None)
