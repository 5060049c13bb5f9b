/*
 * sock.c — frames over a Unix stream socket: sendmsg with one descriptor
 * on the first byte (SCM_RIGHTS), recvmsg that takes descriptors with
 * MSG_CMSG_CLOEXEC and never leaks one, and blocking conveniences for
 * clients built on the frame reader.
 *
 * It owns no event loop: pard_sock_send and pard_sock_recv make one
 * system call each and report -EAGAIN, so the daemon can drive them from
 * libuv; the *_frame and *_msg helpers wait with poll() for clients.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* How much a blocking receive asks the kernel for at once. */
#define RECV_CHUNK (64u * 1024u)

int pard_sock_send(int fd, const void *buf, size_t len, int pass_fd)
{
    if (len == 0 || buf == NULL)
        return -EINVAL;
    if (len > INT_MAX)
        len = INT_MAX;

    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    if (pass_fd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }

    ssize_t n;
    do
        n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return (int)n;
}

/* Wait until fd is ready for `events` or the deadline (ns, <0 = none). */
static int wait_fd(int fd, short events, int64_t deadline_ns)
{
    for (;;) {
        int timeout = -1;
        if (deadline_ns >= 0) {
            int64_t left = deadline_ns - pard_now_ns();
            if (left <= 0)
                return -ETIMEDOUT;
            int64_t ms = (left + 999999) / 1000000;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, timeout);
        if (rc > 0)
            return 0; /* ready, or an error/hang-up the next call reports */
        if (rc < 0 && errno != EINTR)
            return -errno;
    }
}

int pard_sock_send_frame(int fd, const void *buf, size_t len, int pass_fd)
{
    const uint8_t *p = buf;
    size_t done = 0;
    if (len == 0 || buf == NULL)
        return -EINVAL;
    while (done < len) {
        /* The descriptor rides on the first byte only. */
        int n = pard_sock_send(fd, p + done, len - done, done == 0 ? pass_fd : -1);
        if (n == -EAGAIN) {
            int rc = wait_fd(fd, POLLOUT, -1);
            if (rc != 0)
                return rc;
            continue;
        }
        if (n < 0)
            return n;
        done += (size_t)n;
    }
    return 0;
}

int pard_sock_send_msg(int fd, const struct pard_msg *m, int pass_fd)
{
    /* Client messages are small: try the stack first, then the heap. */
    uint8_t small[4096];
    size_t len = 0;
    int rc = pard_msg_encode_frame(m, small, sizeof(small), &len);
    if (rc == 0)
        return pard_sock_send_frame(fd, small, len, pass_fd);
    if (rc != -ENOBUFS)
        return rc;

    size_t cap = PARD_FRAME_HEADER + PARD_FRAME_MAX_CLIENT;
    uint8_t *big = malloc(cap);
    if (big == NULL)
        return -ENOMEM;
    rc = pard_msg_encode_frame(m, big, cap, &len);
    if (rc == 0)
        rc = pard_sock_send_frame(fd, big, len, pass_fd);
    free(big);
    return rc;
}

/* recv_with - pard_sock_recv with extra recvmsg flags (MSG_DONTWAIT). */
static int recv_with(int fd, void *buf, size_t cap, int *fds_out, int *nfds_inout, int flags)
{
    int want = nfds_inout ? *nfds_inout : 0;
    if (nfds_inout)
        *nfds_inout = 0;
    if (cap == 0 || buf == NULL || want < 0 || (want > 0 && fds_out == NULL))
        return -EINVAL;
    if (cap > INT_MAX)
        cap = INT_MAX;

    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    union {
        char buf[CMSG_SPACE(sizeof(int) * PARD_SOCK_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = {
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };

    ssize_t n;
    do
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | flags);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;

    /* Keep what the caller has room for; close everything else. Any
     * descriptors beyond our control buffer (MSG_CTRUNC) were discarded
     * by the kernel. */
    int kept = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < count; i++) {
            int rfd;
            memcpy(&rfd, data + i * sizeof(int), sizeof(int));
            if (kept < want)
                fds_out[kept++] = rfd;
            else
                close(rfd);
        }
    }
    if (nfds_inout)
        *nfds_inout = kept;
    return (int)n;
}

int pard_sock_recv(int fd, void *buf, size_t cap, int *fds_out, int *nfds_inout)
{
    return recv_with(fd, buf, cap, fds_out, nfds_inout, 0);
}

int pard_sock_recv_frame(int fd, struct pard_frame_reader *r, const void **body, size_t *len,
                         int timeout_ms, int *fd_out)
{
    int64_t deadline = timeout_ms < 0 ? -1 : pard_now_ns() + (int64_t)timeout_ms * 1000000;
    if (fd_out)
        *fd_out = -1;

    for (;;) {
        int rc = pard_frame_reader_next(r, body, len, fd_out);
        if (rc == 1)
            return 0;
        if (rc < 0)
            return rc;

        void *space;
        size_t avail;
        rc = pard_frame_reader_reserve(r, RECV_CHUNK, &space, &avail);
        if (rc != 0)
            return rc;
        int fds[PARD_SOCK_MAX_FDS];
        int nfds = PARD_SOCK_MAX_FDS;
        /* MSG_DONTWAIT: a blocking socket must not outwait the deadline. */
        int n = recv_with(fd, space, avail, fds, &nfds, MSG_DONTWAIT);
        if (n == -EAGAIN) {
            rc = wait_fd(fd, POLLIN, deadline);
            if (rc != 0)
                return rc;
            continue;
        }
        if (n < 0)
            return n;
        if (n == 0) {
            /* Descriptors never come with EOF, but do not trust that. */
            for (int i = 0; i < nfds; i++)
                close(fds[i]);
            return -ECONNRESET;
        }
        rc = pard_frame_reader_commit(r, (size_t)n, fds, nfds);
        if (rc != 0)
            return rc;
    }
}

int pard_sock_recv_msg(int fd, struct pard_frame_reader *r, struct pard_msg *out, int timeout_ms,
                       int *fd_out)
{
    const void *body;
    size_t len;
    int got = -1;
    if (fd_out)
        *fd_out = -1;
    int rc = pard_sock_recv_frame(fd, r, &body, &len, timeout_ms, &got);
    if (rc != 0)
        return rc;
    rc = pard_msg_decode(body, len, out);
    if (rc != 0 || fd_out == NULL) {
        if (got >= 0)
            close(got);
        return rc;
    }
    *fd_out = got;
    return 0;
}
