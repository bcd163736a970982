/*
 * shm.h — the shared-memory transport's private view of an open mailbox, and the operations its
 * files share (queue.c: the steps of a send and a receive; index.c: selection by type;
 * recover.c: repairs after a crash).
 *
 * struct pbx_shm is process-local. It holds a validated copy of the geometry and pointers to
 * the arrays, computed once at open; the shared header's own geometry fields are never read
 * again, so a peer that scribbles on them cannot move an array out from under us.
 */
#ifndef PBX_SHM_SHM_H
#define PBX_SHM_SHM_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "../os/os.h"
#include "lock.h"
#include "region.h"
#include "wait.h"

struct pbx_shm {
    struct pbx_header *h;
    struct pbx_geometry geo;
    struct pbx_slot *slots;
    uint32_t *chunk_next;
    uint8_t *chunk_data;
    uint64_t *inbox;
    uint32_t *slot_ring;
    uint32_t *chunk_ring;
    struct pbx_type_entry *types;
    uint32_t *hash;
    uint32_t *age_heap;
    uint32_t *value_heap;
    size_t map_size;
    int fd;
    int rdonly; /* opened with PBX_RDONLY: the region is mapped read-only (LOOKING, shm.c) */
    struct pbx_lock_ctx lock_ctx;
    struct pbx_streak send_streak, recv_streak; /* takes in a row, towards a bias (lock.h) */
    struct pbx_fences {
        uint64_t since_ns;      /* start of the window (coarse clock) */
        uint32_t count;         /* heavy fences issued for a bias in it */
    } send_fences, recv_fences; /* before sleeps (shm.c, see_lock_pass) */
    uint32_t send_batch;        /* room a full sender spins for before it goes on (see send_loop) */
    /* Spin budgets learned (ADAPTIVE SPINNING, wait.h). */
    struct pbx_spin_hint send_spin, recv_spin;
    uint32_t ahead_set; /* this handle set send.index_ahead and has not seen it cleared (ahead.c) */
    uint32_t ahead_runs; /* FIFO receives in a row (ahead.c) */
    uint32_t ahead_sel;  /* selective receives since the last look at send.index_ahead (ahead.c) */
    /* Set under a side's lock around the steps of a batch after its first message (BATCHES in
     * shm.c): the first noted the caller as last sender or receiver, so the rest do not. */
    uint8_t send_noted, recv_noted;
    char *dir;  /* directory of a named mailbox; NULL for a private one */
    char *file; /* its file name in dir */
    /* This handle's peer entry (peer.c): index in h->peers, or -1 if the table was full. It
     * belongs to process peer_pid; a fork()ed child that uses the handle claims its own. */
    int peer;
    int32_t peer_pid;
    uint32_t roles;              /* PBX_PEER_* bits already recorded in the entry */
    pthread_mutex_t reg_lock;    /* serialises this handle's registrations (notify, fd) */
    struct pbx_watcher *watcher; /* the helper thread of pbx_fd() and pbx_notify(), or NULL */
    /* Loans held through this handle (LOANS in loan.c): per slot, the id of the loan or 0.
     * Allocated at the first loan, under reg_lock. */
    uint64_t *loans;
    int32_t loans_pid; /* the process whose loans it holds: a fork()ed child inherits a copy */
    uint64_t loan_gen; /* makes send loan ids (atomic) */
};

/* ---- queue.c: the steps of sending and receiving ---------------------------------------- */

/* Outcomes of the locked steps, besides -errno. */
#define PBX_DONE    0 /* the operation completed under the lock */
#define PBX_PENDING 1 /* a large payload must be copied outside the lock, then finished */

/* The inbox entry that publishes slot at position pos (its lap in the high half). */
uint64_t pbx__inbox_entry(const struct pbx_shm *m, uint64_t pos, uint32_t slot);
/* Does entry (read from position pos) publish a message at pos, rather than last lap's? */
int pbx__inbox_published(const struct pbx_shm *m, uint64_t pos, uint64_t entry);

/* Repair a side whose lock was taken over from a dead holder (RECOVERY in queue.c). */
void pbx__send_repair(struct pbx_shm *m);
void pbx__recv_repair(struct pbx_shm *m);
/* Lock the send side (repairing after a dead holder). 0 or -errno; with a limit (DEADLINES in
 * lock.h) also -ETIMEDOUT or -EAGAIN. Inline, as the lock's fast path is: every send takes
 * it. */
static inline int pbx__send_lock_until(struct pbx_shm *m, uint64_t limit)
{
    int r = pbx__block_acquire(&m->h->send.lock, &m->h->send.bias, &m->lock_ctx, &m->send_streak,
                               limit);
    if (__builtin_expect(r == 1, 0)) {
        pbx__send_repair(m);
        r = 0;
    }
    return r;
}
static inline int pbx__send_lock(struct pbx_shm *m)
{
    return pbx__send_lock_until(m, PBX_LOCK_FOREVER);
}
static inline void pbx__send_unlock(struct pbx_shm *m)
{
    pbx__block_release(&m->h->send.lock, &m->h->send.bias);
}
/* Lock the receive side (repairing after a dead holder). 0 or -errno, as pbx__send_lock_until.
 * The index may still be flagged for a rebuild that failed (out of memory): call
 * pbx__index_ready() before using it. */
static inline int pbx__recv_lock_until(struct pbx_shm *m, uint64_t limit)
{
    int r = pbx__block_acquire(&m->h->recv.lock, &m->h->recv.bias, &m->lock_ctx, &m->recv_streak,
                               limit);
    if (__builtin_expect(r == 1, 0)) {
        pbx__recv_repair(m);
        r = 0;
    }
    return r;
}
static inline int pbx__recv_lock(struct pbx_shm *m)
{
    return pbx__recv_lock_until(m, PBX_LOCK_FOREVER);
}
static inline void pbx__recv_unlock(struct pbx_shm *m)
{
    pbx__block_release(&m->h->recv.lock, &m->h->recv.bias);
}
/* Under the receive lock: rebuild the index if it is flagged damaged (pbx__index_rebuild, in
 * index.c below). 0 or -errno. */
int pbx__index_rebuild(struct pbx_shm *m);
static inline int pbx__index_ready(struct pbx_shm *m)
{
    if (__builtin_expect(!__atomic_load_n(&m->h->recv.needs_rebuild, __ATOMIC_RELAXED), 1))
        return 0;
    return pbx__index_rebuild(m);
}

/* Under the send lock: is there room for one more message of len bytes? Refreshes the view of
 * what receivers have freed when the cached one says no. */
int pbx__send_has_room(struct pbx_shm *m, uint32_t len);

/* Under the send lock, with room: take a slot (and chunks) for a message. A message that fits
 * in the slot is copied and published at once (PBX_DONE); otherwise the slot is left WRITING
 * with its chunks chained (PBX_PENDING, *slot_out set) for pbx__send_copy_in() and
 * pbx__send_publish(). */
int pbx__send_alloc(struct pbx_shm *m, long type, const void *data, uint32_t len,
                    uint32_t *slot_out, int sync, uint64_t *pos);
/* Outside any lock: copy a large payload into the slot the caller owns. */
void pbx__send_copy_in(struct pbx_shm *m, uint32_t slot, const void *data, uint32_t len);
/* Under the send lock: publish the slot filled by pbx__send_copy_in(). sync is the caller's
 * sync entry (sync.c) or -1; *pos receives the inbox position of the publication (both
 * functions). */
void pbx__send_publish(struct pbx_shm *m, uint32_t slot, int sync, uint64_t *pos);

/* Under the receive lock: move every published inbox entry into the index. 0 or -EBADMSG. */
int pbx__recv_drain(struct pbx_shm *m);
/* The same, but only as far as the first message that type >= 0 (with except: anything but
 * type) selects: the oldest such message in the inbox, since the inbox is in arrival order
 * (INCREMENTAL DRAIN in shm.c). */
int pbx__recv_drain_to_match(struct pbx_shm *m, long type, int except);
/* After a send, with no lock held: if a selective receiver is present and the backlog is deep,
 * index it now, on the receive lock if that is free (INDEX AHEAD in ahead.c). */
void pbx__index_ahead(struct pbx_shm *m);
/* Under the receive lock, at each receive: say whether a selective receiver is present
 * (INDEX AHEAD in ahead.c). */
void pbx__index_ahead_note(struct pbx_shm *m, long type);
/* Copy the first n payload bytes of slot into buf. */
void pbx__copy_out(struct pbx_shm *m, uint32_t slot, void *buf, uint32_t n);
/* What a receive selected, under the receive lock: the oldest message of a type entry of the
 * index, or (entry == PBX_NONE) the message at the inbox head, taken without passing through the
 * index (FAST PATH in queue.c). slot is that message's slot either way. */
struct pbx_pick {
    uint32_t entry;
    uint32_t slot;
    uint64_t arrival; /* when nothing was picked: the first inbox position the look found
                         unpublished, where the next publication lands (LOOK-AHEAD) */
};
/* Under the receive lock, with the index empty and type >= 0: pick the message at the inbox head
 * if it is published, matches (type 0; type; anything but type with except) and fits in its
 * slot. 0 (picked), -ENOMSG (no published message matches among the first PBX_PICK_AHEAD,
 * which stay in the inbox: LOOK-AHEAD in queue.c; p->arrival is where the look stopped), or 1: not
 * this way — drain into the index and select there (a match behind the head, a large message, more
 * published entries than the look-ahead, or damage: the drain deals with that). */
int pbx__recv_pick_inbox(struct pbx_shm *m, long type, int except, struct pbx_pick *p);
/* Without the receive lock, for a receive of type > 0: 1 with *arrival when, as far as a
 * lock-free look can tell, nothing queued matches (the index is empty and the published entries
 * from the head are all of other types) and *arrival is where the next publication lands; else
 * 0. A hint: the caller always looks again under the lock (LOOK-AHEAD, queue.c). */
int pbx__recv_nothing_for(const struct pbx_shm *m, long type, int except, uint64_t *arrival);
/* How far pbx__recv_pick_inbox() looks past a head that does not match (LOOK-AHEAD, queue.c). */
#define PBX_PICK_AHEAD 8
/* Under the receive lock: take the picked message out of the index or the inbox. A small
 * payload is copied to buf (n bytes) and the slot freed (PBX_DONE); a large one is marked
 * READING for the caller to copy outside the lock and then give back with pbx__recv_finish()
 * (PBX_PENDING). */
int pbx__recv_take(struct pbx_shm *m, const struct pbx_pick *p, void *buf, uint32_t n,
                   uint32_t *slot_out, int *fire);
/* Under the receive lock: take the picked message for pbx_claim(): it becomes CLAIMED by this
 * process. The caller copies it out after the lock. 0 or -errno. */
int pbx__recv_claim(struct pbx_shm *m, const struct pbx_pick *p, uint32_t *slot_out, int *fire);
/* The claim id of a CLAIMED slot, and back; pbx__claim_find checks that the id names a slot
 * claimed by this process: the slot, -EINVAL (malformed) or -ENOENT (not held). */
uint64_t pbx__claim_id(const struct pbx_shm *m, uint32_t slot);
int pbx__claim_find(struct pbx_shm *m, uint64_t id, uint32_t *slot);
/* Under the receive lock: free a slot taken by pbx__recv_take() that returned PBX_PENDING. */
int pbx__recv_finish(struct pbx_shm *m, uint32_t slot);
/* Under the receive lock: give a slot and its chunks back, logged so a crash midway is undone
 * or completed (RECOVERY). why picks the counter it bumps. 0 or -EBADMSG. */
int pbx__slot_free(struct pbx_shm *m, uint32_t slot, enum pbx_free_why why);
/* The receive-side counter a free for reason why bumps (received, dropped or orphans; any
 * other value, as from a damaged log, counts as an orphan). */
uint64_t *pbx__free_counter(struct pbx_recv_side *r, uint32_t why);
/* Under the send lock: take the receive lock (within limit, DEADLINES in lock.h) and discard
 * oldest messages until len more bytes fit. Returns how many were discarded, or -errno. */
int pbx__drop_oldest(struct pbx_shm *m, uint32_t len, uint64_t limit);

/* Under the send lock, with room: take a slot (and chunks) for a send loan of len bytes: LENT
 * by this process, unpublished (loan.c). 0 with *slot_out, or -EBADMSG. */
/* Under the send lock: the next free slot and k chunks chained from *first, not yet taken
 * (queue.c, the first step of pbx__send_alloc()). 0 or -EBADMSG. */
int pbx__send_take(struct pbx_shm *m, uint32_t k, uint32_t *slot, uint32_t *first);
int pbx__send_lend(struct pbx_shm *m, uint32_t len, uint32_t *slot_out);
/* The send side's undo log, for loan.c (RECOVERY). */
void pbx__send_log(struct pbx_shm *m, enum pbx_log_op op, uint32_t slot, uint32_t len);
void pbx__send_log_clear(struct pbx_shm *m);

/* ---- loan.c: zero-copy loans (LOANS there) ---------------------------------------------- */

struct pbx_loan;
/* The transport's loan entries (transport.h). lend and recv_lend are given the wait loops of
 * shm.c to take the room or the message; the rest are here. */
int pbx__shm_commit(void *state, struct pbx_loan *l, long type, int flags);
int pbx__shm_cancel(void *state, struct pbx_loan *l);
int pbx__shm_give_back(void *state, struct pbx_loan *l);
ssize_t pbx__shm_piece(void *state, struct pbx_loan *l, size_t off, void **ptr);
/* After the wait loops lent slot s (send: LENT; receive: CLAIMED with claim id): record the
 * loan in this handle and fill *l. 0 or -ENOMEM (the loan is then ended). */
int pbx__loan_record_send(struct pbx_shm *m, uint32_t s, uint32_t len, struct pbx_loan *l);
int pbx__loan_record_recv(struct pbx_shm *m, uint64_t claim, uint32_t len, long type,
                          struct pbx_loan *l);
/* At close: end every loan this handle still holds. */
void pbx__loans_end_all(struct pbx_shm *m);

/* ---- index.c: selection by type (see index.c for the structure) -------------------------- */

void pbx__index_reset(struct pbx_shm *m);
int pbx__index_insert(struct pbx_shm *m, uint32_t slot);
int pbx__index_select(struct pbx_shm *m, long type, int except, uint32_t *entry);
int pbx__index_pop(struct pbx_shm *m, uint32_t entry);
/* Put slot back into the index at the place its arrival number gives it (a released claim). */
int pbx__index_insert_in_order(struct pbx_shm *m, uint32_t slot);
/* Rebuild the index from the slots: every QUEUED slot already drained from the inbox, in
 * arrival order. 0, -ENOMEM or -EBADMSG. */
int pbx__index_rebuild(struct pbx_shm *m);

/* ---- recover.c: repairs ---------------------------------------------------------------- */

/* With the send lock just taken over: undo or complete the dead holder's logged step. */
void pbx__recover_send(struct pbx_shm *m);
/* With the receive lock just taken over: undo or complete the logged step, return slots that
 * dead receivers were reading, rebuild the index. 0 or -errno. */
int pbx__recover_recv(struct pbx_shm *m);
/* With both locks held: give back slots that dead senders were filling, requeue slots that
 * dead receivers were reading, and recount what is in flight. Returns the number repaired; sets
 * *fire when messages came back into a mailbox marked empty (pbx__listen_fire after the locks). */
int pbx__recover_orphans(struct pbx_shm *m, int *fire);
/* Unless a look ran in the last 100 ms (or force): strike off sleepers and PBX_SYNC senders that
 * died waiting, and if slots are held outside the locks or claimed (the hint that orphans may
 * exist), take both locks and run pbx__recover_orphans(); wake waiters if anything came back.
 * Returns the number repaired or -errno. Cheap when nobody sleeps and nothing is in flight. Call
 * with no lock held. */
int pbx__look_after_dead_peers(struct pbx_shm *m, int force);

/* ---- listen.c: who listens for arrivals (LISTENERS there) ------------------------------- */

/* Is anyone registered (notify or fd)? Read on every send and receive: one load of the
 * control line, which both sides read anyway. */
static inline int pbx__listening(const struct pbx_shm *m)
{
    return (PBX_LOAD(&m->h->notifiers) | PBX_LOAD(&m->h->watchers)) != 0;
}
/* With no lock held, after publishing at inbox position pos: if that publication ended the
 * marked empty period, announce it (pbx__listen_fire). */
void pbx__listen_arrived(struct pbx_shm *m, uint64_t pos);
/* Under the receive lock: is nothing visible (index without types, nothing new in the inbox)? */
int pbx__listen_is_empty(const struct pbx_shm *m);
/* Under the receive lock, after a claim was put back into a mailbox that was empty before
 * (was_empty, from pbx__listen_is_empty): 1 when the caller must call pbx__listen_fire()
 * after the lock. */
int pbx__listen_released(struct pbx_shm *m, int was_empty);
/* Under the receive lock, after a message left the index: if nothing is visible now, mark the
 * mailbox empty and wake fd watchers. Returns 1 when a publication raced with the marking and
 * the caller must call pbx__listen_fire() after releasing the lock. */
int pbx__listen_taken(struct pbx_shm *m);
/* Under both locks: set the empty mark from the slots. Returns 1 when the caller must call
 * pbx__listen_fire() after releasing the locks (the mark said empty, the slots do not). */
int pbx__listen_recount(struct pbx_shm *m);
/* Is a message visible, as the empty mark says? */
int pbx__listen_visible(const struct pbx_shm *m);
/* With no lock held, after an empty -> non-empty edge: count it for the registrants' helpers
 * and wake them and the fd watchers (NOTIFY in listen.c). */
void pbx__listen_fire(struct pbx_shm *m);
/* Has a second passed since the last pruning started by a hint (a wake of nobody, a look for a
 * sync sender in vain)? Claims the next one if so. */
int pbx__prune_due(struct pbx_shm *m);
/* Wake every fd watcher (a removal, a repair). */
void pbx__listen_wake_watchers(struct pbx_shm *m);

/* ---- peer.c: the participants ---------------------------------------------------------- */

/* At open: claim a peer entry for this handle (m->peer = -1 if the table is full). */
void pbx__peer_join(struct pbx_shm *m);
/* At close: end this handle's registrations, stop its watcher, free its entry. */
void pbx__peer_leave(struct pbx_shm *m);
/* Record a role (PBX_PEER_SENT, ...) in this handle's entry; the fast path calls it only when
 * the role is new or the process is a fork()ed child of the entry's owner. */
void pbx__peer_touch(struct pbx_shm *m, uint32_t role);
static inline void pbx__peer_note(struct pbx_shm *m, uint32_t role, int32_t pid)
{
    /* Relaxed loads: threads of the process share the handle, and only the first use per role
     * writes these (pbx__peer_touch). */
    if (PBX_UNLIKELY(PBX_LOAD(&m->peer_pid) != pid || !(PBX_LOAD(&m->roles) & role)))
        pbx__peer_touch(m, role);
}
/* A receive through this handle found nothing: if this process watches (pbx_fd) and nothing is
 * visible, make the descriptor unreadable now rather than when the watcher thread runs. */
void pbx__watch_settle(struct pbx_shm *m);
/* Does no other process's entry carry role (PBX_PEER_SENT, PBX_PEER_RECEIVED)? A lock is biased
 * only to a process alone on its side (BIAS in lock.h). */
int pbx__peer_alone_in(struct pbx_shm *m, uint32_t role);
/* Free the entries of dead processes. Returns how many. No lock held. */
int pbx__peers_prune(struct pbx_shm *m);
/* The transport's pbx_notify, pbx_fd and pbx_peers (transport.h). */
int pbx__shm_notify(void *state, int signo, int value);
int pbx__shm_fd(void *state);
ssize_t pbx__shm_peers(void *state, struct pbx_peer *out, size_t cap);

/* ---- sync.c: PBX_SYNC senders ---------------------------------------------------------- */

/* Claim a sync entry for the calling thread: its index, or -EUSERS. */
int pbx__sync_begin(struct pbx_shm *m);
/* Under the send lock, just before the inbox entry is written: the message at seq is ours. */
void pbx__sync_publish(struct pbx_shm *m, int sync, uint64_t seq);
/* Under the receive lock, a message at seq was freed: received (TAKEN) or dropped. */
void pbx__sync_complete(struct pbx_shm *m, uint64_t seq, int dropped);
/* Wait for the message to be taken. 0, -ENOBUFS (dropped), -ETIMEDOUT, -EINTR, -EIDRM. */
int pbx__sync_wait(struct pbx_shm *m, int sync, uint64_t deadline_ns, struct pbx_sigguard *g);
/* Give the entry back. */
void pbx__sync_end(struct pbx_shm *m, int sync);
/* The entry a PBX_SYNC wait holds, and the cleanup handler (pthread_cleanup_push) that gives
 * it back when the waiting thread is cancelled or the wait ends: a sync send (shm.c) and a
 * loan's PBX_SYNC commit (loan.c). */
struct pbx_sync_hold {
    struct pbx_shm *m;
    int sync;
};
void pbx__sync_let_go(void *hold);
/* Free the entries of sync senders that died waiting. Returns how many. */
int pbx__sync_prune(struct pbx_shm *m);
/* Wake every waiting sync sender (a removal). */
void pbx__sync_wake_all(struct pbx_shm *m);

#endif
