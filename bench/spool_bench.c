/*
 * spool_bench.c — pbx_bench_spool: what the durable spool transport ("spool:PATH") costs.
 *
 * A separate program from pbx_bench because its figures depend on the file system and disk
 * rather than on CPUs and caches, and because a durable send is three orders of magnitude
 * slower than a shared-memory one; it would only stretch that suite's tables. It measures:
 *
 *   send    messages/s of 64-byte sends for each durability mode (always, batch, none),
 *           with 1 and with 4 producer processes sending for a fixed time; group commit shows
 *           as 4 producers beating one under "always";
 *   open    the time to open a spool holding DEPTH messages (one scan builds the index);
 *   recv    the cost of one receive at depth DEPTH and at depth 1000, by arrival (type 0) and
 *           by type (type > 0, 100 types interleaved), to show it does not grow with depth.
 *
 * fsync on tmpfs does nothing, so the default directory is on a disk (/var/tmp); the program
 * prints which file system it measured. Output: one machine-readable line per figure
 * ("spool,CASE,PARAM,VALUE,UNIT") and a human table at the end. Speed never fails a run; an
 * error (a failed call, a lost or reordered message) does.
 *
 * usage: pbx_bench_spool [--dir DIR] [--seconds S] [--reps N] [--depth N] [--no-send] [--quick]
 * (defaults: /var/tmp, 2 s, 3 repetitions with the median reported, depth 100000)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"

static const char *base_dir = "/var/tmp";
static double seconds = 2.0;
static uint32_t depth = 100000;

struct row {
    char text[160];
};
static struct row rows[64];
static int nrows;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "pbx_bench_spool: %s: %s\n", what, pbx_strerror(err));
    exit(1);
}

static void figure(const char *c, const char *param, double value, const char *unit)
{
    printf("spool,%s,%s,%.3f,%s\n", c, param, value, unit);
    fflush(stdout);
    snprintf(rows[nrows++].text, sizeof(rows[0].text), "| %-6s | %-44s | %14.1f %-6s |", c, param,
             value, unit);
}

static const char *fs_name(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) != 0)
        return "unknown";
    switch ((unsigned long) sf.f_type) {
    case 0xEF53:
        return "ext4";
    case 0x01021994:
        return "tmpfs";
    case 0x58465342:
        return "xfs";
    case 0x9123683E:
        return "btrfs";
    case 0x794c7630:
        return "overlayfs";
    default:
        return "other";
    }
}

static char spool[4096];

static pbx_t *create(uint32_t durability)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = 1u << 24;
    o.max_bytes = 1ull << 36;
    o.max_msg_size = 4096;
    o.durability = durability;
    pbx_unlink(spool);
    pbx_t *q;
    int r = pbx_open(spool, PBX_CREATE | PBX_EXCL, &o, &q);
    if (r)
        die("create", r);
    return q;
}

static int reps = 3;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/* Each producer sends for `seconds` and stores its count in counts[i]. Returns messages/s. */
static double send_once(uint32_t durability, int producers)
{
    sync(); /* start each run without the previous one's writeback */
    pbx_t *q = create(durability);
    uint64_t *counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counts == MAP_FAILED)
        die("mmap", -errno);
    double start = now_s() + 0.05;
    for (int i = 0; i < producers; i++) {
        if (fork() == 0) {
            pbx_t *h;
            int r = pbx_open(spool, 0, NULL, &h);
            if (r)
                die("open", r);
            char msg[64];
            memset(msg, 'm', sizeof(msg));
            while (now_s() < start)
                ;
            uint64_t n = 0;
            while (now_s() - start < seconds) {
                if ((r = pbx_send(h, 1 + (long) (n % 4), msg, sizeof(msg), 0)) != 0)
                    die("send", r);
                n++;
            }
            counts[i] = n;
            pbx_close(h);
            _exit(0);
        }
    }
    for (int i = 0; i < producers; i++) {
        int st;
        wait(&st);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("producer", -EIO);
    }
    uint64_t total = 0;
    for (int i = 0; i < producers; i++)
        total += counts[i];
    struct pbx_stat s;
    pbx_stat(q, &s);
    if (s.msgs != total)
        die("count of queued messages", -EBADMSG);
    munmap(counts, 4096);
    pbx_remove(q);
    pbx_close(q);
    return (double) total / seconds;
}

/* The median of reps runs. */
static void send_case(uint32_t durability, const char *mode, int producers)
{
    double v[16];
    for (int i = 0; i < reps; i++)
        v[i] = send_once(durability, producers);
    qsort(v, (size_t) reps, sizeof(v[0]), cmp_double);
    char param[64];
    snprintf(param, sizeof(param), "send %s, %d producer%s (median of %d)", mode, producers,
             producers > 1 ? "s" : "", reps);
    figure("send", param, v[reps / 2], "msg/s");
}

/* Fill a spool with n messages of 100 interleaved types (without flushes: it is only setup). */
static void fill(uint32_t n)
{
    pbx_t *q = create(PBX_DURABLE_NONE);
    char msg[64] = {0};
    for (uint32_t i = 0; i < n; i++) {
        memcpy(msg, &i, sizeof(i));
        int r = pbx_send(q, 1 + (long) (i % 100), msg, sizeof(msg), 0);
        if (r)
            die("fill", r);
    }
    pbx_close(q);
}

static void recv_case(uint32_t n)
{
    fill(n);
    sync();
    double t0 = now_s();
    pbx_t *q;
    int r = pbx_open(spool, 0, NULL, &q);
    if (r)
        die("open", r);
    double open_s = now_s() - t0;
    char param[64];
    snprintf(param, sizeof(param), "open, depth %" PRIu32, n);
    figure("open", param, open_s * 1e3, "ms");

    uint32_t k = n / 10 < 5000 ? n / 10 : 5000;
    char buf[64];
    long type;
    uint32_t last = 0;
    t0 = now_s();
    for (uint32_t i = 0; i < k; i++) {
        if ((r = (int) pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type)) != 64)
            die("recv", r < 0 ? r : -EBADMSG);
        uint32_t id;
        memcpy(&id, buf, sizeof(id));
        if (i && id <= last)
            die("arrival order", -EBADMSG);
        last = id;
    }
    snprintf(param, sizeof(param), "recv type 0, depth %" PRIu32, n);
    figure("recv", param, (now_s() - t0) / k * 1e6, "us");

    t0 = now_s();
    for (uint32_t i = 0; i < k; i++) {
        long want = 1 + (long) ((i * 37) % 100);
        if ((r = (int) pbx_recv(q, want, buf, sizeof(buf), PBX_NOWAIT, &type)) != 64 ||
            type != want)
            die("typed recv", r < 0 ? r : -EBADMSG);
    }
    snprintf(param, sizeof(param), "recv type > 0, depth %" PRIu32, n);
    figure("recv", param, (now_s() - t0) / k * 1e6, "us");
    pbx_remove(q);
    pbx_close(q);
}

int main(int argc, char **argv)
{
    int quick = 0, no_send = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base_dir = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--depth") && i + 1 < argc)
            depth = (uint32_t) strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]) < 1 ? 1 : atoi(argv[i]) > 15 ? 15 : atoi(argv[i]);
        else if (!strcmp(argv[i], "--no-send"))
            no_send = 1;
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr,
                    "usage: %s [--dir DIR] [--seconds S] [--reps N] [--depth N] [--no-send] "
                    "[--quick]\n",
                    argv[0]);
            return 2;
        }
    }
    if (quick) {
        seconds = 0.2;
        depth = 5000;
        reps = 1;
    }
    snprintf(spool, sizeof(spool), "spool:%s/pbx-bench-spool.%d", base_dir, (int) getpid());
    printf("# spool benchmark in %s (%s), %.1f s per send figure, depth %" PRIu32 "\n", base_dir,
           fs_name(base_dir), seconds, depth);
    static const struct {
        uint32_t mode;
        const char *name;
    } modes[] = {
        {PBX_DURABLE_ALWAYS, "always"}, {PBX_DURABLE_BATCH, "batch"}, {PBX_DURABLE_NONE, "none"}};
    for (size_t m = 0; m < 3 && !no_send; m++) {
        send_case(modes[m].mode, modes[m].name, 1);
        send_case(modes[m].mode, modes[m].name, 4);
    }
    recv_case(1000);
    recv_case(depth);

    printf("\nSpool on %s (%s):\n\n| case   | %-44s | %21s |\n|--------|%s|%s|\n", base_dir,
           fs_name(base_dir), "figure", "value", "----------------------------------------------",
           "-----------------------");
    for (int i = 0; i < nrows; i++)
        printf("%s\n", rows[i].text);
    return 0;
}
