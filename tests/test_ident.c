/*
 * test_ident.c — who counts as alive (src/os/ident.h), on both transports.
 *
 * A process whose main() called pthread_exit() while another thread runs has a zombie
 * thread-group leader, and is alive: it keeps its claims, can acknowledge them, and keeps its
 * notify registration. A process whose threads have all exited is dead even while it is not
 * reaped yet: its claim is returned.
 *
 * Liveness is judged in the caller's PID namespace, so a mailbox is used from one namespace
 * only: another's is refused with -EXDEV, tried with bogus records and with real namespaces
 * (unshare -p -f, as root; skipped where that is not permitted). (Issue 13, item 2.)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "shm/region.h"
#include "spool/format.h"
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

/* ---- PID namespaces: a mailbox is used from one only ------------------------------------ */

/* Write the PID namespace recorded in a mailbox: the region's header, or a spool's state. */
static void record_pidns(int spool, const char *base, uint64_t dev, uint64_t ino)
{
    char path[8192];
    off_t off;
    if (spool) {
        snprintf(path, sizeof(path), "%s/%s/state", getenv("POSTBOX_DIR"), base);
        off = (off_t) offsetof(struct pbx_spool_state, pidns_dev);
    } else {
        snprintf(path, sizeof(path), "%s/pbx.%s", getenv("POSTBOX_DIR"), base);
        off = (off_t) offsetof(struct pbx_header, pidns_dev);
    }
    uint64_t ns[2] = {dev, ino};
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(pwrite(fd, ns, sizeof(ns), off), (ssize_t) sizeof(ns));
    close(fd);
}

static void run_foreign_record_refused(int spool)
{
    pbx_t *q = create_box(spool, "foreign");
    ASSERT_OK(pbx_send(q, 1, "kept", 4, 0));
    pbx_t *q2;
    ASSERT_OK(pbx_open(box, 0, NULL, &q2)); /* our own namespace: admitted */
    pbx_close(q2);
    record_pidns(spool, "foreign", 1, 4026531836ull + 7); /* a namespace we are not in */
    ASSERT_ERR(pbx_open(box, 0, NULL, &q2), -EXDEV);
    ASSERT_ERR(pbx_open(box, PBX_CREATE, NULL, &q2), -EXDEV);
    ASSERT_TRUE(strstr(pbx_strerror(-EXDEV), "PID namespace") != NULL);
    /* Removing it by name still works (the remedy for a mailbox of a namespace gone). */
    ASSERT_OK(pbx_unlink(box));
    ASSERT_ERR(pbx_open(box, 0, NULL, &q2), -ENOENT);
    pbx_close(q);
}

TEST(shm_region_recorded_in_another_pid_namespace_is_refused_with_exdev)
{
    run_foreign_record_refused(0);
}

TEST(spool_recorded_in_another_pid_namespace_is_refused_with_exdev)
{
    run_foreign_record_refused(1);
}

/* A spool outlives a boot, and with it every namespace of its users: the first open of a new
 * boot records its own namespace. */
TEST(spool_of_another_pid_namespace_is_taken_over_in_a_new_boot)
{
    pbx_t *q = create_box(1, "reboot");
    ASSERT_OK(pbx_send(q, 2, "boot", 4, 0));
    pbx_close(q);
    record_pidns(1, "reboot", 1, 4026531836ull + 7);
    ASSERT_ERR(pbx_open(box, 0, NULL, &q), -EXDEV);
    char path[8192];
    snprintf(path, sizeof(path), "%s/reboot/state", getenv("POSTBOX_DIR"));
    int fd = open(path, O_RDWR);
    ASSERT_TRUE(fd >= 0);
    char boot[40] = "00000000-0000-0000-0000-000000000000\n";
    ASSERT_EQ(pwrite(fd, boot, sizeof(boot), offsetof(struct pbx_spool_state, boot_id)), 40);
    close(fd);
    ASSERT_OK(pbx_open(box, 0, NULL, &q));
    char b[8];
    ASSERT_EQ(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), 4);
    pbx_t *q2;
    ASSERT_OK(pbx_open(box, 0, NULL, &q2)); /* recorded as ours now */
    pbx_close(q2);
    pbx_remove(q);
    pbx_close(q);
}

/* Run fn(arg) as process 1 of a new PID namespace (unshare -p -f), with /proc mounted for that
 * namespace (own_proc, as a container has: unshare -p -f -m --mount-proc) or the parent's left
 * in place. Returns fn's exit status; skips the test when namespaces are not permitted. */
struct nsjob {
    int (*fn)(void *);
    int own_proc;
};

static int ns_helper(void *arg)
{
    struct nsjob *j = arg;
    if (unshare(CLONE_NEWPID | (j->own_proc ? CLONE_NEWNS : 0)) < 0)
        return errno == EPERM || errno == EINVAL || errno == ENOSPC || errno == EUSERS ? 77 : 3;
    pid_t c = fork();
    if (c < 0)
        return 4;
    if (c == 0) {
        if (j->own_proc &&
            (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
             mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0))
            _exit(77);
        _exit(j->fn(NULL));
    }
    int st;
    if (waitpid(c, &st, 0) != c)
        return 5;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void in_new_pidns(int (*fn)(void *), int own_proc)
{
    struct nsjob j = {fn, own_proc};
    int r = pbx_test_wait(pbx_test_fork(ns_helper, &j));
    if (r == 77)
        SKIP("no PID namespace here (unshare(CLONE_NEWPID) or mounting its /proc not permitted; "
             "run as root, or allow user namespaces)");
    ASSERT_EQ(r, 0);
}

static int open_is_exdev(void *arg)
{
    (void) arg;
    pbx_t *q;
    int r = pbx_open(box, 0, NULL, &q);
    return r == -EXDEV ? 0 : 10 + (r < 0 ? -r : 0) % 100;
}

static void run_container_refused(int spool)
{
    pbx_t *q = create_box(spool, "host");
    ASSERT_OK(pbx_send(q, 1, "host", 4, 0));
    in_new_pidns(open_is_exdev, 1);
    char b[8];
    ASSERT_EQ(pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL), 4); /* nothing disturbed */
    pbx_remove(q);
    pbx_close(q);
}

TEST(shm_open_from_another_pid_namespace_is_refused_with_exdev)
{
    run_container_refused(0);
}

TEST(spool_open_from_another_pid_namespace_is_refused_with_exdev)
{
    run_container_refused(1);
}

/* unshare -p -f without --mount-proc: /proc shows the parent's namespace, in which no id this
 * process records means what it says. Neither opening nor creating is allowed. */
static int open_or_create_is_exdev(void *arg)
{
    (void) arg;
    pbx_t *q;
    int r = pbx_open(box, 0, NULL, &q);
    if (r != -EXDEV)
        return 10 + (r < 0 ? -r : 0) % 100;
    char fresh[4200];
    snprintf(fresh, sizeof(fresh), "%s2", box);
    r = pbx_open(fresh, PBX_CREATE, NULL, &q);
    return r == -EXDEV ? 0 : 30 + (r < 0 ? -r : 0) % 100;
}

static void run_foreign_proc_refused(int spool)
{
    pbx_t *q = create_box(spool, "fproc");
    in_new_pidns(open_or_create_is_exdev, 0);
    pbx_remove(q);
    pbx_close(q);
}

TEST(shm_open_where_proc_shows_another_pid_namespace_is_refused)
{
    run_foreign_proc_refused(0);
}

TEST(spool_open_where_proc_shows_another_pid_namespace_is_refused)
{
    run_foreign_proc_refused(1);
}

/* Inside a container, its own processes share a mailbox as anywhere (a claim of a live process
 * there is kept, and acknowledged); outside, it is refused. */
static int container_users(void *arg)
{
    (void) arg;
    pbx_t *q;
    struct pbx_options o = pbx_test_options(64, 64 << 10, 256, PBX_BLOCK);
    if (pbx_open(box, PBX_CREATE | PBX_EXCL, &o, &q))
        return 2;
    if (pbx_send(q, 1, "claim", 5, 0))
        return 3;
    int ack = 1;
    pid_t keeper = pbx_test_fork(zombie_claimer, &ack); /* claims it; its main thread exits */
    wait_leader_gone(keeper);
    char b[16];
    for (int i = 0; i < 3; i++) {
        pbx_test_sleep_ms(150);
        if (pbx_recv(q, 0, b, sizeof(b), PBX_NOWAIT, NULL) != -ENOMSG)
            return 4; /* handed out while its claimer lives */
    }
    go_on();
    if (pbx_test_wait(keeper) != 0)
        return 5;
    pbx_close(q);
    return 0;
}

static void run_container_users(int spool)
{
    box_name(spool, "inner");
    ASSERT_EQ(pipe(go_pipe), 0);
    in_new_pidns(container_users, 1);
    pbx_t *q;
    ASSERT_ERR(pbx_open(box, 0, NULL, &q), -EXDEV); /* the container's, seen from the host */
    ASSERT_OK(pbx_unlink(box));
}

TEST(shm_mailbox_made_in_a_pid_namespace_works_there_and_is_refused_outside)
{
    run_container_users(0);
}

TEST(spool_made_in_a_pid_namespace_works_there_and_is_refused_outside)
{
    run_container_users(1);
}
