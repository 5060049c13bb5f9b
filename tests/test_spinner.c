/*
 * test_spinner.c — the guide's terminal demonstration, pard-spinner, does
 * what the guide says: while the slow read blocks the main thread, the
 * spinner draws no frame; while a worker thread does the same read, the
 * main thread keeps drawing. The check counts frames (a logical property:
 * none can be drawn by a thread that is blocked in read), never times;
 * the times are logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "helpers.h"

#define SPINNER PARD_BUILD_DIR "/clients/pard-spinner"

struct phase_line {
    int seen;
    double io_ms;
    int frames;
    double gap_ms;
};

/* Runs the spinner with `args`, parses its two summary lines and counts
 * its per-frame lines; returns its exit status. */
static int run_spinner(const char *args, struct phase_line *blocking, struct phase_line *thread,
                       int *frame_lines)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s %s", SPINNER, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    char line[256];
    *frame_lines = 0;
    while (fgets(line, sizeof(line), p)) {
        char name[32];
        struct phase_line ph = {.seen = 1};
        if (strncmp(line, "frame ", 6) == 0) {
            (*frame_lines)++;
        } else if (sscanf(line, "phase=%31s io_ms=%lf frames_during_io=%d longest_gap_ms=%lf", name,
                          &ph.io_ms, &ph.frames, &ph.gap_ms) == 4) {
            if (strcmp(name, "blocking") == 0)
                *blocking = ph;
            else if (strcmp(name, "thread") == 0)
                *thread = ph;
            else
                cr_assert_fail("unknown phase in: %s", line);
        } else {
            cr_assert_fail("unexpected output: %s", line);
        }
    }
    int st = pclose(p);
    cr_assert(WIFEXITED(st), "pard-spinner did not exit normally (status %d)", st);
    return WEXITSTATUS(st);
}

Test(spinner, freezes_on_the_main_thread_and_turns_on_a_worker, .timeout = 60)
{
    struct phase_line b = {0}, t = {0};
    int frame_lines;
    int rc = run_spinner("--plain --frames --seconds 0.5", &b, &t, &frame_lines);
    cr_assert_eq(rc, 0, "pard-spinner exited %d", rc);
    cr_assert(b.seen && t.seen, "both phases must print a summary");
    cr_log_info("blocking: read %.0f ms, %d frames during it, longest gap %.0f ms", b.io_ms,
                b.frames, b.gap_ms);
    cr_log_info("thread:   read %.0f ms, %d frames during it, longest gap %.0f ms", t.io_ms,
                t.frames, t.gap_ms);
    fprintf(stderr,
            "spinner: blocking %d frames during a %.0f ms read (gap %.0f ms); thread %d "
            "frames during a %.0f ms read (gap %.0f ms)\n",
            b.frames, b.io_ms, b.gap_ms, t.frames, t.io_ms, t.gap_ms);
    /* The main thread is inside read() for the whole blocking read. */
    cr_assert_leq(b.frames, 1, "the spinner turned while its own thread was blocked (%d frames)",
                  b.frames);
    /* With the read on a worker, the main thread is free to draw. */
    cr_assert_gt(t.frames, b.frames, "the spinner did not turn while a worker read (%d frames)",
                 t.frames);
    /* Every frame was printed: at least the one before and the one after
     * each read. */
    cr_assert_geq(frame_lines, 4 + t.frames, "%d frame lines", frame_lines);
}

Test(spinner, rejects_bad_arguments, .timeout = 30)
{
    struct phase_line b = {0}, t = {0};
    int frame_lines;
    cr_assert_eq(run_spinner("--seconds 0 2>/dev/null", &b, &t, &frame_lines), 2);
    cr_assert_eq(run_spinner("--bogus 2>/dev/null", &b, &t, &frame_lines), 2);
    cr_assert(!b.seen && !t.seen, "no phase may run after a bad argument");
}
