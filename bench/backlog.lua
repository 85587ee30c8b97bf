-- The benchmark's backlog run (scripts/bench): the trivial pipeline with
-- `count = nil`, started on a stream that already holds a large backlog. The
-- host must read no more than max_in_flight allows, so its peak memory is
-- bounded by max_in_flight and not by the size of the backlog.
--
-- The harness names the stream and the group through the environment.
return {
  source = {
    streams = os.getenv("BENCH_STREAM") or "bench",
    group = os.getenv("BENCH_GROUP") or "bench",
    count = nil,
  },
  preprocess = function(_, _, data)
    return data
  end,
  batch = { size = 1000, timeout = 0 },
  sink = function() end,
}
