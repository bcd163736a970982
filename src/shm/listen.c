/*
 * listen.c — telling listeners that a mailbox went from empty to non-empty (pbx_notify) or
 * back (pbx_fd), at no cost to senders and receivers while nobody listens.
 *
 * LISTENERS. Two counts on the header's control line, notifiers and watchers, say how many
 * peer entries hold a pbx_notify() registration or run a pbx_fd() watcher. Every send and
 * every receive reads them (one load of a line that both sides read anyway, for the removed
 * flag and the run-time limit); while both are zero nothing else happens. They change only
 * with both locks held (send, then receive), so every publication (under the send lock) and
 * every take (under the receive lock) happens either before a change — and is included in the
 * count of visible messages the change makes — or after it, and then sees the new counts.
 *
 * While someone listens, listen.visible counts the messages a receive could take now: queued
 * in the inbox or in the index, not being read out, not claimed. A publication adds one, a
 * take (receive, claim, drop) subtracts one, a released claim adds one, each with an atomic
 * read-modify-write under its side's lock. "Empty" therefore means exactly this: no message is
 * visible. A send whose addition finds 0 is the edge empty -> non-empty, and that sender, after
 * releasing its lock, signals the registered processes (pbx_notify) and wakes the watchers;
 * a take whose subtraction leaves 0 wakes the watchers. With concurrent senders exactly one of
 * them sees 0. A large message counts from its publication, not from the moment its sender
 * starts copying it; a message that a receiver has taken but is still copying out is no
 * longer visible.
 *
 * The count is rebuilt from the slots (every QUEUED slot) whenever it starts to matter (the
 * first registration) and by every search for orphans, which holds both locks; a crash that
 * cuts a step short may leave it off by one until then. A damaged count only makes a
 * descriptor's level wrong or a signal early or late; it is never used as an index.
 *
 * Watchers (pbx_fd, peer.c) sleep on listen.edge_seq, which every edge bumps while watchers
 * exist: a watcher reads edge_seq, then visible, sets its eventfd's level, and sleeps while
 * edge_seq is unchanged. The bump comes after the change of visible, so a change the watcher
 * missed always moves edge_seq under it and its sleep returns at once: no lost wake-up.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>

#include "../os/os.h"
#include "shm.h"

int pbx__listen_published(struct pbx_shm *m)
{
    return __atomic_fetch_add(&m->h->listen.visible, 1, __ATOMIC_SEQ_CST) == 0;
}

void pbx__listen_wake_watchers(struct pbx_shm *m)
{
    __atomic_add_fetch(&m->h->listen.edge_seq, 1, __ATOMIC_SEQ_CST);
    pbx__os_futex_wake(&m->h->listen.edge_seq, INT_MAX);
}

void pbx__listen_taken(struct pbx_shm *m)
{
    uint64_t v = PBX_LOAD(&m->h->listen.visible);
    /* Never below zero, whatever a damaged count says. */
    while (v && !__atomic_compare_exchange_n(&m->h->listen.visible, &v, v - 1, 0, __ATOMIC_SEQ_CST,
                                             __ATOMIC_RELAXED))
        ;
    if (v == 1 && PBX_LOAD(&m->h->watchers))
        pbx__listen_wake_watchers(m);
}

void pbx__listen_recount(struct pbx_shm *m)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < m->geo.nslots; i++)
        n += PBX_LOAD(&m->slots[i].state) == PBX_SLOT_QUEUED;
    __atomic_store_n(&m->h->listen.visible, n, __ATOMIC_SEQ_CST);
}

static int signo_valid(int32_t signo)
{
    return signo > 0 && signo <= SIGRTMAX && signo != SIGKILL && signo != SIGSTOP;
}

void pbx__listen_fire(struct pbx_shm *m)
{
    struct pbx_header *h = m->h;
    if (PBX_LOAD(&h->watchers))
        pbx__listen_wake_watchers(m);
    if (!PBX_LOAD(&h->notifiers))
        return;
    int dead = 0;
    for (unsigned i = 0; i < PBX_PEERS; i++) {
        struct pbx_peer_entry *p = &h->peers[i];
        uint64_t ident = PBX_ACQUIRE(&p->ident);
        int32_t signo = PBX_LOAD(&p->signo), value = PBX_LOAD(&p->value);
        if (!ident || !signo)
            continue;
        /* A registration whose check word does not match was damaged, or is being written
         * right now: nobody is signalled on its say-so. */
        if (!signo_valid(signo) || PBX_LOAD(&p->check) != pbx__peer_check(ident, signo, value))
            continue;
        if (pbx__os_signal_ident(ident, signo, value) == -ESRCH)
            dead = 1;
    }
    if (dead)
        pbx__peers_prune(m);
}
