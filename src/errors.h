/*
 * errors.h — the one table of postbox's error meanings.
 *
 * Each line gives an errno name and what it means when a postbox call returns it. The table
 * generates pbx_strerror() and pbx__errname() (error.c), so the text users read, the names the
 * tests and tools print and the list in docs/api.md all come from here.
 */
#ifndef PBX_ERRORS_H
#define PBX_ERRORS_H

#define PBX_ERROR_TABLE(X)                                                                         \
    X(EINVAL, "invalid argument (name, flag, type, size, timeout or option)")                      \
    X(ENOENT, "no such mailbox or claim")                                                          \
    X(EEXIST, "mailbox already exists")                                                            \
    X(EACCES, "permission denied by the mailbox's mode")                                           \
    X(EPERM, "operation not permitted")                                                            \
    X(EBADF, "the handle is open read-only (PBX_RDONLY): it may only look")                        \
    X(EIDRM, "mailbox was removed")                                                                \
    X(EAGAIN, "mailbox is full")                                                                   \
    X(ENOMSG, "no message of the requested type")                                                  \
    X(E2BIG, "message is longer than the receive buffer (it stays queued)")                        \
    X(EMSGSIZE, "message is larger than the mailbox's max_msg_size")                               \
    X(ENOBUFS, "mailbox is full: the message was dropped (PBX_DROP_NEWEST)")                       \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(EINTR, "interrupted by a signal handler")                                                    \
    X(EBADMSG, "not a postbox mailbox, or its shared state is damaged")                            \
    X(EPROTO, "mailbox was made by an incompatible version of postbox")                            \
    X(EOPNOTSUPP, "not supported for this kind of mailbox, or by this version of postbox")         \
    X(EDEADLK, "re-entered from a signal handler while this thread held the mailbox")              \
    X(ENOSPC, "no space left to create the mailbox (is /dev/shm or the disk full?)")               \
    X(ENOMEM, "out of memory")                                                                     \
    X(ELOOP, "the mailbox's path is a symbolic link (postbox does not follow them)")               \
    X(ENOTDIR, "the directory the mailbox lives in ($POSTBOX_DIR, /dev/shm, or a spool's parent) " \
               "is missing or not a directory")                                                    \
    X(EMFILE, "too many open files in this process")                                               \
    X(ENFILE, "too many open files in the system")                                                 \
    X(EISDIR, "the mailbox's path is a directory")                                                 \
    X(EROFS, "the mailbox directory is on a read-only file system")                                \
    X(EUSERS, "too many participants or PBX_SYNC senders on this mailbox")                         \
    X(EXDEV, "the mailbox belongs to another PID namespace (or /proc shows another namespace "     \
             "than this process's): its participants' liveness cannot be judged from here")

#endif
