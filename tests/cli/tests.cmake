# End-to-end tests of the postbox command (tests/cli/cli.sh): each case a CTest test named
# cli.CASE that runs the built binary in a private POSTBOX_DIR.
foreach(case help_and_version create_options_and_sizes send_recv_by_type
             binary_payload_round_trip json_escapes_round_trip pipeline_between_two_processes
             ls_and_stat rm_wakes_blocked_receiver watch_prints_rates bad_input_errors
             full_mailbox_send)
  add_test(NAME cli.${case}
           COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/tests/cli/cli.sh $<TARGET_FILE:postbox_cli>
                   $<TARGET_FILE:pbx_jsoncheck> ${case})
  set_tests_properties(cli.${case} PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()
