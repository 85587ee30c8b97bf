-- The test kit's promise, checked: "a spec that passes describes what
-- `rsghost script.lua` does with the same messages". Each case runs one
-- script on one backlog twice, through the real binary against redis-server
-- and through rsghost.testing against its in-memory Redis, fed the reads the
-- host made (support/conformance.lua explains how), and asserts that both
-- give the same batches (per sink, in order), acks, pending entries,
-- checkpoint and pipeline log lines.
local H = require "support.host"
local C = require "support.conformance"

-- A script whose sinks record each call's items (a JSON array) on P:sink<i>.
-- {{SOURCE}}, {{PREPROCESS}}, {{BATCH}}, {{SINKS}}, {{EXTRA}} are filled per case.
local function script(parts)
  return H.template([[
local rsghost = require "rsghost"
local cjson = require "cjson"
local P = "{{P}}"
{{EXTRA}}
return {
  source = {{SOURCE}},
  preprocess = {{PREPROCESS}},
  batch = {{BATCH}},
  sink = {{SINKS}},
  retry = { initial = 0.05, max = 0.05 },
}
]], {
    P = "{{P}}", -- left for H.script
    EXTRA = parts.extra or "",
    SOURCE = parts.source or '{ streams = P .. ":s", group = P .. ":g" }',
    PREPROCESS = parts.preprocess or "function(stream, id, data) return stream:sub(#P + 2) .. '/' .. data.n end",
    BATCH = parts.batch or "{ size = 1000, timeout = 0 }",
    SINKS = parts.sinks or 'function(items) rsghost.redis.call("RPUSH", P .. ":sink1", cjson.encode(items)) end',
  })
end

-- n messages { n = i } on stream P:<name>, i from first.
local function backlog(P, name, n, first, fields)
  local out = {}
  for i = first or 1, (first or 1) + n - 1 do
    out[#out + 1] = { P .. ":" .. name, fields and fields(i) or { "n", tostring(i) } }
  end
  return out
end

local function concat_lists(...)
  local out = {}
  for _, l in ipairs { ... } do for _, x in ipairs(l) do out[#out + 1] = x end end
  return out
end

local function check(case)
  local host, kit, run = C.run(case)
  C.assert_same(host, kit, run)
  assert.is_true(run.kit_finished, "the kit's stop did not finish")
  return host, kit, run
end

describe("the test kit against the host (conformance)", function()
  after_each(function() H.cleanup() end)

  it("reads larger than a batch, batch.timeout = 0: a batch per read, at most size", function()
    -- read_chunk is max(batch.size, 1000): with size 300 a read of the
    -- backlog brings up to 1000 messages, cut into batches of 300.
    local host, _, run = check {
      script = script { batch = "{ size = 300, timeout = 0 }" },
      messages = function(P) return backlog(P, "s", 2500) end,
    }
    local n, biggest = 0, 0
    for _, b in ipairs(host.batches[1]) do
      n = n + #b
      assert.is_true(#b <= 300)
    end
    for _, size in ipairs(run.read_sizes) do biggest = math.max(biggest, size) end
    assert.equal(2500, n)
    assert.is_true(biggest > 300, "no read was larger than a batch: " .. C.show(run.read_sizes))
    -- The host cut the backlog by the rule the kit checks its reads against
    -- (rsgReadCount: read_chunk, max(size, 1000), per read), after a first
    -- read of one message (no message size known yet: the byte bound). A
    -- host that sized its reads another way fails here, not only a kit.
    assert.same({ 1, 1000, 1000, 499 }, run.read_sizes)
  end)

  it("source.count = nil: reads of up to read_chunk per stream, two streams", function()
    local host, _, run = check {
      script = script {
        source = '{ streams = { P .. ":a", P .. ":b" }, group = P .. ":g" }',
        batch = "{ size = 500, timeout = 0 }",
      },
      messages = function(P) return concat_lists(backlog(P, "a", 1500), backlog(P, "b", 800)) end,
    }
    local n = 0
    for _, b in ipairs(host.batches[1]) do n = n + #b end
    assert.equal(2300, n)
    assert.is_true(#run.reads >= 3, C.show(run.read_sizes))
  end)

  it("source.count = 7: reads of up to 7 per stream; batch.timeout = false, the stop flushes the rest", function()
    local host, _, run = check {
      script = script {
        source = '{ streams = { P .. ":a", P .. ":b" }, group = P .. ":g", count = 7 }',
        batch = "{ size = 10, timeout = false }",
      },
      messages = function(P) return concat_lists(backlog(P, "a", 40), backlog(P, "b", 25)) end,
    }
    for _, size in ipairs(run.read_sizes) do assert.is_true(size <= 14) end
    local batches = host.batches[1]
    assert.equal(7, #batches) -- six full, and the stop's 5
    assert.equal(5, #batches[7])
  end)

  it("invalid UTF-8 in a field value or name: logged, left pending in the group", function()
    local bad = { [5] = true, [17] = true, [33] = true }
    local host = check {
      script = script { batch = "{ size = 20, timeout = 0 }" },
      messages = function(P)
        return backlog(P, "s", 50, 1, function(i)
          if i == 40 then return { "n\xfe", "40", "n", "40" } end -- an invalid field name
          return { "n", tostring(i), "v", bad[i] and ("caf\xe9 " .. i) or ("ok " .. i) }
        end)
      end,
    }
    local P_s
    for key in pairs(host.pending) do P_s = key end
    assert.equal(4, #host.pending[P_s])
    assert.equal(4, #host.logs)
  end)

  it("preprocess raises on some messages: logged with file:line, left pending", function()
    local host = check {
      script = script {
        batch = "{ size = 25, timeout = 0 }",
        preprocess = [[function(stream, id, data)
    if tonumber(data.n) % 10 == 3 then error("no threes: " .. data.n) end
    return data.n
  end]],
      },
      messages = function(P) return backlog(P, "s", 100) end,
    }
    local P_s
    for key in pairs(host.pending) do P_s = key end
    assert.equal(10, #host.pending[P_s])
    assert.equal(10, #host.logs)
    assert.matches("script%.lua:%d+: no threes: 3$", host.logs[1])
  end)

  it("messages preprocess drops (nil) are acked", function()
    local host = check {
      script = script {
        batch = "{ size = 25, timeout = 0 }",
        preprocess = [[function(stream, id, data)
    if tonumber(data.n) % 4 == 0 then return nil end
    return data.n
  end]],
      },
      messages = function(P) return backlog(P, "s", 100) end,
    }
    local n = 0
    for _, b in ipairs(host.batches[1]) do n = n + #b end
    assert.equal(75, n)
    for _, ids in pairs(host.acked) do assert.equal(100, #ids) end
    for _, ids in pairs(host.pending) do assert.equal(0, #ids) end
  end)

  it("two sinks, the second failing once: only it is retried, then everything is acked", function()
    local host = check {
      script = script {
        source = '{ streams = P .. ":s", group = P .. ":g", count = 10 }',
        batch = "{ size = 10, timeout = 0 }",
        extra = "local calls = 0",
        sinks = [[{
    function(items) rsghost.redis.call("RPUSH", P .. ":sink1", cjson.encode(items)) end,
    function(items)
      calls = calls + 1
      if calls == 2 then error("sink 2 fails once") end
      rsghost.redis.call("RPUSH", P .. ":sink2", cjson.encode(items))
    end,
  }]],
      },
      messages = function(P) return backlog(P, "s", 45) end,
    }
    assert.same(host.batches[1], host.batches[2])
    assert.equal(2, #host.logs)
    assert.matches("^error: sink 2 of 2 failed on a batch of %d+ messages %(attempt 1%), retrying in 0.05s: "
      .. ".-script%.lua:%d+: sink 2 fails once$", host.logs[1])
    assert.matches("^info: a batch of %d+ messages was sunk on attempt 2; reading resumes$", host.logs[2])
  end)

  it("plain streams with a checkpoint: batches, and the checkpoint past what was dropped or failed", function()
    local host, _, run = check {
      script = script {
        source = '{ streams = { P .. ":a", P .. ":b" }, start = "0", checkpoint = P .. ":cp" }',
        batch = "{ size = 10, timeout = 0 }",
        preprocess = [[function(stream, id, data)
    local n = tonumber(data.n)
    if n % 7 == 0 then error("no sevens") end
    if n % 5 == 0 then return nil end
    return stream:sub(#P + 2) .. "/" .. data.n
  end]],
      },
      -- Each stream's last message fails (35 and 21): the checkpoint still
      -- moves past it. a's message 12 is not valid UTF-8: skipped, given up too.
      messages = function(P)
        return concat_lists(backlog(P, "a", 35, 1, function(i)
          return { "n", tostring(i), "v", i == 12 and "caf\xe9" or "ok" }
        end), backlog(P, "b", 21))
      end,
    }
    local last = {}
    for _, m in ipairs(run.messages) do last[m.key] = m.id end
    assert.same(last, host.checkpoint)
    assert.equal(1, #C.matching(host.logs, "skipped %(plain streams keep no pending list%): the value of field 'v'"))
    assert.equal(5 + 3, #C.matching(host.logs, "^error: preprocess failed on message .* no sevens$"))
  end)

  it("reliable lists: batches, and what is left in the processing lists", function()
    local host = check {
      script = script {
        source = '{ lists = { P .. ":l1", P .. ":l2" }, reliable = true }',
        batch = "{ size = 5, timeout = 0 }",
        preprocess = [[function(list, item)
    if item:find("x$") then error("no x: " .. item) end
    return list:sub(#P + 2) .. "/" .. item
  end]],
      },
      messages = function(P)
        local out = {}
        for i = 1, 30 do out[#out + 1] = { P .. ":l1", "one-" .. i .. (i % 9 == 0 and "x" or "") } end
        for i = 1, 12 do out[#out + 1] = { P .. ":l2", "two-" .. i .. (i % 5 == 0 and "x" or "") } end
        return out
      end,
    }
    local left = 0
    for _, items in pairs(host.pending) do left = left + #items end
    assert.equal(5, left)
  end)

  it("reliable lists: an item that is not valid UTF-8 is logged and left in the processing list", function()
    local host = check {
      script = script {
        source = '{ lists = P .. ":l", reliable = true }',
        batch = "{ size = 5, timeout = 0 }",
        preprocess = "function(list, item) return item end",
      },
      messages = function(P)
        local out = {}
        for i = 1, 12 do out[#out + 1] = { P .. ":l", i == 7 and ("caf\xe9-" .. i) or ("item-" .. i) } end
        return out
      end,
    }
    local left = 0
    for _, items in pairs(host.pending) do left = left + #items end
    assert.equal(1, left)
    assert.equal(1, #host.logs)
  end)

  it("plain lists: an item that is not valid UTF-8 is logged and dropped", function()
    local host = check {
      script = script {
        source = '{ lists = P .. ":l", count = 4 }',
        batch = "{ size = 3, timeout = 0 }",
        preprocess = "function(list, item) return item end",
      },
      messages = function(P)
        local out = {}
        for i = 1, 10 do out[#out + 1] = { P .. ":l", i == 6 and ("caf\xe9-" .. i) or ("item-" .. i) } end
        return out
      end,
    }
    local n = 0
    for _, b in ipairs(host.batches[1]) do n = n + #b end
    assert.equal(9, n)
    assert.equal(1, #host.logs)
  end)

  -- Dead letters: what each kind of source dead-letters, with which error,
  -- delivery count and fields, is the same in the host and the kit.
  local function dead_settled(want)
    return function(_, t)
      return t.redis:call("XLEN", t.prefix .. ":dlq") >= want
    end
  end

  it("a group with dead_letter: preprocess errors, invalid bytes and a rejected item, dead-lettered alike",
    function()
    local host = check {
      script = script {
        source = '{ streams = P .. ":s", group = P .. ":g", dead_letter = P .. ":dlq" }',
        batch = "{ size = 10, timeout = 0 }",
        preprocess = [[function(stream, id, data)
    if tonumber(data.n) % 10 == 3 then error("no threes: " .. data.n) end
    return data.n
  end]],
      },
      messages = function(P)
        return backlog(P, "s", 40, 1, function(i)
          return { "n", tostring(i), "v", i == 17 and "caf\xe9" or "ok", "v", "dup" }
        end)
      end,
      host_wait = dead_settled(5),
    }
    assert.equal(5, #host.dead)
    assert.equal(1, #C.matching(host.dead, " the value of field 'v' is "))
    for _, ids in pairs(host.pending) do assert.equal(0, #ids) end
  end)

  it("plain streams with a checkpoint and dead_letter: the checkpoint passes what was dead-lettered",
    function()
    local host, _, run = check {
      script = script {
        source = '{ streams = P .. ":a", start = "0", checkpoint = P .. ":cp", dead_letter = P .. ":dlq" }',
        batch = "{ size = 10, timeout = 0 }",
        preprocess = [[function(stream, id, data)
    if tonumber(data.n) % 7 == 0 then error("no sevens") end
    return data.n
  end]],
      },
      messages = function(P)
        return backlog(P, "a", 35, 1, function(i)
          return { "n", tostring(i), "v", i == 12 and "caf\xe9" or "ok" }
        end)
      end,
      host_wait = dead_settled(6),
    }
    assert.equal(6, #host.dead)
    assert.equal(run.messages[#run.messages].id, host.checkpoint[run.P .. ":a"])
  end)

  it("reliable lists with dead_letter: the item as field item, out of the processing list", function()
    local host = check {
      script = script {
        source = '{ lists = P .. ":l", reliable = true, dead_letter = P .. ":dlq" }',
        batch = "{ size = 5, timeout = 0 }",
        preprocess = [[function(list, item)
    if item:find("x$") then error("no x: " .. item) end
    return item
  end]],
      },
      messages = function(P)
        local out = {}
        for i = 1, 20 do
          out[#out + 1] = { P .. ":l", i == 7 and ("caf\xe9-" .. i) or ("item-" .. i .. (i % 6 == 0 and "x" or "")) }
        end
        return out
      end,
      host_wait = dead_settled(4),
    }
    assert.equal(4, #host.dead)
    for _, items in pairs(host.pending) do assert.equal(0, #items) end
  end)
end)
