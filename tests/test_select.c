/*
 * test_select.c — which message a receive takes: the msgrcv(2) selection rules by arrival, by
 * exact type, by "any type but" and by "lowest type up to", together with PBX_PEEK,
 * PBX_NOERROR, -E2BIG, every payload size, and a long random run checked against a plain
 * reference model (an array in arrival order, searched linearly).
 *
 * Everything here runs in one process with PBX_NOWAIT, so a wrong answer shows up as a wrong
 * return value or payload rather than as a hang.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <limits.h>

static pbx_t *open_box(const char *name, uint32_t max_msgs, uint64_t max_bytes,
                       uint32_t max_msg_size)
{
    pbx_t *q = NULL;
    struct pbx_options o = pbx_test_options(max_msgs, max_bytes, max_msg_size, PBX_BLOCK);
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_TRUE(q != NULL);
    return q;
}

static void send_str(pbx_t *q, long type, const char *s)
{
    ASSERT_ERR(pbx_send(q, type, s, strlen(s), PBX_NOWAIT), 0);
}

/* Receive with selector sel and extra flags; expect exactly the message (want_type, want). A
 * macro, so that a failure reports the line of the caller. */
#define EXPECT_RECV(q, sel, flags, want_type, want)                                                \
    do {                                                                                           \
        char got_[256];                                                                            \
        long got_type_ = -12345;                                                                   \
        memset(got_, 0, sizeof(got_));                                                             \
        ASSERT_EQ(pbx_recv((q), (sel), got_, sizeof(got_), PBX_NOWAIT | (flags), &got_type_),      \
                  (long long) strlen(want));                                                       \
        ASSERT_EQ(got_type_, (want_type));                                                         \
        ASSERT_MEM_EQ(got_, (want), strlen(want));                                                 \
    } while (0)

#define EXPECT_NOMSG(q, sel, flags)                                                                \
    do {                                                                                           \
        char got_[256];                                                                            \
        ASSERT_ERR(pbx_recv((q), (sel), got_, sizeof(got_), PBX_NOWAIT | (flags), NULL), -ENOMSG); \
    } while (0)

static uint64_t queued_msgs(pbx_t *q)
{
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    return st.msgs;
}

/* ---- type == 0 ------------------------------------------------------------------------- */

TEST(recv_type_zero_takes_oldest_of_any_type)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 3, "a");
    send_str(q, 1, "b");
    send_str(q, 2, "c");
    send_str(q, 1, "d");
    send_str(q, 3, "e");
    EXPECT_RECV(q, 0, 0, 3, "a");
    EXPECT_RECV(q, 0, 0, 1, "b");
    EXPECT_RECV(q, 0, 0, 2, "c");
    EXPECT_RECV(q, 0, 0, 1, "d");
    EXPECT_RECV(q, 0, 0, 3, "e");
    EXPECT_NOMSG(q, 0, 0);
    pbx_close(q);
}

TEST(recv_type_zero_keeps_arrival_order_across_interleaved_selective_receives)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 1, "a1");
    send_str(q, 2, "b1");
    send_str(q, 1, "a2");
    send_str(q, 2, "b2");
    EXPECT_RECV(q, 2, 0, 2, "b1");
    send_str(q, 2, "b3");
    EXPECT_RECV(q, 0, 0, 1, "a1");
    EXPECT_RECV(q, 0, 0, 1, "a2");
    EXPECT_RECV(q, 0, 0, 2, "b2");
    EXPECT_RECV(q, 0, 0, 2, "b3");
    EXPECT_NOMSG(q, 0, 0);
    pbx_close(q);
}

/* While the index is empty, a receive that the oldest published message matches takes it
 * straight from the arrival ring; once a selective receive has moved messages into the index,
 * they must still come first, and every kind of receive must agree on what is oldest. */
TEST(receives_taken_straight_from_the_arrival_ring_agree_with_those_through_the_index)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 1, "a1");
    send_str(q, 2, "b1");
    EXPECT_RECV(q, 0, 0, 1, "a1"); /* straight from the ring */
    EXPECT_RECV(q, 2, 0, 2, "b1"); /* exact type at the head: straight too */
    send_str(q, 3, "c1");
    send_str(q, 1, "a2");
    send_str(q, 3, "c2");
    EXPECT_RECV(q, 1, 0, 1, "a2");          /* head is type 3: drains all three into the index */
    send_str(q, 1, "a3");                   /* after them, still in the ring */
    EXPECT_RECV(q, 1, PBX_EXCEPT, 3, "c1"); /* from the index, older than a3 */
    EXPECT_RECV(q, 0, PBX_PEEK, 3, "c2");   /* the index first, even with a3 waiting */
    EXPECT_RECV(q, 0, 0, 3, "c2");
    EXPECT_RECV(q, 0, PBX_PEEK, 1, "a3"); /* the index is empty again: the ring's head */
    EXPECT_RECV(q, 3, PBX_EXCEPT, 1, "a3");
    send_str(q, 4, "d1");
    send_str(q, 5, "e1");
    EXPECT_RECV(q, 4, PBX_EXCEPT, 5, "e1"); /* head excluded: found through the index */
    send_str(q, 6, "f1");
    EXPECT_RECV(q, 0, 0, 4, "d1");
    EXPECT_RECV(q, 0, 0, 6, "f1");
    EXPECT_NOMSG(q, 0, 0);
    EXPECT_NOMSG(q, 6, PBX_EXCEPT);
    /* A message larger than its slot always goes through the index; a small one behind it
     * must still come second. */
    char big[100];
    memset(big, 'g', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    send_str(q, 7, big);
    send_str(q, 8, "h1");
    EXPECT_RECV(q, 0, 0, 7, big);
    EXPECT_RECV(q, 0, 0, 8, "h1");
    ASSERT_EQ(queued_msgs(q), 0);
    pbx_close(q);
}
/* ---- type > 0 -------------------------------------------------------------------------- */

TEST(recv_positive_type_takes_oldest_of_exactly_that_type)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 1, "a1");
    send_str(q, 2, "b1");
    send_str(q, 1, "a2");
    send_str(q, 3, "c1");
    send_str(q, 2, "b2");
    EXPECT_RECV(q, 2, 0, 2, "b1");
    EXPECT_RECV(q, 2, 0, 2, "b2");
    EXPECT_NOMSG(q, 2, 0);
    /* The others are untouched and still in arrival order. */
    ASSERT_EQ(queued_msgs(q), 3);
    EXPECT_RECV(q, 0, 0, 1, "a1");
    EXPECT_RECV(q, 0, 0, 1, "a2");
    EXPECT_RECV(q, 0, 0, 3, "c1");
    pbx_close(q);
}

TEST(recv_positive_type_with_no_such_message_is_enomsg_and_changes_nothing)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 4, "x");
    send_str(q, 6, "y");
    EXPECT_NOMSG(q, 5, 0);
    EXPECT_NOMSG(q, 1, 0);
    EXPECT_NOMSG(q, LONG_MAX, 0);
    ASSERT_EQ(queued_msgs(q), 2);
    EXPECT_RECV(q, 0, 0, 4, "x");
    EXPECT_RECV(q, 0, 0, 6, "y");
    pbx_close(q);
}

TEST(recv_positive_type_handles_extreme_type_values)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, LONG_MAX, "max");
    send_str(q, 1, "one");
    send_str(q, LONG_MAX - 1, "max-1");
    EXPECT_RECV(q, LONG_MAX - 1, 0, LONG_MAX - 1, "max-1");
    EXPECT_RECV(q, LONG_MAX, 0, LONG_MAX, "max");
    EXPECT_RECV(q, 1, 0, 1, "one");
    pbx_close(q);
}

/* ---- type > 0 with PBX_EXCEPT ---------------------------------------------------------- */

TEST(recv_except_takes_oldest_of_any_other_type)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 2, "b1");
    send_str(q, 3, "c1");
    send_str(q, 1, "a1");
    EXPECT_RECV(q, 1, PBX_EXCEPT, 2, "b1");
    EXPECT_RECV(q, 1, PBX_EXCEPT, 3, "c1");
    EXPECT_NOMSG(q, 1, PBX_EXCEPT);
    EXPECT_RECV(q, 0, 0, 1, "a1");
    pbx_close(q);
}

TEST(recv_except_skips_oldest_message_when_it_is_the_excluded_type)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 7, "x1");
    send_str(q, 7, "x2");
    send_str(q, 7, "x3");
    send_str(q, 8, "y1");
    send_str(q, 7, "x4");
    EXPECT_RECV(q, 7, PBX_EXCEPT, 8, "y1");
    /* Only type 7 is left: nothing is "other than 7". */
    EXPECT_NOMSG(q, 7, PBX_EXCEPT);
    ASSERT_EQ(queued_msgs(q), 4);
    EXPECT_RECV(q, 0, 0, 7, "x1");
    EXPECT_RECV(q, 0, 0, 7, "x2");
    EXPECT_RECV(q, 0, 0, 7, "x3");
    EXPECT_RECV(q, 0, 0, 7, "x4");
    pbx_close(q);
}

TEST(recv_except_with_several_interleaved_types_follows_arrival_order)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 5, "x1");
    send_str(q, 3, "y1");
    send_str(q, 5, "x2");
    send_str(q, 7, "z1");
    send_str(q, 3, "y2");
    send_str(q, 5, "x3");
    send_str(q, 9, "w1");
    EXPECT_RECV(q, 5, PBX_EXCEPT, 3, "y1");
    EXPECT_RECV(q, 3, PBX_EXCEPT, 5, "x1");
    EXPECT_RECV(q, 5, PBX_EXCEPT, 7, "z1");
    EXPECT_RECV(q, 7, PBX_EXCEPT, 5, "x2");
    EXPECT_RECV(q, 5, PBX_EXCEPT, 3, "y2");
    EXPECT_RECV(q, 9, PBX_EXCEPT, 5, "x3");
    EXPECT_NOMSG(q, 9, PBX_EXCEPT);
    /* A type that is not queued at all excludes nothing. */
    EXPECT_RECV(q, 4, PBX_EXCEPT, 9, "w1");
    EXPECT_NOMSG(q, 4, PBX_EXCEPT);
    pbx_close(q);
}

/* ---- type < 0 -------------------------------------------------------------------------- */

TEST(recv_negative_type_takes_lowest_type_first)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 5, "e1");
    send_str(q, 3, "c1");
    send_str(q, 4, "d1");
    send_str(q, 3, "c2");
    send_str(q, 1, "a1");
    /* Type 1 is the lowest <= 4 although c1 and d1 are older. */
    EXPECT_RECV(q, -4, 0, 1, "a1");
    EXPECT_RECV(q, -4, 0, 3, "c1");
    EXPECT_RECV(q, -4, 0, 3, "c2");
    EXPECT_RECV(q, -4, 0, 4, "d1");
    /* Only type 5 is left, above the limit. */
    EXPECT_NOMSG(q, -4, 0);
    EXPECT_RECV(q, -5, 0, 5, "e1");
    pbx_close(q);
}

TEST(recv_negative_type_is_enomsg_when_every_type_is_above_the_limit)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 10, "ten");
    send_str(q, 20, "twenty");
    EXPECT_NOMSG(q, -1, 0);
    EXPECT_NOMSG(q, -9, 0);
    ASSERT_EQ(queued_msgs(q), 2);
    /* The limit itself is included. */
    EXPECT_RECV(q, -10, 0, 10, "ten");
    EXPECT_NOMSG(q, -19, 0);
    EXPECT_RECV(q, -20, 0, 20, "twenty");
    pbx_close(q);
}

TEST(recv_negative_type_prefers_lowest_type_over_older_higher_types)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    for (int i = 0; i < 10; i++) {
        char s[8];
        snprintf(s, sizeof(s), "h%d", i);
        send_str(q, 50 - i, s); /* types 50, 49, ..., 41: each newer one is lower */
    }
    for (int i = 9; i >= 0; i--) {
        char s[8];
        snprintf(s, sizeof(s), "h%d", i);
        EXPECT_RECV(q, -100, 0, 50 - i, s);
    }
    pbx_close(q);
}

TEST(recv_long_min_takes_any_type_lowest_first)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, LONG_MAX, "max");
    send_str(q, 5, "five");
    send_str(q, 3, "three-a");
    send_str(q, 1000, "thousand");
    send_str(q, 3, "three-b");
    EXPECT_RECV(q, LONG_MIN, 0, 3, "three-a");
    EXPECT_RECV(q, LONG_MIN, 0, 3, "three-b");
    EXPECT_RECV(q, LONG_MIN, 0, 5, "five");
    EXPECT_RECV(q, LONG_MIN, 0, 1000, "thousand");
    EXPECT_RECV(q, LONG_MIN, 0, LONG_MAX, "max");
    EXPECT_NOMSG(q, LONG_MIN, 0);
    pbx_close(q);
}

TEST(recv_minus_long_max_includes_type_long_max)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, LONG_MAX, "max");
    EXPECT_NOMSG(q, -(LONG_MAX - 1), 0);
    EXPECT_RECV(q, -LONG_MAX, 0, LONG_MAX, "max");
    pbx_close(q);
}

/* ---- type_out --------------------------------------------------------------------------- */

TEST(recv_fills_type_out_and_accepts_null_type_out)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 42, "answer");
    send_str(q, 7, "seven");
    long t = 0;
    char buf[32];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 6);
    ASSERT_EQ(t, 42);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 5);
    ASSERT_MEM_EQ(buf, "seven", 5);
    /* Selective, except and negative receives fill it too. */
    send_str(q, 9, "n");
    send_str(q, 2, "t");
    t = 0;
    ASSERT_EQ(pbx_recv(q, 2, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, &t), 1);
    ASSERT_EQ(t, 9);
    t = 0;
    ASSERT_EQ(pbx_recv(q, -5, buf, sizeof(buf), PBX_NOWAIT | PBX_PEEK, &t), 1);
    ASSERT_EQ(t, 2);
    pbx_close(q);
}

/* ---- PBX_PEEK ---------------------------------------------------------------------------- */

TEST(peek_leaves_message_queued_and_second_recv_gets_the_same_one)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 2, "first");
    send_str(q, 1, "second");
    EXPECT_RECV(q, 0, PBX_PEEK, 2, "first");
    EXPECT_RECV(q, 0, PBX_PEEK, 2, "first");
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.bytes, 11);
    ASSERT_EQ(st.received, 0);
    EXPECT_RECV(q, 0, 0, 2, "first");
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 1);
    ASSERT_EQ(st.received, 1);
    EXPECT_RECV(q, 0, 0, 1, "second");
    pbx_close(q);
}

TEST(peek_works_with_every_selection_kind)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    send_str(q, 5, "e");
    send_str(q, 2, "b");
    send_str(q, 9, "i");
    EXPECT_RECV(q, 9, PBX_PEEK, 9, "i");
    EXPECT_RECV(q, 5, PBX_PEEK | PBX_EXCEPT, 2, "b");
    EXPECT_RECV(q, -6, PBX_PEEK, 2, "b");
    EXPECT_RECV(q, LONG_MIN, PBX_PEEK, 2, "b");
    EXPECT_NOMSG(q, 3, PBX_PEEK);
    ASSERT_EQ(queued_msgs(q), 3);
    EXPECT_RECV(q, 0, 0, 5, "e");
    EXPECT_RECV(q, 0, 0, 2, "b");
    EXPECT_RECV(q, 0, 0, 9, "i");
    pbx_close(q);
}

/* ---- -E2BIG and PBX_NOERROR ------------------------------------------------------------ */

TEST(recv_too_small_buffer_is_e2big_and_message_stays_queued)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 3, "0123456789", 10, 0));
    char buf[16];
    ASSERT_ERR(pbx_recv(q, 0, buf, 9, PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_ERR(pbx_recv(q, 3, buf, 5, PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_ERR(pbx_recv(q, 0, buf, 9, PBX_NOWAIT | PBX_PEEK, NULL), -E2BIG);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 1);
    ASSERT_EQ(st.bytes, 10);
    ASSERT_EQ(st.received, 0);
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, 10, PBX_NOWAIT, &t), 10);
    ASSERT_EQ(t, 3);
    ASSERT_MEM_EQ(buf, "0123456789", 10);
    ASSERT_EQ(queued_msgs(q), 0);
    pbx_close(q);
}

TEST(recv_e2big_does_not_skip_to_a_later_message)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 1, "a long message", 14, 0));
    ASSERT_OK(pbx_send(q, 1, "s", 1, 0));
    char buf[4];
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_ERR(pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_ERR(pbx_recv(q, -1, buf, sizeof(buf), PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_EQ(queued_msgs(q), 2);
    EXPECT_RECV(q, 0, 0, 1, "a long message");
    EXPECT_RECV(q, 0, 0, 1, "s");
    pbx_close(q);
}

TEST(recv_zero_capacity_on_nonempty_message_is_e2big)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_ERR(pbx_recv(q, 0, NULL, 0, PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_EQ(queued_msgs(q), 1);
    /* With PBX_NOERROR it is taken, and nothing is copied. */
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, NULL, 0, PBX_NOWAIT | PBX_NOERROR, &t), 0);
    ASSERT_EQ(t, 1);
    ASSERT_EQ(queued_msgs(q), 0);
    pbx_close(q);
}

TEST(noerror_truncates_to_capacity_and_removes_the_message)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 6, "0123456789", 10, 0));
    ASSERT_OK(pbx_send(q, 6, "next", 4, 0));
    char buf[16];
    memset(buf, '#', sizeof(buf));
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, 4, PBX_NOWAIT | PBX_NOERROR, &t), 4);
    ASSERT_EQ(t, 6);
    ASSERT_MEM_EQ(buf, "0123####", 8); /* nothing written past cap */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 1);
    ASSERT_EQ(st.bytes, 4);
    ASSERT_EQ(st.received, 1);
    EXPECT_RECV(q, 0, 0, 6, "next");
    pbx_close(q);
}

TEST(noerror_with_big_enough_buffer_returns_full_length)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 1, "abc", 3, 0));
    char buf[16];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_NOERROR, NULL), 3);
    ASSERT_MEM_EQ(buf, "abc", 3);
    ASSERT_OK(pbx_send(q, 1, "abcd", 4, 0));
    ASSERT_EQ(pbx_recv(q, 0, buf, 4, PBX_NOWAIT | PBX_NOERROR, NULL), 4);
    ASSERT_MEM_EQ(buf, "abcd", 4);
    pbx_close(q);
}

TEST(noerror_with_peek_truncates_and_keeps_the_message)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 1, "0123456789", 10, 0));
    char buf[16];
    ASSERT_EQ(pbx_recv(q, 0, buf, 3, PBX_NOWAIT | PBX_NOERROR | PBX_PEEK, NULL), 3);
    ASSERT_MEM_EQ(buf, "012", 3);
    ASSERT_EQ(queued_msgs(q), 1);
    EXPECT_RECV(q, 0, 0, 1, "0123456789");
    pbx_close(q);
}

TEST(noerror_truncates_large_chunked_messages_byte_for_byte)
{
    pbx_t *q = open_box("sel", 16, 1 << 16, 8192);
    static unsigned char out[8192], in[8192];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (unsigned char) (i * 37 + (i >> 8) + 1);
    const size_t caps[] = {0, 1, 23, 24, 25, 100, 280, 281, 1000, 4096, 8191};
    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
        ASSERT_OK(pbx_send(q, 1, out, sizeof(out), 0));
        memset(in, 0xEE, sizeof(in));
        ASSERT_EQ(pbx_recv(q, 0, in, caps[k], PBX_NOWAIT | PBX_NOERROR, NULL), (long long) caps[k]);
        ASSERT_MEM_EQ(in, out, caps[k]);
        for (size_t i = caps[k]; i < sizeof(in); i++)
            ASSERT_EQ(in[i], 0xEE);
        ASSERT_EQ(queued_msgs(q), 0);
    }
    pbx_close(q);
}

/* The transport's lengths are 32-bit: a capacity beyond 4 GiB must not wrap to a small one.
 * Only the 10 payload bytes are ever written, so the small buffer is safe. */
TEST(recv_capacity_above_4gib_is_not_truncated)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 1, "0123456789", 10, 0));
    ASSERT_OK(pbx_send(q, 1, "abcdefghij", 10, 0));
    char buf[16];
    ASSERT_EQ(pbx_recv(q, 0, buf, ((size_t) 1 << 32) + 5, PBX_NOWAIT, NULL), 10);
    ASSERT_MEM_EQ(buf, "0123456789", 10);
    ASSERT_EQ(pbx_recv(q, 0, buf, SIZE_MAX, PBX_NOWAIT, NULL), 10);
    ASSERT_MEM_EQ(buf, "abcdefghij", 10);
    pbx_close(q);
}

/* ---- zero-length messages -------------------------------------------------------------- */

TEST(zero_length_messages_are_queued_and_received_in_order)
{
    pbx_t *q = open_box("sel", 64, 4096, 256);
    ASSERT_OK(pbx_send(q, 4, NULL, 0, 0));
    ASSERT_OK(pbx_send(q, 5, "x", 1, 0));
    ASSERT_OK(pbx_send(q, 6, "", 0, 0));
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 3);
    ASSERT_EQ(st.bytes, 1);
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, NULL, 0, PBX_NOWAIT, &t), 0);
    ASSERT_EQ(t, 4);
    EXPECT_RECV(q, 0, 0, 5, "x");
    char buf[8];
    t = 0;
    ASSERT_EQ(pbx_recv(q, 6, buf, sizeof(buf), PBX_NOWAIT, &t), 0);
    ASSERT_EQ(t, 6);
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(st.received, 3);
    pbx_close(q);
}

/* ---- every payload size ---------------------------------------------------------------- */

static void fill_pattern(unsigned char *p, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char) (x >> 16);
    }
}

/* Send and receive every size from 0 to max_msg_size, one at a time. */
static void roundtrip_every_size(uint32_t max_msg_size)
{
    pbx_t *q = open_box("sizes", 8, 4ull * max_msg_size, max_msg_size);
    unsigned char *out = malloc(max_msg_size + 1), *in = malloc(max_msg_size + 16);
    ASSERT_TRUE(out && in);
    for (uint32_t len = 0; len <= max_msg_size; len++) {
        fill_pattern(out, len, len);
        ASSERT_ERR(pbx_send(q, 1 + len % 5, out, len, PBX_NOWAIT), 0);
        memset(in, 0, max_msg_size + 16);
        long t = 0;
        ASSERT_EQ(pbx_recv(q, 0, in, max_msg_size + 16, PBX_NOWAIT, &t), (long long) len);
        ASSERT_EQ(t, 1 + len % 5);
        if (memcmp(in, out, len) != 0)
            pbx_test_fail(__FILE__, __LINE__, "payload of size %u differs", len);
    }
    ASSERT_ERR(pbx_send(q, 1, out, max_msg_size + 1, PBX_NOWAIT), -EMSGSIZE);
    free(out);
    free(in);
    pbx_close(q);
}

TEST(every_size_up_to_2000_roundtrips_byte_for_byte)
{
    roundtrip_every_size(2000);
}

TEST(every_size_up_to_8192_roundtrips_byte_for_byte)
{
    roundtrip_every_size(8192);
}

TEST(every_size_roundtrips_when_messages_fit_inline)
{
    roundtrip_every_size(1);
    pbx_unlink("sizes");
    roundtrip_every_size(23);
    pbx_unlink("sizes");
    roundtrip_every_size(24);
    pbx_unlink("sizes");
    roundtrip_every_size(25);
}

/* Sizes just around the inline limit (24) plus any multiple of any plausible chunk size. */
TEST(sizes_around_inline_and_chunk_boundaries_roundtrip_while_queued_together)
{
    const uint32_t max = 65536;
    pbx_t *q = open_box("sizes", 64, 1 << 20, max);
    static uint32_t sizes[16384];
    size_t n = 0;
    for (uint32_t c = 64; c <= 1024; c *= 2)
        for (uint32_t k = 0; 24 + k * c <= max + 1; k++)
            for (int d = -2; d <= 2; d++) {
                long s = 24 + (long) k * c + d;
                if (s >= 0 && s <= (long) max)
                    sizes[n++] = (uint32_t) s;
            }
    sizes[n++] = max;
    ASSERT_LT(n, sizeof(sizes) / sizeof(sizes[0]));
    static unsigned char out[65536], in[65536 + 64];
    /* Queue batches of 16 different sizes, then take them out in an order that frees storage
     * out of arrival order (odd types first), so that later batches reuse it scattered. */
    for (size_t base = 0; base < n; base += 16) {
        size_t cnt = n - base < 16 ? n - base : 16;
        for (size_t i = 0; i < cnt; i++) {
            fill_pattern(out, sizes[base + i], (uint32_t) (base + i));
            ASSERT_ERR(pbx_send(q, (long) (i % 2 + 1), out, sizes[base + i], PBX_NOWAIT), 0);
        }
        for (int pass = 1; pass >= 0; pass--) {
            for (size_t i = 0; i < cnt; i++) {
                if ((long) (i % 2) != pass)
                    continue;
                uint32_t len = sizes[base + i];
                fill_pattern(out, len, (uint32_t) (base + i));
                long t = 0;
                ASSERT_EQ(pbx_recv(q, (long) (pass + 1), in, sizeof(in), PBX_NOWAIT, &t),
                          (long long) len);
                ASSERT_EQ(t, pass + 1);
                if (memcmp(in, out, len) != 0)
                    pbx_test_fail(__FILE__, __LINE__, "payload of size %u differs", len);
            }
        }
        ASSERT_EQ(queued_msgs(q), 0);
    }
    pbx_close(q);
}

/* A permutation of n large, scattered types (to spread over any hash and heap). */
static void scattered_types(long *types, int n, uint32_t seed)
{
    for (int i = 0; i < n; i++)
        types[i] = 1 + (long) ((uint64_t) (i + 1) * 0x9E3779B97F4A7C15ull >> 2);
    for (int i = n - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        int j = (int) ((seed >> 8) % (uint32_t) (i + 1));
        long t = types[i];
        types[i] = types[j];
        types[j] = t;
    }
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *) a, y = *(const long *) b;
    return x < y ? -1 : x > y;
}

TEST(mailbox_full_of_distinct_types_serves_every_selection_kind)
{
    enum { N = 256 };
    pbx_t *q = open_box("types", N, 1 << 16, 64);
    static long types[N], sorted[N];
    scattered_types(types, N, 42);
    memcpy(sorted, types, sizeof(types));
    qsort(sorted, N, sizeof(sorted[0]), cmp_long);
    char buf[64];
    long t;

    /* Lowest first. */
    for (int i = 0; i < N; i++)
        ASSERT_OK(pbx_send(q, types[i], &i, sizeof(i), PBX_NOWAIT));
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), -EAGAIN);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(pbx_recv(q, LONG_MIN, buf, sizeof(buf), PBX_NOWAIT, &t), sizeof(int));
        ASSERT_EQ(t, sorted[i]);
    }

    /* By exact type, in an order unrelated to arrival. */
    for (int i = 0; i < N; i++)
        ASSERT_OK(pbx_send(q, types[i], &i, sizeof(i), PBX_NOWAIT));
    for (int i = 0; i < N; i++) {
        int k = (i * 97) % N;
        int got = -1;
        ASSERT_EQ(pbx_recv(q, types[k], &got, sizeof(got), PBX_NOWAIT, &t), sizeof(int));
        ASSERT_EQ(t, types[k]);
        ASSERT_EQ(got, k);
        ASSERT_ERR(pbx_recv(q, types[k], buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    }

    /* "Any but" the oldest's type, and "lowest up to" a bound in the middle. */
    for (int i = 0; i < N; i++)
        ASSERT_OK(pbx_send(q, types[i], &i, sizeof(i), PBX_NOWAIT));
    int got = -1;
    ASSERT_EQ(pbx_recv(q, types[0], &got, sizeof(got), PBX_NOWAIT | PBX_EXCEPT, &t), sizeof(int));
    ASSERT_EQ(got, 1);
    ASSERT_EQ(t, types[1]);
    ASSERT_EQ(pbx_recv(q, -sorted[N / 2], &got, sizeof(got), PBX_NOWAIT, &t), sizeof(int));
    ASSERT_EQ(t, sorted[0] == types[1] ? sorted[1] : sorted[0]);
    ASSERT_EQ(pbx_recv(q, -(sorted[0] - 1), buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_close(q);
}

/* ---- the reference model --------------------------------------------------------------- */

/*
 * A random run of sends and receives of every kind, compared after each call with a model
 * that keeps the queued messages in an array in arrival order and finds the message a
 * receive should take by a linear search. Fixed seeds, so a failure is reproducible.
 */

#define MODEL_MAX 512

struct model_msg {
    long type;
    uint32_t len;
    uint32_t id; /* the payload is fill_pattern(len, id) */
};

struct model {
    struct model_msg q[MODEL_MAX];
    int n;
    uint64_t bytes, sent, received;
    uint32_t max_msgs;
    uint64_t max_bytes;
    uint32_t max_msg_size;
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

/* The index in m->q of the message a receive with selector sel would take, or -1. */
static int model_select(const struct model *m, long sel, int flags)
{
    if (sel == 0)
        return m->n > 0 ? 0 : -1;
    if (sel > 0) {
        int except = (flags & PBX_EXCEPT) != 0;
        for (int i = 0; i < m->n; i++)
            if ((m->q[i].type == sel) != except)
                return i;
        return -1;
    }
    long limit = sel == LONG_MIN ? LONG_MAX : -sel;
    int best = -1;
    for (int i = 0; i < m->n; i++)
        if (m->q[i].type <= limit && (best < 0 || m->q[i].type < m->q[best].type))
            best = i; /* strict <: the oldest of the lowest type wins */
    return best;
}

static long pick_type(int ntypes)
{
    uint64_t r = rnd_below(100);
    if (r < 85)
        return 1 + (long) rnd_below((uint64_t) ntypes);
    if (r < 95)
        return 1000 + (long) rnd_below(5);
    return LONG_MAX - (long) rnd_below(3);
}

static long pick_selector(const struct model *m, int ntypes, int *flags)
{
    uint64_t r = rnd_below(100);
    if (r < 25)
        return 0;
    if (r < 70) {
        long t;
        if (m->n > 0 && rnd_below(10) < 7)
            t = m->q[rnd_below((uint64_t) m->n)].type; /* usually a type that is present */
        else
            t = pick_type(ntypes);
        if (r >= 55)
            *flags |= PBX_EXCEPT;
        return t;
    }
    if (r < 95) {
        uint64_t k = rnd_below(20);
        if (k == 0)
            return -LONG_MAX;
        if (k == 1)
            return -(1000 + (long) rnd_below(6));
        return -(1 + (long) rnd_below((uint64_t) ntypes + 2));
    }
    return LONG_MIN;
}

static uint32_t pick_len(uint32_t max_msg_size)
{
    uint64_t r = rnd_below(100);
    uint64_t limit = r < 45 ? 32 : r < 80 ? 300 : max_msg_size;
    if (limit > max_msg_size)
        limit = max_msg_size;
    return (uint32_t) rnd_below(limit + 1);
}

#define MODEL_CHECK(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "op %d: ", op);                                                        \
            pbx_test_fail(__FILE__, __LINE__, __VA_ARGS__);                                        \
        }                                                                                          \
    } while (0)

static void check_stat(pbx_t *q, const struct model *m, int op)
{
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    MODEL_CHECK(st.msgs == (uint64_t) m->n, "stat.msgs %llu, model %d",
                (unsigned long long) st.msgs, m->n);
    MODEL_CHECK(st.bytes == m->bytes, "stat.bytes %llu, model %llu", (unsigned long long) st.bytes,
                (unsigned long long) m->bytes);
    MODEL_CHECK(st.sent == m->sent, "stat.sent %llu, model %llu", (unsigned long long) st.sent,
                (unsigned long long) m->sent);
    MODEL_CHECK(st.received == m->received, "stat.received %llu, model %llu",
                (unsigned long long) st.received, (unsigned long long) m->received);
    MODEL_CHECK(st.dropped == 0, "stat.dropped %llu", (unsigned long long) st.dropped);
}

static void run_model(uint64_t seed, int nops, uint32_t max_msgs, uint64_t max_bytes,
                      uint32_t max_msg_size, int ntypes)
{
    static struct model m;
    memset(&m, 0, sizeof(m));
    m.max_msgs = max_msgs;
    m.max_bytes = max_bytes;
    m.max_msg_size = max_msg_size;
    ASSERT_LE(max_msgs, MODEL_MAX);
    rng_state = seed;
    pbx_t *q = open_box("model", max_msgs, max_bytes, max_msg_size);
    unsigned char *out = malloc(max_msg_size + 1), *in = malloc(max_msg_size + 1);
    ASSERT_TRUE(out && in);
    uint32_t next_id = 1;
    int send_percent = 60;
    const struct timespec zero = {0, 0};

    for (int op = 0; op < nops; op++) {
        /* Phases that mostly fill, mostly drain, or hover, so that every depth is visited. */
        if (op % 500 == 0) {
            static const int phases[] = {60, 75, 25, 50, 85, 15};
            send_percent = phases[(op / 500) % 6];
        }
        if (op % 97 == 0)
            check_stat(q, &m, op);

        if ((int) rnd_below(100) < send_percent) {
            long type = pick_type(ntypes);
            uint32_t len = pick_len(max_msg_size);
            uint32_t id = next_id++;
            fill_pattern(out, len, id);
            int full = (uint32_t) m.n + 1 > max_msgs || m.bytes + len > max_bytes;
            int timed = rnd_below(10) == 0;
            int r = timed ? pbx_timedsend(q, type, len ? out : NULL, len, 0, &zero)
                          : pbx_send(q, type, len ? out : NULL, len, PBX_NOWAIT);
            int want = full ? (timed ? -ETIMEDOUT : -EAGAIN) : 0;
            MODEL_CHECK(r == want, "send(type %ld, len %u) returned %d (%s), expected %d (%s)",
                        type, len, r, pbx_test_errname(r), want, pbx_test_errname(want));
            if (!full) {
                m.q[m.n++] = (struct model_msg){type, len, id};
                m.bytes += len;
                m.sent++;
            }
            continue;
        }

        int flags = 0;
        long sel = pick_selector(&m, ntypes, &flags);
        if (rnd_below(5) == 0)
            flags |= PBX_PEEK;
        if (rnd_below(4) == 0)
            flags |= PBX_NOERROR;
        size_t cap = rnd_below(4) == 0 ? (size_t) rnd_below(max_msg_size + 1) : max_msg_size;
        int timed = rnd_below(10) == 0;
        long got_type = -1;
        memset(in, 0xA5, max_msg_size + 1);
        ssize_t r = timed ? pbx_timedrecv(q, sel, in, cap, flags, &got_type, &zero)
                          : pbx_recv(q, sel, in, cap, flags | PBX_NOWAIT, &got_type);

        int idx = model_select(&m, sel, flags);
        if (idx < 0) {
            long want = timed ? -ETIMEDOUT : -ENOMSG;
            MODEL_CHECK(r == want, "recv(sel %ld, flags %#x) returned %zd (%s), expected %s", sel,
                        flags, r, pbx_test_errname((int) r), pbx_test_errname((int) want));
            continue;
        }
        struct model_msg msg = m.q[idx];
        if (msg.len > cap && !(flags & PBX_NOERROR)) {
            MODEL_CHECK(r == -E2BIG,
                        "recv(sel %ld, flags %#x, cap %zu) returned %zd (%s), expected E2BIG "
                        "for type %ld len %u",
                        sel, flags, cap, r, pbx_test_errname((int) r), msg.type, msg.len);
            continue;
        }
        size_t n = msg.len < cap ? msg.len : cap;
        MODEL_CHECK(r == (ssize_t) n,
                    "recv(sel %ld, flags %#x, cap %zu) returned %zd (%s), expected %zu bytes "
                    "of message id %u type %ld len %u",
                    sel, flags, cap, r, pbx_test_errname((int) r), n, msg.id, msg.type, msg.len);
        MODEL_CHECK(got_type == msg.type, "recv(sel %ld) type %ld, expected %ld", sel, got_type,
                    msg.type);
        fill_pattern(out, msg.len, msg.id);
        MODEL_CHECK(memcmp(in, out, n) == 0, "recv(sel %ld) payload of id %u differs", sel, msg.id);
        MODEL_CHECK(in[cap] == 0xA5, "recv wrote past its buffer of %zu bytes", cap);
        if (!(flags & PBX_PEEK)) {
            memmove(&m.q[idx], &m.q[idx + 1], (size_t) (m.n - idx - 1) * sizeof(m.q[0]));
            m.n--;
            m.bytes -= msg.len;
            m.received++;
        }
    }

    /* Drain: everything left comes out in arrival order. */
    int op = nops;
    check_stat(q, &m, op);
    for (int i = 0; i < m.n; i++) {
        long got_type = -1;
        ssize_t r = pbx_recv(q, 0, in, max_msg_size, PBX_NOWAIT, &got_type);
        MODEL_CHECK(r == (ssize_t) m.q[i].len && got_type == m.q[i].type,
                    "drain %d: got %zd bytes type %ld, expected %u bytes type %ld", i, r, got_type,
                    m.q[i].len, m.q[i].type);
        fill_pattern(out, m.q[i].len, m.q[i].id);
        MODEL_CHECK(memcmp(in, out, m.q[i].len) == 0, "drain %d: payload differs", i);
    }
    ASSERT_ERR(pbx_recv(q, 0, in, max_msg_size, PBX_NOWAIT, NULL), -ENOMSG);
    free(out);
    free(in);
    pbx_close(q);
}

TEST(random_mixed_operations_match_reference_model)
{
    run_model(0x5eed1234abcdull, 50000, 128, 16000, 1500, 40);
}

TEST(random_operations_with_few_types_and_small_limits_match_reference_model)
{
    run_model(0x0badc0ffeeull, 20000, 16, 1500, 600, 3);
}

TEST(random_operations_with_many_types_match_reference_model)
{
    run_model(0x1234567ull, 20000, 400, 1 << 20, 300, 300);
}

/* A tiny mailbox (a tiny type index) churning through many distinct types, so that every way
 * the index can wrap around and reuse its cells is visited, whatever its hash seed. */
TEST(random_operations_with_many_types_in_a_tiny_mailbox_match_reference_model)
{
    run_model(0xfeedfaceull, 30000, 4, 400, 200, 60);
}
