/*
 * wait.h — sleeping until something changes in a mailbox, without a system call for those who
 * do not sleep.
 *
 * EVENTS. A mailbox has two events: msg_ev ("a message was published or put back") and
 * space_ev ("room was freed"). An event is a sequence word plus a count of sleepers. A waiter
 *   1. registers (waiters += 1, sequentially consistent) and reads the sequence word,
 *   2. re-checks its condition (a message to take, room to send),
 *   3. if still unmet, sleeps on the sequence word with the value it read (futex),
 *   4. deregisters.
 * A signaller first makes the condition true (its stores), then reads the sleeper count, and
 * only if it is non-zero bumps the sequence word and wakes all sleepers; a signaller that
 * finds no sleepers makes no system call. A store and a load on each side: the store-buffer
 * (Dekker) pattern, which with plain loads and stores can leave both sides reading the other's
 * old value, and the sleeper asleep unwoken. A full fence on each side would close it, at
 * ~5 ns on every send and receive. postbox closes it with the locks instead (LOCK CYCLE):
 *   - every signaller makes its change inside a critical section of one of the mailbox's two
 *     locks, and reads the count after taking that lock (so after its acquire);
 *   - a waiter, after registering and before its re-check, takes and releases every lock under
 *     which its condition may change (or registers while holding it).
 * The two critical sections cannot overlap. If the signaller's comes first, the waiter's
 * acquire of that lock sees the signaller's release, and with it the change: the re-check
 * finds it. If the waiter's comes first, the signaller's acquire sees the waiter's release,
 * and with it the registration: the count is not zero. Either way the wake-up is not lost,
 * and the fast path needs no fence at all; the waiter pays one lock round trip per sleep.
 * The one change made outside the locks, pbx_remove()'s flag, uses full fences on both sides
 * (pbx__event_signal_fenced, and the fence every waiter issues before its re-check).
 *
 * Waking all sleepers rather than one is deliberate: receivers wait for different types, and
 * senders for different amounts of room, so the one woken might not be the one that can
 * proceed. Every sleeper re-checks and goes back to sleep if the change was not for it.
 *
 * Before registering, a waiter may spin for a short, bounded time re-reading the one word that
 * would show progress (pbx__spin_until_change). It does not spin when the party it waits for
 * last ran on the CPU the waiter is on now (each side records its CPU with every operation),
 * nor on a one-CPU machine: there, the other party cannot run while the waiter spins, so
 * spinning would only burn the time slice the other party needs.
 */
#ifndef PBX_SHM_WAIT_H
#define PBX_SHM_WAIT_H

#include <stdint.h>

#include "../os/os.h"
#include "region.h"

/* A registration on an event. */
struct pbx_sleeper {
    uint32_t seq; /* the sequence value seen at registration: sleep while it holds */
    int slot;     /* our entry in ev->sleeper[], or -1 if the table was full */
};

/* Step 1: register as a sleeper (counted, and named in the table so that the registration can
 * be struck off if we die asleep); reads the sequence value to sleep on. */
void pbx__event_prepare(struct pbx_event *ev, struct pbx_sleeper *s);

/* Step 3: sleep until the sequence moves from s->seq, or until deadline_ns (CLOCK_MONOTONIC,
 * 0: none), or for at most slice_ns so that the caller can look after dead peers. Signals are
 * let through only during the sleep itself (see SIGNALS in os.h). Returns 0 (woken, or the
 * slice is over: re-check), -ETIMEDOUT (deadline passed) or -EINTR (a signal handler ran, now
 * or since the caller blocked signals). Stays registered. */
int pbx__event_sleep(struct pbx_event *ev, const struct pbx_sleeper *s, uint64_t deadline_ns,
                     uint64_t slice_ns, struct pbx_sigguard *g);

/* Step 4: deregister. */
void pbx__event_cancel(struct pbx_event *ev, const struct pbx_sleeper *s);

/* Wake every sleeper if there is any. The caller changed the condition inside a critical
 * section of a lock that the waiters cycle (EVENTS above), and calls this after taking that
 * lock. Returns 1 if sleepers were counted but the kernel woke none: a hint that one died
 * asleep (see pbx__event_sweep), or is about to sleep. Inline: every send and receive asks,
 * and almost always nobody sleeps. */
int pbx__event_wake(struct pbx_event *ev);
static inline int pbx__event_signal(struct pbx_event *ev)
{
    if (__builtin_expect(__atomic_load_n(&ev->waiters, __ATOMIC_RELAXED) == 0, 1))
        return 0;
    return pbx__event_wake(ev);
}
/* The same after a change made outside the locks (its store must be sequentially consistent):
 * a full fence first. */
static inline int pbx__event_signal_fenced(struct pbx_event *ev)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return pbx__event_signal(ev);
}

/* Strike off registrations whose sleeper died. Returns how many. Lock-free. */
int pbx__event_sweep(struct pbx_event *ev);
/* The same, at most once per 10 ms per event (it reads /proc for every registration): for a
 * path that keeps finding a count but nobody to wake. */
void pbx__event_sweep_lazily(struct pbx_event *ev);

/* Spin, for a bounded time, until *word has moved on from old by at least enough (unsigned
 * difference; 1 means "changed"), unless the other party (whose CPU tag is at peer_cpu, see
 * os.h) cannot run beside us. Returns 1 if it moved by enough, or by anything at all by the
 * time the spin ends; 0 if it did not move. */
int pbx__spin_until_change(const uint64_t *word, uint64_t old, uint64_t enough,
                           const uint32_t *peer_cpu);

#endif
