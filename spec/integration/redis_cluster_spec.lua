-- Redis Cluster (redis+cluster://): a real cluster on loopback, three
-- masters and three replicas made by `redis-cli --cluster create`, and the
-- tutorial's pipeline reading streams spread over every master.
local cjson = require "cjson"
local H = require "support.host"
local native = require "rsghost.native"
local proc = require "support.proc"
local redis_cluster = require "support.redis_cluster"

local SCRIPT, lua_list = redis_cluster.TUTORIAL, redis_cluster.lua_list

local function script(t, streams, extra)
  return H.script(t, SCRIPT, { STREAMS = lua_list(streams), EXTRA = extra or "" })
end

-- "stream id" of every JSON item in the output list.
local function sunk(r, out)
  local got = {}
  for _, item in ipairs(H.list(r, out)) do
    local d = cjson.decode(item)
    got[#got + 1] = d._source .. " " .. d._id
  end
  return got
end

local function add(r, streams, per, from)
  local want = {}
  for _, s in ipairs(streams) do
    local ids = H.xadd_many(r, s, per, function(i) return { "n", (from or 0) + i } end)
    for _, id in ipairs(ids) do want[#want + 1] = s .. " " .. id end
  end
  return want
end

local function append(a, b)
  for _, x in ipairs(b) do a[#a + 1] = x end
  return a
end

describe("redis+cluster://", function()
  local c, r

  setup(function()
    c = redis_cluster.start()
    r = c.client()
  end)
  teardown(function() if c then c.stop() end end)
  after_each(function() H.cleanup() end)

  local function context(tag)
    local t = H.context { tag = tag }
    t.url = c.url
    t.redis = r
    return t
  end

  it("routes keys to the slots the cluster gives them, hash tags included", function()
    local keys = { "somekey", "foo{hash_tag}", "bar{hash_tag}", "{orders}:eu", "{orders}:us",
      "foo{}{bar}", "foo{{bar}}zap", "a{b", "", "é", "stream-" .. string.rep("x", 300) }
    for i = 1, 200 do keys[#keys + 1] = "k" .. i * 7919 end
    local some = c.masters()[1].client()
    for _, k in ipairs(keys) do
      assert.equal(some:call("CLUSTER", "KEYSLOT", k), native.key_slot(k), k)
    end
    assert.equal(native.key_slot("{orders}:eu"), native.key_slot("{orders}:us"))
  end)

  it("reads six streams spread over three masters with two consumers: every message once, nothing pending", function()
    local t = context("six")
    local streams = redis_cluster.spread(c, t.prefix, 6)
    local nodes = {}
    for _, s in ipairs(streams) do nodes[c.node_of(s).port] = true end
    local n = 0
    for _ in pairs(nodes) do n = n + 1 end
    assert.equal(3, n, "the streams are on every master")
    local path = script(t, streams)
    local out, group = t.prefix .. ":out", t.prefix .. ":g"
    -- Each consumer alone reads all six streams (Redis lists a consumer of
    -- a stream only once it was given something there)...
    local want = add(r, streams, 100)
    local h1 = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.wait_sunk(r, { out = out, n = #want, streams = streams, group = group, hosts = { h1 } })
    assert.equal(0, h1:stop(), h1:describe())
    append(want, add(r, streams, 100, 100))
    local h2 = H.start(t, { script = path, consumer = "c2", redis = c.url })
    H.wait_sunk(r, { out = out, n = #want, streams = streams, group = group, hosts = { h2 } })
    for _, s in ipairs(streams) do
      local names = H.consumers(r, s, group)
      assert.is_true(names.c1 and names.c2, s)
    end
    -- ...and the two together share them: every message once, nothing
    -- pending, also for what is added while they run.
    append(want, add(r, streams, 100, 200))
    h1 = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.eventually(function() return h1:log():find("slot reader: connected", 1, true) end, 60,
      function() return h1:describe() end)
    append(want, add(r, streams, 100, 300))
    H.wait_sunk(r, { out = out, n = #want, streams = streams, group = group, hosts = { h1, h2 } })
    H.assert_exactly_once(want, sunk(r, out))
    assert.matches("6 stream%(s%) in 6 slot group%(s%)", h1:log())
    assert.matches("cluster of 3 masters", h1:log())
    assert.equal(0, h1:stop(), h1:describe())
    assert.equal(0, h2:stop(), h2:describe())
    assert.equal(#want, #sunk(r, out))
  end)

  it("reads streams that share a hash tag in one slot group, past a seed that is down", function()
    local t = context("tag")
    local tag = "{" .. t.prefix .. "}"
    local streams = { tag .. ":eu", tag .. ":us", tag .. ":asia" }
    local path = script(t, streams)
    local want = add(r, streams, 40)
    -- The first seed named is down: the next one tells the map.
    local dead = "127.0.0.1:" .. require("support.server").free_port()
    local url = c.url:gsub("^redis%+cluster://", "redis+cluster://" .. dead .. ",")
    local h = H.start(t, { script = path, consumer = "c1", redis = url })
    H.wait_sunk(r, { out = t.prefix .. ":out", n = #want, streams = streams, group = t.prefix .. ":g",
      hosts = { h } })
    H.assert_exactly_once(want, sunk(r, t.prefix .. ":out"))
    assert.matches("3 stream%(s%) in 1 slot group%(s%)", h:log())
    assert.equal(0, h:stop(), h:describe())
  end)

  -- SIGSTOPs a master, with a node timeout long enough that the cluster
  -- does not fail it over meanwhile; returns the function that resumes it
  -- (also run when the test ends, with the node timeout put back).
  local function stop_master(victim)
    for _, srv in ipairs(c.servers) do srv.client():call("CONFIG", "SET", "cluster-node-timeout", "120000") end
    victim.proc:signal("STOP")
    local stopped = true
    local function resume()
      if stopped then victim.proc:signal("CONT") end
      stopped = false
    end
    finally(function()
      resume()
      for _, srv in ipairs(c.servers) do srv.client():call("CONFIG", "SET", "cluster-node-timeout", "2000") end
    end)
    return resume
  end

  it("reads the streams of the masters it reaches while one is stopped, the rest once it is back", function()
    local t = context("down")
    local streams = redis_cluster.spread(c, t.prefix, 6)
    local out, group = t.prefix .. ":out", t.prefix .. ":g"
    -- A master that does not hold the output list stops before the host
    -- starts; the node timeout is long enough that the cluster does not
    -- fail it over meanwhile (its slots have no reachable master).
    local victim
    for _, m in ipairs(c.masters()) do
      if m.port ~= c.node_of(out).port then victim = m end
    end
    local up, down, want = {}, {}, add(r, streams, 50)
    for _, s in ipairs(streams) do
      local list = c.node_of(s).port == victim.port and down or up
      list[#list + 1] = s
    end
    assert.equal(2, #down)
    local resume = stop_master(victim)
    local h = H.start(t, { script = H.script(t, SCRIPT, { STREAMS = lua_list(streams), EXTRA = "" }),
      consumer = "c1", redis = c.url })
    -- The streams on the other masters are processed, all of them...
    local function sunk_from(list)
      local on = {}
      for _, s in ipairs(list) do on[s] = true end
      local n = 0
      for _, x in ipairs(sunk(r, out)) do
        if on[x:match("^(%S+)")] then n = n + 1 end
      end
      return n
    end
    H.eventually(function() return sunk_from(up) == 4 * 50 end, 60, function() return h:describe() end)
    assert.equal(0, sunk_from(down))
    assert.matches("cannot reach master " .. victim.host .. ":" .. victim.port, h:log())
    -- ...and those of the stopped one once it is back, nothing pending.
    resume()
    H.wait_sunk(r, { out = out, n = #want, streams = streams, group = group, hosts = { h }, timeout = 120 })
    H.assert_exactly_once(want, sunk(r, out))
    assert.matches("master " .. victim.host .. ":" .. victim.port .. " can be reached again", h:log())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("holds a sink's command for a stopped master's slot until it is back, sent once", function()
    local t = context("park")
    local out = t.prefix .. ":out"
    -- The stream and the output list on one master, a counter on another.
    local victim, counter
    for _, m in ipairs(c.masters()) do
      if m.port ~= c.node_of(out).port then victim = m end
    end
    local i = 0
    repeat
      i = i + 1
      counter = "{" .. t.prefix .. ":n" .. i .. "}"
    until c.node_of(counter).port == victim.port
    local stream = "{" .. t.prefix .. ":out}:s"
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { streams = { "{{S}}" }, group = "{{P}}:g", timeout = 0.2 },
  preprocess = function(stream, id) return id end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.1, max = 0.3 },
  sink = function(items)
    rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items))
    rsghost.redis.call("INCRBY", "{{N}}", #items)
  end,
}
]], { S = stream, N = counter })
    local want = H.xadd_many(r, stream, 30)
    local resume = stop_master(victim)
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    -- A first batch is pushed; its INCRBY waits for the stopped master.
    H.eventually(function() return #H.list(r, out) > 0 end, 60, function() return h:describe() end)
    assert.matches("cannot reach master " .. victim.host .. ":" .. victim.port, h:log())
    resume()
    H.wait_sunk(r, { out = out, n = #want, streams = stream, group = t.prefix .. ":g", hosts = { h },
      timeout = 120 })
    -- It waited rather than failed: no batch was pushed twice, and the
    -- counter counts each message once.
    H.assert_exactly_once(want, H.list(r, out))
    assert.equal(tostring(#want), tostring(r:call("GET", counter)))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("goes on through a replica promoted with CLUSTER FAILOVER mid-run", function()
    local t = context("failover")
    local streams = redis_cluster.spread(c, t.prefix, 3)
    local path = script(t, streams)
    local want = add(r, streams, 100)
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.eventually(function() return #H.list(r, t.prefix .. ":out") > 0 end, 60, function() return h:describe() end)
    -- The master of the first stream hands over to its replica.
    append(want, add(r, streams, 50, 100))
    local replica = c.failover(streams[1])
    assert.equal(replica.port, c.node_of(streams[1]).port)
    append(want, add(r, streams, 50, 150))
    H.wait_sunk(r, { out = t.prefix .. ":out", n = #want, streams = streams, group = t.prefix .. ":g",
      hosts = { h }, timeout = 120 })
    -- Every message the cluster kept arrived; a failover may deliver one
    -- twice (at least once), never lose one.
    local got = H.compare(want, sunk(r, t.prefix .. ":out"))
    assert.same({}, got.missing)
    assert.same({}, got.unexpected)
    assert.matches("a slot changed master", h:log())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("follows a stream's slot migrated mid-run with redis-cli --cluster reshard", function()
    local t = context("reshard")
    local moving = redis_cluster.first_slot_stream(c, t.prefix)
    local streams = { moving, t.prefix .. ":other" }
    local path = script(t, streams)
    local want = add(r, streams, 100)
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.wait_sunk(r, { out = t.prefix .. ":out", n = #want, streams = streams, group = t.prefix .. ":g", hosts = { h } })
    local from = c.node_of(moving)
    local to
    for _, m in ipairs(c.masters()) do if m.port ~= from.port then to = m end end
    c.reshard(moving, to, 1)
    H.eventually(function() return c.node_of(moving).port == to.port end, 60)
    append(want, add(r, streams, 100, 100))
    H.wait_sunk(r, { out = t.prefix .. ":out", n = #want, streams = streams, group = t.prefix .. ":g",
      hosts = { h }, timeout = 120 })
    local got = H.compare(want, sunk(r, t.prefix .. ":out"))
    assert.same({}, got.missing)
    assert.same({}, got.unexpected)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("goes on when a master is killed mid-run and its replica takes over", function()
    local t = context("kill")
    local streams = redis_cluster.spread(c, t.prefix, 3)
    local path = script(t, streams)
    local want = add(r, streams, 100)
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.eventually(function() return #H.list(r, t.prefix .. ":out") > 0 end, 60, function() return h:describe() end)
    -- The master of a stream (not the one holding the output list) dies.
    local vs = streams[2]
    if c.node_of(vs).port == c.node_of(t.prefix .. ":out").port then vs = streams[3] end
    local victim, replica = c.node_of(vs), assert(c.replica_of(vs))
    victim.kill()
    -- Writes go on (the spec's client waits for the replica to take over).
    append(want, add(r, streams, 50, 100))
    H.eventually(function() return c.node_of(vs).port == replica.port end, 60)
    assert.is_true(replica.alive())
    append(want, add(r, streams, 50, 150))
    -- Every message the cluster kept arrives, and nothing stays pending.
    local kept = {}
    H.eventually(function()
      kept = {}
      for _, s in ipairs(streams) do
        for _, e in ipairs(r:call("XRANGE", s, "-", "+")) do kept[#kept + 1] = s .. " " .. e[1] end
      end
      local c2 = H.compare(kept, sunk(r, t.prefix .. ":out"))
      local pending = 0
      for _, s in ipairs(streams) do pending = pending + H.xpending(r, s, t.prefix .. ":g").count end
      return #c2.missing == 0 and pending == 0
    end, 120, function() return h:describe() end)
    assert.is_true(#kept >= 300 - 50, "the cluster kept most messages")
    assert.matches("a slot changed master", h:log())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("dead-letters into a stream in the source streams' slot, atomically with the ack", function()
    local t = context("dead")
    local tag = "{" .. t.prefix .. "}"
    local streams = { tag .. ":a", tag .. ":b" }
    local dead = tag .. ":dead"
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { streams = {{STREAMS}}, group = "{{P}}:g", timeout = 0.2, dead_letter = "{{DEAD}}" },
  preprocess = function(stream, id, data)
    if data.bad then error("cannot take " .. data.bad) end
    return stream .. " " .. id
  end,
  batch = { size = 20, timeout = 0.1 },
  sink = function(items) rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items)) end,
}
]], { STREAMS = lua_list(streams), DEAD = dead })
    local want, bad = {}, 0
    for _, s in ipairs(streams) do
      local ids = H.xadd_many(r, s, 30, function(i) if i % 10 == 0 then return { "bad", i } end return { "n", i } end)
      for i, id in ipairs(ids) do
        if i % 10 == 0 then bad = bad + 1 else want[#want + 1] = s .. " " .. id end
      end
    end
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.wait_sunk(r, { out = t.prefix .. ":out", n = #want, streams = streams, group = t.prefix .. ":g", hosts = { h } })
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    H.eventually(function() return r:call("XLEN", dead) == bad end, 30, function() return h:describe() end)
    local entries = r:call("XRANGE", dead, "-", "+")
    for _, e in ipairs(entries) do
      local f = {}
      for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
      assert.matches("cannot take " .. f.bad, f["rsghost:error"])
    end
    assert.equal(0, h:stop(), h:describe())
  end)

  it("dead-letters a message delivered more than max_deliveries times", function()
    local t = context("maxdel")
    local tag = "{" .. t.prefix .. "}"
    local stream, dead, group = tag .. ":s", tag .. ":dead", t.prefix .. ":g"
    local ids = H.xadd_many(r, stream, 5)
    -- The first message was delivered twice to c1 already (a read, and a
    -- re-read of its pending entries), and never acknowledged.
    r:call("XGROUP", "CREATE", stream, group, "0")
    r:call("XREADGROUP", "GROUP", group, "c1", "COUNT", 1, "STREAMS", stream, ">")
    r:call("XREADGROUP", "GROUP", group, "c1", "COUNT", 1, "STREAMS", stream, "0")
    local path = script(t, { stream }, ", max_deliveries = 2, dead_letter = '" .. dead .. "'")
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.wait_sunk(r, { out = t.prefix .. ":out", n = 4, streams = stream, group = group, hosts = { h } })
    local entries = r:call("XRANGE", dead, "-", "+")
    assert.equal(1, #entries)
    local f = {}
    for i = 1, #entries[1][2], 2 do f[entries[1][2][i]] = entries[1][2][i + 1] end
    assert.equal(ids[1], f["rsghost:id"])
    assert.equal("3", f["rsghost:deliveries"])
    assert.matches("delivered 2 times without being acknowledged", f["rsghost:error"])
    assert.equal(4, #sunk(r, t.prefix .. ":out"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("lists dead letters and redrives them with rsghost dead-letters and redrive", function()
    local t = context("redrive")
    local tag = "{" .. t.prefix .. "}"
    local stream, dead, group, out = tag .. ":s", tag .. ":dead", t.prefix .. ":g", t.prefix .. ":out"
    -- The flag and the output list hash elsewhere: the commands are routed.
    local path = H.script(t, [[
local rsghost = require "rsghost"
local fixed = false
local function refresh() fixed = rsghost.redis.call("GET", "{{P}}:fixed") == "1" end
return {
  source = { streams = "{{S}}", group = "{{P}}:g", timeout = 0.2, dead_letter = "{{DEAD}}" },
  init = function() refresh(); rsghost.every(0.1, refresh) end,
  preprocess = function(stream, id, data)
    if data.bad and not fixed then error("cannot take " .. data.n) end
    return data.n
  end,
  batch = { size = 20, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items)) end,
}
]], { S = stream, DEAD = dead })
    H.xadd_many(r, stream, 20, function(i)
      if i % 5 == 0 then return { "n", i, "bad", "1" } end
      return { "n", i }
    end)
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.wait_sunk(r, { out = out, n = 16, streams = stream, group = group, hosts = { h } })
    H.eventually(function() return r:call("XLEN", dead) == 4 end, 30, function() return h:describe() end)
    -- The seed named first is not the dead-letter stream's master.
    local seed
    for _, m in ipairs(c.masters()) do
      if m.port ~= c.node_of(dead).port then seed = m end
    end
    local url = "redis+cluster://127.0.0.1:" .. seed.port
    local code, listed, err = H.run { "dead-letters", "--redis", url, "--json", path }
    assert.equal(0, code, err)
    local errors = {}
    for line in listed:gmatch("[^\n]+") do
      local o = cjson.decode(line)
      assert.equal(stream, o.stream)
      errors[#errors + 1] = o.error:match("cannot take %d+$")
    end
    assert.same({ "cannot take 5", "cannot take 10", "cannot take 15", "cannot take 20" }, errors)
    -- Fixed: redrive moves them back; the running consumer takes them.
    r:call("SET", t.prefix .. ":fixed", "1")
    H.sleep(0.3)
    local moved
    code, moved, err = H.run { "redrive", "--redis", url, path }
    assert.equal(0, code, err)
    assert.matches("moved 4 dead letter%(s%)", err)
    local n = 0
    for _ in moved:gmatch("%-> [^\n]+ %d+%-%d+\n") do n = n + 1 end
    assert.equal(4, n, moved)
    H.wait_sunk(r, { out = out, n = 20, streams = stream, group = group, hosts = { h } })
    local want = {}
    for i = 1, 20 do want[i] = tostring(i) end
    H.assert_exactly_once(want, H.list(r, out))
    assert.equal(0, r:call("XLEN", dead))
    assert.equal(0, H.xpending(r, stream, group).count)
    assert.equal(0, h:stop(), h:describe())
  end)

  -- A list pipeline: each item to P:out, failing while P:block exists.
  local LISTS = [[
local rsghost = require "rsghost"
return {
  source = { lists = {{LISTS}}, timeout = 0.2{{EXTRA}} },
  preprocess = function(list, item) return list .. " " .. item end,
  batch = {{BATCH}},
  retry = { initial = 0.1, max = 0.3 },
  sink = function(items)
    if rsghost.redis.call("EXISTS", "{{P}}:block") == 1 then error("blocked") end
    rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items))
  end,
}
]]

  -- The list pipeline over lists; extra: more source settings; batch: the
  -- batch table (default: 20 items or 0.05 s).
  local function lists_script(t, lists, extra, batch)
    return H.script(t, LISTS, { LISTS = lua_list(lists), EXTRA = extra or "",
      BATCH = batch or "{ size = 20, timeout = 0.05 }" })
  end

  local function push(lists, per, from)
    local want = {}
    for _, l in ipairs(lists) do
      local items = {}
      for i = 1, per do items[i] = "i" .. ((from or 0) + i) end
      r:call("RPUSH", l, unpack(items))
      for _, it in ipairs(items) do want[#want + 1] = l .. " " .. it end
    end
    return want
  end

  local function wait_out(t, n, hosts)
    H.eventually(function() return r:call("LLEN", t.prefix .. ":out") >= n end, 90, function()
      local d = { "out has " .. r:call("LLEN", t.prefix .. ":out") .. ", want " .. n }
      for _, h in ipairs(hosts) do d[#d + 1] = h:describe() end
      return table.concat(d, "\n")
    end)
  end

  it("reads lists spread over every master, each item once", function()
    local t = context("lists")
    local lists = redis_cluster.spread(c, t.prefix, 6)
    local path = lists_script(t, lists)
    local want = push(lists, 50)
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    wait_out(t, #want, { h })
    append(want, push(lists, 50, 50))
    wait_out(t, #want, { h })
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    assert.matches("6 list%(s%) in 6 slot group%(s%)", h:log())
    for _, l in ipairs(lists) do assert.equal(0, r:call("LLEN", l)) end
    assert.equal(0, h:stop(), h:describe())
  end)

  it("keeps max_in_flight after its reader connection to a master is lost while the slot groups wait", function()
    local t = context("room")
    local lists = redis_cluster.spread(c, t.prefix, 3)
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { lists = {{LISTS}}, timeout = 0.2, max_in_flight = 30 },
  preprocess = function(list, item) return list .. " " .. item end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items)
    rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items))
    rsghost.redis.call("WAIT", 5, 20) -- a slow sink: 20 ms
  end,
}
]], { LISTS = lua_list(lists) })
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    local function connected()
      local _, n = h:log():gsub("slot reader: connected", "")
      return n
    end
    H.eventually(function() return connected() == 3 end, 60, function() return h:describe() end)
    -- The reader connection (its last command the TYPE of setup) to one
    -- master goes while every slot group waits in BLMPOP: the host sets up
    -- again and connects its slot groups anew, dropping their reads.
    local node = c.node_of(lists[1]).client()
    H.eventually(function() return node:call("CLIENT", "LIST"):find("cmd=blmpop", 1, true) end, 60,
      function() return h:describe() end)
    local id = node:call("CLIENT", "LIST"):match("id=(%d+)[^\n]* cmd=type")
    assert.is_truthy(id, node:call("CLIENT", "LIST"))
    node:call("CLIENT", "KILL", "ID", id)
    H.eventually(function() return connected() == 6 end, 60, function() return h:describe() end)
    -- A backlog on a slow sink: what the host holds stays within the room.
    local want = push(lists, 100)
    wait_out(t, #want, { h })
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    local most = 0
    for n in h:log():gmatch("; (%d+) in flight") do most = math.max(most, tonumber(n)) end
    assert.is_true(most <= 30, "up to " .. most .. " items were in flight (max_in_flight = 30)")
    assert.is_true(most >= 10, "no read seen: " .. most)
    assert.equal(0, h:stop(), h:describe())
  end)

  -- Three lists on three masters, and two that share one slot group.
  local function reliable_lists(t)
    local lists = redis_cluster.spread(c, t.prefix, 3, true)
    lists[4] = "{" .. t.prefix .. ":pair}:a"
    lists[5] = "{" .. t.prefix .. ":pair}:b"
    return lists
  end

  local function held(lists)
    local n = 0
    for _, l in ipairs(lists) do n = n + r:call("LLEN", "rsghost:processing:c1:" .. l) end
    return n
  end

  it("keeps a reliable list's items through kill -9, in processing lists in each list's slot", function()
    local t = context("reliable")
    local lists = reliable_lists(t)
    -- The first run holds every item in one open batch (it closes only
    -- when full): nothing is sunk, and reading never pauses. A failing sink
    -- would pause reading (README: a sink raises), and a slot group whose
    -- first read came back after that failure would hold only that read.
    local hold = lists_script(t, lists, ", reliable = true", "{ size = 1000, timeout = false }")
    local path = lists_script(t, lists, ", reliable = true")
    local want = push(lists, 30)
    local h = H.start(t, { script = hold, consumer = "c1", redis = c.url })
    -- Every item moved into a processing list, none sunk: kill -9.
    H.eventually(function()
      for _, l in ipairs(lists) do
        if r:call("LLEN", l) ~= 0 then return false end
      end
      return true
    end, 60, function() return h:describe() end)
    h:kill()
    for _, l in ipairs(lists) do
      assert.equal(native.key_slot(l), native.key_slot("rsghost:processing:c1:" .. l))
    end
    assert.equal(#want, held(lists))
    assert.equal(0, r:call("LLEN", t.prefix .. ":out"))
    -- Restarted: what the dead run held is processed, and more.
    h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    append(want, push(lists, 30, 30))
    wait_out(t, #want, { h })
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    assert.matches("5 list%(s%) in 4 slot group%(s%)", h:log())
    H.eventually(function() return held(lists) == 0 end, 30, function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("pauses every slot group's reads while a sink fails, one whose read came back late too, and resumes them all", function()
    local t = context("relpause")
    local lists = reliable_lists(t)
    local path = lists_script(t, lists, ", reliable = true")
    r:call("SET", t.prefix .. ":block", "1")
    local want = push(lists, 30)
    -- The master of the third list holds every script (CLIENT PAUSE WRITE
    -- blocks EVAL) until the sink has failed: that group's first read
    -- comes back after reading paused, the order that made the kill -9
    -- case above flaky when it relied on a failing sink.
    local late = c.node_of(lists[3]).client()
    late:call("CLIENT", "PAUSE", 600000, "WRITE")
    local paused = true
    local ok, err = pcall(function()
      local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
      H.eventually(function() return h:log():find("sink 1 of 1 failed", 1, true) end, 60,
        function() return h:describe() end)
      late:call("CLIENT", "UNPAUSE")
      paused = false
      -- Its read ran (the list gave items to its processing list); every
      -- item is in its list or its processing list, none sunk.
      H.eventually(function() return r:call("LLEN", lists[3]) < 30 end, 60,
        function() return h:describe() end)
      local total = 0
      for _, l in ipairs(lists) do
        -- One script on the list's master: a move between the two (one
        -- still on its way) cannot fall between two counts.
        total = total + c.node_of(l).client():call("EVAL",
          "return redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])", 2, l,
          "rsghost:processing:c1:" .. l)
      end
      assert.equal(#want, total)
      assert.equal(0, r:call("LLEN", t.prefix .. ":out"))
      -- The sink recovers: every group reads again, the late one included.
      r:call("DEL", t.prefix .. ":block")
      wait_out(t, #want, { h })
      H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
      H.eventually(function() return held(lists) == 0 end, 30, function() return h:describe() end)
      for _, l in ipairs(lists) do assert.equal(0, r:call("LLEN", l)) end
      assert.equal(0, h:stop(), h:describe())
    end)
    if paused then pcall(function() late:call("CLIENT", "UNPAUSE") end) end
    assert(ok, err)
  end)

  it("replays each processing list's own leftovers, whatever order its master's answer comes in", function()
    local t = context("leftover")
    local lists = redis_cluster.spread(c, t.prefix, 6, true)
    local path = lists_script(t, lists, ", reliable = true")
    -- What a crashed run left: a different number in each processing list.
    -- Each is counted on its own list's master, and the counts must reach
    -- their own lists whichever master answers first: a count given to
    -- another list would replay items twice or leave them behind.
    local want = {}
    for k, l in ipairs(lists) do
      local items = {}
      for i = 1, 3 * k do
        items[i] = "left" .. i
        want[#want + 1] = l .. " left" .. i
      end
      r:call("RPUSH", "rsghost:processing:c1:" .. l, unpack(items))
    end
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    wait_out(t, #want, { h })
    append(want, push(lists, 5))
    wait_out(t, #want, { h })
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    assert.matches("63 item%(s%) left in processing lists by an earlier run", h:log())
    H.eventually(function() return held(lists) == 0 end, 30, function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("dead-letters poison items of lists into a stream in their slot, out of the processing list atomically", function()
    local t = context("listdead")
    -- On a master that is not the first seed, so that the script goes
    -- where its slot is rather than where the host first connected.
    local tag, i = nil, 0
    repeat
      i = i + 1
      tag = "{" .. t.prefix .. ":jobs" .. i .. "}"
    until c.node_of(tag).port ~= c.servers[1].port
    local lists, dead = { tag .. ":a", tag .. ":b" }, tag .. ":dead"
    assert.equal(native.key_slot(lists[1]), native.key_slot(dead))
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { lists = {{LISTS}}, reliable = true, timeout = 0.2, dead_letter = "{{DEAD}}" },
  preprocess = function(list, item)
    if item:find("^poison") then error("cannot take " .. item) end
    return list .. " " .. item
  end,
  batch = { size = 20, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items)) end,
}
]], { LISTS = lua_list(lists), DEAD = dead })
    local want, poison = {}, {}
    for _, l in ipairs(lists) do
      local items = {}
      for i = 1, 40 do
        items[i] = (i % 10 == 0 and "poison-" or "i") .. i
        if i % 10 == 0 then poison[#poison + 1] = l .. " " .. items[i] else want[#want + 1] = l .. " " .. items[i] end
      end
      r:call("RPUSH", l, unpack(items))
    end
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    wait_out(t, #want, { h })
    local function processing()
      local n = 0
      for _, l in ipairs(lists) do n = n + r:call("LLEN", "rsghost:processing:c1:" .. l) end
      return n
    end
    H.eventually(function() return r:call("XLEN", dead) == #poison and processing() == 0 end, 60,
      function() return h:describe() end)
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    -- Each poison item once in the dead-letter stream, naming its list and
    -- the error; none left in a processing list or in its list.
    local got = {}
    for _, f in ipairs(H.dead_letters(r, dead)) do
      got[#got + 1] = f["rsghost:list"] .. " " .. f.item
      assert.matches("cannot take poison%-%d+$", f["rsghost:error"])
      assert.equal("c1", f["rsghost:consumer"])
    end
    H.assert_exactly_once(poison, got)
    for _, l in ipairs(lists) do assert.equal(0, r:call("LLEN", l)) end
    assert.equal(0, h:stop(), h:describe())
    -- Redriven on the cluster: each item back at the tail of its own list.
    local code, out, err = H.run { "redrive", "--redis", c.url, path }
    assert.equal(0, code, err)
    assert.equal(0, r:call("XLEN", dead))
    local back = {}
    for _, l in ipairs(lists) do
      for _, item in ipairs(H.list(r, l)) do back[#back + 1] = l .. " " .. item end
    end
    H.assert_exactly_once(poison, back, out)
  end)

  it("reads plain streams on every master from checkpoints, and resumes after them", function()
    local t = context("plain")
    local streams = redis_cluster.spread(c, t.prefix, 6)
    local cp, out = t.prefix .. ":cp", t.prefix .. ":out"
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { streams = {{STREAMS}}, start = "0", checkpoint = "{{P}}:cp", timeout = 0.2 },
  preprocess = function(stream, id, data) return stream .. " " .. id end,
  batch = { size = 50, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items)) end,
}
]], { STREAMS = lua_list(streams) })
    local want = add(r, streams, 100)
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    wait_out(t, #want, { h })
    append(want, add(r, streams, 50, 100))
    wait_out(t, #want, { h })
    assert.matches("6 stream%(s%) in 6 slot group%(s%)", h:log())
    -- The checkpoint names every stream's last id once the batches are sunk.
    local last = {}
    for _, s in ipairs(streams) do last[s] = r:call("XREVRANGE", s, "+", "-", "COUNT", 1)[1][1] end
    H.eventually(function()
      for _, s in ipairs(streams) do
        if r:call("HGET", cp, s) ~= last[s] then return false end
      end
      return true
    end, 30, function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
    -- Stopped: more arrives; a restart takes only what came after the checkpoint.
    append(want, add(r, streams, 40, 150))
    h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    wait_out(t, #want, { h })
    assert.matches("resuming after checkpoint", h:log())
    H.sleep(0.5)
    assert.equal(0, h:stop(), h:describe())
    local got = {}
    for _, item in ipairs(H.list(r, out)) do got[#got + 1] = item end
    H.assert_exactly_once(want, got)
  end)

  it("starts plain streams at \"$\" on every master: only what is added once it reads", function()
    local t = context("dollar")
    local streams = redis_cluster.spread(c, t.prefix, 6)
    -- Entries from before the start, with ids that grow from one stream to
    -- the next. Each stream's last id is asked on its own master and must
    -- become its own cursor whichever master answers first: another
    -- stream's smaller id would read old entries again.
    for k, s in ipairs(streams) do
      for j = 1, k do r:call("XADD", s, k .. "-" .. j, "n", j) end
    end
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { streams = {{STREAMS}}, timeout = 0.2 },
  preprocess = function(stream, id, data) return stream .. " " .. id end,
  batch = { size = 50, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items)) end,
}
]], { STREAMS = lua_list(streams) })
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    -- The slot readers connect once every cursor is known.
    H.eventually(function() return h:log():find("slot reader: connected", 1, true) end, 60,
      function() return h:describe() end)
    local want = add(r, streams, 20)
    wait_out(t, #want, { h })
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("shows a group's status over streams on every master with rsghost status", function()
    local t = context("status")
    local streams = redis_cluster.spread(c, t.prefix, 3)
    local group = t.prefix .. ":g"
    local path = script(t, streams, ", heartbeat_interval = 0.2, claim_timeout = 30")
    add(r, streams, 11)
    -- d1 holds one message on each master, never acked, and keeps no liveness key.
    for _, s in ipairs(streams) do
      r:call("XGROUP", "CREATE", s, group, "0")
      r:call("XREADGROUP", "GROUP", group, "d1", "COUNT", 1, "STREAMS", s, ">")
    end
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.wait_sunk(r, { out = t.prefix .. ":out", n = 30, streams = streams, group = group, hosts = { h },
      pending = 3 })
    H.eventually(function() return r:call("HEXISTS", "rsghost:consumers:" .. group, "c1") == 1 end, 30,
      function() return h:describe() end)
    local code, out, err = H.run { "status", "--json", "--redis", c.url, path }
    assert.equal(0, code, err)
    assert.is_nil(err:find("not listening", 1, true), err)
    local st = cjson.decode(out)
    assert.equal(group, st.group)
    assert.equal(3, #st.streams)
    for i, row in ipairs(st.streams) do
      assert.equal(streams[i], row.stream)
      assert.equal(11, row.length)
      assert.equal(1, row.pending)
    end
    local byname = {}
    for _, cr in ipairs(st.consumers) do byname[cr.name] = cr end
    assert.same({ "alive", 0, true }, { byname.c1.state, byname.c1.pending, byname.c1.liveness_key })
    assert.equal(3, byname.d1.pending)
    assert.is_false(byname.d1.liveness_key)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("keeps rsghost status --watch right while a slot migrates under its session (ASK, then MOVED)", function()
    local t = context("watchmove")
    local stream = redis_cluster.first_slot_stream(c, t.prefix)
    local slot = native.key_slot(stream)
    local group = t.prefix .. ":g"
    local path = script(t, { stream })
    add(r, { stream }, 5)
    r:call("XGROUP", "CREATE", stream, group, "0")
    local dir = require("support.server").tmpdir("watchmove")
    local p = proc.spawn { argv = { H.bin, "status", "--json", "--watch", "0.2", "--redis", c.url, path },
      env = { RSGHOST_REDIS_URL = false }, stdout = dir .. "/out", stderr = dir .. "/err" }
    finally(function() if p:alive() then p:kill() end end)
    -- The session learnt the map once; each refresh is one more round of
    -- commands on it. The last refresh's stream length, once it is n:
    local function shows(n)
      H.eventually(function()
        local last
        for line in proc.slurp(dir .. "/out"):gmatch("[^\n]+") do last = line end
        local ok, st = pcall(cjson.decode, last or "")
        return ok and st.streams[1].length == n
      end, 60, function() return proc.slurp(dir .. "/out"):sub(-300) .. proc.slurp(dir .. "/err") end)
    end
    shows(5)
    -- The slot starts moving to another master and the stream goes first:
    -- its old master answers -ASK for it, the map still names that master.
    local from = c.node_of(stream)
    local to
    for _, m in ipairs(c.masters()) do if m.port ~= from.port then to = m end end
    to.client():call("CLUSTER", "SETSLOT", slot, "IMPORTING", c.id_of(from))
    from.client():call("CLUSTER", "SETSLOT", slot, "MIGRATING", c.id_of(to))
    from.client():call("MIGRATE", to.host, to.port, "", 0, 5000, "KEYS", stream)
    local ok, err = from.client():pcall("XLEN", stream)
    assert.matches("^ASK " .. slot .. " ", tostring(err or ok))
    add(r, { stream }, 3, 5)
    shows(8)
    -- The refreshes go on asking there (ASKING, then the command) without
    -- the spec's client.
    local asked = H.command_calls(to.client(), "asking")
    H.eventually(function() return H.command_calls(to.client(), "asking") > asked end, 30)
    -- The move ends: every master says the slot is the new one's, and the
    -- session's map is stale (its old master answers -MOVED).
    for _, m in ipairs(c.masters()) do m.client():call("CLUSTER", "SETSLOT", slot, "NODE", c.id_of(to)) end
    H.eventually(function() return c.node_of(stream).port == to.port end, 60)
    ok, err = from.client():pcall("XLEN", stream)
    assert.matches("^MOVED " .. slot .. " ", tostring(err or ok))
    add(r, { stream }, 2, 8)
    shows(10)
    -- One session throughout: a refresh that failed would have said so and dialled again.
    assert.equal("", proc.slurp(dir .. "/err"))
    p:kill()
  end)

  it("gives a sink's cross-slot command Redis's own CROSSSLOT error", function()
    local t = context("cross")
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { streams = "{{P}}:s", group = "{{P}}:g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 1, timeout = 0.1 },
  retry = { initial = 0.1, max = 0.2 },
  sink = function(items)
    local ok, err = pcall(rsghost.redis.call, "MSET", "{{P}}:x1", "1", "{{P}}:x2", "2")
    rsghost.redis.call("RPUSH", "{{P}}:out", ok and "ok" or tostring(err))
  end,
}
]])
    H.xadd_many(r, t.prefix .. ":s", 1)
    -- The two keys are in different slots (the test checks it), so Redis refuses.
    assert.are_not.equal(native.key_slot(t.prefix .. ":x1"), native.key_slot(t.prefix .. ":x2"))
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url })
    H.wait_sunk(r, { out = t.prefix .. ":out", n = 1, streams = t.prefix .. ":s", group = t.prefix .. ":g", hosts = { h } })
    assert.matches("CROSSSLOT", H.list(r, t.prefix .. ":out")[1])
    assert.equal(0, h:stop(), h:describe())
  end)

  it("claims the messages of a consumer killed with -9 on every node (heartbeats)", function()
    local t = context("claim")
    local streams = redis_cluster.spread(c, t.prefix, 6)
    -- c1's sink fails while its block key exists, so what it read stays
    -- pending under its name, on every master.
    local path = H.script(t, [[
local rsghost = require "rsghost"
return {
  source = { streams = {{STREAMS}}, group = "{{P}}:g", timeout = 0.2,
             heartbeat_interval = 0.2, claim_timeout = 1.5 },
  preprocess = function(stream, id, data) return stream .. " " .. id end,
  batch = { size = 20, timeout = 0.05 },
  retry = { initial = 0.1, max = 0.2 },
  sink = function(items)
    if rsghost.redis.call("EXISTS", "{{P}}:block:" .. rsghost.consumer) == 1 then
      error("blocked: holding " .. #items .. " message(s)")
    end
    rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items))
  end,
}
]], { STREAMS = lua_list(streams) })
    r:call("SET", t.prefix .. ":block:c1", "1")
    local want = add(r, streams, 20)
    local h1 = H.start(t, { script = path, consumer = "c1", redis = c.url })
    -- Once c1 beats (it is in the group's registry), the spec reads what c1
    -- has not as c1, so that c1 surely holds messages on every master.
    local group = t.prefix .. ":g"
    H.eventually(function()
      return r:call("HEXISTS", "rsghost:consumers:" .. group, "c1") == 1
    end, 60, function() return h1:describe() end)
    for _, s in ipairs(streams) do
      r:pcall("XGROUP", "CREATE", s, group, "0", "MKSTREAM")
    end
    for _, s in ipairs(streams) do
      r:call("XREADGROUP", "GROUP", group, "c1", "COUNT", 1000, "STREAMS", s, ">")
      assert.equal(20, H.xpending(r, s, group).consumers.c1, s)
    end
    h1:kill()
    local h2 = H.start(t, { script = path, consumer = "c2", redis = c.url })
    H.wait_sunk(r, { out = t.prefix .. ":out", n = #want, streams = streams, group = t.prefix .. ":g",
      hosts = { h2 }, timeout = 90 })
    H.assert_exactly_once(want, H.list(r, t.prefix .. ":out"))
    local claimed = 0
    for _, line in ipairs(h2:log_lines("claimed %d+ message")) do
      claimed = claimed + tonumber(line:match("claimed (%d+) message"))
    end
    assert.equal(#want, claimed, h2:describe())
    assert.equal(0, h2:stop(), h2:describe())
  end)

  it("refuses at start what it cannot do on a cluster, with a clear error", function()
    local t = context("refuse")
    local path = H.script(t, [[
return {
  source = { lists = { "{{P}}:l" }, reliable = true },
  preprocess = function(list, item) return item end,
  sink = function(items) end,
}
]])
    local code, _, err = H.run { "--redis", c.url, path, "c1" }
    assert.equal(2, code, err)
    assert.matches("must be in one slot", err)
    assert.matches("give the list a hash tag", err)
    path = script(t, { t.prefix .. ":a", t.prefix .. ":b" }, ", dead_letter = '" .. t.prefix .. ":dead'")
    code, _, err = H.run { "--redis", c.url, path, "c1" }
    assert.equal(2, code, err)
    assert.matches("same slot as every source stream", err)
    code, _, err = H.run { "--redis", c.url .. "/2", path, "c1" }
    assert.equal(2, code, err)
    assert.matches("only database 0", err)
  end)

  it("says so when a node is not in cluster mode", function()
    local server = require "support.server"
    local t = context("plain")
    local srv = server.start()
    local path = script(t, { t.prefix .. ":s" })
    local h = H.start(t, { script = path, consumer = "c1", redis = "redis+cluster://127.0.0.1:" .. srv.port })
    local code = h:wait(30)
    srv.stop()
    assert.equal(1, code, h:describe())
    assert.matches("not a cluster node", h:log())
  end)
end)

