-- What the specs of the sources share: the pipeline that
-- spec/integration/lists_source_spec.lua and streams_source_spec.lua run
-- (their own preprocess, one sink), the checks on what that sink wrote, and
-- the output of the tutorial's lists and streams examples.
--
--   local S = require "support.sources"
--   local path = S.script(t, 'lists = P .. ":l"', [[function(list, item) ... end]])
--   local h = H.start(t, { script = path, consumer = "c1" })
--   S.assert_exactly_once(want, S.wait_out(t, want, h))
local cjson = require "cjson"
local H = require "support.host"

local M = {}

-- The pipeline. {{SOURCE}} is the source table's contents, {{PREPROCESS}}
-- the preprocess function; it may log "preprocess-saw", which specs wait
-- for. The sink raises while the key P:fail exists; otherwise it pushes the
-- items (labels like "key id") onto P:out, then, from its {{HOLD_AT}}th
-- batch on and while the key P:hold exists, holds for up to 60 s (WAIT for a
-- replica the test server does not have: BLPOP is refused in a sink): a
-- crash then lands between the sink's write and the source's own
-- bookkeeping (the removal from a processing list, a checkpoint).
local SCRIPT = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { {{SOURCE}} },
  preprocess = {{PREPROCESS}},
  batch = { size = {{SIZE}}, timeout = {{TIMEOUT}} },
  retry = { initial = 0.05, max = 0.5 },
  sink = function(items)
    if rsghost.redis.call("EXISTS", P .. ":fail") == 1 then error("the database is down") end
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    local n = rsghost.redis.call("INCR", P .. ":batches")
    if n >= {{HOLD_AT}} and rsghost.redis.call("EXISTS", P .. ":hold") == 1 then
      rsghost.redis.call("WAIT", 1, 60000)
    end
  end,
}
]]

-- Writes the pipeline for t; returns its path. opts.size (default 20),
-- opts.timeout (the batch timeout, default 0.05 s), opts.hold_at (default 1).
function M.script(t, source, preprocess, opts)
  opts = opts or {}
  return H.script(t, SCRIPT, {
    SOURCE = source,
    PREPROCESS = preprocess,
    SIZE = opts.size or 20,
    TIMEOUT = opts.timeout or "0.05",
    HOLD_AT = opts.hold_at or 1,
  })
end

-- The arrays given, one after the other, in one new array.
function M.concat(...)
  local out = {}
  for _, list in ipairs { ... } do
    for _, v in ipairs(list) do out[#out + 1] = v end
  end
  return out
end

-- The labels ("key ...") of key only, in order.
function M.only(labels, key)
  local res = {}
  for _, item in ipairs(labels) do
    if item:sub(1, #key + 1) == key .. " " then res[#res + 1] = item end
  end
  return res
end

-- Waits until the sink's list holds every label of want (at least once);
-- returns the list.
function M.wait_out(t, want, h, timeout)
  local out
  H.eventually(function()
    out = H.list(t.redis, t.prefix .. ":out")
    return #H.compare(want, out).missing == 0
  end, timeout or 60, function()
    local c = H.compare(want, out or {})
    return string.format("%d of %d labels still missing (first: %s)\n%s", #c.missing, #want,
      tostring(c.missing[1]), h:describe())
  end)
  return out
end

-- Asserts that got holds each of want exactly once and nothing else.
M.assert_exactly_once = H.assert_exactly_once

-- The first line of h's log containing all of the plain strings given, or nil.
function M.log_line_with(h, ...)
  local needles = { ... }
  for _, line in ipairs(h:log_lines()) do
    local all = true
    for _, s in ipairs(needles) do
      if not line:find(s, 1, true) then all = false break end
    end
    if all then return line end
  end
  return nil
end

-- What examples/lists-consumer.lua and streams-consumer.lua wrote: the JSON
-- lines in preprocessed-data (entries are newline-joined batches), decoded.
function M.preprocessed_data(r)
  local out = {}
  for _, entry in ipairs(H.list(r, "preprocessed-data")) do
    for line in entry:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  end
  return out
end

return M
