/*
 * lock.h — a mutual-exclusion lock in shared memory that survives the death of its holder.
 *
 * LOCK. The lock is one 64-bit word: 0 when free, otherwise the holder's identity (thread id
 * and start time, see os.h) with bit 31 set when someone may be asleep on it. Taking it is one
 * compare-and-swap from 0 (acquire ordering); releasing it is one exchange to 0 (release
 * ordering), followed by a futex wake only when bit 31 was set — so an uncontended lock costs
 * no system call. A waiter spins briefly (only if it can run beside the holder on another
 * CPU), then sets bit 31 and sleeps on the word's low 32 bits with a short timeout.
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

#define PBX_LOCK_WAITERS 0x80000000u

/* What a waiter needs to know to judge a holder: the file the lock lives in. */
struct pbx_lock_ctx {
    dev_t dev;
    ino_t ino;
};

/* Take the lock. Returns 0 (taken), 1 (taken over from a dead or bogus holder: the caller must
 * repair the state the lock guards before relying on it), or -EDEADLK. Never -EINTR: a lock is
 * held only for short, bounded sections, so signals do not interrupt waiting for one.
 * The uncontended case, one compare-and-swap, is inline: every send and receive takes a lock. */
int pbx__lock_acquire_slow(uint64_t *word, const struct pbx_lock_ctx *ctx, uint64_t me);
/* One attempt: the word goes from expect to mine (acquire ordering). 1 if it did. */
static inline int pbx__lock_try_take(uint64_t *word, uint64_t expect, uint64_t mine)
{
    return __atomic_compare_exchange_n(word, &expect, mine, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
static inline int pbx__lock_acquire(uint64_t *word, const struct pbx_lock_ctx *ctx)
{
    const uint64_t me = pbx__os_self()->ident;
    if (__builtin_expect(pbx__lock_try_take(word, 0, me), 1))
        return 0;
    return pbx__lock_acquire_slow(word, ctx, me);
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

#endif
