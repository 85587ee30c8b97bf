-- examples/lists-consumer.lua, the tutorial's lists example, end to end: it
-- uses fixed key names (data-source-1/2, preprocessed-data), so it gets a
-- private redis-server, emptied before each test.
local cjson = require "cjson"
local server = require "support.server"
local H = require "support.host"
local S = require "support.sources"

local EXAMPLE = "examples/lists-consumer.lua"
local LISTS = { "data-source-1", "data-source-2" }

-- Pushes n JSON items { n = i, word = "é<i>", tag = tag } onto list; returns
-- the "list n tag" keys the output lines must show.
local function push(r, list, tag, n)
  local cmd, want = { "RPUSH", list }, {}
  for i = 1, n do
    cmd[#cmd + 1] = cjson.encode { n = i, word = "é" .. i, tag = tag }
    want[#want + 1] = list .. " " .. i .. " " .. tag
  end
  r:call(unpack(cmd))
  return want
end

-- Waits for at least #want lines and checks them: each one the JSON item it
-- came from plus _source, each item once.
local function check_output(r, want, h)
  local got
  H.eventually(function()
    got = S.preprocessed_data(r)
    return #got >= #want
  end, 60, function() return string.format("%d of %d lines\n%s", #(got or {}), #want, h:describe()) end)
  local keys = {}
  for _, d in ipairs(got) do
    assert.equal("é" .. d.n, d.word)
    keys[#keys + 1] = d._source .. " " .. d.n .. " " .. d.tag
  end
  S.assert_exactly_once(want, keys)
end

describe(EXAMPLE, function()
  local srv

  setup(function() srv = server.start() end)
  teardown(function() srv.stop() end)
  before_each(function() srv.client():call("FLUSHALL") end)
  after_each(function() H.cleanup() end)

  it("loads (--check) without touching Redis", function()
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", "--check", EXAMPLE }
    assert.equal(0, code, out .. err)
    assert.matches("lists source", out)
  end)

  it("pushes every item of both lists to preprocessed-data as JSON with _source; drops what is not JSON", function()
    local t = H.context { server = srv }
    local r = t.redis
    local want = {}
    for _, l in ipairs(LISTS) do
      for _, k in ipairs(push(r, l, "before", 10)) do want[#want + 1] = k end
    end
    -- Plain lists: no consumer name needed.
    local h = H.start(t, { script = EXAMPLE, consumer = false })
    for _, l in ipairs(LISTS) do
      for _, k in ipairs(push(r, l, "after", 5)) do want[#want + 1] = k end
    end
    r:call("RPUSH", "data-source-2", "not json")
    check_output(r, want, h)
    H.eventually(function()
      for _, line in ipairs(h:log_lines("preprocess failed")) do
        if line:find("not json", 1, true) and line:find("lists%-consumer%.lua:%d+:") then return true end
      end
      return false
    end, 30, function() return h:describe() end)
    for _, l in ipairs(LISTS) do assert.equal(0, r:call("LLEN", l)) end
    assert.equal(0, h:stop(), h:describe())
  end)

  it("with reliable = true (as its comments describe) delivers everything and leaves no processing list behind", function()
    local t = H.context { server = srv }
    local r = t.redis
    local src = assert(io.open(EXAMPLE)):read("*a")
    local reliable, n = src:gsub("%-%- reliable = true,", "reliable = true,")
    assert.equal(1, n, "the example no longer shows `-- reliable = true,`")
    local path = H.write(H.tmpdir() .. "/lists-consumer.lua", reliable)
    local want = {}
    for _, l in ipairs(LISTS) do
      for _, k in ipairs(push(r, l, "reliable", 8)) do want[#want + 1] = k end
    end
    local h = H.start(t, { script = path, consumer = "lists-consumer-1" })
    check_output(r, want, h)
    local procs = {}
    for _, l in ipairs(LISTS) do procs[#procs + 1] = "rsghost:processing:lists-consumer-1:" .. l end
    H.eventually(function() return r:call("LLEN", procs[1]) == 0 and r:call("LLEN", procs[2]) == 0 end, 60,
      function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
    for _, l in ipairs(LISTS) do assert.equal(0, r:call("LLEN", l)) end
  end)
end)
