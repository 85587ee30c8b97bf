-- Redis restarts the hard way. Two things a restarting Redis does that the
-- host must survive like any other outage (log, retry, carry on):
--  * it dies with commands of ours unread, so our socket gets a reset (an
--    error event on the poll handle) instead of a clean end of file;
--  * it answers -LOADING while its dataset loads (seconds, for a large one).
--    key-load-delay (a Redis debug setting, microseconds per key) stretches
--    the loading of a small dataset so the window is certain.
local hiredis = require "rsghost.hiredis"
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
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

-- Fills the server with n filler keys and rewrites the AOF, so that the next
-- start loads them through the (delayed) RDB preamble.
local function make_loading_slow(r, n)
  local cmds = {}
  for i = 1, n do cmds[#cmds + 1] = { "SET", "filler:" .. i, "x" } end
  r:pipeline(cmds)
  r:call("BGREWRITEAOF")
  H.eventually(function()
    local p = H.info(r, "persistence")
    return p.aof_rewrite_in_progress == "0" and p.aof_rewrite_scheduled == "0"
  end, 60)
end

describe("when Redis dies with our commands unread", function()
  after_each(function() H.cleanup() end)

  it("notices the reset connection, reconnects and carries on", function()
    -- The sink keeps the command connection busy writing 4 MB pipelines, so
    -- that a Redis stopped and then killed leaves data of ours unread and
    -- the kernel resets the connection. A few rounds make that certain.
    local path_src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
local big = string.rep("x", 2048)
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 5, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.5 },
  sink = function(items)
    local cmds = {}
    for i = 1, 2000 do cmds[i] = { "SET", P .. ":big:" .. i, big } end
    rsghost.redis.pipeline(cmds)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]]
    -- Not persistent: each restart starts empty (the host recreates its
    -- group), so each round checks that fresh messages flow again.
    local srv = server.start()
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, path_src) })
    for round = 1, 3 do
      H.xadd_many(t.redis, P .. ":s", 100)
      H.eventually(function() return t.redis:call("LLEN", P .. ":out") >= 10 end, 60,
        function() return "round " .. round .. ": " .. h:describe() end)
      srv.proc:signal("STOP")
      H.sleep(0.2)
      srv.kill()
      srv.restart()
      local fresh = H.xadd_many(t.redis, P .. ":s", 20)
      local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #fresh, streams = P .. ":s", group = P .. ":g",
        hosts = { h }, timeout = 60 })
      local c = H.compare(fresh, out)
      assert.same({}, c.missing, "round " .. round)
    end
    assert.equal(0, h:stop(), h:describe())
  end)
end)

describe("when Redis restarts and loads its data", function()
  after_each(function() H.cleanup() end)

  it("keeps retrying through -LOADING and carries on", function()
    local srv = server.start { persist = true, args = {
      "--key-load-delay", "1000",                          -- 1 ms per key: ~2 s for 2000
      "--loading-process-events-interval-bytes", "1024",  -- answer clients while loading
    } }
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, SRC) })
    local ids = H.xadd_many(t.redis, P .. ":s", 20)
    H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    make_loading_slow(t.redis, 2000)

    srv.kill()
    srv.restart() -- returns once PING answers PONG, i.e. loading is over
    local more = H.xadd_many(t.redis, P .. ":s", 20)
    for _, id in ipairs(more) do ids[#ids + 1] = id end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 120 })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.same({}, c.unexpected)
    assert.is_true(h:alive(), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("waits for a Redis that is still loading when the host starts", function()
    local srv = server.start { persist = true, args = {
      "--key-load-delay", "1000",
      "--loading-process-events-interval-bytes", "1024",
    } }
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    local P = t.prefix
    make_loading_slow(t.redis, 2000)
    srv.kill()
    srv.restart { wait = false }
    -- The host connects while Redis loads.
    H.eventually(function()
      local ok, c = pcall(hiredis.connect, srv.url, { connect_timeout = 1, timeout = 2 })
      if not ok then return false end
      local _, err = c:pcall("PING")
      c:close()
      return err and err:find("LOADING")
    end, 30)
    local h = H.start(t, { script = H.script(t, SRC) })
    local ids
    H.eventually(function()
      local ok = pcall(t.redis.call, t.redis, "PING")
      if ok then ids = H.xadd_many(t.redis, P .. ":s", 20) end
      return ok
    end, 60)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 120 })
    local c = H.compare(ids, out)
    assert.same({}, c.missing)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
