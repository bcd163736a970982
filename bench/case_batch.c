/*
 * case_batch.c — streaming with batches: pbx_sendv() and pbx_recvv() moving BATCH_N messages per
 * call, beside postbox one message per call and the bare spin ring, in the same repetition.
 *
 * One producer process and one consumer process on two CPUs, 16 B messages (the first --sizes
 * value under 4 KiB is used instead, if 16 B is not listed), a queue of --depth messages, and the
 * method of case_stream.c: a warm-up of depth messages, a barrier with the queue empty, then the
 * consumer times the rest, checking every message's sequence number and stamp. The three rows
 * run back to back within each repetition, and the ratios (batch ÷ postbox, batch ÷ ring) are
 * taken per repetition before the median, so that the load of the moment cancels out.
 *
 * Rows: "postbox" and "ring" through their transports (tr_postbox.c, tr_ring.c), exactly as the
 * stream case drives them; "postbox-b32" opens a mailbox of the same shape as tr_postbox.c does
 * and calls the batch API directly (the transport table moves one message per call). Its table
 * is written by case_batch_report(), called from report.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "postbox.h"

#define BATCH_N  32
#define ROW_PBX  "postbox"
#define ROW_RING "ring"
#define ROW_B32  "postbox-b32"

struct batch_shared {
    struct bench_barrier bar;
    int64_t t0, t1;
    uint64_t received;
};

struct batch_job {
    const struct tr_ops *t; /* NULL: the batch row */
    struct tr_chan *c;
    const char *name; /* the batch row's mailbox */
    size_t size;
    unsigned long warm, n;
    struct batch_shared *sh;
};

static int check(const char *row, const void *buf, ssize_t r, size_t size, unsigned long seq)
{
    uint64_t w = 0;
    if ((size_t) r != size || msg_check(buf, size, &w) != 0)
        return bench_child_fail("%s: message %lu corrupted (%zd bytes)", row, seq, r);
    if (w != MSG_WORD(0, seq))
        return bench_child_fail("%s: expected message %lu, got %llu (lost, duplicated or "
                                "reordered)",
                                row, seq, (unsigned long long) (w & 0xffffffffffff));
    return 0;
}

/* ---- one message per call, through a transport ---------------------------------------------- */

static int single_body(struct batch_job *j, int producer, void *buf)
{
    unsigned long total = j->warm + j->n;
    bench_barrier_wait(&j->sh->bar);
    int64_t t0 = 0;
    for (unsigned long seq = 0; seq < total; seq++) {
        if (seq == j->warm) {
            bench_barrier_wait(&j->sh->bar);
            t0 = bench_now();
        }
        if (producer) {
            msg_stamp(buf, j->size, MSG_WORD(0, seq));
            int rc = j->t->send(j->c, 1, buf, j->size, 0);
            if (rc < 0)
                return bench_child_fail("%s: send %lu: %s", j->t->name, seq, strerror(-rc));
        } else {
            ssize_t r = j->t->recv(j->c, 0, buf, j->size, 0, NULL);
            if (r < 0)
                return bench_child_fail("%s: recv %lu: %s", j->t->name, seq, strerror((int) -r));
            if (check(j->t->name, buf, r, j->size, seq))
                return -1;
        }
    }
    if (!producer) {
        j->sh->t0 = t0;
        j->sh->t1 = bench_now();
        j->sh->received = j->n;
    }
    return 0;
}

/* ---- BATCH_N messages per call ----------------------------------------------------------------
 */

static int batch_producer(struct batch_job *j, pbx_t *q, struct pbx_msgv *v)
{
    unsigned long total = j->warm + j->n;
    bench_barrier_wait(&j->sh->bar);
    if (j->warm == 0)
        bench_barrier_wait(&j->sh->bar);
    for (unsigned long seq = 0; seq < total;) {
        /* A batch never straddles the end of the warm-up: the barrier comes between. */
        unsigned long end = seq < j->warm ? j->warm : total;
        size_t k = end - seq < BATCH_N ? end - seq : BATCH_N;
        for (size_t i = 0; i < k; i++)
            msg_stamp(v[i].data, j->size, MSG_WORD(0, seq + i));
        ssize_t r = pbx_sendv(q, v, k, 0);
        if (r != (ssize_t) k)
            return bench_child_fail("%s: sendv at %lu: %zd (%s)", ROW_B32, seq, r,
                                    pbx_strerror(r < 0 ? (int) r : (int) v[r].result));
        seq += k;
        if (seq == j->warm)
            bench_barrier_wait(&j->sh->bar);
    }
    return 0;
}

static int batch_consumer(struct batch_job *j, pbx_t *q, struct pbx_msgv *v)
{
    unsigned long total = j->warm + j->n;
    int64_t t0 = 0;
    bench_barrier_wait(&j->sh->bar);
    if (j->warm == 0) {
        bench_barrier_wait(&j->sh->bar);
        t0 = bench_now();
    }
    for (unsigned long seq = 0; seq < total;) {
        unsigned long end = seq < j->warm ? j->warm : total;
        size_t want = end - seq < BATCH_N ? end - seq : BATCH_N;
        ssize_t k = pbx_recvv(q, 0, v, want, 0);
        if (k < 1)
            return bench_child_fail("%s: recvv at %lu: %s", ROW_B32, seq, pbx_strerror((int) k));
        for (ssize_t i = 0; i < k; i++)
            if (check(ROW_B32, v[i].data, v[i].result, j->size, seq + (unsigned long) i))
                return -1;
        seq += (unsigned long) k;
        if (seq == j->warm) {
            bench_barrier_wait(&j->sh->bar);
            t0 = bench_now();
        }
    }
    j->sh->t0 = t0;
    j->sh->t1 = bench_now();
    j->sh->received = j->n;
    return 0;
}

static int batch_body(struct batch_job *j, int producer)
{
    pbx_t *q;
    int rc = pbx_open(j->name, 0, NULL, &q);
    if (rc < 0)
        return bench_child_fail("%s: open: %s", ROW_B32, pbx_strerror(rc));
    struct pbx_msgv v[BATCH_N];
    void *bufs[BATCH_N];
    for (int i = 0; i < BATCH_N; i++) {
        bufs[i] = bench_buf_alloc(j->size);
        memset(bufs[i], 0x5a, j->size);
        v[i].type = 1;
        v[i].data = bufs[i];
        v[i].len = j->size;
    }
    rc = producer ? batch_producer(j, q, v) : batch_consumer(j, q, v);
    for (int i = 0; i < BATCH_N; i++)
        bench_buf_free(bufs[i]);
    pbx_close(q);
    return rc;
}

static int body(int i, void *arg)
{
    struct batch_job *j = arg;
    if (!j->t)
        return batch_body(j, i == 0);
    int rc = j->t->attach(j->c);
    if (rc < 0)
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    void *buf = bench_buf_alloc(j->size);
    memset(buf, 0x5a, j->size);
    rc = single_body(j, i == 0, buf);
    bench_buf_free(buf);
    j->t->detach(j->c);
    return rc;
}

/* ---- the case ----------------------------------------------------------------------------- */

static size_t batch_size(const struct bench_opts *o)
{
    for (int s = 0; s < o->nsizes; s++)
        if (o->sizes[s] == 16)
            return 16;
    for (int s = 0; s < o->nsizes; s++)
        if (o->sizes[s] < 4096)
            return o->sizes[s];
    return 16;
}

static const struct tr_ops *selected(const struct bench_ctx *ctx, const char *name)
{
    for (int t = 0; t < ctx->ntr; t++)
        if (!strcmp(ctx->tr[t]->name, name))
            return ctx->tr[t];
    return NULL;
}

/* Run one row of one repetition; records msgs_per_s. 0, -1 or -EINTR. */
static int run_row(struct bench_ctx *ctx, const struct tr_ops *t, size_t size, int rep,
                   struct batch_shared *sh)
{
    const struct bench_opts *o = ctx->opt;
    const char *row = t ? t->name : ROW_B32;
    char name[32], what[96];
    snprintf(name, sizeof(name), "b%lu", ctx->seq++);
    snprintf(what, sizeof(what), "batch %s %zu B rep %d", row, size, rep + 1);
    unsigned long n = o->stream_msgs;
    if (o->stream_bytes / size < n)
        n = (unsigned long) (o->stream_bytes / size);
    if (n < o->stream_min)
        n = o->stream_min;
    struct batch_job j = {t, NULL, name, size, o->depth < n / 2 ? o->depth : n / 2, n, sh};
    pbx_t *creator = NULL;
    int rc;
    if (t) {
        struct tr_params p = {size, o->depth, 1, 1, name};
        const char *why = NULL;
        rc = t->open(&p, &j.c, &why);
    } else {
        struct pbx_options opt;
        pbx_options_init(&opt); /* the shape tr_postbox.c gives a stream */
        opt.max_msgs = (uint32_t) o->depth;
        opt.max_msg_size = (uint32_t) size;
        opt.max_bytes = (uint64_t) o->depth * size;
        rc = pbx_open(name, PBX_CREATE | PBX_EXCL, &opt, &creator);
    }
    if (rc < 0) {
        res_error("%s: open: %s", what, strerror(-rc));
        return -1;
    }
    memset(sh, 0, sizeof(*sh));
    bench_barrier_init(&sh->bar, 2);
    int cpus[2] = {bench_layout_cpu(ctx, LAYOUT_2CPU, 0), bench_layout_cpu(ctx, LAYOUT_2CPU, 1)};
    rc = bench_run_procs(ctx, 2, cpus, body, &j, what);
    if (t) {
        t->close(j.c);
    } else {
        pbx_remove(creator);
        pbx_close(creator);
    }
    if (rc < 0)
        return rc;
    if (sh->received != n || sh->t1 <= sh->t0) {
        res_error("%s: consumer did not report", what);
        return -1;
    }
    double rate = (double) n / ((double) (sh->t1 - sh->t0) / 1e9);
    res_add("batch", row, size, "2cpu", "msgs_per_s", rate, "msg/s", rep);
    fprintf(stderr, " %s %.3gM/s", row, rate / 1e6);
    return 0;
}

/* CPU time of one process that sends BATCH_N messages and receives them back, over and over:
 * one call per message, then one call per batch. The thread's own CPU clock leaves out the
 * time other programs take from it, so this ratio holds on a loaded machine, where a stream
 * between two CPUs measures the scheduler as much as the queue. Records ns_per_msg (send and
 * receive together) under layout "1proc". */
static int cpu_cost(struct bench_ctx *ctx, size_t size, int rep)
{
    char name[32];
    snprintf(name, sizeof(name), "b%lu", ctx->seq++);
    struct pbx_options opt;
    pbx_options_init(&opt);
    opt.max_msgs = BATCH_N;
    opt.max_msg_size = (uint32_t) size;
    opt.max_bytes = (uint64_t) BATCH_N * size;
    pbx_t *q;
    int rc = pbx_open(name, PBX_CREATE | PBX_EXCL, &opt, &q);
    if (rc < 0) {
        res_error("batch: cpu cost: open: %s", pbx_strerror(rc));
        return -1;
    }
    static unsigned char bufs[BATCH_N][4096];
    struct pbx_msgv v[BATCH_N];
    for (int i = 0; i < BATCH_N; i++) {
        memset(bufs[i], 0x5a, size);
        v[i] = (struct pbx_msgv){1, bufs[i], size, 0};
    }
    unsigned long rounds = ctx->opt->stream_msgs / BATCH_N / 4 + 1;
    double ns[2];
    for (int mode = 0; mode < 2; mode++) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        for (unsigned long r = 0; r < rounds && rc >= 0; r++) {
            if (mode == 1) {
                if ((rc = (int) pbx_sendv(q, v, BATCH_N, 0)) == BATCH_N)
                    rc = (int) pbx_recvv(q, 0, v, BATCH_N, PBX_NOWAIT);
                rc = rc == BATCH_N ? 0 : -EPROTO;
                continue;
            }
            for (int i = 0; i < BATCH_N && rc >= 0; i++)
                rc = pbx_send(q, 1, bufs[i], size, 0);
            for (int i = 0; i < BATCH_N && rc >= 0; i++)
                rc =
                    pbx_recv(q, 0, bufs[i], size, PBX_NOWAIT, NULL) == (ssize_t) size ? 0 : -EPROTO;
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        ns[mode] = ((double) (b.tv_sec - a.tv_sec) * 1e9 + (double) (b.tv_nsec - a.tv_nsec)) /
                   (double) (rounds * BATCH_N);
    }
    pbx_remove(q);
    pbx_close(q);
    if (rc < 0) {
        res_error("batch: cpu cost: a call failed (%s)", pbx_strerror(rc));
        return -1;
    }
    res_add("batch", ROW_PBX, size, "1proc", "ns_per_msg", ns[0], "ns", rep);
    res_add("batch", ROW_B32, size, "1proc", "ns_per_msg", ns[1], "ns", rep);
    fprintf(stderr, " | cpu: %.1f vs %.1f ns/msg", ns[0], ns[1]);
    return 0;
}

int case_batch_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    if (!ctx->two_cpus) {
        res_note("batch: only one CPU available; the batch rows need two");
        return 0;
    }
    size_t size = batch_size(o);
    const struct tr_ops *rows[3] = {selected(ctx, ROW_PBX), NULL, selected(ctx, ROW_RING)};
    struct batch_shared *sh = bench_shared_alloc(sizeof(*sh));
    int result = 0;
    for (int rep = 0; rep < o->reps && result != -EINTR; rep++) {
        fprintf(stderr, "batch    rep %d/%d 2cpu %6zu B:", rep + 1, o->reps, size);
        for (int r = 0; r < 3 && result != -EINTR; r++) {
            if (r != 1 && !rows[r])
                continue; /* a baseline not selected with --transports */
            int rc = run_row(ctx, rows[r], size, rep, sh);
            if (rc < 0)
                result = rc;
        }
        if (result != -EINTR && cpu_cost(ctx, size, rep) < 0)
            result = -1;
        fprintf(stderr, "\n");
    }
    bench_shared_free(sh, sizeof(*sh));
    return result;
}

/* Median of the per-repetition ratio a / b of two rows (NaN when none). */
static double median_ratio(const char *a, const char *b, size_t size, int nrep, int *n)
{
    double va[64], vb[64], r[64];
    if (nrep > 64)
        nrep = 64;
    res_get("batch", a, size, "2cpu", "msgs_per_s", va, nrep);
    res_get("batch", b, size, "2cpu", "msgs_per_s", vb, nrep);
    *n = 0;
    for (int i = 0; i < nrep; i++)
        if (!isnan(va[i]) && !isnan(vb[i]) && vb[i] > 0)
            r[(*n)++] = va[i] / vb[i];
    if (*n == 0)
        return NAN;
    bench_sort(r, (size_t) *n);
    return bench_quantile_sorted(r, (size_t) *n, 0.5);
}

void case_batch_report(FILE *f, const struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    size_t size = batch_size(o);
    double v[64];
    int nrep = o->reps > 64 ? 64 : o->reps;
    if (res_get("batch", ROW_B32, size, "2cpu", "msgs_per_s", v, nrep) == 0)
        return;
    fprintf(f, "\n### Batches, 1 producer → 1 consumer, two CPUs, %zu B, %d per call\n\n", size,
            BATCH_N);
    fprintf(f,
            "pbx_sendv()/pbx_recvv() with %d messages per call, beside one message per call "
            "and the bare ring, in the same repetitions (ratios per repetition, then the "
            "median). Targets: ≥ 3× postbox, ≥ 1× ring.\n\n",
            BATCH_N);
    fprintf(f, "| row | msgs/s (median) | ÷ postbox | ÷ ring |\n|---|---:|---:|---:|\n");
    static const char *const rows[] = {ROW_B32, ROW_PBX, ROW_RING};
    for (int r = 0; r < 3; r++) {
        double x[64];
        int n = 0;
        res_get("batch", rows[r], size, "2cpu", "msgs_per_s", x, nrep);
        double s[64];
        for (int i = 0; i < nrep; i++)
            if (!isnan(x[i]))
                s[n++] = x[i];
        if (n == 0)
            continue;
        bench_sort(s, (size_t) n);
        int np, nr;
        double vp = median_ratio(rows[r], ROW_PBX, size, nrep, &np);
        double vr = median_ratio(rows[r], ROW_RING, size, nrep, &nr);
        char p[32] = "n/a", q[32] = "n/a";
        if (np)
            snprintf(p, sizeof(p), "%.2f", vp);
        if (nr)
            snprintf(q, sizeof(q), "%.2f", vr);
        fprintf(f, "| %s | %.3g M | %s | %s |\n", rows[r],
                bench_quantile_sorted(s, (size_t) n, 0.5) / 1e6, p, q);
    }
    double a[64], b[64], r[64];
    res_get("batch", ROW_PBX, size, "1proc", "ns_per_msg", a, nrep);
    res_get("batch", ROW_B32, size, "1proc", "ns_per_msg", b, nrep);
    int n = 0;
    for (int i = 0; i < nrep; i++)
        if (!isnan(a[i]) && !isnan(b[i]) && b[i] > 0)
            r[n++] = a[i] / b[i];
    if (n == 0)
        return;
    bench_sort(r, (size_t) n);
    fprintf(f,
            "\nCPU time of one process sending %d messages and receiving them back (thread CPU "
            "clock, so the machine's load leaves it alone): one call per message costs %.2f× "
            "one call per batch (median of %d repetitions).\n",
            BATCH_N, bench_quantile_sorted(r, (size_t) n, 0.5), n);
}
