/*
 * test_smoke.c — the shortest path through the API: create, send, receive, stat, remove.
 */
#include "harness.h"

TEST(create_send_recv_remove_roundtrip)
{
    pbx_t *q;
    ASSERT_OK(pbx_open("smoke", PBX_CREATE | PBX_EXCL, NULL, &q));
    ASSERT_OK(pbx_send(q, 7, "hello", 5, 0));
    char buf[16];
    long type = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 5);
    ASSERT_EQ(type, 7);
    ASSERT_MEM_EQ(buf, "hello", 5);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.sent, 1);
    ASSERT_EQ(st.received, 1);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_OK(pbx_remove(q));
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), -EIDRM);
    ASSERT_OK(pbx_close(q));
}

TEST(large_message_roundtrip_uses_chunks)
{
    pbx_t *q;
    struct pbx_options o = pbx_test_options(16, 1 << 20, 65536, PBX_BLOCK);
    ASSERT_OK(pbx_open("big", PBX_CREATE, &o, &q));
    static unsigned char out[65536], in[65536];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (unsigned char) (i * 131 + 7);
    for (size_t len = 0; len <= sizeof(out); len = len ? len * 3 : 1) {
        ASSERT_OK(pbx_send(q, 3, out, len, 0));
        memset(in, 0, sizeof(in));
        ASSERT_EQ(pbx_recv(q, 0, in, sizeof(in), PBX_NOWAIT, NULL), (long long) len);
        ASSERT_MEM_EQ(in, out, len);
    }
    ASSERT_OK(pbx_send(q, 3, out, sizeof(out), 0));
    ASSERT_EQ(pbx_recv(q, 0, in, sizeof(in), PBX_NOWAIT, NULL), (long long) sizeof(out));
    ASSERT_MEM_EQ(in, out, sizeof(out));
    pbx_close(q);
}
