# The pard daemon, tested as a real process: tests start PARD_BUILD_DIR
# /daemon/pard on a temporary socket and talk raw protocol to it.
pard_test(daemon SOURCES test_daemon.c LIBS pard::proto pard::ipc TIMEOUT 600)
add_dependencies(test_daemon pard)
