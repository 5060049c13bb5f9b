/*
 * replay.c — the fuzz corpus as a normal test: every file of
 * tests/fuzz/corpus/decode goes through LLVMFuzzerTestOneInput (which
 * aborts on any finding), so a build without clang still runs the seeds
 * and every crash once found. Files named valid-* must also decode
 * cleanly, frame by frame, so the corpus cannot silently rot when the
 * protocol changes.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "pard/proto.h"

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert(buf != NULL);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n, "read %s", path);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void each_file(void (*fn)(const char *name, const uint8_t *data, size_t len), int *count)
{
    DIR *d = opendir(PARD_FUZZ_CORPUS);
    cr_assert(d != NULL, "corpus directory %s", PARD_FUZZ_CORPUS);
    struct dirent *e;
    *count = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", PARD_FUZZ_CORPUS, e->d_name);
        size_t len;
        uint8_t *data = slurp(path, &len);
        fn(e->d_name, data, len);
        free(data);
        (*count)++;
    }
    closedir(d);
}

static void replay_one(const char *name, const uint8_t *data, size_t len)
{
    (void)name;
    LLVMFuzzerTestOneInput(data, len);
}

Test(fuzz_replay, every_corpus_file_passes_the_fuzz_target, .timeout = 60)
{
    int count;
    each_file(replay_one, &count);
    cr_assert_geq(count, 24, "the seed corpus is there (%d files)", count);
}

static void valid_one(const char *name, const uint8_t *data, size_t len)
{
    if (strncmp(name, "valid-", 6) != 0)
        return;
    static struct pard_msg m;
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, PARD_FRAME_MAX_CLIENT), 0);
    cr_assert_eq(pard_frame_reader_feed(&r, data, len, NULL, 0), 0, "%s", name);
    const void *body;
    size_t blen;
    int frames = 0, rc;
    while ((rc = pard_frame_reader_next(&r, &body, &blen, NULL)) == 1) {
        rc = pard_msg_decode(body, blen, &m);
        cr_assert_eq(rc, 0, "%s frame %d: %s", name, frames, pard_strerror(rc));
        frames++;
    }
    cr_assert_eq(rc, 0, "%s", name);
    cr_assert_gt(frames, 0, "%s holds a frame", name);
    cr_assert_eq(pard_frame_reader_buffered(&r), 0, "%s ends on a frame boundary", name);
    pard_frame_reader_destroy(&r);
}

Test(fuzz_replay, valid_seeds_still_decode, .timeout = 60)
{
    int count;
    each_file(valid_one, &count);
}
