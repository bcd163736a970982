/*
 * c_holder.c — a helper for the binding's tests, built against the test copy of the library
 * (with crash points, src/crash.h): it receives one message from NAME with PBX_STOP_AT set, so
 * that it stops itself (SIGSTOP) while it holds the mailbox's receive lock, and finishes the
 * receive when it is continued (SIGCONT).
 *   c_holder NAME
 * Exit 0 once it received a message, 1 on an error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "postbox.h"

int main(int argc, char **argv)
{
    char buf[64];
    long type = 0;
    pbx_t *q = NULL;
    ssize_t r;

    if (argc != 2)
        return 1;
    r = pbx_open(argv[1], 0, NULL, &q);
    if (r < 0) {
        fprintf(stderr, "c_holder: open: %s\n", pbx_strerror((int) r));
        return 1;
    }
    setenv("PBX_STOP_AT", "recv.logged", 1);
    r = pbx_recv(q, 0, buf, sizeof(buf), 0, &type);
    pbx_close(q);
    if (r < 0) {
        fprintf(stderr, "c_holder: recv: %s\n", pbx_strerror((int) r));
        return 1;
    }
    return 0;
}
