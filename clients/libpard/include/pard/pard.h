/*
 * pard/pard.h — libpard: write workers for pard, and map functions over
 * inputs with them.
 *
 * Design
 * ------
 * Two sides, each a few calls:
 *
 *   Workers register named functions and serve them until the daemon stops:
 *
 *       static int square(void *ctx, const void *in, size_t len, struct pard_out *out);
 *       struct pard_function fns[] = {{"square", square}};
 *       return pard_worker_main(fns, 1, NULL) ? 1 : 0;
 *
 *   Submitters connect and map a function over inputs; results come back
 *   through a callback, in input order (or as they finish):
 *
 *       struct pard_client *c;
 *       pard_connect(&c, NULL);
 *       pard_map(c, "square", next_input, on_result, arg, NULL, NULL);
 *       pard_disconnect(c);
 *
 * Tasks and results flow through shared memory that the daemon sets up; the
 * daemon is not on the data path. Inputs and outputs are byte buffers.
 *
 * Guarantees: every input yields exactly one result callback (a value or an
 * error with the worker's message), whatever worker dies when; a dead
 * daemon makes a blocked call return -PARD_EDAEMON within a second; a
 * worker that crashes while running a task fails that task with an error
 * naming the signal, and the job goes on.
 *
 * Errors: functions return 0 or a negative code (pard_strerror() from
 * pard/ipc.h describes it); pard_last_error() gives the last error with
 * context (what, where, what to do).
 *
 * Threads: a pard_client is used by one thread at a time, except
 * pard_cancel(), which any thread may call.
 */
#ifndef PARD_PARD_H
#define PARD_PARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "pard/ipc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PARD_VERSION_STRING "0.2.0"

/* ======================================================================
 * Connections
 * ====================================================================== */

struct pard_client;
struct pard_function;

/*
 * pard_connect - connect to the daemon as a submitter. socket_path NULL
 * resolves like every pard tool: $PARD_SOCKET, else
 * $XDG_RUNTIME_DIR/pard.sock, else /tmp/pard-$UID/pard.sock.
 * Returns 0 and *out (free with pard_disconnect), or -ENOENT /
 * -ECONNREFUSED (no daemon: start one with `pard`), -PARD_EVERSION,
 * -PARD_EDENIED, -ENOMEM.
 */
int pard_connect(struct pard_client **out, const char *socket_path);

/* pard_connect_control - connect as a control client (parctl): it may ask
 * for stats, lists, cancel and shutdown, and submits nothing. */
int pard_connect_control(struct pard_client **out, const char *socket_path);

/*
 * pard_open_private - the zero-set-up way: start a private pard daemon for
 * this process on a fresh socket in a private temporary directory, fork
 * `nworkers` worker processes from this program that serve `fns` (0: one
 * per online core), wait for them, and connect. pard_disconnect() stops
 * the daemon and the workers and removes the directory. The daemon binary
 * is $PARD_DAEMON, else the build tree's or the installed one, else `pard`
 * on PATH. Workers are forked, not executed: they inherit this program's
 * memory as it is at the call (like Python multiprocessing's fork), so a
 * data set loaded before the call is visible to them. Call it before
 * starting threads. Returns 0, -ENOENT (no pard binary), or another
 * negative code with pard_last_error() saying what went wrong.
 */
int pard_open_private(struct pard_client **out, const struct pard_function *fns, size_t nfns,
                      unsigned nworkers);

/* pard_disconnect - close the connection and free the client; for a
 * private daemon, also stop it and its workers. NULL ok. */
void pard_disconnect(struct pard_client *c);

/* pard_last_error - the calling thread's last libpard error, with
 * context (what, where, what to do), or "". Valid until its next call. */
const char *pard_last_error(void);

/* pard_client_fd - the control socket (for parctl; do not read from it). */
int pard_client_fd(const struct pard_client *c);

/* ======================================================================
 * Worker side
 * ====================================================================== */

/* Where a task writes its output; only valid during the call. */
struct pard_out;

/*
 * A map function. `in`/`len` is the task's input (valid during the call
 * only); write the output with pard_out_write(), or report failure with
 * pard_out_error() and a non-zero return. `ctx` is the worker's context
 * (see pard_worker_opts.init).
 */
typedef int (*pard_task_fn)(void *ctx, const void *in, size_t len, struct pard_out *out);

struct pard_function {
    const char *name; /* [A-Za-z0-9_.-]{1,63} */
    pard_task_fn fn;
};

/* pard_out_write - append bytes to the task's output. Returns 0, -ENOMEM,
 * or in an array map (pard_map_array) -ENOSPC when the output would be
 * longer than the map's result size (the task then fails). */
int pard_out_write(struct pard_out *out, const void *data, size_t len);

/* pard_out_printf - append formatted text. Returns 0 or -ENOMEM. */
int pard_out_printf(struct pard_out *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * pard_out_error - fail the task with a message (replaces any output). The
 * submitter receives it with the function name and task index. Returns -1
 * so that `return pard_out_error(out, "bad input %s", x);` reads well.
 */
int pard_out_error(struct pard_out *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * pard_out_packer - a msgpack packer that appends to the task's output, for
 * functions whose results are structured: msgpack_pack_array(p, 2); ...
 * Valid during the call. Mixing it with pard_out_write appends both.
 */
msgpack_packer *pard_out_packer(struct pard_out *out);

/*
 * pard_unpack - decode one msgpack object that fills data[0 .. len) (a
 * task's input, or a result): *obj points into `u`, which the caller
 * initialises with msgpack_unpacked_init and frees with
 * msgpack_unpacked_destroy. Returns 0, or -PARD_EPROTO when the bytes are
 * not exactly one msgpack object. Inputs are untrusted: check the object's
 * type and sizes before use.
 */
int pard_unpack(const void *data, size_t len, msgpack_unpacked *u, const msgpack_object **obj);

/* pard_out_task_index - the index of the task being run. */
uint64_t pard_out_task_index(const struct pard_out *out);

/*
 * pard_shared - the job's shared block (see pard_share), mapped into this
 * worker once per job with no copy: a pointer valid for the whole job, and
 * its size in *size; NULL when the job has none. Read it only.
 */
const void *pard_shared(const struct pard_out *out, size_t *size);

struct pard_worker_opts {
    const char *socket_path; /* NULL: the default resolution */
    const char *name;        /* shown by `parctl workers`; NULL: the program name */
    /* Called once before serving (load a model, open files); *ctx is
     * passed to every task. Non-zero return: the worker does not start. */
    int (*init)(void **ctx, void *arg);
    void (*fini)(void *ctx); /* called once at the end */
    void *arg;               /* for init */
    /* Leave after serving this many tasks (0: never), at the end of a
     * batch: the results are delivered, the lease is clear, and
     * pard_worker_run returns 0. Restart the process (pard --spawn does)
     * to recycle workers that leak or fragment memory, as
     * multiprocessing's maxtasksperchild does. */
    uint64_t max_tasks;
};

/*
 * pard_worker_run - connect, register the functions, and serve tasks until
 * the daemon shuts down (returns 0) or is lost (-PARD_EDAEMON), or an
 * error (negative). Installs handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL
 * and SIGABRT that record which task crashed, then let the process die.
 *
 * A task that runs when the daemon is lost cannot deliver its result, and
 * may run for a long time (or forever): a watchdog thread sees the
 * connection close, prints "...: the pard daemon is gone ..." to stderr
 * and ends the process with _exit(1) at once, without waiting for the
 * task or calling fini; when the daemon closed it after saying it shuts
 * down, it prints "...: pard is shutting down ..." and uses _exit(0).
 * Between tasks the loop notices by itself within 100 ms and returns
 * -PARD_EDAEMON (lost) or 0 (shut down).
 */
int pard_worker_run(const struct pard_function *fns, size_t nfns,
                    const struct pard_worker_opts *opts);

/*
 * pard_worker_main - pard_worker_run for a main(): also parses
 * --socket PATH, --max-tasks N and --help from argc/argv, and prints
 * errors to stderr.
 * Returns an exit status (0 ok, 1 error).
 */
int pard_worker_main(int argc, char **argv, const struct pard_function *fns, size_t nfns,
                     const struct pard_worker_opts *opts);

/* ======================================================================
 * Submitter side
 * ====================================================================== */

/*
 * Inputs come from a callback: store the next input in *data / *len and
 * return 1; return 0 when there are no more; a negative value aborts the
 * map with that error. The bytes must stay valid until the next call.
 * Inputs are pulled only as room frees up, so they are never all in
 * memory at once.
 */
typedef int (*pard_input_fn)(void *arg, uint64_t index, const void **data, size_t *len);

/* One result, handed to the result callback. */
struct pard_result {
    uint64_t index;       /* the task's input index */
    int status;           /* 0, or a negative code (-PARD_ETASK, -PARD_ETASKTIMEOUT, ...) */
    const void *data;     /* the output, or the error message (not NUL-terminated) */
    size_t len;           /* bytes at data */
    const char *function; /* the function name */
};

/*
 * Called once per task, in input order unless opts.unordered. `r` and its
 * data are valid during the call only. A non-zero return cancels the map,
 * which then returns that value.
 */
typedef int (*pard_result_fn)(void *arg, const struct pard_result *r);

/* pard_map_opts.batch: size batches from the measured task time. */
#define PARD_BATCH_AUTO 0u

/*
 * pard_share - create a block of `size` bytes in shared memory that the
 * workers of this client's jobs can read without copies (a data set, a
 * model). Fill it through *data, then pass *handle as
 * pard_map_opts.shared; each worker maps it once per job. The block lives
 * until pard_unshare or pard_disconnect. Returns 0, -PARD_ELIMIT (over the
 * daemon's shared-memory limit), -ENOMEM, -PARD_EDAEMON.
 */
int pard_share(struct pard_client *c, size_t size, void **data, uint64_t *handle);

/* pard_unshare - release a block from pard_share; jobs already using it
 * keep it until they end. */
int pard_unshare(struct pard_client *c, uint64_t handle);

struct pard_map_opts {
    bool unordered;                /* deliver results as they finish */
    uint32_t batch;                /* tasks per batch: PARD_BATCH_AUTO (0, the default)
                                      aims at ~0.2 ms per batch; 1 = unbatched */
    uint32_t timeout_ms;           /* per task; 0 = none */
    uint32_t retries;              /* re-runs after a timeout or crash */
    enum pard_wait_mode wait_mode; /* how the submitter and workers wait */
    uint32_t max_workers;          /* lanes; 0 = daemon default */
    uint64_t shared;               /* a pard_share handle the workers see; 0 = none */
    bool progress;                 /* draw a progress bar on stderr, if it is a terminal */
    uint64_t total;                /* inputs expected, for the bar's ETA; 0 = unknown */
};

struct pard_map_stats {
    uint64_t tasks;    /* results delivered */
    uint64_t failed;   /* of which errors */
    uint64_t requeued; /* tasks re-queued after worker deaths */
    uint64_t dropped;  /* duplicate results dropped */
    int64_t elapsed_ns;
    int64_t last_requeue_ns; /* pard_now_ns() when tasks of a dead worker were
                                last re-queued; 0 = never */
    uint64_t reclaimed;      /* task-ring slots taken back from workers that
                                died holding one (their batch re-queued) */
};

/*
 * pard_map - run `function` over the inputs from next_input, calling
 * on_result once per input. Blocks until every result is delivered, the
 * map is cancelled (-PARD_ECANCELED), or the daemon is lost
 * (-PARD_EDAEMON). A task's failure is not the map's failure: it comes to
 * on_result with a negative status; pard_map still returns 0.
 * opts and stats may be NULL.
 */
int pard_map(struct pard_client *c, const char *function, pard_input_fn next_input,
             pard_result_fn on_result, void *arg, const struct pard_map_opts *opts,
             struct pard_map_stats *stats);

/*
 * pard_map_array - run `function` over n items of fixed size, with results
 * of fixed size: the cheapest way to map many short tasks. Task i's input
 * is the item_size bytes at (const char *)items + i * item_size (item_size
 * 0: no bytes, the task has its index, pard_out_task_index); its result,
 * exactly result_size bytes (0: none), goes to (char *)results +
 * i * result_size. Items go to the workers and results come back a batch
 * at a time, copied as blocks: nothing on this side runs once per task but
 * its bookkeeping, and a worker calls the function once per item.
 *
 * A task that fails (pard_out_error, a non-zero return, a crash, a time
 * limit) or writes other than result_size bytes leaves its result alone
 * and goes to on_error with its message (cut at 1 KiB), in input order unless
 * opts.unordered; a non-zero return from on_error cancels the map, which
 * returns that value. With on_error NULL the first failure (in input
 * order; with opts.unordered, the first to come back) stops the map: it returns -PARD_ETASK, and
 * pard_last_error() names the task and says why. Items are at most half the job's input arena (2
 * MiB by default), results at most a quarter of a lane's output arena (128 KiB), else
 * -PARD_ETOOBIG. Otherwise as pard_map (opts.total is n).
 */
int pard_map_array(struct pard_client *c, const char *function, const void *items, size_t item_size,
                   size_t n, void *results, size_t result_size, pard_result_fn on_error, void *arg,
                   const struct pard_map_opts *opts, struct pard_map_stats *stats);

/*
 * pard_cancel - ask the running pard_map on c to stop; it returns
 * -PARD_ECANCELED soon after. Called between maps, it cancels the next
 * one as soon as it starts. Any thread; async-signal-safe.
 */
void pard_cancel(struct pard_client *c);

#ifdef __cplusplus
}
#endif
#endif /* PARD_PARD_H */
