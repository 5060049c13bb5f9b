/*
 * internal.h — the pard daemon's private declarations: the daemon, its
 * sessions (one per client connection), jobs and supervised workers, and
 * the functions the files of daemon/ call in each other.
 *
 * Design
 * ------
 * One thread, one libuv loop. Everything below is touched only from loop
 * callbacks, so nothing here needs a lock. The daemon is a coordinator: it
 * creates job regions, hands their descriptors out, assigns lanes, watches
 * liveness and time limits, and reports. It never touches a ring or an
 * arena (docs/architecture.md, "Who does what").
 *
 *   main.c       options, start-up, the shutdown sequence
 *   log.c        leveled logging to stderr
 *   listen.c     socket path, lock file, stale sockets, accept, SO_PEERCRED
 *   session.c    per-connection I/O (uv_poll_t + recvmsg/sendmsg), framing,
 *                the send queue, message dispatch
 *   jobs.c       jobs, lanes, scheduling, detach, end, death, free
 *   watch.c      the 10 ms watch timer (time limits, pending jobs, lanes
 *                coming free) and the 1 s stats timer
 *   stats.c      stats, list_workers and list_jobs replies
 *   supervise.c  --spawn: start, restart and stop worker processes
 *   share.c      shared blocks: read-only memory a submitter offers to the
 *                workers of its jobs
 *
 * Lifetimes. A session or a job is unlinked from every list and every
 * cross-reference the moment it closes or ends, and freed later: a session
 * in its uv_close callback, a job as soon as nothing refers to it. Code that
 * runs inside a callback for one session never closes *another* session
 * directly (it calls pard__session_close_later), so iterating a list while
 * sending to its members is always safe.
 */
#ifndef PARD_DAEMON_INTERNAL_H
#define PARD_DAEMON_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>
#include <uv.h>

#include "pard/ipc.h"
#include "pard/job.h"
#include "pard/proto.h"

#ifndef PARD_DAEMON_VERSION
#define PARD_DAEMON_VERSION "0.2.0"
#endif
#define PARD__VERSION_STRING "pard " PARD_DAEMON_VERSION

/* ======================================================================
 * Intrusive lists (circular, doubly linked, with a sentinel head)
 * ====================================================================== */

struct pard__list {
    struct pard__list *prev;
    struct pard__list *next;
};

static inline void pard__list_init(struct pard__list *h)
{
    h->prev = h->next = h;
}

static inline bool pard__list_empty(const struct pard__list *h)
{
    return h->next == h;
}

static inline void pard__list_push_back(struct pard__list *h, struct pard__list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

/* Unlink n and make it a list of its own (so a second remove is harmless). */
static inline void pard__list_remove(struct pard__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

#define PARD__CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Iterate, allowing removal of the current element. */
#define PARD__LIST_FOREACH_SAFE(pos, tmp, head)                                                    \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                               \
         (pos) = (tmp), (tmp) = (pos)->next)

/* ======================================================================
 * Logging (log.c)
 * ====================================================================== */

enum pard__log_level {
    PARD__LOG_ERROR = 0,
    PARD__LOG_WARN = 1,
    PARD__LOG_INFO = 2,
    PARD__LOG_DEBUG = 3,
};

/* pard__log_parse_level - "error" | "warn" | "info" | "debug"; -EINVAL. */
int pard__log_parse_level(const char *s, enum pard__log_level *level);
void pard__log_set_level(enum pard__log_level level);
bool pard__log_enabled(enum pard__log_level level);

/* pard__log - one line "pard[pid]: level: message" on stderr, written with
 * a single write() so lines from several processes do not interleave. */
void pard__log(enum pard__log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define pard__log_error(...) pard__log(PARD__LOG_ERROR, __VA_ARGS__)
#define pard__log_warn(...)  pard__log(PARD__LOG_WARN, __VA_ARGS__)
#define pard__log_info(...)  pard__log(PARD__LOG_INFO, __VA_ARGS__)
#define pard__log_debug(...)                                                                       \
    do {                                                                                           \
        if (pard__log_enabled(PARD__LOG_DEBUG))                                                    \
            pard__log(PARD__LOG_DEBUG, __VA_ARGS__);                                               \
    } while (0)

/* ======================================================================
 * Configuration (main.c)
 * ====================================================================== */

/* Defaults, also quoted by --help. */
#define PARD__DEFAULT_MAX_CLIENTS 1024u
#define PARD__DEFAULT_MAX_WORKERS PARD_LIST_MAX
#define PARD__DEFAULT_MAX_JOBS    64u
#define PARD__DEFAULT_MAX_JOB_SHM ((uint64_t)1 << 30)
#define PARD__PENDING_MS          10000u /* a job waits this long for --spawn workers */
#define PARD__HELLO_MS            10000u /* a client must say hello within this */
#define PARD__DRAIN_MS            2000u  /* closing: time to flush a last error */
#define PARD__STOP_MS             2000u  /* shutdown: SIGTERM, then SIGKILL after this */
#define PARD__WATCH_MS            10u    /* the watch timer's period */
#define PARD__MAX_SHARES          1024u  /* shared blocks held at once */
#define PARD__OUT_MAX             ((size_t)32 << 20) /* unsent bytes before we give up */

struct pard__config {
    const char *socket_arg; /* --socket, or NULL */
    enum pard__log_level log_level;
    uint32_t spawn;                /* --spawn N (0: none) */
    const char *worker_cmd;        /* --worker CMD */
    bool worker_shell;             /* --worker-shell: run CMD with /bin/sh -c */
    enum pard_wait_mode wait_mode; /* for jobs that do not ask */
    uint32_t max_frame;            /* largest frame body accepted from a client */
    uint32_t max_clients;          /* connections at once */
    uint32_t max_workers;          /* worker connections at once */
    uint32_t max_jobs;             /* jobs at once */
    uint64_t max_job_shm;          /* bytes of one job region */
    uint64_t max_shm;              /* bytes of all job regions together */
};

/* ======================================================================
 * Sessions (session.c)
 * ====================================================================== */

/* Bytes queued for a client that could not take them yet. */
struct pard__outbuf {
    struct pard__outbuf *next;
    size_t len;     /* bytes in data */
    size_t off;     /* bytes already sent */
    int fd;         /* descriptor riding on data[0] (a dup we own), or -1 */
    uint8_t data[]; /* the frame (or its unsent tail) */
};

struct pard__job;
struct pard__share;
struct pard__child;
struct pard__daemon;

struct pard__session {
    struct pard__list link;      /* in daemon.sessions, oldest first */
    struct pard__list reap_link; /* in daemon.reap while a deferred close is queued */
    struct pard__daemon *d;
    uv_poll_t poll;  /* watches fd; data = this session */
    int fd;          /* the connection; closed in the close callback */
    int poll_events; /* what poll watches now (0: stopped) */
    uint64_t id;     /* client id, from 1 */
    pid_t pid;       /* SO_PEERCRED: trusted, unlike hello's pid */
    uid_t uid;       /* SO_PEERCRED */
    int64_t connected_ns;
    enum pard_role role;       /* from hello; NONE before */
    bool greeted;              /* hello accepted */
    bool closed;               /* pard__session_close ran */
    bool draining;             /* closing once the queue is flushed */
    int64_t drain_deadline_ns; /* ... or at this time, whichever first */
    char name[PARD_NAME_MAX + 1];
    struct pard_frame_reader reader;
    struct pard__outbuf *out_head, *out_tail;
    size_t out_bytes; /* queued, unsent */

    /* Worker role. */
    uint32_t nfunctions;
    char (*functions)[PARD_NAME_MAX + 1]; /* heap, nfunctions entries */
    struct pard__job *job;                /* the job served now, or NULL (idle) */
    uint32_t lane;                        /* its lane in job */
    bool detach_sent;                     /* we asked it to leave job */
    bool timeout_killed;                  /* we sent SIGKILL for a time limit */
    uint64_t lane_done_base;              /* lane tasks_done when it joined */
    uint64_t tasks_done;                  /* over jobs it has left */
    uint64_t refused_job;                 /* a job it left on its own: do not re-offer */
    struct pard__child *child;            /* when --spawn started it */
};

/* pard__session_new - adopt an accepted, non-blocking, close-on-exec socket.
 * Returns 0 or a negative code (the socket is closed then). */
int pard__session_new(struct pard__daemon *d, int fd, pid_t pid, uid_t uid);

/*
 * pard__session_send - encode m and send it with pass_fd (>= 0: a
 * descriptor that rides on the frame's first byte; the caller keeps it).
 * What the socket cannot take now is queued and sent when it can. Never
 * closes the session directly: a failure queues a deferred close.
 * Returns 0 or a negative code.
 */
int pard__session_send(struct pard__session *s, const struct pard_msg *m, int pass_fd);

/* pard__session_send_error - an error message (code < 0, ref) to s. */
int pard__session_send_error(struct pard__session *s, int code, uint64_t ref, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * pard__session_fail - log, send an error message, and close the session
 * once it is flushed (or after PARD__DRAIN_MS). Reading stops at once.
 * Only from that session's own callback or a top-level callback.
 */
void pard__session_fail(struct pard__session *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * pard__session_close - close now: its jobs end, its lane dies, it leaves
 * every list; memory goes in the uv_close callback. Idempotent. Only from
 * a top-level callback (see the lifetime note at the top).
 */
void pard__session_close(struct pard__session *s, const char *why);

/* pard__session_close_later - the same, from the reaper, after the
 * current callback returns. Safe anywhere. */
void pard__session_close_later(struct pard__session *s, const char *why);

/* pard__session_desc - "worker pid 123 (client 4)" for log lines; a static
 * buffer, valid until the next call. */
const char *pard__session_desc(const struct pard__session *s);

/* pard__sessions_check - close sessions whose drain or hello deadline
 * passed (from the stats timer). */
void pard__sessions_check(struct pard__daemon *d, int64_t now);

/* pard__session_is_idle_worker - a registered worker with no job. */
bool pard__session_is_idle_worker(const struct pard__session *s);

/* ======================================================================
 * Jobs (jobs.c)
 * ====================================================================== */

struct pard__job {
    struct pard__list link; /* in daemon.jobs, oldest first (FIFO) */
    struct pard__daemon *d;
    uint64_t id; /* from 1 */
    char function[PARD_NAME_MAX + 1];
    struct pard__session *submitter; /* NULL once its connection closed */
    uint32_t submitter_pid;
    struct pard_job_geometry geo; /* asked for (pending) / filled (live) */
    uint32_t timeout_ms;          /* per task, 0 = none */
    uint32_t array;               /* 1: an array job; passed on to workers */
    uint32_t item_size;           /* array job: bytes per item */
    uint32_t result_size;         /* array job: bytes per result */
    enum pard_wait_mode wait_mode;
    int64_t created_ns;
    bool pending; /* waiting for --spawn workers to register */
    int64_t pending_deadline_ns;
    bool live;                    /* the region exists (shm is valid) */
    bool ended;                   /* job_end, or the submitter left */
    struct pard_job shm;          /* our view of the region */
    uint64_t shm_bytes;           /* region size, counted in daemon.shm_bytes */
    struct pard__share *share;    /* the shared block it names (a reference), or NULL */
    struct pard__session **owner; /* per lane: the worker holding it, or NULL */
    uint32_t nattached;           /* non-NULL entries of owner */
};

/* Message handlers (the session checked the role where it matters). */
void pard__job_submit(struct pard__session *s, const struct pard_msg_submit *m);
void pard__job_end_msg(struct pard__session *s, uint64_t job_id);
void pard__job_cancel_msg(struct pard__session *s, uint64_t job_id);
void pard__job_detached_msg(struct pard__session *s, uint64_t job_id);
void pard__job_worker_error(struct pard__session *s, const struct pard_msg_error *e);

/* pard__jobs_worker_gone - a worker's connection closed: its lane dies. */
void pard__jobs_worker_gone(struct pard__session *s);
/* pard__jobs_submitter_gone - a submitter's connection closed: its jobs end. */
void pard__jobs_submitter_gone(struct pard__session *s);
/* pard__jobs_worker_registered - resolve pending jobs a new worker serves. */
void pard__jobs_worker_registered(struct pard__session *s);

/* pard__schedule - give idle workers a lane of the oldest job they serve. */
void pard__schedule(struct pard__daemon *d);

/* pard__jobs_check - the watch tick: time limits and pending deadlines. */
void pard__jobs_check(struct pard__daemon *d, int64_t now);

/* pard__jobs_shutdown - every job CANCELLED then ENDED, events rung. */
void pard__jobs_shutdown(struct pard__daemon *d);
/* pard__jobs_free_all - free what is left (after every session closed). */
void pard__jobs_free_all(struct pard__daemon *d);
/* Give back the spare job region, if any (a limit needs the room). */
void pard__jobs_drop_spare(struct pard__daemon *d);
/* Drop the spare region once it has gone unused for a while. */
void pard__jobs_trim(struct pard__daemon *d, int64_t now);

/* pard__job_lane_ctl - lane i's control block in our mapping. */
struct pard_lane_ctl *pard__job_lane_ctl(const struct pard__job *j, uint32_t i);

/* pard__worker_serves - does s serve `function`? */
bool pard__worker_serves(const struct pard__session *s, const char *function);

/* pard__worker_tasks_done - tasks done by a worker, this job included. */
uint64_t pard__worker_tasks_done(const struct pard__session *s);

/* pard__jobs_delivered - tasks delivered by live jobs plus finished ones. */
uint64_t pard__jobs_delivered(const struct pard__daemon *d);

/* pard__jobs_watch_needed - does the watch timer have anything to do? */
bool pard__jobs_watch_needed(const struct pard__daemon *d);

/* ======================================================================
 * Shared blocks (share.c)
 * ====================================================================== */

struct pard__share {
    struct pard__list link; /* in daemon.shares */
    struct pard__daemon *d;
    uint64_t handle;             /* from 1 */
    int fd;                      /* the block's descriptor (close-on-exec) */
    uint64_t size;               /* bytes (fstat) */
    struct pard__session *owner; /* the submitter offering it; NULL once withdrawn */
    uint32_t refs;               /* jobs naming it */
};

/* pard__share_msg - a submitter's `share`; takes *fd (sets it to -1). */
void pard__share_msg(struct pard__session *s, const struct pard_msg_share *m, int *fd);
void pard__unshare_msg(struct pard__session *s, uint64_t handle);
/* pard__shares_owner_gone - a submitter left: withdraw its blocks. */
void pard__shares_owner_gone(struct pard__session *s);
/* pard__share_get - s's block `handle`, with a reference, or NULL. */
struct pard__share *pard__share_get(struct pard__session *s, uint64_t handle);
/* pard__share_put - drop a reference (NULL is fine). */
void pard__share_put(struct pard__share *sh);
/* pard__share_send - send w the block (`share` with its descriptor). */
int pard__share_send(struct pard__session *w, const struct pard__share *sh);
void pard__shares_free_all(struct pard__daemon *d);

/* ======================================================================
 * Timers (watch.c) and replies (stats.c)
 * ====================================================================== */

int pard__watch_init(struct pard__daemon *d);
/* pard__watch_kick - start the watch timer if it has work. Cheap. */
void pard__watch_kick(struct pard__daemon *d);
void pard__watch_close(struct pard__daemon *d);

void pard__stats_reply(struct pard__session *s);
void pard__list_workers_reply(struct pard__session *s);
void pard__list_jobs_reply(struct pard__session *s);

/* ======================================================================
 * Listening (listen.c)
 * ====================================================================== */

/*
 * pard__listen_open - take the lock, remove a stale socket, bind, listen
 * and start accepting. On failure prints a message for the user and
 * returns a negative code (-PARD_EBUSY: another daemon serves the path);
 * what was opened is released by pard__listen_cleanup.
 */
int pard__listen_open(struct pard__daemon *d);
/* pard__listen_stop - stop accepting and close the listening socket. */
void pard__listen_stop(struct pard__daemon *d);
/* pard__listen_cleanup - unlink the socket and the lock file, release the
 * lock. After the loop has stopped. */
void pard__listen_cleanup(struct pard__daemon *d);

/* ======================================================================
 * Supervision (supervise.c)
 * ====================================================================== */

struct pard__child {
    struct pard__daemon *d;
    unsigned index;       /* 0 .. spawn-1, for log lines */
    uv_process_t proc;    /* valid while proc_open */
    uv_timer_t timer;     /* restart back-off */
    bool proc_open;       /* proc is initialised and not yet closed */
    bool running;         /* spawned and not yet exited */
    bool registered;      /* a worker connection with its pid registered */
    bool restart_pending; /* timer armed */
    pid_t pid;
    int64_t started_ns;
    uint32_t backoff_ms; /* delay before the next restart */
    uint64_t restarts;
};

/* pard__supervise_start - start cfg.spawn workers. Returns 0, or a negative
 * code when the very first start fails (bad command): the caller stops. */
int pard__supervise_start(struct pard__daemon *d);
/* pard__supervise_stop - SIGTERM every worker, SIGKILL after PARD__STOP_MS;
 * calls pard__shutdown_finish once none is left. */
void pard__supervise_stop(struct pard__daemon *d);
/* pard__supervise_kill_now - SIGKILL every worker (a second signal). */
void pard__supervise_kill_now(struct pard__daemon *d);
/* pard__supervise_starting - some supervised worker has not registered yet. */
bool pard__supervise_starting(const struct pard__daemon *d);
/* pard__supervise_registered - the child with this pid, marked registered,
 * or NULL when we did not start it. */
struct pard__child *pard__supervise_registered(struct pard__daemon *d, pid_t pid);
void pard__supervise_free(struct pard__daemon *d);

/* ======================================================================
 * The daemon (main.c)
 * ====================================================================== */

struct pard__daemon {
    uv_loop_t loop;
    struct pard__config cfg;
    pid_t pid;
    uid_t uid;
    int64_t start_ns;
    int exit_code;

    /* listen.c */
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char lock_path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    int listen_fd;         /* -1 when closed */
    int lock_fd;           /* -1 when not held */
    bool socket_bound;     /* we created the socket file */
    bool listen_poll_open; /* listen_poll initialised and not closed */
    uv_poll_t listen_poll;
    uv_timer_t accept_timer; /* back-off after EMFILE */

    /* session.c */
    struct pard__list sessions;
    struct pard__list reap; /* sessions waiting for a deferred close */
    uv_idle_t reaper;
    uint32_t nsessions;
    uint32_t nworkers; /* greeted worker sessions */
    uint64_t next_client_id;
    struct pard_msg *msg_in;  /* decoded frame (large: heap) */
    struct pard_msg *msg_out; /* message being built (large: heap) */
    uint8_t *encbuf;          /* encoded frame */
    size_t enccap;

    /* jobs.c */
    struct pard__list jobs;
    uint32_t njobs;
    uint64_t next_job_id;
    uint64_t shm_bytes; /* sum of live regions */
    /* The region of the last finished job, kept for the next job of the
     * same geometry: creating one (posix_fallocate of ~13 MB by default)
     * and freeing it cost a map ~8 ms. Not in shm_bytes; dropped when a
     * limit needs the room, after SPARE_IDLE_NS unused, and at shutdown. */
    struct pard_job spare;
    bool has_spare;
    int64_t spare_since_ns;

    /* share.c */
    struct pard__list shares;
    uint32_t nshares;
    uint64_t share_bytes; /* sum of held shared blocks */
    uint64_t next_share_handle;

    /* statistics */
    uint64_t done_finished;     /* delivered by freed jobs */
    uint64_t requeued_finished; /* requeued by freed jobs */
    uint64_t timeouts;
    uint64_t worker_deaths;
    uint64_t rate_last_done;
    int64_t rate_last_ns;
    double tasks_per_sec;

    /* watch.c */
    uv_timer_t watch_timer;
    uv_timer_t stats_timer;
    bool watch_running;

    /* supervise.c */
    struct pard__child *children;
    uint32_t nchildren;
    char **worker_argv;
    char *worker_argv_buf;
    char **worker_env;
    char *worker_env_own; /* our PARD_SOCKET=... entry of worker_env */
    uv_timer_t stop_timer;
    bool stop_timer_open;

    /* main.c */
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    bool stopping; /* the shutdown sequence has begun */
    bool finished; /* the last handles are closing */
};

/* pard__shutdown - begin the shutdown sequence (idempotent). */
void pard__shutdown(struct pard__daemon *d, const char *why);
/* pard__shutdown_finish - the supervisor is done: close the last handles. */
void pard__shutdown_finish(struct pard__daemon *d);

/* pard__fmt_bytes - "1.5 MiB"; a static buffer per slot (0..3). */
const char *pard__fmt_bytes(uint64_t bytes, unsigned slot);

#endif /* PARD_DAEMON_INTERNAL_H */
