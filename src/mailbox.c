/*
 * mailbox.c — the public API: argument checks, then dispatch to a transport.
 *
 * Every check a caller can fail lives here, once, so that each transport receives only
 * well-formed requests (transport.h) and every transport rejects bad input the same way.
 * Timeouts become absolute CLOCK_MONOTONIC deadlines here, so a call that sleeps several
 * times still gives up on time. Cancellation is disabled here across each call, so that a
 * pthread_cancel() acts only where the transport waits (CANCELLATION in os/cancel.h); the
 * shared-memory send and receive, whose fast path reaches no cancellation point, see to it
 * themselves (transport.h, cancel_inline).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "internal.h"
#include "os/cancel.h"
#include "os/os.h"
#include "handle.h"
#include "transport.h"

#define PBX_OPEN_FLAGS (PBX_CREATE | PBX_EXCL | PBX_RDONLY)
#define PBX_SEND_FLAGS (PBX_NOWAIT | PBX_SYNC)
#define PBX_RECV_FLAGS (PBX_NOWAIT | PBX_EXCEPT | PBX_NOERROR | PBX_PEEK)

#define PBX_STR2(x) #x
#define PBX_STR(x)  PBX_STR2(x)

const char *pbx_version(void)
{
    return PBX_STR(PBX_VERSION_MAJOR) "." PBX_STR(PBX_VERSION_MINOR) "." PBX_STR(PBX_VERSION_PATCH);
}

void pbx_options_init(struct pbx_options *opts)
{
    if (!opts)
        return;
    memset(opts, 0, sizeof(*opts));
    opts->mode = 0600;
    opts->max_bytes = 1u << 20;
    opts->max_msgs = 4096;
    opts->max_msg_size = 8192;
    opts->overflow = PBX_BLOCK;
}

int pbx__name_valid(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok || n >= PBX_NAME_MAX)
            return 0;
    }
    return n > 0 && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* Which transport a name belongs to, and the name that transport sees. */
static int pick_transport(const char *name, const struct pbx_transport **t)
{
    if (!name)
        return -EINVAL;
    if (strncmp(name, "spool:", 6) == 0) {
        *t = &pbx__spool_transport; /* the path is checked by the transport */
        return 0;
    }
    if (!pbx__name_valid(name))
        return -EINVAL;
    *t = &pbx__shm_transport;
    return 0;
}

/* struct pbx_options grew durability inside what was reserved[0]; every older field keeps its
 * place and the size is unchanged, so programs built against 0.1.0 still work. */
_Static_assert(sizeof(struct pbx_options) == 80, "struct pbx_options keeps its size");
_Static_assert(offsetof(struct pbx_options, overflow) == 24, "overflow keeps its place");
_Static_assert(offsetof(struct pbx_options, durability) == 32, "durability is old reserved[0]");
_Static_assert(offsetof(struct pbx_options, reserved) == 40, "reserved[] is old reserved[1..5]");

static int options_valid(const struct pbx_options *o)
{
    if (!o)
        return 1;
    if (o->durability > PBX_DURABLE_NONE || o->reserved32)
        return 0;
    for (size_t i = 0; i < PBX_ARRAY_LEN(o->reserved); i++)
        if (o->reserved[i])
            return 0;
    return (o->mode & ~0777u) == 0 && (unsigned) o->overflow <= PBX_DROP_OLDEST &&
           o->max_msgs >= 1 && o->max_bytes >= 1 && o->max_msg_size <= o->max_bytes;
}

static pbx_t *handle_new(const struct pbx_transport *t, void *state)
{
    pbx_t *q = malloc(sizeof(*q));
    if (q) {
        q->t = t;
        q->state = state;
        pthread_mutex_init(&q->copies_lock, NULL);
        q->copies = NULL;
    }
    return q;
}

int pbx_open(const char *name, int flags, const struct pbx_options *opts, pbx_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    const struct pbx_transport *t;
    int err = pick_transport(name, &t);
    if (err)
        return err;
    if ((flags & ~PBX_OPEN_FLAGS) || ((flags & PBX_EXCL) && !(flags & PBX_CREATE)) ||
        ((flags & PBX_RDONLY) && (flags & PBX_CREATE)))
        return -EINVAL;
    if (!options_valid(opts))
        return -EINVAL;
    /* A looking handle gets the transport's looking table (LOOKING in transport.h). */
    const struct pbx_transport *use = (flags & PBX_RDONLY) ? t->looking : t;
    if (!use)
        return -EOPNOTSUPP;
    void *state;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    if (!(err = t->open(name, flags, opts, &state)) && !(*out = handle_new(use, state))) {
        use->close(state);
        err = -ENOMEM;
    }
    pbx__cancel_restore(&c);
    return err;
}

int pbx_open_private(const struct pbx_options *opts, pbx_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!options_valid(opts))
        return -EINVAL;
    const struct pbx_transport *t = &pbx__shm_transport;
    void *state;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int err = t->open_private(opts, &state);
    if (!err && !(*out = handle_new(t, state))) {
        t->close(state);
        err = -ENOMEM;
    }
    pbx__cancel_restore(&c);
    return err;
}

int pbx_close(pbx_t *q)
{
    if (!q)
        return 0;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    pbx__copy_loans_end(q);
    int err = q->t->close(q->state);
    pthread_mutex_destroy(&q->copies_lock);
    free(q);
    pbx__cancel_restore(&c);
    return err;
}

int pbx_remove(pbx_t *q)
{
    if (!q)
        return -EINVAL;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int err = q->t->remove(q->state);
    pbx__cancel_restore(&c);
    return err;
}

int pbx_unlink(const char *name)
{
    const struct pbx_transport *t;
    int err = pick_transport(name, &t);
    if (err)
        return err;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    err = t->unlink(name);
    pbx__cancel_restore(&c);
    return err;
}

/* Turn a relative timeout into an absolute CLOCK_MONOTONIC deadline (0: none). */
static inline int deadline_of(const struct timespec *timeout, uint64_t *deadline)
{
    *deadline = 0;
    if (!timeout)
        return 0;
    if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L)
        return -EINVAL;
    uint64_t ns = (uint64_t) timeout->tv_nsec;
    uint64_t now = pbx__os_mono_ns();
    uint64_t max_sec = (UINT64_MAX - now - ns) / 1000000000u;
    uint64_t sec = (uint64_t) timeout->tv_sec;
    *deadline = sec > max_sec ? UINT64_MAX : now + sec * 1000000000u + ns;
    return 0;
}

/* The argument checks of a send and a receive, shared by the timed and untimed calls. The untimed
 * ones go straight to the transport: no deadline to compute, and a shorter call on the path
 * every message takes. */
static inline int send_args(const pbx_t *q, long type, const void *data, size_t len, int flags)
{
    if (!q || type < 1 || (!data && len) || (flags & ~PBX_SEND_FLAGS))
        return -EINVAL;
    if ((flags & PBX_SYNC) && !q->t->sync)
        return -EOPNOTSUPP;
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    return 0;
}

static inline int recv_args(const pbx_t *q, long type, const void *buf, size_t cap, int flags)
{
    if (!q || (!buf && cap) || (flags & ~PBX_RECV_FLAGS))
        return -EINVAL;
    if ((flags & PBX_EXCEPT) && type <= 0)
        return -EINVAL;
    return 0;
}

/* A transport without cancel_inline has cancellation disabled across send and receive. */
static int guarded_send(pbx_t *q, long type, const void *data, size_t len, int flags,
                        uint64_t deadline)
{
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int r = q->t->send(q->state, type, data, (uint32_t) len, flags, deadline);
    pbx__cancel_restore(&c);
    return r;
}

static ssize_t guarded_recv(pbx_t *q, long type, void *buf, uint32_t cap, int flags, long *type_out,
                            uint64_t deadline)
{
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    ssize_t r = q->t->recv(q->state, type, buf, cap, flags, type_out, deadline);
    pbx__cancel_restore(&c);
    return r;
}

static inline int send_to(pbx_t *q, long type, const void *data, size_t len, int flags,
                          uint64_t deadline)
{
    if (PBX_LIKELY(q->t->cancel_inline))
        return q->t->send(q->state, type, data, (uint32_t) len, flags, deadline);
    return guarded_send(q, type, data, len, flags, deadline);
}

static inline ssize_t recv_from(pbx_t *q, long type, void *buf, uint32_t cap, int flags,
                                long *type_out, uint64_t deadline)
{
    if (PBX_LIKELY(q->t->cancel_inline))
        return q->t->recv(q->state, type, buf, cap, flags, type_out, deadline);
    return guarded_recv(q, type, buf, cap, flags, type_out, deadline);
}

static inline uint32_t cap32_of(size_t cap)
{
    return cap > UINT32_MAX ? UINT32_MAX : (uint32_t) cap;
}

int pbx_timedsend(pbx_t *q, long type, const void *data, size_t len, int flags,
                  const struct timespec *timeout)
{
    int err = send_args(q, type, data, len, flags);
    uint64_t deadline;
    if (!err)
        err = deadline_of(timeout, &deadline);
    return err ? err : send_to(q, type, data, len, flags, deadline);
}

int pbx_send(pbx_t *q, long type, const void *data, size_t len, int flags)
{
    int err = send_args(q, type, data, len, flags);
    return err ? err : send_to(q, type, data, len, flags, 0);
}

ssize_t pbx_timedrecv(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out,
                      const struct timespec *timeout)
{
    int err = recv_args(q, type, buf, cap, flags);
    uint64_t deadline;
    if (!err)
        err = deadline_of(timeout, &deadline);
    return err ? err : recv_from(q, type, buf, cap32_of(cap), flags, type_out, deadline);
}

ssize_t pbx_recv(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out)
{
    int err = recv_args(q, type, buf, cap, flags);
    return err ? err : recv_from(q, type, buf, cap32_of(cap), flags, type_out, 0);
}

/* ---- batches (docs/api.md, "Batches") ---------------------------------------------------- */

/* Every entry of a send batch, before anything is sent: the error, stored in the bad entry. */
static ssize_t sendv_args(const pbx_t *q, struct pbx_msgv *msgs, size_t n, int flags)
{
    if (!q || (!msgs && n) || n > SSIZE_MAX || (flags & ~PBX_NOWAIT))
        return -EINVAL; /* PBX_SYNC included: not offered for batches */
    for (size_t i = 0; i < n; i++) {
        int err = msgs[i].type < 1 || (!msgs[i].data && msgs[i].len) ? -EINVAL
                  : msgs[i].len > UINT32_MAX                         ? -EMSGSIZE
                                                                     : 0;
        if (err) {
            msgs[i].result = err;
            return err;
        }
    }
    return 0;
}

static ssize_t recvv_args(const pbx_t *q, long type, const struct pbx_msgv *msgs, size_t n,
                          int flags)
{
    if (!q || (!msgs && n) || n > SSIZE_MAX || (flags & ~(PBX_RECV_FLAGS & ~PBX_PEEK)))
        return -EINVAL;
    if ((flags & PBX_EXCEPT) && type <= 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].data && msgs[i].len)
            return -EINVAL;
    return 0;
}

/* A transport without sendv: one send per message, with the contract of pbx_sendv(). */
static ssize_t sendv_one_by_one(pbx_t *q, struct pbx_msgv *msgs, size_t n, int flags,
                                uint64_t deadline)
{
    struct pbx_stat st;
    int err = q->t->stat(q->state, &st);
    if (err)
        return err;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].len > st.max_msg_size) {
            msgs[i].result = -EMSGSIZE;
            return -EMSGSIZE; /* nothing sent, as shared memory checks */
        }
    size_t k = 0;
    for (; k < n; k++) {
        struct pbx_msgv *v = &msgs[k];
        int r = q->t->send(q->state, v->type, v->data, (uint32_t) v->len, flags, deadline);
        v->result = r;
        if (r < 0 && r != -ENOBUFS)
            break;
        pbx__cancel_hold(); /* one is in: the count must reach the caller */
    }
    return k ? (ssize_t) k : msgs[0].result;
}

/* A transport without recvv: one receive per message, those after the first without waiting. */
static ssize_t recvv_one_by_one(pbx_t *q, long type, struct pbx_msgv *msgs, size_t n, int flags,
                                uint64_t deadline)
{
    size_t k = 0;
    for (; k < n; k++) {
        struct pbx_msgv *v = &msgs[k];
        ssize_t r = q->t->recv(q->state, type, v->data, cap32_of(v->len),
                               k ? flags | PBX_NOWAIT : flags, &v->type, deadline);
        if (r == -EAGAIN && k)
            r = -ENOMSG;
        v->result = r;
        if (r < 0)
            break;
    }
    return k ? (ssize_t) k : msgs[0].result;
}

ssize_t pbx_timedsendv(pbx_t *q, struct pbx_msgv *msgs, size_t n, int flags,
                       const struct timespec *timeout)
{
    ssize_t err = sendv_args(q, msgs, n, flags);
    uint64_t deadline = 0;
    if (!err)
        err = deadline_of(timeout, &deadline);
    if (err || n == 0)
        return err;
    /* CANCELLATION: off across the batch; its waits enable it again until a message is in. */
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    ssize_t r = q->t->sendv ? q->t->sendv(q->state, msgs, n, flags, deadline)
                            : sendv_one_by_one(q, msgs, n, flags, deadline);
    pbx__cancel_restore(&c);
    return r;
}

ssize_t pbx_sendv(pbx_t *q, struct pbx_msgv *msgs, size_t n, int flags)
{
    return pbx_timedsendv(q, msgs, n, flags, NULL);
}

ssize_t pbx_timedrecvv(pbx_t *q, long type, struct pbx_msgv *msgs, size_t n, int flags,
                       const struct timespec *timeout)
{
    ssize_t err = recvv_args(q, type, msgs, n, flags);
    uint64_t deadline = 0;
    if (!err)
        err = deadline_of(timeout, &deadline);
    if (err || n == 0)
        return err;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    ssize_t r = q->t->recvv ? q->t->recvv(q->state, type, msgs, n, flags, deadline)
                            : recvv_one_by_one(q, type, msgs, n, flags, deadline);
    pbx__cancel_restore(&c);
    return r;
}

ssize_t pbx_recvv(pbx_t *q, long type, struct pbx_msgv *msgs, size_t n, int flags)
{
    return pbx_timedrecvv(q, type, msgs, n, flags, NULL);
}

/* pbx_claim and pbx_timedclaim: the transports take the deadline already. */
static ssize_t claim_until(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out,
                           uint64_t *claim, const struct timespec *timeout)
{
    if (!q || !claim || (!buf && cap) || (flags & ~(PBX_RECV_FLAGS & ~PBX_PEEK)))
        return -EINVAL;
    if ((flags & PBX_EXCEPT) && type <= 0)
        return -EINVAL;
    *claim = 0;
    uint64_t deadline;
    int err = deadline_of(timeout, &deadline);
    if (err)
        return err;
    if (!q->t->claim)
        return -EOPNOTSUPP;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    ssize_t r = q->t->claim(q->state, type, buf, cap32_of(cap), flags, type_out, claim, deadline);
    pbx__cancel_restore(&c);
    return r;
}

ssize_t pbx_claim(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out,
                  uint64_t *claim)
{
    return claim_until(q, type, buf, cap, flags, type_out, claim, NULL);
}

ssize_t pbx_timedclaim(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out,
                       uint64_t *claim, const struct timespec *timeout)
{
    return claim_until(q, type, buf, cap, flags, type_out, claim, timeout);
}

/* ack or release, with cancellation disabled. */
static int settle(pbx_t *q, uint64_t claim, int (*op)(void *, uint64_t))
{
    if (!q || !claim)
        return -EINVAL;
    if (!op)
        return -EOPNOTSUPP;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int err = op(q->state, claim);
    pbx__cancel_restore(&c);
    return err;
}

int pbx_ack(pbx_t *q, uint64_t claim)
{
    return settle(q, claim, q ? q->t->ack : NULL);
}

int pbx_release(pbx_t *q, uint64_t claim)
{
    return settle(q, claim, q ? q->t->release : NULL);
}

int pbx_notify(pbx_t *q, int signo, int value)
{
    if (!q || signo < 0 || signo > SIGRTMAX || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    if (!q->t->notify)
        return -EOPNOTSUPP;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int err = q->t->notify(q->state, signo, value);
    pbx__cancel_restore(&c);
    return err;
}

int pbx_fd(pbx_t *q)
{
    if (!q)
        return -EINVAL;
    if (!q->t->fd)
        return -EOPNOTSUPP;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int fd = q->t->fd(q->state);
    pbx__cancel_restore(&c);
    return fd;
}

ssize_t pbx_peers(pbx_t *q, struct pbx_peer *out, size_t cap)
{
    if (!q || (!out && cap))
        return -EINVAL;
    if (!q->t->peers)
        return -EOPNOTSUPP;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    ssize_t n = q->t->peers(q->state, out, cap);
    struct pbx_stat st;
    if (n >= 0 && q->t->stat(q->state, &st) == -EIDRM)
        n = -EIDRM;
    pbx__cancel_restore(&c);
    return n;
}

int pbx_stat(pbx_t *q, struct pbx_stat *st)
{
    if (!q || !st)
        return -EINVAL;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    int err = q->t->stat(q->state, st);
    pbx__cancel_restore(&c);
    return err;
}

struct pbx_shm *pbx__handle_shm(pbx_t *q)
{
    return q && q->t == &pbx__shm_transport ? q->state : NULL;
}
