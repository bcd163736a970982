/*
 * installed_user.c — a program built against an installed postbox (tests/cli/install.sh), as
 * C and, copied to a .cpp file, as C++. It sends and receives through a private mailbox and
 * checks the library it runs with is the version of the header it was compiled with.
 */
#include <postbox.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    char want[32], buf[16];
    pbx_t *q;
    long type = 0;
    snprintf(want, sizeof want, "%d.%d.%d", PBX_VERSION_MAJOR, PBX_VERSION_MINOR,
             PBX_VERSION_PATCH);
    if (strcmp(want, pbx_version()) != 0) {
        fprintf(stderr, "header %s, library %s\n", want, pbx_version());
        return 1;
    }
    int r = pbx_open_private(NULL, &q);
    if (r < 0) {
        fprintf(stderr, "pbx_open_private: %s\n", pbx_strerror(r));
        return 1;
    }
    if ((r = pbx_send(q, 5, "hello", 5, 0)) < 0) {
        fprintf(stderr, "pbx_send: %s\n", pbx_strerror(r));
        return 1;
    }
    ssize_t n = pbx_recv(q, 0, buf, sizeof buf, 0, &type);
    if (n != 5 || type != 5 || memcmp(buf, "hello", 5) != 0) {
        fprintf(stderr, "pbx_recv: %zd\n", n);
        return 1;
    }
    pbx_close(q);
    printf("installed postbox %s works\n", pbx_version());
    return 0;
}
