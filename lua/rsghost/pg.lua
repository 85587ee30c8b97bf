-- rsghost.pg: PostgreSQL from a sink (or init, or a timer) without blocking
-- the host's loop. Queries run on the host (libpq's asynchronous API on the
-- libuv loop, host/pg.c) while the sink's coroutine waits, as
-- rsghost.redis.call does; the test kit answers them from its fake or runs
-- them on a real server (rsghost.testing).
--
--   local db = rsghost.pg.connect("host=127.0.0.1 dbname=app user=app")
--   local rows = db:query("SELECT name FROM users WHERE id = $1", 42)
--   rows[1].name, rows.columns, rows.affected
--
-- connect does no I/O: the host connects on the first query and keeps the
-- connection; one lost or refused is connected again on the next query.
-- Queries on one connection run one at a time, in order. Parameters: strings,
-- numbers, booleans, nil (SQL NULL); values come back as text (SQL NULL:
-- absent from the row). A failed query raises "postgresql error SQLSTATE:
-- message" (the SQLSTATE is the server's code, 23505 for a unique
-- violation); a connection that fails raises "connection to postgresql
-- failed: ..." (a sink failing so is retried like a Redis outage).

local rsghost = require "rsghost"

local type, error, tostring, select, format, floor = type, error, tostring, select, string.format, math.floor
local setmetatable = setmetatable

local M = {}

local Conn = {}
Conn.__index = Conn

function M.connect(conninfo)
  if type(conninfo) ~= "string" then
    error("rsghost.pg.connect: conninfo must be a string (\"host=... dbname=...\" or a postgresql:// URL)", 2)
  end
  -- One host connection per host (the kit may run several pipelines).
  return setmetatable({ conninfo = conninfo, ids = setmetatable({}, { __mode = "k" }) }, Conn)
end

-- A parameter as the text PostgreSQL parses; nil for SQL NULL; or false, why.
local function param(v)
  local t = type(v)
  if t == "string" or v == nil then return v end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return false, "is not a finite number" end
    if v == floor(v) and v > -2^53 and v < 2^53 then return format("%d", v) end
    return format("%.17g", v)
  end
  if t == "boolean" then return v and "true" or "false" end
  return false, "must be a string, number, boolean or nil, got " .. t
end
M._param = param

-- Runs sql with params[1..n] (converted already); rows, or nil and the error.
function Conn:_run(sql, params, n, level)
  -- The host's connection for this object, opened (no I/O yet) on first use
  -- in a task: state.host is the host of the task running now.
  local host = rsghost._state.host
  local id = host and self.ids[host]
  if host and id == nil and host.pg_open and rsghost._state.task then
    id = host.pg_open(self.conninfo)
    self.ids[host] = id
  end
  return rsghost._await("rsghost.pg query", "pg_query", { id = id, sql = sql, params = params, n = n }, level + 1)
end

-- Checks and converts the query's parameters; raises at level.
local function params_of(level, ...)
  local n = select("#", ...)
  local params = { ... }
  for i = 1, n do
    local v, why = param(params[i])
    if v == false then error(format("rsghost.pg query: parameter $%d %s", i, why), level + 1) end
    params[i] = v
  end
  return params, n
end

-- db:query(sql, ...): the rows; raises on an error.
function Conn:query(sql, ...)
  if type(sql) ~= "string" then error("rsghost.pg query: sql must be a string", 2) end
  local params, n = params_of(2, ...)
  local rows, err = self:_run(sql, params, n, 2)
  if err ~= nil then error(err, 2) end
  return rows
end

-- db:pquery(sql, ...): the rows, or nil and the error.
function Conn:pquery(sql, ...)
  if type(sql) ~= "string" then error("rsghost.pg query: sql must be a string", 2) end
  local params, n = params_of(2, ...)
  return self:_run(sql, params, n, 2)
end

return M
