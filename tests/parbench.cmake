# parbench: every subcommand run for real with tiny sizes, its JSON checked
# for shape and sanity (never for speed). Needs the daemon, since overhead,
# scaling and oversub start a private one.
if(TARGET parbench AND TARGET pard)
  pard_test(parbench SOURCES test_parbench.c LIBS pard::ipc m TIMEOUT 900)
  add_dependencies(test_parbench parbench pard)
endif()
