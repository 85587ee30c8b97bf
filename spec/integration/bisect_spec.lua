-- Poison messages in sinks, with the real binary and a real redis-server: a
-- batch a sink keeps rejecting is bisected after retry.max_attempts and the
-- items it rejects on their own go to the dead-letter stream with its error
-- (the same server-side script as preprocess errors); Redis going away while
-- a sink runs is an outage, never a reason to dead-letter anything.
local server = require "support.server"
local H = require "support.host"

local dead_letters = H.dead_letters

describe("a sink that rejects some messages", function()
  after_each(function() H.cleanup() end)

  it("dead-letters exactly those, after max_attempts, and sinks every other message once", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data)
    return data.bad and ("BAD " .. id) or id
  end,
  batch = { size = 100, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2, max_attempts = 2 },
  sink = function(items)
    for _, item in ipairs(items) do
      if item:find("^BAD ") then error("sink rejects " .. item) end
    end
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]], nil, "rejecting.lua")
    local marked = { [17] = true, [500] = true, [501] = true, [999] = true }
    local ids = H.xadd_many(t.redis, P .. ":s", 1000, function(i)
      if marked[i] then return { "n", i, "bad", "1" } end
      return { "n", i }
    end)
    local h = H.start(t, { script = path, consumer = "c1" })
    local want, bad = {}, {}
    for i, id in ipairs(ids) do
      if marked[i] then bad[#bad + 1] = id else want[#want + 1] = id end
    end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #want, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 60 })
    H.assert_exactly_once(want, out)
    local dead
    H.eventually(function()
      dead = dead_letters(t.redis, P .. ":dlq")
      return #dead == #bad
    end, 30, function() return h:describe() end)
    local got = {}
    for _, f in ipairs(dead) do
      got[#got + 1] = f["rsghost:id"]
      assert.equal(P .. ":s", f["rsghost:stream"])
      assert.equal("1", f["bad"])
      assert.matches("rejecting%.lua:%d+: sink rejects BAD " .. f["rsghost:id"]:gsub("%-", "%%-") .. "$",
        f["rsghost:error"])
    end
    table.sort(got, H.id_less)
    assert.same(bad, got)
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.is_true(#h:log_lines("bisecting it") >= 1, h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("dead-letters nothing when Redis stops while a sink runs; everything arrives after the restart",
    function()
    local srv = server.start { persist = true }
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    local P = t.prefix
    -- max_attempts = 1: a lost connection counted as an attempt would
    -- bisect at once. The pipeline of SETs keeps each sink call on the wire
    -- long enough for the stop to catch one.
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local big = string.rep("x", 1024)
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 20, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.5, max_attempts = 1 },
  sink = function(items)
    local cmds = {}
    for i = 1, 500 do cmds[i] = { "SET", P .. ":big:" .. i, big } end
    rsghost.redis.pipeline(cmds)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]])
    local ids = H.xadd_many(t.redis, P .. ":s", 1000)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function() return t.redis:call("LLEN", P .. ":out") >= 100 end, 60,
      function() return h:describe() end)
    srv.proc:signal("STOP")
    H.sleep(0.2)
    srv.kill()
    H.sleep(2) -- many retries at 0.05..0.5 s, each failing with the outage
    srv.restart()
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 120 })
    -- At least once: a batch whose reply was lost with the connection is
    -- written again.
    assert.same({}, H.compare(ids, out).missing)
    assert.equal(0, t.redis:call("EXISTS", P .. ":dlq"), h:describe())
    assert.equal(0, #h:log_lines("bisecting"), h:describe())
    -- The outage did reach a sink (and was not counted).
    assert.is_true(#h:log_lines("sink 1 of 1 failed .*connection to redis lost before the reply came")
      + #h:log_lines("sink 1 of 1 failed .*not connected to redis %(reconnecting%)") >= 1, h:describe())
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
