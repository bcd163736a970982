/*
 * test_relay.c — postbox-relay end to end, with a real nats-server started by the test.
 *
 * Two "hosts" are two POSTBOX_DIRs with a relay each: host a forwards its outbox jobs.b to
 * mailbox jobs on host b. Stream tests number every message and checksum its body, and the
 * receiver checks each one: the next sequence number, its type, its length and its bytes —
 * so a lost, duplicated, reordered or damaged message fails the test where it happens.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "natsd.h"

/* ---- numbered, checksummed messages ------------------------------------------------------ */

#define HEAD 12 /* u64 sequence, u32 checksum of the rest */

static uint32_t sum_of(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static size_t msg_len(uint64_t seq, size_t size)
{
    return size ? size : HEAD + (size_t) (seq * 7919 % 200);
}

static long msg_type(uint64_t seq)
{
    return 1 + (long) (seq % 3);
}

/* On a failure, what the servers and relays said (the harness deletes the directory). */
static void dump_logs(void)
{
    const char *base = getenv("PBX_RELAY_TEST_BASE");
    if (!base)
        return;
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "for f in %s/host-*/relay.log %s/host-*/relay-state/status.json; do echo \"== $f\"; "
             "head -n 60 $f; done >&2",
             base, base);
    if (system(cmd) < 0)
        perror("system");
}

static void msg_make(unsigned char *buf, uint64_t seq, size_t len)
{
    for (size_t i = HEAD; i < len; i++)
        buf[i] = (unsigned char) (seq * 31 + i);
    uint32_t s = sum_of(buf + HEAD, len - HEAD);
    memcpy(buf, &seq, 8);
    memcpy(buf + 8, &s, 4);
}

/* Receive n messages from q (type 0) and check each is the next: sequence from first. */
static void expect_stream(pbx_t *q, uint64_t first, uint64_t n, size_t size)
{
    static unsigned char buf[70000];
    for (uint64_t want = first; want < first + n; want++) {
        long type = 0;
        struct timespec to = {60, 0};
        ssize_t len = pbx_timedrecv(q, 0, buf, sizeof buf, 0, &type, &to);
        if (len < 0)
            dump_logs();
        ASSERT_OK(len);
        uint64_t seq;
        uint32_t s;
        ASSERT_GE(len, HEAD);
        memcpy(&seq, buf, 8);
        memcpy(&s, buf + 8, 4);
        if (seq != want)
            dump_logs();
        ASSERT_EQ(seq, want);
        ASSERT_EQ(type, msg_type(seq));
        ASSERT_EQ((size_t) len, msg_len(seq, size));
        ASSERT_EQ(s, sum_of(buf + HEAD, (size_t) len - HEAD));
    }
}

static void send_stream(pbx_t *q, uint64_t first, uint64_t n, size_t size)
{
    static unsigned char buf[70000];
    for (uint64_t seq = first; seq < first + n; seq++) {
        size_t len = msg_len(seq, size);
        msg_make(buf, seq, len);
        ASSERT_OK(pbx_send(q, msg_type(seq), buf, len, 0));
    }
}

/* ---- the two hosts ---------------------------------------------------------------------- */

struct world {
    char base[512];
    struct natsd server;
    struct host a, b;
};

static void world_start(struct world *w)
{
    natsd_require();
    snprintf(w->base, sizeof w->base, "%s", getenv("POSTBOX_DIR"));
    setenv("PBX_RELAY_TEST_BASE", w->base, 1);
    natsd_start(&w->server, w->base, "nats", 0);
    host_init(&w->a, w->base, "a");
    host_init(&w->b, w->base, "b");
}

static pbx_t *open_on(const struct host *h, const char *name, const struct pbx_options *o)
{
    host_enter(h);
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(name, PBX_CREATE, o, &q));
    return q;
}

static void relays_start(struct world *w, const char *crash_a, const char *crash_b)
{
    host_relay_start(&w->b, w->server.url, crash_b, "--in", "jobs", (char *) NULL);
    host_relay_start(&w->a, w->server.url, crash_a, "--out", "jobs@b", (char *) NULL);
}

/* Nothing more arrives: once b's relay has nothing left in the stream, the mailbox is empty. */
static void expect_no_more(struct world *w, pbx_t *q)
{
    pbx_test_sleep_ms(1500);
    for (int i = 0; i < 200 && host_status(&w->b, "in", "lag") != 0; i++)
        pbx_test_sleep_ms(50);
    ASSERT_EQ(host_status(&w->b, "in", "lag"), 0);
    /* No sequence number was ever given up on: none went missing on the way. */
    ASSERT_EQ(host_status(&w->b, "in", "skipped"), 0);
    char buf[16];
    long type;
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof buf, PBX_NOWAIT | PBX_NOERROR, &type), -ENOMSG);
}

static struct pbx_options big_options(void)
{
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = 8192;
    o.max_bytes = 64u << 20;
    o.max_msg_size = 65536;
    return o;
}

/* ---- tests ------------------------------------------------------------------------------ */

TEST(every_type_and_size_arrives_and_selection_works_as_on_a_local_mailbox)
{
    struct world w;
    world_start(&w);
    struct pbx_options o = big_options();
    pbx_t *out = open_on(&w.a, "jobs.b", &o);
    pbx_t *in = open_on(&w.b, "jobs", &o);
    pbx_t *ref = open_on(&w.b, "reference", &o); /* the same sends, local */
    relays_start(&w, NULL, NULL);

    static const size_t sizes[] = {0, 1, 16, 100, 4096, 65536};
    static unsigned char buf[65536 + 16], got[65536 + 16], want[65536 + 16];
    int n = 0;
    for (long type = 1; type <= 7; type++)
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            size_t len = sizes[s];
            for (size_t i = 0; i < len; i++)
                buf[i] = (unsigned char) (type * 13 + s * 7 + i);
            long t = (type * 5 + (long) s) % 7 + 1; /* types interleaved */
            ASSERT_OK(pbx_send(out, t, buf, len, 0));
            ASSERT_OK(pbx_send(ref, t, buf, len, 0));
            n++;
        }
    struct pbx_stat st;
    for (int i = 0; i < 6000; i++) {
        ASSERT_OK(pbx_stat(in, &st));
        if (st.msgs >= (uint64_t) n)
            break;
        pbx_test_sleep_ms(10);
    }
    ASSERT_EQ(st.msgs, n);
    /* The same selections on both mailboxes give the same messages. */
    struct {
        long type;
        int flags;
    } sel[] = {{3, 0}, {-2, 0}, {5, PBX_EXCEPT}, {7, 0}, {-7, 0}, {1, PBX_EXCEPT}, {0, 0}, {2, 0}};
    int taken = 0;
    for (int round = 0; taken < n; round++) {
        long type = sel[round % 8].type;
        int flags = sel[round % 8].flags | PBX_NOWAIT;
        long t1 = 0, t2 = 0;
        ssize_t a = pbx_recv(in, type, got, sizeof got, flags, &t1);
        ssize_t b = pbx_recv(ref, type, want, sizeof want, flags, &t2);
        ASSERT_EQ(a, b);
        if (a == -ENOMSG)
            continue;
        ASSERT_OK(a);
        ASSERT_EQ(t1, t2);
        ASSERT_MEM_EQ(got, want, (size_t) a);
        taken++;
    }
    expect_no_more(&w, in);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

TEST(subjects_carry_node_mailbox_and_type_with_dots_escaped)
{
    struct world w;
    world_start(&w);
    struct pbx_options o = big_options();
    pbx_t *out = open_on(&w.a, "my.box.b.x", &o);
    pbx_t *in = open_on(&w.b, "my.box", &o);
    host_relay_start(&w.b, w.server.url, NULL, "--in", "my.box", (char *) NULL);
    host_relay_start(&w.a, w.server.url, NULL, "--out", "my.box.b.x=my.box@b", (char *) NULL);
    ASSERT_OK(pbx_send(out, 42, "hello", 5, 0));
    char status[600];
    snprintf(status, sizeof status, "%s/status.json", w.b.state);
    for (int i = 0; i < 6000 && access(status, R_OK) != 0; i++)
        pbx_test_sleep_ms(10);
    char buf[16];
    long type = 0;
    struct timespec to = {60, 0};
    ASSERT_EQ(pbx_timedrecv(in, 0, buf, sizeof buf, 0, &type, &to), 5);
    ASSERT_EQ(type, 42);
    ASSERT_MEM_EQ(buf, "hello", 5);
    /* The stream of b's mailbox "my.box" takes the subjects pbx.b.my_2Ebox.*: one token each
     * for node, mailbox and type. */
    FILE *f = fopen(status, "r");
    ASSERT_TRUE(f != NULL);
    char txt[4096] = {0};
    ASSERT_GT(fread(txt, 1, sizeof txt - 1, f), 0);
    fclose(f);
    ASSERT_TRUE(strstr(txt, "\"stream\": \"PBX-b-my_2Ebox\"") != NULL);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

/* The relay on side a or b SIGKILLs itself at a named step; restarted, it must deliver every
 * message exactly once and in order. */
static void crash_at(const char *point, int on_b)
{
    struct world w;
    world_start(&w);
    struct pbx_options o = big_options();
    pbx_t *out = open_on(&w.a, "jobs.b", &o);
    pbx_t *in = open_on(&w.b, "jobs", &o);
    const uint64_t n = 3000;
    send_stream(out, 1, n, 0);
    relays_start(&w, on_b ? NULL : point, on_b ? point : NULL);
    struct host *victim = on_b ? &w.b : &w.a;
    ASSERT_EQ(host_relay_wait(victim), 128 + SIGKILL); /* it reached the crash point */
    host_relay_start(victim, w.server.url, NULL, on_b ? "--in" : "--out", on_b ? "jobs" : "jobs@b",
                     (char *) NULL);
    expect_stream(in, 1, n, 0);
    expect_no_more(&w, in);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

TEST(crash_after_claim_is_exactly_once)
{
    crash_at("out-claimed:300", 0);
}
TEST(crash_after_journal_before_outbox_ack_is_exactly_once)
{
    crash_at("out-journaled:3", 0);
}
TEST(crash_after_outbox_ack_before_publish_is_exactly_once)
{
    crash_at("out-acked:3", 0);
}
TEST(crash_after_publish_before_pub_ack_is_exactly_once)
{
    crash_at("out-published:3", 0);
}
TEST(crash_after_pub_ack_received_is_exactly_once)
{
    crash_at("out-confirmed:3", 0);
}
TEST(crash_after_fetch_is_exactly_once)
{
    crash_at("in-fetched:3", 1);
}
TEST(crash_before_local_delivery_is_exactly_once)
{
    crash_at("in-intent:300", 1);
}
TEST(crash_after_local_delivery_before_high_water_mark_is_exactly_once)
{
    crash_at("in-delivered:300", 1);
}
TEST(crash_after_high_water_mark_before_ack_is_exactly_once)
{
    crash_at("in-committed:300", 1);
}
TEST(crash_after_ack_is_exactly_once)
{
    crash_at("in-acked:3", 1);
}

/* PIPELINE (--window larger than --batch): several batches published and unanswered when the
 * sending relay dies; restarted, still exactly once and in order. */
static void pipelined_crash_at(const char *point)
{
    struct world w;
    world_start(&w);
    struct pbx_options o = big_options();
    pbx_t *out = open_on(&w.a, "jobs.b", &o);
    pbx_t *in = open_on(&w.b, "jobs", &o);
    const uint64_t n = 3000;
    send_stream(out, 1, n, 0);
    host_relay_start(&w.b, w.server.url, NULL, "--in", "jobs", (char *) NULL);
    host_relay_start(&w.a, w.server.url, point, "--out", "jobs@b", "--batch", "64", "--window",
                     "1024", (char *) NULL);
    ASSERT_EQ(host_relay_wait(&w.a), 128 + SIGKILL); /* it reached the crash point */
    host_relay_start(&w.a, w.server.url, NULL, "--out", "jobs@b", "--batch", "64", "--window",
                     "1024", (char *) NULL);
    expect_stream(in, 1, n, 0);
    expect_no_more(&w, in);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

TEST(pipelined_relay_killed_with_batches_in_flight_is_exactly_once)
{
    pipelined_crash_at("out-published:6");
}

TEST(pipelined_relay_killed_between_pub_acks_is_exactly_once)
{
    pipelined_crash_at("out-confirmed:4");
}

struct producer {
    struct host *h;
    uint64_t n;
    size_t size;
};

static int produce(void *arg)
{
    struct producer *p = arg;
    pbx_t *q = open_on(p->h, "jobs.b", NULL);
    send_stream(q, 1, p->n, p->size);
    pbx_close(q);
    return 0;
}

/* The server dies (kill -9, or SIGSTOP for a link down) while messages flow. */
static void server_trouble(int sig, unsigned down_ms)
{
    struct world w;
    world_start(&w);
    struct pbx_options o = big_options();
    pbx_close(open_on(&w.a, "jobs.b", &o));
    pbx_t *in = open_on(&w.b, "jobs", &o);
    relays_start(&w, NULL, NULL);
    struct producer p = {&w.a, 10000, 0};
    pid_t prod = pbx_test_fork(produce, &p);
    expect_stream(in, 1, 2000, 0);
    if (sig == SIGKILL) {
        natsd_kill(&w.server, SIGKILL);
        pbx_test_sleep_ms(down_ms);
        natsd_restart(&w.server);
    } else {
        kill(w.server.pid, SIGSTOP);
        pbx_test_sleep_ms(down_ms);
        kill(w.server.pid, SIGCONT);
    }
    expect_stream(in, 2001, p.n - 2000, 0);
    pbx_test_wait_ok(prod);
    expect_no_more(&w, in);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

TEST(server_kill9_and_restart_on_the_same_store_is_exactly_once_in_order)
{
    server_trouble(SIGKILL, 1000);
}

TEST(link_down_for_five_seconds_is_exactly_once_in_order)
{
    server_trouble(SIGSTOP, 5000);
}

TEST(hundred_thousand_messages_arrive_once_in_order_with_checksums)
{
    struct world w;
    world_start(&w);
    struct pbx_options o = big_options();
    pbx_close(open_on(&w.a, "jobs.b", &o));
    pbx_t *in = open_on(&w.b, "jobs", &o);
    relays_start(&w, NULL, NULL);
    const char *env = getenv("PBX_RELAY_MSGS");
    struct producer p = {&w.a, env ? strtoull(env, NULL, 10) : 100000, 0};
    pid_t prod = pbx_test_fork(produce, &p);
    expect_stream(in, 1, p.n, 0);
    pbx_test_wait_ok(prod);
    expect_no_more(&w, in);
    ASSERT_EQ(host_status(&w.b, "in", "delivered"), (long long) p.n);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

TEST(block_destination_full_fills_the_outbox_and_blocks_senders_then_drains_in_order)
{
    struct world w;
    world_start(&w);
    struct pbx_options small = pbx_test_options(20, 1u << 20, 1024, PBX_BLOCK);
    pbx_t *out = open_on(&w.a, "jobs.b", &small);
    pbx_t *in = open_on(&w.b, "jobs", &small);
    relays_start(&w, NULL, NULL);
    /* Nobody receives on b: b's mailbox (20) and its stream (20, DiscardNew) fill, a's relay
     * stops claiming, the outbox fills, and a sender that will not wait is refused. */
    static unsigned char buf[256];
    uint64_t sent = 0;
    for (;;) {
        size_t len = msg_len(sent + 1, 0);
        msg_make(buf, sent + 1, len);
        int r = pbx_send(out, msg_type(sent + 1), buf, len, PBX_NOWAIT);
        if (r == -EAGAIN) {
            /* Full now; is it still full once the relay has had time to move what it can? */
            pbx_test_sleep_ms(2000);
            r = pbx_send(out, msg_type(sent + 1), buf, len, PBX_NOWAIT);
            if (r == -EAGAIN)
                break;
        }
        ASSERT_OK(r);
        sent++;
        ASSERT_LT(sent, 1000); /* the back-pressure must stop the sender */
    }
    ASSERT_GE(sent, 20 + 20 + 20);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(in, &st));
    ASSERT_EQ(st.dropped, 0);
    expect_stream(in, 1, sent, 0);
    expect_no_more(&w, in);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

/* On a three-server cluster (R3), a block destination's stream must not refuse: JetStream
 * applies a DiscardNew limit on each replica by itself, and replicas that refuse different
 * messages lose acknowledged ones at the next leader change (docs/relay.md, the cluster
 * torture). The sending relay holds the stream to the mailbox's size instead: the outbox
 * still fills and blocks its senders, and no publish is ever refused (none re-published). */
TEST(block_destination_on_a_cluster_is_held_by_the_sender_and_never_refuses)
{
    natsd_require();
    char base[512];
    snprintf(base, sizeof base, "%s", getenv("POSTBOX_DIR"));
    setenv("PBX_RELAY_TEST_BASE", base, 1);
    struct natsd d[3];
    natsd_start_cluster(d, base);
    char urls[400];
    snprintf(urls, sizeof urls, "%s,%s,%s", d[0].url, d[1].url, d[2].url);
    struct host a, b;
    host_init(&a, base, "a");
    host_init(&b, base, "b");
    struct pbx_options small = pbx_test_options(20, 1u << 20, 1024, PBX_BLOCK);
    pbx_t *out = open_on(&a, "jobs.b", &small);
    pbx_t *in = open_on(&b, "jobs", &small);
    host_relay_start(&b, urls, NULL, "--in", "jobs", "--replicas", "3", (char *) NULL);
    host_relay_start(&a, urls, NULL, "--out", "jobs@b", (char *) NULL);
    /* A new cluster elects its leaders first: once message 1 has crossed, the route works. */
    static unsigned char buf[256];
    msg_make(buf, 1, msg_len(1, 0));
    ASSERT_OK(pbx_send(out, msg_type(1), buf, msg_len(1, 0), 0));
    expect_stream(in, 1, 1, 0);
    /* Publishes refused before b's relay declared the stream (no responders) are counted
     * before message 1 is: the count from then on must not move. */
    for (int i = 0; i < 2000 && host_status(&a, "out", "published") < 1; i++)
        pbx_test_sleep_ms(10);
    ASSERT_EQ(host_status(&a, "out", "published"), 1);
    long long republished = host_status(&a, "out", "republished");
    uint64_t sent = 1;
    for (;;) {
        size_t len = msg_len(sent + 1, 0);
        msg_make(buf, sent + 1, len);
        int r = pbx_send(out, msg_type(sent + 1), buf, len, PBX_NOWAIT);
        if (r == -EAGAIN) {
            pbx_test_sleep_ms(2000);
            r = pbx_send(out, msg_type(sent + 1), buf, len, PBX_NOWAIT);
            if (r == -EAGAIN)
                break;
        }
        ASSERT_OK(r);
        sent++;
        ASSERT_LT(sent, 1000); /* the sending relay must hold the stream to 20 */
    }
    ASSERT_GE(sent, 20 + 20 + 20);
    if (host_status(&a, "out", "republished") != republished)
        dump_logs();
    ASSERT_EQ(host_status(&a, "out", "republished"), republished); /* the stream never refused */
    expect_stream(in, 2, sent - 1, 0);
    expect_no_more(&(struct world){.b = b}, in);
    ASSERT_EQ(host_status(&a, "out", "republished"), republished);
    host_relay_stop(&a);
    host_relay_stop(&b);
    for (int i = 0; i < 3; i++)
        natsd_kill(&d[i], SIGTERM);
}

static void drop_policy(enum pbx_overflow policy)
{
    struct world w;
    world_start(&w);
    struct pbx_options big = big_options();
    struct pbx_options small = pbx_test_options(10, 1u << 20, 1024, policy);
    pbx_t *out = open_on(&w.a, "jobs.b", &big);
    pbx_t *in = open_on(&w.b, "jobs", &small);
    relays_start(&w, NULL, NULL);
    send_stream(out, 1, 100, 0);
    for (int i = 0; i < 6000; i++) {
        long long d = host_status(&w.b, "in", "delivered");
        long long x = host_status(&w.b, "in", "dropped");
        /* DROP_NEWEST: each message delivered or dropped; DROP_OLDEST: each one delivered. */
        if (d >= 0 && x >= 0 && (policy == PBX_DROP_NEWEST ? d + x : d) >= 100)
            break;
        pbx_test_sleep_ms(10);
    }
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(in, &st));
    ASSERT_EQ(st.msgs, 10);
    ASSERT_EQ(st.dropped, 90);
    if (policy == PBX_DROP_NEWEST) {
        ASSERT_EQ(host_status(&w.b, "in", "dropped"), 90); /* counted by the relay */
        expect_stream(in, 1, 10, 0);                       /* the first ten stayed */
    } else {
        /* Each send that pushed an older message out is delivered, not a dead letter, and
         * what it pushed out is counted. */
        ASSERT_EQ(host_status(&w.b, "in", "delivered"), 100);
        ASSERT_EQ(host_status(&w.b, "in", "dropped"), 90);
        ASSERT_EQ(host_dead_letters(&w.b), 0);
        expect_stream(in, 91, 10, 0); /* the last ten stayed */
    }
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

TEST(drop_newest_destination_drops_are_counted_in_status)
{
    drop_policy(PBX_DROP_NEWEST);
}

TEST(drop_oldest_destination_keeps_the_newest)
{
    drop_policy(PBX_DROP_OLDEST);
}

TEST(undeliverable_messages_go_to_the_dead_letter_spool_with_the_reason)
{
    struct world w;
    world_start(&w);
    struct pbx_options big = big_options();
    struct pbx_options small = pbx_test_options(100, 1u << 20, 64, PBX_BLOCK);
    pbx_t *out = open_on(&w.a, "jobs.b", &big);
    pbx_t *in = open_on(&w.b, "jobs", &small);
    relays_start(&w, NULL, NULL);
    static unsigned char buf[2000];
    memset(buf, 'x', sizeof buf);
    ASSERT_OK(pbx_send(out, 1, buf, 10, 0));
    ASSERT_OK(pbx_send(out, 2, buf, 1000, 0)); /* too large for jobs on b */
    ASSERT_OK(pbx_send(out, 3, buf, 20, 0));
    long type;
    struct timespec to = {60, 0};
    ASSERT_EQ(pbx_timedrecv(in, 0, buf, sizeof buf, 0, &type, &to), 10);
    ASSERT_EQ(pbx_timedrecv(in, 0, buf, sizeof buf, 0, &type, &to), 20);
    ASSERT_EQ(type, 3);
    ASSERT_EQ(host_dead_letters(&w.b), 1);
    /* The destination removed: what comes next is a dead letter too, never silently lost. */
    ASSERT_OK(pbx_remove(in));
    ASSERT_OK(pbx_send(out, 4, buf, 30, 0));
    for (int i = 0; i < 6000 && host_dead_letters(&w.b) < 2; i++)
        pbx_test_sleep_ms(10);
    ASSERT_EQ(host_dead_letters(&w.b), 2);
    for (int i = 0; i < 6000 && host_status(&w.b, "in", "dead_letters") < 2; i++)
        pbx_test_sleep_ms(10);
    ASSERT_EQ(host_status(&w.b, "in", "dead_letters"), 2);
    host_relay_stop(&w.a);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

TEST(claim_ids_are_stable_while_a_message_stays_in_the_mailbox)
{
    /* RECOVERY in tools/relay/relay.c relies on this contract of pbx_claim(). */
    const char *names[] = {"stable", "spool:"};
    for (int k = 0; k < 2; k++) {
        char name[600];
        if (k)
            snprintf(name, sizeof name, "spool:%s/spool", getenv("POSTBOX_DIR"));
        else
            snprintf(name, sizeof name, "%s", names[0]);
        pbx_t *q;
        ASSERT_OK(pbx_open(name, PBX_CREATE, NULL, &q));
        ASSERT_OK(pbx_send(q, 1, "a", 1, 0));
        ASSERT_OK(pbx_send(q, 1, "b", 1, 0));
        char c;
        long t;
        uint64_t id1, id2, again;
        ASSERT_EQ(pbx_claim(q, 0, &c, 1, 0, &t, &id1), 1);
        ASSERT_EQ(pbx_claim(q, 0, &c, 1, 0, &t, &id2), 1);
        ASSERT_NE(id1, id2);
        ASSERT_OK(pbx_release(q, id1));
        ASSERT_EQ(pbx_claim(q, 0, &c, 1, 0, &t, &again), 1);
        ASSERT_EQ(c, 'a');
        ASSERT_EQ(again, id1);
        ASSERT_OK(pbx_ack(q, again));
        ASSERT_OK(pbx_ack(q, id2));
        /* A new message never takes an id seen before. */
        ASSERT_OK(pbx_send(q, 1, "c", 1, 0));
        ASSERT_EQ(pbx_claim(q, 0, &c, 1, 0, &t, &again), 1);
        ASSERT_NE(again, id1);
        ASSERT_NE(again, id2);
        ASSERT_OK(pbx_ack(q, again));
        ASSERT_OK(pbx_remove(q));
        pbx_close(q);
    }
}

/* The line of `postbox relay status` text output that starts with prefix, or NULL. */
static const char *status_line(const char *text, const char *prefix)
{
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, prefix, strlen(prefix)))
            return l;
    return NULL;
}

TEST(a_message_over_the_server_max_payload_is_a_dead_letter_shown_by_relay_status)
{
    struct world w;
    natsd_require();
    snprintf(w.base, sizeof w.base, "%s", getenv("POSTBOX_DIR"));
    setenv("PBX_RELAY_TEST_BASE", w.base, 1);
    natsd_start_limited(&w.server, w.base, "nats", 2048); /* room for 1 KiB after headers */
    host_init(&w.a, w.base, "a");
    host_init(&w.b, w.base, "b");
    struct pbx_options o = big_options();
    pbx_t *out = open_on(&w.a, "jobs.b", &o);
    pbx_t *in = open_on(&w.b, "jobs", &o);
    relays_start(&w, NULL, NULL);
    static unsigned char buf[4000];
    memset(buf, 'y', sizeof buf);
    ASSERT_OK(pbx_send(out, 1, buf, 10, 0));
    ASSERT_OK(pbx_send(out, 2, buf, 3000, 0)); /* more than the server takes */
    ASSERT_OK(pbx_send(out, 3, buf, 20, 0));
    long type;
    struct timespec to = {60, 0};
    ASSERT_EQ(pbx_timedrecv(in, 0, buf, sizeof buf, 0, &type, &to), 10);
    ASSERT_EQ(pbx_timedrecv(in, 0, buf, sizeof buf, 0, &type, &to), 20);
    ASSERT_EQ(type, 3);
    /* It waits on a's side, with its reason, never silently away. */
    ASSERT_EQ(host_dead_letters(&w.a), 1);
    ASSERT_TRUE(host_dead_letter_says(&w.a, "reason: larger than the NATS server's max_payload"));
    ASSERT_TRUE(host_dead_letter_says(&w.a, "length: 3000"));
    for (int i = 0; i < 6000 && (host_status(&w.a, "out", "published") != 2 ||
                                 host_status(&w.b, "in", "delivered") != 2);
         i++)
        pbx_test_sleep_ms(10);
    ASSERT_EQ(host_status(&w.a, "out", "dead_letters"), 1);

    /* The table: a's route moved 2 and has 1 dead letter; b's delivered 2. */
    const char *text = host_relay_status(&w.a, (char *) NULL);
    ASSERT_TRUE(strstr(text, "relay node a: running (pid ") != NULL);
    ASSERT_TRUE(strstr(text, "NATS connected") != NULL);
    const char *line = status_line(text, "out ");
    ASSERT_TRUE(line != NULL);
    unsigned long long v[8];
    ASSERT_EQ(sscanf(line, "out jobs.b -> jobs@b %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                     &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]),
              8);
    ASSERT_EQ(v[0], 2); /* moved */
    ASSERT_EQ(v[1], 0); /* in flight */
    ASSERT_EQ(v[7], 1); /* dead */
    text = host_relay_status(&w.b, (char *) NULL);
    line = status_line(text, "in ");
    ASSERT_TRUE(line != NULL);
    ASSERT_EQ(sscanf(line, "in -> jobs %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                     &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]),
              8);
    ASSERT_EQ(v[0], 2); /* delivered */
    ASSERT_EQ(v[7], 0); /* no dead letters on b */
    text = host_relay_status(&w.a, "--json", (char *) NULL);
    ASSERT_TRUE(strstr(text, "\"running\": true") != NULL);
    ASSERT_TRUE(strstr(text, "\"dead_letters\": 1") != NULL);

    /* Stopped, the relay's last figures stay readable and say so. */
    host_relay_stop(&w.a);
    text = host_relay_status(&w.a, (char *) NULL);
    ASSERT_TRUE(strstr(text, "relay node a: not running") != NULL);
    line = status_line(text, "out ");
    ASSERT_TRUE(line != NULL);
    ASSERT_EQ(sscanf(line, "out jobs.b -> jobs@b %llu", &v[0]), 1);
    ASSERT_EQ(v[0], 2);
    host_relay_stop(&w.b);
    natsd_kill(&w.server, SIGTERM);
}

/* `postbox ls` on host h (its POSTBOX_DIR): the output (static buffer). */
static const char *ls_on(const struct host *h)
{
    static char out[1 << 16];
    char cli[600], cmd[1400];
    snprintf(cli, sizeof cli, "%s", PBX_RELAY_BIN);
    char *slash = strrchr(cli, '/');
    ASSERT_TRUE(slash != NULL);
    snprintf(slash + 1, sizeof cli - (size_t) (slash + 1 - cli), "postbox");
    snprintf(cmd, sizeof cmd, "POSTBOX_DIR='%s' '%s' ls", h->shm, cli);
    FILE *p = popen(cmd, "r");
    ASSERT_TRUE(p != NULL);
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    ASSERT_EQ(pclose(p), 0);
    return out;
}

TEST(ls_shows_which_mailboxes_a_running_relay_carries)
{
    struct world w;
    world_start(&w);
    struct pbx_options o = big_options();
    pbx_t *out = open_on(&w.a, "jobs.b", &o);
    pbx_t *in = open_on(&w.b, "jobs", &o);
    pbx_close(open_on(&w.a, "local", &o)); /* not relayed */
    ASSERT_TRUE(strstr(ls_on(&w.a), "relayed:") == NULL);
    relays_start(&w, NULL, NULL);
    /* Once a message has crossed, both relays have opened their routes. */
    ASSERT_OK(pbx_send(out, 1, "x", 1, 0));
    char c;
    long type;
    struct timespec to = {60, 0};
    ASSERT_EQ(pbx_timedrecv(in, 0, &c, 1, 0, &type, &to), 1);
    const char *text = ls_on(&w.a);
    ASSERT_TRUE(strstr(text, "relayed: jobs.b -> jobs@b (postbox relay status --state ") != NULL);
    ASSERT_TRUE(strstr(text, "local ->") == NULL);
    ASSERT_TRUE(strstr(ls_on(&w.b), "relayed: -> jobs (inbound)") != NULL);
    /* A relay that is gone no longer counts: killed (its marker stays) or stopped. */
    kill(w.a.relay, SIGKILL);
    ASSERT_EQ(host_relay_wait(&w.a), 128 + SIGKILL);
    ASSERT_TRUE(strstr(ls_on(&w.a), "relayed:") == NULL);
    host_relay_stop(&w.b);
    ASSERT_TRUE(strstr(ls_on(&w.b), "relayed:") == NULL);
    natsd_kill(&w.server, SIGTERM);
}

/* ---- make torture only ------------------------------------------------------------------ */

/* Not in make check: the CMake list takes only lines starting "TEST(". Run by make torture. */
#define TORTURE(name) PBX_TEST_DEFINE(name)

/* A three-server JetStream cluster, R3 streams; while messages flow, each server in turn is
 * killed with SIGKILL and restarted on its store, so the stream's leader (and the servers the
 * relays are connected to) die mid-run. Every message arrives once, in order. Knobs:
 * PBX_RELAY_CLUSTER_MSGS (default 20000), PBX_RELAY_CLUSTER_KILLS (default 6). */
TORTURE(cluster_r3_servers_killed_in_turn_is_exactly_once_in_order)
{
    natsd_require();
    char base[512];
    snprintf(base, sizeof base, "%s", getenv("POSTBOX_DIR"));
    setenv("PBX_RELAY_TEST_BASE", base, 1);
    struct natsd d[3];
    natsd_start_cluster(d, base);
    char urls[400];
    snprintf(urls, sizeof urls, "%s,%s,%s", d[0].url, d[1].url, d[2].url);
    struct host a, b;
    host_init(&a, base, "a");
    host_init(&b, base, "b");
    struct pbx_options o = big_options();
    pbx_close(open_on(&a, "jobs.b", &o));
    pbx_t *in = open_on(&b, "jobs", &o);
    host_relay_start(&b, urls, NULL, "--in", "jobs", "--replicas", "3", (char *) NULL);
    host_relay_start(&a, urls, NULL, "--out", "jobs@b", (char *) NULL);
    const char *env = getenv("PBX_RELAY_CLUSTER_MSGS");
    struct producer p = {&a, env ? strtoull(env, NULL, 10) : 20000, 0};
    env = getenv("PBX_RELAY_CLUSTER_KILLS");
    int kills = env ? atoi(env) : 6;
    pid_t prod = pbx_test_fork(produce, &p);
    uint64_t chunk = p.n / (uint64_t) (kills + 1), got = 0;
    for (int k = 0; k < kills; k++) {
        expect_stream(in, got + 1, chunk, 0);
        got += chunk;
        int victim = k % 3;
        fprintf(stderr, "cluster: %llu received; kill -9 %s\n", (unsigned long long) got,
                d[victim].server_name);
        natsd_kill(&d[victim], SIGKILL);
        pbx_test_sleep_ms(1000);
        natsd_restart_member(d, victim);
    }
    expect_stream(in, got + 1, p.n - got, 0);
    pbx_test_wait_ok(prod);
    expect_no_more(&(struct world){.b = b}, in);
    host_relay_stop(&a);
    host_relay_stop(&b);
    for (int i = 0; i < 3; i++)
        natsd_kill(&d[i], SIGTERM);
}
