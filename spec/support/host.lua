-- Helpers for the integration specs that drive the real rsghost binary:
--
--   local H = require "support.host"
--   local t = H.context()                  -- unique prefix, temp dir, redis
--   local path = H.script(t, [[ ... {{P}} ... ]])   -- {{P}} -> t.prefix
--   local h = H.start(t, { script = path, consumer = "c1" })
--   H.xadd_many(t.redis, t.prefix .. ":s", 100)
--   H.eventually(function() return #H.list(t.redis, t.prefix .. ":out") == 100 end)
--   h:stop()  --> exit code
--   H.cleanup()                            -- in after_each: kills leftovers
--
-- Every test works under its own key prefix ("rsgt:<pid>:<n>"), so specs can
-- share one redis-server, also from parallel processes. Timeouts are generous
-- (a slow, noisy 2-core machine must pass): specs wait for final states with
-- eventually(), never for a fixed time.
local proc = require "support.proc"
local server = require "support.server"

local M = {}

M.bin = os.getenv("RSGHOST_BIN") or "build/rsghost"

-- RSGHOST_TEST_TIMEOUT_SCALE stretches every wait (e.g. 3 under valgrind).
M.scale = tonumber(os.getenv("RSGHOST_TEST_TIMEOUT_SCALE") or "") or 1
M.timeout = 30 * M.scale

local counter = 0
local started = {}   -- hosts started by this process and not yet reaped
local dirs = {}      -- temp dirs to remove at exit

function M.binary_exists()
  local f = io.open(M.bin, "rb")
  if f then f:close() return true end
  return false
end

-- A fresh unique key prefix.
function M.prefix(tag)
  counter = counter + 1
  return string.format("rsgt:%d:%d:%d%s", proc.getpid(), os.time() % 100000, counter,
    tag and (":" .. tag) or "")
end

local function tmpdir()
  local d = server.tmpdir("spec")
  dirs[#dirs + 1] = d
  return d
end
M.tmpdir = tmpdir

-- A per-test context: t.prefix, t.dir (temp dir), t.srv (server), t.url,
-- t.redis (a hiredis client for the spec). opts.server: a server from
-- support.server.start() (default: server.shared()).
function M.context(opts)
  opts = opts or {}
  local srv = opts.server or server.shared()
  return {
    prefix = M.prefix(opts.tag),
    dir = tmpdir(),
    srv = srv,
    url = srv.url,
    redis = srv.client(),
  }
end

-- Replaces {{NAME}} in src with vars[NAME] (t.prefix for P when t given).
function M.template(src, vars)
  return (src:gsub("{{([%w_]+)}}", function(k)
    local v = vars[k]
    if v == nil then error("support.host.template: no value for {{" .. k .. "}}", 3) end
    return tostring(v)
  end))
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end
M.write = write

-- Writes a script file from src (with {{P}} = t.prefix and vars substituted)
-- and returns its path. The file is named name (default "script.lua") in a
-- new directory, so error messages read "script.lua:LINE: ...".
function M.script(t, src, vars, name)
  local v = { P = t.prefix }
  for k, x in pairs(vars or {}) do v[k] = x end
  local dir = server.tmpdir("script")
  dirs[#dirs + 1] = dir
  return write(dir .. "/" .. (name or "script.lua"), M.template(src, v))
end

local Host = {}
Host.__index = Host

function Host:pid() return self.proc:pid() end
function Host:alive() return self.proc:alive() end
function Host:signal(sig) return self.proc:signal(sig) end
function Host:wait(timeout) return self.proc:wait(timeout or M.timeout) end

-- The host's stderr (its log) so far.
function Host:log()
  return proc.slurp(self.log_path)
end

function Host:stdout()
  return proc.slurp(self.out_path)
end

-- SIGTERM and wait: the exit code ("signal N" if it died of a signal; nil if
-- it was still running after the timeout, in which case it is killed).
function Host:stop(timeout)
  if not self.proc:alive() then return self.proc.result end
  self.proc:signal("TERM")
  local code = self.proc:wait(timeout or M.timeout)
  if code == nil then self.proc:kill() end
  return code
end

-- kill -9, reaped. A host killed on purpose no longer counts as one that
-- "exited" while a spec waits for the others (wait_sunk).
function Host:kill()
  self.killed = true
  return self.proc:kill()
end

-- Log lines matching a Lua pattern.
function Host:log_lines(pattern)
  local out = {}
  for line in self:log():gmatch("[^\n]+") do
    if not pattern or line:find(pattern) then out[#out + 1] = line end
  end
  return out
end

-- A description for assertion messages: exit state and the log's tail.
function Host:describe()
  local log = self:log()
  if #log > 4000 then log = "...\n" .. log:sub(-4000) end
  local state = self.proc:alive() and "running" or ("exited: " .. tostring(self.proc.result))
  return string.format("rsghost %s (%s), log:\n%s", self.name, state, log)
end

-- Starts the binary. opts:
--   script    path (required)
--   consumer  consumer name (default "consumer-1"); false: none given
--   redis     URL for --redis (default t.url); false: no --redis option
--   args      extra arguments before the script (e.g. { "--log-level", "debug" })
--   env       environment changes ({ K = v | false })
--   log_level default "debug" (the log is the spec's window into the host)
function M.start(t, opts)
  assert(opts and opts.script, "support.host.start: script required")
  local argv = { M.bin }
  local redis = opts.redis
  if redis == nil then redis = t.url end
  if redis then argv[#argv + 1] = "--redis"; argv[#argv + 1] = redis end
  if opts.log_level ~= false then
    argv[#argv + 1] = "--log-level"
    argv[#argv + 1] = opts.log_level or "debug"
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = opts.script
  local consumer = opts.consumer
  if consumer == nil then consumer = "consumer-1" end
  if consumer then argv[#argv + 1] = consumer end
  local n = #started + 1
  local base = string.format("%s/host-%d-%s", t.dir, n, consumer or "default")
  local env = { RSGHOST_REDIS_URL = false }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local h = setmetatable({
    name = consumer or "(default)",
    log_path = base .. ".log",
    out_path = base .. ".out",
    argv = argv,
  }, Host)
  h.proc = proc.spawn { argv = argv, env = env, stdout = h.out_path, stderr = h.log_path }
  started[#started + 1] = h
  return h
end

-- Runs the binary to completion: code, stdout, stderr. opts.env, opts.timeout.
function M.run(args, opts)
  opts = opts or {}
  local argv = { M.bin }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local env = { RSGHOST_REDIS_URL = false }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  return proc.run { argv = argv, env = env, timeout = opts.timeout or M.timeout }
end

-- Kills every host this process started that still runs (after_each).
function M.cleanup()
  for _, h in ipairs(started) do
    if h.proc:alive() then h.proc:kill() end
  end
  started = {}
end

-- Calls fn until it returns a truthy value (returned) or timeout seconds pass.
-- An error raised by fn (an assert) counts as "not yet"; after the timeout
-- the last error is re-raised, or "timed out: <what>" when fn just returned
-- false. what may be a string or a function giving extra context (a log).
function M.eventually(fn, timeout, what)
  timeout = (timeout or 30) * M.scale
  local deadline = proc.now() + timeout
  local step = 0.01
  local last_err
  while true do
    local ok, v = pcall(fn)
    if ok and v then return v end
    -- M.abort(): give up at once, there is nothing left to wait for.
    if not ok and type(v) == "table" and v.abort then error(v.abort, 0) end
    last_err = not ok and v or nil
    if proc.now() >= deadline then break end
    proc.sleep(step)
    step = math.min(step * 1.5, 0.2)
  end
  local extra = type(what) == "function" and what() or what
  if last_err ~= nil then
    if extra and type(last_err) == "string" then last_err = last_err .. "\n" .. extra end
    error(last_err, 0)
  end
  error(string.format("timed out after %.0f s waiting for %s", timeout, extra or "a condition"), 2)
end

-- Raised inside an eventually() function: stop waiting and fail with msg.
function M.abort(msg)
  error({ abort = msg }, 0)
end

function M.sleep(seconds) proc.sleep(seconds) end

-- Adds n messages to stream with one round trip. fields(i) returns a flat
-- array { f1, v1, ... } (default { "n", i }). Returns the ids in order.
function M.xadd_many(r, stream, n, fields)
  local cmds = {}
  for i = 1, n do
    local cmd = { "XADD", stream, "*" }
    for _, x in ipairs(fields and fields(i) or { "n", i }) do cmd[#cmd + 1] = x end
    cmds[i] = cmd
  end
  local ids = {}
  local chunk = 500
  for first = 1, n, chunk do
    local part = {}
    for i = first, math.min(n, first + chunk - 1) do part[#part + 1] = cmds[i] end
    for _, id in ipairs(r:pipeline(part)) do
      if type(id) ~= "string" then error("XADD failed: " .. tostring(type(id) == "table" and id.err or id), 2) end
      ids[#ids + 1] = id
    end
  end
  return ids
end

-- The whole list at key.
-- Stream ids "ms-seq" in stream order (a plain string sort puts "1-488"
-- before "1-5"); other strings (list items) as strings.
function M.id_less(a, b)
  local am, as = a:match("^(%d+)%-(%d+)$")
  local bm, bs = b:match("^(%d+)%-(%d+)$")
  if am and bm then
    am, bm = tonumber(am), tonumber(bm)
    if am ~= bm then return am < bm end
    return tonumber(as) < tonumber(bs)
  end
  return a < b
end

-- The entries of dead-letter stream key, oldest first, each a table of its
-- fields by name (the first value of a repeated name), with the entry's own
-- id under "@entry".
function M.dead_letters(r, key)
  local out = {}
  for _, e in ipairs(r:call("XRANGE", key, "-", "+")) do
    local f = { ["@entry"] = e[1] }
    for i = #e[2] - 1, 1, -2 do f[e[2][i]] = e[2][i + 1] end
    out[#out + 1] = f
  end
  return out
end

function M.list(r, key)
  return r:call("LRANGE", key, 0, -1)
end

-- XPENDING summary: { count =, min =, max =, consumers = { name = n } };
-- count 0 (and no group) when the group or stream does not exist.
function M.xpending(r, stream, group)
  local reply, err = r:pcall("XPENDING", stream, group)
  if not reply then
    if err:find("NOGROUP") then return { count = 0, consumers = {}, nogroup = true } end
    error(err, 2)
  end
  local s = { count = reply[1], min = reply[2] or nil, max = reply[3] or nil, consumers = {} }
  for _, c in ipairs(reply[4] or {}) do s.consumers[c[1]] = tonumber(c[2]) end
  return s
end

-- The ids pending for group on stream (all, or for one consumer), as a set
-- { [id] = consumer }.
function M.pending_ids(r, stream, group, consumer)
  local args = { "XPENDING", stream, group, "-", "+", 100000 }
  if consumer then args[#args + 1] = consumer end
  local reply, err = r:pcall(unpack(args))
  if not reply then
    if err:find("NOGROUP") then return {} end
    error(err, 2)
  end
  local set = {}
  for _, e in ipairs(reply) do set[e[1]] = e[2] end
  return set
end

-- The group's entry in XINFO GROUPS as a table, or nil when it does not exist.
function M.group_info(r, stream, group)
  local reply = r:pcall("XINFO", "GROUPS", stream)
  if type(reply) ~= "table" then return nil end
  for _, g in ipairs(reply) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info.name == group then return info end
  end
  return nil
end

-- Consumer names of a group, as a set.
function M.consumers(r, stream, group)
  local reply = r:pcall("XINFO", "CONSUMERS", stream, group)
  local set = {}
  if type(reply) ~= "table" then return set end
  for _, c in ipairs(reply) do
    for i = 1, #c, 2 do if c[i] == "name" then set[c[i + 1]] = true end end
  end
  return set
end

-- Counts occurrences: { [value] = n }.
function M.tally(list)
  local t = {}
  for _, v in ipairs(list) do t[v] = (t[v] or 0) + 1 end
  return t
end

-- Compares what a sink received with what was sent. expected: array of
-- values; got: array. Returns { missing = {...}, duplicates = n (extra
-- copies), unexpected = {...} }.
function M.compare(expected, got)
  local seen = M.tally(got)
  local want = {}
  local res = { missing = {}, duplicates = 0, unexpected = {} }
  for _, v in ipairs(expected) do
    want[v] = true
    local c = seen[v] or 0
    if c == 0 then res.missing[#res.missing + 1] = v
    elseif c > 1 then res.duplicates = res.duplicates + c - 1 end
  end
  for v in pairs(seen) do
    if not want[v] then res.unexpected[#res.unexpected + 1] = v end
  end
  table.sort(res.unexpected)
  return res
end

-- Asserts that got holds every value of want exactly once and nothing else;
-- `what` labels the failure.
function M.assert_exactly_once(want, got, what)
  local assert = require "luassert" -- busted's assert; a module does not see the spec's
  local c = M.compare(want, got)
  assert.same({}, c.missing, (what or "") .. " missing")
  assert.equal(0, c.duplicates, (what or "") .. " duplicated")
  assert.same({}, c.unexpected, (what or "") .. " unexpected")
end

-- Waits until the list o.out holds at least o.n items and nothing is pending
-- for o.group on any of o.streams (a string or an array); returns the list.
-- o.hosts (array) and the current counts go into the failure message.
-- o.pending: the number of entries expected to stay pending (default 0).
function M.wait_sunk(r, o)
  local streams = type(o.streams) == "table" and o.streams or { o.streams }
  local state
  local function check()
    local len = r:call("LLEN", o.out)
    local pending = 0
    for _, s in ipairs(streams) do pending = pending + M.xpending(r, s, o.group).count end
    state = string.format("%s has %d items (want >= %d), %d pending (want %d)",
      o.out, len, o.n, pending, o.pending or 0)
    local done = len >= o.n and pending == (o.pending or 0)
    if not done then
      -- A host that exited will not get there: fail now, with its log.
      for _, h in ipairs(o.hosts or {}) do
        if not h.killed and not h:alive() then M.abort("waiting for " .. state .. ", but " .. h:describe()) end
      end
    end
    return done
  end
  M.eventually(check, o.timeout or 60, function()
    local parts = { state or "" }
    for _, h in ipairs(o.hosts or {}) do parts[#parts + 1] = h:describe() end
    return table.concat(parts, "\n")
  end)
  return M.list(r, o.out)
end

-- Whether this build has TLS: "tls: yes" or "tls: no" in `rsghost --version`.
function M.binary_tls()
  local code, out, err = M.run { "--version" }
  assert(code == 0, "rsghost --version failed: " .. tostring(code) .. " " .. out .. err)
  local v = out:match("\ntls: (%a+)")
  assert(v == "yes" or v == "no", "rsghost --version does not say whether it has TLS:\n" .. out)
  return v == "yes"
end

-- Reads INFO section into { key = value }.
function M.info(r, section)
  local text = r:call("INFO", section)
  local t = {}
  for k, v in text:gmatch("([%w_]+):([^\r\n]*)") do t[k] = v end
  return t
end

-- Number of calls of a command since the last CONFIG RESETSTAT.
function M.command_calls(r, cmd)
  local stats = M.info(r, "commandstats")
  local line = stats["cmdstat_" .. cmd:lower()]
  if not line then return 0 end
  return tonumber(line:match("calls=(%d+)")) or 0
end

-- Removes this process' temp dirs when the Lua state closes.
M._sentinel = require("ffi").gc(require("ffi").new("int[1]"), function()
  M.cleanup()
  -- RSGHOST_TEST_KEEP=1 keeps logs and scripts for a post-mortem.
  if os.getenv("RSGHOST_TEST_KEEP") then return end
  for _, d in ipairs(dirs) do pcall(server.rmtree, d) end
end)

return M
