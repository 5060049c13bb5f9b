/*
 * fuzz_decode.c — libFuzzer target for everything that reads untrusted
 * control-channel bytes: the frame reader and the message decoder.
 *
 * Each input is used three ways: as one msgpack body; as a body after a
 * 4-byte prefix (the corpus holds frames); and as a byte stream fed to a
 * frame reader in input-dependent chunks, every frame it yields decoded.
 * Whatever decodes must re-encode, decode again, and re-encode to the same
 * bytes (the encoder and decoder agree). Any other outcome — a crash, a
 * leak, an unexpected error code — aborts.
 *
 * Built with -fsanitize=fuzzer under clang (target fuzz_decode) and, with
 * any compiler, linked into test_fuzz_replay, which replays the corpus.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "pard/proto.h"

#define ENC_CAP (PARD_FRAME_MAX_CLIENT + PARD_FRAME_HEADER)

/* Large, so static: one input is processed at a time. */
static struct pard_msg msg, again;
static uint8_t enc1[ENC_CAP], enc2[ENC_CAP];

static void die(const char *what, int rc)
{
    fprintf(stderr, "fuzz_decode: %s (%d: %s)\n", what, rc, pard_strerror(rc));
    abort();
}

static void check_body(const uint8_t *body, size_t len)
{
    int rc = pard_msg_decode(body, len, &msg);
    if (rc == -PARD_EPROTO || rc == -PARD_ETOOBIG) {
        if (msg.type != PARD_MSG_NONE)
            die("a failed decode left a type", rc);
        return;
    }
    if (rc != 0)
        die("unexpected decoder result", rc);
    if (msg.type <= PARD_MSG_NONE || msg.type >= PARD_MSG__COUNT)
        die("decoded an impossible type", (int)msg.type);
    if (pard_msg_check_version(&msg) != 0 && msg.type != PARD_MSG_ERROR)
        return; /* header only: nothing to re-encode */

    size_t n1, n2;
    rc = pard_msg_encode(&msg, enc1, sizeof(enc1), &n1);
    if (rc != 0)
        die("a decoded message does not re-encode", rc);
    rc = pard_msg_decode(enc1, n1, &again);
    if (rc != 0)
        die("a re-encoded message does not decode", rc);
    rc = pard_msg_encode(&again, enc2, sizeof(enc2), &n2);
    if (rc != 0)
        die("the second encoding failed", rc);
    if (n1 != n2 || memcmp(enc1, enc2, n1) != 0)
        die("encode(decode(encode(m))) differs from encode(m)", 0);
}

static void check_stream(const uint8_t *data, size_t size)
{
    struct pard_frame_reader r;
    if (pard_frame_reader_init(&r, PARD_FRAME_MAX) != 0)
        die("reader init", 0);
    /* Chunk sizes from a small LCG seeded by the input, so the fuzzer
     * explores different splits of the same bytes. */
    uint32_t state = (uint32_t)size * 2654435761u + (size ? data[size - 1] : 0);
    size_t off = 0;
    while (off < size) {
        state = state * 1103515245u + 12345u;
        size_t n = 1 + (state >> 16) % 512;
        if (n > size - off)
            n = size - off;
        int rc = pard_frame_reader_feed(&r, data + off, n, NULL, 0);
        if (rc == -PARD_ETOOBIG)
            break; /* the stream is broken, as the reader already said */
        if (rc != 0)
            die("feed", rc);
        off += n;
        const void *body;
        size_t len;
        int fd;
        while ((rc = pard_frame_reader_next(&r, &body, &len, &fd)) == 1) {
            if (fd != -1)
                die("a descriptor from nowhere", fd);
            check_body(body, len);
        }
        if (rc == -PARD_ETOOBIG) {
            if (pard_frame_reader_buffered(&r) != 0)
                die("a broken reader kept bytes", rc);
            break;
        }
        if (rc != 0)
            die("next", rc);
    }
    pard_frame_reader_destroy(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_body(data, size);
    if (size > PARD_FRAME_HEADER)
        check_body(data + PARD_FRAME_HEADER, size - PARD_FRAME_HEADER);
    check_stream(data, size);
    return 0;
}
