-- The command line as a user meets it: --help, --version, bad options, broken
-- scripts (which must stop the host before it touches Redis, pointing at the
-- script's file:line) and a password that must not show in `ps`.
local server = require "support.server"
local proc = require "support.proc"
local H = require "support.host"

-- A script that works: the baseline the broken ones are variations of.
local GOOD = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = { P .. ":s" }, group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

local function one_line(text)
  return (text:gsub("\n$", "")):find("\n") == nil
end

describe("rsghost command line", function()
  after_each(function() H.cleanup() end)

  it("prints usage with every option and exits 0 on --help", function()
    local code, out, err = H.run { "--help" }
    assert.equal(0, code, err)
    local text = out .. err
    assert.matches("rsghost", text)
    assert.matches("SCRIPT", text)
    assert.matches("%-%-redis", text)
    assert.matches("redis://127.0.0.1:6379/0", text, nil, true)
    assert.matches("%-%-help", text)
    assert.matches("%-%-version", text)
  end)

  it("names the subcommands and their options in --help", function()
    local code, out, err = H.run { "--help" }
    assert.equal(0, code, err)
    assert.matches("rsghost dead%-letters %[options%] SCRIPT", out)
    assert.matches("rsghost redrive %[options%] SCRIPT %[ENTRY%-ID%.%.%.%]", out)
    assert.matches("%-%-json", out)
    assert.matches("%-%-count N", out)
  end)

  it("runs a script file named like a subcommand when it is not the first word", function()
    local t = H.context()
    local path = H.script(t, GOOD, nil, "redrive")
    assert.matches("/redrive$", path)
    local code, out, err = H.run { "--check", path, "c1" }
    assert.equal(0, code, err)
    assert.matches("redrive: ok %(group source", out)
    code, out, err = H.run { path, "c1", "--check" }
    assert.equal(0, code, err)
    assert.matches("redrive: ok %(group source", out)
  end)

  it("prints its version and exits 0 on --version", function()
    local code, out, err = H.run { "--version" }
    assert.equal(0, code, err)
    assert.matches("%d+%.%d+%.%d+", out .. err)
  end)

  it("exits 2 with a one-line reason on an unknown option", function()
    local code, out, err = H.run { "--no-such-option", "x.lua" }
    assert.equal(2, code, out .. err)
    assert.matches("no%-such%-option", err)
    assert.is_true(one_line(err), err)
  end)

  it("exits 2 when SCRIPT is missing", function()
    local code, out, err = H.run {}
    assert.equal(2, code, out .. err)
    assert.not_equal("", err)
  end)

  it("exits 2 when an option lacks its value", function()
    local code, out, err = H.run { "--redis" }
    assert.equal(2, code, out .. err)
    assert.matches("redis", err)
  end)

  it("exits 2 on an unknown log level", function()
    local t = H.context()
    local code, out, err = H.run { "--log-level", "chatty", H.script(t, GOOD), "c1" }
    assert.equal(2, code, out .. err)
    assert.matches("chatty", err)
  end)

  it("exits 2 naming the file when the script does not exist", function()
    local code, out, err = H.run { "--redis", "redis://127.0.0.1:1/0", "/nonexistent/dir/script.lua", "c1" }
    assert.equal(2, code, out .. err)
    assert.matches("/nonexistent/dir/script.lua", err, nil, true)
  end)

  describe("a broken script", function()
    -- Its own server, so that "touches no Redis" can be checked by counting
    -- the connections it received.
    local srv, r

    setup(function()
      srv = server.start()
      r = srv.client()
    end)

    teardown(function()
      srv.stop()
    end)

    local cases = {
      {
        what = "a syntax error",
        line = 4,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s" group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]],
      },
      {
        what = "a missing sink",
        line = 3,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
}
]],
        reason = "sink",
      },
      {
        what = "a missing preprocess",
        line = 4,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"

return {
  source = { streams = P .. ":s", group = P .. ":g" },
  sink = function(items) end,
}
]],
        reason = "preprocess",
      },
      {
        what = "a wrong type in source (count)",
        line = 6,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = {
    streams = P .. ":s", group = P .. ":g",
    count = "ten",
  },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]],
        reason = "count",
      },
      {
        what = "a wrong type in source (streams)",
        line = 5,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = {
    streams = 42,
    group = P .. ":g",
  },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]],
        reason = "streams",
      },
      {
        what = "preprocess that is not a function",
        line = 5,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = "upper",
  sink = function(items) end,
}
]],
        reason = "preprocess",
      },
      {
        what = "a misspelt key",
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preproces = function(stream, id, data) return id end,
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]],
        reason = "preproces",
      },
      {
        what = "an error raised while the script runs",
        line = 3,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
error("cannot start: missing settings")
return {}
]],
        reason = "missing settings",
      },
      {
        what = "a script that returns no table",
        line = 3,
        src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return 42
]],
      },
    }

    for _, case in ipairs(cases) do
      it("(" .. case.what .. ") exits 2 with script.lua:LINE: and touches no Redis", function()
        local t = H.context { server = srv }
        local path = H.script(t, case.src)
        local before = tonumber(H.info(r, "stats").total_connections_received)
        local h = H.start(t, { script = path, consumer = "c1" })
        local code = h:wait(H.timeout)
        if code == nil then h:kill() end
        local log = h:log()
        assert.equal(2, code, h:describe())
        local want = "script%.lua:" .. (case.line and tostring(case.line) or "%d+") .. ":"
        assert.matches(want, log)
        if case.reason then assert.matches(case.reason, log, nil, true) end
        -- Nothing was created: no stream (MKSTREAM), no group, no output.
        assert.equal(0, r:call("EXISTS", t.prefix .. ":s", t.prefix .. ":out"))
        assert.equal(before, tonumber(H.info(r, "stats").total_connections_received),
          "the host connected to Redis although its script is broken")
      end)
    end
  end)

  describe("--redis with a password", function()
    local srv

    setup(function()
      srv = server.start { password = "pw-Zq8-never-shown" }
    end)

    teardown(function()
      srv.stop()
    end)

    it("keeps the password out of /proc/PID/cmdline and the log", function()
      local t = H.context { server = srv }
      local h = H.start(t, { script = H.script(t, GOOD), consumer = "c1" })
      local ids = H.xadd_many(t.redis, t.prefix .. ":s", 5)
      -- It authenticated and works: messages flow.
      H.eventually(function()
        return #H.list(t.redis, t.prefix .. ":out") == #ids
      end, 30, function() return h:describe() end)
      local f = assert(io.open("/proc/" .. h:pid() .. "/cmdline", "rb"))
      local cmdline = f:read("*a")
      f:close()
      assert.is_nil(cmdline:find("pw-Zq8-never-shown", 1, true), "password visible in ps: " .. cmdline:gsub("%z", " "))
      -- The rest of the command line is still there for ps to show.
      assert.matches("script.lua", cmdline, nil, true)
      assert.equal(0, h:stop())
      assert.is_nil(h:log():find("pw-Zq8-never-shown", 1, true), "password in the log")
    end)

    it("does not print a wrong password when AUTH fails, nor any in --check", function()
      local t = H.context { server = srv }
      local url = "redis://:wrong-Pw-4412@127.0.0.1:" .. srv.port .. "/0"
      local h = H.start(t, { script = H.script(t, GOOD), consumer = "c1", redis = url })
      local code = h:wait(H.timeout)
      if code == nil then h:kill() end
      assert.is_not_nil(code, "still running with a wrong password: " .. h:describe())
      assert.not_equal(0, code)
      assert.matches("AUTH", h:log())
      assert.is_nil(h:log():find("wrong-Pw-4412", 1, true), "password in the log:\n" .. h:log())
      local code2, out, err = H.run { "--redis", url, "--check", H.script(t, GOOD), "c1" }
      assert.equal(0, code2, out .. err)
      assert.is_nil((out .. err):find("wrong-Pw-4412", 1, true), "password in --check output")
    end)
  end)

  it("decodes a percent-encoded password and logs in as an ACL user", function()
    local srv = server.start { password = "p@ss:w/rd" }
    finally(function() srv.stop() end)
    local t = H.context { server = srv }
    t.redis:call("ACL", "SETUSER", "alice", "on", ">al ice%", "~*", "&*", "+@all")
    local urls = {
      srv.url, -- redis://:p%40ss%3Aw%2Frd@127.0.0.1:PORT/0
      "redis://alice:al%20ice%25@127.0.0.1:" .. srv.port .. "/0",
    }
    for _, url in ipairs(urls) do
      t.prefix = H.prefix()
      local h = H.start(t, { script = H.script(t, GOOD), consumer = "c1", redis = url })
      local ids = H.xadd_many(t.redis, t.prefix .. ":s", 3)
      local out = H.wait_sunk(t.redis, { out = t.prefix .. ":out", n = #ids, streams = t.prefix .. ":s",
        group = t.prefix .. ":g", hosts = { h } })
      assert.same(ids, out)
      assert.equal(0, h:stop(), h:describe())
    end
  end)

  it("takes the Redis URL from RSGHOST_REDIS_URL when --redis is absent", function()
    local t = H.context()
    local h = H.start(t, { script = H.script(t, GOOD), consumer = "c1", redis = false,
      env = { RSGHOST_REDIS_URL = t.url } })
    local ids = H.xadd_many(t.redis, t.prefix .. ":s", 5)
    H.eventually(function()
      return #H.list(t.redis, t.prefix .. ":out") == #ids
    end, 30, function() return h:describe() end)
    assert.equal(0, h:stop())
  end)

  it("connects through a unix socket URL and selects its database", function()
    local dir = H.tmpdir()
    local sock = dir .. "/redis.sock"
    local rp = proc.spawn { argv = { server.binary, "--port", "0", "--unixsocket", sock,
      "--save", "", "--appendonly", "no", "--dir", dir } }
    finally(function() rp:kill() end)
    local hiredis = require "rsghost.hiredis"
    local r = H.eventually(function() return hiredis.connect("unix://" .. sock .. "?db=2") end, 20)
    finally(function() r:close() end)
    local t = H.context()
    t.redis, t.url = r, "unix://" .. sock .. "?db=2"
    local h = H.start(t, { script = H.script(t, GOOD), consumer = "c1" })
    local ids = H.xadd_many(r, t.prefix .. ":s", 5)
    local out = H.wait_sunk(r, { out = t.prefix .. ":out", n = #ids, streams = t.prefix .. ":s",
      group = t.prefix .. ":g", hosts = { h } })
    assert.same(ids, out)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("uses the database number of a redis:// URL", function()
    local t = H.context()
    local r5 = require("rsghost.hiredis").connect(t.url:gsub("/%d+$", "") .. "/5")
    finally(function() r5:close() end)
    local h = H.start(t, { script = H.script(t, GOOD), consumer = "c1", redis = t.url:gsub("/%d+$", "") .. "/5" })
    local ids = H.xadd_many(r5, t.prefix .. ":s", 5)
    local out = H.wait_sunk(r5, { out = t.prefix .. ":out", n = #ids, streams = t.prefix .. ":s",
      group = t.prefix .. ":g", hosts = { h } })
    assert.same(ids, out)
    assert.equal(0, t.redis:call("EXISTS", t.prefix .. ":s", t.prefix .. ":out"), "wrote to database 0")
    assert.equal(0, h:stop(), h:describe())
  end)

  it("exits 2 on a malformed --redis URL", function()
    local t = H.context()
    local h = H.start(t, { script = H.script(t, GOOD), consumer = "c1", redis = "http://nowhere" })
    local code = h:wait(H.timeout)
    if code == nil then h:kill() end
    assert.equal(2, code, h:describe())
    assert.matches("http://nowhere", h:log(), nil, true)
  end)

  describe("--check and a real start", function()
    local cases = {
      { what = "an unknown encoding", src = 'encoding = "latin-99",', err = 'source.encoding "latin%-99" is not an encoding iconv knows' },
      { what = "claim_timeout without heartbeats", src = "claim_timeout = 30,", err = "source.claim_timeout does nothing without source.heartbeat_interval" },
    }
    for _, case in ipairs(cases) do
      it("reach the same verdict on " .. case.what .. ": exit 2, script.lua:LINE", function()
        local t = H.context()
        local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", ]] .. case.src .. [[ },
  preprocess = function(stream, id, data) return id end,
  sink = function(items) end,
}
]])
        local code, out, err = H.run { "--check", path, "c1" }
        assert.equal(2, code, out .. err)
        assert.matches("script%.lua:4: " .. case.err, err)
        local h = H.start(t, { script = path })
        assert.equal(2, h:wait(H.timeout), h:describe())
        assert.matches("script%.lua:4: " .. case.err, h:log())
        assert.equal(0, t.redis:call("EXISTS", t.prefix .. ":s"), "touched Redis")
      end)
    end

    it("refuse a URL query nobody reads, and never print its passwords", function()
      local t = H.context()
      local path = H.script(t, GOOD)
      for _, url in ipairs { t.url .. "?timeout=5", "https://user:secret@host:6379/0", "redis//secret@h" } do
        local code, out, err = H.run { "--check", "--redis", url, path, "c1" }
        assert.equal(2, code, out .. err)
        assert.is_nil((out .. err):find("secret", 1, true), out .. err)
        local h = H.start(t, { script = path, redis = url })
        assert.equal(2, h:wait(H.timeout), h:describe())
        assert.is_nil(h:log():find("secret", 1, true), h:log())
      end
      local _, _, err = H.run { "--check", "--redis", "https://user:secret@host:6379/0", path, "c1" }
      assert.matches("'https://user:***@host:6379/0'", err, 1, true)
      _, _, err = H.run { "--check", "--redis", t.url .. "?timeout=5", path, "c1" }
      assert.matches("unknown query parameter 'timeout'", err, 1, true)
    end)
  end)

  it("finds the modules next to the script, whatever the current directory", function()
    local t = H.context()
    local path = H.script(t, [[
local rsghost = require "rsghost"
local helpers = require "helpers"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return helpers.tag(id) end,
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    H.write(path:match("^(.*)/") .. "/helpers.lua", 'return { tag = function(id) return "tagged " .. id end }\n')
    local h = H.start(t, { script = path })
    local ids = H.xadd_many(t.redis, t.prefix .. ":s", 3)
    local out = H.wait_sunk(t.redis, { out = t.prefix .. ":out", n = 3, streams = t.prefix .. ":s", group = t.prefix .. ":g", hosts = { h } })
    assert.same({ "tagged " .. ids[1], "tagged " .. ids[2], "tagged " .. ids[3] }, out)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("says at debug level what it does: reads, batches and why they closed, acks; info says none of it", function()
    local t = H.context()
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 4, timeout = 0.2 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]])
    local runs = {}
    for _, level in ipairs { "debug", "info" } do
      local P = t.prefix .. ":" .. level
      local p = path:gsub("%.lua$", "-" .. level .. ".lua")
      H.write(p, (proc.slurp(path):gsub(t.prefix, P)))
      local h = H.start(t, { script = p, log_level = level })
      local ids = H.xadd_many(t.redis, P .. ":s", 6)
      H.wait_sunk(t.redis, { out = P .. ":out", n = #ids, streams = P .. ":s", group = P .. ":g", hosts = { h } })
      assert.equal(0, h:stop(), h:describe())
      runs[level] = h
    end
    local h = runs.debug
    assert.is_true(#h:log_lines("debug: read %d+ message%(s%); %d+ in flight") >= 1, h:describe())
    assert.is_true(#h:log_lines("debug: batch of 4 message%(s%) flushed %(size%)") >= 1, h:describe())
    assert.is_true(#h:log_lines("debug: batch of 2 message%(s%) flushed %(timeout%)") >= 1, h:describe())
    assert.is_true(#h:log_lines("debug: acking 4 message%(s%) of stream") >= 1, h:describe())
    assert.equal(0, #runs.info:log_lines("debug:"), runs.info:describe())
  end)

  it("writes rsghost.log lines in the host's format, arguments joined by one space, anywhere in the script", function()
    local t = H.context()
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
rsghost.log.info("loading", "the", 3, "parts")
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) rsghost.log.warn("saw", "a", "message") return id end,
  sink = function(items) rsghost.log.info("a", "b") end,
}
]])
    local h = H.start(t, { script = path, log_level = "info" })
    H.xadd_many(t.redis, t.prefix .. ":s", 1)
    H.eventually(function() return #h:log_lines(" info: a b$") == 1 end, 30, function() return h:describe() end)
    local stamp = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ rsghost%[%d+%] "
    assert.equal(1, #h:log_lines(stamp .. "info: loading the 3 parts$"), h:describe())
    assert.equal(1, #h:log_lines(stamp .. "warn: saw a message$"), h:describe())
    assert.equal(1, #h:log_lines(stamp .. "info: a b$"), h:describe())
    assert.equal(0, h:stop(), h:describe())
  end)
end)
