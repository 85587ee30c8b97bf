local rsghost = require "rsghost"
local pipeline = require "rsghost.pipeline"

-- A fake host answering Redis commands with h.reply(argv) (synchronously, or
-- later from h.deliver() when h.async is set).
local function fake_host()
  local h = { t = 0, sent = {}, queued = {}, logs = {}, acked = 0 }
  h.reply = function() return "OK" end
  h.now = function() return h.t end
  function h.send(argv, cb)
    h.sent[#h.sent + 1] = argv
    local reply, err = h.reply(argv)
    if h.async then
      h.queued[#h.queued + 1] = function() cb(reply, err) end
    else
      cb(reply, err)
    end
  end
  function h.deliver(i)
    local f = table.remove(h.queued, i or 1)
    f()
  end
  h.ack = function() h.acked = h.acked + 1 end
  h.release = function() end
  h.set_timer = function() end
  h.pause = function() end
  h.log = function(level, msg) h.logs[#h.logs + 1] = level .. ": " .. msg end
  h.finished = function() end
  return h
end

-- Run `body` as the only sink of a one-message batch; returns the host and
-- the error the sink raised, if any (as logged).
local function in_sink(body, setup)
  local h = fake_host()
  if setup then setup(h) end
  local p = pipeline.new({
    path = debug.getinfo(1, "S").source:sub(2),
    preprocess = function(stream, id) return id end,
    sinks = { body },
    batch = { size = 10, timeout = 0 },
    retry = { initial = 1, max = 1 },
  }, h)
  p:feed({ "s", "1-0", {} }, 1)
  return h, h.logs[1]
end

describe("rsghost", function()
  describe("redis.call", function()
    it("returns the reply", function()
      local got
      local h = in_sink(function() got = rsghost.redis.call("INCR", "n") end, function(h)
        h.reply = function() return 7 end
      end)
      assert.same({ "INCR", "n" }, h.sent[1])
      assert.equal(7, got)
      assert.equal(1, h.acked)
    end)

    it("returns nil for a nil reply", function()
      local got = "unset"
      in_sink(function() got = rsghost.redis.call("GET", "missing") end, function(h)
        h.reply = function() return nil end
      end)
      assert.is_nil(got)
    end)

    it("raises an error reply, at the caller's line", function()
      local line
      local h, err = in_sink(function()
        line = debug.getinfo(1, "l").currentline + 1
        rsghost.redis.call("LPUSH", "a-string", "x")
      end, function(h)
        h.reply = function() return nil, "WRONGTYPE Operation against a key holding the wrong kind of value" end
      end)
      assert.matches(":" .. line .. ": WRONGTYPE Operation against a key holding the wrong kind of value$", err)
      assert.equal(0, h.acked)
    end)

    it("passes numbers as strings, integers without exponent", function()
      local h = in_sink(function() rsghost.redis.call("SET", "k", 1e15, "PX", 1500, 2.5) end)
      assert.same({ "SET", "k", "1000000000000000", "PX", "1500", "2.5" }, h.sent[1])
    end)

    it("refuses arguments Redis cannot take", function()
      local _, err = in_sink(function() rsghost.redis.call("SET", "k", nil, "v") end)
      assert.matches("rsghost.redis.call: argument #3 must be a string or a number, got nil$", err)
      _, err = in_sink(function() rsghost.redis.call("SET", "k", {}) end)
      assert.matches("argument #3 must be a string or a number, got table$", err)
      _, err = in_sink(function() rsghost.redis.call() end)
      assert.matches("rsghost.redis.call: empty command$", err)
    end)

    it("refuses commands that would wedge the shared connection, saying what to use", function()
      local h, err = in_sink(function() rsghost.redis.call("MULTI") end)
      assert.matches("rsghost.redis.call: MULTI is not allowed in a sink: use rsghost.redis.pipeline", err, 1, true)
      assert.equal(0, #h.sent)
      for _, argv in ipairs {
        { "EXEC" }, { "WATCH", "k" }, { "SELECT", 2 }, { "SUBSCRIBE", "c" }, { "BLPOP", "l", 0 },
        { "brpoplpush", "a", "b", 0 }, { "CLIENT", "REPLY", "OFF" }, { "XREAD", "BLOCK", 0, "STREAMS", "s", "$" },
        { "WAIT", 1, 0 }, { "QUIT" }, { "MONITOR" },
      } do
        h, err = in_sink(function() rsghost.redis.call(unpack(argv)) end)
        assert.matches("is not allowed in a sink: ", err, 1, true)
        assert.equal(0, #h.sent, argv[1])
      end
      -- Their harmless relatives pass.
      for _, argv in ipairs { { "LPOP", "l" }, { "XREAD", "COUNT", 1, "STREAMS", "s", "0" }, { "WAIT", 1, 100 },
        { "CLIENT", "ID" } } do
        h, err = in_sink(function() rsghost.redis.call(unpack(argv)) end)
        assert.is_nil(err)
        assert.equal(1, #h.sent, argv[1])
      end
    end)

    it("waits for a reply that arrives later", function()
      local got
      local h = in_sink(function() got = rsghost.redis.call("GET", "k") end, function(h)
        h.async = true
        h.reply = function() return "v" end
      end)
      assert.is_nil(got)
      h.deliver()
      assert.equal("v", got)
      assert.equal(1, h.acked)
    end)

    it("is only available inside a sink", function()
      assert.has_error(function() rsghost.redis.call("PING") end,
        "rsghost.redis.call is only available inside a sink")
    end)

    it("raises in preprocess, naming the script line", function()
      local h = fake_host()
      local p = pipeline.new({
        path = debug.getinfo(1, "S").source:sub(2),
        preprocess = function() return rsghost.redis.call("GET", "k") end,
        sinks = { function() end },
        batch = { size = 10, timeout = 0 },
      }, h)
      p:feed({ "s", "1-0", {} }, 1)
      assert.matches("init_spec%.lua:%d+: rsghost.redis.call is only available inside a sink$", h.logs[1])
      assert.equal(0, #h.sent)
    end)

    it("refuses a coroutine created by the sink", function()
      local _, err = in_sink(function()
        local co = coroutine.wrap(function() rsghost.redis.call("PING") end)
        co()
      end)
      assert.matches("rsghost.redis.call is only available in the sink's own coroutine, not in one it created$", err)
    end)
  end)

  describe("redis.pcall", function()
    it("returns nil and the error reply instead of raising", function()
      local reply, err
      local h = in_sink(function() reply, err = rsghost.redis.pcall("INCR", "text") end, function(h)
        h.reply = function() return nil, "ERR value is not an integer or out of range" end
      end)
      assert.is_nil(reply)
      assert.equal("ERR value is not an integer or out of range", err)
      assert.equal(1, h.acked) -- the sink handled it and returned
    end)

    it("returns the reply on success", function()
      local reply, err
      in_sink(function() reply, err = rsghost.redis.pcall("PING") end, function(h)
        h.reply = function() return "PONG" end
      end)
      assert.equal("PONG", reply)
      assert.is_nil(err)
    end)

    it("is only available inside a sink", function()
      assert.has_error(function() rsghost.redis.pcall("PING") end,
        "rsghost.redis.pcall is only available inside a sink")
    end)
  end)

  describe("redis.pipeline", function()
    it("sends every command and returns the replies in order, nil as false", function()
      local replies
      local h = in_sink(function()
        replies = rsghost.redis.pipeline({ { "SET", "a", 1 }, { "GET", "missing" }, { "INCR", "n" } })
      end, function(h)
        h.reply = function(argv)
          if argv[1] == "SET" then return "OK" elseif argv[1] == "INCR" then return 3 end
          return nil
        end
      end)
      assert.same({ { "SET", "a", "1" }, { "GET", "missing" }, { "INCR", "n" } }, h.sent)
      assert.same({ "OK", false, 3 }, replies)
    end)

    it("sends all before any reply and resumes once all replied", function()
      local replies
      local h = in_sink(function()
        replies = rsghost.redis.pipeline({ { "GET", "a" }, { "GET", "b" } })
      end, function(h)
        h.async = true
        h.reply = function(argv) return argv[2] end
      end)
      assert.equal(2, #h.sent)
      h.deliver(2) -- replies may come back in any order
      assert.is_nil(replies)
      h.deliver(1)
      assert.same({ "a", "b" }, replies)
    end)

    it("raises if any command failed, naming the first", function()
      local h, err = in_sink(function()
        rsghost.redis.pipeline({ { "SET", "a", "1" }, { "INCR", "a-list" }, { "INCR", "other" } })
      end, function(h)
        h.reply = function(argv)
          if argv[1] == "INCR" then return nil, "WRONGTYPE bad " .. argv[2] end
          return "OK"
        end
      end)
      assert.equal(3, #h.sent)
      assert.matches("rsghost.redis.pipeline: WRONGTYPE bad a%-list %(command 2 of 3%)$", err)
      assert.equal(0, h.acked)
    end)

    it("sends a whole transaction, MULTI first and EXEC last", function()
      local got
      local h = in_sink(function()
        got = rsghost.redis.pipeline({ { "MULTI" }, { "INCR", "n" }, { "EXEC" } })
      end, function(h)
        h.reply = function(argv)
          if argv[1] == "MULTI" then return "OK" elseif argv[1] == "EXEC" then return { 1 } end
          return "QUEUED"
        end
      end)
      assert.same({ "OK", "QUEUED", { 1 } }, got)
      assert.equal(3, #h.sent)
    end)

    it("refuses a transaction that could be left open", function()
      for _, cmds in ipairs {
        { { "MULTI" }, { "INCR", "n" } },
        { { "INCR", "n" }, { "EXEC" } },
        { { "MULTI" }, { "MULTI" }, { "EXEC" } },
        { { "MULTI" }, { "WATCH", "k" }, { "EXEC" } },
      } do
        local h, err = in_sink(function() rsghost.redis.pipeline(cmds) end)
        assert.is_truthy(err:find("is not allowed in a sink", 1, true) or err:find("is allowed only as the first", 1, true), err)
        assert.equal(0, #h.sent)
      end
    end)

    it("returns an empty array for no commands", function()
      local replies
      local h = in_sink(function() replies = rsghost.redis.pipeline({}) end)
      assert.same({}, replies)
      assert.equal(0, #h.sent)
    end)

    it("refuses malformed commands before sending any", function()
      local h, err = in_sink(function() rsghost.redis.pipeline({ { "PING" }, "GET a" }) end)
      assert.matches("rsghost.redis.pipeline: command 2 must be a table, got string$", err)
      assert.equal(0, #h.sent)
    end)

    it("is only available inside a sink", function()
      assert.has_error(function() rsghost.redis.pipeline({ { "PING" } }) end,
        "rsghost.redis.pipeline is only available inside a sink")
    end)
  end)

  describe("log", function()
    it("joins tostring'ed arguments with spaces and sends them to the host", function()
      local h = fake_host()
      local p = pipeline.new({
        preprocess = function(stream, id)
          rsghost.log.warn("odd message", id, 42, nil, true)
          return nil
        end,
        sinks = { function() end },
        batch = { size = 10, timeout = 0 },
      }, h)
      p:feed({ "s", "1-0", {} }, 1)
      assert.same({ "warn: odd message 1-0 42 nil true" }, h.logs)
    end)

    it("has every level", function()
      local h = fake_host()
      pipeline.new({ preprocess = function() end, sinks = { function() end }, batch = { size = 1 } }, h)
      rsghost.log.debug("a")
      rsghost.log.info("b")
      rsghost.log.warn("c")
      rsghost.log.error("d")
      assert.same({ "debug: a", "info: b", "warn: c", "error: d" }, h.logs)
    end)

    it("writes to stderr before any host exists", function()
      local state = rsghost._state
      local saved_host, saved_stderr = state.host, io.stderr
      local written = {}
      state.host = nil
      io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do written[#written + 1] = s end end }
      local ok, err = pcall(rsghost.log.info, "loading", 1)
      io.stderr, state.host = saved_stderr, saved_host
      assert(ok, err)
      assert.equal("rsghost info: loading 1\n", table.concat(written))
    end)
  end)

  describe("sink", function()
    it("is rsghost.sink", function()
      assert.equal(require "rsghost.sink", rsghost.sink)
    end)
  end)
end)
