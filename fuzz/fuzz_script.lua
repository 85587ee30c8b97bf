-- The script checker (rsghost.script.validate) on arbitrary tables, for
-- fuzz_script.c. The fuzzer's bytes are read as edits to a script that
-- passes: which table (the script's, source, batch...), which key (mostly
-- one the checker knows, so that deep checks are reached, sometimes raw
-- bytes), and a value of any Lua type, including NaN, infinities, huge
-- numbers and nested tables.
--
-- Invariants: the checker either returns a normalized configuration that
-- the C host can read (every field lua_bridge.c's readSource requires, of
-- its type), or raises one line "path:LINE: reason" naming this script,
-- never another error.
local script = require "rsghost.script"

local M = {}

local KEYS = {
  "source", "preprocess", "batch", "sink", "retry", "init", "streams", "lists", "group", "start",
  "count", "timeout", "replay_pending", "convert", "encoding", "max_in_flight",
  "max_in_flight_bytes", "heartbeat_interval", "claim_timeout", "heartbeat_channel", "checkpoint",
  "reliable", "dead_letter", "max_deliveries", "key", "maxlen", "size", "initial", "max",
  "max_attempts", "name",
}
local STRINGS = {
  "orders", "payments", "0", "$", ">", "1-1", "0-0", "18446744073709551615-18446744073709551615",
  "1-", "-1", "utf-8", "latin-1", "utf-16", "no-such-encoding", "", "a(", "%", "[", "x%d",
  "billing-dead", "\0", "\255\254",
}
local NUMBERS = {
  0, 1, -1, 0.5, 1.5, 1e300, -1e300, 0 / 0, math.huge, -math.huge, 2 ^ 53, 2 ^ 63, 2 ^ 31,
  0.0001, 1e-300, 1000, 4096, 100000,
}

-- Where an edit goes, and the keys that belong there.
local PLACES = {
  { "top", { "source", "preprocess", "batch", "sink", "retry", "init" } },
  { "source", { "streams", "lists", "group", "start", "count", "timeout", "replay_pending",
    "convert", "encoding", "max_in_flight", "max_in_flight_bytes", "heartbeat_interval",
    "claim_timeout", "heartbeat_channel", "checkpoint", "reliable", "dead_letter",
    "max_deliveries" } },
  { "batch", { "size", "timeout" } },
  { "retry", { "initial", "max", "max_attempts" } },
  { "dead_letter", { "key", "maxlen" } },
  { "streams", { 1, 2, 3, "orders", "payments" } },
}

-- A script that passes: the edits start from it, so that most inputs
-- reach the checks past the first error.
local function template()
  local t = {
    source = { streams = { "orders" }, group = "billing", dead_letter = { key = "dead" } },
    preprocess = function() end,
    batch = { size = 10 },
    retry = {},
    sink = function() end,
  }
  return t, { top = t, source = t.source, batch = t.batch, retry = t.retry,
    dead_letter = t.source.dead_letter, streams = t.source.streams }
end

-- Builds a table from the bytes of s, a list of edits to the template;
-- path: the script the errors name.
function M.run(s, path)
  local pos = 0
  local function byte()
    pos = pos + 1
    return s:byte(pos) or 0
  end
  local function raw()
    local n = byte() % 12
    local out = s:sub(pos + 1, pos + n)
    pos = pos + n
    return out
  end
  local value
  local function tbl(depth)
    local t = {}
    local n = byte() % 8
    for _ = 1, n do
      local b = byte()
      local k
      if b < 200 then
        k = KEYS[b % #KEYS + 1]
      elseif b < 230 then
        k = (b % 4) + 1 -- array part
      elseif b < 250 then
        k = raw()
      else
        k = NUMBERS[byte() % #NUMBERS + 1]
        if k ~= k then k = 0.25 end -- NaN cannot be a key
      end
      t[k] = value(depth + 1)
    end
    return t
  end
  value = function(depth)
    local b = byte() % 10
    if b == 0 then return byte() % 2 == 0
    elseif b == 1 then return byte() - 128
    elseif b == 2 then return NUMBERS[byte() % #NUMBERS + 1]
    elseif b == 3 or b == 4 then return STRINGS[byte() % #STRINGS + 1]
    elseif b == 5 then return raw()
    elseif b == 6 then return function() end
    elseif b == 7 and depth < 5 then return tbl(depth)
    elseif b == 8 then return nil
    else return depth < 5 and tbl(depth) or "x"
    end
  end
  local t, at = template()
  for _ = 1, 32 do
    if pos >= #s then break end
    local op = byte()
    if op == 255 then
      t = value(0) -- not even a table
      break
    end
    local place = PLACES[op % #PLACES + 1]
    local target = at[place[1]]
    local keys = place[2]
    local k
    if op >= 224 then k = raw() else k = keys[byte() % #keys + 1] end
    if k ~= "" then target[k] = value(1) end
  end

  local ok, res = pcall(script.validate, t, path)
  if not ok then
    assert(type(res) == "string", "the checker raised a " .. type(res))
    local prefix = res:sub(1, #path + 1)
    assert(prefix == path .. ":" and res:sub(#path + 2):match("^%d+: "),
      "the checker's error does not name the script: " .. res)
    assert(not res:find("\n"), "the checker's error spans lines: " .. res)
    return
  end
  -- What readSource (host/lua_bridge.c) requires of a normalized source.
  local src = res.source
  assert(type(src) == "table", "no source")
  local kind = src.kind or "group"
  assert(kind == "group" or kind == "streams" or kind == "lists", "kind " .. tostring(kind))
  local keys = kind == "lists" and src.lists or src.streams
  assert(type(keys) == "table" and #keys > 0, "no keys")
  for _, k in ipairs(keys) do
    if kind == "lists" then
      assert(type(k) == "string", "a list name is not a string")
    else
      assert(type(k.name) == "string" and type(k.start) == "string", "stream without name or start")
    end
  end
  for field, want in pairs { block_ms = "number", convert = "boolean", encoding = "string",
    max_in_flight = "number", max_in_flight_bytes = "number", read_chunk = "number",
    replay_pending = "boolean" } do
    assert(type(src[field]) == want, "source." .. field .. " is " .. type(src[field]))
  end
  if kind == "group" then assert(type(src.group) == "string", "no group") end
  if kind == "lists" then assert(type(src.reliable) == "boolean", "no reliable") end
  assert(src.max_in_flight >= res.batch.size, "max_in_flight below batch.size")
  assert(type(res.preprocess) == "function" and #res.sinks > 0, "no preprocess or sinks")
end

return M
