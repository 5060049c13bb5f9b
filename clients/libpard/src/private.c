/*
 * private.c — pard_open_private: a daemon and workers of this program's
 * own, for maps that need no set-up.
 *
 * Owns: finding the pard binary, starting it on a private socket, forking
 * the workers, and stopping all of them at disconnect. Every child dies
 * with us (PR_SET_PDEATHSIG), so a crashed program leaves nothing behind.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* Where pard may be, in order: $PARD_DAEMON, the build tree, the install. */
static const char *find_daemon(void)
{
    const char *env = getenv("PARD_DAEMON");
    if (env && *env)
        return env;
#ifdef PARD_BUILD_DAEMON
    if (access(PARD_BUILD_DAEMON, X_OK) == 0)
        return PARD_BUILD_DAEMON;
#endif
#ifdef PARD_INSTALL_DAEMON
    if (access(PARD_INSTALL_DAEMON, X_OK) == 0)
        return PARD_INSTALL_DAEMON;
#endif
    return "pard"; /* execvp searches PATH */
}

static void reap(pid_t pid, int grace_ms)
{
    int status;
    for (int t = 0; t < grace_ms / 10; t++) {
        if (waitpid(pid, &status, WNOHANG) != 0)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

/* Fork one worker serving fns on sock; it dies with `parent`. */
static pid_t fork_worker(const char *sock, const struct pard_function *fns, size_t nfns,
                         pid_t parent)
{
    pid_t w = fork();
    if (w == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        struct pard_worker_opts o = {.socket_path = sock, .name = "private-worker"};
        _exit(pard_worker_run(fns, nfns, &o) == 0 ? 0 : 1);
    }
    return w;
}

#define RESPAWN_GAP_NS (100 * 1000000LL)

void pard__private_respawn(struct pard_client *c)
{
    if (c->private_daemon <= 0 || !c->private_workers || getpid() != c->private_parent)
        return;
    int64_t now = pard_now_ns();
    if (now - c->private_respawn_ns < RESPAWN_GAP_NS)
        return;
    for (unsigned i = 0; i < c->nprivate_workers; i++) {
        int status;
        if (c->private_workers[i] <= 0 ||
            waitpid(c->private_workers[i], &status, WNOHANG) != c->private_workers[i])
            continue;
        char sock[160];
        snprintf(sock, sizeof(sock), "%s/pard.sock", c->private_dir);
        pid_t w = fork_worker(sock, c->private_fns, c->private_nfns, c->private_parent);
        fprintf(stderr, "pard: private worker %d %s %d; %s\n", (int)c->private_workers[i],
                WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                w > 0 ? "started another" : "cannot start another");
        c->private_workers[i] = w > 0 ? w : 0;
        c->private_respawn_ns = now;
        return; /* one per gap: a worker that dies at once cannot fork-bomb */
    }
}

void pard__stop_private(struct pard_client *c)
{
    /* SIGTERM is pard's clean shutdown: it tells the workers, which end. */
    kill(c->private_daemon, SIGTERM);
    reap(c->private_daemon, 5000);
    for (unsigned i = 0; i < c->nprivate_workers; i++)
        if (c->private_workers[i] > 0)
            reap(c->private_workers[i], 2000);
    free(c->private_workers);
    c->private_workers = NULL;
    c->private_daemon = 0;
    char path[128];
    snprintf(path, sizeof(path), "%s/pard.sock.lock", c->private_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/pard.sock", c->private_dir);
    unlink(path);
    rmdir(c->private_dir);
}

int pard_open_private(struct pard_client **out, const struct pard_function *fns, size_t nfns,
                      unsigned nworkers)
{
    *out = NULL;
    if (nworkers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = n > 0 ? (unsigned)n : 1;
    }
    char dir[64] = "/tmp/pard-private-XXXXXX", sock[128];
    if (!mkdtemp(dir))
        return pard__set_error(NULL, -errno, "cannot create a private directory: %s",
                               strerror(errno));
    snprintf(sock, sizeof(sock), "%s/pard.sock", dir);
    const char *daemon = find_daemon();
    pid_t parent = getpid();
    pid_t dpid = fork();
    if (dpid < 0) {
        rmdir(dir);
        return pard__set_error(NULL, -errno, "fork: %s", strerror(errno));
    }
    if (dpid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        execlp(daemon, daemon, "--socket", sock, "--log-level", "warn", (char *)NULL);
        fprintf(stderr, "pard: cannot run %s: %s (set PARD_DAEMON to the pard binary)\n", daemon,
                strerror(errno));
        _exit(127);
    }
    /* Wait for the socket (5 s at most), watching that pard did not die. */
    struct stat st;
    int waited = 0;
    while (stat(sock, &st) != 0 && waited < 5000) {
        int status;
        if (waitpid(dpid, &status, WNOHANG) == dpid) {
            rmdir(dir);
            return pard__set_error(NULL, -ENOENT,
                                   "the private pard (%s) exited at start; is pard installed, "
                                   "or PARD_DAEMON set?",
                                   daemon);
        }
        usleep(5000);
        waited += 5;
    }
    struct pard_client *c = NULL;
    pid_t *workers = calloc(nworkers, sizeof(pid_t));
    int rc = workers ? 0 : -ENOMEM;
    for (unsigned i = 0; i < nworkers && rc == 0; i++) {
        pid_t w = fork_worker(sock, fns, nfns, parent);
        if (w < 0) {
            rc = -errno;
            break;
        }
        workers[i] = w;
    }
    if (rc == 0)
        rc = pard_connect(&c, sock);
    if (c) {
        c->private_daemon = dpid;
        c->private_workers = workers;
        c->nprivate_workers = nworkers;
        snprintf(c->private_dir, sizeof(c->private_dir), "%s", dir);
        c->private_fns = fns;
        c->private_nfns = nfns;
        c->private_parent = parent;
    }
    /* Wait until every worker has registered, so the first map has them. */
    if (rc == 0) {
        struct pard_msg *m = c->msg;
        uint64_t have = 0;
        for (int t = 0; t < 2000 && have < nworkers; t++) {
            pard_msg_init(m, PARD_MSG_STATS);
            if ((rc = pard__send(c, m, -1)) != 0 || (rc = pard__recv(c, 2000, NULL)) != 0)
                break;
            if (m->type == PARD_MSG_STATS_REPLY)
                have = m->stats_reply.workers;
            if (have < nworkers)
                usleep(5000);
        }
        if (rc == 0 && have < nworkers)
            rc = pard__set_error(c, -ETIMEDOUT,
                                 "only %llu of %u workers registered within 10 s (see their "
                                 "messages above)",
                                 (unsigned long long)have, nworkers);
    }
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof(why), "%s", pard_last_error());
        if (c) {
            pard_disconnect(c);
        } else {
            struct pard_client tmp = {.private_daemon = dpid,
                                      .private_workers = workers,
                                      .nprivate_workers = workers ? nworkers : 0};
            snprintf(tmp.private_dir, sizeof(tmp.private_dir), "%s", dir);
            pard__stop_private(&tmp);
        }
        return pard__set_error(NULL, rc, "cannot start a private pard: %s", why);
    }
    *out = c;
    return 0;
}
