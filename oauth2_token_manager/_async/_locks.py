"""Single-flight: one lock per cache key, forgotten when nobody holds or awaits it.

``hold(key)`` serialises the callers of one key and never blocks other keys. The table of
locks is guarded by a thread lock held only around dictionary updates (never across an
``await``), so the same code is right for threads and for tasks. A caller cancelled while
waiting leaves the table as if it had never come.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Generic, TypeVar

from .._synchronization import AsyncLock

__all__ = ["AsyncKeyedLocks"]

K = TypeVar("K")


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = AsyncLock()
        self.users = 0


class AsyncKeyedLocks(Generic[K]):
    """One lock per key; ``with locks.hold(key):`` runs alone among holders of ``key``."""

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}
        self._guard = threading.Lock()

    def hold(self, key: K) -> _AsyncHeld[K]:
        """A context manager holding the lock of ``key``."""
        return _AsyncHeld(self, key)

    def __len__(self) -> int:
        """How many keys are held or awaited now."""
        return len(self._entries)


class _AsyncHeld(Generic[K]):
    __slots__ = ("_entry", "_key", "_owner")

    def __init__(self, owner: AsyncKeyedLocks[K], key: K) -> None:
        self._owner = owner
        self._key = key
        self._entry: _Entry | None = None

    async def __aenter__(self) -> None:
        owner = self._owner
        with owner._guard:
            entry = owner._entries.get(self._key)
            if entry is None:
                entry = owner._entries[self._key] = _Entry()
            entry.users += 1
        self._entry = entry
        try:
            await entry.lock.__aenter__()
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
        await self._entry.lock.__aexit__(exc_type, exc, tb)
        self._leave()

    def _leave(self) -> None:
        assert self._entry is not None
        with self._owner._guard:
            self._entry.users -= 1
            if self._entry.users == 0:
                self._owner._entries.pop(self._key, None)
