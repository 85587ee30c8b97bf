-- Ready-made sinks, mirroring the library's own (rsghost.sink.*). Each
-- constructor returns a function usable as a script's `sink`.
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

-- All items of a batch pushed onto the list `key` with ONE command: RPUSH
-- (arrival order at the tail), or LPUSH with opts.right = false. Items must
-- be strings or numbers.
function M.redis_list(key, opts)
  local name = format("rsghost.sink.redis_list(%q)", tostring(key))
  if type(key) ~= "string" or key == "" then
    error("rsghost.sink.redis_list: key must be a non-empty string", 2)
  end
  opts = check_opts("rsghost.sink.redis_list", opts, { right = true })
  if opts.right ~= nil and type(opts.right) ~= "boolean" then
    error("rsghost.sink.redis_list: right must be true or false", 2)
  end
  local cmd = opts.right == false and "LPUSH" or "RPUSH"
  local where = created_at()
  local command = rsghost._command
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
  opts = check_opts("rsghost.sink.redis_stream", opts, { maxlen = true, approximate = true })
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
  return function(items)
    local n = #items
    local cmds = new_table(n, 0)
    for i = 1, n do
      local item = items[i]
      local argv = new_table(nhead + 2, 0)
      for j = 1, nhead do argv[j] = head[j] end
      local k = nhead
      if type(item) == "table" then
        for field, value in pairs(item) do
          argv[k + 1], argv[k + 2] = field, value
          k = k + 2
        end
        if k == nhead then error(format("%s: %s: item %d is an empty table", where, name, i), 0) end
      else
        argv[k + 1], argv[k + 2] = "data", item
      end
      cmds[i] = argv
    end
    local replies, err = pipeline(cmds)
    if err ~= nil then error(format("%s: %s: %s", where, name, err), 0) end
    return replies
  end
end

-- rsghost.sink.http and rsghost.sink.postgres live in rsghost.sink_net,
-- with this file's helpers, so that the error of either names the script line.
require("rsghost.sink_net").install(M, created_at, check_opts)

return M
