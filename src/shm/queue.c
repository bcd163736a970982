/*
 * queue.c — the steps of a send and a receive on a shared-memory mailbox.
 *
 * Two locks, not one. Senders serialise on the send lock and receivers on the receive lock, as
 * in the two-lock queue of Michael and Scott: a producer and a consumer never wait for each
 * other, and each keeps its lock's cache line to itself. What passes between the two sides is
 * exactly what must: the message's slot, one inbox entry (sender -> receiver), one free-ring
 * entry (receiver -> sender), and two monotonic counters, each written by one side only.
 * Measured on a 2-CPU VM, a single shared lock held per message capped streaming at about
 * 4 M msg/s; plain stores handed across as here allow several times that.
 *
 * A send:   under the send lock — check room, take a slot from the free ring (and chunks
 *           from the chunk ring), copy a small payload into the slot, publish it by writing its
 *           inbox entry. A payload too big for the slot is copied after the lock is released,
 *           into the slot and chunks that now belong to the sender, and published under the
 *           lock afterwards.
 * A receive: under the receive lock — drain new inbox entries into the index, select, take
 *           the slot out of the index, copy a small payload and free the slot (put it and its
 *           chunks on the free rings, then count it freed). A large payload is copied after
 *           the lock is released, and the slot freed under the lock afterwards.
 * So payload copies larger than a slot happen outside both critical sections; a copy of at
 * most PBX_SLOT_INLINE bytes is done inside, where it is cheaper than a second lock round trip.
 *
 * FAST PATH. While the index is empty, the oldest published message is the one at the inbox
 * head. A receive with type >= 0 that the head matches (type 0 always does) takes a small
 * message (one that fits in its slot) from there: the head position moves past it, and the
 * message never enters the index. That saves a hash lookup, a list link and two heap updates
 * per message of the common FIFO stream (16 B streaming: 15.5 -> 23.7 M msg/s). Anything else
 * (a mismatch, type < 0, a message already in the index, a large message) drains the inbox into
 * the index and selects there. Large messages were tried on the fast path too: 256 B streaming
 * fell from 12 to 6-7 M msg/s, swinging between runs; a receive of one takes the lock twice
 * around its copy, and draining the inbox in batches keeps the receiver off the entries the
 * sender is writing meanwhile.
 *
 * LOOK-AHEAD. A receive with type > 0 (or PBX_EXCEPT) that the head does not match looks at up
 * to PBX_PICK_AHEAD published entries behind it, without draining them. If none matches it
 * waits for the next arrival and leaves them in the inbox, where the receiver they are meant for
 * takes the head on the fast path. That is the System V ping-pong on one mailbox, a type per
 * direction: each side, right after sending, asks for the answer while its own message still
 * waits at the head; draining it then put every message of the exchange through the index,
 * and both sides through its cache lines (3 us per round trip against 0.9 us on two
 * mailboxes; docs/performance.md). A match behind the head is taken through the index, as
 * before: only the index knows how to take a message out of the middle. For recovery the two
 * ways are alike: a message past the head but not yet freed is QUEUED with seq < head, which is
 * exactly what the rebuild after a dead holder puts back into the index.
 *
 * ORDERING. Two release/acquire pairs carry everything across:
 *   - the inbox entry: a sender fills the slot (type, len, payload, seq, state) and then
 *     stores the entry with release; a receiver loads the entry with acquire before reading
 *     the slot. The entry carries its lap (position / ring size, plus one), so a receiver tells
 *     a new entry from a stale one without reading the sender's tail.
 *   - recv.recvd_msgs / recv.recvd_bytes: a receiver writes the free-ring entries and then
 *     stores recvd_msgs (release), then recvd_bytes (release); a sender loads them with
 *     acquire (pbx__send_has_room) before taking ring entries. Capacity accounting — sent
 *     minus freed, in messages and in bytes — guarantees that every ring entry a sender takes
 *     was written by a free whose count it has seen. Counts are compared by unsigned
 *     difference, so they may wrap.
 * Fields that the other side or pbx_stat() reads without the lock are accessed with relaxed
 * atomics (PBX_LOAD/PBX_STORE); everything else on a side's lines is plain, lock-protected.
 *
 * RECOVERY. Every step that changes more than one word of a side's state first writes an undo
 * log on that side's lock line: the old values, the slot, the kind of step; then a release
 * fence; then the changes; then it clears the log. Each step has one commit point — a single
 * aligned store after which the step is visible to the other side:
 *   - a publication commits with its inbox entry;
 *   - a free commits with recvd_msgs.
 * If a holder dies, the next taker of the lock (lock.h) finds the log: a step past its commit
 * point is completed, any other is undone (recover.c). Slots that a dead process held outside
 * a lock (WRITING, READING) are found by their owner's identity and given back or requeued.
 */
#include <errno.h>
#include <string.h>

#include "../crash.h"
#include "../os/os.h"
#include "shm.h"

static uint32_t lap_tag(const struct pbx_shm *m, uint64_t pos)
{
    return (uint32_t) (pos >> m->geo.inbox_shift) + 1u;
}

uint64_t pbx__inbox_entry(const struct pbx_shm *m, uint64_t pos, uint32_t slot)
{
    return ((uint64_t) lap_tag(m, pos) << 32) | slot;
}

int pbx__inbox_published(const struct pbx_shm *m, uint64_t pos, uint64_t entry)
{
    return (uint32_t) (entry >> 32) == lap_tag(m, pos);
}

/* ---- locks ----------------------------------------------------------------------------- */

void pbx__send_repair(struct pbx_shm *m)
{
    pbx__recover_send(m);
    __atomic_add_fetch(&m->h->repairs, 1, __ATOMIC_RELAXED);
}

void pbx__recv_repair(struct pbx_shm *m)
{
    __atomic_add_fetch(&m->h->repairs, 1, __ATOMIC_RELAXED);
    pbx__recover_recv(m); /* a failed rebuild stays flagged for pbx__index_ready() */
}

/* Copy n <= PBX_SLOT_INLINE bytes with fixed-size moves (the last one overlapping the one before)
 * rather than a call into the C library: a slot's payload is copied on every small send and
 * receive. */
static inline void copy_inline(void *dst, const void *src, uint32_t n)
{
    _Static_assert(PBX_SLOT_INLINE <= 24, "three 8-byte moves cover the inline bytes");
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (n >= 8) {
        memcpy(d, s, 8);
        if (n > 16)
            memcpy(d + 8, s + 8, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n) {
        d[0] = s[0];
        d[n / 2] = s[n / 2];
        d[n - 1] = s[n - 1];
    }
}

/* ---- sending --------------------------------------------------------------------------- */

static int fits(const struct pbx_shm *m, const struct pbx_send_side *s, uint32_t len)
{
    uint64_t msgs = s->sent_msgs - s->seen_msgs;
    uint64_t bytes = s->sent_bytes - s->seen_bytes;
    uint64_t lim = PBX_LOAD(&m->h->soft_limit); /* on the control line, read on every send */
    if (PBX_UNLIKELY(lim) && (msgs + 1 > lim || bytes + len > lim))
        return 0;
    return msgs + 1 <= m->geo.max_msgs && bytes + len <= m->geo.max_bytes;
}

int pbx__send_has_room(struct pbx_shm *m, uint32_t len)
{
    struct pbx_send_side *s = &m->h->send;
    if (PBX_LIKELY(fits(m, s, len)))
        return 1;
    /* ORDERING: recvd_msgs before recvd_bytes, both acquire (see ORDERING above). */
    s->seen_msgs = PBX_ACQUIRE(&m->h->recv.recvd_msgs);
    s->seen_bytes = PBX_ACQUIRE(&m->h->recv.recvd_bytes);
    return fits(m, s, len);
}

static void log_send(struct pbx_shm *m, enum pbx_log_op op, uint32_t slot, uint32_t len)
{
    struct pbx_send_side *s = &m->h->send;
    s->log_slot = slot;
    s->log_len = len;
    s->log_free_head = s->free_head;
    s->log_chunk_head = s->chunk_head;
    s->log_inbox_tail = PBX_LOAD(&s->inbox_tail);
    s->log_sent_msgs = PBX_LOAD(&s->sent_msgs);
    s->log_sent_bytes = PBX_LOAD(&s->sent_bytes);
    PBX_RELEASE(&s->log_op, (uint32_t) op);
    /* RECOVERY: the log must be visible before any change it describes. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    PBX_CRASH_POINT("send.logged");
}

static void log_clear_send(struct pbx_shm *m)
{
    PBX_RELEASE(&m->h->send.log_op, (uint32_t) PBX_LOG_NONE);
}

/* The commit point of a publication: fill in the arrival number, mark the slot queued, and
 * store the inbox entry with release (ORDERING). */
static inline void publish_locked(struct pbx_shm *m, uint32_t s, int sync, uint64_t *pos)
{
    struct pbx_send_side *side = &m->h->send;
    struct pbx_slot *slot = &m->slots[s];
    uint64_t tail = side->inbox_tail;
    slot->seq = tail;
    *pos = tail;
    if (PBX_UNLIKELY(sync >= 0))
        pbx__sync_publish(m, sync, tail);
    PBX_STORE(&slot->state, (uint32_t) PBX_SLOT_QUEUED);
    PBX_RELEASE(&m->inbox[tail & m->geo.inbox_mask], pbx__inbox_entry(m, tail, s));
    PBX_CRASH_POINT("send.published");
    PBX_STORE(&side->inbox_tail, tail + 1);
}

static void note_sender(struct pbx_shm *m)
{
    if (m->send_noted)
        return; /* later messages of a batch */
    struct pbx_send_side *s = &m->h->send;
    PBX_STORE(&s->last_pid, pbx__os_self()->pid);
    PBX_STORE(&s->last_time, pbx__os_real_stamp_ns());
    PBX_STORE(&s->cpu, pbx__os_cpu_tag());
}

/* Ask for the lines of the slots the next send and the one SEND_AHEAD - 1 after it will take,
 * for writing, so that they have arrived by then: it was last written by a receiver on another CPU,
 * and the send would otherwise stall on it. Only when the room already seen covers that send is its
 * ring entry known to be written; otherwise the slot may still be in a receiver's hands. A
 * hint only. */
#define SEND_AHEAD 4
static inline void prefetch_slot_at(const struct pbx_shm *m, uint64_t pos)
{
    uint32_t next = PBX_LOAD(&m->slot_ring[pos & m->geo.slot_ring_mask]);
    if (next < m->geo.nslots)
        __builtin_prefetch(&m->slots[next], 1);
}

static inline void prefetch_next_slot(const struct pbx_shm *m)
{
    const struct pbx_send_side *side = &m->h->send;
    uint64_t room = m->geo.max_msgs - (side->sent_msgs - side->seen_msgs);
    if (room == 0)
        return;
    prefetch_slot_at(m, side->free_head);
    if (room >= SEND_AHEAD)
        prefetch_slot_at(m, side->free_head + SEND_AHEAD - 1);
}

/* Under the send lock: the next free slot, and the k chunks after chunk_head chained to one
 * another (the first in *first, PBX_NONE for none), without taking them yet. The chunks are
 * chained before anything is logged: they are free, so linking them changes nothing anyone
 * else relies on, and a damaged ring entry is found before any state changes. 0 or -EBADMSG. */
static inline int take_room(struct pbx_shm *m, uint32_t k, uint32_t *slot, uint32_t *first)
{
    const struct pbx_send_side *side = &m->h->send;
    uint32_t s = PBX_LOAD(&m->slot_ring[side->free_head & m->geo.slot_ring_mask]);
    if (s >= m->geo.nslots || PBX_LOAD(&m->slots[s].state) != PBX_SLOT_FREE)
        return -EBADMSG;
    uint32_t head = PBX_NONE, prev = PBX_NONE;
    for (uint32_t i = 0; i < k; i++) {
        uint32_t c = PBX_LOAD(&m->chunk_ring[(side->chunk_head + i) & m->geo.chunk_ring_mask]);
        if (c >= m->geo.nchunks)
            return -EBADMSG;
        if (prev == PBX_NONE)
            head = c;
        else
            m->chunk_next[prev] = c;
        prev = c;
    }
    if (prev != PBX_NONE)
        m->chunk_next[prev] = PBX_NONE;
    *slot = s;
    *first = head;
    return 0;
}

int pbx__send_take(struct pbx_shm *m, uint32_t k, uint32_t *slot, uint32_t *first)
{
    return take_room(m, k, slot, first);
}

int pbx__send_alloc(struct pbx_shm *m, long type, const void *data, uint32_t len,
                    uint32_t *slot_out, int sync, uint64_t *pos)
{
    struct pbx_send_side *side = &m->h->send;
    const uint32_t k = pbx__chunks_for(len, m->geo.chunk_size);

    const uint64_t fh = side->free_head, ch = side->chunk_head;
    uint32_t s, first;
    int err = take_room(m, k, &s, &first);
    if (err)
        return err;

    log_send(m, k ? PBX_LOG_ALLOC : PBX_LOG_ALLOC_PUBLISH, s, len);
    side->free_head = fh + 1;
    side->chunk_head = ch + k;
    PBX_STORE(&side->sent_msgs, side->sent_msgs + 1);
    PBX_STORE(&side->sent_bytes, side->sent_bytes + len);

    struct pbx_slot *slot = &m->slots[s];
    slot->type = type;
    slot->len = len;
    slot->chunk = first;
    slot->next = PBX_NONE;
    slot->owner = pbx__os_self()->ident;
    if (k == 0) {
        copy_inline(slot->data, data, len);
        publish_locked(m, s, sync, pos);
        log_clear_send(m);
        note_sender(m);
        prefetch_next_slot(m);
        return PBX_DONE;
    }
    /* RECOVERY: count the slot in flight before it is marked, so the hint never misses it. */
    PBX_STORE(&side->inflight, side->inflight + 1);
    PBX_STORE(&slot->state, (uint32_t) PBX_SLOT_WRITING);
    log_clear_send(m);
    *slot_out = s;
    return PBX_PENDING;
}

void pbx__send_copy_in(struct pbx_shm *m, uint32_t s, const void *data, uint32_t len)
{
    PBX_CRASH_POINT("send.copying");
    struct pbx_slot *slot = &m->slots[s];
    const uint8_t *src = data;
    uint32_t n = len < PBX_SLOT_INLINE ? len : PBX_SLOT_INLINE;
    memcpy(slot->data, src, n);
    uint32_t c = slot->chunk;
    const uint32_t cs = m->geo.chunk_size;
    /* The chain was built by this sender; the bound check guards against a peer that
     * scribbles on it meanwhile. */
    for (uint32_t off = n; off < len && c < m->geo.nchunks; c = PBX_LOAD(&m->chunk_next[c])) {
        uint32_t part = len - off < cs ? len - off : cs;
        memcpy(m->chunk_data + (uint64_t) c * cs, src + off, part);
        off += part;
    }
}

void pbx__send_publish(struct pbx_shm *m, uint32_t s, int sync, uint64_t *pos)
{
    struct pbx_send_side *side = &m->h->send;
    /* A loan's slot is LENT, a copied one WRITING: an undone publication goes back to it. */
    side->log_prev_state = PBX_LOAD(&m->slots[s].state);
    log_send(m, PBX_LOG_PUBLISH, s, m->slots[s].len);
    publish_locked(m, s, sync, pos);
    if (side->inflight)
        PBX_STORE(&side->inflight, side->inflight - 1);
    log_clear_send(m);
    note_sender(m);
}

/* ---- receiving ------------------------------------------------------------------------- */

/* Ask for the slot that the entry at pos publishes, for writing: the receiver reads it and
 * then writes its link and state, and a line fetched for reading would have to be fetched
 * again for the write. Only a hint: nothing is read through an index checked here. */
static void prefetch_published(const struct pbx_shm *m, uint64_t pos)
{
    uint64_t e = PBX_ACQUIRE(&m->inbox[pos & m->geo.inbox_mask]);
    if (pbx__inbox_published(m, pos, e) && (uint32_t) e < m->geo.nslots)
        __builtin_prefetch(&m->slots[(uint32_t) e], 1);
}

#define DRAIN_AHEAD 16 /* entries whose slots are requested before they are reached */

/* The slot that the inbox entry at pos publishes: 0 with *slot, -ENOMSG when the entry is not
 * published yet, -EBADMSG when it names no QUEUED slot of that arrival number (damage). */
static int inbox_slot(const struct pbx_shm *m, uint64_t pos, uint32_t *slot)
{
    uint64_t e = PBX_ACQUIRE(&m->inbox[pos & m->geo.inbox_mask]);
    if (!pbx__inbox_published(m, pos, e))
        return -ENOMSG;
    uint32_t s = (uint32_t) e;
    if (s >= m->geo.nslots || PBX_LOAD(&m->slots[s].state) != PBX_SLOT_QUEUED ||
        m->slots[s].seq != pos)
        return -EBADMSG;
    *slot = s;
    return 0;
}

/* The drain; with stop set, it ends once a message that type (and except) selects is in the
 * index (pbx__recv_drain_to_match). */
static int drain(struct pbx_shm *m, int stop, long type, int except)
{
    struct pbx_recv_side *r = &m->h->recv;
    for (uint64_t n = 0; n <= m->geo.inbox_mask; n++) {
        uint64_t pos = r->inbox_head;
        uint32_t s;
        int found = inbox_slot(m, pos, &s);
        if (found == -ENOMSG)
            return 0;
        if (n == 0) /* not for an empty inbox: senders may have indexed it (ahead.c) */
            for (uint64_t i = 1; i <= DRAIN_AHEAD; i++)
                prefetch_published(m, pos + i);
        if (found) {
            /* A damaged entry: step over it so the mailbox keeps working, and say so. */
            PBX_STORE(&r->inbox_head, pos + 1);
            return -EBADMSG;
        }
        prefetch_published(m, pos + DRAIN_AHEAD + 1);
        int err = pbx__index_insert(m, s);
        if (err)
            return err; /* not consumed: the rebuild leaves it to the next drain */
        PBX_STORE(&r->inbox_head, pos + 1);
        if (stop && (type == 0 || (m->slots[s].type == type) != (except != 0)))
            return 0;
    }
    return 0;
}

int pbx__recv_drain(struct pbx_shm *m)
{
    return drain(m, 0, 0, 0);
}

int pbx__recv_drain_to_match(struct pbx_shm *m, long type, int except)
{
    return drain(m, 1, type, except);
}

void pbx__copy_out(struct pbx_shm *m, uint32_t s, void *buf, uint32_t n)
{
    const struct pbx_slot *slot = &m->slots[s];
    uint8_t *dst = buf;
    uint32_t first = n < PBX_SLOT_INLINE ? n : PBX_SLOT_INLINE;
    if (first)
        memcpy(dst, slot->data, first);
    uint32_t c = slot->chunk;
    const uint32_t cs = m->geo.chunk_size;
    for (uint32_t off = first; off < n && c < m->geo.nchunks; c = PBX_LOAD(&m->chunk_next[c])) {
        uint32_t part = n - off < cs ? n - off : cs;
        memcpy(dst + off, m->chunk_data + (uint64_t) c * cs, part);
        off += part;
    }
}

static void note_receiver(struct pbx_shm *m)
{
    if (m->recv_noted)
        return; /* later messages of a batch */
    struct pbx_recv_side *r = &m->h->recv;
    PBX_STORE(&r->last_pid, pbx__os_self()->pid);
    PBX_STORE(&r->last_time, pbx__os_real_stamp_ns());
    PBX_STORE(&r->cpu, pbx__os_cpu_tag());
}

int pbx__recv_pick_inbox(struct pbx_shm *m, long type, int except, struct pbx_pick *p)
{
    const uint64_t head = m->h->recv.inbox_head;
    for (uint64_t pos = head; pos - head < PBX_PICK_AHEAD; pos++) {
        uint32_t s;
        int found = inbox_slot(m, pos, &s);
        if (found == -ENOMSG) {
            p->arrival = pos;
            return -ENOMSG;
        }
        if (found)
            return 1; /* damage: the drain steps over it */
        const struct pbx_slot *slot = &m->slots[s];
        if (slot->len > m->geo.max_msg_size)
            return 1;
        if (type != 0 && (slot->type == type) == (except != 0))
            continue; /* LOOK-AHEAD: not ours, and left where it is */
        if (pos != head || slot->len > PBX_SLOT_INLINE)
            return 1; /* FAST PATH: a match behind others, or large, goes through the index */
        prefetch_published(m, pos + DRAIN_AHEAD);
        p->entry = PBX_NONE;
        p->slot = s;
        return 0;
    }
    return 1;
}

/* Fields read below without the receive lock, as a hint only: their writers hold the lock and
 * store them plainly, so a read may be torn or stale, and the thread sanitizer is told so. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HINT_READ __attribute__((no_sanitize("thread")))
#endif
#endif
#if !defined(HINT_READ) && defined(__SANITIZE_THREAD__)
#define HINT_READ __attribute__((no_sanitize_thread))
#endif
#ifndef HINT_READ
#define HINT_READ
#endif

HINT_READ int pbx__recv_nothing_for(const struct pbx_shm *m, long type, int except,
                                    uint64_t *arrival)
{
    if (*(const volatile uint32_t *) &m->h->recv.heap_len != 0)
        return 0;
    const uint64_t head = PBX_LOAD(&m->h->recv.inbox_head);
    for (uint64_t pos = head; pos - head < PBX_PICK_AHEAD; pos++) {
        uint64_t e = PBX_ACQUIRE(&m->inbox[pos & m->geo.inbox_mask]);
        if (!pbx__inbox_published(m, pos, e)) {
            *arrival = pos;
            return 1;
        }
        uint32_t s = (uint32_t) e;
        if (s >= m->geo.nslots)
            return 0;
        int64_t t = *(const volatile int64_t *) &m->slots[s].type;
        if ((t == type) != (except != 0))
            return 0;
    }
    return 0;
}

/* Take the picked message out of where it waits (FAST PATH). */
static int recv_pop(struct pbx_shm *m, const struct pbx_pick *p)
{
    if (p->entry != PBX_NONE)
        return pbx__index_pop(m, p->entry);
    PBX_STORE(&m->h->recv.inbox_head, m->h->recv.inbox_head + 1);
    return 0;
}

int pbx__recv_take(struct pbx_shm *m, const struct pbx_pick *p, void *buf, uint32_t n,
                   uint32_t *slot_out, int *fire)
{
    struct pbx_recv_side *r = &m->h->recv;
    uint32_t s = p->slot;
    if (s >= m->geo.nslots)
        return -EBADMSG;
    struct pbx_slot *slot = &m->slots[s];
    uint32_t len = slot->len;
    int err = recv_pop(m, p);
    if (err)
        return err;
    /* LISTENERS (listen.c): one load of the control line when nobody listens. */
    if (PBX_UNLIKELY(pbx__listening(m)))
        *fire = pbx__listen_taken(m);
    PBX_CRASH_POINT("recv.popped");
    if (pbx__chunks_for(len, m->geo.chunk_size) == 0) {
        /* n came from an earlier read of the length; a peer that rewrote it since must not
         * make the copy leave the slot's inline bytes. */
        copy_inline(buf, slot->data, n < PBX_SLOT_INLINE ? n : PBX_SLOT_INLINE);
        err = pbx__slot_free(m, s, PBX_FREE_RECEIVED);
        if (err)
            return err;
        note_receiver(m);
        return PBX_DONE;
    }
    /* RECOVERY: in flight first, then marked; a crash between pop and mark leaves the slot
     * QUEUED outside the index, which the rebuild puts back. */
    PBX_STORE(&r->inflight, r->inflight + 1);
    slot->owner = pbx__os_self()->ident;
    PBX_STORE(&slot->state, (uint32_t) PBX_SLOT_READING);
    *slot_out = s;
    return PBX_PENDING;
}

/* ---- claims ------------------------------------------------------------------------------ */

/* A claim id is the slot number in the low 24 bits (max_msgs <= 2^24) and, above it, the low
 * 40 bits of the message's arrival number plus one: never 0, and a slot that was acked and
 * reused for another message no longer matches an old id. */
#define CLAIM_SLOT_BITS 24
#define CLAIM_GEN_MASK  ((1ull << 40) - 1)

uint64_t pbx__claim_id(const struct pbx_shm *m, uint32_t s)
{
    return (((m->slots[s].seq + 1) & CLAIM_GEN_MASK) << CLAIM_SLOT_BITS) | s;
}

int pbx__claim_find(struct pbx_shm *m, uint64_t id, uint32_t *slot)
{
    uint32_t s = (uint32_t) (id & ((1u << CLAIM_SLOT_BITS) - 1));
    if ((id >> CLAIM_SLOT_BITS) == 0 || s >= m->geo.nslots)
        return -EINVAL;
    struct pbx_slot *sl = &m->slots[s];
    if (PBX_LOAD(&sl->state) != PBX_SLOT_CLAIMED || sl->owner != pbx__ident_process() ||
        pbx__claim_id(m, s) != id)
        return -ENOENT;
    *slot = s;
    return 0;
}

int pbx__recv_claim(struct pbx_shm *m, const struct pbx_pick *p, uint32_t *slot_out, int *fire)
{
    struct pbx_recv_side *r = &m->h->recv;
    uint32_t s = p->slot;
    if (s >= m->geo.nslots)
        return -EBADMSG;
    int err = recv_pop(m, p);
    if (err)
        return err;
    if (PBX_UNLIKELY(pbx__listening(m)))
        *fire = pbx__listen_taken(m);
    PBX_CRASH_POINT("claim.popped");
    /* RECOVERY: counted before marked, as READING is; a crash between pop and mark leaves the
     * slot QUEUED outside the index, which the rebuild puts back. The owner is the process, not
     * the thread: any thread of it may acknowledge, and the claim lasts as long as it lives. */
    PBX_STORE(&r->claimed, r->claimed + 1);
    m->slots[s].owner = pbx__ident_process();
    PBX_STORE(&m->slots[s].state, (uint32_t) PBX_SLOT_CLAIMED);
    note_receiver(m);
    *slot_out = s;
    return 0;
}

int pbx__recv_finish(struct pbx_shm *m, uint32_t s)
{
    struct pbx_recv_side *r = &m->h->recv;
    int err = pbx__slot_free(m, s, PBX_FREE_RECEIVED);
    if (r->inflight)
        PBX_STORE(&r->inflight, r->inflight - 1);
    if (!err)
        note_receiver(m);
    return err;
}

uint64_t *pbx__free_counter(struct pbx_recv_side *r, uint32_t why)
{
    return why == PBX_FREE_RECEIVED  ? &r->received
           : why == PBX_FREE_DROPPED ? &r->dropped
                                     : &r->orphans;
}

int pbx__slot_free(struct pbx_shm *m, uint32_t s, enum pbx_free_why why)
{
    struct pbx_recv_side *r = &m->h->recv;
    struct pbx_slot *slot = &m->slots[s];
    uint32_t len = slot->len;
    if (len > m->geo.max_msg_size)
        return -EBADMSG;
    const uint32_t k = pbx__chunks_for(len, m->geo.chunk_size);
    uint32_t c = slot->chunk;
    for (uint32_t i = 0; i < k; i++) {
        if (c >= m->geo.nchunks)
            return -EBADMSG;
        c = m->chunk_next[c];
    }

    uint64_t seq = slot->seq; /* read before the commit hands the slot to senders */
    uint64_t *count = pbx__free_counter(r, why);
    r->log_slot = s;
    r->log_prev_state = (uint8_t) PBX_LOAD(&slot->state);
    r->log_why = (uint8_t) why;
    r->log_len = len;
    r->log_free_tail = r->free_tail;
    r->log_chunk_tail = r->chunk_tail;
    r->log_recvd_msgs = r->recvd_msgs;
    r->log_recvd_bytes = r->recvd_bytes;
    r->log_count = *count;
    PBX_RELEASE(&r->log_op, (uint8_t) PBX_LOG_FREE);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* RECOVERY: log before changes */
    PBX_CRASH_POINT("recv.logged");

    uint64_t ct = r->chunk_tail;
    c = slot->chunk;
    for (uint32_t i = 0; i < k; i++) {
        PBX_STORE(&m->chunk_ring[(ct + i) & m->geo.chunk_ring_mask], c);
        /* Checked again: a peer may have scribbled on the chain since the walk above. A bad
         * number put on the ring is refused by the sender that takes it (-EBADMSG). */
        c = c < m->geo.nchunks ? m->chunk_next[c] : PBX_NONE;
    }
    r->chunk_tail = ct + k;
    PBX_STORE(&m->slot_ring[r->free_tail & m->geo.slot_ring_mask], s);
    r->free_tail++;
    PBX_STORE(&slot->state, (uint32_t) PBX_SLOT_FREE);
    PBX_STORE(count, *count + 1);
    /* The commit point, then the bytes (ORDERING). */
    PBX_RELEASE(&r->recvd_msgs, r->recvd_msgs + 1);
    PBX_CRASH_POINT("recv.committed");
    PBX_RELEASE(&r->recvd_bytes, r->recvd_bytes + len);
    PBX_RELEASE(&r->log_op, (uint8_t) PBX_LOG_NONE);
    /* SYNC (sync.c): one load of the control line when no PBX_SYNC sender waits. */
    if (PBX_UNLIKELY(PBX_LOAD(&m->h->sync_count)) && why != PBX_FREE_ORPHAN)
        pbx__sync_complete(m, seq, why == PBX_FREE_DROPPED);
    return 0;
}

/* Under both locks, with no room for len: would discarding every queued message make room?
 * Room held otherwise — a message claimed or lent, or being written or read outside a lock — is
 * not for this sender to free, and discarding the queue for a message that still would not fit
 * loses those messages for nothing: the send fails or waits all the same. Exact, since only the
 * holders of these two locks move a slot into or out of QUEUED or change the counts. The usual
 * case, nothing held outside the queue, reads three counters; otherwise the slots are counted. */
static int dropping_makes_room(struct pbx_shm *m, uint32_t len)
{
    const struct pbx_send_side *s = &m->h->send;
    uint64_t msgs = s->sent_msgs - s->seen_msgs, bytes = s->sent_bytes - s->seen_bytes;
    uint64_t kept_msgs = 0, kept_bytes = 0; /* what stays after every queued message goes */
    if (PBX_LOAD(&m->h->recv.claimed) | PBX_LOAD(&m->h->recv.inflight) | PBX_LOAD(&s->inflight)) {
        uint64_t queued_msgs = 0, queued_bytes = 0;
        for (uint32_t i = 0; i < m->geo.nslots; i++)
            if (PBX_LOAD(&m->slots[i].state) == PBX_SLOT_QUEUED) {
                queued_msgs++;
                queued_bytes += m->slots[i].len;
            }
        kept_msgs = msgs > queued_msgs ? msgs - queued_msgs : 0;
        kept_bytes = bytes > queued_bytes ? bytes - queued_bytes : 0;
    }
    uint64_t lim = PBX_LOAD(&m->h->soft_limit);
    if (lim && (kept_msgs + 1 > lim || kept_bytes + len > lim))
        return 0;
    return kept_msgs + 1 <= m->geo.max_msgs && kept_bytes + len <= m->geo.max_bytes;
}

int pbx__drop_oldest(struct pbx_shm *m, uint32_t len, uint64_t limit)
{
    int err = pbx__recv_lock_until(m, limit);
    if (err)
        return err;
    int dropped = 0;
    err = pbx__index_ready(m);
    if (!err)
        err = pbx__recv_drain(m);
    if (!err && !pbx__send_has_room(m, len) && !dropping_makes_room(m, len)) {
        pbx__recv_unlock(m);
        return 0; /* nothing discarded: the caller fails or waits as a full PBX_BLOCK does */
    }
    while (!err && !pbx__send_has_room(m, len)) {
        uint32_t e;
        if (pbx__index_select(m, 0, 0, &e) != 0)
            break; /* nothing queued: what holds the room is in flight */
        uint32_t s = m->types[e].head;
        if (s >= m->geo.nslots) {
            err = -EBADMSG;
            break;
        }
        err = pbx__index_pop(m, e);
        /* Under the send lock: no publication can race with this take (LISTENERS), and the
         * sender's own publication after it announces the arrival. */
        if (!err && pbx__listening(m))
            pbx__listen_taken(m);
        if (!err)
            err = pbx__slot_free(m, s, PBX_FREE_DROPPED);
        if (!err)
            dropped++;
    }
    pbx__recv_unlock(m);
    return err ? err : dropped;
}

/* ---- for loan.c ------------------------------------------------------------------------ */

void pbx__send_log(struct pbx_shm *m, enum pbx_log_op op, uint32_t slot, uint32_t len)
{
    log_send(m, op, slot, len);
}

void pbx__send_log_clear(struct pbx_shm *m)
{
    log_clear_send(m);
}
