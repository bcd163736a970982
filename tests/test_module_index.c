/*
 * test_module_index.c — the shared-memory receive index (src/shm/index.c) below the public
 * API, against a reference model.
 *
 * The API tests reach the index only through whole sends and receives, where the payload copy,
 * the locks and the inbox drain hide which entry was chosen. Here a region is laid out and
 * formatted in private memory (src/shm/region.h), the test plays the receive side itself, and
 * every step of a long random walk (insert, select and pop by each selection rule, put a taken
 * message back in order as a released claim does, rebuild from the slots as a repair does) is
 * compared with a plain array of the queued messages searched the slow way. Any difference, or
 * an index that flags itself damaged, fails at the step where it appeared, with the seed.
 *
 * PBX_INDEX_STEPS (default 20 000) and PBX_INDEX_SEED override the walk.
 */
#include "harness.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "shm/shm.h"

#define MAX_MSGS 64

/* One queued message as the model sees it. */
struct model_msg {
    uint32_t slot;
    int64_t type;
    uint64_t seq;
};

struct walk {
    struct pbx_shm m;
    void *base;
    struct model_msg queued[MAX_MSGS]; /* in no particular order */
    uint32_t nqueued;
    struct model_msg taken[MAX_MSGS]; /* taken and not yet given back (a claim) */
    uint32_t ntaken;
    uint32_t free_slots[MAX_MSGS];
    uint32_t nfree;
    uint64_t next_seq;
    uint64_t rng;
};

static uint64_t next_random(struct walk *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

/* A few small types that repeat, so lists grow long, and the extremes of the range. */
static const int64_t type_pool[] = {1, 2, 3, 4, 5, 7, 9, 100, 1000, 65536, LONG_MAX - 1, LONG_MAX};
#define NTYPES_POOL (sizeof(type_pool) / sizeof(type_pool[0]))

static void walk_init(struct walk *w, uint64_t seed)
{
    memset(w, 0, sizeof(*w));
    w->rng = seed ? seed : 1;
    struct pbx_config cfg = {.max_bytes = MAX_MSGS * 64,
                             .max_msgs = MAX_MSGS,
                             .max_msg_size = 64,
                             .overflow = PBX_BLOCK,
                             .hash_seed = seed * 0x9e3779b97f4a7c15ull};
    ASSERT_OK(pbx__layout(&cfg, &w->m.geo));
    ASSERT_GE(w->m.geo.nslots, MAX_MSGS);
    w->base = aligned_alloc(4096, (w->m.geo.region_size + 4095) / 4096 * 4096);
    ASSERT_TRUE(w->base != NULL);
    memset(w->base, 0, w->m.geo.region_size);
    pbx__region_format(w->base, &w->m.geo, 0);
    /* The arrays as src/shm/shm.c points them after a map. */
    uint8_t *b = w->base;
    w->m.h = w->base;
    w->m.slots = (struct pbx_slot *) (b + w->m.geo.off_slots);
    w->m.types = (struct pbx_type_entry *) (b + w->m.geo.off_types);
    w->m.hash = (uint32_t *) (b + w->m.geo.off_hash);
    w->m.age_heap = (uint32_t *) (b + w->m.geo.off_age_heap);
    w->m.value_heap = (uint32_t *) (b + w->m.geo.off_value_heap);
    for (uint32_t i = 0; i < MAX_MSGS; i++)
        w->free_slots[w->nfree++] = MAX_MSGS - 1 - i;
}

/* The model's answer: the index in queued[] of the message the rule selects, or -1. */
static int model_select(const struct walk *w, long type, int except)
{
    int best = -1;
    int64_t lowest = 0; /* no type is 0: "none at or below the limit" */
    if (type < 0) {
        long limit = type == LONG_MIN ? LONG_MAX : -type;
        for (uint32_t i = 0; i < w->nqueued; i++)
            if (w->queued[i].type <= limit && (lowest == 0 || w->queued[i].type < lowest))
                lowest = w->queued[i].type;
    }
    for (uint32_t i = 0; i < w->nqueued; i++) {
        const struct model_msg *q = &w->queued[i];
        int match = type == 0 || (type > 0 && !except && q->type == type) ||
                    (type > 0 && except && q->type != type) || (type < 0 && q->type == lowest);
        if (match && (best < 0 || q->seq < w->queued[best].seq))
            best = (int) i;
    }
    return best;
}

static uint32_t model_distinct_types(const struct walk *w)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < NTYPES_POOL; k++)
        for (uint32_t i = 0; i < w->nqueued; i++)
            if (w->queued[i].type == type_pool[k]) {
                n++;
                break;
            }
    return n;
}

static void step_send(struct walk *w)
{
    uint32_t s = w->free_slots[--w->nfree];
    struct pbx_slot *slot = &w->m.slots[s];
    slot->type = type_pool[next_random(w) % NTYPES_POOL];
    slot->seq = w->next_seq++;
    slot->state = PBX_SLOT_QUEUED;
    w->m.h->recv.inbox_head = w->next_seq; /* drained from the inbox into the index */
    ASSERT_OK(pbx__index_insert(&w->m, s));
    w->queued[w->nqueued++] = (struct model_msg){s, slot->type, slot->seq};
}

static void step_receive(struct walk *w, uint64_t step)
{
    long type;
    int except = 0;
    switch (next_random(w) % 5) {
    case 0:
        type = 0;
        break;
    case 1:
        type = (long) type_pool[next_random(w) % NTYPES_POOL];
        break;
    case 2:
        type = (long) type_pool[next_random(w) % NTYPES_POOL];
        except = 1;
        break;
    case 3:
        type = -(long) type_pool[next_random(w) % NTYPES_POOL];
        break;
    default:
        type = next_random(w) % 2 ? LONG_MIN : -6; /* everything; a limit between types */
        break;
    }
    int want = model_select(w, type, except);
    uint32_t e = PBX_NONE;
    int r = pbx__index_select(&w->m, type, except, &e);
    if (want < 0) {
        if (r != -ENOMSG)
            pbx_test_fail(__FILE__, __LINE__,
                          "step %llu: select(%ld, except %d) gave %d, the model has no match",
                          (unsigned long long) step, type, except, r);
        return;
    }
    if (r != 0 || e >= w->m.geo.ntypes || w->m.types[e].head != w->queued[want].slot)
        pbx_test_fail(__FILE__, __LINE__,
                      "step %llu: select(%ld, except %d) gave %d, head slot %u; the model "
                      "takes slot %u (type %lld, seq %llu)",
                      (unsigned long long) step, type, except, r,
                      r == 0 && e < w->m.geo.ntypes ? w->m.types[e].head : PBX_NONE,
                      w->queued[want].slot, (long long) w->queued[want].type,
                      (unsigned long long) w->queued[want].seq);
    ASSERT_OK(pbx__index_pop(&w->m, e));
    struct model_msg got = w->queued[want];
    w->queued[want] = w->queued[--w->nqueued];
    if (next_random(w) % 3 == 0) {
        /* Claimed: kept aside, to be acknowledged or given back later. */
        w->m.slots[got.slot].state = PBX_SLOT_READING;
        w->taken[w->ntaken++] = got;
    } else {
        w->m.slots[got.slot].state = PBX_SLOT_FREE;
        w->free_slots[w->nfree++] = got.slot;
    }
}

/* A released claim: the message goes back where its arrival number puts it. */
static void step_give_back(struct walk *w)
{
    uint32_t k = (uint32_t) (next_random(w) % w->ntaken);
    struct model_msg back = w->taken[k];
    w->taken[k] = w->taken[--w->ntaken];
    w->m.slots[back.slot].state = PBX_SLOT_QUEUED;
    ASSERT_OK(pbx__index_insert_in_order(&w->m, back.slot));
    w->queued[w->nqueued++] = back;
}

static void step_acknowledge(struct walk *w)
{
    uint32_t k = (uint32_t) (next_random(w) % w->ntaken);
    uint32_t s = w->taken[k].slot;
    w->taken[k] = w->taken[--w->ntaken];
    w->m.slots[s].state = PBX_SLOT_FREE;
    w->free_slots[w->nfree++] = s;
}

TEST(index_agrees_with_a_reference_model_over_a_random_walk)
{
    const char *env = getenv("PBX_INDEX_STEPS");
    uint64_t steps = env ? strtoull(env, NULL, 10) : 20000;
    env = getenv("PBX_INDEX_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : 20261207;
    static struct walk w;
    walk_init(&w, seed);
    uint64_t rebuilds = 0, give_backs = 0, misses = 0;
    for (uint64_t step = 0; step < steps; step++) {
        uint64_t dice = next_random(&w) % 100;
        if (dice < 45 && w.nfree > 0) {
            step_send(&w);
        } else if (dice < 85) {
            misses += w.nqueued == 0;
            step_receive(&w, step);
        } else if (dice < 92 && w.ntaken > 0) {
            step_give_back(&w);
            give_backs++;
        } else if (dice < 98 && w.ntaken > 0) {
            step_acknowledge(&w);
        } else if (dice >= 98) {
            /* A repair rebuilds the index from the slots: only QUEUED ones count. */
            ASSERT_OK(pbx__index_rebuild(&w.m));
            rebuilds++;
        }
        ASSERT_EQ(w.m.h->recv.needs_rebuild, 0);
        ASSERT_EQ(w.m.h->recv.heap_len, model_distinct_types(&w));
    }
    /* The walk went everywhere it should: every kind of step happened many times. */
    ASSERT_GT(rebuilds, steps / 200);
    ASSERT_GT(give_backs, steps / 100);
    ASSERT_GT(misses, 0);
    free(w.base);
}

TEST(index_selects_within_a_full_table_of_distinct_types)
{
    /* Every slot a type of its own: the hash and both heaps at their fullest, then emptied by
     * the lowest-type rule, which must return the types in ascending order. */
    static struct walk w;
    walk_init(&w, 7);
    for (uint32_t i = 0; i < MAX_MSGS; i++) {
        uint32_t s = w.free_slots[--w.nfree];
        w.m.slots[s].type = (int64_t) (MAX_MSGS - i) * 1000003;
        w.m.slots[s].seq = w.next_seq++;
        w.m.slots[s].state = PBX_SLOT_QUEUED;
        ASSERT_OK(pbx__index_insert(&w.m, s));
    }
    ASSERT_EQ(w.m.h->recv.heap_len, MAX_MSGS);
    int64_t last = 0;
    for (uint32_t i = 0; i < MAX_MSGS; i++) {
        uint32_t e;
        ASSERT_OK(pbx__index_select(&w.m, LONG_MIN, 0, &e));
        ASSERT_GT(w.m.types[e].type, last);
        last = w.m.types[e].type;
        ASSERT_OK(pbx__index_pop(&w.m, e));
    }
    uint32_t e;
    ASSERT_ERR(pbx__index_select(&w.m, 0, 0, &e), -ENOMSG);
    ASSERT_EQ(w.m.h->recv.heap_len, 0);
    free(w.base);
}
