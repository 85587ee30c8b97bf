-- The tutorial's dynamic consumer-group example: the same pipeline as
-- simple-consumer-group.lua, for consumers whose names nobody controls (a
-- Kubernetes replica set, a group scaled up and down).
--
-- Run it without a consumer name: rsghost examples/dynamic-consumer-group.lua
-- A unique name is generated (host name, pid and a random part) and logged.
-- Every 10 seconds a separate heart process publishes that name on the
-- group's channel ("my-group"). When a consumer holding unacknowledged
-- messages stays silent for 120 seconds, the others claim its messages and
-- push them through their own pipeline, then remove it from the group, so
-- nothing is stranded by a consumer that never comes back.

local rsghost = require "rsghost"
local cjson = require "cjson"

return {
  source = {
    -- A name, a list of names, or { name = start_id }.
    streams = { "source-stream-1", "source-stream-2" },
    -- The group is created on each stream if missing.
    group = "my-group",
    -- Seconds between heartbeats; setting it is what allows a generated name.
    heartbeat_interval = 10,
    -- Seconds of silence after which a consumer's messages are claimed.
    claim_timeout = 120,
  },

  -- Every source emits (stream, message id, data); data is { field = value }.
  -- Returning nil would drop the message (it is still acknowledged).
  preprocess = function(stream, id, data)
    data._source = stream
    data._id = id
    return cjson.encode(data)
  end,

  -- Up to 1000 messages at a time, or whatever arrived within 3 seconds of a
  -- batch's first message.
  batch = { size = 1000, timeout = 3 },

  -- Messages are acknowledged once this returns without error; if it raises,
  -- the batch is retried and nothing is acknowledged.
  sink = function(items)
    rsghost.redis.call("RPUSH", "preprocessed-data", table.concat(items, "\n"))
  end,
}
