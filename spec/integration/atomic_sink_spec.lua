-- Effectively-once Redis sinks: rsghost.sink.redis_list/redis_stream with
-- atomic = true write a batch and XACK it in one server-side script, so kill
-- -9 at any moment neither loses nor duplicates a message (a batch whose
-- script ran is acked and not replayed; one whose script did not run is
-- still pending and replayed whole).
--
-- RSGHOST_ATOMIC_MESSAGES sets the messages of the kill -9 run (default
-- 10000, to stay well under a minute on a slow machine; the issue's full
-- size: RSGHOST_ATOMIC_MESSAGES=50000).
local H = require "support.host"

local ATOMIC = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return {{ITEM}} end,
  batch = { size = {{SIZE}} },
  sink = rsghost.sink.{{SINK}}(P .. ":out", { atomic = true }),
}
]]

-- Polls every 2 ms (H.eventually backs off to 200 ms: a chunk can be done
-- by then) until fn() is true; fails after 60 s (scaled).
local function soon(fn, what)
  local deadline = os.time() + 60 * H.scale
  while not fn() do
    if os.time() > deadline then error("timed out waiting for " .. what(), 2) end
    H.sleep(0.002)
  end
end

describe("atomic redis sinks", function()
  after_each(function() H.cleanup() end)

  -- What the sink wrote: the list's items, or the stream's "data" fields.
  local WRITTEN = {
    redis_list = {
      count = function(r, key) return r:call("LLEN", key) end,
      all = function(r, key) return H.list(r, key) end,
    },
    redis_stream = {
      count = function(r, key) return r:call("XLEN", key) end,
      all = function(r, key)
        local out = {}
        for i, e in ipairs(r:call("XRANGE", key, "-", "+")) do out[i] = e[2][2] end
        return out
      end,
    },
  }

  for _, sink in ipairs { "redis_list", "redis_stream" } do
    it("lose and duplicate nothing across 20 random kill -9s (" .. sink .. ")", function()
      local t = H.context()
      local P = t.prefix
      local r, out_key, written = t.redis, P .. ":out", WRITTEN[sink]
      local n = tonumber(os.getenv("RSGHOST_ATOMIC_MESSAGES") or "") or 10000
      local kills = 20
      math.randomseed(os.time())
      local path = H.script(t, ATOMIC, { ITEM = "id", SIZE = 50, SINK = sink })
      local ids = {}
      local h = H.start(t, { script = path, consumer = "c1", log_level = "info" })
      local mid_work, replays = 0, 0
      local started = os.time()
      for _ = 1, kills do
        -- Messages arrive while the host runs and is killed: once it has
        -- written a batch of the new chunk (so it is up and reading, and
        -- the rest of the chunk is read or being read), at a random moment
        -- within the next 20 ms.
        local before = written.count(r, out_key)
        for _, id in ipairs(H.xadd_many(r, P .. ":s", math.floor(n / kills))) do ids[#ids + 1] = id end
        soon(function() return written.count(r, out_key) > before end, function() return h:describe() end)
        H.sleep(math.random() * 0.02)
        assert.equal("signal 9", h:kill(), h:describe())
        local pending = H.xpending(r, P .. ":s", P .. ":g").count
        -- Read but not acked when killed: these are replayed by the
        -- restart, and must not be written a second time.
        if pending > 0 then mid_work = mid_work + 1 end
        replays = replays + pending
        h = H.start(t, { script = path, consumer = "c1", log_level = "info" })
      end
      H.eventually(function()
        return written.count(r, out_key) >= #ids and H.xpending(r, P .. ":s", P .. ":g").count == 0
      end, 120, function() return h:describe() end)
      local out = written.all(r, out_key)
      H.assert_exactly_once(ids, out, "across kill -9s")
      print(string.format("\natomic %s sink: %d messages, %d kill -9s (%d with messages in flight, %d "
        .. "messages pending at the kills, summed), %d written, 0 lost, 0 duplicates, %d s",
        sink, #ids, kills, mid_work, replays, #out, os.time() - started))
      -- The run must have crashed the host mid-work, or it proved nothing.
      assert.is_true(mid_work > 0, "no kill landed while messages were in flight")
      assert.equal(0, h:stop(), h:describe())
    end)
  end

  it("write a stream entry per message, with its fields, and ack them (stream)", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, ATOMIC, { ITEM = "{ n = data.n, from = id }", SIZE = 20, SINK = "redis_stream" })
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 100)
    H.eventually(function() return t.redis:call("XLEN", P .. ":out") == 100 end, 60,
      function() return h:describe() end)
    local entries = t.redis:call("XRANGE", P .. ":out", "-", "+")
    local from = {}
    for i, e in ipairs(entries) do
      local f = {}
      for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
      assert.equal(tostring(i), f.n)
      from[i] = f.from
    end
    H.assert_exactly_once(ids, from)
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    -- The pipeline left the acks to the sink: no XACK of its own.
    assert.is_nil(h:log():find("XACK", 1, true))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("leave the batch pending when the script fails: nothing written, nothing acked", function()
    local t = H.context()
    local P = t.prefix
    t.redis:call("SET", P .. ":out", "not a list")
    local path = H.script(t, ATOMIC, { ITEM = "id", SIZE = 10, SINK = "redis_list" })
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":s", 10)
    H.eventually(function() return h:log():find("WRONGTYPE", 1, true) end, 60, function() return h:describe() end)
    assert.matches("rsghost.sink.redis_list%(\".-:out\", { atomic = true }%)", h:log())
    assert.equal(10, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.equal("not a list", t.redis:call("GET", P .. ":out"))
    t.redis:call("DEL", P .. ":out")
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 10, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    H.assert_exactly_once(ids, out)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
