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
-- XDEL XTRIM), transactions (MULTI EXEC DISCARD), PING ECHO. Any other Redis command answers
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
--
-- This file is the client object: the keyspace, expiry on the clock and
-- dispatch. The commands live one family a file in rsghost/fakeredis/
-- (strings.lua with keys and expiry, lists, hashes, sets, streams), and
-- what they share in rsghost/fakeredis/util.lua.

local ffi = require "ffi"
local util = require "rsghost.fakeredis.util"
local streams = require "rsghost.fakeredis.streams"
local FAMILIES = {
  require "rsghost.fakeredis.strings",
  require "rsghost.fakeredis.lists",
  require "rsghost.fakeredis.hashes",
  require "rsghost.fakeredis.sets",
  streams,
}

local type, select, setmetatable, error, pairs, ipairs = type, select, setmetatable, error, pairs, ipairs
local format, floor, sort = string.format, math.floor, table.sort
local sub, lower = string.sub, string.lower

local I64 = util.I64
local WRONGTYPE, arity_error = util.WRONGTYPE, util.arity_error

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
M._string2ll = util.string2ll
M._glob_match = util.glob_match
M._node_bytes = streams.node_bytes -- for the fake's own spec

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

-- Every live key, sorted (Redis returns them in hash-table order).
function Fake:keys()
  local out = {}
  for key in pairs(self.db) do
    if self:lookup(key) then out[#out + 1] = key end
  end
  sort(out)
  return out
end

local C = {} -- command name -> function(self, argv, n) returning reply, err
local ARITY = {}

-- Each family brings its commands, and may bring methods of the client
-- (streams: stream_append).
for _, family in ipairs(FAMILIES) do
  for name, c in pairs(family.commands) do
    assert(C[name] == nil, "rsghost.fakeredis: two families define " .. name)
    C[name], ARITY[name] = c.fn, c.arity
  end
  for name, fn in pairs(family.methods or {}) do Fake[name] = fn end
end

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

-- The command's function, or nil and the error Redis would give before
-- running it (unknown command, wrong number of arguments).
local function lookup_command(args, n)
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
  return fn
end

-- MULTI ... EXEC: commands are checked and queued, then run together. A
-- command refused while queuing makes EXEC discard the whole transaction,
-- as in Redis; an error while running is one element of EXEC's reply.
local function transaction(self, name, args, n)
  local tx = self.tx
  if name == "multi" then
    if tx then return nil, "ERR MULTI calls can not be nested" end
    if n ~= 1 then return nil, arity_error(name) end
    self.tx = { n = 0 }
    return "OK"
  elseif name == "exec" or name == "discard" then
    if not tx then return nil, format("ERR %s without MULTI", name:upper()) end
    self.tx = nil
    if name == "discard" then return "OK" end
    if tx.aborted then return nil, "EXECABORT Transaction discarded because of previous errors." end
    local out = {}
    for i = 1, tx.n do
      local q = tx[i]
      local reply, err = q.fn(self, q.args, q.n)
      if err ~= nil then out[i] = { err = err } elseif reply == nil then out[i] = false else out[i] = reply end
    end
    return out
  end
  local fn, err = lookup_command(args, n)
  if not fn then
    tx.aborted = true
    return nil, err
  end
  tx.n = tx.n + 1
  tx[tx.n] = { fn = fn, args = args, n = n }
  return "QUEUED"
end

-- Run one command given as an array { name, arg, ... }. Returns reply, or
-- nil, err (an error reply, as a real server words it).
function Fake:command(argv)
  local n = #argv
  if n == 0 then error("rsghost.fakeredis: empty command", 2) end
  local args = {}
  for i = 1, n do args[i] = to_arg(argv[i], i) end
  local name = lower(args[1])
  if self.tx or name == "multi" or name == "exec" or name == "discard" then
    return transaction(self, name, args, n)
  end
  local fn, err = lookup_command(args, n)
  if not fn then return nil, err end
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
