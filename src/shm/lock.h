/*
 * lock.h — a mutual-exclusion lock in shared memory that survives the death of its holder.
 *
 * LOCK. The lock is one 64-bit word: 0 when free, otherwise the holder's identity (thread id
 * and start time, see os.h) with bit 31 set when someone may be asleep on it. Taking it is one
 * compare-and-swap from 0 (acquire ordering); releasing it is one exchange to 0 (release
 * ordering), followed by a futex wake only when bit 31 was set — so an uncontended lock costs
 * no system call. A waiter spins briefly (only if it can run beside the holder on another
 * CPU, and only as long as recent spins of its thread got the lock: ADAPTIVE SPIN in lock.c),
 * then sets bit 31 and sleeps on the word's low 32 bits with a short timeout.
 *
 * Every time that sleep times out with the word unchanged, the waiter checks the holder:
 *   - the holder's thread no longer exists, or its id now belongs to a thread with another
 *     start time (PID reuse): the holder died; the waiter takes the lock over with one
 *     compare-and-swap from the exact word it saw, and is told so, so that it repairs what the
 *     dead holder left half-done before going on (see RECOVERY in queue.c);
 *   - the word has named the same live thread for more than a second and that thread's
 *     process does not even map this mailbox: the word was damaged (invariant 4); taken over;
 *   - if that cannot be checked (another user's process), the waiter takes over after ten
 *     seconds of an unchanged word unless the holder is stopped (SIGSTOP, a debugger).
 * The glibc robust mutex is deliberately not used: under storms of SIGKILL its waiters have
 * been seen asleep on a lock that was free, and it cannot detect a damaged word.
 *
 * A word that names the caller's own thread means a signal handler re-entered postbox while
 * the interrupted code held the lock (or the word was damaged to name us): the call fails with
 * -EDEADLK rather than breaking the interrupted critical section.
 *
 * BIAS. Between two CPUs, every locked instruction waits until the caller's earlier stores have
 * reached lines the other CPU holds, so a compare-and-swap and an exchange per message cap a
 * stream at what one cache-line round trip allows (bench/lock_model.c). A shared-memory
 * mailbox's lock can therefore be biased to the one thread that keeps taking it (struct
 * pbx_bias, beside the lock). The owner takes the lock by storing its identity in busy and
 * checking that the bias is still its own, and gives it back by storing 0 in busy: no locked
 * instruction. Anyone else takes the word as before, then revokes the bias (REVOCATION below).
 *
 * REVOCATION. owner is 0 (no bias), O (biased to thread O), or O | PBX_BIAS_REVOKING (a
 * revocation of O is under way). The one rule every taker of the word obeys: it enters its
 * critical section only once it has read owner == 0, and owner becomes 0 only when O is known
 * to be outside and unable to enter. A revoker, holding the word:
 *   1. marks owner O | PBX_BIAS_REVOKING: O's own check (owner == O) fails from now on;
 *   2. issues the heavy fence (ASYMMETRIC FENCES in os.h). Afterwards either O's check came
 *      after the fence and saw the mark (it backs off, clears busy and takes the word), or
 *      O's busy mark, stored before its check, is visible to the revoker;
 *   3. waits until busy no longer names O (O left), or O is dead (busy cleared by
 *      compare-and-swap, and the caller repairs what O left half-done);
 *   4. stores owner = 0, and only then enters.
 * A revoker that dies or gives up (a deadline, DEADLINES below) anywhere in 1-3 leaves the mark
 * in owner, and still holds the word or has given it back: the next taker of the word — by
 * take-over from the dead revoker, or plainly — finds owner != 0 and does the revocation again
 * from step 2 (the fence again: the dead revoker may not have issued it). So no taker ever
 * enters beside a biased owner, whoever dies or stops at whatever instruction; the protocol is
 * checked exhaustively by the model in tests/model/bias.pml (every interleaving, with deaths).
 *   busy is one word for every owner, written with plain stores. A revoked owner may still be
 * inside its fast path's window — it read owner == itself, and has not yet stored busy — and
 * could store busy long after (preempted, stopped), wiping the mark of a later owner. So after
 * a revocation the bias is granted again only to the same thread (last_owner), or once that
 * thread is known out of the window (it backed off in its fast path and said so in left) or
 * dead. Known gap: a signal handler that interrupts that window and itself backs off says so
 * for the interrupted code too.
 *   - A bias is granted, under the word, to a thread of a process registered for heavy fences
 *     and alone on its side of the mailbox (streak->alone), once it has taken the word
 *     BIAS_STREAK times in a row through the handle with nobody in its way and without waking
 *     a sleeper of the other side meanwhile (a sleeper would have to pay a heavy fence), and
 *     no sooner than BIAS_COOL_NS after the last revocation. That wait doubles
 *     with every bias revoked within a second of its grant, up to 1.28 s: a revocation costs a
 *     membarrier(2) (0.3 us, or ~14 us on a VM when the owner runs), so a lock that several
 *     threads take in turns soon stays unbiased.
 *   - A process that cannot issue heavy fences sets no_bias for good at open; it still revokes
 *     a bias granted before, with a 10 ms pause instead of the fence (the time for the owner's
 *     mark to reach memory, which in practice takes nanoseconds).
 *   - Sleepers: a release through the bias issues no fence before the wake-up check after it
 *     (LOCK CYCLE in wait.h): a sleeper that finds the lock biased to another thread issues
 *     the heavy fence itself, or revokes the bias once it has done so 16 times within 10 ms
 *     (shm.c, see_lock_pass).
 *
 * DEADLINES. A take may be limited (a limit argument): PBX_LOCK_FOREVER waits as long as the
 * holder lives; an absolute CLOCK_MONOTONIC deadline gives -ETIMEDOUT once it passes; and
 * PBX_LOCK_NOWAIT (a PBX_NOWAIT call) gives -EAGAIN as soon as the holder is seen stopped
 * (SIGSTOP, a debugger), and in any case after PBX_LOCK_NOWAIT_NS, so that a non-blocking call
 * never waits on a process that is not running (the kernel's IPC_NOWAIT never waits on
 * another process at all; its locks are spin locks whose holders cannot be stopped). A limited
 * take waits for a holder that is running (critical sections are short), and a holder that
 * is alive but cannot be inspected is never taken over (no second holder): only a dead holder,
 * or a word naming a live thread that does not map the mailbox, is.
 */
#ifndef PBX_SHM_LOCK_H
#define PBX_SHM_LOCK_H

#include <stdint.h>
#include <sys/types.h>

#include "../os/os.h"
#include "region.h"
#include <errno.h>

#define PBX_LOCK_WAITERS 0x80000000u
/* In a bias's owner word: a revocation of that owner is under way (REVOCATION above). Thread
 * ids take the low 30 bits of an identity (os.h), so bit 30 is free. */
#define PBX_BIAS_REVOKING 0x40000000u

/* Limits of a take (DEADLINES above); any other value is an absolute CLOCK_MONOTONIC deadline
 * in ns. */
#define PBX_LOCK_FOREVER   0ull
#define PBX_LOCK_NOWAIT    1ull
#define PBX_LOCK_NOWAIT_NS 1000000000ull /* the longest a PBX_NOWAIT take waits for a holder */

/* The limit of a call's lock takes: PBX_LOCK_NOWAIT for a non-blocking call, its deadline for a
 * timed one (0: none). Only the first take of an operation is limited: a take that finishes
 * what the call began (a large message's publication, a receive's free) must not give up
 * halfway. Both transports use it. */
static inline uint64_t pbx__lock_limit(int nowait, uint64_t deadline_ns)
{
    if (nowait)
        return PBX_LOCK_NOWAIT;
    return deadline_ns ? deadline_ns : PBX_LOCK_FOREVER;
}

/* What a waiter needs to know to judge a holder: the file the lock lives in. */
struct pbx_lock_ctx {
    dev_t dev;
    ino_t ino;
};

/* Take the lock. Returns 0 (taken), 1 (taken over from a dead or bogus holder: the caller must
 * repair the state the lock guards before relying on it), -EDEADLK, or with a limit (DEADLINES
 * above) -ETIMEDOUT or -EAGAIN. Never -EINTR: a lock is held only for short, bounded sections,
 * so signals do not interrupt waiting for one. The uncontended case, one compare-and-swap, is
 * inline: every send and receive takes a lock. */
int pbx__lock_acquire_slow(uint64_t *word, const struct pbx_lock_ctx *ctx, uint64_t me,
                           uint64_t limit);
/* One attempt: the word goes from expect to mine. 1 if it did. Sequentially consistent, not
 * just acquire: a sleeper that saw the lock free before this take must be counted by the
 * wake-up check after it (LOCK CYCLE in wait.h). On x86 it is the same instruction. */
static inline int pbx__lock_try_take(uint64_t *word, uint64_t expect, uint64_t mine)
{
    return __atomic_compare_exchange_n(word, &expect, mine, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}
static inline int pbx__lock_acquire_until(uint64_t *word, const struct pbx_lock_ctx *ctx,
                                          uint64_t limit)
{
    const uint64_t me = pbx__os_self()->ident;
    if (__builtin_expect(pbx__lock_try_take(word, 0, me), 1))
        return 0;
    return pbx__lock_acquire_slow(word, ctx, me, limit);
}
static inline int pbx__lock_acquire(uint64_t *word, const struct pbx_lock_ctx *ctx)
{
    return pbx__lock_acquire_until(word, ctx, PBX_LOCK_FOREVER);
}

/* Release the lock taken by the caller: one exchange, and a futex wake only when a waiter
 * marked the word (pbx__lock_wake). */
void pbx__lock_wake(uint64_t *word);
static inline void pbx__lock_release(uint64_t *word)
{
    uint64_t old = __atomic_exchange_n(word, 0, __ATOMIC_RELEASE);
    if (__builtin_expect((old & PBX_LOCK_WAITERS) != 0, 0))
        pbx__lock_wake(word);
}

/* The biased lock (BIAS above). streak is the handle's own count of takes in a row (process
 * memory, shared by the process's threads as a hint), broken by another thread's take or by a
 * take that had to wait; whether other processes use the side is asked only at the grant. */
#define BIAS_STREAK  4096
#define BIAS_COOL_NS 10000000ull
struct pbx_streak {
    uint64_t ident;
    uint32_t count;
    int (*alone)(void *arg); /* 1 if no other process uses this side: only then a grant */
    void *arg;
    const uint32_t *woken; /* the sequence word of the event this side's holders signal */
    uint32_t woken_seen;   /* its value at the last grant attempt: a change is a sleeper */
};
/* Out of line: take the word (waiting, taking over), revoke another thread's bias or finish a
 * revocation left undone, grant one. Same results as pbx__lock_acquire_until; 1 also when the
 * revoked owner died busy. */
int pbx__block_acquire_slow(uint64_t *word, struct pbx_bias *b, const struct pbx_lock_ctx *ctx,
                            struct pbx_streak *st, uint64_t me, int taken, uint64_t limit);
static inline int pbx__block_acquire(uint64_t *word, struct pbx_bias *b,
                                     const struct pbx_lock_ctx *ctx, struct pbx_streak *st,
                                     uint64_t limit)
{
    const uint64_t me = pbx__os_self()->ident;
    /* Registered for heavy fences now, not only when the bias was granted: the same thread
     * identity survives an exec(), into an image that may not be. */
    if (__builtin_expect(__atomic_load_n(&b->owner, __ATOMIC_RELAXED) == me, 1) &&
        __builtin_expect(__atomic_load_n(&pbx__os_asym_light_ok, __ATOMIC_RELAXED), 1)) {
        if (__atomic_load_n(&b->busy, __ATOMIC_RELAXED) == me ||
            (__atomic_load_n(word, __ATOMIC_RELAXED) & ~(uint64_t) PBX_LOCK_WAITERS) == me)
            return -EDEADLK; /* a signal handler inside our own critical section */
        __atomic_store_n(&b->busy, me, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the revoker's heavy fence does the rest */
        if (__builtin_expect(__atomic_load_n(&b->owner, __ATOMIC_ACQUIRE) == me, 1))
            return 0;
        __atomic_store_n(&b->busy, 0, __ATOMIC_RELEASE);  /* revoked meanwhile */
        __atomic_store_n(&b->left, me, __ATOMIC_RELEASE); /* out of the window (REVOCATION) */
    }
    int taken = pbx__lock_try_take(word, 0, me);
    /* owner == 0 under the word: nobody is or can be inside through a bias (REVOCATION). */
    if (__builtin_expect(taken && __atomic_load_n(&b->owner, __ATOMIC_SEQ_CST) == 0, 1)) {
        /* Nobody in the way: one more in the streak (BIAS above). Nothing shared is read
         * here: under contention this is inside the critical section. */
        uint64_t who = __atomic_load_n(&st->ident, __ATOMIC_RELAXED);
        uint32_t n = __atomic_load_n(&st->count, __ATOMIC_RELAXED);
        if (who != me) {
            __atomic_store_n(&st->ident, me, __ATOMIC_RELAXED);
            n = 0;
        }
        __atomic_store_n(&st->count, n + 1, __ATOMIC_RELAXED);
        if (__builtin_expect(n + 1 < BIAS_STREAK, 1))
            return 0;
    }
    return pbx__block_acquire_slow(word, b, ctx, st, me, taken, limit);
}
/* Give the biased lock back: through the bias if that is how it was taken, else the word. */
static inline void pbx__block_release(uint64_t *word, struct pbx_bias *b)
{
    if (__atomic_load_n(&b->busy, __ATOMIC_RELAXED) == pbx__os_self()->ident) {
        __atomic_store_n(&b->busy, 0, __ATOMIC_RELEASE);
        return;
    }
    pbx__lock_release(word);
}

#endif
