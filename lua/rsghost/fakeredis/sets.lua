-- rsghost.fakeredis: sets (SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD).
--
-- Sets: { members = { m1, ... } (insertion order), map = { m = true },
-- intset = bool }. While every member is an integer (and there are at most
-- 512), Redis keeps an intset and lists it in numeric order.

local util = require "rsghost.fakeredis.util"

local ipairs, sort = ipairs, table.sort

local string2ll = util.string2ll

local M = {}
local command
M.commands, command = util.command_table()

local INTSET_MAX = 512

local function set_of(self, key)
  local e, err = self:typed(key, "set")
  if e == false then return false, err end
  return e
end

command("sadd", -3, function(self, argv, n)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then
    e = self:create(argv[2], "set", { members = {}, map = {}, intset = string2ll(argv[3]) ~= nil })
  end
  local s = e.value
  local added = 0
  for i = 3, n do
    local m = argv[i]
    if not s.map[m] then
      s.map[m] = true
      s.members[#s.members + 1] = m
      added = added + 1
      if s.intset and (string2ll(m) == nil or #s.members > INTSET_MAX) then s.intset = false end
    end
  end
  return added
end)

command("srem", -3, function(self, argv, n)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  local s = e.value
  local removed = 0
  for i = 3, n do
    local m = argv[i]
    if s.map[m] then
      s.map[m] = nil
      for k = 1, #s.members do
        if s.members[k] == m then
          table.remove(s.members, k)
          break
        end
      end
      removed = removed + 1
    end
  end
  self:drop_if_empty(argv[2], e, #s.members)
  return removed
end)

command("smembers", 2, function(self, argv)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return {} end
  local s = e.value
  local out = {}
  for i, m in ipairs(s.members) do out[i] = m end
  if s.intset then
    sort(out, function(a, b) return string2ll(a) < string2ll(b) end)
  end
  return out
end)

command("sismember", 3, function(self, argv)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  return (e and e.value.map[argv[3]]) and 1 or 0
end)

command("smismember", -3, function(self, argv, n)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  local out = {}
  for i = 3, n do
    out[i - 2] = (e and e.value.map[argv[i]]) and 1 or 0
  end
  return out
end)

command("scard", 2, function(self, argv)
  local e, err = set_of(self, argv[2])
  if e == false then return nil, err end
  return e and #e.value.members or 0
end)

return M
