/*
 * test_map.c — libpard's map, end to end: a real pard, real workers (the
 * example worker, or functions of this file in workers that
 * pard_open_private forks from the test), and the three case-study
 * programs run as real processes.
 *
 * Every check compares with a result computed here, in the test: serial
 * outputs, the unbatched run, the submitter's own checksum of a shared
 * block. No test looks at how fast anything ran.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "client_helpers.h"

#define TEST_CLIENTS PARD_BUILD_DIR "/clients"

/* ======================================================================
 * Helpers: the daemon's stats, workers, processes
 * ====================================================================== */

/* A control connection (the daemon is listening once its socket exists). */
static struct pard_client *connect_control(const char *socket)
{
    struct pard_client *c = NULL;
    cr_assert_eq(pard_connect_control(&c, socket), 0, "%s", pard_last_error());
    return c;
}

/* Wait until the daemon holds no job (20 s at most). */
static void wait_no_jobs(const char *socket)
{
    struct pard_msg_stats_reply s;
    for (int i = 0; i < 2000; i++) {
        test_get_stats(socket, &s);
        if (s.jobs == 0)
            return;
        usleep(10000);
    }
    cr_assert_fail("the daemon still holds %llu jobs", (unsigned long long)s.jobs);
}

/* A daemon with `n` example workers of its own (--spawn: they come back
 * when they die). */
static void start_with_spawned_workers(struct test_daemon *d, const char *n)
{
    char *args[] = {"--spawn", (char *)n, "--worker", TEST_WORKER, NULL};
    test_daemon_start_args(d, args);
    test_wait_workers(d, strtoull(n, NULL, 10));
}

/* A daemon and `n` example workers started by the test. */
static void start_with_workers(struct test_daemon *d, int n)
{
    test_daemon_start(d);
    pard_disconnect(connect_control(d->socket)); /* listening: workers are not refused */
    for (int i = 0; i < n; i++)
        test_worker_start(d);
    test_wait_workers(d, (uint64_t)n);
}

static uint64_t fnv1a(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* The parent pid of `pid` from /proc, or -1 when it is gone. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')'); /* the name may hold spaces */
    int ppid;
    char state;
    if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return (pid_t)ppid;
}

/* The live children of this process; returns how many (at most max). */
static int children(pid_t *out, int max)
{
    DIR *dir = opendir("/proc");
    cr_assert_not_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) && n < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end == '\0' && pid > 0 && parent_of((pid_t)pid) == getpid())
            out[n++] = (pid_t)pid;
    }
    closedir(dir);
    return n;
}

/* Run a program with stdout and stderr into `out_path`; its exit status,
 * or -1 if it did not exit normally. */
static int run_program(char *const argv[], const char *out_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    cr_assert(pid > 0, "fork failed");
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Read a small file into buf (NUL-terminated). */
static void read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* ======================================================================
 * Inputs and results
 * ====================================================================== */

enum input_kind {
    IN_NUMBER, /* "i" */
    IN_TEXT,   /* "item-i-" and i % 61 letters: lengths vary */
    IN_SLEEP,  /* microseconds: sleep_of[i] */
};

struct inputs {
    enum input_kind kind;
    uint64_t n;
    const uint32_t *sleep_of; /* IN_SLEEP */
    char buf[128];
};

/* Input i into buf; its length. */
static size_t make_input(const struct inputs *in, uint64_t i, char *buf, size_t size)
{
    int n = 0;
    switch (in->kind) {
    case IN_NUMBER:
        n = snprintf(buf, size, "%llu", (unsigned long long)i);
        break;
    case IN_TEXT:
        n = snprintf(buf, size, "item-%llu-", (unsigned long long)i);
        for (uint64_t k = 0; k < i % 61 && (size_t)n + 1 < size; k++)
            buf[n++] = (char)('a' + (i + k) % 26);
        buf[n] = '\0';
        break;
    case IN_SLEEP:
        n = snprintf(buf, size, "%u", in->sleep_of[i]);
        break;
    }
    return (size_t)n;
}

static int next_input(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct inputs *in = arg;
    if (index >= in->n)
        return 0;
    *len = make_input(in, index, in->buf, sizeof(in->buf));
    *data = in->buf;
    return 1;
}

/* What each result was, per index. */
struct results {
    struct inputs in;
    bool ordered;        /* expect indices in order */
    uint64_t next_index; /* for the order check */
    uint64_t out_of_order;
    uint64_t bad_function; /* results naming another function */
    const char *function;
    uint32_t *count; /* deliveries per index */
    int32_t *status; /* per index */
    uint64_t *hash;  /* fnv1a of the output (or error message), per index */
    char **message;  /* per index, for errors (when keep_messages) */
    bool keep_messages;
    _Atomic uint64_t delivered;
};

static void results_init(struct results *r, const char *function, enum input_kind kind, uint64_t n,
                         bool ordered)
{
    memset(r, 0, sizeof(*r));
    r->in.kind = kind;
    r->in.n = n;
    r->function = function;
    r->ordered = ordered;
    r->count = calloc(n, sizeof(*r->count));
    r->status = calloc(n, sizeof(*r->status));
    r->hash = calloc(n, sizeof(*r->hash));
    r->message = calloc(n, sizeof(*r->message));
    cr_assert(r->count && r->status && r->hash && r->message);
}

static void results_free(struct results *r)
{
    for (uint64_t i = 0; i < r->in.n; i++)
        free(r->message[i]);
    free(r->count);
    free(r->status);
    free(r->hash);
    free(r->message);
}

/* The result callback: record; asserts only what cannot wait. */
static int record(void *arg, const struct pard_result *res)
{
    struct results *r = arg;
    cr_assert_lt(res->index, r->in.n, "result for an index never submitted");
    uint64_t i = res->index;
    r->count[i]++;
    if (r->ordered && i != r->next_index)
        r->out_of_order++;
    r->next_index = i + 1;
    if (!res->function || strcmp(res->function, r->function) != 0)
        r->bad_function++;
    r->status[i] = res->status;
    r->hash[i] = fnv1a(res->data, res->len);
    if (r->keep_messages && res->status != 0) {
        free(r->message[i]);
        r->message[i] = strndup(res->data, res->len);
    }
    atomic_fetch_add(&r->delivered, 1);
    return 0;
}

/* The output function f gives for input i, computed here (serially). */
static uint64_t expected_hash(const struct results *r, uint64_t i)
{
    char in[128], out[64];
    size_t len = make_input(&r->in, i, in, sizeof(in));
    if (strcmp(r->function, "square") == 0) {
        int n = snprintf(out, sizeof(out), "%llu", (unsigned long long)(i * i));
        return fnv1a(out, (size_t)n);
    }
    return fnv1a(in, len); /* echo and sleep_us return their input */
}

/* Every index delivered once, in order if asked, each output right. */
static void assert_serial_result(const struct results *r)
{
    cr_assert_eq(r->out_of_order, 0, "%llu results out of order",
                 (unsigned long long)r->out_of_order);
    cr_assert_eq(r->bad_function, 0, "%llu results name another function",
                 (unsigned long long)r->bad_function);
    for (uint64_t i = 0; i < r->in.n; i++) {
        cr_assert_eq(r->count[i], 1, "task %llu delivered %u times", (unsigned long long)i,
                     r->count[i]);
        cr_assert_eq(r->status[i], 0, "task %llu failed with %d", (unsigned long long)i,
                     r->status[i]);
        cr_assert_eq(r->hash[i], expected_hash(r, i), "task %llu: wrong output",
                     (unsigned long long)i);
    }
}

/* Two runs gave the same status and output for every index. */
static void assert_same_results(const struct results *a, const struct results *b)
{
    cr_assert_eq(a->in.n, b->in.n);
    for (uint64_t i = 0; i < a->in.n; i++) {
        cr_assert_eq(a->count[i], b->count[i], "task %llu", (unsigned long long)i);
        cr_assert_eq(a->status[i], b->status[i], "task %llu", (unsigned long long)i);
        cr_assert_eq(a->hash[i], b->hash[i], "task %llu: outputs differ", (unsigned long long)i);
    }
}

/* ======================================================================
 * Ordered, unordered, batched
 * ====================================================================== */

Test(map, ordered_and_unordered_maps_equal_the_serial_result, .timeout = 180)
{
    struct test_daemon d;
    start_with_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct results r;
    struct pard_map_stats st;
    results_init(&r, "square", IN_NUMBER, 50000, true);
    cr_assert_eq(pard_map(c, "square", next_input, record, &r, NULL, &st), 0, "%s",
                 pard_last_error());
    cr_assert_eq(st.tasks, 50000);
    cr_assert_eq(st.failed, 0);
    assert_serial_result(&r);
    results_free(&r);

    results_init(&r, "square", IN_NUMBER, 50000, false);
    struct pard_map_opts opts = {.unordered = true};
    cr_assert_eq(pard_map(c, "square", next_input, record, &r, &opts, &st), 0, "%s",
                 pard_last_error());
    cr_assert_eq(st.tasks, 50000);
    assert_serial_result(&r);
    results_free(&r);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

/* Run `function` over n inputs auto-batched and unbatched (and ordered and
 * not); every run must equal the serial result and each other. */
static void compare_batching(const char *function, enum input_kind kind, uint64_t n,
                             const uint32_t *sleep_of, const uint32_t *batches, int nbatches)
{
    struct test_daemon d;
    start_with_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct results unbatched;
    results_init(&unbatched, function, kind, n, true);
    unbatched.in.sleep_of = sleep_of;
    struct pard_map_opts one = {.batch = 1};
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, function, next_input, record, &unbatched, &one, &st), 0, "%s",
                 pard_last_error());
    assert_serial_result(&unbatched);
    cr_log_info("%s x %llu, unbatched: %.1f ms", function, (unsigned long long)n,
                st.elapsed_ns / 1e6);
    for (int b = 0; b < nbatches; b++) {
        for (int unordered = 0; unordered < 2; unordered++) {
            struct results r;
            results_init(&r, function, kind, n, !unordered);
            r.in.sleep_of = sleep_of;
            struct pard_map_opts opts = {.batch = batches[b], .unordered = unordered};
            cr_assert_eq(pard_map(c, function, next_input, record, &r, &opts, &st), 0,
                         "batch %u: %s", batches[b], pard_last_error());
            assert_serial_result(&r);
            assert_same_results(&r, &unbatched);
            char batch[16] = "auto";
            if (batches[b] != PARD_BATCH_AUTO)
                snprintf(batch, sizeof(batch), "%u", batches[b]);
            cr_log_info("%s x %llu, batch %s%s: %.1f ms", function, (unsigned long long)n, batch,
                        unordered ? ", unordered" : "", st.elapsed_ns / 1e6);
            results_free(&r);
        }
    }
    results_free(&unbatched);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

Test(map, auto_batched_maps_of_200000_tiny_tasks_equal_the_unbatched_map, .timeout = 300)
{
    static const uint32_t auto_batch[] = {PARD_BATCH_AUTO};
    compare_batching("echo", IN_TEXT, 200000, NULL, auto_batch, 1);
}

Test(map, auto_batched_maps_of_a_few_slow_tasks_equal_the_unbatched_map, .timeout = 120)
{
    static const uint32_t auto_batch[] = {PARD_BATCH_AUTO};
    static uint32_t sleep_of[24];
    for (int i = 0; i < 24; i++)
        sleep_of[i] = 2000 + 3000 * (uint32_t)(i % 5); /* 2 to 14 ms */
    compare_batching("sleep_us", IN_SLEEP, 24, sleep_of, auto_batch, 1);
}

Test(map, manual_batch_sizes_7_and_64_equal_the_unbatched_map, .timeout = 300)
{
    static const uint32_t batches[] = {7, 64};
    compare_batching("square", IN_NUMBER, 20000, NULL, batches, 2);
}

/* ======================================================================
 * Failures: errors, time limits, crashes, retries
 * ====================================================================== */

Test(map, a_failing_function_fails_every_task_with_its_name_index_and_message, .timeout = 60)
{
    struct test_daemon d;
    start_with_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct results r;
    results_init(&r, "fail", IN_NUMBER, 500, true);
    r.keep_messages = true;
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, "fail", next_input, record, &r, NULL, &st), 0,
                 "a task's failure is not the map's: %s", pard_last_error());
    cr_assert_eq(st.tasks, 500);
    cr_assert_eq(st.failed, 500);
    cr_assert_eq(r.out_of_order, 0);
    cr_assert_eq(r.bad_function, 0, "every result names the function 'fail'");
    for (uint64_t i = 0; i < 500; i++) {
        cr_assert_eq(r.count[i], 1);
        cr_assert_eq(r.status[i], -PARD_ETASK, "task %llu: status %d", (unsigned long long)i,
                     r.status[i]);
        char want[64];
        snprintf(want, sizeof(want), "asked to fail on input '%llu'", (unsigned long long)i);
        cr_assert(r.message[i] && strstr(r.message[i], want), "task %llu: message '%s'",
                  (unsigned long long)i, r.message[i] ? r.message[i] : "(none)");
    }
    results_free(&r);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

Test(map, a_task_over_its_time_limit_fails_alone_and_the_others_succeed, .timeout = 120)
{
    struct test_daemon d;
    start_with_spawned_workers(&d, "2");
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    static uint32_t sleep_of[40];
    for (int i = 0; i < 40; i++)
        sleep_of[i] = i == 13 ? 60000000 : 1000; /* task 13: a minute */
    struct results r;
    results_init(&r, "sleep_us", IN_SLEEP, 40, true);
    r.in.sleep_of = sleep_of;
    r.keep_messages = true;
    struct pard_map_opts opts = {.timeout_ms = 500};
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, "sleep_us", next_input, record, &r, &opts, &st), 0, "%s",
                 pard_last_error());
    cr_assert_eq(r.out_of_order, 0);
    for (uint64_t i = 0; i < 40; i++) {
        cr_assert_eq(r.count[i], 1, "task %llu delivered %u times", (unsigned long long)i,
                     r.count[i]);
        if (i == 13) {
            cr_assert_eq(r.status[i], -PARD_ETASKTIMEOUT, "status %d: %s", r.status[i],
                         r.message[i]);
            cr_assert(strstr(r.message[i], "500 ms"), "message: %s", r.message[i]);
        } else {
            cr_assert_eq(r.status[i], 0, "task %llu: %d %s", (unsigned long long)i, r.status[i],
                         r.message[i] ? r.message[i] : "");
            cr_assert_eq(r.hash[i], expected_hash(&r, i));
        }
    }
    struct pard_msg_stats_reply s;
    test_get_stats(d.socket, &s);
    cr_assert_eq(s.timeouts, 1, "the daemon killed %llu workers for time",
                 (unsigned long long)s.timeouts);
    results_free(&r);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

Test(map, a_task_that_always_times_out_is_retried_once_then_fails, .timeout = 120)
{
    struct test_daemon d;
    start_with_spawned_workers(&d, "2");
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    static const uint32_t sleep_of[] = {1000, 60000000, 1000};
    struct results r;
    results_init(&r, "sleep_us", IN_SLEEP, 3, true);
    r.in.sleep_of = sleep_of;
    r.keep_messages = true;
    struct pard_map_opts opts = {.timeout_ms = 300, .retries = 1, .batch = 1};
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, "sleep_us", next_input, record, &r, &opts, &st), 0, "%s",
                 pard_last_error());
    cr_assert_eq(r.status[0], 0);
    cr_assert_eq(r.status[2], 0);
    cr_assert_eq(r.status[1], -PARD_ETASKTIMEOUT, "status %d: %s", r.status[1], r.message[1]);
    cr_assert_eq(st.requeued, 1, "re-queued %llu times", (unsigned long long)st.requeued);
    struct pard_msg_stats_reply s;
    test_get_stats(d.socket, &s);
    cr_assert_eq(s.timeouts, 2, "two attempts, two timeouts; the daemon counted %llu",
                 (unsigned long long)s.timeouts);
    results_free(&r);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

Test(map, a_task_that_always_crashes_ends_as_worker_died_after_its_retries, .timeout = 120)
{
    struct test_daemon d;
    start_with_spawned_workers(&d, "2");
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct results r;
    results_init(&r, "crash", IN_NUMBER, 1, true);
    r.keep_messages = true;
    struct pard_map_opts opts = {.retries = 2};
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, "crash", next_input, record, &r, &opts, &st), 0, "%s",
                 pard_last_error());
    cr_assert_eq(r.count[0], 1);
    cr_assert_eq(r.status[0], -PARD_EWORKERDIED, "status %d: %s", r.status[0], r.message[0]);
    cr_assert(strstr(r.message[0], "ABRT"), "message: %s", r.message[0]);
    cr_assert_eq(st.requeued, 2, "re-queued %llu times", (unsigned long long)st.requeued);
    struct pard_msg_stats_reply s;
    test_get_stats(d.socket, &s);
    cr_assert_eq(s.worker_deaths, 3, "three attempts, three deaths; the daemon counted %llu",
                 (unsigned long long)s.worker_deaths);
    /* The spawned workers come back and the next map runs normally. */
    test_wait_workers(&d, 2);
    results_free(&r);
    results_init(&r, "square", IN_NUMBER, 100, true);
    cr_assert_eq(pard_map(c, "square", next_input, record, &r, NULL, NULL), 0, "%s",
                 pard_last_error());
    assert_serial_result(&r);
    results_free(&r);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

/* ----------------------------------------------------------------------
 * Test-local functions, served by workers that pard_open_private forks
 * from this test process. They share state with the test only through
 * anonymous shared memory mapped before the fork.
 * ---------------------------------------------------------------------- */

#define PRIVATE_WORKERS 2
#define MAX_PIDS        64

struct private_state {
    _Atomic uint32_t attempts[64];  /* per task index */
    _Atomic int32_t pids[MAX_PIDS]; /* workers that ran a task */
    _Atomic uint32_t npids;
};

static struct private_state *state; /* test_shared_alloc'd before the fork */

static int64_t parse_input(const void *in, size_t len)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, in, len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

/* Register this worker's pid once; returns how many are registered. */
static uint32_t register_pid(void)
{
    int32_t me = (int32_t)getpid();
    uint32_t n = atomic_load(&state->npids);
    for (uint32_t i = 0; i < n && i < MAX_PIDS; i++)
        if (atomic_load(&state->pids[i]) == me)
            return n;
    uint32_t slot = atomic_fetch_add(&state->npids, 1);
    if (slot < MAX_PIDS)
        atomic_store(&state->pids[slot], me);
    return slot + 1;
}

/* "I" → "ok I"; task 5 aborts its worker on its first attempt. */
static int crash_once(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t i = parse_input(in, len);
    if (i < 0 || i >= 64)
        return pard_out_error(out, "crash_once: bad input");
    if (atomic_fetch_add(&state->attempts[i], 1) == 0 && i == 5)
        abort();
    return pard_out_printf(out, "ok %lld", (long long)i);
}

/* "I" → "ok I"; task 5 kills its own worker with SIGKILL, every time, as
 * the OOM killer would: no crash mark, nothing to blame it by. */
static int killed_at_5(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t i = parse_input(in, len);
    if (i < 0 || i >= 64)
        return pard_out_error(out, "killed_at_5: bad input");
    atomic_fetch_add(&state->attempts[i], 1);
    if (i == 5)
        raise(SIGKILL);
    return pard_out_printf(out, "ok %lld", (long long)i);
}

/* "I" → "ok I"; task 5 hangs for a minute on its first attempt. */
static int hang_once(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t i = parse_input(in, len);
    if (i < 0 || i >= 64)
        return pard_out_error(out, "hang_once: bad input");
    if (atomic_fetch_add(&state->attempts[i], 1) == 0 && i == 5)
        sleep(60);
    return pard_out_printf(out, "ok %lld", (long long)i);
}

/*
 * "SIZE" → "BYTES CHECKSUM PID": checksum the first SIZE bytes of the
 * job's shared block. Holds its worker until every private worker has run
 * a task (10 s at most), so that each of them must see the block.
 */
static int checksum(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    int64_t want = parse_input(in, len);
    size_t size;
    const void *block = pard_shared(out, &size);
    if (!block)
        return pard_out_error(out, "checksum: the job has no shared block");
    if (want < 0 || (size_t)want != size) /* the exact size given to pard_share */
        return pard_out_error(out, "checksum: the block has %zu bytes, not %lld", size,
                              (long long)want);
    uint64_t h = fnv1a(block, (size_t)want);
    register_pid();
    for (int t = 0; t < 1000 && atomic_load(&state->npids) < PRIVATE_WORKERS; t++)
        usleep(10000);
    return pard_out_printf(out, "%zu %llx %d", size, (unsigned long long)h, (int)getpid());
}

/* "I" → this worker's pid. */
static int whoami(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    register_pid();
    return pard_out_printf(out, "%d", (int)getpid());
}

/* "3" aborts its worker; any other input comes back as it is. */
static int crash_on_3(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    if (len == 1 && *(const char *)in == '3')
        abort();
    return pard_out_write(out, in, len);
}

static int echo_fast(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    return pard_out_write(out, in, len);
}

static const struct pard_function private_fns[] = {
    {"crash_on_3", crash_on_3},   {"echo_fast", echo_fast}, {"crash_once", crash_once},
    {"hang_once", hang_once},     {"checksum", checksum},   {"whoami", whoami},
    {"killed_at_5", killed_at_5},
};
#define NPRIVATE_FNS (sizeof(private_fns) / sizeof(private_fns[0]))

/*
 * The private daemon among our children (the one running `pard --socket
 * PATH`): its pid, and PATH in socket. Returns 0 when there is none.
 */
static pid_t private_daemon(char *socket, size_t size)
{
    pid_t kids[64];
    int nkids = children(kids, 64);
    for (int i = 0; i < nkids; i++) {
        char path[64], cmd[1024];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)kids[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, cmd, sizeof(cmd) - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n <= 0)
            continue;
        cmd[n] = '\0';
        for (ssize_t k = 0; k < n; k += (ssize_t)strlen(cmd + k) + 1)
            if (strcmp(cmd + k, "--socket") == 0 && k + 9 < n) {
                snprintf(socket, size, "%s", cmd + k + 9);
                return kids[i];
            }
    }
    return 0;
}

/* pard_open_private with this file's functions, and PRIVATE_WORKERS
 * workers that can serve them. */
static struct pard_client *open_private(void)
{
    state = test_shared_alloc(sizeof(*state));
    memset(state, 0, sizeof(*state));
    struct pard_client *c = NULL;
    /* pard_open_private returns once every worker has registered. */
    int rc = pard_open_private(&c, private_fns, NPRIVATE_FNS, PRIVATE_WORKERS);
    cr_assert_eq(rc, 0, "pard_open_private: %s", pard_last_error());
    char socket[256];
    cr_assert_neq(private_daemon(socket, sizeof(socket)), 0, "no private daemon");
    struct pard_msg_stats_reply st = {0};
    test_get_stats(socket, &st);
    cr_assert_geq(st.workers, PRIVATE_WORKERS, "every private worker registered");
    return c;
}

/* Results of the "ok I" functions: what each index said. */
struct ok_results {
    uint64_t n;
    uint32_t count[64];
    int status[64];
    char text[64][96];
    char buf[32];
};

static int next_index(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct ok_results *r = arg;
    if (index >= r->n)
        return 0;
    *len = (size_t)snprintf(r->buf, sizeof(r->buf), "%llu", (unsigned long long)index);
    *data = r->buf;
    return 1;
}

static int record_ok(void *arg, const struct pard_result *res)
{
    struct ok_results *r = arg;
    cr_assert_lt(res->index, r->n);
    r->count[res->index]++;
    r->status[res->index] = res->status;
    snprintf(r->text[res->index], sizeof(r->text[0]), "%.*s", (int)res->len,
             (const char *)res->data);
    return 0;
}

static void assert_all_ok(const struct ok_results *r)
{
    for (uint64_t i = 0; i < r->n; i++) {
        char want[32];
        snprintf(want, sizeof(want), "ok %llu", (unsigned long long)i);
        cr_assert_eq(r->count[i], 1, "task %llu delivered %u times", (unsigned long long)i,
                     r->count[i]);
        cr_assert_eq(r->status[i], 0, "task %llu: %d %s", (unsigned long long)i, r->status[i],
                     r->text[i]);
        cr_assert_str_eq(r->text[i], want);
    }
}

Test(map, a_task_that_crashes_once_succeeds_on_its_retry, .timeout = 120)
{
    struct pard_client *c = open_private();
    struct ok_results r = {.n = 20};
    struct pard_map_opts opts = {.retries = 1, .batch = 1};
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, "crash_once", next_index, record_ok, &r, &opts, &st), 0, "%s",
                 pard_last_error());
    assert_all_ok(&r);
    cr_assert_eq(atomic_load(&state->attempts[5]), 2, "task 5 ran %u times",
                 atomic_load(&state->attempts[5]));
    /* Task 5, and whatever else its worker held: tiny tasks are taken
     * several adjacent descriptors at a time, even unbatched. */
    cr_assert_geq(st.requeued, 1);
    pard_disconnect(c);
}

Test(map, a_task_that_hangs_once_succeeds_on_its_retry, .timeout = 120)
{
    struct pard_client *c = open_private();
    struct ok_results r = {.n = 20};
    struct pard_map_opts opts = {.retries = 1, .batch = 1, .timeout_ms = 500};
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, "hang_once", next_index, record_ok, &r, &opts, &st), 0, "%s",
                 pard_last_error());
    assert_all_ok(&r);
    cr_assert_eq(atomic_load(&state->attempts[5]), 2, "task 5 ran %u times",
                 atomic_load(&state->attempts[5]));
    /* Task 5, and whatever else its worker held: tiny tasks are taken
     * several adjacent descriptors at a time, even unbatched. */
    cr_assert_geq(st.requeued, 1);
    pard_disconnect(c);
}

/* A task that gets its worker killed from outside, every time: it fails
 * after 3 deaths; the tasks that shared its workers' leases (tiny tasks are
 * taken many at a time, even unbatched) ran or never started, and must not
 * be charged those deaths: each succeeds, once. */
Test(map, a_task_that_keeps_getting_its_worker_killed_fails_alone, .timeout = 120)
{
    struct pard_client *c = open_private();
    struct ok_results r = {.n = 40};
    struct pard_map_opts opts = {.batch = 1};
    struct pard_map_stats st;
    cr_assert_eq(pard_map(c, "killed_at_5", next_index, record_ok, &r, &opts, &st), 0, "%s",
                 pard_last_error());
    for (uint64_t i = 0; i < r.n; i++) {
        cr_assert_eq(r.count[i], 1, "task %llu delivered %u times", (unsigned long long)i,
                     r.count[i]);
        if (i == 5)
            continue;
        char want[32];
        snprintf(want, sizeof(want), "ok %llu", (unsigned long long)i);
        cr_assert_eq(r.status[i], 0, "task %llu failed with its neighbour: %d %s",
                     (unsigned long long)i, r.status[i], r.text[i]);
        cr_assert_str_eq(r.text[i], want);
    }
    cr_assert_eq(r.status[5], -PARD_EWORKERDIED, "task 5: %d %s", r.status[5], r.text[5]);
    cr_assert_not_null(strstr(r.text[5], "workers died while running it"), "%s", r.text[5]);
    cr_assert_eq(atomic_load(&state->attempts[5]), 3, "task 5 ran %u times",
                 atomic_load(&state->attempts[5]));
    cr_log_info("killed_at_5: %llu tasks re-queued", (unsigned long long)st.requeued);
    pard_disconnect(c);
}

/* ======================================================================
 * Cancel
 * ====================================================================== */

struct canceller {
    struct pard_client *c;
    struct results *r;
    uint64_t after;
};

static void *cancel_after(void *arg)
{
    struct canceller *k = arg;
    while (atomic_load(&k->r->delivered) < k->after)
        usleep(1000);
    pard_cancel(k->c);
    return NULL;
}

Test(map, cancel_from_another_thread_stops_the_map_and_the_client_maps_again, .timeout = 120)
{
    struct test_daemon d;
    start_with_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    static uint32_t sleep_of[100000];
    for (int i = 0; i < 100000; i++)
        sleep_of[i] = 2000; /* 2 ms each: 100 s of work for 2 workers */
    struct results r;
    results_init(&r, "sleep_us", IN_SLEEP, 100000, true);
    r.in.sleep_of = sleep_of;
    struct canceller k = {.c = c, .r = &r, .after = 50};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cancel_after, &k), 0);
    struct pard_map_stats st;
    int rc = pard_map(c, "sleep_us", next_input, record, &r, NULL, &st);
    pthread_join(th, NULL);
    cr_assert_eq(rc, -PARD_ECANCELED, "got %d: %s", rc, pard_last_error());
    uint64_t got = atomic_load(&r.delivered);
    cr_assert_geq(got, 50);
    cr_assert_lt(got, 100000);
    cr_assert_eq(st.tasks, got);
    for (uint64_t i = 0; i < got; i++)
        cr_assert_eq(r.count[i], 1, "task %llu delivered %u times", (unsigned long long)i,
                     r.count[i]);
    cr_log_info("cancelled after %llu results", (unsigned long long)got);
    /* The daemon lets go of the job, and the same client maps again. */
    wait_no_jobs(d.socket);
    results_free(&r);
    results_init(&r, "square", IN_NUMBER, 1000, true);
    cr_assert_eq(pard_map(c, "square", next_input, record, &r, NULL, NULL), 0, "%s",
                 pard_last_error());
    assert_serial_result(&r);
    results_free(&r);
    wait_no_jobs(d.socket);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

/* ======================================================================
 * Shared inputs and the embedded default
 * ====================================================================== */

struct checksums {
    uint64_t n;
    const char *want_size; /* the input of every task */
    uint64_t count, ok, same;
    uint64_t want_hash;
    size_t want_bytes;
    size_t seen_bytes; /* what pard_shared said, in the last result */
    int32_t pids[MAX_PIDS];
    int npids;
    char first_bad[256];
};

static int next_size(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct checksums *s = arg;
    if (index >= s->n)
        return 0;
    *data = s->want_size;
    *len = strlen(s->want_size);
    return 1;
}

static int record_checksum(void *arg, const struct pard_result *res)
{
    struct checksums *s = arg;
    char buf[160];
    snprintf(buf, sizeof(buf), "%.*s", (int)res->len, (const char *)res->data);
    s->count++;
    size_t bytes = 0;
    unsigned long long h = 0;
    int pid = 0;
    if (res->status == 0 && sscanf(buf, "%zu %llx %d", &bytes, &h, &pid) == 3) {
        s->ok++;
        s->seen_bytes = bytes;
        /* The block is whole: the worker's checksum of the bytes we wrote,
         * and at least that many bytes mapped. */
        if (h == s->want_hash && bytes >= s->want_bytes)
            s->same++;
        else if (!s->first_bad[0])
            snprintf(s->first_bad, sizeof(s->first_bad), "task %llu: %s",
                     (unsigned long long)res->index, buf);
        bool known = false;
        for (int i = 0; i < s->npids; i++)
            known |= s->pids[i] == pid;
        if (!known && s->npids < MAX_PIDS)
            s->pids[s->npids++] = pid;
    } else if (!s->first_bad[0]) {
        snprintf(s->first_bad, sizeof(s->first_bad), "task %llu: status %d: %s",
                 (unsigned long long)res->index, res->status, buf);
    }
    return 0;
}

Test(map, a_shared_block_is_seen_whole_by_every_worker, .timeout = 120)
{
    struct pard_client *c = open_private();
    /* A few MiB and an odd size, written after the workers were forked:
     * they can only see it through the shared block. */
    size_t size = 5 * 1024 * 1024 + 13;
    void *data;
    uint64_t handle;
    int rc = pard_share(c, size, &data, &handle);
    cr_assert_eq(rc, 0, "pard_share: %d %s", rc, pard_last_error());
    cr_assert_neq(handle, 0);
    uint8_t *p = data;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)x;
    }
    char want_size[32];
    snprintf(want_size, sizeof(want_size), "%zu", size);
    struct checksums s = {.n = 16, .want_size = want_size, .want_bytes = size};
    s.want_hash = fnv1a(data, size);
    struct pard_map_opts opts = {.shared = handle, .batch = 1};
    rc = pard_map(c, "checksum", next_size, record_checksum, &s, &opts, NULL);
    cr_assert_eq(rc, 0, "%s", pard_last_error());
    cr_assert_eq(s.count, 16);
    cr_assert_eq(s.ok, 16, "%s", s.first_bad);
    cr_assert_eq(s.same, 16, "%s", s.first_bad);
    cr_assert_eq(s.npids, PRIVATE_WORKERS, "%d workers ran tasks, want all %d", s.npids,
                 PRIVATE_WORKERS);
    cr_log_info("shared %zu bytes; workers saw a block of %zu", size, s.seen_bytes);
    /* A job without the handle has no block. */
    memset(&s, 0, sizeof(s));
    s.n = 1;
    s.want_size = want_size;
    cr_assert_eq(pard_map(c, "checksum", next_size, record_checksum, &s, NULL, NULL), 0);
    cr_assert_eq(s.ok, 0);
    cr_assert(strstr(s.first_bad, "no shared block"), "%s", s.first_bad);
    cr_assert_eq(pard_unshare(c, handle), 0);
    pard_disconnect(c);
}

struct pids {
    uint64_t n;
    int32_t pid[64];
    char buf[8];
};

static int next_blank(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct pids *p = arg;
    if (index >= p->n)
        return 0;
    *data = p->buf;
    *len = 0;
    return 1;
}

static int record_pid(void *arg, const struct pard_result *res)
{
    struct pids *p = arg;
    cr_assert_eq(res->status, 0);
    char buf[32];
    snprintf(buf, sizeof(buf), "%.*s", (int)res->len, (const char *)res->data);
    p->pid[res->index] = (int32_t)atoi(buf);
    return 0;
}

static bool alive(pid_t pid)
{
    return kill(pid, 0) == 0 || errno != ESRCH;
}

Test(map, the_embedded_default_needs_no_daemon_and_leaves_nothing_behind, .timeout = 120)
{
    /* No daemon for this process to find: no PARD_SOCKET, and an empty
     * runtime directory. */
    char runtime[] = "/tmp/pard-test-runtime-XXXXXX";
    cr_assert_not_null(mkdtemp(runtime));
    unsetenv("PARD_SOCKET");
    setenv("XDG_RUNTIME_DIR", runtime, 1);
    struct pard_client *c;
    int rc = pard_connect(&c, NULL);
    cr_assert(rc == -ENOENT || rc == -ECONNREFUSED, "a daemon answered (%d)", rc);

    pid_t before[64];
    cr_assert_eq(children(before, 64), 0, "the test has children already");
    c = open_private();
    /* Our children now: the private daemon and the workers. */
    pid_t kids[64];
    int nkids = children(kids, 64);
    cr_assert_eq(nkids, 1 + PRIVATE_WORKERS, "%d children", nkids);
    /* The daemon's socket is in its command line: its private directory. */
    char dir[256] = "";
    pid_t daemon_pid = private_daemon(dir, sizeof(dir));
    cr_assert_neq(daemon_pid, 0, "no child runs pard --socket");
    char *slash = strrchr(dir, '/');
    cr_assert_not_null(slash);
    struct pard_msg_stats_reply s;
    test_get_stats(dir, &s); /* dir still holds the socket path here */
    cr_assert_eq(s.pid, (uint32_t)daemon_pid);
    cr_assert_eq(s.workers, PRIVATE_WORKERS);
    *slash = '\0';
    cr_assert(strncmp(dir, "/tmp/pard-private-", 18) == 0, "private directory %s", dir);

    struct pids p = {.n = 32};
    cr_assert_eq(pard_map(c, "whoami", next_blank, record_pid, &p, NULL, NULL), 0, "%s",
                 pard_last_error());
    for (uint64_t i = 0; i < p.n; i++) {
        bool ours = false;
        for (int k = 0; k < nkids; k++)
            ours |= kids[k] == p.pid[i] && kids[k] != daemon_pid;
        cr_assert(ours, "task %llu ran in pid %d, not one of our workers", (unsigned long long)i,
                  p.pid[i]);
    }
    pard_disconnect(c);

    for (int k = 0; k < nkids; k++)
        cr_assert(!alive(kids[k]), "pid %d (%s) is still there", (int)kids[k],
                  kids[k] == daemon_pid ? "the daemon" : "a worker");
    cr_assert_eq(children(kids, 64), 0, "children left after disconnect");
    struct stat st;
    cr_assert(stat(dir, &st) != 0 && errno == ENOENT, "%s is still there", dir);
    rmdir(runtime);
}

/*
 * The promise of pard_open_private: it returns connected, with its workers
 * ready, so that the first map needs nothing more. It used to fail with
 * -PARD_ENOFUNC (stats counted a worker from its hello, before it
 * registered; fixed in the daemon by c52716d), and it still can with
 * -ECONNREFUSED: private.c waits for the socket file, which pard creates
 * at bind(), a moment before listen() (daemon/listen.c). Seen on a busy
 * machine about once in a hundred cycles.
 */
Test(map, open_private_returns_with_every_worker_ready_to_serve, .timeout = 300)
{
    state = test_shared_alloc(sizeof(*state));
    int refused = 0, nofunc = 0, other = 0;
    char first[512] = "";
    for (int cycle = 0; cycle < 30; cycle++) {
        struct pard_client *c;
        int rc = pard_open_private(&c, private_fns, NPRIVATE_FNS, PRIVATE_WORKERS);
        if (rc == 0) {
            struct pids p = {.n = 4};
            rc = pard_map(c, "whoami", next_blank, record_pid, &p, NULL, NULL);
            pard_disconnect(c);
        }
        if (rc != 0 && !first[0])
            snprintf(first, sizeof(first), "cycle %d: %d %s", cycle, rc, pard_last_error());
        refused += rc == -ECONNREFUSED;
        nofunc += rc == -PARD_ENOFUNC;
        other += rc != 0 && rc != -ECONNREFUSED && rc != -PARD_ENOFUNC;
    }
    cr_assert(refused + nofunc + other == 0,
              "of 30 cycles, %d were refused, %d maps found no worker registered, %d failed "
              "otherwise; first: %s",
              refused, nofunc, other, first);
}

/* ======================================================================
 * The case studies agree with their serial runs
 * ====================================================================== */

/* Run a case study; assert exit status 0 and that its output has `want`. */
static void run_case_study(char *const argv[], const char *dir, const char *want, char *out,
                           size_t outlen)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/output", dir);
    int status = run_program(argv, path);
    read_file(path, out, outlen);
    unlink(path);
    cr_assert_eq(status, 0, "%s exited with %d:\n%s", argv[0], status, out);
    cr_assert(strstr(out, want), "%s printed no '%s':\n%s", argv[0], want, out);
}

Test(map, the_monte_carlo_case_study_agrees_with_its_serial_run, .timeout = 120)
{
    char dir[] = "/tmp/pard-test-XXXXXX", out[4096];
    cr_assert_not_null(mkdtemp(dir));
    char *argv[] = {TEST_CLIENTS "/pard-montecarlo",
                    "--tasks",
                    "20",
                    "--samples",
                    "1000",
                    "--workers",
                    "2",
                    NULL};
    run_case_study(argv, dir, "speedup:", out, sizeof(out));
    cr_assert(strstr(out, "20 tasks x 1000 points"), "%s", out);
    rmdir(dir);
}

Test(map, the_cross_validation_case_study_agrees_with_its_serial_run, .timeout = 180)
{
    char dir[] = "/tmp/pard-test-XXXXXX", out[8192];
    cr_assert_not_null(mkdtemp(dir));
    char *argv[] = {
        TEST_CLIENTS "/pard-crossval", "--folds", "3", "--repeats", "1", "--workers", "2", NULL};
    run_case_study(argv, dir, "best: k=", out, sizeof(out));
    cr_assert(strstr(out, "569 samples x 30 features"), "%s", out);
    cr_assert(strstr(out, "3 folds x 1 repeats x 44 parameter sets = 132 tasks"), "%s", out);
    rmdir(dir);
}

Test(map, the_cross_validation_case_study_agrees_through_a_running_daemon, .timeout = 180)
{
    struct test_daemon d;
    char *args[] = {"--spawn", "2", "--worker", TEST_CLIENTS "/pard-crossval --worker", NULL};
    test_daemon_start_args(&d, args);
    test_wait_workers(&d, 2);
    char out[8192];
    char *argv[] = {TEST_CLIENTS "/pard-crossval",
                    "--socket",
                    d.socket,
                    "--folds",
                    "4",
                    "--repeats",
                    "1",
                    NULL};
    run_case_study(argv, d.dir, "best: k=", out, sizeof(out));
    cr_assert(strstr(out, "4 folds x 1 repeats x 44 parameter sets = 176 tasks"), "%s", out);
    test_daemon_stop(&d);
}

Test(map, the_xml_case_study_agrees_with_its_serial_run, .timeout = 120)
{
    struct test_daemon d;
    char *args[] = {"--spawn", "2", "--worker", TEST_CLIENTS "/pard-xmlcount --worker", NULL};
    test_daemon_start_args(&d, args);
    test_wait_workers(&d, 2);
    /* 12 files: file i has a root with one attribute and i+1 children;
     * and one that is not well-formed, which both runs must count alike. */
    char xml[160];
    snprintf(xml, sizeof(xml), "%s/xml", d.dir);
    cr_assert_eq(mkdir(xml, 0700), 0);
    unsigned long long elements = 0;
    for (int i = 0; i < 12; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/f%02d.xml", xml, i);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fprintf(f, "<?xml version=\"1.0\"?>\n<root n=\"%d\">", i);
        for (int k = 0; k <= i; k++)
            fprintf(f, "<e/>");
        fprintf(f, "</root>\n");
        fclose(f);
        elements += 1 + (unsigned long long)i + 1;
    }
    char bad[256];
    snprintf(bad, sizeof(bad), "%s/broken.xml", xml);
    FILE *f = fopen(bad, "w");
    cr_assert_not_null(f);
    fprintf(f, "<root><open></root>\n");
    fclose(f);

    char out[8192];
    char *argv[] = {TEST_CLIENTS "/pard-xmlcount", "--socket", d.socket, xml, NULL};
    run_case_study(argv, d.dir, "speedup:", out, sizeof(out));
    cr_assert(strstr(out, "XML files: 13 under"), "%s", out);
    char want[128];
    snprintf(want, sizeof(want), "pard      %12llu %12llu %8llu", elements, 12ull, 1ull);
    cr_assert(strstr(out, want), "want '%s' in:\n%s", want, out);

    for (int i = 0; i < 12; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/f%02d.xml", xml, i);
        unlink(path);
    }
    unlink(bad);
    rmdir(xml);
    test_daemon_stop(&d);
}

/* ======================================================================
 * msgpack arguments and results
 * ====================================================================== */

/* Input i: a msgpack array of the numbers 1..i, then -1 and 0.5. */
struct packed {
    uint64_t n, bad, seen;
    msgpack_sbuffer buf;
    char first_bad[256];
};

static int next_packed(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct packed *p = arg;
    if (index >= p->n)
        return 0;
    msgpack_sbuffer_clear(&p->buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p->buf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (size_t)index + 2);
    for (uint64_t k = 1; k <= index; k++)
        msgpack_pack_uint64(&pk, k);
    msgpack_pack_int64(&pk, -1);
    msgpack_pack_double(&pk, 0.5);
    *data = p->buf.data;
    *len = p->buf.size;
    return 1;
}

/* Result i: {"n": i + 2, "sum": i(i+1)/2 - 0.5}, exactly (small integers). */
static int check_packed(void *arg, const struct pard_result *r)
{
    struct packed *p = arg;
    p->seen++;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *o = NULL;
    double want_sum = (double)r->index * (double)(r->index + 1) / 2 - 1 + 0.5;
    bool ok = r->status == 0 && pard_unpack(r->data, r->len, &u, &o) == 0 &&
              o->type == MSGPACK_OBJECT_MAP && o->via.map.size == 2 &&
              o->via.map.ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
              o->via.map.ptr[0].val.via.u64 == r->index + 2 &&
              o->via.map.ptr[1].val.type == MSGPACK_OBJECT_FLOAT64 &&
              o->via.map.ptr[1].val.via.f64 == want_sum;
    if (!ok && p->bad++ == 0)
        snprintf(p->first_bad, sizeof(p->first_bad), "task %llu: status %d, %zu bytes",
                 (unsigned long long)r->index, r->status, r->len);
    msgpack_unpacked_destroy(&u);
    return 0;
}

static int next_garbage(void *arg, uint64_t index, const void **data, size_t *len)
{
    if (index >= 1)
        return 0;
    *data = "\xc1 not msgpack";
    *len = 14;
    return 1;
}

static int record_error(void *arg, const struct pard_result *r)
{
    struct packed *p = arg;
    p->seen++;
    if (r->status == -PARD_ETASK)
        snprintf(p->first_bad, sizeof(p->first_bad), "%.*s", (int)r->len, (const char *)r->data);
    return 0;
}

Test(map, passes_msgpack_arguments_and_results_through_the_helpers, .timeout = 120)
{
    struct test_daemon d;
    start_with_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct packed p = {.n = 300};
    msgpack_sbuffer_init(&p.buf);
    cr_assert_eq(pard_map(c, "stats", next_packed, check_packed, &p, NULL, NULL), 0, "%s",
                 pard_last_error());
    msgpack_sbuffer_destroy(&p.buf);
    cr_assert_eq(p.seen, 300);
    cr_assert_eq(p.bad, 0, "%llu bad results, first: %s", (unsigned long long)p.bad, p.first_bad);
    /* Input that is not msgpack: a task error with the worker's message. */
    struct packed g = {0};
    cr_assert_eq(pard_map(c, "stats", next_garbage, record_error, &g, NULL, NULL), 0);
    cr_assert_eq(g.seen, 1);
    cr_assert_str_eq(g.first_bad, "stats: the input is not a msgpack array");
    pard_disconnect(c);
    test_daemon_stop(&d);
}

/* ======================================================================
 * Regressions found in review
 * ====================================================================== */

/* Inputs "0".."n-1", except that input `big` is `big_len` bytes of 'x'. */
struct odd_inputs {
    uint64_t n, big;
    size_t big_len;
    char *big_buf;
    char buf[32];
    uint64_t seen, wrong, failed, slow_us;
    int status[64];
};

static int next_odd(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct odd_inputs *o = arg;
    if (index >= o->n)
        return 0;
    if (index == o->big && o->big_buf) {
        *data = o->big_buf;
        *len = o->big_len;
        return 1;
    }
    *len = (size_t)snprintf(o->buf, sizeof(o->buf), "%llu", (unsigned long long)index);
    *data = o->buf;
    return 1;
}

static int check_odd(void *arg, const struct pard_result *r)
{
    struct odd_inputs *o = arg;
    o->seen++;
    o->failed += r->status != 0;
    if (r->index < 64)
        o->status[r->index] = r->status;
    char want[32];
    int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)r->index);
    if (r->status == 0 && (r->len != (size_t)n || memcmp(r->data, want, (size_t)n) != 0))
        o->wrong++;
    if (o->slow_us)
        usleep((useconds_t)o->slow_us);
    return 0;
}

Test(map, fails_an_oversized_input_alone_inside_a_batch, .timeout = 60)
{
    struct test_daemon d;
    start_with_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct odd_inputs o = {.n = 20, .big = 5, .big_len = 3 << 20};
    o.big_buf = malloc(o.big_len);
    memset(o.big_buf, 'x', o.big_len);
    struct pard_map_opts opts = {.batch = 8};
    cr_assert_eq(pard_map(c, "echo", next_odd, check_odd, &o, &opts, NULL), 0, "%s",
                 pard_last_error());
    free(o.big_buf);
    cr_assert_eq(o.seen, 20);
    cr_assert_eq(o.status[5], -PARD_ETOOBIG);
    for (int i = 0; i < 20; i++)
        if (i != 5)
            cr_assert_eq(o.status[i], 0, "task %d: %d", i, o.status[i]);
    cr_assert_eq(o.wrong, 0, "every other task got its own input");
    pard_disconnect(c);
    test_daemon_stop(&d);
}

Test(map, blames_a_crash_on_the_task_that_crashed_within_a_batch, .timeout = 60)
{
    struct pard_client *c = open_private();
    struct odd_inputs o = {.n = 8, .big = UINT64_MAX};
    struct pard_map_opts opts = {.batch = 8}; /* one batch, no time limit */
    cr_assert_eq(pard_map(c, "crash_on_3", next_odd, check_odd, &o, &opts, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(o.seen, 8);
    cr_assert_eq(o.status[3], -PARD_EWORKERDIED);
    for (int i = 0; i < 8; i++)
        if (i != 3)
            cr_assert_eq(o.status[i], 0, "task %d was blamed (%d)", i, o.status[i]);
    cr_assert_eq(o.wrong, 0);
    pard_disconnect(c);
}

Test(map, does_not_time_out_workers_waiting_for_a_slow_submitter, .timeout = 120)
{
    struct pard_client *c = open_private();
    struct odd_inputs o = {.n = 400, .big = UINT64_MAX, .slow_us = 2000};
    /* Each result takes the submitter 2 ms; 400 of them far exceed the
     * 200 ms limit, which counts only the running task. */
    struct pard_map_opts opts = {.batch = 1, .timeout_ms = 200};
    cr_assert_eq(pard_map(c, "echo_fast", next_odd, check_odd, &o, &opts, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(o.seen, 400);
    cr_assert_eq(o.failed, 0, "%llu tasks failed, e.g. task 0: %d", (unsigned long long)o.failed,
                 o.status[0]);
    cr_assert_eq(o.wrong, 0);
    pard_disconnect(c);
}
