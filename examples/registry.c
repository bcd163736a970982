/*
 * registry.c — finding a stranger through the mailbox's registry instead of a PID file.
 *
 * The lecture's way for two unrelated programs to find each other is a PID file: the server
 * writes its PID into a file, the client reads it and sends kill(pid, SIGUSR1). It warns that
 * PIDs are only relatively unique: if the server died and its PID was handed to another
 * process, the file now points at a stranger, and kill(pid, 0) — the null signal, the usual
 * "are you alive?" — answers yes for the stranger.
 *
 * A postbox mailbox keeps a registry of who has it open (pbx_peers): each participant is named
 * by its PID and its start time, so a recycled PID does not pass for the old process, and a
 * dead participant drops out by itself, whether it closed the mailbox or was killed.
 *
 * Here a "server" process opens the mailbox "registry" and serves; the client finds it in the
 * registry (no file, no PID passed around), asks for a service by message, and gets the answer.
 * Then the server is killed with SIGKILL — it closes nothing — and the client sees it leave the
 * registry at once, while kill(pid, 0) still says the PID exists until the parent reaps it,
 * and would say so again for any process that got the PID later.
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

#define REQUEST 1
#define ANSWER  2

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int server(void)
{
    pbx_t *q;
    if (pbx_open("registry", 0, NULL, &q) < 0)
        return 1;
    char req[64];
    for (;;) {
        ssize_t n = pbx_recv(q, REQUEST, req, sizeof req, 0, NULL);
        if (n < 0)
            return 1;
        char ans[96];
        int k = snprintf(ans, sizeof ans, "served by %d: %.*s", (int) getpid(), (int) n, req);
        pbx_send(q, ANSWER, ans, (size_t) k, 0);
    }
}

/* Who else has the mailbox open and has received from it: the server. 0 if nobody. */
static pid_t find_server(pbx_t *q)
{
    struct pbx_peer peers[16];
    ssize_t n = pbx_peers(q, peers, 16);
    for (ssize_t i = 0; i < n && i < 16; i++)
        if (peers[i].pid != getpid() && (peers[i].roles & PBX_PEER_RECEIVED))
            return peers[i].pid;
    return 0;
}

int main(void)
{
    pbx_t *q;
    int r = pbx_open("registry", PBX_CREATE, NULL, &q);
    if (r < 0) {
        fprintf(stderr, "registry: %s\n", pbx_strerror(r));
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0)
        _exit(server());

    /* The server shows as a receiver once it waits in pbx_recv. */
    pid_t found = 0;
    for (int i = 0; i < 5000 && !found; i++)
        if (!(found = find_server(q)))
            nap_ms(1);
    printf("client: the registry names server %d (and I forked %d)\n", (int) found, (int) child);

    char ans[96];
    ssize_t n = -1;
    if (found) {
        pbx_send(q, REQUEST, "the time, please", 16, 0);
        n = pbx_recv(q, ANSWER, ans, sizeof ans - 1, 0, NULL);
    }
    if (n >= 0) {
        ans[n] = '\0';
        printf("client: answer \"%s\"\n", ans);
    }

    kill(child, SIGKILL);
    /* Not yet reaped: a zombie still holds the PID. */
    nap_ms(20);
    printf("client: server killed; kill(%d, 0) says %s, the registry says %s\n", (int) child,
           kill(child, 0) == 0 ? "alive" : "gone", find_server(q) ? "alive" : "gone");
    int ok = found == child && n >= 0 && find_server(q) == 0;
    waitpid(child, NULL, 0);
    pbx_remove(q);
    pbx_close(q);
    if (!ok) {
        fprintf(stderr, "registry: failed\n");
        return 1;
    }
    return 0;
}
