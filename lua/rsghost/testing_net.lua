-- The test kit's HTTP and PostgreSQL (rsghost.testing): what the kit's host
-- table answers for rsghost.http and rsghost.pg, faked (the default: every
-- request and query recorded, answers and failures scripted) or real
-- (opts.http = "real", opts.pg = "real": sent with libcurl and run with libpq
-- through the FFI, synchronously: the kit has no event loop, and a blocking
-- call is fine in a test).
--
-- Fakes answer synchronously, like the kit's Redis; the host's errors are
-- reproduced word for word, so a spec sees what the pipeline would do with
-- the host (an unreachable server is an outage, retried for ever).

local ffi_ok, ffi = pcall(require, "ffi")

local type, pairs, ipairs, tostring, error, format = type, pairs, ipairs, tostring, error, string.format

local M = {}

-- The host's errors (host/lua_bridge.c, host/pg.c), for scripted failures.
M.HTTP_UNREACHABLE = "cannot connect to the http server: Failed to connect (faked by rsghost.testing)"
M.PG_DOWN = "connection to postgresql failed: server down (faked by rsghost.testing)"

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

-- A rule's match: "*", a string found (plain) in the subject, or a function.
local function matcher(match, what)
  if match == "*" then return function() return true end end
  if type(match) == "string" then
    return function(_, subject) return subject:find(match, 1, true) ~= nil end
  end
  if type(match) == "function" then return function(x) return match(x) end end
  error(format("%s: match must be \"*\", a string or a function", what), 3)
end

-- The first rule that matches x (its times counted down), or nil.
local function take(rules, x, subject)
  for i, rule in ipairs(rules) do
    if rule.match(x, subject) then
      if rule.times then
        rule.times = rule.times - 1
        if rule.times <= 0 then table.remove(rules, i) end
      end
      return rule
    end
  end
  return nil
end

----------------------------------------------------------------------------
-- Real HTTP: libcurl's easy interface

local curl
local function load_curl()
  if curl then return curl end
  if not ffi_ok then error("rsghost.testing: http = \"real\" needs LuaJIT's FFI", 0) end
  ffi.cdef [[
    typedef void CURL;
    struct curl_slist;
    CURL *curl_easy_init(void);
    int curl_easy_setopt(CURL *curl, int option, ...);
    int curl_easy_perform(CURL *curl);
    int curl_easy_getinfo(CURL *curl, int info, ...);
    void curl_easy_cleanup(CURL *curl);
    const char *curl_easy_strerror(int code);
    struct curl_slist *curl_slist_append(struct curl_slist *list, const char *s);
    void curl_slist_free_all(struct curl_slist *list);
    typedef size_t (*rsghost_curl_write)(char *p, size_t size, size_t n, void *ud);
  ]]
  curl = ffi.load("libcurl.so.4")
  return curl
end

local CURLOPT = { URL = 10002, WRITEFUNCTION = 20011, HEADERFUNCTION = 20079, HTTPHEADER = 10023,
  POSTFIELDSIZE = 60, COPYPOSTFIELDS = 10165, CUSTOMREQUEST = 10036, TIMEOUT_MS = 155, NOBODY = 44,
  NOSIGNAL = 99 }
local CURLINFO_RESPONSE_CODE = 0x200002
local UNREACHABLE = { [6] = true, [5] = true, [7] = true } -- resolve host/proxy, connect

local function real_http(req)
  local c = load_curl()
  local e = c.curl_easy_init()
  local body, head = {}, {}
  local wcb = ffi.cast("rsghost_curl_write", function(p, size, n)
    body[#body + 1] = ffi.string(p, size * n)
    return size * n
  end)
  local hcb = ffi.cast("rsghost_curl_write", function(p, size, n)
    local line = ffi.string(p, size * n)
    if line:sub(1, 5) == "HTTP/" then head = {} end
    head[#head + 1] = line
    return size * n
  end)
  local list = c.curl_slist_append(nil, "Expect:")
  for _, h in ipairs(req.headers) do list = c.curl_slist_append(list, h) end
  c.curl_easy_setopt(e, CURLOPT.URL, req.url)
  c.curl_easy_setopt(e, CURLOPT.NOSIGNAL, ffi.new("long", 1))
  c.curl_easy_setopt(e, CURLOPT.WRITEFUNCTION, wcb)
  c.curl_easy_setopt(e, CURLOPT.HEADERFUNCTION, hcb)
  c.curl_easy_setopt(e, CURLOPT.HTTPHEADER, list)
  if req.body then
    c.curl_easy_setopt(e, CURLOPT.POSTFIELDSIZE, ffi.new("long", #req.body))
    c.curl_easy_setopt(e, CURLOPT.COPYPOSTFIELDS, req.body)
  end
  if req.method == "HEAD" then
    c.curl_easy_setopt(e, CURLOPT.NOBODY, ffi.new("long", 1))
  elseif req.method ~= "GET" or req.body then
    c.curl_easy_setopt(e, CURLOPT.CUSTOMREQUEST, req.method)
  end
  if req.timeout then c.curl_easy_setopt(e, CURLOPT.TIMEOUT_MS, ffi.new("long", math.floor(req.timeout * 1000 + 0.5))) end
  local rc = c.curl_easy_perform(e)
  local status = ffi.new("long[1]")
  c.curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status)
  c.curl_easy_cleanup(e)
  c.curl_slist_free_all(list)
  wcb:free()
  hcb:free()
  if rc ~= 0 then
    local why = ffi.string(c.curl_easy_strerror(rc))
    return nil, (UNREACHABLE[rc] and "cannot connect to the http server: " or "http request failed: ") .. why
  end
  local headers = {}
  for _, line in ipairs(head) do
    local name, value = line:match("^([^:\r\n]+):[ \t]*(.-)[ \t\r\n]*$")
    if name then
      name = name:lower()
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
    end
  end
  return { status = tonumber(status[0]), body = table.concat(body), headers = headers }
end

----------------------------------------------------------------------------
-- Real PostgreSQL: libpq, synchronously

local pq
local function load_pq()
  if pq then return pq end
  if not ffi_ok then error("rsghost.testing: pg = \"real\" needs LuaJIT's FFI", 0) end
  ffi.cdef [[
    typedef void PGconn;
    typedef void PGresult;
    PGconn *PQconnectdb(const char *conninfo);
    int PQstatus(const PGconn *conn);
    char *PQerrorMessage(const PGconn *conn);
    void PQfinish(PGconn *conn);
    PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const unsigned int *paramTypes,
                           const char *const *paramValues, const int *paramLengths, const int *paramFormats,
                           int resultFormat);
    int PQresultStatus(const PGresult *res);
    char *PQresultErrorField(const PGresult *res, int fieldcode);
    char *PQresultErrorMessage(const PGresult *res);
    int PQntuples(const PGresult *res);
    int PQnfields(const PGresult *res);
    char *PQfname(const PGresult *res, int field_num);
    char *PQgetvalue(const PGresult *res, int tup_num, int field_num);
    int PQgetlength(const PGresult *res, int tup_num, int field_num);
    int PQgetisnull(const PGresult *res, int tup_num, int field_num);
    char *PQcmdTuples(PGresult *res);
    void PQclear(PGresult *res);
  ]]
  pq = ffi.load("libpq.so.5")
  return pq
end

local function trim(s) return (s:gsub("[%s]+$", "")) end

-- Runs one query on a real connection (connecting as needed), as host/pg.c
-- does: rows, or nil and the host's error text.
local function real_pg(conn, sql, params, n)
  local c = load_pq()
  if conn.pg == nil or c.PQstatus(conn.pg) ~= 0 then
    if conn.pg ~= nil then c.PQfinish(conn.pg) end
    conn.pg = c.PQconnectdb(conn.conninfo)
    if c.PQstatus(conn.pg) ~= 0 then
      local why = trim(ffi.string(c.PQerrorMessage(conn.pg)))
      c.PQfinish(conn.pg)
      conn.pg = nil
      return nil, "connection to postgresql failed: " .. why
    end
  end
  local values = ffi.new("const char *[?]", n + 1)
  local lens = ffi.new("int[?]", n + 1)
  for i = 1, n do
    local v = params[i]
    if v ~= nil then values[i - 1], lens[i - 1] = v, #v end
  end
  local res = c.PQexecParams(conn.pg, sql, n, nil, values, lens, nil, 0)
  if res == nil then
    local why = trim(ffi.string(c.PQerrorMessage(conn.pg)))
    return nil, "connection to postgresql lost: " .. why
  end
  local st = c.PQresultStatus(res)
  if st == 7 then
    local state = c.PQresultErrorField(res, 67)
    local msg = c.PQresultErrorField(res, 77)
    local text = msg ~= nil and ffi.string(msg) or trim(ffi.string(c.PQresultErrorMessage(res)))
    c.PQclear(res)
    if state == nil then
      if c.PQstatus(conn.pg) ~= 0 then return nil, "connection to postgresql lost: " .. text end
      return nil, text
    end
    return nil, format("postgresql error %s: %s", ffi.string(state), text)
  end
  if st ~= 1 and st ~= 2 and st ~= 0 then
    c.PQclear(res)
    return nil, "unsupported result from postgresql: COPY and other streaming statements cannot be run through rsghost.pg"
  end
  local rows = {}
  local nrows, ncols = c.PQntuples(res), c.PQnfields(res)
  local columns = {}
  for j = 0, ncols - 1 do columns[j + 1] = ffi.string(c.PQfname(res, j)) end
  for r = 0, nrows - 1 do
    local row = {}
    for j = 0, ncols - 1 do
      if c.PQgetisnull(res, r, j) == 0 then
        row[columns[j + 1]] = ffi.string(c.PQgetvalue(res, r, j), c.PQgetlength(res, r, j))
      end
    end
    rows[r + 1] = row
  end
  rows.columns = columns
  local affected = ffi.string(c.PQcmdTuples(res))
  if affected ~= "" then rows.affected = tonumber(affected) end
  c.PQclear(res)
  return rows
end

----------------------------------------------------------------------------
-- The kit's side

local Net = {}
Net.__index = Net

-- opts.http, opts.pg: nil (fake) or "real".
function M.new(opts)
  for _, k in ipairs { "http", "pg" } do
    local v = opts[k]
    if v ~= nil and v ~= "real" and v ~= "fake" then
      error(format("rsghost.testing.load: %s must be \"fake\" (default) or \"real\", got %s", k, tostring(v)), 3)
    end
  end
  return setmetatable({
    real_http = opts.http == "real",
    real_pg = opts.pg == "real",
    requests = {}, http_rules = {},
    queries = {}, pg_rules = {},
    conns = {}, -- id -> { conninfo, pg (real) }
  }, Net)
end

-- host.http(req, cb)
function Net:http(req, cb)
  local headers = {}
  for _, line in ipairs(req.headers or {}) do
    local name, value = line:match("^([^:]+): ?(.*)$")
    if name and value ~= "" then headers[name] = value end
  end
  local rec = { method = req.method, url = req.url, headers = headers, body = req.body, timeout = req.timeout }
  self.requests[#self.requests + 1] = rec
  local rule = take(self.http_rules, copy(rec), req.url)
  if rule == nil then
    if self.real_http then return cb(real_http(req)) end
    return cb({ status = 200, body = "", headers = {} })
  end
  local answer = rule.answer
  if type(answer) == "function" then
    local a, err = answer(copy(rec))
    if a == nil then return cb(nil, err or M.HTTP_UNREACHABLE) end
    answer = a
  end
  if type(answer) == "string" then return cb(nil, answer) end
  if type(answer) == "number" then answer = { status = answer } end
  local h = {}
  for k, v in pairs(answer.headers or {}) do h[k:lower()] = v end
  cb({ status = answer.status or 200, body = answer.body or "", headers = h })
end

function Net:pg_open(conninfo)
  self.conns[#self.conns + 1] = { conninfo = conninfo }
  return #self.conns
end

-- host.pg_query({ id, sql, params, n }, cb)
function Net:pg_query(req, cb)
  local sql, params, n = req.sql, req.params, req.n
  local conn = self.conns[req.id]
  local p = {}
  for i = 1, n do p[i] = params[i] end
  local rec = { conninfo = conn.conninfo, sql = sql, params = p, n = n }
  self.queries[#self.queries + 1] = rec
  local rule = take(self.pg_rules, { conninfo = rec.conninfo, sql = sql, params = copy(p), n = n }, sql)
  if rule == nil then
    if self.real_pg then return cb(real_pg(conn, sql, params, n)) end
    return cb({ columns = {} })
  end
  local answer = rule.answer
  if type(answer) == "function" then
    local rows, err = answer({ conninfo = rec.conninfo, sql = sql, params = copy(p), n = n })
    if rows == nil then return cb(nil, err or M.PG_DOWN) end
    answer = rows
  end
  if type(answer) == "string" then return cb(nil, answer) end
  if answer.sqlstate or answer.error then
    return cb(nil, format("postgresql error %s: %s", answer.sqlstate or "XX000", answer.error or "error"))
  end
  local rows = copy(answer)
  rows.columns = rows.columns or {}
  cb(rows)
end

function Net:answer_http(match, answer, times)
  self.http_rules[#self.http_rules + 1] = { match = matcher(match, "k:answer_http"), answer = answer, times = times }
end

function Net:answer_pg(match, answer, times)
  self.pg_rules[#self.pg_rules + 1] = { match = matcher(match, "k:answer_pg"), answer = answer, times = times }
end

function Net:close()
  if pq then
    for _, c in ipairs(self.conns) do
      if c.pg ~= nil then pq.PQfinish(c.pg) end
      c.pg = nil
    end
  end
end

return M
