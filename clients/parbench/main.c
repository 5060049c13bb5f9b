/*
 * main.c — parbench's command line: parse the flags, run one subcommand
 * (or `all`), hand the reports to output.c.
 *
 * Owns: flags, help text, exit status. Must not: measure or print results.
 *
 * Exit status: 0 ok, 1 a measurement or an output file failed, 2 a bad
 * command line.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct command {
    const char *name;
    int (*run)(const struct pb_opts *o, struct pb_report *r);
    const char *what;
};

static const struct command commands[] = {
    {"latency", pb_latency,
     "round trip between two processes: pard rings against a raw\n"
     "            cache line, futex, semaphore, pipe, sockets, eventfd, mqueue"},
    {"sync", pb_sync,
     "atomics, CAS, spinlock, mutex, semaphore, alone and contended;\n"
     "            false sharing"},
    {"overhead", pb_overhead,
     "short tasks: a pard map's speedup over the serial loop by task\n"
     "            duration, the break-even duration, no-op task rates"},
    {"scaling", pb_scaling, "speedup against the number of workers, with an Amdahl fit"},
    {"shm", pb_shm, "sharing a block (a pard region) against copying it"},
    {"threads", pb_threads, "threads against processes, and a global lock (Python's GIL)"},
    {"oversub", pb_oversub, "more workers than cores: spin against adaptive against block"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: parbench COMMAND [OPTION]...\n"
               "\n"
               "Measures what parallelism costs on this machine and prints tables a newcomer\n"
               "can read. Every comparison is measured within one run.\n"
               "\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].what);
    fprintf(f,
            "  all       every command above, one after the other (--markdown FILE for a "
            "report)\n"
            "  worker    serve `busy` and `noop` as a pard worker (used by the commands that\n"
            "            run pard; takes --socket PATH)\n"
            "\n"
            "Output:\n"
            "  --json             one JSON object on stdout\n"
            "  --csv              CSV tables on stdout (one block per table)\n"
            "  --plot FILE.svg    plot the tables with gnuplot (more tables: FILE-CMD-TABLE.svg;\n"
            "                     a .png name makes PNGs)\n"
            "  --markdown FILE    a Markdown report of the tables and headline figures\n"
            "  --hist             latency: print the histograms in text output\n"
            "  --quiet            no progress messages on stderr\n"
            "\n"
            "Sizes (each command has defaults that finish in about ten seconds):\n"
            "  --rounds N         latency: round trips per mechanism (default 4000)\n"
            "  --sizes LIST       latency: payload sizes in bytes, e.g. 8,256,4K (default 8)\n"
            "  --only LIST        latency: mechanisms to run, e.g. ring-spin,raw-line,futex\n"
            "  --no-pin           latency: let the scheduler place the two processes (by\n"
            "                     default they are pinned to CPUs 0 and 1)\n"
            "  --duration MS      sync, threads, oversub: time per measurement (a sync\n"
            "                     contender or a ping-pong pair that gets no CPU in that\n"
            "                     time still does a few operations, past the end)\n"
            "  --threads N        sync: most contending threads or processes (default 4)\n"
            "  --workers N        overhead: workers (default 2); scaling: most workers\n"
            "                     (default: CPUs); threads: workers (default: CPUs);\n"
            "                     oversub: many workers (default 8)\n"
            "  --durations LIST   overhead: task durations in microseconds\n"
            "                     (default 0.05,0.1,0.25,0.5,1,2,5,10,100,1000,10000)\n"
            "  --budget MS        overhead, scaling: serial time per point\n"
            "  --tasks N          overhead: no-op tasks; oversub: tasks per map\n"
            "  --task-us US       scaling: task duration (default 1000); oversub (default 10)\n"
            "  --serial F         scaling: serial fraction of the Amdahl workload (default 0.25)\n"
            "  --blocks LIST      shm: block sizes, e.g. 64K,1M,16M\n"
            "  --repeat N         repetitions (interleaved; best or median, as each table "
            "says)\n"
            "  --noop-only        overhead: only the no-op task rates (for bench/peers)\n"
            "  --socket PATH      use a running pard (with `parbench worker` workers) instead\n"
            "                     of a private one\n"
            "\n"
            "The commands that run pard start a private daemon: the `pard` beside parbench\n"
            "(../daemon/pard), else $PARD_DAEMON, else pard on the PATH.\n");
}

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("parbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see parbench --help)\n", stderr);
    va_end(ap);
    return 2;
}

static int parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max || s[0] == '-')
        return bad("%s wants a whole number from %llu to %llu, not '%s'", flag,
                   (unsigned long long)min, (unsigned long long)max, s);
    *out = v;
    return 0;
}

static int parse_double(const char *flag, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return bad("%s wants a number from %g to %g, not '%s'", flag, min, max, s);
    *out = v;
    return 0;
}

/* A byte size with an optional K, M or G suffix (binary). */
static int parse_size(const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024ull * 1024 * 1024, end++;
    if (errno || end == s || *end || v == 0 || v > (1ull << 34) / mul || s[0] == '-')
        return bad("%s wants sizes like 64, 4K, 1M (at most 16G), not '%s'", flag, s);
    *out = v * mul;
    return 0;
}

static int parse_size_list(const char *flag, char *s, uint64_t *v, unsigned *n)
{
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= PB_MAX_LIST)
            return bad("%s takes at most %d values", flag, PB_MAX_LIST);
        int rc = parse_size(flag, tok, &v[*n]);
        if (rc)
            return rc;
        (*n)++;
    }
    return *n ? 0 : bad("%s wants a comma-separated list", flag);
}

static int parse_double_list(const char *flag, char *s, double *v, unsigned *n)
{
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n >= PB_MAX_LIST)
            return bad("%s takes at most %d values", flag, PB_MAX_LIST);
        int rc = parse_double(flag, tok, 0.001, 1e8, &v[*n]);
        if (rc)
            return rc;
        (*n)++;
    }
    return *n ? 0 : bad("%s wants a comma-separated list", flag);
}

void pb_progress(const struct pb_opts *o, const char *fmt, ...)
{
    if (o->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("parbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool pb_only(const struct pb_opts *o, const char *key)
{
    if (o->nonly == 0)
        return true;
    for (unsigned i = 0; i < o->nonly; i++)
        if (strcmp(o->only[i], key) == 0)
            return true;
    return false;
}

/* Append an argument to the command line shown in reports. */
static void cmdline_add(struct pb_opts *o, const char *arg)
{
    size_t used = strlen(o->cmdline);
    snprintf(o->cmdline + used, sizeof(o->cmdline) - used, " %s", arg);
}

static int parse_opts(int argc, char **argv, struct pb_opts *o)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        uint64_t u = 0;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!val)                                                                                  \
            return bad("%s needs a value", a);                                                     \
        i++;                                                                                       \
    } while (0)
        if (strcmp(a, "--json") == 0) {
            o->format = PB_JSON;
        } else if (strcmp(a, "--csv") == 0) {
            o->format = PB_CSV;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = true;
        } else if (strcmp(a, "--hist") == 0) {
            o->hist = true;
        } else if (strcmp(a, "--plot") == 0) {
            NEED_VALUE();
            o->plot = val;
        } else if (strcmp(a, "--markdown") == 0) {
            NEED_VALUE();
            o->markdown = val;
        } else {
            /* Measurement flags are echoed in the reports' command lines. */
            cmdline_add(o, a);
            if (strcmp(a, "--no-pin") == 0) {
                o->no_pin = true;
            } else if (strcmp(a, "--noop-only") == 0) {
                o->noop_only = true;
            } else if (strcmp(a, "--socket") == 0) {
                NEED_VALUE();
                o->socket = val;
            } else if (strcmp(a, "--rounds") == 0) {
                NEED_VALUE();
                rc = parse_u64(a, val, 10, 100000000, &o->rounds);
            } else if (strcmp(a, "--tasks") == 0) {
                NEED_VALUE();
                rc = parse_u64(a, val, 1, 1000000000, &o->tasks);
            } else if (strcmp(a, "--workers") == 0) {
                NEED_VALUE();
                rc = parse_u64(a, val, 1, PB_MAX_WORKERS, &u);
                o->workers = (unsigned)u;
            } else if (strcmp(a, "--threads") == 0) {
                NEED_VALUE();
                rc = parse_u64(a, val, 1, 256, &u);
                o->threads = (unsigned)u;
            } else if (strcmp(a, "--repeat") == 0) {
                NEED_VALUE();
                rc = parse_u64(a, val, 1, 100, &u);
                o->repeat = (unsigned)u;
            } else if (strcmp(a, "--duration") == 0) {
                NEED_VALUE();
                rc = parse_double(a, val, 1, 600000, &o->duration_ms);
            } else if (strcmp(a, "--budget") == 0) {
                NEED_VALUE();
                rc = parse_double(a, val, 1, 600000, &o->budget_ms);
            } else if (strcmp(a, "--task-us") == 0) {
                NEED_VALUE();
                rc = parse_double(a, val, 0.01, 1e7, &o->task_us);
            } else if (strcmp(a, "--serial") == 0) {
                NEED_VALUE();
                rc = parse_double(a, val, 0, 0.95, &o->serial);
            } else if (strcmp(a, "--sizes") == 0) {
                NEED_VALUE();
                char buf[512];
                snprintf(buf, sizeof(buf), "%s", val);
                rc = parse_size_list(a, buf, o->sizes, &o->nsizes);
            } else if (strcmp(a, "--blocks") == 0) {
                NEED_VALUE();
                char buf[512];
                snprintf(buf, sizeof(buf), "%s", val);
                rc = parse_size_list(a, buf, o->blocks, &o->nblocks);
            } else if (strcmp(a, "--durations") == 0) {
                NEED_VALUE();
                char buf[512];
                snprintf(buf, sizeof(buf), "%s", val);
                rc = parse_double_list(a, buf, o->durations, &o->ndurations);
            } else if (strcmp(a, "--only") == 0) {
                NEED_VALUE();
                /* Keys point into a copy that lives as long as the run. */
                free(o->only_copy);
                char *copy = o->only_copy = strdup(val);
                if (!copy)
                    return bad("out of memory");
                o->nonly = 0;
                for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
                     tok = strtok_r(NULL, ",", &save))
                    if (o->nonly < PB_MAX_LIST)
                        o->only[o->nonly++] = tok;
            } else {
                return bad("unknown option '%s'", a);
            }
            if (val && i > 0 && argv[i] == val)
                cmdline_add(o, val);
        }
#undef NEED_VALUE
        if (rc)
            return rc;
    }
    return 0;
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("parbench " PB_VERSION "\n");
        return 0;
    }
    if (strcmp(cmd, "worker") == 0)
        return pb_worker_main(argc - 1, argv + 1);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
    }
    const struct command *one = find_command(cmd);
    if (!one && strcmp(cmd, "all") != 0)
        return bad("unknown command '%s'", cmd);
    static struct pb_opts o;
    o.argv0 = argv[0];
    int rc = parse_opts(argc - 2, argv + 2, &o);
    if (rc) {
        free(o.only_copy);
        return rc;
    }
    int status = 0;
    struct pb_report *reps[NCOMMANDS];
    int nreps = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (one && one != &commands[i])
            continue;
        struct pb_report *r = malloc(sizeof(*r));
        if (!r) {
            fprintf(stderr, "parbench: out of memory\n");
            return 1;
        }
        pb_report_init(r, commands[i].name, &o);
        pb_progress(&o, "%s ...", commands[i].name);
        if (commands[i].run(&o, r) != 0) {
            pb_note(r, "%s did not complete: see the messages on stderr", commands[i].name);
            fprintf(stderr, "parbench: %s failed\n", commands[i].name);
            status = 1;
        }
        reps[nreps++] = r;
    }
    if (pb_emit(&o, reps, nreps) != 0)
        status = 1;
    for (int i = 0; i < nreps; i++) {
        pb_report_free(reps[i]);
        free(reps[i]);
    }
    free(o.only_copy);
    return status;
}
