-- rsghost.fakeredis answers as redis-server does: every call below runs on
-- the fake and on a real server (support.server.shared(), keys under a
-- unique prefix), and the replies and error replies must be identical.
local fakeredis = require "rsghost.fakeredis"
local server = require "support.server"
local H = require "support.host"

-- A reply as text, for comparing and for failure messages.
local function show(reply, err)
  if err ~= nil then return "(error) " .. err end
  local function ser(v)
    if type(v) == "table" then
      local parts = {}
      for i = 1, #v do parts[i] = ser(v[i]) end
      return "{" .. table.concat(parts, ", ") .. "}"
    end
    if type(v) == "string" then return string.format("%q", v) end
    return tostring(v)
  end
  return ser(reply)
end

-- Modifiers for replies whose order Redis leaves to its hash tables, or that
-- depend on the server's clock.
local function sorted(cmd) cmd.sorted = true return cmd end
local function shape(cmd, pattern) cmd.shape = pattern return cmd end
local function near(cmd, tolerance) cmd.near = tolerance return cmd end

local function normalize(cmd, reply, err)
  if err ~= nil then return nil, err end
  if cmd.sorted and type(reply) == "table" then
    local copy = {}
    for i, v in ipairs(reply) do copy[i] = v end
    table.sort(copy)
    return copy
  end
  if cmd.shape then
    return (type(reply) == "string" and reply:find(cmd.shape)) and "<" .. cmd.shape .. ">" or reply
  end
  return reply
end

-- Runs calls (arrays; "{P}" in an argument is the test's key prefix) on both
-- and asserts every reply matches. Returns the fake, for further checks.
local function compare(calls, opts)
  opts = opts or {}
  local real = server.shared().client()
  local prefix = H.prefix("fake")
  local fake = fakeredis.new(opts)
  for n, cmd in ipairs(calls) do
    local argv = {}
    for i, a in ipairs(cmd) do
      argv[i] = type(a) == "string" and a:gsub("{P}", prefix) or a
    end
    local want, want_err = normalize(cmd, real:pcall(unpack(argv)))
    local got, got_err = normalize(cmd, fake:pcall(unpack(argv)))
    local line = table.concat(cmd, " ", 1, math.min(#cmd, 12))
    if cmd.near and want_err == nil and type(want) == "number" and type(got) == "number" then
      assert(math.abs(want - got) <= cmd.near,
        string.format("call %d (%s): redis %s, fake %s", n, line, show(want), show(got)))
    else
      local a, b = show(want, want_err), show(got, got_err)
      if a ~= b then
        error(string.format("call %d (%s):\n  redis-server: %s\n  fakeredis:    %s", n, line, a, b), 2)
      end
    end
  end
  return fake
end

describe("rsghost.fakeredis", function()
  describe("matches redis-server", function()
    it("for transactions", function()
      compare {
        { "EXEC" }, { "DISCARD" },
        { "MULTI" }, { "MULTI" }, { "INCR", "{P}n" }, { "RPUSH", "{P}l", "a" }, { "GET", "{P}l" }, { "EXEC" },
        { "MULTI" }, { "INCR", "{P}n" }, { "DISCARD" }, { "GET", "{P}n" },
        { "MULTI" }, { "INCR", "{P}n" }, { "NOSUCHCMD" }, { "GET", "{P}n", "x" }, { "EXEC" }, { "GET", "{P}n" },
      }
    end)

    it("for strings", function()
      compare {
        { "GET", "{P}s" },
        { "SET", "{P}s", "v" },
        { "GET", "{P}s" },
        { "SET", "{P}s", "w", "NX" },
        { "SET", "{P}s", "w", "XX" },
        { "SET", "{P}new", "w", "XX" },
        { "SET", "{P}s", "x", "GET" },
        { "SET", "{P}none", "x", "GET" },
        { "SET", "{P}s", "y", "NX", "GET" },
        { "SET", "{P}s", "v", "NX", "XX" },
        { "SET", "{P}s", "v", "EX" },
        { "SET", "{P}s", "v", "EX", "10", "PX", "100" },
        { "SET", "{P}s", "v", "KEEPTTL", "EX", "10" },
        { "SET", "{P}s", "v", "EX", "0" },
        { "SET", "{P}s", "v", "EX", "-5" },
        { "SET", "{P}s", "v", "PX", "abc" },
        { "SET", "{P}s", "v", "EX", "9223372036854775807" },
        { "SET", "{P}s", "v", "FOO" },
        { "SET", "{P}s" },
        { "GET", "{P}s", "x" },
        { "SETNX", "{P}s", "1" },
        { "SETNX", "{P}nx", "1" },
        { "SETEX", "{P}ex", "0", "v" },
        { "SETEX", "{P}ex", "x", "v" },
        { "PSETEX", "{P}ex", "-1", "v" },
        { "SETEX", "{P}ex", "100", "v" },
        { "GET", "{P}ex" },
        { "APPEND", "{P}ap", "abc" },
        { "APPEND", "{P}ap", "def" },
        { "GET", "{P}ap" },
        { "STRLEN", "{P}ap" },
        { "STRLEN", "{P}missing" },
        { "MSET", "{P}m1", "1", "{P}m2", "2" },
        { "MSET", "{P}m1", "1", "{P}m2" },
        { "MSETNX", "{P}m1", "1", "{P}m3", "3" },
        { "MSETNX", "{P}m3", "3", "{P}m4", "4" },
        { "RPUSH", "{P}list", "a" },
        { "MGET", "{P}m1", "{P}nope", "{P}list", "{P}m4" },
        { "GET", "{P}list" },
        { "SET", "{P}list", "v", "GET" },
        { "GETDEL", "{P}m1" },
        { "GETDEL", "{P}m1" },
        { "SET", "{P}list", "now a string" },
        { "GET", "{P}list" },
        { "SET", "{P}bin", "a\0b\r\n\255" },
        { "GET", "{P}bin" },
      }
    end)

    it("for counters", function()
      compare {
        { "INCR", "{P}n" },
        { "INCRBY", "{P}n", "41" },
        { "DECR", "{P}n" },
        { "DECRBY", "{P}n", "-10" },
        { "INCRBY", "{P}n", "x" },
        { "INCRBY", "{P}n", "1.5" },
        { "INCRBY", "{P}n", " 1" },
        { "INCRBY", "{P}n", "+1" },
        { "INCRBY", "{P}n", "01" },
        { "INCRBY", "{P}n", "-0" },
        { "INCRBY", "{P}n", "99999999999999999999" },
        { "SET", "{P}s", "abc" },
        { "INCR", "{P}s" },
        { "SET", "{P}max", "9223372036854775806" },
        { "INCR", "{P}max" },
        { "INCR", "{P}max" },
        { "GET", "{P}max" },
        { "SET", "{P}min", "-9223372036854775807" },
        { "DECR", "{P}min" },
        { "DECR", "{P}min" },
        { "DECRBY", "{P}min", "-9223372036854775808" },
        { "GET", "{P}min" },
        { "SET", "{P}big", "9007199254740993" },
        { "INCR", "{P}big" },
        { "GET", "{P}big" },
        { "RPUSH", "{P}l", "a" },
        { "INCR", "{P}l" },
        { "INCRBY", "{P}l", "x" },
        { "INCR", "{P}a", "b" },
      }
    end)

    it("for keys and expiry", function()
      compare {
        { "SET", "{P}a", "1" },
        { "RPUSH", "{P}b", "1" },
        { "HSET", "{P}c", "f", "v" },
        { "SADD", "{P}d", "m" },
        { "XADD", "{P}e", "1-1", "f", "v" },
        { "TYPE", "{P}a" }, { "TYPE", "{P}b" }, { "TYPE", "{P}c" }, { "TYPE", "{P}d" }, { "TYPE", "{P}e" },
        { "TYPE", "{P}zzz" },
        { "EXISTS", "{P}a", "{P}a", "{P}zzz", "{P}e" },
        sorted { "KEYS", "{P}*" },
        sorted { "KEYS", "{P}[a-c]" },
        sorted { "KEYS", "{P}[^a]" },
        sorted { "KEYS", "{P}?" },
        sorted { "KEYS", "{P}\\a" },
        sorted { "KEYS", "{P}[ad" },
        { "TTL", "{P}a" },
        { "PTTL", "{P}zzz" },
        { "EXPIRE", "{P}a", "100" },
        { "TTL", "{P}a" },
        near({ "PTTL", "{P}a" }, 2000),
        { "EXPIRE", "{P}a", "200", "NX" },
        { "EXPIRE", "{P}a", "200", "XX" },
        { "TTL", "{P}a" },
        { "EXPIRE", "{P}a", "100", "GT" },
        { "EXPIRE", "{P}a", "300", "GT" },
        { "EXPIRE", "{P}a", "400", "LT" },
        { "EXPIRE", "{P}a", "50", "LT" },
        { "TTL", "{P}a" },
        { "EXPIRE", "{P}b", "10", "XX" },
        { "EXPIRE", "{P}b", "10", "GT" },
        { "EXPIRE", "{P}b", "10", "LT" },
        { "TTL", "{P}b" },
        { "EXPIRE", "{P}a", "10", "NX", "XX" },
        { "EXPIRE", "{P}a", "10", "GT", "LT" },
        { "EXPIRE", "{P}a", "10", "nope" },
        { "EXPIRE", "{P}a", "ten" },
        { "EXPIRE", "{P}a", "9223372036854775807" },
        { "PEXPIRE", "{P}a", "9223372036854775807" },
        { "EXPIRE", "{P}zzz", "10" },
        { "PERSIST", "{P}a" },
        { "PERSIST", "{P}a" },
        { "TTL", "{P}a" },
        { "PEXPIRE", "{P}c", "100000" },
        { "TTL", "{P}c" },
        { "EXPIREAT", "{P}c", "1" },
        { "EXISTS", "{P}c" },
        { "PEXPIREAT", "{P}d", "4102444800000" },
        { "EXPIRETIME", "{P}d" },
        { "PEXPIRETIME", "{P}d" },
        near({ "EXPIRETIME", "{P}b" }, 1),
        { "EXPIRETIME", "{P}zzz" },
        { "EXPIRE", "{P}d", "-1" },
        { "EXISTS", "{P}d" },
        { "SET", "{P}k", "v", "EX", "100" },
        { "SET", "{P}k", "w" },
        { "TTL", "{P}k" },
        { "SET", "{P}k", "v", "EX", "100" },
        { "SET", "{P}k", "w", "KEEPTTL" },
        { "TTL", "{P}k" },
        { "INCR", "{P}n" },
        { "EXPIRE", "{P}n", "100" },
        { "INCR", "{P}n" },
        { "TTL", "{P}n" },
        { "DEL", "{P}a", "{P}b", "{P}zzz", "{P}a" },
        { "UNLINK", "{P}e" },
        sorted { "KEYS", "{P}*" },
        { "PING" },
        { "PING", "hello" },
        { "PING", "a", "b" },
        { "ECHO", "x" },
        { "DBSIZE", "x" },
        { "FLUSHDB", "nope" },
        { "FLUSHDB", "ASYNC", "SYNC" },
      }
    end)

    it("for unknown commands and arity", function()
      compare {
        { "NOSUCHCOMMAND" },
        { "nosuch", "a", "b\r\nc" },
        { "nosuch", string.rep("x", 200), "y" },
        { "nosuch", string.rep("x", 100), string.rep("y", 100), "z" },
        { "GET" },
        { "set", "{P}k" },
        { "LPUSH", "{P}l" },
        { "HSET", "{P}h", "f" },
        { "XADD", "{P}s", "*" },
        { "LRANGE", "{P}l", "0" },
        { "TTL" },
        { "KEYS" },
      }
    end)

    it("for lists", function()
      compare {
        { "RPUSH", "{P}l", "a", "b", "c" },
        { "LPUSH", "{P}l", "z", "y" },
        { "LRANGE", "{P}l", "0", "-1" },
        { "LRANGE", "{P}l", "-100", "100" },
        { "LRANGE", "{P}l", "2", "1" },
        { "LRANGE", "{P}l", "7", "9" },
        { "LRANGE", "{P}l", "-2", "-1" },
        { "LRANGE", "{P}l", "x", "1" },
        { "LRANGE", "{P}nol", "x", "1" },
        { "LRANGE", "{P}nol", "0", "-1" },
        { "LLEN", "{P}l" },
        { "LLEN", "{P}nol" },
        { "LINDEX", "{P}l", "0" },
        { "LINDEX", "{P}l", "-1" },
        { "LINDEX", "{P}l", "99" },
        { "LINDEX", "{P}l", "x" },
        { "LINDEX", "{P}nol", "x" },
        { "LSET", "{P}l", "1", "Y" },
        { "LSET", "{P}l", "-1", "C" },
        { "LSET", "{P}l", "9", "x" },
        { "LSET", "{P}nol", "0", "x" },
        { "LSET", "{P}l", "x", "y" },
        { "LRANGE", "{P}l", "0", "-1" },
        { "LPOP", "{P}l" },
        { "RPOP", "{P}l" },
        { "LPOP", "{P}l", "0" },
        { "LPOP", "{P}l", "-1" },
        { "LPOP", "{P}l", "x" },
        { "LPOP", "{P}l", "1", "2" },
        { "LPOP", "{P}nol" },
        { "LPOP", "{P}nol", "2" },
        { "LPOP", "{P}nol", "0" },
        { "RPUSH", "{P}r", "a", "b", "a", "c", "a", "b", "a" },
        { "LREM", "{P}r", "2", "a" },
        { "LRANGE", "{P}r", "0", "-1" },
        { "LREM", "{P}r", "-1", "a" },
        { "LRANGE", "{P}r", "0", "-1" },
        { "LREM", "{P}r", "0", "b" },
        { "LRANGE", "{P}r", "0", "-1" },
        { "LREM", "{P}r", "x", "b" },
        { "LREM", "{P}nol", "0", "b" },
        { "RPUSH", "{P}t", "1", "2", "3", "4", "5", "6" },
        { "LTRIM", "{P}t", "1", "-2" },
        { "LRANGE", "{P}t", "0", "-1" },
        { "LTRIM", "{P}t", "-2", "100" },
        { "LRANGE", "{P}t", "0", "-1" },
        { "LTRIM", "{P}t", "5", "1" },
        { "EXISTS", "{P}t" },
        { "LTRIM", "{P}nol", "0", "1" },
        { "LTRIM", "{P}nol", "x", "1" },
        { "RPUSH", "{P}p", "a", "b", "c" },
        { "RPOP", "{P}p", "2" },
        { "LPOP", "{P}p", "5" },
        { "EXISTS", "{P}p" },
        { "LPUSHX", "{P}p", "a" },
        { "RPUSHX", "{P}l", "end" },
        { "LRANGE", "{P}l", "0", "-1" },
        { "SET", "{P}s", "v" },
        { "LPUSH", "{P}s", "x" },
        { "LPUSHX", "{P}s", "x" },
        { "LRANGE", "{P}s", "0", "1" },
        { "LLEN", "{P}s" },
        { "LINDEX", "{P}s", "x" },
        { "LPOP", "{P}s" },
        { "LPOP", "{P}s", "x" },
        { "LREM", "{P}s", "0", "x" },
        { "LTRIM", "{P}s", "0", "1" },
      }
    end)

    it("for hashes", function()
      compare {
        { "HSET", "{P}h", "a", "1", "b", "2" },
        { "HSET", "{P}h", "b", "3", "c", "4" },
        { "HSET", "{P}h", "a" },
        { "HSET", "{P}h", "a", "1", "b" },
        { "HMSET", "{P}h", "d", "5" },
        { "HMSET", "{P}h", "d" },
        { "HSETNX", "{P}h", "a", "x" },
        { "HSETNX", "{P}h", "e", "6" },
        { "HGET", "{P}h", "b" },
        { "HGET", "{P}h", "zz" },
        { "HGET", "{P}noh", "a" },
        { "HGETALL", "{P}h" },
        { "HKEYS", "{P}h" },
        { "HVALS", "{P}h" },
        { "HMGET", "{P}h", "a", "zz", "c" },
        { "HMGET", "{P}noh", "a", "b" },
        { "HLEN", "{P}h" },
        { "HEXISTS", "{P}h", "a" },
        { "HEXISTS", "{P}h", "zz" },
        { "HDEL", "{P}h", "a", "zz", "a" },
        { "HGETALL", "{P}h" },
        { "HSET", "{P}h", "a", "again" },
        { "HGETALL", "{P}h" },
        { "HINCRBY", "{P}h", "n", "5" },
        { "HINCRBY", "{P}h", "n", "-7" },
        { "HINCRBY", "{P}h", "n", "x" },
        { "HINCRBY", "{P}h", "a", "1" },
        { "HSET", "{P}h", "big", "9223372036854775807" },
        { "HINCRBY", "{P}h", "big", "1" },
        { "HINCRBY", "{P}newh", "n", "1" },
        { "HGETALL", "{P}newh" },
        { "HDEL", "{P}newh", "n" },
        { "EXISTS", "{P}newh" },
        { "HGETALL", "{P}noh" },
        { "HLEN", "{P}noh" },
        { "HDEL", "{P}noh", "a" },
        { "SET", "{P}s", "v" },
        { "HSET", "{P}s", "a", "1" },
        { "HGET", "{P}s", "a" },
        { "HGETALL", "{P}s" },
        { "HMGET", "{P}s", "a" },
        { "HDEL", "{P}s", "a" },
        { "HINCRBY", "{P}s", "a", "1" },
        { "HINCRBY", "{P}s", "a", "x" },
        { "HLEN", "{P}s" },
        { "HEXISTS", "{P}s", "a" },
      }
    end)

    it("for sets", function()
      compare {
        { "SADD", "{P}i", "10", "2", "-5", "3", "2" },
        { "SMEMBERS", "{P}i" },
        { "SCARD", "{P}i" },
        { "SISMEMBER", "{P}i", "3" },
        { "SISMEMBER", "{P}i", "4" },
        { "SMISMEMBER", "{P}i", "3", "4", "10" },
        { "SREM", "{P}i", "3", "99" },
        { "SMEMBERS", "{P}i" },
        { "SADD", "{P}i", "x" },
        sorted { "SMEMBERS", "{P}i" },
        { "SADD", "{P}w", "b", "a", "c" },
        sorted { "SMEMBERS", "{P}w" },
        { "SREM", "{P}w", "a", "b", "c" },
        { "EXISTS", "{P}w" },
        { "SMEMBERS", "{P}nos" },
        { "SCARD", "{P}nos" },
        { "SREM", "{P}nos", "a" },
        { "SMISMEMBER", "{P}nos", "a", "b" },
        { "SET", "{P}s", "v" },
        { "SADD", "{P}s", "a" },
        { "SMEMBERS", "{P}s" },
        { "SISMEMBER", "{P}s", "a" },
        { "SMISMEMBER", "{P}s", "a" },
        { "SCARD", "{P}s" },
        { "SREM", "{P}s", "a" },
      }
    end)

    it("for streams", function()
      compare {
        { "XADD", "{P}st", "0-0", "a", "1" },
        { "XADD", "{P}st", "0", "a", "1" },
        { "XADD", "{P}st", "1-1" },
        { "XADD", "{P}st", "1-1", "a" },
        { "XADD", "{P}st", "MAXLEN", "-1", "*", "a", "1" },
        { "XADD", "{P}st", "MAXLEN", "1", "LIMIT", "10", "*", "a", "1" },
        { "XADD", "{P}st", "LIMIT", "10", "*", "a", "1" },
        { "XADD", "{P}st", "MAXLEN", "~", "1", "MINID", "0", "*", "a", "1" },
        { "XADD", "{P}st", "MAXLEN", "~", "5", "LIMIT", "-1", "*", "a", "1" },
        { "XADD", "{P}st", "MAXLEN", "x", "*", "a", "1" },
        { "XADD", "{P}st", "bad", "a", "1" },
        { "XADD", "{P}st", "-5", "a", "1" },
        { "XADD", "{P}st", "5-x", "a", "1" },
        { "XADD", "{P}st", "NOMKSTREAM", "*", "a", "1" },
        { "EXISTS", "{P}st" },
        { "XADD", "{P}st", "5", "a", "1" },
        { "XADD", "{P}st", "5", "a", "1" },
        { "XADD", "{P}st", "5-*", "a", "1" },
        { "XADD", "{P}st", "5-*", "b", "2", "c", "3" },
        { "XADD", "{P}st", "4-*", "a", "1" },
        { "XADD", "{P}st", "007", "a", "1" },
        { "XADD", "{P}st", "+9", "a", "1" },
        { "XADD", "{P}st", "9-1", "a", "1", "a", "2" },
        { "XADD", "{P}st", "9-1", "a", "1" },
        { "XADD", "{P}st", "10-0", "empty", "" },
        { "XADD", "{P}st", "NOMKSTREAM", "MAXLEN", "=", "100", "11-5", "x", "y" },
        { "XADD", "{P}nost", "NOMKSTREAM", "*", "a", "1" },
        { "EXISTS", "{P}nost" },
        { "XLEN", "{P}st" },
        { "XLEN", "{P}nost" },
        { "XRANGE", "{P}st", "-", "+" },
        { "XRANGE", "{P}st", "5", "5" },
        { "XRANGE", "{P}st", "(5", "+" },
        { "XRANGE", "{P}st", "(5-1", "(9-1" },
        { "XRANGE", "{P}st", "-", "+", "COUNT", "2" },
        { "XRANGE", "{P}st", "-", "+", "count", "0" },
        { "XRANGE", "{P}st", "-", "+", "COUNT", "-1" },
        { "XRANGE", "{P}st", "-", "+", "COUNT", "x" },
        { "XRANGE", "{P}st", "-", "+", "COUNT" },
        { "XRANGE", "{P}st", "-", "+", "FOO" },
        { "XRANGE", "{P}st", "(-", "+" },
        { "XRANGE", "{P}st", "-", "(+" },
        { "XRANGE", "{P}st", "(18446744073709551615-18446744073709551615", "+" },
        { "XRANGE", "{P}st", "-", "(0-0" },
        { "XRANGE", "{P}st", "bad", "+" },
        { "XRANGE", "{P}st", "9", "7" },
        { "XRANGE", "{P}nost", "-", "+" },
        { "XRANGE", "{P}nost", "-", "+", "COUNT", "0" },
        { "XREVRANGE", "{P}st", "+", "-" },
        { "XREVRANGE", "{P}st", "+", "-", "COUNT", "3" },
        { "XREVRANGE", "{P}st", "9", "(5" },
        { "XDEL", "{P}nost", "bad" },
        { "XDEL", "{P}st", "bad" },
        { "XDEL", "{P}st", "5", "999", "5-0", "7-0" },
        { "XLEN", "{P}st" },
        { "XRANGE", "{P}st", "-", "+" },
        { "XTRIM", "{P}st" },
        { "XTRIM", "{P}st", "foo", "1" },
        { "XTRIM", "{P}st", "MAXLEN", "0", "extra" },
        { "XTRIM", "{P}st", "MAXLEN", "0", "LIMIT", "5" },
        { "XTRIM", "{P}st", "LIMIT", "5", "MAXLEN", "~", "0" },
        { "XTRIM", "{P}st", "MINID", "bad" },
        { "XTRIM", "{P}nost", "MAXLEN", "~", "0", "LIMIT", "5" },
        { "XTRIM", "{P}st", "MAXLEN", "~", "2" },
        { "XTRIM", "{P}st", "MAXLEN", "3" },
        { "XRANGE", "{P}st", "-", "+" },
        { "XTRIM", "{P}st", "MINID", "10" },
        { "XRANGE", "{P}st", "-", "+" },
        { "XADD", "{P}top", "18446744073709551615-18446744073709551615", "a", "1" },
        { "XADD", "{P}top", "*", "a", "1" },
        { "XADD", "{P}top", "18446744073709551615-*", "a", "1" },
        { "XADD", "{P}top2", "18446744073709551615-18446744073709551614", "a", "1" },
        { "XADD", "{P}top2", "18446744073709551615-*", "a", "1" },
        { "XADD", "{P}top2", "18446744073709551615-*", "a", "1" },
        { "XADD", "{P}top3", "18446744073709551616", "a", "1" },
        shape({ "XADD", "{P}auto", "*", "a", "1" }, "^%d+%-0$"),
        { "SET", "{P}s", "v" },
        { "XADD", "{P}s", "*", "a", "1" },
        { "XADD", "{P}s", "0-0", "a", "1" },
        { "XADD", "{P}s", "NOMKSTREAM", "*", "a", "1" },
        { "XLEN", "{P}s" },
        { "XRANGE", "{P}s", "-", "+" },
        { "XRANGE", "{P}s", "bad", "+" },
        { "XDEL", "{P}s", "1-1" },
        { "XDEL", "{P}s", "bad" },
        { "XTRIM", "{P}s", "MAXLEN", "1" },
      }
    end)

    it("for trimming limits", function()
      local calls = {}
      for i = 1, 250 do calls[#calls + 1] = { "XADD", "{P}l", tostring(i), "n", tostring(i) } end
      for _, c in ipairs {
        { "XTRIM", "{P}l", "MAXLEN", "~", "0", "LIMIT", "99" },
        { "XTRIM", "{P}l", "MAXLEN", "~", "0", "LIMIT", "100" },
        { "XLEN", "{P}l" },
        { "XTRIM", "{P}l", "MINID", "~", "200" },
        { "XTRIM", "{P}l", "MINID", "~", "201" },
        { "XLEN", "{P}l" },
        { "XTRIM", "{P}l", "MINID", "~", "240" },
        { "XLEN", "{P}l" },
        { "XTRIM", "{P}l", "MINID", "=", "240" },
        { "XLEN", "{P}l" },
        { "XRANGE", "{P}l", "-", "+", "COUNT", "3" },
        { "XTRIM", "{P}l", "MAXLEN", "~", "0", "LIMIT", "0" }, -- LIMIT 0: no limit
        { "XLEN", "{P}l" },
      } do
        calls[#calls + 1] = c
      end
      compare(calls)
    end)

    -- What `MAXLEN ~` leaves depends on where Redis cut the stream into
    -- nodes (100 entries or 4096 bytes of listpack): the fake must cut the
    -- same way, for every size and shape of entry.
    it("for approximate trimming, entry sizes and node boundaries", function()
      local calls = {}
      local seed = 7
      local function rand(n) -- a small LCG, so the sequence is the same on every run
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n -- the high bits: the low ones cycle
      end
      local ms = 1000
      local shapes = {
        function() return { "n", tostring(rand(200)) } end,
        function() return { "n", tostring(rand(200)), "word", string.rep("w", rand(80)) } end,
        function() return { "payload", string.rep("p", 20 + rand(300)) } end,
        function() return { "big", string.rep("b", 3000 + rand(1500)) } end,
        function() return { "k" .. rand(3), tostring(rand(5000000) - 2500000) } end,
        function() return { "n", tostring(rand(200)), "x", "007", "y", "-1" } end,
      }
      for i = 1, 700 do
        local step = rand(10) < 7 and rand(3) or rand(70000)
        ms = ms + step
        local id = step == 0 and (ms .. "-*") or tostring(ms)
        local fields = shapes[1 + rand(#shapes)]()
        local cmd = { "XADD", "{P}trim" }
        local r = rand(10)
        if r < 6 then
          cmd[#cmd + 1], cmd[#cmd + 2], cmd[#cmd + 3] = "MAXLEN", "~", tostring(50 + rand(300))
        elseif r == 6 then
          cmd[#cmd + 1], cmd[#cmd + 2], cmd[#cmd + 3] = "MAXLEN", "~", tostring(rand(20))
          cmd[#cmd + 4], cmd[#cmd + 5] = "LIMIT", tostring(rand(250))
        end
        cmd[#cmd + 1] = id
        for _, f in ipairs(fields) do cmd[#cmd + 1] = f end
        calls[#calls + 1] = cmd
        calls[#calls + 1] = { "XLEN", "{P}trim" }
        if i % 97 == 0 then
          calls[#calls + 1] = { "XDEL", "{P}trim", tostring(ms), ms .. "-1" }
          calls[#calls + 1] = { "XTRIM", "{P}trim", "MAXLEN", tostring(150 + rand(100)) }
          calls[#calls + 1] = { "XTRIM", "{P}trim", "MINID", "~", tostring(ms - 200000) }
        end
      end
      calls[#calls + 1] = { "XRANGE", "{P}trim", "-", "+" }
      compare(calls)
    end)
  end)

  -- With MAXLEN ~ 1, each XADD drops every node but the tail one, so XLEN
  -- tells where Redis started a new node. Entry sizes are steered (from the
  -- fake's own count of the tail node's bytes) to land just under, on and
  -- just over the 4096-byte limit: a model off by one byte anywhere (an
  -- integer's encoding, a back-length, a same-fields entry) splits elsewhere.
  it("cuts stream nodes at the same byte as redis-server", function()
    local real = server.shared().client()
    local fake = fakeredis.new()
    local key = H.prefix("fake") .. ":probe"
    local seed = 11
    local function rand(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return math.floor(seed / 65536) % n
    end
    -- Integers at the edges of the listpack's integer encodings, and strings
    -- at the edges of its string encodings (and numbers that are strings).
    local edges = { "0", "127", "128", "-1", "4095", "4096", "-4096", "-4097", "32767", "32768",
      "-32768", "-32769", "8388607", "8388608", "-8388608", "-8388609", "2147483647", "2147483648",
      "-2147483648", "-2147483649", "9223372036854775807", "-9223372036854775808",
      "9223372036854775808", "-0", "01", "+1", "1.5", " 1" }
    local function value()
      local r = rand(3)
      if r == 0 then return edges[1 + rand(#edges)] end
      if r == 1 then -- around the 6-bit length (63) and the 1-byte back-length (127)
        return string.rep("s", rand(2) == 0 and 61 + rand(5) or 123 + rand(6))
      end
      return tostring(rand(100000) - 50000)
    end
    local ms = 5
    for step = 1, 2000 do
      local e = fake.db[key]
      local node = e and e.value.nodes[#e.value.nodes]
      local fields
      -- The second half adds small entries, deletes and trims exactly: nodes
      -- then end at 100 entries, deleted ones included.
      local kind = step <= 1000 and rand(5) or -1
      if kind == -1 then
        fields = { "f", tostring(rand(1000)) }
      elseif kind == 0 then
        fields = { "f", value() }
      elseif kind == 1 then
        fields = { "f" .. rand(3), string.rep("v", rand(200)) } -- other fields than the master's
      elseif kind == 4 then
        fields = {} -- many fields: the lp-count past one byte
        for i = 1, 60 + rand(8) do fields[#fields + 1], fields[#fields + 2] = "g" .. i, value() end
      else
        local free = node and (4096 - fakeredis._node_bytes(node)) or 4096
        local want = free + rand(3) - 1 -- 1 under, at, or 1 over the limit
        if kind == 2 and free > 200 then want = rand(free - 100) end -- fill the node part way
        if want >= 3 and want <= 3000 then
          fields = { "f", string.rep("x", want - 1) }
        else
          fields = { "f", string.rep("y", 1 + rand(120)) }
        end
      end
      ms = ms + (rand(5) == 0 and rand(200000) or rand(2))
      local argv = { "XADD", key, "MAXLEN", "~", "1", tostring(ms) .. "-*" }
      if rand(step <= 1000 and 40 or 8) == 0 then
        argv[3], argv[4] = "MAXLEN", tostring(1 + rand(200))
        table.remove(argv, 5)
      end
      for _, f in ipairs(fields) do argv[#argv + 1] = f end
      local a = show(real:pcall(unpack(argv)))
      local b = show(fake:pcall(unpack(argv)))
      assert.equal(a, b, "step " .. step)
      local la, lb = real:call("XLEN", key), fake:call("XLEN", key)
      if la ~= lb then
        error(string.format("step %d (XADD of %d fields, %d bytes): XLEN redis %d, fake %d", step,
          #fields / 2, #table.concat(fields), la, lb))
      end
      if rand(step <= 1000 and 30 or 4) == 0 and la > 2 then
        local ids = real:call("XRANGE", key, "-", "+")
        local victim = ids[1 + rand(#ids)][1]
        assert.equal(real:call("XDEL", key, victim), fake:call("XDEL", key, victim))
      end
    end
    assert.same(real:call("XRANGE", key, "-", "+"), fake:call("XRANGE", key, "-", "+"))
  end)

  describe("beyond what a real server can show", function()
    it("expires keys on its clock (strictly after the deadline, as Redis)", function()
      local now = 1000
      local r = fakeredis.new { clock = function() return now end }
      r:call("SET", "k", "v", "EX", 10)
      r:call("SET", "p", "v", "PX", 1500)
      assert.equal(10, r:call("TTL", "k"))
      now = now + 1.5
      assert.equal(0, r:call("PTTL", "p"))
      assert.equal("v", r:call("GET", "p"))
      assert.equal(8500, r:call("PTTL", "k"))
      assert.equal(9, r:call("TTL", "k")) -- 8.5 s rounds up, as Redis rounds
      now = now + 0.001
      assert.is_nil(r:call("GET", "p"))
      assert.equal(8, r:call("TTL", "k"))
      now = now + 8.499
      assert.equal(1, r:call("EXISTS", "k"))
      now = now + 0.001
      assert.equal(0, r:call("EXISTS", "k"))
      assert.equal(-2, r:call("TTL", "k"))
      assert.same({}, r:call("KEYS", "*"))
    end)

    it("takes XADD * ids from its clock", function()
      local now = 1700000000.25
      local r = fakeredis.new { clock = function() return now end }
      assert.equal("1700000000250-0", r:call("XADD", "s", "*", "a", 1))
      assert.equal("1700000000250-1", r:call("XADD", "s", "*", "a", 2))
      now = now - 1 -- a clock going back never makes ids go back
      assert.equal("1700000000250-2", r:call("XADD", "s", "*", "a", 3))
      now = now + 2
      assert.equal("1700000001250-0", r:call("XADD", "s", "*", "a", 4))
    end)

    it("says which real commands it does not implement", function()
      local r = fakeredis.new()
      local reply, err = r:pcall("ZADD", "z", 1, "a")
      assert.is_nil(reply)
      assert.matches("^ERR rsghost.fakeredis does not implement 'zadd'", err)
      assert.is_false(fakeredis.implements("zadd"))
      assert.is_true(fakeredis.implements("XADD"))
    end)

    it("takes numbers as arguments and offers the hiredis client's methods", function()
      local r = fakeredis.new()
      assert.equal(3, r:call("RPUSH", "l", 1, 2.5, 1e15))
      assert.same({ "1", "2.5", "1000000000000000" }, r:command { "LRANGE", "l", 0, -1 })
      assert.same({ 4, { err = "WRONGTYPE Operation against a key holding the wrong kind of value" }, false },
        r:pipeline { { "RPUSH", "l", "x" }, { "GET", "l" }, { "GET", "nope" } })
      assert.has_error(function() r:call("GET", "l") end,
        "WRONGTYPE Operation against a key holding the wrong kind of value")
      assert.has_error(function() r:call("SET", "k", nil) end)
    end)
  end)
end)
