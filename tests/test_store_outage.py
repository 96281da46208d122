"""A store outage after the server answered a rotating refresh: nothing is lost.

Two issuers on one store stand for two processes (A and B):

- at the real test server (which rotates and, on reuse of a spent refresh token, revokes the
  grant): A refreshes; as the answer arrives the store goes down (RedisStore: its private
  redis-server is stopped; DiskStore: its calls fail, as on a locked database). A's write is
  retried with backoff, the store comes back, A stores the rotated token and serves its
  caller; B then refreshes with it. Also with A in its own process (RedisStore).
- at a ``MockTransport`` server that rotates without reuse detection (the real one always
  detects reuse): the outage outlasts A's lease, B takes the lock at recovery and refreshes
  with the spent token before A's late write lands: ``invalid_grant``. B reads the store again,
  finds the grant moved on, and refreshes once more with A's token instead of dropping it.

Each time both callers get an access token, no ``invalid_grant`` reaches a caller, and one
stored refresh token remains, which still works.
"""

from __future__ import annotations

import logging
import multiprocessing
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _authserver import AuthServer, obtain_refresh_token
from _clock import FakeClock
from _redis_server import _free_port, _stop, redis_binary, redis_command, wait_until_ready
from conftest import recording_async_client

from oauth2_token_manager import (
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncIssuer,
    AsyncRefreshTokenManager,
    ClientConfig,
    DiskStore,
    GroupKey,
    Issuer,
    RefreshTokenManager,
    StoreError,
)
from oauth2_token_manager._events import TokenEvent
from oauth2_token_manager._stores._adapters import AsyncLockingStoreAdapter

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CLIENT_ID = "basic-client"
SCOPES = ("openid", "offline_access", "api:read")


@pytest.fixture
def anyio_backend() -> str:
    """asyncio (AsyncRedisStore is asyncio's); the paths under test are not backend-specific
    (the cancellation sweep runs them on trio)."""
    return "asyncio"


# -- a redis-server that can be stopped and started again, its data kept --------------------


class RestartableRedis:
    """A private redis-server with an append-only file, so that a restart keeps the data."""

    def __init__(self, directory: Path) -> None:
        self.binary = redis_binary()
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it on its port and wait until it answers PING."""
        command = redis_command(
            self.binary, self.port, self.directory, self.directory / "redis.log", append_only=True
        )
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_until_ready(self.process, self.port):
            raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Stop it (SIGTERM: it syncs its append-only file and exits)."""
        if self.process is not None:
            _stop(self.process)
        self.process = None


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A private redis-server for one test, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="oauth2tm-outage-") as directory:
        server = RestartableRedis(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


# -- the store of the scenario ---------------------------------------------------------------


class SharedStore:
    """The async store both issuers use, as the test sees it: every lock taken is recorded
    (to let a lease "run out"), and ``down`` makes every call fail with ``StoreError`` (for
    DiskStore; a stopped redis-server fails by itself)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False
        self.locks: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.inner, name)
        if not callable(fn) or name.startswith("_") or name in ("aclose", "close"):
            return fn

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreError("token store failed: the database is locked")
            result = await fn(*args, **kwargs)
            if name == "try_lock" and result:
                self.locks.append((args[0], args[1]))
            return result

        return call

    async def lapse_leases(self) -> None:
        """Every lock taken so far is freed, as a lease running out during an outage does."""
        for name, owner in self.locks:
            await self.inner.unlock(name, owner)
        self.locks.clear()


class Outage:
    """How one store kind goes down and comes back."""

    def __init__(
        self, store: SharedStore, down: Callable[[], None], up: Callable[[], None]
    ) -> None:
        self.store = store
        self.down = down
        self.up = up


@pytest.fixture(params=["disk", "redis"])
def outage(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Outage]:
    """DiskStore whose calls fail while down, or AsyncRedisStore whose server is stopped."""
    if request.param == "disk":
        shared = SharedStore(AsyncLockingStoreAdapter(DiskStore(tmp_path / "db", clock=clock)))

        def down() -> None:
            shared.down = True

        def up() -> None:
            shared.down = False

        yield Outage(shared, down, up)
        return
    from oauth2_token_manager import AsyncRedisStore

    redis_server = request.getfixturevalue("restartable_redis")
    store = AsyncRedisStore(url=redis_server.url, prefix=f"o{uuid.uuid4().hex[:8]}:", clock=clock)
    yield Outage(SharedStore(store), redis_server.stop, redis_server.start)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting now (the real server's ID tokens are checked against it)."""
    return FakeClock(time.time())


async def stored_refresh_tokens(store: Any, issuer: str) -> list[str]:
    """The hashes of alice's stored refresh tokens."""
    group = GroupKey("refresh", issuer, CLIENT_ID, "alice", "")
    return [t.token_hash for t in await store.find(group, None)]


Hook = Callable[[httpx.Response], Any]


class Issuers:
    """Issuers (processes) on the scenario's one store, at one server."""

    def __init__(self, url: str, secret: str, store: SharedStore, clock: FakeClock) -> None:
        self.url = url
        self.client = ClientConfig(CLIENT_ID, secret)
        self.store = store
        self.clock = clock
        self.made: list[AsyncIssuer] = []

    def __call__(
        self, *, answered: Hook | None = None, transport: Any = None, **options: Any
    ) -> AsyncIssuer:
        http = recording_async_client(transport=transport)
        if answered is not None:
            http.event_hooks["response"].append(answered)
        options.setdefault("sleep", self.clock.async_sleep)
        issuer = AsyncIssuer(
            self.url,
            self.client,
            store=self.store,
            http=http,
            allow_insecure_loopback=True,
            clock=self.clock,
            monotonic=self.clock.monotonic,
            **options,
        )
        self.made.append(issuer)
        return issuer

    async def close(self) -> None:
        for issuer in self.made:
            await issuer.aclose()
        if hasattr(self.store.inner, "aclose"):
            await self.store.inner.aclose()


class HeldSleep:
    """A's sleep: the first backoff waits until the test lets it go (``go``)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sleeps: list[float] = []
        self.waiting = anyio.Event()
        self.go = anyio.Event()

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) == 1:
            self.waiting.set()
            await self.go.wait()
        await self.clock.async_sleep(seconds)


async def test_outage_as_the_rotation_arrives_loses_nothing(
    auth_server: AuthServer, clock: FakeClock, outage: Outage
) -> None:
    """The store fails as a rotated refresh token arrives (real server): A retries the write
    with backoff until the store is back, serves its token, and the grant lives on."""
    issuers = Issuers(
        auth_server.issuer, auth_server.client_secret(CLIENT_ID) or "", outage.store, clock
    )
    held = HeldSleep(clock)

    async def store_goes_down(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/token"):
            await response.aread()
            outage.down()

    tokens = obtain_refresh_token(auth_server, CLIENT_ID, scopes=SCOPES)
    await AsyncRefreshTokenManager(issuers()).register(
        tokens["refresh_token"], subject="alice", auto_introspect=False
    )
    a = issuers(sleep=held, answered=store_goes_down)
    result: list[Any] = []

    async def run_a() -> None:
        try:
            result.append(await AsyncAccessTokenManager(a).get("alice", ["api:read"]))
        except Exception as exc:
            result.append(exc)
            held.waiting.set()

    with anyio.fail_after(120):  # against a hang only: nothing here waits on time
        async with anyio.create_task_group() as group:
            group.start_soon(run_a)
            await held.waiting.wait()
            outage.up()
            held.go.set()
    assert not isinstance(result[0], Exception), result[0]
    assert held.sleeps  # the write failed and was retried
    assert len(await stored_refresh_tokens(outage.store, auth_server.issuer)) == 1
    # B refreshes (another scope: a new token request) with the token A stored
    b_token = await AsyncAccessTokenManager(issuers()).get("alice", ["openid"])
    assert b_token.value != result[0].value
    assert len(await stored_refresh_tokens(outage.store, auth_server.issuer)) == 1
    await issuers.close()


class RotatingServer:
    """A token endpoint that rotates refresh tokens and answers a spent one with
    ``invalid_grant`` without revoking the grant (no reuse detection)."""

    def __init__(self, first: str) -> None:
        self.valid = {first}
        self.count = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        if form.get("refresh_token") not in self.valid:
            return httpx.Response(400, json={"error": "invalid_grant"})
        self.valid.discard(form["refresh_token"])
        self.count += 1
        rotated = f"rt-{self.count}-{uuid.uuid4().hex}"
        self.valid.add(rotated)
        body = {
            "access_token": f"at-{self.count}-{uuid.uuid4().hex}",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": rotated,
        }
        return httpx.Response(200, json=body)


async def test_a_stale_invalid_grant_is_retried_with_the_late_write(
    clock: FakeClock, outage: Outage
) -> None:
    """The outage outlasts A's lease: B refreshes with the spent token (invalid_grant), A's
    write lands, and B, reading the store again, refreshes with A's token instead of
    dropping the grant (a server without reuse detection)."""
    url = "https://as.example"
    first = f"rt-0-{uuid.uuid4().hex}"
    server = RotatingServer(first)
    issuers = Issuers(url, "secret", outage.store, clock)
    held = HeldSleep(clock)
    a_rotated = anyio.Event()

    def a_event(event: TokenEvent) -> None:
        if event.kind == "rotated":
            a_rotated.set()

    async def store_goes_down(response: httpx.Response) -> None:
        await response.aread()
        outage.down()

    async def a_writes_late(response: httpx.Response) -> None:
        if response.status_code == 400:
            held.go.set()  # A's retry may go now, after B's stale refresh was answered
            await a_rotated.wait()

    def make(**options: Any) -> AsyncIssuer:
        return issuers(
            transport=httpx.MockTransport(server),
            discovery=False,
            metadata={"token_endpoint": f"{url}/token"},
            **options,
        )

    await AsyncRefreshTokenManager(make()).register(first, subject="alice", auto_introspect=False)
    a = make(sleep=held, answered=store_goes_down, on_event=a_event)
    b = make(answered=a_writes_late)
    results: dict[str, Any] = {}

    async def run_a() -> None:
        try:
            results["A"] = await AsyncAccessTokenManager(a).get("alice", ["x"])
        except Exception as exc:
            results["A"] = exc
            held.waiting.set()
            a_rotated.set()  # nothing to wait for any more

    with anyio.fail_after(120):  # against a hang only: nothing here waits on time
        async with anyio.create_task_group() as group:
            group.start_soon(run_a)
            await held.waiting.wait()
            outage.up()
            await outage.store.lapse_leases()  # the outage outlasted A's lease
            try:
                results["B"] = await AsyncAccessTokenManager(b).get("alice", ["x"])
            except Exception as exc:
                results["B"] = exc
                held.go.set()
    assert not isinstance(results["A"], Exception), results["A"]
    assert not isinstance(results["B"], Exception), results["B"]
    assert server.count == 2  # A's refresh and B's retry; B's stale one was refused
    stored = await stored_refresh_tokens(outage.store, url)
    assert len(stored) == 1
    assert await AsyncRefreshTokenManager(b).get("alice")
    await issuers.close()


class _Signal(logging.Handler):
    """Puts ``message`` on ``queue`` the first time a record says a write is retried."""

    def __init__(self, queue: Any, message: str) -> None:
        super().__init__(logging.WARNING)
        self.queue = queue
        self.message = message
        self.sent = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.sent and record.getMessage().startswith("storing the rotated refresh token"):
            self.sent = True
            self.queue.put(self.message)


def _refresh_through_an_outage(
    issuer_url: str, secret: str, redis_url: str, prefix: str, queue: Any, stopped: Any
) -> None:
    """Process A: refresh; when the answer arrives, let the parent stop Redis; report the
    first failed write (the parent then starts Redis again) and the outcome."""
    from oauth2_token_manager import RedisStore

    logging.getLogger("oauth2_token_manager").addHandler(_Signal(queue, "write failed"))

    def answered(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/token"):
            response.read()
            queue.put("answered")
            stopped.wait(30)

    store = RedisStore(url=redis_url, prefix=prefix)
    issuer = Issuer(
        issuer_url,
        ClientConfig(CLIENT_ID, secret),
        store=store,
        http=httpx.Client(timeout=10, event_hooks={"response": [answered]}),
        allow_insecure_loopback=True,
    )
    try:
        token = AccessTokenManager(issuer).get("alice", ["api:read"])
        queue.put(f"served {token.token_hash}")
    except Exception as exc:
        queue.put(f"failed {type(exc).__name__}")
    issuer.close()
    store.close()


def test_outage_in_another_process_loses_nothing(
    auth_server: AuthServer, restartable_redis: RestartableRedis
) -> None:
    """Process A refreshes; its redis-server is stopped as the rotated token arrives and
    started again after A's first failed write: A stores the rotated token and serves its
    caller, and this process (B) then refreshes with it: no invalid_grant, one grant."""
    from oauth2_token_manager import RedisStore

    prefix = f"m{uuid.uuid4().hex[:8]}:"
    secret = auth_server.client_secret(CLIENT_ID) or ""
    store = RedisStore(url=restartable_redis.url, prefix=prefix)
    b = Issuer(
        auth_server.issuer, ClientConfig(CLIENT_ID, secret), store=store,
        allow_insecure_loopback=True,
    )  # fmt: skip
    tokens = obtain_refresh_token(auth_server, CLIENT_ID, scopes=SCOPES)
    RefreshTokenManager(b).register(tokens["refresh_token"], subject="alice", auto_introspect=False)
    ctx = multiprocessing.get_context("spawn")
    queue, stopped = ctx.Queue(), ctx.Event()
    child = ctx.Process(
        target=_refresh_through_an_outage,
        args=(auth_server.issuer, secret, restartable_redis.url, prefix, queue, stopped),
    )
    child.start()
    try:
        assert queue.get(timeout=60) == "answered"
        restartable_redis.stop()
        stopped.set()
        assert queue.get(timeout=60) == "write failed"
        restartable_redis.start()
        outcome = queue.get(timeout=60)
        child.join(60)
    finally:
        if child.is_alive():
            child.kill()
    assert outcome.startswith("served"), outcome
    refresh = RefreshTokenManager(b)
    stored = refresh.list(subject="alice").items
    assert len(stored) == 1
    token = AccessTokenManager(b).get("alice", ["openid"])  # a new scope: a refresh
    assert token.value
    assert refresh.get("alice").token_hash != stored[0].token_hash  # rotated once more
    b.close()
    store.close()
