/*
 * ahead.c — indexing a deep backlog before a selective receiver asks for it.
 *
 * INDEX AHEAD. Messages wait in the inbox, in arrival order, until a receive moves them into
 * the type index (index.c). A FIFO receiver takes them from the inbox head and never pays for
 * the index. A receiver that selects by type drains the inbox only as far as its first match
 * (INCREMENTAL DRAIN in shm.c), but one that wants the lowest type (type < 0) must drain all
 * of it, since the lowest could be anywhere: right after a burst of 10 000 messages, its first
 * receive paid for 10 000 insertions. So while a selective receiver is present, senders do the
 * indexing instead, a batch at a time, as the backlog grows:
 *   - a receive with type != 0 sets send.index_ahead (once: the handle remembers that it did,
 *     and looks again every AHEAD_RECHECK selective receives, in case another cleared it);
 *     AHEAD_CLEAR receives of type 0 in a row through one handle clear it;
 *   - a sender that finds it set after its send, with at least AHEAD_DEPTH messages published
 *     but not yet indexed, takes the receive lock if it is free — never waiting; a bias to
 *     a receiver outside its section is revoked — and drains the inbox into the index.
 * The drain is the receive side's own (queue.c), under the receive side's own lock: a sender
 * that dies inside is a receive-lock holder that died, and the next taker of that lock
 * rebuilds the index from the slots (RECOVERY in shm.c), as after any receiver. Messages keep
 * their order: the drain moves them from the inbox head, oldest first, and the index is in
 * arrival order per type. A FIFO stream pays one load per send, of a word on the line of the
 * send lock it has just held; the receive side writes that word only when the kind of
 * receiver changes.
 */
#include "../common.h"
#include "../crash.h"
#include "lock.h"
#include "shm.h"

#define AHEAD_DEPTH   32u  /* messages published but not indexed before a sender indexes them */
#define AHEAD_CLEAR   64u  /* FIFO receives in a row that say no selective receiver is left */
#define AHEAD_RECHECK 256u /* selective receives between two looks at the shared word */

void pbx__index_ahead_note(struct pbx_shm *m, long type)
{
    uint32_t *word = &m->h->send.index_ahead;
    if (type != 0) {
        m->ahead_runs = 0;
        if (m->ahead_set && ++m->ahead_sel % AHEAD_RECHECK != 0)
            return;
        m->ahead_set = 1;
        if (!PBX_LOAD(word))
            PBX_STORE(word, 1u);
        return;
    }
    if (!m->ahead_set || ++m->ahead_runs < AHEAD_CLEAR)
        return;
    m->ahead_set = 0;
    m->ahead_runs = 0;
    if (PBX_LOAD(word))
        PBX_STORE(word, 0u);
}

void pbx__index_ahead(struct pbx_shm *m)
{
    struct pbx_header *h = m->h;
    if (PBX_LOAD(&h->send.inbox_tail) - PBX_LOAD(&h->recv.inbox_head) < AHEAD_DEPTH)
        return;
    uint64_t *word = &h->recv.lock;
    uint64_t owner = __atomic_load_n(&h->recv.bias.owner, __ATOMIC_RELAXED);
    if (PBX_LOAD(word) != 0)
        return;
    if (owner != 0) {
        /* Biased: to this thread (it receives too), a take through the bias; to a receiver
         * outside its section, a take that revokes the bias (REVOCATION in lock.h), which
         * then stays off for a while (the cool-down doubles): a receiver whose backlog
         * senders index pays a compare-and-swap per take instead. Not while that receiver is
         * inside, and with the limit of a PBX_NOWAIT call (DEADLINES in lock.h). */
        if (owner != pbx__os_self()->ident && PBX_LOAD(&h->recv.bias.busy) != 0)
            return;
        if (pbx__recv_lock_until(m, PBX_LOCK_NOWAIT) != 0)
            return;
        if (!PBX_LOAD(&h->removed) && !pbx__index_ready(m)) {
            PBX_CRASH_POINT("ahead.locked");
            (void) pbx__recv_drain(m);
            PBX_CRASH_POINT("ahead.drained");
        }
        pbx__recv_unlock(m);
        return;
    }
    if (!pbx__lock_try_take(word, 0, pbx__os_self()->ident))
        return;
    /* Owner 0 read under the word: nobody is inside through a bias, nor can enter (REVOCATION
     * in lock.h). A damaged index is left for a receiver to rebuild. */
    if (__atomic_load_n(&h->recv.bias.owner, __ATOMIC_SEQ_CST) == 0 && !PBX_LOAD(&h->removed) &&
        !PBX_LOAD(&h->recv.needs_rebuild)) {
        PBX_CRASH_POINT("ahead.locked");
        (void) pbx__recv_drain(m); /* an error flags the index for the next receiver */
        PBX_CRASH_POINT("ahead.drained");
    }
    pbx__lock_release(word);
}
