/*
 * test_mutate.c — a live mailbox whose shared bytes are damaged at random, over and over.
 *
 * Invariant 2 of ARCHITECTURE.md says that nothing read from the shared region is trusted: a
 * peer with write access that scribbles on it (a bug, a stray pointer, a hostile process) may
 * lose or garble messages, but must not crash, hang or corrupt memory of the processes that
 * share the mailbox, and damage that is detected is reported as -EBADMSG.
 *
 * The test builds one region in a realistic state — rings that have wrapped, several types
 * queued, small and large messages, a slot a dead sender was filling and one a dead receiver
 * was reading — and keeps a copy of its bytes. Then, ITERATIONS times (PBX_MUTATE_ITERATIONS,
 * default 10 000 in make check, 100 000 per seed in make torture; the seed is
 * PBX_MUTATE_SEED), it puts those bytes back, changes a few
 * bytes or words of the header, the slots, the index or the rings, and runs open, send,
 * receive (every selection mode), peek, claim with ack or release, loans of both kinds (pieces
 * written and read in place), peers, notify, a PBX_SYNC
 * send and the descriptor now and then, stat and now and then remove against the result, both
 * through a handle opened before the damage and through one opened after it. Each operation
 * must return success or one of the documented errors, within a watchdog's time limit (a
 * damaged lock word must not make a call wait forever). The run ends with the figures: how
 * many mutations, operations, and how often damage was reported.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "shm/region.h"

#define NAME          "mutant"
#define BIG           700
#define WATCHDOG_SECS 10 /* an operation that takes longer than this is a hang */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: deterministic for a seed, good enough to pick positions and values. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned long env_number(const char *name, unsigned long def)
{
    const char *v = getenv(name);
    return v && *v ? strtoul(v, NULL, 0) : def;
}

/* ---- the watchdog: which operation of which iteration hung ----------------------------------- */

static volatile unsigned long cur_iteration;
static volatile const char *cur_op = "setup";

static void on_alarm(int sig)
{
    (void) sig;
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "HANG: iteration %lu, operation %s took over %d s\n",
                     cur_iteration, (const char *) cur_op, WATCHDOG_SECS);
    if (write(2, msg, (size_t) n) < 0)
        _exit(3);
    _exit(2);
}

/* ---- the region under test ------------------------------------------------------------------- */

static unsigned char *live;     /* our own view of the mailbox file */
static unsigned char *pristine; /* the bytes of the region before any damage */
static size_t region_size;
static struct pbx_geometry geo;

static char *mailbox_path(void)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.%s", getenv("POSTBOX_DIR"), NAME);
    return path;
}

static void map_live(void)
{
    int fd = open(mailbox_path(), O_RDWR | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    region_size = (size_t) st.st_size;
    live = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_TRUE(live != MAP_FAILED);
    close(fd);
}

/* After a remove: a new file under the name, with the pristine bytes (a region keeps no
 * record of its file, so this is the same mailbox again). */
static void recreate_file(void)
{
    munmap(live, region_size);
    int fd = open(mailbox_path(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, pristine, region_size), (ssize_t) region_size);
    close(fd);
    map_live();
}

struct op {
    const char *crash_at;
    long type;
    size_t len;
    int receive;
};

static int die_during(void *arg)
{
    const struct op *op = arg;
    static unsigned char buf[BIG];
    memset(buf, (int) op->type, sizeof(buf));
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q))
        return 4;
    setenv("PBX_CRASH_AT", op->crash_at, 1);
    if (op->receive)
        pbx_recv(q, op->type, buf, sizeof(buf), 0, NULL);
    else
        pbx_send(q, op->type, buf, op->len, 0);
    return 3;
}

/* The realistic state the damage is applied to. */
static void build_region(pbx_t *q)
{
    static unsigned char buf[BIG];
    /* Wrap the rings and the inbox a few times, so that damage meets entries of earlier laps:
     * for 8 messages they hold 64 entries (max_msgs + 32, rounded up to a power of two; the
     * chunk ring 128), and 150 round trips of mixed sizes pass over each at least twice. */
    for (int i = 0; i < 150; i++) {
        size_t n = (size_t) (i * 37) % BIG + 1;
        memset(buf, i, n);
        ASSERT_OK(pbx_send(q, 1 + i % 3, buf, n, 0));
        ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), 0, NULL), (long long) n);
    }
    static const struct {
        long type;
        size_t len;
    } queued[] = {{1, 5}, {2, 300}, {3, 1}, {1, BIG}, {5, 24}, {2, 25}};
    for (size_t i = 0; i < PBX_ARRAY_LEN(queued); i++) {
        memset(buf, (int) queued[i].type, queued[i].len);
        ASSERT_OK(pbx_send(q, queued[i].type, buf, queued[i].len, 0));
    }
    /* A sender killed while filling a large message, a receiver killed while reading one. */
    struct op writer = {"send.copying", 7, 400, 0}, reader = {"recv.copying", 2, 0, 1};
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(die_during, &writer)), 128 + SIGKILL);
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(die_during, &reader)), 128 + SIGKILL);
    /* Every type entry, hash cell and heap slot in use is now in the region. */
}

/* ---- mutations ------------------------------------------------------------------------------- */

struct area {
    const char *name;
    uint64_t off, len;
};

static struct area areas[16];
static unsigned n_areas;

static void add_area(const char *name, uint64_t off, uint64_t len)
{
    if (n_areas >= PBX_ARRAY_LEN(areas))
        pbx_test_fail(__FILE__, __LINE__, "too many areas: raise the size of areas[]");
    if (len)
        areas[n_areas++] = (struct area){name, off, len};
}

static void plan_areas(void)
{
    add_area("header", 0, offsetof(struct pbx_header, listen));
    add_area("peer and sync tables", offsetof(struct pbx_header, listen),
             sizeof(struct pbx_header) - offsetof(struct pbx_header, listen));
    add_area("slots", geo.off_slots, (uint64_t) geo.nslots * sizeof(struct pbx_slot));
    add_area("chunk links", geo.off_chunk_next, (uint64_t) geo.nchunks * 4);
    add_area("inbox", geo.off_inbox, ((uint64_t) geo.inbox_mask + 1) * 8);
    add_area("rings", geo.off_slot_ring, geo.off_types - geo.off_slot_ring);
    add_area("types", geo.off_types, (uint64_t) geo.ntypes * sizeof(struct pbx_type_entry));
    add_area("hash and heaps", geo.off_hash, geo.region_size - geo.off_hash);
    add_area("anywhere", 0, geo.region_size);
}

static const uint64_t special[] = {0,          1,          2,          0xff,       0x7fffffff,
                                   0x80000000, 0xffffffff, 0xfffffffe, 1ull << 63, ~0ull};

/* One random change: a bit, a byte, a 32-bit or a 64-bit word, set to noise or to a value at
 * an edge (0, 1, all ones, a sign bit) — the values bounds checks get wrong. */
static void mutate_once(void)
{
    const struct area *a = &areas[rnd() % n_areas];
    uint64_t off = a->off + rnd() % a->len;
    uint64_t v = rnd() % 3 == 0 ? special[rnd() % PBX_ARRAY_LEN(special)] : rnd();
    switch (rnd() % 4) {
    case 0:
        live[off] ^= (unsigned char) (1u << (rnd() % 8));
        break;
    case 1:
        live[off] = (unsigned char) v;
        break;
    case 2: {
        off &= ~(uint64_t) 3;
        uint32_t w = (uint32_t) v;
        memcpy(live + off, &w, 4);
        break;
    }
    default:
        off &= ~(uint64_t) 7;
        if (off + 8 > region_size)
            off = region_size - 8;
        memcpy(live + off, &v, 8);
        break;
    }
}

/* ---- operations ------------------------------------------------------------------------------ */

static unsigned long n_ops, n_badmsg, n_ok, n_open_refused;

/* A result the documentation allows for a call on a damaged mailbox. */
static void check_result(long long r, const char *what)
{
    n_ops++;
    if (r >= 0) {
        n_ok++;
        return;
    }
    switch (-r) {
    case EBADMSG:
        n_badmsg++;
        return;
    case EAGAIN:
    case ENOMSG:
    case EIDRM:
    case E2BIG:
    case ENOBUFS:
    case ETIMEDOUT:
    case EMSGSIZE: /* a header changed within what the layout allows: a smaller max */
    case EPROTO:
    case ENOENT: /* ack/release of a claim whose slot the damage changed */
    case EUSERS: /* a peer or sync table that the damage filled */
    case EXDEV:  /* open: the recorded PID namespace damaged (src/os/ident.h) */
        return;
    default:
        pbx_test_fail(__FILE__, __LINE__, "iteration %lu: %s returned %lld (%s)", cur_iteration,
                      what, r, pbx_test_errname((int) r));
    }
}

#define RUN(what, expr)                                                                            \
    do {                                                                                           \
        cur_op = what;                                                                             \
        alarm(WATCHDOG_SECS);                                                                      \
        long long r_ = (long long) (expr);                                                         \
        alarm(0);                                                                                  \
        check_result(r_, what);                                                                    \
    } while (0)

static void exercise(pbx_t *q, int may_remove)
{
    static unsigned char buf[BIG + 64], small[8];
    struct pbx_stat st;
    long type = 0;
    memset(buf, 0x5a, sizeof(buf));
    RUN("stat", pbx_stat(q, &st));
    RUN("send small", pbx_send(q, 4, buf, 10, PBX_NOWAIT));
    RUN("send large", pbx_send(q, 6, buf, BIG, PBX_NOWAIT));
    RUN("recv any", pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type));
    RUN("recv type 2", pbx_recv(q, 2, buf, sizeof(buf), PBX_NOWAIT, &type));
    RUN("recv lowest <= 3", pbx_recv(q, -3, buf, sizeof(buf), PBX_NOWAIT, &type));
    RUN("recv except 1", pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, &type));
    RUN("peek", pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_PEEK, &type));
    RUN("recv truncated", pbx_recv(q, 0, small, sizeof(small), PBX_NOWAIT | PBX_NOERROR, &type));
    RUN("recv too small", pbx_recv(q, 0, small, sizeof(small), PBX_NOWAIT, &type));
    if (cur_iteration % 64 == 0) {
        /* Waits its full millisecond when nothing comes: only now and then. */
        struct timespec t = {0, 1000000};
        RUN("timed recv", pbx_timedrecv(q, 9, buf, sizeof(buf), 0, &type, &t));
    }
    /* Claims, participants, registrations (docs/signals.md). */
    uint64_t claim = 0;
    RUN("claim", pbx_claim(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type, &claim));
    if (claim && cur_iteration % 2)
        RUN("ack", pbx_ack(q, claim));
    else if (claim)
        RUN("release", pbx_release(q, claim));
    RUN("ack of a made-up claim", pbx_ack(q, (1ull << 30) | 3));
    /* Loans: every piece written or read in place must lie inside the mapping (a fault here
     * is the failure), whatever the damage to the slot and its chunk chain. */
    struct pbx_loan loan;
    RUN("loan", pbx_loan(q, BIG, PBX_NOWAIT, &loan));
    if (loan.q) {
        ssize_t n;
        void *p;
        for (size_t off = 0; (n = pbx_loan_piece(&loan, off, &p)) > 0; off += (size_t) n)
            memset(p, 0x3c, (size_t) n);
        RUN("loan piece", n);
        RUN(cur_iteration % 2 ? "commit" : "cancel",
            cur_iteration % 2 ? pbx_commit(&loan, 5, 0) : pbx_cancel(&loan));
    }
    RUN("recv loan", pbx_recv_loan(q, 0, PBX_NOWAIT, &loan));
    if (loan.q) {
        ssize_t n;
        void *p;
        unsigned sum = 0;
        for (size_t off = 0; (n = pbx_loan_piece(&loan, off, &p)) > 0; off += (size_t) n)
            for (ssize_t i = 0; i < n; i++)
                sum += ((volatile unsigned char *) p)[i];
        (void) sum;
        RUN("recv loan piece", n);
        RUN("return", pbx_return(&loan));
    }
    struct pbx_peer peers[4];
    RUN("peers", pbx_peers(q, peers, 4));
    if (cur_iteration % 4 == 0) {
        /* SIGURG is ignored by default: a signal that reaches us does no harm. Every fourth
         * iteration: a registration takes both locks and looks at every slot. */
        RUN("notify", pbx_notify(q, SIGURG, 7));
        RUN("send after notify", pbx_send(q, 4, buf, 10, PBX_NOWAIT));
        RUN("notify off", pbx_notify(q, 0, 0));
    }
    if (cur_iteration % 64 == 1) {
        struct timespec t = {0, 1000000};
        RUN("sync send", pbx_timedsend(q, 5, buf, 10, PBX_SYNC, &t));
        RUN("fd", pbx_fd(q));
    }
    RUN("stat again", pbx_stat(q, &st));
    if (may_remove)
        RUN("remove", pbx_remove(q));
}

TEST(random_damage_to_a_live_region_never_crashes_or_hangs_and_is_reported)
{
    /* Bounded by work, not by the harness's time limit: 10 000 iterations take about 13 s on a
     * 2-CPU machine with a load of 12, well inside the limit; make torture runs 100 000. */
    unsigned long iterations = env_number("PBX_MUTATE_ITERATIONS", 10000);
    rng_state = env_number("PBX_MUTATE_SEED", 20261124);
    signal(SIGALRM, on_alarm);

    struct pbx_options o = pbx_test_options(8, 4096, 1000, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &q));
    build_region(q);
    map_live();
    memcpy(&geo, &((struct pbx_header *) live)->geo, sizeof(geo));
    pristine = malloc(region_size);
    ASSERT_TRUE(pristine != NULL);
    memcpy(pristine, live, region_size);
    plan_areas();

    unsigned long mutations = 0, removes = 0;
    for (unsigned long i = 0; i < iterations; i++) {
        cur_iteration = i;
        memcpy(live, pristine, region_size);
        unsigned n = 1 + (unsigned) (rnd() % 4);
        for (unsigned k = 0; k < n; k++)
            mutate_once();
        mutations += n;

        /* The handle opened before the damage: its geometry is its own. */
        exercise(q, 0);
        /* A handle opened after it: the header is checked first. */
        pbx_t *q2 = NULL;
        cur_op = "open";
        alarm(WATCHDOG_SECS);
        int r = pbx_open(NAME, 0, NULL, &q2);
        alarm(0);
        if (r == 0) {
            int remove = i % 97 == 0;
            exercise(q2, remove);
            pbx_close(q2);
            if (remove && access(mailbox_path(), F_OK) != 0) {
                removes++;
                recreate_file();
                pbx_close(q);
                ASSERT_OK(pbx_open(NAME, 0, NULL, &q));
            }
        } else {
            /* -EXDEV: the damage hit the recorded PID namespace (src/os/ident.h). */
            if (r != -EBADMSG && r != -EPROTO && r != -EXDEV)
                pbx_test_fail(__FILE__, __LINE__, "iteration %lu: open returned %d (%s)", i, r,
                              pbx_test_errname(r));
            n_open_refused++;
        }
    }

    /* Undamaged again, the mailbox works. */
    memcpy(live, pristine, region_size);
    pbx_close(q);
    ASSERT_OK(pbx_open(NAME, 0, NULL, &q));
    ASSERT_OK(pbx_send(q, 9, "ok", 2, PBX_NOWAIT));
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 9, buf, sizeof(buf), PBX_NOWAIT, NULL), 2);
    printf("mutation: %lu iterations, %lu mutations, %lu operations (%lu succeeded, %lu "
           "-EBADMSG), %lu damaged headers refused at open, %lu removes\n",
           iterations, mutations, n_ops, n_ok, n_badmsg, n_open_refused, removes);
    fflush(stdout);
    pbx_close(q);
    munmap(live, region_size);
    free(pristine);
}
