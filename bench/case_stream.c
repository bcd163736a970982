/*
 * case_stream.c — streaming throughput, one producer process to one consumer process.
 *
 * For each payload size (16 B to 64 KiB by default) and each layout, the producer sends as fast
 * as the transport takes messages and the consumer receives them. A warm-up first pushes
 * depth messages through (page faults, caches, the mailbox's index), then both processes meet
 * at a barrier with the queue empty, and the consumer times the rest: messages/s and MB/s
 * from the barrier to the last message received. Every message is checked on arrival (its
 * sequence number must be the next one, its stamp intact), so a lost, duplicated, reordered
 * or corrupted message fails the run instead of flattering it.
 *
 * The order of loops is repetition, layout, size, transport: all transports of one
 * repetition run close together in time, which is what makes their ratio meaningful.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

struct stream_shared {
    struct bench_barrier bar;
    int64_t t0, t1; /* consumer: timed start and end */
    uint64_t received;
};

struct stream_job {
    const struct tr_ops *t;
    struct tr_chan *c;
    size_t size;
    unsigned long warm, n;
    struct stream_shared *sh;
};

static int producer(struct stream_job *j, void *buf)
{
    unsigned long total = j->warm + j->n;
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long seq = 0; seq < total; seq++) {
        if (seq == j->warm)
            bench_barrier_wait(&j->sh->bar); /* the consumer has drained the warm-up */
        msg_stamp(buf, j->size, MSG_WORD(0, seq));
        int rc = j->t->send(j->c, 1, buf, j->size, 0);
        if (rc < 0)
            return bench_child_fail("%s: send of message %lu: %s", j->t->name, seq, strerror(-rc));
    }
    return 0;
}

static int consumer(struct stream_job *j, void *buf)
{
    unsigned long total = j->warm + j->n;
    int64_t t0 = 0;
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long seq = 0; seq < total; seq++) {
        if (seq == j->warm) {
            bench_barrier_wait(&j->sh->bar);
            t0 = bench_now();
        }
        ssize_t r = j->t->recv(j->c, 0, buf, j->size, 0, NULL);
        if (r < 0)
            return bench_child_fail("%s: receive of message %lu: %s", j->t->name, seq,
                                    strerror((int) -r));
        uint64_t w = 0;
        if ((size_t) r != j->size || msg_check(buf, j->size, &w) != 0)
            return bench_child_fail("%s: message %lu corrupted (%zd bytes, stamp %#llx)",
                                    j->t->name, seq, r, (unsigned long long) w);
        if (w != MSG_WORD(0, seq))
            return bench_child_fail("%s: expected message %lu, got %llu (lost, duplicated or "
                                    "reordered)",
                                    j->t->name, seq, (unsigned long long) (w & 0xffffffffffff));
    }
    int64_t t1 = bench_now();
    j->sh->t0 = t0;
    j->sh->t1 = t1;
    j->sh->received = j->n;
    return 0;
}

static int stream_body(int i, void *arg)
{
    struct stream_job *j = arg;
    int rc = j->t->attach(j->c);
    if (rc < 0)
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    void *buf = bench_buf_alloc(j->size);
    memset(buf, 0x5a, j->size);
    rc = i == 0 ? producer(j, buf) : consumer(j, buf);
    bench_buf_free(buf);
    j->t->detach(j->c);
    return rc;
}

static unsigned long msgs_for(const struct bench_opts *o, size_t size)
{
    unsigned long n = o->stream_msgs;
    if (o->stream_bytes / size < n)
        n = (unsigned long) (o->stream_bytes / size);
    return n < o->stream_min ? o->stream_min : n;
}

int case_stream_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    unsigned layouts = o->layouts ? o->layouts : (LAYOUT_2CPU | LAYOUT_1CPU);
    if (!ctx->two_cpus && (layouts & LAYOUT_2CPU)) {
        res_note("stream: only one CPU available; the two-CPU layout is skipped");
        layouts &= ~LAYOUT_2CPU;
    }
    /* Which transports serve which sizes, and the depth each really has; with
     * --equal-depth, every transport then gets the smallest depth any of them reached. */
    int usable[BENCH_MAX_TR][BENCH_MAX_SIZES];
    unsigned long depth[BENCH_MAX_SIZES];
    for (int s = 0; s < o->nsizes; s++) {
        long least = (long) o->depth;
        depth[s] = o->depth;
        for (int pass = 0; pass < 2; pass++) {
            for (int t = 0; t < ctx->ntr; t++) {
                if (pass == 1 && !usable[t][s])
                    continue;
                char name[32];
                snprintf(name, sizeof(name), "d%lu", ctx->seq++);
                struct tr_params p = {o->sizes[s], depth[s], 1, 1, name};
                const char *why = NULL;
                long d = bench_measure_depth(ctx->tr[t], &p, "stream", &why);
                usable[t][s] = d > 0;
                if (d > 0 && d < least)
                    least = d;
                if (d == -ENOTSUP)
                    res_note("stream: %s skipped at %zu B: %s", ctx->tr[t]->name, o->sizes[s],
                             why ? why : "not supported");
                else if (d <= 0)
                    res_error("stream: %s cannot be opened at %zu B: %s", ctx->tr[t]->name,
                              o->sizes[s], d < 0 ? strerror((int) -d) : "holds no message");
            }
            if (!o->equal_depth || (unsigned long) least >= depth[s])
                break;
            depth[s] = (unsigned long) least;
            res_note("stream: --equal-depth: every transport asked for %ld messages at %zu B",
                     least, o->sizes[s]);
        }
    }
    if (layouts & LAYOUT_1CPU)
        for (int t = 0; t < ctx->ntr; t++)
            if (ctx->tr[t]->flags & TR_SPINS)
                res_note("%s is not run with both processes on one CPU: a busy-polling "
                         "waiter only measures the scheduler's time slice there",
                         ctx->tr[t]->name);

    struct stream_shared *sh = bench_shared_alloc(sizeof(*sh));
    int result = 0;
    for (int rep = 0; rep < o->reps && result != -EINTR; rep++) {
        for (unsigned layout = LAYOUT_2CPU; layout <= LAYOUT_1CPU; layout <<= 1) {
            if (!(layouts & layout))
                continue;
            int cpus[2] = {bench_layout_cpu(ctx, layout, 0), bench_layout_cpu(ctx, layout, 1)};
            for (int s = 0; s < o->nsizes && result != -EINTR; s++) {
                size_t size = o->sizes[s];
                fprintf(stderr, "stream   rep %d/%d %s %6zu B:", rep + 1, o->reps,
                        bench_layout_name(layout), size);
                for (int t = 0; t < ctx->ntr; t++) {
                    const struct tr_ops *tr = ctx->tr[t];
                    if (!usable[t][s] || ((tr->flags & TR_SPINS) && layout == LAYOUT_1CPU))
                        continue;
                    char name[32], what[96];
                    snprintf(name, sizeof(name), "s%lu", ctx->seq++);
                    snprintf(what, sizeof(what), "stream %s %zu B %s rep %d", tr->name, size,
                             bench_layout_name(layout), rep + 1);
                    struct tr_params p = {size, depth[s], 1, 1, name};
                    struct stream_job j = {tr, NULL, size, 0, msgs_for(o, size), sh};
                    /* warm < n always (n >= 1), so both barriers are always reached */
                    j.warm = depth[s] < j.n / 2 ? depth[s] : j.n / 2;
                    const char *why = NULL;
                    int rc = tr->open(&p, &j.c, &why);
                    if (rc < 0) {
                        res_error("%s: open: %s", what, strerror(-rc));
                        result = -1;
                        continue;
                    }
                    memset(sh, 0, sizeof(*sh));
                    bench_barrier_init(&sh->bar, 2);
                    rc = bench_run_procs(ctx, 2, cpus, stream_body, &j, what);
                    tr->close(j.c);
                    if (rc == -EINTR) {
                        result = -EINTR;
                        break;
                    }
                    if (rc < 0 || sh->received != j.n || sh->t1 <= sh->t0) {
                        if (rc == 0)
                            res_error("%s: consumer did not report", what);
                        result = -1;
                        continue;
                    }
                    double secs = (double) (sh->t1 - sh->t0) / 1e9;
                    double rate = (double) j.n / secs;
                    const char *lay = bench_layout_name(layout);
                    res_add("stream", tr->name, size, lay, "msgs_per_s", rate, "msg/s", rep);
                    res_add("stream", tr->name, size, lay, "MB_per_s", rate * (double) size / 1e6,
                            "MB/s", rep);
                    fprintf(stderr, " %s %.3gM/s", tr->name, rate / 1e6);
                }
                fprintf(stderr, "\n");
            }
        }
    }
    bench_shared_free(sh, sizeof(*sh));
    return result;
}
