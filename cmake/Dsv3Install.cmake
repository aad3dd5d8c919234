# cmake --install: the apps, the libraries, the public headers and an exported package so another CMake
# project can find_package(dsv3) and link dsv3::dsv3.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

get_property(_dsv3_library_targets GLOBAL PROPERTY DSV3_LIBRARY_TARGETS)
install(TARGETS ${_dsv3_library_targets} EXPORT dsv3Targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY lib/dsv3 DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp"
  PATTERN "cpu" EXCLUDE)  # the CPU kernels' headers are internal to the library
install(EXPORT dsv3Targets NAMESPACE dsv3:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/dsv3)

configure_package_config_file(cmake/dsv3Config.cmake.in "${PROJECT_BINARY_DIR}/dsv3Config.cmake"
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/dsv3)
write_basic_package_version_file("${PROJECT_BINARY_DIR}/dsv3ConfigVersion.cmake" COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/dsv3Config.cmake" "${PROJECT_BINARY_DIR}/dsv3ConfigVersion.cmake"
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/dsv3)
