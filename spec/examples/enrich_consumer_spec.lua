-- examples/enrich-consumer.lua end to end, and the script hooks it shows:
-- init runs before anything is read (and holds reading back while it fails),
-- timers registered with rsghost.every run on the host's loop. The example
-- uses fixed key names (users, events, enriched-events): a private server.
local server = require "support.server"
local H = require "support.host"

local EXAMPLE = "examples/enrich-consumer.lua"

local function enriched(r)
  local out = {}
  for _, e in ipairs(r:call("XRANGE", "enriched-events", "-", "+")) do
    local f = {}
    for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
    out[#out + 1] = f
  end
  return out
end

describe(EXAMPLE, function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() srv.stop() end)
  after_each(function()
    H.cleanup()
    srv.client():call("FLUSHALL")
  end)

  it("loads (--check) without touching Redis", function()
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", "--check", EXAMPLE, "enricher-1" }
    assert.equal(0, code, out .. err)
  end)

  it("enriches with the users init loaded before the first read; unknown users are dropped and acked", function()
    local t = H.context { server = srv }
    local r = t.redis
    r:call("HSET", "users", "1", "ada", "2", "grace")
    -- Waiting before the start: without init the first read would race the load.
    local ids = H.xadd_many(r, "events", 3, function(i) return { "user", tostring(i), "event", "e" .. i } end)
    local h = H.start(t, { script = EXAMPLE, consumer = "enricher-1" })
    H.eventually(function()
      return #enriched(r) == 2 and H.xpending(r, "events", "enrichers").count == 0
        and H.group_info(r, "events", "enrichers")["last-delivered-id"] == ids[3]
    end, 60, function() return h:describe() end)
    local got = enriched(r)
    assert.same({ user = "1", name = "ada", event = "e1", source_id = ids[1] }, got[1])
    assert.same({ user = "2", name = "grace", event = "e2", source_id = ids[2] }, got[2])
    assert.equal(1, #h:log_lines("info: loaded 2 users"), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("reads nothing while init fails, and starts once its retry succeeds", function()
    local t = H.context { server = srv }
    local r = t.redis
    r:call("SET", "users", "not a hash")
    H.xadd_many(r, "events", 2, function(i) return { "user", "1", "event", "e" .. i } end)
    local h = H.start(t, { script = EXAMPLE, consumer = "enricher-1" })
    H.eventually(function() return #h:log_lines("init failed %(attempt 2%)") == 1 end, 60,
      function() return h:describe() end)
    assert.matches("WRONGTYPE", h:log_lines("init failed")[1])
    assert.is_nil(H.group_info(r, "events", "enrichers"), "read before init succeeded: " .. h:describe())
    r:call("DEL", "users")
    r:call("HSET", "users", "1", "ada")
    H.eventually(function() return #enriched(r) == 2 end, 60, function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("runs rsghost.every timers on the host's loop, where they may call Redis", function()
    local t = H.context { server = srv }
    local r = t.redis
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local version = "none"
rsghost.every(0.1, function() version = rsghost.redis.call("GET", P .. ":version") or "none" end)
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return version end,
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    r:call("SET", t.prefix .. ":version", "v1")
    H.eventually(function()
      H.xadd_many(r, t.prefix .. ":s", 1)
      local out = H.list(r, t.prefix .. ":out")
      return out[#out] == "v1"
    end, 60, function() return h:describe() end)
    r:call("SET", t.prefix .. ":version", "v2")
    H.eventually(function()
      H.xadd_many(r, t.prefix .. ":s", 1)
      local out = H.list(r, t.prefix .. ":out")
      return out[#out] == "v2"
    end, 60, function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
