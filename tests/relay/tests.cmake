# The relay's tests (issue 15). Each TEST(name) in tests/relay/test_relay.c is one CTest case
# "relay.<name>". They start their own nats-server; without nats-server or without libnats
# (then postbox-relay is not built) each one exits 77 naming the missing Debian package.
add_executable(test_relay ${CMAKE_CURRENT_SOURCE_DIR}/tests/relay/test_relay.c
                          ${CMAKE_CURRENT_SOURCE_DIR}/tests/relay/natsd.c)
target_include_directories(test_relay PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tests/relay)
target_link_libraries(test_relay PRIVATE pbx_harness postbox_testing)
if(PBX_RELAY_BUILT)
  target_compile_definitions(test_relay PRIVATE
    PBX_RELAY_BIN="${PROJECT_BINARY_DIR}/tools/postbox-relay")
else()
  target_compile_definitions(test_relay PRIVATE PBX_RELAY_BIN="")
endif()
file(STRINGS ${CMAKE_CURRENT_SOURCE_DIR}/tests/relay/test_relay.c lines
     REGEX "^TEST\\([a-z0-9_]+\\)")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${CMAKE_CURRENT_SOURCE_DIR}/tests/relay/test_relay.c)
foreach(line ${lines})
  string(REGEX REPLACE "^TEST\\(([a-z0-9_]+)\\).*" "\\1" name "${line}")
  add_test(NAME relay.${name} COMMAND test_relay ${name})
  set_tests_properties(relay.${name} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS relay)
endforeach()
