/*
 * tr_seqpacket.c — a Unix-domain SOCK_SEQPACKET socket pair: message boundaries, in order.
 *
 * Producers send on one end, consumers receive on the other; each send is one message, so
 * several producers and consumers may share the pair. A Unix socket's capacity is its send
 * buffer, charged per message with the kernel's bookkeeping (the skb's "truesize"), not with
 * the payload alone. So open() first measures what one message of msg_size costs, on a probe
 * pair, and sets SO_SNDBUF to depth times that (SO_SNDBUFFORCE when privileged, so that
 * net.core.wmem_max does not cap it), corrected until a probe pair holds exactly depth
 * messages; the measured depth then shows what it came to.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

struct tr_chan {
    int tx, rx;
    char how[128];
};

/* The kernel doubles the value it is given (for its own overhead) and reports the doubled
 * value; ask for half of what is wanted. Returns the buffer size now in force, or -errno. */
static int set_sndbuf(int fd, long bytes, int *forced)
{
    int half = (int) (bytes / 2 + 1);
    *forced = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &half, sizeof(half)) < 0) {
        *forced = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &half, sizeof(half)) < 0)
            return -errno;
    }
    int v;
    socklen_t l = sizeof(v);
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &l) < 0)
        return -errno;
    return v;
}

/* How many messages of size bytes a fresh pair holds with SO_SNDBUF set to bytes; *got
 * receives the buffer size in force. */
static long holds(size_t size, long bytes, int *forced, int *got)
{
    int fd[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fd) < 0)
        return -errno;
    *got = set_sndbuf(fd[0], bytes, forced);
    long n = 0;
    char *msg = calloc(1, size);
    if (*got > 0 && msg) {
        while (n < (1l << 22) &&
               send(fd[0], msg, size, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t) size)
            n++;
    }
    free(msg);
    close(fd[0]);
    close(fd[1]);
    return *got > 0 ? n : *got;
}

/* The SO_SNDBUF that makes a pair hold depth messages of size bytes. Each message is charged
 * its buffer's "truesize", which depends on the size in steps, so the figure is found by
 * filling probe pairs: once for the cost of one message, then a few corrections. Found once
 * per size and depth (opening happens in the orchestrator, so the cache lasts the run). */
static long sndbuf_for(size_t size, unsigned long depth, long *per_out)
{
    static struct {
        size_t size;
        unsigned long depth;
        long bytes, per;
    } cache[32];
    static int ncache;
    for (int i = 0; i < ncache; i++)
        if (cache[i].size == size && cache[i].depth == depth) {
            *per_out = cache[i].per;
            return cache[i].bytes;
        }
    int forced, got;
    long n = holds(size, (long) size * 64 + (1 << 20), &forced, &got);
    if (n <= 0)
        return -ENOBUFS;
    long per = (got + n - 1) / n;
    /* A sender is blocked when the buffer in use is >= SO_SNDBUF, checked before the message
     * is charged: (depth - 1) messages' worth, plus a little, lets depth in. */
    long bytes = per * (long) (depth > 1 ? depth - 1 : 1) + 1;
    for (int i = 0; i < 4; i++) {
        long h = holds(size, bytes, &forced, &got);
        if (h < 0 || h == (long) depth)
            break;
        bytes += per * ((long) depth - h);
        if (bytes < 4096)
            bytes = 4096;
    }
    if (bytes > 0x7ffffffe)
        bytes = 0x7ffffffe;
    if (ncache < 32) {
        cache[ncache].size = size;
        cache[ncache].depth = depth;
        cache[ncache].bytes = bytes;
        cache[ncache].per = per;
        ncache++;
    }
    *per_out = per;
    return bytes;
}

static int sp_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    long per;
    long want = sndbuf_for(p->msg_size, p->depth, &per);
    if (want < 0) {
        *why = "could not measure the send buffer a message takes";
        return -ENOTSUP;
    }
    int fd[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fd) < 0)
        return -errno;
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd[0]);
        close(fd[1]);
        return -ENOMEM;
    }
    c->tx = fd[0];
    c->rx = fd[1];
    int forced, forced_rx;
    int got = set_sndbuf(c->tx, want, &forced);
    set_sndbuf(c->rx, want, &forced_rx);
    if (got < 0) {
        close(c->tx);
        close(c->rx);
        free(c);
        return got;
    }
    snprintf(c->how, sizeof(c->how), "SO_SNDBUF%s = %d (about %ld B per message)",
             forced ? "FORCE" : "", got, per);
    *why = c->how;
    *out = c;
    return 0;
}

static int sp_attach(struct tr_chan *c)
{
    (void) c;
    return 0;
}

static void sp_detach(struct tr_chan *c)
{
    (void) c;
}

static int sp_send(struct tr_chan *c, long type, void *buf, size_t len, int flags)
{
    (void) type;
    int f = MSG_NOSIGNAL | ((flags & TR_NOWAIT) ? MSG_DONTWAIT : 0);
    for (;;) {
        ssize_t n = send(c->tx, buf, len, f);
        if (n == (ssize_t) len)
            return 0;
        if (n >= 0)
            return -EIO; /* a seqpacket send is all or nothing */
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t sp_recv(struct tr_chan *c, long type, void *buf, size_t cap, int flags,
                       long *type_out)
{
    if (type != 0)
        return -EINVAL;
    int f = (flags & TR_NOWAIT) ? MSG_DONTWAIT : 0;
    for (;;) {
        ssize_t n = recv(c->rx, buf, cap, f);
        if (n > 0) {
            if (type_out)
                *type_out = 1;
            return n;
        }
        if (n == 0)
            return -EPIPE;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        if (errno != EINTR)
            return -errno;
    }
}

static void sp_close(struct tr_chan *c)
{
    if (!c)
        return;
    close(c->tx);
    close(c->rx);
    free(c);
}

const struct tr_ops tr_seqpacket_ops = {
    .name = "seqpacket",
    .title = "Unix seqpacket",
    .flags = TR_MULTI,
    .open = sp_open,
    .attach = sp_attach,
    .detach = sp_detach,
    .send = sp_send,
    .recv = sp_recv,
    .close = sp_close,
};
