-- Conformance of the test kit (rsghost.testing) with the host: one script and
-- one set of messages, run once by the real binary against redis-server and
-- once by the kit against its in-memory Redis, each described by a record
-- that the spec compares field by field.
--
--   local C = require "support.conformance"
--   local host, kit, run = C.run {
--     script = [[ ... {{P}} ... ]],      -- sinks RPUSH cjson.encode(items) to P:sink<i>
--     messages = function(P) return { { P .. ":s", { "n", "1" } }, ... } end,
--     consumer = "c1",                    -- optional
--   }
--   C.assert_same(host, kit, run)
--
-- Determinism. Every message is in Redis before the host starts (a waiting
-- backlog); scripts use batch.timeout = 0 or false, never wall-clock
-- batching. How the host cut that backlog into reads depends on its read
-- sizing (max_in_flight, the byte bound, the two reads a group keeps in
-- flight), so the helper does not predict it: it reads the host's debug log
-- (`read N message(s); M in flight (B bytes)` per read, preceded by the
-- invalid-bytes lines of that read's messages), works out which messages each
-- read held (a read holds up to COUNT messages per key, key by key in the
-- order the source lists them; a plain lists source pops from one list) and
-- feeds the kit those same reads, in the same order. The kit checks every
-- read against the host's own sizing rule (rsgReadCount), so a read the host
-- could not have made fails the kit run.
--
-- Both runs end the same way: everything read, then SIGTERM (host) or
-- k:drain() and k:stop() (kit), which flush the partial batch.
--
-- A record: {
--   batches    = { [sink] = { {items...}, ... } }  what each sink stored, in order
--   acked      = { [key] = { id, ... } }    sorted; group: delivered minus pending;
--                                          reliable lists: read minus processing list
--   ack_calls  = { "key n", ... }           the acks sent, one per call and key, sorted
--                                          (group, reliable lists)
--   pending    = { [key] = { id, ... } }    group: XPENDING (sorted); reliable lists:
--                                          the processing lists (in order)
--   checkpoint = { [stream] = id }          plain streams with source.checkpoint
--   dead       = { "key id deliveries error fields", ... }  source.dead_letter: the
--                                          dead letters, sorted (fields as JSON pairs)
--   logs       = { "level: message", ... }  the pipeline's log lines (see pipeline_line)
-- }
local H = require "support.host"
local testing = require "rsghost.testing"
local native = require "rsghost.native"
local cjson = require "cjson"

local format, concat = string.format, table.concat

local M = {}

----------------------------------------------------------------------------
-- Which log lines are the pipeline's

-- The host's stderr holds lines of two kinds. The pipeline's own (written by
-- lua/rsghost/pipeline.lua, or by the host's source for messages it refuses
-- before the pipeline sees them) are what the kit models; the rest
-- (connecting, creating the group, the start-up banner, "stopping",
-- "stopped cleanly: N message(s) acknowledged", and every debug line: reads,
-- acks, checkpoints, flushes, which the kit does not log since its host table
-- has no `debug`) belong to the C host's I/O, which the kit does not run.
-- A host line is the pipeline's when its message starts as one of these.
-- The kit's side is not filtered: every non-debug line it logged counts, so
-- a pipeline line this list forgot shows up as a difference, not a silence.
M.PIPELINE_LINES = {
  "^preprocess failed on ",                          -- pipeline: preprocess raised
  "^message .- left pending: ",                       -- source: invalid bytes (group)
  "^message .- skipped %(plain streams",              -- source: invalid bytes (plain streams)
  "^message .- dead%-lettered to '",                  -- source: invalid bytes (dead_letter)
  "^item of list '",                                  -- source: invalid bytes (lists)
  "^sink %d+ of %d+ failed on a batch",               -- pipeline: a sink raised, retry
  "^a batch of %d+ messages was sunk on attempt %d+", -- pipeline: a retry succeeded
  "^stopping with %d+ message%(s%) not sunk",         -- pipeline: a stop gave up
  "^init failed",                                     -- pipeline: the script's init
  "^timer %(every ",                                  -- pipeline: rsghost.every
}

function M.pipeline_line(msg)
  for _, pat in ipairs(M.PIPELINE_LINES) do
    if msg:find(pat) then return true end
  end
  return false
end

-- "2024-01-01T00:00:00.000Z rsghost[123] error: message" -> "error", "message"
local function parse_line(line)
  return line:match("^%S+ [^%[%s]+%[%d+%] (%a+): (.*)$")
end
M.parse_line = parse_line

----------------------------------------------------------------------------
-- Small helpers

local id_less = H.id_less

local function sorted(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  table.sort(out, id_less)
  return out
end

local function decode_all(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = cjson.decode(s) end
  return out
end

-- A message's fields valid as the host's source would find them (utf-8 with
-- convert): nil, or the flat index of the first invalid string.
local function invalid_at(fields)
  for i = 1, #fields do
    if native.utf8_why(fields[i]) then return i end
  end
  return nil
end

----------------------------------------------------------------------------
-- Working out the host's reads from its log

-- The events of the host's log, in order: { "read", n }, { "invalid",
-- "key id" } (a stream message refused for its bytes; a list item: "key"),
-- { "resumed" } (a
-- failed batch was sunk on a retry: reading goes on).
local function log_events(text)
  local ev = {}
  for line in text:gmatch("[^\n]+") do
    local level, msg = parse_line(line)
    if level == "debug" then
      local n = msg:match("^read (%d+) message%(s%); %d+ in flight")
        or msg:match("^replayed (%d+) message%(s%); %d+ in flight")
      if n then ev[#ev + 1] = { "read", tonumber(n) } end
    elseif level == "error" then
      local key, id = msg:match("^message (.-) (%d+%-%d+) left pending: ")
      if not key then key, id = msg:match("^message (.-) (%d+%-%d+) skipped %(plain streams") end
      if not key then key, id = msg:match("^message (.-) (%d+%-%d+) dead%-lettered to '") end
      -- A list item refused for its bytes: the line names its list only.
      if not key then
        key = msg:match("^item of list '(.-)' left in ") or msg:match("^item of list '(.-)' dropped: ")
          or msg:match("^item of list '(.-)' dead%-lettered to '")
      end
      if key then ev[#ev + 1] = { "invalid", id and (key .. " " .. id) or key } end
    elseif level == "info" and msg:find("^a batch of %d+ messages was sunk on attempt %d+; reading resumes") then
      ev[#ev + 1] = { "resumed" }
    end
  end
  return ev
end

-- What a read of COUNT c takes from the queues (keys in source order):
-- min(c, left) from each key, or, for a plain lists source (one_key), from the
-- first non-empty list only. Returns the messages, how many are valid, and
-- the set of invalid ones ("key id").
local function take(queues, keys, c, one_key)
  local msgs, valid, invalid = {}, 0, {}
  for _, key in ipairs(keys) do
    local q = queues[key]
    local n = math.min(c, #q - q.head + 1)
    for i = q.head, q.head + n - 1 do
      local m = q[i]
      msgs[#msgs + 1] = m
      if m.valid then
        valid = valid + 1
      else
        local what = m.data and (m.key .. " " .. m.id) or m.key
        invalid[what] = (invalid[what] or 0) + 1
      end
    end
    if one_key and n > 0 then break end
  end
  return msgs, valid, invalid
end

-- Multisets { [what] = n }: a stream message is "key id", a list item its
-- list's name.
local function same_set(a, b)
  for k, n in pairs(a) do if b[k] ~= n then return false end end
  for k, n in pairs(b) do if a[k] ~= n then return false end end
  return true
end

-- The reads, each an array of messages { key, id, data, valid }, and the
-- events in order: { "feed", i } or { "resumed" }.
function M.host_reads(log_text, messages, keys, one_key)
  local queues = {}
  for _, key in ipairs(keys) do queues[key] = { head = 1 } end
  for _, m in ipairs(messages) do
    local q = queues[m.key]
    q[#q + 1] = m
  end
  local reads, events = {}, {}
  local invalid = {}
  local function close(n)
    local max = 0
    for _, key in ipairs(keys) do max = math.max(max, #queues[key] - queues[key].head + 1) end
    for c = 1, max do
      local msgs, valid, inv = take(queues, keys, c, one_key)
      if valid == n and same_set(inv, invalid) then
        for _, m in ipairs(msgs) do queues[m.key].head = queues[m.key].head + 1 end
        reads[#reads + 1] = msgs
        events[#events + 1] = { "feed", #reads }
        invalid = {}
        return
      end
      if valid > n then break end
    end
    local names = {}
    for k in pairs(invalid) do names[#names + 1] = k end
    error(format("support.conformance: no read of the backlog holds %d valid message(s) and the invalid %s "
      .. "(read %d); the host's log:\n%s", n, concat(names, ", "), #reads + 1, log_text), 0)
  end
  for _, e in ipairs(log_events(log_text)) do
    if e[1] == "read" then
      close(e[2])
    elseif e[1] == "invalid" then
      invalid[e[2]] = (invalid[e[2]] or 0) + 1
    else
      events[#events + 1] = e
    end
  end
  if next(invalid) then close(0) end -- a last read of invalid messages only
  return reads, events
end

-- Messages read so far according to the log (valid ones, plus refused ones).
local function read_so_far(text)
  local n = 0
  for _, e in ipairs(log_events(text)) do
    if e[1] == "read" then n = n + e[2] elseif e[1] == "invalid" then n = n + 1 end
  end
  return n
end

----------------------------------------------------------------------------
-- The two runs

local function sinks_of(kit_cfg) return #kit_cfg.sinks end

-- The kit's checkpoint, as the host would store it: per stream, the last id
-- such that it and every id read before it on that stream were acked or
-- abandoned (host_calls), or refused for its bytes.
local function kit_checkpoint(k, reads)
  local settled = {}
  -- The kit refuses a message with invalid bytes before the pipeline sees
  -- it (no host call); the host's source gives it up as it reads it. The
  -- kit's log line names it.
  for _, l in ipairs(k:logs("error")) do
    local key, id = l.msg:match("^message (.-) (%d+%-%d+) skipped %(plain streams")
    if key then settled[key .. " " .. id] = true end
  end
  for _, call in ipairs(k:host_calls()) do
    if call[1] == "ack" or call[1] == "abandon" then
      for key, ids in pairs(call[2]) do
        for _, id in ipairs(ids) do settled[key .. " " .. id] = true end
      end
    elseif call[1] == "dead_letter" then
      -- The host's checkpoint passes a dead letter once its script is in.
      settled[call[2] .. " " .. call[3]] = true
    end
  end
  local out, blocked = {}, {}
  for _, read in ipairs(reads) do
    for _, m in ipairs(read) do
      if not blocked[m.key] then
        if settled[m.key .. " " .. m.id] then out[m.key] = m.id else blocked[m.key] = true end
      end
    end
  end
  return out
end

-- One dead letter as a line both records can hold.
local function dead_line(key, id, deliveries, err, fields)
  return concat({ key, id, tostring(deliveries), err, cjson.encode(fields) }, " ")
end

local function run_host(t, path, case, kind, keys, messages)
  local h = H.start(t, { script = path, consumer = case.consumer or "c1" })
  local total = #messages
  H.eventually(function()
    if not h:alive() then H.abort("the host exited: " .. h:describe()) end
    return read_so_far(h:log()) >= total
  end, 60, function() return h:describe() end)
  if case.host_wait then
    H.eventually(function() return case.host_wait(h, t) end, 60, function() return h:describe() end)
  end
  local code = h:stop()
  local log = h:log()
  local rec = { logs = {}, batches = {} }
  if kind == "group" or kind == "reliable" then rec.ack_calls = {} end
  local other = {}
  for line in log:gmatch("[^\n]+") do
    local level, msg = parse_line(line)
    if level and level ~= "debug" then
      if M.pipeline_line(msg) then rec.logs[#rec.logs + 1] = level .. ": " .. msg
      else other[#other + 1] = line end
    elseif level == "debug" then
      local n, key = msg:match("^acking (%d+) message%(s%) of stream '(.*)'$")
      if not n then
        local proc
        n, proc = msg:match("^removing (%d+) item%(s%) from (.*)$")
        if proc then key = proc:match("^rsghost:processing:[^:]+:(.*)$") end
      end
      if n then rec.ack_calls[#rec.ack_calls + 1] = key .. " " .. n end
    end
  end
  -- The host acks a batch when its sinks' replies came back, a drop when
  -- its read was fed: a batch sunk while the next read was fed is acked
  -- after that read's drops, where the kit (whose Redis answers at once)
  -- acks it before. Which acks were sent, and how big, is what both share.
  if rec.ack_calls then table.sort(rec.ack_calls) end
  for i = 1, case.nsinks do
    rec.batches[i] = decode_all(H.list(t.redis, t.prefix .. ":sink" .. i))
  end
  local r = t.redis
  if kind == "group" then
    rec.pending, rec.acked = {}, {}
    local group = case.group
    for _, key in ipairs(keys) do
      local set = H.pending_ids(r, key, group)
      local p = {}
      for id in pairs(set) do p[#p + 1] = id end
      rec.pending[key] = sorted(p)
      local a = {}
      for _, m in ipairs(messages) do
        if m.key == key and not set[m.id] then a[#a + 1] = m.id end
      end
      rec.acked[key] = sorted(a)
    end
  elseif kind == "reliable" then
    rec.pending, rec.acked = {}, {}
    for _, key in ipairs(keys) do
      local left = H.list(r, "rsghost:processing:" .. (case.consumer or "c1") .. ":" .. key)
      rec.pending[key] = left
      local leftset = {}
      for _, v in ipairs(left) do leftset[v] = true end
      local a = {}
      for _, m in ipairs(messages) do
        if m.key == key and not leftset[m.id] then a[#a + 1] = m.id end
      end
      rec.acked[key] = sorted(a)
    end
  elseif kind == "streams" and case.checkpoint then
    local flat = r:call("HGETALL", case.checkpoint)
    rec.checkpoint = {}
    for i = 1, #flat, 2 do rec.checkpoint[flat[i]] = flat[i + 1] end
  end
  if case.dead_letter then
    -- The script's entry: 7 rsghost: header pairs, then the message's fields.
    local dead = {}
    for _, e in ipairs(r:call("XRANGE", case.dead_letter, "-", "+")) do
      local f = e[2]
      local fields = {}
      for i = 15, #f, 2 do fields[#fields + 1] = { f[i], f[i + 1] } end
      local id = f[1] == "rsghost:list" and fields[1][2] or f[4]
      dead[#dead + 1] = dead_line(f[2], id, f[10], f[12], fields)
    end
    table.sort(dead)
    rec.dead = dead
  end
  return rec, { code = code, log = log, other = other, h = h }
end

local function run_kit(path, case, kind, keys, reads, events)
  local k = testing.load(path, { consumer = case.consumer or "c1" })
  local function settle()
    -- The host read on only after the failed batch was sunk.
    local guard = 0
    while k:paused() and k:next_timer() do
      k:advance(k:next_timer())
      guard = guard + 1
      assert(guard < 1000, "the kit stays paused")
    end
  end
  for _, e in ipairs(events) do
    if e[1] == "resumed" then
      settle()
    else
      local msgs = {}
      for i, m in ipairs(reads[e[2]]) do
        if kind == "lists" or kind == "reliable" then
          msgs[i] = { m.key, m.id }
        else
          msgs[i] = { m.key, m.id, m.data }
        end
      end
      k:feed_many(msgs)
    end
  end
  k:drain()
  local finished = k:stop()
  local rec = { logs = {}, batches = {} }
  for _, l in ipairs(k:logs()) do
    if l.level ~= "debug" then rec.logs[#rec.logs + 1] = l.level .. ": " .. l.msg end
  end
  for i = 1, case.nsinks do
    rec.batches[i] = decode_all(k.redis:call("LRANGE", case.P .. ":sink" .. i, 0, -1))
  end
  if kind == "group" or kind == "reliable" then
    rec.ack_calls = {}
    for _, call in ipairs(k:host_calls()) do
      if call[1] == "ack" then
        local parts = {}
        for key, ids in pairs(call[2]) do parts[#parts + 1] = key .. " " .. #ids end
        table.sort(parts) -- the host walks one ack's streams in its own order
        for _, p in ipairs(parts) do rec.ack_calls[#rec.ack_calls + 1] = p end
      end
    end
    table.sort(rec.ack_calls)
    rec.pending, rec.acked = {}, {}
    local pending, acked = k:pending(), k:acked()
    -- The host's record counts as acked whatever left Redis's pending list
    -- or processing list: the dead-letter script takes messages out too.
    for _, d in ipairs(k:dead_letters()) do
      acked[d.stream] = acked[d.stream] or {}
      table.insert(acked[d.stream], d.id)
    end
    for _, key in ipairs(keys) do
      rec.pending[key] = kind == "group" and sorted(pending[key] or {}) or (pending[key] or {})
      rec.acked[key] = sorted(acked[key] or {})
    end
  elseif kind == "streams" and case.checkpoint then
    rec.checkpoint = kit_checkpoint(k, reads)
  end
  if case.dead_letter then
    local dead = {}
    for _, d in ipairs(k:dead_letters()) do
      dead[#dead + 1] = dead_line(d.stream, d.id, d.deliveries, d.error, d.fields)
    end
    table.sort(dead)
    rec.dead = dead
  end
  return rec, { finished = finished, k = k }
end

-- Runs case both ways. case: script (template, {{P}} = the prefix),
-- messages(P) -> { {key, fields | item}, ... } (added in this order with
-- XADD * / RPUSH), consumer, host_wait(h, t) (an extra condition before the
-- host is stopped), checkpoint(P) (the hash of a plain-streams source).
-- Returns host_record, kit_record, run (reads, logs, for messages).
function M.run(case)
  local t = H.context()
  local P = t.prefix
  local path = H.script(t, case.script)
  -- The kit loads the script first only to learn its source; the run proper
  -- is a fresh load after the host's run.
  local probe = testing.load(path, { consumer = case.consumer or "c1" })
  local src = probe.cfg.source
  local kind = src.kind == "lists" and (src.reliable and "reliable" or "lists") or src.kind
  local keys = {}
  if src.kind == "lists" then
    for i, name in ipairs(src.lists) do keys[i] = name end
  else
    for i, s in ipairs(src.streams) do keys[i] = s.name end
  end
  local c = {}
  for key, v in pairs(case) do c[key] = v end
  c.P, c.nsinks, c.group = P, sinks_of(probe.cfg), src.group
  c.checkpoint = src.checkpoint
  c.dead_letter = src.dead_letter and src.dead_letter.key

  -- The backlog, in Redis before the host starts.
  local messages = {}
  local cmds = {}
  for i, m in ipairs(case.messages(P)) do
    local key, data = m[1], m[2]
    if type(data) == "table" then
      local cmd = { "XADD", key, "*" }
      for _, x in ipairs(data) do cmd[#cmd + 1] = x end
      cmds[i] = cmd
      messages[i] = { key = key, data = data, valid = invalid_at(data) == nil }
    else
      cmds[i] = { "RPUSH", key, data }
      messages[i] = { key = key, id = data, valid = src.convert == false or native.utf8_why(data) == nil }
    end
  end
  for first = 1, #cmds, 500 do
    local part = {}
    for i = first, math.min(#cmds, first + 499) do part[#part + 1] = cmds[i] end
    local replies = t.redis:pipeline(part)
    for j, reply in ipairs(replies) do
      local m = messages[first + j - 1]
      if type(reply) == "table" and reply.err then error("support.conformance: " .. reply.err, 2) end
      if m.data then m.id = reply end
    end
  end

  local host_rec, host_run = run_host(t, path, c, kind, keys, messages)
  local reads, events = M.host_reads(host_run.log, messages, keys, kind == "lists")
  local kit_rec, kit_run = run_kit(path, c, kind, keys, reads, events)

  local sizes = {}
  for i, r in ipairs(reads) do sizes[i] = #r end
  return host_rec, kit_rec, {
    P = P, t = t, kind = kind, keys = keys, messages = messages,
    reads = reads, read_sizes = sizes,
    host_code = host_run.code, host_log = host_run.log, host_other = host_run.other, h = host_run.h,
    kit_finished = kit_run.finished, k = kit_run.k,
  }
end

----------------------------------------------------------------------------
-- Comparing

-- The lines of a record's logs matching a Lua pattern.
function M.matching(lines, pattern)
  local out = {}
  for _, l in ipairs(lines) do if l:find(pattern) then out[#out + 1] = l end end
  return out
end

local function show(v, depth)
  depth = depth or 0
  if type(v) ~= "table" then return type(v) == "string" and format("%q", v) or tostring(v) end
  if depth > 3 then return "{...}" end
  local parts = {}
  if #v > 0 or next(v) == nil then
    local n = #v
    for i = 1, math.min(n, 8) do parts[#parts + 1] = show(v[i], depth + 1) end
    if n > 8 then parts[#parts + 1] = format("... (%d in all)", n) end
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = format("[%s] = %s", k, show(v[k], depth + 1)) end
  end
  return "{ " .. concat(parts, ", ") .. " }"
end
M.show = show

local function equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- The first place where a and b differ, as "path: host X, kit Y".
local function first_diff(a, b, path)
  if type(a) ~= "table" or type(b) ~= "table" then
    if a == b then return nil end
    return format("%s: host %s, kit %s", path, show(a), show(b))
  end
  local keys, seen = {}, {}
  for k in pairs(a) do if not seen[k] then seen[k] = true; keys[#keys + 1] = k end end
  for k in pairs(b) do if not seen[k] then seen[k] = true; keys[#keys + 1] = k end end
  table.sort(keys, function(x, y)
    if type(x) == type(y) and type(x) ~= "table" then return x < y end
    return tostring(x) < tostring(y)
  end)
  for _, k in ipairs(keys) do
    local d = first_diff(a[k], b[k], path .. "[" .. show(k) .. "]")
    if d then return d end
  end
  return nil
end
M.first_diff = first_diff

-- Asserts that the records agree, field by field; the failure message names
-- the field, the first place it differs, both values, the reads and the host's
-- log.
function M.assert_same(host, kit, run, fields)
  local assert = require "luassert"
  assert.equal(0, run.host_code, "the host did not stop cleanly: " .. run.h:describe())
  fields = fields or { "batches", "acked", "ack_calls", "pending", "checkpoint", "dead", "logs" }
  for _, f in ipairs(fields) do
    if not equal(host[f], kit[f]) then
      local log = run.host_log
      if #log > 3000 then log = "...\n" .. log:sub(-3000) end
      assert(false, format("host and kit differ in %s: %s\n  host: %s\n  kit:  %s\n  reads fed (sizes): %s\n"
        .. "  host's other warn/error lines: %s\n  host log:\n%s",
        f, first_diff(host[f], kit[f], f) or "?", show(host[f]), show(kit[f]), show(run.read_sizes),
        show(run.host_other), log))
    end
  end
end

return M
