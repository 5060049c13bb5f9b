/*
 * criterion.h (TSan shim) — the subset of Criterion's API that pard's
 * tests use, with a small runner, for ThreadSanitizer builds only.
 *
 * Why: Criterion's sandbox (BoxFort) maps its arena at addresses that
 * ThreadSanitizer reserves, so most TSan runs abort at start-up with
 * "Could not initialize inheritable arena" (Criterion issue #274, open).
 * The TSan build compiles the very same test files against this header
 * instead (tests/CMakeLists.txt puts it first on the include path), so
 * TSan checks pard's code and Criterion's runner is not involved.
 *
 * The runner forks one child per test (as Criterion does), kills it with
 * SIGALRM at its .timeout, and prints Criterion-style lines and a closing
 * "[====] Synthesis: Tested: N | Passing: P | Failing: F | Crashing: C".
 * Arguments: --filter GLOB (on "suite/name"); others are ignored.
 */
#ifndef PARD_TSAN_SHIM_CRITERION_H
#define PARD_TSAN_SHIM_CRITERION_H

/* cr_assert(cond) with no message passes "" as the format. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

#include <fnmatch.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct crs_opts {
    double timeout;     /* seconds; 0 = the suite's, else none */
    void (*init)(void); /* before the test, in its process */
    void (*fini)(void); /* after the test, in its process */
    int disabled;
    const char *description;
};

struct crs_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct crs_opts opts;
    struct crs_test *next;
};

struct crs_suite {
    const char *name;
    struct crs_opts opts;
    struct crs_suite *next;
};

static struct crs_test *crs_tests;
static struct crs_suite *crs_suites;
static int crs_expect_failed;

static inline void crs_register(struct crs_test *t)
{
    /* Keep the order of definition, as Criterion lists them sorted anyway. */
    struct crs_test **p = &crs_tests;
    while (*p && strcmp((*p)->name, t->name) < 0)
        p = &(*p)->next;
    t->next = *p;
    *p = t;
}

static inline void crs_register_suite(struct crs_suite *s)
{
    s->next = crs_suites;
    crs_suites = s;
}

#define Test(suite, name, ...)                                                                     \
    static void suite##_##name##_impl(void);                                                       \
    static struct crs_test suite##_##name##_desc = {                                               \
        #suite, #name, suite##_##name##_impl, {__VA_ARGS__}, NULL};                                \
    __attribute__((constructor)) static void suite##_##name##_reg(void)                            \
    {                                                                                              \
        crs_register(&suite##_##name##_desc);                                                      \
    }                                                                                              \
    static void suite##_##name##_impl(void)

#define TestSuite(suite, ...)                                                                      \
    static struct crs_suite suite##_suite_desc = {#suite, {__VA_ARGS__}, NULL};                    \
    __attribute__((constructor)) static void suite##_suite_reg(void)                               \
    {                                                                                              \
        crs_register_suite(&suite##_suite_desc);                                                   \
    }

static inline void crs_vreport(const char *file, int line, const char *expr, const char *fmt,
                               va_list ap)
{
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   ", file, line);
    if (fmt && *fmt)
        vfprintf(stderr, fmt, ap);
    else
        fprintf(stderr, "The expression %s is false.", expr);
    fprintf(stderr, "\n");
}

__attribute__((format(printf, 4, 5))) static inline void
crs_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    crs_vreport(file, line, expr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

__attribute__((format(printf, 4, 5))) static inline void
crs_expect_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    crs_vreport(file, line, expr, fmt, ap);
    va_end(ap);
    crs_expect_failed = 1;
}

#define cr_assert(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            crs_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                                   \
    } while (0)
#define cr_expect(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            crs_expect_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                            \
    } while (0)
#define cr_assert_fail(...)          crs_fail(__FILE__, __LINE__, "fail", "" __VA_ARGS__)
#define cr_assert_not(c, ...)        cr_assert(!(c), __VA_ARGS__)
#define cr_assert_eq(a, b, ...)      cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...)     cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...)      cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...)     cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...)      cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...)     cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...)       cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...)   cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)  cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...)                                                         \
    cr_assert(fabs((double)(a) - (double)(b)) <= (eps), __VA_ARGS__)
#define cr_expect_eq(a, b, ...)  cr_expect((a) == (b), __VA_ARGS__)
#define cr_expect_gt(a, b, ...)  cr_expect((a) > (b), __VA_ARGS__)
#define cr_expect_geq(a, b, ...) cr_expect((a) >= (b), __VA_ARGS__)

#define cr_log_info(...)                                                                           \
    do {                                                                                           \
        fprintf(stderr, "[----] " __VA_ARGS__);                                                    \
        fprintf(stderr, "\n");                                                                     \
    } while (0)

#define CRS_SKIP_STATUS 77
#define cr_skip_test(...)                                                                          \
    do {                                                                                           \
        fprintf(stderr, "[SKIP] " __VA_ARGS__);                                                    \
        fprintf(stderr, "\n");                                                                     \
        fflush(stderr);                                                                            \
        _exit(CRS_SKIP_STATUS);                                                                    \
    } while (0)

static inline const struct crs_opts *crs_suite_opts(const char *suite)
{
    for (struct crs_suite *s = crs_suites; s; s = s->next)
        if (strcmp(s->name, suite) == 0)
            return &s->opts;
    return NULL;
}

__attribute__((weak)) int main(int argc, char **argv)
{
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
    }
    int tested = 0, passing = 0, failing = 0, crashing = 0, skipped = 0;
    for (struct crs_test *t = crs_tests; t; t = t->next) {
        char full[256];
        snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
        if ((filter && fnmatch(filter, full, 0) != 0) || t->opts.disabled)
            continue;
        const struct crs_opts *so = crs_suite_opts(t->suite);
        double timeout = t->opts.timeout ? t->opts.timeout : so ? so->timeout : 0;
        void (*init)(void) = t->opts.init ? t->opts.init : so ? so->init : NULL;
        void (*fini)(void) = t->opts.fini ? t->opts.fini : so ? so->fini : NULL;
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        fflush(stderr);
        tested++;
        pid_t pid = fork();
        if (pid == 0) {
            if (timeout > 0)
                alarm((unsigned)ceil(timeout));
            if (init)
                init();
            t->fn();
            if (fini)
                fini();
            fflush(stdout);
            fflush(stderr);
            _exit(crs_expect_failed ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passing++;
            fprintf(stderr, "[PASS] %s::%s\n", t->suite, t->name);
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == CRS_SKIP_STATUS) {
            skipped++;
            tested--;
        } else if (WIFEXITED(status)) {
            failing++;
            fprintf(stderr, "[FAIL] %s::%s\n", t->suite, t->name);
        } else {
            crashing++;
            failing++;
            fprintf(stderr, "[FAIL] %s::%s: %s (signal %d)\n", t->suite, t->name,
                    WTERMSIG(status) == SIGALRM ? "timed out" : "crashed", WTERMSIG(status));
        }
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d\n",
            tested, passing, failing, crashing);
    (void)skipped;
    return failing ? 1 : 0;
}

#endif
