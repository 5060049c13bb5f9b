/*
 * client.c — connecting to the daemon: socket path resolution, handshake,
 * and the small blocking send/receive helpers the worker and the map use.
 *
 * Must not: hold any job state (map.c and worker.c own that).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* The last error with context, per thread: a failed pard_connect has no
 * client left to hold it. */
static __thread char last_error[512];

size_t pard__vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
    int n = vsnprintf(buf, cap, fmt, ap);
    if (n < 0)
        return 0;
    return (size_t)n >= cap ? cap - 1 : (size_t)n;
}

int pard__set_error(struct pard_client *c, int code, const char *fmt, ...)
{
    (void)c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return code;
}

const char *pard_last_error(void)
{
    return last_error;
}

int pard_client_fd(const struct pard_client *c)
{
    return c->fd;
}

int pard__send(struct pard_client *c, const struct pard_msg *m, int pass_fd)
{
    int rc = pard_sock_send_msg(c->fd, m, pass_fd);
    if (rc == -EPIPE || rc == -ECONNRESET)
        return pard__set_error(c, -PARD_EDAEMON, "the pard daemon closed the connection");
    if (rc < 0)
        return pard__set_error(c, rc, "sending %s to pard: %s", pard_msg_type_name(m->type),
                               pard_strerror(rc));
    return 0;
}

int pard__recv(struct pard_client *c, int timeout_ms, int *fd_out)
{
    int rc = pard_sock_recv_msg(c->fd, &c->reader, c->msg, timeout_ms, fd_out);
    if (rc == -ECONNRESET || rc == -EPIPE)
        return pard__set_error(c, -PARD_EDAEMON,
                               "the pard daemon is gone (connection closed); restart it with "
                               "`pard` and retry");
    if (rc == -ETIMEDOUT)
        return rc;
    if (rc < 0)
        return pard__set_error(c, rc, "reading from pard: %s", pard_strerror(rc));
    return 0;
}

int pard__daemon_alive(struct pard_client *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    if (p.revents & (POLLHUP | POLLERR))
        return pard__set_error(c, -PARD_EDAEMON,
                               "the pard daemon is gone (connection closed); restart it with "
                               "`pard` and retry");
    /* Readable: peek to tell EOF from a message we will read later. */
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return pard__set_error(c, -PARD_EDAEMON,
                               "the pard daemon is gone (connection closed); restart it with "
                               "`pard` and retry");
    return 0;
}

static int dial(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int pard__connect(struct pard_client **out, const char *socket_path, enum pard_role role,
                  const char *name)
{
    *out = NULL;
    struct pard_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = -1;
    c->kept_job.fd = -1;
    c->role = role;
    c->msg = malloc(sizeof(*c->msg));
    if (!c->msg || pard_frame_reader_init(&c->reader, PARD_FRAME_MAX_CLIENT) != 0) {
        pard_disconnect(c);
        return -ENOMEM;
    }
    char path[256];
    int rc = pard_socket_path(socket_path, path, sizeof(path));
    if (rc == 0)
        rc = dial(path);
    if (rc < 0) {
        pard__set_error(c, rc,
                        "cannot connect to pard at %s: %s (is `pard` running? start it, or "
                        "set PARD_SOCKET)",
                        path, pard_strerror(rc));
        pard_disconnect(c);
        return rc;
    }
    c->fd = rc;
    struct pard_msg *m = c->msg;
    pard_msg_init(m, PARD_MSG_HELLO);
    m->hello.role = role;
    m->hello.pid = (uint32_t)getpid();
    if (name && pard_name_valid(name))
        snprintf(m->hello.name, sizeof(m->hello.name), "%s", name);
    rc = pard__send(c, m, -1);
    if (rc == 0)
        rc = pard__recv(c, 5000, NULL);
    else if (pard__recv(c, 1000, NULL) == 0)
        /* The daemon refused us as we connected (another uid, a limit)
         * and closed before our hello went out: its reason is waiting. */
        rc = 0;
    if (rc == 0 && m->type == PARD_MSG_ERROR) {
        rc = pard__set_error(c, m->error.code < 0 ? m->error.code : -PARD_EPROTO,
                             "the pard daemon at %s refused the connection: %s", path,
                             m->error.message);
    } else if (rc == 0 && m->type != PARD_MSG_WELCOME) {
        rc = -PARD_EPROTO;
    } else if (rc == 0 && pard_msg_check_version(m) != 0) {
        rc = pard__set_error(c, -PARD_EVERSION,
                             "version mismatch: the daemon speaks protocol %u, this client %u; "
                             "use matching builds",
                             (unsigned)m->version, (unsigned)PARD_PROTO_VERSION);
    }
    if (rc < 0) {
        if (rc == -ETIMEDOUT)
            pard__set_error(c, rc, "the pard daemon at %s did not answer the handshake", path);
        else if (rc == -PARD_EPROTO)
            pard__set_error(c, rc, "the pard daemon at %s answered the handshake with %s", path,
                            pard_msg_type_name(m->type));
        pard_disconnect(c);
        return rc;
    }
    c->client_id = m->welcome.client_id;
    c->daemon_pid = m->welcome.daemon_pid;
    *out = c;
    return 0;
}

int pard_connect(struct pard_client **out, const char *socket_path)
{
    return pard__connect(out, socket_path, PARD_ROLE_SUBMITTER, NULL);
}

int pard_connect_control(struct pard_client **out, const char *socket_path)
{
    return pard__connect(out, socket_path, PARD_ROLE_CONTROL, "parctl");
}

void pard_disconnect(struct pard_client *c)
{
    if (!c)
        return;
    pard__unshare_all(c);
    if (c->fd >= 0)
        close(c->fd);
    if (c->private_daemon > 0)
        pard__stop_private(c);
    pard_frame_reader_destroy(&c->reader);
    pard_region_close(&c->kept_job);
    pard__window_free(c);
    free(c->msg);
    free(c);
}

void pard_cancel(struct pard_client *c)
{
    /* Lock-free, so async-signal-safe as well as thread-safe. */
    atomic_store_explicit(&c->cancel, 1, memory_order_relaxed);
}
