/*
 * os.c — system calls behind the conventions of os.h: -errno returns, a replaceable table for
 * the file and memory calls, futexes on shared words, clocks, signals to processes named by
 * their identity (ident.h), descriptors and helper threads.
 */
#define _GNU_SOURCE
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../common.h"

/* ---- the replaceable table ------------------------------------------------------------- */

static int real_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    int fd = openat(dirfd, path, flags, mode);
    return fd < 0 ? -errno : fd;
}

static int real_close(int fd)
{
    /* Linux always releases the descriptor, even when close reports EINTR. */
    return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static int real_fstat(int fd, struct stat *st)
{
    return fstat(fd, st) < 0 ? -errno : 0;
}

static int real_fchmod(int fd, mode_t mode)
{
    return fchmod(fd, mode) < 0 ? -errno : 0;
}

static int real_ftruncate(int fd, off_t len)
{
    return ftruncate(fd, len) < 0 ? -errno : 0;
}

/* Reserve the pages of a new region now, so that a full tmpfs shows up as -ENOSPC here rather
 * than as SIGBUS later when a sender first touches a page. File systems without fallocate
 * (some FUSE mounts) are accepted: the region then works, without that guarantee. */
static int real_fallocate(int fd, off_t len)
{
    int err = posix_fallocate(fd, 0, len);
    if (err == EOPNOTSUPP || err == EINVAL)
        return 0;
    return -err;
}

static int real_memfd_create(const char *name, unsigned int flags)
{
    int fd = (int) syscall(SYS_memfd_create, name, flags);
    return fd < 0 ? -errno : fd;
}

/* Give a file opened with O_TMPFILE a name in dirfd. AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH;
 * the /proc/self/fd link works for everyone where /proc is mounted. */
static int real_linkat(int fd, int dirfd, const char *name)
{
    if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno != ENOENT && errno != EPERM)
        return -errno;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, path, dirfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

static int real_unlinkat(int dirfd, const char *name)
{
    return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

static int real_mmap(int fd, size_t len, int how, void **out)
{
    int flags = MAP_SHARED | ((how & PBX_MAP_POPULATE) ? MAP_POPULATE : 0);
    int prot = (how & PBX_MAP_RDONLY) ? PROT_READ : PROT_READ | PROT_WRITE;
    void *p = mmap(NULL, len, prot, flags, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *out = p;
    return 0;
}

static int real_munmap(void *addr, size_t len)
{
    return munmap(addr, len) < 0 ? -errno : 0;
}

#define PBX_REAL_CALLS                                                                             \
    {                                                                                              \
        .openat = real_openat, .close = real_close, .fstat = real_fstat, .fchmod = real_fchmod,    \
        .ftruncate = real_ftruncate, .fallocate = real_fallocate,                                  \
        .memfd_create = real_memfd_create, .linkat = real_linkat, .unlinkat = real_unlinkat,       \
        .mmap = real_mmap, .munmap = real_munmap,                                                  \
    }

static const struct pbx_os_calls real_calls = PBX_REAL_CALLS;
static struct pbx_os_calls calls = PBX_REAL_CALLS;

struct pbx_os_calls *pbx__os_table(void)
{
    return &calls;
}

void pbx__os_table_reset(void)
{
    calls = real_calls;
}

/* ---- futexes --------------------------------------------------------------------------- */

/*
 * The wait always carries a deadline (callers pass one even when their user gave none, to
 * re-check liveness at intervals). That also decides how signals behave: a FUTEX_WAIT with a
 * timeout that is interrupted by a handler fails with EINTR whether or not the handler was
 * installed with SA_RESTART, which is exactly msgrcv(2)'s behaviour, which postbox promises.
 * FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so spurious returns do not
 * stretch the total wait.
 */
int pbx__os_futex_wait(uint32_t *addr, uint32_t expected, uint64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns) {
        ts.tv_sec = (time_t) (deadline_ns / 1000000000u);
        ts.tv_nsec = (long) (deadline_ns % 1000000000u);
        tsp = &ts;
    }
    long r =
        syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
    if (r == 0 || errno == EAGAIN)
        return 0;
    return -errno;
}

void pbx__os_sig_block(struct pbx_sigguard *g)
{
    if (g->blocked || !g->slept)
        return;
    sigset_t all;
    sigfillset(&all);
    g->blocked = pthread_sigmask(SIG_BLOCK, &all, &g->old) == 0;
}

void pbx__os_sig_restore_blocked(struct pbx_sigguard *g)
{
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    g->blocked = 0;
}

int pbx__os_sig_caught_pending(const struct pbx_sigguard *g)
{
    sigset_t pending;
    if (!g->blocked || sigpending(&pending) != 0)
        return 0;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(&pending, sig) != 1 || sigismember(&g->old, sig) == 1)
            continue;
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN)
            return 1;
    }
    return 0;
}

int pbx__os_futex_wait_unblocked(uint32_t *addr, uint32_t expected, uint64_t deadline_ns,
                                 struct pbx_sigguard *g)
{
    /* The mask stays restored afterwards: most sleeps end the call, and one that goes on
     * waiting blocks again (pbx__os_sig_block) before it looks. One system call saved per sleep
     * and one per call. */
    if (g->blocked) {
        pthread_sigmask(SIG_SETMASK, &g->old, NULL);
        g->blocked = 0;
    }
    int r = pbx__os_futex_wait(addr, expected, deadline_ns);
    g->slept = 1;
    return r;
}

int pbx__os_futex_wake(uint32_t *addr, int n)
{
    long r = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int) r;
}

/* ---- clocks ---------------------------------------------------------------------------- */

uint64_t pbx__os_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

uint64_t pbx__os_mono_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

int64_t pbx__os_real_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- fork ------------------------------------------------------------------------------ */

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_membarrier(void);

/* Whether the kernel carries a membarrier registration over to a fork()ed child or not, the
 * child asks for its own: until it has one, it must not rely on others' heavy fences. (The
 * child's identities are forgotten by ident.c's own handler.) */
static void reregister_in_child(void)
{
    if (__atomic_load_n(&pbx__os_asym_light_ok, __ATOMIC_RELAXED)) {
        __atomic_store_n(&pbx__os_asym_light_ok, 0, __ATOMIC_RELAXED);
        register_membarrier();
    }
}

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, reregister_in_child);
}

int pbx__os_maps_file(int32_t tid, dev_t dev, ino_t ino)
{
    char path[64], line[4096];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int) tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    int found = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned int maj, min;
        unsigned long long inode;
        if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &inode) == 3 &&
            inode == (unsigned long long) ino && maj == major(dev) && min == minor(dev)) {
            found = 1;
            break;
        }
        /* A line longer than the buffer: skip its remainder. */
        while (!strchr(line, '\n') && fgets(line, sizeof(line), f))
            ;
    }
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    return err ? err : found;
}

uint64_t pbx__os_random64(void)
{
    uint64_t v = 0;
    if (syscall(SYS_getrandom, &v, sizeof(v), 0) != (long) sizeof(v))
        v = pbx__os_mono_ns() * 0x9e3779b97f4a7c15ull ^ (uint64_t) getpid();
    return v;
}

int pbx__os_online_cpus(void)
{
    static int cpus;
    int n = __atomic_load_n(&cpus, __ATOMIC_RELAXED);
    if (n == 0) {
        long v = sysconf(_SC_NPROCESSORS_ONLN);
        n = v > 0 ? (int) v : 1;
        __atomic_store_n(&cpus, n, __ATOMIC_RELAXED);
    }
    return n;
}

uint32_t pbx__os_cpu_tag_slow(void)
{
    int c = sched_getcpu();
    return c < 0 ? 0 : (uint32_t) c + 1;
}

/* ---- processes: signals, descriptors, helper threads ------------------------------------ */

int pbx__os_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

void pbx__os_eventfd_level(int fd, int readable)
{
    uint64_t v = 1;
    if (readable) {
        /* Only ever 0 or 1: the watcher is the only writer and writes only when it is 0. */
        if (write(fd, &v, sizeof(v)) < 0) {
        }
    } else if (read(fd, &v, sizeof(v)) < 0) {
    }
}

int pbx__os_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -err;
}

int pbx__os_signal_self(int signo, int value)
{
    union sigval v;
    v.sival_int = value;
    return sigqueue(getpid(), signo, v) < 0 ? -errno : 0;
}

/* ASYMMETRIC FENCES (os.h). */
int pbx__os_asym_light_ok;
static int asym_state; /* 0: not tried, 1: registered, -1: unavailable */
static pthread_once_t asym_once = PTHREAD_ONCE_INIT;

static void register_membarrier(void)
{
    const long need = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
    const char *off = getenv("POSTBOX_NO_MEMBARRIER");
    long q =
        off && *off && strcmp(off, "0") ? 0 : syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    int ok = q > 0 && (q & need) == need &&
             syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
    __atomic_store_n(&asym_state, ok ? 1 : -1, __ATOMIC_RELAXED);
    __atomic_store_n(&pbx__os_asym_light_ok, ok, __ATOMIC_SEQ_CST);
}

static void asym_first(void)
{
    pthread_once(&atfork_once, install_atfork);
    register_membarrier();
}

int pbx__os_asym_setup(void)
{
    pthread_once(&asym_once, asym_first);
    return __atomic_load_n(&pbx__os_asym_light_ok, __ATOMIC_RELAXED);
}

void pbx__os_asym_off(void)
{
    pbx__os_asym_setup();
    __atomic_store_n(&asym_state, -1, __ATOMIC_RELAXED);
    __atomic_store_n(&pbx__os_asym_light_ok, 0, __ATOMIC_SEQ_CST);
}

int pbx__os_heavy_fence(void)
{
    if (__atomic_load_n(&asym_state, __ATOMIC_RELAXED) != 1)
        return -1;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0 ? 0 : -1;
}
