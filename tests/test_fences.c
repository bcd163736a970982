/*
 * test_fences.c — how a send and a receive do without memory fences: the asymmetric fences of
 * the locks (ASYMMETRIC FENCES in os.h, LOCK in lock.h) and the lock cycle of the wait events
 * (EVENTS in wait.h). Registration, the fallback without membarrier, lock waiters that sleep,
 * die or mix both kinds of process, and wake-ups that must not be lost.
 */
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <signal.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "os/os.h"
#include "shm/shm.h"

#define NAME "fences"

/* Does this kernel (and seccomp filter) offer what postbox registers for? */
static int kernel_has_membarrier(void)
{
    const long need = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return q > 0 && (q & need) == need;
}

static pbx_t *open_box(uint32_t max_msgs)
{
    struct pbx_options o = pbx_test_options(max_msgs, 1 << 20, 64, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(NAME, PBX_CREATE, &o, &q));
    return q;
}

/* Poll *word until it reads want, for at most 10 s (a hang fails the test, it does not judge
 * speed). Returns the last value read. */
static uint32_t wait_for_u32(const uint32_t *word, uint32_t want)
{
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++) {
        v = __atomic_load_n(word, __ATOMIC_SEQ_CST);
        if (v == want)
            break;
        pbx_test_sleep_ms(1);
    }
    return v;
}

static int sleeper_entries(const struct pbx_event *ev)
{
    int n = 0;
    for (unsigned i = 0; i < PBX_SLEEPERS; i++)
        n += __atomic_load_n(&ev->sleeper[i], __ATOMIC_RELAXED) != 0;
    return n;
}

/* ---- registration ------------------------------------------------------------------------ */

TEST(opening_a_mailbox_registers_the_process_for_heavy_fences_where_the_kernel_has_them)
{
    pbx_t *q = open_box(16);
    if (!kernel_has_membarrier()) {
        ASSERT_EQ(pbx__os_asym_light_ok, 0);
        ASSERT_EQ(pbx__os_heavy_fence(), -1);
        pbx_close(q);
        SKIP("membarrier GLOBAL_EXPEDITED is not available here: the fallback was checked");
    }
    ASSERT_EQ(pbx__os_asym_light_ok, 1);
    ASSERT_EQ(pbx__os_heavy_fence(), 0);
    ASSERT_OK(pbx_close(q));
}

static int child_is_registered(void *arg)
{
    (void) arg;
    /* The atfork handler asked for the child's own registration. */
    if (pbx__os_asym_light_ok != 1)
        return 1;
    if (pbx__os_heavy_fence() != 0)
        return 2;
    return 0;
}

TEST(a_forked_child_is_registered_again)
{
    if (!kernel_has_membarrier())
        SKIP("membarrier GLOBAL_EXPEDITED is not available here");
    pbx_t *q = open_box(16);
    ASSERT_EQ(pbx__os_asym_light_ok, 1);
    pbx_test_wait_ok(pbx_test_fork(child_is_registered, NULL));
    ASSERT_OK(pbx_close(q));
}

static int send_later(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    pbx_test_sleep_ms(150); /* the receiver is asleep by then */
    if (pbx_send(q, 7, "late", 4, 0))
        return 2;
    return pbx_close(q) ? 3 : 0;
}

TEST(postbox_no_membarrier_turns_heavy_fences_off_and_blocking_still_works)
{
    setenv("POSTBOX_NO_MEMBARRIER", "1", 1);
    pbx_t *q = open_box(16);
    ASSERT_EQ(pbx__os_asym_light_ok, 0);
    ASSERT_EQ(pbx__os_heavy_fence(), -1);
    pid_t p = pbx_test_fork(send_later, NULL);
    char buf[16];
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), 0, &type), 4);
    ASSERT_EQ(type, 7);
    ASSERT_MEM_EQ(buf, "late", 4);
    pbx_test_wait_ok(p);
    ASSERT_OK(pbx_close(q));
}

/* ---- lock waiters -------------------------------------------------------------------------- */

static int recv_nowait(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    char buf[16];
    /* Blocks on the receive lock the test holds, then finds nothing. */
    int r = (int) pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL);
    return r == -ENOMSG ? 0 : 2;
}

TEST(a_lock_waiter_sleeps_until_the_lock_is_released_then_takes_it)
{
    pbx_t *q = open_box(16);
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_OK(pbx__recv_lock(m));
    pid_t p = pbx_test_fork(recv_nowait, NULL);
    ASSERT_EQ(wait_for_u32(&m->h->recv_lockers.waiters, 1), 1);
    ASSERT_EQ(sleeper_entries(&m->h->recv_lockers), 1);
    /* The waiter has issued its heavy fence and sleeps; the lock is still ours. */
    pbx_test_sleep_ms(50);
    ASSERT_EQ(pbx__os_self()->ident, __atomic_load_n(&m->h->recv.lock, __ATOMIC_SEQ_CST));
    ASSERT_EQ(__atomic_load_n(&m->h->recv_lockers.waiters, __ATOMIC_SEQ_CST), 1);
    pbx__recv_unlock(m);
    pbx_test_wait_ok(p);
    /* The waiter took the lock, let it go and struck off its registration. */
    ASSERT_EQ(__atomic_load_n(&m->h->recv_lockers.waiters, __ATOMIC_SEQ_CST), 0);
    ASSERT_EQ(sleeper_entries(&m->h->recv_lockers), 0);
    ASSERT_EQ(__atomic_load_n(&m->h->recv.lock, __ATOMIC_SEQ_CST), 0);
    ASSERT_OK(pbx_close(q));
}

TEST(a_lock_waiter_killed_asleep_is_struck_off_by_the_next_release)
{
    pbx_t *q = open_box(16);
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_OK(pbx__send_lock(m));
    pid_t p = pbx_test_fork(send_later, NULL); /* it will wait for the send lock */
    ASSERT_EQ(wait_for_u32(&m->h->send_lockers.waiters, 1), 1);
    kill(p, SIGKILL);
    ASSERT_EQ(pbx_test_wait(p), 128 + SIGKILL);
    /* Its registration outlives it... */
    ASSERT_EQ(__atomic_load_n(&m->h->send_lockers.waiters, __ATOMIC_SEQ_CST), 1);
    /* ...until a release finds the count but nobody to wake, and sweeps. */
    pbx__send_unlock(m);
    ASSERT_EQ(__atomic_load_n(&m->h->send_lockers.waiters, __ATOMIC_SEQ_CST), 0);
    ASSERT_EQ(sleeper_entries(&m->h->send_lockers), 0);
    /* And the mailbox works on, with no wake-up to pay for on each release. */
    char buf[16];
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    ASSERT_OK(pbx_close(q));
}

/* ---- the lock cycle of the wait events --------------------------------------------------- */

/* A receive that must find the message published while it was between its registration and
 * its re-check, although nobody woke it; with a deadline shorter than the idle sleep slice
 * (1 s), after which it would have looked again anyway. */
static int recv_unwoken(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    char buf[16];
    long type = 0;
    const struct timespec limit = {0, 900000000};
    ssize_t n = pbx_timedrecv(q, 0, buf, sizeof(buf), 0, &type, &limit);
    if (n != 5 || type != 3 || memcmp(buf, "quiet", 5))
        return 2;
    return pbx_close(q) ? 3 : 0;
}

TEST(a_message_published_between_a_receivers_registration_and_its_look_is_seen_unwoken)
{
    pbx_t *q = open_box(16);
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_OK(pbx__send_lock(m));
    pid_t p = pbx_test_fork(recv_unwoken, NULL);
    /* The receiver found nothing, registered for messages, and now waits for the send lock
     * (its cycle) before it looks again. */
    ASSERT_EQ(wait_for_u32(&m->h->msg_ev.waiters, 1), 1);
    ASSERT_EQ(wait_for_u32(&m->h->send_lockers.waiters, 1), 1);
    /* Publish under the lock, then let it go without the wake-up check a send makes: the
     * signaller that read the count too early. */
    uint32_t seq = m->h->msg_ev.seq, slot;
    uint64_t pos;
    ASSERT_EQ(pbx__send_has_room(m, 5), 1);
    ASSERT_EQ(pbx__send_alloc(m, 3, "quiet", 5, &slot, -1, &pos), PBX_DONE);
    pbx__send_unlock(m);
    pbx_test_wait_ok(p);
    ASSERT_EQ(m->h->msg_ev.seq, seq); /* it was never woken through the event */
    ASSERT_EQ(m->h->msg_ev.waiters, 0);
    ASSERT_OK(pbx_close(q));
}

static int send_unwoken(void *arg)
{
    (void) arg;
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    /* The mailbox is full: this send waits for room, with a deadline shorter than a slice. */
    const struct timespec limit = {0, 900000000};
    int r = pbx_timedsend(q, 4, "room", 4, 0, &limit);
    return r == 0 ? (pbx_close(q) ? 3 : 0) : 2;
}

TEST(room_made_between_a_senders_registration_and_its_look_is_seen_unwoken)
{
    pbx_t *q = open_box(2);
    ASSERT_OK(pbx_send(q, 1, "a", 1, 0));
    ASSERT_OK(pbx_send(q, 1, "b", 1, 0));
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_OK(pbx__recv_lock(m));
    pid_t p = pbx_test_fork(send_unwoken, NULL);
    ASSERT_EQ(wait_for_u32(&m->h->space_ev.waiters, 1), 1);
    ASSERT_EQ(wait_for_u32(&m->h->recv_lockers.waiters, 1), 1);
    /* Free a message under the lock, and let it go without the wake-up check. */
    uint32_t seq = m->h->space_ev.seq;
    struct pbx_pick pick;
    ASSERT_EQ(pbx__recv_pick_inbox(m, 0, 0, &pick), 0);
    char buf[8];
    uint32_t slot;
    int fire = 0;
    ASSERT_EQ(pbx__recv_take(m, &pick, buf, sizeof(buf), &slot, &fire), PBX_DONE);
    pbx__recv_unlock(m);
    pbx_test_wait_ok(p);
    ASSERT_EQ(m->h->space_ev.seq, seq);
    ASSERT_EQ(m->h->space_ev.waiters, 0);
    ASSERT_OK(pbx_close(q));
}

/* ---- processes with and without heavy fences together -------------------------------------- */

#define MIX_PRODUCERS 2
#define MIX_CONSUMERS 2
#define MIX_MSGS      20000

struct mix_board {
    uint64_t got[MIX_PRODUCERS]; /* messages received, per producer */
    uint64_t sum[MIX_PRODUCERS]; /* sum of their sequence numbers */
    uint32_t out_of_order;       /* a consumer saw a producer's numbers go back */
    uint32_t done;               /* consumers finished */
};
static struct mix_board *mix;

struct mix_msg {
    uint32_t producer;
    uint32_t seq;
};

static int mix_producer(void *arg)
{
    int id = (int) (intptr_t) arg;
    if (id % 2)
        pbx__os_asym_off(); /* every other process goes without heavy fences */
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    for (uint32_t i = 0; i < MIX_MSGS; i++) {
        struct mix_msg msg = {(uint32_t) id, i};
        if (pbx_send(q, 1 + id, &msg, sizeof(msg), 0))
            return 2;
        if (i % 100 == 99)
            usleep(200); /* let the consumers run dry and sleep now and then */
    }
    return pbx_close(q) ? 3 : 0;
}

static int mix_consumer(void *arg)
{
    int id = (int) (intptr_t) arg;
    if (id % 2 == 0)
        pbx__os_asym_off();
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 1;
    uint32_t last[MIX_PRODUCERS] = {0};
    int seen[MIX_PRODUCERS] = {0};
    for (;;) {
        struct mix_msg msg;
        long type = 0;
        ssize_t n = pbx_recv(q, 0, &msg, sizeof(msg), 0, &type);
        if (n < 0)
            return 2;
        if (type == 99)
            break; /* the end */
        if (n != sizeof(msg) || msg.producer >= MIX_PRODUCERS || type != 1 + (long) msg.producer)
            return 3;
        if (seen[msg.producer] && msg.seq <= last[msg.producer])
            __atomic_add_fetch(&mix->out_of_order, 1, __ATOMIC_RELAXED);
        seen[msg.producer] = 1;
        last[msg.producer] = msg.seq;
        __atomic_add_fetch(&mix->got[msg.producer], 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&mix->sum[msg.producer], msg.seq, __ATOMIC_RELAXED);
    }
    __atomic_add_fetch(&mix->done, 1, __ATOMIC_SEQ_CST);
    return pbx_close(q) ? 4 : 0;
}

TEST(processes_with_and_without_heavy_fences_share_a_mailbox_without_loss)
{
    mix = mmap(NULL, sizeof(*mix), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(mix != MAP_FAILED);
    memset(mix, 0, sizeof(*mix));
    /* Eight slots: senders fill it at once and sleep for room, receivers drain it and sleep
     * for messages, and several of each contend for the locks. */
    pbx_t *q = open_box(8);
    pid_t c[MIX_CONSUMERS], p[MIX_PRODUCERS];
    for (int i = 0; i < MIX_CONSUMERS; i++)
        c[i] = pbx_test_fork(mix_consumer, (void *) (intptr_t) i);
    for (int i = 0; i < MIX_PRODUCERS; i++)
        p[i] = pbx_test_fork(mix_producer, (void *) (intptr_t) i);
    for (int i = 0; i < MIX_PRODUCERS; i++)
        pbx_test_wait_ok(p[i]);
    for (int i = 0; i < MIX_CONSUMERS; i++)
        ASSERT_OK(pbx_send(q, 99, "", 0, 0));
    for (int i = 0; i < MIX_CONSUMERS; i++)
        pbx_test_wait_ok(c[i]);
    const uint64_t want_sum = (uint64_t) MIX_MSGS * (MIX_MSGS - 1) / 2;
    for (int i = 0; i < MIX_PRODUCERS; i++) {
        ASSERT_EQ(mix->got[i], MIX_MSGS);
        ASSERT_EQ(mix->sum[i], want_sum);
    }
    ASSERT_EQ(mix->out_of_order, 0);
    ASSERT_EQ(mix->done, MIX_CONSUMERS);
    /* Nobody is left registered on any event or lock. */
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_EQ(m->h->msg_ev.waiters + m->h->space_ev.waiters, 0);
    ASSERT_EQ(m->h->send_lockers.waiters + m->h->recv_lockers.waiters, 0);
    ASSERT_OK(pbx_close(q));
}
