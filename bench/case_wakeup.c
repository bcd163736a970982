/*
 * case_wakeup.c — the cost of waking a receiver that is asleep.
 *
 * The consumer waits on an empty queue; the producer sleeps for a gap (300 µs by default, far
 * longer than postbox spins before it sleeps, 20 µs), reads the clock, sends one message and
 * reads the clock again; the consumer reads the clock as soon as its receive returns. Two
 * figures per message: the wake-up latency (send called -> receive returned, across the two
 * processes on the same CLOCK_MONOTONIC) and what the send itself cost the sender, which is
 * where a wake-up system call shows. On one CPU the latency also contains the switch from
 * sender to receiver. The spin ring never sleeps: its figures (two CPUs only) are the
 * cache-line transfer a sleeping receiver is compared with.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

struct wake_shared {
    struct bench_barrier bar;
    unsigned long done;
    int64_t *t_call, *t_sent, *t_woke; /* point into the arrays below */
    int64_t arrays[];
};

struct wake_job {
    const struct tr_ops *t;
    struct tr_chan *c;
    unsigned long warm, n;
    unsigned long gap_ns;
    struct wake_shared *sh;
};

static int waker(struct wake_job *j, void *buf)
{
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long k = 0; k < j->warm + j->n; k++) {
        struct timespec gap = {0, (long) j->gap_ns};
        nanosleep(&gap, NULL);
        msg_stamp(buf, 16, MSG_WORD(0, k));
        int64_t t0 = bench_now();
        int rc = j->t->send(j->c, 1, buf, 16, 0);
        int64_t t1 = bench_now();
        if (rc < 0)
            return bench_child_fail("%s: send %lu: %s", j->t->name, k, strerror(-rc));
        if (k >= j->warm) {
            j->sh->t_call[k - j->warm] = t0;
            j->sh->t_sent[k - j->warm] = t1;
        }
    }
    return 0;
}

static int sleeper(struct wake_job *j, void *buf)
{
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long k = 0; k < j->warm + j->n; k++) {
        ssize_t r = j->t->recv(j->c, 0, buf, 16, 0, NULL);
        int64_t t = bench_now();
        if (r < 0)
            return bench_child_fail("%s: receive %lu: %s", j->t->name, k, strerror((int) -r));
        uint64_t w = 0;
        if (r != 16 || msg_check(buf, 16, &w) != 0 || w != MSG_WORD(0, k))
            return bench_child_fail("%s: message %lu lost or corrupted", j->t->name, k);
        if (k >= j->warm)
            j->sh->t_woke[k - j->warm] = t;
    }
    j->sh->done = j->n;
    return 0;
}

static int wake_body(int i, void *arg)
{
    struct wake_job *j = arg;
    int rc = j->t->attach(j->c);
    if (rc < 0)
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    void *buf = bench_buf_alloc(16);
    rc = i == 0 ? waker(j, buf) : sleeper(j, buf);
    bench_buf_free(buf);
    j->t->detach(j->c);
    return rc;
}

int case_wakeup_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    unsigned layouts = o->layouts ? o->layouts : (LAYOUT_2CPU | LAYOUT_1CPU);
    if (!ctx->two_cpus && (layouts & LAYOUT_2CPU)) {
        res_note("wakeup: only one CPU available; the two-CPU layout is skipped");
        layouts &= ~LAYOUT_2CPU;
    }
    unsigned long n = o->wake_iters;
    size_t shsize = sizeof(struct wake_shared) + 3 * n * sizeof(int64_t);
    struct wake_shared *sh = bench_shared_alloc(shsize);
    double *lat = bench_shared_alloc(n * sizeof(double));
    double *cost = bench_shared_alloc(n * sizeof(double));
    int result = 0;
    for (int rep = 0; rep < o->reps && result != -EINTR; rep++) {
        for (unsigned layout = LAYOUT_2CPU; layout <= LAYOUT_1CPU && result != -EINTR;
             layout <<= 1) {
            if (!(layouts & layout))
                continue;
            const char *lay = bench_layout_name(layout);
            int cpus[2] = {bench_layout_cpu(ctx, layout, 0), bench_layout_cpu(ctx, layout, 1)};
            fprintf(stderr, "wakeup   rep %d/%d %s gap %lu us:", rep + 1, o->reps, lay,
                    o->wake_gap_us);
            for (int t = 0; t < ctx->ntr; t++) {
                const struct tr_ops *tr = ctx->tr[t];
                if ((tr->flags & TR_SPINS) && layout == LAYOUT_1CPU)
                    continue;
                char name[32], what[96];
                snprintf(name, sizeof(name), "w%lu", ctx->seq++);
                snprintf(what, sizeof(what), "wakeup %s %s rep %d", tr->name, lay, rep + 1);
                struct tr_params p = {16, o->depth, 1, 1, name};
                struct wake_job j = {tr, NULL, 5, n, o->wake_gap_us * 1000, sh};
                const char *why = NULL;
                int rc = tr->open(&p, &j.c, &why);
                if (rc == -ENOTSUP) {
                    res_note("wakeup: %s skipped: %s", tr->name, why ? why : "not supported");
                    continue;
                }
                if (rc < 0) {
                    res_error("%s: open: %s", what, strerror(-rc));
                    result = -1;
                    continue;
                }
                memset(sh, 0, sizeof(*sh));
                sh->t_call = sh->arrays;
                sh->t_sent = sh->arrays + n;
                sh->t_woke = sh->arrays + 2 * n;
                bench_barrier_init(&sh->bar, 2);
                rc = bench_run_procs(ctx, 2, cpus, wake_body, &j, what);
                tr->close(j.c);
                if (rc == -EINTR) {
                    result = -EINTR;
                    break;
                }
                if (rc < 0 || sh->done != n) {
                    if (rc == 0)
                        res_error("%s: receiver did not report", what);
                    result = -1;
                    continue;
                }
                for (unsigned long k = 0; k < n; k++) {
                    lat[k] = (double) (sh->t_woke[k] - sh->t_call[k]) / 1e3;
                    cost[k] = (double) (sh->t_sent[k] - sh->t_call[k]) / 1e3;
                }
                bench_sort(lat, n);
                bench_sort(cost, n);
                double med = bench_quantile_sorted(lat, n, 0.5);
                res_add("wakeup", tr->name, 16, lay, "wake_median_us", med, "us", rep);
                res_add("wakeup", tr->name, 16, lay, "wake_p99_us",
                        bench_quantile_sorted(lat, n, 0.99), "us", rep);
                res_add("wakeup", tr->name, 16, lay, "send_median_us",
                        bench_quantile_sorted(cost, n, 0.5), "us", rep);
                fprintf(stderr, " %s %.3gus", tr->name, med);
            }
            fprintf(stderr, "\n");
        }
    }
    bench_shared_free(cost, n * sizeof(double));
    bench_shared_free(lat, n * sizeof(double));
    bench_shared_free(sh, shsize);
    return result;
}
