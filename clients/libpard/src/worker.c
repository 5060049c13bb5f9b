/*
 * worker.c — the worker loop: register functions, take batches from a
 * job's task ring, run them, and write results into this worker's lane.
 *
 * Owns: the worker's side of the data plane (docs/architecture.md): the
 * lease, the lane's result ring and output arena, and the crash handler
 * that records which task killed the process.
 *
 * Must not: trust anything read from the job region (descriptors, input
 * records) beyond what is checked here; a bad descriptor fails its tasks
 * with an error record, it never crashes the worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* ----------------------------------------------------------------------
 * Task output
 * ---------------------------------------------------------------------- */

struct pard_out {
    uint8_t *buf;          /* output or error message: heap, or a result slot */
    size_t len;            /* bytes used */
    size_t cap;            /* bytes at buf */
    uint8_t *heap;         /* the growable buffer */
    size_t heap_cap;       /* its bytes */
    bool in_slot;          /* array job: buf is the task's result slot, cap bytes */
    bool overflow;         /* in_slot: a write did not fit */
    bool failed;           /* pard_out_error was called */
    uint64_t index;        /* the task */
    const void *shared;    /* the job's shared block, or NULL */
    size_t shared_size;    /* its bytes */
    msgpack_packer packer; /* pard_out_packer, writing through out_pack_write */
};

/* At least `need` bytes in the heap buffer. */
static int heap_reserve(struct pard_out *out, size_t need)
{
    if (need <= out->heap_cap)
        return 0;
    size_t cap = out->heap_cap ? out->heap_cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(out->heap, cap);
    if (!b)
        return -ENOMEM;
    out->heap = b;
    out->heap_cap = cap;
    return 0;
}

/* Writes go to the heap buffer from here on (a record job's output, or an
 * error message). */
static void out_to_heap(struct pard_out *out)
{
    out->buf = out->heap;
    out->cap = out->heap_cap;
    out->in_slot = false;
}

/* Writes go to an array task's result slot, of `size` bytes (set per chunk
 * and after a failure: per task only buf, len and index change). */
static void out_to_slot(struct pard_out *out, size_t size)
{
    out->cap = size;
    out->in_slot = true;
    out->overflow = false;
    out->failed = false;
}

static int out_reserve(struct pard_out *out, size_t more)
{
    if (out->len + more <= out->cap)
        return 0;
    if (out->in_slot) { /* an array job's result has one size */
        out->overflow = true;
        return -ENOSPC;
    }
    int rc = heap_reserve(out, out->len + more);
    out_to_heap(out);
    return rc;
}

int pard_out_write(struct pard_out *out, const void *data, size_t len)
{
    int rc = out_reserve(out, len);
    if (rc != 0)
        return rc;
    memcpy(out->buf + out->len, data, len);
    out->len += len;
    return 0;
}

static int out_vprintf(struct pard_out *out, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -ENOMEM;
    if (out->in_slot) {
        /* vsnprintf writes a NUL the slot may have no room for: format on
         * the heap (an array job's output never uses it), then copy. */
        if (heap_reserve(out, (size_t)n + 1) != 0)
            return -ENOMEM;
        vsnprintf((char *)out->heap, (size_t)n + 1, fmt, ap);
        return pard_out_write(out, out->heap, (size_t)n);
    }
    if (out_reserve(out, (size_t)n + 1) != 0)
        return -ENOMEM;
    vsnprintf((char *)out->buf + out->len, (size_t)n + 1, fmt, ap);
    out->len += (size_t)n; /* the NUL is not part of the output */
    return 0;
}

int pard_out_printf(struct pard_out *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = out_vprintf(out, fmt, ap);
    va_end(ap);
    return rc;
}

int pard_out_error(struct pard_out *out, const char *fmt, ...)
{
    out->len = 0;
    out->failed = true;
    out_to_heap(out);
    va_list ap;
    va_start(ap, fmt);
    out_vprintf(out, fmt, ap);
    va_end(ap);
    return -1;
}

static int out_pack_write(void *data, const char *buf, size_t len)
{
    return pard_out_write(data, buf, len);
}

msgpack_packer *pard_out_packer(struct pard_out *out)
{
    msgpack_packer_init(&out->packer, out, out_pack_write);
    return &out->packer;
}

int pard_unpack(const void *data, size_t len, msgpack_unpacked *u, const msgpack_object **obj)
{
    size_t off = 0;
    if (msgpack_unpack_next(u, data, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        return -PARD_EPROTO;
    *obj = &u->data;
    return 0;
}

uint64_t pard_out_task_index(const struct pard_out *out)
{
    return out->index;
}

const void *pard_shared(const struct pard_out *out, size_t *size)
{
    if (size)
        *size = out->shared ? out->shared_size : 0;
    return out->shared;
}

/* ----------------------------------------------------------------------
 * Crash handler
 * ---------------------------------------------------------------------- */

/* The lane of the job being served, for the crash handler; NULL between
 * jobs. A pointer into the job mapping: valid while attached. */
static struct pard_lane_ctl *_Atomic crash_lane;

static void on_crash(int sig)
{
    struct pard_lane_ctl *lane = atomic_load(&crash_lane);
    if (lane) /* async-signal-safe: one store to shared memory */
        atomic_store_explicit(&lane->crash_signal, sig, memory_order_release);
    /* SA_RESETHAND restored the default action: die of the same signal. */
    raise(sig);
}

static void install_crash_handlers(void)
{
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
}

/* ----------------------------------------------------------------------
 * Watchdog: the daemon dies while a task runs
 *
 * Between tasks the loop looks at its socket every slice (100 ms). Inside a
 * task it cannot: a task may run for minutes, or never end, and its result
 * has nowhere to go once the daemon is gone. A thread waits for the
 * connection to close (POLLRDHUP: data arriving does not wake it) and, if
 * a task is running then, says so on stderr and ends the process.
 * ---------------------------------------------------------------------- */

struct watchdog {
    pthread_t thread;
    int fd;                /* the control socket (not owned) */
    int stop[2];           /* a pipe: the loop writes to stop the thread */
    bool started;          /* the thread runs */
    _Atomic uint64_t task; /* the running task + 1; 0 between tasks */
    _Atomic uint64_t job;  /* its job */
};

/*
 * Did the daemon say goodbye before it closed (a clean shutdown sends an
 * `error` frame with -PARD_EDAEMON first), or did it just vanish (kill -9,
 * a crash)? Peeks at what is still queued on the socket without taking
 * it, so the loop reads it as usual if the task ends first.
 */
static bool daemon_said_goodbye(int fd)
{
    enum { PEEK = 64 * 1024 };
    bool bye = false;
    uint8_t *buf = malloc(PEEK);
    struct pard_msg *m = malloc(sizeof(*m));
    struct pard_frame_reader r;
    pard_frame_reader_init(&r, PARD_FRAME_MAX_CLIENT);
    ssize_t n = buf && m ? recv(fd, buf, PEEK, MSG_PEEK | MSG_DONTWAIT) : -1;
    if (n > 0 && pard_frame_reader_feed(&r, buf, (size_t)n, NULL, 0) == 0) {
        const void *body;
        size_t len;
        while (!bye && pard_frame_reader_next(&r, &body, &len, NULL) == 1)
            bye = pard_msg_decode(body, len, m) == 0 && m->type == PARD_MSG_ERROR &&
                  m->error.code == -PARD_EDAEMON;
    }
    pard_frame_reader_destroy(&r);
    free(m);
    free(buf);
    return bye;
}

static void *watchdog_main(void *arg)
{
    struct watchdog *wd = arg;
    struct pollfd p[2] = {{.fd = wd->fd, .events = POLLRDHUP},
                          {.fd = wd->stop[0], .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        if (p[0].revents & POLLNVAL)
            return NULL; /* the socket was closed under us: nothing to watch */
        if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR))
            break;
    }
    bool bye = daemon_said_goodbye(wd->fd);
    /* The daemon is gone. Between tasks the loop notices by itself and
     * stops us; a task that is running (or starts before then) ends the
     * process. Poll the stop pipe alone now: the socket stays readable. */
    for (;;) {
        uint64_t task = atomic_load_explicit(&wd->task, memory_order_acquire);
        if (task != 0) {
            /* An array job sets `task` once per chunk: the lane names the
             * task itself. */
            struct pard_lane_ctl *lane = atomic_load(&crash_lane);
            if (lane)
                task = atomic_load_explicit(&lane->current, memory_order_relaxed) + 1;
            char msg[300];
            int n = bye ? snprintf(msg, sizeof(msg),
                                   "%s (pid %d): pard is shutting down; leaving task %llu of "
                                   "job %llu unfinished\n",
                                   program_invocation_short_name, (int)getpid(),
                                   (unsigned long long)(task - 1),
                                   (unsigned long long)atomic_load(&wd->job))
                        : snprintf(msg, sizeof(msg),
                                   "%s (pid %d): the pard daemon is gone (connection closed) "
                                   "while task %llu of job %llu was running; exiting, as its "
                                   "result has nowhere to go (restart pard, then this worker)\n",
                                   program_invocation_short_name, (int)getpid(),
                                   (unsigned long long)(task - 1),
                                   (unsigned long long)atomic_load(&wd->job));
            if (n > 0)
                (void)!write(STDERR_FILENO, msg,
                             (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
            /* A shutdown is a clean end, as between tasks; a vanished
             * daemon is a failure a supervisor should see. */
            _exit(bye ? 0 : 1);
        }
        int rc = poll(&p[1], 1, 20);
        if (rc > 0 || (rc < 0 && errno != EINTR))
            return NULL;
    }
}

static void watchdog_start(struct watchdog *wd, int fd)
{
    wd->fd = fd;
    wd->started = false;
    if (pipe2(wd->stop, O_CLOEXEC) != 0)
        return; /* no watchdog: a task still ends when it ends */
    /* Signals go to the threads that run the user's code, never to ours:
     * the thread starts with every signal blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&wd->thread, NULL, watchdog_main, wd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(wd->stop[0]);
        close(wd->stop[1]);
        return;
    }
    wd->started = true;
}

static void watchdog_stop(struct watchdog *wd)
{
    if (!wd->started)
        return;
    (void)!write(wd->stop[1], "x", 1);
    pthread_join(wd->thread, NULL);
    close(wd->stop[0]);
    close(wd->stop[1]);
    wd->started = false;
}

/* ----------------------------------------------------------------------
 * Serving one job
 * ---------------------------------------------------------------------- */

struct worker {
    struct pard_client *c;
    const struct pard_function *fns;
    size_t nfns;
    void *ctx;
    struct pard_out out;
    /* the shared block announced for the next job (`share` before `attach`) */
    struct pard_region shared;
    uint64_t shared_handle;
    const void *shared_data;
    uint64_t shared_size;
    struct watchdog wd;
    uint64_t max_tasks; /* leave after this many tasks; 0: never */
    uint64_t served;    /* tasks run so far */
    bool retiring;      /* max_tasks reached: leave after this batch */
    /* array jobs: a chunk's values and its error records, before they go
     * to the lane's output arena in one span */
    uint8_t *stage, *exc;
    size_t stage_cap, exc_cap, exc_len;
};

/* Map the shared block the daemon just passed; consumes fd. */
static void take_share(struct worker *w, uint64_t handle, int fd)
{
    if (w->shared_handle)
        pard_region_close(&w->shared);
    w->shared_handle = 0;
    int rc = pard_region_attach(&w->shared, fd, PARD_SHARE_LAYOUT_VERSION);
    close(fd);
    if (rc != 0) {
        pard__set_error(w->c, rc, "cannot map shared block %llu: %s", (unsigned long long)handle,
                        pard_strerror(rc));
        return;
    }
    uint64_t section = 0;
    w->shared_data = pard_region_find(&w->shared, PARD_SEC_SHARED, &section);
    /* The exact size travels in user[0]; it must fit the section. */
    w->shared_size = pard_region_user(&w->shared, 0);
    if (!w->shared_data || w->shared_size > section) {
        pard__set_error(w->c, -PARD_ECORRUPT, "shared block %llu has an impossible size",
                        (unsigned long long)handle);
        pard_region_close(&w->shared);
        return;
    }
    w->shared_handle = handle;
}

static void drop_share(struct worker *w)
{
    if (w->shared_handle)
        pard_region_close(&w->shared);
    w->shared_handle = 0;
    w->shared_data = NULL;
    w->shared_size = 0;
}

struct serve {
    struct worker *w;
    struct pard_job job;
    struct pard_lane lane;
    pard_task_fn fn;
    const char *function;
    uint64_t job_id;
    uint32_t lane_index;
    uint32_t gen;
    bool timed;            /* the job has a per-task timeout: publish start times */
    uint64_t out_limit;    /* largest output record: half the lane's output arena */
    int64_t task_start_ns; /* when the task being emitted started */
    enum pard_wait_mode mode;
    /* the output span being built */
    uint32_t span_count;
    uint64_t span_first;
    uint64_t span_off;
    uint64_t span_len;
    uint64_t span_end;
    int64_t span_start_ns; /* when the span's first task started */
    double task_ns;        /* measured time per task (moving average), 0 = unknown */
    uint32_t last_count;   /* tasks in the last descriptor taken */
    bool array;            /* an array job: fixed-size items and results */
    uint64_t item_size, result_size;
};

/* The job still wants us: running, and our lane still ours (the daemon
 * bumps gen when it gives the lane to another worker). */
static bool still_serving(struct serve *s)
{
    return atomic_load_explicit(&s->job.ctl->state, memory_order_acquire) == PARD_JOB_RUNNING &&
           atomic_load_explicit(&s->lane.ctl->state, memory_order_acquire) == PARD_LANE_ACTIVE &&
           atomic_load_explicit(&s->lane.ctl->gen, memory_order_acquire) == s->gen;
}

static bool tasks_or_leave(void *arg)
{
    struct serve *s = arg;
    return pard_ring_count(&s->job.tasks) != 0 || !still_serving(s);
}

static bool room_or_leave(void *arg)
{
    struct serve *s = arg;
    return pard_ring_count(&s->lane.results) < (int64_t)s->lane.results.capacity ||
           !still_serving(s);
}

/* Push the output span built so far as one result descriptor. */
static int flush_span(struct serve *s)
{
    if (s->span_count == 0)
        return 0;
    int64_t busy = pard_now_ns() - s->span_start_ns;
    double per = (double)busy / s->span_count;
    s->task_ns = s->task_ns > 0 ? 0.75 * s->task_ns + 0.25 * per : per;
    struct pard_result_desc d = {.first = s->span_first,
                                 .count = s->span_count,
                                 .busy_ns = busy > UINT32_MAX ? UINT32_MAX : (uint32_t)busy,
                                 .off = s->span_off,
                                 .len = s->span_len,
                                 .end = s->span_end};
    for (;;) {
        int n = pard_ring_spsc_push(&s->lane.results, &d);
        if (n == 1)
            break;
        if (n < 0)
            return n;
        /* The submitter has not caught up: wait for room, and give up if
         * the job or the lane is taken away meanwhile. */
        pard_wait_until(&s->lane.results.hdr->not_full, s->mode, room_or_leave, s,
                        pard_now_ns() + PARD__SLICE_NS);
        if (!still_serving(s))
            return -PARD_ECANCELED;
        if (pard__daemon_alive(s->w->c) != 0)
            return -PARD_EDAEMON;
    }
    /* Rung after the push: the submitter sleeps on the job-wide event. */
    pard_event_notify(&s->job.ctl->results);
    s->span_count = 0;
    return 0;
}

struct arena_room {
    struct serve *s;
    uint64_t need;
};

static bool arena_room_or_leave(void *arg)
{
    struct arena_room *a = arg;
    return pard_arena_used(&a->s->lane.output) + a->need <= a->s->lane.output.capacity ||
           !still_serving(a->s);
}

/* `size` bytes of the lane's output arena, flushing and waiting as needed. */
static int alloc_output(struct serve *s, uint64_t size, struct pard_span *span)
{
    /* A lane taken from us while a task ran (the daemon lost us and gave
     * it to another worker) has another writer now: never touch it. */
    if (atomic_load_explicit(&s->lane.ctl->gen, memory_order_acquire) != s->gen)
        return -PARD_ECANCELED;
    for (;;) {
        int rc = pard_arena_alloc(&s->lane.output, size, span);
        if (rc <= 0)
            return rc;
        /* Full: hand over what we have so the submitter can free space. */
        if ((rc = flush_span(s)) != 0)
            return rc;
        struct arena_room a = {s, size * 2};
        pard_wait_until(&s->lane.results.hdr->not_full, s->mode, arena_room_or_leave, &a,
                        pard_now_ns() + PARD__SLICE_NS);
        if (!still_serving(s))
            return -PARD_ECANCELED;
        if (pard__daemon_alive(s->w->c) != 0)
            return -PARD_EDAEMON;
    }
}

/* Append one record to the output span, flushing and waiting as needed. */
static int emit(struct serve *s, uint64_t index, uint32_t status, const void *data, size_t len)
{
    uint64_t size = pard_record_size(len);
    struct pard_span span;
    int rc = alloc_output(s, size, &span);
    if (rc != 0)
        return rc;
    /* A span must be contiguous and consecutive in index: else start anew. */
    if (s->span_count > 0 &&
        (span.off != s->span_off + s->span_len || index != s->span_first + s->span_count)) {
        if ((rc = flush_span(s)) != 0)
            return rc;
    }
    uint8_t *p = pard_arena_ptr(&s->lane.output, span.off);
    struct pard_record rec = {.len = (uint32_t)len, .status = status};
    memcpy(p, &rec, sizeof(rec));
    if (len)
        memcpy(p + sizeof(rec), data, len);
    if (s->span_count == 0) {
        s->span_first = index;
        s->span_off = span.off;
        s->span_len = 0;
        s->span_start_ns = s->task_start_ns;
    }
    s->span_count++;
    s->span_len += size;
    s->span_end = span.end;
    return 0;
}

static int emit_error(struct serve *s, uint64_t index, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int emit_error(struct serve *s, uint64_t index, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    size_t n = pard__vformat(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return emit(s, index, PARD_REC_ERROR, msg, n);
}

/* Run one task and emit its record. */
static int run_task(struct serve *s, uint64_t index, const void *in, size_t len)
{
    struct pard_out *out = &s->w->out;
    out_to_heap(out);
    out->len = 0;
    out->failed = false;
    out->index = index;
    /* `current` names the task a crash or a timeout is blamed on: always
     * published; the clock only when the job has a time limit. */
    atomic_store_explicit(&s->lane.ctl->current, index, memory_order_relaxed);
    if (s->timed)
        atomic_store_explicit(&s->lane.ctl->started_ns, pard_now_ns(), memory_order_release);
    if (s->span_count == 0)
        s->task_start_ns = pard_now_ns(); /* one clock read per span, not per task */
    /* Release: the watchdog may report this task once it sees it. */
    atomic_store_explicit(&s->w->wd.task, index + 1, memory_order_release);
    int rc = s->fn(s->w->ctx, in, len, out);
    atomic_store_explicit(&s->w->wd.task, 0, memory_order_release);
    /* The task is over: waiting for room in the lane next (a slow
     * submitter) must not count against its time limit. */
    if (s->timed)
        atomic_store_explicit(&s->lane.ctl->started_ns, 0, memory_order_release);
    if (rc != 0 && !out->failed) {
        out->len = 0;
        out_reserve(out, 64);
        out->len = (size_t)snprintf((char *)out->buf, out->cap, "the function returned %d", rc);
        out->failed = true;
    }
    uint64_t limit = s->out_limit;
    if (out->len + sizeof(struct pard_record) > limit)
        return emit_error(s, index,
                          "output of %zu bytes exceeds the lane's limit of %llu bytes (raise the "
                          "job's output arena)",
                          out->len, (unsigned long long)(limit - sizeof(struct pard_record)));
    return emit(s, index, out->failed ? PARD_REC_ERROR : PARD_REC_OK, out->buf, out->len);
}

/* ----------------------------------------------------------------------
 * Array jobs: a chunk of results is staged privately, then goes to the
 * lane as one span (job.h): the values, then a record for each task
 * without one.
 * ---------------------------------------------------------------------- */

/* An error message in an array job's span is cut at this many bytes. */
#define ITEM_MSG_MAX 1024u

static int stage_record(struct worker *w, uint64_t index, uint32_t status, const void *msg,
                        size_t len)
{
    if (len > ITEM_MSG_MAX)
        len = ITEM_MSG_MAX;
    uint64_t size = pard_record_size(8 + len);
    if (w->exc_len + size > w->exc_cap) {
        size_t cap = w->exc_cap ? w->exc_cap : 4096;
        while (cap < w->exc_len + size)
            cap *= 2;
        uint8_t *b = realloc(w->exc, cap);
        if (!b)
            return -ENOMEM;
        w->exc = b;
        w->exc_cap = cap;
    }
    uint8_t *p = w->exc + w->exc_len;
    struct pard_record rec = {.len = (uint32_t)(8 + len), .status = status};
    memset(p, 0, size); /* the padding too: no stray bytes in shared memory */
    memcpy(p, &rec, sizeof(rec));
    memcpy(p + sizeof(rec), &index, 8);
    if (len)
        memcpy(p + sizeof(rec) + 8, msg, len);
    w->exc_len += size;
    return 0;
}

static int stage_error(struct worker *w, uint64_t index, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int stage_error(struct worker *w, uint64_t index, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    size_t n = pard__vformat(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return stage_record(w, index, PARD_REC_ERROR, msg, n);
}

/* The task just run left no value: say why. */
static int stage_failure(struct serve *s, uint64_t index, int rc)
{
    struct pard_out *out = &s->w->out;
    if (out->failed)
        return stage_record(s->w, index, PARD_REC_ERROR, out->buf, out->len);
    if (rc != 0)
        return stage_error(s->w, index, "the function returned %d", rc);
    if (out->overflow)
        return stage_error(s->w, index,
                           "the task wrote more than the map's result size of %llu bytes",
                           (unsigned long long)s->result_size);
    return stage_error(s->w, index, "the task wrote %zu bytes; the map's results are %llu bytes",
                       out->len, (unsigned long long)s->result_size);
}

/* Push the staged chunk [first, first + count) as one result span. */
static int flush_items(struct serve *s, uint64_t first, uint32_t count, int64_t start_ns)
{
    struct worker *w = s->w;
    uint64_t vals = pard_array_bytes(count, s->result_size), len = vals + w->exc_len;
    struct pard_span span;
    int rc = alloc_output(s, len > 8 ? len : 8, &span);
    if (rc != 0)
        return rc;
    uint8_t *p = pard_arena_ptr(&s->lane.output, span.off);
    if (vals) /* the buffers are NULL until first needed */
        memcpy(p, w->stage, vals);
    if (w->exc_len)
        memcpy(p + vals, w->exc, w->exc_len);
    w->exc_len = 0;
    s->span_first = first;
    s->span_count = count;
    s->span_off = span.off;
    s->span_len = len;
    s->span_end = span.end;
    s->span_start_ns = start_ns;
    return flush_span(s);
}

/* Tasks per chunk, and the record bytes that end one early: a span stays
 * well within the lane's limit whatever the result size. */
#define ITEM_CHUNK_BYTES (64u << 10)

static uint32_t items_per_chunk(const struct serve *s)
{
    uint64_t bytes = s->out_limit / 2 < ITEM_CHUNK_BYTES ? s->out_limit / 2 : ITEM_CHUNK_BYTES;
    uint64_t n = s->result_size ? bytes / s->result_size : UINT32_MAX;
    return n < 1 ? 1 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/*
 * Run tasks first .. first + n - 1 of a chunk, their items at `in` (NULL:
 * missing or corrupted), their values into the stage; stops early on an
 * error (*rc) or when its records (errors, skips) grow past their share of the
 * span. Returns how many it ran. Inlined twice: `plain` for the common case
 * (a first attempt, its items there, no time limit), where nothing happens
 * per task but naming it and calling the function.
 */
static inline __attribute__((always_inline)) uint32_t run_chunk(struct serve *s, uint64_t first,
                                                                uint32_t n, const uint8_t *in,
                                                                uint32_t attempt, bool plain,
                                                                int *rc)
{
    struct worker *w = s->w;
    struct pard_out *out = &w->out;
    const uint64_t is = s->item_size, rs = s->result_size, window = s->job.geo.window;
    const uint64_t exc_limit = s->out_limit / 4;
    const pard_task_fn fn = s->fn;
    void *const ctx = w->ctx;
    uint8_t *const stage = w->stage;
    struct pard_lane_ctl *const ctl = s->lane.ctl;
    uint32_t j = 0;
    while (j < n) {
        uint64_t index = first + j;
        bool skip = !plain && attempt > 0 &&
                    atomic_load_explicit(&s->job.done[index & (window - 1)],
                                         memory_order_acquire) == index + 1;
        if (!plain && (skip || !in)) {
            *rc = skip ? stage_record(w, index, PARD_REC_SKIPPED, NULL, 0) /* delivered meanwhile */
                       : stage_error(w, index,
                                     "the task's input is missing or corrupted in shared memory");
            j++;
            /* Skips count against the span's record share like errors: a
             * chunk of small results is thousands of tasks, 16 bytes each. */
            if (*rc != 0 || w->exc_len > exc_limit)
                break;
            continue;
        }
        out->buf = stage + j * rs;
        out->len = 0;
        out->index = index;
        /* `current` names the task a crash or a timeout is blamed on. */
        atomic_store_explicit(&ctl->current, index, memory_order_relaxed);
        if (!plain && s->timed)
            atomic_store_explicit(&ctl->started_ns, pard_now_ns(), memory_order_release);
        int frc = fn(ctx, in + (uint64_t)j * is, is, out);
        if (!plain && s->timed)
            atomic_store_explicit(&ctl->started_ns, 0, memory_order_release);
        j++;
        if (__builtin_expect(frc != 0 || out->failed || out->overflow || out->len != rs, 0)) {
            *rc = stage_failure(s, index, frc);
            out_to_slot(out, rs);
            if (*rc != 0 || w->exc_len > exc_limit)
                break;
        }
    }
    return j;
}

/* The tasks of one descriptor of an array job, a chunk at a time. */
static int run_items(struct serve *s, const struct pard_task_desc *d, uint32_t attempt)
{
    struct worker *w = s->w;
    struct pard_out *out = &w->out;
    const uint64_t is = s->item_size, rs = s->result_size;
    const uint8_t *in = pard_arena_read(&s->job.input, d->off, d->len);
    if (in && d->len < (uint64_t)d->count * is)
        in = NULL;
    const bool plain = attempt == 0 && in && !s->timed;
    uint32_t chunk = items_per_chunk(s);
    int rc = 0;
    for (uint32_t done = 0; done < d->count && rc == 0;) {
        uint64_t first = d->first + done;
        uint32_t n = d->count - done < chunk ? d->count - done : chunk;
        uint64_t vals = pard_array_bytes(n, rs);
        if (vals > w->stage_cap) {
            uint8_t *b = realloc(w->stage, vals);
            if (!b)
                return -ENOMEM;
            w->stage = b;
            w->stage_cap = vals;
        }
        if (vals > (uint64_t)n * rs) /* the padding */
            memset(w->stage + (uint64_t)n * rs, 0, vals - (uint64_t)n * rs);
        int64_t t0 = pard_now_ns();
        s->task_start_ns = t0;
        /* Not per task: a byte store read back as part of a wider load
         * (the checks after each call) stalls the loop. */
        out_to_slot(out, rs);
        /* For the watchdog: in a task (it reads which from `current`). */
        atomic_store_explicit(&w->wd.task, first + 1, memory_order_release);
        const uint8_t *items = in ? in + (uint64_t)done * is : NULL;
        uint32_t j = plain ? run_chunk(s, first, n, items, attempt, true, &rc)
                           : run_chunk(s, first, n, items, attempt, false, &rc);
        atomic_store_explicit(&w->wd.task, 0, memory_order_release);
        if (rc == 0)
            rc = flush_items(s, first, j, t0);
        w->exc_len = 0;
        done += j;
    }
    return rc;
}

/* A record job's lease: each part's input records are walked from the
 * part's own offset, since the submitter may free a part's input once all
 * its tasks are delivered elsewhere (re-queued) while a later part is not. */
static int run_records(struct serve *s, const struct pard_task_desc *parts, int nparts,
                       const struct pard_task_desc *d)
{
    int part = 0;
    const void *base = pard_arena_read(&s->job.input, parts[0].off, parts[0].len);
    uint64_t part_end = parts[0].first + parts[0].count;
    struct pard_records it;
    pard_records_init(&it, base, base ? parts[0].len : 0);
    uint64_t window = s->job.geo.window;
    int rc = 0;
    for (uint32_t k = 0; k < d->count && rc == 0; k++) {
        uint64_t index = d->first + k;
        if (index == part_end && part + 1 < nparts) {
            part++;
            base = pard_arena_read(&s->job.input, parts[part].off, parts[part].len);
            part_end = parts[part].first + parts[part].count;
            pard_records_init(&it, base, base ? parts[part].len : 0);
        }
        struct pard_record rec;
        const void *payload = NULL;
        int got = base ? pard_records_next(&it, &rec, &payload) : -PARD_ECORRUPT;
        if (d->attempt > 0 && atomic_load_explicit(&s->job.done[index & (window - 1)],
                                                   memory_order_acquire) == index + 1) {
            rc = emit(s, index, PARD_REC_SKIPPED, NULL, 0); /* delivered meanwhile */
            continue;
        }
        if (got != 1)
            rc = emit_error(s, index, "the task's input is missing or corrupted in shared memory");
        else
            rc = run_task(s, index, payload, rec.len);
    }
    return rc == 0 ? flush_span(s) : rc;
}

/* Run one batch: lease it, run each task, push the results, clear the
 * lease. The batch is parts[0 .. nparts-1], adjacent descriptors taken as
 * one run and leased as one. */
static int run_batch(struct serve *s, const struct pard_task_desc *parts, int nparts)
{
    struct pard_task_desc lease = parts[0];
    for (int p = 1; p < nparts; p++) {
        lease.count += parts[p].count;
        lease.len += parts[p].len;
    }
    const struct pard_task_desc *d = &lease;
    struct pard_lane_ctl *ctl = s->lane.ctl;
    ctl->lease = *d;
    s->task_start_ns = pard_now_ns();
    atomic_store_explicit(&ctl->current, d->first, memory_order_relaxed);
    atomic_store_explicit(&ctl->started_ns, s->task_start_ns, memory_order_relaxed);
    /* Release: the lease's contents are visible to whoever sees leased. */
    atomic_store_explicit(&ctl->leased, 1, memory_order_release);
    int rc = 0;
    if (s->array)
        for (int p = 0; p < nparts && rc == 0; p++)
            rc = run_items(s, &parts[p], d->attempt);
    else
        rc = run_records(s, parts, nparts, d);
    atomic_fetch_add_explicit(&ctl->tasks_done, d->count, memory_order_relaxed);
    /* Release: our result pushes come before the lease is seen cleared. */
    atomic_store_explicit(&ctl->leased, 0, memory_order_release);
    return rc;
}

static pard_task_fn find_fn(const struct worker *w, const char *name)
{
    for (size_t i = 0; i < w->nfns; i++)
        if (strcmp(w->fns[i].name, name) == 0)
            return w->fns[i].fn;
    return NULL;
}

/*
 * Tiny tasks, one per descriptor (an unbatched map), would cost a claim of
 * the shared task ring, a lease and a result push each. A worker whose
 * tasks take well under RUN_BUDGET_NS takes up to RUN_MAX adjacent
 * descriptors with one claim (pard_ring_mpmc_pop_run) and leases them as
 * one batch: consecutive tasks whose inputs lie back to back, of the same
 * attempt, about RUN_BUDGET_NS of work in all. Longer tasks keep one
 * descriptor at a time, so a slow task never holds others back for long.
 */
#define RUN_MAX       32u
#define RUN_BUDGET_NS 20000.0

static bool desc_follows(const struct pard_task_desc *a, const struct pard_task_desc *b)
{
    return b->first == a->first + a->count && b->off == a->off + a->len && b->attempt == a->attempt;
}

static bool desc_joins(const void *prev, const void *next, void *arg)
{
    (void)arg;
    return desc_follows(prev, next);
}

/* How many descriptors to take at once, by the measured task time (and,
 * with --max-tasks, no more than the worker has left to serve). */
static unsigned run_length(const struct serve *s)
{
    if (s->task_ns <= 0)
        return 1;
    double per_desc = s->task_ns * (s->last_count ? s->last_count : 1);
    double n = RUN_BUDGET_NS / per_desc;
    unsigned len = n < 1 ? 1 : n > RUN_MAX ? RUN_MAX : (unsigned)n;
    uint64_t max = s->w->max_tasks;
    if (max && s->w->served < max && max - s->w->served < len)
        len = (unsigned)(max - s->w->served);
    return len;
}

/*
 * Serve the job of an attach message until it ends, our lane is taken
 * away, or the daemon is gone. Consumes job_fd.
 */
static int serve_job(struct worker *w, const struct pard_msg_attach *a, int job_fd)
{
    struct serve s = {.w = w, .job_id = a->job_id, .lane_index = a->lane, .mode = a->wait_mode};
    s.timed = a->timeout_ms > 0;
    s.fn = find_fn(w, a->function);
    int rc = pard_job_attach_kept(&s.job, job_fd, &w->c->kept_job);
    close(job_fd);
    if (rc != 0)
        return pard__set_error(w->c, rc, "cannot attach to job %llu: %s",
                               (unsigned long long)a->job_id, pard_strerror(rc));
    rc = pard_job_lane(&s.job, a->lane, &s.lane);
    if (rc != 0 || s.fn == NULL) {
        pard_job_close_kept(&s.job, &w->c->kept_job);
        return pard__set_error(w->c, rc ? rc : -PARD_ENOFUNC,
                               "job %llu: bad lane %u or function %s",
                               (unsigned long long)a->job_id, a->lane, a->function);
    }
    s.gen = atomic_load_explicit(&s.lane.ctl->gen, memory_order_acquire);
    s.out_limit = s.lane.output.capacity / 2;
    s.array = a->array != 0;
    s.item_size = a->item_size;
    s.result_size = a->result_size;
    atomic_store(&crash_lane, s.lane.ctl);
    atomic_store(&w->wd.job, a->job_id);
    bool have_share = a->shared != 0 && a->shared == w->shared_handle;
    w->out.shared = have_share ? w->shared_data : NULL;
    w->out.shared_size = have_share ? w->shared_size : 0;
    rc = 0;
    while (still_serving(&s)) {
        struct pard_task_desc run[RUN_MAX];
        int n = pard_ring_mpmc_pop_run(&s.job.tasks, run, run_length(&s), desc_joins, NULL);
        if (n < 0) { /* a corrupted task ring: leave this job */
            rc = pard__set_error(w->c, n,
                                 "job %llu: the task ring has impossible indices (%s); "
                                 "leaving the job",
                                 (unsigned long long)a->job_id, pard_strerror(n));
            break;
        }
        if (n > 0) {
            s.last_count = run[0].count;
            /* One batch per stretch of the run that follows on (the run is
             * whole unless a slot of it was taken back, see ring.c). */
            for (int i = 0; i < n && rc == 0;) {
                int from = i;
                uint64_t count = run[i++].count;
                while (i < n && desc_follows(&run[i - 1], &run[i]) &&
                       count + run[i].count <= UINT32_MAX)
                    count += run[i++].count;
                rc = run_batch(&s, run + from, i - from);
                if (rc == 0)
                    w->served += count;
            }
            if (rc != 0 && rc != -PARD_ECANCELED && rc != -PARD_EDAEMON)
                /* run_batch passes up bare codes from its lane: name the
                 * job and lane, for the message we leave with. */
                rc = pard__set_error(w->c, rc,
                                     "job %llu (%s), lane %u: cannot write results: %s; "
                                     "leaving the job",
                                     (unsigned long long)a->job_id, a->function, a->lane,
                                     pard_strerror(rc));
            if (rc != 0)
                break;
            if (w->max_tasks && w->served >= w->max_tasks) {
                w->retiring = true; /* results pushed, lease clear: leave */
                break;
            }
            continue;
        }
        if (pard_wait_until(&s.job.tasks.hdr->not_empty, s.mode, tasks_or_leave, &s,
                            pard_now_ns() + PARD__SLICE_NS) == -ETIMEDOUT &&
            (rc = pard__daemon_alive(w->c)) != 0)
            break;
    }
    atomic_store(&crash_lane, NULL);
    w->out.shared = NULL;
    drop_share(w); /* mapped per job: the next job may name another */
    pard_job_close_kept(&s.job, &w->c->kept_job);
    return rc == -PARD_ECANCELED ? 0 : rc;
}

/* ----------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------- */

#define KEEP_IDLE_MS 10000

int pard_worker_run(const struct pard_function *fns, size_t nfns,
                    const struct pard_worker_opts *opts)
{
    static const struct pard_worker_opts defaults;
    if (!opts)
        opts = &defaults;
    if (nfns == 0 || nfns > PARD_FUNCTIONS_MAX)
        return pard__set_error(NULL, -EINVAL, "a worker serves 1 to %d functions",
                               PARD_FUNCTIONS_MAX);
    for (size_t i = 0; i < nfns; i++)
        if (!fns[i].fn || !pard_name_valid(fns[i].name))
            return pard__set_error(NULL, -EINVAL,
                                   "function name '%s' is not valid ([A-Za-z0-9_.-], 1-63 bytes)",
                                   fns[i].name ? fns[i].name : "(null)");
    struct worker w = {.fns = fns, .nfns = nfns, .max_tasks = opts->max_tasks};
    if (opts->init && opts->init(&w.ctx, opts->arg) != 0)
        return pard__set_error(NULL, -ECANCELED, "the worker's initializer failed");
    int rc = pard__connect(&w.c, opts->socket_path, PARD_ROLE_WORKER, opts->name);
    if (rc != 0)
        goto out;
    install_crash_handlers();
    watchdog_start(&w.wd, w.c->fd);
    struct pard_msg *m = w.c->msg;
    pard_msg_init(m, PARD_MSG_REGISTER);
    m->reg.nfunctions = (uint32_t)nfns;
    for (size_t i = 0; i < nfns; i++)
        snprintf(m->reg.functions[i], sizeof(m->reg.functions[i]), "%s", fns[i].name);
    if ((rc = pard__send(w.c, m, -1)) != 0)
        goto out;
    for (;;) {
        int fd = -1;
        /* The last job's mapping is kept for the next job (serve_job), but
         * not for long: the daemon gives its region back after 10 s unused,
         * and a mapping would keep the memory alive beyond its count. */
        rc = pard__recv(w.c, w.c->kept_job.base ? KEEP_IDLE_MS : -1, &fd);
        if (rc == -ETIMEDOUT) {
            pard_region_close(&w.c->kept_job);
            continue;
        }
        if (rc != 0)
            break;
        if (m->type == PARD_MSG_ATTACH && fd >= 0) {
            struct pard_msg_attach a = m->attach;
            rc = serve_job(&w, &a, fd);
            if (rc == -PARD_EDAEMON)
                break;
            if (w.retiring && rc == 0)
                break; /* opts.max_tasks: closing the connection says we left */
            if (rc != 0) {
                /* We leave the job on our own: say why, for the daemon's log. */
                pard_msg_init(m, PARD_MSG_ERROR);
                m->error.code = rc;
                m->error.ref = a.job_id;
                snprintf(m->error.message, sizeof(m->error.message), "%s", pard_last_error());
                if ((rc = pard__send(w.c, m, -1)) != 0)
                    break;
            }
            /* A job also ends when the daemon shuts down: then its notice
             * is already waiting, and leaving is a clean end. */
            if (pard__recv(w.c, 0, &fd) == 0) {
                if (fd >= 0)
                    close(fd);
                if (m->type == PARD_MSG_ERROR && m->error.code == -PARD_EDAEMON) {
                    rc = 0;
                    break;
                }
            }
            /* Tell the daemon we are free for the next job. */
            pard_msg_init(m, PARD_MSG_DETACHED);
            m->detached.job_id = a.job_id;
            if ((rc = pard__send(w.c, m, -1)) != 0)
                break;
        } else if (m->type == PARD_MSG_SHARE && fd >= 0) {
            take_share(&w, m->share.handle, fd);
        } else if (m->type == PARD_MSG_DETACH) {
            /* A detach for a job we already left: nothing to do. */
        } else if (m->type == PARD_MSG_ERROR) {
            if (m->error.code == -PARD_EDAEMON) {
                rc = 0; /* the daemon is shutting down: a clean end */
                break;
            }
            rc = pard__set_error(w.c, m->error.code, "pard: %s", m->error.message);
            break;
        } else if (fd >= 0) {
            close(fd);
        }
    }
out:
    watchdog_stop(&w.wd);
    drop_share(&w);
    if (opts->fini)
        opts->fini(w.ctx);
    free(w.out.heap);
    free(w.stage);
    free(w.exc);
    pard_disconnect(w.c);
    return rc;
}

int pard_worker_main(int argc, char **argv, const struct pard_function *fns, size_t nfns,
                     const struct pard_worker_opts *opts)
{
    struct pard_worker_opts o = {0};
    if (opts)
        o = *opts;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            o.socket_path = argv[++i];
        } else if (strcmp(argv[i], "--max-tasks") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(argv[++i], &end, 10);
            if (errno || *end || argv[i][0] == '-' || end == argv[i]) {
                fprintf(stderr, "%s: --max-tasks '%s': expected a number of tasks\n", argv[0],
                        argv[i]);
                return 2;
            }
            o.max_tasks = n;
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: %s [--socket PATH] [--max-tasks N]\n"
                   "A pard worker. Connects to the pard daemon (--socket, else $PARD_SOCKET,\n"
                   "else $XDG_RUNTIME_DIR/pard.sock, else /tmp/pard-$UID/pard.sock) and\n"
                   "serves these functions until the daemon stops (or, with --max-tasks,\n"
                   "until it has run N tasks: then it exits 0, to be restarted):\n",
                   argv[0]);
            for (size_t k = 0; k < nfns; k++)
                printf("  %s\n", fns[k].name);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown argument '%s' (try --help)\n", argv[0], argv[i]);
            return 2;
        }
    }
    if (!o.name) {
        const char *slash = argv[0] ? strrchr(argv[0], '/') : NULL;
        o.name = slash ? slash + 1 : argv[0];
    }
    int rc = pard_worker_run(fns, nfns, &o);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", argv[0],
                *pard_last_error() ? pard_last_error() : pard_strerror(rc));
        return 1;
    }
    return 0;
}
