/*
 * test_batch.c — pbx_sendv() and pbx_recvv(): every rule of their contract (postbox.h, docs/api.md
 * "Batches"), on shared memory and on a spool (which loops over single calls), a batch storm
 * with kills, and the one-mailbox ping-pong of System V programs (LOOK-AHEAD in queue.c).
 *
 * The rule tests run in one process with PBX_NOWAIT or short timeouts, so a wrong answer is a
 * wrong value rather than a hang. The crash points inside a batch are in test_crashwalk.c.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define BIG 3000 /* beyond a slot's inline bytes: copied outside the locks */

static int on_spool;

static pbx_t *open_box(uint32_t max_msgs, uint32_t max_msg_size, enum pbx_overflow ov)
{
    char name[4096];
    if (on_spool)
        snprintf(name, sizeof(name), "spool:%s/batchspool", getenv("POSTBOX_DIR"));
    else
        snprintf(name, sizeof(name), "batch");
    struct pbx_options o = pbx_test_options(max_msgs, 1u << 20, max_msg_size, ov);
    o.durability = PBX_DURABLE_NONE;
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    return q;
}

static void close_box(pbx_t *q)
{
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

/* Run body on a shared-memory mailbox, then on a spool. */
#define BOTH_TRANSPORTS(body)                                                                      \
    for (on_spool = 0; on_spool < 2; on_spool++) {                                                 \
        printf("transport: %s\n", on_spool ? "spool" : "shm");                                     \
        body();                                                                                    \
    }

static uint64_t queued(pbx_t *q)
{
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    return st.msgs;
}

/* Entry i of a batch: type types[i], payload of len bytes, each byte (i + 1). */
static unsigned char payload[16][BIG];
static void fill(struct pbx_msgv *v, size_t i, long type, size_t len)
{
    memset(payload[i], (int) (i + 1), len);
    v->type = type;
    v->data = payload[i];
    v->len = len;
    v->result = 12345;
}

static void expect_msg(pbx_t *q, long type, size_t len, unsigned char byte)
{
    static unsigned char buf[BIG];
    long got = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &got), (long long) len);
    ASSERT_EQ(got, type);
    for (size_t i = 0; i < len; i++)
        ASSERT_EQ(buf[i], byte);
}

/* ---- sending ----------------------------------------------------------------------------- */

static void sendv_in_order(void)
{
    pbx_t *q = open_box(64, BIG, PBX_BLOCK);
    struct pbx_msgv v[6];
    static const size_t lens[6] = {16, 0, BIG, 5, 24, BIG};
    for (size_t i = 0; i < 6; i++)
        fill(&v[i], i, (long) (i % 3 + 1), lens[i]);
    ASSERT_EQ(pbx_sendv(q, v, 6, 0), 6);
    for (size_t i = 0; i < 6; i++)
        ASSERT_EQ(v[i].result, 0);
    for (size_t i = 0; i < 6; i++)
        expect_msg(q, (long) (i % 3 + 1), lens[i], (unsigned char) (i + 1));
    ASSERT_EQ(queued(q), 0);
    close_box(q);
}
TEST(sendv_queues_every_message_in_order_small_and_large)
{
    BOTH_TRANSPORTS(sendv_in_order);
}

static void sendv_checks(void)
{
    pbx_t *q = open_box(64, 100, PBX_BLOCK);
    struct pbx_msgv v[4];
    for (size_t i = 0; i < 4; i++)
        fill(&v[i], i, 1, 8);
    v[2].type = 0;
    ASSERT_ERR(pbx_sendv(q, v, 4, 0), -EINVAL);
    ASSERT_EQ(v[2].result, -EINVAL);
    v[2].type = 1;
    v[3].data = NULL;
    ASSERT_ERR(pbx_sendv(q, v, 4, 0), -EINVAL);
    v[3].data = payload[3];
    v[1].len = 101;
    ASSERT_ERR(pbx_sendv(q, v, 4, PBX_NOWAIT), -EMSGSIZE);
    ASSERT_EQ(v[1].result, -EMSGSIZE);
    v[1].len = 8;
    ASSERT_ERR(pbx_sendv(q, v, 4, PBX_SYNC), -EINVAL); /* refused for batches */
    ASSERT_ERR(pbx_sendv(q, v, 4, PBX_PEEK), -EINVAL);
    ASSERT_ERR(pbx_sendv(q, NULL, 4, 0), -EINVAL);
    ASSERT_ERR(pbx_sendv(NULL, v, 4, 0), -EINVAL);
    ASSERT_EQ(pbx_sendv(q, v, 0, 0), 0);
    struct timespec bad = {0, 1000000000L};
    ASSERT_ERR(pbx_timedsendv(q, v, 4, 0, &bad), -EINVAL);
    ASSERT_EQ(queued(q), 0); /* nothing of a refused batch was sent */
    close_box(q);
}
TEST(sendv_checks_every_entry_before_sending_anything)
{
    BOTH_TRANSPORTS(sendv_checks);
}

static void sendv_full_nowait(void)
{
    pbx_t *q = open_box(4, BIG, PBX_BLOCK);
    struct pbx_msgv v[6];
    for (size_t i = 0; i < 6; i++)
        fill(&v[i], i, 1, i == 1 ? BIG : 8);
    ASSERT_EQ(pbx_sendv(q, v, 6, PBX_NOWAIT), 4);
    ASSERT_EQ(v[3].result, 0);
    ASSERT_EQ(v[4].result, -EAGAIN);
    ASSERT_EQ(v[5].result, 12345); /* untouched */
    ASSERT_ERR(pbx_sendv(q, v + 4, 2, PBX_NOWAIT), -EAGAIN);
    struct timespec t = {0, 20000000};
    ASSERT_ERR(pbx_timedsendv(q, v + 4, 2, 0, &t), -ETIMEDOUT);
    ASSERT_EQ(queued(q), 4);
    for (size_t i = 0; i < 4; i++)
        expect_msg(q, 1, i == 1 ? BIG : 8, (unsigned char) (i + 1));
    /* A timed batch that gets part of the way: the count, and the reason in the next entry. */
    ASSERT_EQ(pbx_timedsendv(q, v, 6, 0, &t), 4);
    ASSERT_EQ(v[4].result, -ETIMEDOUT);
    close_box(q);
}
TEST(sendv_into_a_full_mailbox_returns_the_count_sent_and_the_reason_in_the_next_entry)
{
    BOTH_TRANSPORTS(sendv_full_nowait);
}

static void sendv_drop_newest(void)
{
    pbx_t *q = open_box(4, BIG, PBX_DROP_NEWEST);
    struct pbx_msgv v[6];
    for (size_t i = 0; i < 6; i++)
        fill(&v[i], i, 1, 8);
    ASSERT_EQ(pbx_sendv(q, v, 6, 0), 6);
    for (size_t i = 0; i < 4; i++)
        ASSERT_EQ(v[i].result, 0);
    ASSERT_EQ(v[4].result, -ENOBUFS);
    ASSERT_EQ(v[5].result, -ENOBUFS);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.dropped, 2);
    ASSERT_EQ(st.msgs, 4);
    for (size_t i = 0; i < 4; i++)
        expect_msg(q, 1, 8, (unsigned char) (i + 1));
    close_box(q);
}
TEST(sendv_drop_newest_discards_what_does_not_fit_and_goes_on)
{
    BOTH_TRANSPORTS(sendv_drop_newest);
}

static void sendv_drop_oldest(void)
{
    pbx_t *q = open_box(4, BIG, PBX_DROP_OLDEST);
    struct pbx_msgv v[6];
    for (size_t i = 0; i < 6; i++)
        fill(&v[i], i, (long) i + 1, 8);
    ASSERT_EQ(pbx_sendv(q, v, 6, 0), 6);
    for (size_t i = 0; i < 4; i++)
        ASSERT_EQ(v[i].result, 0);
    ASSERT_EQ(v[4].result, 1);
    ASSERT_EQ(v[5].result, 1);
    for (size_t i = 2; i < 6; i++)
        expect_msg(q, (long) i + 1, 8, (unsigned char) (i + 1));
    close_box(q);
}
TEST(sendv_drop_oldest_counts_the_drops_in_each_message_result)
{
    BOTH_TRANSPORTS(sendv_drop_oldest);
}

/* Room held by a claimed message (not droppable): discarding every queued message would not
 * make room for an entry, so none is discarded for it (docs/api.md, the overflow policies), and
 * the batch stops there with the queue intact. The entry it stops at is small (a run of the
 * entry before) or large (a round of its own). Then the same for a single pbx_send(). */
static void nothing_dropped_for_what_cannot_fit(size_t last_len)
{
    static unsigned char big[64], small[5], last[64];
    char name[4096];
    if (on_spool)
        snprintf(name, sizeof(name), "spool:%s/dropspool", getenv("POSTBOX_DIR"));
    else
        snprintf(name, sizeof(name), "batchdrops");
    struct pbx_options o = pbx_test_options(8, 80, 64, PBX_DROP_OLDEST);
    o.durability = PBX_DURABLE_NONE;
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    uint64_t claim = 0;
    ASSERT_OK(pbx_send(q, 1, big, sizeof(big), 0));
    ASSERT_EQ(pbx_claim(q, 0, big, sizeof(big), PBX_NOWAIT, NULL, &claim), (long long) sizeof(big));
    ASSERT_OK(pbx_send(q, 2, small, sizeof(small), 0)); /* queued: 69 of 80 bytes held */
    struct pbx_msgv v[2] = {{3, small, sizeof(small), 12345}, {4, last, last_len, 12345}};
    /* The first fits (74); the second does not, even with both queued ones dropped. */
    ASSERT_EQ(pbx_sendv(q, v, 2, PBX_NOWAIT), 1);
    ASSERT_EQ(v[0].result, 0);
    ASSERT_EQ(v[1].result, -EAGAIN);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.dropped, 0);
    ASSERT_EQ(st.msgs, 3); /* the claimed one and both queued ones */
    ASSERT_ERR(pbx_send(q, 4, last, last_len, PBX_NOWAIT), -EAGAIN);
    struct timespec t = {0, 20 * 1000 * 1000};
    ASSERT_ERR(pbx_timedsend(q, 4, last, last_len, 0, &t), -ETIMEDOUT);
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.dropped, 0);
    ASSERT_EQ(st.msgs, 3);
    /* Once the claim is acked there is room, and every message is still there. */
    ASSERT_OK(pbx_ack(q, claim));
    ASSERT_OK(pbx_send(q, 4, last, last_len, PBX_NOWAIT));
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 3);
    ASSERT_EQ(st.dropped, 0);
    close_box(q);
}
static void nothing_dropped_both_sizes(void)
{
    nothing_dropped_for_what_cannot_fit(20); /* inline: the entry before's run */
    nothing_dropped_for_what_cannot_fit(40); /* with chunks: a round of its own */
}
TEST(drop_oldest_discards_nothing_for_a_message_that_would_not_fit_even_then)
{
    BOTH_TRANSPORTS(nothing_dropped_both_sizes);
}

/* ---- receiving --------------------------------------------------------------------------- */

static unsigned char rbuf[16][BIG];
static void prepare(struct pbx_msgv *v, size_t n, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        v[i].type = -1;
        v[i].data = rbuf[i];
        v[i].len = cap;
        v[i].result = 12345;
    }
}

static void send_typed(pbx_t *q, const long *types, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b[8];
        memset(b, (int) i, sizeof(b));
        ASSERT_OK(pbx_send(q, types[i], b, (size_t) (i % 2 ? 8 : 3), PBX_NOWAIT));
    }
}

/* Entry k holds the message sent i-th by send_typed. */
static void expect_entry(const struct pbx_msgv *v, long type, size_t i)
{
    ASSERT_EQ(v->type, type);
    ASSERT_EQ(v->result, (long long) (i % 2 ? 8 : 3));
    ASSERT_EQ(((unsigned char *) v->data)[0], (unsigned char) i);
}

static void recvv_rules(void)
{
    pbx_t *q = open_box(64, BIG, PBX_BLOCK);
    static const long types[7] = {3, 1, 2, 1, 3, 5, 1};
    send_typed(q, types, 7);
    struct pbx_msgv v[8];
    /* type > 0: the oldest of that type, in order, then -ENOMSG in the next entry. */
    prepare(v, 8, 64);
    ASSERT_EQ(pbx_recvv(q, 1, v, 8, PBX_NOWAIT), 3);
    expect_entry(&v[0], 1, 1);
    expect_entry(&v[1], 1, 3);
    expect_entry(&v[2], 1, 6);
    ASSERT_EQ(v[3].result, -ENOMSG);
    /* type < 0: the lowest type up to |type| first, each pick afresh. */
    prepare(v, 8, 64);
    ASSERT_EQ(pbx_recvv(q, -3, v, 2, PBX_NOWAIT), 2);
    expect_entry(&v[0], 2, 2);
    expect_entry(&v[1], 3, 0);
    /* PBX_EXCEPT: anything but the type, oldest first. */
    prepare(v, 8, 64);
    ASSERT_EQ(pbx_recvv(q, 3, v, 8, PBX_NOWAIT | PBX_EXCEPT), 1);
    expect_entry(&v[0], 5, 5);
    ASSERT_EQ(v[1].result, -ENOMSG);
    /* type 0: what is left, by arrival. */
    prepare(v, 8, 64);
    ASSERT_EQ(pbx_recvv(q, 0, v, 8, PBX_NOWAIT), 1);
    expect_entry(&v[0], 3, 4);
    ASSERT_ERR(pbx_recvv(q, 0, v, 8, PBX_NOWAIT), -ENOMSG);
    struct timespec t = {0, 20000000};
    ASSERT_ERR(pbx_timedrecvv(q, 0, v, 8, 0, &t), -ETIMEDOUT);
    ASSERT_EQ(queued(q), 0);
    close_box(q);
}
TEST(recvv_selects_each_message_by_the_type_rules)
{
    BOTH_TRANSPORTS(recvv_rules);
}

static void recvv_e2big(void)
{
    pbx_t *q = open_box(64, BIG, PBX_BLOCK);
    static unsigned char big[BIG];
    memset(big, 7, sizeof(big));
    ASSERT_OK(pbx_send(q, 1, "abc", 3, 0));
    ASSERT_OK(pbx_send(q, 2, big, BIG, 0));
    ASSERT_OK(pbx_send(q, 3, "de", 2, 0));
    struct pbx_msgv v[4];
    prepare(v, 4, 100);
    ASSERT_EQ(pbx_recvv(q, 0, v, 4, PBX_NOWAIT), 1);
    ASSERT_EQ(v[0].result, 3);
    ASSERT_EQ(v[1].result, -E2BIG); /* the big one stays, in its place */
    ASSERT_ERR(pbx_recvv(q, 0, v, 4, PBX_NOWAIT), -E2BIG);
    ASSERT_EQ(v[0].result, -E2BIG);
    ASSERT_EQ(queued(q), 2);
    /* PBX_NOERROR: truncated to the entry's room. */
    prepare(v, 4, 100);
    ASSERT_EQ(pbx_recvv(q, 0, v, 4, PBX_NOWAIT | PBX_NOERROR), 2);
    ASSERT_EQ(v[0].type, 2);
    ASSERT_EQ(v[0].result, 100);
    ASSERT_EQ(rbuf[0][99], 7);
    ASSERT_EQ(v[1].type, 3);
    ASSERT_EQ(v[1].result, 2);
    ASSERT_EQ(v[2].result, -ENOMSG);
    /* Large messages inside a batch are copied whole. */
    for (int i = 0; i < 3; i++)
        ASSERT_OK(pbx_send(q, 4, big, BIG, 0));
    prepare(v, 4, BIG);
    ASSERT_EQ(pbx_recvv(q, 4, v, 4, PBX_NOWAIT), 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(v[i].result, BIG);
        ASSERT_MEM_EQ(v[i].data, big, BIG);
    }
    close_box(q);
}
TEST(recvv_stops_before_a_message_longer_than_its_entry)
{
    BOTH_TRANSPORTS(recvv_e2big);
}

static void recvv_checks(void)
{
    pbx_t *q = open_box(64, BIG, PBX_BLOCK);
    struct pbx_msgv v[2];
    prepare(v, 2, 64);
    ASSERT_ERR(pbx_recvv(q, 0, v, 2, PBX_PEEK), -EINVAL);
    ASSERT_ERR(pbx_recvv(q, 0, v, 2, PBX_SYNC), -EINVAL);
    ASSERT_ERR(pbx_recvv(q, 0, v, 2, PBX_EXCEPT), -EINVAL);
    ASSERT_ERR(pbx_recvv(q, -1, v, 2, PBX_EXCEPT), -EINVAL);
    ASSERT_ERR(pbx_recvv(q, 0, NULL, 2, 0), -EINVAL);
    v[1].data = NULL;
    ASSERT_ERR(pbx_recvv(q, 0, v, 2, PBX_NOWAIT), -EINVAL);
    ASSERT_EQ(pbx_recvv(q, 0, v, 0, 0), 0);
    close_box(q);
}
TEST(recvv_refuses_peek_and_bad_entries)
{
    BOTH_TRANSPORTS(recvv_checks);
}

/* ---- across processes -------------------------------------------------------------------- */

#define STREAM 20000

static int batch_consumer(void *arg)
{
    (void) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("batch", 0, NULL, &q));
    struct pbx_msgv v[16];
    uint32_t next = 0;
    while (next < STREAM) {
        prepare(v, 16, BIG);
        ssize_t k = pbx_recvv(q, 0, v, 16, 0);
        ASSERT_GE(k, 1);
        for (ssize_t i = 0; i < k; i++) {
            uint32_t seq;
            memcpy(&seq, v[i].data, sizeof(seq));
            ASSERT_EQ(seq, next);
            ASSERT_EQ(v[i].result, (long long) (seq % 7 ? 16 : 600));
            next++;
        }
    }
    pbx_close(q);
    return 0;
}

TEST(a_blocking_sendv_larger_than_the_mailbox_arrives_whole_and_in_order)
{
    pbx_t *q = open_box(16, BIG, PBX_BLOCK);
    pid_t c = pbx_test_fork(batch_consumer, NULL);
    static unsigned char buf[STREAM / 100][600];
    struct pbx_msgv v[STREAM / 100];
    for (uint32_t base = 0; base < STREAM; base += STREAM / 100) {
        for (uint32_t i = 0; i < STREAM / 100; i++) {
            uint32_t seq = base + i;
            memcpy(buf[i], &seq, sizeof(seq));
            v[i].type = 1;
            v[i].data = buf[i];
            v[i].len = seq % 7 ? 16 : 600;
        }
        ASSERT_EQ(pbx_sendv(q, v, STREAM / 100, 0), STREAM / 100);
    }
    pbx_test_wait_ok(c);
    ASSERT_EQ(queued(q), 0);
    close_box(q);
}

/* The System V pattern: one mailbox, a type per direction. A receive that waits for its answer
 * while its own message is still at the head must leave that message for the peer and still
 * see the answer arrive (a wrong watch position hangs here until the test's time limit). */
#define ROUNDS 20000
static int pong(void *arg)
{
    (void) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("batch", 0, NULL, &q));
    char buf[16];
    for (uint32_t i = 0; i < ROUNDS; i++) {
        ASSERT_EQ(pbx_recv(q, 1, buf, sizeof(buf), 0, NULL), 4);
        uint32_t seq;
        memcpy(&seq, buf, 4);
        ASSERT_EQ(seq, i);
        ASSERT_OK(pbx_send(q, 2, buf, 4, 0));
    }
    pbx_close(q);
    return 0;
}

TEST(a_ping_pong_on_one_mailbox_with_a_type_per_direction_never_stalls)
{
    pbx_t *q = open_box(64, 64, PBX_BLOCK);
    pid_t c = pbx_test_fork(pong, NULL);
    char buf[16];
    for (uint32_t i = 0; i < ROUNDS; i++) {
        ASSERT_OK(pbx_send(q, 1, &i, 4, 0));
        long type = 0;
        ASSERT_EQ(pbx_recv(q, 2, buf, sizeof(buf), 0, &type), 4);
        ASSERT_EQ(type, 2);
        uint32_t seq;
        memcpy(&seq, buf, 4);
        ASSERT_EQ(seq, i);
    }
    pbx_test_wait_ok(c);
    ASSERT_EQ(queued(q), 0);
    close_box(q);
}

TEST(a_typed_receive_leaves_other_types_at_the_head_in_their_place)
{
    on_spool = 0;
    pbx_t *q = open_box(64, 64, PBX_BLOCK);
    static const long types[5] = {1, 1, 2, 1, 3};
    send_typed(q, types, 5);
    char buf[16];
    long t = 0;
    ASSERT_ERR(pbx_recv(q, 4, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG); /* none anywhere */
    ASSERT_EQ(pbx_recv(q, 3, buf, sizeof(buf), PBX_NOWAIT, &t), 3); /* a match behind others */
    ASSERT_EQ(buf[0], 4);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 3);
    ASSERT_EQ(t, 1);
    ASSERT_EQ(buf[0], 0);
    ASSERT_EQ(pbx_recv(q, 2, buf, sizeof(buf), PBX_NOWAIT, &t), 3);
    ASSERT_EQ(buf[0], 2);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 8);
    ASSERT_EQ(buf[0], 1);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 8);
    ASSERT_EQ(buf[0], 3);
    ASSERT_EQ(queued(q), 0);
    close_box(q);
}

/* ---- the batch storm --------------------------------------------------------------------- */

/* 2 producers sending batches of BATCH, 2 consumers taking batches of BATCH, SIGKILLed at
 * random and replaced. A producer stores the last seq of each batch once pbx_sendv() returned
 * it whole. Contract: every seq up to that is received exactly once; of the batch cut short,
 * each message at most once; a killed consumer loses at most the BATCH messages it held. */
#define BATCH     8
#define INSTANCES 64
#define SEQS      4096
struct storm {
    uint32_t returned[INSTANCES];
    uint32_t stop, drain;
    uint8_t seen[INSTANCES][SEQS + BATCH + 1];
};
static struct storm *st;

static uint32_t storm_len(uint32_t inst, uint32_t seq)
{
    return (inst * 7 + seq) % 5 ? 12 : 900;
}

static int storm_producer(void *arg)
{
    uint32_t inst = (uint32_t) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("batch", 0, NULL, &q));
    static uint8_t buf[BATCH][900];
    struct pbx_msgv v[BATCH];
    for (uint32_t seq = 1; seq + BATCH - 1 <= SEQS; seq += BATCH) {
        if (__atomic_load_n(&st->stop, __ATOMIC_SEQ_CST))
            break;
        for (uint32_t i = 0; i < BATCH; i++) {
            uint32_t h[2] = {inst, seq + i};
            memset(buf[i], (int) (seq + i), sizeof(buf[i]));
            memcpy(buf[i], h, sizeof(h));
            v[i].type = 1 + (seq + i) % 3;
            v[i].data = buf[i];
            v[i].len = storm_len(inst, seq + i);
        }
        ASSERT_EQ(pbx_sendv(q, v, BATCH, 0), BATCH);
        __atomic_store_n(&st->returned[inst], seq + BATCH - 1, __ATOMIC_SEQ_CST);
    }
    while (!__atomic_load_n(&st->stop, __ATOMIC_SEQ_CST))
        pbx_test_sleep_ms(5);
    pbx_close(q);
    return 0;
}

static void storm_record(const struct pbx_msgv *v)
{
    uint32_t h[2];
    memcpy(h, v->data, sizeof(h));
    ASSERT_LT(h[0], INSTANCES);
    ASSERT_TRUE(h[1] >= 1 && h[1] <= SEQS);
    __atomic_fetch_add(&st->seen[h[0]][h[1]], 1, __ATOMIC_SEQ_CST);
    ASSERT_EQ(v->result, (long long) storm_len(h[0], h[1]));
    ASSERT_EQ(((const uint8_t *) v->data)[v->result - 1], (uint8_t) h[1]);
}

static int storm_consumer(void *arg)
{
    (void) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("batch", 0, NULL, &q));
    static uint8_t buf[BATCH][900];
    struct pbx_msgv v[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            v[i].data = buf[i];
            v[i].len = sizeof(buf[i]);
        }
        struct timespec t = {0, 200000000};
        ssize_t k = pbx_timedrecvv(q, 0, v, BATCH, 0, &t);
        if (k == -ETIMEDOUT) {
            if (__atomic_load_n(&st->drain, __ATOMIC_SEQ_CST))
                break;
            continue;
        }
        ASSERT_GE(k, 1);
        for (ssize_t i = 0; i < k; i++)
            storm_record(&v[i]);
    }
    pbx_close(q);
    return 0;
}

TEST(batch_kill_storm_loses_no_returned_batch_and_duplicates_nothing)
{
    st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(st != MAP_FAILED);
    on_spool = 0;
    pbx_t *q = open_box(32, 900, PBX_BLOCK);
    pid_t prod[2], cons[2];
    uint32_t next = 0;
    for (int i = 0; i < 2; i++) {
        prod[i] = pbx_test_fork(storm_producer, (void *) (uintptr_t) next++);
        cons[i] = pbx_test_fork(storm_consumer, NULL);
    }
    uint32_t rng = 99;
    unsigned consumer_kills = 0;
    const int kills = 40;
    for (int k = 0; k < kills && next < INSTANCES; k++) {
        rng = rng * 1103515245u + 12345u;
        struct timespec ts = {0, (long) (300 + (rng >> 8) % 3000) * 1000};
        nanosleep(&ts, NULL);
        int victim = (int) ((rng >> 20) % 4);
        pid_t *p = victim < 2 ? &prod[victim] : &cons[victim - 2];
        ASSERT_EQ(kill(*p, SIGKILL), 0);
        int status = pbx_test_wait(*p);
        ASSERT_TRUE(status == 128 + SIGKILL || status == 0);
        if (victim < 2) {
            *p = pbx_test_fork(storm_producer, (void *) (uintptr_t) next++);
        } else {
            *p = pbx_test_fork(storm_consumer, NULL);
            consumer_kills++;
        }
    }
    __atomic_store_n(&st->stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++)
        pbx_test_wait_ok(prod[i]);
    __atomic_store_n(&st->drain, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++)
        pbx_test_wait_ok(cons[i]);
    static uint8_t buf[900];
    struct pbx_msgv one = {0, buf, sizeof(buf), 0};
    struct timespec t = {0, 500000000};
    while (pbx_timedrecvv(q, 0, &one, 1, 0, &t) == 1)
        storm_record(&one);

    uint64_t lost = 0, dup = 0, received = 0;
    for (uint32_t p = 0; p < next; p++) {
        uint32_t ret = st->returned[p];
        for (uint32_t s = 1; s <= SEQS; s++) {
            uint8_t n = st->seen[p][s];
            received += n;
            if (n > 1)
                dup += n - 1u;
            if (s <= ret && n == 0)
                lost++;
            if (s > ret + BATCH && n)
                pbx_test_fail(__FILE__, __LINE__, "instance %u seq %u received, never sent", p, s);
        }
    }
    printf("batch storm: %d kills (%u consumers), %llu received, %llu lost (allowed %u), %llu "
           "duplicated\n",
           kills, consumer_kills, (unsigned long long) received, (unsigned long long) lost,
           consumer_kills * BATCH, (unsigned long long) dup);
    ASSERT_EQ(dup, 0);
    ASSERT_LE(lost, consumer_kills * BATCH);
    ASSERT_EQ(queued(q), 0);
    close_box(q);
    munmap(st, sizeof(*st));
}

/* Listeners see a batch's edges: the descriptor turns readable when a batch arrives in the
 * empty mailbox, and unreadable once a receive batch has emptied it. */
static void fd_follows_batches(void)
{
    pbx_t *q = open_box(64, BIG, PBX_BLOCK);
    int fd = pbx_fd(q);
    ASSERT_GE(fd, 0);
    struct pbx_msgv v[3];
    for (size_t i = 0; i < 3; i++)
        fill(&v[i], i, 1, 8);
    ASSERT_EQ(pbx_sendv(q, v, 3, 0), 3);
    struct pollfd p = {fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    prepare(v, 3, 64);
    ASSERT_EQ(pbx_recvv(q, 0, v, 3, PBX_NOWAIT), 3);
    int r = 1;
    for (int i = 0; i < 500 && r != 0; i++) {
        r = poll(&p, 1, 0);
        if (r != 0)
            pbx_test_sleep_ms(10);
    }
    ASSERT_EQ(r, 0);
    close_box(q);
}
TEST(the_descriptor_follows_a_batch_in_and_a_batch_out)
{
    BOTH_TRANSPORTS(fd_follows_batches);
}
