-- A tiny HTTP/1.1 server for the integration specs, run as a child process:
--
--   luajit spec/support/http_server.lua PORT DIR
--
-- It listens on 127.0.0.1:PORT, writes DIR/ready once it does, and answers
-- one connection at a time (Connection: close), by the request's path:
--   /ok                     200
--   /status/CODE/N          CODE for the first N requests to this path, then 200
--   /reject/WORD            400 when the body contains WORD, else 200
--   /hold/NAME              holds the answer (200) until the file DIR/NAME
--                           exists (at most 120 s): a server as slow as the
--                           spec wants, without a timing guess
--   anything else           404
-- Every request is appended to DIR/requests as one line
--   <status> <method> <path> <idempotency-key or -> <body length> <body>
-- with the body's line breaks as \n, written just before its answer; and
-- DIR/received gets "<method> <path>" as soon as a request is read (before
-- any hold), so a spec sees what is outstanding.
local socket = require "posix.sys.socket"
local unistd = require "posix.unistd"
local stat = require "posix.sys.stat"
local ptime = require "posix.time"

local port, dir = tonumber(arg[1]), arg[2]
assert(port and dir, "usage: http_server.lua PORT DIR")

local function append(name, line)
  local f = assert(io.open(dir .. "/" .. name, "a"))
  f:write(line, "\n")
  f:close()
end

local function sleep(s)
  ptime.nanosleep { tv_sec = math.floor(s), tv_nsec = math.floor((s % 1) * 1e9) }
end

local fd = assert(socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0))
assert(socket.setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1))
assert(socket.bind(fd, { family = socket.AF_INET, addr = "127.0.0.1", port = port }))
assert(socket.listen(fd, 64))
local f = assert(io.open(dir .. "/ready", "w"))
f:close()

local counts = {} -- path -> requests seen

-- Reads one request: method, path, headers (lower-case names), body; nil on EOF.
local function read_request(c)
  local buf = ""
  while not buf:find("\r\n\r\n", 1, true) do
    local chunk = socket.recv(c, 65536)
    if not chunk or chunk == "" then return nil end
    buf = buf .. chunk
  end
  local head_end = buf:find("\r\n\r\n", 1, true)
  local head, body = buf:sub(1, head_end - 1), buf:sub(head_end + 4)
  local method, path = head:match("^(%u+) (%S+) HTTP/1%.%d")
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do headers[name:lower()] = value end
  local len = tonumber(headers["content-length"] or "0")
  while #body < len do
    local chunk = socket.recv(c, 65536)
    if not chunk or chunk == "" then return nil end
    body = body .. chunk
  end
  return method, path, headers, body
end

local function answer(c, status, body)
  local reason = ({ [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [500] = "Internal Server Error",
    [503] = "Service Unavailable" })[status] or "Status"
  local msg = string.format("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nX-Test: yes\r\n"
    .. "Content-Length: %d\r\nConnection: close\r\n\r\n%s", status, reason, #body, body)
  local sent = 1
  while sent <= #msg do
    local n = socket.send(c, msg:sub(sent))
    if not n then return end
    sent = sent + n
  end
end

while true do
  local c = socket.accept(fd)
  if c then
    local method, path, headers, body = read_request(c)
    if method then
      append("received", method .. " " .. path)
      counts[path] = (counts[path] or 0) + 1
      local status, reply = 404, "no such path"
      local code, times = path:match("^/status/(%d+)/(%d+)$")
      local word = path:match("^/reject/(.+)$")
      local hold = path:match("^/hold/([%w_-]+)$")
      if path == "/ok" then
        status, reply = 200, "fine"
      elseif code then
        if counts[path] <= tonumber(times) then status, reply = tonumber(code), "scripted failure" else
          status, reply = 200, "fine" end
      elseif word then
        if body:find(word, 1, true) then status, reply = 400, "rejected: contains " .. word else
          status, reply = 200, "fine" end
      elseif hold then
        local waited = 0
        while not stat.stat(dir .. "/" .. hold) and waited < 120 do
          sleep(0.02)
          waited = waited + 0.02
        end
        status, reply = 200, "released"
      end
      -- Logged before the answer goes out: a client that has its answer
      -- finds its request in the log.
      append("requests", string.format("%d %s %s %s %d %s", status, method, path,
        headers["idempotency-key"] or "-", #body, (body:gsub("\n", "\\n"))))
      answer(c, status, reply)
    end
    unistd.close(c)
  end
end
