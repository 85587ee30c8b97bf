-- The benchmark's latency pipeline (scripts/bench): the loader adds messages
-- at a steady rate, each stamped t=<epoch microseconds> when sent; the sink
-- notes, for every item, the time from that XADD to the sink, and RPUSHes
-- those latencies (microseconds) to BENCH_LIST for the harness to rank.
-- BENCH_BATCH picks the batching: "0" (batch.timeout = 0: a batch per read)
-- or "tutorial" (the tutorial's batches of 1000 or 3 seconds).
local rsghost = require "rsghost"
local ffi = require "ffi"

ffi.cdef [[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct bench_timespec *ts);
]]
local ts = ffi.new("struct bench_timespec")
local function now_us()
  ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME, as the loader's stamps
  return tonumber(ts.tv_sec) * 1e6 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local list = os.getenv("BENCH_LIST") or "bench:out"
local tutorial = os.getenv("BENCH_BATCH") == "tutorial"

return {
  source = {
    streams = os.getenv("BENCH_STREAM") or "bench",
    group = os.getenv("BENCH_GROUP") or "bench",
    count = 1000,
  },
  preprocess = function(_, _, data)
    return tonumber(data.t)
  end,
  batch = tutorial and { size = 1000, timeout = 3 } or { size = 1000, timeout = 0 },
  sink = function(stamps)
    local now, lat = now_us(), {}
    for i = 1, #stamps do lat[i] = string.format("%d", now - stamps[i]) end
    rsghost.redis.call("RPUSH", list, unpack(lat))
  end,
}
