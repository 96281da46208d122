"""``DiskStore``: tokens in a SQLite file through diskcache, shared by processes, JSON only.

Layout (see ``_kv``): keys are text, ``"x:"``/``"g:"`` + SHA-256 of the JSON of the group (and
scope key), ``"h:"``/``"r:"`` + the token hash; so no key holds a token value, a subject or a
client id. Values are JSON text encoded here (tokens by ``Token.to_dict``, read back by
``token_from_dict``): never pickle. SQLite stores both as TEXT in ``cache.db``. The values of
exact entries do hold the token values: that is what a token cache is for; the file is 0600 in a
0700 directory.

With ``encryption_keys`` (see ``_crypto``), an exact entry's value is instead the JSON object
``{"key_id": ..., "encrypted": <Fernet token of the JSON list of tokens>}``: one encryption per
entry, so ``find`` stays one ``get`` plus one decryption. Group, hash-ref and revocation entries
hold no token value and stay plain (a group entry does name its issuer, client, subject,
resource and scope strings). Without keys the format is the plain one above.

Multi-key updates (put, replace, delete, revoke, expunge) run in ``cache.transact()`` (SQLite
``BEGIN IMMEDIATE``), so several processes and threads can share one directory. Entries carry a
diskcache ``expire=`` of their deadline minus the store's clock.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import diskcache

from .._arguments import finite
from .._exceptions import ConfigurationError, CorruptEntryError, StoreError
from .._models import GroupKey, Token, token_from_dict
from ._base import TokenQuery
from ._crypto import ENCRYPTED_WITHOUT_KEY, NOT_ENCRYPTED, EncryptingStore, make_cipher
from ._kv import KVStore

__all__ = ["DiskStore", "default_directory"]


def _no_constant(name: str) -> Any:
    """``parse_constant`` of stored entries: ``NaN`` and ``Infinity`` are not JSON."""
    raise ValueError("not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)  # one, built once: the hot path
_DB_NAME = "cache.db"  # diskcache's file name
_DB_ERRORS = (sqlite3.Error, diskcache.Timeout, OSError)
_LOCK_PREFIX = "l:"  # + a name derived from the cache key (no token value in it)
_GROUP_PREFIX = "g:"  # sorts before "h:", "r:" and "x:": ``_group_keys`` relies on it
_EXACT_PREFIX = "x:"  # sorts last
_ROTATE_BATCH = 256  # exact entries per transaction in ``rotate_encryption``


def default_directory() -> Path:
    """The per-user cache directory: ``$XDG_CACHE_HOME`` or the platform's, plus our name.

    ``$XDG_CACHE_HOME`` (when set to an absolute path) wins everywhere; otherwise
    ``%LOCALAPPDATA%`` on Windows, ``~/Library/Caches`` on macOS, ``~/.cache`` elsewhere.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        base = Path(xdg)
    elif sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path.home() / ".cache"
    return base / "oauth2_token_manager"


@functools.lru_cache(maxsize=4096)
def _exact_key(group: GroupKey, scope_key: str) -> str:
    """``x:`` + SHA-256 of the JSON of group + scope key (memoised: it is on the hot path)."""
    data = json.dumps([*group, scope_key], separators=(",", ":"))
    return "x:" + hashlib.sha256(data.encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _group_key(group: GroupKey) -> str:
    """``g:`` + SHA-256 of the JSON of the group."""
    data = json.dumps(list(group), separators=(",", ":"))
    return _GROUP_PREFIX + hashlib.sha256(data.encode()).hexdigest()


class _TextDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's ``Disk`` narrowed to text: str keys and values in SQLite, never pickle.

    Storing is what the default ``Disk`` does for a short str (a raw TEXT column); reading
    refuses any other row (a pickled key or value, a value file) instead of unpickling it.
    """

    def put(self, key: Any) -> tuple[str, bool]:
        if type(key) is not str:
            raise TypeError("DiskStore keys are str")
        return key, True

    def get(self, key: Any, raw: bool) -> str:
        if not raw or type(key) is not str:
            raise StoreError("the store holds a key that is not text (not written by DiskStore)")
        return key

    def store(self, value: Any, read: bool, key: Any = None) -> tuple[int, int, None, str]:
        if read or type(value) is not str:
            raise TypeError("DiskStore values are str")
        return 0, diskcache.core.MODE_RAW, None, value

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> str:
        if mode != diskcache.core.MODE_RAW or filename is not None or type(value) is not str:
            raise StoreError("the store holds a value that is not text (not written by DiskStore)")
        return value


def _prepare(directory: Path) -> None:
    """Create the directory 0700 if it does not exist, and ``cache.db`` 0600 before SQLite
    opens it. The mode of a directory that exists is never changed (``/tmp`` would lose its
    sticky bit): one that other users can write is refused (they could plant or swap the
    database files), readable is fine (the files are 0600).

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's permissions.
    """
    posix = os.name == "posix"
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not directory.is_dir():
            raise StoreError(f"{directory} exists and is not a directory") from None
        mode = stat.S_IMODE(directory.stat().st_mode)
        if posix and mode & 0o022:
            raise StoreError(
                f"the directory {directory} can be written by other users (mode {mode:04o}): "
                "give DiskStore a directory only you can write, e.g. a new subdirectory "
                "(it is created 0700)"
            ) from None
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(directory / _DB_NAME, flags, 0o600))
    if posix:
        for name in (_DB_NAME, _DB_NAME + "-wal", _DB_NAME + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(directory / name, 0o600)


class DiskStore(KVStore, EncryptingStore):
    """Tokens in ``directory/cache.db`` (SQLite via diskcache): survives restarts, shared.

    ``retain_expired`` keeps expired tokens that many seconds after ``expires_at``; ``clock``
    is the wall clock (epoch seconds). ``find`` of an exact key is one diskcache ``get`` and
    one ``json.loads``. Close it (or use it as a context manager) when done.

    ``encryption_keys`` (Fernet keys, see ``generate_encryption_key``; needs ``cryptography``)
    encrypts the stored tokens: the first key encrypts, all of them decrypt, and
    ``rotate_encryption()`` re-encrypts with the first key. A store opened without the right
    key (or without keys on an encrypted store, or with keys on a plain one) raises
    ``StoreError`` on every read of a token.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        retain_expired: float = 0.0,
        clock: Callable[[], float] = time.time,
        *,
        encryption_keys: Sequence[str | bytes] | None = None,
    ) -> None:
        if not isinstance(directory, str | os.PathLike) or not str(directory):
            raise ConfigurationError("a DiskStore directory is a non-empty path")
        super().__init__(retain_expired, clock)
        self._cipher = make_cipher(encryption_keys)
        self._directory = Path(directory).expanduser()
        try:
            _prepare(self._directory)
            self._cache = diskcache.Cache(
                str(self._directory),
                disk=_TextDisk,
                eviction_policy="none",  # entries go when they expire, never for space
                disk_min_file_size=2**62,  # everything in SQLite, no value files
                statistics=False,
                tag_index=False,
            )
        except _DB_ERRORS as exc:
            raise StoreError(f"cannot open the token store in {self._directory}: {exc}") from exc

    @classmethod
    def default(
        cls,
        retain_expired: float = 0.0,
        clock: Callable[[], float] = time.time,
        *,
        encryption_keys: Sequence[str | bytes] | None = None,
    ) -> DiskStore:
        """A store in the per-user cache directory (see ``default_directory``)."""
        return cls(default_directory(), retain_expired, clock, encryption_keys=encryption_keys)

    def __repr__(self) -> str:
        return f"DiskStore({str(self._directory)!r}{self._keys_repr()})"

    @property
    def directory(self) -> Path:
        """The store's directory."""
        return self._directory

    def close(self) -> None:
        """Close the SQLite connections of this thread (a later call reopens them)."""
        self._cache.close()

    def __enter__(self) -> DiskStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the cross-process lock (LockingTokenStore) ------------------------------------------

    def try_lock(self, name: str, owner: str, lease: float) -> bool:
        """Take lock ``name`` for ``lease`` seconds if free or its lease ran out (atomic add)."""
        lease = finite("lease", lease, minimum=0)  # a NaN lease would never run out
        try:
            return bool(self._cache.add(_LOCK_PREFIX + name, owner, expire=lease))
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc

    def renew_lock(self, name: str, owner: str, lease: float) -> bool:
        """Extend the lease if ``owner`` still holds the lock."""
        lease = finite("lease", lease, minimum=0)
        with self._transaction():
            if self._cache.get(_LOCK_PREFIX + name) != owner:
                return False
            return bool(self._cache.touch(_LOCK_PREFIX + name, expire=lease))

    def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it (compare and delete in one transaction)."""
        with self._transaction():
            if self._cache.get(_LOCK_PREFIX + name) == owner:
                self._cache.delete(_LOCK_PREFIX + name)

    def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        """Remove tokens expired at ``now`` (``expires_at <= now``); return how many. With
        ``query``, only in the groups it matches.

        ``retain_expired`` does not apply (it only delays the automatic removal). Also lets
        diskcache purge the rows past their own ``expire`` (ended revocations among them):
        those are invisible to every reader already, whatever their issuer.
        """
        removed = super().expunge_expired(now, query)
        try:
            self._cache.expire()
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc
        return removed

    def rotate_encryption(self, *, encrypt_plaintext: bool = False) -> int:
        """Re-encrypt with the first key every entry another key wrote; return how many tokens
        were rewritten (0 when all are already under the first key).

        Entries keep their expiry. A batch of entries per transaction; running it again after
        a failure or alongside writers is safe (writers encrypt with their own first key).
        ``StoreError`` for an entry no key of this store decrypts, or an unencrypted one unless
        ``encrypt_plaintext`` (the migration of a store written without encryption). Old
        ciphertexts may linger in free pages of the SQLite file until it is vacuumed.
        ``ConfigurationError`` if the store has no ``encryption_keys``.
        """
        cipher = self._cipher
        if cipher is None:
            raise ConfigurationError("rotate_encryption() needs a store with encryption_keys")
        keys = list(self._exact_keys())
        rotated = 0
        for start in range(0, len(keys), _ROTATE_BATCH):
            with self._transaction():
                for key in keys[start : start + _ROTATE_BATCH]:
                    try:
                        text, expire_time = self._cache.get(key, expire_time=True)
                    except _DB_ERRORS as exc:
                        raise StoreError(f"token store failed: {exc}") from exc
                    if text is None:
                        continue  # removed (or expired) since it was listed
                    raw = self._loads(text)
                    if isinstance(raw, list):
                        if not encrypt_plaintext:
                            raise StoreError(NOT_ENCRYPTED)
                        self._decode_plain(raw)  # only well-formed tokens are encrypted
                        payload = json.dumps(raw, separators=(",", ":")).encode()
                    elif not isinstance(raw, dict):
                        raise StoreError("stored token entry is malformed: not a list")
                    elif raw.get("key_id") == cipher.primary_id:
                        continue
                    else:
                        payload = cipher.open(raw.get("key_id"), raw.get("encrypted"))
                        raw = self._loads(payload)
                        self._decode_plain(raw)
                    expire = None
                    if expire_time is not None:
                        expire = expire_time - time.time()  # diskcache's own clock
                        if expire <= 0:
                            continue
                    key_id, token = cipher.seal(payload)
                    value = json.dumps(
                        {"key_id": key_id, "encrypted": token}, separators=(",", ":")
                    )
                    try:
                        self._cache.set(key, value, expire=expire)
                    except _DB_ERRORS as exc:
                        raise StoreError(f"token store failed: {exc}") from exc
                    rotated += len(raw)
        return rotated

    # -- KVStore primitives ----------------------------------------------------------------

    def _exact_key(self, group: GroupKey, scope_key: str) -> str:
        return _exact_key(group, scope_key)

    def _group_key(self, group: GroupKey) -> str:
        return _group_key(group)

    def _hash_key(self, token_hash: str) -> str:
        return "h:" + token_hash

    def _revoked_key(self, token_hash: str) -> str:
        return "r:" + token_hash

    @staticmethod
    def _loads(text: str | bytes) -> Any:
        try:
            return _DECODER.decode(text if isinstance(text, str) else text.decode())
        except (ValueError, RecursionError):
            raise CorruptEntryError(
                "the token store holds an entry that is not valid JSON"
            ) from None

    def _read(self, key: Any) -> Any:
        try:
            text = self._cache.get(key)
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc
        if text is None:
            return None
        return self._loads(text)

    def _write(self, key: Any, value: Any, deadline: float | None) -> None:
        expire = None
        if deadline is not None:
            expire = deadline - self._clock()
            if expire <= 0:
                self._remove(key)
                return
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except ValueError:  # never write what cannot be read back (Infinity is not JSON)
            raise StoreError("a token entry is not storable: a number is not finite") from None
        try:
            self._cache.set(key, text, expire=expire)
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc

    def _remove(self, key: Any) -> None:
        try:
            self._cache.delete(key)
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self._cache.transact():
                yield
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc

    def _group_keys(self) -> Iterable[Any]:
        try:
            for key in self._cache.iterkeys():  # database (text) order: group keys first
                if not key.startswith(_GROUP_PREFIX):
                    if key > _GROUP_PREFIX:
                        return
                    continue
                yield key
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc

    def _exact_keys(self) -> list[str]:
        """The keys of all exact entries (database order: they come last)."""
        try:
            return [key for key in self._cache.iterkeys() if key.startswith(_EXACT_PREFIX)]
        except _DB_ERRORS as exc:
            raise StoreError(f"token store failed: {exc}") from exc

    def _encode_tokens(self, tokens: tuple[Token, ...]) -> Any:
        items = [t.to_dict() for t in tokens]
        if self._cipher is None:
            return items
        key_id, token = self._cipher.seal(json.dumps(items, separators=(",", ":")).encode())
        return {"key_id": key_id, "encrypted": token}

    def _decode_tokens(self, raw: Any) -> tuple[Token, ...]:
        if self._cipher is not None:
            if isinstance(raw, list):
                raise StoreError(NOT_ENCRYPTED)
            if not isinstance(raw, dict):
                raise CorruptEntryError("stored token entry is malformed: not an encrypted entry")
            raw = self._loads(self._cipher.open(raw.get("key_id"), raw.get("encrypted")))
        elif isinstance(raw, dict) and "encrypted" in raw:
            raise StoreError(ENCRYPTED_WITHOUT_KEY)
        return self._decode_plain(raw)

    @staticmethod
    def _decode_plain(raw: Any) -> tuple[Token, ...]:
        if not isinstance(raw, list):
            raise CorruptEntryError("stored token entry is malformed: not a list")
        return tuple(token_from_dict(item) for item in raw)

    def _decode_ref(self, raw: Any) -> str:
        if not isinstance(raw, str) or not raw.startswith("x:"):
            raise CorruptEntryError("stored hash entry is malformed")
        return raw
