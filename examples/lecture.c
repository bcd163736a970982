/*
 * lecture.c — the last program of the lecture on message passing, done with postbox.
 *
 * In the lecture, a parent creates a System V queue with msgget(IPC_PRIVATE) and forks. The
 * parent sends a message of type 42 carrying the number 252. The child receives type 42,
 * prints "Received 252!" and deletes the queue with msgctl(IPC_RMID). Here pbx_open_private()
 * stands in for msgget(IPC_PRIVATE): the mailbox has no name, so only this process and the
 * children it forks afterwards can reach it. pbx_remove() stands in for IPC_RMID. postbox
 * passes the type as an argument instead of in the first long of the buffer, so the message
 * is just the int.
 *
 * Unlike the slide, this version checks every call. The parent also waits for its child, so
 * the shell prompt does not come back before the child has printed its line. At the end, the
 * parent shows that the removal took effect: its next send fails with -EIDRM.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "postbox.h"

#define LECTURE_TYPE 42
#define LECTURE_DATA 252

static void report_error(const char *who, const char *what, long err)
{
    fprintf(stderr, "example_lecture: %s: %s: %s\n", who, what, pbx_strerror((int) err));
}

/* The child's half of the slide. It returns the child's exit status. */
static int child_main(pbx_t *q)
{
    int data = 0;
    long type = 0;
    ssize_t n = pbx_recv(q, LECTURE_TYPE, &data, sizeof(data), 0, &type);
    if (n < 0) {
        report_error("child", "receive type 42", n);
        return EXIT_FAILURE;
    }
    if (n != (ssize_t) sizeof(data)) {
        fprintf(stderr, "example_lecture: child: expected %zu bytes, got %zd\n", sizeof(data), n);
        return EXIT_FAILURE;
    }
    printf("Received %d!\n", data);

    /* Removing the mailbox is the child's job, as on the slide. The parent may still hold
     * its handle, but from now on every call through that handle gets -EIDRM. */
    int err = pbx_remove(q);
    if (err) {
        report_error("child", "remove the mailbox", err);
        return EXIT_FAILURE;
    }
    printf("child: removed the mailbox (as msgctl(IPC_RMID) would)\n");
    return EXIT_SUCCESS;
}

/* waitpid() that tolerates signals. It returns 1 if the child exited with status 0. */
static int child_succeeded(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "example_lecture: parent: waitpid: %s\n", strerror(errno));
            return 0;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    if (WIFSIGNALED(status))
        fprintf(stderr, "example_lecture: parent: the child was killed by signal %d\n",
                WTERMSIG(status));
    else
        fprintf(stderr, "example_lecture: parent: the child failed (exit status %d)\n",
                WEXITSTATUS(status));
    return 0;
}

int main(void)
{
    pbx_t *q;
    int err = pbx_open_private(NULL, &q);
    if (err) {
        report_error("parent", "create a private mailbox", err);
        return EXIT_FAILURE;
    }
    printf("parent: created a private mailbox, forking a child\n");
    /* Flush before fork(); otherwise the child inherits the buffered line and prints it a
     * second time when it exits. */
    fflush(stdout);

    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "example_lecture: parent: fork: %s\n", strerror(errno));
        pbx_close(q);
        return EXIT_FAILURE;
    }
    if (pid == 0) {
        int status = child_main(q);
        pbx_close(q);
        exit(status);
    }

    int ok = 1;
    int data = LECTURE_DATA;
    /* Print before sending. The child cannot receive the message before it is sent, so this
     * line always comes before the child's line. */
    printf("parent: sending type %d carrying %d\n", LECTURE_TYPE, data);
    fflush(stdout);
    err = pbx_send(q, LECTURE_TYPE, &data, sizeof(data), 0);
    if (err) {
        report_error("parent", "send type 42", err);
        /* The child is asleep waiting for type 42. Removing the mailbox wakes it with
         * -EIDRM, so the waitpid() below does not hang. */
        pbx_remove(q);
        ok = 0;
    }

    if (!child_succeeded(pid)) {
        ok = 0;
        pbx_remove(q); /* in case the child failed before removing it */
    }

    if (ok) {
        err = pbx_send(q, LECTURE_TYPE, &data, sizeof(data), PBX_NOWAIT);
        printf("parent: the child is done; sending again fails: %s\n", pbx_strerror(err));
        if (err != -EIDRM) {
            fprintf(stderr, "example_lecture: parent: expected -EIDRM after the removal\n");
            ok = 0;
        }
    }
    pbx_close(q);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
