"""Many callers, one token request: scenarios shared by the proof tests and the benchmark.

Each scenario prepares a subject whose access token is expired (its refresh token rotates on
every use at the real test authorization server), lets many callers ask at once, and returns
what happened: token requests the server counted, ``invalid_grant`` answers, the scopes each
caller received, the wall time until all had their token and (async) the longest event-loop
stall. Callers are asyncio tasks, threads, or processes sharing a ``DiskStore`` or
``RedisStore`` (processes start with ``spawn`` and wait on a barrier).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _authserver import AuthServer, obtain_refresh_token

from oauth2_token_manager import (
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncIssuer,
    ClientConfig,
    DiskStore,
    GroupKey,
    Issuer,
    RefreshTokenManager,
    TokenStore,
)
from oauth2_token_manager._scopes import normalize

CLIENT_ID = "basic-client"
SUBJECT = "alice"
SCOPE_SETS = [["api:read"], ["openid"], ["api:read", "openid"], ["offline_access"]]


@dataclasses.dataclass
class Outcome:
    """What one scenario produced."""

    callers: int
    scope_sets: int
    token_requests: int
    invalid_grants: int
    failures: list[str]
    wrong_scopes: int
    seconds: float
    max_stall_ms: float | None = None
    """Async only: the longest single task step (how long one caller blocked the loop)."""
    max_iteration_ms: float | None = None
    """Async only: the longest loop iteration (all steps that were ready at once)."""
    first_done: float | None = None
    """Processes only: when the first caller had its token (``time.perf_counter``)."""
    lock_wait: float | None = None
    """Killed holder only: from the dead holder taking the lock to the first caller served."""


def client(server: AuthServer) -> ClientConfig:
    return ClientConfig(CLIENT_ID, server.client_secret(CLIENT_ID))


def store_factory(kind: str, where: str) -> Callable[[], TokenStore]:
    """A picklable recipe for the shared store of a scenario (``disk`` or ``redis``)."""
    return _StoreRecipe(kind, where)


@dataclasses.dataclass(frozen=True)
class _StoreRecipe:
    kind: str
    where: str  # a directory, or "redis://127.0.0.1:PORT/0|prefix"

    def __call__(self) -> TokenStore:
        if self.kind == "disk":
            return DiskStore(self.where)
        from oauth2_token_manager._stores._redis import RedisStore

        url, prefix = self.where.split("|")
        return RedisStore(url=url, prefix=prefix)


def prepare(server: AuthServer, store: TokenStore, **options: Any) -> None:
    """Register a fresh grant for SUBJECT and leave its access tokens expired."""
    issuer = Issuer(
        server.issuer, client(server), store=store, allow_insecure_loopback=True, **options
    )
    tokens = obtain_refresh_token(
        server, CLIENT_ID, scopes=("openid", "offline_access", "api:read")
    )
    RefreshTokenManager(issuer).register(tokens["refresh_token"], subject=SUBJECT)
    access = AccessTokenManager(issuer)
    token = access.get(SUBJECT, ["api:read"])
    access.update(token, expires_at=time.time() - 1)
    issuer.close()
    server.reset_counts()


def _scopes_for(i: int, scope_sets: int) -> list[str]:
    return SCOPE_SETS[i % scope_sets]


def _outcome(
    server: AuthServer, results: Sequence[tuple[int, Any]], scope_sets: int, seconds: float
) -> Outcome:
    counters = server.counters()
    failures = [r for _, r in results if isinstance(r, str)]
    wrong = 0
    for i, result in results:
        if not isinstance(result, str):
            want = normalize(_scopes_for(i, scope_sets))[0]
            wrong += result != want
    return Outcome(
        callers=len(results),
        scope_sets=scope_sets,
        token_requests=counters["total"],
        invalid_grants=counters["failed_by_grant_type"].get("refresh_token", 0),
        failures=failures,
        wrong_scopes=wrong,
        seconds=seconds,
    )


# --- asyncio tasks -----------------------------------------------------------------------


def run_tasks(
    server: AuthServer,
    callers: int = 200,
    scope_sets: int = 1,
    redis: Callable[[], TokenStore] | None = None,
) -> Outcome:
    """``callers`` asyncio tasks on one AsyncIssuer ask at once: on a MemoryStore, or with
    ``redis`` (a redis recipe) on an ``AsyncRedisStore`` of the same server and prefix."""
    from oauth2_token_manager import MemoryStore

    if redis is None:
        store: Any = MemoryStore()
        prepare(server, store)
    else:
        assert isinstance(redis, _StoreRecipe)
        prepare(server, redis())
        from oauth2_token_manager._stores._async_redis import AsyncRedisStore

        url, prefix = redis.where.split("|")
        store = AsyncRedisStore(url=url, prefix=prefix)
    return asyncio.run(_tasks(server, store, callers, scope_sets))


async def _tasks(server: AuthServer, store: Any, callers: int, scope_sets: int) -> Outcome:
    issuer = AsyncIssuer(server.issuer, client(server), store=store, allow_insecure_loopback=True)
    access = AsyncAccessTokenManager(issuer)
    await issuer.metadata()  # discovery is not part of the race
    server.reset_counts()
    results: list[tuple[int, Any]] = []
    stall = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        """The longest loop iteration: how long any ready task waited for its turn."""
        nonlocal stall
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            stall = max(stall, now - last)
            last = now

    async def call(i: int) -> None:
        try:
            token = await access.get(SUBJECT, _scopes_for(i, scope_sets))
            results.append((i, token.scopes))
        except Exception as exc:
            results.append((i, repr(exc)))

    # The test process holds a large heap; a full collection of it in the middle of the race
    # would be measured as a stall that is not the library's. Freeze what exists now (before
    # the ticker starts, so that this collection is not measured either).
    gc.collect()
    gc.freeze()
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    try:
        with _longest_step() as step:
            await asyncio.gather(*(call(i) for i in range(callers)))
    finally:
        gc.unfreeze()
    seconds = time.perf_counter() - start
    done.set()
    await tick
    await issuer.aclose()
    if hasattr(store, "aclose"):
        await store.aclose()
    outcome = _outcome(server, results, scope_sets, seconds)
    outcome.max_stall_ms = step[0] * 1000
    outcome.max_iteration_ms = stall * 1000
    return outcome


@contextlib.contextmanager
def _longest_step() -> Iterator[list[float]]:
    """Time every callback the event loop runs (each task step): the longest one is how long
    a single caller blocked the loop."""
    longest = [0.0]
    original = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        start = time.perf_counter()
        try:
            original(handle)
        finally:
            longest[0] = max(longest[0], time.perf_counter() - start)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    try:
        yield longest
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]


# --- threads -----------------------------------------------------------------------------


def run_threads(server: AuthServer, callers: int = 64, scope_sets: int = 1) -> Outcome:
    """``callers`` threads on one sync Issuer (MemoryStore) ask at once."""
    from oauth2_token_manager import MemoryStore

    store = MemoryStore()
    prepare(server, store)
    issuer = Issuer(server.issuer, client(server), store=store, allow_insecure_loopback=True)
    access = AccessTokenManager(issuer)
    issuer.metadata()
    server.reset_counts()
    barrier = threading.Barrier(callers + 1)
    results: list[tuple[int, Any]] = []

    def call(i: int) -> None:
        barrier.wait()
        try:
            results.append((i, access.get(SUBJECT, _scopes_for(i, scope_sets)).scopes))
        except Exception as exc:
            results.append((i, repr(exc)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    issuer.close()
    return _outcome(server, results, scope_sets, seconds)


# --- processes ---------------------------------------------------------------------------


def _switch_off(mechanism: str, overlap: Any) -> None:
    """In a caller process: switch ``mechanism`` off (``store-lock``: acquire without asking
    the store; ``renewal``: never renew a held lock's lease), and hold every token request
    until all callers have one ready (``overlap``, a barrier), so that the requests that the
    mechanism would have kept apart surely overlap."""
    from _mechanisms import without_grant_reread

    from oauth2_token_manager._sync._locks import StoreLock

    without_grant_reread()  # it would hide the failure from the callers (see there)
    if mechanism == "store-lock":
        StoreLock.acquire = lambda self, wait=True: True  # type: ignore[method-assign]
        StoreLock.release = lambda self: None  # type: ignore[method-assign]
    else:
        assert mechanism == "renewal", mechanism
        StoreLock._renew = lambda self: None  # type: ignore[method-assign]
    request_token = Issuer.request_token

    def overlapping(self: Issuer, *args: Any, **kwargs: Any) -> Any:
        overlap.wait(60)
        return request_token(self, *args, **kwargs)

    Issuer.request_token = overlapping  # type: ignore[method-assign]


def _process_caller(
    issuer_url: str,
    secret: str,
    recipe: _StoreRecipe,
    i: int,
    scope_sets: int,
    barrier: Any,
    queue: Any,
    lock_lease: float,
    off: str | None = None,
    overlap: Any = None,
) -> None:
    if off is not None:
        _switch_off(off, overlap)
    issuer = Issuer(
        issuer_url,
        ClientConfig(CLIENT_ID, secret),
        store=recipe(),
        allow_insecure_loopback=True,
        lock_lease=lock_lease,
    )
    access = AccessTokenManager(issuer)
    issuer.metadata()
    barrier.wait()
    try:
        token = access.get(SUBJECT, _scopes_for(i, scope_sets))
        queue.put((i, sorted(token.scopes or ()), time.perf_counter()))
    except Exception as exc:
        queue.put((i, repr(exc), time.perf_counter()))
    issuer.close()


def run_processes(
    server: AuthServer,
    recipe: Callable[[], TokenStore],
    callers: int = 8,
    scope_sets: int = 1,
    lock_lease: float = 10.0,
    off: str | None = None,
) -> Outcome:
    """``callers`` processes, each with its own Issuer on one shared store, ask at once.

    ``off``: a mechanism each process switches off (``store-lock`` or ``renewal``, see
    ``_switch_off``), for the proof that the scenario fails without it.
    """
    prepare(server, recipe())
    return run_processes_after(server, recipe, callers, scope_sets, lock_lease, off)


def run_processes_after(
    server: AuthServer,
    recipe: Callable[[], TokenStore],
    callers: int,
    scope_sets: int,
    lock_lease: float,
    off: str | None = None,
) -> Outcome:
    """The processes' race on the store as it is (no preparation)."""
    assert isinstance(recipe, _StoreRecipe)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(callers + 1)
    overlap = ctx.Barrier(callers) if off is not None else None
    queue = ctx.Queue()
    secret = server.client_secret(CLIENT_ID) or ""
    procs = [
        ctx.Process(
            target=_process_caller,
            args=(
                server.issuer,
                secret,
                recipe,
                i,
                scope_sets,
                barrier,
                queue,
                lock_lease,
                off,
                overlap,
            ),
        )
        for i in range(callers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=60)
    start = time.perf_counter()
    raw = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    seconds = max(r[2] for r in raw) - start
    results = [(i, frozenset(r) if isinstance(r, list) else r) for i, r, _ in raw]
    outcome = _outcome(server, results, scope_sets, seconds)
    outcome.first_done = min(r[2] for r in raw)
    return outcome


# --- a holder killed while holding the lock ----------------------------------------------


def _hold_and_die(
    issuer_url: str, secret: str, recipe: _StoreRecipe, ready: Any, taken: Any, lease: float
) -> None:
    issuer = Issuer(
        issuer_url,
        ClientConfig(CLIENT_ID, secret),
        store=recipe(),
        allow_insecure_loopback=True,
        lock_lease=lease,
    )
    group = GroupKey("access", issuer_url, CLIENT_ID, SUBJECT, "")
    lock = issuer.store_lock((group, normalize(["api:read"])[1]))
    lock.acquire()
    taken.value = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


def run_killed_holder(
    server: AuthServer, recipe: Callable[[], TokenStore], lease: float = 1.5, callers: int = 4
) -> Outcome:
    """A process takes the key's store lock and is SIGKILLed; then ``callers`` processes ask.

    ``lock_wait`` is the time from the dead holder taking the lock to the first caller served:
    at least the lease.
    """
    assert isinstance(recipe, _StoreRecipe)
    prepare(server, recipe())
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    taken = ctx.Value("d", 0.0)
    holder = ctx.Process(
        target=_hold_and_die,
        args=(server.issuer, server.client_secret(CLIENT_ID) or "", recipe, ready, taken, lease),
    )
    holder.start()
    assert ready.wait(60)
    holder.join(30)
    assert holder.exitcode == -signal.SIGKILL
    outcome = run_processes_after(server, recipe, callers, 1, lease)
    assert outcome.first_done is not None
    outcome.lock_wait = outcome.first_done - taken.value
    return outcome


def disk_recipe(directory: Path) -> Callable[[], TokenStore]:
    """The shared-disk recipe for a directory."""
    return store_factory("disk", str(directory))
