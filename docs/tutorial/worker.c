/*
 * worker.c — the tutorial's worker. It serves one function, `isprime`: a
 * task's input is a number in decimal, its output "1" when the number is
 * prime, else "0". Run it under pard:
 *
 *   pard --spawn 2 --worker ./worker
 *
 * or start it yourself beside a running pard (./worker [--socket PATH]).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <pard/pard.h>

#include "isprime.h"

/* A task: `in`/`len` are the input's bytes (not NUL-terminated), valid
 * during the call; the output goes to `out`. */
static int isprime(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    (void)ctx; /* no per-worker state (see pard_worker_opts.init) */
    char buf[24];
    if (len == 0 || len >= sizeof(buf))
        return pard_out_error(out, "isprime: expected a number, got %zu bytes", len);
    memcpy(buf, in, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    unsigned long long n = strtoull(buf, &end, 10);
    if (buf[0] < '0' || buf[0] > '9' || *end != '\0' || errno != 0)
        return pard_out_error(out, "isprime: '%s' is not a number", buf);
    return pard_out_write(out, is_prime(n) ? "1" : "0", 1);
}

int main(int argc, char **argv)
{
    static const struct pard_function fns[] = {{"isprime", isprime}};
    /* Parses --socket and --help, connects, serves until pard stops. */
    return pard_worker_main(argc, argv, fns, 1, NULL);
}
