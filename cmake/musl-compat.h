/*
 * musl-compat.h — what glibc offers and musl 1.2.3 (Debian 12's musl-tools) lacks, for the musl
 * build only: cmake/musl-gcc.cmake puts it in front of every file with -include. It includes
 * no header (a file's own _GNU_SOURCE must come before its first system header), so it declares
 * what it uses itself.
 *
 * renameat2 (src/shm/shm.c, where a directory has no O_TMPFILE) came to musl in 1.2.5; the
 * system call has been in Linux since 3.15. sigabbrev_np (tools/info.c: a signal's name) is
 * glibc's alone; the Linux numbering of the standard signals is the same in both libraries.
 */
#ifndef PBX_MUSL_COMPAT_H
#define PBX_MUSL_COMPAT_H

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0) /* as <linux/fs.h> defines it */
#endif

#if defined(__x86_64__)
#define PBX_MUSL_NR_RENAMEAT2 316
#elif defined(__aarch64__)
#define PBX_MUSL_NR_RENAMEAT2 276
#else
#error "musl-compat.h: renameat2's system call number is unknown on this CPU"
#endif

long syscall(long number, ...); /* as musl's <unistd.h> declares it */

static inline int pbx_musl_renameat2(int olddirfd, const char *oldname, int newdirfd,
                                     const char *newname, unsigned int flags)
{
    return (int) syscall(PBX_MUSL_NR_RENAMEAT2, olddirfd, oldname, newdirfd, newname, flags);
}
#define renameat2 pbx_musl_renameat2

static inline const char *pbx_musl_sigabbrev_np(int sig)
{
    static const char *const names[] = {
        0,      "HUP",  "INT",  "QUIT", "ILL",    "TRAP",   "ABRT",  "BUS",  "FPE",  "KILL", "USR1",
        "SEGV", "USR2", "PIPE", "ALRM", "TERM",   "STKFLT", "CHLD",  "CONT", "STOP", "TSTP", "TTIN",
        "TTOU", "URG",  "XCPU", "XFSZ", "VTALRM", "PROF",   "WINCH", "IO",   "PWR",  "SYS"};
    return sig > 0 && sig < (int) (sizeof(names) / sizeof(names[0])) ? names[sig] : 0;
}
#define sigabbrev_np pbx_musl_sigabbrev_np

#endif
