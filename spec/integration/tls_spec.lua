-- rediss://: the host, its heart and the spec's own client over TLS, against
-- a redis-server that listens on a TLS port only, with a throwaway CA made
-- by the openssl command. What a user notices: the pipeline runs as over
-- plain TCP; a server certificate we cannot verify, or a server that wants a
-- client certificate we lack, stops the host at once (exit 1) with a line
-- that says so; mistakes in the options stop it before it touches Redis
-- (exit 2). Whether this build has TLS is asked of the binary (--version);
-- a build without it (hiredis 0.14) must refuse rediss:// clearly instead.
local server = require "support.server"
local H = require "support.host"
local proc = require "support.proc"
local cluster = require "support.cluster"
local hiredis = require "rsghost.hiredis"

local PASSWORD = "tls-Secr3t-pw"

local TLS = H.binary_tls()

local make_pki = require("support.pki").make

local SCRIPT = [[
local rsghost = require "rsghost"
return {
  source = { streams = { "{{P}}:s" }, group = "{{P}}:g", heartbeat_interval = 0.2 },
  preprocess = function(stream, id, data) return data.n end,
  batch = { size = 50, timeout = 0.05 },
  sink = rsghost.sink.redis_list("{{P}}:out"),
}
]]

-- Runs the host against srv with args until it exits by itself; returns
-- its exit code and log (the host is killed after `timeout`).
local function run_until_exit(t, args, timeout)
  local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1", args = args })
  local code = h:wait(timeout or 20)
  if code == nil then h:kill() end
  return code, h:log(), h
end

describe("rediss:// (TLS)", function()
  after_each(function() H.cleanup() end)

  describe("options that cannot take effect", function()
    it("refuses --tls-* with a redis:// URL, before touching redis (exit 2)", function()
      local t = H.context()
      local path = H.script(t, SCRIPT)
      local code, out, err = H.run { "--redis", "redis://:" .. PASSWORD .. "@127.0.0.1:1/0",
        "--tls-ca-cert", "/nonexistent/ca.crt", path, "c1" }
      assert.equal(2, code, out .. err)
      assert.matches("%-%-tls%-ca%-cert %(or RSGHOST_TLS_CA_CERT%) applies only to TLS", err)
      assert.is_nil(err:find(PASSWORD, 1, true), err)
    end)

    it("refuses RSGHOST_TLS_SERVER_NAME with a redis:// URL too (exit 2)", function()
      local t = H.context()
      local code, out, err = H.run({ "--redis", "redis://127.0.0.1:1/0", H.script(t, SCRIPT), "c1" },
        { env = { RSGHOST_TLS_SERVER_NAME = "redis.example.com" } })
      assert.equal(2, code, out .. err)
      assert.matches("tls%-server%-name", err)
    end)
  end)

  if not TLS then
    describe("in a build without hiredis_ssl", function()
      it("refuses a rediss:// URL at start (exit 2), saying to use hiredis 1.x or stunnel", function()
        local t = H.context()
        local started = proc.now()
        local code, out, err = H.run { "--redis", "rediss://:" .. PASSWORD .. "@127.0.0.1:1/0",
          H.script(t, SCRIPT), "c1" }
        assert.equal(2, code, out .. err)
        assert.matches("hiredis 1%.x", err)
        assert.matches("stunnel", err)
        assert.is_nil(err:find(PASSWORD, 1, true), err)
        assert.is_true(proc.now() - started < 10, "took " .. (proc.now() - started) .. " s")
      end)

      it("has an FFI client that refuses rediss:// with a clear error", function()
        assert.is_false(hiredis.TLS)
        assert.has_error(function() hiredis.connect("rediss://127.0.0.1:1/0") end,
          "rsghost.hiredis: rediss:// needs hiredis_ssl, which the loaded libhiredis (hiredis "
          .. (hiredis.MAJOR >= 1 and "1.x without libhiredis_ssl" or "0.14") .. ") lacks: install "
          .. "hiredis 1.x with TLS (Debian 13's libhiredis-dev), or use redis:// through a TLS "
          .. "tunnel (stunnel)")
      end)
    end)
    return
  end

  local pki, open_srv, mutual_srv
  setup(function()
    assert.is_true(hiredis.TLS, "rsghost has TLS but rsghost.hiredis found no hiredis_ssl")
    pki = make_pki(H.tmpdir())
    open_srv = server.start { password = PASSWORD,
      tls = { cert = pki.server_crt, key = pki.server_key, ca = pki.ca_crt, auth_clients = "no" } }
    mutual_srv = server.start { tls = { cert = pki.server_crt, key = pki.server_key, ca = pki.ca_crt,
      auth_clients = "yes",
      client = { ca_cert = pki.ca_crt, cert = pki.client_crt, key = pki.client_key } } }
  end)
  teardown(function()
    if open_srv then open_srv.stop() end
    if mutual_srv then mutual_srv.stop() end
  end)

  it("runs a pipeline end to end, heart included, on a TLS-only server", function()
    local t = H.context { server = open_srv }
    local P = t.prefix
    assert.matches("^rediss://", t.url)
    local ids = H.xadd_many(t.redis, P .. ":s", 300, function(i) return { "n", "m" .. i } end)
    assert.equal(300, #ids)
    local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1",
      args = { "--tls-ca-cert", pki.ca_crt } })
    local got = H.wait_sunk(t.redis, { out = P .. ":out", n = 300, streams = P .. ":s", group = P .. ":g",
      hosts = { h } })
    local want = {}
    for i = 1, 300 do want[i] = "m" .. i end
    H.assert_exactly_once(want, got, "sunk over TLS")
    -- The heart's own connections (only TLS reaches this server) keep the
    -- liveness key and registered the consumer.
    H.eventually(function()
      return t.redis:call("PTTL", cluster.alive_key(P .. ":g", "c1")) > 0
    end, 10, function() return h:describe() end)
    assert.equal(1, t.redis:call("HEXISTS", cluster.registry_key(P .. ":g"), "c1"))
    assert.equal(0, h:stop(), h:describe())
    assert.is_nil(h:log():find(PASSWORD, 1, true), "the password is in the log")
    assert.equal(0, H.xpending(t.redis, P .. ":s", P .. ":g").count)
  end)

  it("takes its TLS settings from the environment as well", function()
    local t = H.context { server = open_srv }
    local P = t.prefix
    H.xadd_many(t.redis, P .. ":s", 20)
    local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1",
      env = { RSGHOST_TLS_CA_CERT = pki.ca_crt, RSGHOST_TLS_SERVER_NAME = "localhost" } })
    H.wait_sunk(t.redis, { out = P .. ":out", n = 20, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    assert.equal(0, h:stop(), h:describe())
  end)

  it("lists and redrives dead letters over TLS, with a password and with a client certificate", function()
    for _, srv in ipairs { open_srv, mutual_srv } do
      local t = H.context { server = srv }
      local P = t.prefix
      local path = H.script(t, [[
return {
  source = { streams = "{{P}}:s", group = "{{P}}:g", dead_letter = "{{P}}:dlq" },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]])
      -- A dead letter as the host writes it: the rsghost: header, then the fields.
      local entry = t.redis:call("XADD", P .. ":dlq", "*", "rsghost:stream", P .. ":s",
        "rsghost:id", "1-1", "rsghost:group", P .. ":g", "rsghost:consumer", "c1",
        "rsghost:deliveries", "2", "rsghost:error", "boom", "rsghost:failed_at", "1700000000000",
        "n", "7", "n", "8")
      local args = { "--redis", t.url, "--tls-ca-cert", pki.ca_crt }
      if srv == mutual_srv then
        for _, a in ipairs { "--tls-cert", pki.client_crt, "--tls-key", pki.client_key } do
          args[#args + 1] = a
        end
      end
      local function run(sub, extra)
        local argv = { sub }
        for _, a in ipairs(args) do argv[#argv + 1] = a end
        for _, a in ipairs(extra) do argv[#argv + 1] = a end
        argv[#argv + 1] = path
        return H.run(argv)
      end
      local code, out, err = run("dead-letters", { "--json" })
      assert.equal(0, code, out .. err)
      assert.matches('"entry":"' .. entry:gsub("%-", "%%-") .. '"', out)
      assert.matches('"error":"boom"', out)
      code, out, err = run("redrive", {})
      assert.equal(0, code, out .. err)
      local new = out:match(" %-> %S+ (%S+)\n")
      assert.truthy(new, out)
      assert.same({ { new, { "n", "7", "n", "8" } } }, t.redis:call("XRANGE", P .. ":s", "-", "+"))
      assert.equal(0, t.redis:call("XLEN", P .. ":dlq"))
      assert.is_nil((out .. err):find(PASSWORD, 1, true), "the password was printed")
      -- A certificate it cannot verify: exit 1, saying so.
      args[4] = pki.other_ca_crt
      code, out, err = run("dead-letters", {})
      assert.equal(1, code, out .. err)
      assert.matches("TLS certificate verification of the server rediss://", err)
      assert.equal(1, select(2, err:gsub("\n", "")), err)
      assert.matches("%-%-tls%-ca%-cert", err)
    end
  end)

  it("stops at once (exit 1) on a server certificate another CA signed, naming verification and the server", function()
    local t = H.context { server = open_srv }
    local code, log = run_until_exit(t, { "--tls-ca-cert", pki.other_ca_crt })
    assert.equal(1, code, log)
    local port = tostring(open_srv.port)
    assert.matches("TLS certificate verification of the server rediss://:%*%*%*@127%.0%.0%.1:" .. port, log)
    assert.matches("%-%-tls%-ca%-cert", log)
    assert.is_nil(log:find("retrying", 1, true), "it retried a certificate that cannot heal:\n" .. log)
    assert.is_nil(log:find(PASSWORD, 1, true), "the password is in the log")
  end)

  it("stops at once (exit 1) when the certificate does not name --tls-server-name", function()
    local t = H.context { server = open_srv }
    local code, log = run_until_exit(t, { "--tls-ca-cert", pki.ca_crt, "--tls-server-name", "redis.example.com" })
    assert.equal(1, code, log)
    assert.matches("TLS certificate verification of the server .*hostname mismatch", log)
  end)

  it("says a server wants a client certificate, and exits 1, when none was given", function()
    local t = H.context { server = mutual_srv }
    local code, log = run_until_exit(t, { "--tls-ca-cert", pki.ca_crt })
    assert.equal(1, code, log)
    assert.matches("rediss://127%.0%.0%.1:" .. mutual_srv.port .. "/0 refused the TLS connection", log)
    assert.matches("requires a client certificate; give %-%-tls%-cert and %-%-tls%-key", log)
  end)

  it("runs with --tls-cert and --tls-key on a server that requires a client certificate", function()
    local t = H.context { server = mutual_srv }
    local P = t.prefix
    H.xadd_many(t.redis, P .. ":s", 50)
    local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1",
      args = { "--tls-ca-cert", pki.ca_crt, "--tls-cert", pki.client_crt, "--tls-key", pki.client_key } })
    H.wait_sunk(t.redis, { out = P .. ":out", n = 50, streams = P .. ":s", group = P .. ":g", hosts = { h } })
    assert.equal(0, h:stop(), h:describe())
  end)

  describe("files", function()
    local function start_error(args)
      local t = H.context { server = open_srv }
      local argv = { "--redis", "rediss://127.0.0.1:1/0" }
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      argv[#argv + 1] = H.script(t, SCRIPT)
      argv[#argv + 1] = "c1"
      local code, out, err = H.run(argv)
      assert.equal(2, code, out .. err)
      return err
    end

    it("names a missing --tls-ca-cert file at start (exit 2)", function()
      local err = start_error { "--tls-ca-cert", "/nonexistent/ca.crt" }
      assert.matches("cannot read the %-%-tls%-ca%-cert file '/nonexistent/ca%.crt': No such file", err)
    end)

    it("names a --tls-key that is not the key of --tls-cert (exit 2)", function()
      local err = start_error { "--tls-cert", pki.client_crt, "--tls-key", pki.server_key }
      assert.matches("%-%-tls%-key file '" .. pki.server_key:gsub("%p", "%%%0") .. "'", err)
    end)

    it("wants --tls-key with --tls-cert (exit 2)", function()
      local err = start_error { "--tls-cert", pki.client_crt }
      assert.matches("%-%-tls%-cert given without %-%-tls%-key", err)
    end)
  end)

  describe("the FFI client (rsghost.hiredis)", function()
    it("refuses a server its CA did not sign", function()
      assert.has_error(function()
        hiredis.connect(open_srv.url, { tls = { ca_cert = pki.other_ca_crt } })
      end)
      local ok, err = pcall(hiredis.connect, open_srv.url, { tls = { ca_cert = pki.other_ca_crt } })
      assert.is_false(ok)
      assert.matches("TLS with 127%.0%.0%.1:%d+ failed: .*certificate verify failed", err)
    end)
  end)
end)
