-- The tutorial's consumer group into a file: each message becomes one JSON
-- line appended to EVENTS_FILE (default events.jsonl in the working
-- directory). The write and its fsync run off the event loop, and a batch
-- is acked only once it is on disk. Log rotation needs no restart: after
-- `mv events.jsonl events.jsonl.1` the next batch goes to a new
-- events.jsonl (a SIGHUP makes the host reopen it too).
--
-- Run: EVENTS_FILE=/var/log/events.jsonl build/rsghost examples/file-consumer.lua consumer-1
local rsghost = require "rsghost"
local cjson = require "cjson"

return {
  source = {
    streams = { "source-stream-1", "source-stream-2" },
    group = "to-file",
  },
  preprocess = function(stream, id, data)
    data._source = stream
    data._id = id
    return cjson.encode(data)
  end,
  batch = { size = 1000, timeout = 1 },
  sink = rsghost.sink.file(os.getenv("EVENTS_FILE") or "events.jsonl"),
}
