-- Encodings: with convert = true (the default) bytes that are not valid in
-- source.encoding leave the message pending with a logged reason naming its
-- id, never altered or dropped, while valid messages flow; convert = false
-- passes raw bytes; another encoding is converted to UTF-8.
local H = require "support.host"

describe("source encoding", function()
  after_each(function() H.cleanup() end)

  it("leaves messages with invalid utf-8 pending with a logged reason naming the id; valid ones flow", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, encoding = "utf-8" },
  preprocess = function(stream, id, data) return id .. " " .. data.text end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    local text = "ünïcödé ✓ 🎉"
    local ids = H.xadd_many(t.redis, P .. ":s", 30, function(i)
      if i == 5 then return { "text", "bad \255\254 value" } end
      if i == 15 then return { "text", "truncated \195" } end
      if i == 25 then return { "te\255xt", "bad field name", "text", "x" } end
      return { "text", text .. " " .. i }
    end)
    local bad = { ids[5], ids[15], ids[25] }
    local want = {}
    for i, id in ipairs(ids) do
      if i ~= 5 and i ~= 15 and i ~= 25 then want[#want + 1] = id .. " " .. text .. " " .. i end
    end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #want, streams = P .. ":s", group = P .. ":g",
      pending = #bad, hosts = { h } })
    local c = H.compare(want, out)
    assert.same({}, c.missing)
    assert.equal(0, c.duplicates)
    assert.same({}, c.unexpected, "an invalid message reached the sink (altered?)")
    local pending = H.pending_ids(t.redis, P .. ":s", P .. ":g")
    for _, id in ipairs(bad) do
      assert.equal("consumer-1", pending[id], id .. " is not pending")
      local logged = false
      for _, line in ipairs(h:log_lines()) do
        if line:find(id, 1, true) and line:lower():find("utf%-8") then logged = true end
      end
      assert.is_true(logged, "no log line names " .. id .. " and utf-8:\n" .. h:describe())
    end
    assert.is_true(h:alive(), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("keeps valid utf-8 intact, NUL bytes, empty and large values included", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return data.v end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    local values = { "nul\0inside", "", "\0", string.rep("é✓\0", 100000) }
    H.xadd_many(t.redis, P .. ":s", #values, function(i) return { "v", values[i] } end)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #values, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    assert.equal(#values, #out)
    for i, v in ipairs(values) do
      assert.equal(#v, #out[i], "value " .. i .. " changed length")
      assert.is_true(v == out[i], "value " .. i .. " changed")
    end
    assert.equal(0, h:stop(), h:describe())
  end)

  it("passes raw bytes through with convert = false", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, convert = false },
  preprocess = function(stream, id, data)
    local k, v = next(data)
    return k .. "=" .. v
  end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    local values = { "\255\254\0raw", "caf\233", "plain", "nul\0inside", "\195" }
    H.xadd_many(t.redis, P .. ":s", #values, function(i) return { "k\255" .. i, values[i] } end)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = #values, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local want = {}
    for i, v in ipairs(values) do want[i] = "k\255" .. i .. "=" .. v end
    assert.same(want, out)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("converts another encoding (ISO-8859-1) to UTF-8", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, encoding = "ISO-8859-1" },
  preprocess = function(stream, id, data)
    local k, v = next(data)
    return k .. "=" .. v
  end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path })
    -- "été" = "café" in Latin-1 bytes.
    t.redis:call("XADD", P .. ":s", "*", "\233t\233", "caf\233")
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 1, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    assert.same({ "été=café" }, out)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
