/*
 * test_threads.c — one process, many threads: producers and consumers sharing one handle or
 * each holding its own, and threads asleep in postbox woken by another thread's pbx_remove().
 *
 * These tests are TEST_THREADS, so CI runs them again under the thread sanitizer. Messages are
 * built and checked by testmsg.c, with the same sizes as in test_procs.c: producer, type,
 * sequence number and a checksum of the payload, with lengths from tiny (inline in the slot) to a
 * few KB (several chunks). Every wait is bounded.
 */
#define _GNU_SOURCE
#include "testmsg.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

/* ---- test messages (testmsg.h) --------------------------------------------------------------- */

#define MSG_MAX     MSG_MAX_4K
#define MSG_SIZES   MSG_SIZES_4K
#define STALL_SECS  30 /* a consumer that waits this long for a message that must come fails */
#define ASLEEP_SECS 20 /* a thread that is not asleep in postbox after this long fails */
#define STOP_TYPE   999

/* ---- storms of threads ----------------------------------------------------------------------- */

struct storm {
    const char *name;
    pbx_t *shared; /* the one handle, or NULL: each thread opens its own */
    unsigned producers, consumers;
    uint32_t per_producer;
    uint8_t *seen;        /* times each (producer, seq) was received; atomic */
    uint64_t received[8]; /* per consumer, written by that consumer before it ends */
};

static struct storm storm;

struct role {
    unsigned id;
};

static pbx_t *thread_handle(void)
{
    if (storm.shared)
        return storm.shared;
    pbx_t *q;
    ASSERT_OK(pbx_open(storm.name, 0, NULL, &q));
    return q;
}

static void *producer_main(void *arg)
{
    unsigned p = ((struct role *) arg)->id;
    pbx_t *q = thread_handle();
    uint8_t *buf = malloc(MSG_MAX);
    ASSERT_TRUE(buf != NULL);
    for (uint32_t seq = 1; seq <= storm.per_producer; seq++) {
        size_t n = msg_build(MSG_SIZES, buf, p, 1 + p, seq);
        ASSERT_OK(pbx_send(q, 1 + p, buf, n, 0));
    }
    free(buf);
    if (!storm.shared)
        pbx_close(q);
    return NULL;
}

static void *consumer_main(void *arg)
{
    unsigned c = ((struct role *) arg)->id;
    pbx_t *q = thread_handle();
    uint8_t *buf = malloc(MSG_MAX);
    ASSERT_TRUE(buf != NULL);
    uint32_t last[MAX_PRODS] = {0};
    uint64_t count = 0;
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (;;) {
        long type = 0;
        ssize_t n = pbx_timedrecv(q, 0, buf, MSG_MAX, 0, &type, &stall);
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__,
                          "consumer thread %u: no message for %d s after %llu received", c,
                          STALL_SECS, (unsigned long long) count);
        ASSERT_OK(n);
        if (type == STOP_TYPE)
            break;
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_LT(h.producer, storm.producers);
        ASSERT_GE(h.seq, 1);
        ASSERT_LE(h.seq, storm.per_producer);
        ASSERT_GT(h.seq, last[h.producer]);
        last[h.producer] = h.seq;
        __atomic_fetch_add(&storm.seen[(size_t) h.producer * (storm.per_producer + 1) + h.seq], 1,
                           __ATOMIC_RELAXED);
        count++;
    }
    storm.received[c] = count;
    free(buf);
    if (!storm.shared)
        pbx_close(q);
    return NULL;
}

static void run_thread_storm(const char *label, int one_handle, uint32_t per_producer)
{
    const unsigned producers = 4, consumers = 4;
    memset(&storm, 0, sizeof(storm));
    storm.name = one_handle ? "threads-one" : "threads-own";
    storm.producers = producers;
    storm.consumers = consumers;
    storm.per_producer = per_producer;
    size_t seen_size = (size_t) producers * (per_producer + 1);
    storm.seen = calloc(seen_size, 1);
    ASSERT_TRUE(storm.seen != NULL);

    pbx_t *q;
    struct pbx_options o = pbx_test_options(64, 64 * MSG_MAX, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open(storm.name, PBX_CREATE | PBX_EXCL, &o, &q));
    storm.shared = one_handle ? q : NULL;

    double t0 = pbx_test_now_ms();
    pthread_t prod[4], cons[4];
    struct role prole[4], crole[4];
    for (unsigned c = 0; c < consumers; c++) {
        crole[c].id = c;
        ASSERT_EQ(pthread_create(&cons[c], NULL, consumer_main, &crole[c]), 0);
    }
    for (unsigned p = 0; p < producers; p++) {
        prole[p].id = p;
        ASSERT_EQ(pthread_create(&prod[p], NULL, producer_main, &prole[p]), 0);
    }
    for (unsigned p = 0; p < producers; p++)
        ASSERT_EQ(pthread_join(prod[p], NULL), 0);
    for (unsigned c = 0; c < consumers; c++)
        ASSERT_OK(pbx_send(q, STOP_TYPE, NULL, 0, 0));
    for (unsigned c = 0; c < consumers; c++)
        ASSERT_EQ(pthread_join(cons[c], NULL), 0);
    double ms = pbx_test_now_ms() - t0;

    uint64_t total = (uint64_t) producers * per_producer;
    expect_each_once(storm.seen, producers, per_producer, storm.received, consumers);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(st.sent, total + consumers);
    ASSERT_EQ(st.received, total + consumers);
    printf("%s: %llu messages, 4 producer x 4 consumer threads, capacity 64: %.0f ms; per "
           "consumer %llu %llu %llu %llu\n",
           label, (unsigned long long) total, ms, (unsigned long long) storm.received[0],
           (unsigned long long) storm.received[1], (unsigned long long) storm.received[2],
           (unsigned long long) storm.received[3]);
    fflush(stdout);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
    free(storm.seen);
}

TEST_THREADS(four_producer_four_consumer_threads_sharing_one_handle_lose_and_duplicate_nothing)
{
    run_thread_storm("threads, one handle", 1, 25000);
}

TEST_THREADS(four_producer_four_consumer_threads_with_own_handles_lose_and_duplicate_nothing)
{
    run_thread_storm("threads, own handles", 0, 25000);
}

/* ---- removal wakes sleeping threads ---------------------------------------------------------- */

struct sleeper {
    pbx_t *q;
    int send; /* sleep in a send on a full mailbox, else in a receive */
    long type;
    int result;
};

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    struct timespec limit = ms_timeout(30000);
    char buf[64];
    if (s->send)
        s->result = pbx_timedsend(s->q, 1, "blocked", 7, 0, &limit);
    else
        s->result = (int) pbx_timedrecv(s->q, s->type, buf, sizeof(buf), 0, NULL, &limit);
    return NULL;
}

TEST_THREADS(threads_blocked_in_recv_get_eidrm_when_another_thread_removes)
{
    pbx_t *q;
    ASSERT_OK(pbx_open("threads-rm", PBX_CREATE | PBX_EXCL, NULL, &q));
    pbx_t *own;
    ASSERT_OK(pbx_open("threads-rm", 0, NULL, &own));
    /* Two on the shared handle (any type, one exact type), one on its own handle. */
    struct sleeper s[3] = {{q, 0, 0, 0}, {q, 0, 7, 0}, {own, 0, -3, 0}};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, sleeper_main, &s[i]), 0);
    wait_for_sleepers(q, 1, 3, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_OK(pbx_remove(q));
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
        ASSERT_ERR(s[i].result, -EIDRM);
    }
    ASSERT_ERR(pbx_send(own, 1, "x", 1, 0), -EIDRM);
    pbx_close(own);
    pbx_close(q);
}

TEST_THREADS(thread_blocked_in_send_on_full_mailbox_gets_eidrm_when_another_thread_removes)
{
    pbx_t *q;
    struct pbx_options o = pbx_test_options(2, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open("threads-rm-send", PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_OK(pbx_send(q, 1, "a", 1, 0));
    ASSERT_OK(pbx_send(q, 1, "b", 1, 0));
    struct sleeper s = {q, 1, 0, 0};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, sleeper_main, &s), 0);
    wait_for_sleepers(q, 0, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_OK(pbx_remove(q));
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_ERR(s.result, -EIDRM);
    pbx_close(q);
}

/* ---- typed receiver threads ------------------------------------------------------------------ */

/* Eight threads each wait for their own type on one handle; a ninth sends the types in reverse
 * order, many rounds: each waiter gets exactly its own messages, in order. */
#define TYPED_ROUNDS (2000)

struct typed_waiter {
    pbx_t *q;
    long type;
};

static void *typed_waiter_main(void *arg)
{
    struct typed_waiter *w = arg;
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (uint32_t i = 1; i <= TYPED_ROUNDS; i++) {
        uint32_t v[2];
        long type = 0;
        ssize_t n = pbx_timedrecv(w->q, w->type, v, sizeof(v), 0, &type, &stall);
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "type %ld: round %u never arrived", w->type, i);
        ASSERT_EQ(n, sizeof(v));
        ASSERT_EQ(type, w->type);
        ASSERT_EQ(v[0], (uint32_t) w->type);
        ASSERT_EQ(v[1], i);
    }
    return NULL;
}

TEST_THREADS(threads_waiting_on_different_types_of_one_handle_each_get_their_own_in_order)
{
    pbx_t *q;
    struct pbx_options o = pbx_test_options(16, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open("threads-typed", PBX_CREATE | PBX_EXCL, &o, &q));
    struct typed_waiter w[8];
    pthread_t t[8];
    for (int i = 0; i < 8; i++) {
        w[i].q = q;
        w[i].type = i + 1;
        ASSERT_EQ(pthread_create(&t[i], NULL, typed_waiter_main, &w[i]), 0);
    }
    for (uint32_t r = 1; r <= TYPED_ROUNDS; r++)
        for (long type = 8; type >= 1; type--) {
            uint32_t v[2] = {(uint32_t) type, r};
            ASSERT_OK(pbx_send(q, type, v, sizeof(v), 0));
        }
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.received, 8 * TYPED_ROUNDS);
    pbx_close(q);
}

/* ---- signals to one thread ------------------------------------------------------------------- */

static int handler_ran;

static void on_usr1(int sig)
{
    (void) sig;
    __atomic_store_n(&handler_ran, 1, __ATOMIC_SEQ_CST);
}

TEST_THREADS(thread_blocked_in_recv_gets_eintr_when_signalled_with_pthread_kill)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    pbx_t *q;
    ASSERT_OK(pbx_open("threads-intr", PBX_CREATE | PBX_EXCL, NULL, &q));
    struct sleeper s = {q, 0, 0, 0};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, sleeper_main, &s), 0);
    wait_for_sleepers(q, 1, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_EQ(pthread_kill(t, SIGUSR1), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_ERR(s.result, -EINTR);
    ASSERT_TRUE(__atomic_load_n(&handler_ran, __ATOMIC_SEQ_CST));
    /* The mailbox is unharmed. */
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    pbx_close(q);
}

/* ---- dropping under concurrency -------------------------------------------------------------- */

/* A sender that finds a DROP_OLDEST mailbox full takes the receive lock to discard: with
 * receivers taking at the same time, every message is received once or counted dropped. */
struct drop_run {
    pbx_t *q;
    uint32_t per_producer;
    uint8_t *seen;
    uint64_t dropped[3];
    uint64_t received[2];
};

static struct drop_run dr;

static void *drop_producer(void *arg)
{
    unsigned p = ((struct role *) arg)->id;
    uint8_t *buf = malloc(MSG_MAX);
    ASSERT_TRUE(buf != NULL);
    uint64_t dropped = 0;
    for (uint32_t seq = 1; seq <= dr.per_producer; seq++) {
        size_t n = msg_build(MSG_SIZES, buf, p, 1 + p, seq);
        int r = pbx_send(dr.q, 1 + p, buf, n, 0);
        ASSERT_OK(r);
        dropped += (uint64_t) r;
    }
    dr.dropped[p] = dropped;
    free(buf);
    return NULL;
}

static void *drop_consumer(void *arg)
{
    unsigned c = ((struct role *) arg)->id;
    uint8_t *buf = malloc(MSG_MAX);
    ASSERT_TRUE(buf != NULL);
    uint32_t last[MAX_PRODS] = {0};
    uint64_t count = 0;
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (;;) {
        long type = 0;
        ssize_t n = pbx_timedrecv(dr.q, 0, buf, MSG_MAX, 0, &type, &stall);
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "consumer thread %u: no message for %d s", c,
                          STALL_SECS);
        ASSERT_OK(n);
        if (type == STOP_TYPE)
            break;
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_LT(h.producer, 3);
        ASSERT_LE(h.seq, dr.per_producer);
        ASSERT_GT(h.seq, last[h.producer]);
        last[h.producer] = h.seq;
        __atomic_fetch_add(&dr.seen[(size_t) h.producer * (dr.per_producer + 1) + h.seq], 1,
                           __ATOMIC_RELAXED);
        count++;
    }
    dr.received[c] = count;
    free(buf);
    return NULL;
}

TEST_THREADS(drop_oldest_with_sender_and_receiver_threads_accounts_for_every_message)
{
    memset(&dr, 0, sizeof(dr));
    dr.per_producer = 20000;
    size_t table = 3 * (size_t) (dr.per_producer + 1);
    dr.seen = calloc(table, 1);
    ASSERT_TRUE(dr.seen != NULL);
    struct pbx_options o = pbx_test_options(16, 16 * 1024, MSG_MAX, PBX_DROP_OLDEST);
    ASSERT_OK(pbx_open("threads-drop", PBX_CREATE | PBX_EXCL, &o, &dr.q));
    pthread_t prod[3], cons[2];
    struct role prole[3], crole[2];
    for (unsigned c = 0; c < 2; c++) {
        crole[c].id = c;
        ASSERT_EQ(pthread_create(&cons[c], NULL, drop_consumer, &crole[c]), 0);
    }
    for (unsigned p = 0; p < 3; p++) {
        prole[p].id = p;
        ASSERT_EQ(pthread_create(&prod[p], NULL, drop_producer, &prole[p]), 0);
    }
    for (unsigned p = 0; p < 3; p++)
        ASSERT_EQ(pthread_join(prod[p], NULL), 0);
    uint64_t stop_drops = 0;
    for (unsigned c = 0; c < 2; c++) {
        int r = pbx_send(dr.q, STOP_TYPE, NULL, 0, 0);
        ASSERT_OK(r);
        stop_drops += (uint64_t) r;
    }
    for (unsigned c = 0; c < 2; c++)
        ASSERT_EQ(pthread_join(cons[c], NULL), 0);
    uint64_t missing = 0, total = 3 * (uint64_t) dr.per_producer;
    for (size_t i = 0; i < table; i++) {
        if (i % (dr.per_producer + 1) == 0)
            continue;
        if (dr.seen[i] > 1)
            pbx_test_fail(__FILE__, __LINE__, "message %zu received %u times", i, dr.seen[i]);
        missing += dr.seen[i] == 0;
    }
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(dr.q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(dr.received[0] + dr.received[1] + missing, total);
    ASSERT_EQ(st.dropped, missing);
    ASSERT_EQ(dr.dropped[0] + dr.dropped[1] + dr.dropped[2] + stop_drops, st.dropped);
    printf("threads, drop oldest: %llu messages, %llu received, %llu dropped\n",
           (unsigned long long) total, (unsigned long long) (dr.received[0] + dr.received[1]),
           (unsigned long long) st.dropped);
    fflush(stdout);
    pbx_close(dr.q);
    free(dr.seen);
}
