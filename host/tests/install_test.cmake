# CTest: `cmake --install` into a scratch prefix, then the installed binary
# must find its Lua modules (share/rsghost/lua) with no environment variable
# and load an example script that requires cjson.
set(prefix "${BUILD}/install-test")
file(REMOVE_RECURSE "${prefix}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${prefix}"
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
execute_process(COMMAND "${prefix}/bin/rsghost" --check "${SRC}/examples/simple-consumer-group.lua" c1
                WORKING_DIRECTORY "${prefix}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES ": ok")
  message(FATAL_ERROR "installed rsghost --check failed (${rc}): ${out}${err}")
endif()
# The test kit, run from the installed modules, finds the host's rules
# (librsghost_rules.so) by itself.
find_program(LUAJIT_BIN luajit)
if(LUAJIT_BIN)
  execute_process(COMMAND "${LUAJIT_BIN}" -e
                  "package.path='${prefix}/share/rsghost/lua/?.lua;'..package.path
                   local n = require 'rsghost.native'
                   assert(n.read_count(10, 1, 0, 1000) == 10)
                   print('rules from ' .. n.where)"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "share/rsghost/lua/../lib/librsghost_rules.so")
    message(FATAL_ERROR "installed rsghost.native did not find its library (${rc}): ${out}${err}")
  endif()
endif()
file(REMOVE_RECURSE "${prefix}")
