-- The pipeline runner: messages in (p:feed), preprocess, batches, sinks,
-- acknowledgements out. The C host and the test kit both drive this file
-- through a `host` table (now, send, ack, abandon, release, set_timer,
-- pause, ready, finished, log, dead_letter, the operations sinks yield
-- for by name (file_append), and the flag debug: host/lua_bridge.c builds
-- the C host's, rsghost.testing's make_host the kit's), so there is one
-- implementation of the pipeline's semantics.
--
-- A host that counts (rsghost --metrics) also has count_feed(dropped,
-- failed), count_flush(reason), count_sink(index, seconds, failed) and
-- count_acked(n, seconds); they are called once per feed or per batch,
-- never per message, and not at all when the host has none.
--
-- Flow of a message: feed -> preprocess (xpcall) -> current batch -> (full,
-- timed out, end of feed with timeout 0, or stop) -> queue -> sinks, one
-- batch at a time, each sink in its own coroutine -> when every sink has
-- returned: host.ack + host.release. A sink that raises holds its batch (and
-- the queue behind it): reading pauses and only the failed sinks are re-run
-- after a capped exponential backoff.
--
-- With source.dead_letter, a message preprocess raises on, or one Redis has
-- delivered more than source.max_deliveries times, goes to
-- host.dead_letter(stream, id, deliveries, err) instead of staying pending:
-- the host appends it to the dead-letter stream and takes it out of the
-- source (XACK, or out of a reliable list's processing list) in one
-- server-side script (host/dead_letter.h; the kit records it).
--
-- With retry.max_attempts (which needs dead_letter), a batch a sink still
-- rejects after that many attempts is bisected: its halves are sunk one at a
-- time, a half that fails is halved again, and an item that fails alone is
-- dead-lettered with the sink's error; the rest are acked together at the
-- end. Errors of Redis going away (TRANSIENT) never count as attempts: an
-- outage is waited out, never turned into dead letters.
--
-- feed is the hot path: one xpcall per message and three array stores; the
-- error handler and every per-batch table are built outside the loop.

local rsghost = require "rsghost"
local batching = require "rsghost.batch"
local script = require "rsghost.script"

local xpcall, type, tostring, setmetatable, pcall = xpcall, type, tostring, setmetatable, pcall
local format, min, floor = string.format, math.min, math.floor
local create, resume, status = coroutine.create, coroutine.resume, coroutine.status
local where, acks_of = script.where, batching.acks

local state = rsghost._state
local MARKER = rsghost._MARKER

-- A timer may fire a little early (hosts round to milliseconds); a deadline
-- this close counts as passed rather than re-arming for a sliver of time.
local EARLY = 0.0005

local M = {}

local FATE = {
  group = "left pending (not acked)",
  streams = "skipped (plain streams keep no pending list)",
}

local P = {}
P.__index = P

----------------------------------------------------------------------------
-- Timer

-- Arm the host's single timer for the next thing due (the current batch's
-- timeout or the active batch's retry), or cancel it. Calls the host only
-- when that changes.
function P:arm()
  local at = self.batch:deadline()
  local flush = self.active
  if flush and flush.retry_at and (at == nil or flush.retry_at < at) then at = flush.retry_at end
  local init_at = self.init_retry_at
  if init_at and (at == nil or init_at < at) then at = init_at end
  if self.ready and not self.stopping then
    local timers = self.timers
    for i = 1, #timers do
      local tm = timers[i]
      if tm.next_at == nil then tm.next_at = self.host.now() + tm.every end
      if not tm.running and (at == nil or tm.next_at < at) then at = tm.next_at end
    end
  end
  if at == self.timer_at then return end
  self.timer_at = at
  if at == nil then
    self.host.set_timer(nil)
  else
    local delay = at - self.host.now()
    self.host.set_timer(delay > 0 and delay or 0)
  end
end

----------------------------------------------------------------------------
-- Tasks: a coroutine per sink per run (and one for init and for each run of
-- a timer), driven by a loop so that a host whose send calls back
-- synchronously costs no stack per command. task.done(task, err) is called
-- when the coroutine ends (err nil) or raises.

local function describe_yield(v)
  return format("sink yielded %s instead of waiting in rsghost.redis (coroutine.yield cannot be used in a sink)",
    tostring(v))
end

-- Resume task's coroutine with (a, b, c) and keep it going while the host
-- answers synchronously. Returns when the coroutine ended or waits on an
-- asynchronous reply (its callback calls drive again).
local function drive(task, a, b, c)
  local co, p = task.co, task.p
  local host = p.host
  local finish = task.done
  while true do
    local prev_task, prev_host, prev_timers = state.task, state.host, state.timers
    state.task, state.host, state.timers = co, host, p.timers
    local ok, marker, req, n = resume(co, a, b, c)
    state.task, state.host, state.timers = prev_task, prev_host, prev_timers
    if not ok then return finish(task, where(marker, p.path, co, 0)) end
    if status(co) == "dead" then return finish(task, nil) end
    if marker ~= MARKER then return finish(task, where(describe_yield(marker), p.path, co, 0)) end

    -- Each request gets a number; a callback for an older request, or a
    -- second call of the same callback, is ignored (task.seq has moved on).
    local seq = task.seq + 1
    task.seq, task.sync, task.got = seq, true, false
    if n == nil or type(n) == "string" then
      -- One request: a Redis command (host.send), or for a string n another
      -- host operation, host[n](req, cb) (the file sink's "file_append"), with
      -- the same contract: cb(result, err) exactly once, maybe synchronously.
      local op = n == nil and host.send or host[n]
      local cb = function(reply, err)
        if task.seq ~= seq then return end
        task.seq = seq + 1
        if task.sync then
          task.got, task.ra, task.rb = true, reply, err
        else
          drive(task, reply, err)
        end
      end
      local sent, err
      if op == nil then
        sent, err = false, "this host has no operation " .. tostring(n)
      else
        sent, err = pcall(op, req, cb)
      end
      if not sent and task.seq == seq then cb(nil, "host." .. (n or "send") .. " failed: " .. tostring(err)) end
    else
      -- A pipeline: n commands, one callback each, resumed once all answered.
      local replies, left, first_err, first_at = {}, n, nil, nil
      for i = 1, n do
        local cb = function(reply, err)
          if task.seq ~= seq or replies[i] ~= nil then return end
          if err ~= nil then
            replies[i] = false
            if first_at == nil or i < first_at then first_err, first_at = err, i end
          else
            if reply == nil then reply = false end
            replies[i] = reply
          end
          left = left - 1
          if left > 0 then return end
          task.seq = seq + 1
          if task.sync then
            task.got, task.ra, task.rb, task.rc = true, replies, first_err, first_at
          else
            drive(task, replies, first_err, first_at)
          end
        end
        local sent, err = pcall(host.send, req[i], cb)
        if not sent and task.seq == seq and replies[i] == nil then
          cb(nil, "host.send failed: " .. tostring(err))
        end
      end
    end
    task.sync = false
    if not task.got then return end
    a, b, c = task.ra, task.rb, task.rc
    task.ra, task.rb, task.rc = nil, nil, nil
  end
end

local finish -- forward: a sink task's end (defined below)

-- A sink's second argument: where its items came from, item i from message
-- ids[i] of stream streams[i] (for a lists source: streams[i] is the list
-- and ids[i] the item as popped, its raw bytes, the only identity a list
-- item has). The batch's own arrays, not copies: a sink must not change
-- them (they are what gets acked). group is the consumer group (nil for
-- the other sources). deliveries: nil while every item is at its first
-- delivery, else deliveries[i] is Redis's times-delivered of item i (nil
-- meaning 1): a sink may look for an earlier write of a replayed item.
local function meta_of(p, ids, streams, n, deliveries)
  return { ids = ids, streams = streams, n = n, group = p.group, deliveries = deliveries }
end

-- Run the sinks listed in `which` (indexes into p.sinks) on the active
-- flush's items (its batch's, or the part being bisected): sink(items, meta).
local function run_sinks(p, flush, which)
  local items, meta = flush.items, flush.meta
  local n = #which
  flush.running = n
  flush.failed = {}
  for i = 1, n do
    local index = which[i]
    local task = { p = p, flush = flush, index = index, co = create(p.sinks[index]), seq = 0, done = finish }
    if p.counting then task.t0 = p.host.now() end
    drive(task, items, meta)
  end
end

-- A batch is sunk: acknowledge it (unless an atomic sink did), resume reading if a failure paused it, and
-- start the next batch.
-- After a bisection the dead-lettered items (acked by their dead letter)
-- are left out of the ack.
local function settle(p, flush)
  local host, b = p.host, flush.batch
  p.active = nil
  local dead = flush.dead
  if dead then
    local kept = { streams = {}, ids = {}, n = 0 }
    for i = 1, b.n do
      if not dead[i] then
        local k = kept.n + 1
        kept.streams[k], kept.ids[k], kept.n = b.streams[i], b.ids[i], k
      end
    end
    if kept.n > 0 and not p.sink_acks then host.ack(acks_of(kept)) end
    if p.counting and b.first_at then host.count_acked(kept.n, host.now() - b.first_at) end
    p:log("info", format("batch of %d messages bisected: %d dead-lettered, %d sunk and acked",
      b.n, flush.ndead, kept.n))
  else
    if p.debug then p:log("debug", format("batch of %d message(s) sunk on attempt %d; acking them", b.n, flush.attempt)) end
    if not p.sink_acks then host.ack(acks_of(b)) end
    if p.counting and b.first_at then host.count_acked(b.n, host.now() - b.first_at) end
  end
  host.release(b.n)
  if p.paused then
    p.paused = false
    host.pause(false)
    if dead then
      p:log("info", "bisection done; reading resumes")
    else
      p:log("info", format("a batch of %d messages was sunk on attempt %d; reading resumes", b.n, flush.attempt))
    end
  end
  p:pump()
end

-- What becomes of the messages a stop gives up on, by source kind.
local GIVEN_UP = {
  group = "they stay pending in Redis and are replayed at the next start",
  streams = "plain streams keep no pending list: a checkpoint stays before them, so a restart "
    .. "reads them again; without one they are lost",
  lists = "popped items of plain lists are lost",
  reliable = "they stay in the processing lists and are replayed at the next start",
}

-- Stopping while a sink keeps failing: retrying for ever would make the stop
-- never come (systemd and Kubernetes would SIGKILL us). Give up on the
-- failed batch and every batch queued behind it: nothing of them is acked.
-- host.finished(n) tells the host how many messages were not sunk.
local function give_up(p, flush)
  local held = flush.batch.n - (flush.ndead or 0) -- dead letters are acked already
  for i = p.head, p.tail do
    held = held + p.queue[i].n
    p.queue[i] = nil
  end
  p.head, p.tail = 1, 0
  p.active = nil
  p:log("error", format("stopping with %d message(s) not sunk: sink %s still failing after attempt %d; %s",
    held, table.concat(flush.failed, ", "), flush.attempt, p.given_up))
  p.done = true
  p:arm()
  p.host.finished(held)
end

-- The host's errors for Redis going away (host/lua_bridge.c: a command sent
-- while reconnecting, a reply lost with the connection) and a server still
-- loading its data: a sink failing with these is retried for ever and its
-- attempts are not counted, so an outage never ends in dead letters. Matched
-- anywhere in the error, which `where` prefixes with the script's file:line.
local TRANSIENT = {
  "connection to redis lost before the reply came",
  "not connected to redis (reconnecting)",
}

local function transient(err)
  err = tostring(err)
  for i = 1, #TRANSIENT do
    if err:find(TRANSIENT[i], 1, true) then return true end
  end
  return err:find("^LOADING ") ~= nil or err:find(": LOADING ") ~= nil
end

-- The first error among the failed sinks that is not transient, or nil.
local function lasting_error(flush)
  local failed = flush.failed
  for i = 1, #failed do
    local err = flush.errors[failed[i]]
    if not transient(err) then return err, failed[i] end
  end
  return nil
end

-- Bisection: take the next part off flush.parts (a stack, left half on top)
-- and run its sinks on its items; settle the batch when none is left. A
-- part sunk synchronously comes back here from inside run_sinks: that call
-- only marks `again` and the outer loop carries on, so the stack does not
-- grow with the number of parts.
local function next_part(p, flush)
  if flush.stepping then
    flush.again = true
    return
  end
  flush.stepping = true
  repeat
    flush.again = false
    local parts = flush.parts
    local part = parts[#parts]
    if part == nil then
      flush.stepping = false
      return settle(p, flush)
    end
    parts[#parts] = nil
    local b = flush.batch
    local items, ids, streams, all, all_ids, all_streams = {}, {}, {}, b.items, b.ids, b.streams
    local k, all_d, deliveries = 0, b.deliveries, nil
    for i = part.lo, part.hi do
      k = k + 1
      items[k], ids[k], streams[k] = all[i], all_ids[i], all_streams[i]
      if all_d and all_d[i] then
        deliveries = deliveries or {}
        deliveries[k] = all_d[i]
      end
    end
    flush.part, flush.items, flush.attempt, flush.errors = part, items, 1, {}
    flush.meta = meta_of(p, ids, streams, k, deliveries)
    run_sinks(p, flush, part.sinks)
  until not flush.again or p.active ~= flush
  flush.stepping = false
end

-- The current part failed for a lasting reason: an item alone is
-- dead-lettered with its sink's error; a longer part is halved, each half
-- to be run by the sinks that failed on it (the others are done with it).
local function split(p, flush, err, index)
  local part, b = flush.part, flush.batch
  local lo, hi = part.lo, part.hi
  if lo == hi then
    local stream, id = b.streams[lo], b.ids[lo]
    local d = b.deliveries and b.deliveries[lo] or 1
    p:log("error", format("message %s from %s rejected by sink %d on its own; dead-lettered to '%s': %s",
      tostring(id), tostring(stream), index, p.dead_letter_key, err))
    flush.dead[lo] = true
    flush.ndead = flush.ndead + 1
    p:dead_letter(stream, id, d, err)
  else
    local mid = lo + floor((hi - lo) / 2)
    local parts, sinks = flush.parts, flush.failed
    parts[#parts + 1] = { lo = mid + 1, hi = hi, sinks = sinks }
    parts[#parts + 1] = { lo = lo, hi = mid, sinks = sinks }
  end
  next_part(p, flush)
end

-- retry.max_attempts are used up on the whole batch: bisect it with the
-- sinks that failed (those that succeeded have the whole batch already).
local function bisect(p, flush, err)
  local b = flush.batch
  p:log("error", format("sink %s failed %d attempts on a batch of %d messages; bisecting it to find "
    .. "the messages it rejects (they go to '%s'): %s",
    table.concat(flush.failed, ", "), flush.fails, b.n, p.dead_letter_key, err))
  flush.parts, flush.dead, flush.ndead = {}, {}, 0
  flush.part = { lo = 1, hi = b.n, sinks = flush.failed }
  flush.stepping = false
  local _, index = lasting_error(flush)
  split(p, flush, err, index)
end

-- Some sinks failed: log each, pause reading, retry them after the backoff.
-- While stopping there is no next attempt: the stop gives up instead. A
-- lasting error counts an attempt; while bisecting it splits the part at
-- once, and on the whole batch, once retry.max_attempts are used up, it
-- starts the bisection.
local function backoff(p, flush)
  if p.stopping then return give_up(p, flush) end
  if p.max_attempts then
    local err, index = lasting_error(flush)
    if err ~= nil then
      if flush.parts then return split(p, flush, err, index) end
      flush.fails = flush.fails + 1
      if flush.fails >= p.max_attempts then return bisect(p, flush, err) end
    end
  end
  local retry = p.retry
  local attempt = flush.attempt
  local delay = min(retry.initial * 2 ^ (attempt - 1), retry.max)
  local failed, nsinks = flush.failed, #p.sinks
  for i = 1, #failed do
    local index = failed[i]
    p:log("error", format("sink %d of %d failed on a batch of %d messages (attempt %d), retrying in %gs: %s",
      index, nsinks, #flush.items, attempt, delay, flush.errors[index]))
  end
  flush.retry_sinks = failed
  flush.retry_at = p.host.now() + delay
  if not p.paused then
    p.paused = true
    p.host.pause(true)
  end
  p:arm()
end

function finish(task, err)
  local flush = task.flush
  local p = task.p
  if p.counting then p.host.count_sink(task.index, p.host.now() - task.t0, err ~= nil) end
  if err ~= nil then
    flush.failed[#flush.failed + 1] = task.index
    flush.errors[task.index] = err
  end
  local running = flush.running - 1
  flush.running = running
  if running > 0 then return end
  if #flush.failed == 0 then
    if flush.parts then return next_part(task.p, flush) end
    settle(task.p, flush)
  else
    backoff(task.p, flush)
  end
end

----------------------------------------------------------------------------
-- Queue

-- Start queued batches while no batch is being sunk. Re-entrant calls (a batch
-- sunk synchronously from inside this loop) return at once: the outer loop
-- carries on, so the stack does not grow with the queue.
function P:pump()
  if self.pumping then return end
  self.pumping = true
  local queue = self.queue
  while self.active == nil and self.head <= self.tail do
    local b = queue[self.head]
    queue[self.head] = nil
    self.head = self.head + 1
    local flush = { batch = b, items = b.items, meta = meta_of(self, b.ids, b.streams, b.n, b.deliveries),
      attempt = 1, fails = 0, running = 0, failed = nil, errors = {} }
    self.active = flush
    run_sinks(self, flush, self.all_sinks)
  end
  self.pumping = false
  self:check_finished()
end

-- reason: why the batch was closed (size, timeout, end of read, stop), for
-- the debug log.
function P:enqueue(b, reason)
  if self.debug then self:log("debug", format("batch of %d message(s) flushed (%s)", b.n, reason)) end
  if self.counting then self.host.count_flush(reason) end
  local tail = self.tail + 1
  self.tail = tail
  self.queue[tail] = b
  self:pump()
end

function P:check_finished()
  if self.stopping and not self.done and self.active == nil and self.head > self.tail
      and self.batch.n == 0 and self.tasks == 0 then
    self.done = true
    self:arm()
    self.host.finished(0)
  end
end

function P:log(level, msg)
  self.host.log(level, msg)
end

----------------------------------------------------------------------------
-- The script's own tasks: init, and the timers rsghost.every registers

-- Runs fn in a task coroutine; then(err) when it ended (err nil) or raised.
function P:run_task(fn, then_)
  self.tasks = self.tasks + 1
  local task = { p = self, co = create(fn), seq = 0 }
  task.done = function(_, err)
    self.tasks = self.tasks - 1
    then_(err)
    self:check_finished()
  end
  drive(task)
end

-- init is done: the host may read; timers start counting.
function P:became_ready()
  self.ready = true
  self.init_retry_at, self.init_attempt = nil, nil
  self.host.ready()
  self:arm()
end

function P:run_init()
  self:run_task(self.init, function(err)
    if err == nil then return self:became_ready() end
    local attempt = self.init_attempt or 1
    if self.stopping then
      self:log("error", format("init failed (attempt %d) while stopping: %s", attempt, err))
      return
    end
    local delay = min(self.retry.initial * 2 ^ (attempt - 1), self.retry.max)
    self:log("error", format("init failed (attempt %d), nothing is read until it succeeds; retrying in %gs: %s",
      attempt, delay, err))
    self.init_attempt = attempt + 1
    self.init_retry_at = self.host.now() + delay
    self:arm()
  end)
end

-- The host can send commands: run the script's init (if any) before the
-- first read; host.ready() once it returned. An init that raises is retried
-- with the retry backoff (Redis may be away), and nothing is read meanwhile.
function P:start()
  local prev_host = state.host
  state.host = self.host
  if self.init then self:run_init() else self:became_ready() end
  state.host = prev_host
end

-- Due timers run, each in its own task; a run still going when the next is
-- due is skipped (runs never overlap). Errors are logged, the timer goes on.
function P:run_timers(now)
  if not self.ready or self.stopping then return end
  local timers = self.timers
  for i = 1, #timers do
    local tm = timers[i]
    if tm.next_at and now >= tm.next_at and not tm.running then
      tm.next_at = now + tm.every
      tm.running = true
      self:run_task(tm.fn, function(err)
        tm.running = false
        if err ~= nil then
          self:log("error", format("timer (every %gs) failed: %s", tm.every, err))
        end
        if not self.done then self:arm() end
      end)
    end
  end
end

----------------------------------------------------------------------------
-- Host entry points

-- Adds id to t[stream] (creating both as needed); returns t.
local function group_id(t, stream, id)
  t = t or {}
  local list = t[stream]
  if list == nil then
    list = {}
    t[stream] = list
  end
  list[#list + 1] = id
  return t
end

-- Feed n messages in a flat array: msgs[3i+1] stream (or list) name,
-- msgs[3i+2] id, msgs[3i+3] data table. For lists, msgs[3i+2] is the token
-- the host acks with (the item's raw bytes) and msgs[3i+3] the item as
-- preprocess sees it (converted from source.encoding); a false item means
-- the token is the item.
-- deliveries: nil (every message at its first delivery: a live read), or
-- deliveries[i+1] Redis's times-delivered of message i (replayed or claimed
-- entries). fields: nil, or fields[i+1] message i's { {name, value}, ... }
-- in Redis's order; the host gives it only when p.wants_info (preprocess
-- declares a 4th parameter). So a live read to a 3-parameter preprocess
-- costs what it did before: one nil test per message.
function P:feed(msgs, n, deliveries, fields)
  if self.stopping then error("rsghost.pipeline: feed after stop", 2) end
  n = n or #msgs / 3
  local host = self.host
  local prev_host = state.host
  state.host = host
  local preprocess, handler, batch, lists = self.preprocess, self.handler, self.batch, self.lists
  local max, wants_info = self.max_deliveries, self.wants_info
  local add = batch.add
  local released, drops, failed = 0, nil, nil
  local ndropped, nfailed = 0, 0 -- for host.count_feed
  for i = 1, 3 * n, 3 do
    local stream, id, data = msgs[i], msgs[i + 1], msgs[i + 2]
    local ok, out
    local d -- nil: a live read's first delivery
    if deliveries then d = deliveries[(i + 2) / 3] end
    if max and d and d > max then
      -- Delivered max times already and never acked: not preprocessed again.
      local why = format("delivered %d times without being acknowledged", max)
      self:log("error", format("message %s from %s was %s; dead-lettered to '%s'",
        tostring(id), tostring(stream), why, self.dead_letter_key))
      self:dead_letter(stream, id, d, why)
      released = released + 1
    else
      if lists then
        ok, out = xpcall(preprocess, handler, stream, data or id)
      elseif wants_info then
        local f = fields and fields[(i + 2) / 3] or M.pairs_of(data)
        ok, out = xpcall(preprocess, handler, stream, id, data, { deliveries = d or 1, fields = f })
      else
        ok, out = xpcall(preprocess, handler, stream, id, data)
      end
      if ok then
        if out ~= nil then
          if d and d > 1 then batch:mark(d) end
          local full = add(batch, out, stream, id)
          if full then self:enqueue(full, "size") end
        else
          -- Dropped by preprocess: it has left the pipeline.
          drops = group_id(drops, stream, id)
          released = released + 1
          ndropped = ndropped + 1
        end
      elseif self.dead_letter_key then
        released = released + 1
        nfailed = nfailed + 1
        self:preprocess_failed(stream, id, out)
        self:dead_letter(stream, id, d or 1, out)
      else
        -- Left pending in Redis (not acked), so it is not lost.
        released = released + 1
        nfailed = nfailed + 1
        failed = group_id(failed, stream, id)
        self:preprocess_failed(stream, id, out)
      end
    end
  end
  if drops then host.ack(drops) end
  -- A host whose source keeps no pending list (plain streams) needs to know
  -- what was given up on, to move its checkpoint past it.
  if failed and host.abandon then host.abandon(failed) end
  if released > 0 then host.release(released) end
  if self.counting and released > 0 then host.count_feed(ndropped, nfailed) end
  local last = batch:end_of_feed()
  if last then self:enqueue(last, "end of read") end
  self:arm()
  state.host = prev_host
end

-- A data table's fields as { {name, value}, ... } (name order), for a host
-- that did not pass them in Redis's order.
function M.pairs_of(data)
  local names, out = {}, {}
  if type(data) ~= "table" then return out end
  for name in pairs(data) do names[#names + 1] = name end
  table.sort(names)
  for i, name in ipairs(names) do out[i] = { name, data[name] } end
  return out
end

-- Hands one message to the host's dead-letter stream (host.dead_letter
-- appends it and acks it in one server-side script); err is why.
function P:dead_letter(stream, id, deliveries, err)
  self.host.dead_letter(stream, id, deliveries, tostring(err))
end

function P:preprocess_failed(stream, id, msg)
  local shown = tostring(id)
  if #shown > 200 then shown = shown:sub(1, 200) .. "..." end
  local what = self.lists and "item" or "message"
  self:log("error", format("preprocess failed on %s %s from %s, %s: %s",
    what, shown, tostring(stream), self.fate, msg))
end

-- The timer fired: flush a timed-out batch, retry failed sinks whose backoff
-- has passed, and re-arm for what comes next.
function P:tick()
  local host = self.host
  local prev_host = state.host
  state.host = host
  self.timer_at = nil -- one-shot: it just fired
  local now = host.now() + EARLY
  local b = self.batch:expired(now)
  if b then self:enqueue(b, "timeout") end
  local flush = self.active
  if flush and flush.retry_at and now >= flush.retry_at then
    flush.retry_at = nil
    flush.attempt = flush.attempt + 1
    run_sinks(self, flush, flush.retry_sinks)
  end
  if self.init_retry_at and now >= self.init_retry_at and not self.stopping then
    self.init_retry_at = nil
    self:run_init()
  end
  self:run_timers(now)
  if not self.done then self:arm() end
  state.host = prev_host
end

-- No more feeds: flush the partial batch; host.finished(0) once everything
-- is sunk and acked (now, if nothing is pending). A batch waiting for the
-- retry of a failed sink is retried now, one last time; a sink that fails
-- while stopping makes the stop give up (host.finished(n), n messages not
-- sunk) instead of retrying for ever.
function P:stop()
  if self.stopping then return end
  local prev_host = state.host
  state.host = self.host
  self.stopping = true
  self.init_retry_at = nil
  local b = self.batch:take()
  if b then
    if self.debug then self:log("debug", format("batch of %d message(s) flushed (stop)", b.n)) end
    if self.counting then self.host.count_flush("stop") end
    local tail = self.tail + 1
    self.tail = tail
    self.queue[tail] = b
  end
  local flush = self.active
  if flush and flush.retry_at then
    flush.retry_at = nil
    flush.attempt = flush.attempt + 1
    run_sinks(self, flush, flush.retry_sinks)
  else
    self:pump()
  end
  if not self.done then self:arm() end
  state.host = prev_host
end

----------------------------------------------------------------------------

-- A pipeline for a normalized cfg (rsghost.script.load) and a host table.
function M.new(cfg, host)
  local path = cfg.path
  local self = setmetatable({
    host = host,
    path = path,
    preprocess = cfg.preprocess,
    sinks = cfg.sinks,
    init = cfg.init,
    -- rsghost.every's timers: the script's (cfg.timers), and those init adds.
    timers = cfg.timers or {},
    tasks = 0, -- init and timer runs going on
    ready = false, -- init has returned: reading may start
    retry = cfg.retry or { initial = 0.5, max = 30 },
    -- retry.max_attempts: lasting sink errors before a batch is bisected.
    max_attempts = cfg.retry and cfg.retry.max_attempts,
    lists = cfg.source and cfg.source.kind == "lists",
    -- The script's sink is atomic (rsghost.sink's atomic = true): it XACKs
    -- each batch in the script that writes it, so the pipeline does not
    -- (a second XACK would be harmless, but costs a round trip a batch).
    sink_acks = cfg.sink_acks or false,
    -- meta.group of every sink call (consumer-group sources only).
    group = cfg.source and (cfg.source.kind or "group") == "group" and cfg.source.group or nil,
    -- What becomes of a message preprocess fails on, for the log: plain
    -- streams keep no pending list, reliable lists keep it in theirs.
    fate = FATE[cfg.source and cfg.source.kind or "group"]
      or (cfg.source.reliable and "left in the processing list (not acked)" or "dropped"),
    -- source.dead_letter: preprocess errors and messages delivered more than
    -- max_deliveries times go to host.dead_letter instead of staying pending.
    dead_letter_key = cfg.source and cfg.source.dead_letter and cfg.source.dead_letter.key,
    max_deliveries = cfg.source and cfg.source.max_deliveries,
    -- preprocess(stream, id, data, info) gets info only when it declares it.
    wants_info = false,
    given_up = GIVEN_UP[cfg.source and (cfg.source.reliable and "reliable" or cfg.source.kind) or "group"],
    -- Read through host.now on each use, so a host may swap its clock.
    batch = batching.new(cfg.batch.size, cfg.batch.timeout, function() return host.now() end,
      host.count_acked ~= nil),
    -- The host counts events for --metrics (host.count_*): see the top.
    counting = host.count_sink ~= nil,
    -- Debug lines are built only when the host logs them (host.debug).
    debug = host.debug and true or false,
    queue = {}, head = 1, tail = 0, -- batches waiting for the sinks
    -- the batch being sunk: { batch, items, attempt, fails (lasting errors),
    -- running, failed, errors, retry_at, retry_sinks }, and while bisecting
    -- parts (a stack of { lo, hi, sinks }), part, dead ({ [i] = true }), ndead
    active = nil,
    pumping = false,
    paused = false,
    timer_at = nil, -- when the host's timer is armed for
    stopping = false,
    done = false,
  }, P)
  if self.dead_letter_key then self.fate = format("dead-lettered to '%s'", self.dead_letter_key) end
  -- rsghost.script refuses max_attempts without dead_letter; a cfg built by
  -- hand gets today's retry-for-ever rather than dead letters with no home.
  if not self.dead_letter_key then self.max_attempts = nil end
  do
    local info = debug.getinfo(cfg.preprocess, "u")
    self.wants_info = not self.lists and (info.nparams >= 4 or info.isvararg) or false
  end
  self.all_sinks = {}
  for i = 1, #cfg.sinks do self.all_sinks[i] = i end
  if path == nil then
    -- A cfg built by hand: errors are placed in the preprocess's own file.
    local src = debug.getinfo(cfg.preprocess, "S").source
    self.path = src:sub(1, 1) == "@" and src:sub(2) or nil
    path = self.path
  end
  -- Runs only when preprocess raised: the message with the script's file:line.
  self.handler = function(err) return where(err, path, nil, 2) end
  state.host = host -- rsghost.log outside any pipeline call goes to the newest host
  return self
end

return M
