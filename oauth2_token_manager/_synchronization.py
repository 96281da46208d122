"""Concurrency primitives with an ``Async``-named twin each, so that ``scripts/unasync.py``
maps one onto the other; everything built on them is written once, in ``_async/``.

- ``AsyncLock`` (anyio: asyncio and trio; a cancelled waiter never keeps it) / ``Lock``
  (``threading.Lock``), both with a non-blocking ``try_acquire`` and a bounded
  ``acquire_within(seconds)``.
- ``async_sleep`` / ``sync_sleep``: wait without blocking the event loop / the thread;
  ``AsyncSleep`` / ``Sleep`` are their types, and ``async_sleep_from`` / ``sync_sleep_from``
  pick an issuer's sleep: the injected ``sleep`` option (tests inject a fake one) or these.
- ``async_loop_identity`` / ``sync_loop_identity``: what async locks must not be shared across
  (the running event loop), nothing for thread locks; ``async_loop_alive`` /
  ``sync_loop_alive``: whether what was kept for such an identity may still be used.
- ``AsyncBackground`` / ``Background``: call a function every ``interval`` seconds while a block
  runs (lease renewal), in a task / a daemon thread.
- ``async_shielded`` / ``sync_shielded``: run a call to its end even when the caller is
  cancelled meanwhile (storing an answer the server gave, releasing a lock); the caller's
  cancellation is raised when it is done. Plain calls in sync code.
- ``PerLoop``: one value (an HTTP client, a connection pool) per event loop, made on first
  use there; those of closed loops are forgotten, and a forked child starts with none.
- ``reset_after_fork(obj)``: call ``obj._after_fork()`` in the child of every later
  ``os.fork()`` (gunicorn ``--preload``, Celery, ``multiprocessing`` with fork) while ``obj``
  lives, so that it drops what the child must not share with its parent (pooled connections,
  lock tables, thread locks another thread of the parent may hold). Nothing is checked on
  the hot path: ``os.register_at_fork`` runs the resets once, in the child, before it goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from ._exceptions import ConfigurationError

__all__ = [
    "AsyncBackground",
    "AsyncLock",
    "AsyncSleep",
    "Background",
    "Lock",
    "PerLoop",
    "Sleep",
    "async_loop_alive",
    "async_loop_identity",
    "async_loop_is_asyncio",
    "async_shielded",
    "async_sleep",
    "async_sleep_from",
    "reset_after_fork",
    "sync_loop_alive",
    "sync_loop_identity",
    "sync_loop_is_asyncio",
    "sync_shielded",
    "sync_sleep",
    "sync_sleep_from",
]

Sleep = Callable[[float], None]
"""A blocking sleep such as ``time.sleep``: how a sync issuer and its store lock wait."""

AsyncSleep = Callable[[float], Awaitable[None]]
"""An awaitable sleep such as ``anyio.sleep``: how an async issuer and its store lock wait."""

logger = logging.getLogger("oauth2_token_manager")

T = TypeVar("T")


class AsyncLock:
    """An anyio lock used with ``async with``."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    def try_acquire(self) -> bool:
        """Take the lock if it is free, without waiting."""
        try:
            self._lock.acquire_nowait()
        except anyio.WouldBlock:
            return False
        return True

    async def acquire_within(self, seconds: float | None) -> bool:
        """Take the lock, waiting at most ``seconds`` (``None``: as long as it takes);
        whether it was taken (a waiter that gives up never holds it). Like ``async with``, it
        always passes a checkpoint, so other tasks run even when the lock is free."""
        if seconds is None:
            await self._lock.acquire()
            return True
        with anyio.move_on_after(seconds):
            await self._lock.acquire()
            return True
        return False

    def release(self) -> None:
        """Release the lock."""
        self._lock.release()

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

    def try_acquire(self) -> bool:
        """Take the lock if it is free, without waiting."""
        return self._lock.acquire(blocking=False)

    def acquire_within(self, seconds: float | None) -> bool:
        """Take the lock, waiting at most ``seconds`` (``None``: as long as it takes);
        whether it was taken."""
        return self._lock.acquire(timeout=-1 if seconds is None else max(seconds, 0.0))

    def release(self) -> None:
        """Release the lock."""
        self._lock.release()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()


async def async_sleep(seconds: float) -> None:
    """Wait without blocking the event loop."""
    await anyio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    """Wait, blocking this thread only."""
    time.sleep(seconds)


def async_sleep_from(sleep: Sleep | AsyncSleep | None) -> AsyncSleep:
    """An async issuer's sleep: ``async_sleep``, or the injected ``sleep`` option, which must
    return an awaitable (``ConfigurationError`` at its first use otherwise)."""
    if sleep is None:
        return async_sleep
    injected = sleep

    async def checked(seconds: float) -> None:
        waited = injected(seconds)
        if not inspect.isawaitable(waited):
            raise ConfigurationError("the sleep option of an async issuer must be awaitable")
        await waited

    return checked


def sync_sleep_from(sleep: Sleep | AsyncSleep | None) -> Sleep:
    """A sync issuer's sleep: ``sync_sleep``, or the injected ``sleep`` option, which must not
    be async (``ConfigurationError`` at once for an ``async def``, else at its first use)."""
    if sleep is None:
        return sync_sleep
    if inspect.iscoroutinefunction(sleep):
        raise ConfigurationError("the sleep option of a sync issuer must not be async")
    injected = sleep

    def checked(seconds: float) -> None:
        waited = injected(seconds)
        if inspect.isawaitable(waited):
            if inspect.iscoroutine(waited):
                waited.close()  # never awaited: no "coroutine was never awaited" warning
            raise ConfigurationError("the sleep option of a sync issuer must not be async")

    return checked


def async_loop_identity() -> object:
    """The running event loop's identity: async locks are never shared across loops."""
    return anyio.lowlevel.current_token()


def sync_loop_identity() -> object:
    """Thread locks work across threads: one identity for all."""
    return None


async def async_shielded(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)`` run to its end even if the caller is cancelled meanwhile; then the
    caller's cancellation (if any) is raised, else the call's result or error.

    anyio and trio cancel scopes are held off by ``anyio.CancelScope(shield=True)``. A native
    asyncio cancellation (``asyncio.wait_for``, ``Task.cancel``) goes through anyio's shield,
    so on asyncio the call runs in its own task, awaited until it is done.
    """
    try:
        asyncio.current_task()
    except RuntimeError:  # not asyncio (trio): its cancel scopes are all there is
        with anyio.CancelScope(shield=True):
            result = await fn(*args)
        await anyio.lowlevel.checkpoint_if_cancelled()
        return result
    cancelled: BaseException | None = None
    with anyio.CancelScope(shield=True):
        task = asyncio.ensure_future(fn(*args))
        while not task.done():
            try:
                await asyncio.wait((task,))  # a cancelled wait leaves the task running
            except asyncio.CancelledError as exc:
                cancelled = exc
    if cancelled is not None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "a shielded call failed after its caller was cancelled: %r", task.exception()
            )
        raise cancelled
    await anyio.lowlevel.checkpoint_if_cancelled()
    return task.result()


def sync_shielded(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``: a thread is never cancelled (the twin of ``async_shielded``)."""
    return fn(*args)


def _native(identity: object) -> object:
    """The event loop behind an ``async_loop_identity()``: anyio >= 4.2 wraps it in a token
    (``native_token``), anyio 4.0 and 4.1 return the loop itself (asyncio) or trio's token."""
    return getattr(identity, "native_token", identity)


def async_loop_alive(identity: object) -> bool:
    """Whether the event loop of an ``async_loop_identity()`` may run again: an asyncio loop
    until it is closed; a trio run cannot be asked (assumed alive)."""
    is_closed = getattr(_native(identity), "is_closed", None)
    return is_closed is None or not is_closed()


def sync_loop_alive(identity: object) -> bool:
    """The one identity of threads is always alive."""
    return True


def async_loop_is_asyncio(identity: object) -> bool:
    """Whether an ``async_loop_identity()`` is an asyncio loop (not trio)."""
    return isinstance(_native(identity), asyncio.AbstractEventLoop)


def sync_loop_is_asyncio(identity: object) -> bool:
    """Threads need no event loop: always ``True``, as for asyncio."""
    return True


class AsyncBackground:
    """Run ``await fn()`` every ``interval`` seconds while the ``async with`` block runs."""

    def __init__(self, fn: Callable[[], Awaitable[None]], interval: float) -> None:
        self._fn = fn
        self._interval = interval
        self._group: anyio.abc.TaskGroup | None = None

    async def _loop(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            try:
                await self._fn()
            except Exception:  # the block goes on; the failure is logged, never lost
                logger.warning("background task failed", exc_info=True)

    async def __aenter__(self) -> None:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._loop)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._group is not None
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)


class Background:
    """Run ``fn()`` every ``interval`` seconds in a daemon thread while the block runs."""

    def __init__(self, fn: Callable[[], None], interval: float) -> None:
        self._fn = fn
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._fn()
            except Exception:  # the block goes on; the failure is logged, never lost
                logger.warning("background task failed", exc_info=True)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


class _ForkAware(Protocol):
    def _after_fork(self) -> None: ...


_FORK_AWARE: weakref.WeakSet[_ForkAware] = weakref.WeakSet()


def reset_after_fork(obj: _ForkAware) -> None:
    """Call ``obj._after_fork()`` in the child process after every ``os.fork()`` while ``obj``
    is alive (it is held weakly)."""
    _FORK_AWARE.add(obj)


def _reset_in_child() -> None:
    for obj in list(_FORK_AWARE):
        try:
            obj._after_fork()
        except Exception:  # the child goes on; a failed reset is logged, never lost
            logger.warning("resetting %s after fork failed", type(obj).__name__, exc_info=True)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_reset_in_child)


class PerLoop(Generic[T]):
    """One value per event loop, made by ``make()`` on first use in that loop.

    ``identity`` and ``alive`` are ``async_loop_identity`` / ``async_loop_alive`` (or their
    ``sync_`` twins: one value for all threads). Making a value forgets those of loops that
    are closed (they cannot be closed from another loop: their owner drops them). A forked
    child starts with no value: the parent's (pooled connections) are never used there.
    """

    def __init__(
        self,
        make: Callable[[], T],
        identity: Callable[[], object],
        alive: Callable[[object], bool],
    ) -> None:
        self._make = make
        self._identity = identity
        self._alive = alive
        self._values: dict[object, T] = {}
        self._guard = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        self._values = {}  # the parent's: dropped, never closed or used here
        self._guard = threading.Lock()

    def get(self) -> T:
        """The value of the running event loop (made now if it has none)."""
        loop = self._identity()
        value = self._values.get(loop)
        if value is None:
            with self._guard:  # two threads' first calls make one value
                value = self._values.get(loop)
                if value is None:
                    kept = {k: v for k, v in self._values.items() if self._alive(k)}
                    value = kept[loop] = self._make()
                    self._values = kept
        return value

    def take(self) -> tuple[T | None, int]:
        """Forget every value: the running loop's is returned (to be closed), with how many
        values of other loops were dropped."""
        values, self._values = self._values, {}
        mine = values.pop(self._identity(), None)
        return mine, len(values)
