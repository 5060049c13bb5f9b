/*
 * session.c — one client connection: bytes in and out, frames, and the
 * dispatch of each message to the code that owns it.
 *
 * I/O. The socket is watched with a uv_poll_t; we do our own non-blocking
 * recvmsg/sendmsg (pard_sock_recv / pard_sock_send) because libuv streams
 * cannot carry an arbitrary descriptor with SCM_RIGHTS, and job regions
 * travel that way. Reads go straight into the frame reader's buffer; at
 * most READ_BURST reads per wake-up, so one busy client cannot starve the
 * others (the poll is level-triggered: the rest is read next time).
 * Writes go out at once when nothing is queued; what the socket cannot
 * take is queued (with a dup of the descriptor that rides on it) and sent
 * on UV_WRITABLE. A client that lets PARD__OUT_MAX bytes pile up is
 * dropped.
 *
 * Descriptors. Only `share` brings one we keep (share.c); any other that
 * comes with a frame is closed once the frame is handled.
 *
 * Protocol. The first frame must be hello with our version; every frame
 * after it must carry our version too. A frame that does not decode, a
 * message the role may not send, or one only the daemon sends, gets an
 * error reply and the connection is closed after the reply is flushed —
 * everyone else carries on.
 *
 * Closing. pard__session_close is the single exit: it ends the session's
 * jobs (submitter), kills its lane (worker), unlinks it and lets uv_close
 * free it. Code that is not running on behalf of the session itself uses
 * pard__session_close_later (the reaper, an idle handle).
 *
 * Must not: interpret jobs or lanes (jobs.c), or block.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define READ_BURST 16          /* recvmsg calls per wake-up */
#define READ_CHUNK (64u << 10) /* bytes asked for per recvmsg */

static void on_poll(uv_poll_t *h, int status, int events);

/* ======================================================================
 * Descriptions for log lines
 * ====================================================================== */

const char *pard__session_desc(const struct pard__session *s)
{
    static char buf[160];
    const char *role = s->greeted ? pard_role_name(s->role) : "client";
    if (s->name[0])
        snprintf(buf, sizeof(buf), "%s %s pid %d (client %llu)", role, s->name, (int)s->pid,
                 (unsigned long long)s->id);
    else
        snprintf(buf, sizeof(buf), "%s pid %d (client %llu)", role, (int)s->pid,
                 (unsigned long long)s->id);
    return buf;
}

bool pard__session_is_idle_worker(const struct pard__session *s)
{
    return !s->closed && !s->draining && s->greeted && s->role == PARD_ROLE_WORKER &&
           s->nfunctions > 0 && s->job == NULL;
}

/* ======================================================================
 * Watching
 * ====================================================================== */

static void update_poll(struct pard__session *s)
{
    if (s->closed)
        return;
    int events = s->draining ? 0 : (UV_READABLE | UV_DISCONNECT);
    if (s->out_head)
        events |= UV_WRITABLE;
    if (events == s->poll_events)
        return;
    int rc = events ? uv_poll_start(&s->poll, events, on_poll) : uv_poll_stop(&s->poll);
    if (rc != 0)
        pard__session_close_later(s, "cannot watch its socket");
    s->poll_events = events;
}

/* ======================================================================
 * Create and close
 * ====================================================================== */

int pard__session_new(struct pard__daemon *d, int fd, pid_t pid, uid_t uid)
{
    struct pard__session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    s->d = d;
    s->fd = fd;
    s->pid = pid;
    s->uid = uid;
    s->id = ++d->next_client_id;
    s->connected_ns = pard_now_ns();
    pard__list_init(&s->link);
    pard__list_init(&s->reap_link);
    int rc = pard_frame_reader_init(&s->reader, d->cfg.max_frame);
    if (rc == 0)
        rc = uv_poll_init(&d->loop, &s->poll, fd);
    if (rc != 0) {
        pard_frame_reader_destroy(&s->reader);
        close(fd);
        free(s);
        return rc;
    }
    s->poll.data = s;
    pard__list_push_back(&d->sessions, &s->link);
    d->nsessions++;
    update_poll(s);
    pard__log_debug("client %llu connected (pid %d, uid %u)", (unsigned long long)s->id, (int)pid,
                    (unsigned)uid);
    return 0;
}

static void free_outq(struct pard__session *s)
{
    struct pard__outbuf *ob = s->out_head;
    while (ob) {
        struct pard__outbuf *next = ob->next;
        if (ob->fd >= 0)
            close(ob->fd);
        free(ob);
        ob = next;
    }
    s->out_head = s->out_tail = NULL;
    s->out_bytes = 0;
}

static void on_closed(uv_handle_t *h)
{
    struct pard__session *s = h->data;
    close(s->fd);
    free(s);
}

void pard__session_close(struct pard__session *s, const char *why)
{
    if (s->closed)
        return;
    struct pard__daemon *d = s->d;
    enum pard__log_level level = PARD__LOG_DEBUG;
    if (s->greeted && s->role != PARD_ROLE_CONTROL)
        level = PARD__LOG_INFO;
    if (pard__log_enabled(level))
        pard__log(level, "%s disconnected: %s", pard__session_desc(s), why);
    /* Unlink first: what follows may iterate the session list. */
    s->closed = true;
    pard__list_remove(&s->link);
    pard__list_remove(&s->reap_link);
    d->nsessions--;
    if (s->greeted && s->role == PARD_ROLE_WORKER)
        d->nworkers--;
    if (s->role == PARD_ROLE_WORKER)
        pard__jobs_worker_gone(s);
    if (s->role == PARD_ROLE_SUBMITTER) {
        pard__jobs_submitter_gone(s);
        pard__shares_owner_gone(s);
    }
    free_outq(s);
    pard_frame_reader_destroy(&s->reader);
    free(s->functions);
    s->functions = NULL;
    s->nfunctions = 0;
    uv_close((uv_handle_t *)&s->poll, on_closed);
    if (!d->stopping) {
        pard__schedule(d);
        pard__watch_kick(d);
    }
}

static void on_reap(uv_idle_t *h)
{
    struct pard__daemon *d = h->data;
    while (!pard__list_empty(&d->reap)) {
        struct pard__session *s = PARD__CONTAINER(d->reap.next, struct pard__session, reap_link);
        pard__session_close(s, "its connection failed"); /* unlinks reap_link */
    }
    uv_idle_stop(h);
}

void pard__session_close_later(struct pard__session *s, const char *why)
{
    struct pard__daemon *d = s->d;
    if (s->closed || s->reap_link.next != &s->reap_link)
        return;
    pard__log_debug("%s will be closed: %s", pard__session_desc(s), why);
    pard__list_push_back(&d->reap, &s->reap_link);
    if (!uv_is_closing((uv_handle_t *)&d->reaper))
        uv_idle_start(&d->reaper, on_reap);
}

void pard__sessions_check(struct pard__daemon *d, int64_t now)
{
    struct pard__list *pos, *tmp;
    PARD__LIST_FOREACH_SAFE(pos, tmp, &d->sessions)
    {
        struct pard__session *s = PARD__CONTAINER(pos, struct pard__session, link);
        if (s->draining && now >= s->drain_deadline_ns)
            pard__session_close(s, "it did not read our last message");
        else if (!s->greeted && !s->draining &&
                 now - s->connected_ns > (int64_t)PARD__HELLO_MS * 1000000)
            pard__session_fail(s, -PARD_EPROTO, "no hello within %u ms of connecting",
                               PARD__HELLO_MS);
    }
}

/* ======================================================================
 * Sending
 * ====================================================================== */

static int queue_bytes(struct pard__session *s, const uint8_t *buf, size_t len, int pass_fd)
{
    if (s->out_bytes + len > PARD__OUT_MAX) {
        pard__log_warn("%s is not reading its messages (%s unsent); dropping it",
                       pard__session_desc(s), pard__fmt_bytes(s->out_bytes, 0));
        pard__session_close_later(s, "it stopped reading");
        return -ENOBUFS;
    }
    struct pard__outbuf *ob = malloc(sizeof(*ob) + len);
    if (!ob) {
        pard__session_close_later(s, "out of memory for its messages");
        return -ENOMEM;
    }
    ob->next = NULL;
    ob->len = len;
    ob->off = 0;
    ob->fd = -1;
    memcpy(ob->data, buf, len);
    if (pass_fd >= 0) {
        /* Our own copy: the job may be freed before this goes out. */
        ob->fd = fcntl(pass_fd, F_DUPFD_CLOEXEC, 0);
        if (ob->fd < 0) {
            int err = -errno;
            free(ob);
            pard__log_error("cannot duplicate a job descriptor for %s: %s", pard__session_desc(s),
                            strerror(-err));
            pard__session_close_later(s, "cannot queue a descriptor");
            return err;
        }
    }
    if (s->out_tail)
        s->out_tail->next = ob;
    else
        s->out_head = ob;
    s->out_tail = ob;
    s->out_bytes += len;
    update_poll(s);
    return 0;
}

static int write_frame(struct pard__session *s, const uint8_t *buf, size_t len, int pass_fd)
{
    size_t off = 0;
    if (s->out_head == NULL) {
        while (off < len) {
            int n = pard_sock_send(s->fd, buf + off, len - off, off == 0 ? pass_fd : -1);
            if (n == -EAGAIN)
                break;
            if (n < 0) {
                pard__session_close_later(s, pard_strerror(n));
                return n;
            }
            off += (size_t)n;
        }
        if (off == len)
            return 0;
    }
    return queue_bytes(s, buf + off, len - off, off == 0 ? pass_fd : -1);
}

int pard__session_send(struct pard__session *s, const struct pard_msg *m, int pass_fd)
{
    if (s->closed)
        return -EPIPE;
    struct pard__daemon *d = s->d;
    size_t len = 0;
    int rc = pard_msg_encode_frame(m, d->encbuf, d->enccap, &len);
    if (rc != 0) {
        /* Our own message does not encode: a bug, not the client's fault. */
        pard__log_error("cannot encode a %s message for %s: %s", pard_msg_type_name(m->type),
                        pard__session_desc(s), pard_strerror(rc));
        return rc;
    }
    pard__log_debug("-> %s to %s%s", pard_msg_type_name(m->type), pard__session_desc(s),
                    pass_fd >= 0 ? " (with the job descriptor)" : "");
    return write_frame(s, d->encbuf, len, pass_fd);
}

int pard__session_send_error(struct pard__session *s, int code, uint64_t ref, const char *fmt, ...)
{
    struct pard_msg *m = s->d->msg_out;
    char text[PARD_TEXT_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pard_msg_set_error(m, code, ref, "%s", text);
    return pard__session_send(s, m, -1);
}

void pard__session_fail(struct pard__session *s, int code, const char *fmt, ...)
{
    if (s->closed || s->draining)
        return;
    char text[PARD_TEXT_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pard__log_warn("%s: %s; closing its connection", pard__session_desc(s), text);
    pard__session_send_error(s, code, 0, "%s", text);
    if (s->closed)
        return;
    s->draining = true;
    s->drain_deadline_ns = pard_now_ns() + (int64_t)PARD__DRAIN_MS * 1000000;
    if (!s->out_head)
        pard__session_close(s, text);
    else
        update_poll(s);
}

/* Send what is queued, as far as the socket takes it. */
static void flush(struct pard__session *s)
{
    struct pard__outbuf *ob;
    while ((ob = s->out_head) != NULL) {
        int pass = ob->off == 0 ? ob->fd : -1;
        int n = pard_sock_send(s->fd, ob->data + ob->off, ob->len - ob->off, pass);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            pard__session_close(s, pard_strerror(n));
            return;
        }
        if (pass >= 0) {
            close(ob->fd); /* it went with those bytes */
            ob->fd = -1;
        }
        ob->off += (size_t)n;
        s->out_bytes -= (size_t)n;
        if (ob->off == ob->len) {
            s->out_head = ob->next;
            if (!s->out_head)
                s->out_tail = NULL;
            free(ob);
        }
    }
    if (s->draining && !s->out_head) {
        pard__session_close(s, "closed after an error");
        return;
    }
    update_poll(s);
}

/* ======================================================================
 * Dispatch
 * ====================================================================== */

static void on_hello(struct pard__session *s, const struct pard_msg_hello *h)
{
    struct pard__daemon *d = s->d;
    if (h->role == PARD_ROLE_WORKER && d->nworkers >= d->cfg.max_workers) {
        pard__session_fail(s, -PARD_ELIMIT,
                           "too many workers: this pard allows %u at once (--max-workers)",
                           d->cfg.max_workers);
        return;
    }
    s->role = h->role;
    s->greeted = true;
    snprintf(s->name, sizeof(s->name), "%s", h->name);
    if (s->role == PARD_ROLE_WORKER)
        d->nworkers++;
    if ((pid_t)h->pid != s->pid)
        pard__log_debug("client %llu says it is pid %u; the kernel says pid %d (we use that)",
                        (unsigned long long)s->id, (unsigned)h->pid, (int)s->pid);
    struct pard_msg *m = d->msg_out;
    pard_msg_init(m, PARD_MSG_WELCOME);
    m->welcome.daemon_pid = (uint32_t)d->pid;
    m->welcome.client_id = s->id;
    snprintf(m->welcome.version_string, sizeof(m->welcome.version_string), "%s",
             PARD__VERSION_STRING);
    pard__session_send(s, m, -1);
    enum pard__log_level level = s->role == PARD_ROLE_CONTROL ? PARD__LOG_DEBUG : PARD__LOG_INFO;
    if (pard__log_enabled(level))
        pard__log(level, "%s connected", pard__session_desc(s));
}

static void on_register(struct pard__session *s, const struct pard_msg_register *r)
{
    char(*fns)[PARD_NAME_MAX + 1] = malloc(r->nfunctions * sizeof(*fns));
    if (!fns) {
        pard__session_fail(s, -ENOMEM, "out of memory registering %u functions", r->nfunctions);
        return;
    }
    memcpy(fns, r->functions, r->nfunctions * sizeof(*fns));
    free(s->functions);
    s->functions = fns;
    s->nfunctions = r->nfunctions;
    if (!s->child)
        s->child = pard__supervise_registered(s->d, s->pid);
    char list[512];
    size_t used = 0;
    list[0] = 0;
    for (uint32_t i = 0; i < s->nfunctions && used < sizeof(list) - 1; i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", fns[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    pard__log_info("%s registered %u function%s: %s%s", pard__session_desc(s), s->nfunctions,
                   s->nfunctions == 1 ? "" : "s", list, s->child ? " (started by --spawn)" : "");
    pard__jobs_worker_registered(s);
    pard__schedule(s->d);
    pard__watch_kick(s->d);
}

static bool role_is(struct pard__session *s, enum pard_role role, const struct pard_msg *m)
{
    if (s->role == role)
        return true;
    pard__session_fail(s, -PARD_EPROTO, "%s is for %ss, and this connection said it is a %s",
                       pard_msg_type_name(m->type), pard_role_name(role), pard_role_name(s->role));
    return false;
}

/* Decode and handle one frame; *fd is the descriptor that came with it
 * (a handler that keeps it sets it to -1). */
static void dispatch(struct pard__session *s, const void *body, size_t len, int *fd)
{
    struct pard__daemon *d = s->d;
    struct pard_msg *m = d->msg_in;
    int rc = pard_msg_decode(body, len, m);
    if (rc != 0) {
        pard__session_fail(s, rc, "malformed message (%zu bytes): %s", len, pard_strerror(rc));
        return;
    }
    if (m->version != PARD_PROTO_VERSION) {
        pard__session_fail(s, -PARD_EVERSION,
                           "protocol version mismatch: the client speaks version %u, this daemon "
                           "(%s) speaks version %u; use a client built with the same pard",
                           (unsigned)m->version, PARD__VERSION_STRING,
                           (unsigned)PARD_PROTO_VERSION);
        return;
    }
    pard__log_debug("<- %s from %s", pard_msg_type_name(m->type), pard__session_desc(s));
    if (!s->greeted) {
        if (m->type != PARD_MSG_HELLO)
            pard__session_fail(s, -PARD_EPROTO, "the first message must be hello, not %s",
                               pard_msg_type_name(m->type));
        else
            on_hello(s, &m->hello);
        return;
    }
    switch (m->type) {
    case PARD_MSG_REGISTER:
        if (role_is(s, PARD_ROLE_WORKER, m))
            on_register(s, &m->reg);
        break;
    case PARD_MSG_SUBMIT:
        if (role_is(s, PARD_ROLE_SUBMITTER, m))
            pard__job_submit(s, &m->submit);
        break;
    case PARD_MSG_JOB_END:
        if (role_is(s, PARD_ROLE_SUBMITTER, m))
            pard__job_end_msg(s, m->job_end.job_id);
        break;
    case PARD_MSG_DETACHED:
        if (role_is(s, PARD_ROLE_WORKER, m))
            pard__job_detached_msg(s, m->detached.job_id);
        break;
    case PARD_MSG_CANCEL:
        pard__job_cancel_msg(s, m->cancel.job_id);
        break;
    case PARD_MSG_STATS:
        pard__stats_reply(s);
        break;
    case PARD_MSG_LIST_WORKERS:
        pard__list_workers_reply(s);
        break;
    case PARD_MSG_LIST_JOBS:
        pard__list_jobs_reply(s);
        break;
    case PARD_MSG_SHARE:
        if (role_is(s, PARD_ROLE_SUBMITTER, m))
            pard__share_msg(s, &m->share, fd);
        break;
    case PARD_MSG_UNSHARE:
        if (role_is(s, PARD_ROLE_SUBMITTER, m))
            pard__unshare_msg(s, m->unshare.handle);
        break;
    case PARD_MSG_SHUTDOWN:
        if (role_is(s, PARD_ROLE_CONTROL, m)) {
            struct pard_msg *ok = d->msg_out;
            pard_msg_init(ok, PARD_MSG_OK);
            pard__session_send(s, ok, -1);
            pard__log_info("%s asked for shutdown", pard__session_desc(s));
            pard__shutdown(d, "a control client asked for it");
        }
        break;
    case PARD_MSG_ERROR:
        if (s->role == PARD_ROLE_WORKER)
            pard__job_worker_error(s, &m->error);
        else
            pard__log_warn("%s reports an error: %s (%s)", pard__session_desc(s), m->error.message,
                           pard_strerror(m->error.code));
        break;
    case PARD_MSG_OK:
        break; /* an acknowledgement we did not ask for: harmless */
    case PARD_MSG_HELLO:
        pard__session_fail(s, -PARD_EPROTO, "a second hello on one connection");
        break;
    default:
        pard__session_fail(s, -PARD_EPROTO, "unexpected message %s: only the daemon sends it",
                           pard_msg_type_name(m->type));
        break;
    }
}

/* ======================================================================
 * Reading
 * ====================================================================== */

static void read_some(struct pard__session *s)
{
    for (int i = 0; i < READ_BURST && !s->closed && !s->draining; i++) {
        void *space;
        size_t avail;
        int rc = pard_frame_reader_reserve(&s->reader, 4096, &space, &avail);
        if (rc != 0) {
            pard__session_fail(s, rc, "cannot buffer its messages: %s", pard_strerror(rc));
            return;
        }
        if (avail > READ_CHUNK)
            avail = READ_CHUNK;
        int fds[PARD_SOCK_MAX_FDS];
        int nfds = PARD_SOCK_MAX_FDS;
        int n = pard_sock_recv(s->fd, space, avail, fds, &nfds);
        if (n == -EAGAIN)
            return;
        if (n < 0) {
            pard__session_close(s, n == -ECONNRESET ? "connection reset" : pard_strerror(n));
            return;
        }
        if (n == 0) {
            for (int k = 0; k < nfds; k++)
                close(fds[k]);
            size_t left = pard_frame_reader_buffered(&s->reader);
            if (left > 0)
                pard__log_warn("%s closed its connection in the middle of a message (%zu bytes "
                               "of it were received)",
                               pard__session_desc(s), left);
            pard__session_close(s, "it closed the connection");
            return;
        }
        pard_frame_reader_commit(&s->reader, (size_t)n, fds, nfds);
        const void *body;
        size_t len;
        int fd;
        while (!s->closed && !s->draining &&
               (rc = pard_frame_reader_next(&s->reader, &body, &len, &fd)) == 1) {
            dispatch(s, body, len, &fd);
            if (fd >= 0)
                close(fd); /* only `share` brings a descriptor we keep */
        }
        if (rc == -PARD_ETOOBIG)
            pard__session_fail(s, -PARD_ETOOBIG,
                               "a message is larger than this pard accepts (%u bytes, "
                               "--max-frame)",
                               s->d->cfg.max_frame);
        else if (rc < 0)
            pard__session_fail(s, rc, "unreadable stream: %s", pard_strerror(rc));
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pard__session *s = h->data;
    if (s->closed)
        return;
    if (status < 0) {
        pard__session_close(s, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE)
        flush(s);
    if (!s->closed && !s->draining && (events & (UV_READABLE | UV_DISCONNECT)))
        read_some(s);
}
