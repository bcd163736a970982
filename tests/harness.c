/*
 * harness.c — running tests in isolated child processes (see harness.h).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static struct pbx_test *tests;

void pbx_test_register(struct pbx_test *t)
{
    /* Keep the order of the source file: append. */
    struct pbx_test **p = &tests;
    while (*p)
        p = &(*p)->next;
    *p = t;
}

const char *pbx_test_errname(int err)
{
    return pbx__errname(err);
}

void pbx_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: FAIL (pid %d): ", file, line, (int) getpid());
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

pid_t pbx_test_fork(int (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        _exit(1);
    }
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

int pbx_test_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 255;
        }
    }
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

void pbx_test_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

double pbx_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

struct pbx_options pbx_test_options(uint32_t max_msgs, uint64_t max_bytes, uint32_t max_msg_size,
                                    enum pbx_overflow overflow)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = max_msgs;
    o.max_bytes = max_bytes;
    o.max_msg_size = max_msg_size;
    o.overflow = overflow;
    return o;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(path);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void) sig;
    timed_out = 1;
}

/* Run one test in its own process group and directory; return its exit status. */
static int run_one(struct pbx_test *t)
{
    char dir[] = "/dev/shm/pbx-test.XXXXXX";
    char tmpdir[] = "/tmp/pbx-test.XXXXXX";
    const char *d = mkdtemp(dir);
    if (!d)
        d = mkdtemp(tmpdir);
    if (!d) {
        perror("mkdtemp");
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        remove_tree(d);
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        setenv("POSTBOX_DIR", d, 1);
        t->fn();
        fflush(stdout);
        _exit(0);
    }
    setpgid(pid, pid);

    const char *lim = getenv("PBX_TEST_TIMEOUT");
    unsigned limit = lim ? (unsigned) atoi(lim) : 110;
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    timed_out = 0;
    alarm(limit);
    int st = 0, status;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno == EINTR && timed_out) {
            fprintf(stderr, "%s: timed out after %u s\n", t->name, limit);
            kill(-pid, SIGKILL);
        } else if (errno != EINTR) {
            break;
        }
    }
    alarm(0);
    kill(-pid, SIGKILL); /* helpers the test left behind */
    if (WIFEXITED(st)) {
        status = WEXITSTATUS(st);
    } else {
        fprintf(stderr, "%s: killed by signal %d (%s)\n", t->name, WTERMSIG(st),
                strsignal(WTERMSIG(st)));
        status = 1;
    }
    remove_tree(d);
    return status;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (struct pbx_test *t = tests; t; t = t->next)
            printf("%s\n", t->name);
        return 0;
    }
    int passed = 0, failed = 0, skipped = 0, matched = 0;
    for (struct pbx_test *t = tests; t; t = t->next) {
        if (argc > 1) {
            int want = 0;
            for (int i = 1; i < argc; i++)
                want |= !strcmp(argv[i], t->name);
            if (!want)
                continue;
        }
        matched++;
        int st = run_one(t);
        if (argc > 2 || argc == 1)
            printf("%-60s %s\n", t->name, st == 0 ? "ok" : st == 77 ? "skipped" : "FAILED");
        if (st == 0)
            passed++;
        else if (st == 77)
            skipped++;
        else
            failed++;
    }
    if (argc > 1 && matched == 0) {
        fprintf(stderr, "no such test: %s\n", argv[1]);
        return 2;
    }
    if (argc == 2)
        return failed ? 1 : skipped ? 77 : 0;
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
