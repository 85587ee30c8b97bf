-- examples/enrich-consumer.lua with the test kit: init loads the lookup table
-- before anything is read, the timer refreshes it as (virtual) time passes,
-- and an init that fails holds reading back until its retry succeeds.
local testing = require "rsghost.testing"

local SCRIPT = "examples/enrich-consumer.lua"

local function enriched(k)
  local out = {}
  for _, e in ipairs(k.redis:call("XRANGE", "enriched-events", "-", "+")) do
    local f = {}
    for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
    out[#out + 1] = f
  end
  return out
end

describe("enrich-consumer.lua", function()
  it("joins events with the users init loaded, and drops unknown users", function()
    local redis = require("rsghost.fakeredis").new()
    redis:call("HSET", "users", "1", "ada", "2", "grace")
    local k = testing.load(SCRIPT, { redis = redis })
    assert.is_true(k:ready())
    k:feed_many { { "events", "1-0", { user = "1", event = "login" } }, { "events", "2-0", { user = "9", event = "login" } } }
    k:advance(1)
    assert.same({ { user = "1", name = "ada", event = "login", source_id = "1-0" } }, enriched(k))
    assert.same({ events = { "2-0", "1-0" } }, k:acked())
  end)

  it("sees users added later once the timer refreshed the table", function()
    local redis = require("rsghost.fakeredis").new()
    local k = testing.load(SCRIPT, { redis = redis })
    redis:call("HSET", "users", "3", "linus")
    k:feed("events", "1-0", { user = "3", event = "push" })
    k:advance(1)
    assert.same({}, enriched(k)) -- not loaded yet: dropped
    k:advance(29) -- the 30 s refresh
    k:feed("events", "2-0", { user = "3", event = "push" })
    k:advance(1)
    assert.same({ { user = "3", name = "linus", event = "push", source_id = "2-0" } }, enriched(k))
  end)

  it("reads nothing until a failing init succeeds", function()
    local k = testing.load(SCRIPT, { redis = (function()
      local r = require("rsghost.fakeredis").new()
      r:call("SET", "users", "not a hash") -- HGETALL fails: WRONGTYPE
      return r
    end)() })
    assert.is_false(k:ready())
    assert.truthy(k:logged("init failed %(attempt 1%), nothing is read until it succeeds", "error"))
    assert.has_error(function() k:feed("events", "1-0", { user = "1" }) end)
    k.redis:call("DEL", "users")
    k.redis:call("HSET", "users", "1", "ada")
    k:advance(0.5) -- the retry's backoff
    assert.is_true(k:ready())
    k:feed("events", "1-0", { user = "1", event = "x" })
    k:advance(1)
    assert.equal(1, #enriched(k))
  end)
end)
