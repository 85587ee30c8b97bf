-- examples/file-consumer.lua end to end, on a private redis-server (fixed
-- key names): every message lands in the file once, across a rotation.
local cjson = require "cjson"
local server = require "support.server"
local H = require "support.host"

local EXAMPLE = "examples/file-consumer.lua"

local function ids_in(path, out)
  local f = io.open(path, "rb")
  if not f then return out end
  for line in f:lines() do
    local d = cjson.decode(line)
    out[#out + 1] = d._source .. " " .. d._id
  end
  f:close()
  return out
end

describe(EXAMPLE, function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() srv.stop() end)
  after_each(function() H.cleanup() end)

  it("loads (--check) without touching Redis", function()
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", "--check", EXAMPLE, "consumer-1" }
    assert.equal(0, code, out .. err)
  end)

  it("appends every message to EVENTS_FILE once, across a rotation", function()
    local t = H.context { server = srv }
    local r = t.redis
    local path = t.dir .. "/events.jsonl"
    local h = H.start(t, { script = EXAMPLE, consumer = "consumer-1", env = { EVENTS_FILE = path } })
    local want = {}
    for _, id in ipairs(H.xadd_many(r, "source-stream-1", 300)) do want[#want + 1] = "source-stream-1 " .. id end
    H.eventually(function() return #ids_in(path, {}) >= 300 end, 60, function() return h:describe() end)
    assert.is_true(os.rename(path, path .. ".1"))
    for _, id in ipairs(H.xadd_many(r, "source-stream-2", 300)) do want[#want + 1] = "source-stream-2 " .. id end
    local got
    H.eventually(function()
      got = ids_in(path, ids_in(path .. ".1", {}))
      return #got >= #want and H.xpending(r, "source-stream-2", "to-file").count == 0
    end, 60, function() return h:describe() end)
    H.assert_exactly_once(want, got)
    assert.equal(300, #ids_in(path, {}), "the batch after the rotation did not go to a new file")
    assert.equal(0, h:stop(), h:describe())
  end)
end)
