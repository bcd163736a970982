/*
 * looking.c — what a handle opened with PBX_RDONLY refuses (LOOKING in transport.h).
 *
 * A looking handle maps its mailbox read-only, so any call that would take a lock or write
 * into the mailbox must not reach the transport at all: these entries stand in for them in
 * every transport's looking table and return -EBADF, as write(2) does on a descriptor opened
 * O_RDONLY. A transport keeps its own stat, peers and close in that table.
 */
#include <errno.h>

#include "transport.h"

int pbx__refuse_open(const char *name, int flags, const struct pbx_options *opts, void **state)
{
    (void) name, (void) flags, (void) opts, (void) state;
    return -EBADF;
}

int pbx__refuse_open_private(const struct pbx_options *opts, void **state)
{
    (void) opts, (void) state;
    return -EBADF;
}

int pbx__refuse_remove(void *state)
{
    (void) state;
    return -EBADF;
}

int pbx__refuse_unlink(const char *name)
{
    (void) name;
    return -EBADF;
}

int pbx__refuse_send(void *state, long type, const void *data, uint32_t len, int flags,
                     uint64_t deadline_ns)
{
    (void) state, (void) type, (void) data, (void) len, (void) flags, (void) deadline_ns;
    return -EBADF;
}

ssize_t pbx__refuse_recv(void *state, long type, void *buf, uint32_t cap, int flags, long *type_out,
                         uint64_t deadline_ns)
{
    (void) state, (void) type, (void) buf, (void) cap, (void) flags, (void) type_out;
    (void) deadline_ns;
    return -EBADF;
}

ssize_t pbx__refuse_claim(void *state, long type, void *buf, uint32_t cap, int flags,
                          long *type_out, uint64_t *claim, uint64_t deadline_ns)
{
    (void) state, (void) type, (void) buf, (void) cap, (void) flags, (void) type_out;
    (void) claim, (void) deadline_ns;
    return -EBADF;
}

int pbx__refuse_settle(void *state, uint64_t claim)
{
    (void) state, (void) claim;
    return -EBADF;
}

int pbx__refuse_notify(void *state, int signo, int value)
{
    (void) state, (void) signo, (void) value;
    return -EBADF;
}

int pbx__refuse_fd(void *state)
{
    (void) state;
    return -EBADF;
}

int pbx__refuse_lend(void *state, uint32_t len, int flags, uint64_t deadline_ns, struct pbx_loan *l)
{
    (void) state, (void) len, (void) flags, (void) deadline_ns, (void) l;
    return -EBADF;
}

ssize_t pbx__refuse_recv_lend(void *state, long type, int flags, uint64_t deadline_ns,
                              struct pbx_loan *l)
{
    (void) state, (void) type, (void) flags, (void) deadline_ns, (void) l;
    return -EBADF;
}
