-- Redis lists as a source (source.lists), with the real binary and a real
-- redis-server: plain (BLMPOP, popped items are gone) and reliable (items
-- move into rsghost:processing:<consumer>:<list> and leave it only once their
-- batch's sinks succeeded). Every item reaches the sink once; a reliable
-- consumer loses nothing across kill -9 and restart, replaying its leftovers
-- first; an item whose sink failed waits in the processing list; a key that
-- is not a list is a clear error; items are converted from source.encoding
-- and removed from the processing list by their raw bytes; SIGTERM flushes
-- the partial batch.
local server = require "support.server"
local H = require "support.host"
local S = require "support.sources"
local concat, only, wait_out, assert_exactly_once = S.concat, S.only, S.wait_out, S.assert_exactly_once
local log_line_with = S.log_line_with

-- A lists pipeline: support.sources.script (its sink pushes the labels onto
-- P:out, raises while the key P:fail exists and, from batch opts.hold_at on,
-- holds while P:hold exists) with a preprocess that raises on an item
-- starting with "fail" and labels the others "list item". source is the
-- source table's contents. A crash while the sink holds lands between the
-- sink's write and the removal from the processing list.
local function script(t, source, opts)
  return S.script(t, source, [[function(list, item)
    if item:find("^fail") then error("refusing item " .. item) end
    rsghost.log.info("preprocess-saw", item)
    return list .. " " .. item
  end]], opts)
end

-- The processing list of a reliable consumer for a list.
local function processing(consumer, list)
  return "rsghost:processing:" .. consumer .. ":" .. list
end

-- Pushes n items "<tag>-<i>" onto list in one RPUSH; returns the sink's
-- labels for them ("list item").
local function push(r, list, tag, n)
  local cmd, want = { "RPUSH", list }, {}
  for i = 1, n do
    local item = tag .. "-" .. i
    cmd[#cmd + 1] = item
    want[#want + 1] = list .. " " .. item
  end
  r:call(unpack(cmd))
  return want
end

-- Waits until every key of keys is empty (or gone).
local function wait_empty(t, keys, h)
  H.eventually(function()
    for _, k in ipairs(keys) do
      if t.redis:call("LLEN", k) ~= 0 then return false end
    end
    return true
  end, 60, function()
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = k .. ": " .. table.concat(H.list(t.redis, k), ", ")
    end
    return "not empty: " .. table.concat(parts, "; ") .. "\n" .. h:describe()
  end)
end

local MODES = {
  { name = "plain", source = "" },
  { name = "reliable", source = ", reliable = true" },
}

describe("a lists source", function()
  after_each(function() H.cleanup() end)

  for _, mode in ipairs(MODES) do
    for _, nlists in ipairs { 1, 2 } do
      it(string.format("(%s, %d list%s) delivers every item once, old and new, and leaves the lists empty",
        mode.name, nlists, nlists > 1 and "s" or ""), function()
        local t = H.context()
        local P = t.prefix
        local lists, names = {}, {}
        for i = 1, nlists do
          lists[i] = P .. ":l" .. i
          names[i] = string.format('P .. ":l%d"', i)
        end
        -- count = 7: what waited before the start takes several reads.
        local path = script(t, string.format("lists = { %s }, count = 7, timeout = 0.2%s",
          table.concat(names, ", "), mode.source))
        local want = {}
        for i, l in ipairs(lists) do want = concat(want, push(t.redis, l, "old" .. i, 20)) end
        local h = H.start(t, { script = path, consumer = "c1" })
        for i, l in ipairs(lists) do want = concat(want, push(t.redis, l, "new" .. i, 15)) end
        -- And a few one at a time.
        for i = 1, 5 do want = concat(want, push(t.redis, lists[nlists], "late" .. i, 1)) end
        local out = wait_out(t, want, h)
        assert_exactly_once(want, out)
        -- Each list is a queue: its items arrive in the order pushed.
        for _, l in ipairs(lists) do assert.same(only(want, l), only(out, l)) end
        local empty = {}
        for _, l in ipairs(lists) do
          empty[#empty + 1] = l
          empty[#empty + 1] = processing("c1", l)
        end
        wait_empty(t, empty, h)
        assert.equal(0, h:stop(), h:describe())
        assert_exactly_once(want, H.list(t.redis, P .. ":out"))
        if mode.name == "plain" then
          -- Plain lists keep nothing of their own in Redis.
          for _, l in ipairs(lists) do assert.equal(0, t.redis:call("EXISTS", processing("c1", l))) end
        end
      end)
    end

    it(string.format("(%s) flushes the partial batch on SIGTERM and exits 0", mode.name), function()
      local t = H.context()
      local P = t.prefix
      -- Only the stop can flush a batch this large with this long a timeout;
      -- the read blocks forever (timeout = 0, the default).
      local path = script(t, 'lists = { P .. ":l1", P .. ":l2" }' .. mode.source, { size = 1000, timeout = 120 })
      local h = H.start(t, { script = path, consumer = "c1" })
      local want = concat(push(t.redis, P .. ":l1", "a", 15), push(t.redis, P .. ":l2", "b", 15))
      H.eventually(function() return #h:log_lines("preprocess%-saw") >= 30 end, 60, function() return h:describe() end)
      assert.equal(0, t.redis:call("LLEN", P .. ":out"))
      assert.is_true(h:signal("TERM"))
      assert.equal(0, h:wait(60), h:describe())
      assert_exactly_once(want, H.list(t.redis, P .. ":out"), "the partial batch was not flushed:")
      for _, l in ipairs { P .. ":l1", P .. ":l2" } do
        assert.equal(0, t.redis:call("LLEN", l))
        assert.equal(0, t.redis:call("LLEN", processing("c1", l)), "the flushed batch was not removed from processing")
      end
    end)

    it(string.format("(%s) exits 1 naming a key that is not a list (WRONGTYPE), having read nothing", mode.name), function()
      local t = H.context()
      local P = t.prefix
      push(t.redis, P .. ":good", "x", 5)
      t.redis:call("SET", P .. ":bad", "a string")
      local path = script(t, 'lists = { P .. ":good", P .. ":bad" }, timeout = 0.2' .. mode.source)
      local h = H.start(t, { script = path, consumer = "c1" })
      assert.equal(1, h:wait(60), h:describe())
      local line = log_line_with(h, P .. ":bad", "WRONGTYPE")
      assert.is_not_nil(line, "no log line names the key and WRONGTYPE:\n" .. h:describe())
      assert.matches(" error: ", line)
      assert.equal(0, #h:log_lines("preprocess%-saw"), "items were read:\n" .. h:describe())
      assert.equal(5, t.redis:call("LLEN", P .. ":good"), "items were taken from the good list")
      assert.equal("a string", t.redis:call("GET", P .. ":bad"))
      assert.equal(0, t.redis:call("EXISTS", P .. ":out", processing("c1", P .. ":good"), processing("c1", P .. ":bad")))
    end)

    -- Host bug (reported): a key that turns into a non-list while the host
    -- runs stops it with "... failed: a key in source.lists is not a list
    -- (WRONGTYPE ...)" that does not say which key. Turn into it() once the
    -- host names the key.
    it(string.format("(%s) exits 1 naming a key that turns into a non-list while it runs (WRONGTYPE)", mode.name), function()
      local t = H.context()
      local P = t.prefix
      local path = script(t, 'lists = { P .. ":good", P .. ":bad" }, timeout = 0.2' .. mode.source)
      local h = H.start(t, { script = path, consumer = "c1" })
      wait_out(t, push(t.redis, P .. ":good", "x", 5), h)
      t.redis:call("SET", P .. ":bad", "a string")
      assert.equal(1, h:wait(60), h:describe())
      assert.is_not_nil(log_line_with(h, P .. ":bad", "WRONGTYPE"), "no log line names the key and WRONGTYPE:\n" .. h:describe())
    end)

    it(string.format("(%s) converts latin-1 items to utf-8", mode.name), function()
      local t = H.context()
      local P = t.prefix
      local path = script(t, 'lists = P .. ":l", encoding = "latin-1", timeout = 0.2' .. mode.source)
      local h = H.start(t, { script = path, consumer = "c1" })
      -- "café", "naïve", "ÿ" and "½ €?" in latin-1 bytes; latin-1 has no euro.
      t.redis:call("RPUSH", P .. ":l", "caf\233", "na\239ve", "\255", "\189 plain")
      local l = P .. ":l "
      local want = { l .. "café", l .. "naïve", l .. "ÿ", l .. "½ plain" }
      local out = wait_out(t, want, h)
      assert_exactly_once(want, out)
      -- Reliable: the raw (latin-1) items are what leave the processing list.
      wait_empty(t, { P .. ":l", processing("c1", P .. ":l") }, h)
      assert.equal(0, h:stop(), h:describe())
      assert.equal(0, t.redis:call("LLEN", processing("c1", P .. ":l")))
    end)
  end

  it("(plain) drops an item preprocess fails on, logging it, and the others flow", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t, 'lists = P .. ":l", timeout = 0.2')
    local h = H.start(t, { script = path, consumer = "c1" })
    t.redis:call("RPUSH", P .. ":l", "a", "fail-1", "b")
    local want = { P .. ":l a", P .. ":l b" }
    assert_exactly_once(want, wait_out(t, want, h))
    assert.is_not_nil(log_line_with(h, "fail-1", "refusing item fail-1", "script.lua:"), h:describe())
    assert.equal(0, t.redis:call("LLEN", P .. ":l"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("(reliable) refuses to start without a consumer name (exit 2), touching nothing", function()
    local t = H.context()
    local P = t.prefix
    push(t.redis, P .. ":l", "x", 3)
    local path = script(t, 'lists = P .. ":l", reliable = true')
    local h = H.start(t, { script = path, consumer = false })
    assert.equal(2, h:wait(60), h:describe())
    assert.matches("CONSUMER%-NAME", h:log())
    assert.equal(3, t.redis:call("LLEN", P .. ":l"))
  end)
end)

describe("a reliable lists source", function()
  after_each(function() H.cleanup() end)

  for _, nlists in ipairs { 1, 2 } do
    it(string.format("loses nothing across kill -9 and restart with the same name, replaying leftovers first (%d list%s)",
      nlists, nlists > 1 and "s" or ""), function()
      local t = H.context()
      local P = t.prefix
      local lists, names = {}, {}
      for i = 1, nlists do
        lists[i] = P .. ":l" .. i
        names[i] = string.format('P .. ":l%d"', i)
      end
      local path = script(t, string.format("lists = { %s }, timeout = 0.2, reliable = true", table.concat(names, ", ")),
        { size = 50, timeout = "0.1", hold_at = 3 })
      local all = {}
      for i, l in ipairs(lists) do all = concat(all, push(t.redis, l, "old" .. i, 300 / nlists)) end
      -- Two batches are sunk and removed from processing; the third is
      -- written by the sink, which then holds it.
      t.redis:call("SET", P .. ":hold", "1")
      local h1 = H.start(t, { script = path, consumer = "c1" })
      H.eventually(function() return t.redis:call("GET", P .. ":batches") == "3" end, 60,
        function() return h1:describe() end)
      assert.equal("signal 9", h1:kill())

      -- Every item is somewhere: written by the sink, in a processing list,
      -- or not yet taken.
      local before = H.list(t.redis, P .. ":out")
      local held = {}
      for _, l in ipairs(lists) do
        for _, item in ipairs(H.list(t.redis, processing("c1", l))) do held[#held + 1] = l .. " " .. item end
        for _, item in ipairs(H.list(t.redis, l)) do held[#held + 1] = l .. " " .. item end
      end
      local c = H.compare(all, concat(before, held))
      assert.same({}, c.missing, "items vanished at the crash")
      assert.is_true(#held > 0, "nothing left in processing at the crash")
      local leftovers = {}
      for _, l in ipairs(lists) do
        for _, item in ipairs(H.list(t.redis, processing("c1", l))) do leftovers[l .. " " .. item] = true end
      end

      -- Items pushed while it is down come after the leftovers.
      local new = {}
      for _, l in ipairs(lists) do new = concat(new, push(t.redis, l, "down", 10)) end
      t.redis:call("DEL", P .. ":hold")
      local h2 = H.start(t, { script = path, consumer = "c1" })
      local want = concat(all, new)
      local out = wait_out(t, want, h2)
      c = H.compare(want, out)
      assert.same({}, c.missing, "items lost across kill -9 and restart")
      assert.same({}, c.unexpected)
      local count = H.tally(out)
      for _, label in ipairs(before) do
        if leftovers[label] then
          assert.is_true(count[label] >= 2, label .. " was written, left in processing, and not replayed")
        else
          assert.equal(1, count[label], label .. " had left processing, yet came again")
        end
      end
      -- The leftovers went through the pipeline before any new item.
      local last_leftover, first_new = 0, math.huge
      local is_new = H.tally(new)
      for i = #before + 1, #out do
        if leftovers[out[i]] then last_leftover = i end
        if is_new[out[i]] and i < first_new then first_new = i end
      end
      assert.is_true(last_leftover < first_new, "a new item went through before a leftover of the crashed run")

      local empty = {}
      for _, l in ipairs(lists) do
        empty[#empty + 1] = l
        empty[#empty + 1] = processing("c1", l)
      end
      wait_empty(t, empty, h2)
      assert.equal(0, h2:stop(), h2:describe())
      for _, k in ipairs(empty) do assert.equal(0, t.redis:call("LLEN", k), k .. " not empty after a clean stop") end
      print(string.format("\nreliable lists (%d), kill -9 and restart: %d items, %d replayed, %d duplicates",
        nlists, #want, #held, c.duplicates))
    end)
  end

  it("splits the items between two consumers, each item once, each in its own processing list", function()
    local t = H.context()
    local P = t.prefix
    local path = script(t, 'lists = { P .. ":l1", P .. ":l2" }, timeout = 0.2, count = 5, reliable = true',
      { size = 5 })
    local h1 = H.start(t, { script = path, consumer = "c1" })
    local h2 = H.start(t, { script = path, consumer = "c2" })
    -- Both up (signal handlers in place) before the work starts: the first
    -- may take it all, and the second is stopped at the end regardless.
    for _, h in ipairs { h1, h2 } do
      H.eventually(function() return #h:log_lines("reading lists") > 0 end, 60, function() return h:describe() end)
    end
    local want = {}
    for i = 1, 20 do
      want = concat(want, push(t.redis, P .. ":l1", "a" .. i, 3), push(t.redis, P .. ":l2", "b" .. i, 3))
    end
    assert_exactly_once(want, wait_out(t, want, h1))
    local keys = {}
    for _, c in ipairs { "c1", "c2" } do
      for _, l in ipairs { P .. ":l1", P .. ":l2" } do keys[#keys + 1] = processing(c, l) end
    end
    wait_empty(t, keys, h1)
    assert.equal(0, h1:stop(), h1:describe())
    assert.equal(0, h2:stop(), h2:describe())
    assert_exactly_once(want, H.list(t.redis, P .. ":out"))
  end)

  -- Host bug (reported): when the first list of source.lists has nothing
  -- left in its processing list but a later one has, the host enters its
  -- replay phase at the first list, finds nothing to read there and never
  -- reads again (source_lists.c onLeftover: replay_list = 0 is not advanced
  -- past lists with no leftovers). Turn into it() once fixed.
  it("replays leftovers that only a later list's processing list holds, then reads on", function()
    local t = H.context()
    local P = t.prefix
    local l1, l2 = P .. ":l1", P .. ":l2"
    -- What a crashed run of c1 left behind, in l2's processing list only.
    t.redis:call("RPUSH", processing("c1", l2), "left-1", "left-2")
    local path = script(t, 'lists = { P .. ":l1", P .. ":l2" }, timeout = 0.2, reliable = true')
    local h = H.start(t, { script = path, consumer = "c1" })
    local want = concat({ l2 .. " left-1", l2 .. " left-2" }, push(t.redis, l1, "new", 3), push(t.redis, l2, "new", 3))
    assert_exactly_once(want, wait_out(t, want, h))
    wait_empty(t, { l1, l2, processing("c1", l1), processing("c1", l2) }, h)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("keeps an item whose sink failed in the processing list until the sink heals", function()
    local t = H.context()
    local P = t.prefix
    local l = P .. ":l"
    local proc = processing("c1", l)
    local path = script(t, 'lists = P .. ":l", timeout = 0.2, reliable = true')
    -- Waiting before the start: the first read moves them all.
    local want = push(t.redis, l, "x", 10)
    t.redis:call("SET", P .. ":fail", "1")
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function() return #h:log_lines("the database is down") >= 3 end, 60, function() return h:describe() end)
    local items = {}
    for _, item in ipairs(H.list(t.redis, proc)) do items[#items + 1] = l .. " " .. item end
    assert_exactly_once(want, items, "processing list while the sink fails:")
    assert.equal(0, t.redis:call("LLEN", l))
    assert.equal(0, t.redis:call("LLEN", P .. ":out"))
    assert.is_true(h:alive(), h:describe())

    t.redis:call("DEL", P .. ":fail")
    local out = wait_out(t, want, h)
    assert_exactly_once(want, out)
    wait_empty(t, { proc }, h)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("leaves an item preprocess fails on, or with invalid bytes, in the processing list; the others flow", function()
    local t = H.context()
    local P = t.prefix
    local l = P .. ":l"
    local proc = processing("c1", l)
    local path = script(t, 'lists = P .. ":l", timeout = 0.2, reliable = true')
    local h = H.start(t, { script = path, consumer = "c1" })
    t.redis:call("RPUSH", l, "a", "fail-1", "b", "bad \255 byte", "c")
    local want = { l .. " a", l .. " b", l .. " c" }
    assert_exactly_once(want, wait_out(t, want, h))
    H.eventually(function()
      local left = H.list(t.redis, proc)
      table.sort(left)
      return #left == 2 and left[1] == "bad \255 byte" and left[2] == "fail-1"
    end, 60, function() return table.concat(H.list(t.redis, proc), ", ") .. "\n" .. h:describe() end)
    assert.is_not_nil(log_line_with(h, "fail-1", "refusing item fail-1"), h:describe())
    assert.is_not_nil(log_line_with(h, l, proc, "utf-8"), h:describe())
    assert.equal(0, h:stop(), h:describe())
    assert.equal(2, t.redis:call("LLEN", proc))
  end)
end)

describe("a reliable lists source across a lost connection", function()
  local srv

  -- CONFIG SET changes the whole server: a private one.
  setup(function() srv = server.start() end)
  teardown(function() srv.stop() end)
  after_each(function() H.cleanup() end)

  -- Host bug (reported): items moved into the processing list by a read
  -- whose reply was lost with the connection are never delivered by this
  -- run (source_lists.c rsgListsSetup replays leftovers only once, at
  -- start); they wait for a restart. Here the reply is lost because it
  -- exceeds an output buffer limit, so Redis closes the connection after
  -- the move. Turn into it() once fixed.
  it("delivers the items moved by a read whose reply was lost, without a restart", function()
    local t = H.context { server = srv }
    local P = t.prefix
    local l = P .. ":l"
    local path = script(t, 'lists = P .. ":l", timeout = 0.2, reliable = true')
    local h = H.start(t, { script = path, consumer = "c1" })
    wait_out(t, push(t.redis, l, "probe", 1), h)
    -- Idle, it blocks in BLMOVE (one item, a small reply); the next read
    -- moves the other 49 with one reply of about 5 kB, over the limit.
    t.redis:call("CONFIG", "SET", "client-output-buffer-limit", "normal 1024 0 0")
    local want = { l .. " probe-1" }
    local cmd = { "RPUSH", l }
    for i = 1, 50 do
      local item = string.rep("x", 100) .. "-" .. i
      cmd[#cmd + 1] = item
      want[#want + 1] = l .. " " .. item
    end
    local ok, err = pcall(function()
      t.redis:call(unpack(cmd))
      H.eventually(function() return #h:log_lines("lost") >= 1 end, 60, function() return h:describe() end)
    end)
    t.redis:call("CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0")
    assert(ok, err)
    want = concat(want, push(t.redis, l, "after", 2))
    assert_exactly_once(want, wait_out(t, want, h))
    wait_empty(t, { l, processing("c1", l) }, h)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
