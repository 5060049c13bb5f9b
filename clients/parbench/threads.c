/*
 * threads.c — `parbench threads`: threads against processes, and why a
 * global lock (Python's GIL) makes threads useless for CPU work.
 *
 * Owns: four workloads, each run by 1, CPUs and 4 x CPUs threads and by as
 * many processes, which take units of work from one shared atomic counter:
 *
 *   cpu           units of 100 us of pb_busy work (--duration ms in all)
 *   io            units that sleep 1 ms, like a blocking read
 *   cpu + global lock   each unit computes while holding one lock, as
 *                 CPython's threads hold the GIL. Threads share the one
 *                 lock; processes each have their own (each Python process
 *                 has its own interpreter and GIL).
 *   io + global lock    the lock is dropped around the sleep, as CPython
 *                 drops the GIL around blocking I/O
 *
 * Speedup is against one thread (or one process) of the same workload.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

enum workload { W_CPU, W_IO, W_CPU_GIL, W_IO_GIL, W_COUNT };

static const char *const wl_name[W_COUNT] = {
    [W_CPU] = "cpu-bound",
    [W_IO] = "io-bound",
    [W_CPU_GIL] = "cpu-bound, global lock",
    [W_IO_GIL] = "io-bound, global lock",
};

struct shared {
    _Alignas(PARD_CACHELINE) _Atomic uint64_t next; /* next unit */
    _Alignas(PARD_CACHELINE) pthread_mutex_t gil;   /* the global lock (threads) */
    uint64_t units;
    uint64_t iters; /* cpu: per unit */
    int64_t io_ns;  /* io: per unit */
    enum workload wl;
};

struct runner {
    struct shared *sh;
    pthread_mutex_t *lock; /* the global lock this runner obeys */
};

static void *work(void *arg)
{
    struct runner *rn = arg;
    struct shared *sh = rn->sh;
    bool gil = sh->wl == W_CPU_GIL || sh->wl == W_IO_GIL;
    bool io = sh->wl == W_IO || sh->wl == W_IO_GIL;
    if (gil)
        pthread_mutex_lock(rn->lock);
    for (;;) {
        uint64_t i = atomic_fetch_add_explicit(&sh->next, 1, memory_order_relaxed);
        if (i >= sh->units)
            break;
        if (io) {
            /* Blocking I/O: a GIL would be released around it. */
            if (gil)
                pthread_mutex_unlock(rn->lock);
            pb_sleep_ns(sh->io_ns);
            if (gil)
                pthread_mutex_lock(rn->lock);
        } else {
            pb_busy(sh->iters);
            if (gil) {
                /* CPython hands the GIL over between bytecodes now and
                 * then; this is that moment. */
                pthread_mutex_unlock(rn->lock);
                pthread_mutex_lock(rn->lock);
            }
        }
    }
    if (gil)
        pthread_mutex_unlock(rn->lock);
    return NULL;
}

/* Run the workload with n threads or processes; returns ns or a negative. */
static double run(struct shared *sh, int n, bool procs)
{
    atomic_store(&sh->next, 0);
    pthread_t th[PB_MAX_WORKERS * 4];
    struct runner rn[PB_MAX_WORKERS * 4];
    pid_t pid[PB_MAX_WORKERS * 4];
    int started = 0;
    pid_t parent = getpid();
    int64_t t0 = pard_now_ns();
    for (int i = 0; i < n; i++) {
        rn[i] = (struct runner){.sh = sh, .lock = &sh->gil};
        if (procs) {
            pid[i] = fork();
            if (pid[i] == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                    _exit(1);
                /* A process of its own: a lock of its own. */
                pthread_mutex_t own = PTHREAD_MUTEX_INITIALIZER;
                rn[i].lock = &own;
                work(&rn[i]);
                _exit(0);
            }
            if (pid[i] < 0)
                break;
        } else if (pthread_create(&th[i], NULL, work, &rn[i]) != 0) {
            break;
        }
        started++;
    }
    bool ok = started == n;
    for (int i = 0; i < started; i++) {
        if (procs) {
            int status;
            ok &= waitpid(pid[i], &status, 0) == pid[i] && WIFEXITED(status) &&
                  WEXITSTATUS(status) == 0;
        } else {
            pthread_join(th[i], NULL);
        }
    }
    double dt = (double)(pard_now_ns() - t0);
    return ok ? dt : -1;
}

int pb_threads(const struct pb_opts *o, struct pb_report *r)
{
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    int n = o->workers ? (int)o->workers : cpus;
    int counts[3] = {1, n, 4 * n};
    int ncounts = n == 1 ? 2 : 3;
    if (n == 1)
        counts[1] = 4;
    for (int i = 0; i < ncounts; i++)
        if (counts[i] > PB_MAX_WORKERS * 4)
            counts[i] = PB_MAX_WORKERS * 4;
    double ms = o->duration_ms ? o->duration_ms : 200;

    struct shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    memset(sh, 0, sizeof(*sh));
    pthread_mutex_init(&sh->gil, NULL);
    uint64_t unit_ns = 100000; /* 100 us of CPU per unit */
    sh->iters = pb_iters_for_ns((double)unit_ns);
    sh->io_ns = 1000000; /* 1 ms per I/O unit */

    static const struct pb_col cols[] = {
        {"workload", "workload", -1}, {"by", "run by", -1},      {"n", "n", 0},
        {"seconds", "seconds", 4},    {"speedup", "speedup", 2},
    };
    struct pb_table *t = pb_table_new(
        r, "threads", "Threads against processes, with and without a global lock", cols, 5);
    t->plot.x = 2;
    t->plot.y[0] = 4;
    t->plot.ny = 1;
    t->plot.series = 0;
    t->plot.series2 = 1;
    t->plot.xlabel = "threads or processes";
    t->plot.ylabel = "speedup over one";

    double cap = pb_capacity(cpus);
    pb_progress(o, "threads: 4 workloads x threads and processes x %d counts", ncounts);
    int status = 0;
    double gil_threads = 0, gil_procs = 0, cpu_threads = 0;
    for (int w = 0; w < W_COUNT; w++) {
        sh->wl = (enum workload)w;
        bool io = w == W_IO || w == W_IO_GIL;
        /* I/O units are 1 ms: fewer of them, so each workload takes about as
         * long alone. */
        sh->units = io ? (uint64_t)(ms / 2) : (uint64_t)(ms * 1e6 / (double)unit_ns);
        if (sh->units < (uint64_t)(4 * n))
            sh->units = (uint64_t)(4 * n);
        for (int p = 0; p < 2; p++) {
            double one = 0;
            for (int c = 0; c < ncounts; c++) {
                double dt = run(sh, counts[c], p == 1);
                if (dt < 0) {
                    pb_note(r, "%s with %d %s could not run", wl_name[w], counts[c],
                            p ? "processes" : "threads");
                    status = -1;
                    continue;
                }
                if (c == 0)
                    one = dt;
                int row = pb_row(t);
                char by[48];
                snprintf(by, sizeof(by), "%s%s", p ? "processes" : "threads",
                         p && (w == W_CPU_GIL || w == W_IO_GIL) ? " (a lock each)" : "");
                pb_set_str(t, row, 0, wl_name[w]);
                pb_set_str(t, row, 1, by);
                pb_set_num(t, row, 2, counts[c]);
                pb_set_num(t, row, 3, dt / 1e9);
                pb_set_num(t, row, 4, one / dt);
                if (c == 1 && w == W_CPU_GIL)
                    *(p ? &gil_procs : &gil_threads) = one / dt;
                if (c == 1 && w == W_CPU && p == 0)
                    cpu_threads = one / dt;
            }
        }
    }
    pb_table_note(t,
                  "%d CPUs; parallel capacity during the run %.2f CPUs. cpu units are 100 us of "
                  "busy work, io units sleep 1 ms. With the global lock, threads take turns: "
                  "CPU work gets no faster, while sleeping (I/O) still overlaps.",
                  cpus, cap);
    pb_figure(r, "cpu_threads_speedup", cpu_threads, "x", PB_NONE, 0,
              "CPU-bound, %d threads, speedup", n);
    pb_figure(r, "gil_threads_speedup", gil_threads, "x", PB_NONE, 0,
              "CPU-bound with a global lock, %d threads, speedup", n);
    pb_figure(r, "gil_processes_speedup", gil_procs, "x", PB_NONE, 0,
              "CPU-bound with a lock per process, %d processes, speedup", n);
    pb_figure(r, "capacity_cpus", cap, "CPUs", PB_NONE, 0,
              "parallel capacity measured at the start (2 busy threads against one)");
    pthread_mutex_destroy(&sh->gil);
    munmap(sh, sizeof(*sh));
    return status;
}
