-- rediss+cluster://: a Redis Cluster whose nodes listen on TLS ports only
-- (three masters, three replicas; the cluster bus and replication over TLS
-- too), made by the spec with `redis-cli --tls --cluster create` and a
-- throwaway CA, and the tutorial's pipeline reading streams on every master
-- over it: every message once, nothing pending; `rsghost status` over the
-- same URL. A build without TLS (hiredis 0.14) must refuse the URL clearly
-- instead, as it refuses rediss://.
local cjson = require "cjson"
local H = require "support.host"
local proc = require "support.proc"
local hiredis = require "rsghost.hiredis"
local redis_cluster = require "support.redis_cluster"

local TLS = H.binary_tls()

-- The tutorial's pipeline, with heartbeats (their connections are TLS ones too).
local lua_list = redis_cluster.lua_list
local function script(t, streams)
  return H.script(t, redis_cluster.TUTORIAL, { STREAMS = lua_list(streams), EXTRA = ", heartbeat_interval = 0.2" })
end

describe("rediss+cluster:// (a Redis Cluster over TLS)", function()
  after_each(function() H.cleanup() end)

  if not TLS then
    it("is refused at start (exit 2) by a build without hiredis_ssl, saying what to do", function()
      local t = H.context()
      local started = proc.now()
      local code, out, err = H.run { "--redis", "rediss+cluster://127.0.0.1:1,127.0.0.1:2",
        script(t, { t.prefix .. ":s" }), "c1" }
      assert.equal(2, code, out .. err)
      assert.matches("hiredis 1%.x", err)
      assert.matches("stunnel", err)
      assert.is_true(proc.now() - started < 10, "took " .. (proc.now() - started) .. " s")
    end)
    return
  end

  local pki, c, r
  setup(function()
    assert.is_true(hiredis.TLS, "rsghost has TLS but rsghost.hiredis found no hiredis_ssl")
    pki = require("support.pki").make(H.tmpdir())
    c = redis_cluster.start { tls = { cert = pki.server_crt, key = pki.server_key, ca = pki.ca_crt,
      client_cert = pki.client_crt, client_key = pki.client_key } }
    r = c.client()
  end)
  teardown(function() if c then c.stop() end end)

  it("runs the tutorial pipeline over streams on every master, and rsghost status", function()
    local t = H.context { tag = "tls" }
    t.url, t.redis = c.url, r
    assert.matches("^rediss%+cluster://", c.url)
    local streams = redis_cluster.spread(c, t.prefix, 6)
    local path = script(t, streams)
    local out, group = t.prefix .. ":out", t.prefix .. ":g"
    local want = {}
    for _, s in ipairs(streams) do
      for _, id in ipairs(H.xadd_many(r, s, 50, function(i) return { "n", i } end)) do
        want[#want + 1] = s .. " " .. id
      end
    end
    local tls = { "--tls-ca-cert", pki.ca_crt }
    local h = H.start(t, { script = path, consumer = "c1", redis = c.url, args = tls })
    H.wait_sunk(r, { out = out, n = #want, streams = streams, group = group, hosts = { h } })
    local got = {}
    for _, item in ipairs(H.list(r, out)) do
      local d = cjson.decode(item)
      got[#got + 1] = d._source .. " " .. d._id
    end
    H.assert_exactly_once(want, got)
    assert.matches("cluster of 3 masters", h:log())
    assert.matches("6 stream%(s%) in 6 slot group%(s%)", h:log())
    -- rsghost status over the same URL (the blocking router, over TLS): each
    -- stream's length from its own master, the consumer alive.
    H.eventually(function() return r:call("HEXISTS", "rsghost:consumers:" .. group, "c1") == 1 end, 30,
      function() return h:describe() end)
    local args = { "status", "--json", "--redis", c.url }
    for _, a in ipairs(tls) do args[#args + 1] = a end
    args[#args + 1] = path
    local code, sout, serr = H.run(args)
    assert.equal(0, code, serr)
    local st = cjson.decode(sout)
    assert.equal(6, #st.streams)
    for i, row in ipairs(st.streams) do
      assert.equal(streams[i], row.stream)
      assert.equal(50, row.length)
      assert.equal(0, row.pending)
    end
    assert.equal(0, h:stop(), h:describe())
  end)
end)
