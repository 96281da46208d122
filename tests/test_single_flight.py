"""Concurrent callers of one manager that miss together send one token request per cache key
(threads with the sync manager, asyncio tasks with the async one), via ``MockTransport``."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from oauth2_token_manager import (
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncIssuer,
    ClientConfig,
    Issuer,
)

ISSUER = "https://as.example"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The async tests here run on asyncio and on trio (through anyio)."""
    return str(request.param)


METADATA = {"token_endpoint": f"{ISSUER}/token"}


class Server:
    """Counts token requests per scope and answers each with a fresh token."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.requests: dict[str, int] = {}
        self.lock = threading.Lock()
        self.gate = gate

    def __call__(self, request: httpx.Request) -> httpx.Response:
        scope = dict(httpx.QueryParams(request.content.decode())).get("scope", "")
        with self.lock:
            self.requests[scope] = self.requests.get(scope, 0) + 1
            n = self.requests[scope]
        if self.gate is not None:
            self.gate.wait(5)
        body = {"access_token": f"{scope}-{n}", "token_type": "Bearer", "expires_in": 3600}
        return httpx.Response(200, json=body)


def test_threads_share_one_request_per_key() -> None:
    """64 threads asking for 4 scope sets at once: one request per set, right scopes each."""
    gate = threading.Event()
    server = Server(gate)
    http = httpx.Client(transport=httpx.MockTransport(server))
    issuer = Issuer(ISSUER, ClientConfig("c", "s"), http=http, discovery=False, metadata=METADATA)
    manager = AccessTokenManager(issuer)
    scopes = [f"s{i % 4}" for i in range(64)]

    def call(scope: str) -> Any:
        return manager.get(scopes=[scope])

    with ThreadPoolExecutor(64) as pool:
        futures = [pool.submit(call, scope) for scope in scopes]
        gate.set()
        tokens = [f.result(10) for f in futures]
    assert server.requests == {f"s{i}": 1 for i in range(4)}
    for scope, token in zip(scopes, tokens, strict=True):
        assert token.scopes == frozenset({scope})
        assert token.value == f"{scope}-1"


@pytest.mark.anyio
async def test_tasks_share_one_request_per_key() -> None:
    """200 asyncio tasks over 4 scope sets: one request per set, right scopes each."""
    server = Server()
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
    assert server.requests == {f"s{i}": 1 for i in range(4)}
    assert all(results[i].scopes == frozenset({f"s{i % 4}"}) for i in range(200))
    assert issuer.locks._entries == {}  # no lock left behind


@pytest.mark.anyio
async def test_cancelled_waiter_leaves_no_lock() -> None:
    """A waiter cancelled while waiting for the lock does not leak it; later calls proceed."""
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

    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.get)  # the holder: its request waits for ``release``
        while calls == 0:
            await anyio.lowlevel.checkpoint()
        tg.start_soon(waiter)
        while next(iter(issuer.locks._entries.values())).users < 2:
            await anyio.lowlevel.checkpoint()
        waiter_scope.cancel()  # cancelled while waiting for the lock
        while next(iter(issuer.locks._entries.values())).users > 1:
            await anyio.lowlevel.checkpoint()
        release.set()
    assert (await manager.get()).value == "t1"
    assert calls == 1
    assert issuer.locks._entries == {}


def test_one_manager_serves_two_event_loops() -> None:
    """Two threads, each running its own event loop, share one manager: locks never cross
    loops (no 'bound to a different event loop' errors) and the token is shared."""
    import asyncio

    server = Server()
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    issuer = AsyncIssuer(
        ISSUER, ClientConfig("c", "s"), http=http, discovery=False, metadata=METADATA
    )
    manager = AsyncAccessTokenManager(issuer)
    values: list[str] = []

    async def many() -> None:
        tokens = await asyncio.gather(*(manager.get(scopes=["x"]) for _ in range(20)))
        values.extend(t.value for t in tokens)

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(values) == 40
    assert server.requests["x"] <= 2  # at most one per loop; usually the second finds it
    assert len(set(values)) == server.requests["x"]
