/*
 * lecture.c — the last program of the lecture on message passing (seed/000_*.txt, "Example of
 * Message Passing"), as written there, compiled unmodified and run with and without
 * libpostbox-sysv.so preloaded. It must print "Received 252!".
 *
 * Typos fixed, and nothing else (the program still checks no return value):
 *   - the slide's headers are not shown: added <stdio.h>, <sys/msg.h>, <unistd.h>;
 *   - "long mtype:" and "}:" -> "long mtype;" and "};" ("return 0:" -> "return 0;");
 *   - "fork():" -> "fork();", "m.mtvpe = 42:" -> "m.mtype = 42;";
 *   - "msggid" and "msqqid" -> "msgqid"; "msqctl" -> "msgctl"; "sizeof( struct msg )" ->
 *     "sizeof( struct msq )"; the flag "O" (letter) -> "0" (digit);
 *   - "Received_%d!" -> "Received %d!" (the slide's underscore is the PDF's rendering of a
 *     space; the lecture says it prints "Received 252!");
 *   - the closing braces of the if/else and of main, lost at the slide's end, are restored.
 * The slide passes sizeof( struct msq ) — mtype included — as the size of the text, which is
 * a real bug of the slide, kept because it is what the lecture wrote: msgsnd reads 8 bytes past
 * the struct (harmless stack bytes) and msgrcv may write 8 past m2. AddressSanitizer reports
 * it, so sanitizer builds compile this one program without instrumentation.
 */
/* clang-format off */ /* the layout is the lecture's */
#include <stdio.h>
#include <sys/msg.h>
#include <unistd.h>

struct msq {
  long mtype;
  int data;
};
int main( int argc, char** argv ) {
    int msgqid = msgget( IPC_PRIVATE, 0666 | IPC_CREAT );
    int pid = fork();
    if ( pid > 0 ) { /* Parent */
        struct msq m;
       m.mtype = 42;
       m.data = 252;
       msgsnd( msgqid, &m, sizeof( struct msq ), 0 );
    } else if ( pid == 0 ) { /* Child */
       struct msq m2;
       msgrcv( msgqid, &m2, sizeof( struct msq ), 42, 0 );
       printf("Received %d!\n", m2.data );
       msgctl( msgqid, IPC_RMID, NULL );
    }
    return 0;
}
