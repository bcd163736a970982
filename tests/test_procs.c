/*
 * test_procs.c — mailboxes shared by several processes: storms of producers and consumers that
 * must lose, duplicate and reorder nothing, typed receivers, and what wakes a process asleep in
 * postbox (a message, a removal, a signal, a timeout).
 *
 * Every message the storms send carries its producer, its type, a per-producer sequence number
 * and a checksum of its payload; its length is derived from (producer, seq), from tiny
 * (entirely inside a slot) to a few KB (several chunks). Consumers check each message as it
 * arrives and count it in a table in MAP_SHARED memory that the test reads at the end. Every
 * wait is bounded (pbx_timedrecv), so a lost message shows as a failure, not as a hung test.
 * (A lost wake-up would only show as slowness: sleepers re-check every 100 ms. The ping-pong
 * test prints its slowest round trip for that reason; speed itself is never asserted.)
 */
#define _GNU_SOURCE
#include "testmsg.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- test messages (testmsg.h) --------------------------------------------------------------- */

#define MSG_MAX     MSG_MAX_4K /* max_msg_size of the storm mailboxes */
#define MSG_SIZES   MSG_SIZES_4K
#define STALL_SECS  20 /* a consumer that waits this long for a message that must come fails */
#define ASLEEP_SECS 10 /* a helper that is not asleep in postbox after this long fails */
#define STOP_TYPE   999

/* ---- storms: producers and consumers of type-0 receives -------------------------------------- */

struct storm {
    const char *name;
    pbx_t *q;
    unsigned producers, consumers;
    uint32_t per_producer;
    int pauses;         /* producers pause at random (the wake storm) */
    uint8_t *seen;      /* shared: times each (producer, seq) was received */
    uint64_t *received; /* shared: messages per consumer */
    uint64_t *waits;    /* shared: [0] sends that found it full, [1] receives that found it
                           empty (and then blocked) */
};

static struct storm storm;

static uint8_t *seen_at(unsigned producer, uint32_t seq)
{
    return &storm.seen[(size_t) producer * (storm.per_producer + 1) + seq];
}

/* A short pause of random length: mostly a few hundred spins, sometimes a real sleep, so that
 * consumers keep falling asleep and being woken. */
static void random_pause(uint32_t *rng)
{
    *rng = mix32(*rng + 0x9e3779b9u);
    if ((*rng & 7) == 0) {
        struct timespec ts = {0, (long) (1000 + (*rng >> 8) % 30000)};
        nanosleep(&ts, NULL);
    } else if ((*rng & 3) == 0) {
        for (volatile uint32_t i = 0; i < (*rng >> 20); i++)
            ;
    }
}

/* Producers use the handle inherited from the test; consumers open the mailbox by name. */
static int storm_producer(void *arg)
{
    unsigned p = (unsigned) (uintptr_t) arg;
    pbx_t *q = storm.q;
    static uint8_t buf[MSG_MAX];
    uint32_t rng = p + 1;
    for (uint32_t seq = 1; seq <= storm.per_producer; seq++) {
        size_t n = msg_build(MSG_SIZES, buf, p, 1 + p, seq);
        /* Try first without waiting, only to count how often the mailbox was full. */
        int r = pbx_send(q, 1 + p, buf, n, PBX_NOWAIT);
        if (r == -EAGAIN) {
            __atomic_fetch_add(&storm.waits[0], 1, __ATOMIC_RELAXED);
            r = pbx_send(q, 1 + p, buf, n, 0);
        }
        ASSERT_OK(r);
        if (storm.pauses)
            random_pause(&rng);
    }
    return 0;
}

static int storm_consumer(void *arg)
{
    unsigned c = (unsigned) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open(storm.name, 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    uint32_t last[MAX_PRODS] = {0};
    uint64_t count = 0;
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (;;) {
        long type = 0;
        ssize_t n = pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type);
        if (n == -ENOMSG) {
            __atomic_fetch_add(&storm.waits[1], 1, __ATOMIC_RELAXED);
            n = pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &type, &stall);
        }
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__,
                          "consumer %u: no message for %d s after %llu received", c, STALL_SECS,
                          (unsigned long long) count);
        ASSERT_OK(n);
        if (type == STOP_TYPE)
            break;
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_LT(h.producer, storm.producers);
        ASSERT_GE(h.seq, 1);
        ASSERT_LE(h.seq, storm.per_producer);
        /* Per-producer order, as this consumer sees it. */
        ASSERT_GT(h.seq, last[h.producer]);
        last[h.producer] = h.seq;
        __atomic_fetch_add(seen_at(h.producer, h.seq), 1, __ATOMIC_RELAXED);
        count++;
    }
    storm.received[c] = count;
    pbx_close(q);
    return 0;
}

/* Run a storm on a fresh mailbox of max_msgs messages; check exactly-once delivery. */
static void run_storm(const char *label, unsigned producers, unsigned consumers,
                      uint32_t per_producer, uint32_t max_msgs, int pauses)
{
    storm.name = "storm";
    storm.producers = producers;
    storm.consumers = consumers;
    storm.per_producer = per_producer;
    storm.pauses = pauses;
    size_t seen_size = (size_t) producers * (per_producer + 1);
    storm.seen = shared_alloc(seen_size);
    storm.received = shared_alloc(sizeof(uint64_t) * consumers);
    storm.waits = shared_alloc(2 * sizeof(uint64_t));

    pbx_t *q;
    struct pbx_options o =
        pbx_test_options(max_msgs, (uint64_t) max_msgs * MSG_MAX, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open(storm.name, PBX_CREATE | PBX_EXCL, &o, &q));
    storm.q = q;

    double t0 = pbx_test_now_ms();
    pid_t cons[8], prod[8];
    for (unsigned c = 0; c < consumers; c++)
        cons[c] = pbx_test_fork(storm_consumer, (void *) (uintptr_t) c);
    for (unsigned p = 0; p < producers; p++)
        prod[p] = pbx_test_fork(storm_producer, (void *) (uintptr_t) p);
    for (unsigned p = 0; p < producers; p++)
        pbx_test_wait_ok(prod[p]);
    /* Everything is queued before these, and type-0 receives take the oldest first. */
    for (unsigned c = 0; c < consumers; c++)
        ASSERT_OK(pbx_send(q, STOP_TYPE, NULL, 0, 0));
    for (unsigned c = 0; c < consumers; c++)
        pbx_test_wait_ok(cons[c]);
    double ms = pbx_test_now_ms() - t0;

    uint64_t total = (uint64_t) producers * per_producer;
    expect_each_once(storm.seen, producers, per_producer, storm.received, consumers);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(st.sent, total + consumers);
    ASSERT_EQ(st.received, total + consumers);

    printf("%s: %llu messages, %u producer%s x %u consumers, capacity %u: %.0f ms (%.0f msg/s); "
           "per consumer",
           label, (unsigned long long) total, producers, producers == 1 ? "" : "s", consumers,
           max_msgs, ms, (double) total / (ms / 1000.0));
    for (unsigned c = 0; c < consumers; c++)
        printf(" %llu", (unsigned long long) storm.received[c]);
    printf("; found full %llu times, empty %llu times\n", (unsigned long long) storm.waits[0],
           (unsigned long long) storm.waits[1]);
    fflush(stdout);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
    munmap(storm.seen, seen_size);
    munmap(storm.received, sizeof(uint64_t) * consumers);
    munmap(storm.waits, 2 * sizeof(uint64_t));
}

TEST(four_producers_four_consumers_lose_duplicate_and_reorder_nothing)
{
    run_storm("storm", 4, 4, 200000, 64, 0);
}

TEST(wake_storm_one_pausing_producer_three_sleeping_consumers_all_arrive)
{
    run_storm("wake storm", 1, 3, 100000, 4096, 1);
}

/* ---- typed receivers ------------------------------------------------------------------------- */

/*
 * Producers send types 1..8 (chosen per message). Consumer 0 owns types 1 and 2 and takes them
 * with type -2 (lowest type up to 2); consumers 1..3 own types 2c+1 and 2c+2 and take them with
 * exact-type receives, polling both. After the producers are done, the test sends one stop
 * message per type; a consumer ends when it has seen the stop of both its types.
 */
#define TYPED_TYPES 8

struct typed {
    unsigned producers;
    uint32_t per_producer;
    uint8_t *seen;
    uint64_t *received;
};

static struct typed typed;

static unsigned typed_type_of(unsigned producer, uint32_t seq)
{
    return 1 + mix32(seq * 7u + producer * 0x1234567u) % TYPED_TYPES;
}

static int typed_producer(void *arg)
{
    unsigned p = (unsigned) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("typed", 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    for (uint32_t seq = 1; seq <= typed.per_producer; seq++) {
        unsigned type = typed_type_of(p, seq);
        size_t n = msg_build(MSG_SIZES, buf, p, type, seq);
        ASSERT_OK(pbx_send(q, type, buf, n, 0));
    }
    pbx_close(q);
    return 0;
}

/* Take one message of this consumer's types; returns its length, or -ENOMSG. */
static ssize_t typed_take(pbx_t *q, unsigned c, const int *open, uint8_t *buf, long *type,
                          unsigned *turn)
{
    long a = 2 * (long) c + 1, b = a + 1;
    if (c == 0) {
        struct timespec stall = ms_timeout(STALL_SECS * 1000L);
        return pbx_timedrecv(q, -b, buf, MSG_MAX, 0, type, &stall);
    }
    /* Both of our types without waiting, then a short wait on one of them, in turns. */
    for (int i = 0; i < 2; i++) {
        long t = i == 0 ? a : b;
        if (!open[t])
            continue;
        ssize_t n = pbx_recv(q, t, buf, MSG_MAX, PBX_NOWAIT, type);
        if (n != -ENOMSG)
            return n;
    }
    long t = (++*turn & 1) ? a : b;
    if (!open[t])
        t = t == a ? b : a;
    struct timespec brief = ms_timeout(2);
    ssize_t n = pbx_timedrecv(q, t, buf, MSG_MAX, 0, type, &brief);
    return n == -ETIMEDOUT ? -ENOMSG : n;
}

static int typed_consumer(void *arg)
{
    unsigned c = (unsigned) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("typed", 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    uint32_t last[MAX_PRODS][TYPED_TYPES + 1];
    memset(last, 0, sizeof(last));
    int open[TYPED_TYPES + 1] = {0};
    long a = 2 * (long) c + 1, b = a + 1;
    open[a] = open[b] = 1;
    uint64_t count = 0;
    unsigned turn = 0;
    double idle_since = pbx_test_now_ms();
    while (open[a] || open[b]) {
        long type = 0;
        ssize_t n = typed_take(q, c, open, buf, &type, &turn);
        if (n == -ENOMSG || n == -ETIMEDOUT) {
            if (pbx_test_now_ms() - idle_since > STALL_SECS * 1000.0)
                pbx_test_fail(__FILE__, __LINE__,
                              "consumer %u: no message of types %ld/%ld for %d s (%llu so far)", c,
                              a, b, STALL_SECS, (unsigned long long) count);
            continue;
        }
        ASSERT_OK(n);
        idle_since = pbx_test_now_ms();
        /* Only our own types, whatever the selection rule. */
        ASSERT_TRUE(type == a || type == b);
        ASSERT_TRUE(open[type]);
        if (n == 4 && memcmp(buf, "STOP", 4) == 0) {
            open[type] = 0;
            continue;
        }
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_LT(h.producer, typed.producers);
        ASSERT_LE(h.seq, typed.per_producer);
        ASSERT_EQ(typed_type_of(h.producer, h.seq), type);
        /* Per type and producer, in the order sent. */
        ASSERT_GT(h.seq, last[h.producer][type]);
        last[h.producer][type] = h.seq;
        __atomic_fetch_add(&typed.seen[(size_t) h.producer * (typed.per_producer + 1) + h.seq], 1,
                           __ATOMIC_RELAXED);
        count++;
    }
    typed.received[c] = count;
    pbx_close(q);
    return 0;
}

TEST(typed_consumers_get_only_their_types_exactly_once_in_order)
{
    const unsigned producers = 4, consumers = 4;
    typed.producers = producers;
    typed.per_producer = 25000;
    size_t seen_size = (size_t) producers * (typed.per_producer + 1);
    typed.seen = shared_alloc(seen_size);
    typed.received = shared_alloc(sizeof(uint64_t) * consumers);
    pbx_t *q;
    struct pbx_options o = pbx_test_options(64, 64 * MSG_MAX, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open("typed", PBX_CREATE | PBX_EXCL, &o, &q));

    double t0 = pbx_test_now_ms();
    pid_t cons[4], prod[4];
    for (unsigned c = 0; c < consumers; c++)
        cons[c] = pbx_test_fork(typed_consumer, (void *) (uintptr_t) c);
    for (unsigned p = 0; p < producers; p++)
        prod[p] = pbx_test_fork(typed_producer, (void *) (uintptr_t) p);
    for (unsigned p = 0; p < producers; p++)
        pbx_test_wait_ok(prod[p]);
    for (long t = 1; t <= TYPED_TYPES; t++)
        ASSERT_OK(pbx_send(q, t, "STOP", 4, 0));
    for (unsigned c = 0; c < consumers; c++)
        pbx_test_wait_ok(cons[c]);
    double ms = pbx_test_now_ms() - t0;

    expect_each_once(typed.seen, producers, typed.per_producer, typed.received, consumers);
    uint64_t got = (uint64_t) producers * typed.per_producer;
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    printf("typed storm: %llu messages of 8 types, 4 producers x 4 consumers: %.0f ms; per "
           "consumer %llu %llu %llu %llu\n",
           (unsigned long long) got, ms, (unsigned long long) typed.received[0],
           (unsigned long long) typed.received[1], (unsigned long long) typed.received[2],
           (unsigned long long) typed.received[3]);
    fflush(stdout);
    pbx_close(q);
    munmap(typed.seen, seen_size);
    munmap(typed.received, sizeof(uint64_t) * consumers);
}

/*
 * Two types only. One consumer takes type 1 exactly, one takes type -1 (lowest type up to 1:
 * type 1 again), and one takes "anything but type 1" (PBX_EXCEPT): between them each message
 * is delivered once, each to a consumer whose rule selects it.
 */
static int except_consumer(void *arg)
{
    int mode = (int) (uintptr_t) arg; /* 0: type 1, 1: type -1, 2: type 1 | PBX_EXCEPT */
    pbx_t *q;
    ASSERT_OK(pbx_open("except", 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    long want = mode == 2 ? 2 : 1;
    uint32_t last[MAX_PRODS] = {0};
    uint64_t count = 0;
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (;;) {
        long type = 0;
        ssize_t n = pbx_timedrecv(q, mode == 1 ? -1 : 1, buf, sizeof(buf),
                                  mode == 2 ? PBX_EXCEPT : 0, &type, &stall);
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "mode %d: no message for %d s", mode, STALL_SECS);
        ASSERT_OK(n);
        ASSERT_EQ(type, want);
        if (n == 4 && memcmp(buf, "STOP", 4) == 0)
            break;
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_LT(h.producer, typed.producers);
        ASSERT_GT(h.seq, last[h.producer]);
        last[h.producer] = h.seq;
        __atomic_fetch_add(&typed.seen[(size_t) h.producer * (typed.per_producer + 1) + h.seq], 1,
                           __ATOMIC_RELAXED);
        count++;
    }
    typed.received[mode] = count;
    pbx_close(q);
    return 0;
}

static int except_producer(void *arg)
{
    unsigned p = (unsigned) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("except", 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    for (uint32_t seq = 1; seq <= typed.per_producer; seq++) {
        unsigned type = 1 + (mix32(seq + 77u * p) & 1);
        size_t n = msg_build(MSG_SIZES, buf, p, type, seq);
        ASSERT_OK(pbx_send(q, type, buf, n, 0));
    }
    pbx_close(q);
    return 0;
}

TEST(exact_lowest_and_except_receivers_split_two_types_exactly_once)
{
    typed.producers = 2;
    typed.per_producer = 20000;
    size_t seen_size = (size_t) typed.producers * (typed.per_producer + 1);
    typed.seen = shared_alloc(seen_size);
    typed.received = shared_alloc(sizeof(uint64_t) * 3);
    pbx_t *q;
    struct pbx_options o = pbx_test_options(32, 32 * MSG_MAX, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open("except", PBX_CREATE | PBX_EXCL, &o, &q));
    pid_t cons[3], prod[2];
    for (int m = 0; m < 3; m++)
        cons[m] = pbx_test_fork(except_consumer, (void *) (uintptr_t) m);
    for (unsigned p = 0; p < typed.producers; p++)
        prod[p] = pbx_test_fork(except_producer, (void *) (uintptr_t) p);
    for (unsigned p = 0; p < typed.producers; p++)
        pbx_test_wait_ok(prod[p]);
    /* Two stops of type 1 (one each for the type-1 and type -1 consumers), one of type 2. */
    ASSERT_OK(pbx_send(q, 1, "STOP", 4, 0));
    ASSERT_OK(pbx_send(q, 1, "STOP", 4, 0));
    ASSERT_OK(pbx_send(q, 2, "STOP", 4, 0));
    for (int m = 0; m < 3; m++)
        pbx_test_wait_ok(cons[m]);
    expect_each_once(typed.seen, typed.producers, typed.per_producer, typed.received, 3);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    printf("except split: type 1 %llu, type -1 %llu, except 1 %llu\n",
           (unsigned long long) typed.received[0], (unsigned long long) typed.received[1],
           (unsigned long long) typed.received[2]);
    fflush(stdout);
    pbx_close(q);
    munmap(typed.seen, seen_size);
    munmap(typed.received, sizeof(uint64_t) * 3);
}

/* ---- removal wakes sleepers in other processes ----------------------------------------------- */

static pbx_t *shared_q; /* the mailbox a helper inherits */

static int recv_expect_eidrm(void *arg)
{
    (void) arg;
    char buf[64];
    struct timespec limit = ms_timeout(20000);
    ASSERT_ERR(pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, NULL, &limit), -EIDRM);
    /* And every later operation says so too. */
    ASSERT_ERR(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EIDRM);
    ASSERT_ERR(pbx_send(shared_q, 1, "x", 1, PBX_NOWAIT), -EIDRM);
    pbx_close(shared_q);
    return 0;
}

static int send_expect_eidrm(void *arg)
{
    (void) arg;
    struct timespec limit = ms_timeout(20000);
    ASSERT_ERR(pbx_timedsend(shared_q, 1, "blocked", 7, 0, &limit), -EIDRM);
    ASSERT_ERR(pbx_send(shared_q, 1, "x", 1, PBX_NOWAIT), -EIDRM);
    pbx_close(shared_q);
    return 0;
}

/* A helper that opens the mailbox by name itself, then blocks in a receive. */
static int open_and_recv_expect_eidrm(void *arg)
{
    const char *name = arg;
    pbx_t *q;
    ASSERT_OK(pbx_open(name, 0, NULL, &q));
    char buf[64];
    struct timespec limit = ms_timeout(20000);
    ASSERT_ERR(pbx_timedrecv(q, 5, buf, sizeof(buf), 0, NULL, &limit), -EIDRM);
    pbx_close(q);
    return 0;
}

TEST(remove_wakes_receiver_blocked_in_other_process_with_eidrm)
{
    ASSERT_OK(pbx_open("rm-recv", PBX_CREATE | PBX_EXCL, NULL, &shared_q));
    pid_t pid = pbx_test_fork(recv_expect_eidrm, NULL);
    wait_for_sleepers(shared_q, 1, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_OK(pbx_remove(shared_q));
    pbx_test_wait_ok(pid);
    ASSERT_ERR(pbx_remove(shared_q), -EIDRM);
    /* The name is free again: a new mailbox under it is a different one. */
    pbx_t *fresh;
    ASSERT_OK(pbx_open("rm-recv", PBX_CREATE | PBX_EXCL, NULL, &fresh));
    ASSERT_OK(pbx_send(fresh, 1, "new", 3, 0));
    ASSERT_ERR(pbx_recv(shared_q, 0, NULL, 0, PBX_NOWAIT | PBX_NOERROR, NULL), -EIDRM);
    pbx_close(shared_q);
    pbx_close(fresh);
}

TEST(remove_wakes_sender_blocked_on_full_mailbox_in_other_process_with_eidrm)
{
    struct pbx_options o = pbx_test_options(4, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open("rm-send", PBX_CREATE | PBX_EXCL, &o, &shared_q));
    for (int i = 0; i < 4; i++)
        ASSERT_OK(pbx_send(shared_q, 1, "fill", 4, PBX_NOWAIT));
    ASSERT_ERR(pbx_send(shared_q, 1, "full", 4, PBX_NOWAIT), -EAGAIN);
    pid_t pid = pbx_test_fork(send_expect_eidrm, NULL);
    wait_for_sleepers(shared_q, 0, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_OK(pbx_remove(shared_q));
    pbx_test_wait_ok(pid);
    pbx_close(shared_q);
}

TEST(unlink_by_name_wakes_receivers_blocked_in_other_processes_with_eidrm)
{
    pbx_t *q;
    ASSERT_OK(pbx_open("rm-unlink", PBX_CREATE | PBX_EXCL, NULL, &q));
    pid_t pids[3];
    for (int i = 0; i < 3; i++)
        pids[i] = pbx_test_fork(open_and_recv_expect_eidrm, "rm-unlink");
    wait_for_sleepers(q, 1, 3, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_OK(pbx_unlink("rm-unlink"));
    for (int i = 0; i < 3; i++)
        pbx_test_wait_ok(pids[i]);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), -EIDRM);
    pbx_t *again;
    ASSERT_ERR(pbx_open("rm-unlink", 0, NULL, &again), -ENOENT);
    pbx_close(q);
}

/* ---- signals interrupt a sleeping call ------------------------------------------------------- */

static volatile sig_atomic_t handler_ran;

static void on_usr1(int sig)
{
    (void) sig;
    handler_ran = 1;
}

/* A word in shared memory through which a helper tells the test how far it got. */
static int *step;

static void step_set(int v)
{
    __atomic_store_n(step, v, __ATOMIC_SEQ_CST);
}

static void step_wait(int v)
{
    for (int i = 0; i < 20000 && __atomic_load_n(step, __ATOMIC_SEQ_CST) < v; i++)
        pbx_test_sleep_ms(1);
    ASSERT_GE(__atomic_load_n(step, __ATOMIC_SEQ_CST), v);
}

enum intr_case { INTR_RECV_SA_RESTART, INTR_SEND_SA_RESTART, INTR_RECV_SIGNAL };

static int sleep_until_signal(void *arg)
{
    enum intr_case how = (enum intr_case)(uintptr_t) arg;
    handler_ran = 0;
    if (how == INTR_RECV_SIGNAL) {
        /* glibc's signal() installs the handler with SA_RESTART (BSD semantics). */
        ASSERT_TRUE(signal(SIGUSR1, on_usr1) != SIG_ERR);
    } else {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_usr1;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    }
    struct timespec limit = ms_timeout(5000);
    char buf[64];
    long r;
    if (how == INTR_SEND_SA_RESTART)
        r = pbx_timedsend(shared_q, 1, "blocked", 7, 0, &limit);
    else
        r = (long) pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, NULL, &limit);
    if (r != -EINTR)
        pbx_test_fail(__FILE__, __LINE__, "the blocked call returned %s, not EINTR; the handler %s",
                      pbx_test_errname((int) r), handler_ran ? "ran" : "did not run");
    step_set(1);
    /* Interrupted, not broken: the next call works. For the sender, the parent makes room. */
    if (how == INTR_SEND_SA_RESTART) {
        ASSERT_OK(pbx_timedsend(shared_q, 2, "after", 5, 0, &limit));
    } else {
        long type = 0;
        ASSERT_EQ(pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, &type, &limit), 5);
        ASSERT_EQ(type, 2);
        ASSERT_MEM_EQ(buf, "after", 5);
    }
    return 0;
}

static void run_intr(enum intr_case how, const char *name)
{
    step = shared_alloc(sizeof(*step));
    struct pbx_options o = pbx_test_options(2, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &shared_q));
    int sender = how == INTR_SEND_SA_RESTART;
    if (sender) {
        ASSERT_OK(pbx_send(shared_q, 1, "fill", 4, 0));
        ASSERT_OK(pbx_send(shared_q, 1, "fill", 4, 0));
    }
    pid_t pid = pbx_test_fork(sleep_until_signal, (void *) (uintptr_t) how);
    wait_for_sleepers(shared_q, !sender, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_EQ(kill(pid, SIGUSR1), 0);
    /* Only once the interrupted call has returned do we give it what it waited for, so that
     * what ends the wait can only be the signal. */
    step_wait(1);
    char buf[64];
    long type = 0;
    if (sender) {
        ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 4);
        pbx_test_wait_ok(pid);
        ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 4);
        ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 5);
        ASSERT_EQ(type, 2);
        ASSERT_MEM_EQ(buf, "after", 5);
    } else {
        ASSERT_OK(pbx_send(shared_q, 2, "after", 5, 0));
        pbx_test_wait_ok(pid);
    }
    ASSERT_ERR(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(shared_q, &st));
    ASSERT_EQ(st.msgs, 0);
    pbx_close(shared_q);
    munmap(step, sizeof(*step));
}

TEST(sigaction_sa_restart_handler_interrupts_blocked_recv_with_eintr)
{
    run_intr(INTR_RECV_SA_RESTART, "intr-recv");
}

TEST(sigaction_sa_restart_handler_interrupts_blocked_send_with_eintr)
{
    run_intr(INTR_SEND_SA_RESTART, "intr-send");
}

TEST(signal_installed_handler_interrupts_blocked_recv_with_eintr)
{
    run_intr(INTR_RECV_SIGNAL, "intr-signal");
}

/*
 * A signal may come at any instant of a blocking call: just as it registers and goes to sleep
 * (while it spins or re-checks, with signals held back), around 100 ms into its sleep, or at a
 * random instant. Whenever the handler runs before a message comes, the call must return
 * -EINTR (as msgrcv(2) does) rather than go on waiting. Thirty signals, at those three kinds of
 * instant.
 *
 * The one documented exception (docs/api.md, "Timeouts and signals") is a handler that runs in
 * the microseconds in which the sleep is ending for another reason: a wake-up for another
 * waiter, or the end of a slice — every 1 s here, since nothing is in flight. Nothing else
 * wakes this receiver and every signal lands within its first 250 ms, so no round may hit it.
 */
#define ANY_INSTANT_ROUNDS 30

struct intr_round {
    long result;
    int handler_ran;
    double waited_ms;
};

static struct intr_round *intr_rounds;

/* The scheduler state of a process ('R', 'S', ...) from /proc/PID/stat; '?' if unreadable. */
static char process_state(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = 0;
    const char *close = strrchr(line, ')'); /* the command name may hold spaces or ')' */
    return close && close[1] == ' ' ? close[2] : '?';
}

static int block_again_and_again(void *arg)
{
    (void) arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    char buf[64];
    for (int i = 0; i < ANY_INSTANT_ROUNDS; i++) {
        handler_ran = 0;
        struct timespec limit = ms_timeout(1000);
        step_set(2 * i + 1);
        double t0 = pbx_test_now_ms();
        intr_rounds[i].result =
            (long) pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, NULL, &limit);
        intr_rounds[i].waited_ms = pbx_test_now_ms() - t0;
        intr_rounds[i].handler_ran = handler_ran;
        step_set(2 * i + 2);
    }
    return 0;
}

TEST(signal_at_any_instant_of_a_blocking_recv_interrupts_it)
{
    step = shared_alloc(sizeof(*step));
    intr_rounds = shared_alloc(sizeof(*intr_rounds) * ANY_INSTANT_ROUNDS);
    ASSERT_OK(pbx_open("intr-any", PBX_CREATE | PBX_EXCL, NULL, &shared_q));
    pid_t pid = pbx_test_fork(block_again_and_again, NULL);
    uint32_t rng = (uint32_t) getpid();
    for (int i = 0; i < ANY_INSTANT_ROUNDS; i++) {
        step_wait(2 * i + 1);
        /* Registered as a sleeper and asleep in the kernel (state S). A handler that runs
         * before the first sleep is like one that ran before the call (SIGNALS in
         * src/os/os.h); from the first sleep on, every signal must interrupt. */
        for (int spins = 0;; spins++) {
            struct pbx_stat st;
            ASSERT_OK(pbx_stat(shared_q, &st));
            if (st.recv_waiters >= 1 && process_state(pid) == 'S')
                break;
            ASSERT_LT(spins, 1000000);
        }
        double registered = pbx_test_now_ms();
        rng = mix32(rng + 1);
        if (i % 3 == 1) {
            /* Around 100 ms into the sleep: from 10 us before to 50 us after, a different
             * offset each time; the last stretch busy-waits, since a sleep is not that
             * precise. (100 ms is when a sleeper wakes to look after dead peers while slots
             * are in flight; with nothing in flight, it must sleep right through.) */
            double at = registered + 100.0 + ((i / 3) * 6 - 10) / 1000.0;
            pbx_test_sleep_ms(98);
            while (pbx_test_now_ms() < at)
                ;
        } else if (i % 3 == 2) {
            pbx_test_sleep_ms((long) (rng % 250));
        }
        /* else: at once */
        ASSERT_EQ(kill(pid, SIGUSR1), 0);
        step_wait(2 * i + 2);
    }
    pbx_test_wait_ok(pid);
    int swallowed = 0;
    for (int i = 0; i < ANY_INSTANT_ROUNDS; i++) {
        struct intr_round *r = &intr_rounds[i];
        if (r->result != -EINTR) {
            swallowed++;
            fprintf(stderr, "round %d (signal %s): returned %s after %.0f ms; the handler %s\n", i,
                    i % 3 == 0   ? "at once"
                    : i % 3 == 1 ? "around 100 ms"
                                 : "at random",
                    pbx_test_errname((int) r->result), r->waited_ms,
                    r->handler_ran ? "ran" : "did not run");
        }
    }
    printf("signal at any instant: %d of %d signals did not interrupt the blocked receive\n",
           swallowed, ANY_INSTANT_ROUNDS);
    fflush(stdout);
    ASSERT_EQ(swallowed, 0);
    pbx_close(shared_q);
    munmap(intr_rounds, sizeof(*intr_rounds) * ANY_INSTANT_ROUNDS);
    munmap(step, sizeof(*step));
}

/* ---- wake-ups -------------------------------------------------------------------------------- */

static pbx_t *ping_q, *pong_q;

#define PING_ROUNDS 20000

static int ponger(void *arg)
{
    (void) arg;
    static uint8_t buf[MSG_MAX];
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (uint32_t i = 1; i <= PING_ROUNDS; i++) {
        long type = 0;
        ssize_t n = pbx_timedrecv(ping_q, 0, buf, sizeof(buf), 0, &type, &stall);
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "ping %u never arrived", i);
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_EQ(h.producer, 0);
        ASSERT_EQ(h.seq, i);
        n = (ssize_t) msg_build(MSG_SIZES, buf, 1, 2, i);
        ASSERT_OK(pbx_send(pong_q, 2, buf, (size_t) n, 0));
    }
    return 0;
}

TEST(ping_pong_between_two_processes_completes_every_round_trip_in_order)
{
    struct pbx_options o = pbx_test_options(4, 4 * MSG_MAX, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open_private(&o, &ping_q));
    ASSERT_OK(pbx_open("pong", PBX_CREATE | PBX_EXCL, &o, &pong_q));
    pid_t pid = pbx_test_fork(ponger, NULL);
    static uint8_t buf[MSG_MAX];
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    double t0 = pbx_test_now_ms(), worst = 0;
    unsigned slow = 0;
    for (uint32_t i = 1; i <= PING_ROUNDS; i++) {
        double r0 = pbx_test_now_ms();
        size_t len = msg_build(MSG_SIZES, buf, 0, 1, i);
        ASSERT_OK(pbx_send(ping_q, 1, buf, len, 0));
        long type = 0;
        ssize_t n = pbx_timedrecv(pong_q, 0, buf, sizeof(buf), 0, &type, &stall);
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "pong %u never arrived", i);
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_EQ(h.producer, 1);
        ASSERT_EQ(h.seq, i);
        double rt = pbx_test_now_ms() - r0;
        worst = rt > worst ? rt : worst;
        slow += rt > 50.0;
    }
    pbx_test_wait_ok(pid);
    double ms = pbx_test_now_ms() - t0;
    /* Figures only: a lost wake-up would be covered by the sleepers' periodic re-check, so a
     * round trip near 100 ms hints at one; speed itself is not asserted. */
    printf("ping-pong: %d round trips in %.0f ms (%.1f us each); slowest %.1f ms; %u over "
           "50 ms\n",
           PING_ROUNDS, ms, ms * 1000.0 / PING_ROUNDS, worst, slow);
    fflush(stdout);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(ping_q, &st));
    ASSERT_EQ(st.sent, PING_ROUNDS);
    ASSERT_EQ(st.received, PING_ROUNDS);
    ASSERT_OK(pbx_stat(pong_q, &st));
    ASSERT_EQ(st.msgs, 0);
    pbx_close(ping_q);
    pbx_close(pong_q);
}

/* Receivers asleep on different types in different processes: each wakes for its own. */
static int recv_own_type(void *arg)
{
    long t = (long) (uintptr_t) arg;
    char buf[16];
    long type = 0;
    struct timespec limit = ms_timeout(20000);
    ASSERT_EQ(pbx_timedrecv(shared_q, t, buf, sizeof(buf), 0, &type, &limit), 8);
    ASSERT_EQ(type, t);
    long v;
    memcpy(&v, buf, sizeof(v));
    ASSERT_EQ(v, t * 1000);
    return 0;
}

TEST(receivers_blocked_on_different_types_each_wake_for_their_own)
{
    ASSERT_OK(pbx_open("types-wake", PBX_CREATE | PBX_EXCL, NULL, &shared_q));
    pid_t pids[4];
    for (long t = 1; t <= 4; t++)
        pids[t - 1] = pbx_test_fork(recv_own_type, (void *) (uintptr_t) t);
    wait_for_sleepers(shared_q, 1, 4, ASLEEP_SECS);
    for (long t = 4; t >= 1; t--) {
        long v = t * 1000;
        ASSERT_OK(pbx_send(shared_q, t, &v, sizeof(v), 0));
        pbx_test_sleep_ms(20);
    }
    for (int i = 0; i < 4; i++)
        pbx_test_wait_ok(pids[i]);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(shared_q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.received, 4);
    pbx_close(shared_q);
}

/* ---- timeouts -------------------------------------------------------------------------------- */

static int timed_recv_times_out_then_receives(void *arg)
{
    (void) arg;
    char buf[64];
    struct timespec short_wait = ms_timeout(200);
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, NULL, &short_wait), -ETIMEDOUT);
    /* Not before the timeout (both sides use CLOCK_MONOTONIC). */
    ASSERT_GE(pbx_test_now_ms() - t0, 200.0 - 0.001);
    step_set(1);
    struct timespec long_wait = ms_timeout(20000);
    long type = 0;
    ASSERT_EQ(pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, &type, &long_wait), 7);
    ASSERT_EQ(type, 1);
    ASSERT_MEM_EQ(buf, "in time", 7);
    return 0;
}

TEST(timed_recv_in_other_process_times_out_and_gets_a_message_sent_in_time)
{
    step = shared_alloc(sizeof(*step));
    ASSERT_OK(pbx_open("timed-recv", PBX_CREATE | PBX_EXCL, NULL, &shared_q));
    pid_t pid = pbx_test_fork(timed_recv_times_out_then_receives, NULL);
    step_wait(1);
    wait_for_sleepers(shared_q, 1, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    ASSERT_OK(pbx_send(shared_q, 1, "in time", 7, 0));
    pbx_test_wait_ok(pid);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(shared_q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.received, 1);
    pbx_close(shared_q);
    munmap(step, sizeof(*step));
}

static int timed_send_times_out_then_sends(void *arg)
{
    (void) arg;
    struct timespec short_wait = ms_timeout(200);
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedsend(shared_q, 3, "late", 4, 0, &short_wait), -ETIMEDOUT);
    ASSERT_GE(pbx_test_now_ms() - t0, 200.0 - 0.001);
    step_set(1);
    struct timespec long_wait = ms_timeout(20000);
    ASSERT_OK(pbx_timedsend(shared_q, 3, "in time", 7, 0, &long_wait));
    return 0;
}

TEST(timed_send_in_other_process_times_out_on_full_mailbox_and_sends_when_room_comes)
{
    step = shared_alloc(sizeof(*step));
    struct pbx_options o = pbx_test_options(1, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open("timed-send", PBX_CREATE | PBX_EXCL, &o, &shared_q));
    ASSERT_OK(pbx_send(shared_q, 1, "fill", 4, 0));
    pid_t pid = pbx_test_fork(timed_send_times_out_then_sends, NULL);
    step_wait(1);
    wait_for_sleepers(shared_q, 0, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(100);
    char buf[64];
    long type = 0;
    ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 4);
    ASSERT_EQ(type, 1);
    pbx_test_wait_ok(pid);
    ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 7);
    ASSERT_EQ(type, 3);
    ASSERT_MEM_EQ(buf, "in time", 7);
    ASSERT_ERR(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_close(shared_q);
    munmap(step, sizeof(*step));
}

static int timed_recv_of_absent_type(void *arg)
{
    (void) arg;
    char buf[64];
    struct timespec wait = ms_timeout(300);
    step_set(1);
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedrecv(shared_q, 5, buf, sizeof(buf), 0, NULL, &wait), -ETIMEDOUT);
    ASSERT_GE(pbx_test_now_ms() - t0, 300.0 - 0.001);
    step_set(2);
    return 0;
}

/* Wake-ups for messages of other types re-check and sleep again, against the same deadline:
 * the wait neither ends early nor takes what it did not ask for. */
TEST(timed_recv_of_one_type_times_out_while_other_types_keep_arriving)
{
    step = shared_alloc(sizeof(*step));
    ASSERT_OK(pbx_open("timed-other", PBX_CREATE | PBX_EXCL, NULL, &shared_q));
    pid_t pid = pbx_test_fork(timed_recv_of_absent_type, NULL);
    step_wait(1);
    int sent = 0;
    while (__atomic_load_n(step, __ATOMIC_SEQ_CST) < 2 && sent < 2000) {
        long v = sent;
        ASSERT_OK(pbx_send(shared_q, 1 + sent % 4, &v, sizeof(v), 0));
        sent++;
        pbx_test_sleep_ms(2);
    }
    pbx_test_wait_ok(pid);
    char buf[64];
    for (int i = 0; i < sent; i++) {
        long v, type = 0;
        ASSERT_EQ(pbx_recv(shared_q, 0, &v, sizeof(v), PBX_NOWAIT, &type), sizeof(v));
        ASSERT_EQ(v, i);
        ASSERT_EQ(type, 1 + i % 4);
    }
    ASSERT_ERR(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    printf("timed recv of an absent type: %d messages of other types arrived meanwhile\n", sent);
    fflush(stdout);
    pbx_close(shared_q);
    munmap(step, sizeof(*step));
}

/* ---- overflow policies under concurrency ----------------------------------------------------- */

/*
 * Producers send into a small mailbox that drops instead of blocking; consumers take type 0.
 * Whatever the interleaving, every message is either received once or counted as dropped, and
 * the drops the senders were told about add up to pbx_stat()'s count.
 */
struct overflow {
    enum pbx_overflow policy;
    unsigned producers, consumers;
    uint32_t per_producer;
    uint8_t *seen;     /* times each (producer, seq) was received */
    uint8_t *refused;  /* DROP_NEWEST: sends that returned -ENOBUFS */
    uint64_t *dropped; /* per producer: the drops its sends reported */
    uint64_t *received;
};

static struct overflow ov;

static int overflow_producer(void *arg)
{
    unsigned p = (unsigned) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("overflow", 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    uint64_t dropped = 0;
    uint32_t rng = p + 7;
    for (uint32_t seq = 1; seq <= ov.per_producer; seq++) {
        size_t n = msg_build(MSG_SIZES, buf, p, 1 + p, seq);
        int r = pbx_send(q, 1 + p, buf, n, 0);
        if (ov.policy == PBX_DROP_NEWEST && r == -ENOBUFS) {
            ov.refused[(size_t) p * (ov.per_producer + 1) + seq] = 1;
            dropped++;
        } else {
            ASSERT_OK(r);
            ASSERT_TRUE(r == 0 || ov.policy == PBX_DROP_OLDEST);
            dropped += (uint64_t) r;
        }
        random_pause(&rng);
    }
    ov.dropped[p] = dropped;
    pbx_close(q);
    return 0;
}

static int overflow_consumer(void *arg)
{
    unsigned c = (unsigned) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("overflow", 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    uint32_t last[MAX_PRODS] = {0};
    uint64_t count = 0;
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (;;) {
        long type = 0;
        ssize_t n = pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &type, &stall);
        if (n == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "consumer %u: no message for %d s", c, STALL_SECS);
        ASSERT_OK(n);
        if (type == STOP_TYPE)
            break;
        struct msg_head h = msg_verify(MSG_SIZES, buf, n, type);
        ASSERT_LT(h.producer, ov.producers);
        ASSERT_LE(h.seq, ov.per_producer);
        ASSERT_GT(h.seq, last[h.producer]);
        last[h.producer] = h.seq;
        __atomic_fetch_add(&ov.seen[(size_t) h.producer * (ov.per_producer + 1) + h.seq], 1,
                           __ATOMIC_RELAXED);
        count++;
        if ((count & 15) == 0)
            pbx_test_sleep_ms(0); /* fall behind now and then, so that the mailbox overflows */
    }
    ov.received[c] = count;
    pbx_close(q);
    return 0;
}

static void run_overflow(enum pbx_overflow policy, const char *label)
{
    ov.policy = policy;
    ov.producers = 3;
    ov.consumers = 2;
    ov.per_producer = 30000;
    size_t table = (size_t) ov.producers * (ov.per_producer + 1);
    ov.seen = shared_alloc(table);
    ov.refused = shared_alloc(table);
    ov.dropped = shared_alloc(sizeof(uint64_t) * ov.producers);
    ov.received = shared_alloc(sizeof(uint64_t) * ov.consumers);
    pbx_t *q;
    struct pbx_options o = pbx_test_options(16, 16 * 1024, MSG_MAX, policy);
    ASSERT_OK(pbx_open("overflow", PBX_CREATE | PBX_EXCL, &o, &q));
    pid_t prod[3], cons[2];
    for (unsigned c = 0; c < ov.consumers; c++)
        cons[c] = pbx_test_fork(overflow_consumer, (void *) (uintptr_t) c);
    for (unsigned p = 0; p < ov.producers; p++)
        prod[p] = pbx_test_fork(overflow_producer, (void *) (uintptr_t) p);
    for (unsigned p = 0; p < ov.producers; p++)
        pbx_test_wait_ok(prod[p]);
    /* The stops must not be dropped themselves: under DROP_OLDEST they push out older data
     * (counted), under DROP_NEWEST we retry until the consumers make room. */
    uint64_t stop_drops = 0, stop_refusals = 0;
    for (unsigned c = 0; c < ov.consumers; c++) {
        int r;
        while ((r = pbx_send(q, STOP_TYPE, NULL, 0, 0)) == -ENOBUFS) {
            stop_refusals++; /* a refused send is a drop too, and is counted as one */
            ASSERT_LT(stop_refusals, 20000);
            pbx_test_sleep_ms(1);
        }
        ASSERT_OK(r);
        stop_drops += (uint64_t) r;
    }
    for (unsigned c = 0; c < ov.consumers; c++)
        pbx_test_wait_ok(cons[c]);

    uint64_t total = (uint64_t) ov.producers * ov.per_producer, received = 0, dropped = 0;
    for (unsigned c = 0; c < ov.consumers; c++)
        received += ov.received[c];
    for (unsigned p = 0; p < ov.producers; p++)
        dropped += ov.dropped[p];
    uint64_t missing = 0;
    for (size_t i = 0; i < table; i++) {
        if (i % (ov.per_producer + 1) == 0)
            continue;
        if (ov.seen[i] > 1)
            pbx_test_fail(__FILE__, __LINE__, "message %zu received %u times", i, ov.seen[i]);
        if (ov.refused[i] && ov.seen[i])
            pbx_test_fail(__FILE__, __LINE__, "message %zu was refused (-ENOBUFS) but received", i);
        missing += ov.seen[i] == 0;
    }
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(received + missing, total);
    /* Each message not received was dropped, and the senders were told about each drop. */
    ASSERT_EQ(st.dropped, missing + stop_refusals);
    ASSERT_EQ(dropped + stop_drops + stop_refusals, st.dropped);
    ASSERT_EQ(st.received, received + ov.consumers);
    printf("%s: %llu messages, 3 producers x 2 consumers, capacity 16: %llu received, %llu "
           "dropped\n",
           label, (unsigned long long) total, (unsigned long long) received,
           (unsigned long long) st.dropped);
    fflush(stdout);
    pbx_close(q);
    munmap(ov.seen, table);
    munmap(ov.refused, table);
    munmap(ov.dropped, sizeof(uint64_t) * ov.producers);
    munmap(ov.received, sizeof(uint64_t) * ov.consumers);
}

TEST(drop_oldest_under_concurrent_senders_and_receivers_accounts_for_every_message)
{
    run_overflow(PBX_DROP_OLDEST, "drop oldest");
}

TEST(drop_newest_under_concurrent_senders_and_receivers_accounts_for_every_message)
{
    run_overflow(PBX_DROP_NEWEST, "drop newest");
}
