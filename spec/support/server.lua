-- A private redis-server for the integration specs, on a free loopback port:
--
--   local server = require "support.server"
--   local srv = server.start()          -- or server.start { persist = true }
--   srv.url, srv.port                   -- "redis://127.0.0.1:40123/0", 40123
--   srv.kill()                          -- SIGKILL: "redis lost mid-run"
--   srv.restart()                       -- same port (and data when persist)
--   srv.stop()
--   server.start { tls = { cert =, key =, ca =, auth_clients = "yes" } }
--                                       -- TLS only: srv.url is rediss://...,
--                                       -- srv.tls the client's options
--
-- server.shared() is the server most specs use: the one named by
-- RSGHOST_TEST_REDIS_URL when set (CI may start one), else one private server
-- per process, stopped when the process exits. Specs sharing it isolate their
-- keys with unique prefixes (support.host). Specs that kill or restart redis
-- always start their own.
local ffi = require "ffi"
local proc = require "support.proc"
local hiredis = require "rsghost.hiredis"

ffi.cdef [[
struct rsghost_sockaddr_in {
  uint16_t sin_family;
  uint16_t sin_port;
  uint32_t sin_addr;
  uint8_t sin_zero[8];
};
typedef uint32_t rsghost_socklen_t;
int socket(int domain, int type, int protocol);
int bind(int fd, const struct rsghost_sockaddr_in *addr, rsghost_socklen_t len);
int getsockname(int fd, struct rsghost_sockaddr_in *addr, rsghost_socklen_t *len);
char *mkdtemp(char *template);
]]

local C = ffi.C
local AF_INET, SOCK_STREAM = 2, 1

local M = {}

M.binary = os.getenv("RSGHOST_REDIS_SERVER") or "redis-server"

local function htons(n)
  return bit.bor(bit.lshift(bit.band(n, 0xff), 8), bit.rshift(n, 8))
end

-- Asks the kernel for a free loopback port: bind port 0, read it back, close.
-- Another process may take it before redis-server binds it; start() retries.
function M.free_port()
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  assert(fd >= 0, "support.server: socket() failed")
  local addr = ffi.new("struct rsghost_sockaddr_in")
  addr.sin_family = AF_INET
  addr.sin_port = 0
  addr.sin_addr = 0x0100007f -- 127.0.0.1 in network byte order (little-endian host)
  if ffi.abi("be") then addr.sin_addr = 0x7f000001 end
  local len = ffi.new("rsghost_socklen_t[1]", ffi.sizeof(addr))
  local ok = C.bind(fd, addr, len[0]) == 0 and C.getsockname(fd, addr, len) == 0
  C.close(fd)
  assert(ok, "support.server: cannot bind a loopback socket")
  local port = addr.sin_port
  if not ffi.abi("be") then port = htons(port) end
  return tonumber(port)
end

-- Whether 127.0.0.1:port can be bound now (nothing listens on it and no
-- socket uses it as its local port).
local function bindable(port)
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  assert(fd >= 0, "support.server: socket() failed")
  local addr = ffi.new("struct rsghost_sockaddr_in")
  addr.sin_family = AF_INET
  addr.sin_port = ffi.abi("be") and port or htons(port)
  addr.sin_addr = ffi.abi("be") and 0x7f000001 or 0x0100007f
  local ok = C.bind(fd, addr, ffi.sizeof(addr)) == 0
  C.close(fd)
  return ok
end

-- A base port whose n consecutive ports are free, for a program that takes
-- PORT, PORT+1, ... (--metrics with --workers). Picked below the kernel's
-- ephemeral range, where free_port's ports are: there, PORT+1 is often the
-- local port of some client's connection (Linux hands out ephemeral ports
-- for connect() next to those for bind()), and then cannot be listened on.
function M.free_ports(n)
  local low = 32768
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
  if f then
    low = tonumber(f:read("*l"):match("^(%d+)")) or low
    f:close()
  end
  -- Seeded once per process: parallel specs must not try the same ports.
  if not M.seeded then
    math.randomseed(os.time() * 1000 + proc.getpid())
    M.seeded = true
  end
  for _ = 1, 200 do
    local base = math.random(10000, low - n - 1)
    local ok = true
    for i = 0, n - 1 do ok = ok and bindable(base + i) end
    if ok then return base end
  end
  error("support.server: no " .. n .. " consecutive free loopback ports below " .. low)
end

-- A fresh private directory (mkdtemp), for logs, scripts and redis' files.
function M.tmpdir(tag)
  local base = os.getenv("TMPDIR") or "/tmp"
  local template = string.format("%s/rsghost-%s-XXXXXX", base, tag or "test")
  local buf = ffi.new("char[?]", #template + 1, template)
  assert(C.mkdtemp(buf) ~= nil, "support.server: mkdtemp failed for " .. template)
  return ffi.string(buf)
end

-- Removes a directory tree we created (paths from tmpdir only).
function M.rmtree(dir)
  assert(dir:match("^/.+/rsghost%-"), "support.server: refusing to remove " .. dir)
  proc.run { argv = { "rm", "-rf", dir } }
end

-- Percent-encodes what a URL's userinfo cannot hold literally.
function M.escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- tls: true for a rediss:// URL.
function M.url_for(port, password, tls)
  local scheme = tls and "rediss" or "redis"
  if password then return string.format("%s://:%s@127.0.0.1:%d/0", scheme, M.escape(password), port) end
  return string.format("%s://127.0.0.1:%d/0", scheme, port)
end

-- The options a client needs for a server started with opts.tls (nil: plain).
local function client_tls(opts)
  local tls = opts.tls
  if not tls then return nil end
  return tls.client or { ca_cert = tls.ca }
end

local function ping(url, timeout, tls)
  local ok, r = pcall(hiredis.connect, url, { connect_timeout = 1, timeout = timeout or 2, tls = tls })
  if not ok then return false, r end
  local ok2, pong = pcall(r.call, r, "PING")
  r:close()
  return ok2 and pong == "PONG", pong
end

-- Starts redis-server on port and waits until it answers PING. Returns the
-- proc, or nil, reason (e.g. the port was taken meanwhile).
local function launch(port, dir, opts, logfile, nowait)
  local persist = opts.persist
  local argv = {
    M.binary, "--port", tostring(port), "--bind", "127.0.0.1",
    "--dir", dir, "--logfile", logfile, "--daemonize", "no",
    "--save", "",
  }
  if opts.tls then
    -- The TLS port only: no client can reach this server in the clear.
    argv[3] = "0"
    for _, a in ipairs { "--tls-port", tostring(port), "--tls-cert-file", opts.tls.cert,
      "--tls-key-file", opts.tls.key, "--tls-ca-cert-file", opts.tls.ca,
      "--tls-auth-clients", opts.tls.auth_clients or "no" } do
      argv[#argv + 1] = a
    end
  end
  if opts.password then
    argv[#argv + 1] = "--requirepass"
    argv[#argv + 1] = opts.password
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  if persist then
    -- kill -9 then restart must keep the streams, groups and acks: every
    -- write is on disk before redis answers.
    for _, a in ipairs { "--appendonly", "yes", "--appendfsync", "always" } do argv[#argv + 1] = a end
  else
    for _, a in ipairs { "--appendonly", "no" } do argv[#argv + 1] = a end
  end
  local p = proc.spawn { argv = argv, stdout = logfile .. ".out", stderr = logfile .. ".out", append = true }
  if nowait then return p end
  local url = M.url_for(port, opts.password, opts.tls)
  local deadline = proc.now() + 20
  while proc.now() < deadline do
    if not p:alive() then
      return nil, "redis-server exited (" .. tostring(p.result) .. "): " .. proc.slurp(logfile):sub(-400)
    end
    -- A loading AOF answers PING with -LOADING: keep waiting.
    if ping(url, nil, client_tls(opts)) then return p end
    proc.sleep(0.02)
  end
  p:kill()
  return nil, "redis-server did not answer PING within 20 s: " .. proc.slurp(logfile):sub(-400), true
end

-- Starts a private redis-server. opts:
--   persist = true   keep data across kill()/restart() (AOF, fsync always)
--   password = "pw"  requirepass; url carries it
--   port = n         this port (e.g. one a host was already told to use)
--   args = {...}     more redis-server options, e.g. { "--enable-debug-command", "local" }
--   tls = { cert =, key =, ca =, auth_clients = "no" | "yes" | "optional",
--           client = { ca_cert =, cert =, key = } }
--                    listen on TLS only (the port is the TLS port): PEM files
--                    of the server's certificate, its key and the CA clients
--                    are checked against; client: what the spec's own client
--                    (srv.client(), the start-up PING) gives, default
--                    { ca_cert = ca }. Needs rsghost.hiredis.TLS.
-- Raises when it cannot start.
function M.start(opts)
  opts = opts or {}
  local dir = M.tmpdir("redis")
  local logfile = dir .. "/redis.log"
  local p, port, err, fatal
  for _ = 1, opts.port and 50 or 10 do
    port = opts.port or M.free_port()
    p, err, fatal = launch(port, dir, opts, logfile)
    -- Retry only when it exited (the port was taken meanwhile).
    if p or fatal then break end
    if opts.port then proc.sleep(0.2) end
  end
  if not p then error("support.server: cannot start redis-server: " .. tostring(err), 2) end

  local srv = {
    port = port,
    host = "127.0.0.1",
    url = M.url_for(port, opts.password, opts.tls),
    password = opts.password,
    tls = client_tls(opts),
    dir = dir,
    logfile = logfile,
    private = true,
  }
  srv.proc = p

  -- A client for the spec, connected lazily and reconnecting after restarts.
  function srv.client()
    if not srv._client then srv._client = hiredis.connect(srv.url, { timeout = 30, tls = srv.tls }) end
    return srv._client
  end

  function srv.alive()
    return srv.proc ~= nil and srv.proc:alive()
  end

  -- Drops the spec's client connection: it reconnects on its next command,
  -- instead of failing once on the dead socket.
  local function drop_client()
    if srv._client then srv._client:close() end
  end

  -- SIGKILL: the server vanishes without closing anything cleanly.
  function srv.kill()
    if srv.proc then srv.proc:kill() end
    drop_client()
  end

  -- Clean stop; the data directory is removed unless keep.
  function srv.stop(keep)
    if srv._client then srv._client:close(); srv._client = nil end
    if srv.proc and srv.proc:alive() then
      srv.proc:signal("TERM")
      if srv.proc:wait(20) == nil then srv.proc:kill() end
    end
    if not keep then M.rmtree(dir) end
  end

  -- Starts it again on the same port (after kill or stop(true)). The port may
  -- linger for a moment after a kill: retry for a while. With
  -- { wait = false } it returns at once, before the server answers (still
  -- loading its data, say).
  function srv.restart(ropts)
    if ropts and ropts.wait == false then
      if srv.proc and srv.proc:alive() then srv.proc:kill() end
      srv.proc = launch(port, dir, opts, logfile, true)
      drop_client()
      return srv
    end
    if srv.proc and srv.proc:alive() then
      srv.proc:signal("TERM")
      if srv.proc:wait(20) == nil then srv.proc:kill() end
    end
    local np, e
    local deadline = proc.now() + 30
    repeat
      np, e = launch(port, dir, opts, logfile)
      if np then break end
      proc.sleep(0.2)
    until proc.now() > deadline
    if not np then error("support.server: cannot restart redis-server on port " .. port .. ": " .. tostring(e), 2) end
    srv.proc = np
    drop_client()
    return srv
  end

  -- Text of redis' own log, for failure messages.
  function srv.log()
    return proc.slurp(logfile)
  end

  return srv
end

-- Wraps an externally started server (RSGHOST_TEST_REDIS_URL): no kill/restart.
local function external(url)
  local cfg = hiredis.parse_url(url)
  local ok, err = ping(url, 5)
  if not ok then
    error("support.server: RSGHOST_TEST_REDIS_URL=" .. hiredis.redact(url) .. " does not answer PING: " .. tostring(err), 3)
  end
  local srv = { url = url, port = cfg.port, host = cfg.host, private = false }
  function srv.client()
    if not srv._client then srv._client = hiredis.connect(url, { timeout = 30 }) end
    return srv._client
  end
  function srv.alive() return true end
  local function refuse() error("support.server: the shared server from RSGHOST_TEST_REDIS_URL cannot be killed or restarted; use server.start()", 2) end
  srv.kill, srv.restart = refuse, refuse
  function srv.stop() end
  function srv.log() return "" end
  return srv
end

local shared

-- The server specs share within this process.
function M.shared()
  if shared then return shared end
  local url = os.getenv("RSGHOST_TEST_REDIS_URL")
  if url and url ~= "" then
    shared = external(url)
  else
    shared = M.start()
    -- Stopped (and its directory removed) when the Lua state closes.
    -- Not shared.stop(): finalizers run in no particular order when the state
    -- closes, and the client's context may already be freed by its own.
    M._sentinel = ffi.gc(ffi.new("int[1]"), function()
      if shared.proc:alive() then
        shared.proc:signal("TERM")
        if shared.proc:wait(10) == nil then shared.proc:kill() end
      end
      M.rmtree(shared.dir)
    end)
  end
  return shared
end

return M
