/*
 * hooks_unit.c — unit tests of the engine hooks only the System V drop-in uses
 * (src/shm/sysv_hooks.c), with the in-tree harness: states of a mailbox that no System V
 * program can produce on demand, such as a send caught between its two commit steps.
 */
#include "harness.h"
#include "internal.h"
#include "shm/shm.h"
#include "shm/sysv_hooks.h"

/* A sender marks its slot QUEUED, then stores the inbox entry that commits the message
 * (queue.c, publish_locked). A slot caught between the two — a send in progress, or a
 * sender killed there — is not a message, and MSG_COPY must not return it. */
TEST(copy_nth_skips_a_slot_queued_but_not_yet_committed)
{
    pbx_t *q;
    ASSERT_OK(pbx_open("copy", PBX_CREATE | PBX_EXCL, NULL, &q));
    ASSERT_OK(pbx_send(q, 1, "sent", 4, 0));
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_TRUE(m != NULL);
    uint32_t s = 0;
    while (s < m->geo.nslots && m->slots[s].state != PBX_SLOT_FREE)
        s++;
    ASSERT_LT(s, m->geo.nslots);
    /* What publish_locked has done when it is stopped before the inbox store. */
    m->slots[s].type = 9;
    m->slots[s].len = 5;
    memcpy(m->slots[s].data, "never", 5);
    m->slots[s].seq = m->h->send.inbox_tail;
    __atomic_store_n(&m->slots[s].state, (uint32_t) PBX_SLOT_QUEUED, __ATOMIC_RELEASE);

    char buf[16];
    long type = 0;
    ASSERT_EQ(pbx__sysv_copy_nth(q, 0, buf, sizeof(buf), 0, &type), 4);
    ASSERT_EQ(type, 1);
    ASSERT_MEM_EQ(buf, "sent", 4);
    ASSERT_EQ(pbx__sysv_copy_nth(q, 1, buf, sizeof(buf), 0, &type), -ENOMSG);
    ASSERT_OK(pbx_close(q));
}
