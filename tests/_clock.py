"""The one fake clock of the test suite: wall time, monotonic time, and sleeps that move both.

Pass the clock itself as ``clock=`` (epoch seconds), ``clock.monotonic`` as ``monotonic=`` and
``clock.async_sleep`` (async issuers, store locks) or ``clock.sync_sleep`` (sync ones) as
``sleep=``; ``scripts/unasync.py`` maps ``async_sleep`` onto ``sync_sleep`` in generated tests.
A fake sleep returns at once, having moved both times on by its duration and recorded it in
``sleeps``; the async one still yields to the event loop once, as a real sleep would, so that
other tasks run meanwhile. Time never moves by itself.
"""

from __future__ import annotations

import threading

import anyio.lowlevel

START = 1_700_000_000.0
"""Where the wall time of a ``FakeClock()`` starts (epoch seconds, November 2023)."""


class FakeClock:
    """Epoch seconds and monotonic seconds that move only when a test (or a sleep) says so."""

    def __init__(self, start: float = START, *, monotonic_start: float = 1_000.0) -> None:
        self.now = start
        self.monotonic_now = monotonic_start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()  # sync sleeps may come from several threads

    def __call__(self) -> float:
        """The wall time (epoch seconds), like ``time.time``."""
        return self.now

    def monotonic(self) -> float:
        """The monotonic time, like ``time.monotonic``."""
        return self.monotonic_now

    def advance(self, seconds: float) -> None:
        """Move the wall and the monotonic time on by ``seconds``."""
        assert seconds >= 0, f"time never goes back (advance by {seconds})"
        with self._lock:
            self.now += seconds
            self.monotonic_now += seconds

    def sync_sleep(self, seconds: float) -> None:
        """``time.sleep`` without the wait: record the duration and move time on."""
        assert seconds >= 0, f"a negative sleep ({seconds})"
        with self._lock:
            self.sleeps.append(seconds)
        self.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """``anyio.sleep`` without the wait: record, move time on, yield to the loop once."""
        self.sync_sleep(seconds)
        await anyio.lowlevel.checkpoint()

    @property
    def slept(self) -> float:
        """The total of the recorded sleeps (seconds of fake time)."""
        return sum(self.sleeps)
