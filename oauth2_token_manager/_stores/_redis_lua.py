"""The Lua scripts of the Redis stores: every multi-key write, and the consistent reads.

Shared by ``AsyncRedisStore`` and ``RedisStore`` (``_async_redis.py`` and the ``_redis.py``
generated from it); the key layout is described there, the line format in ``_redis_codec``.
The rules the scripts keep:

- Every multi-key write (put, replace, delete, revoke, expunge) is ONE script (``EVALSHA``):
  atomic and isolated, so concurrent writers in any number of processes lose nothing, and a
  rotation shows the new token at the same instant the old one goes.
- A write script reads and checks everything first (an overlay of the entries it read collects
  every change) and writes at the end, so a corrupt entry fails it before it changed anything;
  except that ``delete`` and ``expunge`` remove the entries they cannot parse (the repair).
  Its own errors start with ``ERROR_MARK`` (``_redis_codec.store_error`` turns them into
  ``StoreError``).
- ``cjson`` only *decodes* a token line (to read its hash, expiry and sort fields): lines are
  moved as opaque strings, never re-encoded (cjson would round numbers to 14 digits and turn
  ``[]`` into ``{}``).
- Deadlines are as in ``_kv``: a token's is ``expires_at + retain_expired`` (none when the
  expiry is unknown), an exact entry's the latest of its tokens', a group's the latest of its
  entries', a revocation's its ``until``. Every key gets a Redis expiry at its deadline, set as
  ``PX`` (deadline minus the store's clock, in ms) rather than ``PXAT``: the same instant when
  the clock is the wall clock, and right too for an injected clock or a host whose clock
  differs from the server's. Keys of unknown expiry get none.
- With encryption the scripts never need a key or a plaintext: they get the store's key ids and
  refuse an entry holding a line of another mode or key (``StoreError``, nothing written), so a
  process with a wrong or missing key never mixes lines into an entry the others read.
- Multi-key reads (``get``, ``find(group, None)``, the group entries of ``list``) are read-only
  scripts: one round trip, one consistent snapshot.
- Scripts touch keys they compute (from the hash refs and group entries), so the stores want a
  standalone Redis (or a single-slot setup), not Redis Cluster.

No I/O here: plain strings, registered by each store on its own client.
"""

from __future__ import annotations

import json

from ._crypto import ENCRYPTED_WITHOUT_KEY, NOT_ENCRYPTED, WRONG_KEY

__all__ = [
    "DELETE",
    "ERROR_MARK",
    "EXPUNGE",
    "FIND_GROUP",
    "GET",
    "GROUPS",
    "PUT",
    "RENEW_LOCK",
    "REVOKE",
    "ROTATE",
    "UNLOCK",
]

ERROR_MARK = "OAUTH2TM "  # how the scripts' own errors start

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
  error({err = @ERROR_MARK@ .. what})
end

-- Repair: ``delete`` sets REPAIR (an unreadable exact entry or hash ref is removed instead of
-- failing the script), ``expunge`` REPAIR and REPAIR_GROUPS (an unreadable group entry too).
-- Only what cannot be parsed ("malformed"); an entry of another key or mode is never removed.
local REPAIR, REPAIR_GROUPS, repaired = false, false, 0
local function repairable(e, allowed)
  local text = e  -- pcall hands over fail()'s message as a string
  if type(e) == 'table' then text = e.err end
  text = tostring(text)
  if not (allowed and string.find(text, 'malformed', 1, true)) then
    error({err = text}, 0)
  end
  repaired = repaired + 1
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
    local ok, e = pcall(function()
      if string.sub(raw, 1, 2) ~= '[\n' or string.sub(raw, -2) ~= '\n]' then
        fail('stored token entry is malformed')
      end
      for line in string.gmatch(string.sub(raw, 3, -3), '[^\n]+') do
        if string.byte(line, -1) == 44 then line = string.sub(line, 1, -2) end
        table.insert(en.items, decode_line(line))
      end
    end)
    if not ok then
      repairable(e, REPAIR)
      en = {items = {}, dirty = true}
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
    repairable(@ERROR_MARK@ .. 'stored hash entry is malformed', REPAIR)
    r = {xs = false, dirty = true}
    refs[h] = r
    return r
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
  local ok, e = pcall(function()
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
          if not n or n ~= n then fail('stored group entry is malformed') end
          g.fields[f] = n
        end
      end
    end
    if g.exists and not g.json then fail('stored group entry is malformed') end
  end)
  if not ok then
    repairable(e, REPAIR_GROUPS)
    g = {fields = {}, json = nil, dirty = true, exists = false}
  end
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
  if not u or u ~= u then return true end  -- unreadable: revoked (fail closed)
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
REPAIR = true
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
  local c = tonumber(cur)  -- an unreadable one is replaced
  if c and c > untl and c < math.huge then untl = c end
end
flush()
if untl > NOW then store(P .. 'r:' .. h, fmt(untl), untl) end
return 0
"""

# expunge: ARGV[5] the ``now`` expiry is judged at, ARGV[6...] group ids. Returns {the count of
# tokens removed, the count of unreadable entries removed}.
_EXPUNGE = r"""
local EXP = tonumber(ARGV[5])
local removed = 0
REPAIR, REPAIR_GROUPS = true, true
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
return {removed, repaired}
"""

# Read-only. get: ARGV[1] prefix, ARGV[2] hash -> {ref, entry} or nil.
GET = r"""
local ref = redis.call('GET', ARGV[1] .. 'h:' .. ARGV[2])
if not ref then return false end
return {ref, redis.call('GET', ARGV[1] .. 'x:' .. ref)}
"""

# Read-only. find(group, None): ARGV[1] prefix, ARGV[2] gid -> the group's exact entries.
FIND_GROUP = r"""
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
GROUPS = r"""
local out = {}
for k = 2, #ARGV do
  out[k - 1] = redis.call('HGETALL', ARGV[1] .. 'g:' .. ARGV[k])
end
return out
"""

# rotate_encryption: ARGV[1] prefix, then triples ("gid:sid", the entry as read, its re-encrypted
# form): compare-and-set, keeping the key's expiry. Returns 1 (replaced) or 0 per triple.
ROTATE = r"""
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

# The cross-process lock: SET NX PX takes it; renewal and release check the owner first
# (compare-and-pexpire, compare-and-delete), so a holder whose lease ran out never extends or
# frees the lock of the process that took it over.
RENEW_LOCK = r"""
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"""
UNLOCK = r"""
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"""


def _lua_messages(script: str) -> str:
    """``script`` with the ``@NAME@`` placeholders of the shared texts as Lua strings."""
    for name, text in (
        ("ERROR_MARK", ERROR_MARK),
        ("WRONG_KEY", WRONG_KEY),
        ("NOT_ENCRYPTED", NOT_ENCRYPTED),
        ("ENCRYPTED_WITHOUT_KEY", ENCRYPTED_WITHOUT_KEY),
    ):
        script = script.replace(f"@{name}@", json.dumps(text))
    return script


_PRELUDE = _lua_messages(_PRELUDE)

# The write scripts, each behind the prelude.
PUT = _PRELUDE + _PUT
DELETE = _PRELUDE + _DELETE
REVOKE = _PRELUDE + _REVOKE
EXPUNGE = _PRELUDE + _EXPUNGE
