-- examples/exactly-once-consumer.lua with the rsghost test kit: the kit
-- plays the atomic sink's script (ack each pending message, write its item).
local cjson = require "cjson"
local testing = require "rsghost.testing"

local SCRIPT = "examples/exactly-once-consumer.lua"

local function pushed(k)
  local out = {}
  for _, line in ipairs(k.redis:call("LRANGE", "processed-events", 0, -1)) do out[#out + 1] = cjson.decode(line) end
  return out
end

describe("exactly-once-consumer.lua", function()
  it("pushes each message as its own JSON element and acks it in the same script", function()
    local k = testing.load(SCRIPT, { consumer = "consumer-1" })
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:feed("source-stream-2", "1-0", { n = "2" })
    k:advance(1)
    assert.same({ { n = "1", _source = "source-stream-1", _id = "1-0" },
      { n = "2", _source = "source-stream-2", _id = "1-0" } }, pushed(k))
    assert.same({ ["source-stream-1"] = { "1-0" }, ["source-stream-2"] = { "1-0" } }, k:acked())
    assert.same({}, k:pending())
  end)

  it("writes and acks nothing while Redis refuses the script, everything once it is back", function()
    local k = testing.load(SCRIPT, { consumer = "consumer-1" })
    k:fail_redis("EVAL")
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:advance(1)
    assert.same({}, k:acked())
    assert.same({}, pushed(k))
    k:heal_redis()
    k:drain()
    assert.equal(1, #pushed(k))
    assert.same({}, k:pending())
  end)
end)
