/*
 * peer.c — the participants of a mailbox: who has it open, who registered for a signal
 * (pbx_notify), and the descriptor that poll() reports readable while a message is there
 * (pbx_fd).
 *
 * PEERS. The header holds a table of PBX_PEERS entries, one per open handle. pbx_open claims a
 * free entry with a compare-and-swap of its ident from 0 to the process's identity (pid plus
 * the start time of its main thread, os.h), so a recycled PID never passes for a dead peer —
 * the lecture's warning that PIDs are only relatively unique; the null signal (kill(pid, 0))
 * would say "alive" for whichever process got the number. pbx_close frees the entry; an entry
 * whose process died is pruned by whoever next lists the peers, finds the table full, or wakes
 * helpers none of which is asleep. A process that opens a mailbox twice has two entries;
 * pbx_peers() merges them into one participant. When the table is full, pbx_open still succeeds but
 * the handle is not listed, and pbx_notify()/pbx_fd() on it fail with -EUSERS. A fork()ed child
 * that uses an inherited handle claims an entry of its own on its first send, receive or
 * registration.
 *
 * Registrations are marked in the entry (signo for pbx_notify, watch for pbx_fd) and counted
 * on the control line (LISTENERS in listen.c). A registration is added with both locks held,
 * since the first one sets the empty mark afresh; one ends (close, pruning, signo 0) without
 * needing them. A pruner first moves a dead entry's ident to a value no thread can have, so
 * that of two pruners only one ends its registrations. The entry's signo is information for
 * pbx_peers(): the signal and value a registrant chose are kept in its own memory, in its
 * handle's helper thread, which raises them in its own process (NOTIFY in listen.c).
 *
 * THE HELPER. A handle has at most one helper thread per process, started with every signal
 * blocked by its first pbx_notify() or pbx_fd() and joined by pbx_close(). It sleeps on
 * listen.edge_seq; after each wake-up it raises the registered signal once per arrival counted
 * since it last looked (NOTIFY in listen.c), and, once pbx_fd() made a descriptor, sets the
 * eventfd's level from the empty mark (listen.c): readable (counter 1)
 * while a message is visible or the mailbox was removed, unreadable (counter 0) otherwise. The
 * level therefore follows the mailbox within one wake-up of the watcher thread, whoever sends or
 * drains it, in this process or another. A receive through the same handle that finds nothing
 * (PBX_NOWAIT, -ENOMSG) sets the level at once, in the same step as the watcher does, so that
 * a poll loop that drains the mailbox does not spin on a stale readable descriptor until the
 * watcher thread runs; senders and receivers make a
 * system call for it only on the edges, and only while a watcher exists. pbx_close() stops and
 * joins the thread and closes the descriptor. A fork()ed child does not have the thread, nor
 * its parent's registration (the child is another process, with an entry of its own): its
 * first pbx_notify() or pbx_fd() on the inherited handle starts a helper of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../os/os.h"
#include "../peerlist.h"
#include "shm.h"

struct pbx_watcher {
    struct pbx_shm *m;
    pthread_t thread;
    pthread_mutex_t level_lock; /* the helper, pbx__watch_settle, pbx_fd and pbx_notify: read
                                   the mailbox and act on it as one step, so that neither
                                   undoes the other */
    int efd;                    /* pbx_fd()'s eventfd, -1 until then; set under level_lock */
    int32_t pid;                /* the process the thread runs in */
    int stop;
    int readable; /* the eventfd's level, under level_lock */
    /* pbx_notify(), under level_lock: this process's registration, never read from the
     * region. signo 0: none. seen: listen.arrivals already announced (or predating it). */
    int signo, value;
    uint32_t seen;
};

/* Under level_lock: make the level what the mailbox says now. */
static void level_update(struct pbx_watcher *w)
{
    struct pbx_header *h = w->m->h;
    if (w->efd < 0)
        return;
    int want = PBX_LOAD(&h->removed) || pbx__listen_visible(w->m);
    if (want != w->readable) {
        pbx__os_eventfd_level(w->efd, want);
        w->readable = want;
    }
}

#define WATCH_SLICE_NS 1000000000ull /* the watcher re-reads the count at least this often */

static int lock_both(struct pbx_shm *m)
{
    int err = pbx__send_lock(m);
    if (err)
        return err;
    if ((err = pbx__recv_lock(m)))
        pbx__send_unlock(m);
    return err;
}

static void unlock_both(struct pbx_shm *m)
{
    pbx__recv_unlock(m);
    pbx__send_unlock(m);
}

static void count_down(uint32_t *count)
{
    uint32_t v = PBX_LOAD(count);
    while (v &&
           !__atomic_compare_exchange_n(count, &v, v - 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
}

/* Before a registration is added: the empty mark starts to matter (LISTENERS in listen.c).
 * Both locks held. Messages already queued are not announced. */
static void listeners_about_to_start(struct pbx_shm *m)
{
    if (!pbx__listening(m))
        (void) pbx__listen_recount(m);
}

/* End the entry's registrations. No lock is needed to end one (LISTENERS in listen.c): only the
 * count's rise from zero must happen under both locks, when the empty mark is set afresh; while
 * it falls, the mark is kept, and once it is zero nobody relies on it. */
static void clear_listening(struct pbx_shm *m, struct pbx_peer_entry *p)
{
    if (PBX_LOAD(&p->signo)) {
        PBX_STORE(&p->signo, 0);
        count_down(&m->h->notifiers);
    }
    if (PBX_LOAD(&p->watch)) {
        PBX_STORE(&p->watch, 0);
        count_down(&m->h->watchers);
    }
}

/* Free an entry whose registrations are gone. */
static void entry_free(struct pbx_peer_entry *p, uint64_t ident)
{
    PBX_STORE(&p->roles, 0);
    PBX_STORE(&p->since_ns, 0);
    __atomic_compare_exchange_n(&p->ident, &ident, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

int pbx__peers_prune(struct pbx_shm *m)
{
    struct pbx_header *h = m->h;
    int n = 0;
    for (unsigned i = 0; i < PBX_PEERS; i++) {
        struct pbx_peer_entry *p = &h->peers[i];
        uint64_t ident = PBX_ACQUIRE(&p->ident);
        if (!ident || pbx__ident_process_alive(ident))
            continue;
        /* Only one pruner ends the registrations: the one that takes the entry from ident to a
         * value no live process has (ident | 1 << 31 cannot name a thread: ids are 30 bits). */
        uint64_t dying = ident | 0x80000000ull;
        if (!__atomic_compare_exchange_n(&p->ident, &ident, dying, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_RELAXED))
            continue;
        clear_listening(m, p);
        entry_free(p, dying);
        n++;
    }
    return n;
}

void pbx__peer_join(struct pbx_shm *m)
{
    struct pbx_header *h = m->h;
    const uint64_t me = pbx__ident_process();
    const int32_t pid = pbx__os_self()->pid;
    PBX_STORE(&m->peer, -1);
    PBX_STORE(&m->peer_pid, pid);
    PBX_STORE(&m->roles, (uint32_t) PBX_PEER_OPENED);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < PBX_PEERS; i++) {
            unsigned k = ((unsigned) pid + i) % PBX_PEERS;
            struct pbx_peer_entry *p = &h->peers[k];
            uint64_t zero = 0;
            if (PBX_LOAD(&p->ident) == 0 &&
                __atomic_compare_exchange_n(&p->ident, &zero, me, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_RELAXED)) {
                PBX_STORE(&p->since_ns, pbx__os_real_coarse_ns());
                PBX_STORE(&p->roles, (uint32_t) PBX_PEER_OPENED);
                PBX_STORE(&m->peer, (int) k);
                return;
            }
        }
        if (pbx__peers_prune(m) == 0)
            return; /* full of live peers: this handle goes unlisted */
    }
}

void pbx__peer_touch(struct pbx_shm *m, uint32_t role)
{
    if (PBX_LOAD(&m->peer_pid) != pbx__os_self()->pid)
        pbx__peer_join(m); /* a fork()ed child using an inherited handle */
    int peer = PBX_LOAD(&m->peer);
    if (peer >= 0 && role)
        __atomic_fetch_or(&m->h->peers[peer].roles, role, __ATOMIC_RELAXED);
    __atomic_fetch_or(&m->roles, role, __ATOMIC_RELAXED);
}

int pbx__peer_alone_in(struct pbx_shm *m, uint32_t role)
{
    const uint64_t me = pbx__ident_process();
    for (unsigned i = 0; i < PBX_PEERS; i++) {
        const struct pbx_peer_entry *e = &m->h->peers[i];
        uint64_t ident = PBX_LOAD(&e->ident);
        if (ident != 0 && ident != me && (PBX_LOAD(&e->roles) & role))
            return 0;
    }
    return 1;
}

/* This handle's entry, claimed now if need be; NULL when the table is full. */
static struct pbx_peer_entry *own_entry(struct pbx_shm *m)
{
    if (PBX_LOAD(&m->peer_pid) != pbx__os_self()->pid || PBX_LOAD(&m->peer) < 0)
        pbx__peer_join(m);
    int peer = PBX_LOAD(&m->peer);
    if (peer < 0)
        return NULL;
    struct pbx_peer_entry *p = &m->h->peers[peer];
    /* Pruned by mistake (a damaged word), or damaged: claim another. */
    if (PBX_LOAD(&p->ident) != pbx__ident_process()) {
        pbx__peer_join(m);
        if ((peer = PBX_LOAD(&m->peer)) < 0)
            return NULL;
        p = &m->h->peers[peer];
    }
    return p;
}

/* Under level_lock: the signals to raise for the arrivals counted since the helper last
 * looked (NOTIFY in listen.c). A count moved by a writer of the region gives at most
 * PBX_NOTIFY_BURST of this process's own signal. */
static uint32_t arrivals_to_announce(struct pbx_watcher *w)
{
    uint32_t now = __atomic_load_n(&w->m->h->listen.arrivals, __ATOMIC_SEQ_CST);
    uint32_t n = now - w->seen;
    w->seen = now;
    if (!w->signo)
        return 0;
    return n < PBX_NOTIFY_BURST ? n : PBX_NOTIFY_BURST;
}

static void *helper_main(void *arg)
{
    struct pbx_watcher *w = arg;
    struct pbx_header *h = w->m->h;
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        /* EVENTS order (listen.c) and ORDERING of NOTIFY: the word first, then what it guards. */
        uint32_t seq = __atomic_load_n(&h->listen.edge_seq, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&w->level_lock);
        level_update(w);
        uint32_t n = arrivals_to_announce(w);
        int signo = w->signo, value = w->value;
        pthread_mutex_unlock(&w->level_lock);
        /* To this process only, with the signal and value it chose: a full queue of real-time
         * signals (-EAGAIN) ends the burst. */
        for (uint32_t i = 0; i < n && pbx__os_signal_self(signo, value) == 0; i++)
            ;
        pbx__os_futex_wait(&h->listen.edge_seq, seq, pbx__os_mono_ns() + WATCH_SLICE_NS);
    }
    return NULL;
}

/* This process's helper for the handle, started now if need be (reg_lock held). */
static struct pbx_watcher *helper_of(struct pbx_shm *m, int *err)
{
    int32_t pid = pbx__os_self()->pid;
    struct pbx_watcher *w = m->watcher;
    if (w && w->pid == pid)
        return w;
    if (w) {
        /* Inherited through fork(): the thread, and the registration, stayed with the parent. */
        if (w->efd >= 0)
            close(w->efd);
        free(w);
        __atomic_store_n(&m->watcher, NULL, __ATOMIC_RELEASE);
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        *err = -ENOMEM;
        return NULL;
    }
    w->m = m;
    w->pid = pid;
    w->efd = -1;
    w->seen = __atomic_load_n(&m->h->listen.arrivals, __ATOMIC_SEQ_CST);
    pthread_mutex_init(&w->level_lock, NULL);
    if ((*err = pbx__os_thread_start(&w->thread, helper_main, w))) {
        pthread_mutex_destroy(&w->level_lock);
        free(w);
        return NULL;
    }
    __atomic_store_n(&m->watcher, w, __ATOMIC_RELEASE);
    return w;
}

int pbx__shm_notify(void *state, int signo, int value)
{
    struct pbx_shm *m = state;
    if (PBX_LOAD(&m->h->removed))
        return -EIDRM;
    struct pbx_peer_entry *p = own_entry(m);
    if (!p)
        return signo ? -EUSERS : 0;
    pthread_mutex_lock(&m->reg_lock);
    int err = 0;
    struct pbx_watcher *w = m->watcher;
    if (signo)
        w = helper_of(m, &err);
    else if (w && w->pid != pbx__os_self()->pid)
        w = NULL; /* the parent's: this process has no registration to end */
    if (err || (err = lock_both(m)))
        goto out;
    if (signo && !PBX_LOAD(&p->signo)) {
        listeners_about_to_start(m);
        __atomic_add_fetch(&m->h->notifiers, 1, __ATOMIC_SEQ_CST);
    } else if (!signo && PBX_LOAD(&p->signo)) {
        count_down(&m->h->notifiers);
    }
    PBX_STORE(&p->signo, (int32_t) signo); /* for pbx_peers() only */
    if (w) {
        /* Arrivals counted before now are not this registration's. Both locks are held, so
         * none is being announced: every later one is counted after this. */
        pthread_mutex_lock(&w->level_lock);
        w->seen = __atomic_load_n(&m->h->listen.arrivals, __ATOMIC_SEQ_CST);
        w->signo = signo;
        w->value = value;
        pthread_mutex_unlock(&w->level_lock);
    }
    unlock_both(m);
out:
    pthread_mutex_unlock(&m->reg_lock);
    return err;
}

int pbx__shm_fd(void *state)
{
    struct pbx_shm *m = state;
    int32_t pid = pbx__os_self()->pid;
    pthread_mutex_lock(&m->reg_lock);
    struct pbx_watcher *w = m->watcher;
    int err = 0;
    if (w && w->pid == pid && w->efd >= 0) {
        err = w->efd;
        goto out;
    }
    if (PBX_LOAD(&m->h->removed)) {
        err = -EIDRM;
        goto out;
    }
    struct pbx_peer_entry *p = own_entry(m);
    if (!p) {
        err = -EUSERS;
        goto out;
    }
    if (!(w = helper_of(m, &err)))
        goto out;
    int efd = pbx__os_eventfd();
    if (efd < 0) {
        err = efd;
        goto out;
    }
    if ((err = lock_both(m))) {
        close(efd);
        goto out;
    }
    if (!PBX_LOAD(&p->watch)) {
        listeners_about_to_start(m);
        PBX_STORE(&p->watch, 1u);
        __atomic_add_fetch(&m->h->watchers, 1, __ATOMIC_SEQ_CST);
    }
    unlock_both(m);
    /* The level now: the helper may be asleep for a while yet. An edge from here on bumps
     * edge_seq and wakes it (watchers > 0). */
    pthread_mutex_lock(&w->level_lock);
    w->efd = efd;
    w->readable = 0;
    level_update(w);
    pthread_mutex_unlock(&w->level_lock);
    err = efd;
out:
    pthread_mutex_unlock(&m->reg_lock);
    return err;
}

void pbx__watch_settle(struct pbx_shm *m)
{
    struct pbx_watcher *w = __atomic_load_n(&m->watcher, __ATOMIC_ACQUIRE);
    if (!w || w->pid != pbx__os_self()->pid)
        return;
    /* (level_update does nothing until pbx_fd made the descriptor.) */
    /* The same step as the watcher's, so the level is right when this returns (unless a
     * message arrives meanwhile, whose edge wakes the watcher). */
    pthread_mutex_lock(&w->level_lock);
    level_update(w);
    pthread_mutex_unlock(&w->level_lock);
}

void pbx__peer_leave(struct pbx_shm *m)
{
    int32_t pid = pbx__os_self()->pid;
    struct pbx_watcher *w = m->watcher;
    if (w) {
        if (w->pid == pid) {
            __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
            pbx__listen_wake_watchers(m);
            pthread_join(w->thread, NULL);
            pthread_mutex_destroy(&w->level_lock);
        }
        if (w->efd >= 0)
            close(w->efd);
        free(w);
        m->watcher = NULL;
    }
    if (m->peer < 0 || m->peer_pid != pid)
        return;
    struct pbx_peer_entry *p = &m->h->peers[m->peer];
    uint64_t me = pbx__ident_process();
    if (PBX_LOAD(&p->ident) != me)
        return;
    clear_listening(m, p);
    entry_free(p, me);
    m->peer = -1;
}

ssize_t pbx__shm_peers(void *state, struct pbx_peer *out, size_t cap)
{
    struct pbx_shm *m = state;
    /* A looking handle (PBX_RDONLY) may not free dead entries: it passes over them. */
    if (!m->rdonly)
        pbx__peers_prune(m);
    _Static_assert(PBX_PEERS <= PBX_PEERLIST_MAX, "every entry fits the list");
    struct pbx_peerlist list;
    list.n = 0;
    for (unsigned i = 0; i < PBX_PEERS; i++) {
        const struct pbx_peer_entry *e = &m->h->peers[i];
        uint64_t ident = PBX_ACQUIRE(&e->ident);
        int32_t pid = PBX_IDENT_TID(ident);
        if (!ident || pid <= 0 || (m->rdonly && !pbx__ident_process_alive(ident)))
            continue;
        int32_t signo = PBX_LOAD(&e->signo);
        uint32_t roles =
            PBX_LOAD(&e->roles) & (PBX_PEER_OPENED | PBX_PEER_SENT | PBX_PEER_RECEIVED);
        roles |= (signo ? PBX_PEER_NOTIFY : 0) | (PBX_LOAD(&e->watch) ? PBX_PEER_WATCH : 0);
        pbx__peerlist_add(&list, ident, pid, roles, PBX_LOAD(&e->since_ns), signo);
    }
    return pbx__peerlist_out(&list, out, cap);
}
