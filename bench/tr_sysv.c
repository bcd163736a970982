/*
 * tr_sysv.c — the System V message queue (msgget/msgsnd/msgrcv), the baseline postbox is
 * measured against.
 *
 * The queue is IPC_PRIVATE and inherited across fork(). Its capacity is msg_qbytes, set with
 * IPC_SET to depth * msg_size: above kernel.msgmnb this needs CAP_SYS_RESOURCE (or the raised
 * limit of the private IPC namespace main.c sets up); otherwise the queue keeps msgmnb and the
 * measured depth shows it. A message larger than kernel.msgmax cannot be sent at all, so such
 * sizes are skipped. The type travels in the long that msgsnd(2) wants before the payload,
 * written into the buffer's headroom (TR_HEADROOM) so that no extra copy is made.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>

#include "transport.h"

struct tr_chan {
    int id;
    char how[96];
};

static int sv_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    long msgmax = bench_read_long("/proc/sys/kernel/msgmax");
    if (msgmax > 0 && (long) p->msg_size > msgmax) {
        *why = "message larger than kernel.msgmax";
        return -ENOTSUP;
    }
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (c->id < 0) {
        int e = errno;
        free(c);
        return -e;
    }
    struct msqid_ds ds;
    if (msgctl(c->id, IPC_STAT, &ds) < 0) {
        int e = errno;
        msgctl(c->id, IPC_RMID, NULL);
        free(c);
        return -e;
    }
    unsigned long want = p->depth * p->msg_size;
    unsigned long had = ds.msg_qbytes;
    ds.msg_qbytes = want;
    if (msgctl(c->id, IPC_SET, &ds) == 0)
        snprintf(c->how, sizeof(c->how), "msg_qbytes = %lu", want);
    else
        snprintf(c->how, sizeof(c->how), "msg_qbytes = %lu (raising it to %lu: %s)", had, want,
                 strerror(errno));
    *why = c->how;
    *out = c;
    return 0;
}

static int sv_attach(struct tr_chan *c)
{
    (void) c;
    return 0;
}

static void sv_detach(struct tr_chan *c)
{
    (void) c;
}

static int sv_send(struct tr_chan *c, long type, void *buf, size_t len, int flags)
{
    long *mtype = (long *) ((char *) buf - sizeof(long));
    *mtype = type;
    for (;;) {
        if (msgsnd(c->id, mtype, len, (flags & TR_NOWAIT) ? IPC_NOWAIT : 0) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t sv_recv(struct tr_chan *c, long type, void *buf, size_t cap, int flags,
                       long *type_out)
{
    long *mtype = (long *) ((char *) buf - sizeof(long));
    for (;;) {
        ssize_t n = msgrcv(c->id, mtype, cap, type, (flags & TR_NOWAIT) ? IPC_NOWAIT : 0);
        if (n >= 0) {
            if (type_out)
                *type_out = *mtype;
            return n;
        }
        if (errno == ENOMSG)
            return -EAGAIN;
        if (errno != EINTR)
            return -errno;
    }
}

static void sv_close(struct tr_chan *c)
{
    if (!c)
        return;
    msgctl(c->id, IPC_RMID, NULL);
    free(c);
}

const struct tr_ops tr_sysv_ops = {
    .name = "sysv",
    .title = "System V msgq",
    .flags = TR_TYPED | TR_MULTI,
    .open = sv_open,
    .attach = sv_attach,
    .detach = sv_detach,
    .send = sv_send,
    .recv = sv_recv,
    .close = sv_close,
};
