/*
 * tr_zmq.c — ZeroMQ (libzmq) over ipc://, a PUSH socket to a PULL socket.
 *
 * A ZeroMQ context does not survive fork(), so open() only chooses the endpoint, a Unix
 * socket under /tmp; each child makes its own context: the receiver binds a PULL socket, the
 * sender connects a PUSH socket (ZeroMQ retries until the bind exists, and queues meanwhile).
 * The depth is the high-water mark, set to the requested depth on both ends: ZeroMQ queues up
 * to that many messages in the sender and as many in the receiver, plus what the kernel's
 * socket buffer holds. A PUSH socket blocks when full; messages are copied in and out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zmq.h>

#include "peers.h"

struct tr_chan {
    char path[108];
    char url[128];
    int hwm;
    void *ctx, *sock;
    char how[64];
};

static int zq_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    snprintf(c->path, sizeof(c->path), "/tmp/pbx-bench.%d.%s.zmq", (int) getpid(), p->name);
    snprintf(c->url, sizeof(c->url), "ipc://%s", c->path);
    c->hwm = p->depth > 1000000 ? 1000000 : (int) p->depth;
    snprintf(c->how, sizeof(c->how), "ZMQ_SNDHWM = ZMQ_RCVHWM = %d", c->hwm);
    *why = c->how;
    *out = c;
    return 0;
}

static int zq_attach(struct tr_chan *c, int sender)
{
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        return -errno;
    c->sock = zmq_socket(c->ctx, sender ? ZMQ_PUSH : ZMQ_PULL);
    if (!c->sock)
        goto fail;
    int linger = -1;  /* the sender's close waits until everything is delivered */
    int retry_ms = 1; /* the sender may connect before the bind: retry soon (default 100 ms) */
    if (zmq_setsockopt(c->sock, sender ? ZMQ_SNDHWM : ZMQ_RCVHWM, &c->hwm, sizeof(int)) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(int)) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &retry_ms, sizeof(int)) != 0)
        goto fail;
    if ((sender ? zmq_connect(c->sock, c->url) : zmq_bind(c->sock, c->url)) != 0)
        goto fail;
    return 0;
fail:;
    int e = errno;
    if (c->sock)
        zmq_close(c->sock);
    zmq_ctx_term(c->ctx);
    c->sock = c->ctx = NULL;
    return -e;
}

static void zq_detach(struct tr_chan *c)
{
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    c->sock = c->ctx = NULL;
}

static int zq_send(struct tr_chan *c, void *buf, size_t len)
{
    while (zmq_send(c->sock, buf, len, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static ssize_t zq_recv(struct tr_chan *c, void *buf, size_t cap)
{
    for (;;) {
        int n = zmq_recv(c->sock, buf, cap, 0);
        if (n >= 0)
            return (size_t) n > cap ? -EMSGSIZE : n;
        if (errno != EINTR)
            return -errno;
    }
}

static void zq_close(struct tr_chan *c)
{
    if (!c)
        return;
    unlink(c->path);
    free(c);
}

const struct peer_ops peer_zmq_ops = {
    .name = "zmq",
    .title = "ZeroMQ ipc:// PUSH/PULL",
    .flags = 0,
    .open = zq_open,
    .attach = zq_attach,
    .detach = zq_detach,
    .send = zq_send,
    .recv = zq_recv,
    .close = zq_close,
};
