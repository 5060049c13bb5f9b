/*
 * fuzz.h — the libFuzzer entry point, shared by the fuzz targets and the
 * corpus replay test.
 */
#ifndef PARD_TEST_FUZZ_H
#define PARD_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
