/*
 * conf_queue.c — msgget(2) and msgctl(2), one test per rule and error of the man pages,
 * run against the kernel and against libpostbox-sysv.so (conf.h). Plain System V code.
 */
#include "conf.h"

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
