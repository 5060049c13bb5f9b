/*
 * main.c — `pard`, the daemon: options, start-up, and the shutdown
 * sequence.
 *
 * Start-up: parse options (nothing else is configurable and no file is
 * read), resolve the socket path (--socket, $PARD_SOCKET,
 * $XDG_RUNTIME_DIR/pard.sock, /tmp/pard-$UID/pard.sock), take the lock and
 * listen (listen.c), start the timers and signal watchers, start --spawn
 * workers, run the loop. pard stays in the foreground and logs to stderr,
 * which suits systemd, a terminal and tests alike.
 *
 * Shutdown (a control client's `shutdown`, SIGTERM or SIGINT): stop
 * accepting; mark every job CANCELLED then ENDED and ring its events;
 * send every client an error (-PARD_EDAEMON, "pard is shutting down") and
 * close it; free the jobs; stop supervised workers (SIGTERM, SIGKILL after
 * 2 s; a second signal kills them at once); close the last handles. The
 * loop then runs dry, and main removes the socket and the lock file,
 * closes the loop (which must report no open handle) and exits 0.
 *
 * Must not: know about frames, lanes or processes beyond calling the files
 * that own them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

/* ======================================================================
 * Options
 * ====================================================================== */

static uint64_t default_max_shm(void)
{
    /* Half of /dev/shm: jobs may grow that far, and the rest is left for
     * everything else on the machine that uses shared memory. */
    struct statvfs vfs;
    if (statvfs("/dev/shm", &vfs) == 0 && vfs.f_blocks > 0) {
        uint64_t half = (uint64_t)vfs.f_blocks * vfs.f_frsize / 2;
        if (half >= ((uint64_t)64 << 20))
            return half;
        return (uint64_t)64 << 20;
    }
    return (uint64_t)4 << 30;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pard [OPTION]...\n"
            "\n"
            "The pard daemon: it sets up shared memory for parallel jobs, hands it to\n"
            "submitters and workers, watches them, and reports. It stays in the\n"
            "foreground and logs to stderr; stop it with `parctl shutdown`, SIGTERM or\n"
            "Ctrl-C.\n"
            "\n"
            "Socket:\n"
            "  --socket PATH        listen on PATH. Without it, the first of:\n"
            "                         $PARD_SOCKET\n"
            "                         $XDG_RUNTIME_DIR/pard.sock\n"
            "                         /tmp/pard-$UID/pard.sock (the directory is created 0700)\n"
            "                       Clients resolve the path the same way. The socket is\n"
            "                       mode 0600 and only your uid (and root) may connect.\n"
            "                       A lock file PATH.lock keeps a second pard off the same\n"
            "                       socket; a socket left by a pard that died is replaced.\n"
            "\n"
            "Workers:\n"
            "  --spawn N            start N worker processes and restart any that exits or\n"
            "                       crashes (back-off 100 ms doubling to 5 s, reset after\n"
            "                       10 s of running or a clean exit 0, as a worker run with\n"
            "                       --max-tasks N makes); stop them at shutdown\n"
            "  --worker CMD         the worker command: CMD is split on blanks into a program\n"
            "                       and its arguments, run without a shell, with PARD_SOCKET\n"
            "                       set to this daemon's socket. --worker alone starts one\n"
            "                       worker per online CPU\n"
            "  --worker-shell       run CMD with /bin/sh -c instead (quotes, pipes, $VARS)\n"
            "\n"
            "Jobs:\n"
            "  --wait-mode MODE     how workers and submitters wait when a job does not say:\n"
            "                       adaptive (default: spin, yield, then sleep), spin, block\n"
            "\n"
            "Limits (SIZE takes a K, M, G or T suffix, binary):\n"
            "  --max-frame BYTES    largest message a client may send (default %u, at most %u)\n"
            "  --max-clients N      connections at once (default %u)\n"
            "  --max-workers N      worker connections at once (default %u)\n"
            "  --max-jobs N         jobs at once (default %u)\n"
            "  --max-job-shm SIZE   shared memory of one job (default 1G)\n"
            "  --max-shm SIZE       shared memory of all jobs and shared blocks (pard_share)\n"
            "                       together (default: half of /dev/shm); at most %u\n"
            "                       shared blocks are held at once\n"
            "  Over a limit, a client gets a clear error (limit reached, or too big); the\n"
            "  daemon carries on.\n"
            "\n"
            "Other:\n"
            "  --log-level LEVEL    error, warn, info (default) or debug\n"
            "  --help               this text\n"
            "  --version            print the version\n"
            "\n"
            "Exit status: 0 after a clean shutdown, 1 when pard cannot start (another pard\n"
            "serves the socket, the socket cannot be created, a worker cannot be started),\n"
            "2 for a bad option.\n",
            PARD_FRAME_MAX, PARD_FRAME_MAX_LIMIT, PARD__DEFAULT_MAX_CLIENTS,
            PARD__DEFAULT_MAX_WORKERS, PARD__DEFAULT_MAX_JOBS, PARD__MAX_SHARES);
}

static int bad_option(const char *opt, const char *val, const char *why)
{
    fprintf(stderr, "pard: %s '%s': %s (see pard --help)\n", opt, val, why);
    return 2;
}

static int parse_u32(const char *opt, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        char why[96];
        snprintf(why, sizeof(why), "expected a number from %u to %u", min, max);
        return bad_option(opt, s, why);
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_size(const char *opt, const char *s, uint64_t min, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return bad_option(opt, s, "expected a size such as 512M or 2G");
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return bad_option(opt, s, "expected a size such as 512M or 2G");
    v <<= shift;
    if (v < min) {
        char why[96];
        snprintf(why, sizeof(why), "must be at least %s", pard__fmt_bytes(min, 0));
        return bad_option(opt, s, why);
    }
    *out = v;
    return 0;
}

enum {
    OPT_SOCKET = 256,
    OPT_LOG_LEVEL,
    OPT_SPAWN,
    OPT_WORKER,
    OPT_WORKER_SHELL,
    OPT_WAIT_MODE,
    OPT_MAX_FRAME,
    OPT_MAX_CLIENTS,
    OPT_MAX_WORKERS,
    OPT_MAX_JOBS,
    OPT_MAX_JOB_SHM,
    OPT_MAX_SHM,
    OPT_HELP,
    OPT_VERSION,
};

/* Returns -1 to go on, or an exit status. */
static int parse_args(struct pard__config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"spawn", required_argument, NULL, OPT_SPAWN},
        {"worker", required_argument, NULL, OPT_WORKER},
        {"worker-shell", no_argument, NULL, OPT_WORKER_SHELL},
        {"wait-mode", required_argument, NULL, OPT_WAIT_MODE},
        {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
        {"max-clients", required_argument, NULL, OPT_MAX_CLIENTS},
        {"max-workers", required_argument, NULL, OPT_MAX_WORKERS},
        {"max-jobs", required_argument, NULL, OPT_MAX_JOBS},
        {"max-job-shm", required_argument, NULL, OPT_MAX_JOB_SHM},
        {"max-shm", required_argument, NULL, OPT_MAX_SHM},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    bool spawn_given = false, max_shm_given = false;
    cfg->log_level = PARD__LOG_INFO;
    cfg->wait_mode = PARD_WAIT_ADAPTIVE;
    cfg->max_frame = PARD_FRAME_MAX;
    cfg->max_clients = PARD__DEFAULT_MAX_CLIENTS;
    cfg->max_workers = PARD__DEFAULT_MAX_WORKERS;
    cfg->max_jobs = PARD__DEFAULT_MAX_JOBS;
    cfg->max_job_shm = PARD__DEFAULT_MAX_JOB_SHM;
    opterr = 0;
    int c, rc = 0;
    while (rc == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "option";
        switch (c) {
        case OPT_SOCKET:
            cfg->socket_arg = optarg;
            break;
        case OPT_LOG_LEVEL:
            if (pard__log_parse_level(optarg, &cfg->log_level) != 0)
                rc = bad_option("--log-level", optarg, "expected error, warn, info or debug");
            break;
        case OPT_SPAWN:
            rc = parse_u32("--spawn", optarg, 0, 1024, &cfg->spawn);
            spawn_given = true;
            break;
        case OPT_WORKER:
            cfg->worker_cmd = optarg;
            break;
        case OPT_WORKER_SHELL:
            cfg->worker_shell = true;
            break;
        case OPT_WAIT_MODE:
            if (pard_wait_mode_parse(optarg, &cfg->wait_mode) != 0)
                rc = bad_option("--wait-mode", optarg, "expected adaptive, spin or block");
            break;
        case OPT_MAX_FRAME:
            rc = parse_u32("--max-frame", optarg, 1024, PARD_FRAME_MAX_LIMIT, &cfg->max_frame);
            break;
        case OPT_MAX_CLIENTS:
            rc = parse_u32("--max-clients", optarg, 1, 1u << 20, &cfg->max_clients);
            break;
        case OPT_MAX_WORKERS:
            rc = parse_u32("--max-workers", optarg, 1, 1u << 20, &cfg->max_workers);
            break;
        case OPT_MAX_JOBS:
            rc = parse_u32("--max-jobs", optarg, 1, 1u << 20, &cfg->max_jobs);
            break;
        case OPT_MAX_JOB_SHM:
            rc = parse_size("--max-job-shm", optarg, (uint64_t)1 << 20, &cfg->max_job_shm);
            break;
        case OPT_MAX_SHM:
            rc = parse_size("--max-shm", optarg, (uint64_t)1 << 20, &cfg->max_shm);
            max_shm_given = true;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        case OPT_VERSION:
            printf("%s\n", PARD__VERSION_STRING);
            return 0;
        case ':':
            fprintf(stderr, "pard: %s needs a value (see pard --help)\n", name);
            return 2;
        default:
            fprintf(stderr, "pard: unknown option '%s' (see pard --help)\n", name);
            return 2;
        }
    }
    if (rc != 0)
        return rc;
    if (optind < argc) {
        fprintf(stderr, "pard: unexpected argument '%s' (see pard --help)\n", argv[optind]);
        return 2;
    }
    if (spawn_given && cfg->spawn > 0 && !cfg->worker_cmd) {
        fprintf(stderr, "pard: --spawn needs --worker CMD, the program to start\n");
        return 2;
    }
    if (cfg->worker_cmd && !spawn_given) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->spawn = n > 0 ? (uint32_t)n : 1;
    }
    if (cfg->worker_shell && !cfg->worker_cmd) {
        fprintf(stderr, "pard: --worker-shell needs --worker CMD\n");
        return 2;
    }
    if (!max_shm_given)
        cfg->max_shm = default_max_shm();
    return -1;
}

/* ======================================================================
 * Shutdown
 * ====================================================================== */

static void on_signal(uv_signal_t *h, int signum)
{
    struct pard__daemon *d = h->data;
    if (!d->stopping) {
        pard__shutdown(d, signum == SIGTERM ? "SIGTERM received" : "SIGINT received");
    } else {
        pard__log_warn("%s again: killing the workers now", strsignal(signum));
        pard__supervise_kill_now(d);
    }
}

void pard__shutdown(struct pard__daemon *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = true;
    pard__log_info("shutting down: %s", why);
    pard__listen_stop(d);
    pard__watch_close(d);
    pard__jobs_shutdown(d);

    struct pard__list *pos, *tmp;
    PARD__LIST_FOREACH_SAFE(pos, tmp, &d->sessions)
    {
        struct pard__session *s = PARD__CONTAINER(pos, struct pard__session, link);
        pard__session_send_error(s, -PARD_EDAEMON, 0, "pard is shutting down (%s)", why);
    }
    PARD__LIST_FOREACH_SAFE(pos, tmp, &d->sessions)
    {
        struct pard__session *s = PARD__CONTAINER(pos, struct pard__session, link);
        pard__session_close(s, "pard is shutting down");
    }
    pard__jobs_free_all(d);
    pard__shares_free_all(d);
    uv_close((uv_handle_t *)&d->reaper, NULL);
    pard__supervise_stop(d); /* calls pard__shutdown_finish when done */
}

void pard__shutdown_finish(struct pard__daemon *d)
{
    if (d->finished)
        return;
    d->finished = true;
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
}

/*
 * Whoever started pard may have left descriptors open (a shell's pipes, a
 * test runner's): pard's own are all close-on-exec, and so that workers
 * it spawns inherit nothing of those either, mark every inherited one
 * above stderr close-on-exec too. They stay open for pard itself.
 */
static void keep_inherited_fds_from_workers(void)
{
#ifdef CLOSE_RANGE_CLOEXEC
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
#endif
    DIR *dp = opendir("/proc/self/fd");
    if (!dp)
        return;
    for (struct dirent *e; (e = readdir(dp));) {
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != dirfd(dp)) {
            int flags = fcntl(fd, F_GETFD);
            if (flags >= 0 && !(flags & FD_CLOEXEC))
                fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }
    closedir(dp);
}
/* ======================================================================
 * main
 * ====================================================================== */

static void raise_fd_limit(void)
{
    /* Each client costs a descriptor, each job one more. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        if (want == RLIM_INFINITY || want > 65536)
            want = 65536;
        if (want > rl.rlim_cur) {
            rl.rlim_cur = want;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
}

static void report_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    pard__log_error("internal: a %s handle is still open at exit", uv_handle_type_name(h->type));
}

int main(int argc, char **argv)
{
    struct pard__daemon daemon;
    struct pard__daemon *d = &daemon;
    memset(d, 0, sizeof(*d));
    int rc = parse_args(&d->cfg, argc, argv);
    if (rc >= 0)
        return rc;
    pard__log_set_level(d->cfg.log_level);
    signal(SIGPIPE, SIG_IGN); /* we send with MSG_NOSIGNAL; belt and braces */

    d->pid = getpid();
    d->uid = getuid();
    d->start_ns = pard_now_ns();
    d->listen_fd = -1;
    d->lock_fd = -1;
    d->exit_code = 0;
    pard__list_init(&d->sessions);
    pard__list_init(&d->reap);
    pard__list_init(&d->jobs);
    pard__list_init(&d->shares);

    rc = pard_socket_path(d->cfg.socket_arg, d->socket_path, sizeof(d->socket_path));
    if (rc != 0) {
        fprintf(stderr,
                "pard: the socket path is too long (at most %zu bytes); use a shorter "
                "--socket\n",
                sizeof(d->socket_path) - 1);
        return 1;
    }
    raise_fd_limit();
    keep_inherited_fds_from_workers();

    d->msg_in = malloc(sizeof(*d->msg_in));
    d->msg_out = malloc(sizeof(*d->msg_out));
    d->enccap = PARD_FRAME_HEADER + PARD_FRAME_MAX_CLIENT;
    d->encbuf = malloc(d->enccap);
    if (!d->msg_in || !d->msg_out || !d->encbuf) {
        fprintf(stderr, "pard: out of memory\n");
        return 1;
    }
    if ((rc = uv_loop_init(&d->loop)) != 0) {
        fprintf(stderr, "pard: cannot start the event loop: %s\n", uv_strerror(rc));
        return 1;
    }

    /* Signals first: once the socket exists, a SIGTERM must be a clean
     * shutdown (libuv queues it until the loop runs), never the default
     * death that leaves the socket and the lock file behind. */
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    d->sig_term.data = d->sig_int.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);

    rc = pard__listen_open(d);
    if (rc != 0) {
        d->stopping = true;
        uv_close((uv_handle_t *)&d->sig_term, NULL);
        uv_close((uv_handle_t *)&d->sig_int, NULL);
        pard__listen_stop(d);
        uv_run(&d->loop, UV_RUN_DEFAULT); /* let the closes finish */
        pard__listen_cleanup(d);
        uv_loop_close(&d->loop);
        free(d->msg_in);
        free(d->msg_out);
        free(d->encbuf);
        uv_library_shutdown();
        return 1;
    }

    uv_idle_init(&d->loop, &d->reaper);
    d->reaper.data = d;
    uv_timer_init(&d->loop, &d->stop_timer);
    d->stop_timer.data = d;
    d->stop_timer_open = true;
    if ((rc = pard__watch_init(d)) != 0) {
        pard__log_error("cannot start timers: %s", uv_strerror(rc));
        d->exit_code = 1;
        pard__shutdown(d, "start-up failed");
    }

    if (!d->stopping) {
        pard__log_info("%s ready on %s (pid %d, uid %u); clients find it there, or with "
                       "PARD_SOCKET=%s",
                       PARD__VERSION_STRING, d->socket_path, (int)d->pid, (unsigned)d->uid,
                       d->socket_path);
        pard__log_debug("limits: frame %u bytes, %u clients, %u workers, %u jobs, %s per job, "
                        "%s in total",
                        d->cfg.max_frame, d->cfg.max_clients, d->cfg.max_workers, d->cfg.max_jobs,
                        pard__fmt_bytes(d->cfg.max_job_shm, 0), pard__fmt_bytes(d->cfg.max_shm, 1));
        if ((rc = pard__supervise_start(d)) != 0) {
            d->exit_code = 1;
            pard__shutdown(d, "the workers could not be started");
        }
    }

    uv_run(&d->loop, UV_RUN_DEFAULT);

    pard__listen_cleanup(d);
    rc = uv_loop_close(&d->loop);
    if (rc != 0) {
        uv_walk(&d->loop, report_handle, NULL);
        d->exit_code = d->exit_code ? d->exit_code : 1;
    }
    pard__supervise_free(d);
    free(d->msg_in);
    free(d->msg_out);
    free(d->encbuf);
    uv_library_shutdown();
    if (d->exit_code == 0)
        pard__log_info("stopped");
    return d->exit_code;
}
