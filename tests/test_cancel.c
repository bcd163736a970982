/*
 * test_cancel.c — pthread_cancel() against threads inside postbox calls (docs/api.md,
 * "Cancellation"), on shared memory and on spools.
 *
 * Each storm runs victim threads that loop on one kind of call — a blocking receive, a claim
 * and its ack, a send on a full mailbox, a PBX_SYNC send, open and close — while the main
 * thread does a little work (sends, receives) and then cancels one victim at random, joins it
 * and starts another, a fixed number of times (PBX_CANCELS, default 200): bounded by cancels,
 * not by time. A victim records what a call returned with cancellation disabled, so every
 * cancel it suffers lands inside a postbox call. Afterwards every message must have been
 * received exactly once (sequence numbers), a cancelled send must have sent nothing, nothing
 * may be left in a spool's c/ or tmp/, the waiter and claim counts are back to zero, the
 * peers are the ones still open, and the mailbox still works.
 *
 * Before cancellation was made safe, a receiver cancelled after the claim rename left its
 * message in c/ for as long as the process lived, and its waiter count behind (issue 13); a
 * thread asleep in a shared-memory wait could not be cancelled at all until its slice ended.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/os/cancel.h" /* pbx__cancel_landed */
#include "harness.h"
#include "postbox.h"
#include "spool_util.h"

#define VICTIMS  3
#define MAX_SEQS (1u << 16)

enum victim_kind { RECV, CLAIM, SEND, SYNC_SEND, OPEN_CLOSE };

struct storm {
    pbx_t *q;
    const char *name;
    enum victim_kind kind;
    uint32_t next_seq;       /* seqs handed out (atomic) */
    uint8_t sent[MAX_SEQS];  /* 1: the send of seq returned success */
    uint32_t got[MAX_SEQS];  /* receptions of seq (atomic) */
    uint32_t opened, closed; /* OPEN_CLOSE: handles opened and closed by victims (atomic) */
};

static unsigned cancels_wanted(void)
{
    const char *e = getenv("PBX_CANCELS");
    return e && atoi(e) > 0 ? (unsigned) atoi(e) : 200;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t) (rng_state % n);
}

/* A little time on the CPU, of random length: cancels land at different places. */
static void jitter(void)
{
    unsigned n = rnd(20000);
    for (volatile unsigned i = 0; i < n; i++)
        ;
    if (rnd(4) == 0)
        sched_yield();
}

static void record_got(struct storm *s, uint32_t seq)
{
    if (seq < MAX_SEQS)
        __atomic_add_fetch(&s->got[seq], 1, __ATOMIC_RELAXED);
    else
        __atomic_add_fetch(&s->got[0], 1000, __ATOMIC_RELAXED); /* garbage: fails the check */
}

/* Cancellation is disabled only between calls, to record what one returned. */
#define RECORDING(stmt)                                                                            \
    do {                                                                                           \
        int old_;                                                                                  \
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old_);                                     \
        stmt;                                                                                      \
        pthread_setcancelstate(old_, NULL);                                                        \
    } while (0)

/* AddressSanitizer (gcc 12) checks its own sigaltstack call at thread exit against the stack
 * poison of frames a cancellation jumped over without telling it (see cancel.h): a false
 * report for any cancelled thread, postbox or not. Without an alternate stack it makes none. */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "use_sigaltstack=0";
}
#endif

static void close_handle(void *arg)
{
    pbx__cancel_landed();
    pbx_t **h = arg;
    if (*h)
        pbx_close(*h);
}

static void *victim_main(void *arg)
{
    struct storm *s = arg;
    for (;;) {
        uint32_t seq = 0;
        long type;
        uint64_t claim;
        ssize_t n;
        int r;
        switch (s->kind) {
        case RECV:
            n = pbx_recv(s->q, 0, &seq, sizeof(seq), 0, &type);
            RECORDING(if (n == (ssize_t) sizeof(seq)) record_got(s, seq));
            break;
        case CLAIM:
            n = pbx_claim(s->q, 0, &seq, sizeof(seq), 0, &type, &claim);
            RECORDING(if (n == (ssize_t) sizeof(seq)) {
                r = pbx_ack(s->q, claim);
                if (r == 0)
                    record_got(s, seq);
                else
                    record_got(s, MAX_SEQS); /* an ack refused: a failure */
            });
            break;
        case SEND:
        case SYNC_SEND:
            RECORDING(seq = __atomic_fetch_add(&s->next_seq, 1, __ATOMIC_RELAXED));
            if (seq >= MAX_SEQS)
                return NULL;
            r = pbx_send(s->q, 1, &seq, sizeof(seq), s->kind == SYNC_SEND ? PBX_SYNC : 0);
            RECORDING(if (r >= 0) s->sent[seq] = 1);
            break;
        case OPEN_CLOSE: {
            pbx_t *h = NULL;
            pthread_cleanup_push(close_handle, &h);
            r = pbx_open(s->name, 0, NULL, &h);
            RECORDING(if (r == 0) __atomic_add_fetch(&s->opened, 1, __ATOMIC_RELAXED));
            pthread_testcancel();
            struct pbx_stat st;
            pbx_stat(h, &st);
            pthread_testcancel();
            RECORDING(if (h && pbx_close(h) == 0) {
                h = NULL;
                __atomic_add_fetch(&s->closed, 1, __ATOMIC_RELAXED);
            });
            pthread_cleanup_pop(0);
            pthread_testcancel();
            break;
        }
        }
    }
    return NULL;
}

/* The main thread's share of the work between two cancels. */
static void main_work(struct storm *s)
{
    uint32_t seq;
    long type;
    switch (s->kind) {
    case RECV:
    case CLAIM:
        for (int i = 0; i < 3; i++) {
            seq = s->next_seq++;
            ASSERT_LT(seq, MAX_SEQS);
            ASSERT_OK(pbx_send(s->q, 1, &seq, sizeof(seq), 0));
            s->sent[seq] = 1;
        }
        break;
    case SEND:
    case SYNC_SEND:
        for (int i = 0; i < 3; i++) {
            ssize_t n = pbx_recv(s->q, 0, &seq, sizeof(seq), PBX_NOWAIT, &type);
            if (n == -ENOMSG)
                break;
            ASSERT_EQ(n, (ssize_t) sizeof(seq));
            record_got(s, seq);
        }
        break;
    case OPEN_CLOSE:
        break;
    }
    jitter();
}

static void check_spool_dirs(const char *dir)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s/c", dir);
    ASSERT_EQ(count_entries(path), 0); /* no claim file stranded */
    snprintf(path, sizeof(path), "%s/tmp", dir);
    ASSERT_EQ(count_entries(path), 0); /* no temporary file left by a cancelled send */
}

static void run_storm(const char *name, int spool, enum victim_kind kind)
{
    static struct storm s; /* 320 KiB: not on the stack */
    memset(&s, 0, sizeof(s));
    char full[4200], dir[4200];
    const char *qname = spool ? spool_name(full, sizeof(full), name) : name;
    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = kind == SEND || kind == SYNC_SEND ? 4 : 64;
    o.durability = PBX_DURABLE_NONE;
    ASSERT_OK(pbx_open(qname, PBX_CREATE | PBX_EXCL, &o, &s.q));
    s.name = qname;
    s.kind = kind;
    s.next_seq = 1; /* seq 0 is never sent: a reception of it is garbage */

    pthread_t v[VICTIMS];
    for (int i = 0; i < VICTIMS; i++)
        ASSERT_EQ(pthread_create(&v[i], NULL, victim_main, &s), 0);
    unsigned cancels = cancels_wanted();
    for (unsigned c = 0; c < cancels; c++) {
        main_work(&s);
        int i = (int) rnd(VICTIMS);
        ASSERT_EQ(pthread_cancel(v[i]), 0);
        void *res;
        ASSERT_EQ(pthread_join(v[i], &res), 0);
        ASSERT_TRUE(res == PTHREAD_CANCELED);
        ASSERT_EQ(pthread_create(&v[i], NULL, victim_main, &s), 0);
    }
    for (int i = 0; i < VICTIMS; i++) {
        ASSERT_EQ(pthread_cancel(v[i]), 0);
        ASSERT_EQ(pthread_join(v[i], NULL), 0);
    }

    /* Everything still queued comes out now. */
    uint32_t seq;
    long type;
    ssize_t n;
    while ((n = pbx_recv(s.q, 0, &seq, sizeof(seq), PBX_NOWAIT, &type)) == (ssize_t) sizeof(seq))
        record_got(&s, seq);
    ASSERT_EQ(n, -ENOMSG);

    uint32_t top = s.next_seq < MAX_SEQS ? s.next_seq : MAX_SEQS;
    ASSERT_EQ(s.got[0], 0);
    unsigned sent = 0, unconfirmed = 0;
    for (uint32_t i = 1; i < top; i++) {
        sent += s.sent[i];
        ASSERT_LE(s.got[i], 1); /* never twice */
        if (s.sent[i])
            ASSERT_EQ(s.got[i], 1); /* a returned send is received */
        else if (kind != SYNC_SEND)
            ASSERT_EQ(s.got[i], 0); /* a cancelled send sent nothing */
        else
            unconfirmed += s.got[i]; /* sent, cancelled while it waited for the take */
    }
    if (kind == SEND || kind == SYNC_SEND || kind == RECV || kind == CLAIM)
        ASSERT_GT(sent, 0);

    struct pbx_stat st;
    ASSERT_OK(pbx_stat(s.q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.recv_waiters, 0);
    ASSERT_EQ(st.send_waiters, 0);
    ASSERT_EQ(st.claimed, 0);
    struct pbx_peer peers[8];
    ssize_t np = pbx_peers(s.q, peers, 8);
    ASSERT_EQ(np, 1); /* this process, through the one handle still open */
    if (kind == OPEN_CLOSE) {
        ASSERT_GT(s.opened, 0);
        ASSERT_GT(s.closed, 0);
    }
    if (spool)
        check_spool_dirs(spool_dir(dir, sizeof(dir), name));

    /* Still works, PBX_SYNC included (a sender cancelled while listed must not be). */
    pthread_t r;
    s.kind = RECV;
    uint32_t before = s.got[7];
    ASSERT_EQ(pthread_create(&r, NULL, victim_main, &s), 0);
    seq = 7;
    ASSERT_OK(pbx_send(s.q, 1, &seq, sizeof(seq), PBX_SYNC));
    ASSERT_EQ(pthread_cancel(r), 0);
    ASSERT_EQ(pthread_join(r, NULL), 0);
    ASSERT_EQ(s.got[7], before + 1);
    ASSERT_OK(pbx_stat(s.q, &st));
    ASSERT_EQ(st.recv_waiters, 0);
    printf("%s: %u cancels, %u messages sent and received once each, %u sent by calls "
           "cancelled while they waited for the take\n",
           name, cancels, sent, unconfirmed);
    fflush(stdout);
    ASSERT_OK(pbx_remove(s.q));
    ASSERT_OK(pbx_close(s.q));
}

TEST_THREADS(cancelled_receivers_lose_no_message_on_shm)
{
    run_storm("cancel-recv", 0, RECV);
}

TEST_THREADS(cancelled_receivers_strand_no_claim_file_on_a_spool)
{
    run_storm("cancel-recv", 1, RECV);
}

TEST_THREADS(cancelled_claimers_lose_no_message_on_shm)
{
    run_storm("cancel-claim", 0, CLAIM);
}

TEST_THREADS(cancelled_claimers_lose_no_message_on_a_spool)
{
    run_storm("cancel-claim", 1, CLAIM);
}

TEST_THREADS(senders_cancelled_on_a_full_mailbox_send_nothing_on_shm)
{
    run_storm("cancel-send", 0, SEND);
}

TEST_THREADS(senders_cancelled_on_a_full_spool_send_nothing_and_leave_no_temporary_file)
{
    run_storm("cancel-send", 1, SEND);
}

TEST_THREADS(cancelled_sync_senders_leave_the_mailbox_working_on_shm)
{
    run_storm("cancel-sync", 0, SYNC_SEND);
}

TEST_THREADS(cancelled_sync_senders_leave_the_spool_working)
{
    run_storm("cancel-sync", 1, SYNC_SEND);
}

TEST_THREADS(threads_cancelled_around_open_and_close_leave_no_peer_on_shm)
{
    run_storm("cancel-open", 0, OPEN_CLOSE);
}

TEST_THREADS(threads_cancelled_around_open_and_close_leave_no_peer_on_a_spool)
{
    run_storm("cancel-open", 1, OPEN_CLOSE);
}
