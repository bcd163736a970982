/*
 * pbx_pingpong.c — the ping-pong of sv_pingpong.c written with postbox's own calls, the figure
 * the drop-in is judged against (run.sh): "native" on two mailboxes, one per direction, as a
 * postbox program would be written; "onebox" on one mailbox with a type per direction, the
 * System V shape, without the drop-in's layer. Usage: pbx_pingpong native|onebox ROUNDS SIZE.
 *
 * The parent sends type 1, the child answers with type 2, ROUNDS times; each process pinned
 * to its own CPU when there are two, as sv_pingpong.c does. Prints one line:
 * "pbx_pingpong mode=MODE size=SIZE rounds=N us_per_round_trip=X".
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
        sched_setaffinity(0, sizeof(set), &set); /* best effort */
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int onebox = argc > 1 && strcmp(argv[1], "onebox") == 0;
    long rounds = argc > 2 ? atol(argv[2]) : 10000;
    size_t size = argc > 3 ? (size_t) atol(argv[3]) : 16;
    static char buf[8192];
    if (argc < 2 || (!onebox && strcmp(argv[1], "native") != 0) || rounds < 1 ||
        size > sizeof(buf)) {
        fprintf(stderr, "usage: pbx_pingpong native|onebox ROUNDS SIZE(<=8192)\n");
        return 2;
    }
    pbx_t *ping, *pong;
    int err = pbx_open_private(NULL, &ping);
    if (!err)
        err = onebox ? (pong = ping, 0) : pbx_open_private(NULL, &pong);
    if (err) {
        fprintf(stderr, "pbx_open_private: %s\n", pbx_strerror(err));
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        for (long i = 0; i < rounds; i++)
            if (pbx_recv(ping, 1, buf, size, 0, NULL) != (ssize_t) size ||
                pbx_send(pong, 2, buf, size, 0) != 0)
                _exit(1);
        _exit(0);
    }
    pin(0);
    memset(buf, 'p', size);
    double t0 = now();
    for (long i = 0; i < rounds; i++)
        if (pbx_send(ping, 1, buf, size, 0) != 0 ||
            pbx_recv(pong, 2, buf, size, 0, NULL) != (ssize_t) size) {
            fprintf(stderr, "ping failed\n");
            return 1;
        }
    double t1 = now();
    int st = 1;
    waitpid(child, &st, 0);
    if (st != 0) {
        fprintf(stderr, "pong failed\n");
        return 1;
    }
    printf("pbx_pingpong mode=%s size=%zu rounds=%ld us_per_round_trip=%.3f\n",
           onebox ? "onebox" : "native", size, rounds, (t1 - t0) * 1e6 / (double) rounds);
    return 0;
}
