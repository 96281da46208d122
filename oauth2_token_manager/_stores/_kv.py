"""The indexing logic shared by the key-value stores (memory, disk).

The Redis stores keep the same four kinds of entries and deadlines, written by Lua scripts
instead (``_async_redis``, ``_redis_lua``).

``KVStore`` implements the ``TokenStore`` protocol over a few backend primitives: read a key,
write a key with a deadline, remove a key, run a transaction, and list the group entries.
Four kinds of entries:

- exact entry ``x``: (group, scope key) -> the tokens of that key, newest first. ``find`` with
  an exact scope key is ONE read of it: the hot path.
- hash ref ``h``: token hash -> the exact key holding the token (``get``, ``delete``, moves).
- group entry ``g``: group -> {scope key: deadline of that exact entry} (``find(group, None)``
  and ``list``, which filters on the group's fields before reading any token).
- revocation ``r``: token hash -> until (epoch seconds).

Every entry has a *deadline* after which the backend may drop it on its own: a token's is
``expires_at + retain_expired`` (none when the expiry is unknown), an exact entry's the latest of
its tokens', a group entry's the latest of its exact entries', a revocation's its ``until``. So
what a reference points to lives at least as long as the reference, except when the backend
evicts on its own (memory LRU eviction): readers skip dangling references and the memory store
reconciles its indexes after evictions. Lookups never return a token past its deadline, whatever
the backend has not dropped yet.

Values handed to the primitives are plain data (str, float, None, lists, dicts, tuples) except
the exact entries, which go through ``_encode_tokens``/``_decode_tokens`` (the memory store keeps
``Token`` objects, the disk store JSON, Fernet-encrypted when it has ``encryption_keys``).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from .._arguments import finite, is_finite_number
from .._exceptions import CorruptEntryError, InvalidArgumentError, TokenRevokedError
from .._models import GroupKey, Token, hash_prefix, is_token_hash
from ._base import (
    ExpiringStore,
    Page,
    TokenQuery,
    alive,
    newest_first,
    page_of,
    report_unreadable,
)

__all__ = ["KVStore"]

logger = logging.getLogger("oauth2_token_manager")

_NO_LOCK: AbstractContextManager[object] = contextlib.nullcontext()
_ABSENT = object()
_GroupRecord = tuple[GroupKey, dict[str, "float | None"]]


def _latest(deadlines: Iterable[float | None]) -> float | None:
    """The latest deadline, ``None`` (never) if any is ``None``."""
    latest = -math.inf
    for deadline in deadlines:
        if deadline is None:
            return None
        latest = max(latest, deadline)
    return latest


class KVStore(ExpiringStore, abc.ABC):
    """``TokenStore`` over key-value primitives; subclasses supply the backend.

    Writes run in ``_transaction()`` (atomic and isolated: one lock, one SQL transaction, a
    MULTI/EXEC...). Reads run in ``_reading()`` (the memory store's lock; nothing elsewhere).
    """

    # -- backend primitives --------------------------------------------------------------

    @abc.abstractmethod
    def _read(self, key: Any) -> Any:
        """The value at ``key``, or ``None`` when absent (or past its deadline)."""

    @abc.abstractmethod
    def _write(self, key: Any, value: Any, deadline: float | None) -> None:
        """Set ``key``; the backend may drop it once ``deadline`` passed (``None``: never)."""

    @abc.abstractmethod
    def _remove(self, key: Any) -> None:
        """Remove ``key`` if present."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[object]:
        """A context in which reads and writes are atomic and isolated (reentrant)."""

    def _reading(self) -> AbstractContextManager[object]:
        """A context for a multi-key read (default: none; the backend's reads are atomic)."""
        return _NO_LOCK

    @abc.abstractmethod
    def _group_keys(self) -> Iterable[Any]:
        """The keys of all group entries (some may be stale: they read as ``None``)."""

    @abc.abstractmethod
    def _exact_key(self, group: GroupKey, scope_key: str) -> Any:
        """Key of the exact entry of (group, scope key)."""

    @abc.abstractmethod
    def _group_key(self, group: GroupKey) -> Any:
        """Key of the group entry."""

    @abc.abstractmethod
    def _hash_key(self, token_hash: str) -> Any:
        """Key of the hash ref."""

    @abc.abstractmethod
    def _revoked_key(self, token_hash: str) -> Any:
        """Key of the revocation entry."""

    def _encode_tokens(self, tokens: tuple[Token, ...]) -> Any:
        """The stored form of an exact entry."""
        return tokens

    def _decode_tokens(self, raw: Any) -> tuple[Token, ...]:
        """Tokens from the stored form of an exact entry (``StoreError`` when unreadable)."""
        return raw  # type: ignore[no-any-return]

    def _decode_ref(self, raw: Any) -> Any:
        """The exact key from a stored hash ref (``StoreError`` when unreadable)."""
        return raw

    def _now(self) -> float:
        """The store's current time."""
        return self._clock()

    # -- helpers -------------------------------------------------------------------------

    def _deadline(self, token: Token) -> float | None:
        """When the backend may drop ``token``: ``expires_at + retain_expired``."""
        expires_at = token.expires_at
        return None if expires_at is None else expires_at + self._retain

    def _tokens_at(self, xkey: Any) -> tuple[Token, ...]:
        """The tokens of an exact entry (all of them, alive or not); empty when absent."""
        raw = self._read(xkey)
        return () if raw is None else self._decode_tokens(raw)

    def _read_group(self, gkey: Any) -> _GroupRecord | None:
        """A group entry as (group, {scope key: deadline}); ``StoreError`` when unreadable."""
        raw = self._read(gkey)
        if raw is None:
            return None
        try:
            fields, scopes = raw
            group = GroupKey(*fields)
            if not all(isinstance(f, str) for f in group) or not isinstance(scopes, dict):
                raise TypeError("ill-typed group entry")
            for scope_key, deadline in scopes.items():
                if not isinstance(scope_key, str) or not (
                    deadline is None or is_finite_number(deadline)
                ):
                    raise TypeError("ill-typed group entry")
        except (TypeError, ValueError) as exc:
            raise CorruptEntryError(f"stored group entry is malformed: {exc}") from None
        return group, dict(scopes)

    def _revoked_until(self, token_hash: str) -> float | None:
        """The stored ``until`` of a revocation (past or not), or ``None``; ``inf`` when the
        entry cannot be read: a revocation that cannot be read means revoked (fail closed)."""
        try:
            raw = self._read(self._revoked_key(token_hash))
        except CorruptEntryError:
            raw = math.inf
        if raw is None:
            return None
        if not is_finite_number(raw):
            logger.warning("revocation entry %s is unreadable: revoked", hash_prefix(token_hash))
            return math.inf
        return float(raw)

    def _save_entry(self, group: GroupKey, scope_key: str, xkey: Any, tokens: list[Token]) -> None:
        """Write (or remove, when empty) an exact entry and keep its group entry in step."""
        deadline = _latest(self._deadline(t) for t in tokens)
        if tokens:
            self._write(xkey, self._encode_tokens(tuple(tokens)), deadline)
        else:
            self._remove(xkey)
        gkey = self._group_key(group)
        record = self._read_group(gkey)
        scopes = record[1] if record is not None else {}
        if tokens:
            if scope_key in scopes and scopes[scope_key] == deadline:
                return  # unchanged: spare a write
            scopes[scope_key] = deadline
        elif scopes.pop(scope_key, _ABSENT) is _ABSENT:
            return  # not listed: nothing to do
        if scopes:
            self._write(gkey, (list(group), scopes), _latest(scopes.values()))
        else:
            self._remove(gkey)

    def _drop_refs(self, tokens: Iterable[Token], xkey: Any) -> None:
        """Remove the hash refs of ``tokens`` that still point at ``xkey``."""
        for token in tokens:
            hkey = self._hash_key(token.token_hash)
            ref = self._read(hkey)
            if ref is not None and self._decode_ref(ref) == xkey:
                self._remove(hkey)

    def _unlink(self, token_hash: str, now: float) -> Token | None:
        """Remove a token from every index (in a transaction); return it if it was alive.

        Repairs: an unreadable hash ref is removed, and so is the unreadable exact entry it
        points to (its other tokens were unreadable too)."""
        hkey = self._hash_key(token_hash)
        try:
            ref = self._read(hkey)
            if ref is None:
                return None
            xkey = self._decode_ref(ref)
        except CorruptEntryError:
            logger.warning("removed the unreadable hash entry of %s", hash_prefix(token_hash))
            self._remove(hkey)
            return None
        self._remove(hkey)
        try:
            tokens = self._tokens_at(xkey)
        except CorruptEntryError:
            logger.warning("removed the unreadable entry holding %s", hash_prefix(token_hash))
            self._remove(xkey)
            return None
        found = next((t for t in tokens if t.token_hash == token_hash), None)
        if found is None:
            return None  # a dangling ref
        rest = [t for t in tokens if t.token_hash != token_hash]
        self._save_entry(found.group, found.scope_key, xkey, rest)
        return found if alive(found, self._retain, now) else None

    def _reconcile(self, xkey: Any, evicted: tuple[Token, ...]) -> None:
        """After the backend dropped an exact entry on its own: drop what refers to it.

        ``evicted`` are the tokens it held; the key may hold a newer entry by now, whose tokens
        keep their refs.
        """
        if not evicted:
            return
        current = {t.token_hash for t in self._tokens_at(xkey)}
        self._drop_refs((t for t in evicted if t.token_hash not in current), xkey)
        if not current:
            group, scope_key = evicted[0].group, evicted[0].scope_key
            gkey = self._group_key(group)
            record = self._read_group(gkey)
            if record is None or scope_key not in record[1]:
                return
            scopes = record[1]
            del scopes[scope_key]
            if scopes:
                self._write(gkey, (list(group), scopes), _latest(scopes.values()))
            else:
                self._remove(gkey)

    def _put(self, token: Token, now: float) -> None:
        """``put`` inside a transaction."""
        token_hash = token.token_hash
        until = self._revoked_until(token_hash)
        if until is not None and until > now:
            raise TokenRevokedError(f"token {hash_prefix(token_hash)} is revoked")
        group, scope_key = token.group, token.scope_key
        xkey = self._exact_key(group, scope_key)
        hkey = self._hash_key(token_hash)
        ref = self._read(hkey)
        if ref is not None and self._decode_ref(ref) != xkey:
            self._unlink(token_hash, now)  # it moves (scopes or group changed)
        kept: list[Token] = []
        dropped: list[Token] = []
        for stored in self._tokens_at(xkey):
            if stored.token_hash == token_hash:
                continue
            (kept if alive(stored, self._retain, now) else dropped).append(stored)
        keep = alive(token, self._retain, now)
        tokens = newest_first([token, *kept] if keep else kept)
        self._save_entry(group, scope_key, xkey, tokens)
        self._drop_refs(dropped, xkey)
        if keep:
            self._write(hkey, xkey, self._deadline(token))
        else:
            self._remove(hkey)  # already past its deadline: not kept

    # -- the TokenStore protocol ---------------------------------------------------------

    def put(self, token: Token) -> None:
        """Store ``token``, replacing (and moving) a stored token of the same hash.

        A token already past ``expires_at + retain_expired`` is not kept (the stored one of the
        same hash is removed). ``TokenRevokedError`` if its hash is on the revocation list.
        """
        with self._transaction():
            self._put(token, self._now())

    def get(self, token_hash: str) -> Token | None:
        """The stored token with this hash, or ``None``."""
        hkey = self._hash_key(token_hash)
        with self._reading():
            for _ in range(3):  # a concurrent writer may move the token between two reads
                ref = self._read(hkey)
                if ref is None:
                    return None
                for token in self._tokens_at(self._decode_ref(ref)):
                    if token.token_hash == token_hash:
                        return token if alive(token, self._retain, self._now()) else None
                if self._read(hkey) == ref:
                    return None  # a dangling ref
        return None

    def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        """Tokens of ``group`` with this canonical scope string, newest first (all if ``None``)."""
        if scope_key is not None:
            with self._reading():
                tokens = self._tokens_at(self._exact_key(group, scope_key))
            now = self._now()
            return [t for t in tokens if alive(t, self._retain, now)]
        with self._reading():
            record = self._read_group(self._group_key(group))
            if record is None:
                return []
            found = [t for key in record[1] for t in self._tokens_at(self._exact_key(group, key))]
        now = self._now()
        return newest_first(t for t in found if alive(t, self._retain, now))

    def replace(self, old_hash: str, new: Token) -> None:
        """Rotation in one transaction: store ``new``, then remove ``old_hash``."""
        with self._transaction():
            now = self._now()
            self._put(new, now)
            if old_hash != new.token_hash:
                self._unlink(old_hash, now)

    def delete(self, token_hash: str) -> Token | None:
        """Remove and return the token with this hash (``None`` if absent)."""
        with self._transaction():
            return self._unlink(token_hash, self._now())

    def revoke(self, token_hash: str, until: float) -> None:
        """Remove the token and keep its hash on the revocation list until ``until``.

        ``InvalidArgumentError`` unless ``token_hash`` is a SHA-256 hex digest: the hash
        becomes part of a key, and a token value passed by mistake must never be written into
        one.
        """
        if not is_token_hash(token_hash):
            raise InvalidArgumentError(
                "revoke() takes a token_hash (SHA-256 hex), not a token value"
            )
        until = finite("until", until)
        with self._transaction():
            now = self._now()
            self._unlink(token_hash, now)
            current = self._revoked_until(token_hash)
            if current is not None and until < current < math.inf:
                until = current  # never shorten a revocation (an unreadable one is replaced)
            if until > now:
                self._write(self._revoked_key(token_hash), float(until), float(until))

    def is_revoked(self, token_hash: str) -> bool:
        """Whether the hash is on the revocation list (now before its ``until``)."""
        with self._reading():
            until = self._revoked_until(token_hash)
        return until is not None and until > self._now()

    def list(self, query: TokenQuery) -> Page:
        """Tokens matching ``query``, newest first, paged, with the total count.

        Groups are filtered on their fields (issuer, kind, client, subject) before any of their
        tokens is read.
        """
        matches: list[Token] = []
        unreadable = 0
        with self._reading():
            now = self._now()
            for gkey in self._group_keys():
                try:
                    record = self._read_group(gkey)
                except CorruptEntryError:
                    unreadable += 1
                    continue
                if record is None or not query.matches_group(record[0]):
                    continue
                group, scopes = record
                for scope_key in scopes:
                    try:
                        tokens = self._tokens_at(self._exact_key(group, scope_key))
                    except CorruptEntryError:
                        unreadable += 1
                        continue
                    for token in tokens:
                        if alive(token, self._retain, now) and query.matches(token):
                            matches.append(token)
        report_unreadable("list skipped", unreadable)
        return page_of(matches, query)

    def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        """Remove tokens expired at ``now`` (``expires_at <= now``); return how many. With
        ``query``, only in the groups it matches (its status, paging and ``now`` are ignored).

        Explicit, so ``retain_expired`` does not apply: it only delays the automatic removal.
        One transaction per group, so that a large store does not block writers for long.
        """
        removed = unreadable = 0
        with self._reading():
            gkeys = list(self._group_keys())
        for gkey in gkeys:
            with self._transaction():
                try:
                    record = self._read_group(gkey)
                except CorruptEntryError:
                    unreadable += 1
                    self._remove(gkey)
                    continue
                if record is None:
                    continue
                group, scopes = record
                if query is not None and not query.matches_group(group):
                    continue
                for scope_key in list(scopes):
                    xkey = self._exact_key(group, scope_key)
                    try:
                        tokens = self._tokens_at(xkey)
                    except CorruptEntryError:
                        unreadable += 1
                        self._save_entry(group, scope_key, xkey, [])
                        continue
                    expired = [t for t in tokens if t.expired(now)]
                    if not expired:
                        continue
                    kept = [t for t in tokens if not t.expired(now)]
                    removed += len(expired)
                    self._save_entry(group, scope_key, xkey, kept)
                    self._drop_refs(expired, xkey)
        report_unreadable("expunge_expired removed", unreadable)
        return removed
