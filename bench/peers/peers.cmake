# The peers users would pick, measured beside postbox by pbx_bench's "peers" case
# (bench/peers/, docs/performance.md "Peers"). Included from bench/CMakeLists.txt. Each peer is
# built only when its library is found; the case names the Debian package of any that is not.
target_sources(pbx_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/case_peers.c
                                 ${CMAKE_CURRENT_LIST_DIR}/tr_pbxloan.c)
target_include_directories(pbx_bench PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
set(_peers_found "")
set(_peers_missing "")

# ZeroMQ (libzmq3-dev): no CMake package on Debian; the header and the library suffice.
find_path(PBX_ZMQ_INCLUDE zmq.h)
find_library(PBX_ZMQ_LIB zmq)
if(PBX_ZMQ_INCLUDE AND PBX_ZMQ_LIB)
  target_sources(pbx_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/tr_zmq.c)
  target_include_directories(pbx_bench PRIVATE ${PBX_ZMQ_INCLUDE})
  target_link_libraries(pbx_bench PRIVATE ${PBX_ZMQ_LIB})
  target_compile_definitions(pbx_bench PRIVATE PBX_HAVE_ZMQ)
  list(APPEND _peers_found zmq)
else()
  list(APPEND _peers_missing "zmq (libzmq3-dev)")
endif()

# nng (libnng-dev) ships a CMake package.
find_package(nng CONFIG QUIET)
if(nng_FOUND)
  target_sources(pbx_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/tr_nng.c)
  target_link_libraries(pbx_bench PRIVATE nng::nng)
  target_compile_definitions(pbx_bench PRIVATE PBX_HAVE_NNG)
  list(APPEND _peers_found nng)
else()
  list(APPEND _peers_missing "nng (libnng-dev)")
endif()

# Boost.Interprocess (libboost-dev): header-only, but C++.
find_path(PBX_BOOST_IPC_INCLUDE boost/interprocess/ipc/message_queue.hpp)
find_package(Threads QUIET)
if(CMAKE_CXX_COMPILER AND PBX_BOOST_IPC_INCLUDE AND Threads_FOUND)
  target_sources(pbx_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/tr_boost.cpp)
  target_include_directories(pbx_bench PRIVATE ${PBX_BOOST_IPC_INCLUDE})
  target_link_libraries(pbx_bench PRIVATE Threads::Threads)
  target_compile_definitions(pbx_bench PRIVATE PBX_HAVE_BOOST_IPC)
  list(APPEND _peers_found boost)
else()
  list(APPEND _peers_missing "boost (libboost-dev and a C++ compiler)")
endif()

# iceoryx's C binding (libiceoryx-binding-c-dev); its daemon iox-roudi (iceoryx) is looked
# for at run time.
find_package(iceoryx_binding_c CONFIG QUIET)
if(iceoryx_binding_c_FOUND)
  target_sources(pbx_bench PRIVATE ${CMAKE_CURRENT_LIST_DIR}/tr_iceoryx.c)
  target_link_libraries(pbx_bench PRIVATE iceoryx_binding_c::iceoryx_binding_c)
  target_compile_definitions(pbx_bench PRIVATE PBX_HAVE_ICEORYX)
  list(APPEND _peers_found iceoryx)
else()
  list(APPEND _peers_missing "iceoryx (libiceoryx-binding-c-dev)")
endif()

string(REPLACE ";" ", " _peers_found "${_peers_found}")
string(REPLACE ";" ", " _peers_missing "${_peers_missing}")
message(STATUS "postbox: bench peers built: ${_peers_found}")
if(_peers_missing)
  message(STATUS "postbox: bench peers skipped: ${_peers_missing}")
endif()
