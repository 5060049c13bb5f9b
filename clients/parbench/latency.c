/*
 * latency.c — `parbench latency`: the round trip between two processes,
 * for every way Linux offers to hand a message over, and pard's rings.
 *
 * Owns: one child process per mechanism (forked, never exec'd), the
 * channel it shares with the parent, and the timed ping-pong.
 *
 * Method. A "round trip" is: the parent sends a message of N bytes, the
 * child receives it and sends N bytes back, the parent receives them. The
 * parent reads the clock once per round trip (so each sample includes one
 * clock read, reported in the notes). Mechanisms are measured in
 * interleaved chunks (--repeat, default 5): chunk 1 of every mechanism,
 * then chunk 2 of every mechanism, and so on, so that a noisy second on a
 * shared machine hurts every mechanism alike and the ratios stay honest.
 * Each chunk starts with untimed warm-up rounds (the child has just been
 * woken from its command pipe).
 *
 * Mechanisms (key: what it is):
 *   ring-spin, ring-adaptive, ring-block   two SPSC pard rings in a pard
 *       region, one per direction, waited on in each of pard's wait modes
 *   raw-line     one shared cache line, both sides spinning on it: the
 *                physical floor of any shared-memory hand-off
 *   futex        a futex word per direction, FUTEX_WAKE / FUTEX_WAIT
 *   semaphore    a process-shared POSIX semaphore per direction
 *   pipe         a pipe per direction
 *   unix-stream  a SOCK_STREAM socketpair
 *   unix-seqpacket  a SOCK_SEQPACKET socketpair
 *   eventfd      an eventfd per direction
 *   mqueue       a POSIX message queue per direction
 * The signal-only mechanisms (raw-line, futex, semaphore, eventfd) move
 * the payload through a shared buffer: the sender copies it in, the
 * receiver copies it out, like a ring slot.
 *
 * Must not: leave children behind (PDEATHSIG, and a watchdog alarm that
 * ends parbench when a peer stops answering) or named queues (unlinked as
 * soon as both ends are open).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <mqueue.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* In this order (the table's): each pard ring next to what it is compared
 * with, so that their chunks run back to back. */
enum mech {
    M_RAW,
    M_RING_SPIN,
    M_RING_ADAPTIVE,
    M_FUTEX,
    M_RING_BLOCK,
    M_SEM,
    M_EVENTFD,
    M_PIPE,
    M_STREAM,
    M_SEQPACKET,
    M_MQ,
    M_COUNT
};

static const struct {
    const char *key;
    const char *name;
} mechs[M_COUNT] = {
    [M_RING_SPIN] = {"ring-spin", "pard ring, spin"},
    [M_RING_ADAPTIVE] = {"ring-adaptive", "pard ring, adaptive"},
    [M_RING_BLOCK] = {"ring-block", "pard ring, block"},
    [M_RAW] = {"raw-line", "raw cache line (spin)"},
    [M_FUTEX] = {"futex", "futex"},
    [M_SEM] = {"semaphore", "POSIX semaphore"},
    [M_PIPE] = {"pipe", "pipe"},
    [M_STREAM] = {"unix-stream", "Unix stream socket"},
    [M_SEQPACKET] = {"unix-seqpacket", "Unix seqpacket socket"},
    [M_EVENTFD] = {"eventfd", "eventfd"},
    [M_MQ] = {"mqueue", "POSIX message queue"},
};

#define PB_MAX_CHUNKS 1000
#define KIND_CTL      1
#define KIND_RING0    2 /* parent -> child */
#define KIND_RING1    3 /* child -> parent */
#define RING_MAX_EL   256u

/* The shared control block: every word on its own cache line. */
struct line_u64 {
    _Alignas(PARD_CACHELINE) _Atomic uint64_t v;
};
struct line_u32 {
    _Alignas(PARD_CACHELINE) _Atomic uint32_t v;
};
struct line_sem {
    _Alignas(PARD_CACHELINE) sem_t s;
};

struct lat_shared {
    struct line_u64 ball;   /* raw-line: the one line both sides spin on */
    struct line_u32 fx[2];  /* futex: a word per direction */
    struct line_sem sem[2]; /* semaphore: one per direction */
    /* then the payload buffers, 2 × bufsize bytes */
};

/* One mechanism at one payload size: its channel and its child. */
struct chan {
    enum mech m;
    size_t len;     /* payload bytes */
    size_t bufsize; /* bytes moved per message (ring: whole elements) */
    struct pard_region region;
    struct lat_shared *sh;
    uint8_t *shbuf[2]; /* shared payload buffers (signal-only mechanisms) */
    struct pard_ring ring[2];
    uint32_t elem;  /* ring element size */
    unsigned nelem; /* ring elements per message */
    int fd[2][2];   /* [direction][read=0, write=1] for pipe/eventfd; sockets use fd[0] */
    mqd_t mq[2];
    uint64_t seq; /* raw-line and futex: the last value seen or written */
    uint8_t *buf; /* private message buffer */
    int ctl[2];   /* command pipe to the child */
    pid_t child;
    bool ok;
    char why[120]; /* why it is not ok */
    struct pard_hist h;
    double chunk_p50[PB_MAX_CHUNKS]; /* p50 of each chunk, for paired ratios */
    unsigned nchunks;
};

/* ----------------------------------------------------------------------
 * Watchdog
 * ---------------------------------------------------------------------- */

/*
 * A round trip that never completes (a peer died or is stuck) would hang
 * parbench: every WATCH_S seconds SIGALRM looks whether round trips are
 * still completing, and ends parbench when none did in that time. Only
 * progress counts, not how long a chunk takes: on a busy machine, or with
 * a big --rounds, a chunk may take minutes and be fine.
 */
#define WATCH_S 60
static const char *volatile watch_what = "";
static _Atomic unsigned watch_trips; /* round trips so far: written by the parent only */
static unsigned watch_seen;          /* watch_trips at the last alarm */

/* Count one round trip for the watchdog: a plain load and store (one
 * writer; the reader is a signal handler in the same thread). */
static inline void watch_tick(void)
{
    atomic_store_explicit(&watch_trips,
                          atomic_load_explicit(&watch_trips, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void watch_start(const char *what)
{
    watch_what = what;
    watch_seen = atomic_load_explicit(&watch_trips, memory_order_relaxed);
    alarm(WATCH_S);
}

static void on_alarm(int sig)
{
    unsigned now = atomic_load_explicit(&watch_trips, memory_order_relaxed);
    if (now != watch_seen) {
        watch_seen = now;
        alarm(WATCH_S);
        return;
    }
    static const char msg[] = "parbench: latency: a peer process stopped answering for 60 s: ";
    ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    n = write(STDERR_FILENO, watch_what, strlen(watch_what));
    n = write(STDERR_FILENO, "\n", 1);
    (void)n;
    _exit(1);
}

/* ----------------------------------------------------------------------
 * Send and receive, per mechanism
 * ---------------------------------------------------------------------- */

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)w, op, val, NULL, NULL, 0);
}

static int write_all(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t n = write(fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t len)
{
    uint8_t *b = p;
    while (len) {
        ssize_t n = read(fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

static enum pard_wait_mode ring_mode(enum mech m)
{
    return m == M_RING_SPIN    ? PARD_WAIT_SPIN
           : m == M_RING_BLOCK ? PARD_WAIT_BLOCK
                               : PARD_WAIT_ADAPTIVE;
}

/* Send this side's message (side 0 = parent, direction 0; side 1 = child). */
static int chan_send(struct chan *c, int side)
{
    int d = side;
    switch (c->m) {
    case M_RING_SPIN:
    case M_RING_ADAPTIVE:
    case M_RING_BLOCK: {
        unsigned done = 0;
        while (done < c->nelem) {
            int n = pard_ring_push_wait(&c->ring[d], c->buf + (size_t)done * c->elem,
                                        c->nelem - done, ring_mode(c->m), -1);
            if (n <= 0)
                return -1;
            done += (unsigned)n;
        }
        return 0;
    }
    case M_RAW:
        memcpy(c->shbuf[d], c->buf, c->len);
        /* Release: the payload is visible to whoever sees the new value. */
        atomic_store_explicit(&c->sh->ball.v, ++c->seq, memory_order_release);
        return 0;
    case M_FUTEX:
        memcpy(c->shbuf[d], c->buf, c->len);
        atomic_store_explicit(&c->sh->fx[d].v, (uint32_t)++c->seq, memory_order_release);
        futex(&c->sh->fx[d].v, FUTEX_WAKE, 1);
        return 0;
    case M_SEM:
        memcpy(c->shbuf[d], c->buf, c->len);
        return sem_post(&c->sh->sem[d].s);
    case M_EVENTFD: {
        memcpy(c->shbuf[d], c->buf, c->len);
        uint64_t one = 1;
        return write(c->fd[d][1], &one, 8) == 8 ? 0 : -1;
    }
    case M_PIPE:
        return write_all(c->fd[d][1], c->buf, c->len);
    case M_STREAM:
        return write_all(c->fd[0][side], c->buf, c->len);
    case M_SEQPACKET:
        return send(c->fd[0][side], c->buf, c->len, 0) == (ssize_t)c->len ? 0 : -1;
    case M_MQ:
        return mq_send(c->mq[d], (const char *)c->buf, c->len, 0);
    case M_COUNT:
        break;
    }
    return -1;
}

/* Receive the other side's message. */
static int chan_recv(struct chan *c, int side)
{
    int d = 1 - side;
    switch (c->m) {
    case M_RING_SPIN:
    case M_RING_ADAPTIVE:
    case M_RING_BLOCK: {
        unsigned done = 0;
        while (done < c->nelem) {
            int n = pard_ring_pop_wait(&c->ring[d], c->buf + (size_t)done * c->elem,
                                       c->nelem - done, ring_mode(c->m), -1);
            if (n <= 0)
                return -1;
            done += (unsigned)n;
        }
        return 0;
    }
    case M_RAW: {
        uint64_t want = ++c->seq;
        /* Acquire: pairs with the sender's release store. */
        while (atomic_load_explicit(&c->sh->ball.v, memory_order_acquire) != want)
            pard_cpu_relax();
        memcpy(c->buf, c->shbuf[d], c->len);
        return 0;
    }
    case M_FUTEX: {
        uint32_t want = (uint32_t)++c->seq;
        for (;;) {
            uint32_t v = atomic_load_explicit(&c->sh->fx[d].v, memory_order_acquire);
            if (v == want)
                break;
            futex(&c->sh->fx[d].v, FUTEX_WAIT, v); /* returns at once if it changed */
        }
        memcpy(c->buf, c->shbuf[d], c->len);
        return 0;
    }
    case M_SEM:
        while (sem_wait(&c->sh->sem[d].s) != 0)
            if (errno != EINTR)
                return -1;
        memcpy(c->buf, c->shbuf[d], c->len);
        return 0;
    case M_EVENTFD: {
        uint64_t v;
        if (read(c->fd[d][0], &v, 8) != 8)
            return -1;
        memcpy(c->buf, c->shbuf[d], c->len);
        return 0;
    }
    case M_PIPE:
        return read_all(c->fd[d][0], c->buf, c->len);
    case M_STREAM:
        return read_all(c->fd[0][side], c->buf, c->len);
    case M_SEQPACKET:
        return recv(c->fd[0][side], c->buf, c->bufsize, 0) == (ssize_t)c->len ? 0 : -1;
    case M_MQ:
        return mq_receive(c->mq[d], (char *)c->buf, c->bufsize, NULL) == (ssize_t)c->len ? 0 : -1;
    case M_COUNT:
        break;
    }
    return -1;
}

/* ----------------------------------------------------------------------
 * Channels
 * ---------------------------------------------------------------------- */

static uint32_t pow2_at_least(uint64_t v)
{
    uint32_t p = 2;
    while (p < v && p < PARD_RING_MAX_CAPACITY)
        p <<= 1;
    return p;
}

/* Create the channel for mechanism m at payload size len. Returns 0, or 1
 * when the mechanism cannot carry this size (c->why says why), or -1. */
static int chan_open(struct chan *c, enum mech m, size_t len)
{
    memset(c, 0, sizeof(*c));
    c->m = m;
    c->len = len;
    c->ctl[0] = c->ctl[1] = -1;
    for (int d = 0; d < 2; d++) {
        c->fd[d][0] = c->fd[d][1] = -1;
        c->mq[d] = (mqd_t)-1;
    }
    pard_hist_init(&c->h);
    /* Ring geometry: elements of up to 256 bytes, as many as the payload needs. */
    c->elem = len <= RING_MAX_EL ? (uint32_t)((len + 7) & ~(size_t)7) : RING_MAX_EL;
    if (c->elem < 8)
        c->elem = 8;
    c->nelem = (unsigned)((len + c->elem - 1) / c->elem);
    if (c->nelem == 0)
        c->nelem = 1;
    c->bufsize = (size_t)c->nelem * c->elem;
    if (c->bufsize < len)
        c->bufsize = len;
    if (m == M_SEQPACKET && len > 65536) {
        snprintf(c->why, sizeof(c->why), "messages over 64K do not fit a socket buffer");
        return 1;
    }
    if (m == M_MQ && len > 8192) {
        snprintf(c->why, sizeof(c->why), "messages over 8K exceed the default msgsize_max");
        return 1;
    }
    c->buf = aligned_alloc(PARD_CACHELINE, (c->bufsize + 63) & ~(size_t)63);
    if (!c->buf)
        return -1;
    memset(c->buf, 0x5a, c->bufsize);

    /* The region: control block, payload buffers, two rings. */
    size_t ctl_size = sizeof(struct lat_shared) + 2 * ((c->bufsize + 63) & ~(size_t)63);
    uint32_t cap = pow2_at_least(c->nelem < 32 ? 64 : 2 * (uint64_t)c->nelem);
    size_t rsize = pard_ring_footprint(PARD_RING_SPSC, cap, c->elem);
    bool ring = m == M_RING_SPIN || m == M_RING_ADAPTIVE || m == M_RING_BLOCK;
    size_t total = 4096 + ctl_size + (ring ? 2 * rsize + 256 : 0);
    int rc = pard_region_open(&c->region, (total + 4095) & ~(size_t)4095);
    uint64_t off[3];
    if (rc == 0)
        rc = pard_region_add_section(&c->region, KIND_CTL, ctl_size, &off[0]);
    if (rc >= 0 && ring)
        rc = pard_region_add_section(&c->region, KIND_RING0, rsize, &off[1]);
    if (rc >= 0 && ring)
        rc = pard_region_add_section(&c->region, KIND_RING1, rsize, &off[2]);
    if (rc < 0) {
        snprintf(c->why, sizeof(c->why), "shared memory: %s", pard_strerror(rc));
        return -1;
    }
    uint8_t *base = c->region.base;
    c->sh = (struct lat_shared *)(base + off[0]);
    c->shbuf[0] = (uint8_t *)(c->sh + 1);
    c->shbuf[1] = c->shbuf[0] + ((c->bufsize + 63) & ~(size_t)63);
    if (ring) {
        for (int d = 0; d < 2; d++) {
            rc =
                pard_ring_init(&c->ring[d], base + off[1 + d], rsize, PARD_RING_SPSC, cap, c->elem);
            if (rc != 0) {
                snprintf(c->why, sizeof(c->why), "ring: %s", pard_strerror(rc));
                return -1;
            }
        }
    }
    pard_region_publish(&c->region, 1, NULL);

    switch (m) {
    case M_SEM:
        for (int d = 0; d < 2; d++)
            if (sem_init(&c->sh->sem[d].s, 1, 0) != 0)
                goto sys;
        break;
    case M_PIPE:
        for (int d = 0; d < 2; d++) {
            if (pipe2(c->fd[d], O_CLOEXEC) != 0)
                goto sys;
            /* A big pipe buffer, so large payloads are not cut into 64K steps. */
            if (len > 65536)
                fcntl(c->fd[d][1], F_SETPIPE_SZ, (int)(len < (1u << 20) ? len : (1u << 20)));
        }
        break;
    case M_EVENTFD:
        for (int d = 0; d < 2; d++) {
            c->fd[d][0] = c->fd[d][1] = eventfd(0, EFD_CLOEXEC);
            if (c->fd[d][0] < 0)
                goto sys;
        }
        break;
    case M_STREAM:
    case M_SEQPACKET:
        if (socketpair(AF_UNIX, (m == M_STREAM ? SOCK_STREAM : SOCK_SEQPACKET) | SOCK_CLOEXEC, 0,
                       c->fd[0]) != 0)
            goto sys;
        if (len > 65536) {
            int sz = (int)(len < (4u << 20) ? len : (4u << 20));
            for (int k = 0; k < 2; k++) {
                setsockopt(c->fd[0][k], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
                setsockopt(c->fd[0][k], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
            }
        }
        break;
    case M_MQ:
        for (int d = 0; d < 2; d++) {
            char name[64];
            snprintf(name, sizeof(name), "/parbench-%d-%d-%d", (int)getpid(), (int)len, d);
            struct mq_attr a = {.mq_maxmsg = 4, .mq_msgsize = (long)(len ? len : 1)};
            c->mq[d] = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &a);
            if (c->mq[d] == (mqd_t)-1)
                goto sys;
            mq_unlink(name); /* nothing named outlives us */
        }
        c->bufsize = len ? len : 1;
        break;
    default:
        break;
    }
    return 0;
sys:
    snprintf(c->why, sizeof(c->why), "%s", strerror(errno));
    return 1;
}

static void chan_close(struct chan *c)
{
    if (c->child > 0) {
        uint64_t quit[2] = {0, 0};
        if (c->ctl[1] >= 0 && write(c->ctl[1], quit, sizeof(quit)) != (ssize_t)sizeof(quit))
            kill(c->child, SIGKILL);
        int status;
        if (waitpid(c->child, &status, 0) == c->child &&
            (!WIFEXITED(status) || WEXITSTATUS(status) != 0) && c->ok) {
            c->ok = false;
            snprintf(c->why, sizeof(c->why), "the peer process failed");
        }
        c->child = 0;
    }
    for (int k = 0; k < 2; k++)
        if (c->ctl[k] >= 0)
            close(c->ctl[k]);
    for (int d = 0; d < 2; d++) {
        if (c->fd[d][0] >= 0)
            close(c->fd[d][0]);
        if (c->fd[d][1] >= 0 && c->fd[d][1] != c->fd[d][0])
            close(c->fd[d][1]);
        if (c->mq[d] != (mqd_t)-1)
            mq_close(c->mq[d]);
    }
    if (c->m == M_SEM && c->sh) {
        sem_destroy(&c->sh->sem[0].s);
        sem_destroy(&c->sh->sem[1].s);
    }
    pard_region_close(&c->region);
    free(c->buf);
    c->buf = NULL;
}

/* The child: answer `rounds` messages per command until told to quit. */
static void child_main(struct chan *c, bool pin)
{
    if (pin)
        pb_pin_cpu(1);
    close(c->ctl[1]);
    for (;;) {
        uint64_t cmd[2];
        if (read_all(c->ctl[0], cmd, sizeof(cmd)) != 0 || cmd[0] == 0)
            _exit(0);
        for (uint64_t i = 0; i < cmd[0]; i++)
            if (chan_recv(c, 1) != 0 || chan_send(c, 1) != 0)
                _exit(3);
    }
}

static int chan_start(struct chan *c, bool pin)
{
    if (pipe2(c->ctl, O_CLOEXEC) != 0)
        return -1;
    pid_t parent = getpid();
    c->child = fork();
    if (c->child < 0) {
        c->child = 0;
        return -1;
    }
    if (c->child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        child_main(c, pin);
    }
    close(c->ctl[0]);
    c->ctl[0] = -1;
    c->ok = true;
    return 0;
}

/* One chunk: `warm` untimed and `rounds` timed round trips. */
static int chan_chunk(struct chan *c, uint64_t warm, uint64_t rounds)
{
    struct pard_hist *chunk = malloc(sizeof(*chunk));
    if (!chunk)
        return -1;
    pard_hist_init(chunk);
    uint64_t cmd[2] = {warm + rounds, 0};
    if (write_all(c->ctl[1], cmd, sizeof(cmd)) != 0) {
        free(chunk);
        return -1;
    }
    int rc = 0;
    watch_start(mechs[c->m].name);
    for (uint64_t i = 0; i < warm && rc == 0; i++) {
        rc = chan_send(c, 0) != 0 || chan_recv(c, 0) != 0 ? -1 : 0;
        watch_tick();
    }
    /* One clock read per round trip: each sample spans send, receive and
     * one read of the clock. */
    int64_t prev = pard_now_ns();
    for (uint64_t i = 0; i < rounds && rc == 0; i++) {
        if (chan_send(c, 0) != 0 || chan_recv(c, 0) != 0) {
            rc = -1;
            break;
        }
        int64_t now = pard_now_ns();
        pard_hist_record(chunk, (uint64_t)(now - prev));
        prev = now;
        watch_tick();
    }
    alarm(0);
    if (rc == 0) {
        pard_hist_merge(&c->h, chunk);
        if (c->nchunks < PB_MAX_CHUNKS)
            c->chunk_p50[c->nchunks++] = (double)pard_hist_percentile(chunk, 50);
    }
    free(chunk);
    return rc;
}

/* ----------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

/*
 * The median over chunks of a's chunk p50 / b's chunk p50: a paired
 * comparison. Chunk k of a and of b ran back to back, so whatever the
 * machine did during that moment (another program, the hypervisor moving a
 * virtual CPU) weighs on both.
 */
static double paired_ratio(const struct chan *a, const struct chan *b)
{
    double r[PB_MAX_CHUNKS];
    unsigned n = a->nchunks < b->nchunks ? a->nchunks : b->nchunks;
    for (unsigned k = 0; k < n; k++)
        r[k] = a->chunk_p50[k] / b->chunk_p50[k];
    return n ? pb_median(r, (int)n) : NAN;
}

static double clock_read_ns(void)
{
    double best = 1e9;
    for (int k = 0; k < 5; k++) {
        int64_t t0 = pard_now_ns();
        volatile int64_t sink = 0;
        for (int i = 0; i < 10000; i++)
            sink += pard_now_ns();
        (void)sink;
        double per = (double)(pard_now_ns() - t0) / 10000.0;
        if (per < best)
            best = per;
    }
    return best;
}

int pb_latency(const struct pb_opts *o, struct pb_report *r)
{
    uint64_t rounds = o->rounds ? o->rounds : 4000;
    /* Many short chunks: on a virtual machine the cost of a cache-line
     * transfer changes from one millisecond to the next. */
    unsigned repeat = o->repeat ? o->repeat : 40;
    if (repeat > PB_MAX_CHUNKS)
        repeat = PB_MAX_CHUNKS;
    if (repeat > rounds)
        repeat = (unsigned)rounds;
    uint64_t per_chunk = rounds / repeat;
    uint64_t warm = per_chunk / 20 < 20 ? 20 : per_chunk / 20;
    unsigned nsizes = o->nsizes ? o->nsizes : 1;
    uint64_t sizes[PB_MAX_LIST] = {8};
    if (o->nsizes)
        memcpy(sizes, o->sizes, sizeof(sizes));

    static const struct pb_col cols[] = {
        {"mechanism", "mechanism", -1}, {"key", "key", -1},          {"bytes", "bytes", 0},
        {"p50_us", "p50 us", 3},        {"p90_us", "p90 us", 3},     {"p99_us", "p99 us", 3},
        {"p999_us", "p99.9 us", 3},     {"max_us", "max us", 1},     {"mean_us", "mean us", 3},
        {"rounds", "rounds", 0},        {"vs_raw", "x raw line", 2},
    };
    struct pb_table *t =
        pb_table_new(r, "latency", "Round trip between two processes (message there and back)",
                     cols, (int)(sizeof(cols) / sizeof(cols[0])));
    if (nsizes == 1) {
        t->plot.x = 0;
        t->plot.y[0] = 3;
        t->plot.y[1] = 5;
        t->plot.ny = 2;
        t->plot.logy = true;
        t->plot.ylabel = "round trip (us)";
    } else {
        t->plot.x = 2;
        t->plot.y[0] = 3;
        t->plot.ny = 1;
        t->plot.series = 0;
        t->plot.logx = t->plot.logy = true;
        t->plot.xlabel = "payload (bytes)";
        t->plot.ylabel = "p50 round trip (us)";
    }

    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART; /* the watchdog may interrupt a blocked read */
    sigaction(SIGALRM, &sa, &old_sa);
    cpu_set_t old_mask;
    /* Pinned by default: the parent on CPU 0, every child on CPU 1, so that
     * every mechanism crosses between the same two cores. Left to itself
     * the scheduler sometimes runs both ends of a blocking mechanism on
     * one CPU (a cheap local wake-up) and sometimes not (a wake-up across
     * cores), and two mechanisms measured side by side would not be
     * compared on equal terms. */
    bool pin = !o->no_pin;
    bool pinned = pin && sched_getaffinity(0, sizeof(old_mask), &old_mask) == 0;
    if (pinned)
        pb_pin_cpu(0);

    double clk = clock_read_ns();
    int status = 0;
    double spin_ratio = NAN, block_ratio = NAN;
    for (unsigned si = 0; si < nsizes; si++) {
        size_t len = (size_t)sizes[si];
        struct chan *ch = calloc(M_COUNT, sizeof(*ch));
        if (!ch)
            return -1;
        int n = 0;
        for (int m = 0; m < M_COUNT; m++) {
            struct chan *c = &ch[m];
            if (!pb_only(o, mechs[m].key)) {
                c->m = (enum mech)m;
                c->why[0] = '\0';
                c->ok = false;
                c->child = 0;
                c->ctl[0] = c->ctl[1] = -1;
                c->fd[0][0] = c->fd[0][1] = c->fd[1][0] = c->fd[1][1] = -1;
                c->mq[0] = c->mq[1] = (mqd_t)-1;
                snprintf(c->why, sizeof(c->why), "-");
                continue;
            }
            int rc = chan_open(c, (enum mech)m, len);
            if (rc == 0 && chan_start(c, pinned) != 0) {
                snprintf(c->why, sizeof(c->why), "fork: %s", strerror(errno));
                rc = -1;
            }
            if (rc != 0) {
                c->ok = false;
                pb_note(r, "%s at %zu bytes: skipped (%s)", mechs[m].name, len, c->why);
            } else {
                n++;
            }
        }
        pb_progress(o, "latency: %d mechanisms, %zu-byte messages, %llu round trips each", n, len,
                    (unsigned long long)rounds);
        for (unsigned k = 0; k < repeat; k++) {
            /* Alternate the order so that no mechanism always runs first. */
            for (int j = 0; j < M_COUNT; j++) {
                int m = k % 2 ? M_COUNT - 1 - j : j;
                struct chan *c = &ch[m];
                if (!c->ok)
                    continue;
                uint64_t this_chunk =
                    k + 1 == repeat ? rounds - per_chunk * (repeat - 1) : per_chunk;
                if (chan_chunk(c, warm, this_chunk) != 0) {
                    c->ok = false;
                    snprintf(c->why, sizeof(c->why), "the round trip failed: %s", strerror(errno));
                    pb_note(r, "%s at %zu bytes: %s", mechs[m].name, len, c->why);
                    status = -1;
                }
            }
        }
        double raw_p50 = ch[M_RAW].ok ? (double)pard_hist_percentile(&ch[M_RAW].h, 50) : NAN;
        for (int m = 0; m < M_COUNT; m++) {
            struct chan *c = &ch[m];
            if (!pb_only(o, mechs[m].key))
                continue;
            int row = pb_row(t);
            pb_set_str(t, row, 0, mechs[m].name);
            pb_set_str(t, row, 1, mechs[m].key);
            pb_set_num(t, row, 2, (double)len);
            if (c->ok && c->h.count) {
                const struct pard_hist *h = &c->h;
                double p50 = (double)pard_hist_percentile(h, 50);
                pb_set_num(t, row, 3, p50 / 1e3);
                pb_set_num(t, row, 4, (double)pard_hist_percentile(h, 90) / 1e3);
                pb_set_num(t, row, 5, (double)pard_hist_percentile(h, 99) / 1e3);
                pb_set_num(t, row, 6, (double)pard_hist_percentile(h, 99.9) / 1e3);
                pb_set_num(t, row, 7, (double)h->max / 1e3);
                pb_set_num(t, row, 8, pard_hist_mean(h) / 1e3);
                pb_set_num(t, row, 9, (double)h->count);
                pb_set_num(t, row, 10, p50 / raw_p50);
                if (si == 0) {
                    char name[64];
                    snprintf(name, sizeof(name), "%s, %zu B", mechs[m].key, len);
                    pb_hist_add(r, name, h);
                }
            }
        }
        if (si == 0) {
            if (ch[M_RING_SPIN].ok && ch[M_RAW].ok)
                spin_ratio = paired_ratio(&ch[M_RING_SPIN], &ch[M_RAW]);
            if (ch[M_RING_BLOCK].ok && ch[M_FUTEX].ok)
                block_ratio = paired_ratio(&ch[M_RING_BLOCK], &ch[M_FUTEX]);
        }
        for (int m = 0; m < M_COUNT; m++)
            if (pb_only(o, mechs[m].key))
                chan_close(&ch[m]);
        free(ch);
    }
    if (pinned)
        sched_setaffinity(0, sizeof(old_mask), &old_mask);
    sigaction(SIGALRM, &old_sa, NULL);

    pb_table_note(t,
                  "Each sample is one round trip plus one clock read (%.0f ns). Mechanisms ran "
                  "in %u interleaved chunks with warm-up rounds%s; \"x raw line\" is p50 over "
                  "the raw cache line's p50 at the same size.",
                  clk, repeat, pinned ? ", the two processes pinned to CPUs 0 and 1" : "");
    if (isfinite(spin_ratio) || !o->nonly)
        pb_figure(r, "spin_vs_raw_line", spin_ratio, "x", PB_AT_MOST, 1.5,
                  "pard ring (spin) round trip / raw cache-line ping-pong, %zu B (median of "
                  "paired chunk p50s)",
                  (size_t)sizes[0]);
    if (isfinite(block_ratio) || !o->nonly)
        pb_figure(r, "block_vs_futex", block_ratio, "x", PB_AT_MOST, 1.2,
                  "pard ring (block) round trip / raw futex round trip, %zu B (median of "
                  "paired chunk p50s)",
                  (size_t)sizes[0]);
    pb_note(r, "Spinning needs a free core for each side: on a busy machine a spinner can lose "
               "its core for a scheduler slice, which shows in p99 and max.");
    return status;
}
