# Every command the docs show runs as shown: tests/docs_commands.sh runs
# the ```sh blocks of README.md, docs/*.md and docs/guide/*.md against this
# build tree (the convention is in docs/CONTRIBUTING.md). Plain build only:
# the commands are the same in every build, and under the sanitizers the
# benchmarks the guide shows would take too long.
if(NOT PARD_SANITIZE AND TARGET pard AND TARGET parctl AND TARGET parbench
   AND TARGET pard_shared)
  add_test(NAME docs_commands COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/docs_commands.sh)
  set_tests_properties(docs_commands PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "PARD_BUILD_DIR=${CMAKE_BINARY_DIR};PARD_SOURCE_DIR=${CMAKE_SOURCE_DIR};PARD_CMAKE=${CMAKE_COMMAND}")
endif()
