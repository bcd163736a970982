/*
 * test_module_lock.c — the robust lock and its bias (src/shm/lock.h) below the public API.
 *
 * The API tests reach the lock only through sends and receives, where repairs and wake-ups
 * run around it. Here the lock word and its bias sit in a shared file mapped by every process
 * of the test (a waiter judges a long-lived holder by whether it maps the file, so all of them
 * map it), and the test takes the lock itself:
 *   - mutual exclusion: processes add to a counter with a read, a pause and a write, which
 *     loses updates as soon as two are inside together;
 *   - take-over: a holder killed inside is taken over by the next taker, who is told so (1),
 *     exactly once; a word naming the caller's own thread is -EDEADLK, never a wait;
 *   - the bias: granted to a thread that takes the lock alone BIAS_STREAK times, taken through
 *     the bias with no locked instruction, revoked by a taker from another process, and
 *     exclusion kept while processes that are each alone in turn are granted and revoked.
 * Every loop is bounded by its work.
 */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/lock.h"
#include "testmsg.h"

struct lock_page {
    uint64_t word;
    struct pbx_bias bias __attribute__((aligned(64)));
    uint64_t counter __attribute__((aligned(64)));
    uint32_t ready;
    uint32_t woken;      /* the streak's sleeper sequence: never moves here */
    uint32_t revoker_in; /* the revoker's take returned */
    uint64_t owner_ident;
};

static struct lock_page *lp;
static struct pbx_lock_ctx ctx;

/* The page in a file of the test's own POSTBOX_DIR, so that every process maps the file the
 * lock context names. */
static void map_page(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/module-lock", getenv("POSTBOX_DIR"));
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 4096), 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    ctx.dev = st.st_dev;
    ctx.ino = st.st_ino;
    lp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_TRUE(lp != MAP_FAILED);
    close(fd);
}

/* A read, a pause, a write: two takers inside together lose an update. */
static void add_one_inside(void)
{
    uint64_t v = __atomic_load_n(&lp->counter, __ATOMIC_RELAXED);
    for (int i = 0; i < 20; i++)
        pbx__os_cpu_relax();
    __atomic_store_n(&lp->counter, v + 1, __ATOMIC_RELAXED);
}

#define ROUNDS 20000

static int plain_taker(void *arg)
{
    (void) arg;
    for (int i = 0; i < ROUNDS; i++) {
        if (pbx__lock_acquire(&lp->word, &ctx) != 0)
            return 1;
        add_one_inside();
        pbx__lock_release(&lp->word);
    }
    return 0;
}

static int die_holding(void *arg)
{
    (void) arg;
    if (pbx__lock_acquire(&lp->word, &ctx) != 0)
        return 1;
    __atomic_store_n(&lp->ready, 1, __ATOMIC_SEQ_CST);
    for (;;)
        pause();
}

TEST(lock_excludes_processes_and_a_holder_killed_inside_is_taken_over_once)
{
    map_page();
    pid_t p[3];
    for (int i = 0; i < 3; i++)
        p[i] = pbx_test_fork(plain_taker, NULL);
    for (int i = 0; i < 3; i++)
        pbx_test_wait_ok(p[i]);
    ASSERT_EQ(lp->counter, 3 * ROUNDS);
    ASSERT_EQ(lp->word, 0);

    pid_t holder = pbx_test_fork(die_holding, NULL);
    while (!__atomic_load_n(&lp->ready, __ATOMIC_SEQ_CST)) {
        int st;
        if (waitpid(holder, &st, WNOHANG) == holder)
            pbx_test_fail(__FILE__, __LINE__, "the holder left before taking the lock (%d)", st);
        pbx_test_sleep_ms(1);
    }
    ASSERT_NE(lp->word, 0);
    ASSERT_EQ(kill(holder, SIGKILL), 0);
    ASSERT_EQ(pbx_test_wait(holder), 128 + SIGKILL);
    ASSERT_EQ(pbx__lock_acquire(&lp->word, &ctx), 1); /* taken over: repair first */
    pbx__lock_release(&lp->word);
    ASSERT_EQ(pbx__lock_acquire(&lp->word, &ctx), 0); /* and only once */
    pbx__lock_release(&lp->word);

    /* A word naming our own thread: a handler inside our own critical section. */
    lp->word = pbx__os_self()->ident;
    ASSERT_ERR(pbx__lock_acquire(&lp->word, &ctx), -EDEADLK);
    lp->word = 0;
    munmap(lp, 4096);
}

static int always_alone(void *arg)
{
    (void) arg;
    return 1;
}

static void streak_init(struct pbx_streak *st)
{
    memset(st, 0, sizeof(*st));
    st->alone = always_alone;
    st->woken = &lp->woken;
}

static int block_take(struct pbx_streak *st)
{
    return pbx__block_acquire(&lp->word, &lp->bias, &ctx, st, PBX_LOCK_FOREVER);
}

/* Takes the lock once from another process: the bias of the parent must be revoked first. */
static int revoker(void *arg)
{
    (void) arg;
    struct pbx_streak st;
    streak_init(&st);
    if (block_take(&st) != 0)
        return 1;
    __atomic_store_n(&lp->revoker_in, 1, __ATOMIC_SEQ_CST);
    int ok = __atomic_load_n(&lp->bias.owner, __ATOMIC_SEQ_CST) == 0 &&
             __atomic_load_n(&lp->word, __ATOMIC_SEQ_CST) != 0 &&
             __atomic_load_n(&lp->bias.busy, __ATOMIC_SEQ_CST) == 0;
    pbx__block_release(&lp->word, &lp->bias);
    return ok ? 0 : 2;
}

static int biased_taker(void *arg)
{
    (void) arg;
    struct pbx_streak st;
    streak_init(&st);
    for (int i = 0; i < ROUNDS; i++) {
        if (block_take(&st) < 0)
            return 1;
        add_one_inside();
        pbx__block_release(&lp->word, &lp->bias);
    }
    return 0;
}

TEST(bias_is_granted_to_a_lone_taker_revoked_by_another_process_and_never_breaks_exclusion)
{
    if (!pbx__os_asym_setup())
        SKIP("membarrier(2) global expedited is unavailable here: no bias is ever granted");
    map_page();
    const uint64_t me = pbx__os_self()->ident;
    struct pbx_streak st;
    streak_init(&st);
    for (int i = 0; i < 3 * BIAS_STREAK && lp->bias.owner != me; i++) {
        ASSERT_EQ(block_take(&st), 0);
        pbx__block_release(&lp->word, &lp->bias);
    }
    ASSERT_EQ(lp->bias.owner, me);
    /* Through the bias: the word stays free, busy names us while we are inside. */
    ASSERT_EQ(block_take(&st), 0);
    ASSERT_EQ(lp->bias.busy, me);
    ASSERT_EQ(lp->word, 0);
    /* A revoker from another process comes while we are inside: it takes the word, but must
     * not enter until we leave. Its staying out is what is checked (a slow machine can only
     * make it stay out longer). */
    pid_t r = pbx_test_fork(revoker, NULL);
    pbx_test_sleep_ms(100);
    ASSERT_EQ(__atomic_load_n(&lp->revoker_in, __ATOMIC_SEQ_CST), 0);
    pbx__block_release(&lp->word, &lp->bias);
    ASSERT_EQ(lp->bias.busy, 0);
    pbx_test_wait_ok(r);
    ASSERT_NE(lp->bias.owner, me);
    ASSERT_NE(lp->bias.revoked_ns, 0);
    /* Revoked: our next take goes through the word. */
    ASSERT_EQ(block_take(&st), 0);
    ASSERT_NE(lp->bias.busy, me);
    ASSERT_EQ(lp->word & ~(uint64_t) PBX_LOCK_WAITERS, me);
    pbx__block_release(&lp->word, &lp->bias);

    /* Three processes, each told it is alone: grants and revocations in turn. */
    lp->counter = 0;
    pid_t p[3];
    for (int i = 0; i < 3; i++)
        p[i] = pbx_test_fork(biased_taker, NULL);
    for (int i = 0; i < 3; i++)
        pbx_test_wait_ok(p[i]);
    ASSERT_EQ(lp->counter, 3 * ROUNDS);
    munmap(lp, 4096);
}
