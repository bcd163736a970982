# Cross-build for 64-bit ARM Linux with Debian's gcc-aarch64-linux-gnu (CI's aarch64 step,
# docs/testing.md). x86 has a strong memory order and postbox leans on it in two places
# (pbx__event_signal in src/shm/wait.h, pbx__os_cpu_tag and pbx__os_cpu_relax in src/os/os.h);
# this build compiles the other branch of each, and CI runs the tests under qemu-user:
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64
#   (ctest finds qemu-aarch64 through CMAKE_CROSSCOMPILING_EMULATOR)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(PBX_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${PBX_CROSS_TRIPLE}-gcc)
# g++-aarch64-linux-gnu is optional: without it the header's C++ check is left out.
find_program(PBX_CROSS_CXX ${PBX_CROSS_TRIPLE}-g++)
if(PBX_CROSS_CXX)
  set(CMAKE_CXX_COMPILER ${PBX_CROSS_CXX})
else()
  set(CMAKE_CXX_COMPILER CMAKE_CXX_COMPILER-NOTFOUND)
endif()
set(PBX_CROSS_SYSROOT /usr/${PBX_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH ${PBX_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Host pkg-config would find the x86 libnats and python headers: look in the sysroot only, so
# the relay and the Python binding are left out of this build (they are not what it checks).
set(ENV{PKG_CONFIG_LIBDIR} ${PBX_CROSS_SYSROOT}/lib/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
find_program(PBX_QEMU_AARCH64 qemu-aarch64)
if(PBX_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${PBX_QEMU_AARCH64};-L;${PBX_CROSS_SYSROOT})
endif()
