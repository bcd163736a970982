/*
 * index.h — a spool's messages as one process knows them, kept in memory.
 *
 * A spool's messages are files; finding "the oldest message of type 7" by listing directories
 * would cost O(depth) per receive. So each process keeps an index of the spool, built by one
 * scan when it opens it and then kept current by the file system's own change notifications
 * (inotify): every rename into or out of the spool's queue and claim directories is an event,
 * and the index applies them in order (spool.c). The index never changes on its own account:
 * even the process's own renames reach it as events, which makes applying an event that is
 * already reflected harmless (see PLACE and LEAVE below), so a scan followed by a replay of
 * events queued before it converges to the directory's true state.
 *
 * A message is known by its global sequence number (unique in a spool: arrival order). It is
 * either queued (selectable) or claimed (being read, or held by a claim, by some process).
 * Queued messages sit in two heaps ordered by sequence: one of all messages (type 0) and one
 * per type (type > 0). Types that have queued messages are also kept in a sorted array, whose
 * first element answers type < 0. Costs: O(log n) to add or remove, O(1) to select by type
 * 0 / > 0 / < 0, O(types) for PBX_EXCEPT when the oldest message is of the excluded type.
 *
 * Not thread-safe: spool.c calls it with the spool's lock held.
 */
#ifndef PBX_SPOOL_INDEX_H
#define PBX_SPOOL_INDEX_H

#include <stdint.h>
#include <stddef.h>

enum pbx_sidx_where { PBX_SIDX_QUEUED = 1, PBX_SIDX_CLAIMED = 2 };

struct pbx_sidx_msg {
    uint64_t seq;
    long type;
    uint32_t len;
    uint8_t where;
    uint32_t gpos, tpos;                /* positions in the heaps (queued only) */
    uint64_t owner;                     /* claimed: the claimer's process identity */
    struct pbx_sidx_msg *hnext;         /* chain of the sequence hash */
    struct pbx_sidx_msg *cprev, *cnext; /* list of claimed messages */
};

struct pbx_sidx_heap {
    struct pbx_sidx_msg **a;
    uint32_t n, cap;
};

struct pbx_sidx_type {
    long type;
    struct pbx_sidx_heap heap;
    struct pbx_sidx_type *hnext;
};

struct pbx_sidx {
    struct pbx_sidx_msg **hash; /* by seq */
    size_t hash_cap, count;     /* count: queued + claimed */
    struct pbx_sidx_type **thash;
    size_t thash_cap, ntypes;
    long *types; /* sorted types that have queued messages */
    size_t types_cap;
    struct pbx_sidx_heap all;
    struct pbx_sidx_msg *claimed; /* list head */
    uint64_t bytes;               /* payload bytes of queued + claimed */
    uint64_t nclaimed;
    uint64_t max_seq; /* highest sequence ever placed (0: none) */
};

int pbx__sidx_init(struct pbx_sidx *x);
void pbx__sidx_fini(struct pbx_sidx *x);
/* Forget everything (before a rescan). */
void pbx__sidx_clear(struct pbx_sidx *x);

/* PLACE: message seq (type, len) is now at where (owner for claimed). Known there already:
 * nothing changes; known elsewhere: it moves; unknown: it is added. 0 or -ENOMEM. */
int pbx__sidx_place(struct pbx_sidx *x, uint64_t seq, long type, uint32_t len, int where,
                    uint64_t owner);
/* LEAVE: message seq left where. Forgotten if the index has it there; else nothing. */
void pbx__sidx_leave(struct pbx_sidx *x, uint64_t seq, int where);

struct pbx_sidx_msg *pbx__sidx_find(const struct pbx_sidx *x, uint64_t seq);

/* The queued message a receive with this selector takes (msgrcv rules), or NULL. */
struct pbx_sidx_msg *pbx__sidx_select(const struct pbx_sidx *x, long type, int except);

#endif
