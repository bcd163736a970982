/*
 * test_spool_fix.c — regression tests for the spool review's findings: a process whose main
 * thread has exited still owns its claims and temporary files; an idle handle that drains a
 * new bucket together with older events does not lose a message; hostile names and file
 * types in the spool; two handles in one process; a remover killed half-way.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "os/fs.h"
#include "os/ident.h"
#include "spool_util.h"

static char name[4096], dir[4096];

static pbx_t *open_fresh(const char *base, uint32_t durability)
{
    struct pbx_options o = pbx_test_options(100000, 64 << 20, 4096, PBX_BLOCK);
    o.durability = durability;
    pbx_t *q;
    ASSERT_OK(pbx_open(spool_name(name, sizeof(name), base), PBX_CREATE | PBX_EXCL, &o, &q));
    spool_dir(dir, sizeof(dir), base);
    return q;
}

/* ---- a zombie leader: main() called pthread_exit() while a worker runs ------------------ */

static int (*real_write_all)(int, const void *, size_t);
static int slow_write_all(int fd, const void *buf, size_t len)
{
    pbx_test_sleep_ms(150); /* a slow writer: its temporary file exists meanwhile */
    return real_write_all(fd, buf, len);
}

static int (*real_renameat)(int, const char *, int, const char *);
static int slow_renameat(int a, const char *from, int b, const char *to)
{
    int r = real_renameat(a, from, b, to);
    int dots = 0;
    for (const char *p = to; *p; p++)
        dots += *p == '.';
    if (r == 0 && dots == 3)
        pbx_test_sleep_ms(800); /* a claim: the receiver is slow to read it */
    return r;
}

static void *zombie_worker(void *arg)
{
    int receive = *(int *) arg;
    pbx_test_sleep_ms(50); /* the leader has exited by now */
    pbx_t *q;
    int r = pbx_open(name, 0, NULL, &q); /* its inotify watches need no leader */
    if (r < 0)
        _exit(10);
    char buf[64];
    if (receive)
        r = (int) pbx_recv(q, 0, buf, sizeof(buf), 0, NULL);
    else
        r = pbx_send(q, 7, "zombie", 6, 0);
    _exit(r == (receive ? 6 : 0) ? 0 : 20 + (r < 0 ? -r : 0) % 100);
}

static int zombie_leader(void *arg)
{
    if (*(int *) arg) {
        real_renameat = pbx__fs_table()->renameat;
        pbx__fs_table()->renameat = slow_renameat;
    } else {
        real_write_all = pbx__fs_table()->write_all;
        pbx__fs_table()->write_all = slow_write_all;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, zombie_worker, arg))
        return 2;
    pthread_exit(NULL);
}

/* Another process opens (and so cleans temporary files) while the writer's leader is a zombie:
 * the writer's temporary file must survive, and its send succeed. */
TEST(spool_fix_zombie_leader_keeps_tmp)
{
    pbx_t *q = open_fresh("zl", PBX_DURABLE_NONE);
    int receive = 0;
    pid_t pid = pbx_test_fork(zombie_leader, &receive);
    pbx_test_sleep_ms(250);
    pbx_t *q2;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2)); /* open deletes the temporary files of the dead */
    pbx_test_wait_ok(pid);
    char buf[16];
    long t = 0;
    ASSERT_EQ(pbx_recv(q2, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 6);
    ASSERT_EQ(t, 7);
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* A receiver whose leader is a zombie holds its claim: nobody else gets the message. */
TEST(spool_fix_zombie_leader_keeps_claim)
{
    pbx_t *q = open_fresh("zc", PBX_DURABLE_NONE);
    ASSERT_OK(pbx_send(q, 1, "claim!", 6, 0));
    int receive = 1;
    pid_t pid = pbx_test_fork(zombie_leader, &receive);
    pbx_test_sleep_ms(400); /* claimed, and reading slowly */
    char buf[16];
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_test_wait_ok(pid);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_remove(q);
    pbx_close(q);
}

/* ---- an idle handle drains a new bucket together with older events ---------------------- */

static int claim_and_die(void *arg)
{
    (void) arg;
    setenv("PBX_CRASH_AT", "spool.recv.claimed", 1);
    pbx_t *r;
    if (pbx_open(name, 0, NULL, &r))
        return 2;
    char b[8];
    pbx_recv(r, 2, b, sizeof(b), 0, NULL);
    return 3;
}

/* P is idle while X is sent into a new bucket, claimed by a process that dies, and put back:
 * P's queue then holds [bucket created, X into c/, X out of c/] but not X's return into the
 * bucket (not yet watched). P must still find X. */
TEST(spool_fix_idle_handle_new_bucket_replay)
{
    pbx_t *hs = open_fresh("replay", PBX_DURABLE_NONE);
    for (int i = 1; i <= 4095; i++) /* seq 1..4095: all of bucket 0 */
        ASSERT_OK(pbx_send(hs, 1, "filler", 6, 0));
    pbx_t *hp;
    ASSERT_OK(pbx_open(name, 0, NULL, &hp)); /* P, idle from now on */
    ASSERT_OK(pbx_send(hs, 2, "X", 1, 0));   /* seq 4096: bucket 1 */
    pid_t pid = pbx_test_fork(claim_and_die, NULL);
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
    char b[16];
    ASSERT_ERR(pbx_recv(hs, 3, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG); /* puts X back */
    long t = 0;
    ASSERT_EQ(pbx_recv(hp, 2, b, sizeof(b), PBX_NOWAIT, &t), 1);
    ASSERT_EQ(t, 2);
    pbx_close(hp);
    pbx_remove(hs);
    pbx_close(hs);
}

/* ---- a durable receive flushes the bucket it took the message from --------------------- */

static int (*real_fsync)(int);
static ino_t fsynced[16];
static int n_fsynced;
static int recording_fsync(int fd)
{
    struct stat st;
    if (n_fsynced < 16 && fstat(fd, &st) == 0)
        fsynced[n_fsynced++] = st.st_ino;
    return real_fsync(fd);
}

static int was_fsynced(const char *rel)
{
    char path[8192];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    if (stat(path, &st) < 0)
        return -1;
    for (int i = 0; i < n_fsynced; i++)
        if (fsynced[i] == st.st_ino)
            return 1;
    return 0;
}

TEST(spool_fix_recv_flushes_bucket)
{
    pbx_t *q = open_fresh("rflush", PBX_DURABLE_ALWAYS);
    ASSERT_OK(pbx_send(q, 1, "one", 3, 0));
    ASSERT_OK(pbx_send(q, 1, "two", 3, 0));
    real_fsync = pbx__fs_table()->fsync;
    pbx__fs_table()->fsync = recording_fsync;
    char b[8];
    int r = (int) pbx_recv(q, 0, b, sizeof(b), 0, NULL);
    pbx__fs_table_reset();
    ASSERT_EQ(r, 3);
    ASSERT_EQ(was_fsynced("q/00000000"), 1);
    ASSERT_EQ(was_fsynced("c"), 1);
    pbx_remove(q);
    pbx_close(q);
}

/* ---- a flusher or bucket maker killed before flushing ---------------------------------- */

static int send_and_die(void *arg)
{
    pbx_t *q;
    if (pbx_open(name, 0, NULL, &q))
        return 2;
    setenv("PBX_CRASH_AT", (const char *) arg, 1);
    pbx_send(q, 5, "lost?", 5, 0);
    return 3;
}

static void record_fsyncs(void)
{
    n_fsynced = 0;
    real_fsync = pbx__fs_table()->fsync;
    pbx__fs_table()->fsync = recording_fsync;
}

/* A flusher killed after taking the dirty range from the state page: the next flusher must
 * flush that range too, not only its own bucket. */
TEST(spool_fix_dead_flusher_range_flushed_again)
{
    pbx_t *q = open_fresh("flusher", PBX_DURABLE_ALWAYS);
    for (int i = 1; i <= 4094; i++)
        ASSERT_OK(pbx_send(q, 1, "f", 1, 0));
    pid_t pid = pbx_test_fork(send_and_die, "spool.flush.taken"); /* seq 4095: bucket 0 */
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
    record_fsyncs();
    int r = pbx_send(q, 1, "g", 1, 0); /* seq 4096: bucket 1 */
    pbx__fs_table_reset();
    ASSERT_OK(r);
    ASSERT_EQ(was_fsynced("q/00000001"), 1);
    ASSERT_EQ(was_fsynced("q/00000000"), 1);
    pbx_remove(q);
    pbx_close(q);
}

/* The maker of a new bucket killed before flushing q/: the next sender into it flushes q/. */
TEST(spool_fix_dead_bucket_maker_q_flushed)
{
    pbx_t *q = open_fresh("maker", PBX_DURABLE_ALWAYS);
    pid_t pid = pbx_test_fork(send_and_die, "spool.bucket.made");
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
    record_fsyncs();
    int r = pbx_send(q, 1, "g", 1, 0);
    pbx__fs_table_reset();
    ASSERT_OK(r);
    ASSERT_EQ(was_fsynced("q"), 1);
    n_fsynced = 0;
    record_fsyncs();
    r = pbx_send(q, 1, "h", 1, 0);
    pbx__fs_table_reset();
    ASSERT_OK(r);
    ASSERT_EQ(was_fsynced("q"), 0); /* once is enough */
    pbx_remove(q);
    pbx_close(q);
}

/* ---- hostile sequence numbers ----------------------------------------------------------- */

#include "spool/format.h"

static void write_file_at(const char *rel, const char *content)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(content, f);
    fclose(f);
}

/* A claim named with a huge sequence number is foreign: it must not push the next sequence
 * number past what a bucket name can hold. */
TEST(spool_fix_huge_seq_claim_is_foreign)
{
    pbx_t *q = open_fresh("bigseq", PBX_DURABLE_NONE);
    write_file_at("c/fffffffffffff000.1.1.0000000000000001", "x");
    pbx_t *q2;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2));
    ASSERT_OK(pbx_send(q2, 3, "abc", 3, 0));
    char b[8];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, &t), 3);
    ASSERT_EQ(t, 3);
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* The last sequence number a bucket name can hold is used; past it a send is -EOVERFLOW. */
TEST(spool_fix_seq_limit_overflow)
{
    pbx_t *q = open_fresh("seqlim", PBX_DURABLE_NONE);
    char path[8192];
    snprintf(path, sizeof(path), "%s/state", dir);
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    uint64_t next = PBX_SPOOL_SEQ_LIMIT - 1;
    ASSERT_EQ(pwrite(fd, &next, 8, offsetof(struct pbx_spool_state, next_seq)), 8);
    close(fd);
    ASSERT_OK(pbx_send(q, 1, "last", 4, 0));
    ASSERT_ERR(pbx_send(q, 1, "over", 4, 0), -EOVERFLOW);
    pbx_t *q2;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2));
    char b[8];
    ASSERT_EQ(pbx_recv(q2, 0, b, sizeof(b), PBX_NOWAIT, NULL), 4);
    ASSERT_MEM_EQ(b, "last", 4);
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* ---- files that are not regular files --------------------------------------------------- */

/* A FIFO, a symbolic link and a directory named like the oldest messages: each is set aside
 * in bad/, none blocks or hides the real message behind them. */
TEST(spool_fix_non_regular_messages_set_aside)
{
    pbx_t *q = open_fresh("nonreg", PBX_DURABLE_NONE);
    char p[8192];
    snprintf(p, sizeof(p), "%s/q/00000000", dir);
    ASSERT_EQ(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/q/00000000/0000000000000001.1.1", dir);
    ASSERT_EQ(mkfifo(p, 0600), 0);
    snprintf(p, sizeof(p), "%s/q/00000000/0000000000000002.1.1", dir);
    ASSERT_EQ(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof(p), "%s/q/00000000/0000000000000003.1.1", dir);
    ASSERT_EQ(mkdir(p, 0700), 0);
    pbx_t *q2;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2)); /* indexes all three */
    ASSERT_OK(pbx_send(q2, 1, "real", 4, 0));
    char b[8];
    ASSERT_EQ(pbx_recv(q2, 0, b, sizeof(b), PBX_NOWAIT | PBX_PEEK, NULL), 4);
    ASSERT_OK(pbx_send(q2, 1, "more", 4, 0));
    pbx_close(q2);
    ASSERT_OK(pbx_open(name, 0, NULL, &q2));
    ASSERT_EQ(pbx_recv(q2, 0, b, sizeof(b), PBX_NOWAIT, NULL), 4);
    ASSERT_MEM_EQ(b, "real", 4);
    snprintf(p, sizeof(p), "%s/bad", dir);
    ASSERT_EQ(count_entries(p), 3);
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* The same names claimed (a receive renames them into c/ before reading). */
TEST(spool_fix_non_regular_claims_set_aside)
{
    pbx_t *q = open_fresh("nonregc", PBX_DURABLE_NONE);
    char p[8192];
    snprintf(p, sizeof(p), "%s/q/00000000", dir);
    ASSERT_EQ(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/q/00000000/0000000000000001.1.1", dir);
    ASSERT_EQ(mkfifo(p, 0600), 0);
    snprintf(p, sizeof(p), "%s/q/00000000/0000000000000002.1.1", dir);
    ASSERT_EQ(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof(p), "%s/q/00000000/0000000000000003.1.1", dir);
    ASSERT_EQ(mkdir(p, 0700), 0);
    pbx_t *q2;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2));
    ASSERT_OK(pbx_send(q2, 1, "real", 4, 0));
    char b[8];
    ASSERT_EQ(pbx_recv(q2, 0, b, sizeof(b), PBX_NOWAIT, NULL), 4);
    ASSERT_MEM_EQ(b, "real", 4);
    snprintf(p, sizeof(p), "%s/bad", dir);
    ASSERT_EQ(count_entries(p), 3);
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* meta as a FIFO: -EBADMSG at once, not an open() that never returns. */
TEST(spool_fix_meta_fifo_is_ebadmsg)
{
    pbx_t *q = open_fresh("metafifo", PBX_DURABLE_NONE);
    char p[8192];
    snprintf(p, sizeof(p), "%s/meta", dir);
    ASSERT_EQ(unlink(p), 0);
    ASSERT_EQ(mkfifo(p, 0600), 0);
    pbx_t *q2;
    ASSERT_ERR(pbx_open(name, 0, NULL, &q2), -EBADMSG);
    pbx_remove(q);
    pbx_close(q);
    unlink(p);
}

/* A regular file named like a bucket in q/: open skips it; a send into that bucket sets it
 * aside and makes the directory. */
TEST(spool_fix_file_named_like_bucket)
{
    pbx_t *q = open_fresh("filebucket", PBX_DURABLE_ALWAYS);
    write_file_at("q/00000000", "not a dir");
    write_file_at("q/00000007", "not a dir");
    pbx_t *q2;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2));
    ASSERT_OK(pbx_send(q2, 2, "ok", 2, 0));
    char b[8];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, &t), 2);
    ASSERT_EQ(t, 2);
    char p[8192];
    snprintf(p, sizeof(p), "%s/bad", dir);
    ASSERT_EQ(count_entries(p), 1);
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* ---- two handles on one spool in one process -------------------------------------------- */

static pbx_t *nested_q;
static int nested_result = 1;
static int nested_write_all(int fd, const void *buf, size_t len)
{
    if (nested_q) { /* while the outer send's temporary file exists */
        pbx_t *h = nested_q;
        nested_q = NULL;
        nested_result = pbx_send(h, 2, "inner", 5, 0);
    }
    return real_write_all(fd, buf, len);
}

TEST(spool_fix_two_handles_tmp_names)
{
    pbx_t *q = open_fresh("twoh", PBX_DURABLE_NONE);
    pbx_t *q2;
    ASSERT_OK(pbx_open(name, 0, NULL, &q2));
    real_write_all = pbx__fs_table()->write_all;
    pbx__fs_table()->write_all = nested_write_all;
    nested_q = q2;
    int r = pbx_send(q, 1, "outer", 5, 0);
    pbx__fs_table_reset();
    ASSERT_OK(r);
    ASSERT_OK(nested_result);
    char b[8];
    ASSERT_EQ(pbx_recv(q, 2, b, sizeof(b), PBX_NOWAIT, NULL), 5);
    ASSERT_EQ(pbx_recv(q, 1, b, sizeof(b), PBX_NOWAIT, NULL), 5);
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* ---- a remover killed after renaming the spool away ------------------------------------- */

static int unlink_and_die(void *arg)
{
    (void) arg;
    setenv("PBX_CRASH_AT", "spool.remove.renamed", 1);
    pbx_unlink(name);
    return 3;
}

static int hidden_dirs_left(const char *base)
{
    char prefix[256];
    snprintf(prefix, sizeof(prefix), ".%s.removed.", base);
    DIR *d = opendir(getenv("POSTBOX_DIR"));
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static pbx_t *blocked_q;
static void *blocked_receiver(void *arg)
{
    char b[8];
    struct timespec to = {6, 0};
    *(long *) arg = (long) pbx_timedrecv(blocked_q, 2, b, sizeof(b), 0, NULL, &to);
    return NULL;
}

/* A receiver blocked before the remover died notices within its time slice and returns
 * -EIDRM; later calls too; the hidden directory is deleted. */
TEST(spool_fix_killed_remover_finished_by_handle)
{
    pbx_t *q = open_fresh("rmkill", PBX_DURABLE_NONE);
    ASSERT_OK(pbx_send(q, 1, "m", 1, 0));
    blocked_q = q;
    long got = 0;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, blocked_receiver, &got), 0);
    pbx_test_sleep_ms(100);
    double t0 = pbx_test_now_ms();
    pid_t pid = pbx_test_fork(unlink_and_die, NULL);
    ASSERT_EQ(pbx_test_wait(pid), 128 + SIGKILL);
    pthread_join(t, NULL);
    ASSERT_EQ(got, -EIDRM);
    ASSERT_LT(pbx_test_now_ms() - t0, 4000);
    ASSERT_ERR(pbx_send(q, 1, "m", 1, 0), -EIDRM);
    ASSERT_EQ(hidden_dirs_left("rmkill"), 0);
    pbx_close(q);
}

/* ---- a damaged state page ---------------------------------------------------------------- */

/* A dirty range of 2^64 buckets: a send must flush the buckets that exist and return, not
 * try every number under the flush lock. */
TEST(spool_fix_hostile_dirty_range)
{
    pbx_t *q = open_fresh("dirty", PBX_DURABLE_ALWAYS);
    ASSERT_OK(pbx_send(q, 1, "a", 1, 0));
    char path[8192];
    snprintf(path, sizeof(path), "%s/state", dir);
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    uint64_t range[2] = {0, UINT64_MAX - 1};
    ASSERT_EQ(pwrite(fd, range, 16, offsetof(struct pbx_spool_state, dirty_lo)), 16);
    close(fd);
    ASSERT_OK(pbx_send(q, 1, "b", 1, 0)); /* a hang here is the bug (the test's timeout) */
    pbx_remove(q);
    pbx_close(q);
}

/* ---- a reboot: owners recorded in the spool are all dead --------------------------------- */

TEST(spool_fix_new_boot_puts_back_claims)
{
    pbx_t *q = open_fresh("boot", PBX_DURABLE_NONE);
    ASSERT_OK(pbx_send(q, 4, "boot", 4, 0));
    pbx_close(q);
    /* A claim of a process that is alive now (this one), as if from before the reboot. */
    char from[8192], to[8192];
    snprintf(from, sizeof(from), "%s/q/00000000/0000000000000001.4.4", dir);
    snprintf(to, sizeof(to), "%s/c/0000000000000001.4.4.%016llx", dir,
             (unsigned long long) pbx__ident_process());
    ASSERT_EQ(rename(from, to), 0);
    write_file_at("tmp/0000000000000001.0", "x");
    char path[8192];
    snprintf(path, sizeof(path), "%s/state", dir);
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    char boot[40] = "00000000-0000-0000-0000-000000000000\n";
    ASSERT_EQ(pwrite(fd, boot, sizeof(boot), offsetof(struct pbx_spool_state, boot_id)), 40);
    close(fd);
    ASSERT_OK(pbx_open(name, 0, NULL, &q));
    char b[8];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, &t), 4);
    ASSERT_EQ(t, 4);
    snprintf(path, sizeof(path), "%s/tmp", dir);
    ASSERT_EQ(count_entries(path), 0);
    /* Same boot from now on: a live owner's claim stays claimed. */
    ASSERT_OK(pbx_send(q, 4, "boot", 4, 0));
    pbx_close(q);
    snprintf(from, sizeof(from), "%s/q/00000000/0000000000000002.4.4", dir);
    snprintf(to, sizeof(to), "%s/c/0000000000000002.4.4.%016llx", dir,
             (unsigned long long) pbx__ident_process());
    ASSERT_EQ(rename(from, to), 0);
    ASSERT_OK(pbx_open(name, 0, NULL, &q));
    ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_remove(q);
    pbx_close(q);
}

/* ---- PBX_NOERROR checks the whole message but copies only what fits ---------------------- */

TEST(spool_fix_noerror_checksums_in_chunks)
{
    struct pbx_options o = pbx_test_options(16, 1 << 20, 65536, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(spool_name(name, sizeof(name), "noerr"), PBX_CREATE | PBX_EXCL, &o, &q));
    spool_dir(dir, sizeof(dir), "noerr");
    static unsigned char big[50000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char) (i * 7);
    ASSERT_OK(pbx_send(q, 1, big, sizeof(big), 0));
    ASSERT_OK(pbx_send(q, 2, big, sizeof(big), 0));
    unsigned char b[10];
    ASSERT_EQ(pbx_recv(q, 1, b, sizeof(b), PBX_NOWAIT | PBX_NOERROR, NULL), 10);
    ASSERT_MEM_EQ(b, big, 10);
    /* Damage the second one's last byte: found even though it is never copied. */
    char p[8192];
    snprintf(p, sizeof(p), "%s/q/00000000/0000000000000002.2.50000", dir);
    int fd = open(p, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(pwrite(fd, "\xff\xfe", 1, 24 + 49999), 1);
    close(fd);
    ASSERT_ERR(pbx_recv(q, 2, b, sizeof(b), PBX_NOWAIT | PBX_NOERROR, NULL), -ENOMSG);
    snprintf(p, sizeof(p), "%s/bad", dir);
    ASSERT_EQ(count_entries(p), 1);
    pbx_remove(q);
    pbx_close(q);
}
