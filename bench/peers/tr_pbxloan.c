/*
 * tr_pbxloan.c — postbox's zero-copy loans and batches as rows of the peers case, so that
 * they are measured in the same run, at the same sizes and in the same loops as iceoryx's
 * zero-copy rows (issue 17's targets: loans ÷ iceoryx, loans ÷ copying send).
 *
 * The channel is a private mailbox sized as tr_postbox.c sizes it (max_msgs = depth,
 * max_bytes = depth × size), created by the orchestrator and opened by name in each child.
 *   postbox-loan     pbx_loan + pbx_commit, pbx_recv_loan + pbx_return; the payload left
 *                    untouched: only its first 16 bytes (the bench's stamp) are written and
 *                    read, through pbx_loan_piece(), as the iox row does with its chunk.
 *   postbox-loan-rw  the same, but every byte is written into the loan and read back out of
 *                    it through pbx_loan_piece(), as iox-inplace does with its chunk.
 *   postbox-b32      pbx_sendv/pbx_recvv, 32 messages per call, streaming only: the sending
 *                    end gathers 32 stamped messages and sends them in one call (the case
 *                    flushes a partial batch before each barrier and at the end); the
 *                    receiving end takes up to 32 per call and hands them out one by one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"
#include "postbox.h"

#define LOAN_HEADER 16 /* bytes of an untouched loan that are written and read */
#define BATCH       32

struct tr_chan {
    pbx_t *creator; /* the orchestrator's handle, used to remove the mailbox */
    pbx_t *q;       /* this process's handle, from attach() */
    size_t size;
    char name[64];
    char how[96];
    /* postbox-b32 */
    unsigned char *bufs; /* BATCH buffers of size bytes */
    struct pbx_msgv v[BATCH];
    size_t have, next; /* sender: gathered; receiver: taken and next to hand out */
};

static int pl_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->size = p->msg_size;
    snprintf(c->name, sizeof(c->name), "bench-%s", p->name);
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = (uint32_t) p->depth;
    o.max_msg_size = (uint32_t) p->msg_size;
    o.max_bytes = (uint64_t) p->depth * p->msg_size;
    int rc = pbx_open(c->name, PBX_CREATE | PBX_EXCL, &o, &c->creator);
    if (rc < 0) {
        free(c);
        return rc;
    }
    snprintf(c->how, sizeof(c->how), "max_msgs = %lu, max_bytes = %llu", p->depth,
             (unsigned long long) o.max_bytes);
    *why = c->how;
    *out = c;
    return 0;
}

static int pl_attach(struct tr_chan *c, int sender)
{
    (void) sender;
    return pbx_open(c->name, 0, NULL, &c->q);
}

static void pl_detach(struct tr_chan *c)
{
    pbx_close(c->q);
    c->q = NULL;
    if (c->bufs)
        bench_buf_free(c->bufs);
    c->bufs = NULL;
}

static void pl_close(struct tr_chan *c)
{
    if (!c)
        return;
    pbx_remove(c->creator);
    pbx_close(c->creator);
    free(c);
}

/* Copy n bytes between buf and the loan's pieces, from offset 0; to_loan says which way. */
static int loan_copy(struct pbx_loan *l, void *buf, size_t n, int to_loan)
{
    size_t off = 0;
    while (off < n) {
        void *p;
        ssize_t k = pbx_loan_piece(l, off, &p);
        if (k <= 0)
            return k < 0 ? (int) k : -EBADMSG;
        size_t m = (size_t) k < n - off ? (size_t) k : n - off;
        if (to_loan)
            memcpy(p, (unsigned char *) buf + off, m);
        else
            memcpy((unsigned char *) buf + off, p, m);
        off += m;
    }
    return 0;
}

static int loan_send(struct tr_chan *c, void *buf, size_t len, size_t touched)
{
    struct pbx_loan l;
    int rc = pbx_loan(c->q, len, 0, &l);
    if (rc < 0)
        return rc;
    rc = loan_copy(&l, buf, touched < len ? touched : len, 1);
    if (rc < 0) {
        pbx_cancel(&l);
        return rc;
    }
    return pbx_commit(&l, 1, 0);
}

static ssize_t loan_recv(struct tr_chan *c, void *buf, size_t cap, size_t touched)
{
    struct pbx_loan l;
    ssize_t n = pbx_recv_loan(c->q, 0, 0, &l);
    if (n < 0)
        return n;
    size_t len = (size_t) n < cap ? (size_t) n : cap;
    int rc = loan_copy(&l, buf, touched < len ? touched : len, 0);
    int rr = pbx_return(&l);
    return rc < 0 ? rc : rr < 0 ? rr : n;
}

static int pl_send(struct tr_chan *c, void *buf, size_t len)
{
    return loan_send(c, buf, len, LOAN_HEADER);
}
static ssize_t pl_recv(struct tr_chan *c, void *buf, size_t cap)
{
    return loan_recv(c, buf, cap, LOAN_HEADER);
}
static int pl_send_rw(struct tr_chan *c, void *buf, size_t len)
{
    return loan_send(c, buf, len, len);
}
static ssize_t pl_recv_rw(struct tr_chan *c, void *buf, size_t cap)
{
    return loan_recv(c, buf, cap, cap);
}

/* ---- postbox-b32 ------------------------------------------------------------------------- */

static int pb32_attach(struct tr_chan *c, int sender)
{
    (void) sender;
    c->bufs = bench_buf_alloc(BATCH * c->size);
    if (!c->bufs)
        return -ENOMEM;
    c->have = c->next = 0;
    for (size_t i = 0; i < BATCH; i++) {
        c->v[i].type = 1;
        c->v[i].data = c->bufs + i * c->size;
        c->v[i].len = c->size;
    }
    int rc = pbx_open(c->name, 0, NULL, &c->q);
    if (rc < 0) {
        bench_buf_free(c->bufs);
        c->bufs = NULL;
    }
    return rc;
}

static int pb32_flush(struct tr_chan *c)
{
    size_t done = 0;
    while (done < c->have) {
        ssize_t k = pbx_sendv(c->q, c->v + done, c->have - done, 0);
        if (k <= 0)
            return k < 0 ? (int) k : -EIO;
        done += (size_t) k;
    }
    c->have = 0;
    return 0;
}

static int pb32_send(struct tr_chan *c, void *buf, size_t len)
{
    c->v[c->have].len = len;
    memcpy(c->v[c->have].data, buf, len);
    if (++c->have == BATCH)
        return pb32_flush(c);
    return 0;
}

static ssize_t pb32_recv(struct tr_chan *c, void *buf, size_t cap)
{
    if (c->next == c->have) {
        for (size_t i = 0; i < BATCH; i++)
            c->v[i].len = c->size;
        ssize_t k = pbx_recvv(c->q, 0, c->v, BATCH, 0);
        if (k <= 0)
            return k < 0 ? k : -EIO;
        c->have = (size_t) k;
        c->next = 0;
    }
    struct pbx_msgv *m = &c->v[c->next++];
    if (m->result < 0)
        return m->result;
    size_t n = (size_t) m->result < cap ? (size_t) m->result : cap;
    memcpy(buf, m->data, n);
    return m->result;
}

const struct peer_ops peer_pbx_loan_ops = {
    .name = "postbox-loan",
    .title = "postbox loans, untouched",
    .flags = PEER_HEADER_ONLY,
    .open = pl_open,
    .attach = pl_attach,
    .detach = pl_detach,
    .send = pl_send,
    .recv = pl_recv,
    .close = pl_close,
};

const struct peer_ops peer_pbx_loan_rw_ops = {
    .name = "postbox-loan-rw",
    .title = "postbox loans, written and read in place",
    .flags = 0,
    .open = pl_open,
    .attach = pl_attach,
    .detach = pl_detach,
    .send = pl_send_rw,
    .recv = pl_recv_rw,
    .close = pl_close,
};

const struct peer_ops peer_pbx_batch_ops = {
    .name = "postbox-b32",
    .title = "postbox batches of 32 (pbx_sendv/pbx_recvv)",
    .flags = PEER_STREAM_ONLY,
    .open = pl_open,
    .attach = pb32_attach,
    .detach = pl_detach,
    .send = pb32_send,
    .recv = pb32_recv,
    .close = pl_close,
    .flush = pb32_flush,
};
