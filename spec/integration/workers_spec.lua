-- rsghost --workers N: a master that keeps N named consumers alive, with the
-- real binary and a real redis-server. A worker killed with SIGKILL comes
-- back under its name and its pending messages are processed; SIGTERM to the
-- master flushes every worker and exits 0; a script that fails at start, or
-- a worker that keeps dying young, makes the master give up with a clear
-- error; no worker outlives the master, kill -9 of the master included.
local H = require "support.host"
local psignal = require "posix.signal"

local function alive(pid) return psignal.kill(pid, 0) == 0 end

-- The pids of worker `name` the master's log says it started, in order.
local function started(h, name)
  local pids = {}
  local pattern = "worker %d+ " .. name:gsub("%p", "%%%0") .. " started %(pid %d+%)"
  for _, line in ipairs(h:log_lines(pattern)) do
    pids[#pids + 1] = tonumber(line:match("%(pid (%d+)%)"))
  end
  return pids
end

local PIPELINE = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, count = 20 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 20, timeout = 0.05 },
  sink = function(items)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    -- Slow enough that a worker holds unacknowledged messages when killed.
    rsghost.redis.call("WAIT", 1, 20)
  end,
}
]]

describe("rsghost --workers", function()
  after_each(function() H.cleanup() end)

  it("restarts a killed worker under its name; its pending messages are processed; SIGTERM stops all",
    function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, PIPELINE)
    local ids = H.xadd_many(t.redis, P .. ":s", 3000)
    local h = H.start(t, { script = path, consumer = "w", args = { "--workers", "2" }, log_level = "info" })
    local first
    H.eventually(function()
      first = started(h, "w-1")[1]
      return first and H.xpending(t.redis, P .. ":s", P .. ":g").consumers["w-1"]
    end, 60, function() return h:describe() end)
    assert.is_true(#started(h, "w-2") == 1, h:describe())
    -- Killed while it holds messages: they stay pending under w-1 until the
    -- new w-1 replays them.
    psignal.kill(first, psignal.SIGKILL)
    local second
    H.eventually(function()
      second = started(h, "w-1")[2]
      return second ~= nil
    end, 60, function() return h:describe() end)
    assert.are_not.equal(first, second)
    assert.equal(1, #h:log_lines("worker 1 w%-1 was killed by signal 9 after [%d.]+ s; starting it again"),
      h:describe())
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 90 })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.same({ ["w-1"] = true, ["w-2"] = true }, H.consumers(t.redis, P .. ":s", P .. ":g"))

    local pids = { second, started(h, "w-2")[1] }
    assert.equal(0, h:stop(), h:describe())
    for _, pid in ipairs(pids) do assert.is_false(alive(pid), "worker " .. pid .. " outlived the master") end
    assert.equal(1, #h:log_lines("every worker stopped cleanly"), h:describe())
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
  end)

  it("gives up at once, exit 2, when a worker reports a script error", function()
    local t = H.context()
    local path = H.script(t, "return { source = ", nil, "broken.lua")
    local h = H.start(t, { script = path, consumer = "w", args = { "--workers", "3" }, log_level = "info" })
    assert.equal(2, h:wait(60), h:describe())
    assert.is_true(#h:log_lines("a usage or script error, see above%): stopping all workers") >= 1, h:describe())
    assert.is_true(#h:log_lines("broken%.lua") >= 1, h:describe())
  end)

  it("gives up, exit 1, on a worker that keeps dying at start, instead of looping", function()
    local t = H.context()
    local P = t.prefix
    -- Exits 1 as it loads, as a process does whose environment is broken
    -- (a C module that aborts, a file it needs that is not there).
    local path = H.script(t, [[
local P = "{{P}}"
if P then os.exit(1) end
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]])
    local h = H.start(t, { script = path, consumer = "w", args = { "--workers", "1" }, log_level = "info" })
    assert.equal(1, h:wait(120), h:describe())
    assert.equal(5, #started(h, "w-1"), h:describe())
    assert.equal(1, #h:log_lines("its 5th start in a row to fail within 5 s: giving up"), h:describe())
  end)

  it("leaves no worker behind when the master is killed with SIGKILL", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, PIPELINE)
    H.xadd_many(t.redis, P .. ":s", 100)
    local h = H.start(t, { script = path, consumer = "w", args = { "--workers", "2" }, log_level = "info" })
    local pids
    H.eventually(function()
      pids = { started(h, "w-1")[1], started(h, "w-2")[1] }
      local c = H.consumers(t.redis, P .. ":s", P .. ":g")
      return pids[1] and pids[2] and c["w-1"] and c["w-2"]
    end, 60, function() return h:describe() end)
    h:kill()
    H.eventually(function() return not alive(pids[1]) and not alive(pids[2]) end, 60,
      function() return "workers still running: " .. table.concat(pids, ", ") .. "\n" .. h:describe() end)
  end)

  it("refuses a --workers value that is not a count", function()
    local code, _, err = H.run({ "--workers", "0", "x.lua", "w" })
    assert.equal(2, code)
    assert.matches("%-%-workers needs a whole number from 1 to 256, or auto, not '0'", err)
  end)
end)
