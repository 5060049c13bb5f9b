/*
 * listen.c — the control socket: where it lives, who may own it, and who
 * may connect.
 *
 * Start-up, in order:
 *   1. the directory: for the /tmp/pard-$UID default it is created 0700,
 *      and an existing one must be ours, a real directory and private;
 *   2. the lock: flock(LOCK_EX|LOCK_NB) on "<socket>.lock", which holds
 *      our pid. Held: another daemon serves this path — refuse with its
 *      pid. Free: any socket file there is stale (its daemon is gone) and
 *      is replaced. After locking we check that the path still names the
 *      file we locked (a daemon that was exiting may have unlinked it),
 *      which makes unlinking the lock file at exit safe;
 *   3. bind with umask 0177 (socket 0600), listen, watch with uv_poll.
 *
 * Accepting: accept4(NONBLOCK|CLOEXEC), then SO_PEERCRED: only our own uid
 * and root are admitted; anyone else gets an error message and is closed.
 * When the process runs out of descriptors, accepting pauses for 100 ms
 * instead of spinning on a listening socket that stays readable.
 *
 * Must not: touch sessions beyond handing a new connection to session.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

#define ACCEPT_BURST    64  /* connections taken per wake-up */
#define ACCEPT_PAUSE_MS 100 /* after EMFILE */

/* ======================================================================
 * Directory, lock, stale socket
 * ====================================================================== */

/* The /tmp/pard-$UID default gets its directory created; others must exist. */
static int ensure_private_dir(const struct pard__daemon *d)
{
    char def[sizeof(d->socket_path)];
    snprintf(def, sizeof(def), "/tmp/pard-%u/pard.sock", (unsigned)d->uid);
    if (strcmp(def, d->socket_path) != 0)
        return 0;
    char dir[sizeof(def)];
    snprintf(dir, sizeof(dir), "/tmp/pard-%u", (unsigned)d->uid);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "pard: cannot create the directory %s: %s\n", dir, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (lstat(dir, &st) != 0) {
        fprintf(stderr, "pard: cannot inspect %s: %s\n", dir, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != d->uid || (st.st_mode & 077) != 0) {
        fprintf(stderr,
                "pard: %s is not a private directory of uid %u (it must be a directory, owned by "
                "you, mode 0700); remove it, or use --socket or $XDG_RUNTIME_DIR\n",
                dir, (unsigned)d->uid);
        return -EPERM;
    }
    return 0;
}

/* The pid recorded in a lock file, or 0 when unreadable. */
static long lock_owner_pid(int fd)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    return strtol(buf, NULL, 10);
}

static int take_lock(struct pard__daemon *d)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        int fd = open(d->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            int err = errno;
            fprintf(stderr, "pard: cannot open the lock file %s: %s\n", d->lock_path,
                    strerror(err));
            return -err;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            if (err == EWOULDBLOCK) {
                long pid = lock_owner_pid(fd);
                close(fd);
                if (pid > 0)
                    fprintf(stderr,
                            "pard: another pard (pid %ld) is already serving %s; stop it with "
                            "`parctl shutdown` or use --socket\n",
                            pid, d->socket_path);
                else
                    fprintf(stderr,
                            "pard: another pard is already serving %s; stop it with `parctl "
                            "shutdown` or use --socket\n",
                            d->socket_path);
                return -PARD_EBUSY;
            }
            close(fd);
            fprintf(stderr, "pard: cannot lock %s: %s\n", d->lock_path, strerror(err));
            return -err;
        }
        /* Did a daemon that was exiting unlink the file between our open
         * and our flock? Then we locked an orphan: try again. */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(d->lock_path, &b) != 0 || a.st_dev != b.st_dev ||
            a.st_ino != b.st_ino) {
            close(fd);
            continue;
        }
        char pid[32];
        int n = snprintf(pid, sizeof(pid), "%d\n", (int)d->pid);
        if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
            pard__log_warn("cannot write our pid into %s: %s (continuing)", d->lock_path,
                           strerror(errno));
        d->lock_fd = fd;
        return 0;
    }
    fprintf(stderr, "pard: the lock file %s keeps changing; is another pard starting?\n",
            d->lock_path);
    return -PARD_EBUSY;
}

/* With the lock held, whatever socket is at the path is stale. */
static int remove_stale(const struct pard__daemon *d)
{
    struct stat st;
    if (lstat(d->socket_path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "pard: %s exists and is not a socket; remove it or use --socket\n",
                d->socket_path);
        return -EEXIST;
    }
    if (unlink(d->socket_path) != 0 && errno != ENOENT) {
        int err = errno;
        fprintf(stderr, "pard: cannot remove the stale socket %s: %s\n", d->socket_path,
                strerror(err));
        return -err;
    }
    pard__log_info("removed a stale socket at %s (its daemon is gone)", d->socket_path);
    return 0;
}

/* ======================================================================
 * Accepting
 * ====================================================================== */

/* Send one error frame to a connection we are about to drop. Best effort:
 * the socket is new, so its buffer has room. */
static void refuse(struct pard__daemon *d, int fd, int code, const char *msg)
{
    struct pard_msg *m = d->msg_out;
    pard_msg_set_error(m, code, 0, "%s", msg);
    size_t len = 0;
    if (pard_msg_encode_frame(m, d->encbuf, d->enccap, &len) == 0)
        (void)pard_sock_send(fd, d->encbuf, len, -1);
    close(fd);
}

static void on_listen(uv_poll_t *h, int status, int events);

static void on_accept_timer(uv_timer_t *t)
{
    struct pard__daemon *d = t->data;
    if (!d->stopping && d->listen_poll_open)
        uv_poll_start(&d->listen_poll, UV_READABLE, on_listen);
}

static void accept_one(struct pard__daemon *d, int fd)
{
    struct ucred cr;
    socklen_t crlen = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
        pard__log_warn("cannot read the credentials of a new connection (%s); closed it",
                       strerror(errno));
        close(fd);
        return;
    }
    if (cr.uid != d->uid && cr.uid != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "permission denied: this pard serves uid %u only, and you are uid %u; start "
                 "your own pard (it listens on a socket of your own)",
                 (unsigned)d->uid, (unsigned)cr.uid);
        pard__log_warn("refused a connection from pid %d: uid %u is not ours (%u)", (int)cr.pid,
                       (unsigned)cr.uid, (unsigned)d->uid);
        refuse(d, fd, -PARD_EDENIED, msg);
        return;
    }
    if (d->nsessions >= d->cfg.max_clients) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "too many connections: this pard allows %u at once (--max-clients); close some "
                 "clients or restart pard with a higher limit",
                 d->cfg.max_clients);
        pard__log_warn("refused a connection from pid %d: %u connections open (--max-clients %u)",
                       (int)cr.pid, d->nsessions, d->cfg.max_clients);
        refuse(d, fd, -PARD_ELIMIT, msg);
        return;
    }
    int rc = pard__session_new(d, fd, cr.pid, cr.uid);
    if (rc != 0)
        pard__log_error("cannot set up a connection from pid %d: %s", (int)cr.pid,
                        pard_strerror(rc));
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    struct pard__daemon *d = h->data;
    (void)events;
    if (d->stopping)
        return;
    if (status < 0) {
        pard__log_error("the listening socket failed: %s; shutting down", uv_strerror(status));
        d->exit_code = 1;
        pard__shutdown(d, "the listening socket failed");
        return;
    }
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(d->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                pard__log_warn("cannot accept connections: %s (%u open); pausing for %d ms — "
                               "raise `ulimit -n` or lower --max-clients",
                               strerror(err), d->nsessions, ACCEPT_PAUSE_MS);
                uv_poll_stop(&d->listen_poll);
                uv_timer_start(&d->accept_timer, on_accept_timer, ACCEPT_PAUSE_MS, 0);
                return;
            }
            pard__log_error("accept failed: %s", strerror(err));
            return;
        }
        accept_one(d, fd);
    }
}

/* ======================================================================
 * Open and close
 * ====================================================================== */

int pard__listen_open(struct pard__daemon *d)
{
    int rc = ensure_private_dir(d);
    if (rc != 0)
        return rc;
    int n = snprintf(d->lock_path, sizeof(d->lock_path), "%s.lock", d->socket_path);
    if (n < 0 || (size_t)n >= sizeof(d->lock_path))
        return -ENAMETOOLONG;
    if ((rc = take_lock(d)) != 0)
        return rc;
    if ((rc = remove_stale(d)) != 0)
        return rc;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        fprintf(stderr, "pard: cannot create a socket: %s\n", strerror(errno));
        return rc;
    }
    /* Bind and listen under a temporary name, then rename into place: a
     * client that sees the socket file can connect at once (binding the
     * final path first would refuse it until listen). */
    char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
    n = snprintf(tmp, sizeof(tmp), "%s.%d", d->socket_path, (int)getpid());
    const char *bind_path = n > 0 && (size_t)n < sizeof(tmp) ? tmp : d->socket_path;
    unlink(tmp);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, bind_path, strlen(bind_path) + 1);
    /* umask, not fchmod: on Linux the mode of a socket file comes from the
     * umask at bind time. */
    mode_t old = umask(0177);
    int b = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int berr = errno;
    umask(old);
    if (b != 0) {
        close(fd);
        if (berr == ENOENT)
            fprintf(stderr, "pard: cannot create the socket %s: its directory does not exist\n",
                    d->socket_path);
        else
            fprintf(stderr, "pard: cannot bind %s: %s\n", d->socket_path, strerror(berr));
        return -berr;
    }
    if (chmod(bind_path, 0600) != 0)
        pard__log_warn("cannot chmod %s to 0600: %s", bind_path, strerror(errno));
    if (listen(fd, SOMAXCONN) != 0) {
        rc = -errno;
        close(fd);
        unlink(bind_path);
        fprintf(stderr, "pard: cannot listen on %s: %s\n", d->socket_path, strerror(-rc));
        return rc;
    }
    if (bind_path != d->socket_path && rename(bind_path, d->socket_path) != 0) {
        rc = -errno;
        close(fd);
        unlink(bind_path);
        fprintf(stderr, "pard: cannot move the socket into place at %s: %s\n", d->socket_path,
                strerror(-rc));
        return rc;
    }
    d->socket_bound = true;
    d->listen_fd = fd;
    if ((rc = uv_poll_init(&d->loop, &d->listen_poll, fd)) != 0) {
        fprintf(stderr, "pard: cannot watch the socket: %s\n", uv_strerror(rc));
        return rc;
    }
    d->listen_poll.data = d;
    d->listen_poll_open = true;
    uv_timer_init(&d->loop, &d->accept_timer);
    d->accept_timer.data = d;
    return uv_poll_start(&d->listen_poll, UV_READABLE, on_listen);
}

static void on_listen_closed(uv_handle_t *h)
{
    struct pard__daemon *d = h->data;
    if (d->listen_fd >= 0)
        close(d->listen_fd);
    d->listen_fd = -1;
}

void pard__listen_stop(struct pard__daemon *d)
{
    if (d->listen_poll_open) {
        d->listen_poll_open = false;
        uv_close((uv_handle_t *)&d->listen_poll, on_listen_closed);
        uv_close((uv_handle_t *)&d->accept_timer, NULL);
    } else if (d->listen_fd >= 0) {
        close(d->listen_fd);
        d->listen_fd = -1;
    }
}

void pard__listen_cleanup(struct pard__daemon *d)
{
    if (d->listen_fd >= 0) {
        close(d->listen_fd);
        d->listen_fd = -1;
    }
    if (d->socket_bound) {
        /* Ours to remove: we hold the lock, so nobody else bound here. */
        if (unlink(d->socket_path) != 0 && errno != ENOENT)
            pard__log_warn("cannot remove %s: %s", d->socket_path, strerror(errno));
        d->socket_bound = false;
    }
    if (d->lock_fd >= 0) {
        /* Unlink while still holding the lock: a daemon that opened the old
         * file meanwhile notices (take_lock compares inodes) and retries. */
        unlink(d->lock_path);
        close(d->lock_fd);
        d->lock_fd = -1;
    }
}
