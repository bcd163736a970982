/*
 * transport.h — what a kind of mailbox must provide.
 *
 * The API layer (mailbox.c) checks arguments, turns timeouts into deadlines and hands each
 * call to the transport the mailbox's name chose; it never looks inside a transport's state.
 * A transport is this table of functions, one per operation (the pattern of nng's
 * transports): shared memory (src/shm/) and the durable spool ("spool:PATH", src/spool/).
 *
 * Arguments reach a transport already checked: names are valid, flags known, types in range,
 * buffers non-NULL where a length says they are used. deadline_ns is an absolute
 * CLOCK_MONOTONIC time, or 0 for "no deadline".
 *
 * The entries after stat (claims, notification, the descriptor, peers) are optional: a
 * transport that leaves one NULL makes the call return -EOPNOTSUPP, and so does PBX_SYNC on a
 * transport whose sync is 0 (the API layer checks, so a transport that predates PBX_SYNC never
 * sees the flag and cannot mistake it for an ordinary send). The spool transport has
 * claim/ack/release (a claimed message stays in the spool's c/ directory under a claim file),
 * sync, peers, fd and notify (the contract in docs/signals.md is transport-neutral:
 * a claim id is an opaque non-zero number, ack/release of an id not held by the caller's
 * process is -ENOENT).
 *
 * CONTRACT. What holds for every entry below, unless its own comment says otherwise:
 *   - arguments: checked by the API layer (mailbox.c, loan.c), as each entry's comment says;
 *     state is one that this transport's open or open_private returned and close has not yet
 *     freed. Several threads may call entries on one state at once (a handle may be shared by
 *     threads), except close, which is the last call on it;
 *   - locks: none of postbox's is held on entry (the handle's copies_lock is let go before
 *     loan.c calls down) and none may be held on return: a transport takes and drops its own
 *     locks within the call;
 *   - errors: a negative errno, only those docs/api.md ("Errors") lists for the public call
 *     the entry serves, plus what the OS reports (-ENOMEM, -ENOSPC, -EMFILE ...). Every entry
 *     that works on an open mailbox may return -EIDRM (removed) and -EBADMSG (damaged);
 *   - blocking: only an entry with deadline_ns (and commit with PBX_SYNC) waits for another
 *     process's action (a message, room, a take): until the deadline (-ETIMEDOUT), a signal
 *     handler in the thread (-EINTR) or the mailbox's removal (-EIDRM). With PBX_NOWAIT it
 *     waits for no message or room (-EAGAIN, -ENOMSG); PBX_SYNC | PBX_NOWAIT still waits for
 *     the take. Any entry but piece may wait for a lock that another thread or process holds
 *     for one step (a dead holder's lock is taken over: docs/api.md, "Deadlines");
 *   - cancellation (CANCELLATION in os/cancel.h): the API layer calls each entry with
 *     cancellation disabled (pbx__cancel_off), and the transport enables it only around its
 *     waits (pbx__cancel_wait_begin). Exceptions: piece is called in the caller's state for
 *     every transport, and with cancel_inline = 1 so are send, recv, lend and recv_lend (they
 *     disable it themselves before they reach a cancellation point).
 *
 * LOOKING. pbx_open() with PBX_RDONLY passes the flag to the transport's open, which must then
 * map and read the mailbox without writing anything into it, and the handle is given the
 * transport's looking table instead of the transport itself: its stat, peers and close are the
 * transport's own (they see the read-only state and write nothing), every other entry is one
 * of the refusals below (-EBADF). The refusal is thus made by the table, at no cost to the
 * calls of read-write handles.
 */
#ifndef PBX_TRANSPORT_H
#define PBX_TRANSPORT_H

#include <stdint.h>
#include <sys/types.h>

#include "postbox.h"

struct pbx_transport {
    const char *name;
    int sync; /* 1: send honours PBX_SYNC (waits for the take); 0: -EOPNOTSUPP */
    /* Cancellation (CANCELLATION in os/cancel.h): the API layer disables it across every call
     * and the transport enables it only where it waits, except that with cancel_inline = 1
     * send, recv, lend and recv_lend run in the caller's state and disable it themselves where
     * they must (CONTRACT above). */
    int cancel_inline;
    /* open: name is this transport's (the API layer chose it by the name); flags are PBX_CREATE,
     * PBX_EXCL only with PBX_CREATE, PBX_RDONLY only without PBX_CREATE (LOOKING below); opts
     * is NULL or valid. Errors: -ENOENT, -EEXIST, -ENOTDIR, -EACCES, -EPERM, -EBADMSG, -EPROTO,
     * -EXDEV, -EINVAL (a name only the transport can judge), the spool's -EAGAIN (created and
     * removed under it eight times running), OS errors. On an error *state is not set and nothing
     * is left to close. Waits for nobody but a lock's holder. */
    int (*open)(const char *name, int flags, const struct pbx_options *opts, void **state);
    /* pbx_open_private(): opts NULL or valid. The API layer calls only the shared-memory
     * transport's (the spool's returns -EOPNOTSUPP). */
    int (*open_private)(const struct pbx_options *opts, void **state);
    /* pbx_close(), after the API layer has ended the handle's loans by copying (releasing
     * their claims): frees state whatever happens, and ends what the handle still holds (the
     * transport's own loans, its participant record). Both transports return 0. Never waits for
     * a message; the spool flushes a PBX_DURABLE_BATCH group. */
    int (*close)(void *state);
    /* pbx_remove(): marks the mailbox removed and wakes every waiter, who return -EIDRM;
     * -EIDRM when it already was. Does not free state. */
    int (*remove)(void *state);
    /* pbx_unlink(): name is this transport's. -ENOENT, -EACCES, -EPERM, -EXDEV, -EBADMSG (not a
     * mailbox), -EINVAL (a name only the transport can judge), OS errors. */
    int (*unlink)(const char *name);
    /* pbx_send(), pbx_timedsend(): type >= 1; data non-NULL when len > 0; len <= UINT32_MAX
     * (the transport checks max_msg_size: -EMSGSIZE); flags PBX_NOWAIT and PBX_SYNC, the latter
     * only when sync is 1. 0, or -EAGAIN (PBX_NOWAIT: full, or a stopped lock holder), -ENOBUFS
     * (dropped by PBX_DROP_NEWEST, or a PBX_SYNC message dropped by PBX_DROP_OLDEST),
     * -EUSERS (no free PBX_SYNC entry), -ETIMEDOUT, -EINTR, -EIDRM, -EBADMSG, -EDEADLK
     * (re-entered from a signal handler), the spool's -EIO and -ENOSPC. Waits for room (policy
     * PBX_BLOCK, no PBX_NOWAIT) and, with PBX_SYNC, for the take. */
    int (*send)(void *state, long type, const void *data, uint32_t len, int flags,
                uint64_t deadline_ns);
    /* pbx_recv(), pbx_timedrecv(): any type (the msgrcv rules); buf non-NULL when cap > 0, cap
     * clamped to UINT32_MAX; flags PBX_NOWAIT, PBX_EXCEPT (only with type > 0), PBX_NOERROR,
     * PBX_PEEK; type_out may be NULL. The length, or -ENOMSG (PBX_NOWAIT), -E2BIG (it stays
     * queued), -ETIMEDOUT, -EINTR, -EIDRM, -EBADMSG, -EDEADLK. Waits for a message that
     * matches unless PBX_NOWAIT. */
    ssize_t (*recv)(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                    uint64_t deadline_ns);
    /* pbx_stat(): st non-NULL. 0, -EIDRM, -EBADMSG. Never waits for a message; on a looking
     * handle it writes nothing. The API layer also calls it itself, cancellation disabled: after
     * peers (a removed mailbox makes pbx_peers() -EIDRM), and for max_msg_size (loans by
     * copying, batches sent one by one). */
    int (*stat)(void *state, struct pbx_stat *st);
    /* pbx_claim(), pbx_timedclaim(): like recv (flags without PBX_PEEK), claim non-NULL and *claim
     * already 0; *claim receives the claim id, an opaque non-zero number. Loans by copying call
     * it too (loan.c, deadline 0). */
    ssize_t (*claim)(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                     uint64_t *claim, uint64_t deadline_ns);
    /* pbx_ack(), pbx_release(): claim != 0. 0, -ENOENT (not a claim the caller's process
     * holds), -EIDRM. Never wait for a message. Loans by copying call them too (loan.c: ack at
     * pbx_return(), release when a loan by copying is dropped or pbx_close() ends it). */
    int (*ack)(void *state, uint64_t claim);
    int (*release)(void *state, uint64_t claim);
    /* pbx_notify(): signo is 0 (unregisters) or a signal that can be caught, up to SIGRTMAX;
     * value any. -EUSERS (participants' table full), -EIDRM. */
    int (*notify)(void *state, int signo, int value);
    /* pbx_fd(): the handle's descriptor (owned by the transport, closed by close), or -EUSERS,
     * -EIDRM, -EMFILE. */
    int (*fd)(void *state);
    /* pbx_peers(): out non-NULL when cap > 0. The number of live participants (which may
     * exceed cap; cap of them are stored), or an error. */
    ssize_t (*peers)(void *state, struct pbx_peer *out, size_t cap);
    /* The table of handles opened with PBX_RDONLY (LOOKING above); NULL: not supported,
     * pbx_open() returns -EOPNOTSUPP. */
    const struct pbx_transport *looking;
    /* Zero-copy loans (pbx_loan() and the rest). Optional as a group: a transport that leaves
     * lend NULL gets loans by copying, in the API layer (mailbox.c). The API layer checks the
     * arguments and the loan's kind (PBX_LOAN_* below), hands lend and recv_lend a cleared
     * struct, and sets loan->q (and a send loan's len) after them; they fill the rest. No loan
     * call is timed: deadline_ns is 0 today. */
    /* pbx_loan(): len <= UINT32_MAX (the transport checks max_msg_size: -EMSGSIZE), flags 0 or
     * PBX_NOWAIT. 0, or send's errors. Waits for room as send does. */
    int (*lend)(void *state, uint32_t len, int flags, uint64_t deadline_ns, struct pbx_loan *l);
    /* pbx_commit(): l is a send loan of this transport's (kind checked, l->id non-zero, not
     * necessarily still held: -ENOENT), type >= 1, flags 0 or PBX_SYNC (only when sync is 1).
     * After -ENOENT (not held) and -EUSERS (no PBX_SYNC entry: the loan is still held) the API
     * layer keeps the struct; after any other return the loan has ended and it is cleared. With
     * PBX_SYNC it waits for the take (a cancellation point). */
    int (*commit)(void *state, struct pbx_loan *l, long type, int flags);
    /* pbx_cancel(): a send loan, as for commit. 0, -ENOENT, -EIDRM. Never waits for a message. */
    int (*cancel)(void *state, struct pbx_loan *l);
    /* pbx_recv_loan(): flags 0, PBX_NOWAIT, PBX_EXCEPT (only with type > 0). The length, or
     * claim's errors. Waits for a message as recv does. */
    ssize_t (*recv_lend)(void *state, long type, int flags, uint64_t deadline_ns,
                         struct pbx_loan *l);
    /* pbx_return(): a receive loan, checked as commit's. 0, -ENOENT, -EIDRM. */
    int (*give_back)(void *state, struct pbx_loan *l);
    /* pbx_loan_piece(): ptr non-NULL, l->q and l->id non-zero, a loan of this transport's of
     * either kind; the transport checks that it is held (-EINVAL otherwise, and -EBADMSG for a
     * damaged chunk chain). The bytes from off to the end of the piece that holds it, 0 at or
     * past l->len. Called in the caller's cancellation state: takes no lock, never waits. */
    ssize_t (*piece)(void *state, struct pbx_loan *l, size_t off, void **ptr);
    /* pbx_sendv()/pbx_recvv(), with every entry checked (types, data, len <= UINT32_MAX) and
     * n >= 1; the contract of postbox.h. NULL: the API layer loops over send and recv. sendv's
     * flags are 0 or PBX_NOWAIT (never PBX_SYNC); recvv's as recv's without PBX_PEEK. Both
     * return the count of messages done, or the first one's error, and store each result in its
     * entry; once a message is in, sendv keeps cancellation off to the end (pbx__cancel_hold),
     * so that the count reaches the caller. */
    ssize_t (*sendv)(void *state, struct pbx_msgv *msgs, size_t n, int flags, uint64_t deadline_ns);
    ssize_t (*recvv)(void *state, long type, struct pbx_msgv *msgs, size_t n, int flags,
                     uint64_t deadline_ns);
};

/* A loan's kind, in loan->priv[PBX_LOAN_KIND]: which way, and whether it is the API layer's
 * copy (a buffer of its own) or the transport's. The other priv words are the owner's. */
#define PBX_LOAN_KIND 0
#define PBX_LOAN_SEND 1u
#define PBX_LOAN_RECV 2u
#define PBX_LOAN_COPY 4u

/* The entries of a looking table that refuse: each returns -EBADF (looking.c). */
int pbx__refuse_open(const char *name, int flags, const struct pbx_options *opts, void **state);
int pbx__refuse_open_private(const struct pbx_options *opts, void **state);
int pbx__refuse_remove(void *state);
int pbx__refuse_unlink(const char *name);
int pbx__refuse_send(void *state, long type, const void *data, uint32_t len, int flags,
                     uint64_t deadline_ns);
ssize_t pbx__refuse_recv(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                         uint64_t deadline_ns);
ssize_t pbx__refuse_claim(void *state, long type, void *buf, uint32_t cap, int flags,
                          long *type_out, uint64_t *claim, uint64_t deadline_ns);
int pbx__refuse_settle(void *state, uint64_t claim);
int pbx__refuse_notify(void *state, int signo, int value);
int pbx__refuse_fd(void *state);
/* A loan is refused when it is asked for, not at its commit (so never by copying). */
int pbx__refuse_lend(void *state, uint32_t len, int flags, uint64_t deadline_ns,
                     struct pbx_loan *l);
ssize_t pbx__refuse_recv_lend(void *state, long type, int flags, uint64_t deadline_ns,
                              struct pbx_loan *l);
/* A looking table for a transport whose stat, peers and close are given. sync is 1 so that
 * PBX_SYNC on it is -EBADF like every other send, not -EOPNOTSUPP. */
#define PBX_LOOKING_TABLE(tname, stat_fn, peers_fn, close_fn)                                      \
    {                                                                                              \
        .name = tname, .sync = 1, .cancel_inline = 1, .open = pbx__refuse_open,                    \
        .open_private = pbx__refuse_open_private, .close = close_fn, .remove = pbx__refuse_remove, \
        .unlink = pbx__refuse_unlink, .send = pbx__refuse_send, .recv = pbx__refuse_recv,          \
        .stat = stat_fn, .claim = pbx__refuse_claim, .ack = pbx__refuse_settle,                    \
        .release = pbx__refuse_settle, .notify = pbx__refuse_notify, .fd = pbx__refuse_fd,         \
        .peers = peers_fn, .looking = NULL, .lend = pbx__refuse_lend,                              \
        .recv_lend = pbx__refuse_recv_lend,                                                        \
    }

extern const struct pbx_transport pbx__shm_transport;
extern const struct pbx_transport pbx__shm_looking;     /* PBX_RDONLY handles (LOOKING) */
extern const struct pbx_transport pbx__spool_transport; /* src/spool/spool.c */
extern const struct pbx_transport pbx__spool_looking;

#endif
