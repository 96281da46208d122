"""The store's cross-process lock (``AsyncStoreLock``) in one process: issuers that share a
store, as processes would, make one request; a held lock is renewed past its lease.

Each scenario is run a second time with its mechanism switched off (``_mechanisms``), where the
failure must show. Lock waits poll on the fake clock; only the lease renewal runs on real time
(a background task every third of the lease), with a lease of 0.3 s.
"""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from _clock import FakeClock
from _locking_store import LockingMemoryStore
from _mechanisms import without_lease_renewal, without_store_lock

from oauth2_token_manager import AsyncAccessTokenManager, AsyncIssuer, ClientConfig
from oauth2_token_manager._async._locks import AsyncStoreLock
from oauth2_token_manager._stores import async_store

ISSUER = "https://as.example"
METADATA = {"token_endpoint": f"{ISSUER}/token"}


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The tests here run on asyncio and on trio (through anyio)."""
    return str(request.param)


@pytest.mark.parametrize("mechanism", [True, False], ids=["store-lock", "store-lock-off"])
@pytest.mark.anyio
async def test_issuers_sharing_a_store_make_one_request(
    mechanism: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two issuers (two processes' worth: separate in-process locks) on one locking store miss
    together: the first holds the store lock while its request is held at the endpoint, the
    second polls (in fake time) and then finds the token. Without the store lock both ask."""
    if not mechanism:
        without_store_lock(monkeypatch)
    clock = FakeClock()
    store = LockingMemoryStore(clock, clock.monotonic)
    requests = 0
    open_endpoint = anyio.Event()
    everyone_waits = anyio.Event()

    def check() -> None:
        if requests + (store.busy > 0) == 2:  # each caller: at the endpoint or polling
            everyone_waits.set()

    async def endpoint(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        check()
        await open_endpoint.wait()
        body = {"access_token": f"at-{requests}", "token_type": "Bearer", "expires_in": 3600}
        return httpx.Response(200, json=body)

    store.on_busy = check

    def issuer() -> AsyncIssuer:
        return AsyncIssuer(
            ISSUER,
            ClientConfig("c", "s"),
            store=store,
            http=httpx.AsyncClient(transport=httpx.MockTransport(endpoint)),
            discovery=False,
            metadata=METADATA,
            clock=clock,
            sleep=clock.async_sleep,
            monotonic=clock.monotonic,
        )

    values: list[str] = []

    async def call(manager: AsyncAccessTokenManager) -> None:
        values.append((await manager.get(scopes=["a"])).value)

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(call, AsyncAccessTokenManager(issuer()))
        await everyone_waits.wait()
        open_endpoint.set()
    if not mechanism:
        assert requests == 2 and store.busy == 0
        return
    assert requests == 1
    assert values == ["at-1", "at-1"]
    assert store.busy >= 1 and store.held == {}
    assert clock.sleeps and all(0.01 <= s <= 0.03 for s in clock.sleeps)


@pytest.mark.parametrize("mechanism", [True, False], ids=["renewal", "renewal-off"])
@pytest.mark.anyio
async def test_a_held_lock_is_renewed_past_its_lease(
    mechanism: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While held, the lock is renewed every third of its 0.3 s lease: at the fourth renewal
    tick (at least 0.4 s after it was taken) another owner is still refused. Without the
    renewal, the lease has run out by then and another owner takes the lock. (Real time: a
    stall of the loop longer than two thirds of the lease would lose the lock for real.)"""
    if not mechanism:
        without_lease_renewal(monkeypatch)
    store = LockingMemoryStore(time.time, time.monotonic)
    lock = AsyncStoreLock(async_store(store, time.time), "k", lease=0.3, timeout=1)
    renew = lock._renew
    ticks = 0
    taken_by_other: list[bool] = []
    fourth = anyio.Event()

    async def tick() -> None:
        nonlocal ticks
        await renew()
        ticks += 1
        if ticks == 4:
            taken_by_other.append(store.try_lock("k", "other-owner", 1))
            fourth.set()

    lock._renew = tick  # type: ignore[method-assign]
    assert await lock.acquire()
    with anyio.fail_after(10):
        await fourth.wait()
    await lock.release()
    if not mechanism:
        assert taken_by_other == [True]
        assert store.renewals == 0
        return
    assert taken_by_other == [False]
    assert store.renewals >= 4
    assert store.holder("k") is None  # released
