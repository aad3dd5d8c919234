# Script mode (cmake -P): install the build tree, configure/build/run the consumer project against it.
file(REMOVE_RECURSE "${SCRATCH_DIR}")
set(prefix "${SCRATCH_DIR}/prefix")

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${description} failed (${status}):\n${output}")
  endif()
  message(STATUS "${description}: ok")
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

run_step("cmake --install" ${CMAKE_COMMAND} --install "${DSV3_BUILD_DIR}" --prefix "${prefix}")
run_step("configure the consumer" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${SCRATCH_DIR}/consumer"
         -G "${CONSUMER_GENERATOR}" -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run_step("build the consumer" ${CMAKE_COMMAND} --build "${SCRATCH_DIR}/consumer")
run_step("run the consumer" "${SCRATCH_DIR}/consumer/dsv3_consumer")
if(NOT step_output MATCHES "y = \\[5, 11\\]")
  message(FATAL_ERROR "the consumer printed an unexpected result:\n${step_output}")
endif()
if(NOT EXISTS "${prefix}/bin/dsv3_bench")
  message(FATAL_ERROR "cmake --install did not install bin/dsv3_bench")
endif()
