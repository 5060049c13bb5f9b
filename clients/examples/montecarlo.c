/*
 * montecarlo.c — case study: estimate π by throwing random points at a
 * square, serially and in parallel with pard, with one seed per task so
 * that the estimate is the same whatever the number of workers.
 *
 *   pard-montecarlo [--tasks N] [--samples M] [--workers K] [--socket PATH]
 *
 * Without --socket it needs no set-up: it starts a private pard with K
 * workers forked from itself (pard_open_private). With --socket it uses
 * that daemon, whose workers must serve `pi_hits` (pard-montecarlo
 * --worker does).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pard/pard.h"

/* splitmix64: a small, well-mixed generator; seeded per task. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Points of task `seed` inside the quarter circle, out of `samples`. */
static uint64_t hits(uint64_t seed, uint64_t samples)
{
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 1, in = 0;
    for (uint64_t i = 0; i < samples; i++) {
        double x = (double)(next_u64(&s) >> 11) * 0x1.0p-53;
        double y = (double)(next_u64(&s) >> 11) * 0x1.0p-53;
        in += x * x + y * y <= 1.0;
    }
    return in;
}

/* Task input: "SEED SAMPLES"; output: the hit count. */
static int pi_hits(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    char buf[64];
    if (len >= sizeof(buf))
        return pard_out_error(out, "pi_hits: input too long");
    memcpy(buf, in, len);
    buf[len] = '\0';
    unsigned long long seed, samples;
    if (sscanf(buf, "%llu %llu", &seed, &samples) != 2)
        return pard_out_error(out, "pi_hits: want 'SEED SAMPLES', got '%s'", buf);
    return pard_out_printf(out, "%" PRIu64, hits(seed, samples));
}

struct job {
    uint64_t tasks, samples, total_hits;
    uint64_t failed;
    char buf[64];
};

static int next_task(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct job *j = arg;
    if (index >= j->tasks)
        return 0;
    *len = (size_t)snprintf(j->buf, sizeof(j->buf), "%" PRIu64 " %" PRIu64, index, j->samples);
    *data = j->buf;
    return 1;
}

static int add_hits(void *arg, const struct pard_result *r)
{
    struct job *j = arg;
    if (r->status != 0) {
        j->failed++;
        fprintf(stderr, "pard-montecarlo: task %" PRIu64 ": %.*s\n", r->index, (int)r->len,
                (const char *)r->data);
        return 0;
    }
    j->total_hits += strtoull(r->data, NULL, 10);
    return 0;
}

int main(int argc, char **argv)
{
    struct job j = {.tasks = 200, .samples = 200000};
    unsigned workers = 0;
    const char *socket_path = NULL;
    bool worker = false;
    static const struct pard_function fns[] = {{"pi_hits", pi_hits}};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tasks") == 0 && i + 1 < argc)
            j.tasks = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            j.samples = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            workers = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            socket_path = argv[++i];
        else if (strcmp(argv[i], "--worker") == 0)
            worker = true;
        else {
            printf("usage: pard-montecarlo [--tasks N] [--samples M] [--workers K] "
                   "[--socket PATH]\n"
                   "       pard-montecarlo --worker\n"
                   "Estimates pi from N tasks of M random points each (one seed per task),\n"
                   "serially and with pard, and prints both times and the speedup.\n"
                   "Without --socket it starts a private pard with K workers (default: one\n"
                   "per core).\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (worker) {
        struct pard_worker_opts o = {.socket_path = socket_path, .name = "montecarlo"};
        int rc = pard_worker_run(fns, 1, &o);
        if (rc != 0)
            fprintf(stderr, "pard-montecarlo: %s\n", pard_last_error());
        return rc != 0;
    }
    struct pard_client *c;
    int rc = socket_path ? pard_connect(&c, socket_path) : pard_open_private(&c, fns, 1, workers);
    if (rc != 0) {
        fprintf(stderr, "pard-montecarlo: %s\n", pard_last_error());
        return 1;
    }
    /* Serial: the same function, in this process. */
    int64_t t0 = pard_now_ns();
    uint64_t serial_hits = 0;
    for (uint64_t t = 0; t < j.tasks; t++)
        serial_hits += hits(t, j.samples);
    int64_t serial_ns = pard_now_ns() - t0;

    t0 = pard_now_ns();
    struct pard_map_opts opts = {.progress = true, .total = j.tasks};
    rc = pard_map(c, "pi_hits", next_task, add_hits, &j, &opts, NULL);
    int64_t par_ns = pard_now_ns() - t0;
    pard_disconnect(c);
    if (rc != 0) {
        fprintf(stderr, "pard-montecarlo: %s\n", pard_last_error());
        return 1;
    }
    double n = (double)j.tasks * (double)j.samples;
    printf("Monte Carlo pi: %" PRIu64 " tasks x %" PRIu64 " points\n", j.tasks, j.samples);
    printf("  serial  pi = %.10f  %8.1f ms\n", 4.0 * (double)serial_hits / n, serial_ns / 1e6);
    printf("  pard    pi = %.10f  %8.1f ms\n", 4.0 * (double)j.total_hits / n, par_ns / 1e6);
    printf("  speedup: %.2fx\n", (double)serial_ns / (double)par_ns);
    if (j.total_hits != serial_hits || j.failed) {
        fprintf(stderr, "pard-montecarlo: the parallel estimate differs from the serial one\n");
        return 1;
    }
    return 0;
}
