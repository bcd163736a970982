/*
 * critical.c — blocking a signal with sigprocmask around a critical section.
 *
 * A signal handler runs between any two instructions of the code it interrupts. If the handler
 * and the main flow share data — here a ledger of two numbers that must always agree — the main
 * flow has to keep the handler out while it changes them: it blocks the signal with
 * sigprocmask(SIG_BLOCK), and a signal that arrives meanwhile stays pending until
 * sigprocmask(SIG_SETMASK) lets it in. Nothing is lost; it is only deferred.
 *
 * The signal here comes from postbox: the process registers with pbx_notify() for SIGRTMIN, and
 * a child sends a message while the parent is inside its critical section. The handler counts
 * arrivals in the ledger. Part two shows the other way to take a signal: keep it blocked for
 * good and wait for it with sigwaitinfo(), which returns its siginfo (the value given to
 * pbx_notify; the PID is this process's own, since postbox raises the signal inside the
 * registrant, from a helper thread, and never lets one process signal another) in the main
 * flow — no handler, no shared data, no race.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"

/* The ledger: arrivals counted twice, in two places that must agree. */
static volatile sig_atomic_t arrivals, arrivals_copy, disagreed;

static void on_mail(int sig)
{
    (void) sig;
    if (arrivals != arrivals_copy)
        disagreed = 1; /* the handler saw the ledger half-updated */
    arrivals++;
    arrivals_copy++;
}

static int send_one(const char *what)
{
    pbx_t *q;
    int r = pbx_open("critical", 0, NULL, &q);
    if (r == 0)
        r = pbx_send(q, 1, what, strlen(what), 0);
    pbx_close(q);
    return r < 0;
}

static int child_sends(const char *what)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(send_one(what));
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? (int) pid : -1;
}

int main(void)
{
    pbx_t *q;
    int r = pbx_open("critical", PBX_CREATE, NULL, &q);
    if (r < 0) {
        fprintf(stderr, "critical: %s\n", pbx_strerror(r));
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_mail;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN, &sa, NULL);
    pbx_notify(q, SIGRTMIN, 7);

    /* Part one: the critical section. */
    sigset_t rt, old;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &rt, &old);
    arrivals += 100; /* half-way through an update the handler must not see */
    int sender = child_sends("during the critical section");
    /* The signal follows the send within a wake-up of the helper thread: look for it for a
     * while (it stays pending, blocked, however long we take). */
    sigset_t pending;
    int was_pending = 0;
    for (int i = 0; i < 5000 && !was_pending; i++) {
        sigpending(&pending);
        was_pending = sigismember(&pending, SIGRTMIN);
        if (!was_pending)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    arrivals_copy += 100;
    printf("inside: a message came from %d; SIGRTMIN is %s, the handler has not run\n", sender,
           was_pending ? "pending" : "NOT pending");
    sigprocmask(SIG_SETMASK, &old, NULL); /* the handler runs here */
    printf("after:  ledger %d/%d, %s\n", (int) arrivals, (int) arrivals_copy,
           disagreed ? "the handler saw it half-updated" : "always consistent");
    char buf[64];
    pbx_recv(q, 0, buf, sizeof buf, PBX_NOWAIT, NULL); /* empty again: the next send is an edge */

    /* Part two: the signal stays blocked; the main flow waits for it. */
    sigprocmask(SIG_BLOCK, &rt, NULL);
    sender = child_sends("to sigwaitinfo");
    siginfo_t si;
    struct timespec limit = {5, 0};
    int sig = sigtimedwait(&rt, &si, &limit);
    printf("sigwaitinfo: signal %s, value %d, raised by %d (this process is %d, the sender %d)\n",
           sig == SIGRTMIN ? "SIGRTMIN" : "none", sig == SIGRTMIN ? si.si_value.sival_int : 0,
           sig == SIGRTMIN ? (int) si.si_pid : 0, (int) getpid(), sender);
    ssize_t n = pbx_recv(q, 0, buf, sizeof buf - 1, PBX_NOWAIT, NULL);
    if (n >= 0) {
        buf[n] = '\0';
        printf("message: \"%s\"\n", buf);
    }
    int ok = was_pending && !disagreed && arrivals == 101 && sig == SIGRTMIN &&
             si.si_value.sival_int == 7 && si.si_pid == getpid() && sender > 0 && n > 0;
    pbx_remove(q);
    pbx_close(q);
    if (!ok) {
        fprintf(stderr, "critical: failed\n");
        return 1;
    }
    return 0;
}
