/*
 * firealarm.c — the lecture's fire alarm: a signal that carries no message.
 *
 * A fire alarm says one thing only — "get out" — and says it at once, whatever everyone is
 * doing. That is a signal: the lecture's kill() with SIGUSR1, delivered to a handler. The
 * details (which floor, which exit) are a message, and they wait in a mailbox until someone has
 * time to read them.
 *
 * The office worker (a child process) registers with pbx_notify() for SIGUSR1 on the mailbox
 * "alarm" and goes on working. Its handler is a proper one: installed with sigaction(), it does
 * only async-signal-safe work — it sets a flag of type volatile sig_atomic_t and returns; errno
 * is saved and restored out of habit, since a longer handler could change it. The work loop
 * notices the flag and leaves to read the details with pbx_recv() in the main flow, where
 * postbox calls belong (no postbox call except pbx_strerror is made from the handler).
 *
 * The warden (the parent) waits until the worker is registered — it sees it in pbx_peers(),
 * with the NOTIFY role — and sends one message: the send into the empty mailbox is what raises
 * the alarm. Nobody calls kill() with a PID.
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

static volatile sig_atomic_t alarm_rang;
static volatile sig_atomic_t alarm_value;

static void on_alarm(int sig, siginfo_t *si, void *ctx)
{
    int saved = errno;
    (void) sig;
    (void) ctx;
    alarm_value = si->si_value.sival_int;
    alarm_rang = 1;
    errno = saved;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int worker(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alarm;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);

    pbx_t *q;
    int r = pbx_open("alarm", 0, NULL, &q);
    if (r == 0)
        r = pbx_notify(q, SIGUSR1, 112); /* the value travels in si_value */
    if (r < 0) {
        fprintf(stderr, "worker: %s\n", pbx_strerror(r));
        return 1;
    }
    int reports = 0;
    for (int tick = 0; !alarm_rang && tick < 5000; tick++) {
        if (tick % 100 == 0)
            reports++; /* "working" */
        nap_ms(1);
    }
    if (!alarm_rang) {
        fprintf(stderr, "worker: no alarm came\n");
        return 1;
    }
    printf("worker: the alarm rang (value %d) after %d reports; reading the details\n",
           (int) alarm_value, reports);
    char details[128];
    ssize_t n = pbx_recv(q, 0, details, sizeof details - 1, PBX_NOWAIT, NULL);
    if (n < 0) {
        fprintf(stderr, "worker: %s\n", pbx_strerror((int) n));
        return 1;
    }
    details[n] = '\0';
    printf("worker: \"%s\" — leaving\n", details);
    pbx_close(q); /* also ends the registration */
    return 0;
}

int main(void)
{
    pbx_t *q;
    int r = pbx_open("alarm", PBX_CREATE, NULL, &q);
    if (r < 0) {
        fprintf(stderr, "firealarm: %s\n", pbx_strerror(r));
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* _exit() skips stdio's flush: when stdout is a pipe or a file (make demo > log), the
         * worker's lines would still sit in its buffer. */
        int status = worker();
        fflush(stdout);
        _exit(status);
    }

    /* Wait until the worker is registered: it shows in the registry with the NOTIFY role. */
    int registered = 0;
    for (int i = 0; i < 5000 && !registered; i++) {
        struct pbx_peer peers[8];
        ssize_t n = pbx_peers(q, peers, 8);
        for (ssize_t k = 0; k < n && k < 8; k++)
            registered |= peers[k].pid == pid && (peers[k].roles & PBX_PEER_NOTIFY);
        if (!registered)
            nap_ms(1);
    }
    printf("warden: worker %d is registered; raising the alarm\n", (int) pid);
    const char *details = "fire on floor 3: use the east stairs";
    r = registered ? pbx_send(q, 1, details, strlen(details), 0) : -ETIMEDOUT;
    int status = 1;
    waitpid(pid, &status, 0);
    pbx_remove(q);
    pbx_close(q);
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "firealarm: failed (%s)\n", r < 0 ? pbx_strerror(r) : "worker");
        return 1;
    }
    return 0;
}
