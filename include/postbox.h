/*
 * postbox.h — the public interface of postbox, and the only header a program needs.
 *
 * postbox moves typed, variable-size messages between processes and threads on one Linux
 * host through named mailboxes. A mailbox lives in shared memory (a file in /dev/shm, or in
 * the directory named by the environment variable POSTBOX_DIR); the kernel is involved only
 * to create it and to put waiting callers to sleep and wake them. The selection rules are
 * those of System V message queues (msgrcv(2)): by arrival, by type, by "lowest type up to",
 * and by "any type but" — except that postbox indexes them, so no receive walks the queue.
 *
 * Conventions, for every function below:
 *   - The return value is 0 (or a non-negative count) on success and a negative errno value
 *     (-EINVAL, -EAGAIN, ...) on failure. The global errno is never the only carrier of an
 *     error, and its value after a call is unspecified. pbx_strerror() describes any return.
 *   - A pbx_t handle may be used by several threads at once, except that pbx_close() must not
 *     race with any other call on the same handle. After fork(), the child may go on using the
 *     handles it inherited; after exec(), they are gone (every descriptor is close-on-exec).
 *   - No function is async-signal-safe unless its comment says so: pbx_options_init(),
 *     pbx_strerror() and pbx_version() are; nothing else (a handler that must react to mail
 *     should set a flag or write to a pipe, and leave postbox calls to the main flow — see
 *     pbx_notify() and docs/signals.md).
 *   - Cancellation (pthread_cancel, deferred): a call is a cancellation point only where it
 *     blocks — pbx_send/pbx_timedsend waiting for room or, with PBX_SYNC, for the take;
 *     pbx_recv/pbx_timedrecv/pbx_claim waiting for a message — as msgsnd(2) and msgrcv(2)
 *     are. A cancel acts there with nothing half done: the call's waiter counts and
 *     registrations are undone, a cancelled send has sent nothing (a PBX_SYNC send cancelled
 *     while it waits for the take has sent its message, as with -EINTR), a cancelled receive
 *     has taken nothing. Everywhere else, and in every other call (open, close, ack, release,
 *     notify, fd, peers, stat, remove), cancellation is held off and a pending cancel acts at
 *     the caller's next cancellation point. Asynchronous cancellation is not supported: no
 *     function is async-cancel-safe. docs/api.md, "Cancellation".
 *
 * Compiles as C (C99 and later) and as C++.
 */
#ifndef POSTBOX_H
#define POSTBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(PBX_STATIC)
#define PBX_API __attribute__((visibility("default")))
#else
#define PBX_API
#endif

#define PBX_VERSION_MAJOR 0
#define PBX_VERSION_MINOR 1
#define PBX_VERSION_PATCH 0

/* The longest mailbox name, in bytes. Names are 1 to PBX_NAME_MAX characters from
 * [A-Za-z0-9._-], and neither "." nor "..". */
#define PBX_NAME_MAX 200

struct timespec; /* from <time.h>; declared here too for strict C99, where it may be absent */

/* An open mailbox. Opaque; obtained from pbx_open() or pbx_open_private(). */
typedef struct pbx pbx_t;

/* What pbx_send() does when a message would exceed the mailbox's capacity (the lecture's
 * three answers to "the queue is full"). */
enum pbx_overflow {
    PBX_BLOCK = 0,       /* wait for room (or fail with -EAGAIN under PBX_NOWAIT) */
    PBX_DROP_NEWEST = 1, /* discard the message being sent; pbx_send() returns -ENOBUFS */
    PBX_DROP_OLDEST = 2  /* discard the oldest queued messages until the new one fits */
};

/* Flags for pbx_open(). */
#define PBX_CREATE 0x0001 /* create the mailbox if it does not exist (like IPC_CREAT) */
#define PBX_EXCL   0x0002 /* with PBX_CREATE: fail with -EEXIST if it exists (IPC_EXCL) */
/* Open an existing mailbox only to look at it (pbx_stat, pbx_peers), with read permission
 * alone: the mailbox is mapped read-only, and the handle takes no lock, writes nothing into
 * the mailbox and is not listed among its participants. Everything else on such a handle
 * returns -EBADF (see pbx_open). */
#define PBX_RDONLY 0x0004

/* Flags for sending and receiving. */
/* PBX_NOWAIT never waits on a lock holder that is stopped either: -EAGAIN (docs/api.md). */
#define PBX_NOWAIT  0x0100 /* never sleep: -EAGAIN (full) on send, -ENOMSG (nothing) on recv */
#define PBX_SYNC    0x0200 /* send: return only once a receiver has taken the message */
#define PBX_EXCEPT  0x0400 /* recv with type > 0: take the oldest message of any OTHER type */
#define PBX_NOERROR 0x0800 /* recv: truncate a message longer than the buffer, no -E2BIG */
#define PBX_PEEK    0x1000 /* recv: copy the selected message but leave it queued */

/* How a spool mailbox ("spool:PATH") makes messages durable (struct pbx_options.durability;
 * shared-memory mailboxes ignore it). docs/spool.md states each promise.
 *   PBX_DURABLE_ALWAYS  pbx_send() returns only once the message survives power loss (each
 *                       message file is flushed; directory flushes are shared by concurrent
 *                       senders). The default.
 *   PBX_DURABLE_BATCH   the file system is flushed at most every 100 ms by some sender, and
 *                       when a handle is closed: a power loss may lose the last ~100 ms.
 *   PBX_DURABLE_NONE    no flushes: messages survive a killed process, not a power loss. */
#define PBX_DURABLE_ALWAYS 0u
#define PBX_DURABLE_BATCH  1u
#define PBX_DURABLE_NONE   2u

/*
 * Creation parameters. Always start from pbx_options_init(), then change what you need, so
 * that fields added by later versions get their defaults.
 */
struct pbx_options {
    uint32_t mode;              /* permission bits of a new mailbox; default 0600 */
    uint64_t max_bytes;         /* capacity in payload bytes; default 1 MiB */
    uint32_t max_msgs;          /* capacity in messages; default 4096, at most 16777216 */
    uint32_t max_msg_size;      /* largest payload; default 8192; at most max_bytes */
    enum pbx_overflow overflow; /* what a send into a full mailbox does; default PBX_BLOCK */
    uint32_t unused_pad;        /* ignored (padding in version 0.1.0, so never checked) */
    uint32_t durability;        /* spool mailboxes only: PBX_DURABLE_*; default ALWAYS (0) */
    uint32_t reserved32;        /* must be zero */
    uint64_t reserved[5];       /* must be zero (pbx_options_init() does it) */
};

/* What pbx_stat() reports. Counters are read without stopping senders and receivers, so
 * under traffic they are a consistent-enough snapshot, not an atomic one: each field is a
 * value it had during the call, and msgs, bytes and claimed never exceed the capacity
 * (max_msgs, max_bytes; claimed <= msgs), even when the shared state says otherwise. */
struct pbx_stat {
    uint64_t msgs;              /* messages held: queued, plus any being written or read now */
    uint64_t bytes;             /* payload bytes of those messages */
    uint64_t max_bytes;         /* capacity in bytes */
    uint32_t max_msgs;          /* capacity in messages */
    uint32_t max_msg_size;      /* largest payload */
    enum pbx_overflow overflow; /* overflow policy */
    uint32_t mode;              /* permission bits */
    uid_t uid;                  /* owner of the mailbox */
    gid_t gid;                  /* group of the mailbox */
    pid_t last_send_pid;        /* process that last sent; 0 if none */
    pid_t last_recv_pid;        /* process that last received; 0 if none */
    int64_t last_send_time;     /* CLOCK_REALTIME of the last send, ns since the Epoch, to the
                                   second (shared memory); 0 if none */
    int64_t last_recv_time;     /* the same for the last receive; 0 if none */
    uint64_t sent;              /* messages ever queued */
    uint64_t received;          /* messages ever taken by a receiver (PBX_PEEK not counted) */
    uint64_t dropped;           /* messages ever discarded by PBX_DROP_NEWEST/_OLDEST */
    uint64_t repairs;           /* times a crashed participant's state was repaired */
    uint32_t send_waiters;      /* senders asleep waiting for room now */
    uint32_t recv_waiters;      /* receivers asleep waiting for a message now */
    uint64_t region_size;       /* bytes of shared memory the mailbox occupies */
    uint64_t claimed;           /* messages claimed (pbx_claim) and not yet acked or released;
                                   they are counted in msgs and bytes too */
    uint64_t reserved[7];
};

/* Roles of a participant (struct pbx_peer). */
#define PBX_PEER_OPENED   0x01 /* has the mailbox open */
#define PBX_PEER_SENT     0x02 /* has sent through it */
#define PBX_PEER_RECEIVED 0x04 /* has received or claimed from it */
#define PBX_PEER_NOTIFY   0x08 /* is registered with pbx_notify() */
#define PBX_PEER_WATCH    0x10 /* watches it through pbx_fd() */

/* A live participant of a mailbox, as pbx_peers() reports it: one per process. */
struct pbx_peer {
    pid_t pid;
    uint32_t roles;       /* PBX_PEER_* bits, over all its handles */
    int64_t since;        /* CLOCK_REALTIME of its oldest open handle, ns since the Epoch */
    uint32_t handles;     /* handles it has open on the mailbox */
    int32_t notify_signo; /* the signal it registered with pbx_notify(), 0 if none */
    uint64_t reserved[2];
};

/*
 * pbx_options_init — fill *opts with the defaults listed in struct pbx_options.
 * Never fails. Thread-safe and async-signal-safe.
 */
PBX_API void pbx_options_init(struct pbx_options *opts);

/*
 * pbx_strerror — a short English description of a postbox return value.
 * err may be any value a postbox function returned: 0 or positive gives "success", a negative
 * errno value gives the postbox meaning of that error (e.g. -EIDRM: "mailbox was removed").
 * The string is static; never NULL. Thread-safe and async-signal-safe.
 */
PBX_API const char *pbx_strerror(int err);

/*
 * pbx_version — the library's version as "MAJOR.MINOR.PATCH". Static string; never fails.
 */
PBX_API const char *pbx_version(void);

/*
 * pbx_open — open the mailbox called name, or create it.
 *
 * A bare name ("jobs") is a shared-memory mailbox in /dev/shm, or in $POSTBOX_DIR if that
 * variable is set. "spool:PATH" is a spool mailbox: the directory PATH, whose messages are
 * files that survive crashes and reboots (docs/spool.md); its parent directory must exist
 * (-ENOTDIR), PATH must not be a symbolic link (-ELOOP), and an existing directory that is not
 * a spool is -EBADMSG. flags is 0 or PBX_CREATE, optionally with PBX_EXCL. opts (may be NULL for
 * the defaults) applies only when this call creates the mailbox; an existing mailbox keeps
 * its own limits (check them with pbx_stat()). A new mailbox gets exactly opts->mode as its
 * permission bits (the umask does not apply, as with msgget(2)).
 * On success *out receives a handle the caller owns and must release with pbx_close().
 *
 * flags PBX_RDONLY (alone: with PBX_CREATE it is -EINVAL) opens for looking: read permission
 * on the mailbox is enough (a mode 0644 mailbox of another user, as ipcs reads a queue). The
 * handle supports pbx_stat(), pbx_peers() and pbx_close(); pbx_send, pbx_timedsend, pbx_recv,
 * pbx_timedrecv, pbx_claim, pbx_ack, pbx_release, pbx_notify, pbx_fd and pbx_remove return
 * -EBADF (as write(2) on a descriptor opened O_RDONLY), whatever the mailbox's mode. Such a
 * handle changes nothing in the mailbox: it takes no lock, repairs nothing a crash left (the
 * next read-write user does), and is not counted by pbx_peers(). Its pbx_stat() reads the
 * counters without any lock, as for every handle; a spool's message counts come from listing
 * its directories. Whatever the mailbox's shared memory holds, looking never crashes the
 * caller: the counters are clamped to the mailbox's limits (pbx_stat).
 *
 * Returns 0, or:
 *   -EINVAL    bad name, unknown flag, PBX_EXCL without PBX_CREATE, invalid options,
 *              out == NULL
 *   -ENOENT    no such mailbox and no PBX_CREATE
 *   -ENOTDIR   the directory the mailbox lives in ($POSTBOX_DIR or /dev/shm, or a spool's
 *              parent directory) is missing or not a directory
 *   -EEXIST    PBX_CREATE | PBX_EXCL and the mailbox exists
 *   -EACCES    the mailbox's mode does not let the caller read and write it (with
 *              PBX_RDONLY: read it)
 *   -EBADMSG   the file exists but is not a postbox mailbox, or its header is damaged
 *   -EPROTO    the mailbox was made by an incompatible version of postbox
 *   -EXDEV     the mailbox belongs to another PID namespace than the caller's (a container
 *              sharing /dev/shm or the spool's directory), or /proc shows another PID
 *              namespace than the caller's: liveness could not be judged (docs/reliability.md)
 *   -ENOSPC, -ENOMEM, -EMFILE, ...  as the OS reports while creating or mapping
 * Blocks only briefly (file system calls). Thread-safe.
 */
PBX_API int pbx_open(const char *name, int flags, const struct pbx_options *opts, pbx_t **out);

/*
 * pbx_open_private — create an anonymous mailbox (the lecture's IPC_PRIVATE). It has no name;
 * it is shared with the children the caller fork()s after this call, which inherit the handle.
 * opts may be NULL. Returns 0 or -EINVAL, -ENOMEM, -EMFILE, ... Thread-safe.
 */
PBX_API int pbx_open_private(const struct pbx_options *opts, pbx_t **out);

/*
 * pbx_close — release the handle: unmap the mailbox from this process and free the handle.
 * The mailbox itself and its messages stay (until pbx_remove()/pbx_unlink()). q may be NULL
 * (then it does nothing). Returns 0. Must not race with other calls on the same handle.
 */
PBX_API int pbx_close(pbx_t *q);

/*
 * pbx_remove — remove the mailbox q refers to, like msgctl(IPC_RMID): its name disappears at
 * once (a new mailbox may be created under it), every sender and receiver blocked on it in any
 * process returns -EIDRM, and every later operation on any handle to it returns -EIDRM. Queued
 * messages are discarded. The memory is freed when the last process closes its handle.
 * The handle q itself stays valid and must still be released with pbx_close().
 * Returns 0, -EIDRM if it was already removed, -EPERM/-EACCES if the OS refuses to unlink
 * the name, or -EBADF (a PBX_RDONLY handle; pbx_unlink() needs no handle). Thread-safe.
 */
PBX_API int pbx_remove(pbx_t *q);

/*
 * pbx_unlink — remove the mailbox called name, with the effects of pbx_remove(). A file that
 * is not a valid mailbox is unlinked as well (this is how damaged mailboxes are cleaned up).
 * Returns 0, -EINVAL (bad name), -ENOENT, -ENOTDIR (no mailbox directory), -EACCES/-EPERM
 * (no permission). Thread-safe.
 */
PBX_API int pbx_unlink(const char *name);

/*
 * pbx_send — queue a message of the given type (>= 1) with len bytes from data.
 *
 * data may be NULL only when len is 0. The bytes are copied; the caller keeps its buffer.
 * flags: 0, PBX_NOWAIT, PBX_SYNC, or both. When the mailbox is full, what happens depends on
 * its overflow policy:
 *   PBX_BLOCK        sleep until there is room (PBX_NOWAIT: return -EAGAIN at once);
 *   PBX_DROP_NEWEST  discard this message, count it in pbx_stat().dropped, return -ENOBUFS;
 *   PBX_DROP_OLDEST  discard the oldest queued messages (counted in dropped) until this one
 *                    fits, queue it, and return the number of messages discarded (> 0). If
 *                    even discarding every queued message would not make room (the rest is
 *                    claimed, lent or being copied), nothing is discarded: as PBX_BLOCK.
 * Returns 0 (queued, nothing dropped), a positive drop count (PBX_DROP_OLDEST only), or:
 *   -EINVAL     q is NULL, type < 1, data is NULL with len > 0, unknown flag
 *   -EMSGSIZE   len > max_msg_size (System V says EINVAL here)
 *   -EAGAIN     full and PBX_NOWAIT; or PBX_NOWAIT and the mailbox's lock is held by a process
 *               that is stopped (SIGSTOP, a debugger) or frozen for over a second: nothing was sent
 *   -ENOBUFS    full under PBX_DROP_NEWEST: this message was discarded
 *   -EIDRM      the mailbox was removed (also when removed while this call slept)
 *   -EINTR      a signal handler ran while this call slept (even with SA_RESTART)
 *   -EBADMSG    the mailbox's shared state is damaged
 *   -EBADF      q was opened with PBX_RDONLY: it may only look
 *
 * PBX_SYNC (the synchronous send): after queueing, the call waits until a receiver has taken
 * the message — pbx_recv() returned it, or pbx_ack() acknowledged its claim — and only then
 * returns 0 (or the drop count). If the call stops waiting first — -ETIMEDOUT (pbx_timedsend),
 * -EINTR, -EIDRM — the message stays queued: the error says that no receiver was seen taking
 * it, not that it was withdrawn. -ENOBUFS: discarded by PBX_DROP_OLDEST before anyone took
 * it. PBX_SYNC | PBX_NOWAIT queues the message only if a receiver is already waiting for one
 * (else -EAGAIN and nothing is sent), then waits for the take as PBX_SYNC does. At most 64
 * PBX_SYNC senders may wait on one mailbox at once (-EUSERS beyond). A sync sender killed while
 * it waits leaves its message queued and nothing else. Spools: the same (no 64 limit; see
 * docs/signals.md).
 * Blocks only under PBX_BLOCK without PBX_NOWAIT, or with PBX_SYNC. Thread-safe. A cancellation
 * point while it blocks, and only then (Cancellation, at the top).
 */
PBX_API int pbx_send(pbx_t *q, long type, const void *data, size_t len, int flags);

/*
 * pbx_timedsend — pbx_send() that gives up after *timeout (relative, measured on
 * CLOCK_MONOTONIC) with -ETIMEDOUT. timeout NULL waits forever; a timeout with a negative
 * field or tv_nsec >= 1e9 gives -EINVAL. The deadline holds whatever other processes do: a
 * lock holder that is stopped or slow makes the call return -ETIMEDOUT at the deadline, with
 * nothing sent.
 */
PBX_API int pbx_timedsend(pbx_t *q, long type, const void *data, size_t len, int flags,
                          const struct timespec *timeout);

/*
 * pbx_recv — take a message and copy its payload into buf (cap bytes).
 *
 * Which message, by type (the rules of msgrcv(2)):
 *   type == 0   the oldest message in the mailbox;
 *   type > 0    the oldest message of exactly that type; with PBX_EXCEPT, the oldest message
 *               of any other type;
 *   type < 0    the oldest message of the lowest type that is <= -type.
 * flags: any of PBX_NOWAIT, PBX_EXCEPT (type > 0 only), PBX_NOERROR, PBX_PEEK.
 * If the selected message is longer than cap it stays queued and the call returns -E2BIG,
 * unless PBX_NOERROR is given: then the first cap bytes are copied and the rest is lost.
 * PBX_PEEK copies the message without removing it. If type_out is not NULL it receives the
 * message's type. buf may be NULL only when cap is 0.
 * Returns the number of bytes copied into buf (the payload length, or cap when truncated), or:
 *   -EINVAL   q NULL, buf NULL with cap > 0, PBX_EXCEPT with type <= 0, unknown flag
 *   -ENOMSG   nothing matches and PBX_NOWAIT
 *   -EAGAIN   PBX_NOWAIT, and the mailbox's lock is held by a process that is stopped (SIGSTOP,
 *             a debugger) or frozen for over a second: nothing was received; try again
 *   -E2BIG    the message is longer than cap (without PBX_NOERROR); it stays queued
 *   -EIDRM    the mailbox was removed
 *   -EINTR    a signal handler ran while this call slept (even with SA_RESTART)
 *   -EBADMSG  the mailbox's shared state is damaged
 *   -EBADF    q was opened with PBX_RDONLY: it may only look
 * Blocks until a message matches, unless PBX_NOWAIT. Thread-safe. A cancellation point while
 * it blocks, and only then (Cancellation, at the top).
 */
PBX_API ssize_t pbx_recv(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out);

/*
 * pbx_timedrecv — pbx_recv() that gives up after *timeout (relative, CLOCK_MONOTONIC) with
 * -ETIMEDOUT. timeout NULL waits forever; an invalid timeout gives -EINVAL. As for
 * pbx_timedsend(), the deadline holds whatever other processes do.
 */
PBX_API ssize_t pbx_timedrecv(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out,
                              const struct timespec *timeout);

/*
 * Batches: many messages per call (docs/api.md, "Batches").
 *
 * One entry of a batch, in the manner of struct iovec: pbx_sendv() only reads data, pbx_recvv()
 * fills it. The call sets result in the entries it processed (see each call), and in the entry
 * it stopped at.
 */
struct pbx_msgv {
    long type;      /* sendv: the message's type (>= 1). recvv: set to the type taken */
    void *data;     /* sendv: the payload (only read). recvv: where the payload is copied */
    size_t len;     /* sendv: the payload's length. recvv: the room at data (not changed) */
    ssize_t result; /* set by the call: what pbx_send() would have returned for this message,
                       or the bytes pbx_recv() would have copied; an error in the entry the
                       call stopped at */
};

/*
 * pbx_sendv — queue n messages, msgs[0] first, each as pbx_send() would, but taking the send
 * lock once for as many as there is room for (a message too large for a slot's inline bytes
 * ends such a run, and is copied outside the lock as pbx_send() copies it). Each message is
 * committed on its own: a process killed in the middle of a batch leaves exactly the messages
 * whose commit happened, in order, and no part of any other (docs/reliability.md).
 *
 * flags: 0 or PBX_NOWAIT. PBX_SYNC is refused (-EINVAL): wait for each take with pbx_send().
 * Every entry is checked before anything is sent: a type < 1, data NULL with len > 0, or a len
 * above max_msg_size makes the call return -EINVAL or -EMSGSIZE with nothing sent, and that
 * error in the bad entry's result. Then the messages go in order, each entry's result set to
 * what pbx_send() would have returned for it: 0 (queued), a drop count (> 0, PBX_DROP_OLDEST:
 * older messages discarded to make room), or -ENOBUFS (PBX_DROP_NEWEST: this one discarded;
 * the batch goes on, as later messages may fit once a receiver has made room).
 * Under PBX_BLOCK the call waits for room as pbx_send() does, until every message is in.
 * Returns n when every entry was processed; otherwise the number k of entries processed
 * (0 < k < n), with the reason in msgs[k].result (-EAGAIN: full under PBX_NOWAIT, -ETIMEDOUT,
 * -EINTR, -EIDRM, -EBADMSG; entries after k untouched; discards made for msgs[k], which still
 * did not fit, are added to msgs[k - 1].result); when not even the first could be,
 * that error (as pbx_send(): -EINVAL, -EMSGSIZE, -EAGAIN, -EIDRM, -EINTR, -EBADMSG).
 * n == 0 returns 0. Thread-safe. Blocks only under PBX_BLOCK without PBX_NOWAIT. A cancellation
 * point only while it waits before its first message is in (then nothing was sent); once one
 * is in, cancellation is held off to the end, so that the return value reaches the caller.
 * Spools: the same contract, one pbx_send() per message (no shared lock round).
 */
PBX_API ssize_t pbx_sendv(pbx_t *q, struct pbx_msgv *msgs, size_t n, int flags);

/*
 * pbx_timedsendv — pbx_sendv() that stops waiting after *timeout (relative, CLOCK_MONOTONIC):
 * the messages queued by then stay queued and are counted in the return value; -ETIMEDOUT if
 * none was. timeout NULL waits forever; an invalid timeout gives -EINVAL.
 */
PBX_API ssize_t pbx_timedsendv(pbx_t *q, struct pbx_msgv *msgs, size_t n, int flags,
                               const struct timespec *timeout);

/*
 * pbx_recvv — take up to n messages, each selected by type and flags exactly as one
 * pbx_recv() would select it at that moment (so type > 0 gives the oldest messages of that type
 * in order, type < 0 the lowest types first), under one take of the receive lock. msgs[i].data
 * receives the i-th payload (msgs[i].len bytes of room; data NULL only with len 0), msgs[i].type
 * its type and msgs[i].result the bytes copied.
 * flags: any of PBX_NOWAIT, PBX_EXCEPT (type > 0 only), PBX_NOERROR; PBX_PEEK is -EINVAL.
 * Waits (unless PBX_NOWAIT) until one message matches, as pbx_recv() does, then takes what
 * matches without waiting for more. Returns the number k of messages taken (1 <= k <= n); when
 * k < n, msgs[k].result says why it stopped: -ENOMSG (nothing more matches), -E2BIG (the next
 * match is longer than msgs[k].len, without PBX_NOERROR: it stays queued), -EBADMSG. When
 * nothing was taken, the error of pbx_recv() (-EINVAL, -ENOMSG under PBX_NOWAIT, -EAGAIN,
 * -E2BIG, -EIDRM, -EINTR, -EBADMSG). Each message is freed on its own: a receiver killed in the
 * middle of a batch has taken exactly the messages whose free committed. n == 0 returns 0.
 * Thread-safe. A cancellation point while it waits, as pbx_recv(). Spools: the same contract,
 * one pbx_recv() per message (the ones after the first with PBX_NOWAIT).
 */
PBX_API ssize_t pbx_recvv(pbx_t *q, long type, struct pbx_msgv *msgs, size_t n, int flags);

/*
 * pbx_timedrecvv — pbx_recvv() that gives up after *timeout (relative, CLOCK_MONOTONIC) with
 * -ETIMEDOUT while nothing matches. timeout NULL waits forever; an invalid timeout gives -EINVAL.
 */
PBX_API ssize_t pbx_timedrecvv(pbx_t *q, long type, struct pbx_msgv *msgs, size_t n, int flags,
                               const struct timespec *timeout);

/*
 * pbx_claim — receive a message without removing it yet: select and copy it as pbx_recv()
 * does (same type, flags and errors; PBX_PEEK is -EINVAL), but instead of being removed the
 * message becomes invisible to every other receiver, held by the calling process under the
 * id stored in *claim (non-zero; claim must not be NULL). Then either
 *   pbx_ack(q, id)      removes it for good (it counts as received then), or
 *   pbx_release(q, id)  puts it back where it was: same type, same place in arrival order.
 * A claim belongs to the process (any of its threads or handles on the same mailbox may
 * settle it) and lasts until it is settled or the process dies; pbx_close() does not end it,
 * so settle claims before closing the last handle. A process that dies holding claims (even by
 * SIGKILL) has its messages put back on their own, each to be received again exactly once (by
 * whoever next looks after dead peers; waiting receivers do within 100 ms). A claimed message
 * counts in pbx_stat() msgs, bytes and claimed, and occupies room. Returns the bytes copied, or the
 * errors of pbx_recv(). Blocks like pbx_recv(). Thread-safe. Spools: the same (the message stays in
 * the spool's claim directory; docs/spool.md).
 * A message's claim id is the same each time it is claimed while it stays in the mailbox (after
 * pbx_release() or its claimer's death), and differs from the id of every other message in the
 * mailbox at the same time; postbox-relay relies on this to recognise a message it journalled
 * before it crashed (docs/relay.md).
 */
PBX_API ssize_t pbx_claim(pbx_t *q, long type, void *buf, size_t cap, int flags, long *type_out,
                          uint64_t *claim);

/*
 * pbx_timedclaim — pbx_claim() that gives up after *timeout (relative, CLOCK_MONOTONIC) with
 * -ETIMEDOUT, nothing claimed. timeout NULL waits forever; an invalid timeout gives -EINVAL.
 * As for pbx_timedrecv(), the deadline holds whatever other processes do.
 */
PBX_API ssize_t pbx_timedclaim(pbx_t *q, long type, void *buf, size_t cap, int flags,
                               long *type_out, uint64_t *claim, const struct timespec *timeout);

/*
 * pbx_ack — acknowledge a claim: the message is removed, and a PBX_SYNC sender waiting for it
 * is released. Returns 0, or:
 *   -EINVAL  q NULL, or claim is not a claim id at all (0, or a slot beyond the mailbox)
 *   -ENOENT  no such claim held by this process: already acked or released, returned after a
 *            crash, or another process's
 *   -EIDRM   the mailbox was removed (the claim went with it)
 *   -EBADF   q was opened with PBX_RDONLY
 * Does not block (beyond the receive lock). Thread-safe.
 */
PBX_API int pbx_ack(pbx_t *q, uint64_t claim);

/*
 * pbx_release — give a claimed message back, in its place (see pbx_claim()); receivers waiting
 * for it are woken. Returns 0, -EINVAL, -ENOENT or -EIDRM as pbx_ack(). Thread-safe.
 */
PBX_API int pbx_release(pbx_t *q, uint64_t claim);

/*
 * Zero-copy loans. Instead of handing a buffer to pbx_send() and having it copied into the
 * mailbox, a sender may borrow room for a message inside the mailbox, write the payload there,
 * and commit it; instead of having a message copied out by pbx_recv(), a receiver may look at
 * it in place and then return it. A loan is described by a struct pbx_loan that the caller
 * owns (on its stack, say) and the library fills; its public fields are read-only to the
 * caller, the rest is the library's. One loan struct describes at most one loan at a time.
 *
 * The payload of a loan lies in the mailbox in pieces (the message's first bytes in its slot,
 * the rest in chunks of the mailbox's chunk size), so it is reached through pbx_loan_piece(),
 * which gives the address of the byte at an offset and how many bytes follow it contiguously:
 *
 *     for (size_t off = 0; off < loan.len;) {
 *         void *p;
 *         ssize_t n = pbx_loan_piece(&loan, off, &p);
 *         if (n <= 0) break;                       // -EBADMSG: damaged mailbox
 *         memcpy(p, src + off, (size_t) n);         // or produce the bytes right there
 *         off += (size_t) n;
 *     }
 *
 * Rules (each is checked and has its error):
 *   - A send loan ends with exactly one pbx_commit() or pbx_cancel(); a receive loan with
 *     exactly one pbx_return(). Ending a loan twice, ending a loan that this handle does not
 *     hold (another handle's, another process's, a copy of the struct after the loan ended)
 *     gives -ENOENT and changes nothing. Committing a receive loan or returning a send loan
 *     gives -EINVAL.
 *   - A loan belongs to the handle it came from and to the calling process: any thread may end
 *     it; a fork()ed child cannot (-ENOENT). pbx_close() ends every loan the handle still holds:
 *     send loans are cancelled, receive loans are put back in their place, unread.
 *   - A process that dies holding loans (even by SIGKILL) loses nothing: its send loans vanish
 *     (their room is given back, nothing is published) and the messages of its receive loans go
 *     back in their place, to be received again, as after an interrupted pbx_recv().
 *   - While a receive loan is held, nobody else reads, takes, drops (PBX_DROP_OLDEST) or writes
 *     its message: it is out of the queue, held by the process as a pbx_claim() is (it counts
 *     in pbx_stat() msgs, bytes and claimed). A send
 *     loan's room is reserved: it counts in pbx_stat() msgs and bytes, and is invisible to
 *     receivers until committed.
 *   - Addresses from pbx_loan_piece() are valid until the loan ends. A receive loan's bytes
 *     must not be written (they are mapped writable, but other processes may be given the same
 *     message again after a crash). A peer that damages the mailbox can make pbx_loan_piece()
 *     fail with -EBADMSG, never return an address outside the mailbox.
 * Spool mailboxes ("spool:PATH") implement loans by copying: a send loan is a buffer of the
 * library's that pbx_commit() sends; a receive loan is a pbx_claim() into such a buffer, and
 * pbx_return() acknowledges it. The rules above hold, except that a spool's receive loan held
 * by a dead process comes back as its claim does (docs/spool.md).
 */
struct pbx_loan {
    pbx_t *q;    /* the mailbox lent from; NULL while no loan is held */
    size_t len;  /* payload bytes */
    long type;   /* receive loans: the message's type (0 for a send loan) */
    uint64_t id; /* opaque, non-zero while held */
    uint64_t priv[4];
};

/*
 * pbx_loan — borrow room for a message of len bytes (0 <= len <= max_msg_size) in the mailbox,
 * to be written in place (pbx_loan_piece()) and then committed or cancelled. flags: 0 or
 * PBX_NOWAIT. When the mailbox is full, the overflow policy applies as for pbx_send():
 * PBX_BLOCK waits for room (PBX_NOWAIT: -EAGAIN), PBX_DROP_OLDEST discards queued messages
 * (never one lent to a receiver), PBX_DROP_NEWEST gives -ENOBUFS. On success *loan describes
 * the loan (its bytes are unspecified) and 0 is returned; on failure loan->q is NULL. Errors:
 * -EINVAL (NULL argument, unknown flag), -EMSGSIZE, -EAGAIN, -ENOBUFS, -EINTR, -EIDRM,
 * -EBADMSG (damaged mailbox), -ENOMEM (spools: no buffer). Blocks like pbx_send(); a
 * cancellation point where it waits. Thread-safe.
 */
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow" /* the function shares its struct's name, as pbx_stat */
#endif
PBX_API int pbx_loan(pbx_t *q, size_t len, int flags, struct pbx_loan *loan);
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/*
 * pbx_commit — publish a send loan as a message of the given type (>= 1), as one store: from
 * then on receivers see it whole, exactly as if pbx_send() had sent those bytes. flags: 0 or
 * PBX_SYNC, which then waits, as a PBX_SYNC send does, until a receiver has taken the message
 * (received it, acknowledged its claim, or returned its receive loan; -ENOBUFS if it was dropped;
 * -EINTR; a cancellation point there). The loan ends (loan->q becomes NULL) whether or not the
 * commit succeeds, except after -EINVAL, -ENOENT, -EOPNOTSUPP and -EUSERS (64 PBX_SYNC senders
 * already wait). Returns 0, -EINVAL (NULL, type < 1, another flag, a receive loan), -ENOENT (not
 * held, see the rules above), -EIDRM (removed: the message is discarded with the mailbox), or
 * with PBX_SYNC the errors of the wait. Does not block beyond the send lock, except with
 * PBX_SYNC. Thread-safe.
 */
PBX_API int pbx_commit(struct pbx_loan *loan, long type, int flags);

/*
 * pbx_cancel — end a send loan without publishing anything: its room is given back. Returns
 * 0, -EINVAL (NULL, a receive loan), -ENOENT (not held) or -EIDRM. Does not block beyond the
 * mailbox's locks. Thread-safe.
 */
PBX_API int pbx_cancel(struct pbx_loan *loan);

/*
 * pbx_recv_loan — select a message as pbx_recv() does (type 0, > 0, < 0; flags 0, PBX_NOWAIT,
 * PBX_EXCEPT; PBX_NOERROR and PBX_PEEK are -EINVAL) and lend it to the caller in place, read-only,
 * until pbx_return(). loan->len and loan->type describe it. Returns the payload length, or the
 * errors of pbx_recv() except -E2BIG; on failure loan->q is NULL. Blocks like pbx_recv(); a
 * cancellation point where it waits. Thread-safe.
 */
PBX_API ssize_t pbx_recv_loan(pbx_t *q, long type, int flags, struct pbx_loan *loan);

/*
 * pbx_return — end a receive loan: the message is removed for good (it counts as received, a
 * PBX_SYNC sender waiting for it is released). Returns 0, -EINVAL (NULL, a send loan), -ENOENT
 * (not held) or -EIDRM. Does not block beyond the receive lock. Thread-safe.
 */
PBX_API int pbx_return(struct pbx_loan *loan);

/*
 * pbx_loan_piece — the payload of a held loan in place: *ptr receives the address of byte off,
 * and the return value is how many bytes from there are contiguous (at least 1 when
 * off < loan->len). Returns 0 when off >= loan->len, -EINVAL (NULL argument, no loan held) or
 * -EBADMSG (the mailbox's chain of chunks was damaged by a peer; nothing is read outside the
 * mailbox). Walking the pieces in order costs O(1) each. Does not block, takes no lock;
 * thread-safe for different loans (one loan struct is not to be walked by two threads at once).
 */
PBX_API ssize_t pbx_loan_piece(struct pbx_loan *loan, size_t off, void **ptr);

/*
 * pbx_notify — ask for a signal when a message arrives in the empty mailbox.
 * From now on, whenever a send (or a released claim) makes the mailbox go from holding no
 * visible message to holding one, the calling process gets signo as by
 * sigqueue(getpid(), signo, value): value in si_value.sival_int, si_code SI_QUEUE, and si_pid
 * and si_uid the calling process's own (the signal is raised inside the registrant, by a
 * helper thread of the handle that runs with every signal blocked, started by the first
 * pbx_notify() or pbx_fd() of the handle in this process and joined by pbx_close(); it
 * follows the sender within one wake-up of that thread). "Visible" means a receive could take
 * it: claimed messages and messages being copied out do not count. Any number of processes
 * (and handles) may be registered at once, unlike mq_notify(3), and a registration stays until
 * it is removed (signo == 0), the handle is closed, or the process dies. No process ever
 * signals another for this: nothing written into the mailbox, by anyone, can make a
 * participant signal a process that did not register, nor with a signal it did not choose (at
 * worst, a registrant gets its own signal spuriously; docs/signals.md, "Who can signal whom").
 * A fork()ed child does not inherit the registration; it may register for itself. Registering
 * while messages are queued sends nothing until the mailbox has been empty again. signo may
 * be any signal but SIGKILL and SIGSTOP; with a standard signal several arrivals may merge into
 * one delivery, a real-time signal (SIGRTMIN + n) queues one per arrival (at most 65 536 per
 * wake-up of the helper). The handler runs in whichever thread does not block the signal; it
 * should only note the arrival (see docs/signals.md).
 * Returns 0, or -EINVAL (bad signo, q NULL), -EIDRM, -EUSERS (the mailbox's table of 128
 * participants is full), -EAGAIN (no thread), -ENOMEM, -EMFILE, -EBADF (a PBX_RDONLY handle).
 * Thread-safe.
 */
PBX_API int pbx_notify(pbx_t *q, int signo, int value);

/*
 * pbx_fd — a descriptor that poll(2), select(2) and epoll(7) report readable (POLLIN) while the
 * mailbox holds a visible message (see pbx_notify()) or has been removed: level-triggered, and
 * it becomes unreadable again once the mailbox is drained, by anyone, within the time a helper
 * thread takes to wake up. Never read from or write to it; call pbx_recv() with PBX_NOWAIT when
 * it is readable (another receiver may have been faster: -ENOMSG is normal). The descriptor
 * belongs to the handle: the first call creates it (and one helper thread that runs with every
 * signal blocked, shared with pbx_notify()), later calls return the same one, pbx_close()
 * closes it. After fork(), the child's first call gives it a descriptor of its own. While
 * nobody watches, senders and receivers pay nothing for this. Returns the descriptor (>= 0), or
 * -EINVAL, -EIDRM, -EUSERS, -EMFILE, -ENOMEM, -EAGAIN (no thread), -EBADF (a PBX_RDONLY
 * handle). Thread-safe.
 */
PBX_API int pbx_fd(pbx_t *q);

/*
 * pbx_peers — the live participants of the mailbox: every process with a handle open on it,
 * with its roles and since when. Up to cap of them are stored in out (out may be NULL when cap
 * is 0); the return value is how many there are, which may be more than cap. Entries of dead
 * processes are pruned on the way; a process is judged by its PID and its start time, so a
 * recycled PID is not taken for a live participant. At most 128 handles are listed per
 * mailbox (spools too). Returns the count, or -EINVAL, -EIDRM (removed; the list is still
 * filled). Thread-safe.
 */
PBX_API ssize_t pbx_peers(pbx_t *q, struct pbx_peer *out, size_t cap);

/*
 * pbx_stat — fill *st with the mailbox's limits, contents and counters.
 * Takes no lock and, on a PBX_RDONLY handle, writes nothing (a read-write handle may finish a
 * removal that a killed remover left half done). Returns 0, -EINVAL (NULL argument), -EIDRM
 * (removed; *st is still filled), or -EBADMSG (the mailbox's file was cut shorter than its
 * layout since it was opened; *st holds the limits only). Does not block. Thread-safe.
 */
#if defined(__cplusplus) && defined(__GNUC__)
/* Like stat(2) and struct stat, the function shares its name with its struct; C++ -Wshadow
 * would call that hiding a constructor. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif
PBX_API int pbx_stat(pbx_t *q, struct pbx_stat *st);
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* POSTBOX_H */
