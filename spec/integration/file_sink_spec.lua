-- rsghost.sink.file: a batch is acked only once its lines are written and
-- fsync'd (off the loop), so a kill -9 right after an ack finds them in the
-- file; a rotation (mv, with or without SIGHUP) loses no line.
local H = require "support.host"

local FILE = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = {{SIZE}} },
  sink = rsghost.sink.file("{{PATH}}"),
}
]]

-- The lines of the file at path ({} if it does not exist).
local function lines(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

local function concat(...)
  local out = {}
  for _, t in ipairs { ... } do for _, v in ipairs(t) do out[#out + 1] = v end end
  return out
end

describe("rsghost.sink.file", function()
  after_each(function() H.cleanup() end)

  it("has every acked message's line in the file after a kill -9 right after an ack", function()
    local t = H.context()
    local P = t.prefix
    local path = t.dir .. "/out.log"
    local script = H.script(t, FILE, { SIZE = 10, PATH = path })
    local h = H.start(t, { script = script, consumer = "c1", log_level = "info" })
    H.eventually(function() return H.group_info(t.redis, P .. ":s", P .. ":g") end, 30,
      function() return h:describe() end)
    local ids = H.xadd_many(t.redis, P .. ":s", 2000)
    -- Kill the moment the first acks show: delivered minus pending.
    local function acked_count()
      local last = H.group_info(t.redis, P .. ":s", P .. ":g")["last-delivered-id"]
      local delivered = 0
      for _, id in ipairs(ids) do
        if H.id_less(last, id) then break end
        delivered = delivered + 1
      end
      return delivered - H.xpending(t.redis, P .. ":s", P .. ":g").count
    end
    H.eventually(function() return acked_count() > 0 end, 60, function() return h:describe() end)
    assert.equal("signal 9", h:kill())
    local pending = H.pending_ids(t.redis, P .. ":s", P .. ":g")
    local last = H.group_info(t.redis, P .. ":s", P .. ":g")["last-delivered-id"]
    local written = H.tally(lines(path))
    local acked = 0
    for _, id in ipairs(ids) do
      if not pending[id] and not H.id_less(last, id) then
        acked = acked + 1
        assert.is_true((written[id] or 0) >= 1, id .. " was acked but its line is not in the file")
      end
    end
    assert.is_true(acked > 0)
    assert.is_true(acked < #ids, "everything was acked before the kill: nothing was tested mid-run")
    -- The restart replays what was pending: every message is in the file.
    h = H.start(t, { script = script, consumer = "c1", log_level = "info" })
    H.eventually(function()
      return H.xpending(t.redis, P .. ":s", P .. ":g").count == 0 and #lines(path) >= #ids
    end, 60, function() return h:describe() end)
    local c = H.compare(ids, lines(path))
    assert.same({}, c.missing, "lines lost across kill -9")
    assert.same({}, c.unexpected)
    print(string.format("\nfile sink: kill -9 after %d of %d messages were acked: all in the file; "
      .. "%d written twice (sunk, not yet acked, replayed)", acked, #ids, c.duplicates))
    assert.equal(0, h:stop(), h:describe())
  end)

  for _, how in ipairs { "mv + SIGHUP", "mv alone", "mv + SIGHUP to a --workers master" } do
    it("loses no line when the file is rotated (" .. how .. ")", function()
      local t = H.context()
      local P = t.prefix
      local path = t.dir .. "/out.log"
      -- The master passes SIGHUP on to its worker.
      local args = how:find("workers") and { "--workers", "1" } or nil
      local h = H.start(t, { script = H.script(t, FILE, { SIZE = 20, PATH = path }), log_level = "info",
        args = args })
      local ids = H.xadd_many(t.redis, P .. ":s", 500)
      H.eventually(function() return #lines(path) >= 500 end, 60, function() return h:describe() end)
      -- Rotate while messages keep coming.
      for _, id in ipairs(H.xadd_many(t.redis, P .. ":s", 500)) do ids[#ids + 1] = id end
      assert.is_true(os.rename(path, path .. ".1"))
      if how:find("SIGHUP") then assert.is_true(h:signal("HUP")) end
      for _ = 1, 5 do
        for _, id in ipairs(H.xadd_many(t.redis, P .. ":s", 200)) do ids[#ids + 1] = id end
        H.sleep(0.05)
      end
      H.eventually(function()
        return H.xpending(t.redis, P .. ":s", P .. ":g").count == 0
          and #lines(path) + #lines(path .. ".1") >= #ids
      end, 60, function() return h:describe() end)
      H.assert_exactly_once(ids, concat(lines(path .. ".1"), lines(path)), "lines")
      assert.is_true(#lines(path) > 0, "nothing was written to the new file")
      assert.is_true(#lines(path .. ".1") >= 500)
      local why = how:find("SIGHUP") and "reopening '.-' %(SIGHUP%)" or "reopening '.-' %(the path names another file now%)"
      assert.is_truthy(h:log():find(why), h:describe())
      assert.is_true(h:alive(), "SIGHUP stopped the host")
      assert.equal(0, h:stop(), h:describe())
    end)
  end

  it("waits off the loop: reads and the other sinks go on while the file blocks", function()
    local t = H.context()
    local P = t.prefix
    -- Opening a FIFO for writing blocks until a reader comes: the blocked
    -- open must sit on libuv's threadpool, not on the event loop.
    local fifo = t.dir .. "/fifo"
    local made = os.execute("mkfifo '" .. fifo .. "'")
    assert.is_true(made == 0 or made == true, "mkfifo failed")
    local src = [[
local rsghost = require "rsghost"
local P = "{{P}}"
return {
  source = { streams = P .. ":s", group = P .. ":g", timeout = 0.2 },
  preprocess = function(stream, id, data) return id end,
  batch = { size = 10 },
  sink = { rsghost.sink.file("{{PATH}}"), rsghost.sink.redis_list(P .. ":out") },
}
]]
    local h = H.start(t, { script = H.script(t, src, { PATH = fifo }), log_level = "info" })
    local ids = H.xadd_many(t.redis, P .. ":s", 50)
    -- The list sink wrote the first batch (what the first read brought),
    -- and every message was read, while the file sink still waits for its
    -- open; the later batches wait behind the first.
    H.eventually(function()
      return t.redis:call("LLEN", P .. ":out") > 0 and H.xpending(t.redis, P .. ":s", P .. ":g").count == 50
    end, 60, function()
      return string.format("%d in the list, %d pending\n%s", t.redis:call("LLEN", P .. ":out"),
        H.xpending(t.redis, P .. ":s", P .. ":g").count, h:describe())
    end)
    assert.is_true(t.redis:call("LLEN", P .. ":out") <= 10)
    -- A reader comes: the batches go through, one after the other.
    local reader = assert(io.open(fifo, "r"))
    local got = {}
    for _ = 1, 50 do got[#got + 1] = reader:read("*l") end
    reader:close()
    H.assert_exactly_once(ids, got, "lines")
    H.eventually(function() return H.xpending(t.redis, P .. ":s", P .. ":g").count == 0 end, 60,
      function() return h:describe() end)
    assert.equal(0, h:stop(), h:describe())
  end)

  it("fails a batch whose item is not a string, saying what to do, and leaves it pending", function()
    local t = H.context()
    local P = t.prefix
    local path = t.dir .. "/out.log"
    local src = FILE:gsub("return id end", "return { id = id } end")
    local h = H.start(t, { script = H.script(t, src, { SIZE = 5, PATH = path }), log_level = "info" })
    H.xadd_many(t.redis, P .. ":s", 5)
    H.eventually(function() return h:log():find("item 1 is a table", 1, true) end, 60,
      function() return h:describe() end)
    assert.matches("cjson.encode(t) for a table", h:log(), 1, true)
    assert.equal(5, H.xpending(t.redis, P .. ":s", P .. ":g").count)
    assert.same({}, lines(path))
    -- The stop gives up on the batch its sink keeps failing: exit status 1.
    assert.equal(1, h:stop(), h:describe())
    assert.equal(5, H.xpending(t.redis, P .. ":s", P .. ":g").count)
  end)
end)
