/*
 * test_daemon.c — the real `pard` binary, started on a temporary socket
 * and spoken to with raw protocol messages: handshakes, refusals, jobs,
 * lanes, deaths, time limits, reports and shutdown.
 *
 * Each test starts its own daemon (PARD_BUILD_DIR "/daemon/pard") in a
 * fresh directory under /tmp, with its log in that directory, and stops it
 * before it ends; a daemon outlives no test (PR_SET_PDEATHSIG). Fake
 * workers are this process or forked children, so they can be killed for
 * real. Nothing here depends on how fast the machine is: every wait polls
 * for a state with a generous deadline.
 *
 * PARD_TEST_VALGRIND=1 runs each daemon under valgrind's memcheck; every
 * test that stops its daemon then also checks that it leaked nothing.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "pard/job.h"
#include "pard/proto.h"

#define PARD_BIN  PARD_BUILD_DIR "/daemon/pard"
#define WAIT_MS   10000 /* the longest any single wait may take */
#define TIMEOUT_S 60

/* ======================================================================
 * Helpers: a daemon
 * ====================================================================== */

struct daemon {
    pid_t pid;
    char dir[64];
    char sock[128];
    char log[128];
};

/* Every daemon a test starts lives here, so that the suite's .fini can
 * kill it and remove its directory even when an assertion cut the test
 * short (the test's own stack is gone by then). */
static struct daemon pool[8];
static unsigned npool;

static struct daemon *daemon_new(void)
{
    cr_assert(npool < sizeof(pool) / sizeof(pool[0]), "too many daemons in one test");
    struct daemon *d = &pool[npool++];
    memset(d, 0, sizeof(*d));
    return d;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int dial(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Run pard with `extra` options (NULL-terminated, may be NULL); do not
 * wait for it. Its stdout and stderr go to d->log. */
static pid_t spawn_pard(const struct daemon *d, const char *const *extra)
{
    const char *argv[40];
    int n = 0;
    /* PARD_TEST_VALGRIND=1 runs every daemon under memcheck: a leak or an
     * error makes its exit status 3, which the tests check. */
    const char *vg = getenv("PARD_TEST_VALGRIND");
    if (vg && *vg && strcmp(vg, "0") != 0) {
        argv[n++] = "valgrind";
        argv[n++] = "-q";
        argv[n++] = "--leak-check=full";
        argv[n++] = "--error-exitcode=3";
    }
    argv[n++] = PARD_BIN;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    for (int i = 0; extra && extra[i] && n < 38; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork failed");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Start pard in d->dir (created when empty) and wait until it accepts. */
static void daemon_start_in(struct daemon *d, const char *const *extra)
{
    if (!d->dir[0]) {
        snprintf(d->dir, sizeof(d->dir), "/tmp/pard-test-XXXXXX");
        cr_assert(mkdtemp(d->dir) != NULL, "mkdtemp: %s", strerror(errno));
        snprintf(d->sock, sizeof(d->sock), "%s/pard.sock", d->dir);
        snprintf(d->log, sizeof(d->log), "%s/pard.log", d->dir);
    }
    d->pid = spawn_pard(d, extra);
    for (int waited = 0;; waited += 10) {
        int status;
        cr_assert(waitpid(d->pid, &status, WNOHANG) == 0, "pard exited at start-up (see %s)",
                  d->log);
        int fd = dial(d->sock);
        if (fd >= 0) {
            close(fd);
            return;
        }
        cr_assert(waited < WAIT_MS, "pard did not start listening on %s", d->sock);
        sleep_ms(10);
    }
}

static void daemon_start(struct daemon *d)
{
    daemon_start_in(d, NULL);
}

/* Wait for the daemon to exit; returns its wait status. */
static int daemon_wait(struct daemon *d)
{
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        cr_assert(r >= 0, "waitpid: %s", strerror(errno));
        if (r == d->pid)
            break;
        cr_assert(waited < 3 * WAIT_MS, "pard (pid %d) did not exit", (int)d->pid);
        sleep_ms(10);
    }
    d->pid = 0;
    return status;
}

static void daemon_term_ok(struct daemon *d)
{
    kill(d->pid, SIGTERM);
    int status = daemon_wait(d);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "pard did not exit 0 after SIGTERM (status 0x%x, see %s)", status, d->log);
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static void wait_log(const struct daemon *d, const char *needle)
{
    for (int waited = 0; !file_contains(d->log, needle); waited += 20) {
        cr_assert(waited < WAIT_MS, "pard never logged \"%s\" (see %s)", needle, d->log);
        sleep_ms(20);
    }
}

static void remove_tree(const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(dp);
    rmdir(dir);
}

/* After each test: kill what is left, remove the directories. */
static void cleanup(void)
{
    for (unsigned i = 0; i < npool; i++) {
        struct daemon *d = &pool[i];
        if (d->pid > 0) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, NULL, 0);
        }
        if (d->dir[0])
            remove_tree(d->dir);
    }
    npool = 0;
}

/* ======================================================================
 * Helpers: a connection
 * ====================================================================== */

struct conn {
    int fd;
    struct pard_frame_reader r;
    struct pard_msg *m;
};

static void conn_raw(struct conn *c, const struct daemon *d)
{
    c->fd = dial(d->sock);
    cr_assert(c->fd >= 0, "connect to %s: %s", d->sock, strerror(-c->fd));
    cr_assert(pard_frame_reader_init(&c->r, PARD_FRAME_MAX_CLIENT) == 0);
    c->m = malloc(sizeof(*c->m));
    cr_assert(c->m != NULL);
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    pard_frame_reader_destroy(&c->r);
    free(c->m);
    c->m = NULL;
}

static void conn_send(struct conn *c, int pass_fd)
{
    int rc = pard_sock_send_msg(c->fd, c->m, pass_fd);
    cr_assert(rc == 0, "send %s: %s", pard_msg_type_name(c->m->type), pard_strerror(rc));
}

/* Receive one message (into c->m); returns 0 or the negative error. */
static int conn_recv(struct conn *c, int *fd)
{
    return pard_sock_recv_msg(c->fd, &c->r, c->m, WAIT_MS, fd);
}

static void conn_expect(struct conn *c, enum pard_msg_type type, int *fd)
{
    int rc = conn_recv(c, fd);
    cr_assert(rc == 0, "waiting for %s: %s", pard_msg_type_name(type), pard_strerror(rc));
    cr_assert(c->m->type == type, "expected %s, got %s%s%s", pard_msg_type_name(type),
              pard_msg_type_name(c->m->type), c->m->type == PARD_MSG_ERROR ? ": " : "",
              c->m->type == PARD_MSG_ERROR ? c->m->error.message : "");
}

static void conn_expect_error(struct conn *c, int code)
{
    conn_expect(c, PARD_MSG_ERROR, NULL);
    cr_assert(c->m->error.code == code, "expected error %d (%s), got %d: %s", code,
              pard_strerror(code), c->m->error.code, c->m->error.message);
}

/* The daemon closed the connection (after anything still queued). */
static void conn_expect_eof(struct conn *c)
{
    int rc = conn_recv(c, NULL);
    cr_assert(rc == -ECONNRESET, "expected the daemon to close the connection, got %s (%s)",
              rc == 0 ? pard_msg_type_name(c->m->type) : "an error", pard_strerror(rc));
}

static void conn_hello(struct conn *c, const struct daemon *d, enum pard_role role)
{
    conn_raw(c, d);
    pard_msg_init(c->m, PARD_MSG_HELLO);
    c->m->hello.role = role;
    c->m->hello.pid = (uint32_t)getpid();
    conn_send(c, -1);
    conn_expect(c, PARD_MSG_WELCOME, NULL);
}

static void conn_register(struct conn *c, const char *fn)
{
    pard_msg_init(c->m, PARD_MSG_REGISTER);
    c->m->reg.nfunctions = 1;
    snprintf(c->m->reg.functions[0], sizeof(c->m->reg.functions[0]), "%s", fn);
    conn_send(c, -1);
}

/* Wait until `n` workers serve fn (register has no reply: we ask). */
static void wait_workers(struct conn *ctl, const char *fn, uint32_t n)
{
    for (int waited = 0;; waited += 10) {
        pard_msg_init(ctl->m, PARD_MSG_LIST_WORKERS);
        conn_send(ctl, -1);
        conn_expect(ctl, PARD_MSG_WORKERS_REPLY, NULL);
        uint32_t have = 0;
        for (uint32_t i = 0; i < ctl->m->workers_reply.nworkers; i++)
            for (uint32_t k = 0; k < ctl->m->workers_reply.workers[i].nfunctions; k++)
                have += strcmp(ctl->m->workers_reply.workers[i].functions[k], fn) == 0;
        if (have >= n)
            return;
        cr_assert(waited < WAIT_MS, "%u workers for %s never registered", n, fn);
        sleep_ms(10);
    }
}

static struct pard_msg_stats_reply get_stats(struct conn *ctl)
{
    pard_msg_init(ctl->m, PARD_MSG_STATS);
    conn_send(ctl, -1);
    conn_expect(ctl, PARD_MSG_STATS_REPLY, NULL);
    return ctl->m->stats_reply;
}

/* Submit fn; returns the job id and attaches *job to its region. */
static uint64_t submit(struct conn *sub, const char *fn, uint32_t timeout_ms, struct pard_job *job)
{
    pard_msg_init(sub->m, PARD_MSG_SUBMIT);
    snprintf(sub->m->submit.function, sizeof(sub->m->submit.function), "%s", fn);
    sub->m->submit.timeout_ms = timeout_ms;
    sub->m->submit.max_lanes = 4;
    sub->m->submit.input_arena = 64 << 10;
    sub->m->submit.output_arena = 64 << 10;
    sub->m->submit.window = 1024;
    conn_send(sub, -1);
    int fd = -1;
    conn_expect(sub, PARD_MSG_JOB, &fd);
    cr_assert(fd >= 0, "the job message came without a descriptor");
    cr_assert_eq(sub->m->job.lanes, 4);
    cr_assert_str_eq(sub->m->job.function, fn);
    uint64_t id = sub->m->job.job_id;
    int rc = pard_job_attach(job, fd);
    cr_assert(rc == 0, "pard_job_attach: %s", pard_strerror(rc));
    close(fd);
    return id;
}

static struct pard_lane_ctl *lane_ctl(const struct pard_job *job, uint32_t i)
{
    struct pard_lane lane;
    int rc = pard_job_lane(job, i, &lane);
    cr_assert(rc == 0, "pard_job_lane(%u): %s", i, pard_strerror(rc));
    return lane.ctl;
}

static void wait_lane_state(struct pard_lane_ctl *ctl, uint32_t state)
{
    for (int waited = 0; atomic_load(&ctl->state) != state; waited++) {
        cr_assert(waited < WAIT_MS, "lane state stayed %u, expected %u", atomic_load(&ctl->state),
                  state);
        sleep_ms(1);
    }
}

/* Count /dev/shm entries that a daemon with this pid created. */
static int shm_entries_of(pid_t pid)
{
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "pard-%d-", (int)pid);
    DIR *dp = opendir("/dev/shm");
    if (!dp)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(dp);
    return n;
}

TestSuite(daemon, .fini = cleanup, .timeout = TIMEOUT_S);

/* ======================================================================
 * Handshake and bad input
 * ====================================================================== */

/* A SIGTERM that arrives as soon as the socket exists (a supervisor that
 * stops pard at once) is a clean shutdown: exit 0, socket and lock file
 * removed. It was the default death while pard was still starting (its
 * handler came after the socket), found by the security test under
 * ASan. The window is short: 50 tries (10 under the sanitizers, whose
 * start-up and exit take a second or more each). */
#ifdef PARD_SANITIZED
#define EARLY_TERM_TRIES 10
#else
#define EARLY_TERM_TRIES 50
#endif
Test(daemon, stops_cleanly_on_a_sigterm_sent_as_soon_as_its_socket_appears, .timeout = 120)
{
#ifdef PARD_TSAN
    /* ThreadSanitizer defers a signal that arrives while pard is starting
     * and, now and then, never delivers it: pard then waits in epoll with
     * its first SIGTERM lost (a second one stops it). Seen in 1 of ~3 runs
     * of this test under TSan only; 50 tries pass in the plain and ASan
     * builds. */
    cr_skip_test("ThreadSanitizer can lose a signal sent during start-up");
#endif
    for (int i = 0; i < EARLY_TERM_TRIES; i++) {
        struct test_daemon d;
        memset(&d, 0, sizeof(d));
        snprintf(d.dir, sizeof(d.dir), "/tmp/pard-test-XXXXXX");
        cr_assert_not_null(mkdtemp(d.dir));
        snprintf(d.socket, sizeof(d.socket), "%s/pard.sock", d.dir);
        char *argv[] = {TEST_PARD, "--socket", d.socket, "--log-level", "error", NULL};
        d.pid = test_spawn(argv);
        for (int t = 0; t < 100000; t++) { /* poll hard: the window is short */
            struct stat st;
            if (stat(d.socket, &st) == 0)
                break;
            if (t % 100 == 99)
                usleep(100);
        }
        kill(d.pid, SIGTERM);
        test_wait_ok(d.pid, "pard after an early SIGTERM"); /* exit status 0 */
        d.pid = 0;
        char lock[160];
        snprintf(lock, sizeof(lock), "%s.lock", d.socket);
        struct stat st;
        cr_assert_neq(stat(d.socket, &st), 0, "try %d: pard left its socket", i);
        cr_assert_neq(stat(lock, &st), 0, "try %d: pard left its lock file", i);
        test_daemon_stop(&d); /* removes the directory */
    }
}

Test(daemon, welcomes_a_client_that_says_hello)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn c;
    conn_hello(&c, d, PARD_ROLE_CONTROL);
    cr_assert_eq(c.m->welcome.daemon_pid, (uint32_t)d->pid);
    cr_assert(c.m->welcome.client_id >= 1);
    cr_assert_str_eq(c.m->welcome.version_string, "pard 0.2.0");
    cr_assert_eq(pard_msg_check_version(c.m), 0);
    conn_close(&c);
    daemon_term_ok(d);
}

Test(daemon, refuses_a_hello_with_another_protocol_version)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn c;
    conn_raw(&c, d);
    pard_msg_init(c.m, PARD_MSG_HELLO);
    c.m->version = PARD_PROTO_VERSION + 1;
    c.m->hello.role = PARD_ROLE_SUBMITTER;
    c.m->hello.pid = (uint32_t)getpid();
    conn_send(&c, -1);
    conn_expect_error(&c, -PARD_EVERSION);
    char theirs[32], ours[32];
    snprintf(theirs, sizeof(theirs), "version %u", PARD_PROTO_VERSION + 1);
    snprintf(ours, sizeof(ours), "version %u", PARD_PROTO_VERSION);
    cr_assert(strstr(c.m->error.message, theirs) && strstr(c.m->error.message, ours),
              "the message should name both versions: %s", c.m->error.message);
    conn_expect_eof(&c);
    conn_close(&c);
    daemon_term_ok(d);
}

Test(daemon, answers_enofunc_for_a_function_nobody_serves)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn c;
    conn_hello(&c, d, PARD_ROLE_SUBMITTER);
    pard_msg_init(c.m, PARD_MSG_SUBMIT);
    snprintf(c.m->submit.function, sizeof(c.m->submit.function), "no_such_fn");
    conn_send(&c, -1);
    conn_expect_error(&c, -PARD_ENOFUNC);
    cr_assert(strstr(c.m->error.message, "no_such_fn"), "message: %s", c.m->error.message);
    cr_assert(strstr(c.m->error.message, "worker"), "message: %s", c.m->error.message);
    /* Not fatal: the connection still works. */
    pard_msg_init(c.m, PARD_MSG_STATS);
    conn_send(&c, -1);
    conn_expect(&c, PARD_MSG_STATS_REPLY, NULL);
    conn_close(&c);
    daemon_term_ok(d);
}

/* An array job's fields are checked before anything is made: a flag that
 * is not 0 or 1, sizes without the flag, items or results its arenas
 * cannot hold. Each gets its error, and the connection stays. */
Test(daemon, refuses_array_jobs_it_cannot_run_with_clear_errors)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn c;
    conn_hello(&c, d, PARD_ROLE_SUBMITTER);
    static const struct {
        uint32_t array, item_size, result_size;
        int code;
        const char *says;
    } cases[] = {
        {2, 8, 8, -EINVAL, "array must be 0 (records) or 1"},
        {0, 8, 0, -EINVAL, "apply to array jobs only"},
        {1, 3u << 20, 8, -PARD_ETOOBIG, "half its input arena"},
        {1, 8, 200u << 10, -PARD_ETOOBIG, "a quarter of a lane's output arena"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pard_msg_init(c.m, PARD_MSG_SUBMIT);
        snprintf(c.m->submit.function, sizeof(c.m->submit.function), "no_such_fn");
        c.m->submit.array = cases[i].array;
        c.m->submit.item_size = cases[i].item_size;
        c.m->submit.result_size = cases[i].result_size;
        conn_send(&c, -1);
        conn_expect_error(&c, cases[i].code);
        cr_assert(strstr(c.m->error.message, cases[i].says), "case %zu: %s", i, c.m->error.message);
    }
    pard_msg_init(c.m, PARD_MSG_STATS);
    conn_send(&c, -1);
    conn_expect(&c, PARD_MSG_STATS_REPLY, NULL);
    cr_assert_eq(c.m->stats_reply.jobs, 0);
    conn_close(&c);
    daemon_term_ok(d);
}

Test(daemon, closes_only_the_connection_that_sends_a_malformed_frame)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn bystander;
    conn_hello(&bystander, d, PARD_ROLE_CONTROL);

    struct conn c;
    conn_raw(&c, d);
    static const uint8_t garbage[] = {0, 0, 0, 5, 0xc1, 'j', 'u', 'n', 'k'};
    cr_assert_eq(pard_sock_send_frame(c.fd, garbage, sizeof(garbage), -1), 0);
    conn_expect_error(&c, -PARD_EPROTO);
    conn_expect_eof(&c);
    conn_close(&c);

    /* A frame over the size limit. */
    conn_raw(&c, d);
    static const uint8_t huge[] = {0x7f, 0, 0, 0};
    cr_assert_eq(pard_sock_send_frame(c.fd, huge, sizeof(huge), -1), 0);
    conn_expect_error(&c, -PARD_ETOOBIG);
    conn_expect_eof(&c);
    conn_close(&c);

    /* A well-formed message that is not hello first. */
    conn_raw(&c, d);
    pard_msg_init(c.m, PARD_MSG_STATS);
    conn_send(&c, -1);
    conn_expect_error(&c, -PARD_EPROTO);
    conn_expect_eof(&c);
    conn_close(&c);

    /* A message of the wrong role. */
    conn_hello(&c, d, PARD_ROLE_CONTROL);
    conn_register(&c, "f");
    conn_expect_error(&c, -PARD_EPROTO);
    conn_expect_eof(&c);
    conn_close(&c);

    /* Everyone else is still served, old and new. */
    get_stats(&bystander);
    conn_hello(&c, d, PARD_ROLE_CONTROL);
    get_stats(&c);
    conn_close(&c);
    conn_close(&bystander);
    daemon_term_ok(d);
}

Test(daemon, refuses_a_client_of_another_uid)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to connect as another uid");
    struct daemon *d = daemon_new();
    daemon_start(d);
    /* Let the other uid reach the socket: only the peer check remains. */
    chmod(d->dir, 0755);
    chmod(d->sock, 0666);
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        int code = 1;
        if (setgid(65534) == 0 && setuid(65534) == 0) {
            struct conn c = {.fd = dial(d->sock)};
            if (c.fd >= 0 && pard_frame_reader_init(&c.r, 0) == 0 &&
                (c.m = malloc(sizeof(*c.m))) != NULL &&
                pard_sock_recv_msg(c.fd, &c.r, c.m, WAIT_MS, NULL) == 0 &&
                c.m->type == PARD_MSG_ERROR)
                code = c.m->error.code == -PARD_EDENIED ? 0 : 2;
        }
        if (write(pipefd[1], &code, sizeof(code)) != sizeof(code))
            _exit(3);
        _exit(0);
    }
    close(pipefd[1]);
    int code = -1;
    cr_assert_eq(read(pipefd[0], &code, sizeof(code)), (ssize_t)sizeof(code));
    close(pipefd[0]);
    waitpid(pid, NULL, 0);
    cr_assert_eq(code, 0, "another uid was not refused with -PARD_EDENIED (%d)", code);
    daemon_term_ok(d);
}

Test(daemon, answers_over_limit_requests_with_clear_errors)
{
    struct daemon *d = daemon_new();
    static const char *const limits[] = {"--max-workers", "1",  "--max-jobs", "1",
                                         "--max-job-shm", "4M", NULL};
    daemon_start_in(d, limits);
    struct conn ctl, w, w2, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    conn_hello(&w, d, PARD_ROLE_WORKER);
    conn_register(&w, "f");
    wait_workers(&ctl, "f", 1);

    /* One worker too many. */
    conn_raw(&w2, d);
    pard_msg_init(w2.m, PARD_MSG_HELLO);
    w2.m->hello.role = PARD_ROLE_WORKER;
    w2.m->hello.pid = (uint32_t)getpid();
    conn_send(&w2, -1);
    conn_expect_error(&w2, -PARD_ELIMIT);
    cr_assert(strstr(w2.m->error.message, "--max-workers"), "%s", w2.m->error.message);
    conn_close(&w2);

    /* A job bigger than --max-job-shm (the default geometry is ~20 MiB). */
    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);
    pard_msg_init(sub.m, PARD_MSG_SUBMIT);
    snprintf(sub.m->submit.function, sizeof(sub.m->submit.function), "f");
    conn_send(&sub, -1);
    conn_expect_error(&sub, -PARD_ETOOBIG);
    cr_assert(strstr(sub.m->error.message, "--max-job-shm"), "%s", sub.m->error.message);

    /* Impossible geometry. */
    pard_msg_init(sub.m, PARD_MSG_SUBMIT);
    snprintf(sub.m->submit.function, sizeof(sub.m->submit.function), "f");
    sub.m->submit.ring_capacity = 1000; /* not a power of two */
    conn_send(&sub, -1);
    conn_expect(&sub, PARD_MSG_ERROR, NULL);

    /* One job fits; a second is over --max-jobs. */
    struct pard_job sj;
    submit(&sub, "f", 0, &sj);
    pard_msg_init(sub.m, PARD_MSG_SUBMIT);
    snprintf(sub.m->submit.function, sizeof(sub.m->submit.function), "f");
    sub.m->submit.max_lanes = 1;
    sub.m->submit.input_arena = 4096;
    sub.m->submit.output_arena = 4096;
    sub.m->submit.window = 64;
    conn_send(&sub, -1);
    conn_expect_error(&sub, -PARD_ELIMIT);
    cr_assert(strstr(sub.m->error.message, "--max-jobs"), "%s", sub.m->error.message);

    /* None of that was fatal. */
    get_stats(&ctl);
    pard_msg_init(sub.m, PARD_MSG_STATS);
    conn_send(&sub, -1);
    conn_expect(&sub, PARD_MSG_STATS_REPLY, NULL);
    pard_job_close(&sj);
    conn_close(&sub);
    conn_close(&w);
    conn_close(&ctl);
    daemon_term_ok(d);
}

Test(daemon, prints_its_version_and_a_usage_that_names_every_option)
{
    FILE *p = popen(PARD_BIN " --version", "r");
    cr_assert(p != NULL);
    char line[128] = {0};
    cr_assert(fgets(line, sizeof(line), p) != NULL);
    cr_assert_eq(pclose(p), 0);
    cr_assert_str_eq(line, "pard 0.2.0\n");

    p = popen(PARD_BIN " --help", "r");
    cr_assert(p != NULL);
    static char help[16384];
    size_t n = fread(help, 1, sizeof(help) - 1, p);
    help[n] = 0;
    cr_assert_eq(pclose(p), 0);
    static const char *const words[] = {
        "--socket",
        "$PARD_SOCKET",
        "$XDG_RUNTIME_DIR/pard.sock",
        "/tmp/pard-$UID/pard.sock",
        "--spawn",
        "--worker",
        "--worker-shell",
        "--wait-mode",
        "--max-frame",
        "--max-clients",
        "--max-workers",
        "--max-jobs",
        "--max-job-shm",
        "--max-shm",
        "--log-level",
        "--version",
    };
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        cr_assert(strstr(help, words[i]), "--help does not mention %s", words[i]);

    p = popen(PARD_BIN " --no-such-option 2>&1", "r");
    cr_assert(p != NULL);
    while (fgets(line, sizeof(line), p))
        ;
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "a bad option exits 2 (0x%x)", status);
}

/* ======================================================================
 * Lock and stale socket
 * ====================================================================== */

Test(daemon, refuses_to_start_a_second_daemon_on_the_same_socket)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct daemon *second = daemon_new();
    *second = *d;
    char log[sizeof(second->log)]; /* via a buffer: gcc cannot tell second from d */
    snprintf(log, sizeof(log), "%s/second.log", d->dir);
    memcpy(second->log, log, sizeof(log));
    second->pid = spawn_pard(second, NULL);
    int status = daemon_wait(second);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1,
              "the second pard should exit 1 (status 0x%x)", status);
    char want[256];
    snprintf(want, sizeof(want), "another pard (pid %d) is already serving %s", (int)d->pid,
             d->sock);
    cr_assert(file_contains(second->log, want), "the second pard should say \"%s\"", want);
    /* The first one is unharmed. */
    struct conn c;
    conn_hello(&c, d, PARD_ROLE_CONTROL);
    conn_close(&c);
    daemon_term_ok(d);
}

Test(daemon, replaces_the_stale_socket_of_a_killed_daemon)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    kill(d->pid, SIGKILL);
    daemon_wait(d);
    struct stat st;
    cr_assert(stat(d->sock, &st) == 0 && S_ISSOCK(st.st_mode), "the stale socket should remain");
    cr_assert(dial(d->sock) == -ECONNREFUSED);
    daemon_start(d); /* same directory, same socket */
    struct conn c;
    conn_hello(&c, d, PARD_ROLE_CONTROL);
    cr_assert_eq(c.m->welcome.daemon_pid, (uint32_t)d->pid);
    conn_close(&c);
    daemon_term_ok(d);
}

/* ======================================================================
 * Jobs, lanes, deaths
 * ====================================================================== */

Test(daemon, gives_a_submitted_job_to_a_registered_worker)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn ctl, w, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    conn_hello(&w, d, PARD_ROLE_WORKER);
    conn_register(&w, "square");
    wait_workers(&ctl, "square", 1);

    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);
    struct pard_job sj;
    uint64_t id = submit(&sub, "square", 0, &sj);

    int fd = -1;
    conn_expect(&w, PARD_MSG_ATTACH, &fd);
    cr_assert(fd >= 0, "attach came without the job descriptor");
    cr_assert_eq(w.m->attach.job_id, id);
    cr_assert_str_eq(w.m->attach.function, "square");
    cr_assert_eq(w.m->attach.timeout_ms, 0);
    uint32_t lane = w.m->attach.lane;
    cr_assert(lane < 4);
    struct pard_job wj;
    cr_assert_eq(pard_job_attach(&wj, fd), 0);
    close(fd);
    struct pard_lane_ctl *ctl_w = lane_ctl(&wj, lane);
    cr_assert_eq(atomic_load(&ctl_w->state), PARD_LANE_ACTIVE);
    cr_assert_eq(atomic_load(&ctl_w->pid), (int32_t)getpid());
    cr_assert(atomic_load(&ctl_w->gen) >= 1);
    cr_assert_eq(atomic_load(&ctl_w->death), PARD_DEATH_NONE);
    /* The submitter sees the same lane in its own mapping. */
    cr_assert_eq(atomic_load(&lane_ctl(&sj, lane)->state), PARD_LANE_ACTIVE);

    /* job_end: the worker is told to detach; once it has, the job is freed. */
    pard_msg_init(sub.m, PARD_MSG_JOB_END);
    sub.m->job_end.job_id = id;
    conn_send(&sub, -1);
    conn_expect(&w, PARD_MSG_DETACH, NULL);
    cr_assert_eq(w.m->detach.job_id, id);
    cr_assert_eq(atomic_load(&sj.ctl->state), PARD_JOB_ENDED);
    pard_msg_init(w.m, PARD_MSG_DETACHED);
    w.m->detached.job_id = id;
    conn_send(&w, -1);
    for (int waited = 0;; waited += 10) {
        struct pard_msg_stats_reply st = get_stats(&ctl);
        if (st.jobs == 0) {
            cr_assert_eq(st.shm_bytes, 0);
            cr_assert_eq(st.idle_workers, 1);
            break;
        }
        cr_assert(waited < WAIT_MS, "the ended job was never freed");
        sleep_ms(10);
    }
    pard_job_close(&wj);
    pard_job_close(&sj);
    conn_close(&w);
    conn_close(&sub);
    conn_close(&ctl);
    daemon_term_ok(d);
}

Test(daemon, marks_the_lane_of_a_vanished_worker_dead_and_rings_the_submitter)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn ctl, w, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    conn_hello(&w, d, PARD_ROLE_WORKER);
    conn_register(&w, "fragile");
    wait_workers(&ctl, "fragile", 1);
    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);
    struct pard_job sj;
    submit(&sub, "fragile", 0, &sj);
    int fd = -1;
    conn_expect(&w, PARD_MSG_ATTACH, &fd);
    close(fd);
    uint32_t lane = w.m->attach.lane;
    struct pard_lane_ctl *lc = lane_ctl(&sj, lane);
    cr_assert_eq(atomic_load(&lc->state), PARD_LANE_ACTIVE);
    uint32_t epoch = atomic_load(&sj.ctl->lanes_epoch);

    uint32_t key = pard_event_prepare(&sj.ctl->results);
    atomic_store(&lc->leased, 1); /* it holds a batch */
    conn_close(&w);               /* and "dies": its socket closes */
    int rc = pard_event_wait(&sj.ctl->results, key, pard_now_ns() + (int64_t)WAIT_MS * 1000000);
    cr_assert_eq(rc, 0, "the submitter was never rung");
    cr_assert_neq(atomic_load(&sj.ctl->results.seq), key, "results was not notified");
    wait_lane_state(lc, PARD_LANE_DEAD);
    cr_assert_eq(atomic_load(&lc->death), PARD_DEATH_EXIT);
    cr_assert(atomic_load(&sj.ctl->lanes_epoch) != epoch, "lanes_epoch was not bumped");
    struct pard_msg_stats_reply st = get_stats(&ctl);
    cr_assert_eq(st.worker_deaths, 1);
    cr_assert_eq(st.workers, 0);
    cr_assert_eq(st.jobs, 1);

    /* A new worker waits while the lane is DEAD; once the submitter has
     * reclaimed it (FREE), the daemon notices and hands it out. */
    conn_hello(&w, d, PARD_ROLE_WORKER);
    conn_register(&w, "fragile");
    wait_workers(&ctl, "fragile", 1);
    cr_assert_eq(atomic_load(&lc->state), PARD_LANE_DEAD);
    cr_assert_eq(pard_job_lane_reset(&sj, lane), 0);
    atomic_store(&lc->state, PARD_LANE_FREE);
    conn_expect(&w, PARD_MSG_ATTACH, &fd);
    close(fd);
    wait_lane_state(lane_ctl(&sj, w.m->attach.lane), PARD_LANE_ACTIVE);

    pard_job_close(&sj);
    conn_close(&w);
    conn_close(&sub);
    conn_close(&ctl);
    daemon_term_ok(d);
}

struct slow_worker_arg {
    const char *sock;
};

/* A forked worker that takes the job, pretends to run a task that started
 * a minute ago, and then hangs. Returns only on failure. */
static int slow_worker(void *arg, int i)
{
    (void)i;
    const struct slow_worker_arg *a = arg;
    int fd = dial(a->sock);
    if (fd < 0)
        return 10;
    struct pard_frame_reader r;
    struct pard_msg *m = malloc(sizeof(*m));
    if (!m || pard_frame_reader_init(&r, PARD_FRAME_MAX_CLIENT) != 0)
        return 11;
    pard_msg_init(m, PARD_MSG_HELLO);
    m->hello.role = PARD_ROLE_WORKER;
    m->hello.pid = (uint32_t)getpid();
    if (pard_sock_send_msg(fd, m, -1) != 0 || pard_sock_recv_msg(fd, &r, m, WAIT_MS, NULL) != 0 ||
        m->type != PARD_MSG_WELCOME)
        return 12;
    pard_msg_init(m, PARD_MSG_REGISTER);
    m->reg.nfunctions = 1;
    snprintf(m->reg.functions[0], sizeof(m->reg.functions[0]), "slow");
    if (pard_sock_send_msg(fd, m, -1) != 0)
        return 13;
    int jfd = -1;
    if (pard_sock_recv_msg(fd, &r, m, -1, &jfd) != 0 || m->type != PARD_MSG_ATTACH || jfd < 0)
        return 14;
    struct pard_job job;
    struct pard_lane lane;
    if (pard_job_attach(&job, jfd) != 0 || pard_job_lane(&job, m->attach.lane, &lane) != 0)
        return 15;
    struct pard_lane_ctl *ctl = lane.ctl;
    atomic_store(&ctl->current, 7);
    atomic_store(&ctl->started_ns, pard_now_ns() - 60LL * 1000000000LL);
    atomic_store_explicit(&ctl->leased, 1, memory_order_release);
    for (;;)
        pause(); /* "running" the task until killed */
}

Test(daemon, kills_a_worker_whose_task_runs_over_the_time_limit)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn ctl, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    struct slow_worker_arg arg = {.sock = d->sock};
    pid_t worker = test_fork(slow_worker, &arg, 0);
    wait_workers(&ctl, "slow", 1);
    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);
    struct pard_job sj;
    submit(&sub, "slow", 100, &sj);

    int status = 0;
    cr_assert_eq(waitpid(worker, &status, 0), worker);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the worker should have been killed with SIGKILL (status 0x%x)", status);
    struct pard_lane_ctl *lc = lane_ctl(&sj, 0);
    wait_lane_state(lc, PARD_LANE_DEAD);
    cr_assert_eq(atomic_load(&lc->death), PARD_DEATH_TIMEOUT);
    struct pard_msg_stats_reply st = get_stats(&ctl);
    cr_assert_eq(st.timeouts, 1);
    cr_assert_eq(st.worker_deaths, 1);
    pard_job_close(&sj);
    conn_close(&sub);
    conn_close(&ctl);
    daemon_term_ok(d);
}

Test(daemon, cancels_a_job_on_request)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn ctl, w, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    conn_hello(&w, d, PARD_ROLE_WORKER);
    conn_register(&w, "f");
    wait_workers(&ctl, "f", 1);
    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);
    struct pard_job sj;
    uint64_t id = submit(&sub, "f", 0, &sj);

    pard_msg_init(ctl.m, PARD_MSG_CANCEL);
    ctl.m->cancel.job_id = id + 100;
    conn_send(&ctl, -1);
    conn_expect_error(&ctl, -PARD_ENOJOB);

    pard_msg_init(ctl.m, PARD_MSG_CANCEL);
    ctl.m->cancel.job_id = id;
    conn_send(&ctl, -1);
    conn_expect(&ctl, PARD_MSG_OK, NULL);
    cr_assert_eq(ctl.m->ok.ref, id);
    cr_assert_eq(atomic_load(&sj.ctl->state), PARD_JOB_CANCELLED);

    /* The submitter goes away without job_end: the job is reclaimed. */
    conn_close(&sub);
    int fd = -1;
    conn_expect(&w, PARD_MSG_ATTACH, &fd);
    close(fd);
    conn_expect(&w, PARD_MSG_DETACH, NULL);
    pard_msg_init(w.m, PARD_MSG_DETACHED);
    w.m->detached.job_id = id;
    conn_send(&w, -1);
    for (int waited = 0; get_stats(&ctl).jobs != 0; waited += 10) {
        cr_assert(waited < WAIT_MS, "the job of a vanished submitter was never freed");
        sleep_ms(10);
    }
    pard_job_close(&sj);
    conn_close(&w);
    conn_close(&ctl);
    daemon_term_ok(d);
}

Test(daemon, hands_a_shared_block_to_the_workers_of_a_job_that_names_it)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn ctl, w, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    conn_hello(&w, d, PARD_ROLE_WORKER);
    conn_register(&w, "lookup");
    wait_workers(&ctl, "lookup", 1);
    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);

    /* The submitter's block: a region with one PARD_SEC_SHARED section. */
    struct pard_region block;
    uint64_t off = 0;
    cr_assert_eq(pard_region_open(&block, 64 << 10), 0);
    cr_assert(pard_region_add_section(&block, PARD_SEC_SHARED, 4096, &off) >= 0);
    memcpy((char *)block.base + off, "the data set", 13);
    pard_region_publish(&block, PARD_SHARE_LAYOUT_VERSION, NULL);
    pard_msg_init(sub.m, PARD_MSG_SHARE);
    sub.m->share.size = block.size;
    conn_send(&sub, block.fd);
    conn_expect(&sub, PARD_MSG_OK, NULL);
    uint64_t handle = sub.m->ok.ref;
    cr_assert(handle != 0, "share should answer with a handle");

    pard_msg_init(sub.m, PARD_MSG_SUBMIT);
    snprintf(sub.m->submit.function, sizeof(sub.m->submit.function), "lookup");
    sub.m->submit.max_lanes = 2;
    sub.m->submit.input_arena = 4096;
    sub.m->submit.output_arena = 4096;
    sub.m->submit.window = 64;
    sub.m->submit.shared = handle;
    conn_send(&sub, -1);
    int fd = -1;
    conn_expect(&sub, PARD_MSG_JOB, &fd);
    close(fd);

    /* The worker gets the block first, then the attach that names it. */
    conn_expect(&w, PARD_MSG_SHARE, &fd);
    cr_assert(fd >= 0, "share came without the block");
    cr_assert_eq(w.m->share.handle, handle);
    struct pard_region seen;
    cr_assert_eq(pard_region_attach(&seen, fd, PARD_SHARE_LAYOUT_VERSION), 0);
    close(fd);
    uint64_t size = 0;
    const char *data = pard_region_find(&seen, PARD_SEC_SHARED, &size);
    cr_assert(data && size >= 13);
    cr_assert_str_eq(data, "the data set");
    pard_region_close(&seen);
    conn_expect(&w, PARD_MSG_ATTACH, &fd);
    close(fd);
    cr_assert_eq(w.m->attach.shared, handle);

    /* Withdrawn: a new job may not name it any more. */
    pard_msg_init(sub.m, PARD_MSG_UNSHARE);
    sub.m->unshare.handle = handle;
    conn_send(&sub, -1);
    pard_msg_init(sub.m, PARD_MSG_SUBMIT);
    snprintf(sub.m->submit.function, sizeof(sub.m->submit.function), "lookup");
    sub.m->submit.shared = handle;
    conn_send(&sub, -1);
    conn_expect_error(&sub, -ENOENT);

    /* A share without its descriptor is a protocol error. */
    pard_msg_init(sub.m, PARD_MSG_SHARE);
    sub.m->share.size = 4096;
    conn_send(&sub, -1);
    conn_expect_error(&sub, -PARD_EPROTO);
    conn_expect_eof(&sub);

    pard_region_close(&block);
    conn_close(&sub);
    conn_close(&w);
    conn_close(&ctl);
    daemon_term_ok(d);
}

/* ======================================================================
 * Reports
 * ====================================================================== */

Test(daemon, reports_sane_stats_workers_and_jobs)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn ctl, w, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    struct pard_msg_stats_reply st = get_stats(&ctl);
    cr_assert_eq(st.pid, (uint32_t)d->pid);
    cr_assert_str_eq(st.version_string, "pard 0.2.0");
    cr_assert_eq(st.workers, 0);
    cr_assert_eq(st.jobs, 0);
    cr_assert_eq(st.shm_bytes, 0);

    conn_raw(&w, d);
    pard_msg_init(w.m, PARD_MSG_HELLO);
    w.m->hello.role = PARD_ROLE_WORKER;
    w.m->hello.pid = (uint32_t)getpid();
    snprintf(w.m->hello.name, sizeof(w.m->hello.name), "tester");
    conn_send(&w, -1);
    conn_expect(&w, PARD_MSG_WELCOME, NULL);
    uint64_t wid = w.m->welcome.client_id;
    conn_register(&w, "g");
    wait_workers(&ctl, "g", 1);
    pard_msg_init(ctl.m, PARD_MSG_LIST_WORKERS);
    conn_send(&ctl, -1);
    conn_expect(&ctl, PARD_MSG_WORKERS_REPLY, NULL);
    cr_assert_eq(ctl.m->workers_reply.nworkers, 1);
    struct pard_msg_worker_entry *we = &ctl.m->workers_reply.workers[0];
    cr_assert_eq(we->id, wid);
    cr_assert_eq(we->pid, (uint32_t)getpid());
    cr_assert_str_eq(we->name, "tester");
    cr_assert_eq(we->nfunctions, 1);
    cr_assert_str_eq(we->functions[0], "g");
    cr_assert_eq(we->job_id, 0);

    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);
    struct pard_job sj;
    uint64_t id = submit(&sub, "g", 0, &sj);
    int fd = -1;
    conn_expect(&w, PARD_MSG_ATTACH, &fd);
    close(fd);
    atomic_store(&sj.ctl->submitted, 10);
    atomic_store(&sj.ctl->delivered, 6);
    atomic_store(&sj.ctl->requeued, 2);

    st = get_stats(&ctl);
    cr_assert_eq(st.workers, 1);
    cr_assert_eq(st.idle_workers, 0);
    cr_assert_eq(st.jobs, 1);
    cr_assert_eq(st.tasks_done, 6);
    cr_assert_eq(st.requeues, 2);
    cr_assert_eq(st.shm_bytes, sj.region.size);
    cr_assert(st.tasks_per_sec >= 0);

    pard_msg_init(ctl.m, PARD_MSG_LIST_JOBS);
    conn_send(&ctl, -1);
    conn_expect(&ctl, PARD_MSG_JOBS_REPLY, NULL);
    cr_assert_eq(ctl.m->jobs_reply.njobs, 1);
    struct pard_msg_job_entry *je = &ctl.m->jobs_reply.jobs[0];
    cr_assert_eq(je->id, id);
    cr_assert_str_eq(je->function, "g");
    cr_assert_str_eq(je->state, "running");
    cr_assert_eq(je->submitter_pid, (uint32_t)getpid());
    cr_assert_eq(je->lanes, 1);
    cr_assert_eq(je->submitted, 10);
    cr_assert_eq(je->delivered, 6);

    pard_msg_init(ctl.m, PARD_MSG_LIST_WORKERS);
    conn_send(&ctl, -1);
    conn_expect(&ctl, PARD_MSG_WORKERS_REPLY, NULL);
    cr_assert_eq(ctl.m->workers_reply.workers[0].job_id, id);

    /* Counters of a freed job stay in the totals. */
    conn_close(&sub);
    conn_close(&w);
    for (int waited = 0;; waited += 10) {
        st = get_stats(&ctl);
        if (st.jobs == 0)
            break;
        cr_assert(waited < WAIT_MS, "the job was never freed");
        sleep_ms(10);
    }
    cr_assert_eq(st.tasks_done, 6);
    cr_assert_eq(st.requeues, 2);
    cr_assert_eq(st.shm_bytes, 0);
    pard_job_close(&sj);
    conn_close(&ctl);
    daemon_term_ok(d);
}

/* ======================================================================
 * Shutdown and supervision
 * ====================================================================== */

Test(daemon, shuts_down_on_request_and_leaves_nothing_behind)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    struct conn ctl, w, sub;
    conn_hello(&ctl, d, PARD_ROLE_CONTROL);
    conn_hello(&w, d, PARD_ROLE_WORKER);
    conn_register(&w, "h");
    wait_workers(&ctl, "h", 1);
    conn_hello(&sub, d, PARD_ROLE_SUBMITTER);
    struct pard_job sj;
    submit(&sub, "h", 0, &sj);

    pard_msg_init(ctl.m, PARD_MSG_SHUTDOWN);
    conn_send(&ctl, -1);
    conn_expect(&ctl, PARD_MSG_OK, NULL);
    conn_expect_error(&sub, -PARD_EDAEMON);
    cr_assert(strstr(sub.m->error.message, "shutting down"), "message: %s", sub.m->error.message);
    conn_expect_eof(&sub);
    int status = daemon_wait(d);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "pard exited with 0x%x (see %s)",
              status, d->log);
    uint32_t state = atomic_load(&sj.ctl->state);
    cr_assert(state == PARD_JOB_ENDED || state == PARD_JOB_CANCELLED, "job state %u", state);
    struct stat st;
    cr_assert(stat(d->sock, &st) != 0 && errno == ENOENT, "the socket file is still there");
    char lock[160];
    snprintf(lock, sizeof(lock), "%s.lock", d->sock);
    cr_assert(stat(lock, &st) != 0 && errno == ENOENT, "the lock file is still there");
    cr_assert_eq(shm_entries_of(d->pid ? d->pid : 0), 0);
    pard_job_close(&sj);
    conn_close(&w);
    conn_close(&sub);
    conn_close(&ctl);
}

Test(daemon, exits_zero_on_sigterm_with_clients_connected)
{
    struct daemon *d = daemon_new();
    daemon_start(d);
    pid_t pid = d->pid;
    struct conn c;
    conn_hello(&c, d, PARD_ROLE_SUBMITTER);
    daemon_term_ok(d);
    conn_expect_error(&c, -PARD_EDAEMON);
    conn_expect_eof(&c);
    struct stat st;
    cr_assert(stat(d->sock, &st) != 0, "the socket file is still there");
    cr_assert_eq(shm_entries_of(pid), 0);
    conn_close(&c);
}

Test(daemon, restarts_a_crashing_worker_with_back_off_and_stops_workers_at_exit)
{
    struct daemon *d = daemon_new();
    static const char *const crash[] = {"--spawn", "1", "--worker", "/bin/false", NULL};
    daemon_start_in(d, crash);
    wait_log(d, "restarting worker 0 in 100 ms");
    wait_log(d, "restarting worker 0 in 200 ms");
    daemon_term_ok(d);

    /* A worker that never exits by itself is stopped at shutdown. While it
     * has not registered, a submit for a function nobody serves waits: it
     * is answered when a worker registers the function, or with ENOFUNC
     * when none has after a while. */
    struct daemon *e = daemon_new();
    static const char *const hang[] = {"--spawn", "1", "--worker", "sleep 600", NULL};
    daemon_start_in(e, hang);
    wait_log(e, "started worker 0 (pid");
    struct conn sub, w;
    conn_hello(&sub, e, PARD_ROLE_SUBMITTER);
    pard_msg_init(sub.m, PARD_MSG_SUBMIT);
    snprintf(sub.m->submit.function, sizeof(sub.m->submit.function), "later");
    conn_send(&sub, -1);
    wait_log(e, "job 1 (later) waits up to");
    conn_hello(&w, e, PARD_ROLE_WORKER);
    conn_register(&w, "later");
    int fd = -1;
    conn_expect(&sub, PARD_MSG_JOB, &fd);
    cr_assert(fd >= 0);
    close(fd);
    conn_expect(&w, PARD_MSG_ATTACH, &fd);
    close(fd);
    conn_close(&w);

    pard_msg_init(sub.m, PARD_MSG_SUBMIT);
    snprintf(sub.m->submit.function, sizeof(sub.m->submit.function), "never");
    conn_send(&sub, -1);
    wait_log(e, "job 2 (never) waits up to");
    int rc = pard_sock_recv_msg(sub.fd, &sub.r, sub.m, 3 * WAIT_MS, NULL);
    cr_assert_eq(rc, 0, "no answer to a pending submit: %s", pard_strerror(rc));
    cr_assert_eq(sub.m->type, PARD_MSG_ERROR);
    cr_assert_eq(sub.m->error.code, -PARD_ENOFUNC, "%s", sub.m->error.message);
    cr_assert(strstr(sub.m->error.message, "never"), "%s", sub.m->error.message);
    conn_close(&sub);
    daemon_term_ok(e);
    cr_assert(file_contains(e->log, "was killed by signal 15"), "the worker was not stopped");
}
