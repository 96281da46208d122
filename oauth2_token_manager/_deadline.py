"""The deadline of one public operation: how long a caller may be kept waiting, in all.

Rules stated once here:

- Every public operation of the managers runs under a deadline: ``timeout=`` of the call, or
  the issuer's ``deadline`` option (15 s). It is a point of the issuer's ``monotonic`` clock,
  kept in a context variable, so it follows the operation through every ``await`` and call
  (and, being per context, never leaks to another task or thread).
- Nested operations share the outer deadline: an inner one may shorten it, never extend it.
- It is read where a caller waits: each HTTP attempt (its timeout is the smaller of the
  client's and the time left), the pause before a retry (no pause that would overrun it),
  the lock of a key in this process and the store's cross-process lock. Running out raises
  ``DeadlineExceededError`` (a ``TransportError`` and a builtin ``TimeoutError``).
- Waiting for the lock of a key in this process runs on real time (a thread or event-loop
  wait) for the time left by the ``monotonic`` clock.
- ``suspended()`` lifts the deadline for work that must not be cut short by the caller's
  patience (persisting an answer that arrived has its own bound).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._arguments import finite
from ._exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from ._config import IssuerOptions

__all__ = ["bounded", "deadline", "suspended", "time_left", "valid_timeout"]

F = TypeVar("F", bound=Callable[..., Any])


class _Deadline:
    __slots__ = ("end", "monotonic")

    def __init__(self, end: float, monotonic: Callable[[], float]) -> None:
        self.end = end
        self.monotonic = monotonic

    def left(self) -> float:
        return self.end - self.monotonic()


_CURRENT: ContextVar[_Deadline | None] = ContextVar("oauth2_token_manager_deadline", default=None)


def valid_timeout(timeout: object, name: str = "timeout") -> float:
    """``timeout`` as a float if it is a finite number > 0, else ``InvalidArgumentError``."""
    seconds = finite(name, timeout)
    if seconds <= 0:
        raise InvalidArgumentError(f"{name} must be a finite number of seconds > 0")
    return seconds


def time_left() -> float | None:
    """Seconds left before the current operation's deadline (``None``: no deadline)."""
    current = _CURRENT.get()
    return None if current is None else current.left()


class deadline:  # lower case: used like a function, ``with deadline(options, timeout):``
    """Run a block under ``timeout`` seconds (``None``: the ``deadline`` option) from now,
    or under the enclosing deadline when that one ends sooner."""

    __slots__ = ("_monotonic", "_reset", "_total")

    def __init__(self, options: IssuerOptions, timeout: float | None = None) -> None:
        self._total = options.deadline if timeout is None else valid_timeout(timeout)
        self._monotonic = options.monotonic
        self._reset: Token[_Deadline | None] | None = None

    def __enter__(self) -> None:
        mine = _Deadline(self._monotonic() + self._total, self._monotonic)
        outer = _CURRENT.get()
        if outer is not None and outer.left() <= self._total:
            mine = outer
        self._reset = _CURRENT.set(mine)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._reset is not None
        _CURRENT.reset(self._reset)


class suspended:  # lower case: ``with suspended():``
    """Run a block with no deadline (work that must finish once the answer has arrived)."""

    __slots__ = ("_reset",)

    def __enter__(self) -> None:
        self._reset = _CURRENT.set(None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _CURRENT.reset(self._reset)


def bounded(method: F) -> F:
    """Run a manager method (sync or async) under ``deadline(self.issuer.options, timeout)``,
    ``timeout`` being the method's keyword argument of that name."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def run_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            with deadline(self.issuer.options, kwargs.get("timeout")):
                return await method(self, *args, **kwargs)

        return cast(F, run_async)

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with deadline(self.issuer.options, kwargs.get("timeout")):
            return method(self, *args, **kwargs)

    return cast(F, run)
