/*
 * test_readonly.c — looking at a mailbox with PBX_RDONLY (issue 14, item 5).
 *
 *   - a looking handle reports what a read-write one does, is not a participant, and refuses
 *     every call that would take a lock or write (-EBADF), on both transports;
 *   - it writes nothing: the mailbox's bytes are the same after it opened, looked and closed;
 *   - another user with read permission alone (a 0644 mailbox of root's) may look, and only
 *     look; without read permission (0600) it is still -EACCES (needs root to become nobody:
 *     skipped otherwise);
 *   - a region whose counters and tables were scribbled on gives numbers within the limits,
 *     never a crash; a region cut short under the looker is -EBADMSG, not SIGBUS.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "shm/shm.h"
#include "spool_util.h"

#define NOBODY 65534

static const char *shm_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.%s", getenv("POSTBOX_DIR"), name);
    return path;
}

/* The whole content of a file, malloc'ed; *len its size. */
static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    char *buf = malloc((size_t) st.st_size + 1);
    ASSERT_TRUE(buf != NULL);
    ASSERT_EQ(pread(fd, buf, (size_t) st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t) st.st_size;
    return buf;
}

/* A mailbox of mode `mode` called name (a bare name or spool:...), holding "a" and "bb". */
static pbx_t *box_with_two(const char *name, uint32_t mode)
{
    struct pbx_options o = pbx_test_options(16, 4096, 64, PBX_BLOCK);
    o.mode = mode;
    pbx_t *q;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_OK(pbx_send(q, 1, "a", 1, 0));
    ASSERT_OK(pbx_send(q, 2, "bb", 2, 0));
    return q;
}

/* Every call but stat, peers and close is -EBADF on a looking handle. 0 or the failed step. */
static int refuses_all_but_looking(pbx_t *q)
{
    char buf[8];
    uint64_t claim = 0;
    struct timespec ts = {0, 1000000};
    if (pbx_send(q, 1, "x", 1, 0) != -EBADF || pbx_send(q, 1, "x", 1, PBX_SYNC) != -EBADF)
        return 1;
    if (pbx_timedsend(q, 1, "x", 1, 0, &ts) != -EBADF)
        return 2;
    if (pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL) != -EBADF ||
        pbx_recv(q, 0, buf, sizeof(buf), PBX_PEEK, NULL) != -EBADF ||
        pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &ts) != -EBADF)
        return 3;
    if (pbx_claim(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL, &claim) != -EBADF || claim != 0)
        return 4;
    if (pbx_ack(q, 1) != -EBADF || pbx_release(q, 1) != -EBADF)
        return 5;
    if (pbx_notify(q, SIGUSR1, 0) != -EBADF || pbx_fd(q) != -EBADF)
        return 6;
    if (pbx_remove(q) != -EBADF)
        return 7;
    struct pbx_loan loan;
    if (pbx_loan(q, 1, 0, &loan) != -EBADF || pbx_recv_loan(q, 0, PBX_NOWAIT, &loan) != -EBADF)
        return 8;
    return 0;
}

/* stat and peers through a looking handle on name: 0 or the failed step. */
static int looks_right(const char *name)
{
    pbx_t *q;
    if (pbx_open(name, PBX_RDONLY, NULL, &q) != 0)
        return 20;
    struct pbx_stat st;
    if (pbx_stat(q, &st) != 0)
        return 21;
    if (st.msgs != 2 || st.bytes != 3 || st.sent != 2 || st.max_msgs != 16 || st.mode != 0644)
        return 22;
    struct pbx_peer p[4];
    ssize_t n = pbx_peers(q, p, 4);
    if (n != 1 || p[0].pid == getpid()) /* the creator only: looking is not taking part */
        return 23;
    int r = refuses_all_but_looking(q);
    pbx_close(q);
    return r;
}

static int looks_right_helper(void *arg)
{
    return looks_right(arg);
}

TEST(a_read_only_handle_looks_and_refuses_everything_else)
{
    char sp[256];
    pbx_t *a = box_with_two("shm", 0644);
    pbx_t *b = box_with_two(spool_name(sp, sizeof(sp), "sp"), 0644);
    /* Looked at from another process, so that the creator is the only participant. */
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(looks_right_helper, "shm")), 0);
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(looks_right_helper, sp)), 0);
    pbx_t *q;
    ASSERT_ERR(pbx_open("shm", PBX_RDONLY | PBX_CREATE, NULL, &q), -EINVAL);
    ASSERT_ERR(pbx_open("nonesuch", PBX_RDONLY, NULL, &q), -ENOENT);
    /* Nothing was taken: both messages are still there for the read-write handles. */
    char buf[8];
    ASSERT_EQ(pbx_recv(a, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    ASSERT_EQ(pbx_recv(b, 2, buf, sizeof(buf), PBX_NOWAIT, NULL), 2);
    ASSERT_EQ(
        strcmp(pbx_strerror(-EBADF), "the handle is open read-only (PBX_RDONLY): it may only look"),
        0);
    pbx_close(a);
    pbx_close(b);
}

TEST(looking_writes_nothing_into_the_mailbox)
{
    char sp[256], dir[256], state[300];
    pbx_t *a = box_with_two("shm", 0600);
    pbx_t *b = box_with_two(spool_name(sp, sizeof(sp), "sp"), 0600);
    snprintf(state, sizeof(state), "%s/state", spool_dir(dir, sizeof(dir), "sp"));
    size_t n1, n2, s1, s2;
    char *before = slurp(shm_path("shm"), &n1), *sbefore = slurp(state, &s1);
    for (int i = 0; i < 2; i++) {
        pbx_t *q;
        ASSERT_OK(pbx_open(i ? sp : "shm", PBX_RDONLY, NULL, &q));
        struct pbx_stat st;
        ASSERT_OK(pbx_stat(q, &st));
        ASSERT_EQ(st.msgs, 2);
        struct pbx_peer p[4];
        ASSERT_EQ(pbx_peers(q, p, 4), 1);
        pbx_close(q);
    }
    char *after = slurp(shm_path("shm"), &n2), *safter = slurp(state, &s2);
    ASSERT_EQ(n1, n2);
    ASSERT_EQ(memcmp(before, after, n1), 0);
    ASSERT_EQ(s1, s2);
    ASSERT_EQ(memcmp(sbefore, safter, s1), 0);
    free(before), free(after), free(sbefore), free(safter);
    pbx_close(a);
    pbx_close(b);
}

/* As nobody: a 0644 mailbox may be looked at, not used; a 0600 one not even looked at. */
static int look_as_nobody(void *arg)
{
    const char *const *names = arg; /* readable shm, readable spool, private shm, private spool */
    if (setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0)
        return 77;
    pbx_t *q;
    for (int i = 0; i < 2; i++) {
        if (pbx_open(names[i], 0, NULL, &q) != -EACCES)
            return 30 + i;             /* read-write is refused... */
        int r = looks_right(names[i]); /* ...looking is not */
        if (r)
            return r;
    }
    for (int i = 2; i < 4; i++)
        if (pbx_open(names[i], PBX_RDONLY, NULL, &q) != -EACCES)
            return 40 + i;
    return 0;
}

TEST(another_user_with_read_permission_only_may_look_at_a_0644_mailbox)
{
    if (geteuid() != 0)
        SKIP("needs root to become another user (nobody)");
    ASSERT_EQ(chmod(getenv("POSTBOX_DIR"), 0755), 0);
    char sp[256], priv[256];
    const char *names[4] = {"open", spool_name(sp, sizeof(sp), "sp"), "private",
                            spool_name(priv, sizeof(priv), "priv")};
    pbx_t *q[4];
    for (int i = 0; i < 4; i++)
        q[i] = box_with_two(names[i], i < 2 ? 0644 : 0600);
    int r = pbx_test_wait(pbx_test_fork(look_as_nobody, names));
    if (r == 77)
        SKIP("setresuid to nobody (65534) is not permitted here");
    ASSERT_EQ(r, 0);
    for (int i = 0; i < 4; i++) {
        struct pbx_stat st;
        ASSERT_OK(pbx_stat(q[i], &st));
        ASSERT_EQ(st.msgs, 2); /* the looker took nothing */
        pbx_close(q[i]);
    }
}

/* As nobody, through a directory it may search but not list. */
static int look_through_a_search_only_dir(void *arg)
{
    (void) arg;
    if (setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0)
        return 77;
    return looks_right("open");
}

TEST(a_directory_that_may_only_be_searched_is_enough_to_look)
{
    if (geteuid() != 0)
        SKIP("needs root to become another user (nobody)");
    ASSERT_EQ(chmod(getenv("POSTBOX_DIR"), 0711), 0); /* x for others, no r */
    pbx_t *q = box_with_two("open", 0644);
    int r = pbx_test_wait(pbx_test_fork(look_through_a_search_only_dir, NULL));
    ASSERT_EQ(chmod(getenv("POSTBOX_DIR"), 0700), 0);
    if (r == 77)
        SKIP("setresuid to nobody (65534) is not permitted here");
    ASSERT_EQ(r, 0);
    pbx_close(q);
}

/* A region scribbled on by a hostile writer: counters and tables full of garbage. */
TEST(a_scribbled_region_does_not_crash_the_stat_path)
{
    pbx_t *owner = box_with_two("hostile", 0600);
    struct pbx_shm *m = pbx__handle_shm(owner);
    ASSERT_TRUE(m != NULL);
    pbx_t *q;
    ASSERT_OK(pbx_open("hostile", PBX_RDONLY, NULL, &q));
    struct pbx_header *h = m->h;
    const size_t first = offsetof(struct pbx_header, removed);
    struct pbx_header *saved = malloc(sizeof(*saved));
    ASSERT_TRUE(saved != NULL);
    memcpy(saved, h, sizeof(*saved));
    /* Freed ahead of sent: nothing is held, not 2^64 - 1 messages. */
    uint64_t sent = h->send.sent_msgs;
    h->recv.recvd_msgs = sent + 5;
    h->recv.recvd_bytes = h->send.sent_bytes + 7;
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    /* Sent far ahead, claims beyond everything: the capacity, at most. */
    h->recv.recvd_msgs = 0;
    h->recv.recvd_bytes = 0;
    h->send.sent_msgs = 1000000;
    h->send.sent_bytes = UINT64_MAX / 4;
    h->recv.claimed = UINT64_MAX;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 16);
    ASSERT_EQ(st.bytes, 4096);
    ASSERT_EQ(st.claimed, 16);
    /* Everything after the identity and geometry, at random, many times over. */
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    uint8_t *b = (uint8_t *) h;
    for (int round = 0; round < 200; round++) {
        for (size_t i = first; i < sizeof(struct pbx_header); i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            b[i] = (uint8_t) (seed >> 56);
        }
        h->removed = 0;
        int r = pbx_stat(q, &st);
        ASSERT_EQ(r, 0);
        ASSERT_LE(st.msgs, 16);
        ASSERT_LE(st.bytes, 4096);
        ASSERT_LE(st.claimed, st.msgs);
        ASSERT_EQ(st.max_msgs, 16); /* the geometry checked at open, never read again */
        ASSERT_GE(pbx_peers(q, NULL, 0), 0);
    }
    pbx_close(q);
    memcpy(h, saved, sizeof(*saved)); /* the owner's own state back, to close it */
    free(saved);
    pbx_close(owner);
}

TEST(a_region_cut_short_under_a_looker_is_an_error_not_a_crash)
{
    pbx_close(box_with_two("cut", 0600));
    pbx_t *q;
    ASSERT_OK(pbx_open("cut", PBX_RDONLY, NULL, &q));
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    /* Only a writer can shrink the file; reading past its end would be SIGBUS. */
    ASSERT_EQ(truncate(shm_path("cut"), 0), 0);
    ASSERT_ERR(pbx_stat(q, &st), -EBADMSG);
    ASSERT_EQ(st.max_msgs, 16); /* the limits are still given */
    pbx_close(q);
}

/* A spool's state page scribbled on: the counts come from the directories, the rest is read
 * and clamped; a looker never crashes. */
TEST(a_scribbled_spool_state_does_not_crash_the_stat_path)
{
    char sp[256], dir[256], state[300];
    pbx_t *owner = box_with_two(spool_name(sp, sizeof(sp), "sp"), 0600);
    snprintf(state, sizeof(state), "%s/state", spool_dir(dir, sizeof(dir), "sp"));
    pbx_t *q;
    ASSERT_OK(pbx_open(sp, PBX_RDONLY, NULL, &q));
    int fd = open(state, O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_TRUE(page != MAP_FAILED);
    uint8_t keep[16], saved[4096];
    memcpy(keep, page, sizeof(keep)); /* magic and version, removed */
    memcpy(saved, page, sizeof(saved));
    uint64_t seed = 12345;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 24; i < 4096; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            page[i] = (uint8_t) (seed >> 56);
        }
        memcpy(page, keep, sizeof(keep));
        memset(page + 16, 0, 8); /* not being removed */
        struct pbx_stat st;
        ASSERT_OK(pbx_stat(q, &st));
        ASSERT_EQ(st.msgs, 2);
        ASSERT_EQ(st.bytes, 3);
        ASSERT_GE(pbx_peers(q, NULL, 0), 0);
    }
    memcpy(page, saved, sizeof(saved)); /* the owner's lock and table back, to close it */
    munmap(page, 4096);
    close(fd);
    pbx_close(q);
    pbx_close(owner);
}
