-- rsghost.pg and rsghost.sink.postgres with the real binary, a real
-- redis-server and a throwaway PostgreSQL cluster (support.postgres): the
-- tutorial's messages land as rows; a kill -9 mid-run and a restart leave
-- every message exactly once in the table (ON CONFLICT DO NOTHING on the
-- message id); SQL errors carry their SQLSTATE.
local H = require "support.host"
local postgres = require "support.postgres"
local cjson = require "cjson"

describe("rsghost.sink.postgres", function()
  local db
  setup(function() db = postgres.start() end)
  teardown(function() if db then db.stop() end end)
  after_each(function() H.cleanup() end)

  -- The tutorial's pipeline, into a table: each message's fields as JSON,
  -- its stream and its id (the conflict column).
  local TUTORIAL = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data)
    return { id = id, source = stream, data = data }
  end,
  batch = { size = {{SIZE}}, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.5 },
  sink = rsghost.sink.postgres("{{CONNINFO}}", { table = "{{TABLE}}", columns = { "source", "data" }, id = "id" }),
}
]]

  local function table_for(t)
    local name = "ev_" .. t.prefix:gsub("[^%w]", "_")
    db.sql(string.format("CREATE TABLE %s (id text PRIMARY KEY, source text NOT NULL, data jsonb NOT NULL)", name))
    return name
  end

  local function count(tbl) return tonumber(db.sql("SELECT count(*) FROM " .. tbl)[1]) end

  it("writes the tutorial's messages as rows", function()
    local t = H.context()
    local P = t.prefix
    local tbl = table_for(t)
    local path = H.script(t, TUTORIAL, { CONNINFO = db.conninfo, TABLE = tbl, SIZE = 100 }, "tutorial.lua")
    local ids = H.xadd_many(t.redis, P .. ":s", 250, function(i) return { "user", "u" .. i, "event", "click" } end)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function()
      return count(tbl) == 250 and H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
    end, 60, function() return h:describe() end)
    local got, by_id = {}, {}
    for _, line in ipairs(db.sql("SELECT id, source, data FROM " .. tbl)) do
      local id, source, data = line:match("^([^|]+)|([^|]+)|(.*)$")
      got[#got + 1] = id
      by_id[id] = { source = source, data = cjson.decode(data) }
    end
    H.assert_exactly_once(ids, got)
    assert.same({ source = P .. ":s", data = { user = "u7", event = "click" } }, by_id[ids[7]])
    assert.equal(0, h:stop(), h:describe())
  end)

  it("after kill -9 mid-run and a restart, holds every message exactly once", function()
    local t = H.context()
    local P = t.prefix
    local tbl = table_for(t)
    local path = H.script(t, TUTORIAL, { CONNINFO = db.conninfo, TABLE = tbl, SIZE = 50 }, "tutorial.lua")
    local n = 3000
    local ids = H.xadd_many(t.redis, P .. ":s", 2000)
    -- As if a crash came between the INSERT of the first batch and its ack:
    -- its rows are there, the messages still to be delivered.
    for i = 1, 50 do
      db.sql(string.format("INSERT INTO %s VALUES ('%s', 'before', '{}')", tbl, ids[i]))
    end
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function() return count(tbl) > 50 end, 60, function() return h:describe() end)
    h:kill()
    -- More messages come while it is down.
    for _, id in ipairs(H.xadd_many(t.redis, P .. ":s", n - 2000)) do ids[#ids + 1] = id end
    local h2 = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function()
      return count(tbl) == n and H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
    end, 90, function() return h2:describe() end)
    local got = {}
    for _, line in ipairs(db.sql("SELECT id FROM " .. tbl)) do got[#got + 1] = line end
    H.assert_exactly_once(ids, got)
    -- The first batch's rows are those written "before": DO NOTHING kept them.
    assert.equal(50, tonumber(db.sql("SELECT count(*) FROM " .. tbl .. " WHERE source = 'before'")[1]))
    assert.equal(0, h2:stop(), h2:describe())
  end)

  it("raises SQL errors with their SQLSTATE, and a refused connection as a connection failure", function()
    local t = H.context()
    local P = t.prefix
    local tbl = table_for(t)
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
local good = rsghost.pg.connect("{{CONNINFO}}")
local away = rsghost.pg.connect("host=127.0.0.1 port={{DEAD}} dbname=postgres user=rsghost connect_timeout=5")
return {
  source = { streams = P .. ":s", group = P .. ":g" },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2 },
  sink = function(items)
    local ok, err = pcall(function() local r = good:query("INSERT INTO nosuchtable VALUES (1)") return r end)
    rsghost.redis.call("RPUSH", P .. ":errors", tostring(err))
    local rows = good:query("SELECT $1::int + 1 AS n, NULL AS nothing, $2::text AS s", 41, "x")
    rsghost.redis.call("RPUSH", P .. ":rows", rows[1].n, tostring(rows[1].nothing), rows[1].s, rows.columns[2])
    local ok2, err2 = pcall(away.query, away, "SELECT 1")
    rsghost.redis.call("RPUSH", P .. ":errors", tostring(err2))
    for _, id in ipairs(items) do good:query("INSERT INTO {{TABLE}} VALUES ($1, 'x', '{}')", id) end
  end,
}
]], { CONNINFO = db.conninfo, TABLE = tbl, DEAD = require("support.server").free_port() }, "errors.lua")
    H.xadd_many(t.redis, P .. ":s", 10)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function()
      return count(tbl) == 10 and H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
    end, 60, function() return h:describe() end)
    local errors = H.list(t.redis, P .. ":errors")
    assert.matches("/errors%.lua:%d+: postgresql error 42P01: relation \"nosuchtable\" does not exist$", errors[1])
    assert.matches("connection to postgresql failed: .*", errors[2])
    assert.same({ "42", "nil", "x", "nothing" }, H.list(t.redis, P .. ":rows"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("connects again after its connection is killed, without dead-lettering anything", function()
    local t = H.context()
    local P = t.prefix
    local tbl = table_for(t)
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) return { id = id, source = stream, data = data } end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2, max_attempts = 1 },
  sink = rsghost.sink.postgres("{{CONNINFO}}", { table = "{{TABLE}}", columns = { "source", "data" }, id = "id" }),
}
]], { CONNINFO = db.conninfo, TABLE = tbl }, "killed.lua")
    local ids = H.xadd_many(t.redis, P .. ":s", 10)
    local h = H.start(t, { script = path, consumer = "c1" })
    H.eventually(function() return count(tbl) == 10 end, 60, function() return h:describe() end)
    -- Every other client of the cluster: the host's kept connection.
    local killed = db.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      .. "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
    assert.is_true(tonumber(killed[1]) >= 1)
    for _, id in ipairs(H.xadd_many(t.redis, P .. ":s", 10)) do ids[#ids + 1] = id end
    H.eventually(function()
      return count(tbl) == 20 and H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
    end, 60, function() return h:describe() end)
    local got = {}
    for _, line in ipairs(db.sql("SELECT id FROM " .. tbl)) do got[#got + 1] = line end
    H.assert_exactly_once(ids, got)
    assert.equal(0, t.redis:call("XLEN", P .. ":dlq"))
    assert.equal(0, h:stop(), h:describe())
  end)

  it("is what the test kit runs for real with pg = \"real\"", function()
    local testing = require "rsghost.testing"
    local rsghost = require "rsghost"
    local t = H.context()
    local tbl = table_for(t)
    local k = testing.load({
      source = { streams = "s", group = "g" },
      preprocess = function(stream, id, data) return { id = id, source = stream, data = data } end,
      batch = { size = 2, timeout = 1 },
      sink = rsghost.sink.postgres(db.conninfo, { table = tbl, columns = { "source", "data" }, id = "id" }),
    }, { pg = "real" })
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } } }
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-3", { n = "3" } } } -- 1-1 again: DO NOTHING
    assert.same({ s = { "1-1", "1-2", "1-1", "1-3" } }, k:acked())
    assert.same({ "1-1|{\"n\": \"1\"}", "1-2|{\"n\": \"2\"}", "1-3|{\"n\": \"3\"}" },
      db.sql("SELECT id, data FROM " .. tbl .. " ORDER BY id"))
    k:close()
  end)

  it("retries a batch while PostgreSQL cannot be reached, dead-letters nothing, and writes it once it is up",
    function()
    local t = H.context()
    local P = t.prefix
    local port = require("support.server").free_port()
    local path = H.script(t, [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", dead_letter = P .. ":dlq" },
  preprocess = function(stream, id, data) return { id = id, source = stream, data = data } end,
  batch = { size = 10, timeout = 0.05 },
  retry = { initial = 0.05, max = 0.2, max_attempts = 2 },
  sink = rsghost.sink.postgres("host=127.0.0.1 port={{PORT}} dbname=late user=rsghost",
    { table = "late", columns = { "source", "data" }, id = "id" }),
}
]], { PORT = port }, "late.lua")
    local ids = H.xadd_many(t.redis, P .. ":s", 10)
    local h = H.start(t, { script = path, consumer = "c1" })
    -- Well past max_attempts: an outage is not the batch's fault.
    H.eventually(function() return #h:log_lines("attempt 6") > 0 end, 60, function() return h:describe() end)
    assert.equal(0, t.redis:call("XLEN", P .. ":dlq"))
    assert.matches("connection to postgresql failed", h:log())
    local late = postgres.start { port = port }
    finally(function() late.stop() end)
    -- The database appears with its table in one step (a copy of
    -- template1): until then connecting fails, which is an outage too.
    late.sql("CREATE TABLE late (id text PRIMARY KEY, source text NOT NULL, data jsonb NOT NULL)", "template1")
    late.sql("CREATE DATABASE late")
    H.eventually(function()
      return tonumber(late.sql("SELECT count(*) FROM late", "late")[1]) == 10
        and H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
    end, 60, function() return h:describe() end)
    local got = {}
    for _, line in ipairs(late.sql("SELECT id FROM late", "late")) do got[#got + 1] = line end
    H.assert_exactly_once(ids, got)
    assert.equal(0, t.redis:call("XLEN", P .. ":dlq"))
    assert.equal(0, h:stop(), h:describe())
  end)
end)
