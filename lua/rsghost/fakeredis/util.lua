-- What every command family of rsghost.fakeredis shares: Redis' error
-- replies, numbers parsed and printed as Redis does, glob patterns, and the
-- table a family fills with its commands. It is a module of its own, not a
-- part of rsghost.fakeredis, because the families need it and
-- rsghost.fakeredis needs the families: requiring the core from a family
-- would be a require loop.

local ffi = require "ffi"

local tostring, byte, sub, format = tostring, string.byte, string.sub, string.format

local M = {}

local I64 = ffi.typeof("int64_t")
local U64 = ffi.typeof("uint64_t")
local LLONG_MAX = 0x7fffffffffffffffLL
local LLONG_MIN = -0x7fffffffffffffffLL - 1
local U64_MAX = 0xffffffffffffffffULL
M.I64, M.U64, M.LLONG_MAX, M.LLONG_MIN, M.U64_MAX = I64, U64, LLONG_MAX, LLONG_MIN, U64_MAX

-- Redis' error replies, as the server words them.
local WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
local NOT_INTEGER = "ERR value is not an integer or out of range"
local SYNTAX = "ERR syntax error"
local OVERFLOW = "ERR increment or decrement would overflow"
M.WRONGTYPE, M.NOT_INTEGER, M.SYNTAX, M.OVERFLOW = WRONGTYPE, NOT_INTEGER, SYNTAX, OVERFLOW

function M.arity_error(name)
  return format("ERR wrong number of arguments for '%s' command", name)
end

----------------------------------------------------------------------------
-- Numbers, parsed and printed as Redis does (util.c string2ll, string2ull)

-- The int64 a string holds in Redis' strict sense (no spaces, no '+', no
-- leading zeros, within 64 bits), or nil.
local function string2ll(s)
  local n = #s
  if n == 0 or n >= 21 then return nil end
  if s == "0" then return I64(0) end
  local neg = byte(s, 1) == 45
  local digits = neg and sub(s, 2) or s
  if not digits:find("^[1-9]%d*$") then return nil end
  local v = U64(0)
  for i = 1, #digits do
    local d = byte(digits, i) - 48
    if v > U64_MAX / 10 then return nil end
    v = v * 10
    if v > U64_MAX - d then return nil end
    v = v + d
  end
  if neg then
    if v > 0x8000000000000000ULL then return nil end
    return -ffi.cast(I64, v)
  end
  if v > 0x7fffffffffffffffULL then return nil end
  return ffi.cast(I64, v)
end

-- An unsigned 64-bit number for stream ids: string2ll when that works and is
-- not negative, else what strtoull accepts (leading spaces, a sign, leading
-- zeros; a '-' wraps around, as in C).
local function string2ull(s)
  local ll = string2ll(s)
  if ll ~= nil then
    if ll < 0 then return nil end
    return ffi.cast(U64, ll)
  end
  local sign, digits = s:match("^[ \t\n\v\f\r]*([+-]?)(%d+)$")
  if not digits then return nil end
  local v = U64(0)
  for i = 1, #digits do
    local d = byte(digits, i) - 48
    if v > U64_MAX / 10 then return nil end
    v = v * 10
    if v > U64_MAX - d then return nil end
    v = v + d
  end
  if sign == "-" then v = -v end
  return v
end

-- "123" for 123LL / 123ULL.
local function int_string(x)
  return (tostring(x):gsub("U?LL$", ""))
end

-- An integer reply: a Lua number, as the host converts it.
local function int_reply(x)
  return tonumber(x)
end
M.string2ll, M.string2ull, M.int_string, M.int_reply = string2ll, string2ull, int_string, int_reply

----------------------------------------------------------------------------
-- Glob-style patterns (util.c stringmatchlen), for KEYS

local function match_impl(pat, p, pl, str, s, sl, state)
  while pl > 0 and sl > 0 do
    local c = byte(pat, p)
    if c == 42 then -- '*'
      while pl > 0 and byte(pat, p + 1) == 42 do
        p, pl = p + 1, pl - 1
      end
      if pl == 1 then return true end
      while sl > 0 do
        if match_impl(pat, p + 1, pl - 1, str, s, sl, state) then return true end
        if state.skip then return false end
        s, sl = s + 1, sl - 1
      end
      state.skip = true
      return false
    elseif c == 63 then -- '?'
      s, sl = s + 1, sl - 1
    elseif c == 91 then -- '['
      p, pl = p + 1, pl - 1
      local negate = byte(pat, p) == 94
      if negate then p, pl = p + 1, pl - 1 end
      local matched = false
      local sc = byte(str, s)
      while true do
        local pc = byte(pat, p)
        if pc == 92 and pl >= 2 then -- '\\'
          p, pl = p + 1, pl - 1
          if byte(pat, p) == sc then matched = true end
        elseif pc == 93 then -- ']'
          break
        elseif pl == 0 then
          p, pl = p - 1, pl + 1
          break
        elseif pl >= 3 and byte(pat, p + 1) == 45 then -- a range 'a-z'
          local lo, hi = pc, byte(pat, p + 2)
          if lo > hi then lo, hi = hi, lo end
          p, pl = p + 2, pl - 2
          if sc >= lo and sc <= hi then matched = true end
        elseif pc == sc then
          matched = true
        end
        p, pl = p + 1, pl - 1
      end
      if negate then matched = not matched end
      if not matched then return false end
      s, sl = s + 1, sl - 1
    else
      if c == 92 and pl >= 2 then p, pl = p + 1, pl - 1 end
      if byte(pat, p) ~= byte(str, s) then return false end
      s, sl = s + 1, sl - 1
    end
    p, pl = p + 1, pl - 1
    if sl == 0 then
      while byte(pat, p) == 42 do
        p, pl = p + 1, pl - 1
      end
      break
    end
  end
  return pl == 0 and sl == 0
end

local function glob_match(pattern, s)
  return match_impl(pattern, 1, #pattern, s, 1, #s, { skip = false })
end
M.glob_match = glob_match

----------------------------------------------------------------------------
-- Command tables

-- A family's commands, name -> { arity = n, fn = function(self, argv, n) },
-- and the function that adds one. fn returns the reply, or nil, err; arity
-- is Redis' (negative: at least that many arguments, the name included).
--
--   local commands, command = util.command_table()
--   command("get", 2, function(self, argv) ... end)
function M.command_table()
  local commands = {}
  return commands, function(name, arity, fn)
    commands[name] = { arity = arity, fn = fn }
  end
end

return M
