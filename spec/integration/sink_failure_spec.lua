-- A sink that raises: nothing of its batch is acked, nothing is lost, the
-- batch is retried with backoff and, once the sink works again, everything
-- arrives and is acked. Only the sinks that failed are retried.
local H = require "support.host"

describe("a failing sink", function()
  after_each(function() H.cleanup() end)

  it("acks nothing and loses nothing; once it succeeds everything arrives and is acked", function()
    local t = H.context()
    local P = t.prefix
    -- The sink fails while the key P:fail exists (line 11 raises).
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 20, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.5 },
  sink = function(items)
    local failing = rsghost.redis.call("EXISTS", P .. ":fail") == 1
    if failing then
      error("the database is down")
    end
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]])
    t.redis:call("SET", P .. ":fail", "1")
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 100)
    -- It has failed and retried at least twice.
    H.eventually(function() return #h:log_lines("the database is down") >= 3 end, 60,
      function() return h:describe() end)
    local failures = h:log_lines("the database is down")
    assert.matches("script%.lua:11:", failures[1])
    -- Nothing acked: every message the group delivered is still pending.
    -- (One transaction, so that a read in between cannot skew the comparison.)
    local replies = t.redis:pipeline {
      { "MULTI" },
      { "XINFO", "GROUPS", P .. ":s" },
      { "XPENDING", P .. ":s", P .. ":g" },
      { "EXEC" },
    }
    local last_delivered
    for _, g in ipairs(replies[4][1]) do
      for i = 1, #g, 2 do if g[i] == "last-delivered-id" then last_delivered = g[i + 1] end end
    end
    local delivered = 0
    for i, id in ipairs(ids) do if id == last_delivered then delivered = i end end
    assert.is_true(delivered >= 20, "the first batch was not even read: " .. h:describe())
    assert.equal(delivered, replies[4][2][1], "a message was acked while its sink failed")
    assert.equal(0, t.redis:call("LLEN", P .. ":out"))
    assert.is_true(h:alive(), h:describe())

    t.redis:call("DEL", P .. ":fail")
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    H.assert_exactly_once(ids, out)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("stops reading while a batch waits for its retry", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", count = 10, timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2 },
  sink = function(items)
    if rsghost.redis.call("EXISTS", P .. ":fail") == 1 then error("sink is down") end
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]])
    t.redis:call("SET", P .. ":fail", "1")
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 10)
    H.eventually(function() return #h:log_lines("sink is down") >= 1 end, 60, function() return h:describe() end)
    local more = H.xadd_many(t.redis, P .. ":s", 200)
    -- Several retries later, the reader has not gone on through the backlog
    -- (one read of count = 10 may have been under way when it paused).
    H.eventually(function() return #h:log_lines("sink is down") >= 6 end, 60, function() return h:describe() end)
    local pending = H.xpending(t.redis, P .. ":s", P .. ":g").count
    assert.is_true(pending <= 20, pending .. " messages were read while the sink was failing")
    t.redis:call("DEL", P .. ":fail")
    for _, id in ipairs(more) do ids[#ids + 1] = id end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("retries only the sinks that failed for the batch", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 20, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.5 },
  sink = {
    function(items) rsghost.redis.call("RPUSH", P .. ":a", unpack(items)) end,
    function(items)
      if rsghost.redis.call("EXISTS", P .. ":fail") == 1 then error("sink b is down") end
      rsghost.redis.call("RPUSH", P .. ":b", unpack(items))
    end,
  },
}
]])
    t.redis:call("SET", P .. ":fail", "1")
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 60)
    H.eventually(function() return #h:log_lines("sink b is down") >= 3 end, 60, function() return h:describe() end)
    assert.equal(0, t.redis:call("LLEN", P .. ":b"))
    t.redis:call("DEL", P .. ":fail")
    local b = H.wait_sunk(t.redis, { out = P .. ":b", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local a = H.list(t.redis, P .. ":a")
    for name, got in pairs { a = a, b = b } do
      local c = H.compare(ids, got)
      assert.same({}, c.missing, "sink " .. name)
      assert.equal(0, c.duplicates, "sink " .. name .. " saw a batch twice")
      assert.same({}, c.unexpected, "sink " .. name)
    end
    assert.equal(0, h:stop(), h:describe())
  end)

  it("does not hold up a stop: SIGTERM gives up on the failing batch, exits 1, leaves it pending", function()
    local t = H.context()
    local P = t.prefix
    -- The sink writes to a key of the wrong type: it fails on every attempt.
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":str", unpack(items)) end,
}
]])
    t.redis:call("SET", P .. ":str", "not a list")
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 25)
    H.eventually(function() return #h:log_lines("WRONGTYPE") >= 3 end, 60, function() return h:describe() end)
    assert.equal(1, h:stop(), h:describe())
    assert.is_true(#h:log_lines("stopping with %d+ message%(s%) not sunk: sink 1 still failing after attempt %d+; "
      .. "they stay pending in Redis") == 1, h:describe())
    -- Every message is still there: pending, or not yet read.
    local info = H.group_info(t.redis, P .. ":s", P .. ":g")
    local pending = H.xpending(t.redis, P .. ":s", P .. ":g").count
    local delivered = 0
    for i, id in ipairs(ids) do if id == info["last-delivered-id"] then delivered = i end end
    assert.is_true(pending >= 10)
    assert.equal(delivered, pending, "a message was acked although its sink never succeeded")
  end)
end)
