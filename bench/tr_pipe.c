/*
 * tr_pipe.c — an anonymous pipe carrying fixed-size records.
 *
 * A pipe is a byte stream, so it carries messages the way programs usually do over one:
 * records of the channel's msg_size, written and read whole. Writes of at most PIPE_BUF bytes
 * are atomic and every write is a whole record, so several producers and consumers may share
 * the pipe for records up to PIPE_BUF; larger records are refused for more than one producer
 * or consumer. The capacity is set with F_SETPIPE_SZ to depth * msg_size (the kernel rounds it
 * up to a power of two of pages, so the measured depth may exceed the request).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "transport.h"

struct tr_chan {
    int rd, wr;
    size_t rec; /* record size: every message is exactly this long */
    char how[96];
};

static int pipe_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    if ((p->producers > 1 || p->consumers > 1) && p->msg_size > PIPE_BUF) {
        *why = "records above PIPE_BUF are not atomic with several producers or consumers";
        return -ENOTSUP;
    }
    int fd[2];
    if (pipe2(fd, O_CLOEXEC) < 0)
        return -errno;
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd[0]);
        close(fd[1]);
        return -ENOMEM;
    }
    c->rd = fd[0];
    c->wr = fd[1];
    c->rec = p->msg_size;
    unsigned long want = p->depth * p->msg_size;
    if (want > INT_MAX)
        want = INT_MAX;
    int got = fcntl(c->wr, F_SETPIPE_SZ, (int) want);
    if (got < 0 && errno == EPERM) {
        /* Above fs.pipe-max-size without CAP_SYS_RESOURCE: take the largest allowed. */
        FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
        long max = 0;
        if (f) {
            if (fscanf(f, "%ld", &max) != 1)
                max = 0;
            fclose(f);
        }
        if (max > 0 && (unsigned long) max < want)
            got = fcntl(c->wr, F_SETPIPE_SZ, (int) max);
        snprintf(c->how, sizeof(c->how),
                 "F_SETPIPE_SZ %lu refused, fs.pipe-max-size %ld: %d "
                 "bytes",
                 want, max, fcntl(c->wr, F_GETPIPE_SZ));
    } else if (got < 0) {
        int e = errno;
        got = fcntl(c->wr, F_GETPIPE_SZ);
        snprintf(c->how, sizeof(c->how), "F_SETPIPE_SZ %lu refused (errno %d): %d bytes", want, e,
                 got);
    } else {
        snprintf(c->how, sizeof(c->how), "F_SETPIPE_SZ %lu: %d bytes", want, got);
    }
    *why = c->how;
    *out = c;
    return 0;
}

static int pipe_attach(struct tr_chan *c)
{
    (void) c;
    return 0;
}

static void pipe_detach(struct tr_chan *c)
{
    (void) c;
}

static int set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

static int pipe_send(struct tr_chan *c, long type, void *buf, size_t len, int flags)
{
    (void) type;
    if (len != c->rec)
        return -EINVAL;
    if (flags & TR_NOWAIT) {
        /* Only the depth measurement uses this, alone with the channel: toggling the shared
         * O_NONBLOCK is safe there. A partly written record counts as "full". */
        int rc = set_nonblock(c->wr, 1);
        if (rc < 0)
            return rc;
        ssize_t n = write(c->wr, buf, len);
        int e = errno;
        set_nonblock(c->wr, 0);
        if (n == (ssize_t) len)
            return 0;
        return (n >= 0 || e == EAGAIN) ? -EAGAIN : -e;
    }
    const char *b = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(c->wr, b + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t) n;
    }
    return 0;
}

static ssize_t pipe_recv(struct tr_chan *c, long type, void *buf, size_t cap, int flags,
                         long *type_out)
{
    if (type != 0)
        return -EINVAL;
    if (cap < c->rec)
        return -E2BIG;
    char *b = buf;
    size_t done = 0;
    if (flags & TR_NOWAIT) {
        int rc = set_nonblock(c->rd, 1);
        if (rc < 0)
            return rc;
        ssize_t n = read(c->rd, b, c->rec);
        int e = errno;
        set_nonblock(c->rd, 0);
        if (n < 0)
            return e == EAGAIN ? -EAGAIN : -e;
        done = (size_t) n;
    }
    while (done < c->rec) {
        ssize_t n = read(c->rd, b + done, c->rec - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        done += (size_t) n;
    }
    if (type_out)
        *type_out = 1;
    return (ssize_t) c->rec;
}

static void pipe_close(struct tr_chan *c)
{
    if (!c)
        return;
    close(c->rd);
    close(c->wr);
    free(c);
}

const struct tr_ops tr_pipe_ops = {
    .name = "pipe",
    .title = "pipe",
    .flags = TR_MULTI,
    .open = pipe_open,
    .attach = pipe_attach,
    .detach = pipe_detach,
    .send = pipe_send,
    .recv = pipe_recv,
    .close = pipe_close,
};
