-- CTest c/layout: the struct layouts the FFI declarations of the Lua side
-- assume (rsghost.handover's rsg_msg, rsghost.native's rsgRedisUrl,
-- rsghost.hiredis's redisReply and redisContext) are the C compiler's. Run as: luajit layout_test.lua PATH-TO-layout-PROGRAM
package.path = arg[0]:gsub("[^/]*$", "") .. "../../lua/?.lua;" .. package.path
local ffi = require "ffi"
require "rsghost.handover" -- declares rsg_str, rsg_msg
require "rsghost.native"   -- declares rsgAddr, rsgRedisUrl
require "rsghost.hiredis"  -- declares redisReply, redisContext for the hiredis it loaded

-- C name -> FFI name, where they differ.
local FFI_NAME = { rsgStr = "rsg_str", rsgMsg = "rsg_msg" }

local program = arg[1] or error("usage: layout_test.lua LAYOUT-PROGRAM")
local p = assert(io.popen(program))
local checked, failed = 0, 0
for line in p:lines() do
  local what, n = line:match("^(%S+) (%d+)$")
  local struct, field = what:match("^([^.]+)%.(.+)$")
  local ctype = FFI_NAME[struct or what] or (struct or what)
  local got = field and ffi.offsetof(ctype, field) or ffi.sizeof(ctype)
  checked = checked + 1
  if got ~= tonumber(n) then
    failed = failed + 1
    print(string.format("%s: C says %s, the FFI declaration (%s) says %s", what, n, ctype, tostring(got)))
  end
end
assert(p:close(), "the layout program failed")
print(string.format("%d checks, %d failed", checked, failed))
os.exit(failed == 0 and checked > 0 and 0 or 1)
