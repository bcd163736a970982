/*
 * conf_msg.c — msgsnd(2) and msgrcv(2), one test per rule and error of the man page
 * (msgop(2)), written against the documented behaviour and run against the kernel and
 * against libpostbox-sysv.so (conf.h). Plain System V code: no postbox header.
 */
#include "conf.h"

/* ---- msgsnd ---- */

CONF_TEST(snd_type_below_one_is_einval)
{
    int id = q_new(0600);
    struct text_msg m = {.mtype = 0};
    CHECK_FAILS(msgsnd(id, &m, 4, 0), EINVAL);
    m.mtype = -5;
    CHECK_FAILS(msgsnd(id, &m, 4, IPC_NOWAIT), EINVAL);
    CHECK_EQ(qnum(id), 0);
}

CONF_TEST(snd_size_over_msgmax_is_einval)
{
    int id = q_new(0600);
    long max = limit_of("msgmax");
    char *buf = calloc(1, sizeof(long) + (size_t) max + 1);
    CHECK(buf);
    *(long *) buf = 1;
    CHECK_FAILS(msgsnd(id, buf, (size_t) max + 1, IPC_NOWAIT), EINVAL);
    CHECK(msgsnd(id, buf, (size_t) max, IPC_NOWAIT) == 0); /* exactly msgmax is fine */
    free(buf);
}

CONF_TEST(snd_negative_size_is_einval)
{
    int id = q_new(0600);
    struct text_msg m = {.mtype = 1};
    CHECK_FAILS(msgsnd(id, &m, (size_t) -1, 0), EINVAL);
}

CONF_TEST(snd_bad_id_is_einval)
{
    struct text_msg m = {.mtype = 1};
    CHECK_FAILS(msgsnd(-1, &m, 1, 0), EINVAL);
    int id = q_new(0600);
    CHECK(msgctl(id, IPC_RMID, NULL) == 0);
    CHECK_FAILS(msgsnd(id, &m, 1, 0), EINVAL); /* a removed queue's id */
}

CONF_TEST(snd_nowait_on_full_queue_is_eagain)
{
    int id = q_new(0600);
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    static struct {
        long mtype;
        char t[1024];
    } m = {.mtype = 1};
    long sent = 0;
    while (msgsnd(id, &m, sizeof(m.t), IPC_NOWAIT) == 0)
        sent++;
    CHECK_EQ(errno, EAGAIN);
    CHECK_EQ(sent, (long) ds.msg_qbytes / 1024); /* msg_qbytes bounds the bytes queued */
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.__msg_cbytes, sent * 1024);
    CHECK_EQ(ds.msg_qnum, sent);
}

CONF_TEST(snd_qbytes_bounds_the_number_of_messages_too)
{
    int id = q_new(0600);
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    ds.msg_qbytes = 10;
    CHECK(msgctl(id, IPC_SET, &ds) == 0);
    struct text_msg m = {.mtype = 1};
    for (int i = 0; i < 10; i++)
        CHECK(msgsnd(id, &m, 0, IPC_NOWAIT) == 0);
    CHECK_FAILS(msgsnd(id, &m, 0, IPC_NOWAIT), EAGAIN);
    CHECK_EQ(qnum(id), 10);
}

CONF_TEST(snd_bad_buffer_is_efault)
{
    int id = q_new(0600);
    CHECK_FAILS(msgsnd(id, NULL, 4, 0), EFAULT);
    long page = sysconf(_SC_PAGESIZE);
    char *p =
        mmap(NULL, (size_t) page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    CHECK(munmap(p + page, (size_t) page) == 0);
    long *m = (long *) (p + page - sizeof(long)); /* mtype readable, mtext not */
    *m = 1;
    CHECK_FAILS(msgsnd(id, m, 16, 0), EFAULT);
    CHECK_EQ(qnum(id), 0);
    munmap(p, (size_t) page);
}

static int g_id;

static int fill(int id)
{
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    ds.msg_qbytes = 64;
    CHECK(msgctl(id, IPC_SET, &ds) == 0);
    struct text_msg m = {.mtype = 1};
    CHECK(msgsnd(id, &m, 64, IPC_NOWAIT) == 0);
    return 0;
}

static int blocked_sender(int expect)
{
    struct text_msg m = {.mtype = 2};
    int r = msgsnd(g_id, &m, 8, 0);
    if (expect == 0)
        return r == 0 ? 0 : 10 + errno;
    return r == -1 && errno == expect ? 0 : 10 + (r == 0 ? 0 : errno);
}

CONF_TEST(snd_blocks_asleep_until_room)
{
    g_id = q_new(0600);
    fill(g_id);
    pid_t p = spawn(blocked_sender, 0);
    wait_asleep(p);
    CHECK_EQ(qnum(g_id), 1);
    struct text_msg m;
    CHECK_EQ(msgrcv(g_id, &m, sizeof(m.mtext), 1, IPC_NOWAIT), 64);
    CHECK_EQ(wait_status(p), 0);
    CHECK_EQ(qnum(g_id), 1);
}

CONF_TEST(snd_blocked_gets_eidrm_when_queue_removed)
{
    g_id = q_new(0600);
    fill(g_id);
    pid_t p = spawn(blocked_sender, EIDRM);
    wait_asleep(p);
    CHECK(msgctl(g_id, IPC_RMID, NULL) == 0);
    CHECK_EQ(wait_status(p), 0);
}

static int sender_with_signal(int use_sigaction_restart)
{
    if (use_sigaction_restart) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = conf_on_signal;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGUSR1, &sa, NULL);
    } else {
        signal(SIGUSR1, conf_on_signal); /* glibc: BSD semantics, SA_RESTART */
    }
    struct text_msg m = {.mtype = 2};
    int r = msgsnd(g_id, &m, 8, 0);
    return r == -1 && errno == EINTR && conf_caught ? 0 : 1;
}

CONF_TEST(snd_blocked_gets_eintr_even_with_sa_restart)
{
    g_id = q_new(0600);
    fill(g_id);
    pid_t p = spawn(sender_with_signal, 0);
    wait_asleep(p);
    CHECK(kill(p, SIGUSR1) == 0);
    CHECK_EQ(wait_status(p), 0);
    p = spawn(sender_with_signal, 1);
    wait_asleep(p);
    CHECK(kill(p, SIGUSR1) == 0);
    CHECK_EQ(wait_status(p), 0);
    CHECK_EQ(qnum(g_id), 1);
}

static int nobody_sends(int expect_errno)
{
    become_nobody();
    struct text_msg m = {.mtype = 1};
    int r = msgsnd(g_id, &m, 1, IPC_NOWAIT);
    return expect_errno ? !(r == -1 && errno == expect_errno) : r != 0;
}

CONF_TEST(snd_without_write_permission_is_eacces)
{
    need_root();
    g_id = q_new(0644); /* others may read, not write */
    CHECK_EQ(wait_status(spawn(nobody_sends, EACCES)), 0);
    struct msqid_ds ds;
    CHECK(msgctl(g_id, IPC_STAT, &ds) == 0);
    ds.msg_perm.mode = 0622;
    CHECK(msgctl(g_id, IPC_SET, &ds) == 0);
    CHECK_EQ(wait_status(spawn(nobody_sends, 0)), 0);
    CHECK_EQ(qnum(g_id), 1);
}

CONF_TEST(snd_sets_stime_lspid_qnum_cbytes)
{
    int id = q_new(0600);
    time_t before = time(NULL);
    snd(id, 3, "hello");
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_qnum, 1);
    CHECK_EQ(ds.__msg_cbytes, 5);
    CHECK_EQ(ds.msg_lspid, getpid());
    CHECK_EQ(ds.msg_lrpid, 0);
    CHECK(ds.msg_stime >= before - 1 && ds.msg_stime <= time(NULL) + 1);
    CHECK_EQ(ds.msg_rtime, 0);
}

/* ---- msgrcv ---- */

static int three_types(void)
{
    int id = q_new(0600);
    snd(id, 5, "a5");
    snd(id, 2, "b2");
    snd(id, 7, "c7");
    snd(id, 2, "d2");
    snd(id, 1, "e1");
    return id;
}

CONF_TEST(rcv_type_zero_takes_the_oldest)
{
    int id = three_types();
    rcv_expect(id, 0, 0, 5, "a5");
    rcv_expect(id, 0, 0, 2, "b2");
    rcv_expect(id, 0, 0, 7, "c7");
}

CONF_TEST(rcv_positive_type_takes_oldest_of_that_type)
{
    int id = three_types();
    rcv_expect(id, 2, 0, 2, "b2");
    rcv_expect(id, 2, 0, 2, "d2");
    CHECK_FAILS(msgrcv(id, &(struct text_msg){0}, 256, 2, IPC_NOWAIT), ENOMSG);
    CHECK_EQ(qnum(id), 3);
}

CONF_TEST(rcv_negative_type_takes_lowest_type_up_to_abs)
{
    int id = three_types();
    rcv_expect(id, -6, 0, 1, "e1");
    rcv_expect(id, -6, 0, 2, "b2");
    rcv_expect(id, -6, 0, 2, "d2");
    rcv_expect(id, -6, 0, 5, "a5");
    CHECK_FAILS(msgrcv(id, &(struct text_msg){0}, 256, -6, IPC_NOWAIT), ENOMSG);
    rcv_expect(id, -7, 0, 7, "c7");
}

CONF_TEST(rcv_except_takes_oldest_of_other_types)
{
    int id = three_types();
    rcv_expect(id, 5, MSG_EXCEPT, 2, "b2");
    rcv_expect(id, 2, MSG_EXCEPT, 5, "a5");
    rcv_expect(id, 2, MSG_EXCEPT, 7, "c7");
    rcv_expect(id, 2, MSG_EXCEPT, 1, "e1");
    CHECK_FAILS(msgrcv(id, &(struct text_msg){0}, 256, 2, MSG_EXCEPT | IPC_NOWAIT), ENOMSG);
}

CONF_TEST(rcv_except_is_ignored_for_type_zero_and_negative)
{
    int id = three_types();
    rcv_expect(id, 0, MSG_EXCEPT, 5, "a5");
    rcv_expect(id, -3, MSG_EXCEPT, 1, "e1");
}

CONF_TEST(rcv_too_long_is_e2big_and_stays_queued)
{
    int id = q_new(0600);
    snd(id, 1, "0123456789");
    struct text_msg m;
    CHECK_FAILS(msgrcv(id, &m, 4, 0, IPC_NOWAIT), E2BIG);
    CHECK_EQ(qnum(id), 1);
    rcv_expect(id, 0, 0, 1, "0123456789");
}

CONF_TEST(rcv_noerror_truncates_and_removes)
{
    int id = q_new(0600);
    snd(id, 4, "0123456789");
    struct text_msg m;
    memset(&m, 0, sizeof(m));
    CHECK_EQ(msgrcv(id, &m, 4, 0, IPC_NOWAIT | MSG_NOERROR), 4);
    CHECK_EQ(m.mtype, 4);
    CHECK(memcmp(m.mtext, "0123", 4) == 0);
    CHECK_EQ(qnum(id), 0);
}

CONF_TEST(rcv_nowait_with_nothing_is_enomsg)
{
    int id = q_new(0600);
    struct text_msg m;
    CHECK_FAILS(msgrcv(id, &m, 256, 0, IPC_NOWAIT), ENOMSG);
    snd(id, 3, "x");
    CHECK_FAILS(msgrcv(id, &m, 256, 4, IPC_NOWAIT), ENOMSG);
    CHECK_FAILS(msgrcv(id, &m, 256, -2, IPC_NOWAIT), ENOMSG);
}

CONF_TEST(rcv_copy_copies_nth_message_and_leaves_it)
{
    int id = three_types();
    struct text_msg m;
    errno = 0;
    if (msgrcv(id, &m, 256, 0, MSG_COPY | IPC_NOWAIT) < 0 && errno == ENOSYS)
        SKIP("kernel without CONFIG_CHECKPOINT_RESTORE");
    rcv_expect(id, 0, MSG_COPY, 5, "a5");
    rcv_expect(id, 2, MSG_COPY, 7, "c7");
    rcv_expect(id, 4, MSG_COPY, 1, "e1");
    CHECK_FAILS(msgrcv(id, &m, 256, 5, MSG_COPY | IPC_NOWAIT), ENOMSG);
    CHECK_EQ(qnum(id), 5);
    CHECK_FAILS(msgrcv(id, &m, 1, 0, MSG_COPY | IPC_NOWAIT), E2BIG);
}

CONF_TEST(rcv_copy_needs_nowait_and_refuses_except)
{
    int id = three_types();
    struct text_msg m;
    CHECK_FAILS(msgrcv(id, &m, 256, 0, MSG_COPY), EINVAL);
    CHECK_FAILS(msgrcv(id, &m, 256, 0, MSG_COPY | IPC_NOWAIT | MSG_EXCEPT), EINVAL);
}

CONF_TEST(rcv_bad_id_or_negative_size_is_einval)
{
    struct text_msg m;
    CHECK_FAILS(msgrcv(-1, &m, 16, 0, IPC_NOWAIT), EINVAL);
    int id = q_new(0600);
    CHECK_FAILS(msgrcv(id, &m, (size_t) -1, 0, IPC_NOWAIT), EINVAL);
    CHECK(msgctl(id, IPC_RMID, NULL) == 0);
    CHECK_FAILS(msgrcv(id, &m, 16, 0, IPC_NOWAIT), EINVAL);
}

CONF_TEST(rcv_bad_buffer_is_efault)
{
    int id = q_new(0600);
    snd(id, 1, "abc"); /* the kernel loses a message it cannot copy out: two of them */
    snd(id, 1, "def");
    CHECK_FAILS(msgrcv(id, NULL, 16, 0, IPC_NOWAIT), EFAULT);
    const long *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED);
    CHECK_FAILS(msgrcv(id, (void *) ro, 16, 0, IPC_NOWAIT), EFAULT);
}

static int blocked_receiver(int expect)
{
    struct text_msg m;
    ssize_t r = msgrcv(g_id, &m, sizeof(m.mtext), 9, 0);
    if (expect == 0)
        return r == 3 && m.mtype == 9 && memcmp(m.mtext, "hey", 3) == 0 ? 0 : 1;
    return r == -1 && errno == expect ? 0 : 10 + (r < 0 ? errno : 0);
}

CONF_TEST(rcv_blocks_asleep_until_a_match_arrives)
{
    g_id = q_new(0600);
    pid_t p = spawn(blocked_receiver, 0);
    wait_asleep(p);
    snd(g_id, 1, "not this one");
    wait_asleep(p);
    snd(g_id, 9, "hey");
    CHECK_EQ(wait_status(p), 0);
    CHECK_EQ(qnum(g_id), 1);
}

CONF_TEST(rcv_blocked_gets_eidrm_when_queue_removed)
{
    g_id = q_new(0600);
    pid_t p = spawn(blocked_receiver, EIDRM);
    wait_asleep(p);
    CHECK(msgctl(g_id, IPC_RMID, NULL) == 0);
    CHECK_EQ(wait_status(p), 0);
}

static int receiver_with_signal(int unused)
{
    (void) unused;
    signal(SIGUSR1, conf_on_signal); /* SA_RESTART, as glibc's signal() installs it */
    struct text_msg m;
    ssize_t r = msgrcv(g_id, &m, sizeof(m.mtext), 0, 0);
    return r == -1 && errno == EINTR && conf_caught ? 0 : 1;
}

CONF_TEST(rcv_blocked_gets_eintr_even_with_sa_restart)
{
    g_id = q_new(0600);
    pid_t p = spawn(receiver_with_signal, 0);
    wait_asleep(p);
    CHECK(kill(p, SIGUSR1) == 0);
    CHECK_EQ(wait_status(p), 0);
}

static int nobody_receives(int expect_errno)
{
    become_nobody();
    struct text_msg m;
    ssize_t r = msgrcv(g_id, &m, sizeof(m.mtext), 0, IPC_NOWAIT);
    return expect_errno ? !(r == -1 && errno == expect_errno) : r < 0;
}

CONF_TEST(rcv_without_read_permission_is_eacces)
{
    need_root();
    g_id = q_new(0622); /* others may write, not read */
    snd(g_id, 1, "x");
    CHECK_EQ(wait_status(spawn(nobody_receives, EACCES)), 0);
    CHECK_EQ(wait_status(spawn(nobody_sends, 0)), 0);
    CHECK_EQ(qnum(g_id), 2);
}

CONF_TEST(rcv_sets_rtime_lrpid)
{
    int id = q_new(0600);
    snd(id, 1, "x");
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        struct text_msg m;
        _exit(msgrcv(id, &m, sizeof(m.mtext), 0, IPC_NOWAIT) == 1 ? 0 : 1);
    }
    CHECK_EQ(wait_status(p), 0);
    struct msqid_ds ds;
    CHECK(msgctl(id, IPC_STAT, &ds) == 0);
    CHECK_EQ(ds.msg_lrpid, p);
    CHECK_EQ(ds.msg_lspid, getpid());
    CHECK(ds.msg_rtime >= time(NULL) - 2);
    CHECK_EQ(ds.msg_qnum, 0);
    CHECK_EQ(ds.__msg_cbytes, 0);
}

CONF_TEST(msg_order_per_type_across_processes)
{
    int id = q_new(0600);
    pid_t p = fork();
    CHECK(p >= 0);
    if (p == 0) {
        struct {
            long mtype;
            int n;
        } m;
        for (int i = 0; i < 2000; i++) {
            m.mtype = 1 + i % 3;
            m.n = i;
            if (msgsnd(id, &m, sizeof(int), 0) != 0)
                _exit(1);
        }
        _exit(0);
    }
    int last[4] = {-1, -1, -1, -1};
    for (int i = 0; i < 2000; i++) {
        struct {
            long mtype;
            int n;
        } m;
        CHECK_EQ(msgrcv(id, &m, sizeof(int), -3, 0), (long) sizeof(int));
        CHECK(m.n > last[m.mtype]);
        last[m.mtype] = m.n;
    }
    CHECK_EQ(wait_status(p), 0);
}

#include <pthread.h>

static void *thread_receiver(void *arg)
{
    struct text_msg m;
    ssize_t r = msgrcv(*(int *) arg, &m, sizeof(m.mtext), 0, 0);
    return (void *) (long) (r == -1 && errno == EIDRM);
}

CONF_TEST(rcv_blocked_threads_all_get_eidrm_on_removal)
{
    static int id;
    id = q_new(0600);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, thread_receiver, &id) == 0);
    usleep(200000); /* let them block */
    CHECK(msgctl(id, IPC_RMID, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        void *ok;
        CHECK(pthread_join(t[i], &ok) == 0);
        CHECK(ok == (void *) 1L);
    }
    struct text_msg m = {.mtype = 1};
    CHECK_FAILS(msgsnd(id, &m, 1, IPC_NOWAIT), EINVAL);
}
