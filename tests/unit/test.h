/* test.h — the tiny harness of the C tests: CHECK macros that print file:line and make main fail.
 * A test binary ends with `return test_summary();`, which is non-zero if any check failed. */
#ifndef TANDEM_TEST_H
#define TANDEM_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_checks, test_failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        test_checks++;                                                                 \
        if (!(cond)) {                                                                 \
            test_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        test_checks++;                                                                 \
        if (!(cond)) {                                                                 \
            test_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        double a_ = (double)(a), b_ = (double)(b);                                     \
        test_checks++;                                                                 \
        if (!(fabs(a_ - b_) <= (tol))) {                                               \
            test_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g (tol %g)\n",\
                    __FILE__, __LINE__, #a, a_, #b, b_, (double)(tol));                \
        }                                                                              \
    } while (0)

/* A status-returning call that must succeed; prints tandem_last_error() when it does not. */
#define CHECK_OK(call)                                                                 \
    do {                                                                               \
        int st_ = (int)(call);                                                         \
        test_checks++;                                                                 \
        if (st_ != 0) {                                                                \
            test_failures++;                                                           \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call,  \
                    st_, tandem_last_error());                                         \
        }                                                                              \
    } while (0)

/* A call that must fail with `expect` and whose message must contain `needle`. */
#define CHECK_FAILS(call, expect, needle)                                              \
    do {                                                                               \
        int st_ = (int)(call);                                                         \
        test_checks++;                                                                 \
        if (st_ != (int)(expect) || !strstr(tandem_last_error(), (needle))) {          \
            test_failures++;                                                           \
            fprintf(stderr, "%s:%d: %s: expected status %d with \"%s\", got %d: \"%s\"\n",\
                    __FILE__, __LINE__, #call, (int)(expect), (needle), st_,           \
                    tandem_last_error());                                              \
        }                                                                              \
    } while (0)

static inline int test_summary(void) {
    fflush(stdout);
    fprintf(stderr, "%d checks, %d failed\n", test_checks, test_failures);
    return test_failures == 0 && test_checks > 0 ? 0 : 1;
}

#endif
