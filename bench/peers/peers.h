/*
 * peers.h — the libraries users would pick instead of postbox, driven side by side with it in
 * the "peers" case of pbx_bench (bench/peers/case_peers.c; docs/performance.md, "Peers").
 *
 * A peer differs from a transport of transport.h in one way: its two ends are not alike.
 * ZeroMQ and nng bind one end and connect the other, iceoryx has publishers and subscribers,
 * so attach() is told which end this process is. Everything else follows transport.h: a
 * channel carries messages one way, is opened in the orchestrator before fork(), attached in
 * each child, detached before the child leaves and closed by the orchestrator. Each peer is
 * built only when CMake finds its library (PBX_HAVE_ZMQ, PBX_HAVE_NNG, PBX_HAVE_BOOST_IPC,
 * PBX_HAVE_ICEORYX); otherwise its entry has no ops and the case says which Debian package
 * brings it.
 */
#ifndef BENCH_PEERS_H
#define BENCH_PEERS_H

#include <stddef.h>
#include <sys/types.h>

#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flags (struct peer_ops.flags). */
#define PEER_HEADER_ONLY                                                                           \
    0x1                       /* zero copy, payload untouched: only the first 16 bytes are         \
                                 written and read, so the case stamps and checks only those */
#define PEER_EXIT        0x2  /* children must leave with exit(), not _exit() (iceoryx) */
#define PEER_RTT_ONLY    0x4  /* measured in the round trip only */
#define PEER_SPINS       0x8  /* the receiver busy-polls */
#define PEER_STREAM_ONLY 0x10 /* measured in the stream only */

struct peer_ops {
    const char *name;  /* short name, as in results.csv (at most 15 characters) */
    const char *title; /* name in the table */
    unsigned flags;
    /* As tr_ops.open, in the orchestrator; *why may explain a -ENOTSUP or how the depth was
     * set. */
    int (*open)(const struct tr_params *p, struct tr_chan **out, const char **why);
    /* In the child: become the sending end (sender != 0) or the receiving end. A sending end
     * returns only once a receiver can get what it sends (iceoryx: the subscriber is
     * connected). Returns 0 or -errno. */
    int (*attach)(struct tr_chan *c, int sender);
    void (*detach)(struct tr_chan *c);
    /* Blocking send and receive, as in transport.h without types (recv returns the length). */
    int (*send)(struct tr_chan *c, void *buf, size_t len);
    ssize_t (*recv)(struct tr_chan *c, void *buf, size_t cap);
    void (*close)(struct tr_chan *c);
    /* NULL, or: send what the sending end has gathered (batches); called by the case before
     * each barrier and after the last message. Returns 0 or -errno. */
    int (*flush)(struct tr_chan *c);
};

/* A peer as the case lists it: its ops when it was built, else NULL and the package. */
struct peer_entry {
    const struct peer_ops *ops;
    const char *name;    /* the row's name even when not built */
    const char *package; /* Debian package(s) that bring it; NULL for postbox and System V */
    const char *offers;  /* one line: typed receive, persistence, crash recovery, full queue */
};

extern const struct peer_ops peer_postbox_ops; /* postbox and System V through transport.h */
extern const struct peer_ops peer_sysv_ops;
extern const struct peer_ops peer_zmq_ops;
extern const struct peer_ops peer_nng_ops;
extern const struct peer_ops peer_boost_ops;
extern const struct peer_ops peer_pbx_loan_ops;    /* postbox loans, payload untouched */
extern const struct peer_ops peer_pbx_loan_rw_ops; /* loans, written and read in place */
extern const struct peer_ops peer_pbx_batch_ops;   /* pbx_sendv/pbx_recvv, 32 per call */
extern const struct peer_ops peer_iox_ops;         /* zero copy, payload untouched */
extern const struct peer_ops peer_iox_inplace_ops; /* payload written and read in the chunk */
extern const struct peer_ops peer_iox_poll_ops;    /* untouched, polling subscriber */

/* iceoryx's daemon (tr_iceoryx.c): start iox-roudi for this run, in a private mount
 * namespace when the kernel allows one, and stop it (also at exit). start returns 0, or -1
 * with *why saying why iceoryx cannot run. */
int peer_iox_start(const char *outdir, const char **why);
void peer_iox_stop(void);

#ifdef __cplusplus
}
#endif

#endif
