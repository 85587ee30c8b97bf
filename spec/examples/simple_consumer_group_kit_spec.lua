-- examples/simple-consumer-group.lua with the rsghost test kit: the spec a
-- user writes to check a pipeline before running it. No host, no server:
-- the kit runs the script's pipeline on a virtual clock against an
-- in-memory Redis.
local cjson = require "cjson"
local testing = require "rsghost.testing"

local SCRIPT = "examples/simple-consumer-group.lua"

-- The JSON lines the sink pushed onto preprocessed-data, decoded.
local function pushed(k)
  local out = {}
  for _, entry in ipairs(k.redis:call("LRANGE", "preprocessed-data", 0, -1)) do
    for line in entry:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  end
  return out
end

describe("simple-consumer-group.lua", function()
  local k

  before_each(function()
    k = testing.load(SCRIPT, { consumer = "stream-consumer-1" })
  end)

  it("pushes each message as a JSON line tagged with its stream and id", function()
    k:feed("source-stream-1", "1-0", { temperature = "21.5", room = "kitchen" })
    k:feed("source-stream-2", "1-0", { temperature = "19" })
    k:advance(3)

    assert.same({
      { temperature = "21.5", room = "kitchen", _source = "source-stream-1", _id = "1-0" },
      { temperature = "19", _source = "source-stream-2", _id = "1-0" },
    }, pushed(k))
    -- One RPUSH for the whole batch.
    assert.equal(1, k.redis:call("LLEN", "preprocessed-data"))
    assert.same({ ["source-stream-1"] = { "1-0" }, ["source-stream-2"] = { "1-0" } }, k:acked())
    assert.same({}, k:pending())
  end)

  it("waits 3 seconds after a batch's first message before pushing it", function()
    k:feed("source-stream-1", { n = "1" })
    k:advance(2)
    k:feed("source-stream-1", { n = "2" })
    k:advance(0.9)
    assert.same({}, pushed(k))
    assert.same({ ["source-stream-1"] = { "1700000000000-0", "1700000002000-0" } }, k:pending())

    k:advance(0.1)
    assert.equal(2, #pushed(k))
    assert.same({}, k:pending())
  end)

  it("pushes 1000 messages at once without waiting", function()
    local msgs = {}
    for i = 1, 1000 do msgs[i] = { "source-stream-1", { n = i } } end
    k:feed_many(msgs)

    assert.equal(1000, #pushed(k))
    assert.equal(1000, #k:acked("source-stream-1"))
    assert.equal(0, k:in_flight())
  end)

  it("acknowledges nothing while Redis refuses the push, and everything once it is back", function()
    k:fail_redis("RPUSH")
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:advance(3)
    assert.same({}, k:acked())
    assert.is_true(k:paused()) -- the host stops reading while the batch waits
    assert.truthy(k:logged("retrying"))

    k:heal_redis()
    k:drain()
    assert.same({ ["source-stream-1"] = { "1-0" } }, k:acked())
    assert.is_false(k:paused())
    assert.equal(1, #pushed(k))
  end)

  it("pushes what it holds when it is stopped", function()
    k:feed("source-stream-2", "7-0", { n = "1" })
    assert.is_true(k:stop())
    assert.same({ { n = "1", _source = "source-stream-2", _id = "7-0" } }, pushed(k))
    assert.same({}, k:pending())
  end)

  it("leaves a message that is not UTF-8 pending, and carries on with the others", function()
    -- The host checks the bytes before Lua sees them (source.encoding).
    k:feed_many {
      { "source-stream-1", "1-0", { n = "ok" } },
      { "source-stream-1", "2-0", { n = "\255" } },
    }
    k:advance(3)
    assert.same({ ["source-stream-1"] = { "2-0" } }, k:pending())
    assert.equal(1, #pushed(k))
  end)
end)
