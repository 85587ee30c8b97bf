-- rsghost.http, rsghost.pg, rsghost.sink.http and rsghost.sink.postgres in
-- the test kit, with its fake HTTP and PostgreSQL (rsghost.testing_net): what
-- goes out, what comes back, and what the pipeline does with failures.
local rsghost = require "rsghost"
local testing = require "rsghost.testing"
local cjson = require "cjson"

local function script(sink, extra)
  local s = {
    source = { streams = "s", group = "g", dead_letter = "dlq" },
    preprocess = function(stream, id, data) return data end,
    batch = { size = 3, timeout = 1 },
    retry = { initial = 1, max = 1 },
    sink = sink,
  }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

describe("rsghost.http.request", function()
  it("returns the status, body and headers of the answer", function()
    local got
    local k = testing.load(script(function(items)
      got = { rsghost.http.request("PUT", "http://example.test/x", {
        headers = { ["X-One"] = "1" }, body = "hello", timeout = 5 }) }
    end))
    k:answer_http("example.test", { status = 201, body = "made", headers = { ["Content-Type"] = "text/plain" } })
    k:feed("s", "1-1", { a = "1" })
    k:advance(1)
    assert.same({ 201, "made", { ["content-type"] = "text/plain" } }, got)
    assert.same({ { method = "PUT", url = "http://example.test/x", headers = { ["X-One"] = "1" }, body = "hello",
      timeout = 5 } }, k:http_requests())
  end)

  it("raises when no answer came, and refuses bad arguments at the caller's line", function()
    local errs = {}
    local k = testing.load(script(function(items)
      errs[1] = select(2, pcall(rsghost.http.request, "GET", "http://down.test/"))
      errs[2] = select(2, pcall(function() local r = rsghost.http.request("GET", "ftp://x") return r end))
    end))
    k:answer_http("down.test", testing.HTTP_UNREACHABLE)
    k:feed("s", "1-1", { a = "1" })
    k:advance(1)
    assert.equal(testing.HTTP_UNREACHABLE, errs[1])
    assert.matches("sink_net_spec%.lua:%d+: rsghost.http.request: url must be an http:// or https:// URL", errs[2])
  end)

  it("works in init and in timers too", function()
    local seen = {}
    local k = testing.load(script(function() end, {
      init = function()
        seen[#seen + 1] = select(2, rsghost.http.request("GET", "http://config.test/"))
        rsghost.every(5, function()
          seen[#seen + 1] = select(2, rsghost.http.request("GET", "http://config.test/"))
        end)
      end,
    }))
    -- init ran inside testing.load, before any rule: the default answer.
    assert.same({ "" }, seen)
    k:answer_http("config.test", { status = 200, body = "v2" })
    k:advance(5)
    assert.same({ "", "v2" }, seen)
    assert.equal(2, #k:http_requests())
  end)

  it("is only available where the pipeline can wait", function()
    assert.has_error(function() rsghost.http.request("GET", "http://x.test/") end,
      "rsghost.http.request is only available inside a sink (or init, or a timer)")
  end)
end)

describe("rsghost.sink.http", function()
  it("POSTs the batch as a JSON array, with Content-Type, and acks it on 2xx", function()
    local k = testing.load(script(rsghost.sink.http("http://api.test/in")))
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } }, { "s", "1-3", { n = "3" } } }
    local reqs = k:http_requests()
    assert.equal(1, #reqs)
    assert.equal("POST", reqs[1].method)
    assert.equal("application/json", reqs[1].headers["Content-Type"])
    assert.same({ { n = "1" }, { n = "2" }, { n = "3" } }, cjson.decode(reqs[1].body))
    assert.same({ s = { "1-1", "1-2", "1-3" } }, k:acked())
  end)

  it("uses encode, method, headers and ok, and sends an Idempotency-Key from meta", function()
    local s = rsghost.sink.http("http://api.test/in", {
      method = "put",
      headers = { Authorization = "Bearer t" },
      encode = function(items, meta) return table.concat(items, ",") .. (meta and "|meta" or "") end,
      ok = function(status) return status == 202 end,
    })
    -- The host passes meta (ids and streams of the items) as the second argument.
    local k = testing.load(script(function(items)
      return s(items, { ids = { "1-1", "1-2", "1-3" }, streams = { "s", "s", "s" } })
    end, { preprocess = function(stream, id, data) return data.v end }))
    k:answer_http("*", 202)
    k:feed_many { { "s", "1-1", { v = "a" } }, { "s", "1-2", { v = "b" } }, { "s", "1-3", { v = "c" } } }
    local r = k:http_requests()[1]
    assert.equal("PUT", r.method)
    assert.equal("a,b,c|meta", r.body)
    assert.equal("Bearer t", r.headers.Authorization)
    assert.is_nil(r.headers["Content-Type"])
    assert.equal("s/1-1/1-3/3", r.headers["Idempotency-Key"])
    assert.same({ s = { "1-1", "1-2", "1-3" } }, k:acked())
  end)

  it("names the batch in an Idempotency-Key from the pipeline's meta, unless idempotency_key = false", function()
    local k = testing.load(script(rsghost.sink.http("http://api.test/in")))
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } }, { "s", "1-3", { n = "3" } } }
    assert.equal("s/1-1/1-3/3", k:http_requests()[1].headers["Idempotency-Key"])
    local k2 = testing.load(script(rsghost.sink.http("http://api.test/in", { idempotency_key = false })))
    k2:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } }, { "s", "1-3", { n = "3" } } }
    assert.is_nil(k2:http_requests()[1].headers["Idempotency-Key"])
  end)

  it("sends no Idempotency-Key when called without meta", function()
    local s = rsghost.sink.http("http://api.test/in")
    local k = testing.load(script(function(items) return s(items) end))
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } }, { "s", "1-3", { n = "3" } } }
    assert.is_nil(k:http_requests()[1].headers["Idempotency-Key"])
  end)

  it("raises on a non-2xx answer, naming the script line; the batch is retried", function()
    local k = testing.load(script(rsghost.sink.http("http://api.test/in")))
    k:answer_http("*", { status = 500, body = "boom" }, 1)
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } }, { "s", "1-3", { n = "3" } } }
    assert.same({}, k:acked())
    assert.truthy(k:logged('sink_net_spec%.lua:%d+: rsghost%.sink%.http%("http://api%.test/in"%): HTTP 500: boom'))
    k:advance(1)
    assert.equal(2, #k:http_requests())
    assert.equal(k:http_requests()[1].body, k:http_requests()[2].body)
    assert.same({ s = { "1-1", "1-2", "1-3" } }, k:acked())
  end)

  it("bisects a batch rejected with 400 down to the item, which is dead-lettered", function()
    local k = testing.load(script(rsghost.sink.http("http://api.test/in"),
      { retry = { initial = 1, max = 1, max_attempts = 2 } }))
    k:answer_http(function(req) return req.body:find("poison") end, { status = 400, body = "no" })
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "poison" } }, { "s", "1-3", { n = "3" } } }
    k:drain(60)
    assert.equal(1, #k:dead_letters())
    assert.equal("1-2", k:dead_letters()[1].id)
    assert.matches("HTTP 400: no", k:dead_letters()[1].error)
    assert.same({ s = { "1-1", "1-3" } }, k:acked())
  end)

  it("treats an unreachable server as an outage: retried, never dead-lettered", function()
    local k = testing.load(script(rsghost.sink.http("http://api.test/in"),
      { retry = { initial = 1, max = 1, max_attempts = 2 } }))
    k:answer_http("*", testing.HTTP_UNREACHABLE, 5)
    k:feed_many { { "s", "1-1", { n = "1" } }, { "s", "1-2", { n = "2" } }, { "s", "1-3", { n = "3" } } }
    k:advance(4)
    assert.same({}, k:dead_letters())
    assert.same({}, k:acked())
    k:advance(2)
    assert.equal(6, #k:http_requests())
    assert.same({}, k:dead_letters())
    assert.same({ s = { "1-1", "1-2", "1-3" } }, k:acked())
  end)

  it("checks its options when the script loads", function()
    assert.has_error(function() rsghost.sink.http("ftp://x") end,
      "rsghost.sink.http: url must be an http:// or https:// URL")
    assert.has_error(function() rsghost.sink.http("http://x", { nope = 1 }) end,
      'rsghost.sink.http: unknown option "nope"')
    assert.has_error(function() rsghost.sink.http("http://x", { encode = "json" }) end,
      "rsghost.sink.http: encode must be a function")
  end)
end)

describe("rsghost.pg", function()
  it("sends parameters as text (nil as NULL) and returns the rows", function()
    local rows
    local db = rsghost.pg.connect("dbname=x")
    local k = testing.load(script(function(items)
      rows = db:query("SELECT $1, $2, $3, $4, $5", "a", 42, 1.5, true, nil)
    end))
    k:answer_pg("SELECT", { { n = "1" }, { n = "2" }, columns = { "n" } })
    k:feed("s", "1-1", { a = "1" })
    k:advance(1)
    assert.same({ { n = "1" }, { n = "2" }, columns = { "n" } }, rows)
    local q = k:pg_queries()[1]
    assert.equal("dbname=x", q.conninfo)
    assert.equal(5, q.n)
    assert.same({ "a", "42", "1.5", "true" }, q.params)
  end)

  it("raises postgresql errors with their SQLSTATE", function()
    local err
    local db = rsghost.pg.connect("dbname=x")
    local k = testing.load(script(function(items)
      err = select(2, db:pquery("INSERT INTO t VALUES (1)"))
    end))
    k:answer_pg("INSERT", { sqlstate = "23505", error = "duplicate key value violates unique constraint" })
    k:feed("s", "1-1", { a = "1" })
    k:advance(1)
    assert.equal("postgresql error 23505: duplicate key value violates unique constraint", err)
  end)

  it("refuses parameters it cannot send", function()
    local err
    local db = rsghost.pg.connect("dbname=x")
    local k = testing.load(script(function(items)
      err = select(2, pcall(db.query, db, "SELECT $1", {}))
    end))
    k:feed("s", "1-1", { a = "1" })
    k:advance(1)
    assert.matches("parameter %$1 must be a string, number, boolean or nil, got table", err)
    assert.equal(0, #k:pg_queries())
  end)
end)

describe("rsghost.sink.postgres", function()
  it("writes a batch as one multi-row INSERT with ON CONFLICT on the id column", function()
    local k = testing.load(script(rsghost.sink.postgres("dbname=x", { table = "app.events",
      columns = { "user", "data" }, id = "msg_id" }),
      { preprocess = function(stream, id, data) return { msg_id = id, user = data.u, data = { n = data.n } } end }))
    k:feed_many { { "s", "1-1", { u = "a", n = "1" } }, { "s", "1-2", { u = "b", n = "2" } },
      { "s", "1-3", { u = "c", n = "3" } } }
    local q = k:pg_queries()
    assert.equal(1, #q)
    assert.equal('INSERT INTO "app"."events" ("user", "data", "msg_id") VALUES ($1, $2, $3), ($4, $5, $6), '
      .. '($7, $8, $9) ON CONFLICT ("msg_id") DO NOTHING', q[1].sql)
    assert.same({ "a", '{"n":"1"}', "1-1", "b", '{"n":"2"}', "1-2", "c", '{"n":"3"}', "1-3" }, q[1].params)
    assert.same({ s = { "1-1", "1-2", "1-3" } }, k:acked())
  end)

  it("takes the id column's values from meta.ids when the host gives meta", function()
    local s = rsghost.sink.postgres("dbname=x", { table = "t", columns = { "v" }, id = "id" })
    local k = testing.load(script(function(items) return s(items, { ids = { "9-1", "9-2", "9-3" } }) end,
      { preprocess = function(stream, id, data) return data.v end }))
    k:feed_many { { "s", "1-1", { v = "a" } }, { "s", "1-2", { v = "b" } }, { "s", "1-3", { v = "c" } } }
    assert.same({ "a", "9-1", "b", "9-2", "c", "9-3" }, k:pg_queries()[1].params)
  end)

  it("runs sql per item in one transaction, and rolls back on an error", function()
    local k = testing.load(script(rsghost.sink.postgres("dbname=x", { sql = "INSERT INTO t VALUES ($1, $2)",
      params = function(item, id) return item.v, id end }),
      { preprocess = function(stream, id, data) return data end }))
    k:answer_pg("INSERT", function(q)
      if q.params[1] == "bad" then return nil, "postgresql error 22P02: invalid input" end
      return { columns = {} }
    end)
    k:feed_many { { "s", "1-1", { v = "a" } }, { "s", "1-2", { v = "bad" } }, { "s", "1-3", { v = "c" } } }
    local sqls = {}
    for _, q in ipairs(k:pg_queries()) do sqls[#sqls + 1] = q.sql end
    assert.same({ "BEGIN", "INSERT INTO t VALUES ($1, $2)", "INSERT INTO t VALUES ($1, $2)", "ROLLBACK" }, sqls)
    assert.same({ "a", "1-1" }, k:pg_queries()[2].params) -- params(item, meta.ids[i])
    assert.truthy(k:logged("postgresql error 22P02: invalid input"))
    assert.same({}, k:acked())
  end)

  it("treats a failed connection as an outage: retried, never dead-lettered", function()
    local k = testing.load(script(rsghost.sink.postgres("dbname=x", { table = "t", columns = { "v" } }),
      { retry = { initial = 1, max = 1, max_attempts = 2 },
        preprocess = function(stream, id, data) return data.v end }))
    k:answer_pg("*", testing.PG_DOWN, 4)
    k:feed_many { { "s", "1-1", { v = "a" } }, { "s", "1-2", { v = "b" } }, { "s", "1-3", { v = "c" } } }
    k:advance(10)
    assert.same({}, k:dead_letters())
    assert.same({ s = { "1-1", "1-2", "1-3" } }, k:acked())
    assert.equal(5, #k:pg_queries())
  end)

  it("dead-letters an item the database rejects on its own (a lasting error)", function()
    local k = testing.load(script(rsghost.sink.postgres("dbname=x", { table = "t", columns = { "v" } }),
      { retry = { initial = 1, max = 1, max_attempts = 1 },
        preprocess = function(stream, id, data) return data.v end }))
    k:answer_pg(function(q)
      for _, p in ipairs(q.params) do if p == "bad" then return true end end
    end, { sqlstate = "22P02", error = "invalid input syntax" })
    k:feed_many { { "s", "1-1", { v = "a" } }, { "s", "1-2", { v = "bad" } }, { "s", "1-3", { v = "c" } } }
    k:drain(60)
    assert.equal(1, #k:dead_letters())
    assert.equal("1-2", k:dead_letters()[1].id)
    assert.same({ s = { "1-1", "1-3" } }, k:acked())
  end)

  it("checks its options when the script loads", function()
    assert.has_error(function() rsghost.sink.postgres("x", {}) end,
      "rsghost.sink.postgres: give either table (with columns) or sql")
    assert.has_error(function() rsghost.sink.postgres("x", { table = "t", sql = "y" }) end,
      "rsghost.sink.postgres: give either table (with columns) or sql")
    assert.has_error(function() rsghost.sink.postgres("x", { table = "t", columns = { 1 } }) end,
      "rsghost.sink.postgres: column 1 must be a non-empty string")
  end)
end)
