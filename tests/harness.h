/*
 * harness.h — the in-tree test harness.
 *
 * A test file defines tests with TEST(name) { ... } (or TEST_THREADS(name) for tests that run
 * several threads, which CI runs again under the thread sanitizer). CMake reads those lines
 * and registers each test with CTest as "<file>.<name>", running "<exe> <name>".
 *
 * Each test runs in a child process of its own, in its own process group, with POSTBOX_DIR set
 * to a fresh directory under /dev/shm. When the child ends — passed, failed, crashed or timed
 * out — the harness kills everything left in the group and deletes the directory, so tests
 * never leak mailboxes or processes, and never see each other's. Exit status 77 means skipped.
 *
 * Asserts print both sides and the location, then fail the test at once (exit 1). In a helper
 * process forked by a test, a failed assert makes that process exit 1; the test must check
 * its helpers' exit status (pbx_test_wait_ok).
 */
#ifndef PBX_TEST_HARNESS_H
#define PBX_TEST_HARNESS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "postbox.h"

struct pbx_test {
    const char *name;
    void (*fn)(void);
    struct pbx_test *next;
};

void pbx_test_register(struct pbx_test *t);

#define PBX_TEST_DEFINE(name)                                                                      \
    static void test_##name(void);                                                                 \
    static struct pbx_test pbx_test_rec_##name = {#name, test_##name, NULL};                       \
    __attribute__((constructor)) static void pbx_test_reg_##name(void)                             \
    {                                                                                              \
        pbx_test_register(&pbx_test_rec_##name);                                                   \
    }                                                                                              \
    static void test_##name(void)

#define TEST(name)         PBX_TEST_DEFINE(name)
#define TEST_THREADS(name) PBX_TEST_DEFINE(name)

void pbx_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Integers of any width compare as long long (both sides printed). */
#define ASSERT_CMP(a, op, b)                                                                       \
    do {                                                                                           \
        long long pbx_a_ = (long long) (a), pbx_b_ = (long long) (b);                              \
        if (!(pbx_a_ op pbx_b_))                                                                   \
            pbx_test_fail(__FILE__, __LINE__, "ASSERT %s %s %s: %lld vs %lld", #a, #op, #b,        \
                          pbx_a_, pbx_b_);                                                         \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_CMP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_CMP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_CMP(a, >=, b)

#define ASSERT_TRUE(x)                                                                             \
    do {                                                                                           \
        if (!(x))                                                                                  \
            pbx_test_fail(__FILE__, __LINE__, "ASSERT %s: false", #x);                             \
    } while (0)

/* A postbox call that must succeed (return >= 0); prints the error's name and text if not. */
#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        long long pbx_r_ = (long long) (expr);                                                     \
        if (pbx_r_ < 0)                                                                            \
            pbx_test_fail(__FILE__, __LINE__, "%s failed: %s (%s)", #expr,                         \
                          pbx_test_errname((int) pbx_r_), pbx_strerror((int) pbx_r_));             \
    } while (0)

/* A postbox call that must fail with exactly err (a negative errno, e.g. -EINVAL). */
#define ASSERT_ERR(expr, err)                                                                      \
    do {                                                                                           \
        long long pbx_r_ = (long long) (expr);                                                     \
        if (pbx_r_ != (long long) (err))                                                           \
            pbx_test_fail(__FILE__, __LINE__, "%s returned %lld (%s), expected %s", #expr, pbx_r_, \
                          pbx_test_errname((int) pbx_r_), pbx_test_errname(err));                  \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                                     \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0)                                                            \
            pbx_test_fail(__FILE__, __LINE__, "ASSERT memory %s == %s (%zu bytes) differs", #a,    \
                          #b, (size_t) (n));                                                       \
    } while (0)

/* Skip the test (exit 77) with a reason. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        printf("SKIP: ");                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        exit(77);                                                                                  \
    } while (0)

const char *pbx_test_errname(int err);

/* Fork a helper process that runs fn(arg) and exits with its return value (0 = success).
 * Helpers share the test's process group, so the harness cleans them up. */
pid_t pbx_test_fork(int (*fn)(void *), void *arg);
/* Wait for a helper and return its exit status, or 128 + signal if it was killed. */
int pbx_test_wait(pid_t pid);
/* Wait for a helper and fail the test unless it exited 0. */
#define pbx_test_wait_ok(pid) ASSERT_EQ(pbx_test_wait(pid), 0)

/* Sleep for ms milliseconds. */
void pbx_test_sleep_ms(long ms);
/* CLOCK_MONOTONIC in milliseconds. */
double pbx_test_now_ms(void);

/* Options with small, explicit limits for tests. */
struct pbx_options pbx_test_options(uint32_t max_msgs, uint64_t max_bytes, uint32_t max_msg_size,
                                    enum pbx_overflow overflow);

#endif
