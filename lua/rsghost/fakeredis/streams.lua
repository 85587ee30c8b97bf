-- rsghost.fakeredis: streams (XADD XLEN XRANGE XREVRANGE XDEL XTRIM).
--
-- A stream is a list of nodes, as Redis' radix tree of listpacks:
--   stream = { nodes = { node, ... }, length, last = id }
--   node   = { master = id, mfields = { f1, ... }, entries = { entry, ... },
--              valid = n, deleted = n, fixed = bytes }
--   entry  = { id = id, fields = { f1, v1, ... }, deleted = bool }
--   id     = { ms = uint64, seq = uint64 }
-- node.fixed is the listpack size of everything but the header, the end
-- byte and the two counters (which change in place), so that the node's
-- total (Redis' lpBytes) is cheap to recompute.

local ffi = require "ffi"
local util = require "rsghost.fakeredis.util"

local ipairs, byte, sub, lower = ipairs, string.byte, string.sub, string.lower

local I64, U64, U64_MAX = util.I64, util.U64, util.U64_MAX
local NOT_INTEGER, SYNTAX = util.NOT_INTEGER, util.SYNTAX
local arity_error, string2ll, string2ull, int_string = util.arity_error, util.string2ll, util.string2ull, util.int_string

local BAD_ID = "ERR Invalid stream ID specified as stream command argument"

local M = {}
local command
M.commands, command = util.command_table()

local function id_new(ms, seq) return { ms = U64(ms), seq = U64(seq) } end

local function id_cmp(a, b)
  if a.ms ~= b.ms then return a.ms < b.ms and -1 or 1 end
  if a.seq ~= b.seq then return a.seq < b.seq and -1 or 1 end
  return 0
end

local function id_string(id)
  return int_string(id.ms) .. "-" .. int_string(id.seq)
end

local function id_incr(id)
  if id.seq == U64_MAX then
    if id.ms == U64_MAX then return nil end
    return id_new(id.ms + 1, 0)
  end
  return id_new(id.ms, id.seq + 1)
end

local function id_decr(id)
  if id.seq == 0 then
    if id.ms == 0 then return nil end
    return id_new(id.ms - 1, U64_MAX)
  end
  return id_new(id.ms, id.seq - 1)
end

-- streamGenericParseIDOrReply: returns id, seq_given; or nil.
-- strict: "-" and "+" are not ids. auto_seq: "<ms>-*" is allowed (XADD).
local function parse_id(s, missing_seq, strict, auto_seq)
  if #s > 127 then return nil end
  if strict and (s == "-" or s == "+") then return nil end
  if s == "-" then return id_new(0, 0), true end
  if s == "+" then return id_new(U64_MAX, U64_MAX), true end
  local dash = s:find("-", 1, true)
  local ms_part = dash and sub(s, 1, dash - 1) or s
  local ms = string2ull(ms_part)
  if ms == nil then return nil end
  if not dash then return { ms = ms, seq = U64(missing_seq) }, true end
  local seq_part = sub(s, dash + 1)
  if auto_seq and seq_part == "*" then return { ms = ms, seq = U64(0) }, false end
  local seq = string2ull(seq_part)
  if seq == nil then return nil end
  return { ms = ms, seq = seq }, true
end

-- Listpack element sizes (listpack.c): encoding + data + back-length.
local function int_element_size(v)
  local enc
  if v >= 0 and v <= 127 then enc = 1
  elseif v >= -4096 and v <= 4095 then enc = 2
  elseif v >= -32768 and v <= 32767 then enc = 3
  elseif v >= -8388608 and v <= 8388607 then enc = 4
  elseif v >= -2147483648LL and v <= 2147483647LL then enc = 5
  else enc = 9 end
  return enc + 1
end

local function backlen_size(l)
  if l <= 127 then return 1 end
  if l < 16383 then return 2 end
  if l < 2097151 then return 3 end
  if l < 268435455 then return 4 end
  return 5
end

local function string_element_size(s)
  local v = string2ll(s)
  if v ~= nil then return int_element_size(v) end
  local len = #s
  local enc
  if len < 64 then enc = 1 + len
  elseif len < 4096 then enc = 2 + len
  else enc = 5 + len end
  return enc + backlen_size(enc)
end

local function node_bytes(node)
  -- 6-byte header + end byte + the valid and deleted counters.
  return 7 + int_element_size(node.valid) + int_element_size(node.deleted) + node.fixed
end

M.node_bytes = node_bytes -- for the fake's own spec (rsghost.fakeredis._node_bytes)

local function same_fields(node, fields)
  local mfields = node.mfields
  if #fields ~= 2 * #mfields then return false end
  for i = 1, #mfields do
    if fields[2 * i - 1] ~= mfields[i] then return false end
  end
  return true
end

-- The listpack bytes of one entry (flags, ms and seq deltas, [field count,
-- fields,] values, lp-count).
local function entry_size(node, id, fields, same)
  local nf = #fields / 2
  local size = int_element_size(0) -- flags (0..3: one byte)
    + int_element_size(ffi.cast(I64, id.ms - node.master.ms))
    + int_element_size(ffi.cast(I64, id.seq - node.master.seq))
  for i = 1, #fields, 2 do
    if not same then size = size + string_element_size(fields[i]) end
    size = size + string_element_size(fields[i + 1])
  end
  local lp_count = nf + 3
  if not same then
    size = size + int_element_size(nf)
    lp_count = lp_count + nf + 1
  end
  return size + int_element_size(lp_count)
end

-- streamAppendItem: add fields (flat array) under id to the tail node, or to
-- a new node when the tail one is full.
local function stream_append(self, st, id, fields)
  local node = st.nodes[#st.nodes]
  if node then
    local total = 0
    for i = 1, #fields do total = total + #fields[i] end
    if node_bytes(node) + total >= self.node_max_bytes
        or node.valid + node.deleted >= self.node_max_entries then
      node = nil
    end
  end
  local same
  if node == nil then
    local mfields = {}
    for i = 1, #fields, 2 do mfields[#mfields + 1] = fields[i] end
    node = { master = id, mfields = mfields, entries = {}, valid = 0, deleted = 0 }
    local fixed = int_element_size(#mfields) + int_element_size(0) -- field count, terminator
    for _, f in ipairs(mfields) do fixed = fixed + string_element_size(f) end
    node.fixed = fixed
    st.nodes[#st.nodes + 1] = node
    same = true
  else
    same = same_fields(node, fields)
  end
  node.fixed = node.fixed + entry_size(node, id, fields, same)
  node.valid = node.valid + 1
  node.entries[#node.entries + 1] = { id = id, fields = fields }
  st.length = st.length + 1
  st.last = id
end
M.methods = { stream_append = stream_append } -- as it was: a method of the client

-- streamTrim: by MAXLEN (t.maxlen) or MINID (t.minid); t.approx trims
-- whole nodes only; t.limit caps the entries removed (0: no cap).
local function stream_trim(st, t)
  local deleted = 0
  while st.nodes[1] do
    if t.maxlen and st.length <= t.maxlen then break end
    local node = st.nodes[1]
    local entries = node.valid
    if t.limit ~= 0 and deleted + entries > t.limit then break end
    local remove
    if t.maxlen then
      remove = st.length - entries >= t.maxlen
    else
      local last = node.entries[#node.entries].id
      remove = id_cmp(last, t.minid) < 0
    end
    if remove then
      table.remove(st.nodes, 1)
      st.length = st.length - entries
      deleted = deleted + entries
    else
      if t.approx then break end
      local from_node = 0
      for _, entry in ipairs(node.entries) do
        local stop
        if t.maxlen then stop = st.length <= t.maxlen else stop = id_cmp(entry.id, t.minid) >= 0 end
        if stop then break end
        if not entry.deleted then
          entry.deleted = true
          from_node = from_node + 1
          st.length = st.length - 1
        end
      end
      deleted = deleted + from_node
      node.valid = node.valid - from_node
      node.deleted = node.deleted + from_node
      break
    end
  end
  return deleted
end

-- streamParseAddOrTrimArgsOrReply: options from argv[3]. Returns the index
-- of the id (XADD) or of the first argument not consumed, and the options;
-- or nil, err.
local function parse_add_or_trim(argv, n, xadd)
  local t = { limit = nil, approx = false }
  local limit_given = false
  local i = 3
  while i <= n do
    local more = n - i
    local opt = argv[i]
    local lopt = lower(opt)
    if xadd and opt == "*" then
      break
    elseif lopt == "maxlen" and more > 0 then
      if t.minid then return nil, "ERR syntax error, MAXLEN and MINID options at the same time are not compatible" end
      t.approx = false
      local nxt = argv[i + 1]
      if more >= 2 and nxt == "~" then
        t.approx = true
        i = i + 1
      elseif more >= 2 and nxt == "=" then
        i = i + 1
      end
      local maxlen = string2ll(argv[i + 1])
      if maxlen == nil then return nil, NOT_INTEGER end
      if maxlen < 0 then return nil, "ERR The MAXLEN argument must be >= 0." end
      t.maxlen = tonumber(maxlen)
      i = i + 1
    elseif lopt == "minid" and more > 0 then
      if t.maxlen then return nil, "ERR syntax error, MAXLEN and MINID options at the same time are not compatible" end
      t.approx = false
      local nxt = argv[i + 1]
      if more >= 2 and nxt == "~" then
        t.approx = true
        i = i + 1
      elseif more >= 2 and nxt == "=" then
        i = i + 1
      end
      local id = parse_id(argv[i + 1], 0, true, false)
      if id == nil then return nil, BAD_ID end
      t.minid = id
      i = i + 1
    elseif lopt == "limit" and more > 0 then
      local limit = string2ll(argv[i + 1])
      if limit == nil then return nil, NOT_INTEGER end
      if limit < 0 then return nil, "ERR The LIMIT argument must be >= 0." end
      t.limit = tonumber(limit)
      limit_given = true
      i = i + 1
    elseif xadd and lopt == "nomkstream" then
      t.nomkstream = true
    elseif xadd then
      local id, seq_given = parse_id(opt, 0, true, true)
      if id == nil then return nil, BAD_ID end
      t.id, t.seq_given = id, seq_given
      break
    else
      return nil, SYNTAX
    end
    i = i + 1
  end
  local strategy = t.maxlen or t.minid
  if limit_given and not strategy then
    return nil, "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
  end
  if not xadd and not strategy then
    return nil, "ERR syntax error, XTRIM must be called with a trimming strategy"
  end
  if limit_given then
    if not t.approx then return nil, "ERR syntax error, LIMIT cannot be used without the special ~ option" end
  else
    t.limit = t.approx and 100 * 100 or 0 -- 100 * stream-node-max-entries
  end
  return i, t
end

local function stream_of(self, key)
  local e, err = self:typed(key, "stream")
  if e == false then return false, err end
  return e
end

local function new_stream()
  return { nodes = {}, length = 0, last = id_new(0, 0) }
end

command("xadd", -5, function(self, argv, n)
  local idpos, t = parse_add_or_trim(argv, n, true)
  if idpos == nil then return nil, t end
  local nfields = n - idpos
  if nfields < 2 or nfields % 2 == 1 then return nil, arity_error("xadd") end
  if t.id and t.seq_given and t.id.ms == 0 and t.id.seq == 0 then
    return nil, "ERR The ID specified in XADD must be greater than 0-0"
  end
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then
    if t.nomkstream then return nil end
    e = self:create(argv[2], "stream", new_stream())
  end
  local st = e.value
  if st.last.ms == U64_MAX and st.last.seq == U64_MAX then
    return nil, "ERR The stream has exhausted the last possible ID, unable to add more items"
  end
  local id
  local too_small = "ERR The ID specified in XADD is equal or smaller than the target stream top item"
  if t.id then
    if t.seq_given then
      id = t.id
    elseif st.last.ms == t.id.ms then
      if st.last.seq == U64_MAX then return nil, too_small end
      id = id_new(st.last.ms, st.last.seq + 1)
    else
      id = t.id
    end
  else
    local now = ffi.cast(U64, self:now_ms())
    if now > st.last.ms then id = id_new(now, 0) else id = id_incr(st.last) end
  end
  if id_cmp(id, st.last) <= 0 then return nil, too_small end
  local fields = {}
  for i = idpos + 1, n do fields[#fields + 1] = argv[i] end
  stream_append(self, st, id, fields)
  if t.maxlen or t.minid then stream_trim(st, t) end
  return id_string(id)
end)

command("xtrim", -4, function(self, argv, n)
  local _, t = parse_add_or_trim(argv, n, false)
  if _ == nil then return nil, t end
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  return stream_trim(e.value, t)
end)

command("xlen", 2, function(self, argv)
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  return e and e.value.length or 0
end)

-- streamParseIntervalIDOrReply: an id, "-", "+" or "(id" (exclusive).
local function parse_interval(s, missing_seq)
  if #s > 1 and byte(s, 1) == 40 then -- '('
    local id = parse_id(sub(s, 2), missing_seq, true, false)
    return id, true
  end
  return parse_id(s, missing_seq, false, false), false
end

local function xrange(rev)
  return function(self, argv, n)
    local start_arg, end_arg = argv[3], argv[4]
    if rev then start_arg, end_arg = end_arg, start_arg end
    local start, start_ex = parse_interval(start_arg, 0)
    if start == nil then return nil, BAD_ID end
    if start_ex then
      start = id_incr(start)
      if start == nil then return nil, "ERR invalid start ID for the interval" end
    end
    local stop, stop_ex = parse_interval(end_arg, U64_MAX)
    if stop == nil then return nil, BAD_ID end
    if stop_ex then
      stop = id_decr(stop)
      if stop == nil then return nil, "ERR invalid end ID for the interval" end
    end
    local count = -1
    local j = 5
    while j <= n do
      if lower(argv[j]) == "count" and j < n then
        local c = string2ll(argv[j + 1])
        if c == nil then return nil, NOT_INTEGER end
        count = c < 0 and 0 or tonumber(c)
        j = j + 1
      else
        return nil, SYNTAX
      end
      j = j + 1
    end
    local e, err = stream_of(self, argv[2])
    if e == false then return nil, err end
    if e == nil then return {} end
    if count == 0 then return nil end
    local out = {}
    local nodes = e.value.nodes
    local function emit(entry)
      if entry.deleted then return true end
      if id_cmp(entry.id, start) < 0 or id_cmp(entry.id, stop) > 0 then return true end
      local fields = {}
      for i, v in ipairs(entry.fields) do fields[i] = v end
      out[#out + 1] = { id_string(entry.id), fields }
      return count < 0 or #out < count
    end
    if rev then
      for k = #nodes, 1, -1 do
        local entries = nodes[k].entries
        for m = #entries, 1, -1 do
          if not emit(entries[m]) then return out end
        end
      end
    else
      for k = 1, #nodes do
        for _, entry in ipairs(nodes[k].entries) do
          if not emit(entry) then return out end
        end
      end
    end
    return out
  end
end

command("xrange", -4, xrange(false))
command("xrevrange", -4, xrange(true))

command("xdel", -3, function(self, argv, n)
  local e, err = stream_of(self, argv[2])
  if e == false then return nil, err end
  if e == nil then return 0 end
  local ids = {}
  for i = 3, n do
    local id = parse_id(argv[i], 0, true, false)
    if id == nil then return nil, BAD_ID end
    ids[#ids + 1] = id
  end
  local st = e.value
  local deleted = 0
  for _, id in ipairs(ids) do
    for k, node in ipairs(st.nodes) do
      local hit
      for _, entry in ipairs(node.entries) do
        if not entry.deleted and id_cmp(entry.id, id) == 0 then
          hit = entry
          break
        end
      end
      if hit then
        hit.deleted = true
        if node.valid == 1 then
          table.remove(st.nodes, k)
        else
          node.valid = node.valid - 1
          node.deleted = node.deleted + 1
        end
        st.length = st.length - 1
        deleted = deleted + 1
        break
      end
    end
  end
  return deleted
end)

return M
