/*
 * recover.c — putting a mailbox right after a participant died in the middle of something.
 *
 * There are two kinds of leftovers (see RECOVERY in queue.c):
 *
 *   1. A step cut short inside a critical section. The lock passes to a waiter, which finds
 *      the step's undo log on the lock's line and either completes it (the commit point was
 *      reached: the inbox entry is there, or recvd_msgs moved) or undoes it. Then the receive
 *      side rebuilds its index from the slots, since the dead holder may have been half-way
 *      through changing it. Every repair here is idempotent, so a second crash during a
 *      repair is repaired the same way by the next taker.
 *
 *   2. A slot held outside the locks by a process that died there: WRITING (a sender copying a
 *      large payload: its send had not returned, so the slot is given back and nothing becomes
 *      visible) or READING (a receiver copying one out: its receive had not returned, so the
 *      message goes back where it was — it is still the oldest of its type, and the rebuilt
 *      index orders by arrival number). These are found by a search over the slots, which
 *      holds both locks so that no step is half-done while it looks, and which judges each
 *      owner by its identity (thread id and start time), so a recycled PID is not mistaken
 *      for the owner. The search runs when a lock was taken over, and when a waiter has slept
 *      a whole slice while something is in flight, at most every 100 ms per mailbox.
 *      Loans (loan.c) are held the same way by a process rather than a thread: a send loan is
 *      LENT (given back like WRITING), a receive loan CLAIMED (put back like READING).
 */
#include <errno.h>

#include "../crash.h"
#include "../os/cancel.h"
#include "../os/os.h"
#include "shm.h"
#include "wait.h"

#define SCAN_INTERVAL_NS 100000000ull

/* Make sure the next look for orphans happens: used after a repair, when the in-flight counts
 * may be off by one. Too high is harmless (the search recounts); too low could hide an orphan. */
static void bump_hint(uint64_t *inflight)
{
    PBX_STORE(inflight, PBX_LOAD(inflight) + 1);
}

void pbx__recover_send(struct pbx_shm *m)
{
    struct pbx_send_side *s = &m->h->send;
    uint32_t op = PBX_ACQUIRE(&s->log_op);
    if (op == PBX_LOG_NONE)
        return;

    /* Each counter goes straight from the log to its final value: undone, or, if the step
     * had committed, done. A repair cut short by another crash is done again from the same log,
     * and leaves no counter on a value that was never true (pbx_stat() reads them unlocked). */
    uint32_t slot = s->log_slot;
    int known = slot < m->geo.nslots && op >= PBX_LOG_ALLOC && op <= PBX_LOG_PUBLISH;
    uint64_t tail = s->log_inbox_tail;
    int committed =
        known && op != PBX_LOG_ALLOC &&
        PBX_ACQUIRE(&m->inbox[tail & m->geo.inbox_mask]) == pbx__inbox_entry(m, tail, slot);
    /* Only the send side's own counters are completed. The slot was marked QUEUED before the
     * entry was written, and since then it belongs to the receivers: one may already have
     * taken it, freed it, and a sender reused it. An allocation published in the same step is
     * counted again; a large message was counted when its slot was allocated. */
    uint64_t again = committed && op == PBX_LOG_ALLOC_PUBLISH;
    s->free_head = s->log_free_head + again;
    s->chunk_head = s->log_chunk_head;
    PBX_STORE(&s->inbox_tail, tail + (uint64_t) committed);
    PBX_STORE(&s->sent_msgs, s->log_sent_msgs + again);
    PBX_STORE(&s->sent_bytes, s->log_sent_bytes + (again ? s->log_len : 0));
    PBX_CRASH_POINT("repair.send"); /* the log is still there: the next taker does it again */

    if (known && !committed) {
        /* A publication that did not happen leaves the slot to its (dead) writer, which the
         * orphan search gives back; an allocation that did not finish is simply undone. */
        uint32_t back = PBX_SLOT_FREE;
        if (op == PBX_LOG_PUBLISH)
            back = s->log_prev_state == PBX_SLOT_LENT ? PBX_SLOT_LENT : PBX_SLOT_WRITING;
        PBX_STORE(&m->slots[slot].state, back);
    }
    bump_hint(&s->inflight);
    PBX_RELEASE(&s->log_op, (uint32_t) PBX_LOG_NONE);
}

/* Liveness answers for one search, so each owner costs one look in /proc. A slot in WRITING or
 * READING is held by a thread (the sender or receiver inside its call): the THREAD RULE of
 * ident.h. A CLAIMED slot is held by a process, which may go on after its main thread exited:
 * the PROCESS RULE. The same word can name both (a main thread and its process), so the
 * answers are kept by rule. */
struct alive_cache {
    uint64_t ident[16];
    uint8_t process[16];
    uint8_t alive[16];
    unsigned n;
};

static int owner_alive(struct alive_cache *c, uint64_t ident, uint32_t state)
{
    uint8_t process = state == PBX_SLOT_CLAIMED || state == PBX_SLOT_LENT;
    for (unsigned i = 0; i < c->n; i++)
        if (c->ident[i] == ident && c->process[i] == process)
            return c->alive[i];
    int alive = process ? pbx__ident_process_alive(ident) : pbx__ident_thread_alive(ident);
    if (c->n < PBX_ARRAY_LEN(c->ident)) {
        c->ident[c->n] = ident;
        c->process[c->n] = process;
        c->alive[c->n] = (uint8_t) alive;
        c->n++;
    }
    return alive;
}

/* READING slots whose receiver died go back to QUEUED; the caller rebuilds the index. */
static int requeue_dead_readers(struct pbx_shm *m, struct alive_cache *cache)
{
    int n = 0;
    for (uint32_t i = 0; i < m->geo.nslots; i++) {
        struct pbx_slot *sl = &m->slots[i];
        if (PBX_LOAD(&sl->state) == PBX_SLOT_READING &&
            !owner_alive(cache, sl->owner, PBX_SLOT_READING)) {
            PBX_STORE(&sl->state, (uint32_t) PBX_SLOT_QUEUED);
            n++;
        }
    }
    return n;
}

int pbx__recover_recv(struct pbx_shm *m)
{
    struct pbx_recv_side *r = &m->h->recv;
    uint32_t op = PBX_ACQUIRE(&r->log_op);
    uint32_t slot = r->log_slot;
    if (op == PBX_LOG_FREE && slot < m->geo.nslots) {
        struct pbx_slot *sl = &m->slots[slot];
        uint64_t *count = pbx__free_counter(r, r->log_why);
        /* As on the send side, each counter goes straight to its final value. Committed (the
         * free's commit point, recvd_msgs, moved): the receive side's own counters are
         * finished. The slot and the ring entries were written before the commit, and senders
         * may already be reusing them: they are not touched. The length comes from the log,
         * not the slot, for that reason. Not committed: undone. */
        uint64_t committed = PBX_LOAD(&r->recvd_msgs) != r->log_recvd_msgs;
        uint32_t len = committed ? r->log_len : 0;
        r->free_tail = r->log_free_tail + committed;
        r->chunk_tail = r->log_chunk_tail + pbx__chunks_for(len, m->geo.chunk_size);
        PBX_STORE(count, r->log_count + committed);
        PBX_RELEASE(&r->recvd_bytes, r->log_recvd_bytes + len);
        PBX_CRASH_POINT("repair.recv"); /* the log is still there: the next taker does it again */
        if (!committed) {
            /* The receive never returned, so its message is still queued; a dead sender's slot
             * stays its orphan, and a cancelled loan stays lent (its owner cancels it again, or
             * the orphan search gives it back). */
            uint32_t prev = r->log_prev_state;
            PBX_STORE(&sl->state, (uint32_t) (prev == PBX_SLOT_WRITING || prev == PBX_SLOT_LENT
                                                  ? prev
                                                  : PBX_SLOT_QUEUED));
        }
    }
    PBX_RELEASE(&r->log_op, (uint8_t) PBX_LOG_NONE);

    struct alive_cache cache = {.n = 0};
    requeue_dead_readers(m, &cache);
    bump_hint(&r->inflight);
    /* Claims change state only under this lock: count them afresh, since the dead holder may
     * have been between a claim's state and its count, or an ack's. */
    uint64_t claimed = 0;
    for (uint32_t i = 0; i < m->geo.nslots; i++)
        claimed += PBX_LOAD(&m->slots[i].state) == PBX_SLOT_CLAIMED;
    PBX_STORE(&r->claimed, claimed);
    PBX_STORE(&r->needs_rebuild, 1u);
    return pbx__index_rebuild(m);
}

int pbx__recover_orphans(struct pbx_shm *m, int *fire)
{
    struct alive_cache cache = {.n = 0};
    uint64_t writing = 0, reading = 0, claimed = 0;
    int repaired = 0, requeued = 0;
    for (uint32_t i = 0; i < m->geo.nslots; i++) {
        struct pbx_slot *sl = &m->slots[i];
        uint32_t st = PBX_LOAD(&sl->state);
        if (st != PBX_SLOT_WRITING && st != PBX_SLOT_READING && st != PBX_SLOT_CLAIMED &&
            st != PBX_SLOT_LENT)
            continue;
        if (owner_alive(&cache, sl->owner, st)) {
            *(st == PBX_SLOT_WRITING || st == PBX_SLOT_LENT ? &writing
              : st == PBX_SLOT_READING                      ? &reading
                                                            : &claimed) += 1;
        } else if (st == PBX_SLOT_WRITING || st == PBX_SLOT_LENT) {
            /* A dead sender's copy, or a dead process's send loan: never published, given
             * back. */
            if (pbx__slot_free(m, i, PBX_FREE_ORPHAN) == 0)
                repaired++;
            PBX_CRASH_POINT("repair.orphan");
        } else {
            /* A dead receiver's READING slot, or a dead claimer's CLAIMED one: its receive never
             * returned, or its claim was never acknowledged. Back in its place (the rebuild
             * orders by arrival number), for another receiver to take. */
            PBX_STORE(&sl->state, (uint32_t) PBX_SLOT_QUEUED);
            requeued++;
            PBX_CRASH_POINT("repair.orphan");
        }
    }
    PBX_STORE(&m->h->send.inflight, writing);
    PBX_STORE(&m->h->recv.inflight, reading);
    PBX_STORE(&m->h->recv.claimed, claimed);
    if (requeued) {
        int err = pbx__index_rebuild(m);
        if (err < 0)
            return err;
    }
    /* LISTENERS (listen.c): both locks are held, so the count can be made exact again. */
    if (pbx__listening(m))
        *fire = pbx__listen_recount(m);
    return repaired + requeued;
}

/* pbx__look_after_dead_peers, once it has been decided to look. */
static int look_after(struct pbx_shm *m, int inflight, int sleepers, int syncs)
{
    struct pbx_header *h = m->h;
    int n = 0;
    if (sleepers)
        n = pbx__event_sweep(&h->msg_ev) + pbx__event_sweep(&h->space_ev);
    if (syncs)
        pbx__sync_prune(m);
    if (inflight) {
        /* Housekeeping, done by whoever passes: never waits on a lock holder that is not
         * running (DEADLINES in lock.h), so that a PBX_NOWAIT call that passes here does not
         * either. Another pass does it then. */
        int err = pbx__send_lock_until(m, PBX_LOCK_NOWAIT);
        if (err)
            return err == -EAGAIN ? n : err;
        if ((err = pbx__recv_lock_until(m, PBX_LOCK_NOWAIT))) {
            pbx__send_unlock(m);
            return err == -EAGAIN ? n : err;
        }
        int fire = 0;
        err = pbx__index_ready(m);
        if (!err)
            err = pbx__recover_orphans(m, &fire);
        pbx__recv_unlock(m);
        pbx__send_unlock(m);
        if (err < 0)
            return err;
        if (err > 0) {
            __atomic_add_fetch(&h->repairs, (uint64_t) err, __ATOMIC_RELAXED);
            pbx__event_signal(&h->msg_ev);
            pbx__event_signal(&h->space_ev);
        }
        /* Messages came back into an empty mailbox: registrants and watchers hear of it. */
        if (fire)
            pbx__listen_fire(m);
        n += err;
    }
    return n;
}

int pbx__look_after_dead_peers(struct pbx_shm *m, int force)
{
    struct pbx_header *h = m->h;
    int inflight =
        PBX_LOAD(&h->send.inflight) || PBX_LOAD(&h->recv.inflight) || PBX_LOAD(&h->recv.claimed);
    int sleepers = PBX_LOAD(&h->msg_ev.waiters) || PBX_LOAD(&h->space_ev.waiters);
    int syncs = PBX_LOAD(&h->sync_count) != 0;
    if (!inflight && !sleepers && !syncs)
        return 0;
    uint64_t now = pbx__os_mono_ns();
    uint64_t last = PBX_LOAD(&h->last_scan_ns);
    if (!force && now - last < SCAN_INTERVAL_NS)
        return 0;
    if (!__atomic_compare_exchange_n(&h->last_scan_ns, &last, now, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED) &&
        !force)
        return 0; /* another process is looking right now */

    /* The search reads /proc and takes both locks: cancellation points with state half
     * changed, so cancellation waits until it is over (CANCELLATION in os/cancel.h). */
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int n = look_after(m, inflight, sleepers, syncs);
    pbx__cancel_restore(&c);
    return n;
}
