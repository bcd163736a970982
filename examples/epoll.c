/*
 * epoll.c — one event loop serving a socket and a mailbox together.
 *
 * A server often has several kinds of input: a network socket, a pipe, a timer — and now a
 * mailbox. Blocking in pbx_recv() would leave the socket unserved, and polling both with
 * PBX_NOWAIT in a loop burns a CPU. pbx_fd() gives the mailbox a descriptor that epoll (or
 * poll, or select) reports readable while a message is waiting, so one epoll_wait() sleeps on
 * everything at once.
 *
 * The descriptor is level-triggered: as long as a message is there it stays readable, so the
 * loop may take one message per wake-up or all of them; here it drains with PBX_NOWAIT and goes
 * back to epoll_wait(). -ENOMSG after a wake-up is normal (another receiver may have been
 * faster). The descriptor belongs to the handle; pbx_close() closes it.
 *
 * A child plays the outside world: it writes lines to one end of a socket pair and sends
 * messages to the mailbox "epoll", interleaved. The loop ends when it has had both the
 * socket's end-of-file and the mailbox's "bye".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"

#define ROUNDS 5

static int outside_world(int sock)
{
    pbx_t *q;
    if (pbx_open("epoll", 0, NULL, &q) < 0)
        return 1;
    for (int i = 1; i <= ROUNDS; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "socket line %d\n", i);
        if (write(sock, line, (size_t) n) != n)
            return 1;
        n = snprintf(line, sizeof line, "mail %d", i);
        if (pbx_send(q, 1, line, (size_t) n, 0) < 0)
            return 1;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    pbx_send(q, 2, "bye", 3, 0);
    close(sock);
    pbx_close(q);
    return 0;
}

int main(void)
{
    pbx_t *q;
    int r = pbx_open("epoll", PBX_CREATE, NULL, &q);
    int sv[2];
    if (r < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        fprintf(stderr, "epoll: %s\n", r < 0 ? pbx_strerror(r) : strerror(errno));
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        _exit(outside_world(sv[1]));
    }
    close(sv[1]);

    int mailfd = pbx_fd(q);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = sv[0]};
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
    ev.data.fd = mailfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, mailfd, &ev);

    int socket_open = 1, mailbox_open = 1, lines = 0, mails = 0, wakeups = 0;
    while (socket_open || mailbox_open) {
        struct epoll_event got[2];
        int n = epoll_wait(ep, got, 2, 5000);
        if (n <= 0) {
            fprintf(stderr, "epoll: nothing for 5 s\n");
            break;
        }
        wakeups++;
        for (int i = 0; i < n; i++) {
            if (got[i].data.fd == sv[0]) {
                char buf[256];
                ssize_t k = read(sv[0], buf, sizeof buf);
                if (k <= 0) {
                    socket_open = 0;
                    epoll_ctl(ep, EPOLL_CTL_DEL, sv[0], NULL);
                    continue;
                }
                for (ssize_t j = 0; j < k; j++)
                    lines += buf[j] == '\n';
            } else {
                char msg[64];
                long type;
                ssize_t k;
                while ((k = pbx_recv(q, 0, msg, sizeof msg - 1, PBX_NOWAIT, &type)) >= 0) {
                    if (type == 2) {
                        mailbox_open = 0;
                        epoll_ctl(ep, EPOLL_CTL_DEL, mailfd, NULL);
                        break;
                    }
                    mails++;
                }
            }
        }
    }
    printf("epoll: %d socket lines and %d messages in %d wake-ups\n", lines, mails, wakeups);
    int status;
    waitpid(pid, &status, 0);
    close(ep);
    close(sv[0]);
    pbx_remove(q);
    pbx_close(q);
    return lines == ROUNDS && mails == ROUNDS && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0
                                                                                               : 1;
}
