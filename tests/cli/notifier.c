/*
 * notifier.c — a participant for the CLI tests: opens the mailbox NAME, registers for the
 * signal SIGNO on arrival (pbx_notify), says "ready" on standard output and waits until it
 * is killed. Lets tests/cli/cli.sh see a registered signal in `postbox peers`.
 *
 * Usage: pbx_notifier NAME SIGNO
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "postbox.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pbx_notifier NAME SIGNO\n");
        return 2;
    }
    int sig = atoi(argv[2]);
    signal(sig, SIG_IGN); /* an arrival must not kill us */
    pbx_t *q;
    int r = pbx_open(argv[1], 0, NULL, &q);
    if (r == 0)
        r = pbx_notify(q, sig, 0);
    if (r < 0) {
        fprintf(stderr, "pbx_notifier: %s: %s\n", argv[1], pbx_strerror(r));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
