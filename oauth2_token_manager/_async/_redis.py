"""``AsyncRedisStore``: tokens in Redis, shared by processes and hosts, JSON only.

``oauth2_token_manager/_sync/_redis.py`` (``RedisStore`` on redis-py's sync client) is generated
from this file by ``scripts/unasync.py``.

Layout, every key under ``prefix`` (default ``"oauth2tm:"``); ``gid`` is the SHA-256 of the JSON
of the group (as ``DiskStore`` hashes it), ``sid`` the SHA-256 of the JSON of the scope key, so no
key holds a token value, a subject, a client id or a scope:

- ``x:{gid}:{sid}`` string, the exact entry: the tokens of (group, scope key), newest first, as
  a JSON array with one token per line (``"[\\n" + ",\\n".join(lines) + "\\n]"``). Each line is
  ``Token.to_dict()`` plus ``"token_hash"``, as compact ASCII JSON (never a raw newline in it).
  ``find(group, scope_key)`` is ONE ``GET`` of it and one ``json.loads``: the hot path.
- ``h:{token_hash}`` string: ``{gid}:{sid}``, where the token is (``get``, ``delete``, moves).
- ``g:{gid}`` hash: field ``group`` = the JSON of the group (``list`` filters on it before it
  reads any token), one field ``{sid}`` per exact entry = that entry's deadline (``never``).
- ``r:{token_hash}`` string: the revocation's ``until`` (epoch seconds).
- ``groups`` sorted set: every ``gid``, scored by the group's deadline (``+inf`` for never):
  ``list`` reads the members scored after now; ``expunge_expired`` walks them all. No SCAN.

Deadlines are as in ``_kv``: a token's is ``expires_at + retain_expired`` (none when the expiry
is unknown), an exact entry's the latest of its tokens', a group's the latest of its entries', a
revocation's its ``until``. Every key gets a Redis expiry at its deadline, set as ``PX``
(deadline minus the store's clock, in ms) rather than ``PXAT``: the same instant when the clock is
the wall clock, and right too for an injected clock or a host whose clock differs from the
server's. Keys of unknown expiry get none. Lookups also check deadlines against the store's
clock, so nothing past its deadline is returned before Redis drops it.

Every multi-key write (put, replace, delete, revoke, expunge) is ONE Lua script (``EVALSHA``):
atomic and isolated, so concurrent writers in any number of processes lose nothing, and a
rotation shows the new token at the same instant the old one goes. A script reads and checks
everything first and writes at the end, so a corrupt entry fails it before it changed anything.
Inside Redis, ``cjson`` only *decodes* a token line (to read its hash, expiry and sort fields):
lines are moved as opaque strings, never re-encoded (cjson would round numbers to 14 digits and
turn ``[]`` into ``{}``). Multi-key reads (``get``, ``find(group, None)``) are read-only scripts:
one round trip, one consistent snapshot.

With ``encryption_keys`` (see ``_stores/_crypto.py``) each line is instead
``{"token_hash", "expires_at", "updated_at", "issued_at", "key_id", "encrypted"}``: the fields
the scripts read stay beside ``encrypted``, the Fernet token of the compact JSON of
``Token.to_dict()`` (value included), and ``key_id`` names the key that wrote it. So the scripts
never need a key or a plaintext, ``find`` stays one ``GET`` (plus one decryption per token), and
a line read back is checked against its clear fields. The scripts get the store's key ids and
refuse an entry holding a line of another mode or key (``StoreError``, nothing written), so a
process with a wrong or missing key never mixes lines into an entry the others read. Without
keys the lines are the plain ones above. Revocations, hash refs and group entries (which name
the group's issuer, client, subject and resource) hold no token value and stay plain.

Scripts touch keys they compute (from the hash refs and group entries), so the store wants a
standalone Redis (or a single-slot setup), not Redis Cluster. All processes sharing a prefix
should use the same ``retain_expired``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._exceptions import StoreError, TokenRevokedError
from .._models import GroupKey, Token, token_from_dict
from .._stores._base import Page, TokenQuery, newest_first
from .._stores._crypto import (
    ENCRYPTED_WITHOUT_KEY,
    NOT_ENCRYPTED,
    WRONG_KEY,
    Cipher,
    make_cipher,
)

__all__ = ["AsyncRedisStore"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_REF = re.compile(r"[0-9a-f]{64}:[0-9a-f]{64}")
_BATCH = 256  # groups per script call or MGET in ``list`` and ``expunge_expired``
_ROTATE_BATCH = 64  # exact entries per MGET and script call in ``rotate_encryption``
_ROTATE_ROUNDS = 10  # passes over entries a concurrent writer changed meanwhile
_ERROR_MARK = "OAUTH2TM "  # how the scripts' own errors start
_NOT_JSON = "the Redis token store holds an entry that is not valid JSON"

# -- Lua ---------------------------------------------------------------------------------------

# Shared by the write scripts: ARGV[1] prefix, ARGV[2] the store's now, ARGV[3] retain_expired,
# ARGV[4] the ids of the store's encryption keys, comma-separated ("" without encryption).
# An overlay of the entries read (``entries``, ``refs``, ``groups``) collects every change;
# ``flush`` writes them at the end. Deadlines are numbers, ``math.huge`` for never.
_PRELUDE = r"""
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local RETAIN = tonumber(ARGV[3])
local NEVER = math.huge
local ENCRYPTED = ARGV[4] ~= ''
local KIDS = {}
for id in string.gmatch(ARGV[4], '[^,]+') do KIDS[id] = true end

local function fail(what)
  error({err = 'OAUTH2TM ' .. what})
end

local function fmt(n)
  return string.format('%.17g', n)
end

local function deadline(item)
  if item.e == nil then return NEVER end
  return item.e + RETAIN
end

local function alive(item)
  return deadline(item) > NOW
end

local function latest(items)
  local best = -math.huge
  for _, it in ipairs(items) do
    local d = deadline(it)
    if d > best then best = d end
  end
  return best
end

local function decode_line(line)
  local ok, t = pcall(cjson.decode, line)
  if not ok or type(t) ~= 'table' then fail('stored token entry is malformed') end
  local h, e, u, i = t.token_hash, t.expires_at, t.updated_at, t.issued_at
  if type(h) ~= 'string' or type(u) ~= 'number' or type(i) ~= 'number' then
    fail('stored token entry is malformed')
  end
  if e == cjson.null then
    e = nil
  elseif type(e) ~= 'number' then
    fail('stored token entry is malformed')
  end
  if ENCRYPTED then
    if t.encrypted == nil then fail(@NOT_ENCRYPTED@) end
    if type(t.encrypted) ~= 'string' or not KIDS[t.key_id] then fail(@WRONG_KEY@) end
  elseif t.encrypted ~= nil then
    fail(@ENCRYPTED_WITHOUT_KEY@)
  end
  return {line = line, h = h, e = e, u = u, i = i, t = t}
end

local function text_or_empty(v)
  if type(v) == 'string' then return v end
  return ''
end

local function group_json(t)
  if type(t.kind) ~= 'string' then fail('stored group entry is malformed') end
  return cjson.encode({t.kind, t.issuer, t.client_id, text_or_empty(t.subject),
                       text_or_empty(t.resource)})
end

local entries = {}
local function entry(xs)
  local en = entries[xs]
  if en then return en end
  en = {items = {}, dirty = false}
  local raw = redis.call('GET', P .. 'x:' .. xs)
  if raw then
    if string.sub(raw, 1, 2) ~= '[\n' or string.sub(raw, -2) ~= '\n]' then
      fail('stored token entry is malformed')
    end
    for line in string.gmatch(string.sub(raw, 3, -3), '[^\n]+') do
      if string.byte(line, -1) == 44 then line = string.sub(line, 1, -2) end
      table.insert(en.items, decode_line(line))
    end
  end
  entries[xs] = en
  return en
end

local refs = {}
local function ref(h)
  local r = refs[h]
  if r then return r end
  local v = redis.call('GET', P .. 'h:' .. h)
  if v and not (#v == 129 and string.match(v, '^%x+:%x+$')) then
    fail('stored hash entry is malformed')
  end
  r = {xs = v, dirty = false}
  refs[h] = r
  return r
end

local function set_ref(h, xs, d)
  refs[h] = {xs = xs, d = d, dirty = true}
end

local function drop_ref(h, xs)
  local r = ref(h)
  if r.xs == xs then
    r.xs = false
    r.dirty = true
  end
end

local groups = {}
local function group(gid)
  local g = groups[gid]
  if g then return g end
  g = {fields = {}, json = nil, dirty = false, exists = false}
  local flat = redis.call('HGETALL', P .. 'g:' .. gid)
  for k = 1, #flat, 2 do
    local f, v = flat[k], flat[k + 1]
    g.exists = true
    if f == 'group' then
      g.json = v
    else
      if not (#f == 64 and string.match(f, '^%x+$')) then
        fail('stored group entry is malformed')
      end
      if v == 'never' then
        g.fields[f] = NEVER
      else
        local n = tonumber(v)
        if not n then fail('stored group entry is malformed') end
        g.fields[f] = n
      end
    end
  end
  if g.exists and not g.json then fail('stored group entry is malformed') end
  groups[gid] = g
  return g
end

-- Set (or empty) an exact entry and keep its group entry in step. An entry whose tokens are all
-- past their deadline is removed with the refs to it.
local function save_entry(xs, items)
  local en = entry(xs)
  local d = latest(items)
  if #items > 0 and d <= NOW then
    for _, it in ipairs(items) do drop_ref(it.h, xs) end
    items = {}
  end
  en.items = items
  en.dirty = true
  local g = group(string.sub(xs, 1, 64))
  if #items > 0 then
    g.fields[string.sub(xs, 66)] = d
    if not g.json then g.json = group_json(items[1].t) end
  else
    g.fields[string.sub(xs, 66)] = nil
  end
  g.dirty = true
end

-- Remove a token from every index; return it if it was alive.
local function unlink(h)
  local r = ref(h)
  if not r.xs then return nil end
  local xs = r.xs
  r.xs = false
  r.dirty = true
  local found, rest = nil, {}
  for _, it in ipairs(entry(xs).items) do
    if it.h == h then found = it else table.insert(rest, it) end
  end
  if not found then return nil end
  save_entry(xs, rest)
  if alive(found) then return found end
  return nil
end

local function revoked(h)
  local v = redis.call('GET', P .. 'r:' .. h)
  if not v then return false end
  local u = tonumber(v)
  if not u then fail('stored revocation entry is malformed') end
  return u > NOW
end

-- Milliseconds from the store's now to deadline ``d`` (rounded up, at most 1e15), as text.
local function ttl(d)
  return string.format('%.0f', math.min(math.ceil((d - NOW) * 1000), 1e15))
end

local function store(key, value, d)
  if d == NEVER then
    redis.call('SET', key, value)
  elseif d > NOW then
    redis.call('SET', key, value, 'PX', ttl(d))
  else
    redis.call('DEL', key)
  end
end

local function flush()
  for xs, en in pairs(entries) do
    if en.dirty then
      if #en.items == 0 then
        redis.call('DEL', P .. 'x:' .. xs)
      else
        local lines = {}
        for k, it in ipairs(en.items) do lines[k] = it.line end
        store(P .. 'x:' .. xs, '[\n' .. table.concat(lines, ',\n') .. '\n]', latest(en.items))
      end
    end
  end
  for h, r in pairs(refs) do
    if r.dirty then
      if r.xs then
        store(P .. 'h:' .. h, r.xs, r.d)
      else
        redis.call('DEL', P .. 'h:' .. h)
      end
    end
  end
  for gid, g in pairs(groups) do
    if g.dirty then
      local key = P .. 'g:' .. gid
      redis.call('DEL', key)
      local flat = {}
      local d = -math.huge
      for sid, fd in pairs(g.fields) do
        table.insert(flat, sid)
        if fd == NEVER then table.insert(flat, 'never') else table.insert(flat, fmt(fd)) end
        if fd > d then d = fd end
      end
      if d <= NOW then
        redis.call('ZREM', P .. 'groups', gid)
      else
        table.insert(flat, 'group')
        table.insert(flat, g.json)
        redis.call('HSET', key, unpack(flat))
        if d ~= NEVER then
          redis.call('PEXPIRE', key, ttl(d))
        end
        local score = '+inf'
        if d ~= NEVER then score = fmt(d) end
        redis.call('ZADD', P .. 'groups', score, gid)
      end
    end
  end
end
"""

# put / replace: ARGV[5] the token line, ARGV[6] its "gid:sid", ARGV[7] the group's JSON,
# ARGV[8] (replace only) the old hash ("" for none). Returns 1 when the token is revoked.
_PUT = r"""
local item = decode_line(ARGV[5])
local xs = ARGV[6]
local old = ARGV[8]
if revoked(item.h) then return 1 end
local r = ref(item.h)
if r.xs and r.xs ~= xs then unlink(item.h) end
local kept, dropped = {}, {}
for _, it in ipairs(entry(xs).items) do
  if it.h ~= item.h then
    if alive(it) then table.insert(kept, it) else table.insert(dropped, it) end
  end
end
if alive(item) then
  local pos = #kept + 1
  for k, it in ipairs(kept) do
    if it.u < item.u or (it.u == item.u and it.i <= item.i) then
      pos = k
      break
    end
  end
  table.insert(kept, pos, item)
end
group(string.sub(xs, 1, 64)).json = ARGV[7]
save_entry(xs, kept)
for _, it in ipairs(dropped) do drop_ref(it.h, xs) end
if alive(item) then
  set_ref(item.h, xs, deadline(item))
else
  local own = ref(item.h)
  own.xs = false
  own.dirty = true
end
if old and old ~= '' and old ~= item.h then unlink(old) end
flush()
redis.call('ZREMRANGEBYSCORE', P .. 'groups', '-inf', fmt(NOW))
return 0
"""

# delete: ARGV[5] the hash. Returns the removed token's line if it was alive.
_DELETE = r"""
local found = unlink(ARGV[5])
flush()
if found then return found.line end
return false
"""

# revoke: ARGV[5] the hash, ARGV[6] until; a revocation is never shortened.
_REVOKE = r"""
local h = ARGV[5]
local untl = tonumber(ARGV[6])
unlink(h)
local cur = redis.call('GET', P .. 'r:' .. h)
if cur then
  local c = tonumber(cur)
  if not c then fail('stored revocation entry is malformed') end
  if c > untl then untl = c end
end
flush()
if untl > NOW then store(P .. 'r:' .. h, fmt(untl), untl) end
return 0
"""

# expunge: ARGV[5] the ``now`` expiry is judged at, ARGV[6...] group ids. Returns the count.
_EXPUNGE = r"""
local EXP = tonumber(ARGV[5])
local removed = 0
for k = 6, #ARGV do
  local gid = ARGV[k]
  local g = group(gid)
  if not g.exists then g.dirty = true end
  local sids = {}
  for sid in pairs(g.fields) do table.insert(sids, sid) end
  for _, sid in ipairs(sids) do
    local xs = gid .. ':' .. sid
    local en = entry(xs)
    local kept, expired = {}, {}
    for _, it in ipairs(en.items) do
      if it.e ~= nil and it.e <= EXP then table.insert(expired, it) else table.insert(kept, it) end
    end
    if #expired > 0 or #en.items == 0 then
      removed = removed + #expired
      save_entry(xs, kept)
      for _, it in ipairs(expired) do drop_ref(it.h, xs) end
    end
  end
end
flush()
return removed
"""

# Read-only. get: ARGV[1] prefix, ARGV[2] hash -> {ref, entry} or nil.
_GET = r"""
local ref = redis.call('GET', ARGV[1] .. 'h:' .. ARGV[2])
if not ref then return false end
return {ref, redis.call('GET', ARGV[1] .. 'x:' .. ref)}
"""

# Read-only. find(group, None): ARGV[1] prefix, ARGV[2] gid -> the group's exact entries.
_FIND_GROUP = r"""
local P, gid = ARGV[1], ARGV[2]
local flat = redis.call('HGETALL', P .. 'g:' .. gid)
local out = {}
for k = 1, #flat, 2 do
  if flat[k] ~= 'group' then
    local raw = redis.call('GET', P .. 'x:' .. gid .. ':' .. flat[k])
    if raw then table.insert(out, raw) end
  end
end
return out
"""

# Read-only. list: ARGV[1] prefix, ARGV[2...] gids -> each group entry as HGETALL returns it.
_GROUPS = r"""
local out = {}
for k = 2, #ARGV do
  out[k - 1] = redis.call('HGETALL', ARGV[1] .. 'g:' .. ARGV[k])
end
return out
"""

# rotate_encryption: ARGV[1] prefix, then triples ("gid:sid", the entry as read, its re-encrypted
# form): compare-and-set, keeping the key's expiry. Returns 1 (replaced) or 0 per triple.
_ROTATE = r"""
local out = {}
for k = 2, #ARGV, 3 do
  local key = ARGV[1] .. 'x:' .. ARGV[k]
  local done = 0
  if redis.call('GET', key) == ARGV[k + 1] then
    local ttl = redis.call('PTTL', key)
    if ttl == -1 then
      redis.call('SET', key, ARGV[k + 2])
      done = 1
    elseif ttl > 0 then
      redis.call('SET', key, ARGV[k + 2], 'PX', ttl)
      done = 1
    end
  end
  out[#out + 1] = done
end
return out
"""


def _lua_messages(script: str) -> str:
    """``script`` with the ``@NAME@`` placeholders of the shared error texts as Lua strings."""
    for name, text in (
        ("WRONG_KEY", WRONG_KEY),
        ("NOT_ENCRYPTED", NOT_ENCRYPTED),
        ("ENCRYPTED_WITHOUT_KEY", ENCRYPTED_WITHOUT_KEY),
    ):
        script = script.replace(f"@{name}@", json.dumps(text))
    return script


_PRELUDE = _lua_messages(_PRELUDE)

# -- helpers -----------------------------------------------------------------------------------


# The cross-process lock: SET NX PX takes it; renewal and release check the owner first
# (compare-and-pexpire, compare-and-delete), so a holder whose lease ran out never extends or
# frees the lock of the process that took it over.
_RENEW_LOCK = r"""
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"""
_UNLOCK = r"""
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"""


@functools.lru_cache(maxsize=4096)
def _group_id(group: GroupKey) -> tuple[str, str]:
    """(SHA-256 of the group's JSON, that JSON)."""
    text = json.dumps(list(group), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest(), text


@functools.lru_cache(maxsize=4096)
def _exact_id(group: GroupKey, scope_key: str) -> str:
    """``gid:sid`` of (group, scope key) (memoised: it is on the hot path)."""
    sid = hashlib.sha256(json.dumps(scope_key).encode()).hexdigest()
    return _group_id(group)[0] + ":" + sid


def _text(value: Any) -> str:
    """A reply item as text (clients may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: float) -> str:
    """A float as exact text for a script argument."""
    return repr(float(value))


def _compact(data: Any, token: Token) -> str:
    """Compact ASCII JSON (never a raw newline), or ``StoreError`` naming the token's hash."""
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"token {token.short_hash} is not storable as JSON: {exc}") from None


def _line(token: Token, cipher: Cipher | None) -> str:
    """The stored form of one token: plain, or the clear fields the scripts read beside the
    encrypted payload."""
    data = token.to_dict()
    if cipher is None:
        data["token_hash"] = token.token_hash
        return _compact(data, token)
    key_id, sealed = cipher.seal(_compact(data, token).encode())
    clear = {
        "token_hash": token.token_hash,
        "expires_at": token.expires_at,
        "updated_at": token.updated_at,
        "issued_at": token.issued_at,
        "key_id": key_id,
        "encrypted": sealed,
    }
    return _compact(clear, token)


def _items(raw: Any) -> list[dict[str, Any]]:
    """The lines of a stored exact entry, parsed; ``StoreError`` when it is not one."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        raise StoreError(_NOT_JSON) from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise StoreError("stored token entry is malformed: not a list of tokens")
    return data


def _decrypted(item: dict[str, Any], cipher: Cipher) -> Token:
    """The token of an encrypted line, checked against the line's clear fields."""
    if "encrypted" not in item:
        raise StoreError(NOT_ENCRYPTED)
    payload = cipher.open(item.get("key_id"), item.get("encrypted"))
    try:
        data = json.loads(payload)
    except ValueError:
        raise StoreError(_NOT_JSON) from None
    if not isinstance(data, dict):
        raise StoreError("stored token entry is malformed: not a token")
    token = token_from_dict(data)
    clear = [item.get(name) for name in ("token_hash", "expires_at", "updated_at", "issued_at")]
    if clear != [token.token_hash, token.expires_at, token.updated_at, token.issued_at]:
        raise StoreError("stored token entry is inconsistent: clear fields differ from its token")
    return token


def _decoded(items: list[dict[str, Any]], cipher: Cipher | None) -> list[Token]:
    """The tokens of parsed lines: decrypted when the store has keys."""
    if cipher is not None:
        return [_decrypted(item, cipher) for item in items]
    try:
        return [token_from_dict(item) for item in items]
    except StoreError:
        if any("encrypted" in item for item in items):
            raise StoreError(ENCRYPTED_WITHOUT_KEY) from None
        raise


def _tokens(raw: Any, cipher: Cipher | None) -> list[Token]:
    """The tokens of a stored exact entry; ``StoreError`` when it is not one (or when it cannot
    be decrypted)."""
    return _decoded(_items(raw), cipher)


def _rotated_entry(text: str, cipher: Cipher, encrypt_plaintext: bool) -> tuple[str, int]:
    """An exact entry with every line another key wrote (or, with ``encrypt_plaintext``, every
    plain line) encrypted with the first key, and how many lines changed."""
    if not (text.startswith("[\n") and text.endswith("\n]")):
        raise StoreError("stored token entry is malformed")
    lines: list[str] = []
    changed = 0
    for line in text[2:-2].split("\n"):
        line = line.removesuffix(",")
        if not line:
            continue
        [item] = _items("[" + line + "]")
        if "encrypted" not in item:
            if not encrypt_plaintext:
                raise StoreError(NOT_ENCRYPTED)
            [token] = _decoded([item], None)
            line = _line(token, cipher)
        elif item.get("key_id") != cipher.primary_id:
            token = _decrypted(item, cipher)
            line = _line(token, cipher)
        else:
            lines.append(line)
            continue
        lines.append(line)
        changed += 1
    return "[\n" + ",\n".join(lines) + "\n]", changed


def _parse_group(text: str) -> GroupKey:
    """A group from its stored JSON; ``StoreError`` when it is not one."""
    try:
        fields = json.loads(text)
        group = GroupKey(*fields)
    except (TypeError, ValueError):
        raise StoreError("stored group entry is malformed") from None
    if not all(isinstance(f, str) for f in group):
        raise StoreError("stored group entry is malformed")
    return group


def _failure(exc: RedisError) -> StoreError:
    """Our error for a Redis one: the kind of failure, never an argument or a value."""
    if isinstance(exc, RedisResponseError):
        text = str(exc)
        if text.startswith(_ERROR_MARK):
            detail = text[len(_ERROR_MARK) :].split(" script:", 1)[0]
            return StoreError(f"Redis token store: {detail}")
        code = text.split(" ", 1)[0] if text else ""
        return StoreError(f"Redis token store failed: {type(exc).__name__} {code}".rstrip())
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return StoreError(f"Redis token store failed: {type(exc).__name__}: {exc}")
    return StoreError(f"Redis token store failed: {type(exc).__name__}")


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- the store ---------------------------------------------------------------------------------


class AsyncRedisStore:
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
            raise ValueError("give either a Redis client or a url")
        if not retain_expired >= 0:
            raise ValueError("retain_expired must be a non-negative number of seconds")
        if not isinstance(prefix, str):
            raise TypeError("prefix must be a str")
        self._cipher = make_cipher(encryption_keys)
        self._key_ids = "" if self._cipher is None else ",".join(self._cipher.key_ids)
        self._owns_client = client is None
        if client is None:
            assert url is not None
            # A blocking pool: many concurrent callers wait for a connection instead of
            # failing with "too many connections".
            pool = AsyncBlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout
            )
            client = AsyncRedis(connection_pool=pool)
        self._client = client
        self._prefix = prefix
        self._groups_key = prefix + "groups"
        self._retain = float(retain_expired)
        self._clock = clock
        register = client.register_script
        self._put_script = register(_PRELUDE + _PUT)
        self._delete_script = register(_PRELUDE + _DELETE)
        self._revoke_script = register(_PRELUDE + _REVOKE)
        self._expunge_script = register(_PRELUDE + _EXPUNGE)
        self._get_script = register(_GET)
        self._find_group_script = register(_FIND_GROUP)
        self._groups_script = register(_GROUPS)
        self._renew_lock_script = register(_RENEW_LOCK)
        self._unlock_script = register(_UNLOCK)
        self._rotate_script = register(_ROTATE)

    def __repr__(self) -> str:
        settings = f"prefix={self._prefix!r}, retain_expired={self._retain}"
        if self._cipher is not None:
            settings += f", encryption_keys={self._cipher.described}"
        return f"AsyncRedisStore({settings})"

    @property
    def encrypted(self) -> bool:
        """Whether the tokens are stored encrypted (``encryption_keys`` given)."""
        return self._cipher is not None

    @property
    def prefix(self) -> str:
        """What every key of this store starts with."""
        return self._prefix

    @property
    def retain_expired(self) -> float:
        """Seconds an expired token is still kept (and returned) after ``expires_at``."""
        return self._retain

    @property
    def client(self) -> AsyncRedis:
        """The Redis client."""
        return self._client

    async def aclose(self) -> None:
        """Close the client if the store made it (from ``url``)."""
        if self._owns_client:
            await self._client.aclose()

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

    def _alive(self, token: Token, now: float) -> bool:
        """Whether ``token`` is before its deadline at ``now``."""
        expires_at = token.expires_at
        return expires_at is None or expires_at + self._retain > now

    async def _run(self, script: AsyncScript, *args: Any) -> Any:
        """Run a read-only script with the prefix as ARGV[1]."""
        try:
            return await script(args=[self._prefix, *args])
        except RedisError as exc:
            raise _failure(exc) from None

    async def _write(self, script: AsyncScript, *args: Any) -> Any:
        """Run a write script with prefix, the store's now, retention and key ids as
        ARGV[1..4]."""
        now, retain = _number(self._clock()), _number(self._retain)
        return await self._run(script, now, retain, self._key_ids, *args)

    async def _put(self, token: Token, old_hash: str) -> None:
        gid_and_sid = _exact_id(token.group, token.scope_key)
        group_json = _group_id(token.group)[1]
        line = _line(token, self._cipher)
        if await self._write(self._put_script, line, gid_and_sid, group_json, old_hash):
            raise TokenRevokedError(f"token {token.short_hash} is revoked")

    # -- the cross-process lock (LockingTokenStore) ------------------------------------------

    def _lock_key(self, name: str) -> str:
        return self._prefix + "l:" + name

    async def try_lock(self, name: str, owner: str, lease: float) -> bool:
        """Take lock ``name`` for ``lease`` seconds if free (SET NX PX: atomic)."""
        try:
            taken = await self._client.set(
                self._lock_key(name), owner, nx=True, px=max(1, int(lease * 1000))
            )
        except RedisError as exc:
            raise _failure(exc) from None
        return bool(taken)

    async def renew_lock(self, name: str, owner: str, lease: float) -> bool:
        """Extend the lease if ``owner`` still holds the lock (compare and PEXPIRE)."""
        try:
            renewed = await self._renew_lock_script(
                keys=[self._lock_key(name)], args=[owner, max(1, int(lease * 1000))]
            )
        except RedisError as exc:
            raise _failure(exc) from None
        return bool(renewed)

    async def unlock(self, name: str, owner: str) -> None:
        """Release the lock if ``owner`` holds it (compare and delete)."""
        try:
            await self._unlock_script(keys=[self._lock_key(name)], args=[owner])
        except RedisError as exc:
            raise _failure(exc) from None

    # -- the TokenStore protocol -------------------------------------------------------------

    async def put(self, token: Token) -> None:
        """Store ``token``, replacing (and moving) a stored token of the same hash.

        A token already past ``expires_at + retain_expired`` is not kept (the stored one of the
        same hash is removed). ``TokenRevokedError`` if its hash is on the revocation list.
        """
        await self._put(token, "")

    async def get(self, token_hash: str) -> Token | None:
        """The stored token with this hash, or ``None`` (one script call)."""
        if not _SHA256_HEX.fullmatch(token_hash):
            return None  # never stored: and never send what may be a token value to Redis
        reply = await self._run(self._get_script, token_hash)
        if not reply:
            return None
        ref, raw = reply
        if not _REF.fullmatch(_text(ref)):
            raise StoreError("stored hash entry is malformed")
        if raw is None:
            return None
        items = _items(raw)
        if self._cipher is not None:  # decrypt only the line that claims the hash
            items = [item for item in items if item.get("token_hash") == token_hash]
        for token in _decoded(items, self._cipher):
            if token.token_hash == token_hash:
                return token if self._alive(token, self._clock()) else None
        return None

    async def find(self, group: GroupKey, scope_key: str | None) -> list[Token]:
        """Tokens of ``group`` with this canonical scope string, newest first (all if ``None``).

        An exact scope key is one ``GET``; ``None`` one read-only script over the group.
        """
        if scope_key is None:
            raws = await self._run(self._find_group_script, _group_id(group)[0])
            now = self._clock()
            found = [t for raw in raws for t in _tokens(raw, self._cipher) if self._alive(t, now)]
            return newest_first(found)
        key = self._prefix + "x:" + _exact_id(group, scope_key)
        try:
            raw = await self._client.get(key)
        except RedisError as exc:
            raise _failure(exc) from None
        if raw is None:
            return []
        now = self._clock()
        return [t for t in _tokens(raw, self._cipher) if self._alive(t, now)]

    async def replace(self, old_hash: str, new: Token) -> None:
        """Rotation in one script: store ``new`` and remove ``old_hash`` at the same instant."""
        await self._put(new, old_hash if _SHA256_HEX.fullmatch(old_hash) else "")

    async def delete(self, token_hash: str) -> Token | None:
        """Remove and return the token with this hash (``None`` if absent)."""
        if not _SHA256_HEX.fullmatch(token_hash):
            return None
        line = await self._write(self._delete_script, token_hash)
        if line is None:
            return None
        [token] = _tokens("[" + _text(line) + "]", self._cipher)
        return token

    async def revoke(self, token_hash: str, until: float) -> None:
        """Remove the token and keep its hash on the revocation list until ``until``.

        ``ValueError`` unless ``token_hash`` is a SHA-256 hex digest: the hash becomes part of a
        key, and a token value passed by mistake must never be written into one.
        """
        if not isinstance(token_hash, str) or not _SHA256_HEX.fullmatch(token_hash):
            raise ValueError("revoke() takes a token_hash (SHA-256 hex), not a token value")
        await self._write(self._revoke_script, token_hash, _number(until))

    async def is_revoked(self, token_hash: str) -> bool:
        """Whether the hash is on the revocation list (now before its ``until``)."""
        if not _SHA256_HEX.fullmatch(token_hash):
            return False  # revoke() refuses anything else
        try:
            raw = await self._client.get(self._prefix + "r:" + token_hash)
        except RedisError as exc:
            raise _failure(exc) from None
        if raw is None:
            return False
        try:
            until = float(raw)
        except ValueError:
            raise StoreError("stored revocation entry is malformed") from None
        return until > self._clock()

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
            raise _failure(exc) from None
        matches: list[Token] = []
        for chunk in _chunks(gids, _BATCH):
            flats = await self._run(self._groups_script, *chunk)
            keys: list[str] = []
            for gid, flat in zip(chunk, flats, strict=True):
                fields = [_text(item) for item in flat]
                record = dict(zip(fields[::2], fields[1::2], strict=True))
                if not record:
                    continue  # dropped since
                group_json = record.pop("group", None)
                if group_json is None:
                    raise StoreError("stored group entry is malformed")
                if not query.matches_group(_parse_group(group_json)):
                    continue
                prefix = self._prefix + "x:" + _text(gid) + ":"
                keys += [prefix + sid for sid in record]
            if not keys:
                continue
            try:
                raws = await self._client.mget(keys)
            except RedisError as exc:
                raise _failure(exc) from None
            for raw in raws:
                if raw is not None:
                    for token in _tokens(raw, self._cipher):
                        if self._alive(token, now) and query.matches(token):
                            matches.append(token)
        matches.sort(key=lambda t: (t.updated_at, t.issued_at, t.token_hash), reverse=True)
        start = max(query.offset, 0)
        stop = None if query.limit is None else start + max(query.limit, 0)
        return Page(matches[start:stop], len(matches), query.offset, query.limit)

    async def expunge_expired(self, now: float) -> int:
        """Remove tokens expired at ``now`` (``expires_at <= now``); return how many.

        ``retain_expired`` does not apply (it only delays the automatic removal). One script
        per batch of groups, so that a large store does not block Redis for long. Tokens Redis
        already dropped on its own are not counted.
        """
        try:
            gids = await self._client.zrange(self._groups_key, 0, -1)
        except RedisError as exc:
            raise _failure(exc) from None
        removed = 0
        for chunk in _chunks(gids, _BATCH):
            removed += int(await self._write(self._expunge_script, _number(now), *chunk))
        return removed

    async def rotate_encryption(self, *, encrypt_plaintext: bool = False) -> int:
        """Re-encrypt with the first key every token another key wrote; return how many were
        rewritten (0 when all are already under the first key).

        Walks the groups, reads their exact entries (``MGET``, by batches), re-encrypts here,
        and writes each changed entry back by compare-and-set (one script per batch, keeping
        the key's expiry); an entry a concurrent writer changed meanwhile is read again. Safe
        to run again after a failure. ``StoreError`` for a token no key of this store decrypts,
        or an unencrypted one unless ``encrypt_plaintext`` (the migration of a prefix written
        without encryption). Old values may survive in Redis persistence files (RDB, AOF)
        until they are rewritten. ``ValueError`` if the store has no ``encryption_keys``.
        """
        cipher = self._cipher
        if cipher is None:
            raise ValueError("rotate_encryption() needs a store with encryption_keys")
        try:
            gids = await self._client.zrange(self._groups_key, 0, -1)
        except RedisError as exc:
            raise _failure(exc) from None
        pending: list[str] = []
        for chunk in _chunks(gids, _BATCH):
            flats = await self._run(self._groups_script, *chunk)
            for gid, flat in zip(chunk, flats, strict=True):
                sids = [_text(field) for field in flat[::2]]
                pending += [_text(gid) + ":" + sid for sid in sids if sid != "group"]
        rotated = 0
        for _ in range(_ROTATE_ROUNDS):
            if not pending:
                return rotated
            raced: list[str] = []
            for chunk in _chunks(pending, _ROTATE_BATCH):
                try:
                    raws = await self._client.mget([self._prefix + "x:" + xs for xs in chunk])
                except RedisError as exc:
                    raise _failure(exc) from None
                args: list[Any] = []
                changes: list[tuple[str, int]] = []
                for xs, raw in zip(chunk, raws, strict=True):
                    if raw is None:
                        continue  # gone since
                    entry, changed = _rotated_entry(_text(raw), cipher, encrypt_plaintext)
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
