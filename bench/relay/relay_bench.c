/*
 * relay_bench.c — make bench-relay: postbox-relay's throughput and latency, side by side in
 * one run with raw nats.c (js_PublishAsync + batched Fetch) on the same server.
 *
 * It starts its own nats-server (a free port, a store in a temporary directory) and, for the
 * relay, two relays on two POSTBOX_DIRs, exactly as docs/relay.md describes. Throughput: one
 * thread sends N messages, another receives them, timed from the first send to the last
 * receive (every message's sequence is checked). Latency: one message at a time, sent and
 * received, L times; p50 and p99. Scenarios: raw nats.c, the relay with a shared-memory outbox,
 * the relay with a spool outbox (a tenth of the messages: it is bound by the spool's own
 * speed, see make bench-spool); sizes 16 B and 4 KiB. One line per figure
 * ("relay-bench scenario=... size=... msgs_per_s=... p50_us=... p99_us=..."), then a table.
 * It never judges speed. Options: --msgs N (default 50000), --lat N (default 300), --repeat N
 * (rounds, taking turns; medians reported), --quick, --compare PATH (also run another
 * postbox-relay binary, e.g. one built from an older commit, with a shared-memory outbox: a
 * before/after measured in the same run; may be repeated), --window N (also this relay with
 * --window N: pipelined), --only-shm (leave out the spool outbox).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"

static char base[256];
static char url[128];
static pid_t server_pid, relay_a, relay_b;
static const char *relay_bin = PBX_RELAY_BIN;
static const char *relay_window; /* --window for the sending relay, or NULL */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* CPU time (user + system, in µs) a child has used so far, from /proc/PID/stat. */
static double proc_cpu_us(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double) (ut + st) * 1e6 / (double) sysconf(_SC_CLK_TCK);
}

/* CPU per message of the last throughput phase: the server's and the two relays'. */
static double cpu_server, cpu_relays;

static void fail(const char *what)
{
    fprintf(stderr, "relay-bench: %s\n", what);
    exit(1);
}

static void cleanup(void)
{
    pid_t pids[] = {relay_a, relay_b, server_pid};
    for (int i = 0; i < 3; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
    relay_a = relay_b = server_pid = 0;
    if (base[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0)
            fprintf(stderr, "relay-bench: could not remove %s\n", base);
        base[0] = 0;
    }
}

static void on_signal(int sig)
{
    (void) sig;
    cleanup();
    _exit(1);
}

static void start_server(void)
{
    char store[300];
    snprintf(store, sizeof store, "%s/nats", base);
    server_pid = fork();
    if (server_pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", store,
               "--ports_file_dir", base, (char *) NULL);
        execl("/usr/sbin/nats-server", "nats-server", "-a", "127.0.0.1", "-p", "-1", "-js", "-sd",
              store, "--ports_file_dir", base, (char *) NULL);
        _exit(127);
    }
    char ports[400];
    snprintf(ports, sizeof ports, "%s/nats-server_%d.ports", base, (int) server_pid);
    for (int i = 0; i < 1000 && !url[0]; i++) {
        FILE *f = fopen(ports, "r");
        if (f) {
            char buf[512] = {0};
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            char *p = n ? strstr(buf, "nats://127.0.0.1:") : NULL;
            if (p)
                snprintf(url, sizeof url, "nats://127.0.0.1:%d", atoi(p + 17));
        }
        if (!url[0])
            usleep(10000);
    }
    if (!url[0])
        fail("nats-server did not start (apt-get install nats-server)");
    usleep(200000);
}

/* ---- raw nats.c ------------------------------------------------------------------------- */

struct raw {
    jsCtx *js;
    natsSubscription *sub;
    long n;
    size_t size;
    double t_end;
};

static void *raw_consume(void *arg)
{
    struct raw *r = arg;
    long got = 0;
    while (got < r->n) {
        natsMsgList list = {0};
        if (natsSubscription_Fetch(&list, r->sub, 256, 5000, NULL) != NATS_OK)
            fail("raw fetch failed");
        for (int i = 0; i < list.Count; i++) {
            uint64_t seq;
            memcpy(&seq, natsMsg_GetData(list.Msgs[i]), 8);
            if (seq != (uint64_t) got + 1)
                fail("raw: out of order");
            got++;
            natsMsg_Ack(list.Msgs[i], NULL);
        }
        natsMsgList_Destroy(&list);
    }
    r->t_end = now_s();
    return NULL;
}

static void raw_run(size_t size, long n, int lat, double *rate, double *p50, double *p99,
                    double *samples)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
        fail("connect");
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    natsConnection_JetStream(&js, nc, &jo);
    char name[32], subj[64];
    snprintf(name, sizeof name, "RAW%zu", size);
    snprintf(subj, sizeof subj, "raw.%zu", size);
    const char *subjects[1] = {subj};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_WorkQueuePolicy;
    if (js_AddStream(NULL, js, &sc, NULL, NULL) != NATS_OK)
        fail("raw: add stream");
    struct raw r = {js, NULL, n, size, 0};
    if (js_PullSubscribe(&r.sub, js, subj, "bench", NULL, NULL, NULL) != NATS_OK)
        fail("raw: subscribe");
    char *buf = calloc(1, size);
    pthread_t th;
    pthread_create(&th, NULL, raw_consume, &r);
    double s0 = proc_cpu_us(server_pid);
    double t0 = now_s();
    for (long i = 1; i <= n; i++) {
        uint64_t seq = (uint64_t) i;
        memcpy(buf, &seq, 8);
        if (js_PublishAsync(js, subj, buf, (int) size, NULL) != NATS_OK)
            fail("raw publish");
    }
    js_PublishAsyncComplete(js, NULL);
    pthread_join(th, NULL);
    *rate = (double) n / (r.t_end - t0);
    cpu_server = (proc_cpu_us(server_pid) - s0) / (double) n;
    cpu_relays = 0;
    /* Latency: one at a time. */
    for (int i = 0; i < lat; i++) {
        uint64_t seq = 1;
        memcpy(buf, &seq, 8);
        double t = now_s();
        if (js_Publish(NULL, js, subj, buf, (int) size, NULL, NULL) != NATS_OK)
            fail("raw publish");
        natsMsgList list = {0};
        if (natsSubscription_Fetch(&list, r.sub, 1, 5000, NULL) != NATS_OK || list.Count != 1)
            fail("raw fetch");
        natsMsg_AckSync(list.Msgs[0], NULL, NULL);
        natsMsgList_Destroy(&list);
        samples[i] = (now_s() - t) * 1e6;
    }
    free(buf);
    natsSubscription_Destroy(r.sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    (void) p50;
    (void) p99;
}

/* ---- the relay -------------------------------------------------------------------------- */

static pid_t start_relay(const char *host, const char *node, const char *a1, const char *a2)
{
    char dir[300], state[300];
    snprintf(dir, sizeof dir, "%s/%s", base, host);
    snprintf(state, sizeof state, "%s/%s/relay", base, host);
    mkdir(dir, 0700);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("POSTBOX_DIR", dir, 1);
        /* The relays' messages are thrown away unless PBX_RELAY_BENCH_LOG names a file. */
        const char *log = getenv("PBX_RELAY_BENCH_LOG");
        int fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0600) : open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        if (relay_window && !strcmp(a1, "--out"))
            execl(relay_bin, "postbox-relay", "--nats", url, "--node", node, "--state", state, a1,
                  a2, "--window", relay_window, (char *) NULL);
        execl(relay_bin, "postbox-relay", "--nats", url, "--node", node, "--state", state, a1, a2,
              (char *) NULL);
        _exit(127);
    }
    return pid;
}

static pbx_t *open_on(const char *host, const char *name)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/%s", base, host);
    mkdir(dir, 0700);
    setenv("POSTBOX_DIR", dir, 1);
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = 8192;
    o.max_bytes = 64u << 20;
    o.max_msg_size = 65536;
    pbx_t *q = NULL;
    if (pbx_open(name, PBX_CREATE, &o, &q) < 0)
        fail("open mailbox");
    return q;
}

struct relay_consumer {
    pbx_t *q;
    long n;
    double t_end;
};

static void *relay_consume(void *arg)
{
    struct relay_consumer *c = arg;
    static char buf[65536];
    for (long i = 1; i <= c->n; i++) {
        long type;
        struct timespec to = {60, 0};
        if (pbx_timedrecv(c->q, 0, buf, sizeof buf, 0, &type, &to) < 0)
            fail("relay: receive timed out");
        uint64_t seq;
        memcpy(&seq, buf, 8);
        if (seq != (uint64_t) i)
            fail("relay: out of order");
    }
    c->t_end = now_s();
    return NULL;
}

static void relay_run(int spool, size_t size, long n, int lat, double *rate, double *samples)
{
    static int round;
    char outbox[400], spec[500], mbox[32];
    round++;
    snprintf(mbox, sizeof mbox, "bench%d", round);
    if (spool)
        snprintf(outbox, sizeof outbox, "spool:%s/outbox%d", base, round);
    else
        snprintf(outbox, sizeof outbox, "out%d", round);
    snprintf(spec, sizeof spec, "%s=%s@b", outbox, mbox);
    pbx_t *out = open_on("a", outbox);
    pbx_t *in = open_on("b", mbox);
    relay_b = start_relay("b", "b", "--in", mbox);
    relay_a = start_relay("a", "a", "--out", spec);
    char *buf = calloc(1, size);
    /* Warm up: one message through, so both relays are connected and declared. */
    uint64_t zero = 0;
    memcpy(buf, &zero, 8);
    pbx_send(out, 1, buf, size, 0);
    long type;
    static char rbuf[65536];
    struct timespec to = {60, 0};
    if (pbx_timedrecv(in, 0, rbuf, sizeof rbuf, 0, &type, &to) < 0)
        fail("relay: the first message did not arrive");
    struct relay_consumer c = {in, n, 0};
    pthread_t th;
    pthread_create(&th, NULL, relay_consume, &c);
    double s0 = proc_cpu_us(server_pid), r0 = proc_cpu_us(relay_a) + proc_cpu_us(relay_b);
    double t0 = now_s();
    for (long i = 1; i <= n; i++) {
        uint64_t seq = (uint64_t) i;
        memcpy(buf, &seq, 8);
        if (pbx_send(out, 1, buf, size, 0) < 0)
            fail("relay: send");
    }
    pthread_join(th, NULL);
    *rate = (double) n / (c.t_end - t0);
    cpu_server = (proc_cpu_us(server_pid) - s0) / (double) n;
    cpu_relays = (proc_cpu_us(relay_a) + proc_cpu_us(relay_b) - r0) / (double) n;
    for (int i = 0; i < lat; i++) {
        double t = now_s();
        pbx_send(out, 1, buf, size, 0);
        if (pbx_timedrecv(in, 0, rbuf, sizeof rbuf, 0, &type, &to) < 0)
            fail("relay: latency message lost");
        samples[i] = (now_s() - t) * 1e6;
    }
    free(buf);
    kill(relay_a, SIGTERM);
    kill(relay_b, SIGTERM);
    waitpid(relay_a, NULL, 0);
    waitpid(relay_b, NULL, 0);
    relay_a = relay_b = 0;
    pbx_close(out);
    pbx_close(in);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_SCEN 8
#define MAX_REP  15

int main(int argc, char **argv)
{
    long n = 50000;
    int lat = 300, only_shm = 0, repeat = 1;
    const char *compare[MAX_SCEN], *window = NULL;
    int ncompare = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--msgs") && i + 1 < argc)
            n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--lat") && i + 1 < argc)
            lat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--compare") && i + 1 < argc && ncompare < MAX_SCEN - 3)
            compare[ncompare++] = argv[++i];
        else if (!strcmp(argv[i], "--window") && i + 1 < argc)
            window = argv[++i];
        else if (!strcmp(argv[i], "--only-shm"))
            only_shm = 1;
        else if (!strcmp(argv[i], "--quick")) {
            n = 5000;
            lat = 50;
        } else {
            fprintf(stderr, "usage: pbx_bench_relay [--msgs N] [--lat N] [--repeat N] [--quick] "
                            "[--window N] [--compare PATH]... [--only-shm]\n");
            return 2;
        }
    }
    if (lat < 1)
        lat = 1;
    if (repeat < 1 || repeat > MAX_REP)
        repeat = repeat < 1 ? 1 : MAX_REP;
    snprintf(base, sizeof base, "/tmp/pbx-relay-bench.XXXXXX");
    if (!mkdtemp(base))
        fail("mkdtemp");
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    atexit(cleanup);
    start_server();

    /* The scenarios: raw nats.c, this relay (shm, then spool outbox), then each --compare
     * binary with a shm outbox. Repetitions take turns (raw, relay, ..., raw, relay, ...) so
     * that a change in the machine's load falls on all of them alike; the figures are medians
     * and each ratio is of two medians of the same run. */
    struct scen {
        char name[64];
        const char *bin;
        int spool;
        const char *window;
    } sc[MAX_SCEN];
    memset(sc, 0, sizeof sc);
    int ns = 0;
    snprintf(sc[ns].name, sizeof sc[ns].name, "raw nats.c");
    sc[ns++].bin = NULL;
    snprintf(sc[ns].name, sizeof sc[ns].name, "relay, shm outbox");
    sc[ns].bin = PBX_RELAY_BIN;
    sc[ns++].spool = 0;
    if (!only_shm) {
        snprintf(sc[ns].name, sizeof sc[ns].name, "relay, spool outbox");
        sc[ns].bin = PBX_RELAY_BIN;
        sc[ns++].spool = 1;
    }
    if (window) {
        snprintf(sc[ns].name, sizeof sc[ns].name, "relay, shm, window %.8s", window);
        sc[ns].bin = PBX_RELAY_BIN;
        sc[ns++].window = window;
    }
    for (int c = 0; c < ncompare; c++) {
        snprintf(sc[ns].name, sizeof sc[ns].name, "compared #%d, shm", c + 1);
        sc[ns].bin = compare[c];
        sc[ns++].spool = 0;
    }
    static const size_t sizes[] = {16, 4096};
    static double rate[MAX_SCEN][2][MAX_REP], p50[MAX_SCEN][2][MAX_REP], p99[MAX_SCEN][2][MAX_REP];
    double *samples = calloc((size_t) lat + 1, sizeof *samples);
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < repeat; r++)
            for (int s = 0; s < ns; s++) {
                long count = sc[s].spool ? (n + 9) / 10 : n;
                double *rt = &rate[s][k][r];
                if (!sc[s].bin) {
                    raw_run(sizes[k], count, lat, rt, NULL, NULL, samples);
                } else {
                    relay_bin = sc[s].bin;
                    relay_window = sc[s].window;
                    relay_run(sc[s].spool, sizes[k], count, lat, rt, samples);
                }
                qsort(samples, (size_t) lat, sizeof *samples, cmp_double);
                p50[s][k][r] = samples[lat / 2];
                p99[s][k][r] = samples[(lat * 99) / 100 < lat ? (lat * 99) / 100 : lat - 1];
                printf("relay-bench scenario=\"%s\" size=%zu msgs=%ld round=%d msgs_per_s=%.0f "
                       "p50_us=%.0f p99_us=%.0f server_cpu_us_per_msg=%.1f "
                       "relays_cpu_us_per_msg=%.1f\n",
                       sc[s].name, sizes[k], count, r + 1, *rt, p50[s][k][r], p99[s][k][r],
                       cpu_server, cpu_relays);
                fflush(stdout);
            }
    for (int c = 0; c < ncompare; c++)
        printf("compared #%d: %s\n", c + 1, compare[c]);
    printf("\nmedians of %d round(s)\n%-22s %6s %12s %10s %10s %14s\n", repeat, "scenario", "size",
           "msgs/s", "p50 us", "p99 us", "vs raw nats.c");
    for (int k = 0; k < 2; k++) {
        double raw = median(rate[0][k], repeat);
        for (int s = 0; s < ns; s++) {
            double m = median(rate[s][k], repeat);
            printf("%-22s %6zu %12.0f %10.0f %10.0f %13.2fx\n", sc[s].name, sizes[k], m,
                   median(p50[s][k], repeat), median(p99[s][k], repeat), m / raw);
        }
    }
    /* The ratio of each round (relay and raw measured one after the other), as a spread. */
    printf("\nper-round ratios to raw nats.c:\n");
    for (int k = 0; k < 2; k++)
        for (int s = 1; s < ns; s++) {
            printf("%-22s %6zu ", sc[s].name, sizes[k]);
            for (int r = 0; r < repeat; r++)
                printf(" %.2f", rate[s][k][r] / rate[0][k][r]);
            printf("\n");
        }
    free(samples);
    return 0;
}
