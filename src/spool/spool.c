/*
 * spool.c — the durable transport: a mailbox that is a directory, one file per message.
 *
 * The lecture's second way to communicate, made safe for many processes: a message is written
 * under a temporary name, flushed, renamed into the queue directory and the directory flushed;
 * a receiver claims a message by renaming it into the claim directory under its own identity,
 * reads it there and deletes it. A rename is atomic, so a message is either queued or claimed
 * by exactly one process, and a process killed at any point leaves only whole files: a
 * temporary file (never visible, deleted later) or a claimed message whose owner is dead (put
 * back, see REAPING). The layout is in format.h; docs/spool.md tells users what it promises.
 *
 * LOCKING. All renames into and out of q/ and c/ (send, claim, put back, drop, quarantine)
 * happen under one lock in the shared state file, the robust lock of src/shm/lock.h, so the
 * capacity check and the choice of a message see a directory nobody else is changing. File
 * contents are written, flushed and read outside the lock; only the renames are inside.
 *
 * THE INDEX. Every process keeps an index of the spool (index.h), built by one scan on open
 * and kept current by inotify: with the lock held, a process first applies every event queued
 * on its inotify descriptor (drain), which brings its index to the exact state of the
 * directories, since every change to them was made by someone holding the lock, and the
 * kernel queues an event before the rename returns. Capacity in use is the index's count: it
 * derives from the files, so a crash cannot leave it wrong. If the kernel's event queue
 * overflows, the process scans again.
 *
 * WAITING. A caller that must wait (nothing to receive, no room to send) sleeps in ppoll on
 * its inotify descriptor, which becomes readable on the next rename by anyone, and on an
 * eventfd that another thread of the same handle kicks (one wake-up per sleeper) when it
 * drained events a sleeper may have wanted: the inotify queue is the handle's, so the thread
 * that reads an event must pass the news on. A sleeper records the handle's drain generation
 * under the lock and does not sleep if it moved before the sleep began. Signals interrupt it
 * (-EINTR) as in the shared-memory transport (os.h, SIGNALS).
 *
 * GROUP COMMIT. Under PBX_DURABLE_ALWAYS a send must not return before its rename is durable,
 * which takes a flush of the directory it was renamed into. Concurrent senders share that
 * flush: the state counts renames (renames) and renames covered by a finished flush
 * (flushed). A sender that renamed as number k takes the flush lock; if flushed >= k by then,
 * somebody else's flush covered it and it returns; otherwise it flushes every directory renamed
 * into since the last flush (dirty_lo..dirty_hi) and sets flushed to the count it saw before
 * flushing. One flush thus serves every sender that renamed before it started.
 *
 * FAILED FLUSHES. A flush that fails (fsync's EIO, ENOSPC, ...) decides its whole group: every
 * sender whose rename it covered returns its error, not only the flusher. It cannot be retried:
 * after a failed fsync the kernel may have dropped the dirty state it failed to write, so a
 * later fsync that succeeds proves nothing about those renames. The flusher therefore records
 * the group (its renames, flushed + 1 to the count it saw, and the error) in the state page's
 * ring of failed groups and sets flushed past it all the same: the group is decided, and no
 * later flush counts it as durable. A sender whose rename a finished flush covered reads its
 * outcome there, under the flush lock; without the lock only when no failure was ever
 * recorded at or past its rename (failed_hi). The messages of a failed group stay queued and
 * may be delivered: their senders were told the error, not that they were lost. A new bucket
 * whose entry in q/ fails to flush is removed again (it is empty), so that the next sender
 * makes it afresh and its flush covers a fresh entry.
 *
 * REAPING. A claimed message whose owner process is dead (killed mid-receive) is renamed back
 * into q/ under its old sequence number, so it keeps its place in arrival order. Every process
 * holding the lock looks at the claims at most every 100 ms, and whenever a receive finds
 * nothing while claims exist. Temporary files of dead writers are deleted when a process
 * opens the spool or scans it again, and once a second by any process taking the lock.
 *
 * FOREIGN FILES. A name in q/, c/ or tmp/ that postbox did not write is left alone and
 * reported on standard error once per spool, not once per process: the state page remembers
 * (a ring of PBX_SPOOL_FOREIGN hashes of the names reported, written under the spool lock),
 * so the second command that opens the spool says nothing more about the same file. A spool
 * with more foreign files than the ring holds may report the oldest again.
 *
 * LOOKING (PBX_RDONLY; transport.h). A looking handle opens the directories and the meta and
 * state files for reading only (state mapped PROT_READ), needs read permission alone, and
 * never takes the lock, watches, scans with repairs, or joins the participants: pbx_stat()
 * counts the messages by listing q/ and c/ without the lock (a message renamed while they are
 * listed may be counted twice or not at all; the counts are clamped to the limits), and
 * pbx_peers() reads the table, passing over dead entries instead of freeing them.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common.h"
#include "../crash.h"
#include "../os/cancel.h"
#include "../os/fs.h"
#include "../os/os.h"
#include "../peerlist.h"
#include "../shm/lock.h"
#include "../transport.h"
#include "format.h"
#include "index.h"

#define REAP_NS        100000000ull  /* look at claims at most this often */
#define IDLE_SLICE_NS  1000000000ull /* a sleeper re-checks at least this often */
#define CLAIM_SLICE_NS 100000000ull  /* ... and this often while claims exist */
#define BATCH_NS       100000000ull  /* PBX_DURABLE_BATCH flushes at most this often */
#define CLEAN_NS       1000000000ull /* temporary files of dead writers: looked for this often */
#define STATE_SIZE     4096
#define NAME_LEN       80

/* A PBX_SYNC sender waiting for the take of its message (on the handle's list, lock held). */
struct sync_wait {
    uint64_t seq;
    int dropped;   /* its file was deleted from q/ (PBX_DROP_OLDEST), not claimed */
    int abandoned; /* its sender was cancelled: the next to unlist frees it (sync_cancelled) */
    struct sync_wait *next;
};

struct spool {
    char *path;
    int dirfd, qfd, cfd, tmpfd, badfd, statefd;
    struct pbx_spool_state *st;
    struct pbx_lock_ctx lctx;
    struct pbx_spool_meta meta;
    /* The per-process part, rebuilt in a fork()ed child (see process_init). */
    int32_t pid;
    uint64_t owner; /* this process's identity, in claim and temporary names */
    int ifd, efd, qwd, cwd;
    uint64_t *wd_bucket; /* inotify watch -> bucket + 1 (0: not a bucket) */
    size_t wd_cap;
    uint64_t *new_buckets; /* buckets watched during a drain, scanned at its end */
    size_t n_new, new_cap;
    struct pbx_sidx idx;
    uint64_t last_reap_ns;
    uint64_t last_clean_ns; /* temporary files of dead writers last looked for */
    uint64_t cached_bucket; /* the bucket bucket_fd refers to */
    int bucket_fd;
    uint32_t local_waiters; /* threads of this handle asleep */
    uint64_t gen;           /* changes each time a drain applied events */
    int warned;
    int rdonly;    /* opened with PBX_RDONLY (LOOKING) */
    int need_scan; /* the last scan failed: the index is partial until one succeeds */
    int new_boot;  /* opening after a reboot: every owner recorded in the spool is dead */
    dev_t dir_dev; /* the spool directory's identity */
    ino_t dir_ino;
    struct sync_wait *syncs; /* PBX_SYNC senders of this handle waiting (lock held) */
    int peer_slot;           /* this handle's entry in the participants table, -1: none */
    uint32_t peer_roles;     /* roles already set in it (atomic) */
    /* pbx_fd and pbx_notify (DESCRIPTOR below): */
    pthread_mutex_t fd_mu; /* guards the fields below but helper_stop */
    int wfd, stopfd;       /* the descriptor handed out (its level; -1: none yet), the helper's
                              stop */
    int level;             /* wfd's level: 1 readable */
    int helper_on, helper_stop;
    pid_t fd_pid; /* the process that made them (a fork()ed child makes its own) */
    pthread_t helper;
    /* This process's pbx_notify registration, in its own memory (NOTIFICATION); under the
     * spool lock, and atomic for the helper. signo 0: none. seen: st->arrivals announced. */
    int notify_signo, notify_value;
    uint32_t notify_seen;
};

/* ---- small helpers --------------------------------------------------------------------- */

static uint32_t fnv32(const void *p, size_t n, uint32_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}
#define FNV_SEED 2166136261u

static void warn(struct spool *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct spool *s, const char *fmt, ...)
{
    if (s->warned++ > 20)
        return; /* a directory full of junk must not flood stderr */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "postbox: spool %s: ", s->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Report a foreign file (FOREIGN FILES), unless the state page says it was reported already
 * (lock held). where is "q/", "c/" or "tmp/"; dir the bucket's name in q/, or "". */
static void warn_foreign(struct spool *s, const char *where, const char *dir, const char *name)
{
    char path[3 * NAME_MAX + 8];
    snprintf(path, sizeof(path), "%s%s%s%s", where, dir, *dir ? "/" : "", name);
    uint64_t h = 1469598103934665603ull; /* FNV-1a, 64 bits */
    for (const char *p = path; *p; p++)
        h = (h ^ (unsigned char) *p) * 1099511628211ull;
    h |= 1; /* 0 marks an empty place in the ring */
    struct pbx_spool_state *st = s->st;
    for (unsigned i = 0; i < PBX_SPOOL_FOREIGN; i++)
        if (PBX_LOAD(&st->foreign[i]) == h)
            return;
    uint32_t n = PBX_LOAD(&st->foreign_n);
    PBX_STORE(&st->foreign[n % PBX_SPOOL_FOREIGN], h);
    PBX_STORE(&st->foreign_n, n + 1);
    warn(s, "ignoring foreign file %s", path);
}

static mode_t dir_mode(uint32_t mode)
{
    return (mode_t) (mode | ((mode & 0444) >> 2)); /* search where there is read */
}

static void bucket_name(char *buf, uint64_t bucket)
{
    snprintf(buf, NAME_LEN, "%08" PRIx64, bucket);
}

static void msg_name(char *buf, uint64_t seq, long type, uint32_t len)
{
    snprintf(buf, NAME_LEN, "%016" PRIx64 ".%ld.%" PRIu32, seq, type, len);
}

static void claim_name(char *buf, uint64_t seq, long type, uint32_t len, uint64_t owner)
{
    snprintf(buf, NAME_LEN, "%016" PRIx64 ".%ld.%" PRIu32 ".%016" PRIx64, seq, type, len, owner);
}

static int parse_hex(const char **p, int digits, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        char c = (*p)[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t) d;
    }
    *p += digits;
    *out = v;
    return 0;
}

/* A decimal number without leading zeros ("0" itself is fine), at most max. */
static int parse_dec(const char **p, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (max - (uint64_t) (*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t) (*s - '0');
    }
    *p = s;
    *out = v;
    return 0;
}

/* Parse "SEQ.TYPE.LEN" (claimed: "SEQ.TYPE.LEN.OWNER"), exactly as the names above write it. */
static int parse_msg(const char *name, int claimed, uint64_t *seq, long *type, uint32_t *len,
                     uint64_t *owner)
{
    const char *p = name;
    uint64_t t, l;
    if (parse_hex(&p, 16, seq) || *seq >= PBX_SPOOL_SEQ_LIMIT || *seq == 0 || *p++ != '.' ||
        parse_dec(&p, LONG_MAX, &t) || t < 1 || *p++ != '.' || parse_dec(&p, UINT32_MAX, &l))
        return -1;
    if (claimed) {
        if (*p++ != '.' || parse_hex(&p, 16, owner))
            return -1;
    }
    if (*p)
        return -1;
    *type = (long) t;
    *len = (uint32_t) l;
    return 0;
}

static int parse_bucket(const char *name, uint64_t *bucket)
{
    const char *p = name;
    return parse_hex(&p, 8, bucket) || *p ? -1 : 0;
}

static int removed(const struct spool *s)
{
    return PBX_ACQUIRE(&s->st->removed) != 0;
}

static void delete_tree(int dirfd);
static int split_path(const char *path, char **parent, const char **base);
static int remove_spool(struct spool *s);

/* A remover renamed the spool away (removing set, the path no longer names this directory)
 * but did not mark it removed: it may have been killed. Finish the removal: mark it, delete
 * the files, and the hidden directory if it can be found. */
static void finish_lost_removal(struct spool *s)
{
    if (PBX_LIKELY(!PBX_ACQUIRE(&s->st->removing)) || removed(s))
        return;
    struct pbx_fs_calls *fs = pbx__fs_table();
    struct stat st;
    if (fs->fstatat(AT_FDCWD, s->path, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == s->dir_dev &&
        st.st_ino == s->dir_ino)
        return; /* still in place: a remover is about to rename it, or failed to */
    if (__atomic_exchange_n(&s->st->removed, 1u, __ATOMIC_SEQ_CST))
        return;
    delete_tree(s->dirfd);
    char *parent;
    const char *base;
    if (split_path(s->path, &parent, &base) == 0) {
        char prefix[NAME_MAX + 1];
        snprintf(prefix, sizeof(prefix), ".%.200s.removed.", base);
        int pfd = fs->openat(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
        DIR *d = NULL;
        if (pfd >= 0 && fs->dir_open(pfd, &d) < 0)
            d = NULL;
        const char *name;
        while (d && fs->dir_next(d, &name) > 0) {
            if (strncmp(name, prefix, strlen(prefix)) == 0 &&
                fs->fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == s->dir_dev &&
                st.st_ino == s->dir_ino)
                fs->unlinkat(pfd, name, AT_REMOVEDIR);
        }
        if (d)
            fs->dir_close(d);
        if (pfd >= 0)
            fs->close(pfd);
    }
    free(parent);
}

static void quarantine(struct spool *s, int fromfd, const char *from);
static void fd_level(struct spool *s, int up);
static int spool_lock(struct spool *s);
static void spool_unlock(struct spool *s);
static void fd_stop(struct spool *s);

static int owner_alive(const struct spool *s, uint64_t owner)
{
    return !s->new_boot && pbx__ident_process_alive(owner);
}

/* ---- claims this process holds --------------------------------------------------------- */

/*
 * A claim id is CLAIM_TAG | SEQ (SEQ < 2^44, never 0; bits 44-51 zero). The message's file
 * c/SEQ.TYPE.LEN.OWNER alone cannot tell a pbx_claim() from a receive that is between its
 * rename and its delete in another thread of the same process, so the process keeps the table
 * of the claims it holds, by spool (device and inode of its directory) and SEQ: an id not in it
 * is -ENOENT, even if its file is there. A claim belongs to the process, not the handle: the
 * table outlives pbx_close(), like the file.
 */
#define CLAIM_TAG (0x5b0ull << 52)

struct held {
    dev_t dev;
    ino_t ino;
    uint64_t seq;
};
static struct held *held_tab;
static size_t held_n, held_cap;
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;

static int held_add(const struct spool *s, uint64_t seq)
{
    int err = 0;
    pthread_mutex_lock(&held_mu);
    if (held_n == held_cap) {
        size_t cap = held_cap * 2 + 16;
        struct held *a = realloc(held_tab, cap * sizeof(*a));
        if (a) {
            held_tab = a;
            held_cap = cap;
        } else {
            err = -ENOMEM;
        }
    }
    if (!err)
        held_tab[held_n++] = (struct held){s->dir_dev, s->dir_ino, seq};
    pthread_mutex_unlock(&held_mu);
    return err;
}

static size_t held_find(const struct spool *s, uint64_t seq)
{
    for (size_t i = 0; i < held_n; i++)
        if (held_tab[i].seq == seq && held_tab[i].ino == s->dir_ino &&
            held_tab[i].dev == s->dir_dev)
            return i;
    return SIZE_MAX;
}

static int held_has(const struct spool *s, uint64_t seq)
{
    pthread_mutex_lock(&held_mu);
    int r = held_find(s, seq) != SIZE_MAX;
    pthread_mutex_unlock(&held_mu);
    return r;
}

static void held_del(const struct spool *s, uint64_t seq)
{
    pthread_mutex_lock(&held_mu);
    size_t i = held_find(s, seq);
    if (i != SIZE_MAX)
        held_tab[i] = held_tab[--held_n];
    pthread_mutex_unlock(&held_mu);
}

/* ---- participants ---------------------------------------------------------------------- */

/* Free the entries of dead processes (with keep: every entry but this process's). */
static void peers_prune(struct spool *s, int all_but_mine)
{
    for (unsigned i = 0; i < PBX_SPOOL_PEERS; i++) {
        struct pbx_spool_peer *e = &s->st->peers[i];
        uint64_t o = PBX_ACQUIRE(&e->owner);
        if (!o || (all_but_mine ? o == s->owner : owner_alive(s, o)))
            continue;
        /* Roles first: an entry is listed only with roles set, and a new owner sets them. */
        PBX_STORE(&e->roles, 0u);
        __atomic_compare_exchange_n(&e->owner, &o, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    }
}

/* Take an entry for this handle (a full table, even after pruning, leaves it unlisted). */
static void peer_register(struct spool *s)
{
    s->peer_slot = -1;
    __atomic_store_n(&s->peer_roles, PBX_PEER_OPENED, __ATOMIC_RELAXED);
    for (int attempt = 0; attempt < 2; attempt++) {
        for (unsigned i = 0; i < PBX_SPOOL_PEERS; i++) {
            struct pbx_spool_peer *e = &s->st->peers[i];
            uint64_t zero = 0;
            if (PBX_LOAD(&e->owner) ||
                !__atomic_compare_exchange_n(&e->owner, &zero, s->owner, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_RELAXED))
                continue;
            PBX_CRASH_POINT("spool.peer.taken");
            PBX_STORE(&e->since, (int64_t) pbx__os_real_coarse_ns());
            __atomic_store_n(&e->roles, PBX_PEER_OPENED, __ATOMIC_RELEASE);
            s->peer_slot = (int) i;
            return;
        }
        peers_prune(s, 0);
    }
}

static void peer_unregister(struct spool *s)
{
    if (s->peer_slot < 0 || s->owner != pbx__ident_process())
        return; /* none, or a fork()ed child's copy of its parent's handle */
    struct pbx_spool_peer *e = &s->st->peers[s->peer_slot];
    uint64_t o = s->owner;
    PBX_STORE(&e->roles, 0u);
    __atomic_compare_exchange_n(&e->owner, &o, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    s->peer_slot = -1;
}

/* Record a role of this handle, once. */
static void peer_role(struct spool *s, uint32_t role)
{
    if (PBX_LIKELY(__atomic_load_n(&s->peer_roles, __ATOMIC_RELAXED) & role))
        return;
    __atomic_fetch_or(&s->peer_roles, role, __ATOMIC_RELAXED);
    if (s->peer_slot >= 0)
        __atomic_fetch_or(&s->st->peers[s->peer_slot].roles, role, __ATOMIC_RELEASE);
}

/*
 * NOTIFICATION. Everything that makes a message visible — a send's rename into q/, a release, a
 * dead claimer's message put back, a receive giving back what it could not read — is a rename
 * made under the spool lock, with the index exact (drained). So the one that makes a message
 * visible while none was (queued count 0 before it) is the empty -> non-empty edge, and it
 * announces it: with the lock still held, it counts the edge in the state page's arrivals.
 * Nobody signals anyone else. A registrant keeps its signal and value in its own memory and
 * has a helper thread (DESCRIPTOR below) asleep on its inotify descriptor, which the rename
 * wakes; the helper takes the lock, compares arrivals with the count it last saw, and queues
 * its own signal to its own process once per edge (at most PBX_NOTIFY_BURST at a time). The
 * entry's signal bits in the participants table are information for pbx_peers() only. A
 * writer of the state page can thus make a registrant signal itself spuriously, with the
 * signal it chose, and nothing else (docs/signals.md, "Who can signal whom").
 */
static void announce(struct spool *s)
{
    __atomic_add_fetch(&s->st->arrivals, 1, __ATOMIC_RELAXED);
}

/* Lock held: the signals to raise for the edges counted since the helper last looked. */
static uint32_t arrivals_to_announce(struct spool *s)
{
    uint32_t now = __atomic_load_n(&s->st->arrivals, __ATOMIC_RELAXED);
    uint32_t n = now - __atomic_load_n(&s->notify_seen, __ATOMIC_RELAXED);
    __atomic_store_n(&s->notify_seen, now, __ATOMIC_RELAXED);
    if (!__atomic_load_n(&s->notify_signo, __ATOMIC_RELAXED))
        return 0;
    return n < PBX_NOTIFY_BURST ? n : PBX_NOTIFY_BURST;
}

static int helper_ensure(struct spool *s);

static int spool_notify(void *state, int signo, int value)
{
    struct spool *s = state;
    if (removed(s))
        return -EIDRM;
    pthread_mutex_lock(&s->fd_mu);
    int err = signo ? helper_ensure(s) : 0;
    if (err || (err = spool_lock(s))) { /* (a fork()ed child gets its own entry here) */
        pthread_mutex_unlock(&s->fd_mu);
        return err;
    }
    if (s->peer_slot < 0) {
        spool_unlock(s);
        pthread_mutex_unlock(&s->fd_mu);
        return signo ? -EUSERS : 0;
    }
    /* The entry shows the registration to pbx_peers(); nobody signals on its say-so. */
    struct pbx_spool_peer *e = &s->st->peers[s->peer_slot];
    uint32_t cur = __atomic_load_n(&e->roles, __ATOMIC_RELAXED), next;
    do {
        next = (cur & 0xffffu & ~(uint32_t) PBX_PEER_NOTIFY) |
               (signo ? (uint32_t) signo << 16 | PBX_PEER_NOTIFY : 0);
    } while (
        !__atomic_compare_exchange_n(&e->roles, &cur, next, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    if (s->helper_on && s->fd_pid == s->pid) {
        /* Edges counted before now are not this registration's; later ones are counted under
         * the lock, after this. */
        __atomic_store_n(&s->notify_seen, __atomic_load_n(&s->st->arrivals, __ATOMIC_RELAXED),
                         __ATOMIC_RELAXED);
        __atomic_store_n(&s->notify_value, value, __ATOMIC_RELAXED);
        __atomic_store_n(&s->notify_signo, signo, __ATOMIC_RELAXED);
    }
    spool_unlock(s);
    pthread_mutex_unlock(&s->fd_mu);
    return 0;
}

static ssize_t spool_peers(void *state, struct pbx_peer *out, size_t cap)
{
    struct spool *s = state;
    if (removed(s))
        return -EIDRM;
    if (!s->rdonly) /* a looking handle passes over dead entries instead (LOOKING) */
        peers_prune(s, 0);
    _Static_assert(PBX_SPOOL_PEERS <= PBX_PEERLIST_MAX, "every entry fits the list");
    struct pbx_peerlist list;
    list.n = 0;
    for (unsigned i = 0; i < PBX_SPOOL_PEERS; i++) {
        const struct pbx_spool_peer *e = &s->st->peers[i];
        uint64_t o = PBX_ACQUIRE(&e->owner);
        uint32_t all = __atomic_load_n(&e->roles, __ATOMIC_ACQUIRE);
        uint32_t roles = all & (PBX_PEER_OPENED | PBX_PEER_SENT | PBX_PEER_RECEIVED |
                                PBX_PEER_WATCH | PBX_PEER_NOTIFY);
        int32_t signo = (int32_t) (all >> 16 & 0xff);
        int32_t pid = (int32_t) (o & 0x3fffffffu);
        if (!o || !roles || pid <= 0 || (s->rdonly && !owner_alive(s, o)))
            continue;
        pbx__peerlist_add(&list, o, pid, roles, PBX_LOAD(&e->since), signo);
    }
    return pbx__peerlist_out(&list, out, cap);
}

/* Visible messages: queued, not claimed (lock held). */
static int visible(const struct spool *s)
{
    return s->idx.count > s->idx.nclaimed;
}

/* ---- the lock and the index ------------------------------------------------------------ */

static int watch_bucket(struct spool *s, uint64_t bucket, const char *name)
{
    int wd = pbx__fs_inotify_watch(s->ifd, s->qfd, name);
    if (wd < 0)
        return wd;
    if ((size_t) wd >= s->wd_cap) {
        size_t cap = (size_t) wd * 2 + 16;
        uint64_t *a = realloc(s->wd_bucket, cap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        memset(a + s->wd_cap, 0, (cap - s->wd_cap) * sizeof(*a));
        s->wd_bucket = a;
        s->wd_cap = cap;
    }
    s->wd_bucket[wd] = bucket + 1;
    return 0;
}

/* Index every message file in bucket directory name; a stray name is warned about, once. */
static int scan_bucket(struct spool *s, uint64_t bucket, const char *name, int cleanup)
{
    struct pbx_fs_calls *fs = pbx__fs_table();
    int fd = fs->openat(s->qfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP)
        return 0; /* removed since (empty), or not a bucket (warned about by scan) */
    if (fd < 0)
        return fd;
    DIR *d;
    int err = fs->dir_open(fd, &d), n = 0;
    fs->close(fd);
    if (err)
        return err;
    const char *f;
    while (!err && (err = fs->dir_next(d, &f)) > 0) {
        err = 0;
        if (f[0] == '.')
            continue;
        uint64_t seq, owner;
        long type;
        uint32_t len;
        n++;
        if (parse_msg(f, 0, &seq, &type, &len, &owner) || seq >> PBX_SPOOL_BUCKET_BITS != bucket ||
            len > s->meta.max_msg_size) {
            warn_foreign(s, "q/", name, f);
            continue;
        }
        err = pbx__sidx_place(&s->idx, seq, type, len, PBX_SIDX_QUEUED, 0);
    }
    fs->dir_close(d);
    /* An empty bucket all of whose numbers are taken will never be used again. */
    if (!err && n == 0 && cleanup && bucket < (PBX_LOAD(&s->st->next_seq) >> PBX_SPOOL_BUCKET_BITS))
        pbx__fs_table()->unlinkat(s->qfd, name, AT_REMOVEDIR);
    return err;
}

/* Delete the temporary files of writers that are dead. */
static void clean_tmp(struct spool *s)
{
    struct pbx_fs_calls *fs = pbx__fs_table();
    s->last_clean_ns = pbx__os_mono_ns(); /* the next look is due CLEAN_NS from now */
    DIR *d;
    if (fs->dir_open(s->tmpfd, &d))
        return;
    const char *name;
    while (fs->dir_next(d, &name) > 0) {
        const char *p = name;
        uint64_t owner;
        if (p[0] == '.')
            continue;
        if (parse_hex(&p, 16, &owner) || *p != '.') {
            warn_foreign(s, "tmp/", "", name);
            continue;
        }
        if (!owner_alive(s, owner))
            fs->unlinkat(s->tmpfd, name, 0);
    }
    fs->dir_close(d);
}

/* Build the index from the directories (called with the lock held). */
static int scan(struct spool *s)
{
    s->need_scan = 1; /* until this scan is complete */
    pbx__sidx_clear(&s->idx);
    int wd = pbx__fs_inotify_watch(s->ifd, s->dirfd, "q");
    if (wd < 0)
        return wd;
    s->qwd = wd;
    if ((wd = pbx__fs_inotify_watch(s->ifd, s->dirfd, "c")) < 0)
        return wd;
    s->cwd = wd;

    struct pbx_fs_calls *fs = pbx__fs_table();
    DIR *d;
    int err = fs->dir_open(s->qfd, &d);
    if (err)
        return err;
    const char *name;
    while (!err && (err = fs->dir_next(d, &name)) > 0) {
        uint64_t b;
        err = 0;
        if (name[0] == '.')
            continue;
        if (parse_bucket(name, &b)) {
            warn_foreign(s, "q/", "", name);
            continue;
        }
        err = watch_bucket(s, b, name);
        if (!err)
            err = scan_bucket(s, b, name, 1);
        else if (err == -ENOENT)
            err = 0; /* removed since it was listed */
        else if (err == -ENOTDIR) {
            warn_foreign(s, "q/", "", name); /* a bucket name, not a directory */
            err = 0;
        }
    }
    fs->dir_close(d);
    if (err)
        return err;

    if ((err = fs->dir_open(s->cfd, &d)))
        return err;
    while (!err && (err = fs->dir_next(d, &name)) > 0) {
        uint64_t seq, owner;
        long type;
        uint32_t len;
        err = 0;
        if (name[0] == '.')
            continue;
        if (parse_msg(name, 1, &seq, &type, &len, &owner) || len > s->meta.max_msg_size) {
            warn_foreign(s, "c/", "", name);
            continue;
        }
        err = pbx__sidx_place(&s->idx, seq, type, len, PBX_SIDX_CLAIMED, owner);
    }
    fs->dir_close(d);
    /* After a power loss the state file may be older than the directories: sequence numbers
     * restart above every message that exists. */
    uint64_t next = PBX_LOAD(&s->st->next_seq);
    if (next <= s->idx.max_seq || next > PBX_SPOOL_SEQ_LIMIT)
        PBX_STORE(&s->st->next_seq, s->idx.max_seq + 1); /* (or a damaged state page) */
    clean_tmp(s);
    s->need_scan = err != 0;
    return err;
}

static int apply_event(struct spool *s, const struct inotify_event *ev)
{
    uint64_t seq, owner = 0, b;
    long type;
    uint32_t len;
    int to = (ev->mask & (IN_MOVED_TO | IN_CREATE)) != 0;
    int from = (ev->mask & (IN_MOVED_FROM | IN_DELETE)) != 0;
    if (ev->wd == s->qwd) {
        if (to && (ev->mask & IN_ISDIR) && ev->len && parse_bucket(ev->name, &b) == 0) {
            int err = watch_bucket(s, b, ev->name);
            if (err == -ENOENT || err == -ENOTDIR)
                return 0; /* an old event: the bucket was emptied and removed since */
            if (err)
                return err;
            /* Files renamed in before the watch existed are found by scanning it, but only
             * once every queued event is applied (drain): events older than the scan, applied
             * on top of it, could undo what it found. */
            if (s->n_new == s->new_cap) {
                size_t cap = s->new_cap * 2 + 8;
                uint64_t *a = realloc(s->new_buckets, cap * sizeof(*a));
                if (!a)
                    return -ENOMEM;
                s->new_buckets = a;
                s->new_cap = cap;
            }
            s->new_buckets[s->n_new++] = b;
            return 0;
        }
        return 0;
    }
    if (ev->wd == s->cwd) {
        if (!ev->len || parse_msg(ev->name, 1, &seq, &type, &len, &owner))
            return 0;
        if (to && len <= s->meta.max_msg_size)
            return pbx__sidx_place(&s->idx, seq, type, len, PBX_SIDX_CLAIMED, owner);
        if (from)
            pbx__sidx_leave(&s->idx, seq, PBX_SIDX_CLAIMED);
        return 0;
    }
    if (ev->wd < 0 || (size_t) ev->wd >= s->wd_cap || !s->wd_bucket[ev->wd])
        return 0;
    b = s->wd_bucket[ev->wd] - 1;
    if (ev->mask & IN_IGNORED) {
        s->wd_bucket[ev->wd] = 0;
        return 0;
    }
    if (!ev->len || parse_msg(ev->name, 0, &seq, &type, &len, &owner) ||
        seq >> PBX_SPOOL_BUCKET_BITS != b)
        return 0;
    if (to && len <= s->meta.max_msg_size)
        return pbx__sidx_place(&s->idx, seq, type, len, PBX_SIDX_QUEUED, 0);
    if (from) {
        pbx__sidx_leave(&s->idx, seq, PBX_SIDX_QUEUED);
        if (ev->mask & IN_DELETE) /* deleted while queued: dropped (or the spool removed) */
            for (struct sync_wait *w = s->syncs; w; w = w->next)
                if (w->seq == seq)
                    w->dropped = 1;
    }
    return 0;
}

/* Apply every queued inotify event (lock held). */
static int drain(struct spool *s)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    /* A failed scan, or events read but not applied, left the index partial: scan again (the
     * scan covers every event read meanwhile, which are only discarded). */
    int rescan = s->need_scan, applied = s->need_scan;
    for (;;) {
        ssize_t n = pbx__fs_inotify_read(s->ifd, buf, sizeof(buf));
        if (n < 0)
            return (int) n;
        if (n == 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *) p;
            p += sizeof(*ev) + ev->len;
            applied = 1;
            if (ev->mask & IN_Q_OVERFLOW)
                rescan = 1;
            if (rescan)
                continue;
            int err = apply_event(s, ev);
            if (err == -ENOMEM)
                rescan = 1;
            else if (err) {
                s->n_new = 0;
                s->need_scan = 1; /* the rest of the events are lost */
                return err;
            }
        }
    }
    /* The buckets that appeared, now that no older event is left to apply. */
    for (size_t i = 0; i < s->n_new && !rescan; i++) {
        char bname[NAME_LEN];
        bucket_name(bname, s->new_buckets[i]);
        int err = scan_bucket(s, s->new_buckets[i], bname, 0);
        if (err == -ENOMEM)
            rescan = 1;
        else if (err) {
            s->n_new = 0;
            s->need_scan = 1; /* its files are in no event: only a scan finds them */
            return err;
        }
    }
    s->n_new = 0;
    if (applied) {
        /* SEQ_CST with wait_change's pair: either the sleeper sees the new generation, or we
         * see it counted in local_waiters. */
        __atomic_store_n(&s->gen, s->gen + 1, __ATOMIC_SEQ_CST);
        uint32_t sleepers = __atomic_load_n(&s->local_waiters, __ATOMIC_SEQ_CST);
        if (sleepers)
            pbx__fs_eventfd_kick(s->efd, sleepers);
    }
    return rescan ? scan(s) : 0;
}

/* This process's own inotify descriptor and index: made on open, and again in a child after
 * fork(), which must not share its parent's event queue. */
static int process_init(struct spool *s)
{
    if (s->ifd >= 0)
        pbx__fs_table()->close(s->ifd);
    if (s->efd >= 0)
        pbx__fs_table()->close(s->efd);
    s->ifd = s->efd = -1;
    if (s->wd_bucket)
        memset(s->wd_bucket, 0, s->wd_cap * sizeof(*s->wd_bucket));
    int fd = pbx__fs_inotify_init();
    if (fd < 0)
        return fd;
    s->ifd = fd;
    if ((fd = pbx__fs_eventfd()) < 0)
        return fd;
    s->efd = fd;
    s->pid = pbx__os_self()->pid;
    s->owner = pbx__ident_process();
    peer_register(s); /* (a fork()ed child: an entry of its own; the parent's stays) */
    return scan(s);
}

static void spool_unlock(struct spool *s)
{
    pbx__lock_release(&s->st->lock);
}

/* Take the spool lock and bring the index up to date. A process that stays open for long
 * also deletes, every CLEAN_NS, the temporary files of writers that died since. */
static int spool_lock_until(struct spool *s, uint64_t limit)
{
    int r = pbx__lock_acquire_until(&s->st->lock, &s->lctx, limit);
    if (r < 0)
        return r;
    if (r == 1)
        __atomic_fetch_add(&s->st->repairs, 1, __ATOMIC_RELAXED);
    finish_lost_removal(s);
    if (PBX_UNLIKELY(s->pid != pbx__os_self()->pid))
        r = process_init(s);
    else
        r = drain(s);
    if (r) {
        spool_unlock(s);
        return r;
    }
    uint64_t now = pbx__os_mono_ns();
    if (PBX_UNLIKELY(now - s->last_clean_ns > CLEAN_NS)) {
        s->last_clean_ns = now;
        clean_tmp(s);
    }
    return 0;
}

static int spool_lock(struct spool *s)
{
    return spool_lock_until(s, PBX_LOCK_FOREVER);
}

/* The open directory of bucket b, created if needed (lock held). The descriptor of the bucket
 * last used is kept; fresh forces a new look (after a rename found it gone). */
static int bucket_dir(struct spool *s, uint64_t b, int fresh)
{
    if (s->bucket_fd >= 0 && s->cached_bucket == b && !fresh)
        return s->bucket_fd;
    if (s->bucket_fd >= 0)
        pbx__fs_table()->close(s->bucket_fd);
    s->bucket_fd = -1;
    char name[NAME_LEN];
    bucket_name(name, b);
    int err = pbx__fs_table()->mkdirat(s->qfd, name, dir_mode(s->meta.mode));
    if (err && err != -EEXIST)
        return err;
    PBX_CRASH_POINT("spool.bucket.made");
    int fd =
        pbx__fs_table()->openat(s->qfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if ((fd == -ENOTDIR || fd == -ELOOP) && err == -EEXIST) {
        /* Not a directory (a file or link someone put there): set it aside, make the bucket. */
        char to[NAME_LEN + 24];
        snprintf(to, sizeof(to), "q.%s.%016" PRIx64, name, pbx__os_random64());
        warn(s, "q/%s is not a directory; moved to bad/%s", name, to);
        if ((err = pbx__fs_table()->renameat(s->qfd, name, s->badfd, to)) ||
            (err = pbx__fs_table()->mkdirat(s->qfd, name, dir_mode(s->meta.mode))))
            return err;
        fd = pbx__fs_table()->openat(s->qfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                                     0);
    }
    if (fd < 0) {
        if (!err) /* made here, and empty: a failed send leaves no bucket behind */
            pbx__fs_table()->unlinkat(s->qfd, name, AT_REMOVEDIR);
        return fd;
    }
    if (!err)
        pbx__fs_table()->fchmod(fd, dir_mode(s->meta.mode)); /* the umask must not apply */
    /* The directory's own name must be durable before anything renamed into it is. Whoever
     * made it flushes q/, but may die first: so does anyone past the highest bucket known to
     * be durable in q/. */
    if (s->meta.durability != PBX_DURABLE_NONE && (!err || b >= s->st->q_durable)) {
        if ((err = pbx__fs_table()->fsync(s->qfd))) {
            pbx__fs_table()->close(fd);
            /* A later flush that succeeds would prove nothing about this entry (FAILED
             * FLUSHES): remove the bucket while it is empty, so the next sender makes it
             * again. (Not empty: it holds renames made after a flush of q/ that worked.) */
            pbx__fs_table()->unlinkat(s->qfd, name, AT_REMOVEDIR);
            return err;
        }
        if (b >= s->st->q_durable)
            s->st->q_durable = b + 1;
    }
    s->bucket_fd = fd;
    s->cached_bucket = b;
    return fd;
}

/* Rename into bucket b, creating it again if a receiver just removed it (lock held). */
static int rename_into_bucket(struct spool *s, int fromfd, const char *from, uint64_t b,
                              const char *to)
{
    for (int attempt = 0;; attempt++) {
        int bfd = bucket_dir(s, b, attempt > 0);
        if (bfd < 0)
            return bfd;
        int err = pbx__fs_table()->renameat(fromfd, from, bfd, to);
        if (err != -ENOENT || attempt > 0)
            return err;
        /* ENOENT: the source is gone, or the cached bucket was removed; try a fresh bucket. */
    }
}

/* Put back the claims of dead processes (lock held). Returns how many. */
static int reap(struct spool *s)
{
    int n = 0, was_visible = visible(s);
    s->last_reap_ns = pbx__os_mono_ns();
    for (struct pbx_sidx_msg *m = s->idx.claimed; m; m = m->cnext) {
        if (owner_alive(s, m->owner))
            continue;
        char from[NAME_LEN], to[NAME_LEN];
        claim_name(from, m->seq, m->type, m->len, m->owner);
        msg_name(to, m->seq, m->type, m->len);
        int err = rename_into_bucket(s, s->cfd, from, m->seq >> PBX_SPOOL_BUCKET_BITS, to);
        if (err == 0) {
            n++;
            __atomic_fetch_add(&s->st->repairs, 1, __ATOMIC_RELAXED);
        } else if (err != -ENOENT) {
            warn(s, "cannot put back c/%s: %s", from, strerror(-err));
        }
    }
    if (n)
        drain(s);
    if (n && !was_visible)
        announce(s);
    return n;
}

/*
 * Sleep until the spool may have changed: an inotify event, another thread of this handle
 * drained events, a slice passed, the deadline passed (-ETIMEDOUT), a signal handler ran
 * (-EINTR) or the spool was removed (-EIDRM). Called without the lock; gen is s->gen as the
 * caller saw it under the lock, and claims whether some message was claimed then.
 */
struct waiting {
    struct spool *s;
    uint32_t *waiters;
};

static void stop_waiting(void *arg)
{
    pbx__cancel_landed();
    const struct waiting *w = arg;
    __atomic_fetch_sub(w->waiters, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&w->s->local_waiters, 1, __ATOMIC_SEQ_CST);
}

/* The wait itself: the one cancellation point of a spool call (CANCELLATION in os/cancel.h;
 * the API layer disabled cancellation around the rest). A cancel here uncounts the sleeper. */
static int wait_readable(struct spool *s, uint64_t deadline_ns, uint64_t slice,
                         struct pbx_sigguard *g, uint32_t *waiters)
{
    struct waiting w = {s, waiters};
    struct pbx_cancel_wait cw;
    int r;
    pthread_cleanup_push(stop_waiting, &w);
    pbx__cancel_wait_begin(&cw, 0);
    r = pbx__fs_wait_readable(s->ifd, s->efd, deadline_ns, slice, g->blocked ? &g->old : NULL);
    pbx__cancel_wait_end(&cw);
    pthread_cleanup_pop(0);
    return r;
}

static int wait_change(struct spool *s, uint64_t gen, int claims, uint64_t deadline_ns,
                       struct pbx_sigguard *g, uint32_t *waiters)
{
    pbx__os_sig_block(g);
    if (removed(s))
        return -EIDRM;
    if (pbx__os_sig_caught_pending(g))
        return -EINTR;
    if (deadline_ns && pbx__os_mono_ns() >= deadline_ns)
        return -ETIMEDOUT;
    __atomic_fetch_add(&s->local_waiters, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(waiters, 1, __ATOMIC_RELAXED);
    int r = 1;
    if (__atomic_load_n(&s->gen, __ATOMIC_SEQ_CST) == gen) {
        uint64_t slice = claims ? CLAIM_SLICE_NS : IDLE_SLICE_NS;
        r = wait_readable(s, deadline_ns, slice, g, waiters);
    }
    __atomic_fetch_sub(waiters, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&s->local_waiters, 1, __ATOMIC_SEQ_CST);
    /* One wake-up each: a kick for n sleepers wakes each once, not forever. A wake-up left
     * over by a sleeper that woke for another reason costs one extra look later. */
    pbx__fs_eventfd_take(s->efd);
    finish_lost_removal(s);
    if (removed(s))
        return -EIDRM;
    if (r == -EINTR)
        return -EINTR;
    if (r == 0 && deadline_ns && pbx__os_mono_ns() >= deadline_ns)
        return -ETIMEDOUT;
    return 0;
}

/* ---- group commit ---------------------------------------------------------------------- */

/* Flush bucket directory b, if it exists. */
static int flush_bucket(struct spool *s, uint64_t b)
{
    char name[NAME_LEN];
    bucket_name(name, b);
    struct pbx_fs_calls *fs = pbx__fs_table();
    int fd = fs->openat(s->qfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP)
        return 0; /* emptied and removed: nothing in it to make durable (or not a bucket) */
    if (fd < 0)
        return fd;
    int err = fs->fsync(fd);
    fs->close(fd);
    return err;
}

/* The outcome of the finished flush that covered rename number mine: 0, or the error of its
 * failed group (FAILED FLUSHES above; flush lock held). */
static int flush_outcome(const struct pbx_spool_state *st, uint64_t mine)
{
    for (unsigned i = 0; i < PBX_SPOOL_FAILED; i++) {
        const struct pbx_spool_failed *f = &st->failed[i];
        if (f->err && mine >= f->lo && mine <= f->hi)
            return f->err < 0 && f->err > -4096 ? f->err : -EIO; /* (a damaged page) */
    }
    return mine <= st->failed_old ? -EIO : 0;
}

/* Record a failed group, renames lo..hi, then count it as decided (flush lock held). */
static void flush_failed(struct pbx_spool_state *st, uint64_t lo, uint64_t hi, int err)
{
    struct pbx_spool_failed *f = &st->failed[st->failed_n % PBX_SPOOL_FAILED];
    if (f->err && f->hi > st->failed_old)
        st->failed_old = f->hi; /* pushed out: its renames count as failed from now on */
    f->lo = lo;
    f->hi = hi;
    f->err = err;
    st->failed_n++;
    if (hi > PBX_LOAD(&st->failed_hi))
        PBX_STORE(&st->failed_hi, hi);
}

/* Make every rename up to number mine durable (GROUP COMMIT above). */
static int flush_renames(struct spool *s, uint64_t mine, uint64_t my_bucket)
{
    struct pbx_lock_ctx *ctx = &s->lctx;
    /* Acquire: the failed group a flush recorded is seen with the flushed it set (release). */
    if (PBX_ACQUIRE(&s->st->flushed) >= mine && PBX_LOAD(&s->st->failed_hi) < mine)
        return 0;
    int r = pbx__lock_acquire(&s->st->flush_lock, ctx);
    if (r < 0)
        return r;
    if (PBX_ACQUIRE(&s->st->flushed) >= mine) {
        r = flush_outcome(s->st, mine);
        pbx__lock_release(&s->st->flush_lock);
        return r;
    }
    if ((r = spool_lock(s)) < 0) {
        pbx__lock_release(&s->st->flush_lock);
        return r;
    }
    uint64_t target = s->st->renames;
    uint64_t first = PBX_LOAD(&s->st->flushed) + 1; /* this flush's group: first..target */
    uint64_t lo = s->st->dirty_lo, hi = s->st->dirty_hi;
    /* A flusher that died before finishing left its range in flight: flush it again. */
    uint64_t ilo = s->st->inflight_lo, ihi = s->st->inflight_hi;
    if (ilo <= ihi) {
        lo = ilo < lo ? ilo : lo;
        hi = ihi > hi ? ihi : hi;
    }
    if (lo > hi)
        lo = hi = my_bucket;
    lo = my_bucket < lo ? my_bucket : lo;
    hi = my_bucket > hi ? my_bucket : hi;
    /* The range comes from a shared page: no bucket past next_seq's can exist. */
    uint64_t top = s->st->next_seq >> PBX_SPOOL_BUCKET_BITS;
    hi = hi > top ? top : hi;
    s->st->inflight_lo = lo;
    s->st->inflight_hi = hi;
    s->st->dirty_lo = UINT64_MAX;
    s->st->dirty_hi = 0;
    spool_unlock(s);
    PBX_CRASH_POINT("spool.flush.taken");
    int err = 0;
    if (hi - lo < 64) {
        for (uint64_t b = lo; b <= hi && !err; b++)
            err = flush_bucket(s, b);
    } else {
        /* A wide range (a damaged state page, or a long-dead flusher's): flush the buckets
         * that exist in it rather than try every number. */
        struct pbx_fs_calls *fs = pbx__fs_table();
        DIR *d;
        const char *name;
        if (!(err = fs->dir_open(s->qfd, &d))) {
            while (!err && (err = fs->dir_next(d, &name)) > 0) {
                uint64_t b;
                err = 0;
                if (name[0] != '.' && parse_bucket(name, &b) == 0 && b >= lo && b <= hi)
                    err = flush_bucket(s, b);
            }
            fs->dir_close(d);
        }
    }
    /* Only the flush lock's holder touches the range in flight. */
    s->st->inflight_lo = UINT64_MAX;
    s->st->inflight_hi = 0;
    /* A failure decides the group as a success does (FAILED FLUSHES): it is recorded first,
     * and its range is not given back for a retry that would prove nothing. */
    if (err && target >= first)
        flush_failed(s->st, first, target, err);
    uint64_t cur = PBX_LOAD(&s->st->flushed);
    while (cur < target && !__atomic_compare_exchange_n(&s->st->flushed, &cur, target, 0,
                                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
    pbx__lock_release(&s->st->flush_lock);
    return err;
}

/* PBX_DURABLE_BATCH: flush the file system if nobody did for BATCH_NS (or force). */
static int flush_batch(struct spool *s, int force)
{
    int64_t now = (int64_t) pbx__os_mono_ns();
    int64_t last = PBX_LOAD(&s->st->last_batch_flush_ns);
    uint64_t target = PBX_LOAD(&s->st->renames);
    if (PBX_LOAD(&s->st->flushed) >= target)
        return 0;
    if (!force && (now - last < (int64_t) BATCH_NS ||
                   !__atomic_compare_exchange_n(&s->st->last_batch_flush_ns, &last, now, 0,
                                                __ATOMIC_RELAXED, __ATOMIC_RELAXED)))
        return 0;
    int err = pbx__fs_table()->syncfs(s->dirfd);
    if (!err) {
        uint64_t cur = PBX_LOAD(&s->st->flushed);
        while (cur < target && !__atomic_compare_exchange_n(&s->st->flushed, &cur, target, 0,
                                                            __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            ;
    }
    return err;
}

/* ---- opening and creating -------------------------------------------------------------- */

static void spool_free(struct spool *s)
{
    if (!s)
        return;
    if (s->st)
        pbx__os_table()->munmap(s->st, STATE_SIZE);
    int *fds[] = {&s->dirfd, &s->qfd, &s->cfd,       &s->tmpfd, &s->badfd, &s->statefd,
                  &s->ifd,   &s->efd, &s->bucket_fd, &s->wfd,   &s->stopfd};
    for (size_t i = 0; i < PBX_ARRAY_LEN(fds); i++)
        if (*fds[i] >= 0)
            pbx__fs_table()->close(*fds[i]);
    pbx__sidx_fini(&s->idx);
    while (s->syncs) { /* only entries of cancelled senders are left (sync_cancelled) */
        struct sync_wait *w = s->syncs;
        s->syncs = w->next;
        free(w);
    }
    pthread_mutex_destroy(&s->fd_mu);
    free(s->wd_bucket);
    free(s->new_buckets);
    free(s->path);
    free(s);
}

static struct spool *spool_new(const char *path)
{
    struct spool *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->dirfd = s->qfd = s->cfd = s->tmpfd = s->badfd = s->statefd = -1;
    s->ifd = s->efd = s->bucket_fd = -1;
    s->peer_slot = -1;
    s->wfd = s->stopfd = -1;
    pthread_mutex_init(&s->fd_mu, NULL);
    s->path = strdup(path);
    if (!s->path || pbx__sidx_init(&s->idx)) {
        spool_free(s);
        return NULL;
    }
    return s;
}

static uint32_t meta_check(const struct pbx_spool_meta *m)
{
    return fnv32(m, offsetof(struct pbx_spool_meta, check), FNV_SEED);
}

static int read_meta(int dirfd, struct pbx_spool_meta *m)
{
    struct pbx_fs_calls *fs = pbx__fs_table();
    int fd = fs->openat(dirfd, "meta", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd == -ENOENT || fd == -ELOOP)
        return -EBADMSG; /* a directory that is not a spool */
    if (fd < 0)
        return fd;
    struct stat st;
    int err = fs->fstat(fd, &st);
    if (err || !S_ISREG(st.st_mode)) {
        fs->close(fd);
        return err ? err : -EBADMSG; /* a FIFO, a device, a directory: never read */
    }
    ssize_t n = fs->pread(fd, m, sizeof(*m), 0);
    fs->close(fd);
    if (n < 0)
        return (int) n;
    if ((size_t) n != sizeof(*m) || memcmp(m->magic, PBX_SPOOL_META_MAGIC, 8) != 0)
        return -EBADMSG;
    if (m->version != PBX_SPOOL_VERSION)
        return -EPROTO;
    if (m->check != meta_check(m) || m->max_msg_size > m->max_bytes || m->max_msgs < 1 ||
        m->overflow > PBX_DROP_OLDEST || m->durability > PBX_DURABLE_NONE)
        return -EBADMSG;
    return 0;
}

static int open_sub(struct spool *s, const char *name, int *fd)
{
    int r =
        pbx__fs_table()->openat(s->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (r == -ENOENT || r == -ENOTDIR || r == -ELOOP)
        return -EBADMSG;
    if (r < 0)
        return r;
    *fd = r;
    return 0;
}

/* This boot's id (/proc/sys/kernel/random/boot_id) into boot; left zero if unreadable. */
static void read_boot_id(char *boot, size_t cap)
{
    struct pbx_fs_calls *fs = pbx__fs_table();
    int bfd = fs->openat(AT_FDCWD, "/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC, 0);
    if (bfd >= 0) {
        ssize_t n = fs->pread(bfd, boot, cap - 1, 0);
        if (n <= 0)
            memset(boot, 0, cap);
        fs->close(bfd);
    }
}

/* Open the spool directory at s->path and everything in it, check it, map the state. */
static int open_existing(struct spool *s)
{
    struct pbx_os_calls *os = pbx__os_table();
    struct pbx_fs_calls *fs = pbx__fs_table();
    struct stat st;
    int err = fs->fstatat(AT_FDCWD, s->path, &st, AT_SYMLINK_NOFOLLOW);
    if (err)
        return err;
    if (S_ISLNK(st.st_mode))
        return -ELOOP;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    int fd = fs->openat(AT_FDCWD, s->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    s->dirfd = fd;
    err = read_meta(s->dirfd, &s->meta);
    if (err)
        return err;
    if ((err = open_sub(s, "q", &s->qfd)) || (err = open_sub(s, "c", &s->cfd)) ||
        (err = open_sub(s, "tmp", &s->tmpfd)) || (err = open_sub(s, "bad", &s->badfd)))
        return err;
    int access = s->rdonly ? O_RDONLY : O_RDWR;
    fd = fs->openat(s->dirfd, "state", access | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd == -ENOENT || fd == -ELOOP)
        return -EBADMSG;
    if (fd < 0)
        return fd;
    s->statefd = fd;
    if ((err = fs->fstat(fd, &st)))
        return err;
    if (!S_ISREG(st.st_mode) || st.st_size != STATE_SIZE)
        return -EBADMSG;
    void *base;
    if ((err =
             os->mmap(fd, STATE_SIZE, PBX_MAP_POPULATE | (s->rdonly ? PBX_MAP_RDONLY : 0), &base)))
        return err;
    s->st = base;
    if (memcmp(s->st->magic, PBX_SPOOL_STATE_MAGIC, 8) != 0)
        return -EBADMSG;
    if (s->st->version != PBX_SPOOL_VERSION)
        return -EPROTO;
    if (removed(s))
        return -ENOENT; /* removed between our lookup and now */
    /* Access: the spool's directories must be writable to us, as its files are (readable
     * only, to look). */
    int w = s->rdonly ? 0 : W_OK;
    if ((err = fs->faccessat(s->dirfd, "q", R_OK | w | X_OK, AT_EACCESS)) ||
        (err = fs->faccessat(s->dirfd, "c", R_OK | w | X_OK, AT_EACCESS)) ||
        (!s->rdonly && (err = fs->faccessat(s->dirfd, "tmp", W_OK | X_OK, AT_EACCESS))))
        return err; /* -EACCES, or what kept the kernel from telling */
    s->lctx.dev = st.st_dev;
    s->lctx.ino = st.st_ino;
    if ((err = fs->fstat(s->dirfd, &st)))
        return err;
    s->dir_dev = st.st_dev;
    s->dir_ino = st.st_ino;
    /* Owners are judged in our PID namespace: a process of another one must not even take the
     * lock, whose holder is judged the same way (checked again below, under the lock). */
    char boot[40] = {0};
    read_boot_id(boot, sizeof(boot));
    if (!memcmp(boot, s->st->boot_id, sizeof(boot)) &&
        (err = pbx__ident_pidns_admits(PBX_LOAD(&s->st->pidns_dev), PBX_LOAD(&s->st->pidns_ino))))
        return err;
    if (s->rdonly) {
        /* Looking: no lock, no scan, no participant entry. Owners of another boot are all
         * dead, as a read-write open would find. */
        s->new_boot = boot[0] && memcmp(boot, s->st->boot_id, sizeof(boot)) != 0;
        return 0;
    }
    if ((err = spool_lock(s)))
        return err;
    /* Counters from a shared page: keep them consistent whatever a damaged page says (the
     * scan already put next_seq right). */
    if (PBX_LOAD(&s->st->flushed) > s->st->renames)
        PBX_STORE(&s->st->flushed, s->st->renames);
    /* pid + start time can repeat after a reboot, and a spool outlives one: the first open in
     * a new boot puts back every claim and deletes every temporary file. */
    int anew = 0;
    if (boot[0] && memcmp(boot, s->st->boot_id, sizeof(boot)) != 0) {
        if (s->st->boot_id[0]) { /* (zero: made by an older version; just record) */
            s->new_boot = 1;
            reap(s);
            clean_tmp(s);
            peers_prune(s, 1);
            s->new_boot = 0;
        }
        memcpy(s->st->boot_id, boot, sizeof(boot));
        anew = 1;
    }
    /* The PID namespace of the spool's users in this boot: recorded by the first open of a
     * boot, then only processes of it are admitted (docs/spool.md). */
    err = pbx__ident_pidns_bind(&s->st->pidns_dev, &s->st->pidns_ino, anew);
    spool_unlock(s);
    return err;
}

static int write_file(int dirfd, const char *name, const void *data, size_t len, mode_t mode)
{
    struct pbx_fs_calls *fs = pbx__fs_table();
    int fd = fs->openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return fd;
    int err = fs->fchmod(fd, mode);
    if (!err)
        err = fs->write_all(fd, data, len);
    if (!err)
        err = fs->fsync(fd);
    fs->close(fd);
    return err;
}

/* Delete what a spool directory holds that postbox put there; foreign files stay. */
static void delete_tree(int dirfd)
{
    static const char *const subs[] = {"tmp", "c", "bad", "q"};
    struct pbx_fs_calls *fs = pbx__fs_table();
    for (size_t i = 0; i < PBX_ARRAY_LEN(subs); i++) {
        int fd = fs->openat(dirfd, subs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
        if (fd < 0)
            continue;
        DIR *d;
        if (fs->dir_open(fd, &d) < 0) {
            fs->close(fd);
            continue;
        }
        const char *name;
        while (fs->dir_next(d, &name) > 0) {
            if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                continue;
            if (i == 3) { /* a bucket */
                int bfd = fs->openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
                DIR *bd;
                if (bfd >= 0 && fs->dir_open(bfd, &bd) == 0) {
                    const char *f;
                    while (fs->dir_next(bd, &f) > 0)
                        if (strcmp(f, ".") != 0 && strcmp(f, "..") != 0)
                            fs->unlinkat(bfd, f, 0);
                    fs->dir_close(bd);
                }
                if (bfd >= 0)
                    fs->close(bfd);
                fs->unlinkat(fd, name, AT_REMOVEDIR);
            } else {
                fs->unlinkat(fd, name, 0);
            }
        }
        fs->dir_close(d);
        fs->close(fd);
        fs->unlinkat(dirfd, subs[i], AT_REMOVEDIR);
    }
    fs->unlinkat(dirfd, "meta", 0);
    fs->unlinkat(dirfd, "state", 0);
}

/* The directory that holds path, and path's last component. */
static int split_path(const char *path, char **parent, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *parent = strdup(".");
        *base = path;
    } else {
        *parent = slash == path ? strdup("/") : strndup(path, (size_t) (slash - path));
        *base = slash + 1;
    }
    if (!*parent)
        return -ENOMEM;
    return **base && strcmp(*base, ".") != 0 && strcmp(*base, "..") != 0 ? 0 : -EINVAL;
}

/*
 * Create a spool at s->path: build it complete under a temporary name beside it, then rename
 * it into place, so that no process ever sees half a spool. Returns 0, -EEXIST when path
 * exists (and is not an empty directory), or an error. When the flush of the parent directory
 * after the rename fails, the spool is in place but its name may not survive a power loss:
 * it returns 0 with *flush_err set and the new directory's identity in *made, and the caller
 * removes it again (spool_open).
 */
static int create_new(struct spool *s, const struct pbx_options *opts, int *flush_err,
                      struct stat *made)
{
    char *parent;
    const char *base;
    int err = split_path(s->path, &parent, &base);
    if (err) {
        free(parent);
        return err;
    }
    struct pbx_fs_calls *fs = pbx__fs_table();
    int pfd = fs->openat(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    free(parent);
    if (pfd < 0)
        return pfd == -ENOENT ? -ENOTDIR : pfd;
    struct stat st;
    if (fs->fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
        fs->close(pfd);
        return S_ISLNK(st.st_mode) ? -ELOOP : -ENOTDIR; /* never replaced, never followed */
    }
    char tmp[NAME_MAX + 1];
    snprintf(tmp, sizeof(tmp), ".%.200s.new.%016" PRIx64, base, pbx__os_random64());
    mode_t dm = dir_mode(opts->mode);
    int dfd = -1;
    if ((err = fs->mkdirat(pfd, tmp, 0700)))
        goto out;
    dfd = fs->openat(pfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    if (dfd < 0) {
        err = dfd;
        fs->unlinkat(pfd, tmp, AT_REMOVEDIR);
        goto out;
    }
    struct pbx_spool_meta meta;
    memset(&meta, 0, sizeof(meta));
    memcpy(meta.magic, PBX_SPOOL_META_MAGIC, 8);
    meta.version = PBX_SPOOL_VERSION;
    meta.mode = opts->mode;
    meta.max_bytes = opts->max_bytes;
    meta.max_msgs = opts->max_msgs;
    meta.max_msg_size = opts->max_msg_size;
    meta.overflow = (uint32_t) opts->overflow;
    meta.durability = opts->durability;
    meta.check = meta_check(&meta);
    struct pbx_spool_state *init = calloc(1, STATE_SIZE);
    if (!init) {
        err = -ENOMEM;
        goto fail;
    }
    memcpy(init->magic, PBX_SPOOL_STATE_MAGIC, 8);
    init->version = PBX_SPOOL_VERSION;
    init->next_seq = 1;
    init->dirty_lo = UINT64_MAX;
    init->inflight_lo = UINT64_MAX;
    static const char *const subs[] = {"q", "c", "tmp", "bad"};
    for (size_t i = 0; i < PBX_ARRAY_LEN(subs) && !err; i++) {
        err = fs->mkdirat(dfd, subs[i], dm);
        if (!err)
            err = fs->fchmodat(dfd, subs[i], dm);
    }
    if (!err)
        err = write_file(dfd, "meta", &meta, sizeof(meta), opts->mode & 0666);
    if (!err)
        err = write_file(dfd, "state", init, STATE_SIZE, opts->mode & 0666);
    free(init);
    if (!err)
        err = fs->fchmod(dfd, dm);
    if (!err)
        err = fs->fsync(dfd);
    if (err)
        goto fail;
    PBX_CRASH_POINT("spool.create.built");
    err = fs->renameat(pfd, tmp, pfd, base);
    if (err == -ENOTEMPTY || err == -EEXIST || err == -ENOTDIR || err == -EISDIR) {
        /* Something is there: a spool (opened next), or what open_existing reports. */
        err = -EEXIST;
        goto fail;
    }
    if (err)
        goto fail;
    /* The spool's name is durable only once its parent is flushed. */
    if ((*flush_err = fs->fsync(pfd)) && fs->fstat(dfd, made))
        made->st_ino = 0; /* unknown: nothing will match it */
    goto out;
fail:
    delete_tree(dfd);
    fs->unlinkat(pfd, tmp, AT_REMOVEDIR);
out:
    if (dfd >= 0)
        fs->close(dfd);
    fs->close(pfd);
    return err;
}

static int spool_open(const char *name, int flags, const struct pbx_options *opts, void **state)
{
    const char *path = name + 6; /* after "spool:" */
    if (!*path || strlen(path) > PATH_MAX - 64)
        return -EINVAL;
    struct pbx_options def;
    if (!opts) {
        pbx_options_init(&def);
        opts = &def;
    }
    for (int attempt = 0; attempt < 8; attempt++) {
        struct spool *s = spool_new(path);
        if (!s)
            return -ENOMEM;
        s->rdonly = (flags & PBX_RDONLY) != 0;
        int err = 0, flush_err = 0;
        struct stat made;
        memset(&made, 0, sizeof(made));
        if (flags & PBX_CREATE) {
            err = create_new(s, opts, &flush_err, &made);
            if (err == -EEXIST && (flags & PBX_EXCL)) {
                spool_free(s);
                return -EEXIST;
            }
            if (err && err != -EEXIST) {
                spool_free(s);
                return err;
            }
        }
        err = open_existing(s);
        if (err == -ENOENT && (flags & PBX_CREATE)) {
            spool_free(s); /* removed between create and open: again */
            continue;
        }
        if (!err && flush_err) {
            /* Created, but its name may not survive a power loss, and a later flush that
             * succeeds would prove nothing (FAILED FLUSHES): remove it, as pbx_remove would
             * (anyone who opened it meanwhile sees -EIDRM), and report the error. */
            peer_unregister(s);
            if (s->dir_dev == made.st_dev && s->dir_ino == made.st_ino)
                remove_spool(s);
            err = flush_err;
        }
        if (err) {
            spool_free(s);
            return err;
        }
        *state = s;
        return 0;
    }
    return -EAGAIN;
}

/* ---- the descriptor -------------------------------------------------------------------- */

/*
 * DESCRIPTOR. pbx_fd() hands out an eventfd whose level says whether a message is visible
 * (queued, not claimed) or the spool was removed. A helper thread (every signal blocked;
 * started by the first pbx_fd() or pbx_notify() of the handle in this process, joined by
 * pbx_close()) is one more sleeper on the handle's inotify descriptor: at each change it takes
 * the lock, which applies the events to the index, sets the level from the index's counts,
 * raises this process's notification signal for the edges counted (NOTIFICATION), and sleeps
 * again
 * (counted in local_waiters, so that a thread of the handle that applies events in its place
 * kicks it). While claims exist it also puts back dead claimers' messages every 100 ms, as a
 * waiting receiver would. Its level follows every change within one wake-up, and at worst
 * within a second. A PBX_NOWAIT receive through the handle that finds nothing lowers it at once.
 */

/* Set the level (fd_mu held, or the spool lock and a level the helper would agree with). */
static void fd_level(struct spool *s, int up)
{
    if (__atomic_load_n(&s->level, __ATOMIC_RELAXED) == up)
        return;
    __atomic_store_n(&s->level, up, __ATOMIC_RELAXED);
    if (up)
        pbx__fs_eventfd_kick(s->wfd, 1);
    else
        pbx__fs_eventfd_take(s->wfd);
}

/* The level the spool asks for now (spool lock held). */
static int fd_wanted(const struct spool *s)
{
    return removed(s) || visible(s);
}

static void *fd_helper(void *arg)
{
    struct spool *s = arg;
    while (!__atomic_load_n(&s->helper_stop, __ATOMIC_ACQUIRE)) {
        uint64_t gen = 0, slice_ms = IDLE_SLICE_NS / 1000000;
        int locked = !removed(s) && spool_lock(s) == 0;
        if (locked) {
            if (s->idx.nclaimed && pbx__os_mono_ns() - s->last_reap_ns > REAP_NS)
                reap(s);
            if (s->idx.nclaimed)
                slice_ms = CLAIM_SLICE_NS / 1000000;
            if (s->wfd >= 0)
                fd_level(s, fd_wanted(s));
            uint32_t n = arrivals_to_announce(s);
            int signo = __atomic_load_n(&s->notify_signo, __ATOMIC_RELAXED);
            int value = __atomic_load_n(&s->notify_value, __ATOMIC_RELAXED);
            gen = s->gen;
            spool_unlock(s);
            /* To this process only, with its own choice; a full signal queue ends the burst. */
            for (uint32_t i = 0; i < n && pbx__os_signal_self(signo, value) == 0; i++)
                ;
        } else if (removed(s)) {
            pthread_mutex_lock(&s->fd_mu); /* (pbx_fd may be making the descriptor) */
            if (s->wfd >= 0)
                fd_level(s, 1);
            pthread_mutex_unlock(&s->fd_mu);
        } else {
            slice_ms = 10; /* could not take the lock: try again shortly */
        }
        struct pollfd p[3] = {{.fd = s->stopfd, .events = POLLIN},
                              {.fd = s->ifd, .events = POLLIN},
                              {.fd = s->efd, .events = POLLIN}};
        int nfds = removed(s) ? 1 : 3; /* removed: readable for good, wait for the stop */
        __atomic_fetch_add(&s->local_waiters, 1, __ATOMIC_SEQ_CST);
        if (!locked || __atomic_load_n(&s->gen, __ATOMIC_SEQ_CST) == gen)
            pbx__fs_table()->poll(p, (nfds_t) nfds, nfds == 1 ? -1 : (int) slice_ms);
        __atomic_fetch_sub(&s->local_waiters, 1, __ATOMIC_SEQ_CST);
        pbx__fs_eventfd_take(s->efd);
    }
    return NULL;
}

/* Start this process's helper for the handle if it has none (fd_mu held). 0 or -errno. */
static int helper_ensure(struct spool *s)
{
    pid_t me = pbx__os_self()->pid;
    if (s->helper_on && s->fd_pid == me)
        return 0;
    if (s->fd_pid != me) {
        /* A fork()ed child: the parent's helper, descriptor and registration are not here. */
        if (s->wfd >= 0)
            pbx__fs_table()->close(s->wfd);
        if (s->stopfd >= 0)
            pbx__fs_table()->close(s->stopfd);
        s->wfd = s->stopfd = -1;
        s->helper_on = 0;
        __atomic_store_n(&s->notify_signo, 0, __ATOMIC_RELAXED);
    }
    int stop = pbx__fs_eventfd();
    if (stop < 0)
        return stop;
    s->stopfd = stop;
    s->helper_stop = 0;
    s->fd_pid = me;
    __atomic_store_n(&s->notify_seen, __atomic_load_n(&s->st->arrivals, __ATOMIC_RELAXED),
                     __ATOMIC_RELAXED);
    int err = pbx__os_thread_start(&s->helper, fd_helper, s);
    if (err) {
        pbx__fs_table()->close(stop);
        s->stopfd = -1;
        return err;
    }
    s->helper_on = 1;
    return 0;
}

static int spool_fd(void *state)
{
    struct spool *s = state;
    if (removed(s))
        return -EIDRM;
    pthread_mutex_lock(&s->fd_mu);
    pid_t me = pbx__os_self()->pid;
    if (s->wfd >= 0 && s->fd_pid == me) {
        int fd = s->wfd;
        pthread_mutex_unlock(&s->fd_mu);
        return fd;
    }
    int err = helper_ensure(s), w = -1;
    if (err)
        goto fail;
    if ((w = pbx__fs_eventfd()) < 0) {
        err = w;
        goto fail;
    }
    /* Published with the right level under the spool lock, where the helper reads it. */
    if ((err = spool_lock(s)))
        goto fail;
    s->level = 0;
    s->wfd = w;
    fd_level(s, fd_wanted(s));
    spool_unlock(s);
    peer_role(s, PBX_PEER_WATCH);
    pthread_mutex_unlock(&s->fd_mu);
    return w;
fail:
    if (w >= 0)
        pbx__fs_table()->close(w);
    pthread_mutex_unlock(&s->fd_mu);
    return err;
}

/* Stop and join this process's helper (pbx_close). */
static void fd_stop(struct spool *s)
{
    if (!s->helper_on || s->fd_pid != pbx__os_self()->pid)
        return;
    __atomic_store_n(&s->helper_stop, 1, __ATOMIC_RELEASE);
    pbx__fs_eventfd_kick(s->stopfd, 1);
    pthread_join(s->helper, NULL);
    s->helper_on = 0;
}

static int spool_open_private(const struct pbx_options *opts, void **state)
{
    (void) opts;
    (void) state;
    return -EOPNOTSUPP;
}

static int spool_close(void *state)
{
    struct spool *s = state;
    if (s->meta.durability == PBX_DURABLE_BATCH && !s->rdonly && !removed(s))
        flush_batch(s, 1);
    fd_stop(s);
    if (s->st && !removed(s))
        peer_unregister(s);
    spool_free(s);
    return 0;
}

/* ---- removing -------------------------------------------------------------------------- */

/* Rename the spool away (its name is free at once), mark it removed, wake everyone, delete
 * its files. s->dirfd must be the spool that path names. */
static int remove_spool(struct spool *s)
{
    char *parent;
    const char *base;
    int err = split_path(s->path, &parent, &base);
    if (err) {
        free(parent);
        return err;
    }
    struct pbx_fs_calls *fs = pbx__fs_table();
    int pfd = fs->openat(AT_FDCWD, parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    free(parent);
    if (pfd < 0)
        return pfd == -ENOENT ? -EIDRM : pfd;
    char away[NAME_MAX + 1];
    snprintf(away, sizeof(away), ".%.200s.removed.%016" PRIx64, base, pbx__os_random64());
    /* Only if the name still refers to this spool: it may already be a newer one. */
    struct stat a, b;
    if (fs->fstatat(pfd, base, &a, AT_SYMLINK_NOFOLLOW) < 0 || fs->fstat(s->dirfd, &b) < 0 ||
        a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
        fs->close(pfd);
        return -EIDRM;
    }
    __atomic_store_n(&s->st->removing, 1u, __ATOMIC_SEQ_CST);
    err = fs->renameat(pfd, base, pfd, away);
    if (err) {
        __atomic_store_n(&s->st->removing, 0u, __ATOMIC_SEQ_CST);
        fs->close(pfd);
        return err == -ENOENT ? -EIDRM : err;
    }
    PBX_CRASH_POINT("spool.remove.renamed");
    fs->fsync(pfd);
    if (__atomic_exchange_n(&s->st->removed, 1u, __ATOMIC_SEQ_CST)) {
        /* A handle saw the name gone and finished the removal (finish_lost_removal). */
        fs->close(pfd);
        return 0;
    }
    /* Deleting the files makes inotify events: every sleeper wakes and sees removed. */
    delete_tree(s->dirfd);
    fs->unlinkat(pfd, away, AT_REMOVEDIR);
    fs->close(pfd);
    return 0;
}

static int spool_remove(void *state)
{
    struct spool *s = state;
    if (removed(s))
        return -EIDRM;
    return remove_spool(s);
}

static int spool_unlink(const char *name)
{
    const char *path = name + 6;
    if (!*path)
        return -EINVAL;
    struct spool *s = spool_new(path);
    if (!s)
        return -ENOMEM;
    int err = open_existing(s);
    if (err == -EXDEV)
        err = 0; /* another PID namespace's spool: removed all the same, as with rm -r */
    if (err == 0)
        peer_unregister(s); /* (registered by the open; this is no participant) */
    if (err == 0 || (err == -EBADMSG && s->dirfd >= 0 && s->st)) {
        err = remove_spool(s);
    } else if (err == -EBADMSG && s->dirfd >= 0) {
        /* Damaged: remove it if it at least says it is a spool. */
        char magic[8];
        struct pbx_fs_calls *fs = pbx__fs_table();
        int fd = fs->openat(s->dirfd, "meta", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
        ssize_t n = fd >= 0 ? fs->pread(fd, magic, 8, 0) : -1;
        if (fd >= 0)
            fs->close(fd);
        if (n == 8 && memcmp(magic, PBX_SPOOL_META_MAGIC, 8) == 0) {
            delete_tree(s->dirfd);
            err = fs->unlinkat(AT_FDCWD, path, AT_REMOVEDIR);
        }
    }
    spool_free(s);
    return err;
}

/* ---- sending --------------------------------------------------------------------------- */

/* Take sw off the handle's list of sync senders (lock held), and free the entries of senders
 * cancelled meanwhile. */
static void sync_unlist(struct spool *s, struct sync_wait *sw)
{
    for (struct sync_wait **p = &s->syncs; *p;) {
        struct sync_wait *w = *p;
        if (w == sw) {
            *p = w->next;
        } else if (__atomic_load_n(&w->abandoned, __ATOMIC_ACQUIRE)) {
            *p = w->next;
            free(w);
        } else {
            p = &w->next;
        }
    }
}

/* A PBX_SYNC sender cancelled while it waits (CANCELLATION in os/cancel.h): its entry, on the
 * heap, stays listed, marked, until the next sync_unlist or the close frees it. A cleanup
 * handler takes no lock: the spool lock may be held by a stopped process, and a thread
 * cancelled inside an intercepted call no longer has its locking seen by the thread
 * sanitizer. */
static void sync_cancelled(void *arg)
{
    pbx__cancel_landed();
    __atomic_store_n(&((struct sync_wait *) arg)->abandoned, 1, __ATOMIC_RELEASE);
}

static int wait_change_listed(struct spool *s, struct sync_wait *sw, uint64_t gen, int claims,
                              uint64_t deadline_ns, struct pbx_sigguard *g, uint32_t *waiting)
{
    int r;
    pthread_cleanup_push(sync_cancelled, sw);
    r = wait_change(s, gen, claims, deadline_ns, g, waiting);
    pthread_cleanup_pop(0);
    return r;
}

/*
 * PBX_SYNC: wait until message sw->seq is taken, that is, its file is in neither q/ nor c/ (the
 * index, exact under the lock, no longer has it): a receive deleted it, or a claimer acked it.
 * A claim alone is not a take (the file is in c/). -ENOBUFS if it was deleted while queued
 * (PBX_DROP_OLDEST); -ETIMEDOUT, -EINTR, -EIDRM leave it queued. While claims exist the sender
 * also puts back dead claimers' messages, so a receiver killed holding it cannot strand it.
 */
static int wait_taken(struct spool *s, struct sync_wait *sw, uint64_t deadline_ns)
{
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    uint32_t waiting = 0; /* not a send_waiter: it waits for no room */
    int r;
    for (;;) {
        if ((r = spool_lock(s))) {
            sync_unlist(s, sw); /* (without the lock: the list must not keep our stack) */
            break;
        }
        if (removed(s)) {
            sync_unlist(s, sw);
            spool_unlock(s);
            r = -EIDRM;
            break;
        }
        if (s->idx.nclaimed && pbx__os_mono_ns() - s->last_reap_ns > REAP_NS)
            reap(s);
        if (!pbx__sidx_find(&s->idx, sw->seq)) {
            sync_unlist(s, sw);
            spool_unlock(s);
            r = sw->dropped ? -ENOBUFS : 0;
            break;
        }
        uint64_t gen = s->gen;
        int claims = s->idx.nclaimed != 0;
        spool_unlock(s);
        PBX_CRASH_POINT("spool.sync.waiting");
        if ((r = wait_change_listed(s, sw, gen, claims, deadline_ns, &g, &waiting))) {
            if (spool_lock(s) == 0) {
                sync_unlist(s, sw);
                spool_unlock(s);
            } else {
                sync_unlist(s, sw); /* (as above) */
            }
            break;
        }
    }
    pbx__os_sig_restore(&g);
    return r;
}

/* Write the message to a new temporary file, flushed per the durability mode. */
static int write_tmp(struct spool *s, long type, const void *data, uint32_t len, char *tmpname)
{
    /* One counter for the whole process: the name's OWNER is the process, so two handles on one
     * spool must not count alike. (A fork()ed child has another OWNER: no reset needed.) */
    static uint64_t tmp_counter;
    uint64_t n = __atomic_fetch_add(&tmp_counter, 1, __ATOMIC_RELAXED);
    snprintf(tmpname, NAME_LEN, "%016" PRIx64 ".%" PRIx64, pbx__ident_process(), n);
    mode_t fm = s->meta.mode & 0666;
    int fd = pbx__fs_table()->openat(s->tmpfd, tmpname,
                                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, fm);
    if (fd < 0)
        return fd;
    struct pbx_spool_msg_head h;
    memcpy(h.magic, "PBXM", 4);
    h.len = len;
    h.type = type;
    h.sum = fnv32(data, len, FNV_SEED);
    h.head_sum = fnv32(&h, offsetof(struct pbx_spool_msg_head, head_sum), FNV_SEED);
    struct pbx_fs_calls *fs = pbx__fs_table();
    int err = (fm & 077) ? pbx__fs_table()->fchmod(fd, fm) : 0;
    if (!err)
        err = fs->write_all(fd, &h, sizeof(h));
    if (!err && len)
        err = fs->write_all(fd, data, len);
    PBX_CRASH_POINT("spool.send.written");
    if (!err && s->meta.durability == PBX_DURABLE_ALWAYS)
        err = fs->fdatasync(fd);
    pbx__fs_table()->close(fd);
    if (err)
        fs->unlinkat(s->tmpfd, tmpname, 0);
    else
        PBX_CRASH_POINT("spool.send.flushed");
    return err;
}

/* The index holds a queued message whose file is not there (deleted behind postbox's back,
 * with its event not seen): forget it rather than choose it forever. If the file does exist
 * after all, the next event or scan brings it back. Lock held. */
static void forget_missing(struct spool *s, uint64_t seq, const char *name)
{
    warn(s, "queued message %s has disappeared", name);
    pbx__sidx_leave(&s->idx, seq, PBX_SIDX_QUEUED);
}

/* Discard the oldest queued message to make room (lock held). 1 dropped, 2 it had vanished
 * already (look again), 0 none to drop, or -errno. */
/* With the lock, no room for len: would discarding every queued message make room? What is
 * claimed (held by a claim or being read) is not the sender's to free, and discarding the queue
 * for a message that still would not fit loses it for nothing (as in the shm transport). */
static int dropping_makes_room(const struct spool *s, uint32_t len)
{
    uint64_t kept_bytes = 0;
    for (const struct pbx_sidx_msg *c = s->idx.claimed; c; c = c->cnext)
        kept_bytes += c->len;
    return s->idx.nclaimed + 1 <= s->meta.max_msgs && kept_bytes + len <= s->meta.max_bytes;
}

static int drop_oldest(struct spool *s)
{
    struct pbx_sidx_msg *m = pbx__sidx_select(&s->idx, 0, 0);
    if (!m)
        return 0;
    char name[NAME_LEN];
    msg_name(name, m->seq, m->type, m->len);
    int bfd = bucket_dir(s, m->seq >> PBX_SPOOL_BUCKET_BITS, 0);
    int err = bfd < 0 ? bfd : pbx__fs_table()->unlinkat(bfd, name, 0);
    if (err == -ENOENT && (bfd = bucket_dir(s, m->seq >> PBX_SPOOL_BUCKET_BITS, 1)) >= 0)
        err = pbx__fs_table()->unlinkat(bfd, name, 0);
    if (err == -ENOENT) {
        forget_missing(s, m->seq, name);
        return 2;
    }
    if (err == -EISDIR || err == -EPERM) {
        quarantine(s, bfd, name); /* a directory named like a message */
        return 2;
    }
    if (err)
        return err;
    s->st->dropped++;
    /* Under `always` the drop must be as durable as the send that caused it: its bucket joins
     * the range the sender's group flush covers. */
    uint64_t b = m->seq >> PBX_SPOOL_BUCKET_BITS;
    if (b < s->st->dirty_lo)
        s->st->dirty_lo = b;
    if (b > s->st->dirty_hi)
        s->st->dirty_hi = b;
    int r = drain(s);
    return r ? r : 1;
}

static int send_loop(struct spool *s, long type, const char *tmpname, uint32_t len, int flags,
                     uint64_t deadline_ns, struct pbx_sigguard *g, uint64_t *mine, uint64_t *bucket,
                     struct sync_wait *sw)
{
    int dropped = 0;
    const uint64_t until = pbx__lock_limit(flags & PBX_NOWAIT, deadline_ns); /* DEADLINES, lock.h */
    for (;;) {
        int err = spool_lock_until(s, until);
        if (err)
            return err;
        if (removed(s)) {
            spool_unlock(s);
            return -EIDRM;
        }
        if ((flags & (PBX_SYNC | PBX_NOWAIT)) == (PBX_SYNC | PBX_NOWAIT) &&
            PBX_LOAD(&s->st->recv_waiters) == 0) {
            spool_unlock(s);
            return -EAGAIN; /* only to a receiver already waiting */
        }
        if (s->idx.nclaimed && pbx__os_mono_ns() - s->last_reap_ns > REAP_NS)
            reap(s);
        while (s->idx.count + 1 > s->meta.max_msgs || s->idx.bytes + len > s->meta.max_bytes) {
            if (s->meta.overflow == PBX_DROP_NEWEST) {
                s->st->dropped++;
                spool_unlock(s);
                return -ENOBUFS;
            }
            if (s->meta.overflow != PBX_DROP_OLDEST || !dropping_makes_room(s, len) ||
                (err = drop_oldest(s)) == 0)
                break;
            if (err < 0) {
                spool_unlock(s);
                return err;
            }
            dropped += err == 1;
        }
        if (s->idx.count + 1 > s->meta.max_msgs || s->idx.bytes + len > s->meta.max_bytes) {
            if (flags & PBX_NOWAIT) {
                int n = s->idx.nclaimed ? reap(s) : 0;
                spool_unlock(s);
                if (n > 0)
                    continue;
                return -EAGAIN;
            }
            uint64_t gen = s->gen;
            int claims = s->idx.nclaimed != 0;
            spool_unlock(s);
            if ((err = wait_change(s, gen, claims, deadline_ns, g, &s->st->send_waiters)))
                return err;
            continue;
        }
        if (s->st->next_seq >= PBX_SPOOL_SEQ_LIMIT) {
            spool_unlock(s);
            return -EOVERFLOW; /* no name left to write (2^44 messages, or a hostile state) */
        }
        uint64_t seq = s->st->next_seq++;
        char name[NAME_LEN];
        msg_name(name, seq, type, len);
        *bucket = seq >> PBX_SPOOL_BUCKET_BITS;
        int was_visible = visible(s);
        err = rename_into_bucket(s, s->tmpfd, tmpname, *bucket, name);
        if (err) {
            spool_unlock(s);
            return err;
        }
        if (!was_visible)
            announce(s);
        if (sw) { /* watch for the take from the rename on (its events come at later drains) */
            sw->seq = seq;
            sw->dropped = 0;
            sw->next = s->syncs;
            s->syncs = sw;
        }
        PBX_CRASH_POINT("spool.send.renamed");
        *mine = ++s->st->renames;
        if (*bucket < s->st->dirty_lo)
            s->st->dirty_lo = *bucket;
        if (*bucket > s->st->dirty_hi)
            s->st->dirty_hi = *bucket;
        s->st->sent++;
        peer_role(s, PBX_PEER_SENT);
        s->st->last_send_pid = pbx__os_self()->pid;
        s->st->last_send_time = pbx__os_real_coarse_ns();
        spool_unlock(s);
        return dropped;
    }
}

struct tmp_file {
    struct spool *s;
    const char *name;
};

static void drop_tmp(void *arg)
{
    pbx__cancel_landed();
    const struct tmp_file *t = arg;
    pbx__fs_table()->unlinkat(t->s->tmpfd, t->name, 0);
}

/* send_loop, whose wait for room is a cancellation point: a cancel deletes the temporary file
 * (the message was not sent). */
static int send_tmp(struct spool *s, long type, const char *tmpname, uint32_t len, int flags,
                    uint64_t deadline_ns, struct pbx_sigguard *g, uint64_t *mine, uint64_t *bucket,
                    struct sync_wait *sw)
{
    struct tmp_file t = {s, tmpname};
    int r;
    pthread_cleanup_push(drop_tmp, &t);
    r = send_loop(s, type, tmpname, len, flags, deadline_ns, g, mine, bucket, sw);
    pthread_cleanup_pop(0);
    return r;
}

static int spool_send(void *state, long type, const void *data, uint32_t len, int flags,
                      uint64_t deadline_ns)
{
    struct spool *s = state;
    if (removed(s))
        return -EIDRM;
    if (len > s->meta.max_msg_size)
        return -EMSGSIZE;
    char tmpname[NAME_LEN];
    int err = write_tmp(s, type, data, len, tmpname);
    if (err)
        return err;
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    uint64_t mine = 0, bucket = 0;
    int sync = (flags & PBX_SYNC) != 0;
    /* On the heap: a sender cancelled while it waits leaves it listed (sync_cancelled). */
    struct sync_wait *sw = sync ? calloc(1, sizeof(*sw)) : NULL;
    if (sync && !sw) {
        pbx__fs_table()->unlinkat(s->tmpfd, tmpname, 0);
        return -ENOMEM;
    }
    int r = send_tmp(s, type, tmpname, len, flags, deadline_ns, &g, &mine, &bucket, sw);
    pbx__os_sig_restore(&g);
    if (r < 0) {
        pbx__fs_table()->unlinkat(s->tmpfd, tmpname, 0);
        free(sw);
        return r;
    }
    if (s->meta.durability == PBX_DURABLE_ALWAYS)
        err = flush_renames(s, mine, bucket);
    else if (s->meta.durability == PBX_DURABLE_BATCH)
        err = flush_batch(s, 0);
    PBX_CRASH_POINT("spool.send.durable");
    if (sync && err) {
        /* Not durable: say so now rather than wait for a take (the list must not keep sw). */
        int locked = spool_lock(s) == 0;
        sync_unlist(s, sw);
        if (locked)
            spool_unlock(s);
        free(sw);
    } else if (sync) {
        err = wait_taken(s, sw, deadline_ns);
        free(sw);
    }
    /* The message is queued; a failed flush is reported, but it may still be delivered. */
    return err ? err : r;
}

/* ---- receiving ------------------------------------------------------------------------- */

/* Read and check the message file fd: the head must match the name's type and length, and the
 * payload its checksum. Copies min(len, cap) bytes to buf. 0, -EBADMSG or -errno. */
static int read_msg(int fd, long type, uint32_t len, void *buf, uint32_t cap)
{
    struct pbx_spool_msg_head h;
    struct stat st;
    int err = pbx__fs_table()->fstat(fd, &st);
    if (err)
        return err;
    if (!S_ISREG(st.st_mode) || st.st_size != (off_t) (sizeof(h) + len))
        return -EBADMSG; /* a FIFO, a directory, a device named like a message is damage */
    ssize_t n = pbx__fs_pread(fd, &h, sizeof(h), 0);
    if (n < 0)
        return (int) n;
    if ((size_t) n != sizeof(h) || memcmp(h.magic, "PBXM", 4) != 0 || h.len != len ||
        h.type != type ||
        h.head_sum != fnv32(&h, offsetof(struct pbx_spool_msg_head, head_sum), FNV_SEED))
        return -EBADMSG;
    /* The first min(len, cap) bytes go to buf; the rest (PBX_NOERROR) is only checksummed,
     * in chunks: a truncated read must not cost the whole message's length in memory. */
    uint32_t first = len < cap ? len : cap;
    n = first ? pbx__fs_pread(fd, buf, first, sizeof(h)) : 0;
    if (n < 0)
        return (int) n;
    if ((uint32_t) n != first)
        return -EBADMSG;
    uint32_t sum = fnv32(buf, first, FNV_SEED);
    if (first < len) {
        char chunk[16384];
        for (uint32_t off = first; off < len;) {
            uint32_t want = len - off < sizeof(chunk) ? len - off : (uint32_t) sizeof(chunk);
            n = pbx__fs_pread(fd, chunk, want, (off_t) sizeof(h) + off);
            if (n < 0)
                return (int) n;
            if ((uint32_t) n != want)
                return -EBADMSG;
            sum = fnv32(chunk, want, sum);
            off += want;
        }
    }
    return sum == h.sum ? 0 : -EBADMSG;
}

/* Move a damaged message file aside into bad/ (lock held). */
static void quarantine(struct spool *s, int fromfd, const char *from)
{
    char to[NAME_LEN + 24];
    snprintf(to, sizeof(to), "%s.%016" PRIx64, from, pbx__os_random64());
    warn(s, "message %s is damaged; moved to bad/%s", from, to);
    pbx__fs_table()->renameat(fromfd, from, s->badfd, to);
    drain(s);
}

/* PBX_DURABLE_ALWAYS: make a receive durable. Both directories the message was in must be
 * flushed: without q/BUCKET it can come back queued, without c/ as a claim (then put back). */
static int flush_received(struct spool *s, uint64_t bucket)
{
    char bname[NAME_LEN];
    bucket_name(bname, bucket);
    int fd =
        pbx__fs_table()->openat(s->qfd, bname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    int err;
    if (fd >= 0) {
        err = pbx__fs_table()->fsync(fd);
        pbx__fs_table()->close(fd);
    } else {
        err = fd == -ENOENT ? pbx__fs_table()->fsync(s->qfd) : fd; /* the bucket was removed */
    }
    return err ? err : pbx__fs_table()->fsync(s->cfd);
}

/* A receive gives back a message it claimed (c/cname) but cannot hand over: the message
 * (seq, mtype, len) goes back under its queue name into its bucket, under the spool lock. If
 * even the lock cannot be had, the claim stays, to be put back when this process dies. */
static void give_back(struct spool *s, const char *cname, uint64_t bucket, uint64_t seq, long mtype,
                      uint32_t len)
{
    if (spool_lock(s) != 0)
        return;
    char qname[NAME_LEN];
    msg_name(qname, seq, mtype, len);
    int was_visible = visible(s);
    if (rename_into_bucket(s, s->cfd, cname, bucket, qname) == 0 && !was_visible)
        announce(s);
    spool_unlock(s);
}

static ssize_t recv_loop(struct spool *s, long type, void *buf, uint32_t cap, int flags,
                         long *type_out, uint64_t *claim, uint64_t deadline_ns,
                         struct pbx_sigguard *g)
{
    int except = (flags & PBX_EXCEPT) != 0;
    const uint64_t until = pbx__lock_limit(flags & PBX_NOWAIT, deadline_ns); /* DEADLINES, lock.h */
    for (;;) {
        int err = spool_lock_until(s, until);
        if (err)
            return err;
        if (removed(s)) {
            spool_unlock(s);
            return -EIDRM;
        }
        if (s->idx.nclaimed && pbx__os_mono_ns() - s->last_reap_ns > REAP_NS)
            reap(s);
        struct pbx_sidx_msg *m = pbx__sidx_select(&s->idx, type, except);
        if (!m && s->idx.nclaimed && reap(s) > 0)
            m = pbx__sidx_select(&s->idx, type, except);
        if (!m) {
            if (flags & PBX_NOWAIT) {
                if (s->wfd >= 0 && s->fd_pid == s->pid && s->idx.count == s->idx.nclaimed)
                    fd_level(s, 0); /* nothing visible: lower it now, not at the helper's pace */
                spool_unlock(s);
                return -ENOMSG;
            }
            uint64_t gen = s->gen;
            int claims = s->idx.nclaimed != 0;
            spool_unlock(s);
            if ((err = wait_change(s, gen, claims, deadline_ns, g, &s->st->recv_waiters)))
                return err;
            continue;
        }
        if (m->len > cap && !(flags & PBX_NOERROR)) {
            spool_unlock(s);
            return -E2BIG;
        }
        uint64_t seq = m->seq, bucket = seq >> PBX_SPOOL_BUCKET_BITS;
        long mtype = m->type;
        uint32_t len = m->len, n = len < cap ? len : cap;
        char qname[NAME_LEN], cname[NAME_LEN];
        msg_name(qname, seq, mtype, len);
        int bfd = bucket_dir(s, bucket, 0);
        if (bfd < 0) {
            spool_unlock(s);
            return bfd;
        }

        if (flags & PBX_PEEK) {
            int fd = pbx__fs_table()->openat(bfd, qname,
                                             O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
            if (fd == -ENOENT && (bfd = bucket_dir(s, bucket, 1)) >= 0)
                fd = pbx__fs_table()->openat(bfd, qname,
                                             O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
            if (fd == -ENOENT) {
                forget_missing(s, seq, qname);
                spool_unlock(s);
                continue;
            }
            if (fd == -ELOOP || fd == -ENXIO || fd == -ENODEV) {
                quarantine(s, bfd, qname); /* a symbolic link, a socket, a device */
                spool_unlock(s);
                continue;
            }
            if (fd < 0) {
                spool_unlock(s);
                return fd;
            }
            err = read_msg(fd, mtype, len, buf, cap);
            pbx__fs_table()->close(fd);
            if (err == -EBADMSG) {
                quarantine(s, bfd, qname);
                spool_unlock(s);
                continue;
            }
            spool_unlock(s);
            if (err)
                return err;
            if (type_out)
                *type_out = mtype;
            return n;
        }

        /* Claim: the rename decides which receiver gets it. */
        claim_name(cname, seq, mtype, len, s->owner);
        err = pbx__fs_table()->renameat(bfd, qname, s->cfd, cname);
        if (err == -ENOENT && (bfd = bucket_dir(s, bucket, 1)) >= 0)
            err = pbx__fs_table()->renameat(bfd, qname, s->cfd, cname); /* stale bucket fd */
        if (err == -ENOENT) {
            forget_missing(s, seq, qname);
            spool_unlock(s);
            continue;
        }
        if (err) {
            spool_unlock(s);
            return err;
        }
        PBX_CRASH_POINT("spool.recv.claimed");
        if ((seq & ((1u << PBX_SPOOL_BUCKET_BITS) - 1)) == (1u << PBX_SPOOL_BUCKET_BITS) - 1 &&
            bucket < (s->st->next_seq >> PBX_SPOOL_BUCKET_BITS)) {
            /* Probably the last of its bucket: remove the directory if it is empty now. */
            char bname[NAME_LEN];
            bucket_name(bname, bucket);
            if (pbx__fs_table()->unlinkat(s->qfd, bname, AT_REMOVEDIR) == 0 &&
                s->cached_bucket == bucket && s->bucket_fd >= 0) {
                pbx__fs_table()->close(s->bucket_fd);
                s->bucket_fd = -1;
            }
        }
        spool_unlock(s);

        int fd = pbx__fs_table()->openat(s->cfd, cname,
                                         O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
        err = fd == -ELOOP || fd == -ENXIO || fd == -ENODEV ? -EBADMSG
              : fd < 0                                      ? fd
                                                            : read_msg(fd, mtype, len, buf, cap);
        if (fd >= 0)
            pbx__fs_table()->close(fd);
        PBX_CRASH_POINT("spool.recv.read");
        if (err == -EBADMSG) {
            if (spool_lock(s) == 0) {
                quarantine(s, s->cfd, cname);
                spool_unlock(s);
            }
            continue;
        }
        if (err) {
            /* Could not read it: give it back rather than lose it. */
            give_back(s, cname, bucket, seq, mtype, len);
            return err;
        }
        if (claim) {
            /* pbx_claim: the file stays in c/ under this process's name, held until pbx_ack or
             * pbx_release (or the process's death: reap). */
            if ((err = held_add(s, seq))) {
                give_back(s, cname, bucket, seq, mtype, len);
                return err;
            }
            PBX_CRASH_POINT("spool.claim.held");
            peer_role(s, PBX_PEER_RECEIVED);
            *claim = CLAIM_TAG | seq;
            if (type_out)
                *type_out = mtype;
            return n;
        }
        err = pbx__fs_table()->unlinkat(s->cfd, cname, 0);
        if (err) {
            /* Not deleted: give it back rather than leave it claimed by a live process. */
            give_back(s, cname, bucket, seq, mtype, len);
            return err;
        }
        PBX_CRASH_POINT("spool.recv.unlinked");
        /* The message is deleted and in the caller's buffer: a failed flush now cannot undo
         * that, and returning the error would lose it. It is handed over; only the delete may
         * not survive a power loss (then it is delivered again), which is said on stderr. */
        if (s->meta.durability == PBX_DURABLE_ALWAYS && (err = flush_received(s, bucket)))
            warn(s,
                 "a received message's delete was not flushed (%s): after a power loss it "
                 "may be delivered again",
                 strerror(-err));
        PBX_CRASH_POINT("spool.recv.deleted");
        __atomic_fetch_add(&s->st->received, 1, __ATOMIC_RELAXED);
        peer_role(s, PBX_PEER_RECEIVED);
        PBX_STORE(&s->st->last_recv_pid, pbx__os_self()->pid);
        PBX_STORE(&s->st->last_recv_time, pbx__os_real_coarse_ns());
        if (type_out)
            *type_out = mtype;
        return n;
    }
}

static ssize_t spool_recv(void *state, long type, void *buf, uint32_t cap, int flags,
                          long *type_out, uint64_t deadline_ns)
{
    struct spool *s = state;
    if (removed(s))
        return -EIDRM;
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    ssize_t r = recv_loop(s, type, buf, cap, flags, type_out, NULL, deadline_ns, &g);
    pbx__os_sig_restore(&g);
    return r;
}

/* ---- claims ---------------------------------------------------------------------------- */

static ssize_t spool_claim(void *state, long type, void *buf, uint32_t cap, int flags,
                           long *type_out, uint64_t *claim, uint64_t deadline_ns)
{
    struct spool *s = state;
    if (removed(s))
        return -EIDRM;
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    ssize_t r = recv_loop(s, type, buf, cap, flags, type_out, claim, deadline_ns, &g);
    pbx__os_sig_restore(&g);
    return r;
}

/* The claimed message id names, if this process holds it: its entry in the index (lock held).
 * -EINVAL: id cannot be a claim id; -ENOENT: not held by this process. */
static int held_claim(struct spool *s, uint64_t id, struct pbx_sidx_msg **out)
{
    uint64_t seq = id & (PBX_SPOOL_SEQ_LIMIT - 1);
    if ((id & ~(PBX_SPOOL_SEQ_LIMIT - 1)) != CLAIM_TAG || seq == 0)
        return -EINVAL;
    if (!held_has(s, seq))
        return -ENOENT;
    struct pbx_sidx_msg *m = pbx__sidx_find(&s->idx, seq);
    if (!m || m->where != PBX_SIDX_CLAIMED || m->owner != s->owner) {
        held_del(s, seq); /* put back (a reboot), or a fork()ed child's copy of the table */
        return -ENOENT;
    }
    *out = m;
    return 0;
}

/* The start of an ack or a release: the spool locked and the claim id's message found. Returns 0
 * with the lock held, or an error with it released. */
static int lock_held_claim(struct spool *s, uint64_t id, struct pbx_sidx_msg **out)
{
    if (removed(s))
        return -EIDRM;
    int err = spool_lock(s);
    if (err)
        return err;
    if ((err = held_claim(s, id, out)))
        spool_unlock(s);
    return err;
}

static int spool_ack(void *state, uint64_t id)
{
    struct spool *s = state;
    struct pbx_sidx_msg *m;
    int err = lock_held_claim(s, id, &m);
    if (err)
        return err;
    uint64_t seq = m->seq;
    char cname[NAME_LEN];
    claim_name(cname, seq, m->type, m->len, m->owner);
    /* Under the lock, so that a release of the same id by another thread cannot interleave. */
    err = pbx__fs_table()->unlinkat(s->cfd, cname, 0);
    if (err == 0 || err == -ENOENT)
        held_del(s, seq);
    spool_unlock(s);
    if (err)
        return err;
    PBX_CRASH_POINT("spool.ack.unlinked");
    if (s->meta.durability == PBX_DURABLE_ALWAYS)
        err = flush_received(s, seq >> PBX_SPOOL_BUCKET_BITS);
    PBX_CRASH_POINT("spool.ack.deleted");
    if (err)
        return err;
    __atomic_fetch_add(&s->st->received, 1, __ATOMIC_RELAXED);
    PBX_STORE(&s->st->last_recv_pid, pbx__os_self()->pid);
    PBX_STORE(&s->st->last_recv_time, pbx__os_real_coarse_ns());
    return 0;
}

static int spool_release(void *state, uint64_t id)
{
    struct spool *s = state;
    struct pbx_sidx_msg *m;
    int err = lock_held_claim(s, id, &m);
    if (err)
        return err;
    uint64_t seq = m->seq;
    char cname[NAME_LEN], qname[NAME_LEN];
    claim_name(cname, seq, m->type, m->len, m->owner);
    msg_name(qname, seq, m->type, m->len);
    /* Back under its old sequence number: its place in arrival order. */
    int was_visible = visible(s);
    err = rename_into_bucket(s, s->cfd, cname, seq >> PBX_SPOOL_BUCKET_BITS, qname);
    if (err == 0 && !was_visible)
        announce(s);
    if (err == 0 || err == -ENOENT)
        held_del(s, seq);
    spool_unlock(s);
    return err;
}

/* ---- statistics ------------------------------------------------------------------------ */

/* Count the messages of one directory listing (LOOKING): q/ itself walks its buckets. */
static void count_listed(struct spool *s, int dirfd, const char *sub, int claimed, int depth,
                         struct pbx_stat *st)
{
    struct pbx_fs_calls *fs = pbx__fs_table();
    int fd = fs->openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    DIR *d;
    if (fd < 0)
        return;
    int err = fs->dir_open(fd, &d);
    if (err) {
        fs->close(fd);
        return;
    }
    const char *name;
    while (fs->dir_next(d, &name) > 0) {
        uint64_t seq, owner, b;
        long type;
        uint32_t len;
        if (name[0] == '.')
            continue;
        if (depth) {
            if (parse_bucket(name, &b) == 0)
                count_listed(s, fd, name, claimed, 0, st);
            continue;
        }
        if (parse_msg(name, claimed, &seq, &type, &len, &owner) || len > s->meta.max_msg_size)
            continue;
        st->msgs++;
        st->bytes += len;
        st->claimed += (uint64_t) claimed;
    }
    fs->dir_close(d);
    fs->close(fd);
}

/* Has a remover renamed the spool away (it may not have marked it yet)? Reads only. */
static int renamed_away(const struct spool *s)
{
    struct stat st;
    return PBX_ACQUIRE(&s->st->removing) &&
           (pbx__fs_table()->fstatat(AT_FDCWD, s->path, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            st.st_dev != s->dir_dev || st.st_ino != s->dir_ino);
}

static int spool_stat(void *state, struct pbx_stat *st)
{
    struct spool *s = state;
    memset(st, 0, sizeof(*st));
    int gone = removed(s) || (s->rdonly && renamed_away(s));
    if (!gone && s->rdonly) {
        count_listed(s, s->dirfd, "q", 0, 1, st);
        count_listed(s, s->dirfd, "c", 1, 0, st);
        st->msgs = st->msgs < s->meta.max_msgs ? st->msgs : s->meta.max_msgs;
        st->bytes = st->bytes < s->meta.max_bytes ? st->bytes : s->meta.max_bytes;
        st->claimed = st->claimed < st->msgs ? st->claimed : st->msgs;
    } else if (!gone && spool_lock(s) == 0) {
        st->msgs = s->idx.count;
        st->bytes = s->idx.bytes;
        st->claimed = s->idx.nclaimed; /* held by pbx_claim, or being read by a receive */
        spool_unlock(s);
    }
    struct pbx_spool_state *ss = s->st;
    st->max_bytes = s->meta.max_bytes;
    st->max_msgs = s->meta.max_msgs;
    st->max_msg_size = s->meta.max_msg_size;
    st->overflow = (enum pbx_overflow) s->meta.overflow;
    st->mode = s->meta.mode;
    st->last_send_pid = PBX_LOAD(&ss->last_send_pid);
    st->last_recv_pid = PBX_LOAD(&ss->last_recv_pid);
    st->last_send_time = PBX_LOAD(&ss->last_send_time);
    st->last_recv_time = PBX_LOAD(&ss->last_recv_time);
    st->sent = PBX_LOAD(&ss->sent);
    st->received = PBX_LOAD(&ss->received);
    st->dropped = PBX_LOAD(&ss->dropped);
    st->repairs = PBX_LOAD(&ss->repairs);
    st->send_waiters = PBX_LOAD(&ss->send_waiters);
    st->recv_waiters = PBX_LOAD(&ss->recv_waiters);
    st->region_size = STATE_SIZE;
    struct stat fst;
    if (pbx__fs_table()->fstat(s->dirfd, &fst) == 0) {
        st->uid = fst.st_uid;
        st->gid = fst.st_gid;
    }
    return gone ? -EIDRM : 0;
}

const struct pbx_transport pbx__spool_looking =
    PBX_LOOKING_TABLE("spool (read-only)", spool_stat, spool_peers, spool_close);

const struct pbx_transport pbx__spool_transport = {
    .name = "spool",
    .sync = 1,
    .open = spool_open,
    .open_private = spool_open_private,
    .close = spool_close,
    .remove = spool_remove,
    .unlink = spool_unlink,
    .send = spool_send,
    .recv = spool_recv,
    .stat = spool_stat,
    .claim = spool_claim,
    .ack = spool_ack,
    .release = spool_release,
    .peers = spool_peers,
    .fd = spool_fd,
    .notify = spool_notify,
    .looking = &pbx__spool_looking,
};
