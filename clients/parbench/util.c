/*
 * util.c — what every benchmark shares: the machine's description, the
 * calibrated busy work, sleeping, pinning and small statistics.
 *
 * Must not: print (the caller decides where output goes).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ----------------------------------------------------------------------
 * The machine
 * ---------------------------------------------------------------------- */

void pb_machine_get(struct pb_machine *m)
{
    memset(m, 0, sizeof(*m));
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(m->host, sizeof(m->host), "%.63s", u.nodename);
        snprintf(m->kernel, sizeof(m->kernel), "%.20s %.50s %.20s", u.sysname, u.release,
                 u.machine);
    }
    m->cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(m->cpu, sizeof(m->cpu), "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon) {
                    colon++;
                    while (*colon == ' ' || *colon == '\t')
                        colon++;
                    colon[strcspn(colon, "\n")] = '\0';
                    snprintf(m->cpu, sizeof(m->cpu), "%s", colon);
                }
                break;
            }
        }
        fclose(f);
    }
}

/* ----------------------------------------------------------------------
 * Busy work
 * ---------------------------------------------------------------------- */

/* noinline: the serial loop, the threads and the workers all run this one
 * copy of the code, so a task costs the same wherever it runs. */
__attribute__((noinline)) uint64_t pb_busy(uint64_t iters)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint64_t i = 0; i < iters; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        /* An empty asm that claims to read and write x: the chain stays. */
        __asm__ __volatile__("" : "+r"(x));
    }
    return x;
}

static double ns_per_iter;

double pb_calibrate(void)
{
    if (ns_per_iter > 0)
        return ns_per_iter;
    /* The best of several runs: on a shared machine noise only adds time. */
    uint64_t n = 200000;
    double best = 1e30;
    pb_busy(n); /* warm up the frequency and the caches */
    for (int k = 0; k < 15; k++) {
        int64_t t0 = pard_now_ns();
        pb_busy(n);
        double dt = (double)(pard_now_ns() - t0);
        if (dt > 0 && dt / (double)n < best)
            best = dt / (double)n;
    }
    ns_per_iter = best < 1e29 ? best : 1.0;
    return ns_per_iter;
}

uint64_t pb_iters_for_ns(double ns)
{
    double it = ns / pb_calibrate();
    return it < 1 ? 1 : (uint64_t)llround(it);
}

void pb_sleep_ns(int64_t ns)
{
    if (ns <= 0)
        return;
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ----------------------------------------------------------------------
 * Statistics
 * ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double pb_median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double pb_min(const double *v, int n)
{
    double m = INFINITY;
    for (int i = 0; i < n; i++)
        if (v[i] < m)
            m = v[i];
    return m;
}

/* ----------------------------------------------------------------------
 * Odds and ends
 * ---------------------------------------------------------------------- */

void pb_pin_cpu(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((int)(cpu % n), &set);
    sched_setaffinity(0, sizeof(set), &set); /* best effort */
}

const char *pb_size_str(uint64_t bytes, char *buf, size_t len)
{
    static const char *units[] = {"", "K", "M", "G", "T"};
    int u = 0;
    uint64_t v = bytes;
    while (v >= 1024 && v % 1024 == 0 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)v, units[u]);
    return buf;
}

/* ----------------------------------------------------------------------
 * Parallel capacity
 * ---------------------------------------------------------------------- */

struct cap_arg {
    uint64_t iters;
};

static void *cap_thread(void *arg)
{
    struct cap_arg *a = arg;
    pb_busy(a->iters);
    return NULL;
}

double pb_capacity(int threads)
{
    if (threads < 2)
        return 1.0;
    if (threads > 64)
        threads = 64;
    struct cap_arg a = {.iters = pb_iters_for_ns(20e6)};
    double one = INFINITY, many = INFINITY;
    for (int k = 0; k < 3; k++) {
        int64_t t0 = pard_now_ns();
        pb_busy(a.iters);
        double t = (double)(pard_now_ns() - t0);
        if (t < one)
            one = t;
        pthread_t th[64];
        int n = 0;
        t0 = pard_now_ns();
        for (; n < threads; n++)
            if (pthread_create(&th[n], NULL, cap_thread, &a) != 0)
                break;
        for (int i = 0; i < n; i++)
            pthread_join(th[i], NULL);
        t = (double)(pard_now_ns() - t0);
        if (n == threads && t < many)
            many = t;
    }
    return threads * one / many;
}
