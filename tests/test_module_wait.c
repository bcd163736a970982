/*
 * test_module_wait.c — the events of src/shm/wait.h below the public API: no wake-up is lost.
 *
 * A lost wake-up in postbox is a sleeper that registered, re-checked, and slept through the
 * change it waited for. The API tests would mostly not see one: their sleeps are cut into
 * slices that look after dead peers, and a sleeper woken by the next slice just runs late.
 * Here a producer and a consumer hand counts to each other through a window of two, each
 * sleeping on its own event (msg_ev, space_ev) with no slice at all whenever it cannot go on,
 * so nearly every step is a sleep and a wake. The two depend on each other only through the
 * events: one wake-up lost stops both for good, and the harness's time limit reports the
 * hang. Two such pairs run at once, so that every CPU is busy and the sleeps are real.
 */
#include "harness.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "shm/wait.h"
#include "testmsg.h"

#define WINDOW     2
#define STEPS      20000
#define FOREVER_NS (3600ull * 1000000000ull) /* a slice no test sees the end of */

struct pair {
    struct pbx_event msg_ev;   /* "produced moved" */
    struct pbx_event space_ev; /* "consumed moved" */
    uint64_t produced __attribute__((aligned(64)));
    uint64_t consumed __attribute__((aligned(64)));
    uint64_t sleeps __attribute__((aligned(64)));
};

static struct pair *pairs;

/* Wait on ev until *word differs from seen (the EVENTS protocol of wait.h, steps 1-4). */
static void wait_for_change(struct pbx_event *ev, const uint64_t *word, uint64_t seen,
                            uint64_t *sleeps)
{
    while (__atomic_load_n(word, __ATOMIC_SEQ_CST) == seen) {
        struct pbx_sleeper s;
        pbx__event_prepare(ev, &s);
        if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == seen) {
            struct pbx_sigguard g;
            pbx__os_sig_guard_init(&g);
            pbx__event_sleep(ev, &s, 0, FOREVER_NS, &g);
            __atomic_add_fetch(sleeps, 1, __ATOMIC_RELAXED);
        }
        pbx__event_cancel(ev, &s);
    }
}

static int producer(void *arg)
{
    struct pair *p = &pairs[(intptr_t) arg];
    for (uint64_t n = 0; n < STEPS; n++) {
        for (;;) {
            uint64_t c = __atomic_load_n(&p->consumed, __ATOMIC_SEQ_CST);
            if (n - c < WINDOW)
                break;
            wait_for_change(&p->space_ev, &p->consumed, c, &p->sleeps);
        }
        __atomic_store_n(&p->produced, n + 1, __ATOMIC_SEQ_CST);
        /* Changed outside any lock: the fenced signal (wait.h). */
        pbx__event_signal_fenced(&p->msg_ev);
    }
    return 0;
}

static int consumer(void *arg)
{
    struct pair *p = &pairs[(intptr_t) arg];
    for (uint64_t n = 0; n < STEPS; n++) {
        for (;;) {
            uint64_t v = __atomic_load_n(&p->produced, __ATOMIC_SEQ_CST);
            if (v > n)
                break;
            wait_for_change(&p->msg_ev, &p->produced, v, &p->sleeps);
        }
        __atomic_store_n(&p->consumed, n + 1, __ATOMIC_SEQ_CST);
        pbx__event_signal_fenced(&p->space_ev);
    }
    return 0;
}

TEST(no_wake_up_is_lost_when_a_producer_and_a_consumer_sleep_on_each_other)
{
    pairs = shared_alloc(2 * sizeof(*pairs));
    pid_t pid[4];
    for (intptr_t i = 0; i < 2; i++) {
        pid[2 * i] = pbx_test_fork(producer, (void *) i);
        pid[2 * i + 1] = pbx_test_fork(consumer, (void *) i);
    }
    for (int i = 0; i < 4; i++)
        pbx_test_wait_ok(pid[i]);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(pairs[i].produced, STEPS);
        ASSERT_EQ(pairs[i].consumed, STEPS);
        /* Nobody is left registered. */
        ASSERT_EQ(pairs[i].msg_ev.waiters, 0);
        ASSERT_EQ(pairs[i].space_ev.waiters, 0);
    }
    /* The storm was one: the handoffs went through sleeps, not only spins. */
    ASSERT_GT(pairs[0].sleeps + pairs[1].sleeps, 100);
    munmap(pairs, 2 * sizeof(*pairs));
}
