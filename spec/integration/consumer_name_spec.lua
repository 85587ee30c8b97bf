-- One consumer name, one live process: with heartbeats, a second process
-- started with a name a live one uses refuses to start, naming the other's
-- host and pid, and reads nothing; a restart after kill -9 takes the name
-- over as soon as the dead one's owner key runs out (two heartbeat
-- intervals), and replays what the dead one held; a clean stop frees the
-- name at once.
local H = require "support.host"
local cluster = require "support.cluster"
local proc = require "support.proc"

local function script(t, vars)
  return cluster.script(H, t, vars)
end

local function hostname()
  local f = assert(io.popen("hostname"))
  local name = f:read("*l")
  f:close()
  return name
end

describe("a consumer name", function()
  after_each(function() H.cleanup() end)

  it("used by a live process is refused to a second one, which names the first's host and pid and reads nothing", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t)
    local first = H.start(t, { script = path, consumer = "c1" })
    local ids = H.xadd_many(t.redis, P .. ":s", 20)
    H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { first } })

    -- A message the first holds (its sink is blocked): a second process
    -- reading under the same name would replay it.
    t.redis:call("SET", P .. ":block:c1", "1")
    local held = H.xadd_many(t.redis, P .. ":s", 1)
    H.eventually(function() return H.xpending(t.redis, P .. ":s", P .. ":g").count == 1 end, 30,
      function() return first:describe() end)

    local second = H.start(t, { script = path, consumer = "c1" })
    local code = second:wait(60)
    assert.equal(1, code, second:describe())
    local log = second:log()
    local who = string.format("pid %d on host %s", first:pid(), hostname())
    assert.is_truthy(log:find("consumer name 'c1' of group '" .. P .. ":g' is in use by a live process: " .. who, 1, true),
      "the refusal does not name " .. who .. ":\n" .. second:describe())
    -- It read nothing: the held message was delivered once, to the first.
    local pending = t.redis:call("XPENDING", P .. ":s", P .. ":g", "-", "+", 10)
    assert.equal(1, #pending, "pending entries changed")
    assert.equal(held[1], pending[1][1])
    assert.equal(1, tonumber(pending[1][4]), "the held message was delivered again: " .. second:describe())

    -- The first is unharmed: still alive, it sinks the held message.
    assert.is_true(first:alive(), first:describe())
    t.redis:call("DEL", P .. ":block:c1")
    local all = {}
    for _, id in ipairs(ids) do all[#all + 1] = id end
    all[#all + 1] = held[1]
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #all, streams = P .. ":s", group = P .. ":g", hosts = { first } })
    H.assert_exactly_once(all, out)
    assert.equal(0, first:stop(), first:describe())
  end)

  it("of a process killed with -9 is taken over by a restart, which replays what it held", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t)
    local first = H.start(t, { script = path, consumer = "c1" })
    t.redis:call("SET", P .. ":block:c1", "1")
    local ids = H.xadd_many(t.redis, P .. ":s", 10)
    H.eventually(function() return H.xpending(t.redis, P .. ":s", P .. ":g").count == #ids end, 30,
      function() return first:describe() end)
    assert.equal("signal 9", first:kill())
    t.redis:call("DEL", P .. ":block:c1")

    -- At once: the dead one's owner key still runs, and the restart waits
    -- for it instead of refusing.
    local killed = proc.now()
    local again = H.start(t, { script = path, consumer = "c1" })
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { again } })
    H.assert_exactly_once(ids, out)
    print(string.format("\nrestart after kill -9 with the same name: all replayed %.2f s after the kill (heartbeat_interval %g s)",
      proc.now() - killed, cluster.DEFAULTS.HB))
    assert.is_true(again:alive(), again:describe())
    assert.is_nil(again:log():find("in use by a live process", 1, true), again:describe())
    assert.equal(0, again:stop(), again:describe())
  end)

  it("is freed by a clean stop and comes back, while two different names run side by side", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t)
    local a = H.start(t, { script = path, consumer = "a" })
    local b = H.start(t, { script = path, consumer = "b" })
    local ids = H.xadd_many(t.redis, P .. ":s", 30)
    H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { a, b } })
    assert.equal(0, a:stop(), a:describe())
    -- A clean stop frees the name at once: a planned restart does not wait.
    local owner = "rsghost:owner:" .. P .. ":g:a"
    assert.equal(0, t.redis:call("EXISTS", owner), "the owner key outlived a clean stop")
    assert.equal(1, t.redis:call("EXISTS", "rsghost:owner:" .. P .. ":g:b"))
    local again = H.start(t, { script = path, consumer = "a" })
    -- The name is the new process's: the owner key holds its host and pid.
    H.eventually(function()
      local v = t.redis:call("GET", owner)
      return v and v:find(":" .. again:pid() .. ":", 1, true)
    end, 30, function() return tostring(t.redis:call("GET", owner)) .. "\n" .. again:describe() end)
    local more = H.xadd_many(t.redis, P .. ":s", 30)
    local all = {}
    for _, id in ipairs(ids) do all[#all + 1] = id end
    for _, id in ipairs(more) do all[#all + 1] = id end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #all, streams = P .. ":s", group = P .. ":g", hosts = { again, b } })
    H.assert_exactly_once(all, out)
    assert.equal(0, again:stop(), again:describe())
    assert.equal(0, b:stop(), b:describe())
  end)
end)
