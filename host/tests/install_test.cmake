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
file(REMOVE_RECURSE "${prefix}")
