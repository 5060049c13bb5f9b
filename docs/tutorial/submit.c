/*
 * submit.c — the tutorial's submitter: how many of the COUNT numbers from
 * FROM are prime? It maps `isprime` over them through pard (the workers
 * do the work), or with --serial calls is_prime() itself, one number
 * after the other. It prints the count on stdout and the time on stderr.
 *
 *   submit [--socket PATH] [--serial] FROM COUNT
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pard/pard.h>

#include "isprime.h"

struct count {
    uint64_t from, n; /* the numbers: from .. from + n - 1 */
    char text[24];    /* the current input, valid until the next call */
    uint64_t primes;  /* results "1" */
    uint64_t failed;  /* tasks that failed */
};

/* pard pulls inputs as room frees up: input i is from + i, in decimal. */
static int next_input(void *arg, uint64_t i, const void **data, size_t *len)
{
    struct count *c = arg;
    if (i == c->n)
        return 0; /* no more */
    *len = (size_t)snprintf(c->text, sizeof(c->text), "%" PRIu64, c->from + i);
    *data = c->text;
    return 1;
}

/* Called once per input, in input order. */
static int on_result(void *arg, const struct pard_result *r)
{
    struct count *c = arg;
    if (r->status != 0) {
        fprintf(stderr, "submit: task %" PRIu64 ": %.*s\n", r->index, (int)r->len,
                (const char *)r->data);
        c->failed++;
    } else if (r->len == 1 && *(const char *)r->data == '1') {
        c->primes++;
    }
    return 0; /* non-zero would cancel the map */
}

/* pard_last_error() says what went wrong, where, and what to do. */
static void report(int rc)
{
    const char *msg = pard_last_error();
    fprintf(stderr, "submit: %s\n", *msg ? msg : pard_strerror(rc));
}

static int usage(void)
{
    fprintf(stderr, "usage: submit [--socket PATH] [--serial] FROM COUNT\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL; /* NULL: $PARD_SOCKET, $XDG_RUNTIME_DIR/pard.sock, ... */
    int serial = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--serial") == 0)
            serial = 1;
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            socket_path = argv[++i];
        else
            return usage();
    }
    if (argc - i != 2)
        return usage();
    struct count c = {.from = strtoull(argv[i], NULL, 10), .n = strtoull(argv[i + 1], NULL, 10)};

    int64_t t0 = pard_now_ns();
    if (serial) {
        for (uint64_t k = 0; k < c.n; k++)
            c.primes += is_prime(c.from + k);
    } else {
        struct pard_client *client;
        int rc = pard_connect(&client, socket_path);
        if (rc == 0) {
            rc = pard_map(client, "isprime", next_input, on_result, &c, NULL, NULL);
            if (rc != 0)
                report(rc);
            pard_disconnect(client);
        } else {
            report(rc);
        }
        if (rc != 0)
            return 1;
    }
    double seconds = (double)(pard_now_ns() - t0) / 1e9;

    printf("%" PRIu64 " primes in [%" PRIu64 ", %" PRIu64 ")\n", c.primes, c.from, c.from + c.n);
    fprintf(stderr, "%s: %.3f s\n", serial ? "serial" : "pard", seconds);
    return c.failed ? 1 : 0;
}
