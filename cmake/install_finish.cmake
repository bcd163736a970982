# install_finish.cmake — run by `cmake --install` (and so by `make install`) after the library
# is in place, so that the documented `cc app.c $(pkg-config --cflags --libs postbox)` works as
# pasted, whatever the prefix:
#
# - It writes and installs postbox.pc for the prefix chosen at install time. Where the dynamic linker does
#   not search the library directory (a user prefix such as $HOME/.local), the pkg-config
#   file's Libs carry an rpath to it, so a program finds libpostbox.so.0 without
#   LD_LIBRARY_PATH.
# - Where the dynamic linker does search it (/usr/local/lib, /usr/lib/...), it runs ldconfig
#   when installing as root into the live system (no DESTDIR), so that a new libpostbox.so.0
#   is in the linker's cache at once; otherwise it says which command to run.
# - Where pkg-config (Debian package pkgconf) does not look in PREFIX/LIB/pkgconfig, or the
#   command's directory is not on PATH, it prints the exact lines to paste.
#
# Inputs, set by install.cmake: PBX_LIBDIR and PBX_BINDIR (relative to the prefix or
# absolute), PBX_PC_IN (the configured postbox.pc.in) and PBX_PC_OUT (where to write postbox.pc
# before installing it).

# An install script runs with the old behaviour of every policy; take that of the project's.
cmake_policy(PUSH)
cmake_policy(VERSION 3.16)

foreach(pbx_dir LIBDIR BINDIR)
  if(IS_ABSOLUTE "${PBX_${pbx_dir}}")
    set(pbx_${pbx_dir} "${PBX_${pbx_dir}}")
  else()
    set(pbx_${pbx_dir} "${CMAKE_INSTALL_PREFIX}/${PBX_${pbx_dir}}")
  endif()
endforeach()

# The directories the dynamic linker searches: its built-in ones, and those ldconfig reads from
# /etc/ld.so.conf (`ldconfig -v -N -X` lists them without touching the cache).
set(pbx_searched /lib /usr/lib /lib64 /usr/lib64)
find_program(PBX_LDCONFIG ldconfig PATHS /sbin /usr/sbin NO_CACHE)
if(PBX_LDCONFIG)
  execute_process(COMMAND ${PBX_LDCONFIG} -v -N -X OUTPUT_VARIABLE pbx_ld_out ERROR_QUIET)
  string(REGEX MATCHALL "(^|\n)/[^:\n]*:" pbx_ld_dirs "${pbx_ld_out}")
  foreach(d ${pbx_ld_dirs})
    string(REGEX REPLACE "^\n?(/[^:]*):$" "\\1" d "${d}")
    list(APPEND pbx_searched "${d}")
  endforeach()
endif()
get_filename_component(pbx_real_libdir "${pbx_LIBDIR}" REALPATH)
set(pbx_system_libdir FALSE)
foreach(d ${pbx_searched})
  get_filename_component(d "${d}" REALPATH)
  if(d STREQUAL pbx_real_libdir)
    set(pbx_system_libdir TRUE)
  endif()
endforeach()

if(pbx_system_libdir)
  set(pbx_rpath "")
else()
  set(pbx_rpath " -Wl,-rpath,\${libdir}")
endif()
file(READ "${PBX_PC_IN}" pbx_pc)
string(REPLACE "%PREFIX%" "${CMAKE_INSTALL_PREFIX}" pbx_pc "${pbx_pc}")
string(REPLACE "%RPATH%" "${pbx_rpath}" pbx_pc "${pbx_pc}")
file(WRITE "${PBX_PC_OUT}" "${pbx_pc}")
file(INSTALL DESTINATION "${pbx_LIBDIR}/pkgconfig" TYPE FILE FILES "${PBX_PC_OUT}")

# Only the live system's cache is refreshed: a DESTDIR install is a staging copy.
if(pbx_system_libdir AND "$ENV{DESTDIR}" STREQUAL "")
  execute_process(COMMAND id -u OUTPUT_VARIABLE pbx_uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(pbx_uid STREQUAL "0" AND PBX_LDCONFIG)
    execute_process(COMMAND ${PBX_LDCONFIG} RESULT_VARIABLE pbx_rc)
    if(pbx_rc EQUAL 0)
      message(STATUS "postbox: ran ldconfig: programs find libpostbox.so.0 in ${pbx_LIBDIR}")
    else()
      message(WARNING "postbox: ldconfig failed; run it as root before starting a program")
    endif()
  else()
    message(STATUS "postbox: run `ldconfig` as root so that programs find libpostbox.so.0 in ${pbx_LIBDIR}")
  endif()
endif()

# Lines to paste, for what the user's environment does not find by itself. Nothing is printed
# for a DESTDIR install, whose paths are not the final ones.
if("$ENV{DESTDIR}" STREQUAL "")
  set(pbx_paste "")
  find_program(PBX_PKG_CONFIG NAMES pkg-config pkgconf NO_CACHE)
  if(NOT PBX_PKG_CONFIG)
    message(STATUS "postbox: pkg-config is not installed (Debian: apt-get install pkgconf)")
  else()
    execute_process(COMMAND ${PBX_PKG_CONFIG} --variable pc_path pkg-config
                    OUTPUT_VARIABLE pbx_pc_path OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    string(REPLACE ":" ";" pbx_pc_path "${pbx_pc_path}:$ENV{PKG_CONFIG_PATH}")
    list(FIND pbx_pc_path "${pbx_LIBDIR}/pkgconfig" pbx_found)
    if(pbx_found EQUAL -1)
      string(APPEND pbx_paste
        "    export PKG_CONFIG_PATH=${pbx_LIBDIR}/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}\n")
    endif()
  endif()
  string(REPLACE ":" ";" pbx_path "$ENV{PATH}")
  list(FIND pbx_path "${pbx_BINDIR}" pbx_found)
  if(pbx_found EQUAL -1)
    string(APPEND pbx_paste "    export PATH=${pbx_BINDIR}:\$PATH\n")
  endif()
  if(NOT pbx_paste STREQUAL "")
    message(STATUS "postbox: to use this prefix, paste into your shell (and ~/.profile):\n${pbx_paste}")
  endif()
endif()

cmake_policy(POP)
