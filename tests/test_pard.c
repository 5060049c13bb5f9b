/*
 * test_pard.c — end to end: a real pard, real example workers, libpard's
 * map, and real kill -9 of workers and of the daemon.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "client_helpers.h"

/* ---- helpers ---------------------------------------------------------- */

/* Inputs: decimal numbers 0 .. n-1 (or a fixed string for every task). */
struct inputs {
    uint64_t n;
    const char *fixed;
    char buf[32];
};

static int next_number(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct inputs *in = arg;
    if (index >= in->n)
        return 0;
    if (in->fixed) {
        *data = in->fixed;
        *len = strlen(in->fixed);
        return 1;
    }
    *len = (size_t)snprintf(in->buf, sizeof(in->buf), "%llu", (unsigned long long)index);
    *data = in->buf;
    return 1;
}

/* Results: how often each index came, and whether it was right. */
struct tally {
    struct inputs in;
    uint32_t *seen;      /* per index */
    uint64_t next_index; /* ordered check */
    bool ordered;        /* expect indices in order */
    uint64_t out_of_order;
    uint64_t wrong;
    uint64_t errors;
    int last_status;
    char last_message[512];
    _Atomic uint64_t delivered;
};

static void tally_init(struct tally *t, uint64_t n, bool ordered)
{
    free(t->seen); /* tallies are reused; the first init sees zeroes */
    memset(t, 0, sizeof(*t));
    t->in.n = n;
    t->seen = calloc(n ? n : 1, sizeof(uint32_t));
    t->ordered = ordered;
}

static int check_square(void *arg, const struct pard_result *r)
{
    struct tally *t = arg;
    cr_assert_lt(r->index, t->in.n);
    t->seen[r->index]++;
    if (t->ordered && r->index != t->next_index)
        t->out_of_order++;
    t->next_index = r->index + 1;
    if (r->status != 0) {
        t->errors++;
        t->last_status = r->status;
        snprintf(t->last_message, sizeof(t->last_message), "%.*s", (int)r->len,
                 (const char *)r->data);
    } else if (!t->in.fixed) {
        char want[32];
        int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)(r->index * r->index));
        if (r->len != (size_t)n || memcmp(r->data, want, (size_t)n) != 0)
            t->wrong++;
    }
    atomic_fetch_add(&t->delivered, 1);
    return 0;
}

static void assert_each_once(struct tally *t)
{
    for (uint64_t i = 0; i < t->in.n; i++)
        cr_assert_eq(t->seen[i], 1, "task %llu delivered %u times", (unsigned long long)i,
                     t->seen[i]);
}

/* ---- tests ------------------------------------------------------------ */

Test(pard, maps_100000_tasks_with_results_in_order, .timeout = 120)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct tally t = {0};
    tally_init(&t, 100000, true);
    struct pard_map_stats st;
    int rc = pard_map(c, "square", next_number, check_square, &t, NULL, &st);
    cr_assert_eq(rc, 0, "map failed: %s", pard_last_error());
    cr_assert_eq(st.tasks, 100000);
    cr_assert_eq(t.out_of_order, 0);
    cr_assert_eq(t.wrong, 0);
    cr_assert_eq(t.errors, 0);
    assert_each_once(&t);
    /* The same client maps again: jobs are independent. */
    tally_init(&t, 1000, true);
    struct pard_map_opts opts = {.unordered = true, .batch = 16};
    t.ordered = false;
    cr_assert_eq(pard_map(c, "square", next_number, check_square, &t, &opts, NULL), 0);
    cr_assert_eq(t.wrong, 0);
    assert_each_once(&t);
    pard_disconnect(c);
    free(t.seen);
    test_daemon_stop(&d);
}

Test(pard, reports_a_failing_task_with_its_message_and_goes_on, .timeout = 60)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 1);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0);
    struct tally t = {0};
    tally_init(&t, 5, true);
    t.in.fixed = "boom";
    cr_assert_eq(pard_map(c, "fail", next_number, check_square, &t, NULL, NULL), 0);
    cr_assert_eq(t.errors, 5);
    cr_assert_eq(t.last_status, -PARD_ETASK);
    cr_assert(strstr(t.last_message, "asked to fail on input 'boom'"), "message: %s",
              t.last_message);
    assert_each_once(&t);
    pard_disconnect(c);
    free(t.seen);
    test_daemon_stop(&d);
}

Test(pard, refuses_an_unknown_function_with_a_clear_error, .timeout = 30)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 1);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0);
    struct tally t = {0};
    tally_init(&t, 3, true);
    int rc = pard_map(c, "no_such_function", next_number, check_square, &t, NULL, NULL);
    cr_assert_eq(rc, -PARD_ENOFUNC, "got %d: %s", rc, pard_last_error());
    cr_assert(strstr(pard_last_error(), "no_such_function"), "message: %s", pard_last_error());
    pard_disconnect(c);
    free(t.seen);
    test_daemon_stop(&d);
}

/* kill -9 one worker after `after` results. */
struct killer {
    struct tally *t;
    pid_t victim;
    uint64_t after;
    bool killed;
    int64_t killed_at;
};

static void *kill_when(void *arg)
{
    struct killer *k = arg;
    while (atomic_load(&k->t->delivered) < k->after)
        usleep(1000);
    k->killed_at = pard_now_ns();
    kill(k->victim, SIGKILL);
    k->killed = true;
    return NULL;
}

Test(pard, completes_a_job_exactly_once_when_a_worker_is_killed, .timeout = 120)
{
    struct test_daemon d;
    test_daemon_start(&d);
    pid_t victim = test_worker_start(&d);
    test_worker_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 3);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0);
    struct tally t = {0};
    tally_init(&t, 4000, true);
    t.in.fixed = "300"; /* sleep_us 300: the victim dies holding a batch */
    struct killer k = {.t = &t, .victim = victim, .after = 1000};
    pthread_t th;
    pthread_create(&th, NULL, kill_when, &k);
    struct pard_map_opts opts = {.batch = 4};
    struct pard_map_stats st;
    int rc = pard_map(c, "sleep_us", next_number, check_square, &t, &opts, &st);
    pthread_join(th, NULL);
    cr_assert(k.killed);
    cr_assert_eq(rc, 0, "map failed: %s", pard_last_error());
    cr_assert_eq(t.errors, 0, "a task failed: %s", t.last_message);
    cr_assert_eq(t.out_of_order, 0);
    assert_each_once(&t);
    cr_assert_gt(st.requeued, 0, "the victim held a batch: its tasks were re-queued");
    cr_log_info("re-queued %llu tasks %.2f ms after the kill, dropped %llu duplicates",
                (unsigned long long)st.requeued, (double)(st.last_requeue_ns - k.killed_at) / 1e6,
                (unsigned long long)st.dropped);
    pard_disconnect(c);
    free(t.seen);
    test_daemon_stop(&d);
}

Test(pard, fails_the_task_that_crashes_its_worker_and_goes_on, .timeout = 60)
{
    struct test_daemon d;
    char *spawn[] = {"--spawn", "2", "--worker", TEST_WORKER, NULL};
    test_daemon_start_args(&d, spawn);
    test_wait_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0);
    struct tally t = {0};
    tally_init(&t, 1, true);
    cr_assert_eq(pard_map(c, "crash", next_number, check_square, &t, NULL, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(t.errors, 1);
    cr_assert_eq(t.last_status, -PARD_EWORKERDIED);
    cr_assert(strstr(t.last_message, "SIGABRT") || strstr(t.last_message, "ABRT"), "message: %s",
              t.last_message);
    /* The daemon replaces the worker; the next job runs normally. */
    test_wait_workers(&d, 2);
    tally_init(&t, 100, true);
    cr_assert_eq(pard_map(c, "square", next_number, check_square, &t, NULL, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(t.wrong + t.errors, 0);
    assert_each_once(&t);
    pard_disconnect(c);
    free(t.seen);
    test_daemon_stop(&d);
}

Test(pard, times_out_a_hung_task_and_replaces_its_worker, .timeout = 60)
{
    struct test_daemon d;
    char *spawn[] = {"--spawn", "1", "--worker", TEST_WORKER, NULL};
    test_daemon_start_args(&d, spawn);
    test_wait_workers(&d, 1);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0);
    struct tally t = {0};
    tally_init(&t, 1, true);
    t.in.fixed = "30000000"; /* 30 s */
    struct pard_map_opts opts = {.timeout_ms = 300};
    cr_assert_eq(pard_map(c, "sleep_us", next_number, check_square, &t, &opts, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(t.errors, 1);
    cr_assert_eq(t.last_status, -PARD_ETASKTIMEOUT, "status %d: %s", t.last_status, t.last_message);
    cr_assert(strstr(t.last_message, "300 ms"), "message: %s", t.last_message);
    test_wait_workers(&d, 1);
    tally_init(&t, 10, true);
    cr_assert_eq(pard_map(c, "square", next_number, check_square, &t, NULL, NULL), 0);
    cr_assert_eq(t.wrong + t.errors, 0);
    pard_disconnect(c);
    free(t.seen);
    test_daemon_stop(&d);
}

/* The daemon dies while the map waits for a long task. */
struct daemon_killer {
    pid_t pid;
    int64_t killed_at;
};

static void *kill_daemon(void *arg)
{
    struct daemon_killer *k = arg;
    usleep(300000);
    k->killed_at = pard_now_ns();
    kill(k->pid, SIGKILL);
    return NULL;
}

Test(pard, returns_a_clear_error_when_the_daemon_is_killed, .timeout = 60)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 1);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0);
    struct tally t = {0};
    tally_init(&t, 1, true);
    t.in.fixed = "20000000"; /* 20 s: the map is blocked when the daemon dies */
    struct daemon_killer k = {.pid = d.pid};
    pthread_t th;
    pthread_create(&th, NULL, kill_daemon, &k);
    int rc = pard_map(c, "sleep_us", next_number, check_square, &t, NULL, NULL);
    int64_t returned_at = pard_now_ns();
    pthread_join(th, NULL);
    int status;
    waitpid(d.pid, &status, 0);
    d.pid = 0;
    cr_assert_eq(rc, -PARD_EDAEMON, "got %d: %s", rc, pard_last_error());
    cr_assert(strstr(pard_last_error(), "daemon"), "message: %s", pard_last_error());
    /* "Within a second" is the promise; the test only checks it returned
     * after the kill, the figure is logged (tests never assert speed). */
    cr_assert_geq(returned_at, k.killed_at);
    cr_log_info("map returned %.0f ms after the daemon was killed",
                (double)(returned_at - k.killed_at) / 1e6);
    pard_disconnect(c);
    /* A new daemon starts on the same socket (the old one left it stale). */
    char *argv[] = {TEST_PARD, "--socket", d.socket, "--log-level", "warn", NULL};
    d.pid = test_spawn(argv);
    struct pard_msg_stats_reply s;
    for (int i = 0; i < 500; i++) {
        if (pard_connect_control(&c, d.socket) == 0) {
            pard_disconnect(c);
            break;
        }
        usleep(10000);
    }
    test_get_stats(d.socket, &s);
    cr_assert_eq(s.pid, (uint32_t)d.pid, "the new daemon answers");
    free(t.seen);
    test_daemon_stop(&d);
}

Test(pard, maps_lines_with_parctl_and_reports_failures, .timeout = 60)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 1);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "printf '1\\n2\\nx\\n4\\n' | %s --socket %s map square >%s/out 2>%s/err; echo $? "
             ">%s/rc",
             TEST_PARCTL, d.socket, d.dir, d.dir, d.dir);
    cr_assert_eq(system(cmd), 0);
    char path[256], buf[256] = {0};
    snprintf(path, sizeof(path), "%s/out", d.dir);
    FILE *f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    cr_assert_str_eq(buf, "1\n4\n\n16\n", "stdout was: %s", buf);
    snprintf(path, sizeof(path), "%s/err", d.dir);
    f = fopen(path, "r");
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    cr_assert(strstr(buf, "task 2: square: 'x' is not a decimal integer"), "stderr: %s", buf);
    snprintf(path, sizeof(path), "%s/rc", d.dir);
    f = fopen(path, "r");
    int rc = -1;
    cr_assert_eq(fscanf(f, "%d", &rc), 1);
    fclose(f);
    cr_assert_eq(rc, 1, "a failed task makes the exit status non-zero");
    unlink(path);
    snprintf(path, sizeof(path), "%s/out", d.dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/err", d.dir);
    unlink(path);
    test_daemon_stop(&d);
}

Test(pard, parctl_maps_100000_squares_in_order_with_spawned_workers, .timeout = 120)
{
    struct test_daemon d;
    char *spawn[] = {"--spawn", "2", "--worker", TEST_WORKER, NULL};
    test_daemon_start_args(&d, spawn);
    test_wait_workers(&d, 2);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "seq 1 100000 | %s --socket %s map square >%s/out && "
             "seq 1 100000 | awk '{ printf \"%%.0f\\n\", $1 * $1 }' >%s/want && "
             "cmp -s %s/out %s/want",
             TEST_PARCTL, d.socket, d.dir, d.dir, d.dir, d.dir);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "parctl's output differs from the 100,000 squares (%s)", cmd);
    char path[256];
    snprintf(path, sizeof(path), "%s/out", d.dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/want", d.dir);
    unlink(path);
    test_daemon_stop(&d);
}

/* Run a shell command line; return its exit status (or -1). */
static int sh(const char *cmd)
{
    int rc = system(cmd);
    return rc >= 0 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(pard, parctl_cancels_the_job_cleanly_on_ctrl_c, .timeout = 60)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 1);
    /* 2000 tasks of 20 ms: about 40 s; SIGINT after a second. */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "yes 20000 | head -n 2000 > %s/in; "
             "%s --socket %s map --batch 1 sleep_us %s/in >%s/out 2>%s/err & p=$!; "
             "sleep 1; kill -INT $p; wait $p; echo $? >%s/rc",
             d.dir, TEST_PARCTL, d.socket, d.dir, d.dir, d.dir, d.dir);
    cr_assert_eq(sh(cmd), 0);
    char path[256], buf[512] = {0};
    snprintf(path, sizeof(path), "%s/rc", d.dir);
    FILE *f = fopen(path, "r");
    int rc = -1;
    cr_assert_eq(fscanf(f, "%d", &rc), 1);
    fclose(f);
    cr_assert_eq(rc, 130, "parctl exits 130 when interrupted (got %d)", rc);
    snprintf(path, sizeof(path), "%s/err", d.dir);
    f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    cr_assert(strstr(buf, "cancelled"), "stderr says the job was cancelled: %s", buf);
    /* The daemon has let the job go, and serves the next one. */
    struct pard_msg_stats_reply s;
    for (int i = 0; i < 500; i++) {
        test_get_stats(d.socket, &s);
        if (s.jobs == 0)
            break;
        usleep(10000);
    }
    cr_assert_eq(s.jobs, 0, "the cancelled job is gone from the daemon");
    snprintf(cmd, sizeof(cmd), "printf '3\\n' | %s --socket %s map square | grep -qx 9",
             TEST_PARCTL, d.socket);
    cr_assert_eq(sh(cmd), 0, "the next map works");
    const char *files[] = {"in", "out", "err", "rc"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", d.dir, files[i]);
        unlink(path);
    }
    test_daemon_stop(&d);
}

Test(pard, parctl_maps_unordered_and_auto_batched_and_reports_stats_as_json, .timeout = 60)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 2);
    char cmd[1024];
    /* Auto-batched, ordered: the squares in order. */
    snprintf(cmd, sizeof(cmd),
             "seq 1 5000 | %s --socket %s map --batch auto square | "
             "cmp -s - %s/want",
             TEST_PARCTL, d.socket, d.dir);
    char want[1024];
    snprintf(want, sizeof(want), "seq 1 5000 | awk '{ printf \"%%.0f\\n\", $1 * $1 }' >%s/want",
             d.dir);
    cr_assert_eq(sh(want), 0);
    cr_assert_eq(sh(cmd), 0, "auto-batched output differs");
    /* Unordered: INDEX<TAB>OUTPUT lines; sorted by index, the same squares. */
    snprintf(cmd, sizeof(cmd),
             "seq 1 5000 | %s --socket %s map --unordered --batch 7 square | sort -n | "
             "cut -f2 | cmp -s - %s/want",
             TEST_PARCTL, d.socket, d.dir);
    cr_assert_eq(sh(cmd), 0, "unordered output differs");
    /* stats --json: one object with the counters, tasks_done counting ours. */
    snprintf(cmd, sizeof(cmd),
             "%s --socket %s stats --json | grep -q '^{\"pid\":[0-9]*,.*\"workers\":2,.*"
             "\"tasks_done\":10000,.*}$'",
             TEST_PARCTL, d.socket);
    cr_assert_eq(sh(cmd), 0, "stats --json lacks the expected counters");
    snprintf(want, sizeof(want), "%s/want", d.dir);
    unlink(want);
    test_daemon_stop(&d);
}

/* ---- chaos: kill -9 workers again and again during a big job ---------- */

/* The pids of pard's supervised workers: the children of the daemon. */
static int daemon_children(pid_t daemon, pid_t *out, int max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)daemon, (int)daemon);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (!f)
        return 0;
    while (n < max && fscanf(f, "%d", &out[n]) == 1)
        n++;
    fclose(f);
    return n;
}

#define CHAOS_KILLS 12

struct chaos {
    pid_t daemon;
    struct tally *t;
    uint64_t n;
    _Atomic int stop;
    int kills;
};

/* Kill a random worker of the daemon CHAOS_KILLS times, spread over the
 * map by its progress (the k-th once k/13 of the results are in, a few
 * random milliseconds later), so that every kill lands inside the map
 * however fast it runs. (12 at most: --spawn backs off restarting workers
 * that die young, and more would only make the test slow.) */
static void *kill_randomly(void *arg)
{
    struct chaos *ch = arg;
    unsigned seed = 12345;
    while (!atomic_load(&ch->stop) && ch->kills < CHAOS_KILLS) {
        uint64_t mark = ch->n / (CHAOS_KILLS + 1) * (uint64_t)(ch->kills + 1);
        if (atomic_load(&ch->t->delivered) < mark) {
            usleep(1000);
            continue;
        }
        usleep(rand_r(&seed) % 20000);
        pid_t kids[8];
        int n = daemon_children(ch->daemon, kids, 8);
        if (n > 0 && !atomic_load(&ch->stop)) {
            kill(kids[rand_r(&seed) % n], SIGKILL);
            ch->kills++;
        }
    }
    return NULL;
}

Test(pard, delivers_a_million_results_once_while_workers_are_killed_again_and_again, .timeout = 300)
{
    struct test_daemon d;
    char *spawn[] = {"--spawn", "2", "--worker", TEST_WORKER, NULL};
    test_daemon_start_args(&d, spawn);
    test_wait_workers(&d, 2);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    struct tally t = {0};
    tally_init(&t, 1000000, true);
    struct chaos ch = {.daemon = d.pid, .t = &t, .n = 1000000};
    pthread_t th;
    pthread_create(&th, NULL, kill_randomly, &ch);
    /* Batches of 16. (Unbatched it runs for minutes: --spawn's restart
     * back-off grows for workers that die young.) */
    struct pard_map_opts opts = {.batch = 16};
    struct pard_map_stats st;
    int rc = pard_map(c, "square", next_number, check_square, &t, &opts, &st);
    atomic_store(&ch.stop, 1);
    pthread_join(th, NULL);
    cr_assert_eq(rc, 0, "map failed: %s", pard_last_error());
    cr_assert_eq(t.wrong, 0);
    cr_assert_eq(t.out_of_order, 0);
    cr_assert_eq(t.errors, 0, "a task failed: %s", t.last_message);
    assert_each_once(&t);
    cr_assert_eq(ch.kills, CHAOS_KILLS, "only %d workers were killed during the map", ch.kills);
    cr_log_info("%d workers killed; %llu tasks re-queued, %llu duplicates dropped, %llu "
                "task-ring slots taken back from workers killed inside a pop",
                ch.kills, (unsigned long long)st.requeued, (unsigned long long)st.dropped,
                (unsigned long long)st.reclaimed);
    free(t.seen);
    pard_disconnect(c);
    test_daemon_stop(&d);
}

/* The limits that are not per connection: all shared memory (--max-shm,
 * counted over jobs and pard_share blocks) and the largest frame
 * (--max-frame). Each refusal says which option to raise; the daemon goes
 * on serving. */
Test(pard, refuses_past_the_total_shared_memory_and_frame_limits_with_clear_errors, .timeout = 60)
{
    struct test_daemon d;
    char *extra[] = {"--max-shm", "8M", "--max-frame", "1024", NULL};
    test_daemon_start_args(&d, extra);
    test_worker_start(&d);
    test_wait_workers(&d, 1);
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());

    void *block;
    uint64_t h1, h2;
    cr_assert_eq(pard_share(c, 6 << 20, &block, &h1), 0, "%s", pard_last_error());
    int rc = pard_share(c, 4 << 20, &block, &h2);
    cr_log_info("second block: %d: %s", rc, pard_last_error());
    cr_assert_eq(rc, -PARD_ELIMIT, "got %d: %s", rc, pard_last_error());
    cr_assert_not_null(strstr(pard_last_error(), "--max-shm"), "%s", pard_last_error());

    /* A job of the default geometry (~20 MiB) does not fit in 8 MiB. */
    struct tally t = {0};
    tally_init(&t, 10, true);
    rc = pard_map(c, "square", next_number, check_square, &t, NULL, NULL);
    cr_log_info("map: %d: %s", rc, pard_last_error());
    cr_assert_eq(rc, -PARD_ELIMIT, "got %d: %s", rc, pard_last_error());
    cr_assert_not_null(strstr(pard_last_error(), "--max-shm"), "%s", pard_last_error());
    free(t.seen);

    /* A frame over --max-frame, on a raw connection: an error naming the
     * option, then the connection closes. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(d.socket), sizeof(sa.sun_path));
    memcpy(sa.sun_path, d.socket, strlen(d.socket) + 1);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    static uint8_t frame[4 + 2048];
    pard_frame_put_header(frame, 2048);
    /* The daemon may close while the body is still on its way: only the
     * reply matters. */
    (void)pard_sock_send(fd, frame, sizeof(frame), -1);
    struct pard_msg *m = malloc(sizeof(*m));
    struct pard_frame_reader r;
    pard_frame_reader_init(&r, PARD_FRAME_MAX_CLIENT);
    cr_assert_eq(pard_sock_recv_msg(fd, &r, m, 5000, NULL), 0);
    cr_log_info("oversized frame: %s", m->error.message);
    cr_assert_eq(m->type, PARD_MSG_ERROR);
    cr_assert_eq(m->error.code, -PARD_ETOOBIG);
    cr_assert_not_null(strstr(m->error.message, "--max-frame"), "%s", m->error.message);
    pard_frame_reader_destroy(&r);
    free(m);
    close(fd);

    /* Still serving. */
    struct pard_msg_stats_reply st;
    test_get_stats(d.socket, &st);
    cr_assert_eq(st.pid, (uint32_t)d.pid);
    pard_disconnect(c);
    test_daemon_stop(&d);
}
