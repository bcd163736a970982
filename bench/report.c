/*
 * report.c — turns the result store into results.csv, targets.csv, summary.md and plots.
 *
 * Every figure in the human tables is the median over repetitions with the range (min–max)
 * beside it. Every ratio is computed within one repetition first — postbox's figure and
 * System V's (or the ring's) from the same repetition, measured minutes apart at most — and
 * only then summarised, so a slow moment of the machine cancels out instead of skewing one
 * side. The targets of ARCHITECTURE.md are listed by name, each with its formula, its median
 * and range, the goal and whether the median meets it. The report judges nothing else: the
 * exit status depends on errors only.
 *
 * Plots are drawn by gnuplot, when it is installed, from small data files written next to
 * the script (plots.gp), so they can be redrawn or restyled by hand.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define MAX_REPS 256

/* The median and range of one figure over repetitions. */
struct fig {
    int n;
    double med, min, max;
};

static struct fig summarise(const double *v, int nrep)
{
    double s[MAX_REPS];
    struct fig f = {0, NAN, NAN, NAN};
    for (int i = 0; i < nrep && i < MAX_REPS; i++)
        if (!isnan(v[i]))
            s[f.n++] = v[i];
    if (f.n == 0)
        return f;
    bench_sort(s, (size_t) f.n);
    f.min = s[0];
    f.max = s[f.n - 1];
    f.med = f.n % 2 ? s[f.n / 2] : (s[f.n / 2 - 1] + s[f.n / 2]) / 2;
    return f;
}

static struct fig scaled(struct fig f, double k)
{
    f.med *= k;
    f.min *= k;
    f.max *= k;
    return f;
}

static int nreps(const struct bench_ctx *ctx)
{
    return ctx->opt->reps < MAX_REPS ? ctx->opt->reps : MAX_REPS;
}

static struct fig fig_value(const struct bench_ctx *ctx, const char *c, const char *tr, size_t size,
                            const char *layout, const char *metric)
{
    double v[MAX_REPS];
    res_get(c, tr, size, layout, metric, v, nreps(ctx));
    return summarise(v, nreps(ctx));
}

/* a / b within each repetition, where a and b may differ in transport and metric. */
static struct fig fig_ratio(const struct bench_ctx *ctx, const char *c, size_t size,
                            const char *layout, const char *tr_a, const char *metric_a,
                            const char *tr_b, const char *metric_b)
{
    double a[MAX_REPS], b[MAX_REPS], r[MAX_REPS];
    int n = nreps(ctx);
    res_get(c, tr_a, size, layout, metric_a, a, n);
    res_get(c, tr_b, size, layout, metric_b, b, n);
    for (int i = 0; i < n; i++)
        r[i] = (isnan(a[i]) || isnan(b[i]) || b[i] == 0) ? NAN : a[i] / b[i];
    return summarise(r, n);
}

/* ---- formatting ------------------------------------------------------------------------ */

/* Three significant digits, with k/M/G for large values. */
static void fmt_num(char *out, size_t cap, double v)
{
    const char *suffix = "";
    double a = fabs(v);
    if (a >= 1e9) {
        v /= 1e9;
        suffix = " G";
    } else if (a >= 1e6) {
        v /= 1e6;
        suffix = " M";
    } else if (a >= 1e4) {
        v /= 1e3;
        suffix = " k";
    }
    a = fabs(v);
    int decimals = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
    snprintf(out, cap, "%.*f%s", decimals, v, suffix);
}

static void fmt_fig(char *out, size_t cap, struct fig f)
{
    if (f.n == 0) {
        snprintf(out, cap, "–");
        return;
    }
    char m[24], lo[24], hi[24];
    fmt_num(m, sizeof(m), f.med);
    if (f.n == 1) {
        snprintf(out, cap, "%s", m);
        return;
    }
    fmt_num(lo, sizeof(lo), f.min);
    fmt_num(hi, sizeof(hi), f.max);
    snprintf(out, cap, "%s (%s–%s)", m, lo, hi);
}

static int find_tr(const struct bench_ctx *ctx, const char *name)
{
    for (int t = 0; t < ctx->ntr; t++)
        if (!strcmp(ctx->tr[t]->name, name))
            return t;
    return -1;
}

static int has_results(const char *c, const char *layout)
{
    size_t n;
    const struct res_record *r = res_records(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(r[i].case_name, c) && (!layout || !strcmp(r[i].layout, layout)))
            return 1;
    return 0;
}

static const char *layout_title(const char *lay)
{
    return !strcmp(lay, "2cpu") ? "two processes on two CPUs" : "both processes on one CPU";
}

/* ---- CSV ------------------------------------------------------------------------------- */

static int write_csv(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/results.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "case,transport,size,layout,metric,value,unit,rep\n");
    size_t n;
    const struct res_depth_rec *d = res_depths(&n);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s,%s,%zu,-,depth_msgs,%ld,msg,0\n", d[i].case_name, d[i].tr, d[i].size,
                d[i].effective);
    const struct res_record *r = res_records(&n);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s,%s,%zu,%s,%s,%.6g,%s,%d\n", r[i].case_name, r[i].tr, r[i].size, r[i].layout,
                r[i].metric, r[i].value, r[i].unit, r[i].rep + 1);
    return fclose(f) == 0 ? 0 : -errno;
}

/* ---- targets --------------------------------------------------------------------------- */

struct target {
    const char *id;
    const char *figure;  /* what is compared, in words */
    const char *formula; /* how the ratio is formed */
    const char *case_name;
    size_t size;
    const char *layout;
    const char *tr_a, *metric_a, *tr_b, *metric_b; /* ratio = a / b */
    int at_least;                                  /* 1: ratio >= goal; 0: ratio <= goal */
    double goal;                                   /* NAN: reported, not judged */
};

static const struct target targets[] = {
    {"stream16_vs_sysv", "16 B streaming 1P→1C", "postbox msgs/s ÷ System V msgs/s", "stream", 16,
     "2cpu", "postbox", "msgs_per_s", "sysv", "msgs_per_s", 1, 15},
    {"stream16_vs_ring", "16 B streaming 1P→1C", "postbox msgs/s ÷ ring msgs/s", "stream", 16,
     "2cpu", "postbox", "msgs_per_s", "ring", "msgs_per_s", 1, 0.6},
    {"rtt16_vs_ring", "16 B round trip", "postbox RTT ÷ ring RTT (medians)", "pingpong", 16, "2cpu",
     "postbox", "rtt_median_us", "ring", "rtt_median_us", 0, 2},
    {"rtt16_sysv_vs_postbox", "16 B round trip", "System V RTT ÷ postbox RTT (medians)", "pingpong",
     16, "2cpu", "sysv", "rtt_median_us", "postbox", "rtt_median_us", 1, 50},
    {"rtt16_1cpu_vs_sysv", "16 B round trip, both on one CPU",
     "postbox RTT ÷ System V RTT (medians)", "pingpong", 16, "1cpu", "postbox", "rtt_median_us",
     "sysv", "rtt_median_us", 0, 1},
    {"typed_gt0_vs_fifo", "receive by type > 0, 10 000 queued of 100 types",
     "postbox type>0 recv ÷ postbox FIFO recv", "typed", 16, "1proc", "postbox", "type_gt0_ns",
     "postbox", "fifo_ns", 0, 2},
    {"typed_lt0_vs_fifo", "receive by type < 0, 10 000 queued of 100 types",
     "postbox type<0 recv ÷ postbox FIFO recv", "typed", 16, "1proc", "postbox", "type_lt0_ns",
     "postbox", "fifo_ns", 0, 2},
    {"sysv_typed_gt0_vs_fifo", "(reference) System V, type > 0",
     "System V type>0 recv ÷ System V FIFO recv (ARCHITECTURE.md quotes 27×)", "typed", 16, "1proc",
     "sysv", "type_gt0_ns", "sysv", "fifo_ns", 0, NAN},
    {"sysv_typed_lt0_vs_fifo", "(reference) System V, type < 0",
     "System V type<0 recv ÷ System V FIFO recv", "typed", 16, "1proc", "sysv", "type_lt0_ns",
     "sysv", "fifo_ns", 0, NAN},
    {"stream4k_vs_sysv", "4 KiB streaming 1P→1C", "postbox msgs/s ÷ System V msgs/s", "stream",
     4096, "2cpu", "postbox", "msgs_per_s", "sysv", "msgs_per_s", 1, 2.5},
    {"mpmc16_vs_sysv", "4P→4C, 16 B", "postbox msgs/s ÷ System V msgs/s", "mpmc", 16, "2cpu",
     "postbox", "msgs_per_s", "sysv", "msgs_per_s", 1, 5},
    /* Issue 17, items 3, 4 and 6 (case_backlog.c, hogs.c). */
    {"mpmc16_loaded_vs_sysv", "4P→4C, 16 B, beside two CPU hogs",
     "postbox msgs/s ÷ System V msgs/s", "mpmc", 16, "loaded", "postbox", "msgs_per_s", "sysv",
     "msgs_per_s", 1, 1},
    {"typed_fill_gt0_vs_fifo", "receive by type > 0 right after a fill of 10 000 (100 types)",
     "postbox type>0 recv ÷ postbox FIFO recv", "typed", 16, "fill", "postbox", "type_gt0_ns",
     "postbox", "fifo_ns", 0, 2},
    {"typed_fill_lt0_vs_fifo", "receive by type < 0 right after a fill of 10 000 (100 types)",
     "postbox type<0 recv ÷ postbox FIFO recv", "typed", 16, "fill", "postbox", "type_lt0_ns",
     "postbox", "fifo_ns", 0, 2},
    {"typed_fill_gt0_cold_vs_fifo", "(reference) the same, type > 0, no receive before the fill",
     "postbox type>0 recv ÷ postbox FIFO recv", "typed", 16, "fill", "postbox", "type_gt0_cold_ns",
     "postbox", "fifo_ns", 0, NAN},
    {"rtt_p99_vs_sysv", "round trip p99 (at --rtt-size)", "postbox p99 ÷ System V p99", "pingpong",
     0, "2cpu", "postbox", "rtt_p99_us", "sysv", "rtt_p99_us", 0, 1},
    /* Issue 17, items 1, 2 and 3, from the batch case and the peers case (bench/peers/):
     * loans and batches beside iceoryx, the copying send and the ring in the same run. */
    {"batch16_vs_single", "16 B streaming, batches of 32 (pbx_sendv/pbx_recvv)",
     "postbox-b32 msgs/s ÷ postbox msgs/s (batch case)", "batch", 16, "2cpu", "postbox-b32",
     "msgs_per_s", "postbox", "msgs_per_s", 1, 3},
    {"batch16_vs_ring", "16 B streaming, batches of 32 (pbx_sendv/pbx_recvv)",
     "postbox-b32 msgs/s ÷ ring msgs/s (batch case)", "batch", 16, "2cpu", "postbox-b32",
     "msgs_per_s", "ring", "msgs_per_s", 1, 1},
    {"loan64k_vs_iox", "64 KiB streaming, zero copy, payload untouched",
     "postbox-loan msgs/s ÷ iox msgs/s (peers case)", "peers", 65536, "2cpu", "postbox-loan",
     "msgs_per_s", "iox", "msgs_per_s", 1, 2},
    {"loan64k_vs_iox_poll", "(reference) the same against iceoryx's busy-polling subscriber",
     "postbox-loan msgs/s ÷ iox-poll msgs/s (peers case)", "peers", 65536, "2cpu", "postbox-loan",
     "msgs_per_s", "iox-poll", "msgs_per_s", 1, NAN},
    {"loan64k_vs_copy", "64 KiB streaming, loans (untouched) vs copying send",
     "postbox-loan msgs/s ÷ postbox msgs/s (peers case)", "peers", 65536, "2cpu", "postbox-loan",
     "msgs_per_s", "postbox", "msgs_per_s", 1, 5},
    {"loan64k_rw_vs_iox_inplace", "64 KiB streaming, payload written and read in place",
     "postbox-loan-rw msgs/s ÷ iox-inplace msgs/s (peers case)", "peers", 65536, "2cpu",
     "postbox-loan-rw", "msgs_per_s", "iox-inplace", "msgs_per_s", 1, 1.5},
    {"loan64k_rtt_vs_iox_poll", "64 KiB round trip through loans (untouched)",
     "postbox-loan RTT ÷ iox-poll RTT (medians; peers case)", "peers", 65536, "2cpu",
     "postbox-loan", "rtt_median_us", "iox-poll", "rtt_median_us", 0, 1},
    {"batch16_peers_vs_single", "(reference) 16 B streaming, batches of 32, peers case",
     "postbox-b32 msgs/s ÷ postbox msgs/s (peers case: the stamp written and checked per message)",
     "peers", 16, "2cpu", "postbox-b32", "msgs_per_s", "postbox", "msgs_per_s", 1, NAN},
    {"rtt16_p99_vs_sysv", "16 B round trip p99 (peers case)", "postbox p99 ÷ System V p99", "peers",
     16, "2cpu", "postbox", "rtt_p99_us", "sysv", "rtt_p99_us", 0, 1},
    {"rtt256_p99_vs_sysv", "256 B round trip p99 (peers case)", "postbox p99 ÷ System V p99",
     "peers", 256, "2cpu", "postbox", "rtt_p99_us", "sysv", "rtt_p99_us", 0, 1},
    {"rtt4k_p99_vs_sysv", "4 KiB round trip p99 (peers case)", "postbox p99 ÷ System V p99",
     "peers", 4096, "2cpu", "postbox", "rtt_p99_us", "sysv", "rtt_p99_us", 0, 1},
    {"rtt64k_p99_vs_sysv", "64 KiB round trip p99 (peers case)", "postbox p99 ÷ System V p99",
     "peers", 65536, "2cpu", "postbox", "rtt_p99_us", "sysv", "rtt_p99_us", 0, 1},
    {"rtt64k_loan_p99_vs_sysv", "(reference) 64 KiB round trip p99 through loans (peers case)",
     "postbox-loan p99 ÷ System V p99", "peers", 65536, "2cpu", "postbox-loan", "rtt_p99_us",
     "sysv", "rtt_p99_us", 0, NAN},
};
#define NTARGETS (sizeof(targets) / sizeof(targets[0]))

/* A target's payload size; 0 stands for the ping-pong's --rtt-size. */
static size_t target_size(const struct bench_ctx *ctx, const struct target *t)
{
    return t->size ? t->size : ctx->opt->rtt_size;
}

static const char *verdict(const struct target *t, struct fig f)
{
    if (f.n == 0)
        return "not measured";
    if (isnan(t->goal))
        return "reference";
    int ok = t->at_least ? f.med >= t->goal : f.med <= t->goal;
    return ok ? "met" : "not met";
}

static void goal_text(char *out, size_t cap, const struct target *t)
{
    if (isnan(t->goal))
        snprintf(out, cap, "(none)");
    else
        snprintf(out, cap, "%s %g", t->at_least ? "≥" : "≤", t->goal);
}

static int write_targets_csv(const struct bench_ctx *ctx, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/targets.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "target,median,min,max,reps,goal,verdict\n");
    for (size_t i = 0; i < NTARGETS; i++) {
        const struct target *t = &targets[i];
        struct fig r = fig_ratio(ctx, t->case_name, target_size(ctx, t), t->layout, t->tr_a,
                                 t->metric_a, t->tr_b, t->metric_b);
        char goal[32];
        if (isnan(t->goal))
            snprintf(goal, sizeof(goal), "-");
        else
            snprintf(goal, sizeof(goal), "%s%g", t->at_least ? ">=" : "<=", t->goal);
        fprintf(f, "%s,%.4g,%.4g,%.4g,%d,%s,%s\n", t->id, r.med, r.min, r.max, r.n, goal,
                verdict(t, r));
    }
    return fclose(f) == 0 ? 0 : -errno;
}

/* ---- plots ----------------------------------------------------------------------------- */

static int have_program(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char buf[4096];
    while (*path) {
        size_t len = strcspn(path, ":");
        snprintf(buf, sizeof(buf), "%.*s/%s", (int) len, path, name);
        if (len > 0 && access(buf, X_OK) == 0)
            return 1;
        path += len;
        if (*path == ':')
            path++;
    }
    return 0;
}

static FILE *open_in(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return fopen(path, "w");
}

/* What draw_plots() produced. */
struct plots {
    const char *ext; /* "png" or "svg"; NULL when nothing was drawn */
    int throughput, latency;
};

/* Remove the plot files of an earlier run in the same directory, so that no stale image is
 * left beside this run's summary. */
static void clear_plots(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (!strncmp(n, "plot-", 5) || !strcmp(n, "plots.gp") || !strncmp(n, "throughput.", 11) ||
            !strncmp(n, "latency.", 8))
            unlinkat(dirfd(d), n, 0);
    }
    closedir(d);
}

static struct plots draw_plots(const struct bench_ctx *ctx, const char *dir)
{
    const struct bench_opts *o = ctx->opt;
    struct plots out = {NULL, has_results("stream", "2cpu"), 0};
    char names_stream[256] = "", names_rtt[2][256] = {"", ""};
    const char *lays[2] = {"2cpu", "1cpu"};
    double lo[2] = {0, 0}, hi[2] = {0, 0}; /* fastest and slowest round trip per layout */

    FILE *f;
    if (out.throughput) {
        f = open_in(dir, "plot-stream-2cpu.dat");
        if (!f)
            return out;
        fprintf(f, "# size, then msgs/s and MB/s per transport (medians):");
        for (int t = 0; t < ctx->ntr; t++)
            fprintf(f, " %s", ctx->tr[t]->name);
        fprintf(f, "\n");
        for (int s = 0; s < o->nsizes; s++) {
            fprintf(f, "%zu", o->sizes[s]);
            for (int t = 0; t < ctx->ntr; t++) {
                struct fig a =
                    fig_value(ctx, "stream", ctx->tr[t]->name, o->sizes[s], "2cpu", "msgs_per_s");
                struct fig b =
                    fig_value(ctx, "stream", ctx->tr[t]->name, o->sizes[s], "2cpu", "MB_per_s");
                if (a.n)
                    fprintf(f, " %.6g %.6g", a.med, b.med);
                else
                    fprintf(f, " ? ?");
            }
            fprintf(f, "\n");
        }
        fclose(f);
        for (int t = 0; t < ctx->ntr; t++) {
            snprintf(names_stream + strlen(names_stream),
                     sizeof(names_stream) - strlen(names_stream), "%s%s", t ? " " : "",
                     ctx->tr[t]->name);
        }
    }

    size_t nd;
    const struct res_dist_rec *d = res_dists(&nd);
    for (size_t i = 0; i < nd; i++) {
        if (strcmp(d[i].case_name, "pingpong"))
            continue;
        int l = !strcmp(d[i].layout, "2cpu") ? 0 : 1;
        char name[96];
        snprintf(name, sizeof(name), "plot-rtt-%s-%s.dat", d[i].layout, d[i].tr);
        f = open_in(dir, name);
        if (!f)
            return out;
        out.latency = 1;
        fprintf(f, "# quantile, round trip in us (%s, %s, last repetition)\n", d[i].tr,
                d[i].layout);
        for (int k = 0; k < RES_DIST_POINTS; k++)
            fprintf(f, "%.6f %.6g\n", d[i].p[k], d[i].q[k]);
        fclose(f);
        if (d[i].q[0] > 0 && (lo[l] == 0 || d[i].q[0] < lo[l]))
            lo[l] = d[i].q[0];
        if (d[i].q[RES_DIST_POINTS - 1] > hi[l])
            hi[l] = d[i].q[RES_DIST_POINTS - 1];
        size_t len = strlen(names_rtt[l]);
        snprintf(names_rtt[l] + len, sizeof(names_rtt[l]) - len, "%s%s", len ? " " : "", d[i].tr);
    }

    if (!out.throughput && !out.latency)
        return out;
    f = open_in(dir, "plots.gp");
    if (!f)
        return out;
    fprintf(f, "# Draws the benchmark's plots from the plot-*.dat files beside it (pbx_bench).\n"
               "set termoption noenhanced\n"
               "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
               "  set terminal pngcairo size 960,400 font 'sans,9'; ext = 'png'\n"
               "} else { if (strstrt(GPVAL_TERMINALS, ' png ') > 0) {\n"
               "  set terminal png size 960,400; ext = 'png'\n"
               "} else {\n"
               "  set terminal svg size 960,400; ext = 'svg'\n"
               "} }\n"
               "set print 'plots.ext'; print ext; unset print\n"
               "set datafile missing '?'\n"
               "set grid\n");
    if (out.throughput)
        fprintf(f,
                "names = '%s'\n"
                "set output 'throughput.'.ext\n"
                "set multiplot layout 1,2 title 'Streaming, 1 producer -> 1 consumer on two CPUs "
                "(median of %d repetitions)'\n"
                "set logscale x 2; set logscale y 10\n"
                "set xlabel 'payload (bytes)'\n"
                "set ylabel 'messages/s'\n"
                "set format y '%%.0s%%c'\n"
                "set key inside bottom left box opaque\n"
                "plot for [i=1:words(names)] 'plot-stream-2cpu.dat' using 1:(column(2*i)) "
                "with linespoints title word(names, i)\n"
                "set ylabel 'MB/s'\n"
                "set key inside bottom right box opaque\n"
                "plot for [i=1:words(names)] 'plot-stream-2cpu.dat' using 1:(column(2*i+1)) "
                "with linespoints title word(names, i)\n"
                "unset multiplot\n",
                names_stream, o->reps);
    if (out.latency) {
        fprintf(f, "set output 'latency.'.ext\n"
                   "set multiplot layout 1,2 title 'Round trip, 16 B: share of round trips slower "
                   "than x (last repetition)'\n"
                   "set logscale x 10; set logscale y 10\n"
                   "set format y '%%g'\n"
                   "set xlabel 'round trip (us)'\n"
                   "set ylabel 'fraction slower'\n"
                   "set yrange [1e-4:1]\n"
                   "set key inside bottom left box opaque\n");
        for (int l = 0; l < 2; l++) {
            fprintf(f, "set title '%s'\n", layout_title(lays[l]));
            /* Leave a decade and a half free left of the fastest sample for the key, which then
             * covers no line: every line lies right of its own minimum. */
            if (lo[l] < hi[l])
                fprintf(f, "set xrange [%g:%g]\n", lo[l] / 30, hi[l] * 1.5);
            else
                fprintf(f, "set autoscale x\n");
            if (names_rtt[l][0])
                fprintf(f,
                        "n%d = '%s'\n"
                        "plot for [i=1:words(n%d)] sprintf('plot-rtt-%s-%%s.dat', word(n%d, i)) "
                        "using 2:(1-$1) with lines lw 2 title word(n%d, i)\n",
                        l, names_rtt[l], l, lays[l], l, l);
            else
                fprintf(f, "set label 1 'not measured' at graph 0.4, 0.5\n"
                           "plot 1/0 notitle\nunset label 1\n");
        }
        fprintf(f, "unset multiplot\n");
    }
    fclose(f);

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return out;
    if (pid == 0) {
        if (chdir(dir) != 0)
            _exit(127);
        execlp("gnuplot", "gnuplot", "plots.gp", (char *) NULL);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        res_note("gnuplot failed (see its messages above); no plots");
        out.throughput = out.latency = 0;
        return out;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/plots.ext", dir);
    static char ext[8];
    f = fopen(path, "r");
    if (!f || fscanf(f, "%7s", ext) != 1)
        snprintf(ext, sizeof(ext), "png");
    if (f)
        fclose(f);
    unlink(path);
    out.ext = ext;
    return out;
}

/* ---- summary.md ------------------------------------------------------------------------ */

static void md_stream(FILE *f, const struct bench_ctx *ctx, const char *lay)
{
    const struct bench_opts *o = ctx->opt;
    int sysv = find_tr(ctx, "sysv") >= 0, ring = find_tr(ctx, "ring") >= 0;
    fprintf(f, "\n### Streaming, 1 producer → 1 consumer, %s\n\n", layout_title(lay));
    fprintf(f, "| size | transport | msgs/s | MB/s | × System V | ÷ ring |\n");
    fprintf(f, "|---:|---|---:|---:|---:|---:|\n");
    for (int s = 0; s < o->nsizes; s++) {
        size_t size = o->sizes[s];
        for (int t = 0; t < ctx->ntr; t++) {
            const char *tr = ctx->tr[t]->name;
            struct fig rate = fig_value(ctx, "stream", tr, size, lay, "msgs_per_s");
            if (rate.n == 0)
                continue;
            struct fig mb = fig_value(ctx, "stream", tr, size, lay, "MB_per_s");
            struct fig vs =
                fig_ratio(ctx, "stream", size, lay, tr, "msgs_per_s", "sysv", "msgs_per_s");
            struct fig vr =
                fig_ratio(ctx, "stream", size, lay, tr, "msgs_per_s", "ring", "msgs_per_s");
            char a[96], b[96], c[96], d[96];
            fmt_fig(a, sizeof(a), rate);
            fmt_fig(b, sizeof(b), mb);
            fmt_fig(c, sizeof(c), sysv ? vs : (struct fig){0, 0, 0, 0});
            fmt_fig(d, sizeof(d), ring ? vr : (struct fig){0, 0, 0, 0});
            fprintf(f, "| %zu B | %s | %s | %s | %s | %s |\n", size, ctx->tr[t]->title, a, b, c, d);
        }
    }
}

static void md_pingpong(FILE *f, const struct bench_ctx *ctx, const char *lay)
{
    size_t size = ctx->opt->rtt_size;
    fprintf(f, "\n### Round trip (ping-pong), %zu B, %s\n\n", size, layout_title(lay));
    fprintf(f, "| transport | median µs | p99 µs | p99.9 µs | System V RTT ÷ this | this ÷ "
               "ring RTT |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|\n");
    for (int t = 0; t < ctx->ntr; t++) {
        const char *tr = ctx->tr[t]->name;
        struct fig med = fig_value(ctx, "pingpong", tr, size, lay, "rtt_median_us");
        if (med.n == 0)
            continue;
        struct fig p99 = fig_value(ctx, "pingpong", tr, size, lay, "rtt_p99_us");
        struct fig p999 = fig_value(ctx, "pingpong", tr, size, lay, "rtt_p999_us");
        struct fig vs =
            fig_ratio(ctx, "pingpong", size, lay, "sysv", "rtt_median_us", tr, "rtt_median_us");
        struct fig vr =
            fig_ratio(ctx, "pingpong", size, lay, tr, "rtt_median_us", "ring", "rtt_median_us");
        char a[96], b[96], c[96], d[96], e[96];
        fmt_fig(a, sizeof(a), med);
        fmt_fig(b, sizeof(b), p99);
        fmt_fig(c, sizeof(c), p999);
        fmt_fig(d, sizeof(d), vs);
        fmt_fig(e, sizeof(e), vr);
        fprintf(f, "| %s | %s | %s | %s | %s | %s |\n", ctx->tr[t]->title, a, b, c, d, e);
    }
}

static void md_mpmc(FILE *f, const struct bench_ctx *ctx, const char *lay)
{
    unsigned n = ctx->opt->mpmc_procs;
    fprintf(f, "\n### %u producers → %u consumers, 16 B, %s\n\n", n, n,
            !strcmp(lay, "2cpu")     ? "producers on one CPU, consumers on the other"
            : !strcmp(lay, "loaded") ? "producers on one CPU, consumers on the other, beside "
                                       "two CPU hogs (one per CPU)"
                                     : "everyone on one CPU");
    fprintf(f, "| transport | msgs/s | × System V |\n|---|---:|---:|\n");
    for (int t = 0; t < ctx->ntr; t++) {
        const char *tr = ctx->tr[t]->name;
        struct fig rate = fig_value(ctx, "mpmc", tr, 16, lay, "msgs_per_s");
        if (rate.n == 0)
            continue;
        struct fig vs = fig_ratio(ctx, "mpmc", 16, lay, tr, "msgs_per_s", "sysv", "msgs_per_s");
        char a[96], b[96];
        fmt_fig(a, sizeof(a), rate);
        fmt_fig(b, sizeof(b), vs);
        fprintf(f, "| %s | %s | %s |\n", ctx->tr[t]->title, a, b);
    }
}

static void md_typed(FILE *f, const struct bench_ctx *ctx, const char *lay)
{
    const struct bench_opts *o = ctx->opt;
    fprintf(f,
            "\n### Receive by type, %lu queued messages of 16 B over %lu types (one process)%s\n\n",
            o->typed_depth, o->typed_types, strcmp(lay, "fill") ? "" : ", right after the fill");
    if (strcmp(lay, "fill"))
        fprintf(f,
                "Time per receive. type > 0 asks for type %lu, type < 0 for -%lu (it gets type "
                "1); after warm-up the wanted messages sit behind all the others.\n\n",
                o->typed_types / 2 ? o->typed_types / 2 : 1, o->typed_types);
    else
        fprintf(f,
                "Time per receive over the first 1 000 after a fill of random types "
                "(case_backlog.c): type > 0 asks for each type in turn, type < 0 for -%lu. The "
                "receiver polled once before the fill; without that poll, postbox's type > 0 "
                "costs %s.\n\n",
                o->typed_types, "the `typed_fill_gt0_cold_vs_fifo` ratio of the targets");
    fprintf(f, "| transport | FIFO (type 0) µs | type > 0 µs | type < 0 µs | type > 0 ÷ FIFO | "
               "type < 0 ÷ FIFO |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|\n");
    for (int t = 0; t < ctx->ntr; t++) {
        const char *tr = ctx->tr[t]->name;
        struct fig fifo = fig_value(ctx, "typed", tr, 16, lay, "fifo_ns");
        if (fifo.n == 0)
            continue;
        struct fig gt = fig_value(ctx, "typed", tr, 16, lay, "type_gt0_ns");
        struct fig lt = fig_value(ctx, "typed", tr, 16, lay, "type_lt0_ns");
        fifo = scaled(fifo, 1e-3);
        gt = scaled(gt, 1e-3);
        lt = scaled(lt, 1e-3);
        struct fig rg = fig_ratio(ctx, "typed", 16, lay, tr, "type_gt0_ns", tr, "fifo_ns");
        struct fig rl = fig_ratio(ctx, "typed", 16, lay, tr, "type_lt0_ns", tr, "fifo_ns");
        char a[96], b[96], c[96], d[96], e[96];
        fmt_fig(a, sizeof(a), fifo);
        fmt_fig(b, sizeof(b), gt);
        fmt_fig(c, sizeof(c), lt);
        fmt_fig(d, sizeof(d), rg);
        fmt_fig(e, sizeof(e), rl);
        fprintf(f, "| %s | %s | %s | %s | %s | %s |\n", ctx->tr[t]->title, a, b, c, d, e);
    }
}

static void md_wakeup(FILE *f, const struct bench_ctx *ctx, const char *lay)
{
    fprintf(f, "\n### Waking a sleeping receiver, 16 B, %s (gap %lu µs)\n\n", layout_title(lay),
            ctx->opt->wake_gap_us);
    fprintf(f, "| transport | send → receive returns, median µs | p99 µs | cost of the send, "
               "median µs |\n|---|---:|---:|---:|\n");
    for (int t = 0; t < ctx->ntr; t++) {
        const char *tr = ctx->tr[t]->name;
        struct fig med = fig_value(ctx, "wakeup", tr, 16, lay, "wake_median_us");
        if (med.n == 0)
            continue;
        struct fig p99 = fig_value(ctx, "wakeup", tr, 16, lay, "wake_p99_us");
        struct fig cost = fig_value(ctx, "wakeup", tr, 16, lay, "send_median_us");
        char a[96], b[96], c[96];
        fmt_fig(a, sizeof(a), med);
        fmt_fig(b, sizeof(b), p99);
        fmt_fig(c, sizeof(c), cost);
        fprintf(f, "| %s%s | %s | %s | %s |\n", ctx->tr[t]->title,
                (ctx->tr[t]->flags & TR_SPINS) ? " (spins, never sleeps)" : "", a, b, c);
    }
}

static void md_depths(FILE *f, const struct bench_ctx *ctx)
{
    const struct bench_opts *o = ctx->opt;
    size_t n;
    const struct res_depth_rec *d = res_depths(&n);
    fprintf(f, "\n## Queue depth each transport had\n\n");
    fprintf(f,
            "Requested: %lu messages of the case's size for every transport (typed case: "
            "%lu of 16 B). Measured by filling a fresh queue with non-blocking sends.\n\n",
            o->depth, o->typed_depth);
    fprintf(f, "| transport |");
    for (int s = 0; s < o->nsizes; s++)
        fprintf(f, " stream %zu B |", o->sizes[s]);
    fprintf(f, " 4×4 16 B | typed 16 B | set by (16 B stream) |\n|---|");
    for (int s = 0; s < o->nsizes + 2; s++)
        fprintf(f, "---:|");
    fprintf(f, "---|\n");
    for (int t = 0; t < ctx->ntr; t++) {
        const char *tr = ctx->tr[t]->name;
        const char *how = "";
        fprintf(f, "| %s |", ctx->tr[t]->title);
        for (int col = 0; col < o->nsizes + 2; col++) {
            const char *c = col < o->nsizes ? "stream" : col == o->nsizes ? "mpmc" : "typed";
            size_t size = col < o->nsizes ? o->sizes[col] : 16;
            const struct res_depth_rec *hit = NULL;
            for (size_t i = 0; i < n; i++)
                if (!strcmp(d[i].case_name, c) && !strcmp(d[i].tr, tr) && d[i].size == size)
                    hit = &d[i];
            if (hit) {
                unsigned long want = !strcmp(c, "typed") ? o->typed_depth : o->depth;
                fprintf(f, " %ld%s |", hit->effective,
                        (unsigned long) hit->effective == want ? "" : " ⚠");
                if (col < o->nsizes && size == 16)
                    how = hit->how;
            } else {
                fprintf(f, " – |");
            }
        }
        fprintf(f, " %s |\n", how);
    }
    fprintf(f, "\n⚠ = differs from the request (below: how each was set). – = not run "
               "(skipped or not applicable; see the notes).\n\n");
    for (size_t i = 0; i < n; i++) {
        unsigned long want = !strcmp(d[i].case_name, "typed") ? o->typed_depth : o->depth;
        if ((unsigned long) d[i].effective != want)
            fprintf(f, "- %s, %s %zu B: %ld messages; %s\n", d[i].tr, d[i].case_name, d[i].size,
                    d[i].effective, d[i].how);
    }
}

static void md_targets(FILE *f, const struct bench_ctx *ctx)
{
    fprintf(f, "\n## Targets (ARCHITECTURE.md)\n\n");
    if (ctx->opt->quick)
        fprintf(f, "**Quick mode: too few iterations to judge speed; this list is a smoke "
                   "test of the report, not a measurement.**\n\n");
    fprintf(f,
            "Each ratio is formed within one repetition, then summarised: median "
            "(min–max over %d repetitions; the peers case runs %d). Verdicts compare the "
            "median with the goal.\n\n",
            ctx->opt->reps, ((ctx->opt->reps + 1) / 2) | 1);
    fprintf(f, "| target | figure | ratio | measured | min–max | goal | verdict |\n");
    fprintf(f, "|---|---|---|---:|---:|---:|---|\n");
    for (size_t i = 0; i < NTARGETS; i++) {
        const struct target *t = &targets[i];
        struct fig r = fig_ratio(ctx, t->case_name, target_size(ctx, t), t->layout, t->tr_a,
                                 t->metric_a, t->tr_b, t->metric_b);
        char m[32] = "–", lo[32] = "–", hi[32] = "–", range[80] = "–", goal[32];
        if (r.n) {
            fmt_num(m, sizeof(m), r.med);
            fmt_num(lo, sizeof(lo), r.min);
            fmt_num(hi, sizeof(hi), r.max);
            snprintf(range, sizeof(range), "%s–%s", lo, hi);
        }
        goal_text(goal, sizeof(goal), t);
        const char *v = verdict(t, r);
        fprintf(f, "| `%s` | %s | %s | %s | %s | %s | %s |\n", t->id, t->figure, t->formula, m,
                range, goal, !strcmp(v, "met") ? "**met**" : v);
    }
}

static int write_summary(const struct bench_ctx *ctx, const struct bench_env *env,
                         const struct plots *plots)
{
    const struct bench_opts *o = ctx->opt;
    char path[4096];
    snprintf(path, sizeof(path), "%s/summary.md", o->outdir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "# postbox benchmark — %s mode\n\n", o->quick ? "quick" : "full");
    fprintf(f, "- date: %s; wall time of the run: %.0f s\n", env->date, env->wall_s);
    fprintf(f,
            "- machine: %s, %d CPUs online; Linux %s; clock source %s; one clock_gettime "
            "costs %.0f ns\n",
            env->cpu_model, env->ncpu, env->kernel, env->clocksource, env->clock_ns);
    if (ctx->two_cpus)
        fprintf(f,
                "- CPUs used: producer side on CPU %d, consumer side on CPU %d (\"2cpu\"); "
                "both on CPU %d (\"1cpu\")\n",
                ctx->cpu[0], ctx->cpu[1], ctx->cpu[0]);
    else
        fprintf(f, "- CPUs used: only CPU %d was available, so only the one-CPU layout ran\n",
                ctx->cpu[0]);
    fprintf(f, "- postbox %s, static library, built %s\n", env->pbx_version, BENCH_BUILD_TYPE);
    fprintf(f, "- IPC: %s\n", env->ipc);
    fprintf(f, "- kernel limits in force: %s\n", env->limits);
    fprintf(f,
            "- %d repetitions; requested depth %lu messages; streaming at most %lu messages "
            "or %llu MB per run (at least %lu); %lu round trips; %lu messages 4×4; %lu timed "
            "batches typed; %lu wake-ups\n",
            o->reps, o->depth, o->stream_msgs, o->stream_bytes / 1000000, o->stream_min,
            o->rtt_iters, o->mpmc_msgs, o->typed_batches, o->wake_iters);
    fprintf(f, "\nEvery cell: median over repetitions, with (min–max). × System V: this "
               "transport's figure divided by System V's in the same repetition; ÷ ring: the "
               "same against the bare spin ring (the floor).\n");

    size_t nerr;
    const char *const *errs = res_errors(&nerr);
    if (nerr) {
        fprintf(f, "\n## ERRORS\n\n");
        for (size_t i = 0; i < nerr; i++)
            fprintf(f, "- %s\n", errs[i]);
    }

    md_targets(f, ctx);
    fprintf(f, "\n## Results\n");
    const char *lays[2] = {"2cpu", "1cpu"};
    for (int l = 0; l < 2; l++)
        if (has_results("stream", lays[l]))
            md_stream(f, ctx, lays[l]);
    for (int l = 0; l < 2; l++)
        if (has_results("pingpong", lays[l]))
            md_pingpong(f, ctx, lays[l]);
    for (int l = 0; l < 2; l++)
        if (has_results("mpmc", lays[l]))
            md_mpmc(f, ctx, lays[l]);
    if (has_results("mpmc", "loaded"))
        md_mpmc(f, ctx, "loaded");
    if (has_results("typed", "1proc"))
        md_typed(f, ctx, "1proc");
    if (has_results("typed", "fill"))
        md_typed(f, ctx, "fill");
    if (has_results("batch", "2cpu"))
        case_batch_report(f, ctx); /* case_batch.c */
    for (int l = 0; l < 2; l++)
        if (has_results("wakeup", lays[l]))
            md_wakeup(f, ctx, lays[l]);
    peers_md(f, ctx);
    md_depths(f, ctx);

    fprintf(f, "\n## Plots\n\n");
    if (plots->ext) {
        if (plots->throughput)
            fprintf(f, "![throughput by size](throughput.%s)\n\n", plots->ext);
        if (plots->latency)
            fprintf(f, "![round-trip latency distribution](latency.%s)\n", plots->ext);
    } else if (!has_results("stream", "2cpu") && !has_results("pingpong", NULL))
        fprintf(f, "Nothing to plot in this run.\n");
    else if (!o->plots)
        fprintf(f, "Not drawn (--no-plots).\n");
    else if (!have_program("gnuplot"))
        fprintf(f, "gnuplot not installed: no plots (apt-get install gnuplot-nox)\n");
    else
        fprintf(f, "gnuplot failed; no plots.\n");

    size_t nnotes;
    const char *const *notes = res_notes(&nnotes);
    if (nnotes) {
        fprintf(f, "\n## Notes\n\n");
        for (size_t i = 0; i < nnotes; i++)
            fprintf(f, "- %s\n", notes[i]);
    }
    fprintf(f, "\nRaw figures: results.csv (one line per figure per repetition); targets: "
               "targets.csv.\n");
    return fclose(f) == 0 ? 0 : -errno;
}

int report_write(const struct bench_ctx *ctx, const struct bench_env *env)
{
    const char *dir = ctx->opt->outdir;
    int rc = write_csv(dir);
    if (rc == 0)
        rc = write_targets_csv(ctx, dir);
    if (rc < 0) {
        fprintf(stderr, "pbx_bench: cannot write into %s: %s\n", dir, strerror(-rc));
        return -1;
    }
    struct plots plots = {NULL, 0, 0};
    clear_plots(dir);
    if (ctx->opt->plots) {
        if (have_program("gnuplot"))
            plots = draw_plots(ctx, dir);
        else
            fprintf(stderr, "gnuplot not installed: no plots (apt-get install gnuplot-nox)\n");
    }
    rc = write_summary(ctx, env, &plots);
    if (rc < 0) {
        fprintf(stderr, "pbx_bench: cannot write %s/summary.md: %s\n", dir, strerror(-rc));
        return -1;
    }
    return 0;
}
