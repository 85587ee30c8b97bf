-- Crashes, restarts and signals: a kill -9 loses nothing (a restart with the
-- same consumer name finishes what was left unacknowledged), SIGTERM/SIGINT
-- flush and ack the partial batch and exit 0, a second signal exits at once
-- leaving the unacked messages pending in Redis.
local H = require "support.host"

-- The sink writes its batch, then waits while the key P:hold exists (for up
-- to 60 s, in steps of WAIT: the sink's way to sleep without blocking the
-- loop): a crash then lands between the sink's write and the ack.
local HOLDING = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data)
    rsghost.log.info("preprocess-saw", id)
    return id
  end,
  batch = { size = {{SIZE}}, timeout = tonumber(os.getenv("TEST_BATCH_TIMEOUT")) or false },
  sink = function(items)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
    for _ = 1, 600 do
      if rsghost.redis.call("EXISTS", P .. ":hold") == 0 then break end
      rsghost.redis.call("WAIT", 1, 100)
    end
  end,
}
]]

-- Counts the log lines of preprocess having seen each id.
local function preprocessed(h)
  return #h:log_lines("preprocess%-saw")
end

describe("after a crash", function()
  after_each(function() H.cleanup() end)

  it("a restart with the same name delivers every message (kill -9 between sink and ack)", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, HOLDING, { SIZE = 50 })
    local env = { TEST_BATCH_TIMEOUT = "0.1" }
    t.redis:call("SET", P .. ":hold", "1")
    local h1 = H.start(t, { script = path, consumer = "c1", env = env })
    local ids = H.xadd_many(t.redis, P .. ":s", 300)
    -- The first batch is in the sink, written but not acked, when we crash it
    -- (however many items it got before its timeout: the sink holds it).
    H.eventually(function() return t.redis:call("LLEN", P .. ":out") > 0 end, 60,
      function() return h1:describe() end)
    assert.equal("signal 9", h1:kill())
    local before = H.list(t.redis, P .. ":out")
    local pending = H.pending_ids(t.redis, P .. ":s", P .. ":g")
    for _, id in ipairs(before) do
      assert.equal("c1", pending[id], id .. " was acked before its sink returned")
    end

    t.redis:call("DEL", P .. ":hold")
    local h2 = H.start(t, { script = path, consumer = "c1", env = env })
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h2 } })
    local c = H.compare(ids, out)
    assert.same({}, c.missing, "messages lost across kill -9 and restart")
    assert.same({}, c.unexpected)
    -- At least once: what the crashed run wrote but never acked comes again.
    local count = H.tally(out)
    for _, id in ipairs(before) do
      assert.is_true(count[id] >= 2, id .. " was written before the crash, never acked, and not replayed")
    end
    print(string.format("\nkill -9 between sink and ack: %d messages, %d delivered, %d duplicates",
      #ids, #out, c.duplicates))
    assert.equal(0, h2:stop(), h2:describe())
  end)

  it("a restart replays the pending messages of a batch that was never sunk, exactly once", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, HOLDING, { SIZE = 1000 })
    local h1 = H.start(t, { script = path, consumer = "c1", env = { TEST_BATCH_TIMEOUT = "60" } })
    local ids = H.xadd_many(t.redis, P .. ":s", 100)
    -- All read and preprocessed, waiting in a partial batch.
    H.eventually(function() return preprocessed(h1) >= 100 end, 60, function() return h1:describe() end)
    assert.equal(100, H.xpending(t.redis, P .. ":s", P .. ":g").consumers.c1)
    assert.equal("signal 9", h1:kill())
    assert.equal(0, t.redis:call("LLEN", P .. ":out"))

    local h2 = H.start(t, { script = path, consumer = "c1", env = { TEST_BATCH_TIMEOUT = "0.1" } })
    local more = H.xadd_many(t.redis, P .. ":s", 20)
    for _, id in ipairs(more) do ids[#ids + 1] = id end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h2 } })
    H.assert_exactly_once(ids, out)
    assert.equal(0, h2:stop(), h2:describe())
  end)
end)

describe("replay of pending messages on start", function()
  after_each(function() H.cleanup() end)

  -- A crashed consumer "c1" that had read 10 messages and acked none.
  local function crashed_consumer(t)
    local P = t.prefix
    local old = H.xadd_many(t.redis, P .. ":s", 10)
    t.redis:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "0")
    t.redis:call("XREADGROUP", "GROUP", P .. ":g", "c1", "COUNT", 10, "STREAMS", P .. ":s", ">")
    assert.equal(10, H.xpending(t.redis, P .. ":s", P .. ":g").consumers.c1)
    return old
  end

  local SRC = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, replay_pending = {{REPLAY}} },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

  it("pushes the consumer's own pending messages through the pipeline first", function()
    local t = H.context()
    local P = t.prefix
    local old = crashed_consumer(t)
    local h = H.start(t, { script = H.script(t, SRC, { REPLAY = "true" }), consumer = "c1" })
    local new = H.xadd_many(t.redis, P .. ":s", 20)
    local all = {}
    for _, id in ipairs(old) do all[#all + 1] = id end
    for _, id in ipairs(new) do all[#all + 1] = id end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #all, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    H.assert_exactly_once(all, out)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("leaves them pending with replay_pending = false", function()
    local t = H.context()
    local P = t.prefix
    local old = crashed_consumer(t)
    local h = H.start(t, { script = H.script(t, SRC, { REPLAY = "false" }), consumer = "c1" })
    local new = H.xadd_many(t.redis, P .. ":s", 20)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #new, streams = P .. ":s", group = P .. ":g",
      pending = #old, hosts = { h } })
    local c = H.compare(new, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.same({}, c.unexpected, "pending messages were replayed although replay_pending = false")
    local pending = H.pending_ids(t.redis, P .. ":s", P .. ":g")
    for _, id in ipairs(old) do assert.equal("c1", pending[id]) end
    assert.equal(0, h:stop(), h:describe())
  end)
end)

describe("stopping", function()
  after_each(function() H.cleanup() end)

  for _, sig in ipairs { "TERM", "INT" } do
    it("SIG" .. sig .. " flushes the partial batch through the sink, acks it and exits 0", function()
      local t = H.context()
      local P = t.prefix
      -- A batch far larger than the messages and a long timeout: only the
      -- stop can flush it. The read blocks forever (timeout = 0, the default).
      local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = { P .. ":s1", P .. ":s2" }, group = P .. ":g" },
  preprocess = function(stream, id, data)
    rsghost.log.info("preprocess-saw", id)
    return stream .. " " .. id
  end,
  batch = { size = 1000, timeout = 120 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
      local h = H.start(t, { script = path })
      local want = {}
      for _, s in ipairs { P .. ":s1", P .. ":s2" } do
        for _, id in ipairs(H.xadd_many(t.redis, s, 25)) do want[#want + 1] = s .. " " .. id end
      end
      H.eventually(function() return preprocessed(h) >= 50 end, 60, function() return h:describe() end)
      assert.equal(0, t.redis:call("LLEN", P .. ":out"))
      assert.is_true(h:signal(sig))
      local code = h:wait(60)
      assert.equal(0, code, h:describe())
      local c = H.compare(want, H.list(t.redis, P .. ":out"))
      assert.same({}, c.missing, "the partial batch was not flushed")
      assert.equal(0, c.duplicates)
      assert.equal(0, H.xpending(t.redis, P .. ":s1", P .. ":g").count, "the flushed batch was not acked")
      assert.equal(0, H.xpending(t.redis, P .. ":s2", P .. ":g").count, "the flushed batch was not acked")
    end)
  end

  it("exits 0 at once on SIGTERM when idle", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, HOLDING, { SIZE = 10 })
    local h = H.start(t, { script = path, env = { TEST_BATCH_TIMEOUT = "0.1" } })
    H.eventually(function() return H.group_info(t.redis, P .. ":s", P .. ":g") end, 30,
      function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("exits at once, non-zero, on a second signal, leaving the unacked messages pending", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, HOLDING, { SIZE = 1000 })
    t.redis:call("SET", P .. ":hold", "1")
    local h = H.start(t, { script = path, env = { TEST_BATCH_TIMEOUT = "120" } })
    local ids = H.xadd_many(t.redis, P .. ":s", 20)
    H.eventually(function() return preprocessed(h) >= 20 end, 60, function() return h:describe() end)
    assert.is_true(h:signal("TERM"))
    -- The stop flushed the batch into the sink, which now waits while P:hold exists.
    H.eventually(function() return t.redis:call("LLEN", P .. ":out") >= 20 end, 60,
      function() return h:describe() end)
    assert.is_true(h:alive(), "exited before its sink returned: " .. h:describe())
    assert.is_true(h:signal("TERM"))
    -- "At once": long before the sink's 60 s wait would end.
    local code = h:wait(20)
    assert.is_not_nil(code, "still running 20 s after the second SIGTERM: " .. h:describe())
    assert.not_equal(0, code)
    local pending = H.pending_ids(t.redis, P .. ":s", P .. ":g")
    for _, id in ipairs(ids) do assert.equal("consumer-1", pending[id], id .. " was acked") end
  end)
end)
