/*
 * map.c — the submitter's side of a job: feed inputs into the task ring,
 * collect results from the lanes, deliver each exactly once, and recover
 * from dead workers (docs/architecture.md, "Who does what").
 *
 * Owns: the input arena (sole allocator and reclaimer), the task ring
 * (sole producer), the consumer end of every lane, the done marks, and
 * the private window of task states that makes delivery exactly-once.
 *
 * Must not: trust lanes. Result descriptors, records and leases are
 * written by workers; every index, offset and length read from them is
 * checked, and an impossible one stops the job with -PARD_ECORRUPT and a
 * message naming the lane and its worker, never a crash.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/*
 * Per task in the window (task i at i & (W-1)), in three arrays: its state
 * (one byte, so that an array map's per-task passes are short loops over
 * bytes), its counts of retries and deaths, and its result while held for
 * ordered delivery.
 */
enum { SLOT_FREE = 0, SLOT_PENDING, SLOT_HELD, SLOT_DONE };
#define SLOTS8(state) (0x0101010101010101ull * (state)) /* eight slots in one word */

struct counts {
    uint64_t task;  /* the task they count, + 1 ... */
    uint32_t map;   /* ... in this map: a slot's counts start at 0 for each task */
    uint8_t tries;  /* retries used after timeouts and crashes */
    uint8_t deaths; /* workers that died holding it without a crash mark */
    uint8_t spared; /* re-queues without a death: its worker died on another task */
};

/* A held result of up to this many bytes is kept in its slot, not in a
 * malloc'd copy: most results of short tasks are numbers. */
#define SLOT_INLINE 8

struct held {
    int32_t status; /* the result's status */
    uint32_t len;   /* bytes of the result */
    union {
        uint8_t *data;              /* len > SLOT_INLINE: a private copy */
        uint8_t small[SLOT_INLINE]; /* len <= SLOT_INLINE: the bytes */
    };
};

static inline const uint8_t *held_bytes(const struct held *h)
{
    return h->len <= SLOT_INLINE ? h->small : h->data;
}

/* A batch as submitted, for re-queueing sub-ranges and reclaiming input. */
struct batch {
    uint64_t first;
    uint32_t count;
    uint64_t off; /* input records in the input arena */
    uint64_t len;
    uint64_t end; /* arena position to release once all are delivered */
};

#define MAX_DEATHS 3     /* deaths without a crash mark before a task fails */
#define PUSH_BURST 32    /* batch descriptors pushed into the task ring at once */
#define FEED_MAX   4096u /* inputs taken per feed() before results are looked at */
/* Re-queues of a task whose worker died on another task of the lease,
 * before its deaths count after all (`current` is only the worker's word). */
#define MAX_SPARED 8

/* Auto-batching aims for batches that keep a worker busy this long: long
 * enough to hide the hand-off (about a microsecond), short enough for the
 * load to stay balanced and results to stream. */
#define AUTO_TARGET_NS 200000.0
#define AUTO_MAX_BATCH 4096u

/*
 * The window's private arrays, ~18 MiB for the default 262,144 tasks, kept
 * by the client from one map to the next: allocating them per map cost
 * either clearing all of them (calloc from the heap, ~2 ms) or a page
 * fault per page touched (fresh pages). Between maps every state is
 * SLOT_FREE (end_job sees to it); counts are told apart by `maps`; held
 * results and batches are written before they are read.
 */
struct pard__window {
    uint64_t W;
    uint32_t maps; /* maps run with these arrays */
    uint8_t *state;
    struct counts *counts;
    struct held *held;
    struct batch *batches;
};

struct map {
    struct pard_client *c;
    const char *function;
    pard_input_fn next_input;
    pard_result_fn on_result;
    void *arg;
    struct pard_map_opts opts;
    struct pard_map_stats stats;

    /* pard_map_array: items in, results out, no call per task */
    bool array;
    const uint8_t *items;
    uint8_t *results;
    uint64_t nitems;
    uint64_t item_size, result_size;

    struct pard_job job;
    struct pard_lane *lanes; /* geo.lanes views */
    uint64_t job_id;
    uint64_t W; /* window */

    struct pard__window *window; /* the client's: state, counts, held, batches */
    uint64_t low;                /* every index below is delivered */
    uint64_t next;               /* next index to take from the input */
    bool input_done;

    uint64_t bhead, btail; /* window->batches, a FIFO of W entries */

    struct pard_task_desc cur; /* the batch being filled */
    uint64_t cur_end;
    struct pard_task_desc pending[PUSH_BURST]; /* full batches not yet in the ring */
    unsigned npending;

    uint8_t *carry; /* an input taken but not yet placed (arena full) */
    size_t carry_len, carry_cap;
    bool has_carry;

    struct pard_task_desc *requeue; /* descriptors waiting for the ring */
    size_t nrequeue, requeue_cap;

    uint32_t batch;   /* tasks per batch now */
    double task_ns;   /* auto: measured time per task (moving average), 0 = unknown */
    double out_bytes; /* output bytes per task (moving average), for naps */
    bool reclaiming;  /* push_desc just took a stuck task-ring slot back */
    bool fed_capped;  /* feed stopped at FEED_MAX with room and input left */
    /* Done marks are written once a task was re-queued: only a re-queued
     * descriptor (attempt > 0) makes a worker read them. */
    bool marking;
    uint32_t nactive; /* lanes with a worker, at the last look */

    uint32_t seen_epoch;
    int quiet_looks; /* reconcile: consecutive looks with nothing moving */
    bool bar;        /* opts.progress and stderr is a terminal */
    int64_t bar_start_ns, bar_drawn_ns;
    int64_t last_alive_check;
    int error; /* first fatal error */
};

static inline uint8_t *state_of(const struct map *m, uint64_t i)
{
    return &m->window->state[i & (m->W - 1)];
}

/* Task i's counts, zero until a death or retry is counted: reset when
 * first looked at, not for every task fed (most never need them). */
static inline struct counts *counts_of(const struct map *m, uint64_t i)
{
    struct counts *c = &m->window->counts[i & (m->W - 1)];
    if (c->task != i + 1 || c->map != m->window->maps)
        *c = (struct counts){.task = i + 1, .map = m->window->maps};
    return c;
}

/* Fresh tasks [from, to), pending (their counts start at 0 by counts_of). */
static inline void tasks_begin(struct map *m, uint64_t from, uint64_t to)
{
    if (to - from == 1) { /* pard_map: one at a time */
        m->window->state[from & (m->W - 1)] = SLOT_PENDING;
        return;
    }
    while (from < to) {
        uint64_t at = from & (m->W - 1), n = to - from;
        if (n > m->W - at)
            n = m->W - at; /* up to the end of the array, then from 0 */
        memset(m->window->state + at, SLOT_PENDING, n);
        from += n;
    }
}

static int fail_job(struct map *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_job(struct map *m, int code, const char *fmt, ...)
{
    if (m->error == 0) {
        char buf[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        pard__set_error(m->c, code, "job %llu (%s): %s", (unsigned long long)m->job_id, m->function,
                        buf);
        m->error = code;
    }
    return m->error;
}

/* ----------------------------------------------------------------------
 * Delivery
 * ---------------------------------------------------------------------- */

/* The progress bar: done/total, rate and ETA, redrawn at most 10 times a
 * second on stderr (only when it is a terminal). */
static void draw_bar(struct map *m, bool final)
{
    int64_t now = pard_now_ns();
    if (!final && now - m->bar_drawn_ns < 100000000)
        return;
    m->bar_drawn_ns = now;
    double secs = (double)(now - m->bar_start_ns) / 1e9;
    double rate = secs > 0 ? (double)m->stats.tasks / secs : 0;
    uint64_t total = m->opts.total;
    if (total && m->stats.tasks <= total) {
        char bar[31];
        int fill = (int)(30.0 * (double)m->stats.tasks / (double)total);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        double eta = rate > 0 ? (double)(total - m->stats.tasks) / rate : 0;
        fprintf(stderr, "\r%s [%s] %llu/%llu  %.0f/s  ETA %.1fs   ", m->function, bar,
                (unsigned long long)m->stats.tasks, (unsigned long long)total, rate, eta);
    } else {
        fprintf(stderr, "\r%s: %llu done  %.0f/s   ", m->function,
                (unsigned long long)m->stats.tasks, rate);
    }
    if (final)
        fputc('\n', stderr);
}

/* Publish the counts the daemon's stats read: once per collect, not per
 * task. Single writer: plain stores of our own counts, no RMW. */
static void publish_counts(struct map *m)
{
    atomic_store_explicit(&m->job.ctl->delivered, m->stats.tasks, memory_order_relaxed);
    atomic_store_explicit(&m->job.ctl->failed, m->stats.failed, memory_order_relaxed);
    /* Also written at each re-queue; again here, so that a worker that
     * scribbled it does not leave the daemon's totals wrong. */
    atomic_store_explicit(&m->job.ctl->requeued, m->stats.requeued, memory_order_relaxed);
}

static void callback_stopped(struct map *m, int rc, uint64_t index)
{
    if (m->error == 0) {
        pard__set_error(m->c, rc, "the result callback stopped the map at task %llu",
                        (unsigned long long)index);
        m->error = rc;
    }
}

/* Deliver one result to the user: once per task, so kept lean. */
static inline void call_back(struct map *m, uint64_t index, int status, const void *data,
                             size_t len)
{
    struct pard_result r = {
        .index = index, .status = status, .data = data, .len = len, .function = m->function};
    int rc = m->on_result(m->arg, &r);
    m->stats.tasks++;
    if (status != 0)
        m->stats.failed++;
    if (m->marking)
        atomic_store_explicit(&m->job.done[index & (m->W - 1)], index + 1, memory_order_release);
    if (__builtin_expect(m->bar, 0))
        draw_bar(m, false);
    if (__builtin_expect(rc != 0, 0))
        callback_stopped(m, rc, index);
}

/* Give back the input space of batches that are wholly delivered. */
static void release_inputs_slow(struct map *m)
{
    while (m->bhead != m->btail) {
        struct batch *b = &m->window->batches[m->bhead & (m->W - 1)];
        if (b->first + b->count > m->low)
            break;
        pard_arena_release(&m->job.input, b->end); /* our own arena: cannot fail */
        m->bhead++;
    }
}

/* Per delivered task: one comparison until the oldest batch is wholly
 * delivered (its end is at least `low` whenever a batch is outstanding). */
static inline void release_inputs(struct map *m)
{
    const struct batch *b = &m->window->batches[m->bhead & (m->W - 1)];
    if (m->bhead != m->btail && b->first + b->count <= m->low)
        release_inputs_slow(m);
}

/* Advance `low` over delivered tasks (delivering held ones in order), and
 * give back the input space of batches that are wholly delivered. */
static void advance(struct map *m)
{
    const uint64_t mask = m->W - 1;
    uint8_t *const state = m->window->state;
    while (m->low < m->next && m->error == 0) {
        /* Delivered already (array values, unordered results): pass them,
         * eight at a time where aligned. */
        uint64_t i = m->low, next = m->next, eight;
        for (;;) {
            if ((i & 7) == 0 && next - i >= 8 && mask >= 7 &&
                (memcpy(&eight, &state[i & mask], 8), eight == SLOTS8(SLOT_DONE))) {
                eight = SLOTS8(SLOT_FREE);
                memcpy(&state[i & mask], &eight, 8);
                i += 8;
            } else if (i < next && state[i & mask] == SLOT_DONE) {
                state[i++ & mask] = SLOT_FREE;
            } else {
                break;
            }
        }
        m->low = i;
        if (i == m->next || state[i & mask] != SLOT_HELD)
            break;
        struct held *h = &m->window->held[i & mask];
        call_back(m, i, h->status, held_bytes(h), h->len);
        if (h->len > SLOT_INLINE)
            free(h->data);
        h->data = NULL;
        state[i & mask] = SLOT_FREE;
        m->low++;
    }
    release_inputs(m);
}

static void hold_result(struct map *m, uint64_t i, int status, const void *data, size_t len)
{
    struct held *s = &m->window->held[i & (m->W - 1)];
    if (len <= SLOT_INLINE) {
        memcpy(s->small, data, len);
    } else {
        s->data = malloc(len);
        if (!s->data) {
            fail_job(m, -ENOMEM, "out of memory holding a result for ordered delivery");
            return;
        }
        memcpy(s->data, data, len);
    }
    s->len = (uint32_t)len;
    s->status = status;
    *state_of(m, i) = SLOT_HELD;
}

/* A result (or error) for task i arrived: deliver it now, hold it for
 * order, or drop it as a duplicate. */
static inline void accept_result(struct map *m, uint64_t i, int status, const void *data,
                                 size_t len)
{
    if (i - m->low >= m->next - m->low) { /* i < low or i >= next */
        m->stats.dropped++;
        return;
    }
    uint8_t *state = state_of(m, i);
    if (*state != SLOT_PENDING) {
        m->stats.dropped++; /* a re-queued task's second result */
        return;
    }
    if (i == m->low) {
        /* The next in order: deliver it, then whatever waited behind it. */
        call_back(m, i, status, data, len);
        *state = SLOT_FREE;
        m->low++;
        if (m->low < m->next && *state_of(m, m->low) >= SLOT_HELD)
            advance(m);
        else
            release_inputs(m);
        return;
    }
    if (m->opts.unordered) {
        call_back(m, i, status, data, len);
        *state = SLOT_DONE; /* `low` passes it when it gets here */
        return;
    }
    hold_result(m, i, status, data, len);
}

static void fail_task(struct map *m, uint64_t i, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_task(struct map *m, uint64_t i, int code, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    size_t n = pard__vformat(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    accept_result(m, i, code, msg, n);
}

/* ----------------------------------------------------------------------
 * Feeding the task ring
 * ---------------------------------------------------------------------- */

/* The task ring is shared by every worker of the job: any of them can
 * scribble its indices, and then nothing can go through it again. */
static int tasks_corrupt(struct map *m)
{
    return fail_job(m, -PARD_ECORRUPT,
                    "the task ring has impossible indices (written by a worker of the job, which "
                    "one cannot be told); the job is stopped to protect its results");
}

static void requeue_range(struct map *m, uint64_t from, uint64_t to, const bool *want);

/* The tasks of a descriptor read from shared memory (untrusted) that are
 * still outstanding, as [*from, *to); false when none are. */
static bool outstanding(const struct map *m, const struct pard_task_desc *d, uint64_t *from,
                        uint64_t *to)
{
    *from = d->first < m->low ? m->low : d->first;
    *to = d->count > m->W ? *from : d->first + d->count;
    if (*to > m->next)
        *to = m->next;
    return *from < *to;
}

/* requeue_range for tasks a dead worker held, noting when. */
static void requeue_dead(struct map *m, uint64_t from, uint64_t to, const bool *want)
{
    uint64_t before = m->stats.requeued;
    requeue_range(m, from, to, want);
    if (m->stats.requeued != before)
        m->stats.last_requeue_ns = pard_now_ns();
}

/*
 * Push one descriptor (taken by value: re-queueing below may move the array
 * it came from). We are the only producer, and callers checked for room, so
 * a wait here is a consumer between claiming a slot and freeing it. A
 * worker killed in that window leaves the slot claimed for good: after a
 * whole slice with the slot still stuck, take it back and re-queue what it
 * held. A worker that was only descheduled for that long loses the race in
 * pard_ring_mpmc_reclaim and drops the descriptor, so either way its tasks
 * run, and a second result would be dropped.
 */
static int push_desc(struct map *m, struct pard_task_desc d)
{
    for (;;) {
        /* Right after taking a slot back, the next ones are likely the same
         * dead worker's (a run of up to 32): look again after 1 ms. */
        int64_t wait = m->reclaiming ? 1000000 : PARD__SLICE_NS;
        int n = pard_ring_push_wait(&m->job.tasks, &d, 1, PARD_WAIT_ADAPTIVE, pard_now_ns() + wait);
        if (n == 1) {
            m->reclaiming = false;
            return 0;
        }
        if (n == -PARD_ECORRUPT)
            return tasks_corrupt(m);
        if (n != -ETIMEDOUT)
            return fail_job(m, n, "the task ring is corrupted: %s", pard_strerror(n));
        if (pard__daemon_alive(m->c) != 0)
            return fail_job(m, -PARD_EDAEMON, "%s", pard_last_error());
        if (pard__cancelled(m->c) ||
            atomic_load_explicit(&m->job.ctl->state, memory_order_acquire) != PARD_JOB_RUNNING)
            return fail_job(m, -PARD_ECANCELED, "cancelled while the task ring was full");
        struct pard_task_desc lost;
        int got = pard_ring_mpmc_reclaim(&m->job.tasks, &lost);
        if (got < 0)
            return tasks_corrupt(m);
        m->reclaiming = got == 1;
        uint64_t from, to;
        if (got == 1) {
            /* Its pending tasks go back in the queue (a second result is
             * dropped); the runs come from our own batch records. */
            m->stats.reclaimed++;
            if (outstanding(m, &lost, &from, &to))
                requeue_dead(m, from, to, NULL);
            if (m->error)
                return m->error;
        }
    }
}

/* Free slots in the task ring, or a negative error (the job is failed). */
static int64_t ring_room(struct map *m)
{
    int64_t count = pard_ring_count(&m->job.tasks);
    if (count < 0)
        return tasks_corrupt(m);
    return (int64_t)m->job.tasks.capacity - count;
}

/* Push the descriptors that flush_cur collected, in one burst: one claim of
 * the ring's tail and one wake-up for many small batches. */
static int push_pending(struct map *m)
{
    unsigned done = 0;
    while (done < m->npending) {
        int n = pard_ring_mpmc_push_burst(&m->job.tasks, m->pending + done, m->npending - done);
        if (n < 0)
            return fail_job(m, n, "the task ring is corrupted: %s", pard_strerror(n));
        if (n == 0) { /* a slot still being freed: wait for it */
            int rc = push_desc(m, m->pending[done]);
            if (rc != 0)
                return rc;
            n = 1;
        }
        done += (unsigned)n;
    }
    if (m->npending > 0) {
        const struct pard_task_desc *last = &m->pending[m->npending - 1];
        atomic_store_explicit(&m->job.ctl->submitted, last->first + last->count,
                              memory_order_release);
    }
    m->npending = 0;
    return 0;
}

/* Queue the batch being filled for the ring (feed pushes what is queued
 * before it returns, so nothing waits here between calls). */
static int flush_cur(struct map *m)
{
    if (m->cur.count == 0)
        return 0;
    m->pending[m->npending++] = m->cur;
    if (m->npending == PUSH_BURST) {
        int rc = push_pending(m);
        if (rc != 0)
            return rc;
    }
    struct batch *b = &m->window->batches[m->btail & (m->W - 1)];
    b->first = m->cur.first;
    b->count = m->cur.count;
    b->off = m->cur.off;
    b->len = m->cur.len;
    b->end = m->cur_end;
    m->btail++;
    m->cur.count = 0;
    return 0;
}

static int keep_carry(struct map *m, const void *data, size_t len)
{
    if (len > m->carry_cap) {
        uint8_t *b = realloc(m->carry, len);
        if (!b)
            return fail_job(m, -ENOMEM, "out of memory holding an input");
        m->carry = b;
        m->carry_cap = len;
    }
    if (len)
        memcpy(m->carry, data, len);
    m->carry_len = len;
    m->has_carry = true;
    return 0;
}

/*
 * The batch size for the next batch: the user's, or (auto) the number of
 * tasks that keeps a worker busy for AUTO_TARGET_NS by the measured time
 * per task. It grows at most twofold per step, so one noisy measurement
 * cannot overshoot, and stays small enough that every worker gets batches.
 */
static uint32_t next_batch_size(struct map *m)
{
    if (m->opts.batch != PARD_BATCH_AUTO)
        return m->opts.batch ? m->opts.batch : 1;
    uint32_t cap = AUTO_MAX_BATCH;
    uint64_t share = m->W / (4 * (uint64_t)(m->nactive ? m->nactive : 1));
    if (share < cap)
        cap = share ? (uint32_t)share : 1;
    uint32_t want = m->batch ? m->batch : 1;
    if (m->task_ns > 0) {
        double w = AUTO_TARGET_NS / m->task_ns;
        want = w < 1 ? 1 : w > cap ? cap : (uint32_t)w;
    }
    if (want > 2 * m->batch && m->batch > 0)
        want = 2 * m->batch;
    m->batch = want < 1 ? 1 : want > cap ? cap : want;
    return m->batch;
}

static int feed_records(struct map *m, uint32_t batch, uint64_t stop);
static int feed_items(struct map *m, uint32_t batch, uint64_t stop);

/* Move re-queued descriptors and fresh inputs into the ring while there is
 * room. Returns how many descriptors went in, or a negative error. */
static int feed(struct map *m)
{
    int moved = 0;
    while (m->nrequeue > 0 && ring_room(m) > 1) {
        int rc = push_desc(m, m->requeue[0]);
        if (rc != 0)
            return rc;
        memmove(m->requeue, m->requeue + 1, (m->nrequeue - 1) * sizeof(*m->requeue));
        m->nrequeue--;
        moved++;
    }
    uint32_t batch = next_batch_size(m);
    /* Return now and then to take results: with workers that keep up, the
     * ring never fills, and results (the caller's callbacks, the progress
     * bar) would otherwise wait until every input is read. */
    uint64_t stop = m->next + (batch > FEED_MAX ? batch : FEED_MAX);
    int rc = m->array ? feed_items(m, batch, stop) : feed_records(m, batch, stop);
    if (rc < 0)
        return rc;
    /* Stopped by the cap, not for want of room or input: come back at once. */
    m->fed_capped = !m->input_done && m->next >= stop;
    moved += rc;
    /* Stopped by the cap with nothing pushed (inputs failed as too big,
     * say): still progress, so the caller looks again at once. */
    if (moved == 0 && m->fed_capped)
        moved = 1;
    /* Whatever stopped us, let workers start on the partial batch. */
    if (m->cur.count > 0 && m->error == 0) {
        if ((rc = flush_cur(m)) != 0)
            return rc;
        moved++;
    }
    if (m->error == 0 && (rc = push_pending(m)) != 0)
        return rc;
    return moved;
}

/* Room to start a batch: in the window, and in the ring for it and one
 * more descriptor (only our own pushes take room). */
static bool batch_room(struct map *m, uint64_t stop)
{
    return m->next - m->low < m->W && ring_room(m) - (int64_t)m->npending >= 2 && m->next < stop &&
           !pard__cancelled(m->c);
}

/* pard_map: take inputs from the callback one at a time, as records. */
static int feed_records(struct map *m, uint32_t batch, uint64_t stop)
{
    int moved = 0;
    uint64_t limit = m->job.input.capacity / 2;
    while (!m->input_done && m->error == 0) {
        if (m->cur.count >= batch) {
            int rc = flush_cur(m);
            if (rc != 0)
                return rc;
            moved++;
        }
        /* Room for the batch being filled and one more descriptor, checked
         * as a batch starts: only our own pushes take room. */
        if (m->next - m->low >= m->W || (m->cur.count == 0 && !batch_room(m, stop)) ||
            pard__cancelled(m->c))
            break;
        const void *data;
        size_t len;
        if (m->has_carry) {
            data = m->carry;
            len = m->carry_len;
        } else {
            int rc = m->next_input(m->arg, m->next, &data, &len);
            if (rc == 0) {
                m->input_done = true;
                break;
            }
            if (rc < 0)
                return fail_job(m, rc, "the input callback failed at input %llu: %s",
                                (unsigned long long)m->next, pard_strerror(rc));
        }
        uint64_t size = pard_record_size(len);
        if (size > limit || len > UINT32_MAX) {
            /* It can never fit: fail this task alone, with the reason. A
             * batch holds consecutive indices: push the one being filled
             * first, as this index will be in none. */
            int rc = flush_cur(m);
            if (rc != 0)
                return rc;
            uint64_t i = m->next++;
            tasks_begin(m, i, i + 1);
            m->has_carry = false;
            fail_task(m, i, -PARD_ETOOBIG,
                      "input %llu is %zu bytes, over the job's limit of %llu bytes per input",
                      (unsigned long long)i, len, (unsigned long long)(limit - 8));
            continue;
        }
        struct pard_span span;
        int rc = pard_arena_alloc(&m->job.input, size, &span);
        if (rc < 0)
            return fail_job(m, rc, "the input arena is corrupted: %s", pard_strerror(rc));
        if (rc == 1) { /* full until results come back */
            if (!m->has_carry && (rc = keep_carry(m, data, len)) != 0)
                return rc;
            break;
        }
        if (m->cur.count > 0 && span.off != m->cur.off + m->cur.len) {
            if ((rc = flush_cur(m)) != 0) /* wrapped: a batch is contiguous */
                return rc;
            moved++;
        }
        uint8_t *p = pard_arena_ptr(&m->job.input, span.off);
        struct pard_record rec = {.len = (uint32_t)len, .status = 0};
        memcpy(p, &rec, sizeof(rec));
        if (len)
            memcpy(p + sizeof(rec), data, len);
        m->has_carry = false;
        if (m->cur.count == 0) {
            m->cur.first = m->next;
            m->cur.attempt = 0;
            m->cur.off = span.off;
            m->cur.len = 0;
        }
        m->cur.count++;
        m->cur.len += size;
        m->cur_end = span.end;
        tasks_begin(m, m->next, m->next + 1);
        m->next++;
    }
    return m->error ? m->error : moved;
}

/* pard_map_array: a whole batch of items at once, one arena span and one
 * copy, and nothing per task but its window slot. */
static int feed_items(struct map *m, uint32_t batch, uint64_t stop)
{
    int moved = 0;
    /* As for records: no batch takes more than half the arena. */
    uint64_t most = m->item_size ? m->job.input.capacity / 2 / m->item_size : UINT32_MAX;
    while (!m->input_done && m->error == 0 && batch_room(m, stop)) {
        /* Auto-batching: until a result says how long a task takes, a few
         * small batches only, one or two per worker; after that the size
         * grows (at most twofold) batch by batch, not feed by feed. */
        if (m->opts.batch == PARD_BATCH_AUTO) {
            if (m->task_ns <= 0 && moved >= 2 * (int)(m->nactive ? m->nactive : 2))
                break;
            if (moved > 0)
                batch = next_batch_size(m);
        }
        uint64_t k = m->nitems - m->next;
        if (k == 0) {
            m->input_done = true;
            break;
        }
        if (k > batch)
            k = batch;
        if (k > m->W - (m->next - m->low))
            k = m->W - (m->next - m->low);
        if (k > most)
            k = most;
        uint64_t bytes = k * m->item_size;
        struct pard_span span;
        int rc = pard_arena_alloc(&m->job.input, bytes > 8 ? bytes : 8, &span);
        if (rc < 0)
            return fail_job(m, rc, "the input arena is corrupted: %s", pard_strerror(rc));
        if (rc == 1)
            break; /* full until results come back */
        if (bytes)
            memcpy(pard_arena_ptr(&m->job.input, span.off), m->items + m->next * m->item_size,
                   bytes);
        m->cur = (struct pard_task_desc){
            .first = m->next, .count = (uint32_t)k, .attempt = 0, .off = span.off, .len = bytes};
        m->cur_end = span.end;
        tasks_begin(m, m->next, m->next + k);
        m->next += k;
        m->input_done = m->next == m->nitems;
        if ((rc = flush_cur(m)) != 0)
            return rc;
        moved++;
    }
    return moved;
}

/* ----------------------------------------------------------------------
 * Re-queueing
 * ---------------------------------------------------------------------- */

static struct batch *batch_of(struct map *m, uint64_t i)
{
    uint64_t lo = m->bhead, hi = m->btail; /* binary search by first */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        struct batch *b = &m->window->batches[mid & (m->W - 1)];
        if (i < b->first)
            hi = mid;
        else if (i >= b->first + b->count)
            lo = mid + 1;
        else
            return b;
    }
    return NULL;
}

static int add_requeue(struct map *m, const struct pard_task_desc *d)
{
    if (m->nrequeue == m->requeue_cap) {
        size_t cap = m->requeue_cap ? m->requeue_cap * 2 : 16;
        struct pard_task_desc *r = realloc(m->requeue, cap * sizeof(*r));
        if (!r)
            return fail_job(m, -ENOMEM, "out of memory re-queueing tasks");
        m->requeue = r;
        m->requeue_cap = cap;
    }
    if (!m->marking) {
        /* From now on workers may read done marks (of this descriptor,
         * pushed after this): a reused region holds the last job's. */
        memset((void *)m->job.done, 0, m->W * sizeof(*m->job.done));
        m->marking = true;
    }
    m->requeue[m->nrequeue++] = *d;
    m->stats.requeued += d->count;
    atomic_store_explicit(&m->job.ctl->requeued, m->stats.requeued, memory_order_relaxed);
    return 0;
}

/*
 * Re-queue the pending tasks in [from, to) that `want` selects (NULL: all),
 * as runs of consecutive tasks within one batch (so each run's inputs are
 * contiguous). Our own input records are walked with bounds checks: a
 * worker could have scribbled on the input arena (an array job's items
 * have no headers to scribble on).
 */
static void requeue_range(struct map *m, uint64_t from, uint64_t to, const bool *want)
{
    uint64_t i = from;
    while (i < to && m->error == 0) {
        if ((want && !want[i - from]) || *state_of(m, i) != SLOT_PENDING) {
            i++;
            continue;
        }
        struct batch *b = batch_of(m, i);
        if (!b) { /* not submitted yet: it is still in `cur` or carry */
            i++;
            continue;
        }
        const void *base = pard_arena_read(&m->job.input, b->off, b->len);
        struct pard_records it;
        pard_records_init(&it, base, base ? b->len : 0);
        uint64_t k = b->first, run_off = 0, run_len = 0, run_first = 0;
        uint32_t run_count = 0;
        uint8_t attempt = 0;
        for (; k < b->first + b->count; k++) {
            /* An array job's items have one size: nothing to walk. */
            uint64_t pos = m->array ? (k - b->first) * m->item_size : it.pos;
            struct pard_record rec;
            const void *payload;
            int got = m->array ? 1 : pard_records_next(&it, &rec, &payload);
            uint64_t size = m->array ? m->item_size : it.pos - pos;
            bool take =
                k >= i && k < to && (!want || want[k - from]) && *state_of(m, k) == SLOT_PENDING;
            if (take && got != 1) {
                fail_task(m, k, -PARD_ECORRUPT,
                          "the input of task %llu was overwritten in shared memory",
                          (unsigned long long)k);
                take = false;
            }
            if (take) {
                if (run_count == 0) {
                    run_first = k;
                    run_off = b->off + pos;
                    run_len = 0;
                }
                run_count++;
                run_len += size;
                uint8_t t = counts_of(m, k)->tries + counts_of(m, k)->deaths;
                if (t > attempt)
                    attempt = t;
            }
            if ((!take || k + 1 == b->first + b->count) && run_count > 0) {
                struct pard_task_desc d = {.first = run_first,
                                           .count = run_count,
                                           .attempt = attempt + 1u,
                                           .off = run_off,
                                           .len = run_len};
                add_requeue(m, &d);
                run_count = 0;
            }
        }
        i = b->first + b->count;
    }
}

/* ----------------------------------------------------------------------
 * Lanes
 * ---------------------------------------------------------------------- */

static int lane_corrupt(struct map *m, uint32_t li, const char *what)
{
    return fail_job(m, -PARD_ECORRUPT,
                    "lane %u (worker pid %d) wrote %s; the job is stopped to protect its results",
                    li, (int)atomic_load(&m->lanes[li].ctl->pid), what);
}

/*
 * An array job's results for tasks [from, to), back to back at src: copied
 * into the caller's array a run at a time, skipping tasks that are not
 * pending (a re-queued task's second result).
 */
static void take_values(struct map *m, uint64_t from, uint64_t to, const uint8_t *src)
{
    const uint64_t rs = m->result_size, mask = m->W - 1;
    uint8_t *const state = m->window->state;
    _Atomic uint64_t *const done = m->job.done;
    if (from < m->low) { /* a second result of tasks delivered already */
        uint64_t old = (to < m->low ? to : m->low) - from;
        m->stats.dropped += old;
        src += old * rs;
        from += old;
    }
    /* [from, to) now lies in [low, next) (drain_lane checked `to`). */
    uint64_t run = from, taken = 0;
    for (uint64_t i = from; i < to;) {
        /* Eight at a time where they are aligned (W is a multiple of 8, so
         * they never wrap), the common case: all pending. */
        uint64_t eight;
        if ((i & 7) == 0 && to - i >= 8 && mask >= 7 &&
            (memcpy(&eight, &state[i & mask], 8), eight == SLOTS8(SLOT_PENDING))) {
            eight = SLOTS8(SLOT_DONE);
            memcpy(&state[i & mask], &eight, 8);
            for (uint64_t k = i; m->marking && k < i + 8; k++)
                atomic_store_explicit(&done[k & mask], k + 1, memory_order_release);
            taken += 8;
            i += 8;
            continue;
        }
        if (state[i & mask] == SLOT_PENDING) {
            state[i & mask] = SLOT_DONE; /* `low` passes it in advance() */
            if (m->marking)
                atomic_store_explicit(&done[i & mask], i + 1, memory_order_release);
            taken++;
            i++;
            continue;
        }
        m->stats.dropped++; /* a re-queued task's second result */
        if (i > run && rs)
            memcpy(m->results + run * rs, src + (run - from) * rs, (i - run) * rs);
        run = ++i;
    }
    if (to > run && rs)
        memcpy(m->results + run * rs, src + (run - from) * rs, (to - run) * rs);
    m->stats.tasks += taken;
}

/*
 * One result span of an array job (job.h): the values of d->count tasks,
 * then a record for each task without a value, in task order. The records
 * split the values into runs; each task is taken exactly once.
 */
static int take_array_span(struct map *m, uint32_t li, const struct pard_result_desc *d,
                           const uint8_t *base)
{
    const uint64_t vals = pard_array_bytes(d->count, m->result_size);
    if (d->len < vals)
        return lane_corrupt(m, li, "an array result span shorter than its values");
    struct pard_records it;
    pard_records_init(&it, base + vals, d->len - vals);
    uint64_t i = d->first, end = d->first + d->count;
    while (m->error == 0) {
        struct pard_record rec;
        const void *payload = NULL;
        int got = pard_records_next(&it, &rec, &payload);
        if (got < 0)
            return lane_corrupt(m, li, "a result record that runs past its span");
        uint64_t index = end;
        if (got == 1) {
            if (rec.len < 8)
                return lane_corrupt(m, li, "an array result record without its task index");
            memcpy(&index, payload, 8);
            if (index < i || index >= end)
                return lane_corrupt(m, li, "an array result record for a task not in its span");
        }
        take_values(m, i, index, base + (i - d->first) * m->result_size);
        if (got == 0)
            break;
        if (rec.status != PARD_REC_SKIPPED)
            accept_result(m, index, -PARD_ETASK, (const uint8_t *)payload + 8, rec.len - 8);
        i = index + 1;
    }
    if (__builtin_expect(m->bar, 0))
        draw_bar(m, false);
    advance(m);
    return m->error;
}

/* Take every result descriptor waiting in lane li. Returns how many. */
static int drain_lane(struct map *m, uint32_t li)
{
    struct pard_lane *lane = &m->lanes[li];
    struct pard_result_desc d[16];
    int total = 0;
    for (;;) {
        int n = pard_ring_spsc_pop_burst(&lane->results, d, 16);
        if (n < 0)
            return lane_corrupt(m, li, "impossible result ring indices");
        if (n == 0)
            break;
        for (int k = 0; k < n && m->error == 0; k++) {
            if (d[k].count == 0 || d[k].count > m->W || d[k].first >= m->next ||
                d[k].count > m->next - d[k].first)
                return lane_corrupt(m, li, "a result descriptor for tasks never submitted");
            const void *base = pard_arena_read(&lane->output, d[k].off, d[k].len);
            if (!base)
                return lane_corrupt(m, li, "a result span outside its output arena");
            if (d[k].busy_ns > 0) {
                double per = (double)d[k].busy_ns / d[k].count;
                m->task_ns = m->task_ns > 0 ? 0.75 * m->task_ns + 0.25 * per : per;
            }
            double bytes = (double)d[k].len / d[k].count;
            m->out_bytes = m->out_bytes > 0 ? 0.75 * m->out_bytes + 0.25 * bytes : bytes;
            if (m->array) {
                int rc = take_array_span(m, li, &d[k], base);
                if (rc != 0)
                    return rc;
                if (pard_arena_release(&lane->output, d[k].end) != 0)
                    return lane_corrupt(m, li, "an output arena position out of range");
                continue;
            }
            struct pard_records it;
            pard_records_init(&it, base, d[k].len);
            for (uint32_t j = 0; j < d[k].count && m->error == 0; j++) {
                struct pard_record rec;
                const void *payload;
                if (pard_records_next(&it, &rec, &payload) != 1)
                    return lane_corrupt(m, li, "a result record that runs past its span");
                if (rec.status == PARD_REC_SKIPPED)
                    continue;
                int status = rec.status == PARD_REC_OK ? 0 : -PARD_ETASK;
                accept_result(m, d[k].first + j, status, payload, rec.len);
            }
            if (pard_arena_release(&lane->output, d[k].end) != 0)
                return lane_corrupt(m, li, "an output arena position out of range");
        }
        total += n;
        /* After the releases: a worker waiting for arena space re-checks. */
        pard_event_notify(&lane->results.hdr->not_full);
        if (m->error)
            return m->error;
    }
    return total;
}

static const char *signal_name(int sig)
{
    const char *s = sigabbrev_np(sig);
    return s ? s : "unknown";
}

/* A lane whose worker died: drain it, settle its lease, give it back. */
static int reclaim_lane(struct map *m, uint32_t li)
{
    struct pard_lane *lane = &m->lanes[li];
    struct pard_lane_ctl *ctl = lane->ctl;
    int rc = drain_lane(m, li);
    if (rc < 0)
        return rc;
    if (atomic_load_explicit(&ctl->leased, memory_order_acquire)) {
        struct pard_task_desc lease = ctl->lease;
        uint64_t current = atomic_load(&ctl->current);
        int sig = atomic_load(&ctl->crash_signal);
        uint32_t death = atomic_load(&ctl->death);
        int pid = atomic_load(&ctl->pid);
        uint64_t from, to;
        if (outstanding(m, &lease, &from, &to)) {
            bool *want = calloc(to - from, sizeof(bool));
            if (!want)
                return fail_job(m, -ENOMEM, "out of memory re-queueing tasks");
            for (uint64_t i = from; i < to; i++) {
                struct counts *s = counts_of(m, i);
                if (*state_of(m, i) != SLOT_PENDING)
                    continue;
                bool culprit = i == current && (death == PARD_DEATH_TIMEOUT || sig != 0);
                if (culprit && s->tries < m->opts.retries) {
                    s->tries++;
                    want[i - from] = true;
                } else if (culprit && death == PARD_DEATH_TIMEOUT) {
                    fail_task(m, i, -PARD_ETASKTIMEOUT,
                              "task %llu of '%s' exceeded its time limit of %u ms; its worker "
                              "(pid %d) was killed",
                              (unsigned long long)i, m->function, m->opts.timeout_ms, pid);
                } else if (culprit) {
                    fail_task(m, i, -PARD_EWORKERDIED,
                              "task %llu of '%s' crashed its worker (pid %d) with %s",
                              (unsigned long long)i, m->function, pid, signal_name(sig));
                } else if (i != current && current >= from && current < to &&
                           s->spared < MAX_SPARED) {
                    /* Not the task it died in: finished (its result not
                     * pushed yet) or never started. Spared a death, a few
                     * times: `current` is only the worker's word. */
                    s->spared++;
                    want[i - from] = true;
                } else if (++s->deaths >= MAX_DEATHS) {
                    fail_task(m, i, -PARD_EWORKERDIED,
                              "task %llu of '%s': %d workers died while running it",
                              (unsigned long long)i, m->function, MAX_DEATHS);
                } else {
                    want[i - from] = true;
                }
            }
            requeue_dead(m, from, to, want);
            free(want);
        }
    }
    rc = pard_job_lane_reset(&m->job, li);
    if (rc == 0)
        rc = pard_job_lane(&m->job, li, lane);
    if (rc != 0)
        return lane_corrupt(m, li, "a lane that cannot be reset");
    /* Release: the reset lane is visible before the daemon may reuse it. */
    atomic_store_explicit(&ctl->death, PARD_DEATH_NONE, memory_order_relaxed);
    atomic_store_explicit(&ctl->state, PARD_LANE_FREE, memory_order_release);
    return 0;
}

/* Drain live lanes, reclaim dead ones. Returns results moved. */
static int collect(struct map *m)
{
    int moved = 0;
    /* The epoch only wakes us; the lane states below are the truth. */
    m->seen_epoch = atomic_load_explicit(&m->job.ctl->lanes_epoch, memory_order_acquire);
    uint32_t active = 0;
    for (uint32_t li = 0; li < m->job.geo.lanes && m->error == 0; li++) {
        uint32_t state = atomic_load_explicit(&m->lanes[li].ctl->state, memory_order_acquire);
        active += state == PARD_LANE_ACTIVE;
        if (state == PARD_LANE_ACTIVE) {
            int n = drain_lane(m, li);
            if (n < 0)
                return n;
            moved += n;
        } else if (state == PARD_LANE_DEAD) {
            int rc = reclaim_lane(m, li);
            if (rc < 0)
                return rc;
            moved++;
        }
    }
    m->nactive = active;
    if (moved > 0)
        publish_counts(m);
    return moved;
}

/* ----------------------------------------------------------------------
 * Waiting and reconciling
 * ---------------------------------------------------------------------- */

static bool map_ready(void *arg)
{
    struct map *m = arg;
    if (atomic_load_explicit(&m->job.ctl->lanes_epoch, memory_order_acquire) != m->seen_epoch ||
        atomic_load_explicit(&m->job.ctl->state, memory_order_acquire) != PARD_JOB_RUNNING ||
        pard__cancelled(m->c))
        return true;
    /* A result to take, or a lane whose ring pop will refuse: collect()
     * acts on both. (Not pard_ring_count: the consumer never uses the
     * shared tail, so a scribbled one must not wake it for nothing.) */
    for (uint32_t li = 0; li < m->job.geo.lanes; li++)
        if (pard_ring_spsc_peek(&m->lanes[li].results) != 0)
            return true;
    return false;
}

/*
 * A worker that died between popping a batch and leasing it took the
 * batch with it. When nothing is queued, leased or in flight for two looks
 * in a row, every pending task is re-queued; duplicates are dropped.
 */
static void reconcile(struct map *m, bool progressed)
{
    int64_t queued = pard_ring_count(&m->job.tasks);
    if (queued < 0) { /* idle because nobody can use the ring any more */
        tasks_corrupt(m);
        return;
    }
    bool quiet =
        !progressed && m->low < m->next && m->nrequeue == 0 && m->cur.count == 0 && queued == 0;
    for (uint32_t li = 0; li < m->job.geo.lanes && quiet; li++) {
        struct pard_lane *l = &m->lanes[li];
        if (atomic_load(&l->ctl->state) != PARD_LANE_FREE &&
            (atomic_load(&l->ctl->leased) || pard_ring_spsc_peek(&l->results) != 0))
            quiet = false;
    }
    if (!quiet) {
        m->quiet_looks = 0;
        return;
    }
    if (++m->quiet_looks < 2)
        return;
    m->quiet_looks = 0;
    requeue_range(m, m->low, m->next, NULL);
}

/* ----------------------------------------------------------------------
 * The map
 * ---------------------------------------------------------------------- */

void pard__window_free(struct pard_client *c)
{
    struct pard__window *w = c->window;
    if (!w)
        return;
    free(w->state);
    free(w->counts);
    free(w->held);
    free(w->batches);
    free(w);
    c->window = NULL;
}

static struct pard__window *window_get(struct pard_client *c, uint64_t W)
{
    if (c->window && c->window->W != W)
        pard__window_free(c);
    struct pard__window *w = c->window;
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w)
            return NULL;
        c->window = w;
        w->W = W;
        w->state = calloc(W, sizeof(*w->state)); /* every slot SLOT_FREE */
        w->counts = calloc(W, sizeof(*w->counts));
        w->held = malloc(W * sizeof(*w->held));
        w->batches = malloc(W * sizeof(*w->batches));
        if (!w->state || !w->counts || !w->held || !w->batches) {
            pard__window_free(c);
            return NULL;
        }
    }
    w->maps++;
    return w;
}

static int start_job(struct map *m)
{
    struct pard_msg *msg = m->c->msg;
    pard_msg_init(msg, PARD_MSG_SUBMIT);
    snprintf(msg->submit.function, sizeof(msg->submit.function), "%s", m->function);
    msg->submit.timeout_ms = m->opts.timeout_ms;
    msg->submit.retries = m->opts.retries;
    msg->submit.has_wait_mode = true;
    msg->submit.wait_mode = m->opts.wait_mode;
    msg->submit.max_lanes = m->opts.max_workers;
    msg->submit.shared = m->opts.shared;
    msg->submit.array = m->array;
    msg->submit.item_size = (uint32_t)m->item_size;
    msg->submit.result_size = (uint32_t)m->result_size;
    int rc = pard__send(m->c, msg, -1);
    int fd = -1;
    while (rc == 0) {
        rc = pard__recv(m->c, 15000, &fd);
        if (rc == -ETIMEDOUT)
            return pard__set_error(m->c, rc, "pard did not answer the submit of '%s'", m->function);
        if (rc != 0)
            return rc;
        if (msg->type == PARD_MSG_ERROR)
            return pard__set_error(m->c, msg->error.code, "cannot map '%s': %s", m->function,
                                   msg->error.message);
        if (msg->type == PARD_MSG_JOB && fd >= 0)
            break;
        if (fd >= 0) /* a stray reply from an earlier job: skip it */
            close(fd);
        fd = -1;
    }
    m->job_id = msg->job.job_id;
    rc = pard_job_attach_kept(&m->job, fd, &m->c->kept_job);
    close(fd);
    if (rc != 0)
        return pard__set_error(m->c, rc, "cannot attach to job %llu: %s",
                               (unsigned long long)m->job_id, pard_strerror(rc));
    m->W = m->job.geo.window;
    m->lanes = calloc(m->job.geo.lanes, sizeof(*m->lanes));
    m->window = window_get(m->c, m->W);
    if (!m->lanes || !m->window)
        return pard__set_error(m->c, -ENOMEM, "out of memory for job %llu",
                               (unsigned long long)m->job_id);
    for (uint32_t li = 0; li < m->job.geo.lanes; li++)
        if ((rc = pard_job_lane(&m->job, li, &m->lanes[li])) != 0)
            return pard__set_error(m->c, rc, "job %llu: lane %u is corrupted",
                                   (unsigned long long)m->job_id, li);
    return 0;
}

static void end_job(struct map *m)
{
    if (m->job_id) {
        struct pard_msg *msg = m->c->msg;
        pard_msg_init(msg, PARD_MSG_JOB_END);
        msg->job_end.job_id = m->job_id;
        pard__send(m->c, msg, -1); /* a dead daemon needs no goodbye */
    }
    /* Only [low, next) can hold anything but SLOT_FREE: leave it all free
     * for the next map, giving back held copies. */
    for (uint64_t i = m->low; m->window && i < m->next; i++) {
        uint8_t *state = state_of(m, i);
        if (*state == SLOT_HELD && m->window->held[i & (m->W - 1)].len > SLOT_INLINE)
            free(m->window->held[i & (m->W - 1)].data);
        *state = SLOT_FREE;
    }
    free(m->lanes);
    free(m->carry);
    free(m->requeue);
    if (m->job.region.base)
        pard_job_close_kept(&m->job, &m->c->kept_job);
}

/* An adaptive wait spins ~50 µs before it sleeps. When the next result is
 * due much later than that (long tasks in big batches), spinning only takes
 * a core from a worker: with as many workers as cores, the submitter is the
 * third process on two cores. Then sleep at once. */
#define SPIN_WORTH_NS 100000.0

static enum pard_wait_mode result_wait_mode(const struct map *m)
{
    if (m->opts.wait_mode != PARD_WAIT_ADAPTIVE || m->task_ns <= 0)
        return m->opts.wait_mode;
    double batch = m->opts.batch != PARD_BATCH_AUTO ? m->opts.batch : m->batch;
    double due = m->task_ns * batch / (m->nactive ? m->nactive : 1);
    return due > SPIN_WORTH_NS ? PARD_WAIT_BLOCK : PARD_WAIT_ADAPTIVE;
}

/*
 * When the task ring holds plenty of work, nothing needs the submitter for
 * a while: it naps through part of it (also right after taking results), without asking to be
 * woken, so workers never pay a wake-up system call for it and it does not take a core from them.
 * (Waiting for each result instead, with tasks of a few microseconds, made three busy processes of
 * two workers on two cores.) The nap is half the time the queued work lasts, bounded by half the
 * time a lane's result ring and output arena take to fill, and NAP_MAX_NS; under NAP_MIN_NS a sleep
 * is not worth its wake-up. Returns 0 for no nap.
 */
#define NAP_MIN_NS 50000.0
#define NAP_MAX_NS 2000000.0

static int64_t nap_ns(struct map *m)
{
    if (m->opts.wait_mode == PARD_WAIT_SPIN || m->task_ns <= 0 || m->nactive == 0)
        return 0;
    int64_t queued = pard_ring_count(&m->job.tasks);
    if (queued <= 0)
        return 0;
    uint32_t batch = m->opts.batch != PARD_BATCH_AUTO ? m->opts.batch : m->batch;
    double per_desc = batch > 0 ? batch : 1;
    double drain = (double)queued * per_desc * m->task_ns / m->nactive;
    double lane_tasks = (double)m->job.geo.lane_ring * per_desc;
    /* Bytes a task takes in a lane's output arena: a record's header and
     * padding at least; an array job's values only (a span takes 64). */
    double least = m->array ? 64.0 / per_desc : 8;
    double arena_tasks =
        (double)m->job.geo.output_arena / (m->out_bytes > least ? m->out_bytes : least);
    if (arena_tasks < lane_tasks)
        lane_tasks = arena_tasks;
    double fill = lane_tasks * m->task_ns;
    double nap = (drain < fill ? drain : fill) / 2;
    if (nap < NAP_MIN_NS)
        return 0;
    return (int64_t)(nap > NAP_MAX_NS ? NAP_MAX_NS : nap);
}

/* Once a slice: is the daemon still there (the map fails if not), and did
 * a private worker die (it is forked again)? */
static int look_around(struct map *m, int64_t now)
{
    m->last_alive_check = now;
    pard__private_respawn(m->c);
    int rc = pard__daemon_alive(m->c);
    return rc != 0 ? fail_job(m, rc, "%s", pard_last_error()) : 0;
}

static int run(struct map *m)
{
    int rc = start_job(m);
    if (rc != 0)
        return rc;
    int64_t t0 = pard_now_ns();
    m->last_alive_check = t0;
    m->bar = m->opts.progress && isatty(STDERR_FILENO);
    m->bar_start_ns = t0;
    while (m->error == 0) {
        int fed = feed(m);
        if (fed < 0)
            break;
        int got = collect(m);
        if (got < 0)
            break;
        if (m->input_done && !m->has_carry && m->low == m->next)
            break; /* every result delivered */
        uint32_t state = atomic_load_explicit(&m->job.ctl->state, memory_order_acquire);
        if (pard__cancelled(m->c) || state == PARD_JOB_CANCELLED) {
            fail_job(m, -PARD_ECANCELED, "cancelled after %llu of %llu results",
                     (unsigned long long)m->stats.tasks, (unsigned long long)m->next);
            break;
        }
        if (state == PARD_JOB_ENDED) {
            fail_job(m, -PARD_EDAEMON, "the daemon ended the job");
            break;
        }
        if (state != PARD_JOB_RUNNING) {
            fail_job(m, -PARD_ECORRUPT,
                     "the job's state word holds %u, a value pard never writes (a worker of the "
                     "job wrote it); the job is stopped to protect its results",
                     state);
            break;
        }
        int64_t now = pard_now_ns();
        /* Look at the daemon now and then, however this loop comes round:
         * busy, or woken with nothing to do. */
        if (now - m->last_alive_check > PARD__SLICE_NS && look_around(m, now) != 0)
            break;
        /* Nap whenever the ring holds plenty, even right after moving
         * results: going round again at once for the next few would keep
         * this process busy beside the workers for the whole map. Not when
         * feed stopped at its cap with room left: that would leave the
         * ring short while we sleep. */
        if (fed > 0 || got > 0)
            m->quiet_looks = 0;
        int64_t nap = m->fed_capped ? 0 : nap_ns(m);
        if (nap > 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = nap};
            nanosleep(&ts, NULL);
            continue;
        }
        if (fed > 0 || got > 0)
            continue;
        rc = pard_wait_until(&m->job.ctl->results, result_wait_mode(m), map_ready, m,
                             now + PARD__SLICE_NS);
        if (rc == -ETIMEDOUT) {
            if (look_around(m, pard_now_ns()) != 0)
                break;
            reconcile(m, false);
        }
    }
    publish_counts(m); /* results delivered by feed() (inputs too big) too */
    m->stats.elapsed_ns = pard_now_ns() - t0;
    if (m->bar)
        draw_bar(m, true);
    return m->error;
}

/* A map on c: the function's name checked, the options; then run() with
 * the inputs the caller set. */
static int map_new(struct pard_client *c, const char *function, const struct pard_map_opts *opts,
                   struct map **out)
{
    if (!pard_name_valid(function))
        return pard__set_error(c, -EINVAL, "'%s' is not a valid function name", function);
    struct map *m = calloc(1, sizeof(*m));
    if (!(*out = m))
        return -ENOMEM;
    m->c = c;
    m->function = function;
    if (opts)
        m->opts = *opts;
    m->batch = 1;
    if (m->opts.retries > UINT8_MAX) /* slot.tries counts to 255 */
        m->opts.retries = UINT8_MAX;
    return 0;
}

static int map_run(struct map *m, struct pard_map_stats *stats)
{
    int rc = run(m);
    /* A cancel applies to the map it interrupted (or, sent between maps,
     * to the next one): once a map is over, it is spent. */
    atomic_store_explicit(&m->c->cancel, 0, memory_order_relaxed);
    end_job(m);
    if (stats)
        *stats = m->stats;
    free(m);
    return rc;
}

int pard_map(struct pard_client *c, const char *function, pard_input_fn next_input,
             pard_result_fn on_result, void *arg, const struct pard_map_opts *opts,
             struct pard_map_stats *stats)
{
    if (!c || !function || !next_input || !on_result)
        return -EINVAL;
    struct map *m;
    int rc = map_new(c, function, opts, &m);
    if (rc != 0)
        return rc;
    m->next_input = next_input;
    m->on_result = on_result;
    m->arg = arg;
    return map_run(m, stats);
}

/* pard_map_array without on_error: the first failure stops the map, as an
 * exception in a task stops Pool.map. */
static int first_failure_stops(void *arg, const struct pard_result *r)
{
    struct map *m = arg;
    return fail_job(m, -PARD_ETASK, "task %llu failed: %.*s", (unsigned long long)r->index,
                    (int)(r->len > 300 ? 300 : r->len), (const char *)r->data);
}

int pard_map_array(struct pard_client *c, const char *function, const void *items, size_t item_size,
                   size_t n, void *results, size_t result_size, pard_result_fn on_error, void *arg,
                   const struct pard_map_opts *opts, struct pard_map_stats *stats)
{
    if (!c || !function || (n && item_size && !items) || (n && result_size && !results))
        return -EINVAL;
    if (item_size > UINT32_MAX || result_size > UINT32_MAX ||
        (item_size && n > SIZE_MAX / item_size) || (result_size && n > SIZE_MAX / result_size))
        return pard__set_error(c, -EINVAL,
                               "an array map of %zu items of %zu bytes into results of %zu "
                               "bytes does not fit in memory",
                               n, item_size, result_size);
    struct map *m;
    int rc = map_new(c, function, opts, &m);
    if (rc != 0)
        return rc;
    m->array = true;
    m->items = items;
    m->item_size = item_size;
    m->nitems = n;
    m->results = results;
    m->result_size = result_size;
    m->input_done = n == 0;
    m->on_result = on_error ? on_error : first_failure_stops;
    m->arg = on_error ? arg : m;
    m->opts.total = n;
    return map_run(m, stats);
}
