"""Concurrent callers of one manager that miss together send one token request per cache key
(threads with the sync manager, asyncio and trio tasks with the async one), via
``MockTransport``.

Every scenario holds the token endpoint closed until each caller is either in it or waiting for
a lock, then opens it: the overlap is certain, never a matter of timing. Each runs a second time
with its mechanism switched off (``_mechanisms``), where the failure must show.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from _clock import FakeClock
from _mechanisms import without_keyed_locks, without_waiter_cleanup

from oauth2_token_manager import (
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncIssuer,
    ClientConfig,
    Issuer,
)
from oauth2_token_manager._async import _locks as async_locks

ISSUER = "https://as.example"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The async tests here run on asyncio and on trio (through anyio)."""
    return str(request.param)


METADATA = {"token_endpoint": f"{ISSUER}/token"}

single_flight = pytest.mark.parametrize(
    "mechanism", [True, False], ids=["single-flight", "single-flight-off"]
)


class Server:
    """Counts token requests per scope and answers each with a fresh token; with a ``gate``,
    an answer waits until the gate opens (``inside`` counts the requests waiting)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.requests: dict[str, int] = {}
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.inside = 0
        self.gate = gate

    def count(self, request: httpx.Request) -> tuple[str, int]:
        scope = dict(httpx.QueryParams(request.content.decode())).get("scope", "")
        with self.lock:
            self.requests[scope] = self.requests.get(scope, 0) + 1
            self.inside += 1
            self.arrived.notify_all()
            return scope, self.requests[scope]

    @staticmethod
    def answer(scope: str, n: int) -> httpx.Response:
        body = {"access_token": f"{scope}-{n}", "token_type": "Bearer", "expires_in": 3600}
        return httpx.Response(200, json=body)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        scope, n = self.count(request)
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        return self.answer(scope, n)


class AsyncServer(Server):
    """The same server for async clients: an answer waits on an ``anyio.Event``."""

    def __init__(self) -> None:
        super().__init__()
        self.open = anyio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:  # type: ignore[override]
        scope, n = self.count(request)
        await self.open.wait()
        return self.answer(scope, n)


def tell_on_join(locks: Any, arrived: threading.Condition) -> None:
    """Notify ``arrived`` whenever a caller joins a key's lock entry (to wait for a state
    without polling the clock)."""
    join = locks._join

    def join_and_tell(full_key: Any) -> Any:
        entry = join(full_key)
        with arrived:
            arrived.notify_all()
        return entry

    locks._join = join_and_tell


@single_flight
def test_threads_share_one_request_per_key(
    mechanism: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 threads asking for 4 scope sets at once: one request per set, right scopes each;
    without the per-key lock every thread sends its own request."""
    if not mechanism:
        without_keyed_locks(monkeypatch)
    gate = threading.Event()
    server = Server(gate)
    http = httpx.Client(transport=httpx.MockTransport(server))
    issuer = Issuer(ISSUER, ClientConfig("c", "s"), http=http, discovery=False, metadata=METADATA)
    manager = AccessTokenManager(issuer)
    scopes = [f"s{i % 4}" for i in range(64)]
    locks = issuer.locks
    tell_on_join(locks, server.arrived)

    def settled() -> bool:
        """Every thread is in the token endpoint or waiting for its key's lock (each key's
        holder is in the endpoint, counted once)."""
        with locks._guard:
            waiting = sum(e.users for e in locks._entries.values()) - len(locks._entries)
        return server.inside + waiting == len(scopes)

    def call(scope: str) -> Any:
        return manager.get(scopes=[scope])

    with ThreadPoolExecutor(64) as pool:
        futures = [pool.submit(call, scope) for scope in scopes]
        with server.arrived:
            assert server.arrived.wait_for(settled, timeout=10)
        gate.set()
        tokens = [f.result(10) for f in futures]
    if not mechanism:
        assert server.requests == {f"s{i}": 16 for i in range(4)}
        return
    assert server.requests == {f"s{i}": 1 for i in range(4)}
    for scope, token in zip(scopes, tokens, strict=True):
        assert token.scopes == frozenset({scope})
        assert token.value == f"{scope}-1"


@single_flight
@pytest.mark.anyio
async def test_tasks_share_one_request_per_key(
    mechanism: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 tasks over 4 scope sets, the endpoint held until all wait: one request per set, right
    scopes each; without the per-key lock every task sends its own request."""
    if not mechanism:
        without_keyed_locks(monkeypatch)
    server = AsyncServer()
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    issuer = AsyncIssuer(
        ISSUER, ClientConfig("c", "s"), http=http, discovery=False, metadata=METADATA
    )
    manager = AsyncAccessTokenManager(issuer)
    results: dict[int, Any] = {}

    async def call(i: int) -> None:
        results[i] = await manager.get(scopes=[f"s{i % 4}"])

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(call, i)
        await anyio.wait_all_tasks_blocked()  # each task: in the endpoint or on a lock
        server.open.set()
    if not mechanism:
        assert server.requests == {f"s{i}": 50 for i in range(4)}
        return
    assert server.requests == {f"s{i}": 1 for i in range(4)}
    assert all(results[i].scopes == frozenset({f"s{i % 4}"}) for i in range(200))
    assert all(results[i].value == f"s{i % 4}-1" for i in range(200))
    assert issuer.locks._entries == {}  # no lock left behind


@pytest.mark.parametrize("mechanism", [True, False], ids=["cleanup", "cleanup-off"])
@pytest.mark.anyio
async def test_cancelled_waiter_leaves_no_lock(
    mechanism: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter cancelled while waiting for the lock does not leak it; later calls proceed.
    Without the cleanup of a cancelled waiter, its lock entry stays in the table for good."""
    if not mechanism:
        without_waiter_cleanup(monkeypatch)
    release = anyio.Event()
    calls = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await release.wait()
        body = {"access_token": f"t{calls}", "token_type": "Bearer", "expires_in": 3600}
        return httpx.Response(200, json=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    issuer = AsyncIssuer(
        ISSUER, ClientConfig("c", "s"), http=http, discovery=False, metadata=METADATA
    )
    manager = AsyncAccessTokenManager(issuer)
    waiter_scope = anyio.CancelScope()

    async def waiter() -> None:
        with waiter_scope:
            await manager.get()

    def users() -> int:
        [entry] = issuer.locks._entries.values()
        return entry.users

    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.get)  # the holder: its request waits for ``release``
        await anyio.wait_all_tasks_blocked()
        assert calls == 1
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert users() == 2  # the holder, and the waiter blocked on the lock
        waiter_scope.cancel()  # cancelled while waiting for the lock
        await anyio.wait_all_tasks_blocked()
        assert waiter_scope.cancelled_caught
        if mechanism:
            assert users() == 1
        release.set()
    assert calls == 1
    if not mechanism:
        assert len(issuer.locks) == 1  # the cancelled waiter's count is never given back
        return
    assert (await manager.get()).value == "t1"
    assert calls == 1
    assert issuer.locks._entries == {}


@pytest.mark.parametrize(
    ("mechanism", "backends"),
    [(True, ("asyncio", "asyncio")), (True, ("asyncio", "trio")), (False, ("asyncio", "trio"))],
    ids=["per-loop-asyncio-asyncio", "per-loop-asyncio-trio", "per-loop-off-asyncio-trio"],
)
def test_one_manager_serves_two_event_loops(
    mechanism: bool, backends: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads, each running its own event loop, share one manager: locks never cross
    loops, each loop makes one request and every caller is served. With one lock for both
    loops (the loop identity left out of the key), the callers of the trio loop fail on the
    asyncio loop's lock, or the other way round (two asyncio loops would hang instead)."""
    if not mechanism:
        monkeypatch.setattr(async_locks, "async_loop_identity", lambda: None)
    gate = threading.Event()
    server = Server(gate)  # a blocking handler: the holder's loop stops until the gate opens
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    issuer = AsyncIssuer(
        ISSUER, ClientConfig("c", "s"), http=http, discovery=False, metadata=METADATA
    )
    manager = AsyncAccessTokenManager(issuer)
    locks = issuer.locks
    tell_on_join(locks, server.arrived)
    values: list[str] = []
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            values.append((await manager.get(scopes=["x"])).value)
        except Exception as exc:  # counted below
            with server.arrived:
                errors.append(exc)
                server.arrived.notify_all()

    async def many() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)

    def settled() -> bool:
        """Each of the 40 callers is in the token endpoint, waiting for a lock, or failed."""
        with locks._guard:
            waiting = sum(e.users for e in locks._entries.values()) - len(locks._entries)
        return server.inside + waiting + len(errors) == 40

    threads = [
        threading.Thread(target=anyio.run, args=(many,), kwargs={"backend": backend})
        for backend in backends
    ]
    for thread in threads:
        thread.start()
    with server.arrived:
        assert server.arrived.wait_for(settled, timeout=10)
    gate.set()
    for thread in threads:
        thread.join()
    if not mechanism:
        assert len(errors) == 20  # every caller of the loop that did not create the lock
        assert all(isinstance(e, RuntimeError) for e in errors)
        assert server.requests["x"] == 1
        return
    assert errors == []
    assert len(values) == 40
    assert server.requests["x"] == 2  # one per loop: each loop's first caller went
    assert len(set(values)) == 2


@single_flight
@pytest.mark.anyio
async def test_refresh_ahead_runs_once_while_the_others_keep_the_token(
    mechanism: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token due for refresh ahead (still valid): the first of 10 callers refreshes it (the
    endpoint held), the 9 others get the current token at once. Without the per-key lock
    (``try_hold``), every caller refreshes."""
    if not mechanism:
        without_keyed_locks(monkeypatch)
    clock = FakeClock()
    server = AsyncServer()
    server.open.set()
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    issuer = AsyncIssuer(
        ISSUER, ClientConfig("c", "s"), http=http, discovery=False, metadata=METADATA, clock=clock
    )
    manager = AsyncAccessTokenManager(issuer)
    first = await manager.get(scopes=["x"])
    clock.advance(3300)  # in the last 10% of 3600 s, more than the 60 s leeway left
    server.open = anyio.Event()
    values: list[str] = []

    async def call() -> None:
        values.append((await manager.get(scopes=["x"])).value)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(call)
        await anyio.wait_all_tasks_blocked()  # the refresher in the endpoint, the rest done
        if mechanism:
            assert values == [first.value] * 9
        server.open.set()
    if not mechanism:
        assert server.requests == {"x": 11}
        return
    assert server.requests == {"x": 2}
    assert sorted(values) == sorted([first.value] * 9 + ["x-2"])
