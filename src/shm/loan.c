/*
 * loan.c — zero-copy loans on a shared-memory mailbox (pbx_loan() and the rest, postbox.h).
 *
 * LOANS. A loan is a slot handed to a process to use in place, outside the locks, with the same
 * machinery that already lets a sender copy a large payload in (WRITING) and a claimer hold a
 * message (CLAIMED):
 *
 *   send loan     under the send lock, a slot and its chunks are taken exactly as for a large
 *                 send (the same undo log, PBX_LOG_ALLOC), but the slot is marked LENT and
 *                 owned by the process, not the thread: a loan may outlive the thread that took
 *                 it. Its room is counted (sent_msgs, sent_bytes) and nothing is published.
 *                 pbx_commit() stores the type and publishes the slot under the send lock with
 *                 the one store that commits every send (the inbox entry, RECOVERY in
 *                 queue.c); pbx_cancel() frees it under the receive lock, as a receive frees a
 *                 slot, logged the same way (PBX_LOG_FREE, whose undo puts LENT back).
 *   receive loan  a pbx_claim() that copies nothing: the message leaves the index and becomes
 *                 CLAIMED by the process; pbx_return() acknowledges it (frees the slot).
 *
 * Crashes: a LENT slot whose process is dead is freed by the orphan search like a dead
 * sender's WRITING slot (nothing was published); a CLAIMED one is put back in its place by the
 * rebuild of the index, as a dead receiver's READING slot is. A crash inside pbx_commit() or
 * pbx_cancel() is a crash inside a logged step: the publication is completed or undone (back to
 * LENT, then given back as above), the free is completed or undone (back to LENT).
 *
 * A held receive loan is never written: its slot is out of the index (no receiver selects it,
 * PBX_DROP_OLDEST does not drop it: it drops only what the index holds) and not on the free
 * rings (no sender takes it or its chunks), until it is returned.
 *
 * Each handle keeps, per slot, the id of the loan it holds there (m->loans). Ending a loan
 * first swaps that id to 0, so a loan is ended once however many threads or copies of the
 * struct try; then the slot's state and owner are checked under the lock, so that a fork()ed
 * child, which inherits the table but not the loans, cannot end its parent's. pbx_close() ends
 * what is left. The payload is reached through pbx_loan_piece(), which walks the slot's chunk
 * chain with every chunk number checked against the private geometry: a peer that scribbles
 * on the chain can make it fail (-EBADMSG), never point outside the mapping.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../crash.h"
#include "../os/cancel.h"
#include "../os/os.h"
#include "../transport.h"
#include "shm.h"
#include "wait.h"

#define LOAN_SLOT_BITS 24 /* as claim ids: max_msgs <= 2^24 */
#define LOAN_SLOT_MASK ((1u << LOAN_SLOT_BITS) - 1)
#define LOAN_GEN_MASK  ((1ull << 39) - 1)

/* The loan's words of priv (PBX_LOAN_KIND is word 0). */
#define PRIV_CURSOR 1 /* pbx_loan_piece(): (ordinal of a chunk + 1) << 32 | that chunk, or 0 */

/* A table inherited through fork() names the parent's loans, none of which the child holds: it
 * is emptied before the child records a loan of its own, lest closing the handle end the child's
 * loan on a slot that a stale entry names (pbx__loans_end_all). */
static int table_ready(struct pbx_shm *m)
{
    const int32_t me = pbx__os_self()->pid;
    if (__atomic_load_n(&m->loans, __ATOMIC_ACQUIRE) &&
        __atomic_load_n(&m->loans_pid, __ATOMIC_RELAXED) == me)
        return 0;
    int err = 0;
    pthread_mutex_lock(&m->reg_lock);
    if (m->loans && m->loans_pid != me) {
        for (uint32_t s = 0; s < m->geo.nslots; s++)
            __atomic_store_n(&m->loans[s], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&m->loans_pid, me, __ATOMIC_RELAXED);
    } else if (!m->loans) {
        uint64_t *t = calloc(m->geo.nslots, sizeof(*t));
        __atomic_store_n(&m->loans_pid, me, __ATOMIC_RELAXED);
        if (t)
            __atomic_store_n(&m->loans, t, __ATOMIC_RELEASE);
        else
            err = -ENOMEM;
    }
    pthread_mutex_unlock(&m->reg_lock);
    return err;
}

/* Take the loan out of this handle's table: its slot, or -ENOENT if this handle does not hold
 * it (ended already, another handle's, a stale copy). */
static int loan_take(struct pbx_shm *m, const struct pbx_loan *l, uint32_t *slot)
{
    uint64_t id = l->id;
    uint32_t s = (uint32_t) (id & LOAN_SLOT_MASK);
    uint64_t *t = __atomic_load_n(&m->loans, __ATOMIC_ACQUIRE);
    if (!t || id == 0 || s >= m->geo.nslots)
        return -ENOENT;
    if (!__atomic_compare_exchange_n(&t[s], &id, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return -ENOENT;
    *slot = s;
    return 0;
}

static int loan_held(const struct pbx_shm *m, const struct pbx_loan *l)
{
    uint32_t s = (uint32_t) (l->id & LOAN_SLOT_MASK);
    const uint64_t *t = __atomic_load_n(&m->loans, __ATOMIC_ACQUIRE);
    return t && l->id && s < m->geo.nslots && __atomic_load_n(&t[s], __ATOMIC_RELAXED) == l->id;
}

static void fill(struct pbx_loan *l, uint64_t id, uint32_t len, long type, uint64_t kind)
{
    l->id = id;
    l->len = len;
    l->type = type;
    l->priv[PBX_LOAN_KIND] = kind;
    l->priv[PRIV_CURSOR] = 0;
}

/* ---- send loans ------------------------------------------------------------------------ */

int pbx__send_lend(struct pbx_shm *m, uint32_t len, uint32_t *slot_out)
{
    struct pbx_send_side *side = &m->h->send;
    const uint32_t k = pbx__chunks_for(len, m->geo.chunk_size);
    const uint64_t fh = side->free_head, ch = side->chunk_head;
    uint32_t s, first;
    int err = pbx__send_take(m, k, &s, &first); /* as pbx__send_alloc() does */
    if (err)
        return err;

    pbx__send_log(m, PBX_LOG_ALLOC, s, len);
    side->free_head = fh + 1;
    side->chunk_head = ch + k;
    PBX_STORE(&side->sent_msgs, side->sent_msgs + 1);
    PBX_STORE(&side->sent_bytes, side->sent_bytes + len);
    struct pbx_slot *slot = &m->slots[s];
    slot->type = 0;
    slot->len = len;
    slot->chunk = first;
    slot->next = PBX_NONE;
    slot->seq = UINT64_MAX; /* no arrival number until published (SYNC looks at it) */
    slot->owner = pbx__ident_process();
    /* RECOVERY: counted in flight before it is marked, so the hint never misses it. */
    PBX_STORE(&side->inflight, side->inflight + 1);
    PBX_STORE(&slot->state, (uint32_t) PBX_SLOT_LENT);
    PBX_CRASH_POINT("loan.allocating"); /* LENT, but the log still says: undo the allocation */
    pbx__send_log_clear(m);
    *slot_out = s;
    return 0;
}

/* Under the receive lock: give a LENT slot back (a cancel, or a close). */
static int free_lent(struct pbx_shm *m, uint32_t s)
{
    struct pbx_slot *sl = &m->slots[s];
    if (PBX_LOAD(&sl->state) != PBX_SLOT_LENT || sl->owner != pbx__ident_process())
        return -ENOENT;
    PBX_CRASH_POINT("loan.cancelling");
    /* Counted as an orphan's: neither received nor dropped. send.inflight stays one too high
     * (it belongs to the send lock): a hint, recounted by the next search. */
    return pbx__slot_free(m, s, PBX_FREE_ORPHAN);
}

static int cancel_slot(struct pbx_shm *m, uint32_t s)
{
    int err = pbx__recv_lock(m);
    if (err)
        return err;
    err = PBX_LOAD(&m->h->removed) ? -EIDRM : free_lent(m, s);
    pbx__recv_unlock(m);
    if (!err)
        pbx__event_signal(&m->h->space_ev);
    return err;
}

int pbx__loan_record_send(struct pbx_shm *m, uint32_t s, uint32_t len, struct pbx_loan *l)
{
    int err = table_ready(m);
    if (err) {
        cancel_slot(m, s);
        return err;
    }
    uint64_t gen = (__atomic_add_fetch(&m->loan_gen, 1, __ATOMIC_RELAXED) & LOAN_GEN_MASK) + 1;
    uint64_t id = gen << LOAN_SLOT_BITS | s;
    __atomic_store_n(&m->loans[s], id, __ATOMIC_RELEASE);
    fill(l, id, len, 0, PBX_LOAN_SEND);
    return 0;
}

/* PBX_SYNC: wait for the take of the message published with sync entry sync, which a cancel
 * (the wait is a cancellation point, as a PBX_SYNC send's) gives back. */
static int wait_taken(struct pbx_shm *m, int sync)
{
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    struct pbx_sync_hold hold = {m, sync};
    int r;
    pthread_cleanup_push(pbx__sync_let_go, &hold);
    r = pbx__sync_wait(m, sync, 0, &g);
    pthread_cleanup_pop(1);
    pbx__os_sig_restore(&g);
    return r;
}

int pbx__shm_commit(void *state, struct pbx_loan *l, long type, int flags)
{
    struct pbx_shm *m = state;
    PBX_CRASH_POINT("loan.held"); /* a process that dies holding a send loan */
    int sync = -1;
    if ((flags & PBX_SYNC) && (sync = pbx__sync_begin(m)) < 0)
        return sync; /* -EUSERS: the loan is still held */
    uint32_t s;
    int err = loan_take(m, l, &s);
    /* The slot is ours until published; a cancel here would leave it LENT to a live process. */
    if (!err)
        err = pbx__send_lock(m);
    if (err) {
        if (sync >= 0)
            pbx__sync_end(m, sync);
        return err;
    }
    struct pbx_slot *sl = &m->slots[s];
    uint64_t pos = 0;
    if (PBX_LOAD(&m->h->removed))
        err = -EIDRM;
    else if (PBX_LOAD(&sl->state) != PBX_SLOT_LENT || sl->owner != pbx__ident_process())
        err = -ENOENT;
    else {
        sl->type = type;
        PBX_CRASH_POINT("loan.committing");
        pbx__send_publish(m, s, sync, &pos);
    }
    pbx__send_unlock(m);
    if (err) {
        if (sync >= 0)
            pbx__sync_end(m, sync);
        return err;
    }
    if (pbx__event_signal(&m->h->msg_ev))
        pbx__look_after_dead_peers(m, 0);
    if (PBX_UNLIKELY(pbx__listening(m)))
        pbx__listen_arrived(m, pos); /* (cancellation is disabled by the API layer) */
    return sync >= 0 ? wait_taken(m, sync) : 0;
}

int pbx__shm_cancel(void *state, struct pbx_loan *l)
{
    struct pbx_shm *m = state;
    PBX_CRASH_POINT("loan.held");
    uint32_t s;
    int err = loan_take(m, l, &s);
    return err ? err : cancel_slot(m, s);
}

/* ---- receive loans --------------------------------------------------------------------- */

static int settle(struct pbx_shm *m, uint32_t s, uint64_t id, int ack);

int pbx__loan_record_recv(struct pbx_shm *m, uint64_t claim, uint32_t len, long type,
                          struct pbx_loan *l)
{
    uint32_t s = (uint32_t) (claim & LOAN_SLOT_MASK);
    int err = table_ready(m);
    if (err) {
        settle(m, s, claim, 0); /* back in its place, as if never taken */
        return err;
    }
    __atomic_store_n(&m->loans[s], claim, __ATOMIC_RELEASE);
    fill(l, claim, len, type, PBX_LOAN_RECV);
    return 0;
}

/* Under the receive lock: free (ack) or put back (release) the CLAIMED slot of a receive loan. */
static int settle_locked(struct pbx_shm *m, uint32_t s, uint64_t id, int ack, int *fire)
{
    struct pbx_recv_side *r = &m->h->recv;
    struct pbx_slot *sl = &m->slots[s];
    if (PBX_LOAD(&sl->state) != PBX_SLOT_CLAIMED || sl->owner != pbx__ident_process() ||
        pbx__claim_id(m, s) != id)
        return -ENOENT;
    int err;
    if (ack) {
        PBX_CRASH_POINT("loan.returning");
        err = pbx__slot_free(m, s, PBX_FREE_RECEIVED);
    } else if (!(err = pbx__index_ready(m))) {
        int was_empty = pbx__listening(m) && pbx__listen_is_empty(m);
        PBX_STORE(&sl->state, (uint32_t) PBX_SLOT_QUEUED);
        err = pbx__index_insert_in_order(m, s);
        if (err) /* the slot is QUEUED: the rebuild puts it in its place */
            err = pbx__index_rebuild(m);
        if (!err && was_empty)
            *fire = pbx__listen_released(m, 1);
    }
    if (!err && r->claimed)
        PBX_STORE(&r->claimed, r->claimed - 1);
    return err;
}

static int settle(struct pbx_shm *m, uint32_t s, uint64_t id, int ack)
{
    int err = pbx__recv_lock(m);
    if (err)
        return err;
    int fire = 0;
    err = PBX_LOAD(&m->h->removed) ? -EIDRM : settle_locked(m, s, id, ack, &fire);
    pbx__recv_unlock(m);
    if (err)
        return err;
    pbx__event_signal(ack ? &m->h->space_ev : &m->h->msg_ev);
    if (fire)
        pbx__listen_fire(m);
    return 0;
}

int pbx__shm_give_back(void *state, struct pbx_loan *l)
{
    struct pbx_shm *m = state;
    PBX_CRASH_POINT("loan.viewed"); /* a process that dies holding a receive loan */
    uint64_t id = l->id;
    uint32_t s;
    int err = loan_take(m, l, &s);
    return err ? err : settle(m, s, id, 1);
}

/* ---- the payload in place -------------------------------------------------------------- */

ssize_t pbx__shm_piece(void *state, struct pbx_loan *l, size_t off, void **ptr)
{
    struct pbx_shm *m = state;
    if (!loan_held(m, l) || l->len > m->geo.max_msg_size)
        return -EINVAL;
    size_t len = l->len;
    if (off >= len)
        return 0;
    struct pbx_slot *sl = &m->slots[l->id & LOAN_SLOT_MASK];
    if (off < PBX_SLOT_INLINE) {
        *ptr = sl->data + off;
        return (ssize_t) ((len < PBX_SLOT_INLINE ? len : PBX_SLOT_INLINE) - off);
    }
    const uint32_t cs = m->geo.chunk_size;
    uint64_t want = (off - PBX_SLOT_INLINE) / cs; /* ordinal of the chunk that holds off */
    /* Start from the cursor when it is at or before the chunk wanted: walking in order is
     * one step per piece. */
    uint64_t cur = l->priv[PRIV_CURSOR];
    uint64_t at = 0;
    uint32_t c = PBX_LOAD(&sl->chunk);
    if (cur && (cur >> 32) - 1 <= want) {
        at = (cur >> 32) - 1;
        c = (uint32_t) cur;
    }
    for (;;) {
        if (c >= m->geo.nchunks)
            return -EBADMSG;
        if (at == want)
            break;
        c = PBX_LOAD(&m->chunk_next[c]);
        at++;
    }
    l->priv[PRIV_CURSOR] = (at + 1) << 32 | c;
    size_t within = (off - PBX_SLOT_INLINE) % cs;
    *ptr = m->chunk_data + (uint64_t) c * cs + within;
    size_t n = cs - within;
    return (ssize_t) (n < len - off ? n : len - off);
}

/* ---- close ----------------------------------------------------------------------------- */

void pbx__loans_end_all(struct pbx_shm *m)
{
    uint64_t *t = m->loans;
    if (!t)
        return;
    /* A table inherited through fork() and not used since holds none of our loans. */
    for (uint32_t s = 0; m->loans_pid == pbx__os_self()->pid && s < m->geo.nslots; s++) {
        uint64_t id = t[s];
        if (!id)
            continue;
        t[s] = 0;
        /* Whichever state the slot is in says which kind of loan it was; a slot that is in
         * neither for this process (a fork()ed child's inherited table) is not ours. */
        uint32_t st = PBX_LOAD(&m->slots[s].state);
        if (st == PBX_SLOT_LENT)
            cancel_slot(m, s);
        else if (st == PBX_SLOT_CLAIMED)
            settle(m, s, id, 0);
    }
    free(t);
    m->loans = NULL;
}
