/*
 * fs.c — the spool's file-system calls (see fs.h).
 */
#define _GNU_SOURCE
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "os.h"

static int real_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

static int real_fsync(int fd)
{
    return fsync(fd) < 0 ? -errno : 0;
}

static int real_fdatasync(int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}

static int real_renameat(int olddirfd, const char *oldname, int newdirfd, const char *newname)
{
    return renameat(olddirfd, oldname, newdirfd, newname) < 0 ? -errno : 0;
}

static int real_mkdirat(int dirfd, const char *name, mode_t mode)
{
    return mkdirat(dirfd, name, mode) < 0 ? -errno : 0;
}

static int real_unlinkat(int dirfd, const char *name, int flags)
{
    return unlinkat(dirfd, name, flags) < 0 ? -errno : 0;
}

static int real_syncfs(int fd)
{
    return syncfs(fd) < 0 ? -errno : 0;
}

static int real_openat(int dirfd, const char *name, int flags, mode_t mode)
{
    int fd = openat(dirfd, name, flags, mode);
    return fd < 0 ? -errno : fd;
}

static int real_close(int fd)
{
    return close(fd) < 0 ? -errno : 0;
}

static int real_fstat(int fd, struct stat *st)
{
    return fstat(fd, st) < 0 ? -errno : 0;
}

static int real_fstatat(int dirfd, const char *name, struct stat *st, int flags)
{
    return fstatat(dirfd, name, st, flags) < 0 ? -errno : 0;
}

static int real_fchmod(int fd, mode_t mode)
{
    return fchmod(fd, mode) < 0 ? -errno : 0;
}

static int real_fchmodat(int dirfd, const char *name, mode_t mode)
{
    return fchmodat(dirfd, name, mode, 0) < 0 ? -errno : 0;
}

static int real_faccessat(int dirfd, const char *name, int mode, int flags)
{
    return faccessat(dirfd, name, mode, flags) < 0 ? -errno : 0;
}

static ssize_t real_pread(int fd, void *buf, size_t len, off_t off)
{
    for (;;) {
        ssize_t n = pread(fd, buf, len, off);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

static int real_dir_open(int fd, DIR **out)
{
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (!d) {
        int err = -errno;
        close(dfd);
        return err;
    }
    rewinddir(d); /* the duplicate shares fd's offset: list from the start */
    *out = d;
    return 0;
}

static int real_dir_next(DIR *d, const char **name)
{
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e)
        return errno ? -errno : 0;
    *name = e->d_name;
    return 1;
}

static void real_dir_close(DIR *d)
{
    closedir(d);
}

static int real_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    int r = poll(fds, n, timeout_ms);
    return r < 0 ? -errno : r;
}

#define PBX_REAL_FS_CALLS                                                                          \
    {                                                                                              \
        .write_all = real_write_all, .fsync = real_fsync, .fdatasync = real_fdatasync,             \
        .renameat = real_renameat, .mkdirat = real_mkdirat, .unlinkat = real_unlinkat,             \
        .syncfs = real_syncfs, .openat = real_openat, .close = real_close, .fstat = real_fstat,    \
        .fstatat = real_fstatat, .fchmod = real_fchmod, .fchmodat = real_fchmodat,                 \
        .faccessat = real_faccessat, .pread = real_pread, .dir_open = real_dir_open,               \
        .dir_next = real_dir_next, .dir_close = real_dir_close, .poll = real_poll,                 \
    }

static const struct pbx_fs_calls real_calls = PBX_REAL_FS_CALLS;
static struct pbx_fs_calls calls = PBX_REAL_FS_CALLS;

struct pbx_fs_calls *pbx__fs_table(void)
{
    return &calls;
}

void pbx__fs_table_reset(void)
{
    calls = real_calls;
}

ssize_t pbx__fs_pread(int fd, void *buf, size_t len, off_t off)
{
    return calls.pread(fd, buf, len, off);
}

int pbx__fs_inotify_init(void)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int pbx__fs_inotify_watch(int ifd, int dirfd_parent, const char *path)
{
    /* inotify_add_watch takes a path; /proc/thread-self/fd/N names the parent without racing
     * a rename of the spool. Not /proc/self: it is the thread-group leader's, whose descriptor
     * table is gone once main() has called pthread_exit() while other threads run. */
    static const char *const prefixes[] = {"/proc/thread-self/fd", "/proc/self/fd"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (access(prefixes[i], X_OK) < 0)
            continue; /* thread-self: kernels before 3.17 */
        char full[4096];
        int n = snprintf(full, sizeof(full), "%s/%d/%s", prefixes[i], dirfd_parent, path);
        if (n < 0 || (size_t) n >= sizeof(full))
            return -ENAMETOOLONG;
        int wd = inotify_add_watch(ifd, full,
                                   IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                                       IN_ONLYDIR | IN_DONT_FOLLOW | IN_DELETE_SELF | IN_MOVE_SELF);
        return wd < 0 ? -errno : wd;
    }
    return -ENOSYS; /* no /proc: a spool cannot be watched (docs/spool.md) */
}

ssize_t pbx__fs_inotify_read(int ifd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(ifd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EAGAIN)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int pbx__fs_wait_readable(int fd, int fd2, uint64_t deadline_ns, uint64_t slice_ns,
                          const sigset_t *mask)
{
    uint64_t now = pbx__os_mono_ns();
    uint64_t wait = slice_ns;
    if (deadline_ns) {
        if (deadline_ns <= now)
            return 0;
        if (deadline_ns - now < wait)
            wait = deadline_ns - now;
    }
    struct timespec ts = {(time_t) (wait / 1000000000u), (long) (wait % 1000000000u)};
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = fd2, .events = POLLIN}};
    int r = ppoll(p, fd2 >= 0 ? 2 : 1, &ts, mask);
    if (r < 0)
        return errno == EINTR ? -EINTR : -errno;
    return r > 0;
}

int pbx__fs_eventfd(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC | EFD_SEMAPHORE);
    return fd < 0 ? -errno : fd;
}

void pbx__fs_eventfd_kick(int fd, uint32_t n_wakeups)
{
    uint64_t v = n_wakeups;
    ssize_t n = write(fd, &v, sizeof(v));
    (void) n; /* EAGAIN: the counter is saturated, which is readable enough */
}

void pbx__fs_eventfd_take(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void) n; /* EAGAIN: nothing to take */
}
