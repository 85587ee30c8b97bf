-- Batching by size and by timeout (the library's partition(size, timeout)).
--
-- A batch is three parallel arrays and a count, so that adding a message
-- allocates nothing:
--   { items = { out1, ... }, streams = { name1, ... }, ids = { id1, ... }, n = k }
-- items are preprocess outputs in arrival order; streams/ids say which message
-- each came from, to acknowledge it once the batch is sunk. A batch holding
-- replayed or claimed messages also has deliveries = { [i] = d } (Batch:mark).
--
-- Time comes from an injected clock (seconds, monotonic), read only when a
-- batch gets its first item: the host's clock in production, a virtual one
-- in specs.

local ok, new_table = pcall(require, "table.new")
if not ok then new_table = function() return {} end end

local M = {}

local Batch = {}
Batch.__index = Batch

-- size: flush when this many items are in (integer >= 1).
-- timeout: seconds from the first item until the batch is due; 0 = due at the
--   end of each feed (see end_of_feed); nil = only when full (or taken).
-- clock: function returning the current time in seconds.
-- stamp: when true, each batch records first_at, the clock time of its first
--   item (a host that measures read-to-ack time; one clock read per batch).
function M.new(size, timeout, clock, stamp)
  assert(type(size) == "number" and size >= 1, "batch size must be >= 1")
  local self = setmetatable({
    size = size,
    timeout = timeout,
    clock = clock,
    timed = timeout ~= nil and timeout > 0, -- whether a deadline applies
    started = nil, -- clock time of the current batch's first item (timed batches)
    stamp = stamp and true or false,
    first_at = nil, -- the same, for stamp
    n = 0,
    hint = 0, -- size of the previous batch: how big to pre-size the next
  }, Batch)
  self.items, self.streams, self.ids = {}, {}, {}
  return self
end

-- Hand out the current batch (nil if empty) and start an empty one.
function Batch:take()
  local n = self.n
  if n == 0 then return nil end
  local b = { items = self.items, streams = self.streams, ids = self.ids, n = n, deliveries = self.deliveries,
    first_at = self.first_at }
  self.deliveries, self.first_at = nil, nil
  local hint = n < self.size and n or self.size
  self.items, self.streams, self.ids = new_table(hint, 0), new_table(hint, 0), new_table(hint, 0)
  self.n, self.started, self.hint = 0, nil, hint
  return b
end

-- Append one preprocess output. Returns the batch when this item filled it,
-- else nil.
function Batch:add(item, stream, id)
  local n = self.n + 1
  self.items[n], self.streams[n], self.ids[n] = item, stream, id
  self.n = n
  if n == 1 then
    if self.timed then self.started = self.clock() end
    if self.stamp then self.first_at = self.started or self.clock() end
  end
  if n >= self.size then return self:take() end
  return nil
end

-- The next item added came from a message Redis delivered d times (d > 1: a
-- replay or a claim), kept for a dead letter of it. Live reads never call it,
-- so their batches carry no deliveries table: b.deliveries[i] or 1.
function Batch:mark(d)
  local t = self.deliveries
  if t == nil then
    t = {}
    self.deliveries = t
  end
  t[self.n + 1] = d
end

-- The time at which the current batch is due by timeout, or nil (empty, or
-- no timeout).
function Batch:deadline()
  local started = self.started
  if started == nil then return nil end
  return started + self.timeout
end

-- The current batch if its timeout has passed at time `now`, else nil.
function Batch:expired(now)
  local started = self.started
  if started == nil or now < started + self.timeout then return nil end
  return self:take()
end

-- With timeout 0 each feed's messages go out together: the current batch,
-- or nil (other timeouts, or nothing added).
function Batch:end_of_feed()
  if self.timeout ~= 0 then return nil end
  return self:take()
end

-- The ack table of a batch: { [stream] = { id, ... } }, ids in arrival order.
-- Built once per flush from the parallel arrays.
function M.acks(b)
  local streams, ids = b.streams, b.ids
  local acks = {}
  local last, list, k = nil, nil, 0
  for i = 1, b.n do
    local s = streams[i]
    if s ~= last then
      list = acks[s]
      if list == nil then
        list = {}
        acks[s] = list
      end
      last, k = s, #list
    end
    k = k + 1
    list[k] = ids[i]
  end
  return acks
end

return M
