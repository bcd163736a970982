/*
 * test_strerror.c — pbx_strerror() describes an error in words that fit every call that
 * returns it: -ENOENT comes from pbx_open (no such mailbox) and from pbx_ack and pbx_release
 * (no such claim held), so its text must not send the user looking for a missing mailbox
 * after an ack of a claim it does not hold (issue 14).
 */
#define _GNU_SOURCE
#include <string.h>

#include "harness.h"

TEST(strerror_of_enoent_from_an_ack_of_an_unheld_claim_names_the_claim)
{
    pbx_t *q = NULL;
    struct pbx_options o = pbx_test_options(8, 4096, 64, PBX_BLOCK);
    ASSERT_OK(pbx_open("claims", PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    char buf[64];
    long type;
    uint64_t claim;
    ASSERT_EQ(pbx_claim(q, 0, buf, sizeof buf, 0, &type, &claim), 1);
    ASSERT_OK(pbx_ack(q, claim));
    int r = pbx_ack(q, claim); /* no longer held */
    ASSERT_ERR(r, -ENOENT);
    ASSERT_TRUE(strstr(pbx_strerror(r), "claim") != NULL);
    ASSERT_ERR(pbx_release(q, claim), -ENOENT);
    /* The same code from an open still reads as a missing mailbox. */
    pbx_t *none = NULL;
    r = pbx_open("no-such-mailbox", 0, NULL, &none);
    ASSERT_ERR(r, -ENOENT);
    ASSERT_TRUE(strstr(pbx_strerror(r), "no such mailbox") != NULL);
    pbx_remove(q);
    pbx_close(q);
}
