"""The store contract for ``MemoryStore`` and ``DiskStore``, plus what is specific to each."""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import pickle
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_contract import FakeClock, StoreContract, hashes, make_token

from oauth2_token_manager._exceptions import CorruptEntryError, StoreError, TokenRevokedError
from oauth2_token_manager._models import Token
from oauth2_token_manager._stores import DiskStore, MemoryStore, TokenQuery, TokenStore
from oauth2_token_manager._stores._disk import default_directory

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

# Values no DiskStore writes, for any entry: not JSON, not finite, nested deeper than Python's
# recursion limit, an integer beyond the float range, or beyond int-string conversion.
CORRUPT_VALUES = [
    "{not json",
    "NaN",
    "Infinity",
    "[" * 100_000 + "]" * 100_000,
    "1" + "0" * 400,
    "9" * 5000,
    '"text"',
    "{}",
]
CORRUPT_VALUE_IDS = ["not-json", "nan", "inf", "deep", "huge-int", "giant-int", "text", "object"]
_FIELDS = (
    '"kind":"access","value":"v-1","issuer":"https://issuer.example","client_id":"client-1",'
    '"subject":"alice","scopes":["read"],"issued_at":0,"updated_at":0'
)
# Exact entries (lists of token records): the above, and records with bad fields.
CORRUPT_EXACT_ENTRIES = [
    *CORRUPT_VALUES,
    "[1, 2]",
    '[{"kind": "access"}]',
    "7",
    "[{" + _FIELDS + ',"expires_at":Infinity}]',
    "[{" + _FIELDS + ',"expires_at":NaN}]',
    "[{" + _FIELDS + ',"expires_at":1' + "0" * 400 + "}]",
    "[{" + _FIELDS + ',"extra":' + "[" * 100_000 + "]" * 100_000 + "}]",
    "[{" + _FIELDS + ',"scopes":["caf\u00e9"]}]',
    "[{" + _FIELDS + ',"scopes":[""]}]',
]
CORRUPT_IDS = [
    *CORRUPT_VALUE_IDS,
    "ints",
    "missing-fields",
    "seven",
    "expiry-inf",
    "expiry-nan",
    "expiry-huge",
    "deep-extra",
    "non-ascii-scope",
    "empty-scope",
]


# -- MemoryStore ---------------------------------------------------------------------------


def memory_keys(store: MemoryStore) -> list[str]:
    """Every key of the memory store's cache and indexes, as text."""
    with store._lock:
        keys: list[Any] = [*store._cache, *store._refs, *store._groups, *store._revoked]
    return [repr(k) for k in keys]


def assert_memory_indexes_consistent(store: MemoryStore) -> None:
    """The secondary indexes describe exactly the entries of the TLRU cache."""
    with store._lock:
        entries = {key: store._cache[key][0] for key in list(store._cache)}
        refs = dict(store._refs)
        groups = {key: set(record[1]) for key, record in store._groups.items()}
    expected_refs = {("h", t.token_hash): key for key, tokens in entries.items() for t in tokens}
    assert refs == expected_refs
    expected_groups: dict[Any, set[str]] = {}
    for _, group, scope_key in entries:
        expected_groups.setdefault(("g", group), set()).add(scope_key)
    assert groups == expected_groups


class TestMemoryStore(StoreContract):
    """The contract, for ``MemoryStore``."""

    def make_store(self, clock: FakeClock, retain_expired: float = 0.0) -> TokenStore:
        """A fresh memory store."""
        return MemoryStore(retain_expired=retain_expired, clock=clock)

    def stored_keys(self, store: TokenStore) -> list[str]:
        """The cache's keys and the indexes' keys."""
        assert isinstance(store, MemoryStore)
        return memory_keys(store)

    def test_indexes_stay_consistent_after_tlru_expiry(self, clock: FakeClock) -> None:
        """When TLRU entries expire, the hash refs and group entries follow them."""
        store = MemoryStore(clock=clock)
        tokens = [
            make_token(subject=f"user{i % 3}", scopes={f"s{i}"}, expires_at=clock.now + i)
            for i in range(1, 40)
        ]
        for token in tokens:
            store.put(token)
        assert_memory_indexes_consistent(store)
        clock.advance(20)
        # Reads skip what expired even before the indexes are reconciled.
        assert all(store.get(t.token_hash) is None for t in tokens[:20])
        assert all(store.get(t.token_hash) == t for t in tokens[20:])
        store.put(make_token(subject="someone-else"))  # any write reconciles
        assert_memory_indexes_consistent(store)
        assert len(store._refs) == 19 + 1
        clock.advance(100)
        assert store.expunge_expired(clock.now) == 19  # dropped by the cache, counted
        assert_memory_indexes_consistent(store)
        assert len(store._refs) == 1
        assert len(store._groups) == 1

    def test_expunge_counts_what_the_cache_expired(self, clock: FakeClock) -> None:
        """Entries dropped by TLRU expiry during ``expunge_expired`` are counted and unindexed."""
        store = MemoryStore(clock=clock)
        for i in range(5):
            store.put(make_token(scopes={f"s{i}"}, expires_at=clock.now + 10))
        clock.advance(11)
        assert store.expunge_expired(clock.now) == 5
        assert_memory_indexes_consistent(store)
        assert not store._refs
        assert not store._groups

    def test_indexes_stay_consistent_after_lru_eviction(self, clock: FakeClock) -> None:
        """Beyond ``maxsize`` the least recently used entries go, and their index entries too."""
        store = MemoryStore(maxsize=3, clock=clock)
        tokens = [make_token(scopes={f"scope{i}"}) for i in range(10)]
        for token in tokens:
            store.put(token)
        assert_memory_indexes_consistent(store)
        assert len(store._cache) == 3
        assert [store.get(t.token_hash) for t in tokens[:7]] == [None] * 7
        assert sorted(hashes(store.find(tokens[0].group, None))) == sorted(hashes(tokens[-3:]))

    def test_recently_read_entries_survive_eviction(self, clock: FakeClock) -> None:
        """A ``find`` marks its entry as recently used, so LRU eviction spares it."""
        store = MemoryStore(maxsize=2, clock=clock)
        first, second, third = (make_token(scopes={f"s{i}"}) for i in range(3))
        store.put(first)
        store.put(second)
        assert store.find(first.group, "s0") == [first]
        store.put(third)
        assert store.get(first.token_hash) == first
        assert store.get(second.token_hash) is None
        assert_memory_indexes_consistent(store)

    def test_threads_lose_no_update(self, clock: FakeClock) -> None:
        """Eight threads putting, rotating and deleting on shared keys leave the exact result."""
        store = MemoryStore(clock=clock)
        barrier = threading.Barrier(8)
        expected: dict[int, list[Token]] = {}
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                barrier.wait()
                kept: list[Token] = []
                for i in range(150):
                    token = make_token(scopes={f"shared{i % 3}"}, updated_at=float(i))
                    store.put(token)
                    assert store.find(token.group, token.scope_key)
                    if i % 3 == 0:
                        rotated = make_token(scopes={f"shared{i % 3}"}, updated_at=float(i))
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
        assert sorted(hashes(store.find(group, None))) == sorted(hashes(everything))
        assert store.list(TokenQuery()).total == len(everything)
        assert_memory_indexes_consistent(store)

    def test_exact_find_does_not_use_the_generic_path(self, clock: FakeClock) -> None:
        """The hot path (exact ``find``) reads the cache directly, not the generic indexes."""
        store = MemoryStore(clock=clock)
        token = make_token()
        store.put(token)
        store._read = None  # type: ignore[method-assign, assignment]
        assert store.find(token.group, "read") == [token]

    def test_repr_and_maxsize(self) -> None:
        """The store shows its settings, never a token."""
        store = MemoryStore(maxsize=10, retain_expired=5)
        store.put(make_token(value="SECRET-in-repr"))
        assert store.maxsize == 10
        assert "SECRET" not in repr(store)
        assert store.retain_expired == 5


# -- DiskStore -----------------------------------------------------------------------------


def db_rows(directory: Path, columns: str = "key, value") -> list[tuple[Any, ...]]:
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


def _disk_writer(directory: str, worker: int, count: int) -> None:
    """Child process: put ``count`` tokens into one shared key and one key of its own."""
    forever: dict[str, Any] = {"expires_at": None}  # the real clock is past the fake one
    with DiskStore(directory) as store:
        for i in range(count):
            store.put(
                make_token(value=f"SECRET-p{worker}-shared-{i}", scopes={"shared"}, **forever)
            )
            own = make_token(value=f"SECRET-p{worker}-own-{i}", scopes={f"own{worker}"}, **forever)
            store.put(own)
            if i % 4 == 0:
                store.replace(
                    own.token_hash,
                    make_token(
                        value=f"SECRET-p{worker}-rot-{i}", scopes={f"own{worker}"}, **forever
                    ),
                )


class TestDiskStore(StoreContract):
    """The contract, for ``DiskStore``."""

    hypothesis_examples = 25

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> Iterator[None]:
        """Each test gets a directory; every store made in it is closed afterwards."""
        self.tmp_path = tmp_path
        self.opened: list[DiskStore] = []
        yield
        for store in self.opened:
            store.close()

    def make_store(self, clock: FakeClock, retain_expired: float = 0.0) -> TokenStore:
        """A fresh disk store in a new directory."""
        store = DiskStore(
            self.tmp_path / f"store{len(self.opened)}", retain_expired=retain_expired, clock=clock
        )
        self.opened.append(store)
        return store

    def stored_keys(self, store: TokenStore) -> list[str]:
        """The key column of the SQLite file (values hold token values; keys must not)."""
        assert isinstance(store, DiskStore)
        return [key for (key,) in db_rows(store.directory, "key")]

    @posix_only
    def test_files_are_private(self, clock: FakeClock) -> None:
        """The directory is 0700 and every file in it (db, -wal, -shm) is 0600 after writes."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        for i in range(20):
            store.put(make_token(scopes={f"s{i}"}))
        store.revoke(make_token().token_hash, clock.now + 60)
        assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
        files = list(store.directory.iterdir())
        assert {f.name for f in files} >= {"cache.db", "cache.db-wal", "cache.db-shm"}
        for file in files:
            assert file.is_file()
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name

    @posix_only
    def test_an_existing_directory_keeps_its_mode_and_the_db_is_made_private(
        self, clock: FakeClock
    ) -> None:
        """An existing directory readable by others keeps its mode (what the user gave is
        never re-moded); a db file readable by others is made 0600."""
        directory = self.tmp_path / "loose"
        directory.mkdir(mode=0o755)
        (directory / "cache.db").touch(mode=0o644)
        os.chmod(directory, 0o755)  # noqa: S103 - the loose mode under test
        os.chmod(directory / "cache.db", 0o644)
        with DiskStore(directory, clock=clock) as store:
            store.put(make_token())
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
        assert stat.S_IMODE((directory / "cache.db").stat().st_mode) == 0o600

    @posix_only
    @pytest.mark.parametrize("mode", [0o1777, 0o777, 0o775, 0o757], ids=lambda m: f"{m:04o}")
    def test_a_directory_others_can_write_is_refused_and_left_alone(
        self, clock: FakeClock, mode: int
    ) -> None:
        """A directory other users can write (a /tmp-like 1777 one included) is refused with
        a StoreError before anything is created in it, and its mode (sticky bit included) is
        left as it was."""
        directory = self.tmp_path / f"shared-{mode:o}"
        directory.mkdir()
        os.chmod(directory, mode)
        with pytest.raises(StoreError, match="can be written by other users"):
            DiskStore(directory, clock=clock)
        assert stat.S_IMODE(directory.stat().st_mode) == mode
        assert list(directory.iterdir()) == []

    @posix_only
    def test_a_new_directory_is_created_private(self, clock: FakeClock) -> None:
        """A directory that does not exist yet (parents included) is created 0700."""
        directory = self.tmp_path / "new" / "store"
        with DiskStore(directory, clock=clock) as store:
            store.put(make_token())
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    def test_survives_a_restart(self, clock: FakeClock) -> None:
        """A new ``DiskStore`` on the same directory sees the tokens and revocations."""
        directory = self.tmp_path / "restart"
        token, revoked = make_token(), make_token()
        with DiskStore(directory, clock=clock) as store:
            store.put(token)
            store.revoke(revoked.token_hash, clock.now + 60)
        with DiskStore(directory, clock=clock) as again:
            assert again.get(token.token_hash) == token
            assert again.find(token.group, "read") == [token]
            assert again.is_revoked(revoked.token_hash)
            assert again.list(TokenQuery()).total == 1

    def test_values_are_json_text_never_pickle(self, clock: FakeClock) -> None:
        """Raw rows hold TEXT keys and TEXT JSON values in the table itself (no pickle, no file)."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token(scopes={"read", "write"}, resource="https://api")
        store.put(token)
        store.revoke(make_token().token_hash, clock.now + 60)
        rows = db_rows(
            store.directory, "typeof(key), raw, mode, filename, typeof(value), key, value"
        )
        assert {row[0] for row in rows} == {"text"}
        assert {(row[1], row[2], row[3], row[4]) for row in rows} == {(1, 1, None, "text")}
        decoded = {key: json.loads(value) for *_, key, value in rows}
        [entry] = [v for k, v in decoded.items() if k.startswith("x:")]
        assert entry == [token.to_dict()]
        assert not any(f.suffix == ".val" for f in store.directory.rglob("*"))

    def test_keys_hold_no_token_value_though_the_file_does(self, clock: FakeClock) -> None:
        """Token values appear in the db file (in values, as a cache must) but in no key."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token(value="SECRET-findable-in-values")
        store.put(token)
        store.close()
        keys = [key for (key,) in db_rows(store.directory, "key")]
        values = [value for (value,) in db_rows(store.directory, "value")]
        assert not any(token.value in key for key in keys)
        assert any(token.value in value for value in values)
        assert any(token.token_hash in key for key in keys)

    @pytest.mark.parametrize("bad", CORRUPT_EXACT_ENTRIES, ids=CORRUPT_IDS)
    def test_corrupt_entry_raises_store_error(self, clock: FakeClock, bad: str) -> None:
        """An unreadable exact entry raises ``CorruptEntryError`` from ``find`` and ``get``
        (never reads as empty, never ``RecursionError``/``OverflowError``)."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.put(token)
        db_execute(store.directory, "UPDATE Cache SET value = ? WHERE key LIKE 'x:%'", bad)
        with pytest.raises(CorruptEntryError):
            store.find(token.group, "read")
        with pytest.raises(CorruptEntryError):
            store.find(token.group, None)
        with pytest.raises(CorruptEntryError):
            store.get(token.token_hash)

    @pytest.mark.parametrize("bad", CORRUPT_EXACT_ENTRIES, ids=CORRUPT_IDS)
    def test_corrupt_entry_is_skipped_by_list_and_removed_by_expunge(
        self, clock: FakeClock, bad: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """``list`` skips an unreadable entry (one warning); ``expunge_expired`` removes it,
        after which the store works again for that key."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token, other = make_token(), make_token(scopes={"write"})
        store.put(token)
        store.put(other)
        key = store._exact_key(token.group, "read")
        db_execute(store.directory, "UPDATE Cache SET value = ? WHERE key = ?", bad, key)
        assert hashes(store.list(TokenQuery()).items) == [other.token_hash]
        assert "list skipped 1 unreadable store entries" in caplog.text
        assert store.expunge_expired(clock.now) == 0
        assert "expunge_expired removed 1 unreadable store entries" in caplog.text
        assert store.get(token.token_hash) is None
        assert store.find(token.group, "read") == []
        store.put(token)
        assert sorted(hashes(store.find(token.group, None))) == sorted(hashes([token, other]))

    @pytest.mark.parametrize("bad", CORRUPT_EXACT_ENTRIES, ids=CORRUPT_IDS)
    def test_delete_removes_a_corrupt_entry(self, clock: FakeClock, bad: str) -> None:
        """``delete(hash)`` of a token whose entry cannot be read removes that entry."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.put(token)
        db_execute(store.directory, "UPDATE Cache SET value = ? WHERE key LIKE 'x:%'", bad)
        assert store.delete(token.token_hash) is None
        assert store.get(token.token_hash) is None
        assert store.find(token.group, "read") == []
        assert store.list(TokenQuery()).items == []

    @pytest.mark.parametrize("bad", CORRUPT_VALUES, ids=CORRUPT_VALUE_IDS)
    def test_delete_removes_a_corrupt_hash_entry(self, clock: FakeClock, bad: str) -> None:
        """``delete(hash)`` removes an unreadable hash entry; ``get`` then finds nothing."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.put(token)
        db_execute(store.directory, "UPDATE Cache SET value = ? WHERE key LIKE 'h:%'", bad)
        with pytest.raises(CorruptEntryError):
            store.get(token.token_hash)
        assert store.delete(token.token_hash) is None
        assert store.get(token.token_hash) is None

    @pytest.mark.parametrize("bad", CORRUPT_VALUES, ids=CORRUPT_VALUE_IDS)
    def test_corrupt_group_entry_is_removed_by_expunge(self, clock: FakeClock, bad: str) -> None:
        """An unreadable group entry is skipped by ``list`` and removed by ``expunge_expired``."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.put(token)
        db_execute(store.directory, "UPDATE Cache SET value = ? WHERE key LIKE 'g:%'", bad)
        with pytest.raises(CorruptEntryError):
            store.find(token.group, None)
        assert store.list(TokenQuery()).items == []
        store.expunge_expired(clock.now)
        assert [key for (key,) in db_rows(store.directory, "key") if key.startswith("g:")] == []
        assert store.find(token.group, None) == []

    @pytest.mark.parametrize("bad", CORRUPT_VALUES, ids=CORRUPT_VALUE_IDS)
    def test_corrupt_revocation_means_revoked(self, clock: FakeClock, bad: str) -> None:
        """An unreadable revocation entry reads as revoked (fail closed) and blocks ``put``;
        ``revoke`` replaces it with a readable one."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.revoke(token.token_hash, clock.now + 60)
        db_execute(store.directory, "UPDATE Cache SET value = ? WHERE key LIKE 'r:%'", bad)
        assert store.is_revoked(token.token_hash)
        with pytest.raises(TokenRevokedError):
            store.put(token)
        store.revoke(token.token_hash, clock.now + 60)
        clock.advance(61)
        assert not store.is_revoked(token.token_hash)
        store.put(token)

    def test_repair_never_removes_an_entry_of_another_key(self, clock: FakeClock) -> None:
        """An entry encrypted with a key this store lacks is not corrupt: ``delete`` and
        ``expunge_expired`` raise ``StoreError`` and remove nothing."""
        pytest.importorskip("cryptography")
        from oauth2_token_manager._stores._crypto import generate_encryption_key

        directory = self.tmp_path / "shared"
        writer = DiskStore(directory, clock=clock, encryption_keys=[generate_encryption_key()])
        self.opened.append(writer)
        token = make_token()
        writer.put(token)
        writer.close()
        reader = DiskStore(directory, clock=clock, encryption_keys=[generate_encryption_key()])
        self.opened.append(reader)
        before = db_rows(directory)
        with pytest.raises(StoreError):
            reader.delete(token.token_hash)
        with pytest.raises(StoreError):
            reader.expunge_expired(clock.now + 10**6)
        assert db_rows(directory) == before

    @pytest.mark.parametrize("expires_at", [math.inf, -math.inf, math.nan])
    def test_a_non_finite_number_is_never_written(
        self, clock: FakeClock, expires_at: float
    ) -> None:
        """A token with a non-finite expiry is refused (``StoreError``) or not kept; nothing is
        written and the store stays readable (``Infinity`` is not JSON)."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        kept = make_token(scopes={"write"})
        store.put(kept)
        bad = make_token(expires_at=expires_at)
        with contextlib.suppress(StoreError):  # -inf and NaN are past: not kept at all
            store.put(bad)
        assert store.get(bad.token_hash) is None
        assert hashes(store.list(TokenQuery()).items) == [kept.token_hash]
        assert store.expunge_expired(clock.now) == 0

    @pytest.mark.parametrize("prefix", ["g:", "h:"])
    def test_corrupt_index_entry_raises_store_error(self, clock: FakeClock, prefix: str) -> None:
        """A malformed group or hash entry raises ``StoreError`` where it is read."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token, revoked = make_token(), make_token()
        store.put(token)
        store.revoke(revoked.token_hash, clock.now + 60)
        db_execute(store.directory, "UPDATE Cache SET value = '{}' WHERE key LIKE ?", prefix + "%")
        with pytest.raises(StoreError):
            if prefix == "g:":
                store.find(token.group, None)
            elif prefix == "h:":
                store.get(token.token_hash)
            else:
                store.is_revoked(revoked.token_hash)

    def test_pickled_row_is_refused_not_unpickled(self, clock: FakeClock) -> None:
        """A row in diskcache's pickle format raises ``StoreError`` instead of being loaded."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.put(token)
        payload = pickle.dumps(["would", "be", "unpickled"])
        db_execute(
            store.directory,
            "UPDATE Cache SET mode = 4, value = ? WHERE key LIKE 'x:%'",
            sqlite3.Binary(payload),
        )
        with pytest.raises(StoreError):
            store.find(token.group, "read")

    def test_sqlite_errors_become_store_errors(
        self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failing database raises ``StoreError`` from reads, writes and transactions."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.put(token)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store._cache, "get", broken)
        with pytest.raises(StoreError):
            store.find(token.group, "read")
        with pytest.raises(StoreError):
            store.is_revoked(token.token_hash)
        monkeypatch.setattr(store._cache, "transact", broken)
        with pytest.raises(StoreError):
            store.put(make_token())

    def test_unopenable_directory_raises_store_error(self, clock: FakeClock) -> None:
        """A path that cannot be a store directory raises ``StoreError``."""
        blocker = self.tmp_path / "a-file"
        blocker.write_text("")
        with pytest.raises(StoreError):
            DiskStore(blocker / "store", clock=clock)

    def test_exact_find_is_one_get(self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
        """The hot path (exact ``find``) is a single diskcache ``get``."""
        store = self.make_store(clock)
        assert isinstance(store, DiskStore)
        token = make_token()
        store.put(token)
        calls: list[Any] = []
        real_get = store._cache.get

        def counting_get(key: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(key)
            return real_get(key, *args, **kwargs)

        monkeypatch.setattr(store._cache, "get", counting_get)
        assert store.find(token.group, "read") == [token]
        assert len(calls) == 1

    def test_entries_carry_a_diskcache_expiry(self, clock: FakeClock) -> None:
        """Entries get diskcache ``expire`` = deadline minus clock; unknown expiry gets none."""
        store = self.make_store(clock, retain_expired=30)
        assert isinstance(store, DiskStore)
        store.put(make_token(expires_at=clock.now + 100))
        store.put(make_token(expires_at=None, subject="bob"))
        before = time.time()
        rows = db_rows(store.directory, "key, expire_time")
        expiring = [e for k, e in rows if e is not None]
        assert any(e is None for _, e in rows)
        assert expiring
        for expire_time in expiring:
            assert before + 120 < expire_time < before + 140

    def test_default_directory_honours_xdg_cache_home(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``DiskStore.default()`` lives in ``$XDG_CACHE_HOME/oauth2_token_manager``."""
        monkeypatch.setenv("XDG_CACHE_HOME", str(self.tmp_path / "xdg"))
        assert default_directory() == self.tmp_path / "xdg" / "oauth2_token_manager"
        with DiskStore.default() as store:
            assert store.directory == self.tmp_path / "xdg" / "oauth2_token_manager"
            assert (store.directory / "cache.db").exists()

    @pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout")
    def test_default_directory_falls_back_to_dot_cache(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without (or with a relative) ``$XDG_CACHE_HOME`` it is ``~/.cache``."""
        monkeypatch.setenv("HOME", str(self.tmp_path))
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        assert default_directory() == self.tmp_path / ".cache" / "oauth2_token_manager"
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
        assert default_directory() == self.tmp_path / ".cache" / "oauth2_token_manager"

    def test_context_manager_and_repr(self, clock: FakeClock) -> None:
        """The store closes as a context manager and shows its path, never a token."""
        with DiskStore(self.tmp_path / "cm", clock=clock) as store:
            store.put(make_token(value="SECRET-not-in-repr"))
            assert "SECRET" not in repr(store)
            assert str(self.tmp_path / "cm") in repr(store)

    def test_threads_lose_no_update(self, clock: FakeClock) -> None:
        """Four threads writing one exact key through one ``DiskStore`` lose nothing."""
        store = self.make_store(clock)
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                barrier.wait()
                for i in range(25):
                    store.put(make_token(value=f"SECRET-t{n}-{i}", scopes={"shared"}))
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(store.find(make_token().group, "shared")) == 100

    def test_two_processes_lose_nothing(self) -> None:
        """Two spawned processes writing to one directory at once lose no token."""
        directory = self.tmp_path / "shared"
        DiskStore(directory).close()  # create it once, before the race
        context = multiprocessing.get_context("spawn")
        count = 40
        workers = [
            context.Process(target=_disk_writer, args=(str(directory), n, count)) for n in (1, 2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            assert worker.exitcode == 0
        with DiskStore(directory) as store:
            group = make_token().group
            shared = store.find(group, "shared")
            assert len(shared) == 2 * count
            for n in (1, 2):
                own = store.find(group, f"own{n}")
                rotated = {f"SECRET-p{n}-rot-{i}" for i in range(0, count, 4)}
                plain = {f"SECRET-p{n}-own-{i}" for i in range(count) if i % 4}
                assert {t.value for t in own} == rotated | plain
            assert store.list(TokenQuery()).total == 2 * count + 2 * count
