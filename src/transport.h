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
    /* pbx_sendv()/pbx_recvv(), with every entry checked (types, data, len <= UINT32_MAX) and
     * n >= 1; the contract of postbox.h. NULL: the API layer loops over send and recv. */
    ssize_t (*sendv)(void *state, struct pbx_msgv *msgs, size_t n, int flags, uint64_t deadline_ns);
    ssize_t (*recvv)(void *state, long type, struct pbx_msgv *msgs, size_t n, int flags,
                     uint64_t deadline_ns);
};

extern const struct pbx_transport pbx__shm_transport;
extern const struct pbx_transport pbx__spool_transport; /* src/spool/spool.c */

#endif
