-- The Redis Cluster benchmark (scripts/bench-cluster): the trivial pipeline
-- (bench/trivial.lua's work: preprocess hands each message on, the sink does
-- nothing) over S streams, once against one redis-server and once against a
-- three-master cluster on loopback whose streams are spread over every master
-- (one slot group, and so one reader connection, per stream). Each run loads
-- N messages first, starts rsghost, and times it from its start until every
-- message of every stream is delivered and acked (XINFO GROUPS: lag 0,
-- pending 0), then stops it. Reports messages per second of each, and their
-- ratio. Run from the repository root with the spec support on the path:
--   luajit bench/cluster.lua [-n N] [-s STREAMS] [-r REPEAT] [--replicas K] [--rsghost PATH]
-- (--replicas: per master, default 1; 0 shows what replication costs).
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
local proc = require "support.proc"
local server = require "support.server"
local redis_cluster = require "support.redis_cluster"

local n, nstreams, repeat_, bin, replicas = 300000, 6, 1, "build/rsghost", 1
local i = 1
while arg[i] do
  local a, v = arg[i], arg[i + 1]
  if a == "-n" then n = tonumber(v) elseif a == "-s" then nstreams = tonumber(v)
  elseif a == "-r" then repeat_ = tonumber(v) elseif a == "--rsghost" then bin = v
  elseif a == "--replicas" then replicas = tonumber(v)
  else io.stderr:write("usage: luajit bench/cluster.lua [-n N] [-s STREAMS] [-r R] [--replicas K] [--rsghost PATH]\n"); os.exit(2) end
  i = i + 2
end
local per = math.floor(n / nstreams)
n = per * nstreams

local SCRIPT = [[
return {
  source = { streams = %s, group = "bench", count = 1000 },
  preprocess = function(_, _, data) return data end,
  batch = { size = 1000, timeout = 0 },
  sink = function() end,
}
]]

-- client_of(stream): a one-server client for the node holding stream.
local function load(client_of, streams)
  local payload = string.rep("x", 26)
  for _, s in ipairs(streams) do
    local c = client_of(s)
    for first = 1, per, 1000 do
      local cmds = {}
      for k = first, math.min(per, first + 999) do
        cmds[#cmds + 1] = { "XADD", s, "*", "user", k, "event", "click", "payload", payload }
      end
      c:pipeline(cmds)
    end
  end
end

local function drained(client_of, streams)
  for _, s in ipairs(streams) do
    local ok, groups = pcall(function() return client_of(s):call("XINFO", "GROUPS", s) end)
    if not ok or #groups == 0 then return false end
    local g = {}
    for k = 1, #groups[1], 2 do g[groups[1][k]] = groups[1][k + 1] end
    if g.lag ~= 0 or g.pending ~= 0 then return false end
  end
  return true
end

-- One timed run: seconds from rsghost's start to every message acked.
local function run(url, client_of, streams, dir)
  for _, s in ipairs(streams) do pcall(function() client_of(s):call("DEL", s) end) end
  load(client_of, streams)
  local q = {}
  for k, s in ipairs(streams) do q[k] = string.format("%q", s) end
  local path = dir .. "/bench-cluster.lua"
  local f = assert(io.open(path, "w"))
  f:write(string.format(SCRIPT, "{ " .. table.concat(q, ", ") .. " }"))
  f:close()
  local t0 = proc.now()
  local h = proc.spawn { argv = { bin, "--redis", url, "--log-level", os.getenv("BENCH_LOG") or "warn", path, "bench-1" },
    stderr = dir .. "/rsghost.log" }
  while not drained(client_of, streams) do
    if not h:alive() then error("rsghost exited: " .. proc.slurp(dir .. "/rsghost.log")) end
    if proc.now() - t0 > 600 then h:kill(); error("timed out") end
    proc.sleep(0.005)
  end
  local secs = proc.now() - t0
  local st = proc.slurp("/proc/" .. h:pid() .. "/stat")
  local fields = {}
  for x in st:match("%)%s+(.*)"):gmatch("%S+") do fields[#fields + 1] = x end
  local cpu = (tonumber(fields[12]) + tonumber(fields[13])) / 100 -- utime, stime in ticks
  io.stderr:write(string.format("  %.2f s, rsghost CPU %.2f s\n", secs, cpu))
  h:signal("TERM")
  h:wait(60)
  return secs
end

local function median(xs)
  table.sort(xs)
  return xs[math.floor((#xs + 1) / 2)]
end

local dir = server.tmpdir("bench-cluster")
local one = server.start()
local oc = one.client()
local single = {}
for k = 1, nstreams do single[k] = "bench:s" .. k end
local c = redis_cluster.start { replicas = replicas }
local spread = redis_cluster.spread(c, "bench", nstreams)
local node_client = {}
for _, s in ipairs(spread) do node_client[s] = c.node_of(s).client() end
local function cluster_client(s) return node_client[s] end

local t1, t2 = {}, {}
for r = 1, repeat_ do
  io.stderr:write(string.format("round %d/%d: one server\n", r, repeat_))
  t1[r] = run(one.url, function() return oc end, single, dir)
  io.stderr:write(string.format("round %d/%d: cluster of 3 masters\n", r, repeat_))
  t2[r] = run(c.url, cluster_client, spread, dir)
end
local s1, s2 = median(t1), median(t2)
print(string.format("trivial pipeline, %d messages over %d streams (median of %d):", n, nstreams, repeat_))
print(string.format("  one redis-server                     %8.2f s  %10.0f msg/s", s1, n / s1))
print(string.format("  cluster, 3 masters (%d replica(s) each) %8.2f s  %10.0f msg/s  (%.2f x one server)", replicas, s2, n / s2, s1 / s2))
c.stop()
one.stop()
if not os.getenv("BENCH_LOG") then server.rmtree(dir) end
