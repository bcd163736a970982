/*
 * index.c — selecting a message by type without walking the queue.
 *
 * System V keeps one list per queue and walks it on every typed msgrcv(). postbox keeps, for
 * each distinct type that has queued messages, a FIFO list of its slots (linked through
 * slot.next) in a type entry, and three ways into the entries:
 *
 *   hash        type -> entry, open addressing with linear probing and backward-shift
 *               deletion, keyed with a per-mailbox random seed so that senders cannot choose
 *               colliding types. Serves type > 0 in O(1).
 *   age_heap    entries ordered by the arrival number of their oldest message. The root holds
 *               the oldest message of the whole mailbox (type == 0); the oldest message of any
 *               type but T is the root, or, when the root is T, the older of the root's two
 *               children (PBX_EXCEPT) — both O(1).
 *   value_heap  entries ordered by type value. The lowest type present is the root; a receive
 *               with type < 0 takes it if it is <= -type, else nothing matches. O(1) to find.
 *
 * Every message ever taken is the head of its type's list (the oldest of its type), so lists
 * need only a head and a tail. Taking a head re-keys one entry in the age heap (O(log types));
 * emptying a type removes its entry from both heaps (O(log types)).
 *
 * The index is owned by the receive side: every function here is called with the receive lock
 * held. It is derived data — the slots are the truth — so when a check below finds it damaged,
 * it flags recv.needs_rebuild and the next holder of the lock rebuilds it from the slots.
 * Every index read from shared memory is checked against the private geometry before use, and
 * every loop is bounded by a size from that geometry.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../crash.h"
#include "shm.h"

enum heap_kind { AGE = 0, VALUE = 1 };

static int damaged(struct pbx_shm *m)
{
    PBX_STORE(&m->h->recv.needs_rebuild, 1u);
    return -EBADMSG;
}

/* ---- hash ------------------------------------------------------------------------------ */

static uint32_t hash_home(const struct pbx_shm *m, int64_t type)
{
    uint64_t x = (uint64_t) type ^ m->geo.hash_seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (uint32_t) x & m->geo.hash_mask;
}

/* Find the entry of type; *pos gets its hash position (or the free position that ends the
 * probe). Returns the entry, PBX_NONE if absent, or -EBADMSG through *err. */
static uint32_t hash_find(struct pbx_shm *m, int64_t type, uint32_t *pos, int *err)
{
    uint32_t i = hash_home(m, type);
    for (uint64_t probes = 0; probes <= m->geo.hash_mask; probes++) {
        uint32_t e = PBX_LOAD(&m->hash[i]);
        if (e == PBX_NONE) {
            *pos = i;
            return PBX_NONE;
        }
        if (e >= m->geo.ntypes) {
            *err = damaged(m);
            return PBX_NONE;
        }
        if (m->types[e].type == type) {
            *pos = i;
            return e;
        }
        i = (i + 1) & m->geo.hash_mask;
    }
    *err = damaged(m); /* a full table cannot happen: it has twice as many cells as entries */
    return PBX_NONE;
}

/* Remove the cell at i, shifting later cells of the same probe run back so that lookups never
 * stop early at a hole. */
static int hash_delete_at(struct pbx_shm *m, uint32_t i)
{
    uint32_t mask = m->geo.hash_mask;
    uint32_t j = i;
    for (uint64_t steps = 0; steps <= mask; steps++) {
        j = (j + 1) & mask;
        uint32_t e = m->hash[j];
        if (e == PBX_NONE)
            break;
        if (e >= m->geo.ntypes)
            return damaged(m);
        uint32_t home = hash_home(m, m->types[e].type);
        /* The cell at j may move back to i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->hash[i] = e;
            i = j;
        }
    }
    m->hash[i] = PBX_NONE;
    return 0;
}

/* ---- heaps ----------------------------------------------------------------------------- */

static uint32_t *heap_of(struct pbx_shm *m, enum heap_kind k)
{
    return k == AGE ? m->age_heap : m->value_heap;
}

static uint32_t *pos_of(struct pbx_shm *m, enum heap_kind k, uint32_t e)
{
    return k == AGE ? &m->types[e].age_pos : &m->types[e].value_pos;
}

static int heap_less(struct pbx_shm *m, enum heap_kind k, uint32_t a, uint32_t b)
{
    if (k == AGE)
        return m->types[a].head_seq < m->types[b].head_seq;
    return m->types[a].type < m->types[b].type;
}

/* Read heap cell i, checking the entry number. */
static int heap_at(struct pbx_shm *m, enum heap_kind k, uint32_t i, uint32_t *e)
{
    uint32_t v = heap_of(m, k)[i];
    if (v >= m->geo.ntypes)
        return damaged(m);
    *e = v;
    return 0;
}

static void heap_put(struct pbx_shm *m, enum heap_kind k, uint32_t i, uint32_t e)
{
    heap_of(m, k)[i] = e;
    *pos_of(m, k, e) = i;
}

static int sift_up(struct pbx_shm *m, enum heap_kind k, uint32_t i)
{
    uint32_t e, parent;
    if (heap_at(m, k, i, &e))
        return -EBADMSG;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (heap_at(m, k, p, &parent))
            return -EBADMSG;
        if (!heap_less(m, k, e, parent))
            break;
        heap_put(m, k, i, parent);
        i = p;
    }
    heap_put(m, k, i, e);
    return 0;
}

static int sift_down(struct pbx_shm *m, enum heap_kind k, uint32_t i, uint32_t len)
{
    uint32_t e, child, other;
    if (heap_at(m, k, i, &e))
        return -EBADMSG;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= len)
            break;
        if (heap_at(m, k, c, &child))
            return -EBADMSG;
        if (c + 1 < len) {
            if (heap_at(m, k, c + 1, &other))
                return -EBADMSG;
            if (heap_less(m, k, other, child)) {
                c++;
                child = other;
            }
        }
        if (!heap_less(m, k, child, e))
            break;
        heap_put(m, k, i, child);
        i = c;
    }
    heap_put(m, k, i, e);
    return 0;
}

/* Remove the cell at i from a heap of len cells (len - 1 remain). */
static int heap_remove(struct pbx_shm *m, enum heap_kind k, uint32_t i, uint32_t len)
{
    if (i >= len)
        return damaged(m);
    uint32_t last;
    if (heap_at(m, k, len - 1, &last))
        return -EBADMSG;
    if (i == len - 1)
        return 0;
    heap_put(m, k, i, last);
    if (sift_down(m, k, i, len - 1))
        return -EBADMSG;
    return sift_up(m, k, *pos_of(m, k, last));
}

/* ---- the index ------------------------------------------------------------------------- */

void pbx__index_reset(struct pbx_shm *m)
{
    struct pbx_recv_side *r = &m->h->recv;
    for (uint32_t i = 0; i < m->geo.ntypes; i++)
        m->types[i].next_free = i + 1 < m->geo.ntypes ? i + 1 : PBX_NONE;
    r->type_free = 0;
    r->heap_len = 0;
    memset(m->hash, 0xff, ((size_t) m->geo.hash_mask + 1) * sizeof(uint32_t));
}

int pbx__index_insert(struct pbx_shm *m, uint32_t s)
{
    struct pbx_recv_side *r = &m->h->recv;
    struct pbx_slot *slot = &m->slots[s];
    int64_t type = slot->type;
    int err = 0;
    uint32_t pos;
    uint32_t e = hash_find(m, type, &pos, &err);
    if (err)
        return err;
    slot->next = PBX_NONE;
    if (e != PBX_NONE) {
        struct pbx_type_entry *t = &m->types[e];
        if (t->tail >= m->geo.nslots)
            return damaged(m);
        m->slots[t->tail].next = s;
        t->tail = s;
        t->count++;
        return 0;
    }

    uint32_t len = r->heap_len;
    e = r->type_free;
    if (e >= m->geo.ntypes || len >= m->geo.ntypes)
        return damaged(m);
    struct pbx_type_entry *t = &m->types[e];
    r->type_free = t->next_free;
    t->type = type;
    t->head = t->tail = s;
    t->head_seq = slot->seq;
    t->count = 1;
    t->next_free = PBX_NONE;
    m->hash[pos] = e;
    heap_put(m, AGE, len, e);
    heap_put(m, VALUE, len, e);
    r->heap_len = len + 1;
    if (sift_up(m, AGE, len) || sift_up(m, VALUE, len))
        return -EBADMSG;
    return 0;
}

int pbx__index_select(struct pbx_shm *m, long type, int except, uint32_t *entry)
{
    uint32_t len = m->h->recv.heap_len;
    uint32_t e;
    if (len > m->geo.ntypes)
        return damaged(m);

    if (type > 0 && !except) {
        int err = 0;
        uint32_t pos;
        e = hash_find(m, type, &pos, &err);
        if (err)
            return err;
        if (e == PBX_NONE)
            return -ENOMSG;
        *entry = e;
        return 0;
    }
    if (len == 0)
        return -ENOMSG;

    if (type < 0) {
        long limit = type == LONG_MIN ? LONG_MAX : -type;
        if (heap_at(m, VALUE, 0, &e))
            return -EBADMSG;
        if (m->types[e].type > limit)
            return -ENOMSG;
        *entry = e;
        return 0;
    }

    if (heap_at(m, AGE, 0, &e))
        return -EBADMSG;
    if (type == 0 || m->types[e].type != type) {
        *entry = e;
        return 0;
    }
    /* PBX_EXCEPT and the oldest message is of the excluded type: the next oldest type is one
     * of the root's children. */
    uint32_t best = PBX_NONE, c;
    for (uint32_t i = 1; i <= 2 && i < len; i++) {
        if (heap_at(m, AGE, i, &c))
            return -EBADMSG;
        if (best == PBX_NONE || heap_less(m, AGE, c, best))
            best = c;
    }
    if (best == PBX_NONE)
        return -ENOMSG;
    *entry = best;
    return 0;
}

int pbx__index_pop(struct pbx_shm *m, uint32_t e)
{
    struct pbx_recv_side *r = &m->h->recv;
    struct pbx_type_entry *t = &m->types[e];
    uint32_t s = t->head;
    if (s >= m->geo.nslots)
        return damaged(m);
    uint32_t next = m->slots[s].next;
    m->slots[s].next = PBX_NONE;

    if (t->count > 1) {
        if (next >= m->geo.nslots)
            return damaged(m);
        t->head = next;
        t->head_seq = m->slots[next].seq;
        t->count--;
        if (t->age_pos >= r->heap_len)
            return damaged(m);
        return sift_down(m, AGE, t->age_pos, r->heap_len);
    }

    /* The type's last message: its entry leaves both heaps and the hash. */
    uint32_t len = r->heap_len;
    if (len == 0 || len > m->geo.ntypes)
        return damaged(m);
    if (heap_remove(m, AGE, t->age_pos, len) || heap_remove(m, VALUE, t->value_pos, len))
        return -EBADMSG;
    r->heap_len = len - 1;
    int err = 0;
    uint32_t pos;
    if (hash_find(m, t->type, &pos, &err) != e)
        return err ? err : damaged(m);
    if (hash_delete_at(m, pos))
        return -EBADMSG;
    t->next_free = r->type_free;
    r->type_free = e;
    return 0;
}

struct seq_slot {
    uint64_t seq;
    uint32_t slot;
};

static int by_seq(const void *a, const void *b)
{
    const struct seq_slot *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int pbx__index_rebuild(struct pbx_shm *m)
{
    struct pbx_recv_side *r = &m->h->recv;
    uint64_t head = r->inbox_head;
    uint32_t n = 0;
    struct seq_slot *order = malloc((size_t) m->geo.nslots * sizeof(*order));
    if (!order)
        return -ENOMEM;
    for (uint32_t s = 0; s < m->geo.nslots; s++) {
        struct pbx_slot *slot = &m->slots[s];
        /* Published and already drained; later ones are still in the inbox. */
        if (PBX_LOAD(&slot->state) == PBX_SLOT_QUEUED && slot->seq < head) {
            order[n].seq = slot->seq;
            order[n].slot = s;
            n++;
        }
    }
    qsort(order, n, sizeof(*order), by_seq);
    /* Flagged until it is complete, so that a rebuild cut short is started again. */
    PBX_STORE(&r->needs_rebuild, 1u);
    pbx__index_reset(m);
    PBX_CRASH_POINT("repair.rebuild"); /* the index is empty; needs_rebuild is still set */
    int err = 0;
    for (uint32_t i = 0; i < n && !err; i++)
        err = pbx__index_insert(m, order[i].slot);
    free(order);
    if (!err)
        PBX_STORE(&r->needs_rebuild, 0u);
    return err;
}

int pbx__index_insert_in_order(struct pbx_shm *m, uint32_t s)
{
    struct pbx_slot *slot = &m->slots[s];
    int err = 0;
    uint32_t pos;
    uint32_t e = hash_find(m, slot->type, &pos, &err);
    if (err)
        return err;
    struct pbx_type_entry *t = e == PBX_NONE ? NULL : &m->types[e];
    if (!t || t->tail >= m->geo.nslots || m->slots[t->tail].seq < slot->seq)
        return t && t->tail >= m->geo.nslots ? damaged(m) : pbx__index_insert(m, s);
    if (t->head >= m->geo.nslots)
        return damaged(m);
    if (slot->seq < t->head_seq) {
        /* The new oldest of its type: it moves the entry up in the age heap. */
        slot->next = t->head;
        t->head = s;
        t->head_seq = slot->seq;
        t->count++;
        if (t->age_pos >= m->h->recv.heap_len)
            return damaged(m);
        return sift_up(m, AGE, t->age_pos);
    }
    /* Somewhere in the middle: after the last message that arrived before it. */
    uint32_t prev = t->head;
    for (uint32_t i = 0; i < t->count; i++) {
        uint32_t next = m->slots[prev].next;
        if (next >= m->geo.nslots || m->slots[next].seq > slot->seq)
            break;
        prev = next;
    }
    slot->next = m->slots[prev].next;
    m->slots[prev].next = s;
    if (prev == t->tail)
        t->tail = s;
    t->count++;
    return 0;
}
