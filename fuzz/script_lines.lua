-- The script text the script-checker fuzzer (fuzz_script.lua) points its
-- errors at: rsghost.script looks for the line that assigns a bad field
-- in the script's own text, so the fuzzed tables are checked as if a
-- script like this one had returned them. Not run.
local rsghost = require "rsghost"

return {
  source = {
    streams = { "orders", "payments" },
    group = "billing",
    start = "0",
    count = 100,
    timeout = 5,
    replay_pending = true,
    convert = true,
    encoding = "latin-1",
    max_in_flight = 4096,
    max_in_flight_bytes = 1048576,
    heartbeat_interval = 10,
    claim_timeout = 120,
    heartbeat_channel = "billing-heartbeats",
    dead_letter = { key = "billing-dead", maxlen = 10000 },
    max_deliveries = 5,
  },
  preprocess = function(stream, id, data) return data end,
  init = function() end,
  batch = { size = 1000, timeout = 3 },
  sink = function(items) rsghost.redis.call("RPUSH", "out", #items) end,
  retry = { initial = 0.5, max = 30, max_attempts = 10 },
}
