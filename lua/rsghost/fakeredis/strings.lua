-- rsghost.fakeredis: strings (GET SET SETNX SETEX PSETEX GETDEL MGET MSET
-- MSETNX APPEND STRLEN INCR DECR INCRBY DECRBY), the commands on keys of any
-- type (DEL UNLINK EXISTS TYPE KEYS DBSIZE FLUSHDB FLUSHALL), expiry (EXPIRE
-- PEXPIRE EXPIREAT PEXPIREAT TTL PTTL EXPIRETIME PEXPIRETIME PERSIST), PING
-- and ECHO. A string is an entry { kind = "string", value = "bytes" }.

local util = require "rsghost.fakeredis.util"

local ipairs, format, lower = ipairs, string.format, string.lower

local I64, LLONG_MAX, LLONG_MIN = util.I64, util.LLONG_MAX, util.LLONG_MIN
local NOT_INTEGER, SYNTAX, OVERFLOW = util.NOT_INTEGER, util.SYNTAX, util.OVERFLOW
local arity_error, string2ll, int_string, int_reply = util.arity_error, util.string2ll, util.int_string, util.int_reply
local glob_match = util.glob_match

local M = {}
local command
M.commands, command = util.command_table()

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

return M
