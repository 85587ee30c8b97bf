-- The consumer group pipeline as users rely on it, with the real binary and a
-- real redis-server: every message reaches the sink once and is acked; the
-- group is created (or reused) where asked; consumers of a group split the
-- work; groups each see everything; a preprocess error leaves only that
-- message pending; the backlog is read a bounded amount at a time.
local cjson = require "cjson"
local server = require "support.server"
local H = require "support.host"

describe("a consumer group pipeline", function()
  after_each(function() H.cleanup() end)

  it("delivers every message to the sink once, acks it all and leaves nothing pending", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local cjson = require "cjson"
local P = "{{P}}"
return {
  source = { streams = { P .. ":s1", P .. ":s2" }, group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data)
    if data.drop then return nil end
    return cjson.encode({ stream = stream, id = id, n = data.n, text = data.text,
                          consumer = rsghost.consumer, group = rsghost.group })
  end,
  batch = { size = 50, timeout = 0.1 },
  sink = function(items)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]])
    local h = H.start(t, { script = path, consumer = "worker-7" })
    local expected, dropped = {}, 0
    for _, s in ipairs { P .. ":s1", P .. ":s2" } do
      local ids = H.xadd_many(t.redis, s, 150, function(i)
        if i % 10 == 0 then return { "n", i, "drop", "1" } end
        return { "n", i, "text", "héllo ✓ " .. i }
      end)
      for i, id in ipairs(ids) do
        if i % 10 ~= 0 then expected[#expected + 1] = s .. " " .. id else dropped = dropped + 1 end
      end
    end
    assert.equal(30, dropped)

    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #expected, streams = { P .. ":s1", P .. ":s2" },
      group = P .. ":g", hosts = { h } })

    local got = {}
    for _, item in ipairs(out) do
      local d = cjson.decode(item)
      got[#got + 1] = d.stream .. " " .. d.id
      assert.equal("worker-7", d.consumer)
      assert.equal(P .. ":g", d.group)
      assert.equal("héllo ✓ " .. d.n, d.text)
    end
    H.assert_exactly_once(expected, got)
    -- The dropped messages were acked too: the group has read everything
    -- and nothing is pending.
    for _, s in ipairs { P .. ":s1", P .. ":s2" } do
      assert.equal(0, H.xpending(t.redis, s, P .. ":g").count)
      local last = t.redis:call("XREVRANGE", s, "+", "-", "COUNT", 1)[1][1]
      assert.equal(last, H.group_info(t.redis, s, P .. ":g")["last-delivered-id"])
    end
    assert.is_true(h:alive(), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("passes the entry's fields as a table, the last of repeated fields winning", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local cjson = require "cjson"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data) return cjson.encode(data) end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    t.redis:call("XADD", P .. ":s", "*", "a", "1", "b", "two words", "a", "3", "empty", "")
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 1, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    assert.same({ a = "3", b = "two words", empty = "" }, cjson.decode(out[1]))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("gives sinks Redis replies as Lua values, error replies through pcall", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local cjson = require "cjson"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items)
    local r = {}
    r.status = rsghost.redis.call("SET", P .. ":str", "abc")
    r.integer = rsghost.redis.call("INCRBY", P .. ":n", 5)
    r.bulk = rsghost.redis.call("GET", P .. ":str")
    r.missing_is_nil = rsghost.redis.call("GET", P .. ":missing") == nil
    r.array = rsghost.redis.call("MGET", P .. ":str", P .. ":missing")
    r.array_has_false = r.array[2] == false
    r.array[2] = nil
    local v, err = rsghost.redis.pcall("INCR", P .. ":str")
    r.pcall_value_nil = v == nil
    r.pcall_err = err
    local ok, raised = pcall(rsghost.redis.call, "HSET", P .. ":str", "f", "v")
    r.call_raised = not ok and tostring(raised)
    r.piped = rsghost.redis.pipeline({ { "INCR", P .. ":n" }, { "GET", P .. ":missing" } })
    r.items = items
    rsghost.redis.call("RPUSH", P .. ":out", cjson.encode(r))
  end,
}
]])
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 1)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 1, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local r = cjson.decode(out[1])
    assert.equal("OK", r.status)
    assert.equal(5, r.integer)
    assert.equal("abc", r.bulk)
    assert.is_true(r.missing_is_nil)
    assert.same({ "abc" }, r.array)
    assert.is_true(r.array_has_false)
    assert.is_true(r.pcall_value_nil)
    assert.matches("^ERR value is not an integer", r.pcall_err)
    assert.matches("WRONGTYPE", r.call_raised)
    assert.equal(6, r.piped[1])
    assert.is_false(r.piped[2])
    assert.same(ids, r.items)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("runs the built-in redis_list and redis_stream sinks", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data) return { n = data.n, id = id } end,
  batch = { size = 7, timeout = 0.05 },
  sink = {
    function(items)
      local ids = {}
      for i, item in ipairs(items) do ids[i] = item.id end
      rsghost.sink.redis_list(P .. ":list")(ids)
    end,
    rsghost.sink.redis_stream(P .. ":copy", { maxlen = 1000, approximate = true }),
  },
}
]])
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 30)
    local list = H.wait_sunk(t.redis, { out = P .. ":list", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    assert.same(ids, list)
    local copy = t.redis:call("XRANGE", P .. ":copy", "-", "+")
    assert.equal(#ids, #copy)
    for i, e in ipairs(copy) do
      local f = {}
      for k = 1, #e[2], 2 do f[e[2][k]] = e[2][k + 1] end
      assert.same({ n = tostring(i), id = ids[i] }, f)
    end
    assert.equal(0, h:stop(), h:describe())
  end)

  it("acknowledges with one XACK per stream per batch, not per message", function()
    -- Its own server: command statistics are per server.
    local srv = server.start()
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 50, timeout = false },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    H.eventually(function() return H.group_info(t.redis, P .. ":s", P .. ":g") end, 30,
      function() return h:describe() end)
    t.redis:call("CONFIG", "RESETSTAT")
    local ids = H.xadd_many(t.redis, P .. ":s", 300)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    -- 300 messages in batches of 50 (no batch timeout): 6 batches, 6 XACKs.
    local xacks = H.command_calls(t.redis, "xack")
    assert.is_true(xacks >= 1 and xacks <= 6, "XACK was called " .. xacks .. " times for 6 batches")
    assert.equal(0, h:stop(), h:describe())
  end)

  it("reuses an existing group and reads from where it stands", function()
    local t = H.context()
    local P = t.prefix
    local old = H.xadd_many(t.redis, P .. ":s", 20)
    t.redis:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "$")
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    local new = H.xadd_many(t.redis, P .. ":s", 30)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #new, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local c = H.compare(new, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.same({}, c.unexpected, "messages from before the group's position were delivered")
    assert.equal(20, #old)
    assert.is_true(h:alive(), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("creates a missing group at the start id of the streams map", function()
    local t = H.context()
    local P = t.prefix
    local ids = H.xadd_many(t.redis, P .. ":s", 20)
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = { [P .. ":s"] = "{{START}}" }, group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]], { START = ids[10] })
    local h = H.start(t, { script = path })
    local want = {}
    for i = 11, 20 do want[#want + 1] = ids[i] end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #want, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    H.assert_exactly_once(want, out)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("splits the messages of one group between two consumers, with no overlap and none missing", function()
    local t = H.context()
    local P = t.prefix
    -- Each consumer holds at most 20 messages and sinks slowly, so neither
    -- can take the whole backlog: the split is visible in the result.
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", count = 10, timeout = 0.2, max_in_flight = 20 },
  preprocess = function(stream, id, data) return rsghost.consumer .. " " .. id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    rsghost.redis.call("WAIT", 1, 50) -- a slow sink: 50 ms
  end,
}
]])
    local a = H.start(t, { script = path, consumer = "alice" })
    local b = H.start(t, { script = path, consumer = "bob" })
    H.eventually(function()
      local c = H.consumers(t.redis, P .. ":s", P .. ":g")
      return c.alice and c.bob
    end, 30, function() return a:describe() .. "\n" .. b:describe() end)
    local ids = H.xadd_many(t.redis, P .. ":s", 400)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { a, b } })
    local got, per = {}, { alice = 0, bob = 0 }
    for _, item in ipairs(out) do
      local who, id = item:match("^(%S+) (%S+)$")
      per[who] = per[who] + 1
      got[#got + 1] = id
    end
    local c = H.compare(ids, got)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates, "a message went to both consumers")
    assert.same({}, c.unexpected)
    assert.is_true(per.alice > 0 and per.bob > 0,
      string.format("no split: alice got %d, bob got %d", per.alice, per.bob))
    assert.equal(0, a:stop(), a:describe())
    assert.equal(0, b:stop(), b:describe())
  end)

  it("lets two groups each see every message", function()
    local t = H.context()
    local P = t.prefix
    local src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":{{G}}", timeout = 0.5 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 25, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out:{{G}}", unpack(items)) end,
}
]]
    local h1 = H.start(t, { script = H.script(t, src, { G = "raw" }), consumer = "c1" })
    local h2 = H.start(t, { script = H.script(t, src, { G = "summary" }), consumer = "c1" })
    local ids = H.xadd_many(t.redis, P .. ":s", 200)
    for _, g in ipairs { "raw", "summary" } do
      local out = H.wait_sunk(t.redis, { out = P .. ":out:" .. g, n = #ids, streams = P .. ":s", group = P .. ":" .. g,
        hosts = { h1, h2 } })
      local c = H.compare(ids, out)
      assert.same({}, c.missing, "group " .. g .. " missed messages")
      assert.equal(0, c.duplicates, "group " .. g)
      assert.same({}, c.unexpected)
    end
    assert.equal(0, h1:stop(), h1:describe())
    assert.equal(0, h2:stop(), h2:describe())
  end)

  it("leaves a message whose preprocess raised pending, logs its id and file:line, and carries on", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.5 },
  preprocess = function(stream, id, data)
    if data.bad then
      error("cannot handle n=" .. data.n)
    end
    return id
  end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 50, function(i)
      if i % 10 == 3 then return { "n", i, "bad", "yes" } end
      return { "n", i }
    end)
    local good, bad = {}, {}
    for i, id in ipairs(ids) do
      if i % 10 == 3 then bad[#bad + 1] = id else good[#good + 1] = id end
    end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #good, streams = P .. ":s", group = P .. ":g",
      pending = #bad, hosts = { h } })
    H.assert_exactly_once(good, out)
    -- Exactly the failed ones stay pending, for this consumer.
    local pending = H.pending_ids(t.redis, P .. ":s", P .. ":g")
    for _, id in ipairs(bad) do assert.equal("consumer-1", pending[id], "not pending: " .. id) end
    -- Each failure is logged on one line with the message id and the
    -- script's file:line (line 7 raises).
    for _, id in ipairs(bad) do
      local found = false
      for _, line in ipairs(h:log_lines()) do
        if line:find(id, 1, true) and line:find("script.lua:7:", 1, true) then found = true end
      end
      assert.is_true(found, "no log line names " .. id .. " and script.lua:7:\n" .. h:describe())
    end
    assert.is_true(h:alive(), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("drains a backlog larger than the default max_in_flight with the default settings", function()
    local t = H.context()
    local P = t.prefix
    local ids = H.xadd_many(t.redis, P .. ":s", 5000)
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path, log_level = "info" })
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("never holds more than max_in_flight unacknowledged messages, even with count = nil", function()
    local t = H.context()
    local P = t.prefix
    local ids = H.xadd_many(t.redis, P .. ":s", 300)
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, max_in_flight = 30 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    rsghost.redis.call("WAIT", 1, 20) -- a slow sink: 20 ms
  end,
}
]])
    local h = H.start(t, { script = path })
    -- Sample the group's pending count while the backlog drains: it counts
    -- what the host has read and not acknowledged.
    local most = 0
    H.eventually(function()
      local n = H.xpending(t.redis, P .. ":s", P .. ":g").count
      if n > most then most = n end
      return t.redis:call("LLEN", P .. ":out") >= #ids and n == 0
    end, 90, function() return h:describe() end)
    -- XPENDING also counts a sunk batch whose XACK is still on its way on
    -- the command connection while the read its room allowed, on the reader
    -- connection, got there first: at most one batch (10) more than the 30
    -- the host holds. A host that ignored max_in_flight would read the
    -- whole backlog (300) at once.
    assert.is_true(most <= 30 + 10, "up to " .. most .. " messages were in flight (max_in_flight = 30, batch 10)")
    assert.is_true(most >= 10, "the sample never saw a read: " .. most)
    local c = H.compare(ids, H.list(t.redis, P .. ":out"))
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
