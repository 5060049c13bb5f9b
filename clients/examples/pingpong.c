/*
 * pingpong.c — two processes bounce a counter through pard shared memory
 * and, for comparison, through a pair of pipes; prints round-trip latency.
 *
 * This is the foundation's demonstration: what one hand-off between two
 * processes costs with pard's wait modes, against the classic pipe.
 *
 * Usage: pard-pingpong [ROUNDS]   (default 20000 per mode)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pard/ipc.h"

#define KIND_TABLE 1

/* The shared table, in a pard region: one cache line per direction. */
struct table {
    struct pard_event to_child;
    struct pard_event to_parent;
    _Atomic uint64_t ball_child;
    uint8_t pad0_[PARD_CACHELINE - 8];
    _Atomic uint64_t ball_parent;
    uint8_t pad1_[PARD_CACHELINE - 8];
    _Atomic uint32_t mode;
    _Atomic uint32_t go;
};

struct want {
    _Atomic uint64_t *word;
    uint64_t value;
};

static bool reached(void *arg)
{
    struct want *w = arg;
    return atomic_load_explicit(w->word, memory_order_acquire) >= w->value;
}

static int await(struct pard_event *ev, _Atomic uint64_t *word, uint64_t value,
                 enum pard_wait_mode mode)
{
    struct want w = {word, value};
    return pard_wait_until(ev, mode, reached, &w, pard_now_ns() + 5000000000LL);
}

static void child_shm(int fd, uint64_t rounds)
{
    struct pard_region r;
    int rc = pard_region_attach(&r, fd, 1);
    if (rc != 0) {
        fprintf(stderr, "pingpong: child cannot attach: %s\n", pard_strerror(rc));
        _exit(1);
    }
    struct table *t = pard_region_find(&r, KIND_TABLE, NULL);
    for (int m = 0; m < 3; m++) {
        enum pard_wait_mode mode = (enum pard_wait_mode)m;
        uint64_t base = (uint64_t)m * (rounds + 1);
        for (uint64_t i = 1; i <= rounds; i++) {
            if (await(&t->to_child, &t->ball_child, base + i, mode) != 0)
                _exit(2);
            atomic_store_explicit(&t->ball_parent, base + i, memory_order_release);
            pard_event_notify(&t->to_parent);
        }
    }
    pard_region_close(&r);
    _exit(0);
}

static void report(const char *name, struct pard_hist *h)
{
    printf("  %-22s %9.2f %9.2f %9.2f %9.2f\n", name, pard_hist_percentile(h, 50) / 1e3,
           pard_hist_percentile(h, 90) / 1e3, pard_hist_percentile(h, 99) / 1e3,
           pard_hist_percentile(h, 100) / 1e3);
}

int main(int argc, char **argv)
{
    uint64_t rounds = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
    if (rounds == 0 || (argc > 1 && strcmp(argv[1], "--help") == 0)) {
        printf("usage: pard-pingpong [ROUNDS]\n"
               "Bounces a counter between two processes through pard shared memory\n"
               "(spin, adaptive and block wait modes) and through pipes, and prints\n"
               "round-trip latency percentiles in microseconds.\n");
        return rounds == 0 ? 0 : 0;
    }
    struct pard_region r;
    int rc = pard_region_open(&r, 64 * 1024);
    uint64_t off;
    if (rc == 0)
        rc = pard_region_add_section(&r, KIND_TABLE, sizeof(struct table), &off);
    if (rc < 0) {
        fprintf(stderr, "pingpong: cannot create shared memory: %s\n", pard_strerror(rc));
        return 1;
    }
    struct table *t = (struct table *)((char *)r.base + off);
    pard_event_init(&t->to_child);
    pard_event_init(&t->to_parent);
    pard_region_publish(&r, 1, NULL);

    int p2c[2], c2p[2];
    if (pipe(p2c) != 0 || pipe(c2p) != 0) {
        perror("pingpong: pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("pingpong: fork");
        return 1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        child_shm(r.fd, rounds);
    }
    printf("round trip between two processes, %llu rounds each (microseconds)\n",
           (unsigned long long)rounds);
    printf("  %-22s %9s %9s %9s %9s\n", "mechanism", "p50", "p90", "p99", "max");
    static const char *names[] = {"pard shm, adaptive", "pard shm, spin", "pard shm, block"};
    for (int m = 0; m < 3; m++) {
        struct pard_hist h;
        pard_hist_init(&h);
        uint64_t base = (uint64_t)m * (rounds + 1);
        for (uint64_t i = 1; i <= rounds; i++) {
            int64_t t0 = pard_now_ns();
            atomic_store_explicit(&t->ball_child, base + i, memory_order_release);
            pard_event_notify(&t->to_child);
            if (await(&t->to_parent, &t->ball_parent, base + i, (enum pard_wait_mode)m) != 0) {
                fprintf(stderr, "pingpong: the child stopped answering\n");
                return 1;
            }
            pard_hist_record(&h, (uint64_t)(pard_now_ns() - t0));
        }
        report(names[m], &h);
    }
    int status;
    waitpid(pid, &status, 0);
    pard_region_close(&r);

    /* The same through pipes: one byte each way. */
    pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char c;
        for (uint64_t i = 0; i < rounds; i++)
            if (read(p2c[0], &c, 1) != 1 || write(c2p[1], &c, 1) != 1)
                _exit(1);
        _exit(0);
    }
    struct pard_hist h;
    pard_hist_init(&h);
    for (uint64_t i = 0; i < rounds; i++) {
        char c = 'x';
        int64_t t0 = pard_now_ns();
        if (write(p2c[1], &c, 1) != 1 || read(c2p[0], &c, 1) != 1) {
            fprintf(stderr, "pingpong: pipe broke: %s\n", strerror(errno));
            return 1;
        }
        pard_hist_record(&h, (uint64_t)(pard_now_ns() - t0));
    }
    report("pipe", &h);
    waitpid(pid, &status, 0);
    return 0;
}
