/*
 * fs.h — the file-system calls of the spool transport (src/spool/), behind a replaceable table.
 *
 * The spool keeps each message in a file of its own and moves it between directories by
 * rename, so its failure modes are those of the file system: a full disk while writing, a
 * failing flush, a rename that finds its source gone. These calls go through a table, like
 * the region calls of os.h, so that tests can make any of them fail (tests/test_spool_bad.c
 * makes write fail with -ENOSPC). Every entry returns what its namesake returns on success and
 * -errno on failure; none retries on EINTR except write, which completes short writes.
 */
#ifndef PBX_OS_FS_H
#define PBX_OS_FS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
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
};

/* The table in use; tests may change entries. */
struct pbx_fs_calls *pbx__fs_table(void);
/* Put every entry back to the real call. */
void pbx__fs_table_reset(void);

/* Read up to len bytes at offset off; returns the count or -errno (EINTR is retried). */
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
