/*
 * spinner.c — the guide's opening demonstration: a spinner that freezes
 * while a slow read runs on the main thread, and keeps turning when the
 * same read runs on a worker thread.
 *
 * The "slow read" is real blocking I/O: a child process writes a few
 * kilobytes into a pipe, a chunk at a time with pauses in between (a slow
 * disk or network), and the program reads all of it before it goes on, the
 * way a program loads its input. Each phase draws the spinner from the
 * main thread's loop, every 50 ms when it is free to:
 *
 *   phase 1 "blocking": the main thread calls the read itself, so no frame
 *            can be drawn until the read returns;
 *   phase 2 "thread":   a worker thread calls the same read, and the main
 *            thread keeps drawing until the worker says it is done.
 *
 * On a terminal it animates; with --plain (or when standard output is not
 * a terminal) it prints, for each phase, a line a test can read:
 *
 *   phase=blocking io_ms=1001 frames_during_io=0 longest_gap_ms=1001
 *   phase=thread io_ms=1002 frames_during_io=19 longest_gap_ms=51
 *
 * frames_during_io counts the frames drawn after the read started and
 * before it finished: 0 when the main thread was the one blocked, one per
 * 50 ms when a worker was. --frames also prints every frame's time.
 *
 * Usage: pard-spinner [--plain] [--frames] [--seconds S]   (default 2)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME_NS    50000000LL /* one spinner frame every 50 ms */
#define CHUNKS      10         /* the child writes its data in this many pieces */
#define CHUNK_BYTES 4096
#define MAX_FRAMES  4096

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The slow source: CHUNKS pieces over `total_ns`, then end of file. Runs in
 * a child process and never returns. */
static void slow_writer(int fd, int64_t total_ns)
{
    char chunk[CHUNK_BYTES];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < CHUNKS; i++) {
        sleep_ns(total_ns / CHUNKS);
        if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
            _exit(1);
    }
    _exit(0);
}

/* One slow read: start the writer, read everything it writes, reap it.
 * This is the blocking call both phases make; it returns the bytes read,
 * or -1 (with a message) on failure. */
struct io {
    int64_t total_ns;  /* how slow the writer is */
    int64_t start_ns;  /* when the read started */
    int64_t end_ns;    /* when it finished */
    long bytes;        /* what it read, or -1 */
    _Atomic bool done; /* set (release) when end_ns and bytes are final */
};

static void slow_read(struct io *io)
{
    int p[2];
    io->bytes = -1;
    io->start_ns = now_ns();
    if (pipe(p) != 0) {
        perror("pard-spinner: pipe");
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("pard-spinner: fork");
        close(p[0]);
        close(p[1]);
        goto out;
    }
    if (pid == 0) {
        close(p[0]);
        slow_writer(p[1], io->total_ns);
    }
    close(p[1]);
    long got = 0;
    char buf[CHUNK_BYTES];
    for (;;) {
        ssize_t n = read(p[0], buf, sizeof(buf)); /* blocks until the child writes */
        if (n > 0)
            got += n;
        else if (n == 0)
            break;
        else if (errno != EINTR) {
            perror("pard-spinner: read");
            break;
        }
    }
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got == (long)CHUNKS * CHUNK_BYTES && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        io->bytes = got;
    else
        fprintf(stderr, "pard-spinner: the slow writer failed (%ld bytes)\n", got);
out:
    io->end_ns = now_ns();
    atomic_store_explicit(&io->done, true, memory_order_release); /* publishes end_ns, bytes */
}

static void *worker(void *arg)
{
    slow_read(arg);
    return NULL;
}

struct opts {
    bool plain;
    bool frames;
    int64_t total_ns;
};

struct phase {
    const char *name;
    int64_t t[MAX_FRAMES]; /* each frame's time */
    int n;
};

static void draw(const struct opts *o, struct phase *ph, int64_t t0, const char *what)
{
    static const char wheel[] = "|/-\\";
    int64_t t = now_ns();
    if (ph->n < MAX_FRAMES)
        ph->t[ph->n] = t;
    if (o->plain) {
        if (o->frames)
            printf("frame phase=%s n=%d t_ms=%.1f\n", ph->name, ph->n, (double)(t - t0) / 1e6);
    } else {
        printf("\r  %c  %s  %4.1f s ", wheel[ph->n % 4], what, (double)(t - t0) / 1e9);
        fflush(stdout);
    }
    ph->n++;
}

/* Runs one phase and prints its summary; returns 0 or 1 (the read failed). */
static int run_phase(const struct opts *o, struct phase *ph, bool threaded)
{
    struct io io = {.total_ns = o->total_ns};
    atomic_init(&io.done, false);
    const char *what = threaded ? "reading on a worker thread; the main thread keeps drawing"
                                : "reading on the main thread; nothing else can happen   ";
    pthread_t th;
    int64_t t0 = now_ns();
    ph->n = 0;
    if (threaded) {
        int rc = pthread_create(&th, NULL, worker, &io);
        if (rc != 0) {
            fprintf(stderr, "pard-spinner: pthread_create: %s\n", strerror(rc));
            return 1;
        }
    }
    /* The main loop: draw a frame, then do what is due. In the blocking
     * phase, what is due the first time round is the read itself. */
    bool started = threaded;
    while (!atomic_load_explicit(&io.done, memory_order_acquire)) {
        draw(o, ph, t0, what);
        if (!started) {
            started = true;
            slow_read(&io);
        } else {
            sleep_ns(FRAME_NS);
        }
    }
    draw(o, ph, t0, what); /* the first frame after the read */
    if (threaded)
        pthread_join(th, NULL);

    int during = 0;
    int64_t gap = 0;
    for (int i = 0; i < ph->n && i < MAX_FRAMES; i++) {
        if (ph->t[i] > io.start_ns && ph->t[i] < io.end_ns)
            during++;
        if (i > 0 && ph->t[i] - ph->t[i - 1] > gap)
            gap = ph->t[i] - ph->t[i - 1];
    }
    double io_ms = (double)(io.end_ns - io.start_ns) / 1e6;
    if (o->plain)
        printf("phase=%s io_ms=%.0f frames_during_io=%d longest_gap_ms=%.0f\n", ph->name, io_ms,
               during, (double)gap / 1e6);
    else
        printf("\n     %d frames while the read ran (%.1f s); the spinner's longest pause: "
               "%.2f s\n\n",
               during, io_ms / 1e3, (double)gap / 1e9);
    fflush(stdout);
    return io.bytes < 0;
}

static void usage(FILE *f)
{
    fputs("usage: pard-spinner [--plain] [--frames] [--seconds S]\n"
          "\n"
          "Shows a spinner while a slow read (a child process writing into a pipe,\n"
          "a chunk at a time, for S seconds; default 2) runs first on the main\n"
          "thread, where the spinner freezes, then on a worker thread, where it\n"
          "keeps turning.\n"
          "\n"
          "  --plain     no animation: one summary line per phase (the default\n"
          "              when standard output is not a terminal)\n"
          "  --frames    with --plain, also one line per frame\n"
          "  --seconds S how long the slow read takes (0.1 to 60)\n",
          f);
}

int main(int argc, char **argv)
{
    struct opts o = {.plain = !isatty(STDOUT_FILENO), .total_ns = 2000000000LL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--plain") == 0) {
            o.plain = true;
        } else if (strcmp(argv[i], "--frames") == 0) {
            o.frames = true;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            char *end;
            double s = strtod(argv[++i], &end);
            if (*end != '\0' || !(s >= 0.1 && s <= 60)) {
                fprintf(stderr, "pard-spinner: --seconds wants a number from 0.1 to 60\n");
                return 2;
            }
            o.total_ns = (int64_t)(s * 1e9);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "pard-spinner: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    static struct phase blocking = {.name = "blocking"}, threaded = {.name = "thread"};
    if (!o.plain)
        printf("1. The slow read on the main thread: the spinner stops.\n");
    int rc = run_phase(&o, &blocking, false);
    if (!o.plain)
        printf("2. The same read on a worker thread: the spinner keeps turning.\n");
    rc |= run_phase(&o, &threaded, true);
    return rc;
}
