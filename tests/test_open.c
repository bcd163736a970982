/*
 * test_open.c — the life of a named mailbox: creating and opening it (PBX_CREATE, PBX_EXCL),
 * its file "pbx.<name>" in $POSTBOX_DIR, its permission bits and who may open it, removing it
 * (pbx_remove, pbx_unlink) and what old handles see afterwards, files that are not mailboxes,
 * anonymous mailboxes shared with forked children, and the fields pbx_stat() reports.
 *
 * The permission tests fork a helper that switches to the unprivileged uid 65534; they are
 * skipped (exit 77) unless the test runs as root.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NOBODY 65534

static const char *box_dir(void)
{
    const char *d = getenv("POSTBOX_DIR");
    ASSERT_TRUE(d != NULL && *d);
    return d;
}

/* The path of the file behind mailbox name. */
static const char *box_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.%s", box_dir(), name);
    return path;
}

/* Entries in $POSTBOX_DIR other than "." and "..". */
static int dir_entries(void)
{
    DIR *dir = opendir(box_dir());
    ASSERT_TRUE(dir != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(dir);
    return n;
}

static int file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static pbx_t *create_box(const char *name, uint32_t mode)
{
    struct pbx_options o = pbx_test_options(16, 4096, 256, PBX_BLOCK);
    o.mode = mode;
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_TRUE(q != NULL);
    return q;
}

static struct pbx_stat stat_of(pbx_t *q)
{
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    return st;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, data, len), (long long) len);
    close(fd);
}

static size_t read_file(const char *path, void *data, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ASSERT_GE(fd, 0);
    ssize_t n = read(fd, data, cap);
    ASSERT_GE(n, 0);
    close(fd);
    return (size_t) n;
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Bounds any accidental blocking call: the default SIGALRM action ends the test. */
static void watchdog(unsigned seconds)
{
    signal(SIGALRM, SIG_DFL);
    alarm(seconds);
}

/* ---- creating and opening ---------------------------------------------------------------- */

TEST(create_excl_on_existing_name_is_eexist)
{
    pbx_t *q = create_box("box", 0600);
    pbx_t *q2 = NULL;
    ASSERT_ERR(pbx_open("box", PBX_CREATE | PBX_EXCL, NULL, &q2), -EEXIST);
    pbx_close(q);
    /* Still there after the last handle is closed. */
    ASSERT_ERR(pbx_open("box", PBX_CREATE | PBX_EXCL, NULL, &q2), -EEXIST);
}

TEST(open_missing_name_without_create_is_enoent)
{
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("missing", 0, NULL, &q), -ENOENT);
    ASSERT_EQ(dir_entries(), 0);
    pbx_t *other = create_box("other", 0600);
    ASSERT_ERR(pbx_open("missing", 0, NULL, &q), -ENOENT);
    pbx_close(other);
}

TEST(excl_without_create_is_einval)
{
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("box", PBX_EXCL, NULL, &q), -EINVAL);
    ASSERT_EQ(dir_entries(), 0);
    pbx_t *b = create_box("box", 0600);
    ASSERT_ERR(pbx_open("box", PBX_EXCL, NULL, &q), -EINVAL);
    pbx_close(b);
}

TEST(create_without_excl_opens_existing_mailbox_and_keeps_its_limits)
{
    struct pbx_options a = pbx_test_options(5, 3000, 300, PBX_DROP_OLDEST);
    a.mode = 0640;
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open("box", PBX_CREATE, &a, &q));
    ASSERT_OK(pbx_send(q, 4, "kept", 4, 0));

    struct pbx_options b = pbx_test_options(99, 99999, 999, PBX_DROP_NEWEST);
    b.mode = 0666;
    pbx_t *q2 = NULL;
    ASSERT_OK(pbx_open("box", PBX_CREATE, &b, &q2));
    struct pbx_stat st = stat_of(q2);
    ASSERT_EQ(st.max_msgs, 5);
    ASSERT_EQ(st.max_bytes, 3000);
    ASSERT_EQ(st.max_msg_size, 300);
    ASSERT_EQ(st.overflow, PBX_DROP_OLDEST);
    ASSERT_EQ(st.mode, 0640);
    ASSERT_EQ(st.msgs, 1);
    char buf[8];
    long t = 0;
    ASSERT_EQ(pbx_recv(q2, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 4);
    ASSERT_EQ(t, 4);
    ASSERT_MEM_EQ(buf, "kept", 4);
    /* The original max_msg_size still applies through the new handle. */
    static char big[301];
    ASSERT_ERR(pbx_send(q2, 1, big, 301, PBX_NOWAIT), -EMSGSIZE);
    pbx_close(q2);
    pbx_close(q);
}

TEST(open_without_options_uses_the_defaults)
{
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open("box", PBX_CREATE, NULL, &q));
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.mode, 0600);
    ASSERT_EQ(st.max_bytes, 1 << 20);
    ASSERT_EQ(st.max_msgs, 4096);
    ASSERT_EQ(st.max_msg_size, 8192);
    ASSERT_EQ(st.overflow, PBX_BLOCK);
    pbx_close(q);
}

TEST(two_handles_to_the_same_name_see_each_others_messages)
{
    pbx_t *a = create_box("box", 0600);
    pbx_t *b = NULL;
    ASSERT_OK(pbx_open("box", 0, NULL, &b));
    char buf[16];
    long t = 0;
    ASSERT_OK(pbx_send(a, 1, "from a", 6, 0));
    ASSERT_EQ(pbx_recv(b, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 6);
    ASSERT_MEM_EQ(buf, "from a", 6);
    ASSERT_OK(pbx_send(b, 2, "from b", 6, 0));
    ASSERT_EQ(pbx_recv(a, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 6);
    ASSERT_EQ(t, 2);
    ASSERT_MEM_EQ(buf, "from b", 6);
    ASSERT_ERR(pbx_recv(b, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    struct pbx_stat sa = stat_of(a), sb = stat_of(b);
    ASSERT_EQ(sa.sent, 2);
    ASSERT_EQ(sb.sent, 2);
    ASSERT_EQ(sa.received, 2);
    ASSERT_EQ(sb.received, 2);
    pbx_close(a);
    /* Closing one handle does not affect the other. */
    ASSERT_OK(pbx_send(b, 3, "x", 1, 0));
    ASSERT_EQ(pbx_recv(b, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    pbx_close(b);
}

TEST(mailbox_and_its_messages_persist_after_every_handle_is_closed)
{
    pbx_t *q = create_box("box", 0600);
    ASSERT_OK(pbx_send(q, 5, "still here", 10, 0));
    ASSERT_OK(pbx_close(q));
    ASSERT_TRUE(file_exists(box_path("box")));
    ASSERT_OK(pbx_open("box", 0, NULL, &q));
    char buf[16];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 10);
    ASSERT_EQ(t, 5);
    ASSERT_MEM_EQ(buf, "still here", 10);
    ASSERT_OK(pbx_close(q));
}

TEST(distinct_names_are_independent_mailboxes)
{
    pbx_t *a = create_box("a", 0600), *b = create_box("b", 0600);
    ASSERT_OK(pbx_send(a, 1, "a", 1, 0));
    char buf[4];
    ASSERT_ERR(pbx_recv(b, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_EQ(stat_of(b).sent, 0);
    pbx_close(a);
    pbx_close(b);
}

/* ---- the file ---------------------------------------------------------------------------- */

TEST(mailbox_file_is_created_in_postbox_dir_as_pbx_dot_name)
{
    pbx_t *q = create_box("jobs", 0600);
    struct stat st;
    ASSERT_EQ(lstat(box_path("jobs"), &st), 0);
    ASSERT_TRUE(S_ISREG(st.st_mode));
    ASSERT_GT(st.st_size, 0);
    /* Only that file: no temporary left behind. */
    ASSERT_EQ(dir_entries(), 1);
    ASSERT_OK(pbx_remove(q));
    ASSERT_TRUE(!file_exists(box_path("jobs")));
    ASSERT_EQ(dir_entries(), 0);
    pbx_close(q);
}

/* postbox.h: "-ENOTDIR the mailbox directory ($POSTBOX_DIR or /dev/shm) is missing or not a
 * directory" (an earlier version of the contract said -ENOENT). */
TEST(postbox_dir_that_does_not_exist_is_enotdir)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/does-not-exist", box_dir());
    ASSERT_EQ(setenv("POSTBOX_DIR", dir, 1), 0);
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("box", PBX_CREATE, NULL, &q), -ENOTDIR);
    ASSERT_ERR(pbx_open("box", PBX_CREATE | PBX_EXCL, NULL, &q), -ENOTDIR);
    ASSERT_ERR(pbx_open("box", 0, NULL, &q), -ENOTDIR);
    ASSERT_ERR(pbx_unlink("box"), -ENOTDIR);
    ASSERT_TRUE(!file_exists(dir));
}

TEST(postbox_dir_that_is_a_regular_file_is_enotdir)
{
    char file[4096];
    snprintf(file, sizeof(file), "%s/plain-file", box_dir());
    write_file(file, "x", 1);
    ASSERT_EQ(setenv("POSTBOX_DIR", file, 1), 0);
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("box", PBX_CREATE, NULL, &q), -ENOTDIR);
    ASSERT_ERR(pbx_open("box", 0, NULL, &q), -ENOTDIR);
    ASSERT_ERR(pbx_unlink("box"), -ENOTDIR);
}

/* ---- permission bits --------------------------------------------------------------------- */

static void expect_mode(const char *name, uint32_t mode)
{
    pbx_t *q = create_box(name, mode);
    struct pbx_stat st = stat_of(q);
    if (st.mode != mode)
        pbx_test_fail(__FILE__, __LINE__, "mailbox %s created with mode %04o has stat.mode %04o",
                      name, mode, st.mode);
    struct stat fs;
    ASSERT_EQ(lstat(box_path(name), &fs), 0);
    if ((fs.st_mode & 07777) != mode)
        pbx_test_fail(__FILE__, __LINE__, "mailbox %s created with mode %04o has file mode %04o",
                      name, mode, (unsigned) (fs.st_mode & 07777));
    pbx_close(q);
}

TEST(new_mailbox_gets_exactly_the_requested_mode)
{
    const uint32_t modes[] = {0600, 0640, 0660, 0644, 0604, 0666, 0700, 0755, 0777, 0620, 0400};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%zu", i);
        expect_mode(name, modes[i]);
    }
}

TEST(mode_is_not_reduced_by_the_umask)
{
    umask(077);
    expect_mode("wide", 0666);
    umask(0777);
    expect_mode("group", 0640);
    umask(022);
    expect_mode("gw", 0664);
}

TEST(default_mode_is_0600_whatever_the_umask)
{
    umask(0);
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open("box", PBX_CREATE, NULL, &q));
    ASSERT_EQ(stat_of(q).mode, 0600);
    pbx_close(q);
}

struct as_user {
    const char *name;
    gid_t gid;
    int flags;
    int expect; /* what pbx_open must return */
};

/* In a helper: become uid 65534 (with group gid) or exit 77. */
static int become_other_user(gid_t gid)
{
    if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(NOBODY) != 0)
        return -1;
    if (geteuid() != NOBODY)
        return -1;
    return 0;
}

static int open_as_other_user(void *arg)
{
    const struct as_user *u = arg;
    if (become_other_user(u->gid) != 0)
        return 77;
    pbx_t *q = NULL;
    int r = pbx_open(u->name, u->flags, NULL, &q);
    if (r != u->expect) {
        fprintf(stderr, "uid %d: pbx_open(%s, %#x) returned %d (%s), expected %d (%s)\n",
                (int) geteuid(), u->name, u->flags, r, pbx_test_errname(r), u->expect,
                pbx_test_errname(u->expect));
        return 1;
    }
    if (r == 0) {
        /* Open means usable: send a message the parent checks. */
        if (pbx_send(q, 7, "nobody", 6, PBX_NOWAIT) != 0)
            return 2;
        pbx_close(q);
    }
    return 0;
}

/* Fork a helper that opens name as another user, and check what it got. */
static void check_other_user_open(const char *name, gid_t gid, int flags, int expect)
{
    struct as_user u = {name, gid, flags, expect};
    int st = pbx_test_wait(pbx_test_fork(open_as_other_user, &u));
    if (st == 77)
        SKIP("cannot switch to uid %d", NOBODY);
    ASSERT_EQ(st, 0);
}

static void need_root(void)
{
    if (geteuid() != 0)
        SKIP("needs root to switch to another user");
    /* Let other users reach the files, so that only the mailbox's own mode decides. */
    ASSERT_EQ(chmod(box_dir(), 0755), 0);
}

TEST(other_user_cannot_open_mailbox_with_mode_0600)
{
    need_root();
    pbx_t *q = create_box("priv", 0600);
    check_other_user_open("priv", NOBODY, 0, -EACCES);
    check_other_user_open("priv", NOBODY, PBX_CREATE, -EACCES);
    ASSERT_EQ(stat_of(q).sent, 0);
    pbx_close(q);
}

TEST(other_user_cannot_open_mailbox_it_may_only_read)
{
    need_root();
    pbx_t *q = create_box("ro", 0644);
    check_other_user_open("ro", NOBODY, 0, -EACCES);
    pbx_close(q);
}

TEST(other_user_can_open_mailbox_with_mode_0666)
{
    need_root();
    pbx_t *q = create_box("pub", 0666);
    check_other_user_open("pub", NOBODY, 0, 0);
    check_other_user_open("pub", NOBODY, PBX_CREATE, 0);
    char buf[8];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 6);
    ASSERT_EQ(t, 7);
    ASSERT_MEM_EQ(buf, "nobody", 6);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 6);
    pbx_close(q);
}

TEST(member_of_the_mailbox_group_can_open_mode_0660)
{
    need_root();
    pbx_t *q = create_box("grp", 0660);
    gid_t gid = stat_of(q).gid;
    check_other_user_open("grp", gid, 0, 0);
    check_other_user_open("grp", NOBODY == gid ? 0 : NOBODY, 0, -EACCES);
    ASSERT_EQ(stat_of(q).msgs, 1);
    pbx_close(q);
}

static int unlink_as_other_user(void *arg)
{
    if (become_other_user(NOBODY) != 0)
        return 77;
    int r = pbx_unlink((const char *) arg);
    if (r != -EACCES && r != -EPERM) {
        fprintf(stderr, "pbx_unlink as uid %d returned %d (%s)\n", NOBODY, r, pbx_test_errname(r));
        return 1;
    }
    return 0;
}

TEST(other_user_without_write_access_to_the_directory_cannot_unlink)
{
    need_root();
    pbx_t *q = create_box("pub", 0666);
    int st = pbx_test_wait(pbx_test_fork(unlink_as_other_user, "pub"));
    if (st == 77)
        SKIP("cannot switch to uid %d", NOBODY);
    ASSERT_EQ(st, 0);
    ASSERT_TRUE(file_exists(box_path("pub")));
    ASSERT_OK(pbx_send(q, 1, "x", 1, PBX_NOWAIT));
    pbx_close(q);
}

static int remove_as_other_user(void *arg)
{
    if (become_other_user(NOBODY) != 0)
        return 77;
    pbx_t *q = NULL;
    int r = pbx_open((const char *) arg, 0, NULL, &q);
    if (r != 0) {
        fprintf(stderr, "pbx_open as uid %d returned %d (%s)\n", NOBODY, r, pbx_test_errname(r));
        return 1;
    }
    r = pbx_remove(q);
    pbx_close(q);
    if (r != -EACCES && r != -EPERM) {
        fprintf(stderr, "pbx_remove as uid %d returned %d (%s)\n", NOBODY, r, pbx_test_errname(r));
        return 2;
    }
    return 0;
}

TEST(remove_refused_by_the_os_leaves_the_mailbox_working)
{
    need_root();
    pbx_t *q = create_box("pub", 0666);
    ASSERT_OK(pbx_send(q, 1, "x", 1, PBX_NOWAIT));
    int st = pbx_test_wait(pbx_test_fork(remove_as_other_user, "pub"));
    if (st == 77)
        SKIP("cannot switch to uid %d", NOBODY);
    ASSERT_EQ(st, 0);
    /* The refused removal did not half-happen: name and mailbox are intact. */
    ASSERT_TRUE(file_exists(box_path("pub")));
    ASSERT_OK(pbx_send(q, 2, "y", 1, PBX_NOWAIT));
    ASSERT_EQ(stat_of(q).msgs, 2);
    pbx_t *q2 = NULL;
    ASSERT_OK(pbx_open("pub", 0, NULL, &q2));
    pbx_close(q2);
    pbx_close(q);
}

/* ---- pbx_remove -------------------------------------------------------------------------- */

TEST(remove_makes_the_name_disappear_at_once)
{
    pbx_t *q = create_box("box", 0600);
    ASSERT_OK(pbx_send(q, 1, "old", 3, 0));
    pbx_t *keep = NULL;
    ASSERT_OK(pbx_open("box", 0, NULL, &keep)); /* a second handle keeps it mapped */
    ASSERT_OK(pbx_remove(q));
    pbx_t *q2 = NULL;
    ASSERT_ERR(pbx_open("box", 0, NULL, &q2), -ENOENT);
    ASSERT_TRUE(!file_exists(box_path("box")));
    ASSERT_ERR(pbx_unlink("box"), -ENOENT);
    pbx_close(keep);
    pbx_close(q);
}

TEST(new_mailbox_under_a_removed_name_is_independent)
{
    pbx_t *old = create_box("box", 0600);
    ASSERT_OK(pbx_send(old, 1, "old", 3, 0));
    ASSERT_OK(pbx_remove(old));

    struct pbx_options o = pbx_test_options(3, 1000, 100, PBX_DROP_NEWEST);
    pbx_t *fresh = NULL;
    ASSERT_OK(pbx_open("box", PBX_CREATE | PBX_EXCL, &o, &fresh));
    struct pbx_stat st = stat_of(fresh);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.sent, 0);
    ASSERT_EQ(st.max_msgs, 3);
    ASSERT_EQ(st.overflow, PBX_DROP_NEWEST);
    char buf[8];
    ASSERT_ERR(pbx_recv(fresh, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_OK(pbx_send(fresh, 2, "new", 3, 0));
    /* The old handle still reports removal, not the new mailbox's state. */
    ASSERT_ERR(pbx_recv(old, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EIDRM);
    ASSERT_ERR(pbx_send(old, 1, "x", 1, PBX_NOWAIT), -EIDRM);
    /* Removing the old one again must not touch the new one. */
    ASSERT_ERR(pbx_remove(old), -EIDRM);
    pbx_close(old);
    pbx_t *again = NULL;
    ASSERT_OK(pbx_open("box", 0, NULL, &again));
    long t = 0;
    ASSERT_EQ(pbx_recv(again, 0, buf, sizeof(buf), PBX_NOWAIT, &t), 3);
    ASSERT_EQ(t, 2);
    ASSERT_MEM_EQ(buf, "new", 3);
    ASSERT_OK(pbx_send(fresh, 1, "y", 1, 0));
    pbx_close(again);
    pbx_close(fresh);
}

TEST(every_operation_on_a_removed_mailbox_is_eidrm)
{
    watchdog(20);
    pbx_t *q = create_box("box", 0600);
    ASSERT_OK(pbx_send(q, 1, "queued", 6, 0));
    ASSERT_OK(pbx_remove(q));
    char buf[16];
    const struct timespec ts = {5, 0};
    ASSERT_ERR(pbx_send(q, 1, "x", 1, 0), -EIDRM);
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), -EIDRM);
    ASSERT_ERR(pbx_timedsend(q, 1, "x", 1, 0, &ts), -EIDRM);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EIDRM);
    ASSERT_ERR(pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT | PBX_PEEK, NULL), -EIDRM);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), 0, NULL), -EIDRM); /* must not sleep */
    ASSERT_ERR(pbx_timedrecv(q, 0, buf, sizeof(buf), 0, NULL, &ts), -EIDRM);
    ASSERT_ERR(pbx_remove(q), -EIDRM);
    ASSERT_EQ(pbx_close(q), 0);
}

TEST(stat_on_a_removed_mailbox_is_eidrm_and_still_fills_the_result)
{
    struct pbx_options o = pbx_test_options(11, 2222, 333, PBX_DROP_OLDEST);
    o.mode = 0640;
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open("box", PBX_CREATE, &o, &q));
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_OK(pbx_remove(q));
    struct pbx_stat st;
    memset(&st, 0xEE, sizeof(st));
    ASSERT_ERR(pbx_stat(q, &st), -EIDRM);
    ASSERT_EQ(st.max_msgs, 11);
    ASSERT_EQ(st.max_bytes, 2222);
    ASSERT_EQ(st.max_msg_size, 333);
    ASSERT_EQ(st.overflow, PBX_DROP_OLDEST);
    ASSERT_EQ(st.mode, 0640);
    ASSERT_EQ(st.sent, 1);
    pbx_close(q);
}

TEST(remove_through_one_handle_is_seen_by_every_other_handle)
{
    pbx_t *a = create_box("box", 0600);
    pbx_t *b = NULL;
    ASSERT_OK(pbx_open("box", 0, NULL, &b));
    ASSERT_OK(pbx_remove(a));
    char buf[4];
    struct pbx_stat st;
    ASSERT_ERR(pbx_send(b, 1, "x", 1, PBX_NOWAIT), -EIDRM);
    ASSERT_ERR(pbx_recv(b, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EIDRM);
    ASSERT_ERR(pbx_stat(b, &st), -EIDRM);
    ASSERT_ERR(pbx_remove(b), -EIDRM);
    pbx_close(a);
    pbx_close(b);
}

static int expect_eidrm_in_child(void *arg)
{
    pbx_t *q = arg;
    char buf[4];
    int r = pbx_send(q, 1, "x", 1, PBX_NOWAIT);
    ssize_t s = pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL);
    return r == -EIDRM && s == -EIDRM ? 0 : 1;
}

TEST(remove_is_seen_by_handles_in_other_processes)
{
    pbx_t *q = create_box("box", 0600);
    pbx_t *b = NULL;
    ASSERT_OK(pbx_open("box", 0, NULL, &b));
    ASSERT_OK(pbx_remove(q));
    pbx_test_wait_ok(pbx_test_fork(expect_eidrm_in_child, b));
    pbx_close(b);
    pbx_close(q);
}

/* ---- pbx_unlink -------------------------------------------------------------------------- */

TEST(unlink_by_name_makes_old_handles_eidrm)
{
    pbx_t *q = create_box("box", 0600);
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_OK(pbx_unlink("box"));
    ASSERT_TRUE(!file_exists(box_path("box")));
    char buf[4];
    struct pbx_stat st;
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), -EIDRM);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EIDRM);
    ASSERT_ERR(pbx_stat(q, &st), -EIDRM);
    ASSERT_ERR(pbx_remove(q), -EIDRM);
    pbx_t *q2 = NULL;
    ASSERT_ERR(pbx_open("box", 0, NULL, &q2), -ENOENT);
    ASSERT_ERR(pbx_unlink("box"), -ENOENT);
    pbx_close(q);
}

TEST(unlink_of_a_closed_mailbox_removes_it)
{
    pbx_t *q = create_box("box", 0600);
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    pbx_close(q);
    ASSERT_OK(pbx_unlink("box"));
    ASSERT_EQ(dir_entries(), 0);
    ASSERT_ERR(pbx_open("box", 0, NULL, &q), -ENOENT);
}

TEST(unlink_of_a_missing_name_is_enoent)
{
    ASSERT_ERR(pbx_unlink("missing"), -ENOENT);
    pbx_t *q = create_box("present", 0600);
    ASSERT_ERR(pbx_unlink("missing"), -ENOENT);
    ASSERT_OK(pbx_send(q, 1, "x", 1, PBX_NOWAIT));
    pbx_close(q);
}

TEST(unlink_removes_a_garbage_file)
{
    static unsigned char junk[10000];
    uint32_t x = 99;
    for (size_t i = 0; i < sizeof(junk); i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char) (x >> 16);
    }
    write_file(box_path("junk"), junk, sizeof(junk));
    ASSERT_OK(pbx_unlink("junk"));
    ASSERT_TRUE(!file_exists(box_path("junk")));
}

TEST(unlink_removes_a_zero_length_file)
{
    write_file(box_path("empty"), "", 0);
    ASSERT_OK(pbx_unlink("empty"));
    ASSERT_TRUE(!file_exists(box_path("empty")));
}

/* ---- files that are not mailboxes --------------------------------------------------------- */

TEST(open_of_a_garbage_file_is_ebadmsg_and_leaves_it_alone)
{
    static unsigned char junk[10000], back[10001];
    uint32_t x = 7;
    for (size_t i = 0; i < sizeof(junk); i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char) (x >> 16);
    }
    write_file(box_path("junk"), junk, sizeof(junk));
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("junk", 0, NULL, &q), -EBADMSG);
    ASSERT_ERR(pbx_open("junk", PBX_CREATE, NULL, &q), -EBADMSG);
    ASSERT_EQ(read_file(box_path("junk"), back, sizeof(back)), sizeof(junk));
    ASSERT_MEM_EQ(back, junk, sizeof(junk));
}

TEST(open_of_a_small_garbage_file_is_ebadmsg)
{
    write_file(box_path("tiny"), "not a mailbox\n", 14);
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("tiny", 0, NULL, &q), -EBADMSG);
}

TEST(open_of_a_zero_length_file_is_ebadmsg)
{
    watchdog(20);
    write_file(box_path("empty"), "", 0);
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("empty", 0, NULL, &q), -EBADMSG);
}

TEST(open_of_a_truncated_mailbox_is_ebadmsg)
{
    pbx_t *q = create_box("cut", 0600);
    uint64_t size = stat_of(q).region_size;
    pbx_close(q);
    ASSERT_EQ(truncate(box_path("cut"), (off_t) (size / 2)), 0);
    ASSERT_ERR(pbx_open("cut", 0, NULL, &q), -EBADMSG);
    ASSERT_EQ(truncate(box_path("cut"), 64), 0);
    ASSERT_ERR(pbx_open("cut", 0, NULL, &q), -EBADMSG);
    ASSERT_OK(pbx_unlink("cut"));
    ASSERT_TRUE(!file_exists(box_path("cut")));
}

TEST(open_of_a_mailbox_with_damaged_magic_is_ebadmsg)
{
    pbx_t *q = create_box("bad", 0600);
    pbx_close(q);
    int fd = open(box_path("bad"), O_RDWR);
    ASSERT_GE(fd, 0);
    unsigned char head[8];
    ASSERT_EQ(pread(fd, head, sizeof(head), 0), 8);
    for (size_t i = 0; i < sizeof(head); i++)
        head[i] ^= 0x5A;
    ASSERT_EQ(pwrite(fd, head, sizeof(head), 0), 8);
    close(fd);
    ASSERT_ERR(pbx_open("bad", 0, NULL, &q), -EBADMSG);
    ASSERT_ERR(pbx_open("bad", PBX_CREATE, NULL, &q), -EBADMSG);
}

TEST(open_of_a_zero_filled_file_is_ebadmsg)
{
    watchdog(20);
    static unsigned char zeros[65536];
    write_file(box_path("zeros"), zeros, sizeof(zeros));
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("zeros", 0, NULL, &q), -EBADMSG);
}

/* The layout version follows the 8-byte magic at the start of the file (the house style: "magic
 * and layout version first"). */
TEST(open_of_a_mailbox_of_another_layout_version_is_eproto)
{
    pbx_t *q = create_box("future", 0600);
    pbx_close(q);
    int fd = open(box_path("future"), O_RDWR);
    ASSERT_GE(fd, 0);
    uint32_t version;
    ASSERT_EQ(pread(fd, &version, sizeof(version), 8), 4);
    version += 100;
    ASSERT_EQ(pwrite(fd, &version, sizeof(version), 8), 4);
    close(fd);
    ASSERT_ERR(pbx_open("future", 0, NULL, &q), -EPROTO);
    ASSERT_ERR(pbx_open("future", PBX_CREATE, NULL, &q), -EPROTO);
    ASSERT_OK(pbx_unlink("future"));
    ASSERT_TRUE(!file_exists(box_path("future")));
}

TEST(open_of_a_fifo_fails_without_hanging)
{
    watchdog(20);
    ASSERT_EQ(mkfifo(box_path("fifo"), 0600), 0);
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("fifo", 0, NULL, &q), -EBADMSG);
    ASSERT_ERR(pbx_open("fifo", PBX_CREATE, NULL, &q), -EBADMSG);
    ASSERT_OK(pbx_unlink("fifo"));
    ASSERT_TRUE(!file_exists(box_path("fifo")));
}

TEST(open_of_a_symlink_is_eloop_and_does_not_follow_it)
{
    pbx_t *real = create_box("real", 0600);
    ASSERT_OK(pbx_send(real, 1, "real", 4, 0));
    ASSERT_EQ(symlink("pbx.real", box_path("link")), 0);
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("link", 0, NULL, &q), -ELOOP);
    ASSERT_ERR(pbx_open("link", PBX_CREATE, NULL, &q), -ELOOP);
    /* The link is still a link, and the real mailbox is untouched. */
    struct stat st;
    ASSERT_EQ(lstat(box_path("link"), &st), 0);
    ASSERT_TRUE(S_ISLNK(st.st_mode));
    struct pbx_stat ps = stat_of(real);
    ASSERT_EQ(ps.msgs, 1);
    ASSERT_EQ(ps.received, 0);
    pbx_close(real);
}

TEST(create_through_a_dangling_symlink_fails_without_creating_the_target)
{
    char target[4096];
    snprintf(target, sizeof(target), "%s/target", box_dir());
    ASSERT_EQ(symlink(target, box_path("dangle")), 0);
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("dangle", PBX_CREATE, NULL, &q), -ELOOP);
    ASSERT_ERR(pbx_open("dangle", 0, NULL, &q), -ELOOP);
    ASSERT_TRUE(!file_exists(target));
    struct stat st;
    ASSERT_EQ(lstat(box_path("dangle"), &st), 0);
    ASSERT_TRUE(S_ISLNK(st.st_mode));
}

TEST(unlink_of_a_symlink_removes_the_link_not_its_target)
{
    pbx_t *real = create_box("real", 0600);
    ASSERT_OK(pbx_send(real, 1, "real", 4, 0));
    ASSERT_EQ(symlink("pbx.real", box_path("link")), 0);
    ASSERT_OK(pbx_unlink("link"));
    ASSERT_TRUE(!file_exists(box_path("link")));
    ASSERT_TRUE(file_exists(box_path("real")));
    char buf[8];
    ASSERT_EQ(pbx_recv(real, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 4);
    pbx_close(real);
}

/* ---- anonymous mailboxes ------------------------------------------------------------------ */

static int private_child(void *arg)
{
    pbx_t *q = arg;
    char buf[16];
    long t = 0;
    const struct timespec ts = {10, 0};
    /* Sent by the parent before the fork. */
    if (pbx_timedrecv(q, 1, buf, sizeof(buf), 0, &t, &ts) != 6 || memcmp(buf, "before", 6))
        return 1;
    /* Sent by the parent after the fork. */
    if (pbx_timedrecv(q, 2, buf, sizeof(buf), 0, &t, &ts) != 4 || memcmp(buf, "ping", 4))
        return 2;
    if (pbx_send(q, 3, "pong", 4, 0) != 0)
        return 3;
    return 0;
}

TEST(private_mailbox_is_shared_with_a_child_forked_after_creation)
{
    pbx_t *q = NULL;
    struct pbx_options o = pbx_test_options(8, 4096, 512, PBX_BLOCK);
    ASSERT_OK(pbx_open_private(&o, &q));
    ASSERT_OK(pbx_send(q, 1, "before", 6, 0));
    pid_t pid = pbx_test_fork(private_child, q);
    ASSERT_OK(pbx_send(q, 2, "ping", 4, 0));
    char buf[16];
    long t = 0;
    const struct timespec ts = {10, 0};
    ASSERT_EQ(pbx_timedrecv(q, 3, buf, sizeof(buf), 0, &t, &ts), 4);
    ASSERT_EQ(t, 3);
    ASSERT_MEM_EQ(buf, "pong", 4);
    pbx_test_wait_ok(pid);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.sent, 3);
    ASSERT_EQ(st.received, 3);
    ASSERT_EQ(st.msgs, 0);
    pbx_close(q);
}

TEST(private_mailbox_leaves_no_file_in_postbox_dir)
{
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open_private(NULL, &q));
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_EQ(dir_entries(), 0);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.msgs, 1);
    ASSERT_EQ(st.mode, 0600);
    ASSERT_EQ(st.max_msgs, 4096);
    ASSERT_GT(st.region_size, 0);
    pbx_close(q);
    ASSERT_EQ(dir_entries(), 0);
}

TEST(private_mailboxes_are_independent_of_each_other)
{
    pbx_t *a = NULL, *b = NULL;
    ASSERT_OK(pbx_open_private(NULL, &a));
    ASSERT_OK(pbx_open_private(NULL, &b));
    ASSERT_OK(pbx_send(a, 1, "a", 1, 0));
    char buf[4];
    ASSERT_ERR(pbx_recv(b, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_EQ(pbx_recv(a, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    pbx_close(a);
    pbx_close(b);
}

TEST(private_mailbox_keeps_its_options)
{
    struct pbx_options o = pbx_test_options(2, 100, 40, PBX_DROP_OLDEST);
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open_private(&o, &q));
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.max_msgs, 2);
    ASSERT_EQ(st.max_bytes, 100);
    ASSERT_EQ(st.max_msg_size, 40);
    ASSERT_EQ(st.overflow, PBX_DROP_OLDEST);
    ASSERT_OK(pbx_send(q, 1, "a", 1, 0));
    ASSERT_OK(pbx_send(q, 1, "b", 1, 0));
    ASSERT_EQ(pbx_send(q, 1, "c", 1, 0), 1);
    pbx_close(q);
}

TEST(private_mailbox_can_be_removed)
{
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open_private(NULL, &q));
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_OK(pbx_remove(q));
    char buf[4];
    ASSERT_ERR(pbx_send(q, 1, "x", 1, PBX_NOWAIT), -EIDRM);
    ASSERT_ERR(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -EIDRM);
    ASSERT_ERR(pbx_remove(q), -EIDRM);
    pbx_close(q);
}

/* ---- pbx_stat fields ---------------------------------------------------------------------- */

TEST(stat_of_a_new_mailbox_reports_owner_limits_and_zero_activity)
{
    struct pbx_options o = pbx_test_options(12, 5000, 700, PBX_DROP_NEWEST);
    o.mode = 0640;
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open("box", PBX_CREATE, &o, &q));
    struct pbx_stat st;
    memset(&st, 0xEE, sizeof(st));
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.uid, geteuid());
    ASSERT_EQ(st.gid, getegid());
    ASSERT_EQ(st.mode, 0640);
    ASSERT_EQ(st.max_msgs, 12);
    ASSERT_EQ(st.max_bytes, 5000);
    ASSERT_EQ(st.max_msg_size, 700);
    ASSERT_EQ(st.overflow, PBX_DROP_NEWEST);
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.bytes, 0);
    ASSERT_EQ(st.last_send_pid, 0);
    ASSERT_EQ(st.last_recv_pid, 0);
    ASSERT_EQ(st.last_send_time, 0);
    ASSERT_EQ(st.last_recv_time, 0);
    ASSERT_EQ(st.sent, 0);
    ASSERT_EQ(st.received, 0);
    ASSERT_EQ(st.dropped, 0);
    ASSERT_EQ(st.repairs, 0);
    ASSERT_EQ(st.send_waiters, 0);
    ASSERT_EQ(st.recv_waiters, 0);
    ASSERT_GT(st.region_size, 0);
    ASSERT_GE(st.region_size, st.max_bytes);
    pbx_close(q);
}

TEST(stat_records_last_sender_receiver_and_their_times)
{
    pbx_t *q = create_box("box", 0600);
    /* The stamps are time(): whole seconds of the tick clock, which may lag the precise clock
     * by a tick, so a stamp can be up to 1 s and a tick before t0. 2 s; not a speed limit. */
    const int64_t slack = 2000000000;
    int64_t t0 = realtime_ns();
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    int64_t t1 = realtime_ns();
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.last_send_pid, getpid());
    ASSERT_EQ(st.last_recv_pid, 0);
    ASSERT_GE(st.last_send_time, t0 - slack);
    ASSERT_LE(st.last_send_time, t1 + slack);
    ASSERT_EQ(st.last_recv_time, 0);

    pbx_test_sleep_ms(20);
    int64_t t2 = realtime_ns();
    char buf[4];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    int64_t t3 = realtime_ns();
    struct pbx_stat st2 = stat_of(q);
    ASSERT_EQ(st2.last_recv_pid, getpid());
    ASSERT_EQ(st2.last_send_pid, getpid());
    ASSERT_GE(st2.last_recv_time, t2 - slack);
    ASSERT_LE(st2.last_recv_time, t3 + slack);
    ASSERT_GE(st2.last_recv_time, st2.last_send_time);
    ASSERT_EQ(st2.last_send_time, st.last_send_time); /* a receive is not a send */
    pbx_close(q);
}

static int send_from_child(void *arg)
{
    pbx_t *q = NULL;
    if (pbx_open((const char *) arg, 0, NULL, &q) != 0)
        return 1;
    int r = pbx_send(q, 1, "child", 5, 0);
    pbx_close(q);
    return r == 0 ? 0 : 2;
}

TEST(stat_records_the_pid_of_a_sender_in_another_process)
{
    pbx_t *q = create_box("box", 0600);
    pid_t pid = pbx_test_fork(send_from_child, "box");
    pbx_test_wait_ok(pid);
    ASSERT_EQ(stat_of(q).last_send_pid, pid);
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 5);
    struct pbx_stat st = stat_of(q);
    ASSERT_EQ(st.last_send_pid, pid);
    ASSERT_EQ(st.last_recv_pid, getpid());
    pbx_close(q);
}

static int send_with_inherited_handle(void *arg)
{
    return pbx_send((pbx_t *) arg, 1, "child", 5, 0) == 0 ? 0 : 1;
}

TEST(stat_records_the_pid_of_a_forked_child_using_an_inherited_handle)
{
    pbx_t *q = create_box("box", 0600);
    /* The parent uses the handle first, so anything it caches about itself is set. */
    ASSERT_OK(pbx_send(q, 1, "parent", 6, 0));
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 6);
    pid_t pid = pbx_test_fork(send_with_inherited_handle, q);
    pbx_test_wait_ok(pid);
    ASSERT_EQ(stat_of(q).last_send_pid, pid);
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 5);
    ASSERT_EQ(stat_of(q).last_recv_pid, getpid());
    pbx_close(q);
}
