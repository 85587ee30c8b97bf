-- The growth curves' pipeline (scripts/bench-growth): the trivial pipeline
-- over BENCH_NSTREAMS streams (BENCH_STREAM:1 ... :K, or BENCH_STREAM alone
-- for 1), whose sink counts what it got on BENCH_DONE (one INCRBY a batch),
-- so the harness can tell when every message has left the pipeline.
local rsghost = require "rsghost"

local base = os.getenv("BENCH_STREAM") or "bench"
local k = tonumber(os.getenv("BENCH_NSTREAMS") or "1")
local done = os.getenv("BENCH_DONE") or "bench:done"
local streams = {}
if k == 1 then
  streams[1] = base
else
  for i = 1, k do streams[i] = base .. ":" .. i end
end

return {
  source = { streams = streams, group = os.getenv("BENCH_GROUP") or "bench" },
  preprocess = function(_, _, data) return data end,
  batch = { size = 1000, timeout = 0 },
  sink = function(items) rsghost.redis.call("INCRBY", done, #items) end,
}
