# install.cmake — what `make install PREFIX=...` (cmake --install) puts where: the shared and
# static libraries, the header, a pkg-config file, a CMake package (find_package(postbox)
# gives postbox::postbox and postbox::postbox_static), the postbox command, the man pages
# and the bash completion. Included from the top-level CMakeLists.txt.
include(CMakePackageConfigHelpers)

# Programs built against the installed copy find the header under PREFIX/include, not in
# this source tree.
set_target_properties(postbox postbox_static PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
  "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>;$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")

install(TARGETS postbox postbox_static EXPORT postboxTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS postbox_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/postbox.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(PBX_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/postbox)
install(EXPORT postboxTargets NAMESPACE postbox:: DESTINATION ${PBX_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/postboxConfig.cmake.in
  ${PROJECT_BINARY_DIR}/postboxConfig.cmake INSTALL_DESTINATION ${PBX_CMAKE_DIR})
# 0.x: a minor version may change the API, so only the same minor version is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/postboxConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/postboxConfig.cmake
              ${PROJECT_BINARY_DIR}/postboxConfigVersion.cmake
        DESTINATION ${PBX_CMAKE_DIR})

install(DIRECTORY ${PROJECT_SOURCE_DIR}/man/man1 ${PROJECT_SOURCE_DIR}/man/man3
        DESTINATION ${CMAKE_INSTALL_MANDIR})
install(FILES ${PROJECT_SOURCE_DIR}/tools/postbox.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME postbox)

# The pkg-config file names the prefix chosen at install time (cmake --install --prefix may
# differ from the one configured) and, for a prefix the dynamic linker does not search, an
# rpath; for one it searches, ldconfig runs. cmake/install_finish.cmake says how and why.
configure_file(${PROJECT_SOURCE_DIR}/cmake/postbox.pc.in ${PROJECT_BINARY_DIR}/postbox.pc.in @ONLY)
install(CODE "
  set(PBX_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  set(PBX_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(PBX_PC_IN \"${PROJECT_BINARY_DIR}/postbox.pc.in\")
  set(PBX_PC_OUT \"${PROJECT_BINARY_DIR}/postbox.pc\")")
install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/install_finish.cmake)
