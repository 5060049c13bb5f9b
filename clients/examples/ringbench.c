/*
 * ringbench.c — what pard's checks cost: pard's SPSC ring against a
 * minimal hand-written ring with no checks at all, between two processes,
 * in one run.
 *
 *   throughput  messages/s of 8- and 256-byte messages, bursts of 32
 *   round trip  p50/p99 of a message there and back: a raw cache-line
 *               ping-pong (the floor), the minimal ring, pard's ring in
 *               spin mode
 *
 * Usage: pard-ringbench [--messages N] [--rounds N]
 * The two processes are pinned to CPUs 0 and 1.
 * Every figure is a ratio's half: read them against each other, not alone.
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pard/ipc.h"

#define CAP    1024
#define BURST  32
#define REPEAT 5 /* interleaved repetitions; the best of each is shown */

/* ---- the minimal ring: indices on their own lines, nothing checked ---- */

struct mini {
    _Atomic uint64_t tail;
    char pad0[56];
    _Atomic uint64_t head;
    char pad1[56];
    uint8_t slots[CAP * 256];
};

/* Each side's private copy of the other side's index, as any decent ring
 * keeps (so the baseline is minimal in checks, not in design). */
static __thread uint64_t mini_head_seen, mini_tail_seen;

static unsigned mini_push(struct mini *r, const void *src, unsigned n, size_t size)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (CAP - (t - mini_head_seen) < n)
        mini_head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t h = mini_head_seen;
    unsigned room = (unsigned)(CAP - (t - h));
    if (n > room)
        n = room;
    size_t idx = t & (CAP - 1), first = CAP - idx < n ? CAP - idx : n;
    memcpy(r->slots + idx * size, src, first * size); /* up to the end, then the wrap */
    memcpy(r->slots, (const uint8_t *)src + first * size, (n - first) * size);
    atomic_store_explicit(&r->tail, t + n, memory_order_release);
    return n;
}

static unsigned mini_pop(struct mini *r, void *dst, unsigned n, size_t size)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (mini_tail_seen - h < n)
        mini_tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t t = mini_tail_seen;
    unsigned have = (unsigned)(t - h);
    if (n > have)
        n = have;
    size_t idx = h & (CAP - 1), first = CAP - idx < n ? CAP - idx : n;
    memcpy(dst, r->slots + idx * size, first * size);
    memcpy((uint8_t *)dst + first * size, r->slots, (n - first) * size);
    atomic_store_explicit(&r->head, h + n, memory_order_release);
    return n;
}

/* ---- shared set-up ---------------------------------------------------- */

struct shared {
    struct mini mini[2];
    _Atomic uint64_t line_a;
    char pad0[56];
    _Atomic uint64_t line_b;
    char pad1[56];
    _Atomic int go;
    _Alignas(64) uint8_t pard_mem[2][1 << 20]; /* two pard rings (64-byte aligned) */
};

static struct shared *sh;

/* Pin this process to one CPU, so that every mechanism is measured across
 * the same two cores (the scheduler would otherwise place them anew). */
static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static pid_t spawn(void (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pin(1);
        fn(arg);
        _exit(0);
    }
    return pid;
}

/* ---- throughput ------------------------------------------------------- */

struct tp {
    int pard; /* 1: pard ring, 0: minimal */
    size_t size;
    uint64_t n;
};

static void tp_consumer(void *arg)
{
    struct tp *t = arg;
    uint8_t buf[BURST * 256];
    struct pard_ring ring;
    if (t->pard)
        pard_ring_attach(&ring, sh->pard_mem[0], sizeof(sh->pard_mem[0]), PARD_RING_SPSC);
    uint64_t got = 0;
    while (got < t->n) {
        int k = t->pard ? pard_ring_spsc_pop_burst(&ring, buf, BURST)
                        : (int)mini_pop(&sh->mini[0], buf, BURST, t->size);
        if (k < 0)
            _exit(1);
        if (k == 0)
            pard_cpu_relax();
        got += (uint64_t)k;
    }
}

static double throughput(int pard, size_t size, uint64_t n)
{
    mini_head_seen = mini_tail_seen = 0;
    struct tp t = {pard, size, n};
    memset(&sh->mini[0], 0, offsetof(struct mini, slots));
    struct pard_ring ring;
    if (pard)
        pard_ring_init(&ring, sh->pard_mem[0], sizeof(sh->pard_mem[0]), PARD_RING_SPSC, CAP,
                       (uint32_t)size);
    uint8_t buf[BURST * 256];
    memset(buf, 7, sizeof(buf));
    pid_t c = spawn(tp_consumer, &t);
    int64_t t0 = pard_now_ns();
    uint64_t sent = 0;
    while (sent < n) {
        unsigned want = n - sent < BURST ? (unsigned)(n - sent) : BURST;
        int k = pard ? pard_ring_spsc_push_burst(&ring, buf, want)
                     : (int)mini_push(&sh->mini[0], buf, want, size);
        if (k == 0)
            pard_cpu_relax();
        sent += (uint64_t)k;
    }
    int status;
    waitpid(c, &status, 0);
    return (double)n / ((double)(pard_now_ns() - t0) / 1e9);
}

/* ---- round trips ------------------------------------------------------ */

enum rt_kind { RT_LINE, RT_MINI, RT_PARD };

struct rt {
    enum rt_kind kind;
    uint64_t rounds;
};

static void rt_echo(void *arg)
{
    struct rt *r = arg;
    struct pard_ring to_me, to_you;
    if (r->kind == RT_PARD) {
        pard_ring_attach(&to_me, sh->pard_mem[0], sizeof(sh->pard_mem[0]), PARD_RING_SPSC);
        pard_ring_attach(&to_you, sh->pard_mem[1], sizeof(sh->pard_mem[1]), PARD_RING_SPSC);
    }
    for (uint64_t i = 1; i <= r->rounds; i++) {
        uint64_t v = 0;
        switch (r->kind) {
        case RT_LINE:
            while (atomic_load_explicit(&sh->line_a, memory_order_acquire) != i)
                pard_cpu_relax();
            atomic_store_explicit(&sh->line_b, i, memory_order_release);
            break;
        case RT_MINI:
            while (mini_pop(&sh->mini[0], &v, 1, 8) == 0)
                pard_cpu_relax();
            mini_push(&sh->mini[1], &v, 1, 8);
            break;
        case RT_PARD:
            pard_ring_pop_wait(&to_me, &v, 1, PARD_WAIT_SPIN, -1);
            pard_ring_push_wait(&to_you, &v, 1, PARD_WAIT_SPIN, -1);
            break;
        }
    }
}

static void round_trip(enum rt_kind kind, uint64_t rounds, struct pard_hist *h)
{
    mini_head_seen = mini_tail_seen = 0;
    struct rt r = {kind, rounds};
    atomic_store(&sh->line_a, 0);
    atomic_store(&sh->line_b, 0);
    memset(&sh->mini[0], 0, offsetof(struct mini, slots));
    memset(&sh->mini[1], 0, offsetof(struct mini, slots));
    struct pard_ring to_you, to_me;
    if (kind == RT_PARD) {
        pard_ring_init(&to_you, sh->pard_mem[0], sizeof(sh->pard_mem[0]), PARD_RING_SPSC, CAP, 8);
        pard_ring_init(&to_me, sh->pard_mem[1], sizeof(sh->pard_mem[1]), PARD_RING_SPSC, CAP, 8);
    }
    pid_t c = spawn(rt_echo, &r);
    pard_hist_init(h);
    for (uint64_t i = 1; i <= rounds; i++) {
        uint64_t v = i;
        int64_t t0 = pard_now_ns();
        switch (kind) {
        case RT_LINE:
            atomic_store_explicit(&sh->line_a, i, memory_order_release);
            while (atomic_load_explicit(&sh->line_b, memory_order_acquire) != i)
                pard_cpu_relax();
            break;
        case RT_MINI:
            mini_push(&sh->mini[0], &v, 1, 8);
            while (mini_pop(&sh->mini[1], &v, 1, 8) == 0)
                pard_cpu_relax();
            break;
        case RT_PARD:
            pard_ring_push_wait(&to_you, &v, 1, PARD_WAIT_SPIN, -1);
            pard_ring_pop_wait(&to_me, &v, 1, PARD_WAIT_SPIN, -1);
            break;
        }
        pard_hist_record(h, (uint64_t)(pard_now_ns() - t0));
    }
    int status;
    waitpid(c, &status, 0);
}

int main(int argc, char **argv)
{
    uint64_t messages = 20000000, rounds = 200000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            messages = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = strtoull(argv[++i], NULL, 10);
        else {
            printf("usage: pard-ringbench [--messages N] [--rounds N]\n"
                   "pard's SPSC ring against a minimal unchecked ring between two processes:\n"
                   "throughput (8 and 256-byte messages) and round trips, with a raw\n"
                   "cache-line ping-pong as the floor.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    pin(0);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    printf("SPSC throughput between two processes, %llu messages, bursts of %d\n"
           "(best of %d interleaved runs; processes pinned to CPUs 0 and 1)\n",
           (unsigned long long)messages, BURST, REPEAT);
    printf("  %-6s %16s %16s %8s\n", "size", "minimal (msg/s)", "pard (msg/s)", "ratio");
    size_t sizes[] = {8, 256};
    for (int s = 0; s < 2; s++) {
        /* Interleaved repetitions, best of each: the VM's noise comes in
         * bursts, and a burst must not fall on one side only. */
        double mini = 0, pard = 0;
        for (int r = 0; r < REPEAT; r++) {
            double m = throughput(0, sizes[s], messages / REPEAT);
            double p = throughput(1, sizes[s], messages / REPEAT);
            mini = m > mini ? m : mini;
            pard = p > pard ? p : pard;
        }
        printf("  %-6zu %16.3e %16.3e %8.2f\n", sizes[s], mini, pard, pard / mini);
    }
    printf("\nround trip between two processes, %llu rounds (nanoseconds; the best of %d\n"
           "interleaved chunks for each mechanism)\n",
           (unsigned long long)rounds, REPEAT);
    printf("  %-28s %8s %8s %8s\n", "mechanism", "p50", "p99", "ratio");
    /* Interleaved chunks; each mechanism keeps its best chunk (lowest p50). */
    struct pard_hist line, mini, pard, h;
    struct pard_hist *best[3] = {&line, &mini, &pard};
    for (int k = 0; k < 3; k++)
        pard_hist_init(best[k]);
    for (int r = 0; r < REPEAT; r++) {
        for (int k = 0; k < 3; k++) {
            round_trip((enum rt_kind)k, rounds / REPEAT, &h);
            if (best[k]->count == 0 ||
                pard_hist_percentile(&h, 50) < pard_hist_percentile(best[k], 50))
                *best[k] = h;
        }
    }
    double floor = (double)pard_hist_percentile(&line, 50);
    printf("  %-28s %8llu %8llu %8.2f\n", "raw cache-line ping-pong",
           (unsigned long long)pard_hist_percentile(&line, 50),
           (unsigned long long)pard_hist_percentile(&line, 99), 1.0);
    printf("  %-28s %8llu %8llu %8.2f\n", "minimal ring",
           (unsigned long long)pard_hist_percentile(&mini, 50),
           (unsigned long long)pard_hist_percentile(&mini, 99),
           (double)pard_hist_percentile(&mini, 50) / floor);
    printf("  %-28s %8llu %8llu %8.2f\n", "pard ring, spin mode",
           (unsigned long long)pard_hist_percentile(&pard, 50),
           (unsigned long long)pard_hist_percentile(&pard, 99),
           (double)pard_hist_percentile(&pard, 50) / floor);
    return 0;
}
