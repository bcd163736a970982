/*
 * ident.c — identities of threads and processes, the two liveness rules, and the PID namespace
 * they are judged in (see ident.h).
 *
 * Everything here reads /proc, through one parser of /proc/<id>/stat (stat_read). /proc is
 * read rather than signalled (kill(pid, 0)) because only the start time tells a process from
 * the one that got its PID afterwards, and only the state letter tells a zombie, which holds
 * nothing, from a running process.
 */
#define _GNU_SOURCE
#include "ident.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- the one parser of /proc/<id>/stat ------------------------------------------------- */

/* Read the state letter (field 3) and start time (field 22) from the stat file at path,
 * relative to dirfd. The command name in field 2 may hold spaces and parentheses, so counting
 * starts after the last ')'. 0, -ENOENT / -ESRCH (no such thread), -EIO (unreadable format). */
static int stat_read(int dirfd, const char *path, char *state, uint64_t *start)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (err)
        return err;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -EIO;
    /* p[1] is the space before field 3; each further space starts the next field. */
    char st = p[2];
    int field = 3;
    for (p += 2; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    if (field != 22 || *p < '0' || *p > '9')
        return -EIO;
    *state = st;
    *start = strtoull(p, NULL, 10);
    return 0;
}

/* stat_read of /proc/<id>/stat (id 0: /proc/thread-self/stat). */
static int stat_of(int32_t id, char *state, uint64_t *start)
{
    char path[64];
    if (id > 0)
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) id);
    else
        snprintf(path, sizeof(path), "/proc/thread-self/stat");
    return stat_read(AT_FDCWD, path, state, start);
}

static int is_zombie(char state)
{
    return state == 'Z' || state == 'X' || state == 'x';
}

static uint64_t pack(int32_t id, uint64_t start)
{
    return ((uint64_t) (uint32_t) start << 32) | ((uint64_t) id & 0x3fffffffu);
}

static int same_start(uint64_t ident, uint64_t start)
{
    return (uint32_t) start == (uint32_t) (ident >> 32);
}

/* ---- the caller's identities ----------------------------------------------------------- */

/* initial-exec: read at a fixed offset from the thread pointer, without the call through
 * __tls_get_addr that the default model for shared libraries costs on every operation. */
__thread struct pbx_self pbx__tls_self __attribute__((tls_model("initial-exec")));

static int32_t proc_ident_pid; /* the PID proc_ident was computed for; 0: none */
static uint64_t proc_ident;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a fork()ed child the only thread is the one that forked; its cached identities are its
 * parent's, so forget them. */
static void forget_in_child(void)
{
    pbx__tls_self.ident = 0;
    __atomic_store_n(&proc_ident_pid, 0, __ATOMIC_RELEASE);
}

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_in_child);
}

const struct pbx_self *pbx__os_self_slow(void)
{
    pthread_once(&atfork_once, install_atfork);
    int32_t tid = (int32_t) syscall(SYS_gettid);
    char st;
    uint64_t start = 0;
    /* thread-self first: it names this thread whatever PID namespace /proc was mounted for. */
    if (stat_of(0, &st, &start) < 0 && stat_of(tid, &st, &start) < 0)
        start = 0; /* no /proc: identity falls back to the thread id alone */
    pbx__tls_self.pid = (int32_t) getpid();
    pbx__tls_self.tid = tid;
    pbx__tls_self.ident = pack(tid, start);
    if (pbx__tls_self.ident == 0)
        pbx__tls_self.ident = 1; /* (tid 0 does not occur; the word must never be 0) */
    return &pbx__tls_self;
}

uint64_t pbx__ident_process(void)
{
    int32_t pid = pbx__os_self()->pid;
    if (__builtin_expect(__atomic_load_n(&proc_ident_pid, __ATOMIC_ACQUIRE) == pid, 1))
        return __atomic_load_n(&proc_ident, __ATOMIC_RELAXED);
    /* The leader's start time, read through its PID: the leader may have exited already
     * (pthread_exit from main), but as a zombie its stat file remains while we run. */
    char st;
    uint64_t start = 0;
    if (stat_of(pid, &st, &start) < 0)
        start = 0;
    uint64_t ident = pack(pid, start);
    __atomic_store_n(&proc_ident, ident, __ATOMIC_RELAXED);
    __atomic_store_n(&proc_ident_pid, pid, __ATOMIC_RELEASE);
    return ident;
}

/* ---- the two liveness rules ------------------------------------------------------------ */

int pbx__ident_thread_alive(uint64_t ident)
{
    int32_t tid = PBX_IDENT_TID(ident);
    if (tid <= 0)
        return 0;
    char st;
    uint64_t start;
    int err = stat_of(tid, &st, &start);
    if (err == -ENOENT || err == -ESRCH)
        return 0;
    if (err < 0) /* /proc unusable: the existence of the id is all that can be known */
        return syscall(SYS_tkill, tid, 0) == 0 || errno != ESRCH;
    if (is_zombie(st))
        return 0; /* exited but not yet reaped: holds nothing any more */
    return same_start(ident, start);
}

/* Does the process pid (whose leader is a zombie) have a thread that is not? */
static int any_thread_runs(int32_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
    DIR *d = opendir(path);
    if (!d)
        return 0; /* reaped meanwhile */
    int runs = 0;
    for (struct dirent *e; !runs && (e = readdir(d));) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char rel[300], st;
        uint64_t start;
        snprintf(rel, sizeof(rel), "%.64s/stat", e->d_name);
        runs = stat_read(dirfd(d), rel, &st, &start) == 0 && !is_zombie(st);
    }
    closedir(d);
    return runs;
}

int pbx__ident_process_alive(uint64_t ident)
{
    int32_t pid = PBX_IDENT_TID(ident);
    if (pid <= 0)
        return 0;
    char st;
    uint64_t start;
    int err = stat_of(pid, &st, &start);
    if (err == -ENOENT || err == -ESRCH)
        return 0;
    if (err < 0) /* /proc unusable: the existence of the PID is all that can be known */
        return kill(pid, 0) == 0 || errno != ESRCH;
    if (!same_start(ident, start))
        return 0; /* the PID was recycled */
    if (!is_zombie(st))
        return 1;
    /* The leader is a zombie: the process lives while any of its threads does. */
    return any_thread_runs(pid);
}

int pbx__ident_thread_stopped(uint64_t ident)
{
    char st;
    uint64_t start;
    if (stat_of(PBX_IDENT_TID(ident), &st, &start) < 0 || !same_start(ident, start))
        return 0;
    return st == 'T' || st == 't';
}

/* ---- the PID namespace ----------------------------------------------------------------- */

int pbx__ident_pidns(uint64_t *dev, uint64_t *ino)
{
    struct statfs fs;
    if (statfs("/proc", &fs) < 0 || fs.f_type != PROC_SUPER_MAGIC)
        return -ENOENT; /* no /proc */
    /* /proc/self names the caller by its PID in the namespace /proc was mounted for: unless
     * that is the caller's own PID, /proc shows another namespace (unshare -p -f without
     * --mount-proc), and /proc/<id> of an id recorded by a participant names someone else. */
    char link[32];
    ssize_t n = readlink("/proc/self", link, sizeof(link) - 1);
    if (n <= 0)
        return -EXDEV; /* the caller is not visible in this /proc at all */
    link[n] = '\0';
    char *end;
    long pid = strtol(link, &end, 10);
    if (*end != '\0' || pid != (long) getpid())
        return -EXDEV;
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) < 0)
        return -ENOENT; /* a kernel without namespace files (before 3.8) */
    *dev = (uint64_t) st.st_dev;
    *ino = (uint64_t) st.st_ino;
    return 0;
}

int pbx__ident_pidns_admits(uint64_t dev, uint64_t ino)
{
    if (dev == 0 && ino == 0)
        return 0; /* none recorded: made without /proc, or by a version before this check */
    uint64_t d, i;
    if (pbx__ident_pidns(&d, &i) < 0)
        return -EXDEV;
    return d == dev && i == ino ? 0 : -EXDEV;
}

int pbx__ident_pidns_bind(uint64_t *dev, uint64_t *ino, int anew)
{
    uint64_t d = __atomic_load_n(dev, __ATOMIC_RELAXED), i = __atomic_load_n(ino, __ATOMIC_RELAXED);
    if (!anew && (d != 0 || i != 0))
        return pbx__ident_pidns_admits(d, i);
    d = i = 0;
    if (pbx__ident_pidns(&d, &i) == -EXDEV)
        return -EXDEV;
    __atomic_store_n(dev, d, __ATOMIC_RELAXED);
    __atomic_store_n(ino, i, __ATOMIC_RELAXED);
    return 0;
}
