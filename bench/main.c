/*
 * main.c — pbx_bench: postbox against System V and POSIX queues, pipes, Unix sockets and a
 * bare spin ring, side by side in one run (make bench; docs/performance.md explains the method).
 *
 * This file holds the two registries — the cases (one scenario per case_*.c) and the
 * transports (one per tr_*.c) — and what surrounds a run: the command line, a private IPC
 * namespace in which the kernel's queue limits are raised so that every transport can be given
 * the same depth, a fresh POSTBOX_DIR under /dev/shm that is removed at exit (Ctrl-C included),
 * the facts about the machine for the report, and the exit status: non-zero only for errors
 * (a message lost or corrupted, a call failing, a hang), never for speed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "postbox.h"

/* ---- the registries -------------------------------------------------------------------- */

static const struct bench_case all_cases[] = {
    {"stream", "streaming throughput, 1 producer -> 1 consumer", case_stream_run},
    {"pingpong", "round-trip latency", case_pingpong_run},
    {"mpmc", "4 producers -> 4 consumers", case_mpmc_run},
    {"typed", "receive by type at depth 10 000 over 100 types", case_typed_run},
    {"backlog", "receive by type right after a fill of 10 000", case_backlog_run},
    {"wakeup", "cost of waking a sleeping receiver", case_wakeup_run},
    {"peers", "ZeroMQ, nng, Boost.Interprocess, iceoryx beside postbox (bench/peers/)",
     case_peers_run},
    {"batch", "16 B streaming with pbx_sendv/pbx_recvv, 32 per call", case_batch_run},
};
#define NCASES (sizeof(all_cases) / sizeof(all_cases[0]))

static const struct tr_ops *const all_transports[] = {
    &tr_postbox_ops, &tr_sysv_ops, &tr_posixmq_ops, &tr_pipe_ops, &tr_seqpacket_ops, &tr_ring_ops,
};
#define NTRANSPORTS (sizeof(all_transports) / sizeof(all_transports[0]))

/* ---- options --------------------------------------------------------------------------- */

static void defaults(struct bench_opts *o, int quick)
{
    memset(o, 0, sizeof(*o));
    static const size_t sizes[] = {16, 256, 4096, 65536};
    o->quick = quick;
    o->nsizes = 4;
    memcpy(o->sizes, sizes, sizeof(sizes));
    o->depth = 1024;
    o->outdir = "build/bench-results";
    o->rtt_size = 16;
    o->mpmc_procs = 4;
    o->typed_depth = 10000;
    o->typed_types = 100;
    o->wake_gap_us = 300;
    o->use_namespace = 1;
    o->plots = 1;
    if (!quick) {
        /* About 75 s on the 2-CPU development VM, where the kernel's round trip (~60 µs)
         * dominates the ping-pong case; make bench must stay under 3 minutes. */
        o->reps = 7;
        o->stream_msgs = 300000;
        o->stream_bytes = 256ull << 20;
        o->stream_min = 2000;
        o->rtt_iters = 10000;
        o->mpmc_msgs = 400000;
        o->typed_batches = 20;
        o->wake_iters = 200;
        o->timeout_s = 60;
    } else {
        o->reps = 2;
        o->stream_msgs = 20000;
        o->stream_bytes = 16ull << 20;
        o->stream_min = 200;
        o->rtt_iters = 1000;
        o->mpmc_msgs = 20000;
        o->typed_batches = 3;
        o->wake_iters = 30;
        o->timeout_s = 20;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pbx_bench [options]\n"
            "  --quick             short run: a smoke test, never judged on speed\n"
            "  --full              the whole suite (default)\n"
            "  -o, --out DIR       output directory (default build/bench-results)\n"
            "  -c, --cases LIST    cases to run, comma-separated (default: all; --list)\n"
            "  -t, --transports L  transports, comma-separated (default: all; --list)\n"
            "  -l, --layouts LIST  2cpu,1cpu (default: each case's own)\n"
            "  -r, --reps N        repetitions of every measurement\n"
            "  -d, --depth N       queue depth for every transport, in messages (1024)\n"
            "  -s, --sizes LIST    streaming payload sizes, e.g. 16,256,4k,64k\n"
            "  --stream-msgs N     streaming: messages per run at most\n"
            "  --stream-bytes N    streaming: payload bytes per run at most\n"
            "  --stream-min N      streaming: messages per run at least\n"
            "  --rtt-iters N       round trips per run      --rtt-size N   ping-pong payload\n"
            "  --mpmc-msgs N       messages per 4x4 run     --mpmc-procs N producers = consumers\n"
            "  --typed-depth N     typed: queued messages   --typed-types N  over this many types\n"
            "  --typed-batches N   typed: timed batches of 100 receives\n"
            "  --wake-iters N      wake-ups per run         --wake-gap-us N  sleep before each\n"
            "  --scale F           multiply every iteration count by F\n"
            "  --timeout S         kill and report a run that takes longer (seconds)\n"
            "  --equal-depth       streaming: give every transport the smallest depth that\n"
            "                      any of them reached at that size (default: each as deep\n"
            "                      as it allows, up to --depth)\n"
            "  --no-namespace      stay in the current IPC namespace (default limits)\n"
            "  --no-plots          do not call gnuplot\n"
            "  --list              list cases and transports\n");
}

static int parse_ulong(const char *s, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (*end || v > ULONG_MAX)
        return -1;
    *out = (unsigned long) v;
    return 0;
}

static int parse_sizes(const char *s, struct bench_opts *o)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    o->nsizes = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned long v;
        if (parse_ulong(tok, &v) || v < 16 || v > (16ul << 20) || o->nsizes == BENCH_MAX_SIZES)
            return -1;
        o->sizes[o->nsizes++] = v;
    }
    return o->nsizes ? 0 : -1;
}

static int in_list(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, name, n))
            return 1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* Every name in list must be one of names[]. */
static int check_list(const char *what, const char *list, const char *const *names, size_t n)
{
    if (!list)
        return 0;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < n && strcmp(names[i], tok))
            i++;
        if (i == n) {
            fprintf(stderr, "pbx_bench: unknown %s '%s' (--list shows them)\n", what, tok);
            return -1;
        }
    }
    return 0;
}

enum {
    OPT_QUICK = 256,
    OPT_FULL,
    OPT_STREAM_MSGS,
    OPT_STREAM_BYTES,
    OPT_STREAM_MIN,
    OPT_RTT_ITERS,
    OPT_RTT_SIZE,
    OPT_MPMC_MSGS,
    OPT_MPMC_PROCS,
    OPT_TYPED_DEPTH,
    OPT_TYPED_TYPES,
    OPT_TYPED_BATCHES,
    OPT_WAKE_ITERS,
    OPT_WAKE_GAP,
    OPT_SCALE,
    OPT_TIMEOUT,
    OPT_EQUAL_DEPTH,
    OPT_NO_NS,
    OPT_NO_PLOTS,
    OPT_LIST,
};

static const struct option long_opts[] = {
    {"quick", no_argument, NULL, OPT_QUICK},
    {"full", no_argument, NULL, OPT_FULL},
    {"out", required_argument, NULL, 'o'},
    {"cases", required_argument, NULL, 'c'},
    {"transports", required_argument, NULL, 't'},
    {"layouts", required_argument, NULL, 'l'},
    {"reps", required_argument, NULL, 'r'},
    {"depth", required_argument, NULL, 'd'},
    {"sizes", required_argument, NULL, 's'},
    {"stream-msgs", required_argument, NULL, OPT_STREAM_MSGS},
    {"stream-bytes", required_argument, NULL, OPT_STREAM_BYTES},
    {"stream-min", required_argument, NULL, OPT_STREAM_MIN},
    {"rtt-iters", required_argument, NULL, OPT_RTT_ITERS},
    {"rtt-size", required_argument, NULL, OPT_RTT_SIZE},
    {"mpmc-msgs", required_argument, NULL, OPT_MPMC_MSGS},
    {"mpmc-procs", required_argument, NULL, OPT_MPMC_PROCS},
    {"typed-depth", required_argument, NULL, OPT_TYPED_DEPTH},
    {"typed-types", required_argument, NULL, OPT_TYPED_TYPES},
    {"typed-batches", required_argument, NULL, OPT_TYPED_BATCHES},
    {"wake-iters", required_argument, NULL, OPT_WAKE_ITERS},
    {"wake-gap-us", required_argument, NULL, OPT_WAKE_GAP},
    {"scale", required_argument, NULL, OPT_SCALE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"equal-depth", no_argument, NULL, OPT_EQUAL_DEPTH},
    {"no-namespace", no_argument, NULL, OPT_NO_NS},
    {"no-plots", no_argument, NULL, OPT_NO_PLOTS},
    {"list", no_argument, NULL, OPT_LIST},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void list_all(void)
{
    printf("cases:\n");
    for (size_t i = 0; i < NCASES; i++)
        printf("  %-10s %s\n", all_cases[i].name, all_cases[i].title);
    printf("transports:\n");
    for (size_t i = 0; i < NTRANSPORTS; i++)
        printf("  %-10s %s\n", all_transports[i]->name, all_transports[i]->title);
}

/* Returns 0, 1 to exit successfully (--help, --list), or -1 for a usage error. */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--full"))
            quick = 0;
    }
    defaults(o, quick);
    double scale = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:c:t:l:r:d:s:h", long_opts, NULL)) != -1) {
        unsigned long v = 0;
        int bad = 0;
        switch (c) {
        case OPT_QUICK:
        case OPT_FULL:
            break;
        case 'o':
            o->outdir = optarg;
            break;
        case 'c':
            o->cases = optarg;
            break;
        case 't':
            o->transports = optarg;
            break;
        case 'l':
            o->layouts = (in_list(optarg, "2cpu") ? LAYOUT_2CPU : 0) |
                         (in_list(optarg, "1cpu") ? LAYOUT_1CPU : 0);
            bad = o->layouts == 0;
            break;
        case 's':
            bad = parse_sizes(optarg, o);
            break;
        case OPT_SCALE:
            scale = strtod(optarg, NULL);
            bad = !(scale > 0);
            break;
        case OPT_TIMEOUT:
            o->timeout_s = strtod(optarg, NULL);
            bad = !(o->timeout_s > 0);
            break;
        case OPT_EQUAL_DEPTH:
            o->equal_depth = 1;
            break;
        case OPT_NO_NS:
            o->use_namespace = 0;
            break;
        case OPT_NO_PLOTS:
            o->plots = 0;
            break;
        case OPT_LIST:
            list_all();
            return 1;
        case 'h':
            usage(stdout);
            return 1;
        case 'r':
        case 'd':
        case OPT_STREAM_MSGS:
        case OPT_STREAM_BYTES:
        case OPT_STREAM_MIN:
        case OPT_RTT_ITERS:
        case OPT_RTT_SIZE:
        case OPT_MPMC_MSGS:
        case OPT_MPMC_PROCS:
        case OPT_TYPED_DEPTH:
        case OPT_TYPED_TYPES:
        case OPT_TYPED_BATCHES:
        case OPT_WAKE_ITERS:
        case OPT_WAKE_GAP:
            if (parse_ulong(optarg, &v) || v == 0) {
                bad = 1;
                break;
            }
            switch (c) {
            case 'r':
                o->reps = v > 256 ? 256 : (int) v;
                break;
            case 'd':
                o->depth = v;
                break;
            case OPT_STREAM_MSGS:
                o->stream_msgs = v;
                break;
            case OPT_STREAM_BYTES:
                o->stream_bytes = v;
                break;
            case OPT_STREAM_MIN:
                o->stream_min = v;
                break;
            case OPT_RTT_ITERS:
                o->rtt_iters = v;
                break;
            case OPT_RTT_SIZE:
                o->rtt_size = v < 16 ? 16 : v;
                break;
            case OPT_MPMC_MSGS:
                o->mpmc_msgs = v;
                break;
            case OPT_MPMC_PROCS:
                o->mpmc_procs = v > 16 ? 16 : (unsigned) v;
                break;
            case OPT_TYPED_DEPTH:
                o->typed_depth = v;
                break;
            case OPT_TYPED_TYPES:
                o->typed_types = v > 65535 ? 65535 : v;
                break;
            case OPT_TYPED_BATCHES:
                o->typed_batches = v;
                break;
            case OPT_WAKE_ITERS:
                o->wake_iters = v;
                break;
            case OPT_WAKE_GAP:
                o->wake_gap_us = v > 999999 ? 999999 : v;
                break;
            }
            break;
        default:
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "pbx_bench: bad value for option: %s\n", optarg ? optarg : "");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pbx_bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (scale != 1) {
        unsigned long *counts[] = {&o->stream_msgs, &o->stream_min,    &o->rtt_iters,
                                   &o->mpmc_msgs,   &o->typed_batches, &o->wake_iters};
        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
            double v = (double) *counts[i] * scale;
            *counts[i] = v < 1 ? 1 : (unsigned long) v;
        }
        o->stream_bytes = (unsigned long long) ((double) o->stream_bytes * scale);
        if (o->stream_bytes < 16)
            o->stream_bytes = 16;
    }
    const char *cnames[NCASES], *tnames[NTRANSPORTS];
    for (size_t i = 0; i < NCASES; i++)
        cnames[i] = all_cases[i].name;
    for (size_t i = 0; i < NTRANSPORTS; i++)
        tnames[i] = all_transports[i]->name;
    if (check_list("case", o->cases, cnames, NCASES) ||
        check_list("transport", o->transports, tnames, NTRANSPORTS))
        return -1;
    return 0;
}

/* ---- the IPC namespace and the kernel's limits ----------------------------------------- */

static int write_long(const char *path, long v)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", v);
    int rc = write(fd, buf, (size_t) n) == n ? 0 : -errno;
    close(fd);
    return rc;
}

static void describe_limits(char *out, size_t cap)
{
    struct rlimit rl;
    char mq[32] = "?";
    if (getrlimit(RLIMIT_MSGQUEUE, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY)
            snprintf(mq, sizeof(mq), "unlimited");
        else
            snprintf(mq, sizeof(mq), "%llu", (unsigned long long) rl.rlim_cur);
    }
    snprintf(out, cap,
             "kernel.msgmnb %ld, kernel.msgmax %ld, fs.mqueue.msg_max %ld, "
             "fs.mqueue.msgsize_max %ld, fs.pipe-max-size %ld, net.core.wmem_max %ld, "
             "RLIMIT_MSGQUEUE %s",
             bench_read_long("/proc/sys/kernel/msgmnb"), bench_read_long("/proc/sys/kernel/msgmax"),
             bench_read_long("/proc/sys/fs/mqueue/msg_max"),
             bench_read_long("/proc/sys/fs/mqueue/msgsize_max"),
             bench_read_long("/proc/sys/fs/pipe-max-size"),
             bench_read_long("/proc/sys/net/core/wmem_max"), mq);
}

static void setup_ipc(const struct bench_opts *o, struct bench_env *env)
{
    size_t max_size = o->rtt_size;
    for (int i = 0; i < o->nsizes; i++)
        if (o->sizes[i] > max_size)
            max_size = o->sizes[i];
    if (!o->use_namespace) {
        snprintf(env->ipc, sizeof(env->ipc),
                 "the current IPC namespace (--no-namespace): its limits apply");
    } else if (unshare(CLONE_NEWIPC) != 0) {
        int e = errno;
        snprintf(env->ipc, sizeof(env->ipc),
                 "the current IPC namespace: unshare(CLONE_NEWIPC) failed (%s), so the "
                 "kernel's queue limits could not be raised; see the depth table",
                 strerror(e));
        res_note("no private IPC namespace (unshare: %s): System V and POSIX queues keep the "
                 "current limits, so their depths may differ from the others",
                 strerror(e));
    } else {
        unsigned long long mnb = (unsigned long long) o->depth * max_size;
        if (mnb < o->typed_depth * 16)
            mnb = o->typed_depth * 16;
        if (mnb < 16384)
            mnb = 16384;
        if (mnb > INT_MAX)
            mnb = INT_MAX;
        long msgmax = max_size > 8192 ? (long) max_size : 8192;
        long mq_max = o->depth > 10 ? (long) o->depth : 10;
        if (mq_max > 65536)
            mq_max = 65536;
        long mq_size = msgmax > (16l << 20) ? (16l << 20) : msgmax;
        struct {
            const char *path;
            long value;
        } w[] = {
            {"/proc/sys/kernel/msgmax", msgmax},
            {"/proc/sys/kernel/msgmnb", (long) mnb},
            {"/proc/sys/fs/mqueue/msg_max", mq_max},
            {"/proc/sys/fs/mqueue/msgsize_max", mq_size},
        };
        int failed = 0;
        for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
            int rc = write_long(w[i].path, w[i].value);
            if (rc < 0) {
                failed++;
                res_note("private IPC namespace: could not set %s to %ld: %s", w[i].path,
                         w[i].value, strerror(-rc));
            }
        }
        snprintf(env->ipc, sizeof(env->ipc),
                 "a private IPC namespace (unshare(CLONE_NEWIPC)), queue limits raised for this "
                 "run only%s",
                 failed ? " (some could not be: see the notes)" : "");
    }
    /* POSIX queues are charged to RLIMIT_MSGQUEUE (800 KiB by default): raise it as far as
     * allowed, so that it is not what limits mq's depth. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_MSGQUEUE, &rl) == 0) {
        struct rlimit want = {RLIM_INFINITY, RLIM_INFINITY};
        if (setrlimit(RLIMIT_MSGQUEUE, &want) != 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_MSGQUEUE, &rl);
        }
    }
    describe_limits(env->limits, sizeof(env->limits));
}

/* ---- the mailbox directory ------------------------------------------------------------- */

static char pbx_dir[256];
static pid_t main_pid;

static void remove_pbx_dir(void)
{
    if (!pbx_dir[0] || getpid() != main_pid)
        return;
    DIR *d = opendir(pbx_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(pbx_dir);
    pbx_dir[0] = 0;
}

static int make_pbx_dir(void)
{
    snprintf(pbx_dir, sizeof(pbx_dir), "/dev/shm/pbx-bench.XXXXXX");
    if (!mkdtemp(pbx_dir)) {
        fprintf(stderr, "pbx_bench: cannot create a mailbox directory in /dev/shm: %s\n",
                strerror(errno));
        pbx_dir[0] = 0;
        return -1;
    }
    setenv("POSTBOX_DIR", pbx_dir, 1);
    atexit(remove_pbx_dir);
    return 0;
}

/* ---- the machine ----------------------------------------------------------------------- */

static void read_first_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f) {
        if (fgets(out, (int) cap, f))
            out[strcspn(out, "\n")] = 0;
        fclose(f);
    }
}

static void describe_machine(struct bench_env *env)
{
    snprintf(env->cpu_model, sizeof(env->cpu_model), "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof(line), f)) {
            if (!strncmp(line, "model name", 10)) {
                char *v = strchr(line, ':');
                if (v) {
                    v += 1 + strspn(v + 1, " \t");
                    v[strcspn(v, "\n")] = 0;
                    snprintf(env->cpu_model, sizeof(env->cpu_model), "%s", v);
                }
                break;
            }
        }
        fclose(f);
    }
    env->ncpu = (int) sysconf(_SC_NPROCESSORS_ONLN);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(env->kernel, sizeof(env->kernel), "%.80s (%.32s)", u.release, u.machine);
    snprintf(env->clocksource, sizeof(env->clocksource), "?");
    read_first_line("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                    env->clocksource, sizeof(env->clocksource));
    time_t now = time(NULL);
    strftime(env->date, sizeof(env->date), "%Y-%m-%d %H:%M %Z", localtime(&now));
    const int n = 200000;
    int64_t t0 = bench_now();
    for (int i = 0; i < n; i++)
        (void) bench_now();
    env->clock_ns = (double) (bench_now() - t0) / n;
    env->pbx_version = pbx_version();
}

static int pick_cpus(struct bench_ctx *ctx)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return -1;
    int found = 0;
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++)
        if (CPU_ISSET(c, &set))
            ctx->cpu[found++] = c;
    if (found == 0)
        return -1;
    if (found == 1)
        ctx->cpu[1] = ctx->cpu[0];
    ctx->two_cpus = found == 2;
    return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct bench_opts opt;
    int rc = parse_args(argc, argv, &opt);
    if (rc)
        return rc > 0 ? 0 : 2;
    main_pid = getpid();

    struct bench_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.opt = &opt;
    for (size_t i = 0; i < NTRANSPORTS; i++)
        if (in_list(opt.transports, all_transports[i]->name))
            ctx.tr[ctx.ntr++] = all_transports[i];
    if (pick_cpus(&ctx) != 0) {
        fprintf(stderr, "pbx_bench: sched_getaffinity: %s\n", strerror(errno));
        return 2;
    }
    if (!ctx.two_cpus)
        res_note("only one CPU is available to this process: the two-CPU layout is skipped");
    if (mkdir(opt.outdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "pbx_bench: cannot create %s: %s\n", opt.outdir, strerror(errno));
        return 2;
    }

    struct bench_env env;
    memset(&env, 0, sizeof(env));
    int64_t start = bench_now();
    describe_machine(&env);
    setup_ipc(&opt, &env);
    if (make_pbx_dir() != 0)
        return 2;
    bench_process_init();
    fprintf(stderr, "pbx_bench: %s mode, %d repetitions, CPUs %d and %d; IPC: %s\n",
            opt.quick ? "quick" : "full", opt.reps, ctx.cpu[0], ctx.cpu[1], env.ipc);

    int interrupted = 0;
    for (size_t i = 0; i < NCASES && !interrupted; i++) {
        if (!in_list(opt.cases, all_cases[i].name))
            continue;
        int64_t t0 = bench_now();
        rc = all_cases[i].run(&ctx);
        fprintf(stderr, "pbx_bench: %s took %.1f s\n", all_cases[i].name,
                (double) (bench_now() - t0) / 1e9);
        if (rc == -EINTR || bench_interrupted())
            interrupted = 1;
    }
    env.wall_s = (double) (bench_now() - start) / 1e9;
    if (interrupted) {
        fprintf(stderr, "pbx_bench: interrupted; partial results written\n");
        res_note("the run was interrupted: results are partial");
    }
    if (report_write(&ctx, &env) != 0)
        return 2;
    remove_pbx_dir();
    if (interrupted)
        return 130;
    if (res_error_count()) {
        fprintf(stderr, "pbx_bench: %d error(s): see summary.md\n", res_error_count());
        return 1;
    }
    return 0;
}
