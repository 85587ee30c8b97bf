-- The benchmark's trivial pipeline (scripts/bench): preprocess hands every
-- message on untouched and the sink does nothing, so what is measured is the
-- host itself: reading, crossing into Lua, batching and acking. Reads of 1000,
-- like the limit (bench/limit.c) it is compared with.
--
-- The harness names the stream and the group through the environment.
return {
  source = {
    streams = os.getenv("BENCH_STREAM") or "bench",
    group = os.getenv("BENCH_GROUP") or "bench",
    count = 1000,
  },
  preprocess = function(_, _, data)
    return data
  end,
  batch = { size = 1000, timeout = 0 },
  sink = function() end,
}
