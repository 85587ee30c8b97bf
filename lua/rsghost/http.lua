-- rsghost.http: HTTP requests from a sink (or init, or a timer) that never
-- block the host's loop. The request runs on the host (libcurl's
-- multi-socket interface on the libuv loop, host/http_client.c) while the
-- sink's coroutine waits, as rsghost.redis.call does; the test kit answers
-- it from its fake or sends it for real (rsghost.testing).
--
--   local status, body, headers = rsghost.http.request("POST", url, {
--     headers = { ["Content-Type"] = "application/json" },
--     body = cjson.encode(items),
--     timeout = 10,                      -- seconds, whole request (default 60)
--   })
--
-- Returns the answer whatever its status (headers: lower-case names); raises
-- when no answer came (refused, timed out, TLS failed). https:// verifies the
-- server against the system's CA store.

local rsghost = require "rsghost"

local type, pairs, error, tostring, format = type, pairs, error, tostring, string.format
local sort = table.sort

local M = {}

M.DEFAULT_TIMEOUT = 60

-- { name = value } as sorted "Name: value" lines (sorted: the same request
-- gives the same bytes, in the host and in the kit's records).
local function header_lines(name, headers)
  local lines = {}
  if headers == nil then return lines end
  if type(headers) ~= "table" then
    error(format("%s: headers must be a table { name = value }, got %s", name, type(headers)), 4)
  end
  for k, v in pairs(headers) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
      error(format("%s: header %s must be a string name with a string value", name, tostring(k)), 4)
    end
    if k:find("[\r\n:]") or tostring(v):find("[\r\n]") then
      error(format("%s: header %q has a line break or colon in it", name, k), 4)
    end
    lines[#lines + 1] = k .. ": " .. tostring(v)
  end
  sort(lines)
  return lines
end

-- The request table the host's http op takes, checked. Raises (at level 3:
-- the caller of request/prequest) on bad arguments.
local function build(name, method, url, opts)
  if type(method) ~= "string" or not method:match("^%a+$") then
    error(format("%s: method must be a word like \"POST\", got %s", name, tostring(method)), 3)
  end
  if type(url) ~= "string" or not url:match("^[hH][tT][tT][pP][sS]?://") then
    error(format("%s: url must be an http:// or https:// URL, got %s", name, tostring(url)), 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(format("%s: options must be a table, got %s", name, type(opts)), 3)
  end
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "headers" and k ~= "body" and k ~= "timeout" then
      error(format("%s: unknown option %q", name, tostring(k)), 3)
    end
  end
  local body, timeout = opts.body, opts.timeout
  if body ~= nil and type(body) ~= "string" then
    error(format("%s: body must be a string, got %s", name, type(body)), 3)
  end
  if timeout == nil then timeout = M.DEFAULT_TIMEOUT end
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
    error(format("%s: timeout must be a number of seconds > 0", name), 3)
  end
  return { method = method:upper(), url = url, headers = header_lines(name, opts.headers), body = body,
    timeout = timeout }
end

-- The waiting, errors returned: the answer { status, body, headers }, or
-- nil and why none came.
local function send(name, req, level)
  return rsghost._await(name, "http", req, level + 1)
end

function M.request(method, url, opts)
  local req = build("rsghost.http.request", method, url, opts)
  local res, err = send("rsghost.http.request", req, 2)
  if err ~= nil then error(err, 2) end
  return res.status, res.body, res.headers
end

-- For rsghost.sink.http: the request's answer, or nil and the error (bad
-- arguments raise as with request).
function M._send(name, method, url, opts)
  local req = build(name, method, url, opts)
  return send(name, req, 3)
end

return M
