# libpard's map end to end: a real pard, the example worker, workers forked
# by pard_open_private, and the case-study programs run as processes.
if(TARGET pard AND TARGET libpard)
  pard_test(map SOURCES test_map.c LIBS pard::pard Threads::Threads TIMEOUT 600)
  add_dependencies(test_map pard pard-example-worker pard-montecarlo pard-xmlcount
                   pard-crossval)
endif()
