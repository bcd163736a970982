/*
 * os.h — the only door from postbox to Linux.
 *
 * Every system call the library makes goes through this layer, for two reasons. First, the
 * rest of the code speaks one error convention (return -errno, never rely on errno). Second,
 * the calls that can fail in interesting ways (creating, sizing and mapping files) go through
 * a replaceable table, as SQLite's os_unix.c does, so that tests can make them fail on demand
 * and check that every failure path releases what it took.
 *
 * Process identity lives beside it, in ident.h (included here): one parser of /proc/<id>/stat
 * and the two liveness rules, for threads and for processes.
 */
#ifndef PBX_OS_H
#define PBX_OS_H

#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "ident.h"

/* The replaceable table. Each entry returns what its namesake returns on success and -errno
 * on failure (never -1 with errno). Tests swap entries through pbx__os_table(). */
struct pbx_os_calls {
    int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    int (*fstat)(int fd, struct stat *st);
    int (*fchmod)(int fd, mode_t mode);
    int (*ftruncate)(int fd, off_t len);
    int (*fallocate)(int fd, off_t len);
    int (*memfd_create)(const char *name, unsigned int flags);
    int (*linkat)(int fd, int dirfd, const char *name); /* give an O_TMPFILE file a name */
    int (*unlinkat)(int dirfd, const char *name);
    int (*mmap)(int fd, size_t len, int how, void **out); /* how: PBX_MAP_* below */
    int (*munmap)(void *addr, size_t len);
};

/* How os->mmap maps (bits): populate the page tables now; map for reading only (PROT_READ, for
 * a PBX_RDONLY handle, whose file is open O_RDONLY). Without PBX_MAP_RDONLY: read and write. */
#define PBX_MAP_POPULATE 1
#define PBX_MAP_RDONLY   2

/* The table in use. Tests may change entries; the library reads it on every call. */
struct pbx_os_calls *pbx__os_table(void);
/* Put every entry back to the real system call. */
void pbx__os_table_reset(void);

/* Wait while *addr == expected, at most until deadline_ns on CLOCK_MONOTONIC (0: no
 * deadline). The word may be shared between processes. Returns 0 (woken, or the value had
 * already changed), -ETIMEDOUT, or -EINTR (a signal handler ran). */
int pbx__os_futex_wait(uint32_t *addr, uint32_t expected, uint64_t deadline_ns);

/*
 * SIGNALS. A blocked pbx_send/pbx_recv must fail with -EINTR when a signal handler runs, as
 * msgrcv(2) does. The kernel reports that only for a handler that runs while the thread is
 * inside the futex wait; a handler that ran while the waiting loop was in user space (between
 * two sleeps) would go unnoticed. The first sleep of a call goes straight into the futex wait:
 * a handler that runs before it (during the spin, or in the instant between the last check
 * and the system call) is no different from one that ran just before the call was made, as
 * with msgrcv(2) itself, and the sleep costs no extra system call. Once a sleep has returned
 * without ending the call, the loop blocks every signal in its thread (pbx__os_sig_block),
 * keeps them blocked while it re-checks, and lets them through only for the futex wait itself
 * (pbx__os_futex_wait_unblocked). Before each such sleep it asks whether a signal with a
 * handler arrived meanwhile (pbx__os_sig_caught_pending) and if so fails with -EINTR;
 * restoring the mask then runs the handler. What remains are the instants at which the futex
 * wait returns for another reason (its time slice ended, or a wake-up meant for another
 * sleeper came): a handler that runs on that return path leaves no trace the call could see,
 * and the call goes on waiting. Only a wait primitive that restores the mask inside the kernel
 * (as ppoll does) could close that, and futexes have none. Signals that are ignored, or whose
 * default action is to ignore, stop or continue, do not interrupt (as with msgrcv). The fast
 * path never touches the mask.
 */
struct pbx_sigguard {
    sigset_t old;
    int blocked; /* the mask is blocked now; old holds the caller's */
    int slept;   /* a futex wait has returned in this call */
};
/* A guard for a call that has not slept yet. Only the flags are set: old is written by
 * pbx__os_sig_block before anything reads it, and zeroing its 128 bytes on every call
 * showed in profiles of the fast path. */
static inline void pbx__os_sig_guard_init(struct pbx_sigguard *g)
{
    g->blocked = 0;
    g->slept = 0;
}
/* Once the call has slept: block all signals in this thread, saving the mask in g (once;
 * later calls do nothing). Before the first sleep it does nothing. */
void pbx__os_sig_block(struct pbx_sigguard *g);
/* Put back the mask saved by pbx__os_sig_block (pending signals are delivered now). Inline:
 * every call ends with it, and almost always nothing was blocked. */
void pbx__os_sig_restore_blocked(struct pbx_sigguard *g);
static inline void pbx__os_sig_restore(struct pbx_sigguard *g)
{
    if (__builtin_expect(g->blocked, 0))
        pbx__os_sig_restore_blocked(g);
}
/* Is a signal that the saved mask lets through, and that has a handler, pending? */
int pbx__os_sig_caught_pending(const struct pbx_sigguard *g);
/* pbx__os_futex_wait with the saved mask put back for the wait, and left in force after it
 * (g no longer counts as blocked): call pbx__os_sig_block again before looking again. */
int pbx__os_futex_wait_unblocked(uint32_t *addr, uint32_t expected, uint64_t deadline_ns,
                                 struct pbx_sigguard *g);
/* Wake up to n waiters on addr. Returns the number woken or -errno. */
int pbx__os_futex_wake(uint32_t *addr, int n);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t pbx__os_mono_ns(void);
/* CLOCK_MONOTONIC at the coarse (tick) resolution: never ahead of pbx__os_mono_ns(), behind by
 * at most a tick, and cheaper to read. For time slices, never for deadlines. */
uint64_t pbx__os_mono_coarse_ns(void);
/* CLOCK_REALTIME in nanoseconds since the Epoch, at the coarse (tick) resolution that the
 * vDSO serves without a system call. */
int64_t pbx__os_real_coarse_ns(void);
/* CLOCK_REALTIME to the second, in nanoseconds since the Epoch: the "last sent / received"
 * stamps that every message writes. time() is one load from the vDSO's data page (0.7 ns
 * here); the tick-resolution clock above costs 4.5 ns, which was ~5% of each side of a
 * 16-byte stream. System V's msg_stime and msg_rtime are to the second as well. */
static inline int64_t pbx__os_real_stamp_ns(void)
{
    return (int64_t) time(NULL) * 1000000000;
}

/* Does the process of thread tid map the file (dev, ino)? 1 yes, 0 no, -errno when that cannot
 * be told (typically -EACCES for another user's process). */
int pbx__os_maps_file(int32_t tid, dev_t dev, ino_t ino);

/* A non-blocking, close-on-exec eventfd; the descriptor or -errno. */
int pbx__os_eventfd(void);
/* Make the eventfd readable (counter 1) or not (counter 0); the caller knows which it is. */
void pbx__os_eventfd_level(int fd, int readable);

/* Start a helper thread with every signal blocked (signals belong to the application's
 * threads). 0 or -errno. */
#include <pthread.h>
int pbx__os_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* Queue signo with value (si_value.sival_int, si_code SI_QUEUE) to the calling process itself,
 * as sigqueue(getpid(), ...): the one way postbox raises a notification (docs/signals.md, "Who
 * can signal whom"). 0, -EAGAIN (the process's queue of real-time signals is full), ... */
int pbx__os_signal_self(int signo, int value);

/* 64 random bits from the kernel (getrandom), or a time-based value if that fails. */
uint64_t pbx__os_random64(void);

/* How many CPUs are online, at least 1 (read once per process). */
int pbx__os_online_cpus(void);

/* The CPU this thread runs on now, plus one; 0 if unknown. Every message records it, so on
 * x86-64 it is read inline from the rseq area that glibc registers for each thread (the kernel
 * keeps cpu_id there up to date); elsewhere, or without rseq, sched_getcpu() serves it from
 * the vDSO. Never a system call. */
uint32_t pbx__os_cpu_tag_slow(void);
#if defined(__x86_64__) && defined(__has_include)
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define PBX_RSEQ_CPU 1
#endif
#endif
static inline uint32_t pbx__os_cpu_tag(void)
{
#ifdef PBX_RSEQ_CPU
    if (__builtin_expect(__rseq_size != 0, 1)) {
        const char *tp; /* the thread pointer: glibc's thread control block points to itself */
        __asm__("mov %%fs:0, %0" : "=r"(tp));
        const struct rseq *rs = (const struct rseq *) (tp + __rseq_offset);
        int32_t cpu = (int32_t) __atomic_load_n(&rs->cpu_id, __ATOMIC_RELAXED);
        if (cpu >= 0)
            return (uint32_t) cpu + 1;
    }
#endif
    return pbx__os_cpu_tag_slow();
}

/*
 * ASYMMETRIC FENCES. The owner of a biased lock (BIAS in lock.h) marks itself busy with a store,
 * then loads the bias; a revoker clears the bias, then loads the busy mark. That is the
 * store-buffer (Dekker) pattern: each side needs a full fence between its store and its load,
 * or both can read the other's old value and both enter the critical section. The owner takes
 * the lock on every send or receive and may issue no fence; a revocation is rare. So the
 * revoker issues the heavy fence (pbx__os_heavy_fence): the membarrier(2) system call with
 * MEMBARRIER_CMD_GLOBAL_EXPEDITED, which returns only once every running thread of every
 * registered process has passed a full memory barrier (a thread not running passed one when it
 * was switched out). Whichever side's barrier comes first, the other side sees its store.
 *
 * This needs each process registered (MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, done by
 * pbx__os_asym_setup at the first open and again in a fork()ed child). A process that is not
 * (a kernel before 4.16, a seccomp filter, or POSTBOX_NO_MEMBARRIER=1 in its environment)
 * never takes a bias, and stops every mailbox it opens from granting one (lock.c).
 */
extern int pbx__os_asym_light_ok; /* 1 once this process is registered */
/* Register this process once (cheap after the first call). Returns pbx__os_asym_light_ok. */
int pbx__os_asym_setup(void);
/* The revoker's side: 0 when every registered process has passed a full fence, -1 when the
 * system call is unavailable here. */
int pbx__os_heavy_fence(void);
/* Go without heavy fences from now on, as if the kernel had none (POSTBOX_NO_MEMBARRIER does
 * this at the first open). */
void pbx__os_asym_off(void);

/* One spin-wait hint to the CPU (pause on x86, yield on ARM). */
static inline void pbx__os_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

#endif
