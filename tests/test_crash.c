/*
 * test_crash.c — participants killed with SIGKILL: in the middle of a storm, while asleep in a
 * call, and at random instants of a tight send/receive loop, fifty times over.
 *
 * What a crash may cost is fixed by the contract: a message whose pbx_send() returned is
 * received exactly once, except the one a killed consumer had taken but not yet recorded; a
 * message whose send was cut short is there at most once; nothing is ever received twice; and
 * the mailbox goes on working for everyone else, repaired by their next operations.
 *
 * To know which sends returned, a producer writes "returned up to seq N" into MAP_SHARED
 * memory right after each pbx_send() returns; a consumer counts each message in a shared table
 * right after pbx_recv() returns. After the kills the test drains the mailbox and compares.
 * Payloads are tiny (inline in the slot) or several KB (chunks copied outside the locks), so
 * both ways of sending and receiving are cut short.
 */
#define _GNU_SOURCE
#include "testmsg.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- test messages (testmsg.h) --------------------------------------------------------------- */

#define MSG_MAX     MSG_MAX_8K
#define MSG_SIZES   MSG_SIZES_8K
#define STALL_SECS  20
#define ASLEEP_SECS 10 /* a helper that is not asleep in postbox after this long fails */

/* ---- helpers --------------------------------------------------------------------------------- */

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void kill_and_reap(pid_t pid)
{
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
}

/* Kill pid and wait until it is dead, but leave it unreaped (a zombie). */
static void kill_leave_zombie(pid_t pid)
{
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    while (waitid(P_PID, (id_t) pid, &info, WEXITED | WNOWAIT) < 0)
        ASSERT_EQ(errno, EINTR);
    ASSERT_EQ(info.si_pid, pid);
    ASSERT_EQ(info.si_status, SIGKILL);
}

/*
 * Take every message out of q, calling take(msg) for each, until pbx_stat() says the mailbox is
 * empty. Messages held by dead participants are counted by pbx_stat() until a repair gives
 * them back or frees them, which a receiver that sleeps does within a few of its 100 ms
 * slices: allow 5 s, then fail — the mailbox says it holds messages that nobody can get.
 */
static uint64_t drain(pbx_t *q, void (*take)(const uint8_t *buf, ssize_t n, long type))
{
    static uint8_t buf[MSG_MAX];
    uint64_t n_taken = 0;
    double idle_since = pbx_test_now_ms();
    for (;;) {
        struct pbx_stat st;
        ASSERT_OK(pbx_stat(q, &st));
        if (st.msgs == 0)
            break;
        long type = 0;
        struct timespec wait = ms_timeout(300);
        ssize_t n = pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &type, &wait);
        if (n == -ETIMEDOUT) {
            if (pbx_test_now_ms() - idle_since > 5000.0) {
                ASSERT_OK(pbx_stat(q, &st));
                pbx_test_fail(__FILE__, __LINE__,
                              "mailbox says it holds %llu messages (%llu bytes) but none "
                              "could be received for 5 s",
                              (unsigned long long) st.msgs, (unsigned long long) st.bytes);
            }
            continue;
        }
        ASSERT_OK(n);
        take(buf, n, type);
        n_taken++;
        idle_since = pbx_test_now_ms();
    }
    return n_taken;
}

/* ---- the storm: producers and consumers killed mid-flight ------------------------------------ */

#define STORM_MAX_SEQ 400000u
#define STORM_ROUNDS  5

struct storm_shared {
    uint32_t returned[MAX_PRODS]; /* last seq whose pbx_send() returned */
    uint32_t stop;                /* producers: stop sending */
    uint32_t drain;               /* consumers: stop once nothing comes */
    uint8_t seen[MAX_PRODS][STORM_MAX_SEQ + 1];
};

static struct storm_shared *ss;
static pbx_t *storm_q;

static void storm_record(const uint8_t *buf, ssize_t n, long type)
{
    /* Count first — this is the instant the contract talks about — then check. */
    struct msg_head h = msg_head_of(buf, n);
    ASSERT_LT(h.producer, MAX_PRODS);
    ASSERT_LE(h.seq, STORM_MAX_SEQ);
    __atomic_fetch_add(&ss->seen[h.producer][h.seq], 1, __ATOMIC_SEQ_CST);
    msg_verify(MSG_SIZES, buf, n, type);
}

static int storm_producer(void *arg)
{
    unsigned p = (unsigned) (uintptr_t) arg;
    static uint8_t buf[MSG_MAX];
    struct timespec stall = ms_timeout(STALL_SECS * 1000L);
    for (uint32_t seq = 1; seq <= STORM_MAX_SEQ; seq++) {
        if (__atomic_load_n(&ss->stop, __ATOMIC_SEQ_CST))
            break;
        unsigned type = 1 + seq % 5;
        size_t n = msg_build(MSG_SIZES, buf, p, type, seq);
        int r = pbx_timedsend(storm_q, type, buf, n, 0, &stall);
        if (r == -ETIMEDOUT)
            pbx_test_fail(__FILE__, __LINE__, "producer %u: no room for %d s", p, STALL_SECS);
        ASSERT_OK(r);
        __atomic_store_n(&ss->returned[p], seq, __ATOMIC_SEQ_CST);
    }
    return 0;
}

static int storm_consumer(void *arg)
{
    unsigned c = (unsigned) (uintptr_t) arg;
    pbx_t *q;
    ASSERT_OK(pbx_open("crash-storm", 0, NULL, &q));
    static uint8_t buf[MSG_MAX];
    double idle_since = pbx_test_now_ms();
    for (;;) {
        long type = 0;
        struct timespec wait = ms_timeout(250);
        ssize_t n = pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &type, &wait);
        if (n == -ETIMEDOUT) {
            if (__atomic_load_n(&ss->drain, __ATOMIC_SEQ_CST))
                break;
            if (pbx_test_now_ms() - idle_since > STALL_SECS * 1000.0)
                pbx_test_fail(__FILE__, __LINE__, "consumer %u: no message for %d s", c,
                              STALL_SECS);
            continue;
        }
        ASSERT_OK(n);
        storm_record(buf, n, type);
        idle_since = pbx_test_now_ms();
    }
    pbx_close(q);
    return 0;
}

TEST(storm_with_killed_producer_and_consumer_loses_no_returned_send_and_duplicates_nothing)
{
    ss = shared_alloc(sizeof(*ss));
    struct pbx_options o = pbx_test_options(64, 128 * 1024, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open("crash-storm", PBX_CREATE | PBX_EXCL, &o, &storm_q));
    uint32_t rng = (uint32_t) getpid() * 2654435761u;
    uint64_t total_sent = 0, total_lost = 0, total_inflight = 0, total_drained = 0;

    /* Several rounds on the same mailbox: it must keep working after each repair. */
    for (int round = 0; round < STORM_ROUNDS; round++) {
        memset(ss, 0, sizeof(*ss));
        pid_t prod[3] = {0, 0, 0}, cons[3] = {0, 0, 0};
        for (unsigned i = 0; i < 2; i++) {
            prod[i] = pbx_test_fork(storm_producer, (void *) (uintptr_t) i);
            cons[i] = pbx_test_fork(storm_consumer, (void *) (uintptr_t) i);
        }
        rng = mix32(rng + 1);
        unsigned victim_p = rng & 1, victim_c = (rng >> 1) & 1, consumer_first = (rng >> 2) & 1;
        pbx_test_sleep_ms(30 + (long) ((rng >> 8) % 100));
        for (int k = 0; k < 2; k++) {
            if ((k == 0) == (consumer_first != 0)) {
                /* Left a zombie until the round ends: what it held is taken over all the same. */
                kill_leave_zombie(cons[victim_c]);
                cons[2] = pbx_test_fork(storm_consumer, (void *) (uintptr_t) 2);
            } else {
                kill_and_reap(prod[victim_p]);
                prod[2] = pbx_test_fork(storm_producer, (void *) (uintptr_t) 2);
            }
            rng = mix32(rng + 1);
            sleep_us(1000 + (long) (rng % 80000));
        }
        pbx_test_sleep_ms(100);

        __atomic_store_n(&ss->stop, 1, __ATOMIC_SEQ_CST);
        pbx_test_wait_ok(prod[1 - victim_p]);
        pbx_test_wait_ok(prod[2]);
        __atomic_store_n(&ss->drain, 1, __ATOMIC_SEQ_CST);
        pbx_test_wait_ok(cons[1 - victim_c]);
        pbx_test_wait_ok(cons[2]);
        ASSERT_EQ(pbx_test_wait(cons[victim_c]), 128 + SIGKILL);
        uint64_t drained = drain(storm_q, storm_record);

        /* Producer 0, 1 and the replacement 2; one of 0/1 was killed (victim_p). */
        uint64_t lost = 0, inflight = 0, sent = 0;
        for (unsigned p = 0; p < 3; p++) {
            uint32_t ret = ss->returned[p];
            sent += ret;
            for (uint32_t s = 1; s <= STORM_MAX_SEQ; s++) {
                uint8_t n = ss->seen[p][s];
                if (n > 1)
                    pbx_test_fail(__FILE__, __LINE__,
                                  "round %d: producer %u seq %u received %u times", round, p, s, n);
                if (s <= ret) {
                    lost += n == 0;
                } else if (s == ret + 1 && p == victim_p) {
                    inflight += n; /* cut short in pbx_send: may or may not have gone */
                } else if (n != 0) {
                    pbx_test_fail(__FILE__, __LINE__,
                                  "round %d: producer %u seq %u (never sent; returned up to %u) "
                                  "was received",
                                  round, p, s, ret);
                }
            }
        }
        /* One killed consumer: at most the message it held between pbx_recv() and counting. */
        if (lost > 1)
            pbx_test_fail(__FILE__, __LINE__,
                          "round %d: %llu messages whose send returned were "
                          "never received",
                          round, (unsigned long long) lost);
        struct pbx_stat st;
        ASSERT_OK(pbx_stat(storm_q, &st));
        ASSERT_EQ(st.msgs, 0);
        ASSERT_EQ(st.bytes, 0);
        ASSERT_EQ(st.sent, st.received);
        total_sent += sent;
        total_lost += lost;
        total_inflight += inflight;
        total_drained += drained;
    }

    /* Still a working mailbox. */
    ASSERT_OK(pbx_send(storm_q, 3, "after", 5, PBX_NOWAIT));
    char buf[16];
    long type = 0;
    ASSERT_EQ(pbx_recv(storm_q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 5);
    ASSERT_EQ(type, 3);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(storm_q, &st));
    printf("crash storm: %d rounds, %d kills, %llu sends returned, %llu lost (allowed %d), "
           "%llu cut-short sends delivered, 0 duplicated, %llu drained after, %llu repairs\n",
           STORM_ROUNDS, 2 * STORM_ROUNDS, (unsigned long long) total_sent,
           (unsigned long long) total_lost, STORM_ROUNDS, (unsigned long long) total_inflight,
           (unsigned long long) total_drained, (unsigned long long) st.repairs);
    fflush(stdout);
    pbx_close(storm_q);
    munmap(ss, sizeof(*ss));
}

/* ---- killed while asleep --------------------------------------------------------------------- */

static pbx_t *shared_q;

static int sleep_in_recv(void *arg)
{
    (void) arg;
    char buf[64];
    struct timespec limit = ms_timeout(60000);
    pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, NULL, &limit);
    return 3; /* never reached: killed first */
}

static int sleep_in_send(void *arg)
{
    (void) arg;
    struct timespec limit = ms_timeout(60000);
    pbx_timedsend(shared_q, 9, "from the dead", 13, 0, &limit);
    return 3;
}

static int recv_one(void *arg)
{
    const char *want = arg;
    char buf[64];
    long type = 0;
    struct timespec limit = ms_timeout(20000);
    ssize_t n = pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, &type, &limit);
    ASSERT_EQ(n, (long long) strlen(want));
    ASSERT_MEM_EQ(buf, want, (size_t) n);
    return 0;
}

static int send_one(void *arg)
{
    const char *what = arg;
    struct timespec limit = ms_timeout(20000);
    ASSERT_OK(pbx_timedsend(shared_q, 2, what, strlen(what), 0, &limit));
    return 0;
}

TEST(killing_a_process_blocked_in_recv_leaves_the_mailbox_working_for_others)
{
    struct pbx_options o = pbx_test_options(8, 8 * MSG_MAX, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open("crash-recv", PBX_CREATE | PBX_EXCL, &o, &shared_q));
    pid_t pid = pbx_test_fork(sleep_in_recv, NULL);
    wait_for_sleepers(shared_q, 1, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(50);
    kill_and_reap(pid);

    /* Another process blocks in its turn and gets a message sent after it. */
    pid = pbx_test_fork(recv_one, "second");
    pbx_test_sleep_ms(50);
    ASSERT_OK(pbx_send(shared_q, 1, "second", 6, 0));
    pbx_test_wait_ok(pid);

    /* Sends and receives of every size still go through, here and in another process. */
    static uint8_t buf[MSG_MAX], in[MSG_MAX];
    for (uint32_t seq = 1; seq <= 64; seq++) {
        size_t n = msg_build(MSG_SIZES, buf, 0, 1, seq);
        ASSERT_OK(pbx_send(shared_q, 1, buf, n, 0));
        long type = 0;
        ssize_t got = pbx_recv(shared_q, 0, in, sizeof(in), PBX_NOWAIT, &type);
        ASSERT_EQ(got, (long long) n);
        msg_verify(MSG_SIZES, in, got, type);
    }
    pid = pbx_test_fork(send_one, "third");
    pbx_test_wait_ok(pid);
    ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 5);
    ASSERT_MEM_EQ(buf, "third", 5);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(shared_q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.sent, st.received);
    pbx_close(shared_q);
}

TEST(killing_a_process_blocked_in_send_on_full_mailbox_leaves_it_working_without_its_message)
{
    struct pbx_options o = pbx_test_options(4, 4 * MSG_MAX, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open("crash-send", PBX_CREATE | PBX_EXCL, &o, &shared_q));
    for (int i = 0; i < 4; i++)
        ASSERT_OK(pbx_send(shared_q, 1, "fill", 4, 0));
    pid_t pid = pbx_test_fork(sleep_in_send, NULL);
    wait_for_sleepers(shared_q, 0, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(50);
    kill_and_reap(pid);

    /* Exactly the four that were queued; the dead sender's message never went in. */
    char buf[64];
    long type = 0;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 4);
        ASSERT_EQ(type, 1);
    }
    ASSERT_ERR(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);

    /* Fill it again; a new sender blocks and gets through when room is made. */
    for (int i = 0; i < 4; i++)
        ASSERT_OK(pbx_send(shared_q, 1, "fill", 4, 0));
    pid = pbx_test_fork(send_one, "late");
    pbx_test_sleep_ms(50);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pbx_recv(shared_q, 1, buf, sizeof(buf), PBX_NOWAIT, NULL), 4);
    pbx_test_wait_ok(pid);
    ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 4);
    ASSERT_EQ(type, 2);
    ASSERT_MEM_EQ(buf, "late", 4);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(shared_q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.sent, st.received);
    pbx_close(shared_q);
}

/* A dead process is not asleep: pbx_stat()'s recv_waiters ("receivers asleep waiting for a
 * message now") must stop counting it once the mailbox has been used again. */
TEST(killed_blocked_receiver_is_no_longer_counted_as_asleep)
{
    ASSERT_OK(pbx_open("crash-waiters", PBX_CREATE | PBX_EXCL, NULL, &shared_q));
    pid_t pid = pbx_test_fork(sleep_in_recv, NULL);
    wait_for_sleepers(shared_q, 1, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(50);
    kill_and_reap(pid);
    struct pbx_stat st;
    char buf[16];
    for (int i = 0; i < 20; i++) {
        ASSERT_OK(pbx_send(shared_q, 1, "x", 1, 0));
        struct timespec wait = ms_timeout(100);
        ASSERT_EQ(pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, NULL, &wait), 1);
        ASSERT_ERR(pbx_timedrecv(shared_q, 0, buf, sizeof(buf), 0, NULL, &wait), -ETIMEDOUT);
        ASSERT_OK(pbx_stat(shared_q, &st));
        if (st.recv_waiters == 0)
            break;
    }
    ASSERT_EQ(st.recv_waiters, 0);
    pbx_close(shared_q);
}

static int sleep_in_full_send(void *arg)
{
    (void) arg;
    struct timespec limit = ms_timeout(60000);
    pbx_timedsend(shared_q, 9, "x", 1, 0, &limit);
    return 3;
}

/* The same for senders: send_waiters ("senders asleep waiting for room now"). */
TEST(killed_blocked_sender_is_no_longer_counted_as_asleep)
{
    struct pbx_options o = pbx_test_options(1, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open("crash-swaiters", PBX_CREATE | PBX_EXCL, &o, &shared_q));
    ASSERT_OK(pbx_send(shared_q, 1, "x", 1, 0));
    pid_t pid = pbx_test_fork(sleep_in_full_send, NULL);
    wait_for_sleepers(shared_q, 0, 1, ASLEEP_SECS);
    pbx_test_sleep_ms(50);
    kill_and_reap(pid);
    struct pbx_stat st;
    char buf[16];
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(pbx_recv(shared_q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
        ASSERT_OK(pbx_send(shared_q, 1, "x", 1, 0));
        struct timespec wait = ms_timeout(100);
        ASSERT_ERR(pbx_timedsend(shared_q, 1, "y", 1, 0, &wait), -ETIMEDOUT);
        ASSERT_OK(pbx_stat(shared_q, &st));
        if (st.send_waiters == 0)
            break;
    }
    ASSERT_EQ(st.send_waiters, 0);
    pbx_close(shared_q);
}

/* ---- large copies cut short ------------------------------------------------------------------ */

/*
 * Messages of 256 KB to 1 MB spend most of a send or receive copying outside the locks (the
 * slot is WRITING or READING, owned by the copier). A sender and a receiver are killed at
 * random instants, twenty times: a half-written message must never be received, a half-read
 * one must be received (once) by someone else, and no returned send may go missing beyond the
 * one message per killed receiver.
 */
#define BIG_MAX     (1u << 20)
#define BIG_ROUNDS  40
#define BIG_MAX_SEQ 100000u

struct big_shared {
    uint32_t next_seq;
    uint32_t sends, recvs; /* operations returned, so the test kills in the steady state */
    uint8_t sent_ok[BIG_MAX_SEQ + 1];
    uint8_t seen[BIG_MAX_SEQ + 1];
};

static struct big_shared *bs;
static pbx_t *big_q;

static uint32_t big_size(uint32_t seq)
{
    return (256u << 10) + mix32(seq) % ((768u << 10) + 1);
}

static uint64_t big_word(uint32_t seq, size_t i)
{
    return (((uint64_t) seq << 32) | (uint64_t) i) * 0x9e3779b97f4a7c15ull;
}

static size_t big_build(uint8_t *buf, uint32_t seq)
{
    uint32_t len = big_size(seq);
    struct msg_head h = {1, 1, seq, 0};
    uint8_t *body = buf + sizeof(h);
    size_t n = len - sizeof(h);
    for (size_t i = 0; i * 8 < n; i++) {
        uint64_t w = big_word(seq, i);
        memcpy(body + i * 8, &w, n - i * 8 < 8 ? n - i * 8 : 8);
    }
    h.sum = msg_sum(&h, body, n);
    memcpy(buf, &h, sizeof(h));
    return len;
}

/* Count first (the instant the contract talks about), then check the length and the checksum
 * over every byte. */
static void big_record(const uint8_t *buf, ssize_t n, long type)
{
    struct msg_head h = msg_head_of(buf, n);
    ASSERT_EQ(h.producer, 1);
    ASSERT_LE(h.seq, BIG_MAX_SEQ);
    __atomic_fetch_add(&bs->seen[h.seq], 1, __ATOMIC_SEQ_CST);
    ASSERT_EQ(type, 1);
    ASSERT_EQ(n, big_size(h.seq));
    ASSERT_EQ(msg_sum(&h, buf + sizeof(h), (size_t) n - sizeof(h)), h.sum);
}

static int big_sender(void *arg)
{
    (void) arg;
    static uint8_t buf[BIG_MAX];
    struct timespec limit = ms_timeout(60000);
    for (;;) {
        uint32_t seq = __atomic_add_fetch(&bs->next_seq, 1, __ATOMIC_SEQ_CST);
        ASSERT_LE(seq, BIG_MAX_SEQ);
        size_t n = big_build(buf, seq);
        ASSERT_OK(pbx_timedsend(big_q, 1, buf, n, 0, &limit));
        __atomic_store_n(&bs->sent_ok[seq], 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&bs->sends, 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

static int big_receiver(void *arg)
{
    (void) arg;
    static uint8_t buf[BIG_MAX];
    struct timespec limit = ms_timeout(60000);
    for (;;) {
        long type = 0;
        ssize_t n = pbx_timedrecv(big_q, 0, buf, sizeof(buf), 0, &type, &limit);
        ASSERT_OK(n);
        big_record(buf, n, type);
        __atomic_add_fetch(&bs->recvs, 1, __ATOMIC_SEQ_CST);
    }
    return 0;
}

TEST(sigkill_during_large_copies_never_shows_a_half_written_message_nor_loses_a_returned_one)
{
    bs = shared_alloc(sizeof(*bs));
    struct pbx_options o = pbx_test_options(4, 4 * BIG_MAX, BIG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open("crash-big", PBX_CREATE | PBX_EXCL, &o, &big_q));
    uint32_t rng = (uint32_t) getpid() * 3266489917u;
    for (int round = 0; round < BIG_ROUNDS; round++) {
        uint32_t sends = bs->sends, recvs = bs->recvs;
        pid_t s = pbx_test_fork(big_sender, NULL);
        pid_t r = pbx_test_fork(big_receiver, NULL);
        for (int i = 0; i < 20000 && (__atomic_load_n(&bs->sends, __ATOMIC_SEQ_CST) == sends ||
                                      __atomic_load_n(&bs->recvs, __ATOMIC_SEQ_CST) == recvs);
             i++)
            sleep_us(500);
        rng = mix32(rng + 1);
        sleep_us((long) (rng % 3000));
        kill_and_reap((rng >> 12) & 1 ? s : r);
        sleep_us((long) ((rng >> 13) % 3000));
        kill_and_reap((rng >> 12) & 1 ? r : s);
    }
    /* The parent takes what is left: some of it was held by the dead when they died. */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(big_q, &st));
    uint64_t held = st.msgs;
    static uint8_t buf[BIG_MAX];
    double idle_since = pbx_test_now_ms();
    uint64_t drained = 0;
    for (;;) {
        ASSERT_OK(pbx_stat(big_q, &st));
        if (st.msgs == 0)
            break;
        long type = 0;
        struct timespec wait = ms_timeout(300);
        ssize_t n = pbx_timedrecv(big_q, 0, buf, sizeof(buf), 0, &type, &wait);
        if (n == -ETIMEDOUT) {
            if (pbx_test_now_ms() - idle_since > 5000.0)
                pbx_test_fail(__FILE__, __LINE__,
                              "mailbox says it holds %llu messages but none could be received "
                              "for 5 s",
                              (unsigned long long) st.msgs);
            continue;
        }
        ASSERT_OK(n);
        big_record(buf, n, type);
        drained++;
        idle_since = pbx_test_now_ms();
    }
    uint64_t sent = 0, lost = 0, cut = 0;
    for (uint32_t seq = 1; seq <= bs->next_seq; seq++) {
        uint8_t n = bs->seen[seq];
        if (n > 1)
            pbx_test_fail(__FILE__, __LINE__, "seq %u received %u times", seq, n);
        if (bs->sent_ok[seq]) {
            sent++;
            lost += n == 0;
        } else {
            cut += n;
        }
    }
    if (lost > BIG_ROUNDS)
        pbx_test_fail(__FILE__, __LINE__, "%llu returned sends lost; at most %d receivers died",
                      (unsigned long long) lost, BIG_ROUNDS);
    /* A send cut short each round at most (one sender per round). */
    ASSERT_LE(cut, BIG_ROUNDS);
    ASSERT_OK(pbx_stat(big_q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(st.sent, st.received);
    /* Still works, at full size. */
    size_t len = big_build(buf, bs->next_seq + 1);
    ASSERT_OK(pbx_send(big_q, 1, buf, len, PBX_NOWAIT));
    long type = 0;
    ssize_t n = pbx_recv(big_q, 0, buf, sizeof(buf), PBX_NOWAIT, &type);
    ASSERT_EQ(n, (long long) len);
    printf("large copies: %d rounds, %d kills, %llu sends returned, %llu lost, %llu cut-short "
           "sends delivered, 0 duplicated, %llu held at the end (%llu drained), %llu repairs\n",
           BIG_ROUNDS, 2 * BIG_ROUNDS, (unsigned long long) sent, (unsigned long long) lost,
           (unsigned long long) cut, (unsigned long long) held, (unsigned long long) drained,
           (unsigned long long) st.repairs);
    fflush(stdout);
    pbx_close(big_q);
    munmap(bs, sizeof(*bs));
}

/* ---- fifty kills at random instants ---------------------------------------------------------- */

#define LOOP_KILLS   50
#define LOOP_MAX_SEQ (1u << 22)

struct loop_shared {
    uint32_t next_seq;       /* last seq the looper took for a send (sent or not) */
    uint64_t sends_returned; /* sends that returned 0, this round */
    uint64_t recvs_returned; /* receives that returned a message, this round */
    uint8_t sent_ok[LOOP_MAX_SEQ + 1];
    uint8_t seen[LOOP_MAX_SEQ + 1];
};

static struct loop_shared *ls;
static pbx_t *loop_q;

/* Count a received message: the instant the contract talks about. Checked afterwards. */
static void loop_count(const uint8_t *buf, ssize_t n)
{
    struct msg_head h = msg_head_of(buf, n);
    ASSERT_EQ(h.producer, 0);
    ASSERT_LE(h.seq, LOOP_MAX_SEQ);
    __atomic_fetch_add(&ls->seen[h.seq], 1, __ATOMIC_SEQ_CST);
}

/* Tight loops of a few sends and a few receives, never blocking, with every kind of
 * selection, until killed. */
static int looper(void *arg)
{
    uint32_t rng = (uint32_t) (uintptr_t) arg;
    static uint8_t buf[MSG_MAX];
    for (;;) {
        rng = mix32(rng + 0x9e3779b9u);
        unsigned sends = rng & 3, recvs = (rng >> 2) & 3;
        for (unsigned i = 0; i < sends; i++) {
            uint32_t seq = __atomic_load_n(&ls->next_seq, __ATOMIC_SEQ_CST) + 1;
            if (seq > LOOP_MAX_SEQ)
                break;
            __atomic_store_n(&ls->next_seq, seq, __ATOMIC_SEQ_CST);
            unsigned type = 1 + seq % 3;
            size_t n = msg_build(MSG_SIZES, buf, 0, type, seq);
            int r = pbx_send(loop_q, type, buf, n, PBX_NOWAIT);
            if (r == -EAGAIN)
                continue;
            ASSERT_OK(r);
            __atomic_store_n(&ls->sent_ok[seq], 1, __ATOMIC_SEQ_CST);
            __atomic_add_fetch(&ls->sends_returned, 1, __ATOMIC_SEQ_CST);
        }
        for (unsigned i = 0; i < recvs; i++) {
            static const long selectors[] = {0, 0, 1, 2, 3, -2, -3};
            long sel = selectors[(rng >> (4 + 3 * i)) % 7];
            long type = 0;
            ssize_t n = pbx_recv(loop_q, sel, buf, sizeof(buf), PBX_NOWAIT, &type);
            if (n == -ENOMSG)
                continue;
            ASSERT_OK(n);
            loop_count(buf, n);
            __atomic_add_fetch(&ls->recvs_returned, 1, __ATOMIC_SEQ_CST);
            msg_verify(MSG_SIZES, buf, n, type);
        }
    }
    return 0;
}

static uint64_t probes_taken;

static void loop_drain_take(const uint8_t *buf, ssize_t n, long type)
{
    if (type == 7) {
        ASSERT_EQ(n, 5);
        ASSERT_MEM_EQ(buf, "probe", 5);
        probes_taken++;
        return;
    }
    loop_count(buf, n);
    msg_verify(MSG_SIZES, buf, n, type);
}

TEST(fifty_random_kills_during_tight_send_recv_loops_keep_the_mailbox_consistent)
{
    ls = shared_alloc(sizeof(*ls));
    struct pbx_options o = pbx_test_options(16, 16 * 4096, MSG_MAX, PBX_BLOCK);
    ASSERT_OK(pbx_open("crash-loop", PBX_CREATE | PBX_EXCL, &o, &loop_q));
    uint32_t rng = (uint32_t) getpid() * 2246822519u;
    uint64_t messages = 0, lost = 0, cut_sends = 0, cut_recvs = 0;
    uint32_t first = 1;
    struct pbx_stat before;
    ASSERT_OK(pbx_stat(loop_q, &before));

    for (int k = 0; k < LOOP_KILLS; k++) {
        ls->sends_returned = ls->recvs_returned = 0;
        rng = mix32(rng + 1);
        pid_t pid = pbx_test_fork(looper, (void *) (uintptr_t) rng);
        sleep_us((long) (rng >> 8) % 5001);
        /* Every other time the dead looper stays a zombie (dead, not yet reaped) while the
         * mailbox is repaired: its locks must be taken over all the same. */
        int zombie = k & 1;
        if (zombie)
            kill_leave_zombie(pid);
        else
            kill_and_reap(pid);

        /* Repair by use: a send (the send side) and receives (the receive side). */
        uint64_t probes = 0;
        int r = pbx_send(loop_q, 7, "probe", 5, PBX_NOWAIT);
        if (r == 0)
            probes++;
        else
            ASSERT_ERR(r, -EAGAIN);
        probes_taken = 0;
        uint64_t drained = drain(loop_q, loop_drain_take);
        if (!probes) {
            ASSERT_OK(pbx_send(loop_q, 7, "probe", 5, PBX_NOWAIT));
            probes++;
            drained += drain(loop_q, loop_drain_take);
        }
        ASSERT_EQ(probes_taken, probes);
        drained -= probes;

        struct pbx_stat st;
        ASSERT_OK(pbx_stat(loop_q, &st));
        ASSERT_EQ(st.msgs, 0);
        ASSERT_EQ(st.bytes, 0);
        ASSERT_EQ(st.dropped, 0);
        ASSERT_EQ(st.sent, st.received);
        /* The cut-short send and receive each happened or not: nothing else is unaccounted. */
        uint64_t S = ls->sends_returned, R = ls->recvs_returned;
        int64_t a = (int64_t) (st.sent - before.sent - probes) - (int64_t) S;
        int64_t b = (int64_t) (st.received - before.received - probes) - (int64_t) (R + drained);
        if (a < 0 || a > 1 || b < 0 || b > 1)
            pbx_test_fail(__FILE__, __LINE__,
                          "kill %d: %llu sends and %llu receives returned, %llu drained, but "
                          "the mailbox counted %llu sent and %llu received",
                          k, (unsigned long long) S, (unsigned long long) R,
                          (unsigned long long) drained,
                          (unsigned long long) (st.sent - before.sent - probes),
                          (unsigned long long) (st.received - before.received - probes));

        /* Message by message: sent and returned -> exactly once (but the one the looper held
         * when killed); the send cut short -> at most once; refused (-EAGAIN) -> never. */
        uint32_t last = ls->next_seq;
        uint64_t missing = 0;
        for (uint32_t s = first; s <= last; s++) {
            uint8_t n = ls->seen[s];
            if (n > 1)
                pbx_test_fail(__FILE__, __LINE__, "kill %d: seq %u received %u times", k, s, n);
            if (ls->sent_ok[s])
                missing += n == 0;
            else if (n && s != last)
                pbx_test_fail(__FILE__, __LINE__, "kill %d: seq %u was refused but received", k, s);
        }
        if (missing > (uint64_t) b)
            pbx_test_fail(__FILE__, __LINE__,
                          "kill %d: %llu returned sends never received (cut-short receives: %lld)",
                          k, (unsigned long long) missing, (long long) b);
        if (zombie)
            ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
        messages += S;
        lost += missing;
        cut_sends += (uint64_t) a;
        cut_recvs += (uint64_t) b;
        first = last + 1;
        before = st;
    }
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(loop_q, &st));
    printf("kill loop: %d kills, %llu messages sent, %llu lost, 0 duplicated; cut short: %llu "
           "sends took effect, %llu receives took effect; %llu repairs\n",
           LOOP_KILLS, (unsigned long long) messages, (unsigned long long) lost,
           (unsigned long long) cut_sends, (unsigned long long) cut_recvs,
           (unsigned long long) st.repairs);
    fflush(stdout);
    pbx_close(loop_q);
    munmap(ls, sizeof(*ls));
}
