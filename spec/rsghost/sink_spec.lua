local rsghost = require "rsghost"
local pipeline = require "rsghost.pipeline"
local sink = require "rsghost.sink"

-- A fake host that records commands and answers with h.reply(argv).
local function fake_host()
  local h = { sent = {}, logs = {}, acked = {} }
  h.reply = function(argv)
    if argv[1] == "XADD" then return "1-" .. #h.sent end
    return #argv - 2
  end
  h.now = function() return 0 end
  function h.send(argv, cb)
    h.sent[#h.sent + 1] = argv
    cb(h.reply(argv))
  end
  h.ack = function(acks) for _, ids in pairs(acks) do for _, id in ipairs(ids) do h.acked[#h.acked + 1] = id end end end
  h.release = function() end
  h.set_timer = function() end
  h.pause = function() end
  h.log = function(level, msg) h.logs[#h.logs + 1] = level .. ": " .. msg end
  h.finished = function() end
  return h
end

-- Sink the given items (preprocess outputs) as one batch through `fn`.
local function sink_batch(fn, items, setup)
  local h = fake_host()
  if setup then setup(h) end
  local p = pipeline.new({
    preprocess = function(stream, id, data) return data.item end,
    sinks = { fn },
    batch = { size = 100000, timeout = 0 },
  }, h)
  local msgs = {}
  for i, item in ipairs(items) do
    msgs[3 * i - 2], msgs[3 * i - 1], msgs[3 * i] = "s", tostring(i), { item = item }
  end
  p:feed(msgs, #items)
  return h
end

describe("rsghost.sink", function()
  it("is what scripts reach as rsghost.sink", function()
    assert.equal(sink, rsghost.sink)
  end)

  describe("redis_list", function()
    it("RPUSHes the whole batch with one command, in order", function()
      local h = sink_batch(sink.redis_list("out"), { "a", "b", "c" })
      assert.same({ { "RPUSH", "out", "a", "b", "c" } }, h.sent)
      assert.same({ "1", "2", "3" }, h.acked)
    end)

    it("LPUSHes with right = false", function()
      local h = sink_batch(sink.redis_list("out", { right = false }), { "a", "b" })
      assert.same({ { "LPUSH", "out", "a", "b" } }, h.sent)
    end)

    it("sends batches bigger than unpack() can take", function()
      local items = {}
      for i = 1, 20000 do items[i] = "item" .. i end
      local h = sink_batch(sink.redis_list("out"), items)
      assert.equal(1, #h.sent)
      assert.equal(20002, #h.sent[1])
      assert.equal("item20000", h.sent[1][20002])
    end)

    it("fails with the sink's name and the script line that created it", function()
      local line = debug.getinfo(1, "l").currentline + 1
      local fn = sink.redis_list("out")
      local h = sink_batch(fn, { "a" }, function(h)
        h.reply = function() return nil, "WRONGTYPE Operation against a key holding the wrong kind of value" end
      end)
      local file = debug.getinfo(1, "S").source:sub(2)
      assert.matches(file:gsub("%p", "%%%0") .. ":" .. line
        .. ': rsghost.sink.redis_list%("out"%): WRONGTYPE Operation against a key', h.logs[1])
      assert.same({}, h.acked)
    end)

    it("fails on an item that is not a string", function()
      local h = sink_batch(sink.redis_list("out"), { "a", { nested = true } })
      assert.matches('rsghost.sink.redis_list%("out"%): item 2 must be a string or a number, got table$', h.logs[1])
      assert.equal(0, #h.sent)
    end)

    it("checks its arguments where the script calls it", function()
      assert.has_error(function() sink.redis_list() end, "rsghost.sink.redis_list: key must be a non-empty string")
      assert.has_error(function() sink.redis_list("k", { rigth = true }) end,
        'rsghost.sink.redis_list: unknown option "rigth"')
      assert.has_error(function() sink.redis_list("k", { right = "yes" }) end,
        "rsghost.sink.redis_list: right must be true or false")
    end)
  end)

  describe("redis_stream", function()
    it("XADDs each item, capped approximately, all sent together", function()
      local h = sink_batch(sink.redis_stream("events", { maxlen = 1000 }), { "one", "two" })
      assert.same({
        { "XADD", "events", "MAXLEN", "~", "1000", "*", "data", "one" },
        { "XADD", "events", "MAXLEN", "~", "1000", "*", "data", "two" },
      }, h.sent)
      assert.same({ "1", "2" }, h.acked)
    end)

    it("writes a table item's fields", function()
      local h = sink_batch(sink.redis_stream("events"), { { user = "42", n = 3 } })
      local argv = h.sent[1]
      assert.same({ "XADD", "events", "*" }, { argv[1], argv[2], argv[3] })
      local fields = {}
      for i = 4, #argv, 2 do fields[argv[i]] = argv[i + 1] end
      assert.same({ user = "42", n = "3" }, fields)
    end)

    it("caps exactly with approximate = false", function()
      local h = sink_batch(sink.redis_stream("events", { maxlen = 10, approximate = false }), { "x" })
      assert.same({ "XADD", "events", "MAXLEN", "10", "*", "data", "x" }, h.sent[1])
    end)

    it("fails if any XADD failed, naming the sink", function()
      local h = sink_batch(sink.redis_stream("events"), { "a", "b" }, function(h)
        h.reply = function() return nil, "ERR The ID specified in XADD is equal or smaller" end
      end)
      assert.equal(2, #h.sent)
      assert.matches('rsghost.sink.redis_stream%("events"%): ERR The ID specified in XADD is equal or smaller '
        .. "%(command 1 of 2%)$", h.logs[1])
      assert.same({}, h.acked)
    end)

    it("fails on an empty table item before sending", function()
      local h = sink_batch(sink.redis_stream("events"), { "a", {} })
      assert.matches('rsghost.sink.redis_stream%("events"%): item 2 is an empty table$', h.logs[1])
      assert.equal(0, #h.sent)
    end)

    it("checks its options where the script calls it", function()
      assert.has_error(function() sink.redis_stream("k", { max_len = 5 }) end,
        'rsghost.sink.redis_stream: unknown option "max_len"')
      assert.has_error(function() sink.redis_stream("k", { maxlen = -1 }) end,
        "rsghost.sink.redis_stream: maxlen must be an integer >= 0")
    end)
  end)

  describe("atomic", function()
    local script = require "rsghost.script"
    local HERE = debug.getinfo(1, "S").source:sub(2)

    local function load_error(t)
      local ok, err = pcall(script.validate, t, HERE)
      assert(not ok, "script loaded, but should have failed")
      return err
    end

    it("needs a consumer-group source, and says why", function()
      local err = load_error({ source = { lists = "l" }, preprocess = function() end,
        sink = sink.redis_list("out", { atomic = true }) })
      assert.matches('rsghost.sink.redis_list("out", { atomic = true }), which acks each message with XACK',
        err, 1, true)
      assert.matches("needs a consumer-group source (source.group), and a lists source has nothing to XACK",
        err, 1, true)
      err = load_error({ source = { streams = "s" }, preprocess = function() end,
        sink = sink.redis_stream("out", { atomic = true }) })
      assert.matches("a streams source without a group has nothing to XACK", err, 1, true)
    end)

    it("must be the only sink, and says why", function()
      local err = load_error({ source = { streams = "s", group = "g" }, preprocess = function() end,
        sink = { function() end, sink.redis_list("out", { atomic = true }) } })
      assert.matches("sink[2] is rsghost.sink.redis_list", err, 1, true)
      assert.matches("must be the script's only sink: it acks the batch as it writes it", err, 1, true)
    end)

    it("checks its option", function()
      assert.has_error(function() sink.redis_list("k", { atomic = 1 }) end,
        "rsghost.sink.redis_list: atomic must be true or false")
      assert.has_error(function() sink.redis_stream("k", { atomic = "yes" }) end,
        "rsghost.sink.redis_stream: atomic must be true or false")
    end)

    -- The batch as one EVAL (its XACKs inside), and no XACK by the pipeline.
    local function run_atomic(fn, items)
      local cfg = script.validate({ source = { streams = { "a", "b" }, group = "g" },
        preprocess = function(stream, id, data) return data.item end, sink = fn,
        batch = { size = 100000, timeout = 0 } }, HERE)
      assert.is_true(cfg.sink_acks)
      local h = fake_host()
      h.reply = function() return #items end
      local p = pipeline.new(cfg, h)
      local msgs = {}
      for i, item in ipairs(items) do
        msgs[3 * i - 2], msgs[3 * i - 1], msgs[3 * i] = i % 2 == 1 and "a" or "b", i .. "-0", { item = item }
      end
      p:feed(msgs, #items)
      return h
    end

    it("sends a list batch as one EVAL: the target and each item's stream as keys", function()
      local h = run_atomic(sink.redis_list("out", { atomic = true }), { "x", "y", "z" })
      assert.equal(1, #h.sent)
      local argv = h.sent[1]
      assert.equal("EVAL", argv[1])
      assert.same({ "4", "out", "a", "b", "a", "g", "1-0", "1", "x", "2-0", "1", "y", "3-0", "1", "z" },
        { unpack(argv, 3) })
      assert.same({}, h.acked, "the pipeline acked what the atomic sink acks")
    end)

    it("runs in the test kit, which plays the script: writes and acks, no ack by the pipeline", function()
      local testing = require "rsghost.testing"
      local k = testing.load({
        source = { streams = "s", group = "g" },
        preprocess = function(_, id, data) return { v = data.v, id = id } end,
        batch = { size = 2, timeout = false },
        sink = sink.redis_stream("out", { atomic = true }),
      })
      k:feed_many({ { "s", "1-0", { v = "a" } }, { "s", "2-0", { v = "b" } } })
      assert.same({ s = { "1-0", "2-0" } }, k:acked())
      assert.same({}, k:pending())
      local entries = k.redis:call("XRANGE", "out", "-", "+")
      assert.equal(2, #entries)
      for _, c in ipairs(k:host_calls()) do assert.not_equal("ack", c[1]) end

      local k2 = testing.load({
        source = { streams = "s", group = "g" },
        preprocess = function(_, id) return id end,
        sink = sink.redis_list("out", { atomic = true }),
      })
      k2.redis:call("SET", "out", "x")
      k2:feed("s", "1-0", { v = "a" })
      assert.matches("WRONGTYPE out holds a string, not a list; nothing written or acked",
        k2:logged("sink 1 of 1 failed"), 1, true)
      assert.same({ s = { "1-0" } }, k2:pending())
      k2.redis:call("DEL", "out")
      k2:drain()
      assert.same({ "1-0" }, k2.redis:call("LRANGE", "out", 0, -1))
      assert.same({}, k2:pending())
    end)

    it("sends a stream batch as one EVAL with each item's fields", function()
      local h = run_atomic(sink.redis_stream("out", { atomic = true, maxlen = 10 }), { "x", "y" })
      assert.equal(1, #h.sent)
      assert.same({ "3", "out", "a", "b", "g", "4", "MAXLEN", "~", "10", "*", "1-0", "2", "data", "x",
        "2-0", "2", "data", "y" }, { unpack(h.sent[1], 3) })
      assert.same({}, h.acked)
    end)
  end)

  describe("file", function()
    local testing = require "rsghost.testing"

    local function tmpname()
      local path = os.tmpname()
      os.remove(path)
      return path
    end

    local function read(path)
      local f = io.open(path, "rb")
      if not f then return nil end
      local text = f:read("*a")
      f:close()
      return text
    end

    it("appends each item as a line, a batch at a time, and acks after", function()
      local path = tmpname()
      local k = testing.load({
        source = { streams = "s", group = "g" },
        preprocess = function(_, _, data) return data.v end,
        batch = { size = 2, timeout = false },
        sink = sink.file(path),
      })
      k:feed_many({ { "s", "1-0", { v = "one" } }, { "s", "2-0", { v = "two" } }, { "s", "3-0", { v = "3" } } })
      assert.equal("one\ntwo\n", read(path))
      assert.same({ s = { "1-0", "2-0" } }, k:acked())
      k:stop()
      assert.equal("one\ntwo\n3\n", read(path))
      local calls = {}
      for _, c in ipairs(k:host_calls()) do if c[1] == "file_append" then calls[#calls + 1] = c end end
      assert.same({ "file_append", path, "one\ntwo\n", true }, calls[1])
      os.remove(path)
    end)

    it("fails on an item that is not a string, saying what to do", function()
      local path = tmpname()
      local k = testing.load({
        source = { streams = "s", group = "g" },
        preprocess = function(_, _, data) return data end,
        sink = sink.file(path, { fsync = false }),
      })
      k:feed("s", "1-0", { v = "x" })
      local line = k:logged("sink 1 of 1 failed")
      assert.matches('rsghost.sink.file("' .. path .. '"): item 1 is a table, but each item becomes a line '
        .. "of text: return a string from preprocess (cjson.encode(t) for a table)", line, 1, true)
      assert.is_nil(read(path))
      assert.same({ s = { "1-0" } }, k:pending())
    end)

    it("fails when the file cannot be written, naming it", function()
      local k = testing.load({
        source = { streams = "s", group = "g" },
        preprocess = function(_, _, data) return data.v end,
        sink = sink.file("/nonexistent-dir/out.log"),
      })
      k:feed("s", "1-0", { v = "x" })
      assert.matches("cannot open '/nonexistent-dir/out.log'", k:logged("sink 1 of 1 failed"), 1, true)
    end)

    it("checks its arguments where the script calls it", function()
      assert.has_error(function() sink.file("") end, "rsghost.sink.file: path must be a non-empty string")
      assert.has_error(function() sink.file("x", { fsync = 1 }) end, "rsghost.sink.file: fsync must be true or false")
      assert.has_error(function() sink.file("x", { sync = true }) end, 'rsghost.sink.file: unknown option "sync"')
    end)
  end)
end)
