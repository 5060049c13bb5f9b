/*
 * pard/proto.h — the control-channel protocol of pard: messages, framing,
 * limits, version, and Unix-socket helpers that carry file descriptors.
 *
 * Design
 * ------
 * The control channel is a Unix stream socket. Tasks never travel on it
 * (they flow through shared memory); it carries handshakes, job set-up,
 * statistics and errors, so clarity and robustness matter more here than
 * nanoseconds. The wire format is specified in docs/protocol.md; this
 * header is its C face.
 *
 *   - Framing: each frame is a 4-byte big-endian body length followed by a
 *     msgpack body. A frame reader (struct pard_frame_reader, caller
 *     storage with a heap buffer) is fed bytes as they arrive — copied in,
 *     or received straight into its buffer — and yields complete frames.
 *     It also remembers which frame each received file descriptor came
 *     with, so a descriptor is never handed out with the wrong message.
 *
 *   - Messages: one msgpack map per frame with string keys, always "type"
 *     (string) and "v" (protocol version). A decoded message is a plain C
 *     struct (struct pard_msg, a tagged union) with fixed-size fields:
 *     strings are copied into bounded, NUL-terminated arrays, lists into
 *     bounded arrays. It owns no heap memory, so it can be copied, reused
 *     or dropped freely. Unknown keys are ignored (forward compatibility);
 *     anything else that does not match the schema is refused.
 *
 *   - Sockets: sendmsg/recvmsg wrappers that attach one descriptor to the
 *     first byte of a frame (SCM_RIGHTS) and receive descriptors with
 *     MSG_CMSG_CLOEXEC. They work on non-blocking sockets (returning
 *     -EAGAIN, for an event loop) and on blocking ones (for clients).
 *
 * Trust
 * -----
 * Every byte received is untrusted. The decoder checks the structure of a
 * body (nesting depth, container sizes, object count, truncation) before
 * msgpack-c builds any object from it, so a hostile frame cannot make it
 * allocate more than a small bounded amount; then every field is checked
 * for type, range and length. Bad input yields -PARD_EPROTO, or
 * -PARD_ETOOBIG when a length limit is exceeded, never a crash.
 *
 * Errors
 * ------
 * Functions return int: 0 (or a count) on success, a negative code on
 * failure: -errno for system failures, or -PARD_E* from pard/ipc.h
 * (pard_strerror() describes both). "Need more bytes" is a value (0 from
 * pard_frame_reader_next), not an error.
 *
 * Threads: nothing here has global state. A frame reader or a message must
 * not be used by two threads at once; distinct ones may.
 */
#ifndef PARD_PROTO_H
#define PARD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pard/ipc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Version and limits
 * ====================================================================== */

/* The protocol version carried in every message's "v". */
#define PARD_PROTO_VERSION 1u

#define PARD_FRAME_HEADER 4u /* bytes of the big-endian length prefix */

/* Default largest frame body a reader accepts: every client → daemon
 * message at its limits fits with room to spare. */
#define PARD_FRAME_MAX (64u * 1024u)
/* Largest body a client should accept: every daemon → client message at
 * its limits fits (a workers_reply of 256 workers with 64 functions each
 * is the biggest, about 1.1 MiB). */
#define PARD_FRAME_MAX_CLIENT (2u * 1024u * 1024u)
/* Hard ceiling for any reader or encoder. */
#define PARD_FRAME_MAX_LIMIT (16u * 1024u * 1024u)

#define PARD_NAME_MAX      63u   /* function, worker and state names: [A-Za-z0-9_.-] */
#define PARD_TEXT_MAX      1023u /* free text: error messages, version strings */
#define PARD_FUNCTIONS_MAX 64u   /* functions in one register (and per listed worker) */
#define PARD_LIST_MAX      256u  /* entries in a workers_reply or jobs_reply */

/* Structural limits on any body, known keys or not (checked before
 * msgpack-c allocates anything). */
#define PARD_NESTING_MAX   8u     /* containers within containers */
#define PARD_CONTAINER_MAX 256u   /* elements of any array, entries of any map */
#define PARD_OBJECTS_MAX   32768u /* msgpack objects in one body */

/* ======================================================================
 * Messages
 * ====================================================================== */

/*
 * Every message type: the enum name and the wire "type" string. The enum
 * values are local to this library (the wire carries the string), so
 * they may be renumbered; the strings may not.
 */
#define PARD_MSG_TYPE_MAP(XX)                                                                      \
    XX(HELLO, "hello")                                                                             \
    XX(WELCOME, "welcome")                                                                         \
    XX(ERROR, "error")                                                                             \
    XX(OK, "ok")                                                                                   \
    XX(REGISTER, "register")                                                                       \
    XX(SUBMIT, "submit")                                                                           \
    XX(JOB, "job")                                                                                 \
    XX(ATTACH, "attach")                                                                           \
    XX(DETACH, "detach")                                                                           \
    XX(DETACHED, "detached")                                                                       \
    XX(JOB_END, "job_end")                                                                         \
    XX(CANCEL, "cancel")                                                                           \
    XX(STATS, "stats")                                                                             \
    XX(STATS_REPLY, "stats_reply")                                                                 \
    XX(LIST_WORKERS, "list_workers")                                                               \
    XX(WORKERS_REPLY, "workers_reply")                                                             \
    XX(LIST_JOBS, "list_jobs")                                                                     \
    XX(JOBS_REPLY, "jobs_reply")                                                                   \
    XX(SHUTDOWN, "shutdown")                                                                       \
    XX(SHARE, "share")                                                                             \
    XX(UNSHARE, "unshare")

enum pard_msg_type {
    PARD_MSG_NONE = 0, /* never on the wire: "no message" */
#define PARD__MSG_ENUM(name, str) PARD_MSG_##name,
    PARD_MSG_TYPE_MAP(PARD__MSG_ENUM)
#undef PARD__MSG_ENUM
        PARD_MSG__COUNT /* one past the last type */
};

/* A client's role, announced in hello. */
enum pard_role {
    PARD_ROLE_NONE = 0, /* never valid on the wire */
    PARD_ROLE_WORKER = 1,
    PARD_ROLE_SUBMITTER = 2,
    PARD_ROLE_CONTROL = 3,
};

/* hello — client → daemon, the first frame on a connection. */
struct pard_msg_hello {
    enum pard_role role;          /* required */
    uint32_t pid;                 /* required: the client's process id */
    char name[PARD_NAME_MAX + 1]; /* optional: "" when absent */
};

/* welcome — daemon → client, the reply to an accepted hello. */
struct pard_msg_welcome {
    uint32_t daemon_pid;                    /* required */
    uint64_t client_id;                     /* required: the daemon's id for this connection */
    char version_string[PARD_TEXT_MAX + 1]; /* required: e.g. "pard 0.2.0" */
};

/* error — either way. */
struct pard_msg_error {
    int32_t code;                    /* required: a negative pard code or -errno */
    uint64_t ref;                    /* optional: job id or request referred to; 0 = none */
    char message[PARD_TEXT_MAX + 1]; /* required: human-readable, may be "" */
};

/* ok — a generic acknowledgement. */
struct pard_msg_ok {
    uint64_t ref; /* optional: what is acknowledged; 0 = none */
};

/* register — worker → daemon: the functions this worker serves. */
struct pard_msg_register {
    uint32_t nfunctions;                                   /* 1 .. PARD_FUNCTIONS_MAX */
    char functions[PARD_FUNCTIONS_MAX][PARD_NAME_MAX + 1]; /* names */
};

/* submit — submitter → daemon. Every option is optional; 0 (or
 * has_wait_mode == false) asks for the daemon's default. */
struct pard_msg_submit {
    char function[PARD_NAME_MAX + 1]; /* required */
    uint32_t timeout_ms;              /* per-task time limit */
    uint32_t retries;                 /* re-runs of a failed or timed-out task */
    bool has_wait_mode;               /* false: the daemon's default wait mode */
    enum pard_wait_mode wait_mode;    /* used when has_wait_mode */
    uint32_t ring_capacity;           /* task ring slots */
    uint64_t input_arena;             /* input arena bytes */
    uint64_t output_arena;            /* output arena bytes per lane */
    uint32_t max_lanes;               /* most workers on this job */
    uint32_t window;                  /* most outstanding tasks */
    uint64_t shared;                  /* a shared block's handle; 0 = none */
    uint32_t array;                   /* 1: an array job (fixed-size items and
                                         results, docs/protocol.md); 0: records */
    uint32_t item_size;               /* array job: bytes per input item */
    uint32_t result_size;             /* array job: bytes per result */
};

/* job — daemon → submitter, with the job region's descriptor. */
struct pard_msg_job {
    uint64_t job_id;                  /* required, >= 1 */
    uint32_t lanes;                   /* required: lanes laid out in the region */
    char function[PARD_NAME_MAX + 1]; /* required */
};

/* attach — daemon → worker, with the job region's descriptor. */
struct pard_msg_attach {
    uint64_t job_id;                  /* required */
    uint32_t lane;                    /* required: the lane this worker owns */
    uint32_t timeout_ms;              /* required: per-task limit, 0 = none */
    char function[PARD_NAME_MAX + 1]; /* required */
    enum pard_wait_mode wait_mode;    /* required */
    uint64_t shared;                  /* optional: the job's shared block, sent
                                         just before in a `share`; 0 = none */
    uint32_t array;                   /* optional: 1 for an array job */
    uint32_t item_size;               /* optional: array job, bytes per item */
    uint32_t result_size;             /* optional: array job, bytes per result */
};

/* share — submitter → daemon with a region fd: register a read-only block
 * (handle 0; the `ok` reply's ref is the handle); daemon → worker with the
 * fd, before an attach that names it. unshare — submitter → daemon: the
 * block is no longer offered to new jobs. */
struct pard_msg_share {
    uint64_t handle; /* share: 0 from a submitter; unshare: required */
    uint64_t size;   /* bytes of the region (share: required) */
};

/* detach (daemon → worker), detached (worker → daemon), job_end
 * (submitter → daemon), cancel (any client → daemon). */
struct pard_msg_job_ref {
    uint64_t job_id; /* required */
};

/* stats_reply — daemon → client. */
struct pard_msg_stats_reply {
    uint64_t workers;
    uint64_t idle_workers;
    uint64_t jobs;
    uint64_t tasks_done;
    double tasks_per_sec;
    uint64_t requeues;
    uint64_t timeouts;
    uint64_t worker_deaths;
    uint64_t shm_bytes;
    uint64_t uptime_ms;
    uint32_t pid;
    char version_string[PARD_TEXT_MAX + 1];
};

/* One entry of a workers_reply. */
struct pard_msg_worker_entry {
    uint64_t id;                                           /* the daemon's client id */
    uint32_t pid;                                          /* */
    uint32_t nfunctions;                                   /* 0 .. PARD_FUNCTIONS_MAX */
    uint64_t job_id;                                       /* job it serves; 0 = idle */
    uint64_t tasks_done;                                   /* */
    char name[PARD_NAME_MAX + 1];                          /* "" when it gave none */
    char functions[PARD_FUNCTIONS_MAX][PARD_NAME_MAX + 1]; /* */
};

struct pard_msg_workers_reply {
    uint32_t nworkers; /* 0 .. PARD_LIST_MAX */
    struct pard_msg_worker_entry workers[PARD_LIST_MAX];
};

/* One entry of a jobs_reply. */
struct pard_msg_job_entry {
    uint64_t id;
    uint32_t submitter_pid;
    uint32_t lanes;     /* lanes in use */
    uint64_t submitted; /* tasks */
    uint64_t delivered; /* tasks */
    uint64_t failed;    /* tasks */
    uint64_t age_ms;
    char function[PARD_NAME_MAX + 1];
    char state[PARD_NAME_MAX + 1]; /* a word such as "running"; name rules */
};

struct pard_msg_jobs_reply {
    uint32_t njobs; /* 0 .. PARD_LIST_MAX */
    struct pard_msg_job_entry jobs[PARD_LIST_MAX];
};

/*
 * A message: the type, the version it carried (or will carry) and the
 * fields of that type. stats, list_workers, list_jobs and shutdown have no
 * fields. The struct is large (about 1.1 MiB, because of workers_reply):
 * keep it in static or heap storage, not on a small thread stack.
 */
struct pard_msg {
    enum pard_msg_type type;
    uint32_t version; /* "v": 0 when encoding means PARD_PROTO_VERSION */
    union {
        struct pard_msg_hello hello;
        struct pard_msg_welcome welcome;
        struct pard_msg_error error;
        struct pard_msg_ok ok;
        struct pard_msg_register reg; /* "register" is a C keyword */
        struct pard_msg_submit submit;
        struct pard_msg_job job;
        struct pard_msg_attach attach;
        struct pard_msg_job_ref detach;
        struct pard_msg_job_ref detached;
        struct pard_msg_job_ref job_end;
        struct pard_msg_job_ref cancel;
        struct pard_msg_stats_reply stats_reply;
        struct pard_msg_workers_reply workers_reply;
        struct pard_msg_jobs_reply jobs_reply;
        struct pard_msg_share share;
        struct pard_msg_share unshare;
    };
};

/* pard_msg_type_name - the wire name of a type ("hello"), or "unknown". */
const char *pard_msg_type_name(enum pard_msg_type type);

/* pard_role_name - "worker", "submitter", "control", or "unknown". */
const char *pard_role_name(enum pard_role role);

/*
 * pard_name_valid - true when s is a valid name: 1 .. PARD_NAME_MAX bytes
 * of [A-Za-z0-9_.-]. Function names, worker names and job states follow
 * this rule.
 */
bool pard_name_valid(const char *s);

/*
 * pard_msg_init - set m->type and m->version (PARD_PROTO_VERSION) and zero
 * the fields of that type (list counts only: entries are not touched).
 */
void pard_msg_init(struct pard_msg *m, enum pard_msg_type type);

/*
 * pard_msg_set_error - make m an error message with `code` (negative:
 * the encoder refuses anything else), `ref` (0 = none) and a
 * printf-formatted message, truncated to PARD_TEXT_MAX bytes (on a
 * character boundary for UTF-8 text).
 */
void pard_msg_set_error(struct pard_msg *m, int code, uint64_t ref, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * pard_msg_encode - encode m as a msgpack body into buf[0 .. cap).
 * Optional fields that hold their "absent" value (0, "", false) are left
 * out; the version written is m->version, or PARD_PROTO_VERSION when 0.
 * The encoder refuses what a decoder would refuse (a name with a bad
 * character, a count over its limit, a string not NUL-terminated within
 * its array, an unknown type or enum, an error code >= 0): -EINVAL.
 * Returns 0 and the body length in *len, or -EINVAL, or -ENOBUFS when cap
 * is too small (nothing useful is left in buf), or -PARD_ETOOBIG when the
 * body would exceed PARD_FRAME_MAX_LIMIT. Never allocates; thread-safe.
 */
int pard_msg_encode(const struct pard_msg *m, void *buf, size_t cap, size_t *len);

/*
 * pard_msg_encode_frame - like pard_msg_encode, but write a whole frame:
 * the 4-byte length prefix, then the body. *len is the frame length.
 */
int pard_msg_encode_frame(const struct pard_msg *m, void *buf, size_t cap, size_t *len);

/*
 * pard_msg_decode - decode one body (exactly one msgpack map, no trailing
 * bytes) into *out. out needs no preparation and owns no memory after.
 *
 * A message whose "v" differs from PARD_PROTO_VERSION decodes to its type
 * and version only (its fields may have another shape), except error,
 * whose shape is frozen across versions; pard_msg_check_version() then
 * tells the caller. Unknown keys are ignored; a duplicate known key is
 * refused.
 *
 * Returns 0, or -PARD_EPROTO (not a map, unknown type, missing key, wrong
 * type, value out of range, bad name, trailing bytes, truncated body,
 * nesting too deep), or -PARD_ETOOBIG (a string, array or map over its
 * limit, too many objects). On failure out->type is PARD_MSG_NONE and the
 * rest of *out is unspecified. Allocates at most a bounded amount
 * (msgpack-c's zone, about 24 bytes per object) and frees it before it
 * returns.
 */
int pard_msg_decode(const void *buf, size_t len, struct pard_msg *out);

/*
 * pard_msg_check_version - 0 when m->version is PARD_PROTO_VERSION,
 * else -PARD_EVERSION. A daemon calls it on hello, a client on welcome.
 */
int pard_msg_check_version(const struct pard_msg *m);

/* ======================================================================
 * Framing
 * ====================================================================== */

/* Descriptors a frame reader holds for frames not yet returned. */
#define PARD_FRAME_READER_FDS 8u
/* Bytes a reader accepts beyond one maximal frame between two drains. */
#define PARD_FRAME_READER_SLACK (64u * 1024u)

/*
 * A frame reader: caller storage, heap buffer. Bytes go in with
 * pard_frame_reader_feed() (copied) or pard_frame_reader_reserve() +
 * pard_frame_reader_commit() (received in place); frames come out with
 * pard_frame_reader_next(). Drain with next() until it returns 0 before
 * putting more bytes in: the reader holds at most one incomplete frame
 * plus PARD_FRAME_READER_SLACK bytes.
 *
 * Descriptors received with the bytes are handed to the reader at commit;
 * each belongs to the last frame that starts within those bytes (the
 * sender attaches a descriptor to the first byte of its frame, and the
 * kernel returns it with the read that contains that byte), and next()
 * returns it with that frame.
 *
 * All fields are private.
 */
struct pard_frame_reader {
    uint8_t *buf;                           /* heap buffer, NULL until the first bytes */
    size_t cap;                             /* bytes allocated */
    size_t start;                           /* offset of the first unreturned byte */
    size_t end;                             /* offset one past the last buffered byte */
    size_t max;                             /* largest body accepted */
    uint64_t base;                          /* stream position of buf[0] */
    int err;                                /* sticky error, 0 when healthy */
    uint32_t nfds;                          /* pending descriptors */
    int fds[PARD_FRAME_READER_FDS];         /* pending descriptors */
    uint64_t fd_pos[PARD_FRAME_READER_FDS]; /* stream position of each one's frame */
};

/*
 * pard_frame_reader_init - an empty reader accepting bodies of up to `max`
 * bytes (0 means PARD_FRAME_MAX). Allocates nothing yet.
 * Returns 0, or -EINVAL when max > PARD_FRAME_MAX_LIMIT.
 */
int pard_frame_reader_init(struct pard_frame_reader *r, size_t max);

/* pard_frame_reader_destroy - free the buffer, close pending descriptors. */
void pard_frame_reader_destroy(struct pard_frame_reader *r);

/*
 * pard_frame_reader_reset - drop buffered bytes and descriptors and clear
 * a sticky error (after which the byte stream is out of sync: only useful
 * when starting a new stream).
 */
void pard_frame_reader_reset(struct pard_frame_reader *r);

/*
 * pard_frame_reader_reserve - make room for at least `want` (> 0) more
 * bytes and return where to put them (*space, *avail >= want bytes).
 * Invalidates bodies returned by next(). Returns 0, -ENOBUFS when the
 * reader would hold more than an incomplete frame plus the slack (drain
 * first), -ENOMEM, or the sticky error.
 */
int pard_frame_reader_reserve(struct pard_frame_reader *r, size_t want, void **space,
                              size_t *avail);

/*
 * pard_frame_reader_commit - `n` bytes were written at *space (n <= the
 * reserved *avail) and arrived with `nfds` descriptors `fds` (may be
 * NULL/0). The reader takes the descriptors: it closes them when it cannot
 * hold them (more than one per frame, or more than PARD_FRAME_READER_FDS
 * pending). Returns 0, or -EINVAL (n too large).
 */
int pard_frame_reader_commit(struct pard_frame_reader *r, size_t n, const int *fds, int nfds);

/*
 * pard_frame_reader_feed - reserve + copy + commit. Returns 0, -ENOBUFS,
 * -ENOMEM or the sticky error; on failure the descriptors are closed.
 */
int pard_frame_reader_feed(struct pard_frame_reader *r, const void *data, size_t len,
                           const int *fds, int nfds);

/*
 * pard_frame_reader_next - the next complete frame, if any.
 * Returns 1 with *body / *len (pointing into the reader, valid until the
 * next reserve/feed/reset/destroy) and, in *fd (may be NULL: then it is
 * closed), the descriptor that came with the frame or -1; 0 when more
 * bytes are needed; -PARD_ETOOBIG when a length prefix exceeds the
 * reader's max. Errors are sticky: the buffered bytes and descriptors are
 * dropped (no partial frame is left behind) and every later call returns
 * the same error, since the stream can no longer be trusted — close the
 * connection.
 */
int pard_frame_reader_next(struct pard_frame_reader *r, const void **body, size_t *len, int *fd);

/* pard_frame_reader_buffered - bytes held that do not yet form a frame
 * (non-zero at EOF means the peer stopped mid-frame). */
size_t pard_frame_reader_buffered(const struct pard_frame_reader *r);

/* pard_frame_put_header / pard_frame_get_header - the big-endian prefix. */
void pard_frame_put_header(void *dst, uint32_t body_len);
uint32_t pard_frame_get_header(const void *src);

/* ======================================================================
 * Sockets
 * ====================================================================== */

/* Most descriptors pard_sock_recv() takes from one recvmsg. */
#define PARD_SOCK_MAX_FDS 8

/*
 * pard_sock_send - one sendmsg(MSG_NOSIGNAL) of up to `len` bytes, with
 * `pass_fd` (>= 0; -1 for none) attached to the first byte as SCM_RIGHTS.
 * The caller keeps pass_fd (the peer receives a duplicate).
 * For event loops on non-blocking sockets: returns the bytes written
 * (> 0; the descriptor went with them, so do not pass it again for the
 * rest), -EAGAIN when nothing could be written, or -errno (-EPIPE when the
 * peer is gone). EINTR is retried. len is capped at INT_MAX per call; len
 * 0 is -EINVAL.
 */
int pard_sock_send(int fd, const void *buf, size_t len, int pass_fd);

/*
 * pard_sock_send_frame - write all `len` bytes of a frame (a length prefix
 * and body, as pard_msg_encode_frame makes them), pass_fd on the first
 * byte. Loops on partial writes; on a non-blocking socket it waits with
 * poll() for room, so it always blocks until done — event loops use
 * pard_sock_send() instead. Returns 0 or -errno.
 */
int pard_sock_send_frame(int fd, const void *buf, size_t len, int pass_fd);

/*
 * pard_sock_send_msg - encode m into a frame and pard_sock_send_frame it.
 * Returns 0, an encoder error, -ENOMEM, or -errno.
 */
int pard_sock_send_msg(int fd, const struct pard_msg *m, int pass_fd);

/*
 * pard_sock_recv - one recvmsg(MSG_CMSG_CLOEXEC) into buf[0 .. cap).
 * Up to *nfds_inout received descriptors are stored in fds_out (which may
 * be NULL when *nfds_inout is 0, or nfds_inout NULL: none wanted); the
 * rest are closed, and *nfds_inout is set to the number stored. The
 * caller owns the stored descriptors. Returns the bytes read (> 0), 0 at
 * end of stream, -EAGAIN (non-blocking, nothing there), or -errno. EINTR
 * is retried.
 */
int pard_sock_recv(int fd, void *buf, size_t cap, int *fds_out, int *nfds_inout);

/*
 * pard_sock_recv_frame - blocking convenience for clients: return the
 * next frame from r (reading from fd as needed, on a blocking or
 * non-blocking socket). On success returns 0 with *body / *len as from
 * pard_frame_reader_next() and *fd_out the descriptor sent with that frame
 * or -1 (fd_out NULL: it is closed). timeout_ms < 0 waits forever.
 * Returns -ETIMEDOUT, -ECONNRESET when the peer closed the connection,
 * -PARD_ETOOBIG from the reader, or -errno.
 */
int pard_sock_recv_frame(int fd, struct pard_frame_reader *r, const void **body, size_t *len,
                         int timeout_ms, int *fd_out);

/*
 * pard_sock_recv_msg - pard_sock_recv_frame, then pard_msg_decode into
 * *out. On a decode error the descriptor is closed and the error
 * returned.
 */
int pard_sock_recv_msg(int fd, struct pard_frame_reader *r, struct pard_msg *out, int timeout_ms,
                       int *fd_out);

#ifdef __cplusplus
}
#endif
#endif /* PARD_PROTO_H */
