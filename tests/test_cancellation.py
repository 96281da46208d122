"""Cancellation never loses a grant and never leaves a lock held: a sweep over every await
point of a refresh with rotation at the real test server, on every store, under asyncio (an
anyio cancel scope, and a native ``Task.cancel`` as ``asyncio.wait_for`` does) and trio.

One ``get`` refreshes a grant (its refresh token rotates, its ID token is validated against
the JWK Set and the previous one): a first run counts its await points (each store call and
each HTTP exchange, before and after it), then each point k gets its own fresh grant and a
``get`` cancelled at point k. Afterwards the next ``get`` must succeed at once (no lock left
held: it sleeps on no busy store lock, in fake time), and a refresh after it must succeed too
(the stored refresh token is the live one: no ``invalid_grant``).

Excluded is the one window cancellation cannot close: after the token response reached the
transport and before the HTTP client returned it (the caller's deadline runs until the answer
arrives; the server's rotation is then lost, as in ``_crash``'s ``after_response``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from _authserver import AuthServer, obtain_refresh_token
from _clock import FakeClock
from _redis_server import RedisServer, redis_server  # noqa: F401
from conftest import recording_async_client

from oauth2_token_manager import (
    AsyncAccessTokenManager,
    AsyncClaimsManager,
    AsyncIssuer,
    AsyncRefreshTokenManager,
    ClientConfig,
    DiskStore,
    MemoryStore,
    OAuth2TokenManagerError,
)
from oauth2_token_manager._retry import RetryPolicy
from oauth2_token_manager._stores._adapters import AsyncLockingStoreAdapter, AsyncStoreAdapter

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CLIENT_ID = "basic-client"
SCOPES = ("openid", "offline_access", "api:read")
WINDOW = "after POST /token"
"""The point excluded from the sweep (see the module docstring)."""


@pytest.fixture(params=["asyncio", "asyncio-native", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """asyncio with anyio cancel scopes, asyncio with ``Task.cancel``, and trio."""
    return "asyncio" if request.param == "asyncio-native" else str(request.param)


@pytest.fixture
def native(request: pytest.FixtureRequest) -> bool:
    """Whether cancellation is asyncio's own ``Task.cancel`` (``asyncio.wait_for``)."""
    return "asyncio-native" in request.node.callspec.id


class Canceller:
    """Numbers the await points of a ``get`` while ``active``; cancels the caller at ``at``."""

    def __init__(self, at: int | None = None) -> None:
        self.at = at
        self.active = False
        self.points: list[str] = []
        self.cancel: Callable[[], None] = lambda: None

    async def point(self, name: str) -> None:
        if not self.active or name == WINDOW:
            return
        self.points.append(name)
        if len(self.points) == self.at:
            self.cancel()
        await anyio.lowlevel.checkpoint()


class CountingStore:
    """An async store whose every call (lease renewal aside) is two await points."""

    def __init__(self, inner: Any, canceller: Canceller) -> None:
        self._inner = inner
        self._canceller = canceller

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(fn) or name == "renew_lock":
            return fn

        async def call(*args: Any, **kwargs: Any) -> Any:
            await self._canceller.point(f"before store.{name}")
            result = await fn(*args, **kwargs)
            await self._canceller.point(f"after store.{name}")
            return result

        return call


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport; every exchange is two await points (see ``WINDOW``)."""

    def __init__(self, canceller: Canceller) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._canceller = canceller

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = f"{request.method} {request.url.path}"
        await self._canceller.point(f"before {name}")
        response = await self._inner.handle_async_request(request)
        await response.aread()
        await self._canceller.point(f"after {name}")
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclasses.dataclass
class Sweep:
    """What a sweep found."""

    points: int = 0
    grants_lost: int = 0
    locks_held: int = 0
    unreached: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)


def store_kinds(tmp_path: Path, redis_url: str | None) -> dict[str, Callable[[FakeClock], Any]]:
    """Fresh async stores by kind (AsyncRedisStore only on asyncio: redis-py's is asyncio's)."""
    kinds: dict[str, Callable[[FakeClock], Any]] = {
        "memory": lambda clock: AsyncStoreAdapter(MemoryStore(clock=clock)),
        "disk": lambda clock: AsyncLockingStoreAdapter(
            DiskStore(tmp_path / uuid.uuid4().hex, clock=clock)
        ),
    }
    if redis_url is not None:
        from oauth2_token_manager import AsyncRedisStore

        kinds["redis"] = lambda clock: AsyncRedisStore(
            url=redis_url, prefix=f"c{uuid.uuid4().hex[:12]}:", clock=clock
        )
    return kinds


async def cancelled_get(
    server: AuthServer, make_store: Callable[[FakeClock], Any], at: int | None, native: bool
) -> tuple[Canceller, str | None, bool]:
    """A fresh grant refreshed by a ``get`` cancelled at point ``at`` (``None``: counted only);
    then the checks. Returns the canceller, what went wrong (or ``None``), a lock left held."""
    clock = FakeClock(time.time())
    canceller = Canceller(at)
    inner = make_store(clock)
    store = CountingStore(inner, canceller)
    issuer = AsyncIssuer(
        server.issuer,
        ClientConfig(CLIENT_ID, server.client_secret(CLIENT_ID)),
        store=store,
        http=recording_async_client(transport=CountingTransport(canceller)),
        allow_insecure_loopback=True,
        clock=clock,
        sleep=clock.async_sleep,
        monotonic=clock.monotonic,
        retry=RetryPolicy(attempts=1, base_delay=0, max_delay=0),
        timeout=1.0,
    )
    # Set up by another issuer on the same store, so that the swept one starts cold: its get
    # discovers the metadata and fetches the JWK Set after the rotation.
    setup = AsyncIssuer(
        server.issuer,
        ClientConfig(CLIENT_ID, server.client_secret(CLIENT_ID)),
        store=inner,
        http=recording_async_client(),
        allow_insecure_loopback=True,
        clock=clock,
    )
    tokens = obtain_refresh_token(server, CLIENT_ID, scopes=SCOPES)
    await AsyncClaimsManager(setup).register_id_token(tokens["id_token"])
    await AsyncRefreshTokenManager(setup).register(
        tokens["refresh_token"], subject="alice", auto_introspect=False
    )
    await setup.aclose()
    refresh = AsyncRefreshTokenManager(issuer)
    access = AsyncAccessTokenManager(issuer)
    canceller.active = True
    try:
        if native:
            task = asyncio.ensure_future(access.get("alice"))
            canceller.cancel = task.cancel
            await asyncio.wait((task,))
            cancelled = task.cancelled()
            if not cancelled:
                task.result()
        else:
            with anyio.CancelScope() as scope:
                canceller.cancel = scope.cancel
                await access.get("alice")
            cancelled = scope.cancelled_caught
    finally:
        canceller.active = False
    if at is not None and not cancelled:
        return canceller, f"point {at} was not cancelled", False
    clock.sleeps.clear()
    problem: str | None = None
    lock_held = False
    try:
        token = await access.get("alice")
        lock_held = bool(clock.sleeps) or len(issuer.locks) > 0
        before = (await refresh.get("alice")).token_hash
        await access.invalidate(token)  # the next get must refresh with the stored token
        await access.get("alice")
        if (await refresh.get("alice")).token_hash == before:
            problem = "the second get did not refresh"
    except OAuth2TokenManagerError as exc:
        problem = f"{type(exc).__name__}: {exc}"
        lock_held = lock_held or "stayed busy" in str(exc)
    finally:
        await issuer.aclose()
        close = getattr(store, "aclose", None)
        if close is not None:
            await close()
    return canceller, problem, lock_held


async def sweep(server: AuthServer, make_store: Callable[[FakeClock], Any], native: bool) -> Sweep:
    """Count the points of one uncancelled refresh, then cancel at each in turn."""
    counted, problem, _ = await cancelled_get(server, make_store, None, native)
    assert problem is None, problem
    print("\npoints:", counted.points)
    result = Sweep(points=len(counted.points))
    for at in range(1, len(counted.points) + 1):
        for _ in range(3):
            canceller, problem, lock_held = await cancelled_get(server, make_store, at, native)
            if problem != f"point {at} was not cancelled":
                break
        else:
            # The refreshed ID token replaces the stored one (one more store call) only when
            # it differs, i.e. when the refresh falls in another second than the login: a
            # point of the counted run that three runs did not reach is timing, not a bug.
            result.unreached += 1
            continue
        where = canceller.points[at - 1] if len(canceller.points) >= at else "?"
        if problem is not None:
            result.grants_lost += "InvalidGrant" in problem or "no usable" in problem
            result.failures.append(f"{at} ({where}): {problem}")
        if lock_held:
            result.locks_held += 1
            result.failures.append(f"{at} ({where}): a lock was left held")
    return result


def check(result: Sweep, kind: str, backend: str) -> None:
    """Report the counts; every point must be clean."""
    print(
        f"\ncancellation sweep {kind}/{backend}: {result.points} points, "
        f"{result.grants_lost} grants lost, {result.locks_held} locks left held, "
        f"{result.unreached} not reached"
    )
    assert result.points >= 20  # discovery, JWKS, token, locks, reads and writes
    assert result.unreached <= 2, "more points than the ID token's replacement came and went"
    assert result.failures == []


@pytest.mark.parametrize("kind", ["memory", "disk"])
async def test_cancelled_refresh_loses_nothing(
    auth_server: AuthServer, tmp_path: Path, kind: str, native: bool, anyio_backend: str
) -> None:
    """A get cancelled at any await point of a rotating refresh (MemoryStore, DiskStore):
    no grant lost, no lock left held."""
    result = await sweep(auth_server, store_kinds(tmp_path, None)[kind], native)
    check(result, kind, anyio_backend + ("-native" if native else ""))


async def test_cancelled_refresh_loses_nothing_on_redis(
    auth_server: AuthServer,
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
    native: bool,
    anyio_backend: str,
) -> None:
    """The same sweep on AsyncRedisStore (asyncio only: redis-py's async client is asyncio's)."""
    if anyio_backend != "asyncio":
        pytest.skip("redis.asyncio runs on asyncio only")
    result = await sweep(auth_server, store_kinds(tmp_path, redis_server.url)["redis"], native)
    check(result, "redis", "asyncio" + ("-native" if native else ""))


async def test_a_shielded_call_completes_and_the_cancellation_follows(
    native: bool, anyio_backend: str
) -> None:
    """async_shielded runs its call to the end though the caller is cancelled meanwhile (an
    anyio or trio cancel scope, asyncio's Task.cancel), then raises the cancellation."""
    from oauth2_token_manager._synchronization import async_shielded

    done: list[str] = []
    cancel: list[Callable[[], None]] = []

    async def work() -> str:
        cancel[0]()
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        done.append("work")
        return "result"

    async def caller() -> None:
        assert await async_shielded(work) == "result"
        done.append("after")  # never: the cancellation is raised first

    if native:
        task = asyncio.ensure_future(caller())
        cancel.append(task.cancel)
        await asyncio.wait((task,))
        assert task.cancelled()
    else:
        with anyio.CancelScope() as scope:
            cancel.append(scope.cancel)
            await caller()
        assert scope.cancelled_caught
    assert done == ["work"]
