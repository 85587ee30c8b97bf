-- A Sentinel setup for the integration specs, all on free loopback ports:
-- a master, one replica of it, and three redis-sentinel processes that
-- monitor it with quorum 2 (so a failover needs two of them to agree).
--
--   local sentinel = require "support.sentinel"
--   local s = sentinel.start { name = "mymaster" }
--   s.url                      -- "redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster"
--   s.master()                 -- the server the sentinels report as master now
--   s.client()                 -- a hiredis client on that master
--   s.failover()               -- SENTINEL FAILOVER, waits for the new master
--   s.kill_master()            -- SIGKILL the master, waits for the promotion
--   s.stop()
--
-- Servers come from support.server and sentinels from support.proc, so what
-- a failing spec leaves running dies with the busted process. Waits are
-- generous: a failover takes seconds, more on a loaded machine.
local proc = require "support.proc"
local server = require "support.server"
local hiredis = require "rsghost.hiredis"
local H = require "support.host"

local M = {}

M.binary = os.getenv("RSGHOST_REDIS_SENTINEL") or "redis-sentinel"

-- A fresh client on host:port (closed by the caller).
local function connect(port)
  return hiredis.connect(string.format("redis://127.0.0.1:%d", port), { connect_timeout = 1, timeout = 5 })
end

-- Runs one command on a short-lived connection: reply, or nil, err.
local function ask(port, ...)
  local ok, c = pcall(connect, port)
  if not ok then return nil, c end
  local r, err = c:pcall(...)
  c:close()
  return r, err
end

-- { key = value } from a flat array reply.
local function pairs_of(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function start_sentinel(dir, i, name, master_port)
  for _ = 1, 10 do
    local port = server.free_port()
    local conf = string.format("%s/sentinel-%d.conf", dir, i)
    local log = string.format("%s/sentinel-%d.log", dir, i)
    H.write(conf, table.concat({
      "port " .. port,
      "bind 127.0.0.1",
      "daemonize no",
      "dir " .. dir,
      "logfile " .. log,
      string.format("sentinel monitor %s 127.0.0.1 %d 2", name, master_port),
      string.format("sentinel down-after-milliseconds %s 1000", name),
      string.format("sentinel failover-timeout %s 5000", name),
      string.format("sentinel parallel-syncs %s 1", name),
      "",
    }, "\n"))
    local p = proc.spawn { argv = { M.binary, conf }, stdout = log .. ".out", stderr = log .. ".out" }
    local deadline = proc.now() + 20
    while proc.now() < deadline and p:alive() do
      if ask(port, "PING") == "PONG" then
        return { port = port, proc = p, log = log, conf = conf }
      end
      proc.sleep(0.05)
    end
    p:kill() -- the port was taken meanwhile, or it did not start: another port
  end
  error("support.sentinel: cannot start " .. M.binary, 3)
end

-- Starts master, replica and sentinels; returns once every sentinel sees the
-- master, the replica and the other two sentinels. opts.name: the master's
-- name (default "mymaster").
function M.start(opts)
  opts = opts or {}
  local name = opts.name or "mymaster"
  local s = { name = name, servers = {}, sentinels = {} }
  local a = server.start()
  local b = server.start { args = { "--replicaof", "127.0.0.1", tostring(a.port) } }
  s.servers[a.port], s.servers[b.port] = a, b
  s.dir = server.tmpdir("sentinel")
  -- The sentinels learn of the replica from the master's INFO: let it be
  -- connected first.
  H.eventually(function()
    return H.info(b.client(), "replication").master_link_status == "up"
  end, 60, "the replica to sync with the master")
  local addrs = {}
  for i = 1, 3 do
    local sn = start_sentinel(s.dir, i, name, a.port)
    s.sentinels[i] = sn
    addrs[i] = "127.0.0.1:" .. sn.port
  end
  s.url = string.format("redis+sentinel://%s/%s", table.concat(addrs, ","), name)

  -- The address the sentinels agree the master is at (port), or nil.
  function s.master_port()
    local port
    for _, sn in ipairs(s.sentinels) do
      if sn.proc:alive() then
        local r = ask(sn.port, "SENTINEL", "get-master-addr-by-name", name)
        if type(r) ~= "table" then return nil end
        local p = tonumber(r[2])
        if port and p ~= port then return nil end
        port = p
      end
    end
    return port
  end

  function s.master()
    local port = H.eventually(s.master_port, 60, "the sentinels to agree on the master")
    return s.servers[port]
  end

  function s.replica()
    local m = s.master()
    for port, srv in pairs(s.servers) do
      if port ~= m.port then return srv end
    end
  end

  -- A client on the current master (the one the sentinels report).
  function s.client()
    return s.master().client()
  end

  -- Every sentinel knows the replica (flags "slave", not down) and the two
  -- other sentinels: then a failover can go ahead.
  local function settled(master_port)
    for _, sn in ipairs(s.sentinels) do
      if sn.proc:alive() then
        local r = ask(sn.port, "SENTINEL", "get-master-addr-by-name", name)
        if type(r) ~= "table" or tonumber(r[2]) ~= master_port then return false end
        local replicas = ask(sn.port, "SENTINEL", "replicas", name)
        if type(replicas) ~= "table" then return false end
        local good = false
        for _, rep in ipairs(replicas) do
          local info = pairs_of(rep)
          if info.flags == "slave" and info["master-link-status"] == "ok" then good = true end
        end
        if not good then return false end
        local others = ask(sn.port, "SENTINEL", "sentinels", name)
        if type(others) ~= "table" or #others < 2 then return false end
      end
    end
    return true
  end

  H.eventually(function() return settled(a.port) end, 90, "the sentinels to see master, replica and each other")

  -- Waits until every live sentinel reports port as the master.
  local function wait_master(port, what)
    H.eventually(function() return s.master_port() == port end, 90, what)
  end

  -- SENTINEL FAILOVER, asked of the first sentinel; returns once it was
  -- accepted (the failover then runs for seconds).
  function s.start_failover()
    H.eventually(function()
      -- -NOGOODSLAVE / -INPROG while the sentinels are not ready: retry.
      return ask(s.sentinels[1].port, "SENTINEL", "FAILOVER", name) == "OK"
    end, 60, "SENTINEL FAILOVER to be accepted")
  end

  -- Waits until every sentinel reports the other server than old as master
  -- and old has become its replica (so that a later failover has a replica
  -- to promote). Returns new, old.
  function s.wait_failover(old)
    local new
    for port, srv in pairs(s.servers) do
      if port ~= old.port then new = srv end
    end
    wait_master(new.port, "the sentinels to report the promoted replica as master")
    H.eventually(function() return settled(new.port) end, 90, "the old master to follow the new one")
    return new, old
  end

  -- SENTINEL FAILOVER: the replica becomes master. Returns new, old.
  function s.failover()
    local old = s.master()
    s.start_failover()
    return s.wait_failover(old)
  end

  -- SIGKILL the master; returns the promoted replica once every sentinel
  -- reports it as master.
  function s.kill_master()
    local old = s.master()
    local new = s.replica()
    old.kill()
    wait_master(new.port, "the sentinels to promote the replica after the master died")
    return new, old
  end

  -- The sentinels' logs, for failure messages.
  function s.logs()
    local parts = {}
    for i, sn in ipairs(s.sentinels) do
      parts[#parts + 1] = string.format("--- sentinel %d (port %d)\n%s", i, sn.port, proc.slurp(sn.log):sub(-2000))
    end
    return table.concat(parts, "\n")
  end

  function s.stop()
    for _, sn in ipairs(s.sentinels) do
      if sn.proc:alive() then sn.proc:kill() end
    end
    for _, srv in pairs(s.servers) do srv.stop() end
    server.rmtree(s.dir)
  end

  return s
end

return M
