/*
 * case_peers.c — postbox beside the libraries users would pick instead: ZeroMQ, nng,
 * Boost.Interprocess and iceoryx (bench/peers/peers.h), with System V as the kernel's
 * reference. Streaming throughput and round trip at every payload size, producer and
 * consumer on two CPUs, every queue asked for the same depth (256 messages).
 *
 * The loops run repetition, size, peer: all peers of one repetition and size run close
 * together in time, and every figure is also divided by postbox's in the same repetition;
 * the table shows the median of those ratios. Every message is checked on arrival (sequence
 * and stamp; for the zero-copy rows that leave the payload untouched, the sequence word in
 * the first bytes), so a peer that loses or reorders messages fails the run.
 *
 * A peer that was not built (CMake did not find its library) or cannot run (iox-roudi
 * missing) is skipped with one line naming its Debian package. The case is not part of the
 * quick mode unless named with --cases.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "peers.h"

#define PEERS_DEPTH 256

/* ---- postbox and System V through transport.h ------------------------------------------ */

static int pb_attach(struct tr_chan *c, int sender)
{
    (void) sender;
    return tr_postbox_ops.attach(c);
}
static int pb_send(struct tr_chan *c, void *buf, size_t len)
{
    return tr_postbox_ops.send(c, 1, buf, len, 0);
}
static ssize_t pb_recv(struct tr_chan *c, void *buf, size_t cap)
{
    return tr_postbox_ops.recv(c, 0, buf, cap, 0, NULL);
}
const struct peer_ops peer_postbox_ops = {
    "postbox", "postbox", 0, NULL, pb_attach, NULL, pb_send, pb_recv, NULL, NULL,
};

static int sv_attach(struct tr_chan *c, int sender)
{
    (void) sender;
    return tr_sysv_ops.attach(c);
}
static int sv_send(struct tr_chan *c, void *buf, size_t len)
{
    return tr_sysv_ops.send(c, 1, buf, len, 0);
}
static ssize_t sv_recv(struct tr_chan *c, void *buf, size_t cap)
{
    return tr_sysv_ops.recv(c, 0, buf, cap, 0, NULL);
}
const struct peer_ops peer_sysv_ops = {
    "sysv", "System V msgsnd/msgrcv", 0, NULL, sv_attach, NULL, sv_send, sv_recv, NULL, NULL,
};

/* The functions transport.h already has are taken from there at run time. */
static void fill_from(struct peer_ops *p, const struct peer_ops *base, const struct tr_ops *t)
{
    *p = *base;
    p->open = t->open;
    p->detach = t->detach;
    p->close = t->close;
}

/* ---- the peers, in table order --------------------------------------------------------- */

#ifdef PBX_HAVE_ZMQ
#define ZMQ_OPS &peer_zmq_ops
#else
#define ZMQ_OPS NULL
#endif
#ifdef PBX_HAVE_NNG
#define NNG_OPS &peer_nng_ops
#else
#define NNG_OPS NULL
#endif
#ifdef PBX_HAVE_BOOST_IPC
#define BOOST_OPS &peer_boost_ops
#else
#define BOOST_OPS NULL
#endif
#ifdef PBX_HAVE_ICEORYX
#define IOX_OPS         &peer_iox_ops
#define IOX_INPLACE_OPS &peer_iox_inplace_ops
#define IOX_POLL_OPS    &peer_iox_poll_ops
#else
#define IOX_OPS         NULL
#define IOX_INPLACE_OPS NULL
#define IOX_POLL_OPS    NULL
#endif

#define IOX_PKG "iceoryx libiceoryx-binding-c-dev"
#define IOX_OFFERS                                                                                 \
    "topics, no types to select by; nothing persists (chunks live in the daemon's memory); "       \
    "needs the iox-roudi daemon, which reclaims a dead process's chunks; a full queue blocks "     \
    "the publisher or drops the oldest, as configured"

static struct peer_ops pb_ops, sv_ops; /* filled in by case_peers_run */

static const struct peer_entry peers[] = {
    {&pb_ops, "postbox", NULL,
     "typed receive (msgrcv's rules); persistent while the machine is up (/dev/shm), or "
     "durable (spool: mailboxes); a crashed sender or receiver loses nothing committed and "
     "leaves no lock held; a full queue blocks (or times out), fails (PBX_NOWAIT), or drops "
     "the newest or the oldest, as the mailbox was created"},
    {&peer_pbx_loan_ops, "postbox-loan", NULL, NULL},
    {&peer_pbx_loan_rw_ops, "postbox-loan-rw", NULL, NULL},
    {&peer_pbx_batch_ops, "postbox-b32", NULL, NULL},
    {&sv_ops, "sysv", NULL,
     "typed receive; persistent until reboot (kernel); crash-safe (the kernel holds the "
     "queue); a full queue blocks or fails (IPC_NOWAIT)"},
    {ZMQ_OPS, "zmq", "libzmq3-dev",
     "no types (one queue per socket); nothing persists (messages live in the processes and "
     "socket buffers: a crashed peer loses what it queued); reconnects; a full queue (high-"
     "water mark) blocks PUSH"},
    {NNG_OPS, "nng", "libnng-dev",
     "no types; nothing persists (a crashed or closed sender loses what it queued); "
     "reconnects; a full queue blocks the sender"},
    {BOOST_OPS, "boost", "libboost-dev",
     "priorities, no types; persistent while the machine is up (/dev/shm); no crash recovery "
     "(a process killed holding the queue's mutex blocks the others forever); a full queue "
     "blocks, fails (try_send) or times out"},
    {IOX_OPS, "iox", IOX_PKG, IOX_OFFERS},
    {IOX_INPLACE_OPS, "iox-inplace", IOX_PKG, NULL},
    {IOX_POLL_OPS, "iox-poll", IOX_PKG, NULL},
};
#define NPEERS ((int) (sizeof(peers) / sizeof(peers[0])))

/* ---- the measurements ------------------------------------------------------------------ */

struct peers_shared {
    struct bench_barrier bar;
    int64_t t0, t1;
    unsigned long done;
    double rtt_ns[]; /* one per timed round trip */
};

struct peers_job {
    const struct peer_ops *p;
    struct tr_chan *a, *b; /* stream: a only; round trip: a there, b back */
    size_t size;
    unsigned long warm, n;
    struct peers_shared *sh;
};

static void stamp(const struct peers_job *j, void *buf, uint64_t word)
{
    if (j->p->flags & PEER_HEADER_ONLY)
        memcpy(buf, &word, sizeof(word));
    else
        msg_stamp(buf, j->size, word);
}

static int check(const struct peers_job *j, const void *buf, ssize_t r, uint64_t want)
{
    uint64_t w = 0;
    if (r != (ssize_t) j->size)
        return -1;
    if (j->p->flags & PEER_HEADER_ONLY)
        memcpy(&w, buf, sizeof(w));
    else if (msg_check(buf, j->size, &w) != 0)
        return -1;
    return w == want ? 0 : -1;
}

static int stream_producer(struct peers_job *j, void *buf)
{
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long seq = 0; seq < j->warm + j->n; seq++) {
        if (seq == j->warm) {
            int rc = j->p->flush ? j->p->flush(j->a) : 0;
            if (rc < 0)
                return bench_child_fail("%s: flush at %lu: %s", j->p->name, seq, strerror(-rc));
            bench_barrier_wait(&j->sh->bar);
        }
        stamp(j, buf, MSG_WORD(0, seq));
        int rc = j->p->send(j->a, buf, j->size);
        if (rc < 0)
            return bench_child_fail("%s: send of message %lu: %s", j->p->name, seq, strerror(-rc));
    }
    int rc = j->p->flush ? j->p->flush(j->a) : 0;
    if (rc < 0)
        return bench_child_fail("%s: flush at the end: %s", j->p->name, strerror(-rc));
    return 0;
}

static int stream_consumer(struct peers_job *j, void *buf)
{
    int64_t t0 = 0;
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long seq = 0; seq < j->warm + j->n; seq++) {
        if (seq == j->warm) {
            bench_barrier_wait(&j->sh->bar);
            t0 = bench_now();
        }
        ssize_t r = j->p->recv(j->a, buf, j->size);
        if (r < 0)
            return bench_child_fail("%s: receive of message %lu: %s", j->p->name, seq,
                                    strerror((int) -r));
        if (check(j, buf, r, MSG_WORD(0, seq)) != 0)
            return bench_child_fail("%s: message %lu lost, reordered or corrupted", j->p->name,
                                    seq);
    }
    j->sh->t1 = bench_now();
    j->sh->t0 = t0;
    j->sh->done = j->n;
    return 0;
}

static int pinger(struct peers_job *j, void *buf)
{
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long k = 0; k < j->warm + j->n; k++) {
        int64_t t0 = bench_now();
        stamp(j, buf, MSG_WORD(0, k));
        int rc = j->p->send(j->a, buf, j->size);
        if (rc < 0)
            return bench_child_fail("%s: ping %lu: %s", j->p->name, k, strerror(-rc));
        ssize_t r = j->p->recv(j->b, buf, j->size);
        int64_t t1 = bench_now();
        if (r < 0)
            return bench_child_fail("%s: pong %lu: %s", j->p->name, k, strerror((int) -r));
        if (check(j, buf, r, MSG_WORD(1, k)) != 0)
            return bench_child_fail("%s: pong %lu is not the echo of ping %lu", j->p->name, k, k);
        if (k >= j->warm)
            j->sh->rtt_ns[k - j->warm] = (double) (t1 - t0);
    }
    j->sh->done = j->n;
    return 0;
}

static int ponger(struct peers_job *j, void *buf)
{
    bench_barrier_wait(&j->sh->bar);
    for (unsigned long k = 0; k < j->warm + j->n; k++) {
        ssize_t r = j->p->recv(j->a, buf, j->size);
        if (r < 0)
            return bench_child_fail("%s: ping %lu: %s", j->p->name, k, strerror((int) -r));
        if (check(j, buf, r, MSG_WORD(0, k)) != 0)
            return bench_child_fail("%s: ping %lu lost or corrupted", j->p->name, k);
        stamp(j, buf, MSG_WORD(1, k));
        int rc = j->p->send(j->b, buf, j->size);
        if (rc < 0)
            return bench_child_fail("%s: pong %lu: %s", j->p->name, k, strerror(-rc));
    }
    return 0;
}

/* Child i: 0 sends on a (and receives on b), 1 receives on a (and sends on b). */
static int peers_body(int i, void *arg)
{
    struct peers_job *j = arg;
    int rc = j->p->attach(j->a, i == 0);
    if (rc == 0 && j->b) {
        rc = j->p->attach(j->b, i == 1);
        if (rc < 0)
            j->p->detach(j->a);
    }
    if (rc < 0) {
        bench_child_fail("%s: attach: %s", j->p->name, strerror(-rc));
    } else {
        void *buf = bench_buf_alloc(j->size);
        memset(buf, 0x5a, j->size);
        if (j->b)
            rc = i == 0 ? pinger(j, buf) : ponger(j, buf);
        else
            rc = i == 0 ? stream_producer(j, buf) : stream_consumer(j, buf);
        /* nng drops what a closing sender still queues: close once everything is in */
        if (rc == 0)
            bench_barrier_wait(&j->sh->bar);
        bench_buf_free(buf);
        if (j->b)
            j->p->detach(j->b);
        j->p->detach(j->a);
    }
    if (j->p->flags & PEER_EXIT)
        exit(rc ? 1 : 0); /* iceoryx 2.0.3 gives chunks back only in exit()'s destructors */
    return rc;
}

/* One measurement; records its figures. Returns 0, -1 (recorded) or -EINTR. */
static int measure(struct bench_ctx *ctx, const struct peer_ops *p, size_t size, int rtt,
                   unsigned long n, struct peers_shared *sh, double *sorted, int rep)
{
    const int cpus[2] = {ctx->cpu[0], ctx->cpu[1]};
    char n1[32], n2[32], what[96];
    snprintf(n1, sizeof(n1), "q%lu", ctx->seq++);
    snprintf(n2, sizeof(n2), "q%lu", ctx->seq++);
    snprintf(what, sizeof(what), "peers %s %s %zu B rep %d", rtt ? "round trip" : "stream", p->name,
             size, rep + 1);
    struct tr_params p1 = {size, PEERS_DEPTH, 1, 1, n1};
    struct tr_params p2 = {size, PEERS_DEPTH, 1, 1, n2};
    struct peers_job j = {p, NULL, NULL, size, 0, n, sh};
    j.warm = rtt ? (n / 10 < 100 ? 100 : n / 10) : (PEERS_DEPTH < n / 2 ? PEERS_DEPTH : n / 2);
    const char *why = NULL;
    int rc = p->open(&p1, &j.a, &why);
    if (rc == 0 && rtt) {
        rc = p->open(&p2, &j.b, &why);
        if (rc < 0)
            p->close(j.a);
    }
    if (rc == -ENOTSUP) {
        res_note("peers: %s skipped at %zu B: %s", p->name, size, why ? why : "not supported");
        return 0;
    }
    if (rc < 0) {
        res_error("%s: open: %s%s%s", what, strerror(-rc), why ? ": " : "", why ? why : "");
        return -1;
    }
    memset(sh, 0, sizeof(*sh));
    bench_barrier_init(&sh->bar, 2);
    rc = bench_run_procs(ctx, 2, cpus, peers_body, &j, what);
    p->close(j.a);
    if (j.b)
        p->close(j.b);
    if (rc == -EINTR)
        return rc;
    if (rc < 0 || sh->done != n) {
        if (rc == 0)
            res_error("%s: did not report", what);
        return -1;
    }
    if (!rtt) {
        double rate = (double) n / ((double) (sh->t1 - sh->t0) / 1e9);
        res_add("peers", p->name, size, "2cpu", "msgs_per_s", rate, "msg/s", rep);
        fprintf(stderr, " %s %.3gM/s", p->name, rate / 1e6);
        return 0;
    }
    memcpy(sorted, sh->rtt_ns, n * sizeof(double));
    bench_sort(sorted, n);
    double med = bench_quantile_sorted(sorted, n, 0.5) / 1e3;
    res_add("peers", p->name, size, "2cpu", "rtt_median_us", med, "us", rep);
    res_add("peers", p->name, size, "2cpu", "rtt_p99_us",
            bench_quantile_sorted(sorted, n, 0.99) / 1e3, "us", rep);
    fprintf(stderr, " %s %.3gus", p->name, med);
    return 0;
}

/* Half the suite's repetitions, made odd so that the median is one of them (5 in make
 * bench): eight rows at four sizes, twice, keep make bench under its three minutes. */
static int peers_reps(const struct bench_opts *o)
{
    return ((o->reps + 1) / 2) | 1;
}

int case_peers_run(struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    if (!ctx->two_cpus) {
        res_note("peers: only one CPU available; skipped (the peers run on two CPUs)");
        return 0;
    }
    fill_from(&pb_ops, &peer_postbox_ops, &tr_postbox_ops);
    fill_from(&sv_ops, &peer_sysv_ops, &tr_sysv_ops);

    if (o->quick && !o->cases) {
        res_note("peers: not run in quick mode (make bench runs them; or --cases peers)");
        return 0;
    }
    /* Which peers run: those built and able to (--transports does not apply here). */
    int use[NPEERS];
    int iox_wanted = 0;
    for (int k = 0; k < NPEERS; k++) {
        use[k] = 1;
        if (!peers[k].ops) {
            /* one line per package: the rows that follow with the same package join it */
            char names[128];
            int len = snprintf(names, sizeof(names), "%s", peers[k].name);
            while (k + 1 < NPEERS && !peers[k + 1].ops &&
                   !strcmp(peers[k + 1].package, peers[k].package) && len < (int) sizeof(names)) {
                use[++k] = 0;
                len += snprintf(names + len, sizeof(names) - (size_t) len, ", %s", peers[k].name);
            }
            res_note("peers: %s skipped: not built (apt-get install %s, then rebuild)", names,
                     peers[k].package);
            use[k] = 0;
        }
        if (use[k] && (peers[k].ops->flags & PEER_EXIT))
            iox_wanted = 1;
    }
#ifdef PBX_HAVE_ICEORYX
    if (iox_wanted) {
        const char *why = NULL;
        if (peer_iox_start(o->outdir, &why) != 0) {
            res_note("peers: iceoryx skipped: %s", why);
            for (int k = 0; k < NPEERS; k++)
                if (use[k] && (peers[k].ops->flags & PEER_EXIT))
                    use[k] = 0;
        } else {
            res_note("peers: %s", why);
        }
    }
#else
    (void) iox_wanted;
#endif

    /* Fewer messages than the stream case: many peers, four sizes, two measurements each. */
    unsigned long rtt_n = o->rtt_iters / 10 < 100 ? 100 : o->rtt_iters / 10;
    size_t shsize = sizeof(struct peers_shared) + rtt_n * sizeof(double);
    struct peers_shared *sh = bench_shared_alloc(shsize);
    double *sorted = bench_shared_alloc(rtt_n * sizeof(double));
    int result = 0;
    for (int rep = 0; rep < peers_reps(o) && result != -EINTR; rep++) {
        for (int s = 0; s < o->nsizes && result != -EINTR; s++) {
            size_t size = o->sizes[s];
            unsigned long n = o->stream_msgs / 15;
            if (o->stream_bytes / 16 / size < n)
                n = (unsigned long) (o->stream_bytes / 16 / size);
            if (n < o->stream_min)
                n = o->stream_min;
            for (int rtt = 0; rtt < 2 && result != -EINTR; rtt++) {
                fprintf(stderr, "peers    rep %d/%d %-6s %6zu B:", rep + 1, peers_reps(o),
                        rtt ? "rtt" : "stream", size);
                for (int k = 0; k < NPEERS && result != -EINTR; k++) {
                    const struct peer_ops *p = peers[k].ops;
                    if (!use[k] || (!rtt && (p->flags & PEER_RTT_ONLY)) ||
                        (rtt && (p->flags & PEER_STREAM_ONLY)))
                        continue;
                    int rc = measure(ctx, p, size, rtt, rtt ? rtt_n : n, sh, sorted, rep);
                    if (rc < 0)
                        result = rc == -EINTR ? -EINTR : -1;
                }
                fprintf(stderr, "\n");
            }
        }
    }
#ifdef PBX_HAVE_ICEORYX
    peer_iox_stop();
#endif
    bench_shared_free(sorted, rtt_n * sizeof(double));
    bench_shared_free(sh, shsize);
    return result;
}

/* ---- the report ------------------------------------------------------------------------ */

/* Median of one figure over the repetitions, and the median of its per-repetition ratio to
 * postbox's. Returns how many repetitions had the figure. */
static int peer_fig(const char *tr, size_t size, const char *metric, int nrep, double *med,
                    double *ratio)
{
    double v[256], pb[256], a[256], r[256];
    if (nrep > 256)
        nrep = 256;
    res_get("peers", tr, size, "2cpu", metric, v, nrep);
    res_get("peers", "postbox", size, "2cpu", metric, pb, nrep);
    int na = 0, nr = 0;
    for (int i = 0; i < nrep; i++) {
        if (isnan(v[i]))
            continue;
        a[na++] = v[i];
        if (!isnan(pb[i]) && pb[i] > 0)
            r[nr++] = v[i] / pb[i];
    }
    if (!na)
        return 0;
    bench_sort(a, (size_t) na);
    *med = bench_quantile_sorted(a, (size_t) na, 0.5);
    if (nr) {
        bench_sort(r, (size_t) nr);
        *ratio = bench_quantile_sorted(r, (size_t) nr, 0.5);
    } else {
        *ratio = NAN;
    }
    return na;
}

static void md_table(FILE *f, const struct bench_ctx *ctx, const char *metric, const char *head,
                     int rate)
{
    const struct bench_opts *o = ctx->opt;
    int nrep = peers_reps(o);
    fprintf(f, "\n%s\n\n| peer |", head);
    for (int s = 0; s < o->nsizes; s++)
        fprintf(f, " %zu B |", o->sizes[s]);
    fprintf(f, "\n|---|");
    for (int s = 0; s < o->nsizes; s++)
        fprintf(f, "---|");
    fprintf(f, "\n");
    for (int k = 0; k < NPEERS; k++) {
        int any = 0;
        for (int s = 0; s < o->nsizes; s++) {
            double m, r;
            any |= peer_fig(peers[k].name, o->sizes[s], metric, nrep, &m, &r) > 0;
        }
        if (!any)
            continue;
        const char *title = peers[k].ops ? peers[k].ops->title : peers[k].name;
        fprintf(f, "| %s |", title);
        for (int s = 0; s < o->nsizes; s++) {
            double m = 0, r = 0;
            if (!peer_fig(peers[k].name, o->sizes[s], metric, nrep, &m, &r)) {
                fprintf(f, " – |");
                continue;
            }
            char mv[32];
            if (rate) {
                if (m >= 1e6)
                    snprintf(mv, sizeof(mv), "%.2f M/s", m / 1e6);
                else
                    snprintf(mv, sizeof(mv), "%.0f k/s", m / 1e3);
            } else {
                snprintf(mv, sizeof(mv), m >= 100 ? "%.0f µs" : "%.1f µs", m);
            }
            if (k == 0 || isnan(r))
                fprintf(f, " %s |", mv);
            else
                fprintf(f, " %s (%.3g×) |", mv, r);
        }
        fprintf(f, "\n");
    }
}

void peers_md(FILE *f, const struct bench_ctx *ctx)
{
    size_t n;
    const struct res_record *r = res_records(&n);
    size_t i = 0;
    while (i < n && strcmp(r[i].case_name, "peers"))
        i++;
    if (i == n)
        return;
    fprintf(f, "\n### Peers: the libraries users would pick, two CPUs, %d-message queues\n",
            PEERS_DEPTH);
    fprintf(f,
            "\nMedian of %d repetitions; in brackets, the median over repetitions of the "
            "figure ÷ postbox's in the same repetition (throughput: below 1 is slower than "
            "postbox; round trip: above 1 is slower).\n",
            peers_reps(ctx->opt));
    md_table(f, ctx, "msgs_per_s", "Streaming throughput, messages/s", 1);
    md_table(f, ctx, "rtt_median_us", "Round trip, median", 0);
    md_table(f, ctx, "rtt_p99_us", "Round trip, p99", 0);
    fprintf(f, "\nWhat each offers, so that the figures are read fairly:\n\n");
    for (int k = 0; k < NPEERS; k++)
        if (peers[k].offers)
            fprintf(f, "- %s: %s.\n", peers[k].name, peers[k].offers);
    fprintf(f, "- the postbox rows: postbox-loan, zero-copy loans (pbx_loan/pbx_commit, "
               "pbx_recv_loan/pbx_return), the payload left untouched (16 bytes written and read "
               "through pbx_loan_piece); postbox-loan-rw: every byte written into the loan and "
               "read back out of it in place; postbox-b32: pbx_sendv/pbx_recvv with 32 messages "
               "per call (streaming only). Same mailbox, same guarantees as postbox.\n");
    fprintf(f, "- the iceoryx rows: iox, zero copy, the payload left untouched (16 bytes written "
               "and read); "
               "iox-inplace: every byte written into the chunk and read back; iox-poll: a "
               "busy-polling subscriber.\n");
}
