/*
 * test_hostile.c — a worker that writes garbage into shared memory
 * (tests/hostile_worker.c) against a real pard.
 *
 * Each test runs one scribble mode. The job the hostile worker serves
 * (function "hostile") must end with a clear error naming what was wrong,
 * or complete correctly with the hostile worker gone — never hang, never
 * crash anything. Meanwhile another submitter's job (square, on the
 * example worker) runs concurrently, and a third runs after: both must
 * complete correctly, and the daemon must still be alive at the end and
 * exit 0 on SIGTERM.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "client_helpers.h"

#define TEST_HOSTILE PARD_BUILD_DIR "/tests/hostile_worker"

/* ======================================================================
 * A map in a thread of its own, with its own connection
 * ====================================================================== */

struct run {
    const char *socket;
    const char *function;
    uint64_t n;
    struct pard_map_opts opts;
    bool array; /* pard_map_array of int64 indices into int64 results */
    pthread_t thread;
    /* outcome */
    int rc;
    char error[512];
    struct pard_map_stats stats;
    uint32_t *count;   /* deliveries per index */
    uint64_t correct;  /* status 0 and the right square */
    uint64_t wrong;    /* anything else */
    char buf[32];      /* the input being handed over */
    _Atomic bool done; /* pard_map returned */
    bool joined;
    /* the middle result waits for *gate: the map is still running then */
    const _Atomic bool *gate;
    uint64_t before_gate;  /* results delivered when the gate opened */
    int64_t last_input_ns; /* when the last input was asked for */
};

static int run_input(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct run *r = arg;
    if (index >= r->n)
        return 0;
    if (index + 1 == r->n)
        r->last_input_ns = pard_now_ns();
    *len = (size_t)snprintf(r->buf, sizeof(r->buf), "%" PRIu64, index);
    *data = r->buf;
    return 1;
}

static int run_result(void *arg, const struct pard_result *res)
{
    struct run *r = arg;
    if (res->index >= r->n) {
        r->wrong++;
        return 0;
    }
    /* Half way, wait for the gate: the map is still running when the
     * gate opens, and has delivered results by then. (Not at the last
     * input: workers that keep up let pard_map read every input before it
     * takes a result.) */
    if (r->gate && res->index == r->n / 2) {
        while (!atomic_load(r->gate))
            usleep(1000);
        r->before_gate = r->correct + r->wrong;
    }
    r->count[res->index]++;
    char want[32];
    int n = snprintf(want, sizeof(want), "%" PRIu64, res->index * res->index);
    if (res->status == 0 && res->len == (size_t)n && memcmp(res->data, want, (size_t)n) == 0)
        r->correct++;
    else
        r->wrong++;
    return 0;
}

/* An array map's failure: nothing in these tests should fail a task. */
static int run_item_failed(void *arg, const struct pard_result *res)
{
    struct run *r = arg;
    r->wrong++;
    return 0;
}

/* The array form: results are checked once the map is over (a slot still
 * at -1 was never delivered). */
static int run_array(struct run *r, struct pard_client *c)
{
    int64_t *items = malloc(r->n * sizeof(*items)), *out = malloc(r->n * sizeof(*out));
    if (!items || !out) {
        free(items);
        free(out);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < r->n; i++) {
        items[i] = (int64_t)i;
        out[i] = -1;
    }
    int rc = pard_map_array(c, r->function, items, 8, r->n, out, 8, run_item_failed, r, &r->opts,
                            &r->stats);
    for (uint64_t i = 0; i < r->n; i++) {
        if (out[i] == -1)
            continue;
        r->count[i]++;
        if (out[i] == (int64_t)(i * i))
            r->correct++;
        else
            r->wrong++;
    }
    free(items);
    free(out);
    return rc;
}

static void *run_thread(void *arg)
{
    struct run *r = arg;
    struct pard_client *c = NULL;
    r->rc = pard_connect(&c, r->socket);
    if (r->rc == 0) {
        r->rc = r->array ? run_array(r, c)
                         : pard_map(c, r->function, run_input, run_result, r, &r->opts, &r->stats);
        if (r->rc != 0)
            snprintf(r->error, sizeof(r->error), "%s", pard_last_error());
        pard_disconnect(c);
    } else {
        snprintf(r->error, sizeof(r->error), "%s", pard_last_error());
    }
    atomic_store(&r->done, true);
    return NULL;
}

static void run_start(struct run *r, const char *socket, const char *function, uint64_t n)
{
    r->socket = socket;
    r->function = function;
    r->n = n;
    r->count = calloc(n, sizeof(*r->count));
    cr_assert_not_null(r->count);
    cr_assert_eq(pthread_create(&r->thread, NULL, run_thread, r), 0);
}

static void run_join(struct run *r)
{
    if (!r->joined)
        cr_assert_eq(pthread_join(r->thread, NULL), 0);
    r->joined = true;
}

/* Every result delivered exactly once, and right. */
static void run_check_complete(const struct run *r, const char *what)
{
    cr_assert_eq(r->rc, 0, "%s: pard_map failed: %d %s", what, r->rc, r->error);
    cr_assert_eq(r->correct, r->n,
                 "%s: %" PRIu64 " of %" PRIu64 " results right (%" PRIu64 " wrong)", what,
                 r->correct, r->n, r->wrong);
    for (uint64_t i = 0; i < r->n; i++)
        cr_assert_eq(r->count[i], 1, "%s: task %" PRIu64 " delivered %u times", what, i,
                     r->count[i]);
}

/* Nothing delivered twice or wrong, even by a failed map. */
static void run_check_clean(const struct run *r, const char *what)
{
    cr_assert_eq(r->wrong, 0, "%s: %" PRIu64 " wrong results delivered", what, r->wrong);
    for (uint64_t i = 0; i < r->n; i++)
        cr_assert_leq(r->count[i], 1, "%s: task %" PRIu64 " delivered %u times", what, i,
                      r->count[i]);
}

static void run_free(struct run *r)
{
    free(r->count);
}

/* ======================================================================
 * The scene: a daemon, the example worker, hostile workers
 * ====================================================================== */

static pid_t hostile_start(struct test_daemon *d, const char *mode, bool exit_after)
{
    char *argv[] = {TEST_HOSTILE, "--socket",   d->socket,
                    "--mode",     (char *)mode, exit_after ? "--exit" : NULL,
                    NULL};
    pid_t pid = test_spawn(argv);
    if (d->nworkers < 16)
        d->workers[d->nworkers++] = pid;
    return pid;
}

/* Wait (30 s at most) for pid to end; its wait status. */
static int wait_end(pid_t pid, const char *what)
{
    int status = 0;
    for (int i = 0; i < 3000; i++) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        cr_assert_neq(got, -1, "waitpid(%s)", what);
        if (got == pid)
            return status;
        usleep(10000);
    }
    cr_assert_fail("%s did not end within 30 s", what);
    return 0;
}

/* Forget a reaped worker, so that test_daemon_stop does not wait for it. */
static void forget_worker(struct test_daemon *d, pid_t pid)
{
    for (int i = 0; i < d->nworkers; i++)
        if (d->workers[i] == pid)
            d->workers[i] = d->workers[--d->nworkers];
}

struct scene {
    struct test_daemon d;
    pid_t hostile;
    struct run other; /* square on the example worker, concurrently */
    struct run job;   /* the hostile worker's job */
};

#define OTHER_TASKS   5000u
#define HOSTILE_TASKS 400u
#define AFTER_TASKS   1000u

/* Start pard, the example worker and a hostile worker in `mode`; start the
 * other submitter's map, then the hostile job's: `tasks` tasks in batches
 * of `batch`. */
static void scene_start_with(struct scene *s, const char *mode, bool exit_after,
                             uint32_t timeout_ms, uint64_t tasks, uint32_t batch)
{
    bool array = strcmp(mode, "items") == 0;
    memset(s, 0, sizeof(*s));
    test_daemon_start(&s->d);
    struct pard_client *c = NULL;
    cr_assert_eq(pard_connect_control(&c, s->d.socket), 0, "%s", pard_last_error());
    pard_disconnect(c); /* listening: workers are not refused */
    test_worker_start(&s->d);
    s->hostile = hostile_start(&s->d, mode, exit_after);
    test_wait_workers(&s->d, 2);
    s->other.opts.batch = 1; /* results flow back while inputs go in */
    s->other.gate = &s->job.done;
    run_start(&s->other, s->d.socket, "square", OTHER_TASKS);
    s->job.opts.batch = batch;
    s->job.opts.timeout_ms = timeout_ms;
    s->job.array = array;
    run_start(&s->job, s->d.socket, "hostile", tasks);
}

static void scene_start(struct scene *s, const char *mode, bool exit_after, uint32_t timeout_ms)
{
    scene_start_with(s, mode, exit_after, timeout_ms, HOSTILE_TASKS, 4);
}

/* Whatever happened to the hostile job: the other submitter's map
 * completed, a new map completes, the daemon is alive and answers, and it
 * stops cleanly on SIGTERM. */
static void scene_finish(struct scene *s)
{
    run_join(&s->other);
    /* It was in flight all along: it waited at its middle result until
     * the hostile job was over. */
    run_check_complete(&s->other, "the concurrent square map");
    cr_log_info("the concurrent map had delivered %" PRIu64 " results when the hostile job ended",
                s->other.before_gate);
    struct run after = {0};
    run_start(&after, s->d.socket, "square", AFTER_TASKS);
    run_join(&after);
    run_check_complete(&after, "the square map after the hostile job");
    int status;
    cr_assert_eq(waitpid(s->d.pid, &status, WNOHANG), 0, "pard died");
    struct pard_msg_stats_reply st;
    test_get_stats(s->d.socket, &st);
    cr_log_info("daemon after: %" PRIu64 " workers, %" PRIu64 " jobs, %" PRIu64
                " tasks delivered, %" PRIu64 " worker deaths",
                st.workers, st.jobs, st.tasks_done, st.worker_deaths);
    run_free(&after);
    run_free(&s->other);
    run_free(&s->job);
    test_daemon_stop(&s->d); /* asserts exit status 0 after SIGTERM */
}

/* The hostile job failed with -PARD_ECORRUPT and a message holding `what`. */
static void expect_corrupt(struct scene *s, const char *what, bool names_worker)
{
    run_join(&s->job);
    cr_log_info("hostile job: rc %d, %" PRIu64 " results before it stopped: %s", s->job.rc,
                s->job.correct, s->job.error);
    cr_assert_eq(s->job.rc, -PARD_ECORRUPT, "the map returned %d (%s), not -PARD_ECORRUPT",
                 s->job.rc, s->job.error);
    cr_assert_not_null(strstr(s->job.error, what), "the message '%s' does not say '%s'",
                       s->job.error, what);
    if (names_worker) {
        char pid[48];
        snprintf(pid, sizeof(pid), "worker pid %d", (int)s->hostile);
        cr_assert_not_null(strstr(s->job.error, pid), "the message '%s' does not name %s",
                           s->job.error, pid);
    }
    run_check_clean(&s->job, "the hostile job");
}

/* ======================================================================
 * The tests
 * ====================================================================== */

Test(hostile, result_ring_indices_stop_the_job_naming_the_lane_and_worker, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "ring", false, 0);
    expect_corrupt(&s, "lane 0 (worker pid", true);
    cr_assert_not_null(strstr(s.job.error, "impossible result ring indices"), "%s", s.job.error);
    scene_finish(&s);
}

Test(hostile, a_result_span_outside_the_arena_stops_the_job, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "desc", false, 0);
    expect_corrupt(&s, "a result span outside its output arena", true);
    scene_finish(&s);
}

Test(hostile, records_with_impossible_lengths_stop_the_job, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "record", false, 0);
    expect_corrupt(&s, "a result record that runs past its span", true);
    scene_finish(&s);
}

Test(hostile, an_array_span_naming_a_task_outside_it_stops_the_job, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "items", false, 0);
    expect_corrupt(&s, "an array result record for a task not in its span", true);
    scene_finish(&s);
}

Test(hostile, task_ring_indices_stop_the_job, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "tasks", false, 0);
    expect_corrupt(&s, "task ring", false);
    scene_finish(&s);
}

Test(hostile, a_garbage_job_state_stops_the_job, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "state", false, 0);
    expect_corrupt(&s, "the job's state word holds 1554098974", false);
    scene_finish(&s);
}

/* A garbage lease whose start time lies in the future: the time limit must
 * still catch the worker (it holds a batch and does nothing). The daemon
 * kills it; the submitter cannot use the lease, and re-queues the lost
 * batch once nothing moves; a good worker finishes the job. */
Test(hostile, a_garbage_lease_gets_the_worker_killed_and_the_job_completes, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "lease", false, 1000);
    int status = wait_end(s.hostile, "the hostile worker");
    forget_worker(&s.d, s.hostile);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the hostile worker was not killed by the daemon (status %#x)", status);
    hostile_start(&s.d, "none", false); /* a good worker for the function */
    run_join(&s.job);
    run_check_complete(&s.job, "the hostile job");
    cr_log_info("hostile job: %" PRIu64 " tasks re-queued", s.job.stats.requeued);
    cr_assert_geq(s.job.stats.requeued, 1, "the lost batch was not re-queued");
    scene_finish(&s);
}

/* A garbage lease, then exit: nothing in the lease can be re-queued, the
 * reconcile pass finds the lost batch. */
Test(hostile, a_garbage_lease_left_by_a_dead_worker_is_ignored_and_the_job_completes, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "lease", true, 0);
    int status = wait_end(s.hostile, "the hostile worker");
    forget_worker(&s.d, s.hostile);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the hostile worker did not exit after its scribble (status %#x)", status);
    hostile_start(&s.d, "none", false);
    run_join(&s.job);
    run_check_complete(&s.job, "the hostile job");
    cr_log_info("hostile job: %" PRIu64 " tasks re-queued", s.job.stats.requeued);
    cr_assert_geq(s.job.stats.requeued, 1, "the lost batch was not re-queued");
    scene_finish(&s);
}

/* A worker killed between claiming a task-ring position and releasing its
 * slot: the slot stays "being read" for good, and the submitter, the
 * ring's only producer, meets it a lap later (the map has 5,000 unbatched
 * tasks; the ring holds 1,024). It must take the slot back, re-queue the
 * descriptor it held, and finish on a good worker. (It waited there
 * forever, never again reclaiming lanes or re-queueing anything.) */
Test(hostile, a_worker_killed_holding_a_task_ring_slot_does_not_stall_the_job, .timeout = 90)
{
    struct scene s;
    scene_start_with(&s, "claim", false, 0, 5000, 1);
    int status = wait_end(s.hostile, "the hostile worker");
    forget_worker(&s.d, s.hostile);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the hostile worker did not die holding its claim (status %#x)", status);
    hostile_start(&s.d, "none", false); /* a good worker for the function */
    run_join(&s.job);
    run_check_complete(&s.job, "the hostile job");
    cr_log_info("hostile job: %" PRIu64 " task-ring slots taken back, %" PRIu64
                " tasks re-queued, %" PRIu64 " duplicates dropped",
                s.job.stats.reclaimed, s.job.stats.requeued, s.job.stats.dropped);
    cr_assert_geq(s.job.stats.reclaimed, 1, "the stuck slot was not taken back");
    cr_assert_geq(s.job.stats.requeued, 1, "the abandoned descriptor was not re-queued");
    /* By the reclaim, as the submitter laps the ring, not by the reconcile
     * pass that finds lost tasks once every input is in and nothing moves. */
    cr_assert_lt(s.job.stats.last_requeue_ns, s.job.last_input_ns,
                 "the task was re-queued only after the last input: by reconcile, not by the "
                 "reclaim");
    scene_finish(&s);
}

/* Garbage in the job's counters (stats only): the job completes, the
 * daemon's stats answer while it runs, and the submitter's last publish
 * leaves the daemon's totals right. */
Test(hostile, garbage_job_counters_do_not_disturb_the_job_or_the_stats, .timeout = 90)
{
    struct scene s;
    scene_start(&s, "counters", false, 0);
    int looks = 0;
    while (!atomic_load(&s.job.done)) {
        struct pard_msg_stats_reply st;
        test_get_stats(s.d.socket, &st);
        looks++;
        usleep(5000);
    }
    run_join(&s.job);
    cr_log_info("stats answered %d times during the job", looks);
    run_check_complete(&s.job, "the hostile job");
    run_join(&s.other);
    struct pard_msg_stats_reply st;
    test_get_stats(s.d.socket, &st);
    cr_assert_eq(st.tasks_done, (uint64_t)OTHER_TASKS + HOSTILE_TASKS,
                 "the daemon counts %" PRIu64 " tasks delivered", st.tasks_done);
    cr_assert_lt(st.requeues, 1000000, "the daemon counts %" PRIu64 " re-queues", st.requeues);
    scene_finish(&s);
}

/* A result-ring tail scribbled ahead of head, nothing written: the
 * submitter never reads that tail, and must not be woken by it either.
 * (It was: its wake-up test counted the ring by the shared indices, so it
 * spun without sleeping and without ever looking at its socket, and a
 * dead daemon went unnoticed.) Kill the daemon meanwhile: the map must
 * return -PARD_EDAEMON. */
Test(hostile, a_scribbled_result_tail_does_not_hide_a_dead_daemon, .timeout = 90)
{
    struct test_daemon d;
    test_daemon_start(&d);
    struct pard_client *c = NULL;
    cr_assert_eq(pard_connect_control(&c, d.socket), 0, "%s", pard_last_error());
    pard_disconnect(c);
    char mark[200];
    snprintf(mark, sizeof(mark), "%s/scribbled", d.dir);
    char *argv[] = {TEST_HOSTILE, "--socket", d.socket, "--mode", "tail", "--mark", mark, NULL};
    d.workers[d.nworkers++] = test_spawn(argv);
    test_wait_workers(&d, 1);
    struct run job = {0};
    job.opts.batch = 4;
    run_start(&job, d.socket, "hostile", HOSTILE_TASKS);
    struct stat st;
    for (int i = 0; i < 3000 && stat(mark, &st) != 0; i++)
        usleep(10000);
    cr_assert_eq(stat(mark, &st), 0, "the hostile worker never scribbled");
    cr_assert(!atomic_load(&job.done), "the map ended before the daemon was killed");
    int status;
    kill(d.pid, SIGKILL);
    waitpid(d.pid, &status, 0);
    d.pid = 0;
    run_join(&job);
    cr_log_info("hostile job after kill -9 of pard: rc %d: %s", job.rc, job.error);
    cr_assert_eq(job.rc, -PARD_EDAEMON, "the map returned %d (%s), not -PARD_EDAEMON", job.rc,
                 job.error);
    run_free(&job);
    unlink(mark);
    unlink(d.socket); /* a killed daemon leaves it behind */
    test_daemon_stop(&d);
}
