/*
 * harness.c — a private pard for the benchmarks that run pard itself
 * (overhead, scaling, oversub): find the daemon binary, start it on a
 * socket in a fresh temp directory, start parbench workers (fork + exec of
 * our own executable with `worker`), wait until they are registered and
 * idle, run maps, and stop everything cleanly.
 *
 * Also the `parbench worker` subcommand: a pard worker serving
 *   busy  input: a count of pb_busy iterations, 8 bytes (host order) or
 *         decimal text; output: nothing
 *   noop  input ignored; output: nothing
 *
 * Must not: leave processes or files behind. Children get PDEATHSIG, the
 * temp directory is removed, and the daemon removes its own socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "pard/proto.h"

/* ----------------------------------------------------------------------
 * The worker subcommand
 * ---------------------------------------------------------------------- */

static int fn_noop(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    return 0;
}

static bool all_digits(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return len > 0;
}

static int fn_busy(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    uint64_t iters;
    if (len == 8 && !all_digits(in, len)) {
        memcpy(&iters, in, 8);
    } else if (len > 0 && len < 21 && all_digits(in, len)) {
        char buf[24];
        memcpy(buf, in, len);
        buf[len] = '\0';
        iters = strtoull(buf, NULL, 10);
    } else {
        return pard_out_error(out,
                              "busy: expected a count of iterations (8 bytes, or decimal "
                              "text), got %zu bytes",
                              len);
    }
    pb_busy(iters);
    return 0;
}

int pb_worker_main(int argc, char **argv)
{
    static const struct pard_function fns[] = {{"busy", fn_busy}, {"noop", fn_noop}};
    struct pard_worker_opts wo = {.name = "parbench-worker"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            wo.socket_path = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: parbench worker [--socket PATH]\n"
                   "A pard worker for parbench's benchmarks. Serves:\n"
                   "  busy   input: a count of busy-loop iterations (8 bytes, or decimal text)\n"
                   "  noop   does nothing\n"
                   "until the daemon (--socket, else $PARD_SOCKET, else the default) stops.\n");
            return 0;
        } else {
            fprintf(stderr, "parbench worker: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    int rc = pard_worker_run(fns, sizeof(fns) / sizeof(fns[0]), &wo);
    /* The daemon going away is how a benchmark's private pard ends. */
    if (rc != 0 && rc != -PARD_EDAEMON) {
        fprintf(stderr, "parbench worker: %s\n",
                *pard_last_error() ? pard_last_error() : pard_strerror(rc));
        return 1;
    }
    return 0;
}

/* ----------------------------------------------------------------------
 * Finding programs
 * ---------------------------------------------------------------------- */

static bool executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static int self_exe(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* The pard daemon: ../daemon/pard beside our executable (a build tree),
 * pard or ../sbin/pard beside it (installed), then $PARD_DAEMON, then the
 * PATH. */
static int find_daemon(char *out, size_t len)
{
    char self[PATH_MAX];
    if (self_exe(self, sizeof(self)) == 0) {
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            int n = snprintf(out, len, "%s/../daemon/pard", self);
            if (n > 0 && (size_t)n < len && executable(out))
                return 0;
            n = snprintf(out, len, "%s/pard", self); /* installed side by side */
            if (n > 0 && (size_t)n < len && executable(out))
                return 0;
            n = snprintf(out, len, "%s/../sbin/pard", self); /* installed: bin/ and sbin/ */
            if (n > 0 && (size_t)n < len && executable(out))
                return 0;
        }
    }
    const char *env = getenv("PARD_DAEMON");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        if (executable(out))
            return 0;
        fprintf(stderr, "parbench: $PARD_DAEMON is %s, which is not an executable file\n", env);
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < len - 8) {
            snprintf(out, len, "%.*s/pard", (int)n, path);
            if (executable(out))
                return 0;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return -1;
}

/* ----------------------------------------------------------------------
 * Processes
 * ---------------------------------------------------------------------- */

/* fork + exec argv with stdout sent to stderr (stdout carries our report);
 * the child dies with us. */
static pid_t spawn(char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(STDERR_FILENO, STDOUT_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            close(devnull);
        }
        execv(argv[0], argv);
        fprintf(stderr, "parbench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Ask the daemon for its stats: registered and idle workers. */
static int daemon_stats(const char *socket, uint64_t *workers, uint64_t *idle)
{
    struct pard_client *c;
    int rc = pard_connect_control(&c, socket);
    if (rc != 0)
        return rc;
    struct pard_msg *m = malloc(sizeof(*m));
    struct pard_frame_reader r;
    if (!m) {
        pard_disconnect(c);
        return -ENOMEM;
    }
    pard_frame_reader_init(&r, 0);
    pard_msg_init(m, PARD_MSG_STATS);
    rc = pard_sock_send_msg(pard_client_fd(c), m, -1);
    if (rc == 0)
        rc = pard_sock_recv_msg(pard_client_fd(c), &r, m, 30000, NULL);
    if (rc == 0 && m->type != PARD_MSG_STATS_REPLY)
        rc = -PARD_EPROTO;
    if (rc == 0) {
        *workers = m->stats_reply.workers;
        *idle = m->stats_reply.idle_workers;
    }
    pard_frame_reader_destroy(&r);
    free(m);
    pard_disconnect(c);
    return rc;
}

/*
 * How long the daemon may take to answer and the workers to register. Not
 * a measurement: only a guard against a daemon or worker that will never
 * come, so generous enough for a machine busy with builds and tests (a
 * fork + exec + connect can then take seconds).
 */
#define START_LIMIT_NS (30 * (int64_t)1000000000)

/* Wait until at least `n` workers are registered and idle. */
static int wait_workers(struct pb_pard *p, unsigned n)
{
    uint64_t w = 0, idle = 0;
    int64_t end = pard_now_ns() + START_LIMIT_NS;
    for (int i = 0; pard_now_ns() < end; i++) {
        int rc = daemon_stats(p->socket, &w, &idle);
        if (rc != 0) {
            fprintf(stderr, "parbench: cannot ask pard at %s for its workers: %s\n", p->socket,
                    pard_strerror(rc));
            return -1;
        }
        p->registered = (unsigned)w;
        if (idle >= n)
            return 0;
        if (p->daemon > 0) {
            int status;
            if (waitpid(p->daemon, &status, WNOHANG) == p->daemon) {
                p->daemon = 0;
                fprintf(stderr, "parbench: the pard daemon exited while starting\n");
                return -1;
            }
        }
        pb_sleep_ns(i < 100 ? 1000000 : 5000000);
    }
    fprintf(stderr, "parbench: only %llu of %u workers are idle at %s after %d s%s\n",
            (unsigned long long)idle, n, p->socket, (int)(START_LIMIT_NS / 1000000000),
            p->daemon ? "" : " (with --socket, start enough `parbench worker` processes)");
    return -1;
}

int pb_pard_start(struct pb_pard *p, const struct pb_opts *o, unsigned nworkers)
{
    memset(p, 0, sizeof(*p));
    if (nworkers > PB_MAX_WORKERS)
        nworkers = PB_MAX_WORKERS;
    if (o->socket) {
        snprintf(p->socket, sizeof(p->socket), "%s", o->socket);
    } else {
        char daemon[PATH_MAX], self[PATH_MAX];
        if (find_daemon(daemon, sizeof(daemon)) != 0) {
            fprintf(stderr, "parbench: cannot find the pard daemon: not beside parbench "
                            "(../daemon/pard), not in $PARD_DAEMON, not on the PATH; build "
                            "it, or point --socket at a running pard with parbench workers\n");
            return -1;
        }
        if (self_exe(self, sizeof(self)) != 0) {
            fprintf(stderr, "parbench: cannot find my own executable (/proc/self/exe)\n");
            return -1;
        }
        snprintf(p->dir, sizeof(p->dir), "/tmp/parbench-XXXXXX");
        if (!mkdtemp(p->dir)) {
            fprintf(stderr, "parbench: cannot create a temp directory: %s\n", strerror(errno));
            p->dir[0] = '\0';
            return -1;
        }
        snprintf(p->socket, sizeof(p->socket), "%s/pard.sock", p->dir);
        char *dargv[] = {daemon, "--socket", p->socket, "--log-level", "error", NULL};
        p->daemon = spawn(dargv);
        if (p->daemon < 0) {
            p->daemon = 0;
            fprintf(stderr, "parbench: fork: %s\n", strerror(errno));
            pb_pard_stop(p);
            return -1;
        }
        /* The daemon is up once it answers on its socket (the file appears
         * at bind, a moment before it listens). */
        bool up = false;
        int64_t end = pard_now_ns() + START_LIMIT_NS;
        while (!up && pard_now_ns() < end) {
            uint64_t w, idle;
            up = daemon_stats(p->socket, &w, &idle) == 0;
            int status;
            if (!up && waitpid(p->daemon, &status, WNOHANG) == p->daemon) {
                p->daemon = 0;
                fprintf(stderr, "parbench: %s exited while starting\n", daemon);
                pb_pard_stop(p);
                return -1;
            }
            if (!up)
                pb_sleep_ns(5000000);
        }
        if (!up) {
            fprintf(stderr, "parbench: %s did not answer on %s within %d s\n", daemon, p->socket,
                    (int)(START_LIMIT_NS / 1000000000));
            pb_pard_stop(p);
            return -1;
        }
        for (unsigned i = 0; i < nworkers; i++) {
            char *wargv[] = {self, "worker", "--socket", p->socket, NULL};
            pid_t pid = spawn(wargv);
            if (pid < 0) {
                fprintf(stderr, "parbench: fork: %s\n", strerror(errno));
                pb_pard_stop(p);
                return -1;
            }
            p->workers[p->nworkers++] = pid;
        }
    }
    if (wait_workers(p, nworkers) != 0) {
        pb_pard_stop(p);
        return -1;
    }
    int rc = pard_connect(&p->c, p->socket);
    if (rc != 0) {
        fprintf(stderr, "parbench: cannot connect to pard at %s: %s\n", p->socket,
                pard_last_error());
        p->c = NULL;
        pb_pard_stop(p);
        return -1;
    }
    return 0;
}

void pb_pard_stop(struct pb_pard *p)
{
    if (p->c) {
        pard_disconnect(p->c);
        p->c = NULL;
    }
    if (p->daemon > 0) {
        kill(p->daemon, SIGTERM);
        int status;
        /* A clean shutdown takes milliseconds; give it 5 s, then make sure. */
        int i = 0;
        while (waitpid(p->daemon, &status, WNOHANG) == 0 && i++ < 500)
            pb_sleep_ns(10000000);
        if (i > 500) {
            kill(p->daemon, SIGKILL);
            waitpid(p->daemon, &status, 0);
        }
        p->daemon = 0;
    }
    for (unsigned k = 0; k < p->nworkers; k++) {
        int status;
        int i = 0;
        /* Workers leave by themselves once the daemon is gone. */
        while (waitpid(p->workers[k], &status, WNOHANG) == 0 && i++ < 300)
            pb_sleep_ns(10000000);
        if (i > 300) {
            kill(p->workers[k], SIGKILL);
            waitpid(p->workers[k], &status, 0);
        }
    }
    p->nworkers = 0;
    if (p->dir[0]) {
        char lock[200];
        snprintf(lock, sizeof(lock), "%s.lock", p->socket);
        unlink(lock); /* the daemon's lock file, if it left it */
        unlink(p->socket);
        rmdir(p->dir);
        p->dir[0] = '\0';
    }
}

/* ----------------------------------------------------------------------
 * Maps
 * ---------------------------------------------------------------------- */

struct feed {
    struct pb_map_run *run;
    struct pard_client *c;
    uint64_t iters;
    uint64_t delivered;
    uint64_t failed;
    int64_t deadline_ns; /* run->limit_ms after the start; 0 = none */
    bool cancelled;      /* we called pard_cancel() */
    int first_error;
    char message[200];
};

static int next_busy(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct feed *f = arg;
    if (index >= f->run->tasks)
        return 0;
    *data = &f->iters;
    *len = 8;
    return 1;
}

static int next_noop(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct feed *f = arg;
    if (index >= f->run->tasks)
        return 0;
    *data = "";
    *len = 0;
    return 1;
}

static int on_result(void *arg, const struct pard_result *r)
{
    struct feed *f = arg;
    f->delivered++;
    if (r->status != 0) {
        if (f->failed++ == 0) {
            f->first_error = r->status;
            snprintf(f->message, sizeof(f->message), "%.*s", (int)(r->len > 150 ? 150 : r->len),
                     (const char *)r->data);
        }
    }
    /*
     * The time limit is checked here, inside pard_map, and nowhere else:
     * - a map stopped at its limit has delivered at least one result, so
     *   its rate is a number however busy the machine is;
     * - pard_cancel() called from inside the map applies to this map and
     *   is spent when it returns. From another thread it could land just
     *   after pard_map returned, and would then cancel the next map.
     */
    if (f->deadline_ns && !f->cancelled && pard_now_ns() >= f->deadline_ns) {
        f->cancelled = true;
        pard_cancel(f->c);
    }
    return 0;
}

/* Wait until `n` workers are idle again: a worker that just served the
 * previous job detaches asynchronously, and a job submitted before it is
 * back would start with fewer lanes. */
static void wait_idle(struct pb_pard *p, unsigned n)
{
    for (int i = 0; i < 2000; i++) {
        uint64_t w, idle;
        if (daemon_stats(p->socket, &w, &idle) != 0 || idle >= n)
            return;
        pb_sleep_ns(500000);
    }
}

/* What a map's return and its results say, printed when it failed. */
static int map_outcome(struct pb_map_run *run, const struct feed *f, int rc)
{
    run->delivered = f->delivered;
    run->failed = f->failed;
    if (f->cancelled && rc == -PARD_ECANCELED) {
        run->cancelled = true;
        return f->failed ? -PARD_ETASK : 0;
    }
    if (rc != 0) {
        fprintf(stderr, "parbench: pard map failed: %s\n",
                *pard_last_error() ? pard_last_error() : pard_strerror(rc));
        return rc;
    }
    if (f->failed) {
        fprintf(stderr, "parbench: %llu of %llu tasks failed; the first: %s (%s)\n",
                (unsigned long long)f->failed, (unsigned long long)run->tasks, f->message,
                pard_strerror(f->first_error));
        return -PARD_ETASK;
    }
    if (f->delivered != run->tasks) {
        fprintf(stderr, "parbench: %llu results for %llu tasks\n", (unsigned long long)f->delivered,
                (unsigned long long)run->tasks);
        return -PARD_ECORRUPT;
    }
    return 0;
}

/* The array form: the items array is made inside the timing, as Pool.map
 * makes its list of the iterable it is given. */
static int map_array(struct pb_pard *p, struct pb_map_run *run, struct feed *f,
                     const struct pard_map_opts *mo)
{
    int64_t t0 = pard_now_ns();
    uint64_t *items = malloc((run->tasks ? run->tasks : 1) * sizeof(*items));
    if (!items)
        return -ENOMEM;
    for (uint64_t i = 0; i < run->tasks; i++)
        items[i] = run->fn == PB_FN_BUSY ? run->iters : i;
    struct pard_map_stats st;
    int rc = pard_map_array(p->c, run->fn == PB_FN_BUSY ? "busy" : "noop", items, sizeof(*items),
                            run->tasks, NULL, 0, on_result, f, mo, &st);
    free(items);
    run->elapsed_ns = (double)(pard_now_ns() - t0);
    f->delivered = st.tasks;
    return rc;
}

int pb_pard_map(struct pb_pard *p, struct pb_map_run *run)
{
    unsigned want = run->max_workers ? run->max_workers : p->registered;
    if (want > p->registered)
        want = p->registered;
    wait_idle(p, want);
    struct feed f = {.run = run, .c = p->c, .iters = run->iters};
    struct pard_map_opts mo = {.unordered = run->unordered,
                               .batch = run->batch,
                               .wait_mode = run->mode,
                               .max_workers = run->max_workers};
    struct pard_map_stats st;
    run->cancelled = false;
    if (run->array) {
        int rc = map_array(p, run, &f, &mo);
        return map_outcome(run, &f, rc);
    }
    int64_t t0 = pard_now_ns();
    if (run->limit_ms > 0)
        f.deadline_ns = t0 + (int64_t)(run->limit_ms * 1e6);
    int rc = pard_map(p->c, run->fn == PB_FN_BUSY ? "busy" : "noop",
                      run->fn == PB_FN_BUSY ? next_busy : next_noop, on_result, &f, &mo, &st);
    run->elapsed_ns = (double)(pard_now_ns() - t0);
    return map_outcome(run, &f, rc);
}
