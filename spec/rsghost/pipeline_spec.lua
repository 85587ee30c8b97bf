local pipeline = require "rsghost.pipeline"
local script = require "rsghost.script"
local rsghost = require "rsghost"

-- A fake host on a virtual clock that records every call the pipeline makes.
-- Redis replies come from h.reply(argv) (default "OK"); with h.async = true
-- they wait in h.queued until h:deliver() instead of arriving inside send.
local function fake_host()
  local h = {
    t = 0, timer = nil, timer_calls = 0,
    sent = {}, queued = {}, async = false,
    acks = {}, acked = {}, released = 0,
    pauses = {}, logs = {}, finished_calls = 0, events = {},
  }
  h.reply = function() return "OK" end
  function h.now() return h.t end
  function h.send(argv, cb)
    h.sent[#h.sent + 1] = argv
    local reply, err = h.reply(argv)
    if h.async then
      h.queued[#h.queued + 1] = function() cb(reply, err) end
    else
      cb(reply, err)
    end
  end
  function h.ack(acks)
    h.acks[#h.acks + 1] = acks
    h.events[#h.events + 1] = "ack"
    for stream, ids in pairs(acks) do
      for _, id in ipairs(ids) do h.acked[#h.acked + 1] = stream .. " " .. id end
    end
  end
  function h.release(n)
    h.released = h.released + n
    h.events[#h.events + 1] = "release " .. n
  end
  function h.set_timer(delay)
    h.timer_calls = h.timer_calls + 1
    h.timer = delay and h.t + delay or nil
  end
  function h.pause(flag) h.pauses[#h.pauses + 1] = flag end
  function h.log(level, msg) h.logs[#h.logs + 1] = level .. ": " .. msg end
  function h.finished(unsunk)
    h.finished_calls = h.finished_calls + 1
    h.unsunk = unsunk
    h.events[#h.events + 1] = "finished"
  end
  -- Deliver queued replies (those queued meanwhile too), oldest first.
  function h.deliver(count)
    local n = 0
    while #h.queued > 0 and (count == nil or n < count) do
      table.remove(h.queued, 1)()
      n = n + 1
    end
  end
  -- Let virtual time pass, firing the timer whenever it falls due.
  function h.advance(p, dt)
    local target = h.t + dt
    while h.timer and h.timer <= target do
      h.t = h.timer
      h.timer = nil
      p:tick()
    end
    h.t = target
  end
  return h
end

-- A normalized cfg built by hand (what rsghost.script.load returns).
local function config(opts)
  return {
    preprocess = opts.preprocess or function(stream, id, data) return data.v end,
    sinks = opts.sinks,
    batch = { size = opts.size or 1000, timeout = opts.timeout },
    retry = opts.retry or { initial = 0.5, max = 30 },
    source = { kind = opts.kind or "group" },
  }
end

-- Messages in the host's flat layout. Each spec is {stream, id, value}; the
-- data table is { v = value }.
local function feed(p, ...)
  local msgs, n = {}, select("#", ...)
  for i = 1, n do
    local m = select(i, ...)
    msgs[3 * i - 2], msgs[3 * i - 1], msgs[3 * i] = m[1], m[2], { v = m[3] }
  end
  p:feed(msgs, n)
end

-- A sink that records each batch it receives.
local function recorder()
  local r = { batches = {} }
  r.sink = function(items)
    local copy = {}
    for i = 1, #items do copy[i] = items[i] end
    r.batches[#r.batches + 1] = copy
  end
  return r
end

describe("rsghost.pipeline", function()
  describe("batching", function()
    it("flushes when a batch is full", function()
      local h, r = fake_host(), recorder()
      local p = pipeline.new(config { sinks = { r.sink }, size = 3 }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" }, { "s", "3", "c" }, { "s", "4", "d" },
        { "s", "5", "e" }, { "s", "6", "f" }, { "s", "7", "g" })
      assert.same({ { "a", "b", "c" }, { "d", "e", "f" } }, r.batches)
      assert.same({ "s 1", "s 2", "s 3", "s 4", "s 5", "s 6" }, h.acked)
      assert.equal(6, h.released)
    end)

    it("flushes a partial batch when the timeout since its first item passes", function()
      local h, r = fake_host(), recorder()
      local p = pipeline.new(config { sinks = { r.sink }, timeout = 3 }, h)
      feed(p, { "s", "1", "a" })
      assert.equal(3, h.timer)
      h.advance(p, 2)
      feed(p, { "s", "2", "b" })
      h.advance(p, 0.9) -- t = 2.9: the first item is not 3 s old yet
      assert.same({}, r.batches)
      h.advance(p, 0.1)
      assert.same({ { "a", "b" } }, r.batches)
      assert.same({ "s 1", "s 2" }, h.acked)
      -- The next batch's clock starts with its own first item.
      h.advance(p, 10)
      feed(p, { "s", "3", "c" })
      assert.equal(16, h.timer)
      h.advance(p, 2.9)
      assert.equal(1, #r.batches)
      h.advance(p, 0.1)
      assert.same({ "c" }, r.batches[2])
    end)

    it("flushes each feed's messages together when the timeout is 0", function()
      local h, r = fake_host(), recorder()
      local p = pipeline.new(config { sinks = { r.sink }, timeout = 0 }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" })
      feed(p, { "s", "3", "c" })
      assert.same({ { "a", "b" }, { "c" } }, r.batches)
      assert.is_nil(h.timer)
    end)

    it("sends full batches during the feed and the rest at its end when the timeout is 0", function()
      local h, r = fake_host(), recorder()
      local p = pipeline.new(config { sinks = { r.sink }, size = 2, timeout = 0 }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" }, { "s", "3", "c" })
      assert.same({ { "a", "b" }, { "c" } }, r.batches)
    end)

    it("holds a partial batch without a timeout until it is full or stopped", function()
      local h, r = fake_host(), recorder()
      local p = pipeline.new(config { sinks = { r.sink }, size = 3 }, h)
      feed(p, { "s", "1", "a" })
      h.advance(p, 3600)
      assert.same({}, r.batches)
      assert.equal(0, h.timer_calls)
      p:stop()
      assert.same({ { "a" } }, r.batches)
    end)
  end)

  describe("acks", function()
    it("acknowledges a batch with one call, ids grouped per stream", function()
      local h = fake_host()
      local p = pipeline.new(config { sinks = { function() end }, timeout = 0 }, h)
      feed(p, { "s1", "1-0", "a" }, { "s2", "1-0", "b" }, { "s1", "2-0", "c" })
      assert.same({ { s1 = { "1-0", "2-0" }, s2 = { "1-0" } } }, h.acks)
      assert.same({ "ack", "release 3" }, h.events)
    end)

    it("acknowledges only after every sink has succeeded", function()
      local h = fake_host()
      h.async = true
      local function writer(key)
        return function(items) rsghost.redis.call("RPUSH", key, items[1]) end
      end
      local p = pipeline.new(config { sinks = { writer("k1"), writer("k2") }, timeout = 0 }, h)
      feed(p, { "s", "1", "a" })
      assert.equal(2, #h.sent) -- both sinks run at once
      h.deliver(1)
      assert.same({}, h.acked)
      assert.equal(0, h.released)
      h.deliver(1)
      assert.same({ "s 1" }, h.acked)
      assert.equal(1, h.released)
    end)

    it("drops a message when preprocess returns nil: acked and released, one ack per feed", function()
      local h, r = fake_host(), recorder()
      local keep_or_drop = function(stream, id, data)
        if data.v then return data.v end -- nil: dropped
      end
      local p = pipeline.new(config { preprocess = keep_or_drop, sinks = { r.sink }, size = 10 }, h)
      feed(p, { "s1", "1", false }, { "s1", "2", "keep" }, { "s2", "3", false }, { "s1", "4", false })
      assert.same({ { s1 = { "1", "4" }, s2 = { "3" } } }, h.acks)
      assert.equal(3, h.released)
      assert.same({}, r.batches) -- "keep" waits for its batch
    end)
  end)

  describe("sink failure", function()
    it("acknowledges nothing, pauses reading and retries only the failed sink, backing off", function()
      local h = fake_host()
      local good_runs, bad_runs = 0, 0
      local good = function() good_runs = good_runs + 1 end
      local bad = function()
        bad_runs = bad_runs + 1
        if bad_runs <= 5 then error("disk full") end
      end
      local p = pipeline.new(config { sinks = { good, bad }, timeout = 0,
        retry = { initial = 1, max = 5 } }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" })
      assert.same({}, h.acked)
      assert.same({ true }, h.pauses)
      -- Delays 1, 2, 4, then capped at 5.
      local expected = { 1, 2, 4, 5, 5 }
      for attempt = 1, 5 do
        assert.equal(expected[attempt], h.timer - h.t)
        h.advance(p, expected[attempt] - 0.01)
        assert.equal(attempt, bad_runs)
        h.advance(p, 0.01)
      end
      assert.equal(6, bad_runs)
      assert.equal(1, good_runs)
      assert.same({ "s 1", "s 2" }, h.acked)
      assert.equal(2, h.released)
      assert.same({ true, false }, h.pauses)
      assert.is_nil(h.timer)
    end)

    it("logs the batch size, attempt, next delay and the error with its file:line", function()
      local h = fake_host()
      local line
      local sink = function()
        line = debug.getinfo(1, "l").currentline + 1
        error("disk full")
      end
      local p = pipeline.new(config { sinks = { function() end, sink }, timeout = 0,
        retry = { initial = 0.5, max = 30 } }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" }, { "s", "3", "c" })
      h.advance(p, 0.5)
      assert.equal(2, #h.logs)
      local file = debug.getinfo(1, "S").short_src
      assert.equal("error: sink 2 of 2 failed on a batch of 3 messages (attempt 1), retrying in 0.5s: "
        .. file .. ":" .. line .. ": disk full", h.logs[1])
      assert.matches("%(attempt 2%), retrying in 1s: ", h.logs[2])
    end)

    it("places an error raised without a position at the script's sink line", function()
      local h = fake_host()
      local cfg = script.load("spec/fixtures/scripts/pipeline_errors.lua")
      local p = pipeline.new(cfg, h)
      p:feed({ "s", "1-0", { v = "sink-table" } }, 1)
      assert.matches("^error: sink 1 of 1 failed on a batch of 1 messages %(attempt 1%), retrying in 0.5s: "
        .. "spec/fixtures/scripts/pipeline_errors.lua:29: table: ", h.logs[1])
    end)

    it("fails on a Redis error reply inside the sink, naming the script line", function()
      local h = fake_host()
      h.reply = function() return nil, "ERR value is not an integer or out of range" end
      local p = pipeline.new(script.load("spec/fixtures/scripts/pipeline_errors.lua"), h)
      p:feed({ "s", "1-0", { v = "sink-fails" } }, 1)
      assert.same({ "INCR", "not-a-number" }, h.sent[1])
      assert.matches("spec/fixtures/scripts/pipeline_errors.lua:27: ERR value is not an integer or out of range$",
        h.logs[1])
      assert.same({}, h.acked)
    end)

    it("queues batches that fill meanwhile and sinks them in order after the retry", function()
      local h = fake_host()
      local fails, seen = 1, {}
      local sink = function(items)
        if fails > 0 then
          fails = fails - 1
          error("down")
        end
        seen[#seen + 1] = table.concat(items, ",")
      end
      local p = pipeline.new(config { sinks = { sink }, size = 2 }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" }, { "s", "3", "c" }, { "s", "4", "d" })
      feed(p, { "s", "5", "e" }, { "s", "6", "f" })
      assert.same({}, seen)
      h.advance(p, 0.5)
      assert.same({ "a,b", "c,d", "e,f" }, seen)
      assert.same({ "s 1", "s 2", "s 3", "s 4", "s 5", "s 6" }, h.acked)
      assert.equal(3, #h.acks) -- one per batch
    end)

    it("treats a sink that yields on its own as failed", function()
      local h = fake_host()
      local p = pipeline.new(config { sinks = { function() coroutine.yield("hello") end }, timeout = 0 }, h)
      feed(p, { "s", "1", "a" })
      assert.matches("sink yielded hello instead of waiting in rsghost.redis", h.logs[1])
      assert.same({}, h.acked)
      assert.same({ true }, h.pauses)
    end)

    it("fails a sink whose Redis connection is lost, and succeeds on the retry", function()
      local h = fake_host()
      local lost = true
      h.reply = function()
        if lost then return nil, "connection lost (redis://127.0.0.1:6379)" end
        return 1
      end
      local p = pipeline.new(config {
        sinks = { function(items) rsghost.redis.call("RPUSH", "out", items[1]) end }, timeout = 0 }, h)
      feed(p, { "s", "1", "a" })
      assert.matches("connection lost", h.logs[1])
      lost = false
      h.advance(p, 0.5)
      assert.same({ "s 1" }, h.acked)
    end)
  end)

  describe("preprocess errors", function()
    local h, p
    before_each(function()
      h = fake_host()
      p = pipeline.new(script.load("spec/fixtures/scripts/pipeline_errors.lua"), h)
    end)

    local function fail_with(kind)
      p:feed({ "orders", "1700000000000-3", { fail = kind } }, 1)
      return h.logs[1]
    end

    it("leaves the message pending and logs its stream, id and the script's file:line", function()
      assert.equal("error: preprocess failed on message 1700000000000-3 from orders, left pending (not acked): "
        .. "spec/fixtures/scripts/pipeline_errors.lua:12: bad message", fail_with("string"))
      assert.same({}, h.acked)
      assert.equal(1, h.released)
    end)

    it("places a table error value at the script line that raised it", function()
      assert.matches("^error: preprocess failed on message 1700000000000%-3 from orders, left pending %(not acked%): "
        .. "spec/fixtures/scripts/pipeline_errors%.lua:14: table: ", fail_with("table"))
    end)

    it("places an error raised at level 0 at the script line", function()
      assert.matches("spec/fixtures/scripts/pipeline_errors%.lua:16: no position$", fail_with("level0"))
    end)

    it("keeps the position of an error raised in a helper of the script", function()
      assert.matches("spec/fixtures/scripts/pipeline_errors%.lua:5: attempt to index field 'missing' %(a nil value%)$",
        fail_with("helper"))
    end)

    it("lets the other messages of the feed flow on", function()
      local sunk = {}
      p.sinks[1] = function(items) for _, v in ipairs(items) do sunk[#sunk + 1] = v end end
      p:feed({ "s", "1", { v = "a" }, "s", "2", { fail = "string" }, "s", "3", { fail = "drop" },
        "s", "4", { v = "d" } }, 4)
      assert.same({ "a", "d" }, sunk)
      assert.same({ "s 3", "s 1", "s 4" }, h.acked) -- drops at the end of the feed, then the batch
      assert.equal(4, h.released)
    end)

    it("tells a host that keeps no pending list which messages were given up on", function()
      local abandoned = {}
      h.abandon = function(t) abandoned[#abandoned + 1] = t end
      p.sinks[1] = function() end
      p:feed({ "s", "1", { v = "a" }, "s", "2", { fail = "string" }, "t", "3", { fail = "string" } }, 3)
      assert.same({ { s = { "2" }, t = { "3" } } }, abandoned)
      assert.same({ "s 1" }, h.acked)
    end)
  end)

  describe("lists", function()
    it("calls preprocess with the list name and the item", function()
      local h, r = fake_host(), recorder()
      local p = pipeline.new(config {
        kind = "lists",
        preprocess = function(list, item, extra)
          assert.is_nil(extra)
          return list .. ":" .. item
        end,
        sinks = { r.sink }, timeout = 0 }, h)
      p:feed({ "jobs", "job-1", false, "jobs", "job-2", false }, 2)
      assert.same({ { "jobs:job-1", "jobs:job-2" } }, r.batches)
      assert.same({ "jobs job-1", "jobs job-2" }, h.acked)
    end)
  end)

  describe("stop", function()
    it("flushes the partial batch and calls finished after its ack", function()
      local h = fake_host()
      h.async = true
      local p = pipeline.new(config {
        sinks = { function(items) rsghost.redis.call("RPUSH", "out", unpack(items)) end }, timeout = 3 }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" })
      p:stop()
      assert.same({ "RPUSH", "out", "a", "b" }, h.sent[1])
      assert.equal(0, h.finished_calls)
      h.deliver()
      assert.same({ "ack", "release 2", "finished" }, h.events)
      assert.is_nil(h.timer)
    end)

    it("finishes at once when nothing is pending, and only once", function()
      local h = fake_host()
      local p = pipeline.new(config { sinks = { function() end }, timeout = 0 }, h)
      feed(p, { "s", "1", "a" })
      p:stop()
      p:stop()
      assert.equal(1, h.finished_calls)
    end)

    it("retries a batch waiting for its retry at once, one last time", function()
      local h = fake_host()
      local fails = 1
      local p = pipeline.new(config { sinks = { function()
        if fails > 0 then
          fails = fails - 1
          error("down")
        end
      end }, timeout = 0 }, h)
      feed(p, { "s", "1", "a" }) -- attempt 1 fails; the retry is 0.5 s away
      assert.equal(0, h.finished_calls)
      p:stop()
      assert.equal(1, h.finished_calls)
      assert.equal(0, h.unsunk)
      assert.same({ "s 1" }, h.acked)
    end)

    it("gives up after the current attempt when a sink keeps failing: nothing acked, finished(n)", function()
      local h = fake_host()
      local p = pipeline.new(config { sinks = { function() error("WRONGTYPE for ever") end }, size = 2, timeout = 3 }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" }, { "s", "3", "c" }) -- one full batch, one partial
      assert.equal(0, h.finished_calls)
      p:stop()
      assert.equal(1, h.finished_calls)
      assert.equal(3, h.unsunk)
      assert.same({}, h.acked)
      assert.is_nil(h.timer)
      assert.matches("stopping with 3 message%(s%) not sunk: sink 1 still failing after attempt 2; they stay pending",
        h.logs[#h.logs])
      h.advance(p, 60) -- no retry comes after the stop gave up
      assert.equal(1, h.finished_calls)
    end)

    it("gives up when the flush's own attempt fails while stopping", function()
      local h = fake_host()
      h.async = true
      local p = pipeline.new(config {
        sinks = { function(items) rsghost.redis.call("RPUSH", "out", unpack(items)) end }, timeout = 3 }, h)
      h.reply = function() return nil, "LOADING Redis is loading the dataset in memory" end
      feed(p, { "s", "1", "a" })
      p:stop()
      assert.equal(0, h.finished_calls) -- waits for the attempt's reply
      h.deliver()
      assert.equal(1, h.finished_calls)
      assert.equal(1, h.unsunk)
      assert.same({}, h.acked)
    end)

    it("refuses feeds after stop", function()
      local h = fake_host()
      local p = pipeline.new(config { sinks = { function() end } }, h)
      p:stop()
      assert.has_error(function() feed(p, { "s", "1", "a" }) end, "rsghost.pipeline: feed after stop")
    end)
  end)

  describe("release", function()
    it("adds up to what was fed, whatever became of each message", function()
      local h = fake_host()
      local fails = 1
      local p = pipeline.new(script.load("spec/fixtures/scripts/pipeline_errors.lua"), h)
      p.sinks[1] = function()
        if fails > 0 then
          fails = fails - 1
          error("once")
        end
      end
      local fed = 0
      for round = 1, 5 do
        local msgs, n = {}, 0
        for i = 1, 7 do
          local data = ({ { v = "x" }, { fail = "drop" }, { fail = "string" } })[(i + round) % 3 + 1]
          msgs[3 * n + 1], msgs[3 * n + 2], msgs[3 * n + 3] = "s", round .. "-" .. i, data
          n = n + 1
        end
        p:feed(msgs, n)
        fed = fed + n
      end
      p:stop()
      h.advance(p, 1)
      assert.equal(1, h.finished_calls)
      assert.equal(fed, h.released)
    end)
  end)

  describe("host callbacks", function()
    it("survives a long run of synchronous replies without growing the stack", function()
      local h = fake_host()
      local calls = 0
      local p = pipeline.new(config { sinks = { function()
        for _ = 1, 200000 do
          rsghost.redis.call("PING")
          calls = calls + 1
        end
      end }, timeout = 0 }, h)
      feed(p, { "s", "1", "a" })
      assert.equal(200000, calls)
      assert.same({ "s 1" }, h.acked)
    end)

    it("sinks a long queue of batches sunk synchronously", function()
      local h = fake_host()
      local p = pipeline.new(config { sinks = { function(items) rsghost.redis.call("RPUSH", "o", items[1]) end },
        size = 1 }, h)
      local msgs, n = {}, 50000
      for i = 1, n do msgs[3 * i - 2], msgs[3 * i - 1], msgs[3 * i] = "s", tostring(i), { v = "x" } end
      p:feed(msgs, n)
      assert.equal(n, #h.acks)
      assert.equal(n, h.released)
    end)

    it("resumes sinks when replies arrive later, in any order of sinks", function()
      local h = fake_host()
      h.async = true
      local got = {}
      local p = pipeline.new(config { sinks = {
        function()
          got[#got + 1] = rsghost.redis.call("GET", "a")
          got[#got + 1] = rsghost.redis.call("GET", "b")
        end,
      }, timeout = 0 }, h)
      h.reply = function(argv) return "value-" .. argv[2] end
      feed(p, { "s", "1", "x" })
      assert.same({}, got)
      h.deliver(1)
      assert.same({ "value-a" }, got)
      h.deliver(1)
      assert.same({ "value-a", "value-b" }, got)
      assert.same({ "s 1" }, h.acked)
    end)

    it("ignores a callback called twice", function()
      local h = fake_host()
      local replies = {}
      h.send = function(argv, cb)
        cb("first")
        cb("second")
      end
      local p = pipeline.new(config { sinks = { function()
        replies[#replies + 1] = rsghost.redis.call("GET", "a")
        replies[#replies + 1] = rsghost.redis.call("GET", "b")
      end }, timeout = 0 }, h)
      feed(p, { "s", "1", "x" })
      assert.same({ "first", "first" }, replies)
    end)

    it("turns a host.send that raises into a failed command", function()
      local h = fake_host()
      h.send = function() error("not connected") end
      local p = pipeline.new(config { sinks = { function() rsghost.redis.call("PING") end }, timeout = 0 }, h)
      feed(p, { "s", "1", "x" })
      assert.matches("host.send failed: .*not connected", h.logs[1])
    end)
  end)

  describe("timer", function()
    it("arms the host's timer only when what is due changes", function()
      local h = fake_host()
      local p = pipeline.new(config { sinks = { function() end }, size = 100, timeout = 5 }, h)
      feed(p, { "s", "1", "a" })
      feed(p, { "s", "2", "b" })
      feed(p, { "s", "3", "c" })
      assert.equal(1, h.timer_calls)
      h.advance(p, 5)
      assert.equal(1, h.timer_calls) -- it fired; nothing left to arm
    end)

    it("tolerates a timer that fires a hair early", function()
      local h, r = fake_host(), recorder()
      local p = pipeline.new(config { sinks = { r.sink }, timeout = 1 }, h)
      feed(p, { "s", "1", "a" })
      h.t = 0.9999
      p:tick()
      assert.equal(1, #r.batches)
    end)
  end)

  describe("retry.max_attempts", function()
    it("without a dead-letter stream (a cfg built by hand) retries for ever, as before", function()
      local h = fake_host()
      local calls = 0
      local p = pipeline.new(config { sinks = { function() calls = calls + 1; error("nope") end }, timeout = 0,
        retry = { initial = 0.1, max = 0.1, max_attempts = 1 } }, h)
      feed(p, { "s", "1-0", "a" })
      h.advance(p, 5)
      assert.is_true(calls > 10)
      assert.same({}, h.acked)
      assert.equal(0, h.released)
    end)
  end)

  describe("counting for --metrics", function()
    -- A host with count_* functions (the C host has them with --metrics)
    -- records each call; time passes only when a sink makes it.
    local function counting_host()
      local h = fake_host()
      h.counts = {}
      local function rec(name)
        return function(...) h.counts[#h.counts + 1] = { name, ... } end
      end
      h.count_feed, h.count_flush = rec("feed"), rec("flush")
      h.count_sink, h.count_acked = rec("sink"), rec("acked")
      return h
    end

    local function preprocess(stream, id, data)
      if data.v == "drop" then return nil end
      if data.v == "bad" then error("bad value") end
      return data.v
    end

    it("reports once per feed and once per batch, never per message", function()
      local h = counting_host()
      local sink = function() h.t = h.t + 0.5 end
      local p = pipeline.new({ preprocess = preprocess, sinks = { sink },
        batch = { size = 2, timeout = 3 }, retry = { initial = 0.5, max = 30 },
        source = { kind = "group" } }, h)
      feed(p, { "s", "1", "a" }, { "s", "2", "b" }, { "s", "3", "drop" }, { "s", "4", "bad" },
        { "s", "5", "c" })
      -- a, b: a full batch, sunk at once (t 0 -> 0.5); c waits for its timeout.
      h.advance(p, 3.5)
      p:stop()
      assert.same({
        { "flush", "size" },
        { "sink", 1, 0.5, false },
        { "acked", 2, 0.5 },
        { "feed", 1, 1 },
        { "flush", "timeout" },
        { "sink", 1, 0.5, false },
        { "acked", 1, 3.5 },
      }, h.counts)
    end)

    it("counts a sink run that raised, and the retry", function()
      local h, fail = counting_host(), true
      local sink = function()
        if fail then
          fail = false
          error("down")
        end
      end
      local p = pipeline.new({ preprocess = preprocess, sinks = { sink },
        batch = { size = 1 }, retry = { initial = 1, max = 30 }, source = { kind = "group" } }, h)
      feed(p, { "s", "1", "a" })
      h.advance(p, 1)
      assert.same({
        { "flush", "size" },
        { "sink", 1, 0, true },
        { "sink", 1, 0, false },
        { "acked", 1, 1 },
      }, h.counts)
    end)

    it("counts the batch a stop flushes", function()
      local h = counting_host()
      local p = pipeline.new({ preprocess = preprocess, sinks = { function() end },
        batch = { size = 10, timeout = 5 }, retry = { initial = 1, max = 30 },
        source = { kind = "group" } }, h)
      feed(p, { "s", "1", "a" })
      p:stop()
      assert.same({ "flush", "stop" }, h.counts[1])
      assert.equal(1, h.finished_calls)
    end)
  end)
end)
