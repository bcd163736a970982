/*
 * tr_ring.c — a bare single-producer single-consumer ring in shared memory: the floor.
 *
 * No locks, no types, no system calls, no sleeping: the practical lower bound for moving a
 * message between two processes, against which postbox's own cost is read. The ring is an
 * array of 64-byte cells in MAP_SHARED memory; a message is an 8-byte header (length, type)
 * followed by its payload, in as many consecutive cells as it needs (wrapping at the end).
 * Two monotonic cell counters, each on its own cache line, are the only shared state: tail,
 * written by the producer, and head, written by the consumer. Each side keeps a private copy
 * of the other's counter and reads the shared one only when its copy says "full" or "empty",
 * so a cache line crosses between the CPUs only when it must. Waiting is a busy poll with a
 * pause instruction; on one CPU that only measures the time slice, so cases skip it there.
 *
 * ORDERING: the producer writes the cells, then stores tail with release; the consumer loads
 * tail with acquire before reading cells. The consumer finishes reading cells before it
 * stores head with release; the producer loads head with acquire before reusing them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "transport.h"

#define CELL 64

struct ring_shared {
    _Alignas(64) uint64_t tail; /* cells ever written (producer) */
    char pad0[56];
    _Alignas(64) uint64_t head; /* cells ever consumed (consumer) */
    char pad1[56];
    _Alignas(64) unsigned char cells[];
};

struct ring_hdr {
    uint32_t len;
    uint32_t type;
};

struct tr_chan {
    struct ring_shared *r;
    size_t map_size;
    uint64_t ncells;
    /* the producer's private view */
    uint64_t p_tail, p_head_seen, p_pos;
    /* the consumer's private view */
    uint64_t c_head, c_tail_seen, c_pos;
    char how[64];
};

static int ring_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    if (p->producers != 1 || p->consumers != 1) {
        *why = "single producer, single consumer only";
        return -ENOTSUP;
    }
    uint64_t per = (sizeof(struct ring_hdr) + p->msg_size + CELL - 1) / CELL;
    struct tr_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->ncells = per * p->depth;
    c->map_size = sizeof(struct ring_shared) + c->ncells * CELL;
    c->r = mmap(NULL, c->map_size, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (c->r == MAP_FAILED) {
        int e = errno;
        free(c);
        return -e;
    }
    snprintf(c->how, sizeof(c->how), "%llu cells of 64 B", (unsigned long long) c->ncells);
    *why = c->how;
    *out = c;
    return 0;
}

static int ring_attach(struct tr_chan *c)
{
    (void) c;
    return 0;
}

static void ring_detach(struct tr_chan *c)
{
    (void) c;
}

static void copy_in(struct tr_chan *c, uint64_t byte, const void *src, size_t n)
{
    size_t cap = c->ncells * CELL;
    size_t first = cap - byte < n ? cap - byte : n;
    memcpy(c->r->cells + byte, src, first);
    if (n > first)
        memcpy(c->r->cells, (const unsigned char *) src + first, n - first);
}

static void copy_out(struct tr_chan *c, uint64_t byte, void *dst, size_t n)
{
    size_t cap = c->ncells * CELL;
    size_t first = cap - byte < n ? cap - byte : n;
    memcpy(dst, c->r->cells + byte, first);
    if (n > first)
        memcpy((unsigned char *) dst + first, c->r->cells, n - first);
}

static int ring_send(struct tr_chan *c, long type, void *buf, size_t len, int flags)
{
    uint64_t need = (sizeof(struct ring_hdr) + len + CELL - 1) / CELL;
    if (need > c->ncells)
        return -EMSGSIZE;
    while (c->p_tail + need - c->p_head_seen > c->ncells) {
        c->p_head_seen = __atomic_load_n(&c->r->head, __ATOMIC_ACQUIRE);
        if (c->p_tail + need - c->p_head_seen <= c->ncells)
            break;
        if (flags & TR_NOWAIT)
            return -EAGAIN;
        bench_pause();
    }
    struct ring_hdr h = {(uint32_t) len, (uint32_t) type};
    uint64_t byte = c->p_pos * CELL;
    memcpy(c->r->cells + byte, &h, sizeof(h)); /* a cell never straddles the end */
    copy_in(c, byte + sizeof(h), buf, len);
    c->p_tail += need;
    c->p_pos += need;
    if (c->p_pos >= c->ncells)
        c->p_pos -= c->ncells;
    __atomic_store_n(&c->r->tail, c->p_tail, __ATOMIC_RELEASE);
    return 0;
}

static ssize_t ring_recv(struct tr_chan *c, long type, void *buf, size_t cap, int flags,
                         long *type_out)
{
    if (type != 0)
        return -EINVAL;
    while (c->c_head == c->c_tail_seen) {
        c->c_tail_seen = __atomic_load_n(&c->r->tail, __ATOMIC_ACQUIRE);
        if (c->c_head != c->c_tail_seen)
            break;
        if (flags & TR_NOWAIT)
            return -EAGAIN;
        bench_pause();
    }
    struct ring_hdr h;
    uint64_t byte = c->c_pos * CELL;
    memcpy(&h, c->r->cells + byte, sizeof(h));
    if (h.len > cap)
        return -E2BIG;
    copy_out(c, byte + sizeof(h), buf, h.len);
    uint64_t need = (sizeof(struct ring_hdr) + h.len + CELL - 1) / CELL;
    c->c_head += need;
    c->c_pos += need;
    if (c->c_pos >= c->ncells)
        c->c_pos -= c->ncells;
    __atomic_store_n(&c->r->head, c->c_head, __ATOMIC_RELEASE);
    if (type_out)
        *type_out = h.type;
    return h.len;
}

static void ring_close(struct tr_chan *c)
{
    if (!c)
        return;
    munmap(c->r, c->map_size);
    free(c);
}

const struct tr_ops tr_ring_ops = {
    .name = "ring",
    .title = "SPSC ring (floor)",
    .flags = TR_SPINS,
    .open = ring_open,
    .attach = ring_attach,
    .detach = ring_detach,
    .send = ring_send,
    .recv = ring_recv,
    .close = ring_close,
};
