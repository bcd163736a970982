/*
 * test_badfiles.c — files under a mailbox's name that are not (or no longer) a good region:
 * empty, truncated, another magic, another layout version, noise, a directory, a FIFO, and a
 * region that another process shrinks while it is mapped. Each gets the documented answer
 * (docs/reliability.md), never a crash of the caller, and pbx_unlink() clears the name.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "shm/region.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static char *path_of(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.%s", getenv("POSTBOX_DIR"), name);
    return path;
}

static void write_file(const char *name, const void *data, size_t n)
{
    int fd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, data, n), (ssize_t) n);
    close(fd);
}

/* The bytes of a good, fresh region (the caller frees). */
static unsigned char *good_region(size_t *size)
{
    pbx_t *q;
    struct pbx_options o = pbx_test_options(8, 4096, 1000, PBX_BLOCK);
    ASSERT_OK(pbx_open("model", PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_OK(pbx_send(q, 1, "hello", 5, 0));
    int fd = open(path_of("model"), O_RDONLY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    unsigned char *b = malloc((size_t) st.st_size);
    ASSERT_TRUE(b != NULL);
    ASSERT_EQ(read(fd, b, (size_t) st.st_size), st.st_size);
    close(fd);
    pbx_close(q);
    *size = (size_t) st.st_size;
    return b;
}

/* Open, open-or-create and open-exclusive all refuse the file with err; unlink clears it. */
static void expect_refused(const char *name, int err)
{
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open(name, 0, NULL, &q), err);
    ASSERT_ERR(pbx_open(name, PBX_CREATE, NULL, &q), err);
    ASSERT_ERR(pbx_open(name, PBX_CREATE | PBX_EXCL, NULL, &q), -EEXIST);
    ASSERT_OK(pbx_unlink(name));
    ASSERT_ERR(pbx_open(name, 0, NULL, &q), -ENOENT);
}

TEST(empty_truncated_foreign_and_noise_files_are_refused_as_not_a_mailbox)
{
    size_t size;
    unsigned char *good = good_region(&size);
    unsigned long tried = 0;

    write_file("empty", "", 0);
    expect_refused("empty", -EBADMSG);
    tried++;
    /* Cut at every interesting length: inside the identity, the geometry, the header, the
     * arrays, one byte short. */
    size_t cuts[] = {1,
                     8,
                     15,
                     100,
                     sizeof(struct pbx_header) - 1,
                     sizeof(struct pbx_header),
                     4096,
                     size / 2,
                     size - 4096,
                     size - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        write_file("cut", good, cuts[i]);
        expect_refused("cut", -EBADMSG);
        tried++;
    }
    unsigned char *bad = malloc(size);
    ASSERT_TRUE(bad != NULL);

    memcpy(bad, good, size);
    bad[3] ^= 0x20; /* the magic */
    write_file("magic", bad, size);
    expect_refused("magic", -EBADMSG);
    tried++;

    memcpy(bad, good, size);
    ((struct pbx_header *) bad)->version = PBX_LAYOUT_VERSION + 1;
    write_file("version", bad, size);
    expect_refused("version", -EPROTO);
    tried++;

    memcpy(bad, good, size);
    ((struct pbx_header *) bad)->header_size += 64;
    write_file("hsize", bad, size);
    expect_refused("hsize", -EBADMSG);
    tried++;

    memcpy(bad, good, size);
    ((struct pbx_header *) bad)->geo.nslots++;
    write_file("geometry", bad, size);
    expect_refused("geometry", -EBADMSG);
    tried++;

    uint32_t x = 12345;
    for (size_t i = 0; i < size; i++) {
        x = x * 1103515245u + 12345u;
        bad[i] = (unsigned char) (x >> 16);
    }
    write_file("noise", bad, size);
    expect_refused("noise", -EBADMSG);
    tried++;

    /* Text, as if someone wrote a file of their own under the name. */
    write_file("text", "#!/bin/sh\necho not a mailbox\n", 29);
    expect_refused("text", -EBADMSG);
    tried++;

    /* The good bytes under another name are a good mailbox: the checks are not too strict. */
    write_file("copy", good, size);
    pbx_t *q;
    ASSERT_OK(pbx_open("copy", 0, NULL, &q));
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT, NULL), 5);
    pbx_close(q);
    printf("bad files: %lu kinds of damaged file refused\n", tried);
    free(bad);
    free(good);
}

TEST(a_directory_or_fifo_under_the_name_is_refused_without_blocking)
{
    ASSERT_EQ(mkdir(path_of("dir"), 0700), 0);
    pbx_t *q;
    ASSERT_ERR(pbx_open("dir", 0, NULL, &q), -EISDIR);
    ASSERT_ERR(pbx_open("dir", PBX_CREATE, NULL, &q), -EISDIR);
    ASSERT_EQ(rmdir(path_of("dir")), 0);

    ASSERT_EQ(mkfifo(path_of("fifo"), 0600), 0);
    ASSERT_ERR(pbx_open("fifo", 0, NULL, &q), -EBADMSG); /* opened without blocking, refused */
    ASSERT_OK(pbx_unlink("fifo"));
    ASSERT_ERR(pbx_open("fifo", 0, NULL, &q), -ENOENT);
}

/*
 * A region shrunk by another process (ftruncate, with write access) after it was mapped: the
 * pages beyond the new end are gone, and the kernel answers a touch of them with SIGBUS. postbox
 * does not catch SIGBUS (a library cannot own a process-wide signal); docs/reliability.md says
 * so. This test pins down that behaviour: the process that touches the lost pages dies of
 * SIGBUS, and a process that opens the mailbox afterwards is refused cleanly.
 */
static pbx_t *shrunk;

static int send_into_shrunk(void *arg)
{
    (void) arg;
    static char big[900];
    for (int i = 0; i < 8; i++)
        pbx_send(shrunk, 1, big, sizeof(big), PBX_NOWAIT);
    return 0;
}

TEST(a_region_shrunk_while_mapped_raises_sigbus_where_lost_pages_are_touched)
{
    struct pbx_options o = pbx_test_options(8, 4096, 1000, PBX_BLOCK);
    ASSERT_OK(pbx_open("shrink", PBX_CREATE | PBX_EXCL, &o, &shrunk));
    ASSERT_EQ(truncate(path_of("shrink"), 4096), 0);
    int status = pbx_test_wait(pbx_test_fork(send_into_shrunk, NULL));
    /* Under the address sanitizer its own SIGBUS handler reports and exits instead. */
    ASSERT_TRUE(status == 128 + SIGBUS || (SANITIZED && status != 0));
    pbx_t *q;
    ASSERT_ERR(pbx_open("shrink", 0, NULL, &q), -EBADMSG);
    ASSERT_OK(pbx_unlink("shrink"));
}

/* A private mailbox cannot be shrunk at all: its memory file is sealed. */
TEST(a_private_mailbox_cannot_be_shrunk_by_whoever_holds_its_descriptor)
{
    pbx_t *q;
    ASSERT_OK(pbx_open_private(NULL, &q));
    DIR *d = opendir("/proc/self/fd");
    ASSERT_TRUE(d != NULL);
    int found = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[300], target[256];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            if (strstr(target, "postbox-private"))
                found = atoi(e->d_name);
        }
    }
    closedir(d);
    ASSERT_GE(found, 0);
    ASSERT_EQ(ftruncate(found, 4096), -1);
    ASSERT_EQ(errno, EPERM);
    ASSERT_OK(pbx_send(q, 1, "still", 5, 0));
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 1, buf, sizeof(buf), 0, NULL), 5);
    pbx_close(q);
}
