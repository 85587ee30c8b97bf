-- Poison messages: source.dead_letter and
-- source.max_deliveries as the script checks them and as the pipeline applies
-- them, through the test kit (the C host runs the same pipeline code:
-- spec/integration/dead_letter_spec.lua holds it to the same rules).
local script = require "rsghost.script"
local testing = require "rsghost.testing"

local tmpfiles = {}
local function load_text(text)
  local path = os.tmpname()
  tmpfiles[#tmpfiles + 1] = path
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return script.load(path), path
end

local function load_error(text)
  local ok, err = pcall(load_text, text)
  assert(not ok, "script loaded, but should have failed")
  return err
end

local function with_source(src)
  return "return {\n  source = " .. src .. ",\n"
    .. "  preprocess = function(stream, id, data) return data end,\n"
    .. "  sink = function(items) end,\n}\n"
end

describe("source.dead_letter", function()
  after_each(function()
    for _, path in ipairs(tmpfiles) do os.remove(path) end
    tmpfiles = {}
  end)

  describe("checks", function()
    it("normalizes a key and a { key, maxlen } table", function()
      local cfg = load_text(with_source([[{ streams = "s", group = "g", dead_letter = "dlq" }]]))
      assert.same({ key = "dlq" }, cfg.source.dead_letter)
      assert.is_nil(cfg.source.max_deliveries)
      cfg = load_text(with_source([[{ streams = "s", group = "g",
    dead_letter = { key = "dlq", maxlen = 1000 }, max_deliveries = 3 }]]))
      assert.same({ key = "dlq", maxlen = 1000 }, cfg.source.dead_letter)
      assert.equal(3, cfg.source.max_deliveries)
    end)

    it("refuses a key that is one of the source's streams, at its line", function()
      local err = load_error(with_source([[{ streams = { "a", "b" }, group = "g",
    dead_letter = "b" }]]))
      assert.matches(':3: source.dead_letter "b" is one of the source\'s streams', err)
    end)

    it("refuses max_deliveries without dead_letter", function()
      local err = load_error(with_source([[{ streams = "s", group = "g",
    max_deliveries = 3 }]]))
      assert.matches(":3: source.max_deliveries needs source.dead_letter", err)
    end)

    it("applies to plain streams and lists too; max_deliveries only to a group", function()
      local cfg = load_text(with_source([[{ streams = "s", checkpoint = "cp", dead_letter = "dlq" }]]))
      assert.same({ key = "dlq" }, cfg.source.dead_letter)
      cfg = load_text(with_source([[{ lists = "l", reliable = true, dead_letter = "dlq" }]]))
      assert.same({ key = "dlq" }, cfg.source.dead_letter)
      local err = load_error(with_source([[{ lists = "l",
    dead_letter = "dlq", max_deliveries = 3 }]]))
      assert.matches(":3: source.max_deliveries does not apply to a lists source: Redis counts deliveries "
        .. "only for a consumer group's pending entries", err)
      err = load_error(with_source([[{ lists = { "a", "b" },
    dead_letter = "a" }]]))
      assert.matches(':3: source.dead_letter "a" is one of the source\'s lists', err)
    end)

    it("refuses wrong shapes", function()
      assert.matches("source.dead_letter must be a stream key",
        load_error(with_source([[{ streams = "s", group = "g", dead_letter = 5 }]])))
      assert.matches("maxlen must be a positive integer",
        load_error(with_source([[{ streams = "s", group = "g", dead_letter = { key = "d", maxlen = 0 } }]])))
      assert.matches("unknown source.dead_letter key \"maxlne\"",
        load_error(with_source([[{ streams = "s", group = "g", dead_letter = { key = "d", maxlne = 3 } }]])))
    end)
  end)

  describe("in the pipeline", function()
    local function kit(preprocess, extra)
      local src = { streams = { "s1", "s2" }, group = "g", dead_letter = "dlq" }
      for k, v in pairs(extra or {}) do src[k] = v end
      return testing.load({ source = src, preprocess = preprocess, sink = function() end })
    end

    it("dead-letters at once the one message preprocess raises on; the others are sunk", function()
      local k = kit(function(_, id, data)
        if data.n == "500" then error("bad n") end
        return data.n
      end)
      local batch = {}
      for i = 1, 1000 do batch[i] = { "s1", { "n", i, "n2", i } } end
      local ids = k:feed_many(batch)
      assert.equal(999, #k:sunk())
      assert.same({}, k:pending())
      local dead = k:dead_letters()
      assert.equal(1, #dead)
      assert.equal("s1", dead[1].stream)
      assert.equal(ids[500], dead[1].id)
      assert.equal(1, dead[1].deliveries)
      assert.matches("^spec/rsghost/dead_letter_spec.lua:%d+: bad n$", dead[1].error)
      assert.same({ { "n", "500" }, { "n2", "500" } }, dead[1].fields)
      assert.truthy(k:logged("preprocess failed on message " .. ids[500]:gsub("%-", "%%-") .. " from s1, dead%-lettered to 'dlq'"))
    end)

    it("leaves a message pending, as before, without dead_letter", function()
      local k = testing.load({ source = { streams = "s1", group = "g" },
        preprocess = function() error("no") end, sink = function() end })
      k:feed("s1", "1-0", { a = "1" })
      assert.same({ s1 = { "1-0" } }, k:pending())
      assert.same({}, k:dead_letters())
    end)

    it("dead-letters without preprocessing a message delivered more than max_deliveries times", function()
      local seen = {}
      local k = kit(function(_, id, data)
        seen[#seen + 1] = id
        return data.a
      end, { max_deliveries = 3 })
      k:feed("s1", "1-0", { a = "1" }, { deliveries = 3 })
      k:feed_many { { "s1", "2-0", { a = "2" }, deliveries = 4 }, { "s2", "3-0", { a = "3" } } }
      assert.same({ "1-0", "3-0" }, seen)
      local dead = k:dead_letters()
      assert.equal(1, #dead)
      assert.equal("2-0", dead[1].id)
      assert.equal(4, dead[1].deliveries)
      assert.equal("delivered 3 times without being acknowledged", dead[1].error)
      assert.same({ { "a", "2" } }, dead[1].fields)
      assert.same({}, k:pending())
      assert.same({ "1", "3" }, k:sunk())
    end)

    it("gives a 4-parameter preprocess the delivery count and the fields in order, duplicates kept", function()
      local infos = {}
      local k = kit(function(_, _, data, info)
        infos[#infos + 1] = info
        return data.f
      end)
      k:feed("s1", "1-0", { "f", "a", "g", "b", "f", "c" })
      k:feed("s1", "2-0", { "x", "y" }, { deliveries = 2 })
      assert.same({ deliveries = 1, fields = { { "f", "a" }, { "g", "b" }, { "f", "c" } } }, infos[1])
      assert.same({ deliveries = 2, fields = { { "x", "y" } } }, infos[2])
      assert.same({ "c" }, { k:sunk()[1] })
    end)

    it("takes a count with a generated id, and refuses one that is not a positive integer", function()
      local got
      local k = kit(function(_, _, data, info) got = info.deliveries return data.a end)
      k:feed("s1", { a = "1" }, { deliveries = 2 })
      assert.equal(2, got)
      assert.has_error(function() k:feed("s1", "9-0", { a = "1" }, { deliveries = 0 }) end,
        "k:feed: deliveries must be a positive integer, got 0")
    end)

    it("gives a 3-parameter preprocess no fourth argument", function()
      local n
      local k = kit(function(...) n = select("#", ...) return 1 end)
      assert.is_true(k.pipeline.wants_info) -- vararg: it may want it
      k = kit(function(a, b, c) n = select("#", a, b, c) return 1 end)
      assert.is_false(k.pipeline.wants_info)
      k:feed("s1", "1-0", { a = "1" })
      assert.equal(3, n)
    end)

    it("dead-letters a list item preprocess raises on, the item as field item", function()
      local k = testing.load({ source = { lists = "l", reliable = true, dead_letter = "dlq" },
        preprocess = function(_, item)
          if item == "bad" then error("no good") end
          return item
        end, sink = function() end })
      k:feed_many { { "l", "a" }, { "l", "bad" }, { "l", "b" } }
      assert.same({ "a", "b" }, k:sunk())
      local dead = k:dead_letters()
      assert.equal(1, #dead)
      assert.equal("l", dead[1].stream)
      assert.equal("bad", dead[1].id)
      assert.same({ { "item", "bad" } }, dead[1].fields)
      assert.matches("no good$", dead[1].error)
      assert.same({}, k:pending())
    end)

    it("dead-letters a message whose bytes are not UTF-8, with the host's words", function()
      local k = kit(function(_, _, data) return data.a end)
      k:feed("s1", "1-0", { a = "ok" })
      k:feed("s1", "2-0", { a = "bad \255 byte" })
      assert.same({ "ok" }, k:sunk())
      local dead = k:dead_letters()
      assert.equal(1, #dead)
      assert.equal("2-0", dead[1].id)
      assert.matches("^the value of field 'a' is ", dead[1].error)
      assert.same({ { "a", "bad \255 byte" } }, dead[1].fields)
      assert.truthy(k:logged("message s1 2%-0 dead%-lettered to 'dlq': the value of field 'a' is "))
      assert.same({}, k:pending())

      local l = testing.load({ source = { lists = "l", reliable = true, dead_letter = "dlq" },
        preprocess = function(_, item) return item end, sink = function() end })
      l:feed_many { { "l", "x" }, { "l", "y \255" } }
      assert.same({ "x" }, l:sunk())
      dead = l:dead_letters()
      assert.equal(1, #dead)
      assert.equal("y \255", dead[1].id)
      assert.matches("^the item is ", dead[1].error)
      assert.truthy(l:logged("item of list 'l' dead%-lettered to 'dlq': it is "))
      assert.same({}, l:pending())
    end)
  end)
end)
