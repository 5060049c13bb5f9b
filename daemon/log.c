/*
 * log.c — the daemon's log: one line per event on stderr,
 *
 *     pard[1234]: warn: worker pid 77 (client 5) died while serving job 3 ...
 *
 * with a level filter (--log-level). Lines carry their context (which
 * client, which job, what happened, what to do) in the message itself.
 *
 * Owns: the level and the line format. Must not: allocate, or write a line
 * in more than one system call (workers started with --spawn share the
 * same stderr, and their lines must not interleave with ours).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static enum pard__log_level current_level = PARD__LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int pard__log_parse_level(const char *s, enum pard__log_level *level)
{
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *level = (enum pard__log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *level = PARD__LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void pard__log_set_level(enum pard__log_level level)
{
    current_level = level;
}

bool pard__log_enabled(enum pard__log_level level)
{
    return level <= current_level;
}

void pard__log(enum pard__log_level level, const char *fmt, ...)
{
    if (!pard__log_enabled(level))
        return;
    char line[2048];
    int n = snprintf(line, sizeof(line), "pard[%d]: %s: ", (int)getpid(), level_names[level]);
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated: still end the line */
    line[len++] = '\n';
    ssize_t w;
    do
        w = write(STDERR_FILENO, line, len);
    while (w < 0 && errno == EINTR);
}

const char *pard__fmt_bytes(uint64_t bytes, unsigned slot)
{
    static char bufs[4][32];
    char *b = bufs[slot & 3];
    if (bytes >= ((uint64_t)1 << 30))
        snprintf(b, sizeof(bufs[0]), "%.1f GiB", (double)bytes / (double)((uint64_t)1 << 30));
    else if (bytes >= ((uint64_t)1 << 20))
        snprintf(b, sizeof(bufs[0]), "%.1f MiB", (double)bytes / (double)((uint64_t)1 << 20));
    else if (bytes >= 1024)
        snprintf(b, sizeof(bufs[0]), "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(b, sizeof(bufs[0]), "%llu bytes", (unsigned long long)bytes);
    return b;
}
