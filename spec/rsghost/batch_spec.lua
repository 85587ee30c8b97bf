local batch = require "rsghost.batch"

-- A virtual clock that counts how often it is read.
local function clock()
  local c = { t = 0, reads = 0 }
  c.now = function()
    c.reads = c.reads + 1
    return c.t
  end
  return c
end

describe("rsghost.batch", function()
  describe("size", function()
    it("hands out the batch on the item that fills it, in arrival order", function()
      local b = batch.new(3, nil, clock().now)
      assert.is_nil(b:add("a", "s1", "1-0"))
      assert.is_nil(b:add("b", "s2", "1-0"))
      local full = b:add("c", "s1", "2-0")
      assert.same({ items = { "a", "b", "c" }, streams = { "s1", "s2", "s1" },
        ids = { "1-0", "1-0", "2-0" }, n = 3 }, full)
      assert.equal(0, b.n)
    end)

    it("starts an empty batch after a full one", function()
      local b = batch.new(2, nil, clock().now)
      b:add("a", "s", "1")
      local first = b:add("b", "s", "2")
      b:add("c", "s", "3")
      local second = b:add("d", "s", "4")
      assert.same({ "a", "b" }, first.items)
      assert.same({ "c", "d" }, second.items)
    end)

    it("emits every item alone with size 1", function()
      local b = batch.new(1, nil, clock().now)
      assert.same({ "x" }, b:add("x", "s", "1").items)
      assert.same({ "y" }, b:add("y", "s", "2").items)
    end)
  end)

  describe("timeout", function()
    it("is measured from the batch's first item", function()
      local c = clock()
      local b = batch.new(100, 3, c.now)
      c.t = 10
      b:add("a", "s", "1")
      c.t = 12
      b:add("b", "s", "2")
      assert.equal(13, b:deadline())
      assert.is_nil(b:expired(12.99))
      assert.same({ "a", "b" }, b:expired(13).items)
    end)

    it("reads the clock once per batch, on its first item", function()
      local c = clock()
      local b = batch.new(100, 3, c.now)
      for i = 1, 50 do b:add(i, "s", tostring(i)) end
      assert.equal(1, c.reads)
    end)

    it("restarts with the next batch", function()
      local c = clock()
      local b = batch.new(2, 3, c.now)
      b:add("a", "s", "1")
      c.t = 1
      b:add("b", "s", "2") -- full: handed out
      assert.is_nil(b:deadline())
      c.t = 5
      b:add("c", "s", "3")
      assert.equal(8, b:deadline())
    end)

    it("has no deadline without a timeout, nor when empty", function()
      local c = clock()
      local untimed = batch.new(10, nil, c.now)
      untimed:add("a", "s", "1")
      assert.is_nil(untimed:deadline())
      assert.is_nil(untimed:expired(1e9))
      assert.equal(0, c.reads)
      assert.is_nil(batch.new(10, 3, c.now):deadline())
    end)
  end)

  describe("end of feed", function()
    it("hands out the partial batch when the timeout is 0", function()
      local c = clock()
      local b = batch.new(1000, 0, c.now)
      b:add("a", "s", "1")
      b:add("b", "s", "2")
      assert.same({ "a", "b" }, b:end_of_feed().items)
      assert.is_nil(b:end_of_feed())
      assert.equal(0, c.reads)
    end)

    it("keeps the partial batch for other timeouts", function()
      local b = batch.new(1000, 3, clock().now)
      b:add("a", "s", "1")
      assert.is_nil(b:end_of_feed())
      assert.is_nil(batch.new(1000, nil, clock().now):end_of_feed())
    end)
  end)

  describe("take", function()
    it("returns nil when empty and the partial batch otherwise", function()
      local b = batch.new(10, nil, clock().now)
      assert.is_nil(b:take())
      b:add("a", "s", "1")
      assert.same({ "a" }, b:take().items)
      assert.is_nil(b:take())
    end)
  end)

  describe("acks", function()
    it("groups ids per stream in arrival order", function()
      local b = batch.new(10, nil, clock().now)
      b:add("a", "s1", "1-0")
      b:add("b", "s2", "1-0")
      b:add("c", "s1", "2-0")
      b:add("d", "s1", "3-0")
      b:add("e", "s2", "2-0")
      assert.same({ s1 = { "1-0", "2-0", "3-0" }, s2 = { "1-0", "2-0" } }, batch.acks(b:take()))
    end)
  end)
end)
