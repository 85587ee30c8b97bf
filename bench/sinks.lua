-- The tutorial pipeline of bench/tutorial.lua with a ready sink instead of
-- its own RPUSH, for the sink ratios of scripts/bench: every message becomes
-- a JSON line, batches of 1000, and BENCH_SINK picks where they go:
--   list    rsghost.sink.redis_list: one RPUSH of the batch's items (the
--           baseline of the ratios)
--   atomic  rsghost.sink.redis_list with atomic = true: the RPUSH and the
--           batch's XACKs in one EVAL
--   file    rsghost.sink.file(BENCH_FILE): one write and one fsync a batch,
--           on libuv's threadpool
local rsghost = require "rsghost"
local cjson = require "cjson"

local kind = os.getenv("BENCH_SINK") or "list"
local list = os.getenv("BENCH_LIST") or "bench:out"
local sinks = {
  list = function() return rsghost.sink.redis_list(list) end,
  atomic = function() return rsghost.sink.redis_list(list, { atomic = true }) end,
  file = function() return rsghost.sink.file(os.getenv("BENCH_FILE") or "bench-out.jsonl") end,
}
assert(sinks[kind], "BENCH_SINK must be list, atomic or file")

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
  sink = sinks[kind](),
}
