/*
 * fault.c — robustness tests of libpostbox-sysv.so: processes killed inside a call, a process
 * preempted between two steps of a call, a registry scribbled on, fork() with threads blocked.
 *
 * Like the conformance programs these are plain System V programs, but they test what only the
 * drop-in can get wrong (the kernel's queues have no registry file and no mailbox files), so
 * they run only with the library preloaded, and with fault_shim.so after it (fault_shim.c),
 * which kills or delays the process at chosen points when the environment asks.
 */
#include "conf.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

static const char *dir(void)
{
    const char *d = getenv("POSTBOX_DIR");
    if (!d || !getenv("LD_PRELOAD"))
        SKIP("tests the drop-in only (run with the library preloaded)");
    return d;
}

/* "" in the initial IPC namespace, else "ns<N>.": the files of another namespace's queues carry
 * its inode number (docs/sysv.md). */
static const char *ns_tag(void)
{
    static char tag[32];
    struct stat st;
    if (stat("/proc/self/ns/ipc", &st) == 0 && st.st_ino != 0xEFFFFFFFul)
        snprintf(tag, sizeof(tag), "ns%lu.", (unsigned long) st.st_ino);
    return tag;
}

__attribute__((unused)) static int mailbox_file_exists(key_t key)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.sysv.%s0x%08x", dir(), ns_tag(), (unsigned) key);
    return access(path, F_OK) == 0;
}

/* Run fn in a child that must finish within secs seconds; returns its exit status (a child
 * that hangs is killed by SIGALRM: 128 + 14). */
static int run_limited(int (*fn)(int), int arg, unsigned secs)
{
    fflush(NULL);
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        alarm(secs);
        _exit(fn(arg));
    }
    return wait_status(p);
}

/* ---- a process killed in msgget, after the mailbox is made, holding the registry lock ---- */

static int worker_fd[2];

/* A server: it uses the registry, forks a worker that inherits everything and lives on, then
 * dies inside msgget(key, IPC_CREAT) with the registry locked (fault_shim.c). */
static int server_killed_in_msgget(int key)
{
    CHECK(msgget(IPC_PRIVATE, IPC_CREAT | 0600) >= 0);
    pid_t w = fork();
    CHECK(w >= 0);
    if (w == 0) {
        sleep(30); /* killed by the test when it is done */
        _exit(0);
    }
    CHECK(write(worker_fd[1], &w, sizeof(w)) == (ssize_t) sizeof(w));
    setenv("PBX_FAULT_KILL_AFTER_LINK", "1", 1);
    msgget((key_t) key, IPC_CREAT | 0600);
    return 3; /* not reached: the shim kills the process */
}

static int get_other_key(int key)
{
    int id = msgget((key_t) key, IPC_CREAT | 0600);
    return id >= 0 ? 0 : 1;
}

static pid_t kill_server_in_msgget(key_t key)
{
    CHECK(pipe(worker_fd) == 0);
    CHECK_EQ(wait_status(spawn(server_killed_in_msgget, (int) key)), 128 + SIGKILL);
    pid_t worker;
    CHECK(read(worker_fd[0], &worker, sizeof(worker)) == (ssize_t) sizeof(worker));
    return worker;
}

CONF_TEST(lock_holder_killed_while_its_child_lives_does_not_block_others)
{
    dir();
    pid_t worker = kill_server_in_msgget(q_key(1));
    /* The worker still has the registry file open; msgget elsewhere must not wait for it. */
    int st = run_limited(get_other_key, (int) q_key(2), 10);
    kill(worker, SIGKILL);
    waitpid(worker, NULL, 0);
    CHECK_EQ(st, 0);
    q_track(msgget(q_key(2), 0));
}

CONF_TEST(msgget_killed_after_making_the_mailbox_leaves_no_file)
{
    dir();
    pid_t worker = kill_server_in_msgget(q_key(1));
    kill(worker, SIGKILL);
    waitpid(worker, NULL, 0);
    CHECK(mailbox_file_exists(q_key(1))); /* the shim killed it after naming the file */
    /* The next msgget that takes the lock rolls the half-made queue back. */
    CHECK_EQ(run_limited(get_other_key, (int) q_key(2), 10), 0);
    q_track(msgget(q_key(2), 0));
    CHECK(!mailbox_file_exists(q_key(1)));
    CHECK_FAILS(msgget(q_key(1), 0), ENOENT);
    q_track(msgget(q_key(1), IPC_CREAT | IPC_EXCL | 0600));
    CHECK(msgget(q_key(1), 0) >= 0);
}

/* ---- an id looked up, then the queue replaced before its mailbox is opened ---- */

static int make_queue(int key)
{
    return msgget((key_t) key, IPC_CREAT | 0600) >= 0 ? 0 : 1;
}

static int send_slowly(int id)
{
    setenv("PBX_FAULT_SLOW_OPEN", "600", 1);
    struct text_msg m = {.mtype = 1, .mtext = "old"};
    errno = 0;
    int r = msgsnd(id, &m, 3, IPC_NOWAIT);
    return r == -1 && (errno == EINVAL || errno == EIDRM) ? 0 : 1;
}

CONF_TEST(removed_id_never_reaches_the_queue_replacing_it_during_the_open)
{
    dir();
    key_t key = q_key(3);
    /* Made elsewhere, so that neither this process nor the sender has the mailbox open. */
    CHECK_EQ(wait_status(spawn(make_queue, (int) key)), 0);
    int old = msgget(key, 0);
    CHECK(old >= 0);
    pid_t sender = spawn(send_slowly, old); /* looks old up, then sleeps before the open */
    usleep(200000);
    CHECK(msgctl(old, IPC_RMID, NULL) == 0);
    int fresh = q_track(msgget(key, IPC_CREAT | 0600));
    CHECK(fresh >= 0 && fresh != old);
    CHECK_EQ(wait_status(sender), 0);
    CHECK_EQ(qnum(fresh), 0);
}

/* ---- IPC_RMID by an owner who got the queue through IPC_SET ---- */

static int g_id;

static int receive_expect_eidrm(int id)
{
    struct text_msg m;
    errno = 0;
    return msgrcv(id, &m, sizeof(m.mtext), 0, 0) == -1 && errno == EIDRM ? 0 : 1;
}

static int nobody_removes(int id)
{
    become_nobody();
    return msgctl(id, IPC_RMID, NULL) == 0 ? 0 : 1;
}

CONF_TEST(rmid_by_an_owner_made_through_ipc_set_removes_and_wakes)
{
    dir();
    need_root();
    key_t key = q_key(4);
    g_id = q_track(msgget(key, IPC_CREAT | 0600));
    CHECK(g_id >= 0);
    struct msqid_ds ds;
    CHECK(msgctl(g_id, IPC_STAT, &ds) == 0);
    ds.msg_perm.uid = 65534;
    ds.msg_perm.gid = 65534;
    CHECK(msgctl(g_id, IPC_SET, &ds) == 0);
    pid_t waiter = spawn(receive_expect_eidrm, g_id);
    wait_asleep(waiter);
    CHECK_EQ(wait_status(spawn(nobody_removes, g_id)), 0);
    CHECK_EQ(wait_status(waiter), 0);
    CHECK_FAILS(msgctl(g_id, IPC_STAT, &ds), EINVAL);
    q_track(msgget(key, IPC_CREAT | IPC_EXCL | 0600));
}

/* A queue of uid 65533 given to 65534 by its owner (who may not chown the file): the new
 * owner's IPC_RMID cannot reach the mailbox and fails with EPERM, leaving the queue whole. */
static int as_user(uid_t uid)
{
    if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(uid, uid, uid) != 0)
        return 77;
    return 0;
}

static int creator_gives_queue_away(int key)
{
    int st = as_user(65533);
    if (st)
        return st;
    int id = msgget((key_t) key, IPC_CREAT | 0600);
    struct msqid_ds ds;
    if (id < 0 || msgctl(id, IPC_STAT, &ds) != 0)
        return 1;
    ds.msg_perm.uid = 65534;
    return msgctl(id, IPC_SET, &ds) == 0 ? 0 : 2;
}

static int new_owner_removal_fails(int id)
{
    int st = as_user(65534);
    if (st)
        return st;
    errno = 0;
    return msgctl(id, IPC_RMID, NULL) == -1 && errno == EPERM ? 0 : 1;
}

static int creator_removes(int id)
{
    int st = as_user(65533);
    if (st)
        return st;
    return msgctl(id, IPC_RMID, NULL) == 0 ? 0 : 1;
}

CONF_TEST(rmid_that_cannot_reach_the_mailbox_fails_and_keeps_the_queue)
{
    dir();
    need_root();
    key_t key = q_key(5);
    int st = wait_status(spawn(creator_gives_queue_away, (int) key));
    if (st == 77)
        SKIP("cannot switch users");
    CHECK_EQ(st, 0);
    int id = q_track(msgget(key, 0));
    CHECK(id >= 0);
    pid_t waiter = spawn(receive_expect_eidrm, id);
    wait_asleep(waiter);
    CHECK_EQ(wait_status(spawn(new_owner_removal_fails, id)), 0);
    CHECK_EQ(qnum(id), 0); /* still there, the waiter still asleep */
    CHECK_EQ(proc_state(waiter), 'S');
    CHECK_EQ(wait_status(spawn(creator_removes, id)), 0);
    CHECK_EQ(wait_status(waiter), 0);
}

/* ---- a scribbled registry ---- */

static void *map_registry(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/postbox-sysv.%sregistry", dir(), ns_tag());
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    void *p = mmap(NULL, 4096 + 64 * 32768, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    close(fd);
    return p;
}

CONF_TEST(scribbled_registry_counts_and_sequences_are_not_trusted)
{
    int id = q_new(0600);
    snd(id, 1, "kept");
    unsigned char *reg = map_registry();
    uint32_t *used = (uint32_t *) (reg + 16);
    *used = 0x7fffffff;
    /* A second slot with a sequence out of range, live. */
    uint64_t *live1 = (uint64_t *) (reg + 4096 + 64 * 1);
    *live1 = 1 | (uint64_t) 0xfffffff0u << 32;
    struct msginfo info;
    CHECK(msgctl(0, IPC_INFO, (struct msqid_ds *) (void *) &info) >= 0);
    CHECK(msgctl(0, MSG_INFO, (struct msqid_ds *) (void *) &info) >= 0);
    struct msqid_ds ds;
    errno = 0;
    int r = msgctl(1, MSG_STAT, &ds);
    CHECK(r == -1 || r >= 0);
    int other = msgget(IPC_PRIVATE, 0600);
    CHECK(other >= 0);
    q_track(other);
    int keyed = msgget(q_key(6), IPC_CREAT | 0600);
    CHECK(keyed >= 0);
    q_track(keyed);
    rcv_expect(id, 0, 0, 1, "kept");
}

/* ---- MSG_COPY sees only messages that were sent ---- */

/* ---- fork() while other threads are inside a call ---- */

static int g_blocked_id;

static void *blocked_receiver(void *arg)
{
    (void) arg;
    struct text_msg m;
    msgrcv(g_blocked_id, &m, sizeof(m.mtext), 0, 0);
    return NULL;
}

static int child_uses_a_queue_in_the_same_slot(int unused)
{
    (void) unused;
    /* The parent's queue goes, a new one takes its slot: this process must be able to cache
     * a handle to it, although a parent thread held the old one when it forked. */
    if (msgctl(g_blocked_id, IPC_RMID, NULL) != 0)
        return 1;
    int id = msgget(IPC_PRIVATE, 0600);
    if (id < 0 || id % 32768 != g_blocked_id % 32768)
        return 2;
    struct text_msg m = {.mtype = 1};
    for (int i = 0; i < 3; i++)
        if (msgsnd(id, &m, 8, 0) != 0 || msgrcv(id, &m, 8, 0, 0) != 8)
            return 3;
    /* The handle is cached, not opened for every call (fault_shim.c counts the opens). */
    int *opens = dlsym(RTLD_DEFAULT, "pbx_fault_opens");
    if (!opens)
        return 5;
    int before = *opens;
    for (int i = 0; i < 5; i++)
        if (msgsnd(id, &m, 8, 0) != 0 || msgrcv(id, &m, 8, 0, 0) != 8)
            return 3;
    int found = *opens - before <= 1;
    msgctl(id, IPC_RMID, NULL);
    return found ? 0 : 4;
}

CONF_TEST(fork_with_a_thread_blocked_in_msgrcv_leaves_the_child_a_working_cache)
{
    dir();
    g_blocked_id = q_new(0600);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_receiver, NULL) == 0);
    usleep(200000); /* the thread is asleep in msgrcv */
    CHECK_EQ(wait_status(spawn(child_uses_a_queue_in_the_same_slot, 0)), 0);
}

/* ---- the EFAULT check writes nothing ---- */

/* Is the page at p still the file's own page (pagemap bit 61, "file page or shared anon")?
 * A private file mapping gets an anonymous copy at the first write to the page (copy on
 * write), so 0 means something stored to it. 1, 0, or -1 when pagemap cannot be read. */
static int file_page(const void *p)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return -1;
    uint64_t e = 0;
    off_t at = (off_t) ((uintptr_t) p / 4096 * 8);
    ssize_t n = pread(fd, &e, sizeof(e), at);
    close(fd);
    return n == (ssize_t) sizeof(e) && (e >> 63) ? (int) ((e >> 61) & 1) : -1;
}

/* A private, writable mapping of a page of a file, faulted in for reading. */
static char *private_file_page(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir(), name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, 4096) == 0);
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(page != MAP_FAILED);
    close(fd);
    unlink(path);
    volatile char c = page[0];
    (void) c;
    return page;
}

CONF_TEST(rcv_buffer_check_writes_nothing_to_the_buffer)
{
    dir();
    int id = q_new(0600);
    /* The test means something only if a store shows: try it on a page of its own. */
    char *probe = private_file_page("probe");
    if (file_page(probe) != 1)
        SKIP("pagemap does not tell file pages here");
    probe[1] = 1;
    if (file_page(probe) != 0)
        SKIP("pagemap does not show copy on write here");
    char *page = private_file_page("buffer");
    CHECK_EQ(file_page(page), 1);
    /* Nothing to receive: the kernel writes nothing, and another thread of the program may be
     * writing next to the buffer, so the library must not store there either. */
    CHECK_FAILS(msgrcv(id, page, 64, 0, IPC_NOWAIT), ENOMSG);
    CHECK_EQ(file_page(page), 1);
}

CONF_TEST(rcv_buffer_across_two_writable_mappings_is_good)
{
    dir();
    int id = q_new(0600);
    char *two = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(two != MAP_FAILED);
    /* Three mappings in a row, as /proc/self/maps lists them: rw, rw with other flags, r. */
    CHECK(mprotect(two + 4096, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) == 0 ||
          madvise(two + 4096, 4096, MADV_DONTFORK) == 0);
    CHECK(mprotect(two + 2 * 4096, 4096, PROT_READ) == 0);
    struct text_msg *m = (struct text_msg *) (void *) (two + 4096 - 16);
    snd(id, 3, "spans");
    CHECK_EQ(msgrcv(id, m, 4096, 0, IPC_NOWAIT), 5); /* up to two + 8184 */
    CHECK_EQ(m->mtype, 3);
    CHECK(memcmp(m->mtext, "spans", 5) == 0);
    snd(id, 3, "ro");
    CHECK_FAILS(msgrcv(id, two + 4096 + 100, 8000, 0, IPC_NOWAIT), EFAULT); /* docs/sysv.md 5 */
}

/* ---- the registry file goes with the last queue ---- */

static int registry_exists(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/postbox-sysv.%sregistry", dir(), ns_tag());
    return access(path, F_OK) == 0;
}

CONF_TEST(last_queue_removed_takes_the_registry_file_with_it)
{
    dir();
    /* Looking up makes no file. */
    struct text_msg m = {.mtype = 1};
    struct msginfo info;
    CHECK_FAILS(msgget(q_key(1), 0600), ENOENT);
    CHECK_FAILS(msgsnd(12345, &m, 1, IPC_NOWAIT), EINVAL);
    CHECK_EQ(msgctl(0, IPC_INFO, (struct msqid_ds *) (void *) &info), 0);
    CHECK_FAILS(msgctl(3, MSG_STAT, &(struct msqid_ds){0}), EINVAL);
    CHECK(!registry_exists());
    /* Two queues: the file stays until the second goes. */
    int a = q_new(0600), b = q_track(msgget(q_key(2), IPC_CREAT | 0600));
    CHECK(b >= 0);
    CHECK(registry_exists());
    CHECK(msgctl(a, IPC_RMID, NULL) == 0);
    CHECK(registry_exists());
    CHECK(msgctl(b, IPC_RMID, NULL) == 0);
    CHECK(!registry_exists());
    CHECK_FAILS(msgsnd(a, &m, 1, IPC_NOWAIT), EINVAL);
    CHECK_FAILS(msgctl(b, IPC_STAT, &(struct msqid_ds){0}), EINVAL);
    /* A queue brings it back, and works. */
    int c = q_new(0600);
    CHECK(registry_exists());
    snd(c, 2, "again");
    rcv_expect(c, 0, 0, 2, "again");
    /* The last queue removed through postbox (its mailbox file unlinked) is noticed by the
     * next msgget, which frees its slot: the file goes then. */
    int d = q_track(msgget(q_key(3), IPC_CREAT | 0600));
    CHECK(d >= 0);
    CHECK(msgctl(c, IPC_RMID, NULL) == 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.sysv.%s0x%08x", dir(), ns_tag(), (unsigned) q_key(3));
    CHECK(unlink(path) == 0);
    CHECK(registry_exists());
    CHECK_FAILS(msgget(q_key(3), 0600), ENOENT);
    CHECK(!registry_exists());
}

/* Racing: processes make, use and remove queues of their own, so that the last queue goes
 * (and the file with it) over and over while others are making theirs. A queue made in a file
 * just unlinked would be lost to every other process: after each msgget the maker checks that
 * the registry it has mapped is still linked, and every few rounds that a fresh process (exec)
 * finds the queue by its key. */
#define RACERS      4
#define RACE_ROUNDS 200

/* An exec'd probe: exits 0 if the key names a queue. */
__attribute__((constructor)) static void probe_main(void)
{
    const char *k = getenv("SYSV_FAULT_PROBE_KEY");
    if (k)
        _exit(msgget((key_t) strtol(k, NULL, 0), 0) >= 0 ? 0 : 1);
}

static int key_seen_by_a_fresh_process(key_t key)
{
    fflush(NULL);
    pid_t p = fork();
    if (p < 0)
        return 0;
    if (p == 0) {
        char k[32];
        snprintf(k, sizeof(k), "%d", (int) key);
        setenv("SYSV_FAULT_PROBE_KEY", k, 1);
        execl("/proc/self/exe", "sysv_fault", (char *) NULL);
        _exit(2);
    }
    return wait_status(p) == 0;
}

/* Does this process map a registry file that has been unlinked? */
static int maps_a_deleted_registry(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4096];
    int deleted = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, "postbox-sysv.") && strstr(line, "registry (deleted)"))
            deleted = 1;
    if (f)
        fclose(f);
    return deleted;
}

static int racer(int n)
{
    key_t key = q_key(32 + n);
    struct text_msg m = {.mtype = 1};
    for (int i = 0; i < RACE_ROUNDS; i++) {
        int id = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
        if (id < 0)
            return 10;
        int ok = !maps_a_deleted_registry();
        if (ok && i % 25 == n)
            ok = key_seen_by_a_fresh_process(key) ? 1 : 0;
        ok = ok && msgsnd(id, &m, 1, IPC_NOWAIT) == 0 &&
             msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT) == 1;
        if (msgctl(id, IPC_RMID, NULL) != 0)
            return 11;
        usleep(200); /* a pause without a queue: so that often none is left, and the file goes */
        if (!ok) {
            fprintf(stderr, "racer %d, round %d: its queue was made in an unlinked registry\n", n,
                    i);
            return 12;
        }
    }
    return 0;
}

CONF_TEST(registry_removal_races_with_msgget_in_other_processes)
{
    dir();
    /* Small queues: making a mailbox is most of a round's work, and the race is in the
     * registry. (Read at each racer's first call; this process has made none yet.) */
    setenv("POSTBOX_SYSV_MSGMNB", "1024", 1);
    pid_t p[RACERS];
    for (int i = 0; i < RACERS; i++)
        p[i] = spawn(racer, i);
    int failed = 0;
    for (int i = 0; i < RACERS; i++)
        failed |= wait_status(p[i]) != 0;
    for (int i = 0; i < RACERS; i++) /* whatever a failed racer left */
        msgctl(msgget(q_key(32 + i), 0), IPC_RMID, NULL);
    CHECK(!failed);
    CHECK(!registry_exists());
}

/* ---- the creator of a mode-0 queue changes and removes it: the file follows ---- */

static int mode_0_file_follows(int unused)
{
    (void) unused;
    if (setgroups(0, NULL) != 0 || setresgid(48213, 48213, 48213) != 0 ||
        setresuid(48213, 48213, 48213) != 0)
        return 77;
    key_t key = q_key(40);
    int id = msgget(key, IPC_CREAT | IPC_EXCL | 0);
    if (id < 0)
        return 2;
    char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.sysv.%s0x%08x", dir(), ns_tag(), (unsigned) key);
    struct stat st;
    struct msqid_ds ds;
    memset(&ds, 0, sizeof(ds));
    ds.msg_perm.uid = 48213;
    ds.msg_perm.gid = 48213;
    ds.msg_perm.mode = 0; /* IPC_SET to mode 0 again: the file keeps mode 0 */
    ds.msg_qbytes = 2048;
    int ok = msgctl(id, IPC_SET, &ds) == 0 && stat(path, &st) == 0 && (st.st_mode & 0777) == 0;
    ok = ok && msgctl(id, IPC_RMID, NULL) == 0 && access(path, F_OK) != 0 && errno == ENOENT;
    if (!ok)
        msgctl(id, IPC_RMID, NULL);
    return ok ? 0 : 1;
}

CONF_TEST(rmid_of_a_mode_0_queue_by_its_creator_removes_its_file)
{
    dir();
    need_root();
    int st = wait_status(spawn(mode_0_file_follows, 0));
    if (st == 77)
        SKIP("cannot switch to an unused uid");
    CHECK_EQ(st, 0);
    CHECK(!mailbox_file_exists(q_key(40)));
    CHECK(!registry_exists());
}
