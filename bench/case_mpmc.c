/*
 * case_mpmc.c — many producers to many consumers on one queue (4 x 4 by default), 16 B.
 *
 * Every producer sends its share of the messages, stamped with its number and a sequence
 * number, then one "stop" message; every consumer takes messages until it has taken one stop.
 * Because each queue is FIFO, a producer's stop comes after all its messages, so when all
 * stops are taken all messages are. Consumers check on the way that each producer's sequence
 * numbers only increase (no duplicate, no reordering); the orchestrator then checks that the
 * counts and the sum of all stamps add up (nothing lost). Throughput is all messages over the
 * time from the first process leaving the start barrier to the last consumer finishing.
 *
 * Layout: producers on one CPU and consumers on the other ("2cpu"), as in the other cases;
 * with "1cpu" everyone shares one CPU. The 2cpu layout also runs "loaded": the same, beside two
 * CPU hogs, one pinned to each CPU (hogs.c), so that more processes are runnable than there
 * are CPUs on both sides and a waiter that spins while its peer is not running wastes time the
 * peer needs. The ring is single-producer only and does not take part.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define MAX_SIDE 16

struct mpmc_proc {
    int64_t t_start, t_end;
    uint64_t count, sum;
    uint64_t pad[4]; /* one cache line each */
};

struct mpmc_shared {
    struct bench_barrier bar;
    struct mpmc_proc proc[2 * MAX_SIDE];
};

struct mpmc_job {
    const struct tr_ops *t;
    struct tr_chan *c;
    unsigned producers, consumers;
    unsigned long per_producer[MAX_SIDE];
    struct mpmc_shared *sh;
};

static int mpmc_producer(struct mpmc_job *j, unsigned p, void *buf)
{
    struct mpmc_proc *me = &j->sh->proc[p];
    bench_barrier_wait(&j->sh->bar);
    me->t_start = bench_now();
    for (unsigned long seq = 0; seq < j->per_producer[p]; seq++) {
        msg_stamp(buf, 16, MSG_WORD(p, seq));
        int rc = j->t->send(j->c, 1, buf, 16, 0);
        if (rc < 0)
            return bench_child_fail("%s: producer %u, message %lu: %s", j->t->name, p, seq,
                                    strerror(-rc));
    }
    msg_stamp(buf, 16, MSG_STOP_BIT | MSG_WORD(p, 0));
    int rc = j->t->send(j->c, 1, buf, 16, 0);
    if (rc < 0)
        return bench_child_fail("%s: producer %u, stop: %s", j->t->name, p, strerror(-rc));
    me->t_end = bench_now();
    me->count = j->per_producer[p];
    return 0;
}

static int mpmc_consumer(struct mpmc_job *j, unsigned k, void *buf)
{
    struct mpmc_proc *me = &j->sh->proc[MAX_SIDE + k];
    uint64_t next[MAX_SIDE] = {0}; /* lowest sequence number still possible per producer */
    uint64_t count = 0, sum = 0;
    bench_barrier_wait(&j->sh->bar);
    me->t_start = bench_now();
    for (;;) {
        ssize_t r = j->t->recv(j->c, 0, buf, 16, 0, NULL);
        if (r < 0)
            return bench_child_fail("%s: consumer %u: %s", j->t->name, k, strerror((int) -r));
        uint64_t w = 0;
        if (r != 16 || msg_check(buf, 16, &w) != 0)
            return bench_child_fail("%s: consumer %u: corrupted message (%zd bytes)", j->t->name, k,
                                    r);
        if (w & MSG_STOP_BIT)
            break;
        unsigned p = (unsigned) (w >> 48);
        uint64_t seq = w & 0xffffffffffffull;
        if (p >= j->producers || seq >= j->per_producer[p])
            return bench_child_fail("%s: consumer %u: message from nowhere (%#llx)", j->t->name, k,
                                    (unsigned long long) w);
        if (seq < next[p])
            return bench_child_fail("%s: consumer %u: producer %u's message %llu after %llu "
                                    "(duplicated or reordered)",
                                    j->t->name, k, p, (unsigned long long) seq,
                                    (unsigned long long) next[p] - 1);
        next[p] = seq + 1;
        count++;
        sum += w;
    }
    me->t_end = bench_now();
    me->count = count;
    me->sum = sum;
    return 0;
}

static int mpmc_body(int i, void *arg)
{
    struct mpmc_job *j = arg;
    int rc = j->t->attach(j->c);
    if (rc < 0)
        return bench_child_fail("%s: attach: %s", j->t->name, strerror(-rc));
    void *buf = bench_buf_alloc(16);
    if ((unsigned) i < j->producers)
        rc = mpmc_producer(j, (unsigned) i, buf);
    else
        rc = mpmc_consumer(j, (unsigned) i - j->producers, buf);
    bench_buf_free(buf);
    j->t->detach(j->c);
    return rc;
}

int case_mpmc_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    unsigned layouts = o->layouts ? o->layouts : LAYOUT_2CPU;
    if (!ctx->two_cpus && (layouts & LAYOUT_2CPU)) {
        res_note("mpmc: only one CPU available; run on one CPU instead");
        layouts = LAYOUT_1CPU;
    }
    unsigned np = o->mpmc_procs, nc = o->mpmc_procs;
    if (np > MAX_SIDE)
        np = nc = MAX_SIDE;
    const size_t size = 16;
    int usable[BENCH_MAX_TR];
    for (int t = 0; t < ctx->ntr; t++) {
        char name[32];
        snprintf(name, sizeof(name), "d%lu", ctx->seq++);
        struct tr_params p = {size, o->depth, np, nc, name};
        const char *why = NULL;
        long d = bench_measure_depth(ctx->tr[t], &p, "mpmc", &why);
        usable[t] = d > 0;
        if (d == -ENOTSUP)
            res_note("mpmc: %s skipped: %s", ctx->tr[t]->name, why ? why : "not supported");
        else if (d <= 0)
            res_error("mpmc: %s cannot be opened: %s", ctx->tr[t]->name,
                      d < 0 ? strerror((int) -d) : "holds no message");
    }

    struct mpmc_shared *sh = bench_shared_alloc(sizeof(*sh));
    int result = 0;
    for (int rep = 0; rep < o->reps && result != -EINTR; rep++) {
        for (unsigned layout = LAYOUT_2CPU; layout <= LAYOUT_1CPU && result != -EINTR;
             layout <<= 1) {
            if (!(layouts & layout))
                continue;
            /* The two-CPU layout runs twice: as it is, and "loaded", beside two CPU hogs. */
            for (int loaded = 0; loaded <= (layout == LAYOUT_2CPU) && result != -EINTR; loaded++) {
                const char *lay = loaded ? "loaded" : bench_layout_name(layout);
                /* A quarter of the messages beside the hogs: everyone runs at half speed or less,
                 * and make bench must stay under three minutes. */
                const unsigned long total = loaded ? o->mpmc_msgs / 4 : o->mpmc_msgs;
                int cpus[2 * MAX_SIDE];
                for (unsigned i = 0; i < np + nc; i++)
                    cpus[i] = bench_layout_cpu(ctx, layout, i < np ? 0 : 1);
                fprintf(stderr, "mpmc     rep %d/%d %s %uPx%uC:", rep + 1, o->reps, lay, np, nc);
                for (int t = 0; t < ctx->ntr; t++) {
                    const struct tr_ops *tr = ctx->tr[t];
                    if (!usable[t])
                        continue;
                    char name[32], what[96];
                    snprintf(name, sizeof(name), "m%lu", ctx->seq++);
                    snprintf(what, sizeof(what), "mpmc %s %s rep %d", tr->name, lay, rep + 1);
                    struct tr_params p = {size, o->depth, np, nc, name};
                    struct mpmc_job j;
                    memset(&j, 0, sizeof(j));
                    j.t = tr;
                    j.producers = np;
                    j.consumers = nc;
                    j.sh = sh;
                    uint64_t want_sum = 0;
                    for (unsigned k = 0; k < np; k++) {
                        j.per_producer[k] = total / np + (k < total % np);
                        uint64_t n = j.per_producer[k];
                        want_sum += ((uint64_t) k << 48) * n + n * (n - (n > 0)) / 2;
                    }
                    const char *why = NULL;
                    int rc = tr->open(&p, &j.c, &why);
                    if (rc < 0) {
                        res_error("%s: open: %s", what, strerror(-rc));
                        result = -1;
                        continue;
                    }
                    memset(sh, 0, sizeof(*sh));
                    bench_barrier_init(&sh->bar, np + nc);
                    pid_t hogs[BENCH_HOGS];
                    if (loaded && (rc = bench_hogs_start(ctx, hogs)) < 0) {
                        res_error("%s: starting the CPU hogs: %s", what, strerror(-rc));
                        tr->close(j.c);
                        result = -1;
                        continue;
                    }
                    rc = bench_run_procs(ctx, (int) (np + nc), cpus, mpmc_body, &j, what);
                    if (loaded)
                        bench_hogs_stop(hogs, BENCH_HOGS);
                    tr->close(j.c);
                    if (rc == -EINTR) {
                        result = -EINTR;
                        break;
                    }
                    if (rc < 0) {
                        result = -1;
                        continue;
                    }
                    uint64_t got = 0, sum = 0;
                    int64_t start = INT64_MAX, end = 0;
                    for (unsigned k = 0; k < np + nc; k++) {
                        const struct mpmc_proc *pr = &sh->proc[k < np ? k : MAX_SIDE + k - np];
                        if (pr->t_start < start)
                            start = pr->t_start;
                        if (k >= np) {
                            got += pr->count;
                            sum += pr->sum;
                            if (pr->t_end > end)
                                end = pr->t_end;
                        }
                    }
                    if (got != total || sum != want_sum) {
                        res_error(
                            "%s: consumers took %llu messages of %lu (stamp sum %s): messages "
                            "lost or duplicated",
                            what, (unsigned long long) got, total,
                            sum == want_sum ? "right" : "wrong");
                        result = -1;
                        continue;
                    }
                    double rate = (double) got / ((double) (end - start) / 1e9);
                    res_add("mpmc", tr->name, size, lay, "msgs_per_s", rate, "msg/s", rep);
                    fprintf(stderr, " %s %.3gM/s", tr->name, rate / 1e6);
                }
                fprintf(stderr, "\n");
            }
        }
    }
    bench_shared_free(sh, sizeof(*sh));
    return result;
}
