/*
 * lock.c — the robust shared lock described in lock.h.
 */
#include "lock.h"

#include <endian.h>
#include <errno.h>
#include <time.h>

#include "../common.h"
#include "../os/os.h"

#define LOCK_SPINS         200            /* brief spin before sleeping */
#define LOCK_CHECK_NS      10000000ull    /* sleep slice: re-check the holder every 10 ms */
#define LOCK_BOGUS_NS      1000000000ull  /* unchanged this long: ask whether the holder maps us */
#define LOCK_UNREADABLE_NS 10000000000ull /* unchanged this long and unverifiable: take over */

/* The futex is the word's low 32 bits, which hold the thread id and the waiters bit. */
static uint32_t *futex_word(uint64_t *word)
{
#if __BYTE_ORDER == __LITTLE_ENDIAN
    return (uint32_t *) word;
#else
    return (uint32_t *) word + 1;
#endif
}

/* Decide whether the holder named by v (unchanged since since_ns) may be displaced. */
static int holder_is_gone(uint64_t v, uint64_t since_ns, uint64_t now,
                          const struct pbx_lock_ctx *ctx)
{
    uint64_t ident = v & ~(uint64_t) PBX_LOCK_WAITERS;
    if (!pbx__ident_thread_alive(ident))
        return 1;
    if (now - since_ns < LOCK_BOGUS_NS)
        return 0;
    int maps = pbx__os_maps_file(PBX_IDENT_TID(ident), ctx->dev, ctx->ino);
    if (maps == 0)
        return 1;
    if (maps < 0 && now - since_ns >= LOCK_UNREADABLE_NS && !pbx__ident_thread_stopped(ident))
        return 1;
    return 0;
}

int pbx__lock_acquire_slow(uint64_t *word, const struct pbx_lock_ctx *ctx, uint64_t me)
{
    if (pbx__os_online_cpus() > 1) {
        for (int i = 0; i < LOCK_SPINS; i++) {
            pbx__os_cpu_relax();
            if (PBX_LOAD(word) == 0 && pbx__lock_try_take(word, 0, me))
                return 0;
        }
    }

    uint64_t watched = 0, since = 0;
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
        if (v != watched) {
            watched = v;
            since = now;
        }
        int r = pbx__os_futex_wait(futex_word(word), (uint32_t) v, now + LOCK_CHECK_NS);
        if (r != -ETIMEDOUT || PBX_LOAD(word) != v)
            continue;
        if (holder_is_gone(v, since, pbx__os_mono_ns(), ctx) &&
            pbx__lock_try_take(word, v, me | PBX_LOCK_WAITERS))
            return 1;
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

/* With the word held: take the bias away from owner o and wait until it is out of its critical
 * section. 0, or 1 when o died inside it (the caller repairs). */
static int bias_revoke(struct pbx_bias *b, uint64_t o, const struct pbx_lock_ctx *ctx)
{
    __atomic_store_n(&b->owner, 0, __ATOMIC_SEQ_CST);
    /* A bias revoked soon after its grant doubles the wait before the next one (a lock that
     * several take in turns stops being biased); one that lasted starts the count again. */
    uint64_t now = pbx__os_mono_coarse_ns();
    uint32_t shift = PBX_LOAD(&b->cool_shift);
    if (now - PBX_LOAD(&b->granted_ns) < BIAS_LASTED_NS)
        PBX_STORE(&b->cool_shift, shift < BIAS_COOL_MAX_SHIFT ? shift + 1 : BIAS_COOL_MAX_SHIFT);
    else
        PBX_STORE(&b->cool_shift, 0u);
    PBX_STORE(&b->revoked_ns, now);
    if (pbx__os_heavy_fence() != 0) {
        PBX_STORE(&b->no_bias, 1u);
        nap(REVOKE_BLIND_NS);
    }
    for (int i = 0; i < REVOKE_SPINS; i++) {
        if (__atomic_load_n(&b->busy, __ATOMIC_ACQUIRE) != o)
            return 0;
        pbx__os_cpu_relax();
    }
    uint64_t since = pbx__os_mono_ns();
    for (;;) {
        if (__atomic_load_n(&b->busy, __ATOMIC_ACQUIRE) != o)
            return 0;
        if (holder_is_gone(o, since, pbx__os_mono_ns(), ctx) &&
            __atomic_compare_exchange_n(&b->busy, &o, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return 1;
        nap(REVOKE_NAP_NS);
    }
}

int pbx__block_acquire_slow(uint64_t *word, struct pbx_bias *b, const struct pbx_lock_ctx *ctx,
                            struct pbx_streak *st, uint64_t me, int taken)
{
    int r = 0;
    if (!taken) {
        __atomic_store_n(&st->count, 0, __ATOMIC_RELAXED); /* someone was in the way */
        r = pbx__lock_acquire_slow(word, ctx, me);
        if (r < 0)
            return r;
    }
    uint64_t o = __atomic_load_n(&b->owner, __ATOMIC_SEQ_CST);
    if (o != 0 && o != me) {
        if (bias_revoke(b, o, ctx) == 1)
            r = 1;
        __atomic_store_n(&st->count, 0, __ATOMIC_RELAXED);
        return r;
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
                (BIAS_COOL_NS << (shift < BIAS_COOL_MAX_SHIFT ? shift : BIAS_COOL_MAX_SHIFT))) {
            PBX_STORE(&b->granted_ns, now);
            __atomic_store_n(&b->owner, me, __ATOMIC_SEQ_CST);
        }
    }
    return r;
}
