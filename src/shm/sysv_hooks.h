/*
 * sysv_hooks.h — the few engine operations the System V drop-in (sysv/) needs beyond the
 * public API: a capacity that changes at run time (msg_qbytes under IPC_SET) and a copy of the
 * n-th queued message by arrival (msgrcv's MSG_COPY). Nothing else in the library uses them.
 */
#ifndef PBX_SHM_SYSV_HOOKS_H
#define PBX_SHM_SYSV_HOOKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "postbox.h"

/* Set the mailbox's run-time capacity (struct pbx_header.soft_limit): at most limit messages
 * and limit payload bytes, on top of the capacities it was created with; 0 lifts it. Wakes
 * blocked senders, since a raised limit may make room. Returns 0 or -EINVAL (not a
 * shared-memory mailbox). Thread-safe; does not block. */
int pbx__sysv_set_limit(pbx_t *q, uint32_t limit);

/* The run-time capacity set by pbx__sysv_set_limit() (0: none), or -EINVAL. */
int64_t pbx__sysv_get_limit(pbx_t *q);

/* Copy the n-th queued message (0 = the oldest, in arrival order) without removing it, as
 * msgrcv(MSG_COPY) does. Copies min(len, cap) bytes when noerror, else fails with -E2BIG if
 * the message is longer than cap. Returns the number of bytes copied, or -ENOMSG (no n-th
 * message), -E2BIG, -EIDRM, -ENOMEM, -EBADMSG, -EINVAL. Takes the receive lock; O(depth). */
ssize_t pbx__sysv_copy_nth(pbx_t *q, uint64_t n, void *buf, size_t cap, int noerror,
                           long *type_out);

#endif
