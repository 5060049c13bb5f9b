# `cmake --install` as a user meets it: install into a scratch prefix,
# build the tutorial against it with pkg-config and find_package(pard),
# run it against the installed pard, render the man pages, uninstall.
# tests/install_test.sh says what is checked; it exits 77 (skipped) when
# a tool it needs is missing. Sanitizer builds run it too: the tutorial is
# then compiled with the same -fsanitize flags as the installed library.
if(TARGET pard_shared AND TARGET pard AND TARGET parctl)
  add_test(NAME install COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/install_test.sh)
  set_tests_properties(install PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77
    ENVIRONMENT "${PARD_TEST_ENV};PARD_BUILD_DIR=${CMAKE_BINARY_DIR};PARD_SOURCE_DIR=${CMAKE_SOURCE_DIR};PARD_CMAKE=${CMAKE_COMMAND};CC=${CMAKE_C_COMPILER};PARD_SANITIZE=${PARD_SANITIZE};PARD_VERSION=${PROJECT_VERSION};PARD_BINDIR=${CMAKE_INSTALL_BINDIR};PARD_SBINDIR=${CMAKE_INSTALL_SBINDIR};PARD_LIBDIR=${CMAKE_INSTALL_LIBDIR};PARD_INCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR};PARD_MANDIR=${CMAKE_INSTALL_MANDIR}")
endif()
