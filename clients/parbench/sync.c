/*
 * sync.c — `parbench sync`: what synchronisation costs, alone and under
 * contention, between threads and between processes; and false sharing.
 *
 * Owns: the shared block the contenders work on (a MAP_SHARED anonymous
 * mapping, so the same code serves threads and forked processes), the
 * primitives, and the timed runs.
 *
 * Method. n contenders (threads, or processes forked for the run) wait for
 * a start flag, then repeat one operation on one shared counter until a
 * stop flag, counting; each does at least MIN_OPS operations, so that a
 * contender the scheduler left without a CPU for the whole window (a busy
 * machine, a short --duration) still has a rate. Every operation adds one
 * to the counter, so the counter must equal the sum of the counts
 * afterwards: the `ok` column checks that each primitive really excluded
 * the others. "ns/op" is the time one contender spends per operation
 * (elapsed / its count, averaged), "Mops/s" the total rate.
 *
 * Primitives: atomic add (lock xadd), compare-and-swap loop, a
 * test-and-test-and-set spinlock with a pause hint, a process-shared
 * pthread mutex, a process-shared POSIX semaphore used as a lock.
 *
 * Must not: leave children behind (PDEATHSIG; each run reaps its own).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
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

#define MAXC    256 /* most contenders */
#define MIN_OPS 100 /* operations every contender does, however late it starts */

enum op { OP_ADD, OP_CAS, OP_SPIN, OP_MUTEX, OP_SEM, OP_PACKED, OP_PADDED, OP_COUNT };

static const char *const op_name[OP_COUNT] = {
    [OP_ADD] = "atomic add",
    [OP_CAS] = "compare-and-swap loop",
    [OP_SPIN] = "spinlock",
    [OP_MUTEX] = "pthread mutex",
    [OP_SEM] = "POSIX semaphore",
    [OP_PACKED] = "own counter, packed in one line",
    [OP_PADDED] = "own counter, padded to a line",
};

struct line {
    _Alignas(PARD_CACHELINE) _Atomic uint64_t v;
};

struct result {
    _Alignas(PARD_CACHELINE) uint64_t ops;
    int64_t ns;
};

struct sync_shared {
    _Alignas(PARD_CACHELINE) _Atomic uint64_t counter;      /* what every primitive protects */
    _Alignas(PARD_CACHELINE) _Atomic uint32_t spin;         /* the spinlock word */
    _Alignas(PARD_CACHELINE) pthread_mutex_t mutex;         /* process-shared */
    _Alignas(PARD_CACHELINE) sem_t sem;                     /* process-shared, value 1 */
    _Alignas(PARD_CACHELINE) _Atomic int ready;             /* contenders at the start line */
    _Alignas(PARD_CACHELINE) _Atomic int go;                /* start */
    _Atomic int stop;                                       /* read-mostly: shares go's line */
    _Alignas(PARD_CACHELINE) _Atomic uint64_t packed[MAXC]; /* false sharing: adjacent */
    struct line padded[MAXC];                               /* one line each */
    struct result res[MAXC];
};

struct contender {
    struct sync_shared *sh;
    enum op op;
    int index;
    bool pin; /* pin contender i to CPU i (false sharing needs two cores) */
};

static void spin_lock(_Atomic uint32_t *w)
{
    for (;;) {
        /* Acquire: the critical section's reads come after taking it. */
        if (!atomic_exchange_explicit(w, 1, memory_order_acquire))
            return;
        /* Wait on a plain load so the line stays shared while it is held. */
        while (atomic_load_explicit(w, memory_order_relaxed))
            pard_cpu_relax();
    }
}

static void spin_unlock(_Atomic uint32_t *w)
{
    /* Release: the critical section's writes come before the lock is free. */
    atomic_store_explicit(w, 0, memory_order_release);
}

/* The counter inside a lock: a plain read-modify-write (relaxed atomics
 * only so that the compiler keeps it in memory). */
static inline void bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void *contend(void *arg)
{
    struct contender *k = arg;
    struct sync_shared *sh = k->sh;
    if (k->pin)
        pb_pin_cpu(k->index);
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load_explicit(&sh->go, memory_order_acquire))
        sched_yield();
    uint64_t ops = 0;
    int64_t t0 = pard_now_ns();
    _Atomic uint64_t *own = k->op == OP_PACKED ? &sh->packed[k->index] : &sh->padded[k->index].v;
    /* At least MIN_OPS operations, even past the stop flag: on a busy
     * machine a contender may get no CPU during the whole window, and a
     * rate needs operations to time. */
    while (ops < MIN_OPS || !atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        switch (k->op) {
        case OP_ADD:
            atomic_fetch_add_explicit(&sh->counter, 1, memory_order_relaxed);
            break;
        case OP_CAS: {
            uint64_t v = atomic_load_explicit(&sh->counter, memory_order_relaxed);
            while (!atomic_compare_exchange_weak_explicit(
                &sh->counter, &v, v + 1, memory_order_relaxed, memory_order_relaxed))
                ;
            break;
        }
        case OP_SPIN:
            spin_lock(&sh->spin);
            bump(&sh->counter);
            spin_unlock(&sh->spin);
            break;
        case OP_MUTEX:
            pthread_mutex_lock(&sh->mutex);
            bump(&sh->counter);
            pthread_mutex_unlock(&sh->mutex);
            break;
        case OP_SEM:
            while (sem_wait(&sh->sem) != 0 && errno == EINTR)
                ;
            bump(&sh->counter);
            sem_post(&sh->sem);
            break;
        case OP_PACKED:
        case OP_PADDED:
            /* Each contender its own counter; only the layout differs. */
            bump(own);
            break;
        case OP_COUNT:
            break;
        }
        ops++;
    }
    sh->res[k->index].ops = ops;
    sh->res[k->index].ns = pard_now_ns() - t0;
    return NULL;
}

struct outcome {
    double ns_per_op; /* per contender */
    double mops;      /* total, millions per second */
    bool ok;          /* the counter matches */
};

static void reset(struct sync_shared *sh)
{
    atomic_store(&sh->counter, 0);
    atomic_store(&sh->spin, 0);
    atomic_store(&sh->ready, 0);
    atomic_store(&sh->go, 0);
    atomic_store(&sh->stop, 0);
    memset((void *)sh->packed, 0, sizeof(sh->packed));
    memset((void *)sh->padded, 0, sizeof(sh->padded));
    memset(sh->res, 0, sizeof(sh->res));
}

/* One timed run of `op` by n contenders (threads or processes). */
static int run_pinned(struct sync_shared *sh, enum op op, int n, bool procs, bool pin, double ms,
                      struct outcome *out)
{
    reset(sh);
    struct contender k[MAXC];
    pthread_t th[MAXC];
    pid_t pid[MAXC];
    int started = 0;
    pid_t parent = getpid();
    for (int i = 0; i < n; i++) {
        k[i] = (struct contender){.sh = sh, .op = op, .index = i, .pin = pin};
        if (procs) {
            pid[i] = fork();
            if (pid[i] == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                    _exit(1);
                contend(&k[i]);
                _exit(0);
            }
            if (pid[i] < 0)
                break;
        } else if (pthread_create(&th[i], NULL, contend, &k[i]) != 0) {
            break;
        }
        started++;
    }
    if (started == n) {
        while (atomic_load(&sh->ready) < n)
            sched_yield();
        atomic_store_explicit(&sh->go, 1, memory_order_release);
        pb_sleep_ns((int64_t)(ms * 1e6));
        atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
    } else {
        /* Could not start them all: let the started ones go and end. */
        atomic_store(&sh->stop, 1);
        atomic_store(&sh->go, 1);
    }
    int rc = started == n ? 0 : -1;
    for (int i = 0; i < started; i++) {
        if (procs) {
            int status;
            if (waitpid(pid[i], &status, 0) != pid[i] || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                rc = -1;
        } else {
            pthread_join(th[i], NULL);
        }
    }
    if (rc != 0)
        return rc;
    uint64_t total = 0;
    double secs = 0;
    for (int i = 0; i < n; i++) {
        total += sh->res[i].ops;
        secs += (double)sh->res[i].ns / 1e9;
    }
    /* The total rate over the mean time a contender ran; ns/op is the same
     * rate seen by one contender (n / rate), so the two columns agree. */
    secs /= n;
    out->mops = secs > 0 && total ? (double)total / secs / 1e6 : NAN;
    out->ns_per_op = n * 1e3 / out->mops;
    if (op == OP_PACKED || op == OP_PADDED) {
        out->ok = true;
        for (int i = 0; i < n; i++) {
            uint64_t v =
                op == OP_PACKED ? atomic_load(&sh->packed[i]) : atomic_load(&sh->padded[i].v);
            out->ok &= v == sh->res[i].ops;
        }
    } else {
        out->ok = atomic_load(&sh->counter) == total;
    }
    return 0;
}

static int run(struct sync_shared *sh, enum op op, int n, bool procs, double ms,
               struct outcome *out)
{
    return run_pinned(sh, op, n, procs, false, ms, out);
}

int pb_sync(const struct pb_opts *o, struct pb_report *r)
{
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    int maxn = o->threads ? (int)o->threads : 4;
    if (maxn > MAXC)
        maxn = MAXC;
    double ms = o->duration_ms ? o->duration_ms : 60;

    struct sync_shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        fprintf(stderr, "parbench: sync: mmap: %s\n", strerror(errno));
        return -1;
    }
    memset(sh, 0, sizeof(*sh));
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&sh->mutex, &ma);
    pthread_mutexattr_destroy(&ma);
    sem_init(&sh->sem, 1, 1);

    static const struct pb_col cols[] = {
        {"primitive", "primitive", -1}, {"by", "contenders are", -1}, {"n", "n", 0},
        {"ns_per_op", "ns/op", 1},      {"mops", "Mops/s total", 2},  {"vs_alone", "x alone", 1},
        {"ok", "counter ok", -1},
    };
    struct pb_table *t =
        pb_table_new(r, "sync", "Synchronisation: one shared counter, alone and contended", cols,
                     (int)(sizeof(cols) / sizeof(cols[0])));
    t->plot.x = 2;
    t->plot.y[0] = 3;
    t->plot.ny = 1;
    t->plot.series = 0;
    t->plot.exclude_col = 1; /* threads only: processes behave alike */
    t->plot.exclude_val = "processes";
    t->plot.logy = true;
    t->plot.xlabel = "contending threads";
    t->plot.ylabel = "ns per operation (per thread)";

    int ns_list[8], nn = 0;
    for (int n = 1; n <= maxn && nn < 8; n *= 2)
        ns_list[nn++] = n;
    if (ns_list[nn - 1] != maxn && nn < 8)
        ns_list[nn++] = maxn;

    int status = 0;
    double alone[OP_COUNT] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    pb_progress(o, "sync: 5 primitives, 1 to %d threads and processes, %.0f ms each", maxn, ms);
    for (int p = 0; p < 2; p++) {
        bool procs = p == 1;
        for (int op = OP_ADD; op <= OP_SEM; op++) {
            for (int i = 0; i < nn; i++) {
                int n = ns_list[i];
                if (n == 1 && procs)
                    continue; /* alone, a process is a thread */
                struct outcome out;
                if (run(sh, (enum op)op, n, procs, ms, &out) != 0) {
                    pb_note(r, "%s with %d %s: could not start the contenders", op_name[op], n,
                            procs ? "processes" : "threads");
                    status = -1;
                    continue;
                }
                if (n == 1)
                    alone[op] = out.ns_per_op;
                int row = pb_row(t);
                pb_set_str(t, row, 0, op_name[op]);
                pb_set_str(t, row, 1, n == 1 ? "alone" : procs ? "processes" : "threads");
                pb_set_num(t, row, 2, n);
                pb_set_num(t, row, 3, out.ns_per_op);
                pb_set_num(t, row, 4, out.mops);
                pb_set_num(t, row, 5, out.ns_per_op / alone[op]);
                pb_set_str(t, row, 6, out.ok ? "yes" : "NO");
                if (!out.ok)
                    status = -1;
            }
        }
    }
    pb_table_note(t,
                  "%d CPUs. With more contenders than CPUs a spinlock's holder can be "
                  "preempted while the others spin out their time slices; a mutex or a "
                  "semaphore puts the waiters to sleep instead.",
                  cpus);

    /* False sharing: each thread its own counter, packed or padded. */
    static const struct pb_col fcols[] = {
        {"layout", "layout", -1},    {"n", "threads", 0},         {"ns_per_op", "ns/op", 2},
        {"mops", "Mops/s total", 1}, {"slowdown", "x padded", 2}, {"ok", "counters ok", -1},
    };
    struct pb_table *f = pb_table_new(
        r, "false_sharing",
        "False sharing: every thread increments its own counter; only the memory layout differs",
        fcols, (int)(sizeof(fcols) / sizeof(fcols[0])));
    f->plot.x = 0;
    f->plot.y[0] = 2;
    f->plot.ny = 1;
    f->plot.ylabel = "ns per increment";
    int fn = maxn < cpus ? maxn : cpus;
    if (fn < 2)
        fn = 2;
    struct outcome packed = {0}, padded = {0};
    /* Interleave the two layouts, best of three each. */
    packed.ns_per_op = padded.ns_per_op = INFINITY;
    for (int k = 0; k < 3; k++) {
        struct outcome a, b;
        if (run_pinned(sh, OP_PADDED, fn, false, true, ms / 2, &b) != 0 ||
            run_pinned(sh, OP_PACKED, fn, false, true, ms / 2, &a) != 0) {
            status = -1;
            break;
        }
        if (a.ns_per_op < packed.ns_per_op)
            packed = a;
        if (b.ns_per_op < padded.ns_per_op)
            padded = b;
    }
    double slow = packed.ns_per_op / padded.ns_per_op;
    const struct outcome *rows[2] = {&padded, &packed};
    static const char *const names[2] = {"padded (a line each)", "packed (one line)"};
    for (int i = 0; i < 2; i++) {
        int row = pb_row(f);
        pb_set_str(f, row, 0, names[i]);
        pb_set_num(f, row, 1, fn);
        pb_set_num(f, row, 2, rows[i]->ns_per_op);
        pb_set_num(f, row, 3, rows[i]->mops);
        pb_set_num(f, row, 4, rows[i]->ns_per_op / padded.ns_per_op);
        pb_set_str(f, row, 5, rows[i]->ok ? "yes" : "NO");
    }
    pb_table_note(f, "Best of 3 interleaved runs, thread i pinned to CPU i. The counters share "
                     "nothing logically, yet packed in one cache line they move between cores on "
                     "every write.");
    pb_figure(r, "false_sharing_slowdown", slow, "x", PB_NONE, 0,
              "false sharing: packed counters / padded counters, ns per increment (%d threads)",
              fn);
    pb_figure(r, "atomic_add_alone_ns", alone[OP_ADD], "ns", PB_NONE, 0, "uncontended atomic add");
    pb_figure(r, "mutex_alone_ns", alone[OP_MUTEX], "ns", PB_NONE, 0,
              "uncontended pthread mutex lock + unlock");

    pthread_mutex_destroy(&sh->mutex);
    sem_destroy(&sh->sem);
    munmap(sh, sizeof(*sh));
    return status;
}
