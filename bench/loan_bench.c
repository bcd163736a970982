/*
 * loan_bench.c — pbx_bench_loan: zero-copy loans against postbox's copying send, 64 KiB
 * messages, side by side in one run (make bench runs it after pbx_bench; docs/performance.md).
 *
 * One producer process pinned to one CPU, one consumer pinned to another, on a private mailbox
 * of 256 messages. Rows, each measured REPS times, the rows interleaved within a repetition so
 * that a change in the machine's load falls on all of them alike:
 *   copy       pbx_send of an untouched buffer, pbx_recv into a buffer
 *   loan       pbx_loan + pbx_commit, pbx_recv_loan + pbx_return; the payload untouched
 *   copy_rw    the producer writes every byte of its buffer before pbx_send, the consumer reads
 *              every byte after pbx_recv
 *   loan_rw    the producer writes every byte in place (pbx_loan_piece), the consumer reads
 *              every byte in place
 *   rtt_copy   64 KiB round trip (two mailboxes): pbx_send / pbx_recv each way
 *   rtt_loan   the same through loans (payload untouched)
 * Output: one line per figure and repetition ("loan,ROW,REP,VALUE,UNIT"), then a table of
 * medians and of per-repetition ratios (their median), with the load average at the start.
 * Counts: -n MSGS (stream), -r ROUNDS (round trip), -k REPS; --quick shortens everything.
 * Exit status non-zero only when a message arrives wrong or a call fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"

#define SIZE  65536u
#define DEPTH 256u
#define NROWS 6

static const char *const rows[NROWS] = {"copy",    "loan",     "copy_rw",
                                        "loan_rw", "rtt_copy", "rtt_loan"};

struct shared {
    volatile int go;
    volatile int ready;
    double value; /* msg/s for streams, µs median round trip for the rest */
    double p99;
    int failed;
};

static unsigned long stream_msgs = 20000, rtt_rounds = 5000;
static int reps = 5;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void pin(int cpu)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % n, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static void fail(struct shared *sh, const char *what, long r)
{
    fprintf(stderr, "pbx_bench_loan: %s: %s\n", what, pbx_strerror((int) r));
    sh->failed = 1;
    _exit(1);
}

/* Write every byte of the loan in place; mark = the message's number. */
static void write_loan(struct pbx_loan *l, unsigned char mark, struct shared *sh)
{
    size_t off = 0;
    ssize_t n;
    void *p;
    while ((n = pbx_loan_piece(l, off, &p)) > 0) {
        memset(p, mark, (size_t) n);
        off += (size_t) n;
    }
    if (n < 0 || off != l->len)
        fail(sh, "pbx_loan_piece", n);
}

static uint64_t sum_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t s = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, b + i, 8);
        s += w;
    }
    for (; i < n; i++)
        s += b[i];
    return s;
}

/* Read every byte of the loan in place; check the first byte. */
static uint64_t read_loan(struct pbx_loan *l, unsigned char mark, struct shared *sh)
{
    size_t off = 0;
    ssize_t n;
    void *p;
    uint64_t s = 0;
    while ((n = pbx_loan_piece(l, off, &p)) > 0) {
        if (off == 0 && *(unsigned char *) p != mark)
            fail(sh, "loan_rw: wrong payload", -EBADMSG);
        s += sum_bytes(p, (size_t) n);
        off += (size_t) n;
    }
    if (n < 0 || off != l->len)
        fail(sh, "pbx_loan_piece", n);
    return s;
}

static volatile uint64_t sink;

static void producer(pbx_t *q, int row, struct shared *sh)
{
    static unsigned char buf[SIZE];
    memset(buf, 1, sizeof(buf));
    __atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!sh->go)
        ;
    for (unsigned long i = 0; i < stream_msgs; i++) {
        unsigned char mark = (unsigned char) i;
        int r;
        if (row == 0 || row == 2) {
            if (row == 2)
                memset(buf, mark, sizeof(buf));
            r = pbx_send(q, 1, buf, SIZE, 0);
        } else {
            struct pbx_loan l;
            if ((r = pbx_loan(q, SIZE, 0, &l)) < 0)
                fail(sh, "pbx_loan", r);
            if (row == 3)
                write_loan(&l, mark, sh);
            r = pbx_commit(&l, 1, 0);
        }
        if (r < 0)
            fail(sh, "send", r);
    }
}

static void consumer(pbx_t *q, int row, struct shared *sh)
{
    static unsigned char buf[SIZE];
    __atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!sh->go)
        ;
    double t0 = now_s();
    uint64_t s = 0;
    for (unsigned long i = 0; i < stream_msgs; i++) {
        unsigned char mark = (unsigned char) i;
        ssize_t n;
        if (row == 0 || row == 2) {
            n = pbx_recv(q, 0, buf, sizeof(buf), 0, NULL);
            if (n != SIZE)
                fail(sh, "pbx_recv", n);
            if (row == 2) {
                if (buf[0] != mark)
                    fail(sh, "copy_rw: wrong payload", -EBADMSG);
                s += sum_bytes(buf, SIZE);
            }
        } else {
            struct pbx_loan l;
            n = pbx_recv_loan(q, 0, 0, &l);
            if (n != SIZE)
                fail(sh, "pbx_recv_loan", n);
            if (row == 3)
                s += read_loan(&l, mark, sh);
            int r = pbx_return(&l);
            if (r < 0)
                fail(sh, "pbx_return", r);
        }
    }
    double t1 = now_s();
    sink = s;
    sh->value = (double) stream_msgs / (t1 - t0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/* Round trips: the client (CPU 0) sends on ping and waits on pong; the server echoes. */
static void rtt_side(pbx_t *ping, pbx_t *pong, int client, int loans, struct shared *sh)
{
    static unsigned char buf[SIZE];
    memset(buf, 2, sizeof(buf));
    double *lat = client ? malloc(rtt_rounds * sizeof(double)) : NULL;
    __atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!sh->go)
        ;
    pbx_t *out = client ? ping : pong, *in = client ? pong : ping;
    for (unsigned long i = 0; i < rtt_rounds; i++) {
        double t0 = client ? now_s() : 0;
        for (int leg = 0; leg < 2; leg++) {
            int sending = (leg == 0) == (client != 0);
            long r;
            if (sending && !loans) {
                r = pbx_send(out, 1, buf, SIZE, 0);
            } else if (sending) {
                struct pbx_loan l;
                if ((r = pbx_loan(out, SIZE, 0, &l)) == 0)
                    r = pbx_commit(&l, 1, 0);
            } else if (!loans) {
                r = pbx_recv(in, 0, buf, sizeof(buf), 0, NULL);
            } else {
                struct pbx_loan l;
                if ((r = pbx_recv_loan(in, 0, 0, &l)) == SIZE)
                    r = pbx_return(&l);
            }
            if (r < 0 || (!sending && !loans && r != SIZE))
                fail(sh, "round trip", r);
        }
        if (client)
            lat[i] = (now_s() - t0) * 1e6;
    }
    if (client) {
        qsort(lat, rtt_rounds, sizeof(double), cmp_double);
        sh->value = lat[rtt_rounds / 2];
        sh->p99 = lat[rtt_rounds * 99 / 100];
        free(lat);
    }
}

static pbx_t *new_box(void)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = DEPTH;
    o.max_msg_size = SIZE;
    o.max_bytes = (uint64_t) DEPTH * SIZE;
    pbx_t *q;
    int r = pbx_open_private(&o, &q);
    if (r < 0) {
        fprintf(stderr, "pbx_bench_loan: pbx_open_private: %s\n", pbx_strerror(r));
        exit(1);
    }
    return q;
}

/* One measurement of row: 0 and the figures in *value, *p99, or -1. */
static int measure(int row, double *value, double *p99)
{
    struct shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    pbx_t *a = new_box(), *b = row >= 4 ? new_box() : NULL;
    pid_t kid[2];
    for (int side = 0; side < 2; side++) {
        kid[side] = fork();
        if (kid[side] == 0) {
            pin(side);
            if (row >= 4)
                rtt_side(a, b, side == 0, row == 5, sh);
            else if (side == 0)
                producer(a, row, sh);
            else
                consumer(a, row, sh);
            _exit(0);
        }
    }
    while (sh->ready < 2)
        usleep(1000);
    sh->go = 1;
    int bad = 0;
    for (int side = 0; side < 2; side++) {
        int status;
        waitpid(kid[side], &status, 0);
        bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    *value = sh->value;
    *p99 = sh->p99;
    bad |= sh->failed;
    pbx_close(a);
    if (b)
        pbx_close(b);
    munmap(sh, sizeof(*sh));
    return bad ? -1 : 0;
}

static double median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            stream_msgs = 1000;
            rtt_rounds = 500;
            reps = 2;
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            stream_msgs = strtoul(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            rtt_rounds = strtoul(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "-k") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--full") != 0) {
            fprintf(stderr, "usage: pbx_bench_loan [--quick] [-n MSGS] [-r ROUNDS] [-k REPS]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 99 || stream_msgs < 1 || rtt_rounds < 100)
        return 2;
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    printf("# pbx_bench_loan: 64 KiB, depth %u, %d repetitions, %lu msgs per stream, %lu round "
           "trips; load average %.2f %.2f %.2f; %ld CPUs\n",
           DEPTH, reps, stream_msgs, rtt_rounds, load[0], load[1], load[2],
           sysconf(_SC_NPROCESSORS_ONLN));
    static double v[NROWS][100], p99[NROWS][100];
    int status = 0;
    for (int k = 0; k < reps; k++)
        for (int row = 0; row < NROWS; row++) {
            if (measure(row, &v[row][k], &p99[row][k]) < 0) {
                fprintf(stderr, "pbx_bench_loan: %s failed\n", rows[row]);
                status = 1;
                v[row][k] = 0;
            }
            printf("loan,%s,%d,%.1f,%s\n", rows[row], k, v[row][k], row < 4 ? "msg/s" : "us");
            if (row >= 4)
                printf("loan,%s_p99,%d,%.1f,us\n", rows[row], k, p99[row][k]);
            fflush(stdout);
        }
    /* Ratios per repetition, then their median. */
    static const struct {
        const char *what;
        int num, den;
    } ratios[] = {
        {"loan (untouched) / copy (untouched)", 1, 0},
        {"loan_rw (written and read in place) / copy (untouched)", 3, 0},
        {"loan_rw / copy_rw (written before, read after)", 3, 2},
        {"round trip: copy / loan (> 1: loans faster)", 4, 5},
    };
    printf("\n| row | median | unit |\n|---|---|---|\n");
    for (int row = 0; row < NROWS; row++) {
        double tmp[100];
        memcpy(tmp, v[row], sizeof(double) * (size_t) reps);
        printf("| %s | %.1f | %s |\n", rows[row], median(tmp, reps),
               row < 4 ? "msg/s" : "µs (median round trip)");
        if (row >= 4) {
            memcpy(tmp, p99[row], sizeof(double) * (size_t) reps);
            printf("| %s p99 | %.1f | µs |\n", rows[row], median(tmp, reps));
        }
    }
    printf("\n| ratio (same repetition) | median | min | max |\n|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
        double r[100];
        for (int k = 0; k < reps; k++)
            r[k] = v[ratios[i].den][k] > 0 ? v[ratios[i].num][k] / v[ratios[i].den][k] : 0;
        double med = median(r, reps);
        printf("| %s | %.2f | %.2f | %.2f |\n", ratios[i].what, med, r[0], r[reps - 1]);
    }
    return status;
}
