/*
 * transport.h — the one interface every transport under comparison is driven through.
 *
 * The benchmark compares postbox with the kernel's queues and with a bare spin ring by running
 * the very same case code over each of them; only this table of functions differs. A channel
 * carries messages in one direction, from any number of producer processes to any number of
 * consumer processes. The orchestrator opens it before fork(); every child then calls attach()
 * (postbox opens the mailbox by name there, as an independent process would), uses send() and
 * recv(), and calls detach() before it exits; the orchestrator finally closes it, which also
 * destroys it. Each transport lives in its own file (tr_*.c).
 *
 * What a transport cannot do it says in its flags: only TR_TYPED transports select by type
 * (postbox and System V), only TR_MULTI ones accept several producers or consumers, and a
 * TR_SPINS transport busy-polls, which on one CPU only measures the scheduler's time slice.
 */
#ifndef BENCH_TRANSPORT_H
#define BENCH_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>

/* Bytes before every send and receive buffer that a transport may overwrite. System V wants
 * the type in the long just before the payload (struct msgbuf); with this headroom it takes
 * the caller's buffer as it is, instead of paying for a copy the other transports do not pay
 * for. Buffers come from bench_buf_alloc() (bench.h), which provides it. */
#define TR_HEADROOM 64

/* Capabilities (struct tr_ops.flags). */
#define TR_TYPED 0x1 /* recv() selects by type as msgrcv(2) does */
#define TR_MULTI 0x2 /* several producers and consumers may share a channel */
#define TR_SPINS 0x4 /* waits by busy polling: meaningless with both ends on one CPU */

/* Flags for send() and recv(). */
#define TR_NOWAIT 0x1 /* never block: -EAGAIN when full (send) or empty (recv) */

/* What a channel is opened for. */
struct tr_params {
    size_t msg_size;     /* the largest payload that will be sent */
    unsigned long depth; /* requested capacity, in messages of msg_size */
    unsigned producers;  /* processes that will send */
    unsigned consumers;  /* processes that will receive */
    const char *name;    /* a name unique in this run, for transports that need one */
};

struct tr_chan; /* a transport's own state; opaque to the cases */

struct tr_ops {
    const char *name;  /* short name used in the CSV and on the command line */
    const char *title; /* name in the human tables */
    unsigned flags;    /* TR_TYPED, TR_MULTI, TR_SPINS */
    /*
     * Create a channel (in the orchestrator, before fork). Returns 0, -ENOTSUP when the
     * transport cannot serve these parameters at all (the case then skips it and says why in
     * *why), or another negative errno value. On success *why may say how the depth was set
     * ("msg_qbytes = 16384"); the string stays valid until close().
     */
    int (*open)(const struct tr_params *p, struct tr_chan **out, const char **why);
    /* Make the inherited channel usable in a child (may be a no-op). Returns 0 or -errno. */
    int (*attach)(struct tr_chan *c);
    /* Undo attach() in the child. */
    void (*detach)(struct tr_chan *c);
    /*
     * Queue len bytes from buf as one message of the given type (>= 1). buf must have
     * TR_HEADROOM writable bytes before it. Returns 0, -EAGAIN (full, TR_NOWAIT) or -errno.
     */
    int (*send)(struct tr_chan *c, long type, void *buf, size_t len, int flags);
    /*
     * Take one message into buf (cap >= the channel's msg_size; TR_HEADROOM writable bytes
     * before it). type follows msgrcv(2) where TR_TYPED, and must be 0 elsewhere. Stores the
     * message's type in *type_out when not NULL (transports without types report 1). Returns
     * the payload length, -EAGAIN (empty, TR_NOWAIT) or -errno.
     */
    ssize_t (*recv)(struct tr_chan *c, long type, void *buf, size_t cap, int flags, long *type_out);
    /* Destroy the channel (in the orchestrator, once every child has exited). */
    void (*close)(struct tr_chan *c);
};

extern const struct tr_ops tr_postbox_ops;
extern const struct tr_ops tr_sysv_ops;
extern const struct tr_ops tr_posixmq_ops;
extern const struct tr_ops tr_pipe_ops;
extern const struct tr_ops tr_seqpacket_ops;
extern const struct tr_ops tr_ring_ops;

/* The number in a file such as /proc/sys/kernel/msgmax, or -1 if it cannot be read (common.c). */
long bench_read_long(const char *path);

#endif
