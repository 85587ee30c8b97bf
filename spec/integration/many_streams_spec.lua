-- Many streams, little room: a consumer of more streams than its
-- source.max_in_flight leaves room for reads them all (a window of streams
-- per read, in turn: host/rules.h), wakes for a message on any of them when
-- idle, and replays its own pending messages on every one after a crash.
local H = require "support.host"

local NSTREAMS = 300

local function stream_names(P)
  local names = {}
  for i = 1, NSTREAMS do names[i] = P .. ":s:" .. i end
  return names
end

-- per stream: the number of messages to add; returns the expected items.
local function fill(t, names, per)
  local want = {}
  local cmds = {}
  for _, s in ipairs(names) do
    for k = 1, per do cmds[#cmds + 1] = { "XADD", s, "*", "n", tostring(k) } end
  end
  for first = 1, #cmds, 500 do
    local part = {}
    for i = first, math.min(#cmds, first + 499) do part[#part + 1] = cmds[i] end
    local ids = t.redis:pipeline(part)
    for j, id in ipairs(ids) do
      assert(type(id) == "string", "XADD failed")
      want[#want + 1] = part[j][2] .. " " .. id
    end
  end
  return want
end

local function script(t, source)
  return H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local streams = {}
for i = 1, {{N}} do streams[i] = P .. ":s:" .. i end
return {
  source = {{SOURCE}},
  preprocess = function(stream, id) return stream .. " " .. id end,
  batch = { size = 50, timeout = 0 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]], { N = tostring(NSTREAMS), SOURCE = source })
end

local function wait_out(t, n, hosts)
  H.eventually(function() return t.redis:call("LLEN", t.prefix .. ":out") >= n end, 60,
    function() return hosts[1]:describe() end)
  return H.list(t.redis, t.prefix .. ":out")
end

local function pending_total(t, names)
  local n = 0
  for _, s in ipairs(names) do n = n + H.xpending(t.redis, s, t.prefix .. ":g").count end
  return n
end

describe("many streams", function()
  after_each(function() H.cleanup() end)

  it("reads 300 streams of a group with max_in_flight 100: every message once, nothing pending", function()
    local t = H.context()
    local names = stream_names(t.prefix)
    local want = fill(t, names, 4)
    local h = H.start(t, { script = script(t, '{ streams = streams, group = P .. ":g", max_in_flight = 100 }') })
    local got = wait_out(t, #want, { h })
    H.assert_exactly_once(want, got)
    H.eventually(function() return pending_total(t, names) == 0 end, 30, function() return h:describe() end)
    -- Idle now, waiting on all of them: a message on the last stream, then
    -- on the first, each wakes it.
    local last = t.redis:call("XADD", names[NSTREAMS], "*", "n", "late")
    wait_out(t, #want + 1, { h })
    local first = t.redis:call("XADD", names[1], "*", "n", "later")
    got = wait_out(t, #want + 2, { h })
    want[#want + 1] = names[NSTREAMS] .. " " .. last
    want[#want + 1] = names[1] .. " " .. first
    H.assert_exactly_once(want, got)
    assert.equal(0, h:stop(), h:describe())
    assert.equal(0, pending_total(t, names))
  end)

  it("replays its own pending messages on every one of 300 streams after kill -9", function()
    local t = H.context()
    local P = t.prefix
    local names = stream_names(P)
    local want = fill(t, names, 3)
    -- A crashed consumer-1's leftovers: everything delivered to it, nothing acked.
    for _, s in ipairs(names) do t.redis:call("XGROUP", "CREATE", s, P .. ":g", "0") end
    for _, s in ipairs(names) do
      t.redis:call("XREADGROUP", "GROUP", P .. ":g", "consumer-1", "STREAMS", s, ">")
    end
    assert.equal(#want, pending_total(t, names))
    local h = H.start(t, { script = script(t, '{ streams = streams, group = P .. ":g", max_in_flight = 100 }') })
    local got = wait_out(t, #want, { h })
    H.assert_exactly_once(want, got)
    H.eventually(function() return pending_total(t, names) == 0 end, 30, function() return h:describe() end)
    assert.is_true(#h:log_lines("replayed %d+ pending message") > 0, h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("reads 300 plain streams with max_in_flight 100 and checkpoints the last id of each", function()
    local t = H.context()
    local names = stream_names(t.prefix)
    local want = fill(t, names, 4)
    local h = H.start(t, {
      script = script(t, '{ streams = (function() local m = {} for _, s in ipairs(streams) do m[s] = "0" end '
        .. 'return m end)(), checkpoint = P .. ":cp", max_in_flight = 100 }'),
    })
    local got = wait_out(t, #want, { h })
    H.assert_exactly_once(want, got)
    local last = {}
    for _, item in ipairs(want) do
      local s, id = item:match("^(%S+) (%S+)$")
      last[s] = id
    end
    H.eventually(function()
      for _, s in ipairs(names) do
        if t.redis:call("HGET", t.prefix .. ":cp", s) ~= last[s] then return false end
      end
      return true
    end, 30, function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)
end)
