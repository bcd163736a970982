/*
 * case_typed.c — the cost of receiving by type from a deep queue, against receiving in order.
 *
 * For the transports that select by type (postbox and System V), one process pinned to a CPU
 * fills a queue with 10 000 messages of 16 B over 100 types, in turn (1, 2, ..., 100, 1, ...),
 * then times batches of receives, putting the same number of messages back at the tail after
 * each batch (untimed), so the depth stays between 9 900 and 10 000. Three ways of receiving:
 *
 *   fifo   type 0: the oldest message; the baseline.
 *   gt0    type 50: the oldest message of one type. After the first batch every message of
 *          that type sits at the tail, behind 9 900 others: a receiver waiting for its own
 *          reply in a busy queue, the case where msgrcv(2) walks the whole list.
 *   lt0    type -100: the oldest message of the lowest type present (type 1), which after the
 *          first batch also sits at the tail; msgrcv(2) must walk everything to know it is
 *          the lowest.
 *
 * Two warm-up batches bring the queue to that steady state before timing. The figure is the
 * time per receive; the report divides gt0 and lt0 by fifo within each repetition. Sequence
 * numbers are checked (each type's messages arrive in order) and so is the type returned.
 * Receives use the non-blocking flag, so a message that is not found fails instead of hanging.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define MAX_BATCH 100

enum typed_mode { MODE_FIFO, MODE_GT0, MODE_LT0, MODE_COUNT };
static const char *const mode_metric[MODE_COUNT] = {"fifo_ns", "type_gt0_ns", "type_lt0_ns"};

struct typed_shared {
    long depth_reached;
    unsigned long batch;
    double ns_per_recv;
};

struct typed_job {
    const struct tr_ops *t;
    struct tr_chan *c;
    enum typed_mode mode;
    unsigned long depth, types, batches;
    struct typed_shared *sh;
};

static int typed_run(struct typed_job *j, void *buf)
{
    const size_t size = 16;
    const struct tr_ops *t = j->t;
    uint64_t seq = 0;
    unsigned long reached = 0;
    for (; reached < j->depth; reached++) {
        long type = 1 + (long) (reached % j->types);
        msg_stamp(buf, size, MSG_WORD(type, seq));
        int rc = t->send(j->c, type, buf, size, TR_NOWAIT);
        if (rc == -EAGAIN)
            break;
        if (rc < 0)
            return bench_child_fail("%s: filling, message %lu: %s", t->name, reached,
                                    strerror(-rc));
        seq++;
    }
    j->sh->depth_reached = (long) reached;
    unsigned long batch = reached / j->types;
    if (batch > MAX_BATCH)
        batch = MAX_BATCH;
    if (batch == 0)
        return bench_child_fail("%s: the queue holds only %lu messages, fewer than %lu types",
                                t->name, reached, j->types);
    j->sh->batch = batch;

    long sel = 0, expect = 0; /* the type asked for; the type that must come back (0: any) */
    if (j->mode == MODE_GT0)
        sel = expect = j->types / 2 > 0 ? (long) (j->types / 2) : 1;
    if (j->mode == MODE_LT0) {
        sel = -(long) j->types;
        expect = 1;
    }

    long got_type[MAX_BATCH];
    uint64_t next_seq = 0; /* messages were sent in sequence and each type is FIFO */
    int64_t total = 0;
    for (unsigned long b = 0; b < 2 + j->batches; b++) {
        int64_t t0 = bench_now();
        for (unsigned long k = 0; k < batch; k++) {
            ssize_t r = t->recv(j->c, sel, buf, size, TR_NOWAIT, &got_type[k]);
            if (r < 0)
                return bench_child_fail("%s: receive (type %ld) in batch %lu: %s", t->name, sel, b,
                                        strerror((int) -r));
            uint64_t w = 0;
            if (r != (ssize_t) size || msg_check(buf, size, &w) != 0 ||
                (long) (w >> 48) != got_type[k] || (expect && got_type[k] != expect))
                return bench_child_fail("%s: receive (type %ld) gave a wrong or corrupted "
                                        "message (type %ld)",
                                        t->name, sel, got_type[k]);
            uint64_t s = w & 0xffffffffffffull;
            if (s < next_seq)
                return bench_child_fail("%s: receive (type %ld) out of order: %llu after %llu",
                                        t->name, sel, (unsigned long long) s,
                                        (unsigned long long) next_seq - 1);
            next_seq = s + 1;
        }
        int64_t t1 = bench_now();
        if (b >= 2)
            total += t1 - t0;
        for (unsigned long k = 0; k < batch; k++) {
            msg_stamp(buf, size, MSG_WORD(got_type[k], seq));
            int rc = t->send(j->c, got_type[k], buf, size, TR_NOWAIT);
            if (rc < 0)
                return bench_child_fail("%s: refilling: %s", t->name, strerror(-rc));
            seq++;
        }
    }
    j->sh->ns_per_recv = (double) total / (double) (j->batches * batch);
    return 0;
}

static int typed_body(int i, void *arg)
{
    (void) i;
    struct typed_job *j = arg;
    int rc = j->t->attach(j->c);
    if (rc < 0)
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    void *buf = bench_buf_alloc(16);
    rc = typed_run(j, buf);
    bench_buf_free(buf);
    j->t->detach(j->c);
    return rc;
}

int case_typed_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    struct typed_shared *sh = bench_shared_alloc(sizeof(*sh));
    int cpu = ctx->cpu[0];
    int result = 0;
    int any = 0;
    for (int rep = 0; rep < o->reps && result != -EINTR; rep++) {
        fprintf(stderr, "typed    rep %d/%d depth %lu, %lu types:", rep + 1, o->reps,
                o->typed_depth, o->typed_types);
        for (int t = 0; t < ctx->ntr && result != -EINTR; t++) {
            const struct tr_ops *tr = ctx->tr[t];
            if (!(tr->flags & TR_TYPED))
                continue;
            any = 1;
            for (int m = 0; m < MODE_COUNT; m++) {
                char name[32], what[96];
                snprintf(name, sizeof(name), "t%lu", ctx->seq++);
                snprintf(what, sizeof(what), "typed %s %s rep %d", tr->name, mode_metric[m],
                         rep + 1);
                struct tr_params p = {16, o->typed_depth, 1, 1, name};
                struct typed_job j = {
                    tr, NULL, (enum typed_mode) m, o->typed_depth, o->typed_types, o->typed_batches,
                    sh};
                const char *why = NULL;
                int rc = tr->open(&p, &j.c, &why);
                if (rc < 0) {
                    res_error("%s: open: %s", what, strerror(-rc));
                    result = -1;
                    continue;
                }
                memset(sh, 0, sizeof(*sh));
                rc = bench_run_procs(ctx, 1, &cpu, typed_body, &j, what);
                if (rc == 0) {
                    res_depth("typed", tr->name, 16, o->typed_depth, sh->depth_reached,
                              why ? why : "");
                    if ((unsigned long) sh->depth_reached < o->typed_depth)
                        res_note("typed: %s held only %ld of the %lu messages asked for; it was "
                                 "measured at that depth, in batches of %lu",
                                 tr->name, sh->depth_reached, o->typed_depth, sh->batch);
                }
                tr->close(j.c);
                if (rc == -EINTR) {
                    result = -EINTR;
                    break;
                }
                if (rc < 0) {
                    result = -1;
                    continue;
                }
                res_add("typed", tr->name, 16, "1proc", mode_metric[m], sh->ns_per_recv, "ns", rep);
                fprintf(stderr, " %s/%s %.3gus", tr->name, mode_metric[m], sh->ns_per_recv / 1e3);
            }
        }
        fprintf(stderr, "\n");
    }
    if (!any)
        res_note("typed: no transport that selects by type was selected");
    bench_shared_free(sh, sizeof(*sh));
    return result;
}
