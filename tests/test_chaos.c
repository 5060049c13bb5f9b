/*
 * test_chaos.c — a real pard under abuse: a socket-level fuzzer, a
 * ten-million-task soak with recycled workers, and kill -9 of a submitter
 * and of the daemon in the middle of a job.
 *
 * Figures (frames, connections, RSS, time to notice) are logged; no time
 * is asserted, the machine is shared and slow (waits have generous
 * deadlines, 10 s and more). What is asserted is what pard promises:
 * every result once and right, the daemon alive and serving, its RSS
 * within 8 MiB of where it started over ten million tasks, a dead
 * submitter's memory given back, no name in /dev/shm, a clean exit 0 on
 * SIGTERM (under valgrind or LeakSanitizer: no leak either), and a clear
 * error and a non-zero status from every worker that lost the daemon.
 *
 * Environment:
 *   PARD_TEST_VALGRIND=1       the fuzzed daemon runs under memcheck
 *                              (a leak or an error: exit status 3)
 *   PARD_TEST_FUZZ_FRAMES=N    frames the fuzzer sends (default 100,000;
 *                              20,000 under TSan)
 *   PARD_TEST_FUZZ_SEED=S      another random sequence (to explore)
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "client_helpers.h"
#include "proto_samples.h"

#ifdef PARD_SANITIZED
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* ======================================================================
 * Helpers
 * ====================================================================== */

static double ms_since(int64_t t0)
{
    return (double)(pard_now_ns() - t0) / 1e6;
}

/* Spawn argv with stderr (and stdout) to `log` (NULL: inherited); dies with
 * the test. No Criterion call: also used from threads. */
static pid_t spawn_logged(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
            }
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Start pard (under memcheck when `valgrind`) with extra options, its log
 * in d->dir/pard.log. */
static void daemon_start_logged(struct test_daemon *d, bool valgrind, char *const extra[])
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/pard-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d->dir));
    snprintf(d->socket, sizeof(d->socket), "%s/pard.sock", d->dir);
    char log[160];
    snprintf(log, sizeof(log), "%s/pard.log", d->dir);
    char *argv[40];
    int n = 0;
    if (valgrind) {
        argv[n++] = "valgrind";
        argv[n++] = "-q";
        argv[n++] = "--leak-check=full";
        argv[n++] = "--error-exitcode=3";
    }
    argv[n++] = TEST_PARD;
    argv[n++] = "--socket";
    argv[n++] = d->socket;
    argv[n++] = "--log-level";
    argv[n++] = "error";
    for (int i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    d->pid = spawn_logged(argv, log);
    cr_assert(d->pid > 0, "fork failed");
    /* Ready when a control client gets an answer (valgrind starts slowly). */
    for (int i = 0; i < 3000; i++) {
        int status;
        cr_assert(waitpid(d->pid, &status, WNOHANG) == 0, "pard exited while starting (see %s)",
                  log);
        struct pard_client *c;
        if (pard_connect_control(&c, d->socket) == 0) {
            pard_disconnect(c);
            return;
        }
        usleep(10000);
    }
    cr_assert_fail("pard did not answer on %s within 30 s", d->socket);
}

/* An example worker with its stderr in d->dir/worker-<i>.log. */
static pid_t worker_start_logged(struct test_daemon *d, int i, const char *max_tasks)
{
    char log[160];
    snprintf(log, sizeof(log), "%s/worker-%d.log", d->dir, i);
    char *argv[] = {TEST_WORKER, "--socket", d->socket, NULL, NULL, NULL};
    if (max_tasks) {
        argv[3] = "--max-tasks";
        argv[4] = (char *)max_tasks;
    }
    return spawn_logged(argv, log);
}

/* The daemon's resident memory, in KiB (VmRSS of /proc/PID/status). */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* The jobs the daemon lists (parctl jobs), over a control connection. */
static uint32_t listed_jobs(const char *socket)
{
    struct pard_msg *m = test_control_call(socket, PARD_MSG_LIST_JOBS, PARD_MSG_JOBS_REPLY);
    uint32_t n = m->jobs_reply.njobs;
    free(m);
    return n;
}

/* Names in /dev/shm that contain "pard". */
static int shm_names(void)
{
    DIR *dp = opendir("/dev/shm");
    int n = 0;
    if (!dp)
        return 0;
    for (struct dirent *e; (e = readdir(dp));)
        if (strstr(e->d_name, "pard"))
            n++;
    closedir(dp);
    return n;
}

/* Stop what test_daemon_stop stops, then remove the logs and the
 * directory (test_daemon_stop only removes an empty one). */
static void daemon_cleanup(struct test_daemon *d)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "%s", d->dir);
    test_daemon_stop(d);
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    for (struct dirent *e; (e = readdir(dp));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(dp);
    rmdir(dir);
}

/* ---- maps whose every result is checked ------------------------------- */

struct squares {
    uint64_t n;
    uint32_t *seen;
    uint64_t wrong, errors, next, out_of_order;
    char buf[32];
    char last_error[256];
};

static void squares_init(struct squares *s, uint64_t n)
{
    free(s->seen);
    memset(s, 0, sizeof(*s));
    s->n = n;
    s->seen = calloc(n, sizeof(uint32_t));
}

static int square_input(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct squares *s = arg;
    if (index >= s->n)
        return 0;
    *len = (size_t)snprintf(s->buf, sizeof(s->buf), "%llu", (unsigned long long)index);
    *data = s->buf;
    return 1;
}

static int square_result(void *arg, const struct pard_result *r)
{
    struct squares *s = arg;
    if (r->index >= s->n)
        return -EINVAL;
    s->seen[r->index]++;
    if (r->index != s->next)
        s->out_of_order++;
    s->next = r->index + 1;
    if (r->status != 0) {
        s->errors++;
        snprintf(s->last_error, sizeof(s->last_error), "%.*s", (int)r->len, (const char *)r->data);
        return 0;
    }
    char want[32];
    int n = snprintf(want, sizeof(want), "%llu", (unsigned long long)(r->index * r->index));
    if (r->len != (size_t)n || memcmp(r->data, want, (size_t)n) != 0)
        s->wrong++;
    return 0;
}

/* Map n squares through the daemon at `socket`, check every one. */
static void map_squares_ok(const char *socket, struct squares *s, uint64_t n, uint32_t batch)
{
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, socket), 0, "%s", pard_last_error());
    squares_init(s, n);
    struct pard_map_opts opts = {.batch = batch};
    int rc = pard_map(c, "square", square_input, square_result, s, &opts, NULL);
    cr_assert_eq(rc, 0, "map of %llu squares failed: %s", (unsigned long long)n, pard_last_error());
    cr_assert_eq(s->errors, 0, "a task failed: %s", s->last_error);
    cr_assert_eq(s->wrong, 0);
    cr_assert_eq(s->out_of_order, 0);
    for (uint64_t i = 0; i < n; i++)
        cr_assert_eq(s->seen[i], 1, "task %llu delivered %u times", (unsigned long long)i,
                     s->seen[i]);
    pard_disconnect(c);
}

/* ======================================================================
 * The socket-level fuzzer
 * ====================================================================== */

#define SEEDS_MAX 128

struct seed {
    uint8_t *data;
    size_t len;
};

struct fuzz_shared {
    _Atomic uint64_t frames;      /* frames (or mutated byte runs) sent */
    _Atomic uint64_t bytes;       /* bytes sent */
    _Atomic uint64_t connections; /* connections opened */
    _Atomic uint64_t closed;      /* ... that the daemon closed */
    _Atomic uint64_t replies;     /* bytes the daemon sent back */
    _Atomic int done;
    uint64_t target;
    char socket[128];
    struct seed seeds[SEEDS_MAX];
    int nseeds;
    struct seed hello[3]; /* valid hellos: worker, submitter, control */
};

static void add_seed(struct fuzz_shared *f, const void *data, size_t len)
{
    if (f->nseeds >= SEEDS_MAX || len == 0)
        return;
    f->seeds[f->nseeds].data = malloc(len);
    memcpy(f->seeds[f->nseeds].data, data, len);
    f->seeds[f->nseeds].len = len;
    f->nseeds++;
}

static void add_encoded(struct fuzz_shared *f, struct pard_msg *m, struct seed *out)
{
    static uint8_t buf[PARD_FRAME_HEADER + PARD_FRAME_MAX_CLIENT];
    size_t len;
    if (pard_msg_encode_frame(m, buf, sizeof(buf), &len) != 0)
        return;
    if (out) {
        out->data = malloc(len);
        memcpy(out->data, buf, len);
        out->len = len;
    } else {
        add_seed(f, buf, len);
    }
}

/*
 * The seeds: a frame of every type from the encoders (small and big), a
 * submit that names a function the real worker serves (so jobs are made
 * and torn down), a share without its descriptor, and the decoder corpus's
 * malformed frames. Never `shutdown`: a control client may ask for it, and
 * the test wants the daemon to live; nor a `cancel` of a job that may
 * exist, for the same reason.
 */
static void fuzz_seeds(struct fuzz_shared *f)
{
    struct pard_msg *m = malloc(sizeof(*m));
    for (int t = PARD_MSG_NONE + 1; t < PARD_MSG__COUNT; t++) {
        if (t == PARD_MSG_SHUTDOWN)
            continue;
        for (int big = 0; big < 2; big++) {
            sample_msg(m, (enum pard_msg_type)t, big);
            /* Any client of the uid may cancel any job: the sample's job 44
             * would, sooner or later, be the real map's. No job has this
             * one. */
            if (t == PARD_MSG_CANCEL)
                m->cancel.job_id = UINT64_MAX - 1;
            add_encoded(f, m, NULL);
        }
    }
    pard_msg_init(m, PARD_MSG_SUBMIT);
    snprintf(m->submit.function, sizeof(m->submit.function), "square");
    m->submit.ring_capacity = 64;
    m->submit.input_arena = 64 << 10;
    m->submit.output_arena = 64 << 10;
    m->submit.max_lanes = 2;
    m->submit.window = 64;
    add_encoded(f, m, NULL);
    pard_msg_init(m, PARD_MSG_SHARE);
    m->share.size = 4096;
    add_encoded(f, m, NULL);
    pard_msg_init(m, PARD_MSG_REGISTER);
    m->reg.nfunctions = 1;
    snprintf(m->reg.functions[0], sizeof(m->reg.functions[0]), "square");
    add_encoded(f, m, NULL);
    const enum pard_role roles[3] = {PARD_ROLE_WORKER, PARD_ROLE_SUBMITTER, PARD_ROLE_CONTROL};
    for (int i = 0; i < 3; i++) {
        pard_msg_init(m, PARD_MSG_HELLO);
        m->hello.role = roles[i];
        m->hello.pid = (uint32_t)getpid();
        snprintf(m->hello.name, sizeof(m->hello.name), "fuzz");
        add_encoded(f, m, &f->hello[i]);
    }
    free(m);
    DIR *dp = opendir(PARD_SOURCE_DIR "/tests/fuzz/corpus/decode");
    cr_assert_not_null(dp, "the decoder's seed corpus is missing");
    for (struct dirent *e; (e = readdir(dp));) {
        if (strncmp(e->d_name, "bad-", 4) != 0)
            continue; /* the valid ones came from the encoders above */
        char path[512];
        snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/decode/%s", PARD_SOURCE_DIR, e->d_name);
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        static uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        /* bad-duplicate-key is a cancel of job 1 with a second job_id key:
         * one flipped byte in that key makes a valid cancel of the real
         * map's job (it did, in 2 of 4 TSan runs). The decoder's tests and
         * the libFuzzer run keep these seeds. */
        if (memmem(buf, n, "cancel", 6))
            continue;
        add_seed(f, buf, n);
    }
    closedir(dp);
    cr_assert_gt(f->nseeds, 40, "only %d seeds", f->nseeds);
}

static void fuzz_seeds_free(struct fuzz_shared *f)
{
    for (int i = 0; i < f->nseeds; i++)
        free(f->seeds[i].data);
    for (int i = 0; i < 3; i++)
        free(f->hello[i].data);
    f->nseeds = 0;
}

static int fuzz_dial(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read whatever the daemon sent (descriptors it passes are discarded by
 * the kernel: no control buffer). Returns false when it closed. */
static bool fuzz_drain(struct fuzz_shared *f, int fd)
{
    static uint8_t buf[1 << 16];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            atomic_fetch_add(&f->replies, (uint64_t)n);
            continue;
        }
        if (n == 0)
            return false;
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
}

/* Send all of buf (waiting at most 1 s for room). False: the connection
 * is closed or stuck, drop it. */
static bool fuzz_send(struct fuzz_shared *f, int fd, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    int64_t deadline = pard_now_ns() + 1000000000LL;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            atomic_fetch_add(&f->bytes, (uint64_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (!fuzz_drain(f, fd) || pard_now_ns() > deadline)
                return false;
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 10);
            continue;
        }
        return false; /* EPIPE, ECONNRESET: the daemon closed it */
    }
    return true;
}

/* One mutated frame from a seed into out; returns its length. */
static size_t fuzz_mutate(struct fuzz_shared *f, unsigned *rs, uint8_t *out, size_t cap)
{
    const struct seed *s = &f->seeds[rand_r(rs) % (unsigned)f->nseeds];
    size_t len = s->len < cap ? s->len : cap;
    memcpy(out, s->data, len);
    switch (rand_r(rs) % 9) {
    case 0: /* as it is */
        break;
    case 1: /* flip a few bytes of the body, keep the prefix */
    case 2:
        for (int k = 1 + rand_r(rs) % 4; k > 0 && len > 4; k--)
            out[4 + rand_r(rs) % (len - 4)] ^= (uint8_t)(1 + rand_r(rs) % 255);
        break;
    case 3: /* truncated */
        len = (size_t)rand_r(rs) % (len + 1);
        break;
    case 4: { /* a wrong length prefix: small, large, or huge */
        static const uint32_t odd[] = {0, 1, 3, 0x10000, 0x10001, 0x200000, 0x7fffffff, 0xffffffff};
        uint32_t v = rand_r(rs) % 2 ? odd[rand_r(rs) % 8] : (uint32_t)rand_r(rs);
        if (len >= 4)
            pard_frame_put_header(out, v);
        break;
    }
    case 5: /* a valid frame, then garbage */
        for (int k = rand_r(rs) % 64; k > 0 && len < cap; k--)
            out[len++] = (uint8_t)rand_r(rs);
        break;
    case 6: /* pure garbage */
        len = 1 + (size_t)rand_r(rs) % 64;
        for (size_t k = 0; k < len; k++)
            out[k] = (uint8_t)rand_r(rs);
        break;
    case 7: { /* bytes inserted or deleted in the body, prefix fixed up */
        if (len <= 5)
            break;
        size_t at = 4 + (size_t)rand_r(rs) % (len - 4);
        if (rand_r(rs) % 2 && len < cap) {
            memmove(out + at + 1, out + at, len - at);
            out[at] = (uint8_t)rand_r(rs);
            len++;
        } else {
            memmove(out + at, out + at + 1, len - at - 1);
            len--;
        }
        pard_frame_put_header(out, (uint32_t)(len - 4));
        break;
    }
    case 8: /* one msgpack byte set to an interesting value, prefix kept */
        if (len > 4) {
            static const uint8_t v[] = {0xc0, 0xc1, 0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xc6, 0xff,
                                        0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf};
            out[4 + rand_r(rs) % (len - 4)] = v[rand_r(rs) % sizeof(v)];
        }
        break;
    }
    return len;
}

/* The fuzzer process: connections of 1 to 16 frames, most opened with a
 * valid hello so the frames reach past the handshake. */
static int fuzz_run(void *arg, int seed)
{
    struct fuzz_shared *f = arg;
    unsigned rs = (unsigned)seed;
    static uint8_t frame[PARD_FRAME_HEADER + PARD_FRAME_MAX_CLIENT];
    while (atomic_load(&f->frames) < f->target) {
        int fd = fuzz_dial(f->socket);
        if (fd < 0) {
            usleep(1000); /* at the connection limit: let the daemon catch up */
            if (kill(getppid(), 0) != 0)
                return 1;
            continue;
        }
        atomic_fetch_add(&f->connections, 1);
        bool open = true;
        if (rand_r(&rs) % 4 != 0) {
            const struct seed *h = &f->hello[rand_r(&rs) % 3];
            open = fuzz_send(f, fd, h->data, h->len);
        }
        for (int k = 1 + rand_r(&rs) % 16; open && k > 0 && atomic_load(&f->frames) < f->target;
             k--) {
            size_t len = fuzz_mutate(f, &rs, frame, sizeof(frame) - 64);
            open = fuzz_send(f, fd, frame, len) && fuzz_drain(f, fd);
            atomic_fetch_add(&f->frames, 1);
        }
        if (!open) {
            atomic_fetch_add(&f->closed, 1);
        } else {
            /* Our end is done: let the daemon read it all, answer, and
             * close (200 ms at most), so every frame is processed. */
            shutdown(fd, SHUT_WR);
            int64_t deadline = pard_now_ns() + 200000000LL;
            while (fuzz_drain(f, fd) && pard_now_ns() < deadline) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                poll(&p, 1, 10);
            }
        }
        close(fd);
    }
    atomic_store(&f->done, 1);
    return 0;
}

static uint64_t fuzz_frames(void)
{
    const char *e = getenv("PARD_TEST_FUZZ_FRAMES");
    if (e && *e)
        return strtoull(e, NULL, 10);
    return PARD_TEST_FUZZ_FRAMES_DEFAULT;
}

Test(chaos, serves_a_real_map_while_fuzzed_frames_hit_its_socket, .timeout = 600)
{
    const char *vg = getenv("PARD_TEST_VALGRIND");
    bool valgrind = vg && *vg && strcmp(vg, "0") != 0;
    struct test_daemon d;
    /* Small shared-memory limits: fuzzed submits must not fill /dev/shm. */
    char *extra[] = {"--max-job-shm", "16M", "--max-shm", "64M", NULL};
    daemon_start_logged(&d, valgrind, extra);
    d.workers[d.nworkers++] = worker_start_logged(&d, 0, NULL);
    test_wait_workers(&d, 1);

    struct fuzz_shared *f = test_shared_alloc(sizeof(*f));
    f->target = fuzz_frames();
    snprintf(f->socket, sizeof(f->socket), "%s", d.socket);
    fuzz_seeds(f);
    int64_t t0 = pard_now_ns();
    const char *seed = getenv("PARD_TEST_FUZZ_SEED"); /* to explore; the suite's is fixed */
    pid_t fuzzer = test_fork(fuzz_run, f, seed ? atoi(seed) : 20261126);

    /* Meanwhile, real maps: each result checked. */
    struct squares s = {0};
    int maps = 0;
    while (!atomic_load(&f->done)) {
        int status;
        if (waitpid(fuzzer, &status, WNOHANG) == fuzzer) {
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the fuzzer failed");
            fuzzer = 0;
            break;
        }
        cr_assert_eq(waitpid(d.pid, &status, WNOHANG), 0, "pard died under fuzzing");
        map_squares_ok(d.socket, &s, 1000, 8);
        maps++;
        usleep(20000);
    }
    if (fuzzer)
        test_wait_ok(fuzzer, "the fuzzer");
    double secs = ms_since(t0) / 1000;
    int status;
    cr_assert_eq(waitpid(d.pid, &status, WNOHANG), 0, "pard died under fuzzing");
    cr_assert_geq(atomic_load(&f->frames), f->target);
    /* Afterwards: alive, serving, and a clean exit. */
    map_squares_ok(d.socket, &s, 10000, 16);
    struct pard_msg_stats_reply st;
    test_get_stats(d.socket, &st);
    cr_assert_eq(st.workers, 1, "the real worker is still there (%llu workers)",
                 (unsigned long long)st.workers);
    cr_log_info("%s: %llu frames (%llu bytes) on %llu connections, %llu closed by pard, %llu "
                "reply bytes, in %.1f s; %d real maps of 1000 succeeded meanwhile",
                valgrind ? "under memcheck" : "fuzzed", (unsigned long long)f->frames,
                (unsigned long long)f->bytes, (unsigned long long)f->connections,
                (unsigned long long)f->closed, (unsigned long long)f->replies, secs, maps);
    fprintf(stderr,
            "chaos: %s: %llu frames (%llu bytes) on %llu connections, %llu closed by pard, "
            "in %.1f s; %d real maps meanwhile\n",
            valgrind ? "under memcheck" : "fuzzed", (unsigned long long)f->frames,
            (unsigned long long)f->bytes, (unsigned long long)f->connections,
            (unsigned long long)f->closed, secs, maps);
    cr_assert_gt(maps, 0, "no real map ran during the fuzzing");
    kill(d.pid, SIGTERM);
    cr_assert_eq(waitpid(d.pid, &status, 0), d.pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "pard did not exit 0 after SIGTERM (status 0x%x%s; see %s/pard.log)", status,
              valgrind ? ", 3 = memcheck found an error or a leak" : "", d.dir);
    d.pid = 0;
    daemon_cleanup(&d);
    free(s.seen);
    fuzz_seeds_free(f);
    munmap(f, sizeof(*f));
}

/* ======================================================================
 * Soak: ten million tasks, workers recycled all along
 * ====================================================================== */

/* Count the lines of the daemon's log that contain `needle`. */
static int log_count(const struct test_daemon *d, const char *needle)
{
    char path[160], line[1024];
    snprintf(path, sizeof(path), "%s/pard.log", d->dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

Test(chaos, checks_ten_million_results_with_recycled_workers_in_bounded_memory, .timeout = 600)
{
    /* The sanitizers run 20 times fewer tasks (and do not check the RSS:
     * ASan's quarantine holds freed memory on purpose). */
    const uint64_t maps = 10, per_map = SANITIZED ? 50000 : 1000000;
    const char *max_tasks = SANITIZED ? "15000" : "300000";
    /* pard --spawn keeps two workers, each leaving after max_tasks tasks
     * (a clean exit 0, which --spawn restarts without growing back-off). */
    char worker[512];
    snprintf(worker, sizeof(worker), "%s --max-tasks %s", TEST_WORKER, max_tasks);
    char *extra[] = {"--spawn", "2", "--worker", worker, "--log-level", "info", NULL};
    struct test_daemon d;
    daemon_start_logged(&d, false, extra);
    test_wait_workers(&d, 2);

    /* Warm-up: the daemon's first job sizes its buffers. */
    struct squares s = {0};
    map_squares_ok(d.socket, &s, per_map / 5, 256);
    long rss_start = rss_kib(d.pid);
    int64_t t0 = pard_now_ns();
    for (uint64_t m = 0; m < maps; m++)
        map_squares_ok(d.socket, &s, per_map, 256);
    double secs = ms_since(t0) / 1000;
    long rss_end = rss_kib(d.pid);
    struct pard_msg_stats_reply st;
    test_get_stats(d.socket, &st);
    int recycled = log_count(&d, "exited with status 0 after");
    int failed =
        log_count(&d, "killed by signal") + (log_count(&d, "exited with status") - recycled);
    cr_log_info("soak: %llu tasks in %llu maps, every result checked, in %.1f s (%.2f M "
                "tasks/s); %d workers recycled (--max-tasks %s); daemon RSS %ld KiB after "
                "warm-up, %ld KiB at the end (%+ld KiB); %llu tasks done in all",
                (unsigned long long)(maps * per_map), (unsigned long long)maps, secs,
                (double)(maps * per_map) / secs / 1e6, recycled, max_tasks, rss_start, rss_end,
                rss_end - rss_start, (unsigned long long)st.tasks_done);
    fprintf(stderr,
            "chaos: soak: %llu tasks in %.1f s, %d workers recycled, daemon RSS %ld -> %ld "
            "KiB\n",
            (unsigned long long)(maps * per_map), secs, recycled, rss_start, rss_end);
    cr_assert_eq(failed, 0, "a recycled worker did not exit 0 (see %s/pard.log)", d.dir);
    cr_assert_gt(recycled, (int)maps, "workers were recycled during the soak");
    cr_assert_geq(st.tasks_done, maps * per_map);
    cr_assert_gt(rss_start, 0);
    if (!SANITIZED)
        cr_assert_lt(rss_end, rss_start + 8192,
                     "the daemon grew from %ld to %ld KiB over %llu tasks", rss_start, rss_end,
                     (unsigned long long)(maps * per_map));
    daemon_cleanup(&d);
    free(s.seen);
}

/* ======================================================================
 * kill -9 of a submitter in the middle of its job
 * ====================================================================== */

static int fixed_input(void *arg, uint64_t index, const void **data, size_t *len)
{
    const char *text = arg;
    if (index >= 100000)
        return 0;
    *data = text;
    *len = strlen(text);
    return 1;
}

static int ignore_result(void *arg, const struct pard_result *r)
{
    return 0;
}

/* A submitter process: 100,000 tasks of 2 ms (over a minute), killed long
 * before they end. */
static int long_submitter(void *arg, int i)
{
    struct pard_client *c;
    if (pard_connect(&c, arg) != 0)
        return 1;
    struct pard_map_opts opts = {.batch = 1};
    pard_map(c, "sleep_us", fixed_input, ignore_result, "2000", &opts, NULL);
    pard_disconnect(c);
    return 0;
}

Test(chaos, cancels_and_frees_the_job_of_a_killed_submitter_then_serves_the_next, .timeout = 120)
{
    struct test_daemon d;
    test_daemon_start(&d);
    test_worker_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 2);
    struct pard_msg_stats_reply st;
    test_get_stats(d.socket, &st);
    uint64_t shm_base = st.shm_bytes;
    int names_base = shm_names();

    pid_t sub = test_fork(long_submitter, d.socket, 0);
    /* Wait until both workers run its tasks. */
    for (int i = 0; i < 2000; i++) {
        test_get_stats(d.socket, &st);
        if (st.jobs == 1 && st.idle_workers == 0 && st.tasks_done > 10)
            break;
        usleep(5000);
    }
    cr_assert(st.jobs == 1 && st.idle_workers == 0, "the job did not start (%llu jobs)",
              (unsigned long long)st.jobs);
    uint64_t shm_job = st.shm_bytes;
    cr_assert_gt(shm_job, shm_base, "the job holds shared memory");
    int64_t t0 = pard_now_ns();
    kill(sub, SIGKILL);
    int status;
    waitpid(sub, &status, 0);
    cr_assert(WIFSIGNALED(status), "the submitter was still running when killed");

    /* Its job goes, its memory is given back, the workers go idle. */
    for (int i = 0; i < 2000; i++) {
        test_get_stats(d.socket, &st);
        if (st.jobs == 0 && st.shm_bytes == shm_base && st.idle_workers == 2)
            break;
        usleep(5000);
    }
    double ms = ms_since(t0);
    cr_assert_eq(st.jobs, 0, "the killed submitter's job is still there");
    cr_assert_eq(listed_jobs(d.socket), 0, "parctl jobs still lists a job");
    cr_assert_eq(st.shm_bytes, shm_base, "shared memory in use: %llu bytes, %llu before the job",
                 (unsigned long long)st.shm_bytes, (unsigned long long)shm_base);
    cr_assert_eq(st.idle_workers, 2, "the workers did not go idle");
    cr_assert_eq(shm_names(), names_base, "a name was left in /dev/shm");
    cr_log_info("submitter killed holding %llu bytes of shared memory; job gone, memory back "
                "to %llu bytes and both workers idle %.1f ms later",
                (unsigned long long)shm_job, (unsigned long long)shm_base, ms);
    fprintf(stderr, "chaos: killed submitter's job cleared in %.1f ms (%llu shm bytes freed)\n", ms,
            (unsigned long long)(shm_job - shm_base));

    /* Another submitter's job runs on the same workers. */
    struct squares s = {0};
    map_squares_ok(d.socket, &s, 10000, 4);
    free(s.seen);
    test_daemon_stop(&d);
}

/* ======================================================================
 * A finished job's region serves the next job
 * ====================================================================== */

struct cancel_after {
    const char *socket;
    struct squares s;
    uint64_t n, after;
    struct pard_client *c;
    int rc;
};

static int cancel_result(void *arg, const struct pard_result *r)
{
    struct cancel_after *a = arg;
    square_result(&a->s, r);
    if (a->s.next == a->after)
        pard_cancel(a->c);
    return 0;
}

/* Wait (10 s at most) until the daemon holds no job: the last one was
 * freed, and its region is the spare. */
static void wait_no_job(const char *socket)
{
    struct pard_msg_stats_reply st;
    for (int i = 0; i < 2000; i++) {
        test_get_stats(socket, &st);
        if (st.jobs == 0)
            return;
        usleep(5000);
    }
    cr_assert_fail("a finished job was not freed within 10 s");
}

/*
 * The region of a finished job becomes the next job's when the geometry
 * matches, instead of allocating and zeroing ~13 MB per map. Whatever the
 * last job left (ring positions many laps on, arena positions, lanes, done
 * marks; a job cancelled in the middle) must not reach the next one: every
 * result of every map is checked. A job of another geometry gets a region
 * of its own. (The killed-submitter test above reuses a region left in the
 * middle of a job.)
 */
Test(chaos, reuses_the_region_of_a_finished_job_and_every_result_stays_right, .timeout = 120)
{
    char *extra[] = {"--spawn", "2", "--worker", TEST_WORKER, "--log-level", "info", NULL};
    struct test_daemon d;
    daemon_start_logged(&d, false, extra);
    test_wait_workers(&d, 2);
    struct squares s = {0};
    /* Unbatched: 20,000 descriptors take the task ring around 19 times. */
    map_squares_ok(d.socket, &s, 20000, 1);
    wait_no_job(d.socket);
    map_squares_ok(d.socket, &s, 20000, 4);
    wait_no_job(d.socket);
    cr_assert_eq(log_count(&d, "(reused)"), 1, "the second map did not reuse the first's region");

    /* Cancelled after 3,000 of 50,000 results: its region is reused too. */
    struct cancel_after a = {.socket = d.socket, .n = 50000, .after = 3000};
    cr_assert_eq(pard_connect(&a.c, d.socket), 0, "%s", pard_last_error());
    squares_init(&a.s, a.n);
    struct pard_map_opts unbatched = {.batch = 1};
    a.rc = pard_map(a.c, "square", square_input, cancel_result, &a, &unbatched, NULL);
    cr_assert_eq(a.rc, -PARD_ECANCELED, "the map was not cancelled: %d %s", a.rc,
                 pard_last_error());
    cr_assert_eq(a.s.wrong + a.s.errors, 0);
    pard_disconnect(a.c);
    free(a.s.seen);
    wait_no_job(d.socket);
    map_squares_ok(d.socket, &s, 20000, 0);
    wait_no_job(d.socket);
    cr_assert_eq(log_count(&d, "(reused)"), 3, "the maps after the cancel did not reuse regions");

    /* Another geometry (4 lanes): a region of its own, then the default
     * size again cannot use it either. */
    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    squares_init(&s, 5000);
    struct pard_map_opts four = {.max_workers = 4};
    cr_assert_eq(pard_map(c, "square", square_input, square_result, &s, &four, NULL), 0, "%s",
                 pard_last_error());
    cr_assert_eq(s.wrong + s.errors, 0);
    pard_disconnect(c);
    wait_no_job(d.socket);
    map_squares_ok(d.socket, &s, 5000, 1);
    cr_assert_eq(log_count(&d, "(reused)"), 3, "a region was reused for another geometry");
    cr_log_info("5 maps, every result checked; 3 of them in the region of the map before");
    daemon_cleanup(&d);
    free(s.seen);
}

/* ======================================================================
 * kill -9 of the daemon in the middle of a job: the workers' side
 * ====================================================================== */

struct blocked_map {
    const char *socket;
    int rc;
};

static int one_input(void *arg, uint64_t index, const void **data, size_t *len)
{
    if (index >= 1)
        return 0;
    *data = "30000000"; /* 30 s */
    *len = 8;
    return 1;
}

static void *map_long_task(void *arg)
{
    struct blocked_map *b = arg;
    struct pard_client *c;
    b->rc = pard_connect(&c, b->socket);
    if (b->rc == 0) {
        b->rc = pard_map(c, "sleep_us", one_input, ignore_result, NULL, NULL, NULL);
        pard_disconnect(c);
    }
    return NULL;
}

static bool file_has(const char *path, const char *needle, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

/* Wait (20 s at most) until one of the n workers sleeps in the 30 s task:
 * its main thread's kernel wait channel says nanosleep (an idle worker
 * waits in a futex or a poll). Returns its index. */
static int wait_inside_task(const pid_t *w, int n)
{
    for (int t = 0; t < 4000; t++) {
        for (int i = 0; i < n; i++) {
            char path[64], chan[64] = "";
            snprintf(path, sizeof(path), "/proc/%d/wchan", (int)w[i]);
            FILE *f = fopen(path, "r");
            if (f) {
                size_t k = fread(chan, 1, sizeof(chan) - 1, f);
                chan[k] = 0;
                fclose(f);
            }
            if (strstr(chan, "nanosleep"))
                return i;
        }
        usleep(5000);
    }
    cr_assert_fail("no worker started the 30 s task");
    return -1;
}

Test(chaos, workers_exit_with_a_clear_error_when_the_daemon_is_killed, .timeout = 120)
{
    struct test_daemon d;
    daemon_start_logged(&d, false, NULL);
    pid_t w[2];
    for (int i = 0; i < 2; i++)
        d.workers[d.nworkers++] = w[i] = worker_start_logged(&d, i, NULL);
    test_wait_workers(&d, 2);
    /* One worker runs a 30 s task, the other waits for work in the same
     * job (the daemon gives both a lane). */
    struct blocked_map b = {.socket = d.socket};
    pthread_t th;
    pthread_create(&th, NULL, map_long_task, &b);
    struct pard_msg_stats_reply st;
    for (int i = 0; i < 2000; i++) {
        test_get_stats(d.socket, &st);
        if (st.jobs == 1)
            break;
        usleep(5000);
    }
    cr_assert(st.jobs == 1, "the long task did not start");
    wait_inside_task(w, 2);

    int64_t t0 = pard_now_ns();
    kill(d.pid, SIGKILL);
    int status[2];
    double ms[2] = {-1, -1};
    /* Generous: the busy worker's task would run another 30 s. */
    for (int left = 2, t = 0; left > 0 && t < 10000; t++) {
        for (int i = 0; i < 2; i++)
            if (ms[i] < 0 && waitpid(w[i], &status[i], WNOHANG) == w[i]) {
                ms[i] = ms_since(t0);
                left--;
            }
        usleep(1000);
    }
    int dstatus;
    waitpid(d.pid, &dstatus, 0);
    d.pid = 0;
    pthread_join(th, NULL);
    cr_assert_eq(b.rc, -PARD_EDAEMON, "the submitter got %d", b.rc);
    char log[160], text[4096];
    int busy = -1;
    for (int i = 0; i < 2; i++) {
        cr_assert_geq(ms[i], 0, "worker %d did not exit within 10 s of the daemon's death", i);
        cr_assert(WIFEXITED(status[i]) && WEXITSTATUS(status[i]) != 0,
                  "worker %d: status 0x%x, not a non-zero exit", i, status[i]);
        snprintf(log, sizeof(log), "%s/worker-%d.log", d.dir, i);
        cr_assert(file_has(log, "pard daemon is gone", text, sizeof(text)),
                  "worker %d's stderr lacks a clear message: %s", i, text);
        if (strstr(text, "was running"))
            busy = i;
        cr_log_info("worker %d (%s) exited %d, %.1f ms after kill -9 of pard: %s", i,
                    strstr(text, "was running") ? "inside a 30 s task" : "idle",
                    WEXITSTATUS(status[i]), ms[i], text);
        fprintf(stderr, "chaos: worker %d (%s) exited %.1f ms after kill -9 of pard\n", i,
                strstr(text, "was running") ? "inside a 30 s task" : "idle", ms[i]);
    }
    cr_assert_geq(busy, 0, "no worker said it was inside a task");
    d.nworkers = 0;

    /* A new pard on the same socket, new workers, a map. */
    char *argv[] = {TEST_PARD, "--socket", d.socket, "--log-level", "warn", NULL};
    d.pid = test_spawn(argv);
    test_daemon_wait_ready(&d);
    for (int i = 0; i < 200; i++) {
        struct pard_client *c;
        if (pard_connect_control(&c, d.socket) == 0) {
            pard_disconnect(c);
            break;
        }
        usleep(10000);
    }
    test_get_stats(d.socket, &st);
    cr_assert_eq(st.pid, (uint32_t)d.pid, "the new daemon answers");
    test_worker_start(&d);
    test_worker_start(&d);
    test_wait_workers(&d, 2);
    struct squares s = {0};
    map_squares_ok(d.socket, &s, 10000, 8);
    free(s.seen);
    daemon_cleanup(&d);
}

/* A clean shutdown (SIGTERM) while a worker is inside a 30 s task: pard
 * says goodbye before it closes the connection, so the worker leaves the
 * task with "pard is shutting down" and status 0, not as if pard had
 * crashed. */
Test(chaos, a_worker_inside_a_task_exits_0_when_pard_shuts_down, .timeout = 120)
{
    struct test_daemon d;
    daemon_start_logged(&d, false, NULL);
    pid_t w = worker_start_logged(&d, 0, NULL);
    d.workers[d.nworkers++] = w;
    test_wait_workers(&d, 1);
    struct blocked_map b = {.socket = d.socket};
    pthread_t th;
    pthread_create(&th, NULL, map_long_task, &b);
    wait_inside_task(&w, 1);
    kill(d.pid, SIGTERM);
    test_wait_ok(d.pid, "pard after SIGTERM");
    d.pid = 0;
    int status = 0;
    int t = 0;
    for (; t < 10000 && waitpid(w, &status, WNOHANG) == 0; t++)
        usleep(1000);
    cr_assert_lt(t, 10000, "the worker did not leave its task within 10 s of the shutdown");
    d.nworkers = 0;
    pthread_join(th, NULL);
    char log[160], text[4096];
    snprintf(log, sizeof(log), "%s/worker-0.log", d.dir);
    bool said = file_has(log, "pard is shutting down", text, sizeof(text));
    cr_log_info("worker: status 0x%x after SIGTERM of pard: %s; the submitter got %d", status, text,
                b.rc);
    cr_assert(said, "the worker's stderr does not say pard is shutting down: %s", text);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the worker's status is 0x%x, not exit 0", status);
    cr_assert_lt(b.rc, 0, "the submitter's map succeeded across a shutdown");
    daemon_cleanup(&d);
}
