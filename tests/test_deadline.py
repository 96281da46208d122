"""The deadline machinery (issue 10 §8): nesting, option validation, and a waiter behind a
stuck holder in this process (tasks and threads) ending at its own deadline, typed.

The stuck holder waits on a real listener that never answers; only the type of each outcome is
asserted, never a duration of real time.
"""

from __future__ import annotations

import threading

import anyio
import httpx
import pytest
from _clock import FakeClock
from _silent_server import silent_server

from oauth2_token_manager import (
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncIssuer,
    ClientConfig,
    ConfigurationError,
    DeadlineExceededError,
    Issuer,
    IssuerOptions,
    TransportError,
)
from oauth2_token_manager._deadline import deadline, suspended, time_left
from oauth2_token_manager._retry import RetryPolicy, is_transient


def test_nested_deadlines_never_extend_the_outer_one() -> None:
    """An inner operation shortens the deadline but never extends it; leaving it restores
    the outer one; outside any operation there is none; ``suspended`` lifts it."""
    clock = FakeClock()
    options = IssuerOptions(monotonic=clock.monotonic, deadline=15)
    assert time_left() is None
    with deadline(options, 5):
        assert time_left() == 5
        clock.advance(1)
        with deadline(options):  # the option's 15 s would end later: the outer 4 s stay
            assert time_left() == 4
        with deadline(options, 2):
            assert time_left() == 2
            with suspended():
                assert time_left() is None
            assert time_left() == 2
        assert time_left() == 4
    assert time_left() is None


@pytest.mark.parametrize("name", ["timeout", "deadline"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "10", True])
def test_timeout_options_must_be_finite_and_positive(name: str, value: object) -> None:
    """The per-attempt timeout and the deadline options refuse 0, negatives, NaN, infinity and
    non-numbers with ConfigurationError."""
    with pytest.raises(ConfigurationError, match=name):
        IssuerOptions(**{name: value})  # type: ignore[arg-type]


def test_a_passed_deadline_is_never_retried() -> None:
    """The retry rule: a DeadlineExceededError is final (the caller's time is spent)."""
    assert not is_transient(DeadlineExceededError("before retry 2"))


def _stuck_issuer_options(url: str) -> dict[str, object]:
    return {
        "discovery": False,
        "metadata": {"token_endpoint": f"{url}/token"},
        "allow_insecure_loopback": True,
        "retry": RetryPolicy(attempts=1),
        "timeout": 5,
        "deadline": 30,
    }


@pytest.mark.anyio
async def test_a_task_behind_a_stuck_holder_times_out_typed() -> None:
    """A task waiting for the key lock of a holder stuck at a silent server ends at its own
    timeout=0.2 with DeadlineExceededError, while the holder still waits."""
    with silent_server() as url:
        issuer = AsyncIssuer(url, ClientConfig("c", "s"), **_stuck_issuer_options(url))
        access = AsyncAccessTokenManager(issuer)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(access.get)
                await anyio.wait_all_tasks_blocked()  # the holder waits for the answer
                assert len(issuer.locks) == 1
                with pytest.raises(DeadlineExceededError, match="another caller") as caught:
                    await access.get(timeout=0.2)
                assert isinstance(caught.value, TimeoutError)
                assert len(issuer.locks) == 1  # the waiter left nothing behind
                tg.cancel_scope.cancel()
        finally:
            await issuer.aclose()
    assert len(issuer.locks) == 0


def test_a_thread_behind_a_stuck_holder_times_out_typed() -> None:
    """A thread waiting for the key lock of a holder stuck at a silent server ends at its own
    timeout=0.2 with DeadlineExceededError; the holder ends when the server goes away."""
    sent = threading.Event()
    holder_outcome: list[BaseException] = []
    with silent_server() as url:
        http = httpx.Client(event_hooks={"request": [lambda request: sent.set()]}, timeout=5)
        issuer = Issuer(url, ClientConfig("c", "s"), http=http, **_stuck_issuer_options(url))
        access = AccessTokenManager(issuer)

        def holder() -> None:
            try:
                access.get()
            except TransportError as exc:
                holder_outcome.append(exc)

        thread = threading.Thread(target=holder)
        thread.start()
        assert sent.wait(10)  # the holder holds the key lock and waits for the answer
        with pytest.raises(DeadlineExceededError, match="another caller") as caught:
            access.get(timeout=0.2)
        assert isinstance(caught.value, TimeoutError)
    thread.join(10)
    assert not thread.is_alive() and len(holder_outcome) == 1
    assert len(issuer.locks) == 0
    http.close()
