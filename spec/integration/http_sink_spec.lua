-- rsghost.http and rsghost.sink.http with the real binary, a real
-- redis-server and the test HTTP server (support.http): a request the server
-- holds does not block the loop, a 500 is retried, and a 400 for one item
-- is bisected down to that item, which goes to the dead letters.
local H = require "support.host"
local http = require "support.http"

local function dead_letters(r, key)
  local out = {}
  for _, e in ipairs(r:call("XRANGE", key, "-", "+")) do
    local f = {}
    for i = #e[2] - 1, 1, -2 do f[e[2][i]] = e[2][i + 1] end
    out[#out + 1] = f
  end
  return out
end

describe("rsghost.sink.http", function()
  local srv
  before_each(function() srv = http.start() end)
  after_each(function()
    H.cleanup()
    srv.stop()
  end)

  it("does not block the loop while the server holds its answer: the Redis sink, reads and heartbeats go on",
    function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", heartbeat_interval = 0.2, claim_timeout = 5 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = {
    rsghost.sink.http("{{URL}}/hold/go"),
    rsghost.sink.redis_list(P .. ":out"),
  },
}
]], { URL = srv.url }, "slow.lua")
    local first = H.xadd_many(t.redis, P .. ":s", 10)
    local h = H.start(t, { script = path, consumer = "c1" })
    -- The server has the first batch and holds its answer.
    H.eventually(function() return #srv.received() == 1 end, 30, function() return h:describe() end)
    -- The Redis sink ran beside the held request: its half of the batch is written.
    H.eventually(function() return #H.list(t.redis, P .. ":out") == 10 end, 30, function() return h:describe() end)
    -- Reads go on: messages added now are delivered to c1 (pending, held
    -- in the queue behind the batch the HTTP sink waits on).
    H.xadd_many(t.redis, P .. ":s", 40)
    H.eventually(function() return H.xpending(t.redis, P .. ":s", P .. ":g").count == 50 end, 30,
      function() return h:describe() end)
    -- Heartbeats keep coming: the liveness key is refreshed (its TTL goes up).
    local key = "rsghost:alive:" .. P .. ":g:c1"
    local last = t.redis:call("PTTL", key)
    H.eventually(function()
      local now = t.redis:call("PTTL", key)
      local refreshed = now > last
      last = now
      return refreshed
    end, 30, "the liveness key to be refreshed while the request is held")
    -- Still the one request outstanding, nothing acked yet.
    assert.equal(0, #srv.requests())
    assert.equal(50, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    srv.release("go")
    local out = H.wait_sunk(t.redis, { out = P .. ":out", n = 50, streams = P .. ":s", group = P .. ":g",
      hosts = { h }, timeout = 60 })
    assert.equal(50, #out)
    -- Every message reached the HTTP server once, as JSON arrays of the items.
    local got = {}
    for _, r in ipairs(srv.requests()) do
      assert.equal(200, r.status)
      assert.equal("POST", r.method)
      for id in r.body:gmatch('"([%d]+%-[%d]+)"') do got[#got + 1] = id end
    end
    local want = {}
    for _, id in ipairs(first) do want[#want + 1] = id end
    for _, id in ipairs(H.list(t.redis, P .. ":out")) do
      local seen = false
      for _, w in ipairs(first) do if w == id then seen = true end end
      if not seen then want[#want + 1] = id end
    end
    H.assert_exactly_once(want, got)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("retries a batch the server answers 500 until it is accepted", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) return { id = id, n = data.n } end,
  batch = { size = 20, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2, max_attempts = 5 },
  sink = {
    rsghost.sink.http("{{URL}}/status/500/2"),
    function(items)
      local ids = {}
      for i, item in ipairs(items) do ids[i] = item.id end
      rsghost.redis.call("RPUSH", P .. ":out", unpack(ids))
    end,
  },
}
]], { URL = srv.url }, "retry.lua")
    local ids = H.xadd_many(t.redis, P .. ":s", 20)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.wait_sunk(t.redis, { out = P .. ":out", n = 20, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    local reqs
    H.eventually(function()
      reqs = srv.requests()
      return #reqs == 3
    end, 30, function() return h:describe() end)
    assert.same({ 500, 500, 200 }, { reqs[1].status, reqs[2].status, reqs[3].status })
    -- The same batch each time, under the same Idempotency-Key (from meta).
    assert.equal(reqs[1].body, reqs[3].body)
    assert.equal(P .. ":s/" .. ids[1] .. "/" .. ids[20] .. "/20", reqs[1].key)
    assert.equal(reqs[1].key, reqs[3].key)
    local got = {}
    for id in reqs[3].body:gmatch('"id":"([%d]+%-[%d]+)"') do got[#got + 1] = id end
    H.assert_exactly_once(ids, got)
    assert.equal(0, #dead_letters(t.redis, P .. ":dlq"))
    assert.is_true(#h:log_lines("HTTP 500: scripted failure") >= 2, h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)

  it("bisects a batch the server answers 400 down to the item it rejects, which is dead-lettered", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) return { id = id, word = data.word } end,
  batch = { size = 50, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2, max_attempts = 2 },
  sink = rsghost.sink.http("{{URL}}/reject/poison"),
}
]], { URL = srv.url }, "reject.lua")
    local ids = H.xadd_many(t.redis, P .. ":s", 50, function(i)
      return { "n", i, "word", i == 23 and "poison" or "fine" }
    end)
    local h = H.start(t, { script = path, consumer = "c1" })
    local dead
    H.eventually(function()
      dead = dead_letters(t.redis, P .. ":dlq")
      return #dead == 1 and H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
    end, 60, function() return h:describe() end)
    assert.equal(ids[23], dead[1]["rsghost:id"])
    assert.matches("reject%.lua:%d+: rsghost%.sink%.http%(.*%): HTTP 400: rejected: contains poison",
      dead[1]["rsghost:error"])
    -- Every other message was accepted exactly once.
    local accepted = {}
    for _, r in ipairs(srv.requests()) do
      if r.status == 200 then
        for id in r.body:gmatch('"id":"([%d]+%-[%d]+)"') do accepted[#accepted + 1] = id end
      end
    end
    local want = {}
    for i, id in ipairs(ids) do if i ~= 23 then want[#want + 1] = id end end
    H.assert_exactly_once(want, accepted)
    assert.equal(0, h:stop(), h:describe())
  end)
  it("is what the test kit sends for real with http = \"real\"", function()
    local testing = require "rsghost.testing"
    local rsghost = require "rsghost"
    local got
    local k = testing.load({
      source = { streams = "s", group = "g" },
      preprocess = function(stream, id, data) return data.n end,
      batch = { size = 2, timeout = 1 },
      sink = {
        rsghost.sink.http(srv.url .. "/status/500/1"),
        function() got = { rsghost.http.request("GET", srv.url .. "/ok") } end,
      },
    }, { http = "real" })
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } } }
    assert.same({}, k:acked()) -- the first answer was 500
    assert.truthy(k:logged("HTTP 500: scripted failure"))
    k:advance(1)
    assert.same({ s = { "1-1", "1-2" } }, k:acked())
    assert.equal(200, got[1])
    assert.equal("fine", got[2])
    assert.equal("yes", got[3]["x-test"])
    -- The server logs a request just after answering it.
    local reqs
    H.eventually(function()
      reqs = srv.requests()
      return #reqs >= 3
    end, 30)
    assert.equal(3, #reqs) -- sink 1 twice; sink 2 (a GET) once: only a failed sink is retried
    assert.equal('["1","2"]', reqs[1].body)
  end)

  it("stops after the answer a stop found outstanding; a second signal leaves the batch pending", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 5, timeout = 0.05 },
  sink = rsghost.sink.http("{{URL}}/hold/{{GATE}}"),
}
]], { URL = srv.url, GATE = "first" }, "stop.lua")
    H.xadd_many(t.redis, P .. ":s", 5)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function() return #srv.received() == 1 end, 30, function() return h:describe() end)
    h:signal("TERM")
    H.eventually(function() return #h:log_lines("stop") > 0 end, 30, function() return h:describe() end)
    assert.is_true(h:alive(), h:describe())
    srv.release("first")
    assert.equal(0, h:wait(), h:describe())
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)

    -- Again, with a second signal while the answer is held.
    local path2 = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 5, timeout = 0.05 },
  sink = rsghost.sink.http("{{URL}}/hold/{{GATE}}"),
}
]], { URL = srv.url, GATE = "second" }, "stop.lua")
    H.xadd_many(t.redis, P .. ":s", 5)
    local h2 = H.start(t, { script = path2, consumer = "c1" })
    H.eventually(function() return #srv.received() == 2 end, 30, function() return h2:describe() end)
    h2:signal("TERM")
    H.eventually(function() return #h2:log_lines("stop") > 0 end, 30, function() return h2:describe() end)
    h2:signal("TERM")
    -- It exits at once, the request abandoned: nothing acked.
    local code = h2:wait()
    assert.is_not_nil(code, h2:describe())
    assert.is_nil(h2:log():find("Sanitizer", 1, true), h2:describe())
    assert.is_nil(h2:log():find("runtime error", 1, true), h2:describe())
    assert.equal(5, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    srv.release("second")
  end)

  it("verifies https:// servers against the system's CA store: a self-signed one is refused", function()
    local proc = require "support.proc"
    local server = require "support.server"
    local t = H.context()
    local P = t.prefix
    local code, out, err = proc.run { argv = { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
      "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
      "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", t.dir .. "/k.pem", "-out", t.dir .. "/c.pem" },
      timeout = 60 }
    assert(code == 0, "openssl req failed: " .. out .. err)
    local port = server.free_port()
    local tls = proc.spawn { argv = { "openssl", "s_server", "-quiet", "-www", "-accept", tostring(port),
      "-cert", t.dir .. "/c.pem", "-key", t.dir .. "/k.pem" }, stdout = t.dir .. "/s.out", stderr = t.dir .. "/s.err" }
    finally(function() if tls:alive() then tls:kill() end end)
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 1, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2 },
  sink = function(items)
    local ok, err = pcall(rsghost.http.request, "GET", "https://127.0.0.1:{{PORT}}/")
    rsghost.redis.call("RPUSH", P .. ":out", tostring(err))
    if not ok and err:find("cannot connect to the http server", 1, true) then error(err) end -- not up yet
  end,
}
]], { PORT = port }, "tls.lua")
    H.xadd_many(t.redis, P .. ":s", 1)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function() return H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
      and #H.list(t.redis, P .. ":out") > 0 end, 30, function() return h:describe() end)
    local got = H.list(t.redis, P .. ":out")
    assert.matches("^http request failed: SSL certificate problem: self.signed certificate", got[#got])
    assert.equal(0, h:stop(), h:describe())
  end)
end)
