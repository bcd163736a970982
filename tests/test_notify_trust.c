/*
 * test_notify_trust.c — notification against a participant that writes what it should not
 * (docs/signals.md, "Who can signal whom").
 *
 * A user with write access to a 0666 mailbox can write anything into its shared state. These
 * tests let such a user (a forked child that became an unused uid, as setpriv --reuid would
 * make it) rewrite every notify registration it finds, and forge new ones, to name victim
 * processes with SIGKILL and SIGTERM, the way a program written outside the project would:
 * with the byte offsets of the published layout. Then root sends into the empty mailbox. No
 * victim may be signalled, and the real registrant must still get exactly the signal and value
 * it chose. Also: the helper thread that raises the signal ends at pbx_close, and a fork()ed
 * child neither inherits a registration nor disturbs its parent's.
 *
 * Helpers report through a page of MAP_SHARED memory; every wait is bounded.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"
#include "os/os.h"
#include "shm/shm.h"
#include "spool/format.h"
#include "spool_util.h"

#define WAIT_MS   5000   /* anything that must happen does within this */
#define SETTLE_MS 300    /* what must not happen has not happened after this */
#define OTHER_ID  54321u /* a uid and gid no account uses */

struct board {
    int ready, go, forged;
    int signals[4]; /* per process index: signals caught */
    int signo[4];   /* the last one's number */
    int value[4];   /* its si_value.sival_int */
    int code[4];    /* its si_code */
    int pid[4];     /* its si_pid */
};

static struct board *board;
static int my_index;

static void board_init(void)
{
    board = mmap(NULL, sizeof(*board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_TRUE(board != MAP_FAILED);
    memset(board, 0, sizeof(*board));
}

static int load(int *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static int wait_for(int *p, int want)
{
    double end = pbx_test_now_ms() + WAIT_MS;
    while (load(p) < want && pbx_test_now_ms() < end)
        pbx_test_sleep_ms(1);
    return load(p);
}

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void) ctx;
    __atomic_store_n(&board->signo[my_index], sig, __ATOMIC_SEQ_CST);
    __atomic_store_n(&board->value[my_index], si->si_value.sival_int, __ATOMIC_SEQ_CST);
    __atomic_store_n(&board->code[my_index], si->si_code, __ATOMIC_SEQ_CST);
    __atomic_store_n(&board->pid[my_index], (int) si->si_pid, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&board->signals[my_index], 1, __ATOMIC_SEQ_CST);
}

static void catch_signal(int signo)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(signo, &sa, NULL), 0);
}

/* The identity postbox records for a process: its PID and the start time of its main thread
 * (field 22 of /proc/PID/stat), as an outsider can read it for any process. */
static uint64_t ident_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_TRUE(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    ASSERT_GT(n, 0);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    ASSERT_TRUE(p != NULL);
    p += 2; /* field 3 */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        ASSERT_TRUE(p != NULL);
        p++;
    }
    uint64_t start = strtoull(p, NULL, 10);
    return (uint64_t) (uint32_t) start << 32 | ((uint64_t) pid & 0x3fffffffu);
}

/* The check word that layout 4 put beside a registration: a public, unkeyed hash, so anyone
 * who can write the entry can compute it. */
static uint64_t public_check(uint64_t ident, int32_t signo, int32_t value)
{
    uint64_t x = ident ^ ((uint64_t) (uint32_t) signo << 32 | (uint32_t) value);
    x ^= 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return (x ^ (x >> 31)) | 1;
}

/* A victim: a process of root that registered nothing and takes every signal's default. */
static int victim(void *arg)
{
    (void) arg;
    for (;;)
        pause();
    return 0;
}

/* The real registrant: SIGRTMIN with value 7, counted as index 0. */
struct registrant_arg {
    const char *name;
};

static int registrant(void *arg)
{
    const struct registrant_arg *a = arg;
    my_index = 0;
    catch_signal(SIGRTMIN);
    pbx_t *q;
    if (pbx_open(a->name, 0, NULL, &q))
        return 1;
    if (pbx_notify(q, SIGRTMIN, 7))
        return 2;
    __atomic_add_fetch(&board->ready, 1, __ATOMIC_SEQ_CST);
    while (load(&board->go) < 1)
        pbx_test_sleep_ms(1);
    pbx_close(q);
    return 0;
}

static int become_other_user(void)
{
    return setgroups(0, NULL) == 0 && setresgid(OTHER_ID, OTHER_ID, OTHER_ID) == 0 &&
                   setresuid(OTHER_ID, OTHER_ID, OTHER_ID) == 0
               ? 0
               : -1;
}

struct forge_arg {
    const char *name;  /* the mailbox, as pbx_open takes it */
    const char *state; /* for a spool: its state file; NULL for shared memory */
    uint64_t victim_a; /* named in every registration found, with SIGKILL */
    uint64_t victim_b; /* named in a forged registration, with SIGTERM */
};

/* Rewrite the registrations of a shared-memory mailbox: the entry layout is ident at 0, signo
 * at 20, value at 24 and (layout 4) the check word at 32, 64 bytes an entry. */
static int forge_shm(pbx_t *q, const struct forge_arg *a)
{
    struct pbx_shm *m = pbx__handle_shm(q);
    uint8_t *peers = (uint8_t *) m->h + offsetof(struct pbx_header, peers);
    int forged = 0, spare = -1;
    for (int i = 0; i < PBX_PEERS; i++) {
        uint8_t *e = peers + 64 * i;
        uint64_t ident;
        int32_t signo;
        memcpy(&ident, e, 8);
        memcpy(&signo, e + 20, 4);
        if (!ident && spare < 0)
            spare = i;
        if (!ident || !signo)
            continue;
        int32_t s = SIGKILL, v = 0;
        uint64_t check = public_check(a->victim_a, s, v);
        memcpy(e + 20, &s, 4);
        memcpy(e + 24, &v, 4);
        memcpy(e + 32, &check, 8);
        __atomic_store_n((uint64_t *) e, a->victim_a, __ATOMIC_SEQ_CST);
        forged++;
    }
    if (spare >= 0) {
        uint8_t *e = peers + 64 * spare;
        int32_t s = SIGTERM, v = 0;
        uint32_t roles = PBX_PEER_OPENED | PBX_PEER_NOTIFY;
        uint64_t check = public_check(a->victim_b, s, v);
        memcpy(e + 16, &roles, 4);
        memcpy(e + 20, &s, 4);
        memcpy(e + 24, &v, 4);
        memcpy(e + 32, &check, 8);
        __atomic_add_fetch(&m->h->notifiers, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n((uint64_t *) e, a->victim_b, __ATOMIC_SEQ_CST);
        forged++;
    }
    return forged;
}

/* Rewrite the registrations of a spool's state page: an entry is owner (8 bytes), since (8),
 * roles (4, the signal in bits 16-23), value (4). */
static int forge_spool(const struct forge_arg *a)
{
    int fd = open(a->state, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t *st = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (st == MAP_FAILED)
        return -1;
    uint8_t *peers = st + offsetof(struct pbx_spool_state, peers);
    int forged = 0, spare = -1;
    for (int i = 0; i < PBX_SPOOL_PEERS; i++) {
        uint8_t *e = peers + 24 * i;
        uint64_t owner;
        uint32_t roles;
        memcpy(&owner, e, 8);
        memcpy(&roles, e + 16, 4);
        if (!owner && spare < 0)
            spare = i;
        if (!owner || !(roles >> 16 & 0xff))
            continue;
        roles = (roles & 0xffffu) | (uint32_t) SIGKILL << 16;
        memcpy(e + 16, &roles, 4);
        __atomic_store_n((uint64_t *) e, a->victim_a, __ATOMIC_SEQ_CST);
        forged++;
    }
    if (spare >= 0) {
        uint8_t *e = peers + 24 * spare;
        uint32_t roles = PBX_PEER_OPENED | PBX_PEER_NOTIFY | (uint32_t) SIGTERM << 16;
        __atomic_store_n((uint64_t *) e, a->victim_b, __ATOMIC_SEQ_CST);
        memcpy(e + 16, &roles, 4);
        forged++;
    }
    munmap(st, 4096);
    return forged;
}

/* The writer: another user, who may open the mailbox (mode 0666), registers itself, then
 * rewrites every registration, its own included, and forges one more. */
static int forger(void *arg)
{
    const struct forge_arg *a = arg;
    if (become_other_user())
        return 10;
    if (getuid() != OTHER_ID)
        return 11;
    pbx_t *q;
    if (pbx_open(a->name, 0, NULL, &q))
        return 12;
    signal(SIGUSR2, SIG_IGN);
    if (pbx_notify(q, SIGUSR2, 0))
        return 13;
    int n = a->state ? forge_spool(a) : forge_shm(q, a);
    __atomic_store_n(&board->forged, n, __ATOMIC_SEQ_CST);
    /* Gone without closing, as a process that forged and left would be. */
    _exit(n >= 3 ? 0 : 14);
}

static int alive(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == 0;
}

static void forged_registrations_signal_nobody(const char *name, const char *state)
{
    if (geteuid() != 0)
        SKIP("needs root to become another user (setresuid)");
    board_init();
    /* The test's directory must let the other user reach the mailbox: the mode decides. */
    ASSERT_EQ(chmod(getenv("POSTBOX_DIR"), 0755), 0);
    struct pbx_options o = pbx_test_options(16, 1 << 16, 64, PBX_BLOCK);
    o.mode = 0666;
    pbx_t *q;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));

    pid_t va = pbx_test_fork(victim, NULL), vb = pbx_test_fork(victim, NULL);
    struct registrant_arg ra = {name};
    pid_t r = pbx_test_fork(registrant, &ra);
    ASSERT_EQ(wait_for(&board->ready, 1), 1);
    struct forge_arg fa = {name, state, ident_of(va), ident_of(vb)};
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(forger, &fa)), 0);
    /* The registrant's, the forger's own, and a new one. */
    ASSERT_GE(load(&board->forged), 3);

    /* Root sends into the empty mailbox: one arrival. */
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    pbx_test_sleep_ms(SETTLE_MS);
    ASSERT_TRUE(alive(va));
    ASSERT_TRUE(alive(vb));
    ASSERT_EQ(wait_for(&board->signals[0], 1), 1);
    ASSERT_EQ(load(&board->signals[0]), 1);
    ASSERT_EQ(load(&board->signo[0]), SIGRTMIN);
    ASSERT_EQ(load(&board->value[0]), 7);
    ASSERT_EQ(load(&board->code[0]), SI_QUEUE);

    /* Another edge: the same again. */
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    ASSERT_OK(pbx_send(q, 1, "y", 1, 0));
    ASSERT_EQ(wait_for(&board->signals[0], 2), 2);
    pbx_test_sleep_ms(SETTLE_MS);
    ASSERT_TRUE(alive(va));
    ASSERT_TRUE(alive(vb));
    ASSERT_EQ(load(&board->signals[0]), 2);
    ASSERT_EQ(load(&board->signo[0]), SIGRTMIN);

    __atomic_store_n(&board->go, 1, __ATOMIC_SEQ_CST);
    pbx_test_wait_ok(r);
    kill(va, SIGKILL);
    kill(vb, SIGKILL);
    pbx_test_wait(va);
    pbx_test_wait(vb);
    pbx_close(q);
}

TEST(a_writer_of_a_shared_mailbox_cannot_direct_a_notify_signal_at_another_process)
{
    forged_registrations_signal_nobody("trust", NULL);
}

TEST(a_writer_of_a_spool_cannot_direct_a_notify_signal_at_another_process)
{
    char name[4096], dir[4096], state[4200];
    spool_name(name, sizeof(name), "trust");
    snprintf(state, sizeof(state), "%s/state", spool_dir(dir, sizeof(dir), "trust"));
    forged_registrations_signal_nobody(name, state);
}

/* Wait until *p stops changing for SETTLE_MS (at most limit_ms in all); returns its value. */
static int settled(int *p, double limit_ms)
{
    double end = pbx_test_now_ms() + limit_ms;
    int v = load(p);
    for (;;) {
        pbx_test_sleep_ms(SETTLE_MS);
        int now = load(p);
        if (now == v || pbx_test_now_ms() > end)
            return now;
        v = now;
    }
}

static int arrival_forger(void *arg)
{
    uint32_t step = (uint32_t) (uintptr_t) arg;
    if (become_other_user())
        return 10;
    pbx_t *q;
    if (pbx_open("count", 0, NULL, &q))
        return 11;
    struct pbx_shm *m = pbx__handle_shm(q);
    __atomic_add_fetch(&m->h->listen.arrivals, step, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&m->h->listen.edge_seq, 1, __ATOMIC_SEQ_CST);
    pbx__os_futex_wake(&m->h->listen.edge_seq, 1 << 30);
    _exit(0);
}

TEST(a_forged_arrival_count_makes_a_registrant_raise_only_its_own_signal_a_bounded_number_of_times)
{
    if (geteuid() != 0)
        SKIP("needs root to become another user (setresuid)");
    board_init();
    ASSERT_EQ(chmod(getenv("POSTBOX_DIR"), 0755), 0);
    struct pbx_options o = pbx_test_options(16, 1 << 16, 64, PBX_BLOCK);
    o.mode = 0666;
    pbx_t *q;
    ASSERT_OK(pbx_open("count", PBX_CREATE | PBX_EXCL, &o, &q));
    struct registrant_arg ra = {"count"};
    pid_t r = pbx_test_fork(registrant, &ra);
    ASSERT_EQ(wait_for(&board->ready, 1), 1);
    /* 1000 arrivals that never happened: 1000 of the registrant's own signal, nothing else. */
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(arrival_forger, (void *) (uintptr_t) 1000)), 0);
    ASSERT_EQ(settled(&board->signals[0], WAIT_MS), 1000);
    ASSERT_EQ(load(&board->signo[0]), SIGRTMIN);
    ASSERT_EQ(load(&board->value[0]), 7);
    ASSERT_EQ(load(&board->pid[0]), r);
    /* Two thousand million: one burst, bounded (a loaded machine takes seconds to deliver it;
     * signals queued by every process of the user share one limit, so a few may be refused). */
    ASSERT_EQ(pbx_test_wait(pbx_test_fork(arrival_forger, (void *) (uintptr_t) 2000000000u)), 0);
    int after = settled(&board->signals[0], 60000);
    printf("a forged count of 2e9 arrivals raised %d signals in the registrant\n", after - 1000);
    ASSERT_GT(after, 1000);
    ASSERT_LE(after, 1000 + (int) PBX_NOTIFY_BURST);
    ASSERT_EQ(load(&board->signo[0]), SIGRTMIN);
    /* And real arrivals are still announced, once each. */
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_EQ(wait_for(&board->signals[0], after + 1), after + 1);
    pbx_test_sleep_ms(SETTLE_MS);
    ASSERT_EQ(load(&board->signals[0]), after + 1);
    __atomic_store_n(&board->go, 1, __ATOMIC_SEQ_CST);
    pbx_test_wait_ok(r);
    pbx_close(q);
}

/* ---- the helper thread: its lifetime, and fork() ----------------------------------------- */

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    ASSERT_TRUE(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A fork()ed child on the inherited handle: index 1 registers SIGRTMIN + 1 with value 2 of its
 * own; index 2 registers nothing. Each reports ready, waits for go, checks what it got. */
static int forked_child(void *arg)
{
    pbx_t *q = arg;
    my_index = load(&board->ready) == 0 ? 1 : 2;
    if (my_index == 1 && pbx_notify(q, SIGRTMIN + 1, 2))
        return 1;
    __atomic_add_fetch(&board->ready, 1, __ATOMIC_SEQ_CST);
    while (load(&board->go) < 1)
        pbx_test_sleep_ms(1);
    pbx_close(q); /* must not wait for the parent's helper thread */
    return 0;
}

static void helper_thread_lifecycle(const char *name)
{
    board_init();
    my_index = 0;
    catch_signal(SIGRTMIN);
    catch_signal(SIGRTMIN + 1);
    struct pbx_options o = pbx_test_options(16, 1 << 16, 64, PBX_BLOCK);
    int threads = count_threads();
    pbx_t *q;
    ASSERT_OK(pbx_open(name, PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_EQ(count_threads(), threads);
    ASSERT_OK(pbx_notify(q, SIGRTMIN, 1));
    int with_helper = count_threads();
    ASSERT_GE(with_helper, threads + 1);
    ASSERT_OK(pbx_fd(q)); /* the descriptor is served by the same helper */
    ASSERT_OK(pbx_notify(q, SIGRTMIN, 1));
    ASSERT_EQ(count_threads(), with_helper);

    /* Fork while the helper sleeps: with the address sanitizer, a child forked while another
     * thread is inside libasan's allocator inherits its lock held and hangs in its first
     * allocation (seen here: the child's pthread_create). Plain glibc has no such problem. */
    pbx_test_sleep_ms(SETTLE_MS);
    pid_t c1 = pbx_test_fork(forked_child, q);
    ASSERT_EQ(wait_for(&board->ready, 1), 1);
    pbx_test_sleep_ms(SETTLE_MS);
    pid_t c2 = pbx_test_fork(forked_child, q);
    ASSERT_EQ(wait_for(&board->ready, 2), 2);

    /* One arrival: the parent gets its signal, the registered child its own, the other none. */
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    ASSERT_EQ(wait_for(&board->signals[0], 1), 1);
    ASSERT_EQ(wait_for(&board->signals[1], 1), 1);
    pbx_test_sleep_ms(SETTLE_MS);
    ASSERT_EQ(load(&board->signals[0]), 1);
    ASSERT_EQ(load(&board->signo[0]), SIGRTMIN);
    ASSERT_EQ(load(&board->value[0]), 1);
    ASSERT_EQ(load(&board->pid[0]), getpid()); /* raised by the registrant's own helper */
    ASSERT_EQ(load(&board->signals[1]), 1);
    ASSERT_EQ(load(&board->signo[1]), SIGRTMIN + 1);
    ASSERT_EQ(load(&board->value[1]), 2);
    ASSERT_EQ(load(&board->pid[1]), c1);
    ASSERT_EQ(load(&board->signals[2]), 0);

    /* The children close and exit; the parent's registration is untouched. */
    __atomic_store_n(&board->go, 1, __ATOMIC_SEQ_CST);
    pbx_test_wait_ok(c1);
    pbx_test_wait_ok(c2);
    char buf[8];
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    ASSERT_OK(pbx_send(q, 1, "y", 1, 0));
    ASSERT_EQ(wait_for(&board->signals[0], 2), 2);

    /* Unregistered: nothing more; closed: the helper is gone. */
    ASSERT_EQ(pbx_recv(q, 0, buf, sizeof(buf), PBX_NOWAIT, NULL), 1);
    ASSERT_OK(pbx_notify(q, 0, 0));
    ASSERT_OK(pbx_send(q, 1, "z", 1, 0));
    pbx_test_sleep_ms(SETTLE_MS);
    ASSERT_EQ(load(&board->signals[0]), 2);
    ASSERT_OK(pbx_close(q));
    ASSERT_EQ(count_threads(), threads);
}

TEST(the_notify_helper_ends_at_close_and_a_forked_child_registers_for_itself)
{
    helper_thread_lifecycle("life");
}

TEST(spool_the_notify_helper_ends_at_close_and_a_forked_child_registers_for_itself)
{
    char name[4096];
    helper_thread_lifecycle(spool_name(name, sizeof(name), "life"));
}
