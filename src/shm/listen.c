/*
 * listen.c — telling listeners that a mailbox went from empty to non-empty (pbx_notify) or
 * back (pbx_fd), at no cost to senders and receivers while nobody listens, and little while
 * someone does.
 *
 * LISTENERS. Two counts on the header's control line, notifiers and watchers, say how many
 * peer entries hold a pbx_notify() registration or run a pbx_fd() watcher. Every send and
 * every receive reads them (one load of a line that both sides read anyway, for the removed
 * flag and the run-time limit); while both are zero nothing else happens. They rise only with
 * both locks held (send, then receive), and a rise from zero sets the empty mark from the
 * slots, so every publication and every take happens either before it — and is accounted for
 * by the mark it sets — or after it, and then sees the counts and keeps the mark. They may fall
 * without the locks: while they fall the mark is still kept, and at zero nobody needs it.
 *
 * A message is VISIBLE when a receive could take it now: published (in the inbox or the index),
 * not being copied out by a receiver, not claimed. The mailbox is EMPTY when none is visible.
 * While someone listens, listen.empty is the EMPTY MARK: 0, or 1 + the inbox position at which
 * the mailbox was last seen empty (every message published before it had been taken). Only
 * receivers see the mailbox become empty, and they do, under the receive lock, right after a
 * take (a receive, a claim, a drop): the index has no type left (heap_len == 0) and the inbox
 * entry at inbox_head is not published. Emptiness ends with a publication, a released claim, or
 * messages put back by a repair. The publication at position p ends the emptiness the mark
 * p + 1 records, and only that one; the two sides meet on the mark as in Dekker's algorithm (the
 * store-buffer pattern):
 *
 *   receiver, after a take:             sender, after publishing at position p:
 *     sees the mailbox empty at head      (inbox entry stored; lock released)
 *     mark = head + 1                     full fence
 *     full fence                          if CAS(mark, p + 1 -> 0) succeeds:
 *     looks at the inbox entry again          announce the arrival (pbx__listen_fire)
 *     if published now and CAS(mark, head + 1 -> 0) succeeds:
 *       announce the arrival (after its lock)
 *
 * With a full fence on each side, at least one of them sees the other's store: either the
 * sender sees the mark, or the receiver sees the publication; whoever wins the compare-and-swap
 * announces. So the arrival that ends each empty period is announced exactly once, however many
 * senders and receivers run at once: with several senders, only the first position after the
 * empty period matches the mark. A message taken before its sender looked at the mark ends no
 * empty period that anyone could see: the receiver that took it marks the new empty period
 * with a new position, the sender's compare-and-swap fails, and nothing is announced — a
 * registrant would have found the mailbox empty anyway. A mailbox that does not become empty
 * costs the sender one load of a line nobody writes, and the receiver a look at its own
 * heap_len; one that becomes empty after every message costs a write of the mark per message.
 *
 * The mark is set from the slots (empty iff no slot is QUEUED) with both locks held when the
 * first registration arrives, and again by every search for orphans (which holds both locks, and
 * announces messages it put back into an empty mailbox). A crash between a take and its mark
 * leaves the mark stale until then: an edge may go unannounced for at most that long. A damaged
 * mark only makes a signal early, late or missing, and a descriptor's level wrong for as long;
 * it is never used as an index.
 *
 * Watchers (pbx_fd, peer.c) sleep on listen.edge_seq, which every announced edge and every
 * marking of emptiness bumps (and wakes) while watchers exist (and every announced arrival
 * while registrants exist, NOTIFY below): a watcher reads edge_seq, then
 * the mark, sets its eventfd's level, and sleeps while edge_seq is unchanged. The bump comes
 * after the change of the mark, so a change the watcher missed moves edge_seq under it and its
 * sleep returns at once: no lost wake-up.
 */
#include <errno.h>
#include <limits.h>

#include "../os/os.h"
#include "shm.h"

#define PRUNE_INTERVAL_NS 1000000000ull

void pbx__listen_wake_watchers(struct pbx_shm *m)
{
    struct pbx_listen *l = &m->h->listen;
    __atomic_add_fetch(&l->edge_seq, 1, __ATOMIC_SEQ_CST);
    if (pbx__os_futex_wake(&l->edge_seq, INT_MAX) != 0)
        return;
    /* Watchers are counted but nobody slept: they may all be busy, or dead (a process killed
     * holding a descriptor closes nothing). At most once a second, prune the dead, so that a
     * killed watcher does not make every later edge pay for a wake of nobody. */
    if (pbx__prune_due(m))
        pbx__peers_prune(m);
}

int pbx__prune_due(struct pbx_shm *m)
{
    struct pbx_listen *l = &m->h->listen;
    uint64_t now = pbx__os_mono_ns(), last = PBX_LOAD(&l->last_prune_ns);
    return now - last >= PRUNE_INTERVAL_NS &&
           __atomic_compare_exchange_n(&l->last_prune_ns, &last, now, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}

int pbx__listen_visible(const struct pbx_shm *m)
{
    return __atomic_load_n(&m->h->listen.empty, __ATOMIC_SEQ_CST) == 0;
}

/* Claim the announcement that ends the empty period marked mark: 1 for the one caller whose
 * compare-and-swap turned it off. */
static int claim_edge(struct pbx_shm *m, uint64_t mark)
{
    return mark && __atomic_compare_exchange_n(&m->h->listen.empty, &mark, 0, 0, __ATOMIC_SEQ_CST,
                                               __ATOMIC_SEQ_CST);
}

void pbx__listen_arrived(struct pbx_shm *m, uint64_t pos)
{
    /* LISTENERS: the fence between our publication and our look at the mark. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&m->h->listen.empty, __ATOMIC_SEQ_CST) == pos + 1 && claim_edge(m, pos + 1))
        pbx__listen_fire(m);
}

/* Under the receive lock: is a message published at inbox_head, not yet drained? */
static int inbox_has_next(const struct pbx_shm *m)
{
    uint64_t head = m->h->recv.inbox_head;
    return pbx__inbox_published(m, head, PBX_ACQUIRE(&m->inbox[head & m->geo.inbox_mask]));
}

int pbx__listen_is_empty(const struct pbx_shm *m)
{
    return m->h->recv.heap_len == 0 && !inbox_has_next(m);
}

int pbx__listen_taken(struct pbx_shm *m)
{
    struct pbx_header *h = m->h;
    if (!pbx__listen_is_empty(m))
        return 0;
    uint64_t mark = h->recv.inbox_head + 1;
    uint64_t old = __atomic_exchange_n(&h->listen.empty, mark, __ATOMIC_SEQ_CST);
    /* LISTENERS: the fence between our mark and our second look at the inbox (the exchange is
     * one on x86; elsewhere it is needed). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (inbox_has_next(m))
        return claim_edge(m, mark); /* a sender published meanwhile, perhaps before our mark */
    if (!old && PBX_LOAD(&h->watchers))
        pbx__listen_wake_watchers(m);
    return 0;
}

int pbx__listen_released(struct pbx_shm *m, int was_empty)
{
    return was_empty && claim_edge(m, __atomic_load_n(&m->h->listen.empty, __ATOMIC_SEQ_CST));
}

int pbx__listen_recount(struct pbx_shm *m)
{
    int any = 0;
    for (uint32_t i = 0; i < m->geo.nslots && !any; i++)
        any = PBX_LOAD(&m->slots[i].state) == PBX_SLOT_QUEUED;
    if (any)
        return claim_edge(m, __atomic_load_n(&m->h->listen.empty, __ATOMIC_SEQ_CST));
    /* Both locks are held: nothing is being published, and the inbox is drained up to head. */
    uint64_t old =
        __atomic_exchange_n(&m->h->listen.empty, m->h->recv.inbox_head + 1, __ATOMIC_SEQ_CST);
    if (!old && PBX_LOAD(&m->h->watchers))
        pbx__listen_wake_watchers(m);
    return 0;
}

/*
 * NOTIFY. Nothing in the region says whom to signal, or with what: a registration's signal
 * number and value live in the registrant's own memory (its handle's helper thread, peer.c),
 * and the only signal postbox ever raises is one a registrant queues to itself. A sender that
 * announces an arrival while notifiers > 0 counts it in listen.arrivals, then bumps and wakes
 * listen.edge_seq, the futex word the helpers sleep on (and the pbx_fd watchers: one helper
 * serves both). Each helper compares arrivals with the count it last saw and raises its own
 * signal once per step, at most PBX_NOTIFY_BURST at a time. A writer of the region can
 * therefore make a registrant signal itself with the signal it chose, spuriously, and no
 * more: the entry's signo is information for pbx_peers(), read by nobody who signals.
 *
 * ORDERING: the sender increments arrivals before it bumps edge_seq (both SEQ_CST); a helper
 * reads edge_seq, then arrivals, then sleeps while edge_seq is unchanged. Either the helper
 * sees the new count, or the bump changes the word it is about to sleep on and the sleep
 * returns at once: no arrival is left uncounted.
 *
 * While nobody is registered (notifiers == 0) nothing here runs; the sends and takes that do
 * not cross empty/non-empty never get here. A registrant killed without closing stays counted
 * until it is pruned: a wake that finds no helper asleep prunes the dead at most once a second
 * (pbx__listen_wake_watchers).
 */
void pbx__listen_fire(struct pbx_shm *m)
{
    struct pbx_header *h = m->h;
    uint32_t notifiers = PBX_LOAD(&h->notifiers);
    if (notifiers)
        __atomic_add_fetch(&h->listen.arrivals, 1, __ATOMIC_SEQ_CST);
    if (notifiers || PBX_LOAD(&h->watchers))
        pbx__listen_wake_watchers(m);
}
