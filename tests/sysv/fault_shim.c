/*
 * fault_shim.c — fault injection for the System V drop-in's robustness tests (fault.c).
 *
 * Preloaded after libpostbox-sysv.so, it wraps two libc calls the library makes and acts only
 * when the test program asks through the environment, so every other call passes straight
 * through:
 *   PBX_FAULT_KILL_AFTER_LINK=1  SIGKILL the process right after a linkat() that names a
 *                                System V mailbox file: msgget dies after creating the mailbox
 *                                and before publishing the queue, with the registry locked.
 *   PBX_FAULT_SLOW_OPEN=ms       sleep that long before an openat() of an existing System V
 *                                mailbox: a stand-in for being preempted between the registry
 *                                lookup and the open.
 * It also counts the opens of existing System V mailboxes in pbx_fault_opens, which a test
 * finds with dlsym(): how often the library opened a mailbox instead of using its cached
 * handle.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
    static int (*real)(int, const char *, int, const char *, int);
    if (!real)
        real = (int (*)(int, const char *, int, const char *, int)) dlsym(RTLD_NEXT, "linkat");
    int r = real(olddirfd, oldpath, newdirfd, newpath, flags);
    if (r == 0 && getenv("PBX_FAULT_KILL_AFTER_LINK") && strstr(newpath, "sysv."))
        raise(SIGKILL);
    return r;
}

int pbx_fault_opens;

int openat(int dirfd, const char *path, int flags, ...)
{
    static int (*real)(int, const char *, int, ...);
    if (!real)
        real = (int (*)(int, const char *, int, ...)) dlsym(RTLD_NEXT, "openat");
    mode_t mode = 0;
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) { /* O_TMPFILE has two bits */
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (strstr(path, "pbx.sysv.") && !(flags & O_CREAT))
        __atomic_add_fetch(&pbx_fault_opens, 1, __ATOMIC_RELAXED);
    const char *slow = getenv("PBX_FAULT_SLOW_OPEN");
    if (slow && strstr(path, "pbx.sysv.") && !(flags & O_CREAT))
        usleep((useconds_t) atoi(slow) * 1000);
    return real(dirfd, path, flags, mode);
}
