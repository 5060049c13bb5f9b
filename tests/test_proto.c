/*
 * test_proto.c — the control protocol: every message round-trips with
 * every field intact; malformed, truncated, oversized and hostile bodies
 * are refused with the right code; the frame reader yields the same frames
 * however the bytes are chunked and pairs each descriptor with its frame;
 * descriptors cross a real socketpair and work on the other side.
 */
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "pard/proto.h"
#include "proto_samples.h"

/* ======================================================================
 * Helpers
 * ====================================================================== */

/*
 * EXPECT - an assertion for hot loops: it talks to the Criterion runner
 * only when it fails (with --full-stats every passing cr_assert is a
 * message to the runner, which makes loops of millions crawl).
 */
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            cr_assert_fail(__VA_ARGS__);                                                           \
    } while (0)

static struct pard_msg *new_msg(void)
{
    struct pard_msg *m = calloc(1, sizeof(*m));
    cr_assert(m != NULL);
    return m;
}

/* A buffer big enough for any frame. */
#define FRAME_CAP (PARD_FRAME_HEADER + PARD_FRAME_MAX_CLIENT)

/* Encode m as a frame into a fresh heap buffer; *len is the frame length. */
static uint8_t *encode_frame(const struct pard_msg *m, size_t *len)
{
    uint8_t *buf = malloc(FRAME_CAP);
    cr_assert(buf != NULL);
    int rc = pard_msg_encode_frame(m, buf, FRAME_CAP, len);
    cr_assert_eq(rc, 0, "encoding %s: %s", pard_msg_type_name(m->type), pard_strerror(rc));
    cr_assert_eq(pard_frame_get_header(buf), *len - PARD_FRAME_HEADER, "prefix = body length");
    return buf;
}

static void assert_names_eq(const char (*a)[PARD_NAME_MAX + 1], const char (*b)[PARD_NAME_MAX + 1],
                            uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        EXPECT(strcmp(a[i], b[i]) == 0, "name %u: %s != %s", i, a[i], b[i]);
}

/* Every field of two messages of the same type, one by one. */
static void assert_msg_eq(const struct pard_msg *a, const struct pard_msg *b)
{
    cr_assert_eq(a->type, b->type);
    cr_assert_eq(a->version, b->version);
    switch (a->type) {
    case PARD_MSG_HELLO:
        cr_assert_eq(a->hello.role, b->hello.role);
        cr_assert_eq(a->hello.pid, b->hello.pid);
        cr_assert_str_eq(a->hello.name, b->hello.name);
        break;
    case PARD_MSG_WELCOME:
        cr_assert_eq(a->welcome.daemon_pid, b->welcome.daemon_pid);
        cr_assert_eq(a->welcome.client_id, b->welcome.client_id);
        cr_assert_str_eq(a->welcome.version_string, b->welcome.version_string);
        break;
    case PARD_MSG_ERROR:
        cr_assert_eq(a->error.code, b->error.code);
        cr_assert_eq(a->error.ref, b->error.ref);
        cr_assert_str_eq(a->error.message, b->error.message);
        break;
    case PARD_MSG_OK:
        cr_assert_eq(a->ok.ref, b->ok.ref);
        break;
    case PARD_MSG_REGISTER:
        cr_assert_eq(a->reg.nfunctions, b->reg.nfunctions);
        assert_names_eq(a->reg.functions, b->reg.functions, a->reg.nfunctions);
        break;
    case PARD_MSG_SUBMIT:
        cr_assert_str_eq(a->submit.function, b->submit.function);
        cr_assert_eq(a->submit.timeout_ms, b->submit.timeout_ms);
        cr_assert_eq(a->submit.retries, b->submit.retries);
        cr_assert_eq(a->submit.has_wait_mode, b->submit.has_wait_mode);
        if (a->submit.has_wait_mode)
            cr_assert_eq(a->submit.wait_mode, b->submit.wait_mode);
        cr_assert_eq(a->submit.ring_capacity, b->submit.ring_capacity);
        cr_assert_eq(a->submit.input_arena, b->submit.input_arena);
        cr_assert_eq(a->submit.output_arena, b->submit.output_arena);
        cr_assert_eq(a->submit.max_lanes, b->submit.max_lanes);
        cr_assert_eq(a->submit.window, b->submit.window);
        cr_assert_eq(a->submit.shared, b->submit.shared);
        break;
    case PARD_MSG_JOB:
        cr_assert_eq(a->job.job_id, b->job.job_id);
        cr_assert_eq(a->job.lanes, b->job.lanes);
        cr_assert_str_eq(a->job.function, b->job.function);
        break;
    case PARD_MSG_ATTACH:
        cr_assert_eq(a->attach.job_id, b->attach.job_id);
        cr_assert_eq(a->attach.lane, b->attach.lane);
        cr_assert_str_eq(a->attach.function, b->attach.function);
        cr_assert_eq(a->attach.timeout_ms, b->attach.timeout_ms);
        cr_assert_eq(a->attach.shared, b->attach.shared);
        cr_assert_eq(a->attach.wait_mode, b->attach.wait_mode);
        break;
    case PARD_MSG_DETACH:
        cr_assert_eq(a->detach.job_id, b->detach.job_id);
        break;
    case PARD_MSG_DETACHED:
        cr_assert_eq(a->detached.job_id, b->detached.job_id);
        break;
    case PARD_MSG_JOB_END:
        cr_assert_eq(a->job_end.job_id, b->job_end.job_id);
        break;
    case PARD_MSG_CANCEL:
        cr_assert_eq(a->cancel.job_id, b->cancel.job_id);
        break;
    case PARD_MSG_STATS_REPLY: {
        const struct pard_msg_stats_reply *x = &a->stats_reply, *y = &b->stats_reply;
        cr_assert_eq(x->workers, y->workers);
        cr_assert_eq(x->idle_workers, y->idle_workers);
        cr_assert_eq(x->jobs, y->jobs);
        cr_assert_eq(x->tasks_done, y->tasks_done);
        cr_assert(x->tasks_per_sec == y->tasks_per_sec, "%f != %f", x->tasks_per_sec,
                  y->tasks_per_sec);
        cr_assert_eq(x->requeues, y->requeues);
        cr_assert_eq(x->timeouts, y->timeouts);
        cr_assert_eq(x->worker_deaths, y->worker_deaths);
        cr_assert_eq(x->shm_bytes, y->shm_bytes);
        cr_assert_eq(x->uptime_ms, y->uptime_ms);
        cr_assert_eq(x->pid, y->pid);
        cr_assert_str_eq(x->version_string, y->version_string);
        break;
    }
    case PARD_MSG_WORKERS_REPLY:
        cr_assert_eq(a->workers_reply.nworkers, b->workers_reply.nworkers);
        for (uint32_t i = 0; i < a->workers_reply.nworkers; i++) {
            const struct pard_msg_worker_entry *x = &a->workers_reply.workers[i];
            const struct pard_msg_worker_entry *y = &b->workers_reply.workers[i];
            EXPECT(x->id == y->id, "worker %u id", i);
            EXPECT(x->pid == y->pid, "worker %u pid", i);
            EXPECT(strcmp(x->name, y->name) == 0, "worker %u name", i);
            EXPECT(x->nfunctions == y->nfunctions, "worker %u nfunctions", i);
            assert_names_eq(x->functions, y->functions, x->nfunctions);
            EXPECT(x->job_id == y->job_id, "worker %u job_id", i);
            EXPECT(x->tasks_done == y->tasks_done, "worker %u tasks_done", i);
        }
        break;
    case PARD_MSG_JOBS_REPLY:
        cr_assert_eq(a->jobs_reply.njobs, b->jobs_reply.njobs);
        for (uint32_t i = 0; i < a->jobs_reply.njobs; i++) {
            const struct pard_msg_job_entry *x = &a->jobs_reply.jobs[i];
            const struct pard_msg_job_entry *y = &b->jobs_reply.jobs[i];
            EXPECT(x->id == y->id, "job %u id", i);
            EXPECT(strcmp(x->function, y->function) == 0, "job %u function", i);
            EXPECT(x->submitter_pid == y->submitter_pid, "job %u submitter_pid", i);
            EXPECT(x->lanes == y->lanes, "job %u lanes", i);
            EXPECT(x->submitted == y->submitted, "job %u submitted", i);
            EXPECT(x->delivered == y->delivered, "job %u delivered", i);
            EXPECT(x->failed == y->failed, "job %u failed", i);
            EXPECT(strcmp(x->state, y->state) == 0, "job %u state", i);
            EXPECT(x->age_ms == y->age_ms, "job %u age_ms", i);
        }
        break;
    case PARD_MSG_SHARE:
    case PARD_MSG_UNSHARE:
        EXPECT(a->share.handle == b->share.handle, "share handle");
        EXPECT(a->share.size == b->share.size, "share size");
        break;
    case PARD_MSG_STATS:
    case PARD_MSG_LIST_WORKERS:
    case PARD_MSG_LIST_JOBS:
    case PARD_MSG_SHUTDOWN:
        break;
    default:
        cr_assert_fail("unexpected type %d", a->type);
    }
}

/* Encode a sample of `type`, decode it, and compare every field. */
static void round_trip(enum pard_msg_type type, int big)
{
    struct pard_msg *in = new_msg(), *out = new_msg();
    sample_msg(in, type, big);
    size_t len;
    uint8_t *frame = encode_frame(in, &len);
    int rc = pard_msg_decode(frame + PARD_FRAME_HEADER, len - PARD_FRAME_HEADER, out);
    cr_assert_eq(rc, 0, "decoding %s: %s", pard_msg_type_name(type), pard_strerror(rc));
    cr_assert_eq(out->type, type);
    cr_assert_eq(out->version, PARD_PROTO_VERSION);
    assert_msg_eq(in, out);
    free(frame);
    free(in);
    free(out);
}

/*
 * A hand-built body for malformed cases: begin with the number of map
 * entries, then add keys and values with msgpack-c directly.
 */
struct body {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void body_begin(struct body *b, size_t nkeys)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&b->pk, nkeys);
}

static void put_str(struct body *b, const char *s)
{
    msgpack_pack_str(&b->pk, strlen(s));
    msgpack_pack_str_body(&b->pk, s, strlen(s));
}

static void put_bytes_str(struct body *b, const char *s, size_t len)
{
    msgpack_pack_str(&b->pk, len);
    msgpack_pack_str_body(&b->pk, s, len);
}

static void kv_str(struct body *b, const char *k, const char *v)
{
    put_str(b, k);
    put_str(b, v);
}

static void kv_uint(struct body *b, const char *k, uint64_t v)
{
    put_str(b, k);
    msgpack_pack_uint64(&b->pk, v);
}

static void kv_int(struct body *b, const char *k, int64_t v)
{
    put_str(b, k);
    msgpack_pack_int64(&b->pk, v);
}

/* The header every message needs. */
static void put_header(struct body *b, const char *type, uint64_t v)
{
    kv_str(b, "type", type);
    kv_uint(b, "v", v);
}

/* Decode the body and free it; returns the decoder's result. */
static int body_decode(struct body *b, struct pard_msg *out)
{
    int rc = pard_msg_decode(b->sb.data, b->sb.size, out);
    msgpack_sbuffer_destroy(&b->sb);
    if (rc != 0)
        cr_assert_eq(out->type, PARD_MSG_NONE, "a failed decode leaves no type");
    return rc;
}

/* A hello missing nothing, plus `extra` more keys the caller adds. */
static void hello_begin(struct body *b, size_t extra)
{
    body_begin(b, 4 + extra);
    put_header(b, "hello", PARD_PROTO_VERSION);
    kv_str(b, "role", "worker");
    kv_uint(b, "pid", 1);
}

/* ======================================================================
 * Round trips
 * ====================================================================== */

Test(proto_msg, hello_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_HELLO, 0);
    round_trip(PARD_MSG_HELLO, 1);
}

Test(proto_msg, welcome_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_WELCOME, 0);
    round_trip(PARD_MSG_WELCOME, 1);
}

Test(proto_msg, error_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_ERROR, 0);
    round_trip(PARD_MSG_ERROR, 1);
}

Test(proto_msg, ok_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_OK, 0);
}

Test(proto_msg, register_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_REGISTER, 0);
    round_trip(PARD_MSG_REGISTER, 1);
}

Test(proto_msg, submit_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_SUBMIT, 0);
    round_trip(PARD_MSG_SUBMIT, 1);
}

Test(proto_msg, job_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_JOB, 0);
    round_trip(PARD_MSG_JOB, 1);
}

Test(proto_msg, attach_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_ATTACH, 0);
    round_trip(PARD_MSG_ATTACH, 1);
}

Test(proto_msg, detach_detached_job_end_and_cancel_round_trip, .timeout = 10)
{
    round_trip(PARD_MSG_DETACH, 0);
    round_trip(PARD_MSG_DETACHED, 0);
    round_trip(PARD_MSG_JOB_END, 0);
    round_trip(PARD_MSG_CANCEL, 0);
    round_trip(PARD_MSG_CANCEL, 1);
}

Test(proto_msg, empty_requests_round_trip, .timeout = 10)
{
    round_trip(PARD_MSG_STATS, 0);
    round_trip(PARD_MSG_LIST_WORKERS, 0);
    round_trip(PARD_MSG_LIST_JOBS, 0);
    round_trip(PARD_MSG_SHUTDOWN, 0);
}

Test(proto_msg, share_and_unshare_round_trip, .timeout = 10)
{
    round_trip(PARD_MSG_SHARE, 0);
    round_trip(PARD_MSG_SHARE, 1);
    round_trip(PARD_MSG_UNSHARE, 0);
}

Test(proto_msg, stats_reply_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_STATS_REPLY, 0);
    round_trip(PARD_MSG_STATS_REPLY, 1);
}

Test(proto_msg, workers_reply_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_WORKERS_REPLY, 0);
    round_trip(PARD_MSG_WORKERS_REPLY, 1);
}

Test(proto_msg, jobs_reply_round_trips_with_every_field, .timeout = 10)
{
    round_trip(PARD_MSG_JOBS_REPLY, 0);
    round_trip(PARD_MSG_JOBS_REPLY, 1);
}

Test(proto_msg, every_type_has_a_wire_name_that_decodes_back_to_it, .timeout = 10)
{
    struct pard_msg *in = new_msg(), *out = new_msg();
    for (int t = 1; t < PARD_MSG__COUNT; t++) {
        sample_msg(in, (enum pard_msg_type)t, 0);
        size_t len;
        uint8_t *frame = encode_frame(in, &len);
        cr_assert_eq(pard_msg_decode(frame + 4, len - 4, out), 0, "%s", pard_msg_type_name(t));
        cr_assert_eq(out->type, (enum pard_msg_type)t);
        cr_assert_str_neq(pard_msg_type_name(t), "unknown");
        free(frame);
    }
    cr_assert_str_eq(pard_msg_type_name(PARD_MSG_NONE), "unknown");
    cr_assert_str_eq(pard_msg_type_name(PARD_MSG__COUNT), "unknown");
    cr_assert_str_eq(pard_msg_type_name(PARD_MSG_JOB_END), "job_end");
    cr_assert_str_eq(pard_role_name(PARD_ROLE_SUBMITTER), "submitter");
    cr_assert_str_eq(pard_role_name(PARD_ROLE_NONE), "unknown");
    free(in);
    free(out);
}

Test(proto_msg, largest_messages_fit_their_frame_limits, .timeout = 10)
{
    struct pard_msg *m = new_msg();
    size_t len;
    uint8_t *frame;

    /* Everything a client sends fits the daemon's default limit. */
    static const enum pard_msg_type from_clients[] = {
        PARD_MSG_HELLO,  PARD_MSG_ERROR,        PARD_MSG_OK,        PARD_MSG_REGISTER,
        PARD_MSG_SUBMIT, PARD_MSG_DETACHED,     PARD_MSG_JOB_END,   PARD_MSG_CANCEL,
        PARD_MSG_STATS,  PARD_MSG_LIST_WORKERS, PARD_MSG_LIST_JOBS, PARD_MSG_SHUTDOWN,
        PARD_MSG_SHARE,  PARD_MSG_UNSHARE,
    };
    for (size_t i = 0; i < sizeof(from_clients) / sizeof(from_clients[0]); i++) {
        sample_msg(m, from_clients[i], 1);
        frame = encode_frame(m, &len);
        cr_assert_leq(len - 4, PARD_FRAME_MAX, "%s", pard_msg_type_name(from_clients[i]));
        free(frame);
    }
    /* Everything the daemon sends fits a client's limit. */
    for (int t = 1; t < PARD_MSG__COUNT; t++) {
        sample_msg(m, (enum pard_msg_type)t, 1);
        frame = encode_frame(m, &len);
        cr_assert_leq(len - 4, PARD_FRAME_MAX_CLIENT, "%s", pard_msg_type_name(t));
        free(frame);
    }
    free(m);
}

Test(proto_msg, optional_fields_are_left_out_and_decode_to_their_defaults, .timeout = 10)
{
    struct pard_msg *in = new_msg(), *out = new_msg();
    uint8_t buf[256];
    size_t len;

    pard_msg_init(in, PARD_MSG_SUBMIT);
    strcpy(in->submit.function, "sq");
    cr_assert_eq(pard_msg_encode(in, buf, sizeof(buf), &len), 0);
    cr_assert_eq(buf[0], 0x83, "a map of type, v and function only");
    memset(out, 0xA5, sizeof(out->submit) + 16);
    cr_assert_eq(pard_msg_decode(buf, len, out), 0);
    cr_assert_str_eq(out->submit.function, "sq");
    cr_assert_eq(out->submit.timeout_ms, 0);
    cr_assert_eq(out->submit.retries, 0);
    cr_assert_eq(out->submit.has_wait_mode, false);
    cr_assert_eq(out->submit.ring_capacity, 0);
    cr_assert_eq(out->submit.input_arena, 0);
    cr_assert_eq(out->submit.output_arena, 0);
    cr_assert_eq(out->submit.max_lanes, 0);
    cr_assert_eq(out->submit.window, 0);

    /* An explicit "adaptive" is not the same as "the daemon's default". */
    in->submit.has_wait_mode = true;
    in->submit.wait_mode = PARD_WAIT_ADAPTIVE;
    cr_assert_eq(pard_msg_encode(in, buf, sizeof(buf), &len), 0);
    cr_assert_eq(pard_msg_decode(buf, len, out), 0);
    cr_assert_eq(out->submit.has_wait_mode, true);
    cr_assert_eq(out->submit.wait_mode, PARD_WAIT_ADAPTIVE);

    pard_msg_init(in, PARD_MSG_HELLO);
    in->hello.role = PARD_ROLE_CONTROL;
    in->hello.pid = 5;
    cr_assert_eq(pard_msg_encode(in, buf, sizeof(buf), &len), 0);
    memset(out->hello.name, 'x', sizeof(out->hello.name));
    cr_assert_eq(pard_msg_decode(buf, len, out), 0);
    cr_assert_str_eq(out->hello.name, "");
    cr_assert_eq(out->hello.role, PARD_ROLE_CONTROL);

    pard_msg_init(in, PARD_MSG_OK);
    cr_assert_eq(pard_msg_encode(in, buf, sizeof(buf), &len), 0);
    cr_assert_eq(buf[0], 0x82, "an ok without ref is just type and v");
    out->ok.ref = 7;
    cr_assert_eq(pard_msg_decode(buf, len, out), 0);
    cr_assert_eq(out->ok.ref, 0);

    pard_msg_set_error(in, -PARD_EDENIED, 0, "go away");
    cr_assert_eq(pard_msg_encode(in, buf, sizeof(buf), &len), 0);
    cr_assert_eq(pard_msg_decode(buf, len, out), 0);
    cr_assert_eq(out->error.ref, 0);
    cr_assert_eq(out->error.code, -PARD_EDENIED);
    cr_assert_str_eq(out->error.message, "go away");
    free(in);
    free(out);
}

Test(proto_msg, unknown_keys_are_ignored_whatever_they_hold, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    struct body b;
    hello_begin(&b, 3);
    kv_str(&b, "future_field", "x");
    put_str(&b, "future_map");
    msgpack_pack_map(&b.pk, 2);
    kv_uint(&b, "a", 1);
    put_str(&b, "b");
    msgpack_pack_array(&b.pk, 3);
    msgpack_pack_nil(&b.pk);
    msgpack_pack_double(&b.pk, 1.5);
    msgpack_pack_bin(&b.pk, 3);
    msgpack_pack_bin_body(&b.pk, "abc", 3);
    put_str(&b, "future_ext");
    msgpack_pack_ext(&b.pk, 2, 7);
    msgpack_pack_ext_body(&b.pk, "zz", 2);
    cr_assert_eq(body_decode(&b, out), 0);
    cr_assert_eq(out->type, PARD_MSG_HELLO);
    cr_assert_eq(out->hello.pid, 1);
    free(out);
}

Test(proto_msg, a_different_version_decodes_so_the_caller_can_refuse_it, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    struct body b;

    /* A future hello whose fields have changed shape entirely. */
    body_begin(&b, 4);
    put_header(&b, "hello", 2);
    kv_str(&b, "role", "observer");
    kv_str(&b, "pid", "not a number any more");
    cr_assert_eq(body_decode(&b, out), 0);
    cr_assert_eq(out->type, PARD_MSG_HELLO);
    cr_assert_eq(out->version, 2);
    cr_assert_eq(pard_msg_check_version(out), -PARD_EVERSION);

    /* error's shape is frozen, so its fields decode across versions. */
    body_begin(&b, 4);
    put_header(&b, "error", 7);
    kv_int(&b, "code", -PARD_EVERSION);
    kv_str(&b, "message", "daemon speaks 7");
    cr_assert_eq(body_decode(&b, out), 0);
    cr_assert_eq(out->version, 7);
    cr_assert_eq(out->error.code, -PARD_EVERSION);
    cr_assert_str_eq(out->error.message, "daemon speaks 7");

    hello_begin(&b, 0);
    cr_assert_eq(body_decode(&b, out), 0);
    cr_assert_eq(pard_msg_check_version(out), 0);
    free(out);
}

/* ======================================================================
 * Refusals
 * ====================================================================== */

Test(proto_msg, refuses_bodies_without_a_valid_type_or_version, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    struct body b;

    body_begin(&b, 1);
    kv_uint(&b, "v", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "no type");

    body_begin(&b, 1);
    kv_str(&b, "type", "stats");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "no version");

    body_begin(&b, 2);
    put_header(&b, "launch_missiles", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "unknown type");

    body_begin(&b, 2);
    put_header(&b, "Stats", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "types are case-sensitive");

    body_begin(&b, 2);
    put_header(&b, "stats", 0);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "version 0 does not exist");

    body_begin(&b, 2);
    kv_str(&b, "type", "stats");
    kv_int(&b, "v", -1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "negative version");

    body_begin(&b, 2);
    kv_str(&b, "type", "stats");
    kv_uint(&b, "v", (uint64_t)UINT32_MAX + 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "version out of range");

    body_begin(&b, 2);
    kv_str(&b, "type", "stats");
    kv_str(&b, "v", "1");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "version as a string");

    body_begin(&b, 2);
    kv_uint(&b, "type", 12);
    kv_uint(&b, "v", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "type as a number");

    body_begin(&b, 3);
    put_header(&b, "stats", 1);
    kv_str(&b, "type", "shutdown");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "two types");

    body_begin(&b, 3);
    put_header(&b, "stats", 1);
    msgpack_pack_uint8(&b.pk, 1);
    msgpack_pack_uint8(&b.pk, 2);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "a non-string key");

    free(out);
}

Test(proto_msg, refuses_a_missing_required_field, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    struct body b;

    body_begin(&b, 3);
    put_header(&b, "hello", 1);
    kv_str(&b, "role", "worker");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "hello without pid");

    body_begin(&b, 3);
    put_header(&b, "hello", 1);
    kv_uint(&b, "pid", 3);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "hello without role");

    body_begin(&b, 3);
    put_header(&b, "submit", 1);
    kv_uint(&b, "timeout_ms", 3);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "submit without function");

    body_begin(&b, 4);
    put_header(&b, "job", 1);
    kv_uint(&b, "job_id", 3);
    kv_str(&b, "function", "f");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "job without lanes");

    body_begin(&b, 6);
    put_header(&b, "attach", 1);
    kv_uint(&b, "job_id", 3);
    kv_uint(&b, "lane", 0);
    kv_str(&b, "function", "f");
    kv_uint(&b, "timeout_ms", 0);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "attach without wait_mode");

    body_begin(&b, 2);
    put_header(&b, "cancel", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "cancel without job_id");

    body_begin(&b, 3);
    put_header(&b, "error", 1);
    kv_int(&b, "code", -1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "error without message");

    body_begin(&b, 2);
    put_header(&b, "register", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "register without functions");

    /* A list entry missing a field. */
    body_begin(&b, 3);
    put_header(&b, "jobs_reply", 1);
    put_str(&b, "jobs");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 8);
    kv_uint(&b, "id", 1);
    kv_str(&b, "function", "f");
    kv_uint(&b, "submitter_pid", 1);
    kv_uint(&b, "lanes", 1);
    kv_uint(&b, "submitted", 1);
    kv_uint(&b, "delivered", 1);
    kv_uint(&b, "failed", 1);
    kv_uint(&b, "age_ms", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "job entry without state");

    free(out);
}

Test(proto_msg, refuses_values_of_the_wrong_type_or_range, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    struct body b;

    body_begin(&b, 4);
    put_header(&b, "hello", 1);
    kv_str(&b, "role", "worker");
    kv_str(&b, "pid", "12");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "pid as a string");

    body_begin(&b, 4);
    put_header(&b, "hello", 1);
    kv_str(&b, "role", "worker");
    kv_int(&b, "pid", -12);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "negative pid");

    body_begin(&b, 4);
    put_header(&b, "hello", 1);
    kv_str(&b, "role", "worker");
    kv_uint(&b, "pid", (uint64_t)UINT32_MAX + 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "pid over 32 bits");

    body_begin(&b, 4);
    put_header(&b, "hello", 1);
    kv_str(&b, "role", "boss");
    kv_uint(&b, "pid", 1);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "unknown role");

    hello_begin(&b, 1);
    put_str(&b, "name");
    msgpack_pack_nil(&b.pk);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "name as nil");

    body_begin(&b, 3);
    put_header(&b, "cancel", 1);
    put_str(&b, "job_id");
    msgpack_pack_double(&b.pk, 3.0);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "job_id as a float");

    body_begin(&b, 3);
    put_header(&b, "register", 1);
    kv_str(&b, "functions", "sq");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "functions as a string");

    body_begin(&b, 3);
    put_header(&b, "register", 1);
    put_str(&b, "functions");
    msgpack_pack_array(&b.pk, 2);
    put_str(&b, "sq");
    msgpack_pack_uint8(&b.pk, 7);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "a function name as a number");

    body_begin(&b, 3);
    put_header(&b, "register", 1);
    put_str(&b, "functions");
    msgpack_pack_array(&b.pk, 0);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "register of nothing");

    body_begin(&b, 4);
    put_header(&b, "submit", 1);
    kv_str(&b, "function", "sq");
    kv_str(&b, "wait_mode", "sleepy");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "unknown wait mode");

    body_begin(&b, 4);
    put_header(&b, "error", 1);
    kv_int(&b, "code", 5);
    kv_str(&b, "message", "");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "a positive error code");

    body_begin(&b, 4);
    put_header(&b, "error", 1);
    kv_int(&b, "code", (int64_t)INT32_MIN - 1);
    kv_str(&b, "message", "");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "an error code beyond 32 bits");

    body_begin(&b, 3);
    put_header(&b, "workers_reply", 1);
    put_str(&b, "workers");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_array(&b.pk, 0);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "a list entry that is not a map");

    body_begin(&b, 4);
    put_header(&b, "cancel", 1);
    kv_uint(&b, "job_id", 1);
    kv_uint(&b, "job_id", 2);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "a duplicate key");

    body_begin(&b, 3);
    put_header(&b, "stats_reply", 1);
    kv_str(&b, "tasks_per_sec", "fast");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "a rate as a string");

    free(out);
}

Test(proto_msg, accepts_integer_rates_and_float32, .timeout = 10)
{
    struct pard_msg *in = new_msg(), *out = new_msg();
    sample_msg(in, PARD_MSG_STATS_REPLY, 0);
    size_t len;
    uint8_t *frame = encode_frame(in, &len);
    cr_assert_eq(pard_msg_decode(frame + 4, len - 4, out), 0);
    free(frame);

    /* Re-pack the same reply by hand with the rate as an integer. */
    struct body b;
    body_begin(&b, 14);
    put_header(&b, "stats_reply", 1);
    static const char *const keys[] = {
        "workers",       "idle_workers", "jobs",      "tasks_done", "requeues",
        "worker_deaths", "shm_bytes",    "uptime_ms", "timeouts",   "pid"};
    for (size_t i = 0; i < 10; i++)
        kv_uint(&b, keys[i], i);
    kv_str(&b, "version_string", "x");
    kv_uint(&b, "tasks_per_sec", 250);
    cr_assert_eq(body_decode(&b, out), 0);
    cr_assert(out->stats_reply.tasks_per_sec == 250.0);

    body_begin(&b, 14);
    put_header(&b, "stats_reply", 1);
    for (size_t i = 0; i < 10; i++)
        kv_uint(&b, keys[i], i);
    kv_str(&b, "version_string", "x");
    put_str(&b, "tasks_per_sec");
    msgpack_pack_float(&b.pk, 0.5f);
    cr_assert_eq(body_decode(&b, out), 0);
    cr_assert(out->stats_reply.tasks_per_sec == 0.5);
    free(in);
    free(out);
}

Test(proto_msg, refuses_over_long_strings_and_arrays_as_too_big, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    struct body b;
    char s[PARD_TEXT_MAX + 2];

    memset(s, 'a', sizeof(s));
    hello_begin(&b, 1);
    put_str(&b, "name");
    put_bytes_str(&b, s, PARD_NAME_MAX);
    cr_assert_eq(body_decode(&b, out), 0, "a name of exactly the limit");
    cr_assert_eq(strlen(out->hello.name), PARD_NAME_MAX);

    hello_begin(&b, 1);
    put_str(&b, "name");
    put_bytes_str(&b, s, PARD_NAME_MAX + 1);
    cr_assert_eq(body_decode(&b, out), -PARD_ETOOBIG, "a name one byte over");

    body_begin(&b, 4);
    put_header(&b, "error", 1);
    kv_int(&b, "code", -1);
    put_str(&b, "message");
    put_bytes_str(&b, s, PARD_TEXT_MAX);
    cr_assert_eq(body_decode(&b, out), 0, "a text of exactly the limit");
    cr_assert_eq(strlen(out->error.message), PARD_TEXT_MAX);

    body_begin(&b, 4);
    put_header(&b, "error", 1);
    kv_int(&b, "code", -1);
    put_str(&b, "message");
    put_bytes_str(&b, s, PARD_TEXT_MAX + 1);
    cr_assert_eq(body_decode(&b, out), -PARD_ETOOBIG, "a text one byte over");

    body_begin(&b, 3);
    put_header(&b, "register", 1);
    put_str(&b, "functions");
    msgpack_pack_array(&b.pk, PARD_FUNCTIONS_MAX + 1);
    for (unsigned i = 0; i <= PARD_FUNCTIONS_MAX; i++)
        put_str(&b, "f");
    cr_assert_eq(body_decode(&b, out), -PARD_ETOOBIG, "65 functions");

    body_begin(&b, 3);
    put_header(&b, "jobs_reply", 1);
    put_str(&b, "jobs");
    msgpack_pack_array(&b.pk, PARD_LIST_MAX + 1);
    for (unsigned i = 0; i <= PARD_LIST_MAX; i++)
        msgpack_pack_map(&b.pk, 0);
    cr_assert_eq(body_decode(&b, out), -PARD_ETOOBIG, "257 jobs");

    /* An unknown key is skipped, but its size is still bounded. */
    hello_begin(&b, 1);
    put_str(&b, "future");
    msgpack_pack_array(&b.pk, PARD_CONTAINER_MAX + 1);
    for (unsigned i = 0; i <= PARD_CONTAINER_MAX; i++)
        msgpack_pack_nil(&b.pk);
    cr_assert_eq(body_decode(&b, out), -PARD_ETOOBIG, "an unknown array over the limit");
    free(out);
}

Test(proto_msg, refuses_names_with_forbidden_characters_and_text_with_nul, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    struct body b;
    static const char *const bad[] = {"a b", "a/b", "sq\n", "ünï", "a;rm", "$x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        body_begin(&b, 3);
        put_header(&b, "submit", 1);
        kv_str(&b, "function", bad[i]);
        cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "function name \"%s\"", bad[i]);
    }
    body_begin(&b, 3);
    put_header(&b, "submit", 1);
    kv_str(&b, "function", "");
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "an empty required name");

    body_begin(&b, 4);
    put_header(&b, "error", 1);
    kv_int(&b, "code", -1);
    put_str(&b, "message");
    put_bytes_str(&b, "ab\0cd", 5);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "a NUL inside a text");

    cr_assert(pard_name_valid("sq"));
    cr_assert(pard_name_valid("Model.fit_v2-x"));
    cr_assert_not(pard_name_valid(""));
    cr_assert_not(pard_name_valid(NULL));
    cr_assert_not(pard_name_valid("a b"));
    char long_name[PARD_NAME_MAX + 2];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[PARD_NAME_MAX + 1] = 0;
    cr_assert_not(pard_name_valid(long_name));
    long_name[PARD_NAME_MAX] = 0;
    cr_assert(pard_name_valid(long_name));
    free(out);
}

Test(proto_msg, refuses_every_truncation_of_every_message, .timeout = 30)
{
    struct pard_msg *in = new_msg(), *out = new_msg();
    for (int t = 1; t < PARD_MSG__COUNT; t++) {
        sample_msg(in, (enum pard_msg_type)t, 0);
        size_t len;
        uint8_t *frame = encode_frame(in, &len);
        const uint8_t *body = frame + 4;
        size_t blen = len - 4;
        for (size_t cut = 0; cut < blen; cut++) {
            /* A copy of exactly `cut` bytes, so ASan sees any over-read. */
            uint8_t *part = malloc(cut ? cut : 1);
            memcpy(part, body, cut);
            int rc = pard_msg_decode(part, cut, out);
            EXPECT(rc == -PARD_EPROTO, "%s cut at %zu of %zu: %d", pard_msg_type_name(t), cut, blen,
                   rc);
            free(part);
        }
        free(frame);
    }
    free(in);
    free(out);
}

Test(proto_msg, refuses_trailing_bytes_and_bodies_that_are_not_maps, .timeout = 10)
{
    struct pard_msg *in = new_msg(), *out = new_msg();
    uint8_t buf[256];
    size_t len;
    sample_msg(in, PARD_MSG_CANCEL, 0);
    cr_assert_eq(pard_msg_encode(in, buf, sizeof(buf), &len), 0);
    buf[len] = 0xc0;
    cr_assert_eq(pard_msg_decode(buf, len + 1, out), -PARD_EPROTO, "one extra nil");
    cr_assert_eq(pard_msg_decode(buf, len, out), 0);

    static const uint8_t array[] = {0x92, 0x01, 0x02};
    cr_assert_eq(pard_msg_decode(array, sizeof(array), out), -PARD_EPROTO);
    static const uint8_t str[] = {0xa2, 'h', 'i'};
    cr_assert_eq(pard_msg_decode(str, sizeof(str), out), -PARD_EPROTO);
    static const uint8_t nil[] = {0xc0};
    cr_assert_eq(pard_msg_decode(nil, sizeof(nil), out), -PARD_EPROTO);
    static const uint8_t reserved[] = {0x81, 0xc1, 0xc1};
    cr_assert_eq(pard_msg_decode(reserved, sizeof(reserved), out), -PARD_EPROTO);
    cr_assert_eq(pard_msg_decode(buf, 0, out), -PARD_EPROTO, "an empty body");
    free(in);
    free(out);
}

Test(proto_msg, refuses_hostile_container_headers_without_allocating_for_them, .timeout = 10)
{
    struct pard_msg *out = new_msg();
    /* A map claiming 4 billion entries, an array claiming as many. */
    static const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01};
    cr_assert_eq(pard_msg_decode(huge_map, sizeof(huge_map), out), -PARD_ETOOBIG);
    static const uint8_t huge_array[] = {0x81, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff};
    cr_assert_eq(pard_msg_decode(huge_array, sizeof(huge_array), out), -PARD_ETOOBIG);
    /* Within the container limit but more elements than bytes left. */
    static const uint8_t short_array[] = {0x81, 0xa1, 'x', 0xdc, 0x00, 0xff, 0x01};
    cr_assert_eq(pard_msg_decode(short_array, sizeof(short_array), out), -PARD_EPROTO);
    /* A string claiming 4 GiB. */
    static const uint8_t huge_str[] = {0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    cr_assert_eq(pard_msg_decode(huge_str, sizeof(huge_str), out), -PARD_EPROTO);

    /* Nesting: {"x": [[[[...]]]]} deeper than the limit. */
    uint8_t deep[200];
    size_t n = 0;
    deep[n++] = 0x81;
    deep[n++] = 0xa1;
    deep[n++] = 'x';
    for (int i = 0; i < 100; i++)
        deep[n++] = 0x91;
    deep[n++] = 0x01;
    cr_assert_eq(pard_msg_decode(deep, n, out), -PARD_EPROTO, "100 levels deep");

    /* Exactly at the limit is fine (an unknown key, so it is skipped). */
    struct body b;
    hello_begin(&b, 1);
    put_str(&b, "deep");
    for (unsigned i = 0; i < PARD_NESTING_MAX - 1; i++)
        msgpack_pack_array(&b.pk, 1);
    msgpack_pack_nil(&b.pk);
    cr_assert_eq(body_decode(&b, out), 0, "nesting of exactly the limit");
    hello_begin(&b, 1);
    put_str(&b, "deep");
    for (unsigned i = 0; i < PARD_NESTING_MAX; i++)
        msgpack_pack_array(&b.pk, 1);
    msgpack_pack_nil(&b.pk);
    cr_assert_eq(body_decode(&b, out), -PARD_EPROTO, "one level more");

    /* Many small objects: over the object budget. */
    hello_begin(&b, 1);
    put_str(&b, "many");
    msgpack_pack_array(&b.pk, 256);
    for (int i = 0; i < 256; i++) {
        msgpack_pack_array(&b.pk, 256);
        for (int k = 0; k < 256; k++)
            msgpack_pack_nil(&b.pk);
    }
    cr_assert_eq(body_decode(&b, out), -PARD_ETOOBIG, "65 792 objects");
    free(out);
}

Test(proto_msg, survives_random_garbage_and_mutated_messages, .timeout = 60)
{
    struct pard_msg *out = new_msg(), *again = new_msg(), *sample = new_msg();
    static uint8_t buf[8192], enc[PARD_FRAME_MAX_CLIENT];
    unsigned seed = 12345;
    int decoded = 0, rounds = 200000;
    for (int round = 0; round < rounds; round++) {
        size_t len;
        if (round & 1) {
            /* A valid message with a few bytes changed, cut or not. */
            sample_msg(sample, (enum pard_msg_type)(1 + rand_r(&seed) % (PARD_MSG__COUNT - 1)), 0);
            EXPECT(pard_msg_encode(sample, buf, sizeof(buf), &len) == 0, "sample");
            for (int k = 1 + rand_r(&seed) % 4; k > 0; k--)
                buf[rand_r(&seed) % len] = (uint8_t)rand_r(&seed);
            if (rand_r(&seed) % 4 == 0)
                len = (size_t)rand_r(&seed) % (len + 1);
        } else {
            len = (size_t)(rand_r(&seed) % 512);
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)rand_r(&seed);
        }
        int rc = pard_msg_decode(buf, len, out);
        EXPECT(rc == 0 || rc == -PARD_EPROTO || rc == -PARD_ETOOBIG, "round %d: rc %d", round, rc);
        if (rc == 0 && pard_msg_check_version(out) == 0) {
            decoded++;
            size_t elen;
            rc = pard_msg_encode(out, enc, sizeof(enc), &elen);
            EXPECT(rc == 0, "round %d: a decoded %s does not re-encode: %d", round,
                   pard_msg_type_name(out->type), rc);
            rc = pard_msg_decode(enc, elen, again);
            EXPECT(rc == 0, "round %d: re-encoded does not decode: %d", round, rc);
        }
    }
    cr_log_info("%d of %d garbage or mutated bodies decoded", decoded, rounds);
    cr_assert_gt(decoded, 1000, "the mutations reach the field decoders");
    free(out);
    free(again);
    free(sample);
}

/* ======================================================================
 * Encoder refusals
 * ====================================================================== */

Test(proto_msg, encoder_refuses_what_a_decoder_would_refuse, .timeout = 10)
{
    struct pard_msg *m = new_msg();
    uint8_t buf[8192];
    size_t len;

    pard_msg_init(m, PARD_MSG_SUBMIT);
    strcpy(m->submit.function, "bad name");
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL);
    m->submit.function[0] = 0;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL, "empty required name");
    strcpy(m->submit.function, "ok");
    m->submit.has_wait_mode = true;
    m->submit.wait_mode = (enum pard_wait_mode)9;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL, "bad wait mode");

    pard_msg_init(m, PARD_MSG_REGISTER);
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL, "no functions");
    m->reg.nfunctions = PARD_FUNCTIONS_MAX + 1;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL, "too many functions");
    m->reg.nfunctions = 1;
    memset(m->reg.functions[0], 'a', sizeof(m->reg.functions[0]));
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL, "no NUL in the array");

    pard_msg_init(m, PARD_MSG_ERROR);
    m->error.code = 0;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL, "error code 0");

    pard_msg_init(m, PARD_MSG_HELLO);
    m->hello.pid = 1;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL, "no role");

    m->type = PARD_MSG_NONE;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL);
    m->type = PARD_MSG__COUNT;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), -EINVAL);
    free(m);
}

Test(proto_msg, encoder_reports_a_short_buffer_at_every_size, .timeout = 10)
{
    struct pard_msg *m = new_msg();
    uint8_t buf[8192];
    size_t need, len;
    sample_msg(m, PARD_MSG_SUBMIT, 1);
    cr_assert_eq(pard_msg_encode_frame(m, buf, sizeof(buf), &need), 0);
    for (size_t cap = 0; cap < need; cap++) {
        int rc = pard_msg_encode_frame(m, buf, cap, &len);
        EXPECT(rc == -ENOBUFS, "cap %zu: %d", cap, rc);
    }
    cr_assert_eq(pard_msg_encode_frame(m, buf, need, &len), 0);
    cr_assert_eq(len, need);
    free(m);
}

Test(proto_msg, set_error_truncates_long_text_on_a_character_boundary, .timeout = 10)
{
    struct pard_msg *m = new_msg(), *out = new_msg();
    char text[2 * PARD_TEXT_MAX];
    /* 1022 ASCII bytes then "é" (2 bytes): the é would end at byte 1024. */
    memset(text, 'a', PARD_TEXT_MAX - 1);
    strcpy(text + PARD_TEXT_MAX - 1, "\xc3\xa9 and more");
    pard_msg_set_error(m, -PARD_ETASK, 9, "%s", text);
    cr_assert_eq(m->type, PARD_MSG_ERROR);
    cr_assert_eq(m->error.code, -PARD_ETASK);
    cr_assert_eq(m->error.ref, 9);
    cr_assert_eq(strlen(m->error.message), PARD_TEXT_MAX - 1, "the half é is dropped");

    pard_msg_set_error(m, -1, 0, "short %d", 5);
    cr_assert_str_eq(m->error.message, "short 5");
    uint8_t buf[2048];
    size_t len;
    cr_assert_eq(pard_msg_encode(m, buf, sizeof(buf), &len), 0);
    cr_assert_eq(pard_msg_decode(buf, len, out), 0);
    cr_assert_str_eq(out->error.message, "short 5");
    free(m);
    free(out);
}

/* ======================================================================
 * Frame reader
 * ====================================================================== */

/* A stream of one frame of every type; *count is the number of frames. */
static uint8_t *every_type_stream(size_t *len, int *count)
{
    struct pard_msg *m = new_msg();
    uint8_t *stream = malloc(64 * 1024);
    size_t off = 0;
    *count = 0;
    for (int t = 1; t < PARD_MSG__COUNT; t++) {
        size_t n;
        sample_msg(m, (enum pard_msg_type)t, 0);
        cr_assert_eq(pard_msg_encode_frame(m, stream + off, 64 * 1024 - off, &n), 0);
        off += n;
        (*count)++;
    }
    free(m);
    *len = off;
    return stream;
}

/* Feed the stream in chunks of size chunk(i) and check every frame. */
static void feed_in_chunks(size_t (*chunk)(unsigned *state), unsigned seed)
{
    size_t len;
    int count;
    uint8_t *stream = every_type_stream(&len, &count);
    struct pard_msg *in = new_msg(), *out = new_msg();
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);

    int t = 1;
    size_t off = 0;
    unsigned state = seed;
    while (off < len) {
        size_t n = chunk(&state);
        if (n > len - off)
            n = len - off;
        int rc = pard_frame_reader_feed(&r, stream + off, n, NULL, 0);
        EXPECT(rc == 0, "feed: %d", rc);
        off += n;
        const void *body;
        size_t blen;
        int fd;
        while ((rc = pard_frame_reader_next(&r, &body, &blen, &fd)) == 1) {
            EXPECT(fd == -1, "no descriptor was sent");
            rc = pard_msg_decode(body, blen, out);
            EXPECT(rc == 0, "frame %d: %d", t, rc);
            sample_msg(in, (enum pard_msg_type)t, 0);
            EXPECT(in->type == out->type, "frame %d in order", t);
            t++;
        }
        EXPECT(rc == 0, "next: %d", rc);
    }
    cr_assert_eq(t, count + 1, "every frame came out");
    cr_assert_eq(pard_frame_reader_buffered(&r), 0);
    pard_frame_reader_destroy(&r);
    free(stream);
    free(in);
    free(out);
}

static size_t one_byte(unsigned *state)
{
    (void)state;
    return 1;
}

static size_t random_chunk(unsigned *state)
{
    return 1 + (size_t)(rand_r(state) % 300);
}

Test(frame, reader_fed_byte_by_byte_yields_every_frame, .timeout = 10)
{
    feed_in_chunks(one_byte, 0);
}

Test(frame, reader_fed_random_chunks_yields_every_frame, .timeout = 30)
{
    for (unsigned seed = 1; seed <= 200; seed++)
        feed_in_chunks(random_chunk, seed);
}

Test(frame, reader_accepts_the_limit_and_refuses_one_byte_more, .timeout = 10)
{
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 100), 0);
    uint8_t frame[4 + 101] = {0};
    const void *body;
    size_t len;

    pard_frame_put_header(frame, 100);
    cr_assert_eq(pard_frame_reader_feed(&r, frame, 104, NULL, 0), 0);
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), 1);
    cr_assert_eq(len, 100);

    pard_frame_put_header(frame, 101);
    cr_assert_eq(pard_frame_reader_feed(&r, frame, 3, NULL, 0), 0);
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), 0, "header incomplete");
    cr_assert_eq(pard_frame_reader_feed(&r, frame + 3, 2, NULL, 0), 0);
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), -PARD_ETOOBIG);
    cr_assert_eq(pard_frame_reader_buffered(&r), 0, "no partial frame left behind");
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), -PARD_ETOOBIG, "sticky");
    cr_assert_eq(pard_frame_reader_feed(&r, frame, 4, NULL, 0), -PARD_ETOOBIG, "sticky");
    pard_frame_reader_reset(&r);
    pard_frame_put_header(frame, 0);
    cr_assert_eq(pard_frame_reader_feed(&r, frame, 4, NULL, 0), 0);
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), 1, "an empty frame is a frame");
    cr_assert_eq(len, 0);
    pard_frame_reader_destroy(&r);
}

Test(frame, reader_refuses_a_hostile_length_prefix_at_once, .timeout = 10)
{
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x80};
    const void *body;
    size_t len;
    cr_assert_eq(pard_frame_reader_feed(&r, huge, sizeof(huge), NULL, 0), 0);
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), -PARD_ETOOBIG);
    cr_assert_leq(r.cap, 4096, "nothing was allocated for the announced size");
    pard_frame_reader_destroy(&r);

    cr_assert_eq(pard_frame_reader_init(&r, PARD_FRAME_MAX_LIMIT), 0);
    cr_assert_eq(pard_frame_reader_init(&r, PARD_FRAME_MAX_LIMIT + 1), -EINVAL);
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);
    cr_assert_eq(r.max, PARD_FRAME_MAX);
}

Test(frame, reader_holds_at_most_one_frame_plus_slack, .timeout = 10)
{
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 1000), 0);
    uint8_t *junk = calloc(1, PARD_FRAME_READER_SLACK + 2000);
    pard_frame_put_header(junk, 1000);
    /* One incomplete frame (header + 999 bytes) and the slack fit... */
    cr_assert_eq(pard_frame_reader_feed(&r, junk, 1003, NULL, 0), 0);
    cr_assert_eq(pard_frame_reader_feed(&r, junk, PARD_FRAME_READER_SLACK, NULL, 0), 0);
    /* ...one byte more does not, until the caller drains. */
    cr_assert_eq(pard_frame_reader_feed(&r, junk, 2, NULL, 0), -ENOBUFS);
    const void *body;
    size_t len;
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), 1);
    cr_assert_eq(pard_frame_reader_feed(&r, junk, 2, NULL, 0), 0);
    free(junk);
    pard_frame_reader_destroy(&r);
}

Test(frame, reserve_and_commit_receive_in_place, .timeout = 10)
{
    struct pard_msg *m = new_msg(), *out = new_msg();
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);
    sample_msg(m, PARD_MSG_ATTACH, 0);
    void *space;
    size_t avail, len;
    cr_assert_eq(pard_frame_reader_reserve(&r, 512, &space, &avail), 0);
    cr_assert_geq(avail, 512);
    cr_assert_eq(pard_msg_encode_frame(m, space, avail, &len), 0);
    cr_assert_eq(pard_frame_reader_commit(&r, avail + 1, NULL, 0), -EINVAL, "more than room");
    cr_assert_eq(pard_frame_reader_commit(&r, len, NULL, 0), 0);
    const void *body;
    size_t blen;
    cr_assert_eq(pard_frame_reader_next(&r, &body, &blen, NULL), 1);
    cr_assert_eq(pard_msg_decode(body, blen, out), 0);
    assert_msg_eq(m, out);
    pard_frame_reader_destroy(&r);
    free(m);
    free(out);
}

/* Whether fd is an open descriptor. */
static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

Test(frame, reader_pairs_each_descriptor_with_its_frame, .timeout = 10)
{
    struct pard_msg *m = new_msg();
    uint8_t stream[1024];
    size_t a, b, c;
    sample_msg(m, PARD_MSG_OK, 0);
    cr_assert_eq(pard_msg_encode_frame(m, stream, sizeof(stream), &a), 0);
    sample_msg(m, PARD_MSG_JOB, 0);
    cr_assert_eq(pard_msg_encode_frame(m, stream + a, sizeof(stream) - a, &b), 0);
    sample_msg(m, PARD_MSG_ATTACH, 0);
    cr_assert_eq(pard_msg_encode_frame(m, stream + a + b, sizeof(stream) - a - b, &c), 0);

    int p1[2], p2[2];
    cr_assert_eq(pipe(p1), 0);
    cr_assert_eq(pipe(p2), 0);
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);
    /* As the kernel would deliver them: ok and the first bytes of job in
     * one read with job's descriptor; the rest of job and attach's first
     * byte with attach's; then attach's tail. */
    cr_assert_eq(pard_frame_reader_feed(&r, stream, a + 3, &p1[1], 1), 0);
    cr_assert_eq(pard_frame_reader_feed(&r, stream + a + 3, b - 3 + 1, &p2[1], 1), 0);
    cr_assert_eq(pard_frame_reader_feed(&r, stream + a + b + 1, c - 1, NULL, 0), 0);

    const void *body;
    size_t len;
    int fd;
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, &fd), 1);
    cr_assert_eq(len, a - 4);
    cr_assert_eq(fd, -1, "ok came without a descriptor");
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, &fd), 1);
    cr_assert_eq(len, b - 4);
    cr_assert_eq(fd, p1[1], "job got its descriptor");
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, &fd), 1);
    cr_assert_eq(len, c - 4);
    cr_assert_eq(fd, p2[1], "attach got its descriptor");
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, &fd), 0);
    pard_frame_reader_destroy(&r);
    cr_assert(fd_open(p1[1]) && fd_open(p2[1]), "handed-out descriptors belong to the caller");
    free(m);
}

Test(frame, reader_closes_descriptors_it_cannot_hand_out, .timeout = 10)
{
    int p[2], q[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pipe(q), 0);
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);
    uint8_t hdr[4];
    pard_frame_put_header(hdr, 10);
    int two[2] = {p[0], p[1]};
    cr_assert_eq(pard_frame_reader_feed(&r, hdr, 4, two, 2), 0);
    cr_assert(fd_open(p[0]), "the first one is kept for the frame");
    cr_assert_not(fd_open(p[1]), "a second descriptor for one frame is closed");
    pard_frame_reader_destroy(&r);
    cr_assert_not(fd_open(p[0]), "destroy closes what was never handed out");

    /* An oversize frame drops its descriptor with it. */
    cr_assert_eq(pard_frame_reader_init(&r, 4), 0);
    cr_assert_eq(pard_frame_reader_feed(&r, hdr, 4, &q[0], 1), 0);
    const void *body;
    size_t len;
    cr_assert_eq(pard_frame_reader_next(&r, &body, &len, NULL), -PARD_ETOOBIG);
    cr_assert_not(fd_open(q[0]));
    /* Feeding a broken reader closes what comes with the bytes. */
    cr_assert_eq(pard_frame_reader_feed(&r, hdr, 4, &q[1], 1), -PARD_ETOOBIG);
    cr_assert_not(fd_open(q[1]));
    pard_frame_reader_destroy(&r);
}

/* ======================================================================
 * Sockets
 * ====================================================================== */

static void make_pair(int sv[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    cr_assert_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

Test(sock, passes_a_pipe_that_works_on_the_other_side, .timeout = 10)
{
    int sv[2], p[2];
    make_pair(sv);
    cr_assert_eq(pipe(p), 0);
    struct pard_msg *m = new_msg(), *out = new_msg();
    sample_msg(m, PARD_MSG_JOB, 0);
    cr_assert_eq(pard_sock_send_msg(sv[0], m, p[1]), 0);
    close(p[1]); /* the receiver's copy is now the only write end */

    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, PARD_FRAME_MAX_CLIENT), 0);
    int got = -1;
    cr_assert_eq(pard_sock_recv_msg(sv[1], &r, out, 1000, &got), 0);
    assert_msg_eq(m, out);
    cr_assert_geq(got, 0, "the descriptor arrived");
    cr_assert(fcntl(got, F_GETFD) & FD_CLOEXEC, "received close-on-exec");
    cr_assert_eq(write(got, "hello", 5), 5);
    close(got);
    char buf[8] = {0};
    cr_assert_eq(read(p[0], buf, sizeof(buf)), 5);
    cr_assert_str_eq(buf, "hello");
    cr_assert_eq(read(p[0], buf, sizeof(buf)), 0, "no copy of the write end leaked");
    pard_frame_reader_destroy(&r);
    free(m);
    free(out);
}

Test(sock, descriptor_goes_with_its_frame_when_frames_arrive_together, .timeout = 10)
{
    int sv[2], p[2];
    make_pair(sv);
    cr_assert_eq(pipe(p), 0);
    struct pard_msg *m = new_msg(), *out = new_msg();
    /* ok, then attach with a descriptor, both queued before any read. */
    sample_msg(m, PARD_MSG_OK, 0);
    cr_assert_eq(pard_sock_send_msg(sv[0], m, -1), 0);
    sample_msg(m, PARD_MSG_ATTACH, 0);
    cr_assert_eq(pard_sock_send_msg(sv[0], m, p[1]), 0);

    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);
    int got = -1;
    cr_assert_eq(pard_sock_recv_msg(sv[1], &r, out, 1000, &got), 0);
    cr_assert_eq(out->type, PARD_MSG_OK);
    cr_assert_eq(got, -1, "ok has no descriptor, even if it came in the same read");
    cr_assert_eq(pard_sock_recv_msg(sv[1], &r, out, 1000, &got), 0);
    cr_assert_eq(out->type, PARD_MSG_ATTACH);
    cr_assert_geq(got, 0, "attach has it");
    close(got);
    pard_frame_reader_destroy(&r);
    free(m);
    free(out);
}

Test(sock, recv_closes_descriptors_the_caller_has_no_room_for, .timeout = 10)
{
    int sv[2], p[2];
    make_pair(sv);
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(pard_sock_send(sv[0], "x", 1, p[1]), 1);
    close(p[1]);
    char c;
    int n = 0;
    cr_assert_eq(pard_sock_recv(sv[1], &c, 1, NULL, &n), 1);
    cr_assert_eq(n, 0);
    char buf[4];
    cr_assert_eq(read(p[0], buf, sizeof(buf)), 0, "every write end is closed");
}

Test(sock, nonblocking_calls_report_eagain_and_partial_writes, .timeout = 10)
{
    int sv[2];
    make_pair(sv);
    set_nonblock(sv[0]);
    set_nonblock(sv[1]);
    char buf[4096];
    int nfds = 0;
    cr_assert_eq(pard_sock_recv(sv[1], buf, sizeof(buf), NULL, &nfds), -EAGAIN);

    static char big[1 << 20];
    size_t total = 0;
    int n;
    while ((n = pard_sock_send(sv[0], big, sizeof(big), -1)) > 0)
        total += (size_t)n;
    cr_assert_eq(n, -EAGAIN, "a full socket says so");
    cr_assert_gt(total, 0);
    cr_assert_lt(total, sizeof(big) * 8, "the kernel buffer is finite");
    cr_assert_eq(pard_sock_send(sv[0], big, 0, -1), -EINVAL);
}

Test(sock, recv_frame_times_out_and_reports_a_closed_peer, .timeout = 10)
{
    int sv[2];
    make_pair(sv);
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, 0), 0);
    const void *body;
    size_t len;
    int64_t t0 = pard_now_ns();
    cr_assert_eq(pard_sock_recv_frame(sv[1], &r, &body, &len, 50, NULL), -ETIMEDOUT,
                 "a blocking socket still honours the timeout");
    cr_assert_geq(pard_now_ns() - t0, 40 * 1000000);

    /* Half a frame, then the peer goes away. */
    uint8_t hdr[4];
    pard_frame_put_header(hdr, 10);
    cr_assert_eq(pard_sock_send(sv[0], hdr, 4, -1), 4);
    close(sv[0]);
    cr_assert_eq(pard_sock_recv_frame(sv[1], &r, &body, &len, 1000, NULL), -ECONNRESET);
    cr_assert_eq(pard_frame_reader_buffered(&r), 4, "the caller can tell it was mid-frame");
    pard_frame_reader_destroy(&r);
}

Test(sock, send_to_a_closed_peer_is_epipe_not_a_signal, .timeout = 10)
{
    int sv[2];
    make_pair(sv);
    close(sv[1]);
    struct pard_msg *m = new_msg();
    sample_msg(m, PARD_MSG_STATS, 0);
    cr_assert_eq(pard_sock_send_msg(sv[0], m, -1), -EPIPE);
    free(m);
}

/* Runs in a forked child: no cr_assert here (the runner does not know
 * this process), only the exit status. */
static int send_big_reply(void *arg, int i)
{
    int fd = *(int *)arg;
    struct pard_msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return 1;
    sample_msg(m, PARD_MSG_WORKERS_REPLY, 1);
    if (i && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        return 1; /* non-blocking: send_frame still delivers it whole */
    int rc = pard_sock_send_msg(fd, m, -1);
    free(m);
    return rc == 0 ? 0 : 1;
}

static void big_reply_crosses(int nonblocking_sender)
{
    int sv[2];
    make_pair(sv);
    /* Not test_fork(): its cr_assert right after fork() also runs in the
     * child, which the runner refuses to hear from under --full-stats. */
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        _exit(send_big_reply(&sv[0], nonblocking_sender));
    }
    cr_assert_geq(pid, 0, "fork");
    close(sv[0]);
    struct pard_msg *want = new_msg(), *out = new_msg();
    sample_msg(want, PARD_MSG_WORKERS_REPLY, 1);
    struct pard_frame_reader r;
    cr_assert_eq(pard_frame_reader_init(&r, PARD_FRAME_MAX_CLIENT), 0);
    cr_assert_eq(pard_sock_recv_msg(sv[1], &r, out, 5000, NULL), 0);
    assert_msg_eq(want, out);
    test_wait_ok(pid, "sender");
    pard_frame_reader_destroy(&r);
    free(want);
    free(out);
}

Test(sock, a_megabyte_reply_crosses_a_blocking_socket_whole, .timeout = 30)
{
    big_reply_crosses(0);
}

Test(sock, a_megabyte_reply_crosses_a_nonblocking_socket_whole, .timeout = 30)
{
    big_reply_crosses(1);
}
