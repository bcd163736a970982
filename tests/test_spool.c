/*
 * test_spool.c — the spool transport ("spool:PATH") through the public API: the same
 * semantics as a shared-memory mailbox (sending, the selection rules, blocking, timeouts,
 * capacity and overflow, stat, remove), and that messages live in the directory, so they
 * outlive every handle and process.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "spool_util.h"

static char nbuf[4096], dbuf[4096];

static pbx_t *open_spool(const char *name, uint32_t max_msgs, uint64_t max_bytes,
                         uint32_t max_msg_size, enum pbx_overflow overflow)
{
    struct pbx_options o = pbx_test_options(max_msgs, max_bytes, max_msg_size, overflow);
    o.durability = PBX_DURABLE_NONE; /* tmpfs: flushes are free anyway */
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(spool_name(nbuf, sizeof(nbuf), name), PBX_CREATE | PBX_EXCL, &o, &q));
    return q;
}

static void send_str(pbx_t *q, long type, const char *s)
{
    ASSERT_EQ(pbx_send(q, type, s, strlen(s), PBX_NOWAIT), 0);
}

#define EXPECT_RECV(q, sel, flags, want_type, want)                                                \
    do {                                                                                           \
        char got_[256];                                                                            \
        long got_type_ = -1;                                                                       \
        memset(got_, 0, sizeof(got_));                                                             \
        ASSERT_EQ(pbx_recv((q), (sel), got_, sizeof(got_), PBX_NOWAIT | (flags), &got_type_),      \
                  (long long) strlen(want));                                                       \
        ASSERT_EQ(got_type_, (want_type));                                                         \
        ASSERT_MEM_EQ(got_, (want), strlen(want));                                                 \
    } while (0)

TEST(spool_create_send_recv_remove_roundtrip)
{
    pbx_t *q = open_spool("s", 16, 4096, 256, PBX_BLOCK);
    ASSERT_OK(pbx_send(q, 7, "hello", 5, 0));
    EXPECT_RECV(q, 0, 0, 7, "hello");
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.sent, 1);
    ASSERT_EQ(st.received, 1);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.max_msgs, 16);
    ASSERT_EQ(st.last_send_pid, getpid());
    ASSERT_EQ(st.last_recv_pid, getpid());
    ASSERT_OK(pbx_remove(q));
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), -EIDRM);
    ASSERT_ERR(pbx_recv(q, 0, NULL, 0, PBX_NOWAIT, NULL), -EIDRM);
    ASSERT_ERR(pbx_remove(q), -EIDRM);
    ASSERT_OK(pbx_close(q));
    struct stat sb;
    ASSERT_EQ(stat(spool_dir(dbuf, sizeof(dbuf), "s"), &sb), -1);
    ASSERT_EQ(count_entries(getenv("POSTBOX_DIR")), 0); /* nothing left behind */
}

TEST(spool_messages_outlive_every_handle)
{
    pbx_t *q = open_spool("keep", 16, 4096, 256, PBX_BLOCK);
    send_str(q, 1, "one");
    send_str(q, 2, "two");
    ASSERT_OK(pbx_close(q));
    ASSERT_OK(pbx_open(spool_name(nbuf, sizeof(nbuf), "keep"), 0, NULL, &q));
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.bytes, 6);
    EXPECT_RECV(q, 0, 0, 1, "one");
    EXPECT_RECV(q, 0, 0, 2, "two");
    pbx_close(q);
}

TEST(spool_open_without_create_is_enoent_and_excl_is_eexist)
{
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open(spool_name(nbuf, sizeof(nbuf), "none"), 0, NULL, &q), -ENOENT);
    q = open_spool("ex", 4, 100, 10, PBX_BLOCK);
    pbx_t *q2 = NULL;
    ASSERT_ERR(pbx_open(nbuf, PBX_CREATE | PBX_EXCL, NULL, &q2), -EEXIST);
    ASSERT_OK(pbx_open(nbuf, PBX_CREATE, NULL, &q2)); /* existing: its own limits */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q2, &st));
    ASSERT_EQ(st.max_msgs, 4);
    ASSERT_EQ(st.max_msg_size, 10);
    pbx_close(q2);
    pbx_close(q);
    ASSERT_ERR(pbx_open("spool:", PBX_CREATE, NULL, &q), -EINVAL);
}

TEST(spool_selection_rules_match_msgrcv)
{
    pbx_t *q = open_spool("sel", 64, 4096, 256, PBX_BLOCK);
    send_str(q, 5, "a5");
    send_str(q, 3, "b3");
    send_str(q, 5, "c5");
    send_str(q, 1, "d1");
    send_str(q, 3, "e3");
    EXPECT_RECV(q, 3, 0, 3, "b3");          /* oldest of type 3 */
    EXPECT_RECV(q, 5, PBX_EXCEPT, 1, "d1"); /* oldest not 5 ... */
    EXPECT_RECV(q, -4, 0, 3, "e3");         /* lowest type <= 4 */
    char b[8];
    ASSERT_ERR(pbx_recv(q, -4, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, 9, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    EXPECT_RECV(q, 0, PBX_PEEK, 5, "a5");
    ASSERT_ERR(pbx_recv(q, 0, b, 1, PBX_NOWAIT, NULL), -E2BIG); /* stays queued */
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, b, 1, PBX_NOWAIT | PBX_NOERROR, &t), 1);
    ASSERT_EQ(b[0], 'a');
    ASSERT_EQ(t, 5);
    EXPECT_RECV(q, 0, 0, 5, "c5");
    ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_close(q);
}

TEST(spool_zero_length_and_max_size_messages_roundtrip)
{
    pbx_t *q = open_spool("sizes", 8, 1 << 20, 65536, PBX_BLOCK);
    static unsigned char out[65536], in[65536];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (unsigned char) (i * 31 + 1);
    ASSERT_OK(pbx_send(q, 1, NULL, 0, 0));
    ASSERT_OK(pbx_send(q, 2, out, sizeof(out), 0));
    ASSERT_ERR(pbx_send(q, 2, out, sizeof(out) + 1, 0), -EMSGSIZE);
    ASSERT_EQ(pbx_recv(q, 0, in, sizeof(in), PBX_NOWAIT, NULL), 0);
    ASSERT_EQ(pbx_recv(q, 0, in, sizeof(in), PBX_NOWAIT, NULL), (long long) sizeof(out));
    ASSERT_MEM_EQ(in, out, sizeof(out));
    pbx_close(q);
}

TEST(spool_full_with_block_policy_is_eagain_under_nowait_and_etimedout_when_timed)
{
    pbx_t *q = open_spool("full", 2, 4096, 64, PBX_BLOCK);
    send_str(q, 1, "a");
    send_str(q, 1, "b");
    ASSERT_ERR(pbx_send(q, 1, "c", 1, PBX_NOWAIT), -EAGAIN);
    struct timespec t = {0, 50 * 1000 * 1000};
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedsend(q, 1, "c", 1, 0, &t), -ETIMEDOUT);
    ASSERT_GE(pbx_test_now_ms() - t0, 45);
    EXPECT_RECV(q, 0, 0, 1, "a");
    send_str(q, 1, "c");
    ASSERT_EQ(count_entries(spool_dir(dbuf, sizeof(dbuf), "full/tmp")), 0); /* no leftovers */
    pbx_close(q);
}

TEST(spool_capacity_in_bytes_counts_payload)
{
    pbx_t *q = open_spool("bytes", 100, 10, 10, PBX_BLOCK);
    ASSERT_OK(pbx_send(q, 1, "12345678", 8, PBX_NOWAIT));
    ASSERT_ERR(pbx_send(q, 1, "123", 3, PBX_NOWAIT), -EAGAIN);
    ASSERT_OK(pbx_send(q, 1, "12", 2, PBX_NOWAIT));
    pbx_close(q);
}

TEST(spool_drop_newest_discards_the_new_message_and_counts_it)
{
    pbx_t *q = open_spool("dn", 2, 4096, 64, PBX_DROP_NEWEST);
    send_str(q, 1, "a");
    send_str(q, 1, "b");
    ASSERT_ERR(pbx_send(q, 1, "c", 1, 0), -ENOBUFS);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.dropped, 1);
    ASSERT_EQ(st.msgs, 2);
    EXPECT_RECV(q, 0, 0, 1, "a");
    EXPECT_RECV(q, 0, 0, 1, "b");
    pbx_close(q);
}

TEST(spool_drop_oldest_discards_oldest_and_reports_how_many)
{
    pbx_t *q = open_spool("do", 3, 6, 6, PBX_DROP_OLDEST);
    send_str(q, 1, "aa");
    send_str(q, 2, "bb");
    send_str(q, 3, "cc");
    ASSERT_EQ(pbx_send(q, 4, "dddd", 4, 0), 2); /* needs 4 bytes: two oldest go */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.dropped, 2);
    EXPECT_RECV(q, 0, 0, 3, "cc");
    EXPECT_RECV(q, 0, 0, 4, "dddd");
    pbx_close(q);
}

static int send_later(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(nbuf, 0, NULL, &q))
        return 2;
    pbx_test_sleep_ms(100);
    int r = pbx_send(q, 9, "late", 4, 0);
    pbx_close(q);
    return r == 0 ? 0 : 3;
}

TEST(spool_blocking_recv_sleeps_until_another_process_sends)
{
    pbx_t *q = open_spool("block", 8, 4096, 64, PBX_BLOCK);
    pid_t pid = pbx_test_fork(send_later, NULL);
    char b[16];
    long t = 0;
    struct timespec to = {10, 0};
    ASSERT_EQ(pbx_timedrecv(q, 9, b, sizeof(b), 0, &t, &to), 4);
    ASSERT_EQ(t, 9);
    pbx_test_wait_ok(pid);
    pbx_close(q);
}

TEST(spool_timed_recv_on_empty_spool_times_out)
{
    pbx_t *q = open_spool("to", 8, 4096, 64, PBX_BLOCK);
    struct timespec to = {0, 80 * 1000 * 1000};
    char b[8];
    double t0 = pbx_test_now_ms();
    ASSERT_ERR(pbx_timedrecv(q, 0, b, sizeof(b), 0, NULL, &to), -ETIMEDOUT);
    double dt = pbx_test_now_ms() - t0;
    ASSERT_GE(dt, 75);
    struct timespec zero = {0, 0};
    ASSERT_ERR(pbx_timedrecv(q, 0, b, sizeof(b), 0, NULL, &zero), -ETIMEDOUT);
    pbx_close(q);
}

static int remove_later(void *arg)
{
    (void) arg;
    pbx_test_sleep_ms(100);
    return pbx_unlink(nbuf) == 0 ? 0 : 4;
}

TEST(spool_remove_wakes_blocked_receiver_with_eidrm)
{
    pbx_t *q = open_spool("rm", 8, 4096, 64, PBX_BLOCK);
    send_str(q, 1, "queued");
    char b[16];
    EXPECT_RECV(q, 0, 0, 1, "queued");
    pid_t pid = pbx_test_fork(remove_later, NULL);
    ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), 0, NULL), -EIDRM);
    pbx_test_wait_ok(pid);
    struct pbx_stat st;
    ASSERT_ERR(pbx_stat(q, &st), -EIDRM);
    pbx_close(q);
    /* The name is free again at once. */
    q = open_spool("rm", 8, 4096, 64, PBX_BLOCK);
    pbx_close(q);
    ASSERT_OK(pbx_unlink(nbuf));
    ASSERT_ERR(pbx_unlink(nbuf), -ENOENT);
}

static void on_alarm(int sig)
{
    (void) sig;
}

TEST(spool_blocked_recv_returns_eintr_when_a_handler_runs)
{
    pbx_t *q = open_spool("intr", 8, 4096, 64, PBX_BLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    char b[8];
    ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), 0, NULL), -EINTR);
    pbx_close(q);
}

TEST(spool_handles_share_the_spool_within_one_process)
{
    pbx_t *a = open_spool("two", 8, 4096, 64, PBX_BLOCK);
    pbx_t *b;
    ASSERT_OK(pbx_open(nbuf, 0, NULL, &b));
    send_str(a, 1, "x");
    EXPECT_RECV(b, 0, 0, 1, "x");
    char c[8];
    ASSERT_ERR(pbx_recv(a, 0, c, sizeof(c), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_close(a);
    pbx_close(b);
}

TEST(spool_mode_applies_to_the_directory_and_stat_reports_it)
{
    struct pbx_options o = pbx_test_options(8, 4096, 64, PBX_BLOCK);
    o.mode = 0640;
    pbx_t *q;
    ASSERT_OK(pbx_open(spool_name(nbuf, sizeof(nbuf), "mode"), PBX_CREATE, &o, &q));
    struct stat sb;
    ASSERT_EQ(stat(spool_dir(dbuf, sizeof(dbuf), "mode"), &sb), 0);
    ASSERT_EQ(sb.st_mode & 0777, 0750);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.mode, 0640);
    ASSERT_EQ(st.uid, getuid());
    pbx_close(q);
}

TEST(spool_unknown_durability_is_einval)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.durability = 3;
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open(spool_name(nbuf, sizeof(nbuf), "d"), PBX_CREATE, &o, &q), -EINVAL);
    o.durability = PBX_DURABLE_NONE;
    o.reserved32 = 1;
    ASSERT_ERR(pbx_open(nbuf, PBX_CREATE, &o, &q), -EINVAL);
    /* Shared-memory mailboxes accept and ignore every valid mode. */
    o.reserved32 = 0;
    ASSERT_OK(pbx_open("shm-ignores-durability", PBX_CREATE, &o, &q));
    pbx_close(q);
}

/* ---- threads sharing one handle ---------------------------------------------------------- */

#include <pthread.h>

#define THR_MSGS 4000

static pbx_t *thr_q;
static uint8_t thr_seen[THR_MSGS];

static void *thr_send(void *arg)
{
    uint32_t first = (uint32_t) (uintptr_t) arg;
    for (uint32_t id = first; id < THR_MSGS; id += 2)
        if (pbx_send(thr_q, 1, &id, sizeof(id), 0) != 0)
            return (void *) 1;
    return NULL;
}

static void *thr_recv(void *arg)
{
    (void) arg;
    for (;;) {
        uint32_t id;
        long type = 0;
        if (pbx_recv(thr_q, 0, &id, sizeof(id), 0, &type) != sizeof(id))
            return (void *) 1;
        if (type == 2)
            return NULL;
        if (id >= THR_MSGS)
            return (void *) 2;
        __atomic_fetch_add(&thr_seen[id], 1, __ATOMIC_RELAXED);
    }
}

/* Receivers asleep on the same handle: whichever thread drains the events, none misses the
 * messages it waits for, and each message goes to one of them. */
TEST_THREADS(spool_threads_sharing_a_handle_block_and_receive_every_message_once)
{
    thr_q = open_spool("threads", 64, 1 << 20, 64, PBX_BLOCK);
    pthread_t r[4], s[2];
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_create(&r[i], NULL, thr_recv, NULL), 0);
    pbx_test_sleep_ms(50); /* let them sleep first */
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&s[i], NULL, thr_send, (void *) (uintptr_t) i), 0);
    for (int i = 0; i < 2; i++) {
        void *ret;
        ASSERT_EQ(pthread_join(s[i], &ret), 0);
        ASSERT_TRUE(ret == NULL);
    }
    for (int i = 0; i < 4; i++) {
        uint32_t stop = 0;
        ASSERT_OK(pbx_send(thr_q, 2, &stop, sizeof(stop), 0));
    }
    for (int i = 0; i < 4; i++) {
        void *ret;
        ASSERT_EQ(pthread_join(r[i], &ret), 0);
        ASSERT_TRUE(ret == NULL);
    }
    for (uint32_t id = 0; id < THR_MSGS; id++)
        ASSERT_EQ(thr_seen[id], 1);
    pbx_close(thr_q);
}

/* ---- many messages: buckets and the event queue ---------------------------------------------- */

static int send_many(void *arg)
{
    uint32_t n = (uint32_t) (uintptr_t) arg;
    pbx_t *q;
    if (pbx_open(nbuf, 0, NULL, &q))
        return 2;
    for (uint32_t i = 0; i < n; i++)
        if (pbx_send(q, 1 + i % 3, &i, sizeof(i), 0) != 0)
            return 3;
    pbx_close(q);
    return 0;
}

/* More messages than the kernel queues inotify events for (16384 by default) arrive while a
 * handle is idle: it notices the overflow, scans again, and misses nothing; the messages span
 * several bucket directories, which empty ones are removed as the queue drains. */
TEST(spool_idle_handle_survives_an_event_queue_overflow_and_buckets_are_cleaned_up)
{
    const uint32_t n = 20000;
    pbx_t *q = open_spool("many", 100000, 1 << 24, 64, PBX_BLOCK);
    pbx_test_wait_ok(pbx_test_fork(send_many, (void *) (uintptr_t) n));
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, n);
    spool_dir(dbuf, sizeof(dbuf), "many/q");
    ASSERT_GE(count_entries(dbuf), 4); /* 20000 messages: 5 buckets of 4096 */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t got = 0;
        long t = 0;
        ASSERT_EQ(pbx_recv(q, 0, &got, sizeof(got), PBX_NOWAIT, &t), sizeof(got));
        ASSERT_EQ(got, i);
        ASSERT_EQ(t, 1 + i % 3);
    }
    ASSERT_LE(count_entries(dbuf), 1); /* only the newest bucket may stay */
    pbx_close(q);
    /* A new handle scans an empty spool and finds nothing. */
    ASSERT_OK(pbx_open(nbuf, 0, NULL, &q));
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    pbx_close(q);
}
