/*
 * test_loan.c — the rules of zero-copy loans (pbx_loan, pbx_commit, pbx_cancel, pbx_recv_loan,
 * pbx_return, pbx_loan_piece; LOANS in src/shm/loan.c): payloads written and read in place, the
 * type rules, every misuse and its error, close with loans held, death with loans held, a held
 * receive loan under PBX_DROP_OLDEST, a hostile peer's damage, and loans by copying on a spool.
 * The crash points of the loan steps are walked in test_crashwalk.c, the kill storm in
 * test_storm.c.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "shm/shm.h"
#include "spool_util.h"

#define MAXSZ 5000

static unsigned char pattern(size_t i, long type)
{
    return (unsigned char) (i * 7 + (size_t) type);
}

/* Write the pattern of type into the loan, piece by piece. */
static void fill_loan(struct pbx_loan *l, long type)
{
    size_t off = 0;
    while (off < l->len) {
        void *p;
        ssize_t n = pbx_loan_piece(l, off, &p);
        ASSERT_GT(n, 0);
        for (ssize_t i = 0; i < n; i++)
            ((unsigned char *) p)[i] = pattern(off + (size_t) i, type);
        off += (size_t) n;
    }
    void *p;
    ASSERT_EQ(pbx_loan_piece(l, off, &p), 0);
}

/* Check the loan holds the pattern of type, piece by piece. */
static void check_loan(struct pbx_loan *l, long type)
{
    size_t off = 0;
    while (off < l->len) {
        void *p;
        ssize_t n = pbx_loan_piece(l, off, &p);
        ASSERT_GT(n, 0);
        for (ssize_t i = 0; i < n; i++)
            ASSERT_EQ(((unsigned char *) p)[i], pattern(off + (size_t) i, type));
        off += (size_t) n;
    }
}

static void send_by_loan(pbx_t *q, long type, size_t len)
{
    struct pbx_loan l;
    ASSERT_OK(pbx_loan(q, len, 0, &l));
    ASSERT_TRUE(l.q == q);
    ASSERT_EQ(l.len, len);
    fill_loan(&l, type);
    ASSERT_OK(pbx_commit(&l, type, 0));
    ASSERT_TRUE(l.q == NULL);
}

static void expect_copy(pbx_t *q, long type, size_t len)
{
    static unsigned char buf[MAXSZ];
    long got = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &got), (long long) len);
    ASSERT_EQ(got, type);
    for (size_t i = 0; i < len; i++)
        ASSERT_EQ(buf[i], pattern(i, type));
}

static pbx_t *open_box(const char *name, uint32_t max_msgs, enum pbx_overflow ov)
{
    struct pbx_options o = pbx_test_options(max_msgs, 64 * 1024, MAXSZ, ov);
    pbx_t *q;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    return q;
}

static void send_copy(pbx_t *q, long type, size_t len)
{
    static unsigned char buf[MAXSZ];
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(i, type);
    ASSERT_OK(pbx_send(q, type, buf, len, PBX_NOWAIT));
}

static const size_t sizes[] = {0, 1, 23, 24, 25, 100, 1000, 3000, MAXSZ};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

TEST(send_loan_written_in_place_arrives_as_if_sent_at_every_size)
{
    pbx_t *q = open_box("l1", 16, PBX_BLOCK);
    for (size_t i = 0; i < NSIZES; i++)
        send_by_loan(q, (long) i + 1, sizes[i]);
    for (size_t i = 0; i < NSIZES; i++)
        expect_copy(q, (long) i + 1, sizes[i]);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.sent, NSIZES);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(recv_loan_reads_in_place_at_every_size_and_return_removes)
{
    pbx_t *q = open_box("l2", 16, PBX_BLOCK);
    for (size_t i = 0; i < NSIZES; i++)
        send_copy(q, (long) i + 1, sizes[i]);
    for (size_t i = 0; i < NSIZES; i++) {
        struct pbx_loan l;
        ASSERT_EQ(pbx_recv_loan(q, 0, PBX_NOWAIT, &l), (long long) sizes[i]);
        ASSERT_EQ(l.type, (long) i + 1);
        check_loan(&l, (long) i + 1);
        ASSERT_OK(pbx_return(&l));
    }
    struct pbx_loan l;
    ASSERT_ERR(pbx_recv_loan(q, 0, PBX_NOWAIT, &l), -ENOMSG);
    ASSERT_TRUE(l.q == NULL);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.received, NSIZES);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.claimed, 0);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(pieces_at_any_offset_give_the_byte_there)
{
    pbx_t *q = open_box("l3", 4, PBX_BLOCK);
    send_copy(q, 3, MAXSZ);
    struct pbx_loan l;
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &l), MAXSZ);
    /* Backwards and jumping: the cursor must not assume order. */
    for (size_t off = MAXSZ; off-- > 0; off = off > 97 ? off - 97 : 0) {
        void *p;
        ssize_t n = pbx_loan_piece(&l, off, &p);
        ASSERT_GT(n, 0);
        ASSERT_LE(off + (size_t) n, MAXSZ);
        ASSERT_EQ(*(unsigned char *) p, pattern(off, 3));
        ASSERT_EQ(((unsigned char *) p)[n - 1], pattern(off + (size_t) n - 1, 3));
        if (off == 0)
            break;
    }
    ASSERT_OK(pbx_return(&l));
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(recv_loan_follows_the_type_rules)
{
    pbx_t *q = open_box("l4", 16, PBX_BLOCK);
    send_copy(q, 5, 40);
    send_copy(q, 2, 30);
    send_copy(q, 7, 3000);
    send_copy(q, 2, 10);
    struct pbx_loan a, b, c, d;
    ASSERT_EQ(pbx_recv_loan(q, 7, 0, &a), 3000); /* type > 0: the oldest of that type */
    ASSERT_EQ(a.type, 7);
    ASSERT_EQ(pbx_recv_loan(q, -6, 0, &b), 30); /* type < 0: the lowest type <= 6, oldest */
    ASSERT_EQ(b.type, 2);
    ASSERT_EQ(pbx_recv_loan(q, 2, PBX_EXCEPT, &c), 40); /* any type but 2 */
    ASSERT_EQ(c.type, 5);
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &d), 10); /* type 0: the oldest left */
    ASSERT_EQ(d.type, 2);
    check_loan(&a, 7);
    check_loan(&b, 2);
    check_loan(&c, 5);
    check_loan(&d, 2);
    struct pbx_loan e;
    ASSERT_ERR(pbx_recv_loan(q, 0, PBX_NOWAIT, &e), -ENOMSG); /* held loans are out of the queue */
    ASSERT_OK(pbx_return(&c));
    ASSERT_OK(pbx_return(&a));
    ASSERT_OK(pbx_return(&d));
    ASSERT_OK(pbx_return(&b));
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(wrong_sizes_flags_and_types_are_refused)
{
    pbx_t *q = open_box("l5", 4, PBX_BLOCK);
    struct pbx_loan l;
    ASSERT_ERR(pbx_loan(q, MAXSZ + 1, 0, &l), -EMSGSIZE);
    ASSERT_TRUE(l.q == NULL);
    ASSERT_ERR(pbx_loan(q, (size_t) 1 << 40, 0, &l), -EMSGSIZE);
    ASSERT_ERR(pbx_loan(q, 8, PBX_SYNC, &l), -EINVAL);
    ASSERT_ERR(pbx_loan(NULL, 8, 0, &l), -EINVAL);
    ASSERT_ERR(pbx_loan(q, 8, 0, NULL), -EINVAL);
    ASSERT_ERR(pbx_recv_loan(q, 0, PBX_PEEK, &l), -EINVAL);
    ASSERT_ERR(pbx_recv_loan(q, 0, PBX_NOERROR, &l), -EINVAL);
    ASSERT_ERR(pbx_recv_loan(q, 0, PBX_EXCEPT, &l), -EINVAL);
    ASSERT_ERR(pbx_recv_loan(q, -3, PBX_EXCEPT, &l), -EINVAL);
    ASSERT_OK(pbx_loan(q, 8, 0, &l));
    ASSERT_ERR(pbx_commit(&l, 0, 0), -EINVAL); /* type < 1: the loan is still held */
    ASSERT_ERR(pbx_commit(&l, 1, PBX_NOWAIT), -EINVAL);
    ASSERT_ERR(pbx_return(&l), -EINVAL); /* a send loan is not returned */
    void *p;
    ASSERT_ERR(pbx_loan_piece(&l, 0, NULL), -EINVAL);
    ASSERT_EQ(pbx_loan_piece(&l, 8, &p), 0);
    ASSERT_EQ(pbx_loan_piece(&l, 1000, &p), 0);
    fill_loan(&l, 9);
    ASSERT_OK(pbx_commit(&l, 9, 0));
    struct pbx_loan r;
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &r), 8);
    ASSERT_ERR(pbx_commit(&r, 1, 0), -EINVAL); /* a receive loan is not committed */
    ASSERT_ERR(pbx_cancel(&r), -EINVAL);
    check_loan(&r, 9);
    ASSERT_OK(pbx_return(&r));
    ASSERT_ERR(pbx_commit(NULL, 1, 0), -EINVAL);
    ASSERT_ERR(pbx_return(NULL), -EINVAL);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(ending_a_loan_twice_or_through_a_stale_copy_is_enoent)
{
    pbx_t *q = open_box("l6", 4, PBX_BLOCK);
    struct pbx_loan l, copy;
    ASSERT_OK(pbx_loan(q, 100, 0, &l));
    fill_loan(&l, 4);
    copy = l;
    ASSERT_OK(pbx_commit(&l, 4, 0));
    ASSERT_ERR(pbx_commit(&l, 4, 0), -ENOENT);    /* the struct was cleared */
    ASSERT_ERR(pbx_commit(&copy, 4, 0), -ENOENT); /* the copy names a loan that ended */
    ASSERT_ERR(pbx_cancel(&copy), -ENOENT);
    void *p;
    ASSERT_ERR(pbx_loan_piece(&copy, 0, &p), -EINVAL);
    /* The slot is lent again: the stale copy still must not end the new loan. */
    struct pbx_loan again;
    ASSERT_OK(pbx_loan(q, 100, 0, &again));
    ASSERT_ERR(pbx_commit(&copy, 4, 0), -ENOENT);
    ASSERT_OK(pbx_cancel(&again));
    ASSERT_ERR(pbx_cancel(&again), -ENOENT);

    struct pbx_loan r, rcopy;
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &r), 100);
    rcopy = r;
    ASSERT_OK(pbx_return(&r));
    ASSERT_ERR(pbx_return(&r), -ENOENT);
    ASSERT_ERR(pbx_return(&rcopy), -ENOENT);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.sent, 1);
    ASSERT_EQ(st.received, 1);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(a_foreign_loan_is_not_ended_by_another_handle_or_a_forged_id)
{
    pbx_t *q = open_box("l7", 4, PBX_BLOCK);
    pbx_t *other;
    ASSERT_OK(pbx_open("l7", 0, NULL, &other));
    struct pbx_loan l;
    ASSERT_OK(pbx_loan(q, 50, 0, &l));
    struct pbx_loan f = l;
    f.q = other; /* another handle on the same mailbox */
    ASSERT_ERR(pbx_commit(&f, 1, 0), -ENOENT);
    ASSERT_ERR(pbx_cancel(&f), -ENOENT);
    f = l;
    f.id ^= 1ull << 30; /* a forged generation */
    ASSERT_ERR(pbx_commit(&f, 1, 0), -ENOENT);
    f.id = 0xffffff; /* a slot beyond the mailbox */
    ASSERT_ERR(pbx_commit(&f, 1, 0), -ENOENT);
    ASSERT_OK(pbx_cancel(&l));
    send_copy(q, 2, 10);
    struct pbx_loan r;
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &r), 10);
    f = r;
    f.q = other;
    ASSERT_ERR(pbx_return(&f), -ENOENT);
    ASSERT_OK(pbx_return(&r));
    pbx_close(other);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

static pbx_t *shared_q;
static struct pbx_loan inherited_send, inherited_recv;

static int child_ends_parents_loans(void *arg)
{
    (void) arg;
    if (pbx_commit(&inherited_send, 3, 0) != -ENOENT)
        return 1;
    if (pbx_return(&inherited_recv) != -ENOENT)
        return 2;
    return pbx_close(shared_q) == 0 ? 0 : 3; /* and closing the inherited handle ends none */
}

TEST(a_forked_child_cannot_end_its_parents_loans)
{
    shared_q = open_box("l8", 4, PBX_BLOCK);
    send_copy(shared_q, 2, 3000);
    ASSERT_EQ(pbx_recv_loan(shared_q, 0, 0, &inherited_recv), 3000);
    ASSERT_OK(pbx_loan(shared_q, 3000, 0, &inherited_send));
    fill_loan(&inherited_send, 3);
    pbx_test_wait_ok(pbx_test_fork(child_ends_parents_loans, NULL));
    check_loan(&inherited_recv, 2);
    ASSERT_OK(pbx_commit(&inherited_send, 3, 0));
    ASSERT_OK(pbx_return(&inherited_recv));
    expect_copy(shared_q, 3, 3000);
    ASSERT_OK(pbx_remove(shared_q));
    pbx_close(shared_q);
}

/* The child's table is a copy of its parent's: an entry for a loan the parent has ended since
 * must not make the child's close end the child's own loan on that slot, taken through another
 * handle (one slot: the child's loan is on the very slot the stale entry names). */
static int pipe_fds[2];
static int child_keeps_its_own_loan(void *arg)
{
    (void) arg;
    char c;
    if (read(pipe_fds[0], &c, 1) != 1)
        return 1;
    pbx_t *mine;
    if (pbx_open("l9", 0, NULL, &mine) != 0)
        return 2;
    struct pbx_loan own;
    if (pbx_loan(mine, 100, PBX_NOWAIT, &own) != 0)
        return 3;
    fill_loan(&own, 5);
    if (pbx_close(shared_q) != 0) /* the inherited handle: holds no loan of this process */
        return 4;
    if (pbx_commit(&own, 5, 0) != 0)
        return 5;
    return pbx_close(mine) == 0 ? 0 : 6;
}

TEST(closing_an_inherited_handle_leaves_the_childs_own_loans_alone)
{
    shared_q = open_box("l9", 1, PBX_BLOCK);
    struct pbx_loan l;
    ASSERT_OK(pbx_loan(shared_q, 100, 0, &l));
    ASSERT_EQ(pipe(pipe_fds), 0);
    pid_t kid = pbx_test_fork(child_keeps_its_own_loan, NULL);
    fill_loan(&l, 4);
    ASSERT_OK(pbx_commit(&l, 4, 0));
    expect_copy(shared_q, 4, 100); /* the one slot is free again */
    ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
    pbx_test_wait_ok(kid);
    expect_copy(shared_q, 5, 100);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    ASSERT_OK(pbx_remove(shared_q));
    pbx_close(shared_q);
}

TEST(close_cancels_send_loans_and_puts_receive_loans_back_in_place)
{
    pbx_t *q = open_box("l9", 8, PBX_BLOCK);
    pbx_t *h;
    ASSERT_OK(pbx_open("l9", 0, NULL, &h));
    send_copy(q, 4, 3000);
    send_copy(q, 5, 10);
    struct pbx_loan s1, s2, r1;
    ASSERT_OK(pbx_loan(h, 3000, 0, &s1));
    ASSERT_OK(pbx_loan(h, 5, 0, &s2));
    ASSERT_EQ(pbx_recv_loan(h, 0, 0, &r1), 3000);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 4); /* two queued (one lent to a receiver), two lent to senders */
    ASSERT_EQ(st.claimed, 1);
    ASSERT_OK(pbx_close(h));
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.claimed, 0);
    ASSERT_EQ(st.sent, 2);
    expect_copy(q, 4, 3000); /* back in its place: still the oldest */
    expect_copy(q, 5, 10);
    for (int i = 0; i < 8; i++) /* every slot free again */
        send_copy(q, 6, 3000);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(a_full_mailbox_refuses_a_loan_as_it_refuses_a_send)
{
    pbx_t *q = open_box("l10", 2, PBX_BLOCK);
    struct pbx_loan a, b, c;
    ASSERT_OK(pbx_loan(q, 10, 0, &a));
    ASSERT_OK(pbx_loan(q, 10, 0, &b));
    ASSERT_ERR(pbx_loan(q, 10, PBX_NOWAIT, &c), -EAGAIN); /* lent room is taken room */
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), -EAGAIN);
    ASSERT_OK(pbx_cancel(&a));
    ASSERT_OK(pbx_loan(q, 10, PBX_NOWAIT, &c));
    ASSERT_OK(pbx_cancel(&b));
    ASSERT_OK(pbx_cancel(&c));
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);

    q = open_box("l11", 1, PBX_DROP_NEWEST);
    send_copy(q, 1, 10);
    ASSERT_ERR(pbx_loan(q, 10, 0, &a), -ENOBUFS);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(a_held_receive_loan_is_never_dropped_or_overwritten_by_drop_oldest)
{
    pbx_t *q = open_box("l12", 2, PBX_DROP_OLDEST);
    send_copy(q, 1, 3000);
    send_copy(q, 2, 3000);
    struct pbx_loan v;
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &v), 3000); /* type 1 */
    /* Full: each send drops the oldest queued message, never the one lent. */
    for (long t = 3; t < 40; t++)
        send_copy(q, t, 3000);
    check_loan(&v, 1);
    struct pbx_loan s;
    ASSERT_OK(pbx_loan(q, 3000, 0, &s)); /* drops 39 too */
    fill_loan(&s, 50);
    check_loan(&v, 1);
    ASSERT_OK(pbx_commit(&s, 50, 0));
    ASSERT_OK(pbx_return(&v));
    expect_copy(q, 50, 3000);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

static int die_holding_loans(void *arg)
{
    (void) arg;
    pbx_t *h;
    if (pbx_open("l13", 0, NULL, &h) != 0)
        return 1;
    struct pbx_loan s, r;
    if (pbx_loan(h, 3000, 0, &s) != 0 || pbx_recv_loan(h, 0, 0, &r) != 3000)
        return 2;
    fill_loan(&s, 8);
    kill(getpid(), SIGKILL);
    return 3;
}

TEST(a_process_that_dies_holding_loans_loses_nothing)
{
    pbx_t *q = open_box("l13", 4, PBX_BLOCK);
    send_copy(q, 4, 3000);
    send_copy(q, 5, 20);
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(die_holding_loans, NULL)), 128 + SIGKILL);
    /* The receive loan's message comes back in its place, the send loan vanishes: waiting
     * receivers look after dead peers within 100 ms. */
    static unsigned char buf[MAXSZ];
    long got = 0;
    struct timespec t = {5, 0};
    ASSERT_EQ(pbx_timedrecv(q, 4, buf, sizeof(buf), 0, &got, &t), 3000);
    for (size_t i = 0; i < 3000; i++)
        ASSERT_EQ(buf[i], pattern(i, 4));
    expect_copy(q, 5, 20);
    struct pbx_stat st;
    double t0 = pbx_test_now_ms();
    do {
        pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL);
        ASSERT_OK(pbx_stat(q, &st));
    } while (st.msgs != 0 && pbx_test_now_ms() - t0 < 5000 && (pbx_test_sleep_ms(20), 1));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.sent, 2);
    for (int i = 0; i < 4; i++)
        send_copy(q, 6, 3000);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(a_hostile_chunk_chain_never_points_a_loan_outside_the_mapping)
{
    pbx_t *q = open_box("l14", 4, PBX_BLOCK);
    struct pbx_shm *m = pbx__handle_shm(q);
    ASSERT_TRUE(m != NULL);
    send_copy(q, 2, MAXSZ);
    struct pbx_loan r;
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &r), MAXSZ);
    struct pbx_slot *sl = &m->slots[r.id & 0xffffff];
    const uint8_t *lo = (const uint8_t *) m->h, *hi = lo + m->map_size;
    /* A peer points the chain out of range, then at the end too early, then loops it. */
    uint32_t first = sl->chunk, second = m->chunk_next[first], third = m->chunk_next[second];
    uint32_t damage[] = {0x7fffffffu, PBX_NONE, first};
    for (size_t d = 0; d < 3; d++) {
        m->chunk_next[second] = damage[d];
        r.priv[1] = 0; /* forget the cursor: walk from the slot */
        size_t off = 0;
        ssize_t n = 0;
        void *p;
        while (off < r.len && (n = pbx_loan_piece(&r, off, &p)) > 0) {
            ASSERT_TRUE((const uint8_t *) p >= lo && (const uint8_t *) p + n <= hi);
            off += (size_t) n;
        }
        if (d < 2)
            ASSERT_ERR(n, -EBADMSG);
        else
            ASSERT_EQ(off, r.len); /* a loop stays inside the mailbox's chunks */
    }
    sl->chunk = 0x7fffffffu;
    void *p;
    ASSERT_ERR(pbx_loan_piece(&r, 3000, &p), -EBADMSG);
    ASSERT_GT(pbx_loan_piece(&r, 0, &p), 0); /* the inline bytes are in the slot itself */
    /* A length beyond the mailbox's largest message is refused outright. */
    size_t len = r.len;
    r.len = (size_t) MAXSZ + 100000;
    ASSERT_ERR(pbx_loan_piece(&r, MAXSZ + 50000, &p), -EINVAL);
    r.len = len;
    /* Repaired, the loan ends as usual. */
    sl->chunk = first;
    m->chunk_next[second] = third;
    check_loan(&r, 2);
    ASSERT_OK(pbx_return(&r));
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

TEST(spool_loans_work_by_copying)
{
    char name[4096];
    spool_name(name, sizeof(name), "sp");
    struct pbx_options o = pbx_test_options(8, 64 * 1024, MAXSZ, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(name, PBX_CREATE, &o, &q));
    send_by_loan(q, 3, 3000);
    send_by_loan(q, 4, 0);
    struct pbx_loan c, r, copy;
    ASSERT_OK(pbx_loan(q, 10, 0, &c));
    copy = c;
    ASSERT_OK(pbx_cancel(&c));
    ASSERT_ERR(pbx_commit(&copy, 1, 0), -ENOENT);
    ASSERT_ERR(pbx_loan(q, MAXSZ + 1, 0, &c), -EMSGSIZE);
    ASSERT_EQ(pbx_recv_loan(q, 4, 0, &r), 0);
    ASSERT_EQ(r.type, 4);
    ASSERT_OK(pbx_return(&r));
    ASSERT_ERR(pbx_return(&r), -ENOENT);
    ASSERT_EQ(pbx_recv_loan(q, 0, 0, &r), 3000);
    check_loan(&r, 3);
    ASSERT_OK(pbx_loan(q, 10, 0, &c));
    ASSERT_OK(pbx_close(q)); /* ends both: the message goes back, the send loan is dropped */
    ASSERT_OK(pbx_open(name, 0, NULL, &q));
    expect_copy(q, 3, 3000);
    struct pbx_loan e;
    ASSERT_ERR(pbx_recv_loan(q, 0, PBX_NOWAIT, &e), -ENOMSG);
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

/* A loan belongs to the process, not the thread that took it: the orphan search, which judges
 * a WRITING slot by its thread, must not give back a loan whose thread has exited. */
static pbx_t *tq;
static struct pbx_loan thread_send, thread_recv;

static void *take_loans_and_exit(void *arg)
{
    (void) arg;
    if (pbx_loan(tq, 3000, 0, &thread_send) == 0)
        fill_loan(&thread_send, 7);
    pbx_recv_loan(tq, 0, 0, &thread_recv);
    return NULL;
}

TEST_THREADS(a_loan_outlives_the_thread_that_took_it)
{
    tq = open_box("l15", 4, PBX_BLOCK);
    send_copy(tq, 3, 3000);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, take_loans_and_exit, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_TRUE(thread_send.q == tq);
    ASSERT_TRUE(thread_recv.q == tq);
    /* Past the 100 ms between searches, a receive that finds nothing looks after dead peers. */
    pbx_test_sleep_ms(150);
    struct pbx_loan none;
    ASSERT_ERR(pbx_recv_loan(tq, 0, PBX_NOWAIT, &none), -ENOMSG);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(tq, &st));
    ASSERT_EQ(st.msgs, 2);
    ASSERT_EQ(st.claimed, 1);
    check_loan(&thread_recv, 3);
    ASSERT_OK(pbx_return(&thread_recv));
    ASSERT_OK(pbx_commit(&thread_send, 7, 0));
    expect_copy(tq, 7, 3000);
    ASSERT_OK(pbx_remove(tq));
    pbx_close(tq);
}

/* PBX_SYNC at commit: returns once a receiver has taken the message, as a PBX_SYNC send does;
 * a receive loan takes it at pbx_return(), not before. */
static pbx_t *sq;
static volatile int *sync_returned;

static int commit_sync(void *arg)
{
    (void) arg;
    struct pbx_loan l;
    if (pbx_loan(sq, 3000, 0, &l) != 0)
        return 1;
    fill_loan(&l, 6);
    int r = pbx_commit(&l, 6, PBX_SYNC);
    *sync_returned = 1;
    return r == 0 && l.q == NULL ? 0 : 2;
}

TEST(commit_with_pbx_sync_returns_once_the_message_is_returned)
{
    sq = open_box("l16", 4, PBX_BLOCK);
    sync_returned = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(sync_returned != MAP_FAILED);
    pid_t kid = pbx_test_fork(commit_sync, NULL);
    struct pbx_loan r;
    ASSERT_EQ(pbx_recv_loan(sq, 0, 0, &r), 3000);
    check_loan(&r, 6);
    pbx_test_sleep_ms(50);
    ASSERT_EQ(*sync_returned, 0); /* lent is not taken: the committer still waits */
    ASSERT_OK(pbx_return(&r));
    pbx_test_wait_ok(kid);
    ASSERT_EQ(*sync_returned, 1);
    struct pbx_loan l;
    ASSERT_OK(pbx_loan(sq, 10, 0, &l));
    ASSERT_ERR(pbx_commit(&l, 1, PBX_SYNC | PBX_NOWAIT), -EINVAL);
    ASSERT_OK(pbx_cancel(&l));
    munmap((void *) sync_returned, 4096);
    ASSERT_OK(pbx_remove(sq));
    pbx_close(sq);
}
