/*
 * registry.h — the table of System V queues shared by every process that preloads
 * libpostbox-sysv.so.
 *
 * The kernel keeps its queues in one table per IPC namespace and names a queue by
 * slot + 32768 * sequence, so that an id used after IPC_RMID never reaches the queue that
 * later takes the same slot. The drop-in does the same in a small file next to the mailboxes,
 * one per IPC namespace: $POSTBOX_DIR/postbox-sysv.registry (or /dev/shm/...) for the initial
 * namespace, postbox-sysv.ns<N>.registry for the namespace whose /proc/self/ns/ipc has inode
 * N, mapped by every process of that namespace. Each slot holds what the kernel keeps in
 * struct kern_ipc_perm and the queue's msg_qbytes and msg_ctime; the messages themselves live
 * in the postbox mailbox the slot names ("sysv.0x%08x" for a key, "sysv.private.<id>" for
 * IPC_PRIVATE; "sysv.ns<N>.0x%08x" and "sysv.ns<N>.private.<id>" outside the initial
 * namespace).
 *
 * The file exists only while a queue does: the process that frees the last slot unlinks it,
 * under the lock (sysv_registry_freed). Every process that takes the lock first checks that
 * its file is still the one at the path (NAMESPACES AND REMOVAL in registry.c).
 *
 * Changes (create, IPC_SET, IPC_RMID) are made under an exclusive fcntl() record lock of the
 * file, which belongs to the process that took it (not to a child it forked) and which the
 * kernel releases when that process dies (registry.c, LOCKING). Lookups on the send and receive
 * paths read one 64-bit word (state and sequence) without the lock: a slot's other fields are
 * written before that word is published (release) and read after it (acquire).
 */
#ifndef PBX_SYSV_REGISTRY_H
#define PBX_SYSV_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SYSV_SLOTS     32768u /* the kernel's IPCMNI: ids are slot + SYSV_SLOTS * seq */
#define SYSV_SEQ_LIMIT 65536u /* seq wraps here, so that ids stay positive ints */
#define SYSV_NAME_MAX  64

/* A slot's state. CREATING is published (with key, creator and sequence filled in) before
 * msgget creates the mailbox and lasts until the queue is LIVE; it is only ever seen by a
 * process holding the registry lock if its creator died in between (the creator holds the
 * lock throughout), and that process rolls the slot back and unlinks the mailbox. */
enum { SYSV_FREE = 0, SYSV_LIVE = 1, SYSV_CREATING = 2 };

struct sysv_slot {
    uint64_t live; /* state | seq << 32: the word lookups read; see above */
    int32_t key;
    uint32_t mode; /* the 9 permission bits of msg_perm.mode */
    uint32_t uid, gid, cuid, cgid;
    int64_t ctime;   /* msg_ctime, seconds since the Epoch */
    uint64_t qbytes; /* msg_qbytes */
    uint32_t cap;    /* the mailbox's fixed capacity, in bytes and messages */
    int32_t creator; /* the pid that made (or is making) the queue: for diagnostics only */
    uint32_t pad[2];
};
_Static_assert(sizeof(struct sysv_slot) == 64, "a registry slot is one cache line");

struct sysv_registry {
    char magic[8];
    uint32_t version;
    uint32_t nslots;
    uint32_t used;     /* one above the highest slot ever used: scans stop here */
    uint32_t seq_base; /* the sequence of a slot's first queue, drawn when the file is made */
    uint32_t pad[1018];
    struct sysv_slot slot[SYSV_SLOTS];
};
_Static_assert(sizeof(struct sysv_registry) % 4096 == 0, "registry size");

/* The registry of this process's IPC namespace and POSTBOX_DIR, mapped on first use at an
 * address kept for the life of the process. While no file exists (no queue does), it is a
 * read-only page range of zeros: no queue, no file made. Returns NULL with errno set if
 * nothing can be mapped. */
struct sysv_registry *sysv_registry(void);

/* Look again: if the process changed IPC namespace, or its file was removed (the last queue
 * went) or made meanwhile, map the right one in place. 0 or -errno. Called by msgget and
 * msgctl, and by msgsnd/msgrcv when an id is not found. */
int sysv_registry_refresh(void);

/* Take the registry's exclusive lock, on the file at the path for this namespace (made if
 * create is set). 0, -ENOENT when there is no file and create is 0 (nothing locked), or
 * -errno. */
int sysv_registry_lock(int create);
void sysv_registry_unlock(void);

/* With the lock held: a slot was freed. At unlock, if no slot is LIVE or CREATING any more,
 * the file is unlinked (before the lock is released) and this process maps zeros again. */
void sysv_registry_freed(void);

/* Called by registry.c, with its mutex held, when the mapping changed under this process
 * (another namespace, or another file): every handle the process cached is stale. Defined in
 * msg.c. */
void sysv_registry_switched(void);

/* In a child after fork(): forget a lock a thread of the parent may have held. */
void sysv_registry_after_fork(void);

static inline uint64_t sysv_live_word(uint32_t seq)
{
    return SYSV_LIVE | (uint64_t) seq << 32;
}

/* TRUST. The file is world-writable, so any process may scribble on it; a value read from it
 * must never take this process outside the mapping or make an id out of range (invariant 2 of
 * ARCHITECTURE.md). Every read of a count or sequence goes through these, which read the word
 * once and clamp it. */
static inline uint32_t sysv_used(const struct sysv_registry *r)
{
    uint32_t u = __atomic_load_n(&r->used, __ATOMIC_RELAXED);
    return u < SYSV_SLOTS ? u : SYSV_SLOTS;
}

static inline uint32_t sysv_state_of(uint64_t w)
{
    return (uint32_t) w;
}

static inline uint32_t sysv_seq_of(uint64_t w)
{
    return (uint32_t) (w >> 32) % SYSV_SEQ_LIMIT;
}

/* The sequence of a slot's first queue (slots at or above used): drawn when the file is
 * made, so that an id kept from a registry that was removed with its last queue is unlikely
 * to name a queue of the next one. */
static inline uint32_t sysv_first_seq(const struct sysv_registry *r)
{
    return __atomic_load_n(&r->seq_base, __ATOMIC_RELAXED) % SYSV_SEQ_LIMIT;
}

/* The mailbox name of the queue in slot s, whose id is id, in this process's namespace. */
void sysv_mailbox_name(const struct sysv_slot *s, int id, char name[SYSV_NAME_MAX]);

/* The directory the mailboxes and the registry live in. */
const char *sysv_dir(void);

#endif
