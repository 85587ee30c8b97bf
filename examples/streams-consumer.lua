-- Plain streams, without a consumer group: read two streams with XREAD, tag
-- each message with where it came from, and push batches of JSON lines onto
-- the list "preprocessed-data". Every running copy of this script sees every
-- message; use a group (examples/simple-consumer-group.lua) to share the work.
--
-- Run it with: rsghost examples/streams-consumer.lua
--
-- On its very first start it reads only the messages added from then on
-- ("$"); add `start = "0"` to source to read the streams' whole history.
--
-- The checkpoint makes it safe to stop, crash and restart: after each batch
-- has been pushed, rsghost stores per stream, in the hash
-- "streams-consumer:checkpoint" (field: the stream, value: a message id), the
-- last message such that it and every message before it are done, and a
-- restart resumes after it. Nothing is lost, also what was
-- added while it was down; a batch written just before a crash may be written
-- again. Delete the hash to start over. Without `checkpoint`, a restart knows
-- nothing of the last run and starts at "$" again: what was added while it
-- was down, or read but not yet pushed when it crashed, is skipped.
--
-- If preprocess raises on a message, the error is logged with the message's
-- id and the message is skipped (plain streams keep no pending list): the
-- checkpoint moves past it. It is still in the stream (XRANGE) if you need it.

local rsghost = require "rsghost"
local cjson = require "cjson"

return {
  source = {
    -- A name, a list of names, or { name = start_id }.
    streams = { "source-stream-1", "source-stream-2" },
    checkpoint = "streams-consumer:checkpoint",
  },

  -- Every stream source gives (stream, message id, data); data is
  -- { field = value }. Returning nil drops the message.
  preprocess = function(stream, id, data)
    data._source = stream
    data._id = id
    return cjson.encode(data)
  end,

  -- Up to 1000 messages at a time, or whatever arrived within 3 seconds of a
  -- batch's first message.
  batch = { size = 1000, timeout = 3 },

  sink = function(items)
    rsghost.redis.call("RPUSH", "preprocessed-data", table.concat(items, "\n"))
  end,
}
