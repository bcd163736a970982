/*
 * region.h — the layout of a shared-memory mailbox, and mapping it.
 *
 * A mailbox is one file (in /dev/shm, $POSTBOX_DIR, or an anonymous memfd) mapped by every
 * participant. It starts with a fixed header and continues with arrays; everything is a
 * fixed-width integer, and every reference is an index into an array, never a pointer, so the
 * region means the same at every address it is mapped.
 *
 *   header      identity (magic, layout version), geometry, then one group of cache lines per
 *               party: control, send side (lock, undo log, counters), receive side (lock, undo
 *               log, counters), and the two wait events. A party writes only its own lines on
 *               the fast path, so a producer and a consumer on two CPUs do not pass lines back
 *               and forth more than the messages themselves require.
 *   slots       one 64-byte descriptor per message (max_msgs of them): state, owner, type,
 *               length, arrival number, type-list link, first chunk, and the first
 *               PBX_SLOT_INLINE payload bytes. Small messages live entirely here.
 *   chunks      the rest of larger payloads, in fixed-size chunks chained by chunk_next[].
 *               There are ceil(max_bytes / chunk_size) + max_msgs of them, which is enough for
 *               any set of messages within both capacities, so space never fragments.
 *   inbox       ring of published messages in arrival order, written by senders (under the
 *               send lock), read by receivers (under the receive lock). Each entry carries the
 *               lap it belongs to, so a receiver can tell a new entry from last lap's.
 *   slot_ring,  rings of free slot and chunk numbers: receivers put back what they free,
 *   chunk_ring  senders take from the other end.
 *   types, hash, age_heap, value_heap
 *               the receive index (see index.c), owned by the receive side.
 *
 * The geometry is derived from four numbers (max_bytes, max_msgs, max_msg_size, overflow) by
 * pbx__layout(). Opening a region recomputes it and refuses the region unless every stored
 * field and the file size agree, then keeps its own copy: nothing that sizes or locates an
 * array is read from shared memory after that. Every index read from shared memory is checked
 * against that private copy before use (invariant 2 of ARCHITECTURE.md).
 */
#ifndef PBX_SHM_REGION_H
#define PBX_SHM_REGION_H

#include <stdint.h>
#include <sys/types.h>

#include "../common.h"

#define PBX_REGION_MAGIC "\x7fPOSTBOX"
/* 5: a bias owner word may carry PBX_BIAS_REVOKING; 6: PBX_SLOT_LENT and the send log's
 * prev_state (loans), send.index_ahead (ahead.c). */
#define PBX_LAYOUT_VERSION 6u

#define PBX_SLOT_INLINE 24u
#define PBX_NONE        0xffffffffu /* "no slot / chunk / entry" in any u32 index */

/* Limits on the creation parameters (the layout and counters are sized for them). */
#define PBX_MAX_MSGS_LIMIT  (1u << 24)
#define PBX_MAX_BYTES_LIMIT (1ull << 40)

enum pbx_slot_state {
    PBX_SLOT_FREE = 0,    /* in the free ring (or being taken from it under the send lock) */
    PBX_SLOT_WRITING = 1, /* allocated to a sender copying a large payload outside the lock */
    PBX_SLOT_QUEUED = 2,  /* published: in the inbox or in the index */
    PBX_SLOT_READING = 3, /* taken by a receiver copying a large payload outside the lock */
    PBX_SLOT_CLAIMED = 4, /* taken by pbx_claim() or pbx_recv_loan(), out of the index until
                             acked, released or returned; owned by a process */
    PBX_SLOT_LENT = 5     /* allocated by pbx_loan() to a process writing it in place, until
                             committed (QUEUED) or cancelled (FREE); see LOANS in loan.c */
};

struct pbx_slot {
    uint32_t state; /* enum pbx_slot_state */
    uint32_t len;   /* payload length */
    int64_t type;   /* message type, >= 1 */
    uint64_t seq;   /* inbox position at publication: the arrival order */
    uint64_t owner; /* identity (os.h) of the sender/receiver in WRITING/READING */
    uint32_t next;  /* next slot of the same type in the index, or PBX_NONE */
    uint32_t chunk; /* first chunk of the payload beyond the inline bytes, or PBX_NONE */
    uint8_t data[PBX_SLOT_INLINE];
};
_Static_assert(sizeof(struct pbx_slot) == 64, "a slot is one cache line");

/* One entry per distinct type that has queued messages; see index.c. */
struct pbx_type_entry {
    int64_t type;
    uint64_t head_seq; /* seq of the oldest message of this type: the age heap's key */
    uint32_t head;     /* oldest slot of this type */
    uint32_t tail;     /* newest slot of this type */
    uint32_t count;
    uint32_t age_pos;   /* position in age_heap */
    uint32_t value_pos; /* position in value_heap */
    uint32_t next_free; /* free-list link while unused */
};
_Static_assert(sizeof(struct pbx_type_entry) == 40, "type entry layout");

struct pbx_geometry {
    uint64_t region_size;
    uint64_t max_bytes;
    uint32_t max_msgs;
    uint32_t max_msg_size;
    uint32_t overflow;
    uint32_t chunk_size;
    uint32_t nslots;
    uint32_t nchunks;
    uint32_t inbox_mask; /* ring sizes are powers of two; mask = size - 1 */
    uint32_t slot_ring_mask;
    uint32_t chunk_ring_mask;
    uint32_t ntypes;
    uint32_t hash_mask;
    uint32_t inbox_shift; /* log2(inbox size): lap = position >> inbox_shift */
    uint64_t hash_seed;
    uint64_t off_slots;
    uint64_t off_chunk_next;
    uint64_t off_chunk_data;
    uint64_t off_inbox;
    uint64_t off_slot_ring;
    uint64_t off_chunk_ring;
    uint64_t off_types;
    uint64_t off_hash;
    uint64_t off_age_heap;
    uint64_t off_value_heap;
};
_Static_assert(sizeof(struct pbx_geometry) == 152, "geometry layout");

/* A wait event (see wait.h): a counter that is bumped, a count of sleepers, and who they are,
 * so that a sleeper killed in its sleep can be struck off. */
#define PBX_SLEEPERS 62
struct pbx_event {
    uint32_t seq;
    uint32_t waiters;
    uint64_t sleeper[PBX_SLEEPERS]; /* identity | PBX_SLEEPER_COUNTED, or 0 */
    uint64_t pad;
};
#define PBX_SLEEPER_COUNTED 0x40000000ull
_Static_assert(sizeof(struct pbx_event) == 512, "an event is eight cache lines");

/* The bias of a side's lock (BIAS in lock.h): the thread it is biased to, whether that thread
 * is inside a critical section taken through the bias, and when a bias was last revoked. */
struct pbx_bias {
    uint64_t owner;      /* identity of the thread the lock is biased to, or 0 */
    uint64_t busy;       /* the owner's identity while it holds the lock through the bias, else 0 */
    uint64_t revoked_ns; /* CLOCK_MONOTONIC (coarse) of the last revocation */
    uint64_t granted_ns; /* CLOCK_MONOTONIC (coarse) of the last grant */
    uint32_t no_bias;    /* set for good by a process that cannot revoke with membarrier(2) */
    uint32_t cool_shift; /* the wait before a new grant is BIAS_COOL_NS << cool_shift */
    uint64_t last_owner; /* the owner revoked last: it may still be inside its fast path's window */
    uint64_t left;       /* last_owner, once it is known out of that window (REVOCATION, lock.h) */
};
_Static_assert(sizeof(struct pbx_bias) <= 64, "a bias is one cache line");

/* Kinds of operation an undo log can describe (see RECOVERY in queue.c). */
enum pbx_log_op {
    PBX_LOG_NONE = 0,
    PBX_LOG_ALLOC = 1,         /* send: slot (and chunks) taken, published later */
    PBX_LOG_ALLOC_PUBLISH = 2, /* send: small message taken and published in one go */
    PBX_LOG_PUBLISH = 3,       /* send: a large message's publication */
    PBX_LOG_FREE = 4           /* receive side: a slot and its chunks given back */
};

/* Why a slot is freed; decides which counter the free bumps. */
enum pbx_free_why { PBX_FREE_RECEIVED = 0, PBX_FREE_DROPPED = 1, PBX_FREE_ORPHAN = 2 };

struct pbx_send_side {
    /* Line 1: the send lock and its undo log. */
    uint64_t lock;
    uint32_t log_op;
    uint32_t log_slot;
    uint32_t log_len;
    uint32_t log_prev_state; /* PBX_LOG_PUBLISH: the slot's state before (WRITING or LENT) */
    uint64_t log_free_head;
    uint64_t log_chunk_head;
    uint64_t log_inbox_tail;
    uint64_t log_sent_msgs;
    uint64_t log_sent_bytes;
    /* Line 2: state guarded by the send lock. */
    uint64_t free_head __attribute__((aligned(PBX_CACHELINE))); /* next slot_ring position */
    uint64_t chunk_head;                                        /* next chunk_ring position */
    uint64_t inbox_tail; /* next inbox position = messages ever published */
    uint64_t sent_msgs;  /* messages ever admitted (reserved) */
    uint64_t sent_bytes; /* payload bytes ever admitted */
    uint64_t seen_msgs;  /* last recv.recvd_msgs this side read */
    uint64_t seen_bytes; /* last recv.recvd_bytes this side read */
    uint64_t inflight;   /* slots in WRITING state */
    /* Line 3: statistics written by senders. */
    uint64_t dropped __attribute__((aligned(PBX_CACHELINE))); /* PBX_DROP_NEWEST discards */
    int64_t last_time;
    int32_t last_pid;
    uint32_t cpu;         /* CPU the last sender ran on, plus one (0: unknown); see wait.h */
    uint32_t index_ahead; /* 1: a selective receiver is present, senders index a deep backlog
                             (INDEX AHEAD in ahead.c); on a line senders write anyway */
    /* Line 4: the send lock's bias: read by every take of the lock, written by its owner. */
    struct pbx_bias bias __attribute__((aligned(PBX_CACHELINE)));
};

struct pbx_recv_side {
    /* Line 1: the receive lock and its undo log. */
    uint64_t lock;
    uint8_t log_op;
    uint8_t log_prev_state;
    uint8_t log_why;
    uint8_t pad2;
    uint32_t log_slot;
    uint32_t log_len; /* the freed message's length */
    uint32_t pad3;
    uint64_t log_free_tail;
    uint64_t log_chunk_tail;
    uint64_t log_recvd_msgs;
    uint64_t log_recvd_bytes;
    uint64_t log_count; /* the counter this free bumps (received, dropped), before it */
    /* Line 2: state guarded by the receive lock. */
    uint64_t inbox_head __attribute__((aligned(PBX_CACHELINE))); /* next inbox position */
    uint64_t free_tail;   /* next slot_ring position to fill */
    uint64_t chunk_tail;  /* next chunk_ring position to fill */
    uint64_t recvd_msgs;  /* messages ever freed: the commit point of a free */
    uint64_t recvd_bytes; /* payload bytes ever freed */
    uint64_t received;    /* messages ever handed to a receiver */
    uint64_t dropped;     /* PBX_DROP_OLDEST discards */
    uint64_t orphans;     /* slots of dead senders given back */
    /* Line 3: the index's bookkeeping and statistics. */
    uint32_t needs_rebuild __attribute__((aligned(PBX_CACHELINE)));
    uint32_t type_free; /* head of the free list of type entries */
    uint32_t heap_len;  /* number of types with queued messages */
    uint32_t pad0;
    uint64_t inflight; /* slots in READING state */
    int64_t last_time;
    int32_t last_pid;
    uint32_t cpu;     /* CPU the last receiver ran on, plus one (0: unknown) */
    uint64_t claimed; /* slots in CLAIMED state (a hint for the orphan search, recounted there) */
    /* Line 4: the receive lock's bias. */
    struct pbx_bias bias __attribute__((aligned(PBX_CACHELINE)));
};

/* The listen line (LISTENERS in listen.c): written only while someone listens. */
struct pbx_listen {
    uint64_t empty;         /* 0, or 1 + the inbox position at which the mailbox was seen empty */
    uint32_t edge_seq;      /* futex word: bumped on empty <-> non-empty while watchers > 0, and on
                               every announced arrival while notifiers > 0 */
    uint32_t arrivals;      /* announced arrivals (empty -> non-empty edges) while notifiers > 0:
                               each registrant's helper raises one signal per step (NOTIFY, listen.c) */
    uint64_t last_prune_ns; /* CLOCK_MONOTONIC of the last pruning a wake of nobody started */
};
_Static_assert(sizeof(struct pbx_listen) <= PBX_CACHELINE, "the listen line is one line");

/* One entry per open handle (PEERS in peer.c). Claimed by a compare-and-swap of ident from 0;
 * freed by its handle's close, or pruned once its process is dead. */
#define PBX_PEERS 128
struct pbx_peer_entry {
    uint64_t ident;   /* identity of the process (os/ident.h, pbx__ident_process); 0: free */
    int64_t since_ns; /* CLOCK_REALTIME of the open */
    uint32_t roles;   /* PBX_PEER_* bits of postbox.h */
    int32_t signo;    /* pbx_notify() signal, 0: none. Information for pbx_peers() only: no
                         process signals anyone on its say-so (NOTIFY in listen.c) */
    int32_t pad_value;
    uint32_t watch; /* a pbx_fd() watcher runs for this handle */
    uint64_t pad[4];
};
_Static_assert(sizeof(struct pbx_peer_entry) == 64, "a peer entry is one cache line");

/* One entry per PBX_SYNC sender waiting for its message to be taken (SYNC in sync.c). */
#define PBX_SYNC_ENTRIES 64
enum pbx_sync_state {
    PBX_SYNC_IDLE = 0,
    PBX_SYNC_WAITING = 1,
    PBX_SYNC_TAKEN = 2,
    PBX_SYNC_DROPPED = 3
};
struct pbx_sync_entry {
    uint64_t ident; /* the waiting sender's thread identity; 0: free */
    uint64_t seq;   /* arrival number of its message, valid from WAITING on */
    uint32_t state; /* enum pbx_sync_state; the sender sleeps on it */
    uint32_t pad[3];
};
_Static_assert(sizeof(struct pbx_sync_entry) == 32, "sync entry layout");

struct pbx_header {
    /* Identity and geometry: written once, before the region gets its name. */
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    struct pbx_geometry geo;
    int64_t created_ns;
    /* The creator's PID namespace (device and inode of /proc/self/ns/pid; 0, 0: unknown).
     * Identities are judged in the caller's namespace, so only processes of this one may open
     * the region (pbx__ident_pidns_admits, -EXDEV). Was padding: a region of an older build
     * reads 0, 0, and the layout version is unchanged. */
    uint64_t pidns_dev;
    uint64_t pidns_ino;
    /* Control: rarely written, read by everyone. */
    uint32_t removed __attribute__((aligned(PBX_CACHELINE)));
    /* A capacity set at run time, in bytes and in messages alike, below the geometry's (0: none):
     * System V's msg_qbytes, which IPC_SET may change (sysv_hooks.c). Was padding; a region
     * that never set it reads 0, so the layout version is unchanged. */
    uint32_t soft_limit;
    uint64_t repairs;      /* dead holders' state repaired, orphans given back */
    uint64_t last_scan_ns; /* CLOCK_MONOTONIC of the last search for orphans */
    /* Read by every send and receive, written only when a registration changes (both locks
     * held; see LISTENERS in listen.c): while both are zero, nothing else on the fast path
     * touches the listen line or the tables. */
    uint32_t notifiers;  /* peer entries with a pbx_notify() registration */
    uint32_t watchers;   /* peer entries with a pbx_fd() watcher thread */
    uint32_t sync_count; /* sync entries in use: receivers look for PBX_SYNC senders */
    uint32_t pad_ctl;
    struct pbx_send_side send __attribute__((aligned(PBX_CACHELINE)));
    struct pbx_recv_side recv __attribute__((aligned(PBX_CACHELINE)));
    struct pbx_event msg_ev __attribute__((aligned(PBX_CACHELINE)));   /* "a message arrived" */
    struct pbx_event space_ev __attribute__((aligned(PBX_CACHELINE))); /* "room was freed" */
    struct pbx_listen listen __attribute__((aligned(PBX_CACHELINE)));
    struct pbx_peer_entry peers[PBX_PEERS] __attribute__((aligned(PBX_CACHELINE)));
    struct pbx_sync_entry sync[PBX_SYNC_ENTRIES];
};

_Static_assert(offsetof(struct pbx_header, geo) == 16, "geometry follows the identity");
_Static_assert(offsetof(struct pbx_header, pidns_ino) == 184,
               "the PID namespace fills the padding");
_Static_assert(offsetof(struct pbx_header, removed) == 192, "control line");
_Static_assert(offsetof(struct pbx_header, send) == 256, "send side");
_Static_assert(offsetof(struct pbx_send_side, free_head) == 64, "send state line");
_Static_assert(offsetof(struct pbx_send_side, dropped) == 128, "send stats line");
_Static_assert(offsetof(struct pbx_send_side, bias) == 192, "send bias line");
_Static_assert(offsetof(struct pbx_header, recv) == 512, "receive side");
_Static_assert(offsetof(struct pbx_recv_side, bias) == 192, "receive bias line");
_Static_assert(offsetof(struct pbx_recv_side, log_free_tail) == 24, "receive log");
_Static_assert(offsetof(struct pbx_recv_side, inbox_head) == 64, "receive state line");
_Static_assert(offsetof(struct pbx_recv_side, needs_rebuild) == 128, "receive index line");
_Static_assert(offsetof(struct pbx_header, msg_ev) == 768, "message event line");
_Static_assert(offsetof(struct pbx_header, space_ev) == 1280, "space event lines");
_Static_assert(offsetof(struct pbx_header, notifiers) == 216,
               "listener counts on the control line");
_Static_assert(offsetof(struct pbx_recv_side, claimed) == 168, "claim hint on the index line");
_Static_assert(offsetof(struct pbx_header, listen) == 1792, "listen line");
_Static_assert(offsetof(struct pbx_header, peers) == 1856, "peer table");
_Static_assert(offsetof(struct pbx_header, sync) == 1856 + 64 * PBX_PEERS, "sync table");
_Static_assert(sizeof(struct pbx_header) == 1856 + 64 * PBX_PEERS + 32 * PBX_SYNC_ENTRIES,
               "header size");

/* The numbers a region is made from. */
struct pbx_config {
    uint64_t max_bytes;
    uint32_t max_msgs;
    uint32_t max_msg_size;
    uint32_t overflow;
    uint64_t hash_seed;
};

/* Compute the geometry for cfg. Returns 0, or -EINVAL when cfg is out of range or the region
 * would not be addressable. */
int pbx__layout(const struct pbx_config *cfg, struct pbx_geometry *geo);

/* Check that the header at base (of a file of file_size bytes) is a region of this layout
 * version whose geometry is exactly what its parameters give; copy the geometry out.
 * Returns 0, -EBADMSG (not a region, or damaged), or -EPROTO (another layout version). */
int pbx__region_check(const void *base, uint64_t file_size, struct pbx_geometry *geo);

/* Initialise a zero-filled region of geo->region_size bytes at base: header, free rings,
 * empty index. The magic is written last. */
void pbx__region_format(void *base, const struct pbx_geometry *geo, int64_t now_ns);

/* Number of chunks a payload of len bytes occupies beyond the slot's inline bytes. */
static inline uint32_t pbx__chunks_for(uint32_t len, uint32_t chunk_size)
{
    return len <= PBX_SLOT_INLINE ? 0 : (len - PBX_SLOT_INLINE + chunk_size - 1) / chunk_size;
}

#endif
