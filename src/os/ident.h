/*
 * ident.h — who a participant is, and whether it still lives: the one process-identity module.
 *
 * The lecture warns that PIDs are only relatively unique: a PID is recycled once its process is
 * reaped. postbox therefore names a thread by its thread id *and* the low 32 bits of its start
 * time (clock ticks since boot, field 22 of /proc/<tid>/stat), packed in one 64-bit word: the id
 * in the low 30 bits, the start time in the high 32. Two threads that share both were started in
 * the same clock tick with the same recycled id, which does not happen. A process is named the
 * same way by its main thread: its PID and the start time of its thread-group leader.
 *
 * Both kinds share a format but not a liveness rule, and every caller says which one it means:
 *
 *   THREAD RULE   (pbx__ident_thread_alive) the thread runs: its id exists with that start time
 *                 and it is not a zombie. Lock holders, sleepers and PBX_SYNC senders are
 *                 threads: each stops holding what it holds when it exits.
 *   PROCESS RULE  (pbx__ident_process_alive) the process runs: its PID exists with that start
 *                 time and *some* thread of it is not a zombie. A process whose main() called
 *                 pthread_exit() while other threads run has a zombie leader and is alive.
 *                 Claims, temporary files, peer entries and notify registrations belong to
 *                 processes.
 *
 * Both rules read /proc through one parser of /proc/<id>/stat (ident.c). Both judge ids in the
 * caller's PID namespace, so a mailbox may only be shared by processes of one PID namespace:
 * the creator records its namespace (pbx__ident_pidns) and a process of another is refused
 * (pbx__ident_pidns_admits: -EXDEV). See "Identity and PID namespaces" in docs/reliability.md.
 */
#ifndef PBX_OS_IDENT_H
#define PBX_OS_IDENT_H

#include <stdint.h>

/* Identity of the calling thread, computed once per thread and refreshed in a fork()ed child.
 * ident is never 0. pid is the process id, cached so the fast path makes no system call. */
struct pbx_self {
    uint64_t ident;
    int32_t pid;
    int32_t tid;
};
/* Inline, since the fast path asks several times per message: one load at a fixed offset from
 * the thread pointer (initial-exec), the work only on a thread's first call. */
extern __thread struct pbx_self pbx__tls_self __attribute__((tls_model("initial-exec")));
const struct pbx_self *pbx__os_self_slow(void);
static inline const struct pbx_self *pbx__os_self(void)
{
    if (__builtin_expect(pbx__tls_self.ident != 0, 1))
        return &pbx__tls_self;
    return pbx__os_self_slow();
}

/* The thread (or process) id in an identity. */
#define PBX_IDENT_TID(ident) ((int32_t) ((ident) &0x3fffffffu))

/* Identity of the calling process: its PID and its leader's start time. Cached; recomputed in
 * a fork()ed child. Judge it with pbx__ident_process_alive(). Thread-safe. */
uint64_t pbx__ident_process(void);

/* THREAD RULE: is the thread named by ident running? 1 yes, 0 no (it exited, is a zombie, or
 * its id now belongs to a thread with another start time). Without /proc only the existence
 * of the id can be tested. */
int pbx__ident_thread_alive(uint64_t ident);

/* PROCESS RULE: is the process named by ident running? 1 yes, 0 no (every thread of it has
 * exited, or its PID now belongs to another process). A zombie leader with a live thread is
 * alive. Without /proc only the existence of the PID can be tested. */
int pbx__ident_process_alive(uint64_t ident);

/* Is the thread in a stopped or traced state (SIGSTOP, a debugger)? 1 yes, 0 no or unknown. */
int pbx__ident_thread_stopped(uint64_t ident);

/* The PID namespace of the calling process, as the device and inode of /proc/self/ns/pid
 * (namespaces(7)): 0, -ENOENT when /proc is not mounted or has no ns/ (nothing can be
 * told), or -EXDEV when /proc shows another PID namespace than the caller's (it was mounted
 * for another namespace: no identity can be judged through it). */
int pbx__ident_pidns(uint64_t *dev, uint64_t *ino);

/* May the calling process take part in a mailbox whose creator recorded the PID namespace
 * (dev, ino)? 0 yes (the same namespace, or none recorded: 0, 0), -EXDEV no (another
 * namespace, or the caller's cannot be told). */
int pbx__ident_pidns_admits(uint64_t dev, uint64_t ino);

/* The same for a record (*dev, *ino) in shared state that lasts longer than its users (a
 * spool's state page), called under the lock that guards it: with anew (a new boot: every
 * earlier user is dead), or when nothing is recorded, the caller's namespace is recorded and
 * admitted; otherwise pbx__ident_pidns_admits() decides. 0 or -EXDEV. */
int pbx__ident_pidns_bind(uint64_t *dev, uint64_t *ino, int anew);

#endif
