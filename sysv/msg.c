/*
 * msg.c — msgget, msgsnd, msgrcv and msgctl on postbox mailboxes, for programs that preload
 * libpostbox-sysv.so (docs/sysv.md).
 *
 * Each queue is a slot of the shared registry (registry.h) plus a postbox mailbox; its id is
 * slot + 32768 * seq, as the kernel makes them. The checks of msgget(2), msgop(2) and
 * msgctl(2) are made here in the kernel's order, so that a call with several faults reports
 * the one the kernel would; the mailbox does the queueing, blocking and waking.
 *
 * The hot path — msgsnd and msgrcv on an id this process used before — reads the registry
 * slot's state word and permission fields, takes a reference on this process's cached handle
 * (HANDLES below), validates the buffer (BUFFERS below) and calls pbx_send or pbx_recv: no
 * system call unless the call must sleep or the buffer is new.
 *
 * HANDLES. cache[slot] holds the handle this process opened for the queue in that slot, and a
 * word with a reference count (high half), VALID and CLOSING. A call adds a reference before
 * it looks at VALID and the seq, and drops it when done; whoever sees the queue gone clears
 * VALID and sets CLOSING, and whoever then brings the count to zero closes the handle. So a
 * handle is never closed under a thread that is using it (a blocked msgrcv, for instance),
 * and nothing on the hot path takes a lock.
 *
 * BUFFERS. The kernel answers EFAULT for a buffer it cannot read or write. The library checks
 * before it touches the buffer, without writing to it: readability with process_vm_readv on
 * its own process, one byte per page, and writability from /proc/self/maps. Each thread
 * remembers a few ranges that passed (for writes, the whole writable mapping), so a program
 * that reuses its buffers pays the check once per buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"
#include "registry.h"
#include "shm/sysv_hooks.h"

#define SYSV_API __attribute__((visibility("default")))

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif
#ifndef MSG_STAT_ANY
#define MSG_STAT_ANY 13
#endif
#define IPC_64_FLAG 0x0100 /* glibc adds it for the kernel; a caller may pass it too */

/* ---- limits ---------------------------------------------------------------------------- */

struct limits {
    long msgmax, msgmnb, msgmni;
};

static struct limits lim;
static pthread_once_t lim_once = PTHREAD_ONCE_INIT;

static long read_limit(const char *env, const char *proc, long def)
{
    const char *e = getenv(env);
    char text[32];
    if (!e || !*e) {
        FILE *f = fopen(proc, "re");
        e = f && fgets(text, sizeof(text), f) ? text : NULL;
        if (f)
            fclose(f);
    }
    char *end;
    long v = e ? strtol(e, &end, 0) : 0;
    return v > 0 && v <= INT_MAX ? v : def;
}

static void limits_read(void)
{
    lim.msgmax = read_limit("POSTBOX_SYSV_MSGMAX", "/proc/sys/kernel/msgmax", 8192);
    lim.msgmnb = read_limit("POSTBOX_SYSV_MSGMNB", "/proc/sys/kernel/msgmnb", 16384);
    lim.msgmni = read_limit("POSTBOX_SYSV_MSGMNI", "/proc/sys/kernel/msgmni", 32000);
    if (lim.msgmni > (long) SYSV_SLOTS)
        lim.msgmni = SYSV_SLOTS;
}

static const struct limits *limits(void)
{
    pthread_once(&lim_once, limits_read);
    return &lim;
}

/* ---- credentials ----------------------------------------------------------------------- */

/* The effective ids, read at msgget and msgctl and after fork (not on every send: that
 * would be two system calls).
 *
 * CREDENTIALS. Readers (perm_ok on every call) run in any thread while another thread may
 * read the ids again, so a set of ids is never changed in place: cred_refresh() builds a new
 * one and publishes it with a release store of cred_cur, and a reader loads the pointer once
 * (acquire) and uses that set throughout. A set is published only when the ids changed (a
 * setuid, setgroups...), and the sets replaced are never freed, since a reader may still hold
 * one: the memory kept grows with the number of credential changes, not of calls. */
struct cred {
    uid_t euid;
    gid_t egid;
    int ngroups;
    gid_t groups[256];
    struct cred *prev; /* the set this one replaced: kept, and reachable, for readers */
};

static struct cred *cred_cur;
static int cred_stale; /* set in a child after fork: the next check reads the ids again */

static const struct cred *cred_refresh(void)
{
    struct cred now;
    memset(&now, 0, sizeof(now));
    now.euid = geteuid();
    now.egid = getegid();
    int n = getgroups((int) (sizeof(now.groups) / sizeof(now.groups[0])), now.groups);
    now.ngroups = n < 0 ? 0 : n;
    struct cred *c = __atomic_load_n(&cred_cur, __ATOMIC_ACQUIRE);
    if (c && memcmp(c, &now, offsetof(struct cred, prev)) == 0)
        return c;
    struct cred *fresh = malloc(sizeof(*fresh));
    if (!fresh)
        return c ? c : NULL;
    memcpy(fresh, &now, sizeof(now)); /* padding too: sets are compared with memcmp */
    fresh->prev = c;
    __atomic_store_n(&cred_cur, fresh, __ATOMIC_RELEASE);
    return fresh;
}

/* The current set of ids (read them if none yet). Never NULL but for want of memory, when a
 * set on the stack of this thread stands in (perm_ok then sees the right ids all the same). */
static const struct cred *cred_get(struct cred *spare)
{
    const struct cred *c = __atomic_load_n(&cred_cur, __ATOMIC_ACQUIRE);
    if (!c || __builtin_expect(__atomic_load_n(&cred_stale, __ATOMIC_RELAXED), 0)) {
        __atomic_store_n(&cred_stale, 0, __ATOMIC_RELAXED);
        c = cred_refresh();
    }
    if (!c) {
        memset(spare, 0, sizeof(*spare));
        spare->euid = geteuid();
        spare->egid = getegid();
        c = spare;
    }
    return c;
}

static int in_group(const struct cred *c, gid_t g)
{
    if (g == c->egid)
        return 1;
    for (int i = 0; i < c->ngroups; i++)
        if (c->groups[i] == g)
            return 1;
    return 0;
}

/* The kernel's ipcperms(): flag's permission bits, in any class, ask for that access. Root
 * stands for CAP_IPC_OWNER. */
static int perm_ok(const struct sysv_slot *s, int flag)
{
    int want = ((flag >> 6) | (flag >> 3) | flag) & 7;
    struct cred spare;
    const struct cred *c = cred_get(&spare);
    if (!want || c->euid == 0)
        return 1;
    unsigned granted = s->mode;
    if (c->euid == s->cuid || c->euid == s->uid)
        granted >>= 6;
    else if (in_group(c, s->cgid) || in_group(c, s->gid))
        granted >>= 3;
    return (want & ~granted & 7) == 0;
}

static uid_t cred_euid(void)
{
    struct cred spare;
    return cred_get(&spare)->euid;
}

static gid_t cred_egid(void)
{
    struct cred spare;
    return cred_get(&spare)->egid;
}

/* IPC_SET and IPC_RMID: the creator, the owner, or root (CAP_SYS_ADMIN). */
static int may_change(const struct sysv_slot *s)
{
    uid_t euid = cred_euid();
    return euid == 0 || euid == s->uid || euid == s->cuid;
}

/* ---- buffers (BUFFERS above) ----------------------------------------------------------- */

/* Each thread remembers a few ranges that passed, per kind of access, and replaces them in
 * turn: a program alternating between two or three buffers (a send buffer and a receive
 * buffer, double buffering) checks each once. */
#define GOOD_RANGES 4

struct good_ranges {
    uintptr_t lo[GOOD_RANGES], hi[GOOD_RANGES];
    unsigned next;
};

static __thread struct good_ranges good_read, good_write;
static int checks_unavailable;
static pid_t self_pid; /* getpid(), cached; 0 after fork (after_fork_child) */

static int good_find(const struct good_ranges *g, uintptr_t lo, uintptr_t hi)
{
    for (int i = 0; i < GOOD_RANGES; i++)
        if (lo >= g->lo[i] && hi <= g->hi[i] && g->hi[i])
            return 1;
    return 0;
}

static void good_add(struct good_ranges *g, uintptr_t lo, uintptr_t hi)
{
    unsigned i = g->next++ % GOOD_RANGES;
    g->lo[i] = lo;
    g->hi[i] = hi;
}

static pid_t self(void)
{
    pid_t p = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
    if (!p) {
        p = getpid();
        __atomic_store_n(&self_pid, p, __ATOMIC_RELAXED);
    }
    return p;
}

/* Can [lo, hi) be read? process_vm_readv on this process, one byte per page (protection is per
 * page), copying into a scratch array: nothing of the program's memory is written. 1, 0, or
 * -1 when the check is forbidden here (a seccomp filter). */
static int readable(uintptr_t lo, uintptr_t hi)
{
    const uintptr_t page = 4096;
    for (uintptr_t a = lo; a < hi;) {
        enum { BATCH = 64 };
        char tmp[BATCH];
        struct iovec local[BATCH], remote[BATCH];
        int k = 0;
        for (; k < BATCH && a < hi; k++) {
            local[k] = (struct iovec){tmp + k, 1};
            remote[k] = (struct iovec){(void *) a, 1};
            uintptr_t next = (a & ~(page - 1)) + page;
            a = next < hi && next > a ? next : (a == hi - 1 ? hi : hi - 1);
        }
        ssize_t got =
            process_vm_readv(self(), local, (unsigned long) k, remote, (unsigned long) k, 0);
        if (got < 0 && (errno == ENOSYS || errno == EPERM))
            return -1;
        if (got != k)
            return 0;
    }
    return 1;
}

/* Is [lo, hi) inside writable mappings? Read from /proc/self/maps, so that nothing is written
 * to the program's memory: a probe that wrote bytes back could undo another thread's store
 * next to the buffer. On success *span is the whole run of adjacent writable mappings that
 * holds the range (remembered instead of the range: later buffers in the same heap or stack
 * pass without a look). 1, 0, or -1 when the file cannot be read. */
static int writable(uintptr_t lo, uintptr_t hi, uintptr_t *span_lo, uintptr_t *span_hi)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[4097]; /* one more for the terminator of a last line without a newline */
    size_t have = 0;
    uintptr_t run_lo = 0, run_hi = 0; /* the current run of adjacent writable mappings */
    int verdict = 0, eof = 0, skipping = 0;
    while (!eof) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            eof = 1;
        else
            have += (size_t) n;
        char *line = buf, *end;
        if (skipping) { /* the tail of a line too long for buf, already parsed */
            end = memchr(buf, '\n', have);
            line = end ? end + 1 : buf + have;
            skipping = !end;
        }
        while (line < buf + have) {
            end = memchr(line, '\n', (size_t) (buf + have - line));
            if (!end && !eof && !(line == buf && have == sizeof(buf) - 1))
                break; /* the rest of the line is in the next read */
            if (!end) {
                /* End of file, or a line longer than buf (a long path): its address and
                 * permissions are at its start; the rest is skipped. */
                skipping = !eof;
                end = buf + have;
            }
            *end = 0;
            char *p;
            uintptr_t a = (uintptr_t) strtoull(line, &p, 16);
            uintptr_t b = *p == '-' ? (uintptr_t) strtoull(p + 1, &p, 16) : 0;
            int w = *p == ' ' && p[1] && p[2] == 'w';
            line = end + 1;
            if (!w) {
                run_lo = run_hi = 0;
            } else if (a == run_hi && run_hi) {
                run_hi = b;
            } else {
                run_lo = a;
                run_hi = b;
            }
            if (run_hi && lo >= run_lo && hi <= run_hi && (!verdict || run_lo == *span_lo)) {
                verdict = 1; /* and go on: the run may extend over the next mappings */
                *span_lo = run_lo;
                *span_hi = run_hi;
                continue;
            }
            if (verdict || (a > lo && !(run_hi && run_lo <= lo)))
                goto done; /* past the range, or lo is covered and the run ended before hi */
        }
        if (line >= buf + have) {
            have = 0;
        } else {
            have -= (size_t) (line - buf);
            memmove(buf, line, have);
        }
    }
done:
    close(fd);
    return verdict;
}

/* Can the whole range [p, p + n) be read (write == 0) or written? */
static int range_ok(const void *p, size_t n, int write)
{
    uintptr_t lo = (uintptr_t) p, hi = lo + n;
    if (hi < lo)
        return 0;
    struct good_ranges *g = write ? &good_write : &good_read;
    if (good_find(g, lo, hi) || __atomic_load_n(&checks_unavailable, __ATOMIC_RELAXED))
        return 1;
    int ok = readable(lo, hi);
    uintptr_t span_lo = lo, span_hi = hi;
    if (ok == 1 && write)
        ok = writable(lo, hi, &span_lo, &span_hi);
    if (ok < 0) {
        /* Forbidden or unreadable here: the check cannot be made, so it is not. */
        __atomic_store_n(&checks_unavailable, 1, __ATOMIC_RELAXED);
        return 1;
    }
    if (ok)
        good_add(g, span_lo, span_hi);
    return ok;
}

/* ---- handles (HANDLES above) ----------------------------------------------------------- */

#define H_VALID   1ull
#define H_CLOSING 2ull
#define H_REF     (1ull << 32)

struct handle {
    uint64_t word;
    uint32_t seq;
    pbx_t *q;
};

static struct handle cache[SYSV_SLOTS];
static uint32_t cache_hi; /* one above the highest entry ever installed (after_fork_child) */
static pthread_mutex_t cache_mutex = PTHREAD_MUTEX_INITIALIZER;

/* Close e's handle if it is CLOSING and unused, once (w is the word last seen). */
static void handle_try_close(struct handle *e, uint64_t w)
{
    while ((w >> 32) == 0 && !(w & H_VALID) && (w & H_CLOSING)) {
        if (__atomic_compare_exchange_n(&e->word, &w, w & ~H_CLOSING, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            pbx_t *q = e->q;
            __atomic_store_n(&e->q, NULL, __ATOMIC_RELEASE);
            pbx_close(q);
            return;
        }
    }
}

static void handle_put(struct handle *e)
{
    uint64_t w = __atomic_sub_fetch(&e->word, H_REF, __ATOMIC_ACQ_REL);
    if (__builtin_expect((w >> 32) == 0 && (w & H_CLOSING), 0))
        handle_try_close(e, w);
}

static pbx_t *handle_get(uint32_t slot, uint32_t seq)
{
    struct handle *e = &cache[slot];
    uint64_t w = __atomic_fetch_add(&e->word, H_REF, __ATOMIC_ACQUIRE);
    if ((w & H_VALID) && __atomic_load_n(&e->seq, __ATOMIC_RELAXED) == seq)
        return e->q;
    handle_put(e);
    return NULL;
}

/* With cache_mutex held: make q the handle of slot for seq, if the entry is free. */
static int handle_install(uint32_t slot, uint32_t seq, pbx_t *q)
{
    struct handle *e = &cache[slot];
    uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE);
    if ((w & (H_VALID | H_CLOSING)) || __atomic_load_n(&e->q, __ATOMIC_ACQUIRE))
        return 0;
    e->q = q;
    if (slot >= cache_hi)
        __atomic_store_n(&cache_hi, slot + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&e->seq, seq, __ATOMIC_RELAXED);
    __atomic_fetch_or(&e->word, H_VALID, __ATOMIC_RELEASE);
    return 1;
}

/* With cache_mutex held: forget slot's handle; it is closed when its last user is done. */
static void handle_forget(uint32_t slot)
{
    struct handle *e = &cache[slot];
    uint64_t w = __atomic_load_n(&e->word, __ATOMIC_ACQUIRE), nw;
    do {
        if (!(w & H_VALID))
            return;
        nw = (w & ~H_VALID) | H_CLOSING;
    } while (!__atomic_compare_exchange_n(&e->word, &w, nw, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    handle_try_close(e, nw);
}

/* The registry was replaced under this process (registry.h): every cached handle is of a
 * queue this process can no longer name by its id. Called with the registry's mutex held. */
void sysv_registry_switched(void)
{
    pthread_mutex_lock(&cache_mutex);
    uint32_t hi = __atomic_load_n(&cache_hi, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < hi && i < SYSV_SLOTS; i++)
        handle_forget(i);
    pthread_mutex_unlock(&cache_mutex);
}

/* A process forked from one that held the registry lock or the mutex starts afresh; its
 * credentials may be about to change (setuid after fork), so they are read again.
 *
 * Only the forking thread exists in the child, so the references other threads of the parent
 * held (a thread blocked in msgrcv, say) will never be dropped here: the counts start again
 * from zero. An entry caught while being forgotten or closed by another parent thread is
 * finished here: its handle, if still set, is closed and the entry is free for the next
 * install. (Otherwise the child would open and close the mailbox on every call once that
 * slot held another queue.) */
static void after_fork_child(void)
{
    pthread_mutex_init(&cache_mutex, NULL);
    sysv_registry_after_fork();
    uint32_t hi = __atomic_load_n(&cache_hi, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < hi && i < SYSV_SLOTS; i++) {
        struct handle *e = &cache[i];
        if (e->word & H_VALID) {
            e->word = H_VALID;
        } else if (e->word || e->q) {
            if (e->q)
                pbx_close(e->q);
            e->q = NULL;
            e->word = 0;
        }
    }
    cred_stale = 1;
    self_pid = 0;
}

__attribute__((constructor)) static void fork_hook_install(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* ---- resolving an id ------------------------------------------------------------------- */

struct op {
    struct sysv_slot *s;
    uint32_t slot, seq;
    pbx_t *q;
    int owned; /* q was opened for this call only */
};

static int fail(int err)
{
    errno = err;
    return -1;
}

static void op_end(struct op *op)
{
    if (op->owned)
        pbx_close(op->q);
    else
        handle_put(&cache[op->slot]);
}

/* The registry slot of id if it names a live queue in the registry mapped now, else NULL. */
static struct sysv_slot *slot_in_map(int id, uint32_t *slot, uint32_t *seq)
{
    struct sysv_registry *r = sysv_registry();
    if (id < 0 || !r)
        return NULL;
    *slot = (uint32_t) id % SYSV_SLOTS;
    *seq = (uint32_t) id / SYSV_SLOTS;
    struct sysv_slot *s = &r->slot[*slot];
    uint64_t w = __atomic_load_n(&s->live, __ATOMIC_ACQUIRE);
    if (w != sysv_live_word(*seq)) {
        /* Removed elsewhere: let our handle go, unless it is the handle of the queue that now
         * lives in the slot (a stale id must not cost the current queue its handle). */
        struct handle *e = &cache[*slot];
        if ((__atomic_load_n(&e->word, __ATOMIC_RELAXED) & H_VALID) &&
            (sysv_state_of(w) != SYSV_LIVE ||
             __atomic_load_n(&e->seq, __ATOMIC_RELAXED) != sysv_seq_of(w))) {
            pthread_mutex_lock(&cache_mutex);
            if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) == *seq)
                handle_forget(*slot);
            pthread_mutex_unlock(&cache_mutex);
        }
        return NULL;
    }
    return s;
}

/* The registry slot of id if it names a live queue, else NULL. An id not found may be one of
 * a registry made since this process mapped its own, or of this process's namespace when it
 * has changed (registry.h): so the registry is looked at again, and the id with it. */
static struct sysv_slot *slot_of(int id, uint32_t *slot, uint32_t *seq)
{
    struct sysv_slot *s = slot_in_map(id, slot, seq);
    if (!s && id >= 0 && sysv_registry_refresh() == 0)
        s = slot_in_map(id, slot, seq);
    return s;
}

/* Open the mailbox of a live slot. 0 or -errno (EINVAL when its mailbox is gone).
 *
 * The mailbox is found by name, and the name of a keyed queue is the same for every queue
 * that key ever had: between the look-up of the slot and the open, IPC_RMID and a new
 * msgget(key, IPC_CREAT) may have put another queue under that name. So the slot's word is
 * read again after the open. A new queue in the slot has a higher sequence, and it exists only
 * after the removal of the old one has changed the word, so a word that still names id after
 * the open means the mailbox opened is id's own (or id's, removed since: the mailbox then
 * answers EIDRM itself). */
static int open_queue(const struct sysv_slot *s, int id, pbx_t **q)
{
    char name[SYSV_NAME_MAX];
    uint64_t want = sysv_live_word((uint32_t) id / SYSV_SLOTS);
    sysv_mailbox_name(s, id, name);
    int err = pbx_open(name, 0, NULL, q);
    if (err == -ENOENT)
        err = -EINVAL;
    if (!err && __atomic_load_n(&s->live, __ATOMIC_ACQUIRE) != want) {
        pbx_close(*q);
        *q = NULL;
        err = -EINVAL;
    }
    return err;
}

/* Does the mailbox of a live slot still exist? (postbox rm may have removed it.) */
static int mailbox_exists(const struct sysv_slot *s, int id)
{
    char name[SYSV_NAME_MAX], path[4096];
    sysv_mailbox_name(s, id, name);
    snprintf(path, sizeof(path), "%s/pbx.%s", sysv_dir(), name);
    return faccessat(AT_FDCWD, path, F_OK, AT_EACCESS | AT_SYMLINK_NOFOLLOW) == 0 ||
           errno != ENOENT;
}

/* A live slot whose mailbox is gone (removed through postbox: pbx_unlink, postbox rm) is
 * freed, as IPC_RMID would, so that it does not count against msgmni for ever. */
static void reclaim(uint32_t slot, uint32_t seq, struct sysv_slot *s, int id)
{
    if (sysv_registry_lock(0) != 0)
        return;
    if (__atomic_load_n(&s->live, __ATOMIC_ACQUIRE) == sysv_live_word(seq) &&
        !mailbox_exists(s, id)) {
        __atomic_store_n(&s->live, (uint64_t) ((seq + 1) % SYSV_SEQ_LIMIT) << 32, __ATOMIC_RELEASE);
        sysv_registry_freed();
        pthread_mutex_lock(&cache_mutex);
        handle_forget(slot);
        pthread_mutex_unlock(&cache_mutex);
    }
    sysv_registry_unlock();
}

/* Find the queue id names and check that the caller may use it with flag's access; take a
 * handle to its mailbox. 0 or an errno value. */
static int op_begin(int id, int flag, struct op *op)
{
    struct sysv_slot *s = slot_of(id, &op->slot, &op->seq);
    if (!s)
        return id < 0 || sysv_registry() ? EINVAL : errno;
    if (!perm_ok(s, flag))
        return EACCES;
    op->s = s;
    op->owned = 0;
    if ((op->q = handle_get(op->slot, op->seq)))
        return 0;
    pbx_t *q;
    int err = open_queue(s, id, &q);
    if (err == -EINVAL)
        reclaim(op->slot, op->seq, s, id);
    if (err)
        return -err;
    pthread_mutex_lock(&cache_mutex);
    struct handle *e = &cache[op->slot];
    if ((__atomic_load_n(&e->word, __ATOMIC_ACQUIRE) & H_VALID) && e->seq != op->seq)
        handle_forget(op->slot); /* an earlier queue in this slot, removed elsewhere */
    int installed = handle_install(op->slot, op->seq, q);
    pthread_mutex_unlock(&cache_mutex);
    if (installed && (op->q = handle_get(op->slot, op->seq)))
        return 0;
    if (installed) /* forgotten at once by a concurrent IPC_RMID */
        return EINVAL;
    op->q = q;
    op->owned = 1;
    return 0;
}

/* An error from the mailbox, as msgsnd/msgrcv report it. */
static int mailbox_errno(int err)
{
    switch (err) {
    case -EMSGSIZE:
        return EINVAL; /* larger than the queue's largest message */
    case -EBADMSG:
    case -EPROTO:
        return EIO;
    default:
        return -err;
    }
}

/* ---- msgget ---------------------------------------------------------------------------- */

/* The mailbox file's mode: read and write for each class that may do either (the file must
 * be opened for both), so the file system keeps out who msg_perm keeps out entirely. */
static uint32_t file_mode(uint32_t mode)
{
    uint32_t m = 0;
    for (int shift = 0; shift <= 6; shift += 3)
        if (mode & (6u << shift))
            m |= 6u << shift;
    return m;
}

/* With the registry locked: make a queue in a free slot. Returns its id or -errno. */
static int create_queue(struct sysv_registry *r, key_t key, int msgflg)
{
    const struct limits *l = limits();
    uint32_t live = 0, slot = SYSV_SLOTS, used = sysv_used(r);
    for (uint32_t i = 0; i < used; i++) {
        if (sysv_state_of(__atomic_load_n(&r->slot[i].live, __ATOMIC_RELAXED)) == SYSV_LIVE)
            live++;
        else if (slot == SYSV_SLOTS)
            slot = i;
    }
    if (live >= (uint32_t) l->msgmni)
        return -ENOSPC;
    if (slot == SYSV_SLOTS)
        slot = used;
    if (slot >= SYSV_SLOTS)
        return -ENOSPC;
    struct sysv_slot *s = &r->slot[slot];
    uint32_t seq = slot >= used ? sysv_first_seq(r) : sysv_seq_of(s->live);
    int id = (int) (slot + SYSV_SLOTS * seq);
    uint32_t cap = (uint32_t) l->msgmnb;
    s->key = key;
    s->creator = (int32_t) getpid();
    char name[SYSV_NAME_MAX];
    sysv_mailbox_name(s, id, name);
    /* Published before the mailbox exists, so that a creator killed before the queue is LIVE
     * leaves a record of the file to remove (rollback_creating). */
    __atomic_store_n(&s->live, SYSV_CREATING | (uint64_t) seq << 32, __ATOMIC_RELEASE);
    if (slot >= used)
        __atomic_store_n(&r->used, slot + 1, __ATOMIC_RELAXED);

    struct pbx_options o;
    pbx_options_init(&o);
    o.mode = file_mode((uint32_t) msgflg & 0777);
    o.max_bytes = cap;
    /* The kernel lets msg_qbytes bound the number of messages too, which for the default 16 KiB
     * means 16384 empty messages. Each message slot costs shared memory whether used or not
     * (about 200 bytes plus a chunk), so a raised msgmnb raises the count more slowly. */
    uint32_t msgs = cap / 64 > 16384 ? cap / 64 : 16384;
    o.max_msgs = msgs < cap ? msgs : cap;
    o.max_msg_size = (uint32_t) l->msgmax < cap ? (uint32_t) l->msgmax : cap;
    pbx_t *q;
    int err = pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q);
    if (err == -EEXIST) {
        /* A mailbox no registry slot names: left over from a registry that was deleted. */
        pbx_unlink(name);
        err = pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q);
    }
    if (err) {
        __atomic_store_n(&s->live, (uint64_t) seq << 32, __ATOMIC_RELEASE);
        sysv_registry_freed();
        return err == -ENOSPC ? -ENOMEM : err;
    }
    s->mode = (uint32_t) msgflg & 0777;
    s->uid = s->cuid = cred_euid();
    s->gid = s->cgid = cred_egid();
    s->ctime = (int64_t) time(NULL);
    s->qbytes = cap;
    s->cap = cap;
    __atomic_store_n(&s->live, sysv_live_word(seq), __ATOMIC_RELEASE);
    pthread_mutex_lock(&cache_mutex);
    int kept = handle_install(slot, seq, q);
    pthread_mutex_unlock(&cache_mutex);
    if (!kept)
        pbx_close(q);
    return id;
}

/* With the registry locked: a slot left CREATING by a msgget that died before publishing its
 * queue (see registry.h). Its mailbox, if it got as far as making one, is unlinked (nobody
 * can have it open: its id was never returned), and the slot is free again, same sequence. */
static void rollback_creating(struct sysv_slot *s, uint32_t slot, uint32_t seq)
{
    char name[SYSV_NAME_MAX];
    sysv_mailbox_name(s, (int) (slot + SYSV_SLOTS * seq), name);
    pbx_unlink(name);
    __atomic_store_n(&s->live, (uint64_t) seq << 32, __ATOMIC_RELEASE);
    sysv_registry_freed();
}

SYSV_API int msgget(key_t key, int msgflg)
{
    cred_refresh();
    /* The file is made only for a queue that may be made: a look-up finds none without it. */
    int err = sysv_registry_lock(key == IPC_PRIVATE || (msgflg & IPC_CREAT));
    if (err == -ENOENT)
        return fail(ENOENT);
    if (err)
        return fail(err == -EBADMSG ? EIO : -err);
    struct sysv_registry *r = sysv_registry();
    int id = -ENOENT;
    uint32_t used = sysv_used(r);
    for (uint32_t i = 0; i < used; i++) {
        struct sysv_slot *s = &r->slot[i];
        uint64_t w = __atomic_load_n(&s->live, __ATOMIC_RELAXED);
        if (sysv_state_of(w) == SYSV_CREATING)
            rollback_creating(s, i, sysv_seq_of(w));
        if (key == IPC_PRIVATE || id != -ENOENT || sysv_state_of(w) != SYSV_LIVE || s->key != key)
            continue;
        uint32_t seq = sysv_seq_of(w);
        if (!mailbox_exists(s, (int) (i + SYSV_SLOTS * seq))) {
            /* Removed through postbox (pbx_unlink, postbox rm): the key is free again. */
            __atomic_store_n(&s->live, (uint64_t) ((seq + 1) % SYSV_SEQ_LIMIT) << 32,
                             __ATOMIC_RELEASE);
            sysv_registry_freed();
            continue;
        }
        if ((msgflg & IPC_CREAT) && (msgflg & IPC_EXCL))
            id = -EEXIST;
        else if (!perm_ok(s, msgflg))
            id = -EACCES;
        else
            id = (int) (i + SYSV_SLOTS * seq);
    }
    if (id == -ENOENT && (key == IPC_PRIVATE || (msgflg & IPC_CREAT)))
        id = create_queue(r, key, msgflg);
    if (id < 0)
        sysv_registry_freed(); /* a file made for nothing goes at once */
    sysv_registry_unlock();
    return id < 0 ? fail(-id) : id;
}

/* ---- msgsnd, msgrcv -------------------------------------------------------------------- */

struct sysv_buf {
    long mtype;
    char mtext[];
};

SYSV_API int msgsnd(int msqid, const void *msgp, size_t msgsz, int msgflg)
{
    const struct sysv_buf *m = msgp;
    /* The kernel reads mtype first (EFAULT), then checks the size. A size it would refuse
     * needs only mtype checked; otherwise one check covers mtype and text together, which
     * keeps the per-thread memory of the last good range (BUFFERS) useful. */
    if (msgsz > (size_t) limits()->msgmax || (long) msgsz < 0)
        return fail(range_ok(m, sizeof(long), 0) ? EINVAL : EFAULT);
    int whole_ok = range_ok(m, sizeof(long) + msgsz, 0);
    if (!whole_ok && !range_ok(m, sizeof(long), 0))
        return fail(EFAULT);
    long mtype = m->mtype;
    if (msqid < 0 || mtype < 1)
        return fail(EINVAL);
    if (!whole_ok)
        return fail(EFAULT);
    struct op op;
    int err = op_begin(msqid, 0222, &op);
    if (err)
        return fail(err);
    int r = pbx_send(op.q, mtype, m->mtext, msgsz, (msgflg & IPC_NOWAIT) ? PBX_NOWAIT : 0);
    op_end(&op);
    return r < 0 ? fail(mailbox_errno(r)) : 0;
}

SYSV_API ssize_t msgrcv(int msqid, void *msgp, size_t msgsz, long msgtyp, int msgflg)
{
    struct sysv_buf *m = msgp;
    if (msqid < 0 || (long) msgsz < 0)
        return fail(EINVAL);
    if ((msgflg & MSG_COPY) && ((msgflg & MSG_EXCEPT) || !(msgflg & IPC_NOWAIT)))
        return fail(EINVAL);
    struct op op;
    int err = op_begin(msqid, 0444, &op);
    if (err)
        return fail(err);
    /* The kernel writes mtype and at most the message: a buffer that is good for msgsz bytes
     * (the usual case, remembered per thread) or for the largest message the queue can hold
     * passes. */
    if (!range_ok(m, sizeof(long) + msgsz, 1)) {
        struct pbx_stat st;
        if (pbx_stat(op.q, &st) != 0 || msgsz <= st.max_msg_size ||
            !range_ok(m, sizeof(long) + st.max_msg_size, 1)) {
            op_end(&op);
            return fail(EFAULT);
        }
    }
    long type = 0;
    ssize_t r;
    if (msgflg & MSG_COPY) {
        r = msgtyp < 0 ? -ENOMSG
                       : pbx__sysv_copy_nth(op.q, (uint64_t) msgtyp, m->mtext, msgsz,
                                            (msgflg & MSG_NOERROR) != 0, &type);
    } else {
        int flags = 0;
        if (msgflg & IPC_NOWAIT)
            flags |= PBX_NOWAIT;
        if (msgflg & MSG_NOERROR)
            flags |= PBX_NOERROR;
        if ((msgflg & MSG_EXCEPT) && msgtyp > 0) /* the kernel ignores it for type <= 0 */
            flags |= PBX_EXCEPT;
        r = pbx_recv(op.q, msgtyp, m->mtext, msgsz, flags, &type);
    }
    op_end(&op);
    /* IPC_NOWAIT while the queue's lock is held by a stopped process (DEADLINES in lock.h):
     * msgrcv(2) has no "try again"; ENOMSG is what a polling caller already handles. */
    if (r == -EAGAIN)
        r = -ENOMSG;
    if (r < 0)
        return fail(mailbox_errno((int) r));
    m->mtype = type;
    return r;
}

/* ---- msgctl ---------------------------------------------------------------------------- */

/* Open the mailbox name for IPC_SET or IPC_RMID, which may_change() allowed. The mailbox file
 * has the queue's mode (file_mode), and a mode such as 0 keeps even the queue's owner from
 * opening it, while the kernel lets the owner and the creator change or remove such a queue.
 * The file's owner may change its mode: it gives itself read and write for the open, and the
 * mode stays so (put back only if the open fails): IPC_SET sets the new mode right after, and
 * IPC_RMID removes the file (removal opens it again to check it before unlinking, so the old
 * mode cannot be put back before that). Only the owner gains anything in the meantime, and its
 * own calls are still checked against msg_perm. */
static int open_to_change(const char *name, pbx_t **q)
{
    int err = pbx_open(name, 0, NULL, q);
    if (err != -EACCES)
        return err;
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/pbx.%s", sysv_dir(), name);
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        fchmodat(AT_FDCWD, path, (st.st_mode & 0777) | 0600, 0) != 0)
        return err;
    err = pbx_open(name, 0, NULL, q);
    if (err && fchmodat(AT_FDCWD, path, st.st_mode & 0777, 0) != 0) {
        /* best effort: the file's owner can set it again */
    }
    return err;
}

static void fill_ds(const struct sysv_slot *s, int id, pbx_t *q, struct msqid_ds *ds)
{
    struct pbx_stat st;
    memset(ds, 0, sizeof(*ds));
    ds->msg_perm.__key = s->key;
    ds->msg_perm.uid = s->uid;
    ds->msg_perm.gid = s->gid;
    ds->msg_perm.cuid = s->cuid;
    ds->msg_perm.cgid = s->cgid;
    ds->msg_perm.mode = (unsigned short) s->mode;
    ds->msg_perm.__seq = (unsigned short) ((uint32_t) id / SYSV_SLOTS);
    ds->msg_ctime = (time_t) s->ctime;
    ds->msg_qbytes = s->qbytes;
    if (q && pbx_stat(q, &st) >= 0) {
        ds->msg_stime = (time_t) (st.last_send_time / 1000000000);
        ds->msg_rtime = (time_t) (st.last_recv_time / 1000000000);
        ds->__msg_cbytes = st.bytes;
        ds->msg_qnum = st.msgs;
        ds->msg_lspid = st.last_send_pid;
        ds->msg_lrpid = st.last_recv_pid;
    }
}

static int ctl_info(int cmd, struct msginfo *info)
{
    const struct limits *l = limits();
    if (!range_ok(info, sizeof(*info), 1))
        return fail(EFAULT);
    struct sysv_registry *r = sysv_registry();
    if (!r)
        return fail(errno);
    memset(info, 0, sizeof(*info));
    info->msgmax = (int) l->msgmax;
    info->msgmnb = (int) l->msgmnb;
    info->msgmni = (int) l->msgmni;
    /* The kernel reports its compile-time constants here (include/uapi/linux/msg.h), not the
     * sysctls: MSGSSZ, MSGSEG, MSGPOOL = MSGMNI * MSGMNB / 1024, MSGMAP = MSGTQL = MSGMNB. */
    info->msgssz = 16;
    info->msgseg = 0xffff;
    info->msgpool = 32000 * 16384 / 1024;
    info->msgmap = 16384;
    info->msgtql = 16384;
    int max_idx = 0;
    long long queues = 0, msgs = 0, bytes = 0;
    cred_refresh();
    uint32_t used = sysv_used(r);
    for (uint32_t i = 0; i < used; i++) {
        struct sysv_slot *s = &r->slot[i];
        uint64_t w = __atomic_load_n(&s->live, __ATOMIC_ACQUIRE);
        if (sysv_state_of(w) != SYSV_LIVE)
            continue;
        max_idx = (int) i;
        queues++;
        if (cmd != MSG_INFO)
            continue;
        pbx_t *q;
        struct pbx_stat st;
        if (open_queue(s, (int) (i + SYSV_SLOTS * sysv_seq_of(w)), &q) == 0) {
            if (pbx_stat(q, &st) == 0) {
                msgs += (long long) st.msgs;
                bytes += (long long) st.bytes;
            }
            pbx_close(q);
        }
    }
    if (cmd == MSG_INFO) {
        /* As the kernel does: the totals are clamped to INT_MAX. */
        info->msgpool = (int) (queues < INT_MAX ? queues : INT_MAX);
        info->msgmap = (int) (msgs < INT_MAX ? msgs : INT_MAX);
        info->msgtql = (int) (bytes < INT_MAX ? bytes : INT_MAX);
    }
    return max_idx;
}

/* MSG_STAT and MSG_STAT_ANY: idx is a slot index. */
static int ctl_stat_index(int idx, int cmd, struct msqid_ds *buf)
{
    struct sysv_registry *r = sysv_registry();
    if (!r)
        return fail(errno);
    if (idx < 0)
        return fail(EINVAL);
    /* The kernel takes the index from the argument as from an id (ipcid_to_idx): a full id
     * names its own slot. */
    idx = (int) ((uint32_t) idx % SYSV_SLOTS);
    struct sysv_slot *s = &r->slot[idx];
    /* Under the registry lock, so that the slot's fields are one queue's, read between
     * changes (IPC_SET writes several). */
    int err = sysv_registry_lock(0);
    if (err)
        return fail(err == -ENOENT ? EINVAL : -err);
    uint64_t w = __atomic_load_n(&s->live, __ATOMIC_ACQUIRE);
    int id = (int) ((uint32_t) idx + SYSV_SLOTS * sysv_seq_of(w));
    if (sysv_state_of(w) != SYSV_LIVE || w != sysv_live_word(sysv_seq_of(w)))
        err = EINVAL;
    else if (cmd == MSG_STAT && !perm_ok(s, 0444))
        err = EACCES;
    else if (!range_ok(buf, sizeof(*buf), 1))
        err = EFAULT;
    pbx_t *q = NULL;
    if (!err) {
        if (open_queue(s, id, &q) != 0)
            q = NULL; /* MSG_STAT_ANY without the right to open the mailbox: no counters */
        fill_ds(s, id, q, buf);
        pbx_close(q);
    }
    sysv_registry_unlock();
    return err ? fail(err) : id;
}

static int ctl_set(int msqid, const struct msqid_ds *buf)
{
    if (!range_ok(buf, sizeof(*buf), 0))
        return fail(EFAULT);
    struct msqid_ds in = *buf;
    int err = sysv_registry_lock(0);
    if (err)
        return fail(err == -ENOENT ? EINVAL : -err);
    uint32_t slot, seq;
    struct sysv_slot *s = slot_in_map(msqid, &slot, &seq); /* the lock looked */
    int r = 0;
    if (!s)
        r = EINVAL;
    else if (!may_change(s))
        r = EPERM;
    else if (in.msg_qbytes > (msglen_t) limits()->msgmnb && cred_euid() != 0)
        r = EPERM; /* raising msg_qbytes above msgmnb takes CAP_SYS_RESOURCE */
    else if (in.msg_qbytes > s->cap)
        r = EPERM; /* beyond the capacity the mailbox was made with (docs/sysv.md) */
    else if (in.msg_perm.uid == (uid_t) -1 || in.msg_perm.gid == (gid_t) -1)
        r = EINVAL; /* not a valid id, as the kernel's ipc_update_perm() says */
    pbx_t *q = NULL;
    if (!r) {
        char name[SYSV_NAME_MAX];
        sysv_mailbox_name(s, msqid, name);
        r = -open_to_change(name, &q);
        if (r == ENOENT)
            r = EINVAL; /* removed through postbox */
    }
    if (!r) {
        uint32_t limit = in.msg_qbytes >= s->cap ? 0 : in.msg_qbytes ? (uint32_t) in.msg_qbytes : 1;
        pbx__sysv_set_limit(q, limit);
        pbx_close(q);
        int owner_changed = s->uid != in.msg_perm.uid || s->gid != in.msg_perm.gid;
        s->uid = in.msg_perm.uid;
        s->gid = in.msg_perm.gid;
        s->mode = in.msg_perm.mode & 0777;
        s->qbytes = in.msg_qbytes;
        s->ctime = (int64_t) time(NULL);
        /* Keep the file's own protection in step; allowed only to its owner and root. */
        char name[SYSV_NAME_MAX], path[4096];
        sysv_mailbox_name(s, msqid, name);
        snprintf(path, sizeof(path), "%s/pbx.%s", sysv_dir(), name);
        if (owner_changed && fchownat(AT_FDCWD, path, s->uid, s->gid, AT_SYMLINK_NOFOLLOW) < 0) {
            /* best effort: the file keeps its owner (docs/sysv.md) */
        }
        if (fchmodat(AT_FDCWD, path, file_mode(s->mode), 0) < 0) {
            /* best effort, as above */
        }
    }
    sysv_registry_unlock();
    return r ? fail(r) : 0;
}

static int ctl_rmid(int msqid)
{
    int err = sysv_registry_lock(0);
    if (err)
        return fail(err == -ENOENT ? EINVAL : -err);
    uint32_t slot, seq;
    struct sysv_slot *s = slot_in_map(msqid, &slot, &seq); /* the lock looked */
    int r = 0;
    if (!s)
        r = EINVAL;
    else if (!may_change(s))
        r = EPERM;
    if (!r) {
        /* Removing must wake every blocked caller (EIDRM), which needs the mailbox open. A
         * caller who owns the queue through IPC_SET but may not open its file (a non-root
         * owner gave the queue away and could not chown the file) cannot, and is refused with
         * EPERM, the queue left whole, rather than told it is gone while its receivers sleep
         * on and its key stays taken (docs/sysv.md). */
        pbx_t *q;
        char name[SYSV_NAME_MAX];
        sysv_mailbox_name(s, msqid, name);
        int e = open_to_change(name, &q);
        if (e == 0) {
            int gone = pbx_remove(q); /* wakes every blocked caller with EIDRM */
            pbx_close(q);
            if (gone != 0 && gone != -ENOENT) /* woken, but the file is still there */
                pbx_unlink(name);
        } else if (e == -EACCES || e == -EPERM) {
            r = EPERM;
        } else if (e != -ENOENT && (e = pbx_unlink(name)) != 0 && e != -ENOENT) {
            r = e == -EACCES || e == -EPERM ? EPERM : -e; /* damaged, and not removable */
        }
    }
    if (!r) {
        __atomic_store_n(&s->live, (uint64_t) ((seq + 1) % SYSV_SEQ_LIMIT) << 32, __ATOMIC_RELEASE);
        sysv_registry_freed();
        pthread_mutex_lock(&cache_mutex);
        handle_forget(slot);
        pthread_mutex_unlock(&cache_mutex);
    }
    sysv_registry_unlock();
    return r ? fail(r) : 0;
}

SYSV_API int msgctl(int msqid, int cmd, struct msqid_ds *buf)
{
    if (msqid < 0 || cmd < 0)
        return fail(EINVAL); /* the kernel's first check, before any command */
    cred_refresh();
    sysv_registry_refresh(); /* another namespace, or a registry made or removed since */
    cmd &= ~IPC_64_FLAG;
    switch (cmd) {
    case IPC_INFO:
    case MSG_INFO:
        return ctl_info(cmd, (struct msginfo *) (void *) buf);
    case MSG_STAT:
    case MSG_STAT_ANY:
        return ctl_stat_index(msqid, cmd, buf);
    case IPC_SET:
        return ctl_set(msqid, buf);
    case IPC_RMID:
        return ctl_rmid(msqid);
    case IPC_STAT: {
        struct op op;
        int err = op_begin(msqid, 0444, &op);
        if (err)
            return fail(err);
        if (!range_ok(buf, sizeof(*buf), 1)) {
            op_end(&op);
            return fail(EFAULT);
        }
        /* The slot's fields under the registry lock: one consistent snapshot (IPC_SET
         * writes several), and EINVAL if the queue went in the meantime. */
        if ((err = sysv_registry_lock(0)) == 0) {
            if (__atomic_load_n(&op.s->live, __ATOMIC_ACQUIRE) == sysv_live_word(op.seq))
                fill_ds(op.s, msqid, op.q, buf);
            else
                err = EINVAL;
            sysv_registry_unlock();
        } else {
            err = err == -ENOENT ? EINVAL : -err;
        }
        op_end(&op);
        return err ? fail(err) : 0;
    }
    default:
        return fail(EINVAL);
    }
}
