/*
 * lock.c — the robust shared lock described in lock.h.
 */
#include "lock.h"

#include <endian.h>
#include <errno.h>
#include <time.h>

#include "../common.h"
#include "../crash.h"
#include "../os/cancel.h"
#include "../os/os.h"

#define LOCK_SPINS     200           /* brief spin before sleeping, at most */
#define LOCK_CHECK_NS  10000000ull   /* sleep slice: re-check the holder every 10 ms */
#define LOCK_BOGUS_NS  1000000000ull /* unchanged this long: ask whether the holder maps us */
#define LOCK_NOWAIT_NS 1000000ull    /* PBX_LOCK_NOWAIT: look whether the holder runs every ms */

/* The futex is the word's low 32 bits, which hold the thread id and the waiters bit. */
static uint32_t *futex_word(uint64_t *word)
{
#if __BYTE_ORDER == __LITTLE_ENDIAN
    return (uint32_t *) word;
#else
    return (uint32_t *) word + 1;
#endif
}

/* The thread identity a lock word or a bias owner word names, without the flags beside it. */
static uint64_t holder_ident(uint64_t v)
{
    return v & ~(uint64_t) (PBX_LOCK_WAITERS | PBX_BIAS_REVOKING);
}

/* Decide whether the holder named by v (unchanged since since_ns) may be displaced: it is dead,
 * or it has held the word for a second without even mapping the mailbox (a damaged word). A
 * live holder whose mappings cannot be read (another user's process) is waited for: taking
 * over from a holder that is only slow (frozen, swapped out) would make two holders. */
static int holder_is_gone(uint64_t v, uint64_t since_ns, uint64_t now,
                          const struct pbx_lock_ctx *ctx)
{
    uint64_t ident = holder_ident(v);
    if (!pbx__ident_thread_alive(ident))
        return 1;
    if (now - since_ns < LOCK_BOGUS_NS)
        return 0;
    return pbx__os_maps_file(PBX_IDENT_TID(ident), ctx->dev, ctx->ino) == 0;
}

/* The end of a limited wait that started at now (DEADLINES in lock.h), or 0 for none. */
static uint64_t limit_end(uint64_t limit, uint64_t now)
{
    return limit == PBX_LOCK_NOWAIT ? now + PBX_LOCK_NOWAIT_NS : limit;
}

/* What a limited take that gives up returns. */
static int limit_error(uint64_t limit)
{
    return limit == PBX_LOCK_NOWAIT ? -EAGAIN : -ETIMEDOUT;
}

/* Give up a limited wait? The error to return, or 0 to go on waiting: past the end, or a
 * PBX_LOCK_NOWAIT take whose holder is stopped. */
static int limit_reached(uint64_t limit, uint64_t end, uint64_t now, uint64_t holder)
{
    if (limit == PBX_LOCK_FOREVER)
        return 0;
    if (now >= end || (limit == PBX_LOCK_NOWAIT && pbx__ident_thread_stopped(holder_ident(holder))))
        return limit_error(limit);
    return 0;
}

/* How long one sleep of a waiter lasts: the slice after which it checks the holder, cut at the
 * end of a limited wait. */
static uint64_t slice_end(uint64_t limit, uint64_t end, uint64_t now)
{
    uint64_t until = now + (limit == PBX_LOCK_NOWAIT ? LOCK_NOWAIT_NS : LOCK_CHECK_NS);
    return end && end < until ? end : until;
}

/*
 * ADAPTIVE SPIN. A waiter spins only while spinning has been paying off for its thread: the
 * spin is LOCK_SPINS >> cut rounds; a spin that does not get the lock halves it, and after
 * LOCK_SPIN_OFF of them in a row the thread goes straight to sleep, spinning again only every
 * LOCK_SPIN_PROBE contended takes; a spin that gets the lock restores the full spin. A holder that
 * is not running (preempted on a shared CPU: four producers on one CPU, a busy machine) cannot give
 * the lock back while we spin, and spinning would take the CPU from it; a pause costs up to ~140
 * cycles on recent x86, so the full spin is about 10 us of a slice. Whether the holder runs cannot
 * be read without /proc, which costs more than the spin; what the recent spins found stands for it.
 * Thread-local: a hint, for all the locks a thread takes.
 */
#define LOCK_SPIN_OFF   5u
#define LOCK_SPIN_PROBE 16u
static __thread uint32_t spin_cut, spin_skipped;

static int spin_for(uint64_t *word, uint64_t me)
{
    if (pbx__os_online_cpus() < 2)
        return 0;
    uint32_t cut = spin_cut;
    if (cut >= LOCK_SPIN_OFF) {
        if (++spin_skipped % LOCK_SPIN_PROBE != 0)
            return 0;
        cut = 0; /* a probe */
    }
    for (int i = 0; i < (LOCK_SPINS >> cut); i++) {
        pbx__os_cpu_relax();
        if (PBX_LOAD(word) == 0 && pbx__lock_try_take(word, 0, me)) {
            spin_cut = 0;
            return 1;
        }
    }
    spin_cut = spin_cut >= LOCK_SPIN_OFF ? LOCK_SPIN_OFF : spin_cut + 1;
    spin_skipped = 0;
    return 0;
}

int pbx__lock_acquire_slow(uint64_t *word, const struct pbx_lock_ctx *ctx, uint64_t me,
                           uint64_t limit)
{
    if (spin_for(word, me))
        return 0;

    uint64_t watched = 0, since = 0, end = 0;
    if (limit != PBX_LOCK_FOREVER)
        end = limit_end(limit, pbx__os_mono_ns());
    for (;;) {
        uint64_t v = PBX_LOAD(word);
        if (v == 0) {
            /* Others may still sleep: keep the bit so our release wakes one. */
            if (pbx__lock_try_take(word, 0, me | PBX_LOCK_WAITERS))
                return 0;
            continue;
        }
        if ((v & ~(uint64_t) PBX_LOCK_WAITERS) == me)
            return -EDEADLK;
        if (!(v & PBX_LOCK_WAITERS)) {
            if (!__atomic_compare_exchange_n(word, &v, v | PBX_LOCK_WAITERS, 0, __ATOMIC_RELAXED,
                                             __ATOMIC_RELAXED))
                continue;
            v |= PBX_LOCK_WAITERS;
        }
        uint64_t now = pbx__os_mono_ns();
        if (end && now >= end) /* also while the word keeps changing hands */
            return limit_error(limit);
        if (v != watched) {
            watched = v;
            since = now;
        }
        int r = pbx__os_futex_wait(futex_word(word), (uint32_t) v, slice_end(limit, end, now));
        if (r != -ETIMEDOUT || PBX_LOAD(word) != v)
            continue;
        now = pbx__os_mono_ns();
        if (holder_is_gone(v, since, now, ctx)) {
            if (pbx__lock_try_take(word, v, me | PBX_LOCK_WAITERS))
                return 1;
            continue;
        }
        if ((r = limit_reached(limit, end, now, v)))
            return r;
    }
}

void pbx__lock_wake(uint64_t *word)
{
    pbx__os_futex_wake(futex_word(word), 1);
}

/* ---- BIAS (lock.h) ----------------------------------------------------------------------- */

#define REVOKE_SPINS        1000
#define REVOKE_NAP_NS       50000ull    /* then look every 50 us */
#define REVOKE_BLIND_NS     10000000ull /* without a heavy fence: time for the owner's mark to land */
#define BIAS_LASTED_NS      1000000000ull /* a bias revoked sooner than this was not worth it */
#define BIAS_COOL_MAX_SHIFT 7             /* so the wait before a grant is at most 1.28 s */

static void nap(uint64_t ns)
{
    struct timespec t = {(time_t) (ns / 1000000000ull), (long) (ns % 1000000000ull)};
    nanosleep(&t, NULL);
}

/*
 * With the word held: revoke the bias recorded in owner word o (REVOCATION in lock.h), or
 * finish a revocation that another taker left undone (o carries PBX_BIAS_REVOKING). Returns 0
 * once the owner is out and owner is 0, 1 when the owner had died inside (the caller repairs),
 * or, past the limit, -ETIMEDOUT / -EAGAIN with the mark left for the next taker.
 */
static int bias_revoke(struct pbx_bias *b, uint64_t o, const struct pbx_lock_ctx *ctx,
                       uint64_t limit)
{
    const uint64_t target = o & ~(uint64_t) PBX_BIAS_REVOKING;
    if (!(o & PBX_BIAS_REVOKING)) {
        /* Step 1: from here on the owner's own check fails. It may be inside its fast path's
         * window, though: no other thread is granted a bias until it is known out of it. */
        PBX_STORE(&b->left, 0ull);
        PBX_STORE(&b->last_owner, target);
        __atomic_store_n(&b->owner, target | PBX_BIAS_REVOKING, __ATOMIC_SEQ_CST);
        PBX_CRASH_POINT("bias.marked");
        /* A bias revoked soon after its grant doubles the wait before the next one (a lock
         * that several take in turns stops being biased); one that lasted starts the count
         * again. */
        uint64_t now = pbx__os_mono_coarse_ns();
        uint32_t shift = PBX_LOAD(&b->cool_shift);
        if (now - PBX_LOAD(&b->granted_ns) < BIAS_LASTED_NS)
            PBX_STORE(&b->cool_shift,
                      shift < BIAS_COOL_MAX_SHIFT ? shift + 1 : BIAS_COOL_MAX_SHIFT);
        else
            PBX_STORE(&b->cool_shift, 0u);
        PBX_STORE(&b->revoked_ns, now);
    }
    /* Step 2, also when finishing another's revocation: it may have died before its fence. */
    if (pbx__os_heavy_fence() != 0) {
        PBX_STORE(&b->no_bias, 1u);
        nap(REVOKE_BLIND_NS);
    }
    PBX_CRASH_POINT("bias.fenced");
    /* Step 3. */
    int r = 0;
    for (int i = 0; i < REVOKE_SPINS; i++) {
        if (__atomic_load_n(&b->busy, __ATOMIC_ACQUIRE) != target)
            goto out;
        pbx__os_cpu_relax();
    }
    uint64_t since = pbx__os_mono_ns(), end = limit_end(limit, since);
    for (;;) {
        PBX_CRASH_POINT("bias.waiting");
        if (__atomic_load_n(&b->busy, __ATOMIC_ACQUIRE) != target)
            break;
        uint64_t now = pbx__os_mono_ns();
        if (holder_is_gone(target, since, now, ctx)) {
            uint64_t expect = target;
            if (__atomic_compare_exchange_n(&b->busy, &expect, 0, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED))
                r = 1;
            break;
        }
        int err = limit_reached(limit, end, now, target);
        if (err)
            return err;
        nap(REVOKE_NAP_NS);
    }
out:
    /* Step 4: the owner is out and cannot come back in. */
    __atomic_store_n(&b->owner, 0, __ATOMIC_SEQ_CST);
    PBX_CRASH_POINT("bias.revoked");
    return r;
}

/* May a bias be granted to me? Not while the owner revoked last may still be inside its fast
 * path's window, where its store of busy would wipe our mark (REVOCATION in lock.h). */
static int window_clear(const struct pbx_bias *b, uint64_t me)
{
    uint64_t last = PBX_LOAD(&b->last_owner);
    return last == 0 || last == me || __atomic_load_n(&b->left, __ATOMIC_ACQUIRE) == last ||
           !pbx__ident_thread_alive(last);
}

int pbx__block_acquire_slow(uint64_t *word, struct pbx_bias *b, const struct pbx_lock_ctx *ctx,
                            struct pbx_streak *st, uint64_t me, int taken, uint64_t limit)
{
    int r = 0;
    /* Inside our own biased critical section (a signal handler), with a revoker at work:
     * waiting for the word, or for ourselves to leave, would never end. */
    if (__atomic_load_n(&b->busy, __ATOMIC_RELAXED) == me) {
        if (taken)
            pbx__lock_release(word);
        return -EDEADLK;
    }
    if (!taken) {
        __atomic_store_n(&st->count, 0, __ATOMIC_RELAXED); /* someone was in the way */
        r = pbx__lock_acquire_slow(word, ctx, me, limit);
        if (r < 0)
            return r;
    }
    uint64_t o = __atomic_load_n(&b->owner, __ATOMIC_SEQ_CST);
    if (o != 0 && o != me) {
        /* The revocation naps and reads /proc with the word held: no cancellation point there
         * (CANCELLATION in os/cancel.h), or a cancelled caller would leave the word to be
         * taken over. */
        struct pbx_cancel c;
        pbx__cancel_off(&c);
        int v = bias_revoke(b, o, ctx, limit);
        pbx__cancel_restore(&c);
        __atomic_store_n(&st->count, 0, __ATOMIC_RELAXED);
        if (v < 0) {
            /* Given up: the word goes back, the mark stays in owner for the next taker. If we
             * took the word over from a dead holder, that holder never entered: a taker of the
             * word enters with owner 0 or naming itself (a grant, the o == me path), and owner
             * names a live thread that is not us, marked. It left nothing to repair. */
            pbx__lock_release(word);
            return v;
        }
        return v == 1 ? 1 : r;
    }
    if (o == 0 && r == 0 && __atomic_load_n(&st->ident, __ATOMIC_RELAXED) == me &&
        __atomic_load_n(&st->count, __ATOMIC_RELAXED) >= BIAS_STREAK) {
        /* Grant (BIAS in lock.h). This critical section stays on the word; the next take goes
         * through the bias. */
        __atomic_store_n(&st->count, 0, __ATOMIC_RELAXED);
        uint64_t now = pbx__os_mono_coarse_ns();
        uint32_t shift = PBX_LOAD(&b->cool_shift);
        int quiet = 1;
        if (st->woken) {
            uint32_t seq = PBX_LOAD(st->woken);
            quiet = seq == PBX_LOAD(&st->woken_seen);
            PBX_STORE(&st->woken_seen, seq);
        }
        if (quiet && pbx__os_asym_light_ok && !PBX_LOAD(&b->no_bias) &&
            (!st->alone || st->alone(st->arg)) &&
            now - PBX_LOAD(&b->revoked_ns) >=
                (BIAS_COOL_NS << (shift < BIAS_COOL_MAX_SHIFT ? shift : BIAS_COOL_MAX_SHIFT)) &&
            window_clear(b, me)) {
            PBX_STORE(&b->granted_ns, now);
            __atomic_store_n(&b->owner, me, __ATOMIC_SEQ_CST);
        }
    }
    return r;
}
