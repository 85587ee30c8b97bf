-- rsghost.testing: the kit runs a script as the host does. Scripts are given
-- as tables here (their errors point at this file); the examples' specs load
-- files, as users do.
local testing = require "rsghost.testing"
local script = require "rsghost.script"
local server = require "support.server"
local H = require "support.host"
local rsghost = require "rsghost"

-- A script table: messages carry { v = value }; preprocess returns the value
-- (nil drops, "boom" raises); the sink pushes the batch onto key "out".
local function pipeline_script(t)
  t = t or {}
  return {
    source = t.source or { streams = { "s1", "s2" }, group = "g" },
    preprocess = t.preprocess or function(stream, id, data)
      if data.v == "boom" then error("cannot take " .. id) end
      return data.v
    end,
    batch = t.batch,
    sink = t.sink or function(items)
      rsghost.redis.call("RPUSH", "out", unpack(items))
    end,
    retry = t.retry,
  }
end

describe("rsghost.testing", function()
  describe("loading", function()
    it("loads a script file as the host does, failing with the host's message", function()
      local path = "spec/fixtures/scripts/typo_preprocess.lua"
      local ok, host_err = pcall(script.load, path, { consumer = "c" })
      assert.is_false(ok)
      local kit_ok, kit_err = pcall(testing.load, path)
      assert.is_false(kit_ok)
      assert.equal(host_err, kit_err)
      assert.matches("^spec/fixtures/scripts/typo_preprocess.lua:4: unknown key \"preproces\"", host_err)
    end)

    it("sets rsghost.consumer and rsghost.group for the script", function()
      local seen
      local k = testing.load(pipeline_script {
        sink = function() seen = rsghost.consumer .. "/" .. rsghost.group end,
        batch = { size = 1 },
      }, { consumer = "worker-7" })
      k:feed("s1", { v = "a" })
      assert.equal("worker-7/g", seen)
    end)

    it("validates a script table with the host's rules", function()
      assert.has_error(function()
        testing.load { source = { streams = "s", group = "g" }, preprocess = print }
      end)
    end)
  end)

  describe("batching on the virtual clock", function()
    it("flushes a batch when it is full, within the feed", function()
      local k = testing.load(pipeline_script { batch = { size = 3, timeout = 10 } })
      k:feed_many { { "s1", "1-0", { v = "a" } }, { "s1", "2-0", { v = "b" } }, { "s2", "1-0", { v = "c" } },
        { "s2", "2-0", { v = "d" } } }
      assert.same({ { "a", "b", "c" } }, k:sink_calls(1))
      assert.same({ s1 = { "1-0", "2-0" }, s2 = { "1-0" } }, k:acked())
      assert.same({ s2 = { "2-0" } }, k:pending())
      assert.equal(1, k:in_flight())
    end)

    it("flushes a partial batch when the timeout since its FIRST item passes", function()
      local k = testing.load(pipeline_script { batch = { size = 100, timeout = 3 } })
      k:feed("s1", { v = "a" })
      assert.equal(3, k:next_timer())
      k:advance(2)
      k:feed("s1", { v = "b" }) -- does not restart the clock
      k:advance(0.999)
      assert.same({}, k:sink_calls(1))
      k:advance(0.001)
      assert.same({ { "a", "b" } }, k:sink_calls(1))
      assert.same({}, k:pending())
      assert.is_nil(k:next_timer())
      -- The next batch's clock starts with its own first item.
      k:advance(100)
      k:feed("s2", { v = "c" })
      k:advance(2.9)
      assert.equal(1, #k:sink_calls(1))
      k:advance(0.1)
      assert.same({ { "a", "b" }, { "c" } }, k:sink_calls(1))
      assert.equal(106, k:now())
    end)

    it("arms the timer in whole milliseconds, rounded up, as the host's libuv timer", function()
      local k = testing.load(pipeline_script { batch = { size = 100, timeout = 0.0004 } })
      k:feed("s1", { v = "a" })
      assert.equal(0.001, k:next_timer())
      k:advance(0.0009)
      assert.same({}, k:sink_calls(1))
      k:advance(0.0001)
      assert.same({ { "a" } }, k:sink_calls(1))
    end)

    it("sends each feed's messages as one batch when the timeout is 0 (the default)", function()
      local k = testing.load(pipeline_script())
      k:feed_many { { "s1", { v = "a" } }, { "s2", { v = "b" } } }
      k:feed("s1", { v = "c" })
      assert.same({ { "a", "b" }, { "c" } }, k:sink_calls(1))
      assert.is_nil(k:next_timer())
    end)

    it("sinks each read's messages at once when the batch gives only a size", function()
      local k = testing.load(pipeline_script { batch = { size = 1000 } })
      k:feed("s1", { v = "a" }) -- a quiet stream: one message, and nothing after it
      assert.same({ { "a" } }, k:sink_calls(1))
      assert.same({}, k:pending())
    end)

    it("holds a partial batch with timeout = false until it is full or the host stops", function()
      local k = testing.load(pipeline_script { batch = { size = 3, timeout = false } })
      k:feed("s1", { v = "a" })
      k:advance(86400)
      assert.same({}, k:sink_calls(1))
      assert.is_true(k:stop())
      assert.same({ { "a" } }, k:sink_calls(1))
      assert.is_true(k:finished())
      assert.same({}, k:pending())
    end)

    it("flushes the partial batch on stop and reads nothing after", function()
      local k = testing.load(pipeline_script { batch = { size = 10, timeout = 60 } })
      k:feed("s1", { v = "a" })
      assert.is_true(k:stop())
      assert.same({ "a" }, k:sunk())
      assert.has_error(function() k:feed("s1", { v = "b" }) end,
        "k:feed: the host reads nothing after k:stop()")
    end)
  end)

  describe("preprocess", function()
    it("acks a message it drops (nil) with one ack per feed", function()
      local k = testing.load(pipeline_script { batch = { size = 10, timeout = 5 } })
      k:feed_many { { "s1", "1-0", { w = "x" } }, { "s1", "2-0", { v = "keep" } }, { "s2", "1-0", { w = "x" } } }
      assert.same({ s1 = { "1-0" }, s2 = { "1-0" } }, k:acked())
      assert.same({ s1 = { "2-0" } }, k:pending())
      local acks = 0
      for _, call in ipairs(k:host_calls()) do
        if call[1] == "ack" then acks = acks + 1 end
      end
      assert.equal(1, acks)
    end)

    it("leaves a message it fails on pending, logs it with the script's line, and goes on", function()
      local k = testing.load(pipeline_script())
      k:feed_many { { "s1", "1-0", { v = "a" } }, { "s1", "2-0", { v = "boom" } }, { "s1", "3-0", { v = "c" } } }
      assert.same({ { "a", "c" } }, k:sink_calls(1))
      assert.same({ s1 = { "1-0", "3-0" } }, k:acked())
      assert.same({ s1 = { "2-0" } }, k:pending())
      assert.equal(0, k:in_flight()) -- released: the host reads on
      local msg = k:logged("preprocess failed", "error")
      assert.matches("message 2%-0 from s1, left pending", msg)
      assert.matches("testing_spec.lua:%d+: cannot take 2%-0", msg)
    end)

    it("never gets a message whose bytes are not UTF-8: the host logs it and leaves it pending", function()
      local k = testing.load(pipeline_script())
      k:feed_many { { "s1", "1-0", { v = "caf\195\169" } }, { "s1", "2-0", { "v", "caf\233" } } }
      assert.same({ { "caf\195\169" } }, k:sink_calls(1))
      assert.same({ s1 = { "2-0" } }, k:pending())
      assert.equal("message s1 2-0 left pending: the value of field 'v' is not valid utf-8 (byte 0xe9 at offset 3)",
        k:logged("utf%-8", "error"))
    end)

    it("gives up (moves past) what it fails on with a plain-streams source", function()
      local k = testing.load(pipeline_script { source = { streams = "s1" } })
      k:feed_many { { "s1", "1-0", { v = "boom" } }, { "s1", "2-0", { v = "b" } } }
      assert.same({}, k:pending())
      assert.same({ s1 = { "2-0" } }, k:acked())
    end)
  end)

  describe("failing sinks", function()
    local function two_sinks(k_out)
      return pipeline_script {
        batch = { size = 2, timeout = 1 },
        retry = { initial = 0.5, max = 2 },
        sink = {
          function(items) rsghost.redis.call("RPUSH", "one", unpack(items)) end,
          function(items) rsghost.redis.call("RPUSH", "two", unpack(items)) end,
        },
      }
    end

    it("leave everything pending, pause reading, and retry only the failed sink with backoff", function()
      local k = testing.load(two_sinks())
      k:fail_sink(2)
      k:feed_many { { "s1", "1-0", { v = "a" } }, { "s1", "2-0", { v = "b" } } }
      assert.same({}, k:acked())
      assert.same({ s1 = { "1-0", "2-0" } }, k:pending())
      assert.is_true(k:paused())
      assert.equal(2, k:in_flight())
      assert.matches("sink 2 of 2 failed on a batch of 2 messages %(attempt 1%), retrying in 0.5s: "
        .. ".*testing_spec.lua:%d+: sink 2 failure injected by k:fail_sink", k:logged("failed", "error"))
      -- Backoff 0.5, 1, 2, 2: nothing is retried before it is due.
      k:advance(0.5 + 1 + 2)
      assert.equal(4, #k:sink_calls(2))
      assert.equal(1, #k:sink_calls(1)) -- the sink that succeeded is not run again
      k:heal_sink(2)
      k:advance(1.999)
      assert.same({}, k:acked())
      k:advance(0.001)
      assert.same({ s1 = { "1-0", "2-0" } }, k:acked())
      assert.same({}, k:pending())
      assert.is_false(k:paused())
      assert.same({ { "a", "b" } }, k:batches())
      assert.same({ "a", "b" }, k.redis:call("LRANGE", "one", 0, -1))
      assert.same({ "a", "b" }, k.redis:call("LRANGE", "two", 0, -1))
    end)

    it("fail a given number of times, then heal by themselves", function()
      local k = testing.load(two_sinks())
      k:fail_sink(1, "disk full", 2)
      k:feed_many { { "s1", { v = "a" } }, { "s1", { v = "b" } } }
      assert.equal(1.5, k:drain())
      assert.equal(3, #k:sink_calls(1))
      assert.same({ "a", "b" }, k:sunk())
      assert.matches("testing_spec.lua:%d+: disk full", k:logged("disk full"))
    end)

    it("can fail from a function that looks at the items", function()
      local k = testing.load(pipeline_script { batch = { size = 1 } })
      k:fail_sink(1, function(items)
        if items[1] == "poison" then error("poison seen") end
      end)
      k:feed("s1", { v = "fine" })
      k:feed("s1", { v = "poison" })
      assert.same({ "fine" }, k:sunk())
      assert.is_true(k:paused())
    end)

    it("hold the batches behind the failed one; stop retries once, then gives up on them", function()
      local k = testing.load(pipeline_script { batch = { size = 1 } })
      k:fail_sink(1)
      k:feed("s1", "1-0", { v = "a" })
      k:feed("s1", "2-0", { v = "b" }) -- a read already in the air when reading paused
      assert.is_false(k:stop())
      assert.is_true(k:finished())
      assert.equal(2, k:given_up())
      assert.same({ s1 = { "1-0", "2-0" } }, k:pending())
      assert.equal(2, #k:sink_calls(1)) -- the first attempt and the last one, at stop
      assert.truthy(k:logged("stopping with 2 message%(s%) not sunk", "error"))
      k:drain()
      assert.equal(2, #k:sink_calls(1))
    end)

    it("lets a stop flush once the failing sink works again", function()
      local k = testing.load(pipeline_script { batch = { size = 1 } })
      k:fail_sink(1, nil, 1)
      k:feed("s1", "1-0", { v = "a" })
      assert.is_true(k:stop())
      assert.equal(0, k:given_up())
      assert.same({ s1 = { "1-0" } }, k:acked())
    end)
  end)

  describe("failing redis", function()
    it("fails the script's commands that match, so nothing is acked until Redis is back", function()
      local k = testing.load(pipeline_script())
      k:fail_redis("rpush")
      k:feed("s1", "1-0", { v = "a" })
      assert.same({ s1 = { "1-0" } }, k:pending())
      assert.matches("testing_spec.lua:%d+: " .. testing.LOST, k:logged("failed", "error"))
      k:heal_redis()
      k:drain()
      assert.same({}, k:pending())
      assert.same({ "a" }, k.redis:call("LRANGE", "out", 0, -1))
    end)

    it("takes an error reply, a count, or a function to match", function()
      local k = testing.load(pipeline_script {
        sink = function(items)
          local ok = rsghost.redis.pcall("SET", "last", items[#items])
          rsghost.redis.call("RPUSH", "out", unpack(items))
        end,
      })
      k:fail_redis(function(argv) return argv[1] == "SET" end, "READONLY You can't write against a read only replica.", 1)
      k:feed("s1", { v = "a" })
      assert.same({ "a" }, k:sunk())
      assert.is_nil(k.redis:call("GET", "last"))
      k:feed("s1", { v = "b" })
      assert.equal("b", k.redis:call("GET", "last"))
      assert.same({ { "SET", "last", "a" }, { "RPUSH", "out", "a" }, { "SET", "last", "b" }, { "RPUSH", "out", "b" } },
        k:sent())
    end)

    it("answers with the fake's real error replies", function()
      local k = testing.load(pipeline_script())
      k.redis:call("SET", "out", "a string")
      k:feed("s1", { v = "a" })
      assert.matches("WRONGTYPE Operation against a key holding the wrong kind of value", k:logged("failed"))
    end)
  end)

  describe("the fake on the virtual clock", function()
    it("expires keys as virtual time passes", function()
      local k = testing.load(pipeline_script {
        sink = function(items) rsghost.redis.call("SET", "seen", items[1], "EX", 10) end,
      })
      k:feed("s1", { v = "a" })
      k:advance(10)
      assert.equal("a", k.redis:call("GET", "seen"))
      k:advance(0.001)
      assert.is_nil(k.redis:call("GET", "seen"))
    end)

    it("generates message ids and XADD * ids from the virtual clock", function()
      local k = testing.load(pipeline_script {
        sink = function(items) rsghost.redis.call("XADD", "copy", "*", "v", items[1]) end,
      })
      assert.equal("1700000000000-0", k:feed("s1", { v = "a" }))
      assert.equal("1700000000000-1", k:feed("s1", { v = "b" }))
      k:advance(1.5)
      assert.equal("1700000001500-0", k:feed("s1", { v = "c" }))
      assert.equal("1700000001500-0", k.redis:call("XRANGE", "copy", "-", "+")[3][1])
    end)
  end)

  describe("reads the host could make", function()
    it("holds at most source.count messages per stream", function()
      local k = testing.load(pipeline_script { source = { streams = { "s1", "s2" }, group = "g", count = 2 } })
      k:feed_many { { "s1", { v = "a" } }, { "s1", { v = "b" } }, { "s2", { v = "c" } }, { "s2", { v = "d" } } }
      assert.has_error(function()
        k:feed_many { { "s1", { v = "a" } }, { "s1", { v = "b" } }, { "s1", { v = "c" } } }
      end)
    end)

    it("never holds more than max_in_flight leaves room for", function()
      local k = testing.load(pipeline_script {
        source = { streams = "s1", group = "g", max_in_flight = 4 },
        batch = { size = 4, timeout = false },
      })
      k:fail_sink(1)
      k:feed_many { { "s1", { v = "a" } }, { "s1", { v = "b" } }, { "s1", { v = "c" } } }
      local ok, err = pcall(k.feed_many, k, { { "s1", { v = "d" } }, { "s1", { v = "e" } } })
      assert.is_false(ok)
      assert.matches("reads at most 1 per stream here", err)
      k:feed("s1", { v = "d" })
    end)

    it("only names the script's sources", function()
      local k = testing.load(pipeline_script())
      assert.has_error(function() k:feed("s3", { v = "a" }) end,
        'k:feed: "s3" is not a source of this script (it reads "s1", "s2")')
    end)

    it("passes data as the host does: strings, the last of a repeated field winning", function()
      local got
      local k = testing.load(pipeline_script {
        preprocess = function(stream, id, data) got = data return "x" end,
      })
      k:feed("s1", { "n", 1, "f", "a", "f", "b" })
      assert.same({ n = "1", f = "b" }, got)
    end)

    it("feeds list items, one list per read unless reliable", function()
      local seen = {}
      local k = testing.load(pipeline_script {
        source = { lists = { "l1", "l2" } },
        preprocess = function(list, item) seen[#seen + 1] = list .. ":" .. item return item end,
      })
      assert.equal("x", k:feed("l1", "x"))
      k:feed_many { { "l2", "y" }, { "l2", "z" } }
      assert.same({ "l1:x", "l2:y", "l2:z" }, seen)
      assert.same({ l1 = { "x" }, l2 = { "y", "z" } }, k:acked())
      assert.has_error(function() k:feed_many { { "l1", "a" }, { "l2", "b" } } end)
    end)
  end)

  describe("with a real redis-server", function()
    it("sends the script's commands to it", function()
      local srv = server.shared()
      local prefix = H.prefix("kit")
      local k = testing.load(pipeline_script {
        sink = function(items) rsghost.redis.call("RPUSH", prefix .. ":out", unpack(items)) end,
      }, { redis = srv.url })
      k:feed_many { { "s1", { v = "a" } }, { "s2", { v = "b" } } }
      assert.same({ "a", "b" }, srv.client():call("LRANGE", prefix .. ":out", 0, -1))
      assert.same({ "a", "b" }, k.redis:call("LRANGE", prefix .. ":out", 0, -1))
      assert.same({}, k:pending())
      k:close()
    end)

    it("passes a batch of any size in one command", function()
      local srv = server.shared()
      local prefix = H.prefix("kit")
      local k = testing.load(pipeline_script {
        batch = { size = 10000 },
        sink = rsghost.sink.redis_list(prefix .. ":big"),
      }, { redis = srv.url })
      local msgs = {}
      for i = 1, 10000 do msgs[i] = { "s1", { v = tostring(i) } } end
      k:feed_many(msgs)
      assert.equal(10000, k.redis:call("LLEN", prefix .. ":big"))
      assert.same({}, k:pending())
      k:close()
    end)
  end)
end)
