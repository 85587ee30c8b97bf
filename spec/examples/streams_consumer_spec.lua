-- examples/streams-consumer.lua, plain streams with a checkpoint, end to end:
-- it uses fixed key names (source-stream-1/2, preprocessed-data and its
-- checkpoint hash), so it gets a private redis-server, emptied before each
-- test.
local server = require "support.server"
local H = require "support.host"
local S = require "support.sources"

local EXAMPLE = "examples/streams-consumer.lua"
local STREAMS = { "source-stream-1", "source-stream-2" }
local CHECKPOINT = "streams-consumer:checkpoint"

-- The lines in preprocessed-data as "stream id" labels, after checking each
-- line's fields.
local function labels(r)
  local out = {}
  for _, d in ipairs(S.preprocessed_data(r)) do
    assert.equal("é" .. d.n, d.word)
    out[#out + 1] = d._source .. " " .. d._id
  end
  return out
end

-- Adds n messages to each stream; returns their "stream id" labels.
local function add(r, n)
  local want = {}
  for _, s in ipairs(STREAMS) do
    for _, id in ipairs(H.xadd_many(r, s, n, function(i) return { "n", i, "word", "é" .. i } end)) do
      want[#want + 1] = s .. " " .. id
    end
  end
  return want
end

-- Waits until the output holds every label of want, then checks that it
-- holds exactly want, each once.
local function check_output(r, want, h)
  local got
  H.eventually(function()
    got = labels(r)
    return #H.compare(want, got).missing == 0
  end, 60, function() return string.format("%d of %d lines\n%s", #(got or {}), #want, h:describe()) end)
  S.assert_exactly_once(want, got)
end

-- Waits until the host blocks in XREAD: its start ("$") is resolved, so
-- what is added from now on is new to it. The server is private: the
-- host's reader is the only client that reads streams.
local function wait_reading(r, h)
  H.eventually(function() return r:call("CLIENT", "LIST"):find("cmd=xread", 1, true) end, 60,
    function() return h:describe() end)
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
    assert.matches("streams source", out)
  end)

  it("first reads only new messages, then resumes after its checkpoint, also across kill -9", function()
    local t = H.context { server = srv }
    local r = t.redis
    add(r, 3) -- history: before the very first start
    local h1 = H.start(t, { script = EXAMPLE, consumer = false })
    wait_reading(r, h1)
    local want = add(r, 10)
    check_output(r, want, h1)
    -- Stopped cleanly, its checkpoint is each stream's last message.
    assert.equal(0, h1:stop(), h1:describe())
    for _, s in ipairs(STREAMS) do
      assert.equal(r:call("XREVRANGE", s, "+", "-", "COUNT", 1)[1][1], r:call("HGET", CHECKPOINT, s))
    end

    -- Added while it was down: the restart reads them.
    for _, l in ipairs(add(r, 5)) do want[#want + 1] = l end
    local h2 = H.start(t, { script = EXAMPLE, consumer = false })
    check_output(r, want, h2)

    -- kill -9 once everything was pushed (and checkpointed), then more:
    -- the next run picks up exactly where the checkpoint says.
    H.eventually(function()
      for _, s in ipairs(STREAMS) do
        if r:call("HGET", CHECKPOINT, s) ~= r:call("XREVRANGE", s, "+", "-", "COUNT", 1)[1][1] then return false end
      end
      return true
    end, 60, function() return h2:describe() end)
    assert.equal("signal 9", h2:kill())
    for _, l in ipairs(add(r, 5)) do want[#want + 1] = l end
    local h3 = H.start(t, { script = EXAMPLE, consumer = false })
    check_output(r, want, h3)
    assert.equal(0, h3:stop(), h3:describe())
  end)
end)
