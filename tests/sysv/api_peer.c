/*
 * api_peer.c — the postbox side of the interoperation test (api_interop.sh): open a System V
 * queue by its mailbox name with the postbox API, take the System V program's message, answer
 * with type 6. Usage: api_peer NAME.
 */
#include <stdio.h>
#include <string.h>

#include "postbox.h"

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    pbx_t *q;
    int r = pbx_open(argv[1], 0, NULL, &q);
    if (r < 0) {
        fprintf(stderr, "api_peer: open %s: %s\n", argv[1], pbx_strerror(r));
        return 1;
    }
    char buf[64];
    long type = 0;
    ssize_t n = pbx_recv(q, 0, buf, sizeof(buf) - 1, PBX_NOWAIT, &type);
    if (n < 0) {
        fprintf(stderr, "api_peer: recv: %s\n", pbx_strerror((int) n));
        return 1;
    }
    buf[n] = 0;
    printf("api got type %ld: %s\n", type, buf);
    r = pbx_send(q, 6, "from postbox", 12, 0);
    pbx_close(q);
    return r != 0;
}
