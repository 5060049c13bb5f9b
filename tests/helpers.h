/*
 * helpers.h — shared helpers for pard's Criterion tests: forking child
 * processes that report failure through their exit status, and shared
 * anonymous memory for them to share.
 */
#ifndef PARD_TEST_HELPERS_H
#define PARD_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Shared anonymous memory visible to forked children. */
static inline void *test_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert(p != MAP_FAILED, "mmap of %zu shared bytes failed", size);
    return p;
}

/*
 * test_fork - run fn(arg, i) in a child process that exits with its
 * return value (0 = success). The child dies with its parent (PDEATHSIG),
 * so a failed test never leaves processes behind. Returns the pid.
 */
static inline pid_t test_fork(int (*fn)(void *arg, int i), void *arg, int i)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* No Criterion calls in the child: with --full-stats even a passing
         * cr_assert talks to the runner over nanomsg, whose threads did not
         * survive fork(), and the child would hang there. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) /* the parent died before prctl */
            _exit(1);
        _exit(fn(arg, i));
    }
    cr_assert(pid > 0, "fork failed");
    return pid;
}

/* test_wait_ok - wait for pid and assert it exited with status 0. */
static inline void test_wait_ok(pid_t pid, const char *what)
{
    int status = 0;
    cr_assert(waitpid(pid, &status, 0) == pid, "waitpid(%s) failed", what);
    cr_assert(WIFEXITED(status), "%s died with signal %d", what,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert(WEXITSTATUS(status) == 0, "%s failed with exit status %d", what, WEXITSTATUS(status));
}

#endif

/* ----------------------------------------------------------------------
 * A real pard daemon and real workers, for integration tests.
 * ---------------------------------------------------------------------- */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pard/ipc.h"

#define TEST_PARD   PARD_BUILD_DIR "/daemon/pard"
#define TEST_WORKER PARD_BUILD_DIR "/clients/pard-example-worker"
#define TEST_PARCTL PARD_BUILD_DIR "/clients/parctl"

struct test_daemon {
    char dir[64];     /* private temp directory */
    char socket[128]; /* its socket */
    pid_t pid;        /* the daemon */
    pid_t workers[16];
    int nworkers;
};

/* Spawn argv[0] with argv, stdout/stderr inherited; dies with the test. */
static inline pid_t test_spawn(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], argv);
        _exit(127);
    }
    cr_assert(pid > 0, "fork failed");
    return pid;
}

/* Wait until the daemon's socket accepts connections (10 s at most). */
/* Whether pid's main thread waits in epoll: pard's event loop is running
 * (and idle). */
static inline bool test_in_epoll(pid_t pid)
{
    char path[64], chan[64] = "";
    snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t k = fread(chan, 1, sizeof(chan) - 1, f);
    chan[k] = 0;
    fclose(f);
    return strstr(chan, "epoll") != NULL;
}

/* Ready: the socket exists and (2 s at most) pard waits in its event loop.
 * A test that stops pard at once then sends its SIGTERM to a running loop:
 * ThreadSanitizer can lose a signal that arrives during start-up. */
static inline void test_daemon_wait_ready(struct test_daemon *d)
{
    for (int i = 0; i < 1000; i++) {
        struct stat st;
        if (stat(d->socket, &st) == 0 && S_ISSOCK(st.st_mode)) {
            for (int t = 0; t < 500 && !test_in_epoll(d->pid); t++)
                usleep(4000);
            return;
        }
        int status;
        cr_assert(waitpid(d->pid, &status, WNOHANG) == 0, "pard exited while starting");
        usleep(10000);
    }
    cr_assert_fail("pard did not create %s within 10 s", d->socket);
}

/* test_daemon_start_args - start pard with extra arguments (NULL-ended). */
static inline void test_daemon_start_args(struct test_daemon *d, char *const extra[])
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/pard-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d->dir));
    snprintf(d->socket, sizeof(d->socket), "%s/pard.sock", d->dir);
    char *argv[32] = {TEST_PARD, "--socket", d->socket, "--log-level", "warn"};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    d->pid = test_spawn(argv);
    test_daemon_wait_ready(d);
}

static inline void test_daemon_start(struct test_daemon *d)
{
    test_daemon_start_args(d, NULL);
}

/* test_worker_start - start one example worker against d. */
static inline pid_t test_worker_start(struct test_daemon *d)
{
    char *argv[] = {TEST_WORKER, "--socket", d->socket, NULL};
    pid_t pid = test_spawn(argv);
    if (d->nworkers < 16)
        d->workers[d->nworkers++] = pid;
    return pid;
}

/* test_daemon_stop - SIGTERM the daemon, expect a clean exit, reap workers
 * (which end when the daemon goes) and remove the directory. */
static inline void test_daemon_stop(struct test_daemon *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        test_wait_ok(d->pid, "pard after SIGTERM");
        d->pid = 0;
    }
    for (int i = 0; i < d->nworkers; i++) {
        int status;
        /* Workers leave by themselves once the daemon is gone; give them
         * 5 s, then make sure. */
        for (int t = 0; t < 500 && waitpid(d->workers[i], &status, WNOHANG) == 0; t++)
            usleep(10000);
        kill(d->workers[i], SIGKILL);
        waitpid(d->workers[i], &status, 0);
    }
    d->nworkers = 0;
    struct stat st;
    cr_expect(stat(d->socket, &st) != 0, "pard left its socket behind");
    char lock[160];
    snprintf(lock, sizeof(lock), "%s.lock", d->socket);
    unlink(lock);
    rmdir(d->dir);
}
