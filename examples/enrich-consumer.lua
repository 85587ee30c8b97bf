-- Enrichment: join each event with a lookup table kept in Redis. The table
-- (the hash "users": user id -> name) is loaded by `init` before the first
-- message is read, and refreshed every 30 seconds by a timer, so preprocess
-- itself never waits on Redis. Events of unknown users are dropped (and
-- acknowledged); the others go to the stream "enriched-events".
--
-- Run it: rsghost examples/enrich-consumer.lua enricher-1

local rsghost = require "rsghost"

local names = {} -- user id -> name, as last loaded

-- HGETALL replies { field, value, field, value, ... }.
local function load_users()
  local flat = rsghost.redis.call("HGETALL", "users")
  local fresh = {}
  for i = 1, #flat, 2 do fresh[flat[i]] = flat[i + 1] end
  names = fresh
  rsghost.log.info("loaded", #flat / 2, "users")
end

-- Keep the table fresh; a failed refresh is logged and the old table kept.
rsghost.every(30, load_users)

return {
  source = { streams = "events", group = "enrichers" },

  -- Runs once the connection to Redis is up, before anything is read. If it
  -- raises (Redis away, say), it is retried with the backoff of `retry` and
  -- nothing is read meanwhile.
  init = load_users,

  preprocess = function(stream, id, data)
    local name = names[data.user]
    if name == nil then return nil end -- unknown user: drop (it is acked)
    return { user = data.user, name = name, event = data.event, source_id = id }
  end,

  batch = { size = 500, timeout = 1 },

  sink = rsghost.sink.redis_stream("enriched-events", { maxlen = 100000 }),
}
