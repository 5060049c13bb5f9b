/*
 * internal.h — libpard's private declarations. Not installed.
 */
#ifndef PARD_LIBPARD_INTERNAL_H
#define PARD_LIBPARD_INTERNAL_H

#include <signal.h>
#include <stdarg.h>

#include "pard/job.h"
#include "pard/pard.h"
#include "pard/proto.h"

/* How long one wait lasts before a client looks at its socket. */
#define PARD__SLICE_NS (100 * 1000000LL)

struct pard_client {
    int fd;                          /* control socket */
    enum pard_role role;             /* what we said in hello */
    uint64_t client_id;              /* from welcome */
    uint32_t daemon_pid;             /* from welcome */
    struct pard_frame_reader reader; /* incoming frames */
    struct pard_msg *msg;            /* scratch (large: heap) */
    _Atomic int cancel;              /* pard_cancel(): any thread, or a signal handler */
    /* The last job's region, still mapped: the daemon often gives the same
     * one for the next job, whose pages then need no faulting in. */
    struct pard_region kept_job;
    /* The last map's window arrays, for the next map (map.c). */
    struct pard__window *window;
    /* pard_share: blocks this client offers, by handle */
    struct pard__share *shares;
    /* pard_open_private: what to stop at disconnect */
    pid_t private_daemon; /* 0 when not private */
    pid_t *private_workers;
    unsigned nprivate_workers;
    char private_dir[64];
    /* ... and how to start a worker again when one dies */
    const struct pard_function *private_fns;
    size_t private_nfns;
    pid_t private_parent;
    int64_t private_respawn_ns; /* when the last was started again */
};

/* pard__window_free - free the window arrays the client kept (map.c). */
void pard__window_free(struct pard_client *c);

/* pard__cancelled - has pard_cancel() been called since the last map? */
static inline bool pard__cancelled(const struct pard_client *c)
{
    return atomic_load_explicit(&c->cancel, memory_order_relaxed) != 0;
}

/* pard__connect - connect with a role and a name; the common part of
 * pard_connect and the worker. */
int pard__connect(struct pard_client **out, const char *socket_path, enum pard_role role,
                  const char *name);

/* A shared block as its creator holds it. */
struct pard__share {
    struct pard__share *next;
    uint64_t handle;
    struct pard_region region;
};

/* pard__unshare_all - free every block (disconnect). */
void pard__unshare_all(struct pard_client *c);

/* pard__stop_private - stop a private daemon and its workers (disconnect). */
void pard__stop_private(struct pard_client *c);

/* pard__private_respawn - start again any private worker that died (a
 * crash, the OOM killer), at most one per 100 ms. No-op for other clients.
 * pard_map calls it as it waits. */
void pard__private_respawn(struct pard_client *c);

/* pard__vformat - vsnprintf into buf[cap]; returns the length kept (cut to
 * fit; 0 if formatting failed), for messages that travel with a length. */
size_t pard__vformat(char *buf, size_t cap, const char *fmt, va_list ap);

/* pard__set_error - record a message with context and return code. */
int pard__set_error(struct pard_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * pard__daemon_alive - non-blocking look at the control socket: 0 when the
 * daemon is still there (nothing to read, or a frame was buffered for
 * later), -PARD_EDAEMON when the connection is closed.
 */
int pard__daemon_alive(struct pard_client *c);

/* pard__recv - the next message, waiting up to timeout_ms (<0 forever).
 * EOF becomes -PARD_EDAEMON. */
int pard__recv(struct pard_client *c, int timeout_ms, int *fd_out);

/* pard__send - send c->msg-like message m (with an optional fd). */
int pard__send(struct pard_client *c, const struct pard_msg *m, int pass_fd);

#endif
