/*
 * sv_stream.c — a plain System V stream, run as it is with and without libpostbox-sysv.so
 * preloaded (run.sh). Usage: sv_stream COUNT SIZE.
 *
 * The parent sends COUNT messages of SIZE bytes as fast as it can; the child receives them
 * and checks their order. The queue keeps the kernel's default capacity (msg_qbytes =
 * msgmnb), so both sides have the same depth: msgmnb / SIZE messages, at most msgmnb. Prints
 * "stream size=SIZE count=N msgs_per_s=X depth=D".
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct message {
    long mtype;
    char mtext[8192];
};

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
        sched_setaffinity(0, sizeof(set), &set); /* best effort */
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + (double) t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 100000;
    size_t size = argc > 2 ? (size_t) atol(argv[2]) : 16;
    if (count < 1 || size < sizeof(long) || size > sizeof(((struct message *) 0)->mtext)) {
        fprintf(stderr, "usage: sv_stream COUNT SIZE(8..8192)\n");
        return 2;
    }
    int id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    struct msqid_ds ds;
    if (id < 0 || msgctl(id, IPC_STAT, &ds) != 0) {
        perror("msgget");
        return 1;
    }
    long depth = (long) ds.msg_qbytes / (long) (size ? size : 1);
    if (depth > (long) ds.msg_qbytes)
        depth = (long) ds.msg_qbytes;
    static struct message m;
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        for (long i = 0; i < count; i++) {
            long seq;
            if (msgrcv(id, &m, size, 0, 0) != (ssize_t) size)
                _exit(1);
            memcpy(&seq, m.mtext, sizeof(seq));
            if (seq != i)
                _exit(2);
        }
        _exit(0);
    }
    pin(0);
    memset(m.mtext, 's', size);
    m.mtype = 1;
    double t0 = now();
    for (long i = 0; i < count; i++) {
        memcpy(m.mtext, &i, sizeof(i));
        if (msgsnd(id, &m, size, 0) != 0) {
            perror("msgsnd");
            msgctl(id, IPC_RMID, NULL);
            return 1;
        }
    }
    int st = 1;
    waitpid(child, &st, 0);
    double t1 = now();
    msgctl(id, IPC_RMID, NULL);
    if (st != 0) {
        fprintf(stderr, "receiver failed (status %d)\n", st);
        return 1;
    }
    printf("stream size=%zu count=%ld msgs_per_s=%.0f depth=%ld\n", size, count,
           (double) count / (t1 - t0), depth);
    return 0;
}
