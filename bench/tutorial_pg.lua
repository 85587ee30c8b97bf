-- The benchmark's tutorial pipeline with the PostgreSQL sink (scripts/bench):
-- bench/tutorial.lua's JSON lines, batches of 1000, written by
-- rsghost.sink.postgres as one multi-row INSERT per batch into a table keyed
-- by the message id (ON CONFLICT DO NOTHING: the exactly-once setup), on a
-- throwaway cluster the harness starts. Its rate is reported as a ratio to
-- bench/tutorial.lua's (the Redis list sink).
--
-- The harness names the stream, the group, the cluster and the table
-- through the environment.
local rsghost = require "rsghost"
local cjson = require "cjson"

return {
  source = {
    streams = os.getenv("BENCH_STREAM") or "bench",
    group = os.getenv("BENCH_GROUP") or "bench",
  },
  preprocess = function(stream, id, data)
    data._source = stream
    data._id = id
    return { id = id, line = cjson.encode(data) }
  end,
  batch = { size = 1000, timeout = 3 },
  sink = rsghost.sink.postgres(os.getenv("BENCH_PG") or "dbname=bench",
    { table = os.getenv("BENCH_PG_TABLE") or "bench_out", columns = { "line" }, id = "id" }),
}
