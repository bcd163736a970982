/*
 * status.c — `postbox relay status [--json] --state DIR`: what a running (or stopped) relay
 * reports about its routes.
 *
 * The daemon rewrites STATE/status.json (temporary name, rename) four times a second, so this
 * command needs no connection to the daemon or to NATS and works while the link is down. It
 * adds whether the daemon is alive (the pid in STATE/lock holds its lock) and prints either that
 * JSON or a table, one route per line.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay.h"

int relay_status_main(int argc, char **argv);

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

/* Is the relay that owns DIR running? (It holds a lock on DIR/lock.) */
static int relay_running(const char *dir, long *pid)
{
    char path[RELAY_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    *pid = 0;
    if (fd < 0)
        return 0;
    char txt[32] = {0};
    if (pread(fd, txt, sizeof txt - 1, 0) > 0)
        *pid = strtol(txt, NULL, 10);
    int running = lockf(fd, F_TEST, 0) < 0 && (errno == EACCES || errno == EAGAIN);
    close(fd);
    return running;
}

/* The text after "KEY": in obj (up to the object's end), or NULL. */
static const char *field(const char *obj, const char *end, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(obj, pat);
    return p && p < end ? p + strlen(pat) : NULL;
}

static uint64_t num(const char *obj, const char *end, const char *key)
{
    const char *p = field(obj, end, key);
    return p ? strtoull(p, NULL, 10) : 0;
}

static void str(char *out, size_t cap, const char *obj, const char *end, const char *key)
{
    const char *p = field(obj, end, key);
    out[0] = 0;
    if (!p || *p != '"')
        return;
    const char *q = strchr(p + 1, '"');
    if (q)
        snprintf(out, cap, "%.*s", (int) (q - p - 1), p + 1);
}

int relay_status_main(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--state") && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: postbox relay status --state DIR [--json]\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: postbox relay status --state DIR [--json]\n");
        return 2;
    }
    char path[RELAY_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/status.json", dir);
    char *txt = slurp(path);
    if (!txt) {
        fprintf(stderr, "postbox relay status: %s: %s (has a relay run with --state %s?)\n", path,
                strerror(errno), dir);
        return 1;
    }
    long pid;
    int running = relay_running(dir, &pid);
    if (json) {
        /* The daemon's object, with "running" added in front. */
        const char *brace = strchr(txt, '{');
        printf("{\"running\": %s, %s", running ? "true" : "false", brace ? brace + 1 : "}\n");
        free(txt);
        return 0;
    }
    const char *end = txt + strlen(txt);
    char node[256];
    str(node, sizeof node, txt, end, "node");
    const char *conn = field(txt, end, "connected");
    printf("relay node %s: %s (pid %ld), NATS %s\n", node, running ? "running" : "not running", pid,
           conn && !strncmp(conn, "true", 4) ? "connected" : "disconnected");
    printf("%-4s %-28s %10s %9s %8s %8s %8s %6s %8s %6s\n", "dir", "route", "moved", "in-flight",
           "lag", "redeliv", "dups", "gaps", "dropped", "dead");
    for (const char *o = strstr(txt, "\n  {"); o; o = strstr(o + 1, "\n  {")) {
        const char *oe = strchr(o, '}');
        if (!oe)
            break;
        char dirn[8], a[256], b[256], c[256], route[800];
        str(dirn, sizeof dirn, o, oe, "direction");
        if (!strcmp(dirn, "out")) {
            str(a, sizeof a, o, oe, "outbox");
            str(b, sizeof b, o, oe, "mailbox");
            str(c, sizeof c, o, oe, "node");
            snprintf(route, sizeof route, "%s -> %s@%s", a, b, c);
        } else {
            str(a, sizeof a, o, oe, "mailbox");
            snprintf(route, sizeof route, "-> %s", a);
        }
        int out = !strcmp(dirn, "out");
        printf("%-4s %-28s %10" PRIu64 " %9" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64
               " %6" PRIu64 " %8" PRIu64 " %6" PRIu64 "\n",
               dirn, route, out ? num(o, oe, "published") : num(o, oe, "delivered"),
               num(o, oe, "in_flight"), out ? num(o, oe, "outbox_depth") : num(o, oe, "lag"),
               out ? num(o, oe, "republished") : num(o, oe, "redeliveries"),
               num(o, oe, "duplicates"), num(o, oe, "gaps"), num(o, oe, "dropped"),
               num(o, oe, "dead_letters"));
    }
    free(txt);
    return 0;
}
