/*
 * test_storm.c — the kill storm: 4 producers and 4 consumers on one mailbox, SIGKILLed at random
 * instants and replaced, KILLS times (PBX_STORM_KILLS: 100 in make check, 1 000 in make
 * torture), then the books are balanced.
 *
 * Every process that is started gets an instance number of its own, so a replacement never
 * shares books with the process it replaces. A producer instance sends sequence numbers 1, 2, ...
 * and stores "returned up to N" in MAP_SHARED memory right after each pbx_send() returns; a
 * consumer counts each message in a shared table right after pbx_recv() returns. A kill can
 * land between a call's return and that store, and the contract allows for it exactly:
 *   - producer instance p: every seq <= returned[p] is received exactly once; seq returned[p]+1
 *     (cut short, or returned but not yet stored) at most once; nothing above it;
 *   - messages never received ("lost"): at most one per killed consumer (it held it after its
 *     receive returned, before counting it); nothing is ever received twice.
 * The test prints the figures: kills, messages, lost, duplicated.
 *
 * Half the producers (odd instances) send through zero-copy loans (pbx_loan, write in place,
 * pbx_commit) and half the consumers (odd slots) receive through them (pbx_recv_loan, read in
 * place, pbx_return): a kill while a loan is held must lose nothing and duplicate nothing, the
 * same contract (a receive loan counts once pbx_return() has returned, as a receive does).
 *
 * Also here: a process that dies while others are blocked does not leave them blocked.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define NAME          "storm"
#define PRODUCERS     4
#define CONSUMERS     4
#define MAX_INSTANCES 1200   /* producer instances: 4 + one per producer kill */
#define MAX_SEQ       16383u /* per instance; a producer that gets there idles */
#define MSG_MAX       3000
#define STALL_MS      20000

struct storm {
    uint32_t returned[MAX_INSTANCES];
    uint32_t stop;  /* producers: stop sending */
    uint32_t drain; /* consumers: stop once nothing comes */
    uint8_t seen[MAX_INSTANCES][MAX_SEQ + 2];
};

static struct storm *st;

/* A storm message: instance, seq, length, then a pattern derived from them. */
struct head {
    uint32_t instance, seq, len, check;
};

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

static size_t build(uint8_t *buf, uint32_t instance, uint32_t seq)
{
    /* Three in four are small (inline in the slot); the rest are copied outside the locks. */
    uint32_t r = mix(instance * 131071u + seq);
    size_t len = r % 4 ? 16 + r % 9 : 100 + r % (MSG_MAX - 100);
    struct head h = {instance, seq, (uint32_t) len, mix(instance ^ (seq << 12))};
    memcpy(buf, &h, sizeof(h));
    for (size_t i = sizeof(h); i < len; i++)
        buf[i] = (uint8_t) (h.check >> (i % 4 * 8)) ^ (uint8_t) i;
    return len;
}

static void record(const uint8_t *buf, ssize_t n)
{
    struct head h;
    ASSERT_GE(n, (ssize_t) sizeof(h));
    memcpy(&h, buf, sizeof(h));
    ASSERT_LT(h.instance, MAX_INSTANCES);
    ASSERT_TRUE(h.seq >= 1 && h.seq <= MAX_SEQ);
    /* Count first: this is the instant the contract talks about. Then check every byte. */
    __atomic_fetch_add(&st->seen[h.instance][h.seq], 1, __ATOMIC_SEQ_CST);
    ASSERT_EQ(h.len, n);
    ASSERT_EQ(h.check, mix(h.instance ^ (h.seq << 12)));
    for (size_t i = sizeof(h); i < (size_t) n; i++)
        ASSERT_EQ(buf[i], (uint8_t) ((uint8_t) (h.check >> (i % 4 * 8)) ^ (uint8_t) i));
}

static int producer(void *arg)
{
    uint32_t inst = (uint32_t) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open(NAME, 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    for (uint32_t seq = 1; seq <= MAX_SEQ; seq++) {
        if (__atomic_load_n(&st->stop, __ATOMIC_SEQ_CST))
            break;
        size_t n = build(buf, inst, seq);
        struct timespec t = {STALL_MS / 1000, 0};
        int r;
        if (inst % 2) {
            /* A loan: the payload built in place, piece by piece. */
            struct pbx_loan l;
            ASSERT_OK(pbx_loan(q, n, 0, &l));
            ssize_t k;
            void *p;
            for (size_t off = 0; (k = pbx_loan_piece(&l, off, &p)) > 0; off += (size_t) k)
                memcpy(p, buf + off, (size_t) k);
            ASSERT_EQ(k, 0);
            r = pbx_commit(&l, 1 + seq % 3, 0);
        } else {
            r = pbx_timedsend(q, 1 + seq % 3, buf, n, 0, &t);
        }
        if (r == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "producer %u: no room for %d ms", inst, STALL_MS);
        ASSERT_OK(r);
        __atomic_store_n(&st->returned[inst], seq, __ATOMIC_SEQ_CST);
    }
    while (!__atomic_load_n(&st->stop, __ATOMIC_SEQ_CST))
        pbx_test_sleep_ms(5);
    pbx_close(q);
    return 0;
}

/* Receive through a loan, read in place into buf; returned before it counts. */
static ssize_t recv_by_loan(pbx_t *q, uint8_t *buf)
{
    struct pbx_loan l;
    ssize_t n = pbx_recv_loan(q, 0, PBX_NOWAIT, &l);
    if (n == -ENOMSG) {
        pbx_test_sleep_ms(1);
        return -ETIMEDOUT;
    }
    ASSERT_GE(n, 0);
    ASSERT_LE(n, MSG_MAX);
    ssize_t k;
    void *p;
    for (size_t off = 0; (k = pbx_loan_piece(&l, off, &p)) > 0; off += (size_t) k)
        memcpy(buf + off, p, (size_t) k);
    ASSERT_EQ(k, 0);
    ASSERT_OK(pbx_return(&l));
    return n;
}

static int consumer(void *arg)
{
    int loans = (int) (uintptr_t) arg % 2;
    pbx_t *q;
    ASSERT_OK(pbx_open(NAME, 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    double idle_since = pbx_test_now_ms();
    for (;;) {
        struct timespec t = {0, 200000000};
        ssize_t n =
            loans ? recv_by_loan(q, buf) : pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &t);
        if (n == -ETIMEDOUT) {
            if (__atomic_load_n(&st->drain, __ATOMIC_SEQ_CST))
                break;
            if (pbx_test_now_ms() - idle_since > STALL_MS)
                pbx_test_fail(__FILE__, __LINE__, "consumer: nothing for %d ms", STALL_MS);
            continue;
        }
        ASSERT_OK(n);
        record(buf, n);
        idle_since = pbx_test_now_ms();
    }
    pbx_close(q);
    return 0;
}

static unsigned long env_number(const char *name, unsigned long def)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 0) : def;
}

TEST(kill_storm_loses_at_most_one_message_per_killed_consumer_and_duplicates_none)
{
    unsigned long kills = env_number("PBX_STORM_KILLS", 100);
    if (kills > MAX_INSTANCES - PRODUCERS - 1)
        kills = MAX_INSTANCES - PRODUCERS - 1;
    st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(st != MAP_FAILED);
    struct pbx_options o = pbx_test_options(64, 64 * 1024, MSG_MAX, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));

    pid_t prod[PRODUCERS], cons[CONSUMERS];
    uint32_t prod_inst[PRODUCERS];
    uint32_t next_inst = 0;
    for (unsigned i = 0; i < PRODUCERS; i++) {
        prod_inst[i] = next_inst++;
        prod[i] = pbx_test_fork(producer, (void *) (uintptr_t) prod_inst[i]);
    }
    for (unsigned i = 0; i < CONSUMERS; i++)
        cons[i] = pbx_test_fork(consumer, (void *) (uintptr_t) i);

    uint32_t rng = (uint32_t) env_number("PBX_STORM_SEED", 4242);
    unsigned long consumer_kills = 0, producer_kills = 0;
    for (unsigned long k = 0; k < kills; k++) {
        rng = mix(rng + 1);
        /* Mostly short gaps (a kill lands mid-call), now and then a longer one (the mailbox
         * fills or empties, so the kill lands on someone asleep). */
        long us = rng % 8 ? 200 + (long) (rng >> 8) % 3000 : 20000;
        struct timespec ts = {0, us * 1000};
        nanosleep(&ts, NULL);
        unsigned victim = (rng >> 4) % (PRODUCERS + CONSUMERS);
        if (victim < PRODUCERS) {
            ASSERT_EQ(kill(prod[victim], SIGKILL), 0);
            int status = pbx_test_wait(prod[victim]);
            ASSERT_TRUE(status == 128 + SIGKILL || status == 0);
            prod_inst[victim] = next_inst++;
            prod[victim] = pbx_test_fork(producer, (void *) (uintptr_t) prod_inst[victim]);
            producer_kills++;
        } else {
            victim -= PRODUCERS;
            ASSERT_EQ(kill(cons[victim], SIGKILL), 0);
            ASSERT_EQ(pbx_test_wait(cons[victim]), 128 + SIGKILL);
            cons[victim] = pbx_test_fork(consumer, (void *) (uintptr_t) victim);
            consumer_kills++;
        }
    }

    __atomic_store_n(&st->stop, 1, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < PRODUCERS; i++)
        pbx_test_wait_ok(prod[i]);
    __atomic_store_n(&st->drain, 1, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < CONSUMERS; i++)
        pbx_test_wait_ok(cons[i]);
    /* What is left (a dead reader's message comes back within ~100 ms). */
    static uint8_t buf[MSG_MAX];
    for (;;) {
        struct timespec t = {0, 500000000};
        ssize_t n = pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &t);
        if (n == -ETIMEDOUT)
            break;
        ASSERT_OK(n);
        record(buf, n);
    }

    uint64_t sent = 0, received = 0, lost = 0, dup = 0, cut_short = 0;
    for (uint32_t p = 0; p < next_inst; p++) {
        uint32_t ret = st->returned[p];
        sent += ret;
        for (uint32_t s = 1; s <= MAX_SEQ; s++) {
            uint8_t n = st->seen[p][s];
            received += n;
            if (n > 1)
                dup += n - 1u;
            if (s <= ret && n == 0)
                lost++;
            else if (s == ret + 1)
                cut_short += n;
            else if (s > ret + 1 && n)
                pbx_test_fail(__FILE__, __LINE__, "instance %u seq %u received, never sent", p, s);
        }
    }
    /* Sleepers killed asleep are struck off by the next look after dead peers (at most every
     * 100 ms); one killed in the few instructions between counting itself and marking its
     * entry stays counted (it costs a futex wake that finds nobody; see wait.c). */
    struct pbx_stat sta;
    double t0 = pbx_test_now_ms();
    do {
        pbx_test_sleep_ms(50);
        ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
        ASSERT_OK(pbx_stat(q, &sta));
    } while (sta.recv_waiters + sta.send_waiters > 0 && pbx_test_now_ms() - t0 < 1000);
    printf("kill storm: %lu kills (%lu producers, %lu consumers), %llu messages sent, %llu "
           "received, %llu lost (allowed %lu), %llu duplicated, %llu cut-short sends "
           "delivered, %llu repairs, %u + %u still counted asleep\n",
           kills, producer_kills, consumer_kills, (unsigned long long) sent,
           (unsigned long long) received, (unsigned long long) lost, consumer_kills,
           (unsigned long long) dup, (unsigned long long) cut_short,
           (unsigned long long) sta.repairs, sta.send_waiters, sta.recv_waiters);
    fflush(stdout);
    ASSERT_EQ(dup, 0);
    ASSERT_LE(lost, consumer_kills);
    ASSERT_EQ(sta.msgs, 0);
    ASSERT_EQ(sta.bytes, 0);
    /* Still a working mailbox. */
    ASSERT_OK(pbx_send(q, 3, "after", 5, PBX_NOWAIT));
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 5);
    pbx_close(q);
    munmap(st, sizeof(*st));
}

/* ---- nobody stays blocked -------------------------------------------------------------------- */

static pbx_t *bq;

static int die_at(void *arg)
{
    setenv("PBX_CRASH_AT", (const char *) arg, 1);
    if (strncmp(arg, "send", 4) == 0)
        pbx_send(bq, 7, "late", 4, 0);
    else
        pbx_recv(bq, 0, (char[8]){0}, 8, 0, NULL);
    return 3;
}

static int blocked_receiver(void *arg)
{
    (void) arg;
    char buf[8];
    long type = 0;
    struct timespec t = {5, 0};
    ssize_t n = pbx_timedrecv(bq, 0, buf, sizeof(buf), 0, &type, &t);
    return n == 4 && type == 7 ? 0 : 1;
}

static int blocked_sender(void *arg)
{
    (void) arg;
    struct timespec t = {5, 0};
    return pbx_timedsend(bq, 9, "room", 4, 0, &t) == 0 ? 0 : 1;
}

static void wait_asleep(int recv, unsigned n)
{
    double t0 = pbx_test_now_ms();
    for (;;) {
        struct pbx_stat s;
        ASSERT_OK(pbx_stat(bq, &s));
        if ((recv ? s.recv_waiters : s.send_waiters) >= n)
            return;
        ASSERT_LT(pbx_test_now_ms() - t0, 5000);
        pbx_test_sleep_ms(5);
    }
}

/* The dead sender published but never woke anyone: the sleepers find the message at their
 * next slice end, well within their 5 s. */
TEST(receivers_asleep_when_a_sender_dies_after_publishing_get_the_message)
{
    struct pbx_options o = pbx_test_options(4, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &bq));
    pid_t r1 = pbx_test_fork(blocked_receiver, NULL);
    wait_asleep(1, 1);
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(die_at, "send.published")), 128 + SIGKILL);
    pbx_test_wait_ok(r1);
    pbx_close(bq);
}

/* The dead receiver committed its free, holding the receive lock, and never woke anyone. */
TEST(senders_asleep_on_a_full_mailbox_when_a_receiver_dies_after_freeing_get_room)
{
    struct pbx_options o = pbx_test_options(2, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &bq));
    ASSERT_OK(pbx_send(bq, 1, "a", 1, 0));
    ASSERT_OK(pbx_send(bq, 1, "b", 1, 0));
    pid_t s1 = pbx_test_fork(blocked_sender, NULL);
    wait_asleep(0, 1);
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(die_at, "recv.committed")), 128 + SIGKILL);
    pbx_test_wait_ok(s1);
    char buf[8];
    ASSERT_EQ(pbx_recv(bq, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1); /* "b", then "room" */
    ASSERT_EQ(buf[0], 'b');
    pbx_close(bq);
}
