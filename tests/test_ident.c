/*
 * test_ident.c — who counts as alive (src/os/ident.h), on both transports.
 *
 * A process whose main() called pthread_exit() while another thread runs has a zombie
 * thread-group leader, and is alive: it keeps its claims, can acknowledge them, and keeps its
 * notify registration. A process whose threads have all exited is dead even while it is not
 * reaped yet: its claim is returned. (Issue 13, item 2.)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "spool_util.h"

static char box[4096];
static int go_pipe[2]; /* the test tells the helper's surviving thread to go on */

static const char *box_name(int spool, const char *base)
{
    if (spool)
        return spool_name(box, sizeof(box), base);
    snprintf(box, sizeof(box), "%s", base);
    return box;
}

static pbx_t *create_box(int spool, const char *base)
{
    struct pbx_options o = pbx_test_options(64, 64 << 10, 256, PBX_BLOCK);
    pbx_t *q;
    ASSERT_OK(pbx_open(box_name(spool, base), PBX_CREATE | PBX_EXCL, &o, &q));
    ASSERT_EQ(pipe(go_pipe), 0);
    return q;
}

/* The state letter of process pid's leader, and how many threads it has (tasks listed). */
static char leader_state(pid_t pid, int *threads)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
    *threads = count_entries(path);
    return p && p[1] == ' ' ? p[2] : 0;
}

/* Wait until the helper's main thread has exited while its other thread runs. */
static void wait_leader_gone(pid_t pid)
{
    for (int i = 0; i < 4000; i++) {
        int threads = 0;
        char st = leader_state(pid, &threads);
        if (st == 'Z' && threads >= 2)
            return;
        if (st == 'Z' || st == 0)
            pbx_test_fail(__FILE__, __LINE__, "helper %d ended early: status %d", (int) pid,
                          pbx_test_wait(pid));
        pbx_test_sleep_ms(5);
    }
    pbx_test_fail(__FILE__, __LINE__, "helper %d: main thread never exited", (int) pid);
}

static void go_on(void)
{
    ASSERT_EQ(write(go_pipe[1], "g", 1), 1);
}

/* ---- a claimer whose main thread has exited -------------------------------------------- */

static struct {
    pbx_t *q;
    uint64_t claim;
    int ack; /* 1: acknowledge when told to go on; 0: end the process holding the claim */
} zc;

static void *claimer_thread(void *arg)
{
    (void) arg;
    char c;
    if (read(go_pipe[0], &c, 1) != 1)
        _exit(5);
    if (!zc.ack)
        _exit(0); /* every thread ends: the process is dead, its claim unsettled */
    int r = pbx_ack(zc.q, zc.claim);
    _exit(r == 0 ? 0 : 10 + (-r) % 100);
}

static int zombie_claimer(void *arg)
{
    zc.ack = *(int *) arg;
    if (pbx_open(box, 0, NULL, &zc.q))
        return 2;
    char b[16];
    if (pbx_claim(zc.q, 0, b, sizeof(b), PBX_NOWAIT, NULL, &zc.claim) != 5)
        return 3;
    pthread_t t;
    if (pthread_create(&t, NULL, claimer_thread, NULL))
        return 4;
    pthread_exit(NULL);
}

static void run_zombie_leader_keeps_claim(int spool)
{
    pbx_t *q = create_box(spool, "zclaim");
    ASSERT_OK(pbx_send(q, 3, "claim", 5, 0));
    int ack = 1;
    pid_t pid = pbx_test_fork(zombie_claimer, &ack);
    wait_leader_gone(pid);
    /* Each of these receives looks after dead peers (at most every 100 ms, while a claim is
     * held): the claimer must never be taken for one. */
    char b[16];
    for (int i = 0; i < 5; i++) {
        pbx_test_sleep_ms(150);
        ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    }
    go_on();
    pbx_test_wait_ok(pid); /* its pbx_ack returned 0 */
    struct pbx_stat st;
    ASSERT_OK(pbx_stat(q, &st));
    ASSERT_EQ(st.msgs, 0);
    ASSERT_EQ(st.received, 1);
    ASSERT_ERR(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), -ENOMSG);
    pbx_remove(q);
    pbx_close(q);
}

TEST(shm_claimer_whose_main_thread_exited_keeps_and_acks_its_claim)
{
    run_zombie_leader_keeps_claim(0);
}

TEST(spool_claimer_whose_main_thread_exited_keeps_and_acks_its_claim)
{
    run_zombie_leader_keeps_claim(1);
}

/* The same claimer, but its last thread ends too: a dead process (not yet reaped) whose claim
 * goes back to the mailbox. */
static void run_dead_claimer_returns_claim(int spool)
{
    pbx_t *q = create_box(spool, "dclaim");
    ASSERT_OK(pbx_send(q, 3, "claim", 5, 0));
    int ack = 0;
    pid_t pid = pbx_test_fork(zombie_claimer, &ack);
    wait_leader_gone(pid);
    go_on();
    char b[16];
    ssize_t r = -ENOMSG;
    long type = 0;
    for (int i = 0; i < 2000 && r == -ENOMSG; i++) {
        r = pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, &type);
        if (r == -ENOMSG)
            pbx_test_sleep_ms(10);
    }
    ASSERT_EQ(r, 5);
    ASSERT_EQ(type, 3);
    ASSERT_MEM_EQ(b, "claim", 5);
    pbx_test_wait_ok(pid);
    pbx_remove(q);
    pbx_close(q);
}

TEST(shm_claim_of_a_process_whose_threads_all_exited_is_returned)
{
    run_dead_claimer_returns_claim(0);
}

TEST(spool_claim_of_a_process_whose_threads_all_exited_is_returned)
{
    run_dead_claimer_returns_claim(1);
}

/* ---- a notify registrant whose main thread has exited ---------------------------------- */

static void *registrant_thread(void *arg)
{
    (void) arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    siginfo_t si;
    /* The bound only ends a failing run (no signal ever comes); it asserts no speed. */
    struct timespec limit = {20, 0};
    int s = sigtimedwait(&set, &si, &limit);
    _exit(s == SIGUSR1 && si.si_value.sival_int == 42 ? 0 : 6);
}

static int zombie_registrant(void *arg)
{
    (void) arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* the thread below inherits it and waits for it */
    pbx_t *q;
    if (pbx_open(box, 0, NULL, &q) || pbx_notify(q, SIGUSR1, 42))
        return 2;
    pthread_t t;
    if (pthread_create(&t, NULL, registrant_thread, NULL))
        return 4;
    pthread_exit(NULL);
}

static void run_zombie_leader_keeps_registration(int spool)
{
    pbx_t *q = create_box(spool, "znotify");
    pid_t pid = pbx_test_fork(zombie_registrant, NULL);
    wait_leader_gone(pid);
    /* Listing prunes the dead: the registrant must stay listed, with its signal. */
    struct pbx_peer list[8];
    ssize_t n = pbx_peers(q, list, 8);
    ASSERT_GE(n, 2);
    int listed = 0;
    for (ssize_t i = 0; i < n && i < 8; i++)
        if (list[i].pid == pid)
            listed = list[i].notify_signo;
    ASSERT_EQ(listed, SIGUSR1);
    /* The empty -> non-empty edge signals it; its surviving thread takes the signal. */
    ASSERT_OK(pbx_send(q, 1, "x", 1, 0));
    pbx_test_wait_ok(pid);
    pbx_remove(q);
    pbx_close(q);
}

TEST(shm_notify_registrant_whose_main_thread_exited_is_still_signalled)
{
    run_zombie_leader_keeps_registration(0);
}

TEST(spool_notify_registrant_whose_main_thread_exited_is_still_signalled)
{
    run_zombie_leader_keeps_registration(1);
}
