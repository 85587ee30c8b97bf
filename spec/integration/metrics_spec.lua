-- --metrics HOST:PORT: what an operator's scraper and probes see.
--   /metrics  counters equal to what happened (messages added, dropped by
--             preprocess, failed in it), in an exposition promtool accepts
--   /livez    200 while the host runs
--   /readyz   503 while Redis is away, 200 once the host reads again
-- and a port already in use stops the start, before anything is read.
-- The endpoint listens on port 0; the host logs the port it got.
local server = require "support.server"
local H = require "support.host"

-- Preprocess drops every 7th message (returns nil) and raises on every 5th
-- one that is not dropped; the rest are sunk to P:out in batches of 10.
local SRC = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  batch = { size = 10, timeout = 0.05 },
  preprocess = function(stream, id, data)
    local n = tonumber(data.n)
    if n % 7 == 0 then return nil end
    if n % 5 == 0 then error("no fives") end
    return data.n
  end,
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

-- Runs a shell command; returns its stdout.
local function sh(cmd)
  local f = assert(io.popen(cmd, "r"))
  local out = f:read("*a")
  f:close()
  return out
end

-- GET path from the host's endpoint: status (a number; 0 when nothing
-- answered) and body.
local function get(port, path)
  local out = sh(string.format("curl -s --max-time 10 -w '\\n%%{http_code}' http://127.0.0.1:%d%s",
    port, path))
  local body, code = out:match("^(.*)\n(%d+)$")
  return tonumber(code) or 0, body or out
end

-- The port the host logged ("metrics on http://127.0.0.1:PORT/metrics").
local function port_of(h)
  local port
  H.eventually(function()
    port = tonumber(h:log():match("metrics on http://127%.0%.0%.1:(%d+)/metrics"))
    return port
  end, nil, function() return h:describe() end)
  return port
end

-- The sample `name` (with its labels written exactly as in the text, e.g.
-- 'rsghost_batches_flushed_total{reason="size"}') as a number, or nil.
local function sample(text, name)
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, #name + 1) == name .. " " then return tonumber(line:sub(#name + 2)) end
  end
  return nil
end

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == 0
end

describe("rsghost --metrics", function()
  after_each(function() H.cleanup() end)

  it("counts what happened, in an exposition promtool accepts", function()
    assert(have("curl"), "curl is missing: run scripts/deps")
    assert(have("promtool"), "promtool is missing: run scripts/deps (Debian package prometheus)")
    local t = H.context()
    local h = H.start(t, { script = H.script(t, SRC), args = { "--metrics", "127.0.0.1:0" } })
    local port = port_of(h)
    local n = 200
    H.xadd_many(t.redis, t.prefix .. ":s", n)
    local dropped, failed = 0, 0
    for i = 1, n do
      if i % 7 == 0 then dropped = dropped + 1 elseif i % 5 == 0 then failed = failed + 1 end
    end
    local sunk = n - dropped - failed
    H.eventually(function() return #H.list(t.redis, t.prefix .. ":out") == sunk end, nil,
      function() return h:describe() end)

    -- Acks are confirmed a moment after the sink returned: wait for them.
    local text
    H.eventually(function()
      local code
      code, text = get(port, "/metrics")
      return code == 200 and sample(text, "rsghost_messages_acked_total") == n - failed
    end, nil, function() return text end)
    assert.equal(n, sample(text, "rsghost_messages_read_total"))
    assert.equal(dropped, sample(text, "rsghost_messages_dropped_total"))
    assert.equal(failed, sample(text, "rsghost_messages_failed_total"))
    assert.equal(0, sample(text, "rsghost_messages_dead_lettered_total"))
    assert.equal(0, sample(text, "rsghost_messages_in_flight"))
    -- Every batch went to the one sink once (no failures), and each was
    -- closed for a reason; every sunk message was acked after a read.
    local calls = sample(text, 'rsghost_sink_calls_total{sink="1"}')
    local flushed = 0
    for _, reason in ipairs { "size", "timeout", "end_of_read", "stop" } do
      flushed = flushed + sample(text, 'rsghost_batches_flushed_total{reason="' .. reason .. '"}')
    end
    assert.is_true(calls >= math.ceil(sunk / 10), text)
    assert.equal(calls, flushed)
    assert.equal(0, sample(text, 'rsghost_sink_errors_total{sink="1"}'))
    assert.equal(calls, sample(text, 'rsghost_sink_duration_seconds_count{sink="1"}'))
    assert.equal(sunk, sample(text, "rsghost_read_to_ack_seconds_count"))
    assert.truthy(sample(text, "process_resident_memory_bytes") > 0)
    assert.truthy(sample(text, "process_open_fds") > 0)

    -- The group's pending count comes from XINFO GROUPS every few seconds:
    -- the failed messages stay pending.
    H.eventually(function()
      local _
      _, text = get(port, "/metrics")
      return sample(text, 'rsghost_group_pending{stream="' .. t.prefix .. ':s"}') == failed
    end, nil, function() return text end)

    local file = t.dir .. "/metrics.txt"
    local f = assert(io.open(file, "wb"))
    f:write(text)
    f:close()
    local out = sh("promtool check metrics < " .. file .. " 2>&1; echo \"rc=$?\"")
    assert.equal("rc=0", out:match("rc=%d+"), out)

    assert.equal(200, (get(port, "/livez")))
    assert.equal(404, (get(port, "/nothing")))
    assert.equal(0, h:stop())
  end)

  it("counts dead letters, and shows the age of the consumer's own heartbeat", function()
    assert(have("curl"), "curl is missing: run scripts/deps")
    local t = H.context()
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", dead_letter = P .. ":dead",
             heartbeat_interval = 0.2 },
  batch = { size = 10, timeout = 0.05 },
  preprocess = function(stream, id, data)
    if tonumber(data.n) % 5 == 0 then error("no fives") end
    return data.n
  end,
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path, args = { "--metrics", "127.0.0.1:0" } })
    local port = port_of(h)
    H.xadd_many(t.redis, t.prefix .. ":s", 20)
    local text
    H.eventually(function()
      local _
      _, text = get(port, "/metrics")
      -- A dead letter is acked by its own script: counted there, not here.
      return sample(text, "rsghost_messages_acked_total") == 16
        and sample(text, "rsghost_heartbeat_age_seconds") ~= nil
    end, nil, function() return (text or "") .. h:describe() end)
    assert.equal(4, sample(text, "rsghost_messages_dead_lettered_total"))
    assert.equal(4, sample(text, "rsghost_messages_failed_total"))
    assert.equal(4, t.redis:call("XLEN", t.prefix .. ":dead"))
    assert.is_true(sample(text, "rsghost_heartbeat_age_seconds") >= 0)
    assert.equal(0, h:stop())
  end)

  it("counts the messages it claims from a dead consumer", function()
    assert(have("curl"), "curl is missing: run scripts/deps")
    local t = H.context()
    local P, r = t.prefix, t.redis
    -- A consumer that read 12 messages and vanished: no liveness key, never
    -- heard, so dead once it has been seen for claim_timeout.
    r:call("XGROUP", "CREATE", P .. ":s", P .. ":g", "0", "MKSTREAM")
    H.xadd_many(r, P .. ":s", 12)
    r:call("XREADGROUP", "GROUP", P .. ":g", "gone", "COUNT", 12, "STREAMS", P .. ":s", ">")
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", heartbeat_interval = 0.1, claim_timeout = 0.5 },
  batch = { size = 10, timeout = 0.05 },
  preprocess = function(stream, id, data) return data.n end,
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local h = H.start(t, { script = path, args = { "--metrics", "127.0.0.1:0" } })
    local port = port_of(h)
    H.eventually(function() return #H.list(r, P .. ":out") == 12 end, nil,
      function() return h:describe() end)
    local text
    H.eventually(function()
      local _
      _, text = get(port, "/metrics")
      return sample(text, "rsghost_messages_acked_total") == 12
    end, nil, function() return text end)
    assert.equal(12, sample(text, "rsghost_messages_claimed_total"))
    assert.equal(12, sample(text, "rsghost_messages_read_total"))
    assert.equal(0, h:stop())
  end)

  it("says not ready while Redis is away, and ready once it is back", function()
    assert(have("curl"), "curl is missing: run scripts/deps")
    local srv = server.start()
    local t = H.context { server = srv }
    local h = H.start(t, { script = H.script(t, SRC), args = { "--metrics", "127.0.0.1:0" } })
    local port = port_of(h)
    H.eventually(function() return get(port, "/readyz") == 200 end, nil,
      function() return h:describe() end)

    srv.kill()
    local body
    H.eventually(function()
      local code
      code, body = get(port, "/readyz")
      return code == 503
    end, nil, function() return h:describe() end)
    assert.matches("not connected to redis", body)
    -- The loop still turns while Redis is away.
    assert.equal(200, (get(port, "/livez")))

    srv.restart()
    H.eventually(function() return get(port, "/readyz") == 200 end, nil,
      function() return h:describe() end)
    -- It reads again: a message added now is sunk.
    H.xadd_many(t.redis, t.prefix .. ":s", 1)
    H.eventually(function() return #H.list(t.redis, t.prefix .. ":out") == 1 end, nil,
      function() return h:describe() end)
    local _, text = get(port, "/metrics")
    assert.is_true(sample(text, "rsghost_redis_reconnects_total") >= 2, text)
    assert.equal(0, h:stop())
    srv.stop()
  end)

  it("says not ready while stopping", function()
    assert(have("curl"), "curl is missing: run scripts/deps")
    -- The stop's flush waits in the sink until the spec sets P:go (WAIT with
    -- no replica blocks for its timeout: a gentle poll).
    local t = H.context()
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  batch = { size = 100, timeout = 600 },
  preprocess = function(stream, id, data) return data.n end,
  sink = function(items)
    while not rsghost.redis.call("GET", P .. ":go") do rsghost.redis.call("WAIT", 1, 50) end
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]])
    local h = H.start(t, { script = path, args = { "--metrics", "127.0.0.1:0" } })
    local port = port_of(h)
    H.xadd_many(t.redis, t.prefix .. ":s", 3)
    H.eventually(function()
      local _, text = get(port, "/metrics")
      return sample(text, "rsghost_messages_in_flight") == 3
    end, nil, function() return h:describe() end)
    assert.equal(200, (get(port, "/readyz")))
    h:signal("TERM")
    local code, body
    H.eventually(function()
      code, body = get(port, "/readyz")
      return code == 503
    end, nil, function() return h:describe() end)
    assert.equal("stopping\n", body)
    t.redis:call("SET", t.prefix .. ":go", "1")
    assert.equal(0, h:wait())
    assert.equal(3, #H.list(t.redis, t.prefix .. ":out"))
  end)

  it("gives each --workers worker its own port, PORT+1 for the second", function()
    assert(have("curl"), "curl is missing: run scripts/deps")
    local t = H.context()
    local port = server.free_ports(2)
    local h = H.start(t, { script = H.script(t, SRC), consumer = "w",
      args = { "--workers", "2", "--metrics", "127.0.0.1:" .. port } })
    for i, p in ipairs { port, port + 1 } do
      H.eventually(function() return get(p, "/readyz") == 200 end, 60,
        function() return "worker " .. i .. ", port " .. p .. "\n" .. h:describe() end)
    end
    H.xadd_many(t.redis, t.prefix .. ":s", 40)
    -- 40 less 5 sevens and 7 other fives.
    H.eventually(function() return #H.list(t.redis, t.prefix .. ":out") == 28 end, nil,
      function() return h:describe() end)
    -- Between them the two workers read every message once.
    local read
    H.eventually(function()
      local _, a = get(port, "/metrics")
      local _, b = get(port + 1, "/metrics")
      read = (sample(a, "rsghost_messages_read_total") or 0) + (sample(b, "rsghost_messages_read_total") or 0)
      return read == 40
    end, nil, function() return tostring(read) end)
    assert.equal(0, h:stop())
  end)

  it("refuses a port in use before reading anything", function()
    local t = H.context()
    H.xadd_many(t.redis, t.prefix .. ":s", 3)
    -- redis-server itself listens on t.srv.port.
    local h = H.start(t, { script = H.script(t, SRC),
      args = { "--metrics", "127.0.0.1:" .. t.srv.port } })
    assert.equal(1, h:wait())
    assert.matches("%-%-metrics 127%.0%.0%.1:" .. t.srv.port .. ": cannot bind: Address already in use",
      h:log())
    -- Nothing was read: no group was even made.
    assert.is_nil(H.group_info(t.redis, t.prefix .. ":s", t.prefix .. ":g"))
  end)
end)
