/*
 * test_spool_procs.c — many producer and consumer processes on one spool: every message is
 * claimed by exactly one consumer, also when consumers are killed in the middle of receiving
 * (their claims are put back and taken by the others), and a message sent by one producer
 * arrives after that producer's earlier messages.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "spool_util.h"

#define N_MSGS      100000
#define N_CONSUMERS 4
#define T_DATA      1
#define T_STOP      2

struct msg {
    uint32_t id;
    uint32_t check;
    char pad[24];
};

static char name[4096];
static uint8_t *seen; /* shared with the helpers: how often each id was received */
/* Without kills, a consumer sees each producer's messages in order. With kills it need not:
 * a message put back after its receiver died may come after later ones. */
static int check_order;

static int producer(void *arg)
{
    uintptr_t part = (uintptr_t) arg, parts = 2;
    pbx_t *q;
    if (pbx_open(name, 0, NULL, &q))
        return 2;
    for (uint32_t id = (uint32_t) part; id < N_MSGS; id += (uint32_t) parts) {
        struct msg m = {id, id * 2654435761u, {0}};
        int r = pbx_send(q, T_DATA, &m, sizeof(m), 0);
        if (r != 0)
            return 3;
    }
    pbx_close(q);
    return 0;
}

static int consumer(void *arg)
{
    const char *crash_at = arg;
    if (crash_at)
        setenv("PBX_CRASH_AT", crash_at, 1);
    pbx_t *q;
    if (pbx_open(name, 0, NULL, &q))
        return 2;
    uint32_t last[2] = {0, 0};
    int have[2] = {0, 0};
    for (;;) {
        struct msg m;
        long type = 0;
        ssize_t r = pbx_recv(q, 0, &m, sizeof(m), 0, &type);
        if (r != (ssize_t) sizeof(m))
            return 4;
        if (type == T_STOP)
            break;
        if (m.check != m.id * 2654435761u || m.id >= N_MSGS)
            return 5;
        /* Per producer, this consumer sees ids in increasing order. */
        int p = (int) (m.id & 1);
        if (check_order && have[p] && m.id <= last[p])
            return 6;
        have[p] = 1;
        last[p] = m.id;
        __atomic_fetch_add(&seen[m.id], 1, __ATOMIC_RELAXED);
    }
    pbx_close(q);
    return 0;
}

static void run(int kill_consumers)
{
    check_order = !kill_consumers;
    seen = mmap(NULL, N_MSGS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(seen != MAP_FAILED);
    struct pbx_options o = pbx_test_options(2000, 1 << 20, 64, PBX_BLOCK);
    o.durability = PBX_DURABLE_NONE;
    pbx_t *q;
    ASSERT_OK(pbx_open(spool_name(name, sizeof(name), "procs"), PBX_CREATE | PBX_EXCL, &o, &q));

    static char points[64][32];
    int npoints = 0;
    for (int i = 0; i < N_CONSUMERS; i++) {
        const char *pt = NULL;
        if (kill_consumers) {
            snprintf(points[npoints], sizeof(points[0]), "spool.recv.%s:%d",
                     i % 2 ? "read" : "claimed", 500 + 700 * i);
            pt = points[npoints++];
        }
        pbx_test_fork(consumer, (void *) pt);
    }
    pid_t prod[2] = {pbx_test_fork(producer, (void *) 0), pbx_test_fork(producer, (void *) 1)};
    /* Wait for everyone; replace each consumer that was killed by one without a crash point;
     * once both producers are done, tell every consumer to stop. */
    int producing = 2, running = N_CONSUMERS, killed = 0;
    while (running > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        ASSERT_TRUE(pid > 0);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && pid != prod[0] &&
            pid != prod[1]) {
            killed++;
            pbx_test_fork(consumer, NULL);
            continue;
        }
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
        if (pid == prod[0] || pid == prod[1]) {
            if (--producing == 0) {
                for (int i = 0; i < N_CONSUMERS; i++) {
                    struct msg stop = {0, 0, {0}};
                    ASSERT_OK(pbx_send(q, T_STOP, &stop, sizeof(stop), 0));
                }
            }
            continue;
        }
        running--;
    }
    if (kill_consumers)
        ASSERT_EQ(killed, N_CONSUMERS);
    for (uint32_t id = 0; id < N_MSGS; id++)
        if (seen[id] != 1)
            pbx_test_fail(__FILE__, __LINE__, "message %u received %u times", id, seen[id]);
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.received, N_MSGS + N_CONSUMERS);
    pbx_close(q);
    munmap(seen, N_MSGS);
}

TEST(four_consumers_claim_each_of_100000_messages_exactly_once)
{
    run(0);
}

TEST(consumers_killed_mid_receive_lose_and_duplicate_nothing)
{
    run(1);
}
