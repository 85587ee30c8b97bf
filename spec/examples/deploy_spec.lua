-- examples/deploy/: the systemd template units and the Kubernetes manifests,
-- each in its one-consumer and its --workers form.
--
-- Each unit passes `systemd-analyze verify` (any warning fails the spec,
-- not only errors) and systemd's own offline security review; it is
-- checked as a copy whose ExecStart points at the built binary, since
-- verify also checks that the command exists. No systemd as PID 1 needed.
--
-- Debian has no Kubernetes schema validator (no kubeconform or kubeval), so
-- the manifests are parsed (lua-yaml) and held to the Kubernetes API's
-- field names for every object and field they use (a misspelt field fails),
-- and to what rsghost needs: probes on the --metrics port's /livez and
-- /readyz, a grace period above the stop timeout, RSGHOST_CONSUMER from
-- the pod name (StatefulSets) or a generated name with heartbeats
-- (Deployment). The scripts in their ConfigMaps are run by the real binary
-- with the container's arguments, and the probes' paths answer 200 (with
-- --workers, on every worker's port, under the names the comments promise).
local H = require "support.host"
local server = require "support.server"
local proc = require "support.proc"
local lyaml = require "lyaml"

-- The units, and the ExecStart each must have: the instance is the consumer
-- name, or the prefix of the workers' names.
local UNITS = {
  { path = "examples/deploy/rsghost@.service", exec = "/etc/rsghost/consumer.lua %%i$" },
  { path = "examples/deploy/rsghost-workers@.service",
    exec = " %-%-workers %${RSGHOST_WORKERS} /etc/rsghost/consumer.lua %%i$" },
}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Absolute path of the built binary (verify needs ExecStart to exist).
local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = assert(io.popen("pwd"))
  local cwd = p:read("*l")
  p:close()
  return cwd .. "/" .. path
end

-- The unit's [Service] settings: { key = { value, ... } }.
local function settings(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^(%w+)=(.*)$")
    if k then
      out[k] = out[k] or {}
      table.insert(out[k], v)
    end
  end
  return out
end

for _, unit in ipairs(UNITS) do
  local file = unit.path:match("[^/]+$")
  local instance = file:gsub("@%.service$", "@orders.service")

  describe(unit.path, function()
    local dir
    before_each(function()
      dir = server.tmpdir("unit")
      local text = read(unit.path):gsub("/usr/local/bin/rsghost", absolute(H.bin))
      H.write(dir .. "/" .. file, text)
    end)

    it("passes systemd-analyze verify as an instance, without a word of warning", function()
      local code, out, err = proc.run { argv = { "systemd-analyze", "verify", dir .. "/" .. instance } }
      assert.equal(0, code, out .. err)
      assert.equal("", out .. err)
    end)

    it("passes systemd's offline security review with a low exposure", function()
      local code, out, err = proc.run { argv = { "systemd-analyze", "security", "--offline=yes",
        dir .. "/" .. file } }
      assert.equal(0, code, out .. err)
      local level = tonumber(out:match("Overall exposure level for [^:]+: (%d+%.%d+)"))
      assert.is_number(level, out)
      assert.is_true(level <= 2.0, "exposure " .. level .. "\n" .. out)
    end)

    it("is a notify unit with a watchdog whose instance names the consumers, and stops in time", function()
      local s = settings(read(unit.path))
      assert.same({ "notify" }, s.Type)
      assert.same({ "main" }, s.NotifyAccess)
      assert.is_truthy(tonumber(s.WatchdogSec[1]))
      assert.matches(unit.exec, s.ExecStart[1])
      assert.same({ "yes" }, s.DynamicUser)
      assert.same({ "strict" }, s.ProtectSystem)
      assert.same({ "mixed" }, s.KillMode)
      local env = {}
      for _, e in ipairs(s.Environment) do
        local k, v = e:match("^([%w_]+)=(.*)$")
        env[k] = v
      end
      assert.is_true(tonumber(s.TimeoutStopSec[1]) > tonumber(env.RSGHOST_STOP_TIMEOUT))
      if unit.exec:find("workers", 1, true) then assert.equal("auto", env.RSGHOST_WORKERS) end
      -- LuaJIT's compiler writes the code it runs.
      assert.is_nil(s.MemoryDenyWriteExecute)
    end)
  end)
end

-- The subset of the Kubernetes API (core/v1, apps/v1) the manifests use:
-- field name -> type, a nested table for an object, { x } for a list of x.
local T = {}
local meta = { name = "string", namespace = "string", labels = "map", annotations = "map" }
local probe = {
  httpGet = { path = "string", port = "port", scheme = "string" },
  initialDelaySeconds = "int", periodSeconds = "int", timeoutSeconds = "int",
  successThreshold = "int", failureThreshold = "int",
}
local resources = { cpu = "quantity", memory = "quantity" }
local container = {
  name = "string", image = "string", imagePullPolicy = "string",
  command = { "string" }, args = { "string" },
  env = { {
    name = "string", value = "string",
    valueFrom = {
      fieldRef = { fieldPath = "string", apiVersion = "string" },
      secretKeyRef = { name = "string", key = "string", optional = "bool" },
      configMapKeyRef = { name = "string", key = "string", optional = "bool" },
    },
  } },
  ports = { { name = "string", containerPort = "int", protocol = "string" } },
  livenessProbe = probe, readinessProbe = probe, startupProbe = probe,
  resources = { requests = resources, limits = resources },
  securityContext = {
    allowPrivilegeEscalation = "bool", readOnlyRootFilesystem = "bool", runAsNonRoot = "bool",
    runAsUser = "int", runAsGroup = "int", capabilities = { add = { "string" }, drop = { "string" } },
  },
  volumeMounts = { { name = "string", mountPath = "string", readOnly = "bool", subPath = "string" } },
}
local template = {
  metadata = meta,
  spec = {
    terminationGracePeriodSeconds = "int",
    securityContext = {
      runAsNonRoot = "bool", runAsUser = "int", runAsGroup = "int", fsGroup = "int",
      seccompProfile = { type = "string" },
    },
    containers = { container },
    volumes = { {
      name = "string",
      configMap = { name = "string", defaultMode = "int" },
      secret = { secretName = "string", defaultMode = "int" },
    } },
  },
}
local selector = { matchLabels = "map" }
T.ConfigMap = { apiVersion = "string", kind = "string", metadata = meta, data = "map" }
T.Service = {
  apiVersion = "string", kind = "string", metadata = meta,
  spec = {
    clusterIP = "string", type = "string", selector = "map",
    ports = { { name = "string", port = "int", targetPort = "port", protocol = "string" } },
  },
}
T.StatefulSet = {
  apiVersion = "string", kind = "string", metadata = meta,
  spec = {
    serviceName = "string", replicas = "int", podManagementPolicy = "string",
    selector = selector, template = template,
  },
}
T.Deployment = {
  apiVersion = "string", kind = "string", metadata = meta,
  spec = {
    replicas = "int", selector = selector, template = template,
    strategy = { type = "string", rollingUpdate = { maxUnavailable = "port", maxSurge = "port" } },
  },
}
local API = { ConfigMap = "v1", Service = "v1", StatefulSet = "apps/v1", Deployment = "apps/v1" }

-- Raises naming the first field of v that schema does not have or types
-- differently.
local function validate(v, schema, path)
  if type(schema) == "string" then
    local ok = ({
      string = type(v) == "string",
      bool = type(v) == "boolean",
      int = type(v) == "number" and v == math.floor(v),
      port = type(v) == "string" or (type(v) == "number" and v == math.floor(v)),
      quantity = type(v) == "string" or type(v) == "number",
      map = type(v) == "table",
    })[schema]
    if schema == "map" and ok then
      for k, x in pairs(v) do
        if type(k) ~= "string" or type(x) ~= "string" then
          error(path .. ": a map of strings, but " .. tostring(k) .. " is " .. type(x), 0)
        end
      end
    end
    if not ok then error(path .. ": expected " .. schema .. ", got " .. type(v), 0) end
    return
  end
  if type(v) ~= "table" then error(path .. ": expected an object or list, got " .. type(v), 0) end
  if schema[1] then
    for i, x in ipairs(v) do validate(x, schema[1], path .. "[" .. i .. "]") end
    return
  end
  for k, x in pairs(v) do
    if schema[k] == nil then error(path .. ": unknown field '" .. tostring(k) .. "'", 0) end
    validate(x, schema[k], path .. "." .. k)
  end
end

-- The manifest's objects by kind (each kind once).
local function objects(path)
  local docs = lyaml.load(read(path), { all = true })
  local by = {}
  for i, d in ipairs(docs) do
    assert.is_table(T[d.kind], path .. ": object " .. i .. " is an unexpected kind " .. tostring(d.kind))
    assert.equal(API[d.kind], d.apiVersion, path .. ": " .. d.kind)
    validate(d, T[d.kind], path .. ": " .. d.kind)
    assert.is_nil(by[d.kind])
    by[d.kind] = d
  end
  return by
end

local function env_of(c)
  local out = {}
  for _, e in ipairs(c.env or {}) do out[e.name] = e end
  return out
end

-- What both workloads must say; returns the container and the script's
-- text from the ConfigMap it mounts.
local function check_workload(by, w)
  local pod = w.spec.template
  for k, v in pairs(w.spec.selector.matchLabels) do
    assert.equal(v, pod.metadata.labels[k], "selector label " .. k)
  end
  local c = pod.spec.containers[1]
  assert.equal(1, #pod.spec.containers)
  -- --metrics HOST:PORT, and the probes on that port.
  local port
  for i, a in ipairs(c.args) do
    if a == "--metrics" then port = tonumber(c.args[i + 1]:match("^0%.0%.0%.0:(%d+)$")) end
  end
  assert.is_number(port, "--metrics 0.0.0.0:PORT in args")
  local ports = {}
  for _, p in ipairs(c.ports) do ports[p.name] = p.containerPort end
  local function probe_port(p)
    local x = p.httpGet.port
    return type(x) == "number" and x or ports[x]
  end
  assert.equal("/livez", c.livenessProbe.httpGet.path)
  assert.equal(port, probe_port(c.livenessProbe))
  assert.equal("/readyz", c.readinessProbe.httpGet.path)
  assert.equal(port, probe_port(c.readinessProbe))
  -- The kubelet's SIGKILL comes after the stop timeout, not before.
  local env = env_of(c)
  local stop = tonumber(env.RSGHOST_STOP_TIMEOUT and env.RSGHOST_STOP_TIMEOUT.value or "25")
  local grace = pod.spec.terminationGracePeriodSeconds
  assert.is_true(grace > stop and grace <= stop + 10, "grace " .. grace .. " vs stop " .. stop)
  assert.is_truthy(env.RSGHOST_REDIS_URL.valueFrom.secretKeyRef)
  -- The script argument is the ConfigMap's file.
  local vol = pod.spec.volumes[1]
  assert.equal(by.ConfigMap.metadata.name, vol.configMap.name)
  local mount = c.volumeMounts[1]
  assert.equal(vol.name, mount.name)
  local script = c.args[#c.args]
  assert.equal(mount.mountPath, script:match("^(.*)/[^/]+$"))
  local text = by.ConfigMap.data[script:match("[^/]+$")]
  assert.is_string(text)
  return c, text
end

-- The container's options, without the script (H.start adds a local
-- copy) and with --metrics on a free loopback port instead of 9100 (which
-- another process may hold; with --workers N, N free ports from there);
-- returns them and that port.
local function run_args(c)
  local workers = 1
  for i, a in ipairs(c.args) do
    if a == "--workers" then workers = tonumber(c.args[i + 1]) end
  end
  local args, port = {}, server.free_ports(workers)
  for i = 1, #c.args - 1 do
    args[i] = c.args[i]
    if c.args[i - 1] == "--metrics" then args[i] = "127.0.0.1:" .. port end
  end
  return args, port
end

-- The HTTP status of a probe's path on port, as the kubelet would see it.
local function probe(port, path)
  local code, out = proc.run { argv = { "curl", "-s", "-o", "/dev/null", "--max-time", "5",
    "-w", "%{http_code}", "http://127.0.0.1:" .. port .. path } }
  return code == 0 and tonumber(out) or nil
end

-- Runs the pod's command for a while: probes answer 200 once it reads.
local function check_probes(h, port)
  H.eventually(function() return probe(port, "/readyz") == 200 end, 30,
    function() return h:describe() end)
  assert.equal(200, probe(port, "/livez"))
end

describe("examples/deploy Kubernetes manifests", function()
  after_each(function() H.cleanup() end)

  it("statefulset.yaml: stable names from the pod name, a headless Service, probes, grace period", function()
    local by = objects("examples/deploy/statefulset.yaml")
    local sts = by.StatefulSet
    local c, text = check_workload(by, sts)
    assert.same({ fieldPath = "metadata.name" }, env_of(c).RSGHOST_CONSUMER.valueFrom.fieldRef)
    assert.equal(by.Service.metadata.name, sts.spec.serviceName)
    assert.equal("None", by.Service.spec.clusterIP)
    -- The pod rsghost-orders-0 runs as consumer rsghost-orders-0.
    local srv = server.start()
    local ok, err = pcall(function()
      local t = H.context { server = srv }
      local path = H.write(t.dir .. "/consumer.lua", text)
      local args, port = run_args(c)
      local h = H.start(t, { script = path, consumer = false, args = args,
        env = { RSGHOST_CONSUMER = "rsghost-orders-0" } })
      check_probes(h, port)
      t.redis:call("XADD", "orders", "*", "n", "1")
      H.eventually(function() return #H.list(t.redis, "orders-archived") == 1 end, 30,
        function() return h:describe() end)
      assert.same({ ["rsghost-orders-0"] = true }, H.consumers(t.redis, "orders", "orders-archive"))
      assert.equal(0, h:stop(), h:describe())
    end)
    srv.stop()
    assert(ok, err)
  end)

  it("statefulset-workers.yaml: two workers per pod, NAME-1 and NAME-2, a metrics port each", function()
    local by = objects("examples/deploy/statefulset-workers.yaml")
    local sts = by.StatefulSet
    local c, text = check_workload(by, sts)
    assert.same({ fieldPath = "metadata.name" }, env_of(c).RSGHOST_CONSUMER.valueFrom.fieldRef)
    assert.equal(by.Service.metadata.name, sts.spec.serviceName)
    assert.equal("None", by.Service.spec.clusterIP)
    local workers
    for i, a in ipairs(c.args) do
      if a == "--workers" then workers = tonumber(c.args[i + 1]) end
    end
    assert.equal(2, workers)
    -- Worker i serves on PORT+i-1: the container and the Service name each
    -- port, and the pod asks for a core per worker.
    local cports, sports = {}, {}
    for _, p in ipairs(c.ports) do cports[#cports + 1] = p.containerPort end
    for _, p in ipairs(by.Service.spec.ports) do sports[#sports + 1] = p.port end
    assert.same({ 9100, 9101 }, cports)
    assert.same({ 9100, 9101 }, sports)
    assert.equal(tostring(workers), c.resources.requests.cpu)
    -- Pod rsghost-orders-mw-0 runs consumers rsghost-orders-mw-0-1 and -0-2.
    local srv = server.start()
    local ok, err = pcall(function()
      local t = H.context { server = srv }
      local path = H.write(t.dir .. "/consumer.lua", text)
      local args, port = run_args(c)
      local pod = sts.metadata.name .. "-0"
      local h = H.start(t, { script = path, consumer = false, args = args,
        env = { RSGHOST_CONSUMER = pod } })
      check_probes(h, port)
      check_probes(h, port + 1)
      for i = 1, 10 do t.redis:call("XADD", "orders", "*", "n", tostring(i)) end
      H.eventually(function() return #H.list(t.redis, "orders-archived") == 10 end, 30,
        function() return h:describe() end)
      assert.same({ [pod .. "-1"] = true, [pod .. "-2"] = true },
        H.consumers(t.redis, "orders", "orders-archive"))
      assert.equal(0, h:stop(), h:describe())
    end)
    srv.stop()
    assert(ok, err)
  end)

  it("deployment.yaml: generated names with heartbeats, probes, grace period", function()
    local by = objects("examples/deploy/deployment.yaml")
    local c, text = check_workload(by, by.Deployment)
    assert.is_nil(env_of(c).RSGHOST_CONSUMER)
    local srv = server.start()
    local ok, err = pcall(function()
      local t = H.context { server = srv }
      local path = H.write(t.dir .. "/consumer.lua", text)
      local args, port = run_args(c)
      local h = H.start(t, { script = path, consumer = false, args = args,
        env = { RSGHOST_CONSUMER = false } })
      check_probes(h, port)
      t.redis:call("XADD", "events", "*", "n", "1")
      H.eventually(function() return #H.list(t.redis, "events-archived") == 1 end, 30,
        function() return h:describe() end)
      assert.equal(1, #h:log_lines("no consumer name given: using the generated name"), h:describe())
      assert.equal(1, #h:log_lines("heartbeats every 5s"), h:describe())
      assert.equal(0, h:stop(), h:describe())
    end)
    srv.stop()
    assert(ok, err)
  end)
end)
