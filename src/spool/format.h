/*
 * format.h — what a spool looks like on disk (docs/spool.md describes it for users).
 *
 * A spool is a directory:
 *
 *   PATH/meta            the limits chosen at creation (struct pbx_spool_meta); never changes
 *   PATH/state           shared counters and locks, mapped by every process (struct
 *                        pbx_spool_state); statistics and coordination only, never the truth
 *                        about which messages exist
 *   PATH/tmp/            messages being written: OWNER.N (OWNER: the writer's identity)
 *   PATH/q/BUCKET/       queued messages: SEQ.TYPE.LEN, BUCKET = SEQ >> 12, in hex
 *   PATH/c/              claimed messages: SEQ.TYPE.LEN.OWNER (being read, or held by a claim)
 *   PATH/bad/            damaged message files, set aside (never deleted by postbox)
 *
 * The directories are the truth: a message exists exactly while its file is in q/ or c/, and
 * everything a process knows about the spool (its index, the capacity in use) is derived from
 * their names. SEQ is a global sequence number (16 hex digits), which orders arrival; the name
 * carries the type and length so that indexing needs no file to be read. A message file is a
 * header (struct pbx_spool_msg_head) followed by the payload.
 */
#ifndef PBX_SPOOL_FORMAT_H
#define PBX_SPOOL_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define PBX_SPOOL_META_MAGIC  "PBXSPOOL"
#define PBX_SPOOL_STATE_MAGIC "PBXSPSTA"
#define PBX_SPOOL_VERSION     1
#define PBX_SPOOL_BUCKET_BITS 12  /* 4096 messages per queue directory */
#define PBX_SPOOL_PEERS       128 /* entries in the state page's table of participants */
#define PBX_SPOOL_FAILED      8   /* failed group flushes the state page remembers */
#define PBX_SPOOL_FOREIGN     32  /* foreign files whose report the state page remembers */
/* Sequence numbers stay below 2^44: a bucket name has 8 hex digits (32 bits) and a bucket
 * holds 2^12 numbers. A name with a higher number is foreign; a send past it is -EOVERFLOW. */
#define PBX_SPOOL_SEQ_LIMIT (1ull << (32 + PBX_SPOOL_BUCKET_BITS))

struct pbx_spool_meta {
    char magic[8];
    uint32_t version;
    uint32_t mode;
    uint64_t max_bytes;
    uint32_t max_msgs;
    uint32_t max_msg_size;
    uint32_t overflow;
    uint32_t durability;
    uint32_t reserved[5];
    uint32_t check; /* FNV-1a of the bytes before it */
};
_Static_assert(sizeof(struct pbx_spool_meta) == 64, "meta layout is fixed");

/* Each field that processes update concurrently sits on its own cache line. */
struct pbx_spool_state {
    char magic[8];
    uint32_t version;
    uint32_t removed; /* set once by pbx_remove/pbx_unlink, after the directory is renamed away */
    /* Set by a remover before it renames the directory away: a handle that then finds the path
     * no longer naming its directory finishes the removal (the remover may have died). */
    uint32_t removing;
    uint8_t pad0[44];
    uint64_t lock; /* the spool lock (src/shm/lock.h): renames into and out of q/ and c/ */
    uint8_t pad1[56];
    uint64_t flush_lock; /* held by the process flushing directories for a group (GROUP COMMIT) */
    uint8_t pad2[56];
    /* Under the spool lock: */
    uint64_t next_seq;
    uint64_t renames;            /* messages renamed into q/ (ever) */
    uint64_t dirty_lo, dirty_hi; /* buckets renamed into since the last flush (lo > hi: none) */
    uint64_t sent, dropped;
    int64_t last_send_time;
    int32_t last_send_pid;
    /* Empty -> non-empty edges announced (NOTIFICATION in spool.c); every registrant's helper
     * raises its own signal once per step. Was padding: older spools read 0 here. */
    uint32_t arrivals;
    /* Atomics: */
    uint64_t flushed; /* renames made durable by a directory flush */
    uint64_t received, repairs;
    int64_t last_recv_time;
    int32_t last_recv_pid;
    uint32_t send_waiters, recv_waiters;
    uint32_t pad4;
    int64_t last_batch_flush_ns;
    /* Under the flush lock: the buckets a flusher took from dirty_lo..dirty_hi and has not
     * finished flushing (lo > hi: none). A flusher that dies leaves them to the next one. */
    uint64_t inflight_lo, inflight_hi;
    /* Under the spool lock: every bucket below this one has a durable entry in q/. */
    uint64_t q_durable;
    /* Under the spool lock: /proc/sys/kernel/random/boot_id of the boot in which the spool was
     * last opened. Owners (pid + start time) of another boot are all dead. */
    char boot_id[40];
    /* The participants (pbx_peers): one entry per open handle. An entry is free while owner
     * is 0; a handle takes one with a compare-and-swap of owner (its process identity), then
     * fills since and roles (an entry with roles 0 is not listed yet). Pages of spools made
     * before this table existed are zero here: an empty table. */
    /* Under the spool lock: the PID namespace (device and inode of /proc/self/ns/pid) of the
     * processes that use the spool in this boot; 0, 0: none recorded yet. Owners are judged
     * in the caller's namespace, so a process of another one is refused (-EXDEV) until the
     * next boot. Was padding: older pages read 0, 0. */
    uint64_t pidns_dev, pidns_ino;
    uint8_t pad5[40];
    struct pbx_spool_peer {
        uint64_t owner;
        int64_t since;  /* CLOCK_REALTIME at open, ns */
        uint32_t roles; /* PBX_PEER_* in the low 16 bits; pbx_notify's signal in bits 16-23,
                           information for pbx_peers() only: nobody signals on its say-so */
        int32_t value;  /* unused since issue 13 (was pbx_notify's value) */
    } peers[PBX_SPOOL_PEERS];
    /* FAILED FLUSHES (spool.c), under the flush lock: the groups of renames (rename numbers lo
     * to hi) whose directory flush failed, with its error, the latest at failed_n - 1 (modulo
     * PBX_SPOOL_FAILED). failed_hi, the highest hi ever recorded, is also read without the
     * lock; failed_old is the highest hi of a group pushed out of the ring (every rename up to
     * it whose group is no longer listed counts as failed). Pages of spools made before these
     * fields existed are zero here: no flush failed. */
    uint64_t failed_hi, failed_old;
    uint32_t failed_n, pad6;
    struct pbx_spool_failed {
        uint64_t lo, hi;
        int32_t err; /* -errno; 0: an empty entry */
        uint32_t pad;
    } failed[PBX_SPOOL_FAILED];
    /* FOREIGN FILES (spool.c), under the spool lock: FNV-1a hashes (low bit set; 0: empty) of
     * the foreign names already reported ("q/BUCKET/NAME", "c/NAME", "tmp/NAME"), a ring whose
     * next place is foreign_n modulo PBX_SPOOL_FOREIGN. Was padding: older pages read zero,
     * nothing reported yet. */
    uint32_t foreign_n, pad7;
    uint64_t foreign[PBX_SPOOL_FOREIGN];
};
_Static_assert(sizeof(struct pbx_spool_state) <= 4096, "the state fits one page");
_Static_assert(offsetof(struct pbx_spool_state, pidns_dev) == 376 &&
                   offsetof(struct pbx_spool_state, peers) == 432,
               "the PID namespace took padding: the participants table has not moved");

/* The head of a message file. */
struct pbx_spool_msg_head {
    char magic[4]; /* "PBXM" */
    uint32_t len;
    int64_t type;
    uint32_t sum;      /* FNV-1a of the payload */
    uint32_t head_sum; /* FNV-1a of the 20 bytes before it */
};
_Static_assert(sizeof(struct pbx_spool_msg_head) == 24, "message head layout is fixed");

#endif
