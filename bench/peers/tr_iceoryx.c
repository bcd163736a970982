/*
 * tr_iceoryx.c — Eclipse iceoryx 2.0 through its C binding: zero-copy publish/subscribe in
 * shared memory managed by the iox-roudi daemon.
 *
 * The daemon. peer_iox_start() runs iox-roudi for this run only, with a configuration whose
 * memory pools hold 256 chunks of 64 KiB (and more of the small sizes), written next to the
 * results. iceoryx 2.0 has fixed names (/dev/shm/iceoryx_mgmt, the socket /tmp/roudi), so
 * when the kernel allows it the daemon gets a private mount namespace with its own /dev/shm
 * and /tmp, and every iceoryx child joins that namespace with setns(): the bench neither
 * disturbs nor is disturbed by a daemon someone else is running. Without that privilege it
 * runs in the shared namespace, and iceoryx is skipped when another daemon is already there.
 * The daemon is stopped by peer_iox_stop(), by an atexit() handler if a case returns early,
 * and by PR_SET_PDEATHSIG if the bench itself is killed. Its process monitoring is off
 * (-m off): on a loaded machine it took live bench processes whose keep-alive came 1.5 s
 * late for dead, removed their ports and hung the run. A child killed after an error then
 * keeps its chunks until the daemon stops, which is at the end of the case.
 *
 * The channel. The sending end is a publisher that blocks while the subscriber's queue is
 * full (ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER, QueueFullPolicy_BLOCK_PRODUCER); attach()
 * returns only once the subscriber is connected, since iceoryx drops what is published before
 * that. The receiving end is a subscriber whose queue holds the requested depth (at most
 * 256, iceoryx's limit), waiting in a wait set, or busy-polling (iox-poll). Each send loans a
 * chunk of the payload's size from the daemon's pools and publishes it; each receive takes
 * one and releases it. iox and iox-poll leave the payload untouched: only the first 16 bytes
 * (the bench's stamp) are written and read, which is what zero copy offers a program that
 * builds its data in place and reads only part of it. iox-inplace writes the whole payload
 * into the chunk and reads the whole of it back, as a program that fills every byte does.
 * When a pool runs dry (a full queue plus the chunks held by each end), the loan is retried.
 *
 * Children must leave with exit(): iceoryx 2.0.3 returns a process's chunks to the pools
 * only in the destructors that exit() runs (PEER_EXIT).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <iceoryx_binding_c/log.h>
#include <iceoryx_binding_c/publisher.h>
#include <iceoryx_binding_c/runtime.h>
#include <iceoryx_binding_c/subscriber.h>
#include <iceoryx_binding_c/wait_set.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "peers.h"

#define IOX_MODE_UNTOUCHED 0
#define IOX_MODE_INPLACE   1
#define IOX_MODE_POLL      2

#define IOX_HEADER 16 /* bytes written and read when the payload is left untouched */

/* ---- the daemon ------------------------------------------------------------------------ */

static pid_t roudi_pid;
static pid_t roudi_owner; /* the orchestrator: only it stops the daemon */
static int roudi_ns = -1; /* the daemon's mount namespace, joined by every iceoryx child */
static char roudi_why[1024];
static int children_log = -1; /* iceoryx children's stderr: its warnings go to roudi.log */

static const char roudi_config[] =
    "# written by pbx_bench (bench/peers/tr_iceoryx.c) for one run of iox-roudi\n"
    "[general]\n"
    "version = 1\n"
    "\n"
    "[[segment]]\n"
    "\n"
    "[[segment.mempool]]\n"
    "size = 128\n"
    "count = 2048\n"
    "\n"
    "[[segment.mempool]]\n"
    "size = 1024\n"
    "count = 1024\n"
    "\n"
    "[[segment.mempool]]\n"
    "size = 4096\n"
    "count = 512\n"
    "\n"
    "[[segment.mempool]]\n"
    "size = 65536\n"
    "count = 256\n";

static const char *find_roudi(void)
{
    static char path[512];
    const char *env = getenv("PATH");
    char dirs[2048];
    snprintf(dirs, sizeof(dirs), "%s", env && *env ? env : "/usr/local/bin:/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(path, sizeof(path), "%s/iox-roudi", d);
        if (access(path, X_OK) == 0)
            return path;
    }
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

void peer_iox_stop(void)
{
    if (roudi_pid <= 0 || getpid() != roudi_owner)
        return;
    kill(roudi_pid, SIGTERM);
    int st;
    for (int i = 0; i < 300 && waitpid(roudi_pid, &st, WNOHANG) == 0; i++)
        sleep_ms(10);
    if (waitpid(roudi_pid, &st, WNOHANG) == 0) {
        kill(roudi_pid, SIGKILL);
        waitpid(roudi_pid, &st, 0);
    }
    roudi_pid = 0;
    if (roudi_ns >= 0)
        close(roudi_ns);
    roudi_ns = -1;
    if (children_log >= 0)
        close(children_log);
    children_log = -1;
}

/* In the forked child: a private mount namespace if possible, then exec the daemon. Tells
 * the parent through fd report whether it has a namespace of its own with private /dev/shm
 * and /tmp ('P'), one without them ('N'), or the shared one ('S'). */
static void roudi_child(const char *bin, int cfg, int log, int report)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the whole group: the bench stops the daemon */
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    dup2(log, 1);
    dup2(log, 2);
    char what = 'S';
    if (unshare(CLONE_NEWNS) == 0) {
        /* the children join this namespace whether or not the mounts below succeed */
        what = 'N';
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
            mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0 &&
            mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0)
            what = 'P';
    }
    if (write(report, &what, 1) != 1)
        _exit(127);
    close(report);
    char cfgpath[64];
    snprintf(cfgpath, sizeof(cfgpath), "/proc/self/fd/%d", cfg);
    execl(bin, bin, "-c", cfgpath, "-l", "warning", "-m", "off", (char *) NULL);
    dprintf(2, "pbx_bench: exec %s: %s\n", bin, strerror(errno));
    _exit(127);
}

int peer_iox_start(const char *outdir, const char **why)
{
    *why = roudi_why;
    if (roudi_pid > 0)
        return 0;
    const char *bin = find_roudi();
    if (!bin) {
        snprintf(roudi_why, sizeof(roudi_why),
                 "iox-roudi not found in PATH (apt-get install iceoryx)");
        return -1;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/roudi.toml", outdir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(roudi_config, f) < 0 || fclose(f) != 0) {
        snprintf(roudi_why, sizeof(roudi_why), "cannot write %.200s", path);
        return -1;
    }
    int cfg = open(path, O_RDONLY);
    snprintf(path, sizeof(path), "%s/roudi.log", outdir);
    int log = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    int pfd[2];
    if (cfg < 0 || log < 0 || pipe2(pfd, O_CLOEXEC) != 0) {
        snprintf(roudi_why, sizeof(roudi_why), "cannot open the daemon's files: %s",
                 strerror(errno));
        if (cfg >= 0)
            close(cfg);
        if (log >= 0)
            close(log);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        roudi_child(bin, cfg, log, pfd[1]);
    }
    close(cfg);
    close(log);
    close(pfd[1]);
    children_log = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    char what = 0;
    if (pid < 0 || read(pfd[0], &what, 1) != 1) {
        close(pfd[0]);
        snprintf(roudi_why, sizeof(roudi_why), "cannot start iox-roudi");
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return -1;
    }
    close(pfd[0]);
    roudi_pid = pid;
    roudi_owner = getpid();
    static int registered;
    if (!registered++)
        atexit(peer_iox_stop);
    if (what != 'S') {
        snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int) pid);
        roudi_ns = open(path, O_RDONLY | O_CLOEXEC);
    }
    /* Ready once its socket exists (seen through the daemon's own root). */
    snprintf(path, sizeof(path), "/proc/%d/root/tmp/roudi", (int) pid);
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            roudi_pid = 0;
            snprintf(roudi_why, sizeof(roudi_why),
                     "iox-roudi exited at start (another daemon running?); see %s/roudi.log",
                     outdir);
            return -1;
        }
        if (access(path, F_OK) == 0) {
            snprintf(roudi_why, sizeof(roudi_why), "iox-roudi %s",
                     what == 'P'   ? "in a private mount namespace (its own /dev/shm and /tmp)"
                     : what == 'N' ? "in its own mount namespace, but with the shared /dev/shm "
                                     "and /tmp (mounting tmpfs failed)"
                                   : "in the shared mount namespace");
            return 0;
        }
        sleep_ms(10);
    }
    snprintf(roudi_why, sizeof(roudi_why), "iox-roudi did not come up in 10 s; see %s/roudi.log",
             outdir);
    peer_iox_stop();
    return -1;
}

/* ---- the channel ----------------------------------------------------------------------- */

struct tr_chan {
    int mode;
    size_t size;
    uint64_t depth;
    char instance[32], event[64];
    iox_pub_storage_t pub_storage;
    iox_sub_storage_t sub_storage;
    iox_ws_storage_t ws_storage;
    iox_pub_t pub;
    iox_sub_t sub;
    iox_ws_t ws;
    char how[64];
};

static int runtime_up;

static int iox_open_mode(const struct tr_params *p, struct tr_chan **out, const char **why,
                         int mode)
{
    if (roudi_pid <= 0) {
        *why = roudi_why[0] ? roudi_why : "iox-roudi is not running";
        return -ENOTSUP;
    }
    if (p->msg_size > 65536) {
        *why = "larger than the daemon's largest chunk (64 KiB; see roudi.toml)";
        return -ENOTSUP;
    }
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->mode = mode;
    c->size = p->msg_size;
    c->depth = p->depth > 256 ? 256 : p->depth;
    snprintf(c->instance, sizeof(c->instance), "%d", (int) getpid());
    snprintf(c->event, sizeof(c->event), "%s", p->name);
    snprintf(c->how, sizeof(c->how), "subscriber queueCapacity = %llu",
             (unsigned long long) c->depth);
    *why = c->how;
    *out = c;
    return 0;
}

static int iox_open_untouched(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    return iox_open_mode(p, out, why, IOX_MODE_UNTOUCHED);
}

static int iox_open_inplace(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    return iox_open_mode(p, out, why, IOX_MODE_INPLACE);
}

static int iox_open_poll(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    return iox_open_mode(p, out, why, IOX_MODE_POLL);
}

static int iox_attach(struct tr_chan *c, int sender)
{
    if (!runtime_up) {
        /* iceoryx prints each pool exhaustion (a full queue at 64 KiB) on stderr; the
         * bench's own errors travel through bench_child_fail() */
        if (children_log >= 0)
            dup2(children_log, 2);
        if (roudi_ns >= 0 && setns(roudi_ns, CLONE_NEWNS) != 0)
            return -errno;
        iox_set_loglevel(Iceoryx_LogLevel_Fatal);
        char name[64];
        snprintf(name, sizeof(name), "pbx-bench-%d", (int) getpid());
        iox_runtime_init(name);
        runtime_up = 1;
    }
    if (sender) {
        iox_pub_options_t o;
        iox_pub_options_init(&o);
        o.historyCapacity = 0;
        o.subscriberTooSlowPolicy = ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
        c->pub = iox_pub_init(&c->pub_storage, "pbx-bench", c->instance, c->event, &o);
        if (!c->pub)
            return -EIO;
        /* what is published before the subscriber is connected is lost: wait (10 s at most) */
        for (int i = 0; !iox_pub_has_subscribers(c->pub); i++) {
            if (i == 10000)
                return -ETIMEDOUT;
            sleep_ms(1);
        }
        return 0;
    }
    iox_sub_options_t o;
    iox_sub_options_init(&o);
    o.queueCapacity = c->depth;
    o.historyRequest = 0;
    o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
    c->sub = iox_sub_init(&c->sub_storage, "pbx-bench", c->instance, c->event, &o);
    if (!c->sub)
        return -EIO;
    if (c->mode != IOX_MODE_POLL) {
        c->ws = iox_ws_init(&c->ws_storage);
        if (!c->ws || iox_ws_attach_subscriber_state(c->ws, c->sub, SubscriberState_HAS_DATA, 0,
                                                     NULL) != WaitSetResult_SUCCESS)
            return -EIO;
    }
    return 0;
}

static void iox_detach(struct tr_chan *c)
{
    if (c->ws) {
        iox_ws_detach_subscriber_state(c->ws, c->sub, SubscriberState_HAS_DATA);
        iox_ws_deinit(c->ws);
    }
    if (c->sub)
        iox_sub_deinit(c->sub);
    if (c->pub)
        iox_pub_deinit(c->pub);
    c->ws = NULL;
    c->sub = NULL;
    c->pub = NULL;
}

static int iox_send(struct tr_chan *c, void *buf, size_t len)
{
    void *chunk = NULL;
    for (unsigned spins = 0;; spins++) {
        enum iox_AllocationResult r = iox_pub_loan_chunk(c->pub, &chunk, (uint32_t) len);
        if (r == AllocationResult_SUCCESS)
            break;
        if (r != AllocationResult_RUNNING_OUT_OF_CHUNKS)
            return -EIO;
        if (spins < 100)
            bench_pause();
        else
            sched_yield();
    }
    memcpy(chunk, buf, c->mode == IOX_MODE_INPLACE || len < IOX_HEADER ? len : IOX_HEADER);
    iox_pub_publish_chunk(c->pub, chunk);
    return 0;
}

static ssize_t iox_recv(struct tr_chan *c, void *buf, size_t cap)
{
    const void *chunk = NULL;
    for (;;) {
        enum iox_ChunkReceiveResult r = iox_sub_take_chunk(c->sub, &chunk);
        if (r == ChunkReceiveResult_SUCCESS)
            break;
        if (r != ChunkReceiveResult_NO_CHUNK_AVAILABLE)
            return -EIO;
        if (c->mode == IOX_MODE_POLL) {
            bench_pause();
        } else {
            iox_notification_info_t info[2];
            uint64_t missed = 0;
            iox_ws_wait(c->ws, info, 2, &missed);
        }
    }
    size_t len = c->size < cap ? c->size : cap;
    memcpy(buf, chunk, c->mode == IOX_MODE_INPLACE || len < IOX_HEADER ? len : IOX_HEADER);
    iox_sub_release_chunk(c->sub, chunk);
    return (ssize_t) len;
}

static void iox_close(struct tr_chan *c)
{
    free(c);
}

const struct peer_ops peer_iox_ops = {
    .name = "iox",
    .title = "iceoryx, payload untouched",
    .flags = PEER_HEADER_ONLY | PEER_EXIT,
    .open = iox_open_untouched,
    .attach = iox_attach,
    .detach = iox_detach,
    .send = iox_send,
    .recv = iox_recv,
    .close = iox_close,
};

const struct peer_ops peer_iox_inplace_ops = {
    .name = "iox-inplace",
    .title = "iceoryx, payload written and read",
    .flags = PEER_EXIT,
    .open = iox_open_inplace,
    .attach = iox_attach,
    .detach = iox_detach,
    .send = iox_send,
    .recv = iox_recv,
    .close = iox_close,
};

const struct peer_ops peer_iox_poll_ops = {
    .name = "iox-poll",
    .title = "iceoryx, polling subscriber, untouched",
    .flags = PEER_HEADER_ONLY | PEER_EXIT | PEER_SPINS,
    .open = iox_open_poll,
    .attach = iox_attach,
    .detach = iox_detach,
    .send = iox_send,
    .recv = iox_recv,
    .close = iox_close,
};
