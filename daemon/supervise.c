/*
 * supervise.c — `--spawn N --worker CMD`: start N worker processes, keep
 * them running, stop them at shutdown.
 *
 * Starting: uv_spawn with CMD split on blanks into argv — no shell, so no
 * quoting surprises and no shell process between us and the worker — or,
 * with --worker-shell, `/bin/sh -c CMD`. The environment is ours with
 * PARD_SOCKET set to our socket, so a worker finds this daemon whatever
 * the caller's environment says. stdin is /dev/null; stdout and stderr
 * are ours. Every descriptor the daemon holds is close-on-exec, so a
 * worker inherits none of them (libuv also resets signal dispositions in
 * the child).
 *
 * Restarting: a worker that exits or crashes (or that we killed for a time
 * limit) is started again after a back-off: 100 ms, doubling up to 5 s,
 * back to 100 ms once a worker has run for 10 s, or when it registered and
 * then exited 0 (a worker recycled by --max-tasks: no failure to slow). A child counts as
 * "starting" from its spawn until a worker connection with its pid
 * registers; while any child is starting, a submit for a function nobody
 * serves yet waits (jobs.c) instead of failing at once.
 *
 * Stopping: SIGTERM to every child, SIGKILL after PARD__STOP_MS to any
 * that is left; once all have exited, the daemon finishes its shutdown.
 *
 * Must not: touch sessions or jobs (a worker's death reaches jobs.c by
 * its socket closing, like any other worker's).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define HEALTHY_NS     (10LL * 1000000000LL) /* a run this long resets the back-off */

extern char **environ;

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal);

static void on_proc_closed(uv_handle_t *h)
{
    struct pard__child *c = h->data;
    c->proc_open = false;
}

static int spawn_child(struct pard__child *c)
{
    struct pard__daemon *d = c->d;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = STDOUT_FILENO},
        {.flags = UV_INHERIT_FD, .data.fd = STDERR_FILENO},
    };
    uv_process_options_t o = {
        .exit_cb = on_exit_cb,
        .file = d->worker_argv[0],
        .args = d->worker_argv,
        .env = d->worker_env,
        .stdio_count = 3,
        .stdio = stdio,
    };
    memset(&c->proc, 0, sizeof(c->proc));
    int rc = uv_spawn(&d->loop, &c->proc, &o);
    c->proc.data = c;
    c->proc_open = true;
    if (rc != 0) {
        /* The handle was initialised even though the spawn failed. */
        uv_close((uv_handle_t *)&c->proc, on_proc_closed);
        return rc;
    }
    c->pid = c->proc.pid;
    c->running = true;
    c->registered = false;
    c->started_ns = pard_now_ns();
    pard__log_info("started worker %u (pid %d): %s", c->index, (int)c->pid, d->cfg.worker_cmd);
    return 0;
}

static void on_restart(uv_timer_t *t);

static void schedule_restart(struct pard__child *c)
{
    uint32_t delay = c->backoff_ms;
    c->backoff_ms = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
    c->restart_pending = true;
    uv_timer_start(&c->timer, on_restart, delay, 0);
}

static void on_restart(uv_timer_t *t)
{
    struct pard__child *c = t->data;
    struct pard__daemon *d = c->d;
    c->restart_pending = false;
    if (d->stopping)
        return;
    if (c->proc_open) { /* the old handle is still closing: very soon */
        c->restart_pending = true;
        uv_timer_start(&c->timer, on_restart, 10, 0);
        return;
    }
    c->restarts++;
    int rc = spawn_child(c);
    if (rc != 0) {
        pard__log_error("cannot restart worker %u (%s): %s; trying again in %u ms", c->index,
                        d->cfg.worker_cmd, uv_strerror(rc), c->backoff_ms);
        schedule_restart(c);
    }
}

static bool any_running(const struct pard__daemon *d)
{
    for (uint32_t i = 0; i < d->nchildren; i++)
        if (d->children[i].running)
            return true;
    return false;
}

static void stop_done(struct pard__daemon *d)
{
    if (d->stop_timer_open) {
        d->stop_timer_open = false;
        uv_close((uv_handle_t *)&d->stop_timer, NULL);
    }
    pard__shutdown_finish(d);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    struct pard__child *c = p->data;
    struct pard__daemon *d = c->d;
    int64_t ran = pard_now_ns() - c->started_ns;
    /* A worker that registered and then exited 0 left on purpose (its
     * --max-tasks were served): a recycle, not a failure. */
    bool recycled = c->registered && !term_signal && status == 0;
    c->running = false;
    c->registered = false;
    uv_close((uv_handle_t *)p, on_proc_closed);
    enum pard__log_level level = d->stopping || recycled ? PARD__LOG_INFO : PARD__LOG_WARN;
    if (term_signal)
        pard__log(level, "worker %u (pid %d) was killed by signal %d (%s) after %lld ms", c->index,
                  (int)c->pid, term_signal, strsignal(term_signal), (long long)(ran / 1000000));
    else
        pard__log(level, "worker %u (pid %d) exited with status %lld after %lld ms", c->index,
                  (int)c->pid, (long long)status, (long long)(ran / 1000000));
    if (d->stopping) {
        if (!any_running(d))
            stop_done(d);
        return;
    }
    if (ran >= HEALTHY_NS || recycled)
        c->backoff_ms = BACKOFF_MIN_MS;
    pard__log_info("restarting worker %u in %u ms", c->index, c->backoff_ms);
    schedule_restart(c);
}

/* ======================================================================
 * Setup
 * ====================================================================== */

static int build_argv(struct pard__daemon *d)
{
    const char *cmd = d->cfg.worker_cmd;
    size_t len = strlen(cmd);
    if (d->cfg.worker_shell) {
        d->worker_argv = calloc(4, sizeof(char *));
        if (!d->worker_argv)
            return -ENOMEM;
        d->worker_argv[0] = "/bin/sh";
        d->worker_argv[1] = "-c";
        d->worker_argv[2] = (char *)cmd;
        return 0;
    }
    d->worker_argv_buf = malloc(len + 1);
    d->worker_argv = calloc(len / 2 + 2, sizeof(char *));
    if (!d->worker_argv_buf || !d->worker_argv)
        return -ENOMEM;
    memcpy(d->worker_argv_buf, cmd, len + 1);
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(d->worker_argv_buf, " \t\n", &save); tok;
         tok = strtok_r(NULL, " \t\n", &save))
        d->worker_argv[n++] = tok;
    d->worker_argv[n] = NULL;
    return n > 0 ? 0 : -EINVAL;
}

static int build_env(struct pard__daemon *d)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    d->worker_env = calloc(n + 2, sizeof(char *));
    if (!d->worker_env)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "PARD_SOCKET=", 12) != 0)
            d->worker_env[k++] = environ[i]; /* borrowed: environ outlives us */
    size_t sz = strlen(d->socket_path) + sizeof("PARD_SOCKET=");
    char *e = malloc(sz);
    if (!e)
        return -ENOMEM;
    snprintf(e, sz, "PARD_SOCKET=%s", d->socket_path);
    d->worker_env_own = e;
    d->worker_env[k++] = e;
    d->worker_env[k] = NULL;
    return 0;
}

int pard__supervise_start(struct pard__daemon *d)
{
    if (d->cfg.spawn == 0)
        return 0;
    int rc = build_argv(d);
    if (rc == 0)
        rc = build_env(d);
    if (rc != 0) {
        pard__log_error("--worker '%s': %s", d->cfg.worker_cmd,
                        rc == -EINVAL ? "no command given" : strerror(-rc));
        return rc;
    }
    d->children = calloc(d->cfg.spawn, sizeof(*d->children));
    if (!d->children)
        return -ENOMEM;
    d->nchildren = d->cfg.spawn;
    for (uint32_t i = 0; i < d->nchildren; i++) {
        struct pard__child *c = &d->children[i];
        c->d = d;
        c->index = i;
        c->backoff_ms = BACKOFF_MIN_MS;
        uv_timer_init(&d->loop, &c->timer);
        c->timer.data = c;
    }
    for (uint32_t i = 0; i < d->nchildren; i++) {
        rc = spawn_child(&d->children[i]);
        if (rc != 0) {
            pard__log_error("cannot start the worker command '%s': %s (--worker takes a program "
                            "and its arguments, run without a shell; add --worker-shell to run "
                            "it with /bin/sh -c)",
                            d->cfg.worker_cmd, uv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

bool pard__supervise_starting(const struct pard__daemon *d)
{
    if (d->stopping)
        return false;
    for (uint32_t i = 0; i < d->nchildren; i++) {
        const struct pard__child *c = &d->children[i];
        if (!c->registered && (c->running || c->restart_pending))
            return true;
    }
    return false;
}

struct pard__child *pard__supervise_registered(struct pard__daemon *d, pid_t pid)
{
    for (uint32_t i = 0; i < d->nchildren; i++) {
        struct pard__child *c = &d->children[i];
        if (c->running && c->pid == pid) {
            c->registered = true;
            return c;
        }
    }
    return NULL;
}

static void on_stop_timer(uv_timer_t *t)
{
    pard__supervise_kill_now(t->data);
}

void pard__supervise_kill_now(struct pard__daemon *d)
{
    for (uint32_t i = 0; i < d->nchildren; i++) {
        struct pard__child *c = &d->children[i];
        if (c->running) {
            pard__log_warn("worker %u (pid %d) did not stop; killing it", c->index, (int)c->pid);
            uv_process_kill(&c->proc, SIGKILL);
        }
    }
}

void pard__supervise_stop(struct pard__daemon *d)
{
    for (uint32_t i = 0; i < d->nchildren; i++) {
        struct pard__child *c = &d->children[i];
        uv_close((uv_handle_t *)&c->timer, NULL);
        c->restart_pending = false;
        if (c->running)
            uv_process_kill(&c->proc, SIGTERM);
    }
    if (!any_running(d)) {
        stop_done(d);
        return;
    }
    pard__log_info("waiting up to %u ms for the workers started by --spawn to stop", PARD__STOP_MS);
    uv_timer_start(&d->stop_timer, on_stop_timer, PARD__STOP_MS, 0);
}

void pard__supervise_free(struct pard__daemon *d)
{
    /* Of worker_env, only our PARD_SOCKET entry is ours; the rest is environ's. */
    free(d->worker_env_own);
    free(d->worker_env);
    d->worker_env_own = NULL;
    free(d->worker_argv);
    free(d->worker_argv_buf);
    free(d->children);
    d->worker_env = NULL;
    d->worker_argv = NULL;
    d->worker_argv_buf = NULL;
    d->children = NULL;
    d->nchildren = 0;
}
