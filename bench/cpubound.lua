-- The benchmark's CPU-bound pipeline (scripts/bench): preprocess does about
-- 20 us of Lua work per message (a checksum walked over the payload, again
-- and again), so one consumer is bound by its one core and --workers 2 shows
-- what a second core buys. The number of rounds is calibrated at load, on
-- this machine, so the work per message stays near 20 us whatever the CPU.
local TARGET = 20e-6

-- One message's work: `rounds` passes of a checksum over s.
local function work(s, rounds)
  local h = 0
  for _ = 1, rounds do
    for i = 1, #s do h = (h * 31 + s:byte(i)) % 2147483647 end
  end
  return h
end

local rounds
do
  local sample, n = string.rep("x", 26), 2000
  local t0 = os.clock()
  work(sample, n)
  local per_round = (os.clock() - t0) / n
  rounds = math.max(1, math.floor(TARGET / per_round + 0.5))
end

return {
  source = {
    streams = os.getenv("BENCH_STREAM") or "bench",
    group = os.getenv("BENCH_GROUP") or "bench",
    count = 1000,
  },
  preprocess = function(_, _, data)
    data.sum = work(data.payload or "", rounds)
    return data
  end,
  batch = { size = 1000, timeout = 0 },
  sink = function() end,
}
