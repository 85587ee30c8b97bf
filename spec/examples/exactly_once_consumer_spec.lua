-- examples/exactly-once-consumer.lua end to end, on a private redis-server
-- (fixed key names): kill -9 mid-run and a restart write every message once.
local cjson = require "cjson"
local server = require "support.server"
local H = require "support.host"

local EXAMPLE = "examples/exactly-once-consumer.lua"

describe(EXAMPLE, function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() srv.stop() end)
  after_each(function() H.cleanup() end)

  it("loads (--check) without touching Redis", function()
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", "--check", EXAMPLE, "consumer-1" }
    assert.equal(0, code, out .. err)
  end)

  it("writes every message exactly once across a kill -9 and a restart", function()
    local t = H.context { server = srv }
    local r = t.redis
    local want = {}
    local h = H.start(t, { script = EXAMPLE, consumer = "consumer-1", log_level = "info" })
    for round = 1, 2 do
      for _, s in ipairs { "source-stream-1", "source-stream-2" } do
        for _, id in ipairs(H.xadd_many(r, s, 2000)) do want[#want + 1] = s .. " " .. id end
      end
      if round == 1 then
        H.eventually(function() return r:call("LLEN", "processed-events") > 0 end, 60,
          function() return h:describe() end)
        assert.equal("signal 9", h:kill())
        h = H.start(t, { script = EXAMPLE, consumer = "consumer-1", log_level = "info" })
      end
    end
    local got
    H.eventually(function()
      got = H.list(r, "processed-events")
      return #got >= #want
        and H.xpending(r, "source-stream-1", "exactly-once").count == 0
        and H.xpending(r, "source-stream-2", "exactly-once").count == 0
    end, 60, function() return h:describe() end)
    local ids = {}
    for i, line in ipairs(got) do
      local d = cjson.decode(line)
      ids[i] = d._source .. " " .. d._id
    end
    H.assert_exactly_once(want, ids)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
