# End-to-end tests of the postbox command (tests/cli/cli.sh): each case a CTest test named
# cli.CASE that runs the built binary in a private POSTBOX_DIR.
foreach(case help_and_version claim_and_peers create_options_and_sizes send_recv_by_type
             binary_payload_round_trip json_escapes_round_trip pipeline_between_two_processes
             ls_and_stat rm_wakes_blocked_receiver watch_prints_rates bad_input_errors
             full_mailbox_send follow_ends_when_reader_goes closed_standard_fds
             send_lines_too_long hostile_names stat_json_binary_spool_name create_limits
             ambiguous_option_and_empty_name send_lines_interrupted create_errors_name_the_cause
             ls_fits_80_columns_and_shows_unreadable watch_fits_80_columns
             stat_and_watch_need_only_read_access spool_foreign_files_reported_once)
  add_test(NAME cli.${case}
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/cli.sh $<TARGET_FILE:postbox_cli>
                   $<TARGET_FILE:pbx_jsoncheck> ${case})
  set_tests_properties(cli.${case} PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()

# Installation into a temporary prefix, and programs built against the installed copy.
foreach(case files_and_command pkg_config_c pkg_config_cxx pkg_config_as_documented cmake_package_c
             cmake_package_cxx)
  if(CMAKE_CROSSCOMPILING AND case MATCHES "cxx$")
    # The musl and aarch64 builds (cmake/*.cmake) have no C++ library for their target.
    add_test(NAME install.${case}
             COMMAND sh -c "echo 'skipped: cross-build, no C++ library for the target'; exit 77")
    set_tests_properties(install.${case} PROPERTIES SKIP_RETURN_CODE 77)
    continue()
  endif()
  add_test(NAME install.${case}
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/install.sh ${CMAKE_BINARY_DIR}
                   ${CMAKE_CURRENT_SOURCE_DIR} "${PBX_SANITIZE}" ${case})
  set_tests_properties(install.${case} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
                       ENVIRONMENT "CC=${CMAKE_C_COMPILER}")
endforeach()

# The man pages render without warnings, and the bash completion completes.
add_test(NAME cli.man_pages_render
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/man.sh ${CMAKE_CURRENT_SOURCE_DIR}/man)
add_test(NAME cli.bash_completion
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/completion.sh
                 ${CMAKE_CURRENT_SOURCE_DIR}/tools/postbox.bash-completion
                 $<TARGET_FILE:postbox_cli>)
set_tests_properties(cli.man_pages_render cli.bash_completion PROPERTIES TIMEOUT 120
                     SKIP_RETURN_CODE 77)

# A bare `make` builds and never installs (issue 14).
add_test(NAME install.bare_make_builds
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/bare_make.sh ${CMAKE_CURRENT_SOURCE_DIR})
set_tests_properties(install.bare_make_builds PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)

# An example's output survives redirection to a file (make demo > log; issue 14).
add_test(NAME examples.firealarm_output_survives_redirection
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/examples.sh $<TARGET_FILE:example_firealarm>)
set_tests_properties(examples.firealarm_output_survives_redirection PROPERTIES TIMEOUT 120)

# A participant registered for a signal, for cli.peers_names_the_signal.
add_executable(pbx_notifier ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/notifier.c)
target_link_libraries(pbx_notifier PRIVATE postbox)
add_test(NAME cli.peers_names_the_signal
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/cli.sh $<TARGET_FILE:postbox_cli>
                 $<TARGET_FILE:pbx_jsoncheck> peers_names_the_signal $<TARGET_FILE:pbx_notifier>)
set_tests_properties(cli.peers_names_the_signal PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
