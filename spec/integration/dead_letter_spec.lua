-- Poison messages with the real binary and a real redis-server (part A:
-- consumer groups). A message preprocess raises on goes to the dead-letter
-- stream at once, with its error and its original fields, acked in the same
-- script; a message that kills its process is dead-lettered once Redis has
-- delivered it more than max_deliveries times; a dead-letter key of the
-- wrong type stops the host before it reads anything.
local H = require "support.host"

-- The dead-letter stream's entries as { id =, fields = { {name, value}, ... } }.
local function dead_letters(r, key)
  local out = {}
  for _, e in ipairs(r:call("XRANGE", key, "-", "+")) do
    local fields = {}
    for i = 1, #e[2], 2 do fields[#fields + 1] = { e[2][i], e[2][i + 1] } end
    out[#out + 1] = { id = e[1], fields = fields }
  end
  return out
end

-- The value of the first field named name, from a dead letter's fields.
local function field(fields, name)
  for _, f in ipairs(fields) do
    if f[1] == name then return f[2] end
  end
end

describe("poison messages in a consumer group", function()
  after_each(function() H.cleanup() end)

  it("dead-letters the one message in 1,000 preprocess raises on, with its error and fields", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, convert = false,
             dead_letter = { key = P .. ":dlq", maxlen = 10000 } },
  preprocess = function(stream, id, data)
    if data.n == "500" then error("no good: " .. data.n) end
    return id
  end,
  batch = { size = 100, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]], nil, "poison.lua")
    local h = H.start(t, { script = path, consumer = "c1" })
    local ids = H.xadd_many(t.redis, P .. ":s", 1000, function(i)
      -- A repeated field name and bytes that are not UTF-8 stay as they are.
      if i == 500 then return { "n", i, "dup", "a", "dup", "b", "raw", "\255\0x" } end
      return { "n", i }
    end)
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 999, streams = P .. ":s", group = P .. ":g",
      hosts = { h } })
    local want = {}
    for i, id in ipairs(ids) do if i ~= 500 then want[#want + 1] = id end end
    H.assert_exactly_once(want, out)
    local dead
    H.eventually(function()
      dead = dead_letters(t.redis, P .. ":dlq")
      return #dead == 1
    end, 30, function() return h:describe() end)
    local f = dead[1].fields
    assert.same({ "rsghost:stream", P .. ":s" }, f[1])
    assert.same({ "rsghost:id", ids[500] }, f[2])
    assert.same({ "rsghost:group", P .. ":g" }, f[3])
    assert.same({ "rsghost:consumer", "c1" }, f[4])
    assert.same({ "rsghost:deliveries", "1" }, f[5])
    assert.equal("rsghost:error", f[6][1])
    assert.matches("poison%.lua:%d+: no good: 500$", f[6][2])
    assert.equal("rsghost:failed_at", f[7][1])
    assert.is_true(math.abs(tonumber(f[7][2]) / 1000 - os.time()) < 120)
    assert.same({ { "n", "500" }, { "dup", "a" }, { "dup", "b" }, { "raw", "\255\0x" } },
      { f[8], f[9], f[10], f[11] })
    assert.equal(11, #f)
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.equal(1, #h:log_lines("preprocess failed on message " .. ids[500]:gsub("%-", "%%-")
      .. " from " .. (P .. ":s"):gsub("%p", "%%%0") .. ", dead%-lettered to"), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("dead-letters a message that kills its process once it was delivered max_deliveries times", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2,
             dead_letter = P .. ":dlq", max_deliveries = 3 },
  preprocess = function(stream, id, data)
    if data.poison then os.exit(1) end
    return data.n
  end,
  batch = { size = 50, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    H.xadd_many(t.redis, P .. ":s", 100, function(i) return { "n", i } end)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.wait_sunk(t.redis, { out = P .. ":out", n = 100, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local poison = t.redis:call("XADD", P .. ":s", "*", "poison", "1", "n", "p")
    -- Each start that preprocesses it dies; the restarts replay it.
    local crashed = 0
    for start = 1, 3 do
      assert.equal(1, h:wait(60), h:describe())
      crashed = crashed + 1
      if start == 1 then
        -- Arriving while the consumer is down: read once the poison is gone.
        H.xadd_many(t.redis, P .. ":s", 100, function(i) return { "n", 100 + i } end)
      end
      h = H.start(t, { script = path, consumer = "c1" })
    end
    assert.equal(3, crashed)
    -- The fourth start finds it delivered 4 times (3 to preprocess, and this
    -- replay): dead-lettered without preprocessing; the rest flows.
    H.wait_sunk(t.redis, { out = P .. ":out", n = 200, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local dead = dead_letters(t.redis, P .. ":dlq")
    assert.equal(1, #dead)
    local f = dead[1].fields
    assert.equal(poison, field(f, "rsghost:id"))
    assert.equal("4", field(f, "rsghost:deliveries"))
    assert.equal("delivered 3 times without being acknowledged", field(f, "rsghost:error"))
    assert.equal("1", field(f, "poison"))
    assert.equal(200, t.redis:call("LLEN", P .. ":out"))
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.is_true(h:alive(), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("gives preprocess Redis's delivery counts of claimed messages, and the fields in order", function()
    local t = H.context()
    local P = t.prefix
    -- A consumer that read two messages and died: "twice" delivered 1 time,
    -- "thrice" 3 times (two re-reads of its pending entries).
    t.redis:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "0", "MKSTREAM")
    local twice = t.redis:call("XADD", P .. ":s", "*", "f", "1", "g", "2", "f", "3")
    local thrice = t.redis:call("XADD", P .. ":s", "*", "n", "x")
    t.redis:call("XREADGROUP", "GROUP", P .. ":g", "ghost", "STREAMS", P .. ":s", ">")
    for _ = 1, 2 do
      t.redis:call("XREADGROUP", "GROUP", P .. ":g", "ghost", "STREAMS", P .. ":s", twice)
    end
    -- (re-reading after twice's id returns, and counts, only thrice)
    local path = H.script(t, [[
local rsghost = require "rsghost"
local cjson = require "cjson"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, heartbeat_interval = 0.2,
             claim_timeout = 1, dead_letter = P .. ":dlq", max_deliveries = 3 },
  preprocess = function(stream, id, data, info)
    return cjson.encode({ id = id, info = info })
  end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path, consumer = "c1" })
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 1, streams = P .. ":s", group = P .. ":g",
      hosts = { h } })
    local cjson = require "cjson"
    local got = cjson.decode(out[1])
    assert.equal(twice, got.id)
    -- claimed: delivered once to ghost, once now
    assert.same({ deliveries = 2, fields = { { "f", "1" }, { "g", "2" }, { "f", "3" } } }, got.info)
    local dead = dead_letters(t.redis, P .. ":dlq")
    assert.equal(1, #dead, h:describe())
    assert.equal(thrice, field(dead[1].fields, "rsghost:id"))
    assert.equal("4", field(dead[1].fields, "rsghost:deliveries"))
    assert.equal("c1", field(dead[1].fields, "rsghost:consumer"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("says where dead letters go in --check's line", function()
    local t = H.context()
    local path = H.script(t, [[
return {
  source = { streams = "s", group = "g", dead_letter = { key = "dlq", maxlen = 5 }, max_deliveries = 3 },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]], nil, "check.lua")
    local code, out, err = H.run({ "--check", path, "c1" })
    assert.equal(0, code, err)
    assert.matches("check%.lua: ok %(group source, group g, 1 stream%(s%), max_in_flight 4096, "
      .. "dead letters to 'dlq' after 3 deliveries%)", out)
  end)

  it("exits 1 naming a dead-letter key of the wrong type, having read nothing", function()
    local t = H.context()
    local P = t.prefix
    t.redis:call("SET", P .. ":dlq", "a string")
    H.xadd_many(t.redis, P .. ":s", 5)
    local path = H.script(t, [[
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) error("must not run") end,
  sink = function(items) end,
}
]])
    local h = H.start(t, { script = path, consumer = "c1" })
    assert.equal(1, h:wait(60), h:describe())
    local lines = h:log_lines("source%.dead_letter: key '" .. (P .. ":dlq"):gsub("%p", "%%%0")
      .. "' holds a string, not a stream %(WRONGTYPE%); nothing was read")
    assert.equal(1, #lines, h:describe())
    assert.equal(0, #h:log_lines("must not run"), h:describe())
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
  end)
end)
