/*
 * bench.h — what the cases, the transports and the report share: options, the process
 * layouts, the child-process runner, a barrier, message stamping, and the result store.
 *
 * Every measurement runs in child processes fork()ed by the orchestrator (main.c) and pinned
 * with sched_setaffinity: producers on one CPU and consumers on another ("2cpu"), or all on
 * one CPU ("1cpu"). The orchestrator itself only waits, with a time limit, so that a transport
 * that hangs is reported instead of hanging CI. Children return their figures through shared
 * memory; the orchestrator records them with res_add(), one value per figure per repetition,
 * and the report (report.c) computes medians and per-repetition ratios from that store alone.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "transport.h"

#define BENCH_MAX_SIZES 8
#define BENCH_MAX_TR    8
#define BENCH_MAX_PROCS 64

/* Process layouts: where the producer side and the consumer side run. */
#define LAYOUT_2CPU 0x1 /* producers on one CPU, consumers on another */
#define LAYOUT_1CPU 0x2 /* everyone on the same CPU */

/* Everything the command line can change; main.c fills it with the mode's defaults first. */
struct bench_opts {
    int quick;                     /* quick mode: a smoke test, never judged on speed */
    int reps;                      /* repetitions of every measurement */
    unsigned long depth;           /* queue depth given to every transport, in messages */
    size_t sizes[BENCH_MAX_SIZES]; /* streaming payload sizes */
    int nsizes;
    unsigned layouts;                /* LAYOUT_* to run, 0 for each case's default */
    const char *cases;               /* comma-separated case names; NULL for all */
    const char *transports;          /* comma-separated transport names; NULL for all */
    const char *outdir;              /* where results.csv, summary.md and plots go */
    unsigned long stream_msgs;       /* streaming: messages per run at most ... */
    unsigned long long stream_bytes; /* ... and payload bytes per run at most ... */
    unsigned long stream_min;        /* ... but never fewer messages than this */
    size_t rtt_size;                 /* ping-pong payload */
    unsigned long rtt_iters;         /* ping-pong round trips per run */
    unsigned long mpmc_msgs;         /* 4x4: messages per run, all producers together */
    unsigned mpmc_procs;             /* producers, and consumers, in the many-to-many case */
    unsigned long typed_depth;       /* typed receive: messages kept queued */
    unsigned long typed_types;       /* ... over this many types */
    unsigned long typed_batches;     /* ... timed batches of 100 receives */
    unsigned long wake_iters;        /* wake-up: sends to a sleeping receiver per run */
    unsigned long wake_gap_us;       /* ... each after the receiver slept this long */
    double timeout_s;                /* a run that takes longer is killed and reported */
    int equal_depth;                 /* lower the depth to what every transport reaches */
    int use_namespace;               /* try a private IPC namespace with raised limits */
    int plots;                       /* draw plots when gnuplot is installed */
};

/* The orchestrator's view of one benchmark run, handed to every case. */
struct bench_ctx {
    const struct bench_opts *opt;
    const struct tr_ops *tr[BENCH_MAX_TR]; /* the transports selected, in report order */
    int ntr;
    int cpu[2];        /* CPUs for the producer side and the consumer side */
    int two_cpus;      /* whether cpu[0] != cpu[1] is available */
    unsigned long seq; /* for unique channel names */
};

/* A case: one scenario, in its own file (case_*.c), registered in main.c. */
struct bench_case {
    const char *name;
    const char *title;
    int (*run)(struct bench_ctx *ctx); /* 0, or -1 after res_error(); -EINTR when stopped */
};

int case_stream_run(struct bench_ctx *ctx);
int case_pingpong_run(struct bench_ctx *ctx);
int case_mpmc_run(struct bench_ctx *ctx);
int case_typed_run(struct bench_ctx *ctx);
int case_backlog_run(struct bench_ctx *ctx); /* case_backlog.c: typed receive right after a fill */

/* hogs.c: BENCH_HOGS processes that burn CPU time, pinned to the run's CPUs in turn, until
 * stopped (a busy machine). 0 or -errno (none left running). */
#define BENCH_HOGS 2
int bench_hogs_start(const struct bench_ctx *ctx, pid_t pids[BENCH_HOGS]);
void bench_hogs_stop(const pid_t *pids, int n);
int case_wakeup_run(struct bench_ctx *ctx);
int case_peers_run(struct bench_ctx *ctx); /* bench/peers/case_peers.c */
int case_batch_run(struct bench_ctx *ctx);
/* The batch case's table in summary.md (case_batch.c). */
void case_batch_report(FILE *f, const struct bench_ctx *ctx);

/* ---- time, memory, processes (common.c) ----------------------------------------------- */

static inline int64_t bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Busy-wait hint for spinning loops. */
static inline void bench_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* Zeroed MAP_SHARED anonymous memory that children inherit; exits the program on failure. */
void *bench_shared_alloc(size_t size);
void bench_shared_free(void *p, size_t size);

/* A message buffer of size bytes with TR_HEADROOM bytes before it, cache-line aligned. */
void *bench_buf_alloc(size_t size);
void bench_buf_free(void *buf);

/* A reusable barrier in shared memory for n processes. Waiters spin briefly, then yield, so
 * that it also works when everyone is pinned to one CPU. Never used inside a timed region. */
struct bench_barrier {
    uint32_t n;
    uint32_t count;
    uint32_t gen;
};
void bench_barrier_init(struct bench_barrier *b, unsigned n);
void bench_barrier_wait(struct bench_barrier *b);

/* The CPUs of a layout for the producer side (side 0) and the consumer side (side 1). */
int bench_layout_cpu(const struct bench_ctx *ctx, unsigned layout, int side);
const char *bench_layout_name(unsigned layout);

/*
 * Run fn(i, arg) in n child processes, child i pinned to cpus[i], and wait for all of them
 * within the time limit. A child reports a failure with bench_child_fail() and a non-zero
 * return. Returns 0; -1 after recording the failure with res_error() (what names the
 * measurement); or -EINTR when the user interrupted the run (children are killed).
 */
int bench_run_procs(const struct bench_ctx *ctx, int n, const int *cpus,
                    int (*fn)(int i, void *arg), void *arg, const char *what);

/* In a child: describe what went wrong (collected by bench_run_procs). Returns -1. */
int bench_child_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Set up signal handling and the shared error area; remove what the run created at exit. */
void bench_process_init(void);
int bench_interrupted(void);

/*
 * Messages carry a stamp so that the benchmark is also a correctness check: a 64-bit word
 * (producer and sequence number) at the start, and words derived from it every 512 bytes and
 * at the end, so a lost, duplicated, reordered, torn or corrupted message is noticed without
 * reading every byte. len must be at least 16.
 */
void msg_stamp(void *buf, size_t len, uint64_t word);
int msg_check(const void *buf, size_t len, uint64_t *word);
#define MSG_WORD(producer, seq) (((uint64_t) (producer) << 48) | (uint64_t) (seq))
#define MSG_STOP_BIT            (1ull << 63) /* a producer's "no more messages" */

/*
 * Measure how many messages of p->msg_size a fresh channel holds, by filling it with
 * non-blocking sends, and record it (res_depth). Returns the count, or a negative errno value
 * (-ENOTSUP: the transport does not serve these parameters; *why says why).
 */
long bench_measure_depth(const struct tr_ops *t, const struct tr_params *p, const char *case_name,
                         const char **why);

/* Sorting and order statistics on an array of doubles (sorts it in place). */
void bench_sort(double *v, size_t n);
double bench_quantile_sorted(const double *v, size_t n, double q);

/* ---- the result store (results.c) ----------------------------------------------------- */

/* Record one figure of one repetition. size 0 means "not size-dependent". */
void res_add(const char *case_name, const char *tr, size_t size, const char *layout,
             const char *metric, double value, const char *unit, int rep);
/* The values of one figure by repetition: v[rep] (NaN where missing); returns how many. */
int res_get(const char *case_name, const char *tr, size_t size, const char *layout,
            const char *metric, double *v, int nrep);
/* The depth a transport actually had in a case, for messages of size bytes. */
void res_depth(const char *case_name, const char *tr, size_t size, unsigned long requested,
               long effective, const char *how);
/* A sentence for the report (a skip, a limit that was hit). */
void res_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An error (lost or corrupted message, failed call, hang): reported, and the exit status. */
void res_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int res_error_count(void);
/* Keep the distribution of one repetition's samples (for the latency plot). */
void res_dist(const char *case_name, const char *tr, const char *layout, const double *sorted,
              size_t n);

struct res_record {
    char case_name[16];
    char tr[16];
    size_t size;
    char layout[8];
    char metric[24];
    double value;
    char unit[8];
    int rep;
};
struct res_depth_rec {
    char case_name[16];
    char tr[16];
    size_t size;
    unsigned long requested;
    long effective;
    char how[96];
};
#define RES_DIST_POINTS 201
struct res_dist_rec {
    char case_name[16];
    char tr[16];
    char layout[8];
    double p[RES_DIST_POINTS]; /* quantiles, denser towards the tail: 1 - 10^(-4i/(N-1)) */
    double q[RES_DIST_POINTS]; /* the sample value at quantile p[i] */
};
/* Read access for the report. */
const struct res_record *res_records(size_t *n);
const struct res_depth_rec *res_depths(size_t *n);
const struct res_dist_rec *res_dists(size_t *n);
const char *const *res_notes(size_t *n);
const char *const *res_errors(size_t *n);

/* ---- the report (report.c) ------------------------------------------------------------ */

/* Facts about the machine and the run, for the summary's header. */
struct bench_env {
    char date[64];
    char cpu_model[128];
    int ncpu;
    char kernel[128];
    char clocksource[32];
    char ipc[256];    /* which IPC namespace and limits, in a sentence */
    char limits[256]; /* the kernel limits in force during the run */
    double clock_ns;  /* cost of one clock_gettime(CLOCK_MONOTONIC) */
    const char *pbx_version;
    double wall_s; /* how long the run took */
};

/* Write results.csv, targets.csv, summary.md and the plots into ctx->opt->outdir.
 * Returns 0 or -1 (a file could not be written). */
int report_write(const struct bench_ctx *ctx, const struct bench_env *env);
/* The peers' tables in summary.md (bench/peers/case_peers.c); nothing if the case did not run. */
void peers_md(FILE *f, const struct bench_ctx *ctx);

#endif
