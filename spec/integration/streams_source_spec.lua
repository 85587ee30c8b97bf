-- Plain streams (a source without a group: XREAD), with the real binary and
-- a real redis-server: every message reaches the sink once; "$" (the
-- default) means the messages added after the start; a checkpoint hash
-- (source.checkpoint) makes a kill -9 and restart lose nothing and resume
-- after what fully left the pipeline, and a message preprocess fails on does
-- not hold it back; a key that is not a stream is a clear error; SIGTERM
-- flushes the partial batch.
local H = require "support.host"
local S = require "support.sources"
local concat, only, wait_out, assert_exactly_once = S.concat, S.only, S.wait_out, S.assert_exactly_once
local log_line_with = S.log_line_with

-- A plain-streams pipeline: support.sources.script (its sink pushes the
-- labels onto P:out, raises while the key P:fail exists and, from batch
-- opts.hold_at on, holds while P:hold exists) with a preprocess that raises
-- on a message with a field "fail", drops one with a field "drop" and
-- labels the others "stream id". source is the source table's contents. A
-- crash while the sink holds lands between the sink's write and the
-- checkpoint.
local function script(t, source, opts)
  return S.script(t, source, [[function(stream, id, data)
    if data.fail then error("refusing message " .. id) end
    if data.drop then return nil end
    rsghost.log.info("preprocess-saw", id)
    return stream .. " " .. id
  end]], opts)
end

-- "stream id" labels, as the sink writes them.
local function labels(stream, ids, first, last)
  local out = {}
  for i = first or 1, last or #ids do out[#out + 1] = stream .. " " .. ids[i] end
  return out
end

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i end end
  return nil
end

-- Starts h and waits until it reads live: it keeps adding to the stream
-- P:probe (part of its source) until one of those arrives. Messages added to
-- the other streams after this are new to it, whatever "$" resolved to.
local function wait_live(t, h)
  local probe = t.prefix .. ":probe"
  H.eventually(function()
    t.redis:call("XADD", probe, "*", "probe", "1")
    for _, item in ipairs(H.list(t.redis, t.prefix .. ":out")) do
      if item:find(probe, 1, true) == 1 then return true end
    end
    return false
  end, 60, function() return h:describe() end)
end

describe("a plain streams source", function()
  after_each(function() H.cleanup() end)

  it("with start = \"0\" delivers the whole history and new messages of several streams, each once", function()
    local t = H.context()
    local P = t.prefix
    local s1, s2 = P .. ":s1", P .. ":s2"
    local old1 = H.xadd_many(t.redis, s1, 30)
    local old2 = H.xadd_many(t.redis, s2, 15)
    -- count = 7: the history takes several reads.
    local h = H.start(t, { script = script(t, 'streams = { P .. ":s1", P .. ":s2" }, start = "0", count = 7, timeout = 0.2') })
    local new1 = H.xadd_many(t.redis, s1, 20)
    local new2 = H.xadd_many(t.redis, s2, 25)
    local want = concat(labels(s1, old1), labels(s2, old2), labels(s1, new1), labels(s2, new2))
    local out = wait_out(t, want, h)
    assert_exactly_once(want, out)
    -- Each stream's messages arrive in id order.
    assert.same(labels(s1, concat(old1, new1)), only(out, s1))
    assert.same(labels(s2, concat(old2, new2)), only(out, s2))
    -- Reading is all it does: no group is created, the streams are untouched.
    assert.same({}, t.redis:call("XINFO", "GROUPS", s1))
    assert.equal(50, t.redis:call("XLEN", s1))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("by default (\"$\") delivers only the messages added after it started, each once", function()
    local t = H.context()
    local P = t.prefix
    local s = P .. ":s"
    local history = H.xadd_many(t.redis, s, 10)
    H.xadd_many(t.redis, P .. ":probe", 3)
    local h = H.start(t, { script = script(t, 'streams = { P .. ":s", P .. ":probe" }, timeout = 0.2') })
    wait_live(t, h)
    local new = H.xadd_many(t.redis, s, 20)
    local want = labels(s, new)
    local out = wait_out(t, want, h)
    local c = H.compare(labels(s, history), out)
    assert.equal(#history, #c.missing, "a message of the history (before the start) was delivered")
    assert_exactly_once(want, only(out, s))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("reads a stream missing at the start from its first message once it appears", function()
    local t = H.context()
    local P = t.prefix
    local h = H.start(t, { script = script(t, 'streams = { P .. ":s", P .. ":probe" }, timeout = 0.2') })
    wait_live(t, h)
    -- Missing when "$" was resolved: all it will ever hold is new.
    local ids = H.xadd_many(t.redis, P .. ":s", 15)
    local want = labels(P .. ":s", ids)
    assert_exactly_once(want, only(wait_out(t, want, h), P .. ":s"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("starts each stream of the map form { name = start_id } after its own id", function()
    local t = H.context()
    local P = t.prefix
    local a, b = P .. ":a", P .. ":b"
    local old_a = H.xadd_many(t.redis, a, 10)
    local old_b = H.xadd_many(t.redis, b, 10)
    local path = script(t, string.format('streams = { [P .. ":a"] = "0", [P .. ":b"] = "%s" }, timeout = 0.2', old_b[6]))
    local h = H.start(t, { script = path })
    local new_a = H.xadd_many(t.redis, a, 5)
    local new_b = H.xadd_many(t.redis, b, 5)
    local want = concat(labels(a, old_a), labels(b, old_b, 7), labels(a, new_a), labels(b, new_b))
    local out = wait_out(t, want, h)
    assert_exactly_once(want, out)
    assert.equal(0, h:stop(), h:describe())
  end)
end)

describe("a plain streams source with a checkpoint", function()
  after_each(function() H.cleanup() end)

  it("loses nothing across kill -9 and restart, and resumes after the checkpoint", function()
    local t = H.context()
    local P = t.prefix
    local s = P .. ":s"
    local path = script(t, 'streams = P .. ":s", start = "0", checkpoint = P .. ":cp", timeout = 0.2',
      { size = 50, timeout = "0.1", hold_at = 3 })
    local ids = H.xadd_many(t.redis, s, 300)
    -- Two batches are sunk and checkpointed; the third is written by the
    -- sink, which then holds it.
    t.redis:call("SET", P .. ":hold", "1")
    local h1 = H.start(t, { script = path, consumer = "c1" })
    local cp
    H.eventually(function()
      cp = t.redis:call("HGET", P .. ":cp", s)
      return cp and t.redis:call("GET", P .. ":batches") == "3"
    end, 60, function() return h1:describe() end)
    assert.equal("signal 9", h1:kill())
    local before = H.list(t.redis, P .. ":out")
    cp = t.redis:call("HGET", P .. ":cp", s)

    -- The checkpoint is a message of the stream, everything up to it
    -- reached the sink, and it stops short of the batch the sink held.
    local k = index_of(ids, cp)
    assert.is_not_nil(k, "the checkpoint " .. tostring(cp) .. " is not an id of " .. s)
    local sunk = H.tally(before)
    for i = 1, k do
      assert.is_not_nil(sunk[s .. " " .. ids[i]], ids[i] .. " is before the checkpoint but never reached the sink")
    end
    assert.is_true(k < #before, "the checkpoint covers the batch whose sink never returned")

    t.redis:call("DEL", P .. ":hold")
    local h2 = H.start(t, { script = path, consumer = "c1" })
    local more = H.xadd_many(t.redis, s, 20)
    local all = concat(ids, more)
    local want = labels(s, all)
    local out = wait_out(t, want, h2)
    local c = H.compare(want, out)
    assert.same({}, c.missing, "messages lost across kill -9 and restart")
    assert.same({}, c.unexpected)
    local count = H.tally(out)
    -- Resumed after the checkpoint: what it covered is not read again...
    for i = 1, k do assert.equal(1, count[s .. " " .. ids[i]], ids[i] .. " (checkpointed) was read again") end
    -- ...and what the crashed run wrote past it comes again (at least once).
    for _, label in ipairs(before) do
      if index_of(ids, label:match(" (%S+)$")) > k then
        assert.is_true(count[label] >= 2, label .. " was written, never checkpointed, and not read again")
      end
    end
    H.eventually(function() return t.redis:call("HGET", P .. ":cp", s) == all[#all] end, 60,
      function() return h2:describe() end)
    print(string.format("\nplain streams, kill -9 and restart: %d messages, checkpoint at #%d, %d duplicates",
      #all, k, c.duplicates))
    assert.equal(0, h2:stop(), h2:describe())
  end)

  it("delivers, on restart, the messages added while it was down (default start \"$\")", function()
    local t = H.context()
    local P = t.prefix
    local s = P .. ":s"
    local history = H.xadd_many(t.redis, s, 5)
    local path = script(t, 'streams = { P .. ":s", P .. ":probe" }, checkpoint = P .. ":cp", timeout = 0.2')
    local h1 = H.start(t, { script = path })
    wait_live(t, h1)
    local first = H.xadd_many(t.redis, s, 10)
    wait_out(t, labels(s, first), h1)
    assert.equal(0, h1:stop(), h1:describe())
    assert.equal(first[#first], t.redis:call("HGET", P .. ":cp", s))

    local down = H.xadd_many(t.redis, s, 10)
    local h2 = H.start(t, { script = path })
    local want = concat(labels(s, first), labels(s, down))
    local out = wait_out(t, want, h2)
    assert_exactly_once(want, only(out, s))
    assert.equal(#history, #H.compare(labels(s, history), out).missing, "the history was delivered")
    assert.is_true(h2:log():find("resuming after checkpoint " .. first[#first], 1, true) ~= nil, h2:describe())
    assert.equal(0, h2:stop(), h2:describe())
  end)

  it("moves the checkpoint past messages preprocess fails on or whose bytes are invalid, and does not read them again", function()
    local t = H.context()
    local P = t.prefix
    local s = P .. ":s"
    local path = script(t, 'streams = P .. ":s", start = "0", checkpoint = P .. ":cp", timeout = 0.2')
    -- 10 and 20 (the last) make preprocess raise; 15 is not valid utf-8.
    local ids = H.xadd_many(t.redis, s, 20, function(i)
      if i == 10 or i == 20 then return { "n", i, "fail", "1" } end
      if i == 15 then return { "n", "bad \255 byte" } end
      return { "n", i }
    end)
    local good = {}
    for i, id in ipairs(ids) do
      if i ~= 10 and i ~= 15 and i ~= 20 then good[#good + 1] = s .. " " .. id end
    end
    local h1 = H.start(t, { script = path })
    wait_out(t, good, h1)
    -- Nothing holds it back: it reaches the last message, a failed one.
    H.eventually(function() return t.redis:call("HGET", P .. ":cp", s) == ids[20] end, 60,
      function() return "checkpoint " .. tostring(t.redis:call("HGET", P .. ":cp", s)) .. "\n" .. h1:describe() end)
    for _, i in ipairs { 10, 20 } do
      assert.is_not_nil(log_line_with(h1, "preprocess failed", ids[i], "refusing message"),
        "no log line names the failed message " .. ids[i] .. ":\n" .. h1:describe())
    end
    local named = false
    for _, line in ipairs(h1:log_lines()) do
      if line:find(ids[15], 1, true) and line:lower():find("utf%-8") then named = true end
    end
    assert.is_true(named, "no log line names the invalid message " .. ids[15] .. ":\n" .. h1:describe())
    assert.equal(0, h1:stop(), h1:describe())

    -- A restart resumes past them: only new messages arrive.
    local h2 = H.start(t, { script = path })
    local more = H.xadd_many(t.redis, s, 5)
    local want = concat(good, labels(s, more))
    local out = wait_out(t, want, h2)
    assert_exactly_once(want, out)
    assert.equal(0, h2:stop(), h2:describe())
    assert.equal(more[#more], t.redis:call("HGET", P .. ":cp", s))
  end)

  it("holds the checkpoint back while a sink fails, even past later dropped messages", function()
    local t = H.context()
    local P = t.prefix
    local s = P .. ":s"
    local path = script(t, 'streams = P .. ":s", start = "0", checkpoint = P .. ":cp", timeout = 0.2')
    -- The 11th is dropped by preprocess: it leaves the pipeline at once,
    -- while the first ten wait for the sink.
    local ids = H.xadd_many(t.redis, s, 11, function(i)
      if i == 11 then return { "n", i, "drop", "1" } end
      return { "n", i }
    end)
    t.redis:call("SET", P .. ":fail", "1")
    local h = H.start(t, { script = path })
    H.eventually(function() return #h:log_lines("the database is down") >= 3 end, 60, function() return h:describe() end)
    assert.is_nil(t.redis:call("HGET", P .. ":cp", s), "checkpointed past messages whose sink failed")
    t.redis:call("DEL", P .. ":fail")
    local want = labels(s, ids, 1, 10)
    assert_exactly_once(want, wait_out(t, want, h))
    H.eventually(function() return t.redis:call("HGET", P .. ":cp", s) == ids[11] end, 60,
      function() return "checkpoint " .. tostring(t.redis:call("HGET", P .. ":cp", s)) .. "\n" .. h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)
end)

describe("a plain streams source, stopping and failing", function()
  after_each(function() H.cleanup() end)

  it("flushes the partial batch on SIGTERM, checkpoints it and exits 0", function()
    local t = H.context()
    local P = t.prefix
    local s1, s2 = P .. ":s1", P .. ":s2"
    local ids1 = H.xadd_many(t.redis, s1, 25)
    local ids2 = H.xadd_many(t.redis, s2, 25)
    -- Only the stop can flush a batch this large with this long a timeout.
    local path = script(t, 'streams = { P .. ":s1", P .. ":s2" }, start = "0", checkpoint = P .. ":cp"',
      { size = 1000, timeout = 120 })
    local h = H.start(t, { script = path })
    H.eventually(function() return #h:log_lines("preprocess%-saw") >= 50 end, 60, function() return h:describe() end)
    assert.equal(0, t.redis:call("LLEN", P .. ":out"))
    assert.is_nil(t.redis:call("HGET", P .. ":cp", s1))
    assert.is_true(h:signal("TERM"))
    assert.equal(0, h:wait(60), h:describe())
    assert_exactly_once(concat(labels(s1, ids1), labels(s2, ids2)), H.list(t.redis, P .. ":out"),
      "the partial batch was not flushed:")
    assert.equal(ids1[25], t.redis:call("HGET", P .. ":cp", s1))
    assert.equal(ids2[25], t.redis:call("HGET", P .. ":cp", s2))
  end)

  it("exits 1 naming a key that is not a stream (WRONGTYPE), having read nothing", function()
    local t = H.context()
    local P = t.prefix
    H.xadd_many(t.redis, P .. ":good", 5)
    t.redis:call("RPUSH", P .. ":bad", "a", "b")
    local path = script(t, 'streams = { P .. ":good", P .. ":bad" }, start = "0", checkpoint = P .. ":cp"')
    local h = H.start(t, { script = path })
    assert.equal(1, h:wait(60), h:describe())
    assert.is_not_nil(log_line_with(h, "error", P .. ":bad", "WRONGTYPE"),
      "no error line names the key and WRONGTYPE:\n" .. h:describe())
    assert.equal(0, #h:log_lines("preprocess%-saw"), "messages were read:\n" .. h:describe())
    assert.equal(0, t.redis:call("EXISTS", P .. ":out", P .. ":cp"))
    assert.same({ "a", "b" }, H.list(t.redis, P .. ":bad"))
    assert.equal(5, t.redis:call("XLEN", P .. ":good"))
  end)

  -- Host bug (reported): a key that turns into a non-stream while the host
  -- runs stops it with "XREAD failed: WRONGTYPE ..." that does not say which
  -- key. Turn into it() once the host names the key.
  it("exits 1 naming a key that turns into a non-stream while it runs (WRONGTYPE)", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t, 'streams = { P .. ":good", P .. ":bad" }, start = "0", timeout = 0.2')
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, P .. ":good", 5)
    wait_out(t, labels(P .. ":good", ids), h)
    t.redis:call("RPUSH", P .. ":bad", "a")
    assert.equal(1, h:wait(60), h:describe())
    assert.is_not_nil(log_line_with(h, "error", P .. ":bad", "WRONGTYPE"),
      "no error line names the key and WRONGTYPE:\n" .. h:describe())
  end)
end)
