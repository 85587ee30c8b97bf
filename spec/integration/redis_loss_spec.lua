-- Redis going away: killed mid-run and restarted, or not there yet when the
-- host starts. The host logs it, keeps retrying, carries on once Redis is
-- back, and loses nothing. These specs kill their own private servers.
local server = require "support.server"
local H = require "support.host"

local SRC = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 20, timeout = 0.05 },
  retry = { initial = 0.05, max = 1 },
  sink = function(items)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    rsghost.redis.call("WAIT", 1, 50) -- a slow sink: 50 ms
  end,
}
]]

-- Log lines at warn or error level.
local function complaints(h)
  local out = {}
  for _, line in ipairs(h:log_lines()) do
    if line:find("] warn: ", 1, true) or line:find("] error: ", 1, true) then out[#out + 1] = line end
  end
  return out
end

describe("when Redis goes away", function()
  after_each(function() H.cleanup() end)

  it("logs, reconnects after a kill -9 and restart, carries on and loses nothing", function()
    local srv = server.start { persist = true }
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, SRC) })
    local ids = H.xadd_many(t.redis, P .. ":s", 200)
    H.eventually(function() return t.redis:call("LLEN", P .. ":out") >= 40 end, 60,
      function() return h:describe() end)
    local quiet = #complaints(h)
    srv.kill()
    -- The host notices and says so, and keeps running.
    H.eventually(function() return #complaints(h) > quiet end, 60, function() return h:describe() end)
    assert.is_true(h:alive(), "the host exited when Redis went away: " .. h:describe())
    srv.restart()
    local more = H.xadd_many(t.redis, P .. ":s", 50)
    for _, id in ipairs(more) do ids[#ids + 1] = id end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 120 })
    local c = H.compare(ids, out)
    assert.same({}, c.missing, "messages lost across the Redis restart")
    assert.same({}, c.unexpected)
    print(string.format("\nRedis kill -9 and restart: %d messages, %d delivered, %d duplicates", #ids, #out, c.duplicates))
    assert.is_true(h:alive(), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("recreates its group when Redis comes back empty", function()
    local srv = server.start()
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, SRC) })
    local first = H.xadd_many(t.redis, P .. ":s", 10)
    H.wait_sunk(t.redis, { out = P .. ":out", n = #first, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    srv.kill()
    srv.restart() -- not persistent: the stream, the group and the output are gone
    H.eventually(function() return H.group_info(t.redis, P .. ":s", P .. ":g") end, 60,
      function() return h:describe() end)
    local ids = H.xadd_many(t.redis, P .. ":s", 30)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 120 })
    H.assert_exactly_once(ids, out)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("keeps retrying when Redis is unreachable at start and works once it comes up", function()
    local port = server.free_port()
    local t = {
      prefix = H.prefix(),
      dir = H.tmpdir(),
      url = server.url_for(port),
    }
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, SRC) })
    H.eventually(function() return #complaints(h) > 0 end, 60, function() return h:describe() end)
    assert.is_true(h:alive(), "the host gave up: " .. h:describe())
    local srv = server.start { port = port }
    finally(function() srv.stop() end)
    t.redis = srv.client()
    local ids = H.xadd_many(t.redis, P .. ":s", 30)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 120 })
    H.assert_exactly_once(ids, out)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
