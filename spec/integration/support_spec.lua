-- The spec helpers themselves, against a real redis-server: if these are
-- wrong, every integration spec lies.
local hiredis = require "rsghost.hiredis"
local server = require "support.server"
local proc = require "support.proc"
local H = require "support.host"

describe("rsghost.hiredis", function()
  local srv, r, p

  setup(function()
    srv = server.shared()
  end)

  before_each(function()
    r = hiredis.connect(srv.url)
    p = H.prefix("hiredis")
  end)

  after_each(function()
    r:close()
  end)

  describe("reply conversion", function()
    it("returns status replies as strings", function()
      assert.equal("PONG", r:call("PING"))
      assert.equal("OK", r:call("SET", p .. ":k", "v"))
    end)

    it("returns integers as numbers", function()
      assert.equal(1, r:call("INCR", p .. ":n"))
      assert.equal(11, r:call("INCRBY", p .. ":n", 10))
      assert.equal("number", type(r:call("INCR", p .. ":n")))
    end)

    it("returns bulk strings as strings and a nil bulk as nil", function()
      r:call("SET", p .. ":k", "hello")
      assert.equal("hello", r:call("GET", p .. ":k"))
      assert.is_nil(r:call("GET", p .. ":missing"))
      -- nil must be a real nil, not a placeholder (select('#') would show it).
      assert.equal(1, select("#", r:call("GET", p .. ":missing")))
    end)

    it("returns arrays as tables with false for nil elements", function()
      r:call("SET", p .. ":a", "1")
      r:call("SET", p .. ":c", "3")
      assert.same({ "1", false, "3" }, r:call("MGET", p .. ":a", p .. ":b", p .. ":c"))
      assert.same({}, r:call("LRANGE", p .. ":nolist", 0, -1))
    end)

    it("converts nested arrays (XRANGE entries)", function()
      local id = r:call("XADD", p .. ":s", "*", "f1", "v1", "f2", "v2")
      assert.matches("^%d+%-%d+$", id)
      assert.same({ { id, { "f1", "v1", "f2", "v2" } } }, r:call("XRANGE", p .. ":s", "-", "+"))
    end)

    it("passes numbers as integers without exponent or decimals", function()
      r:call("SET", p .. ":k", 1e15)
      assert.equal("1000000000000000", r:call("GET", p .. ":k"))
      r:call("SET", p .. ":k", 2.5)
      assert.equal("2.5", r:call("GET", p .. ":k"))
    end)
  end)

  describe("errors", function()
    it("raises the error reply's message from call", function()
      local ok, err = pcall(r.call, r, "NOSUCHCOMMAND", "x")
      assert.is_false(ok)
      assert.matches("^ERR unknown command", err)
    end)

    it("returns nil, message from pcall", function()
      r:call("SET", p .. ":k", "notanumber")
      local v, err = r:pcall("INCR", p .. ":k")
      assert.is_nil(v)
      assert.equal("ERR value is not an integer or out of range", err)
    end)

    it("keeps working after an error reply", function()
      assert.is_nil((r:pcall("NOSUCHCOMMAND")))
      assert.equal("PONG", r:call("PING"))
    end)

    it("raises a clear error when no server listens", function()
      local port = server.free_port()
      local ok, err = pcall(hiredis.connect, "redis://127.0.0.1:" .. port)
      assert.is_false(ok)
      assert.matches("cannot connect to 127%.0%.0%.1:" .. port, err)
    end)

    it("rejects malformed URLs", function()
      assert.has_error(function() hiredis.connect("http://x") end)
      assert.has_error(function() hiredis.connect("redis://127.0.0.1:6379/notadb") end)
      assert.has_error(function() hiredis.connect("unix://relative") end)
    end)

    it("rejects arguments that are not strings or numbers", function()
      assert.has_error(function() r:call("SET", p .. ":k", {}) end)
      assert.has_error(function() r:call("SET", p .. ":k", nil) end)
    end)
  end)

  describe("binary safety", function()
    it("round-trips every byte value, NULs included", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local v = table.concat(bytes) .. "\0\0end"
      r:call("SET", p .. ":bin", v)
      assert.equal(v, r:call("GET", p .. ":bin"))
      assert.equal(#v, r:call("STRLEN", p .. ":bin"))
    end)

    it("uses binary keys and stream fields", function()
      local key = p .. ":k\0ey\r\n"
      local id = r:call("XADD", key, "*", "f\0\255", "v\0\r\n\254")
      local entries = r:call("XRANGE", key, "-", "+")
      assert.same({ "f\0\255", "v\0\r\n\254" }, entries[1][2])
      assert.equal(id, entries[1][1])
    end)

    it("handles large values", function()
      local v = string.rep("x\0y", 400000)
      r:call("SET", p .. ":big", v)
      assert.equal(v, r:call("GET", p .. ":big"))
    end)
  end)

  describe("pipeline", function()
    it("returns every reply in order, errors as { err = }", function()
      local replies = r:pipeline {
        { "SET", p .. ":a", "1" },
        { "INCR", p .. ":a" },
        { "GET", p .. ":nope" },
        { "HSET", p .. ":a", "f", "v" },
        { "GET", p .. ":a" },
      }
      assert.equal("OK", replies[1])
      assert.equal(2, replies[2])
      assert.is_false(replies[3])
      assert.matches("^WRONGTYPE", replies[4].err)
      assert.equal("2", replies[5])
    end)
  end)

  describe("command", function()
    it("takes the command as an array, of any length (no unpack limit)", function()
      local argv = { "RPUSH", p .. ":big" }
      for i = 1, 20000 do argv[#argv + 1] = i end
      assert.equal(20000, r:command(argv))
      assert.equal("20000", r:call("LINDEX", p .. ":big", -1))
      assert.equal(20000, argv[#argv], "the caller's array is left as it was")
      local reply, err = r:command { "INCR", p .. ":big" }
      assert.is_nil(reply)
      assert.matches("^WRONGTYPE", err)
    end)
  end)

  describe("URLs", function()
    it("selects the database from the path", function()
      local r3 = hiredis.connect(srv.url:gsub("/%d+$", "") .. "/3")
      r3:call("SET", p .. ":db", "three")
      assert.is_nil(r:call("GET", p .. ":db"))
      assert.equal("three", r3:call("GET", p .. ":db"))
      r3:call("DEL", p .. ":db")
      r3:close()
    end)

    it("parses user, password, host, port and db as the host does", function()
      assert.same({ host = "h", port = 7000, user = "u", password = "p@ss:w", db = 4 },
        hiredis.parse_url("redis://u:p%40ss:w@h:7000/4"))
      assert.same({ host = "127.0.0.1", port = 6379, password = "pw", db = 0 },
        hiredis.parse_url("redis://:pw@127.0.0.1"))
      -- A lone credential is a password, in the host, redis-cli and here.
      assert.same({ host = "h", port = 6379, password = "secret", db = 0 },
        hiredis.parse_url("redis://secret@h"))
      assert.has_error(function() hiredis.parse_url("redis://h/0?timeout=1") end,
        "rsghost.hiredis: unknown query parameter 'timeout' (known: db) in redis URL 'redis://h/0?timeout=1'")
      assert.same({ path = "/tmp/redis.sock", db = 2 }, hiredis.parse_url("unix:///tmp/redis.sock?db=2"))
      assert.same({ host = "h", port = 6380, password = "pw", db = 1, tls = true },
        hiredis.parse_url("rediss://:pw@h:6380/1"))
      assert.equal("redis://:***@h:1/0", hiredis.redact("redis://:secret@h:1/0"))
    end)

    it("authenticates with the password in the URL", function()
      local s = server.start { password = "s3cret" }
      finally(function() s.stop() end)
      local bare = "redis://127.0.0.1:" .. s.port
      local nr = hiredis.connect(bare)
      local v, err = nr:pcall("PING")
      nr:close()
      assert.is_nil(v)
      assert.matches("NOAUTH", err)
      local ar = hiredis.connect(s.url)
      assert.equal("PONG", ar:call("PING"))
      ar:close()
      local ok, e = pcall(hiredis.connect, "redis://:wrong@127.0.0.1:" .. s.port)
      assert.is_false(ok)
      assert.matches("AUTH failed", e)
      assert.not_matches("wrong", e)
    end)

    it("decodes percent-encoded passwords and logs in as an ACL user", function()
      local s = server.start { password = "p@ss:w/rd" }
      finally(function() s.stop() end)
      assert.matches("p%%40ss%%3Aw%%2Frd", s.url)
      local c = hiredis.connect(s.url)
      c:call("ACL", "SETUSER", "alice", "on", ">al ice%", "~*", "&*", "+@all")
      local a = hiredis.connect("redis://alice:al%20ice%25@127.0.0.1:" .. s.port .. "/0")
      assert.equal("alice", a:call("ACL", "WHOAMI"))
      a:close()
      c:close()
    end)

    it("connects over a unix socket", function()
      local dir = H.tmpdir()
      local sock = dir .. "/redis.sock"
      local rp = proc.spawn { argv = { "redis-server", "--port", "0", "--unixsocket", sock,
        "--save", "", "--appendonly", "no", "--dir", dir } }
      finally(function() rp:kill() end)
      local ur = H.eventually(function() return hiredis.connect("unix://" .. sock .. "?db=1") end, 20)
      assert.equal("PONG", ur:call("PING"))
      assert.matches("db=1", ur:call("CLIENT", "INFO"))
      ur:close()
    end)
  end)
end)

describe("support.server", function()
  it("starts a private server on a free loopback port, kills and restarts it with its data", function()
    local s = server.start { persist = true }
    finally(function() s.stop() end)
    assert.matches("^redis://127%.0%.0%.1:%d+/0$", s.url)
    local c = hiredis.connect(s.url)
    c:call("SET", "k", "kept")
    s.kill()
    assert.is_false(s.alive())
    assert.has_error(function() c:call("PING") end)
    s.restart()
    -- the client reconnects by itself after a lost connection
    assert.equal("kept", c:call("GET", "k"))
    c:close()
  end)

  it("shares one server per process", function()
    assert.equal(server.shared(), server.shared())
    assert.equal("PONG", server.shared().client():call("PING"))
  end)
end)

describe("support.proc", function()
  it("runs a program and reports its exit code and output", function()
    local code, out, err = proc.run { argv = { "sh", "-c", "echo out; echo err >&2; exit 3" } }
    assert.equal(3, code)
    assert.equal("out\n", out)
    assert.equal("err\n", err)
  end)

  it("passes extra environment and unsets variables", function()
    local code, out = proc.run { argv = { "sh", "-c", 'echo "$A|${HOME:-unset}"' }, env = { A = "x y", HOME = false } }
    assert.equal(0, code)
    assert.equal("x y|unset\n", out)
  end)

  it("signals, waits with a timeout and reaps", function()
    local p = proc.spawn { argv = { "sleep", "60" } }
    assert.is_true(p:alive())
    assert.is_nil(p:wait(0.2))
    assert.is_true(p:signal("TERM"))
    assert.equal("signal 15", p:wait(10))
    assert.is_false(p:alive())
    -- reaped: no zombie left with that pid
    assert.is_nil(io.open("/proc/" .. p:pid() .. "/stat"))
  end)

  it("reports a program that cannot be executed", function()
    local code = proc.run { argv = { "/nonexistent/program" } }
    assert.equal(127, code)
  end)
end)

describe("support.host", function()
  it("waits with eventually and re-raises the last failure", function()
    local n = 0
    assert.equal(3, H.eventually(function() n = n + 1; return n >= 3 and n end, 5))
    local ok, err = pcall(H.eventually, function() assert.equal(1, 2) end, 0.3)
    assert.is_false(ok)
    assert.matches("Expected objects to be equal", tostring(err))
  end)

  it("stops waiting at once on abort", function()
    local calls = 0
    local ok, err = pcall(H.eventually, function() calls = calls + 1; H.abort("host exited") end, 30)
    assert.is_false(ok)
    assert.equal("host exited", err)
    assert.equal(1, calls)
  end)

  it("gives unique prefixes", function()
    assert.not_equal(H.prefix(), H.prefix())
  end)

  it("summarises XPENDING", function()
    local t = H.context()
    local s = t.prefix .. ":s"
    H.xadd_many(t.redis, s, 5)
    assert.is_true(H.xpending(t.redis, s, "g").nogroup)
    t.redis:call("XGROUP", "CREATE", s, "g", "0")
    t.redis:call("XREADGROUP", "GROUP", "g", "c1", "COUNT", 3, "STREAMS", s, ">")
    local x = H.xpending(t.redis, s, "g")
    assert.equal(3, x.count)
    assert.same({ c1 = 3 }, x.consumers)
    local n = 0
    for _ in pairs(H.pending_ids(t.redis, s, "g")) do n = n + 1 end
    assert.equal(3, n)
  end)

  it("compares sent and received values", function()
    local c = H.compare({ "a", "b", "c" }, { "a", "a", "c", "z" })
    assert.same({ "b" }, c.missing)
    assert.equal(1, c.duplicates)
    assert.same({ "z" }, c.unexpected)
  end)
end)
