-- examples/simple-consumer-group.lua, the tutorial's example, end to end: it
-- uses fixed key names (source-stream-1/2, my-group, preprocessed-data), so
-- it gets a private redis-server.
local cjson = require "cjson"
local server = require "support.server"
local H = require "support.host"

local EXAMPLE = "examples/simple-consumer-group.lua"

describe(EXAMPLE, function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() srv.stop() end)
  after_each(function() H.cleanup() end)

  it("loads (--check) without touching Redis", function()
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", "--check", EXAMPLE, "stream-consumer-1" }
    assert.equal(0, code, out .. err)
  end)

  it("pushes every message of both streams to preprocessed-data as JSON with _source and _id", function()
    local t = H.context { server = srv }
    local r = t.redis
    local want = {}
    for _, s in ipairs { "source-stream-1", "source-stream-2" } do
      local ids = H.xadd_many(r, s, 10, function(i) return { "n", i, "word", "é" .. i } end)
      for _, id in ipairs(ids) do want[#want + 1] = s .. " " .. id end
    end
    local h = H.start(t, { script = EXAMPLE, consumer = "stream-consumer-1" })
    -- Batches of 1000 or 3 s: the 20 messages arrive after the timeout as
    -- newline-joined JSON in one or more list entries.
    local lines
    H.eventually(function()
      lines = {}
      for _, entry in ipairs(H.list(r, "preprocessed-data")) do
        for line in entry:gmatch("[^\n]+") do lines[#lines + 1] = line end
      end
      return #lines >= #want
        and H.xpending(r, "source-stream-1", "my-group").count == 0
        and H.xpending(r, "source-stream-2", "my-group").count == 0
    end, 60, function() return h:describe() end)
    local got = {}
    for _, line in ipairs(lines) do
      local d = cjson.decode(line)
      got[#got + 1] = d._source .. " " .. d._id
      assert.equal("é" .. d.n, d.word)
    end
    H.assert_exactly_once(want, got)
    assert.is_true(H.consumers(r, "source-stream-1", "my-group")["stream-consumer-1"])
    assert.equal(0, h:stop(), h:describe())
  end)
end)
