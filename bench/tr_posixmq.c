/*
 * tr_posixmq.c — the POSIX message queue (mq_open/mq_send/mq_receive).
 *
 * The queue is created with mq_maxmsg = depth and mq_msgsize = msg_size and unlinked at once:
 * on Linux an mqd_t is a file descriptor, so the children inherit it across fork() and nothing
 * is left behind whatever happens. Without privilege the kernel refuses a mq_maxmsg above
 * fs.mqueue.msg_max (10 by default); the queue then gets msg_max and the measured depth says
 * so. All messages have priority 0, so the queue is FIFO; it has no selection by type.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "transport.h"

struct tr_chan {
    mqd_t q;
    char how[96];
};

static int mq_open_sized(const char *name, long maxmsg, long msgsize)
{
    struct mq_attr a = {0};
    a.mq_maxmsg = maxmsg;
    a.mq_msgsize = msgsize;
    mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &a);
    if (q == (mqd_t) -1)
        return -errno;
    mq_unlink(name);
    return (int) q;
}

static int mq_tr_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    char name[96];
    snprintf(name, sizeof(name), "/pbx-bench.%d.%s", (int) getpid(), p->name);
    int q = mq_open_sized(name, (long) p->depth, (long) p->msg_size);
    const char *note = "";
    long maxmsg = (long) p->depth;
    if (q == -EINVAL) {
        long lim = bench_read_long("/proc/sys/fs/mqueue/msgsize_max");
        if (lim > 0 && (long) p->msg_size > lim) {
            *why = "message larger than fs.mqueue.msgsize_max";
            return -ENOTSUP;
        }
        lim = bench_read_long("/proc/sys/fs/mqueue/msg_max");
        if (lim > 0 && lim < maxmsg) {
            maxmsg = lim;
            note = " (fs.mqueue.msg_max)";
            q = mq_open_sized(name, maxmsg, (long) p->msg_size);
        }
    }
    if (q == -EMFILE) {
        /* RLIMIT_MSGQUEUE (bytes of queue per user) is too small for this depth, and could
         * not be raised (main.c tries): take the deepest queue that fits. */
        long lo = 0, hi = maxmsg - 1;
        while (lo < hi) {
            long mid = lo + (hi - lo + 1) / 2;
            int t = mq_open_sized(name, mid, (long) p->msg_size);
            if (t >= 0) {
                mq_close((mqd_t) t);
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if (lo == 0) {
            *why = "RLIMIT_MSGQUEUE too small for even one message";
            return -ENOTSUP;
        }
        maxmsg = lo;
        note = " (RLIMIT_MSGQUEUE)";
        q = mq_open_sized(name, maxmsg, (long) p->msg_size);
    }
    if (q < 0)
        return q;
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c) {
        mq_close((mqd_t) q);
        return -ENOMEM;
    }
    c->q = (mqd_t) q;
    snprintf(c->how, sizeof(c->how), "mq_maxmsg = %ld%s", maxmsg, note);
    *why = c->how;
    *out = c;
    return 0;
}

static int mq_tr_attach(struct tr_chan *c)
{
    (void) c;
    return 0;
}

static void mq_tr_detach(struct tr_chan *c)
{
    (void) c;
}

/* TR_NOWAIT without touching O_NONBLOCK, which the children share: a deadline in the past
 * makes the call fail at once (ETIMEDOUT) exactly when it would block. */
static const struct timespec past = {0, 0};

static int mq_tr_send(struct tr_chan *c, long type, void *buf, size_t len, int flags)
{
    (void) type;
    for (;;) {
        int r = (flags & TR_NOWAIT) ? mq_timedsend(c->q, buf, len, 0, &past)
                                    : mq_send(c->q, buf, len, 0);
        if (r == 0)
            return 0;
        if (errno == ETIMEDOUT)
            return -EAGAIN;
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t mq_tr_recv(struct tr_chan *c, long type, void *buf, size_t cap, int flags,
                          long *type_out)
{
    if (type != 0)
        return -EINVAL;
    for (;;) {
        ssize_t n = (flags & TR_NOWAIT) ? mq_timedreceive(c->q, buf, cap, NULL, &past)
                                        : mq_receive(c->q, buf, cap, NULL);
        if (n >= 0) {
            if (type_out)
                *type_out = 1;
            return n;
        }
        if (errno == ETIMEDOUT)
            return -EAGAIN;
        if (errno != EINTR)
            return -errno;
    }
}

static void mq_tr_close(struct tr_chan *c)
{
    if (!c)
        return;
    mq_close(c->q);
    free(c);
}

const struct tr_ops tr_posixmq_ops = {
    .name = "posixmq",
    .title = "POSIX mq",
    .flags = TR_MULTI,
    .open = mq_tr_open,
    .attach = mq_tr_attach,
    .detach = mq_tr_detach,
    .send = mq_tr_send,
    .recv = mq_tr_recv,
    .close = mq_tr_close,
};
