/*
 * sv_peer.c — the System V side of the interoperation test (api_interop.sh). Plain System V.
 *   sv_peer put KEY   create the queue KEY and send "from sysv" as type 5
 *   sv_peer get KEY   receive type 6 from queue KEY, print it, remove the queue
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/msg.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    key_t key = (key_t) strtol(argv[2], NULL, 0);
    struct {
        long mtype;
        char text[64];
    } m = {.mtype = 5};
    if (strcmp(argv[1], "put") == 0) {
        int id = msgget(key, IPC_CREAT | 0600);
        strcpy(m.text, "from sysv");
        return id < 0 || msgsnd(id, &m, strlen(m.text), 0) != 0;
    }
    int id = msgget(key, 0);
    ssize_t n = id < 0 ? -1 : msgrcv(id, &m, sizeof(m.text) - 1, 6, IPC_NOWAIT);
    if (n < 0) {
        perror("sv_peer get");
        return 1;
    }
    m.text[n] = 0;
    printf("sysv got type %ld: %s\n", m.mtype, m.text);
    return msgctl(id, IPC_RMID, NULL) != 0;
}
