"""Unit tests of the retry rules, option validation and the concurrency primitives."""

from __future__ import annotations

import threading

import anyio
import pytest
from _clock import FakeClock

from oauth2_token_manager import (
    ClientConfig,
    ConfigurationError,
    HTTPStatusError,
    InvalidGrant,
    InvalidResponseError,
    Issuer,
    IssuerOptions,
    TransportError,
)
from oauth2_token_manager._retry import (
    RetryPolicy,
    is_transient,
    persist_delay,
    reached_server,
    retry_after,
    retry_delay,
)
from oauth2_token_manager._synchronization import (
    AsyncBackground,
    AsyncLock,
    Background,
    Lock,
    async_sleep_from,
    sync_sleep_from,
)


@pytest.mark.parametrize(
    ("error", "transient", "seen"),
    [
        (TransportError("t", "ConnectError: refused"), True, False),
        (TransportError("t", "ReadTimeout: slow"), True, True),
        (HTTPStatusError("x", status_code=429), True, False),
        (HTTPStatusError("x", status_code=503), True, True),
        (HTTPStatusError("x", status_code=500), False, True),
        (InvalidGrant("invalid_grant", status_code=400), False, True),
        (InvalidResponseError("bad body"), False, True),
    ],
)
def test_failure_classes(error: Exception, transient: bool, seen: bool) -> None:
    """Which failures are transient, and which may have reached the server."""
    assert is_transient(error) is transient  # type: ignore[arg-type]
    assert reached_server(error) is seen  # type: ignore[arg-type]


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is read as delta seconds or an HTTP date; garbage is ignored."""
    assert retry_after({"retry-after": "7"}, 0) == 7
    assert retry_after({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 4) == 6
    assert retry_after({"retry-after": "soon"}, 0) is None
    assert retry_after({}, 0) is None


def test_retry_delay_backs_off_with_jitter_and_bounds() -> None:
    """Delays grow exponentially under full jitter, are capped, and stop after the attempts."""
    policy = RetryPolicy(attempts=4, base_delay=1, max_delay=3)
    assert [retry_delay(policy, n, None, lambda: 1.0) for n in (1, 2, 3)] == [1, 2, 3]
    assert retry_delay(policy, 2, None, lambda: 0.5) == 1
    assert retry_delay(policy, 4, None, lambda: 1.0) is None
    assert retry_delay(policy, 1, 10, lambda: 1.0) == 10
    assert retry_delay(policy, 1, 31, lambda: 1.0) is None


def test_persist_delay_doubles_up_to_half_a_second() -> None:
    """Store-write retries wait 50 ms, 100 ms, ... up to 0.5 s, jittered to half or more."""
    assert [persist_delay(n, lambda: 1.0) for n in (1, 2, 3, 4, 5, 100)] == [
        0.05, 0.1, 0.2, 0.4, 0.5, 0.5
    ]  # fmt: skip
    assert persist_delay(1, lambda: 0.0) == 0.025


@pytest.mark.parametrize(
    "options",
    [
        {"leeway": -1},
        {"scope_match": "fuzzy"},
        {"min_introspect_interval": -1},
        {"default_lifetime": 0},
        {"max_response_bytes": 0},
        {"refresh_ahead": 1.5},
        {"failure_cache": -1},
        {"lock_lease": 0},
        {"persist_timeout": -1},
        {"persist_timeout": float("nan")},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object]) -> None:
    """Each nonsensical option value is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        IssuerOptions(**options)  # type: ignore[arg-type]


def test_retry_policy_rejects_nonsense() -> None:
    """A policy with no attempt or a negative delay is refused."""
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


def test_thread_lock_try_acquire() -> None:
    """Lock.try_acquire takes a free lock and refuses a held one."""
    lock = Lock()
    assert lock.try_acquire()
    assert not lock.try_acquire()
    lock.release()
    with lock:
        assert not lock.try_acquire()


@pytest.mark.anyio
async def test_async_lock_try_acquire() -> None:
    """AsyncLock.try_acquire takes a free lock and refuses a held one."""
    lock = AsyncLock()
    results: list[bool] = []

    async def other_task() -> None:
        results.append(lock.try_acquire())

    assert lock.try_acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
    lock.release()
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
    assert results == [False, True]


def test_background_runs_until_the_block_ends_and_survives_errors() -> None:
    """Background calls its function repeatedly; an exception is logged, not fatal."""
    calls: list[int] = []
    done = threading.Event()

    def tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first tick fails")
        if len(calls) >= 3:
            done.set()

    background = Background(tick, 0.001)
    with background:
        assert done.wait(5)
    assert len(calls) >= 3
    assert not background._thread.is_alive()  # stopped and joined with the block


@pytest.mark.anyio
async def test_async_background_runs_until_the_block_ends() -> None:
    """AsyncBackground calls its coroutine function repeatedly and stops with the block."""
    calls: list[int] = []
    done = anyio.Event()

    async def tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first tick fails")
        if len(calls) >= 3:
            done.set()

    async def tick_and_tell() -> None:
        ticker.append(anyio.get_current_task().id)
        await tick()

    ticker: list[int] = []
    async with AsyncBackground(tick_and_tell, 0.001):
        with anyio.fail_after(5):
            await done.wait()
    assert len(calls) >= 3
    running = {task.id for task in anyio.get_running_tasks()}
    assert ticker[0] not in running  # the ticking task ended with the block: no more calls


@pytest.mark.anyio
async def test_sleep_option_is_checked_for_the_kind_of_issuer() -> None:
    """An issuer uses the injected sleep (fake here: time moves, nothing waits); an async
    issuer refuses a plain sleep and a sync one an async sleep (ConfigurationError)."""
    clock = FakeClock()
    await async_sleep_from(clock.async_sleep)(2)
    sync_sleep_from(clock.sync_sleep)(3)
    await async_sleep_from(lambda seconds: clock.async_sleep(seconds))(4)  # returns awaitable
    assert clock.sleeps == [2, 3, 4] and clock.monotonic() == 1_000 + 9
    with pytest.raises(ConfigurationError, match="must be awaitable"):
        await async_sleep_from(clock.sync_sleep)(1)
    with pytest.raises(ConfigurationError, match="must not be async"):
        sync_sleep_from(clock.async_sleep)
    with pytest.raises(ConfigurationError, match="must not be async"):
        sync_sleep_from(lambda seconds: clock.async_sleep(seconds))(1)
    assert clock.sleeps == [2, 3, 4, 1]  # the refused calls ran, but were not awaited
    assert async_sleep_from(None) is not sync_sleep_from(None)
    with pytest.raises(ConfigurationError, match="must not be async"):
        Issuer("https://as.example", ClientConfig("c", "s"), sleep=clock.async_sleep)
