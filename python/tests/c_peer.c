/*
 * c_peer.c — a C program the Python binding's interoperability tests talk to, built against
 * the static library exactly as any C user would. It sends or receives one message, or
 * serves as the C side of the selective producer/consumer, with payloads as hex so binary
 * data crosses the command line intact.
 *   c_peer send NAME TYPE HEX        queue one message
 *   c_peer recv NAME TYPE            take one (waiting), print "TYPE HEX"
 *   c_peer echo NAME COUNT           COUNT times: take a message of type 1 and send it back
 *                                    as type 2 with its bytes reversed
 * Exit 0, or 1 with the postbox error on standard error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postbox.h"

static int fail(const char *what, long r)
{
    fprintf(stderr, "c_peer: %s: %s\n", what, pbx_strerror((int) r));
    return 1;
}

static size_t from_hex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = 0;

    while (hex[0] != '\0' && hex[1] != '\0' && n < cap) {
        unsigned int byte;

        if (sscanf(hex, "%2x", &byte) != 1)
            break;
        out[n++] = (unsigned char) byte;
        hex += 2;
    }
    return n;
}

int main(int argc, char **argv)
{
    static unsigned char buf[1 << 16];
    pbx_t *q;
    long type;
    long r;

    if (argc < 4) {
        fprintf(stderr, "usage: c_peer send NAME TYPE HEX | recv NAME TYPE | echo NAME COUNT\n");
        return 2;
    }
    r = pbx_open(argv[2], 0, NULL, &q);
    if (r < 0)
        return fail("open", r);
    if (strcmp(argv[1], "send") == 0 && argc == 5) {
        size_t n = from_hex(argv[4], buf, sizeof buf);

        r = pbx_send(q, strtol(argv[3], NULL, 10), buf, n, 0);
        if (r < 0)
            return fail("send", r);
    } else if (strcmp(argv[1], "recv") == 0) {
        r = pbx_recv(q, strtol(argv[3], NULL, 10), buf, sizeof buf, 0, &type);
        if (r < 0)
            return fail("recv", r);
        printf("%ld ", type);
        for (long i = 0; i < r; i++)
            printf("%02x", buf[i]);
        printf("\n");
    } else if (strcmp(argv[1], "echo") == 0) {
        long count = strtol(argv[3], NULL, 10);

        for (long k = 0; k < count; k++) {
            r = pbx_recv(q, 1, buf, sizeof buf, 0, &type);
            if (r < 0)
                return fail("recv", r);
            for (long i = 0; i < r / 2; i++) {
                unsigned char t = buf[i];

                buf[i] = buf[r - 1 - i];
                buf[r - 1 - i] = t;
            }
            r = pbx_send(q, 2, buf, (size_t) r, 0);
            if (r < 0)
                return fail("send", r);
        }
    } else {
        fprintf(stderr, "c_peer: unknown command %s\n", argv[1]);
        return 2;
    }
    pbx_close(q);
    return 0;
}
