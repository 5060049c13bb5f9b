/*
 * overhead.c — `parbench overhead`: how short can a task be before running
 * it in parallel stops paying?
 *
 * Owns: the task-duration sweep, the no-op task rates and the break-even
 * computation; pard runs through harness.c (a private daemon and N
 * parbench workers), threads through a small pool here.
 *
 * Method. For each task duration d (calibrated pb_busy work), n tasks
 * (about --budget ms of serial work, capped) run four ways, interleaved,
 * best of --repeat:
 *   serial     a plain loop calling pb_busy in this process
 *   threads    N pthreads pulling task indexes from one atomic counter
 *   unbatched  pard_map with N workers, one task per batch (batch = 1)
 *   auto       pard_map with N workers, PARD_BATCH_AUTO
 * Speedup is serial time / parallel time per task (a pard map includes its
 * job start). The break-even duration is where the speedup first reaches 1
 * going up the sweep, interpolated on log scales between the two sweep
 * points around it.
 *
 * The no-op table maps a function that does nothing: the rate is the
 * per-task overhead alone (what Python's Pool.map is compared with in
 * bench/peers).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ----------------------------------------------------------------------
 * The baselines: a serial loop and a thread pool on an atomic counter
 * ---------------------------------------------------------------------- */

static double serial_ns(uint64_t n, uint64_t iters)
{
    int64_t t0 = pard_now_ns();
    for (uint64_t i = 0; i < n; i++)
        pb_busy(iters);
    return (double)(pard_now_ns() - t0);
}

typedef int (*task_fn)(uint64_t iters, uint8_t *status);

/* A task as a thread pool would run it: a call through a pointer that
 * writes a status byte for the caller to read. */
static int task_busy(uint64_t iters, uint8_t *status)
{
    *status = (uint8_t)pb_busy(iters);
    return 0;
}

static int task_noop(uint64_t iters, uint8_t *status)
{
    *status = 1;
    return 0;
}

struct pool {
    _Alignas(PARD_CACHELINE) _Atomic uint64_t next; /* the next task index */
    _Alignas(PARD_CACHELINE) uint64_t n;
    uint64_t iters;
    task_fn fn;
    uint8_t *status;           /* one byte per task */
    _Atomic unsigned next_cpu; /* thread i runs on CPU i */
};

static void *pool_thread(void *arg)
{
    struct pool *p = arg;
    /* One thread per CPU, as a pool sized to the machine would be: left
     * alone, the scheduler may stack both on one CPU when something else
     * runs, and the counter would stop moving between cores. */
    pb_pin_cpu((int)atomic_fetch_add(&p->next_cpu, 1));
    for (;;) {
        uint64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n)
            break;
        p->fn(p->iters, &p->status[i]);
    }
    return NULL;
}

/* n tasks on `threads` pthreads pulling indexes; thread start included. */
static double threads_ns(unsigned threads, uint64_t n, uint64_t iters, task_fn fn)
{
    struct pool p = {.n = n, .iters = iters, .fn = fn};
    p.status = malloc(n ? n : 1);
    if (!p.status)
        return NAN;
    atomic_store(&p.next, 0);
    pthread_t th[PB_MAX_WORKERS];
    int64_t t0 = pard_now_ns();
    unsigned started = 0;
    for (; started < threads; started++)
        if (pthread_create(&th[started], NULL, pool_thread, &p) != 0)
            break;
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double dt = (double)(pard_now_ns() - t0);
    free(p.status);
    return started ? dt : NAN;
}

/* ----------------------------------------------------------------------
 * Break-even
 * ---------------------------------------------------------------------- */

/*
 * The task duration where speedup first crosses 1 going up the sweep (the
 * shortest task that pays), interpolated on log scales between the last
 * point below 1 and the first at or above it. Returns NAN when the speedup
 * never reaches 1, or the shortest duration (an upper bound; *bound = true)
 * when it is at or above 1 everywhere. *dips counts points above the
 * crossing that fell below 1 again (noise, or a machine that got busy).
 */
static double break_even(const double *dur, const double *speedup, int n, bool *bound, int *dips)
{
    *bound = false;
    *dips = 0;
    int first = -1;
    for (int i = 0; i < n && first < 0; i++)
        if (speedup[i] >= 1.0)
            first = i;
    if (first < 0)
        return NAN;
    for (int i = first + 1; i < n; i++)
        *dips += !(speedup[i] >= 1.0);
    if (first == 0) {
        *bound = true;
        return dur[0];
    }
    int a = first - 1, b = first;
    double la = log(speedup[a]), lb = log(speedup[b]);
    if (!isfinite(la) || !(lb > la))
        return dur[b];
    double f = (0 - la) / (lb - la);
    return exp(log(dur[a]) + f * (log(dur[b]) - log(dur[a])));
}

/* ----------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

static int map_best(struct pb_pard *p, struct pb_map_run *run, double *best)
{
    int rc = pb_pard_map(p, run);
    if (rc == 0 && run->elapsed_ns < *best)
        *best = run->elapsed_ns;
    return rc;
}

static void noop_table(const struct pb_opts *o, struct pb_report *r, struct pb_pard *p,
                       unsigned workers, int *status)
{
    uint64_t n_auto = o->tasks ? o->tasks : 2000000;
    uint64_t n_unb = n_auto / 10 ? n_auto / 10 : 1;
    unsigned repeat = o->repeat ? o->repeat : 3;
    double serial = INFINITY, thr = INFINITY, unb = INFINITY, aut = INFINITY, uno = INFINITY,
           arr = INFINITY;
    pb_progress(o, "overhead: no-op tasks (%llu batched, %llu unbatched, best of %u)",
                (unsigned long long)n_auto, (unsigned long long)n_unb, repeat);
    for (unsigned k = 0; k < repeat && *status == 0; k++) {
        int64_t t0 = pard_now_ns();
        uint8_t sink = 0;
        task_fn fn = task_noop;
        /* Hide the pointer from the optimiser: the loop makes real calls. */
        __asm__ __volatile__("" : "+r"(fn));
        for (uint64_t i = 0; i < n_auto; i++)
            fn(0, &sink);
        double s = (double)(pard_now_ns() - t0);
        if (s < serial)
            serial = s;
        double t = threads_ns(workers, n_auto, 0, task_noop);
        if (t < thr)
            thr = t;
        struct pb_map_run a = {.fn = PB_FN_NOOP,
                               .tasks = n_unb,
                               .batch = 1,
                               .mode = PARD_WAIT_ADAPTIVE,
                               .max_workers = workers};
        if (map_best(p, &a, &unb) != 0)
            *status = -1;
        struct pb_map_run b = {.fn = PB_FN_NOOP,
                               .tasks = n_auto,
                               .batch = PARD_BATCH_AUTO,
                               .mode = PARD_WAIT_ADAPTIVE,
                               .max_workers = workers};
        if (*status == 0 && map_best(p, &b, &aut) != 0)
            *status = -1;
        b.unordered = true;
        if (*status == 0 && map_best(p, &b, &uno) != 0)
            *status = -1;
        b.unordered = false;
        b.array = true;
        if (*status == 0 && map_best(p, &b, &arr) != 0)
            *status = -1;
    }
    static const struct pb_col cols[] = {
        {"how", "how", -1},
        {"tasks", "tasks", 0},
        {"seconds", "seconds", 4},
        {"tasks_per_s", "tasks/s", 0},
        {"ns_per_task", "ns/task", 1},
    };
    char title[160];
    snprintf(title, sizeof(title), "No-op tasks: the overhead alone (%u workers or threads)",
             workers);
    struct pb_table *t = pb_table_new(r, "noop", title, cols, 5);
    t->plot.x = 0;
    t->plot.y[0] = 3;
    t->plot.ny = 1;
    t->plot.logy = true;
    t->plot.ylabel = "tasks per second";
    struct {
        const char *how;
        uint64_t n;
        double ns;
    } rows[] = {
        {"serial loop (function call)", n_auto, serial},
        {"pthreads, atomic counter", n_auto, thr},
        {"pard map, unbatched", n_unb, unb},
        {"pard map, auto-batched", n_auto, aut},
        {"pard map, auto-batched, unordered", n_auto, uno},
        {"pard array map (8-byte items), auto-batched", n_auto, arr},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        int row = pb_row(t);
        pb_set_str(t, row, 0, rows[i].how);
        pb_set_num(t, row, 1, (double)rows[i].n);
        pb_set_num(t, row, 2, rows[i].ns / 1e9);
        pb_set_num(t, row, 3, (double)rows[i].n / (rows[i].ns / 1e9));
        pb_set_num(t, row, 4, rows[i].ns / (double)rows[i].n);
    }
    pb_table_note(t,
                  "Best of %u interleaved runs; a pard map's time includes starting its job. "
                  "Maps deliver results in input order unless marked unordered. pard_map "
                  "takes each input from a callback and hands each result to one; "
                  "pard_map_array copies an array of items (here the indices, made inside "
                  "the timing) and its results as blocks.",
                  repeat);
    double rate_unb = (double)n_unb / (unb / 1e9), rate_auto = (double)n_auto / (aut / 1e9);
    double rate_thr = (double)n_auto / (thr / 1e9);
    pb_figure(r, "noop_unbatched_per_s", rate_unb, "tasks/s", PB_NONE, 0,
              "no-op map, %u workers, unbatched", workers);
    pb_figure(r, "noop_auto_per_s", rate_auto, "tasks/s", PB_NONE, 0,
              "no-op map, %u workers, auto-batched", workers);
    pb_figure(r, "noop_threads_per_s", rate_thr, "tasks/s", PB_NONE, 0,
              "no-op tasks, %u pthreads on an atomic counter", workers);
    pb_figure(r, "noop_auto_vs_threads", rate_auto / rate_thr, "x", PB_AT_LEAST, 0.5,
              "auto-batched no-op map / pthreads on an atomic counter");
    double rate_arr = (double)n_auto / (arr / 1e9);
    pb_figure(r, "noop_array_per_s", rate_arr, "tasks/s", PB_NONE, 0,
              "no-op array map, %u workers, auto-batched", workers);
    pb_figure(r, "noop_array_vs_threads", rate_arr / rate_thr, "x", PB_AT_LEAST, 0.5,
              "auto-batched no-op array map / pthreads on an atomic counter");
}

int pb_overhead(const struct pb_opts *o, struct pb_report *r)
{
    unsigned workers = o->workers ? o->workers : 2;
    static const double defaults[] = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 100, 1000, 10000};
    int nd = o->ndurations ? (int)o->ndurations : (int)(sizeof(defaults) / sizeof(defaults[0]));
    const double *dur = o->ndurations ? o->durations : defaults;
    double budget_ns = (o->budget_ms ? o->budget_ms : 60) * 1e6;
    unsigned repeat = o->repeat ? o->repeat : 2;

    double ns_iter = pb_calibrate();
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double cap = pb_capacity(cpus > 1 ? cpus : 2);
    struct pb_pard p;
    pb_progress(o, "overhead: starting pard with %u workers", workers);
    if (pb_pard_start(&p, o, workers) != 0)
        return -1;
    int status = 0;
    noop_table(o, r, &p, workers, &status);
    if (o->noop_only || status != 0) {
        pb_pard_stop(&p);
        return status;
    }

    static const struct pb_col cols[] = {
        {"task_us", "task us", 2},
        {"tasks", "tasks", 0},
        {"serial_ns", "serial ns/task", 1},
        {"unbatched_ns", "unbatched ns/task", 1},
        {"auto_ns", "auto ns/task", 1},
        {"threads_ns", "threads ns/task", 1},
        {"speedup_unbatched", "speedup unbatched", 2},
        {"speedup_auto", "speedup auto", 2},
        {"speedup_threads", "speedup threads", 2},
    };
    char title[160];
    snprintf(title, sizeof(title),
             "Short tasks: speedup of %u workers over the serial loop, by task duration", workers);
    struct pb_table *t = pb_table_new(r, "sweep", title, cols, 9);
    t->plot.x = 0;
    t->plot.y[0] = 6;
    t->plot.y[1] = 7;
    t->plot.y[2] = 8;
    t->plot.ny = 3;
    t->plot.logx = true;
    t->plot.xlabel = "task duration (us)";
    t->plot.ylabel = "speedup over the serial loop";

    double su_unb[PB_MAX_LIST], su_auto[PB_MAX_LIST];
    for (int i = 0; i < nd && status == 0; i++) {
        double d_ns = dur[i] * 1e3;
        uint64_t iters = pb_iters_for_ns(d_ns);
        double real_ns = (double)iters * ns_iter; /* what the rounding gave */
        uint64_t n = (uint64_t)(budget_ns / real_ns);
        n = n < 8 * workers ? 8 * workers : n > 1000000 ? 1000000 : n;
        /* Unbatched pays about a microsecond per task: keep it short. */
        uint64_t n_unb = n > 100000 ? 100000 : n;
        pb_progress(o, "overhead: %.2f us tasks x %llu", dur[i], (unsigned long long)n);
        double s = INFINITY, th = INFINITY, unb = INFINITY, aut = INFINITY;
        for (unsigned k = 0; k < repeat && status == 0; k++) {
            double x = serial_ns(n, iters);
            if (x < s)
                s = x;
            x = threads_ns(workers, n, iters, task_busy);
            if (x < th)
                th = x;
            struct pb_map_run a = {.fn = PB_FN_BUSY,
                                   .tasks = n_unb,
                                   .iters = iters,
                                   .batch = 1,
                                   .mode = PARD_WAIT_ADAPTIVE,
                                   .max_workers = workers};
            if (map_best(&p, &a, &unb) != 0)
                status = -1;
            struct pb_map_run b = {.fn = PB_FN_BUSY,
                                   .tasks = n,
                                   .iters = iters,
                                   .batch = PARD_BATCH_AUTO,
                                   .mode = PARD_WAIT_ADAPTIVE,
                                   .max_workers = workers};
            if (status == 0 && map_best(&p, &b, &aut) != 0)
                status = -1;
        }
        double serial_per = s / (double)n;
        int row = pb_row(t);
        pb_set_num(t, row, 0, dur[i]);
        pb_set_num(t, row, 1, (double)n);
        pb_set_num(t, row, 2, serial_per);
        pb_set_num(t, row, 3, unb / (double)n_unb);
        pb_set_num(t, row, 4, aut / (double)n);
        pb_set_num(t, row, 5, th / (double)n);
        su_unb[i] = serial_per / (unb / (double)n_unb);
        su_auto[i] = serial_per / (aut / (double)n);
        pb_set_num(t, row, 6, su_unb[i]);
        pb_set_num(t, row, 7, su_auto[i]);
        pb_set_num(t, row, 8, serial_per / (th / (double)n));
    }
    pb_pard_stop(&p);
    if (status != 0)
        return status;
    pb_table_note(t,
                  "Busy work calibrated at %.3f ns per iteration; best of %u interleaved runs. "
                  "Unbatched runs use at most 100000 tasks; speedup compares time per task. "
                  "Parallel capacity at the start: %.2f CPUs (%d means an idle machine).",
                  ns_iter, repeat, cap, cpus);
    bool bound_a, bound_u;
    int dips_a, dips_u;
    double be_auto = break_even(dur, su_auto, nd, &bound_a, &dips_a);
    double be_unb = break_even(dur, su_unb, nd, &bound_u, &dips_u);
    pb_figure(r, "capacity_cpus", cap, "CPUs", PB_NONE, 0,
              "parallel capacity measured at the start (2 busy threads against one)");
    pb_figure(r, "break_even_auto_us", be_auto, "us", PB_AT_MOST, 0.25,
              "break-even task duration, %u workers, auto-batched%s", workers,
              bound_a ? " (already faster at the shortest)" : "");
    pb_figure(r, "break_even_unbatched_us", be_unb, "us", PB_AT_MOST, 2.0,
              "break-even task duration, %u workers, unbatched%s", workers,
              bound_u ? " (already faster at the shortest)" : "");
    if (!isfinite(be_auto) || !isfinite(be_unb))
        pb_note(r, "A break-even of '-' means the map never beat the serial loop in this sweep.");
    if (dips_a || dips_u)
        pb_note(r,
                "Above the break-even, %d auto-batched and %d unbatched points fell below 1 "
                "again: with tasks that long the overhead is negligible, so that is the "
                "machine being busy (see the threads column) rather than pard.",
                dips_a, dips_u);
    return 0;
}
