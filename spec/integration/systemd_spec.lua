-- Type=notify: rsghost speaks systemd's notification protocol (a datagram
-- per message to $NOTIFY_SOCKET) without libsystemd. The spec plays
-- systemd: a datagram socket of its own as NOTIFY_SOCKET, WATCHDOG_USEC set.
local H = require "support.host"
local server = require "support.server" -- declares socket() and bind()
require "support.proc" -- declares poll() and close()
local ffi = require "ffi"

ffi.cdef [[
struct rsghost_sockaddr_un { uint16_t sun_family; char sun_path[108]; };
struct rsghost_notify_pollfd { int fd; short events; short revents; };
long recv(int fd, void *buf, unsigned long len, int flags);
]]
local C = ffi.C
local AF_UNIX, SOCK_DGRAM, POLLIN = 1, 2, 1

-- A notification socket bound at path (a file, or "@name": an abstract
-- name, whose address is exactly its bytes, as systemd binds it; so the
-- FFI here rather than lua-posix, which pads abstract names with NULs).
local function listen(path)
  local fd = C.socket(AF_UNIX, SOCK_DGRAM, 0)
  assert(fd >= 0, "socket")
  local addr = ffi.new("struct rsghost_sockaddr_un")
  addr.sun_family = AF_UNIX
  local abstract = path:sub(1, 1) == "@"
  ffi.copy(addr.sun_path, abstract and "\0" .. path:sub(2) or path, #path)
  local len = 2 + #path + (abstract and 0 or 1)
  assert(C.bind(fd, ffi.cast("const struct rsghost_sockaddr_in *", addr), len) == 0,
    "bind " .. path)
  local self = { fd = fd, seen = {} }
  local pfd = ffi.new("struct rsghost_notify_pollfd[1]")
  local buf = ffi.new("char[4096]")
  -- The next datagram within timeout seconds, or nil.
  function self.next(timeout)
    pfd[0].fd, pfd[0].events = fd, POLLIN
    if C.poll(pfd, 1, math.floor(timeout * 1000)) ~= 1 then return nil end
    local n = C.recv(fd, buf, 4096, 0)
    if n < 0 then return nil end
    local msg = ffi.string(buf, n)
    self.seen[#self.seen + 1] = msg
    return msg
  end
  -- Waits for a datagram holding line (a whole line of it); returns it.
  function self.expect(line, timeout)
    local deadline = os.time() + (timeout or 30) * H.scale
    while os.time() <= deadline do
      local msg = self.next(1)
      if msg then
        for l in msg:gmatch("[^\n]+") do
          if l == line then return msg end
        end
      end
    end
    error("no " .. line .. " from rsghost; it sent: " .. table.concat(self.seen, " | "), 2)
  end
  function self.close() C.close(fd) end
  return self
end

-- preprocess spins for ever on a message with field stuck (a script bug
-- systemd's watchdog exists for).
local SCRIPT = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data)
    if data.stuck then
      rsghost.log.info("stuck on", id)
      while true do end
    end
    return id
  end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items) rsghost.redis.call("RPUSH", P .. ":out", unpack(items)) end,
}
]]

describe("systemd notification", function()
  local sockets = {}
  after_each(function()
    H.cleanup()
    for _, s in ipairs(sockets) do s.close() end
    sockets = {}
  end)
  local function socket(path)
    local s = listen(path)
    sockets[#sockets + 1] = s
    return s
  end

  it("sends READY=1 once reading, WATCHDOG=1 repeatedly, a STATUS= line, STOPPING=1 on stop", function()
    local t = H.context()
    local P = t.prefix
    local path = server.tmpdir("notify") .. "/notify.sock"
    local sd = socket(path)
    local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1",
      env = { NOTIFY_SOCKET = path, WATCHDOG_USEC = "400000" } })
    local ready = sd.expect("READY=1")
    assert.matches("\nSTATUS=reading; 0 acked, 0 in flight", ready, 1, true)
    for _ = 1, 3 do sd.expect("WATCHDOG=1") end
    H.xadd_many(t.redis, P .. ":s", 30)
    H.eventually(function() return #H.list(t.redis, P .. ":out") == 30 end, 30,
      function() return h:describe() end)
    -- STATUS= is refreshed every few seconds with the counts.
    local status = H.eventually(function()
      local msg = sd.next(1)
      return msg and msg:match("^STATUS=reading; 30 acked, 0 in flight$")
    end, 30, function() return table.concat(sd.seen, " | ") end)
    assert.is_string(status)
    h:signal("TERM")
    local stopping = sd.expect("STOPPING=1")
    assert.matches("STATUS=stopping", stopping, 1, true)
    assert.equal(0, h:wait(), h:describe())
  end)

  it("stops the WATCHDOG=1 pings while a script is stuck in an endless loop", function()
    local t = H.context()
    local P = t.prefix
    local path = "@rsghost-spec-" .. P:gsub("[^%w]", "-")
    local sd = socket(path) -- an abstract socket name, as systemd may give
    local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1",
      env = { NOTIFY_SOCKET = path, WATCHDOG_USEC = "400000" } })
    sd.expect("READY=1")
    for _ = 1, 3 do sd.expect("WATCHDOG=1") end
    t.redis:call("XADD", P .. ":s", "*", "stuck", "1")
    H.eventually(function() return #h:log_lines("stuck on") == 1 end, 30,
      function() return h:describe() end)
    -- A ping the loop sent before it got stuck may still be queued.
    while sd.next(0.5) do end
    -- Ten ping intervals in silence: systemd would now restart the unit.
    assert.is_nil(sd.next(2), "a ping while the loop is stuck: " .. table.concat(sd.seen, " | "))
    assert.is_true(h:alive(), h:describe())
    h:kill()
  end)

  it("with --workers, the master notifies for all (READY=1, STATUS=, WATCHDOG=1, STOPPING=1), not the workers", function()
    local t = H.context()
    local P = t.prefix
    local path = server.tmpdir("notify") .. "/notify.sock"
    local sd = socket(path)
    local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "w",
      args = { "--workers", "2" }, env = { NOTIFY_SOCKET = path, WATCHDOG_USEC = "400000" } })
    local ready = sd.expect("READY=1")
    assert.matches("\nSTATUS=supervising; 2 of 2 worker%(s%) running$", ready)
    H.xadd_many(t.redis, P .. ":s", 40)
    H.eventually(function() return #H.list(t.redis, P .. ":out") == 40 end, 30,
      function() return h:describe() end)
    H.eventually(function()
      local c = H.consumers(t.redis, P .. ":s", P .. ":g")
      return c["w-1"] and c["w-2"]
    end, 30, function() return h:describe() end)
    for _ = 1, 3 do sd.expect("WATCHDOG=1") end
    h:signal("TERM")
    sd.expect("STOPPING=1")
    assert.equal(0, h:wait(), h:describe())
    -- One READY=1, the master's: a worker's would carry its own status line.
    local readies = 0
    for _, msg in ipairs(sd.seen) do
      if msg:find("READY=1", 1, true) then readies = readies + 1 end
      assert.is_nil(msg:find("STATUS=reading", 1, true), "a worker notified: " .. msg)
    end
    assert.equal(1, readies)
  end)

  it("sends no WATCHDOG=1 when WATCHDOG_PID names another process, and nothing without NOTIFY_SOCKET", function()
    local t = H.context()
    local P = t.prefix
    local path = server.tmpdir("notify") .. "/notify.sock"
    local sd = socket(path)
    local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1",
      env = { NOTIFY_SOCKET = path, WATCHDOG_USEC = "200000", WATCHDOG_PID = "1" } })
    sd.expect("READY=1")
    -- Twenty ping intervals: not one ping for another process's watchdog.
    local msg = sd.next(2)
    assert.is_true(msg == nil or not msg:find("WATCHDOG=1", 1, true), msg)
    assert.equal(0, h:stop(), h:describe())
    sd.expect("STOPPING=1")
    -- Without NOTIFY_SOCKET, a run is a plain run.
    local h2 = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1",
      env = { NOTIFY_SOCKET = false, WATCHDOG_USEC = "200000" } })
    H.xadd_many(t.redis, P .. ":s", 3)
    H.eventually(function() return #H.list(t.redis, P .. ":out") == 3 end, 30,
      function() return h2:describe() end)
    assert.equal(0, h2:stop(), h2:describe())
    assert.is_nil(sd.next(0.2))
  end)
end)
