/*
 * test_backlog.c — receiving by type from a backlog the index has not seen yet: the
 * incremental drain (INCREMENTAL DRAIN in shm.c) and senders indexing ahead for a selective
 * receiver (INDEX AHEAD in ahead.c), checked against a plain model, and a sender killed while
 * it indexes ahead.
 *
 * The model is an array of the messages in arrival order; every receive is checked against the
 * message the msgrcv(2) rules pick from it. Messages carry their arrival number.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <signal.h>
#include <stdlib.h>

#include "internal.h"
#include "os/os.h"
#include "shm/shm.h"

#define DEPTH 600
#define TYPES 20

struct model {
    long type[DEPTH];
    int taken[DEPTH];
    int n;
};

static pbx_t *open_box(const char *name)
{
    pbx_t *q = NULL;
    struct pbx_options o = pbx_test_options(DEPTH, DEPTH * 16, 16, PBX_BLOCK);
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    return q;
}

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void fill(pbx_t *q, struct model *md, int n, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < n; i++) {
        long type = 1 + (long) (next_random(&x) % TYPES);
        int k = md->n++;
        md->type[k] = type;
        md->taken[k] = 0;
        ASSERT_OK(pbx_send(q, type, &k, sizeof(k), PBX_NOWAIT));
    }
}

/* The arrival number msgrcv(2) would pick for sel, or -1. */
static int model_pick(const struct model *md, long sel)
{
    int best = -1;
    for (int k = 0; k < md->n; k++) {
        if (md->taken[k])
            continue;
        long t = md->type[k];
        if (sel == 0 || (sel > 0 && t == sel))
            return k;
        if (sel < 0 && t <= -sel && (best < 0 || t < md->type[best]))
            best = k;
    }
    return best;
}

static void recv_checked(pbx_t *q, struct model *md, long sel)
{
    int want = model_pick(md, sel), got = -1;
    long type = 0;
    ssize_t r = pbx_recv(q, sel, &got, sizeof(got), PBX_NOWAIT, &type);
    if (want < 0) {
        ASSERT_EQ(r, -ENOMSG);
        return;
    }
    ASSERT_EQ(r, (long long) sizeof(got));
    ASSERT_EQ(got, want);
    ASSERT_EQ(type, md->type[want]);
    md->taken[want] = 1;
}

/* Each type in turn, then lowest types, then the rest in arrival order: the first receives
 * drain the inbox only part of the way, so later ones mix the index and the inbox. */
static void receive_all_checked(pbx_t *q, struct model *md)
{
    for (int k = 0; k < 3 * TYPES; k++)
        recv_checked(q, md, 1 + k % TYPES);
    for (int k = 0; k < 40; k++)
        recv_checked(q, md, -(TYPES / 2));
    for (int k = 0; k < 20; k++)
        recv_checked(q, md, 0);
    for (int k = 0; k < 40; k++)
        recv_checked(q, md, -TYPES);
    while (model_pick(md, 0) >= 0)
        recv_checked(q, md, 0);
    recv_checked(q, md, 0);
    recv_checked(q, md, -TYPES);
}

TEST(selective_receives_from_a_fresh_burst_follow_the_msgrcv_rules)
{
    pbx_t *q = open_box("cold");
    static struct model md;
    md.n = 0;
    fill(q, &md, DEPTH, 0x1234567);
    receive_all_checked(q, &md);
    pbx_close(q);
}

TEST(selective_receives_from_a_burst_indexed_ahead_follow_the_msgrcv_rules)
{
    pbx_t *q = open_box("ahead");
    static struct model md;
    md.n = 0;
    recv_checked(q, &md, 5); /* a selective receiver is present: senders index ahead */
    fill(q, &md, DEPTH / 2, 0xabcdef);
    recv_checked(q, &md, 3);
    fill(q, &md, DEPTH / 2, 0x777);
    receive_all_checked(q, &md);
    pbx_close(q);
}

TEST(fifo_receives_stop_senders_indexing_ahead_and_keep_arrival_order)
{
    pbx_t *q = open_box("fifo");
    static struct model md;
    md.n = 0;
    recv_checked(q, &md, -3);
    fill(q, &md, 200, 0x42);
    for (int k = 0; k < 100; k++) /* 64 FIFO receives in a row say nobody selects any more */
        recv_checked(q, &md, 0);
    fill(q, &md, 200, 0x43);
    while (model_pick(&md, 0) >= 0)
        recv_checked(q, &md, 0);
    pbx_close(q);
}

/* In a helper: say a selective receiver is present, arm the crash point, send until it hits. */
static int die_indexing_ahead(void *arg)
{
    const char *at = arg;
    pbx_t *h;
    if (pbx_open("crash", 0, NULL, &h) != 0)
        return 4;
    int dummy;
    if (pbx_recv(h, 7, &dummy, sizeof(dummy), PBX_NOWAIT, NULL) != -ENOMSG)
        return 5;
    setenv("PBX_CRASH_AT", at, 1);
    for (int k = 0; k < 100; k++) {
        long type = 1 + (k * 7) % TYPES;
        if (pbx_send(h, type, &k, sizeof(k), PBX_NOWAIT) != 0)
            return 6;
    }
    return 3; /* the crash point was not reached */
}

static void sender_killed_indexing_ahead_loses_nothing(const char *at)
{
    pbx_t *q = open_box("crash");
    static struct model md;
    md.n = 0;
    int status = pbx_test_wait(pbx_test_fork(die_indexing_ahead, (void *) at));
    ASSERT_EQ(status, 128 + SIGKILL);
    /* Every message the helper sent was published before it died: all are there, once, and the
     * receive lock it held is taken over (the index rebuilt) by the first receive. */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_TRUE(st.msgs >= 32);
    for (int k = 0; k < (int) st.msgs; k++) {
        md.type[k] = 1 + (k * 7) % TYPES;
        md.taken[k] = 0;
    }
    md.n = (int) st.msgs;
    receive_all_checked(q, &md);
    pbx_close(q);
}

TEST(sender_killed_holding_the_receive_lock_to_index_ahead_loses_nothing)
{
    sender_killed_indexing_ahead_loses_nothing("ahead.locked");
}

TEST(sender_killed_after_indexing_ahead_loses_nothing)
{
    sender_killed_indexing_ahead_loses_nothing("ahead.drained");
}

/* In a helper: send 100 messages, with no receive of its own (a receive would take the lock,
 * and revoke a bias, by itself). */
static int send_hundred(void *arg)
{
    (void) arg;
    pbx_t *h;
    if (pbx_open("biased", 0, NULL, &h) != 0)
        return 4;
    for (int k = 0; k < 100; k++) {
        long type = 1 + (k * 7) % TYPES;
        if (pbx_send(h, type, &k, sizeof(k), PBX_NOWAIT) != 0)
            return 6;
    }
    return pbx_close(h) ? 7 : 0;
}

TEST(senders_index_ahead_for_a_receiver_that_holds_its_locks_bias)
{
    if (!pbx__os_asym_setup())
        SKIP("membarrier GLOBAL_EXPEDITED is not available here: no bias is ever granted");
    pbx_t *q = open_box("biased");
    struct pbx_shm *m = pbx__handle_shm(q);
    int dummy;
    /* A selective receiver that keeps taking its lock earns the lock's bias. */
    for (int i = 0; i < 5000; i++)
        ASSERT_EQ(pbx_recv(q, 7, &dummy, sizeof(dummy), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_EQ(__atomic_load_n(&m->h->recv.bias.owner, __ATOMIC_SEQ_CST), pbx__os_self()->ident);
    pbx_test_wait_ok(pbx_test_fork(send_hundred, NULL));
    /* The sender indexed the backlog (the inbox head moved without a receive) by revoking the
     * bias from this receiver, which was outside its section. */
    ASSERT_TRUE(__atomic_load_n(&m->h->recv.inbox_head, __ATOMIC_SEQ_CST) >= 32);
    ASSERT_EQ(__atomic_load_n(&m->h->recv.bias.owner, __ATOMIC_SEQ_CST), 0);
    static struct model md;
    md.n = 100;
    for (int k = 0; k < 100; k++) {
        md.type[k] = 1 + (k * 7) % TYPES;
        md.taken[k] = 0;
    }
    receive_all_checked(q, &md);
    pbx_close(q);
}
