-- examples/file-consumer.lua with the rsghost test kit: the kit appends to
-- the real file, at once.
local cjson = require "cjson"
local ffi = require "ffi"
local testing = require "rsghost.testing"

pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite);")

local SCRIPT = "examples/file-consumer.lua"

describe("file-consumer.lua", function()
  it("appends each message as a JSON line tagged with its stream and id, then acks", function()
    local path = os.tmpname()
    ffi.C.setenv("EVENTS_FILE", path, 1)
    local k = testing.load(SCRIPT, { consumer = "consumer-1" })
    k:feed("source-stream-1", "1-0", { n = "1" })
    k:feed("source-stream-2", "5-0", { n = "2" })
    assert.same({}, k:acked()) -- a batch waits up to 1 s
    k:advance(1)
    local lines = {}
    for line in io.lines(path) do lines[#lines + 1] = cjson.decode(line) end
    os.remove(path)
    assert.same({ { n = "1", _source = "source-stream-1", _id = "1-0" },
      { n = "2", _source = "source-stream-2", _id = "5-0" } }, lines)
    assert.same({ ["source-stream-1"] = { "1-0" }, ["source-stream-2"] = { "5-0" } }, k:acked())
  end)
end)
