local ffi = require "ffi"
local handover = require "rsghost.handover"

-- Builds what the C host hands over: an array of rsg_msg structs. The
-- returned read holds the strings the structs point at, so they live as
-- long as the read does.
local function c_read(msgs)
  local keep = {}
  local function str(dst, s)
    keep[#keep + 1] = s
    dst.p, dst.len = s, #s
  end
  local arr = ffi.new("rsg_msg[?]", #msgs)
  local nfv = 0
  for _, m in ipairs(msgs) do nfv = nfv + (m.fields and #m.fields or 1) end
  local fv = ffi.new("rsg_str[?]", nfv)
  local used = 0
  for i, m in ipairs(msgs) do
    local e = arr[i - 1]
    str(e.stream, m.stream)
    str(e.id, m.id)
    e.fv = fv + used
    if m.fields then
      e.nfields = #m.fields / 2
      for k, s in ipairs(m.fields) do str(fv[used + k - 1], s) end
      used = used + #m.fields
    else
      e.nfields = -1
      if m.item then
        str(fv[used], m.item)
        used = used + 1
      else
        e.fv = nil
      end
    end
  end
  return { arr = arr, n = #msgs, keep = keep, fv = fv }
end

-- A stand-in pipeline that records what feed received.
local function recorder()
  local r = { calls = {} }
  function r:feed(flat, n)
    local copy = {}
    for i = 1, 3 * n do copy[i] = flat[i] end
    self.calls[#self.calls + 1] = { n = n, msgs = copy }
  end
  return r
end

describe("rsghost.handover", function()
  it("turns one read into one feed of stream, id and a field table per message", function()
    local p = recorder()
    local feed = handover.feeder(p)
    local read = c_read {
      { stream = "orders", id = "1-0", fields = { "user", "42", "event", "click" } },
      { stream = "clicks", id = "1-1", fields = { "a", "" } },
    }
    feed(read.arr, read.n)
    assert.equal(1, #p.calls)
    assert.equal(2, p.calls[1].n)
    assert.same({ "orders", "1-0", { user = "42", event = "click" }, "clicks", "1-1", { a = "" } },
      p.calls[1].msgs)
  end)

  it("lets the last of duplicate field names win", function()
    local p = recorder()
    local read = c_read { { stream = "s", id = "1-0", fields = { "f", "first", "f", "last" } } }
    handover.feeder(p)(read.arr, read.n)
    assert.same({ f = "last" }, p.calls[1].msgs[3])
  end)

  it("keeps bytes as they are, NULs included", function()
    local p = recorder()
    local read = c_read { { stream = "s", id = "1-0", fields = { "bin", "a\0b\255" } } }
    handover.feeder(p)(read.arr, read.n)
    assert.equal("a\0b\255", p.calls[1].msgs[3].bin)
  end)

  it("gives a list item its converted text, apart from the raw token acks use", function()
    local p = recorder()
    local read = c_read {
      { stream = "jobs", id = "caf\233", item = "caf\195\169" },
      { stream = "jobs", id = "plain" },
    }
    handover.feeder(p)(read.arr, read.n)
    assert.same({ "jobs", "caf\233", "caf\195\169", "jobs", "plain", false }, p.calls[1].msgs)
  end)

  it("feeds an empty table for an entry without fields", function()
    local p = recorder()
    local read = c_read { { stream = "s", id = "1-0", fields = {} } }
    handover.feeder(p)(read.arr, read.n)
    assert.same({}, p.calls[1].msgs[3])
  end)
end)
