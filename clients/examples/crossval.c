/*
 * crossval.c — case study: choose the hyper-parameters of a k-nearest-
 * neighbours classifier by repeated k-fold cross-validation, serially and
 * in parallel with pard, and print the accuracies, both times and the
 * speedup.
 *
 *   pard-crossval [--data FILE] [--folds F] [--repeats R] [--workers K] [--socket PATH]
 *   pard-crossval --worker [--socket PATH]     serve the function `cv_knn`
 *
 * The grid: k in {1, 3, ..., 21} x distance {euclidean, manhattan} x
 * features {raw, standardised on the training folds}. One task is one
 * (repeat, fold, parameter set): train on the other folds, count the test
 * fold's samples classified right. Repeat r shuffles the samples with seed
 * r, so every run (serial, parallel, any number of workers) sees the same
 * folds and must count the same; the program exits 1 if they differ.
 *
 * The data set is parsed once, by the submitter, straight into a block of
 * shared memory (pard_share) that every worker maps without a copy; a
 * task's input is 16 bytes. Workers read the data only through
 * pard_shared(): with the embedded default (no --socket) they are forked
 * before the data is parsed, and with --socket they are other programs, so
 * there is nothing else to read.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pard/pard.h"

#ifndef PARD_EXAMPLES_DATA
#define PARD_EXAMPLES_DATA "."
#endif
#ifndef PARD_EXAMPLES_INSTALLED
#define PARD_EXAMPLES_INSTALLED "/usr/local/share/pard/examples"
#endif
#define DATA_FILE "breast_cancer.csv"

/* ======================================================================
 * The parameter grid
 * ====================================================================== */

#define NK          11 /* k = 1, 3, ..., 21 */
#define KMAX        (2 * NK - 1)
#define NPARAMS     (NK * 2 * 2)
#define MAX_CLASSES 64

struct params {
    uint32_t k;
    bool manhattan;    /* else euclidean */
    bool standardised; /* else raw */
};

/* Parameter set p: k varies fastest, then the distance, then the scaling. */
static struct params params_of(uint32_t p)
{
    return (struct params){
        .k = 2 * (p % NK) + 1, .manhattan = (p / NK) % 2 == 1, .standardised = p / (2 * NK) == 1};
}

/* ======================================================================
 * The shared block: the data set, as the workers see it
 * ====================================================================== */

#define CV_MAGIC   0x314c41564f524350ull /* "PCROVAL1" */
#define CV_VERSION 1u

/*
 * The block starts with this header; the features (rows x cols doubles,
 * row-major) and the labels (rows bytes) follow at the offsets it gives.
 * The submitter fills everything, then stores magic last (release).
 */
struct cv_header {
    _Atomic uint64_t magic; /* CV_MAGIC once the block is complete */
    uint32_t version;       /* CV_VERSION */
    uint32_t rows;          /* samples */
    uint32_t cols;          /* features per sample */
    uint32_t nclasses;      /* labels are 0 .. nclasses-1 */
    uint64_t x_off;         /* features: rows * cols doubles */
    uint64_t y_off;         /* labels: rows bytes */
};

/* A checked view of a block. Pointers into the block: valid while it is
 * mapped (for a worker, the whole job). */
struct cv_data {
    uint32_t rows, cols, nclasses;
    const double *x;
    const uint8_t *y;
};

static size_t block_size(uint32_t rows, uint32_t cols)
{
    return sizeof(struct cv_header) + (size_t)rows * cols * sizeof(double) + rows;
}

/*
 * Check a block (untrusted: it is shared memory) and make a view of it.
 * Returns 0, or -1 with the reason in err.
 */
static int cv_view(const void *block, size_t size, struct cv_data *d, char *err, size_t errlen)
{
    const struct cv_header *h = block;
    if (!block || size < sizeof(*h)) {
        snprintf(err, errlen, "no shared data set (the job has no shared block)");
        return -1;
    }
    /* Acquire: pairs with the creator's release store of magic. */
    if (atomic_load_explicit(&h->magic, memory_order_acquire) != CV_MAGIC ||
        h->version != CV_VERSION) {
        snprintf(err, errlen, "the shared block is not a version %u data set", CV_VERSION);
        return -1;
    }
    uint32_t rows = h->rows, cols = h->cols, nclasses = h->nclasses;
    uint64_t x_off = h->x_off, y_off = h->y_off;
    if (rows < 2 || cols == 0 || cols > 100000 || rows > 100000000u / cols || nclasses < 2 ||
        nclasses > MAX_CLASSES || x_off % sizeof(double) != 0 || x_off > size ||
        (size - x_off) / sizeof(double) < (uint64_t)rows * cols || y_off > size ||
        size - y_off < rows) {
        snprintf(err, errlen, "the shared data set has impossible sizes");
        return -1;
    }
    *d = (struct cv_data){.rows = rows,
                          .cols = cols,
                          .nclasses = nclasses,
                          .x = (const double *)((const char *)block + x_off),
                          .y = (const uint8_t *)block + y_off};
    return 0;
}

/* ======================================================================
 * The work: one fold of one repeat with one parameter set
 * ====================================================================== */

/* A task's input. */
struct cv_task {
    uint32_t repeat;
    uint32_t fold;
    uint32_t folds;
    uint32_t param;
};

/* splitmix64: small and well mixed; seeded per repeat. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The samples in repeat r's order (Fisher-Yates with seed r). */
static void shuffle(uint32_t *perm, uint32_t n, uint32_t repeat)
{
    uint64_t s = (uint64_t)repeat * 0x2545f4914f6cdd1dull + 1;
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(next_u64(&s) % (i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/*
 * Per-feature weights: 1 for raw features; 1/sd over the training samples
 * when standardised (the mean cancels in a difference, so distances need
 * only the scale; a constant feature weighs 0).
 */
static void feature_weights(const struct cv_data *d, const uint32_t *perm, uint32_t lo, uint32_t hi,
                            bool standardised, double *w)
{
    uint32_t cols = d->cols, ntrain = d->rows - (hi - lo);
    for (uint32_t c = 0; c < cols; c++) {
        if (!standardised) {
            w[c] = 1.0;
            continue;
        }
        double sum = 0, ss = 0;
        for (uint32_t p = 0; p < d->rows; p++)
            if (p < lo || p >= hi)
                sum += d->x[(size_t)perm[p] * cols + c];
        double mean = sum / ntrain;
        for (uint32_t p = 0; p < d->rows; p++)
            if (p < lo || p >= hi) {
                double v = d->x[(size_t)perm[p] * cols + c] - mean;
                ss += v * v;
            }
        double sd = sqrt(ss / ntrain);
        w[c] = sd > 0 ? 1.0 / sd : 0.0;
    }
}

/* The label k-NN gives sample `q` from the training samples (positions
 * outside [lo, hi) of perm). Ties in distance go to the earlier training
 * position; ties in the vote to the class of the nearest tied neighbour. */
static uint32_t classify(const struct cv_data *d, const uint32_t *perm, uint32_t lo, uint32_t hi,
                         const double *w, struct params pr, uint32_t q)
{
    double nd[KMAX];
    uint8_t nl[KMAX];
    uint32_t n = 0, k = pr.k, cols = d->cols;
    const double *xq = d->x + (size_t)q * cols;
    for (uint32_t p = 0; p < d->rows; p++) {
        if (p >= lo && p < hi)
            continue;
        const double *xt = d->x + (size_t)perm[p] * cols;
        double dist = 0;
        if (pr.manhattan)
            for (uint32_t c = 0; c < cols; c++)
                dist += fabs(xq[c] - xt[c]) * w[c];
        else
            for (uint32_t c = 0; c < cols; c++) {
                double v = (xq[c] - xt[c]) * w[c];
                dist += v * v;
            }
        if (n == k && dist >= nd[k - 1])
            continue;
        uint32_t i = n < k ? n++ : k - 1; /* insertion into the sorted k nearest */
        while (i > 0 && nd[i - 1] > dist) {
            nd[i] = nd[i - 1];
            nl[i] = nl[i - 1];
            i--;
        }
        nd[i] = dist;
        nl[i] = d->y[perm[p]];
    }
    uint32_t votes[MAX_CLASSES] = {0}, best = 0;
    for (uint32_t i = 0; i < n; i++)
        if (++votes[nl[i]] > best)
            best = votes[nl[i]];
    for (uint32_t i = 0; i < n; i++)
        if (votes[nl[i]] == best)
            return nl[i];
    return 0;
}

/*
 * Evaluate one task: train on every fold but t->fold of repeat t->repeat,
 * count the test fold's samples classified right. Reads only *d. Returns
 * 0, or -1 with the reason in err (a bad task).
 */
static int evaluate(const struct cv_data *d, const struct cv_task *t, uint32_t *correct,
                    uint32_t *tested, char *err, size_t errlen)
{
    if (t->folds < 2 || t->folds > d->rows || t->fold >= t->folds || t->param >= NPARAMS) {
        snprintf(err, errlen, "bad task: fold %u of %u, parameter set %u of %u", t->fold, t->folds,
                 t->param, NPARAMS);
        return -1;
    }
    for (uint32_t i = 0; i < d->rows; i++)
        if (d->y[i] >= d->nclasses) {
            snprintf(err, errlen, "sample %u has label %u, over the %u classes", i, d->y[i],
                     d->nclasses);
            return -1;
        }
    uint32_t *perm = malloc(d->rows * sizeof(*perm));
    double *w = malloc(d->cols * sizeof(*w));
    if (!perm || !w) {
        free(perm);
        free(w);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    shuffle(perm, d->rows, t->repeat);
    uint32_t lo = (uint32_t)((uint64_t)t->fold * d->rows / t->folds);
    uint32_t hi = (uint32_t)((uint64_t)(t->fold + 1) * d->rows / t->folds);
    struct params pr = params_of(t->param);
    if (pr.k > d->rows - (hi - lo))
        pr.k = d->rows - (hi - lo);
    feature_weights(d, perm, lo, hi, pr.standardised, w);
    uint32_t right = 0;
    for (uint32_t p = lo; p < hi; p++)
        right += classify(d, perm, lo, hi, w, pr, perm[p]) == d->y[perm[p]];
    free(perm);
    free(w);
    *correct = right;
    *tested = hi - lo;
    return 0;
}

/* The pard function: input a struct cv_task, output "CORRECT TESTED".
 * The data set comes from the job's shared block, never from elsewhere. */
static int cv_knn(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    struct cv_task t;
    if (len != sizeof(t))
        return pard_out_error(out, "cv_knn: want a %zu-byte task, got %zu bytes", sizeof(t), len);
    memcpy(&t, in, sizeof(t));
    size_t size;
    const void *block = pard_shared(out, &size);
    struct cv_data d;
    char err[256];
    uint32_t correct, tested;
    if (cv_view(block, size, &d, err, sizeof(err)) != 0 ||
        evaluate(&d, &t, &correct, &tested, err, sizeof(err)) != 0)
        return pard_out_error(out, "cv_knn: %s", err);
    return pard_out_printf(out, "%" PRIu32 " %" PRIu32, correct, tested);
}

/* ======================================================================
 * Loading the CSV (scikit-learn's layout: a header "ROWS,COLS,CLASS...",
 * then COLS numbers and a class index per line)
 * ====================================================================== */

struct csv {
    const char *path;
    char *text; /* the whole file, NUL-terminated */
    const char *body;
    unsigned line; /* of body */
    uint32_t rows, cols, nclasses;
};

static int csv_fail(const struct csv *f, unsigned line, const char *what)
{
    fprintf(stderr, "pard-crossval: %s:%u: %s\n", f->path, line, what);
    return -1;
}

/* Read the file and its header. */
static int csv_open(struct csv *f, const char *path)
{
    memset(f, 0, sizeof(*f));
    f->path = path;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "pard-crossval: cannot open %s: %s (use --data FILE)\n", path,
                strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0, got = 1;
    char *text = malloc(cap);
    while (text && got > 0) {
        got = fread(text + n, 1, cap - n - 1, fp);
        n += got;
        if (n + 1 == cap) {
            char *b = realloc(text, cap *= 2);
            if (!b)
                free(text);
            text = b;
        }
    }
    bool bad = ferror(fp);
    fclose(fp);
    if (!text || bad) {
        fprintf(stderr, "pard-crossval: cannot read %s: %s\n", path,
                text ? "read error" : "out of memory");
        free(text);
        return -1;
    }
    f->text = text;
    f->text[n] = '\0';
    char *s = f->text, *end;
    unsigned long rows = strtoul(s, &end, 10);
    unsigned long cols = *end == ',' ? strtoul(end + 1, &end, 10) : 0;
    uint32_t nclasses = 0;
    while (*end == ',') {
        nclasses++;
        end += strcspn(end + 1, ",\n") + 1;
    }
    if (rows < 2 || rows > 10000000 || cols == 0 || cols > 100000 || rows * cols > 100000000 ||
        nclasses < 2 || nclasses > MAX_CLASSES || (*end != '\n' && *end != '\r')) {
        free(f->text);
        return csv_fail(f, 1, "want a header 'ROWS,COLS,CLASS,CLASS...' (2 to 64 classes)");
    }
    f->rows = (uint32_t)rows;
    f->cols = (uint32_t)cols;
    f->nclasses = nclasses;
    f->body = end + strspn(end, "\r\n");
    f->line = 2;
    return 0;
}

/* Parse the samples into x (rows x cols) and y (rows). */
static int csv_read(struct csv *f, double *x, uint8_t *y)
{
    const char *s = f->body;
    for (uint32_t r = 0; r < f->rows; r++) {
        unsigned line = f->line + r;
        for (uint32_t c = 0; c <= f->cols; c++) {
            char *end;
            double v = strtod(s, &end); /* (strtod would skip a line break: not here) */
            if (end == s || *s == '\n' || *s == '\r' || !isfinite(v))
                return csv_fail(f, line,
                                *s ? "want a number" : "fewer samples than the header says");
            if (c < f->cols) {
                if (*end != ',')
                    return csv_fail(f, line, "fewer fields than the header says");
                x[(size_t)r * f->cols + c] = v;
            } else {
                if (v != floor(v) || v < 0 || v >= f->nclasses)
                    return csv_fail(f, line, "the class is not one of the header's");
                y[r] = (uint8_t)v;
            }
            s = end + (c < f->cols);
        }
        if (*s != '\n' && *s != '\r' && *s != '\0')
            return csv_fail(f, line, "more fields than the header says");
        s += strspn(s, "\r\n");
    }
    return 0;
}

/* The default data file: the source tree's, else the installed one. */
static const char *default_data(void)
{
    static const char *const candidates[] = {PARD_EXAMPLES_DATA "/" DATA_FILE,
                                             PARD_EXAMPLES_INSTALLED "/" DATA_FILE};
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (access(candidates[i], R_OK) == 0)
            return candidates[i];
    return candidates[1];
}

/* ======================================================================
 * The comparison
 * ====================================================================== */

struct run {
    uint32_t folds, repeats;
    uint64_t tasks;
    uint32_t *correct; /* per task */
    uint32_t *tested;  /* per task */
    uint64_t failed;
    struct cv_task buf;
};

/* Task i: parameter set fastest, then fold, then repeat. */
static struct cv_task task_of(const struct run *r, uint64_t i)
{
    return (struct cv_task){.param = (uint32_t)(i % NPARAMS),
                            .fold = (uint32_t)(i / NPARAMS % r->folds),
                            .folds = r->folds,
                            .repeat = (uint32_t)(i / NPARAMS / r->folds)};
}

static int next_task(void *arg, uint64_t index, const void **data, size_t *len)
{
    struct run *r = arg;
    if (index >= r->tasks)
        return 0;
    r->buf = task_of(r, index);
    *data = &r->buf;
    *len = sizeof(r->buf);
    return 1;
}

static int take_result(void *arg, const struct pard_result *res)
{
    struct run *r = arg;
    char buf[64];
    size_t n = res->len < sizeof(buf) - 1 ? res->len : sizeof(buf) - 1;
    memcpy(buf, res->data, n);
    buf[n] = '\0';
    unsigned correct, tested;
    if (res->status != 0 || sscanf(buf, "%u %u", &correct, &tested) != 2) {
        if (r->failed++ == 0)
            fprintf(stderr, "pard-crossval: task %" PRIu64 ": %s\n", res->index, buf);
        return 0;
    }
    r->correct[res->index] = correct;
    r->tested[res->index] = tested;
    return 0;
}

/* Mean accuracy over folds and repeats of parameter set p. */
static double accuracy(const struct run *r, uint32_t p)
{
    double sum = 0;
    uint64_t n = 0;
    for (uint64_t i = p; i < r->tasks; i += NPARAMS, n++)
        sum += r->tested[i] ? (double)r->correct[i] / r->tested[i] : 0.0;
    return n ? sum / (double)n : 0.0;
}

static void print_table(const struct run *r)
{
    printf("  mean accuracy      euclidean          manhattan\n");
    printf("  %4s %13s %6s %13s %6s\n", "k", "standardised", "raw", "standardised", "raw");
    for (uint32_t ki = 0; ki < NK; ki++) {
        printf("  %4u", 2 * ki + 1);
        for (uint32_t m = 0; m < 2; m++)
            printf(" %13.4f %6.4f", accuracy(r, ki + m * NK + 2 * NK), accuracy(r, ki + m * NK));
        printf("\n");
    }
    uint32_t best = 0;
    for (uint32_t p = 1; p < NPARAMS; p++)
        if (accuracy(r, p) > accuracy(r, best))
            best = p;
    struct params pr = params_of(best);
    printf("  best: k=%u, %s distance, %s features: accuracy %.4f\n", pr.k,
           pr.manhattan ? "manhattan" : "euclidean", pr.standardised ? "standardised" : "raw",
           accuracy(r, best));
}

static void usage(void)
{
    printf("usage: pard-crossval [--data FILE] [--folds F] [--repeats R] [--workers K]\n"
           "                     [--socket PATH]\n"
           "       pard-crossval --worker [--socket PATH]\n"
           "Chooses k, the distance and the feature scaling of a k-nearest-neighbours\n"
           "classifier by R repeats of F-fold cross-validation (default 10 folds, 2 repeats)\n"
           "on FILE (default: the Breast Cancer Wisconsin data shipped with pard), serially\n"
           "and with pard, and prints the accuracies, both times and the speedup. The data\n"
           "set goes to the workers once, in shared memory.\n"
           "Without --socket it starts a private pard with K workers (default: one per\n"
           "core); with --socket it uses that daemon (at most K of its workers), whose\n"
           "workers must serve cv_knn: pard-crossval --worker does.\n");
}

static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = (uint32_t)v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct pard_function fns[] = {{"cv_knn", cv_knn}};
    const char *socket_path = NULL, *data = NULL;
    uint32_t folds = 10, repeats = 2, workers = 0;
    bool worker = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes_value = v != NULL;
        if (strcmp(a, "--worker") == 0) {
            worker = true;
            takes_value = false;
        } else if (strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else if (strcmp(a, "--socket") == 0 && v)
            socket_path = v;
        else if (strcmp(a, "--data") == 0 && v)
            data = v;
        else if (strcmp(a, "--folds") == 0 && v)
            ok = parse_u32(v, 2, 1000000, &folds);
        else if (strcmp(a, "--repeats") == 0 && v)
            ok = parse_u32(v, 1, 1000000, &repeats);
        else if (strcmp(a, "--workers") == 0 && v)
            ok = parse_u32(v, 0, 1024, &workers);
        else {
            ok = false;
            takes_value = false;
        }
        if (!ok) {
            fprintf(stderr, "pard-crossval: bad argument '%s%s%s' (try --help)\n", a,
                    takes_value ? " " : "", takes_value ? v : "");
            return 2;
        }
        i += takes_value;
    }
    if (worker) {
        struct pard_worker_opts o = {.socket_path = socket_path, .name = "crossval"};
        int rc = pard_worker_run(fns, 1, &o);
        if (rc != 0)
            fprintf(stderr, "pard-crossval: %s\n", pard_last_error());
        return rc != 0;
    }

    struct csv f;
    if (csv_open(&f, data ? data : default_data()) != 0)
        return 1;
    if (folds > f.rows) {
        fprintf(stderr, "pard-crossval: %u folds of %u samples: at most one fold per sample\n",
                folds, f.rows);
        free(f.text);
        return 2;
    }
    struct pard_client *c;
    int rc = socket_path ? pard_connect(&c, socket_path) : pard_open_private(&c, fns, 1, workers);
    if (rc != 0) {
        fprintf(stderr, "pard-crossval: %s\n", pard_last_error());
        free(f.text);
        return 1;
    }

    /* Parse the data once, into the block every worker will map. */
    size_t size = block_size(f.rows, f.cols);
    void *block;
    uint64_t handle;
    if ((rc = pard_share(c, size, &block, &handle)) != 0) {
        fprintf(stderr, "pard-crossval: cannot share the data set (%zu bytes): %s\n", size,
                pard_last_error());
        pard_disconnect(c);
        free(f.text);
        return 1;
    }
    struct cv_header *h = block;
    h->version = CV_VERSION;
    h->rows = f.rows;
    h->cols = f.cols;
    h->nclasses = f.nclasses;
    h->x_off = sizeof(*h);
    h->y_off = sizeof(*h) + (uint64_t)f.rows * f.cols * sizeof(double);
    rc = csv_read(&f, (double *)((char *)block + h->x_off), (uint8_t *)block + h->y_off);
    free(f.text);
    if (rc != 0) {
        pard_disconnect(c);
        return 1;
    }
    /* Release: the header and data above are visible to whoever sees magic. */
    atomic_store_explicit(&h->magic, CV_MAGIC, memory_order_release);

    uint64_t tasks = (uint64_t)repeats * folds * NPARAMS;
    struct run serial = {.folds = folds, .repeats = repeats, .tasks = tasks};
    struct run par = serial;
    serial.correct = calloc(tasks, sizeof(uint32_t));
    serial.tested = calloc(tasks, sizeof(uint32_t));
    par.correct = calloc(tasks, sizeof(uint32_t));
    par.tested = calloc(tasks, sizeof(uint32_t));
    if (!serial.correct || !serial.tested || !par.correct || !par.tested) {
        fprintf(stderr, "pard-crossval: out of memory for %" PRIu64 " tasks\n", tasks);
        pard_disconnect(c);
        return 1;
    }

    /* Serial: the same function, in this process, on the same block. */
    struct cv_data d;
    char err[256];
    if (cv_view(block, size, &d, err, sizeof(err)) != 0) {
        fprintf(stderr, "pard-crossval: %s\n", err);
        pard_disconnect(c);
        return 1;
    }
    int64_t t0 = pard_now_ns();
    for (uint64_t i = 0; i < tasks; i++) {
        struct cv_task t = task_of(&serial, i);
        if (evaluate(&d, &t, &serial.correct[i], &serial.tested[i], err, sizeof(err)) != 0 &&
            serial.failed++ == 0)
            fprintf(stderr, "pard-crossval: serial task %" PRIu64 ": %s\n", i, err);
    }
    int64_t serial_ns = pard_now_ns() - t0;

    /* Parallel: the workers see the block through opts.shared. */
    struct pard_map_opts opts = {.shared = handle,
                                 .max_workers = socket_path ? workers : 0,
                                 .progress = true,
                                 .total = tasks};
    t0 = pard_now_ns();
    rc = pard_map(c, "cv_knn", next_task, take_result, &par, &opts, NULL);
    int64_t par_ns = pard_now_ns() - t0;
    pard_disconnect(c); /* also releases the block */
    if (rc != 0) {
        fprintf(stderr, "pard-crossval: %s\n", pard_last_error());
        return 1;
    }

    printf("k-NN cross-validation: %u samples x %u features, %u classes\n", d.rows, d.cols,
           d.nclasses);
    printf("  %u folds x %u repeats x %u parameter sets = %" PRIu64 " tasks\n", folds, repeats,
           NPARAMS, tasks);
    print_table(&par);
    printf("  serial  %8.1f ms\n", serial_ns / 1e6);
    printf("  pard    %8.1f ms\n", par_ns / 1e6);
    printf("  speedup: %.2fx\n", (double)serial_ns / (double)par_ns);
    bool same = serial.failed == 0 && par.failed == 0 &&
                memcmp(serial.correct, par.correct, tasks * sizeof(uint32_t)) == 0 &&
                memcmp(serial.tested, par.tested, tasks * sizeof(uint32_t)) == 0;
    if (!same)
        fprintf(stderr, "pard-crossval: the parallel accuracies differ from the serial ones\n");
    free(serial.correct);
    free(serial.tested);
    free(par.correct);
    free(par.tested);
    return same ? 0 : 1;
}
