-- The `rsghost` module that pipeline scripts require.
--
-- rsghost.redis.* never blocks: inside a sink it yields the sink's coroutine
-- with a request, and the pipeline (rsghost.pipeline) sends it through the host
-- and resumes the coroutine with the reply (the OpenResty cosocket model).
-- Anywhere else there is no coroutine to suspend, so the calls raise.

local type, select, tostring, error, setmetatable = type, select, tostring, error, setmetatable
local format, floor, huge = string.format, math.floor, math.huge
local concat = table.concat
local running, yield = coroutine.running, coroutine.yield

local M = {}

-- This consumer's name and group: set by rsghost.script.load (the consumer
-- before the script runs, the group once the script's source is known).
M.consumer = nil
M.group = nil

-- What a sink yields to ask for Redis I/O. A private table, so that no other
-- yield can pass for a request.
local MARKER = setmetatable({}, { __tostring = function() return "rsghost.redis request" end })

-- Shared with rsghost.pipeline, not for scripts:
--   task    the sink coroutine the pipeline is resuming right now (nil outside)
--   host    where rsghost.log goes (the host of the pipeline at work, else the
--           last pipeline created); nil means stderr
--   timers  where rsghost.every registers: the script being loaded, or the
--           pipeline whose task is running
local state = { task = nil, host = nil, timers = nil }
M._state = state
M._MARKER = MARKER

-- Raise the contract's error unless called from the running sink coroutine
-- itself (a coroutine the sink created cannot be suspended by the pipeline).
local function check_task(name)
  local task = state.task
  if task ~= nil and running() == task then return end
  if task ~= nil then
    error(name .. " is only available in the sink's own coroutine, not in one it created", 3)
  end
  error(name .. " is only available inside a sink", 3)
end

-- Redis takes strings. Numbers are formatted here so that integers never turn
-- into "1e+15" and the host and the test kit see the same bytes.
local function arg_string(v)
  if v == floor(v) and v > -2^53 and v < 2^53 then return format("%d", v) end
  if v ~= v or v == huge or v == -huge then return nil end
  return format("%.17g", v)
end

-- Check and normalize one command in place. Returns nil, or an error text.
local function check_argv(argv, n)
  if n == 0 then return "empty command" end
  for i = 1, n do
    local v = argv[i]
    local t = type(v)
    if t == "number" then
      v = arg_string(v)
      if v == nil then return format("argument #%d is not a finite number", i) end
      argv[i] = v
    elseif t ~= "string" then
      return format("argument #%d must be a string or a number, got %s", i, t)
    end
  end
  return nil
end

-- Every sink, the host's own XACKs and its claims share one connection. A
-- command that changes that connection's state, or blocks it, would wedge
-- them all (a MULTI left open by a sink that raised before EXEC queues every
-- later command, the host's acks included, until the process is killed), so
-- such commands are refused before they are sent, with what to use instead.
local PIPELINE_TX = "use rsghost.redis.pipeline({ {\"MULTI\"}, ..., {\"EXEC\"} }): it sends the "
  .. "transaction whole, so it is never left open"
local MODE = "it puts the shared connection in a mode where it runs nothing else; "
  .. "open your own connection for it outside rsghost"
local BLOCKING = "it blocks the connection the host's acks use; use its non-blocking form"
local WATCHING = "WATCH holds state on the shared connection; do check-and-set atomically in a script (EVAL)"
local DATABASE = "the host's connection stays on the database of --redis; put the database in that URL"
local REFUSED = {
  MULTI = PIPELINE_TX, EXEC = PIPELINE_TX, DISCARD = PIPELINE_TX,
  WATCH = WATCHING, UNWATCH = WATCHING,
  SELECT = DATABASE, SWAPDB = DATABASE,
  SUBSCRIBE = MODE, PSUBSCRIBE = MODE, SSUBSCRIBE = MODE,
  UNSUBSCRIBE = MODE, PUNSUBSCRIBE = MODE, SUNSUBSCRIBE = MODE, MONITOR = MODE,
  SYNC = MODE, PSYNC = MODE,
  QUIT = "it closes the connection the host relies on",
  RESET = "it resets the connection the host relies on (its database and client settings)",
  HELLO = "it changes the protocol of the connection the host relies on",
  AUTH = "the host authenticates its connection itself; put the credentials in --redis",
  READONLY = MODE, READWRITE = MODE,
  BLPOP = BLOCKING .. " (LPOP)", BRPOP = BLOCKING .. " (RPOP)", BLMOVE = BLOCKING .. " (LMOVE)",
  BRPOPLPUSH = BLOCKING .. " (LMOVE)", BLMPOP = BLOCKING .. " (LMPOP)",
  BZPOPMIN = BLOCKING .. " (ZPOPMIN)", BZPOPMAX = BLOCKING .. " (ZPOPMAX)", BZMPOP = BLOCKING .. " (ZMPOP)",
}

-- Why argv may not run on the shared connection, or nil when it may. The
-- subcommand and option forms that do harm are caught too: CLIENT REPLY
-- (replies stop coming), XREAD/XREADGROUP with BLOCK, WAIT with timeout 0.
local function refusal(argv, n)
  local cmd = argv[1]:upper()
  local why = REFUSED[cmd]
  if why then return format("%s is not allowed in a sink: %s", cmd, why) end
  if cmd == "CLIENT" and n >= 2 and argv[2]:upper() == "REPLY" then
    return "CLIENT REPLY is not allowed in a sink: the host needs every reply on its connection"
  end
  if cmd == "XREAD" or cmd == "XREADGROUP" then
    for i = 2, n do
      local a = argv[i]:upper()
      if a == "STREAMS" then break end
      if a == "BLOCK" then return format("%s BLOCK is not allowed in a sink: %s (no BLOCK)", cmd, BLOCKING) end
    end
  end
  if cmd == "WAIT" and n == 3 and tonumber(argv[3]) == 0 then
    return "WAIT with timeout 0 is not allowed in a sink: it may block the shared connection forever; give a timeout"
  end
  return nil
end
M._refusal = refusal

-- Yield one command to the pipeline; returns reply, err (err is a Redis error
-- reply or a lost connection).
local function request(name, argv, n)
  local bad = check_argv(argv, n) or refusal(argv, n)
  if bad then error(name .. ": " .. bad, 3) end
  return yield(MARKER, argv)
end

local redis = {}
M.redis = redis

-- Run a command; return its reply, raise on an error reply (like Redis's own
-- redis.call). The error carries the caller's file:line.
function redis.call(...)
  check_task("rsghost.redis.call")
  local reply, err = request("rsghost.redis.call", { ... }, select("#", ...))
  if err ~= nil then error(err, 2) end
  return reply
end

-- Run a command; return its reply, or nil and the error text.
function redis.pcall(...)
  check_task("rsghost.redis.pcall")
  local reply, err = request("rsghost.redis.pcall", { ... }, select("#", ...))
  if err ~= nil then return nil, err end
  return reply
end

-- The body of rsghost.redis.pipeline, errors returned: replies, or nil, err,
-- index of the first failed command.
local function send_all(cmds)
  if type(cmds) ~= "table" then return nil, "expects an array of commands, got " .. type(cmds) end
  local n = #cmds
  if n == 0 then return {} end
  for i = 1, n do
    local cmd = cmds[i]
    if type(cmd) ~= "table" then return nil, format("command %d must be a table, got %s", i, type(cmd)) end
    local bad = check_argv(cmd, #cmd)
    if bad then return nil, format("command %d: %s", i, bad) end
  end
  -- A transaction is allowed whole: MULTI first, EXEC last, nothing in
  -- between that opens, closes or watches one. Redis then runs it or
  -- discards it; it is never left open on the shared connection.
  local tx = n >= 2 and cmds[1][1]:upper() == "MULTI" and cmds[n][1]:upper() == "EXEC"
  for i = tx and 2 or 1, tx and n - 1 or n do
    local cmd = cmds[i]
    local bad = refusal(cmd, #cmd)
    local name = cmd[1]:upper()
    if bad and (name == "MULTI" or name == "EXEC") then
      bad = format("%s is allowed only as the first or last command of a pipeline that is one whole "
        .. "transaction: { {\"MULTI\"}, ..., {\"EXEC\"} }", name)
    end
    if bad then return nil, format("command %d: %s", i, bad) end
  end
  local replies, err, at = yield(MARKER, cmds, n)
  if err ~= nil then return nil, format("%s (command %d of %d)", err, at, n) end
  return replies
end

-- Send every command of cmds = { {cmd, ...}, ... } at once, wait for all, and
-- return their replies in order (a nil reply reads false, as inside arrays).
-- Raises if any command failed, naming the first that did.
function redis.pipeline(cmds)
  check_task("rsghost.redis.pipeline")
  local replies, err = send_all(cmds)
  if err ~= nil then error("rsghost.redis.pipeline: " .. err, 2) end
  return replies
end

-- For rsghost.sink: rsghost.redis.pipeline with errors returned.
function M._pipeline(cmds)
  check_task("rsghost.redis.pipeline")
  return send_all(cmds)
end

-- For rsghost.sink: one command already built as an array (a batch can hold
-- more items than unpack() allows). Like rsghost.redis.pcall: returns reply,
-- or nil and the error (a bad argument included), so that the sink can say
-- which sink failed and where the script created it.
function M._command(argv)
  check_task("rsghost.redis.call")
  local bad = check_argv(argv, #argv) or refusal(argv, #argv)
  if bad then return nil, bad end
  return yield(MARKER, argv)
end

-- For sinks whose I/O is not a Redis command: yields req to the pipeline,
-- which hands it to the host operation named op (host[op](req, cb), e.g.
-- "file_append") and resumes with what cb got: result, or nil and err.
-- name is the caller's, for the error outside a sink.
function M._request(name, op, req)
  check_task(name)
  return yield(MARKER, req, op)
end

-- rsghost.every(seconds, fn): run fn every `seconds`, first `seconds` after
-- the script's init returned, in a coroutine where rsghost.redis works (to
-- refresh data a preprocess looks up, say). Runs never overlap; an error is
-- logged and the timer goes on. Call it while the script loads or from
-- init (state.timers is the list of the script being loaded or run).
function M.every(seconds, fn)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds <= 0 or seconds == huge then
    error("rsghost.every: seconds must be a number > 0, got " .. tostring(seconds), 2)
  end
  if type(fn) ~= "function" then error("rsghost.every: expects a function, got " .. type(fn), 2) end
  local timers = state.timers
  if timers == nil then error("rsghost.every: call it while the script loads, or from init", 2) end
  timers[#timers + 1] = { every = seconds, fn = fn }
end

local function emit(level, ...)
  local n = select("#", ...)
  local parts = { ... }
  for i = 1, n do parts[i] = tostring(parts[i]) end
  local msg = concat(parts, " ", 1, n)
  local host = state.host
  if host then
    host.log(level, msg)
  else
    io.stderr:write("rsghost ", level, ": ", msg, "\n")
  end
end

M.log = {
  debug = function(...) emit("debug", ...) end,
  info = function(...) emit("info", ...) end,
  warn = function(...) emit("warn", ...) end,
  error = function(...) emit("error", ...) end,
}

-- rsghost.sink is loaded on first use: rsghost.sink requires this module, and
-- either may be required first.
return setmetatable(M, {
  __index = function(t, k)
    if k == "sink" then
      local sink = require "rsghost.sink"
      rawset(t, "sink", sink)
      return sink
    end
  end,
})
