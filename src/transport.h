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
     * send and recv run in the caller's state and disable it themselves where they must. */
    int cancel_inline;
    int (*open)(const char *name, int flags, const struct pbx_options *opts, void **state);
    int (*open_private)(const struct pbx_options *opts, void **state);
    int (*close)(void *state);
    int (*remove)(void *state);
    int (*unlink)(const char *name);
    int (*send)(void *state, long type, const void *data, uint32_t len, int flags,
                uint64_t deadline_ns);
    ssize_t (*recv)(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                    uint64_t deadline_ns);
    int (*stat)(void *state, struct pbx_stat *st);
    /* pbx_claim(): like recv (flags without PBX_PEEK), and *claim receives the claim id. */
    ssize_t (*claim)(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                     uint64_t *claim, uint64_t deadline_ns);
    int (*ack)(void *state, uint64_t claim);
    int (*release)(void *state, uint64_t claim);
    int (*notify)(void *state, int signo, int value); /* signo checked; 0 unregisters */
    int (*fd)(void *state);
    ssize_t (*peers)(void *state, struct pbx_peer *out, size_t cap);
    /* The table of handles opened with PBX_RDONLY (LOOKING above); NULL: not supported,
     * pbx_open() returns -EOPNOTSUPP. */
    const struct pbx_transport *looking;
    /* Zero-copy loans (pbx_loan() and the rest). Optional as a group: a transport that leaves
     * lend NULL gets loans by copying, in the API layer (mailbox.c). The API layer checks the
     * arguments and the loan's kind (LOAN_* below) and sets loan->q; lend fills the rest. */
    int (*lend)(void *state, uint32_t len, int flags, uint64_t deadline_ns, struct pbx_loan *l);
    int (*commit)(void *state, struct pbx_loan *l, long type, int flags);
    int (*cancel)(void *state, struct pbx_loan *l);
    ssize_t (*recv_lend)(void *state, long type, int flags, uint64_t deadline_ns,
                         struct pbx_loan *l);
    int (*give_back)(void *state, struct pbx_loan *l); /* pbx_return() */
    ssize_t (*piece)(void *state, struct pbx_loan *l, size_t off, void **ptr);
    /* pbx_sendv()/pbx_recvv(), with every entry checked (types, data, len <= UINT32_MAX) and
     * n >= 1; the contract of postbox.h. NULL: the API layer loops over send and recv. */
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
