/*
 * test_spool_select.c — every selection test of test_select.c (the msgrcv rules, PBX_PEEK,
 * PBX_NOERROR, -E2BIG, all payload sizes and the random runs against a reference model), run
 * again on spool mailboxes: the spool must select exactly as shared memory does.
 *
 * The file compiles test_select.c with pbx_open and pbx_unlink redirected to a spool under the
 * test's private directory. CMakeLists.txt registers its tests as spool_select.NAME from the TEST
 * lines of test_select.c.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

static int open_as_spool(const char *name, int flags, const struct pbx_options *opts, pbx_t **q)
{
    char path[4096];
    snprintf(path, sizeof(path), "spool:%s/%s", getenv("POSTBOX_DIR"), name);
    struct pbx_options o;
    if (opts)
        o = *opts;
    else
        pbx_options_init(&o);
    o.durability = PBX_DURABLE_NONE; /* tmpfs: nothing to flush; keeps the runs short */
    return pbx_open(path, flags, &o, q);
}

static int unlink_as_spool(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "spool:%s/%s", getenv("POSTBOX_DIR"), name);
    return pbx_unlink(path);
}

#define pbx_open   open_as_spool
#define pbx_unlink unlink_as_spool
#include "test_select.c"
