-- rsghost as a least-privilege ACL user: the README's rules (section "A
-- least-privilege Redis user (ACL)"), applied to a private redis-server
-- exactly as written there, are enough for a whole pipeline: reads and
-- acks, and setting up again after every connection was dropped; with
-- heartbeats, a peer killed -9 (heart first) holding messages whose
-- messages the survivors claim and whose name they remove, then restarted
-- with its name; dead letters. Each
-- consumer's log shows no refused command, and a command outside the rules
-- is refused (the ACL is in force).
local H = require "support.host"
local server = require "support.server"
local hiredis = require "rsghost.hiredis"
local cluster = require "support.cluster"

local PASSWORD = "CHANGE-ME"

-- The README's ACL SETUSER lines, in order, each as its argument list
-- (without "ACL" "SETUSER"), with the comment above each. The block is
-- the one after the acl-rules marker.
local function readme_rules()
  local f = assert(io.open("README.md", "rb"))
  local text = f:read("*a")
  f:close()
  local block = text:match("<!%-%- acl%-rules:[^\n]*\n```text\n(.-)\n```")
  assert(block, "README.md has no acl-rules block")
  local rules, comment = {}, nil
  for line in block:gmatch("[^\n]+") do
    if line:match("^#") then
      comment = line
    else
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      assert(words[1] == "ACL" and words[2] == "SETUSER" and words[3] == "billing", "not a rule: " .. line)
      rules[#rules + 1] = { comment = comment, args = { unpack(words, 3) } }
    end
  end
  assert(#rules == 4, "expected 4 ACL lines in README.md, got " .. #rules)
  return rules
end

-- Applies the README rules whose comment matches one of `which` (Lua
-- patterns; the first line, every consumer's, always), then `extra`.
local function make_user(admin, which, extra)
  admin:call("ACL", "DELUSER", "billing")
  for i, rule in ipairs(readme_rules()) do
    local take = i == 1
    for _, pat in ipairs(which) do take = take or rule.comment:find(pat) ~= nil end
    if take then admin:call("ACL", "SETUSER", unpack(rule.args)) end
  end
  if extra then admin:call("ACL", "SETUSER", "billing", unpack(extra)) end
end

local function acl_url(srv)
  return string.format("redis://billing:%s@127.0.0.1:%d/0", PASSWORD, srv.port)
end

-- Lines of a host's log where Redis refused a command.
local function refused(h)
  local out = {}
  for _, line in ipairs(h:log_lines("NOPERM")) do out[#out + 1] = line end
  for _, line in ipairs(h:log_lines("no permissions")) do out[#out + 1] = line end
  -- Redis 6's words for a command a script may not run.
  for _, line in ipairs(h:log_lines("can't run this command")) do out[#out + 1] = line end
  return out
end

local function describe_all(hosts)
  return function()
    local parts = {}
    for _, h in ipairs(hosts) do parts[#parts + 1] = h:describe() end
    return table.concat(parts, "\n")
  end
end

-- The README's stream, group and keys, on a private server.
local SCRIPT = [[
local rsghost = require "rsghost"
return {
  source = { streams = "orders", group = "billing", timeout = 0.2{{SOURCE_EXTRA}} },
  preprocess = function(stream, id, data)
    if data.poison then error("poison " .. data.poison) end
    return id
  end,
  batch = { size = 20, timeout = 0.05 },
  retry = { initial = 0.1, max = 0.2 },
  sink = function(items)
    {{HOLD}}
    rsghost.redis.call("RPUSH", "billing:out", unpack(items))
  end,
}
]]

describe("rsghost as a least-privilege ACL user (the README's rules)", function()
  local srv
  before_each(function() srv = server.start() end)
  after_each(function()
    H.cleanup()
    if srv then srv.stop() end
  end)

  it("runs a plain consumer on the first rule alone, and is refused anything else", function()
    local t = H.context { server = srv }
    make_user(t.redis, {}, { "+rpush", "~billing:out" })
    local as_user = hiredis.connect(acl_url(srv))
    -- The rules are in force: other commands, other keys, other channels.
    for _, cmd in ipairs {
      { "GET", "orders" }, { "XADD", "other", "*", "f", "v" }, { "KEYS", "*" },
      { "FLUSHALL" }, { "PUBLISH", "billing", "c1" }, { "XRANGE", "other", "-", "+" },
      { "EVAL", "return redis.call('GET', 'x')", "1", "x" }, { "SET", "orders", "1" },
    } do
      local ok, err = as_user:pcall(unpack(cmd))
      assert.is_nil(ok, cmd[1] .. " was allowed")
      assert.matches("NOPERM", err)
    end
    as_user:close()

    local path = H.script(t, SCRIPT, { SOURCE_EXTRA = "", HOLD = "" })
    local h = H.start(t, { script = path, consumer = "c1", redis = acl_url(srv) })
    local ids = H.xadd_many(t.redis, "orders", 200)
    H.wait_sunk(t.redis, { out = "billing:out", n = #ids, streams = "orders", group = "billing",
      hosts = { h } })
    -- Every connection of the user dropped: the host reconnects and sets
    -- its group up again (a script) as that user, and carries on.
    assert.is_true(t.redis:call("CLIENT", "KILL", "USER", "billing") >= 1)
    H.eventually(function()
      local _, n = t.redis:call("CLIENT", "LIST"):gsub("user=billing ", "")
      return n >= 2 -- the reader and the command connection, back
    end, 30, function() return h:describe() end)
    for _, id in ipairs(H.xadd_many(t.redis, "orders", 100)) do ids[#ids + 1] = id end
    local out = H.wait_sunk(t.redis, { out = "billing:out", n = #ids, streams = "orders", group = "billing",
      hosts = { h } })
    H.assert_exactly_once(ids, out)
    assert.equal(0, h:stop(), h:describe())
    assert.same({}, refused(h))
  end)

  it("runs heartbeats, claims from a consumer killed -9, and dead letters, with all the rules", function()
    local t = H.context { server = srv }
    -- The spec's own sink hook (hold while billing:hold:<consumer> exists)
    -- is the "your sink's own" part.
    make_user(t.redis, { "heartbeats", "dead letters" },
      { "+rpush", "+exists", "~billing:out", "~billing:hold:*" })
    local path = H.script(t, SCRIPT, {
      SOURCE_EXTRA = string.format(", heartbeat_interval = %g, claim_timeout = %g, dead_letter = \"orders:dead\"",
        cluster.DEFAULTS.HB, cluster.DEFAULTS.CT),
      HOLD = 'if rsghost.redis.call("EXISTS", "billing:hold:" .. rsghost.consumer) == 1 then '
        .. 'error("holding") end',
    })
    local url = acl_url(srv)

    -- "slow" reads 50 messages and holds them (its sink fails); the poison
    -- one among them is dead-lettered at once by slow itself.
    t.redis:call("SET", "billing:hold:slow", "1")
    local slow = H.start(t, { script = path, consumer = "slow", redis = url })
    local ids = H.xadd_many(t.redis, "orders", 50, function(i)
      if i == 25 then return { "poison", "x" } end
      return { "n", i }
    end)
    H.eventually(function()
      return H.xpending(t.redis, "orders", "billing").consumers.slow == 49
        and t.redis:call("XLEN", "orders:dead") == 1
    end, 30, function() return slow:describe() end)

    local c1 = H.start(t, { script = path, consumer = "c1", redis = url })
    local c2 = H.start(t, { script = path, consumer = "c2", redis = url })
    local hosts = { slow, c1, c2 }
    H.eventually(function()
      local m = H.consumers(t.redis, "orders", "billing")
      return m.c1 and m.c2
    end, 30, describe_all(hosts))
    -- Its heart too, first: nothing frees its name's owner key then.
    local heart = cluster.heart_pid(slow, H)
    assert.is_true(cluster.signal(heart, "KILL"))
    slow:kill()
    local more = H.xadd_many(t.redis, "orders", 200)

    -- Every message but the poison one is sunk once; slow's by a survivor.
    local want = {}
    for i, id in ipairs(ids) do if i ~= 25 then want[#want + 1] = id end end
    for _, id in ipairs(more) do want[#want + 1] = id end
    local out = H.wait_sunk(t.redis, { out = "billing:out", n = #want, streams = "orders", group = "billing",
      hosts = hosts, timeout = 60 })
    H.assert_exactly_once(want, out)
    local k1, k2 = cluster.claimed(c1), cluster.claimed(c2)
    assert.equal(49, (k1.by.slow or 0) + (k2.by.slow or 0), describe_all(hosts)())

    -- The dead letter holds the poison message and its error.
    local dead = t.redis:call("XRANGE", "orders:dead", "-", "+")
    assert.equal(1, #dead)
    local fields = {}
    for i = 1, #dead[1][2], 2 do fields[dead[1][2][i]] = dead[1][2][i + 1] end
    assert.equal(ids[25], fields["rsghost:id"])
    assert.matches("poison x", fields["rsghost:error"])
    assert.equal("slow", fields["rsghost:consumer"])

    -- The dead consumer's name is gone: group, registry.
    H.eventually(function() return not H.consumers(t.redis, "orders", "billing").slow end, 30,
      describe_all(hosts))
    assert.equal(0, t.redis:call("HEXISTS", cluster.registry_key("billing"), "slow"))

    -- slow restarted with its name: its heart takes the name's owner key
    -- over (GET, SET), the killed heart's having run out meanwhile.
    local again = H.start(t, { script = path, consumer = "slow", redis = url })
    t.redis:call("DEL", "billing:hold:slow")
    local last = H.xadd_many(t.redis, "orders", 20)
    for _, id in ipairs(last) do want[#want + 1] = id end
    out = H.wait_sunk(t.redis, { out = "billing:out", n = #want, streams = "orders", group = "billing",
      hosts = { c1, c2, again }, timeout = 60 })
    H.assert_exactly_once(want, out)
    H.eventually(function() return #again:log_lines("reading orders") > 0 end, 30,
      function() return again:describe() end)

    assert.equal(0, c1:stop(), c1:describe())
    assert.equal(0, c2:stop(), c2:describe())
    assert.equal(0, again:stop(), again:describe())
    for _, h in ipairs { slow, c1, c2, again } do assert.same({}, refused(h), h.name) end
  end)
end)
