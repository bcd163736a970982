/*
 * cancel.h — pthread_cancel() and postbox: a call is cancelled only where it waits.
 *
 * CANCELLATION. A thread blocked in a postbox call can be cancelled, as one blocked in
 * msgrcv(2) can; a cancel never acts in the middle of a step that changes a mailbox. Two means
 * serve that rule:
 *   - deferred across a window: pbx__cancel_off() disables cancellation (keeping the caller's
 *     state for later), so that the system calls inside (open, read, rename, fsync, nanosleep,
 *     reading /proc ...) do not act on a pending cancel while a file is half renamed, a lock
 *     held or a message taken but not yet handed back. pbx__cancel_restore() puts the caller's
 *     state back; a cancel that came meanwhile then acts at the caller's next cancellation
 *     point, after the call returned;
 *   - enabled where the call waits: inside such a window, pbx__cancel_wait_begin() puts back
 *     the state the caller had (recorded by the innermost pbx__cancel_off()), and for a wait
 * through a system call that the C library does not make a cancellation point (a futex wait through
 * syscall(2)) switches to asynchronous cancellation for that one call, as the C library itself does
 * around its own blocking calls. The waiter has pushed a cleanup handler (pthread_cleanup_push)
 * that undoes whatever it registered (a sleeper count, a PBX_SYNC entry, a temporary file) before
 * the wait. The API layer (mailbox.c) disables cancellation across every call but the shared-memory
 * send and receive, whose fast path has no cancellation point and must not pay the two atomic
 * operations a change of state costs; their slow paths disable it where they reach one.
 */
#ifndef PBX_OS_CANCEL_H
#define PBX_OS_CANCEL_H

#include <pthread.h>

/* The cancellation state of the thread's caller, recorded by the outermost pbx__cancel_off
 * still in force (windows nest: a PBX_SYNC send waits for room inside its own window), or -1
 * when none is. A postbox call made by a signal handler that interrupted another one counts
 * as part of it: it may be cancelled where it waits if the interrupted call's caller allowed
 * cancellation. */
extern __thread int pbx__cancel_caller;

struct pbx_cancel {
    int state; /* the state before pbx__cancel_off */
    int outer; /* pbx__cancel_caller before it */
};

static inline void pbx__cancel_off(struct pbx_cancel *c)
{
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &c->state);
    c->outer = pbx__cancel_caller;
    if (c->outer < 0)
        pbx__cancel_caller = c->state;
}

static inline void pbx__cancel_restore(const struct pbx_cancel *c)
{
    pbx__cancel_caller = c->outer;
    pthread_setcancelstate(c->state, NULL);
}

/* Inside a pbx__cancel_off window: from here on, the waits of this call keep cancellation
 * disabled, whatever its caller allowed. For a call that has done something it must report
 * (a batch with messages already sent: pbx_sendv()); pbx__cancel_restore() undoes it. */
static inline void pbx__cancel_hold(void)
{
    pbx__cancel_caller = PTHREAD_CANCEL_DISABLE;
}
struct pbx_cancel_wait {
    int state; /* the state to go back to after the wait, or -1: unchanged */
    int type;  /* the type to go back to, or -1: unchanged */
};

/* Before a wait, inside a pbx__cancel_off window (see CANCELLATION above): async != 0 for a system
 * call that is not a cancellation point by itself. Nothing but that system call may run before
 * pbx__cancel_wait_end: with asynchronous cancellation, a cancel acts at any instruction. */
static inline void pbx__cancel_wait_begin(struct pbx_cancel_wait *w, int async)
{
    w->state = -1;
    w->type = -1;
    if (pbx__cancel_caller >= 0)
        pthread_setcancelstate(pbx__cancel_caller, &w->state);
    if (async)
        pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &w->type);
}

static inline void pbx__cancel_wait_end(const struct pbx_cancel_wait *w)
{
    if (w->type >= 0)
        pthread_setcanceltype(w->type, NULL);
    if (w->state >= 0)
        pthread_setcancelstate(w->state, NULL);
}

/*
 * Every cleanup handler starts with pbx__cancel_landed(). The C library reaches a cleanup
 * handler with a longjmp that AddressSanitizer does not see, so the frames it jumped over keep
 * their poisoned red zones below the stack pointer; the sanitizer (gcc 12's) then reports its
 * own sigaltstack call, made in those bytes on the way out, as an overflow. Under the
 * sanitizer this clears that stale poison; otherwise it is nothing.
 */
#if defined(__SANITIZE_ADDRESS__)
#define PBX_CANCEL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PBX_CANCEL_ASAN 1
#endif
#endif
#ifdef PBX_CANCEL_ASAN
#include <sanitizer/asan_interface.h>
static inline void pbx__cancel_landed(void)
{
    char *frame = __builtin_frame_address(0);
    __asan_unpoison_memory_region(frame - 65536, 65536);
}
#else
static inline void pbx__cancel_landed(void)
{
}
#endif

#endif
