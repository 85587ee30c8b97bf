-- The benchmark's tutorial pipeline (scripts/bench), as in
-- examples/simple-consumer-group.lua: every message becomes a JSON object of
-- its fields plus _source and _id, batches of 1000 (or what 3 seconds
-- gathered) are joined with newlines and RPUSHed to a list as one string.
-- The source is the example's: no count, so the host reads as much as
-- max_in_flight allows; its plain-C twin (bench/limit.c --mode tutorial) reads
-- 1000 at a time, which costs Redis the same per message.
--
-- The harness names the stream, the group and the list through the
-- environment.
local rsghost = require "rsghost"
local cjson = require "cjson"

local list = os.getenv("BENCH_LIST") or "bench:out"

return {
  source = {
    streams = os.getenv("BENCH_STREAM") or "bench",
    group = os.getenv("BENCH_GROUP") or "bench",
  },
  preprocess = function(stream, id, data)
    data._source = stream
    data._id = id
    return cjson.encode(data)
  end,
  batch = { size = 1000, timeout = 3 },
  sink = function(lines)
    rsghost.redis.call("RPUSH", list, table.concat(lines, "\n"))
  end,
}
