/*
 * shm.c — `parbench shm`: sharing a large block against copying it.
 *
 * Owns: a consumer child, forked once per block size, and the timed
 * hand-offs. A hand-off ends when the consumer has read every byte (it sums
 * them as 64-bit words; the producer checks the sum) and said so:
 *
 *   shared region    the block already lives in a pard region both map;
 *                    hand-off = a message over the control socket, the
 *                    consumer reads the region in place, the reply
 *   new region       a fresh pard region is handed over as a descriptor
 *                    (SCM_RIGHTS), the consumer attaches (mmap + header
 *                    checks), reads it, unmaps it, replies
 *   pipe             the block is written into a pipe (1 MiB buffer) and
 *                    read into the consumer's private buffer, then read
 *   unix socket      the same through a SOCK_STREAM socketpair
 *   memcpy           no other process: memcpy into a second buffer and read
 *                    it there (the floor of any copy)
 *
 * Producing the block (writing it) is not timed in any variant: the
 * question is what handing it over costs. Methods run interleaved, the
 * median of --repeat (default 5) is shown.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

enum method { H_SHARED, H_NEWREGION, H_PIPE, H_SOCKET, H_MEMCPY, H_COUNT };

static const char *const method_name[H_COUNT] = {
    [H_SHARED] = "pard region, shared (mapped once)",
    [H_NEWREGION] = "pard region, new (fd passed, mapped)",
    [H_PIPE] = "pipe (copied)",
    [H_SOCKET] = "Unix socket (copied)",
    [H_MEMCPY] = "memcpy in one process",
};

#define KIND_BLOCK 1

struct cmd {
    uint32_t method;
    uint32_t pad;
    uint64_t size;
};

static uint64_t sum_words(const void *p, size_t len)
{
    const uint64_t *w = p;
    uint64_t s = 0;
    for (size_t i = 0; i < len / 8; i++)
        s += w[i];
    return s;
}

static int send_fd(int sock, const void *buf, size_t len, int fd)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&u, 0, sizeof(u));
        msg.msg_control = u.buf;
        msg.msg_controllen = sizeof(u.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static int recv_fd(int sock, void *buf, size_t len, int *fd)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    *fd = -1;
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n != (ssize_t)len)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
            memcpy(fd, CMSG_DATA(c), sizeof(int));
    return 0;
}

static int read_full(int fd, void *p, size_t len)
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

static int write_full(int fd, const void *p, size_t len)
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

struct rig {
    uint64_t size;
    struct pard_region shared; /* the mapped-once region */
    uint8_t *block;            /* its block */
    uint8_t *priv;             /* the producer's private copy (pipe, socket, memcpy) */
    uint8_t *dst;              /* memcpy's destination */
    int ctl[2];                /* seqpacket: commands, descriptors, replies */
    int pipefd[2];
    int sock[2];
    pid_t child;
};

/* The consumer: serve commands until the control socket closes. */
static void consumer(struct rig *g)
{
    uint8_t *buf = malloc(g->size);
    if (!buf)
        _exit(1);
    memset(buf, 0, g->size); /* fault it in now, not while timed */
    for (;;) {
        struct cmd c;
        int fd = -1;
        if (recv_fd(g->ctl[1], &c, sizeof(c), &fd) != 0)
            _exit(0);
        uint64_t s = 0;
        switch (c.method) {
        case H_SHARED:
            s = sum_words(g->block, c.size);
            break;
        case H_NEWREGION: {
            struct pard_region r;
            if (fd < 0 || pard_region_attach(&r, fd, 1) != 0)
                _exit(2);
            close(fd);
            uint64_t len;
            const void *b = pard_region_find(&r, KIND_BLOCK, &len);
            if (!b || len < c.size)
                _exit(2);
            s = sum_words(b, c.size);
            pard_region_close(&r);
            break;
        }
        case H_PIPE:
            if (read_full(g->pipefd[0], buf, c.size) != 0)
                _exit(2);
            s = sum_words(buf, c.size);
            break;
        case H_SOCKET:
            if (read_full(g->sock[1], buf, c.size) != 0)
                _exit(2);
            s = sum_words(buf, c.size);
            break;
        default:
            _exit(2);
        }
        if (fd >= 0)
            close(fd);
        if (write(g->ctl[1], &s, sizeof(s)) != (ssize_t)sizeof(s))
            _exit(2);
    }
}

static void fill(uint8_t *p, uint64_t size, uint64_t seed)
{
    uint64_t *w = (uint64_t *)p;
    for (uint64_t i = 0; i < size / 8; i++)
        w[i] = seed + i * 0x9e3779b97f4a7c15ull;
}

static int rig_open(struct rig *g, uint64_t size)
{
    memset(g, 0, sizeof(*g));
    g->size = size;
    g->ctl[0] = g->ctl[1] = g->pipefd[0] = g->pipefd[1] = g->sock[0] = g->sock[1] = -1;
    uint64_t off;
    int rc = pard_region_open(&g->shared, (size_t)size + 8192);
    if (rc == 0)
        rc = pard_region_add_section(&g->shared, KIND_BLOCK, size, &off);
    if (rc < 0) {
        fprintf(stderr, "parbench: shm: cannot create a %llu-byte region: %s\n",
                (unsigned long long)size, pard_strerror(rc));
        return -1;
    }
    pard_region_publish(&g->shared, 1, NULL);
    g->block = (uint8_t *)g->shared.base + off;
    g->priv = malloc(size);
    g->dst = malloc(size);
    if (!g->priv || !g->dst)
        return -1;
    fill(g->priv, size, 1);
    memset(g->dst, 0, size);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, g->ctl) != 0 ||
        pipe2(g->pipefd, O_CLOEXEC) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g->sock) != 0) {
        fprintf(stderr, "parbench: shm: %s\n", strerror(errno));
        return -1;
    }
    fcntl(g->pipefd[1], F_SETPIPE_SZ, 1 << 20); /* best effort: the default is 64K */
    int sz = 4 << 20;
    for (int k = 0; k < 2; k++) {
        setsockopt(g->sock[k], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        setsockopt(g->sock[k], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    }
    pid_t parent = getpid();
    g->child = fork();
    if (g->child < 0) {
        g->child = 0;
        return -1;
    }
    if (g->child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        close(g->ctl[0]);
        consumer(g);
    }
    close(g->ctl[1]);
    g->ctl[1] = -1;
    return 0;
}

static void rig_close(struct rig *g)
{
    if (g->ctl[0] >= 0)
        close(g->ctl[0]); /* the consumer leaves */
    if (g->child > 0) {
        int status;
        waitpid(g->child, &status, 0);
    }
    int fds[] = {g->ctl[1], g->pipefd[0], g->pipefd[1], g->sock[0], g->sock[1]};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pard_region_close(&g->shared);
    free(g->priv);
    free(g->dst);
}

/* One timed hand-off; returns ns, or NAN on failure. */
static double handoff(struct rig *g, enum method m, uint64_t seed)
{
    uint64_t size = g->size;
    struct cmd c = {.method = m, .size = size};
    struct pard_region fresh = {.fd = -1};
    uint64_t expect;
    /* Produce the block (untimed). */
    if (m == H_SHARED) {
        fill(g->block, size, seed);
    } else if (m == H_NEWREGION) {
        uint64_t off;
        int rc = pard_region_open(&fresh, (size_t)size + 8192);
        if (rc == 0)
            rc = pard_region_add_section(&fresh, KIND_BLOCK, size, &off);
        if (rc < 0)
            return NAN;
        fill((uint8_t *)fresh.base + off, size, seed);
        pard_region_publish(&fresh, 1, NULL);
    } else {
        fill(g->priv, size, seed);
    }
    expect = 0;
    for (uint64_t i = 0; i < size / 8; i++)
        expect += seed + i * 0x9e3779b97f4a7c15ull;

    int64_t t0 = pard_now_ns();
    uint64_t got = 0;
    if (m == H_MEMCPY) {
        memcpy(g->dst, g->priv, size);
        got = sum_words(g->dst, size);
    } else {
        if (send_fd(g->ctl[0], &c, sizeof(c), m == H_NEWREGION ? fresh.fd : -1) != 0)
            return NAN;
        if (m == H_PIPE && write_full(g->pipefd[1], g->priv, size) != 0)
            return NAN;
        if (m == H_SOCKET && write_full(g->sock[0], g->priv, size) != 0)
            return NAN;
        if (read_full(g->ctl[0], &got, sizeof(got)) != 0)
            return NAN;
    }
    double dt = (double)(pard_now_ns() - t0);
    if (m == H_NEWREGION)
        pard_region_close(&fresh);
    return got == expect ? dt : NAN;
}

int pb_shm(const struct pb_opts *o, struct pb_report *r)
{
    static const uint64_t defaults[] = {4096, 65536, 1 << 20, 16 << 20, 64 << 20};
    unsigned nsz = o->nblocks ? o->nblocks : (unsigned)(sizeof(defaults) / sizeof(defaults[0]));
    const uint64_t *sizes = o->nblocks ? o->blocks : defaults;
    unsigned repeat = o->repeat ? o->repeat : 5;

    static const struct pb_col cols[] = {
        {"method", "method", -1},         {"bytes", "bytes", 0},   {"size", "size", -1},
        {"handoff_us", "hand-off us", 1}, {"gb_per_s", "GB/s", 2}, {"vs_shared", "x shared", 1},
    };
    struct pb_table *t =
        pb_table_new(r, "shm", "Handing a block to another process: share it, or copy it", cols, 6);
    t->plot.x = 1;
    t->plot.y[0] = 3;
    t->plot.ny = 1;
    t->plot.series = 0;
    t->plot.logx = t->plot.logy = true;
    t->plot.xlabel = "block size (bytes)";
    t->plot.ylabel = "hand-off time (us)";

    int status = 0;
    double big_ratio = NAN;
    uint64_t big = 0;
    for (unsigned i = 0; i < nsz; i++) {
        uint64_t size = sizes[i] & ~(uint64_t)7;
        if (size < 8)
            size = 8;
        char sz[32];
        pb_size_str(size, sz, sizeof(sz));
        pb_progress(o, "shm: %s blocks, %u hand-offs per method", sz, repeat);
        struct rig g;
        if (rig_open(&g, size) != 0) {
            rig_close(&g);
            status = -1;
            break;
        }
        double ts[H_COUNT][PB_MAX_LIST * 4];
        int nt[H_COUNT] = {0};
        /* One untimed round first: page tables, pipe buffers, caches. */
        for (int m = 0; m < H_COUNT; m++)
            handoff(&g, (enum method)m, 7);
        for (unsigned k = 0; k < repeat && k < PB_MAX_LIST * 4; k++) {
            for (int m = 0; m < H_COUNT; m++) {
                double dt = handoff(&g, (enum method)m, 11 + k);
                if (isnan(dt)) {
                    pb_note(r, "%s with %s blocks failed (a wrong sum or a broken channel)",
                            method_name[m], sz);
                    status = -1;
                    continue;
                }
                ts[m][nt[m]++] = dt;
            }
        }
        rig_close(&g);
        double med[H_COUNT];
        for (int m = 0; m < H_COUNT; m++)
            med[m] = nt[m] ? pb_median(ts[m], nt[m]) : NAN;
        for (int m = 0; m < H_COUNT; m++) {
            int row = pb_row(t);
            pb_set_str(t, row, 0, method_name[m]);
            pb_set_num(t, row, 1, (double)size);
            pb_set_str(t, row, 2, sz);
            pb_set_num(t, row, 3, med[m] / 1e3);
            pb_set_num(t, row, 4, (double)size / med[m]);
            pb_set_num(t, row, 5, med[m] / med[H_SHARED]);
        }
        if (size >= big) {
            big = size;
            big_ratio = med[H_PIPE] / med[H_SHARED];
        }
    }
    pb_table_note(t,
                  "Median of %u interleaved hand-offs. Every hand-off ends when the consumer "
                  "has read every byte (and its sum was checked); writing the block is not "
                  "timed. GB/s = bytes / hand-off time.",
                  repeat);
    if (big) {
        char sz[32];
        pb_figure(r, "pipe_vs_shared_largest", big_ratio, "x", PB_NONE, 0,
                  "hand-off through a pipe / shared pard region, %s blocks",
                  pb_size_str(big, sz, sizeof(sz)));
    }
    return status;
}
