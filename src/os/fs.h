/*
 * fs.h — the file-system calls of the spool transport (src/spool/), behind a replaceable table.
 *
 * The spool keeps each message in a file of its own and moves it between directories by
 * rename, so its failure modes are those of the file system: a full disk while writing, a
 * failing flush, a rename that finds its source gone. These calls go through a table, like
 * the region calls of os.h, so that tests can make any of them fail (tests/test_spool_bad.c
 * makes write fail with -ENOSPC; tests/test_spool_faults.c fails each call of a send and of a
 * receive in turn). Every call the spool makes on its files and directories goes through it;
 * only the mapping of its state page (os.h) and the inotify, eventfd and wait calls below do
 * not. Every entry returns what its namesake returns on success and -errno on failure; none
 * retries on EINTR except write, which completes short writes, and pread.
 */
#ifndef PBX_OS_FS_H
#define PBX_OS_FS_H

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct pbx_fs_calls {
    /* Write all len bytes at the current offset (short writes are continued). */
    int (*write_all)(int fd, const void *buf, size_t len);
    int (*fsync)(int fd);
    int (*fdatasync)(int fd);
    int (*renameat)(int olddirfd, const char *oldname, int newdirfd, const char *newname);
    int (*mkdirat)(int dirfd, const char *name, mode_t mode);
    /* unlinkat with flags 0 (a file) or AT_REMOVEDIR (an empty directory). */
    int (*unlinkat)(int dirfd, const char *name, int flags);
    /* Flush the whole file system that holds fd (syncfs). */
    int (*syncfs)(int fd);
    /* openat(2): the new descriptor or -errno. */
    int (*openat)(int dirfd, const char *name, int flags, mode_t mode);
    /* close(2). The descriptor is released even when it fails, as with close(2). */
    int (*close)(int fd);
    int (*fstat)(int fd, struct stat *st);
    int (*fstatat)(int dirfd, const char *name, struct stat *st, int flags);
    int (*fchmod)(int fd, mode_t mode);
    int (*fchmodat)(int dirfd, const char *name, mode_t mode);
    /* faccessat(2) with the effective ids when flags has AT_EACCESS. */
    int (*faccessat)(int dirfd, const char *name, int mode, int flags);
    /* Read up to len bytes at offset off: the count or -errno (EINTR is retried). */
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    /* A listing of the directory fd refers to, from its start. fd stays the caller's: the
     * listing reads a close-on-exec duplicate of it. */
    int (*dir_open)(int fd, DIR **out);
    /* The next entry of a listing: 1 with *name set, 0 at the end, or -errno. */
    int (*dir_next)(DIR *d, const char **name);
    void (*dir_close)(DIR *d);
    /* poll(2): the count of ready descriptors or -errno. */
    int (*poll)(struct pollfd *fds, nfds_t n, int timeout_ms);
};

/* The table in use; tests may change entries. */
struct pbx_fs_calls *pbx__fs_table(void);
/* Put every entry back to the real call. */
void pbx__fs_table_reset(void);

/* The table's pread: up to len bytes at offset off; the count or -errno. */
ssize_t pbx__fs_pread(int fd, void *buf, size_t len, off_t off);

/* An inotify descriptor, non-blocking and close-on-exec; -errno on failure. */
int pbx__fs_inotify_init(void);
/* Watch a directory for files arriving and leaving; returns the watch descriptor or -errno
 * (-ENOSYS when /proc is not mounted: the watch is added through /proc/thread-self/fd). */
int pbx__fs_inotify_watch(int ifd, int dirfd_parent, const char *path);
/* Read pending events into buf: a byte count, 0 when none are pending, or -errno. */
ssize_t pbx__fs_inotify_read(int ifd, void *buf, size_t len);

/* Wait until fd or fd2 (-1: none) is readable, the absolute CLOCK_MONOTONIC deadline_ns
 * passes, slice_ns passes, or a signal that *mask (NULL: the current mask) lets through has a
 * handler run. The mask is in force only during the wait (ppoll). Returns 1 (readable), 0
 * (time up), -EINTR. */
int pbx__fs_wait_readable(int fd, int fd2, uint64_t deadline_ns, uint64_t slice_ns,
                          const sigset_t *mask);

/* An eventfd used as a counter of wake-ups for the threads of one process (non-blocking,
 * close-on-exec, semaphore mode); -errno. */
int pbx__fs_eventfd(void);
/* Add n wake-ups: it is readable while any is left. */
void pbx__fs_eventfd_kick(int fd, uint32_t n);
/* Take one wake-up, if there is one. */
void pbx__fs_eventfd_take(int fd);

#endif
