/*
 * crash.c — the test build's crash points (see crash.h).
 */
#include "crash.h"

#ifdef PBX_CRASH_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The N of a setting ("NAME" or "NAME:N", N = 1 by default) that names this point, else 0. */
static long nth_of(const char *want, const char *name)
{
    if (!want)
        return 0;
    size_t n = strlen(name);
    if (strncmp(want, name, n) != 0 || (want[n] != '\0' && want[n] != ':'))
        return 0;
    return want[n] == ':' ? strtol(want + n + 1, NULL, 10) : 1;
}

void pbx__crash_point(const char *name)
{
    static long hits, stops, naps;
    long nth = nth_of(getenv("PBX_CRASH_AT"), name);
    if (nth && ++hits >= nth)
        kill(getpid(), SIGKILL);
    /* PBX_STOP_AT: the process stops itself there (SIGSTOP), the N-th time only, and goes on
     * when continued: a participant frozen at the worst instruction. The setting is used up
     * then, so that a test can arm it again (not thread-safe: tests only). */
    nth = nth_of(getenv("PBX_STOP_AT"), name);
    if (nth && ++stops == nth) {
        stops = 0;
        unsetenv("PBX_STOP_AT");
        raise(SIGSTOP);
    }
    /* PBX_NAP_AT: the process sleeps there for PBX_NAP_MS milliseconds (default 1000), alive
     * and not stopped: a participant that is only slow (frozen by a cgroup, swapped out). */
    nth = nth_of(getenv("PBX_NAP_AT"), name);
    if (nth && ++naps == nth) {
        const char *ms = getenv("PBX_NAP_MS");
        long n = ms ? strtol(ms, NULL, 10) : 1000;
        struct timespec t = {n / 1000, (n % 1000) * 1000000};
        while (nanosleep(&t, &t) != 0)
            ;
    }
}
#else
/* Keeps the translation unit non-empty in builds without crash points. */
typedef int pbx_crash_points_disabled;
#endif
