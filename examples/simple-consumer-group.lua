-- The tutorial's simple consumer-group example: read two streams as a member
-- of the group "my-group", tag each message with where it came from, and push
-- batches of JSON lines onto the list "preprocessed-data".
--
-- Run it with a consumer name: rsghost examples/simple-consumer-group.lua stream-consumer-1
-- If this consumer crashes, restarting it with the same name re-reads the
-- messages it had received but not yet acknowledged, so nothing is lost.

local rsghost = require "rsghost"
local cjson = require "cjson"

return {
  source = {
    -- A name, a list of names, or { name = start_id }.
    streams = { "source-stream-1", "source-stream-2" },
    -- The group is created on each stream if missing.
    group = "my-group",
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
