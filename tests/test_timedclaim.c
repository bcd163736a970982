/*
 * test_timedclaim.c — pbx_timedclaim(): pbx_claim() with a timeout, on shared-memory and spool
 * mailboxes. No assertion depends on how long anything took: a timeout is only checked to end
 * the call with -ETIMEDOUT and nothing claimed, and a wake-up to deliver the message.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "spool_util.h"

static struct timespec ms_timeout(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    return t;
}

static pbx_t *open_named(const char *name)
{
    struct pbx_options o = pbx_test_options(8, 4096, 64, PBX_BLOCK);
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    return q;
}

static void times_out_with_nothing_claimed(const char *name)
{
    pbx_t *q = open_named(name);
    char buf[64];
    long type = -1;
    uint64_t claim = 99;
    struct timespec t = ms_timeout(20);
    ASSERT_ERR(pbx_timedclaim(q, 0, buf, sizeof(buf), 0, &type, &claim, &t), -ETIMEDOUT);
    ASSERT_EQ(claim, 0);
    /* A message of another type does not end the wait early either. */
    ASSERT_OK(pbx_send(q, 7, "other", 5, 0));
    ASSERT_ERR(pbx_timedclaim(q, 3, buf, sizeof(buf), 0, &type, &claim, &t), -ETIMEDOUT);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.claimed, 0);
    ASSERT_EQ(st.msgs, 1);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(a_timed_claim_on_an_empty_mailbox_times_out_with_nothing_claimed)
{
    times_out_with_nothing_claimed("tclaim");
}

TEST(spool_a_timed_claim_on_an_empty_mailbox_times_out_with_nothing_claimed)
{
    char name[512];
    times_out_with_nothing_claimed(spool_name(name, sizeof(name), "tclaim"));
}

static void claims_a_queued_message(const char *name)
{
    pbx_t *q = open_named(name);
    char buf[64];
    long type = 0;
    uint64_t claim = 0;
    struct timespec t = ms_timeout(60000);
    ASSERT_OK(pbx_send(q, 4, "hello", 5, 0));
    ASSERT_EQ(pbx_timedclaim(q, 4, buf, sizeof(buf), 0, &type, &claim, &t), 5);
    ASSERT_MEM_EQ(buf, "hello", 5);
    ASSERT_EQ(type, 4);
    ASSERT_NE(claim, 0);
    /* Hidden from other receivers until settled; release puts it back, ack removes it. */
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_OK(pbx_release(q, claim));
    claim = 0;
    ASSERT_EQ(pbx_timedclaim(q, 0, buf, sizeof(buf), 0, &type, &claim, NULL), 5);
    ASSERT_NE(claim, 0);
    ASSERT_OK(pbx_ack(q, claim));
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.claimed, 0);
    /* A zero timeout still takes a message that is there. */
    struct timespec zero = {0, 0};
    ASSERT_OK(pbx_send(q, 2, "now", 3, 0));
    ASSERT_EQ(pbx_timedclaim(q, 0, buf, sizeof(buf), 0, &type, &claim, &zero), 3);
    ASSERT_OK(pbx_ack(q, claim));
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(a_timed_claim_takes_a_queued_message_and_settles_like_a_claim)
{
    claims_a_queued_message("tclaim");
}

TEST(spool_a_timed_claim_takes_a_queued_message_and_settles_like_a_claim)
{
    char name[512];
    claims_a_queued_message(spool_name(name, sizeof(name), "tclaim"));
}

static const char *late_name;

static int send_late(void *arg)
{
    (void) arg;
    pbx_t *q = NULL;
    if (pbx_open(late_name, 0, NULL, &q) < 0)
        return 1;
    pbx_test_sleep_ms(50);
    int r = pbx_send(q, 9, "late", 4, 0);
    pbx_close(q);
    return r < 0;
}

static void wakes_for_a_late_message(const char *name)
{
    pbx_t *q = open_named(name);
    late_name = name;
    pid_t pid = pbx_test_fork(send_late, NULL);
    char buf[64];
    long type = 0;
    uint64_t claim = 0;
    /* Long enough never to expire on a loaded machine: the message ends the wait. */
    struct timespec t = ms_timeout(120000);
    ASSERT_EQ(pbx_timedclaim(q, 9, buf, sizeof(buf), 0, &type, &claim, &t), 4);
    ASSERT_MEM_EQ(buf, "late", 4);
    ASSERT_EQ(type, 9);
    ASSERT_OK(pbx_ack(q, claim));
    pbx_test_wait_ok(pid);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(a_timed_claim_wakes_for_a_message_sent_while_it_waits)
{
    wakes_for_a_late_message("tclaim");
}

TEST(spool_a_timed_claim_wakes_for_a_message_sent_while_it_waits)
{
    char name[512];
    wakes_for_a_late_message(spool_name(name, sizeof(name), "tclaim"));
}

TEST(a_timed_claim_rejects_bad_arguments_and_a_removed_mailbox)
{
    pbx_t *q = open_named("tclaim");
    char buf[64];
    uint64_t claim = 0;
    struct timespec t = ms_timeout(10);
    struct timespec bad_ns = {0, 1000000000L};
    struct timespec bad_sec = {-1, 0};
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_ERR(pbx_timedclaim(q, 0, buf, sizeof(buf), 0, NULL, &claim, &bad_ns), -EINVAL);
    ASSERT_ERR(pbx_timedclaim(q, 0, buf, sizeof(buf), 0, NULL, &claim, &bad_sec), -EINVAL);
    ASSERT_ERR(pbx_timedclaim(q, 0, buf, sizeof(buf), PBX_PEEK, NULL, &claim, &t), -EINVAL);
    ASSERT_ERR(pbx_timedclaim(q, 0, buf, sizeof(buf), 0, NULL, NULL, &t), -EINVAL);
    ASSERT_ERR(pbx_timedclaim(q, 0, NULL, 8, 0, NULL, &claim, &t), -EINVAL);
    ASSERT_ERR(pbx_timedclaim(q, 0, buf, sizeof(buf), PBX_EXCEPT, NULL, &claim, &t), -EINVAL);
    ASSERT_ERR(pbx_timedclaim(NULL, 0, buf, sizeof(buf), 0, NULL, &claim, &t), -EINVAL);
    /* None of those claimed the message. */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.claimed, 0);
    ASSERT_OK(pbx_remove(q));
    ASSERT_ERR(pbx_timedclaim(q, 0, buf, sizeof(buf), 0, NULL, &claim, &t), -EIDRM);
    pbx_close(q);
}
