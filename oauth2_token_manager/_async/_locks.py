"""Single-flight: one lock per cache key, forgotten when nobody holds or awaits it.

``hold(key)`` serialises the callers of one key and never blocks other keys; ``try_hold(key)``
takes the lock only if it is free (refresh-ahead: a caller that finds a refresh running goes
on with the still-valid token). The table is guarded by a thread lock held only around
dictionary updates (never across an ``await``), so the same code is right for threads and for
tasks. Async locks are kept per event loop (``async_loop_identity``): a lock never crosses
loops. A caller cancelled while waiting leaves the table as if it had never come. A child
process starts with an empty table and a new guard (``reset_after_fork``): the parent's holders
are not there to release their locks.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from .._deadline import time_left
from .._exceptions import DeadlineExceededError, StoreError
from .._synchronization import (
    AsyncBackground,
    AsyncLock,
    AsyncSleep,
    async_loop_identity,
    async_shielded,
    async_sleep,
    reset_after_fork,
)

__all__ = ["AsyncKeyedLocks", "AsyncStoreLock"]

logger = logging.getLogger("oauth2_token_manager")

K = TypeVar("K")


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = AsyncLock()
        self.users = 0


class AsyncKeyedLocks(Generic[K]):
    """One lock per key; ``async with locks.hold(key):`` runs alone among holders of ``key``."""

    def __init__(self) -> None:
        self._entries: dict[tuple[object, K], _Entry] = {}
        self._guard = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's holders and waiters (none of them runs
        here), and its guard (another thread of the parent may have held it)."""
        self._entries = {}
        self._guard = threading.Lock()

    def hold(self, key: K) -> _AsyncHeld[K]:
        """A context manager waiting for, then holding, the lock of ``key``."""
        return _AsyncHeld(self, (async_loop_identity(), key), None)

    def try_hold(self, key: K) -> _AsyncHeld[K] | None:
        """The lock of ``key`` already taken (use it with ``async with``), or ``None`` if busy."""
        full_key = (async_loop_identity(), key)
        entry = self._join(full_key)
        if entry.lock.try_acquire():
            return _AsyncHeld(self, full_key, entry)
        self._leave(full_key, entry)
        return None

    def __len__(self) -> int:
        """How many keys are held or awaited now."""
        return len(self._entries)

    def _join(self, full_key: tuple[object, K]) -> _Entry:
        with self._guard:
            entry = self._entries.get(full_key)
            if entry is None:
                entry = self._entries[full_key] = _Entry()
            entry.users += 1
            return entry

    def _leave(self, full_key: tuple[object, K], entry: _Entry) -> None:
        with self._guard:
            entry.users -= 1
            if entry.users == 0:
                self._entries.pop(full_key, None)


class _AsyncHeld(Generic[K]):
    __slots__ = ("_entry", "_key", "_owner")

    def __init__(
        self, owner: AsyncKeyedLocks[K], full_key: tuple[object, K], entry: _Entry | None
    ) -> None:
        self._owner = owner
        self._key = full_key
        self._entry = entry  # set when the lock is already taken (try_hold)

    async def __aenter__(self) -> None:
        if self._entry is not None:
            return
        entry = self._owner._join(self._key)
        try:
            taken = await entry.lock.acquire_within(time_left())
        except BaseException:
            self._owner._leave(self._key, entry)
            raise
        if not taken:
            self._owner._leave(self._key, entry)
            raise DeadlineExceededError("waiting for another caller's token request")
        self._entry = entry

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._entry is not None
        self._entry.lock.release()
        self._owner._leave(self._key, self._entry)


class AsyncStoreLock:
    """A store's cross-process lock (``DiskStore``, ``RedisStore``) with a renewed lease.

    Stores without ``try_lock`` need none (their tokens live in one process): then this does
    nothing. ``acquire(wait=True)`` polls until the lock is free or its holder's lease ran
    out (a crashed holder blocks others for one lease at most), up to ``timeout`` seconds or
    the operation's deadline (``_deadline``), whichever comes first; ``acquire(wait=False)``
    tries once. While held, the lease is renewed every third of it.

    The polls wait with ``sleep`` (jittered by ``jitter``, a number in [0, 1)) and the
    deadline is read from ``monotonic``: tests inject fake ones. The renewal runs on real
    time (a background task or thread), as the lease does in the store.
    """

    def __init__(
        self,
        store: Any,
        name: str,
        *,
        lease: float,
        timeout: float,
        poll: float = 0.02,
        sleep: AsyncSleep = async_sleep,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._name = name
        self._lease = lease
        self._timeout = timeout
        self._poll = poll
        self._sleep = sleep
        self._monotonic = monotonic
        self._jitter = jitter
        self._owner = secrets.token_hex(16)
        self._renewal: AsyncBackground | None = None

    async def acquire(self, *, wait: bool = True) -> bool:
        """Take the lock; ``False`` only when ``wait`` is off and it is busy.

        Interrupted (cancelled, or a store error) after the store may have granted the lock,
        it gives the lock back (shielded) before the interruption goes on: a cancelled
        caller leaves no lock for the next one to wait out."""
        if not hasattr(self._store, "try_lock"):
            return True
        left = time_left()
        limit = self._timeout if left is None else min(left, self._timeout)
        deadline = self._monotonic() + limit
        try:
            while not await self._store.try_lock(self._name, self._owner, self._lease):
                if not wait:
                    return False
                if self._monotonic() > deadline:
                    if limit < self._timeout:
                        raise DeadlineExceededError(
                            f"waiting for the store lock {self._name[:12]} "
                            "(held by another process)"
                        )
                    raise StoreError(
                        f"the store lock {self._name[:12]} stayed busy for {self._timeout:g} s"
                    )
                await self._sleep(self._poll * (0.5 + self._jitter()))
            self._renewal = AsyncBackground(self._renew, self._lease / 3)
            await self._renewal.__aenter__()
        except BaseException:
            self._renewal = None
            await async_shielded(self._unlock)
            raise
        return True

    async def _renew(self) -> None:
        if not await self._store.renew_lock(self._name, self._owner, self._lease):
            logger.warning("lost the store lock %s (lease ran out)", self._name[:12])

    async def _unlock(self) -> None:
        """Unlock; a store error is logged (the lease frees the lock), never raised."""
        try:
            await self._store.unlock(self._name, self._owner)
        except StoreError as exc:
            logger.warning("could not release the store lock %s: %s", self._name[:12], exc)

    async def release(self) -> None:
        """Give the lock back (only if this owner still holds it), on every path: the store
        call is shielded from cancellation (anyio, trio and asyncio)."""
        renewal, self._renewal = self._renewal, None
        if renewal is None:
            return
        try:
            await renewal.__aexit__(None, None, None)
        finally:
            await async_shielded(self._unlock)
