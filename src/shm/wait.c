/*
 * wait.c — events and bounded spinning, as described in wait.h.
 */
#include "wait.h"

#include <errno.h>
#include <limits.h>

#include "../common.h"
#include "../os/cancel.h"
#include "../os/os.h"

/* How long a waiter spins before it sleeps. A wake-up through the kernel costs a few
 * microseconds on each side, so spinning for a similar time catches a peer that is about to
 * act without wasting much when it is not. */
/* With the other party on this CPU, spinning cannot help: it cannot run until we stop. Nor does
 * sched_yield(): tried, it halved a same-CPU ping-pong (3.3 -> 1.7 us) but made waking a
 * receiver that sleeps while the sender is idle five times slower (2.7 -> 11 us), because the
 * scheduler then no longer lets the woken receiver preempt the sender. The waiter sleeps. */
#define SPIN_NS        20000u
#define SPIN_MAX_PAUSE 64u /* pause instructions between two reads, at most */
/* ADAPTIVE SPINNING (wait.h): the budget is SPIN_NS >> hint->cut. Each spin that ends without
 * the change halves it; SPIN_OFF of them in a row, and the waiter sleeps at once, spinning
 * (with the full budget) only every SPIN_PROBE_EVERY waits, to notice that the peer has become
 * quick again. One spin that sees the change gives the full budget back: on a busy machine a
 * quick peer is now and then preempted, and a waiter that then stopped spinning would add a
 * wake-up to every later round trip. */
#define SPIN_OFF         5u
#define SPIN_PROBE_EVERY 8u
/* A spin whose peer is visibly at work on the change (a large payload being copied in or out)
 * goes on past its budget while that lasts, up to this long: the change is one copy away, and
 * a sleep would add a wake-up to it. */
#define SPIN_BUSY_NS 100000u

/*
 * The sleeper table. An entry holds the sleeper's identity while it is registered, with
 * PBX_SLEEPER_COUNTED set once its registration is included in ev->waiters. Registration
 * claims an entry, counts itself, then marks the entry; deregistration unmarks, uncounts, then
 * frees the entry. A sweeper that finds an entry of a dead sleeper frees it and uncounts it if
 * it was marked. A sleeper killed between counting and marking (a few instructions) leaves the
 * count one too high: that only costs a futex wake that finds nobody, never a lost wake-up.
 */
void pbx__event_prepare(struct pbx_event *ev, struct pbx_sleeper *s)
{
    const struct pbx_self *self = pbx__os_self();
    s->slot = -1;
    for (unsigned i = 0; i < PBX_SLEEPERS; i++) {
        unsigned k = ((unsigned) self->tid + i) % PBX_SLEEPERS;
        uint64_t zero = 0;
        if (PBX_LOAD(&ev->sleeper[k]) == 0 &&
            __atomic_compare_exchange_n(&ev->sleeper[k], &zero, self->ident, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            s->slot = (int) k;
            break;
        }
    }
    __atomic_add_fetch(&ev->waiters, 1, __ATOMIC_SEQ_CST);
    if (s->slot >= 0)
        PBX_STORE(&ev->sleeper[s->slot], self->ident | PBX_SLEEPER_COUNTED);
    s->seq = __atomic_load_n(&ev->seq, __ATOMIC_SEQ_CST);
}

void pbx__event_cancel(struct pbx_event *ev, const struct pbx_sleeper *s)
{
    if (s->slot >= 0)
        PBX_STORE(&ev->sleeper[s->slot], pbx__os_self()->ident);
    __atomic_sub_fetch(&ev->waiters, 1, __ATOMIC_RELAXED);
    if (s->slot >= 0)
        PBX_STORE(&ev->sleeper[s->slot], 0);
}

int pbx__event_sweep(struct pbx_event *ev)
{
    int n = 0;
    for (unsigned i = 0; i < PBX_SLEEPERS; i++) {
        uint64_t v = PBX_LOAD(&ev->sleeper[i]);
        if (v == 0 || pbx__ident_thread_alive(v & ~PBX_SLEEPER_COUNTED))
            continue;
        if (!__atomic_compare_exchange_n(&ev->sleeper[i], &v, 0, 0, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED))
            continue;
        if (v & PBX_SLEEPER_COUNTED) {
            /* Never below zero, whatever a damaged count says. */
            uint32_t w = PBX_LOAD(&ev->waiters);
            while (w && !__atomic_compare_exchange_n(&ev->waiters, &w, w - 1, 0, __ATOMIC_RELAXED,
                                                     __ATOMIC_RELAXED))
                ;
        }
        n++;
    }
    return n;
}

int pbx__event_sleep(struct pbx_event *ev, const struct pbx_sleeper *s, uint64_t deadline_ns,
                     uint64_t slice_ns, struct pbx_sigguard *g)
{
    if (pbx__os_sig_caught_pending(g))
        return -EINTR;
    /* The coarse clock is enough to place the end of a slice; a deadline the coarse clock has
     * not reached yet but the real one has is caught by the futex wait, which is given the
     * deadline itself and returns -ETIMEDOUT at once. */
    uint64_t now = pbx__os_mono_coarse_ns();
    if (deadline_ns && now >= deadline_ns)
        return -ETIMEDOUT;
    uint64_t until = now + slice_ns;
    int capped = deadline_ns && deadline_ns < until;
    /* The one place a waiting send or receive can be cancelled (CANCELLATION in
     * os/cancel.h); the caller's cleanup handler takes the registration back. */
    struct pbx_cancel_wait cw;
    pbx__cancel_wait_begin(&cw, 1);
    int r = pbx__os_futex_wait_unblocked(&ev->seq, s->seq, capped ? deadline_ns : until, g);
    pbx__cancel_wait_end(&cw);
    if (r == -ETIMEDOUT && !capped)
        r = 0;
    return r;
}

int pbx__event_wake(struct pbx_event *ev)
{
    __atomic_add_fetch(&ev->seq, 1, __ATOMIC_SEQ_CST);
    return pbx__os_futex_wake(&ev->seq, INT_MAX) == 0;
}

/* A spin saw the change: the full budget again (ADAPTIVE SPINNING in wait.h). */
static void spin_paid(struct pbx_spin_hint *hint)
{
    if (PBX_LOAD(&hint->cut) != 0)
        PBX_STORE(&hint->cut, 0u);
}

int pbx__spin_until_change(const uint64_t *word, uint64_t old, uint64_t enough,
                           const uint32_t *peer_cpu, const uint64_t *peer_busy,
                           struct pbx_spin_hint *hint)
{
    uint32_t peer = PBX_LOAD(peer_cpu);
    if (pbx__os_online_cpus() < 2 || (peer != 0 && peer == pbx__os_cpu_tag()))
        return 0;
    uint32_t cut = PBX_LOAD(&hint->cut);
    if (cut >= SPIN_OFF) {
        uint32_t n = PBX_LOAD(&hint->skipped) + 1;
        PBX_STORE(&hint->skipped, n);
        if (n % SPIN_PROBE_EVERY != 0)
            return 0;
        cut = 0; /* a probe */
    }
    const uint64_t budget = SPIN_NS >> cut;
    /* Every read of the word pulls its cache line away from the party that writes it, which
     * must then win it back before its next write: a waiter that reads in a tight loop slows
     * down the very party it waits for. A sender waiting for a batch of room (enough > 1) has
     * no hurry, so the pause between its reads doubles up to SPIN_MAX_PAUSE; a receiver waiting
     * for the next message reads at once, since every pause adds to its latency. */
    uint64_t start = pbx__os_mono_ns();
    unsigned pause = 1, max_pause = enough > 1 ? SPIN_MAX_PAUSE : 1;
    for (;;) {
        for (int i = 0; i < 16; i++) {
            if (PBX_ACQUIRE(word) - old >= enough) {
                spin_paid(hint);
                return 1;
            }
            for (unsigned k = 0; k < pause; k++)
                pbx__os_cpu_relax();
            if (pause < max_pause)
                pause *= 2;
        }
        uint64_t took = pbx__os_mono_ns() - start;
        if (took > budget && (took > SPIN_BUSY_NS || PBX_LOAD(peer_busy) == 0)) {
            if (PBX_ACQUIRE(word) - old >= enough) {
                spin_paid(hint);
                return 1;
            }
            /* Not in time: halve the budget, or stop spinning (ADAPTIVE SPINNING). A failed
             * probe leaves spinning off. */
            uint32_t was = PBX_LOAD(&hint->cut);
            PBX_STORE(&hint->cut, was >= SPIN_OFF ? SPIN_OFF : was + 1);
            PBX_STORE(&hint->skipped, 0u);
            return PBX_ACQUIRE(word) != old;
        }
    }
}
