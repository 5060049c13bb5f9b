/*
 * parctl — control and use a running pard daemon from the shell.
 *
 *   parctl status                     is pard up? workers, jobs, rate
 *   parctl stats [--json]             every counter
 *   parctl workers | jobs             what is connected and running
 *   parctl cancel JOB                 cancel a job
 *   parctl shutdown                   stop the daemon
 *   parctl map [opts] FUNCTION [FILE] one input per line, one output per line
 *
 * Owns: argument parsing, printing, and the line-oriented map. All talking
 * to the daemon goes through libpard and the protocol library.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pard/pard.h"
#include "pard/job.h"
#include "pard/proto.h"

static const char *socket_path;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: parctl [--socket PATH] COMMAND [ARGS]\n"
            "\n"
            "Commands:\n"
            "  status                  whether pard runs, its workers, jobs and task rate\n"
            "  stats [--json]          every daemon counter\n"
            "  workers                 connected workers and what they serve\n"
            "  jobs                    running jobs and their progress\n"
            "  top [--interval S]      status, jobs and workers, refreshed until Ctrl-C\n"
            "  cancel JOB              cancel a running job\n"
            "  shutdown                stop the daemon (workers and jobs are told); returns\n"
            "                          once it has stopped (10 s at most)\n"
            "  wait [N] [--timeout S]  wait until the daemon answers with at least N workers\n"
            "                          (default 1) registered; exit 1 after S seconds (10)\n"
            "  map [OPTIONS] FUNCTION [FILE]\n"
            "                          run FUNCTION on each line of FILE (default: standard\n"
            "                          input); print one output line per input line, in input\n"
            "                          order. Failed tasks are reported on standard error as\n"
            "                          'parctl: task INDEX: MESSAGE' and make the exit status 1.\n"
            "    --unordered           print results as they finish, each as 'INDEX<TAB>OUTPUT'\n"
            "    --batch N|auto        tasks per batch; auto (the default) sizes batches from\n"
            "                          the measured task time (~0.2 ms per batch)\n"
            "    --quiet               no progress bar (it is shown only on a terminal anyway)\n"
            "    --timeout MS          per-task time limit in milliseconds (default none)\n"
            "    --retries N           re-run a task that timed out or crashed (default 0)\n"
            "    --wait MODE           spin, adaptive (default) or block\n"
            "\n"
            "The socket is --socket PATH, else $PARD_SOCKET, else $XDG_RUNTIME_DIR/pard.sock,\n"
            "else /tmp/pard-$UID/pard.sock.\n"
            "Exit status: 0 success, 1 a task or the command failed, 2 usage error.\n");
}

static int die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "parctl: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try parctl --help)\n");
    return 2;
}

/* ----------------------------------------------------------------------
 * Control requests
 * ---------------------------------------------------------------------- */

struct control {
    int fd;
    struct pard_frame_reader reader;
    struct pard_msg *msg;
};

static int control_open(struct control *c)
{
    c->msg = calloc(1, sizeof(*c->msg));
    pard_frame_reader_init(&c->reader, PARD_FRAME_MAX_LIMIT);
    struct pard_client *client;
    int rc = pard_connect_control(&client, socket_path);
    if (rc != 0) {
        fprintf(stderr, "parctl: %s\n", pard_last_error());
        return rc;
    }
    c->fd = dup(pard_client_fd(client));
    pard_disconnect(client);
    return 0;
}

static void control_close(struct control *c)
{
    if (c->fd >= 0)
        close(c->fd);
    pard_frame_reader_destroy(&c->reader);
    free(c->msg);
}

/* Send a request of `type` and read the reply into c->msg. */
static int request(struct control *c, enum pard_msg_type type, uint64_t job_id)
{
    pard_msg_init(c->msg, type);
    if (type == PARD_MSG_CANCEL)
        c->msg->cancel.job_id = job_id;
    int rc = pard_sock_send_msg(c->fd, c->msg, -1);
    if (rc == 0)
        rc = pard_sock_recv_msg(c->fd, &c->reader, c->msg, 5000, NULL);
    if (rc != 0) {
        fprintf(stderr, "parctl: no answer from pard: %s\n", pard_strerror(rc));
        return 1;
    }
    if (c->msg->type == PARD_MSG_ERROR) {
        fprintf(stderr, "parctl: %s\n", c->msg->error.message);
        return 1;
    }
    return 0;
}

static int cmd_stats(bool json, bool brief)
{
    struct control c = {.fd = -1};
    if (control_open(&c) != 0) {
        control_close(&c);
        return 1;
    }
    int rc = request(&c, PARD_MSG_STATS, 0);
    if (rc == 0 && c.msg->type == PARD_MSG_STATS_REPLY) {
        const struct pard_msg_stats_reply *s = &c.msg->stats_reply;
        if (json) {
            printf("{\"pid\":%u,\"version\":\"%s\",\"uptime_ms\":%llu,\"workers\":%llu,"
                   "\"idle_workers\":%llu,\"jobs\":%llu,\"tasks_done\":%llu,"
                   "\"tasks_per_sec\":%.1f,\"requeues\":%llu,\"timeouts\":%llu,"
                   "\"worker_deaths\":%llu,\"shm_bytes\":%llu}\n",
                   s->pid, s->version_string, (unsigned long long)s->uptime_ms,
                   (unsigned long long)s->workers, (unsigned long long)s->idle_workers,
                   (unsigned long long)s->jobs, (unsigned long long)s->tasks_done, s->tasks_per_sec,
                   (unsigned long long)s->requeues, (unsigned long long)s->timeouts,
                   (unsigned long long)s->worker_deaths, (unsigned long long)s->shm_bytes);
        } else if (brief) {
            printf("pard is running (pid %u, %s, up %.1f s)\n"
                   "  workers: %llu (%llu idle)\n"
                   "  jobs:    %llu running\n"
                   "  tasks:   %llu done, %.0f/s\n",
                   s->pid, s->version_string, (double)s->uptime_ms / 1e3,
                   (unsigned long long)s->workers, (unsigned long long)s->idle_workers,
                   (unsigned long long)s->jobs, (unsigned long long)s->tasks_done,
                   s->tasks_per_sec);
        } else {
            printf("pid            %u\nversion        %s\nuptime_ms      %llu\n"
                   "workers        %llu\nidle_workers   %llu\njobs           %llu\n"
                   "tasks_done     %llu\ntasks_per_sec  %.1f\nrequeues       %llu\n"
                   "timeouts       %llu\nworker_deaths  %llu\nshm_bytes      %llu\n",
                   s->pid, s->version_string, (unsigned long long)s->uptime_ms,
                   (unsigned long long)s->workers, (unsigned long long)s->idle_workers,
                   (unsigned long long)s->jobs, (unsigned long long)s->tasks_done, s->tasks_per_sec,
                   (unsigned long long)s->requeues, (unsigned long long)s->timeouts,
                   (unsigned long long)s->worker_deaths, (unsigned long long)s->shm_bytes);
        }
    } else if (rc == 0) {
        fprintf(stderr, "parctl: unexpected reply %s\n", pard_msg_type_name(c.msg->type));
        rc = 1;
    }
    control_close(&c);
    return rc;
}

static int cmd_workers(void)
{
    struct control c = {.fd = -1};
    if (control_open(&c) != 0) {
        control_close(&c);
        return 1;
    }
    int rc = request(&c, PARD_MSG_LIST_WORKERS, 0);
    if (rc == 0 && c.msg->type == PARD_MSG_WORKERS_REPLY) {
        const struct pard_msg_workers_reply *r = &c.msg->workers_reply;
        printf("%-6s %-8s %-20s %-8s %-10s %s\n", "ID", "PID", "NAME", "JOB", "TASKS", "FUNCTIONS");
        for (uint32_t i = 0; i < r->nworkers; i++) {
            const struct pard_msg_worker_entry *w = &r->workers[i];
            printf("%-6llu %-8u %-20s ", (unsigned long long)w->id, w->pid,
                   w->name[0] ? w->name : "-");
            if (w->job_id)
                printf("%-8llu ", (unsigned long long)w->job_id);
            else
                printf("%-8s ", "idle");
            printf("%-10llu ", (unsigned long long)w->tasks_done);
            for (uint32_t k = 0; k < w->nfunctions; k++)
                printf("%s%s", k ? "," : "", w->functions[k]);
            printf("\n");
        }
    } else if (rc == 0) {
        rc = 1;
    }
    control_close(&c);
    return rc;
}

static int cmd_jobs(void)
{
    struct control c = {.fd = -1};
    if (control_open(&c) != 0) {
        control_close(&c);
        return 1;
    }
    int rc = request(&c, PARD_MSG_LIST_JOBS, 0);
    if (rc == 0 && c.msg->type == PARD_MSG_JOBS_REPLY) {
        const struct pard_msg_jobs_reply *r = &c.msg->jobs_reply;
        printf("%-6s %-16s %-10s %-8s %-6s %-10s %-10s %-8s %s\n", "ID", "FUNCTION", "STATE", "PID",
               "LANES", "SUBMITTED", "DONE", "FAILED", "AGE");
        for (uint32_t i = 0; i < r->njobs; i++) {
            const struct pard_msg_job_entry *j = &r->jobs[i];
            printf("%-6llu %-16s %-10s %-8u %-6u %-10llu %-10llu %-8llu %.1fs\n",
                   (unsigned long long)j->id, j->function, j->state, j->submitter_pid, j->lanes,
                   (unsigned long long)j->submitted, (unsigned long long)j->delivered,
                   (unsigned long long)j->failed, (double)j->age_ms / 1e3);
        }
    } else if (rc == 0) {
        rc = 1;
    }
    control_close(&c);
    return rc;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static volatile sig_atomic_t top_stop;

static void on_top_signal(int sig)
{
    (void)sig;
    top_stop = 1;
}

/* Redraw status, jobs and workers every interval until Ctrl-C. */
static int cmd_top(int argc, char **argv)
{
    uint32_t interval = 1;
    if (argc > 2 && strcmp(argv[1], "--interval") == 0 && parse_u32(argv[2], &interval) != 0)
        return die_usage("--interval wants seconds, not '%s'", argv[2]);
    if (interval == 0)
        interval = 1;
    struct sigaction sa = {.sa_handler = on_top_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool tty = isatty(STDOUT_FILENO);
    while (!top_stop) {
        if (tty)
            printf("\033[H\033[2J"); /* home, clear */
        int rc = cmd_stats(false, true);
        if (rc == 0) {
            printf("\n");
            rc = cmd_jobs();
        }
        if (rc == 0) {
            printf("\n");
            rc = cmd_workers();
        }
        fflush(stdout);
        if (rc != 0)
            return rc;
        for (uint32_t t = 0; t < interval * 10 && !top_stop; t++)
            usleep(100000);
    }
    return 0;
}

/* Wait for the daemon to come up with at least `want` workers. */
static int cmd_wait(int argc, char **argv)
{
    uint32_t want = 1, timeout_s = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (parse_u32(argv[++i], &timeout_s) != 0)
                return die_usage("--timeout wants seconds, not '%s'", argv[i]);
        } else if (parse_u32(argv[i], &want) != 0) {
            return die_usage("wait wants a number of workers, not '%s'", argv[i]);
        }
    }
    int64_t deadline = pard_now_ns() + (int64_t)timeout_s * 1000000000;
    uint64_t have = 0;
    do {
        struct pard_client *client;
        if (pard_connect_control(&client, socket_path) == 0) {
            struct control c = {.fd = dup(pard_client_fd(client))};
            pard_disconnect(client);
            c.msg = calloc(1, sizeof(*c.msg));
            pard_frame_reader_init(&c.reader, PARD_FRAME_MAX_LIMIT);
            pard_msg_init(c.msg, PARD_MSG_STATS);
            if (pard_sock_send_msg(c.fd, c.msg, -1) == 0 &&
                pard_sock_recv_msg(c.fd, &c.reader, c.msg, 2000, NULL) == 0 &&
                c.msg->type == PARD_MSG_STATS_REPLY)
                have = c.msg->stats_reply.workers;
            control_close(&c);
            if (have >= want)
                return 0;
        }
        usleep(20000);
    } while (pard_now_ns() < deadline);
    fprintf(stderr, "parctl: %llu of %u workers after %u s\n", (unsigned long long)have, want,
            timeout_s);
    return 1;
}

static int cmd_simple(enum pard_msg_type type, uint64_t job_id, const char *done)
{
    struct control c = {.fd = -1};
    if (control_open(&c) != 0) {
        control_close(&c);
        return 1;
    }
    int rc = request(&c, type, job_id);
    if (rc == 0)
        printf("%s\n", done);
    control_close(&c);
    return rc;
}

/*
 * shutdown: ask, then wait (10 s at most) until the daemon has let go of
 * its lock file, so that a pard started right after on the same socket
 * does not find the old one still there (it holds the lock until it has
 * told its workers and jobs and exited).
 */
static int cmd_shutdown(void)
{
    int rc = cmd_simple(PARD_MSG_SHUTDOWN, 0, "pard is shutting down");
    if (rc != 0)
        return rc;
    char sock[4096], lock[4200];
    if (pard_socket_path(socket_path, sock, sizeof(sock)) != 0)
        return 0;
    snprintf(lock, sizeof(lock), "%s.lock", sock);
    for (int t = 0; t < 1000; t++) {
        int fd = open(lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return 0; /* removed: it is gone, or going with nothing left to free */
        int held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        close(fd);
        if (!held)
            return 0;
        usleep(10000);
    }
    fprintf(stderr, "parctl: pard still holds %s after 10 s\n", lock);
    return 1;
}

/* ----------------------------------------------------------------------
 * map
 * ---------------------------------------------------------------------- */

struct lines {
    FILE *in;
    char *line;
    size_t cap;
    bool unordered;
    uint64_t failed;
};

/* Count the lines of a regular file, then rewind: the bar's total. */
static uint64_t count_lines(FILE *f)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    uint64_t n = 0;
    char buf[65536];
    size_t got, last = '\n';
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
        for (size_t i = 0; i < got; i++)
            n += buf[i] == '\n';
        last = (unsigned char)buf[got - 1];
    }
    if (last != '\n')
        n++;
    rewind(f);
    return n;
}

static int next_line(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct lines *l = arg;
    ssize_t n = getline(&l->line, &l->cap, l->in);
    if (n < 0)
        return ferror(l->in) ? -EIO : 0;
    if (n > 0 && l->line[n - 1] == '\n')
        n--;
    *data = l->line;
    *len = (size_t)n;
    return 1;
}

static int print_result(void *arg, const struct pard_result *r)
{
    struct lines *l = arg;
    if (r->status != 0) {
        l->failed++;
        fprintf(stderr, "parctl: task %llu: %.*s\n", (unsigned long long)r->index, (int)r->len,
                (const char *)r->data);
        if (!l->unordered)
            fputc('\n', stdout); /* keep output lines aligned with input lines */
        return 0;
    }
    if (l->unordered)
        printf("%llu\t", (unsigned long long)r->index);
    fwrite(r->data, 1, r->len, stdout);
    fputc('\n', stdout);
    return 0;
}

static struct pard_client *map_client;

static void on_interrupt(int sig)
{
    (void)sig;
    if (map_client)
        pard_cancel(map_client);
}

static int cmd_map(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"unordered", no_argument, NULL, 'u'},     {"batch", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 't'}, {"retries", required_argument, NULL, 'r'},
        {"wait", required_argument, NULL, 'w'},    {"help", no_argument, NULL, 'h'},
        {"quiet", no_argument, NULL, 'q'},         {NULL, 0, NULL, 0}};
    struct pard_map_opts opts = {0};
    struct lines l = {0};
    bool quiet = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            opts.unordered = true;
            break;
        case 'b':
            if (strcmp(optarg, "auto") == 0)
                opts.batch = PARD_BATCH_AUTO;
            else if (parse_u32(optarg, &opts.batch) != 0 || opts.batch == 0)
                return die_usage("--batch wants a positive number or auto, not '%s'", optarg);
            break;
        case 'q':
            quiet = true;
            break;
        case 't':
            if (parse_u32(optarg, &opts.timeout_ms) != 0)
                return die_usage("--timeout wants milliseconds, not '%s'", optarg);
            break;
        case 'r':
            if (parse_u32(optarg, &opts.retries) != 0)
                return die_usage("--retries wants a number, not '%s'", optarg);
            break;
        case 'w':
            if (pard_wait_mode_parse(optarg, &opts.wait_mode) != 0)
                return die_usage("--wait wants spin, adaptive or block, not '%s'", optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind >= argc)
        return die_usage("map needs a FUNCTION%s", "");
    const char *function = argv[optind++];
    l.in = stdin;
    if (optind < argc) {
        l.in = fopen(argv[optind], "r");
        if (!l.in) {
            fprintf(stderr, "parctl: cannot open %s: %s\n", argv[optind], strerror(errno));
            return 1;
        }
        optind++;
    }
    if (optind < argc)
        return die_usage("unexpected argument '%s'", argv[optind]);
    l.unordered = opts.unordered;
    /* libpard draws the bar (only when stderr is a terminal); counting a
     * regular file's lines first gives it a total, hence an ETA. */
    opts.progress = !quiet && isatty(STDERR_FILENO);
    if (opts.progress)
        opts.total = count_lines(l.in);

    int rc = pard_connect(&map_client, socket_path);
    if (rc != 0) {
        fprintf(stderr, "parctl: %s\n", pard_last_error());
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_interrupt};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct pard_map_stats st;
    rc = pard_map(map_client, function, next_line, print_result, &l, &opts, &st);
    fflush(stdout);
    if (rc != 0)
        fprintf(stderr, "parctl: map %s: %s\n", function,
                *pard_last_error() ? pard_last_error() : pard_strerror(rc));
    else if (l.failed)
        fprintf(stderr, "parctl: %llu of %llu tasks failed\n", (unsigned long long)l.failed,
                (unsigned long long)st.tasks);
    pard_disconnect(map_client);
    free(l.line);
    if (l.in != stdin)
        fclose(l.in);
    if (rc == -PARD_ECANCELED)
        return 130;
    return rc != 0 || l.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            socket_path = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("parctl %s\n", PARD_VERSION_STRING);
            return 0;
        } else {
            break;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[i];
    int rest = argc - i;
    char **args = argv + i;
    if (strcmp(cmd, "status") == 0)
        return cmd_stats(false, true);
    if (strcmp(cmd, "stats") == 0)
        return cmd_stats(rest > 1 && strcmp(args[1], "--json") == 0, false);
    if (strcmp(cmd, "workers") == 0)
        return cmd_workers();
    if (strcmp(cmd, "jobs") == 0)
        return cmd_jobs();
    if (strcmp(cmd, "shutdown") == 0)
        return cmd_shutdown();
    if (strcmp(cmd, "cancel") == 0) {
        if (rest < 2)
            return die_usage("cancel needs a JOB id%s", "");
        return cmd_simple(PARD_MSG_CANCEL, strtoull(args[1], NULL, 10), "cancelled");
    }
    if (strcmp(cmd, "map") == 0)
        return cmd_map(rest, args);
    if (strcmp(cmd, "wait") == 0)
        return cmd_wait(rest, args);
    if (strcmp(cmd, "top") == 0)
        return cmd_top(rest, args);
    return die_usage("unknown command '%s'", cmd);
}
