/*
 * spool_util.h — helpers the spool tests share: spool names under the test's private
 * directory, and a way to list what a spool directory holds.
 */
#ifndef PBX_TEST_SPOOL_UTIL_H
#define PBX_TEST_SPOOL_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

/* "spool:$POSTBOX_DIR/name" (a static buffer per call site is enough for the tests). */
static inline const char *spool_name(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "spool:%s/%s", getenv("POSTBOX_DIR"), name);
    return buf;
}

/* The directory of spool name. */
static inline const char *spool_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", getenv("POSTBOX_DIR"), name);
    return buf;
}

/* Entries (other than . and ..) in directory path; -1 if it cannot be opened. */
static inline int count_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += !(e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])));
    closedir(d);
    return n;
}

/* Messages queued in spool directory dir: files in every bucket of dir/q. */
static inline int count_queued_files(const char *dir)
{
    char q[4096];
    snprintf(q, sizeof(q), "%s/q", dir);
    DIR *d = opendir(q);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char b[4352];
        snprintf(b, sizeof(b), "%s/%s", q, e->d_name);
        n += count_entries(b);
    }
    closedir(d);
    return n;
}

#endif
