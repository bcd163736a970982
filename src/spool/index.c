/*
 * index.c — the in-memory index of a spool (see index.h).
 */
#include "index.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- heaps of messages ordered by sequence, each message knowing its position ---------- */

/* Which position field a heap maintains: gpos for the heap of all, tpos for a type's heap. */
static uint32_t *pos_of(struct pbx_sidx_msg *m, int typed)
{
    return typed ? &m->tpos : &m->gpos;
}

static void heap_set(struct pbx_sidx_heap *h, uint32_t i, struct pbx_sidx_msg *m, int typed)
{
    h->a[i] = m;
    *pos_of(m, typed) = i;
}

static void heap_up(struct pbx_sidx_heap *h, uint32_t i, int typed)
{
    struct pbx_sidx_msg *m = h->a[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (h->a[p]->seq <= m->seq)
            break;
        heap_set(h, i, h->a[p], typed);
        i = p;
    }
    heap_set(h, i, m, typed);
}

static void heap_down(struct pbx_sidx_heap *h, uint32_t i, int typed)
{
    struct pbx_sidx_msg *m = h->a[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1]->seq < h->a[c]->seq)
            c++;
        if (m->seq <= h->a[c]->seq)
            break;
        heap_set(h, i, h->a[c], typed);
        i = c;
    }
    heap_set(h, i, m, typed);
}

static int heap_push(struct pbx_sidx_heap *h, struct pbx_sidx_msg *m, int typed)
{
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 8;
        void *a = realloc(h->a, cap * sizeof(*h->a));
        if (!a)
            return -ENOMEM;
        h->a = a;
        h->cap = cap;
    }
    h->a[h->n] = m;
    heap_up(h, h->n++, typed);
    return 0;
}

static void heap_remove(struct pbx_sidx_heap *h, struct pbx_sidx_msg *m, int typed)
{
    uint32_t i = *pos_of(m, typed);
    struct pbx_sidx_msg *last = h->a[--h->n];
    if (i == h->n)
        return;
    heap_set(h, i, last, typed);
    heap_up(h, i, typed);
    heap_down(h, *pos_of(last, typed), typed);
}

/* ---- hashes ---------------------------------------------------------------------------- */

static size_t mix(uint64_t v)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdull;
    v ^= v >> 33;
    return (size_t) v;
}

static int grow_hash(struct pbx_sidx *x)
{
    size_t cap = x->hash_cap * 2;
    struct pbx_sidx_msg **h = calloc(cap, sizeof(*h));
    if (!h)
        return -ENOMEM;
    for (size_t i = 0; i < x->hash_cap; i++) {
        for (struct pbx_sidx_msg *m = x->hash[i], *next; m; m = next) {
            next = m->hnext;
            size_t b = mix(m->seq) & (cap - 1);
            m->hnext = h[b];
            h[b] = m;
        }
    }
    free(x->hash);
    x->hash = h;
    x->hash_cap = cap;
    return 0;
}

static struct pbx_sidx_type *type_find(const struct pbx_sidx *x, long type)
{
    for (struct pbx_sidx_type *t = x->thash[mix((uint64_t) type) & (x->thash_cap - 1)]; t;
         t = t->hnext)
        if (t->type == type)
            return t;
    return NULL;
}

static int grow_thash(struct pbx_sidx *x)
{
    size_t cap = x->thash_cap * 2;
    struct pbx_sidx_type **h = calloc(cap, sizeof(*h));
    if (!h)
        return -ENOMEM;
    for (size_t i = 0; i < x->thash_cap; i++) {
        for (struct pbx_sidx_type *t = x->thash[i], *next; t; t = next) {
            next = t->hnext;
            size_t b = mix((uint64_t) t->type) & (cap - 1);
            t->hnext = h[b];
            h[b] = t;
        }
    }
    free(x->thash);
    x->thash = h;
    x->thash_cap = cap;
    return 0;
}

/* Position of type in the sorted array (where it is or would be inserted). */
static size_t types_pos(const struct pbx_sidx *x, long type)
{
    size_t lo = 0, hi = x->ntypes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->types[mid] < type)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct pbx_sidx_type *type_get(struct pbx_sidx *x, long type)
{
    struct pbx_sidx_type *t = type_find(x, type);
    if (t)
        return t;
    if (x->ntypes + 1 > x->thash_cap / 2 && grow_thash(x))
        return NULL;
    if (x->ntypes == x->types_cap) {
        size_t cap = x->types_cap ? x->types_cap * 2 : 16;
        long *a = realloc(x->types, cap * sizeof(*a));
        if (!a)
            return NULL;
        x->types = a;
        x->types_cap = cap;
    }
    if (!(t = calloc(1, sizeof(*t))))
        return NULL;
    t->type = type;
    size_t b = mix((uint64_t) type) & (x->thash_cap - 1);
    t->hnext = x->thash[b];
    x->thash[b] = t;
    size_t p = types_pos(x, type);
    memmove(&x->types[p + 1], &x->types[p], (x->ntypes - p) * sizeof(long));
    x->types[p] = type;
    x->ntypes++;
    return t;
}

static void type_drop(struct pbx_sidx *x, struct pbx_sidx_type *t)
{
    struct pbx_sidx_type **pp = &x->thash[mix((uint64_t) t->type) & (x->thash_cap - 1)];
    while (*pp != t)
        pp = &(*pp)->hnext;
    *pp = t->hnext;
    size_t p = types_pos(x, t->type);
    memmove(&x->types[p], &x->types[p + 1], (x->ntypes - p - 1) * sizeof(long));
    x->ntypes--;
    free(t->heap.a);
    free(t);
}

/* ---- queued / claimed states ----------------------------------------------------------- */

static int enqueue(struct pbx_sidx *x, struct pbx_sidx_msg *m)
{
    struct pbx_sidx_type *t = type_get(x, m->type);
    if (!t)
        return -ENOMEM;
    if (heap_push(&x->all, m, 0))
        goto fail;
    if (heap_push(&t->heap, m, 1)) {
        heap_remove(&x->all, m, 0);
        goto fail;
    }
    m->where = PBX_SIDX_QUEUED;
    return 0;
fail:
    if (t->heap.n == 0)
        type_drop(x, t);
    return -ENOMEM;
}

static void dequeue(struct pbx_sidx *x, struct pbx_sidx_msg *m)
{
    struct pbx_sidx_type *t = type_find(x, m->type);
    heap_remove(&x->all, m, 0);
    heap_remove(&t->heap, m, 1);
    if (t->heap.n == 0)
        type_drop(x, t);
}

static void claim_link(struct pbx_sidx *x, struct pbx_sidx_msg *m, uint64_t owner)
{
    m->where = PBX_SIDX_CLAIMED;
    m->owner = owner;
    m->cprev = NULL;
    m->cnext = x->claimed;
    if (x->claimed)
        x->claimed->cprev = m;
    x->claimed = m;
    x->nclaimed++;
}

static void claim_unlink(struct pbx_sidx *x, struct pbx_sidx_msg *m)
{
    if (m->cprev)
        m->cprev->cnext = m->cnext;
    else
        x->claimed = m->cnext;
    if (m->cnext)
        m->cnext->cprev = m->cprev;
    x->nclaimed--;
}

static void detach(struct pbx_sidx *x, struct pbx_sidx_msg *m)
{
    if (m->where == PBX_SIDX_QUEUED)
        dequeue(x, m);
    else
        claim_unlink(x, m);
}

static int attach(struct pbx_sidx *x, struct pbx_sidx_msg *m, int where, uint64_t owner)
{
    if (where == PBX_SIDX_QUEUED)
        return enqueue(x, m);
    claim_link(x, m, owner);
    return 0;
}

/* ---- the interface --------------------------------------------------------------------- */

int pbx__sidx_init(struct pbx_sidx *x)
{
    memset(x, 0, sizeof(*x));
    x->hash_cap = 1024;
    x->thash_cap = 64;
    x->hash = calloc(x->hash_cap, sizeof(*x->hash));
    x->thash = calloc(x->thash_cap, sizeof(*x->thash));
    if (!x->hash || !x->thash) {
        pbx__sidx_fini(x);
        return -ENOMEM;
    }
    return 0;
}

void pbx__sidx_clear(struct pbx_sidx *x)
{
    for (size_t i = 0; i < x->hash_cap; i++) {
        for (struct pbx_sidx_msg *m = x->hash[i], *next; m; m = next) {
            next = m->hnext;
            free(m);
        }
        x->hash[i] = NULL;
    }
    for (size_t i = 0; i < x->thash_cap; i++) {
        for (struct pbx_sidx_type *t = x->thash[i], *next; t; t = next) {
            next = t->hnext;
            free(t->heap.a);
            free(t);
        }
        x->thash[i] = NULL;
    }
    x->ntypes = 0;
    x->count = 0;
    x->all.n = 0;
    x->claimed = NULL;
    x->nclaimed = 0;
    x->bytes = 0;
}

void pbx__sidx_fini(struct pbx_sidx *x)
{
    if (x->hash && x->thash)
        pbx__sidx_clear(x);
    free(x->hash);
    free(x->thash);
    free(x->types);
    free(x->all.a);
    memset(x, 0, sizeof(*x));
}

struct pbx_sidx_msg *pbx__sidx_find(const struct pbx_sidx *x, uint64_t seq)
{
    for (struct pbx_sidx_msg *m = x->hash[mix(seq) & (x->hash_cap - 1)]; m; m = m->hnext)
        if (m->seq == seq)
            return m;
    return NULL;
}

int pbx__sidx_place(struct pbx_sidx *x, uint64_t seq, long type, uint32_t len, int where,
                    uint64_t owner)
{
    struct pbx_sidx_msg *m = pbx__sidx_find(x, seq);
    if (m) {
        if (m->where == where) {
            if (where == PBX_SIDX_CLAIMED)
                m->owner = owner;
            return 0;
        }
        detach(x, m);
        if (attach(x, m, where, owner) == 0)
            return 0;
        pbx__sidx_leave(x, seq, 0); /* out of memory: forget it (a rescan finds it again) */
        return -ENOMEM;
    }
    if (x->count + 1 > x->hash_cap && grow_hash(x))
        return -ENOMEM;
    if (!(m = calloc(1, sizeof(*m))))
        return -ENOMEM;
    m->seq = seq;
    m->type = type;
    m->len = len;
    if (attach(x, m, where, owner)) {
        free(m);
        return -ENOMEM;
    }
    size_t b = mix(seq) & (x->hash_cap - 1);
    m->hnext = x->hash[b];
    x->hash[b] = m;
    x->count++;
    x->bytes += len;
    if (seq > x->max_seq)
        x->max_seq = seq;
    return 0;
}

void pbx__sidx_leave(struct pbx_sidx *x, uint64_t seq, int where)
{
    struct pbx_sidx_msg **pp = &x->hash[mix(seq) & (x->hash_cap - 1)];
    while (*pp && (*pp)->seq != seq)
        pp = &(*pp)->hnext;
    struct pbx_sidx_msg *m = *pp;
    if (!m || (where && m->where != where))
        return;
    *pp = m->hnext;
    /* A message whose re-attach failed (where 0) is in no structure any more. */
    if (where)
        detach(x, m);
    x->count--;
    x->bytes -= m->len;
    free(m);
}

struct pbx_sidx_msg *pbx__sidx_select(const struct pbx_sidx *x, long type, int except)
{
    if (x->all.n == 0)
        return NULL;
    if (type == 0)
        return x->all.a[0];
    if (type < 0) {
        long limit = type == LONG_MIN ? LONG_MAX : -type;
        if (x->types[0] > limit)
            return NULL;
        return type_find(x, x->types[0])->heap.a[0];
    }
    if (!except) {
        const struct pbx_sidx_type *t = type_find(x, type);
        return t ? t->heap.a[0] : NULL;
    }
    struct pbx_sidx_msg *oldest = x->all.a[0];
    if (oldest->type != type)
        return oldest;
    struct pbx_sidx_msg *best = NULL;
    for (size_t i = 0; i < x->ntypes; i++) {
        if (x->types[i] == type)
            continue;
        struct pbx_sidx_msg *m = type_find(x, x->types[i])->heap.a[0];
        if (!best || m->seq < best->seq)
            best = m;
    }
    return best;
}
