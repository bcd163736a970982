/*
 * test_crashwalk.c — every named crash point (src/crash.h), for producers and consumers, and
 * then every repair cut short by a second crash.
 *
 * One table lists each point a send, a receive, a remove and the loans (a send loan committed or
 * cancelled, a receive loan returned) pass through, with the operation
 * that reaches it and whether that operation had committed there. For each row a helper process
 * is killed at the point; then, for rows that leave a lock held or a slot in flight, the walk is
 * repeated with a second helper killed inside the repair of the first crash (repair.send,
 * repair.recv, repair.rebuild, repair.orphan). A third walk goes through every step of the
 * revocation of a biased lock (REVOCATION in lock.h), with the biased owner idle or stopped
 * inside its critical section, and a second revoker killed while finishing the first one's
 * revocation. After the kills the survivor checks the contract
 * of docs/reliability.md:
 *   - a send that had not returned left nothing visible, unless it had committed, and then its
 *     message is there exactly once;
 *   - a receive that had not returned left its message in place, in its place (still the
 *     oldest), unless its free had committed, and then it is gone;
 *   - pbx_stat() agrees with the contents, and the whole capacity can be filled and emptied.
 * Each walk prints the points survived.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "os/os.h"
#include "shm/shm.h"

#define BIG 3000 /* beyond the slot's inline bytes: copied outside the locks */

/* LOAN: pbx_loan(), write in place, pbx_commit(). CANCEL: pbx_loan(), pbx_cancel(). VIEW:
 * pbx_recv_loan(), read in place, pbx_return(). */
enum role { SEND, RECV, REMOVE, LOAN, CANCEL, VIEW };

struct point {
    const char *at; /* PBX_CRASH_AT */
    enum role role;
    size_t len;         /* SEND: payload length; RECV: 0 takes the small message, BIG the big one */
    int committed;      /* the operation's effect is visible after the crash */
    const char *repair; /* the point a second helper dies at while repairing, or NULL */
};

/* Before each crash: A (type 2, 5 bytes) then B (type 4, BIG bytes). */
static const struct point points[] = {
    {"send.logged", SEND, 8, 0, "repair.send"},
    {"send.published", SEND, 8, 1, "repair.send"},
    {"send.logged", SEND, BIG, 0, "repair.send"},    /* allocation of a large message */
    {"send.copying", SEND, BIG, 0, "repair.orphan"}, /* outside the locks */
    {"send.logged:2", SEND, BIG, 0, "repair.send"},  /* publication of a large message */
    {"send.published", SEND, BIG, 1, "repair.send"},
    {"recv.popped", RECV, 0, 0, "repair.rebuild"},
    {"recv.logged", RECV, 0, 0, "repair.recv"},
    {"recv.committed", RECV, 0, 1, "repair.recv"},
    {"recv.popped", RECV, BIG, 0, "repair.rebuild"},
    {"recv.copying", RECV, BIG, 0, "repair.orphan"}, /* outside the locks */
    {"recv.logged", RECV, BIG, 0, "repair.recv"},
    {"recv.committed", RECV, BIG, 1, "repair.recv"},
    {"remove.unlinked", REMOVE, 0, 1, NULL},
    /* Loans (LOANS in src/shm/loan.c): a send loan allocated, held, published, cancelled. */
    {"send.logged", LOAN, 8, 0, "repair.send"},
    {"loan.allocating", LOAN, BIG, 0, "repair.send"},
    {"loan.held", LOAN, 8, 0, "repair.orphan"}, /* holding the loan, outside the locks */
    {"loan.held", LOAN, BIG, 0, "repair.orphan"},
    {"loan.committing", LOAN, BIG, 0, "repair.orphan"}, /* lock held, nothing logged */
    {"send.logged:2", LOAN, BIG, 0, "repair.send"},
    {"send.published", LOAN, 8, 1, "repair.send"},
    {"send.published", LOAN, BIG, 1, "repair.send"},
    {"loan.held", CANCEL, BIG, 0, "repair.orphan"},
    {"loan.cancelling", CANCEL, BIG, 0, "repair.orphan"},
    {"recv.logged", CANCEL, BIG, 0, "repair.recv"},
    {"recv.committed", CANCEL, BIG, 0, "repair.recv"},
    /* A receive loan taken, held, returned. */
    {"claim.popped", VIEW, 0, 0, "repair.rebuild"},
    {"loan.viewed", VIEW, 0, 0, "repair.orphan"},
    {"loan.viewed", VIEW, BIG, 0, "repair.orphan"},
    {"loan.returning", VIEW, BIG, 0, "repair.rebuild"}, /* lock held, nothing logged */
    {"recv.logged", VIEW, BIG, 0, "repair.recv"},
    {"recv.committed", VIEW, 0, 1, "repair.recv"},
    {"recv.committed", VIEW, BIG, 1, "repair.recv"},
};

#define NAME "walk"
#define MAX  6

static pbx_t *q;

struct job {
    const char *at;
    enum role role;
    long type;
    size_t len;
};

/* In a helper: open the mailbox, arm the crash point, do the operation: it must not return. */
static int die_during(void *arg)
{
    const struct job *j = arg;
    static unsigned char buf[BIG];
    memset(buf, (int) j->type, sizeof(buf));
    pbx_t *h;
    setenv("PBX_CRASH_AT", j->at, 1);
    /* Opening looks after dead peers: a repair point may already be reached here. */
    if (pbx_open(NAME, 0, NULL, &h) != 0)
        return 4;
    struct pbx_loan l;
    void *p;
    ssize_t n;
    if (j->role == SEND)
        pbx_send(h, j->type, buf, j->len, 0);
    else if (j->role == RECV)
        pbx_recv(h, j->type, buf, sizeof(buf), 0, NULL);
    else if (j->role == LOAN || j->role == CANCEL) {
        if (pbx_loan(h, j->len, 0, &l) != 0)
            return 5;
        for (size_t off = 0; (n = pbx_loan_piece(&l, off, &p)) > 0; off += (size_t) n)
            memset(p, (int) j->type, (size_t) n);
        if (j->role == LOAN)
            pbx_commit(&l, j->type, 0);
        else
            pbx_cancel(&l);
    } else if (j->role == VIEW) {
        if (pbx_recv_loan(h, j->type, 0, &l) < 0)
            return 5;
        for (size_t off = 0; (n = pbx_loan_piece(&l, off, &p)) > 0; off += (size_t) n)
            buf[0] ^= *(unsigned char *) p;
        pbx_return(&l);
    } else
        pbx_remove(h);
    return 3; /* the crash point was not reached */
}

static void kill_helper(const char *at, enum role role, long type, size_t len)
{
    struct job j = {at, role, type, len};
    int status = pbx_test_wait(pbx_test_fork(die_during, &j));
    if (status != 128 + SIGKILL)
        pbx_test_fail(__FILE__, __LINE__, "helper armed at %s exited with %d, not SIGKILL", at,
                      status);
}

/* Receive one message within 2 s (a dead reader's message comes back within ~100 ms). */
static void expect_message(long type, size_t len)
{
    static unsigned char buf[BIG];
    long got = 0;
    struct timespec t = {2, 0};
    ASSERT_EQ(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &got, &t), (long long) len);
    ASSERT_EQ(got, type);
    for (size_t i = 0; i < len; i++)
        ASSERT_EQ(buf[i], (unsigned char) type);
}

static void expect_empty(void)
{
    char buf[8];
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_NOERROR, NULL), -ENOMSG);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
}

/* Every slot can be filled and emptied again; orphans come back within ~100 ms. */
static void expect_full_capacity(void)
{
    static unsigned char buf[BIG];
    for (uint32_t i = 0; i < MAX; i++) {
        memset(buf, (int) (10 + i), BIG);
        int r;
        double t0 = pbx_test_now_ms();
        while ((r = pbx_send(q, 10 + i, buf, BIG, PBX_NOWAIT)) == -EAGAIN &&
               pbx_test_now_ms() - t0 < 2000)
            pbx_test_sleep_ms(20);
        ASSERT_OK(r);
    }
    ASSERT_ERR(pbx_send(q, 99, buf, 1, PBX_NOWAIT), -EAGAIN);
    for (uint32_t i = 0; i < MAX; i++)
        expect_message(10 + i, BIG);
    expect_empty();
}

static void walk_one(const struct point *p, int with_repair)
{
    static const char *const roles[] = {"send", "recv", "remove", "loan", "cancel", "view"};
    printf("walk: %s %s (%zu bytes)%s%s\n", p->at, roles[p->role], p->len,
           with_repair ? ", then " : "", with_repair ? p->repair : "");
    fflush(stdout);
    struct pbx_options o = pbx_test_options(MAX, 64 * 1024, 4096, PBX_BLOCK);
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));
    static unsigned char big[BIG];
    memset(big, 4, sizeof(big));
    ASSERT_OK(pbx_send(q, 2, "\2\2\2\2\2", 5, 0));
    ASSERT_OK(pbx_send(q, 4, big, BIG, 0));

    int sends = p->role == SEND || p->role == LOAN || p->role == CANCEL;
    int takes = p->role == RECV || p->role == VIEW;
    kill_helper(p->at, p->role, sends ? 6 : p->len ? 4 : 0, p->len);
    if (with_repair) {
        /* The second helper repairs on its way in: the send side by sending, the receive side
         * by receiving, the orphans by opening once the 100 ms between searches is over. */
        const char *r = p->repair;
        if (strcmp(r, "repair.orphan") == 0)
            pbx_test_sleep_ms(150);
        enum role role = strcmp(r, "repair.send") == 0 ? SEND : RECV;
        kill_helper(r, role, role == SEND ? 8 : 0, 8);
    }

    if (p->role == REMOVE) {
        pbx_t *h;
        ASSERT_ERR(pbx_open(NAME, 0, NULL, &h), -ENOENT);
        struct pbx_stat st;
        ASSERT_ERR(pbx_stat(q, &st), -EIDRM); /* finishes the removal */
        ASSERT_ERR(pbx_send(q, 3, "x", 1, PBX_NOWAIT), -EIDRM);
        pbx_close(q);
        return;
    }

    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    uint64_t expect_msgs = 2;
    if (sends && p->committed)
        expect_msgs++;
    if (takes && p->committed)
        expect_msgs--;
    /* A dead sender's slot counts until it is given back; then stat is exact. */
    double t0 = pbx_test_now_ms();
    while (st.msgs != expect_msgs && pbx_test_now_ms() - t0 < 2000) {
        char b[1];
        pbx_recv(q, 99, b, sizeof(b), PBX_NOWAIT, NULL); /* looks after dead peers */
        pbx_test_sleep_ms(20);
        ASSERT_OK(pbx_stat(q, &st));
    }
    ASSERT_EQ(st.msgs, expect_msgs);

    int a_gone = takes && p->committed && p->len == 0;
    int b_gone = takes && p->committed && p->len == BIG;
    if (!a_gone)
        expect_message(2, 5);
    if (!b_gone)
        expect_message(4, BIG);
    if (sends && p->committed)
        expect_message(6, p->len);
    expect_empty();
    expect_full_capacity();
    expect_full_capacity();
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(every_crash_point_leaves_a_working_mailbox_with_the_contracted_contents)
{
    for (size_t i = 0; i < (sizeof(points) / sizeof(points[0])); i++)
        walk_one(&points[i], 0);
    printf("crash walk: %zu crash points survived\n", (sizeof(points) / sizeof(points[0])));
}

TEST(a_crash_inside_every_repair_is_repaired_by_the_next_process)
{
    size_t n = 0;
    for (size_t i = 0; i < (sizeof(points) / sizeof(points[0])); i++) {
        if (!points[i].repair)
            continue;
        walk_one(&points[i], 1);
        n++;
    }
    printf("crash walk: %zu crashes inside a repair survived\n", n);
}

/* ---- Batches (BATCHES in shm.c) ---------------------------------------------------------- */

/* A pbx_sendv() of three small messages (types 11, 12, 13) into an empty mailbox, or a
 * pbx_recvv() of three from a mailbox holding them, killed at a point inside the batch: the
 * messages whose commit happened before the point are sent (or gone), the rest untouched. */
struct batch_point {
    const char *at;
    enum role role;
    int committed; /* messages of the batch whose commit happened */
};

static const struct batch_point batch_points[] = {
    {"sendv.next", SEND, 1},   {"send.logged:2", SEND, 1}, {"send.published:2", SEND, 2},
    {"sendv.next:2", SEND, 2}, {"send.logged:3", SEND, 2}, {"send.published:3", SEND, 3},
    {"recvv.next", RECV, 1},   {"recv.logged:2", RECV, 1}, {"recv.committed:2", RECV, 2},
    {"recvv.next:2", RECV, 2}, {"recv.popped:3", RECV, 2}, {"recv.committed:3", RECV, 3},
};

static int die_in_batch(void *arg)
{
    const struct batch_point *b = arg;
    setenv("PBX_CRASH_AT", b->at, 1);
    pbx_t *h;
    if (pbx_open(NAME, 0, NULL, &h) != 0)
        return 4;
    struct pbx_msgv v[3];
    static char buf[3][8];
    for (int i = 0; i < 3; i++) {
        memset(buf[i], 11 + i, sizeof(buf[i]));
        v[i].type = 11 + i;
        v[i].data = buf[i];
        v[i].len = sizeof(buf[i]);
    }
    if (b->role == SEND)
        pbx_sendv(h, v, 3, 0);
    else
        pbx_recvv(h, 0, v, 3, 0);
    return 3; /* the crash point was not reached */
}

TEST(a_batch_killed_inside_keeps_exactly_the_messages_it_committed)
{
    for (size_t i = 0; i < sizeof(batch_points) / sizeof(batch_points[0]); i++) {
        const struct batch_point *b = &batch_points[i];
        printf("walk: %s %s batch, %d committed\n", b->at, b->role == SEND ? "send" : "recv",
               b->committed);
        fflush(stdout);
        struct pbx_options o = pbx_test_options(MAX, 64 * 1024, 4096, PBX_BLOCK);
        ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));
        if (b->role == RECV)
            for (int t = 11; t <= 13; t++) {
                char m[8];
                memset(m, t, sizeof(m));
                ASSERT_OK(pbx_send(q, t, m, sizeof(m), 0));
            }
        int status = pbx_test_wait(pbx_test_fork(die_in_batch, (void *) b));
        if (status != 128 + SIGKILL)
            pbx_test_fail(__FILE__, __LINE__, "helper armed at %s exited with %d, not SIGKILL",
                          b->at, status);
        int from = b->role == SEND ? 0 : b->committed, to = b->role == SEND ? b->committed : 3;
        struct pbx_stat st;
        ASSERT_OK(pbx_stat(q, &st));
        ASSERT_EQ(st.msgs, (uint64_t) (to - from));
        for (int k = from; k < to; k++)
            expect_message(11 + k, 8);
        expect_empty();
        expect_full_capacity();
        ASSERT_OK(pbx_remove(q));
        pbx_close(q);
    }
    printf("crash walk: %zu crash points inside batches survived\n",
           sizeof(batch_points) / sizeof(batch_points[0]));
}

/* A receiver asleep in the mailbox when its remover dies between the unlink and the mark. */
static int blocked_receiver(void *arg)
{
    (void) arg;
    pbx_t *h;
    if (pbx_open(NAME, 0, NULL, &h) != 0)
        return 4;
    char buf[8];
    struct timespec limit = {10, 0};
    double t0 = pbx_test_now_ms();
    long r = pbx_timedrecv(h, 0, buf, sizeof(buf), 0, NULL, &limit);
    double waited = pbx_test_now_ms() - t0;
    printf("blocked receiver: %s after %.0f ms\n", pbx_test_errname((int) r), waited);
    fflush(stdout);
    return r == -EIDRM ? 0 : 5;
}

TEST(a_sleeper_learns_of_a_removal_whose_remover_died_after_unlinking)
{
    struct pbx_options o = pbx_test_options(MAX, 64 * 1024, 4096, PBX_BLOCK);
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));
    pid_t rx = pbx_test_fork(blocked_receiver, NULL);
    struct pbx_stat st;
    for (int i = 0; i < 2000; i++) {
        ASSERT_OK(pbx_stat(q, &st));
        if (st.recv_waiters == 1)
            break;
        pbx_test_sleep_ms(1);
    }
    ASSERT_EQ(st.recv_waiters, 1);
    kill_helper("remove.unlinked", REMOVE, 0, 0);
    /* Nobody marked the region removed; the sleeper finds the file nameless at the end of its
     * time slice (1 s while nothing is in flight) and wakes everyone with -EIDRM. */
    pbx_test_wait_ok(rx);
    ASSERT_ERR(pbx_stat(q, &st), -EIDRM);
    pbx_close(q);
}

/* ---- The revocation of a bias (REVOCATION in lock.h) ------------------------------------ */

/* A revoker killed at step at (PBX_CRASH_AT), the owner idle or stopped inside a critical
 * section it took through the bias, and perhaps a second revoker killed at step second while
 * it finishes the first one's revocation. */
struct revocation {
    const char *at;
    int owner_inside;
    const char *second;
};

static const struct revocation revocations[] = {
    {"bias.marked", 0, NULL},          {"bias.fenced", 0, NULL},
    {"bias.revoked", 0, NULL},         {"bias.marked", 1, NULL},
    {"bias.fenced", 1, NULL},          {"bias.waiting", 1, NULL},
    {"bias.marked", 1, "bias.fenced"}, {"bias.waiting", 1, "bias.waiting"},
};

struct owner_board {
    int ready; /* the owner holds both biases */
    int go;    /* the owner may close and leave */
};
static struct owner_board *ob;

/* The biased owner: earns the biases with round trips of its own (type 1), then either waits,
 * or sends "owner" (type 5) with PBX_STOP_AT set, so that it stops inside the critical section
 * it took through the bias, and finishes the send when continued. */
static int biased_owner(void *arg)
{
    const char *stop_at = arg;
    pbx_t *h;
    if (pbx_open(NAME, 0, NULL, &h) != 0)
        return 4;
    struct pbx_shm *m = pbx__handle_shm(h);
    const uint64_t me = pbx__os_self()->ident;
    char buf[8];
    for (int i = 0; i < 10 * BIAS_STREAK; i++) {
        if (__atomic_load_n(&m->h->send.bias.owner, __ATOMIC_SEQ_CST) == me)
            break;
        if (pbx_send(h, 1, "rt", 2, 0) != 0 || pbx_recv(h, 1, buf, sizeof(buf), 0, NULL) != 2)
            return 5;
    }
    if (__atomic_load_n(&m->h->send.bias.owner, __ATOMIC_SEQ_CST) != me)
        return 6; /* never biased: the walk would prove nothing */
    __atomic_store_n(&ob->ready, 1, __ATOMIC_SEQ_CST);
    if (stop_at) {
        setenv("PBX_STOP_AT", stop_at, 1);
        if (pbx_send(h, 5, "owner", 5, 0) != 0)
            return 7;
    }
    for (int i = 0; i < 20000 && !__atomic_load_n(&ob->go, __ATOMIC_SEQ_CST); i++)
        pbx_test_sleep_ms(1);
    return pbx_close(h) ? 8 : 0;
}

static void walk_revocation(const struct revocation *v)
{
    printf("walk: revoker killed at %s, owner %s%s%s\n", v->at,
           v->owner_inside ? "stopped inside" : "idle", v->second ? ", then a finisher at " : "",
           v->second ? v->second : "");
    fflush(stdout);
    struct pbx_options o = pbx_test_options(MAX, 64 * 1024, 4096, PBX_BLOCK);
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));
    struct pbx_shm *m = pbx__handle_shm(q);
    memset(ob, 0, sizeof(*ob));
    pid_t owner = pbx_test_fork(biased_owner, v->owner_inside ? "send.logged" : NULL);
    for (int i = 0; i < 20000 && !__atomic_load_n(&ob->ready, __ATOMIC_SEQ_CST); i++) {
        int st;
        if (waitpid(owner, &st, WNOHANG) == owner)
            pbx_test_fail(__FILE__, __LINE__, "the owner left early (%d)", st);
        pbx_test_sleep_ms(1);
    }
    ASSERT_EQ(__atomic_load_n(&ob->ready, __ATOMIC_SEQ_CST), 1);
    if (v->owner_inside) {
        int st = 0;
        ASSERT_EQ(waitpid(owner, &st, WUNTRACED), owner);
        ASSERT_TRUE(WIFSTOPPED(st));
        ASSERT_NE(m->h->send.bias.busy, 0); /* inside, through the bias */
    }

    kill_helper(v->at, SEND, 6, 8);
    if (v->second)
        kill_helper(v->second, SEND, 8, 8);

    char buf[8];
    if (v->owner_inside) {
        /* Nobody gets in beside the stopped owner, and calls with a limit return. */
        struct timespec t = {0, 200000000};
        ASSERT_ERR(pbx_send(q, 7, "nowait", 6, PBX_NOWAIT), -EAGAIN);
        ASSERT_ERR(pbx_timedsend(q, 7, "timed", 5, 0, &t), -ETIMEDOUT);
        ASSERT_ERR(pbx_recv(q, 5, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
        ASSERT_EQ(kill(owner, SIGCONT), 0);
    }
    ASSERT_OK(pbx_send(q, 7, "taker", 5, 0));
    ASSERT_EQ(__atomic_load_n(&m->h->send.bias.owner, __ATOMIC_SEQ_CST), 0);
    __atomic_store_n(&ob->go, 1, __ATOMIC_SEQ_CST);
    pbx_test_wait_ok(owner);

    /* The owner's message (committed by the owner once continued), then the taker's; the
     * killed revokers' never. */
    long type = 0;
    if (v->owner_inside) {
        ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 5);
        ASSERT_EQ(type, 5);
        ASSERT_EQ(memcmp(buf, "owner", 5), 0);
    }
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 5);
    ASSERT_EQ(type, 7);
    ASSERT_EQ(memcmp(buf, "taker", 5), 0);
    expect_empty();
    expect_full_capacity();
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

static void need_bias_walks(void)
{
    if (!pbx__os_asym_setup())
        SKIP("membarrier GLOBAL_EXPEDITED is not available here: no bias is ever granted");
    if (!ob) {
        ob = mmap(NULL, sizeof(*ob), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(ob != MAP_FAILED);
    }
}

TEST(a_revoker_killed_at_every_step_of_a_revocation_lets_nobody_in_beside_the_owner)
{
    need_bias_walks();
    size_t n = sizeof(revocations) / sizeof(revocations[0]);
    for (size_t i = 0; i < n; i++)
        walk_revocation(&revocations[i]);
    printf("crash walk: %zu revocations cut short survived\n", n);
}

/* A plain sender: it revokes the stopped owner's bias and waits for the owner to leave. */
static int plain_sender(void *arg)
{
    (void) arg;
    pbx_t *h;
    if (pbx_open(NAME, 0, NULL, &h) != 0)
        return 4;
    pbx_send(h, 6, "revoker", 7, 0);
    return 3; /* killed while waiting: never here */
}

/* The same without crash points: the revoker is killed by the test while it waits, as a user's
 * kill -9 would. */
TEST(a_revoker_killed_while_the_owner_is_stopped_inside_lets_nobody_in)
{
    need_bias_walks();
    struct pbx_options o = pbx_test_options(MAX, 64 * 1024, 4096, PBX_BLOCK);
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));
    struct pbx_shm *m = pbx__handle_shm(q);
    memset(ob, 0, sizeof(*ob));
    pid_t owner = pbx_test_fork(biased_owner, "send.logged");
    int st = 0;
    ASSERT_EQ(waitpid(owner, &st, WUNTRACED), owner);
    ASSERT_TRUE(WIFSTOPPED(st));
    pid_t revoker = pbx_test_fork(plain_sender, NULL);
    /* It holds the word, revoking, then waits for the owner: kill it there. */
    for (int i = 0; i < 20000 && __atomic_load_n(&m->h->send.lock, __ATOMIC_SEQ_CST) == 0; i++)
        pbx_test_sleep_ms(1);
    ASSERT_NE(__atomic_load_n(&m->h->send.lock, __ATOMIC_SEQ_CST), 0);
    pbx_test_sleep_ms(50);
    ASSERT_EQ(kill(revoker, SIGKILL), 0);
    ASSERT_EQ(pbx_test_wait(revoker), 128 + SIGKILL);

    struct timespec t = {0, 300000000};
    ASSERT_ERR(pbx_timedsend(q, 7, "timed", 5, 0, &t), -ETIMEDOUT);
    ASSERT_ERR(pbx_send(q, 7, "nowait", 6, PBX_NOWAIT), -EAGAIN);
    ASSERT_EQ(kill(owner, SIGCONT), 0);
    ASSERT_OK(pbx_send(q, 7, "taker", 5, 0));
    __atomic_store_n(&ob->go, 1, __ATOMIC_SEQ_CST);
    pbx_test_wait_ok(owner);
    char buf[8];
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 5);
    ASSERT_EQ(type, 5);
    ASSERT_EQ(memcmp(buf, "owner", 5), 0);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 5);
    ASSERT_EQ(type, 7);
    expect_empty();
    expect_full_capacity();
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}
