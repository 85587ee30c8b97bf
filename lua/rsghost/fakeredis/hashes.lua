-- rsghost.fakeredis: hashes (HSET HMSET HSETNX HGET HMGET HGETALL HKEYS HVALS
-- HDEL HEXISTS HINCRBY HLEN).
--
-- Hashes: { fields = { f1, f2, ... } (insertion order), map = { f = v } }

local util = require "rsghost.fakeredis.util"

local ipairs = ipairs

local I64, LLONG_MAX, LLONG_MIN = util.I64, util.LLONG_MAX, util.LLONG_MIN
local NOT_INTEGER, OVERFLOW = util.NOT_INTEGER, util.OVERFLOW
local arity_error, string2ll, int_string, int_reply = util.arity_error, util.string2ll, util.int_string, util.int_reply

local M = {}
local command
M.commands, command = util.command_table()

local function hash_of(self, key, create)
  local e, err = self:typed(key, "hash")
  if e == false then return false, err end
  if e == nil and create then e = self:create(key, "hash", { fields = {}, map = {} }) end
  return e
end

-- Sets field; returns true when it is new.
local function hash_set(h, field, value)
  local new = h.map[field] == nil
  if new then h.fields[#h.fields + 1] = field end
  h.map[field] = value
  return new
end

local function hash_del(h, field)
  if h.map[field] == nil then return false end
  h.map[field] = nil
  local fields = h.fields
  for i = 1, #fields do
    if fields[i] == field then
      table.remove(fields, i)
      break
    end
  end
  return true
end

local function hset(reply_count)
  return function(self, argv, n)
    if n % 2 == 1 then return nil, arity_error(reply_count and "hset" or "hmset") end
    local e, err = hash_of(self, argv[2], true)
    if e == false then return nil, err end
    local created = 0
    for i = 3, n, 2 do
      if hash_set(e.value, argv[i], argv[i + 1]) then created = created + 1 end
    end
    if reply_count then return created end
    return "OK"
  end
end

command("hset", -4, hset(true))
command("hmset", -4, hset(false))

command("hsetnx", 4, function(self, argv)
  local e, err = hash_of(self, argv[2], true)
  if e == false then return nil, err end
  if e.value.map[argv[3]] ~= nil then return 0 end
  hash_set(e.value, argv[3], argv[4])
  return 1
end)

command("hget", 3, function(self, argv)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  return e and e.value.map[argv[3]]
end)

command("hmget", -3, function(self, argv, n)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  local out = {}
  for i = 3, n do
    out[i - 2] = e and e.value.map[argv[i]] or false
  end
  return out
end)

local function hash_list(keys, values)
  return function(self, argv)
    local e, err = hash_of(self, argv[2])
    if e == false then return nil, err end
    local out = {}
    if e then
      local h = e.value
      for _, f in ipairs(h.fields) do
        if keys then out[#out + 1] = f end
        if values then out[#out + 1] = h.map[f] end
      end
    end
    return out
  end
end

command("hgetall", 2, hash_list(true, true))
command("hkeys", 2, hash_list(true, false))
command("hvals", 2, hash_list(false, true))

command("hdel", -3, function(self, argv, n)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  local removed = 0
  for i = 3, n do
    if hash_del(e.value, argv[i]) then removed = removed + 1 end
  end
  self:drop_if_empty(argv[2], e, #e.value.fields)
  return removed
end)

command("hexists", 3, function(self, argv)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  return (e and e.value.map[argv[3]] ~= nil) and 1 or 0
end)

command("hlen", 2, function(self, argv)
  local e, err = hash_of(self, argv[2])
  if e == false then return nil, err end
  return e and #e.value.fields or 0
end)

command("hincrby", 4, function(self, argv)
  local incr = string2ll(argv[4])
  if incr == nil then return nil, NOT_INTEGER end
  local e, err = hash_of(self, argv[2], true)
  if e == false then return nil, err end
  local h = e.value
  local old = I64(0)
  local current = h.map[argv[3]]
  if current ~= nil then
    old = string2ll(current)
    if old == nil then return nil, "ERR hash value is not an integer" end
  end
  if (incr < 0 and old < 0 and incr < LLONG_MIN - old) or (incr > 0 and old > 0 and incr > LLONG_MAX - old) then
    return nil, OVERFLOW
  end
  local v = old + incr
  hash_set(h, argv[3], int_string(v))
  return int_reply(v)
end)

return M
