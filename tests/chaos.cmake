# Chaos and soak against a real pard: a socket-level fuzzer, ten million
# tasks with recycled workers, kill -9 of a submitter and of the daemon.
if(TARGET pard AND TARGET libpard)
  pard_test(chaos SOURCES test_chaos.c LIBS pard::pard Threads::Threads TIMEOUT 600)
  add_dependencies(test_chaos pard pard-example-worker)
  # Sanitizer builds soak 500,000 tasks, not 10,000,000 (and skip the RSS
  # check); TSan fuzzes 20,000 frames, not 100,000: the same code paths at
  # a sanitizer's pace.
  if(PARD_SANITIZE)
    target_compile_definitions(test_chaos PRIVATE PARD_SANITIZED)
  endif()
  if(PARD_SANITIZE MATCHES "thread")
    target_compile_definitions(test_chaos PRIVATE PARD_TEST_FUZZ_FRAMES_DEFAULT=20000)
  else()
    target_compile_definitions(test_chaos PRIVATE PARD_TEST_FUZZ_FRAMES_DEFAULT=100000)
  endif()
  # The fuzzer again with the daemon under memcheck: any memory error or
  # leak makes it exit 3 at SIGTERM, which the test checks. Plain builds
  # only (valgrind and the sanitizers do not mix); fewer frames, as
  # memcheck is some 30 times slower.
  find_program(VALGRIND valgrind)
  if(VALGRIND AND NOT PARD_SANITIZE)
    add_test(NAME chaos_fuzz_valgrind
      COMMAND test_chaos -j1 --filter=chaos/serves_a_real_map_while_fuzzed_frames_hit_its_socket)
    set_tests_properties(chaos_fuzz_valgrind PROPERTIES TIMEOUT 600
      ENVIRONMENT "PARD_TEST_VALGRIND=1;PARD_TEST_FUZZ_FRAMES=30000")
  endif()
endif()
