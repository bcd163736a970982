/*
 * common.c — the machinery every case uses: shared memory, message buffers, the barrier, the
 * child-process runner with its time limit, message stamps, depth measurement, statistics.
 *
 * The runner is the one place that forks. A child dies with the orchestrator
 * (PR_SET_PDEATHSIG), is pinned before it runs its body, and leaves with _exit() so that it
 * never flushes stdio buffers it inherited. The orchestrator waits for SIGCHLD with
 * sigtimedwait() and a deadline: a child that has not finished by then is killed and the
 * measurement reported as a hang. Ctrl-C (or SIGTERM) kills the children of the measurement
 * under way and makes every case return -EINTR, so that main() can remove what it created.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* ---- memory ---------------------------------------------------------------------------- */

void *bench_shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("pbx_bench: mmap");
        exit(2);
    }
    return p;
}

void bench_shared_free(void *p, size_t size)
{
    if (p)
        munmap(p, size);
}

void *bench_buf_alloc(size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, TR_HEADROOM + size + 64) != 0) {
        fprintf(stderr, "pbx_bench: out of memory\n");
        exit(2);
    }
    memset(p, 0, TR_HEADROOM + size + 64);
    return (char *) p + TR_HEADROOM;
}

void bench_buf_free(void *buf)
{
    if (buf)
        free((char *) buf - TR_HEADROOM);
}

/* ---- barrier --------------------------------------------------------------------------- */

void bench_barrier_init(struct bench_barrier *b, unsigned n)
{
    b->n = n;
    b->count = 0;
    b->gen = 0;
}

/* The last arrival resets the count before it publishes the new generation (release), so a
 * waiter that sees the new generation (acquire) may at once use the barrier again. */
void bench_barrier_wait(struct bench_barrier *b)
{
    uint32_t gen = __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->gen, gen + 1, __ATOMIC_RELEASE);
        return;
    }
    for (unsigned spins = 0; __atomic_load_n(&b->gen, __ATOMIC_ACQUIRE) == gen; spins++) {
        if (spins < 2000)
            bench_pause();
        else
            sched_yield();
    }
}

/* ---- layouts --------------------------------------------------------------------------- */

int bench_layout_cpu(const struct bench_ctx *ctx, unsigned layout, int side)
{
    return layout == LAYOUT_2CPU ? ctx->cpu[side ? 1 : 0] : ctx->cpu[0];
}

const char *bench_layout_name(unsigned layout)
{
    return layout == LAYOUT_2CPU ? "2cpu" : "1cpu";
}

/* ---- signals and the error area ------------------------------------------------------- */

#define ERR_AREA 8192
struct err_area {
    uint32_t used;
    char text[ERR_AREA - sizeof(uint32_t)];
};

static struct err_area *err_area;
static volatile sig_atomic_t stop_requested;
static pid_t live_pids[BENCH_MAX_PROCS];
static volatile sig_atomic_t live_count;

static void on_stop(int sig)
{
    (void) sig;
    stop_requested = 1;
    for (sig_atomic_t i = 0; i < live_count; i++)
        if (live_pids[i] > 0)
            kill(live_pids[i], SIGKILL);
}

void bench_process_init(void)
{
    err_area = bench_shared_alloc(sizeof(*err_area));
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* SIGCHLD stays blocked in the orchestrator, which takes it with sigtimedwait(). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
}

int bench_interrupted(void)
{
    return stop_requested != 0;
}

int bench_child_fail(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t) n > sizeof(line) - 3)
        n = (int) sizeof(line) - 3;
    line[n++] = ';';
    line[n++] = ' ';
    uint32_t at = __atomic_fetch_add(&err_area->used, (uint32_t) n, __ATOMIC_RELAXED);
    if (at + (uint32_t) n < sizeof(err_area->text))
        memcpy(err_area->text + at, line, (size_t) n);
    return -1;
}

/* ---- the runner ------------------------------------------------------------------------ */

static void child_start(int cpu, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(3);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        bench_child_fail("sched_setaffinity(CPU %d): %s", cpu, strerror(errno));
        _exit(1);
    }
}

static void kill_all(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGKILL);
}

int bench_run_procs(const struct bench_ctx *ctx, int n, const int *cpus,
                    int (*fn)(int i, void *arg), void *arg, const char *what)
{
    pid_t pids[BENCH_MAX_PROCS];
    int status[BENCH_MAX_PROCS];
    pid_t parent = getpid();
    if (n > BENCH_MAX_PROCS)
        n = BENCH_MAX_PROCS;
    err_area->used = 0;
    err_area->text[0] = 0;
    fflush(NULL);
    live_count = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            res_error("%s: fork: %s", what, strerror(errno));
            kill_all(pids, i);
            for (int k = 0; k < i; k++)
                waitpid(pids[k], NULL, 0);
            return -1;
        }
        if (pid == 0) {
            child_start(cpus[i], parent);
            int rc = fn(i, arg);
            _exit(rc ? 1 : 0);
        }
        pids[i] = pid;
        status[i] = -1;
        live_pids[i] = pid;
        live_count = i + 1;
    }

    int left = n, hung = 0;
    int64_t deadline = bench_now() + (int64_t) (ctx->opt->timeout_s * 1e9);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            int st;
            if (status[i] != -1)
                continue;
            pid_t r = waitpid(pids[i], &st, WNOHANG);
            if (r == pids[i]) {
                status[i] = st;
                live_pids[i] = 0;
                left--;
            }
        }
        if (left == 0)
            break;
        if (stop_requested) {
            kill_all(pids, n);
            break;
        }
        int64_t now = bench_now();
        if (now >= deadline) {
            hung = 1;
            kill_all(pids, n);
            break;
        }
        int64_t wait_ns = deadline - now;
        if (wait_ns > 200000000)
            wait_ns = 200000000; /* look at stop_requested now and then */
        struct timespec ts = {(time_t) (wait_ns / 1000000000), (long) (wait_ns % 1000000000)};
        sigtimedwait(&chld, NULL, &ts);
    }
    if (left > 0) {
        for (int i = 0; i < n; i++)
            if (status[i] == -1)
                waitpid(pids[i], &status[i], 0);
    }
    live_count = 0;
    if (stop_requested)
        return -EINTR;

    int failed = 0;
    char why[256] = "";
    for (int i = 0; i < n; i++) {
        int st = status[i];
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
            continue;
        failed = 1;
        if (!why[0]) {
            if (WIFSIGNALED(st))
                snprintf(why, sizeof(why), "process %d killed by signal %d%s", i, WTERMSIG(st),
                         hung ? "" : " (crash?)");
            else
                snprintf(why, sizeof(why), "process %d exited with %d", i, WEXITSTATUS(st));
        }
    }
    if (hung) {
        res_error("%s: did not finish within %g s (hang?); killed. %s%s", what, ctx->opt->timeout_s,
                  err_area->text[0] ? "children said: " : "", err_area->text);
        return -1;
    }
    if (failed) {
        res_error("%s: %s. %s", what, why, err_area->text);
        return -1;
    }
    return 0;
}

/* ---- message stamps -------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

void msg_stamp(void *buf, size_t len, uint64_t word)
{
    unsigned char *b = buf;
    memcpy(b, &word, 8);
    for (size_t off = 512; off + 16 <= len; off += 512) {
        uint64_t w = mix(word + off);
        memcpy(b + off, &w, 8);
    }
    uint64_t last = mix(word ^ ((uint64_t) len << 32));
    memcpy(b + len - 8, &last, 8);
}

int msg_check(const void *buf, size_t len, uint64_t *word)
{
    const unsigned char *b = buf;
    uint64_t w0, w;
    memcpy(&w0, b, 8);
    *word = w0;
    for (size_t off = 512; off + 16 <= len; off += 512) {
        memcpy(&w, b + off, 8);
        if (w != mix(w0 + off))
            return -1;
    }
    memcpy(&w, b + len - 8, 8);
    return w == mix(w0 ^ ((uint64_t) len << 32)) ? 0 : -1;
}

/* ---- depth ----------------------------------------------------------------------------- */

long bench_measure_depth(const struct tr_ops *t, const struct tr_params *p, const char *case_name,
                         const char **why)
{
    struct tr_chan *c = NULL;
    *why = NULL;
    int rc = t->open(p, &c, why);
    if (rc < 0)
        return rc;
    rc = t->attach(c);
    if (rc < 0) {
        t->close(c);
        return rc;
    }
    void *buf = bench_buf_alloc(p->msg_size);
    /* Stop well past the request: a transport that holds more is reported as holding more,
     * one that never says "full" must not fill the memory. */
    unsigned long limit = p->depth * 4 + 64;
    long n = 0;
    for (; (unsigned long) n < limit; n++) {
        msg_stamp(buf, p->msg_size, MSG_WORD(0, n));
        rc = t->send(c, 1, buf, p->msg_size, TR_NOWAIT);
        if (rc == -EAGAIN)
            break;
        if (rc < 0) {
            res_error("%s: filling to measure the depth (%s, %zu B): message %ld: %s", t->name,
                      case_name, p->msg_size, n, strerror(-rc));
            n = rc;
            break;
        }
    }
    bench_buf_free(buf);
    t->detach(c);
    if (n >= 0)
        res_depth(case_name, t->name, p->msg_size, p->depth, n, *why ? *why : "");
    t->close(c);
    *why = NULL;
    return n;
}

/* ---- statistics ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

void bench_sort(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
}

/* Nearest rank: the smallest sample with at least q of the samples at or below it. */
double bench_quantile_sorted(const double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    double r = ceil(q * (double) n);
    size_t i = r < 1 ? 0 : (size_t) r - 1;
    return v[i < n ? i : n - 1];
}

long bench_read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}
