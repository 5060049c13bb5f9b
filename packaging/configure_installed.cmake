# Run by `cmake --install` (see CMakeLists.txt): write pard.pc and
# pard.service for the prefix of this install. CMAKE_INSTALL_PREFIX is the
# install-time prefix here; DESTDIR is not part of it, as it must not be.
foreach(d LIBDIR INCLUDEDIR SBINDIR)
  if(IS_ABSOLUTE "${PARD_${d}}")
    set(PARD_PC_${d} "${PARD_${d}}")
    set(PARD_FULL_${d} "${PARD_${d}}")
  else()
    set(PARD_PC_${d} "\${prefix}/${PARD_${d}}")
    set(PARD_FULL_${d} "${CMAKE_INSTALL_PREFIX}/${PARD_${d}}")
  endif()
endforeach()
set(PARD_PREFIX "${CMAKE_INSTALL_PREFIX}")
configure_file("${PARD_SOURCE_DIR}/pard.pc.in" "${PARD_GEN_DIR}/pard.pc" @ONLY)
configure_file("${PARD_SOURCE_DIR}/pard.service.in" "${PARD_GEN_DIR}/pard.service" @ONLY)
