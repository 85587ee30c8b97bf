-- A throwaway PostgreSQL cluster for the integration specs and the bench:
--
--   local pg = require "support.postgres"
--   local db = pg.start()              -- initdb + postgres on a free loopback port
--                                      -- (or pg.start { port = N })
--   db.conninfo                        -- "host=127.0.0.1 port=N dbname=postgres user=rsghost"
--   db.sql("CREATE TABLE ...")          -- runs SQL through psql; its output rows as lines
--   db.sql(sql, "other")               -- in database "other"
--   db.stop()
--
-- Debian's postgresql: initdb and postgres are found under
-- /usr/lib/postgresql/*/bin (the newest version there). PostgreSQL refuses
-- to run as root, so when the specs do (CI) the cluster belongs to nobody
-- and its programs run through setpriv (util-linux; it execs, so the pid we
-- hold is postgres itself). fsync is off: the specs crash rsghost, never
-- PostgreSQL.
local proc = require "support.proc"
local server = require "support.server"

local M = {}

-- The newest PostgreSQL's bin directory, or nil.
function M.bindir()
  local p = io.popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null")
  local best, best_v
  for dir in p:lines() do
    local v = tonumber(dir:match("/postgresql/(%d+)"))
    if v and (not best_v or v > best_v) and io.open(dir .. "/initdb") then best, best_v = dir, v end
  end
  p:close()
  return best
end

local function as_owner(root, argv)
  if not root then return argv end
  local out = { "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--" }
  for _, a in ipairs(argv) do out[#out + 1] = a end
  return out
end

local function check(code, out, err, what)
  if code ~= 0 then error(string.format("support.postgres: %s failed (%s): %s%s", what, tostring(code), out or "",
    err or ""), 3) end
end

-- opts.port: listen there (default: a free port).
function M.start(opts)
  opts = opts or {}
  local bin = M.bindir()
  if not bin then error("support.postgres: no /usr/lib/postgresql/*/bin/initdb (scripts/deps installs postgresql)") end
  local root = proc.getuid and proc.getuid() == 0
  if root == nil then
    local p = io.popen("id -u")
    root = p:read("*l") == "0"
    p:close()
  end
  local dir = server.tmpdir("pg")
  if root then
    local code, out, err = proc.run { argv = { "chown", "nobody:nogroup", dir }, timeout = 30 }
    check(code, out, err, "chown")
  end
  local data = dir .. "/data"
  local code, out, err = proc.run { argv = as_owner(root, { bin .. "/initdb", "-D", data, "-U", "rsghost",
    "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync" }), timeout = 120 }
  check(code, out, err, "initdb")
  for _ = 1, 5 do
    local port = opts.port or server.free_port()
    local p = proc.spawn { argv = as_owner(root, { bin .. "/postgres", "-D", data, "-p", tostring(port),
      "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
      "-c", "full_page_writes=off", "-c", "max_connections=50" }),
      stdout = dir .. "/postgres.out", stderr = dir .. "/postgres.log" }
    local conninfo = string.format("host=127.0.0.1 port=%d dbname=postgres user=rsghost", port)
    local db = { conninfo = conninfo, dir = dir, port = port, proc = p }
    -- Runs sql through psql (in database dbname, default postgres); returns
    -- its rows as lines (fields joined by |).
    function db.sql(sql, dbname)
      local target = dbname and conninfo:gsub("dbname=%S+", "dbname=" .. dbname) or conninfo
      local c, o, e = proc.run { argv = { "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", target,
        "-c", sql }, timeout = 60 }
      check(c, o, e, "psql " .. sql:sub(1, 80))
      local lines = {}
      for line in o:gmatch("[^\n]+") do lines[#lines + 1] = line end
      return lines
    end
    function db.stop()
      -- SIGQUIT: immediate shutdown (the cluster is thrown away).
      if p:alive() then
        p:signal("QUIT")
        if p:wait(30) == nil then p:kill() end
      end
      server.rmtree(dir)
    end
    local deadline = proc.now() + 60
    while p:alive() and proc.now() < deadline do
      local c = proc.run { argv = { "pg_isready", "-q", "-d", conninfo }, timeout = 10 }
      if c == 0 then return db end
      proc.sleep(0.1)
    end
    if p:alive() then p:kill() end
  end
  error("support.postgres: postgres did not start (see " .. dir .. "/postgres.log)")
end

return M
