"""A manager made before ``os.fork()`` works in the child, and one async manager works in any
event loop (issue 10, sections 1 and 4), with the real test authorization server.

Fork tests run the child's part in a forked process that reports through a pipe and its exit
status; a child that blocks is killed by ``SIGALRM`` (the bound that makes a hang a failure,
never a wait the test depends on). Event-loop tests run loops in threads joined with a bound.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from _authserver import AuthServer
from _clock import FakeClock
from _redis_server import RedisServer, redis_server  # noqa: F401 (the session fixture)

from oauth2_token_manager import (
    AccessTokenManager,
    AsyncAccessTokenManager,
    AsyncIssuer,
    AsyncRedisStore,
    ClientConfig,
    ConfigurationError,
    DiskStore,
    Issuer,
    MemoryStore,
    RedisStore,
    StoreError,
    TransportError,
)
from oauth2_token_manager._grants import ClientCredentialsGrant
from oauth2_token_manager._models import GroupKey

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

CHILD_BOUND = 60  # seconds before a blocked child is killed (a hang fails, it is never awaited)
JOIN_BOUND = 60.0  # seconds before a thread running an event loop counts as hung
SCOPES = ("api:read", "api:write")

_on_fork: list[Callable[[], None]] = []
"""Called first in every fork (``before`` hooks run in reverse order of registration, and this
module registers after the library): lets a test act at the moment a fork begins."""


def _before_fork() -> None:
    for hook in _on_fork:
        hook()


os.register_at_fork(before=_before_fork)


def config(server: AuthServer) -> ClientConfig:
    """basic-client's credentials."""
    return ClientConfig("basic-client", server.client_secret("basic-client"))


def in_child(work: Callable[[], object]) -> Callable[[], str]:
    """Fork; the child runs ``work`` and exits 0 (or 1 with the traceback). Returns a function
    the parent calls to wait for the child and read what it reported ("" on success)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            signal.alarm(CHILD_BOUND)
            work()
            code = 0
        except BaseException:
            os.write(write_end, traceback.format_exc()[-2000:].encode())
        finally:
            os._exit(code)
    os.close(write_end)

    def result() -> str:
        with os.fdopen(read_end, "rb") as pipe:
            report = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return f"the child was killed by signal {os.WTERMSIG(status)} (blocked)"
        assert os.WEXITSTATUS(status) == 0 or report, "the child failed without a report"
        return report

    return result


def request_scopes(issuer: Issuer, scope: str, count: int) -> list[frozenset[str] | None]:
    """``count`` client-credentials requests for ``scope``, four threads at once: the scopes
    of each answer."""
    form = ClientCredentialsGrant(frozenset({scope})).form()

    def one(_: int) -> frozenset[str] | None:
        return issuer.token_request(form, frozenset({scope})).scopes

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


# -- after fork --------------------------------------------------------------------------------


def test_child_has_its_own_connections_and_answers_never_cross(auth_server: AuthServer) -> None:
    """Parent and child of one issuer (made before the fork, with a live keep-alive
    connection) each send 60 concurrent token requests with different scopes: the child has a
    new HTTP client, and every answer carries the scopes its request asked for."""
    issuer = Issuer(auth_server.issuer, config(auth_server), allow_insecure_loopback=True)
    manager = AccessTokenManager(issuer)
    assert manager.get(scopes=["api:read"]).scopes == frozenset({"api:read"})
    before = issuer.http
    start_read, start_write = os.pipe()

    def child() -> None:
        assert issuer.http is not before, "the child uses the parent's HTTP client"
        os.read(start_read, 1)  # both sides start together
        scopes = request_scopes(issuer, "api:write", 60)
        crossed = [s for s in scopes if s != frozenset({"api:write"})]
        assert not crossed, f"{len(crossed)} answers of 60 crossed: {crossed[:3]}"
        assert manager.get(scopes=["api:write"]).scopes == frozenset({"api:write"})

    result = in_child(child)
    os.write(start_write, b"x")
    scopes = request_scopes(issuer, "api:read", 60)
    report = result()
    assert report == "", report
    assert all(s == frozenset({"api:read"}) for s in scopes)
    assert issuer.http is before  # the parent's client is untouched
    issuer.close()


def test_child_forked_while_a_thread_holds_a_key_lock_does_not_block(
    auth_server: AuthServer,
) -> None:
    """A thread holds the lock of a key while the process forks: the child's get of that key
    obtains a token instead of waiting forever for a holder that does not exist there."""
    issuer = Issuer(auth_server.issuer, config(auth_server), allow_insecure_loopback=True)
    manager = AccessTokenManager(issuer)
    key = (manager._group(None), "api:read")
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with issuer.locks.hold(key):
            held.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    try:
        result = in_child(lambda: manager.get(scopes=["api:read"]))
        report = result()
    finally:
        release.set()
        thread.join()
    assert report == "", report
    issuer.close()


def test_child_forked_while_a_thread_is_inside_the_memory_store_does_not_block(
    auth_server: AuthServer,
) -> None:
    """A thread is inside ``MemoryStore`` (holds its lock) when a fork begins and leaves it only
    then: the fork waits for it, and the child's get neither blocks nor finds a half-written
    store."""
    store = MemoryStore()
    issuer = Issuer(
        auth_server.issuer, config(auth_server), store=store, allow_insecure_loopback=True
    )
    manager = AccessTokenManager(issuer)
    token = manager.get(scopes=["api:read"])
    held, forking = threading.Event(), threading.Event()

    def holder() -> None:
        with store._lock:
            held.set()
            forking.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    _on_fork.append(forking.set)
    try:

        def child() -> None:
            assert manager.get(scopes=["api:read"]).value == token.value  # the stored one
            assert manager.get(scopes=["api:write"]).scopes == frozenset({"api:write"})

        result = in_child(child)
    finally:
        _on_fork.clear()
        forking.set()
        thread.join()
    report = result()
    assert report == "", report
    issuer.close()


def test_failure_cache_is_not_inherited() -> None:
    """A transient failure cached in the parent (token endpoint refusing connections) is not
    served in the child: the parent's second call gets the cached error, the child a new one."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = FakeClock()
    issuer = Issuer(
        f"http://127.0.0.1:{port}",
        ClientConfig("basic-client", "secret-of-the-test"),
        allow_insecure_loopback=True,
        discovery=False,
        metadata={"token_endpoint": f"http://127.0.0.1:{port}/token"},
        failure_cache=3600,
        clock=clock,
        sleep=clock.sync_sleep,
    )
    manager = AccessTokenManager(issuer)
    with pytest.raises(TransportError) as first:
        manager.get(scopes=["api:read"])
    with pytest.raises(TransportError) as again:
        manager.get(scopes=["api:read"])
    assert "cached outcome" in str(again.value)  # served from the failure cache
    assert "cached outcome" not in str(first.value)

    def child() -> None:
        with pytest.raises(TransportError) as fresh:
            manager.get(scopes=["api:read"])
        assert "cached outcome" not in str(fresh.value), "the parent's cached failure was served"

    report = in_child(child)()
    assert report == "", report
    issuer.close()


def test_a_given_http_client_is_refused_in_the_child(auth_server: AuthServer) -> None:
    """An ``http=`` client given to an issuer made before a fork is not used in the child (its
    connections are the parent's): the child gets ``ConfigurationError``; the parent goes on."""
    import httpx

    http = httpx.Client()
    issuer = Issuer(
        auth_server.issuer, config(auth_server), http=http, allow_insecure_loopback=True
    )
    manager = AccessTokenManager(issuer)
    manager.get(scopes=["api:read"])

    def child() -> None:
        with pytest.raises(ConfigurationError, match="fork"):
            manager.get(scopes=["api:write"])

    report = in_child(child)()
    assert report == "", report
    assert manager.get(scopes=["api:write"]).scopes == frozenset({"api:write"})
    http.close()


@pytest.fixture
def shared_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[Any]:
    """A ``DiskStore`` or a ``RedisStore`` (private redis-server), closed afterwards."""
    if request.param == "disk":
        store: Any = DiskStore(tmp_path / "tokens")
    else:
        store = RedisStore(url=redis_server.url, prefix=f"fork-{time.time_ns()}:")
    yield store
    store.close()


@pytest.mark.parametrize("shared_store", ["disk", "redis"], indirect=True)
def test_shared_stores_keep_working_in_the_child(
    auth_server: AuthServer, shared_store: Any
) -> None:
    """``DiskStore`` (diskcache reopens SQLite after fork) and ``RedisStore`` (redis-py's pool
    reconnects on a new pid) opened and used before a fork work in the child, and in the
    parent after it: what the parent stored is found, what the child stores the parent finds."""
    issuer = Issuer(
        auth_server.issuer, config(auth_server), store=shared_store, allow_insecure_loopback=True
    )
    manager = AccessTokenManager(issuer)
    token = manager.get(scopes=["api:read"])
    found: list[str] = []

    def child() -> None:
        assert manager.get(scopes=["api:read"]).value == token.value
        write = manager.get(scopes=["api:write"])
        assert write.scopes == frozenset({"api:write"})
        os.write(report_write, write.token_hash.encode())

    report_read, report_write = os.pipe()
    report = in_child(child)()
    os.close(report_write)
    with os.fdopen(report_read, "rb") as pipe:
        found.append(pipe.read().decode())
    assert report == "", report
    assert manager.get(scopes=["api:read"]).value == token.value
    assert manager.get(scopes=["api:write"]).token_hash == found[0]  # the child's token
    issuer.close()


# -- any event loop ----------------------------------------------------------------------------


def async_issuer(server: AuthServer, store: Any = None) -> AsyncIssuer:
    """An async issuer of basic-client that makes its own HTTP clients."""
    return AsyncIssuer(server.issuer, config(server), store=store, allow_insecure_loopback=True)


def test_asyncio_run_twice_on_one_manager(auth_server: AuthServer) -> None:
    """``asyncio.run(get())`` twice on one manager: the second loop gets a client of its own
    (the first one's connections died with their loop) and the first loop's is forgotten."""
    issuer = async_issuer(auth_server)
    manager = AsyncAccessTokenManager(issuer)
    first = asyncio.run(manager.get(scopes=["api:read"]))
    second = asyncio.run(manager.get(scopes=["api:write"]))
    assert first.scopes == frozenset({"api:read"})
    assert second.scopes == frozenset({"api:write"})
    assert len(issuer._clients._values) == 1  # the closed loop's client was dropped
    asyncio.run(issuer.aclose())


def run_loops(backends: list[str], work: Callable[[], Any]) -> list[BaseException]:
    """Run ``work`` on one event loop per backend, each in its own thread, all at once; fail if
    a thread is still running after ``JOIN_BOUND`` seconds. Returns the errors raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(backends))

    async def main() -> None:
        await anyio.to_thread.run_sync(barrier.wait)
        await work()

    def run(backend: str) -> None:
        try:
            anyio.run(main, backend=backend)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_BOUND)
    assert not any(t.is_alive() for t in threads), "an event loop hung"
    return errors


@pytest.fixture(params=["memory", "disk", "async-redis"])
def any_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[Any]:
    """The stores of the event-loop tests: MemoryStore, DiskStore, AsyncRedisStore."""
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "disk":
        with DiskStore(tmp_path / "tokens") as disk:
            yield disk
    else:
        yield AsyncRedisStore(url=redis_server.url, prefix=f"loops-{time.time_ns()}:")


@pytest.mark.parametrize("backends", [["asyncio", "asyncio"], ["asyncio", "trio"]])
def test_two_event_loops_at_once_share_one_manager(
    auth_server: AuthServer, any_store: Any, backends: list[str]
) -> None:
    """Two event loops in two threads (asyncio twice, or asyncio and trio) use one manager at
    once, 10 tasks each over two scope sets, with discovery and the store's lock: no loop
    hangs, nothing fails, every token has the scopes asked; a loop's tasks share its requests."""
    if isinstance(any_store, AsyncRedisStore) and "trio" in backends:
        pytest.skip("redis.asyncio runs on asyncio only (StoreError on trio, tested apart)")
    issuer = async_issuer(auth_server, any_store)
    manager = AsyncAccessTokenManager(issuer)
    wrong: list[object] = []

    async def work() -> None:
        async def one(scope: str) -> None:
            token = await manager.get(scopes=[scope])
            if token.scopes != frozenset({scope}):
                wrong.append(token.scopes)

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(one, SCOPES[n % 2])

    before = auth_server.token_counts()["client_credentials"]
    errors = run_loops(backends, work)
    assert errors == []
    assert wrong == []
    requests = auth_server.token_counts()["client_credentials"] - before
    # single-flight is per event loop: each loop asks at most once per scope set
    assert 2 <= requests <= 2 * len(backends)
    print(f"{backends} {type(any_store).__name__}: {requests} token requests", file=sys.stderr)
    if isinstance(any_store, AsyncRedisStore):
        anyio.run(any_store.aclose)


def test_async_redis_store_on_trio_is_a_store_error(redis_server: RedisServer) -> None:  # noqa: F811
    """``AsyncRedisStore`` used from trio raises ``StoreError`` saying it needs asyncio (not
    redis-py's untyped error)."""
    store = AsyncRedisStore(url=redis_server.url, prefix=f"trio-{time.time_ns()}:")

    async def find() -> None:
        with pytest.raises(StoreError, match="asyncio"):
            await store.find(GroupKey("access", "https://as", "c", "", ""), "x")

    anyio.run(find, backend="trio")


def test_two_loops_asking_one_key_send_one_request_per_loop(auth_server: AuthServer) -> None:
    """Measured: two asyncio loops whose tasks all ask one key at once, each loop's request
    held open until both loops asked: one request per loop (two in all); single-flight does
    not cross event loops."""
    clock = FakeClock(time.time())
    issuer = AsyncIssuer(
        auth_server.issuer, config(auth_server), allow_insecure_loopback=True, clock=clock
    )
    manager = AsyncAccessTokenManager(issuer)
    both = threading.Barrier(2, timeout=JOIN_BOUND)
    post = issuer._post

    async def post_when_both_asked(field: str, form: dict[str, str]) -> Any:
        await anyio.to_thread.run_sync(both.wait)  # the other loop is in its request too
        return await post(field, form)

    issuer._post = post_when_both_asked  # type: ignore[method-assign]

    async def work() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(manager.get, None, ["api:read"])

    before = auth_server.token_counts()["client_credentials"]
    assert run_loops(["asyncio", "asyncio"], work) == []
    assert auth_server.token_counts()["client_credentials"] - before == 2


def test_close_closes_what_the_issuer_made_only(tmp_path: Path) -> None:
    """``Issuer.close`` closes the HTTP client it made and leaves a given client and a given
    store open (they are the caller's); a closed issuer refuses to send (typed error)."""
    import httpx

    made_issuer = Issuer("https://as.example", ClientConfig("c", "secret-of-the-test"))
    made = made_issuer.http
    made_issuer.close()
    assert made.is_closed
    with pytest.raises(ConfigurationError, match="closed"):
        made_issuer.http  # noqa: B018

    http = httpx.Client()
    with DiskStore(tmp_path / "tokens") as store:
        given = Issuer(
            "https://as.example", ClientConfig("c", "secret-of-the-test"), http=http, store=store
        )
        given.close()
        assert not http.is_closed
        assert store.find(AccessTokenManager(given)._group(None), "x") == []  # still open
    http.close()
