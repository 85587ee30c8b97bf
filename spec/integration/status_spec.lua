-- rsghost status: the group as Redis has it, read-only. A live rsghost
-- consumer, a dead one still holding messages (registered, its liveness key
-- gone) and a streamz_redis-style consumer (no liveness key, heartbeats on
-- the group's channel) are each shown as they are.
local H = require "support.host"
local proc = require "support.proc"
local server = require "support.server"
local cjson = require "cjson"

-- claim_timeout 60: the live consumer leaves the dead one's messages alone
-- (it claims only what has been idle that long) while the spec looks.
local SCRIPT = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2,
             heartbeat_interval = 0.2, claim_timeout = 60, dead_letter = P .. ":dead" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

-- The group before any rsghost runs: d1, an rsghost consumer that died
-- holding 3 messages (registered; its key expired), sz, a streamz_redis
-- consumer holding 1; then c1 runs and sinks 10 more; one dead letter.
local function scene(t)
  local P = t.prefix
  local r = t.redis
  r:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "0", "MKSTREAM")
  H.xadd_many(r, P .. ":s", 3)
  r:call("XREADGROUP", "GROUP", P .. ":g", "d1", "COUNT", 3, "STREAMS", P .. ":s", ">")
  r:call("HSET", "rsghost:consumers:" .. P .. ":g", "d1", "1")
  H.xadd_many(r, P .. ":s", 1)
  r:call("XREADGROUP", "GROUP", P .. ":g", "sz", "COUNT", 1, "STREAMS", P .. ":s", ">")
  r:call("XADD", P .. ":dead", "*", "rsghost:stream", P .. ":s")
  local path = H.script(t, SCRIPT)
  local h = H.start(t, { script = path, consumer = "c1" })
  local ids = H.xadd_many(r, P .. ":s", 10)
  H.eventually(function() return #H.list(r, P .. ":out") == 10 end, 30,
    function() return h:describe() end)
  H.eventually(function() return H.xpending(r, P .. ":s", P .. ":g").count == 4 end, 30,
    function() return h:describe() end)
  return path, h, ids[#ids]
end

-- Runs rsghost status with args while sz beats (PUBLISH "sz" on the group's
-- channel, as streamz_redis does). Returns code, stdout, stderr.
local function status_while_sz_beats(t, args)
  local dir = server.tmpdir("status")
  local argv = { H.bin, "status", "--redis", t.url }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.spawn { argv = argv, env = { RSGHOST_REDIS_URL = false },
    stdout = dir .. "/out", stderr = dir .. "/err" }
  local deadline = proc.now() + H.timeout
  while p:alive() and proc.now() < deadline do
    t.redis:call("PUBLISH", t.prefix .. ":g", "sz")
    proc.sleep(0.05)
  end
  local code = p:wait(5)
  if code == nil then p:kill() end
  return code, proc.slurp(dir .. "/out"), proc.slurp(dir .. "/err")
end

local function by_name(list)
  local out = {}
  for _, c in ipairs(list) do out[c.name] = c end
  return out
end

describe("rsghost status", function()
  after_each(function() H.cleanup() end)

  it("--json: streams with length, lag, pending, last id; each consumer alive or dead, and why", function()
    local t = H.context()
    local P = t.prefix
    local path, h, last = scene(t)
    local code, out, err = status_while_sz_beats(t, { "--json", path })
    assert.equal(0, code, err)
    local s = cjson.decode(out)
    assert.equal(P .. ":g", s.group)
    assert.equal(1, #s.streams)
    local st = s.streams[1]
    assert.equal(P .. ":s", st.stream)
    assert.equal(14, st.length)
    assert.equal(4, st.pending)
    assert.equal(last, st.last_delivered_id)
    assert.equal(0, st.lag) -- Redis 7 counts it; every entry was delivered
    local c = by_name(s.consumers)
    assert.same({ "alive", 0, true }, { c.c1.state, c.c1.pending, c.c1.liveness_key })
    assert.matches("^liveness key, heartbeat %d+%.%ds ago$", c.c1.evidence)
    assert.same({ "dead", 3, true }, { c.d1.state, c.d1.pending, c.d1.liveness_key })
    assert.matches("liveness key gone", c.d1.evidence)
    assert.same({ "alive", 1, false, true },
      { c.sz.state, c.sz.pending, c.sz.liveness_key, c.sz.heartbeat_heard })
    assert.equal("heartbeat heard, no liveness key", c.sz.evidence)
    assert.same({ stream = P .. ":dead", count = 1 }, s.dead_letters)
    -- Read-only: nothing moved.
    assert.equal(4, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("a table for people; a streamz_redis consumer not heard is judged by what Redis saw", function()
    local t = H.context()
    local P = t.prefix
    local path, h = scene(t)
    local code, out, err = H.run({ "status", "--redis", t.url, path })
    assert.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("group '" .. P .. ":g' (heartbeats every 0.2s, claim_timeout 60s)", lines[1])
    local function row(name)
      for _, l in ipairs(lines) do
        if l:sub(1, #name + 1) == name .. " " then return l end
      end
      error("no row for " .. name .. " in:\n" .. out)
    end
    assert.matches("^STREAM +LENGTH +LAG +PENDING +LAST%-DELIVERED$", row("STREAM"))
    assert.matches("^%S+ +14 +0 +4 +%d+%-%d+$", row(P .. ":s"))
    assert.matches("^c1 +alive +0 +[%d.]+s +liveness key, heartbeat", row("c1"))
    assert.matches("^d1 +dead +3 +[%d.]+s +liveness key gone", row("d1"))
    assert.matches("^sz +alive +1 +[%d.]+s +no heartbeat heard; seen by redis [%d.]+s ago$", row("sz"))
    assert.equal("dead letters: 1 in '" .. P .. ":dead'", lines[#lines])
    assert.equal(0, h:stop(), h:describe())
  end)

  it("--watch refreshes until interrupted, a JSON object per refresh", function()
    local t = H.context()
    local P = t.prefix
    local path, h = scene(t)
    local dir = server.tmpdir("status")
    local p = proc.spawn { argv = { H.bin, "status", "--json", "--watch", "0.2", "--redis", t.url, path },
      env = { RSGHOST_REDIS_URL = false }, stdout = dir .. "/out", stderr = dir .. "/err" }
    H.eventually(function()
      local n = select(2, proc.slurp(dir .. "/out"):gsub("\n", ""))
      return n >= 3
    end, 30, function() return proc.slurp(dir .. "/err") end)
    p:kill()
    for line in proc.slurp(dir .. "/out"):gmatch("[^\n]+") do
      local s = cjson.decode(line)
      assert.equal(P .. ":g", s.group)
      assert.equal(3, by_name(s.consumers).d1.pending)
    end
    assert.equal(0, h:stop(), h:describe())
  end)

  it("refuses a script without a group, and exits 1 when Redis cannot be reached", function()
    local t = H.context()
    local plain = H.script(t, [[
return { source = { streams = "{{P}}:s" }, preprocess = function(s, id) return id end,
  sink = function() end }
]])
    local code, _, err = H.run({ "status", "--redis", t.url, plain })
    assert.equal(2, code)
    assert.matches("reads without a consumer group", err)
    local grouped = H.script(t, SCRIPT)
    code, _, err = H.run({ "status", "--redis", "redis://127.0.0.1:" .. server.free_port(), grouped })
    assert.equal(1, code)
    assert.matches("cannot connect to redis://127.0.0.1:%d+", err)
    code, _, err = H.run({ "status", "--count", "3", grouped })
    assert.equal(2, code)
    assert.matches("%-%-count is for", err)
  end)
end)
