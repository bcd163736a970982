/*
 * case_pingpong.c — round-trip latency: one message there, one back, one at a time.
 *
 * Two channels, one per direction. The pinger stamps a message, sends it, waits for the
 * ponger's echo, checks it, and records the time of each round trip (CLOCK_MONOTONIC read
 * before the send and after the receive, so each sample includes one clock read). The median,
 * p99 and p99.9 of each repetition are recorded; the distribution of the last repetition is
 * kept for the latency plot. Run with the two processes on two CPUs (every hop crosses
 * between CPUs, and a sleeping peer costs an inter-processor wake-up) and on one CPU (every
 * hop is a context switch: the case where spinning wastes the peer's time).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

struct pp_shared {
    struct bench_barrier bar;
    unsigned long done;
    double rtt_ns[]; /* one per timed round trip */
};

struct pp_job {
    const struct tr_ops *t;
    struct tr_chan *there, *back;
    size_t size;
    unsigned long warm, n;
    struct pp_shared *sh;
};

static int pinger(struct pp_job *j, void *buf)
{
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long k = 0; k < j->warm + j->n; k++) {
        int64_t t0 = bench_now();
        msg_stamp(buf, j->size, MSG_WORD(0, k));
        int rc = j->t->send(j->there, 1, buf, j->size, 0);
        if (rc < 0)
            return bench_child_fail("%s: ping %lu: %s", j->t->name, k, strerror(-rc));
        ssize_t r = j->t->recv(j->back, 0, buf, j->size, 0, NULL);
        int64_t t1 = bench_now();
        if (r < 0)
            return bench_child_fail("%s: pong %lu: %s", j->t->name, k, strerror((int) -r));
        uint64_t w = 0;
        if ((size_t) r != j->size || msg_check(buf, j->size, &w) != 0 || w != MSG_WORD(1, k))
            return bench_child_fail("%s: pong %lu is not the echo of ping %lu", j->t->name, k, k);
        if (k >= j->warm)
            j->sh->rtt_ns[k - j->warm] = (double) (t1 - t0);
    }
    j->sh->done = j->n;
    return 0;
}

static int ponger(struct pp_job *j, void *buf)
{
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long k = 0; k < j->warm + j->n; k++) {
        ssize_t r = j->t->recv(j->there, 0, buf, j->size, 0, NULL);
        if (r < 0)
            return bench_child_fail("%s: ping %lu: %s", j->t->name, k, strerror((int) -r));
        uint64_t w = 0;
        if ((size_t) r != j->size || msg_check(buf, j->size, &w) != 0 || w != MSG_WORD(0, k))
            return bench_child_fail("%s: ping %lu lost or corrupted", j->t->name, k);
        msg_stamp(buf, j->size, MSG_WORD(1, k));
        int rc = j->t->send(j->back, 1, buf, j->size, 0);
        if (rc < 0)
            return bench_child_fail("%s: pong %lu: %s", j->t->name, k, strerror(-rc));
    }
    return 0;
}

static int pp_body(int i, void *arg)
{
    struct pp_job *j = arg;
    int rc = j->t->attach(j->there);
    if (rc < 0)
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    rc = j->t->attach(j->back);
    if (rc < 0) {
        j->t->detach(j->there);
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    }
    void *buf = bench_buf_alloc(j->size);
    rc = i == 0 ? pinger(j, buf) : ponger(j, buf);
    bench_buf_free(buf);
    j->t->detach(j->back);
    j->t->detach(j->there);
    return rc;
}

int case_pingpong_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    unsigned layouts = o->layouts ? o->layouts : (LAYOUT_2CPU | LAYOUT_1CPU);
    if (!ctx->two_cpus && (layouts & LAYOUT_2CPU)) {
        res_note("pingpong: only one CPU available; the two-CPU layout is skipped");
        layouts &= ~LAYOUT_2CPU;
    }
    size_t shsize = sizeof(struct pp_shared) + o->rtt_iters * sizeof(double);
    struct pp_shared *sh = bench_shared_alloc(shsize);
    double *sorted = bench_shared_alloc(o->rtt_iters * sizeof(double));
    unsigned long warm = o->rtt_iters / 10 < 100 ? 100 : o->rtt_iters / 10;
    int result = 0;
    for (int rep = 0; rep < o->reps && result != -EINTR; rep++) {
        for (unsigned layout = LAYOUT_2CPU; layout <= LAYOUT_1CPU && result != -EINTR;
             layout <<= 1) {
            if (!(layouts & layout))
                continue;
            const char *lay = bench_layout_name(layout);
            int cpus[2] = {bench_layout_cpu(ctx, layout, 0), bench_layout_cpu(ctx, layout, 1)};
            fprintf(stderr, "pingpong rep %d/%d %s %6zu B:", rep + 1, o->reps, lay, o->rtt_size);
            for (int t = 0; t < ctx->ntr; t++) {
                const struct tr_ops *tr = ctx->tr[t];
                if ((tr->flags & TR_SPINS) && layout == LAYOUT_1CPU)
                    continue;
                char n1[32], n2[32], what[96];
                snprintf(n1, sizeof(n1), "p%lu", ctx->seq++);
                snprintf(n2, sizeof(n2), "p%lu", ctx->seq++);
                snprintf(what, sizeof(what), "pingpong %s %s rep %d", tr->name, lay, rep + 1);
                struct tr_params p1 = {o->rtt_size, o->depth, 1, 1, n1};
                struct tr_params p2 = {o->rtt_size, o->depth, 1, 1, n2};
                struct pp_job j = {tr, NULL, NULL, o->rtt_size, warm, o->rtt_iters, sh};
                const char *why = NULL;
                int rc = tr->open(&p1, &j.there, &why);
                if (rc == 0) {
                    rc = tr->open(&p2, &j.back, &why);
                    if (rc < 0)
                        tr->close(j.there);
                }
                if (rc == -ENOTSUP) {
                    res_note("pingpong: %s skipped: %s", tr->name, why ? why : "not supported");
                    continue;
                }
                if (rc < 0) {
                    res_error("%s: open: %s", what, strerror(-rc));
                    result = -1;
                    continue;
                }
                memset(sh, 0, sizeof(*sh));
                bench_barrier_init(&sh->bar, 2);
                rc = bench_run_procs(ctx, 2, cpus, pp_body, &j, what);
                tr->close(j.there);
                tr->close(j.back);
                if (rc == -EINTR) {
                    result = -EINTR;
                    break;
                }
                if (rc < 0 || sh->done != j.n) {
                    if (rc == 0)
                        res_error("%s: pinger did not report", what);
                    result = -1;
                    continue;
                }
                memcpy(sorted, sh->rtt_ns, j.n * sizeof(double));
                bench_sort(sorted, j.n);
                double med = bench_quantile_sorted(sorted, j.n, 0.5) / 1e3;
                res_add("pingpong", tr->name, o->rtt_size, lay, "rtt_median_us", med, "us", rep);
                res_add("pingpong", tr->name, o->rtt_size, lay, "rtt_p99_us",
                        bench_quantile_sorted(sorted, j.n, 0.99) / 1e3, "us", rep);
                res_add("pingpong", tr->name, o->rtt_size, lay, "rtt_p999_us",
                        bench_quantile_sorted(sorted, j.n, 0.999) / 1e3, "us", rep);
                for (unsigned long k = 0; k < j.n; k++)
                    sorted[k] /= 1e3;
                res_dist("pingpong", tr->name, lay, sorted, j.n);
                fprintf(stderr, " %s %.3gus", tr->name, med);
            }
            fprintf(stderr, "\n");
        }
    }
    bench_shared_free(sorted, o->rtt_iters * sizeof(double));
    bench_shared_free(sh, shsize);
    return result;
}
