/*
 * test_deadlines.c — calls with a limit return whatever other processes do (DEADLINES in
 * src/shm/lock.h): a PBX_NOWAIT call never waits on a lock holder that is stopped, a timed call
 * returns at its deadline, a blocking call waits and then goes through, and a holder that is
 * alive but cannot be inspected (another user's process) is never taken over, however slow.
 * The holders are helpers stopped (PBX_STOP_AT) or put to sleep (PBX_NAP_AT) inside their
 * critical sections by the test build's crash points (src/crash.h).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "shm/shm.h"
#include "testmsg.h"

#define NAME   "deadlines"
#define NOBODY 65534

/* A helper that opens the mailbox and sends ("S") or receives ("R") once with PBX_STOP_AT set
 * to the point named after the letter, so that it stops holding the lock. */
static int hold_and_stop(void *arg)
{
    const char *what = arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    setenv("PBX_STOP_AT", what + 2, 1);
    char buf[16];
    if (what[0] == 'S')
        return pbx_send(q, 5, "holder", 6, 0) == 0 ? 0 : 2;
    long type = 0;
    return pbx_recv(q, 0, buf, sizeof(buf), 0, &type) == 6 && type == 3 ? 0 : 3;
}

static pid_t stopped_holder(const char *what)
{
    pid_t p = pbx_test_fork(hold_and_stop, (void *) what);
    int st = 0;
    ASSERT_EQ(waitpid(p, &st, WUNTRACED), p);
    ASSERT_TRUE(WIFSTOPPED(st));
    return p;
}

static pbx_t *open_box(void)
{
    struct pbx_options o = pbx_test_options(16, 1 << 16, 64, PBX_BLOCK);
    o.mode = 0666;
    pbx_t *q;
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));
    return q;
}

TEST(nowait_and_timed_sends_return_while_the_send_lock_holder_is_stopped)
{
    pbx_t *q = open_box();
    pid_t holder = stopped_holder("S:send.logged");
    struct timespec t = ms_timeout(200);
    ASSERT_ERR(pbx_send(q, 7, "nowait", 6, PBX_NOWAIT), -EAGAIN);
    ASSERT_ERR(pbx_timedsend(q, 7, "timed", 5, 0, &t), -ETIMEDOUT);
    ASSERT_ERR(pbx_send(q, 7, "sync", 4, PBX_NOWAIT | PBX_SYNC), -EAGAIN);
    ASSERT_EQ(kill(holder, SIGCONT), 0);
    pbx_test_wait_ok(holder);
    /* Nothing of the calls that gave up was sent; the holder's message was. */
    char buf[16];
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 6);
    ASSERT_EQ(type, 5);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(nowait_and_timed_receives_and_claims_return_while_the_receive_lock_holder_is_stopped)
{
    pbx_t *q = open_box();
    ASSERT_OK(pbx_send(q, 3, "first!", 6, 0));
    ASSERT_OK(pbx_send(q, 4, "second", 6, 0));
    pid_t holder = stopped_holder("R:recv.logged");
    char buf[16];
    uint64_t claim;
    struct timespec t = ms_timeout(200);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EAGAIN);
    ASSERT_ERR(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &t), -ETIMEDOUT);
    ASSERT_ERR(pbx_claim(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL, &claim), -EAGAIN);
    /* Sending needs only the send lock: it goes on. */
    ASSERT_OK(pbx_send(q, 6, "third!", 6, PBX_NOWAIT));
    ASSERT_EQ(kill(holder, SIGCONT), 0);
    pbx_test_wait_ok(holder);
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 6);
    ASSERT_EQ(type, 4);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 6);
    ASSERT_EQ(type, 6);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

static int *returned_flag;

static int blocking_sender(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    int r = pbx_send(q, 8, "blocked", 7, 0);
    __atomic_store_n(returned_flag, 1, __ATOMIC_SEQ_CST);
    return r == 0 ? 0 : 2;
}

TEST(a_blocking_send_waits_for_a_stopped_holder_and_goes_through_once_it_is_continued)
{
    returned_flag = shared_alloc(sizeof(int));
    pbx_t *q = open_box();
    pid_t holder = stopped_holder("S:send.logged");
    pid_t sender = pbx_test_fork(blocking_sender, NULL);
    /* It must not get in beside the holder: the 10 ms checks of the holder find it alive,
     * slice after slice. */
    pbx_test_sleep_ms(300);
    ASSERT_EQ(__atomic_load_n(returned_flag, __ATOMIC_SEQ_CST), 0);
    ASSERT_EQ(kill(holder, SIGCONT), 0);
    pbx_test_wait_ok(holder);
    pbx_test_wait_ok(sender);
    char buf[16];
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 6);
    ASSERT_EQ(type, 5);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 7);
    ASSERT_EQ(type, 8);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

/* ---- a slow holder of another user -------------------------------------------------------- */

struct slow {
    int holder_left;  /* the slow holder's send returned */
    int waiter_in;    /* the other user's send returned */
    int left_when_in; /* 1: the holder's message was queued when the waiter's send returned */
};
static struct slow *sl;

static int become(uid_t uid)
{
    return setresgid(uid, uid, uid) == 0 && setresuid(uid, uid, uid) == 0 ? 0 : -1;
}

/* Root opens, then drops to nobody (its maps unreadable by the other user), and sleeps 11 s
 * inside its send's critical section: longer than the 10 s after which c743dee took over. */
static int slow_holder(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (become(NOBODY) != 0)
        return 77;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    setenv("PBX_NAP_AT", "send.logged", 1);
    setenv("PBX_NAP_MS", "11000", 1);
    int r = pbx_send(q, 5, "holder", 6, 0);
    __atomic_store_n(&sl->holder_left, 1, __ATOMIC_SEQ_CST);
    return r == 0 ? 0 : 2;
}

static int other_user_sender(void *arg)
{
    (void) arg;
    if (become(NOBODY - 1) != 0)
        return 77;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    int r = pbx_send(q, 8, "waiter", 6, 0);
    /* The holder publishes its message before it lets go of the lock, so if the waiter got in
     * only after the holder left, the holder's message is queued now. (Reading holder_left
     * instead would race with the holder between its unlock and its store.) */
    char buf[16];
    long type = 0;
    ssize_t seen = pbx_recv(q, 5, buf, sizeof(buf), PBX_PEEK | PBX_NOWAIT, &type);
    __atomic_store_n(&sl->left_when_in, seen == 6 && type == 5, __ATOMIC_SEQ_CST);
    __atomic_store_n(&sl->waiter_in, 1, __ATOMIC_SEQ_CST);
    return r == 0 ? 0 : 2;
}

TEST(a_slow_holder_of_another_user_is_never_taken_over)
{
    if (geteuid() != 0)
        SKIP("needs root to run helpers as two other users");
    sl = shared_alloc(sizeof(*sl));
    const char *dir = getenv("POSTBOX_DIR");
    ASSERT_EQ(chmod(dir, 0777), 0); /* both users reach the mailbox */
    pbx_t *q = open_box();
    pid_t holder = pbx_test_fork(slow_holder, NULL);
    /* Once the holder has the lock, the other user's sender comes to wait for it. */
    const uint64_t *word = &pbx__handle_shm(q)->h->send.lock;
    for (int i = 0; i < 10000 && !__atomic_load_n(word, __ATOMIC_SEQ_CST) &&
                    !__atomic_load_n(&sl->holder_left, __ATOMIC_SEQ_CST);
         i++)
        pbx_test_sleep_ms(1);
    ASSERT_NE(__atomic_load_n(word, __ATOMIC_SEQ_CST), 0);
    pid_t waiter = pbx_test_fork(other_user_sender, NULL);
    int hs = pbx_test_wait(holder), ws = pbx_test_wait(waiter);
    if (hs == 77 || ws == 77)
        SKIP("setresuid to 65534/65533 is not permitted here");
    ASSERT_EQ(hs, 0);
    ASSERT_EQ(ws, 0);
    /* The waiter got in only after the holder had left: one holder at a time. */
    ASSERT_EQ(sl->left_when_in, 1);
    char buf[16];
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 6);
    ASSERT_EQ(type, 5);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 6);
    ASSERT_EQ(type, 8);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}
