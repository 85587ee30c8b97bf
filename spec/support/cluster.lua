-- Helpers for the specs of dynamic consumers (heartbeats and claiming):
--
--   local cluster = require "support.cluster"
--   local sub = cluster.subscribe(t.url, channel)   -- a pub/sub listener
--   sub:next(2)            --> payload, arrival time (proc.now()) | nil on timeout
--   cluster.heart_pid(h)   -- the host's heart: its one child process
--   cluster.gone(pid)      -- true once a pid has exited (a zombie counts)
--   cluster.claimed(h)     -- what the host's log says it claimed, per consumer
--   cluster.generated_name(h), cluster.log_time(line)
--
-- support.host and rsghost.hiredis are used as they are; what they lack for
-- these specs (reading a subscription without blocking forever, looking at a
-- process' children) lives here.
local ffi = require "ffi"
local proc = require "support.proc"
local hiredis = require "rsghost.hiredis" -- declares redisContext, redisReply

ffi.cdef [[
struct rsghost_cluster_pollfd { int fd; short events; short revents; };
int redisReaderGetReply(redisReader *r, void **reply);
int redisBufferRead(redisContext *c);
]]

local C = ffi.C
local POLLIN = 1
local REPLY_STRING, REPLY_ARRAY = 1, 2

-- The library rsghost.hiredis loaded, whichever version it is.
local L = hiredis.C

local M = {}

local Sub = {}
Sub.__index = Sub

-- Takes one complete reply out of the reader's buffer, without reading the
-- socket: returns the payload of a "message" push, false for any other
-- reply, nil when the buffer holds no complete reply.
local function buffered(ctx)
  local slot = ffi.new("void *[1]")
  if L.redisReaderGetReply(ctx.reader, slot) ~= 0 then
    error("support.cluster: protocol error on the subscription", 0)
  end
  if slot[0] == nil then return nil end
  local r = ffi.cast("redisReply *", slot[0])
  local payload = false
  if r.type == REPLY_ARRAY and r.elements == 3 then
    local kind, data = r.element[0], r.element[2]
    if kind.type == REPLY_STRING and ffi.string(kind.str, kind.len) == "message"
      and data.type == REPLY_STRING then
      payload = ffi.string(data.str, data.len)
    end
  end
  L.freeReplyObject(slot[0])
  return payload
end

-- The next message published on the channel: payload, and the monotonic
-- time we read it. nil when none arrives within timeout seconds (the
-- connection stays usable: we poll before reading, never block in recv).
function Sub:next(timeout)
  local ctx = self.client.ctx
  local deadline = proc.now() + (timeout or 0)
  local pfd = ffi.new("struct rsghost_cluster_pollfd")
  local polled = false
  while true do
    local payload = buffered(ctx)
    if payload then return payload, proc.now() end
    if payload == nil then
      -- What already reached the socket counts even with timeout 0.
      local left = deadline - proc.now()
      if left <= 0 and polled then return nil end
      polled = true
      pfd.fd, pfd.events, pfd.revents = ctx.fd, POLLIN, 0
      if C.poll(pfd, 1, math.max(0, math.ceil(left * 1000))) > 0 then
        if L.redisBufferRead(ctx) ~= 0 then
          error("support.cluster: subscription lost: " .. ffi.string(ctx.errstr), 0)
        end
        polled = false -- read what came, then poll again before giving up
      end
    end
  end
end

-- Drops what arrived so far; returns how many messages that was.
function Sub:drain()
  local n = 0
  while self:next(0) do n = n + 1 end
  return n
end

function Sub:close()
  self.client:close()
end

-- A connection SUBSCRIBEd to channel.
function M.subscribe(url, channel)
  local client = hiredis.connect(url)
  local ok = client:call("SUBSCRIBE", channel)
  assert(type(ok) == "table" and ok[1] == "subscribe", "support.cluster: SUBSCRIBE " .. channel .. " failed")
  return setmetatable({ client = client, channel = channel }, Sub)
end

-- The child pids of pid (the kernel's list; pgrep -P where it is missing).
function M.children(pid)
  local out = {}
  local f = io.open(string.format("/proc/%d/task/%d/children", pid, pid), "r")
  local text
  if f then
    text = f:read("*a")
    f:close()
  else
    local _, o = proc.run { argv = { "pgrep", "-P", tostring(pid) } }
    text = o
  end
  for n in text:gmatch("%d+") do out[#out + 1] = tonumber(n) end
  return out
end

-- The state letter of a process (R, S, Z, ...), nil when it does not exist.
function M.state(pid)
  local f = io.open(string.format("/proc/%d/stat", pid), "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  -- "pid (comm) S ...": comm may hold spaces and parentheses; the state
  -- follows the last ')'.
  return s:match("%)%s+(%a)[^%)]*$")
end

-- True once pid has exited. A zombie counts as gone: an orphan heart is
-- re-parented to whatever init this machine has, which may reap it late.
function M.gone(pid)
  local st = M.state(pid)
  return st == nil or st == "Z" or st == "X"
end

-- Sends a signal to a process we did not spawn ourselves (the heart).
function M.signal(pid, sig)
  return C.kill(pid, proc.signals[sig] or sig) == 0
end

-- The host's heart process: waits until the main process has exactly one
-- child, and checks it is the pid the host logged.
function M.heart_pid(h, H)
  local pid
  H.eventually(function()
    local kids = M.children(h:pid())
    if #kids ~= 1 then return false end
    pid = kids[1]
    local logged = h:log():match("%(heart pid (%d+)%)")
    return logged ~= nil and tonumber(logged) == pid
  end, 30, function() return "the heart process of " .. h:describe() end)
  return pid
end

-- The name the host generated, from its log line.
function M.generated_name(h)
  return h:log():match("using the generated name '([^']+)'")
end

-- What the host claimed, from its log: { total =, by = { dead_name = n } }.
function M.claimed(h)
  local res = { total = 0, by = {}, lines = {} }
  for _, line in ipairs(h:log_lines("claimed %d+ message")) do
    local n, who = line:match("claimed (%d+) message%(s%) of dead consumer '([^']*)'")
    if n then
      res.total = res.total + tonumber(n)
      res.by[who] = (res.by[who] or 0) + tonumber(n)
      res.lines[#res.lines + 1] = line
    end
  end
  return res
end

-- Seconds since midnight (UTC, millisecond resolution) of a host log line
-- "2026-11-28T02:40:01.123Z rsghost[PID] LEVEL: ...".
function M.log_time(line)
  local h, m, s = line:match("^%d+%-%d+%-%d+T(%d+):(%d+):([%d%.]+)Z")
  if not h then return nil end
  return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(s)
end

-- Seconds between two log lines (b after a), across midnight too.
function M.log_interval(a, b)
  local d = M.log_time(b) - M.log_time(a)
  if d < -43200 then d = d + 86400 end
  return d
end

-- The liveness key and the registry hash the heart keeps.
function M.alive_key(group, consumer)
  return "rsghost:alive:" .. group .. ":" .. consumer
end
function M.registry_key(group)
  return "rsghost:consumers:" .. group
end

-- A pipeline script for the specs, one stream P:s in group P:g, template
-- variables HB (heartbeat_interval), CT (claim_timeout), BATCH_SIZE,
-- BATCH_TIMEOUT and SOURCE_EXTRA (more source fields, e.g.
-- ', heartbeat_channel = "x"'); M.script fills in defaults.
--  - preprocess: a message with field busy=S keeps the CPU busy for S
--    seconds (a pure Lua loop: the main process can do nothing else
--    meanwhile), logging "busy start ID" and "busy end ID".
--  - sink: RPUSHes the ids to P:out and to P:by:<consumer>. While the key
--    P:block:<consumer> exists it raises before writing anything, so the
--    batch stays pending (owned by this consumer) and is retried quickly.
M.SCRIPT = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2,
             heartbeat_interval = {{HB}}, claim_timeout = {{CT}}{{SOURCE_EXTRA}} },
  preprocess = function(stream, id, data)
    if data.busy then
      rsghost.log.info("busy start", id)
      local t0 = os.clock()
      while os.clock() - t0 < tonumber(data.busy) do end
      rsghost.log.info("busy end", id)
    end
    return id
  end,
  batch = { size = {{BATCH_SIZE}}, timeout = {{BATCH_TIMEOUT}} },
  retry = { initial = 0.1, max = 0.2 },
  sink = function(items)
    if rsghost.redis.call("EXISTS", P .. ":block:" .. rsghost.consumer) == 1 then
      error("blocked: holding " .. #items .. " message(s)")
    end
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    rsghost.redis.call("RPUSH", P .. ":by:" .. rsghost.consumer, unpack(items))
  end,
}
]]

M.DEFAULTS = { HB = 0.2, CT = 1.5, BATCH_SIZE = 20, BATCH_TIMEOUT = 0.05, SOURCE_EXTRA = "" }

-- Writes M.SCRIPT for context t (support.host's H.script) with vars over
-- M.DEFAULTS; returns its path.
function M.script(H, t, vars)
  local v = {}
  for k, x in pairs(M.DEFAULTS) do v[k] = x end
  for k, x in pairs(vars or {}) do v[k] = x end
  return H.script(t, M.SCRIPT, v)
end

-- Wall-clock seconds since midnight UTC, comparable with M.log_time: for
-- measuring from an event in the spec to a line in a host's log.
function M.wall_time()
  -- support.proc declared clock_gettime with its struct rsghost_timespec.
  local ts = ffi.new("struct rsghost_timespec")
  C.clock_gettime(0, ts) -- CLOCK_REALTIME
  return (tonumber(ts.tv_sec) % 86400) + tonumber(ts.tv_nsec) * 1e-9
end

return M
