/*
 * testmsg.c — building and checking test messages, and the helpers the concurrency and crash
 * tests share (see testmsg.h).
 *
 * A body is never stored with its message: it is a slice of one pseudo-random pattern at an
 * offset that the head determines, so a receiver recomputes what every byte must be. The
 * pattern is long enough for the largest profile, and each profile takes its offsets modulo its
 * own max, so a message is byte for byte what it was when each test had its own copy.
 */
#define _GNU_SOURCE
#include "testmsg.h"

#include <sys/mman.h>

uint32_t mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static uint32_t msg_max(enum msg_sizes sizes)
{
    return sizes == MSG_SIZES_8K ? MSG_MAX_8K : MSG_MAX_4K;
}

/* Half tiny (inline in the slot), the rest spread over one to several chunks. */
static uint32_t size_4k(unsigned producer, uint32_t seq)
{
    uint32_t h = mix32(seq * 16u + producer + 0x5bd1e995u);
    uint32_t r = h >> 8;
    switch (h & 7) {
    case 0:
    case 1:
    case 2:
    case 3:
        return (uint32_t) sizeof(struct msg_head) + r % 13;
    case 4:
    case 5:
    case 6:
        return 25 + r % 600;
    default:
        return 1000 + r % (MSG_MAX_4K - 1000 + 1);
    }
}

/* Half tiny (inline), a quarter a few chunks, a quarter 2..7 KB. */
static uint32_t size_8k(unsigned producer, uint32_t seq)
{
    uint32_t h = mix32(seq * 16u + producer + 0x2545f491u);
    uint32_t r = h >> 8;
    switch (h & 3) {
    case 0:
    case 1:
        return (uint32_t) sizeof(struct msg_head) + r % 12;
    case 2:
        return 24 + r % 600;
    default:
        return 2000 + r % 5001;
    }
}

uint32_t msg_size(enum msg_sizes sizes, unsigned producer, uint32_t seq)
{
    return sizes == MSG_SIZES_8K ? size_8k(producer, seq) : size_4k(producer, seq);
}

/* Bodies are slices of one fixed pseudo-random pattern, at an offset given by the head. */
static uint8_t pattern[2 * MSG_MAX_8K];

__attribute__((constructor)) static void pattern_init(void)
{
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(pattern); i++) {
        x = x * 1103515245u + 12345u;
        pattern[i] = (uint8_t) (x >> 16);
    }
}

static const uint8_t *msg_pattern(enum msg_sizes sizes, unsigned producer, uint32_t seq)
{
    return pattern + (seq * 131u + producer * 71u) % msg_max(sizes);
}

/* Eight bytes at a time, so that checking a message costs little next to sending it. */
uint32_t msg_sum(const struct msg_head *h, const uint8_t *body, size_t n)
{
    uint64_t s =
        0xcbf29ce484222325ull ^ ((uint64_t) h->producer << 48 | (uint64_t) h->type << 32 | h->seq);
    for (; n >= 8; body += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, body, 8);
        s = (s ^ w) * 0x100000001b3ull;
        s ^= s >> 29;
    }
    for (; n; body++, n--)
        s = (s ^ *body) * 0x100000001b3ull;
    return (uint32_t) (s ^ (s >> 32));
}

size_t msg_build(enum msg_sizes sizes, uint8_t *buf, unsigned producer, unsigned type, uint32_t seq)
{
    uint32_t len = msg_size(sizes, producer, seq);
    struct msg_head h = {(uint16_t) producer, (uint16_t) type, seq, 0};
    uint8_t *body = buf + sizeof(h);
    size_t n = len - sizeof(h);
    memcpy(body, msg_pattern(sizes, producer, seq), n);
    h.sum = msg_sum(&h, body, n);
    memcpy(buf, &h, sizeof(h));
    return len;
}

struct msg_head msg_head_of(const uint8_t *buf, ssize_t n)
{
    struct msg_head h;
    ASSERT_GE(n, (long long) sizeof(h));
    memcpy(&h, buf, sizeof(h));
    return h;
}

struct msg_head msg_verify(enum msg_sizes sizes, const uint8_t *buf, ssize_t n, long type)
{
    struct msg_head h = msg_head_of(buf, n);
    ASSERT_LT(h.producer, MAX_PRODS);
    ASSERT_EQ(n, msg_size(sizes, h.producer, h.seq));
    ASSERT_EQ(type, h.type);
    ASSERT_EQ(msg_sum(&h, buf + sizeof(h), (size_t) n - sizeof(h)), h.sum);
    ASSERT_MEM_EQ(buf + sizeof(h), msg_pattern(sizes, h.producer, h.seq), (size_t) n - sizeof(h));
    return h;
}

void *shared_alloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(p != MAP_FAILED);
    return p;
}

struct timespec ms_timeout(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    return ts;
}

/* Once pbx_stat() counts a helper as asleep it is really blocked, not about to block. Polling
 * every millisecond costs little: pbx_stat() is cheap. */
void wait_for_sleepers(pbx_t *q, int recv, unsigned n, int limit_secs)
{
    for (long i = 0; i < limit_secs * 1000L; i++) {
        struct pbx_stat st;
        ASSERT_OK(pbx_stat(q, &st));
        if ((recv ? st.recv_waiters : st.send_waiters) >= n)
            return;
        pbx_test_sleep_ms(1);
    }
    pbx_test_fail(__FILE__, __LINE__, "no %s asleep after %d s", recv ? "receiver" : "sender",
                  limit_secs);
}

void expect_each_once(const uint8_t *seen, unsigned producers, uint32_t per_producer,
                      const uint64_t *received, unsigned receivers)
{
    for (unsigned p = 0; p < producers; p++)
        for (uint32_t s = 1; s <= per_producer; s++) {
            uint8_t n =
                __atomic_load_n(&seen[(size_t) p * (per_producer + 1) + s], __ATOMIC_RELAXED);
            if (n != 1)
                pbx_test_fail(__FILE__, __LINE__, "producer %u seq %u received %u times", p, s, n);
        }
    uint64_t got = 0;
    for (unsigned r = 0; r < receivers; r++)
        got += received[r];
    ASSERT_EQ(got, (uint64_t) producers * per_producer);
}
