# libpard's map end to end: a real pard, the example worker, workers forked
# by pard_open_private, and the case-study programs run as processes.
if(TARGET pard AND TARGET libpard)
  pard_test(map SOURCES test_map.c LIBS pard::pard Threads::Threads TIMEOUT 600)
  add_dependencies(test_map pard pard-example-worker pard-montecarlo pard-xmlcount
                   pard-crossval)
endif()
# pard_map_array: fixed-size items and results, through a private pard.
if(TARGET pard AND TARGET libpard)
  pard_test(array SOURCES test_array.c LIBS pard::pard TIMEOUT 600)
  add_dependencies(test_array pard)
endif()
