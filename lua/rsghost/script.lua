-- Loading a pipeline script: load it, run it, validate what it returns and
-- hand back a normalized configuration: the one place where the defaults of
-- every setting live (the C host refuses a normalized table that lacks one).
--
-- Every problem is raised as one line "path:LINE: reason" with error(msg, 0),
-- so the host can print it as is and exit before it touches Redis. Lua knows
-- the line of syntax and runtime errors; for a bad field we find it in the
-- script's text (the line that assigns the field), and for a missing one we
-- point at the script's final `return`.

local rsghost = require "rsghost"

local type, pairs, tostring, error, pcall = type, pairs, tostring, error, pcall
local format, floor, huge, sort = string.format, math.floor, math.huge, table.sort
local getinfo = debug.getinfo

local M = {}

M.DEFAULT_MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024

----------------------------------------------------------------------------
-- Error positions

-- tostring that cannot fail (a __tostring metamethod may raise).
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "(" .. type(v) .. " error value)"
end

-- Whether msg starts with a position "FILE:LINE: " whose FILE is path (Lua
-- may have shortened a long path to "...tail").
local function positioned_in(msg, path)
  local file = msg:match("^(.-):%d+: ")
  if not file then return false end
  if file == path then return true end
  local tail = file:match("^%.%.%.(.*)$")
  return tail ~= nil and path:sub(-#tail) == tail
end

-- The error message of a script error, as text that names the script's
-- file:line. err: the error value as raised (non-strings are tostring'ed).
-- path: the script's path. thread: the coroutine that raised (nil: the
-- current one, when called from an xpcall handler). level: where to start
-- walking that stack.
-- A message already positioned in the script is returned as is. Otherwise
-- the innermost frame running the script's code is prefixed ("path:LINE: ");
-- failing that, the innermost Lua frame that has a line; failing that the
-- message alone. We walk frames with debug.getinfo rather than parse
-- debug.traceback's text: same frames, but full paths (a traceback shortens
-- long paths) and nothing to parse.
function M.where(err, path, thread, level)
  local msg = safe_tostring(err)
  if path and positioned_in(msg, path) then return msg end
  local source = path and "@" .. path
  local first
  level = level or 1
  while true do
    local info
    if thread then info = getinfo(thread, level, "Sl") else info = getinfo(level, "Sl") end
    if info == nil then break end
    if info.currentline and info.currentline > 0 then
      if info.source == source then return format("%s:%d: %s", path, info.currentline, msg) end
      if first == nil and info.what ~= "C" and not msg:find("^.-:%d+: ") then
        local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
        first = format("%s:%d: %s", src, info.currentline, msg)
      end
    end
    level = level + 1
  end
  return first or msg
end

----------------------------------------------------------------------------
-- Finding lines in the script's text

local function read_lines(path)
  local f = io.open(path, "rb")
  if not f then return {} end
  local text = f:read("*a")
  f:close()
  local lines = {}
  if text:sub(-1) ~= "\n" then text = text .. "\n" end
  for line in text:gmatch("([^\n]*)\n") do
    -- The part before a line comment: `-- count = 3` is not an assignment.
    lines[#lines + 1] = line:gsub("%-%-.*$", "")
  end
  return lines
end

local function find_line(lines, pattern, from)
  for i = from or 1, #lines do
    if lines[i]:find(pattern) then return i end
  end
  return nil
end

-- The line of the script's final `return`: the last one at the start of a
-- line (a top-level statement), else the last anywhere, else the last line.
local function return_line(ctx)
  local lines = ctx.lines
  for i = #lines, 1, -1 do
    if lines[i]:find("^return%f[^%w_]") then return i end
  end
  for i = #lines, 1, -1 do
    if lines[i]:find("%f[%w_]return%f[^%w_]") then return i end
  end
  return #lines > 0 and #lines or 1
end

-- The line that assigns field `name` (`name =`, not `name ==`), looked for
-- after the line that assigns `parent` when there is one, so that
-- `source.timeout` is not confused with `batch.timeout`.
local function field_line(ctx, parent, name)
  local lines = ctx.lines
  -- Names are the script's own keys (an unknown one may hold "(" or "%"):
  -- matched as plain text, never as a pattern.
  local function literal(s) return (s:gsub("%p", "%%%0")) end
  local pat = "%f[%w_]" .. literal(name) .. "%s*=%f[^=]"
  if parent then
    local from = find_line(lines, "%f[%w_]" .. literal(parent) .. "%s*=%f[^=]")
    local at = from and find_line(lines, pat, from)
    if at then return at end
  end
  return find_line(lines, pat) or return_line(ctx)
end

local function fail(ctx, line, fmt, ...)
  local msg = format("%s:%d: %s", ctx.path, line, format(fmt, ...))
  -- One line, whatever the script's strings hold: %q writes a newline as
  -- a backslash and a newline, and a name may hold a raw one.
  msg = msg:gsub("\\\n", "\\n"):gsub("\n", "\\n")
  error(msg, 0)
end

-- "source.count" style names; parent nil for top-level keys.
local function full_name(parent, name)
  return parent and parent .. "." .. name or name
end

-- A wrong value: the error points at the field's assignment.
local function bad(ctx, parent, name, what, fmt, ...)
  fail(ctx, field_line(ctx, parent, name), "%s " .. fmt, what or full_name(parent, name), ...)
end

-- A missing value: the error points at the final `return`.
local function missing(ctx, fmt, ...)
  fail(ctx, return_line(ctx), fmt, ...)
end

-- How a wrong value is described: numbers by value, the rest by type.
local function got(v)
  if type(v) == "number" then return tostring(v) end
  return type(v)
end

----------------------------------------------------------------------------
-- Field checks. Each takes (ctx, parent, name, value) and returns the
-- normalized value (nil stays nil: defaults are applied by the caller).

local function is_finite(v)
  return type(v) == "number" and v == v and v ~= huge and v ~= -huge
end

local function positive_integer(ctx, parent, name, v)
  if v == nil then return nil end
  if not is_finite(v) or v < 1 or v ~= floor(v) then
    bad(ctx, parent, name, nil, "must be a positive integer, got %s", got(v))
  end
  return v
end

local function seconds(ctx, parent, name, v)
  if v == nil then return nil end
  if not is_finite(v) or v < 0 then
    bad(ctx, parent, name, nil, "must be a number of seconds >= 0, got %s", got(v))
  end
  return v
end

local function positive_seconds(ctx, parent, name, v)
  if v == nil then return nil end
  if not is_finite(v) or v <= 0 then
    bad(ctx, parent, name, nil, "must be a number of seconds > 0, got %s", got(v))
  end
  return v
end

local function boolean(ctx, parent, name, v)
  if v == nil then return nil end
  if type(v) ~= "boolean" then bad(ctx, parent, name, nil, "must be true or false, got %s", got(v)) end
  return v
end

local function nonempty_string(ctx, parent, name, v)
  if v == nil then return nil end
  if type(v) ~= "string" or v == "" then
    bad(ctx, parent, name, nil, "must be a non-empty string, got %s", type(v) == "string" and "\"\"" or got(v))
  end
  return v
end

-- A stream id where reading or a group starts: "$", "0", "<ms>" or
-- "<ms>-<seq>" (an integer number is taken as its digits).
local function stream_id(ctx, parent, name, what, v)
  if type(v) == "number" and v >= 0 and v == floor(v) and v < 2^53 then v = format("%d", v) end
  if type(v) ~= "string" or not (v == "$" or v:find("^%d+$") or v:find("^%d+%-%d+$")) then
    bad(ctx, parent, name, what, "must be a stream id (\"0\", \"$\" or \"<ms>-<seq>\"), got %s",
      type(v) == "string" and format("%q", v) or got(v))
  end
  return v
end

-- source.encoding, checked now so that an unknown encoding is a script error
-- (in --check too, and in the test kit) and not a failure once Redis is
-- reached. As host/encoding.c opens it: any UTF-8 spelling needs no iconv;
-- otherwise the name as given, then with '-' and '_' dropped (Python's
-- "latin-1" is iconv's "latin1"). The name is kept as the user wrote it.
local ffi = require "ffi"
pcall(ffi.cdef, [[
void *iconv_open(const char *tocode, const char *fromcode);
int iconv_close(void *cd);
]])
local ICONV_FAILED = ffi.cast("void *", -1)

local function encoding(ctx, name)
  local squeezed = name:gsub("[-_]", "")
  if squeezed:lower() == "utf8" then return name end
  for _, candidate in ipairs { name, squeezed } do
    local cd = ffi.C.iconv_open("UTF-8", candidate)
    if cd ~= ICONV_FAILED then
      ffi.C.iconv_close(cd)
      return name
    end
  end
  bad(ctx, "source", "encoding", nil, "%q is not an encoding iconv knows (`iconv -l` lists them)", name)
end

-- Whether t is a non-empty array 1..n with no other keys; returns n or nil.
local function array_length(t)
  local n = #t
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  if n > 0 and count == n then return n end
  return nil
end

-- A list of names: a string, or an array of strings. Returns an array.
local function names(ctx, parent, name, v)
  if type(v) == "string" then
    if v == "" then bad(ctx, parent, name, nil, "must not be an empty string") end
    return { v }
  end
  if type(v) ~= "table" then
    bad(ctx, parent, name, nil, "must be a string or an array of strings, got %s", got(v))
  end
  local n = array_length(v)
  if not n then bad(ctx, parent, name, nil, "must be a non-empty array of strings") end
  local out, seen = {}, {}
  for i = 1, n do
    local s = v[i]
    if type(s) ~= "string" or s == "" then
      bad(ctx, parent, name, format("%s[%d]", full_name(parent, name), i),
        "must be a non-empty string, got %s", type(s) == "string" and "\"\"" or got(s))
    end
    if seen[s] then bad(ctx, parent, name, nil, "names %q twice", s) end
    seen[s] = true
    out[i] = s
  end
  return out
end

-- Suggest the known key closest to a typo (edit distance <= 2).
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function check_keys(ctx, parent, t, known)
  local unknown = {}
  for k in pairs(t) do
    if known[k] == nil then unknown[#unknown + 1] = k end
  end
  if #unknown == 0 then return end
  -- Report the same key whatever the table's hash order.
  sort(unknown, function(a, b) return tostring(a) < tostring(b) end)
  local k = unknown[1]
  local where = parent and parent .. " " or ""
  if type(k) ~= "string" then
    missing(ctx, "unknown %skey [%s]", where, safe_tostring(k))
  end
  local hint, best = "", 3
  for name in pairs(known) do
    local d = distance(k, name)
    if d < best then best, hint = d, format(" (did you mean %q?)", name) end
  end
  fail(ctx, field_line(ctx, parent, k), "unknown %skey %q%s", where, k, hint)
end

----------------------------------------------------------------------------
-- The script's table

local TOP_KEYS = { source = true, preprocess = true, batch = true, sink = true, retry = true, init = true }

-- Source keys, and the source kinds each applies to (nil: all kinds).
local SOURCE_KEYS = {
  streams = { group = true, streams = true },
  lists = { lists = true },
  group = { group = true },
  start = { group = true, streams = true },
  count = false,
  timeout = false,
  replay_pending = { group = true, lists = true },
  convert = false,
  encoding = false,
  max_in_flight = false,
  max_in_flight_bytes = false,
  heartbeat_interval = { group = true },
  claim_timeout = { group = true },
  heartbeat_channel = { group = true },
  checkpoint = { streams = true },
  reliable = { lists = true },
  dead_letter = false,
  max_deliveries = { group = true },
}

-- Why a key does not apply to a kind, where "does not apply" says too little.
local WHY_NOT = {
  max_deliveries = "Redis counts deliveries only for a consumer group's pending entries",
}

-- source.dead_letter: a stream key, or { key = "...", maxlen = N }.
-- Returns { key =, maxlen = } (maxlen nil: no trimming) or nil.
local function dead_letter(ctx, v, keys)
  if v == nil then return nil end
  local out
  if type(v) == "string" then
    out = { key = nonempty_string(ctx, "source", "dead_letter", v) }
  elseif type(v) == "table" then
    check_keys(ctx, "source.dead_letter", v, { key = true, maxlen = true })
    if v.key == nil then bad(ctx, "source", "dead_letter", nil, "needs a key (the dead-letter stream)") end
    out = {
      key = nonempty_string(ctx, "dead_letter", "key", v.key),
      maxlen = positive_integer(ctx, "dead_letter", "maxlen", v.maxlen),
    }
  else
    bad(ctx, "source", "dead_letter", nil, "must be a stream key or { key = \"...\", maxlen = N }, got %s", got(v))
  end
  for _, k in ipairs(keys) do
    local name = k.name or k
    if name == out.key then
      bad(ctx, "source", "dead_letter", nil, "%q is one of the source's %s: dead letters would be "
        .. "read again", out.key, k.name and "streams" or "lists")
    end
  end
  return out
end

local KIND_NAMES = {
  group = "consumer-group source",
  streams = "streams source without a group",
  lists = "lists source",
}

local function check_source(ctx, src)
  if src == nil then missing(ctx, "source is required") end
  if type(src) ~= "table" then bad(ctx, nil, "source", nil, "must be a table, got %s", got(src)) end
  check_keys(ctx, "source", src, SOURCE_KEYS)

  local out = {}
  if src.lists ~= nil then
    if src.streams ~= nil then
      bad(ctx, "source", "lists", "source.streams and source.lists", "cannot be given together")
    end
    if src.group ~= nil then
      bad(ctx, "source", "group", nil, "needs source.streams (lists have no consumer groups)")
    end
    out.kind = "lists"
    out.lists = names(ctx, "source", "lists", src.lists)
  else
    if src.streams == nil then missing(ctx, "source.streams (or source.lists) is required") end
    out.group = nonempty_string(ctx, "source", "group", src.group)
    out.kind = out.group and "group" or "streams"
  end
  local kind = out.kind

  for k in pairs(src) do
    local kinds = SOURCE_KEYS[k]
    if kinds and not kinds[kind] and WHY_NOT[k] then
      bad(ctx, "source", k, nil, "does not apply to a %s: %s", KIND_NAMES[kind], WHY_NOT[k])
    elseif kinds and not kinds[kind] then
      bad(ctx, "source", k, nil, "does not apply to a %s", KIND_NAMES[kind])
    end
  end

  if kind ~= "lists" then
    local start = src.start
    if start ~= nil then start = stream_id(ctx, "source", "start", nil, start) end
    start = start or (kind == "group" and "0" or "$")
    local v = src.streams
    local streams = {}
    if type(v) == "table" and next(v) ~= nil and not array_length(v) then
      -- The map form { name = start_id }, in name order.
      local list = {}
      for name, id in pairs(v) do
        if type(name) ~= "string" or name == "" then
          bad(ctx, "source", "streams", nil,
            "must be a string, an array of names or a map { name = start_id }")
        end
        list[#list + 1] = name
      end
      sort(list)
      for i, name in ipairs(list) do
        streams[i] = {
          name = name,
          start = stream_id(ctx, "source", "streams", format("source.streams[%q]", name), v[name]),
        }
      end
    else
      for i, name in ipairs(names(ctx, "source", "streams", v)) do
        streams[i] = { name = name, start = start }
      end
    end
    out.streams = streams
  end

  out.count = positive_integer(ctx, "source", "count", src.count)
  out.timeout = seconds(ctx, "source", "timeout", src.timeout) or 0
  -- Redis blocks in milliseconds; below 1 ms is 0, which blocks forever. The
  -- epsilon keeps 0.29 s from flooring to 289 ms.
  out.block_ms = out.timeout < 0.001 and 0 or floor(out.timeout * 1000 + 1e-6)
  out.replay_pending = boolean(ctx, "source", "replay_pending", src.replay_pending)
  if out.replay_pending == nil then out.replay_pending = true end
  out.convert = boolean(ctx, "source", "convert", src.convert)
  if out.convert == nil then out.convert = true end
  out.encoding = encoding(ctx, nonempty_string(ctx, "source", "encoding", src.encoding) or "utf-8")
  out.max_in_flight = positive_integer(ctx, "source", "max_in_flight", src.max_in_flight)
  -- Bytes held in flight (ids and converted fields), besides their count:
  -- 25 messages of 2 MB are a lot more than 4096 of 100 bytes.
  out.max_in_flight_bytes = positive_integer(ctx, "source", "max_in_flight_bytes", src.max_in_flight_bytes)
    or M.DEFAULT_MAX_IN_FLIGHT_BYTES

  -- Every kind can dead-letter (host/dead_letter.h says how each lets go).
  out.dead_letter = dead_letter(ctx, src.dead_letter, out.streams or out.lists)

  if kind == "group" then
    local hb = positive_seconds(ctx, "source", "heartbeat_interval", src.heartbeat_interval)
    local claim = positive_seconds(ctx, "source", "claim_timeout", src.claim_timeout)
    if hb and claim and claim <= hb then
      bad(ctx, "source", "claim_timeout", nil,
        "(%s) must be longer than source.heartbeat_interval (%s): a live consumer would look dead between heartbeats",
        got(claim), got(hb))
    end
    -- Settings that would silently do nothing are errors, so that --check
    -- and a real start reach the same verdict.
    for _, k in ipairs { "claim_timeout", "heartbeat_channel" } do
      if src[k] ~= nil and not hb then
        bad(ctx, "source", k, nil, "does nothing without source.heartbeat_interval (claiming and the "
          .. "heartbeat channel need heartbeats): set heartbeat_interval, or remove %s", k)
      end
    end
    out.heartbeat_interval = hb
    out.claim_timeout = claim or (hb and 10 * hb)
    out.heartbeat_channel = nonempty_string(ctx, "source", "heartbeat_channel", src.heartbeat_channel)
      or out.group
    out.max_deliveries = positive_integer(ctx, "source", "max_deliveries", src.max_deliveries)
    if out.max_deliveries and not out.dead_letter then
      bad(ctx, "source", "max_deliveries", nil, "needs source.dead_letter (where a message delivered "
        .. "that many times goes): set dead_letter, or remove max_deliveries")
    end
  elseif kind == "streams" then
    out.checkpoint = nonempty_string(ctx, "source", "checkpoint", src.checkpoint)
  else
    out.reliable = boolean(ctx, "source", "reliable", src.reliable) or false
    if src.replay_pending ~= nil and not out.reliable then
      bad(ctx, "source", "replay_pending", nil, "does nothing for plain lists (popped items are not kept): "
        .. "it applies with source.reliable = true")
    end
  end
  return out
end

-- batch.timeout: seconds after a batch's first item; omitted, 0: at the end
-- of each read (so a quiet stream's message is never held back waiting for
-- a batch to fill: a user who writes only a size expects batches of up to
-- that size, not messages held for ever); false: only when full.
local function check_batch(ctx, b)
  if b == nil then return { size = 1000, timeout = 0 } end
  if type(b) ~= "table" then bad(ctx, nil, "batch", nil, "must be a table, got %s", got(b)) end
  check_keys(ctx, "batch", b, { size = true, timeout = true })
  local timeout = b.timeout
  if timeout == false then
    timeout = nil
  else
    if timeout ~= nil and type(timeout) ~= "number" then
      bad(ctx, "batch", "timeout", nil, "must be a number of seconds >= 0 or false (only when full), got %s",
        got(timeout))
    end
    timeout = seconds(ctx, "batch", "timeout", timeout) or 0
  end
  return {
    size = positive_integer(ctx, "batch", "size", b.size) or 1000,
    timeout = timeout,
  }
end

local function check_sinks(ctx, s)
  if s == nil then missing(ctx, "sink is required") end
  if type(s) == "function" then return { s } end
  if type(s) ~= "table" then
    bad(ctx, nil, "sink", nil, "must be a function or an array of functions, got %s", got(s))
  end
  local n = array_length(s)
  if not n then bad(ctx, nil, "sink", nil, "must be a function or a non-empty array of functions") end
  local out = {}
  for i = 1, n do
    if type(s[i]) ~= "function" then
      bad(ctx, nil, "sink", format("sink[%d]", i), "must be a function, got %s", got(s[i]))
    end
    out[i] = s[i]
  end
  return out
end

local function check_retry(ctx, r)
  if r == nil then return { initial = 0.5, max = 30 } end
  if type(r) ~= "table" then bad(ctx, nil, "retry", nil, "must be a table, got %s", got(r)) end
  check_keys(ctx, "retry", r, { initial = true, max = true, max_attempts = true })
  local out = {
    initial = positive_seconds(ctx, "retry", "initial", r.initial) or 0.5,
    max = positive_seconds(ctx, "retry", "max", r.max) or 30,
    -- nil: a sink's error is retried for ever (an outage's always is).
    max_attempts = positive_integer(ctx, "retry", "max_attempts", r.max_attempts),
  }
  if out.max < out.initial then
    bad(ctx, "retry", "max", nil, "(%s) must not be less than retry.initial (%s)", got(out.max), got(out.initial))
  end
  return out
end

-- An atomic sink (rsghost.sink.redis_list/redis_stream with atomic = true)
-- XACKs the batch in the script that writes it. That needs messages to
-- XACK (a consumer group), and no other sink: the batch would be acked
-- before the other sinks had it, and a crash then would lose it for them.
-- Its writes go to the Redis the source reads by construction (sinks reach
-- no other). Returns true when the script's sink acks its batches itself.
local function check_atomic(ctx, cfg)
  local sinks = package.loaded["rsghost.sink"]
  if sinks == nil then return nil end
  for i, fn in ipairs(cfg.sinks) do
    local name = sinks._atomic[fn]
    if name then
      local what = #cfg.sinks > 1 and format("sink[%d]", i) or nil
      if cfg.source.kind ~= "group" then
        bad(ctx, nil, "sink", what, "is %s, which acks each message with XACK in the script that writes "
          .. "it: that needs a consumer-group source (source.group), and a %s has nothing to XACK; "
          .. "remove atomic", name, KIND_NAMES[cfg.source.kind])
      end
      if #cfg.sinks > 1 then
        bad(ctx, nil, "sink", what, "is %s, which must be the script's only sink: it acks the batch as "
          .. "it writes it, before the other sinks have it, so a crash then would lose the batch for "
          .. "them; use it alone, or remove atomic", name)
      end
      return true
    end
  end
  return nil
end

-- Validate the table a script returned; returns the normalized cfg.
-- Exposed for the test kit, which may build scripts in memory; `path` is
-- used for messages and line lookups.
function M.validate(t, path)
  local ctx = { path = path, lines = read_lines(path) }
  if type(t) ~= "table" then
    fail(ctx, return_line(ctx), "script must return a table (got %s)", got(t))
  end
  check_keys(ctx, nil, t, TOP_KEYS)
  local cfg = { path = path }
  cfg.source = check_source(ctx, t.source)
  if t.preprocess == nil then missing(ctx, "preprocess is required") end
  if type(t.preprocess) ~= "function" then
    bad(ctx, nil, "preprocess", nil, "must be a function, got %s", got(t.preprocess))
  end
  cfg.preprocess = t.preprocess
  if t.init ~= nil and type(t.init) ~= "function" then
    bad(ctx, nil, "init", nil, "must be a function, got %s", got(t.init))
  end
  cfg.init = t.init
  cfg.batch = check_batch(ctx, t.batch)
  cfg.sinks = check_sinks(ctx, t.sink)
  cfg.retry = check_retry(ctx, t.retry)
  cfg.sink_acks = check_atomic(ctx, cfg)
  -- Used-up attempts end in bisection and dead letters; with nowhere to put
  -- a rejected message they could only be retried on, as without the
  -- setting, so a max_attempts that cannot take effect is refused here.
  if cfg.retry.max_attempts and not cfg.source.dead_letter then
    bad(ctx, "retry", "max_attempts", nil, "needs source.dead_letter (where the messages a sink keeps "
      .. "rejecting go): set dead_letter, or remove max_attempts")
  end

  local src, size = cfg.source, cfg.batch.size
  -- Without source.count a read still asks for about a batch, not all the
  -- room: while Lua works on one read the next is already on its way, and
  -- one huge read would leave Redis idle meanwhile (measured on the
  -- tutorial pipeline: ~20% more messages per second). The host and the
  -- test kit both size reads with this (rsgReadCount, host/rules.h).
  src.read_chunk = math.max(size, 1000)
  if src.max_in_flight == nil then
    src.max_in_flight = math.max(4096, 2 * size)
  elseif src.max_in_flight < size then
    bad(ctx, "source", "max_in_flight", nil, "(%d) must be at least batch.size (%d)", src.max_in_flight, size)
  end
  return cfg
end

-- Load, run and validate the pipeline script at `path`. opts.consumer is this
-- consumer's name, visible to the script as rsghost.consumer. Returns the
-- normalized cfg and sets rsghost.group; raises "path:LINE: reason".
-- The script's own directory goes first on package.path, so that
-- require "helpers" finds helpers.lua next to the script whatever the
-- current directory is (as Redis modules' and Fluent Bit's Lua users expect).
local function add_script_dir(path)
  local dir = path:match("^(.*)/[^/]*$") or "."
  if dir == "" then dir = "/" end
  local entry = dir .. "/?.lua;" .. dir .. "/?/init.lua;"
  if package.path:sub(1, #entry) ~= entry then package.path = entry .. package.path end
end

-- opts.log(level, msg): where rsghost.log goes while the script loads, when
-- no pipeline has claimed it yet (the host passes its own log).
function M.load(path, opts)
  rsghost.consumer = opts and opts.consumer or nil
  rsghost.group = nil
  if opts and opts.log and rsghost._state.host == nil then rsghost._state.host = { log = opts.log } end
  add_script_dir(path)
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end -- Lua's own message: "path:LINE: ..."
  -- rsghost.every at the script's top level registers here.
  local timers, prev_timers = {}, rsghost._state.timers
  rsghost._state.timers = timers
  local ok, ret = xpcall(chunk, function(e) return M.where(e, path, nil, 2) end)
  rsghost._state.timers = prev_timers
  if not ok then
    -- One line for the host's one-line report (require's "not found" list spans lines).
    error((ret:gsub("%s*\n%s*", " ")), 0)
  end
  local cfg = M.validate(ret, path)
  cfg.timers = timers
  rsghost.group = cfg.source.group
  return cfg
end

return M
