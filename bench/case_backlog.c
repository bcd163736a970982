/*
 * case_backlog.c — receiving by type from a deep backlog that nobody has indexed yet.
 *
 * The typed case measures a steady state: the queue has been received from, by type, for a
 * while. Here the backlog arrives all at once, as after a burst or a receiver's pause: one
 * process pinned to a CPU opens a fresh queue, polls it once (non-blocking, finding nothing:
 * the receiver is there before the burst, receiving as it will afterwards), fills it with
 * 10 000 messages of 16 B whose types are drawn at random from 100 (a fixed seed, the same
 * for every transport), then times 1 000 receives right after the fill, one way each:
 *
 *   fifo   type 0, the oldest message; the baseline.
 *   gt0    type 1, 2, ..., 100, 1, ...: each type in turn, its oldest message.
 *   lt0    type -100: the lowest type present (1 for the first hundred or so, then 2, ...).
 *   gt0c   as gt0, but without the poll before the fill ("cold"): the first receive by type
 *          is the first the queue ever sees.
 *
 * Each repetition runs three such trials on the same queue (emptied between them, untimed) and
 * records their median. Figures go to the typed case's table under the layout "fill" (report.c).
 * Types and sequence numbers are checked: each type's messages arrive in order, type < 0 returns
 * the lowest type left, and type 0 returns the messages in the order sent.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define BACKLOG_RECEIVES 1000ul
#define BACKLOG_TYPES    1000ul /* at most */
#define BACKLOG_TRIALS   3      /* per repetition, each on a queue emptied before it */

enum backlog_mode { BL_FIFO, BL_GT0, BL_LT0, BL_GT0_COLD, BL_COUNT };
static const char *const bl_metric[BL_COUNT] = {"fifo_ns", "type_gt0_ns", "type_lt0_ns",
                                                "type_gt0_cold_ns"};

struct backlog_shared {
    long depth_reached;
    double ns_per_recv;
};

struct backlog_job {
    const struct tr_ops *t;
    struct tr_chan *c;
    enum backlog_mode mode;
    unsigned long depth, types;
    struct backlog_shared *sh;
};

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* One trial: poll (unless cold), fill, time the receives; then empty the queue (untimed). */
static int backlog_trial(struct backlog_job *j, void *buf, double *ns)
{
    const size_t size = 16;
    const struct tr_ops *t = j->t;
    static unsigned long left[BACKLOG_TYPES + 1];
    static uint64_t last_seq[BACKLOG_TYPES + 1];
    long got = 0;
    long poll = j->mode == BL_FIFO ? 0 : j->mode == BL_LT0 ? -(long) j->types : 1;
    if (j->mode != BL_GT0_COLD) {
        ssize_t r = t->recv(j->c, poll, buf, size, TR_NOWAIT, &got);
        if (r != -ENOMSG && r != -EAGAIN)
            return bench_child_fail("%s: the poll of an empty queue gave %zd", t->name, r);
    }
    memset(left, 0, sizeof(left));
    memset(last_seq, 0, sizeof(last_seq));
    uint64_t x = 0x9e3779b97f4a7c15ull, seq = 1;
    unsigned long reached = 0;
    for (; reached < j->depth; reached++) {
        long type = 1 + (long) (next_random(&x) % j->types);
        msg_stamp(buf, size, MSG_WORD(type, seq));
        int rc = t->send(j->c, type, buf, size, TR_NOWAIT);
        if (rc == -EAGAIN)
            break;
        if (rc < 0)
            return bench_child_fail("%s: filling, message %lu: %s", t->name, reached,
                                    strerror(-rc));
        left[type]++;
        seq++;
    }
    j->sh->depth_reached = (long) reached;
    unsigned long n = reached < BACKLOG_RECEIVES ? reached : BACKLOG_RECEIVES;
    long lowest = 1;
    uint64_t fifo_seq = 0;
    int64_t t0 = bench_now();
    for (unsigned long k = 0; k < n; k++) {
        long sel = 0;
        if (j->mode == BL_GT0 || j->mode == BL_GT0_COLD) {
            sel = 1 + (long) (k % j->types);
            if (left[sel] == 0) /* a type drawn fewer times than the rounds: the next one */
                continue;
        } else if (j->mode == BL_LT0) {
            sel = -(long) j->types;
        }
        ssize_t r = t->recv(j->c, sel, buf, size, TR_NOWAIT, &got);
        if (r < 0)
            return bench_child_fail("%s: receive %lu (type %ld): %s", t->name, k, sel,
                                    strerror((int) -r));
        uint64_t w = 0;
        if (r != (ssize_t) size || msg_check(buf, size, &w) != 0 || (long) (w >> 48) != got ||
            got < 1 || (unsigned long) got > j->types || (sel > 0 && got != sel))
            return bench_child_fail("%s: receive %lu (type %ld) gave a wrong or corrupted "
                                    "message (type %ld)",
                                    t->name, k, sel, got);
        uint64_t s = w & 0xffffffffffffull;
        if (j->mode == BL_LT0) {
            while (lowest <= (long) j->types && left[lowest] == 0)
                lowest++;
            if (got != lowest)
                return bench_child_fail("%s: type -%lu gave type %ld, not the lowest, %ld", t->name,
                                        j->types, got, lowest);
        }
        if (s <= last_seq[got] || (j->mode == BL_FIFO && s <= fifo_seq))
            return bench_child_fail("%s: receive %lu (type %ld) out of order", t->name, k, sel);
        last_seq[got] = s;
        fifo_seq = s;
        left[got]--;
    }
    int64_t t1 = bench_now();
    *ns = (double) (t1 - t0) / (double) n;
    for (unsigned long k = 0; k < reached; k++) /* the rest, in order: nothing left behind */
        if (t->recv(j->c, 0, buf, size, TR_NOWAIT, &got) < 0)
            break;
    return 0;
}

/* The median of BACKLOG_TRIALS trials: 1 000 receives take about 100 us, so one preemption of
 * the process by the rest of the machine would otherwise decide the figure. */
static int backlog_run(struct backlog_job *j, void *buf)
{
    double ns[BACKLOG_TRIALS];
    for (int i = 0; i < BACKLOG_TRIALS; i++) {
        int rc = backlog_trial(j, buf, &ns[i]);
        if (rc)
            return rc;
    }
    bench_sort(ns, BACKLOG_TRIALS);
    j->sh->ns_per_recv = ns[BACKLOG_TRIALS / 2];
    return 0;
}

static int backlog_body(int i, void *arg)
{
    (void) i;
    struct backlog_job *j = arg;
    int rc = j->t->attach(j->c);
    if (rc < 0)
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    void *buf = bench_buf_alloc(16);
    rc = backlog_run(j, buf);
    bench_buf_free(buf);
    j->t->detach(j->c);
    return rc;
}

int case_backlog_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    struct backlog_shared *sh = bench_shared_alloc(sizeof(*sh));
    int cpu = ctx->cpu[0];
    int result = 0;
    unsigned long types = o->typed_types < BACKLOG_TYPES ? o->typed_types : BACKLOG_TYPES;
    for (int rep = 0; rep < o->reps && result != -EINTR; rep++) {
        fprintf(stderr, "backlog  rep %d/%d depth %lu, %lu types:", rep + 1, o->reps,
                o->typed_depth, types);
        for (int t = 0; t < ctx->ntr && result != -EINTR; t++) {
            const struct tr_ops *tr = ctx->tr[t];
            if (!(tr->flags & TR_TYPED))
                continue;
            for (int m = 0; m < BL_COUNT; m++) {
                char name[32], what[96];
                snprintf(name, sizeof(name), "b%lu", ctx->seq++);
                snprintf(what, sizeof(what), "backlog %s %s rep %d", tr->name, bl_metric[m],
                         rep + 1);
                struct tr_params p = {16, o->typed_depth, 1, 1, name};
                struct backlog_job j = {tr, NULL, (enum backlog_mode) m, o->typed_depth, types, sh};
                const char *why = NULL;
                int rc = tr->open(&p, &j.c, &why);
                if (rc < 0) {
                    res_error("%s: open: %s", what, strerror(-rc));
                    result = -1;
                    continue;
                }
                memset(sh, 0, sizeof(*sh));
                rc = bench_run_procs(ctx, 1, &cpu, backlog_body, &j, what);
                tr->close(j.c);
                if (rc == -EINTR) {
                    result = -EINTR;
                    break;
                }
                if (rc < 0) {
                    result = -1;
                    continue;
                }
                res_add("typed", tr->name, 16, "fill", bl_metric[m], sh->ns_per_recv, "ns", rep);
                fprintf(stderr, " %s/%s %.3gus", tr->name, bl_metric[m], sh->ns_per_recv / 1e3);
            }
        }
        fprintf(stderr, "\n");
    }
    bench_shared_free(sh, sizeof(*sh));
    return result;
}
