-- Ready-made sinks, mirroring the library's own (rsghost.sink.*). Each
-- constructor returns a function usable as a script's `sink`: Redis lists
-- and streams (atomic = true: the batch's writes and its XACK in one
-- script), and files (written off the loop through host.file_append).
--
-- A failing command raises an error that names the sink and the script line
-- that created it, which is where a user looks first ("script.lua:25:
-- rsghost.sink.redis_list(\"out\"): WRONGTYPE ..."), rather than a line in
-- this file.

local rsghost = require "rsghost"

local type, pairs, error, tostring, format = type, pairs, error, tostring, string.format
local getinfo = debug.getinfo

local ok, new_table = pcall(require, "table.new")
if not ok then new_table = function() return {} end end

local M = {}

-- The atomic sinks made so far (function -> its name for messages):
-- rsghost.script checks at load that such a sink can be atomic (a
-- consumer-group source, the script's only sink), and the pipeline then
-- leaves the batch's XACK to it.
M._atomic = setmetatable({}, { __mode = "k" })

----------------------------------------------------------------------------
-- Atomic sinks: the batch's writes and its XACK in one server-side script.
--
-- Each message is XACKed on its own and its item written only when that
-- XACK removed a pending entry (returned 1). A message is pending once, so
-- it is written once: a batch whose script ran is acked and never replayed
-- after a crash; a batch whose script did not run is still pending and is
-- replayed whole; a message another consumer claimed and already wrote is
-- acked already and skipped here. Redis runs the script whole, and a
-- script is not rolled back on an error half-way, so everything that could
-- fail (the target's type) is checked before the first XACK.
--
-- KEYS[1] the target, KEYS[1 + i] the stream of item i; ARGV[1] the group,
-- then per item: the message id, the number of values k, the k values. For
-- a list the values are the item (k = 1); for a stream its fields and
-- values, after ARGV[2] (the count h of XADD options) and ARGV[3..2+h].
-- Returns the number of items written.

local ATOMIC_LIST = [[
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'list' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. t .. ', not a list; nothing written or acked')
end
local group, a, out, n = ARGV[1], 2, {}, 0
for i = 2, #KEYS do
  if redis.call('XACK', KEYS[i], group, ARGV[a]) == 1 then
    n = n + 1
    out[n] = ARGV[a + 2]
  end
  a = a + 2 + tonumber(ARGV[a + 1])
  if #out == 1000 then
    redis.call(']] .. "%s" .. [[', KEYS[1], unpack(out))
    out = {}
  end
end
if #out > 0 then redis.call(']] .. "%s" .. [[', KEYS[1], unpack(out)) end
return n
]]

local ATOMIC_STREAM = [[
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'stream' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. t .. ', not a stream; nothing written or acked')
end
local group, h, n = ARGV[1], tonumber(ARGV[2]), 0
local a = 3 + h
for i = 2, #KEYS do
  local k = tonumber(ARGV[a + 1])
  if redis.call('XACK', KEYS[i], group, ARGV[a]) == 1 then
    local argv = { 'XADD', KEYS[1] }
    for j = 1, h do argv[2 + j] = ARGV[2 + j] end
    for j = 1, k do argv[2 + h + j] = ARGV[a + 1 + j] end
    redis.call(unpack(argv))
    n = n + 1
  end
  a = a + 2 + k
end
return n
]]

-- "path:LINE" of the script line calling the constructor (level 3: the
-- constructor's caller).
local function created_at()
  local info = getinfo(3, "Sl")
  if not info or info.currentline <= 0 then return "?" end
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return format("%s:%d", src, info.currentline)
end

local function check_opts(name, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(format("%s: options must be a table, got %s", name, type(opts)), 3) end
  for k in pairs(opts) do
    if not known[k] then error(format("%s: unknown option %q", name, tostring(k)), 3) end
  end
  return opts
end

-- For rsghost.testing, which plays the atomic script's part itself (its
-- fed messages are in no pending list): an atomic sink's EVAL taken apart,
-- { cmd = "RPUSH" | "LPUSH" | "XADD", key =, head = { XADD options },
-- entries = { { stream =, id =, values = { ... } }, ... } }, or nil for any
-- other command. argv as sent (strings).
function M._atomic_parse(argv)
  if argv[1] ~= "EVAL" then return nil end
  local body, cmd = argv[2], nil
  if body == ATOMIC_STREAM then
    cmd = "XADD"
  elseif body == format(ATOMIC_LIST, "RPUSH", "RPUSH") then
    cmd = "RPUSH"
  elseif body == format(ATOMIC_LIST, "LPUSH", "LPUSH") then
    cmd = "LPUSH"
  else
    return nil
  end
  local nkeys = tonumber(argv[3])
  local base = 3 + nkeys -- ARGV[i] is argv[base + i]
  local out = { cmd = cmd, key = argv[4], head = {}, entries = {} }
  local a = 2
  if cmd == "XADD" then
    local h = tonumber(argv[base + 2])
    for j = 1, h do out.head[j] = argv[base + 2 + j] end
    a = 3 + h
  end
  for i = 2, nkeys do
    local k = tonumber(argv[base + a + 1])
    local values = {}
    for j = 1, k do values[j] = argv[base + a + 1 + j] end
    out.entries[i - 1] = { stream = argv[3 + i], id = argv[base + a], values = values }
    a = a + 2 + k
  end
  return out
end

-- All items of a batch pushed onto the list `key` with ONE command: RPUSH
-- (arrival order at the tail), or LPUSH with opts.right = false. Items must
-- be strings or numbers.
function M.redis_list(key, opts)
  local name = format("rsghost.sink.redis_list(%q)", tostring(key))
  if type(key) ~= "string" or key == "" then
    error("rsghost.sink.redis_list: key must be a non-empty string", 2)
  end
  opts = check_opts("rsghost.sink.redis_list", opts, { right = true, atomic = true })
  if opts.right ~= nil and type(opts.right) ~= "boolean" then
    error("rsghost.sink.redis_list: right must be true or false", 2)
  end
  if opts.atomic ~= nil and type(opts.atomic) ~= "boolean" then
    error("rsghost.sink.redis_list: atomic must be true or false", 2)
  end
  local cmd = opts.right == false and "LPUSH" or "RPUSH"
  local where = created_at()
  local command = rsghost._command
  if opts.atomic then
    name = format("rsghost.sink.redis_list(%q, { atomic = true })", key)
    local body = format(ATOMIC_LIST, cmd, cmd)
    local fn = function(items, meta)
      local n = #items
      local streams, ids = meta.streams, meta.ids
      local argv = new_table(5 + 4 * n, 0)
      argv[1], argv[2], argv[3], argv[4] = "EVAL", body, n + 1, key
      for i = 1, n do argv[4 + i] = streams[i] end
      local a = 5 + n
      argv[a] = meta.group
      for i = 1, n do
        local item = items[i]
        local t = type(item)
        if t ~= "string" and t ~= "number" then
          error(format("%s: %s: item %d must be a string or a number, got %s", where, name, i, t), 0)
        end
        argv[a + 1], argv[a + 2], argv[a + 3] = ids[i], "1", item
        a = a + 3
      end
      local reply, err = command(argv)
      if err ~= nil then error(format("%s: %s: %s", where, name, err), 0) end
      return reply
    end
    M._atomic[fn] = name
    return fn
  end
  return function(items)
    local n = #items
    local argv = new_table(n + 2, 0)
    argv[1], argv[2] = cmd, key
    for i = 1, n do argv[i + 2] = items[i] end
    local reply, err = command(argv)
    if err ~= nil then
      -- Argument k of the command is item k - 2 of the batch.
      local k, rest = err:match("^argument #(%d+) (must be .*)$")
      if k then err = format("item %d %s", k - 2, rest) end
      error(format("%s: %s: %s", where, name, err), 0)
    end
    return reply
  end
end

-- An item's fields into argv after position k, as XADD takes them: a
-- table's pairs, or any other item as the field data. Returns the position
-- of the last one written. where and name word the error for item i.
local function put_fields(argv, k, item, i, where, name)
  if type(item) ~= "table" then
    argv[k + 1], argv[k + 2] = "data", item
    return k + 2
  end
  local at = k
  for field, value in pairs(item) do
    argv[k + 1], argv[k + 2] = field, value
    k = k + 2
  end
  if k == at then error(format("%s: %s: item %d is an empty table", where, name, i), 0) end
  return k
end

-- Each item appended to the stream `key` with its own XADD, all sent at once:
-- a table item gives its fields, any other item is stored as the field
-- "data". opts.maxlen caps the stream (MAXLEN ~ n; approximate = false for an
-- exact cap). Approximate trimming removes whole stream nodes only (100
-- entries by default), so a small cap (maxlen = 5) trims nothing until the
-- stream outgrows a node: use approximate = false when the exact size matters.
function M.redis_stream(key, opts)
  local name = format("rsghost.sink.redis_stream(%q)", tostring(key))
  if type(key) ~= "string" or key == "" then
    error("rsghost.sink.redis_stream: key must be a non-empty string", 2)
  end
  opts = check_opts("rsghost.sink.redis_stream", opts, { maxlen = true, approximate = true, atomic = true })
  if opts.atomic ~= nil and type(opts.atomic) ~= "boolean" then
    error("rsghost.sink.redis_stream: atomic must be true or false", 2)
  end
  local maxlen, approximate = opts.maxlen, opts.approximate
  if maxlen ~= nil and (type(maxlen) ~= "number" or maxlen < 0 or maxlen ~= math.floor(maxlen)) then
    error("rsghost.sink.redis_stream: maxlen must be an integer >= 0", 2)
  end
  if approximate ~= nil and type(approximate) ~= "boolean" then
    error("rsghost.sink.redis_stream: approximate must be true or false", 2)
  end
  -- The command's head, copied into each XADD.
  local head = { "XADD", key }
  if maxlen then
    head[#head + 1] = "MAXLEN"
    if approximate ~= false then head[#head + 1] = "~" end
    head[#head + 1] = format("%d", maxlen)
  end
  head[#head + 1] = "*"
  local nhead = #head
  local where = created_at()
  local pipeline = rsghost._pipeline
  if opts.atomic then
    name = format("rsghost.sink.redis_stream(%q, { atomic = true })", key)
    local command = rsghost._command
    local fn = function(items, meta)
      local n = #items
      local streams, ids = meta.streams, meta.ids
      local argv = new_table(8 + 6 * n, 0)
      argv[1], argv[2], argv[3], argv[4] = "EVAL", ATOMIC_STREAM, n + 1, key
      for i = 1, n do argv[4 + i] = streams[i] end
      local a = 5 + n
      -- ARGV[2..]: XADD's arguments between the key and the fields ("*" last).
      argv[a], argv[a + 1] = meta.group, nhead - 2
      a = a + 1
      for j = 3, nhead do
        a = a + 1
        argv[a] = head[j]
      end
      for i = 1, n do
        local item = items[i]
        argv[a + 1] = ids[i]
        local at = a + 2
        local k = put_fields(argv, at, item, i, where, name)
        argv[at] = k - at
        a = k
      end
      local reply, err = command(argv)
      if err ~= nil then error(format("%s: %s: %s", where, name, err), 0) end
      return reply
    end
    M._atomic[fn] = name
    return fn
  end
  return function(items)
    local n = #items
    local cmds = new_table(n, 0)
    for i = 1, n do
      local item = items[i]
      local argv = new_table(nhead + 2, 0)
      for j = 1, nhead do argv[j] = head[j] end
      put_fields(argv, nhead, item, i, where, name)
      cmds[i] = argv
    end
    local replies, err = pipeline(cmds)
    if err ~= nil then error(format("%s: %s: %s", where, name, err), 0) end
    return replies
  end
end

-- Each item appended to the file at `path` as one line (the batch in one
-- write), created if missing. The write, and the fsync (unless opts.fsync
-- is false), run on libuv's threadpool, never on the loop, and the sink
-- returns (so its batch is acked) only after they did: a batch that was
-- acked is on disk. The host reopens the file on SIGHUP and when the path
-- names another file than the one open (moved away by log rotation).
-- Items must be strings (or numbers); a table is an error that says to
-- encode it. A write that fails raises: the batch is retried whole (so its
-- lines may be written twice after a failure half-way: at least once).
function M.file(path, opts)
  if type(path) ~= "string" or path == "" then
    error("rsghost.sink.file: path must be a non-empty string", 2)
  end
  local name = format("rsghost.sink.file(%q)", path)
  opts = check_opts("rsghost.sink.file", opts, { fsync = true })
  if opts.fsync ~= nil and type(opts.fsync) ~= "boolean" then
    error("rsghost.sink.file: fsync must be true or false", 2)
  end
  local req_fsync = opts.fsync ~= false
  local where = created_at()
  local request, concat = rsghost._request, table.concat
  return function(items)
    local n = #items
    if n == 0 then return end
    local lines = new_table(n + 1, 0)
    for i = 1, n do
      local item = items[i]
      local t = type(item)
      if t == "number" then
        item = tostring(item)
      elseif t ~= "string" then
        error(format("%s: %s: item %d is a %s, but each item becomes a line of text: return a string "
          .. "from preprocess (cjson.encode(t) for a table)", where, name, i, t), 0)
      end
      lines[i] = item
    end
    lines[n + 1] = ""
    local ok, err = request("rsghost.sink.file", "file_append",
      { path = path, data = concat(lines, "\n"), fsync = req_fsync })
    if not ok then error(format("%s: %s: %s", where, name, tostring(err)), 0) end
  end
end

-- rsghost.sink.http and rsghost.sink.postgres live in rsghost.sink_net,
-- with this file's helpers, so that the error of either names the script line.
require("rsghost.sink_net").install(M, created_at, check_opts)

return M
