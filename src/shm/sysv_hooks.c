/*
 * sysv_hooks.c — engine operations for the System V drop-in (see sysv_hooks.h).
 *
 * They live apart from the transport's own files so that the drop-in's needs stay out of the
 * hot paths: the run-time capacity is one word on the header's control line that the send
 * side's room check reads (queue.c, fits()), and the copy of the n-th message walks the slots
 * under the receive lock, which only MSG_COPY ever asks for.
 */
#include <errno.h>
#include <stdlib.h>

#include "../common.h"
#include "../internal.h"
#include "shm.h"
#include "sysv_hooks.h"
#include "wait.h"

int pbx__sysv_set_limit(pbx_t *q, uint32_t limit)
{
    struct pbx_shm *m = pbx__handle_shm(q);
    if (!m)
        return -EINVAL;
    /* ORDERING: a sender reads the limit under the send lock with a relaxed load; a store that
     * it misses is seen by its next room check. A raised limit is room, made like all room
     * under the receive lock, which a sender about to sleep sees pass (LOCK CYCLE in wait.h). */
    int err = pbx__recv_lock(m);
    if (err)
        return err;
    __atomic_store_n(&m->h->soft_limit, limit, __ATOMIC_SEQ_CST);
    pbx__recv_unlock(m);
    pbx__event_signal(&m->h->space_ev);
    return 0;
}

int64_t pbx__sysv_get_limit(pbx_t *q)
{
    struct pbx_shm *m = pbx__handle_shm(q);
    return m ? (int64_t) PBX_LOAD(&m->h->soft_limit) : -EINVAL;
}

struct queued {
    uint64_t seq;
    uint32_t slot;
};

static int by_seq(const void *a, const void *b)
{
    uint64_t x = ((const struct queued *) a)->seq, y = ((const struct queued *) b)->seq;
    return x < y ? -1 : x > y;
}

ssize_t pbx__sysv_copy_nth(pbx_t *q, uint64_t n, void *buf, size_t cap, int noerror, long *type_out)
{
    struct pbx_shm *m = pbx__handle_shm(q);
    if (!m || (!buf && cap))
        return -EINVAL;
    struct queued *list = malloc(sizeof(*list) * (size_t) m->geo.nslots);
    if (!list)
        return -ENOMEM;
    ssize_t r = pbx__recv_lock(m);
    if (r) {
        free(list);
        return r;
    }
    if (PBX_LOAD(&m->h->removed)) {
        r = -EIDRM;
        goto out;
    }
    /* Every published message moves into the index. A slot is a message a receive could take
     * when it is queued AND its seq is below the inbox head: a sender marks its slot queued
     * before it stores the inbox entry that commits the message (queue.c, publish_locked), so
     * a queued slot at or past the head is a send still in progress (or a sender killed before
     * its commit), not a message. This is the rule of the index rebuild (index.c). The seq of
     * the slots taken is their arrival order. */
    if ((r = pbx__index_ready(m)) || (r = pbx__recv_drain(m)))
        goto out;
    uint64_t head = PBX_LOAD(&m->h->recv.inbox_head);
    uint32_t count = 0;
    for (uint32_t s = 0; s < m->geo.nslots; s++) {
        const struct pbx_slot *slot = &m->slots[s];
        if (PBX_LOAD(&slot->state) == PBX_SLOT_QUEUED && slot->seq < head)
            list[count++] = (struct queued){slot->seq, s};
    }
    if (n >= count) {
        r = -ENOMSG;
        goto out;
    }
    qsort(list, count, sizeof(*list), by_seq);
    const struct pbx_slot *slot = &m->slots[list[n].slot];
    uint32_t len = slot->len;
    if (len > m->geo.max_msg_size) {
        r = -EBADMSG;
        goto out;
    }
    if (len > cap && !noerror) {
        r = -E2BIG;
        goto out;
    }
    uint32_t k = len < cap ? len : (uint32_t) cap;
    pbx__copy_out(m, list[n].slot, buf, k);
    if (type_out)
        *type_out = (long) slot->type;
    r = k;
out:
    pbx__recv_unlock(m);
    free(list);
    return r;
}
