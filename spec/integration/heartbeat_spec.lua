-- The heart: a separate process that publishes the consumer's name on the
-- group's channel on time even while the main process is stuck in Lua; the
-- main process and its heart live and die together; a consumer without a
-- name gets a generated one, which requires heartbeats.
local H = require "support.host"
local proc = require "support.proc"
local cluster = require "support.cluster"

local HB, CT = cluster.DEFAULTS.HB, cluster.DEFAULTS.CT

local function script(t, vars)
  return cluster.script(H, t, vars)
end

describe("the heart", function()
  local subs = {}
  local function subscribe(t, channel)
    local s = cluster.subscribe(t.url, channel)
    subs[#subs + 1] = s
    return s
  end
  after_each(function()
    H.cleanup()
    for _, s in ipairs(subs) do s:close() end
    subs = {}
  end)

  it("publishes the bare consumer name on the group's channel and keeps the liveness key", function()
    local t = H.context()
    local P = t.prefix
    local sub = subscribe(t, P .. ":g")
    local h = H.start(t, { script = script(t), consumer = "c1" })
    -- Several heartbeats, each the bare name, nothing else on the channel.
    for _ = 1, 5 do
      local payload = sub:next(10)
      assert.is_not_nil(payload, "no heartbeat within 10 s: " .. h:describe())
      assert.equal("c1", payload)
    end
    local ttl = t.redis:call("PTTL", cluster.alive_key(P .. ":g", "c1"))
    assert.is_true(ttl > 0 and ttl <= CT * 1000, "liveness key TTL " .. tostring(ttl))
    assert.equal(1, t.redis:call("HEXISTS", cluster.registry_key(P .. ":g"), "c1"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("publishes on source.heartbeat_channel instead when it is given", function()
    local t = H.context()
    local P = t.prefix
    local own = subscribe(t, P .. ":hb")
    local group = subscribe(t, P .. ":g")
    local h = H.start(t, { script = script(t, { SOURCE_EXTRA = ', heartbeat_channel = P .. ":hb"' }), consumer = "c1" })
    for _ = 1, 3 do assert.equal("c1", own:next(10), h:describe()) end
    assert.is_nil(group:next(0), "a heartbeat on the group's channel although heartbeat_channel is set")
    assert.equal(0, h:stop(), h:describe())
  end)

  it("beats on time while a CPU-bound preprocess holds the main process for longer than claim_timeout", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t)
    local sub = subscribe(t, P .. ":g")
    -- Two messages of 2 s of pure Lua each: 4 s (20 intervals, over 2
    -- claim_timeouts) in which the main process runs no event loop at all.
    -- Added before it starts, so that its first read takes both.
    local ids = H.xadd_many(t.redis, P .. ":s", 2, function() return { "busy", 2 } end)
    local busy = H.start(t, { script = path, consumer = "busy" })
    assert.equal("busy", sub:next(10), "no first heartbeat: " .. busy:describe())

    local beats = {}      -- arrival times of "busy" heartbeats
    local started, ended  -- when we first saw the log say so
    local peer
    local limit = proc.now() + 60 * H.scale
    while true do
      local payload, at = sub:next(1)
      local now = proc.now()
      if payload == "busy" then beats[#beats + 1] = at end
      local log = busy:log()
      if not started and log:find("busy start") then
        started = now
        -- A peer that runs its claim rounds while "busy" is silent on Redis
        -- (no reads) but beating: it must not take the busy one's messages.
        peer = H.start(t, { script = path, consumer = "peer" })
      end
      if not ended and select(2, log:gsub("busy end", "")) >= 2 then ended = now end
      if ended and now - ended > 1 then break end
      assert.is_true(now < limit, "the busy preprocess did not finish: " .. busy:describe())
    end

    -- Heartbeats kept coming during the busy time, at about the interval.
    local during, maxgap = 0, 0
    for i, at in ipairs(beats) do
      if at >= started and at <= ended then during = during + 1 end
      if i > 1 then maxgap = math.max(maxgap, at - beats[i - 1]) end
    end
    local busy_for = ended - started
    assert.is_true(busy_for >= 3, string.format("busy for %.2f s only", busy_for))
    assert.is_true(during >= busy_for / HB / 3,
      string.format("%d heartbeats in %.2f s of busy preprocess (interval %g s)", during, busy_for, HB))
    assert.is_true(maxgap < CT / 2,
      string.format("a gap of %.3f s between heartbeats (interval %g s, claim_timeout %g s)", maxgap, HB, CT))
    print(string.format("\nbusy preprocess %.1f s: %d heartbeats, largest gap %.3f s", busy_for, during, maxgap))

    -- The busy consumer kept and finished its own messages.
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { busy, peer } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.same(ids, H.list(t.redis, P .. ":by:busy"))
    assert.equal(0, cluster.claimed(peer).total, peer:describe())
    assert.equal(0, #peer:log_lines("looks dead"), peer:describe())
    assert.equal(0, busy:stop(), busy:describe())
    assert.equal(0, peer:stop(), peer:describe())
  end)

  -- The exit code the stop was begun with (1: the heart died) is the one
  -- the process exits with, after the flush.
  it("kill -9 of the heart stops the main process, non-zero, saying the heart died", function()
    local t = H.context()
    local P = t.prefix
    local h = H.start(t, { script = script(t), consumer = "c1" })
    local heart = cluster.heart_pid(h, H)
    -- Working normally first: it reads and sinks.
    local ids = H.xadd_many(t.redis, P .. ":s", 10)
    H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })

    assert.is_true(cluster.signal(heart, "KILL"))
    local code = h:wait(20)
    assert.is_not_nil(code, "still running 20 s after its heart was killed: " .. h:describe())
    assert.not_equal(0, code, "exit status 0 after the heart died: " .. h:describe())
    assert.not_equal("signal 9", code)
    assert.is_true(#h:log_lines("heart process died") > 0, h:describe())
  end)

  it("kill -9 of the main process ends its heart: no more heartbeats, the liveness key expires", function()
    local t = H.context()
    local P = t.prefix
    local sub = subscribe(t, P .. ":g")
    local h = H.start(t, { script = script(t), consumer = "c1" })
    local heart = cluster.heart_pid(h, H)
    assert.equal("c1", sub:next(10), "no heartbeat: " .. h:describe())
    assert.is_false(cluster.gone(heart))

    assert.equal("signal 9", h:kill())
    H.eventually(function() return cluster.gone(heart) end, 30,
      function() return "heart " .. heart .. " still there, state " .. tostring(cluster.state(heart)) end)
    -- Nothing beats for the dead consumer any more.
    sub:drain()
    assert.is_nil(sub:next(3 * HB + 0.5), "a heartbeat after the main process and its heart died")
    H.eventually(function()
      return t.redis:call("EXISTS", cluster.alive_key(P .. ":g", "c1")) == 0
    end, 30, "the liveness key of the dead consumer to expire")
  end)
end)

describe("a consumer without a name", function()
  after_each(function() H.cleanup() end)

  it("is refused without heartbeat_interval: exit 2 before touching Redis, with a clear message", function()
    local t = H.context()
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", path }
    assert.equal(2, code, out .. err)
    assert.matches("CONSUMER", err)
    assert.matches("heartbeat_interval", err)
    assert.not_matches("connect", err)
  end)

  it("gets a generated name with heartbeats: logged, unique to the process, and the one used in the group", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t)
    local h = H.start(t, { script = path, consumer = false })
    local h2 = H.start(t, { script = path, consumer = false })
    local name, name2
    H.eventually(function()
      name, name2 = cluster.generated_name(h), cluster.generated_name(h2)
      return name and name2
    end, 30, function() return h:describe() .. "\n" .. h2:describe() end)
    assert.not_equal(name, name2)
    assert.truthy(name:find("-" .. h:pid() .. "-", 1, true), name .. " does not hold the pid " .. h:pid())
    -- Both read (a blocking XREADGROUP makes its consumer in the group)
    -- before the messages come: on a loaded machine one host's first read can
    -- come after the other has sunk everything, and its name would then be
    -- in the group only later.
    H.eventually(function()
      local m = H.consumers(t.redis, P .. ":s", P .. ":g")
      return m[name] and m[name2]
    end, 30, function() return h:describe() .. "\n" .. h2:describe() end)

    local ids = H.xadd_many(t.redis, P .. ":s", 40)
    H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h, h2 } })
    -- rsghost.consumer in the script is the generated name, and so is the
    -- consumer in the group, the heartbeat and the liveness key.
    local by1, by2 = H.list(t.redis, P .. ":by:" .. name), H.list(t.redis, P .. ":by:" .. name2)
    assert.equal(#ids, #by1 + #by2)
    local members = H.consumers(t.redis, P .. ":s", P .. ":g")
    assert.is_true(members[name], name .. " not in XINFO CONSUMERS")
    assert.is_true(members[name2], name2 .. " not in XINFO CONSUMERS")
    assert.equal(1, t.redis:call("EXISTS", cluster.alive_key(P .. ":g", name)))
    assert.equal(0, h:stop(), h:describe())
    assert.equal(0, h2:stop(), h2:describe())
    -- A clean stop with nothing pending leaves the group: generated names
    -- never come back, so they must not pile up there.
    members = H.consumers(t.redis, P .. ":s", P .. ":g")
    assert.is_nil(members[name], h:describe())
    assert.is_nil(members[name2], h2:describe())
    assert.equal(0, t.redis:call("HEXISTS", "rsghost:consumers:" .. P .. ":g", name))
    assert.equal(1, #h:log_lines("consumer '" .. name:gsub("%p", "%%%0") .. "' left group"), h:describe())
  end)

  it("keeps a named consumer in the group after a clean stop: its name comes back", function()
    local t = H.context()
    local P = t.prefix
    local h = H.start(t, { script = script(t), consumer = "c1" })
    local ids = H.xadd_many(t.redis, P .. ":s", 5)
    H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    assert.equal(0, h:stop(), h:describe())
    assert.is_true(H.consumers(t.redis, P .. ":s", P .. ":g")["c1"])
  end)
end)
