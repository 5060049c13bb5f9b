/*
 * test_array.c — pard_map_array end to end: a private pard
 * (pard_open_private) whose workers, forked from this test, serve the
 * functions below. Every result is checked against what the test computes
 * itself; the slot of a task that failed must be left as it was. No test
 * looks at how fast anything ran.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "client_helpers.h"
#include "pard/job.h"

#define PRIVATE_WORKERS 2

/* State the forked workers share with the test (mapped before the fork). */
struct shared_state {
    _Atomic uint32_t attempts[4096]; /* per item value, for the first 4096 */
};
static struct shared_state *state;

static int64_t item_of(const void *in, size_t len)
{
    int64_t x = -1;
    if (len == sizeof(x))
        memcpy(&x, in, sizeof(x));
    return x;
}

static int put_i64(struct pard_out *out, int64_t v)
{
    return pard_out_write(out, &v, sizeof(v));
}

/* x → 3x + 1, after checking that the item is the task's own. */
static int triple(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t x = item_of(in, len);
    if (x < 0 || (uint64_t)x != pard_out_task_index(out))
        return pard_out_error(out, "triple: item %lld for task %llu", (long long)x,
                              (unsigned long long)pard_out_task_index(out));
    return put_i64(out, 3 * x + 1);
}

/* Fails the items that end in 7, with a message naming them. */
static int sevens_fail(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t x = item_of(in, len);
    if (x % 10 == 7)
        return pard_out_error(out, "%lld ends in 7", (long long)x);
    return put_i64(out, -x);
}

/* Item 3 writes 4 bytes, item 4 writes 12, item 5 returns 9 without a
 * message; the rest write their 8 bytes. */
static int wrong_sizes(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t x = item_of(in, len);
    if (x == 3)
        return pard_out_write(out, "abcd", 4);
    if (x == 4) {
        put_i64(out, x);
        return pard_out_write(out, "abcd", 4) == -ENOSPC ? 0 : pard_out_error(out, "no ENOSPC");
    }
    if (x == 5)
        return 9;
    return put_i64(out, x);
}

/* No item: the result is twice the task's index, as 8 decimal digits
 * written with printf (the slot has no room for its NUL). */
static int index_text(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    if (len != 0)
        return pard_out_error(out, "index_text: %zu bytes of item", len);
    return pard_out_printf(out, "%08llu", (unsigned long long)(2 * pard_out_task_index(out)));
}

/* Nothing in, nothing out. */
static int nothing(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    return len == 0 ? 0 : pard_out_error(out, "nothing: %zu bytes of item", len);
}

/* x → x + 1; item 1234 aborts its worker on its first attempt. */
static int crash_once(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t x = item_of(in, len);
    if (x >= 0 && x < 4096 && atomic_fetch_add(&state->attempts[x], 1) == 0 && x == 1234)
        abort();
    return put_i64(out, x + 1);
}

/* x → x + 1; item 77 hangs for a minute on its first attempt. */
static int hang_once(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t x = item_of(in, len);
    if (x >= 0 && x < 4096 && atomic_fetch_add(&state->attempts[x], 1) == 0 && x == 77)
        sleep(60);
    return put_i64(out, x + 1);
}

/* x → x + 1; item 3000 kills its own worker with SIGKILL on its first
 * attempt (no crash handler runs, as with the OOM killer). */
static int killed_once(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t x = item_of(in, len);
    if (x >= 0 && x < 4096 && atomic_fetch_add(&state->attempts[x], 1) == 0 && x == 3000)
        raise(SIGKILL);
    return put_i64(out, x + 1);
}

/* The record form, for a pard_map after an array map on the same workers. */
static int echo(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    return pard_out_write(out, in, len);
}

static const struct pard_function fns[] = {
    {"triple", triple},         {"sevens_fail", sevens_fail}, {"wrong_sizes", wrong_sizes},
    {"index_text", index_text}, {"nothing", nothing},         {"crash_once", crash_once},
    {"hang_once", hang_once},   {"killed_once", killed_once}, {"echo", echo},
};

/* A record map of "I" → "I" (decimal), checked as results come. */
struct echo_run {
    uint64_t n, delivered;
    char buf[32];
};

static int echo_next(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct echo_run *e = arg;
    if (index >= e->n)
        return 0;
    *len = (size_t)snprintf(e->buf, sizeof(e->buf), "%llu", (unsigned long long)index);
    *data = e->buf;
    return 1;
}

static int echo_check(void *arg, const struct pard_result *r)
{
    struct echo_run *e = arg;
    char want[32];
    int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)r->index);
    cr_assert_eq(r->status, 0, "task %llu: %.*s", (unsigned long long)r->index, (int)r->len,
                 (const char *)r->data);
    cr_assert_eq(r->len, (size_t)n);
    cr_assert_eq(memcmp(r->data, want, (size_t)n), 0);
    e->delivered++;
    return 0;
}

static struct pard_client *open_private(void)
{
    state = test_shared_alloc(sizeof(*state));
    memset(state, 0, sizeof(*state));
    struct pard_client *c = NULL;
    int rc = pard_open_private(&c, fns, sizeof(fns) / sizeof(fns[0]), PRIVATE_WORKERS);
    cr_assert_eq(rc, 0, "pard_open_private: %s", pard_last_error());
    return c;
}

/* 0, 1, ..., n - 1 */
static int64_t *iota(size_t n)
{
    int64_t *a = malloc((n ? n : 1) * sizeof(*a));
    cr_assert_not_null(a);
    for (size_t i = 0; i < n; i++)
        a[i] = (int64_t)i;
    return a;
}

/* n results, each set to `sentinel` so that an untouched one shows. */
static int64_t *results_of(size_t n, int64_t sentinel)
{
    int64_t *a = malloc((n ? n : 1) * sizeof(*a));
    cr_assert_not_null(a);
    for (size_t i = 0; i < n; i++)
        a[i] = sentinel;
    return a;
}

/* Failures as on_error sees them. */
struct failures {
    uint64_t n;
    uint64_t index[64];
    int status[64];
    char message[64][128];
    const char *function[64];
};

static int record_failure(void *arg, const struct pard_result *r)
{
    struct failures *f = arg;
    cr_assert_lt(f->n, 64, "more failures than expected");
    f->index[f->n] = r->index;
    f->status[f->n] = r->status;
    f->function[f->n] = r->function;
    snprintf(f->message[f->n], sizeof(f->message[0]), "%.*s", (int)r->len, (const char *)r->data);
    f->n++;
    return 0;
}

/* Large enough to wrap the task ring, the input arena and the window many
 * times; smaller under sanitizers, which run every task ~10x slower. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BIG 300000u
#else
#define BIG 3000000u
#endif

Test(array, every_result_lands_in_its_place_over_a_wrapped_window, .timeout = 300)
{
    struct pard_client *c = open_private();
    const size_t n = BIG;
    int64_t *in = iota(n), *out = results_of(n, -1);
    struct failures f = {0};
    struct pard_map_stats st;
    cr_assert_eq(pard_map_array(c, "triple", in, 8, n, out, 8, record_failure, &f, NULL, &st), 0,
                 "%s", pard_last_error());
    cr_assert_eq(f.n, 0, "task %llu failed: %s", (unsigned long long)f.index[0], f.message[0]);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], 3 * (int64_t)i + 1, "result %zu is %lld", i, (long long)out[i]);
    cr_assert_eq(st.tasks, n);
    cr_assert_eq(st.failed, 0);
    cr_log_info("array: %zu tasks, %llu dropped, %.1f ms", n, (unsigned long long)st.dropped,
                (double)st.elapsed_ns / 1e6);
    /* Unordered, manual batches of 7: the same results. */
    int64_t *out2 = results_of(n, -1);
    struct pard_map_opts opts = {.unordered = true, .batch = 7};
    cr_assert_eq(pard_map_array(c, "triple", in, 8, n / 10, out2, 8, NULL, NULL, &opts, &st), 0,
                 "%s", pard_last_error());
    cr_assert_eq(memcmp(out, out2, n / 10 * sizeof(*out)), 0);
    cr_assert_eq(out2[n / 10], -1, "a result past the items was written");
    free(in);
    free(out);
    free(out2);
    pard_disconnect(c);
}

Test(array, failures_come_in_input_order_with_messages_and_leave_their_slots, .timeout = 120)
{
    struct pard_client *c = open_private();
    const size_t n = 20000;
    int64_t *in = iota(n), *out = results_of(n, 99);
    struct failures f = {0};
    /* 20,000 items, 2,000 of them failing: too many for the record; map
     * the first 600 (60 failures). */
    struct pard_map_stats st;
    cr_assert_eq(
        pard_map_array(c, "sevens_fail", in, 8, 600, out, 8, record_failure, &f, NULL, &st), 0,
        "%s", pard_last_error());
    cr_assert_eq(f.n, 60);
    for (uint64_t k = 0; k < f.n; k++) {
        cr_assert_eq(f.index[k], 10 * k + 7, "failure %llu is task %llu", (unsigned long long)k,
                     (unsigned long long)f.index[k]);
        cr_assert_eq(f.status[k], -PARD_ETASK);
        cr_assert_str_eq(f.function[k], "sevens_fail");
        char want[64];
        snprintf(want, sizeof(want), "%llu ends in 7", (unsigned long long)f.index[k]);
        cr_assert_str_eq(f.message[k], want);
    }
    for (size_t i = 0; i < 600; i++)
        cr_assert_eq(out[i], i % 10 == 7 ? 99 : -(int64_t)i, "result %zu is %lld", i,
                     (long long)out[i]);
    cr_assert_eq(st.tasks, 600);
    cr_assert_eq(st.failed, 60);
    /* Without on_error the first failure stops the map, and says which. */
    int rc = pard_map_array(c, "sevens_fail", in, 8, n, out, 8, NULL, NULL, NULL, NULL);
    cr_assert_eq(rc, -PARD_ETASK, "rc %d", rc);
    cr_assert_not_null(strstr(pard_last_error(), "task 7 failed: 7 ends in 7"), "%s",
                       pard_last_error());
    /* The client maps again after it. */
    cr_assert_eq(pard_map_array(c, "sevens_fail", in, 8, 7, out, 8, NULL, NULL, NULL, NULL), 0,
                 "%s", pard_last_error());
    free(in);
    free(out);
    pard_disconnect(c);
}

Test(array, a_result_of_the_wrong_size_fails_its_task_alone, .timeout = 120)
{
    struct pard_client *c = open_private();
    const size_t n = 1000;
    int64_t *in = iota(n), *out = results_of(n, -5);
    struct failures f = {0};
    cr_assert_eq(pard_map_array(c, "wrong_sizes", in, 8, n, out, 8, record_failure, &f, NULL, NULL),
                 0, "%s", pard_last_error());
    cr_assert_eq(f.n, 3);
    cr_assert_eq(f.index[0], 3);
    cr_assert_not_null(strstr(f.message[0], "wrote 4 bytes; the map's results are 8 bytes"), "%s",
                       f.message[0]);
    cr_assert_eq(f.index[1], 4);
    cr_assert_not_null(strstr(f.message[1], "more than the map's result size of 8 bytes"), "%s",
                       f.message[1]);
    cr_assert_eq(f.index[2], 5);
    cr_assert_str_eq(f.message[2], "the function returned 9");
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], i >= 3 && i <= 5 ? -5 : (int64_t)i, "result %zu", i);
    free(in);
    free(out);
    pard_disconnect(c);
}

Test(array, items_and_results_of_zero_bytes, .timeout = 120)
{
    struct pard_client *c = open_private();
    const size_t n = 100000;
    char *out = malloc(n * 8 + 1);
    cr_assert_not_null(out);
    out[n * 8] = 'X';
    struct pard_map_stats st;
    cr_assert_eq(pard_map_array(c, "index_text", NULL, 0, n, out, 8, NULL, NULL, NULL, &st), 0,
                 "%s", pard_last_error());
    for (size_t i = 0; i < n; i++) {
        char want[9];
        snprintf(want, sizeof(want), "%08llu", (unsigned long long)(2 * i));
        cr_assert_eq(memcmp(out + 8 * i, want, 8), 0, "result %zu: %.8s", i, out + 8 * i);
    }
    cr_assert_eq(out[n * 8], 'X');
    cr_assert_eq(pard_map_array(c, "nothing", NULL, 0, n, NULL, 0, NULL, NULL, NULL, &st), 0, "%s",
                 pard_last_error());
    cr_assert_eq(st.tasks, n);
    /* No items at all: nothing to do, and no error. */
    cr_assert_eq(pard_map_array(c, "nothing", NULL, 0, 0, NULL, 0, NULL, NULL, NULL, &st), 0, "%s",
                 pard_last_error());
    cr_assert_eq(st.tasks, 0);
    free(out);
    pard_disconnect(c);
}

Test(array, bad_arguments_and_oversized_items_get_clear_errors, .timeout = 60)
{
    struct pard_client *c = open_private();
    int64_t one = 1, res;
    cr_assert_eq(pard_map_array(c, "triple", NULL, 8, 1, &res, 8, NULL, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(pard_map_array(c, "triple", &one, 8, 1, NULL, 8, NULL, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(pard_map_array(c, "bad name!", &one, 8, 1, &res, 8, NULL, NULL, NULL, NULL),
                 -EINVAL);
    size_t big = 3u << 20; /* over half the default 4 MiB input arena */
    char *items = calloc(2, big);
    cr_assert_not_null(items);
    int rc = pard_map_array(c, "triple", items, big, 2, &res, 0, NULL, NULL, NULL, NULL);
    cr_assert_eq(rc, -PARD_ETOOBIG, "rc %d", rc);
    cr_assert_not_null(strstr(pard_last_error(), "map larger ones with pard_map"), "%s",
                       pard_last_error());
    free(items);
    /* Still serving. */
    cr_assert_eq(pard_map_array(c, "triple", &one, 8, 1, &res, 8, NULL, NULL, NULL, NULL),
                 -PARD_ETASK, "item 1 is not task 0's own: %s", pard_last_error());
    int64_t zero = 0;
    cr_assert_eq(pard_map_array(c, "triple", &zero, 8, 1, &res, 8, NULL, NULL, NULL, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(res, 1);
    pard_disconnect(c);
}

Test(array, a_crash_and_a_hang_are_retried_and_every_result_is_right, .timeout = 120)
{
    struct pard_client *c = open_private();
    const size_t n = 4096;
    int64_t *in = iota(n), *out = results_of(n, -1);
    struct pard_map_opts opts = {.retries = 1};
    struct pard_map_stats st;
    cr_assert_eq(pard_map_array(c, "crash_once", in, 8, n, out, 8, NULL, NULL, &opts, &st), 0, "%s",
                 pard_last_error());
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], (int64_t)i + 1, "result %zu", i);
    cr_assert_eq(atomic_load(&state->attempts[1234]), 2, "item 1234 ran %u times",
                 atomic_load(&state->attempts[1234]));
    cr_assert_geq(st.requeued, 1);
    /* A time limit takes the plain loop's other form: item 77 hangs once.
     * The counts start again: crash_once ran every item, and with its
     * counts left, no item of this map is on its first attempt and
     * nothing would hang. */
    memset(state, 0, sizeof(*state));
    memset(out, 0xff, n * sizeof(*out));
    opts.timeout_ms = 500;
    cr_assert_eq(pard_map_array(c, "hang_once", in, 8, n, out, 8, NULL, NULL, &opts, &st), 0, "%s",
                 pard_last_error());
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], (int64_t)i + 1, "result %zu", i);
    cr_assert_eq(atomic_load(&state->attempts[77]), 2);
    cr_assert_geq(st.requeued, 1, "the timed-out task was re-queued");
    free(in);
    free(out);
    pard_disconnect(c);
}

Test(array, a_worker_killed_mid_map_loses_nothing_and_a_record_map_follows, .timeout = 120)
{
    struct pard_client *c = open_private();
    const size_t n = 200000;
    int64_t *in = iota(n), *out = results_of(n, -1);
    struct pard_map_stats st;
    cr_assert_eq(pard_map_array(c, "killed_once", in, 8, n, out, 8, NULL, NULL, NULL, &st), 0, "%s",
                 pard_last_error());
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(out[i], (int64_t)i + 1, "result %zu", i);
    cr_assert_eq(st.tasks, n);
    cr_assert_eq(st.failed, 0);
    cr_assert_geq(st.requeued, 1, "the killed worker's tasks were re-queued");
    cr_assert_eq(atomic_load(&state->attempts[3000]), 2);
    cr_log_info("killed mid-map: %llu re-queued, %llu duplicates dropped",
                (unsigned long long)st.requeued, (unsigned long long)st.dropped);
    /* The same workers (one forked again) serve a record map. */
    struct echo_run e = {.n = 1000};
    cr_assert_eq(pard_map(c, "echo", echo_next, echo_check, &e, NULL, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(e.delivered, e.n);
    free(in);
    free(out);
    pard_disconnect(c);
}

/* A libpard worker serving fns, forked from the test, on d's socket. */
static int serve_fns(void *arg, int i)
{
    (void)i;
    const struct test_daemon *d = arg;
    struct pard_worker_opts o = {.socket_path = d->socket, .name = "array-worker"};
    return pard_worker_run(fns, sizeof(fns) / sizeof(fns[0]), &o) == 0 ? 0 : 1;
}

/* A raw protocol connection to d in `role`, past its handshake. */
static int raw_hello(const struct test_daemon *d, enum pard_role role, struct pard_frame_reader *r,
                     struct pard_msg *m)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(d->socket), sizeof(sa.sun_path));
    memcpy(sa.sun_path, d->socket, strlen(d->socket) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(pard_frame_reader_init(r, PARD_FRAME_MAX_CLIENT), 0);
    pard_msg_init(m, PARD_MSG_HELLO);
    m->hello.role = role;
    m->hello.pid = (uint32_t)getpid();
    cr_assert_eq(pard_sock_send_msg(fd, m, -1), 0);
    cr_assert_eq(pard_sock_recv_msg(fd, r, m, 5000, NULL), 0);
    cr_assert_eq(m->type, PARD_MSG_WELCOME);
    return fd;
}

/*
 * A re-queued batch (attempt > 0) whose tasks were all delivered meanwhile
 * comes back as one skip record (16 bytes) per task. A real map gets there
 * when reconcile re-queues a batch that a live but stalled worker popped
 * and had not leased yet: that worker then delivers it (the map is marking
 * by then), and the re-queued copy reaches a worker with every task
 * marked. With a large opts.batch and results of a few bytes, a chunk's
 * skips alone can outgrow the lane's output arena (over the whole arena the
 * worker leaves the job; over half of it, it can wait for room forever
 * holding its lease). Here the test is that submitter, speaking the
 * protocol: 8,192 marked tasks in one descriptor, skips of 128 KiB, a 64 KiB
 * output arena. Every task must come back skipped, in spans that fit.
 */
Test(array, a_requeued_batch_delivered_meanwhile_comes_back_skipped_in_spans_that_fit,
     .timeout = 60)
{
    struct test_daemon d;
    test_daemon_start(&d);
    pid_t w = test_fork(serve_fns, &d, 0);
    d.workers[d.nworkers++] = w;
    test_wait_workers(&d, 1);

    struct pard_msg *m = malloc(sizeof(*m));
    cr_assert_not_null(m);
    struct pard_frame_reader r;
    int fd = raw_hello(&d, PARD_ROLE_SUBMITTER, &r, m);
    enum { N = 8192 };
    pard_msg_init(m, PARD_MSG_SUBMIT);
    snprintf(m->submit.function, sizeof(m->submit.function), "nothing");
    m->submit.max_lanes = 1;
    m->submit.window = N;
    m->submit.output_arena = 64 << 10;
    m->submit.array = 1; /* items and results of 0 bytes */
    cr_assert_eq(pard_sock_send_msg(fd, m, -1), 0);
    int jfd = -1;
    cr_assert_eq(pard_sock_recv_msg(fd, &r, m, 10000, &jfd), 0);
    cr_assert_eq(m->type, PARD_MSG_JOB, "got a %s", pard_msg_type_name(m->type));
    cr_assert(jfd >= 0);
    uint64_t id = m->job.job_id;
    struct pard_job job;
    cr_assert_eq(pard_job_attach(&job, jfd), 0);
    close(jfd);
    for (uint64_t i = 0; i < N; i++)
        atomic_store(&job.done[i], i + 1); /* all delivered */
    struct pard_task_desc t = {.first = 0, .count = N, .attempt = 1, .off = 0, .len = 0};
    cr_assert_eq(pard_ring_push_wait(&job.tasks, &t, 1, PARD_WAIT_BLOCK, -1), 1);

    struct pard_lane lane;
    cr_assert_eq(pard_job_lane(&job, 0, &lane), 0);
    uint64_t skipped = 0, spans = 0, biggest = 0;
    int64_t deadline = pard_now_ns() + 10 * 1000000000LL;
    while (skipped < N && pard_now_ns() < deadline) {
        struct pard_result_desc rd;
        if (pard_ring_spsc_pop(&lane.results, &rd) != 1) {
            usleep(1000);
            continue;
        }
        const void *base = pard_arena_read(&lane.output, rd.off, rd.len);
        cr_assert_not_null(base);
        struct pard_records it;
        pard_records_init(&it, base, rd.len); /* no values: results of 0 bytes */
        struct pard_record rec;
        const void *p;
        while (pard_records_next(&it, &rec, &p) == 1) {
            uint64_t index;
            cr_assert_eq(rec.status, PARD_REC_SKIPPED);
            cr_assert_eq(rec.len, 8);
            memcpy(&index, p, 8);
            cr_assert_eq(index, skipped, "skip of task %llu, expected %llu",
                         (unsigned long long)index, (unsigned long long)skipped);
            skipped++;
        }
        spans++;
        if (rd.len > biggest)
            biggest = rd.len;
        cr_assert_eq(pard_arena_release(&lane.output, rd.end), 0);
        pard_event_notify(&lane.results.hdr->not_full);
    }
    cr_log_info("skips: %llu in %llu spans, the biggest %llu bytes", (unsigned long long)skipped,
                (unsigned long long)spans, (unsigned long long)biggest);
    cr_assert_eq(skipped, N, "%llu of %d tasks came back (the worker could not place its span)",
                 (unsigned long long)skipped, N);
    cr_assert_leq(biggest, lane.output.capacity / 2);
    pard_msg_init(m, PARD_MSG_JOB_END);
    m->job_end.job_id = id;
    cr_assert_eq(pard_sock_send_msg(fd, m, -1), 0);
    pard_job_close(&job);
    close(fd);
    pard_frame_reader_destroy(&r);
    free(m);
    test_daemon_stop(&d);
}
