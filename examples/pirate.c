/*
 * pirate.c — the lecture's struct pirate_info sent as typed messages and received by type.
 *
 * In the lecture, a System V message has to start with a long mtype, so struct pirate_msgbuf
 * wraps struct pirate_info behind one. postbox passes the type as an argument, so the message
 * here is the bare struct pirate_info. The type is a notoriety rank: 1 for the most notorious
 * pirates, up to 5 for the least. That way, msgrcv's rule for a negative type ("the lowest type
 * up to -type") brings out the worst first.
 *
 * The mailbox has a name, "pirates", the way a queue gets a key from ftok(). The sender is a
 * separate process that finds the mailbox by that name. It sends every record and exits. Only
 * then does the receiver start. Waiting for the whole roll lets the receiver show each
 * selection rule on a complete queue:
 *   type -2   the most notorious (ranks 1 and 2), lowest rank first;
 *   type 3    exactly rank 3;
 *   type 0    whatever is left, in order of arrival, whatever its type.
 * The receiver uses PBX_NOWAIT (IPC_NOWAIT), so each pass stops with -ENOMSG when nothing else
 * matches, instead of sleeping. At the end the mailbox is removed, also when something failed.
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

#define MAILBOX "pirates"

/* The lecture's record, field for field. */
struct pirate_info {
    char name[30];
    char ship_type;
    int notoriety;
    int cruelty;
    int booty_value;
};

/* The roll, in the order it is sent. Notoriety runs from 0 to 100. */
static const struct pirate_info roll[] = {
    {"Calico Jack Rackham", 'S', 55, 40, 3000}, {"Blackbeard", 'F', 98, 85, 12000},
    {"Stede Bonnet", 'S', 30, 20, 800},         {"Anne Bonny", 'S', 66, 60, 2500},
    {"Henry Jennings", 'B', 15, 10, 87000},     {"Bartholomew Roberts", 'G', 90, 70, 50000},
    {"Mary Read", 'S', 48, 55, 1500},           {"Charles Vane", 'B', 35, 90, 6000},
};
#define ROLL_LEN (sizeof(roll) / sizeof(roll[0]))

/* The message type of a record: its notoriety rank, 1 (81-100) down to 5 (0-20). Message types
 * must be at least 1, and the lowest type is the one a negative type selects first. */
static long rank_of(const struct pirate_info *p)
{
    return 1 + (100 - p->notoriety) / 20;
}

static const char *ship_name(char ship_type)
{
    switch (ship_type) {
    case 'B':
        return "brigantine";
    case 'F':
        return "frigate";
    case 'G':
        return "galleon";
    case 'S':
        return "sloop";
    default:
        return "unknown";
    }
}

static void report_error(const char *who, const char *what, long err)
{
    fprintf(stderr, "example_pirate: %s: %s: %s\n", who, what, pbx_strerror((int) err));
}

/* The sender process. It opens the mailbox by name, without PBX_CREATE, as an unrelated
 * program would. It returns its exit status. */
static int sender_main(void)
{
    pbx_t *q;
    int err = pbx_open(MAILBOX, 0, NULL, &q);
    if (err) {
        report_error("sender", "open \"" MAILBOX "\"", err);
        return EXIT_FAILURE;
    }
    for (size_t i = 0; i < ROLL_LEN; i++) {
        err = pbx_send(q, rank_of(&roll[i]), &roll[i], sizeof(roll[i]), 0);
        if (err) {
            report_error("sender", "send", err);
            pbx_close(q);
            return EXIT_FAILURE;
        }
    }
    printf("sender: sent %zu pirates, each typed by notoriety rank (1 = most notorious)\n",
           ROLL_LEN);
    pbx_close(q);
    return EXIT_SUCCESS;
}

/* Run the sender in a child process and wait for it. Returns 1 if it succeeded. The child
 * inherits the receiver's handle q. It does not use it, but it closes it, because the copy
 * holds memory and a mapping of its own. */
static int run_sender(pbx_t *q)
{
    fflush(stdout); /* so the child does not print our buffered lines a second time */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "example_pirate: fork: %s\n", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        pbx_close(q);
        exit(sender_main());
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "example_pirate: waitpid: %s\n", strerror(errno));
            return 0;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    fprintf(stderr, "example_pirate: the sender failed\n");
    return 0;
}

/* Take every message that type selects, printing each. It returns how many it took, or a
 * negative errno value if a receive failed for another reason than "nothing matches". */
static long receive_all(pbx_t *q, long type, const char *title)
{
    printf("-- receive with type %ld: %s --\n", type, title);
    long count = 0;
    for (;;) {
        struct pirate_info p;
        long got_type;
        ssize_t n = pbx_recv(q, type, &p, sizeof(p), PBX_NOWAIT, &got_type);
        if (n == -ENOMSG)
            return count;
        if (n < 0)
            return n;
        if (n != (ssize_t) sizeof(p)) {
            fprintf(stderr, "example_pirate: a message of %zd bytes is not a pirate\n", n);
            return -EBADMSG;
        }
        p.name[sizeof(p.name) - 1] = '\0'; /* never trust a string from another process */
        printf("  type %ld  %-20s %-10s  notoriety %3d  cruelty %3d  booty %6d\n", got_type, p.name,
               ship_name(p.ship_type), p.notoriety, p.cruelty, p.booty_value);
        count++;
    }
}

int main(void)
{
    pbx_t *q;
    /* PBX_EXCL, like IPC_CREAT | IPC_EXCL: if another run is using "pirates", we must not
     * mix our records with its records, or remove its mailbox when we finish. */
    int err = pbx_open(MAILBOX, PBX_CREATE | PBX_EXCL, NULL, &q);
    if (err == -EEXIST) {
        fprintf(stderr,
                "example_pirate: a mailbox called \"" MAILBOX "\" already exists (another run, "
                "or an interrupted one); set POSTBOX_DIR to an empty directory to run "
                "apart from it\n");
        return EXIT_FAILURE;
    }
    if (err) {
        report_error("receiver", "create \"" MAILBOX "\"", err);
        return EXIT_FAILURE;
    }

    int ok = run_sender(q);
    long taken = 0;
    static const struct {
        long type;
        const char *title;
    } passes[] = {
        {-2, "the most notorious first (lowest type up to 2)"},
        {3, "exactly type 3"},
        {0, "the rest, in order of arrival"},
    };
    for (size_t i = 0; ok && i < sizeof(passes) / sizeof(passes[0]); i++) {
        long n = receive_all(q, passes[i].type, passes[i].title);
        if (n < 0) {
            report_error("receiver", "receive", n);
            ok = 0;
        } else {
            taken += n;
        }
    }
    if (ok && taken != (long) ROLL_LEN) {
        fprintf(stderr, "example_pirate: received %ld records, but %zu were sent\n", taken,
                ROLL_LEN);
        ok = 0;
    }

    /* Remove the mailbox whether or not the run succeeded. A named mailbox outlives its
     * processes, like a System V queue, and would otherwise stay in /dev/shm. */
    err = pbx_remove(q);
    if (err) {
        report_error("receiver", "remove \"" MAILBOX "\"", err);
        ok = 0;
    } else if (ok) {
        printf("receiver: all %ld records received; mailbox removed\n", taken);
    }
    pbx_close(q);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
