/*
 * shm.c — the shared-memory transport: files, mapping, and the send and receive loops that
 * wait when they must.
 *
 * Creating a mailbox never shows a half-made one: the file is made nameless (O_TMPFILE, or a
 * temporary name that no mailbox can have), given its mode and size, its memory reserved
 * (fallocate, so a full tmpfs is an error now rather than SIGBUS later), formatted, and only
 * then linked under its name — which fails with EEXIST if someone else got there first, the
 * atomic equivalent of IPC_CREAT | IPC_EXCL. Opening never follows a symbolic link, never
 * blocks on a FIFO, and refuses anything that pbx__region_check() does not accept.
 *
 * The loops (shm_send, shm_recv) take a side's lock, try, and if they must wait, release the
 * lock, spin briefly, then sleep on the side's event (wait.h) in slices (SLICE_NS); after a
 * slice with nothing to show they look for orphans left by dead peers (recover.c).
 *
 * CANCELLATION (os/cancel.h). Send and receive run in their caller's cancellation state: the
 * fast path reaches no cancellation point. Everything else that can reach one with the
 * mailbox half changed (a message taken but not yet returned, a registration made, a lock
 * held, a slot being copied) runs with cancellation disabled: the waits from registration to
 * deregistration, the PBX_SYNC send, the copy of a large message and the lock it retakes,
 * announcements to listeners and the look for dead peers. The futex sleep itself is the
 * cancellation point, and a cleanup handler takes the registration back.
 *
 * LOOKING (PBX_RDONLY; transport.h). The file is opened O_RDONLY and mapped PROT_READ, so read
 * permission is enough and nothing this handle does can change the region: it does not look
 * after dead peers, join the peer table or refuse a bias, and its table refuses everything but
 * stat and peers. Both read the region without a lock; they trust nothing in it beyond the
 * geometry checked at open, which they never read again (struct pbx_shm), and clamp what the
 * counters give to the geometry's limits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../crash.h"
#include "../os/cancel.h"
#include "../os/os.h"
#include "../transport.h"
#include "shm.h"
#include "wait.h"

/* A sleeper wakes at least this often to look after dead peers while slots are in flight (a
 * dead peer's slot may be what it waits for), and at least every IDLE_SLICE_NS otherwise. Each
 * slice end is also the one instant at which a signal can slip past a sleeper (SIGNALS in
 * os.h), so slices are long when nothing calls for them. */
#define SLICE_NS      100000000ull
#define IDLE_SLICE_NS 1000000000ull
/* Regions up to this size are mapped with their page tables filled in, so that no message
 * takes a page fault on the way; larger ones fault in as they are used. */
#define POPULATE_MAX (64u << 20)
#define FILE_PREFIX  "pbx."

static const char *mailbox_dir(void)
{
    const char *d = getenv("POSTBOX_DIR");
    return d && *d ? d : "/dev/shm";
}

/* A missing directory is -ENOTDIR, not -ENOENT: "no such mailbox" would send the user looking
 * for the wrong thing. O_PATH: the directory is only a base for the *at() calls, so search
 * permission is enough (a 0711 directory, as a home directory often is), as it is for a path. */
static int open_dir(const char *dir)
{
    struct pbx_os_calls *os = pbx__os_table();
    int fd = os->openat(AT_FDCWD, dir, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    return fd == -ENOENT ? -ENOTDIR : fd;
}

static void point_arrays(struct pbx_shm *m)
{
    uint8_t *b = (uint8_t *) m->h;
    const struct pbx_geometry *g = &m->geo;
    m->slots = (struct pbx_slot *) (b + g->off_slots);
    m->chunk_next = (uint32_t *) (b + g->off_chunk_next);
    m->chunk_data = b + g->off_chunk_data;
    m->inbox = (uint64_t *) (b + g->off_inbox);
    m->slot_ring = (uint32_t *) (b + g->off_slot_ring);
    m->chunk_ring = (uint32_t *) (b + g->off_chunk_ring);
    m->types = (struct pbx_type_entry *) (b + g->off_types);
    m->hash = (uint32_t *) (b + g->off_hash);
    m->age_heap = (uint32_t *) (b + g->off_age_heap);
    m->value_heap = (uint32_t *) (b + g->off_value_heap);
    m->send_batch = g->max_msgs / 4 < 1 ? 1 : g->max_msgs / 4 > 256 ? 256 : g->max_msgs / 4;
    /* A bias is granted only over a streak that woke no sleeper of the other side (lock.h):
     * senders wake receivers through msg_ev, receivers wake senders through space_ev. */
    m->send_streak.woken = &m->h->msg_ev.seq;
    m->recv_streak.woken = &m->h->space_ev.seq;
}

/* Unmap and close; also undoes a failed attempt to open, so that the next starts clean. */
static void reset_attempt(struct pbx_shm *m)
{
    struct pbx_os_calls *os = pbx__os_table();
    if (m->h)
        os->munmap(m->h, m->map_size);
    if (m->fd >= 0)
        os->close(m->fd);
    m->h = NULL;
    m->fd = -1;
}

static void shm_free(struct pbx_shm *m)
{
    reset_attempt(m);
    pthread_mutex_destroy(&m->reg_lock);
    free(m->dir);
    free(m->file);
    free(m);
}

static int alone_sending(void *arg)
{
    return pbx__peer_alone_in(arg, PBX_PEER_SENT);
}

static int alone_receiving(void *arg)
{
    return pbx__peer_alone_in(arg, PBX_PEER_RECEIVED);
}

static struct pbx_shm *shm_new(void)
{
    /* Every process that touches a mailbox is registered for heavy fences first (ASYMMETRIC
     * FENCES in os.h): its locks may then be biased to it. */
    pbx__os_asym_setup();
    struct pbx_shm *m = calloc(1, sizeof(*m));
    if (m) {
        m->fd = -1;
        m->peer = -1;
        m->send_streak.alone = alone_sending;
        m->send_streak.arg = m;
        m->recv_streak.alone = alone_receiving;
        m->recv_streak.arg = m;
        pthread_mutex_init(&m->reg_lock, NULL);
    }
    return m;
}

/* Map the region in m->fd and check it. */
static int map_existing(struct pbx_shm *m)
{
    struct pbx_os_calls *os = pbx__os_table();
    struct stat st;
    int err = os->fstat(m->fd, &st);
    if (err)
        return err;
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t) sizeof(struct pbx_header))
        return -EBADMSG;
    void *base;
    int how =
        (st.st_size <= POPULATE_MAX ? PBX_MAP_POPULATE : 0) | (m->rdonly ? PBX_MAP_RDONLY : 0);
    err = os->mmap(m->fd, (size_t) st.st_size, how, &base);
    if (err)
        return err;
    m->h = base;
    m->map_size = (size_t) st.st_size;
    err = pbx__region_check(base, (uint64_t) st.st_size, &m->geo);
    if (err)
        return err;
    m->lock_ctx.dev = st.st_dev;
    m->lock_ctx.ino = st.st_ino;
    point_arrays(m);
    /* Identities in the region are judged in our PID namespace: only the creator's may take
     * part (docs/reliability.md, "Identity and PID namespaces"). The mapping is complete, so
     * pbx_unlink() may still remove the region and wake its participants. */
    return pbx__ident_pidns_admits(PBX_LOAD(&m->h->pidns_dev), PBX_LOAD(&m->h->pidns_ino));
}

static int config_from(const struct pbx_options *opts, struct pbx_config *cfg)
{
    struct pbx_options def;
    if (!opts) {
        pbx_options_init(&def);
        opts = &def;
    }
    cfg->max_bytes = opts->max_bytes;
    cfg->max_msgs = opts->max_msgs;
    cfg->max_msg_size = opts->max_msg_size;
    cfg->overflow = (uint32_t) opts->overflow;
    cfg->hash_seed = pbx__os_random64();
    return (int) (opts->mode & 0777);
}

/* Size, reserve, map and format the fresh file in m->fd. */
static int format_new(struct pbx_shm *m, const struct pbx_options *opts)
{
    struct pbx_os_calls *os = pbx__os_table();
    struct pbx_config cfg;
    mode_t mode = (mode_t) config_from(opts, &cfg);
    struct pbx_geometry geo;
    int err = pbx__layout(&cfg, &geo);
    if (err)
        return err;
    /* The mode is exactly what was asked (no umask), as msgget(2) does. */
    if ((err = os->fchmod(m->fd, mode)) || (err = os->ftruncate(m->fd, (off_t) geo.region_size)) ||
        (err = os->fallocate(m->fd, (off_t) geo.region_size)))
        return err;
    void *base;
    if ((err = os->mmap(m->fd, geo.region_size,
                        geo.region_size <= POPULATE_MAX ? PBX_MAP_POPULATE : 0, &base)))
        return err;
    m->h = base;
    m->map_size = geo.region_size;
    pbx__region_format(base, &geo, pbx__os_real_coarse_ns());
    /* Before the region gets its name: whoever opens it sees the namespace. Without /proc
     * (nothing can be told) it stays 0, 0; a /proc of another namespace refuses the creation,
     * since no identity could be judged through it. */
    uint64_t ns_dev = 0, ns_ino = 0;
    err = pbx__ident_pidns(&ns_dev, &ns_ino);
    if (err == -EXDEV)
        return err;
    m->h->pidns_dev = ns_dev;
    m->h->pidns_ino = ns_ino;
    m->geo = geo;
    point_arrays(m);
    struct stat st;
    if ((err = os->fstat(m->fd, &st)))
        return err;
    m->lock_ctx.dev = st.st_dev;
    m->lock_ctx.ino = st.st_ino;
    return 0;
}

/* Create the mailbox file in dirfd under file; -EEXIST if the name is taken. */
static int create_named(struct pbx_shm *m, int dirfd, const char *file,
                        const struct pbx_options *opts)
{
    struct pbx_os_calls *os = pbx__os_table();
    char tmp[64] = "";
    m->fd = os->openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (m->fd == -EOPNOTSUPP || m->fd == -EISDIR || m->fd == -EINVAL) {
        /* No O_TMPFILE here: a temporary name with '~', which no mailbox name can contain. */
        snprintf(tmp, sizeof(tmp), "pbx~%d.%016llx", (int) getpid(),
                 (unsigned long long) pbx__os_random64());
        m->fd = os->openat(dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (m->fd < 0)
        return m->fd;
    int err = format_new(m, opts);
    if (!err) {
        if (tmp[0])
            err = renameat2(dirfd, tmp, dirfd, file, RENAME_NOREPLACE) < 0 ? -errno : 0;
        else
            err = os->linkat(m->fd, dirfd, file);
    }
    if (tmp[0] && err)
        os->unlinkat(dirfd, tmp);
    return err;
}

static int open_named(struct pbx_shm *m, int dirfd, const char *file)
{
    struct pbx_os_calls *os = pbx__os_table();
    int access = m->rdonly ? O_RDONLY : O_RDWR;
    m->fd = os->openat(dirfd, file, access | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
    if (m->fd < 0)
        return m->fd;
    return map_existing(m);
}

/* A process that cannot issue heavy fences cannot revoke a bias safely: it stops the mailbox
 * from granting any (BIAS in lock.h). */
static void refuse_bias_if_blind(struct pbx_shm *m)
{
    if (!pbx__os_asym_setup()) {
        __atomic_store_n(&m->h->send.bias.no_bias, 1u, __ATOMIC_SEQ_CST);
        __atomic_store_n(&m->h->recv.bias.no_bias, 1u, __ATOMIC_SEQ_CST);
    }
}

static int shm_open_named(const char *name, int flags, const struct pbx_options *opts, void **state)
{
    char file[PBX_NAME_MAX + sizeof(FILE_PREFIX)];
    snprintf(file, sizeof(file), FILE_PREFIX "%s", name);
    struct pbx_shm *m = shm_new();
    if (!m)
        return -ENOMEM;
    int err = -ENOMEM;
    m->rdonly = (flags & PBX_RDONLY) != 0;
    m->dir = strdup(mailbox_dir());
    m->file = strdup(file);
    if (!m->dir || !m->file)
        goto fail;
    int dirfd = open_dir(m->dir);
    if (dirfd < 0) {
        err = dirfd;
        goto fail;
    }
    if (!(flags & PBX_CREATE)) {
        err = open_named(m, dirfd, file);
    } else if (flags & PBX_EXCL) {
        err = create_named(m, dirfd, file, opts);
    } else {
        /* Open, else create, else (someone created it meanwhile) open. */
        err = open_named(m, dirfd, file);
        for (int tries = 0; err == -ENOENT && tries < 3; tries++) {
            reset_attempt(m);
            err = create_named(m, dirfd, file, opts);
            if (err == -EEXIST) {
                reset_attempt(m);
                err = open_named(m, dirfd, file);
            }
        }
    }
    pbx__os_table()->close(dirfd);
    if (err)
        goto fail;
    if (!m->rdonly) { /* (a looking handle writes nothing: LOOKING above) */
        pbx__look_after_dead_peers(m, 0);
        refuse_bias_if_blind(m);
        pbx__peer_join(m);
    }
    *state = m;
    return 0;
fail:
    shm_free(m);
    return err;
}

static int shm_open_private(const struct pbx_options *opts, void **state)
{
    struct pbx_os_calls *os = pbx__os_table();
    struct pbx_shm *m = shm_new();
    if (!m)
        return -ENOMEM;
    m->fd = os->memfd_create("postbox-private", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    int err = m->fd < 0 ? m->fd : format_new(m, opts);
    /* Nobody who gets the descriptor (a child, a peer it is passed to) can shrink the region
     * under its users' mappings, which would be SIGBUS for them (docs/reliability.md). A
     * kernel without seals only loses that protection. */
    if (!err)
        (void) fcntl(m->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    if (err) {
        shm_free(m);
        return err;
    }
    refuse_bias_if_blind(m);
    pbx__peer_join(m);
    *state = m;
    return 0;
}

static int shm_close(void *state)
{
    pbx__loans_end_all(state);
    pbx__peer_leave(state);
    shm_free(state);
    return 0;
}

/* Mark the region removed and wake everyone asleep on it (senders, receivers, PBX_SYNC
 * senders, descriptor watchers); -EIDRM if it already was. */
static int mark_removed(struct pbx_shm *m)
{
    struct pbx_header *h = m->h;
    if (__atomic_exchange_n(&h->removed, 1u, __ATOMIC_SEQ_CST))
        return -EIDRM;
    /* Made outside the locks: fenced on both sides (LOCK CYCLE in wait.h). */
    pbx__event_signal_fenced(&h->msg_ev);
    pbx__event_signal_fenced(&h->space_ev);
    pbx__sync_wake_all(m);
    if (PBX_LOAD(&h->watchers))
        pbx__listen_wake_watchers(m);
    return 0;
}

static int shm_remove(void *state)
{
    struct pbx_shm *m = state;
    if (PBX_LOAD(&m->h->removed))
        return -EIDRM;
    if (m->dir) {
        struct pbx_os_calls *os = pbx__os_table();
        int dirfd = open_dir(m->dir);
        if (dirfd < 0)
            return dirfd;
        /* Unlink the name only if it is still ours: it may already name a newer mailbox. */
        int fd = os->openat(dirfd, m->file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0);
        int err = 0;
        if (fd >= 0) {
            struct stat st;
            if (os->fstat(fd, &st) == 0 && st.st_dev == m->lock_ctx.dev &&
                st.st_ino == m->lock_ctx.ino)
                err = os->unlinkat(dirfd, m->file);
            os->close(fd);
        }
        os->close(dirfd);
        if (err)
            return err;
        /* A remover killed here leaves a nameless region that is not marked removed; the next
         * pbx_stat() on it, or any sleeper at the end of its slice, finishes the removal
         * (finish_nameless_removal, docs/reliability.md). */
        PBX_CRASH_POINT("remove.unlinked");
    }
    return mark_removed(m);
}

static int shm_unlink_named(const char *name)
{
    struct pbx_os_calls *os = pbx__os_table();
    char file[PBX_NAME_MAX + sizeof(FILE_PREFIX)];
    snprintf(file, sizeof(file), FILE_PREFIX "%s", name);
    int dirfd = open_dir(mailbox_dir());
    if (dirfd < 0)
        return dirfd;
    struct pbx_shm *m = shm_new();
    if (!m) {
        os->close(dirfd);
        return -ENOMEM;
    }
    int err = open_named(m, dirfd, file);
    int valid = err == 0 || err == -EXDEV; /* (another PID namespace's: removed all the same) */
    /* Anything that is not a mailbox (damaged, a symbolic link, another version) is removed
     * all the same; a permission problem or a missing name is reported. */
    if (err == -ENOENT || err == -EACCES || err == -EPERM || err == -EISDIR) {
        shm_free(m);
        os->close(dirfd);
        return err;
    }
    err = os->unlinkat(dirfd, file);
    os->close(dirfd);
    if (!err && valid)
        PBX_CRASH_POINT("remove.unlinked");
    if (!err && valid)
        mark_removed(m);
    shm_free(m);
    return err;
}

static int removed(const struct pbx_shm *m)
{
    return PBX_LOAD(&m->h->removed) != 0;
}

/*
 * A named region whose file has no name left was removed by someone who died between the
 * unlink and the mark (or by rm): finish the removal, so that its users learn of it. st is the
 * file's status, or NULL to read it. pbx_stat() and every sleeper at the end of each time
 * slice look, so a blocked call learns of such a removal within a slice.
 */
static void finish_nameless_removal(struct pbx_shm *m, const struct stat *st)
{
    struct stat own;
    if (!m->dir || removed(m))
        return;
    if (!st) {
        if (pbx__os_table()->fstat(m->fd, &own) != 0)
            return;
        st = &own;
    }
    if (st->st_nlink == 0)
        mark_removed(m);
}

/*
 * After registering on an event, before the re-check (LOCK CYCLE in wait.h). A lock that is not
 * biased was given back with an exchange, a full fence, before its holder's wake-up check, and
 * our registration is a full fence too: nothing more to do. A lock biased to us: no other
 * thread can have been inside it without revoking. A lock biased to another thread was given
 * back with a plain store: we issue the heavy fence for the owner, which keeps the bias. But a
 * process that has done so BIAS_FENCES times within BIAS_FENCE_WINDOW_NS sleeps on nearly every
 * message (ping-pong): it revokes the bias instead, by taking and giving back the lock, so that
 * its sleeps cost no system call from then on. Then a full fence for the one change made
 * outside the locks, the removal. 0, or -errno with the registration cancelled.
 */
#define BIAS_FENCES          16
#define BIAS_FENCE_WINDOW_NS 10000000ull
static int see_lock_pass(struct pbx_shm *m, struct pbx_event *ev, const struct pbx_sleeper *s,
                         int send_side, uint64_t limit)
{
    const struct pbx_bias *bias = send_side ? &m->h->send.bias : &m->h->recv.bias;
    uint64_t owner = __atomic_load_n(&bias->owner, __ATOMIC_SEQ_CST);
    if (owner != 0 && owner != pbx__os_self()->ident) {
        struct pbx_fences *f = send_side ? &m->send_fences : &m->recv_fences;
        uint64_t now = pbx__os_mono_coarse_ns();
        if (now - PBX_LOAD(&f->since_ns) >= BIAS_FENCE_WINDOW_NS) {
            PBX_STORE(&f->since_ns, now);
            PBX_STORE(&f->count, 0u);
        }
        uint32_t n = PBX_LOAD(&f->count);
        if (n < BIAS_FENCES && pbx__os_heavy_fence() == 0) {
            PBX_STORE(&f->count, n + 1);
        } else {
            int err = send_side ? pbx__send_lock_until(m, limit) : pbx__recv_lock_until(m, limit);
            if (err) {
                pbx__event_cancel(ev, s);
                return err;
            }
            if (send_side)
                pbx__send_unlock(m);
            else
                pbx__recv_unlock(m);
        }
    }
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return 0;
}

/*
 * Sleep on ev (the caller registered as s with pbx__event_prepare) until *word moves
 * from old, the event fires, the mailbox is removed, the deadline passes or a signal arrives.
 * Between slices it looks after orphans: what a dead peer holds may be what we wait for.
 * Deregisters before returning 0 (re-check), -ETIMEDOUT, -EINTR or -EIDRM.
 */
static int sleep_loop(struct pbx_shm *m, struct pbx_event *ev, const struct pbx_sleeper *s,
                      const uint64_t *word, uint64_t old, uint64_t deadline_ns,
                      struct pbx_sigguard *g)
{
    int err = 0;
    for (;;) {
        if (removed(m)) {
            err = -EIDRM;
            break;
        }
        if (PBX_ACQUIRE(word) != old || PBX_ACQUIRE(&ev->seq) != s->seq)
            break;
        if (g->slept && !g->blocked) {
            /* About to sleep again: block signals (a sleep put the caller's mask back), then
             * look once more, so that what arrives from here on is seen. A wake-up that
             * ends the call costs no change of mask. */
            pbx__os_sig_block(g);
            continue;
        }
        int busy = PBX_LOAD(&m->h->send.inflight) || PBX_LOAD(&m->h->recv.inflight) ||
                   PBX_LOAD(&m->h->recv.claimed);
        err = pbx__event_sleep(ev, s, deadline_ns, busy ? SLICE_NS : IDLE_SLICE_NS, g);
        if (err)
            break;
        if (PBX_ACQUIRE(&ev->seq) == s->seq && PBX_ACQUIRE(word) == old) {
            finish_nameless_removal(m, NULL);
            pbx__look_after_dead_peers(m, 0);
        }
    }
    return err;
}

struct registration {
    struct pbx_event *ev;
    const struct pbx_sleeper *s;
};

static void deregister(void *arg)
{
    pbx__cancel_landed();
    const struct registration *r = arg;
    pbx__event_cancel(r->ev, r->s);
}

/* Called with cancellation disabled (CANCELLATION above): the sleep is a cancellation point,
 * and a cancel there deregisters. */
static int sleep_until_change(struct pbx_shm *m, struct pbx_event *ev, const struct pbx_sleeper *s,
                              const uint64_t *word, uint64_t old, uint64_t deadline_ns,
                              struct pbx_sigguard *g)
{
    struct registration reg = {ev, s};
    int err;
    pthread_cleanup_push(deregister, &reg);
    err = sleep_loop(m, ev, s, word, old, deadline_ns, g);
    pthread_cleanup_pop(1);
    return err == -EINTR || err == -ETIMEDOUT ? (removed(m) ? -EIDRM : err) : err;
}

/* Tell listeners, with cancellation disabled: they are told after the step, before the call
 * returns, and may read /proc, close descriptors and take a mutex. */
static void fire_listeners(struct pbx_shm *m)
{
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    pbx__listen_fire(m);
    pbx__cancel_restore(&c);
}

/*
 * BATCHES (pbx_sendv, pbx_recvv). A batch is a run of ordinary steps under one take of a side's
 * lock: each message is allocated and published (or taken and freed) by the very functions a
 * single send or receive uses, with its own undo log and its own commit point (RECOVERY in
 * queue.c), so a crash between two of them leaves the ones before committed and the rest
 * untouched. The wake-up of the other side and the announcement to listeners are made once,
 * after the lock is given back. A send run ends at a message with chunks (it is copied outside
 * the lock, in a round of its own, as pbx_send() does) and when room runs out under
 * PBX_BLOCK; a receive run copies a large message outside the lock and takes the lock again.
 */
struct send_rest {
    struct pbx_msgv *msgs; /* the messages after the round's first */
    size_t n;
    size_t done;  /* entries processed in this round */
    ssize_t stop; /* 0, or the error that ended the run at msgs[done] */
    int carry;    /* messages discarded for msgs[done] before the run ended without sending it:
                     the next round adds them to its result, so every discard is reported */
};

/* Under the send lock, after the round's first message: send what follows while it fits in a
 * slot and, under PBX_BLOCK, while there is room. */
static void send_rest_locked(struct pbx_shm *m, struct send_rest *b, uint64_t until)
{
    struct pbx_header *h = m->h;
    for (; b->done < b->n; b->done++) {
        struct pbx_msgv *v = &b->msgs[b->done];
        uint32_t len = (uint32_t) v->len;
        if (pbx__chunks_for(len, m->geo.chunk_size) != 0)
            return;
        int dropped = 0;
        if (!pbx__send_has_room(m, len)) {
            if (m->geo.overflow == PBX_BLOCK)
                return;
            if (m->geo.overflow == PBX_DROP_NEWEST) {
                PBX_STORE(&h->send.dropped, h->send.dropped + 1);
                v->result = -ENOBUFS;
                continue;
            }
            struct pbx_cancel c;
            pbx__cancel_off(&c);
            dropped = pbx__drop_oldest(m, len, until);
            pbx__cancel_restore(&c);
            if (dropped < 0) {
                b->stop = dropped;
                return;
            }
            if (!pbx__send_has_room(m, len)) {
                b->carry = dropped;
                return; /* what holds the room is in flight: a round of its own waits */
            }
        }
        PBX_CRASH_POINT("sendv.next");
        uint32_t slot;
        uint64_t pos;
        m->send_noted = 1;
        int err = pbx__send_alloc(m, v->type, v->data, len, &slot, -1, &pos);
        m->send_noted = 0;
        if (err < 0) {
            b->stop = err;
            return;
        }
        v->result = dropped;
    }
}

/* lend: NULL for a send; for a send loan (loan.c), where the LENT slot goes, and nothing is
 * published. */
static int send_loop(struct pbx_shm *m, long type, const void *data, uint32_t len, int flags,
                     uint64_t deadline_ns, struct pbx_sigguard *g, int sync, uint32_t *lend,
                     struct send_rest *rest)
{
    struct pbx_header *h = m->h;
    int dropped = 0, spun = 0;
    const uint64_t until = pbx__lock_limit(flags & PBX_NOWAIT, deadline_ns);
    for (;;) {
        int err = pbx__send_lock_until(m, until);
        if (err)
            return err;
        if (removed(m)) {
            pbx__send_unlock(m);
            return -EIDRM;
        }
        int room = pbx__send_has_room(m, len);
        if (!room && m->geo.overflow == PBX_DROP_NEWEST) {
            PBX_STORE(&h->send.dropped, h->send.dropped + 1);
            pbx__send_unlock(m);
            return -ENOBUFS;
        }
        if (!room && m->geo.overflow == PBX_DROP_OLDEST) {
            /* With the send lock held: no cancellation point on the way (os/cancel.h). */
            struct pbx_cancel c;
            pbx__cancel_off(&c);
            int n = pbx__drop_oldest(m, len, until);
            pbx__cancel_restore(&c);
            if (n < 0) {
                pbx__send_unlock(m);
                return n;
            }
            dropped += n;
            if (rest) /* BATCHES: discards for this message, should it not be sent after all */
                rest->carry = dropped;
            room = pbx__send_has_room(m, len);
        }
        if (room && PBX_UNLIKELY(lend != NULL)) {
            err = pbx__send_lend(m, len, lend);
            pbx__send_unlock(m);
            return err < 0 ? err : dropped;
        }
        if (room) {
            uint32_t slot;
            uint64_t pos = 0;
            err = pbx__send_alloc(m, type, data, len, &slot, sync, &pos);
            if (err == PBX_PENDING) {
                /* The slot is ours (WRITING) until published: not cancelled meanwhile. */
                struct pbx_cancel c;
                pbx__cancel_off(&c);
                pbx__send_unlock(m);
                pbx__send_copy_in(m, slot, data, len);
                err = pbx__send_lock(m);
                pbx__cancel_restore(&c);
                if (err)
                    return err;
                pbx__send_publish(m, slot, sync, &pos);
            }
            if (rest && err >= 0) {
                rest->carry = 0; /* the round's first is in, with its discards in the result */
                send_rest_locked(m, rest, until); /* BATCHES */
            }
            pbx__send_unlock(m);
            if (err < 0)
                return err;
            if (pbx__event_signal(&h->msg_ev))
                pbx__look_after_dead_peers(m, 0); /* counted sleepers, none woken */
            if (PBX_UNLIKELY(PBX_LOAD(&h->send.index_ahead)))
                pbx__index_ahead(m); /* INDEX AHEAD (ahead.c) */
            /* LISTENERS (listen.c): one load of the control line when nobody listens. */
            if (PBX_UNLIKELY(pbx__listening(m))) {
                struct pbx_cancel c;
                pbx__cancel_off(&c);
                pbx__listen_arrived(m, pos);
                pbx__cancel_restore(&c);
            }
            return dropped;
        }

        /* Full, judged by the count of freed messages last read (seen_msgs): any change to that
         * count is room. (Reading the count afresh here could see a free that came after the
         * judgement, and then wait for another one.) What a dead peer holds in flight may be
         * what fills it. */
        uint64_t freed = h->send.seen_msgs;
        uint32_t limit = PBX_LOAD(&h->soft_limit); /* a raised one is room too (sysv_hooks.c) */
        pbx__send_unlock(m);
        if (flags & PBX_NOWAIT) {
            if (pbx__look_after_dead_peers(m, 0) > 0)
                continue;
            return -EAGAIN;
        }
        if (!spun) {
            /* Wait for a batch of room rather than one slot: a sender that takes each slot the
             * moment a receiver frees it works in lockstep with it, and both pay for passing
             * the same cache lines back and forth on every message. After a sleep, signals
             * are blocked before the spin (a no-op before the first sleep: SIGNALS, os.h). */
            pbx__os_sig_block(g);
            spun = 1;
            if (pbx__spin_until_change(&h->recv.recvd_msgs, freed, m->send_batch, &h->recv.cpu,
                                       &h->recv.inflight, &m->send_spin))
                continue;
        }
        /* From here on the call is blocked: signals must interrupt it (SIGNALS in os.h). The
         * mask is blocked only once a sleep has returned without ending the call; the first
         * sleep, and the spin before it, leave it alone (each change costs a system call). */
        pbx__os_sig_block(g);
        if (PBX_ACQUIRE(&h->recv.recvd_msgs) != freed)
            continue;
        struct pbx_sleeper sl;
        struct pbx_cancel c;
        pbx__cancel_off(&c); /* from registration to deregistration (CANCELLATION above) */
        pbx__event_prepare(&h->space_ev, &sl);
        if ((err = see_lock_pass(m, &h->space_ev, &sl, 0, until))) {
            pbx__cancel_restore(&c);
            return err; /* room is made under the receive lock */
        }
        if (PBX_LOAD(&h->soft_limit) != limit) {
            pbx__event_cancel(&h->space_ev, &sl);
            pbx__cancel_restore(&c);
            continue;
        }
        err = sleep_until_change(m, &h->space_ev, &sl, &h->recv.recvd_msgs, freed, deadline_ns, g);
        pbx__cancel_restore(&c);
        if (err)
            return err;
        spun = 0;
    }
}

/* PBX_SYNC: send, then wait for the take, holding a sync entry that a cancel gives back. */
static int sync_send(struct pbx_shm *m, long type, const void *data, uint32_t len, int flags,
                     uint64_t deadline_ns, struct pbx_sigguard *g)
{
    int sync = pbx__sync_begin(m);
    if (sync < 0)
        return sync;
    struct pbx_sync_hold hold = {m, sync};
    int r;
    pthread_cleanup_push(pbx__sync_let_go, &hold);
    r = send_loop(m, type, data, len, flags, deadline_ns, g, sync, NULL, NULL);
    if (r >= 0) {
        int w = pbx__sync_wait(m, sync, deadline_ns, g);
        r = w < 0 ? w : r;
    }
    pthread_cleanup_pop(1);
    return r;
}

static int shm_send(void *state, long type, const void *data, uint32_t len, int flags,
                    uint64_t deadline_ns)
{
    struct pbx_shm *m = state;
    if (len > m->geo.max_msg_size)
        return -EMSGSIZE;
    pbx__peer_note(m, PBX_PEER_SENT, pbx__os_self()->pid);
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    if (PBX_LIKELY(!(flags & PBX_SYNC))) {
        int r = send_loop(m, type, data, len, flags, deadline_ns, &g, -1, NULL, NULL);
        pbx__os_sig_restore(&g);
        return r;
    }
    /* PBX_SYNC | PBX_NOWAIT sends only to a receiver that already waits (docs/signals.md). */
    if ((flags & PBX_NOWAIT) && !PBX_LOAD(&m->h->msg_ev.waiters))
        return PBX_LOAD(&m->h->removed) ? -EIDRM : -EAGAIN;
    struct pbx_cancel c;
    pbx__cancel_off(&c); /* the entry is held until sync_end (CANCELLATION above) */
    int r = sync_send(m, type, data, len, flags, deadline_ns, &g);
    pbx__cancel_restore(&c);
    pbx__os_sig_restore(&g);
    return r;
}

/* pbx_sendv (BATCHES above): a lock round per run, until every entry is processed. */
static ssize_t shm_sendv(void *state, struct pbx_msgv *msgs, size_t n, int flags,
                         uint64_t deadline_ns)
{
    struct pbx_shm *m = state;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].len > m->geo.max_msg_size) {
            msgs[i].result = -EMSGSIZE;
            return -EMSGSIZE;
        }
    pbx__peer_note(m, PBX_PEER_SENT, pbx__os_self()->pid);
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    size_t k = 0;
    int carry = 0;
    while (k < n) {
        struct pbx_msgv *v = &msgs[k];
        struct send_rest rest = {v + 1, n - k - 1, 0, 0, 0};
        int r = send_loop(m, v->type, v->data, (uint32_t) v->len, flags, deadline_ns, &g, -1, NULL,
                          &rest);
        v->result = r >= 0 ? r + carry : r;
        if (r < 0 && r != -ENOBUFS) {
            /* The discards made for this entry (in an earlier round, and in this one before it
             * stopped) are reported in the last entry processed: msgs[k] holds the reason. */
            if (k)
                msgs[k - 1].result += carry + rest.carry;
            break; /* the first of the round was not processed: nor was anything after it */
        }
        carry = rest.carry;
        pbx__cancel_hold(); /* messages are in: the count must reach the caller */
        k += 1 + rest.done;
        if (rest.stop) {
            msgs[k].result = rest.stop;
            break;
        }
    }
    pbx__os_sig_restore(&g);
    return k ? (ssize_t) k : msgs[0].result;
}

/* Under the receive lock, with a message picked: hand it to the caller. */
static ssize_t deliver(struct pbx_shm *m, const struct pbx_pick *p, void *buf, uint32_t cap,
                       int flags, long *type_out, uint64_t *claim)
{
    uint32_t s = p->slot;
    if (s >= m->geo.nslots || m->slots[s].len > m->geo.max_msg_size) {
        PBX_STORE(&m->h->recv.needs_rebuild, 1u);
        pbx__recv_unlock(m);
        return -EBADMSG;
    }
    uint32_t len = m->slots[s].len;
    long mtype = (long) m->slots[s].type;
    if (len > cap && !(flags & PBX_NOERROR)) {
        pbx__recv_unlock(m);
        return -E2BIG;
    }
    uint32_t n = len < cap ? len : cap;
    int fire = 0;
    if (claim) {
        /* The slot is CLAIMED by this process: nobody else touches it, so it is copied
         * outside the lock, whatever its size. */
        int err = pbx__recv_claim(m, p, &s, &fire);
        pbx__recv_unlock(m);
        if (PBX_UNLIKELY(fire))
            fire_listeners(m);
        if (err < 0)
            return err;
        if (buf) /* NULL: a receive loan (loan.c), read in place */
            pbx__copy_out(m, s, buf, n);
        *claim = pbx__claim_id(m, s);
    } else if (flags & PBX_PEEK) {
        pbx__copy_out(m, s, buf, n);
        pbx__recv_unlock(m);
    } else {
        int err = pbx__recv_take(m, p, buf, n, &s, &fire);
        pbx__recv_unlock(m);
        if (PBX_UNLIKELY(fire))
            fire_listeners(m);
        if (err == PBX_PENDING) {
            /* The slot is ours (READING) until finished: not cancelled meanwhile. */
            struct pbx_cancel c;
            pbx__cancel_off(&c);
            PBX_CRASH_POINT("recv.copying");
            pbx__copy_out(m, s, buf, n);
            /* The slot is ours (READING): giving it back needs the lock, not the index. */
            if (!(err = pbx__recv_lock(m))) {
                err = pbx__recv_finish(m, s);
                pbx__recv_unlock(m);
            }
            pbx__cancel_restore(&c);
        }
        if (err < 0)
            return err;
        if (pbx__event_signal(&m->h->space_ev))
            pbx__look_after_dead_peers(m, 0); /* counted sleepers, none woken */
    }
    if (type_out)
        *type_out = mtype;
    return (ssize_t) n;
}

/* The index was found damaged (or a damaged inbox entry was stepped over): rebuild it from the
 * slots if it is flagged, and select once more. */
static int select_after_rebuild(struct pbx_shm *m, long type, int except, uint32_t *e)
{
    if (!PBX_LOAD(&m->h->recv.needs_rebuild))
        return -EBADMSG;
    int err = pbx__index_rebuild(m);
    if (!err)
        err = pbx__recv_drain(m);
    if (!err)
        err = pbx__index_select(m, type, except, e);
    return err;
}

/*
 * Under the receive lock: pick a message, bringing the index up to date from the inbox when
 * needed. 0, -ENOMSG or -errno.
 *
 * Messages still in the inbox arrived after every message in the index. So for type >= 0 (with
 * or without PBX_EXCEPT), a match found in the index is older than any match in the inbox, and
 * the inbox is drained only when the index has none. That keeps a receiver that is behind off
 * the inbox line the sender is writing, and lets it drain in batches. With the index empty, a
 * match at the inbox head is the oldest of all and is taken from there (FAST PATH in queue.c).
 * A receive with type < 0 wants the lowest type, which could be anywhere in the inbox: it
 * always drains first.
 *
 * INCREMENTAL DRAIN. For type >= 0, the drain stops at the first message that matches: the
 * inbox is in arrival order, so that is the oldest match in the inbox, and the index had none.
 * A selective receive after a burst then pays for the messages up to its match, not for the
 * whole backlog; what it passed on the way is indexed for the next. (A receive with type < 0
 * cannot stop early; senders index ahead for it, INDEX AHEAD in ahead.c.)
 */
static int select_locked(struct pbx_shm *m, long type, int except, struct pbx_pick *p)
{
    int err = pbx__index_ready(m);
    pbx__index_ahead_note(m, type);
    if (!err && type >= 0 && m->h->recv.heap_len == 0) {
        err = pbx__recv_pick_inbox(m, type, except, p);
        if (err <= 0)
            return err;
        err = 0;
    }
    uint32_t e = PBX_NONE;
    if (!err && type >= 0)
        err = pbx__index_select(m, type, except, &e);
    if (err == -ENOMSG || (!err && type < 0)) {
        err = type < 0 ? pbx__recv_drain(m) : pbx__recv_drain_to_match(m, type, except);
        if (!err)
            err = pbx__index_select(m, type, except, &e);
    }
    if (err == -EBADMSG)
        err = select_after_rebuild(m, type, except, &e);
    p->arrival = m->h->recv.inbox_head; /* the index had nothing: the next arrival lands here */
    if (err)
        return err;
    p->entry = e;
    p->slot = m->types[e].head;
    return 0;
}

/* The CPU a waiting receiver judges spinning by (pbx__spin_until_change): the last sender's, as
 * the one who will publish next. But when this process sent last — one mailbox used both ways,
 * as System V programs do (a request of one type, the answer of another) — that CPU is our own
 * and says nothing about the peer; the last receiver, then, is the peer about to answer. If
 * this process did both, nothing is known (0). */
static const uint32_t *peer_cpu_of_sender(const struct pbx_header *h)
{
    static const uint32_t unknown = 0;
    int32_t self = pbx__os_self()->pid;
    if (PBX_LOAD(&h->send.last_pid) != self)
        return &h->send.cpu;
    return PBX_LOAD(&h->recv.last_pid) != self ? &h->recv.cpu : &unknown;
}

/* Under the receive lock, with a message picked: take it and what else matches, up to n
 * (BATCHES above). Gives the lock back. */
static ssize_t deliver_batch(struct pbx_shm *m, struct pbx_pick *p, long type, int flags,
                             struct pbx_msgv *msgs, size_t n)
{
    size_t k = 0;
    ssize_t stop = 0;
    int fire = 0, locked = 1;
    for (;;) {
        struct pbx_msgv *v = &msgs[k];
        uint32_t s = p->slot;
        if (s >= m->geo.nslots || m->slots[s].len > m->geo.max_msg_size) {
            PBX_STORE(&m->h->recv.needs_rebuild, 1u);
            stop = -EBADMSG;
            break;
        }
        uint32_t len = m->slots[s].len;
        long mtype = (long) m->slots[s].type;
        uint32_t cap = v->len > UINT32_MAX ? UINT32_MAX : (uint32_t) v->len;
        if (len > cap && !(flags & PBX_NOERROR)) {
            stop = -E2BIG;
            break;
        }
        uint32_t nb = len < cap ? len : cap;
        m->recv_noted = k > 0;
        int fired = 0; /* this take's own: an edge claimed earlier must not be overwritten */
        int err = pbx__recv_take(m, p, v->data, nb, &s, &fired);
        fire |= fired;
        m->recv_noted = 0;
        if (err == PBX_PENDING) {
            /* The slot is ours (READING): copied outside the lock, as deliver() does. */
            struct pbx_cancel c;
            pbx__cancel_off(&c);
            pbx__recv_unlock(m);
            PBX_CRASH_POINT("recv.copying");
            pbx__copy_out(m, s, v->data, nb);
            locked = (err = pbx__recv_lock(m)) == 0;
            if (locked)
                err = pbx__recv_finish(m, s);
            pbx__cancel_restore(&c);
        }
        if (err < 0) {
            stop = err;
            break;
        }
        v->type = mtype;
        v->result = (ssize_t) nb;
        if (++k == n)
            break;
        PBX_CRASH_POINT("recvv.next");
        if (removed(m)) {
            stop = -EIDRM;
            break;
        }
        if ((stop = select_locked(m, type, (flags & PBX_EXCEPT) != 0, p)) != 0)
            break;
    }
    if (locked)
        pbx__recv_unlock(m);
    if (PBX_UNLIKELY(fire))
        fire_listeners(m);
    if (k && pbx__event_signal(&m->h->space_ev))
        pbx__look_after_dead_peers(m, 0); /* counted sleepers, none woken */
    if (k < n)
        msgs[k].result = stop;
    return k ? (ssize_t) k : stop;
}

static ssize_t recv_loop(struct pbx_shm *m, long type, void *buf, uint32_t cap, int flags,
                         long *type_out, uint64_t deadline_ns, struct pbx_sigguard *g,
                         uint64_t *claim, struct pbx_msgv *batch, size_t nbatch)
{
    struct pbx_header *h = m->h;
    int spun = 0;
    const uint64_t until = pbx__lock_limit(flags & PBX_NOWAIT, deadline_ns);
    /* A message that a receiver was copying out, or held claimed or lent (loan.c), when it
     * died is put back by whoever next looks after dead peers; receivers look at most every
     * 100 ms, and only while some slot is read or held outside the lock, so the usual cost is
     * two loads of one line. */
    if (PBX_UNLIKELY(PBX_LOAD(&h->recv.inflight) | PBX_LOAD(&h->recv.claimed)))
        pbx__look_after_dead_peers(m, 0);
    /* LOOK-AHEAD (queue.c): a typed receive that a look without the lock finds nothing for
     * waits for the next arrival before its first look under the lock. One mailbox used both
     * ways (System V's shape) has each side ask for its answer right after sending, while the
     * peer takes that message under the same receive lock: the look would only contend with
     * it. A wrong hint costs a spin, never a message: the locked look follows either way. */
    uint64_t at;
    if (type > 0 && !(flags & PBX_NOWAIT) &&
        pbx__recv_nothing_for(m, type, flags & PBX_EXCEPT, &at)) {
        uint64_t *watch = &m->inbox[at & m->geo.inbox_mask];
        uint64_t old = PBX_ACQUIRE(watch);
        if (!pbx__inbox_published(m, at, old)) {
            pbx__os_sig_block(g); /* a no-op before the first sleep (see send_loop) */
            spun = 1;
            if (!pbx__spin_until_change(watch, old, 1, peer_cpu_of_sender(h), &h->send.inflight,
                                        &m->recv_spin))
                pbx__os_sig_block(g);
        }
    }
    for (;;) {
        int err = pbx__recv_lock_until(m, until);
        if (err)
            return err;
        if (removed(m)) {
            pbx__recv_unlock(m);
            return -EIDRM;
        }
        struct pbx_pick pick;
        err = select_locked(m, type, (flags & PBX_EXCEPT) != 0, &pick);
        if (err == 0 && batch)
            return deliver_batch(m, &pick, type, flags, batch, nbatch);
        if (err == 0)
            return deliver(m, &pick, buf, cap, flags, type_out, claim);
        if (err != -ENOMSG) {
            pbx__recv_unlock(m);
            return err;
        }

        /* Nothing matches. The next publication lands at inbox_head, or past the entries the
         * look-ahead left there: watch that entry. It may
         * have been published since the drain looked; then the wait is over before it began.
         * Otherwise it holds last lap's value, and any change to it is the publication. */
        uint64_t head = pick.arrival;
        uint64_t *watch = &m->inbox[head & m->geo.inbox_mask];
        uint64_t old = PBX_ACQUIRE(watch);
        if (pbx__inbox_published(m, head, old)) {
            pbx__recv_unlock(m);
            continue;
        }
        if (flags & PBX_NOWAIT) {
            pbx__recv_unlock(m);
            if (pbx__look_after_dead_peers(m, 0) > 0)
                continue;
            if (PBX_UNLIKELY(__atomic_load_n(&m->watcher, __ATOMIC_RELAXED) != NULL)) {
                struct pbx_cancel c;
                pbx__cancel_off(&c);
                pbx__watch_settle(m);
                pbx__cancel_restore(&c);
            }
            return -ENOMSG;
        }
        if (!spun) {
            pbx__recv_unlock(m);
            pbx__os_sig_block(g); /* after a sleep, before spinning again (see send_loop) */
            spun = 1;
            if (!pbx__spin_until_change(watch, old, 1, peer_cpu_of_sender(h), &h->send.inflight,
                                        &m->recv_spin))
                pbx__os_sig_block(g); /* blocked from here on (see send_loop) */
            continue;                 /* look again, under the lock */
        }
        pbx__os_sig_block(g);
        /* Register while still holding the lock: a message put back (a released claim, a
         * repair) needs this lock, so it cannot slip between our look and our registration.
         * Messages are published under the send lock: we see that one pass (LOCK CYCLE in
         * wait.h), after this one is let go (the lock order is send, then receive). */
        struct pbx_sleeper sl;
        struct pbx_cancel c;
        pbx__cancel_off(&c); /* from registration to deregistration (CANCELLATION above) */
        pbx__event_prepare(&h->msg_ev, &sl);
        pbx__recv_unlock(m);
        if ((err = see_lock_pass(m, &h->msg_ev, &sl, 1, until))) {
            pbx__cancel_restore(&c);
            return err;
        }
        err = sleep_until_change(m, &h->msg_ev, &sl, watch, old, deadline_ns, g);
        pbx__cancel_restore(&c);
        if (err)
            return err;
        spun = 0;
    }
}

static ssize_t shm_recv(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                        uint64_t deadline_ns)
{
    struct pbx_shm *m = state;
    pbx__peer_note(m, PBX_PEER_RECEIVED, pbx__os_self()->pid);
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    ssize_t r = recv_loop(m, type, buf, cap, flags, type_out, deadline_ns, &g, NULL, NULL, 0);
    pbx__os_sig_restore(&g);
    return r;
}

static ssize_t shm_recvv(void *state, long type, struct pbx_msgv *msgs, size_t n, int flags,
                         uint64_t deadline_ns)
{
    struct pbx_shm *m = state;
    pbx__peer_note(m, PBX_PEER_RECEIVED, pbx__os_self()->pid);
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    ssize_t r = recv_loop(m, type, NULL, 0, flags, NULL, deadline_ns, &g, NULL, msgs, n);
    pbx__os_sig_restore(&g);
    return r;
}

static ssize_t shm_claim(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                         uint64_t *claim, uint64_t deadline_ns)
{
    struct pbx_shm *m = state;
    pbx__peer_note(m, PBX_PEER_RECEIVED, pbx__os_self()->pid);
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    ssize_t r = recv_loop(m, type, buf, cap, flags, type_out, deadline_ns, &g, claim, NULL, 0);
    pbx__os_sig_restore(&g);
    return r;
}

/* LOANS (loan.c): the room or the message is taken by the loops above. */
static int shm_lend(void *state, uint32_t len, int flags, uint64_t deadline_ns, struct pbx_loan *l)
{
    struct pbx_shm *m = state;
    if (len > m->geo.max_msg_size)
        return -EMSGSIZE;
    pbx__peer_note(m, PBX_PEER_SENT, pbx__os_self()->pid);
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    uint32_t slot = PBX_NONE;
    int r = send_loop(m, 1, NULL, len, flags, deadline_ns, &g, -1, &slot, NULL);
    pbx__os_sig_restore(&g);
    if (r < 0)
        return r;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    r = pbx__loan_record_send(m, slot, len, l);
    pbx__cancel_restore(&c);
    return r;
}

static ssize_t shm_recv_lend(void *state, long type, int flags, uint64_t deadline_ns,
                             struct pbx_loan *l)
{
    struct pbx_shm *m = state;
    pbx__peer_note(m, PBX_PEER_RECEIVED, pbx__os_self()->pid);
    struct pbx_sigguard g;
    pbx__os_sig_guard_init(&g);
    uint64_t claim = 0;
    long mtype = 0;
    ssize_t r =
        recv_loop(m, type, NULL, UINT32_MAX, flags, &mtype, deadline_ns, &g, &claim, NULL, 0);
    pbx__os_sig_restore(&g);
    if (r < 0)
        return r;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int err = pbx__loan_record_recv(m, claim, (uint32_t) r, mtype, l);
    pbx__cancel_restore(&c);
    return err ? err : r;
}

/* Acknowledge (free) or release (put back in its place) a claimed message. */
static int shm_settle(void *state, uint64_t claim, int ack)
{
    struct pbx_shm *m = state;
    int err = pbx__recv_lock(m);
    if (err)
        return err;
    uint32_t s;
    int fire = 0;
    if (removed(m))
        err = -EIDRM;
    else if (!(err = pbx__claim_find(m, claim, &s))) {
        struct pbx_recv_side *r = &m->h->recv;
        if (ack) {
            err = pbx__slot_free(m, s, PBX_FREE_RECEIVED);
        } else if (!(err = pbx__index_ready(m))) {
            int was_empty = pbx__listening(m) && pbx__listen_is_empty(m);
            PBX_STORE(&m->slots[s].state, (uint32_t) PBX_SLOT_QUEUED);
            err = pbx__index_insert_in_order(m, s);
            if (err) /* the slot is QUEUED: the rebuild puts it in its place */
                err = pbx__index_rebuild(m);
            if (!err && was_empty)
                fire = pbx__listen_released(m, 1);
        }
        if (!err && r->claimed)
            PBX_STORE(&r->claimed, r->claimed - 1);
    }
    pbx__recv_unlock(m);
    if (err)
        return err;
    pbx__event_signal(ack ? &m->h->space_ev : &m->h->msg_ev);
    if (fire)
        pbx__listen_fire(m); /* (cancellation is disabled by the API layer) */
    return 0;
}

static int shm_ack(void *state, uint64_t claim)
{
    return shm_settle(state, claim, 1);
}

static int shm_release(void *state, uint64_t claim)
{
    return shm_settle(state, claim, 0);
}

/* A count that the shared state gives as sent - freed, as pbx_stat() may report it: at most
 * limit, and 0 when freed is ahead of sent (a damaged region, or values read at different
 * moments by a caller that did not order its loads). Wrapping counters: unsigned difference. */
static uint64_t held_count(uint64_t sent, uint64_t freed, uint64_t limit)
{
    uint64_t d = sent - freed;
    if (d > UINT64_MAX / 2)
        return 0;
    return d < limit ? d : limit;
}

/*
 * STAT. Lock-free, for every handle (and the only way a looking one could: LOOKING above). The
 * number held is sent - freed: the freed counts are read first (acquire), then the sent ones,
 * and again the freed ones; if a receiver freed meanwhile the reads are retried a few times,
 * so that the difference is what the mailbox held at one instant whenever traffic allows, and
 * never counts a message twice. Each other field is one load. Everything is then clamped to
 * the geometry, which was checked at open and is never read from the region again: a region
 * scribbled on by a peer gives wrong numbers, never a crash nor a count above the capacity.
 * The file's status is read first: a file cut shorter than the mapping (only a writer can)
 * would fault on the first load past its end, so it is reported as -EBADMSG instead.
 */
#define STAT_RETRIES 4
static int shm_stat(void *state, struct pbx_stat *st)
{
    struct pbx_shm *m = state;
    struct pbx_header *h = m->h;
    memset(st, 0, sizeof(*st));
    st->max_bytes = m->geo.max_bytes;
    st->max_msgs = m->geo.max_msgs;
    st->max_msg_size = m->geo.max_msg_size;
    st->overflow = (enum pbx_overflow) m->geo.overflow;
    st->region_size = m->geo.region_size;
    struct stat fst;
    int have_fst = pbx__os_table()->fstat(m->fd, &fst) == 0;
    if (have_fst) {
        st->mode = fst.st_mode & 0777;
        st->uid = fst.st_uid;
        st->gid = fst.st_gid;
        if ((uint64_t) fst.st_size < m->map_size)
            return -EBADMSG;
    }
    uint64_t freed_msgs, freed_bytes, sent_msgs, sent_bytes;
    for (int tries = 0;; tries++) {
        freed_msgs = PBX_ACQUIRE(&h->recv.recvd_msgs);
        freed_bytes = PBX_ACQUIRE(&h->recv.recvd_bytes);
        sent_msgs = PBX_ACQUIRE(&h->send.sent_msgs);
        sent_bytes = PBX_ACQUIRE(&h->send.sent_bytes);
        if ((PBX_ACQUIRE(&h->recv.recvd_msgs) == freed_msgs &&
             PBX_ACQUIRE(&h->recv.recvd_bytes) == freed_bytes) ||
            tries + 1 == STAT_RETRIES)
            break;
    }
    st->msgs = held_count(sent_msgs, freed_msgs, m->geo.max_msgs);
    st->bytes = held_count(sent_bytes, freed_bytes, m->geo.max_bytes);
    uint64_t claimed = PBX_LOAD(&h->recv.claimed);
    st->claimed = claimed < st->msgs ? claimed : st->msgs;
    st->last_send_pid = PBX_LOAD(&h->send.last_pid);
    st->last_recv_pid = PBX_LOAD(&h->recv.last_pid);
    st->last_send_time = PBX_LOAD(&h->send.last_time);
    st->last_recv_time = PBX_LOAD(&h->recv.last_time);
    st->sent = PBX_LOAD(&h->send.inbox_tail);
    st->received = PBX_LOAD(&h->recv.received);
    st->dropped = PBX_LOAD(&h->send.dropped) + PBX_LOAD(&h->recv.dropped);
    st->repairs = PBX_LOAD(&h->repairs);
    st->send_waiters = PBX_LOAD(&h->space_ev.waiters);
    st->recv_waiters = PBX_LOAD(&h->msg_ev.waiters);
    if (removed(m))
        return -EIDRM;
    if (have_fst && m->rdonly) /* a name gone without the mark: removed, but not ours to mark */
        return m->dir && fst.st_nlink == 0 ? -EIDRM : 0;
    if (have_fst)
        finish_nameless_removal(m, &fst);
    return removed(m) ? -EIDRM : 0;
}

const struct pbx_transport pbx__shm_looking =
    PBX_LOOKING_TABLE("shm (read-only)", shm_stat, pbx__shm_peers, shm_close);

const struct pbx_transport pbx__shm_transport = {
    .name = "shm",
    .sync = 1,
    .cancel_inline = 1,
    .open = shm_open_named,
    .open_private = shm_open_private,
    .close = shm_close,
    .remove = shm_remove,
    .unlink = shm_unlink_named,
    .send = shm_send,
    .recv = shm_recv,
    .stat = shm_stat,
    .claim = shm_claim,
    .ack = shm_ack,
    .release = shm_release,
    .notify = pbx__shm_notify,
    .fd = pbx__shm_fd,
    .peers = pbx__shm_peers,
    .looking = &pbx__shm_looking,
    .lend = shm_lend,
    .commit = pbx__shm_commit,
    .cancel = pbx__shm_cancel,
    .recv_lend = shm_recv_lend,
    .give_back = pbx__shm_give_back,
    .piece = pbx__shm_piece,
    .sendv = shm_sendv,
    .recvv = shm_recvv,
};
