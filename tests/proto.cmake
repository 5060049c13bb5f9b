# protocol/: unit tests, the decoder fuzz target (clang only) and the
# replay of its corpus as a normal test (any compiler).
pard_test(proto SOURCES test_proto.c LIBS pard::proto TIMEOUT 120)

set(PARD_FUZZ_CORPUS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/decode)

# Every corpus file through LLVMFuzzerTestOneInput, without libFuzzer.
add_executable(test_fuzz_replay fuzz/replay.c fuzz/fuzz_decode.c)
target_link_libraries(test_fuzz_replay PRIVATE pard_test_runner pard::proto)
target_include_directories(test_fuzz_replay PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(test_fuzz_replay PRIVATE PARD_FUZZ_CORPUS="${PARD_FUZZ_CORPUS}")
add_test(NAME proto_fuzz_replay COMMAND test_fuzz_replay -j1)
set_tests_properties(proto_fuzz_replay PROPERTIES ENVIRONMENT "${PARD_TEST_ENV}")
set_tests_properties(proto_fuzz_replay PROPERTIES TIMEOUT 120)

# Writes the seed corpus (valid frames of every type, and malformed ones):
#   ./proto_gen_corpus tests/fuzz/corpus/decode
add_executable(proto_gen_corpus fuzz/gen_corpus.c)
target_link_libraries(proto_gen_corpus PRIVATE pard::proto)
target_include_directories(proto_gen_corpus PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})

# libFuzzer target. The protocol sources are compiled into it again so that
# they carry the fuzzer's coverage and sanitizer instrumentation.
if(CMAKE_C_COMPILER_ID MATCHES "Clang" AND NOT PARD_SANITIZE MATCHES "thread")
  get_target_property(_proto_srcs pard_proto SOURCES)
  get_target_property(_proto_dir pard_proto SOURCE_DIR)
  list(TRANSFORM _proto_srcs PREPEND "${_proto_dir}/")
  add_executable(fuzz_decode fuzz/fuzz_decode.c ${_proto_srcs})
  target_include_directories(fuzz_decode PRIVATE ${_proto_dir}/include ${_proto_dir}/src)
  target_link_libraries(fuzz_decode PRIVATE pard::ipc PkgConfig::MSGPACK)
  target_compile_options(fuzz_decode PRIVATE -fsanitize=fuzzer,address,undefined
                         -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(fuzz_decode PRIVATE -fsanitize=fuzzer,address,undefined)
  set(_fuzz_decode_bin $<TARGET_FILE:fuzz_decode>)
elseif(NOT PARD_SANITIZE)
  # A gcc build: when clang (with its libFuzzer runtime, Debian's
  # libclang-rt-14-dev) is on the machine, build the same target with it,
  # libipc and protocol compiled in, so the plain build can run the bounded
  # fuzz run below.
  find_program(PARD_CLANG NAMES clang clang-14)
  if(PARD_CLANG AND NOT DEFINED PARD_CLANG_LIBFUZZER)
    # clang without its libFuzzer runtime cannot link the target: probe.
    set(_probe ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe.c)
    file(WRITE ${_probe} "#include <stddef.h>\n#include <stdint.h>\n"
      "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\n"
      "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    execute_process(COMMAND ${PARD_CLANG} -fsanitize=fuzzer,address,undefined ${_probe}
                            -o ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe
                    RESULT_VARIABLE _probe_rc OUTPUT_QUIET ERROR_QUIET)
    if(_probe_rc EQUAL 0)
      set(PARD_CLANG_LIBFUZZER ON CACHE INTERNAL "clang links -fsanitize=fuzzer")
    else()
      set(PARD_CLANG_LIBFUZZER OFF CACHE INTERNAL "clang links -fsanitize=fuzzer")
      message(STATUS "clang cannot link libFuzzer (libclang-rt-14-dev?): no bounded fuzz run")
    endif()
  endif()
  if(PARD_CLANG AND PARD_CLANG_LIBFUZZER)
    get_target_property(_proto_srcs pard_proto SOURCES)
    get_target_property(_proto_dir pard_proto SOURCE_DIR)
    list(TRANSFORM _proto_srcs PREPEND "${_proto_dir}/")
    get_target_property(_ipc_srcs pard_ipc SOURCES)
    get_target_property(_ipc_dir pard_ipc SOURCE_DIR)
    list(TRANSFORM _ipc_srcs PREPEND "${_ipc_dir}/")
    set(_msgpack_inc ${MSGPACK_INCLUDE_DIRS})
    list(TRANSFORM _msgpack_inc PREPEND "-I")
    set(_fuzz_decode_bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz_decode)
    add_custom_command(OUTPUT ${_fuzz_decode_bin}
      COMMAND ${PARD_CLANG} -std=gnu11 -g -O1 -D_GNU_SOURCE
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
              -fno-omit-frame-pointer
              -I${_proto_dir}/include -I${_proto_dir}/src -I${_ipc_dir}/include
              -I${CMAKE_CURRENT_SOURCE_DIR} ${_msgpack_inc}
              ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_decode.c ${_proto_srcs} ${_ipc_srcs}
              ${MSGPACK_LDFLAGS} -lpthread -lrt -lm -o ${_fuzz_decode_bin}
      DEPENDS fuzz/fuzz_decode.c fuzz/fuzz.h ${_proto_srcs} ${_ipc_srcs}
              ${_proto_dir}/include/pard/proto.h
      COMMENT "Building fuzz_decode with ${PARD_CLANG} (libFuzzer)"
      VERBATIM)
    add_custom_target(fuzz_decode_clang ALL DEPENDS ${_fuzz_decode_bin})
  endif()
endif()

# A bounded libFuzzer run in every `make check` (the plain build only: the
# sanitizer builds would spend the same minute on slower code): 60 s from a
# scratch copy of the seed corpus, so the repository is never written. Any
# crash, leak, sanitizer report or timeout fails it; the script prints the
# number of runs.
if(DEFINED _fuzz_decode_bin AND NOT PARD_SANITIZE)
  add_test(NAME proto_fuzz_decode_60s
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_bounded.sh ${_fuzz_decode_bin}
            ${PARD_FUZZ_CORPUS} 60)
  set_tests_properties(proto_fuzz_decode_60s PROPERTIES TIMEOUT 180)
endif()
