-- Poison messages in sinks: retry.max_attempts, and the bisection that
-- finds the items a sink rejects, through the test kit (the C host runs the
-- same pipeline code: spec/integration/bisect_spec.lua holds it to the same
-- rules against a real server).
local script = require "rsghost.script"
local testing = require "rsghost.testing"

local HERE = debug.getinfo(1, "S").source:sub(2)

local function load_error(t)
  local ok, err = pcall(script.validate, t, HERE)
  assert(not ok, "script loaded, but should have failed")
  return err
end

local SOURCE = { streams = "s", group = "g", dead_letter = "dlq" }

local function has_marker(items)
  for _, item in ipairs(items) do
    if item.bad then error("rejected item " .. item.n) end
  end
end

-- 1000 messages, 1 in 1000 marked: returns the kit and the marked ids.
local function run(sinks, opts)
  opts = opts or {}
  local k = testing.load({
    source = SOURCE,
    preprocess = function(_, _, data) return { n = data.n, bad = data.bad == "1" } end,
    -- With a size of its own, a batch waits to be full (not one per read).
    batch = opts.size and { size = opts.size, timeout = false } or { size = 100 },
    sink = sinks,
    retry = { initial = 0.1, max = 1, max_attempts = 2 },
  })
  local marked, entries = {}, {}
  for i = 1, 1000 do
    local id = i .. "-0"
    local bad = (i % 1000 == 337 or opts.extra and opts.extra[i]) and "1" or "0"
    if bad == "1" then marked[#marked + 1] = id end
    entries[#entries + 1] = { "s", id, { n = tostring(i), bad = bad } }
  end
  for i = 1, 1000, 100 do
    local chunk = {}
    for j = i, i + 99 do chunk[#chunk + 1] = entries[j] end
    k:feed_many(chunk)
    k:drain()
  end
  return k, marked
end

local function count_sunk(k, i)
  local seen = {}
  for _, call in ipairs(k:sink_calls(i)) do
    for _, item in ipairs(call) do seen[item.n] = (seen[item.n] or 0) + 1 end
  end
  return seen
end

describe("retry.max_attempts", function()
  describe("checks", function()
    it("is a positive integer", function()
      local err = load_error({ source = SOURCE, preprocess = function() end, sink = function() end,
        retry = { max_attempts = 0 } })
      assert.matches("retry.max_attempts must be a positive integer, got 0", err, 1, true)
    end)

    it("needs source.dead_letter: without it the setting could not take effect", function()
      local err = load_error({ source = { streams = "s", group = "g" }, preprocess = function() end,
        sink = function() end, retry = { max_attempts = 3 } })
      assert.matches("retry.max_attempts needs source.dead_letter", err, 1, true)
    end)

    it("defaults to unlimited", function()
      local cfg = script.validate({ source = SOURCE, preprocess = function() end, sink = function() end }, HERE)
      assert.is_nil(cfg.retry.max_attempts)
    end)
  end)

  describe("bisection", function()
    it("dead-letters exactly the items a sink rejects, sinks every other item once per sink", function()
      local k, marked = run({ has_marker, function() end }, { extra = { [5] = true, [6] = true, [900] = true } })
      local dead = {}
      for _, d in ipairs(k:dead_letters()) do
        dead[#dead + 1] = d.id
        assert.equal("s", d.stream)
        assert.matches("rejected item %d+", d.error)
        assert.equal(1, d.deliveries)
      end
      table.sort(dead)
      table.sort(marked)
      assert.same(marked, dead)
      assert.equal(4, #dead)
      assert.same({}, k:pending())
      assert.equal(996, #k:acked("s"))
      -- What the sinks took, once: sink 1 kept each good item once in the
      -- calls that succeeded; sink 2 succeeded on every whole batch and is
      -- never run again for any part of it.
      local ok_calls = 0
      local sunk1 = {}
      for _, call in ipairs(k:sink_calls(1)) do
        local bad = false
        for _, item in ipairs(call) do bad = bad or item.bad end
        if not bad then
          ok_calls = ok_calls + 1
          for _, item in ipairs(call) do sunk1[item.n] = (sunk1[item.n] or 0) + 1 end
        end
      end
      local seen2 = count_sunk(k, 2)
      for i = 1, 1000 do
        local n = tostring(i)
        if i == 5 or i == 6 or i == 900 or i == 337 then
          assert.is_nil(sunk1[n])
        else
          assert.equal(1, sunk1[n], "item " .. n .. " sunk by sink 1")
        end
        assert.equal(1, seen2[n], "item " .. n .. " sunk by sink 2")
      end
      assert.equal(10, #k:sink_calls(2))
      -- About 2*log2(100) calls per bad item, plus the max_attempts on the
      -- whole batch; the 7 good batches take one call each.
      local calls = #k:sink_calls(1)
      assert.is_true(calls <= 7 + 3 * (2 + 2 * 7 + 1), "sink 1 called " .. calls .. " times")
      assert.truthy(k:logged("bisecting it", "error"))
      assert.is_false(k:paused())
    end)

    it("needs about 2*log2(batch) sink calls for one bad item", function()
      local k = run(has_marker, { size = 1000 })
      assert.equal(1, #k:dead_letters())
      assert.equal(999, #k:acked("s"))
      -- 2 attempts on the whole batch, then 2 per level of 10 (1000 -> 1).
      assert.equal(2 + 2 * 10, #k:sink_calls(1))
    end)

    it("keeps a replayed message's delivery count in its dead letter", function()
      local k = testing.load({ source = SOURCE, preprocess = function(_, _, d) return d end,
        sink = function(items) for _, it in ipairs(items) do assert(it.bad ~= "1", "bad") end end,
        retry = { initial = 0.1, max = 1, max_attempts = 1 } })
      k:feed_many { { "s", "1-0", { bad = "0" } }, { "s", "2-0", { bad = "1" }, deliveries = 3 } }
      k:drain()
      local d = k:dead_letters()
      assert.equal(1, #d)
      assert.equal("2-0", d[1].id)
      assert.equal(3, d[1].deliveries)
      assert.same({ "1-0" }, k:acked("s"))
    end)
  end)

  describe("transient errors", function()
    it("are retried for ever, never dead-lettered: the host's lost-connection text", function()
      local k = testing.load({ source = SOURCE, preprocess = function(_, _, d) return d end,
        sink = function(items) require("rsghost").redis.call("RPUSH", "out", #items) end,
        retry = { initial = 0.1, max = 1, max_attempts = 2 } })
      k:fail_redis("RPUSH", testing.LOST)
      k:feed_many { { "s", "1-0", { a = "1" } }, { "s", "2-0", { a = "2" } } }
      k:advance(30)
      assert.is_true(#k:sink_calls(1) > 10)
      assert.same({}, k:dead_letters())
      assert.same({ s = { "1-0", "2-0" } }, k:pending())
      k:fail_redis("RPUSH", "not connected to redis (reconnecting)")
      k:advance(10)
      k:fail_redis("RPUSH", "LOADING Redis is loading the dataset in memory")
      k:advance(10)
      assert.same({}, k:dead_letters())
      k:heal_redis()
      k:drain()
      assert.same({}, k:dead_letters())
      assert.same({ "1-0", "2-0" }, k:acked("s"))
    end)

    -- A sink that rejects the whole batch once (max_attempts 1: bisection
    -- starts), then meets an outage on every part while `down`.
    local function outage_kit()
      local state = { calls = 0, down = true }
      local k = testing.load({ source = SOURCE, preprocess = function(_, _, d) return d end,
        sink = function(items)
          state.calls = state.calls + 1
          if state.calls > 1 and state.down then error(testing.LOST) end
          for _, it in ipairs(items) do if it.bad == "1" then error("bad item") end end
        end,
        retry = { initial = 0.1, max = 1, max_attempts = 1 } })
      k:feed_many { { "s", "1-0", { bad = "0" } }, { "s", "2-0", { bad = "1" } } }
      return k, state
    end

    it("while bisecting, hold the part until Redis is back", function()
      local k, state = outage_kit()
      k:advance(60)
      assert.is_true(state.calls > 20)
      assert.same({}, k:dead_letters())
      assert.is_true(k:paused())
      assert.same({ s = { "1-0", "2-0" } }, k:pending())
      state.down = false
      k:drain()
      local d = k:dead_letters()
      assert.equal(1, #d)
      assert.equal("2-0", d[1].id)
      assert.matches("bad item", d[1].error)
      assert.same({ "1-0" }, k:acked("s"))
      assert.is_false(k:paused())
    end)

    it("a stop while bisecting gives up and leaves the rest pending", function()
      local k = outage_kit()
      k:advance(1)
      assert.is_false(k:stop())
      assert.is_true(k:finished())
      assert.equal(2, k:given_up())
      assert.same({}, k:dead_letters())
      assert.same({ s = { "1-0", "2-0" } }, k:pending())
    end)
  end)
end)
