/*
 * hogs.c — CPU hogs: processes that only burn CPU time, one pinned to each CPU of the run,
 * to measure a case on a busy machine (the "loaded" layout of the mpmc case). They run at the
 * same priority as the measured processes, are started before the run and killed after it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

int bench_hogs_start(const struct bench_ctx *ctx, pid_t pids[BENCH_HOGS])
{
    for (int i = 0; i < BENCH_HOGS; i++) {
        pid_t p = fork();
        if (p < 0) {
            int err = errno;
            bench_hogs_stop(pids, i);
            return -err;
        }
        if (p == 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(ctx->cpu[i % 2], &set);
            (void) sched_setaffinity(0, sizeof(set), &set);
            volatile unsigned long spin = 0;
            for (;;)
                spin++;
        }
        pids[i] = p;
    }
    return 0;
}

void bench_hogs_stop(const pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        kill(pids[i], SIGKILL);
        while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    }
}
