/*
 * gen_corpus.c — writes the seed corpus for fuzz_decode into a directory:
 * a valid frame of every message type (and the largest variant where it is
 * small enough to be a useful seed), a stream of all of them, and a set of
 * malformed frames, one per way of being wrong. The output is committed
 * under tests/fuzz/corpus/decode; rerun after a protocol change:
 *
 *   ./build/tests/proto_gen_corpus tests/fuzz/corpus/decode
 */
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pard/proto.h"
#include "proto_samples.h"

static const char *dir;
static struct pard_msg msg;
static uint8_t buf[PARD_FRAME_HEADER + PARD_FRAME_MAX_CLIENT];

static void write_file(const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "proto_gen_corpus: %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static size_t encode_sample(enum pard_msg_type t, int big, uint8_t *out, size_t cap)
{
    size_t len;
    sample_msg(&msg, t, big);
    int rc = pard_msg_encode_frame(&msg, out, cap, &len);
    if (rc != 0) {
        fprintf(stderr, "proto_gen_corpus: %s: %s\n", pard_msg_type_name(t), pard_strerror(rc));
        exit(1);
    }
    return len;
}

/* A hand-built body, written as a frame. */
static msgpack_sbuffer sb;
static msgpack_packer pk;

static void body_begin(size_t nkeys)
{
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (nkeys != (size_t)-1)
        msgpack_pack_map(&pk, nkeys);
}

static void str(const char *s)
{
    msgpack_pack_str(&pk, strlen(s));
    msgpack_pack_str_body(&pk, s, strlen(s));
}

static void body_write(const char *name)
{
    uint8_t *frame = malloc(sb.size + 4);
    pard_frame_put_header(frame, (uint32_t)sb.size);
    memcpy(frame + 4, sb.data, sb.size);
    write_file(name, frame, sb.size + 4);
    free(frame);
    msgpack_sbuffer_destroy(&sb);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    char name[128];

    /* Every type, small; and big where the big one is a few KiB. */
    size_t stream_len = 0;
    static uint8_t stream[64 * 1024];
    for (int t = 1; t < PARD_MSG__COUNT; t++) {
        size_t n = encode_sample((enum pard_msg_type)t, 0, buf, sizeof(buf));
        snprintf(name, sizeof(name), "valid-%s", pard_msg_type_name(t));
        write_file(name, buf, n);
        memcpy(stream + stream_len, buf, n);
        stream_len += n;
        if (t != PARD_MSG_WORKERS_REPLY && t != PARD_MSG_JOBS_REPLY) {
            size_t nb = encode_sample((enum pard_msg_type)t, 1, buf, sizeof(buf));
            snprintf(name, sizeof(name), "valid-%s-big", pard_msg_type_name(t));
            if (nb != n || memcmp(buf, stream + stream_len - n, n) != 0)
                write_file(name, buf, nb); /* only when it differs from the small one */
        }
    }
    write_file("valid-stream-of-every-type", stream, stream_len);

    /* Minimal forms: optional fields left out. */
    pard_msg_init(&msg, PARD_MSG_SUBMIT);
    strcpy(msg.submit.function, "f");
    size_t n;
    pard_msg_encode_frame(&msg, buf, sizeof(buf), &n);
    write_file("valid-submit-minimal", buf, n);
    pard_msg_init(&msg, PARD_MSG_HELLO);
    msg.hello.role = PARD_ROLE_SUBMITTER;
    msg.hello.pid = 1;
    pard_msg_encode_frame(&msg, buf, sizeof(buf), &n);
    write_file("valid-hello-minimal", buf, n);

    /* Another version: decodes (header only) so the daemon can refuse it. */
    body_begin(4);
    str("type");
    str("hello");
    str("v");
    msgpack_pack_uint8(&pk, 2);
    str("role");
    str("observer");
    str("pid");
    msgpack_pack_uint32(&pk, 7);
    body_write("valid-hello-version-2");

    /* Unknown keys of every msgpack kind. */
    body_begin(5);
    str("type");
    str("ok");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    str("f_bin");
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "\x00\x01", 2);
    str("f_ext");
    msgpack_pack_ext(&pk, 4, 1);
    msgpack_pack_ext_body(&pk, "abcd", 4);
    str("f_nest");
    msgpack_pack_map(&pk, 1);
    str("a");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_true(&pk);
    msgpack_pack_float(&pk, 1.5f);
    body_write("valid-ok-unknown-keys");

    /* ---- malformed ---- */
    n = encode_sample(PARD_MSG_SUBMIT, 0, buf, sizeof(buf));
    write_file("bad-truncated-submit", buf, n / 2);
    pard_frame_put_header(buf, (uint32_t)(n - 4 - 3)); /* prefix shorter than the body */
    write_file("bad-short-prefix", buf, n);

    static const uint8_t oversize[] = {0x7f, 0xff, 0xff, 0xff, 0x80};
    write_file("bad-oversize-prefix", oversize, sizeof(oversize));
    static const uint8_t just_over[] = {0x00, 0x01, 0x00, 0x01, 0x80};
    write_file("bad-prefix-one-over-64k", just_over, sizeof(just_over));
    static const uint8_t empty[] = {0, 0, 0, 0};
    write_file("bad-empty-frame", empty, sizeof(empty));
    static const uint8_t huge_map[] = {0, 0, 0, 8, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 1};
    write_file("bad-huge-map-header", huge_map, sizeof(huge_map));
    static const uint8_t huge_arr[] = {0, 0, 0, 8, 0x81, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff};
    write_file("bad-huge-array-header", huge_arr, sizeof(huge_arr));
    static const uint8_t huge_str[] = {0,    0,    0,    9,    0x81, 0xa1, 'x',
                                       0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    write_file("bad-huge-string-header", huge_str, sizeof(huge_str));
    static const uint8_t reserved[] = {0, 0, 0, 3, 0x81, 0xc1, 0xc1};
    write_file("bad-reserved-byte", reserved, sizeof(reserved));
    static const uint8_t garbage[] = {0,    0,    0,    12,   0xde, 0xad, 0xbe, 0xef,
                                      0x13, 0x37, 0xca, 0xfe, 0xba, 0xbe, 0x00, 0xff};
    write_file("bad-garbage", garbage, sizeof(garbage));

    uint8_t deep[4 + 64];
    size_t d = 4;
    deep[d++] = 0x81;
    deep[d++] = 0xa1;
    deep[d++] = 'x';
    while (d < sizeof(deep) - 1)
        deep[d++] = 0x91;
    deep[d++] = 0xc0;
    pard_frame_put_header(deep, (uint32_t)(d - 4));
    write_file("bad-deep-nesting", deep, d);

    body_begin((size_t)-1);
    msgpack_pack_array(&pk, 2);
    str("type");
    str("ok");
    body_write("bad-not-a-map");

    body_begin(1);
    str("v");
    msgpack_pack_uint8(&pk, 1);
    body_write("bad-no-type");

    body_begin(2);
    str("type");
    str("reboot");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    body_write("bad-unknown-type");

    body_begin(3);
    str("type");
    str("cancel");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    str("job_id");
    str("seven");
    body_write("bad-wrong-type");

    body_begin(4);
    str("type");
    str("cancel");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    str("job_id");
    msgpack_pack_uint8(&pk, 1);
    str("job_id");
    msgpack_pack_uint8(&pk, 2);
    body_write("bad-duplicate-key");

    body_begin(3);
    str("type");
    str("submit");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    str("function");
    str("rm -rf /");
    body_write("bad-name-characters");

    char longname[PARD_NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    body_begin(3);
    str("type");
    str("submit");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    str("function");
    str(longname);
    body_write("bad-name-too-long");

    body_begin(4);
    str("type");
    str("error");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    str("code");
    msgpack_pack_int8(&pk, -1);
    str("message");
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "a\0b", 3);
    body_write("bad-nul-in-text");

    body_begin(3);
    str("type");
    str("register");
    str("v");
    msgpack_pack_uint8(&pk, 1);
    str("functions");
    msgpack_pack_array(&pk, PARD_FUNCTIONS_MAX + 1);
    for (unsigned i = 0; i <= PARD_FUNCTIONS_MAX; i++)
        str("f");
    body_write("bad-too-many-functions");

    n = encode_sample(PARD_MSG_OK, 0, buf, sizeof(buf));
    buf[n] = 0xc0;
    pard_frame_put_header(buf, (uint32_t)(n + 1 - 4));
    write_file("bad-trailing-byte", buf, n + 1);
    return 0;
}
