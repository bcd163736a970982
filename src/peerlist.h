/*
 * peerlist.h — what pbx_peers() reports, gathered the same way by every transport.
 *
 * A transport keeps one entry per open handle; pbx_peers() reports one per process. A
 * transport walks its entries and adds each live one here with the identity of its process;
 * entries of one process merge: their roles are or-ed, their handles counted, the earliest
 * "since" and the first notification signal kept.
 */
#ifndef PBX_PEERLIST_H
#define PBX_PEERLIST_H

#include <string.h>
#include <sys/types.h>

#include "postbox.h"

#define PBX_PEERLIST_MAX 128 /* the larger of the transports' tables */

struct pbx_peerlist {
    size_t n;
    struct {
        uint64_t who; /* the process's identity, as the transport records it */
        struct pbx_peer p;
    } acc[PBX_PEERLIST_MAX];
};

static inline void pbx__peerlist_add(struct pbx_peerlist *l, uint64_t who, pid_t pid,
                                     uint32_t roles, int64_t since, int32_t signo)
{
    size_t k = 0;
    while (k < l->n && l->acc[k].who != who)
        k++;
    if (k == l->n) {
        if (l->n == PBX_PEERLIST_MAX)
            return;
        memset(&l->acc[k], 0, sizeof(l->acc[k]));
        l->acc[k].who = who;
        l->acc[k].p.pid = pid;
        l->acc[k].p.since = since;
        l->n++;
    }
    struct pbx_peer *p = &l->acc[k].p;
    p->roles |= roles;
    p->handles++;
    if (since && (!p->since || since < p->since))
        p->since = since;
    if (signo && !p->notify_signo)
        p->notify_signo = signo;
}

/* Copy up to cap participants to out; returns how many there are (may exceed cap). */
static inline ssize_t pbx__peerlist_out(const struct pbx_peerlist *l, struct pbx_peer *out,
                                        size_t cap)
{
    for (size_t k = 0; k < l->n && k < cap; k++)
        out[k] = l->acc[k].p;
    return (ssize_t) l->n;
}

#endif
