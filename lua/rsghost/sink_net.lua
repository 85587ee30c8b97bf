-- rsghost.sink.http and rsghost.sink.postgres: ready sinks for the two
-- non-Redis servers the host talks to without blocking (rsghost.http,
-- rsghost.pg). Like the Redis sinks, a failure raises an error naming the
-- sink and the script line that created it, so retries, bisection and dead
-- letters apply (an unreachable server is retried like a Redis outage: see
-- TRANSIENT in pipeline.lua).
--
-- meta (the sink's second argument, { ids = { ... }, streams = { ... } }
-- for items[i]) gives the HTTP sink its Idempotency-Key and the PostgreSQL
-- sink its id column; a sink called without it (from a function of one's
-- own) still works, with what is documented for that case.

local cjson_ok, cjson = pcall(require, "cjson")

local type, pairs, ipairs, error, tostring, format, concat = type, pairs, ipairs, error, tostring, string.format,
  table.concat
local pcall, select = pcall, select

local M = {}

-- An HTTP answer body for an error line: short and on one line.
local function snippet(body)
  if type(body) ~= "string" or body == "" then return "" end
  body = body:gsub("[\r\n]+", " ")
  if #body > 200 then body = body:sub(1, 200) .. "..." end
  return ": " .. body
end

-- The Idempotency-Key of a batch: the first message's stream and id, the
-- last id and the count. A retry of the batch sends the same key; a part of
-- it (after bisection) a different one, as its body differs.
local function idempotency_key(meta, n)
  if type(meta) ~= "table" or type(meta.ids) ~= "table" or n == 0 then return nil end
  local first, last = meta.ids[1], meta.ids[n]
  if first == nil or last == nil then return nil end
  local stream = type(meta.streams) == "table" and meta.streams[1] or ""
  return format("%s/%s/%s/%d", tostring(stream), tostring(first), tostring(last), n)
end
M._idempotency_key = idempotency_key

local function default_encode(items)
  if not cjson_ok then error("rsghost.sink.http: cjson is missing; give an encode function", 0) end
  -- An empty table encodes as {} in cjson: a batch is never empty, but say so.
  return cjson.encode(items)
end

local function default_ok(status) return status >= 200 and status < 300 end

-- rsghost.sink.http(url, { method, headers, encode, ok, timeout,
-- idempotency_key }): the batch in one request. encode(items, meta) makes
-- the body (default: a JSON array of the items, Content-Type
-- application/json); ok(status, body, headers) says whether the answer is a
-- success (default: 2xx). With meta, an Idempotency-Key header names the
-- batch (idempotency_key = false leaves it out).
local function http_sink(created_at, check_opts)
  return function(url, opts)
    local name = format("rsghost.sink.http(%q)", tostring(url))
    if type(url) ~= "string" or not url:match("^[hH][tT][tT][pP][sS]?://") then
      error("rsghost.sink.http: url must be an http:// or https:// URL", 2)
    end
    opts = check_opts("rsghost.sink.http", opts,
      { method = true, headers = true, encode = true, ok = true, timeout = true, idempotency_key = true })
    local method = opts.method or "POST"
    if type(method) ~= "string" or not method:match("^%a+$") then
      error("rsghost.sink.http: method must be a word like \"POST\"", 2)
    end
    for _, k in ipairs { "encode", "ok" } do
      if opts[k] ~= nil and type(opts[k]) ~= "function" then
        error(format("rsghost.sink.http: %s must be a function", k), 2)
      end
    end
    if opts.headers ~= nil and type(opts.headers) ~= "table" then
      error("rsghost.sink.http: headers must be a table { name = value }", 2)
    end
    if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
      error("rsghost.sink.http: timeout must be a number of seconds > 0", 2)
    end
    local encode, ok = opts.encode or default_encode, opts.ok or default_ok
    local base = {}
    for k, v in pairs(opts.headers or {}) do base[k] = v end
    if not opts.encode then
      local has_type = false
      for k in pairs(base) do if k:lower() == "content-type" then has_type = true end end
      if not has_type then base["Content-Type"] = "application/json" end
    end
    local with_key = opts.idempotency_key ~= false
    local timeout = opts.timeout
    local where = created_at()
    local send = require("rsghost.http")._send
    return function(items, meta)
      local n = #items
      local good, body = pcall(encode, items, meta)
      if not good then error(format("%s: %s: encode failed: %s", where, name, tostring(body)), 0) end
      if type(body) ~= "string" then
        error(format("%s: %s: encode must return a string, got %s", where, name, type(body)), 0)
      end
      local headers = base
      local key = with_key and idempotency_key(meta, n)
      if key then
        headers = {}
        for k, v in pairs(base) do headers[k] = v end
        headers["Idempotency-Key"] = key
      end
      local res, err = send(name, method, url, { headers = headers, body = body, timeout = timeout })
      if err ~= nil then error(format("%s: %s: %s", where, name, err), 0) end
      local fine, verdict = pcall(ok, res.status, res.body, res.headers)
      if not fine then error(format("%s: %s: ok failed: %s", where, name, tostring(verdict)), 0) end
      if not verdict then
        error(format("%s: %s: HTTP %d%s", where, name, res.status, snippet(res.body)), 0)
      end
      return res.status
    end
  end
end

-- "name" or "schema.name" as a quoted SQL identifier.
local function ident(s)
  local parts = {}
  for part in (s .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = '"' .. part:gsub('"', '""') .. '"' end
  return concat(parts, ".")
end

-- One value of an item for a parameter: tables become JSON (json/jsonb
-- columns), the rest as rsghost.pg converts them. Returns v, or false, why.
local function value(pg, v)
  if type(v) == "table" then
    if not cjson_ok then return false, "is a table and cjson is missing" end
    return cjson.encode(v)
  end
  return pg._param(v)
end

-- PostgreSQL takes at most 65535 parameters per statement.
local MAX_PARAMS = 65535

-- rsghost.sink.postgres(conninfo, { table, columns, id } or { sql, params }):
-- the whole batch in one transaction.
--   table, columns  one multi-row INSERT INTO table (columns..., id) per
--                   batch; a table item gives item[column] for each column, any
--                   other item is the value of the only column. id: a column
--                   that gets each item's message id (meta.ids[i]; without
--                   meta, item[id]) with ON CONFLICT (id) DO NOTHING, so a
--                   batch written again after a crash adds no row twice.
--   sql, params     sql run once per item inside BEGIN ... COMMIT, its
--                   parameters params(item, id, stream) (id and stream from
--                   meta, nil without), or the item itself when it is an array.
local function postgres_sink(created_at, check_opts)
  return function(conninfo, opts)
    local name = "rsghost.sink.postgres"
    if type(conninfo) ~= "string" then error(name .. ": conninfo must be a string", 2) end
    opts = check_opts(name, opts, { table = true, columns = true, id = true, sql = true, params = true })
    local tbl, columns, id_col, sql, params_fn = opts.table, opts.columns, opts.id, opts.sql, opts.params
    if (tbl == nil) == (sql == nil) then
      error(name .. ": give either table (with columns) or sql", 2)
    end
    if tbl ~= nil then
      if type(tbl) ~= "string" or tbl == "" then error(name .. ": table must be a non-empty string", 2) end
      if type(columns) ~= "table" or (#columns == 0 and id_col == nil) then
        error(name .. ": columns must be an array of column names", 2)
      end
      for i, c in ipairs(columns) do
        if type(c) ~= "string" or c == "" then error(format("%s: column %d must be a non-empty string", name, i), 2) end
      end
      if id_col ~= nil and (type(id_col) ~= "string" or id_col == "") then
        error(name .. ": id must be a column name", 2)
      end
      if params_fn ~= nil then error(name .. ": params goes with sql, not with table", 2) end
    else
      if type(sql) ~= "string" then error(name .. ": sql must be a string", 2) end
      if columns ~= nil or id_col ~= nil then error(name .. ": columns and id go with table, not with sql", 2) end
      if params_fn ~= nil and type(params_fn) ~= "function" then error(name .. ": params must be a function", 2) end
    end
    local where = created_at()
    local pg = require "rsghost.pg"
    local db = pg.connect(conninfo)
    local label = format("%s(%s)", name, tbl and format("%q", tbl) or "sql")
    local function fail(msg) error(format("%s: %s: %s", where, label, msg), 0) end

    -- Runs sql; on an error rolls back an open transaction, then raises.
    local function run(q, params, n, in_tx)
      local rows, err = db:_run(q, params, n, 1)
      if err ~= nil then
        if in_tx then db:_run("ROLLBACK", {}, 0, 1) end
        fail(err)
      end
      return rows
    end

    if tbl then
      local ncols = #columns + (id_col and 1 or 0)
      local names = {}
      for i, c in ipairs(columns) do names[i] = ident(c) end
      if id_col then names[#names + 1] = ident(id_col) end
      local head = format("INSERT INTO %s (%s) VALUES ", ident(tbl), concat(names, ", "))
      local tail = id_col and format(" ON CONFLICT (%s) DO NOTHING", ident(id_col)) or ""
      local per = math.floor(MAX_PARAMS / ncols)
      local single = #columns == 1 and columns[1]
      local ncolumns = #columns
      -- The statement for m rows, built once per m: batches mostly have the
      -- same size, and building 1000 rows of placeholders per batch costs
      -- more than the rest of the sink's Lua.
      local sql_for, nsql = {}, 0
      local function statement(m)
        local q = sql_for[m]
        if q then return q end
        local rows, k = {}, 0
        for r = 1, m do
          local marks = {}
          for j = 1, ncols do
            k = k + 1
            marks[j] = "$" .. k
          end
          rows[r] = "(" .. concat(marks, ", ") .. ")"
        end
        q = head .. concat(rows, ", ") .. tail
        if nsql >= 16 then sql_for, nsql = {}, 0 end
        sql_for[m], nsql = q, nsql + 1
        return q
      end
      return function(items, meta)
        local n = #items
        local ids = type(meta) == "table" and meta.ids or nil
        -- Statements of at most `per` rows; more than one share a transaction.
        local stmts = {}
        for first = 1, n, per do
          local last = math.min(n, first + per - 1)
          local params, k = {}, 0
          for i = first, last do
            local item = items[i]
            local is_table = type(item) == "table"
            if not is_table and not single then
              fail(format("item %d is a %s; with several columns items must be tables", i, type(item)))
            end
            for j = 1, ncolumns do
              local v
              if is_table then v = item[columns[j]] else v = item end
              local p, why = value(pg, v)
              if p == false then fail(format("item %d column %s %s", i, columns[j], why)) end
              k = k + 1
              params[k] = p
            end
            if id_col then
              local id = ids and ids[i]
              if id == nil and is_table then id = item[id_col] end
              if id == nil then
                fail(format("item %d has no message id for column %s (no meta from the host, and no "
                  .. "field %s in the item)", i, id_col, id_col))
              end
              k = k + 1
              params[k] = tostring(id)
            end
          end
          stmts[#stmts + 1] = { statement(last - first + 1), params, k }
        end
        if #stmts == 1 then
          run(stmts[1][1], stmts[1][2], stmts[1][3], false)
        else
          run("BEGIN", {}, 0, false)
          for _, st in ipairs(stmts) do run(st[1], st[2], st[3], true) end
          run("COMMIT", {}, 0, true)
        end
      end
    end

    return function(items, meta)
      local n = #items
      local ids = type(meta) == "table" and meta.ids or nil
      local streams = type(meta) == "table" and meta.streams or nil
      -- Everything checked before BEGIN: a bad item fails the batch with
      -- nothing sent.
      local all = {}
      for i = 1, n do
        local item = items[i]
        local list
        if params_fn then
          local good, res = pcall(function() return { params_fn(item, ids and ids[i], streams and streams[i]) } end)
          if not good then fail(format("params failed on item %d: %s", i, tostring(res))) end
          list = res
        elseif type(item) == "table" then
          list = item
        else
          list = { item }
        end
        local params, np = {}, table.maxn(list)
        for j = 1, np do
          local p, why = value(pg, list[j])
          if p == false then fail(format("item %d parameter $%d %s", i, j, why)) end
          params[j] = p
        end
        all[i] = { params, np }
      end
      run("BEGIN", {}, 0, false)
      for i = 1, n do run(sql, all[i][1], all[i][2], true) end
      run("COMMIT", {}, 0, true)
    end
  end
end

-- Adds the sinks to rsghost.sink (M), with its helpers.
function M.install(sink, created_at, check_opts)
  sink.http = http_sink(created_at, check_opts)
  sink.postgres = postgres_sink(created_at, check_opts)
end

return M
