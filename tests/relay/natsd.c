/*
 * natsd.c — starts and stops the relay tests' NATS servers and relays (see natsd.h).
 */
#include "natsd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int stop_pid(pid_t pid, const char *what);

static const char *find_server(void)
{
    static char path[512];
    const char *env = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s:/usr/sbin:/usr/bin:/usr/local/bin", env ? env : "");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof path, "%s/nats-server", d);
        if (access(path, X_OK) == 0)
            return path;
    }
    return NULL;
}

void natsd_require(void)
{
    if (!PBX_RELAY_BIN[0])
        SKIP("postbox-relay was not built: libnats-dev is missing (apt-get install libnats-dev)");
    if (access(PBX_RELAY_BIN, X_OK) != 0)
        SKIP("%s is missing: build it (libnats-dev installed?)", PBX_RELAY_BIN);
    if (!find_server())
        SKIP("nats-server is missing (apt-get install nats-server)");
}

static int can_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void spawn(struct natsd *d)
{
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", d->port ? d->port : -1);
    char log[600];
    snprintf(log, sizeof log, "%s/server.log", d->dir);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[32];
        int n = 0;
        argv[n++] = "nats-server";
        char conf[600], cl[64];
        if (d->max_payload) {
            snprintf(conf, sizeof conf, "%s/server.conf", d->dir);
            FILE *f = fopen(conf, "w");
            if (f) {
                fprintf(f, "max_payload: %ld\n", d->max_payload);
                fclose(f);
            }
            argv[n++] = "-c";
            argv[n++] = conf;
        }
        argv[n++] = "-a";
        argv[n++] = "127.0.0.1";
        argv[n++] = "-p";
        argv[n++] = portarg;
        argv[n++] = "-js";
        argv[n++] = "-sd";
        argv[n++] = d->store;
        argv[n++] = "--ports_file_dir";
        argv[n++] = d->dir;
        if (d->server_name[0]) {
            snprintf(cl, sizeof cl, "nats://127.0.0.1:%d", d->cluster_port ? d->cluster_port : -1);
            argv[n++] = "--server_name";
            argv[n++] = d->server_name;
            argv[n++] = "--cluster_name";
            argv[n++] = "pbx";
            argv[n++] = "--cluster";
            argv[n++] = cl;
            argv[n++] = "--routes";
            argv[n++] = d->routes;
        }
        argv[n] = NULL;
        execv(find_server(), (char **) argv);
        _exit(127);
    }
    d->pid = pid;
    char ports[600];
    snprintf(ports, sizeof ports, "%s/nats-server_%d.ports", d->dir, (int) pid);
    /* The ports file appears once the server listens; a restart on a known port is ready when
     * a connection succeeds. */
    for (int i = 0; i < 3000; i++) {
        int st;
        ASSERT_EQ(waitpid(pid, &st, WNOHANG), 0); /* the server must not have died */
        FILE *f = fopen(ports, "r");
        if (f) {
            char buf[512] = {0};
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            char *p = n ? strstr(buf, "nats://127.0.0.1:") : NULL;
            char *c =
                n && d->server_name[0] ? strstr(buf, "\"cluster\":[\"nats://127.0.0.1:") : NULL;
            if (c)
                d->cluster_port = atoi(c + strlen("\"cluster\":[\"nats://127.0.0.1:"));
            if (p && (!d->server_name[0] || c)) {
                d->port = atoi(p + strlen("nats://127.0.0.1:"));
                if (can_connect(d->port))
                    break;
            }
        }
        pbx_test_sleep_ms(10);
    }
    ASSERT_GT(d->port, 0);
    ASSERT_TRUE(can_connect(d->port));
    snprintf(d->url, sizeof d->url, "nats://127.0.0.1:%d", d->port);
}

void natsd_start(struct natsd *d, const char *base, const char *name, int port)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s/%s", base, name);
    snprintf(d->store, sizeof d->store, "%s/%s/store", base, name);
    ASSERT_TRUE(mkdir(d->dir, 0700) == 0 || errno == EEXIST);
    d->port = port;
    spawn(d);
}

void natsd_start_limited(struct natsd *d, const char *base, const char *name, long max_payload)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "%s/%s", base, name);
    snprintf(d->store, sizeof d->store, "%s/%s/store", base, name);
    ASSERT_TRUE(mkdir(d->dir, 0700) == 0 || errno == EEXIST);
    d->max_payload = max_payload;
    spawn(d);
}

void natsd_start_cluster(struct natsd d[3], const char *base)
{
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i + 1);
        memset(&d[i], 0, sizeof d[i]);
        snprintf(d[i].dir, sizeof d[i].dir, "%s/%s", base, name);
        snprintf(d[i].store, sizeof d[i].store, "%s/%s/store", base, name);
        ASSERT_TRUE(mkdir(d[i].dir, 0700) == 0 || errno == EEXIST);
        snprintf(d[i].server_name, sizeof d[i].server_name, "%s", name);
        if (i == 0) /* port 1: nothing listens there; the others connect to us */
            snprintf(d[i].routes, sizeof d[i].routes, "nats://127.0.0.1:1");
        else
            snprintf(d[i].routes, sizeof d[i].routes, "nats://127.0.0.1:%d", d[0].cluster_port);
        spawn(&d[i]);
        ASSERT_GT(d[i].cluster_port, 0);
    }
}

void natsd_restart_member(struct natsd d[3], int i)
{
    int a = (i + 1) % 3, b = (i + 2) % 3;
    snprintf(d[i].routes, sizeof d[i].routes, "nats://127.0.0.1:%d,nats://127.0.0.1:%d",
             d[a].cluster_port, d[b].cluster_port);
    spawn(&d[i]);
}

void natsd_restart(struct natsd *d)
{
    spawn(d);
}

void natsd_kill(struct natsd *d, int sig)
{
    if (d->pid <= 0)
        return;
    if (sig == SIGTERM) {
        stop_pid(d->pid, "nats-server");
        d->pid = 0;
        return;
    }
    kill(d->pid, sig);
    if (sig == SIGKILL) {
        int st;
        waitpid(d->pid, &st, 0);
        d->pid = 0;
    }
}

void host_init(struct host *h, const char *base, const char *name)
{
    memset(h, 0, sizeof *h);
    snprintf(h->name, sizeof h->name, "%s", name);
    snprintf(h->shm, sizeof h->shm, "%s/host-%s", base, name);
    snprintf(h->state, sizeof h->state, "%s/host-%s/relay-state", base, name);
    ASSERT_TRUE(mkdir(h->shm, 0700) == 0 || errno == EEXIST);
}

void host_enter(const struct host *h)
{
    setenv("POSTBOX_DIR", h->shm, 1);
}

void host_relay_start(struct host *h, const char *url, const char *crash, ...)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = "postbox-relay";
    argv[n++] = "--nats";
    argv[n++] = url;
    argv[n++] = "--node";
    argv[n++] = h->name;
    argv[n++] = "--state";
    argv[n++] = h->state;
    va_list ap;
    va_start(ap, crash);
    for (const char *a; n < 62 && (a = va_arg(ap, const char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char log[600];
    snprintf(log, sizeof log, "%s/relay.log", h->shm);
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        setenv("POSTBOX_DIR", h->shm, 1);
        if (crash)
            setenv("PBX_RELAY_CRASH", crash, 1);
        else
            unsetenv("PBX_RELAY_CRASH");
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        execv(PBX_RELAY_BIN, (char **) argv);
        _exit(127);
    }
    h->relay = pid;
}

int host_relay_wait(struct host *h)
{
    int st = pbx_test_wait(h->relay);
    h->relay = 0;
    return st;
}

/* SIGTERM, and SIGKILL if pid has not ended after a generous while; reaps it. Returns 1 if it
 * ended on SIGTERM. */
static int stop_pid(pid_t pid, const char *what)
{
    int st;
    kill(pid, SIGTERM);
    for (int i = 0; i < 2000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return 1;
        pbx_test_sleep_ms(10);
    }
    fprintf(stderr, "natsd: %s %d did not end on SIGTERM; killing it\n", what, (int) pid);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return 0;
}

void host_relay_stop(struct host *h)
{
    if (h->relay > 0) {
        ASSERT_TRUE(stop_pid(h->relay, "relay"));
        h->relay = 0;
    }
}

long long host_status(const struct host *h, const char *dir, const char *key)
{
    char path[600];
    snprintf(path, sizeof path, "%s/status.json", h->state);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "\"direction\": \"%s\"", dir);
    char *p = strstr(buf, pat);
    if (!p)
        return -1;
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    p = strstr(p, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}

int host_dead_letters(const struct host *h)
{
    char path[600];
    snprintf(path, sizeof path, "%s/dead", h->state);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".msg"))
            n++;
    closedir(d);
    return n;
}

int host_dead_letter_says(const struct host *h, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/dead", h->state);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));) {
        if (!strstr(e->d_name, ".msg"))
            continue;
        char file[1200], buf[4096] = {0};
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        FILE *f = fopen(file, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        found = strstr(buf, text) != NULL;
    }
    closedir(d);
    return found;
}

const char *host_relay_status(const struct host *h, ...)
{
    static char out[1 << 16];
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "'%s' status --state '%s'", PBX_RELAY_BIN, h->state);
    va_list ap;
    va_start(ap, h);
    for (const char *a; (a = va_arg(ap, const char *)) && n < (int) sizeof cmd - 64;)
        n += snprintf(cmd + n, sizeof cmd - (size_t) n, " '%s'", a);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    ASSERT_TRUE(p != NULL);
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    int st = pclose(p);
    if (st != 0)
        fprintf(stderr, "natsd: %s -> status %d:\n%s\n", cmd, st, out);
    ASSERT_EQ(st, 0);
    return out;
}
