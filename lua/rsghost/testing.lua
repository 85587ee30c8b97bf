-- rsghost.testing: test a pipeline script with busted, without the host.
--
-- The kit loads the script the way the host does (rsghost.script.load) and
-- drives the same pipeline (rsghost.pipeline) through a host table of its
-- own, as the C host does, on a virtual clock. So a spec that passes here
-- describes what `rsghost script.lua` will do with the same messages.
--
--   local testing = require "rsghost.testing"
--
--   local k = testing.load("examples/simple-consumer-group.lua", { consumer = "c1" })
--   k:feed("source-stream-1", "1-0", { n = "1" })   -- one read of one message
--   k:advance(3)                                     -- the batch's 3 s timeout
--   assert.equal(1, #k:sink_calls(1))               -- one batch, one sink call
--   assert.same({ ["source-stream-1"] = { "1-0" } }, k:acked())
--   assert.same({}, k:pending())
--   k.redis:call("LRANGE", "preprocessed-data", 0, -1)
--
-- testing.load(script, opts)
--   script  a path, or the table a script returns (its errors then point
--           at opts.path, default the calling spec file)
--   opts.consumer  rsghost.consumer while the script loads (default "rsghost-test")
--   opts.redis     nil: an in-memory rsghost.fakeredis on the virtual clock;
--                  "redis://..." or "unix://...": a real server through
--                  rsghost.hiredis (close it with k:close()); or a client
--                  object (a fake or a hiredis client) to share between kits
--   opts.epoch     wall-clock seconds at virtual time 0, for the fake's XADD *
--                  ids and expiry and for generated message ids (default
--                  1700000000: fixed, so that ids are the same on every run)
--   opts.verbose   also print the pipeline's log lines on stderr
--   opts.http      nil or "fake": rsghost.http requests are recorded and
--                  answered by k:answer_http rules (default 200, empty body);
--                  "real": requests no rule matches are sent (libcurl)
--   opts.pg        nil or "fake": rsghost.pg queries are recorded and answered
--                  by k:answer_pg rules (default: no rows); "real": queries no
--                  rule matches run on the server of their conninfo (libpq)
-- It raises the host's own "path:LINE: reason" when the script is invalid.
-- It runs the script's init at once, as the host does before its first read
-- (against the fake or real Redis); timers registered with rsghost.every run
-- as virtual time passes (k:advance).
--
-- Feeding. Each feed is one read of the host, delivered in one p:feed call:
--   k:feed(stream, id, data)     one message; returns its id
--   k:feed(stream, data)         the id is generated ("<ms>-<seq>", as XADD *)
--   k:feed(list, item)           lists source: one item
--   k:feed_many({ {stream, id, data}, {stream, data}, ... })   returns the ids
--   k:feed(stream, id, data, { deliveries = n }), or a field deliveries = n
--                                in a feed_many entry: Redis's times-delivered
--                                of a replayed or claimed entry (default 1)
-- data is { field = value } or { "field", "value", ... }; numbers become
-- strings, as the host always passes strings. As in the host: a message whose
-- fields are not valid UTF-8 (source.encoding "utf-8" with convert) is logged
-- and never reaches preprocess, and so is a list item (a reliable list keeps
-- it in its processing list: k:pending(); a plain one has popped it); a read
-- holds at most source.count messages per stream and never more than
-- source.max_in_flight leaves room for, and a plain
-- lists source pops from one list per read (feeding more raises, since the
-- host would split it); nothing is read after k:stop(). The kit does not
-- convert other encodings: feed the text preprocess gets. A read may come
-- while reading is paused (the host's next read is already on its way when a
-- sink fails), but the host sends no further one until it resumes.
--
-- Time. The clock starts at 0 and moves only with k:advance(seconds), which
-- fires the pipeline's timer whenever it falls due (batch timeouts, retries of
-- a failed sink), at the millisecond the host's timer would fire.
--   k:now(), k:advance(s), k:next_timer() (seconds until the timer, or nil),
--   k:drain(max) (advance timer by timer until none is armed, at most max
--   seconds, default 3600; returns the time that passed)
--   k:stop() flushes the partial batch, as SIGTERM does; true when the
--   pipeline has finished with everything sunk and acked. A batch waiting
--   for a retry is retried at once, one last time; a sink that fails while
--   stopping makes the stop give up: the kit is finished, nothing of that
--   batch (and those behind it) is acked, k:given_up() counts them. A sink
--   whose command waits on a slow reply is waited for.
--
-- Looking.
--   k:sink_calls(i)   every call of sink i (default 1), retries included: an
--                     array of item arrays
--   k:sink_metas(i)   the meta of each of those calls: { ids =, streams =,
--                     n =, group =, deliveries = } (copies), call for call
--   k:batches()       the batches every sink took (acked), in order
--   k:sunk()          their items, flattened
--   k:acked([stream]) { [stream] = { id, ... } } acknowledged, in order (or
--                     the list of one stream)
--   k:pending()       { [stream] = { id, ... } } fed but not acked: in the
--                     pipeline, or left pending by a preprocess error (a
--                     plain-streams source gives those up: not pending)
--   k:in_flight()     messages the host would count as held (fed - released)
--   k:paused()        whether reading is paused (a sink is failing)
--   k:ready()         whether the script's init has returned (reading starts then)
--   k:finished()      whether the pipeline finished after k:stop()
--   k:logs([level])   { { level =, msg = }, ... }
--   k:logged(pattern [, level])  the first message matching a Lua pattern
--   k:sent()          every command the sinks sent (arrays), failed ones too
--   k:dead_letters()  with source.dead_letter: { stream =, id =, error =,
--                     deliveries =, fields = { {name, value}, ... } }, in
--                     order; dead-lettered messages are not k:pending().
--                     With retry.max_attempts, items a sink rejected on
--                     their own after bisection are here too (error: the
--                     sink's); k:batches() then lists the parts that were sunk
--   k:host_calls()    every call the pipeline made to the host: { "ack", acks },
--                     { "abandon", ids }, { "release", n }, { "set_timer", delay },
--                     { "pause", flag }, { "ready" }, { "finished", unsunk },
--                     { "dead_letter", stream, id, deliveries, err },
--                     { "file_append", path, data, fsync } (rsghost.sink.file:
--                     the kit appends to the real file at once)
--   k.redis           the fake or real client, for setup and inspection
--   k.cfg, k.pipeline the normalized configuration and the pipeline
--
-- Failing.
--   k:fail_sink(i [, err_or_fn [, times]])  sink i raises err (a default text
--       naming the spec line) instead of running; a function fn(items) runs
--       first and fails the sink when it raises. times: only that many calls.
--   k:heal_sink([i])                     (all when i is nil)
--   k:fail_redis(match [, err [, times]])  commands the script sends fail with
--       err (default the host's lost-connection error). match: a command name
--       (any case), "*" for every command, or function(argv) -> truthy.
--   k:heal_redis()
-- Direct k.redis calls never fail this way.
--
-- HTTP and PostgreSQL (rsghost.http, rsghost.pg, rsghost.sink.http and
-- rsghost.sink.postgres), answered at once:
--   k:http_requests()  every request, in order: { method, url, headers =
--       { [Name] = value }, body, timeout }
--   k:answer_http(match [, answer [, times]])  requests whose URL contains
--       match (plain text; "*" any; or function(req) -> truthy) get answer:
--       { status, body, headers }, a status number, an error text (no answer:
--       testing.HTTP_UNREACHABLE is the host's "server down", an outage), or
--       function(req) -> answer, or nil and an error text
--   k:pg_queries()     every query, in order: { conninfo, sql, params, n }
--   k:answer_pg(match [, answer [, times]])  queries whose SQL contains match
--       get answer: rows ({ { column = value }, ... }), { sqlstate, error }
--       (raised as "postgresql error SQLSTATE: error"), an error text
--       (testing.PG_DOWN: the host's failed connection, an outage), or
--       function(query) -> rows, or nil and an error text
--   k:heal_http(), k:heal_pg()  drop the rules
--
-- Limits: one rsghost module serves every kit of a busted run, so
-- rsghost.consumer and rsghost.group are those of the last script loaded.
-- An atomic sink (rsghost.sink.redis_list/redis_stream, atomic = true) has
-- its script played by the kit: it acks (k:acked) and writes each item whose
-- message is still pending, as Redis would.
-- The kit answers Redis synchronously, so a sink never waits; what is acked
-- and when is the same as with the host. Time does not pass for a real
-- server: its keys expire on its own clock, and XADD * takes its ids from it.

local rsghost = require "rsghost"
local native = require "rsghost.native" -- the host's own rules, through the FFI
local script = require "rsghost.script"
local pipeline = require "rsghost.pipeline"
local fakeredis = require "rsghost.fakeredis"
local sinks = require "rsghost.sink"
local testing_net = require "rsghost.testing_net"

local type, pairs, ipairs, tostring, error, setmetatable = type, pairs, ipairs, tostring, error, setmetatable
local format, floor, concat = string.format, math.floor, table.concat
local unpack = unpack or table.unpack

local M = {}

M.EPOCH = 1700000000

-- The host's error when a command's reply was lost with the connection.
M.LOST = "connection to redis lost before the reply came"

local Kit = {}
Kit.__index = Kit

----------------------------------------------------------------------------
-- Helpers

local function copy(t)
  local out = {}
  for i = 1, #t do out[i] = t[i] end
  return out
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for key, x in pairs(v) do out[key] = deep_copy(x) end
  return out
end

-- "file:LINE" of the spec line that called a kit method (level: of the
-- caller, as in error()).
local function caller(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info or not info.currentline or info.currentline <= 0 then return "?" end
  local src = info.source:sub(1, 1) == "@" and info.source:sub(2) or info.short_src
  return format("%s:%d", src, info.currentline)
end

-- A field or value as the host passes it: a string.
local function as_string(v, what)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
    return format("%.17g", v)
  end
  error(format("%s must be a string or a number, got %s", what, t), 4)
end


-- Virtual time is kept in whole microseconds, so that advancing by 0.1 ten
-- times lands exactly where advancing by 1 does.
local function round_us(t)
  return floor(t * 1e6 + 0.5) / 1e6
end

----------------------------------------------------------------------------
-- The host table

-- fsync(2) of the file at path, as the host's file sink does after a write.
local declared = false
local function fsync_path(path)
  local ffi = require "ffi"
  if not declared then
    -- One at a time: another module may have declared some of them already.
    pcall(ffi.cdef, "int open(const char *path, int flags, ...);")
    pcall(ffi.cdef, "int fsync(int fd);")
    pcall(ffi.cdef, "int close(int fd);")
    declared = true
  end
  local fd = ffi.C.open(path, 1) -- O_WRONLY
  if fd >= 0 then
    ffi.C.fsync(fd)
    ffi.C.close(fd)
  end
end

local function make_host(k)
  local host = {}

  function host.now() return k.t end

  function host.send(argv, cb)
    local cmd = copy(argv)
    k._sent[#k._sent + 1] = cmd
    for i, rule in ipairs(k._redis_faults) do
      if rule.match(cmd) then
        if rule.times then
          rule.times = rule.times - 1
          if rule.times <= 0 then table.remove(k._redis_faults, i) end
        end
        return cb(nil, rule.err)
      end
    end
    local atomic = sinks._atomic_parse(cmd)
    if atomic then return cb(k:_atomic(atomic)) end
    local reply, err
    local r = k.redis
    if r.command then
      reply, err = r:command(cmd)
    else
      reply, err = r:pcall(unpack(cmd))
    end
    cb(reply, err)
  end

  function host.ack(acks)
    k._host_calls[#k._host_calls + 1] = { "ack", deep_copy(acks) }
    for stream, ids in pairs(acks) do
      local list = k._acked[stream]
      if list == nil then
        list = {}
        k._acked[stream] = list
      end
      for _, id in ipairs(ids) do list[#list + 1] = id end
    end
  end

  -- Preprocess failed on these: a plain-streams source moves its checkpoint
  -- past them (they are given up); the others ignore it.
  function host.abandon(given_up)
    k._host_calls[#k._host_calls + 1] = { "abandon", deep_copy(given_up) }
    for stream, ids in pairs(given_up) do
      local list = k._abandoned[stream]
      if list == nil then
        list = {}
        k._abandoned[stream] = list
      end
      for _, id in ipairs(ids) do list[#list + 1] = id end
    end
  end

  -- The C host's dead-letter script appends the entry's fields as Redis has
  -- them and acks it; the kit records the same from what was fed.
  function host.dead_letter(stream, id, deliveries, err)
    k._host_calls[#k._host_calls + 1] = { "dead_letter", stream, id, deliveries, err }
    -- A list item is the message: the host's script stores it as field item.
    local flat = k._fields[stream .. "\0" .. id] or (k.cfg.source.kind == "lists" and { "item", id }) or {}
    local fields = {}
    for i = 1, #flat, 2 do fields[#fields + 1] = { flat[i], flat[i + 1] } end
    k._dead[#k._dead + 1] = { stream = stream, id = id, error = err, deliveries = deliveries, fields = fields }
    local list = k._dead_ids[stream]
    if list == nil then
      list = {}
      k._dead_ids[stream] = list
    end
    list[#list + 1] = id
  end

  function host.release(n)
    k._host_calls[#k._host_calls + 1] = { "release", n }
    k._released = k._released + n
  end

  -- The C host arms a libuv timer in whole milliseconds, rounded up.
  function host.set_timer(delay)
    k._host_calls[#k._host_calls + 1] = { "set_timer", delay }
    if delay == nil then
      k.timer = nil
    else
      local ms = floor(delay * 1000 + 0.999)
      k.timer = round_us(k.t + ms / 1000)
    end
  end

  function host.pause(flag)
    k._host_calls[#k._host_calls + 1] = { "pause", flag }
    k._paused = flag and true or false
  end

  function host.log(level, msg)
    k._logs[#k._logs + 1] = { level = level, msg = msg }
    if k.verbose then io.stderr:write("rsghost.testing ", level, ": ", msg, "\n") end
  end

  -- The script's init returned: the host starts reading.
  function host.ready()
    k._host_calls[#k._host_calls + 1] = { "ready" }
    k._ready = true
  end

  -- rsghost.sink.file: the C host appends on libuv's threadpool and
  -- answers later; the kit appends and fsyncs at once (the pipeline takes a
  -- synchronous answer the same way). Reopened each time, so a rotation
  -- needs nothing more.
  function host.file_append(req, cb)
    k._host_calls[#k._host_calls + 1] = { "file_append", req.path, req.data, req.fsync }
    local f, err = io.open(req.path, "ab")
    if not f then return cb(nil, format("cannot open '%s': %s", req.path, tostring(err))) end
    local ok, werr = f:write(req.data)
    if ok then ok, werr = f:flush() end
    f:close()
    if not ok then return cb(nil, format("cannot write to '%s': %s", req.path, tostring(werr))) end
    if req.fsync then fsync_path(req.path) end
    cb(true)
  end

  -- rsghost.http and rsghost.pg: faked or real (rsghost.testing_net).
  function host.http(req, cb) return k._net:http(req, cb) end
  function host.pg_open(conninfo) return k._net:pg_open(conninfo) end
  function host.pg_query(req, cb) return k._net:pg_query(req, cb) end

  function host.finished(unsunk)
    k._host_calls[#k._host_calls + 1] = { "finished", unsunk }
    k._finished = true
    k._given_up = unsunk or 0
  end

  return host
end

----------------------------------------------------------------------------
-- Sinks, wrapped to record what they get and to fail on demand

local function wrap_sink(k, index, sink)
  return function(items, meta)
    local calls = k._sink_calls[index]
    calls[#calls + 1] = copy(items)
    local metas = k._sink_metas[index]
    metas[#metas + 1] = { ids = copy(meta.ids), streams = copy(meta.streams), n = meta.n, group = meta.group,
      deliveries = deep_copy(meta.deliveries) }
    local fault = k._sink_faults[index]
    if fault then
      if fault.times then
        fault.times = fault.times - 1
        if fault.times <= 0 then k._sink_faults[index] = nil end
      end
      if fault.fn then fault.fn(items) else error(fault.err, 0) end
    end
    sink(items, meta)
    -- Every sink done with this batch: the pipeline acks it now.
    local done = k._sink_done[items]
    if done == nil then
      done = { n = 0 }
      k._sink_done[items] = done
    end
    if not done[index] then
      done[index] = true
      done.n = done.n + 1
      if done.n == #k.cfg.sinks then
        k._sink_done[items] = nil
        k._batches[#k._batches + 1] = copy(items)
      end
    end
  end
end

----------------------------------------------------------------------------
-- Loading

function M.load(source, opts)
  opts = opts or {}
  local k = setmetatable({
    t = 0,
    timer = nil, -- virtual time at which the host's timer fires, or nil
    epoch = opts.epoch or M.EPOCH,
    verbose = opts.verbose or os.getenv("RSGHOST_TESTING_VERBOSE") ~= nil,
    _sent = {}, _host_calls = {}, _acked = {}, _abandoned = {}, _dead = {}, _dead_ids = {}, _fields = {}, _logs = {},
    _released = 0, _paused = false, _finished = false, _stopped = false,
    _fed = {}, _fed_count = 0,
    _last_id = {}, -- stream -> { ms, seq } of the last generated id
    _sink_calls = {}, _sink_metas = {}, _sink_faults = {}, _sink_done = setmetatable({}, { __mode = "k" }),
    _batches = {},
    _redis_faults = {},
  }, Kit)

  local redis = opts.redis
  if redis == nil then
    k.redis = fakeredis.new { clock = function() return k.epoch + k.t end }
  elseif type(redis) == "string" then
    k.redis = require("rsghost.hiredis").connect(redis)
    k._owns_redis = true
  else
    k.redis = redis
  end

  k._net = testing_net.new(opts)
  local host = make_host(k)
  k.host = host
  -- rsghost.log at the script's top level goes to this kit's log.
  rsghost._state.host = host

  local consumer = opts.consumer or "rsghost-test"
  local cfg
  if type(source) == "string" then
    cfg = script.load(source, { consumer = consumer })
  elseif type(source) == "table" then
    rsghost.consumer = consumer
    local path = opts.path or caller(2):match("^(.*):%d+$")
    cfg = script.validate(source, path)
    rsghost.group = cfg.source.group
  else
    error("rsghost.testing.load: expects a script path or a script's table, got " .. type(source), 2)
  end
  k.cfg = cfg

  local src = cfg.source
  k._names = {}
  if src.kind == "lists" then
    for _, name in ipairs(src.lists) do k._names[name] = true end
  else
    for _, s in ipairs(src.streams) do k._names[s.name] = true end
  end
  local enc = src.encoding:lower():gsub("[-_]", "")
  k._check_utf8 = src.convert and enc == "utf8"
  k._consumer = consumer

  -- The pipeline gets the wrapped sinks; k.cfg keeps the script's own.
  local run_cfg = {}
  for key, v in pairs(cfg) do run_cfg[key] = v end
  run_cfg.sinks = {}
  for i, sink in ipairs(cfg.sinks) do
    k._sink_calls[i] = {}
    k._sink_metas[i] = {}
    run_cfg.sinks[i] = wrap_sink(k, i, sink)
  end
  k.pipeline = pipeline.new(run_cfg, host)
  -- As the host does once its command connection is up: init, then reads.
  k.pipeline:start()
  return k
end

-- Close a connection the kit opened (opts.redis given as a URL).
function Kit:close()
  self._net:close()
  if self._owns_redis then
    self.redis:close()
    self._owns_redis = false
  end
end

----------------------------------------------------------------------------
-- Feeding

-- The next "<ms>-<seq>" of a stream on the virtual clock (XADD * rules).
function Kit:_next_id(stream)
  local ms = floor((self.epoch + self.t) * 1000)
  local last = self._last_id[stream]
  local seq = 0
  if last and ms <= last[1] then ms, seq = last[1], last[2] + 1 end
  self._last_id[stream] = { ms, seq }
  return format("%d-%d", ms, seq)
end

-- An explicit id moves the generator past it.
function Kit:_saw_id(stream, id)
  local ms, seq = id:match("^(%d+)%-(%d+)$")
  if not ms then return end
  ms, seq = tonumber(ms), tonumber(seq)
  local last = self._last_id[stream]
  if last == nil or ms > last[1] or (ms == last[1] and seq > last[2]) then
    self._last_id[stream] = { ms, seq }
  end
end

-- One message of a feed as { stream, id, data, fields }: fields is the flat
-- { f, v, ... } list in the order the host would check it.
function Kit:_message(entry, where)
  local stream, id, data, opts = entry[1], entry[2], entry[3], entry[4]
  if type(id) == "table" and type(data) == "table" and opts == nil and #data == 0 and data.deliveries then
    id, data, opts = nil, id, data -- k:feed(stream, data, opts)
  end
  local deliveries = entry.deliveries or (type(opts) == "table" and opts.deliveries) or nil
  if deliveries ~= nil and (type(deliveries) ~= "number" or deliveries < 1 or deliveries ~= floor(deliveries)) then
    error(format("%s: deliveries must be a positive integer, got %s", where, tostring(deliveries)), 3)
  end
  if type(stream) ~= "string" then
    error(format("%s: stream must be a string, got %s", where, type(stream)), 3)
  end
  if not self._names[stream] then
    local names = {}
    for name in pairs(self._names) do names[#names + 1] = format("%q", name) end
    table.sort(names)
    error(format("%s: %q is not a source of this script (it reads %s)", where, stream, concat(names, ", ")), 3)
  end
  if self.cfg.source.kind == "lists" then
    return { stream, as_string(id, where .. ": the item"), false }
  end
  if type(id) == "table" and data == nil then id, data = nil, id end
  if id == nil or id == "*" then
    id = self:_next_id(stream)
  else
    id = as_string(id, where .. ": the id")
    self:_saw_id(stream, id)
  end
  if type(data) ~= "table" then
    error(format("%s: data must be a table { field = value } or { field, value, ... }, got %s", where, type(data)), 3)
  end
  local map, fields = {}, {}
  if #data > 0 then
    if #data % 2 == 1 then error(format("%s: data { field, value, ... } has an odd length", where), 3) end
    for i = 1, #data, 2 do
      local f, v = as_string(data[i], where .. ": a field"), as_string(data[i + 1], where .. ": a value")
      fields[#fields + 1], fields[#fields + 2] = f, v
      map[f] = v -- a field given twice: the last one wins, as in the host
    end
  else
    for f, v in pairs(data) do
      f, v = as_string(f, where .. ": a field"), as_string(v, where .. ": a value")
      fields[#fields + 1], fields[#fields + 2] = f, v
      map[f] = v
    end
  end
  if #fields == 0 then error(format("%s: a stream message has at least one field", where), 3) end
  return { stream, id, map, fields, deliveries }
end

-- What the host does with one read: check it is a read the host could make,
-- drop what it would not feed, and call p:feed once.
function Kit:_read(msgs, where)
  if self._stopped then
    error(where .. ": the host reads nothing after k:stop()", 3)
  end
  if not self._ready then
    error(where .. ": the host reads nothing before the script's init has returned (it is failing: "
      .. "see k:logs(), let its retry run with k:advance)", 3)
  end
  local src = self.cfg.source
  local nkeys = 0
  for _ in pairs(self._names) do nkeys = nkeys + 1 end
  local one_list = src.kind == "lists" and not src.reliable
  if one_list then
    -- BLMPOP pops from one list, COUNT items in all.
    for _, m in ipairs(msgs) do
      if m[1] ~= msgs[1][1] then
        error(format("%s: items of %q and %q in one read, but the host pops from one list at a time "
          .. "(source.reliable false): feed them in several reads", where, msgs[1][1], m[1]), 3)
      end
    end
    nkeys = 1
  end
  -- The host's own read sizing (host/rules.h): the room left, shared among
  -- the keys, capped by source.count or, without it, by read_chunk; for
  -- streams never thinner than a floor a key (a window of them is read
  -- instead), for lists evenly (rsgReadShare).
  local rule = src.kind == "lists" and native.read_share or native.read_count
  local per_key = rule(src.max_in_flight - self:in_flight(), nkeys, src.count, src.read_chunk)
  local counts = {}
  for _, m in ipairs(msgs) do counts[m[1]] = (counts[m[1]] or 0) + 1 end
  for _, m in ipairs(msgs) do
    local c = counts[m[1]]
    if c > per_key then
      error(format("%s: %d messages from %q in one read, but the host reads at most %d per %s here "
        .. "(source.count %s, read size %d, source.max_in_flight %d with %d in flight, %d source(s)): "
        .. "feed them in several reads",
        where, c, m[1], per_key, src.kind == "lists" and "list" or "stream", tostring(src.count),
        src.read_chunk, src.max_in_flight, self:in_flight(), nkeys), 3)
    end
  end

  local flat, n = {}, 0
  -- As the host: delivery counts only when some message is not at its first
  -- (a replay or a claim), fields in order only for a preprocess that asks.
  local deliveries, fields = nil, self.pipeline.wants_info and {} or nil
  for _, m in ipairs(msgs) do
    if m[5] then deliveries = {} end
  end
  for _, m in ipairs(msgs) do
    local ok = true
    if self._check_utf8 and src.kind == "lists" then
      -- The host checks a list item as it checks a message's fields
      -- (host/source_lists.c, collectItems): logged and never fed; a reliable
      -- list keeps it in its processing list, a plain one has popped it.
      local why = native.utf8_why(m[2])
      if why then
        local proc = src.reliable and format("rsghost:processing:%s:%s", self._consumer, m[1]) or nil
        local dead = self.pipeline.dead_letter_key
        self.host.log("error", native.bad_item_line(m[1], proc, m[2], why, dead))
        if dead then
          self.host.dead_letter(m[1], m[2], 1, native.bad_item_what(why))
        elseif src.reliable then
          self._fed[#self._fed + 1] = { m[1], m[2] }
        end
        ok = false
      end
    elseif self._check_utf8 then
      local fields = m[4]
      for i = 1, #fields do
        local why = native.utf8_why(fields[i])
        if why then
          local dead = self.pipeline.dead_letter_key
          self.host.log("error", native.bad_field_line(m[1], m[2], i - 1, fields[i - 1], why, src.kind == "group",
            dead))
          ok = false
          if dead then
            self._fields[m[1] .. "\0" .. m[2]] = fields
            self.host.dead_letter(m[1], m[2], m[5] or 1, native.bad_field_what(i - 1, fields[i - 1], why))
          elseif src.kind == "group" then
            self._fed[#self._fed + 1] = { m[1], m[2] }
          end
          break
        end
      end
    end
    if ok then
      flat[3 * n + 1], flat[3 * n + 2], flat[3 * n + 3] = m[1], m[2], m[3]
      n = n + 1
      if deliveries then deliveries[n] = m[5] or 1 end
      if m[4] then
        if self.pipeline.dead_letter_key then self._fields[m[1] .. "\0" .. m[2]] = m[4] end
        if fields then
          local f = {}
          for i = 1, #m[4], 2 do f[#f + 1] = { m[4][i], m[4][i + 1] } end
          fields[n] = f
        end
      end
      self._fed[#self._fed + 1] = { m[1], m[2] }
    end
  end
  if n == 0 then return end
  self._fed_count = self._fed_count + n
  self.pipeline:feed(flat, n, deliveries, fields)
end

-- One read holding one message. Returns its id (the item for lists).
function Kit:feed(stream, id, data, opts)
  local m = self:_message({ stream, id, data, opts }, "k:feed")
  self:_read({ m }, "k:feed")
  return m[2]
end

-- One read holding several messages: { {stream, id, data}, ... } (or
-- {stream, data}, or {list, item}). Returns their ids in order.
function Kit:feed_many(list)
  if type(list) ~= "table" then error("k:feed_many expects an array of messages", 2) end
  local msgs, ids = {}, {}
  for i, entry in ipairs(list) do
    if type(entry) ~= "table" then error(format("k:feed_many: message %d must be a table", i), 2) end
    msgs[i] = self:_message(entry, format("k:feed_many: message %d", i))
    ids[i] = msgs[i][2]
  end
  if #msgs > 0 then self:_read(msgs, "k:feed_many") end
  return ids
end

----------------------------------------------------------------------------
-- Time

function Kit:now() return self.t end

-- Seconds until the armed timer fires, or nil.
function Kit:next_timer()
  if self.timer == nil then return nil end
  local d = self.timer - self.t
  return d > 0 and d or 0
end

-- Let `seconds` of virtual time pass, firing the timer whenever it is due.
function Kit:advance(seconds)
  if type(seconds) ~= "number" or seconds < 0 then
    error("k:advance expects a number of seconds >= 0", 2)
  end
  local target = round_us(self.t + seconds)
  local fired = 0
  while self.timer ~= nil and self.timer <= target do
    if self.timer > self.t then self.t = self.timer end
    self.timer = nil
    self.pipeline:tick()
    fired = fired + 1
    if fired > 1e6 then error("k:advance: the pipeline's timer keeps firing without time passing", 2) end
  end
  self.t = target
end

-- Advance timer by timer until none is armed, or max seconds (default 3600)
-- have passed. Returns the virtual seconds that passed.
function Kit:drain(max)
  local start = self.t
  local limit = round_us(start + (max or 3600))
  while self.timer ~= nil and self.timer <= limit do
    self:advance(self.timer - self.t)
  end
  if self.timer ~= nil then self:advance(limit - self.t) end
  return self.t - start
end

-- The host's SIGTERM: no more reads, flush the partial batch. Returns
-- whether everything is sunk and acked. A sink that fails while stopping
-- makes the stop give up after its attempt (k:given_up() counts the
-- messages left unacked), as the host does.
function Kit:stop()
  self._stopped = true
  self.pipeline:stop()
  return self._finished and self._given_up == 0
end

-- Messages a stop gave up on because a sink kept failing (0 otherwise).
function Kit:given_up() return self._given_up or 0 end

----------------------------------------------------------------------------
-- Looking

function Kit:sink_calls(i)
  i = i or 1
  local calls = self._sink_calls[i]
  if calls == nil then error(format("k:sink_calls: the script has no sink %s", tostring(i)), 2) end
  return deep_copy(calls)
end

-- The meta (ids, streams, n, group) of every call of sink i, matching
-- k:sink_calls(i) call for call.
function Kit:sink_metas(i)
  i = i or 1
  local metas = self._sink_metas[i]
  if metas == nil then error(format("k:sink_metas: the script has no sink %s", tostring(i)), 2) end
  return deep_copy(metas)
end

function Kit:batches() return deep_copy(self._batches) end

function Kit:sunk()
  local out = {}
  for _, b in ipairs(self._batches) do
    for _, item in ipairs(b) do out[#out + 1] = item end
  end
  return out
end

function Kit:acked(stream)
  if stream ~= nil then return copy(self._acked[stream] or {}) end
  return deep_copy(self._acked)
end

function Kit:pending()
  local left = {}
  local function settled(t)
    for stream, ids in pairs(t) do
      local counts = left[stream] or {}
      left[stream] = counts
      for _, id in ipairs(ids) do counts[id] = (counts[id] or 0) + 1 end
    end
  end
  settled(self._acked)
  settled(self._dead_ids) -- dead-lettered: acked by the same script
  -- A plain-streams source keeps no pending list: its checkpoint moves past
  -- what preprocess failed on.
  if self.cfg.source.kind == "streams" then settled(self._abandoned) end
  local out = {}
  for _, m in ipairs(self._fed) do
    local counts = left[m[1]]
    if counts and (counts[m[2]] or 0) > 0 then
      counts[m[2]] = counts[m[2]] - 1
    else
      local list = out[m[1]]
      if list == nil then
        list = {}
        out[m[1]] = list
      end
      list[#list + 1] = m[2]
    end
  end
  return out
end

-- An atomic sink's script (rsghost.sink, atomic = true), played by the kit
-- as Redis runs it: each message that is still pending (fed, not acked) is
-- acked and its item written, in order; the others are skipped. The
-- target's type is checked first, as the script does. Returns the number
-- written, or nil and the error.
function Kit:_atomic(a)
  local r = self.redis
  local function run(argv)
    if r.command then return r:command(argv) end
    return r:pcall(unpack(argv))
  end
  local want = a.cmd == "XADD" and "stream" or "list"
  local t = run({ "TYPE", a.key })
  if type(t) == "table" then t = t.ok end
  if t ~= "none" and t ~= want then
    return nil, format("WRONGTYPE %s holds a %s, not a %s; nothing written or acked", a.key, tostring(t), want)
  end
  local left = {}
  for stream, ids in pairs(self:pending()) do
    local counts = {}
    for _, id in ipairs(ids) do counts[id] = (counts[id] or 0) + 1 end
    left[stream] = counts
  end
  local n = 0
  for _, e in ipairs(a.entries) do
    local counts = left[e.stream]
    if counts and (counts[e.id] or 0) > 0 then
      counts[e.id] = counts[e.id] - 1
      local list = self._acked[e.stream]
      if list == nil then
        list = {}
        self._acked[e.stream] = list
      end
      list[#list + 1] = e.id
      local argv = { a.cmd, a.key }
      for _, x in ipairs(a.head) do argv[#argv + 1] = x end
      for _, x in ipairs(e.values) do argv[#argv + 1] = x end
      local _, err = run(argv)
      if err ~= nil then return nil, err end
      n = n + 1
    end
  end
  return n
end

-- What was dead-lettered, in order: { stream =, id =, error =, deliveries =,
-- fields = { {name, value}, ... } } (the fields as fed).
function Kit:dead_letters() return deep_copy(self._dead) end

function Kit:in_flight() return self._fed_count - self._released end
function Kit:ready() return self._ready == true end
function Kit:paused() return self._paused end
function Kit:finished() return self._finished end

function Kit:logs(level)
  local out = {}
  for _, l in ipairs(self._logs) do
    if level == nil or l.level == level then out[#out + 1] = { level = l.level, msg = l.msg } end
  end
  return out
end

function Kit:logged(pattern, level)
  for _, l in ipairs(self._logs) do
    if (level == nil or l.level == level) and l.msg:find(pattern) then return l.msg end
  end
  return nil
end

function Kit:sent() return deep_copy(self._sent) end
function Kit:host_calls() return deep_copy(self._host_calls) end

----------------------------------------------------------------------------
-- Failing

function Kit:fail_sink(i, what, times)
  if type(i) ~= "number" or self._sink_calls[i] == nil then
    error(format("k:fail_sink: the script has no sink %s", tostring(i)), 2)
  end
  local fault = { times = times }
  if type(what) == "function" then
    fault.fn = what
  else
    -- Positioned at the spec line that injected it, so the pipeline's log
    -- names that line rather than a line of the kit.
    fault.err = format("%s: %s", caller(2), what == nil and format("sink %d failure injected by k:fail_sink", i)
      or tostring(what))
  end
  self._sink_faults[i] = fault
end

function Kit:heal_sink(i)
  if i == nil then self._sink_faults = {} else self._sink_faults[i] = nil end
end

function Kit:fail_redis(match, err, times)
  local fn
  if type(match) == "function" then
    fn = match
  elseif match == "*" then
    fn = function() return true end
  elseif type(match) == "string" then
    local name = match:upper()
    fn = function(argv) return tostring(argv[1]):upper() == name end
  else
    error("k:fail_redis: match must be a command name, \"*\" or a function(argv)", 2)
  end
  self._redis_faults[#self._redis_faults + 1] = { match = fn, err = err or M.LOST, times = times }
end

function Kit:heal_redis()
  self._redis_faults = {}
end

----------------------------------------------------------------------------
-- HTTP and PostgreSQL (rsghost.testing_net)

function Kit:http_requests() return deep_copy(self._net.requests) end
function Kit:pg_queries() return deep_copy(self._net.queries) end

function Kit:answer_http(match, answer, times)
  local t = type(answer)
  if t ~= "table" and t ~= "function" and t ~= "string" and t ~= "number" then
    error("k:answer_http: answer must be { status, body, headers }, a status, an error text or a function", 2)
  end
  self._net:answer_http(match, answer, times)
end

function Kit:answer_pg(match, answer, times)
  local t = type(answer)
  if t ~= "table" and t ~= "function" and t ~= "string" then
    error("k:answer_pg: answer must be rows, { sqlstate, error }, an error text or a function", 2)
  end
  self._net:answer_pg(match, answer, times)
end

function Kit:heal_http() self._net.http_rules = {} end
function Kit:heal_pg() self._net.pg_rules = {} end

M.HTTP_UNREACHABLE = testing_net.HTTP_UNREACHABLE
M.PG_DOWN = testing_net.PG_DOWN

return M
