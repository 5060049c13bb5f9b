/*
 * test_parbench.c — every parbench subcommand, run for real with tiny
 * sizes: its JSON must parse and have the shape and sane values (present,
 * finite, positive). Never its speed: these tests check what parbench
 * reports, not how fast the machine is.
 *
 * Also: CSV and Markdown output, --plot (skipped without gnuplot), bad
 * options, and --socket against a daemon this test starts with parbench
 * workers.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define PARBENCH PARD_BUILD_DIR "/clients/parbench"

/* ----------------------------------------------------------------------
 * A minimal JSON reader: enough for parbench's output.
 * ---------------------------------------------------------------------- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct json {
    enum jtype type;
    double num;          /* J_NUM, J_BOOL */
    char *str;           /* J_STR */
    int n;               /* J_ARR, J_OBJ: children */
    char **keys;         /* J_OBJ */
    struct json **items; /* J_ARR, J_OBJ */
};

struct jparser {
    const char *p;
    const char *err;
};

static struct json *jparse_value(struct jparser *ps);

static void jskip(struct jparser *ps)
{
    while (*ps->p && isspace((unsigned char)*ps->p))
        ps->p++;
}

static struct json *jnew(enum jtype t)
{
    struct json *j = calloc(1, sizeof(*j));
    cr_assert_not_null(j);
    j->type = t;
    return j;
}

static char *jparse_string(struct jparser *ps)
{
    if (*ps->p != '"') {
        ps->err = "expected a string";
        return NULL;
    }
    ps->p++;
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    while (*ps->p && *ps->p != '"') {
        char c = *ps->p++;
        if (c == '\\') {
            char e = *ps->p++;
            switch (e) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'u':
                c = '?';
                for (int k = 0; k < 4 && *ps->p; k++)
                    ps->p++;
                break;
            case '\0':
                ps->err = "unterminated escape";
                free(s);
                return NULL;
            default:
                c = e;
            }
        } else if ((unsigned char)c < 0x20) {
            ps->err = "control character in a string";
            free(s);
            return NULL;
        }
        if (len + 2 > cap)
            s = realloc(s, cap *= 2);
        s[len++] = c;
    }
    if (*ps->p != '"') {
        ps->err = "unterminated string";
        free(s);
        return NULL;
    }
    ps->p++;
    s[len] = '\0';
    return s;
}

static void jpush(struct json *j, char *key, struct json *item)
{
    j->items = realloc(j->items, (size_t)(j->n + 1) * sizeof(*j->items));
    j->keys = realloc(j->keys, (size_t)(j->n + 1) * sizeof(*j->keys));
    j->items[j->n] = item;
    j->keys[j->n] = key;
    j->n++;
}

static struct json *jparse_value(struct jparser *ps)
{
    jskip(ps);
    const char *p = ps->p;
    if (*p == '{' || *p == '[') {
        bool obj = *p == '{';
        struct json *j = jnew(obj ? J_OBJ : J_ARR);
        ps->p++;
        jskip(ps);
        if (*ps->p == (obj ? '}' : ']')) {
            ps->p++;
            return j;
        }
        for (;;) {
            char *key = NULL;
            if (obj) {
                jskip(ps);
                key = jparse_string(ps);
                if (!key)
                    return NULL;
                jskip(ps);
                if (*ps->p++ != ':') {
                    ps->err = "expected ':'";
                    return NULL;
                }
            }
            struct json *v = jparse_value(ps);
            if (!v)
                return NULL;
            jpush(j, key, v);
            jskip(ps);
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == (obj ? '}' : ']')) {
                ps->p++;
                return j;
            }
            ps->err = "expected ',' or a closing bracket";
            return NULL;
        }
    }
    if (*p == '"') {
        struct json *j = jnew(J_STR);
        j->str = jparse_string(ps);
        return j->str ? j : NULL;
    }
    if (strncmp(p, "null", 4) == 0) {
        ps->p += 4;
        return jnew(J_NULL);
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
        struct json *j = jnew(J_BOOL);
        j->num = *p == 't';
        ps->p += *p == 't' ? 4 : 5;
        return j;
    }
    char *end;
    double v = strtod(p, &end);
    if (end == p) {
        ps->err = "unexpected character";
        return NULL;
    }
    ps->p = end;
    struct json *j = jnew(J_NUM);
    j->num = v;
    return j;
}

static struct json *jparse(const char *text)
{
    struct jparser ps = {.p = text};
    struct json *j = jparse_value(&ps);
    cr_assert_not_null(j, "parbench printed invalid JSON: %s near: %.60s", ps.err, ps.p);
    jskip(&ps);
    cr_assert_eq(*ps.p, '\0', "trailing text after the JSON object: %.60s", ps.p);
    return j;
}

static void jfree(struct json *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->n; i++) {
        jfree(j->items[i]);
        free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    free(j);
}

static struct json *jget(const struct json *j, const char *key)
{
    if (!j || j->type != J_OBJ)
        return NULL;
    for (int i = 0; i < j->n; i++)
        if (strcmp(j->keys[i], key) == 0)
            return j->items[i];
    return NULL;
}

static struct json *jmust(const struct json *j, const char *key, enum jtype t)
{
    struct json *v = jget(j, key);
    cr_assert_not_null(v, "missing key \"%s\"", key);
    cr_assert_eq(v->type, t, "key \"%s\" has type %d, expected %d", key, v->type, t);
    return v;
}

/* ----------------------------------------------------------------------
 * Running parbench
 * ---------------------------------------------------------------------- */

/* Run parbench with args (a shell word list); return stdout and status. */
static char *run_parbench(const char *args, int *status)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s %s", PARBENCH, args);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "cannot run %s", cmd);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 4096)
            out = realloc(out, cap *= 2);
    }
    out[len] = '\0';
    int st = pclose(f);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return out;
}

/* Numbers in columns `cols` of table `key` must be finite and > 0 in every
 * row, however busy the machine (a rate of 0 or 0/0 means nothing was
 * measured: parbench must measure something before it reports a rate);
 * every row must have every declared column. */
static void check_table(const struct json *rep, const char *key, const char *const *cols)
{
    struct json *tables = jmust(rep, "tables", J_ARR);
    const struct json *t = NULL;
    for (int i = 0; i < tables->n; i++) {
        struct json *k = jget(tables->items[i], "key");
        if (k && k->type == J_STR && strcmp(k->str, key) == 0)
            t = tables->items[i];
    }
    cr_assert_not_null(t, "no table \"%s\"", key);
    jmust(t, "title", J_STR);
    struct json *columns = jmust(t, "columns", J_ARR);
    struct json *rows = jmust(t, "rows", J_ARR);
    cr_assert_gt(columns->n, 0, "table %s has no columns", key);
    cr_assert_gt(rows->n, 0, "table %s has no rows", key);
    for (int r = 0; r < rows->n; r++) {
        struct json *row = rows->items[r];
        cr_assert_eq(row->type, J_OBJ);
        for (int c = 0; c < columns->n; c++) {
            struct json *ck = jmust(columns->items[c], "key", J_STR);
            struct json *v = jget(row, ck->str);
            cr_assert_not_null(v, "table %s row %d lacks column %s", key, r, ck->str);
            cr_assert(v->type == J_NUM || v->type == J_STR || v->type == J_NULL,
                      "table %s row %d column %s: unexpected type", key, r, ck->str);
        }
        for (int c = 0; cols && cols[c]; c++) {
            struct json *v = jget(row, cols[c]);
            cr_assert_not_null(v, "table %s row %d lacks %s", key, r, cols[c]);
            cr_assert_eq(v->type, J_NUM, "table %s row %d: %s is not a number", key, r, cols[c]);
            cr_assert(isfinite(v->num) && v->num > 0, "table %s row %d: %s = %g", key, r, cols[c],
                      v->num);
        }
    }
}

/* Figure `key` must exist; when positive, its value must be finite and > 0
 * (else it may be null, e.g. a break-even that a tiny sweep never reached). */
static void check_figure(const struct json *rep, const char *key, bool positive)
{
    struct json *figs = jmust(rep, "figures", J_OBJ);
    struct json *f = jget(figs, key);
    cr_assert_not_null(f, "no figure \"%s\"", key);
    jmust(f, "what", J_STR);
    jmust(f, "unit", J_STR);
    struct json *v = jget(f, "value");
    cr_assert_not_null(v, "figure %s has no value", key);
    if (positive) {
        cr_assert_eq(v->type, J_NUM, "figure %s is not a number", key);
        cr_assert(isfinite(v->num) && v->num > 0, "figure %s = %g", key, v->num);
    } else {
        cr_assert(v->type == J_NUM || v->type == J_NULL, "figure %s: bad value", key);
    }
    if (jget(f, "target")) {
        jmust(f, "target", J_NUM);
        jmust(f, "met", J_BOOL);
    }
}

static void check_header(const struct json *j)
{
    jmust(j, "parbench", J_STR);
    struct json *m = jmust(j, "machine", J_OBJ);
    cr_assert_gt(jmust(m, "cpus", J_NUM)->num, 0);
    jmust(m, "host", J_STR);
    jmust(m, "cpu", J_STR);
}

/* Run one subcommand with --json and return the parsed report. */
static struct json *run_json(const char *command, const char *args)
{
    char a[1024];
    snprintf(a, sizeof(a), "%s --json --quiet %s", command, args);
    int status;
    char *out = run_parbench(a, &status);
    cr_assert_eq(status, 0, "parbench %s exited with %d; stdout: %.300s", a, status, out);
    struct json *j = jparse(out);
    free(out);
    check_header(j);
    cr_assert_str_eq(jmust(j, "command", J_STR)->str, command);
    jmust(j, "cmdline", J_STR);
    jmust(j, "notes", J_ARR);
    jmust(j, "histograms", J_ARR);
    return j;
}

/* ----------------------------------------------------------------------
 * Subcommands
 * ---------------------------------------------------------------------- */

Test(parbench, latency_reports_percentiles_and_histograms_for_every_mechanism, .timeout = 120)
{
    struct json *j = run_json("latency", "--rounds 200 --repeat 2 --sizes 8,300");
    static const char *const cols[] = {"p50_us", "p99_us", "max_us", "rounds", NULL};
    check_table(j, "latency", cols);
    struct json *rows = jmust(jmust(j, "tables", J_ARR)->items[0], "rows", J_ARR);
    /* 11 mechanisms at 2 sizes. */
    cr_assert_eq(rows->n, 22, "%d latency rows", rows->n);
    struct json *h = jmust(j, "histograms", J_ARR);
    cr_assert_eq(h->n, 11, "%d histograms", h->n);
    for (int i = 0; i < h->n; i++) {
        cr_assert_eq(jmust(h->items[i], "count", J_NUM)->num, 200);
        struct json *b = jmust(h->items[i], "buckets", J_ARR);
        double total = 0;
        for (int k = 0; k < b->n; k++) {
            cr_assert_eq(b->items[k]->type, J_ARR);
            cr_assert_eq(b->items[k]->n, 3);
            total += b->items[k]->items[2]->num;
        }
        cr_assert_eq(total, 200, "histogram %d counts %g", i, total);
    }
    check_figure(j, "spin_vs_raw_line", true);
    check_figure(j, "block_vs_futex", true);
    jfree(j);
}

Test(parbench, latency_runs_only_the_mechanisms_asked_for, .timeout = 60)
{
    struct json *j = run_json("latency", "--rounds 100 --repeat 1 --only pipe,eventfd");
    struct json *rows = jmust(jmust(j, "tables", J_ARR)->items[0], "rows", J_ARR);
    cr_assert_eq(rows->n, 2);
    bool pipe = false, eventfd = false;
    for (int i = 0; i < rows->n; i++) {
        const char *key = jmust(rows->items[i], "key", J_STR)->str;
        pipe |= strcmp(key, "pipe") == 0;
        eventfd |= strcmp(key, "eventfd") == 0;
    }
    jfree(j);
    cr_assert(pipe && eventfd, "--only pipe,eventfd ran other mechanisms");
}

Test(parbench, sync_checks_every_primitive_kept_its_counter, .timeout = 120)
{
    /* 1 ms windows, the shortest --duration: a contender often gets no CPU
     * in one on a busy machine, and must still report a rate (parbench
     * makes every contender do some operations). */
    struct json *j = run_json("sync", "--duration 1 --threads 2");
    static const char *const cols[] = {"ns_per_op", "mops", "n", NULL};
    check_table(j, "sync", cols);
    check_table(j, "false_sharing", cols);
    struct json *rows = jmust(jmust(j, "tables", J_ARR)->items[0], "rows", J_ARR);
    /* 5 primitives alone, with 2 threads and with 2 processes. */
    cr_assert_eq(rows->n, 15);
    for (int r = 0; r < rows->n; r++)
        cr_assert_str_eq(jmust(rows->items[r], "ok", J_STR)->str, "yes");
    check_figure(j, "false_sharing_slowdown", true);
    check_figure(j, "atomic_add_alone_ns", true);
    jfree(j);
}

Test(parbench, overhead_sweeps_task_durations_through_a_private_pard, .timeout = 180)
{
    struct json *j =
        run_json("overhead", "--tasks 2000 --durations 0.5,20 --budget 2 --repeat 1 --workers 2");
    static const char *const noop[] = {"tasks", "seconds", "tasks_per_s", "ns_per_task", NULL};
    check_table(j, "noop", noop);
    static const char *const sweep[] = {"task_us",      "tasks",           "serial_ns",
                                        "unbatched_ns", "auto_ns",         "speedup_unbatched",
                                        "speedup_auto", "speedup_threads", NULL};
    check_table(j, "sweep", sweep);
    check_figure(j, "noop_unbatched_per_s", true);
    check_figure(j, "noop_auto_per_s", true);
    check_figure(j, "noop_auto_vs_threads", true);
    check_figure(j, "noop_array_per_s", true);
    check_figure(j, "noop_array_vs_threads", true);
    check_figure(j, "break_even_auto_us", false);
    check_figure(j, "break_even_unbatched_us", false);
    jfree(j);
}

Test(parbench, scaling_fits_amdahls_law, .timeout = 120)
{
    struct json *j = run_json("scaling", "--workers 2 --task-us 200 --budget 10 --repeat 1");
    static const char *const cols[] = {"workers", "seconds", "speedup", "efficiency", NULL};
    check_table(j, "scaling", cols);
    check_figure(j, "cpu_speedup_2", true);
    check_figure(j, "cpu_speedup_2_block", true);
    check_figure(j, "serial_fraction_cpu", false);
    check_figure(j, "serial_fraction_amdahl", false);
    check_figure(j, "capacity_cpus", true);
    jfree(j);
}

Test(parbench, shm_hands_blocks_over_every_way_and_checks_the_bytes, .timeout = 60)
{
    struct json *j = run_json("shm", "--blocks 4K,100000 --repeat 2");
    static const char *const cols[] = {"bytes", "handoff_us", "gb_per_s", "vs_shared", NULL};
    check_table(j, "shm", cols);
    struct json *rows = jmust(jmust(j, "tables", J_ARR)->items[0], "rows", J_ARR);
    cr_assert_eq(rows->n, 10); /* 5 methods at 2 sizes */
    check_figure(j, "pipe_vs_shared_largest", true);
    jfree(j);
}

Test(parbench, threads_compares_threads_processes_and_a_global_lock, .timeout = 60)
{
    struct json *j = run_json("threads", "--duration 10 --workers 2");
    static const char *const cols[] = {"n", "seconds", "speedup", NULL};
    check_table(j, "threads", cols);
    struct json *rows = jmust(jmust(j, "tables", J_ARR)->items[0], "rows", J_ARR);
    cr_assert_eq(rows->n, 24); /* 4 workloads x 2 kinds x 3 counts */
    check_figure(j, "gil_threads_speedup", true);
    check_figure(j, "gil_processes_speedup", true);
    jfree(j);
}

Test(parbench, oversub_runs_every_wait_mode_with_more_workers_than_cores, .timeout = 180)
{
    /* 1 ms ping-pong windows: a pair often gets no CPU in one on a busy
     * machine, and must still report a rate, as sync's contenders. */
    struct json *j = run_json("oversub", "--workers 4 --tasks 200 --duration 1");
    static const char *const map[] = {"workers", "tasks_per_s", "vs_few", NULL};
    check_table(j, "map", map);
    static const char *const pp[] = {"pairs", "trips_per_s", "us_per_trip", NULL};
    check_table(j, "pingpong", pp);
    struct json *rows = jmust(jmust(j, "tables", J_ARR)->items[0], "rows", J_ARR);
    cr_assert_eq(rows->n, 12); /* 3 modes x 2 batchings x 2 worker counts */
    check_figure(j, "adaptive_many_vs_few", true);
    jfree(j);
}

Test(parbench, all_runs_every_command_and_writes_a_markdown_report, .timeout = 300)
{
    char md[] = "/tmp/parbench-test-XXXXXX";
    int fd = mkstemp(md);
    cr_assert_geq(fd, 0);
    close(fd);
    char args[512];
    snprintf(args, sizeof(args),
             "all --json --quiet --markdown %s --rounds 50 --repeat 1 --duration 5 --threads 2 "
             "--tasks 200 --durations 2 --budget 2 --workers 2 --task-us 100 --blocks 4K",
             md);
    int status;
    char *out = run_parbench(args, &status);
    cr_assert_eq(status, 0, "parbench all exited with %d", status);
    struct json *j = jparse(out);
    free(out);
    check_header(j);
    cr_assert_str_eq(jmust(j, "command", J_STR)->str, "all");
    struct json *reps = jmust(j, "reports", J_ARR);
    static const char *const names[] = {"latency", "sync",    "overhead", "scaling",
                                        "shm",     "threads", "oversub"};
    cr_assert_eq(reps->n, 7);
    for (int i = 0; i < 7; i++) {
        cr_assert_str_eq(jmust(reps->items[i], "command", J_STR)->str, names[i]);
        cr_assert_gt(jmust(reps->items[i], "tables", J_ARR)->n, 0);
    }
    jfree(j);
    FILE *f = fopen(md, "r");
    cr_assert_not_null(f);
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(md);
    cr_assert(strstr(buf, "# parbench report"), "no title in the Markdown report");
    cr_assert(strstr(buf, "- machine:"), "no machine in the Markdown report");
    for (int i = 0; i < 7; i++) {
        char h[32];
        snprintf(h, sizeof(h), "## %s", names[i]);
        cr_assert(strstr(buf, h), "no section %s in the Markdown report", h);
    }
    cr_assert(strstr(buf, "Command: `parbench latency"), "no command shown");
}

/* ----------------------------------------------------------------------
 * Output formats and the command line
 * ---------------------------------------------------------------------- */

Test(parbench, prints_csv_with_a_header_per_table, .timeout = 60)
{
    int status;
    char *out = run_parbench("shm --csv --quiet --blocks 4K --repeat 1", &status);
    cr_assert_eq(status, 0);
    cr_assert(strncmp(out, "command,table,method,bytes,size,handoff_us,gb_per_s,vs_shared\n", 62) ==
                  0,
              "CSV header: %.100s", out);
    cr_assert(strstr(out, "\nshm,shm,pipe (copied),4096,4K,"), "CSV rows: %s", out);
    cr_assert(strstr(out, "command,figure,value,unit,cmp,target,met,what\n"), "figures: %s", out);
    free(out);
}

Test(parbench, prints_a_readable_table_by_default, .timeout = 60)
{
    int status;
    char *out = run_parbench("shm --quiet --blocks 4K --repeat 1", &status);
    cr_assert_eq(status, 0);
    cr_assert(strstr(out, "parbench shm"), "%s", out);
    cr_assert(strstr(out, "hand-off us"), "%s", out);
    cr_assert(strstr(out, "Headline figures"), "%s", out);
    free(out);
}

Test(parbench, plots_an_svg_with_gnuplot, .timeout = 60)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0)
        cr_skip_test("gnuplot is not installed (make bench-peers installs gnuplot-nox)");
    char svg[] = "/tmp/parbench-plot-XXXXXX.svg";
    int fd = mkstemps(svg, 4);
    cr_assert_geq(fd, 0);
    close(fd);
    char args[256];
    snprintf(args, sizeof(args), "shm --quiet --blocks 4K,64K --repeat 1 --plot %s", svg);
    int status;
    char *out = run_parbench(args, &status);
    free(out);
    cr_assert_eq(status, 0);
    FILE *f = fopen(svg, "r");
    cr_assert_not_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(svg);
    cr_assert(strstr(buf, "<svg"), "not an SVG: %.200s", buf);
}

Test(parbench, refuses_bad_options_with_status_2, .timeout = 30)
{
    int status;
    char *out = run_parbench("latency --rounds banana 2>/dev/null", &status);
    cr_assert_eq(status, 2);
    free(out);
    out = run_parbench("frobnicate 2>/dev/null", &status);
    cr_assert_eq(status, 2);
    free(out);
    out = run_parbench("--help", &status);
    cr_assert_eq(status, 0);
    cr_assert(strstr(out, "overhead"), "help: %s", out);
    free(out);
}

Test(parbench, uses_a_running_daemon_with_socket, .timeout = 120)
{
    struct test_daemon d;
    test_daemon_start(&d);
    for (int i = 0; i < 2; i++) {
        char *argv[] = {PARBENCH, "worker", "--socket", d.socket, NULL};
        pid_t pid = test_spawn(argv);
        d.workers[d.nworkers++] = pid;
    }
    char args[512];
    snprintf(args, sizeof(args), "--socket %s --noop-only --tasks 500 --repeat 1 --workers 2",
             d.socket);
    struct json *j = run_json("overhead", args);
    static const char *const noop[] = {"tasks_per_s", NULL};
    check_table(j, "noop", noop);
    jfree(j);
    test_daemon_stop(&d);
}
