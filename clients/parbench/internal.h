/*
 * internal.h — parbench's private declarations.
 *
 * Design
 * ------
 * parbench measures what parallelism costs and prints it so that a newcomer
 * can read it. Every subcommand (latency.c, sync.c, overhead.c, scaling.c,
 * shm.c, threads.c, oversub.c) fills a report: tables of rows, headline
 * figures (each optionally checked against a target), latency histograms
 * and notes. output.c renders a report as a text table, JSON, CSV, a
 * gnuplot SVG or Markdown; no subcommand formats anything itself.
 *
 * Measurements that are compared with each other are taken in the same
 * run, interleaved where it matters, so that the noise of a shared machine
 * hits both sides alike: parbench reports ratios, not just absolutes.
 *
 * pard itself (overhead, scaling, oversub) runs against a private daemon
 * that harness.c starts from the `pard` binary found next to parbench,
 * with parbench's own `worker` subcommand as the workers, unless --socket
 * names a running daemon.
 */
#ifndef PARBENCH_INTERNAL_H
#define PARBENCH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pard/ipc.h"
#include "pard/pard.h"

#define PB_VERSION "0.2.0"

/* ======================================================================
 * Options (main.c)
 * ====================================================================== */

enum pb_format { PB_TEXT = 0, PB_JSON, PB_CSV };

#define PB_MAX_LIST 32

/* Flags shared by every subcommand; 0 means "the subcommand's default". */
struct pb_opts {
    enum pb_format format;
    const char *plot;     /* --plot FILE.svg */
    const char *markdown; /* --markdown FILE (all, or any subcommand) */
    const char *socket;   /* --socket: an existing daemon with parbench workers */
    bool quiet;           /* no progress on stderr */
    bool no_pin;          /* latency: do not pin the two processes to CPUs 0 and 1 */
    bool hist;            /* latency: print histograms in text output */
    bool noop_only;       /* overhead: only the no-op throughput table */
    unsigned workers;     /* worker processes or threads */
    unsigned threads;     /* sync: most contending threads/processes */
    unsigned repeat;      /* best-of / interleaved repetitions */
    uint64_t rounds;      /* latency: round trips per mechanism */
    uint64_t tasks;       /* task count where a subcommand uses a fixed one */
    double duration_ms;   /* time per measurement (sync, threads, oversub ping-pong) */
    double budget_ms;     /* overhead/scaling: serial time per point */
    double task_us;       /* scaling/oversub: task duration */
    double serial;        /* scaling: serial fraction of the Amdahl workload */
    unsigned nsizes;      /* --sizes: latency payload sizes in bytes */
    uint64_t sizes[PB_MAX_LIST];
    unsigned nblocks; /* --blocks: shm block sizes in bytes */
    uint64_t blocks[PB_MAX_LIST];
    unsigned ndurations; /* --durations: task durations in microseconds */
    double durations[PB_MAX_LIST];
    unsigned nonly; /* --only: mechanism keys to run (latency) */
    const char *only[PB_MAX_LIST];
    char *only_copy;   /* the storage of only[] */
    const char *argv0; /* how we were started (for the worker re-exec) */
    char cmdline[512]; /* the command line, for reports */
};

/* pb_progress - a line on stderr, unless --quiet. */
void pb_progress(const struct pb_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* pb_only - true when --only is empty or lists key. */
bool pb_only(const struct pb_opts *o, const char *key);

/* ======================================================================
 * Reports (output.c)
 * ====================================================================== */

#define PB_MAX_COLS   16
#define PB_MAX_TABLES 8
#define PB_MAX_FIGS   24
#define PB_MAX_HISTS  24
#define PB_MAX_NOTES  16
#define PB_MAX_PLOTY  8

struct pb_col {
    const char *key;  /* JSON/CSV name, [a-z0-9_] */
    const char *head; /* column heading in text */
    int prec;         /* decimals for numbers; -1 = a string column */
};

struct pb_cell {
    bool is_num;
    double num;
    char str[48];
};

/* How a table is plotted (--plot). */
struct pb_plot {
    int x;                   /* column index of x; <0 = not plotted */
    int y[PB_MAX_PLOTY];     /* columns plotted against x */
    int ny;                  /* how many */
    int series;              /* column whose value splits rows into lines; <0 = none */
    int series2;             /* a second such column (a line per pair of values); <0 = none */
    int exclude_col;         /* rows whose value here is exclude_val are not plotted */
    const char *exclude_val; /* */
    bool logx, logy;         /* log scales */
    const char *xlabel;      /* axis labels */
    const char *ylabel;      /* */
};

struct pb_table {
    char key[32];    /* JSON/CSV name */
    char title[160]; /* heading in text */
    char note[600];  /* printed under the table */
    int ncols;
    struct pb_col cols[PB_MAX_COLS];
    int nrows;
    int cap;
    struct pb_cell *cells; /* nrows * ncols */
    struct pb_plot plot;
};

enum pb_cmp { PB_NONE = 0, PB_AT_MOST, PB_AT_LEAST };

/* A headline number, optionally with the target it must meet. */
struct pb_figure {
    char key[48];   /* JSON name */
    char what[200]; /* what it is, in words */
    char unit[16];  /* "x", "us", "tasks/s" ... */
    double value;
    enum pb_cmp cmp;
    double target;
};

struct pb_histo {
    char name[64];
    struct pard_hist h;
};

struct pb_report {
    char command[16];
    char cmdline[512];
    int ntables;
    struct pb_table tables[PB_MAX_TABLES];
    int nfigs;
    struct pb_figure figs[PB_MAX_FIGS];
    int nhists;
    struct pb_histo *hists; /* PB_MAX_HISTS, heap (large) */
    int nnotes;
    char notes[PB_MAX_NOTES][400];
};

void pb_report_init(struct pb_report *r, const char *command, const struct pb_opts *o);
void pb_report_free(struct pb_report *r);

/* pb_table_new - add a table; columns from a list of {key, head, prec}. */
struct pb_table *pb_table_new(struct pb_report *r, const char *key, const char *title,
                              const struct pb_col *cols, int ncols);
/* pb_row - start a row; then set cells by column index. */
int pb_row(struct pb_table *t);
void pb_set_num(struct pb_table *t, int row, int col, double v);
void pb_set_str(struct pb_table *t, int row, int col, const char *s);
double pb_get_num(const struct pb_table *t, int row, int col);
const char *pb_get_str(const struct pb_table *t, int row, int col);
void pb_table_note(struct pb_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void pb_figure(struct pb_report *r, const char *key, double value, const char *unit,
               enum pb_cmp cmp, double target, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
void pb_hist_add(struct pb_report *r, const char *name, const struct pard_hist *h);
void pb_note(struct pb_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* pb_figure_met - whether a figure meets its target (true when it has none). */
bool pb_figure_met(const struct pb_figure *f);

/*
 * Rendering. pb_emit prints reports to stdout in o->format (several reports
 * come from `all`), then writes --plot and --markdown files. Returns 0, or
 * 1 when a file could not be written (the message is on stderr).
 */
int pb_emit(const struct pb_opts *o, struct pb_report *const *reps, int nreps);

/* ======================================================================
 * Machine, clocks, busy work (util.c)
 * ====================================================================== */

/* A short description of this machine: host, CPU model, CPUs, kernel. */
struct pb_machine {
    char host[64];
    char cpu[128];
    char kernel[96];
    int cpus;
};
void pb_machine_get(struct pb_machine *m);

/*
 * pb_busy - `iters` iterations of a dependent multiply-add chain that the
 * compiler cannot remove: the calibrated CPU work of every benchmark. The
 * same function runs in the serial loop, in threads and in pard workers
 * (parbench is its own worker), so the work is identical everywhere.
 */
uint64_t pb_busy(uint64_t iters);

/* pb_calibrate - nanoseconds per pb_busy iteration (the best of several
 * timed runs; cached after the first call). */
double pb_calibrate(void);

/* pb_iters_for_ns - iterations that take about ns nanoseconds. */
uint64_t pb_iters_for_ns(double ns);

/* pb_sleep_ns - nanosleep, restarted on EINTR. */
void pb_sleep_ns(int64_t ns);

/* Statistics over small arrays. */
double pb_median(double *v, int n); /* sorts v */
double pb_min(const double *v, int n);

/*
 * pb_capacity - how many CPUs' worth of work `threads` threads of pure CPU
 * work get right now: threads * (time of one) / (time of all at once),
 * best of three. Close to min(threads, CPUs) on an idle machine; lower when
 * other programs are running. Takes about 0.1 s.
 */
double pb_capacity(int threads);

/* pb_pin_cpu - pin the calling thread/process to one CPU (best effort). */
void pb_pin_cpu(int cpu);

/* Format a byte count as "64K", "1M"... into buf. */
const char *pb_size_str(uint64_t bytes, char *buf, size_t len);

/* ======================================================================
 * A private pard daemon and its workers (harness.c)
 * ====================================================================== */

#define PB_MAX_WORKERS 64

struct pb_pard {
    char dir[64];     /* private temp directory ("" for --socket) */
    char socket[160]; /* the daemon's socket */
    pid_t daemon;     /* 0 when we did not start it */
    pid_t workers[PB_MAX_WORKERS];
    unsigned nworkers;     /* workers we started */
    unsigned registered;   /* workers the daemon reports */
    struct pard_client *c; /* the submitter connection */
};

/*
 * pb_pard_start - start a private daemon (the `pard` binary next to
 * parbench in ../daemon/pard, else $PARD_DAEMON, else PATH) on a socket in
 * a fresh temp directory, and `nworkers` parbench workers, and connect.
 * With o->socket, connect to that daemon instead and start nothing.
 * Returns 0, or -1 with a message on stderr.
 */
int pb_pard_start(struct pb_pard *p, const struct pb_opts *o, unsigned nworkers);

/* pb_pard_stop - disconnect, SIGTERM the daemon we started, reap workers,
 * remove the directory. Safe on a partly started harness. */
void pb_pard_stop(struct pb_pard *p);

/* Which function a map runs. */
enum pb_fn { PB_FN_NOOP, PB_FN_BUSY };

struct pb_map_run {
    enum pb_fn fn;
    uint64_t tasks;
    uint64_t iters; /* busy: iterations per task */
    uint32_t batch; /* PARD_BATCH_AUTO or N */
    bool unordered; /* results as they finish, not in input order */
    enum pard_wait_mode mode;
    uint32_t max_workers; /* lanes; 0 = all */
    double limit_ms;      /* cancel the map at its first result after this long; 0 = never
                             (not with array) */
    bool array;           /* pard_map_array over 8-byte items (noop: the indices,
                             busy: the iterations), no results */
    /* out */
    double elapsed_ns; /* wall time of pard_map, job start included */
    uint64_t delivered;
    uint64_t failed;
    bool cancelled; /* stopped at limit_ms: 0 < delivered < tasks */
};

/* pb_pard_map - run one map; 0 or a negative pard error (printed). A map
 * stopped at its limit_ms returns 0 with run->cancelled set; it has
 * delivered at least one result (the limit is checked as results come). */
int pb_pard_map(struct pb_pard *p, struct pb_map_run *run);

/* pb_worker_main - the `parbench worker` subcommand. */
int pb_worker_main(int argc, char **argv);

/* ======================================================================
 * Subcommands
 * ====================================================================== */

int pb_latency(const struct pb_opts *o, struct pb_report *r);
int pb_sync(const struct pb_opts *o, struct pb_report *r);
int pb_overhead(const struct pb_opts *o, struct pb_report *r);
int pb_scaling(const struct pb_opts *o, struct pb_report *r);
int pb_shm(const struct pb_opts *o, struct pb_report *r);
int pb_threads(const struct pb_opts *o, struct pb_report *r);
int pb_oversub(const struct pb_opts *o, struct pb_report *r);

#endif
