-- The claim round's pipeline (scripts/bench-growth, the claim rows): a
-- consumer with heartbeats in a group whose other consumers the harness made
-- up, most of them dead; the trivial pipeline takes what it claims, and its
-- sink counts it on BENCH_DONE (one INCRBY a batch). BENCH_HB and BENCH_CT
-- are the heartbeat interval and claim_timeout in seconds.
local rsghost = require "rsghost"

local done = os.getenv("BENCH_DONE") or "bench:done"

return {
  source = {
    streams = os.getenv("BENCH_STREAM") or "bench",
    group = os.getenv("BENCH_GROUP") or "bench",
    heartbeat_interval = tonumber(os.getenv("BENCH_HB") or "0.2"),
    claim_timeout = tonumber(os.getenv("BENCH_CT") or "1"),
  },
  preprocess = function(_, _, data) return data end,
  batch = { size = 1000, timeout = 0 },
  sink = function(items) rsghost.redis.call("INCRBY", done, #items) end,
}
