# Build against musl instead of glibc with Debian's musl-tools (CI's musl step, docs/testing.md):
#
#   cmake -S . -B build-musl -DCMAKE_TOOLCHAIN_FILE=cmake/musl-gcc.cmake
#
# musl-gcc wraps the host gcc with musl's headers and start files, so the programs run here
# directly. It has no C++ library and no musl builds of libnats or Python: the header's C++
# check, the relay and the Python binding are left out of this build (they skip, saying so).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${CMAKE_HOST_SYSTEM_PROCESSOR})
set(CMAKE_C_COMPILER musl-gcc)
set(CMAKE_CXX_COMPILER CMAKE_CXX_COMPILER-NOTFOUND)
# musl's include path holds no kernel headers (linux/futex.h, linux/magic.h and the asm/ they
# include). The host's are libc-neutral: link just those three folders into the build tree and
# search it last, so no glibc header can stand in for a musl one (sys/rseq.h, for one, must stay
# missing, or os.h would read glibc's rseq area).
set(PBX_MUSL_KERNEL_HEADERS ${CMAKE_BINARY_DIR}/musl-kernel-headers)
if(NOT EXISTS ${PBX_MUSL_KERNEL_HEADERS}/linux)
  file(MAKE_DIRECTORY ${PBX_MUSL_KERNEL_HEADERS})
  file(CREATE_LINK /usr/include/linux ${PBX_MUSL_KERNEL_HEADERS}/linux SYMBOLIC)
  file(CREATE_LINK /usr/include/asm-generic ${PBX_MUSL_KERNEL_HEADERS}/asm-generic SYMBOLIC)
  file(CREATE_LINK /usr/include/${CMAKE_HOST_SYSTEM_PROCESSOR}-linux-gnu/asm
       ${PBX_MUSL_KERNEL_HEADERS}/asm SYMBOLIC)
endif()
# cmake/musl-compat.h supplies what musl 1.2.3 lacks (renameat2), in front of every file.
set(CMAKE_C_FLAGS_INIT
    "-idirafter ${PBX_MUSL_KERNEL_HEADERS} -include ${CMAKE_CURRENT_LIST_DIR}/musl-compat.h")
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${CMAKE_HOST_SYSTEM_PROCESSOR}-linux-musl/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
