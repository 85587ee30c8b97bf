-- examples/dynamic-consumer-group.lua with the rsghost test kit. Heartbeats
-- and claiming are the host's work (spec/integration covers them); what a
-- user checks here is the script: its settings, and that its pipeline treats
-- every message, claimed ones included, as the simple example does.
local cjson = require "cjson"
local testing = require "rsghost.testing"

local SCRIPT = "examples/dynamic-consumer-group.lua"

local function pushed(k)
  local out = {}
  for _, entry in ipairs(k.redis:call("LRANGE", "preprocessed-data", 0, -1)) do
    for line in entry:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  end
  return out
end

describe("dynamic-consumer-group.lua", function()
  it("turns heartbeats on, so that the host may generate the consumer's name", function()
    local k = testing.load(SCRIPT) -- no consumer name, as it is run
    local src = k.cfg.source
    assert.equal("my-group", src.group)
    assert.equal(10, src.heartbeat_interval)
    assert.equal(120, src.claim_timeout)
    assert.equal("my-group", src.heartbeat_channel) -- streamz_redis listens there too
  end)

  it("pushes messages, claimed ones included, as JSON lines within 3 seconds", function()
    local k = testing.load(SCRIPT, { consumer = "pod-7f9c" })
    -- A message of its own, then one claimed from a dead consumer: the host
    -- feeds claimed messages through this same pipeline.
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:advance(1)
    k:feed("source-stream-2", "1-5", { n = "2" })
    k:advance(2)

    assert.same({
      { n = "1", _source = "source-stream-1", _id = "1-0" },
      { n = "2", _source = "source-stream-2", _id = "1-5" },
    }, pushed(k))
    assert.same({}, k:pending())
  end)

  it("keeps a batch pending until Redis takes it, retrying with backoff", function()
    local k = testing.load(SCRIPT, { consumer = "pod-7f9c" })
    k:fail_redis("RPUSH", nil, 3) -- three failed attempts, then Redis is back
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:advance(3)
    assert.same({ ["source-stream-1"] = { "1-0" } }, k:pending())

    k:advance(0.5 + 1) -- the second and third attempts fail too
    assert.same({ ["source-stream-1"] = { "1-0" } }, k:pending())
    k:advance(2)
    assert.same({}, k:pending())
    assert.equal(1, #pushed(k))
    assert.equal(4, #k:sink_calls(1))
  end)
end)
