/*
 * test_recovery.c — a helper process is killed at a named crash point (src/crash.h) inside a
 * send or a receive; the survivors must find what ARCHITECTURE.md promises: a send that had not
 * returned leaves nothing visible, a receive that had not returned leaves its message where it
 * was, nothing committed is lost or duplicated, and the capacity the dead process held comes
 * back.
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

#define BIG 3000 /* beyond the slot's inline bytes: copied outside the locks */

static pbx_t *q;

struct op {
    const char *crash_at;
    long type;
    size_t len;
    int receive; /* 0: send len bytes of type; 1: receive type */
};

/* In a helper: arm the crash point, do the operation; it must not come back. */
static int die_during(void *arg)
{
    const struct op *op = arg;
    static unsigned char buf[BIG];
    memset(buf, (int) op->type, sizeof(buf));
    setenv("PBX_CRASH_AT", op->crash_at, 1);
    if (op->receive)
        pbx_recv(q, op->type, buf, sizeof(buf), 0, NULL);
    else
        pbx_send(q, op->type, buf, op->len, 0);
    return 3; /* the crash point was not reached */
}

static void kill_helper_at(const char *point, int receive, long type, size_t len)
{
    struct op op = {point, type, len, receive};
    pid_t pid = pbx_test_fork(die_during, &op);
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
}

static pbx_t *open_small(uint32_t max_msgs)
{
    struct pbx_options o = pbx_test_options(max_msgs, 64 * 1024, 4096, PBX_BLOCK);
    pbx_t *h;
    ASSERT_OK(pbx_open("crashpoint", PBX_CREATE | PBX_EXCL, &o, &h));
    return h;
}

/* Receive one message of the expected type and length, without waiting long. */
static void expect_message(long type, size_t len)
{
    static unsigned char buf[BIG];
    long got = 0;
    struct timespec t = {2, 0};
    ASSERT_EQ(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &got, &t), (long long) len);
    ASSERT_EQ(got, type);
    for (size_t i = 0; i < len; i++)
        ASSERT_EQ(buf[i], (unsigned char) type);
}

static void expect_empty(void)
{
    char buf[8];
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_NOERROR, NULL), -ENOMSG);
}

/* Queue a large message (type 4, BIG bytes of 4: copied outside the locks) and behind it a
 * small one (type 5, one byte 5). */
static void queue_large_then_small(void)
{
    static unsigned char big[BIG];
    memset(big, 4, sizeof(big));
    ASSERT_OK(pbx_send(q, 4, big, sizeof(big), 0));
    ASSERT_OK(pbx_send(q, 5, "\5", 1, 0));
}

/* Every slot of the mailbox can be filled and emptied again: nothing leaked, nothing
 * shared by two messages. Orphans are given back by a later call within ~100 ms, so a full
 * mailbox is retried for up to 2 s before the test fails. */
static void expect_full_capacity(uint32_t max_msgs, size_t len)
{
    static unsigned char buf[BIG];
    for (uint32_t i = 0; i < max_msgs; i++) {
        memset(buf, (int) (10 + i), len);
        int r;
        double t0 = pbx_test_now_ms();
        while ((r = pbx_send(q, 10 + i, buf, len, PBX_NOWAIT)) == -EAGAIN &&
               pbx_test_now_ms() - t0 < 2000)
            pbx_test_sleep_ms(20);
        ASSERT_OK(r);
    }
    ASSERT_ERR(pbx_send(q, 99, buf, 1, PBX_NOWAIT), -EAGAIN);
    for (uint32_t i = 0; i < max_msgs; i++)
        expect_message(10 + i, len);
    expect_empty();
}

/* The bug this caught: a sender killed after publishing (holding the send lock), whose
 * message was then received and freed, had its slot marked queued again by the repair —
 * leaving a freed slot looking queued, which the next sender to reach it found damaged. */
TEST(sender_killed_after_publishing_leaves_the_slot_to_receivers)
{
    q = open_small(2);
    kill_helper_at("send.published", 0, 5, 8);
    expect_message(5, 8); /* committed: delivered once */
    expect_empty();
    expect_full_capacity(2, 8);
    expect_full_capacity(2, 8);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_GE(st.repairs, 1);
    pbx_close(q);
}

TEST(large_sender_killed_after_publishing_leaves_the_slot_to_receivers)
{
    q = open_small(2);
    kill_helper_at("send.published", 0, 6, BIG);
    expect_message(6, BIG);
    expect_empty();
    expect_full_capacity(2, BIG);
    pbx_close(q);
}

TEST(sender_killed_before_publishing_leaves_nothing_visible)
{
    q = open_small(3);
    ASSERT_OK(pbx_send(q, 1, "\1\1\1", 3, 0));
    kill_helper_at("send.logged", 0, 7, 8);
    expect_message(1, 3);
    expect_empty();
    expect_full_capacity(3, 8);
    pbx_close(q);
}

TEST(large_sender_killed_while_copying_leaves_nothing_and_its_room_comes_back)
{
    q = open_small(2);
    kill_helper_at("send.copying", 0, 7, BIG);
    expect_empty();
    expect_full_capacity(2, BIG);
    pbx_close(q);
}

TEST(receiver_killed_after_taking_from_the_index_leaves_the_message_in_place)
{
    q = open_small(4);
    ASSERT_OK(pbx_send(q, 2, "\2\2", 2, 0));
    ASSERT_OK(pbx_send(q, 3, "\3\3\3", 3, 0));
    kill_helper_at("recv.popped", 1, 0, 0);
    expect_message(2, 2); /* still first */
    expect_message(3, 3);
    expect_empty();
    expect_full_capacity(4, 8);
    pbx_close(q);
}

TEST(receiver_killed_while_freeing_leaves_the_message_in_place)
{
    q = open_small(4);
    ASSERT_OK(pbx_send(q, 2, "\2\2", 2, 0));
    ASSERT_OK(pbx_send(q, 3, "\3\3\3", 3, 0));
    kill_helper_at("recv.logged", 1, 0, 0);
    expect_message(2, 2);
    expect_message(3, 3);
    expect_empty();
    expect_full_capacity(4, 8);
    pbx_close(q);
}

TEST(receiver_killed_after_the_free_committed_consumed_the_message_once)
{
    q = open_small(4);
    ASSERT_OK(pbx_send(q, 2, "\2\2", 2, 0));
    ASSERT_OK(pbx_send(q, 3, "\3\3\3", 3, 0));
    kill_helper_at("recv.committed", 1, 0, 0);
    /* The dead receiver owned the first message; the second is intact and first now. */
    expect_message(3, 3);
    expect_empty();
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.received, 2);
    expect_full_capacity(4, 8);
    pbx_close(q);
}

/* A receiver that dies while copying a large message out (outside the locks) holds it in a
 * slot nobody else can see until a peer looks after the dead, which receivers do at most every
 * 100 ms (docs/api.md, "Crashes"). After that the message is back, and still the oldest. */
TEST(large_receiver_killed_while_copying_puts_the_message_back_in_its_place)
{
    q = open_small(4);
    queue_large_then_small();
    kill_helper_at("recv.copying", 1, 0, 0);
    pbx_test_sleep_ms(150);
    expect_message(4, BIG); /* back, and still the oldest */
    expect_message(5, 1);
    expect_empty();
    expect_full_capacity(4, BIG);
    pbx_close(q);
}

/* A receiver waiting for exactly that message gets it back without anyone else's help. */
TEST(large_message_of_a_receiver_killed_while_copying_comes_back_to_a_waiting_receiver)
{
    q = open_small(4);
    queue_large_then_small();
    kill_helper_at("recv.copying", 1, 0, 0);
    static unsigned char buf[BIG];
    struct timespec t = {2, 0};
    ASSERT_EQ(pbx_timedrecv(q, 4, buf, sizeof(buf), 0, NULL, &t), BIG);
    for (size_t i = 0; i < BIG; i++)
        ASSERT_EQ(buf[i], 4);
    expect_message(5, 1);
    expect_empty();
    pbx_close(q);
}

TEST(large_receiver_killed_after_the_free_committed_consumed_the_message_once)
{
    q = open_small(4);
    queue_large_then_small();
    kill_helper_at("recv.committed", 1, 0, 0);
    expect_message(5, 1);
    expect_empty();
    expect_full_capacity(4, BIG);
    pbx_close(q);
}

/* Crash during a repair: the first helper dies holding the send lock; the second dies while
 * repairing after it (its own logged step); a third party must still find order. */
TEST(a_second_crash_during_repair_is_repaired_too)
{
    q = open_small(3);
    kill_helper_at("send.published", 0, 5, 8);
    kill_helper_at("send.logged", 0, 6, 8); /* takes the lock over, repairs, dies in its send */
    expect_message(5, 8);
    expect_empty();
    expect_full_capacity(3, 8);
    pbx_close(q);
}
