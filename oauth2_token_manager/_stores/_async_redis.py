"""``AsyncRedisStore``: tokens in Redis, shared by processes and hosts, JSON only.

Hand-written in ``_stores/_async_redis.py``; ``_stores/_redis.py`` (the sync twin, on redis-py's
sync client) is generated from it by ``scripts/unasync.py``. What has no I/O is shared by both:
the Lua scripts (``_redis_lua.py``, the rules of every write) and the line encoding, ids and
error mapping (``_redis_codec.py``, the format of every value).

Layout, every key under ``prefix`` (default ``"oauth2tm:"``); ``gid`` is the SHA-256 of the JSON
of the group, ``sid`` that of the scope key (see ``_redis_codec``), so no key holds a token
value, a subject, a client id or a scope:

- ``x:{gid}:{sid}`` string, the exact entry: the tokens of (group, scope key), newest first, one
  JSON line each (see ``_redis_codec``). ``find(group, scope_key)`` is ONE ``GET`` of it and one
  ``json.loads``: the hot path.
- ``h:{token_hash}`` string: ``{gid}:{sid}``, where the token is (``get``, ``delete``, moves).
- ``g:{gid}`` hash: field ``group`` = the JSON of the group (``list`` filters on it before it
  reads any token), one field ``{sid}`` per exact entry = that entry's deadline (``never``).
- ``r:{token_hash}`` string: the revocation's ``until`` (epoch seconds).
- ``l:{name}`` string: a cross-process lock, its owner, with the lease as Redis expiry.
- ``groups`` sorted set: every ``gid``, scored by the group's deadline (``+inf`` for never):
  ``list`` reads the members scored after now; ``expunge_expired`` walks them all. No SCAN.

Every key gets a Redis expiry at its deadline (``expires_at + retain_expired``, see
``_redis_lua``); lookups also check deadlines against the store's clock, so nothing past its
deadline is returned before Redis drops it. Every multi-key write is one Lua script, multi-key
reads are read-only scripts. All processes sharing a prefix should use the same
``retain_expired``, and a standalone Redis (not Redis Cluster).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .._arguments import finite
from .._exceptions import (
    ConfigurationError,
    CorruptEntryError,
    InvalidArgumentError,
    StoreError,
    TokenRevokedError,
)
from .._models import GroupKey, Token, is_token_hash
from .._synchronization import (
    PerLoop,
    async_loop_alive,
    async_loop_identity,
    async_loop_is_asyncio,
)
from . import _redis_lua as lua
from ._base import (
    ExpiringStore,
    Page,
    TokenQuery,
    alive,
    newest_first,
    page_of,
    report_unreadable,
)
from ._crypto import EncryptingStore, make_cipher
from ._redis_codec import (
    as_text,
    chunks,
    decode_lines,
    encode_line,
    entry_tokens,
    exact_id,
    group_id,
    is_exact_id,
    parse_entry,
    parse_group,
    rotated_entry,
    script_number,
    store_error,
)

__all__ = ["AsyncRedisStore"]


class _AsyncPoolPerLoop(AsyncBlockingConnectionPool):
    """The pool of a store made from a ``url``: one blocking pool per event loop.

    redis-py's asyncio connections belong to the event loop that opened them; with one pool
    per loop, one store serves loops one after the other (``asyncio.run`` twice) or at once
    (threads). The pools of closed loops are forgotten. The sync twin has one pool (threads
    share it).
    """

    def __init__(self, **kwargs: Any) -> None:
        cast(Any, super()).__init__(**kwargs)  # redis-py's sync pool is untyped
        make: Any = AsyncBlockingConnectionPool
        self._pools: PerLoop[Any] = PerLoop(
            lambda: make(**kwargs), async_loop_identity, async_loop_alive
        )

    def _pool(self) -> Any:
        if not async_loop_is_asyncio(async_loop_identity()):
            raise StoreError("AsyncRedisStore needs asyncio (redis.asyncio does not run on trio)")
        return self._pools.get()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        return await self._pool().get_connection(*args, **kwargs)

    async def release(self, connection: Any) -> None:
        await self._pool().release(connection)

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Disconnect this loop's pool; those of other loops are forgotten (their
        connections cannot be closed from here)."""
        pool, _ = self._pools.take()
        if pool is None:
            return
        if inuse_connections:  # redis-py < 6's sync BlockingConnectionPool takes no argument
            await pool.disconnect()
        else:
            await pool.disconnect(inuse_connections)


_BATCH = 256  # groups per script call or MGET in ``list`` and ``expunge_expired``
_ROTATE_BATCH = 64  # exact entries per MGET and script call in ``rotate_encryption``
_ROTATE_ROUNDS = 10  # passes over entries a concurrent writer changed meanwhile


class AsyncRedisStore(ExpiringStore, EncryptingStore):
    """Tokens in Redis: shared by processes and hosts, JSON only, with Redis expiries.

    Give a client (``redis.asyncio.Redis``; the caller keeps and closes it) or a ``url`` (the
    store makes the client, on a blocking pool of ``max_connections`` where callers wait up to
    ``pool_timeout`` seconds for a connection, and ``aclose`` closes it). ``prefix`` starts
    every key, so several stores can share one database. ``retain_expired`` keeps expired
    tokens that many seconds after ``expires_at``; ``clock`` is the wall clock (epoch
    seconds). ``find`` of an exact key is one ``GET``. No ``version`` attribute: other
    processes write the same keys.

    ``encryption_keys`` (Fernet keys, see ``generate_encryption_key``; needs ``cryptography``)
    encrypts the stored tokens: the first key encrypts, all of them decrypt, and
    ``rotate_encryption()`` re-encrypts with the first key. Every process sharing a prefix
    needs keys that decrypt what the others write; one without the right key (or without
    keys on an encrypted prefix, or with keys on a plain one) gets ``StoreError`` and writes
    nothing into the entries it cannot read.
    """

    def __init__(
        self,
        client: AsyncRedis | None = None,
        *,
        url: str | None = None,
        prefix: str = "oauth2tm:",
        retain_expired: float = 0.0,
        clock: Callable[[], float] = time.time,
        max_connections: int = 32,
        pool_timeout: float = 10.0,
        encryption_keys: Sequence[str | bytes] | None = None,
    ) -> None:
        if (client is None) == (url is None):
            raise ConfigurationError("give either a Redis client or a url")
        super().__init__(retain_expired, clock)
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a str")
        self._cipher = make_cipher(encryption_keys)
        self._key_ids = "" if self._cipher is None else ",".join(self._cipher.key_ids)
        self._owns_client = client is None
        if client is None:
            assert url is not None
            # A blocking pool: many concurrent callers wait for a connection instead of
            # failing with "too many connections".
            pool = _AsyncPoolPerLoop.from_url(
                url, max_connections=max_connections, timeout=pool_timeout
            )
            client = AsyncRedis(connection_pool=pool)
        self._client = client
        self._prefix = prefix
        self._groups_key = prefix + "groups"
        register = client.register_script
        self._put_script = register(lua.PUT)
        self._delete_script = register(lua.DELETE)
        self._revoke_script = register(lua.REVOKE)
        self._expunge_script = register(lua.EXPUNGE)
        self._get_script = register(lua.GET)
        self._find_group_script = register(lua.FIND_GROUP)
        self._groups_script = register(lua.GROUPS)
        self._renew_lock_script = register(lua.RENEW_LOCK)
        self._unlock_script = register(lua.UNLOCK)
        self._rotate_script = register(lua.ROTATE)

    def __repr__(self) -> str:
        settings = f"prefix={self._prefix!r}, retain_expired={self._retain}"
        return f"AsyncRedisStore({settings}{self._keys_repr()})"

    @property
    def prefix(self) -> str:
        """What every key of this store starts with."""
        return self._prefix

    @property
    def client(self) -> AsyncRedis:
        """The Redis client."""
        return self._client

    async def aclose(self) -> None:
        """Close the client and its connections if the store made it (from ``url``).

        redis-py's ``close`` leaves a pool it was given open (the store gives its client the
        pool it made), so the pool is disconnected here too: no connection is left to the
        garbage collector."""
        if self._owns_client:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()

    async def __aenter__(self) -> AsyncRedisStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- helpers ---------------------------------------------------------------------------

    async def _run(self, script: AsyncScript, *args: Any) -> Any:
        """Run a read-only script with the prefix as ARGV[1]."""
        try:
            return await script(args=[self._prefix, *args])
        except RedisError as exc:
            raise store_error(exc) from None

    async def _write(self, script: AsyncScript, *args: Any) -> Any:
        """Run a write script with prefix, the store's now, retention and key ids as
        ARGV[1..4]."""
        now, retain = script_number(self._clock()), script_number(self._retain)
        return await self._run(script, now, retain, self._key_ids, *args)

    async def _put(self, token: Token, old_hash: str) -> None:
        gid_and_sid = exact_id(token.group, token.scope_key)
        group_json = group_id(token.group)[1]
        line = encode_line(token, self._cipher)
        if await self._write(self._put_script, line, gid_and_sid, group_json, old_hash):
            raise TokenRevokedError(f"token {token.short_hash} is revoked")

    # -- the cross-process lock (LockingTokenStore) ------------------------------------------

    def _lock_key(self, name: str) -> str:
        return self._prefix + "l:" + name

    async def try_lock(self, name: str, owner: str, lease: float) -> bool:
        """Take lock ``name`` for ``lease`` seconds if free (SET NX PX: atomic)."""
        lease = finite("lease", lease, minimum=0)
        try:
            taken = await self._client.set(
                self._lock_key(name), owner, nx=True, px=max(1, int(lease * 1000))
            )
        except RedisError as exc:
            raise store_error(exc) from None
        return bool(taken)

    async def renew_lock(self, name: str, owner: str, lease: float) -> bool:
        """Extend the lease if ``owner`` still holds the lock (compare and PEXPIRE)."""
        lease = finite("lease", lease, minimum=0)
        try:
            renewed = await self._renew_lock_script(
                keys=[self._lock_key(name)], args=[owner, max(1, int(lease * 1000))]
            )
        except RedisError as exc:
            raise store_error(exc) from None
        return bool(renewed)

    async def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it (compare and delete)."""
        try:
            await self._unlock_script(keys=[self._lock_key(name)], args=[owner])
        except RedisError as exc:
            raise store_error(exc) from None

    # -- the TokenStore protocol -------------------------------------------------------------

    async def put(self, token: Token) -> None:
        """Store ``token``, replacing (and moving) a stored token of the same hash.

        A token already past ``expires_at + retain_expired`` is not kept (the stored one of the
        same hash is removed). ``TokenRevokedError`` if its hash is on the revocation list.
        """
        await self._put(token, "")

    async def get(self, token_hash: str) -> Token | None:
        """The stored token with this hash, or ``None`` (one script call)."""
        if not is_token_hash(token_hash):
            return None  # never stored: and never send what may be a token value to Redis
        reply = await self._run(self._get_script, token_hash)
        if not reply:
            return None
        ref, raw = reply
        if not is_exact_id(as_text(ref)):
            raise StoreError("stored hash entry is malformed")
        if raw is None:
            return None
        items = parse_entry(raw)
        if self._cipher is not None:  # decrypt only the line that claims the hash
            items = [item for item in items if item.get("token_hash") == token_hash]
        for token in decode_lines(items, self._cipher):
            if token.token_hash == token_hash:
                return token if alive(token, self._retain, self._clock()) else None
        return None

    async def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        """Tokens of ``group`` with this canonical scope string, newest first (all if ``None``).

        An exact scope key is one ``GET``; ``None`` one read-only script over the group.
        """
        if scope_key is None:
            raws = await self._run(self._find_group_script, group_id(group)[0])
            now = self._clock()
            found = [
                t
                for raw in raws
                for t in entry_tokens(raw, self._cipher)
                if alive(t, self._retain, now)
            ]
            return newest_first(found)
        key = self._prefix + "x:" + exact_id(group, scope_key)
        try:
            raw = await self._client.get(key)
        except RedisError as exc:
            raise store_error(exc) from None
        if raw is None:
            return []
        now = self._clock()
        return [t for t in entry_tokens(raw, self._cipher) if alive(t, self._retain, now)]

    async def replace(self, old_hash: str, new: Token) -> None:
        """Rotation in one script: store ``new`` and remove ``old_hash`` at the same instant."""
        await self._put(new, old_hash if is_token_hash(old_hash) else "")

    async def delete(self, token_hash: str) -> Token | None:
        """Remove and return the token with this hash (``None`` if absent)."""
        if not is_token_hash(token_hash):
            return None
        line = await self._write(self._delete_script, token_hash)
        if line is None:
            return None
        [token] = entry_tokens("[" + as_text(line) + "]", self._cipher)
        return token

    async def revoke(self, token_hash: str, until: float) -> None:
        """Remove the token and keep its hash on the revocation list until ``until``.

        ``InvalidArgumentError`` unless ``token_hash`` is a SHA-256 hex digest: the hash
        becomes part of a key, and a token value passed by mistake must never be written into
        one.
        """
        if not is_token_hash(token_hash):
            raise InvalidArgumentError(
                "revoke() takes a token_hash (SHA-256 hex), not a token value"
            )
        await self._write(self._revoke_script, token_hash, script_number(until))

    async def is_revoked(self, token_hash: str) -> bool:
        """Whether the hash is on the revocation list (now before its ``until``)."""
        if not is_token_hash(token_hash):
            return False  # revoke() refuses anything else
        try:
            raw = await self._client.get(self._prefix + "r:" + token_hash)
        except RedisError as exc:
            raise store_error(exc) from None
        if raw is None:
            return False
        try:
            until = float(raw)
        except ValueError:
            until = math.nan
        # an unreadable revocation means revoked (fail closed), as in the scripts
        return math.isnan(until) or until > self._clock()

    async def list(self, query: TokenQuery) -> Page:
        """Tokens matching ``query``, newest first, paged, with the total count.

        Reads the group ids scored after now, their group entries (by batches), and only for
        the groups whose fields match, their exact entries (``MGET``). Not one snapshot: a
        concurrent write may or may not show.
        """
        now = self._clock()
        try:
            gids = await self._client.zrangebyscore(self._groups_key, f"({now!r}", "+inf")
        except RedisError as exc:
            raise store_error(exc) from None
        matches: list[Token] = []
        unreadable = 0
        for chunk in chunks(gids, _BATCH):
            flats = await self._run(self._groups_script, *chunk)
            keys: list[str] = []
            for gid, flat in zip(chunk, flats, strict=True):
                fields = [as_text(item) for item in flat]
                record = dict(zip(fields[::2], fields[1::2], strict=True))
                if not record:
                    continue  # dropped since
                try:
                    group = parse_group(record.pop("group", ""))
                except CorruptEntryError:
                    unreadable += 1
                    continue
                if not query.matches_group(group):
                    continue
                prefix = self._prefix + "x:" + as_text(gid) + ":"
                keys += [prefix + sid for sid in record]
            if not keys:
                continue
            try:
                raws = await self._client.mget(keys)
            except RedisError as exc:
                raise store_error(exc) from None
            for raw in raws:
                if raw is None:
                    continue
                try:
                    tokens = entry_tokens(raw, self._cipher)
                except CorruptEntryError:
                    unreadable += 1
                    continue
                for token in tokens:
                    if alive(token, self._retain, now) and query.matches(token):
                        matches.append(token)
        report_unreadable("list skipped", unreadable)
        return page_of(matches, query)

    async def expunge_expired(self, now: float, query: TokenQuery | None = None) -> int:
        """Remove tokens expired at ``now`` (``expires_at <= now``); return how many. With
        ``query``, only in the groups it matches (their group entries are read first).

        ``retain_expired`` does not apply (it only delays the automatic removal). One script
        per batch of groups, so that a large store does not block Redis for long. Tokens Redis
        already dropped on its own are not counted.
        """
        try:
            gids = await self._client.zrange(self._groups_key, 0, -1)
        except RedisError as exc:
            raise store_error(exc) from None
        removed = unreadable = 0
        for chunk in chunks(gids, _BATCH):
            if query is not None:
                chunk = await self._matching_groups(chunk, query)
                if not chunk:
                    continue
            counts = await self._write(self._expunge_script, script_number(now), *chunk)
            removed += int(counts[0])
            unreadable += int(counts[1])
        report_unreadable("expunge_expired removed", unreadable)
        return removed

    async def _matching_groups(self, gids: Sequence[Any], query: TokenQuery) -> Sequence[Any]:
        """The ids among ``gids`` whose group entry ``query`` matches (a group gone since is
        left out; ``expunge`` of a group changed meanwhile only removes expired tokens)."""
        flats = await self._run(self._groups_script, *gids)
        matching: list[Any] = []
        for gid, flat in zip(gids, flats, strict=True):
            fields = [as_text(item) for item in flat]
            group_json = dict(zip(fields[::2], fields[1::2], strict=True)).get("group")
            if group_json is None:
                continue
            try:
                group = parse_group(group_json)
            except CorruptEntryError:
                continue  # unreadable: a store-wide expunge_expired removes it
            if query.matches_group(group):
                matching.append(gid)
        return matching

    async def rotate_encryption(self, *, encrypt_plaintext: bool = False) -> int:
        """Re-encrypt with the first key every token another key wrote; return how many were
        rewritten (0 when all are already under the first key).

        Walks the groups, reads their exact entries (``MGET``, by batches), re-encrypts here,
        and writes each changed entry back by compare-and-set (one script per batch, keeping
        the key's expiry); an entry a concurrent writer changed meanwhile is read again. Safe
        to run again after a failure. ``StoreError`` for a token no key of this store decrypts,
        or an unencrypted one unless ``encrypt_plaintext`` (the migration of a prefix written
        without encryption). Old values may survive in Redis persistence files (RDB, AOF)
        until they are rewritten. ``ConfigurationError`` if the store has no ``encryption_keys``.
        """
        cipher = self._cipher
        if cipher is None:
            raise ConfigurationError("rotate_encryption() needs a store with encryption_keys")
        try:
            gids = await self._client.zrange(self._groups_key, 0, -1)
        except RedisError as exc:
            raise store_error(exc) from None
        pending: list[str] = []
        for chunk in chunks(gids, _BATCH):
            flats = await self._run(self._groups_script, *chunk)
            for gid, flat in zip(chunk, flats, strict=True):
                sids = [as_text(field) for field in flat[::2]]
                pending += [as_text(gid) + ":" + sid for sid in sids if sid != "group"]
        rotated = 0
        for _ in range(_ROTATE_ROUNDS):
            if not pending:
                return rotated
            raced: list[str] = []
            for chunk in chunks(pending, _ROTATE_BATCH):
                try:
                    raws = await self._client.mget([self._prefix + "x:" + xs for xs in chunk])
                except RedisError as exc:
                    raise store_error(exc) from None
                args: list[Any] = []
                changes: list[tuple[str, int]] = []
                for xs, raw in zip(chunk, raws, strict=True):
                    if raw is None:
                        continue  # gone since
                    entry, changed = rotated_entry(as_text(raw), cipher, encrypt_plaintext)
                    if changed:
                        args += [xs, raw, entry]
                        changes.append((xs, changed))
                if not args:
                    continue
                done = await self._run(self._rotate_script, *args)
                for (xs, changed), replaced in zip(changes, done, strict=True):
                    if replaced:
                        rotated += changed
                    else:
                        raced.append(xs)
            pending = raced
        if pending:
            raise StoreError("rotate_encryption kept racing concurrent writers; run it again")
        return rotated
