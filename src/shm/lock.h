/*
 * lock.h — a mutual-exclusion lock in shared memory that survives the death of its holder.
 *
 * LOCK. The lock is one 64-bit word: 0 when free, otherwise the holder's identity (thread id
 * and start time, see os.h). Taking it is one compare-and-swap from 0 (acquire ordering). A
 * waiter spins briefly (only if it can run beside the holder on another CPU), then announces
 * itself and sleeps on the word's low 32 bits in slices. Who is told about waiters, and how,
 * comes in two kinds:
 *   - with a waiter event (the shared-memory mailboxes' locks): the waiter registers in a
 *     struct pbx_event kept beside the lock (wait.h: counted, and named so that a waiter
 *     killed asleep can be struck off). Releasing is a plain store of 0, a compiler barrier
 *     (pbx__os_light_fence) and a load of the count: no locked instruction. The waiter's
 *     side of that store-buffer pattern is the heavy fence it issues once registered
 *     (ASYMMETRIC FENCES in os.h), which forces the releasers' side on them: a release either
 *     reads the count, or its store of 0 is what the waiter reads next.
 *   - without one (the spool's locks, whose on-disk state page has no room for it): bit 31 of
 *     the word says someone may be asleep; releasing is one exchange to 0, and a futex wake
 *     only when the bit was set.
 * Either way an uncontended lock costs no system call.
 *
 * Every time that sleep times out with the word unchanged, the waiter checks the holder:
 *   - the holder's thread no longer exists, or its id now belongs to a thread with another
 *     start time (PID reuse): the holder died; the waiter takes the lock over with one
 *     compare-and-swap from the exact word it saw, and is told so, so that it repairs what the
 *     dead holder left half-done before going on (see RECOVERY in shm.c);
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
 */
#ifndef PBX_SHM_LOCK_H
#define PBX_SHM_LOCK_H

#include <stdint.h>
#include <sys/types.h>

#include "../os/os.h"
#include "region.h"

#define PBX_LOCK_WAITERS 0x80000000u

/* What a waiter needs to know to judge a holder: the file the lock lives in. */
struct pbx_lock_ctx {
    dev_t dev;
    ino_t ino;
};

/* Take the lock. Returns 0 (taken), 1 (taken over from a dead or bogus holder: the caller must
 * repair the state the lock guards before relying on it), or -EDEADLK. Never -EINTR: a lock is
 * held only for short, bounded sections, so signals do not interrupt waiting for one. ev is the
 * lock's waiter event, or NULL for a lock that marks waiters in bit 31 (LOCK above).
 * The uncontended case, one compare-and-swap, is inline: every send and receive takes a lock. */
int pbx__lock_acquire_slow(uint64_t *word, struct pbx_event *ev, const struct pbx_lock_ctx *ctx,
                           uint64_t me);
/* One attempt: the word goes from expect to mine (acquire ordering). 1 if it did. */
static inline int pbx__lock_try_take(uint64_t *word, uint64_t expect, uint64_t mine)
{
    return __atomic_compare_exchange_n(word, &expect, mine, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
static inline int pbx__lock_acquire(uint64_t *word, struct pbx_event *ev,
                                    const struct pbx_lock_ctx *ctx)
{
    const uint64_t me = pbx__os_self()->ident;
    if (__builtin_expect(pbx__lock_try_take(word, 0, me), 1))
        return 0;
    return pbx__lock_acquire_slow(word, ev, ctx, me);
}

/* Release the lock taken by the caller, and wake one waiter if any is recorded
 * (pbx__lock_wake). With a waiter event: a plain store and a compiler barrier when this process
 * is registered for heavy fences, a full fence when it is not; without: one exchange. */
void pbx__lock_wake(uint64_t *word, struct pbx_event *ev);
static inline void pbx__lock_release(uint64_t *word, struct pbx_event *ev)
{
    if (ev) {
        __atomic_store_n(word, 0, __ATOMIC_RELEASE);
        pbx__os_light_fence();
        if (__builtin_expect(__atomic_load_n(&ev->waiters, __ATOMIC_RELAXED) != 0, 0))
            pbx__lock_wake(word, ev);
        return;
    }
    uint64_t old = __atomic_exchange_n(word, 0, __ATOMIC_RELEASE);
    if (__builtin_expect((old & PBX_LOCK_WAITERS) != 0, 0))
        pbx__lock_wake(word, NULL);
}

#endif
