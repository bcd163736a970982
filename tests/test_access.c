/*
 * test_access.c — who may open a mailbox, where its file can be, and what a process leaks.
 *
 *   - a new mailbox is 0600 unless the caller asks for another mode, which it gets exactly;
 *   - another user is refused with -EACCES unless the mode lets them in (needs root to become
 *     another user: skipped otherwise);
 *   - a name cannot leave the mailbox directory;
 *   - a symbolic link under a mailbox's name is never followed, neither to open nor to create;
 *   - every descriptor postbox keeps is close-on-exec.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define NOBODY 65534

static char *path_of(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.%s", getenv("POSTBOX_DIR"), name);
    return path;
}

static unsigned file_mode(const char *name)
{
    struct stat st;
    ASSERT_EQ(lstat(path_of(name), &st), 0);
    return st.st_mode & 07777;
}

TEST(a_new_mailbox_is_0600_unless_another_mode_is_asked_for)
{
    mode_t old = umask(0); /* the mode is exact, whatever the umask */
    pbx_t *q;
    ASSERT_OK(pbx_open("plain", PBX_CREATE | PBX_EXCL, NULL, &q));
    ASSERT_EQ(file_mode("plain"), 0600);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.mode, 0600);
    pbx_close(q);

    umask(077);
    struct pbx_options o;
    pbx_options_init(&o);
    o.mode = 0640;
    ASSERT_OK(pbx_open("group", PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_EQ(file_mode("group"), 0640);
    pbx_close(q);
    umask(old);
}

struct as_nobody {
    const char *name;
    int expect;
};

static int open_as_nobody(void *arg)
{
    const struct as_nobody *a = arg;
    if (setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0)
        return 10;
    pbx_t *q;
    int r = pbx_open(a->name, 0, NULL, &q);
    if (r != a->expect)
        return 11;
    if (r == 0) {
        if (pbx_send(q, 1, "hi", 2, PBX_NOWAIT) != 0)
            return 12;
        pbx_close(q);
    }
    /* Nor may another user replace it (the directory is not theirs to write, either). */
    int c = pbx_open(a->name, PBX_CREATE | PBX_EXCL, NULL, &q);
    if (c != -EEXIST && c != -EACCES)
        return 13;
    if (pbx_unlink(a->name) == 0)
        return 14;
    return 0;
}

TEST(another_user_is_refused_unless_the_mode_lets_them_in)
{
    if (geteuid() != 0)
        SKIP("needs root to become another user");
    /* The directory itself must let the other user in, so that the mode is what decides. */
    ASSERT_EQ(chmod(getenv("POSTBOX_DIR"), 0755), 0);
    pbx_t *mine, *open_one;
    ASSERT_OK(pbx_open("private", PBX_CREATE | PBX_EXCL, NULL, &mine));
    struct pbx_options o;
    pbx_options_init(&o);
    o.mode = 0666;
    ASSERT_OK(pbx_open("shared", PBX_CREATE | PBX_EXCL, &o, &open_one));

    struct as_nobody refused = {"private", -EACCES}, allowed = {"shared", 0};
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(open_as_nobody, &refused)), 0);
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(open_as_nobody, &allowed)), 0);
    char buf[4];
    ASSERT_EQ(pbx_recv(open_one, 1, buf, sizeof(buf), PBX_NOWAIT, NULL), 2);
    ASSERT_ERR(pbx_recv(mine, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_close(mine);
    pbx_close(open_one);
}

TEST(names_cannot_leave_the_mailbox_directory)
{
    static const char *bad[] = {"../escape", "a/b", "/etc/passwd", "..", ".", "", "x\n", "a b"};
    pbx_t *q;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ASSERT_ERR(pbx_open(bad[i], PBX_CREATE, NULL, &q), -EINVAL);
        ASSERT_ERR(pbx_unlink(bad[i]), -EINVAL);
    }
    char longest[PBX_NAME_MAX + 2];
    memset(longest, 'n', sizeof(longest));
    longest[PBX_NAME_MAX + 1] = '\0';
    ASSERT_ERR(pbx_open(longest, PBX_CREATE, NULL, &q), -EINVAL);
    longest[PBX_NAME_MAX] = '\0';
    ASSERT_OK(pbx_open(longest, PBX_CREATE | PBX_EXCL, NULL, &q));
    pbx_close(q);
    ASSERT_OK(pbx_unlink(longest));
    /* Nothing was made outside the directory. */
    ASSERT_EQ(access("escape", F_OK), -1);
}

TEST(a_symbolic_link_under_the_name_is_never_followed)
{
    pbx_t *target, *q;
    ASSERT_OK(pbx_open("target", PBX_CREATE | PBX_EXCL, NULL, &target));
    ASSERT_OK(pbx_send(target, 1, "t", 1, 0));
    char target_path[4096];
    snprintf(target_path, sizeof(target_path), "%s", path_of("target"));
    ASSERT_EQ(symlink(target_path, path_of("link")), 0);
    ASSERT_ERR(pbx_open("link", 0, NULL, &q), -ELOOP);
    ASSERT_ERR(pbx_open("link", PBX_CREATE, NULL, &q), -ELOOP);
    ASSERT_ERR(pbx_open("link", PBX_CREATE | PBX_EXCL, NULL, &q), -EEXIST);

    /* A dangling link is not created through either. */
    char elsewhere[4096];
    snprintf(elsewhere, sizeof(elsewhere), "%s/not-a-mailbox", getenv("POSTBOX_DIR"));
    ASSERT_EQ(symlink(elsewhere, path_of("dangling")), 0);
    ASSERT_ERR(pbx_open("dangling", PBX_CREATE, NULL, &q), -ELOOP);
    ASSERT_EQ(access(elsewhere, F_OK), -1);

    /* Unlinking the name removes the link, not what it points to. */
    ASSERT_OK(pbx_unlink("link"));
    ASSERT_OK(pbx_unlink("dangling"));
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(target, &st));
    ASSERT_EQ(st.msgs, 1);
    pbx_close(target);
}

/* Descriptors open now that were not open in before[] must all be close-on-exec. */
static void fds_open(char *open_now, int n)
{
    memset(open_now, 0, (size_t) n);
    DIR *d = opendir("/proc/self/fd");
    ASSERT_TRUE(d != NULL);
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != self && fd < n)
            open_now[fd] = 1;
    }
    closedir(d);
}

TEST(every_descriptor_postbox_keeps_is_close_on_exec)
{
    enum { N = 1024 };
    static char before[N], after[N];
    fds_open(before, N);
    pbx_t *a, *b, *c, *p;
    ASSERT_OK(pbx_open("cloexec", PBX_CREATE | PBX_EXCL, NULL, &a)); /* created */
    ASSERT_OK(pbx_open("cloexec", 0, NULL, &b));                     /* opened */
    ASSERT_OK(pbx_open("cloexec2", PBX_CREATE, NULL, &c));           /* open-or-create */
    ASSERT_OK(pbx_open_private(NULL, &p));                           /* memfd */
    fds_open(after, N);
    int kept = 0;
    for (int fd = 0; fd < N; fd++) {
        if (!after[fd] || before[fd])
            continue;
        kept++;
        int flags = fcntl(fd, F_GETFD);
        ASSERT_TRUE(flags >= 0);
        if (!(flags & FD_CLOEXEC))
            pbx_test_fail(__FILE__, __LINE__, "descriptor %d is not close-on-exec", fd);
    }
    ASSERT_GE(kept, 4);
    pbx_close(a);
    pbx_close(b);
    pbx_close(c);
    pbx_close(p);
    fds_open(after, N);
    for (int fd = 0; fd < N; fd++)
        if (after[fd] && !before[fd])
            pbx_test_fail(__FILE__, __LINE__, "descriptor %d left open after close", fd);
}
