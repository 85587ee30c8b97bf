-- examples/lists-consumer.lua with the rsghost test kit: what a user checks
-- of a plain lists pipeline before running it. No host, no server: the kit
-- runs the script's pipeline on a virtual clock against an in-memory Redis.
-- Each k:feed is one pop of the host (from one list at a time); the item is
-- the raw string, and it is also what the kit reports as its "id" in
-- k:acked() and k:pending().
local cjson = require "cjson"
local testing = require "rsghost.testing"

local SCRIPT = "examples/lists-consumer.lua"

-- The JSON lines the sink pushed onto preprocessed-data, decoded.
local function pushed(k)
  local out = {}
  for _, entry in ipairs(k.redis:call("LRANGE", "preprocessed-data", 0, -1)) do
    for line in entry:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  end
  return out
end

describe("lists-consumer.lua", function()
  local k

  before_each(function()
    -- Plain lists need no consumer name: there is no group to join.
    k = testing.load(SCRIPT)
  end)

  it("pushes each JSON item as a JSON line tagged with the list it came from", function()
    k:feed("data-source-1", '{"temperature":21.5,"room":"kitchen"}')
    k:feed("data-source-2", '{"temperature":19}')
    k:advance(3)

    assert.same({
      { temperature = 21.5, room = "kitchen", _source = "data-source-1" },
      { temperature = 19, _source = "data-source-2" },
    }, pushed(k))
    -- One RPUSH for the whole batch: its lines joined by "\n".
    assert.equal(1, k.redis:call("LLEN", "preprocessed-data"))
    assert.same({
      ["data-source-1"] = { '{"temperature":21.5,"room":"kitchen"}' },
      ["data-source-2"] = { '{"temperature":19}' },
    }, k:acked())
    assert.same({}, k:pending())
  end)

  it("waits 3 seconds after a batch's first item before pushing it", function()
    k:feed("data-source-1", '{"n":1}')
    k:advance(2)
    k:feed("data-source-2", '{"n":2}')
    k:advance(0.9)
    assert.same({}, pushed(k))
    assert.same({ ["data-source-1"] = { '{"n":1}' }, ["data-source-2"] = { '{"n":2}' } }, k:pending())

    k:advance(0.1)
    assert.same({ { n = 1, _source = "data-source-1" }, { n = 2, _source = "data-source-2" } }, pushed(k))
    assert.same({}, k:pending())
  end)

  it("pushes 1000 items at once without waiting; the rest wait for the next batch", function()
    local items = {}
    for i = 1, 1000 do items[i] = { "data-source-1", cjson.encode { n = i } } end
    k:feed_many(items) -- one pop of 1000 items, the most the host pops at once here
    k:feed("data-source-1", cjson.encode { n = 1001 }) -- the next pop

    assert.equal(1000, #pushed(k))
    assert.equal(1, k.redis:call("LLEN", "preprocessed-data"))
    assert.equal(1000, #k:acked("data-source-1"))
    assert.equal(1, k:in_flight()) -- item 1001 opened the next batch

    k:advance(3)
    assert.equal(1001, #pushed(k))
    assert.same({ n = 1001, _source = "data-source-1" }, pushed(k)[1001])
    assert.equal(2, k.redis:call("LLEN", "preprocessed-data"))
    assert.equal(0, k:in_flight())
  end)

  it("drops an item that is not JSON, logging it with the script's line, and carries on", function()
    k:feed_many {
      { "data-source-1", '{"n":1}' },
      { "data-source-1", "not json" },
      { "data-source-1", '{"n":3}' },
    }
    k:advance(3)

    assert.same({ { n = 1, _source = "data-source-1" }, { n = 3, _source = "data-source-1" } }, pushed(k))
    assert.same({ ["data-source-1"] = { '{"n":1}', '{"n":3}' } }, k:acked())
    -- Popped, so gone from Redis: the pipeline does not hold it either.
    assert.equal(0, k:in_flight())
    assert.truthy(k:logged("^preprocess failed on item not json from data%-source%-1, dropped: "
      .. "examples/lists%-consumer%.lua:%d+:", "error"))
  end)

  it("acknowledges nothing while Redis refuses the push, and pushes the batch once when it is back", function()
    k:fail_redis("RPUSH", nil, 2) -- the first two attempts fail
    k:feed("data-source-1", '{"n":1}')
    k:advance(3)
    assert.same({}, k:acked())
    assert.same({ ["data-source-1"] = { '{"n":1}' } }, k:pending())
    assert.is_true(k:paused()) -- the host pops nothing more while the batch waits
    assert.truthy(k:logged("retrying in 0%.5s", "error"))

    k:advance(0.5) -- second attempt: fails, next one in 1 s
    assert.same({}, k:acked())
    k:advance(1) -- third attempt: Redis takes it
    assert.same({ ["data-source-1"] = { '{"n":1}' } }, k:acked())
    assert.is_false(k:paused())
    assert.equal(3, #k:sink_calls(1))
    assert.same({ { n = 1, _source = "data-source-1" } }, pushed(k)) -- once, not three times
  end)

  it("pushes what it holds when it is stopped", function()
    k:feed("data-source-2", '{"n":1}')
    assert.is_true(k:stop())
    assert.same({ { n = 1, _source = "data-source-2" } }, pushed(k))
    assert.same({}, k:pending())
  end)

  it("loses the popped items of a batch Redis still refuses when it is stopped", function()
    k:fail_redis("RPUSH")
    k:feed("data-source-1", '{"n":1}')
    k:advance(3)

    -- The stop retries once at once, then gives up rather than wait for ever.
    assert.is_false(k:stop())
    assert.equal(1, k:given_up())
    assert.same({}, k:acked())
    assert.same({}, pushed(k))
    assert.truthy(k:logged("stopping with 1 message%(s%) not sunk.*popped items of plain lists are lost", "error"))
  end)

  it("with reliable = true (as its comments describe) keeps an item that is not JSON in the processing list", function()
    local src = assert(io.open(SCRIPT)):read("*a")
    local reliable, n = src:gsub("%-%- reliable = true,", "reliable = true,")
    assert.equal(1, n, "the example no longer shows `-- reliable = true,`")
    local kr = testing.load(assert(loadstring(reliable, "@" .. SCRIPT))(),
      { path = SCRIPT, consumer = "lists-consumer-1" })

    -- Reliable lists move items from every list in one read.
    kr:feed_many { { "data-source-1", '{"n":1}' }, { "data-source-2", "not json" } }
    kr:advance(3)

    assert.same({ { n = 1, _source = "data-source-1" } }, pushed(kr))
    assert.same({ ["data-source-1"] = { '{"n":1}' } }, kr:acked())
    assert.same({ ["data-source-2"] = { "not json" } }, kr:pending()) -- not acked: not removed
    assert.truthy(kr:logged("preprocess failed on item not json from data%-source%-2, "
      .. "left in the processing list %(not acked%)", "error"))
  end)
end)
