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
endif()
