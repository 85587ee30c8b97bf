-- The tutorial's consumer group, written effectively once: each message
-- becomes one JSON element of the list processed-events, and the batch's
-- RPUSH and its XACK run in one server-side script
-- (rsghost.sink.redis_list with atomic = true). A kill -9 at any moment
-- neither loses nor duplicates an element: a batch whose script ran is
-- acked and not replayed by the restart; one whose script did not run is
-- still pending and is replayed whole.
--
-- Run: build/rsghost examples/exactly-once-consumer.lua consumer-1
local rsghost = require "rsghost"
local cjson = require "cjson"

return {
  source = {
    streams = { "source-stream-1", "source-stream-2" },
    group = "exactly-once",
  },
  preprocess = function(stream, id, data)
    data._source = stream
    data._id = id
    return cjson.encode(data)
  end,
  batch = { size = 100, timeout = 1 },
  -- Atomic: the only sink of a consumer-group source (the load says why
  -- otherwise).
  sink = rsghost.sink.redis_list("processed-events", { atomic = true }),
}
