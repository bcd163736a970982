/*
 * fuzz_region.c — a libFuzzer target over what a process reads from a mailbox's shared region.
 *
 * Two kinds of input, told apart by the first byte:
 *   'F' + bytes   the rest is written as the whole mailbox file, which is then opened: the
 *                 header checks of pbx__region_check() against arbitrary files;
 *   anything else a list of 12-byte edits (offset, width, value) applied to a live region in a
 *                 realistic state (rings wrapped, several types queued, small and large
 *                 messages), with the handle opened before and a handle opened after the edit
 *                 both exercised: send, receive in every selection mode, peek, stat.
 * The surface is the one tests/test_mutate.c walks at random; here coverage guides the edits.
 * Built by `make fuzz` (clang with -fsanitize=fuzzer,address,undefined); see docs/reliability.md.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "postbox.h"

#define NAME "fuzz"
#define BIG  700

static char dir[] = "/dev/shm/pbx-fuzz-XXXXXX";
static char path[256];
static unsigned char *pristine, *live;
static size_t size;
static pbx_t *before; /* opened on the pristine region, before any edit */

static void cleanup(void)
{
    if (before)
        pbx_close(before);
    unlink(path);
    rmdir(dir);
}

static void fail(const char *what)
{
    perror(what);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    if (!mkdtemp(dir))
        fail("mkdtemp");
    setenv("POSTBOX_DIR", dir, 1);
    snprintf(path, sizeof(path), "%s/pbx.%s", dir, NAME);
    atexit(cleanup);

    struct pbx_options o;
    pbx_options_init(&o);
    o.max_msgs = 8;
    o.max_bytes = 4096;
    o.max_msg_size = 1000;
    if (pbx_open(NAME, PBX_CREATE | PBX_EXCL, &o, &before))
        fail("pbx_open");
    static unsigned char buf[BIG];
    /* Wrap every ring at least twice (64 entries for 8 messages; see tests/test_mutate.c). */
    for (int i = 0; i < 150; i++) {
        size_t n = (size_t) (i * 53) % BIG + 1;
        memset(buf, i, n);
        pbx_send(before, 1 + i % 3, buf, n, 0);
        pbx_recv(before, 0, buf, sizeof(buf), 0, NULL);
    }
    const size_t lens[] = {5, 300, 1, BIG, 24, 25};
    for (int i = 0; i < 6; i++) {
        memset(buf, i, lens[i]);
        pbx_send(before, 1 + i % 4, buf, lens[i], 0);
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st))
        fail(path);
    size = (size_t) st.st_size;
    live = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (live == MAP_FAILED)
        fail("mmap");
    close(fd);
    pristine = malloc(size);
    if (!pristine)
        fail("malloc");
    memcpy(pristine, live, size);
    return 0;
}

static void exercise(pbx_t *q, uint8_t pick)
{
    static unsigned char buf[BIG + 64], small[8];
    struct pbx_stat st;
    long type;
    pbx_stat(q, &st);
    if (pick & 1)
        pbx_send(q, 4, buf, 10, PBX_NOWAIT);
    if (pick & 2)
        pbx_send(q, 6, buf, BIG, PBX_NOWAIT);
    pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, &type);
    if (pick & 4)
        pbx_recv(q, 2, buf, sizeof(buf), PBX_NOWAIT, &type);
    if (pick & 8)
        pbx_recv(q, -3, buf, sizeof(buf), PBX_NOWAIT, &type);
    if (pick & 16)
        pbx_recv(q, 1, buf, sizeof(buf), PBX_NOWAIT | PBX_EXCEPT, &type);
    if (pick & 32)
        pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT | PBX_PEEK, &type);
    if (pick & 64)
        pbx_recv(q, 0, small, sizeof(small), PBX_NOWAIT | PBX_NOERROR, &type);
    pbx_stat(q, &st);
}

static void whole_file(const uint8_t *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t) n))
        fail("write");
    close(fd);
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q) == 0) {
        exercise(q, 0xff);
        pbx_close(q);
    }
    /* Back to the good region, at its size (the mapping of `before` covers it again). */
    fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0 || write(fd, pristine, size) != (ssize_t) size)
        fail("restore");
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n >= 1 && data[0] == 'F') {
        whole_file(data + 1, n - 1);
        return 0;
    }
    memcpy(live, pristine, size);
    uint8_t pick = n ? data[0] : 0;
    for (size_t i = 1; i + 12 <= n; i += 12) {
        uint32_t off;
        uint64_t v;
        memcpy(&off, data + i, 4);
        memcpy(&v, data + i + 4, 8);
        unsigned width = 1u << (off >> 30); /* 1, 2, 4 or 8 bytes */
        off = (off & 0x3fffffffu) % (uint32_t) size;
        if (off + width > size)
            off = (uint32_t) (size - width);
        memcpy(live + (off & ~(width - 1)), &v, width);
    }
    exercise(before, pick);
    pbx_t *q;
    if (pbx_open(NAME, 0, NULL, &q) == 0) {
        exercise(q, (uint8_t) ~pick);
        pbx_close(q);
    }
    return 0;
}
