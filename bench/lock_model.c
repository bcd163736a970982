/*
 * lock_model.c — what each structural piece of postbox costs a 16-byte stream between two CPUs,
 * measured on a model, not on postbox itself (docs/performance.md, "Targets").
 *
 * One producer process and one consumer process, pinned to CPUs 0 and 1, pass messages through
 * shared memory with the shapes postbox uses: 64-byte slots, optionally an arrival ring of
 * 8-byte entries and a ring of free slot numbers (as postbox's inbox and free-slot ring), the
 * consumer optionally writing the slot's state back, and each side optionally taking a lock of
 * its own around every message. Nothing else: no type selection, no undo log, no statistics.
 * The locks are never contended (each side has its own), so what they cost is what a locked
 * instruction costs there: it waits until the side's earlier stores have reached lines that
 * the other CPU holds.
 *
 *   pbx_lock_model [MESSAGES]     runs every variant, three times each, and prints msg/s.
 *
 * Lock kinds: none; "cas+xchg" (postbox's lock: compare-and-swap to take, exchange to give
 * back); "cas+store" (a plain store to give back); "biased" (the owner marks itself busy with a
 * plain store and checks a bias word: no locked instruction at all, as a lock biased to its one
 * user would be on its fast path; the revocation that would make it safe is not modelled).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEPTH 1024
#define RING  2048 /* a power of two with a margin, as postbox's rings */

enum lock_kind { LOCK_NONE, LOCK_CAS_XCHG, LOCK_CAS_STORE, LOCK_BIASED };
static const char *const lock_names[] = {"none", "cas+xchg", "cas+store", "biased"};

struct model {
    enum lock_kind lock;
    int rings;      /* arrival ring + free ring, as postbox; else slot = position % DEPTH */
    int free_write; /* the consumer writes the slot's state back */
};

struct slot {
    uint32_t state, len;
    int64_t type;
    uint64_t seq, owner;
    uint32_t next, chunk;
    uint8_t data[24];
};

struct shared {
    uint64_t send_lock __attribute__((aligned(64)));
    uint64_t send_bias __attribute__((aligned(64)));
    uint64_t tail __attribute__((aligned(64)));
    uint64_t head __attribute__((aligned(64)));
    uint64_t recv_lock __attribute__((aligned(64)));
    uint64_t recv_bias __attribute__((aligned(64)));
    uint64_t inbox[RING] __attribute__((aligned(64)));
    uint32_t free_ring[RING] __attribute__((aligned(64)));
    struct slot slots[DEPTH] __attribute__((aligned(64)));
};

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    (void) sched_setaffinity(0, sizeof(s), &s);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

static inline void take(const struct model *md, uint64_t *word, const uint64_t *bias)
{
    if (md->lock == LOCK_NONE)
        return;
    if (md->lock == LOCK_BIASED) {
        __atomic_store_n(word, 1, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(bias, __ATOMIC_RELAXED))
            abort(); /* never revoked here */
        return;
    }
    uint64_t free_word = 0;
    while (
        !__atomic_compare_exchange_n(word, &free_word, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        free_word = 0;
        relax();
    }
}

static inline void give(const struct model *md, uint64_t *word)
{
    if (md->lock == LOCK_CAS_XCHG)
        (void) __atomic_exchange_n(word, 0, __ATOMIC_RELEASE);
    else if (md->lock != LOCK_NONE)
        __atomic_store_n(word, 0, __ATOMIC_RELEASE);
}

static int consume(const struct model *md, struct shared *sh, long n)
{
    pin(1);
    uint64_t head = 0, tail_seen = 0, free_tail = DEPTH, sum = 0;
    for (long i = 0; i < n; i++) {
        take(md, &sh->recv_lock, &sh->recv_bias);
        uint32_t s;
        if (md->rings) {
            uint64_t e, lap = head / RING + 1;
            while ((e = __atomic_load_n(&sh->inbox[head & (RING - 1)], __ATOMIC_ACQUIRE)) >> 32 !=
                   lap)
                relax();
            s = (uint32_t) e;
        } else {
            while (tail_seen == head &&
                   (tail_seen = __atomic_load_n(&sh->tail, __ATOMIC_ACQUIRE)) == head)
                relax();
            s = (uint32_t) (head % DEPTH);
        }
        struct slot *sl = &sh->slots[s];
        uint8_t buf[16];
        memcpy(buf, sl->data, sizeof(buf));
        sum += buf[0] + sl->len;
        if (md->free_write)
            __atomic_store_n(&sl->state, 0, __ATOMIC_RELAXED);
        if (md->rings)
            __atomic_store_n(&sh->free_ring[free_tail++ & (RING - 1)], s, __ATOMIC_RELAXED);
        __atomic_store_n(&sh->head, ++head, __ATOMIC_RELEASE);
        give(md, &sh->recv_lock);
    }
    return sum == (uint64_t) n * 17 ? 0 : 1; /* every message seen, with its bytes */
}

static double run(const struct model *md, long n)
{
    struct shared *sh =
        mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    memset(sh, 0, sizeof(*sh));
    for (uint32_t i = 0; i < DEPTH; i++)
        sh->free_ring[i] = i;
    pid_t c = fork();
    if (c == 0)
        _exit(consume(md, sh, n));
    if (c < 0)
        return -1;
    pin(0);
    uint64_t tail = 0, head_seen = 0, free_head = 0;
    const uint8_t msg[16] = {1};
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        take(md, &sh->send_lock, &sh->send_bias);
        while (tail - head_seen >= DEPTH &&
               tail - (head_seen = __atomic_load_n(&sh->head, __ATOMIC_ACQUIRE)) >= DEPTH)
            relax();
        uint32_t s =
            md->rings ? __atomic_load_n(&sh->free_ring[free_head++ & (RING - 1)], __ATOMIC_RELAXED)
                      : (uint32_t) (tail % DEPTH);
        struct slot *sl = &sh->slots[s];
        sl->type = 1;
        sl->len = 16;
        sl->seq = tail;
        memcpy(sl->data, msg, sizeof(msg));
        __atomic_store_n(&sl->state, 2, __ATOMIC_RELAXED);
        if (md->rings)
            __atomic_store_n(&sh->inbox[tail & (RING - 1)], ((tail / RING + 1) << 32) | s,
                             __ATOMIC_RELEASE);
        __atomic_store_n(&sh->tail, ++tail, __ATOMIC_RELEASE);
        give(md, &sh->send_lock);
    }
    int status = 0;
    waitpid(c, &status, 0);
    double rate = (double) n / (now_s() - t0);
    munmap(sh, sizeof(*sh));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? rate : -1;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    if (n <= 0) {
        fprintf(stderr, "usage: %s [MESSAGES]  (a positive count; default 20000000)\n", argv[0]);
        return 2;
    }
    const struct model models[] = {
        {LOCK_NONE, 0, 0},      {LOCK_NONE, 1, 1},   {LOCK_CAS_XCHG, 1, 1},
        {LOCK_CAS_STORE, 1, 1}, {LOCK_BIASED, 1, 1},
    };
    printf("%-10s %-6s %-11s  M msg/s (three runs)\n", "lock", "rings", "free write");
    for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
        const struct model *md = &models[i];
        printf("%-10s %-6s %-11s ", lock_names[md->lock], md->rings ? "yes" : "no",
               md->free_write ? "yes" : "no");
        for (int r = 0; r < 3; r++) {
            double rate = run(md, n);
            if (rate < 0) {
                printf(" failed\n");
                return 1;
            }
            printf(" %6.1f", rate / 1e6);
            fflush(stdout);
        }
        printf("\n");
    }
    return 0;
}
