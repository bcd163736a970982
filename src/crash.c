/*
 * crash.c — the test build's crash points (see crash.h).
 */
#include "crash.h"

#ifdef PBX_CRASH_POINTS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void pbx__crash_point(const char *name)
{
    static long hits;
    const char *want = getenv("PBX_CRASH_AT");
    if (!want)
        return;
    size_t n = strlen(name);
    if (strncmp(want, name, n) != 0 || (want[n] != '\0' && want[n] != ':'))
        return;
    long nth = want[n] == ':' ? strtol(want + n + 1, NULL, 10) : 1;
    if (++hits >= nth)
        kill(getpid(), SIGKILL);
}
#else
/* Keeps the translation unit non-empty in builds without crash points. */
typedef int pbx_crash_points_disabled;
#endif
