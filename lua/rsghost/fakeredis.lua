-- An in-memory Redis for specs: the commands pipeline sinks commonly use,
-- answering as redis-server 7.0 does, error replies included, byte for byte.
--
--   local fakeredis = require "rsghost.fakeredis"
--   local r = fakeredis.new()                     -- or new { clock = fn }
--   r:call("RPUSH", "out", "a", "b")              --> 2
--   r:pcall("GET", "out")                         --> nil, "WRONGTYPE Operation ..."
--   r:command({ "LRANGE", "out", 0, -1 })         --> { "a", "b" }
--   r:pipeline({ { "INCR", "n" }, { "GET", "x" } }) --> { 1, false }
--
-- The same methods as rsghost.hiredis' client, so a spec can swap one for
-- the other. Replies are converted the way the rsghost host converts them:
-- status -> string ("OK"), integer -> number, bulk -> string, nil -> nil at
-- the top and false inside arrays, array -> table. Errors are the server's
-- text without the leading '-' ("ERR syntax error").
--
-- Covered: strings (GET SET SETNX SETEX PSETEX GETDEL MGET MSET MSETNX
-- APPEND STRLEN INCR DECR INCRBY DECRBY), keys (DEL UNLINK EXISTS TYPE KEYS
-- DBSIZE FLUSHDB FLUSHALL), expiry (EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL
-- PTTL EXPIRETIME PEXPIRETIME PERSIST), lists (LPUSH RPUSH LPUSHX RPUSHX
-- LPOP RPOP LRANGE LLEN LINDEX LREM LTRIM LSET), hashes (HSET HMSET HSETNX
-- HGET HMGET HGETALL HKEYS HVALS HDEL HEXISTS HINCRBY HLEN), sets (SADD SREM
-- SMEMBERS SISMEMBER SMISMEMBER SCARD), streams (XADD XLEN XRANGE XREVRANGE
-- XDEL XTRIM), PING ECHO. Any other Redis command answers
-- "ERR rsghost.fakeredis does not implement ..." (use a real server for it);
-- a name Redis does not know gets Redis' own "unknown command" error.
--
-- Time comes from opts.clock (seconds since the epoch, fractions allowed;
-- default the wall clock): keys expire when it passes their deadline, and XADD *
-- takes its milliseconds from it. The test kit passes its virtual clock.
--
-- Where a real server's answer depends on its internal layout, the fake keeps
-- that layout too: XADD/XTRIM with MAXLEN ~ trim whole stream nodes, sized
-- with the default stream-node-max-entries (100) and stream-node-max-bytes
-- (4096) from the listpack encoding; SMEMBERS lists a set of integers in
-- numeric order (an intset). What Redis leaves to hash-table order (KEYS,
-- SMEMBERS of other sets, HGETALL of hashes past 128 fields or 64-byte
-- values) comes out in a stable order of the fake's own: compare those as
-- sets. Keys are not evicted by memory limits, and expired keys are never
-- counted (Redis' DBSIZE may count them until its expiry cycle runs).

local ffi = require "ffi"

local type, tostring, select, setmetatable, error, ipairs = type, tostring, select, setmetatable, error, ipairs
local format, floor, concat, sort = string.format, math.floor, table.concat, table.sort
local byte, sub, lower = string.byte, string.sub, string.lower

local I64 = ffi.typeof("int64_t")
local U64 = ffi.typeof("uint64_t")
local LLONG_MAX = 0x7fffffffffffffffLL
local LLONG_MIN = -0x7fffffffffffffffLL - 1
local U64_MAX = 0xffffffffffffffffULL

local M = {}

-- The wall clock in seconds with microseconds (os.time has whole seconds
-- only). The declaration is private to this module's names, so that it cannot
-- clash with another module's; should it fail anyway, os.time serves.
local wall_clock = os.time
do
  local ok = pcall(ffi.cdef, [[
    struct rsghost_fakeredis_timeval { long tv_sec; long tv_usec; };
    int gettimeofday(struct rsghost_fakeredis_timeval *tv, void *tz);
  ]])
  if ok then
    local tv = ffi.new("struct rsghost_fakeredis_timeval")
    wall_clock = function()
      ffi.C.gettimeofday(tv, nil)
      return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
    end
  end
end
M.wall_clock = wall_clock

-- Redis' error replies, as the server words them.
local WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
local NOT_INTEGER = "ERR value is not an integer or out of range"
local SYNTAX = "ERR syntax error"
local BAD_ID = "ERR Invalid stream ID specified as stream command argument"
local OVERFLOW = "ERR increment or decrement would overflow"

local function arity_error(name)
  return format("ERR wrong number of arguments for '%s' command", name)
end

----------------------------------------------------------------------------
-- Numbers, parsed and printed as Redis does (util.c string2ll, string2ull)

-- The int64 a string holds in Redis' strict sense (no spaces, no '+', no
-- leading zeros, within 64 bits), or nil.
local function string2ll(s)
  local n = #s
  if n == 0 or n >= 21 then return nil end
  if s == "0" then return I64(0) end
  local neg = byte(s, 1) == 45
  local digits = neg and sub(s, 2) or s
  if not digits:find("^[1-9]%d*$") then return nil end
  local v = U64(0)
  for i = 1, #digits do
    local d = byte(digits, i) - 48
    if v > U64_MAX / 10 then return nil end
    v = v * 10
    if v > U64_MAX - d then return nil end
    v = v + d
  end
  if neg then
    if v > 0x8000000000000000ULL then return nil end
    return -ffi.cast(I64, v)
  end
  if v > 0x7fffffffffffffffULL then return nil end
  return ffi.cast(I64, v)
end
M._string2ll = string2ll

-- An unsigned 64-bit number for stream ids: string2ll when that works and is
-- not negative, else what strtoull accepts (leading spaces, a sign, leading
-- zeros; a '-' wraps around, as in C).
local function string2ull(s)
  local ll = string2ll(s)
  if ll ~= nil then
    if ll < 0 then return nil end
    return ffi.cast(U64, ll)
  end
  local sign, digits = s:match("^[ \t\n\v\f\r]*([+-]?)(%d+)$")
  if not digits then return nil end
  local v = U64(0)
  for i = 1, #digits do
    local d = byte(digits, i) - 48
    if v > U64_MAX / 10 then return nil end
    v = v * 10
    if v > U64_MAX - d then return nil end
    v = v + d
  end
  if sign == "-" then v = -v end
  return v
end

-- "123" for 123LL / 123ULL.
local function int_string(x)
  return (tostring(x):gsub("U?LL$", ""))
end

-- An integer reply: a Lua number, as the host converts it.
local function int_reply(x)
  return tonumber(x)
end

----------------------------------------------------------------------------
-- Glob-style patterns (util.c stringmatchlen), for KEYS

local function match_impl(pat, p, pl, str, s, sl, state)
  while pl > 0 and sl > 0 do
    local c = byte(pat, p)
    if c == 42 then -- '*'
      while pl > 0 and byte(pat, p + 1) == 42 do
        p, pl = p + 1, pl - 1
      end
      if pl == 1 then return true end
      while sl > 0 do
        if match_impl(pat, p + 1, pl - 1, str, s, sl, state) then return true end
        if state.skip then return false end
        s, sl = s + 1, sl - 1
      end
      state.skip = true
      return false
    elseif c == 63 then -- '?'
      s, sl = s + 1, sl - 1
    elseif c == 91 then -- '['
      p, pl = p + 1, pl - 1
      local negate = byte(pat, p) == 94
      if negate then p, pl = p + 1, pl - 1 end
      local matched = false
      local sc = byte(str, s)
      while true do
        local pc = byte(pat, p)
        if pc == 92 and pl >= 2 then -- '\\'
          p, pl = p + 1, pl - 1
          if byte(pat, p) == sc then matched = true end
        elseif pc == 93 then -- ']'
          break
        elseif pl == 0 then
          p, pl = p - 1, pl + 1
          break
        elseif pl >= 3 and byte(pat, p + 1) == 45 then -- a range 'a-z'
          local lo, hi = pc, byte(pat, p + 2)
          if lo > hi then lo, hi = hi, lo end
          p, pl = p + 2, pl - 2
          if sc >= lo and sc <= hi then matched = true end
        elseif pc == sc then
          matched = true
        end
        p, pl = p + 1, pl - 1
      end
      if negate then matched = not matched end
      if not matched then return false end
      s, sl = s + 1, sl - 1
    else
      if c == 92 and pl >= 2 then p, pl = p + 1, pl - 1 end
      if byte(pat, p) ~= byte(str, s) then return false end
      s, sl = s + 1, sl - 1
    end
    p, pl = p + 1, pl - 1
    if sl == 0 then
      while byte(pat, p) == 42 do
        p, pl = p + 1, pl - 1
      end
      break
    end
  end
  return pl == 0 and sl == 0
end

local function glob_match(pattern, s)
  return match_impl(pattern, 1, #pattern, s, 1, #s, { skip = false })
end
M._glob_match = glob_match

----------------------------------------------------------------------------
-- The fake

local Fake = {}
Fake.__index = Fake

-- opts.clock: seconds since the epoch (default: the wall clock).
-- opts.stream_node_max_entries / stream_node_max_bytes: the server settings
-- that shape approximate trimming (defaults 100 and 4096, as in Redis).
function M.new(opts)
  opts = opts or {}
  return setmetatable({
    db = {},
    clock = opts.clock or wall_clock,
    node_max_entries = opts.stream_node_max_entries or 100,
    node_max_bytes = opts.stream_node_max_bytes or 4096,
  }, Fake)
end

-- Milliseconds since the epoch, as an int64. The clock is first rounded to
-- microseconds, so that 1000.001 s is 1000001 ms despite binary fractions.
function Fake:now_ms()
  local us = floor(self.clock() * 1e6 + 0.5)
  return I64(floor(us / 1000))
end

-- The key's entry { kind =, value =, expire = int64 ms or nil }, or nil. An
-- entry past its deadline is removed first (Redis expires keys lazily too,
-- and counts a key as expired once the clock is strictly past it).
function Fake:lookup(key)
  local e = self.db[key]
  if e and e.expire and self:now_ms() > e.expire then
    self.db[key] = nil
    return nil
  end
  return e
end

-- lookup + checkType: entry (or nil when missing), or false, WRONGTYPE.
function Fake:typed(key, kind)
  local e = self:lookup(key)
  if e and e.kind ~= kind then return false, WRONGTYPE end
  return e
end

function Fake:create(key, kind, value)
  local e = { kind = kind, value = value }
  self.db[key] = e
  return e
end

-- Containers that became empty disappear, as in Redis.
function Fake:drop_if_empty(key, e, n)
  if n == 0 then self.db[key] = nil end
end

local C = {} -- command name -> function(self, argv, n) returning reply, err
local ARITY = {}

local function command(name, arity, fn)
  C[name] = fn
  ARITY[name] = arity
end

----------------------------------------------------------------------------
-- Strings

local function string_value(self, key)
  local e, err = self:typed(key, "string")
  if e == false then return false, err end
  return e and e.value
end

-- Expiry argument of SET/SETEX/PSETEX (getExpireMillisecondsOrReply).
local function expire_ms(self, arg, relative, seconds, cmd)
  local ms = string2ll(arg)
  if ms == nil then return nil, NOT_INTEGER end
  local bad = format("ERR invalid expire time in '%s' command", cmd)
  if ms <= 0 or (seconds and ms > LLONG_MAX / 1000) then return nil, bad end
  if seconds then ms = ms * 1000 end
  if relative then
    local now = self:now_ms()
    if ms > LLONG_MAX - now then return nil, bad end
    ms = ms + now
  end
  return ms
end

-- SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL], and the
-- shared body of SETNX/SETEX/PSETEX (t.cmd names the command in errors).
local function set_generic(self, key, value, t)
  local when
  if t.expire then
    local err
    when, err = expire_ms(self, t.expire, t.relative, t.seconds, t.cmd)
    if when == nil then return nil, err end
  end
  local old
  if t.get then
    local v, err = string_value(self, key)
    if v == false then return nil, err end
    old = v
  end
  local found = self:lookup(key) ~= nil
  if (t.nx and found) or (t.xx and not found) then
    if t.get then return old end
    return t.abort
  end
  local prev = self.db[key]
  local e = self:create(key, "string", value)
  if t.keepttl and prev then e.expire = prev.expire end
  if when then e.expire = when end
  if t.get then return old end
  return t.ok or "OK"
end

command("set", -3, function(self, argv, n)
  local t = { cmd = "set" }
  local j = 4
  while j <= n do
    local opt = lower(argv[j])
    local nxt = argv[j + 1]
    local ttl_set = t.ex or t.px or t.exat or t.pxat
    if opt == "nx" and not t.xx then
      t.nx = true
    elseif opt == "xx" and not t.nx then
      t.xx = true
    elseif opt == "get" then
      t.get = true
    elseif opt == "keepttl" and not ttl_set then
      t.keepttl = true
    elseif opt == "ex" and not (t.keepttl or t.exat or t.px or t.pxat) and nxt then
      t.ex, t.expire, t.relative, t.seconds = true, nxt, true, true
      j = j + 1
    elseif opt == "px" and not (t.keepttl or t.ex or t.exat or t.pxat) and nxt then
      t.px, t.expire, t.relative, t.seconds = true, nxt, true, false
      j = j + 1
    elseif opt == "exat" and not (t.keepttl or t.ex or t.px or t.pxat) and nxt then
      t.exat, t.expire, t.relative, t.seconds = true, nxt, false, true
      j = j + 1
    elseif opt == "pxat" and not (t.keepttl or t.ex or t.exat or t.px) and nxt then
      t.pxat, t.expire, t.relative, t.seconds = true, nxt, false, false
      j = j + 1
    else
      return nil, SYNTAX
    end
    j = j + 1
  end
  return set_generic(self, argv[2], argv[3], t)
end)

command("setnx", 3, function(self, argv)
  return set_generic(self, argv[2], argv[3], { cmd = "setnx", nx = true, ok = 1, abort = 0 })
end)

command("setex", 4, function(self, argv)
  return set_generic(self, argv[2], argv[4],
    { cmd = "setex", expire = argv[3], relative = true, seconds = true })
end)

command("psetex", 4, function(self, argv)
  return set_generic(self, argv[2], argv[4],
    { cmd = "psetex", expire = argv[3], relative = true, seconds = false })
end)

command("get", 2, function(self, argv)
  local v, err = string_value(self, argv[2])
  if v == false then return nil, err end
  return v
end)

command("getdel", 2, function(self, argv)
  local v, err = string_value(self, argv[2])
  if v == false then return nil, err end
  if v ~= nil then self.db[argv[2]] = nil end
  return v
end)

command("mget", -2, function(self, argv, n)
  local out = {}
  for i = 2, n do
    local e = self:lookup(argv[i])
    out[i - 1] = (e and e.kind == "string") and e.value or false
  end
  return out
end)

command("mset", -3, function(self, argv, n)
  if n % 2 == 0 then return nil, arity_error("mset") end
  for i = 2, n, 2 do self:create(argv[i], "string", argv[i + 1]) end
  return "OK"
end)

command("msetnx", -3, function(self, argv, n)
  if n % 2 == 0 then return nil, arity_error("msetnx") end
  for i = 2, n, 2 do
    if self:lookup(argv[i]) then return 0 end
  end
  for i = 2, n, 2 do self:create(argv[i], "string", argv[i + 1]) end
  return 1
end)

command("append", 3, function(self, argv)
  local e, err = self:typed(argv[2], "string")
  if e == false then return nil, err end
  if e == nil then
    self:create(argv[2], "string", argv[3])
    return #argv[3]
  end
  e.value = e.value .. argv[3]
  return #e.value
end)

command("strlen", 2, function(self, argv)
  local v, err = string_value(self, argv[2])
  if v == false then return nil, err end
  return v and #v or 0
end)

-- INCR and friends (incrDecrCommand).
local function incr_by(self, key, incr)
  local e, err = self:typed(key, "string")
  if e == false then return nil, err end
  local old = I64(0)
  if e then
    old = string2ll(e.value)
    if old == nil then return nil, NOT_INTEGER end
  end
  if (incr < 0 and old < 0 and incr < LLONG_MIN - old) or (incr > 0 and old > 0 and incr > LLONG_MAX - old) then
    return nil, OVERFLOW
  end
  local v = old + incr
  if e then
    e.value = int_string(v) -- an existing key keeps its time to live
  else
    self:create(key, "string", int_string(v))
  end
  return int_reply(v)
end

command("incr", 2, function(self, argv) return incr_by(self, argv[2], I64(1)) end)
command("decr", 2, function(self, argv) return incr_by(self, argv[2], I64(-1)) end)

command("incrby", 3, function(self, argv)
  local incr = string2ll(argv[3])
  if incr == nil then return nil, NOT_INTEGER end
  return incr_by(self, argv[2], incr)
end)

command("decrby", 3, function(self, argv)
  local decr = string2ll(argv[3])
  if decr == nil then return nil, NOT_INTEGER end
  if decr == LLONG_MIN then return nil, "ERR decrement would overflow" end
  return incr_by(self, argv[2], -decr)
end)

----------------------------------------------------------------------------
-- Keys and expiry

local function count_existing(self, argv, n, delete)
  local count = 0
  for i = 2, n do
    if self:lookup(argv[i]) then
      count = count + 1
      if delete then self.db[argv[i]] = nil end
    end
  end
  return count
end

command("del", -2, function(self, argv, n) return count_existing(self, argv, n, true) end)
command("unlink", -2, function(self, argv, n) return count_existing(self, argv, n, true) end)
command("exists", -2, function(self, argv, n) return count_existing(self, argv, n, false) end)

command("type", 2, function(self, argv)
  local e = self:lookup(argv[2])
  return e and e.kind or "none"
end)

-- Every live key, sorted (Redis returns them in hash-table order).
function Fake:keys()
  local out = {}
  for key in pairs(self.db) do
    if self:lookup(key) then out[#out + 1] = key end
  end
  sort(out)
  return out
end

command("keys", 2, function(self, argv)
  local out = {}
  local pattern = argv[2]
  local all = pattern == "*"
  for _, key in ipairs(self:keys()) do
    if all or glob_match(pattern, key) then out[#out + 1] = key end
  end
  return out
end)

command("dbsize", 1, function(self)
  return #self:keys()
end)

local function flush(self, argv, n)
  if n > 2 then return nil, SYNTAX end
  if n == 2 then
    local opt = lower(argv[2])
    if opt ~= "async" and opt ~= "sync" then return nil, SYNTAX end
  end
  self.db = {}
  return "OK"
end

command("flushdb", -1, flush)
command("flushall", -1, flush)

command("ping", -1, function(self, argv, n)
  if n > 2 then return nil, arity_error("ping") end
  if n == 2 then return argv[2] end
  return "PONG"
end)

command("echo", 2, function(self, argv) return argv[2] end)

-- EXPIRE key seconds [NX|XX|GT|LT] and friends (expireGenericCommand).
-- base: "now" or 0; seconds: the unit of the argument.
local function expire_generic(name, relative, seconds)
  return function(self, argv, n)
    local nx, xx, gt, lt = false, false, false, false
    for j = 4, n do
      local opt = lower(argv[j])
      if opt == "nx" then nx = true
      elseif opt == "xx" then xx = true
      elseif opt == "gt" then gt = true
      elseif opt == "lt" then lt = true
      else return nil, "ERR Unsupported option " .. argv[j] end
    end
    if (nx and xx) or (nx and gt) or (nx and lt) then
      return nil, "ERR NX and XX, GT or LT options at the same time are not compatible"
    end
    if gt and lt then return nil, "ERR GT and LT options at the same time are not compatible" end
    local when = string2ll(argv[3])
    if when == nil then return nil, NOT_INTEGER end
    local bad = format("ERR invalid expire time in '%s' command", name)
    if seconds then
      if when > LLONG_MAX / 1000 or when < LLONG_MIN / 1000 then return nil, bad end
      when = when * 1000
    end
    local now = self:now_ms()
    local base = relative and now or I64(0)
    if when > LLONG_MAX - base then return nil, bad end
    when = when + base
    local e = self:lookup(argv[2])
    if not e then return 0 end
    local current = e.expire
    if nx and current ~= nil then return 0 end
    if xx and current == nil then return 0 end
    if gt and (current == nil or when <= current) then return 0 end
    if lt and current ~= nil and when >= current then return 0 end
    if when <= now then
      self.db[argv[2]] = nil
      return 1
    end
    e.expire = when
    return 1
  end
end

command("expire", -3, expire_generic("expire", true, true))
command("pexpire", -3, expire_generic("pexpire", true, false))
command("expireat", -3, expire_generic("expireat", false, true))
command("pexpireat", -3, expire_generic("pexpireat", false, false))

-- TTL and friends (ttlGenericCommand).
local function ttl_generic(ms, absolute)
  return function(self, argv)
    local e = self:lookup(argv[2])
    if not e then return -2 end
    if e.expire == nil then return -1 end
    local ttl = absolute and e.expire or e.expire - self:now_ms()
    if ttl < 0 then ttl = I64(0) end
    if ms then return int_reply(ttl) end
    return int_reply((ttl + 500) / 1000)
  end
end

command("ttl", 2, ttl_generic(false, false))
command("pttl", 2, ttl_generic(true, false))
command("expiretime", 2, ttl_generic(false, true))
command("pexpiretime", 2, ttl_generic(true, true))

command("persist", 2, function(self, argv)
  local e = self:lookup(argv[2])
  if not e or e.expire == nil then return 0 end
  e.expire = nil
  return 1
end)

----------------------------------------------------------------------------
-- Lists: an array, head at index 1

local function push(left, only_existing)
  return function(self, argv, n)
    local e, err = self:typed(argv[2], "list")
    if e == false then return nil, err end
    if e == nil then
      if only_existing then return 0 end
      e = self:create(argv[2], "list", {})
    end
    local list = e.value
    for i = 3, n do
      if left then table.insert(list, 1, argv[i]) else list[#list + 1] = argv[i] end
    end
    return #list
  end
end

command("lpush", -3, push(true, false))
command("rpush", -3, push(false, false))
command("lpushx", -3, push(true, true))
command("rpushx", -3, push(false, true))

local function pop(left)
  return function(self, argv, n)
    if n > 3 then return nil, arity_error(left and "lpop" or "rpop") end
    local has_count = n == 3
    local count = 0
    if has_count then
      count = string2ll(argv[3])
      if count == nil or count < 0 then return nil, "ERR value is out of range, must be positive" end
    end
    local e, err = self:typed(argv[2], "list")
    if e == false then return nil, err end
    if e == nil then return nil end
    if has_count and count == 0 then return {} end
    local list = e.value
    local take = has_count and math.min(tonumber(count), #list) or 1
    local out = {}
    for i = 1, take do
      out[i] = left and table.remove(list, 1) or table.remove(list)
    end
    self:drop_if_empty(argv[2], e, #list)
    if has_count then return out end
    return out[1]
  end
end

command("lpop", -2, pop(true))
command("rpop", -2, pop(false))

-- Redis' index conventions: start/end may be negative (from the tail).
-- Returns the 1-based inclusive range, or nil when empty.
local function clamp_range(len, start, stop)
  if start < 0 then start = len + start end
  if stop < 0 then stop = len + stop end
  if start < 0 then start = 0 end
  if start > stop or start >= len then return nil end
  if stop >= len then stop = len - 1 end
  return start + 1, stop + 1
end

local function long_arg(s)
  local v = string2ll(s)
  if v == nil then return nil end
  return tonumber(v)
end

command("lrange", 4, function(self, argv)
  local start, stop = long_arg(argv[3]), long_arg(argv[4])
  if start == nil or stop == nil then return nil, NOT_INTEGER end
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return {} end
  local list = e.value
  local from, to = clamp_range(#list, start, stop)
  local out = {}
  if from then
    for i = from, to do out[#out + 1] = list[i] end
  end
  return out
end)

command("llen", 2, function(self, argv)
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  return e and #e.value or 0
end)

command("lindex", 3, function(self, argv)
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return nil end
  local index = long_arg(argv[3])
  if index == nil then return nil, NOT_INTEGER end
  local list = e.value
  if index < 0 then index = #list + index end
  return list[index + 1]
end)

command("lset", 4, function(self, argv)
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return nil, "ERR no such key" end
  local index = long_arg(argv[3])
  if index == nil then return nil, NOT_INTEGER end
  local list = e.value
  if index < 0 then index = #list + index end
  if index < 0 or index >= #list then return nil, "ERR index out of range" end
  list[index + 1] = argv[4]
  return "OK"
end)

command("lrem", 4, function(self, argv)
  local count = long_arg(argv[3])
  if count == nil then return nil, NOT_INTEGER end
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return 0 end
  local list, value = e.value, argv[4]
  local limit = count == 0 and math.huge or math.abs(count)
  local removed = 0
  if count >= 0 then
    local i = 1
    while i <= #list and removed < limit do
      if list[i] == value then
        table.remove(list, i)
        removed = removed + 1
      else
        i = i + 1
      end
    end
  else
    local i = #list
    while i >= 1 and removed < limit do
      if list[i] == value then
        table.remove(list, i)
        removed = removed + 1
      end
      i = i - 1
    end
  end
  self:drop_if_empty(argv[2], e, #list)
  return removed
end)

command("ltrim", 4, function(self, argv)
  local start, stop = long_arg(argv[3]), long_arg(argv[4])
  if start == nil or stop == nil then return nil, NOT_INTEGER end
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return "OK" end
  local list = e.value
  local from, to = clamp_range(#list, start, stop)
  local kept = {}
  if from then
    for i = from, to do kept[#kept + 1] = list[i] end
  end
  e.value = kept
  self:drop_if_empty(argv[2], e, #kept)
  return "OK"
end)

----------------------------------------------------------------------------
-- Hashes: { fields = { f1, f2, ... } (insertion order), map = { f = v } }

local function hash_of(self, key, create)
  local e, err = self:typed(key, "hash")
  if e == false then return false, err end
  if e == nil and create then e = self:create(key, "hash", { fields = {}, map = {} }) end
  return e
end

-- Sets field; returns true when it is new.
local function hash_set(h, field, value)
  local new = h.map[field] == nil
  if new then h.fields[#h.fields + 1] = field end
  h.map[field] = value
  return new
end

local function hash_del(h, field)
  if h.map[field] == nil then return false end
  h.map[field] = nil
  local fields = h.fields
  for i = 1, #fields do
    if fields[i] == field then
      table.remove(fields, i)
      break
    end
  end
  return true
end

local function hset(reply_count)
  return function(self, argv, n)
    if n % 2 == 1 then return nil, arity_error(reply_count and "hset" or "hmset") end
    local e, err = hash_of(self, argv[2], true)
    if e == false then return nil, err end
    local created = 0
    for i = 3, n, 2 do
      if hash_set(e.value, argv[i], argv[i + 1]) then created = created + 1 end
    end
    if reply_count then return created end
    return "OK"
  end
end

command("hset", -4, hset(true))
command("hmset", -4, hset(false))

command("hsetnx", 4, function(self, argv)
  local e, err = hash_of(self, argv[2], true)
  if e == false then return nil, err end
  if e.value.map[argv[3]] ~= nil then return 0 end
  hash_set(e.value, argv[3], argv[4])
  return 1
end)

command("hget", 3, function(self, argv)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  return e and e.value.map[argv[3]]
end)

command("hmget", -3, function(self, argv, n)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  local out = {}
  for i = 3, n do
    out[i - 2] = e and e.value.map[argv[i]] or false
  end
  return out
end)

local function hash_list(keys, values)
  return function(self, argv)
    local e, err = hash_of(self, argv[2])
    if e == false then return nil, err end
    local out = {}
    if e then
      local h = e.value
      for _, f in ipairs(h.fields) do
        if keys then out[#out + 1] = f end
        if values then out[#out + 1] = h.map[f] end
      end
    end
    return out
  end
end

command("hgetall", 2, hash_list(true, true))
command("hkeys", 2, hash_list(true, false))
command("hvals", 2, hash_list(false, true))

command("hdel", -3, function(self, argv, n)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  local removed = 0
  for i = 3, n do
    if hash_del(e.value, argv[i]) then removed = removed + 1 end
  end
  self:drop_if_empty(argv[2], e, #e.value.fields)
  return removed
end)

command("hexists", 3, function(self, argv)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  return (e and e.value.map[argv[3]] ~= nil) and 1 or 0
end)

command("hlen", 2, function(self, argv)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  return e and #e.value.fields or 0
end)

command("hincrby", 4, function(self, argv)
  local incr = string2ll(argv[4])
  if incr == nil then return nil, NOT_INTEGER end
  local e, err = hash_of(self, argv[2], true)
  if e == false then return nil, err end
  local h = e.value
  local old = I64(0)
  local current = h.map[argv[3]]
  if current ~= nil then
    old = string2ll(current)
    if old == nil then return nil, "ERR hash value is not an integer" end
  end
  if (incr < 0 and old < 0 and incr < LLONG_MIN - old) or (incr > 0 and old > 0 and incr > LLONG_MAX - old) then
    return nil, OVERFLOW
  end
  local v = old + incr
  hash_set(h, argv[3], int_string(v))
  return int_reply(v)
end)

----------------------------------------------------------------------------
-- Sets: { members = { m1, ... } (insertion order), map = { m = true },
-- intset = bool }. While every member is an integer (and there are at most
-- 512), Redis keeps an intset and lists it in numeric order.

local INTSET_MAX = 512

local function set_of(self, key)
  local e, err = self:typed(key, "set")
  if e == false then return false, err end
  return e
end

command("sadd", -3, function(self, argv, n)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then
    e = self:create(argv[2], "set", { members = {}, map = {}, intset = string2ll(argv[3]) ~= nil })
  end
  local s = e.value
  local added = 0
  for i = 3, n do
    local m = argv[i]
    if not s.map[m] then
      s.map[m] = true
      s.members[#s.members + 1] = m
      added = added + 1
      if s.intset and (string2ll(m) == nil or #s.members > INTSET_MAX) then s.intset = false end
    end
  end
  return added
end)

command("srem", -3, function(self, argv, n)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  local s = e.value
  local removed = 0
  for i = 3, n do
    local m = argv[i]
    if s.map[m] then
      s.map[m] = nil
      for k = 1, #s.members do
        if s.members[k] == m then
          table.remove(s.members, k)
          break
        end
      end
      removed = removed + 1
    end
  end
  self:drop_if_empty(argv[2], e, #s.members)
  return removed
end)

command("smembers", 2, function(self, argv)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return {} end
  local s = e.value
  local out = {}
  for i, m in ipairs(s.members) do out[i] = m end
  if s.intset then
    sort(out, function(a, b) return string2ll(a) < string2ll(b) end)
  end
  return out
end)

command("sismember", 3, function(self, argv)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  return (e and e.value.map[argv[3]]) and 1 or 0
end)

command("smismember", -3, function(self, argv, n)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  local out = {}
  for i = 3, n do
    out[i - 2] = (e and e.value.map[argv[i]]) and 1 or 0
  end
  return out
end)

command("scard", 2, function(self, argv)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  return e and #e.value.members or 0
end)

----------------------------------------------------------------------------
-- Streams
--
-- A stream is a list of nodes, as Redis' radix tree of listpacks:
--   stream = { nodes = { node, ... }, length, last = id }
--   node   = { master = id, mfields = { f1, ... }, entries = { entry, ... },
--              valid = n, deleted = n, fixed = bytes }
--   entry  = { id = id, fields = { f1, v1, ... }, deleted = bool }
--   id     = { ms = uint64, seq = uint64 }
-- node.fixed is the listpack size of everything but the header, the end
-- byte and the two counters (which change in place), so that the node's
-- total (Redis' lpBytes) is cheap to recompute.

local function id_new(ms, seq) return { ms = U64(ms), seq = U64(seq) } end

local function id_cmp(a, b)
  if a.ms ~= b.ms then return a.ms < b.ms and -1 or 1 end
  if a.seq ~= b.seq then return a.seq < b.seq and -1 or 1 end
  return 0
end

local function id_string(id)
  return int_string(id.ms) .. "-" .. int_string(id.seq)
end

local function id_incr(id)
  if id.seq == U64_MAX then
    if id.ms == U64_MAX then return nil end
    return id_new(id.ms + 1, 0)
  end
  return id_new(id.ms, id.seq + 1)
end

local function id_decr(id)
  if id.seq == 0 then
    if id.ms == 0 then return nil end
    return id_new(id.ms - 1, U64_MAX)
  end
  return id_new(id.ms, id.seq - 1)
end

-- streamGenericParseIDOrReply: returns id, seq_given; or nil.
-- strict: "-" and "+" are not ids. auto_seq: "<ms>-*" is allowed (XADD).
local function parse_id(s, missing_seq, strict, auto_seq)
  if #s > 127 then return nil end
  if strict and (s == "-" or s == "+") then return nil end
  if s == "-" then return id_new(0, 0), true end
  if s == "+" then return id_new(U64_MAX, U64_MAX), true end
  local dash = s:find("-", 1, true)
  local ms_part = dash and sub(s, 1, dash - 1) or s
  local ms = string2ull(ms_part)
  if ms == nil then return nil end
  if not dash then return { ms = ms, seq = U64(missing_seq) }, true end
  local seq_part = sub(s, dash + 1)
  if auto_seq and seq_part == "*" then return { ms = ms, seq = U64(0) }, false end
  local seq = string2ull(seq_part)
  if seq == nil then return nil end
  return { ms = ms, seq = seq }, true
end

-- Listpack element sizes (listpack.c): encoding + data + back-length.
local function int_element_size(v)
  local enc
  if v >= 0 and v <= 127 then enc = 1
  elseif v >= -4096 and v <= 4095 then enc = 2
  elseif v >= -32768 and v <= 32767 then enc = 3
  elseif v >= -8388608 and v <= 8388607 then enc = 4
  elseif v >= -2147483648LL and v <= 2147483647LL then enc = 5
  else enc = 9 end
  return enc + 1
end

local function backlen_size(l)
  if l <= 127 then return 1 end
  if l < 16383 then return 2 end
  if l < 2097151 then return 3 end
  if l < 268435455 then return 4 end
  return 5
end

local function string_element_size(s)
  local v = string2ll(s)
  if v ~= nil then return int_element_size(v) end
  local len = #s
  local enc
  if len < 64 then enc = 1 + len
  elseif len < 4096 then enc = 2 + len
  else enc = 5 + len end
  return enc + backlen_size(enc)
end

local function node_bytes(node)
  -- 6-byte header + end byte + the valid and deleted counters.
  return 7 + int_element_size(node.valid) + int_element_size(node.deleted) + node.fixed
end

M._node_bytes = node_bytes -- for the fake's own spec

local function same_fields(node, fields)
  local mfields = node.mfields
  if #fields ~= 2 * #mfields then return false end
  for i = 1, #mfields do
    if fields[2 * i - 1] ~= mfields[i] then return false end
  end
  return true
end

-- The listpack bytes of one entry (flags, ms and seq deltas, [field count,
-- fields,] values, lp-count).
local function entry_size(node, id, fields, same)
  local nf = #fields / 2
  local size = int_element_size(0) -- flags (0..3: one byte)
    + int_element_size(ffi.cast(I64, id.ms - node.master.ms))
    + int_element_size(ffi.cast(I64, id.seq - node.master.seq))
  for i = 1, #fields, 2 do
    if not same then size = size + string_element_size(fields[i]) end
    size = size + string_element_size(fields[i + 1])
  end
  local lp_count = nf + 3
  if not same then
    size = size + int_element_size(nf)
    lp_count = lp_count + nf + 1
  end
  return size + int_element_size(lp_count)
end

-- streamAppendItem: add fields (flat array) under id to the tail node, or to
-- a new node when the tail one is full.
function Fake:stream_append(st, id, fields)
  local node = st.nodes[#st.nodes]
  if node then
    local total = 0
    for i = 1, #fields do total = total + #fields[i] end
    if node_bytes(node) + total >= self.node_max_bytes
        or node.valid + node.deleted >= self.node_max_entries then
      node = nil
    end
  end
  local same
  if node == nil then
    local mfields = {}
    for i = 1, #fields, 2 do mfields[#mfields + 1] = fields[i] end
    node = { master = id, mfields = mfields, entries = {}, valid = 0, deleted = 0 }
    local fixed = int_element_size(#mfields) + int_element_size(0) -- field count, terminator
    for _, f in ipairs(mfields) do fixed = fixed + string_element_size(f) end
    node.fixed = fixed
    st.nodes[#st.nodes + 1] = node
    same = true
  else
    same = same_fields(node, fields)
  end
  node.fixed = node.fixed + entry_size(node, id, fields, same)
  node.valid = node.valid + 1
  node.entries[#node.entries + 1] = { id = id, fields = fields }
  st.length = st.length + 1
  st.last = id
end

-- streamTrim: by MAXLEN (t.maxlen) or MINID (t.minid); t.approx trims
-- whole nodes only; t.limit caps the entries removed (0: no cap).
local function stream_trim(st, t)
  local deleted = 0
  while st.nodes[1] do
    if t.maxlen and st.length <= t.maxlen then break end
    local node = st.nodes[1]
    local entries = node.valid
    if t.limit ~= 0 and deleted + entries > t.limit then break end
    local remove
    if t.maxlen then
      remove = st.length - entries >= t.maxlen
    else
      local last = node.entries[#node.entries].id
      remove = id_cmp(last, t.minid) < 0
    end
    if remove then
      table.remove(st.nodes, 1)
      st.length = st.length - entries
      deleted = deleted + entries
    else
      if t.approx then break end
      local from_node = 0
      for _, entry in ipairs(node.entries) do
        local stop
        if t.maxlen then stop = st.length <= t.maxlen else stop = id_cmp(entry.id, t.minid) >= 0 end
        if stop then break end
        if not entry.deleted then
          entry.deleted = true
          from_node = from_node + 1
          st.length = st.length - 1
        end
      end
      deleted = deleted + from_node
      node.valid = node.valid - from_node
      node.deleted = node.deleted + from_node
      break
    end
  end
  return deleted
end

-- streamParseAddOrTrimArgsOrReply: options from argv[3]. Returns the index
-- of the id (XADD) or of the first argument not consumed, and the options;
-- or nil, err.
local function parse_add_or_trim(argv, n, xadd)
  local t = { limit = nil, approx = false }
  local limit_given = false
  local i = 3
  while i <= n do
    local more = n - i
    local opt = argv[i]
    local lopt = lower(opt)
    if xadd and opt == "*" then
      break
    elseif lopt == "maxlen" and more > 0 then
      if t.minid then return nil, "ERR syntax error, MAXLEN and MINID options at the same time are not compatible" end
      t.approx = false
      local nxt = argv[i + 1]
      if more >= 2 and nxt == "~" then
        t.approx = true
        i = i + 1
      elseif more >= 2 and nxt == "=" then
        i = i + 1
      end
      local maxlen = string2ll(argv[i + 1])
      if maxlen == nil then return nil, NOT_INTEGER end
      if maxlen < 0 then return nil, "ERR The MAXLEN argument must be >= 0." end
      t.maxlen = tonumber(maxlen)
      i = i + 1
    elseif lopt == "minid" and more > 0 then
      if t.maxlen then return nil, "ERR syntax error, MAXLEN and MINID options at the same time are not compatible" end
      t.approx = false
      local nxt = argv[i + 1]
      if more >= 2 and nxt == "~" then
        t.approx = true
        i = i + 1
      elseif more >= 2 and nxt == "=" then
        i = i + 1
      end
      local id = parse_id(argv[i + 1], 0, true, false)
      if id == nil then return nil, BAD_ID end
      t.minid = id
      i = i + 1
    elseif lopt == "limit" and more > 0 then
      local limit = string2ll(argv[i + 1])
      if limit == nil then return nil, NOT_INTEGER end
      if limit < 0 then return nil, "ERR The LIMIT argument must be >= 0." end
      t.limit = tonumber(limit)
      limit_given = true
      i = i + 1
    elseif xadd and lopt == "nomkstream" then
      t.nomkstream = true
    elseif xadd then
      local id, seq_given = parse_id(opt, 0, true, true)
      if id == nil then return nil, BAD_ID end
      t.id, t.seq_given = id, seq_given
      break
    else
      return nil, SYNTAX
    end
    i = i + 1
  end
  local strategy = t.maxlen or t.minid
  if limit_given and not strategy then
    return nil, "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
  end
  if not xadd and not strategy then
    return nil, "ERR syntax error, XTRIM must be called with a trimming strategy"
  end
  if limit_given then
    if not t.approx then return nil, "ERR syntax error, LIMIT cannot be used without the special ~ option" end
  else
    t.limit = t.approx and 100 * 100 or 0 -- 100 * stream-node-max-entries
  end
  return i, t
end

local function stream_of(self, key)
  local e, err = self:typed(key, "stream")
  if e == false then return false, err end
  return e
end

local function new_stream()
  return { nodes = {}, length = 0, last = id_new(0, 0) }
end

command("xadd", -5, function(self, argv, n)
  local idpos, t = parse_add_or_trim(argv, n, true)
  if idpos == nil then return nil, t end
  local nfields = n - idpos
  if nfields < 2 or nfields % 2 == 1 then return nil, arity_error("xadd") end
  if t.id and t.seq_given and t.id.ms == 0 and t.id.seq == 0 then
    return nil, "ERR The ID specified in XADD must be greater than 0-0"
  end
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then
    if t.nomkstream then return nil end
    e = self:create(argv[2], "stream", new_stream())
  end
  local st = e.value
  if st.last.ms == U64_MAX and st.last.seq == U64_MAX then
    return nil, "ERR The stream has exhausted the last possible ID, unable to add more items"
  end
  local id
  local too_small = "ERR The ID specified in XADD is equal or smaller than the target stream top item"
  if t.id then
    if t.seq_given then
      id = t.id
    elseif st.last.ms == t.id.ms then
      if st.last.seq == U64_MAX then return nil, too_small end
      id = id_new(st.last.ms, st.last.seq + 1)
    else
      id = t.id
    end
  else
    local now = ffi.cast(U64, self:now_ms())
    if now > st.last.ms then id = id_new(now, 0) else id = id_incr(st.last) end
  end
  if id_cmp(id, st.last) <= 0 then return nil, too_small end
  local fields = {}
  for i = idpos + 1, n do fields[#fields + 1] = argv[i] end
  self:stream_append(st, id, fields)
  if t.maxlen or t.minid then stream_trim(st, t) end
  return id_string(id)
end)

command("xtrim", -4, function(self, argv, n)
  local _, t = parse_add_or_trim(argv, n, false)
  if _ == nil then return nil, t end
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  return stream_trim(e.value, t)
end)

command("xlen", 2, function(self, argv)
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  return e and e.value.length or 0
end)

-- streamParseIntervalIDOrReply: an id, "-", "+" or "(id" (exclusive).
local function parse_interval(s, missing_seq)
  if #s > 1 and byte(s, 1) == 40 then -- '('
    local id = parse_id(sub(s, 2), missing_seq, true, false)
    return id, true
  end
  return parse_id(s, missing_seq, false, false), false
end

local function xrange(rev)
  return function(self, argv, n)
    local start_arg, end_arg = argv[3], argv[4]
    if rev then start_arg, end_arg = end_arg, start_arg end
    local start, start_ex = parse_interval(start_arg, 0)
    if start == nil then return nil, BAD_ID end
    if start_ex then
      start = id_incr(start)
      if start == nil then return nil, "ERR invalid start ID for the interval" end
    end
    local stop, stop_ex = parse_interval(end_arg, U64_MAX)
    if stop == nil then return nil, BAD_ID end
    if stop_ex then
      stop = id_decr(stop)
      if stop == nil then return nil, "ERR invalid end ID for the interval" end
    end
    local count = -1
    local j = 5
    while j <= n do
      if lower(argv[j]) == "count" and j < n then
        local c = string2ll(argv[j + 1])
        if c == nil then return nil, NOT_INTEGER end
        count = c < 0 and 0 or tonumber(c)
        j = j + 1
      else
        return nil, SYNTAX
      end
      j = j + 1
    end
    local e, err = stream_of(self, argv[2])
    if e == false then return nil, err end
    if e == nil then return {} end
    if count == 0 then return nil end
    local out = {}
    local nodes = e.value.nodes
    local function emit(entry)
      if entry.deleted then return true end
      if id_cmp(entry.id, start) < 0 or id_cmp(entry.id, stop) > 0 then return true end
      local fields = {}
      for i, v in ipairs(entry.fields) do fields[i] = v end
      out[#out + 1] = { id_string(entry.id), fields }
      return count < 0 or #out < count
    end
    if rev then
      for k = #nodes, 1, -1 do
        local entries = nodes[k].entries
        for m = #entries, 1, -1 do
          if not emit(entries[m]) then return out end
        end
      end
    else
      for k = 1, #nodes do
        for _, entry in ipairs(nodes[k].entries) do
          if not emit(entry) then return out end
        end
      end
    end
    return out
  end
end

command("xrange", -4, xrange(false))
command("xrevrange", -4, xrange(true))

command("xdel", -3, function(self, argv, n)
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  local ids = {}
  for i = 3, n do
    local id = parse_id(argv[i], 0, true, false)
    if id == nil then return nil, BAD_ID end
    ids[#ids + 1] = id
  end
  local st = e.value
  local deleted = 0
  for _, id in ipairs(ids) do
    for k, node in ipairs(st.nodes) do
      local hit
      for _, entry in ipairs(node.entries) do
        if not entry.deleted and id_cmp(entry.id, id) == 0 then
          hit = entry
          break
        end
      end
      if hit then
        hit.deleted = true
        if node.valid == 1 then
          table.remove(st.nodes, k)
        else
          node.valid = node.valid - 1
          node.deleted = node.deleted + 1
        end
        st.length = st.length - 1
        deleted = deleted + 1
        break
      end
    end
  end
  return deleted
end)

----------------------------------------------------------------------------
-- Dispatch

-- Every top-level command of redis-server 7.0 (COMMAND LIST), to tell "not
-- implemented by the fake" from "unknown to Redis".
local KNOWN = {}
for name in ([[
acl append asking auth bgrewriteaof bgsave bitcount bitfield bitfield_ro bitop bitpos blmove blmpop
blpop brpop brpoplpush bzmpop bzpopmax bzpopmin client cluster command config copy dbsize debug decr
decrby del discard dump echo eval eval_ro evalsha evalsha_ro exec exists expire expireat expiretime
failover fcall fcall_ro flushall flushdb function geoadd geodist geohash geopos georadius
georadius_ro georadiusbymember georadiusbymember_ro geosearch geosearchstore get getbit getdel getex
getrange getset hdel hello hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget hmset
hrandfield hscan hset hsetnx hstrlen hvals incr incrby incrbyfloat info keys lastsave latency lcs
lindex linsert llen lmove lmpop lolwut lpop lpos lpush lpushx lrange lrem lset ltrim memory mget
migrate module monitor move mset msetnx multi object persist pexpire pexpireat pexpiretime pfadd
pfcount pfdebug pfmerge pfselftest ping psetex psubscribe psync pttl publish pubsub punsubscribe quit
randomkey readonly readwrite rename renamenx replconf replicaof reset restore restore-asking role
rpop rpoplpush rpush rpushx sadd save scan scard script sdiff sdiffstore select set setbit setex
setnx setrange shutdown sinter sintercard sinterstore sismember slaveof slowlog smembers smismember
smove sort sort_ro spop spublish srandmember srem sscan ssubscribe strlen subscribe substr sunion
sunionstore sunsubscribe swapdb sync time touch ttl type unlink unsubscribe unwatch wait watch xack
xadd xautoclaim xclaim xdel xgroup xinfo xlen xpending xrange xread xreadgroup xrevrange xsetid
xtrim zadd zcard zcount zdiff zdiffstore zincrby zinter zintercard zinterstore zlexcount zmpop
zmscore zpopmax zpopmin zrandmember zrange zrangebylex zrangebyscore zrangestore zrank zrem
zremrangebylex zremrangebyrank zremrangebyscore zrevrange zrevrangebylex zrevrangebyscore zrevrank
zscan zscore zunion zunionstore
]]):gmatch("%S+") do
  KNOWN[name] = true
end

-- Redis' reply to a command name it does not know.
local function unknown_command(argv, n)
  local args = ""
  for i = 2, n do
    if #args >= 128 then break end
    args = args .. "'" .. sub(argv[i], 1, 128 - #args) .. "' "
  end
  local msg = format("ERR unknown command '%s', with args beginning with: %s", sub(argv[1], 1, 128), args)
  return (msg:gsub("[\r\n]", " "))
end

-- Arguments as Redis receives them: strings; numbers formatted the way
-- rsghost.redis and rsghost.hiredis format them.
local function to_arg(v, i)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
    return format("%.17g", v)
  end
  error(format("rsghost.fakeredis: argument %d must be a string or a number, got %s", i, t), 3)
end

-- Run one command given as an array { name, arg, ... }. Returns reply, or
-- nil, err (an error reply, as a real server words it).
function Fake:command(argv)
  local n = #argv
  if n == 0 then error("rsghost.fakeredis: empty command", 2) end
  local args = {}
  for i = 1, n do args[i] = to_arg(argv[i], i) end
  local name = lower(args[1])
  local fn = C[name]
  if fn == nil then
    if KNOWN[name] then
      return nil, format("ERR rsghost.fakeredis does not implement '%s' (run the spec against a real "
        .. "redis-server: rsghost.testing.load(path, { redis = \"redis://...\" }))", name)
    end
    return nil, unknown_command(args, n)
  end
  local arity = ARITY[name]
  if (arity > 0 and n ~= arity) or n < -arity then return nil, arity_error(name) end
  return fn(self, args, n)
end

-- Like rsghost.hiredis: reply, or nil, err.
function Fake:pcall(...)
  return self:command({ ... })
end

-- Like rsghost.hiredis: the reply; raises the error reply's text.
function Fake:call(...)
  local n = select("#", ...)
  local argv = { ... }
  for i = 1, n do
    if argv[i] == nil then error(format("rsghost.fakeredis: argument %d is nil", i), 2) end
  end
  local reply, err = self:command(argv)
  if err ~= nil then error(err, 0) end
  return reply
end

-- Like rsghost.hiredis: replies of every command; an error reply becomes
-- { err = msg }, a nil reply false.
function Fake:pipeline(cmds)
  local out = {}
  for i = 1, #cmds do
    local reply, err = self:command(cmds[i])
    if err ~= nil then
      out[i] = { err = err }
    elseif reply == nil then
      out[i] = false
    else
      out[i] = reply
    end
  end
  return out
end

function Fake:close() end

-- Whether a command name is implemented (lower or upper case).
function M.implements(name)
  return C[lower(name)] ~= nil
end

return M
