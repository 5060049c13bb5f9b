/*
 * hostile_worker.c — a worker that writes garbage into a job's shared
 * memory, for test_hostile.c. Built for the tests only.
 *
 * It is a worker of its own, not libpard's loop: it speaks the protocol
 * through libpard's internal connection helpers (internal.h), attaches to
 * the job region like any worker (pard_job_attach, pard_job_lane) and then
 * writes whatever it likes. It registers one function (default "hostile")
 * that squares decimal integers, like the example worker's square.
 *
 *   hostile_worker --socket PATH --mode MODE [--function NAME] [--exit]
 *                  [--mark FILE]
 *
 * On the first batch it takes, MODE says what it scribbles:
 *
 *   none      nothing: a well-behaved worker (the helper of some tests)
 *   ring      its lane's result ring head and tail indices
 *   desc      a result descriptor whose span lies outside the output arena
 *   record    result records with impossible lengths in its output arena
 *   lease     its lease: garbage task index, count and start time (far in
 *             the future, so a time limit never seems to expire)
 *   tasks     the job's shared task ring head and tail (MPMC)
 *   counters  the job's counters and lane epoch (submitted, delivered,
 *             failed, requeued), before every batch, then runs it well
 *   state     the job's state word: a value no state has
 *   tail      its lane's result ring tail only, to a plausible value ahead
 *             of head (the submitter never reads it; it must not be woken
 *             by it either)
 *   items     (an array job of 8-byte results) a span of values whose error
 *             record names a task outside the span
 *   claim     no scribble: it claims the next task-ring position (the CAS
 *             on head that starts a pop) and kills itself with SIGKILL
 *             before it copies the descriptor or releases the slot, as a
 *             worker killed at that instant would
 *
 * After the scribble it lingers in the job (holding its lane, doing
 * nothing) until the job ends or the daemon detaches it, then serves on;
 * with --exit it exits with status 0 right after the scribble instead.
 * It prints "hostile: scribbled MODE" on stderr when it has scribbled, and
 * with --mark creates FILE then, for a test to wait on.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

enum mode {
    M_NONE,
    M_RING,
    M_DESC,
    M_RECORD,
    M_LEASE,
    M_TASKS,
    M_COUNTERS,
    M_STATE,
    M_TAIL,
    M_CLAIM,
    M_ITEMS
};
static const char *const mode_names[] = {"none",     "ring",  "desc", "record", "lease", "tasks",
                                         "counters", "state", "tail", "claim",  "items"};

struct hostile {
    struct pard_client *c;
    enum mode mode;
    bool exit_after;
    bool scribbled;
    const char *mark; /* created once scribbled */
    struct pard_job job;
    struct pard_lane lane;
    uint32_t gen;
};

static bool serving(struct hostile *h)
{
    return atomic_load(&h->job.ctl->state) == PARD_JOB_RUNNING &&
           atomic_load(&h->lane.ctl->state) == PARD_LANE_ACTIVE &&
           atomic_load(&h->lane.ctl->gen) == h->gen;
}

/* The square of a decimal integer into buf; its length, or -1. */
static int square(const void *in, size_t len, char *buf, size_t cap)
{
    char tmp[32];
    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, in, len);
    tmp[len] = '\0';
    char *end;
    long long v = strtoll(tmp, &end, 10);
    if (*end != '\0' || v > 3037000499LL || v < -3037000499LL)
        return -1;
    return snprintf(buf, cap, "%lld", v * v);
}

/* Run a batch well: one record per task, one descriptor. 0, or -1 when
 * the job went away meanwhile. */
static int run_batch(struct hostile *h, const struct pard_task_desc *d)
{
    const void *base = pard_arena_read(&h->job.input, d->off, d->len);
    struct pard_records it;
    pard_records_init(&it, base, base ? d->len : 0);
    char out[64 * 1024];
    size_t used = 0;
    for (uint32_t k = 0; k < d->count; k++) {
        struct pard_record rec;
        const void *payload = NULL;
        char val[32];
        int n = pard_records_next(&it, &rec, &payload) == 1
                    ? square(payload, rec.len, val, sizeof(val))
                    : -1;
        struct pard_record r = {.len = n < 0 ? 3 : (uint32_t)n,
                                .status = n < 0 ? PARD_REC_ERROR : PARD_REC_OK};
        if (used + pard_record_size(r.len) > sizeof(out))
            return -1; /* batches are small in the tests */
        memcpy(out + used, &r, sizeof(r));
        memcpy(out + used + sizeof(r), n < 0 ? "bad" : val, r.len);
        used += pard_record_size(r.len);
    }
    struct pard_span span;
    int rc;
    while ((rc = pard_arena_alloc(&h->lane.output, used, &span)) == 1) {
        if (!serving(h))
            return -1;
        usleep(1000);
    }
    if (rc < 0)
        return -1;
    memcpy(pard_arena_ptr(&h->lane.output, span.off), out, used);
    struct pard_result_desc r = {
        .first = d->first, .count = d->count, .off = span.off, .len = used, .end = span.end};
    while ((rc = pard_ring_spsc_push(&h->lane.results, &r)) == 0) {
        if (!serving(h))
            return -1;
        usleep(1000);
    }
    if (rc < 0)
        return -1;
    pard_event_notify(&h->job.ctl->results);
    return 0;
}

/* Write the garbage of our mode, having taken batch d. */
static void scribble(struct hostile *h, const struct pard_task_desc *d)
{
    struct pard_lane_ctl *ctl = h->lane.ctl;
    switch (h->mode) {
    case M_NONE:
    case M_CLAIM: /* serve() claims and dies instead */
        return;
    case M_RING: /* head past tail, far apart */
        atomic_store(&h->lane.results.hdr->head, 0x5c5c5c5c5c5cull);
        atomic_store(&h->lane.results.hdr->tail, 7);
        break;
    case M_DESC: { /* a span that ends far past the arena */
        struct pard_result_desc r = {.first = d->first,
                                     .count = d->count,
                                     .off = h->lane.output.capacity - 8,
                                     .len = (uint64_t)1 << 40,
                                     .end = (uint64_t)1 << 41};
        pard_ring_spsc_push(&h->lane.results, &r);
        break;
    }
    case M_RECORD: { /* a well-placed span of records that lie about their length */
        struct pard_span span;
        if (pard_arena_alloc(&h->lane.output, 64, &span) != 0)
            return;
        uint8_t *p = pard_arena_ptr(&h->lane.output, span.off);
        for (int k = 0; k < 8; k++) {
            struct pard_record r = {.len = 0xfffffff0u - (uint32_t)k, .status = 0};
            memcpy(p + 8 * k, &r, sizeof(r));
        }
        struct pard_result_desc r = {
            .first = d->first, .count = d->count, .off = span.off, .len = 64, .end = span.end};
        pard_ring_spsc_push(&h->lane.results, &r);
        break;
    }
    case M_LEASE:
        ctl->lease = (struct pard_task_desc){.first = 0xfedcba9876543210ull,
                                             .count = 0xffffffffu,
                                             .attempt = 0xdeadbeefu,
                                             .off = 0xabababababull,
                                             .len = UINT64_MAX};
        atomic_store(&ctl->current, 0x1234567890abcdefull);
        atomic_store(&ctl->started_ns, INT64_MAX - 12345);
        atomic_store(&ctl->leased, 1);
        break;
    case M_TASKS:
        atomic_store(&h->job.tasks.hdr->head, 0x0badc0de0badull);
        atomic_store(&h->job.tasks.hdr->tail, 3);
        pard_event_notify(&h->job.tasks.hdr->not_empty);
        break;
    case M_COUNTERS:
        atomic_store(&h->job.ctl->submitted, UINT64_MAX - 1);
        atomic_store(&h->job.ctl->delivered, UINT64_MAX - 2);
        atomic_store(&h->job.ctl->failed, UINT64_MAX - 3);
        atomic_store(&h->job.ctl->requeued, UINT64_MAX - 4);
        atomic_store(&h->job.ctl->lanes_epoch, 0xfeedfaceu);
        break;
    case M_STATE:
        atomic_store(&h->job.ctl->state, 0x5ca1ab1eu);
        break;
    case M_ITEMS: { /* values, then an error record for a task past the span */
        uint64_t vals = pard_array_bytes(d->count, 8), index = d->first + d->count + 5;
        struct pard_span span;
        if (pard_arena_alloc(&h->lane.output, vals + 24, &span) != 0)
            return;
        uint8_t *p = pard_arena_ptr(&h->lane.output, span.off);
        memset(p, 0, vals + 24);
        struct pard_record rec = {.len = 11, .status = PARD_REC_ERROR};
        memcpy(p + vals, &rec, sizeof(rec));
        memcpy(p + vals + 8, &index, 8);
        memcpy(p + vals + 16, "bad", 3);
        struct pard_result_desc r = {.first = d->first,
                                     .count = d->count,
                                     .off = span.off,
                                     .len = vals + 24,
                                     .end = span.end};
        pard_ring_spsc_push(&h->lane.results, &r);
        break;
    }
    case M_TAIL: /* five results "published", none written */
        atomic_store(&h->lane.results.hdr->tail, atomic_load(&h->lane.results.hdr->head) + 5);
        break;
    }
    pard_event_notify(&h->job.ctl->results);
    if (!h->scribbled) {
        fprintf(stderr, "hostile: scribbled %s\n", mode_names[h->mode]);
        if (h->mark) {
            FILE *f = fopen(h->mark, "w");
            if (f)
                fclose(f);
        }
    }
    h->scribbled = true;
    if (h->exit_after)
        _exit(0);
}

/* Claim the task-ring position at head, if it holds a descriptor, then
 * die without releasing its slot. Returns only when there was nothing to
 * claim. */
static void claim_and_die(struct hostile *h)
{
    struct pard_ring *r = &h->job.tasks;
    uint64_t head = atomic_load(&r->hdr->head);
    _Atomic uint64_t *seq = (_Atomic uint64_t *)(void *)(r->slots + (head & r->mask) * r->stride);
    if (atomic_load(seq) != head + 1 ||
        !atomic_compare_exchange_strong(&r->hdr->head, &head, head + 1))
        return;
    fprintf(stderr, "hostile: claimed task-ring position %" PRIu64 "; dying without releasing it\n",
            head);
    if (h->mark) {
        FILE *f = fopen(h->mark, "w");
        if (f)
            fclose(f);
    }
    raise(SIGKILL);
}

/* Serve an attached job until it ends or our lane is taken away. */
static void serve(struct hostile *h)
{
    bool lingering = false;
    while (serving(h)) {
        if (h->mode == M_CLAIM) {
            claim_and_die(h);
            usleep(100);
            continue;
        }
        struct pard_task_desc d;
        int n = lingering ? 0 : pard_ring_mpmc_pop(&h->job.tasks, &d);
        if (n < 0)
            return; /* a corrupted task ring: leave, like libpard does */
        if (n == 0) {
            /* Nothing to do: look at the socket for a detach. */
            int fd = -1;
            int rc = pard__recv(h->c, 5, &fd);
            if (fd >= 0)
                close(fd);
            if (rc == 0 && h->c->msg->type == PARD_MSG_DETACH)
                return;
            if (rc != 0 && rc != -ETIMEDOUT)
                exit(0); /* the daemon is gone */
            continue;
        }
        h->lane.ctl->lease = d;
        atomic_store(&h->lane.ctl->current, d.first);
        atomic_store(&h->lane.ctl->started_ns, pard_now_ns());
        atomic_store(&h->lane.ctl->leased, 1);
        bool first = !h->scribbled;
        if (h->mode == M_COUNTERS)
            scribble(h, &d); /* then run it well */
        else if (first && h->mode != M_NONE) {
            scribble(h, &d);
            lingering = true; /* keep the batch and the lane; do nothing more */
            continue;
        }
        if (run_batch(h, &d) != 0)
            return;
        atomic_fetch_add(&h->lane.ctl->tasks_done, d.count);
        atomic_store(&h->lane.ctl->leased, 0);
    }
}

int main(int argc, char **argv)
{
    const char *socket = NULL, *mode = "none", *function = "hostile";
    struct hostile h = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            socket = argv[++i];
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            mode = argv[++i];
        else if (strcmp(argv[i], "--function") == 0 && i + 1 < argc)
            function = argv[++i];
        else if (strcmp(argv[i], "--exit") == 0)
            h.exit_after = true;
        else if (strcmp(argv[i], "--mark") == 0 && i + 1 < argc)
            h.mark = argv[++i];
        else {
            fprintf(stderr, "hostile_worker: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    size_t nmodes = sizeof(mode_names) / sizeof(mode_names[0]);
    size_t k = 0;
    while (k < nmodes && strcmp(mode_names[k], mode) != 0)
        k++;
    if (k == nmodes) {
        fprintf(stderr, "hostile_worker: unknown mode '%s'\n", mode);
        return 2;
    }
    h.mode = (enum mode)k;
    if (pard__connect(&h.c, socket, PARD_ROLE_WORKER, "hostile_worker") != 0) {
        fprintf(stderr, "hostile_worker: %s\n", pard_last_error());
        return 1;
    }
    struct pard_msg *m = h.c->msg;
    pard_msg_init(m, PARD_MSG_REGISTER);
    m->reg.nfunctions = 1;
    snprintf(m->reg.functions[0], sizeof(m->reg.functions[0]), "%s", function);
    if (pard__send(h.c, m, -1) != 0)
        return 1;
    for (;;) {
        int fd = -1;
        if (pard__recv(h.c, -1, &fd) != 0)
            break; /* the daemon is gone */
        if (m->type == PARD_MSG_ERROR && m->error.code == -PARD_EDAEMON)
            break; /* it is shutting down */
        if (m->type != PARD_MSG_ATTACH || fd < 0) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        uint64_t job_id = m->attach.job_id;
        uint32_t lane = m->attach.lane;
        int rc = pard_job_attach(&h.job, fd);
        close(fd);
        if (rc == 0 && pard_job_lane(&h.job, lane, &h.lane) == 0) {
            h.gen = atomic_load(&h.lane.ctl->gen);
            serve(&h);
        }
        if (rc == 0)
            pard_job_close(&h.job);
        pard_msg_init(m, PARD_MSG_DETACHED);
        m->detached.job_id = job_id;
        if (pard__send(h.c, m, -1) != 0)
            break;
    }
    pard_disconnect(h.c);
    return 0;
}
