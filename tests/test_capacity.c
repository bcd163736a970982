/*
 * test_capacity.c — the two capacities (messages and payload bytes) and the three overflow
 * policies: PBX_BLOCK (-EAGAIN under PBX_NOWAIT), PBX_DROP_NEWEST (-ENOBUFS, the new message
 * is lost) and PBX_DROP_OLDEST (a positive count of old messages discarded), with the
 * pbx_stat() counters that account for them. Single process, PBX_NOWAIT throughout, except
 * one test in which a helper process frees room for a sleeping sender.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <limits.h>

static pbx_t *open_box(uint32_t max_msgs, uint64_t max_bytes, uint32_t max_msg_size,
                       enum pbx_overflow overflow)
{
    pbx_t *q = NULL;
    struct pbx_options o = pbx_test_options(max_msgs, max_bytes, max_msg_size, overflow);
    ASSERT_OK(pbx_open("cap", PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_TRUE(q != NULL);
    return q;
}

static struct pbx_stat stat_of(pbx_t *q)
{
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    return st;
}

/* A payload whose bytes identify it: the message numbered id, len bytes long. */
static void make_msg(unsigned char *p, size_t len, int id)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char) (id * 29 + i * 3 + 1);
}

static int send_msg(pbx_t *q, long type, size_t len, int id)
{
    static unsigned char buf[1 << 16];
    make_msg(buf, len, id);
    return pbx_send(q, type, buf, len, PBX_NOWAIT);
}

/* Receive the oldest message and check that it is message id of the given type and length. */
#define EXPECT_MSG(q, want_type, want_len, want_id)                                                \
    do {                                                                                           \
        static unsigned char got_[1 << 16], exp_[1 << 16];                                         \
        long t_ = 0;                                                                               \
        ASSERT_EQ(pbx_recv((q), 0, got_, sizeof(got_), PBX_NOWAIT, &t_), (long long) (want_len));  \
        ASSERT_EQ(t_, (want_type));                                                                \
        make_msg(exp_, (want_len), (want_id));                                                     \
        ASSERT_MEM_EQ(got_, exp_, (want_len));                                                     \
    } while (0)

/* ---- PBX_BLOCK: the two capacities ------------------------------------------------------- */

TEST(mailbox_is_full_at_max_msgs_even_with_tiny_messages)
{
    pbx_t *q = open_box(5, 1 << 20, 1024, PBX_BLOCK);
    for (int i = 0; i < 5; i++)
        ASSERT_ERR(send_msg(q, 1, (size_t) (i % 2), i), 0); /* 0- and 1-byte messages */
    ASSERT_ERR(send_msg(q, 1, 1, 99), -EAGAIN);
    ASSERT_ERR(send_msg(q, 2, 0, 99), -EAGAIN);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 5);
    ASSERT_EQ(st.bytes, 2);
    ASSERT_EQ(st.sent, 5);
    ASSERT_EQ(st.dropped, 0);
    for (int i = 0; i < 5; i++)
        EXPECT_MSG(q, 1, (size_t) (i % 2), i);
    pbx_close(q);
}

TEST(mailbox_is_full_at_max_bytes_with_few_messages)
{
    pbx_t *q = open_box(100, 1000, 1000, PBX_BLOCK);
    ASSERT_ERR(send_msg(q, 1, 600, 1), 0);
    ASSERT_ERR(send_msg(q, 1, 401, 2), -EAGAIN);
    ASSERT_ERR(send_msg(q, 1, 400, 3), 0); /* exactly max_bytes in total */
    ASSERT_ERR(send_msg(q, 1, 1, 4), -EAGAIN);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.bytes, 1000);
    ASSERT_EQ(st.sent, 2);
    EXPECT_MSG(q, 1, 600, 1);
    EXPECT_MSG(q, 1, 400, 3);
    pbx_close(q);
}

TEST(zero_length_message_fits_when_only_bytes_are_exhausted)
{
    pbx_t *q = open_box(10, 100, 100, PBX_BLOCK);
    ASSERT_ERR(send_msg(q, 1, 100, 1), 0);
    ASSERT_ERR(send_msg(q, 1, 1, 2), -EAGAIN);
    ASSERT_ERR(send_msg(q, 2, 0, 3), 0);
    ASSERT_EQ(stat_of(q).msgs, 2);
    EXPECT_MSG(q, 1, 100, 1);
    EXPECT_MSG(q, 2, 0, 3);
    pbx_close(q);
}

TEST(receive_from_full_mailbox_makes_room_again)
{
    pbx_t *q = open_box(3, 1 << 20, 64, PBX_BLOCK);
    for (int i = 0; i < 3; i++)
        ASSERT_ERR(send_msg(q, 1, 10, i), 0);
    ASSERT_ERR(send_msg(q, 1, 10, 3), -EAGAIN);
    EXPECT_MSG(q, 1, 10, 0);
    ASSERT_ERR(send_msg(q, 1, 10, 3), 0);
    ASSERT_ERR(send_msg(q, 1, 10, 4), -EAGAIN);
    /* A selective receive makes room just as well. */
    char buf[64];
    ASSERT_EQ(pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT, NULL), 10);
    ASSERT_ERR(send_msg(q, 1, 10, 4), 0);
    /* A peek does not. */
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_PEEK, NULL), 10);
    ASSERT_ERR(send_msg(q, 1, 10, 5), -EAGAIN);
    EXPECT_MSG(q, 1, 10, 2);
    EXPECT_MSG(q, 1, 10, 3);
    EXPECT_MSG(q, 1, 10, 4);
    pbx_close(q);
}

TEST(receiving_a_small_message_frees_only_its_own_bytes)
{
    pbx_t *q = open_box(100, 1000, 1000, PBX_BLOCK);
    ASSERT_ERR(send_msg(q, 1, 10, 1), 0);
    ASSERT_ERR(send_msg(q, 2, 990, 2), 0);
    EXPECT_MSG(q, 1, 10, 1);
    ASSERT_ERR(send_msg(q, 1, 11, 3), -EAGAIN);
    ASSERT_ERR(send_msg(q, 1, 10, 3), 0);
    ASSERT_EQ(stat_of(q).bytes, 1000);
    pbx_close(q);
}

TEST(noerror_truncated_receive_frees_the_whole_message)
{
    pbx_t *q = open_box(10, 500, 500, PBX_BLOCK);
    ASSERT_ERR(send_msg(q, 1, 500, 1), 0);
    char buf[4];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_NOERROR, NULL), 4);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_ERR(send_msg(q, 1, 500, 2), 0);
    pbx_close(q);
}

TEST(e2big_receive_frees_nothing)
{
    pbx_t *q = open_box(1, 500, 500, PBX_BLOCK);
    ASSERT_ERR(send_msg(q, 1, 100, 1), 0);
    char buf[4];
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_ERR(send_msg(q, 1, 1, 2), -EAGAIN);
    EXPECT_MSG(q, 1, 100, 1);
    pbx_close(q);
}

TEST(full_mailbox_can_be_filled_and_drained_many_times)
{
    pbx_t *q = open_box(7, 700, 200, PBX_BLOCK);
    int id = 0, next_out = 0;
    for (int round = 0; round < 200; round++) {
        int r;
        while ((r = send_msg(q, 1 + id % 3, (size_t) (id * 37 % 201), id)) == 0) {
            id++;
        }
        ASSERT_ERR(r, -EAGAIN);
        struct pbx_stat st = stat_of(q);
        ASSERT_TRUE(st.msgs == 7 || st.bytes + (uint64_t) (id * 37 % 201) > 700);
        int take = 1 + round % 7;
        for (int i = 0; i < take && next_out < id; i++, next_out++)
            EXPECT_MSG(q, 1 + next_out % 3, (size_t) (next_out * 37 % 201), next_out);
    }
    while (next_out < id) {
        EXPECT_MSG(q, 1 + next_out % 3, (size_t) (next_out * 37 % 201), next_out);
        next_out++;
    }
    ASSERT_EQ(stat_of(q).msgs, 0);
    pbx_close(q);
}

TEST(max_msg_size_zero_allows_only_empty_messages)
{
    pbx_t *q = open_box(3, 1, 0, PBX_BLOCK);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), -EMSGSIZE);
    for (int i = 0; i < 3; i++)
        ASSERT_ERR(pbx_send(q, 1 + i, NULL, 0, PBX_NOWAIT), 0);
    ASSERT_ERR(pbx_send(q, 1, NULL, 0, PBX_NOWAIT), -EAGAIN);
    long t = 0;
    ASSERT_EQ(pbx_recv(q, -5, NULL, 0, PBX_NOWAIT, &t), 0);
    ASSERT_EQ(t, 1);
    pbx_close(q);
}

static int drain_one_later(void *arg)
{
    pbx_t *q = arg;
    pbx_test_sleep_ms(100);
    char buf[64];
    long t = 0;
    if (pbx_recv(q, 0, buf, sizeof(buf), 0, &t) != 3 || t != 1 || memcmp(buf, "old", 3))
        return 1;
    return 0;
}

TEST(blocking_send_into_full_mailbox_waits_for_room)
{
    pbx_t *q = open_box(1, 1024, 64, PBX_BLOCK);
    ASSERT_OK(pbx_send(q, 1, "old", 3, 0));
    pid_t pid = pbx_test_fork(drain_one_later, q);
    const struct timespec ts = {20, 0}; /* a safety net, not a speed limit */
    ASSERT_ERR(pbx_timedsend(q, 2, "new", 3, 0, &ts), 0);
    pbx_test_wait_ok(pid);
    char buf[8];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 3);
    ASSERT_EQ(t, 2);
    ASSERT_MEM_EQ(buf, "new", 3);
    pbx_close(q);
}

/* ---- PBX_DROP_NEWEST --------------------------------------------------------------------- */

TEST(drop_newest_discards_the_new_message_with_enobufs)
{
    pbx_t *q = open_box(3, 1 << 20, 256, PBX_DROP_NEWEST);
    ASSERT_ERR(send_msg(q, 1, 30, 1), 0);
    ASSERT_ERR(send_msg(q, 2, 40, 2), 0);
    ASSERT_ERR(send_msg(q, 3, 50, 3), 0);
    ASSERT_ERR(send_msg(q, 4, 60, 4), -ENOBUFS);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 3);
    ASSERT_EQ(st.bytes, 120);
    ASSERT_EQ(st.sent, 3);
    ASSERT_EQ(st.dropped, 1);
    /* Without PBX_NOWAIT it does not block either. */
    ASSERT_ERR(pbx_send(q, 5, "x", 1, 0), -ENOBUFS);
    ASSERT_EQ(stat_of(q).dropped, 2);
    char buf[8];
    ASSERT_ERR(pbx_recv(q, 4, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, 5, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    EXPECT_MSG(q, 1, 30, 1);
    EXPECT_MSG(q, 2, 40, 2);
    EXPECT_MSG(q, 3, 50, 3);
    ASSERT_ERR(send_msg(q, 6, 10, 6), 0);
    EXPECT_MSG(q, 6, 10, 6);
    pbx_close(q);
}

TEST(drop_newest_applies_to_the_byte_capacity_too)
{
    pbx_t *q = open_box(100, 100, 100, PBX_DROP_NEWEST);
    ASSERT_ERR(send_msg(q, 1, 70, 1), 0);
    ASSERT_ERR(send_msg(q, 1, 31, 2), -ENOBUFS);
    ASSERT_ERR(send_msg(q, 1, 30, 3), 0);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.bytes, 100);
    ASSERT_EQ(st.dropped, 1);
    EXPECT_MSG(q, 1, 70, 1);
    EXPECT_MSG(q, 1, 30, 3);
    pbx_close(q);
}

TEST(drop_newest_oversized_message_is_emsgsize_and_not_counted)
{
    pbx_t *q = open_box(1, 100, 50, PBX_DROP_NEWEST);
    ASSERT_ERR(send_msg(q, 1, 51, 1), -EMSGSIZE);
    ASSERT_ERR(send_msg(q, 1, 50, 2), 0);
    ASSERT_ERR(send_msg(q, 1, 51, 3), -EMSGSIZE);
    ASSERT_EQ(stat_of(q).dropped, 0);
    pbx_close(q);
}

/* ---- PBX_DROP_OLDEST --------------------------------------------------------------------- */

TEST(drop_oldest_discards_oldest_and_returns_count)
{
    pbx_t *q = open_box(3, 1 << 20, 256, PBX_DROP_OLDEST);
    ASSERT_ERR(send_msg(q, 1, 10, 1), 0);
    ASSERT_ERR(send_msg(q, 2, 20, 2), 0);
    ASSERT_ERR(send_msg(q, 3, 30, 3), 0);
    ASSERT_EQ(send_msg(q, 4, 40, 4), 1);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 3);
    ASSERT_EQ(st.bytes, 90);
    ASSERT_EQ(st.sent, 4);
    ASSERT_EQ(st.dropped, 1);
    /* Again, without PBX_NOWAIT: still drops instead of blocking. */
    ASSERT_EQ(pbx_send(q, 5, "fifth", 5, 0), 1);
    ASSERT_EQ(stat_of(q).dropped, 2);
    char buf[8];
    ASSERT_ERR(pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, 2, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    EXPECT_MSG(q, 3, 30, 3);
    EXPECT_MSG(q, 4, 40, 4);
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 5);
    ASSERT_EQ(t, 5);
    ASSERT_MEM_EQ(buf, "fifth", 5);
    pbx_close(q);
}

TEST(drop_oldest_returns_zero_when_nothing_is_dropped)
{
    pbx_t *q = open_box(3, 1 << 20, 256, PBX_DROP_OLDEST);
    ASSERT_ERR(send_msg(q, 1, 10, 1), 0);
    ASSERT_ERR(send_msg(q, 1, 10, 2), 0);
    ASSERT_ERR(send_msg(q, 1, 10, 3), 0);
    EXPECT_MSG(q, 1, 10, 1);
    ASSERT_ERR(send_msg(q, 1, 10, 4), 0);
    ASSERT_EQ(stat_of(q).dropped, 0);
    pbx_close(q);
}

TEST(drop_oldest_drops_several_small_messages_for_one_big_one)
{
    pbx_t *q = open_box(100, 100, 100, PBX_DROP_OLDEST);
    for (int i = 0; i < 10; i++)
        ASSERT_ERR(send_msg(q, 1 + i % 2, 10, i), 0);
    /* 35 bytes need 4 of the 10-byte messages to go. */
    ASSERT_EQ(send_msg(q, 7, 35, 100), 4);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 7);
    ASSERT_EQ(st.bytes, 95);
    ASSERT_EQ(st.dropped, 4);
    ASSERT_EQ(st.sent, 11);
    for (int i = 4; i < 10; i++)
        EXPECT_MSG(q, 1 + i % 2, 10, i);
    EXPECT_MSG(q, 7, 35, 100);
    pbx_close(q);
}

TEST(drop_oldest_message_of_max_bytes_drops_everything_else)
{
    pbx_t *q = open_box(100, 100, 100, PBX_DROP_OLDEST);
    for (int i = 0; i < 7; i++)
        ASSERT_ERR(send_msg(q, 1, (size_t) i, i), 0); /* 21 bytes, including an empty one */
    ASSERT_EQ(send_msg(q, 2, 100, 50), 7);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 1);
    ASSERT_EQ(st.bytes, 100);
    ASSERT_EQ(st.dropped, 7);
    EXPECT_MSG(q, 2, 100, 50);
    pbx_close(q);
}

TEST(drop_oldest_drops_by_arrival_regardless_of_type)
{
    pbx_t *q = open_box(4, 1 << 20, 64, PBX_DROP_OLDEST);
    ASSERT_ERR(send_msg(q, 9, 5, 1), 0);
    ASSERT_ERR(send_msg(q, 1, 5, 2), 0);
    ASSERT_ERR(send_msg(q, 9, 5, 3), 0);
    ASSERT_ERR(send_msg(q, 5, 5, 4), 0);
    /* A receive by type out of arrival order leaves 1 (type 9, oldest), 3, 4. */
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT, NULL), 5);
    ASSERT_ERR(send_msg(q, 2, 5, 5), 0);
    ASSERT_EQ(send_msg(q, 3, 5, 6), 1); /* drops message 1 */
    ASSERT_EQ(send_msg(q, 1, 5, 7), 1); /* drops message 3 */
    EXPECT_MSG(q, 5, 5, 4);
    EXPECT_MSG(q, 2, 5, 5);
    EXPECT_MSG(q, 3, 5, 6);
    EXPECT_MSG(q, 1, 5, 7);
    ASSERT_EQ(stat_of(q).dropped, 2);
    pbx_close(q);
}

TEST(drop_oldest_oversized_message_is_emsgsize_and_drops_nothing)
{
    pbx_t *q = open_box(4, 100, 50, PBX_DROP_OLDEST);
    ASSERT_ERR(send_msg(q, 1, 50, 1), 0);
    ASSERT_ERR(send_msg(q, 1, 50, 2), 0);
    ASSERT_ERR(send_msg(q, 1, 51, 3), -EMSGSIZE);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.dropped, 0);
    EXPECT_MSG(q, 1, 50, 1);
    pbx_close(q);
}

/* A random run under PBX_DROP_OLDEST, checked against a model in arrival order. */
TEST(drop_oldest_random_run_matches_reference_model)
{
    enum { MAXM = 32, MAXB = 3000, MAXS = 700 };
    pbx_t *q = open_box(MAXM, MAXB, MAXS, PBX_DROP_OLDEST);
    struct {
        long type;
        size_t len;
        int id;
    } m[MAXM + 1];
    int n = 0;
    uint64_t bytes = 0, sent = 0, received = 0, dropped = 0;
    uint32_t x = 12345;
    for (int op = 0; op < 20000; op++) {
        x = x * 1103515245u + 12345u;
        uint32_t r = x >> 8;
        if (r % 100 < 65) {
            long type = 1 + (long) (r / 100 % 5);
            size_t len = (r / 1000) % 4 == 0 ? (r / 7) % (MAXS + 1) : (r / 7) % 60;
            int want_drops = 0;
            while (n + 1 > MAXM || bytes + len > MAXB) {
                bytes -= m[0].len;
                memmove(&m[0], &m[1], (size_t) (n - 1) * sizeof(m[0]));
                n--;
                want_drops++;
            }
            int got = send_msg(q, type, len, op);
            if (got != want_drops)
                pbx_test_fail(__FILE__, __LINE__, "op %d: send of %zu bytes returned %d, model %d",
                              op, len, got, want_drops);
            m[n].type = type;
            m[n].len = len;
            m[n].id = op;
            n++;
            bytes += len;
            sent++;
            dropped += (uint64_t) want_drops;
        } else if (n > 0) {
            /* Take the oldest of a random type, or the oldest of all. */
            long sel = (r / 100) % 3 == 0 ? 0 : 1 + (long) (r / 300 % 5);
            int idx = -1;
            for (int i = 0; i < n && idx < 0; i++)
                if (sel == 0 || m[i].type == sel)
                    idx = i;
            static unsigned char got[MAXS], want[MAXS];
            long t = 0;
            ssize_t g = pbx_recv(q, sel, got, sizeof(got), PBX_NOWAIT, &t);
            if (idx < 0) {
                ASSERT_ERR(g, -ENOMSG);
                continue;
            }
            if (g != (ssize_t) m[idx].len || t != m[idx].type)
                pbx_test_fail(__FILE__, __LINE__,
                              "op %d: recv(%ld) got %zd bytes type %ld, model %zu bytes type %ld",
                              op, sel, g, t, m[idx].len, m[idx].type);
            make_msg(want, m[idx].len, m[idx].id);
            ASSERT_MEM_EQ(got, want, m[idx].len);
            bytes -= m[idx].len;
            memmove(&m[idx], &m[idx + 1], (size_t) (n - idx - 1) * sizeof(m[0]));
            n--;
            received++;
        }
        if (op % 101 == 0) {
            struct pbx_stat st = stat_of(q);
            ASSERT_EQ(st.msgs, n);
            ASSERT_EQ(st.bytes, bytes);
            ASSERT_EQ(st.sent, sent);
            ASSERT_EQ(st.received, received);
            ASSERT_EQ(st.dropped, dropped);
        }
    }
    ASSERT_GT(dropped, 100); /* the run did exercise dropping */
    pbx_close(q);
}

/* ---- the counters ------------------------------------------------------------------------ */

TEST(stat_counters_are_accurate_after_a_sequence_of_operations)
{
    pbx_t *q = open_box(4, 100, 60, PBX_DROP_NEWEST);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(st.sent, 0);
    ASSERT_EQ(st.received, 0);
    ASSERT_EQ(st.dropped, 0);
    ASSERT_EQ(st.max_msgs, 4);
    ASSERT_EQ(st.max_bytes, 100);
    ASSERT_EQ(st.max_msg_size, 60);
    ASSERT_EQ(st.overflow, PBX_DROP_NEWEST);

    ASSERT_ERR(send_msg(q, 1, 10, 1), 0);
    ASSERT_ERR(send_msg(q, 2, 20, 2), 0);
    ASSERT_ERR(send_msg(q, 3, 30, 3), 0);
    ASSERT_ERR(send_msg(q, 4, 50, 4), -ENOBUFS);  /* 110 > 100 bytes */
    ASSERT_ERR(send_msg(q, 4, 61, 5), -EMSGSIZE); /* not a drop */
    ASSERT_ERR(send_msg(q, 4, 0, 6), 0);
    ASSERT_ERR(send_msg(q, 5, 0, 7), -ENOBUFS); /* 5 > 4 messages */
    st = stat_of(q);
    ASSERT_EQ(st.msgs, 4);
    ASSERT_EQ(st.bytes, 60);
    ASSERT_EQ(st.sent, 4);
    ASSERT_EQ(st.received, 0);
    ASSERT_EQ(st.dropped, 2);

    char buf[64];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_PEEK, NULL), 10);
    ASSERT_ERR(pbx_recv(q, 0, buf, 5, PBX_NOWAIT, NULL), -E2BIG);
    ASSERT_ERR(pbx_recv(q, 9, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_EQ(pbx_recv(q, 2, buf, sizeof(buf), PBX_NOWAIT, NULL), 20);
    ASSERT_EQ(pbx_recv(q, 0, buf, 5, PBX_NOWAIT | PBX_NOERROR, NULL), 5);
    st = stat_of(q);
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.bytes, 30);
    ASSERT_EQ(st.sent, 4);
    ASSERT_EQ(st.received, 2);
    ASSERT_EQ(st.dropped, 2);
    ASSERT_EQ(st.send_waiters, 0);
    ASSERT_EQ(st.recv_waiters, 0);
    ASSERT_EQ(st.repairs, 0);

    ASSERT_EQ(pbx_recv(q, -10, buf, sizeof(buf), PBX_NOWAIT, NULL), 30);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 0);
    st = stat_of(q);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(st.sent, 4);
    ASSERT_EQ(st.received, 4);
    ASSERT_EQ(st.dropped, 2);
    pbx_close(q);
}

TEST(counters_survive_close_and_reopen)
{
    pbx_t *q = open_box(2, 100, 50, PBX_DROP_OLDEST);
    ASSERT_ERR(send_msg(q, 1, 5, 1), 0);
    ASSERT_ERR(send_msg(q, 1, 5, 2), 0);
    ASSERT_EQ(send_msg(q, 1, 5, 3), 1);
    pbx_close(q);
    ASSERT_OK(pbx_open("cap", 0, NULL, &q));
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.bytes, 10);
    ASSERT_EQ(st.sent, 3);
    ASSERT_EQ(st.dropped, 1);
    ASSERT_EQ(st.overflow, PBX_DROP_OLDEST);
    EXPECT_MSG(q, 1, 5, 2);
    EXPECT_MSG(q, 1, 5, 3);
    pbx_close(q);
}
