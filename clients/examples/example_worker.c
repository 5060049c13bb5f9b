/*
 * example_worker.c — a pard worker serving the functions the tests, the
 * demo and the tutorial use:
 *
 *   square    a decimal integer in, its square out
 *   sleep_us  sleeps that many microseconds, returns its input
 *   fail      fails with a message that quotes the input
 *   crash     aborts its own process (to show crash handling)
 *   noop      returns nothing (to measure overhead)
 *   echo      returns its input
 *   stats     msgpack array of numbers in, msgpack map {"n", "sum"} out
 *
 * Run: pard-example-worker [--socket PATH] [--max-tasks N]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pard/pard.h"

/* Parse a decimal integer from a buffer that is not NUL-terminated. */
static int parse_i64(const void *in, size_t len, int64_t *v)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, in, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *v = x;
    return 0;
}

static int square(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t v;
    if (parse_i64(in, len, &v) != 0)
        return pard_out_error(out, "square: '%.*s' is not a decimal integer",
                              (int)(len > 40 ? 40 : len), (const char *)in);
    if (v > 3037000499LL || v < -3037000499LL)
        return pard_out_error(out, "square: %" PRId64 " squared overflows 64 bits", v);
    return pard_out_printf(out, "%" PRId64, v * v);
}

static int sleep_us(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t us;
    if (parse_i64(in, len, &us) != 0 || us < 0)
        return pard_out_error(out, "sleep_us: '%.*s' is not a number of microseconds",
                              (int)(len > 40 ? 40 : len), (const char *)in);
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return pard_out_write(out, in, len);
}

static int fail(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    return pard_out_error(out, "fail: asked to fail on input '%.*s'", (int)(len > 40 ? 40 : len),
                          (const char *)in);
}

static int crash(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    abort();
}

static int noop(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    return 0;
}

static int echo(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    return pard_out_write(out, in, len);
}

/* msgpack in and out: an array of numbers → a map {"n": count, "sum": total}. */
static int stats(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o;
    if (pard_unpack(in, len, &u, &o) != 0 || o->type != MSGPACK_OBJECT_ARRAY) {
        msgpack_unpacked_destroy(&u);
        return pard_out_error(out, "stats: the input is not a msgpack array");
    }
    double sum = 0;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *x = &o->via.array.ptr[i];
        if (x->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            sum += (double)x->via.u64;
        else if (x->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            sum += (double)x->via.i64;
        else if (x->type == MSGPACK_OBJECT_FLOAT64 || x->type == MSGPACK_OBJECT_FLOAT32)
            sum += x->via.f64;
        else {
            msgpack_unpacked_destroy(&u);
            return pard_out_error(out, "stats: element %u is not a number", i);
        }
    }
    msgpack_packer *p = pard_out_packer(out);
    msgpack_pack_map(p, 2);
    msgpack_pack_str_with_body(p, "n", 1);
    msgpack_pack_uint32(p, o->via.array.size);
    msgpack_pack_str_with_body(p, "sum", 3);
    msgpack_pack_double(p, sum);
    msgpack_unpacked_destroy(&u);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct pard_function fns[] = {
        {"square", square}, {"sleep_us", sleep_us}, {"fail", fail},   {"crash", crash},
        {"noop", noop},     {"echo", echo},         {"stats", stats},
    };
    return pard_worker_main(argc, argv, fns, sizeof(fns) / sizeof(fns[0]), NULL);
}
