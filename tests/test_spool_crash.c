/*
 * test_spool_crash.c — a process is killed (SIGKILL, from a named crash point, src/crash.h) at
 * every step of a spool send and receive: before and after the data flush, before and after
 * the rename into the queue, after the directory flush, after the claim, after reading, after
 * deleting and after flushing the deletion. The survivors, and processes that open the spool
 * afterwards, must find: no partial message, every committed message exactly once, in its place in
 * arrival order, no temporary file left, and the full capacity back.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "spool_util.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static char name[4096], dir[4096];
static pbx_t *q;

static void open_fresh(uint32_t durability)
{
    struct pbx_options o = pbx_test_options(3, 64 * 1024, 4096, PBX_BLOCK);
    o.durability = durability;
    ASSERT_OK(pbx_open(spool_name(name, sizeof(name), "crash"), PBX_CREATE | PBX_EXCL, &o, &q));
    spool_dir(dir, sizeof(dir), "crash");
}

struct op {
    const char *crash_at;
    int receive;
    long type;
};

/* In a helper (which inherited q across fork): arm the point, operate; must not return. */
static int die_during(void *arg)
{
    const struct op *op = arg;
    static unsigned char buf[4096];
    memset(buf, (int) op->type, sizeof(buf));
    setenv("PBX_CRASH_AT", op->crash_at, 1);
    if (op->receive)
        pbx_recv(q, 0, buf, sizeof(buf), 0, NULL);
    else
        pbx_send(q, op->type, buf, 100, 0);
    return 3;
}

static void kill_helper_at(const char *point, int receive, long type)
{
    struct op op = {point, receive, type};
    pid_t pid = pbx_test_fork(die_during, &op);
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
}

static void expect_message(pbx_t *h, long type)
{
    unsigned char buf[4096];
    long got = 0;
    struct timespec t = {2, 0};
    ASSERT_EQ(pbx_timedrecv(h, 0, buf, sizeof(buf), 0, &got, &t), 100);
    ASSERT_EQ(got, type);
    for (int i = 0; i < 100; i++)
        ASSERT_EQ(buf[i], (unsigned char) type);
}

static void expect_empty(pbx_t *h)
{
    char buf[8];
    ASSERT_ERR(pbx_recv(h, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_NOERROR, NULL), -ENOMSG);
}

static void send_msg(long type)
{
    unsigned char buf[100];
    memset(buf, (int) type, sizeof(buf));
    ASSERT_OK(pbx_send(q, type, buf, sizeof(buf), PBX_NOWAIT));
}

/* All three places can be filled and emptied, in order: nothing leaked. */
static void expect_full_capacity(pbx_t *h)
{
    for (long t = 20; t < 23; t++) {
        unsigned char buf[100];
        memset(buf, (int) t, sizeof(buf));
        ASSERT_OK(pbx_send(h, t, buf, sizeof(buf), PBX_NOWAIT));
    }
    ASSERT_ERR(pbx_send(h, 99, "x", 1, PBX_NOWAIT), -EAGAIN);
    for (long t = 20; t < 23; t++)
        expect_message(h, t);
    expect_empty(h);
}

/* What a process that opens the spool afresh finds (like one after a reboot). */
static pbx_t *reopen(void)
{
    pbx_t *h;
    ASSERT_OK(pbx_open(name, 0, NULL, &h));
    return h;
}

static void sender_killed_before_rename(const char *point, uint32_t durability)
{
    open_fresh(durability);
    send_msg(1);
    kill_helper_at(point, 0, 7);
    ASSERT_EQ(count_entries(strcat(strcpy((char[4200]){0}, dir), "/tmp")), 1); /* its tmp */
    pbx_t *h = reopen(); /* opening cleans up temporary files of dead writers */
    ASSERT_EQ(count_entries(strcat(strcpy((char[4200]){0}, dir), "/tmp")), 0);
    expect_message(h, 1);
    expect_empty(h);
    expect_full_capacity(h);
    pbx_close(h);
    pbx_close(q);
}

TEST(sender_killed_after_writing_before_the_flush_leaves_nothing_visible)
{
    sender_killed_before_rename("spool.send.written", PBX_DURABLE_ALWAYS);
}

TEST(sender_killed_after_the_data_flush_before_the_rename_leaves_nothing_visible)
{
    sender_killed_before_rename("spool.send.flushed", PBX_DURABLE_ALWAYS);
}

TEST(sender_killed_before_rename_without_flushes_leaves_nothing_visible)
{
    sender_killed_before_rename("spool.send.written", PBX_DURABLE_NONE);
}

static void sender_killed_after_rename(const char *point, uint32_t durability)
{
    open_fresh(durability);
    send_msg(1);
    kill_helper_at(point, 0, 7);
    /* The old handle and a new one both see it, once. */
    pbx_t *h = reopen();
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(h, &st));
    ASSERT_EQ(st.msgs, 2);
    expect_message(q, 1);
    expect_message(h, 7);
    expect_empty(q);
    expect_empty(h);
    expect_full_capacity(q);
    pbx_close(h);
    pbx_close(q);
}

/* The helper dies holding the spool lock: the next caller takes it over. */
TEST(sender_killed_right_after_the_rename_holding_the_lock_has_sent)
{
    sender_killed_after_rename("spool.send.renamed", PBX_DURABLE_ALWAYS);
    struct pbx_stat st;
    pbx_t *h = reopen();
    ASSERT_OK(pbx_stat(h, &st));
    ASSERT_GE(st.repairs, 1); /* the lock was taken over */
    pbx_close(h);
}

TEST(sender_killed_after_the_directory_flush_has_sent)
{
    sender_killed_after_rename("spool.send.durable", PBX_DURABLE_ALWAYS);
}

TEST(sender_killed_after_the_rename_in_batch_mode_has_sent)
{
    sender_killed_after_rename("spool.send.renamed", PBX_DURABLE_BATCH);
}

static void receiver_killed_before_delete(const char *point)
{
    open_fresh(PBX_DURABLE_ALWAYS);
    send_msg(1);
    send_msg(2);
    kill_helper_at(point, 1, 0);
    /* Message 1 was claimed by the dead process: it is put back in its place. */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.received, 0);
    pbx_t *h = reopen();
    expect_message(h, 1);
    expect_message(q, 2);
    expect_empty(q);
    expect_empty(h);
    ASSERT_EQ(count_entries(strcat(strcpy((char[4200]){0}, dir), "/c")), 0);
    expect_full_capacity(h);
    pbx_close(h);
    pbx_close(q);
}

TEST(receiver_killed_after_claiming_loses_nothing)
{
    receiver_killed_before_delete("spool.recv.claimed");
}

TEST(receiver_killed_after_reading_before_deleting_loses_nothing)
{
    receiver_killed_before_delete("spool.recv.read");
}

static void receiver_killed_after_delete(const char *point)
{
    open_fresh(PBX_DURABLE_ALWAYS);
    send_msg(1);
    send_msg(2);
    kill_helper_at(point, 1, 0);
    expect_message(q, 2);
    expect_empty(q);
    expect_full_capacity(q);
    pbx_close(q);
}

TEST(receiver_killed_after_unlinking_before_the_flush_has_received_it_once)
{
    receiver_killed_after_delete("spool.recv.unlinked");
}

TEST(receiver_killed_after_deleting_has_received_it_once)
{
    receiver_killed_after_delete("spool.recv.deleted");
}

/* A put-back message keeps its place for every kind of selection. */
TEST(claimed_message_of_a_dead_receiver_is_found_by_a_typed_receive)
{
    open_fresh(PBX_DURABLE_NONE);
    send_msg(4);
    kill_helper_at("spool.recv.read", 1, 0);
    unsigned char buf[4096];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 4, buf, sizeof(buf), PBX_NOWAIT, &t), 100);
    ASSERT_EQ(t, 4);
    pbx_close(q);
}

/* The creator dies after building the spool under its temporary name: there is no spool,
 * and it can be created. */
TEST(creator_killed_before_the_rename_leaves_no_spool)
{
    spool_name(name, sizeof(name), "crash");
    pid_t pid = fork();
    if (pid == 0) {
        setenv("PBX_CRASH_AT", "spool.create.built", 1);
        pbx_t *h;
        pbx_open(name, PBX_CREATE, NULL, &h);
        _exit(3);
    }
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
    pbx_t *h = NULL;
    ASSERT_ERR(pbx_open(name, 0, NULL, &h), -ENOENT);
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, NULL, &h));
    pbx_close(h);
}

/* Killed at every crash point in turn, many times over, with other processes working. */
static int churn(void *arg)
{
    const char *point = arg;
    pbx_t *h;
    if (pbx_open(name, 0, NULL, &h))
        return 2;
    setenv("PBX_CRASH_AT", point, 1);
    unsigned char buf[4096];
    for (int i = 0; i < 50; i++) {
        memset(buf, 9, 100);
        if (pbx_send(h, 9, buf, 100, 0) < 0)
            return 4;
        if (pbx_recv(h, 0, buf, sizeof(buf), 0, NULL) < 0)
            return 5;
    }
    return 0;
}

TEST(repeated_kills_at_every_point_leave_only_whole_messages_and_no_stuck_claims)
{
    static const char *points[] = {"spool.send.written:2",  "spool.send.flushed:3",
                                   "spool.send.renamed:2",  "spool.send.durable:3",
                                   "spool.recv.claimed:2",  "spool.recv.read:3",
                                   "spool.recv.unlinked:2", "spool.recv.deleted:2"};
    open_fresh(PBX_DURABLE_NONE);
    pbx_close(q);
    struct pbx_options o = pbx_test_options(64, 1 << 20, 4096, PBX_BLOCK);
    o.durability = PBX_DURABLE_NONE;
    ASSERT_OK(pbx_unlink(name));
    ASSERT_OK(pbx_open(name, PBX_CREATE, &o, &q));
    for (int round = 0; round < 3; round++) {
        pid_t pids[ARRAY_LEN(points)];
        for (size_t i = 0; i < ARRAY_LEN(points); i++)
            pids[i] = pbx_test_fork(churn, (void *) points[i]);
        for (size_t i = 0; i < ARRAY_LEN(points); i++)
            ASSERT_EQ(pbx_test_wait(pids[i]), 128 + SIGKILL);
    }
    /* Whatever is left is whole, and nothing is stuck in a claim. */
    unsigned char buf[4096];
    ssize_t r;
    int left = 0;
    struct timespec t = {0, 300 * 1000 * 1000};
    while ((r = pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &t)) >= 0) {
        ASSERT_EQ(r, 100);
        for (int i = 0; i < 100; i++)
            ASSERT_EQ(buf[i], 9);
        left++;
    }
    ASSERT_EQ(r, -ETIMEDOUT);
    ASSERT_EQ(count_entries(strcat(strcpy((char[4200]){0}, dir), "/c")), 0);
    pbx_close(q);
    q = reopen();
    ASSERT_EQ(count_entries(strcat(strcpy((char[4200]){0}, dir), "/tmp")), 0);
    pbx_close(q);
}

/* A process that keeps its handle open also deletes the temporary files of writers that died
 * since it opened (it looks every second). */
TEST(temporary_file_of_a_dead_writer_is_deleted_by_a_long_lived_handle)
{
    open_fresh(PBX_DURABLE_NONE);
    kill_helper_at("spool.send.written", 0, 7);
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
    ASSERT_EQ(count_entries(tmp), 1);
    double t0 = pbx_test_now_ms();
    while (count_entries(tmp) > 0 && pbx_test_now_ms() - t0 < 5000) {
        char b[8];
        ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
        pbx_test_sleep_ms(50);
    }
    ASSERT_EQ(count_entries(tmp), 0);
    expect_full_capacity(q);
    pbx_close(q);
}
