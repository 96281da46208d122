"""Proof against the real authorization server (rotation on): many callers that find the same
token expired at once make exactly one token request per cache key and see no invalid_grant,
whether they are tasks, threads, or processes sharing a DiskStore or a RedisStore; a SIGKILLed
lock holder delays the others by one lease at most.

The ``*_off`` tests run the same scenarios with the mechanism switched off (the per-key locks,
the store lock, the lease renewal) and every token request held until all callers have one
ready: then each caller refreshes with the same refresh token, and the rotating server answers
all but the first with invalid_grant. So the proofs above can fail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _authserver import AuthServer, start_auth_server
from _concurrency import (
    Outcome,
    disk_recipe,
    run_killed_holder,
    run_processes,
    run_tasks,
    run_threads,
    store_factory,
)
from _mechanisms import without_grant_reread, without_keyed_locks
from _redis_server import RedisServer, redis_server  # noqa: F401

from oauth2_token_manager import AsyncIssuer, Issuer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rotating_server() -> Iterator[AuthServer]:
    """A server that rotates refresh tokens and answers token requests 100 ms late (so that
    every caller arrives while the first request is in flight)."""
    with start_auth_server(rotate_refresh_token=True, AS_TOKEN_DELAY_MS=100) as server:
        yield server


def check(outcome: Outcome, scope_sets: int) -> None:
    """One request per scope set, no invalid_grant, every caller served the scopes it asked."""
    assert outcome.failures == []
    assert outcome.token_requests == scope_sets
    assert outcome.invalid_grants == 0
    assert outcome.wrong_scopes == 0


@pytest.mark.parametrize("scope_sets", [1, 4])
def test_asyncio_tasks(rotating_server: AuthServer, scope_sets: int) -> None:
    """200 tasks: one refresh per scope set, and the event loop never stalls for long."""
    outcome = run_tasks(rotating_server, callers=200, scope_sets=scope_sets)
    check(outcome, scope_sets)
    assert outcome.max_stall_ms is not None and outcome.max_stall_ms < 50


def check_fails(outcome: Outcome, callers: int) -> None:
    """Without the mechanism: one refresh per caller, and invalid_grant for all but one."""
    assert outcome.token_requests == callers
    assert outcome.invalid_grants == callers - 1
    assert len(outcome.failures) == callers - 1


def test_asyncio_tasks_off(rotating_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the per-key locks, 20 tasks that all reach the token endpoint each refresh."""
    arrived = 0
    everyone: list[anyio.Event] = []
    request_token = AsyncIssuer.request_token

    async def overlapping(self: AsyncIssuer, *args: Any, **kwargs: Any) -> Any:
        nonlocal arrived
        if not everyone:
            everyone.append(anyio.Event())
        arrived += 1
        if arrived == 20:
            everyone[0].set()
        await everyone[0].wait()
        return await request_token(self, *args, **kwargs)

    without_keyed_locks(monkeypatch)
    without_grant_reread(monkeypatch)
    monkeypatch.setattr(AsyncIssuer, "request_token", overlapping)
    check_fails(run_tasks(rotating_server, callers=20, scope_sets=1), 20)


def test_threads_off(rotating_server: AuthServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the per-key locks, 16 threads that all reach the token endpoint each refresh."""
    overlap = threading.Barrier(16)
    request_token = Issuer.request_token

    def overlapping(self: Issuer, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():  # not the preparation
            overlap.wait(60)
        return request_token(self, *args, **kwargs)

    without_keyed_locks(monkeypatch)
    without_grant_reread(monkeypatch)
    monkeypatch.setattr(Issuer, "request_token", overlapping)
    check_fails(run_threads(rotating_server, callers=16, scope_sets=1), 16)


@pytest.mark.parametrize("scope_sets", [1, 4])
def test_threads(rotating_server: AuthServer, scope_sets: int) -> None:
    """64 threads: one refresh per scope set."""
    check(run_threads(rotating_server, callers=64, scope_sets=scope_sets), scope_sets)


@pytest.mark.parametrize("scope_sets", [1, 4])
def test_processes_on_one_disk_store(
    rotating_server: AuthServer, tmp_path: Path, scope_sets: int
) -> None:
    """8 processes sharing a DiskStore: one refresh per scope set."""
    outcome = run_processes(rotating_server, disk_recipe(tmp_path), 8, scope_sets)
    check(outcome, scope_sets)


def test_processes_on_one_disk_store_off(rotating_server: AuthServer, tmp_path: Path) -> None:
    """Without the store lock, 4 processes on a DiskStore each refresh."""
    outcome = run_processes(rotating_server, disk_recipe(tmp_path), 4, 1, off="store-lock")
    check_fails(outcome, 4)


def test_killed_disk_lock_holder(rotating_server: AuthServer, tmp_path: Path) -> None:
    """A SIGKILLed holder of the disk lock delays the others by about its lease; then one
    refresh serves them all with the refresh token still in the store."""
    outcome = run_killed_holder(rotating_server, disk_recipe(tmp_path), lease=1.5)
    check(outcome, 1)
    assert outcome.lock_wait is not None and 1.5 <= outcome.lock_wait < 15


@pytest.mark.parametrize("scope_sets", [1, 4])
def test_processes_on_one_redis_store(
    rotating_server: AuthServer,
    redis_server: RedisServer,  # noqa: F811
    scope_sets: int,
) -> None:
    """8 processes sharing a RedisStore: one refresh per scope set."""
    recipe = store_factory("redis", f"{redis_server.url}|proof-{scope_sets}:")
    check(run_processes(rotating_server, recipe, 8, scope_sets), scope_sets)


def test_killed_redis_lock_holder(
    rotating_server: AuthServer,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """A SIGKILLed holder of the Redis lock delays the others by about its lease; then one
    refresh serves them all."""
    recipe = store_factory("redis", f"{redis_server.url}|proof-kill:")
    outcome = run_killed_holder(rotating_server, recipe, lease=1.5)
    check(outcome, 1)
    assert outcome.lock_wait is not None and 1.5 <= outcome.lock_wait < 15


def test_asyncio_tasks_on_async_redis_store(
    rotating_server: AuthServer,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """200 tasks on an AsyncRedisStore (cross-process lock taken with async polling): one
    refresh, and the event loop keeps running."""
    recipe = store_factory("redis", f"{redis_server.url}|proof-async:")
    outcome = run_tasks(rotating_server, callers=200, scope_sets=1, redis=recipe)
    check(outcome, 1)
    assert outcome.max_stall_ms is not None and outcome.max_stall_ms < 50


def test_lease_is_renewed_while_a_slow_request_runs(tmp_path: Path) -> None:
    """With a 0.3 s lease and a token endpoint answering after 1.2 s, the holder's renewals
    keep the lock: 4 processes on a DiskStore still make one request."""
    with start_auth_server(rotate_refresh_token=True, AS_TOKEN_DELAY_MS=1200) as slow:
        outcome = run_processes(slow, disk_recipe(tmp_path), 4, 1, lock_lease=0.3)
    check(outcome, 1)


def test_lease_renewal_off(rotating_server: AuthServer, tmp_path: Path) -> None:
    """Without lease renewal, a 0.3 s lease held while the request waits runs out: the next
    process takes the lock while the first still waits for its answer, and 4 processes each
    refresh."""
    recipe = disk_recipe(tmp_path)
    outcome = run_processes(rotating_server, recipe, 4, 1, lock_lease=0.3, off="renewal")
    check_fails(outcome, 4)
