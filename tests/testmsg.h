/*
 * testmsg.h — the test messages that the concurrency and crash tests send (test_procs.c,
 * test_threads.c, test_crash.c), and the small helpers those tests share.
 *
 * A test message carries its producer, its type, a per-producer sequence number and a checksum
 * of its payload; the rest of the payload is a slice of one fixed pseudo-random pattern. Its
 * length follows from (producer, seq) and a size profile, from tiny (inline in a slot) to
 * several KB (many chunks), so a receiver can check every byte of a message without being told
 * what was sent. The profile is an argument, not a constant, because the crash tests want
 * longer copies to cut short than the storms do. Keeping all this in one place means that the
 * tests agree on what a message looks like and a fix to a check reaches all of them.
 *
 * A function that "fails" fails the test through the harness's asserts (see harness.h), which
 * report the line in testmsg.c; none of them returns an error. Every function here is
 * thread-safe: the pattern is written once, by a constructor that runs before main().
 */
#ifndef PBX_TEST_TESTMSG_H
#define PBX_TEST_TESTMSG_H

#include <time.h>

#include "harness.h"

/* The head of every test message; the rest of the payload is a pattern, covered by sum. */
struct msg_head {
    uint16_t producer;
    uint16_t type;
    uint32_t seq;
    uint32_t sum;
};
_Static_assert(sizeof(struct msg_head) == 12, "the head must stay small: tiny messages exist");

/* Producers are numbered from 0 to MAX_PRODS - 1; msg_verify() fails on any other. */
#define MAX_PRODS 8

/* The longest message of each size profile, for buffers and the mailboxes' max_msg_size. */
#define MSG_MAX_4K 4096
#define MSG_MAX_8K 8192

/* How long message seq of a producer is. */
enum msg_sizes {
    /* Half tiny (12..24 bytes), three eighths 25..624 bytes, one eighth 1000..4096 bytes. */
    MSG_SIZES_4K,
    /* Half tiny (12..23 bytes), a quarter 24..623 bytes, a quarter 2000..7000 bytes. */
    MSG_SIZES_8K,
};

/* Mixes the bits of x (a bijection): a fast, deterministic pseudo-random number. */
uint32_t mix32(uint32_t x);

/* The payload length of message seq of producer: 12 bytes up to the max of the profile sizes. */
uint32_t msg_size(enum msg_sizes sizes, unsigned producer, uint32_t seq);

/* A checksum over the head's producer, type and seq and over the n bytes of body. */
uint32_t msg_sum(const struct msg_head *h, const uint8_t *body, size_t n);

/* Writes message seq of producer, of type, into buf (room for the max); returns its length. */
size_t msg_build(enum msg_sizes sizes, uint8_t *buf, unsigned producer, unsigned type,
                 uint32_t seq);

/* Returns the head of a received message of n bytes; fails if n is too short for one. */
struct msg_head msg_head_of(const uint8_t *buf, ssize_t n);

/* Checks a message received as type (length, checksum, every byte): returns its head or fails. */
struct msg_head msg_verify(enum msg_sizes sizes, const uint8_t *buf, ssize_t n, long type);

/* Returns n zeroed bytes of MAP_SHARED memory, shared with forked helpers; the caller unmaps. */
void *shared_alloc(size_t n);

/* Fail unless every message of producers x per_producer was received exactly once — seen holds
 * the count of (producer, seq) at seen[producer * (per_producer + 1) + seq], seq from 1 — and
 * the receivers' own counts (received[0..receivers-1]) add up to that total. */
void expect_each_once(const uint8_t *seen, unsigned producers, uint32_t per_producer,
                      const uint64_t *received, unsigned receivers);

/* Returns ms milliseconds as a relative timeout for pbx_timedsend() and pbx_timedrecv(). */
struct timespec ms_timeout(long ms);

/* Waits until n receivers (recv != 0) or senders are asleep in q; fails after limit_secs. */
void wait_for_sleepers(pbx_t *q, int recv, unsigned n, int limit_secs);

#endif
