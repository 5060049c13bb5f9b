# The pard daemon, tested as a real process: tests start PARD_BUILD_DIR
# /daemon/pard on a temporary socket and talk raw protocol to it.
pard_test(daemon SOURCES test_daemon.c LIBS pard::proto pard::ipc TIMEOUT 600)
add_dependencies(test_daemon pard)
if(PARD_SANITIZE)
  # Fewer start/stop cycles where each start and exit takes a second.
  target_compile_definitions(test_daemon PRIVATE PARD_SANITIZED)
endif()
if(PARD_SANITIZE MATCHES "thread")
  target_compile_definitions(test_daemon PRIVATE PARD_TSAN)
endif()

# The same tests with every daemon under valgrind's memcheck: a leak or a
# memory error makes the daemon exit 3, which the tests check at shutdown.
# Plain builds only (valgrind and the sanitizers do not mix).
find_program(VALGRIND valgrind)
if(VALGRIND AND NOT PARD_SANITIZE)
  add_test(NAME daemon_valgrind COMMAND test_daemon -j1)
  set_tests_properties(daemon_valgrind PROPERTIES TIMEOUT 900
    ENVIRONMENT "PARD_TEST_VALGRIND=1")
endif()
