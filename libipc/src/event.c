/*
 * event.c — the eventcount and the three wait modes.
 *
 * Owns: sleeping and waking across processes. An event is two 32-bit words
 * in shared memory: `seq`, the futex word, and `waiters`, how many are
 * registered. The protocol is Dekker-style:
 *
 *   waiter:   waiters++ (seq_cst); key = seq; check condition; futex_wait(seq, key)
 *   notifier: publish; fence(seq_cst); if (waiters) { seq++; futex_wake(seq) }
 *
 * Either the waiter's condition check sees the published data, or the
 * notifier sees waiters > 0 and bumps seq, so that futex_wait(seq, key)
 * returns at once. A notifier with nobody waiting pays a fence and a load:
 * no system call.
 *
 * Must not: format strings or allocate (hot path), or trust the shared
 * words beyond using them as futex values (a scribbled `waiters` only
 * causes extra wakes or, at worst, a sleep until the caller's deadline).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static struct pard_wait_tuning tuning = {.spin_iters = 2000, .yield_iters = 4};

void pard_wait_tuning_get(struct pard_wait_tuning *t)
{
    *t = tuning;
}

void pard_wait_tuning_set(const struct pard_wait_tuning *t)
{
    tuning = *t;
}

int pard_wait_mode_parse(const char *s, enum pard_wait_mode *mode)
{
    if (strcmp(s, "adaptive") == 0)
        *mode = PARD_WAIT_ADAPTIVE;
    else if (strcmp(s, "spin") == 0)
        *mode = PARD_WAIT_SPIN;
    else if (strcmp(s, "block") == 0)
        *mode = PARD_WAIT_BLOCK;
    else
        return -EINVAL;
    return 0;
}

const char *pard_wait_mode_name(enum pard_wait_mode mode)
{
    switch (mode) {
    case PARD_WAIT_SPIN:
        return "spin";
    case PARD_WAIT_BLOCK:
        return "block";
    case PARD_WAIT_ADAPTIVE:
        return "adaptive";
    }
    return "unknown";
}

/* ----------------------------------------------------------------------
 * futex
 * ---------------------------------------------------------------------- */

/*
 * Shared (not FUTEX_PRIVATE) futexes: the word lives in a MAP_SHARED
 * mapping that other processes map at other addresses; the kernel keys
 * the wait on the page, not the address.
 */
static int futex_wait_abs(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns >= 0) {
        ts.tv_sec = deadline_ns / 1000000000;
        ts.tv_nsec = deadline_ns % 1000000000;
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so a
     * wait interrupted and restarted does not stretch the timeout. */
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expected, tsp, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0)
        return 0;
    if (errno == ETIMEDOUT)
        return -ETIMEDOUT;
    return 0; /* EAGAIN (value changed) or EINTR: the caller re-checks */
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* ----------------------------------------------------------------------
 * eventcount
 * ---------------------------------------------------------------------- */

void pard_event_init(struct pard_event *ev)
{
    memset(ev, 0, sizeof(*ev));
}

uint32_t pard_event_prepare(struct pard_event *ev)
{
    /* seq_cst RMW: the registration is ordered before the caller's
     * condition check, pairing with the fence in pard_event_notify. */
    atomic_fetch_add_explicit(&ev->waiters, 1, memory_order_seq_cst);
    return atomic_load_explicit(&ev->seq, memory_order_seq_cst);
}

void pard_event_cancel(struct pard_event *ev)
{
    atomic_fetch_sub_explicit(&ev->waiters, 1, memory_order_relaxed);
}

int pard_event_wait(struct pard_event *ev, uint32_t key, int64_t deadline_ns)
{
    int rc = 0;
    if (atomic_load_explicit(&ev->seq, memory_order_acquire) == key)
        rc = futex_wait_abs(&ev->seq, key, deadline_ns);
    atomic_fetch_sub_explicit(&ev->waiters, 1, memory_order_relaxed);
    return rc;
}

void pard_event_notify(struct pard_event *ev)
{
    /* Orders the caller's publish (a ring index, a flag) before the load of
     * `waiters`; pairs with the seq_cst RMW in pard_event_prepare. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&ev->waiters, memory_order_relaxed) == 0)
        return;
    /* Release: a waiter that sees the new seq also sees the publish. */
    atomic_fetch_add_explicit(&ev->seq, 1, memory_order_release);
    futex_wake_all(&ev->seq);
}

/* ----------------------------------------------------------------------
 * wait modes
 * ---------------------------------------------------------------------- */

static bool past(int64_t deadline_ns)
{
    return deadline_ns >= 0 && pard_now_ns() >= deadline_ns;
}

/* Block on the futex until ready or the deadline. */
static int wait_block(struct pard_event *ev, pard_ready_fn ready, void *arg, int64_t deadline_ns)
{
    for (;;) {
        uint32_t key = pard_event_prepare(ev);
        if (ready(arg)) {
            pard_event_cancel(ev);
            return 0;
        }
        if (pard_event_wait(ev, key, deadline_ns) == -ETIMEDOUT)
            return ready(arg) ? 0 : -ETIMEDOUT;
    }
}

int pard_wait_until(struct pard_event *ev, enum pard_wait_mode mode, pard_ready_fn ready, void *arg,
                    int64_t deadline_ns)
{
    if (ready(arg))
        return 0;
    switch (mode) {
    case PARD_WAIT_SPIN:
        /* Busy-poll. The clock is read every 64 polls only: a vDSO call is
         * ~20 ns, a poll of a line another core owns ~100 ns. */
        for (uint32_t i = 1;; i++) {
            pard_cpu_relax();
            if (ready(arg))
                return 0;
            if ((i & 63) == 0 && past(deadline_ns))
                return -ETIMEDOUT;
        }
    case PARD_WAIT_BLOCK:
        return wait_block(ev, ready, arg, deadline_ns);
    case PARD_WAIT_ADAPTIVE:
    default: {
        /* Spin long enough to catch a reply from a running peer (a few µs),
         * then give the core away a few times (the peer may be waiting for
         * this very core), then sleep. */
        struct pard_wait_tuning t = tuning;
        for (uint32_t i = 1; i <= t.spin_iters; i++) {
            pard_cpu_relax();
            if (ready(arg))
                return 0;
            if ((i & 255) == 0 && past(deadline_ns))
                return -ETIMEDOUT;
        }
        for (uint32_t i = 0; i < t.yield_iters; i++) {
            sched_yield();
            if (ready(arg))
                return 0;
        }
        if (past(deadline_ns))
            return -ETIMEDOUT;
        return wait_block(ev, ready, arg, deadline_ns);
    }
    }
}
