/*
 * sync.c — PBX_SYNC: a send that returns once a receiver has taken the message (the lecture's
 * synchronous send).
 *
 * SYNC. The header holds PBX_SYNC_ENTRIES entries. A sync sender claims one (compare-and-swap
 * of its thread identity from 0, or from the identity of a thread that died) and counts it in
 * sync_count on the control line. Under the send lock, just before the inbox entry that
 * publishes its message, it stores the message's arrival number in the entry and marks it
 * WAITING (release; the inbox entry's release orders it before the publication). A receiver
 * that frees a message — the commit of pbx_recv(), or of pbx_ack() after pbx_claim() — reads
 * sync_count (one load of the control line, which it reads anyway) and only when it is non-zero
 * looks for a WAITING entry with that arrival number, marks it TAKEN (DROPPED if the message
 * was discarded by PBX_DROP_OLDEST) and wakes it with a futex.
 *
 * The sender sleeps on its entry's state in slices of 100 ms. A receiver that dies before the
 * free commits leaves the message to be put back by the orphan search, which the waiting
 * sender runs between slices, so it is taken again and the sender released then. A receiver
 * that dies in the few instructions between the commit and the marking leaves the entry
 * WAITING with the message gone: every tenth slice the sender looks for its message among
 * the slots and, when no slot holds it any more, counts it taken. A sender that dies while it
 * waits leaves an entry naming a dead thread: the next look after dead peers frees it
 * (pbx__sync_prune), or a receiver that looked through the table in vain (at most once a
 * second), and until then a sync sender that finds no free entry takes it over; meanwhile
 * sync_count still counts it, which costs receivers a look at the table, nothing else. pbx_remove()
 * wakes every waiting sync sender with -EIDRM.
 */
#include <errno.h>
#include <limits.h>

#include "../os/cancel.h"
#include "../os/os.h"
#include "shm.h"

#define SYNC_SLICE_NS   100000000ull
#define SYNC_SCAN_EVERY 10 /* slices between two looks for a message that vanished */

int pbx__sync_begin(struct pbx_shm *m)
{
    const uint64_t me = pbx__os_self()->ident;
    struct pbx_sync_entry *t = m->h->sync;
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < PBX_SYNC_ENTRIES; i++) {
            uint64_t v = PBX_LOAD(&t[i].ident);
            if (pass == 0 ? v != 0 : (v == 0 || pbx__ident_thread_alive(v)))
                continue;
            if (!__atomic_compare_exchange_n(&t[i].ident, &v, me, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_RELAXED))
                continue;
            PBX_STORE(&t[i].state, (uint32_t) PBX_SYNC_IDLE);
            if (v == 0) /* an entry taken over from a dead sender is counted already */
                __atomic_add_fetch(&m->h->sync_count, 1, __ATOMIC_SEQ_CST);
            return (int) i;
        }
    }
    return -EUSERS;
}

void pbx__sync_publish(struct pbx_shm *m, int sync, uint64_t seq)
{
    struct pbx_sync_entry *e = &m->h->sync[sync];
    PBX_STORE(&e->seq, seq);
    PBX_RELEASE(&e->state, (uint32_t) PBX_SYNC_WAITING);
}

void pbx__sync_complete(struct pbx_shm *m, uint64_t seq, int dropped)
{
    struct pbx_sync_entry *t = m->h->sync;
    int found = 0;
    for (unsigned i = 0; i < PBX_SYNC_ENTRIES; i++) {
        if (PBX_ACQUIRE(&t[i].state) != PBX_SYNC_WAITING || PBX_LOAD(&t[i].seq) != seq)
            continue;
        PBX_RELEASE(&t[i].state, (uint32_t) (dropped ? PBX_SYNC_DROPPED : PBX_SYNC_TAKEN));
        pbx__os_futex_wake(&t[i].state, INT_MAX);
        found = 1;
    }
    /* Looked in vain: perhaps only dead senders' entries keep sync_count up. At most once a
     * second, free them, so that receivers stop looking. */
    if (!found && pbx__prune_due(m))
        pbx__sync_prune(m);
}

/* Does any slot still hold the message that arrived at seq? */
static int message_exists(const struct pbx_shm *m, uint64_t seq)
{
    for (uint32_t i = 0; i < m->geo.nslots; i++) {
        const struct pbx_slot *s = &m->slots[i];
        if (PBX_LOAD(&s->state) != PBX_SLOT_FREE && PBX_LOAD(&s->seq) == seq)
            return 1;
    }
    return 0;
}

int pbx__sync_wait(struct pbx_shm *m, int sync, uint64_t deadline_ns, struct pbx_sigguard *g)
{
    struct pbx_sync_entry *e = &m->h->sync[sync];
    uint64_t seq = PBX_LOAD(&e->seq);
    for (unsigned slices = 1;; slices++) {
        uint32_t st = PBX_ACQUIRE(&e->state);
        if (st == PBX_SYNC_TAKEN)
            return 0;
        if (st == PBX_SYNC_DROPPED)
            return -ENOBUFS;
        if (st != PBX_SYNC_WAITING)
            return -EBADMSG; /* damaged */
        if (PBX_LOAD(&m->h->removed))
            return -EIDRM;
        if (slices % SYNC_SCAN_EVERY == 0 && !message_exists(m, seq))
            return 0;
        if (g->slept && !g->blocked) {
            pbx__os_sig_block(g); /* SIGNALS in os.h: look once more with signals blocked */
            continue;
        }
        if (pbx__os_sig_caught_pending(g))
            return -EINTR;
        uint64_t now = pbx__os_mono_ns();
        if (deadline_ns && now >= deadline_ns)
            return -ETIMEDOUT;
        uint64_t until = now + SYNC_SLICE_NS;
        int capped = deadline_ns && deadline_ns < until;
        struct pbx_cancel_wait cw; /* a cancellation point: shm_send cleans up (cancel.h) */
        pbx__cancel_wait_begin(&cw, 1);
        int r = pbx__os_futex_wait_unblocked(&e->state, PBX_SYNC_WAITING,
                                             capped ? deadline_ns : until, g);
        pbx__cancel_wait_end(&cw);
        if (r == -EINTR)
            return PBX_LOAD(&m->h->removed) ? -EIDRM : -EINTR;
        if (r == -ETIMEDOUT && PBX_ACQUIRE(&e->state) == PBX_SYNC_WAITING)
            pbx__look_after_dead_peers(m, 0); /* a dead receiver may hold our message */
    }
}

void pbx__sync_end(struct pbx_shm *m, int sync)
{
    struct pbx_sync_entry *e = &m->h->sync[sync];
    uint64_t me = pbx__os_self()->ident;
    PBX_STORE(&e->state, (uint32_t) PBX_SYNC_IDLE);
    if (__atomic_compare_exchange_n(&e->ident, &me, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
        uint32_t v = PBX_LOAD(&m->h->sync_count);
        while (v && !__atomic_compare_exchange_n(&m->h->sync_count, &v, v - 1, 0, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_RELAXED))
            ;
    }
}

void pbx__sync_let_go(void *hold)
{
    pbx__cancel_landed();
    const struct pbx_sync_hold *h = hold;
    pbx__sync_end(h->m, h->sync);
}

int pbx__sync_prune(struct pbx_shm *m)
{
    int n = 0;
    for (unsigned i = 0; i < PBX_SYNC_ENTRIES; i++) {
        uint64_t v = PBX_LOAD(&m->h->sync[i].ident);
        if (!v || pbx__ident_thread_alive(v))
            continue;
        if (!__atomic_compare_exchange_n(&m->h->sync[i].ident, &v, 0, 0, __ATOMIC_RELEASE,
                                         __ATOMIC_RELAXED))
            continue;
        PBX_STORE(&m->h->sync[i].state, (uint32_t) PBX_SYNC_IDLE);
        uint32_t c = PBX_LOAD(&m->h->sync_count);
        while (c && !__atomic_compare_exchange_n(&m->h->sync_count, &c, c - 1, 0, __ATOMIC_SEQ_CST,
                                                 __ATOMIC_RELAXED))
            ;
        n++;
    }
    return n;
}

void pbx__sync_wake_all(struct pbx_shm *m)
{
    if (!PBX_LOAD(&m->h->sync_count))
        return;
    for (unsigned i = 0; i < PBX_SYNC_ENTRIES; i++)
        if (PBX_LOAD(&m->h->sync[i].state) == PBX_SYNC_WAITING)
            pbx__os_futex_wake(&m->h->sync[i].state, INT_MAX);
}
