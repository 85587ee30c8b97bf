-- scripts/lib/chaos.lua - the chaos run behind scripts/chaos (see there).
--
-- One redis-server (appendonly yes, appendfsync always), a producer (this
-- driver, XADDing messages n = 1..N with the explicit ids n-1, so a retried
-- XADD whose first try did land is refused instead of doubled), three
-- consumers with heartbeats whose sink XADDs each message's n to an output
-- stream, and faults drawn from a seeded random generator at random
-- intervals while the messages flow. At the end every fault is healed, the
-- consumers drain everything and are stopped, and the output is counted:
-- every n at least once (0 lost), the extra copies (duplicates, which
-- at-least-once delivery allows), the group's pending entries (must be 0) and
-- the rsghost processes left (must be 0). One summary line; exit 1 on a loss,
-- anything pending, a process left, or a consumer that died of something no
-- fault explains (a crash, a usage error).
local proc = require "support.proc"
local server = require "support.server"
local cluster = require "support.cluster"
local hiredis = require "rsghost.hiredis"

local USAGE = [[
usage: scripts/chaos [options]
  -n N              messages (default 200000)
  --seed S          the random seed (default: from the clock); printed, so
                    a failing run can be replayed with the same faults
  --duration S      seconds over which the messages are produced (default
                    N / 2000); faults happen during this time
  --fault-every S   mean seconds between faults (default 1.5)
  --consumers C     consumers (default 3)
  --rsghost PATH    the binary (default build/rsghost)
  --keep            keep the work directory (logs of every process)
  -v                print each fault as it happens]]

local function die(msg, code)
  io.stderr:write("chaos: ", msg, "\n")
  os.exit(code or 2)
end

local opts = { n = 200000, consumers = 3, fault_every = 1.5, bin = "build/rsghost" }
do
  local i = 1
  while i <= #arg do
    local a, v = arg[i], arg[i + 1]
    local function num()
      i = i + 1
      return tonumber(v) or die("option " .. a .. " needs a number\n" .. USAGE)
    end
    if a == "-n" then opts.n = math.floor(num())
    elseif a == "--seed" then opts.seed = math.floor(num())
    elseif a == "--duration" then opts.duration = num()
    elseif a == "--fault-every" then opts.fault_every = num()
    elseif a == "--consumers" then opts.consumers = math.floor(num())
    elseif a == "--rsghost" then opts.bin = v or die(USAGE); i = i + 1
    elseif a == "--keep" then opts.keep = true
    elseif a == "-v" then opts.verbose = true
    elseif a == "-h" or a == "--help" then print(USAGE) os.exit(0)
    else die("unknown option " .. a .. "\n" .. USAGE) end
    i = i + 1
  end
end
opts.seed = opts.seed or (os.time() * 1000 + math.floor(proc.now() * 1000) % 1000) % 2147483647
opts.duration = opts.duration or math.max(5, opts.n / 2000)
math.randomseed(opts.seed)
local random = math.random

local HB, CT = 0.2, 1.5 -- heartbeat_interval, claim_timeout
local STREAM, GROUP, OUT = "chaos:s", "chaos:g", "chaos:out"

local t0 = proc.now()
local function say(fmt, ...)
  if opts.verbose then io.stderr:write(string.format("[%7.2f] " .. fmt .. "\n", proc.now() - t0, ...)) end
end

io.stderr:write(string.format("chaos seed=%d: %d messages over %gs, a fault every ~%gs, %d consumers\n",
  opts.seed, opts.n, opts.duration, opts.fault_every, opts.consumers))

local srv = server.start { persist = true, args = { "--enable-debug-command", "local" } }
local dir = srv.dir
local script_path = dir .. "/chaos-consumer.lua"
do
  local f = assert(io.open(script_path, "w"))
  f:write(string.format([[
local rsghost = require "rsghost"
return {
  source = { streams = %q, group = %q, heartbeat_interval = %g, claim_timeout = %g },
  preprocess = function(stream, id, data) return data.n end,
  batch = { size = 500, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.5 },
  sink = rsghost.sink.redis_stream(%q),
}
]], STREAM, GROUP, HB, CT, OUT))
  f:close()
end

-- The driver's own connection; a command that fails because Redis is away
-- (restarting) is retried until it comes back.
local client
local function redis(...)
  for _ = 1, 600 do
    if not client then
      local ok, c = pcall(hiredis.connect, srv.url, { connect_timeout = 1, timeout = 30 })
      if ok then client = c end
    end
    if client then
      local ok, r, err = pcall(client.pcall, client, ...)
      if ok and (r ~= nil or not (err and (err:find("LOADING") or err:find("BUSY")))) then return r, err end
      if not ok then pcall(client.close, client); client = nil end
    end
    proc.sleep(0.1)
  end
  die("redis did not come back within a minute", 1)
end

-- ---- Consumers ----

local slots = {}     -- one per consumer: { proc =, name =, stopped = true while SIGSTOPped, n = restarts }
local all_procs = {} -- every rsghost main process started (support.proc objects)
local unexpected = {}
local started = 0

local function start_slot(slot, name)
  started = started + 1
  slot.name = name
  local base = string.format("%s/consumer-%d-%d", dir, slot.i, started)
  local argv = { opts.bin, "--redis", srv.url, script_path }
  if name then argv[#argv + 1] = name end
  slot.proc = proc.spawn { argv = argv, stderr = base .. ".log", stdout = base .. ".out",
    env = { RSGHOST_REDIS_URL = false } }
  slot.log = base .. ".log"
  slot.heart = nil
  slot.stopped = false
  all_procs[#all_procs + 1] = slot.proc
  say("start consumer %d as %s (pid %d)", slot.i, name or "(generated)", slot.proc:pid())
end

local function heart_of(slot)
  local kids = cluster.children(slot.proc:pid())
  return kids[1]
end

-- A consumer that ended: fine when a fault explains it (kill -9; exit 1
-- after its heart was killed, Redis was away or it was stopped past
-- claim_timeout); anything else is a failure worth its log.
local function reap(slot)
  if slot.proc:alive() then return false end
  local result = tostring(slot.proc.result)
  if result ~= "signal 9" and result ~= "1" then
    unexpected[#unexpected + 1] = string.format("consumer %s (pid %d) ended with %s:\n%s",
      tostring(slot.name), slot.proc:pid(), result, proc.slurp(slot.log):sub(-2000))
  end
  local text = proc.slurp(slot.log)
  if text:find("in use by a live process", 1, true) then
    unexpected[#unexpected + 1] = "consumer " .. tostring(slot.name) .. " was refused its own name:\n" .. text:sub(-2000)
  end
  say("consumer %d (%s) ended: %s", slot.i, slot.name or "generated", result)
  return true
end

local function restart(slot)
  -- Same name, or a new generated one (its old name's messages are then
  -- claimed by the others).
  if random() < 0.7 then start_slot(slot, slot.fixed) else start_slot(slot, false) end
end

for i = 1, opts.consumers do
  slots[i] = { i = i, fixed = "c" .. i }
  start_slot(slots[i], slots[i].fixed)
end

-- ---- Output counting ----

local seen = {}        -- seen[n] = copies in the output
local distinct, copies = 0, 0
local out_cursor = "-"
local function read_output()
  while true do
    local r = redis("XRANGE", OUT, out_cursor, "+", "COUNT", 10000)
    if type(r) ~= "table" or #r == 0 then return end
    for _, e in ipairs(r) do
      local f = e[2]
      local n = tonumber(f[2])
      if n then
        if not seen[n] then distinct = distinct + 1 end
        seen[n] = (seen[n] or 0) + 1
        copies = copies + 1
      end
    end
    out_cursor = "(" .. r[#r][1]
    if #r < 10000 then return end
  end
end

local function pending()
  local r = redis("XPENDING", STREAM, GROUP)
  return type(r) == "table" and tonumber(r[1]) or 0
end

-- ---- Faults ----

local counts = {}
local order = { "kill -9", "heart kill", "SIGSTOP", "CLIENT KILL", "DEBUG SLEEP", "redis restart" }
local function count(kind) counts[kind] = (counts[kind] or 0) + 1 end

local function live_slots()
  local l = {}
  for _, s in ipairs(slots) do
    if s.proc:alive() and not s.stopped then l[#l + 1] = s end
  end
  return l
end

local function sigcont(slot)
  slot.proc:signal("CONT")
  if slot.heart then cluster.signal(slot.heart, "CONT") end
  slot.stopped = false
  say("SIGCONT consumer %d", slot.i)
end

local faults = {
  ["kill -9"] = function()
    local l = live_slots()
    if #l == 0 then return false end
    local s = l[random(#l)]
    say("kill -9 consumer %d (%s)", s.i, tostring(s.name))
    s.proc:kill()
    return true
  end,
  ["heart kill"] = function()
    local l = live_slots()
    if #l == 0 then return false end
    local s = l[random(#l)]
    local heart = heart_of(s)
    if not heart then return false end
    say("kill -9 the heart %d of consumer %d", heart, s.i)
    cluster.signal(heart, "KILL")
    return true
  end,
  -- The whole consumer, main process and heart, frozen past claim_timeout:
  -- the others claim its messages; when it wakes, its heart sees its own
  -- heartbeats were missing and stops it, and what it still held may be
  -- sunk twice, never lost.
  ["SIGSTOP"] = function(now)
    local l = live_slots()
    if #l < 2 then return false end -- someone must be left to claim
    local s = l[random(#l)]
    s.heart = heart_of(s)
    s.proc:signal("STOP")
    if s.heart then cluster.signal(s.heart, "STOP") end
    s.stopped = true
    s.cont_at = now + CT + 0.5 + random() * 1.5
    say("SIGSTOP consumer %d until +%.1fs", s.i, s.cont_at - now)
    return true
  end,
  ["CLIENT KILL"] = function()
    local list = redis("CLIENT", "LIST")
    local me = redis("CLIENT", "ID")
    local ids = {}
    for line in tostring(list):gmatch("[^\n]+") do
      local id = tonumber(line:match("^id=(%d+)"))
      if id and id ~= me then ids[#ids + 1] = id end
    end
    if #ids == 0 then return false end
    local k = random(1, math.min(3, #ids))
    for _ = 1, k do
      local id = table.remove(ids, random(#ids))
      redis("CLIENT", "KILL", "ID", tostring(id))
    end
    say("CLIENT KILL of %d connection(s)", k)
    return true
  end,
  ["DEBUG SLEEP"] = function()
    local secs = string.format("%.2f", 0.1 + random() * 0.7)
    say("DEBUG SLEEP %s", secs)
    redis("DEBUG", "SLEEP", secs)
    return true
  end,
  ["redis restart"] = function()
    say("redis kill -9 and restart")
    if client then pcall(client.close, client); client = nil end
    srv.kill()
    proc.sleep(random() * 0.5)
    srv.restart()
    return true
  end,
}
local weights = { ["kill -9"] = 4, ["heart kill"] = 2, ["SIGSTOP"] = 2, ["CLIENT KILL"] = 3,
  ["DEBUG SLEEP"] = 2, ["redis restart"] = 1 }
local total_weight = 0
for _, k in ipairs(order) do total_weight = total_weight + weights[k] end
local function pick()
  local x = random() * total_weight
  for _, k in ipairs(order) do
    x = x - weights[k]
    if x <= 0 then return k end
  end
  return order[#order]
end

local function next_gap() return opts.fault_every * (0.3 + 1.4 * random()) end

-- ---- The run ----

local produced = 0 -- messages 1..produced are in the stream
local CHUNK = 200
local function produce(upto)
  while produced < upto do
    local cmds = {}
    local last = math.min(upto, produced + CHUNK)
    for n = produced + 1, last do
      cmds[#cmds + 1] = { "XADD", STREAM, n .. "-1", "n", tostring(n) }
    end
    local ok = client and pcall(client.pipeline, client, cmds)
    if ok then
      produced = last
    else
      -- Redis went away mid-pipeline: some may have landed. Ask where the
      -- stream stands and go on from there.
      if client then pcall(client.close, client); client = nil end
      local top = redis("XREVRANGE", STREAM, "+", "-", "COUNT", 1)
      produced = (type(top) == "table" and top[1]) and tonumber(top[1][1]:match("^(%d+)")) or 0
      if not client then redis("PING") end
    end
    if not client then redis("PING") end
  end
end

redis("PING")
local next_fault = proc.now() + next_gap()
local start = proc.now()
-- A consumer that ended in a way no fault explains ends the run: its log is
-- the finding, and going on would bury it.
while produced < opts.n and #unexpected == 0 do
  local now = proc.now()
  local due = math.min(opts.n, math.floor(opts.n * (now - start) / opts.duration) + 1)
  produce(due)
  for _, s in ipairs(slots) do
    if s.stopped and now >= s.cont_at then sigcont(s) end
    if not s.stopped and reap(s) then restart(s) end
  end
  if now >= next_fault then
    for _ = 1, 5 do
      local kind = pick()
      if faults[kind](now) then count(kind) break end
    end
    next_fault = proc.now() + next_gap()
  end
  proc.sleep(0.01)
end
local produce_time = proc.now() - start

-- Heal: wake the frozen, restart the dead, then wait until every message
-- is in the output and nothing is pending.
for _, s in ipairs(slots) do
  if s.stopped then sigcont(s) end
end
-- A consumer woken from SIGSTOP stops on its own once its heart notices
-- the missed heartbeats: the last wake-up plus claim_timeout and a margin
-- passes before the consumers are stopped.
local deadline = proc.now() + math.max(120, opts.duration)
local settled = proc.now() + CT + 1
while #unexpected == 0 do
  for _, s in ipairs(slots) do
    if reap(s) then restart(s) end
  end
  read_output()
  local p = pending()
  if distinct == opts.n and p == 0 and proc.now() >= settled then break end
  if proc.now() > deadline then
    io.stderr:write(string.format("chaos: gave up waiting: %d of %d in the output, %d pending\n", distinct, opts.n, p))
    break
  end
  proc.sleep(0.2)
end

-- Stop the consumers cleanly; then count for the last time.
for _, s in ipairs(slots) do
  if s.proc:alive() then s.proc:signal("TERM") end
end
for _, s in ipairs(slots) do
  local code = s.proc:wait(60)
  if code == nil then
    unexpected[#unexpected + 1] = "consumer " .. tostring(s.name) .. " did not stop on SIGTERM within 60 s"
    s.proc:kill()
  elseif tostring(code) ~= "0" and not (tostring(code) == "1" and proc.slurp(s.log):find("heart process died", 1, true)) then
    unexpected[#unexpected + 1] = string.format("consumer %s stopped with %s on SIGTERM:\n%s",
      tostring(s.name), tostring(code), proc.slurp(s.log):sub(-2000))
  end
end
read_output()
local pend = pending()
local lost = 0
for n = 1, opts.n do
  if not seen[n] then lost = lost + 1 end
end
local duplicates = copies - distinct

-- Every rsghost process gone: each main process we started, and its heart
-- (a child re-parented when the main process died, so found by name).
local left, counted = 0, {}
for _, p in ipairs(all_procs) do
  if p:alive() then left = left + 1; counted[p:pid()] = true end
end
-- Any process whose command line names our script (a heart, a main
-- process we lost track of), found in /proc rather than with pgrep, which a
-- minimal Debian root does not have.
local ls = assert(io.popen("ls /proc"))
for pid in ls:read("*a"):gmatch("%d+") do
  pid = tonumber(pid)
  local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
  local cmdline = f and f:read("*a") or ""
  if f then f:close() end
  if cmdline:find(script_path, 1, true) and not counted[pid] and not cluster.gone(pid) then
    left = left + 1
  end
end
ls:close()

local parts, nfaults = {}, 0
for _, k in ipairs(order) do
  if counts[k] then
    parts[#parts + 1] = counts[k] .. " " .. k
    nfaults = nfaults + counts[k]
  end
end
local summary = string.format(
  "chaos seed=%d: %d messages, %d faults (%s), %d lost, %d duplicates, %d pending, %d rsghost processes left, %d consumer starts, %.0fs",
  opts.seed, opts.n, nfaults, table.concat(parts, ", "), lost, duplicates, pend, left, started, proc.now() - t0)
print(summary)

local failed = lost > 0 or pend > 0 or left > 0 or #unexpected > 0
for _, u in ipairs(unexpected) do io.stderr:write("chaos: ", u, "\n") end
if failed then
  io.stderr:write(string.format("chaos: FAILED (replay with --seed %d); logs kept in %s (produced in %.0fs)\n",
    opts.seed, dir, produce_time))
  if client then client:close() end
  srv.stop(true)
  os.exit(1)
end
if client then client:close() end
srv.stop(opts.keep)
if opts.keep then io.stderr:write("chaos: logs in ", dir, "\n") end
os.exit(0)
