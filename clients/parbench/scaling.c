/*
 * scaling.c — `parbench scaling`: speedup against the number of workers,
 * and Amdahl's law fitted to it.
 *
 * Owns: two workloads run through a private pard with 1..N workers:
 *   cpu-bound  tasks of --task-us of pb_busy work (default 1 ms), about
 *              --budget ms of serial work in all;
 *   amdahl     the same total work, of which a fraction --serial (default
 *              0.25) runs in the submitter before the map: a serial part no
 *              number of workers can shorten.
 * Speedup is the serial loop's time over the map's (job start included).
 * The CPU-bound workload runs a second time in block wait mode, to show
 * what the adaptive mode's spinning submitter costs when there are no more
 * cores than workers.
 *
 * Amdahl's law: S(n) = 1 / (f + (1 - f) / n). Rewritten as
 * 1/S - 1/n = f (1 - 1/n), it is linear in f, and the least-squares f over
 * the points is sum(x y) / sum(x x) with x = 1 - 1/n, y = 1/S - 1/n. Only
 * points with n <= CPUs are fitted: past that, workers share cores and the
 * plateau is not a serial part.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static double amdahl_fit(const int *n, const double *s, int count, int cpus)
{
    double sxy = 0, sxx = 0;
    for (int i = 0; i < count; i++) {
        if (n[i] < 2 || n[i] > cpus || !isfinite(s[i]) || s[i] <= 0)
            continue;
        double x = 1.0 - 1.0 / n[i], y = 1.0 / s[i] - 1.0 / n[i];
        sxy += x * y;
        sxx += x * x;
    }
    return sxx > 0 ? sxy / sxx : NAN;
}

static double amdahl(double f, int n)
{
    return 1.0 / (f + (1.0 - f) / n);
}

int pb_scaling(const struct pb_opts *o, struct pb_report *r)
{
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    int maxw = o->workers ? (int)o->workers : cpus;
    if (maxw > PB_MAX_WORKERS)
        maxw = PB_MAX_WORKERS;
    double task_us = o->task_us ? o->task_us : 1000;
    double budget_ns = (o->budget_ms ? o->budget_ms : 400) * 1e6;
    double f0 = o->serial > 0 ? o->serial : 0.25;
    unsigned repeat = o->repeat ? o->repeat : 2;

    uint64_t iters = pb_iters_for_ns(task_us * 1e3);
    double task_ns = (double)iters * pb_calibrate();
    uint64_t n_tasks = (uint64_t)(budget_ns / task_ns);
    if (n_tasks < (uint64_t)(4 * maxw))
        n_tasks = (uint64_t)(4 * maxw);
    /* The Amdahl workload: the same total, a fraction f0 of it serial. */
    uint64_t n_par = (uint64_t)llround((double)n_tasks * (1 - f0));
    if (n_par < 1)
        n_par = 1;
    uint64_t serial_iters = (uint64_t)llround((double)iters * (double)n_tasks * f0);

    double cap = pb_capacity(cpus);
    struct pb_pard p;
    pb_progress(o, "scaling: starting pard with %d workers", maxw);
    if (pb_pard_start(&p, o, (unsigned)maxw) != 0)
        return -1;

    int ns[PB_MAX_WORKERS];
    double t_cpu[PB_MAX_WORKERS], t_am[PB_MAX_WORKERS], t_blk[PB_MAX_WORKERS];
    for (int w = 0; w < maxw; w++) {
        ns[w] = w + 1;
        t_cpu[w] = t_am[w] = t_blk[w] = INFINITY;
    }
    double serial = INFINITY;
    int status = 0;
    pb_progress(o, "scaling: %llu tasks of %.0f us, 1 to %d workers, best of %u",
                (unsigned long long)n_tasks, task_us, maxw, repeat);
    for (unsigned k = 0; k < repeat && status == 0; k++) {
        int64_t t0 = pard_now_ns();
        for (uint64_t i = 0; i < n_tasks; i++)
            pb_busy(iters);
        double s = (double)(pard_now_ns() - t0);
        if (s < serial)
            serial = s;
        for (int w = 0; w < maxw && status == 0; w++) {
            struct pb_map_run run = {.fn = PB_FN_BUSY,
                                     .tasks = n_tasks,
                                     .iters = iters,
                                     .batch = PARD_BATCH_AUTO,
                                     .mode = PARD_WAIT_ADAPTIVE,
                                     .max_workers = (uint32_t)ns[w]};
            if (pb_pard_map(&p, &run) != 0) {
                status = -1;
                break;
            }
            if (run.elapsed_ns < t_cpu[w])
                t_cpu[w] = run.elapsed_ns;
            /* Amdahl: the serial part here, then the parallel part. */
            t0 = pard_now_ns();
            pb_busy(serial_iters);
            run.tasks = n_par;
            if (pb_pard_map(&p, &run) != 0) {
                status = -1;
                break;
            }
            double t = (double)(pard_now_ns() - t0);
            if (t < t_am[w])
                t_am[w] = t;
            /* CPU-bound again, with the submitter and workers blocking
             * at once instead of spinning first. */
            run.tasks = n_tasks;
            run.mode = PARD_WAIT_BLOCK;
            if (pb_pard_map(&p, &run) != 0) {
                status = -1;
                break;
            }
            if (run.elapsed_ns < t_blk[w])
                t_blk[w] = run.elapsed_ns;
        }
    }
    pb_pard_stop(&p);
    if (status != 0)
        return status;

    double s_cpu[PB_MAX_WORKERS], s_am[PB_MAX_WORKERS], s_blk[PB_MAX_WORKERS];
    for (int w = 0; w < maxw; w++) {
        s_cpu[w] = serial / t_cpu[w];
        s_am[w] = serial / t_am[w];
        s_blk[w] = serial / t_blk[w];
    }
    const double *tts[3] = {t_cpu, t_am, t_blk}, *sss[3] = {s_cpu, s_am, s_blk};
    double fs[3];
    for (int wl = 0; wl < 3; wl++)
        fs[wl] = amdahl_fit(ns, sss[wl], maxw, cpus);

    static const struct pb_col cols[] = {
        {"workload", "workload", -1},    {"workers", "workers", 0},
        {"seconds", "seconds", 4},       {"speedup", "speedup", 2},
        {"efficiency", "efficiency", 2}, {"amdahl_fit", "Amdahl fit", 2},
        {"ideal", "ideal", 0},
    };
    struct pb_table *t = pb_table_new(r, "scaling", "Speedup against the number of workers", cols,
                                      (int)(sizeof(cols) / sizeof(cols[0])));
    t->plot.x = 1;
    t->plot.y[0] = 3;
    t->plot.y[1] = 5;
    t->plot.ny = 2;
    t->plot.series = 0;
    t->plot.xlabel = "workers";
    t->plot.ylabel = "speedup over the serial loop";
    char names[3][64];
    snprintf(names[0], sizeof(names[0]), "cpu-bound");
    snprintf(names[1], sizeof(names[1]), "%.0f%% serial", f0 * 100);
    snprintf(names[2], sizeof(names[2]), "cpu-bound, block wait");
    for (int wl = 0; wl < 3; wl++) {
        const double *tt = tts[wl], *ss = sss[wl];
        double f = fs[wl];
        for (int w = 0; w < maxw; w++) {
            int row = pb_row(t);
            pb_set_str(t, row, 0, names[wl]);
            pb_set_num(t, row, 1, ns[w]);
            pb_set_num(t, row, 2, tt[w] / 1e9);
            pb_set_num(t, row, 3, ss[w]);
            pb_set_num(t, row, 4, ss[w] / ns[w]);
            pb_set_num(t, row, 5, isfinite(f) ? amdahl(f, ns[w]) : NAN);
            pb_set_num(t, row, 6, ns[w] < cpus ? ns[w] : cpus);
        }
    }
    pb_table_note(t,
                  "%llu tasks of %.0f us; the serial loop took %.3f s; best of %u. Maps wait in "
                  "the default adaptive mode, except \"block wait\": there the submitter sleeps "
                  "at once instead of spinning on a core the workers need. The Amdahl fit uses "
                  "workers <= %d CPUs. Parallel capacity during the run: %.2f CPUs (2 busy "
                  "threads against one; less than %d means other programs were running).",
                  (unsigned long long)n_tasks, task_us, serial / 1e9, repeat, cpus, cap, cpus);
    if (maxw >= 2)
        pb_figure(r, "cpu_speedup_2", s_cpu[1], "x", PB_AT_LEAST, 1.9,
                  "CPU-bound speedup with 2 workers");
    if (maxw >= 2)
        pb_figure(r, "cpu_speedup_2_block", s_blk[1], "x", PB_NONE, 0,
                  "CPU-bound speedup with 2 workers, block wait mode");
    pb_figure(r, "serial_fraction_cpu", fs[0], "", PB_NONE, 0,
              "Amdahl fit, CPU-bound: serial fraction");
    pb_figure(r, "serial_fraction_amdahl", fs[1], "", PB_NONE, 0,
              "Amdahl fit, workload with %.0f%% serial: serial fraction", f0 * 100);
    pb_figure(r, "capacity_cpus", cap, "CPUs", PB_NONE, 0,
              "parallel capacity measured during the run");
    if (maxw < 2)
        pb_note(r, "With one worker there is nothing to fit: use --workers 2 or more.");
    return 0;
}
