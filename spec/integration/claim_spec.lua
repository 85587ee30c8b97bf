-- Claiming: consumers with heartbeats take over the unacknowledged messages
-- of a peer that went silent for claim_timeout, push them through their own
-- pipeline, and remove the dead name from the group; a slow peer whose heart
-- beats keeps its messages, whether it is an rsghost consumer or a
-- streamz_redis one that only PUBLISHes its bare name on the group channel.
local H = require "support.host"
local proc = require "support.proc"
local cluster = require "support.cluster"

local HB, CT = cluster.DEFAULTS.HB, cluster.DEFAULTS.CT

local function script(t, vars)
  return cluster.script(H, t, vars)
end

local function describe_all(hosts)
  return function()
    local parts = {}
    for _, h in ipairs(hosts) do parts[#parts + 1] = h:describe() end
    return table.concat(parts, "\n")
  end
end

-- Entries of XPENDING's extended form: { [id] = { owner =, deliveries = } }.
local function pending_detail(r, stream, group)
  local out = {}
  for _, e in ipairs(r:call("XPENDING", stream, group, "-", "+", 100000)) do
    out[e[1]] = { owner = e[2], deliveries = e[4] }
  end
  return out
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- Starts consumer `name` with its sink blocked, adds n messages, and waits
-- until it holds all of them unacknowledged (its sink failing on them).
local function holding(t, path, name, n)
  local P = t.prefix
  t.redis:call("SET", P .. ":block:" .. name, "1")
  local h = H.start(t, { script = path, consumer = name })
  local ids = H.xadd_many(t.redis, P .. ":s", n)
  H.eventually(function()
    return H.xpending(t.redis, P .. ":s", P .. ":g").consumers[name] == n
      and #h:log_lines("blocked: holding") > 0
  end, 30, function() return h:describe() end)
  return h, ids
end

-- The group's consumer names stay as given while `hosts` run: waits until
-- name is no longer in XINFO CONSUMERS.
local function wait_removed(t, name, hosts)
  local P = t.prefix
  H.eventually(function() return not H.consumers(t.redis, P .. ":s", P .. ":g")[name] end, 30,
    function() return name .. " is still in the group\n" .. describe_all(hosts)() end)
end

describe("claiming a dead consumer's messages", function()
  after_each(function() H.cleanup() end)

  it("three consumers, one killed -9 holding unacked messages: the survivors claim them all once, and drop its name", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t)
    local slow, first = holding(t, path, "slow", 60)
    local c1 = H.start(t, { script = path, consumer = "c1" })
    local c2 = H.start(t, { script = path, consumer = "c2" })
    local hosts = { slow, c1, c2 }
    H.eventually(function()
      local m = H.consumers(t.redis, P .. ":s", P .. ":g")
      return m.c1 and m.c2
    end, 30, describe_all(hosts))
    -- The survivors work normally meanwhile; slow holds what it has.
    local more = H.xadd_many(t.redis, P .. ":s", 200)
    -- (slow never writes; whatever it holds is all the survivors lack.)
    H.eventually(function()
      local held = H.xpending(t.redis, P .. ":s", P .. ":g").consumers.slow or 0
      return t.redis:call("LLEN", P .. ":out") + held >= 260
    end, 60, describe_all(hosts))

    assert.equal("signal 9", slow:kill())
    local orphaned = H.pending_ids(t.redis, P .. ":s", P .. ":g", "slow")
    assert.is_true(count(orphaned) >= 60)
    local t_kill = proc.now()

    local all = {}
    for _, id in ipairs(first) do all[#all + 1] = id end
    for _, id in ipairs(more) do all[#all + 1] = id end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #all, streams = P .. ":s", group = P .. ":g",
      hosts = hosts, timeout = 60 })
    print(string.format("\n%d orphaned messages claimed and sunk %.1f s after kill -9 (claim_timeout %g s)",
      count(orphaned), proc.now() - t_kill, CT))
    local c = H.compare(all, out)
    assert.same({}, c.missing, "messages lost")
    assert.equal(0, c.duplicates, "a message went through two pipelines")
    assert.same({}, c.unexpected)

    -- Each orphan was claimed by exactly one survivor: the claim counts add
    -- up to what slow held, and nothing else was claimed.
    local k1, k2 = cluster.claimed(c1), cluster.claimed(c2)
    assert.equal(count(orphaned), (k1.by.slow or 0) + (k2.by.slow or 0), describe_all(hosts)())
    assert.equal(count(orphaned), k1.total + k2.total)
    local by = {}
    for _, who in ipairs { "c1", "c2" } do
      for _, id in ipairs(H.list(t.redis, P .. ":by:" .. who)) do by[id] = who end
    end
    for id in pairs(orphaned) do assert.is_string(by[id], id .. " was not sunk by a survivor") end

    wait_removed(t, "slow", hosts)
    assert.equal(0, t.redis:call("HEXISTS", cluster.registry_key(P .. ":g"), "slow"))
    local m = H.consumers(t.redis, P .. ":s", P .. ":g")
    assert.is_true(m.c1 and m.c2, "a live consumer was removed")
    assert.equal(0, c1:stop(), c1:describe())
    assert.equal(0, c2:stop(), c2:describe())
  end)

  -- A consumer's activity counts from when XINFO CONSUMERS says it was last
  -- active (now - idle), not from when we asked: it is dead claim_timeout
  -- after its last heartbeat or read, not twice that.
  it("claims from a consumer killed while receiving within claim_timeout plus a couple of intervals", function()
    local t = H.context()
    local P = t.prefix
    -- A longer claim_timeout, so "claim_timeout plus a couple of
    -- intervals" and "twice claim_timeout" are seconds apart.
    local ct = 3
    -- A holds what it reads in a partial batch (no sink before 60 s) and
    -- keeps reading: a healthy consumer in the middle of its work.
    local a = H.start(t, { script = script(t, { CT = ct, BATCH_SIZE = 1000, BATCH_TIMEOUT = 60 }), consumer = "A" })
    H.eventually(function() return H.group_info(t.redis, P .. ":s", P .. ":g") end, 30, function() return a:describe() end)
    local ids = {}
    for _ = 1, 10 do
      ids[#ids + 1] = H.xadd_many(t.redis, P .. ":s", 1)[1]
      H.sleep(0.05)
    end
    H.eventually(function() return H.xpending(t.redis, P .. ":s", P .. ":g").consumers.A == #ids end, 30,
      function() return a:describe() end)
    local b = H.start(t, { script = script(t, { CT = ct }), consumer = "B" })
    H.eventually(function() return H.consumers(t.redis, P .. ":s", P .. ":g").B end, 30, function() return b:describe() end)

    local killed = cluster.wall_time()
    assert.equal("signal 9", a:kill())
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { b } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    local k = cluster.claimed(b)
    assert.equal(#ids, k.by.A, b:describe())
    -- A's last heartbeat went out at most an interval before the kill; its
    -- liveness key expires claim_timeout after that, and B's next round
    -- (an interval later at most) claims. The bound leaves a second and a
    -- half for a slow machine.
    local took = cluster.log_time(k.lines[1]) - killed
    if took < -43200 then took = took + 86400 end
    print(string.format("\nconsumer killed while receiving: claimed %.2f s after kill -9 (claim_timeout %g s)", took, ct))
    assert.is_true(took < ct + 1.5, string.format(
      "claimed %.2f s after kill -9, want within claim_timeout %g s plus a couple of %g s intervals:\n%s",
      took, ct, HB, b:describe()))
    assert.equal(0, b:stop(), b:describe())
  end)

  it("leaves a slow consumer whose heart beats alone, over several claim_timeouts", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t)
    local slow, ids = holding(t, path, "slow", 30)
    local peer = H.start(t, { script = path, consumer = "peer" })
    local hosts = { slow, peer }
    -- The peer is up and running claim rounds: it has read (nothing yet).
    H.eventually(function() return H.consumers(t.redis, P .. ":s", P .. ":g").peer end, 30,
      describe_all(hosts))

    -- 4 claim_timeouts during which slow reads nothing and acks nothing; its
    -- entries idle far longer than claim_timeout. Only its heart speaks.
    local until_t = proc.now() + 4 * CT
    while proc.now() < until_t do
      local p = pending_detail(t.redis, P .. ":s", P .. ":g")
      for _, id in ipairs(ids) do
        assert.is_table(p[id], id .. " is no longer pending")
        assert.equal("slow", p[id].owner, id .. " was taken from a live consumer")
        assert.equal(1, p[id].deliveries, id .. " was claimed (delivery count grew)")
      end
      assert.equal(0, cluster.claimed(peer).total, peer:describe())
      assert.equal(0, #peer:log_lines("looks dead"), peer:describe())
      H.sleep(0.1)
    end
    assert.is_true(slow:alive(), slow:describe())
    assert.is_true(H.consumers(t.redis, P .. ":s", P .. ":g").slow, "a live consumer was removed")

    -- The same peer does claim once slow really dies: its rounds were running.
    assert.equal("signal 9", slow:kill())
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = hosts })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.equal(#ids, cluster.claimed(peer).by.slow, peer:describe())
    wait_removed(t, "slow", hosts)
    assert.equal(0, peer:stop(), peer:describe())
  end)

  it("a consumer started after a peer died claims that peer's messages at once", function()
    local t = H.context()
    local P = t.prefix
    -- A longer claim_timeout makes "at once" (its first rounds) and "after a
    -- claim_timeout of its own" (had it presumed the stranger alive) far
    -- apart: 8 s, so that a loaded CI machine's slow start (4.3 s was seen
    -- with 4) cannot cross it.
    local ct = 8
    local path = script(t, { CT = ct })
    local a, ids = holding(t, path, "A", 25)
    assert.equal("signal 9", a:kill())
    -- Past claim_timeout: A's liveness key has expired.
    H.eventually(function()
      return t.redis:call("EXISTS", cluster.alive_key(P .. ":g", "A")) == 0
    end, 30, "A's liveness key to expire")
    assert.equal(25, H.xpending(t.redis, P .. ":s", P .. ":g").consumers.A)

    local b = H.start(t, { script = path, consumer = "B" })
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { b } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    local k = cluster.claimed(b)
    assert.equal(#ids, k.by.A, b:describe())
    -- Promptly: B knew from A's missing liveness key that A is dead, rather
    -- than presuming a consumer first seen alive for claim_timeout.
    local first = b:log_lines("consumer 'B' of group")[1]
    local took = cluster.log_interval(first, k.lines[1])
    assert.is_true(took < ct, string.format("B claimed %.2f s after it started (claim_timeout %g s): %s",
      took, ct, b:describe()))
    print(string.format("\nnewcomer claimed a dead peer's messages %.2f s after starting", took))
    wait_removed(t, "A", { b })
    assert.equal(0, b:stop(), b:describe())
  end)
end)

describe("a claim round over many dead consumers", function()
  after_each(function() H.cleanup() end)

  it("takes no more than max_in_flight in all, not max_in_flight from each", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, max_in_flight = 30,
             heartbeat_interval = 0.2, claim_timeout = 1 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    rsghost.redis.call("WAIT", 1, 100) -- a slow sink: the claimed messages wait in flight, long enough to be sampled
  end,
}
]])
    local r = t.redis
    local ids = H.xadd_many(r, P .. ":s", 200)
    r:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "0")
    -- Five consumers without heartbeats read 40 each and go silent: past
    -- claim_timeout they are dead by their idle time alone.
    for i = 1, 5 do
      r:call("XREADGROUP", "GROUP", P .. ":g", "ghost-" .. i, "COUNT", 40, "STREAMS", P .. ":s", ">")
    end
    H.sleep(1.2)
    local h = H.start(t, { script = path, consumer = "B" })
    local most = 0
    H.eventually(function()
      local p = H.xpending(r, P .. ":s", P .. ":g")
      local mine = p.consumers.B or 0
      if mine > most then most = mine end
      return r:call("LLEN", P .. ":out") >= #ids and p.count == 0
    end, 90, function() return h:describe() end)
    -- As in consumer_group_spec: XPENDING also counts a sunk batch whose
    -- XACK is still on its way (one batch, 10). A round that took 30 from
    -- each ghost would hold 150.
    assert.is_true(most <= 30 + 10, "up to " .. most .. " claimed messages were held (max_in_flight = 30)")
    assert.is_true(most >= 10, "the sample never saw a claim: " .. most)
    H.assert_exactly_once(ids, H.list(r, P .. ":out"))
    assert.equal(0, h:stop(), h:describe())
  end)
end)

describe("a claim round in a group of many streams", function()
  after_each(function() H.cleanup() end)

  -- XINFO CONSUMERS tells, stream by stream, what a dead consumer holds: the
  -- round asks XPENDING of those streams only and gives them the room,
  -- rather than a 200th of it to each of 200 streams.
  it("takes a dead consumer's messages on one of 200 streams in one round", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local streams = {}
for i = 1, 200 do streams[i] = P .. ":s:" .. i end
return {
  source = { streams = streams, group = P .. ":g", timeout = 0.2, heartbeat_interval = 0.2, claim_timeout = 1 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 50, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local r = t.redis
    for i = 1, 200 do r:call("XGROUP", "CREATE", P .. ":s:" .. i, P .. ":g", "$", "MKSTREAM") end
    local ids = H.xadd_many(r, P .. ":s:7", 100)
    -- A consumer without heartbeats read them and went silent.
    r:call("XREADGROUP", "GROUP", P .. ":g", "ghost", "STREAMS", P .. ":s:7", ">")
    H.sleep(1.2)
    local h = H.start(t, { script = path, consumer = "B" })
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s:7", group = P .. ":g",
      hosts = { h } })
    H.assert_exactly_once(ids, out)
    -- The first round that claimed anything took all 100 (before: 20, a
    -- 200th of the room, and four more rounds).
    local first = h:log_lines("claim round: .* claimed from 1,")[1]
    assert.is_truthy(first and first:find(" 100 message(s) claimed from 1", 1, true), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)
end)

describe("a dead consumer holding more than one XCLAIM takes", function()
  after_each(function() H.cleanup() end)

  -- The host claims at most 1000 ids per XCLAIM; 2500 pending entries take
  -- three, and each must come through once with its own delivery count.
  it("gives every message once, with Redis's delivery count, across the XCLAIMs", function()
    local t = H.context()
    local P = t.prefix
    local r = t.redis
    local ids = H.xadd_many(r, P .. ":s", 2500)
    r:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "0")
    r:call("XREADGROUP", "GROUP", P .. ":g", "ghost", "COUNT", 2500, "STREAMS", P .. ":s", ">")
    -- The last 500 delivered to the ghost a second time (a replay of its own).
    r:call("XREADGROUP", "GROUP", P .. ":g", "ghost", "COUNT", 500, "STREAMS", P .. ":s", ids[2000])
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, max_in_flight = 5000,
             heartbeat_interval = 0.2, claim_timeout = 1 },
  preprocess = function(stream, id, data, info) return id .. " " .. info.deliveries end,
  batch = { size = 500, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    H.sleep(1.2) -- the ghost, silent past claim_timeout, is dead by its idle time
    local h = H.start(t, { script = path, consumer = "B" })
    local out = H.wait_sunk(r, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 60 })
    local got, deliveries = {}, {}
    for _, line in ipairs(out) do
      local id, n = line:match("^(%S+) (%d+)$")
      got[#got + 1] = id
      deliveries[id] = tonumber(n)
    end
    H.assert_exactly_once(ids, got)
    -- Delivered to the ghost once (twice for the last 500), once more now.
    for i, id in ipairs(ids) do
      assert.equal(i > 2000 and 3 or 2, deliveries[id], "deliveries of message " .. i)
    end
    assert.equal(#ids, cluster.claimed(h).by.ghost, h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)
end)

describe("a streamz_redis peer (a bare name PUBLISHed on the group channel)", function()
  after_each(function() H.cleanup() end)

  it("is alive while its heartbeats come, and claimed from claim_timeout after they stop", function()
    local t = H.context()
    local P = t.prefix
    local r = t.redis
    -- py-peer reads 20 messages and never acks them, as a streamz_redis
    -- consumer busy with them would.
    r:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "0", "MKSTREAM")
    local ids = H.xadd_many(r, P .. ":s", 20)
    r:call("XREADGROUP", "GROUP", P .. ":g", "py-peer", "COUNT", 20, "STREAMS", P .. ":s", ">")
    assert.equal(20, H.xpending(r, P .. ":s", P .. ":g").consumers["py-peer"])

    local h = H.start(t, { script = script(t), consumer = "c1" })
    r:call("PUBLISH", P .. ":g", "py-peer")
    H.eventually(function() return H.consumers(r, P .. ":s", P .. ":g").c1 end, 30, function() return h:describe() end)

    -- Heartbeats every interval for 4 claim_timeouts: far past the grace a
    -- consumer first seen gets, and past its entries' idle time.
    local until_t = proc.now() + 4 * CT
    while proc.now() < until_t do
      r:call("PUBLISH", P .. ":g", "py-peer")
      local p = H.pending_ids(r, P .. ":s", P .. ":g")
      for _, id in ipairs(ids) do assert.equal("py-peer", p[id], id .. " was taken from a live streamz_redis peer") end
      assert.equal(0, cluster.claimed(h).total, h:describe())
      H.sleep(HB)
    end
    assert.is_true(H.consumers(r, P .. ":s", P .. ":g")["py-peer"])

    -- It falls silent: claimed, sunk by c1, removed from the group.
    local silent = proc.now()
    local out = H.wait_sunk(r, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.equal(#ids, cluster.claimed(h).by["py-peer"], h:describe())
    assert.same(ids, H.list(r, P .. ":by:c1"))
    print(string.format("\nsilent streamz_redis peer claimed within %.1f s (claim_timeout %g s)", proc.now() - silent, CT))
    wait_removed(t, "py-peer", { h })
    assert.equal(0, h:stop(), h:describe())
  end)
end)
