/*
 * sv_pingpong.c — a plain System V ping-pong, run as it is with and without
 * libpostbox-sysv.so preloaded (run.sh). Usage: sv_pingpong ROUNDS SIZE.
 *
 * The parent sends a message of type 1, the child answers with type 2, ROUNDS times, on one
 * IPC_PRIVATE queue. Each process is pinned to its own CPU when there are two, as the rest of
 * bench/ measures. Prints one line: "pingpong size=SIZE rounds=N us_per_round_trip=X".
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
    long rounds = argc > 1 ? atol(argv[1]) : 10000;
    size_t size = argc > 2 ? (size_t) atol(argv[2]) : 16;
    if (rounds < 1 || size > sizeof(((struct message *) 0)->mtext)) {
        fprintf(stderr, "usage: sv_pingpong ROUNDS SIZE(<=8192)\n");
        return 2;
    }
    int id = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (id < 0) {
        perror("msgget");
        return 1;
    }
    static struct message m;
    pid_t child = fork();
    if (child == 0) {
        pin(1);
        for (long i = 0; i < rounds; i++) {
            if (msgrcv(id, &m, size, 1, 0) != (ssize_t) size)
                _exit(1);
            m.mtype = 2;
            if (msgsnd(id, &m, size, 0) != 0)
                _exit(1);
        }
        _exit(0);
    }
    pin(0);
    memset(m.mtext, 'p', size);
    double t0 = now();
    for (long i = 0; i < rounds; i++) {
        m.mtype = 1;
        if (msgsnd(id, &m, size, 0) != 0 || msgrcv(id, &m, size, 2, 0) != (ssize_t) size) {
            perror("ping");
            msgctl(id, IPC_RMID, NULL);
            return 1;
        }
    }
    double t1 = now();
    int st = 1;
    waitpid(child, &st, 0);
    msgctl(id, IPC_RMID, NULL);
    if (st != 0) {
        fprintf(stderr, "pong failed\n");
        return 1;
    }
    printf("pingpong size=%zu rounds=%ld us_per_round_trip=%.3f\n", size, rounds,
           (t1 - t0) * 1e6 / (double) rounds);
    return 0;
}
