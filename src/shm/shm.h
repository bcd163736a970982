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

#include <stdint.h>
#include <sys/types.h>

#include "lock.h"
#include "region.h"

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
    struct pbx_lock_ctx lock_ctx;
    uint32_t send_batch; /* room a full sender spins for before it goes on (see send_loop) */
    char *dir;           /* directory of a named mailbox; NULL for a private one */
    char *file;          /* its file name in dir */
};

/* ---- queue.c: the steps of sending and receiving ---------------------------------------- */

/* Outcomes of the locked steps, besides -errno. */
#define PBX_DONE    0 /* the operation completed under the lock */
#define PBX_PENDING 1 /* a large payload must be copied outside the lock, then finished */

/* The inbox entry that publishes slot at position pos (its lap in the high half). */
uint64_t pbx__inbox_entry(const struct pbx_shm *m, uint64_t pos, uint32_t slot);
/* Does entry (read from position pos) publish a message at pos, rather than last lap's? */
int pbx__inbox_published(const struct pbx_shm *m, uint64_t pos, uint64_t entry);

/* Lock the send side (repairing after a dead holder). 0 or -errno. */
int pbx__send_lock(struct pbx_shm *m);
void pbx__send_unlock(struct pbx_shm *m);
/* Lock the receive side (repairing after a dead holder). 0 or -errno. The index may still be
 * flagged for a rebuild that failed (out of memory): call pbx__index_ready() before using it. */
int pbx__recv_lock(struct pbx_shm *m);
void pbx__recv_unlock(struct pbx_shm *m);
/* Under the receive lock: rebuild the index if it is flagged damaged. 0 or -errno. */
int pbx__index_ready(struct pbx_shm *m);

/* Under the send lock: is there room for one more message of len bytes? Refreshes the view of
 * what receivers have freed when the cached one says no. */
int pbx__send_has_room(struct pbx_shm *m, uint32_t len);

/* Under the send lock, with room: take a slot (and chunks) for a message. A message that fits
 * in the slot is copied and published at once (PBX_DONE); otherwise the slot is left WRITING
 * with its chunks chained (PBX_PENDING, *slot_out set) for pbx__send_copy_in() and
 * pbx__send_publish(). */
int pbx__send_alloc(struct pbx_shm *m, long type, const void *data, uint32_t len,
                    uint32_t *slot_out);
/* Outside any lock: copy a large payload into the slot the caller owns. */
void pbx__send_copy_in(struct pbx_shm *m, uint32_t slot, const void *data, uint32_t len);
/* Under the send lock: publish the slot filled by pbx__send_copy_in(). */
void pbx__send_publish(struct pbx_shm *m, uint32_t slot);

/* Under the receive lock: move every published inbox entry into the index. 0 or -EBADMSG. */
int pbx__recv_drain(struct pbx_shm *m);
/* Copy the first n payload bytes of slot into buf. */
void pbx__copy_out(struct pbx_shm *m, uint32_t slot, void *buf, uint32_t n);
/* Under the receive lock: take the head slot of type entry e out of the index. A small payload
 * is copied to buf (n bytes) and the slot freed (PBX_DONE); a large one is marked READING for
 * the caller to copy outside the lock and then give back with pbx__recv_finish()
 * (PBX_PENDING). */
int pbx__recv_take(struct pbx_shm *m, uint32_t e, void *buf, uint32_t n, uint32_t *slot_out);
/* Under the receive lock: free a slot taken by pbx__recv_take() that returned PBX_PENDING. */
int pbx__recv_finish(struct pbx_shm *m, uint32_t slot);
/* Under the receive lock: give a slot and its chunks back, logged so a crash midway is undone
 * or completed (RECOVERY). why picks the counter it bumps. 0 or -EBADMSG. */
int pbx__slot_free(struct pbx_shm *m, uint32_t slot, enum pbx_free_why why);
/* The receive-side counter a free for reason why bumps (received, dropped or orphans; any
 * other value, as from a damaged log, counts as an orphan). */
uint64_t *pbx__free_counter(struct pbx_recv_side *r, uint32_t why);
/* Under both locks (send, then receive): discard oldest messages until len more bytes fit.
 * Returns how many were discarded. */
int pbx__drop_oldest(struct pbx_shm *m, uint32_t len);

/* ---- index.c: selection by type (see index.h for the structure) -------------------------- */

void pbx__index_reset(struct pbx_shm *m);
int pbx__index_insert(struct pbx_shm *m, uint32_t slot);
int pbx__index_select(struct pbx_shm *m, long type, int except, uint32_t *entry);
int pbx__index_pop(struct pbx_shm *m, uint32_t entry);
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
 * dead receivers were reading, and recount what is in flight. Returns the number repaired. */
int pbx__recover_orphans(struct pbx_shm *m);
/* Unless a look ran in the last 100 ms (or force): strike off sleepers that died asleep, and if
 * slots are held outside the locks (the hint that orphans may exist), take both locks and run
 * pbx__recover_orphans(); wake waiters if anything came back. Returns the number repaired or
 * -errno. Cheap when nobody sleeps and nothing is in flight. Call with no lock held. */
int pbx__look_after_dead_peers(struct pbx_shm *m, int force);

#endif
