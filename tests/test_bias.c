/*
 * test_bias.c — the locks biased to the thread that keeps taking them (BIAS in lock.h): the
 * grant, the revocation by another process, an owner killed inside a critical section taken
 * through the bias, a signal handler that calls in, a process without membarrier(2), and a
 * sleeper whose waker holds a bias (LOCK CYCLE in wait.h).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "os/os.h"
#include "shm/shm.h"

#define NAME  "bias"
#define TAKES (BIAS_STREAK + 100) /* enough round trips for a bias on both locks */

struct board {
    uint64_t ident; /* a helper's thread identity */
    int ready;      /* the helper is set up */
    int go;         /* the test lets it go on */
};
static struct board *board;

static void board_init(void)
{
    board = mmap(NULL, sizeof(*board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(board != MAP_FAILED);
    memset(board, 0, sizeof(*board));
}

static int wait_for_int(const int *flag)
{
    for (int i = 0; i < 10000 && !__atomic_load_n(flag, __ATOMIC_SEQ_CST); i++)
        pbx_test_sleep_ms(1);
    return __atomic_load_n(flag, __ATOMIC_SEQ_CST);
}

static pbx_t *open_box(uint32_t max_msgs)
{
    struct pbx_options o = pbx_test_options(max_msgs, 1 << 20, 64, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(NAME, PBX_CREATE, &o, &q));
    return q;
}

/* Send and receive n small messages, each checked. 0 or a negative error. */
static int round_trips(pbx_t *q, int n)
{
    char buf[16];
    for (int i = 0; i < n; i++) {
        int r = pbx_send(q, 1, &i, sizeof(i), 0);
        if (r)
            return r;
        long type = 0;
        ssize_t k = pbx_recv(q, 0, buf, sizeof(buf), 0, &type);
        if (k != (ssize_t) sizeof(i) || type != 1 || memcmp(buf, &i, sizeof(i)))
            return k < 0 ? (int) k : -EBADMSG;
    }
    return 0;
}

static uint64_t owner_of(const struct pbx_bias *b)
{
    return __atomic_load_n(&b->owner, __ATOMIC_SEQ_CST);
}

/* Where biases can be granted at all (else the test is skipped). */
static void need_biases(void)
{
    if (!pbx__os_asym_setup())
        SKIP("membarrier GLOBAL_EXPEDITED is not available here: no bias is ever granted");
}

/* Open the mailbox and earn the bias of its send lock with round trips of our own. */
static pbx_t *biased_box(uint32_t max_msgs, struct pbx_shm **m)
{
    need_biases();
    pbx_t *q = open_box(max_msgs);
    *m = pbx__handle_shm(q);
    ASSERT_OK(round_trips(q, TAKES));
    ASSERT_EQ(owner_of(&(*m)->h->send.bias), pbx__os_self()->ident);
    return q;
}

TEST(a_lock_is_biased_to_the_thread_that_keeps_taking_it)
{
    need_biases();
    pbx_t *q = open_box(16);
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_EQ(owner_of(&m->h->send.bias), 0);
    ASSERT_OK(round_trips(q, TAKES));
    const uint64_t me = pbx__os_self()->ident;
    ASSERT_EQ(owner_of(&m->h->send.bias), me);
    ASSERT_EQ(owner_of(&m->h->recv.bias), me);
    /* Taken through the bias: the word stays free, and busy is clear between calls. */
    ASSERT_OK(round_trips(q, 10));
    ASSERT_EQ(m->h->send.lock, 0);
    ASSERT_EQ(m->h->send.bias.busy, 0);
    ASSERT_EQ(m->h->recv.bias.busy, 0);
    ASSERT_OK(pbx_close(q));
}

static int send_numbered(void *arg)
{
    int n = (int) (intptr_t) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    for (int i = 0; i < n; i++)
        if (pbx_send(q, 2, &i, sizeof(i), 0))
            return 2;
    return pbx_close(q) ? 3 : 0;
}

TEST(another_process_revokes_the_bias_and_nothing_is_lost)
{
    struct pbx_shm *m;
    pbx_t *q = biased_box(64, &m);
    const uint64_t me = pbx__os_self()->ident;
    /* Another sender takes the send lock: it must revoke our bias first. */
    pid_t p = pbx_test_fork(send_numbered, (void *) (intptr_t) 50);
    pbx_test_wait_ok(p);
    ASSERT_NE(owner_of(&m->h->send.bias), me);
    ASSERT_GT(m->h->send.bias.revoked_ns, 0);
    /* Its messages, in order, and ours still go through. */
    for (int i = 0; i < 50; i++) {
        int got = -1;
        long type = 0;
        ASSERT_EQ(pbx_recv(q, 0, &got, sizeof(got), PBX_NOWAIT, &type), sizeof(got));
        ASSERT_EQ(type, 2);
        ASSERT_EQ(got, i);
    }
    ASSERT_OK(round_trips(q, 100));
    ASSERT_OK(pbx_close(q));
}

static int sender_beside(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q) || pbx_send(q, 3, "x", 1, 0))
        return 1;
    __atomic_store_n(&board->ready, 1, __ATOMIC_SEQ_CST);
    wait_for_int(&board->go);
    return pbx_close(q) ? 2 : 0;
}

TEST(no_bias_while_another_process_also_sends)
{
    need_biases();
    board_init();
    pbx_t *q = open_box(16);
    struct pbx_shm *m = pbx__handle_shm(q);
    pid_t p = pbx_test_fork(sender_beside, NULL);
    ASSERT_EQ(wait_for_int(&board->ready), 1);
    /* It sent once and stays open: the send lock is not ours alone. */
    char buf[4];
    ASSERT_EQ(pbx_recv(q, 3, buf, sizeof(buf), 0, NULL), 1);
    ASSERT_OK(round_trips(q, 2 * TAKES));
    ASSERT_EQ(owner_of(&m->h->send.bias), 0);
    /* The receive lock is: nobody else receives. */
    ASSERT_EQ(owner_of(&m->h->recv.bias), pbx__os_self()->ident);
    __atomic_store_n(&board->go, 1, __ATOMIC_SEQ_CST);
    pbx_test_wait_ok(p);
    ASSERT_OK(pbx_close(q));
}

/* A helper that earns both biases, then dies at a crash point inside a send. */
static int biased_then_die(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    if (round_trips(q, TAKES))
        return 2;
    struct pbx_shm *m = pbx__handle_shm(q);
    if (owner_of(&m->h->send.bias) != pbx__os_self()->ident)
        return 4; /* no bias: this test would prove nothing */
    setenv("PBX_CRASH_AT", "send.published", 1);
    pbx_send(q, 5, "dead", 4, 0);
    return 3; /* the crash point was not reached */
}

TEST(an_owner_killed_inside_its_biased_critical_section_is_taken_over_and_repaired)
{
    need_biases();
    pbx_t *q = open_box(16);
    struct pbx_shm *m = pbx__handle_shm(q);
    pid_t p = pbx_test_fork(biased_then_die, NULL);
    ASSERT_EQ(pbx_test_wait(p), 128 + SIGKILL);
    /* It died marked busy, the word free: the next sender revokes, finds it dead, repairs. */
    ASSERT_NE(m->h->send.bias.busy, 0);
    ASSERT_EQ(m->h->send.lock, 0);
    struct pbx_stat before, after;
    ASSERT_OK(pbx_stat(q, &before));
    ASSERT_OK(pbx_send(q, 6, "live", 4, 0));
    ASSERT_OK(pbx_stat(q, &after));
    ASSERT_GT(after.repairs, before.repairs);
    ASSERT_EQ(m->h->send.bias.busy, 0);
    ASSERT_EQ(owner_of(&m->h->send.bias), 0);
    /* Its publication had committed: the message is there, then ours. */
    char buf[8];
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 4);
    ASSERT_EQ(type, 5);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 4);
    ASSERT_EQ(type, 6);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_OK(pbx_close(q));
}

static pbx_t *handler_q;
static volatile sig_atomic_t handler_result = 1;
static void call_in(int sig)
{
    (void) sig;
    handler_result = pbx_send(handler_q, 9, "h", 1, PBX_NOWAIT);
}

TEST(a_signal_handler_that_calls_in_during_a_biased_critical_section_gets_edeadlk)
{
    struct pbx_shm *m;
    pbx_t *q = biased_box(16, &m);
    handler_q = q;
    /* Inside a critical section taken through the bias, as the interrupted code would be. */
    ASSERT_OK(pbx__send_lock(m));
    ASSERT_EQ(m->h->send.bias.busy, pbx__os_self()->ident);
    signal(SIGUSR1, call_in);
    raise(SIGUSR1);
    ASSERT_EQ(handler_result, -EDEADLK);
    pbx__send_unlock(m);
    ASSERT_EQ(m->h->send.bias.busy, 0);
    /* Outside it, the handler's call goes through. */
    raise(SIGUSR1);
    ASSERT_EQ(handler_result, 0);
    char buf[4];
    ASSERT_EQ(pbx_recv(q, 9, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    ASSERT_OK(pbx_close(q));
}

static int send_without_membarrier(void *arg)
{
    (void) arg;
    pbx__os_asym_off();
    return send_numbered((void *) (intptr_t) 5);
}

TEST(a_process_without_membarrier_revokes_blind_and_stops_every_bias)
{
    struct pbx_shm *m;
    pbx_t *q = biased_box(64, &m);
    pbx_test_wait_ok(pbx_test_fork(send_without_membarrier, NULL));
    ASSERT_EQ(m->h->send.bias.no_bias, 1);
    ASSERT_EQ(m->h->recv.bias.no_bias, 1);
    ASSERT_EQ(owner_of(&m->h->send.bias), 0);
    /* No bias is granted again, however long we go on alone. */
    char buf[8];
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(pbx_recv(q, 2, buf, sizeof(buf), PBX_NOWAIT, NULL), (ssize_t) sizeof(int));
    ASSERT_OK(round_trips(q, 2 * TAKES));
    ASSERT_EQ(owner_of(&m->h->send.bias), 0);
    /* The receive lock, which it never took, keeps the bias it had: one granted before is
     * revoked when someone else takes the lock, blind or not. */
    ASSERT_EQ(owner_of(&m->h->recv.bias), pbx__os_self()->ident);
    ASSERT_OK(pbx_close(q));
}

/* A receiver asleep while the sender's lock is biased to the sender: the wake-up check after a
 * release through the bias has no fence, and the sleeper's own heavy fence (or revocation)
 * must make up for it. */
static int receive_after_ready(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    __atomic_store_n(&board->ready, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 3; i++) {
        int got = -1;
        long type = 0;
        /* Shorter than the idle sleep slice (1 s), after which it would look again anyway: a
         * wake-up lost would show as a timeout. */
        const struct timespec limit = {0, 900000000};
        if (pbx_timedrecv(q, 0, &got, sizeof(got), 0, &type, &limit) != sizeof(got) || got != i)
            return 2;
    }
    return pbx_close(q) ? 3 : 0;
}

TEST(a_receiver_asleep_while_the_senders_lock_is_biased_is_woken)
{
    board_init();
    struct pbx_shm *m;
    pbx_t *q = biased_box(16, &m);
    pid_t p = pbx_test_fork(receive_after_ready, NULL);
    ASSERT_EQ(wait_for_int(&board->ready), 1);
    for (int i = 0; i < 3; i++) {
        /* Once it sleeps (counted), send through the bias if we still hold one. */
        for (int k = 0; k < 10000 && !__atomic_load_n(&m->h->msg_ev.waiters, __ATOMIC_SEQ_CST); k++)
            pbx_test_sleep_ms(1);
        ASSERT_EQ(__atomic_load_n(&m->h->msg_ev.waiters, __ATOMIC_SEQ_CST), 1);
        ASSERT_OK(pbx_send(q, 1, &i, sizeof(i), 0));
    }
    pbx_test_wait_ok(p);
    ASSERT_OK(pbx_close(q));
}
