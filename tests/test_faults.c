/*
 * test_faults.c — system calls made to fail through the replaceable table of src/os/os.h, to
 * check that every failure path of creating a mailbox reports the OS's error and leaves
 * nothing behind: no file under the name, no temporary file, no descriptor.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"
#include "os/os.h"

static int fail_enospc(int fd, off_t len)
{
    (void) fd;
    (void) len;
    return -ENOSPC;
}

static int fail_enomem_mmap(int fd, size_t len, int populate, void **out)
{
    (void) fd;
    (void) len;
    (void) populate;
    (void) out;
    return -ENOMEM;
}

/* Files in $POSTBOX_DIR, and descriptors this process holds. */
static int count_files(void)
{
    DIR *d = opendir(getenv("POSTBOX_DIR"));
    ASSERT_TRUE(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void expect_create_fails_cleanly(int expected)
{
    int fds = count_fds();
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open("faulty", PBX_CREATE | PBX_EXCL, NULL, &q), expected);
    ASSERT_TRUE(q == NULL);
    ASSERT_EQ(count_files(), 0);
    ASSERT_EQ(count_fds(), fds);
    pbx__os_table_reset();
    /* With the calls back to normal, the same name can be created. */
    ASSERT_OK(pbx_open("faulty", PBX_CREATE | PBX_EXCL, NULL, &q));
    ASSERT_EQ(count_files(), 1);
    pbx_close(q);
}

TEST(create_on_a_full_file_system_is_enospc_and_leaves_nothing)
{
    pbx__os_table()->fallocate = fail_enospc;
    expect_create_fails_cleanly(-ENOSPC);
}

TEST(create_whose_mapping_fails_is_enomem_and_leaves_nothing)
{
    pbx__os_table()->mmap = fail_enomem_mmap;
    expect_create_fails_cleanly(-ENOMEM);
}

TEST(private_mailbox_whose_mapping_fails_is_enomem_and_leaks_no_descriptor)
{
    int fds = count_fds();
    pbx__os_table()->mmap = fail_enomem_mmap;
    pbx_t *q = NULL;
    ASSERT_ERR(pbx_open_private(NULL, &q), -ENOMEM);
    ASSERT_TRUE(q == NULL);
    ASSERT_EQ(count_fds(), fds);
}
