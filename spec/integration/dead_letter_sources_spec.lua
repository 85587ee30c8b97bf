-- Dead letters from every kind of source, with the real binary and a real
-- redis-server: plain streams with a checkpoint (a dead-lettered message has
-- left the pipeline: the checkpoint moves past it, a restart does not read it
-- again), reliable lists (it leaves the processing list in the same script),
-- messages whose bytes are not UTF-8 (dead-lettered, not left pending for
-- ever), and a kill -9 while dead letters are being written: every message
-- in exactly one place, pending in its stream or dead-lettered, never both.
local H = require "support.host"

local dead_letters = H.dead_letters

-- The dead letters' rsghost:id (or item, for lists) in stream order.
local function dead_ids(r, key, field)
  local ids = {}
  for _, f in ipairs(dead_letters(r, key)) do ids[#ids + 1] = f[field or "rsghost:id"] end
  table.sort(ids, H.id_less)
  return ids
end

describe("dead letters", function()
  after_each(function() H.cleanup() end)

  it("from plain streams: the checkpoint moves past them and a restart reads nothing again", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = { [P .. ":s"] = "0" }, checkpoint = P .. ":cp", timeout = 0.2,
             dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data)
    if data.n == "50" then error("no good: " .. data.n) end
    return id
  end,
  batch = { size = 20, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]], nil, "plain.lua")
    local ids = H.xadd_many(t.redis, P .. ":s", 200, function(i)
      if i == 120 then return { "n", i, "raw", "bad \255 byte" } end
      return { "n", i }
    end)
    local want = {}
    for i, id in ipairs(ids) do
      if i ~= 50 and i ~= 120 then want[#want + 1] = id end
    end
    local h = H.start(t, { script = path, consumer = "c1" })
    local out
    H.eventually(function()
      out = H.list(t.redis, P .. ":out")
      return #out >= #want and t.redis:call("HGET", P .. ":cp", P .. ":s") == ids[200]
    end, 60, function() return h:describe() end)
    H.assert_exactly_once(want, out)
    local dead = dead_letters(t.redis, P .. ":dlq")
    assert.equal(2, #dead, h:describe())
    assert.same({ ids[50], ids[120] }, dead_ids(t.redis, P .. ":dlq"))
    for _, f in ipairs(dead) do
      assert.equal(P .. ":s", f["rsghost:stream"])
      assert.equal("", f["rsghost:group"])
      assert.equal("c1", f["rsghost:consumer"])
      if f["rsghost:id"] == ids[50] then
        assert.matches("plain%.lua:%d+: no good: 50$", f["rsghost:error"])
        assert.equal("50", f.n)
      else
        assert.matches("^the value of field 'raw' is ", f["rsghost:error"])
        assert.equal("bad \255 byte", f.raw)
      end
    end
    assert.equal(1, #h:log_lines("message " .. (P .. ":s"):gsub("%p", "%%%0") .. " "
      .. ids[120]:gsub("%-", "%%-") .. " dead%-lettered to '"), h:describe())
    assert.equal(0, h:stop(), h:describe())

    -- A restart resumes after the checkpoint: nothing is sunk or
    -- dead-lettered twice; a new message still flows.
    h = H.start(t, { script = path, consumer = "c1" })
    local last = t.redis:call("XADD", P .. ":s", "*", "n", "201")
    H.eventually(function() return #H.list(t.redis, P .. ":out") >= #want + 1 end, 60,
      function() return h:describe() end)
    want[#want + 1] = last
    H.assert_exactly_once(want, H.list(t.redis, P .. ":out"))
    assert.equal(2, t.redis:call("XLEN", P .. ":dlq"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("from a reliable list: out of the processing list in the same script; redrive pushes them back",
    function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { lists = P .. ":l", reliable = true, timeout = 0.2, dead_letter = P .. ":dlq" },
  preprocess = function(list, item)
    if item:find("^fail") then error("refusing " .. item) end
    return item
  end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]], nil, "lists.lua")
    local l = P .. ":l"
    local proc = "rsghost:processing:c1:" .. l
    local h = H.start(t, { script = path, consumer = "c1" })
    t.redis:call("RPUSH", l, "a", "fail-1", "b", "bad \255 byte", "c")
    H.eventually(function()
      return #H.list(t.redis, P .. ":out") == 3 and t.redis:call("XLEN", P .. ":dlq") == 2
        and t.redis:call("LLEN", proc) == 0
    end, 60, function() return h:describe() end)
    H.assert_exactly_once({ "a", "b", "c" }, H.list(t.redis, P .. ":out"))
    local dead = dead_letters(t.redis, P .. ":dlq")
    table.sort(dead, function(x, y) return x.item < y.item end)
    assert.equal("bad \255 byte", dead[1].item)
    assert.matches("^the item is ", dead[1]["rsghost:error"])
    assert.equal("fail-1", dead[2].item)
    assert.matches("lists%.lua:%d+: refusing fail%-1$", dead[2]["rsghost:error"])
    for _, f in ipairs(dead) do
      assert.equal(l, f["rsghost:list"])
      assert.equal("", f["rsghost:id"])
      assert.is_nil(f["rsghost:stream"])
    end
    assert.equal(0, h:stop(), h:describe())

    -- Listed as list dead letters, and pushed back to the tail of the list.
    local code, stdout, stderr = H.run({ "dead-letters", "--redis", t.url, "--json", path })
    assert.equal(0, code, stderr)
    local n = 0
    for line in stdout:gmatch("[^\n]+") do
      n = n + 1
      assert.matches('"list":"' .. l:gsub("%p", "%%%0") .. '"', line)
    end
    assert.equal(2, n, stdout)
    code, stdout, stderr = H.run({ "redrive", "--redis", t.url, path })
    assert.equal(0, code, stderr)
    assert.matches(" %-> " .. l:gsub("%p", "%%%0") .. " pushed\n", stdout)
    assert.same({ dead[1]["@entry"] < dead[2]["@entry"] and "bad \255 byte" or "fail-1",
      dead[1]["@entry"] < dead[2]["@entry"] and "fail-1" or "bad \255 byte" }, H.list(t.redis, l))
    assert.equal(0, t.redis:call("XLEN", P .. ":dlq"))
  end)

  it("from a consumer group: bytes that are not UTF-8 are dead-lettered, not left pending", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local ids = H.xadd_many(t.redis, P .. ":s", 30, function(i)
      if i == 7 then return { "n", i, "\255name", "v" } end
      return { "n", i }
    end)
    local h = H.start(t, { script = path, consumer = "c1" })
    local want = {}
    for i, id in ipairs(ids) do if i ~= 7 then want[#want + 1] = id end end
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 29, streams = P .. ":s", group = P .. ":g",
      hosts = { h } })
    H.assert_exactly_once(want, out)
    H.eventually(function() return t.redis:call("XLEN", P .. ":dlq") == 1 end, 30,
      function() return h:describe() end)
    local f = dead_letters(t.redis, P .. ":dlq")[1]
    assert.equal(ids[7], f["rsghost:id"])
    assert.matches("^field name #2 is ", f["rsghost:error"])
    assert.equal("v", f["\255name"])
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("keeps every message in exactly one place when the host is killed while dead-lettering", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) error("poison " .. data.n) end,
  sink = function(items) end,
}
]])
    local n = 20000
    local ids = H.xadd_many(t.redis, P .. ":s", n)
    local h = H.start(t, { script = path, consumer = "c1", log_level = "info" })
    local at_kill
    H.eventually(function()
      at_kill = t.redis:call("XLEN", P .. ":dlq")
      return at_kill > 0
    end, 60, function() return h:describe() end)
    h:kill()
    h:wait()
    -- At the kill: no message both pending and dead-lettered, none twice.
    local dead = dead_ids(t.redis, P .. ":dlq")
    local pending = H.pending_ids(t.redis, P .. ":s", P .. ":g")
    local seen = {}
    for _, id in ipairs(dead) do
      assert.is_nil(seen[id], "dead-lettered twice: " .. id)
      seen[id] = true
      assert.is_nil(pending[id], "pending and dead-lettered: " .. id)
    end
    assert.is_true(#dead < n, "the kill came after the last dead letter: nothing was tested")
    -- A restart replays what was pending: in the end each is dead-lettered once.
    h = H.start(t, { script = path, consumer = "c1", log_level = "info" })
    H.eventually(function() return t.redis:call("XLEN", P .. ":dlq") >= n end, 120,
      function() return h:describe() end)
    assert.same(ids, dead_ids(t.redis, P .. ":dlq"))
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
