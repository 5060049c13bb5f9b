/*
 * test_event.c — the eventcount and the wait modes across processes: no
 * lost wake-up over a million blocking ping-pongs, deadlines honoured,
 * notify without waiters makes no system call.
 */
#include <errno.h>
#include <stdio.h>

#include "helpers.h"
#include "pard/ipc.h"

#define PARD_TEST_PINGPONGS 1000000

/* Shared between the two players. */
struct court {
    struct pard_event to_b; /* A → B: ball sent */
    struct pard_event to_a; /* B → A: ball returned */
    _Atomic uint64_t ball_b;
    uint8_t pad_[56];
    _Atomic uint64_t ball_a;
    uint8_t pad2_[56];
    _Atomic uint64_t timeouts; /* waits that hit the per-wait deadline */
    uint64_t rounds;
    enum pard_wait_mode mode;
};

struct want {
    _Atomic uint64_t *word;
    uint64_t value;
};

static bool word_reached(void *arg)
{
    struct want *w = arg;
    return atomic_load_explicit(w->word, memory_order_acquire) >= w->value;
}

/* Wait for *word >= value; a lost wake-up shows up as a 5-second timeout. */
static void await(struct court *c, struct pard_event *ev, _Atomic uint64_t *word, uint64_t value)
{
    struct want w = {word, value};
    while (pard_wait_until(ev, c->mode, word_reached, &w, pard_now_ns() + 5000000000LL) ==
           -ETIMEDOUT)
        atomic_fetch_add(&c->timeouts, 1);
}

static int player_b(void *arg, int i)
{
    struct court *c = arg;
    for (uint64_t r = 1; r <= c->rounds; r++) {
        await(c, &c->to_b, &c->ball_b, r);
        atomic_store_explicit(&c->ball_a, r, memory_order_release);
        pard_event_notify(&c->to_a);
    }
    return 0;
}

static void play(enum pard_wait_mode mode, uint64_t rounds)
{
    struct court *c = test_shared_alloc(sizeof(*c));
    pard_event_init(&c->to_a);
    pard_event_init(&c->to_b);
    c->rounds = rounds;
    c->mode = mode;
    pid_t b = test_fork(player_b, c, 0);
    int64_t t0 = pard_now_ns();
    for (uint64_t r = 1; r <= rounds; r++) {
        atomic_store_explicit(&c->ball_b, r, memory_order_release);
        pard_event_notify(&c->to_b);
        await(c, &c->to_a, &c->ball_a, r);
    }
    int64_t t1 = pard_now_ns();
    test_wait_ok(b, "player B");
    cr_assert_eq(atomic_load(&c->timeouts), 0, "%llu waits missed a wake-up",
                 (unsigned long long)atomic_load(&c->timeouts));
    cr_assert_eq(atomic_load(&c->ball_a), rounds);
    cr_log_info("%s: %llu round trips, %.2f us each", pard_wait_mode_name(mode),
                (unsigned long long)rounds, (double)(t1 - t0) / 1e3 / (double)rounds);
    munmap(c, sizeof(*c));
}

Test(event, loses_no_wake_up_over_a_million_blocking_ping_pongs, .timeout = 600)
{
    play(PARD_WAIT_BLOCK, PARD_TEST_PINGPONGS);
}

Test(event, loses_no_wake_up_in_adaptive_mode, .timeout = 300)
{
    play(PARD_WAIT_ADAPTIVE, 200000);
}

Test(event, delivers_every_round_in_spin_mode, .timeout = 300)
{
    play(PARD_WAIT_SPIN, 200000);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

Test(event, honours_the_deadline_in_every_mode, .timeout = 30)
{
    struct pard_event ev;
    pard_event_init(&ev);
    enum pard_wait_mode modes[] = {PARD_WAIT_SPIN, PARD_WAIT_ADAPTIVE, PARD_WAIT_BLOCK};
    for (int i = 0; i < 3; i++) {
        int64_t deadline = pard_now_ns() + 20000000; /* 20 ms */
        int rc = pard_wait_until(&ev, modes[i], never, NULL, deadline);
        cr_assert_eq(rc, -ETIMEDOUT, "mode %s", pard_wait_mode_name(modes[i]));
        cr_assert_geq(pard_now_ns(), deadline, "returned before the deadline");
        cr_assert_eq(atomic_load(&ev.waiters), 0, "the waiter unregistered");
    }
}

Test(event, counts_waiters_and_bumps_the_word_only_when_someone_waits, .timeout = 10)
{
    struct pard_event ev;
    pard_event_init(&ev);
    pard_event_notify(&ev);
    cr_assert_eq(atomic_load(&ev.seq), 0, "no waiter: no bump, no system call");
    uint32_t key = pard_event_prepare(&ev);
    cr_assert_eq(atomic_load(&ev.waiters), 1);
    pard_event_notify(&ev);
    cr_assert_eq(atomic_load(&ev.seq), key + 1);
    /* The key is stale now, so the wait returns at once instead of sleeping. */
    cr_assert_eq(pard_event_wait(&ev, key, -1), 0);
    cr_assert_eq(atomic_load(&ev.waiters), 0);
}

Test(event, parses_and_names_the_wait_modes, .timeout = 10)
{
    enum pard_wait_mode m;
    cr_assert_eq(pard_wait_mode_parse("spin", &m), 0);
    cr_assert_eq(m, PARD_WAIT_SPIN);
    cr_assert_eq(pard_wait_mode_parse("block", &m), 0);
    cr_assert_eq(m, PARD_WAIT_BLOCK);
    cr_assert_eq(pard_wait_mode_parse("adaptive", &m), 0);
    cr_assert_eq(m, PARD_WAIT_ADAPTIVE);
    cr_assert_eq(pard_wait_mode_parse("fast", &m), -EINVAL);
    cr_assert_str_eq(pard_wait_mode_name(PARD_WAIT_BLOCK), "block");
}
