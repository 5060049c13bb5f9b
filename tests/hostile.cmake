# A worker that writes garbage into a job's shared memory (hostile_worker,
# a test-only program that uses libpard's internal connection helpers),
# against a real pard, the example worker and other submitters.
if(TARGET pard AND TARGET libpard)
  add_executable(hostile_worker hostile_worker.c)
  target_link_libraries(hostile_worker PRIVATE pard::pard)
  target_include_directories(hostile_worker PRIVATE
    ${PROJECT_SOURCE_DIR}/clients/libpard/src)
  pard_test(hostile SOURCES test_hostile.c LIBS pard::pard Threads::Threads TIMEOUT 300)
  add_dependencies(test_hostile pard pard-example-worker hostile_worker)
endif()
