-- examples/streams-consumer.lua with the rsghost test kit: what a user checks
-- of a plain streams pipeline (XREAD, no group) before running it. No host,
-- no server: the kit runs the script's pipeline on a virtual clock against an
-- in-memory Redis. Plain streams keep no pending list: "acked" here means
-- done, which is what lets the host move the checkpoint past a message; the
-- kit does not write the checkpoint hash itself (the host does).
local cjson = require "cjson"
local testing = require "rsghost.testing"

local SCRIPT = "examples/streams-consumer.lua"

-- The JSON lines the sink pushed onto preprocessed-data, decoded.
local function pushed(k)
  local out = {}
  for _, entry in ipairs(k.redis:call("LRANGE", "preprocessed-data", 0, -1)) do
    for line in entry:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  end
  return out
end

describe("streams-consumer.lua", function()
  local k

  before_each(function()
    -- Plain streams need no consumer name.
    k = testing.load(SCRIPT)
  end)

  it("reads both streams from '$' (new messages only) and keeps a checkpoint", function()
    local src = k.cfg.source
    assert.equal("streams", src.kind) -- no group: XREAD
    assert.same({ { name = "source-stream-1", start = "$" }, { name = "source-stream-2", start = "$" } }, src.streams)
    assert.equal("streams-consumer:checkpoint", src.checkpoint)
  end)

  it("pushes each message as a JSON line tagged with its stream and id", function()
    k:feed("source-stream-1", "1-0", { temperature = "21.5", room = "kitchen" })
    k:feed("source-stream-2", "1-0", { temperature = "19" })
    k:advance(3)

    assert.same({
      { temperature = "21.5", room = "kitchen", _source = "source-stream-1", _id = "1-0" },
      { temperature = "19", _source = "source-stream-2", _id = "1-0" },
    }, pushed(k))
    -- One RPUSH for the whole batch: its lines joined by "\n".
    assert.equal(1, k.redis:call("LLEN", "preprocessed-data"))
    assert.same({ ["source-stream-1"] = { "1-0" }, ["source-stream-2"] = { "1-0" } }, k:acked())
    assert.same({}, k:pending())
  end)

  it("waits 3 seconds after a batch's first message before pushing it", function()
    k:feed("source-stream-1", { n = "1" }) -- id generated as XADD * would: 1700000000000-0
    k:advance(2)
    k:feed("source-stream-2", { n = "2" })
    k:advance(0.9)
    assert.same({}, pushed(k))
    assert.same({ ["source-stream-1"] = { "1700000000000-0" }, ["source-stream-2"] = { "1700000002000-0" } },
      k:pending())

    k:advance(0.1)
    assert.same({
      { n = "1", _source = "source-stream-1", _id = "1700000000000-0" },
      { n = "2", _source = "source-stream-2", _id = "1700000002000-0" },
    }, pushed(k))
    assert.same({}, k:pending())
  end)

  it("pushes 1000 messages at once without waiting", function()
    local msgs = {}
    for i = 1, 500 do
      msgs[#msgs + 1] = { "source-stream-1", { n = i } }
      msgs[#msgs + 1] = { "source-stream-2", { n = i } }
    end
    k:feed_many(msgs) -- one XREAD of 500 messages from each stream

    assert.equal(1000, #pushed(k))
    assert.equal(1, k.redis:call("LLEN", "preprocessed-data"))
    assert.equal(500, #k:acked("source-stream-1"))
    assert.equal(500, #k:acked("source-stream-2"))
    assert.equal(0, k:in_flight())
  end)

  it("acknowledges nothing while Redis refuses the push, and pushes the batch once when it is back", function()
    k:fail_redis("RPUSH", nil, 2) -- the first two attempts fail
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:advance(3)
    assert.same({}, k:acked()) -- so the checkpoint stays before 1-0
    assert.same({ ["source-stream-1"] = { "1-0" } }, k:pending())
    assert.is_true(k:paused()) -- the host reads nothing more while the batch waits
    assert.truthy(k:logged("retrying in 0%.5s", "error"))

    k:advance(0.5) -- second attempt: fails, next one in 1 s
    assert.same({}, k:acked())
    k:advance(1) -- third attempt: Redis takes it
    assert.same({ ["source-stream-1"] = { "1-0" } }, k:acked())
    assert.is_false(k:paused())
    assert.equal(3, #k:sink_calls(1))
    assert.same({ { n = "1", _source = "source-stream-1", _id = "1-0" } }, pushed(k)) -- once, not three times
  end)

  it("pushes what it holds when it is stopped", function()
    k:feed("source-stream-2", "7-0", { n = "1" })
    assert.is_true(k:stop())
    assert.same({ { n = "1", _source = "source-stream-2", _id = "7-0" } }, pushed(k))
    assert.same({}, k:pending())
  end)

  it("gives up on a batch Redis still refuses when it is stopped, leaving the checkpoint before it", function()
    k:fail_redis("RPUSH")
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:advance(3)

    -- The stop retries once at once, then gives up rather than wait for ever.
    assert.is_false(k:stop())
    assert.equal(1, k:given_up())
    assert.same({}, k:acked())
    assert.same({}, pushed(k))
    assert.truthy(k:logged("stopping with 1 message%(s%) not sunk.*a checkpoint stays before them", "error"))
  end)

  it("skips a message that is not UTF-8 (nothing keeps it pending), and carries on with the others", function()
    -- The host checks the bytes before Lua sees them (source.encoding).
    k:feed_many {
      { "source-stream-1", "1-0", { n = "ok" } },
      { "source-stream-1", "2-0", { n = "\255" } },
    }
    k:advance(3)
    assert.same({ { n = "ok", _source = "source-stream-1", _id = "1-0" } }, pushed(k))
    assert.same({}, k:pending())
    assert.truthy(k:logged("message source%-stream%-1 2%-0 skipped %(plain streams keep no pending list%)", "error"))
  end)

  it("skips a message its preprocess raises on, and the checkpoint moves past it", function()
    -- The example's preprocess only tags and encodes the strings the host
    -- passes, so it does not raise; a user's stricter version would.
    local script = dofile(SCRIPT)
    local tag = script.preprocess
    script.preprocess = function(stream, id, data)
      assert(tonumber(data.n), "n is not a number")
      return tag(stream, id, data)
    end
    k = testing.load(script, { path = SCRIPT })

    k:feed_many {
      { "source-stream-1", "1-0", { n = "1" } },
      { "source-stream-1", "2-0", { n = "two" } },
      { "source-stream-1", "3-0", { n = "3" } },
    }
    k:advance(3)

    assert.same({
      { n = "1", _source = "source-stream-1", _id = "1-0" },
      { n = "3", _source = "source-stream-1", _id = "3-0" },
    }, pushed(k))
    assert.same({ ["source-stream-1"] = { "1-0", "3-0" } }, k:acked())
    assert.same({}, k:pending()) -- not pending: plain streams keep no pending list
    assert.equal(0, k:in_flight())
    assert.truthy(k:logged("^preprocess failed on message 2%-0 from source%-stream%-1, "
      .. "skipped %(plain streams keep no pending list%): .*n is not a number", "error"))
    -- Given up: the host may move the checkpoint past 2-0 (XRANGE still has it).
    local abandoned = {}
    for _, call in ipairs(k:host_calls()) do
      if call[1] == "abandon" then abandoned[#abandoned + 1] = call[2] end
    end
    assert.same({ { ["source-stream-1"] = { "2-0" } } }, abandoned)
  end)
end)
