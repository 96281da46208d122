"""The store contract for ``RedisStore`` and ``AsyncRedisStore``, plus what is Redis-specific.

Everything runs against a private ``redis-server`` started for the session (``_redis_server``),
each store under a fresh random prefix. The async store runs the whole contract through a small
adapter that drives its coroutines on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
from _loop_driven import LoopDriven
from _redis_server import RedisServer, redis_server  # noqa: F401
from store_contract import FakeClock, StoreContract, hashes, make_token

from oauth2_token_manager._exceptions import CorruptEntryError, StoreError, TokenRevokedError
from oauth2_token_manager._models import Token
from oauth2_token_manager._stores import TokenQuery, TokenStore
from oauth2_token_manager._stores._async_redis import AsyncRedisStore
from oauth2_token_manager._stores._redis import RedisStore
from oauth2_token_manager._stores._redis_codec import exact_id

T = TypeVar("T")


def fresh_prefix() -> str:
    """A prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}:"


def text(value: Any) -> str:
    """A reply item as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def keys_of(client: redis.Redis, prefix: str) -> list[str]:
    """Every key under ``prefix`` (SCAN of the private server), as text."""
    return sorted(k.decode() for k in client.scan_iter(match=prefix + "*", count=1000))


def assert_indexes_consistent(client: redis.Redis, prefix: str) -> None:
    """Hash refs, exact entries, group entries and the group set describe each other."""
    keys = keys_of(client, prefix)
    entries: dict[str, list[dict[str, Any]]] = {}
    for key in keys:
        kind, _, rest = key[len(prefix) :].partition(":")
        if kind == "x":
            raw = client.get(key)
            assert raw is not None
            entries[rest] = json.loads(raw)
    refs = {
        key[len(prefix) + 2 :]: client.get(key).decode()  # type: ignore[union-attr]
        for key in keys
        if key.startswith(prefix + "h:")
    }
    expected_refs = {item["token_hash"]: xs for xs, items in entries.items() for item in items}
    assert refs == expected_refs
    groups: dict[str, set[str]] = {}
    for key in keys:
        if key.startswith(prefix + "g:"):
            fields = {text(f) for f in client.hgetall(key)}
            assert "group" in fields
            groups[key[len(prefix) + 2 :]] = fields - {"group"}
    expected_groups: dict[str, set[str]] = {}
    for xs in entries:
        gid, _, sid = xs.partition(":")
        expected_groups.setdefault(gid, set()).add(sid)
    assert groups == expected_groups
    members = {text(m) for m in client.zrange(prefix + "groups", 0, -1)}
    assert members == set(groups)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:  # noqa: F811
    """A sync client of the private server, for looking behind the stores' backs."""
    with redis.Redis.from_url(redis_server.url) as plain:
        yield plain


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio."""
    return "asyncio"


# -- RedisStore: the contract ------------------------------------------------------------------


class TestRedisStoreContract(StoreContract):
    """The contract, for ``RedisStore`` on a private redis-server."""

    hypothesis_examples = 40

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer, client: redis.Redis) -> Iterator[None]:  # noqa: F811
        """Each store gets its own prefix; every store made in the test is closed afterwards."""
        self.url = redis_server.url
        self.client = client
        self.opened: list[RedisStore] = []
        yield
        for store in self.opened:
            store.close()

    def make_store(self, clock: FakeClock, retain_expired: float = 0.0) -> TokenStore:
        """A fresh Redis store under a new prefix."""
        store = RedisStore(
            url=self.url, prefix=fresh_prefix(), retain_expired=retain_expired, clock=clock
        )
        self.opened.append(store)
        return store

    def stored_keys(self, store: TokenStore) -> list[str]:
        """Every key of the store's prefix (SCAN)."""
        assert isinstance(store, RedisStore)
        return keys_of(self.client, store.prefix)


# -- AsyncRedisStore: the same contract through a loop-driving adapter -------------------------


class TestAsyncRedisStoreContract(StoreContract):
    """The contract, for ``AsyncRedisStore`` (each call driven to completion on a loop)."""

    hypothesis_examples = 20

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer, client: redis.Redis) -> Iterator[None]:  # noqa: F811
        """Each store gets its own prefix, client and loop; all are closed afterwards."""
        self.url = redis_server.url
        self.client = client
        self.opened: list[LoopDriven] = []
        yield
        for store in self.opened:
            store.close()

    def make_store(self, clock: FakeClock, retain_expired: float = 0.0) -> TokenStore:
        """A fresh async Redis store under a new prefix, behind the adapter."""
        store = LoopDriven(
            AsyncRedisStore(
                url=self.url, prefix=fresh_prefix(), retain_expired=retain_expired, clock=clock
            )
        )
        self.opened.append(store)
        return store

    def stored_keys(self, store: TokenStore) -> list[str]:
        """Every key of the store's prefix (SCAN)."""
        assert isinstance(store, LoopDriven)
        return keys_of(self.client, store.store.prefix)


# -- Redis-specific ------------------------------------------------------------------------


@pytest.fixture(params=["sync", "async"])
def store_factory(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[Any]:
    """Make ``RedisStore``s, or ``AsyncRedisStore``s behind ``LoopDriven``, under fresh
    prefixes; all are closed afterwards."""
    opened: list[RedisStore | LoopDriven] = []

    def make(**kwargs: Any) -> RedisStore | LoopDriven:
        kwargs.setdefault("prefix", fresh_prefix())
        store: RedisStore | LoopDriven
        if request.param == "sync":
            store = RedisStore(url=redis_server.url, **kwargs)
        else:
            store = LoopDriven(AsyncRedisStore(url=redis_server.url, **kwargs))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_keys_hold_no_secret_and_values_are_json(
    store_factory: Any, client: redis.Redis, clock: FakeClock
) -> None:
    """SCAN of the server: keys hold hashes only (no token value, subject, client or scope);
    values are JSON text that holds the token values, as a cache must."""
    store = store_factory(clock=clock)
    token = make_token(
        value="SECRET-findable-in-values",
        client_id="client-SECRET-ID",
        subject="user-SECRET-SUBJECT",
        scopes={"scope-SECRET-SCOPE"},
        resource="https://SECRET-RESOURCE",
    )
    other = make_token("refresh", scopes=None, subject=None)
    store.put(token)
    store.put(other)
    revoked = make_token()
    store.revoke(revoked.token_hash, clock.now + 60)
    keys = keys_of(client, store.prefix)
    assert not any("SECRET" in key for key in keys)
    assert any(token.token_hash in key for key in keys)
    assert any(revoked.token_hash in key for key in keys)
    kinds = {key[len(store.prefix) :].split(":", 1)[0] for key in keys}
    assert kinds == {"x", "h", "g", "r", "groups"}
    types = {key[len(store.prefix) :].split(":", 1)[0]: client.type(key) for key in keys}
    assert types == {
        "x": b"string",
        "h": b"string",
        "g": b"hash",
        "r": b"string",
        "groups": b"zset",
    }
    exact = [client.get(k) for k in keys if k.startswith(store.prefix + "x:")]
    decoded = [json.loads(raw) for raw in exact if raw is not None]
    assert {item["token_hash"] for entry in decoded for item in entry} == {
        token.token_hash,
        other.token_hash,
    }
    assert any(item["value"] == token.value for entry in decoded for item in entry)
    groups = [client.hget(k, "group") for k in keys if k.startswith(store.prefix + "g:")]
    assert sorted(json.loads(g) for g in groups if g is not None) == sorted(
        [list(token.group), list(other.group)]
    )
    assert_indexes_consistent(client, store.prefix)


def test_entries_carry_redis_expiries(
    store_factory: Any, client: redis.Redis, clock: FakeClock
) -> None:
    """PTTL: expiring tokens' keys at expires_at + retain_expired; unknown expiry: none (-1)."""
    store = store_factory(clock=clock, retain_expired=30)
    expiring = make_token(expires_at=clock.now + 100)
    forever = make_token(expires_at=None, subject="bob")
    store.put(expiring)
    store.put(forever)
    store.revoke(make_token().token_hash, clock.now + 500)
    ttls: dict[str, list[int]] = {}
    for key in keys_of(client, store.prefix):
        ttls.setdefault(key, []).append(client.pttl(key))
    by_kind: dict[tuple[str, bool], list[int]] = {}
    for key, (ttl,) in ttls.items():
        kind = key[len(store.prefix) :].split(":", 1)[0]
        by_kind.setdefault((kind, ttl == -1), []).append(ttl)
    for kind in ("x", "h", "g"):
        [bounded] = by_kind[(kind, False)]
        assert 125_000 < bounded <= 130_000
        assert by_kind[(kind, True)] == [-1]
    [revocation] = by_kind[("r", False)]
    assert 495_000 < revocation <= 500_000
    assert by_kind[("groups", True)] == [-1]


def test_redis_drops_expired_entries_by_itself(store_factory: Any, client: redis.Redis) -> None:
    """With the wall clock, the keys of an expired token disappear without expunge."""
    store = store_factory()
    token = make_token(expires_at=time.time() + 0.2)
    store.put(token)
    assert store.find(token.group, "read") == [token]
    deadline = time.monotonic() + 5
    while keys_of(client, store.prefix) != [store.prefix + "groups"]:
        assert time.monotonic() < deadline, keys_of(client, store.prefix)
        time.sleep(0.01)
    assert store.find(token.group, "read") == []
    assert store.list(TokenQuery()).total == 0
    assert client.zcard(store.prefix + "groups") == 1  # stale member: pruned by the next put
    store.put(make_token(expires_at=None, subject="someone"))
    assert client.zcard(store.prefix + "groups") == 1
    assert store.expunge_expired(time.time()) == 0


def test_exact_find_is_one_get(store_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path is ONE command (a GET); ``get`` and ``find(group, None)`` one script each."""
    store = store_factory()
    token = make_token(expires_at=None)
    store.put(token)
    store.put(make_token(expires_at=None, scopes={"other"}))
    commands: list[tuple[Any, ...]] = []
    real = store.client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        commands.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.client, "execute_command", counting)
    assert store.find(token.group, "read") == [token]
    assert [c[0] for c in commands] == ["GET"]
    commands.clear()
    assert store.get(token.token_hash) == token
    assert [c[0] for c in commands] == ["EVALSHA"]
    commands.clear()
    assert len(store.find(token.group, None)) == 2
    assert [c[0] for c in commands] == ["EVALSHA"]
    commands.clear()
    store.put(make_token(expires_at=None))
    assert [c[0] for c in commands] == ["EVALSHA"]


def test_exact_find_is_one_command_on_the_wire(
    store_factory: Any,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Counted by the server itself (MONITOR): an exact ``find`` sends exactly one GET."""
    store = store_factory()
    token = make_token(expires_at=None)
    store.put(token)
    store.find(token.group, "read")  # the connection is open and warm
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as monitor:
        monitor.sendall(b"MONITOR\r\n")
        assert monitor.recv(64).startswith(b"+OK")
        assert store.find(token.group, "read") == [token]
        with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as other:
            other.sendall(b'ECHO "end-of-test"\r\n')
            other.recv(64)
        seen = b""
        while b"end-of-test" not in seen:
            chunk = monitor.recv(65536)
            assert chunk
            seen += chunk
    lines = [line for line in seen.split(b"\r\n") if line.startswith(b"+") and b'"' in line]
    commands = [line.split(b'"')[1].upper() for line in lines]
    assert commands == [b"GET", b"ECHO"]
    assert token.value.encode() not in seen


def test_rotation_is_atomic_for_readers(store_factory: Any) -> None:
    """A reader never sees a rotating key empty: the new token appears as the old one goes."""
    store = store_factory()
    reader_store = store_factory(prefix=store.prefix)
    first = make_token("refresh", value="SECRET-chain-0", expires_at=None)
    store.put(first)
    done = threading.Event()
    empty_reads: list[int] = []
    reads = [0]

    def read() -> None:
        while not done.is_set():
            reads[0] += 1
            found = reader_store.find(first.group, "read")
            if len(found) != 1:
                empty_reads.append(len(found))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        current = first
        i = 0
        # At least 299 rotations, and on until the reader has read often enough meanwhile (a
        # busy machine may starve the reader thread): the check below then always means it.
        while i < 299 or (reads[0] <= 10 and i < 20_000):
            i += 1
            new = make_token("refresh", value=f"SECRET-chain-{i}", expires_at=None)
            store.replace(current.token_hash, new)
            current = new
    finally:
        done.set()
        reader.join()
    assert reads[0] > 10
    assert empty_reads == []
    assert store.find(first.group, "read") == [current]


def test_threads_and_clients_lose_nothing(store_factory: Any, client: redis.Redis) -> None:
    """Eight threads, each with its own connection pool (as processes would be), putting,
    rotating and deleting on shared keys of one group leave exactly the expected tokens."""
    prefix = fresh_prefix()
    stores = [store_factory(prefix=prefix) for _ in range(8)]
    barrier = threading.Barrier(8)
    expected: dict[int, list[Token]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            store = stores[n]
            barrier.wait()
            kept: list[Token] = []
            for i in range(60):
                token = make_token(scopes={f"shared{i % 3}"}, updated_at=float(i), expires_at=None)
                store.put(token)
                if i % 3 == 0:
                    rotated = make_token(
                        scopes={f"shared{i % 3}"}, updated_at=float(i), expires_at=None
                    )
                    store.replace(token.token_hash, rotated)
                    token = rotated
                if i % 5 == 0:
                    assert store.delete(token.token_hash) == token
                else:
                    kept.append(token)
            expected[n] = kept
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    everything = [t for kept in expected.values() for t in kept]
    group = everything[0].group
    store = stores[0]
    assert sorted(hashes(store.find(group, None))) == sorted(hashes(everything))
    for n in range(3):
        found = store.find(group, f"shared{n}")
        assert sorted(hashes(found)) == sorted(
            hashes(t for t in everything if t.scope_key == f"shared{n}")
        )
        keys = [(t.updated_at, t.issued_at) for t in found]
        assert keys == sorted(keys, reverse=True)
    assert store.list(TokenQuery()).total == len(everything)
    assert_indexes_consistent(client, prefix)


def _redis_writer(url: str, prefix: str, worker: int, count: int) -> None:
    """Child process: put ``count`` tokens into one shared key and one key of its own."""
    forever: dict[str, Any] = {"expires_at": None}
    with RedisStore(url=url, prefix=prefix) as store:
        for i in range(count):
            store.put(
                make_token(value=f"SECRET-p{worker}-shared-{i}", scopes={"shared"}, **forever)
            )
            own = make_token(value=f"SECRET-p{worker}-own-{i}", scopes={f"own{worker}"}, **forever)
            store.put(own)
            if i % 4 == 0:
                rotated = make_token(
                    value=f"SECRET-p{worker}-rot-{i}", scopes={f"own{worker}"}, **forever
                )
                store.replace(own.token_hash, rotated)


def test_two_processes_lose_nothing(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
) -> None:
    """Two spawned processes writing under one prefix at once lose no token or index entry."""
    prefix = fresh_prefix()
    context = multiprocessing.get_context("spawn")
    count = 60
    workers = [
        context.Process(target=_redis_writer, args=(redis_server.url, prefix, n, count))
        for n in (1, 2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with RedisStore(url=redis_server.url, prefix=prefix) as store:
        group = make_token().group
        assert len(store.find(group, "shared")) == 2 * count
        for n in (1, 2):
            own = store.find(group, f"own{n}")
            rotated = {f"SECRET-p{n}-rot-{i}" for i in range(0, count, 4)}
            plain = {f"SECRET-p{n}-own-{i}" for i in range(count) if i % 4}
            assert {t.value for t in own} == rotated | plain
        assert store.list(TokenQuery()).total == 4 * count
    assert_indexes_consistent(client, prefix)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_failure_raises_store_error() -> None:
    """No server: every operation raises ``StoreError`` (fail closed), naming no token."""
    url = f"redis://user:SECRET-password@127.0.0.1:{_closed_port()}/0"
    token = make_token(value="SECRET-never-in-an-error")
    with RedisStore(url=url, prefix=fresh_prefix()) as store:
        calls: list[Callable[[], Any]] = [
            lambda: store.put(token),
            lambda: store.get(token.token_hash),
            lambda: store.find(token.group, "read"),
            lambda: store.find(token.group, None),
            lambda: store.replace(make_token().token_hash, token),
            lambda: store.delete(token.token_hash),
            lambda: store.revoke(token.token_hash, time.time() + 60),
            lambda: store.is_revoked(token.token_hash),
            lambda: store.list(TokenQuery()),
            lambda: store.expunge_expired(time.time()),
        ]
        for call in calls:
            with pytest.raises(StoreError) as caught:
                call()
            assert "SECRET" not in str(caught.value)
            assert "ConnectionError" in str(caught.value)
            assert caught.value.__cause__ is None


@pytest.mark.anyio
async def test_async_connection_failure_raises_store_error() -> None:
    """The async store fails closed the same way."""
    url = f"redis://user:SECRET-password@127.0.0.1:{_closed_port()}/0"
    token = make_token(value="SECRET-never-in-an-error")
    async with AsyncRedisStore(url=url, prefix=fresh_prefix()) as store:
        calls: list[Callable[[], Any]] = [
            lambda: store.put(token),
            lambda: store.get(token.token_hash),
            lambda: store.find(token.group, "read"),
            lambda: store.find(token.group, None),
            lambda: store.replace(make_token().token_hash, token),
            lambda: store.delete(token.token_hash),
            lambda: store.revoke(token.token_hash, time.time() + 60),
            lambda: store.is_revoked(token.token_hash),
            lambda: store.list(TokenQuery()),
            lambda: store.expunge_expired(time.time()),
        ]
        for call in calls:
            with pytest.raises(StoreError) as caught:
                await call()
            assert "SECRET" not in str(caught.value)
            assert "ConnectionError" in str(caught.value)


@pytest.mark.parametrize(
    "bad",
    [
        b"{not json",
        b"[1, 2]",
        b'"text"',
        b'[{"kind": "access"}]',
        b"7",
        b"[" * 100_000 + b"]" * 100_000,
        b"1" + b"0" * 400,
        b"NaN",
    ],
    ids=["not-json", "ints", "text", "missing-fields", "seven", "deep", "huge-int", "nan"],
)
def test_corrupt_exact_entry_raises_store_error(
    store_factory: Any, client: redis.Redis, clock: FakeClock, bad: bytes
) -> None:
    """An unreadable exact entry raises ``StoreError`` (never ``RecursionError``) from reads
    and writes, ``list`` skips it; a failing write changes nothing (the script checks first)."""
    store = store_factory(clock=clock)
    token = make_token()
    store.put(token)
    [xkey] = [k for k in keys_of(client, store.prefix) if k.startswith(store.prefix + "x:")]
    client.set(xkey, bad, keepttl=True)
    before = {k: client.dump(k) for k in keys_of(client, store.prefix)}
    with pytest.raises(StoreError):
        store.find(token.group, "read")
    with pytest.raises(StoreError):
        store.find(token.group, None)
    with pytest.raises(CorruptEntryError):
        store.get(token.token_hash)
    assert store.list(TokenQuery()).items == []
    with pytest.raises(StoreError):
        store.put(make_token())
    assert {k: client.dump(k) for k in keys_of(client, store.prefix)} == before


@pytest.mark.parametrize("operation", ["delete", "expunge"])
@pytest.mark.parametrize(
    "bad", [b"{not json", b"[\n7\n]", b"[" * 100_000 + b"]" * 100_000], ids=["text", "7", "deep"]
)
def test_delete_and_expunge_remove_a_corrupt_exact_entry(
    store_factory: Any, client: redis.Redis, clock: FakeClock, bad: bytes, operation: str
) -> None:
    """``delete(hash)`` and ``expunge_expired`` remove an exact entry they cannot parse (the
    repair); the key then works again."""
    store = store_factory(clock=clock)
    token, other = make_token(), make_token(scopes={"write"})
    store.put(token)
    store.put(other)
    xkey = store.prefix + "x:" + exact_id(token.group, "read")
    client.set(xkey, bad, keepttl=True)
    if operation == "delete":
        assert store.delete(token.token_hash) is None
    else:
        assert store.expunge_expired(clock.now) == 0
    assert client.get(xkey) is None
    assert store.find(token.group, "read") == []
    assert hashes(store.list(TokenQuery()).items) == [other.token_hash]
    store.put(token)
    assert store.get(token.token_hash) == token


def test_delete_removes_a_corrupt_hash_entry(
    store_factory: Any, client: redis.Redis, clock: FakeClock
) -> None:
    """``delete(hash)`` removes a hash entry it cannot parse; ``get`` then finds nothing."""
    store = store_factory(clock=clock)
    token = make_token()
    store.put(token)
    client.set(store.prefix + "h:" + token.token_hash, "garbage", keepttl=True)
    with pytest.raises(StoreError):
        store.get(token.token_hash)
    assert store.delete(token.token_hash) is None
    assert store.get(token.token_hash) is None


@pytest.mark.parametrize("damage", ["field", "nan deadline", "no group"])
def test_expunge_removes_a_corrupt_group_entry(
    store_factory: Any, client: redis.Redis, clock: FakeClock, damage: str
) -> None:
    """``expunge_expired`` removes a group entry it cannot parse, after which a put into that
    group works again (the put script refuses it before)."""
    store = store_factory(clock=clock)
    token = make_token()
    store.put(token)
    [gkey] = [k for k in keys_of(client, store.prefix) if k.startswith(store.prefix + "g:")]
    if damage == "field":
        client.hset(gkey, "not-a-scope-id", "soon")
    elif damage == "nan deadline":
        client.hset(gkey, "a" * 64, "nan")
    else:
        client.hdel(gkey, "group")
    with pytest.raises(StoreError):
        store.put(make_token(updated_at=3.0))
    store.expunge_expired(clock.now)
    assert client.exists(gkey) == 0
    store.put(token.replace(updated_at=3.0))
    assert hashes(store.find(token.group, None)) == [token.token_hash]


def test_delete_never_removes_an_entry_of_another_key(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
    clock: FakeClock,
) -> None:
    """An entry encrypted with a key this store lacks is not corrupt: ``delete`` and
    ``expunge_expired`` fail with ``StoreError`` and remove nothing."""
    from oauth2_token_manager._stores._crypto import generate_encryption_key

    prefix = fresh_prefix()
    writer = RedisStore(
        url=redis_server.url,
        prefix=prefix,
        clock=clock,
        encryption_keys=[generate_encryption_key()],
    )
    reader = RedisStore(
        url=redis_server.url,
        prefix=prefix,
        clock=clock,
        encryption_keys=[generate_encryption_key()],
    )
    try:
        token = make_token()
        writer.put(token)
        before = {k: client.dump(k) for k in keys_of(client, prefix)}
        with pytest.raises(StoreError):
            reader.delete(token.token_hash)
        with pytest.raises(StoreError):
            reader.expunge_expired(clock.now + 10**6)
        assert {k: client.dump(k) for k in keys_of(client, prefix)} == before
        assert writer.get(token.token_hash) == token
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("kind", ["g", "h"])
def test_corrupt_index_entry_raises_store_error(
    store_factory: Any, client: redis.Redis, clock: FakeClock, kind: str
) -> None:
    """A malformed group or hash entry raises ``StoreError`` where it is read."""
    store = store_factory(clock=clock)
    token, revoked = make_token(), make_token()
    store.put(token)
    store.revoke(revoked.token_hash, clock.now + 60)
    for key in keys_of(client, store.prefix):
        if key.startswith(f"{store.prefix}{kind}:"):
            if kind == "g":
                client.hset(key, "not-a-scope-id", "soon")
            else:
                client.set(key, "garbage", keepttl=True)
    with pytest.raises(StoreError):
        if kind == "g":
            store.delete(token.token_hash)
        elif kind == "h":
            store.get(token.token_hash)
        else:
            store.is_revoked(revoked.token_hash)
    with pytest.raises(StoreError):
        if kind == "r":
            store.put(revoked)
        else:
            store.put(token.replace(updated_at=5.0))


@pytest.mark.parametrize("bad", ["garbage", "nan", "NaN", "-nan", "inf", "", "1e400"])
def test_corrupt_revocation_means_revoked(
    store_factory: Any, client: redis.Redis, clock: FakeClock, bad: str
) -> None:
    """An unreadable revocation entry reads as revoked (fail closed) in Python and in the
    put script; ``revoke`` replaces it with a readable one."""
    store = store_factory(clock=clock)
    token = make_token()
    store.revoke(token.token_hash, clock.now + 60)
    [rkey] = [k for k in keys_of(client, store.prefix) if k.startswith(store.prefix + "r:")]
    client.set(rkey, bad, keepttl=True)
    assert store.is_revoked(token.token_hash)
    with pytest.raises(TokenRevokedError):
        store.put(token)
    store.revoke(token.token_hash, clock.now + 60)
    assert client.get(rkey) not in (bad, bad.encode())
    clock.advance(61)
    assert not store.is_revoked(token.token_hash)
    store.put(token)
    assert store.get(token.token_hash) == token


def test_wrong_redis_type_raises_store_error(store_factory: Any, client: redis.Redis) -> None:
    """A key of another Redis type (WRONGTYPE) raises ``StoreError`` naming the error code."""
    store = store_factory()
    token = make_token(expires_at=None)
    store.put(token)
    for key in keys_of(client, store.prefix):
        if key.startswith(store.prefix + "x:"):
            client.delete(key)
            client.rpush(key, "x")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        store.find(token.group, "read")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        store.put(token)


def test_revoked_put_is_refused_by_the_script(store_factory: Any, clock: FakeClock) -> None:
    """The revocation check is inside the write script (no race with a concurrent revoke)."""
    store = store_factory(clock=clock)
    token = make_token()
    other_process = store_factory(prefix=store.prefix, clock=clock)
    other_process.revoke(token.token_hash, clock.now + 60)
    with pytest.raises(TokenRevokedError):
        store.put(token)
    assert store.get(token.token_hash) is None


def test_a_token_value_is_never_sent_as_a_hash(
    store_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get``/``delete``/``is_revoked``/``replace`` given a non-hash send nothing with it."""
    store = store_factory()
    token = make_token(value="SECRET-passed-by-mistake")
    sent: list[tuple[Any, ...]] = []
    real = store.client.execute_command

    def recording(*args: Any, **kwargs: Any) -> Any:
        sent.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.client, "execute_command", recording)
    assert store.get(token.value) is None
    assert store.delete(token.value) is None
    assert store.is_revoked(token.value) is False
    store.replace(token.value, make_token())
    assert not any("SECRET-passed" in str(arg) for args in sent for arg in args)


def test_prefixes_are_isolated(store_factory: Any, client: redis.Redis, clock: FakeClock) -> None:
    """Two prefixes on one server see nothing of each other; keys all start with the prefix."""
    first, second = store_factory(clock=clock), store_factory(clock=clock)
    token = make_token()
    first.put(token)
    assert second.get(token.token_hash) is None
    assert second.find(token.group, "read") == []
    assert second.list(TokenQuery()).total == 0
    assert first.list(TokenQuery()).total == 1
    assert keys_of(client, second.prefix) == []


def test_constructor_settings_repr_and_no_version(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """One of client or url; retain_expired checked; repr shows no URL; no ``version``."""
    with pytest.raises(ValueError):
        RedisStore()
    with pytest.raises(ValueError):
        RedisStore(redis.Redis(), url=redis_server.url)
    with pytest.raises(ValueError):
        RedisStore(url=redis_server.url, retain_expired=-1)
    with pytest.raises(TypeError):
        RedisStore(url=redis_server.url, prefix=b"bytes")  # type: ignore[arg-type]
    password_url = f"redis://user:SECRET-password@127.0.0.1:{redis_server.port}/0"
    store = RedisStore(url=password_url, prefix="p:", retain_expired=5)
    assert "SECRET" not in repr(store)
    assert repr(store) == "RedisStore(prefix='p:', retain_expired=5.0)"
    assert store.prefix == "p:"
    assert store.retain_expired == 5.0
    assert not hasattr(store, "version")
    assert isinstance(store, TokenStore)
    store.close()


def connections_named(client: redis.Redis, name: str) -> int:
    """How many connections the server has from clients named ``name``."""
    return sum(1 for entry in client.client_list() if entry.get("name") == name)


def test_close_closes_every_connection_the_store_opened(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
) -> None:
    """A store made from ``url`` closes its pool's connections on ``close`` (redis-py's own
    ``close`` leaves a pool it was given open, so they would wait for the garbage collector)."""
    name = f"leak-{uuid.uuid4().hex[:8]}"
    store = RedisStore(url=f"{redis_server.url}?client_name={name}", prefix=fresh_prefix())
    store.put(make_token(expires_at=None))
    assert connections_named(client, name) >= 1
    store.close()
    assert connections_named(client, name) == 0


@pytest.mark.anyio
async def test_aclose_closes_every_connection_the_async_store_opened(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
) -> None:
    """The async store made from ``url`` closes its pool's connections on ``aclose``."""
    name = f"leak-{uuid.uuid4().hex[:8]}"
    store = AsyncRedisStore(url=f"{redis_server.url}?client_name={name}", prefix=fresh_prefix())
    await asyncio.gather(*(store.put(make_token(f"t{i}", expires_at=None)) for i in range(4)))
    assert connections_named(client, name) >= 1
    await store.aclose()
    assert connections_named(client, name) == 0


def test_a_given_client_is_not_closed(redis_server: RedisServer) -> None:  # noqa: F811
    """The store closes a client it made from ``url``, never one it was given."""
    given = redis.Redis.from_url(redis_server.url)
    with RedisStore(given, prefix=fresh_prefix()) as store:
        store.put(make_token(expires_at=None))
        assert store.client is given
    assert given.ping()
    given.close()


def test_decoded_responses_client_works(redis_server: RedisServer) -> None:  # noqa: F811
    """A client made with ``decode_responses=True`` (str replies) works the same."""
    given = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        store = RedisStore(given, prefix=fresh_prefix())
        token = make_token(expires_at=None)
        store.put(token)
        assert store.find(token.group, "read") == [token]
        assert store.find(token.group, None) == [token]
        assert store.get(token.token_hash) == token
        assert store.list(TokenQuery()).items == [token]
        store.revoke(token.token_hash, time.time() + 60)
        assert store.is_revoked(token.token_hash)
        assert store.expunge_expired(time.time()) == 0
    finally:
        given.close()


def test_precise_numbers_survive_the_scripts(store_factory: Any, clock: FakeClock) -> None:
    """Times with microseconds and empty lists come back exactly (lines are never re-encoded
    inside Redis, where cjson would round to 14 digits and turn [] into {})."""
    store = store_factory(clock=clock)
    token = make_token(expires_at=clock.now + 3600.123456, updated_at=1_700_000_000.654321)
    token = token.replace(audience=(), extra={"nested": {"list": [], "pi": 3.141592653589793}})
    store.put(token)
    store.put(make_token(updated_at=1.0))  # rewrites the entry through the script
    [found, _] = store.find(token.group, "read")
    assert found == token
    assert found.expires_at == token.expires_at
    assert found.to_dict() == token.to_dict()


def test_a_non_finite_time_is_refused(store_factory: Any) -> None:
    """A token that JSON cannot hold (NaN) raises ``StoreError`` before anything is sent."""
    store = store_factory()
    with pytest.raises(StoreError):
        store.put(make_token(expires_at=float("nan")))


def test_list_and_expunge_cover_many_groups(store_factory: Any, clock: FakeClock) -> None:
    """More groups than one batch: ``list`` and ``expunge_expired`` see them all."""
    store = store_factory(clock=clock)
    tokens = [
        make_token(subject=f"user{i}", expires_at=clock.now + (10 if i % 2 else 1000))
        for i in range(600)
    ]
    for token in tokens:
        store.put(token)
    assert store.list(TokenQuery(limit=5)).total == 600
    assert store.list(TokenQuery(subject="user7")).items == [tokens[7]]
    clock.advance(20)
    assert store.expunge_expired(clock.now) == 300
    assert store.list(TokenQuery()).total == 300


@pytest.mark.anyio
async def test_async_store_native_use(redis_server: RedisServer, clock: FakeClock) -> None:  # noqa: F811
    """The async store used natively: context manager, rotation, revocation, listing."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with AsyncRedisStore(client, prefix=fresh_prefix(), clock=clock) as store:
            old = make_token("refresh")
            await store.put(old)
            new = make_token("refresh", updated_at=1.0)
            await asyncio.gather(store.find(old.group, "read"), store.replace(old.token_hash, new))
            assert await store.find(old.group, "read") == [new]
            assert await store.get(old.token_hash) is None
            await store.revoke(new.token_hash, clock.now + 60)
            assert await store.is_revoked(new.token_hash)
            with pytest.raises(TokenRevokedError):
                await store.put(new)
            assert (await store.list(TokenQuery())).total == 0
            assert repr(store).startswith("AsyncRedisStore(")
        assert await client.ping()  # a given client stays open
    finally:
        await client.aclose()


def test_writes_leave_no_dead_keys_behind(
    store_factory: Any, client: redis.Redis, clock: FakeClock
) -> None:
    """A token past its deadline is never written, and a write to its key drops it and its
    hash ref (Redis would drop them later anyway; the fake clock is ahead of Redis here)."""
    store = store_factory(clock=clock)
    store.put(make_token(expires_at=clock.now))
    assert keys_of(client, store.prefix) == []
    short = make_token(expires_at=clock.now + 10)
    store.put(short)
    clock.advance(20)
    lasting = make_token(expires_at=clock.now + 1000)
    store.put(lasting)
    assert not any(short.token_hash in key for key in keys_of(client, store.prefix))
    assert_indexes_consistent(client, store.prefix)
    assert store.find(lasting.group, "read") == [lasting]


def test_ties_put_last_come_first(store_factory: Any, clock: FakeClock) -> None:
    """Tokens with equal ``updated_at`` and ``issued_at``: the one put last comes first, as in
    the memory and disk stores."""
    store = store_factory(clock=clock)
    tied = [make_token(updated_at=3.0, issued_at=1.0) for _ in range(3)]
    newer, older = make_token(updated_at=4.0), make_token(updated_at=1.0)
    for token in [newer, older, *tied]:
        store.put(token)
    assert hashes(store.find(newer.group, "read")) == hashes([newer, *reversed(tied), older])


def test_dangling_references_read_as_absent(
    store_factory: Any, client: redis.Redis, clock: FakeClock
) -> None:
    """References to entries Redis dropped (or that no longer hold the token) read as absent;
    a stale group id in the group set is skipped by ``list`` and removed by ``expunge``."""
    store = store_factory(clock=clock)
    a, b = make_token(scopes={"read"}), make_token(scopes={"write"})
    store.put(a)
    store.put(b)
    b_ref = client.get(store.prefix + "h:" + b.token_hash)
    assert b_ref is not None
    client.set(store.prefix + "h:" + a.token_hash, b_ref)  # points at an entry without a
    assert store.get(a.token_hash) is None
    client.delete(store.prefix + "x:" + text(b_ref))  # as if Redis had expired it
    assert store.get(b.token_hash) is None
    gid = text(b_ref).split(":")[0]
    client.hset(store.prefix + "g:" + gid, "f" * 64, "never")  # an entry that is gone
    stale = "e" * 64
    client.zadd(store.prefix + "groups", {stale: float("inf")})
    assert store.find(a.group, None) == [a]  # its entry still holds it
    assert store.list(TokenQuery()).items == [a]
    assert store.expunge_expired(clock.now) == 0
    assert client.zscore(store.prefix + "groups", stale) is None
    assert client.hget(store.prefix + "g:" + gid, "f" * 64) is None  # expunge tidied it


@pytest.mark.parametrize("damage", ["not json", "wrong shape", "missing"])
def test_corrupt_group_record_raises_store_error(
    store_factory: Any, client: redis.Redis, clock: FakeClock, damage: str
) -> None:
    """The group's own record (what ``list`` filters on) malformed or missing: ``list`` skips
    the group; a write that needs it raises ``StoreError``."""
    store = store_factory(clock=clock)
    token = make_token()
    store.put(token)
    [gkey] = [k for k in keys_of(client, store.prefix) if k.startswith(store.prefix + "g:")]
    if damage == "missing":
        client.hdel(gkey, "group")
    else:
        client.hset(gkey, "group", "{oops" if damage == "not json" else "[1, 2, 3, 4, 5]")
    assert store.list(TokenQuery()).items == []
    if damage == "missing":
        with pytest.raises(StoreError):
            store.put(make_token(updated_at=3.0))


def test_failure_of_a_listing_read_raises_store_error(
    store_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis failure in the middle of ``list`` (the MGET of the entries) is a StoreError."""
    store = store_factory()
    store.put(make_token(expires_at=None))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("connection lost")

    monkeypatch.setattr(store.client, "mget", broken)
    with pytest.raises(StoreError, match="connection lost"):
        store.list(TokenQuery())


def test_other_redis_errors_name_only_their_kind() -> None:
    """Errors other than connection, timeout and server replies show their class name only."""
    from oauth2_token_manager._stores._async_redis import store_error as async_failure
    from oauth2_token_manager._stores._redis import store_error as sync_failure

    for failure in (async_failure, sync_failure):
        error = failure(redis.exceptions.DataError("value SECRET-x is not encodable"))
        assert str(error) == "Redis token store failed: DataError"


@pytest.mark.anyio
async def test_async_constructor_checks(redis_server: RedisServer) -> None:  # noqa: F811
    """The async store checks its settings like the sync one."""
    with pytest.raises(ValueError):
        AsyncRedisStore()
    with pytest.raises(ValueError):
        AsyncRedisStore(url=redis_server.url, retain_expired=-1)
    with pytest.raises(TypeError):
        AsyncRedisStore(url=redis_server.url, prefix=b"bytes")  # type: ignore[arg-type]
    store = AsyncRedisStore(url=redis_server.url, prefix="q:", retain_expired=2)
    assert (store.prefix, store.retain_expired) == ("q:", 2.0)
    assert not hasattr(store, "version")
    await store.aclose()


def test_scripts_survive_a_script_flush(store_factory: Any, client: redis.Redis) -> None:
    """After SCRIPT FLUSH (or a server restart) the scripts are loaded again on first use."""
    store = store_factory()
    token = make_token(expires_at=None)
    client.script_flush()
    store.put(token)
    client.script_flush()
    assert store.get(token.token_hash) == token


def test_a_missing_redis_server_binary_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without redis-server on PATH the helper fails with the install command."""
    import _redis_server

    monkeypatch.setattr("shutil.which", lambda name: None)
    with (
        pytest.raises(RuntimeError, match="apt-get install redis-server"),
        _redis_server.start_redis_server(),
    ):
        pass  # pragma: no cover


def test_lock_lease_runs_out_in_redis(store_factory: Any, client: redis.Redis) -> None:
    """The lock key carries the lease as a Redis expiry, so a dead holder frees it."""
    store = store_factory()
    assert store.try_lock("k", "dead-holder", 5)
    ttl = client.pttl(store.prefix + "l:k")
    assert 0 < ttl <= 5000
    assert not store.try_lock("k", "next", 5)
    client.pexpire(store.prefix + "l:k", 1)  # the lease runs out (without waiting 5 s)
    deadline = time.monotonic() + 5
    while not store.try_lock("k", "next", 5):
        assert time.monotonic() < deadline
    assert not store.renew_lock("k", "dead-holder", 5)
