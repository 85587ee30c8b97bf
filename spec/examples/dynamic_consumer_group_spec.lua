-- examples/dynamic-consumer-group.lua end to end: run without a consumer
-- name, the host generates one, which the example's heartbeats make
-- possible, and its liveness key lives for the example's claim_timeout.
local server = require "support.server"
local H = require "support.host"
local cluster = require "support.cluster"

describe("examples/dynamic-consumer-group.lua", function()
  local EXAMPLE = "examples/dynamic-consumer-group.lua"
  after_each(function() H.cleanup() end)

  it("loads (--check) without a consumer name and without touching Redis", function()
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", "--check", EXAMPLE }
    assert.equal(0, code, out .. err)
  end)

  -- Fixed key names (source-stream-1/2, my-group, preprocessed-data): a
  -- private redis-server.
  it("runs under a generated name, beating with the example's claim_timeout", function()
    local srv = server.start()
    local ok, err = pcall(function()
      local t = H.context { server = srv }
      local r = t.redis
      local want = 0
      for _, s in ipairs { "source-stream-1", "source-stream-2" } do
        want = want + #H.xadd_many(r, s, 5)
      end
      local h = H.start(t, { script = EXAMPLE, consumer = false })
      local lines
      H.eventually(function()
        lines = 0
        for _, entry in ipairs(H.list(r, "preprocessed-data")) do
          for _ in entry:gmatch("[^\n]+") do lines = lines + 1 end
        end
        return lines >= want and H.xpending(r, "source-stream-1", "my-group").count == 0
          and H.xpending(r, "source-stream-2", "my-group").count == 0
      end, 60, function() return h:describe() end)
      assert.equal(want, lines)
      local name = cluster.generated_name(h)
      assert.is_string(name, h:describe())
      assert.is_true(H.consumers(r, "source-stream-1", "my-group")[name])
      local ttl = r:call("PTTL", cluster.alive_key("my-group", name))
      assert.is_true(ttl > 100000 and ttl <= 120000, "liveness key TTL " .. tostring(ttl) .. " ms, want claim_timeout 120 s")
      assert.equal(0, h:stop(), h:describe())
    end)
    srv.stop()
    if not ok then error(err, 0) end
  end)
end)
