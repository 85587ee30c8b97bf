-- `rsghost dead-letters` and `rsghost redrive` with the real binary and a
-- real redis-server: a consumer dead-letters the messages preprocess raises
-- on; the listing shows them; once the data is "fixed" (a flag the script
-- refreshes every 0.1 s) redrive moves them back, byte for byte, and the
-- running consumer processes them.
local cjson = require "cjson"
local H = require "support.host"

local SCRIPT = [[
local rsghost = require "rsghost"
local P = "{{P}}"
local fixed = false
local function refresh() fixed = rsghost.redis.call("GET", P .. ":fixed") == "1" end
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, convert = false,
             dead_letter = P .. ":dlq" },
  init = function() refresh(); rsghost.every(0.1, refresh) end,
  preprocess = function(stream, id, data)
    if data.bad == "1" and not fixed then error("bad data in " .. data.n) end
    return data.n
  end,
  batch = { size = 100, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

-- The dead-letter stream's entry ids.
local function dlq_ids(r, key)
  local ids = {}
  for _, e in ipairs(r:call("XRANGE", key, "-", "+")) do ids[#ids + 1] = e[1] end
  return ids
end

-- Runs a subcommand against t's server: code, stdout, stderr.
local function cmd(t, args)
  local argv = { args[1], "--redis", t.url }
  for i = 2, #args do argv[#argv + 1] = args[i] end
  return H.run(argv)
end

-- "ENTRY -> STREAM NEW-ID" lines of redrive's output, as { entry, stream, id }.
local function moved(out)
  local m = {}
  for entry, stream, id in out:gmatch("(%S+) %-> (%S+) (%S+)\n") do
    m[#m + 1] = { entry = entry, stream = stream, id = id }
  end
  return m
end

describe("rsghost dead-letters and redrive", function()
  after_each(function() H.cleanup() end)

  -- A consumer running SCRIPT with 3 bad messages of 20 dead-lettered.
  local function setup()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, SCRIPT, nil, "redrive.lua")
    local h = H.start(t, { script = path, consumer = "c1" })
    local bad = {}
    H.xadd_many(t.redis, P .. ":s", 20, function(i)
      if i % 7 == 0 or i == 20 then
        bad[#bad + 1] = i
        -- repeated names and bytes that are not UTF-8 must come back as they were
        return { "n", i, "bad", "1", "dup", "a", "dup", "b", "raw", "\255\0x" }
      end
      return { "n", i }
    end)
    assert.equal(3, #bad)
    H.wait_sunk(t.redis, { out = P .. ":out", n = 17, streams = P .. ":s", group = P .. ":g",
      hosts = { h } })
    H.eventually(function() return #dlq_ids(t.redis, P .. ":dlq") == 3 end, 30,
      function() return h:describe() end)
    return t, P, path, h
  end

  it("lists dead letters as a table and as JSON lines, then redrives them all", function()
    local t, P, path, h = setup()
    local originals = t.redis:call("XRANGE", P .. ":dlq", "-", "+")

    local code, out, err = cmd(t, { "dead-letters", path })
    assert.equal(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(4, #lines, out)
    assert.matches("^ENTRY%s+STREAM%s+ID%s+DELIVERIES%s+ERROR$", lines[1])
    assert.matches("^" .. originals[1][1]:gsub("%-", "%%-") .. "%s+" .. (P .. ":s"):gsub("%p", "%%%0")
      .. "%s+%d+%-%d+%s+1%s+.*redrive%.lua:%d+: bad data in 7$", lines[2])

    code, out, err = cmd(t, { "dead-letters", "--json", path })
    assert.equal(0, code, err)
    local objs = {}
    for l in out:gmatch("[^\n]+") do objs[#objs + 1] = cjson.decode(l) end
    assert.equal(3, #objs)
    for i, o in ipairs(objs) do
      assert.equal(originals[i][1], o.entry)
      assert.equal(P .. ":s", o.stream)
      assert.equal(originals[i][2][4], o.id)
      assert.equal(P .. ":g", o.group)
      assert.equal("c1", o.consumer)
      assert.equal(1, o.deliveries)
      assert.equal("number", type(o.failed_at))
      assert.matches("redrive%.lua:%d+: bad data in %d+$", o.error)
    end

    -- Fixed: the consumer's refresh sees the flag; redrive moves all three back.
    t.redis:call("SET", P .. ":fixed", "1")
    H.sleep(0.3)
    code, out, err = cmd(t, { "redrive", path })
    assert.equal(0, code, err)
    local m = moved(out)
    assert.equal(3, #m, out)
    assert.matches("moved 3 dead letter%(s%)", err)
    for i, mv in ipairs(m) do
      assert.equal(originals[i][1], mv.entry)
      assert.equal(P .. ":s", mv.stream)
      -- exactly the original fields, in order, duplicates and raw bytes kept
      local e = t.redis:call("XRANGE", P .. ":s", mv.id, mv.id)[1]
      local want = {}
      for k = 15, #originals[i][2] do want[#want + 1] = originals[i][2][k] end
      assert.same(want, e[2])
    end
    assert.equal(0, t.redis:call("XLEN", P .. ":dlq"))
    local out_list = H.wait_sunk(t.redis, { out = P .. ":out", n = 20, streams = P .. ":s",
      group = P .. ":g", hosts = { h } })
    table.sort(out_list, function(a, b) return tonumber(a) < tonumber(b) end)
    local want = {}
    for i = 1, 20 do want[i] = tostring(i) end
    assert.same(want, out_list)
    code, out, err = cmd(t, { "dead-letters", path })
    assert.equal(0, code, err)
    assert.matches("no dead letters in", err)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("moves the oldest with --count 1, and a named entry", function()
    local t, P, path, h = setup()
    local ids = dlq_ids(t.redis, P .. ":dlq")
    t.redis:call("SET", P .. ":fixed", "1")
    H.sleep(0.3)
    local code, out, err = cmd(t, { "redrive", "--count", "1", path })
    assert.equal(0, code, err)
    local m = moved(out)
    assert.equal(1, #m, out)
    assert.equal(ids[1], m[1].entry)
    assert.same({ ids[2], ids[3] }, dlq_ids(t.redis, P .. ":dlq"))

    code, out, err = cmd(t, { "redrive", path, ids[3] })
    assert.equal(0, code, err)
    m = moved(out)
    assert.equal(1, #m, out)
    assert.equal(ids[3], m[1].entry)
    assert.same({ ids[2] }, dlq_ids(t.redis, P .. ":dlq"))
    H.wait_sunk(t.redis, { out = P .. ":out", n = 19, streams = P .. ":s", group = P .. ":g",
      hosts = { h } })

    -- One that is not there: said, exit 1, nothing else touched.
    code, out, err = cmd(t, { "redrive", path, ids[3] })
    assert.equal(1, code, out)
    assert.matches("no such entry: dead letter " .. ids[3]:gsub("%-", "%%-") .. " not found", err)
    assert.same({ ids[2] }, dlq_ids(t.redis, P .. ":dlq"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("exits 2 with a clear message when the script has no source.dead_letter", function()
    local t = H.context()
    local path = H.script(t, [[
return {
  source = { streams = "s", group = "g" },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]], nil, "plain.lua")
    for _, sub in ipairs({ "redrive", "dead-letters" }) do
      local code, out, err = cmd(t, { sub, path })
      assert.equal(2, code, out)
      assert.matches("plain%.lua has no source%.dead_letter", err)
    end
  end)

  it("exits 1 naming the server when Redis cannot be reached", function()
    local t = H.context()
    local path = H.script(t, SCRIPT)
    local code, out, err = H.run({ "dead-letters", "--redis", "redis://:s3cret@127.0.0.1:1/0", path })
    assert.equal(1, code, out)
    assert.matches("cannot connect to redis://:%*%*%*@127%.0%.0%.1:1/0", err)
    code, out, err = H.run({ "redrive", "--redis", "redis+sentinel://127.0.0.1:1/mymaster", path })
    assert.equal(1, code, out)
    assert.matches("no sentinel of .* told where master 'mymaster' is: cannot connect to sentinel "
      .. "127%.0%.0%.1:1", err)
  end)

  it("refuses options of the wrong command with exit 2", function()
    local t = H.context()
    local path = H.script(t, SCRIPT)
    local code, _, err = H.run({ "--json", path, "c1" })
    assert.equal(2, code)
    assert.matches("%-%-json is for", err)
    code, _, err = cmd(t, { "redrive", "--count", "0", path })
    assert.equal(2, code)
    assert.matches("%-%-count needs a whole number above 0", err)
    code, _, err = cmd(t, { "dead-letters", path, "extra" })
    assert.equal(2, code)
    assert.matches("unexpected argument 'extra'", err)
    code, _, err = cmd(t, { "redrive", "--count", "1", path, "1-1" })
    assert.equal(2, code)
    assert.matches("either %-%-count or ENTRY%-IDs", err)
  end)
end)
