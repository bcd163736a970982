/*
 * conf_queue.c — msgget(2) and msgctl(2), one test per rule and error of the man pages,
 * run against the kernel and against libpostbox-sysv.so (conf.h). Plain System V code.
 */
#include "conf.h"

#include <sched.h>

/* ---- msgget ---- */

CONF_TEST(get_private_always_makes_a_new_queue)
{
    int a = q_track(msgget(IPC_PRIVATE, 0600));
    int b = q_track(msgget(IPC_PRIVATE, IPC_CREAT | IPC_EXCL | 0600));
    CHECK(a >= 0 && b >= 0 && a != b);
    snd(a, 1, "a");
    CHECK_EQ(qnum(b), 0);
}

CONF_TEST(get_missing_key_without_creat_is_enoent)
{
    CHECK_FAILS(msgget(q_key(1), 0600), ENOENT);
}

CONF_TEST(get_same_key_gives_same_queue)
{
    int a = q_track(msgget(q_key(1), IPC_CREAT | 0600));
    CHECK(a >= 0);
    CHECK_EQ(msgget(q_key(1), IPC_CREAT | 0600), a);
    CHECK_EQ(msgget(q_key(1), 0), a);
    CHECK_EQ(msgget(q_key(1), IPC_EXCL), a); /* IPC_EXCL alone means nothing */
    struct msqid_ds ds;
    CHECK(msgctl(a, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_perm.__key, q_key(1));
}

CONF_TEST(get_creat_excl_on_existing_key_is_eexist)
{
    int a = q_track(msgget(q_key(2), IPC_CREAT | 0600));
    CHECK(a >= 0);
    CHECK_FAILS(msgget(q_key(2), IPC_CREAT | IPC_EXCL | 0600), EEXIST);
}

CONF_TEST(get_mode_is_taken_as_given_without_umask)
{
    umask(077);
    int id = q_new(0664);
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_perm.mode & 0777, 0664);
}

CONF_TEST(get_fills_the_new_queues_msqid_ds)
{
    time_t before = time(NULL);
    int id = q_new(0640);
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_perm.__key, IPC_PRIVATE);
    CHECK_EQ(ds.msg_perm.uid, geteuid());
    CHECK_EQ(ds.msg_perm.cuid, geteuid());
    CHECK_EQ(ds.msg_perm.gid, getegid());
    CHECK_EQ(ds.msg_perm.cgid, getegid());
    CHECK_EQ(ds.msg_qnum, 0);
    CHECK_EQ(ds.__msg_cbytes, 0);
    CHECK_EQ(ds.msg_qbytes, limit_of("msgmnb"));
    CHECK_EQ(ds.msg_lspid, 0);
    CHECK_EQ(ds.msg_lrpid, 0);
    CHECK_EQ(ds.msg_stime, 0);
    CHECK_EQ(ds.msg_rtime, 0);
    CHECK(ds.msg_ctime >= before - 1 && ds.msg_ctime <= time(NULL) + 1);
}

static int g_id;
static key_t g_key; /* for helpers: q_key() depends on the pid */

static int child_execs_and_receives(int id)
{
    char arg[32];
    snprintf(arg, sizeof(arg), "%d", id);
    execl("/proc/self/exe", "conf_queue", "--receive", arg, (char *) NULL);
    return 3;
}

CONF_TEST(get_id_is_valid_in_an_unrelated_process)
{
    int id = q_new(0600);
    snd(id, 7, "over there");
    pid_t p = spawn(child_execs_and_receives, id); /* a fresh program: no inherited state */
    CHECK_EQ(wait_status(p), 0);
    CHECK_EQ(qnum(id), 0);
}

CONF_TEST(get_key_finds_the_queue_in_an_unrelated_process)
{
    int id = q_track(msgget(q_key(3), IPC_CREAT | 0600));
    CHECK(id >= 0);
    snd(id, 7, "over there");
    char key[32];
    snprintf(key, sizeof(key), "%d", (int) q_key(3));
    fflush(NULL);
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        execl("/proc/self/exe", "conf_queue", "--receive-key", key, (char *) NULL);
        _exit(3);
    }
    CHECK_EQ(wait_status(p), 0);
    CHECK_EQ(qnum(id), 0);
}

CONF_TEST(get_removed_id_stays_invalid_after_slot_reuse)
{
    int old = q_new(0600);
    CHECK(msgctl(old, IPC_RMID, NULL) == 0);
    int fresh = q_new(0600);
    CHECK(fresh != old);
    struct text_msg m = {.mtype = 1};
    CHECK_FAILS(msgsnd(old, &m, 1, IPC_NOWAIT), EINVAL);
    CHECK_FAILS(msgctl(old, IPC_STAT, &(struct msqid_ds){0}), EINVAL);
    CHECK_EQ(qnum(fresh), 0);
}

CONF_TEST(get_removed_key_is_enoent_then_new)
{
    int a = q_track(msgget(q_key(4), IPC_CREAT | 0600));
    CHECK(a >= 0);
    snd(a, 1, "old");
    CHECK(msgctl(a, IPC_RMID, NULL) == 0);
    CHECK_FAILS(msgget(q_key(4), 0600), ENOENT);
    int b = q_track(msgget(q_key(4), IPC_CREAT | 0600));
    CHECK(b >= 0 && b != a);
    CHECK_EQ(qnum(b), 0);
}

static int nobody_gets(int flags_expect)
{
    become_nobody();
    int flags = flags_expect & 0777;
    int expect = flags_expect >> 16;
    int r = msgget(g_key, flags);
    return expect ? !(r == -1 && errno == expect) : r < 0;
}

CONF_TEST(get_without_permission_is_eacces)
{
    need_root();
    g_key = q_key(5);
    g_id = q_track(msgget(g_key, IPC_CREAT | 0600));
    CHECK(g_id >= 0);
    CHECK_EQ(wait_status(spawn(nobody_gets, 0600 | EACCES << 16)), 0);
    CHECK_EQ(wait_status(spawn(nobody_gets, 0400 | EACCES << 16)), 0);
    CHECK_EQ(wait_status(spawn(nobody_gets, 0)), 0); /* asking for nothing is allowed */
}

CONF_TEST(get_group_permission_applies_to_group_members)
{
    need_root();
    g_key = q_key(5);
    g_id = q_track(msgget(g_key, IPC_CREAT | 0600));
    CHECK(g_id >= 0);
    struct msqid_ds ds;
    CHECK(msgctl(g_id, IPC_STAT, &ds) == 0);
    ds.msg_perm.gid = 65534;
    ds.msg_perm.mode = 0660;
    CHECK(msgctl(g_id, IPC_SET, &ds) == 0);
    CHECK_EQ(wait_status(spawn(nobody_gets, 0660)), 0);
    ds.msg_perm.mode = 0606;
    CHECK(msgctl(g_id, IPC_SET, &ds) == 0);
    CHECK_EQ(wait_status(spawn(nobody_gets, 0600 | EACCES << 16)), 0);
}

CONF_TEST(get_more_than_msgmni_is_enospc)
{
    long mni = limit_of("msgmni");
    if (mni > 64)
        SKIP("msgmni too large to fill here (run.sh sets POSTBOX_SYSV_MSGMNI=8 for postbox)");
    int made = 0, id;
    while ((id = msgget(IPC_PRIVATE, 0600)) >= 0 && made <= mni)
        q_track(id), made++;
    CHECK_EQ(id, -1);
    CHECK_EQ(errno, ENOSPC);
    CHECK(made <= mni);
}

/* ---- msgctl ---- */

CONF_TEST(ctl_unknown_command_is_einval)
{
    int id = q_new(0600);
    CHECK_FAILS(msgctl(id, 12345, NULL), EINVAL);
}

CONF_TEST(ctl_negative_id_or_command_is_einval_for_every_command)
{
    struct msginfo info;
    struct msqid_ds ds;
    int id = q_new(0600);
    CHECK_FAILS(msgctl(-1, IPC_INFO, (struct msqid_ds *) (void *) &info), EINVAL);
    CHECK_FAILS(msgctl(-1, MSG_INFO, (struct msqid_ds *) (void *) &info), EINVAL);
    CHECK_FAILS(msgctl(-1, MSG_STAT, &ds), EINVAL);
    CHECK_FAILS(msgctl(id, -1, &ds), EINVAL);
    CHECK(msgctl(0, IPC_INFO, (struct msqid_ds *) (void *) &info) >= 0);
}

CONF_TEST(ctl_set_uid_or_gid_minus_one_is_einval)
{
    int id = q_new(0600);
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    ds.msg_perm.uid = (uid_t) -1;
    CHECK_FAILS(msgctl(id, IPC_SET, &ds), EINVAL);
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    ds.msg_perm.gid = (gid_t) -1;
    CHECK_FAILS(msgctl(id, IPC_SET, &ds), EINVAL);
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_perm.uid, geteuid());
    CHECK_EQ(ds.msg_perm.gid, getegid());
}

CONF_TEST(ctl_ipc_info_reports_the_kernels_constants)
{
    struct msginfo info;
    CHECK(msgctl(0, IPC_INFO, (struct msqid_ds *) (void *) &info) >= 0);
    CHECK_EQ(info.msgssz, 16);
    CHECK_EQ(info.msgseg, 0xffff);
    CHECK_EQ(info.msgmap, 16384);
    CHECK_EQ(info.msgtql, 16384);
    CHECK_EQ(info.msgpool, 512000);
}

CONF_TEST(ctl_rmid_twice_is_einval)
{
    int id = q_new(0600);
    CHECK(msgctl(id, IPC_RMID, NULL) == 0);
    CHECK_FAILS(msgctl(id, IPC_RMID, NULL), EINVAL);
    CHECK_FAILS(msgctl(-1, IPC_RMID, NULL), EINVAL);
}

CONF_TEST(ctl_rmid_discards_messages)
{
    int id = q_track(msgget(q_key(6), IPC_CREAT | 0600));
    snd(id, 1, "gone");
    CHECK(msgctl(id, IPC_RMID, NULL) == 0);
    int again = q_track(msgget(q_key(6), IPC_CREAT | 0600));
    CHECK_EQ(qnum(again), 0);
}

CONF_TEST(ctl_stat_bad_buffer_is_efault)
{
    int id = q_new(0600);
    CHECK_FAILS(msgctl(id, IPC_STAT, NULL), EFAULT);
    CHECK_FAILS(msgctl(id, IPC_SET, NULL), EFAULT);
}

CONF_TEST(ctl_set_changes_owner_mode_qbytes_and_ctime)
{
    int id = q_new(0600);
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    ds.msg_perm.mode = 0644;
    ds.msg_qbytes = 100;
    CHECK(msgctl(id, IPC_SET, &ds) == 0);
    struct msqid_ds now;
    CHECK(msgctl(id, IPC_STAT, &now) == 0);
    CHECK_EQ(now.msg_perm.mode & 0777, 0644);
    CHECK_EQ(now.msg_qbytes, 100);
    CHECK_EQ(now.msg_perm.cuid, geteuid());
    CHECK(now.msg_ctime >= ds.msg_ctime);
    static struct {
        long mtype;
        char t[60];
    } m = {.mtype = 1};
    CHECK(msgsnd(id, &m, 60, IPC_NOWAIT) == 0);
    CHECK_FAILS(msgsnd(id, &m, 60, IPC_NOWAIT), EAGAIN); /* 120 > 100 */
}

static int sender_of_60(int unused)
{
    (void) unused;
    struct {
        long mtype;
        char t[60];
    } m = {.mtype = 1};
    return msgsnd(g_id, &m, 60, 0) == 0 ? 0 : 1;
}

CONF_TEST(ctl_set_raising_qbytes_wakes_blocked_senders)
{
    g_id = q_new(0600);
    struct msqid_ds ds;
    CHECK(msgctl(g_id, IPC_STAT, &ds) == 0);
    ds.msg_qbytes = 100;
    CHECK(msgctl(g_id, IPC_SET, &ds) == 0);
    CHECK_EQ(wait_status(spawn(sender_of_60, 0)), 0);
    pid_t p = spawn(sender_of_60, 0);
    wait_asleep(p);
    ds.msg_qbytes = 200;
    CHECK(msgctl(g_id, IPC_SET, &ds) == 0);
    CHECK_EQ(wait_status(p), 0);
    CHECK_EQ(qnum(g_id), 2);
}

static int nobody_ctl(int cmd)
{
    become_nobody();
    struct msqid_ds ds;
    memset(&ds, 0, sizeof(ds));
    if (cmd == IPC_SET && msgctl(g_id, IPC_STAT, &ds) != 0)
        return 2;
    int r = msgctl(g_id, cmd, &ds);
    return r == -1 && errno == (cmd == IPC_STAT ? EACCES : EPERM) ? 0 : 1;
}

CONF_TEST(ctl_set_and_rmid_by_a_stranger_are_eperm)
{
    need_root();
    g_id = q_new(0666);
    CHECK_EQ(wait_status(spawn(nobody_ctl, IPC_SET)), 0);
    CHECK_EQ(wait_status(spawn(nobody_ctl, IPC_RMID)), 0);
    CHECK_EQ(qnum(g_id), 0); /* still there */
}

CONF_TEST(ctl_stat_without_read_permission_is_eacces)
{
    need_root();
    g_id = q_new(0600);
    CHECK_EQ(wait_status(spawn(nobody_ctl, IPC_STAT)), 0);
}

static int owner_sets_qbytes(int qbytes)
{
    become_nobody();
    struct msqid_ds ds;
    if (msgctl(g_id, IPC_STAT, &ds) != 0)
        return 2;
    ds.msg_qbytes = (msglen_t) qbytes;
    int r = msgctl(g_id, IPC_SET, &ds);
    if (qbytes > limit_of("msgmnb"))
        return r == -1 && errno == EPERM ? 0 : 1;
    return r == 0 ? 0 : 1;
}

CONF_TEST(ctl_set_qbytes_above_msgmnb_needs_privilege)
{
    need_root();
    g_id = q_new(0600);
    struct msqid_ds ds;
    CHECK(msgctl(g_id, IPC_STAT, &ds) == 0);
    ds.msg_perm.uid = 65534; /* nobody owns it now, root still created it */
    ds.msg_qbytes = 1000;
    CHECK(msgctl(g_id, IPC_SET, &ds) == 0);
    CHECK_EQ(wait_status(spawn(owner_sets_qbytes, (int) limit_of("msgmnb") + 1)), 0);
    CHECK_EQ(wait_status(spawn(owner_sets_qbytes, (int) limit_of("msgmnb"))), 0); /* raise */
    CHECK(msgctl(g_id, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_qbytes, limit_of("msgmnb"));
    CHECK_EQ(ds.msg_perm.uid, 65534);
    CHECK_EQ(ds.msg_perm.cuid, 0);
}

CONF_TEST(ctl_ipc_info_reports_the_limits)
{
    struct msginfo info;
    int r = msgctl(0, IPC_INFO, (struct msqid_ds *) (void *) &info);
    CHECK(r >= 0);
    CHECK_EQ(info.msgmax, limit_of("msgmax"));
    CHECK_EQ(info.msgmnb, limit_of("msgmnb"));
    CHECK_EQ(info.msgmni, limit_of("msgmni"));
    CHECK_EQ(info.msgssz, 16);
}

CONF_TEST(ctl_msg_info_counts_queues_and_messages)
{
    int id = q_new(0600);
    snd(id, 1, "abc");
    snd(id, 1, "de");
    struct msginfo info;
    int maxidx = msgctl(0, MSG_INFO, (struct msqid_ds *) (void *) &info);
    CHECK(maxidx >= 0);
    CHECK(info.msgpool >= 1); /* queues in use */
    CHECK(info.msgmap >= 2);  /* messages queued, all queues */
    CHECK(info.msgtql >= 5);  /* bytes queued, all queues */
}

CONF_TEST(ctl_msg_stat_walks_indexes_to_ids)
{
    int id = q_new(0600);
    snd(id, 1, "x");
    struct msginfo info;
    int maxidx = msgctl(0, MSG_INFO, (struct msqid_ds *) (void *) &info);
    CHECK(maxidx >= 0);
    int found = 0;
    for (int i = 0; i <= maxidx; i++) {
        struct msqid_ds ds;
        int r = msgctl(i, MSG_STAT, &ds);
        if (r == id) {
            found = 1;
            CHECK_EQ(ds.msg_qnum, 1);
            CHECK_EQ(ds.msg_perm.mode & 0777, 0600);
        }
        int any = msgctl(i, MSG_STAT_ANY, &ds);
        CHECK(r < 0 || any == r);
    }
    CHECK(found);
    CHECK_FAILS(msgctl(-1, MSG_STAT, &(struct msqid_ds){0}), EINVAL);
    CHECK_FAILS(msgctl(32767, MSG_STAT, &(struct msqid_ds){0}), EINVAL);
}

static int nobody_stats_index(int idx)
{
    become_nobody();
    struct msqid_ds ds;
    if (!(msgctl(idx, MSG_STAT, &ds) == -1 && errno == EACCES))
        return 1;
    return msgctl(idx, MSG_STAT_ANY, &ds) == g_id ? 0 : 2;
}

CONF_TEST(ctl_msg_stat_any_needs_no_read_permission)
{
    need_root();
    g_id = q_new(0600);
    struct msginfo info;
    int maxidx = msgctl(0, MSG_INFO, (struct msqid_ds *) (void *) &info);
    for (int i = 0; i <= maxidx; i++) {
        struct msqid_ds ds;
        if (msgctl(i, MSG_STAT_ANY, &ds) == g_id) {
            CHECK_EQ(wait_status(spawn(nobody_stats_index, i)), 0);
            return;
        }
    }
    CHECK(!"queue not found by index");
}

/* MSG_STAT and MSG_STAT_ANY take the index from the argument as from an id (the kernel's
 * ipcid_to_idx): any number whose low 15 bits are a queue's slot names that queue, whatever
 * its sequence part, and the call returns the queue's own id. (The kernel's ids often stay
 * below 32768 for long, so the test makes such numbers from the id.) */
CONF_TEST(ctl_msg_stat_takes_a_full_id_as_its_index)
{
    int id = q_new(0600);
    snd(id, 1, "x");
    int idx = id % 32768, seq = id / 32768;
    int args[] = {id, idx, idx + 32768 * (seq == 1 ? 2 : 1), idx + 32768 * ((seq + 7) % 65536)};
    for (unsigned i = 0; i < sizeof(args) / sizeof(args[0]); i++) {
        struct msqid_ds ds;
        memset(&ds, 0, sizeof(ds));
        CHECK_EQ(msgctl(args[i], MSG_STAT, &ds), id);
        CHECK_EQ(ds.msg_qnum, 1);
        memset(&ds, 0, sizeof(ds));
        CHECK_EQ(msgctl(args[i], MSG_STAT_ANY, &ds), id);
        CHECK_EQ(ds.msg_qnum, 1);
    }
}

/* ---- the creator of a queue that keeps everyone out ---- */

#define OTHER_UID 48213 /* a user no account has: only this test's processes run as it */

static void become_other(void)
{
    if (geteuid() != 0)
        SKIP("switching users needs root");
    if (setgroups(0, NULL) != 0 || setresgid(OTHER_UID, OTHER_UID, OTHER_UID) != 0 ||
        setresuid(OTHER_UID, OTHER_UID, OTHER_UID) != 0)
        SKIP("cannot switch to an unused uid");
}

static int ids_pipe[2];

/* As another user: make two queues with mode 0, hand their ids to the parent (which removes
 * them whatever happens), then change one with IPC_SET and remove both with IPC_RMID. */
static int creator_of_mode_0(int unused)
{
    (void) unused;
    become_other();
    int a = msgget(IPC_PRIVATE, IPC_CREAT | 0), b = msgget(IPC_PRIVATE, IPC_CREAT | 0);
    int ids[2] = {a, b};
    if (write(ids_pipe[1], ids, sizeof(ids)) != (ssize_t) sizeof(ids) || a < 0 || b < 0)
        return 2;
    struct msqid_ds ds;
    struct text_msg m = {.mtype = 1};
    /* Mode 0 keeps the owner out of the queue's contents... */
    CHECK_FAILS(msgctl(a, IPC_STAT, &ds), EACCES);
    CHECK_FAILS(msgsnd(a, &m, 1, IPC_NOWAIT), EACCES);
    /* ...but not out of changing it. */
    memset(&ds, 0, sizeof(ds));
    ds.msg_perm.uid = OTHER_UID;
    ds.msg_perm.gid = OTHER_UID;
    ds.msg_perm.mode = 0600;
    ds.msg_qbytes = 1024;
    CHECK(msgctl(a, IPC_SET, &ds) == 0);
    CHECK(msgsnd(a, &m, 1, IPC_NOWAIT) == 0);
    memset(&ds, 0, sizeof(ds));
    CHECK(msgctl(a, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_perm.mode & 0777, 0600);
    CHECK_EQ(ds.msg_qbytes, 1024);
    CHECK_EQ(ds.msg_qnum, 1);
    ds.msg_perm.mode = 0;
    CHECK(msgctl(a, IPC_SET, &ds) == 0);
    CHECK_FAILS(msgctl(a, IPC_STAT, &ds), EACCES);
    /* Removing: the creator (and owner) may, mode 0 or not. */
    CHECK(msgctl(a, IPC_RMID, NULL) == 0);
    CHECK(msgctl(b, IPC_RMID, NULL) == 0);
    CHECK_FAILS(msgctl(a, IPC_RMID, NULL), EINVAL);
    CHECK_FAILS(msgctl(b, IPC_STAT, &ds), EINVAL);
    return 0;
}

CONF_TEST(ctl_set_and_rmid_by_the_creator_of_a_mode_0_queue)
{
    need_root();
    CHECK(pipe(ids_pipe) == 0);
    pid_t p = spawn(creator_of_mode_0, 0);
    close(ids_pipe[1]);
    int ids[2];
    ssize_t n = read(ids_pipe[0], ids, sizeof(ids));
    int st = wait_status(p);
    if (n == (ssize_t) sizeof(ids)) { /* removed by root if the child failed before */
        q_track(ids[0]);
        q_track(ids[1]);
    }
    CHECK_EQ(st, 0);
    CHECK_EQ(n, (long) sizeof(ids));
}

/* ---- IPC namespaces ---- */

/* As the kernel: a process in another IPC namespace (unshare(CLONE_NEWIPC), as `unshare -i`
 * does, or clone(CLONE_NEWIPC)) does not see the queues of its parent's namespace, and a
 * plain child does. The parent has used its queue before (its id, its key), so a process
 * that changed namespace must not go on finding the queue it knew. */
enum { NS_NONE, NS_UNSHARE, NS_CLONE };

static key_t ns_key;
static int ns_id;

/* In the child: 0 if the parent's queue is visible exactly when it should be. */
static int ns_child_looks(int how)
{
    if (how == NS_UNSHARE && unshare(CLONE_NEWIPC) != 0)
        return errno == EPERM ? 77 : 3;
    int id = msgget(ns_key, 0);
    struct text_msg m;
    if (how == NS_NONE) /* the parent's queue and its message */
        return id == ns_id && msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT | MSG_COPY) == 4 ? 0
                                                                                             : 1;
    if (!(id == -1 && errno == ENOENT))
        return 1;
    /* The parent's id names nothing here... */
    memset(&m, 0, sizeof(m));
    m.mtype = 1;
    if (!(msgsnd(ns_id, &m, 1, IPC_NOWAIT) == -1 && errno == EINVAL))
        return 2;
    struct msqid_ds ds;
    if (!(msgctl(ns_id, IPC_STAT, &ds) == -1 && errno == EINVAL))
        return 4;
    /* ...and the key makes a queue of this namespace's own, which the child removes. */
    id = msgget(ns_key, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0)
        return 5;
    int empty = msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT) == -1 && errno == ENOMSG;
    return msgctl(id, IPC_RMID, NULL) == 0 && empty ? 0 : 6;
}

static int ns_clone_fn(void *arg)
{
    (void) arg;
    return ns_child_looks(NS_CLONE);
}

static int ns_run(int how)
{
    fflush(NULL);
    if (how != NS_CLONE)
        return wait_status(spawn(ns_child_looks, how));
    size_t size = 256 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(stack != MAP_FAILED);
    pid_t p = clone(ns_clone_fn, stack + size, CLONE_NEWIPC | SIGCHLD, NULL);
    if (p < 0 && errno == EPERM)
        return 77;
    CHECK(p > 0);
    int st = wait_status(p);
    munmap(stack, size);
    return st;
}

CONF_TEST(ns_a_new_ipc_namespace_does_not_see_the_parents_queue)
{
    ns_key = q_key(9);
    ns_id = q_track(msgget(ns_key, IPC_CREAT | IPC_EXCL | 0600));
    CHECK(ns_id >= 0);
    snd(ns_id, 3, "mine");
    CHECK_EQ(ns_run(NS_NONE), 0);
    int st = ns_run(NS_UNSHARE);
    if (st == 77)
        SKIP("unshare(CLONE_NEWIPC) not permitted here (needs CAP_SYS_ADMIN)");
    CHECK_EQ(st, 0);
    st = ns_run(NS_CLONE);
    if (st == 77)
        SKIP("clone(CLONE_NEWIPC) not permitted here (needs CAP_SYS_ADMIN)");
    CHECK_EQ(st, 0);
    /* The parent's queue is untouched by what the children did under its key. */
    CHECK_EQ(msgget(ns_key, 0), ns_id);
    rcv_expect(ns_id, 0, 0, 3, "mine");
}

/* Two processes, each in a namespace of its own, use the same key: each gets a queue of its
 * own and reads back only its own message, while the parent's queue under that key stays
 * empty. A pipe orders them: the second sends only after the first has sent. */
static int ns_pipe[2];

static int ns_peer(int n)
{
    if (unshare(CLONE_NEWIPC) != 0)
        return errno == EPERM ? 77 : 3;
    int id = msgget(ns_key, IPC_CREAT | 0600);
    if (id < 0)
        return 4;
    char c = 0;
    if (n == 1 && read(ns_pipe[0], &c, 1) != 1)
        return 5;
    struct text_msg m = {.mtype = 10 + n};
    memcpy(m.mtext, n ? "peer1" : "peer0", 5);
    int ok = msgsnd(id, &m, 5, IPC_NOWAIT) == 0;
    if (n == 0 && write(ns_pipe[1], "g", 1) != 1)
        ok = 0;
    memset(&m, 0, sizeof(m));
    ok = ok && msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT) == 5 && m.mtype == 10 + n &&
         memcmp(m.mtext, n ? "peer1" : "peer0", 5) == 0;
    ok = ok && msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT) == -1 && errno == ENOMSG;
    return msgctl(id, IPC_RMID, NULL) == 0 && ok ? 0 : 1;
}

CONF_TEST(ns_the_same_key_names_separate_queues_in_separate_namespaces)
{
    ns_key = q_key(10);
    ns_id = q_track(msgget(ns_key, IPC_CREAT | IPC_EXCL | 0600));
    CHECK(ns_id >= 0);
    CHECK(pipe(ns_pipe) == 0);
    pid_t a = spawn(ns_peer, 0), b = spawn(ns_peer, 1);
    int sa = wait_status(a), sb = wait_status(b);
    if (sa == 77 || sb == 77)
        SKIP("unshare(CLONE_NEWIPC) not permitted here (needs CAP_SYS_ADMIN)");
    CHECK_EQ(sa, 0);
    CHECK_EQ(sb, 0);
    CHECK_EQ(qnum(ns_id), 0);
}

/* Helpers run through exec: a fresh process that knows only an id or a key. */
__attribute__((constructor)) static void helper_main(void)
{
    char buf[64];
    FILE *f = fopen("/proc/self/cmdline", "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    const char *arg1 = buf + strlen(buf) + 1;
    if (arg1 >= buf + n || strncmp(arg1, "--receive", 9) != 0)
        return;
    const char *arg2 = arg1 + strlen(arg1) + 1;
    int id = atoi(arg2);
    if (strcmp(arg1, "--receive-key") == 0)
        id = msgget((key_t) atoi(arg2), 0);
    struct text_msg m;
    ssize_t r = msgrcv(id, &m, sizeof(m.mtext), 7, IPC_NOWAIT);
    _exit(r == 10 && memcmp(m.mtext, "over there", 10) == 0 ? 0 : 1);
}
