/*
 * test_errors.c — argument errors and error codes: every documented -E… value of
 * postbox.h that a single process can provoke, that a rejected call has no side effect, and
 * that pbx_strerror() describes each of them.
 *
 * Timeout tests check only that -ETIMEDOUT comes back and that at least the timeout elapsed;
 * the upper bound is a generous sanity limit, not a speed requirement.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <limits.h>
#include <time.h>

static pbx_t *open_box(const char *name, uint32_t max_msgs, uint64_t max_bytes,
                       uint32_t max_msg_size)
{
    pbx_t *q = NULL;
    struct pbx_options o = pbx_test_options(max_msgs, max_bytes, max_msg_size, PBX_BLOCK);
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_TRUE(q != NULL);
    return q;
}

static struct pbx_stat stat_of(pbx_t *q)
{
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    return st;
}

/* Entries in $POSTBOX_DIR other than "." and "..". */
static int dir_entries(void)
{
    const char *d = getenv("POSTBOX_DIR");
    ASSERT_TRUE(d != NULL);
    DIR *dir = opendir(d);
    ASSERT_TRUE(dir != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(dir);
    return n;
}

/* ---- pbx_send arguments ------------------------------------------------------------------ */

TEST(send_type_zero_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 0, "x", 1, 0), -EINVAL);
    ASSERT_ERR(pbx_send(q, 0, "x", 1, PBX_NOWAIT), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 0);
    ASSERT_EQ(stat_of(q).sent, 0);
    pbx_close(q);
}

TEST(send_negative_type_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, -1, "x", 1, 0), -EINVAL);
    ASSERT_ERR(pbx_send(q, -100, "x", 1, PBX_NOWAIT), -EINVAL);
    ASSERT_ERR(pbx_send(q, LONG_MIN, "x", 1, PBX_NOWAIT), -EINVAL);
    const struct timespec ts = {1, 0};
    ASSERT_ERR(pbx_timedsend(q, -1, "x", 1, 0, &ts), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 0);
    pbx_close(q);
}

TEST(send_type_one_and_long_max_are_accepted)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), 0);
    ASSERT_ERR(pbx_send(q, LONG_MAX, "y", 1, PBX_NOWAIT), 0);
    ASSERT_EQ(stat_of(q).msgs, 2);
    pbx_close(q);
}

TEST(send_null_data_with_nonzero_length_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, NULL, 1, PBX_NOWAIT), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, NULL, 64, PBX_NOWAIT), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 0);
    /* NULL with length 0 is fine. */
    ASSERT_ERR(pbx_send(q, 1, NULL, 0, PBX_NOWAIT), 0);
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

TEST(send_longer_than_max_msg_size_is_emsgsize)
{
    pbx_t *q = open_box("err", 8, 4096, 100);
    static char big[5000];
    ASSERT_ERR(pbx_send(q, 1, big, 101, PBX_NOWAIT), -EMSGSIZE);
    ASSERT_ERR(pbx_send(q, 1, big, 5000, 0), -EMSGSIZE);
    ASSERT_ERR(pbx_send(q, 1, big, SIZE_MAX, PBX_NOWAIT), -EMSGSIZE);
    ASSERT_ERR(pbx_send(q, 1, big, (size_t) UINT32_MAX + 1, PBX_NOWAIT), -EMSGSIZE);
    ASSERT_EQ(stat_of(q).msgs, 0);
    ASSERT_ERR(pbx_send(q, 1, big, 100, PBX_NOWAIT), 0);
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

TEST(send_oversized_message_into_full_mailbox_is_emsgsize_not_eagain)
{
    pbx_t *q = open_box("err", 1, 4096, 100);
    static char big[200];
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), 0);
    ASSERT_ERR(pbx_send(q, 1, big, 101, PBX_NOWAIT), -EMSGSIZE);
    /* Without PBX_NOWAIT it must not sleep for room that could never suffice. */
    ASSERT_ERR(pbx_send(q, 1, big, 101, 0), -EMSGSIZE);
    pbx_close(q);
}

TEST(send_unknown_flag_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0x2000), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0x10000), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT | 0x40000000), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, INT_MIN), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, -1), -EINVAL);
    const struct timespec ts = {0, 1000000};
    ASSERT_ERR(pbx_timedsend(q, 1, "x", 1, 0x2000, &ts), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 0);
    pbx_close(q);
}

TEST(send_rejects_receive_and_open_flags)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_PEEK), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_EXCEPT), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOERROR), -EINVAL);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_CREATE), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 0);
    pbx_close(q);
}

TEST(send_sync_nowait_without_a_waiting_receiver_sends_nothing)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_SYNC | PBX_NOWAIT), -EAGAIN);
    const struct timespec ts = {0, 1000000};
    ASSERT_ERR(pbx_timedsend(q, 1, "x", 1, PBX_SYNC | PBX_NOWAIT, &ts), -EAGAIN);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.sent, 0);
    /* A timed sync send with nobody to take it: queued, and not confirmed. */
    ASSERT_ERR(pbx_timedsend(q, 1, "x", 1, PBX_SYNC, &ts), -ETIMEDOUT);
    st = stat_of(q);
    ASSERT_EQ(st.msgs, 1);
    pbx_close(q);
}

/* ---- pbx_recv arguments ------------------------------------------------------------------ */

TEST(recv_unknown_flag_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), 0);
    char buf[8];
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), 0x2000, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | 0x10000, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), INT_MIN, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_SYNC, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_CREATE, NULL), -EINVAL);
    const struct timespec ts = {0, 1000000};
    ASSERT_ERR(pbx_timedrecv(q, 0, buf, sizeof(buf), 0x2000, NULL, &ts), -EINVAL);
    /* The message was not consumed by any of them. */
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

TEST(recv_except_with_nonpositive_type_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    char buf[8];
    /* On an empty mailbox the argument error wins over -ENOMSG. */
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, -1, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, NULL), -EINVAL);
    /* Without PBX_NOWAIT it must not sleep either. */
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_EXCEPT, NULL), -EINVAL);
    ASSERT_ERR(pbx_send(q, 2, "x", 1, 0), 0);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, -5, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, LONG_MIN, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, NULL), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

TEST(recv_null_buffer_with_nonzero_capacity_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, NULL, 0, 0), 0);
    ASSERT_ERR(pbx_recv(q, 0, NULL, 1, PBX_NOWAIT, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(q, 0, NULL, 64, PBX_NOWAIT | PBX_NOERROR, NULL), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 1);
    /* NULL with capacity 0 is fine. */
    ASSERT_EQ(pbx_recv(q, 0, NULL, 0, PBX_NOWAIT, NULL), 0);
    pbx_close(q);
}

TEST(recv_nowait_on_empty_mailbox_is_enomsg)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    char buf[8];
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, 3, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, 3, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, -3, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, LONG_MIN, buf, sizeof(buf), PBX_NOWAIT | PBX_PEEK, NULL), -ENOMSG);
    /* Emptied again after a message came and went. */
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), 0);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_EQ(stat_of(q).received, 1);
    pbx_close(q);
}

TEST(send_nowait_on_full_mailbox_is_eagain)
{
    pbx_t *q = open_box("err", 2, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "a", 1, PBX_NOWAIT), 0);
    ASSERT_ERR(pbx_send(q, 1, "b", 1, PBX_NOWAIT), 0);
    ASSERT_ERR(pbx_send(q, 1, "c", 1, PBX_NOWAIT), -EAGAIN);
    ASSERT_ERR(pbx_send(q, 1, NULL, 0, PBX_NOWAIT), -EAGAIN);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.sent, 2);
    ASSERT_EQ(st.dropped, 0);
    pbx_close(q);
}

/* ---- NULL handles and pointers ----------------------------------------------------------- */

TEST(null_handle_is_einval_everywhere)
{
    char buf[8];
    long t;
    struct pbx_stat st;
    const struct timespec ts = {0, 1000000};
    ASSERT_ERR(pbx_send(NULL, 1, "x", 1, 0), -EINVAL);
    ASSERT_ERR(pbx_send(NULL, 1, "x", 1, PBX_NOWAIT), -EINVAL);
    ASSERT_ERR(pbx_timedsend(NULL, 1, "x", 1, 0, &ts), -EINVAL);
    ASSERT_ERR(pbx_timedsend(NULL, 1, "x", 1, 0, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv(NULL, 0, buf, sizeof(buf), 0, &t), -EINVAL);
    ASSERT_ERR(pbx_recv(NULL, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EINVAL);
    ASSERT_ERR(pbx_timedrecv(NULL, 0, buf, sizeof(buf), 0, NULL, &ts), -EINVAL);
    ASSERT_ERR(pbx_timedrecv(NULL, 0, buf, sizeof(buf), 0, NULL, NULL), -EINVAL);
    ASSERT_ERR(pbx_stat(NULL, &st), -EINVAL);
    ASSERT_ERR(pbx_remove(NULL), -EINVAL);
    ASSERT_EQ(pbx_close(NULL), 0);
}

TEST(stat_with_null_result_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_stat(q, NULL), -EINVAL);
    pbx_close(q);
}

TEST(open_with_null_out_is_einval)
{
    ASSERT_ERR(pbx_open("err", PBX_CREATE, NULL, NULL), -EINVAL);
    ASSERT_ERR(pbx_open_private(NULL, NULL), -EINVAL);
    /* Nothing was created. */
    ASSERT_EQ(dir_entries(), 0);
    pbx_t *q;
    ASSERT_ERR(pbx_open("err", 0, NULL, &q), -ENOENT);
}

TEST(close_null_returns_zero)
{
    ASSERT_EQ(pbx_close(NULL), 0);
}

/* ---- pbx_open flags ----------------------------------------------------------------------- */

TEST(open_unknown_flag_is_einval)
{
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("err", PBX_CREATE | 0x4, NULL, &q), -EINVAL);
    ASSERT_ERR(pbx_open("err", PBX_CREATE | PBX_NOWAIT, NULL, &q), -EINVAL);
    ASSERT_ERR(pbx_open("err", PBX_CREATE | 0x40000000, NULL, &q), -EINVAL);
    ASSERT_ERR(pbx_open("err", -1, NULL, &q), -EINVAL);
    ASSERT_EQ(dir_entries(), 0);
    /* Also for an existing mailbox. */
    ASSERT_OK(pbx_open("err", PBX_CREATE, NULL, &q));
    pbx_t *q2 = NULL;
    ASSERT_ERR(pbx_open("err", PBX_PEEK, NULL, &q2), -EINVAL);
    pbx_close(q);
}

/* ---- timeouts ----------------------------------------------------------------------------- */

static const struct timespec bad_timeouts[] = {
    {-1, 0}, {0, 1000000000L}, {0, -1}, {-1, -1}, {1, 1000000000L}, {LONG_MIN, 0}, {0, LONG_MAX},
};
#define N_BAD_TIMEOUTS (sizeof(bad_timeouts) / sizeof(bad_timeouts[0]))

TEST(timedrecv_invalid_timeout_is_einval)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    char buf[8];
    for (size_t i = 0; i < N_BAD_TIMEOUTS; i++)
        ASSERT_ERR(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &bad_timeouts[i]), -EINVAL);
    pbx_close(q);
}

TEST(timedrecv_invalid_timeout_is_einval_even_when_a_message_is_ready)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), 0);
    char buf[8];
    for (size_t i = 0; i < N_BAD_TIMEOUTS; i++)
        ASSERT_ERR(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &bad_timeouts[i]), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

TEST(timedsend_invalid_timeout_is_einval)
{
    pbx_t *q = open_box("err", 1, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), 0); /* full: the call would have to wait */
    for (size_t i = 0; i < N_BAD_TIMEOUTS; i++)
        ASSERT_ERR(pbx_timedsend(q, 1, "y", 1, 0, &bad_timeouts[i]), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

TEST(timedsend_invalid_timeout_is_einval_even_when_there_is_room)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    for (size_t i = 0; i < N_BAD_TIMEOUTS; i++)
        ASSERT_ERR(pbx_timedsend(q, 1, "y", 1, 0, &bad_timeouts[i]), -EINVAL);
    ASSERT_EQ(stat_of(q).msgs, 0);
    ASSERT_EQ(stat_of(q).sent, 0);
    pbx_close(q);
}

TEST(timedrecv_on_empty_mailbox_times_out_after_at_least_the_timeout)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    char buf[8];
    const struct timespec ts = {0, 50 * 1000000L};
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &ts), -ETIMEDOUT);
    double elapsed = pbx_test_now_ms() - t0;
    ASSERT_GE(elapsed * 1000, 50 * 1000);
    ASSERT_LT(elapsed, 10000);
    pbx_close(q);
}

TEST(timedrecv_for_absent_type_times_out_and_leaves_other_messages)
{
    pbx_t *q = open_box("err", 8, 1024, 64);
    ASSERT_ERR(pbx_send(q, 3, "x", 1, 0), 0);
    char buf[8];
    const struct timespec ts = {0, 30 * 1000000L};
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedrecv(q, 4, buf, sizeof(buf), 0, NULL, &ts), -ETIMEDOUT);
    ASSERT_GE((pbx_test_now_ms() - t0) * 1000, 30 * 1000);
    ASSERT_ERR(pbx_timedrecv(q, 3, buf, sizeof(buf), PBX_EXCEPT, NULL, &ts), -ETIMEDOUT);
    ASSERT_ERR(pbx_timedrecv(q, -2, buf, sizeof(buf), 0, NULL, &ts), -ETIMEDOUT);
    ASSERT_EQ(stat_of(q).msgs, 1);
    ASSERT_EQ(pbx_timedrecv(q, 3, buf, sizeof(buf), 0, NULL, &ts), 1);
    pbx_close(q);
}

TEST(timedsend_on_full_mailbox_times_out_after_at_least_the_timeout)
{
    pbx_t *q = open_box("err", 1, 1024, 64);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), 0);
    const struct timespec ts = {0, 50 * 1000000L};
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedsend(q, 1, "y", 1, 0, &ts), -ETIMEDOUT);
    double elapsed = pbx_test_now_ms() - t0;
    ASSERT_GE(elapsed * 1000, 50 * 1000);
    ASSERT_LT(elapsed, 10000);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 1);
    ASSERT_EQ(st.sent, 1);
    pbx_close(q);
}

TEST(zero_timeout_on_empty_or_full_is_etimedout)
{
    pbx_t *q = open_box("err", 1, 1024, 64);
    const struct timespec zero = {0, 0};
    char buf[8];
    ASSERT_ERR(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &zero), -ETIMEDOUT);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), 0);
    ASSERT_ERR(pbx_timedsend(q, 1, "y", 1, 0, &zero), -ETIMEDOUT);
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

TEST(zero_timeout_succeeds_when_the_call_need_not_wait)
{
    pbx_t *q = open_box("err", 1, 1024, 64);
    const struct timespec zero = {0, 0};
    char buf[8];
    ASSERT_ERR(pbx_timedsend(q, 1, "x", 1, 0, &zero), 0);
    long t = 0;
    ASSERT_EQ(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &t, &zero), 1);
    ASSERT_EQ(t, 1);
    pbx_close(q);
}

TEST(largest_valid_timeouts_are_accepted)
{
    pbx_t *q = open_box("err", 4, 1024, 64);
    const struct timespec almost = {0, 999999999L};
    const struct timespec huge = {LONG_MAX, 999999999L};
    char buf[8];
    ASSERT_ERR(pbx_timedsend(q, 1, "a", 1, 0, &almost), 0);
    ASSERT_ERR(pbx_timedsend(q, 1, "b", 1, 0, &huge), 0);
    ASSERT_EQ(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &almost), 1);
    ASSERT_EQ(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &huge), 1);
    pbx_close(q);
}

static int send_later(void *arg)
{
    pbx_test_sleep_ms(100);
    return pbx_send((pbx_t *) arg, 9, "late", 4, 0) == 0 ? 0 : 1;
}

TEST(timedrecv_with_huge_timeout_waits_instead_of_overflowing)
{
    pbx_t *q = open_box("err", 4, 1024, 64);
    const struct timespec huge = {LONG_MAX, 999999999L};
    pid_t pid = pbx_test_fork(send_later, q);
    char buf[8];
    long t = 0;
    ASSERT_EQ(pbx_timedrecv(q, 9, buf, sizeof(buf), 0, &t, &huge), 4);
    ASSERT_EQ(t, 9);
    ASSERT_MEM_EQ(buf, "late", 4);
    pbx_test_wait_ok(pid);
    pbx_close(q);
}

/* ---- names -------------------------------------------------------------------------------- */

TEST(open_bad_names_is_einval)
{
    char long_name[PBX_NAME_MAX + 2];
    memset(long_name, 'n', PBX_NAME_MAX + 1);
    long_name[PBX_NAME_MAX + 1] = '\0'; /* 201 characters */
    char very_long[1000];
    memset(very_long, 'v', sizeof(very_long) - 1);
    very_long[sizeof(very_long) - 1] = '\0';
    const char *bad[] = {"",     "a/b",      "/abs",    "dir/",   ".",   "..",   "a b",
                         " ",    "a\tb",     "a\nb",    "a:b",    "a*b", "a\\b", "a+b",
                         "x@y",  "~",        "a%b",     "a,b",    "a=b", "(a)",  "a'b",
                         "a\"b", "\xc3\xa4", long_name, very_long};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pbx_t *q = NULL;
        int r = pbx_open(bad[i], PBX_CREATE, NULL, &q);
        if (r != -EINVAL)
            pbx_test_fail(__FILE__, __LINE__, "pbx_open(\"%s\") returned %d (%s), expected EINVAL",
                          bad[i], r, pbx_test_errname(r));
        r = pbx_open(bad[i], 0, NULL, &q);
        if (r != -EINVAL)
            pbx_test_fail(__FILE__, __LINE__,
                          "pbx_open(\"%s\", 0) returned %d (%s), expected EINVAL", bad[i], r,
                          pbx_test_errname(r));
    }
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open(NULL, PBX_CREATE, NULL, &q), -EINVAL);
    ASSERT_EQ(dir_entries(), 0);
}

TEST(unlink_bad_names_is_einval)
{
    char long_name[PBX_NAME_MAX + 2];
    memset(long_name, 'n', PBX_NAME_MAX + 1);
    long_name[PBX_NAME_MAX + 1] = '\0';
    const char *bad[] = {"", "a/b", ".", "..", "a b", "a:b", long_name};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = pbx_unlink(bad[i]);
        if (r != -EINVAL)
            pbx_test_fail(__FILE__, __LINE__,
                          "pbx_unlink(\"%s\") returned %d (%s), expected EINVAL", bad[i], r,
                          pbx_test_errname(r));
    }
    ASSERT_ERR(pbx_unlink(NULL), -EINVAL);
}

TEST(name_of_exactly_200_characters_works)
{
    char name[PBX_NAME_MAX + 1];
    memset(name, 'x', PBX_NAME_MAX);
    name[PBX_NAME_MAX] = '\0';
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, NULL, &q));
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    pbx_t *q2 = NULL;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2));
    char buf[4];
    ASSERT_EQ(pbx_recv(q2, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    pbx_close(q2);
    pbx_close(q);
    ASSERT_OK(pbx_unlink(name));
    ASSERT_ERR(pbx_open(name, 0, NULL, &q), -ENOENT);
}

TEST(names_using_every_allowed_character_work)
{
    const char *good[] = {"a",       "Z",   "0",   "-",     "_",     "...",
                          ".hidden", "a..", "A-z", "x.y_z", "09-az", "AZaz09._-"};
    pbx_t *qs[sizeof(good) / sizeof(good[0])];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int r = pbx_open(good[i], PBX_CREATE | PBX_EXCL, NULL, &qs[i]);
        if (r != 0)
            pbx_test_fail(__FILE__, __LINE__, "pbx_open(\"%s\") returned %d (%s)", good[i], r,
                          pbx_test_errname(r));
        ASSERT_OK(pbx_send(qs[i], (long) i + 1, good[i], strlen(good[i]), 0));
    }
    /* They are all distinct mailboxes. */
    ASSERT_EQ(dir_entries(), (int) (sizeof(good) / sizeof(good[0])));
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char buf[32];
        long t = 0;
        ASSERT_EQ(pbx_recv(qs[i], 0, buf, sizeof(buf), PBX_NOWAIT, &t),
                  (long long) strlen(good[i]));
        ASSERT_EQ(t, (long) i + 1);
        ASSERT_MEM_EQ(buf, good[i], strlen(good[i]));
        pbx_close(qs[i]);
    }
}

/* "spool:" names go to the spool transport (tests/test_spool*.c); an empty path is invalid
 * and a missing one is not created without PBX_CREATE. */
TEST(spool_names_need_a_path_and_are_not_created_without_pbx_create)
{
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("spool:", PBX_CREATE, NULL, &q), -EINVAL);
    ASSERT_ERR(pbx_open("spool:/nonexistent-postbox-dir/x", 0, NULL, &q), -ENOENT);
    ASSERT_ERR(pbx_open("spool:/nonexistent-postbox-dir/x", PBX_CREATE, NULL, &q), -ENOTDIR);
    ASSERT_EQ(dir_entries(), 0);
}

/* ---- options ------------------------------------------------------------------------------ */

static void expect_options_rejected(const struct pbx_options *o, int line)
{
    pbx_t *q = NULL;
    int r = pbx_open("opts", PBX_CREATE, o, &q);
    if (r != -EINVAL)
        pbx_test_fail(__FILE__, line, "pbx_open with bad options returned %d (%s)", r,
                      pbx_test_errname(r));
    r = pbx_open_private(o, &q);
    if (r != -EINVAL)
        pbx_test_fail(__FILE__, line, "pbx_open_private with bad options returned %d (%s)", r,
                      pbx_test_errname(r));
    if (dir_entries() != 0)
        pbx_test_fail(__FILE__, line, "a rejected pbx_open left a file behind");
}

TEST(options_with_mode_bits_beyond_0777_are_einval)
{
    const uint32_t modes[] = {01000, 02000, 04000, 010000, 0100600, 04777, 0x80000000u};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        struct pbx_options o;
        pbx_options_init(&o);
        o.mode = modes[i];
        expect_options_rejected(&o, __LINE__);
    }
}

TEST(options_with_zero_max_msgs_is_einval)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = 0;
    expect_options_rejected(&o, __LINE__);
}

TEST(options_with_max_msgs_above_limit_is_einval)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = 16777217u;
    expect_options_rejected(&o, __LINE__);
    o.max_msgs = UINT32_MAX;
    expect_options_rejected(&o, __LINE__);
}

TEST(options_with_zero_max_bytes_is_einval)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_bytes = 0;
    o.max_msg_size = 0;
    expect_options_rejected(&o, __LINE__);
}

TEST(options_with_max_msg_size_above_max_bytes_is_einval)
{
    struct pbx_options o = pbx_test_options(16, 1000, 1001, PBX_BLOCK);
    expect_options_rejected(&o, __LINE__);
    /* Equal is fine. */
    o.max_msg_size = 1000;
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open("eq", PBX_CREATE, &o, &q));
    static char big[1000];
    ASSERT_ERR(pbx_send(q, 1, big, 1000, PBX_NOWAIT), 0);
    pbx_close(q);
}

TEST(options_with_bad_overflow_policy_is_einval)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.overflow = (enum pbx_overflow) 3;
    expect_options_rejected(&o, __LINE__);
    o.overflow = (enum pbx_overflow) - 1;
    expect_options_rejected(&o, __LINE__);
    o.overflow = (enum pbx_overflow) 1000;
    expect_options_rejected(&o, __LINE__);
}

TEST(options_with_nonzero_reserved_field_is_einval)
{
    for (size_t i = 0; i < sizeof(((struct pbx_options *) 0)->reserved) / sizeof(uint64_t); i++) {
        struct pbx_options o;
        pbx_options_init(&o);
        o.reserved[i] = 1;
        expect_options_rejected(&o, __LINE__);
        o.reserved[i] = UINT64_MAX;
        expect_options_rejected(&o, __LINE__);
    }
}

TEST(options_init_gives_the_documented_defaults)
{
    struct pbx_options o;
    memset(&o, 0xAB, sizeof(o));
    pbx_options_init(&o);
    ASSERT_EQ(o.mode, 0600);
    ASSERT_EQ(o.max_bytes, 1 << 20);
    ASSERT_EQ(o.max_msgs, 4096);
    ASSERT_EQ(o.max_msg_size, 8192);
    ASSERT_EQ(o.overflow, PBX_BLOCK);
    ASSERT_EQ(o.durability, PBX_DURABLE_ALWAYS);
    ASSERT_EQ(o.reserved32, 0);
    for (size_t i = 0; i < sizeof(o.reserved) / sizeof(o.reserved[0]); i++)
        ASSERT_EQ(o.reserved[i], 0);
}

/* ---- pbx_strerror ------------------------------------------------------------------------- */

TEST(strerror_says_success_for_zero_and_positive_values)
{
    const int vals[] = {0, 1, 2, 5, 4096, INT_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        const char *s = pbx_strerror(vals[i]);
        ASSERT_TRUE(s != NULL);
        if (strcmp(s, "success") != 0)
            pbx_test_fail(__FILE__, __LINE__, "pbx_strerror(%d) = \"%s\"", vals[i], s);
    }
}

TEST(strerror_describes_every_error_value)
{
    const int errs[] = {-EINVAL, -ENOENT,       -EEXIST, -EACCES,    -EPERM,  -EBADMSG, -EPROTO,
                        -ENOSPC, -ENOMEM,       -EMFILE, -EMSGSIZE,  -EAGAIN, -ENOBUFS, -EIDRM,
                        -EINTR,  -ENOMSG,       -E2BIG,  -ETIMEDOUT, -ELOOP,  -ENOTDIR, -EOPNOTSUPP,
                        -EISDIR, -ENAMETOOLONG, -EUSERS, -EXDEV,     -1,      -4095,    -9999};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        const char *s = pbx_strerror(errs[i]);
        if (!s || !*s || !strcmp(s, "success"))
            pbx_test_fail(__FILE__, __LINE__, "pbx_strerror(%d) = \"%s\"", errs[i],
                          s ? s : "(null)");
    }
    ASSERT_TRUE(strstr(pbx_strerror(-EIDRM), "removed") != NULL);
}

/* Not a value any call returns, but a description function should not have undefined
 * behaviour for any int (negating INT_MIN overflows); the sanitizer build checks that. */
TEST(strerror_of_int_min_is_a_description_without_undefined_behaviour)
{
    const char *s = pbx_strerror(INT_MIN);
    ASSERT_TRUE(s != NULL);
    ASSERT_TRUE(*s != '\0');
    ASSERT_NE(strcmp(s, "success"), 0);
}

TEST(strerror_gives_distinct_texts_for_the_documented_errors)
{
    const int errs[] = {-EINVAL, -ENOENT,   -EEXIST, -EACCES,    -EBADMSG,
                        -EPROTO, -EMSGSIZE, -EAGAIN, -ENOBUFS,   -EIDRM,
                        -EINTR,  -ENOMSG,   -E2BIG,  -ETIMEDOUT, -EOPNOTSUPP};
    const size_t n = sizeof(errs) / sizeof(errs[0]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (!strcmp(pbx_strerror(errs[i]), pbx_strerror(errs[j])))
                pbx_test_fail(__FILE__, __LINE__, "errors %d and %d both read \"%s\"", errs[i],
                              errs[j], pbx_strerror(errs[i]));
}

TEST(version_matches_the_header)
{
    char want[64];
    snprintf(want, sizeof(want), "%d.%d.%d", PBX_VERSION_MAJOR, PBX_VERSION_MINOR,
             PBX_VERSION_PATCH);
    ASSERT_TRUE(pbx_version() != NULL);
    ASSERT_EQ(strcmp(pbx_version(), want), 0);
}
