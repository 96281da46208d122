"""Encryption at rest (``encryption_keys``) of ``DiskStore``, ``RedisStore`` and
``AsyncRedisStore``: the store contract encrypted, raw data without token values, wrong and
missing keys, key rotation, plaintext migration, and keys kept out of reprs and pickles.

Redis tests run against the private ``redis-server`` of ``_redis_server``, each store under a
fresh prefix; the async store is driven by a loop of its own behind a sync adapter.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from _loop_driven import LoopDriven
from _redis_server import RedisServer, redis_server  # noqa: F401
from cryptography.fernet import Fernet
from store_contract import START, FakeClock, StoreContract, hashes, make_token

from oauth2_token_manager._exceptions import ConfigurationError, StoreError
from oauth2_token_manager._models import Token
from oauth2_token_manager._stores import DiskStore, TokenQuery, TokenStore
from oauth2_token_manager._stores._async_redis import AsyncRedisStore
from oauth2_token_manager._stores._crypto import Cipher, generate_encryption_key
from oauth2_token_manager._stores._redis import RedisStore

KEY_A = generate_encryption_key()
KEY_B = generate_encryption_key()
WRONG_KEY = "wrong or missing encryption key"


# -- helpers -------------------------------------------------------------------------------


def fresh_prefix() -> str:
    """A prefix no other test uses."""
    return f"e{uuid.uuid4().hex[:12]}:"


def db_rows(directory: Path, columns: str) -> list[tuple[Any, ...]]:
    """Rows of diskcache's table, read with plain sqlite3."""
    con = sqlite3.connect(directory / "cache.db")
    try:
        return con.execute(f"SELECT {columns} FROM Cache").fetchall()  # noqa: S608
    finally:
        con.close()


def db_execute(directory: Path, statement: str, *args: Any) -> None:
    """Run a statement on the store's SQLite file behind its back."""
    con = sqlite3.connect(directory / "cache.db")
    try:
        con.execute(statement, args)
        con.commit()
    finally:
        con.close()


def redis_keys(client: redis.Redis, prefix: str) -> list[bytes]:
    """Every key under ``prefix`` (SCAN of the private server)."""
    return sorted(client.scan_iter(match=prefix + "*", count=1000))


def redis_raw(client: redis.Redis, prefix: str) -> bytes:
    """Every key and every stored byte under ``prefix``, whatever the key's type."""
    out: list[bytes] = []
    for key in redis_keys(client, prefix):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                out += [field, value]
        else:
            assert kind == b"zset"
            out += client.zrange(key, 0, -1)
    return b"\n".join(out)


def exact_lines(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """The parsed lines of every exact entry under ``prefix``."""
    keys = [k for k in redis_keys(client, prefix) if k.startswith(prefix.encode() + b"x:")]
    return [item for key in keys for item in json.loads(client.get(key) or b"[]")]


def sample_tokens() -> list[Token]:
    """Tokens of two groups, two sharing an exact key, one with secrets in ``extra``."""
    return [
        make_token(updated_at=1.0),
        make_token(updated_at=2.0).replace(extra={"id_token": "SECRET-in-extra"}),
        make_token("refresh", subject="bob", scopes=None),
    ]


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:  # noqa: F811
    """A sync client of the private server, for looking behind the stores' backs."""
    with redis.Redis.from_url(redis_server.url) as plain:
        yield plain


# -- the contract, encrypted ---------------------------------------------------------------


class TestEncryptedDiskStore(StoreContract):
    """The contract, for a ``DiskStore`` with encryption keys."""

    hypothesis_examples = 15

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> Iterator[None]:
        """Each test gets a directory; every store made in it is closed afterwards."""
        self.tmp_path = tmp_path
        self.opened: list[DiskStore] = []
        yield
        for store in self.opened:
            store.close()

    def make_store(self, clock: FakeClock, retain_expired: float = 0.0) -> TokenStore:
        """A fresh encrypted disk store in a new directory."""
        store = DiskStore(
            self.tmp_path / f"store{len(self.opened)}",
            retain_expired=retain_expired,
            clock=clock,
            encryption_keys=[KEY_A, KEY_B],
        )
        self.opened.append(store)
        return store

    def stored_keys(self, store: TokenStore) -> list[str]:
        """The key column of the SQLite file."""
        assert isinstance(store, DiskStore)
        return [key for (key,) in db_rows(store.directory, "key")]


class TestEncryptedRedisStore(StoreContract):
    """The contract, for a ``RedisStore`` with encryption keys."""

    hypothesis_examples = 15

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
        """A fresh encrypted Redis store under a new prefix."""
        store = RedisStore(
            url=self.url,
            prefix=fresh_prefix(),
            retain_expired=retain_expired,
            clock=clock,
            encryption_keys=[KEY_A, KEY_B],
        )
        self.opened.append(store)
        return store

    def stored_keys(self, store: TokenStore) -> list[str]:
        """Every key of the store's prefix (SCAN)."""
        assert isinstance(store, RedisStore)
        return [key.decode() for key in redis_keys(self.client, store.prefix)]


class TestEncryptedAsyncRedisStore(StoreContract):
    """The contract, for an ``AsyncRedisStore`` with encryption keys (driven on a loop)."""

    hypothesis_examples = 10

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
        """A fresh encrypted async Redis store under a new prefix, behind the adapter."""
        store = LoopDriven(
            AsyncRedisStore(
                url=self.url,
                prefix=fresh_prefix(),
                retain_expired=retain_expired,
                clock=clock,
                encryption_keys=[KEY_A],
            )
        )
        self.opened.append(store)
        return store

    def stored_keys(self, store: TokenStore) -> list[str]:
        """Every key of the store's prefix (SCAN)."""
        assert isinstance(store, LoopDriven)
        return [key.decode() for key in redis_keys(self.client, store.prefix)]


# -- every encrypting store: one location, opened with different keys ---------------------------


@dataclasses.dataclass
class Backend:
    """One store location (a directory or a prefix) that tests open with various keys."""

    name: str
    opener: Callable[[Any, FakeClock], Any]
    raw: Callable[[], bytes]
    opened: list[Any] = dataclasses.field(default_factory=list)

    def open(self, keys: Any = None, clock: FakeClock | None = None) -> Any:
        """A store on this location with ``keys`` (``None``: unencrypted)."""
        store = self.opener(keys, clock or FakeClock())
        self.opened.append(store)
        return store


@pytest.fixture(params=["disk", "redis", "async-redis"])
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
) -> Iterator[Backend]:
    """A disk directory or a Redis prefix (sync or async store); all stores closed afterwards."""
    kind = request.param
    if kind == "disk":
        directory = tmp_path / "store"

        def open_disk(keys: Any, clock: FakeClock) -> DiskStore:
            return DiskStore(directory, clock=clock, encryption_keys=keys)

        def disk_raw() -> bytes:
            return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())

        made = Backend(kind, open_disk, disk_raw)
    else:
        prefix = fresh_prefix()

        def open_redis(keys: Any, clock: FakeClock) -> Any:
            if kind == "redis":
                return RedisStore(
                    url=redis_server.url, prefix=prefix, clock=clock, encryption_keys=keys
                )
            return LoopDriven(
                AsyncRedisStore(
                    url=redis_server.url, prefix=prefix, clock=clock, encryption_keys=keys
                )
            )

        made = Backend(kind, open_redis, lambda: redis_raw(client, prefix))
    yield made
    for store in made.opened:
        store.close()


def assert_unreadable(store: Any, tokens: list[Token], match: str = WRONG_KEY) -> None:
    """Every read of ``tokens`` (and a write into their entries) raises ``StoreError``."""
    token = tokens[0]
    with pytest.raises(StoreError, match=match):
        store.find(token.group, token.scope_key)
    with pytest.raises(StoreError, match=match):
        store.find(token.group, None)
    with pytest.raises(StoreError, match=match):
        store.get(token.token_hash)
    with pytest.raises(StoreError, match=match):
        store.list(TokenQuery())
    with pytest.raises(StoreError, match=match):
        store.delete(token.token_hash)
    with pytest.raises(StoreError, match=match):
        store.put(make_token(updated_at=9.0))  # into the entry of tokens[0]


def test_raw_data_holds_no_token_value(backend: Backend) -> None:
    """Encrypted: raw bytes (SQLite files, Redis data) hold no token value; reads still work."""
    store = backend.open([KEY_A])
    tokens = sample_tokens()
    for token in tokens:
        store.put(token)
    store.revoke(make_token().token_hash, START + 60)
    for token in tokens:
        assert store.get(token.token_hash) == token
    assert hashes(store.find(tokens[0].group, "read")) == hashes([tokens[1], tokens[0]])
    assert store.list(TokenQuery()).total == 3
    if backend.name == "disk":
        store.close()  # let SQLite fold its WAL into the file: both are read anyway
    raw = backend.raw()
    assert b"SECRET" not in raw
    assert tokens[0].token_hash.encode() in raw  # keys (and Redis clear fields) hold hashes


def test_disk_values_are_fernet_tokens_of_the_json(tmp_path: Path) -> None:
    """A disk exact entry is a key id plus the Fernet token of the plain JSON."""
    with DiskStore(tmp_path, clock=FakeClock(), encryption_keys=[KEY_A, KEY_B]) as store:
        token = make_token()
        store.put(token)
    rows = dict(db_rows(tmp_path, "key, value"))
    [entry] = [json.loads(v) for k, v in rows.items() if k.startswith("x:")]
    assert set(entry) == {"key_id", "encrypted"}
    assert json.loads(Fernet(KEY_A).decrypt(entry["encrypted"])) == [token.to_dict()]
    [ref] = [json.loads(v) for k, v in rows.items() if k.startswith("h:")]
    assert ref.startswith("x:")


def test_redis_lines_keep_clear_fields_beside_the_fernet_token(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
) -> None:
    """A Redis line keeps the fields scripts read beside the Fernet token of the token."""
    prefix = fresh_prefix()
    with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_B, KEY_A]) as store:
        token = make_token(expires_at=None, updated_at=3.5, issued_at=2.5)
        store.put(token)
    [line] = exact_lines(client, prefix)
    assert set(line) == {
        "token_hash",
        "expires_at",
        "updated_at",
        "issued_at",
        "key_id",
        "encrypted",
    }
    assert (line["token_hash"], line["expires_at"], line["updated_at"], line["issued_at"]) == (
        token.token_hash,
        None,
        3.5,
        2.5,
    )
    assert json.loads(Fernet(KEY_B).decrypt(line["encrypted"])) == token.to_dict()


def test_wrong_key_raises_store_error(backend: Backend) -> None:
    """Written with A, opened with B: reads and writes raise StoreError, naming no key."""
    tokens = sample_tokens()
    writer = backend.open([KEY_A])
    for token in tokens:
        writer.put(token)
    wrong = backend.open([KEY_B])
    assert_unreadable(wrong, tokens)
    with pytest.raises(StoreError) as caught:
        wrong.find(tokens[0].group, "read")
    assert KEY_A not in str(caught.value)
    assert KEY_B not in str(caught.value)
    assert "SECRET" not in str(caught.value)
    for token in tokens:
        assert writer.get(token.token_hash) == token
    assert sorted(hashes(writer.list(TokenQuery()).items)) == sorted(hashes(tokens))


def test_missing_key_raises_store_error(backend: Backend) -> None:
    """An encrypted store opened without keys raises ``StoreError``, never reads as empty."""
    tokens = sample_tokens()
    writer = backend.open([KEY_A])
    for token in tokens:
        writer.put(token)
    plain = backend.open(None)
    assert_unreadable(plain, tokens, match="encrypted and this store has no encryption key")
    assert sorted(hashes(writer.list(TokenQuery()).items)) == sorted(hashes(tokens))


def test_encrypted_store_reading_a_plaintext_store_raises_store_error(backend: Backend) -> None:
    """A store with keys on data written without encryption raises ``StoreError``."""
    tokens = sample_tokens()
    plain = backend.open(None)
    for token in tokens:
        plain.put(token)
    keyed = backend.open([KEY_A])
    assert_unreadable(keyed, tokens, match="not encrypted")
    assert sorted(hashes(plain.list(TokenQuery()).items)) == sorted(hashes(tokens))


def test_key_rotation(backend: Backend) -> None:
    """Written with A: [B, A] reads and rotates, then [B] alone reads and [A] alone fails."""
    tokens = sample_tokens()
    old = backend.open([KEY_A])
    for token in tokens:
        old.put(token)
    both = backend.open([KEY_B, KEY_A])
    assert sorted(hashes(both.list(TokenQuery()).items)) == sorted(hashes(tokens))
    newer = make_token(subject="carol")
    both.put(newer)  # written with B already
    assert both.rotate_encryption() == len(tokens)
    assert both.rotate_encryption() == 0
    only_b = backend.open([KEY_B])
    everything = [*tokens, newer]
    assert sorted(hashes(only_b.list(TokenQuery()).items)) == sorted(hashes(everything))
    for token in everything:
        assert only_b.get(token.token_hash) == token
    assert only_b.find(tokens[0].group, "read") == [tokens[1], tokens[0]]
    assert_unreadable(backend.open([KEY_A]), tokens)


def test_rotation_refuses_what_no_key_opens(backend: Backend) -> None:
    """``rotate_encryption`` with keys that cannot decrypt an entry raises ``StoreError``."""
    backend.open([KEY_A]).put(make_token())
    with pytest.raises(StoreError, match=WRONG_KEY):
        backend.open([KEY_B]).rotate_encryption()


def test_plaintext_is_migrated_only_when_asked(backend: Backend) -> None:
    """Rotation refuses plain entries unless ``encrypt_plaintext=True`` encrypts them."""
    tokens = sample_tokens()
    plain = backend.open(None)
    for token in tokens:
        plain.put(token)
    keyed = backend.open([KEY_A])
    with pytest.raises(StoreError, match="not encrypted"):
        keyed.rotate_encryption()
    assert keyed.rotate_encryption(encrypt_plaintext=True) == len(tokens)
    assert keyed.rotate_encryption(encrypt_plaintext=True) == 0
    assert sorted(hashes(keyed.list(TokenQuery()).items)) == sorted(hashes(tokens))
    assert_unreadable(plain, tokens, match="encrypted and this store has no encryption key")
    if backend.name != "disk":  # SQLite may keep freed plaintext pages until a VACUUM
        assert b"SECRET" not in backend.raw()


def test_rotate_without_keys_is_a_value_error(backend: Backend) -> None:
    """A store without ``encryption_keys`` has nothing to rotate with."""
    with pytest.raises(ValueError, match="encryption_keys"):
        backend.open(None).rotate_encryption()


def test_revocations_work_whatever_the_keys(backend: Backend) -> None:
    """Revocation markers hold no secret: stores with other keys (or none) see them."""
    token = make_token()
    backend.open([KEY_A]).revoke(token.token_hash, START + 60)
    assert backend.open([KEY_B]).is_revoked(token.token_hash)
    assert backend.open(None).is_revoked(token.token_hash)


def test_repr_shows_the_number_of_keys_only(backend: Backend) -> None:
    """``repr`` says how many keys a store has, never a key or part of one."""
    store = backend.open([KEY_A, KEY_B])
    text = repr(store)
    assert "<2 keys>" in text
    for key in (KEY_A, KEY_B):
        assert key not in text
        assert key[:8] not in text
    assert "keys" not in repr(backend.open(None))


def test_keys_are_never_pickled(tmp_path: Path) -> None:
    """Neither the cipher nor a store holding it can be pickled (or copied) with its keys."""
    cipher = Cipher([KEY_A])
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(cipher)
    with (
        DiskStore(tmp_path, encryption_keys=[KEY_A]) as store,
        pytest.raises(TypeError, match="not pickled"),
    ):
        pickle.dumps(store)
    assert repr(cipher) == "Cipher(<1 key>)"


# -- keys and their checks -----------------------------------------------------------------


def test_generated_keys_are_fernet_keys() -> None:
    """``generate_encryption_key`` gives distinct url-safe base64 texts of 32 bytes."""
    key = generate_encryption_key()
    assert isinstance(key, str)
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"
    assert generate_encryption_key() != key


@pytest.mark.parametrize(
    ("keys", "error", "match"),
    [
        (KEY_A, ConfigurationError, "sequence of keys, not one key"),
        (KEY_A.encode(), ConfigurationError, "sequence of keys, not one key"),
        ([], ConfigurationError, "at least one key"),
        ([KEY_A, "not-a-fernet-key"], ConfigurationError, "key #2 is not a Fernet key"),
        (
            [base64.urlsafe_b64encode(b"k" * 31).decode()],
            ConfigurationError,
            "key #1 is not a Fernet",
        ),
        ([KEY_A, 42], ConfigurationError, "key #2 is not a str or bytes"),
    ],
)
def test_bad_keys_are_refused_at_construction(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    keys: Any,
    error: type[Exception],
    match: str,
) -> None:
    """Bad ``encryption_keys`` are refused by every store, without repeating the key."""
    makers: list[Callable[[], Any]] = [
        lambda: DiskStore(tmp_path / "never", encryption_keys=keys),
        lambda: RedisStore(url=redis_server.url, encryption_keys=keys),
        lambda: AsyncRedisStore(url=redis_server.url, encryption_keys=keys),
    ]
    for make in makers:
        with pytest.raises(error, match=match) as caught:
            make()
        assert "not-a-fernet-key" not in str(caught.value)
        assert KEY_A not in str(caught.value)
    assert not (tmp_path / "never").exists()


def test_bytes_keys_work_like_text_keys(tmp_path: Path) -> None:
    """Keys given as bytes decrypt what the same keys given as text wrote."""
    token = make_token(expires_at=None)
    with DiskStore(tmp_path, encryption_keys=[KEY_A]) as store:
        store.put(token)
    with DiskStore(tmp_path, encryption_keys=[KEY_A.encode()]) as again:
        assert again.get(token.token_hash) == token
        assert again.encrypted


def test_missing_cryptography_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the cryptography package, asking for encryption names the extra to install."""
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    with pytest.raises(ImportError, match=r"oauth2_token_manager\[encryption\]"):
        generate_encryption_key()
    with pytest.raises(ImportError, match=r"oauth2_token_manager\[encryption\]"):
        DiskStore(tmp_path, encryption_keys=[KEY_A])
    with DiskStore(tmp_path) as plain:  # stores without keys never import it
        assert not plain.encrypted


# -- tampering -------------------------------------------------------------------------------


def test_disk_tampered_ciphertext_raises_store_error(tmp_path: Path) -> None:
    """A modified Fernet token (or an unknown key id, or a malformed entry) is ``StoreError``."""
    store = DiskStore(tmp_path, clock=FakeClock(), encryption_keys=[KEY_A])
    token = make_token()
    store.put(token)
    [(key, value)] = [r for r in db_rows(tmp_path, "key, value") if r[0].startswith("x:")]
    entry = json.loads(value)
    flipped = entry["encrypted"][:-5] + ("A" if entry["encrypted"][-5] != "A" else "B")
    for bad, match in [
        ({**entry, "encrypted": flipped + entry["encrypted"][-4:]}, WRONG_KEY),
        ({**entry, "key_id": "0" * 16}, WRONG_KEY),
        ({**entry, "encrypted": 7}, "malformed"),
        ({"key_id": entry["key_id"]}, "malformed"),
        ("gAAAAA", "malformed"),
    ]:
        db_execute(tmp_path, "UPDATE Cache SET value = ? WHERE key = ?", json.dumps(bad), key)
        with pytest.raises(StoreError, match=match):
            store.find(token.group, "read")
    sealed = Fernet(KEY_A).encrypt(b"{not json").decode()
    db_execute(
        tmp_path,
        "UPDATE Cache SET value = ? WHERE key = ?",
        json.dumps({**entry, "encrypted": sealed}),
        key,
    )
    with pytest.raises(StoreError, match="not valid JSON"):
        store.find(token.group, "read")
    store.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_redis_lines_swapped_or_altered_raise_store_error(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
    kind: str,
) -> None:
    """Swapped payloads or altered clear fields of Redis lines raise StoreError."""
    prefix = fresh_prefix()
    store: Any = (
        RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_A])
        if kind == "sync"
        else LoopDriven(
            AsyncRedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_A])
        )
    )
    try:
        a, b = make_token(expires_at=None, updated_at=2.0), make_token(expires_at=None)
        store.put(a)
        store.put(b)
        [key] = [k for k in redis_keys(client, prefix) if b":x:" in k]
        original = client.get(key)
        assert original is not None
        lines = json.loads(original)
        swapped = [
            {**lines[0], "encrypted": lines[1]["encrypted"]},
            {**lines[1], "encrypted": lines[0]["encrypted"]},
        ]
        altered = [{**lines[0], "expires_at": 1.0}, lines[1]]
        not_a_token = [{**lines[0], "encrypted": Fernet(KEY_A).encrypt(b"[1]").decode()}]
        not_json = [{**lines[0], "encrypted": Fernet(KEY_A).encrypt(b"{x").decode()}]
        for bad, match in [
            (swapped, "inconsistent"),
            (altered, "inconsistent"),
            (not_a_token, "not a token"),
            (not_json, "not valid JSON"),
        ]:
            client.set(key, "[\n" + ",\n".join(json.dumps(x) for x in bad) + "\n]")
            with pytest.raises(StoreError, match=match):
                store.find(a.group, "read")
            with pytest.raises(StoreError, match=match):
                store.get(a.token_hash)
    finally:
        store.close()


# -- Redis: the hot path and the wire --------------------------------------------------------


def test_encrypted_exact_find_is_still_one_get(
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With encryption, an exact ``find`` is still ONE ``GET`` (decryption is local)."""
    with RedisStore(url=redis_server.url, prefix=fresh_prefix(), encryption_keys=[KEY_A]) as store:
        token = make_token(expires_at=None)
        store.put(token)
        commands: list[tuple[Any, ...]] = []
        real = store.client.execute_command

        def counting(*args: Any, **kwargs: Any) -> Any:
            commands.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(store.client, "execute_command", counting)
        assert store.find(token.group, "read") == [token]
        assert [c[0] for c in commands] == ["GET"]


def test_no_token_value_reaches_redis(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """With encryption no command seen by MONITOR carries a token value."""
    prefix = fresh_prefix()
    store = RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_B, KEY_A])
    old = RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_A])
    try:
        old.put(make_token(expires_at=None, subject="zed"))
        store.find(make_token().group, "read")  # connections open and warm
        with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as monitor:
            monitor.sendall(b"MONITOR\r\n")
            assert monitor.recv(64).startswith(b"+OK")
            first, second = (make_token("refresh", expires_at=None) for _ in range(2))
            store.put(first)
            store.replace(first.token_hash, second)
            assert store.find(second.group, "read") == [second]
            assert store.list(TokenQuery()).total == 2
            assert store.rotate_encryption() == 1
            assert store.delete(second.token_hash) == second
            with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5) as other:
                other.sendall(b'ECHO "end-of-test"\r\n')
                other.recv(64)
            seen = b""
            while b"end-of-test" not in seen:
                chunk = monitor.recv(65536)
                assert chunk
                seen += chunk
        assert b"EVALSHA" in seen
        assert b"SECRET" not in seen
    finally:
        store.close()
        old.close()


def test_redis_rotation_keeps_expiries(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
) -> None:
    """Rotation rewrites an entry with the expiry Redis had for it (and none for none)."""
    prefix = fresh_prefix()
    clock = FakeClock()
    with RedisStore(url=redis_server.url, prefix=prefix, clock=clock, encryption_keys=[KEY_A]) as a:
        a.put(make_token(expires_at=clock.now + 100))
        a.put(make_token(expires_at=None, subject="bob"))
    entries = [k for k in redis_keys(client, prefix) if b":x:" in k]
    before = {k: client.pttl(k) for k in entries}
    with RedisStore(
        url=redis_server.url, prefix=prefix, clock=clock, encryption_keys=[KEY_B, KEY_A]
    ) as b:
        assert b.rotate_encryption() == 2
    after = {k: client.pttl(k) for k in entries}
    assert sorted(before.values())[0] == -1
    assert sorted(after.values())[0] == -1
    [bounded_before] = [t for t in before.values() if t != -1]
    [bounded_after] = [t for t in after.values() if t != -1]
    assert 95_000 < bounded_after <= bounded_before <= 100_000
    assert {line["key_id"] for line in exact_lines(client, prefix)} == {Cipher([KEY_B]).primary_id}


def test_disk_rotation_keeps_expiries(tmp_path: Path) -> None:
    """Rotation rewrites a disk entry with diskcache's expiry for it (and none for none)."""
    clock = FakeClock()
    with DiskStore(tmp_path, clock=clock, encryption_keys=[KEY_A]) as a:
        a.put(make_token(expires_at=clock.now + 100))
        a.put(make_token(expires_at=None, subject="bob"))
    before = dict(db_rows(tmp_path, "key, expire_time"))
    with DiskStore(tmp_path, clock=clock, encryption_keys=[KEY_B, KEY_A]) as b:
        assert b.rotate_encryption() == 2
    after = dict(db_rows(tmp_path, "key, expire_time"))
    assert after.keys() == before.keys()
    entries = [key for key in before if key.startswith("x:")]
    assert sorted(before[key] is None for key in entries) == [False, True]
    for key, expire_time in before.items():
        if expire_time is None or not key.startswith("x:"):
            assert after[key] == expire_time
        else:
            assert abs(after[key] - expire_time) < 1


def test_redis_rotation_rereads_an_entry_changed_meanwhile(
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write racing rotation makes the compare-and-set miss; the entry is redone."""
    prefix = fresh_prefix()
    old = RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_A])
    new = RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_B, KEY_A])
    try:
        first = make_token(expires_at=None)
        old.put(first)
        late = make_token(expires_at=None, updated_at=5.0)
        real_mget = new.client.mget
        calls = [0]

        def racing_mget(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            found = real_mget(*args, **kwargs)
            if calls[0] == 1:
                old.put(late)  # a process still on [A] writes into the entry just read
            return found

        monkeypatch.setattr(new.client, "mget", racing_mget)
        assert new.rotate_encryption() == 2
        assert calls[0] == 2
        with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_B]) as only_b:
            assert only_b.find(first.group, "read") == [late, first]
    finally:
        old.close()
        new.close()


def test_redis_rotation_gives_up_on_endless_races(
    redis_server: RedisServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If every compare-and-set misses, rotation stops with ``StoreError`` (run it again)."""
    prefix = fresh_prefix()
    with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_A]) as old:
        old.put(make_token(expires_at=None))
    with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_B, KEY_A]) as store:
        real_run = store._run

        def missing(script: Any, *args: Any) -> Any:
            if script is store._rotate_script:
                return [0] * (len(args) // 3)  # as if a writer always came first
            return real_run(script, *args)

        monkeypatch.setattr(store, "_run", missing)
        with pytest.raises(StoreError, match="run it again"):
            store.rotate_encryption()


def test_redis_wrong_key_writes_nothing(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
) -> None:
    """Write scripts refuse entries of another key or mode and write nothing."""
    prefix = fresh_prefix()
    with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_A]) as a:
        token = make_token(expires_at=None)
        a.put(token)
    snapshot = redis_raw(client, prefix)
    for keys, match in [([KEY_B], WRONG_KEY), (None, "no encryption key")]:
        with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=keys) as other:
            for write in (
                lambda: other.put(make_token(expires_at=None)),
                lambda: other.replace(token.token_hash, make_token(subject="bob")),
                lambda: other.revoke(token.token_hash, time.time() + 60),
                lambda: other.expunge_expired(time.time()),
            ):
                with pytest.raises(StoreError, match=match):
                    write()
                assert redis_raw(client, prefix) == snapshot


def test_delete_returns_the_decrypted_token(backend: Backend) -> None:
    """``delete`` of an encrypted token returns it whole, and it is gone afterwards."""
    store = backend.open([KEY_A])
    token = make_token().replace(extra={"id_token": "SECRET-x"})
    store.put(token)
    assert store.delete(token.token_hash) == token
    assert store.get(token.token_hash) is None
    assert store.rotate_encryption() == 0


def test_disk_rotation_failures_are_store_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During rotation, a malformed entry or a failing database raises ``StoreError``."""
    with DiskStore(tmp_path / "old", clock=FakeClock(), encryption_keys=[KEY_A]) as old:
        old.put(make_token())
    store = DiskStore(tmp_path / "old", clock=FakeClock(), encryption_keys=[KEY_B, KEY_A])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(store._cache, "set", broken)
        with pytest.raises(StoreError, match="disk I/O error"):
            store.rotate_encryption()
    with monkeypatch.context() as patch:
        patch.setattr(store._cache, "get", broken)
        with pytest.raises(StoreError, match="disk I/O error"):
            store.rotate_encryption()
    with monkeypatch.context() as patch:
        patch.setattr(store._cache, "iterkeys", broken)
        with pytest.raises(StoreError, match="disk I/O error"):
            store.rotate_encryption()
    db_execute(tmp_path / "old", "UPDATE Cache SET value = '7' WHERE key LIKE 'x:%'")
    with pytest.raises(StoreError, match="malformed"):
        store.rotate_encryption()
    store.close()


def test_redis_rotation_failures_are_store_errors(
    redis_server: RedisServer,  # noqa: F811
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """During rotation, a malformed entry or a failing connection raises ``StoreError``."""
    prefix = fresh_prefix()
    with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_A]) as old:
        old.put(make_token(expires_at=None))
    with RedisStore(url=redis_server.url, prefix=prefix, encryption_keys=[KEY_B, KEY_A]) as store:

        def lost(*args: Any, **kwargs: Any) -> Any:
            raise redis.exceptions.ConnectionError("connection lost")

        for method in ("zrange", "mget"):
            with monkeypatch.context() as patch:
                patch.setattr(store.client, method, lost)
                with pytest.raises(StoreError, match="connection lost"):
                    store.rotate_encryption()
        [key] = [k for k in redis_keys(client, prefix) if b":x:" in k]
        client.set(key, '"not an entry"')
        with pytest.raises(StoreError, match="malformed"):
            store.rotate_encryption()
