"""Locks with an ``Async``-named twin each, so that ``scripts/unasync.py`` maps one to the other.

``AsyncLock`` is an anyio lock (asyncio and trio); a cancelled waiter never keeps it.
``Lock`` is a ``threading.Lock``. The keyed single-flight table built on them is written once,
in ``_async/_locks.py``.
"""

from __future__ import annotations

import threading
from types import TracebackType

import anyio

__all__ = ["AsyncLock", "Lock"]


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
