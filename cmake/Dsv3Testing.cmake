# dsv3_add_test(NAME name SOURCES a.cpp ... [NPROCS n] [LABELS l ...] [LIBRARIES t ...] [TIMEOUT s])
# builds a doctest executable (with the MPI-aware main of tests/support) and registers it with ctest,
# run under mpiexec with n ranks. The flags that let Open MPI run as root and start more ranks than cores
# live here, once.
set(DSV3_MPIEXEC_FLAGS "")
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _dsv3_mpiexec_version ERROR_QUIET)
if(_dsv3_mpiexec_version MATCHES "Open MPI|OpenRTE")
  list(APPEND DSV3_MPIEXEC_FLAGS --oversubscribe --bind-to none)
  execute_process(COMMAND id -u OUTPUT_VARIABLE _dsv3_uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(_dsv3_uid STREQUAL "0")
    list(APPEND DSV3_MPIEXEC_FLAGS --allow-run-as-root)
  endif()
endif()

function(dsv3_add_test)
  cmake_parse_arguments(ARG "" "NAME;NPROCS;TIMEOUT" "SOURCES;LABELS;LIBRARIES" ${ARGN})
  if(NOT ARG_NPROCS)
    set(ARG_NPROCS 1)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE dsv3_test_support dsv3_compile_options ${ARG_LIBRARIES})
  add_test(NAME ${ARG_NAME}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ARG_NPROCS} ${DSV3_MPIEXEC_FLAGS}
            ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${ARG_NAME}> ${MPIEXEC_POSTFLAGS})
  set_tests_properties(${ARG_NAME} PROPERTIES
    LABELS "${ARG_LABELS}" PROCESSORS ${ARG_NPROCS} TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
endfunction()
