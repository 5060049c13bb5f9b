/*
 * watch.c — the daemon's two clocks.
 *
 *   watch timer (every PARD__WATCH_MS = 10 ms, only while it has work):
 *     per-task time limits (a leased lane whose task started longer ago
 *     than the job's timeout_ms gets its worker killed), pending jobs (a
 *     --spawn worker registered, or the wait is over), and lanes that came
 *     FREE behind our back (the submitter reclaimed a dead lane) while an
 *     idle worker could use them. It stops itself when none of that is
 *     left, so an idle daemon makes no wake-ups; pard__watch_kick restarts
 *     it after any event that may create work.
 *
 *   stats timer (every second, unreferenced so it never keeps the loop
 *     alive on its own): samples the delivered-task counter for the
 *     tasks/s rate, closes connections whose hello or drain deadline
 *     passed, and gives back a spare job region left unused for 10 s.
 *
 * Must not: decide anything about jobs itself (jobs.c does).
 */
#include "internal.h"

#define STATS_MS 1000u

static void on_watch(uv_timer_t *t)
{
    struct pard__daemon *d = t->data;
    if (d->stopping) {
        uv_timer_stop(t);
        d->watch_running = false;
        return;
    }
    pard__jobs_check(d, pard_now_ns());
    pard__schedule(d);
    if (!pard__jobs_watch_needed(d)) {
        uv_timer_stop(t);
        d->watch_running = false;
    }
}

void pard__watch_kick(struct pard__daemon *d)
{
    if (d->watch_running || d->stopping || !pard__jobs_watch_needed(d))
        return;
    d->watch_running = true;
    uv_timer_start(&d->watch_timer, on_watch, PARD__WATCH_MS, PARD__WATCH_MS);
}

static void on_stats(uv_timer_t *t)
{
    struct pard__daemon *d = t->data;
    int64_t now = pard_now_ns();
    uint64_t done = pard__jobs_delivered(d);
    int64_t dt = now - d->rate_last_ns;
    if (dt > 0) {
        uint64_t diff = done >= d->rate_last_done ? done - d->rate_last_done : 0;
        d->tasks_per_sec = (double)diff * 1e9 / (double)dt;
    }
    d->rate_last_done = done;
    d->rate_last_ns = now;
    pard__sessions_check(d, now);
    pard__jobs_trim(d, now);
}

int pard__watch_init(struct pard__daemon *d)
{
    int rc = uv_timer_init(&d->loop, &d->watch_timer);
    if (rc != 0)
        return rc;
    d->watch_timer.data = d;
    rc = uv_timer_init(&d->loop, &d->stats_timer);
    if (rc != 0) {
        uv_close((uv_handle_t *)&d->watch_timer, NULL);
        return rc;
    }
    d->stats_timer.data = d;
    d->rate_last_ns = pard_now_ns();
    uv_timer_start(&d->stats_timer, on_stats, STATS_MS, STATS_MS);
    uv_unref((uv_handle_t *)&d->stats_timer);
    return 0;
}

void pard__watch_close(struct pard__daemon *d)
{
    d->watch_running = false;
    uv_close((uv_handle_t *)&d->watch_timer, NULL);
    uv_close((uv_handle_t *)&d->stats_timer, NULL);
}
