# Compiler flags shared by every dsv3 target, attached through the dsv3_compile_options interface target.
add_library(dsv3_compile_options INTERFACE)
target_compile_options(dsv3_compile_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-unused-parameter>)
if(NOT DSV3_WITH_OPENMP)
  # The CPU kernels mark their parallel loops with OpenMP pragmas; without OpenMP they run serially.
  target_compile_options(dsv3_compile_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-unknown-pragmas>)
endif()
if(DSV3_NATIVE_ARCH)
  target_compile_options(dsv3_compile_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
if(DSV3_SANITIZE)
  target_compile_options(dsv3_compile_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${DSV3_SANITIZE} -fno-omit-frame-pointer>)
  target_link_options(dsv3_compile_options INTERFACE -fsanitize=${DSV3_SANITIZE})
endif()
