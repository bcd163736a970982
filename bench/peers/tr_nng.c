/*
 * tr_nng.c — nng (nanomsg-next-generation) over ipc://, a PUSH socket to a PULL socket.
 *
 * Like ZeroMQ, nng runs threads that would not survive fork(): open() only chooses the
 * endpoint, a Unix socket under /tmp; the receiver listens with a PULL socket, the sender
 * dials with a PUSH socket (a non-blocking dial, so that it retries until the listener
 * exists). The depth is NNG_OPT_SENDBUF and NNG_OPT_RECVBUF, in messages, on each end. nng has
 * no linger: a closing socket drops what it still queues, so the case keeps the sender open
 * until the receiver has taken everything. Messages are copied in and out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "peers.h"

struct tr_chan {
    char path[108];
    char url[128];
    int buf;
    nng_socket sock;
    int open;
    char how[64];
};

/* nng's own error numbers are not errno values: keep the few that matter. */
static int nerr(int rv)
{
    switch (rv) {
    case NNG_ENOMEM:
        return -ENOMEM;
    case NNG_EINVAL:
        return -EINVAL;
    case NNG_ECLOSED:
        return -EPIPE;
    case NNG_EMSGSIZE:
        return -EMSGSIZE;
    default:
        return -EIO;
    }
}

static int nn_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    snprintf(c->path, sizeof(c->path), "/tmp/pbx-bench.%d.%s.nng", (int) getpid(), p->name);
    snprintf(c->url, sizeof(c->url), "ipc://%s", c->path);
    c->buf = p->depth > 8192 ? 8192 : (int) p->depth; /* nng's largest buffer */
    snprintf(c->how, sizeof(c->how), "NNG_OPT_SENDBUF = NNG_OPT_RECVBUF = %d", c->buf);
    *why = c->how;
    *out = c;
    return 0;
}

static int nn_attach(struct tr_chan *c, int sender)
{
    int rv = sender ? nng_push0_open(&c->sock) : nng_pull0_open(&c->sock);
    if (rv != 0)
        return nerr(rv);
    c->open = 1;
    /* the receiving end never sends and the sending end never receives: size only the
     * buffer each one has */
    rv = nng_socket_set_int(c->sock, sender ? NNG_OPT_SENDBUF : NNG_OPT_RECVBUF, c->buf);
    if (rv == 0)
        rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, 0); /* no size limit */
    if (rv == 0 && sender) /* the dial may come before the listen: retry soon (100 ms) */
        rv = nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 1);
    if (rv == 0)
        rv = sender ? nng_dial(c->sock, c->url, NULL, NNG_FLAG_NONBLOCK)
                    : nng_listen(c->sock, c->url, NULL, 0);
    if (rv != 0) {
        nng_close(c->sock);
        c->open = 0;
        return nerr(rv);
    }
    return 0;
}

static void nn_detach(struct tr_chan *c)
{
    if (c->open)
        nng_close(c->sock);
    c->open = 0;
}

static int nn_send(struct tr_chan *c, void *buf, size_t len)
{
    int rv = nng_send(c->sock, buf, len, 0);
    return rv ? nerr(rv) : 0;
}

static ssize_t nn_recv(struct tr_chan *c, void *buf, size_t cap)
{
    size_t n = cap;
    int rv = nng_recv(c->sock, buf, &n, 0);
    if (rv)
        return nerr(rv);
    return n > cap ? -EMSGSIZE : (ssize_t) n;
}

static void nn_close(struct tr_chan *c)
{
    if (!c)
        return;
    unlink(c->path);
    free(c);
}

const struct peer_ops peer_nng_ops = {
    .name = "nng",
    .title = "nng ipc:// PUSH/PULL",
    .flags = 0,
    .open = nn_open,
    .attach = nn_attach,
    .detach = nn_detach,
    .send = nn_send,
    .recv = nn_recv,
    .close = nn_close,
};
