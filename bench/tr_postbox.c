/*
 * tr_postbox.c — postbox, the subject of the benchmark, behind the common transport table.
 *
 * The orchestrator creates a named mailbox (in $POSTBOX_DIR, which main.c points at a fresh
 * directory under /dev/shm) sized for exactly the requested depth: max_msgs = depth and
 * max_bytes = depth * msg_size. Every child then opens it by name, as an unrelated process
 * would, instead of using the inherited handle; closing in the orchestrator removes it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postbox.h"
#include "transport.h"

struct tr_chan {
    pbx_t *creator; /* the orchestrator's handle, used to remove the mailbox */
    pbx_t *q;       /* this process's handle, from attach() */
    char name[64];
    char how[96];
};

static int pb_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
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

static int pb_attach(struct tr_chan *c)
{
    return pbx_open(c->name, 0, NULL, &c->q);
}

static void pb_detach(struct tr_chan *c)
{
    pbx_close(c->q);
    c->q = NULL;
}

static int pb_send(struct tr_chan *c, long type, void *buf, size_t len, int flags)
{
    return pbx_send(c->q, type, buf, len, (flags & TR_NOWAIT) ? PBX_NOWAIT : 0);
}

static ssize_t pb_recv(struct tr_chan *c, long type, void *buf, size_t cap, int flags,
                       long *type_out)
{
    ssize_t n = pbx_recv(c->q, type, buf, cap, (flags & TR_NOWAIT) ? PBX_NOWAIT : 0, type_out);
    return n == -ENOMSG ? -EAGAIN : n;
}

static void pb_close(struct tr_chan *c)
{
    if (!c)
        return;
    pbx_remove(c->creator);
    pbx_close(c->creator);
    free(c);
}

const struct tr_ops tr_postbox_ops = {
    .name = "postbox",
    .title = "postbox",
    .flags = TR_TYPED | TR_MULTI,
    .open = pb_open,
    .attach = pb_attach,
    .detach = pb_detach,
    .send = pb_send,
    .recv = pb_recv,
    .close = pb_close,
};
