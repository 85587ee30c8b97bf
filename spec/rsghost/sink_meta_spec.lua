-- sink(items, meta): every sink learns which message each item came from
-- (meta.ids[i], meta.streams[i] for items[i]), through the test kit, which
-- runs the host's pipeline code.
local testing = require "rsghost.testing"

describe("sink meta", function()
  it("gives each item's stream and id, in item order, and the group", function()
    local got = {}
    local k = testing.load({
      source = { streams = { "a", "b" }, group = "g" },
      preprocess = function(stream, id, data) return stream .. "/" .. id .. "/" .. data.v end,
      batch = { size = 4, timeout = false },
      sink = function(items, meta)
        for i = 1, #items do got[#got + 1] = { items[i], meta.streams[i] .. "/" .. meta.ids[i] .. "/" } end
        assert.equal(#items, meta.n)
        assert.equal("g", meta.group)
      end,
    })
    k:feed_many({ { "a", "1-0", { v = "x" } }, { "b", "1-0", { v = "y" } }, { "a", "2-0", { v = "z" } },
      { "b", "2-0", { v = "w" } } })
    k:drain()
    assert.equal(4, #got)
    for _, pair in ipairs(got) do
      assert.equal(pair[2], pair[1]:sub(1, #pair[2]))
    end
  end)

  it("leaves out the messages preprocess dropped", function()
    local k = testing.load({
      source = { streams = "s", group = "g" },
      preprocess = function(_, _, data) if data.keep == "1" then return data.n end end,
      batch = { size = 10, timeout = 0 },
      sink = function() end,
    })
    k:feed_many({ { "s", "1-0", { n = "1", keep = "1" } }, { "s", "2-0", { n = "2", keep = "0" } },
      { "s", "3-0", { n = "3", keep = "1" } } })
    k:drain()
    assert.same({ { "1", "3" } }, k:sink_calls(1))
    assert.same({ { ids = { "1-0", "3-0" }, streams = { "s", "s" }, n = 2, group = "g" } }, k:sink_metas(1))
  end)

  it("gives Redis's times-delivered of replayed items, nothing for first deliveries", function()
    local k = testing.load({
      source = { streams = "s", group = "g", dead_letter = "dlq" },
      preprocess = function(_, _, data) return data.n end,
      batch = { size = 4, timeout = false },
      sink = function(items) if items[1] == "bad" then error("rejected") end end,
      retry = { initial = 0.1, max = 1, max_attempts = 1 },
    })
    k:feed_many({ { "s", "1-0", { n = "a" } }, { "s", "2-0", { n = "b" }, deliveries = 3 },
      { "s", "3-0", { n = "c" } }, { "s", "4-0", { n = "d" } } })
    k:feed_many({ { "s", "5-0", { n = "bad" } }, { "s", "6-0", { n = "e" }, deliveries = 2 },
      { "s", "7-0", { n = "f" } }, { "s", "8-0", { n = "g" } } })
    k:drain()
    local metas = k:sink_metas(1)
    assert.same({ [2] = 3 }, metas[1].deliveries)
    -- The second batch is bisected: each part carries its own items' counts.
    assert.same({ [2] = 2 }, metas[2].deliveries)
    for c = 3, #metas do
      local m = metas[c]
      for i = 1, m.n do
        local want = m.ids[i] == "6-0" and 2 or nil
        assert.equal(want, m.deliveries and m.deliveries[i])
      end
    end
    local all_first = testing.load({ source = { streams = "s", group = "g" },
      preprocess = function(_, _, data) return data.n end, sink = function() end })
    all_first:feed("s", "1-0", { n = "a" })
    assert.is_nil(all_first:sink_metas(1)[1].deliveries)
  end)

  it("for a lists source: the list and the item as popped; no group", function()
    local k = testing.load({
      source = { lists = { "l1", "l2" } },
      preprocess = function(list, item) return list .. ":" .. item end,
      batch = { size = 10, timeout = 0 },
      sink = function() end,
    })
    k:feed("l1", "hello")
    k:drain()
    assert.same({ { ids = { "hello" }, streams = { "l1" }, n = 1 } }, k:sink_metas(1))
  end)

  it("is split with the items when a batch is bisected", function()
    local k = testing.load({
      source = { streams = "s", group = "g", dead_letter = "dlq" },
      preprocess = function(_, id, data) return { n = data.n, id = id } end,
      batch = { size = 16, timeout = false },
      sink = function(items, meta)
        assert.equal(#items, meta.n)
        for i = 1, #items do
          assert.equal(items[i].id, meta.ids[i])
          assert.equal("s", meta.streams[i])
          if items[i].n == "11" then error("item 11 rejected") end
        end
      end,
      retry = { initial = 0.1, max = 1, max_attempts = 1 },
    })
    local entries = {}
    for i = 1, 16 do entries[i] = { "s", i .. "-0", { n = tostring(i) } } end
    k:feed_many(entries)
    k:drain()
    -- The sink's own asserts raise on a misaligned part: then more than item
    -- 11 would be dead-lettered, or the asserts' text would be the error.
    local dead = k:dead_letters()
    assert.equal(1, #dead)
    assert.equal("11-0", dead[1].id)
    assert.matches("item 11 rejected", dead[1].error, 1, true)
    local metas, calls = k:sink_metas(1), k:sink_calls(1)
    assert.is_true(#metas > 2)
    for c = 1, #calls do
      assert.equal(#calls[c], metas[c].n)
      for i = 1, #calls[c] do assert.equal(calls[c][i].id, metas[c].ids[i]) end
    end
  end)
end)
