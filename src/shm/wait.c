/*
 * wait.c — events and bounded spinning, as described in wait.h.
 */
#include "wait.h"

#include <errno.h>
#include <limits.h>

#include "../common.h"
#include "../os/os.h"

/* How long a waiter spins before it sleeps. A wake-up through the kernel costs a few
 * microseconds on each side, so spinning for a similar time catches a peer that is about to
 * act without wasting much when it is not. */
#define SPIN_NS 20000u

uint32_t pbx__event_prepare(struct pbx_event *ev)
{
    __atomic_add_fetch(&ev->waiters, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&ev->seq, __ATOMIC_SEQ_CST);
}

void pbx__event_cancel(struct pbx_event *ev)
{
    __atomic_sub_fetch(&ev->waiters, 1, __ATOMIC_RELAXED);
}

int pbx__event_wait(struct pbx_event *ev, uint32_t seq, uint64_t deadline_ns, uint64_t slice_ns)
{
    uint64_t now = pbx__os_mono_ns();
    int r;
    if (deadline_ns && now >= deadline_ns) {
        r = -ETIMEDOUT;
    } else {
        uint64_t until = now + slice_ns;
        int capped = deadline_ns && deadline_ns < until;
        r = pbx__os_futex_wait(&ev->seq, seq, capped ? deadline_ns : until);
        if (r == -ETIMEDOUT)
            r = capped ? -ETIMEDOUT : 0;
    }
    __atomic_sub_fetch(&ev->waiters, 1, __ATOMIC_RELAXED);
    return r;
}

void pbx__event_signal(struct pbx_event *ev)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (PBX_UNLIKELY(__atomic_load_n(&ev->waiters, __ATOMIC_SEQ_CST) != 0)) {
        __atomic_add_fetch(&ev->seq, 1, __ATOMIC_SEQ_CST);
        pbx__os_futex_wake(&ev->seq, INT_MAX);
    }
}

int pbx__spin_until_change(const uint64_t *word, uint64_t old, const uint32_t *peer_cpu)
{
    uint32_t peer = PBX_LOAD(peer_cpu);
    if (pbx__os_online_cpus() < 2 || (peer != 0 && peer == pbx__os_cpu_tag()))
        return 0;
    uint64_t start = pbx__os_mono_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (PBX_ACQUIRE(word) != old)
                return 1;
            pbx__os_cpu_relax();
        }
        if (pbx__os_mono_ns() - start > SPIN_NS)
            return 0;
    }
}
