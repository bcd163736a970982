/*
 * test_spool_bad.c — what a spool does with input it did not write: foreign files in its
 * directories, truncated and corrupted message files, damaged metadata, wrong permissions, a
 * path that is a symbolic link or not a directory, and a full disk (through the fault table
 * of src/os/fs.h). Each is a documented error, or a skip with a warning; never a crash, a
 * partial message, or a lost one (damaged messages are set aside in bad/, not deleted).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "os/fs.h"
#include "spool_util.h"

static char name[4096], dir[4096];

static pbx_t *open_fresh(void)
{
    struct pbx_options o = pbx_test_options(16, 4096, 256, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(spool_name(name, sizeof(name), "bad"), PBX_CREATE | PBX_EXCL, &o, &q));
    spool_dir(dir, sizeof(dir), "bad");
    return q;
}

static void write_at(const char *rel, const char *content)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    ASSERT_TRUE(f != NULL);
    fputs(content, f);
    fclose(f);
}

static const char *path_of(const char *rel)
{
    static char path[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return path;
}

static void expect_recv(pbx_t *q, long type, const char *want)
{
    char buf[256];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &t), (long long) strlen(want));
    ASSERT_EQ(t, type);
    ASSERT_MEM_EQ(buf, want, strlen(want));
}

/* The only file in the bucket of the first messages. */
static const char *first_msg_file(void)
{
    static char path[8600];
    char bucket[8192];
    snprintf(bucket, sizeof(bucket), "%s/q/00000000", dir);
    DIR *d = opendir(bucket);
    ASSERT_TRUE(d != NULL);
    path[0] = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && (!path[0] || strcmp(e->d_name, strrchr(path, '/') + 1) < 0))
            snprintf(path, sizeof(path), "%s/%s", bucket, e->d_name);
    closedir(d);
    ASSERT_TRUE(path[0] != 0);
    return path;
}

TEST(foreign_files_in_every_directory_are_skipped)
{
    pbx_t *q = open_fresh();
    ASSERT_OK(pbx_send(q, 1, "real", 4, 0));
    write_at("q/README", "not a bucket");
    write_at("q/00000000/notes.txt", "not a message");
    write_at("q/00000000/0000000000000099.1.99999", "length above max_msg_size");
    write_at("c/junk", "not a claim");
    write_at("tmp/junk", "not a temporary file");
    mkdir(path_of("q/zzzz"), 0700);
    pbx_t *h;
    ASSERT_OK(pbx_open(name, 0, NULL, &h)); /* scans them all */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(h, &st));
    ASSERT_EQ(st.msgs, 1);
    expect_recv(h, 1, "real");
    char b[8];
    ASSERT_ERR(pbx_recv(h, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    /* The foreign files are left alone. */
    ASSERT_EQ(access(path_of("q/00000000/notes.txt"), F_OK), 0);
    ASSERT_EQ(access(path_of("c/junk"), F_OK), 0);
    ASSERT_EQ(access(path_of("tmp/junk"), F_OK), 0);
    /* And a spool with foreign files can still be removed; they stay. */
    ASSERT_OK(pbx_remove(h));
    pbx_close(h);
    pbx_close(q);
}

static void damaged_message_is_set_aside(void (*damage)(const char *path))
{
    pbx_t *q = open_fresh();
    ASSERT_OK(pbx_send(q, 1, "first message", 13, 0));
    ASSERT_OK(pbx_send(q, 2, "second", 6, 0));
    damage(first_msg_file());
    expect_recv(q, 2, "second");                 /* the damaged one is skipped ... */
    ASSERT_EQ(count_entries(path_of("bad")), 1); /* ... and kept in bad/ */
    char b[32];
    ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    pbx_close(q);
}

static void truncate_it(const char *path)
{
    ASSERT_EQ(truncate(path, 10), 0);
}

static void flip_a_payload_byte(const char *path)
{
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    char c;
    ASSERT_EQ(pread(fd, &c, 1, 30), 1);
    c ^= 0x40;
    ASSERT_EQ(pwrite(fd, &c, 1, 30), 1);
    close(fd);
}

static void empty_it(const char *path)
{
    ASSERT_EQ(truncate(path, 0), 0);
}

TEST(truncated_message_file_is_set_aside_and_the_next_one_received)
{
    damaged_message_is_set_aside(truncate_it);
}

TEST(corrupted_message_payload_is_set_aside_and_the_next_one_received)
{
    damaged_message_is_set_aside(flip_a_payload_byte);
}

TEST(empty_message_file_is_set_aside_and_the_next_one_received)
{
    damaged_message_is_set_aside(empty_it);
}

TEST(peek_at_a_damaged_message_sets_it_aside_too)
{
    pbx_t *q = open_fresh();
    ASSERT_OK(pbx_send(q, 1, "first message", 13, 0));
    ASSERT_OK(pbx_send(q, 2, "second", 6, 0));
    truncate_it(first_msg_file());
    char b[32];
    long t = 0;
    ASSERT_EQ(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT | PBX_PEEK, &t), 6);
    ASSERT_EQ(t, 2);
    ASSERT_EQ(count_entries(path_of("bad")), 1);
    pbx_close(q);
}

TEST(damaged_metadata_is_ebadmsg_and_other_version_eproto)
{
    pbx_t *q = open_fresh();
    pbx_close(q);
    int fd = open(path_of("meta"), O_RDWR);
    ASSERT_TRUE(fd >= 0);
    uint32_t v = 99;
    ASSERT_EQ(pwrite(fd, &v, 4, 8), 4); /* the version field */
    pbx_t *h = NULL;
    ASSERT_ERR(pbx_open(name, 0, NULL, &h), -EPROTO);
    v = 1;
    ASSERT_EQ(pwrite(fd, &v, 4, 8), 4);
    ASSERT_OK(pbx_open(name, 0, NULL, &h));
    pbx_close(h);
    char c = 'X';
    ASSERT_EQ(pwrite(fd, &c, 1, 20), 1); /* a limit, under the checksum */
    close(fd);
    ASSERT_ERR(pbx_open(name, 0, NULL, &h), -EBADMSG);
    ASSERT_ERR(pbx_open(name, PBX_CREATE, NULL, &h), -EBADMSG);
    /* pbx_unlink still removes a damaged spool. */
    ASSERT_OK(pbx_unlink(name));
    ASSERT_EQ(access(dir, F_OK), -1);
}

TEST(directory_that_is_not_a_spool_is_ebadmsg_and_never_deleted)
{
    spool_dir(dir, sizeof(dir), "plain");
    spool_name(name, sizeof(name), "plain");
    ASSERT_EQ(mkdir(dir, 0700), 0);
    write_at("precious", "user data");
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open(name, 0, NULL, &q), -EBADMSG);
    ASSERT_ERR(pbx_open(name, PBX_CREATE, NULL, &q), -EBADMSG);
    ASSERT_ERR(pbx_open(name, PBX_CREATE | PBX_EXCL, NULL, &q), -EEXIST);
    ASSERT_ERR(pbx_unlink(name), -EBADMSG);
    ASSERT_EQ(access(path_of("precious"), F_OK), 0);
}

TEST(empty_directory_becomes_a_spool)
{
    spool_dir(dir, sizeof(dir), "empty");
    ASSERT_EQ(mkdir(dir, 0700), 0);
    pbx_t *q = NULL;
    ASSERT_OK(pbx_open(spool_name(name, sizeof(name), "empty"), PBX_CREATE | PBX_EXCL, NULL, &q));
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    pbx_close(q);
}

TEST(symbolic_link_is_eloop_and_a_file_is_enotdir)
{
    pbx_t *q = open_fresh();
    pbx_close(q);
    char link[4096], lname[4096];
    spool_dir(link, sizeof(link), "link");
    ASSERT_EQ(symlink(dir, link), 0);
    ASSERT_ERR(pbx_open(spool_name(lname, sizeof(lname), "link"), 0, NULL, &q), -ELOOP);
    ASSERT_ERR(pbx_open(lname, PBX_CREATE, NULL, &q), -ELOOP);
    ASSERT_ERR(pbx_unlink(lname), -ELOOP);
    ASSERT_EQ(access(dir, F_OK), 0); /* the target is untouched */
    char file[4096], fname[4096];
    spool_dir(file, sizeof(file), "file");
    FILE *f = fopen(file, "w");
    ASSERT_TRUE(f != NULL);
    fclose(f);
    ASSERT_ERR(pbx_open(spool_name(fname, sizeof(fname), "file"), 0, NULL, &q), -ENOTDIR);
    ASSERT_ERR(pbx_open(fname, PBX_CREATE, NULL, &q), -ENOTDIR);
}

TEST(spool_without_permission_is_eacces)
{
    pbx_t *q = open_fresh(); /* mode 0600: only its owner */
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0) {
            if (setuid(65534) != 0) /* root passes every mode check: become nobody */
                _exit(77);
        } else if (chmod(dir, 0) != 0) {
            _exit(78);
        }
        pbx_t *h = NULL;
        int r = pbx_open(name, 0, NULL, &h);
        _exit(r == -EACCES ? 0 : 10);
    }
    int st = pbx_test_wait(pid);
    chmod(dir, 0700);
    if (st == 77)
        SKIP("cannot drop privileges");
    ASSERT_EQ(st, 0);
    pbx_close(q);
}

static int fail_enospc(int fd, const void *buf, size_t len)
{
    (void) fd;
    (void) buf;
    (void) len;
    return -ENOSPC;
}

static int fail_eio(int fd)
{
    (void) fd;
    return -EIO;
}

TEST(full_disk_fails_the_send_cleanly_and_leaves_nothing)
{
    pbx_t *q = open_fresh();
    ASSERT_OK(pbx_send(q, 1, "before", 6, 0));
    pbx__fs_table()->write_all = fail_enospc;
    ASSERT_ERR(pbx_send(q, 2, "lost", 4, 0), -ENOSPC);
    pbx__fs_table_reset();
    pbx__fs_table()->fdatasync = fail_eio;
    ASSERT_ERR(pbx_send(q, 3, "lost", 4, 0), -EIO);
    pbx__fs_table_reset();
    ASSERT_EQ(count_entries(path_of("tmp")), 0);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 1);
    ASSERT_EQ(st.sent, 1);
    ASSERT_OK(pbx_send(q, 4, "after", 5, 0));
    expect_recv(q, 1, "before");
    expect_recv(q, 4, "after");
    pbx_close(q);
}

TEST(create_on_a_full_disk_is_enospc_and_leaves_nothing)
{
    pbx__fs_table()->write_all = fail_enospc;
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open(spool_name(name, sizeof(name), "full"), PBX_CREATE, NULL, &q), -ENOSPC);
    pbx__fs_table_reset();
    ASSERT_EQ(count_entries(getenv("POSTBOX_DIR")), 0);
    ASSERT_OK(pbx_open(name, PBX_CREATE, NULL, &q));
    pbx_close(q);
}
