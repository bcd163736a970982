/*
 * test_spool_faults.c — every file-system call of a spool operation made to fail in turn.
 *
 * Every call the spool makes on its files goes through the table of src/os/fs.h. These tests
 * replace each entry with a wrapper that counts the calls and makes call number i fail with
 * EIO or ENOSPC (a write fails after writing half, as a full disk does). For each operation —
 * creating a spool, a send into a new bucket and into an existing one, a receive, a claim, an
 * ack — they run it once for every i until a run makes fewer than i + 1 calls, so a step added
 * to an operation later is covered without touching this file. After each failure, with the
 * real calls back, they check what docs/spool.md promises:
 *
 * - the call returned 0 or exactly the injected error (never another, misleading one);
 * - a failed flush (fsync, fdatasync, syncfs) is never hidden: the send, create or ack that
 *   met it fails (a receive hands its message over and says so on stderr, since failing it
 *   would lose a message it already deleted);
 * - no acknowledged message is lost or duplicated, a message whose send failed is received at
 *   most once, every message received is whole, and nothing is left claimed or in tmp/; a new
 *   bucket whose entry failed to flush is not left behind (a later flush would prove nothing);
 * - the spool is still usable: a send and a receive work.
 *
 * A last test holds the group-commit flush lock while two senders rename into one group, then
 * fails the group's flush: both sends must get the error (FAILED FLUSHES in src/spool/spool.c).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "os/fs.h"
#include "shm/lock.h"
#include "spool/format.h"
#include "spool_util.h"

/* ---- the failing table ----------------------------------------------------------------- */

static struct pbx_fs_calls real;
static int fail_at = -1; /* the call number to fail (-1: none) */
static int fail_err;     /* -EIO or -ENOSPC */
static int calls;        /* calls made since install() */
static int failed;       /* the injected failure happened */
static const char *failed_name;
static int failed_flush; /* ... and it was a flush */

/* Count a call; its injected error, or 0 to make the real call. */
static int step(const char *name, int flush)
{
    int n = __atomic_fetch_add(&calls, 1, __ATOMIC_SEQ_CST);
    int at = __atomic_load_n(&fail_at, __ATOMIC_SEQ_CST);
    if (getenv("PBX_TEST_STEPS")) /* to see the walk */
        fprintf(stderr, "call %d: %s%s\n", n, name, n == at ? " (fails)" : "");
    if (n != at)
        return 0;
    failed_name = name;
    failed_flush = flush;
    __atomic_store_n(&failed, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&fail_err, __ATOMIC_SEQ_CST);
}

static int w_write_all(int fd, const void *buf, size_t len)
{
    int e = step("write", 0);
    if (e && len > 1)
        real.write_all(fd, buf, len / 2); /* a full disk: part of it written */
    return e ? e : real.write_all(fd, buf, len);
}
static int w_fsync(int fd)
{
    int e = step("fsync", 1);
    return e ? e : real.fsync(fd);
}
static int w_fdatasync(int fd)
{
    int e = step("fdatasync", 1);
    return e ? e : real.fdatasync(fd);
}
static int w_syncfs(int fd)
{
    int e = step("syncfs", 1);
    return e ? e : real.syncfs(fd);
}
static int w_renameat(int a, const char *b, int c, const char *d)
{
    int e = step("renameat", 0);
    return e ? e : real.renameat(a, b, c, d);
}
static int w_mkdirat(int a, const char *b, mode_t m)
{
    int e = step("mkdirat", 0);
    return e ? e : real.mkdirat(a, b, m);
}
static int w_unlinkat(int a, const char *b, int f)
{
    int e = step("unlinkat", 0);
    return e ? e : real.unlinkat(a, b, f);
}
static int w_openat(int a, const char *b, int f, mode_t m)
{
    int e = step("openat", 0);
    return e ? e : real.openat(a, b, f, m);
}
static int w_close(int fd)
{
    int e = step("close", 0);
    int r = real.close(fd); /* released even when it fails, as close(2) does */
    return e ? e : r;
}
static int w_fstat(int fd, struct stat *st)
{
    int e = step("fstat", 0);
    return e ? e : real.fstat(fd, st);
}
static int w_fstatat(int a, const char *b, struct stat *st, int f)
{
    int e = step("fstatat", 0);
    return e ? e : real.fstatat(a, b, st, f);
}
static int w_fchmod(int fd, mode_t m)
{
    int e = step("fchmod", 0);
    return e ? e : real.fchmod(fd, m);
}
static int w_fchmodat(int a, const char *b, mode_t m)
{
    int e = step("fchmodat", 0);
    return e ? e : real.fchmodat(a, b, m);
}
static int w_faccessat(int a, const char *b, int m, int f)
{
    int e = step("faccessat", 0);
    return e ? e : real.faccessat(a, b, m, f);
}
static ssize_t w_pread(int fd, void *buf, size_t len, off_t off)
{
    int e = step("pread", 0);
    return e ? e : real.pread(fd, buf, len, off);
}
static int w_dir_open(int fd, DIR **out)
{
    int e = step("dir_open", 0);
    return e ? e : real.dir_open(fd, out);
}
static int w_dir_next(DIR *d, const char **name)
{
    int e = step("dir_next", 0);
    return e ? e : real.dir_next(d, name);
}
static int w_poll(struct pollfd *p, nfds_t n, int ms)
{
    int e = step("poll", 0);
    return e ? e : real.poll(p, n, ms);
}

/* While the counting table is installed and other threads call through it: count afresh
 * from now, and fail call number at. (Swapping the table itself while they run would race.) */
static void arm(int at, int err)
{
    __atomic_store_n(&fail_at, -1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&failed, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fail_err, err, __ATOMIC_SEQ_CST);
    __atomic_store_n(&calls, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fail_at, at, __ATOMIC_SEQ_CST);
}

/* Count (and fail call number at, -1: none) every call from now on. */
static void install(int at, int err)
{
    pbx__fs_table_reset();
    real = *pbx__fs_table();
    fail_at = at;
    fail_err = err;
    calls = 0;
    failed = 0;
    failed_name = "";
    failed_flush = 0;
    struct pbx_fs_calls *t = pbx__fs_table();
    t->write_all = w_write_all;
    t->fsync = w_fsync;
    t->fdatasync = w_fdatasync;
    t->syncfs = w_syncfs;
    t->renameat = w_renameat;
    t->mkdirat = w_mkdirat;
    t->unlinkat = w_unlinkat;
    t->openat = w_openat;
    t->close = w_close;
    t->fstat = w_fstat;
    t->fstatat = w_fstatat;
    t->fchmod = w_fchmod;
    t->fchmodat = w_fchmodat;
    t->faccessat = w_faccessat;
    t->pread = w_pread;
    t->dir_open = w_dir_open;
    t->dir_next = w_dir_next;
    t->poll = w_poll;
}

static void uninstall(void)
{
    pbx__fs_table_reset();
}

/* ---- what the tests check -------------------------------------------------------------- */

static char name[4096], dir[4096];
static const char *what; /* the operation under test, for messages */
static const char *const durability_names[] = {"always", "batch", "none"};
static unsigned durability;

#define STEP_FAIL(fmt, ...)                                                                        \
    pbx_test_fail(__FILE__, __LINE__, "%s (durability %s), call %d (%s) failing with %s: " fmt,    \
                  what, durability_names[durability], fail_at, failed_name,                        \
                  pbx_test_errname(fail_err), __VA_ARGS__)
#define STEP_EQ(a, b)                                                                              \
    do {                                                                                           \
        long long a_ = (long long) (a), b_ = (long long) (b);                                      \
        if (a_ != b_)                                                                              \
            STEP_FAIL("%s == %s: %lld vs %lld", #a, #b, a_, b_);                                   \
    } while (0)
#define STEP_TRUE(x)                                                                               \
    do {                                                                                           \
        if (!(x))                                                                                  \
            STEP_FAIL("%s: false", #x);                                                            \
    } while (0)

static pbx_t *make_spool(void)
{
    struct pbx_options o = pbx_test_options(64, 65536, 256, PBX_BLOCK);
    o.durability = durability;
    pbx_t *q;
    ASSERT_OK(pbx_open(spool_name(name, sizeof(name), "f"), PBX_CREATE | PBX_EXCL, &o, &q));
    spool_dir(dir, sizeof(dir), "f");
    return q;
}

static void drop_spool(pbx_t *q)
{
    ASSERT_OK(pbx_remove(q));
    pbx_close(q);
}

static int entries_of(const char *rel)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return count_entries(path);
}

/* Bucket directories in q/ that hold no message. */
static int empty_buckets(void)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/q", dir);
    DIR *d = opendir(path);
    ASSERT_TRUE(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char b[8448];
        snprintf(b, sizeof(b), "%s/%s", path, e->d_name);
        n += count_entries(b) == 0;
    }
    closedir(d);
    return n;
}

/*
 * Receive everything queued and compare with what must be there: each of must[] exactly once;
 * maybe (NULL: none) at most once; every message whole. Then nothing is claimed or left in
 * tmp/, and the spool takes and gives one more message.
 */
static void expect_contents(pbx_t *q, const char *const *must, int n_must, const char *maybe)
{
    int seen[8] = {0}, maybe_seen = 0;
    STEP_TRUE(n_must <= 8);
    for (;;) {
        char buf[256];
        ssize_t r = pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL);
        if (r == -ENOMSG)
            break;
        STEP_TRUE(r >= 0);
        int which = -1;
        for (int i = 0; i < n_must && which < 0; i++)
            if ((size_t) r == strlen(must[i]) && memcmp(buf, must[i], (size_t) r) == 0)
                which = i;
        if (which >= 0) {
            STEP_EQ(seen[which], 0);
            seen[which] = 1;
            continue;
        }
        STEP_TRUE(maybe && (size_t) r == strlen(maybe) && memcmp(buf, maybe, (size_t) r) == 0);
        STEP_EQ(maybe_seen, 0);
        maybe_seen = 1;
    }
    for (int i = 0; i < n_must; i++)
        STEP_EQ(seen[i], 1);
    STEP_EQ(entries_of("c"), 0);
    STEP_EQ(entries_of("tmp"), 0);
    struct pbx_stat st;
    STEP_EQ(pbx_stat(q, &st), 0);
    STEP_EQ(st.msgs, 0);
    /* Still usable. */
    STEP_EQ(pbx_send(q, 9, "usable", 6, 0), 0);
    char buf[16];
    long type = 0;
    STEP_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type), 6);
    STEP_EQ(type, 9);
}

static const int errs[] = {-EIO, -ENOSPC};
#define N_ERRS 2

/* ---- send ------------------------------------------------------------------------------ */

/* A send (into a new bucket, or after "pre" into the same one) with call i failing. Returns
 * whether the failure was injected (0: the send made fewer calls; the walk is over). */
static int send_with_failure(int at, int err, int existing_bucket)
{
    pbx_t *q = make_spool();
    if (existing_bucket)
        ASSERT_OK(pbx_send(q, 1, "pre", 3, 0));
    install(at, err);
    int r = pbx_send(q, 1, "msg", 3, 0);
    uninstall();
    int injected = failed;
    if (injected) {
        STEP_TRUE(r == 0 || r == err);
        if (failed_flush)
            STEP_EQ(r, err); /* a flush that failed is never hidden */
        /* A bucket whose entry in q/ failed to flush is not left for a later flush to count
         * as durable: it is removed, and the next send makes it again. */
        if (failed_flush)
            STEP_EQ(empty_buckets(), 0);
        const char *pre[] = {"pre"};
        const char *both[] = {"pre", "msg"};
        const char *only[] = {"msg"};
        if (r == 0)
            expect_contents(q, existing_bucket ? both : only, existing_bucket ? 2 : 1, NULL);
        else
            expect_contents(q, pre, existing_bucket, "msg");
    } else {
        ASSERT_OK(r);
    }
    drop_spool(q);
    return injected;
}

TEST(send_every_step_failing_loses_nothing_and_reports_it)
{
    what = "send";
    int walked = 0;
    for (durability = 0; durability < 3; durability++)
        for (int existing = 0; existing < 2; existing++)
            for (size_t e = 0; e < N_ERRS; e++)
                for (int at = 0; send_with_failure(at, errs[e], existing); at++)
                    walked++;
    printf("send: %d failing calls walked\n", walked);
    ASSERT_GT(walked, 3 * 2 * 2 * 8); /* at least 8 calls per send: the walk did walk */
}

/* ---- receive, claim, ack --------------------------------------------------------------- */

enum recv_op { OP_RECV, OP_CLAIM, OP_ACK };

static int recv_with_failure(int at, int err, enum recv_op op)
{
    pbx_t *q = make_spool();
    ASSERT_OK(pbx_send(q, 1, "a", 1, 0));
    ASSERT_OK(pbx_send(q, 1, "b", 1, 0));
    char buf[16];
    uint64_t id = 0;
    if (op == OP_ACK)
        ASSERT_EQ(pbx_claim(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL, &id), 1);
    install(at, err);
    ssize_t r = op == OP_RECV    ? pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL)
                : op == OP_CLAIM ? pbx_claim(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL, &id)
                                 : pbx_ack(q, id);
    uninstall();
    int injected = failed;
    const char *both[] = {"a", "b"};
    const char *rest[] = {"b"};
    if (!injected) {
        ASSERT_OK(r);
    } else if (op == OP_ACK) {
        STEP_TRUE(r == 0 || r == err);
        if (failed_flush)
            STEP_EQ(r, err);
        if (r) {
            /* Not deleted (the claim is still held: ack again), or deleted but not flushed
             * (the message is gone; it was handed over by the claim). */
            int again = pbx_ack(q, id);
            STEP_TRUE(again == 0 || again == -ENOENT);
        }
        expect_contents(q, rest, 1, NULL);
    } else {
        STEP_TRUE(r == 1 || r == err);
        if (r == 1) {
            STEP_TRUE(buf[0] == 'a');
            if (op == OP_CLAIM)
                STEP_EQ(pbx_ack(q, id), 0);
        }
        expect_contents(q, r == 1 ? rest : both, r == 1 ? 1 : 2, NULL);
    }
    drop_spool(q);
    return injected;
}

TEST(recv_claim_and_ack_every_step_failing_lose_nothing)
{
    static const char *const ops[] = {"recv", "claim", "ack"};
    int walked = 0;
    for (durability = 0; durability < 3; durability += 2) /* always, none */
        for (int op = OP_RECV; op <= OP_ACK; op++) {
            what = ops[op];
            for (size_t e = 0; e < N_ERRS; e++)
                for (int at = 0; recv_with_failure(at, errs[e], (enum recv_op) op); at++)
                    walked++;
        }
    printf("receive: %d failing calls walked\n", walked);
    ASSERT_GT(walked, 2 * 2 * 3 * 3);
}

/* ---- create ---------------------------------------------------------------------------- */

/* Hidden directories .f.* that a creation or removal left beside the spool. */
static int hidden_leftovers(void)
{
    DIR *d = opendir(getenv("POSTBOX_DIR"));
    ASSERT_TRUE(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, ".f.", 3) == 0;
    closedir(d);
    return n;
}

static int create_with_failure(int at, int err)
{
    struct pbx_options o = pbx_test_options(64, 65536, 256, PBX_BLOCK);
    o.durability = durability;
    pbx_t *q = NULL;
    spool_name(name, sizeof(name), "f");
    spool_dir(dir, sizeof(dir), "f");
    install(at, err);
    int r = pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q);
    uninstall();
    int injected = failed;
    if (injected) {
        STEP_TRUE(r == 0 || r == err);
        if (failed_flush)
            STEP_EQ(r, err); /* the spool's files and its name must be durable, or it fails */
        STEP_EQ(hidden_leftovers(), 0);
        if (r) {
            STEP_TRUE(q == NULL);
            /* The name is free, or names a whole spool (the creation worked, the open that
             * followed it failed): either way it opens now. */
            STEP_EQ(pbx_open(name, PBX_CREATE, &o, &q), 0);
        }
        expect_contents(q, NULL, 0, NULL);
    } else {
        ASSERT_OK(r);
    }
    drop_spool(q);
    return injected;
}

TEST(create_every_step_failing_reports_it_and_leaves_no_half_spool)
{
    what = "create";
    int walked = 0;
    for (durability = 0; durability < 3; durability++)
        for (size_t e = 0; e < N_ERRS; e++)
            for (int at = 0; create_with_failure(at, errs[e]); at++)
                walked++;
    printf("create: %d failing calls walked\n", walked);
    ASSERT_GT(walked, 3 * 2 * 20);
}

/* ---- a group of senders whose flush fails ---------------------------------------------- */

static pbx_t *group_q;
static int group_r[2];

static void *group_sender(void *arg)
{
    int i = (int) (intptr_t) arg;
    char text[8];
    snprintf(text, sizeof(text), "g%d", i);
    group_r[i] = pbx_send(group_q, 1, text, 2, 0);
    return NULL;
}

/* The state page's count of renames, read as the spool reads it: under the spool lock. */
static uint64_t renames_now(struct pbx_spool_state *st, const struct pbx_lock_ctx *ctx)
{
    ASSERT_TRUE(pbx__lock_acquire(&st->lock, ctx) >= 0);
    uint64_t n = st->renames;
    pbx__lock_release(&st->lock);
    return n;
}

static int group_with_failure(int at, int err)
{
    pbx_t *q = make_spool();
    ASSERT_OK(pbx_send(q, 1, "pre", 3, 0)); /* the bucket exists, its entry flushed */
    /* Hold the flush lock, as a flusher busy with an earlier group would. */
    char path[8192];
    snprintf(path, sizeof(path), "%s/state", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    struct stat sb;
    ASSERT_EQ(fstat(fd, &sb), 0);
    struct pbx_spool_state *st = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_TRUE(st != MAP_FAILED);
    close(fd);
    struct pbx_lock_ctx ctx = {sb.st_dev, sb.st_ino};
    ASSERT_TRUE(pbx__lock_acquire(&st->flush_lock, &ctx) >= 0);
    uint64_t base = renames_now(st, &ctx);
    group_q = q;
    install(-1, err); /* counting from now, failing nothing until armed below */
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, group_sender, (void *) (intptr_t) i), 0);
    /* Both renamed: one group, which whoever takes the flush lock next flushes. */
    while (renames_now(st, &ctx) < base + 2)
        sched_yield();
    arm(at, err);
    pbx__lock_release(&st->flush_lock);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_join(t[i], NULL), 0);
    uninstall();
    munmap(st, 4096);
    int injected = failed;
    if (injected) {
        /* One group, one outcome: the sender that did not flush is told what the flusher
         * was, never success after a failed flush of its rename. */
        STEP_EQ(group_r[0], group_r[1]);
        STEP_TRUE(group_r[0] == 0 || group_r[0] == err);
        if (failed_flush)
            STEP_EQ(group_r[0], err);
        /* Both messages were renamed into the queue: there they stay, whatever the outcome. */
        const char *all[] = {"pre", "g0", "g1"};
        expect_contents(q, all, 3, NULL);
    } else {
        ASSERT_EQ(group_r[0], 0);
        ASSERT_EQ(group_r[1], 0);
    }
    drop_spool(q);
    return injected;
}

TEST_THREADS(every_send_of_a_group_whose_flush_fails_gets_the_error)
{
    what = "group send";
    durability = PBX_DURABLE_ALWAYS;
    int walked = 0;
    for (size_t e = 0; e < N_ERRS; e++)
        for (int at = 0; group_with_failure(at, errs[e]); at++)
            walked++;
    printf("group: %d failing calls walked\n", walked);
    ASSERT_GE(walked, 2 * 2); /* at least the bucket's open and its flush */
}
