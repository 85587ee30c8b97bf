-- A sink cannot wedge the connection the host shares with every sink and
-- with its own acks: a MULTI left open, a blocking pop or a SELECT would
-- queue, block or misdirect every later command. Such commands are refused
-- before they are sent; a transaction goes whole through
-- rsghost.redis.pipeline, and one that Redis discards leaves nothing open.
local H = require "support.host"

describe("a sink on the shared connection", function()
  after_each(function() H.cleanup() end)

  it("cannot leave a MULTI open: the command is refused and acks keep flowing", function()
    local t = H.context()
    local P = t.prefix
    -- Attempt 1 of every batch sends MULTI and raises before EXEC (what
    -- wedged the host before); the retry writes with a whole transaction.
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local tries = 0
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 50, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.05 },
  sink = function(items)
    tries = tries + 1
    if tries % 2 == 1 then
      rsghost.redis.call("MULTI")
      rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
      error("gave up before EXEC")
    end
    local cmds = { { "MULTI" }, { "RPUSH", P .. ":out", unpack(items) }, { "INCR", P .. ":batches" }, { "EXEC" } }
    rsghost.redis.pipeline(cmds)
  end,
}
]])
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 200)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    H.assert_exactly_once(ids, out)
    local refused = h:log_lines("MULTI is not allowed in a sink: use rsghost.redis.pipeline")
    assert.is_true(#refused >= 1, h:describe())
    assert.is_nil(h:log():find("can not be nested", 1, true), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("gets a transaction Redis discards as an error, and the connection stays usable", function()
    local t = H.context()
    local P = t.prefix
    -- The first batch's transaction holds a command with a wrong number of
    -- arguments: Redis discards it at EXEC (EXECABORT). The retry is fine.
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local bad = true
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.05 },
  sink = function(items)
    local cmds = { { "MULTI" }, { "RPUSH", P .. ":out", unpack(items) } }
    if bad then cmds[#cmds + 1] = { "INCR" } end
    bad = false
    cmds[#cmds + 1] = { "EXEC" }
    rsghost.redis.pipeline(cmds)
  end,
}
]])
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 30)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    H.assert_exactly_once(ids, out)
    -- The failed command is named; the discarded RPUSH wrote nothing (exactly once above).
    assert.is_true(#h:log_lines("wrong number of arguments for 'incr' command %(command 3 of 4%)") >= 1, h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("refuses blocking and connection-state commands with what to use instead", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local n = 0
local tries = { { "BLPOP", P .. ":nothing", 0 }, { "SELECT", 1 }, { "SUBSCRIBE", "x" } }
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.05 },
  sink = function(items)
    n = n + 1
    if tries[n] then rsghost.redis.call(unpack(tries[n])) end
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]])
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 5)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    H.assert_exactly_once(ids, out)
    assert.equal(1, #h:log_lines("BLPOP is not allowed in a sink: it blocks the connection the host's acks use; use its non%-blocking form %(LPOP%)"), h:describe())
    assert.equal(1, #h:log_lines("SELECT is not allowed in a sink: .* put the database in that URL"), h:describe())
    assert.equal(1, #h:log_lines("SUBSCRIBE is not allowed in a sink"), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)
end)
