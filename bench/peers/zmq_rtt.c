/*
 * zmq_rtt.c — the ZeroMQ peer for bench/peers: the round trip of a small
 * message between two processes over ipc://, REQ/REP, the way a ZeroMQ
 * user would hand work to another process on the same machine.
 *
 * Usage: zmq_rtt [ROUNDS] [BYTES]   (default 20000 rounds of 8 bytes)
 * Prints one JSON object: {"peer":"zeromq","rounds":N,"bytes":B,
 * "p50_us":..,"p99_us":..,"mean_us":..}. Exit 0, or 1 with a message.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 20000;
    size_t bytes = argc > 2 ? (size_t)atol(argv[2]) : 8;
    if (rounds < 10 || bytes < 1 || bytes > (1 << 20)) {
        fprintf(stderr, "usage: zmq_rtt [ROUNDS >= 10] [BYTES 1..1M]\n");
        return 1;
    }
    char dir[] = "/tmp/zmq-rtt-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("zmq_rtt: mkdtemp");
        return 1;
    }
    char endpoint[128];
    snprintf(endpoint, sizeof(endpoint), "ipc://%s/sock", dir);
    char *buf = calloc(1, bytes);
    long long *t = calloc((size_t)rounds, sizeof(*t));
    if (!buf || !t)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        void *ctx = zmq_ctx_new();
        void *rep = zmq_socket(ctx, ZMQ_REP);
        if (zmq_bind(rep, endpoint) != 0)
            _exit(2);
        for (long i = 0; i < rounds + 100; i++) {
            int n = zmq_recv(rep, buf, bytes, 0);
            if (n < 0 || zmq_send(rep, buf, (size_t)n, 0) < 0)
                _exit(3);
        }
        zmq_close(rep);
        zmq_ctx_term(ctx);
        _exit(0);
    }
    void *ctx = zmq_ctx_new();
    void *req = zmq_socket(ctx, ZMQ_REQ);
    if (zmq_connect(req, endpoint) != 0) {
        fprintf(stderr, "zmq_rtt: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    for (long i = 0; i < rounds + 100; i++) {
        long long t0 = now_ns();
        if (zmq_send(req, buf, bytes, 0) < 0 || zmq_recv(req, buf, bytes, 0) < 0) {
            fprintf(stderr, "zmq_rtt: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        if (i >= 100) /* the first 100 warm up */
            t[i - 100] = now_ns() - t0;
    }
    zmq_close(req);
    zmq_ctx_term(ctx);
    int status;
    waitpid(pid, &status, 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/sock", dir);
    unlink(path);
    rmdir(dir);
    double sum = 0;
    for (long i = 0; i < rounds; i++)
        sum += (double)t[i];
    qsort(t, (size_t)rounds, sizeof(*t), cmp);
    printf("{\"peer\":\"zeromq\",\"rounds\":%ld,\"bytes\":%zu,\"p50_us\":%.3f,\"p99_us\":%.3f,"
           "\"mean_us\":%.3f}\n",
           rounds, bytes, t[rounds / 2] / 1e3, t[rounds * 99 / 100] / 1e3, sum / rounds / 1e3);
    free(buf);
    free(t);
    return 0;
}
