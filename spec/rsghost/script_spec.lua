local script = require "rsghost.script"
local rsghost = require "rsghost"

local FIXTURES = "spec/fixtures/scripts/"

-- The message script.load raises for a script, or fails the test if it loads.
local function load_error(path, opts)
  local ok, err = pcall(script.load, path, opts)
  assert(not ok, path .. " loaded, but should have failed")
  return err
end

-- Write `text` as a script in a temporary file and load it.
local tmpfiles = {}
local function load_text(text, opts)
  local path = os.tmpname()
  tmpfiles[#tmpfiles + 1] = path
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return script.load(path, opts), path
end

local function load_text_error(text)
  local ok, err = pcall(load_text, text)
  assert(not ok, "script loaded, but should have failed")
  return err
end

-- A whole valid script around a source table written as Lua text.
local function with_source(src, rest)
  return "return {\n  source = " .. src .. ",\n"
    .. "  preprocess = function(stream, id, data) return data end,\n"
    .. "  sink = function(items) end,\n" .. (rest or "") .. "}\n"
end

describe("rsghost.script", function()
  after_each(function()
    for _, path in ipairs(tmpfiles) do os.remove(path) end
    tmpfiles = {}
  end)

  describe("load", function()
    it("normalizes the tutorial's example", function()
      local cfg = script.load("examples/simple-consumer-group.lua", { consumer = "stream-consumer-1" })
      assert.equal("examples/simple-consumer-group.lua", cfg.path)
      assert.same({
        kind = "group",
        streams = { { name = "source-stream-1", start = "0" }, { name = "source-stream-2", start = "0" } },
        group = "my-group",
        timeout = 0,
        block_ms = 0,
        replay_pending = true,
        convert = true,
        encoding = "utf-8",
        max_in_flight = 4096,
        max_in_flight_bytes = 64 * 1024 * 1024,
        read_chunk = 1000,
        heartbeat_channel = "my-group",
      }, cfg.source)
      assert.same({ size = 1000, timeout = 3 }, cfg.batch)
      assert.same({ initial = 0.5, max = 30 }, cfg.retry)
      assert.equal(1, #cfg.sinks)
      assert.is_function(cfg.preprocess)
      assert.equal("my-group", rsghost.group)
      assert.equal("stream-consumer-1", rsghost.consumer)
    end)

    it("sets rsghost.consumer before the script runs", function()
      local cfg = script.load(FIXTURES .. "consumer_name.lua", { consumer = "worker-7" })
      assert.equal("g-worker-7", cfg.source.group)
      assert.equal("g-worker-7", rsghost.group)
      assert.equal("worker-7", cfg.preprocess("s", "1-0", {}))
    end)

    it("defaults the batch to 1000 items flushed at the end of each read", function()
      local cfg = load_text(with_source('{ streams = "s", group = "g" }'))
      assert.same({ size = 1000, timeout = 0 }, cfg.batch)
    end)

    it("flushes at the end of each read when batch.timeout is not given, so nothing waits for a batch to fill", function()
      local cfg = load_text(with_source('{ streams = "s", group = "g" }', "  batch = { size = 10 },\n"))
      assert.same({ size = 10, timeout = 0 }, cfg.batch)
      cfg = load_text(with_source('{ streams = "s", group = "g" }', "  batch = {},\n"))
      assert.same({ size = 1000, timeout = 0 }, cfg.batch)
    end)

    it("flushes only when full with batch.timeout = false", function()
      local cfg = load_text(with_source('{ streams = "s", group = "g" }', "  batch = { size = 10, timeout = false },\n"))
      assert.same({ size = 10 }, cfg.batch)
      assert.matches("batch.timeout must be a number of seconds >= 0 or false %(only when full%), got string$",
        load_text_error(with_source('{ streams = "s", group = "g" }', '  batch = { timeout = "3" },\n')))
      assert.equal(4096, cfg.source.max_in_flight)
    end)

    it("accepts a list of sinks and a retry policy", function()
      local cfg = load_text("return {\n source = { streams = 's', group = 'g' },\n"
        .. " preprocess = function() end,\n sink = { function() end, function() end },\n"
        .. " retry = { initial = 1, max = 8 },\n}\n")
      assert.equal(2, #cfg.sinks)
      assert.same({ initial = 1, max = 8 }, cfg.retry)
    end)

    it("sizes max_in_flight from big batches", function()
      local cfg = load_text(with_source('{ streams = "s", group = "g" }', "  batch = { size = 5000, timeout = 1 },\n"))
      assert.equal(10000, cfg.source.max_in_flight)
    end)
  end)

  describe("source", function()
    it("takes one stream name as a string", function()
      local src = load_text(with_source('{ streams = "orders", group = "g" }')).source
      assert.same({ { name = "orders", start = "0" } }, src.streams)
    end)

    it("takes a map of start ids, in name order", function()
      local src = load_text(with_source('{ streams = { zeta = "$", alpha = "1700000000000-0", mid = 0 }, group = "g" }')).source
      assert.same({
        { name = "alpha", start = "1700000000000-0" },
        { name = "mid", start = "0" },
        { name = "zeta", start = "$" },
      }, src.streams)
    end)

    it("reads plain streams from new messages unless start is given", function()
      local src = load_text(with_source('{ streams = { "a", "b" } }')).source
      assert.equal("streams", src.kind)
      assert.same({ { name = "a", start = "$" }, { name = "b", start = "$" } }, src.streams)
      assert.is_nil(src.group)
      assert.is_nil(src.heartbeat_channel)
      src = load_text(with_source('{ streams = "a", start = "0", checkpoint = "ckpt" }')).source
      assert.same({ { name = "a", start = "0" } }, src.streams)
      assert.equal("ckpt", src.checkpoint)
    end)

    it("reads lists", function()
      local src = load_text(with_source('{ lists = { "l1", "l2" }, reliable = true, count = 50 }')).source
      assert.equal("lists", src.kind)
      assert.same({ "l1", "l2" }, src.lists)
      assert.is_true(src.reliable)
      assert.equal(50, src.count)
      assert.same({ "l" }, load_text(with_source('{ lists = "l" }')).source.lists)
      assert.is_false(load_text(with_source('{ lists = "l" }')).source.reliable)
    end)

    it("converts the read timeout to milliseconds, below 1 ms blocking forever", function()
      local function block_ms(t)
        return load_text(with_source('{ streams = "s", group = "g", timeout = ' .. t .. " }")).source.block_ms
      end
      assert.equal(290, block_ms("0.29"))
      assert.equal(1500, block_ms("1.5"))
      assert.equal(1, block_ms("0.001"))
      assert.equal(0, block_ms("0.0009"))
      assert.equal(0, block_ms("0"))
    end)

    it("defaults the claim timeout to 10 heartbeats and the channel to the group", function()
      local src = load_text(with_source('{ streams = "s", group = "g", heartbeat_interval = 2.5 }')).source
      assert.equal(2.5, src.heartbeat_interval)
      assert.equal(25, src.claim_timeout)
      assert.equal("g", src.heartbeat_channel)
    end)

    it("keeps explicit options", function()
      local src = load_text(with_source('{ streams = "s", group = "g", count = 10, replay_pending = false, '
        .. 'convert = false, encoding = "latin-1", heartbeat_interval = 1, claim_timeout = 30, '
        .. 'heartbeat_channel = "hb", max_in_flight = 20000 }')).source
      assert.equal(10, src.count)
      assert.is_false(src.replay_pending)
      assert.is_false(src.convert)
      assert.equal("latin-1", src.encoding)
      assert.equal(30, src.claim_timeout)
      assert.equal("hb", src.heartbeat_channel)
      assert.equal(20000, src.max_in_flight)
    end)
  end)

  describe("errors", function()
    it("passes a syntax error from loadfile through unchanged", function()
      local path = FIXTURES .. "syntax_error.lua"
      local _, expected = loadfile(path)
      assert.equal(expected, load_error(path))
      assert.matches("^spec/fixtures/scripts/syntax_error%.lua:7: ", expected)
    end)

    it("reports a runtime error of the script as raised", function()
      assert.equal("spec/fixtures/scripts/runtime_error.lua:3: attempt to index local 'limits' (a nil value)",
        load_error(FIXTURES .. "runtime_error.lua"))
    end)

    it("places an error value without a position at the script line that raised it", function()
      assert.matches("^spec/fixtures/scripts/error_table%.lua:3: table: ",
        load_error(FIXTURES .. "error_table.lua"))
    end)

    it("reports a script that returns no table at its return", function()
      assert.equal("spec/fixtures/scripts/returns_nil.lua:4: script must return a table (got nil)",
        load_error(FIXTURES .. "returns_nil.lua"))
      assert.equal("spec/fixtures/scripts/no_return.lua:2: script must return a table (got nil)",
        load_error(FIXTURES .. "no_return.lua"))
    end)

    it("names the field and the type of a wrong value, at the field's line", function()
      assert.equal("spec/fixtures/scripts/bad_count.lua:7: source.count must be a positive integer, got string",
        load_error(FIXTURES .. "bad_count.lua"))
    end)

    it("finds a nested field under its own table", function()
      assert.equal("spec/fixtures/scripts/bad_timeouts.lua:11: batch.timeout must be a number of seconds >= 0, got -1",
        load_error(FIXTURES .. "bad_timeouts.lua"))
    end)

    it("reports a missing preprocess or sink at the script's return", function()
      assert.equal("spec/fixtures/scripts/missing_preprocess.lua:2: preprocess is required",
        load_error(FIXTURES .. "missing_preprocess.lua"))
      assert.equal("spec/fixtures/scripts/missing_sink.lua:3: sink is required",
        load_error(FIXTURES .. "missing_sink.lua"))
    end)

    it("rejects unknown keys, suggesting the one meant", function()
      assert.equal('spec/fixtures/scripts/typo_preprocess.lua:4: unknown key "preproces" (did you mean "preprocess"?)',
        load_error(FIXTURES .. "typo_preprocess.lua"))
      assert.equal('spec/fixtures/scripts/typo_source.lua:4: unknown source key "grup" (did you mean "group"?)',
        load_error(FIXTURES .. "typo_source.lua"))
    end)

    -- Found by fuzz/fuzz_script: the key was used as a Lua pattern to find
    -- its line, and %q left a newline in the one-line message.
    it("names an unknown key that holds pattern characters or a newline, on one line", function()
      local err = load_text_error(with_source('{ streams = "s", group = "g", ["s)"] = 1 }'))
      assert.matches(':%d+: unknown source key "s%)"$', err)
      err = load_text_error(with_source('{ streams = "s", group = "g" }', '  ["a\\nb"] = 1,\n'))
      assert.matches(':%d+: unknown key "a\\nb"$', err)
      assert.is_nil(err:find("\n"))
    end)

    it("names the bad element of a sink list", function()
      assert.equal("spec/fixtures/scripts/bad_sink.lua:5: sink[2] must be a function, got string",
        load_error(FIXTURES .. "bad_sink.lua"))
    end)

    it("refuses a max_in_flight that cannot hold one batch", function()
      assert.equal("spec/fixtures/scripts/bad_in_flight.lua:5: source.max_in_flight (100) must be at least batch.size (500)",
        load_error(FIXTURES .. "bad_in_flight.lua"))
    end)

    it("refuses a start id that is not a stream id", function()
      assert.equal('spec/fixtures/scripts/bad_stream_id.lua:3: source.streams["clicks"] must be a stream id '
        .. '("0", "$" or "<ms>-<seq>"), got "yesterday"', load_error(FIXTURES .. "bad_stream_id.lua"))
    end)

    it("refuses options that do not apply to the source", function()
      assert.equal("spec/fixtures/scripts/lists_with_group.lua:4: source.group needs source.streams "
        .. "(lists have no consumer groups)", load_error(FIXTURES .. "lists_with_group.lua"))
      assert.matches(":3: source.checkpoint does not apply to a consumer%-group source$",
        load_text_error(with_source('{ streams = "s", group = "g",\n checkpoint = "k" }')))
      assert.matches(":3: source.heartbeat_interval does not apply to a streams source without a group$",
        load_text_error(with_source('{ streams = "s",\n heartbeat_interval = 1 }')))
    end)

    it("needs streams or lists, not both", function()
      assert.matches(":1: source.streams %(or source.lists%) is required$",
        load_text_error(with_source('{ group = "g" }')))
      assert.matches(":2: source.streams and source.lists cannot be given together$",
        load_text_error(with_source('{ streams = "s", lists = "l" }')))
    end)

    it("describes wrong values of every kind", function()
      local cases = {
        { '{ streams = {}, group = "g" }', "source.streams must be a non%-empty array of strings" },
        { '{ streams = { "a", 5 }, group = "g" }', "source.streams%[2%] must be a non%-empty string, got 5" },
        { '{ streams = { "a", "a" }, group = "g" }', 'source.streams names "a" twice' },
        { '{ streams = "s", group = "" }', 'source.group must be a non%-empty string, got ""' },
        { '{ streams = "s", group = "g", count = 0 }', "source.count must be a positive integer, got 0" },
        { '{ streams = "s", group = "g", count = 1.5 }', "source.count must be a positive integer, got 1.5" },
        { '{ streams = "s", group = "g", timeout = "1" }', "source.timeout must be a number of seconds >= 0, got string" },
        { '{ streams = "s", group = "g", convert = "yes" }', "source.convert must be true or false, got string" },
        { '{ streams = "s", group = "g", heartbeat_interval = 0 }', "source.heartbeat_interval must be a number of seconds > 0, got 0" },
        { '{ streams = "s", group = "g", heartbeat_interval = 10, claim_timeout = 5 }', "source.claim_timeout %(5%) must be longer than source.heartbeat_interval %(10%)" },
      }
      for _, case in ipairs(cases) do
        local err = load_text_error(with_source(case[1]))
        assert.matches(":2: " .. case[2], err)
      end
    end)

    it("checks batch and retry", function()
      assert.matches("batch.size must be a positive integer, got 0$",
        load_text_error(with_source('{ streams = "s", group = "g" }', "  batch = { size = 0 },\n")))
      assert.matches('unknown batch key "sise" %(did you mean "size"%?%)$',
        load_text_error(with_source('{ streams = "s", group = "g" }', "  batch = { sise = 10 },\n")))
      assert.matches("retry.max %(1%) must not be less than retry.initial %(2%)$",
        load_text_error(with_source('{ streams = "s", group = "g" }', "  retry = { initial = 2, max = 1 },\n")))
      assert.matches("preprocess must be a function, got string$",
        load_text_error('return { source = { streams = "s", group = "g" }, preprocess = "x", sink = function() end }'))
    end)

    it("refuses settings that would do nothing where they are", function()
      assert.matches(":2: source.claim_timeout does nothing without source.heartbeat_interval",
        load_text_error(with_source('{ streams = "s", group = "g", claim_timeout = 30 }')))
      assert.matches(":2: source.heartbeat_channel does nothing without source.heartbeat_interval",
        load_text_error(with_source('{ streams = "s", group = "g", heartbeat_channel = "c" }')))
      assert.matches(":2: source.replay_pending does nothing for plain lists",
        load_text_error(with_source('{ lists = "l", replay_pending = true }')))
      load_text(with_source('{ lists = "l", reliable = true, replay_pending = false }'))
      load_text(with_source('{ streams = "s", group = "g", heartbeat_interval = 1, claim_timeout = 30 }'))
    end)

    it("refuses an encoding iconv does not know, and takes Python's names", function()
      assert.matches(':2: source.encoding "latin%-99" is not an encoding iconv knows',
        load_text_error(with_source('{ streams = "s", group = "g", encoding = "latin-99" }')))
      for _, name in ipairs { "latin-1", "latin_1", "cp1252", "UTF8", "utf_8", "utf-16" } do
        local cfg = load_text(with_source('{ streams = "s", group = "g", encoding = "' .. name .. '" }'))
        assert.equal(name, cfg.source.encoding)
      end
    end)

    it("puts the script's own directory first on the module path", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir) == 0 or true)
      local f = assert(io.open(dir .. "/rsghost_spec_helper_mod.lua", "w"))
      f:write('return { tag = "next to the script" }\n')
      f:close()
      f = assert(io.open(dir .. "/s.lua", "w"))
      f:write('local helper = require "rsghost_spec_helper_mod"\n' .. with_source('{ streams = "s", group = "g", start = "0" }'))
      f:close()
      script.load(dir .. "/s.lua")
      assert.equal("next to the script", package.loaded.rsghost_spec_helper_mod.tag)
      package.loaded.rsghost_spec_helper_mod = nil
      os.remove(dir .. "/rsghost_spec_helper_mod.lua")
      os.remove(dir .. "/s.lua")
      os.remove(dir)
    end)

    it("keeps the raised message of a missing module on one line", function()
      local err = load_text_error('local x = require "rsghost.no_such_module"\nreturn {}\n')
      assert.matches(":1: module 'rsghost.no_such_module' not found:", err)
      assert.not_matches("\n", err)
    end)
  end)

  describe("where", function()
    it("leaves a message positioned in the script alone", function()
      assert.equal("a/s.lua:3: boom", script.where("a/s.lua:3: boom", "a/s.lua"))
    end)

    it("recognizes a position Lua shortened", function()
      local long = string.rep("d/", 40) .. "s.lua"
      local msg = "..." .. long:sub(-50) .. ":3: boom"
      assert.equal(msg, script.where(msg, long))
    end)
  end)
end)
