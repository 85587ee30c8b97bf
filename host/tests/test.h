/* test.h - the smallest assertion kit: a failed check prints where and why
 * and makes the test program exit non-zero. */
#ifndef RSG_TEST_H
#define RSG_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        test_checks++;                                                                             \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, __LINE__,            \
                    b_ ? b_ : "(null)", a_ ? a_ : "(null)");                                       \
        }                                                                                          \
    } while (0)

#define TEST_DONE()                                                                                \
    do {                                                                                           \
        printf("%d checks, %d failed\n", test_checks, test_failures);                              \
        return test_failures ? 1 : 0;                                                              \
    } while (0)

#endif
