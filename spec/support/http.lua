-- The test HTTP server (spec/support/http_server.lua) as a child process:
--
--   local http = require "support.http"
--   local s = http.start()          -- s.url = "http://127.0.0.1:PORT"
--   s.requests()                    -- answered requests, in order:
--                                   -- { status, method, path, key, body }
--   s.received()                    -- "METHOD /path" read so far (held too)
--   s.release("name")               -- lets /hold/name answer
--   s.stop()
local proc = require "support.proc"
local server = require "support.server"

local M = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function lines(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

function M.start()
  local dir = server.tmpdir("http")
  local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
  for _ = 1, 5 do
    local port = server.free_port()
    local p = proc.spawn { argv = { "luajit", here .. "/http_server.lua", tostring(port), dir },
      stdout = dir .. "/out", stderr = dir .. "/err" }
    local deadline = proc.now() + 10
    while proc.now() < deadline and p:alive() and not exists(dir .. "/ready") do proc.sleep(0.02) end
    if p:alive() and exists(dir .. "/ready") then
      local s = { url = "http://127.0.0.1:" .. port, dir = dir, proc = p }
      function s.requests()
        local out = {}
        for _, line in ipairs(lines(dir .. "/requests")) do
          local status, method, path, key, _, body = line:match("^(%d+) (%S+) (%S+) (%S+) (%d+) ?(.*)$")
          out[#out + 1] = { status = tonumber(status), method = method, path = path,
            key = key ~= "-" and key or nil, body = (body:gsub("\\n", "\n")) }
        end
        return out
      end
      function s.received() return lines(dir .. "/received") end
      function s.release(name)
        local f = assert(io.open(dir .. "/" .. name, "w"))
        f:close()
      end
      function s.stop()
        if p:alive() then p:kill() end
        server.rmtree(dir)
      end
      return s
    end
    if p:alive() then p:kill() end
  end
  error("support.http: the test HTTP server did not start (see " .. dir .. "/err)")
end

return M
