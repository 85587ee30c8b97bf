-- The tutorial's lists example: pop JSON items from two lists, tag each with
-- the list it came from, and push batches of JSON lines onto the list
-- "preprocessed-data".
--
-- Run it with: rsghost examples/lists-consumer.lua
-- (plain lists need no consumer name: there is no group to join).
--
-- Popping takes an item out of Redis for good. Items this process holds when
-- it crashes (kill -9, out of memory, the machine going down) or loses its
-- connection at the wrong moment are lost: read, but not yet in
-- preprocessed-data. A clean stop (Ctrl-C, SIGTERM) is safe: it flushes the
-- partial batch before exiting. If preprocess raises on an item, the error is
-- logged and the item is dropped.
--
-- `reliable = true` in source closes that gap, at the cost of a few more
-- commands per read. Each item is moved atomically into a processing list of
-- this consumer (rsghost:processing:<consumer>:<list>) instead of being
-- popped, and removed from it only after the sink has pushed its batch. A
-- restart with the same consumer name first pushes whatever a crashed run
-- left there through the pipeline, so nothing is lost; a batch written just
-- before a crash may be written twice. It needs a consumer name that stays
-- the same across restarts:
--
--   rsghost examples/lists-consumer.lua lists-consumer-1
--
-- Items preprocess raises on then stay in the processing list, where you can
-- inspect them (LRANGE), instead of being dropped.

local rsghost = require "rsghost"
local cjson = require "cjson"

return {
  source = {
    -- A name or a list of names. Items are taken from the head (left), so
    -- producers RPUSH.
    lists = { "data-source-1", "data-source-2" },
    -- reliable = true,
  },

  -- Lists give (list name, item): the item is the raw string, here JSON.
  preprocess = function(list, item)
    local data = cjson.decode(item)
    data._source = list
    return cjson.encode(data)
  end,

  -- Up to 1000 items at a time, or whatever arrived within 3 seconds of a
  -- batch's first item.
  batch = { size = 1000, timeout = 3 },

  sink = function(items)
    rsghost.redis.call("RPUSH", "preprocessed-data", table.concat(items, "\n"))
  end,
}
