/*
 * loan.c — the public loan calls (pbx_loan, pbx_commit, pbx_cancel, pbx_recv_loan, pbx_return,
 * pbx_loan_piece): argument checks, then the transport's loans, or loans by copying.
 *
 * A transport with loans of its own (shared memory: src/shm/loan.c) lends its memory in place.
 * For one without (the spool), the loan is made here by copying, on top of calls every
 * transport has: a send loan is a buffer of ours that pbx_commit() sends with the flags the loan
 * was taken with; a receive loan is a pbx_claim() into such a buffer, and pbx_return() its ack.
 * The handle keeps the loans by copying it holds in a list, so that ending one twice, or through
 * a stale copy of the struct, is -ENOENT rather than a double free, and so that pbx_close()
 * ends the rest (a send loan is dropped, a receive loan's claim released).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "handle.h"
#include "os/cancel.h"
#include "os/os.h"

#define LOAN_SEND_FLAGS PBX_NOWAIT
#define LOAN_RECV_FLAGS (PBX_NOWAIT | PBX_EXCEPT)

/* The words of priv a loan by copying uses. */
#define PRIV_BUF 2 /* the buffer's address */

struct pbx_copy_loan {
    struct pbx_copy_loan *next;
    uint64_t id;
    uint64_t claim; /* receive loans: the claim id */
    int flags;      /* send loans: pbx_loan()'s flags, for the send */
    void *buf;
};

static uint64_t copy_ids; /* ids of loans by copying, process-wide (atomic) */

static void loan_clear(struct pbx_loan *l)
{
    memset(l, 0, sizeof(*l));
}

/* ---- loans by copying ------------------------------------------------------------------ */

static int copy_max(pbx_t *q, uint32_t *max)
{
    struct pbx_stat st;
    int err = q->t->stat(q->state, &st);
    if (err)
        return err;
    *max = st.max_msg_size;
    return 0;
}

static int copy_add(pbx_t *q, struct pbx_loan *l, uint32_t kind, void *buf, int flags,
                    uint64_t claim)
{
    struct pbx_copy_loan *c = malloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->id = __atomic_add_fetch(&copy_ids, 1, __ATOMIC_RELAXED);
    c->claim = claim;
    c->flags = flags;
    c->buf = buf;
    pthread_mutex_lock(&q->copies_lock);
    c->next = q->copies;
    q->copies = c;
    pthread_mutex_unlock(&q->copies_lock);
    l->id = c->id;
    l->priv[PBX_LOAN_KIND] = kind | PBX_LOAN_COPY;
    l->priv[PRIV_BUF] = (uint64_t) (uintptr_t) buf;
    return 0;
}

/* Take the loan out of q's list: it, or NULL when q does not hold it. */
static struct pbx_copy_loan *copy_take(pbx_t *q, uint64_t id)
{
    pthread_mutex_lock(&q->copies_lock);
    struct pbx_copy_loan **p = &q->copies;
    while (*p && (*p)->id != id)
        p = &(*p)->next;
    struct pbx_copy_loan *c = *p;
    if (c)
        *p = c->next;
    pthread_mutex_unlock(&q->copies_lock);
    return c;
}

static int copy_held(pbx_t *q, uint64_t id)
{
    pthread_mutex_lock(&q->copies_lock);
    const struct pbx_copy_loan *c = q->copies;
    while (c && c->id != id)
        c = c->next;
    pthread_mutex_unlock(&q->copies_lock);
    return c != NULL;
}

static int copy_lend(pbx_t *q, size_t len, int flags, struct pbx_loan *l)
{
    uint32_t max;
    int err = copy_max(q, &max);
    if (err)
        return err;
    if (len > max)
        return -EMSGSIZE;
    void *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    if ((err = copy_add(q, l, PBX_LOAN_SEND, buf, flags, 0)))
        free(buf);
    return err;
}

static ssize_t copy_recv_lend(pbx_t *q, long type, int flags, struct pbx_loan *l)
{
    uint32_t max;
    int err = copy_max(q, &max);
    if (err)
        return err;
    if (!q->t->claim)
        return -EOPNOTSUPP;
    void *buf = malloc(max ? max : 1);
    if (!buf)
        return -ENOMEM;
    uint64_t claim = 0;
    long mtype = 0;
    ssize_t n = q->t->claim(q->state, type, buf, max, flags, &mtype, &claim, 0);
    if (n < 0) {
        free(buf);
        return n;
    }
    if ((err = copy_add(q, l, PBX_LOAN_RECV, buf, 0, claim))) {
        q->t->release(q->state, claim);
        free(buf);
        return err;
    }
    l->len = (size_t) n;
    l->type = mtype;
    return n;
}

void pbx__copy_loans_end(pbx_t *q)
{
    struct pbx_copy_loan *c = q->copies;
    q->copies = NULL;
    while (c) {
        struct pbx_copy_loan *next = c->next;
        if (c->claim)
            q->t->release(q->state, c->claim);
        free(c->buf);
        free(c);
        c = next;
    }
}

/* ---- the calls ------------------------------------------------------------------------- */

int pbx_loan(pbx_t *q, size_t len, int flags, struct pbx_loan *loan)
{
    if (!loan)
        return -EINVAL;
    loan_clear(loan);
    if (!q || (flags & ~LOAN_SEND_FLAGS))
        return -EINVAL;
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    int err;
    if (q->t->lend && q->t->cancel_inline) {
        err = q->t->lend(q->state, (uint32_t) len, flags, 0, loan);
    } else {
        struct pbx_cancel c;
        pbx__cancel_off(&c);
        err = q->t->lend ? q->t->lend(q->state, (uint32_t) len, flags, 0, loan)
                         : copy_lend(q, len, flags, loan);
        pbx__cancel_restore(&c);
    }
    if (err < 0) {
        loan_clear(loan);
        return err;
    }
    loan->q = q;
    loan->len = len;
    return 0;
}

ssize_t pbx_recv_loan(pbx_t *q, long type, int flags, struct pbx_loan *loan)
{
    if (!loan)
        return -EINVAL;
    loan_clear(loan);
    if (!q || (flags & ~LOAN_RECV_FLAGS) || ((flags & PBX_EXCEPT) && type <= 0))
        return -EINVAL;
    ssize_t n;
    if (q->t->recv_lend && q->t->cancel_inline) {
        n = q->t->recv_lend(q->state, type, flags, 0, loan);
    } else {
        struct pbx_cancel c;
        pbx__cancel_off(&c);
        n = q->t->recv_lend ? q->t->recv_lend(q->state, type, flags, 0, loan)
                            : copy_recv_lend(q, type, flags, loan);
        pbx__cancel_restore(&c);
    }
    if (n < 0) {
        loan_clear(loan);
        return n;
    }
    loan->q = q;
    return n;
}

/* The checks that every end of a loan shares: 0, -EINVAL (no loan struct; the wrong kind of
 * loan), -ENOENT (no loan held in it). */
static int end_args(const struct pbx_loan *l, uint32_t kind)
{
    if (!l)
        return -EINVAL;
    if (!l->q || !l->id)
        return -ENOENT;
    uint64_t k = l->priv[PBX_LOAN_KIND];
    if ((k & (PBX_LOAN_SEND | PBX_LOAN_RECV)) != kind)
        return (k & (PBX_LOAN_SEND | PBX_LOAN_RECV)) ? -EINVAL : -ENOENT;
    return 0;
}

/* End a loan: through the transport, or (a loan by copying) here. op: 0 commit, 1 cancel,
 * 2 return. The loan struct is cleared once the loan has ended, whatever the outcome. */
static int end_loan(struct pbx_loan *l, int op, long type, int flags)
{
    pbx_t *q = l->q;
    int err;
    struct pbx_cancel c;
    pbx__cancel_off(&c);
    if (!(l->priv[PBX_LOAN_KIND] & PBX_LOAN_COPY)) {
        err = op == 0   ? q->t->commit(q->state, l, type, flags)
              : op == 1 ? q->t->cancel(q->state, l)
                        : q->t->give_back(q->state, l);
    } else {
        struct pbx_copy_loan *cl = copy_take(q, l->id);
        if (!cl) {
            err = -ENOENT;
        } else {
            err = op == 0
                      ? q->t->send(q->state, type, cl->buf, (uint32_t) l->len, cl->flags | flags, 0)
                  : op == 1 ? 0
                            : q->t->ack(q->state, cl->claim);
            if (err > 0)
                err = 0;
            free(cl->buf);
            free(cl);
        }
    }
    pbx__cancel_restore(&c);
    if (err != -ENOENT && !(err == -EUSERS && !(l->priv[PBX_LOAN_KIND] & PBX_LOAN_COPY)))
        loan_clear(l); /* ended, unless not held or (no sync entry) not begun */
    return err;
}

int pbx_commit(struct pbx_loan *loan, long type, int flags)
{
    int err = end_args(loan, PBX_LOAN_SEND);
    if (err)
        return err;
    if (type < 1 || (flags & ~PBX_SYNC))
        return -EINVAL;
    if ((flags & PBX_SYNC) && !loan->q->t->sync)
        return -EOPNOTSUPP;
    return end_loan(loan, 0, type, flags);
}

int pbx_cancel(struct pbx_loan *loan)
{
    int err = end_args(loan, PBX_LOAN_SEND);
    return err ? err : end_loan(loan, 1, 0, 0);
}

int pbx_return(struct pbx_loan *loan)
{
    int err = end_args(loan, PBX_LOAN_RECV);
    return err ? err : end_loan(loan, 2, 0, 0);
}

ssize_t pbx_loan_piece(struct pbx_loan *loan, size_t off, void **ptr)
{
    if (!loan || !ptr || !loan->q || !loan->id)
        return -EINVAL;
    pbx_t *q = loan->q;
    if (!(loan->priv[PBX_LOAN_KIND] & PBX_LOAN_COPY))
        return q->t->piece(q->state, loan, off, ptr);
    if (!copy_held(q, loan->id))
        return -EINVAL;
    if (off >= loan->len)
        return 0;
    *ptr = (uint8_t *) (uintptr_t) loan->priv[PRIV_BUF] + off;
    return (ssize_t) (loan->len - off);
}
