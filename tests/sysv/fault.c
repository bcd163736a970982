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

__attribute__((unused)) static int mailbox_file_exists(key_t key)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/pbx.sysv.0x%08x", dir(), (unsigned) key);
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
