/*
 * lock.c — the robust shared lock described in lock.h.
 */
#include "lock.h"

#include <endian.h>
#include <errno.h>

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
    if (!pbx__os_ident_alive(ident))
        return 1;
    if (now - since_ns < LOCK_BOGUS_NS)
        return 0;
    int maps = pbx__os_maps_file(PBX_IDENT_TID(ident), ctx->dev, ctx->ino);
    if (maps == 0)
        return 1;
    if (maps < 0 && now - since_ns >= LOCK_UNREADABLE_NS && !pbx__os_ident_stopped(ident))
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
