-- What an operator's tooling sees of a running consumer: structured logs
-- (--log-format json and logfmt) that parse line by line and carry the
-- consumer, group and the event's stream, id and error as fields; the
-- consumer name from RSGHOST_CONSUMER (Kubernetes' downward API); and
-- --stop-timeout, which ends a stop that cannot flush with exit 1, leaving
-- what was not acknowledged pending.
local H = require "support.host"
local cjson = require "cjson"

-- preprocess raises on a message with field bad (line 8), so every run has
-- an event with a stream, an id and an error.
local SCRIPT = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2, dead_letter = P .. ":dead" },
  preprocess = function(stream, id, data)
    if data.bad then
      error("cannot parse \"" .. data.bad .. "\"")
    end
    return id
  end,
  batch = { size = 10, timeout = 0.05 },
  sink = function(items)
    rsghost.log.info("sunk", #items, "message(s)")
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]]

-- Splits one logfmt line into { key = value }; nil and the rest of the line
-- when it is not key=value pairs (bare or "quoted" with \-escapes).
local function logfmt(line)
  local out, pos = {}, 1
  while pos <= #line do
    local key, after = line:match("^([%w_]+)=()", pos)
    if not key then return nil, line:sub(pos) end
    pos = after
    local value
    if line:sub(pos, pos) == '"' then
      local buf, i = {}, pos + 1
      while true do
        local c = line:sub(i, i)
        if c == "" then return nil, "unterminated quote: " .. line:sub(pos) end
        if c == '"' then break end
        if c == "\\" then
          local e = line:sub(i + 1, i + 1)
          buf[#buf + 1] = ({ n = "\n", t = "\t", ['"'] = '"', ["\\"] = "\\" })[e] or e
          i = i + 2
        else
          buf[#buf + 1] = c
          i = i + 1
        end
      end
      value, pos = table.concat(buf), i + 1
    else
      value = line:match("^[^ ]*", pos)
      pos = pos + #value
    end
    out[key] = value
    if line:sub(pos, pos) == " " then
      pos = pos + 1
    elseif pos <= #line then
      return nil, line:sub(pos)
    end
  end
  return out
end

-- Runs SCRIPT as c1 with the given arguments/environment over 20 good
-- messages and one bad, stops it cleanly, returns the log's records parsed
-- by parse, and the bad message's id.
local function run_once(parse, opts)
  local t = H.context()
  local P = t.prefix
  local h = H.start(t, { script = H.script(t, SCRIPT), consumer = "c1", log_level = "info",
    args = opts.args, env = opts.env })
  H.xadd_many(t.redis, P .. ":s", 10)
  local bad = t.redis:call("XADD", P .. ":s", "*", "bad", "a b=c")
  H.xadd_many(t.redis, P .. ":s", 10)
  H.eventually(function() return #H.list(t.redis, P .. ":out") == 20 end, 30,
    function() return h:describe() end)
  assert.equal(0, h:stop(), h:describe())
  local records = {}
  for line in h:log():gmatch("[^\n]+") do
    local rec, why = parse(line)
    assert.is_table(rec, "not a record: " .. tostring(why) .. "\nline: " .. line)
    records[#records + 1] = rec
  end
  return records, bad, P
end

-- What both structured formats must say.
local function check(records, bad, P)
  assert.is_true(#records >= 4, "too few records")
  for _, r in ipairs(records) do
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", r.time)
    assert.is_truthy(({ debug = 1, info = 1, warn = 1, error = 1 })[r.level], r.level)
    assert.is_string(r.msg)
    assert.equal("c1", r.consumer)
    assert.equal(P .. ":g", r.group)
    assert.matches("^%d+$", tostring(r.pid))
  end
  local failed
  for _, r in ipairs(records) do
    if r.msg:find("preprocess failed", 1, true) then failed = r end
  end
  assert.is_table(failed, "no preprocess failure record")
  assert.equal("error", failed.level)
  assert.equal(P .. ":s", failed.stream)
  assert.equal(bad, failed.id)
  assert.matches('cannot parse "a b=c"', failed.error, 1, true)
  -- A script's own rsghost.log line is a record too.
  local sunk = 0
  for _, r in ipairs(records) do
    if r.msg:match("^sunk %d+ message%(s%)$") then sunk = sunk + 1 end
  end
  assert.is_true(sunk >= 2)
end

describe("--log-format", function()
  after_each(function() H.cleanup() end)

  it("json: every line is one JSON object with time, level, msg, consumer, group and the event's fields", function()
    local records, bad, P = run_once(function(line)
      local ok, v = pcall(cjson.decode, line)
      if ok and type(v) == "table" then return v end
      return nil, v
    end, { args = { "--log-format", "json" } })
    check(records, bad, P)
  end)

  it("logfmt (from RSGHOST_LOG_FORMAT): every line is key=value pairs with the same fields", function()
    local records, bad, P = run_once(logfmt, { env = { RSGHOST_LOG_FORMAT = "logfmt" } })
    check(records, bad, P)
  end)

  it("json: a huge error stays one valid JSON object with every field; the error field is cut", function()
    local t = H.context()
    local P = t.prefix
    -- Quotes and control bytes, each escaped to several bytes, 20 KB of them.
    local h = H.start(t, { script = H.script(t, [[
return {
  source = { streams = "{{P}}:s", group = "{{P}}:g", timeout = 0.2 },
  preprocess = function(stream, id, data) error(string.rep('"\1', 10000)) end,
  sink = function() end,
}
]]), consumer = "c1", log_level = "info", args = { "--log-format", "json" } })
    t.redis:call("XADD", P .. ":s", "*", "n", "1")
    H.eventually(function() return h:log():find("preprocess failed", 1, true) end, 30,
      function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
    local cut
    for line in h:log():gmatch("[^\n]+") do
      local ok, rec = pcall(cjson.decode, line)
      assert.is_true(ok, "not JSON: " .. line:sub(1, 200) .. "..." .. line:sub(-200))
      if rec.msg:find("preprocess failed", 1, true) then cut = rec end
    end
    assert.is_table(cut)
    assert.equal("c1", cut.consumer)
    assert.equal(P .. ":s", cut.stream)
    assert.is_true(#cut.error <= 512 and #cut.error > 400, #cut.error)
    assert.is_true(#cut.msg >= 4000, #cut.msg) -- the message: 4 KB, as in text
    assert.matches('^preprocess failed on message %S+ from %S+, left pending %(not acked%): [^:]+:3: "\1"\1', cut.msg)
  end)

  it("refuses an unknown format before anything else, naming the choices", function()
    local t = H.context()
    local code, _, err = H.run({ "--log-format", "xml", H.script(t, SCRIPT), "c1" })
    assert.equal(2, code)
    assert.matches("unknown log format 'xml' %(text, logfmt or json%)", err)
  end)
end)

describe("RSGHOST_CONSUMER", function()
  after_each(function() H.cleanup() end)

  it("names the consumer when the command line does not, and the command line wins", function()
    local t = H.context()
    local P = t.prefix
    local path = H.script(t, SCRIPT)
    local h = H.start(t, { script = path, consumer = false, env = { RSGHOST_CONSUMER = "web-0" } })
    H.xadd_many(t.redis, P .. ":s", 5)
    H.eventually(function() return #H.list(t.redis, P .. ":out") == 5 end, 30,
      function() return h:describe() end)
    assert.same({ ["web-0"] = true }, H.consumers(t.redis, P .. ":s", P .. ":g"))
    assert.equal(0, h:stop(), h:describe())
    local h2 = H.start(t, { script = path, consumer = "c9", env = { RSGHOST_CONSUMER = "web-0" } })
    H.xadd_many(t.redis, P .. ":s", 5)
    H.eventually(function() return #H.list(t.redis, P .. ":out") == 10 end, 30,
      function() return h2:describe() end)
    assert.same({ ["web-0"] = true, c9 = true }, H.consumers(t.redis, P .. ":s", P .. ":g"))
    assert.equal(0, h2:stop(), h2:describe())
  end)
end)

describe("--stop-timeout", function()
  after_each(function() H.cleanup() end)

  -- The sink waits for a replica that does not exist (WAIT 1 600000 blocks
  -- the command connection for ten minutes): a stop cannot flush.
  local HANGING = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 5, timeout = 0.05 },
  sink = function(items)
    rsghost.redis.call("SET", P .. ":sinking", "1")
    rsghost.redis.call("WAIT", 1, 600000)
    rsghost.redis.call("RPUSH", P .. ":out", unpack(items))
  end,
}
]]

  it("gives up a stop that cannot flush: exit 1, says so, and what was read stays pending", function()
    local t = H.context()
    local P = t.prefix
    local h = H.start(t, { script = H.script(t, HANGING), consumer = "c1",
      args = { "--stop-timeout", "1" } })
    H.xadd_many(t.redis, P .. ":s", 5)
    H.eventually(function() return t.redis:call("EXISTS", P .. ":sinking") == 1 end, 30,
      function() return h:describe() end)
    h:signal("TERM")
    local code = h:wait(60)
    assert.equal(1, code, h:describe())
    local gave_up = h:log_lines("stop timeout")
    assert.equal(1, #gave_up, h:describe())
    assert.matches("not flushed after 1s %(%-%-stop%-timeout%); giving up with 5 message%(s%) in the "
      .. "pipeline and 0 ack command%(s%) unconfirmed; they stay pending in redis", gave_up[1])
    assert.equal(5, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.equal(0, #H.list(t.redis, P .. ":out"))
  end)

  it("refuses a value that is not a number of seconds", function()
    local t = H.context()
    local code, _, err = H.run({ "--stop-timeout", "soon", H.script(t, SCRIPT), "c1" },
      { env = { RSGHOST_STOP_TIMEOUT = false } })
    assert.equal(2, code)
    assert.matches("%-%-stop%-timeout needs a number of seconds, at least 0.1, not 'soon'", err)
  end)
end)
