-- Redis Sentinel: the host finds the master through the sentinels, and
-- follows it through a failover, asked for (SENTINEL FAILOVER) or forced
-- (the master killed), losing nothing the new master holds.
--
-- The spec writes every message to the master the sentinels report at that
-- moment and waits (WAIT 1) until the replica has it, so the new master
-- holds everything that was acknowledged before the failover. At the end,
-- every message the new master holds must have reached the output list, and
-- none may be pending. A message may arrive twice (an ack the old master
-- took but never replicated): that is the at-least-once the README states.
local sentinel = require "support.sentinel"
local server = require "support.server"
local H = require "support.host"

local SRC = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, {{HEART}} },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.5 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

-- Heartbeats on, with a claim_timeout far longer than a failover takes: the
-- heart must follow the master and keep beating, not stop the consumer.
local HEART = "heartbeat_interval = 0.2, claim_timeout = 30"

-- Adds n messages to the current master and waits until the replica has
-- them. Returns the ids (none when the master refused: a failover under way).
local function add(s, P, n)
  local r = s.client()
  local ok, ids = pcall(H.xadd_many, r, P .. ":s", n)
  if not ok then return {} end
  r:pcall("WAIT", 1, 1000)
  return ids
end

-- The end state on the current master: everything it holds was sunk, and
-- nothing is pending. Returns the ids it holds.
local function assert_all_sunk(s, P, h)
  local r = s.client()
  local ids
  H.eventually(function()
    ids = {}
    for _, e in ipairs(r:call("XRANGE", P .. ":s", "-", "+")) do ids[#ids + 1] = e[1] end
    local got = H.tally(H.list(r, P .. ":out"))
    for _, id in ipairs(ids) do
      if not got[id] then return false end
    end
    return H.xpending(r, P .. ":s", P .. ":g").count == 0
  end, 120, function()
    return string.format("every message on the new master sunk and none pending (%d held, %d in the list, %d pending)\n%s\n%s",
      #(ids or {}), r:call("LLEN", P .. ":out"), H.xpending(r, P .. ":s", P .. ":g").count,
      h:describe(), s.logs())
  end)
  return ids
end

describe("with redis+sentinel:// URLs", function()
  local s
  setup(function() s = sentinel.start { name = "mymaster" } end)
  teardown(function() if s then s.stop() end end)
  after_each(function() H.cleanup() end)

  it("lists and redrives dead letters on the master the sentinels name", function()
    local m = s.master()
    local t = H.context { server = m }
    local P = t.prefix
    local path = H.script(t, [[
return {
  source = { streams = "{{P}}:s", group = "{{P}}:g", dead_letter = "{{P}}:dlq" },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]])
    local r = s.client()
    local entry = r:call("XADD", P .. ":dlq", "*", "rsghost:stream", P .. ":s", "rsghost:id", "1-1",
      "rsghost:group", P .. ":g", "rsghost:consumer", "c1", "rsghost:deliveries", "1",
      "rsghost:error", "boom", "rsghost:failed_at", "1700000000000", "n", "1")
    -- Nothing listens on the first address: the command asks the next one.
    local url = s.url:gsub("^redis%+sentinel://", "redis+sentinel://127.0.0.1:" .. server.free_port() .. ",")
    local code, out, err = H.run { "dead-letters", "--redis", url, path }
    assert.equal(0, code, out .. err)
    assert.matches(entry:gsub("%-", "%%-") .. "%s+" .. (P .. ":s"):gsub("%p", "%%%0") .. "%s+1%-1%s+1%s+boom", out)
    code, out, err = H.run { "redrive", "--redis", url, path, entry }
    assert.equal(0, code, out .. err)
    local new = out:match(" %-> %S+ (%S+)\n")
    assert.same({ { new, { "n", "1" } } }, r:call("XRANGE", P .. ":s", "-", "+"))
    assert.equal(0, r:call("XLEN", P .. ":dlq"))
  end)

  it("finds the master through the sentinels, skipping one that is down, and runs the pipeline", function()
    local m = s.master()
    local t = H.context { server = m }
    local P = t.prefix
    -- Nothing listens on the first address: the host must ask the next ones.
    local dead = server.free_port()
    local url = s.url:gsub("^redis%+sentinel://", "redis+sentinel://127.0.0.1:" .. dead .. ",")
    local h = H.start(t, { script = H.script(t, SRC, { HEART = "" }), redis = url })
    local ids = add(s, P, 50)
    local out = H.wait_sunk(s.client(), { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 60 })
    H.assert_exactly_once(ids, out)
    assert.truthy(h:log():find("redis reader: master 'mymaster' is at 127.0.0.1:" .. m.port, 1, true), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("follows a SENTINEL FAILOVER and loses nothing the new master holds", function()
    local t = H.context { server = s.master() }
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, SRC, { HEART = HEART }), redis = s.url, consumer = "c1" })
    local before = add(s, P, 50)
    H.wait_sunk(s.client(), { out = P .. ":out", n = #before, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 60 })
    add(s, P, 50) -- in flight when the failover starts

    local old = s.master()
    s.start_failover()
    -- During: keep adding to whichever server the sentinels call master.
    H.eventually(function()
      add(s, P, 5)
      return s.master_port() ~= old.port
    end, 90, "the failover")
    local new = s.wait_failover(old)
    add(s, P, 50)

    assert_all_sunk(s, P, h)
    assert.truthy(h:log():find("master 'mymaster' moved from 127.0.0.1:" .. old.port .. " to 127.0.0.1:" .. new.port, 1, true),
      h:describe())
    -- The heart followed.
    H.eventually(function() return h:log():find("redis heart: master 'mymaster' is at 127.0.0.1:" .. new.port, 1, true) end,
      30, function() return h:describe() end)
    assert.is_true(h:alive(), h:describe())
    assert.falsy(h:log():find("own heartbeats not seen", 1, true), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("follows the promotion when the master is killed", function()
    local t = H.context { server = s.master() }
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, SRC, { HEART = HEART }), redis = s.url, consumer = "c2" })
    local before = add(s, P, 50)
    H.wait_sunk(s.client(), { out = P .. ":out", n = #before, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 60 })
    add(s, P, 50)

    local new, old = s.kill_master()
    add(s, P, 50)

    assert_all_sunk(s, P, h)
    assert.truthy(h:log():find("master 'mymaster' is at 127.0.0.1:" .. new.port, 1, true), h:describe())
    assert.truthy(old.port ~= new.port)
    H.eventually(function() return h:log():find("redis heart: master 'mymaster' is at 127.0.0.1:" .. new.port, 1, true) end,
      30, function() return h:describe() end)
    assert.is_true(h:alive(), h:describe())
    assert.falsy(h:log():find("own heartbeats not seen", 1, true), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)
end)
