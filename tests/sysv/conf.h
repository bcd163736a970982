/*
 * conf.h — a tiny harness for the System V conformance programs.
 *
 * These programs are plain System V code: they include <sys/msg.h> and never postbox.h, so
 * the same binary runs against the kernel (no preload: checks the tests themselves) and
 * against libpostbox-sysv.so (LD_PRELOAD: checks the drop-in). run.sh does either.
 *
 * CONF_TEST(name) { ... } defines a test; "prog name" runs it in a child process with a time
 * limit. CHECK and CHECK_FAILS print what they saw and exit 1; exit 77 is "skipped". Queues
 * made with q_new() are removed when the test process ends, passed or failed.
 */
#ifndef CONF_H
#define CONF_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_COPY
#define MSG_COPY 040000 /* Linux's value; glibc's <sys/msg.h> has it, musl's does not */
#endif

struct conf_test {
    const char *name;
    void (*fn)(void);
    struct conf_test *next;
};
static struct conf_test *conf_tests;

#define CONF_TEST(name)                                                                            \
    static void name(void);                                                                        \
    static struct conf_test conf_rec_##name = {#name, name, NULL};                                 \
    __attribute__((constructor)) static void conf_reg_##name(void)                                 \
    {                                                                                              \
        conf_rec_##name.next = conf_tests;                                                         \
        conf_tests = &conf_rec_##name;                                                             \
    }                                                                                              \
    static void name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (errno %d: %s)\n", __FILE__, __LINE__, #cond, \
                    errno, strerror(errno));                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long a_ = (long long) (a), b_ = (long long) (b);                                      \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "%s:%d: CHECK %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__,    \
                    #a, #b, a_, b_);                                                               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* The call must return -1 with errno == err. */
#define CHECK_FAILS(call, err)                                                                     \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long) (call);                                                                   \
        if (r_ != -1 || errno != (err)) {                                                          \
            fprintf(stderr, "%s:%d: %s: expected -1 with %s, got %ld (errno %d: %s)\n", __FILE__,  \
                    __LINE__, #call, #err, r_, errno, strerror(errno));                            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define SKIP(why)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "skipped: %s\n", why);                                                     \
        exit(77);                                                                                  \
    } while (0)

/* ---- queues ---- */

static int conf_ids[64];
static int conf_nids;
static pid_t conf_owner;

static void conf_cleanup(void)
{
    if (getpid() != conf_owner)
        return;
    for (int i = 0; i < conf_nids; i++)
        msgctl(conf_ids[i], IPC_RMID, NULL);
}

/* Remember id for removal at exit. */
static int q_track(int id)
{
    if (id >= 0 && conf_nids < 64)
        conf_ids[conf_nids++] = id;
    return id;
}

__attribute__((unused)) static int q_new(int mode)
{
    int id = msgget(IPC_PRIVATE, IPC_CREAT | mode);
    CHECK(id >= 0);
    return q_track(id);
}

/* A key no other run uses at the same time. */
__attribute__((unused)) static key_t q_key(int n)
{
    return (key_t) (0x50000000 | ((getpid() & 0xffff) << 8) | (n & 0xff));
}

struct text_msg {
    long mtype;
    char mtext[256];
};

__attribute__((unused)) static void snd(int id, long type, const char *text)
{
    struct text_msg m = {.mtype = type};
    size_t n = strlen(text);
    memcpy(m.mtext, text, n);
    CHECK(msgsnd(id, &m, n, 0) == 0);
}

/* Receive (IPC_NOWAIT) and check the type and text. */
__attribute__((unused)) static void rcv_expect(int id, long msgtyp, int flags, long type,
                                               const char *text)
{
    struct text_msg m;
    memset(&m, 0, sizeof(m));
    ssize_t n = msgrcv(id, &m, sizeof(m.mtext), msgtyp, flags | IPC_NOWAIT);
    CHECK(n >= 0);
    CHECK_EQ(m.mtype, type);
    CHECK_EQ(n, (long) strlen(text));
    CHECK(memcmp(m.mtext, text, (size_t) n) == 0);
}

__attribute__((unused)) static long qnum(int id)
{
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    return (long) ds.msg_qnum;
}

static long proc_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    CHECK(f && fscanf(f, "%ld", &v) == 1);
    fclose(f);
    return v;
}

/* The limit the library (or kernel) applies: the environment's override, else /proc. */
__attribute__((unused)) static long limit_of(const char *name)
{
    char env[64], path[64];
    snprintf(env, sizeof(env), "POSTBOX_SYSV_%s", name);
    for (char *p = env + 12; *p; p++)
        *p = (char) (*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    if (getenv("LD_PRELOAD") && getenv(env))
        return atol(getenv(env));
    snprintf(path, sizeof(path), "/proc/sys/kernel/%s", name);
    return proc_long(path);
}

/* ---- processes ---- */

/* Fork a helper; it runs fn(arg) and exits with its status (CHECK failures: 1). */
__attribute__((unused)) static pid_t spawn(int (*fn)(int), int arg)
{
    fflush(NULL);
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0)
        _exit(fn(arg));
    return p;
}

static int wait_status(pid_t p)
{
    int st;
    CHECK(waitpid(p, &st, 0) == p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The scheduler state letter of process p ('S' = asleep, interruptible). */
static char proc_state(pid_t p)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) p);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *rp = strrchr(buf, ')');
    return rp && rp[1] ? rp[2] : '?';
}

/* Wait until p has been asleep (state S) for a while: it is blocked in its call. */
__attribute__((unused)) static void wait_asleep(pid_t p)
{
    int seen = 0;
    for (int i = 0; i < 500 && seen < 5; i++) {
        usleep(10000);
        seen = proc_state(p) == 'S' ? seen + 1 : 0;
    }
    CHECK(seen >= 5);
}

/* Become an unprivileged user (nobody), or skip the test if that is impossible. */
__attribute__((unused)) static void become_nobody(void)
{
    if (geteuid() != 0)
        SKIP("switching users needs root");
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
        SKIP("cannot switch to uid 65534");
}

__attribute__((unused)) static void need_root(void)
{
    if (geteuid() != 0)
        SKIP("switching users needs root");
}

static volatile sig_atomic_t conf_caught;
__attribute__((unused)) static void conf_on_signal(int sig)
{
    (void) sig;
    conf_caught = 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        for (struct conf_test *t = conf_tests; t; t = t->next)
            printf("%s\n", t->name);
        return argc == 1 ? 0 : 2;
    }
    for (struct conf_test *t = conf_tests; t; t = t->next) {
        if (strcmp(t->name, argv[1]) != 0)
            continue;
        conf_owner = getpid();
        atexit(conf_cleanup);
        alarm(60);
        t->fn();
        return 0;
    }
    fprintf(stderr, "no test %s\n", argv[1]);
    return 2;
}

#endif
