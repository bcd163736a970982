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
 * (Dekker) pattern, which needs a full fence on each side, or both can read the other's old
 * value and the sleeper sleeps unwoken. (LOCK CYCLE) Every change a sleeper waits for is made
 * inside a critical section of one of the mailbox's two locks, and its wake-up check comes
 * after that lock is given back:
 *   - given back through the word, the exchange is the signaller's full fence on x86 (elsewhere
 *     pbx__event_signal issues one), and the sleeper's registration (a locked increment, then
 *     a fence) is its own;
 *   - given back through a bias (BIAS in lock.h), a plain store: no fence. A sleeper that finds
 *     the lock biased to another thread, after registering and before its last look, issues
 *     the heavy fence for the owner (ASYMMETRIC FENCES in os.h): either the owner's wake-up
 *     check comes after that barrier and sees the registration, or its change came before it
 *     and the sleeper's look sees the change. A process that did so 16 times within 10 ms
 *     revokes the bias instead (shm.c, see_lock_pass); one that finds the lock biased to its
 *     own thread needs nothing, since no other thread can be inside without revoking.
 * A receiver registers while it holds the receive lock, under which claims and repairs put
 * messages back, and then looks at the send lock, under which messages are published; a
 * sender waiting for room looks at the receive lock. The one change made outside the locks,
 * pbx_remove()'s flag, uses full fences on both sides (pbx__event_signal_fenced).
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
 *
 * ADAPTIVE SPINNING. How long a spin may last is learned per handle and side (struct
 * pbx_spin_hint), from how the recent spins ended. A spin that ended without seeing the change
 * halves the budget; after SPIN_OFF such spins in a row (wait.c) the waiter stops spinning and
 * sleeps at once, spinning again only every SPIN_PROBE_EVERY waits. One spin that sees the
 * change restores the full budget. Spinning pays
 * when the change comes within the budget; when it does not — the peer takes longer than a
 * wake-up (a 64 KiB copy each way), or is not running at all (more processes than CPUs, a busy
 * machine) — a spin that always ends in a sleep only burns CPU time, and under a fair scheduler
 * that time is taken from the spinner's next turn: the tail of the latency grows (a waiter
 * that sleeps is scheduled ahead of one that spun its share away), and the peer that would
 * have made the change waits behind the spinner on a shared CPU. Reading /proc to learn
 * whether the peer runs would cost more than the spin. The hint is process memory, read and
 * written with relaxed accesses by the handle's threads: a lost update only costs a spin more
 * or less. One thing the waiter can see without a system call is kept spinning for: the other
 * side's count of payloads being copied (send.inflight, recv.inflight), which says the peer
 * runs and is one copy away from the change.
 */
#ifndef PBX_SHM_WAIT_H
#define PBX_SHM_WAIT_H

#include <stdint.h>

#include "../os/os.h"
#include "region.h"

/* What a handle's waiters on one side learned from their recent spins (ADAPTIVE SPINNING).
 * Zero-initialised is "not learned yet": the first spin gets the full budget. */
struct pbx_spin_hint {
    uint32_t cut;     /* the budget is the full one shifted right by this; SPIN_OFF: none */
    uint32_t skipped; /* waits that did not spin since the budget fell to nothing */
};

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
 * let through only during the sleep itself (see SIGNALS in os.h). Called with cancellation
 * disabled (pbx__cancel_off, os/cancel.h): the sleep is a cancellation point, so the caller
 * pushes a cleanup handler that deregisters (step 4). Returns 0 (woken, or the
 * slice is over: re-check), -ETIMEDOUT (deadline passed) or -EINTR (a signal handler ran, now
 * or since the caller blocked signals). Stays registered. */
int pbx__event_sleep(struct pbx_event *ev, const struct pbx_sleeper *s, uint64_t deadline_ns,
                     uint64_t slice_ns, struct pbx_sigguard *g);

/* Step 4: deregister. */
void pbx__event_cancel(struct pbx_event *ev, const struct pbx_sleeper *s);

/* Wake every sleeper if there is any. The caller changed the condition inside a critical
 * section of one of the mailbox's locks and has given it back (LOCK CYCLE above). Returns 1 if
 * sleepers were counted but the kernel woke none: a hint that one died asleep (see
 * pbx__event_sweep), or is about to sleep. Inline: every send and receive asks, and almost
 * always nobody sleeps. */
int pbx__event_wake(struct pbx_event *ev);
static inline int pbx__event_signal(struct pbx_event *ev)
{
#if defined(__x86_64__) || defined(__i386__)
    /* A lock given back through its word was given back with an exchange, and on x86 a locked
     * instruction is a full barrier: a fence would only drain the store buffer again. One given
     * back through a bias is covered by the sleeper's heavy fence (LOCK CYCLE above). */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
#else
    /* Elsewhere a release exchange is no full barrier: the fence is needed. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
    if (__builtin_expect(__atomic_load_n(&ev->waiters, __ATOMIC_SEQ_CST) == 0, 1))
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

/* Spin, for a bounded time learned in hint (ADAPTIVE SPINNING above), until *word has moved on
 * from old by at least enough (unsigned difference; 1 means "changed"), unless the other party
 * (whose CPU tag is at peer_cpu, see os.h) cannot run beside us. *peer_busy is non-zero while
 * the other party is copying a large payload, the last step before the change: the spin goes
 * on past its budget while it is (up to a bound, in case that party died there). Returns 1 if
 * it moved by enough, or by anything at all by the time the spin ends; 0 if it did not move. */
int pbx__spin_until_change(const uint64_t *word, uint64_t old, uint64_t enough,
                           const uint32_t *peer_cpu, const uint64_t *peer_busy,
                           struct pbx_spin_hint *hint);

#endif
