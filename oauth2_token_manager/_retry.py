"""Retrying transient failures: which failures, how long to wait, and when never to retry.

Rules stated once here (pure: the caller supplies the attempt number and a random source):

- Transient: connection errors and timeouts (``TransportError``), and HTTP 429, 502, 503,
  504 (``HTTPStatusError`` or an ``OAuth2Error`` such as ``temporarily_unavailable`` carried on
  those statuses). Everything else is final at once (``invalid_grant``, ``invalid_client``,
  a malformed body ..., and a passed deadline: the caller's time is spent, not the server's).
- A refresh-token grant is retried only when the request surely did not reach the server: a
  failure to connect, or a 429 (refused before any processing). A timeout or a 5xx after the
  request was sent may hide a rotation that happened, and replaying the old refresh token
  would then revoke the whole grant on servers with reuse detection.
- Delay before attempt ``n`` (1-based retry count): full jitter over
  ``min(max_delay, base * 2 ** (n - 1))``; a ``Retry-After`` (seconds or an HTTP date) wins when
  it is not longer than ``max_retry_after``, else the failure is final.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
from collections.abc import Callable, Mapping

from ._arguments import option
from ._exceptions import (
    ConfigurationError,
    DeadlineExceededError,
    HTTPStatusError,
    OAuth2Error,
    OAuth2TokenManagerError,
    TransportError,
)

__all__ = [
    "RetryPolicy",
    "is_transient",
    "persist_delay",
    "reached_server",
    "retry_after",
    "retry_delay",
]

TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
_NOT_SENT_REASONS = ("ConnectError", "ConnectTimeout", "PoolTimeout")


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times and how patiently transient failures are retried (seconds)."""

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError("attempts must be an integer")
        if self.attempts < 1:
            raise ConfigurationError("attempts must be at least 1")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            option(name, getattr(self, name))  # finite and >= 0


def is_transient(error: OAuth2TokenManagerError) -> bool:
    """Whether the failure may go away by itself."""
    if isinstance(error, DeadlineExceededError):
        return False
    if isinstance(error, TransportError):
        return True
    if isinstance(error, (HTTPStatusError, OAuth2Error)):
        return error.status_code in TRANSIENT_STATUSES
    return False


def reached_server(error: OAuth2TokenManagerError) -> bool:
    """Whether the request may have been processed (so a refresh must not be replayed)."""
    if isinstance(error, TransportError):
        return not error.reason.startswith(_NOT_SENT_REASONS)
    if isinstance(error, (HTTPStatusError, OAuth2Error)):
        return error.status_code != 429
    return True


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The ``Retry-After`` delay in seconds (delta or HTTP date), or ``None``."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to float
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def retry_delay(
    policy: RetryPolicy,
    retry: int,
    server_delay: float | None,
    random: Callable[[], float],
) -> float | None:
    """Seconds to wait before retry number ``retry`` (1-based), or ``None``: do not retry."""
    if retry >= policy.attempts:
        return None
    if server_delay is not None:
        return server_delay if server_delay <= policy.max_retry_after else None
    ceiling = min(policy.max_delay, policy.base_delay * float(2 ** (retry - 1)))
    return float(random() * ceiling)


PERSIST_FIRST_DELAY = 0.05
PERSIST_MAX_DELAY = 0.5


def persist_delay(attempt: int, random: Callable[[], float]) -> float:
    """Seconds to wait before writing an answer again after ``attempt`` (1-based) failed
    store writes: doubling from 50 ms up to 0.5 s (a store that is back is written soon),
    jittered to between half and all of it."""
    ceiling = min(PERSIST_MAX_DELAY, PERSIST_FIRST_DELAY * float(2 ** min(attempt - 1, 16)))
    return ceiling * (0.5 + random() / 2)
