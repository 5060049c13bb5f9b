/*
 * oversub.c — `parbench oversub`: more workers than cores, and why
 * spinning collapses there.
 *
 * Owns two experiments:
 *
 *   map       a pard map of --tasks tasks of --task-us (default 10 us) with
 *             2 workers and with --workers (default 8), in each wait mode,
 *             auto-batched and unbatched. On 2 cores, 8 spinning workers and
 *             a spinning submitter fight over the cores: a spinner burns the
 *             slice its peer needs. Each map has a time limit (10 x the
 *             2-worker time, at least 2 s): at its first result after the
 *             limit it is cancelled and its rate taken over what it
 *             delivered (at least that one result).
 *   ping-pong 1 pair and workers/2 pairs of processes bouncing a message
 *             through two SPSC pard rings, in each wait mode, for
 *             --duration ms: round trips per second, all pairs together.
 *             Every pair makes at least MIN_TRIPS round trips, past the
 *             end of the window if the machine left it no CPU until then.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

static const enum pard_wait_mode modes[3] = {PARD_WAIT_SPIN, PARD_WAIT_ADAPTIVE, PARD_WAIT_BLOCK};

/* ----------------------------------------------------------------------
 * Ring ping-pong with many pairs
 * ---------------------------------------------------------------------- */

#define KIND_CTL  1
#define KIND_RING 2
#define MAXPAIRS  64
#define MIN_TRIPS 10 /* round trips every pair makes, however late it starts */

struct pp_ctl {
    _Alignas(PARD_CACHELINE) _Atomic int stop;
    _Alignas(PARD_CACHELINE) _Atomic int ready;
    _Alignas(PARD_CACHELINE) _Atomic int go;
    struct {
        _Alignas(PARD_CACHELINE) uint64_t trips;
        int64_t ns;
    } res[MAXPAIRS];
};

static void pinger(struct pp_ctl *ctl, struct pard_ring *to, struct pard_ring *from, int i,
                   enum pard_wait_mode mode)
{
    atomic_fetch_add(&ctl->ready, 1);
    while (!atomic_load_explicit(&ctl->go, memory_order_acquire))
        pb_sleep_ns(100000);
    uint64_t trips = 0, v = 1, back;
    int64_t t0 = pard_now_ns();
    /* At least MIN_TRIPS, even past the stop flag: on a busy machine a pair
     * may not get both its CPUs at once during the whole window. */
    while (trips < MIN_TRIPS || !atomic_load_explicit(&ctl->stop, memory_order_relaxed)) {
        if (pard_ring_push_wait(to, &v, 1, mode, -1) != 1 ||
            pard_ring_pop_wait(from, &back, 1, mode, -1) != 1 || back != v)
            _exit(3);
        trips++;
        v++;
    }
    ctl->res[i].trips = trips;
    ctl->res[i].ns = pard_now_ns() - t0;
    uint64_t quit = 0;
    pard_ring_push_wait(to, &quit, 1, mode, -1);
    _exit(0);
}

static void ponger(struct pard_ring *from, struct pard_ring *to, enum pard_wait_mode mode)
{
    for (;;) {
        uint64_t v;
        if (pard_ring_pop_wait(from, &v, 1, mode, -1) != 1)
            _exit(3);
        if (v == 0)
            _exit(0);
        if (pard_ring_push_wait(to, &v, 1, mode, -1) != 1)
            _exit(3);
    }
}

/* Run `pairs` ping-pong pairs for ms; returns round trips per second (all
 * pairs) or NAN. */
static double pingpong(int pairs, enum pard_wait_mode mode, double ms)
{
    if (pairs > MAXPAIRS)
        pairs = MAXPAIRS;
    size_t rsize = pard_ring_footprint(PARD_RING_SPSC, 64, 8);
    struct pard_region reg;
    if (pard_region_open(&reg, sizeof(struct pp_ctl) + (size_t)(2 * pairs) * (rsize + 64) + 8192) !=
        0)
        return NAN;
    uint64_t off;
    if (pard_region_add_section(&reg, KIND_CTL, sizeof(struct pp_ctl), &off) < 0) {
        pard_region_close(&reg);
        return NAN;
    }
    struct pp_ctl *ctl = (struct pp_ctl *)((uint8_t *)reg.base + off);
    struct pard_ring rings[2 * MAXPAIRS];
    for (int i = 0; i < 2 * pairs; i++) {
        if (pard_region_add_section(&reg, KIND_RING, rsize, &off) < 0 ||
            pard_ring_init(&rings[i], (uint8_t *)reg.base + off, rsize, PARD_RING_SPSC, 64, 8) !=
                0) {
            pard_region_close(&reg);
            return NAN;
        }
    }
    pard_region_publish(&reg, 1, NULL);
    pid_t pids[2 * MAXPAIRS];
    int started = 0;
    pid_t parent = getpid();
    for (int i = 0; i < 2 * pairs; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            int pair = i / 2;
            /* The two ends of a pair on two different CPUs (as latency does):
             * left alone, the scheduler often keeps a pair that wakes each
             * other on one CPU, and the 1-pair baseline would measure that
             * placement rather than the wait mode. */
            pb_pin_cpu(i);
            if (i % 2 == 0)
                pinger(ctl, &rings[2 * pair], &rings[2 * pair + 1], pair, mode);
            else
                ponger(&rings[2 * pair], &rings[2 * pair + 1], mode);
        }
        if (pid < 0)
            break;
        pids[started++] = pid;
    }
    bool ok = started == 2 * pairs;
    if (ok) {
        while (atomic_load(&ctl->ready) < pairs)
            pb_sleep_ns(100000);
        atomic_store_explicit(&ctl->go, 1, memory_order_release);
        pb_sleep_ns((int64_t)(ms * 1e6));
    }
    atomic_store(&ctl->stop, 1);
    atomic_store(&ctl->go, 1);
    for (int i = 0; i < started; i++) {
        int status;
        if (!ok)
            kill(pids[i], SIGKILL);
        ok &= waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0;
    }
    double rate = 0;
    for (int i = 0; ok && i < pairs; i++)
        rate += ctl->res[i].ns > 0 ? (double)ctl->res[i].trips / ((double)ctl->res[i].ns / 1e9) : 0;
    pard_region_close(&reg);
    return ok ? rate : NAN;
}

/* ----------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

int pb_oversub(const struct pb_opts *o, struct pb_report *r)
{
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    unsigned many = o->workers ? o->workers : 8;
    unsigned few = 2 < many ? 2 : many;
    double task_us = o->task_us ? o->task_us : 10;
    uint64_t tasks = o->tasks ? o->tasks : 20000;
    double ms = o->duration_ms ? o->duration_ms : 250;
    uint64_t iters = pb_iters_for_ns(task_us * 1e3);

    double cap = pb_capacity(cpus > 1 ? cpus : 2);
    struct pb_pard p;
    pb_progress(o, "oversub: starting pard with %u workers on %d CPUs", many, cpus);
    if (pb_pard_start(&p, o, many) != 0)
        return -1;

    static const struct pb_col cols[] = {
        {"mode", "wait mode", -1},     {"batch", "batching", -1},    {"workers", "workers", 0},
        {"tasks_per_s", "tasks/s", 0}, {"vs_few", "x 2 workers", 2}, {"complete", "complete", -1},
    };
    char title[160];
    snprintf(title, sizeof(title), "pard map of %.0f us tasks, %u and %u workers on %d CPUs",
             task_us, few, many, cpus);
    struct pb_table *t = pb_table_new(r, "map", title, cols, 6);
    t->plot.x = 2;
    t->plot.y[0] = 3;
    t->plot.ny = 1;
    t->plot.series = 0;
    t->plot.series2 = 1;
    t->plot.logy = true;
    t->plot.xlabel = "workers";
    t->plot.ylabel = "tasks per second";

    int status = 0;
    double adaptive_ratio = NAN, spin_ratio = NAN;
    pb_progress(o, "oversub: %llu tasks of %.0f us per map, 3 modes x 2 batchings",
                (unsigned long long)tasks, task_us);
    for (int b = 0; b < 2 && status == 0; b++) {
        for (int mi = 0; mi < 3 && status == 0; mi++) {
            double rate[2] = {NAN, NAN};
            double few_ms = 0;
            for (int k = 0; k < 2; k++) {
                unsigned w = k ? many : few;
                struct pb_map_run run = {.fn = PB_FN_BUSY,
                                         .tasks = tasks,
                                         .iters = iters,
                                         .batch = b == 0 ? PARD_BATCH_AUTO : 1,
                                         .mode = modes[mi],
                                         .max_workers = w,
                                         .limit_ms = k ? fmax(2000, 10 * few_ms) : 20000};
                if (pb_pard_map(&p, &run) != 0) {
                    status = -1;
                    break;
                }
                if (k == 0)
                    few_ms = run.elapsed_ns / 1e6;
                rate[k] = (double)run.delivered / (run.elapsed_ns / 1e9);
                int row = pb_row(t);
                pb_set_str(t, row, 0, pard_wait_mode_name(modes[mi]));
                pb_set_str(t, row, 1, b == 0 ? "auto" : "unbatched");
                pb_set_num(t, row, 2, w);
                pb_set_num(t, row, 3, rate[k]);
                pb_set_num(t, row, 4, rate[k] / rate[0]);
                char done[48];
                if (run.cancelled)
                    snprintf(done, sizeof(done), "stopped at %.1f s", run.elapsed_ns / 1e9);
                else
                    snprintf(done, sizeof(done), "yes");
                pb_set_str(t, row, 5, done);
            }
            if (b == 0 && modes[mi] == PARD_WAIT_ADAPTIVE)
                adaptive_ratio = rate[1] / rate[0];
            if (b == 0 && modes[mi] == PARD_WAIT_SPIN)
                spin_ratio = rate[1] / rate[0];
        }
    }
    pb_pard_stop(&p);
    pb_table_note(t,
                  "The submitter waits in the same mode as the workers. A map that would take "
                  "more than 10 x the %u-worker time is stopped and its rate taken over what "
                  "it delivered.",
                  few);

    /* Ring ping-pong: 1 pair, then many/2 pairs. */
    static const struct pb_col pcols[] = {
        {"mode", "wait mode", -1},
        {"pairs", "pairs", 0},
        {"processes", "processes", 0},
        {"trips_per_s", "round trips/s", 0},
        {"us_per_trip", "us per trip (a pair)", 2},
        {"vs_one", "x 1 pair", 2},
    };
    snprintf(title, sizeof(title), "Ring ping-pong: 1 and %u pairs of processes on %d CPUs",
             many / 2 ? many / 2 : 1, cpus);
    struct pb_table *pp = pb_table_new(r, "pingpong", title, pcols, 6);
    pp->plot.x = 0;
    pp->plot.y[0] = 3;
    pp->plot.ny = 1;
    pp->plot.logy = true;
    pp->plot.ylabel = "round trips per second (all pairs)";
    int npairs[2] = {1, (int)(many / 2 ? many / 2 : 1)};
    pb_progress(o, "oversub: ring ping-pong, 1 and %d pairs, %.0f ms each", npairs[1], ms);
    for (int mi = 0; mi < 3 && status == 0; mi++) {
        double one = NAN;
        for (int k = 0; k < 2; k++) {
            double rate = pingpong(npairs[k], modes[mi], ms);
            if (isnan(rate)) {
                pb_note(r, "ping-pong with %d pairs in %s mode failed", npairs[k],
                        pard_wait_mode_name(modes[mi]));
                status = -1;
                continue;
            }
            if (k == 0)
                one = rate;
            int row = pb_row(pp);
            pb_set_str(pp, row, 0, pard_wait_mode_name(modes[mi]));
            pb_set_num(pp, row, 1, npairs[k]);
            pb_set_num(pp, row, 2, 2 * npairs[k]);
            pb_set_num(pp, row, 3, rate);
            pb_set_num(pp, row, 4, 1e6 * npairs[k] / rate);
            pb_set_num(pp, row, 5, rate / one);
        }
    }
    pb_table_note(pp,
                  "Each pair bounces an 8-byte message through two SPSC rings for %.0f ms; the "
                  "two ends of each pair are pinned to different CPUs. A spinning process holds "
                  "its core while its partner waits for one.",
                  ms);
    pb_figure(r, "adaptive_many_vs_few", adaptive_ratio, "x", PB_AT_LEAST, 0.8,
              "adaptive, auto-batched: %u workers' throughput / %u workers'", many, few);
    pb_figure(r, "capacity_cpus", cap, "CPUs", PB_NONE, 0,
              "parallel capacity measured at the start (2 busy threads against one)");
    pb_figure(r, "spin_many_vs_few", spin_ratio, "x", PB_NONE, 0,
              "spin, auto-batched: %u workers' throughput / %u workers'", many, few);
    return status;
}
