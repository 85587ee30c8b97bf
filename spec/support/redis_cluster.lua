-- A private Redis Cluster on loopback for the cluster specs: three masters
-- and three replicas (by default), each redis-server on a free port in its
-- own temp dir (support.server), joined by `redis-cli --cluster create`.
--
--   local redis_cluster = require "support.redis_cluster"
--   local c = redis_cluster.start()      -- { masters = 3, replicas = 1 }
--   c.url                                 -- "redis+cluster://127.0.0.1:P1,127.0.0.1:P2"
--   local r = c.client()                  -- routes by key slot, follows MOVED/ASK
--   r:call("XADD", "s", "*", "f", "v"); r:pcall(...); r:pipeline{...}
--   c.node_of(key)                        -- the support.server serving key's slot now
--   c.masters()                           -- the servers that are masters now
--   c.stop()
--
-- The client has the shape of rsghost.hiredis's (call, pcall, pipeline), so
-- support.host's helpers (xadd_many, xpending, wait_sunk) take it as it is.
local hiredis = require "rsghost.hiredis"
local native = require "rsghost.native"
local proc = require "support.proc"
local server = require "support.server"

local M = {}

M.cli = os.getenv("RSGHOST_REDIS_CLI") or "redis-cli"

-- The slot map from CLUSTER SLOTS on any server that answers:
-- { [slot] = "host:port" } (only masters), or nil, why.
local function learn_map(servers)
  local why = "no server answered"
  for _, srv in ipairs(servers) do
    if srv.alive() then
      local ok, reply = pcall(function() return srv.client():call("CLUSTER", "SLOTS") end)
      if ok then
        local owner = {}
        for _, range in ipairs(reply) do
          local addr = range[3][1] .. ":" .. range[3][2]
          for s = range[1], range[2] do owner[s] = addr end
        end
        return owner
      end
      why = reply
    end
  end
  return nil, why
end

local Client = {}
Client.__index = Client

function Client:_server(addr)
  for _, srv in ipairs(self.c.servers) do
    if srv.host .. ":" .. srv.port == addr then return srv end
  end
  error("support.redis_cluster: no server at " .. addr, 0)
end

-- The key a command routes by: its first argument, or after STREAMS.
local function key_of(args)
  local cmd = args[1]:upper()
  if cmd == "XREAD" or cmd == "XREADGROUP" then
    for i = 2, #args do
      if tostring(args[i]):upper() == "STREAMS" then return tostring(args[i + 1]) end
    end
  end
  if cmd == "XGROUP" or cmd == "XINFO" then return tostring(args[3]) end
  return args[2] ~= nil and tostring(args[2]) or nil
end

-- Runs args on the master of its key; a MOVED or ASK (a failover, a slot
-- on its way elsewhere) learns the map again and retries, for a while.
function Client:pcall(...)
  local args = { ... }
  local key = key_of(args)
  local deadline = proc.now() + 30
  while true do
    if not self.owner then self.owner = learn_map(self.c.servers) end
    local addr = self.owner and (key and self.owner[native.key_slot(key)]) or nil
    if not addr and self.owner then addr = next(self.owner) and self.owner[0] end
    local value, err
    if addr then
      local srv = self:_server(addr)
      local ok, v, e = pcall(function() return srv.client():pcall(unpack(args)) end)
      if ok then value, err = v, e else err = v end
      local e = err and err:lower() or ""
      -- A reply (nil included: XREADGROUP with nothing new) or an error
      -- that no retry mends goes back as it is.
      if err == nil or (err and not e:find("^moved") and not e:find("^ask")
          and not e:find("^clusterdown") and not e:find("^tryagain") and not e:find("connect")
          and not e:find("lost") and not e:find("readonly") and not e:find("reset")) then
        return value, err
      end
      if err and err:find("^ASK") then
        local to = err:match("^ASK %d+ (%S+)")
        local dst = self:_server(to).client()
        dst:call("ASKING")
        return dst:pcall(unpack(args))
      end
    end
    if proc.now() > deadline then return nil, err or ("no master serves the key " .. tostring(key) .. " (" .. tostring(args[1]) .. ")") end
    self.owner = nil
    proc.sleep(0.1)
  end
end

function Client:call(...)
  local value, err = self:pcall(...)
  if err then error(err, 0) end
  return value
end

-- One command at a time (the keys may live on different nodes); error
-- replies become { err = msg } as in rsghost.hiredis's pipeline.
function Client:pipeline(cmds)
  local out = {}
  for i, cmd in ipairs(cmds) do
    local value, err = self:pcall(unpack(cmd))
    if err then out[i] = { err = err } else out[i] = value == nil and false or value end
  end
  return out
end

function Client:close() end

-- The node says the cluster is whole, and a replica is in sync with its
-- master (a manual failover waits for that).
local function cluster_ok(srv)
  local ok, info = pcall(function() return srv.client():call("CLUSTER", "INFO") end)
  if not (ok and info:find("cluster_state:ok", 1, true)) then return false end
  local ok2, role = pcall(function() return srv.client():call("ROLE") end)
  return ok2 and (role[1] == "master" or role[4] == "connected")
end

-- Starts the servers and makes them one cluster; returns once every node
-- says cluster_state:ok and agrees on the map. opts.masters (3),
-- opts.replicas (per master, 1), opts.node_timeout (ms, 2000), opts.tls
-- ({ cert =, key =, ca =, client_cert =, client_key = }: every node on a
-- TLS port only, the cluster bus and replication over TLS too, with the
-- client certificate for the node's own outgoing links; c.url
-- rediss+cluster://).
function M.start(opts)
  opts = opts or {}
  local masters, replicas = opts.masters or 3, opts.replicas or 1
  local c = { servers = {} }
  local args = { "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", tostring(opts.node_timeout or 2000) }
  -- redis-cli and its TLS options, for --cluster create and reshard.
  c.cli = { M.cli }
  if opts.tls then
    -- A node dials the others' bus and its master as a TLS client, and
    -- those ends always ask for a client certificate: the nodes need one.
    for _, a in ipairs { "--tls-cluster", "yes", "--tls-replication", "yes",
      "--tls-client-cert-file", opts.tls.client_cert, "--tls-client-key-file", opts.tls.client_key } do
      args[#args + 1] = a
    end
    for _, a in ipairs { "--tls", "--cacert", opts.tls.ca } do c.cli[#c.cli + 1] = a end
  end
  local create = { unpack(c.cli) }
  for _, a in ipairs { "--cluster", "create" } do create[#create + 1] = a end
  for i = 1, masters * (1 + replicas) do
    local srv = server.start { args = args, tls = opts.tls }
    c.servers[i] = srv
    create[#create + 1] = srv.host .. ":" .. srv.port
  end
  for _, a in ipairs { "--cluster-replicas", tostring(replicas), "--cluster-yes" } do create[#create + 1] = a end
  local code, out, err = proc.run { argv = create, timeout = 120 }
  if code ~= 0 then
    for _, srv in ipairs(c.servers) do srv.stop() end
    error("support.redis_cluster: redis-cli --cluster create failed (" .. tostring(code) .. "): "
      .. tostring(out) .. tostring(err), 2)
  end
  local deadline = proc.now() + 60
  while true do
    local all = true
    for _, srv in ipairs(c.servers) do all = all and cluster_ok(srv) end
    if all then
      local maps, same = {}, true
      for i, srv in ipairs(c.servers) do maps[i] = learn_map { srv } end
      for s = 0, 16383, 97 do
        for i = 2, #maps do same = same and maps[i] and maps[1] and maps[i][s] == maps[1][s] end
      end
      if same then break end
    end
    if proc.now() > deadline then error("support.redis_cluster: the cluster did not come up", 2) end
    proc.sleep(0.1)
  end
  local seeds = {}
  for i = 1, math.min(2, #c.servers) do
    seeds[i] = c.servers[i].host .. ":" .. c.servers[i].port
  end
  c.url = (opts.tls and "rediss" or "redis") .. "+cluster://" .. table.concat(seeds, ",")

  function c.client()
    return setmetatable({ c = c }, Client)
  end

  function c.node_of(key)
    local owner = assert(learn_map(c.servers))
    return Client._server({ c = c }, owner[native.key_slot(key)])
  end

  function c.masters()
    local owner = assert(learn_map(c.servers))
    local seen, out = {}, {}
    for _, addr in pairs(owner) do
      if not seen[addr] then
        seen[addr] = true
        out[#out + 1] = Client._server({ c = c }, addr)
      end
    end
    table.sort(out, function(a, b) return a.port < b.port end)
    return out
  end

  -- The replica of the master serving key, or nil.
  function c.replica_of(key)
    local master = c.node_of(key)
    for _, srv in ipairs(c.servers) do
      local ok, role = pcall(function() return srv.client():call("ROLE") end)
      if ok and role[1] == "slave" and tonumber(role[3]) == master.port then return srv end
    end
  end

  -- CLUSTER FAILOVER on the replica of key's master, asked again until the
  -- replica is the master of key's slot (a manual failover that finds the
  -- replica behind gives up after a while).
  function c.failover(key)
    local replica = assert(c.replica_of(key), "support.redis_cluster: no replica")
    local deadline = proc.now() + 90
    while proc.now() < deadline do
      pcall(function() replica.client():call("CLUSTER", "FAILOVER") end)
      local until_ = proc.now() + 10
      while proc.now() < until_ do
        if c.node_of(key).port == replica.port then return replica end
        proc.sleep(0.1)
      end
    end
    error("support.redis_cluster: the failover did not happen", 2)
  end

  -- The node id of a server.
  function c.id_of(srv)
    return srv.client():call("CLUSTER", "MYID")
  end

  -- Moves count slots from the master of key to another master with
  -- `redis-cli --cluster reshard` (which takes the source's lowest slots).
  function c.reshard(key, to, count)
    local from = c.node_of(key)
    local argv = { unpack(c.cli) }
    for _, a in ipairs { "--cluster", "reshard", from.host .. ":" .. from.port,
      "--cluster-from", c.id_of(from), "--cluster-to", c.id_of(to),
      "--cluster-slots", tostring(count or 1), "--cluster-yes" } do argv[#argv + 1] = a end
    local code, out, err = proc.run { argv = argv, timeout = 120 }
    if code ~= 0 then
      error("support.redis_cluster: reshard failed (" .. tostring(code) .. "): " .. tostring(out) .. tostring(err), 2)
    end
  end

  function c.stop()
    for _, srv in ipairs(c.servers) do srv.stop() end
  end

  return c
end

-- A stream name whose slot is the lowest slot its master serves, so that
-- c.reshard(name, to, 1) moves that very slot: "{TAG}:" .. suffix.
function M.first_slot_stream(c, suffix)
  local owner = assert(learn_map(c.servers))
  local lowest = {}
  for s = 0, 16383 do
    local a = owner[s]
    if a and lowest[a] == nil then lowest[a] = s end
  end
  local want = {}
  for _, s in pairs(lowest) do want[s] = true end
  for i = 1, 2000000 do
    local tag = "t" .. i
    if want[native.key_slot(tag)] then return "{" .. tag .. "}:" .. suffix end
  end
  error("support.redis_cluster: no name found", 2)
end

-- Names of n streams, each served by a different master in turn, so that
-- reads span every master: prefix .. ":" .. i with i chosen by slot. With
-- `tagged`, each name is a hash tag of its own ("{prefix:s7}"), so that
-- keys built on it ("rsghost:processing:c1:{prefix:s7}") share its slot.
function M.spread(c, prefix, n, tagged)
  local masters = c.masters()
  local owner = assert(learn_map(c.servers))
  local names, i = {}, 0
  while #names < n do
    i = i + 1
    local name = prefix .. ":s" .. i
    local want = masters[#names % #masters + 1]
    if owner[native.key_slot(name)] == want.host .. ":" .. want.port then
      names[#names + 1] = tagged and "{" .. name .. "}" or name
    end
    if i > 100000 then error("support.redis_cluster: cannot spread streams", 2) end
  end
  return names
end

-- A Lua array literal of the strings in names, for a script template.
function M.lua_list(names)
  local q = {}
  for i, n in ipairs(names) do q[i] = string.format("%q", n) end
  return "{ " .. table.concat(q, ", ") .. " }"
end

-- The tutorial's pipeline (examples/simple-consumer-group.lua) as the
-- cluster specs run it: over the streams {{STREAMS}} (M.lua_list), group
-- P:g, output list P:out; {{EXTRA}} adds source options (", k = v").
M.TUTORIAL = [[
local rsghost = require "rsghost"
local cjson = require "cjson"
return {
  source = { streams = {{STREAMS}}, group = "{{P}}:g", timeout = 0.2{{EXTRA}} },
  preprocess = function(stream, id, data)
    data._source = stream
    data._id = id
    return cjson.encode(data)
  end,
  batch = { size = 50, timeout = 0.1 },
  retry = { initial = 0.1, max = 0.5 },
  sink = function(items)
    rsghost.redis.call("RPUSH", "{{P}}:out", unpack(items))
  end,
}
]]

return M
