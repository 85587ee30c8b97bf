-- rsghost.fakeredis: lists (LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LRANGE LLEN
-- LINDEX LREM LTRIM LSET).
--
-- Lists: an array, head at index 1

local util = require "rsghost.fakeredis.util"

local NOT_INTEGER, arity_error, string2ll = util.NOT_INTEGER, util.arity_error, util.string2ll

local M = {}
local command
M.commands, command = util.command_table()

local function push(left, only_existing)
  return function(self, argv, n)
    local e, err = self:typed(argv[2], "list")
    if e == false then return nil, err end
    if e == nil then
      if only_existing then return 0 end
      e = self:create(argv[2], "list", {})
    end
    local list = e.value
    for i = 3, n do
      if left then table.insert(list, 1, argv[i]) else list[#list + 1] = argv[i] end
    end
    return #list
  end
end

command("lpush", -3, push(true, false))
command("rpush", -3, push(false, false))
command("lpushx", -3, push(true, true))
command("rpushx", -3, push(false, true))

local function pop(left)
  return function(self, argv, n)
    if n > 3 then return nil, arity_error(left and "lpop" or "rpop") end
    local has_count = n == 3
    local count = 0
    if has_count then
      count = string2ll(argv[3])
      if count == nil or count < 0 then return nil, "ERR value is out of range, must be positive" end
    end
    local e, err = self:typed(argv[2], "list")
    if e == false then return nil, err end
    if e == nil then return nil end
    if has_count and count == 0 then return {} end
    local list = e.value
    local take = has_count and math.min(tonumber(count), #list) or 1
    local out = {}
    for i = 1, take do
      out[i] = left and table.remove(list, 1) or table.remove(list)
    end
    self:drop_if_empty(argv[2], e, #list)
    if has_count then return out end
    return out[1]
  end
end

command("lpop", -2, pop(true))
command("rpop", -2, pop(false))

-- Redis' index conventions: start/end may be negative (from the tail).
-- Returns the 1-based inclusive range, or nil when empty.
local function clamp_range(len, start, stop)
  if start < 0 then start = len + start end
  if stop < 0 then stop = len + stop end
  if start < 0 then start = 0 end
  if start > stop or start >= len then return nil end
  if stop >= len then stop = len - 1 end
  return start + 1, stop + 1
end

local function long_arg(s)
  local v = string2ll(s)
  if v == nil then return nil end
  return tonumber(v)
end

command("lrange", 4, function(self, argv)
  local start, stop = long_arg(argv[3]), long_arg(argv[4])
  if start == nil or stop == nil then return nil, NOT_INTEGER end
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return {} end
  local list = e.value
  local from, to = clamp_range(#list, start, stop)
  local out = {}
  if from then
    for i = from, to do out[#out + 1] = list[i] end
  end
  return out
end)

command("llen", 2, function(self, argv)
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  return e and #e.value or 0
end)

command("lindex", 3, function(self, argv)
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return nil end
  local index = long_arg(argv[3])
  if index == nil then return nil, NOT_INTEGER end
  local list = e.value
  if index < 0 then index = #list + index end
  return list[index + 1]
end)

command("lset", 4, function(self, argv)
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return nil, "ERR no such key" end
  local index = long_arg(argv[3])
  if index == nil then return nil, NOT_INTEGER end
  local list = e.value
  if index < 0 then index = #list + index end
  if index < 0 or index >= #list then return nil, "ERR index out of range" end
  list[index + 1] = argv[4]
  return "OK"
end)

command("lrem", 4, function(self, argv)
  local count = long_arg(argv[3])
  if count == nil then return nil, NOT_INTEGER end
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return 0 end
  local list, value = e.value, argv[4]
  local limit = count == 0 and math.huge or math.abs(count)
  local removed = 0
  if count >= 0 then
    local i = 1
    while i <= #list and removed < limit do
      if list[i] == value then
        table.remove(list, i)
        removed = removed + 1
      else
        i = i + 1
      end
    end
  else
    local i = #list
    while i >= 1 and removed < limit do
      if list[i] == value then
        table.remove(list, i)
        removed = removed + 1
      end
      i = i - 1
    end
  end
  self:drop_if_empty(argv[2], e, #list)
  return removed
end)

command("ltrim", 4, function(self, argv)
  local start, stop = long_arg(argv[3]), long_arg(argv[4])
  if start == nil or stop == nil then return nil, NOT_INTEGER end
  local e, err = self:typed(argv[2], "list")
  if e == false then return nil, err end
  if e == nil then return "OK" end
  local list = e.value
  local from, to = clamp_range(#list, start, stop)
  local kept = {}
  if from then
    for i = from, to do kept[#kept + 1] = list[i] end
  end
  e.value = kept
  self:drop_if_empty(argv[2], e, #kept)
  return "OK"
end)

return M
