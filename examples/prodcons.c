/*
 * prodcons.c — producers and consumers on one named mailbox, with urgent jobs served first.
 *
 * Two producer processes queue jobs of two types: 1 for urgent and 2 for normal. Two consumer
 * processes take them with type -99. Under msgrcv's rule for a negative type, that selects the
 * oldest message of the lowest type up to 99. A consumer therefore takes an urgent job while
 * any is queued, then normal jobs, and the stop message (type 99) that tells it to quit only
 * when no job is left. The message types form a small protocol:
 *
 *   1    urgent job        selected by a consumer's type -99,
 *   2    normal job        lowest first
 *   99   stop
 *   100  go                above 99, so a consumer's type -99 never
 *   101  producer report   takes them by accident; each is received
 *   102  consumer report   by its exact type
 *
 * The stop messages are sent only after both producers have exited. A consumer takes a stop
 * only when no job is queued. If a stop could be sent while a producer was still working, a
 * consumer that found the mailbox empty for a moment would quit early. Since every job is
 * queued before any stop, no job is left behind.
 *
 * The consumers are started first, but they wait for a "go" message before they take any job.
 * This lets the jobs pile up the way they do when consumers are slower than producers. The
 * selection then shows in the output instead of depending on how the scheduler happened to run
 * the processes. Every process reports what it did in a message to the parent, and the parent
 * prints everything in a fixed order and checks that every job produced was consumed once.
 * Consumers give up after PATIENCE_S seconds without a message, so they exit even if the parent
 * is killed before it sends the stops. If anything fails, the parent removes the mailbox, which
 * wakes every sleeping process with -EIDRM.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"

#define MAILBOX           "jobs"
#define NPRODUCERS        2
#define NCONSUMERS        2
#define JOBS_PER_PRODUCER 5
#define TOTAL_JOBS        (NPRODUCERS * JOBS_PER_PRODUCER)
#define PATIENCE_S        10

enum message_type {
    TYPE_URGENT = 1,
    TYPE_NORMAL = 2,
    TYPE_STOP = 99,
    TYPE_GO = 100,
    TYPE_PRODUCER_REPORT = 101,
    TYPE_CONSUMER_REPORT = 102
};

struct job {
    int producer; /* 1..NPRODUCERS */
    int seq;      /* 1..JOBS_PER_PRODUCER, in the order the producer made them */
};

/* What a process tells the parent when it is done. Consumers also list the jobs they took, in
 * the order they took them. */
struct report {
    int id;
    int urgent;
    int normal;
    int ntaken;
    struct {
        int urgent;
        struct job job;
    } taken[TOTAL_JOBS];
};

static const struct timespec patience = {PATIENCE_S, 0};

/* who is "producer", "consumer" or "parent"; id is 0 for the parent, which has no number. */
static void report_error(const char *who, int id, const char *what, long err)
{
    if (id > 0)
        fprintf(stderr, "example_prodcons: %s %d: %s: %s\n", who, id, what,
                pbx_strerror((int) err));
    else
        fprintf(stderr, "example_prodcons: %s: %s: %s\n", who, what, pbx_strerror((int) err));
}

/* Which of its jobs a producer marks urgent. The pattern differs between producers, so urgent
 * and normal jobs arrive mixed. */
static int is_urgent(int producer, int seq)
{
    return (producer + seq) % 3 == 0;
}

static int producer_main(pbx_t *q, int id)
{
    struct report r = {.id = id};
    for (int seq = 1; seq <= JOBS_PER_PRODUCER; seq++) {
        struct job job = {.producer = id, .seq = seq};
        int urgent = is_urgent(id, seq);
        int err = pbx_send(q, urgent ? TYPE_URGENT : TYPE_NORMAL, &job, sizeof(job), 0);
        if (err) {
            report_error("producer", id, "send a job", err);
            return EXIT_FAILURE;
        }
        if (urgent)
            r.urgent++;
        else
            r.normal++;
    }
    int err = pbx_send(q, TYPE_PRODUCER_REPORT, &r, sizeof(r), 0);
    if (err) {
        report_error("producer", id, "send its report", err);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

/* A consumer "works" a little on each job, so that both consumers get a share. */
static void work_on(const struct job *job)
{
    (void) job;
    struct timespec t = {0, 5 * 1000 * 1000};
    nanosleep(&t, NULL);
}

static int consumer_main(pbx_t *q, int id)
{
    struct report r = {.id = id};
    ssize_t n = pbx_timedrecv(q, TYPE_GO, NULL, 0, 0, NULL, &patience);
    if (n < 0) {
        report_error("consumer", id, "wait for go", n);
        return EXIT_FAILURE;
    }
    for (;;) {
        struct job job;
        long type;
        n = pbx_timedrecv(q, -TYPE_STOP, &job, sizeof(job), 0, &type, &patience);
        if (n < 0) {
            report_error("consumer", id, "receive a job", n);
            return EXIT_FAILURE;
        }
        if (type == TYPE_STOP)
            break;
        if ((type != TYPE_URGENT && type != TYPE_NORMAL) || n != (ssize_t) sizeof(job) ||
            r.ntaken == TOTAL_JOBS) {
            fprintf(stderr, "example_prodcons: consumer %d: unexpected message of type %ld\n", id,
                    type);
            return EXIT_FAILURE;
        }
        r.taken[r.ntaken].urgent = type == TYPE_URGENT;
        r.taken[r.ntaken].job = job;
        r.ntaken++;
        if (type == TYPE_URGENT)
            r.urgent++;
        else
            r.normal++;
        work_on(&job);
    }
    int err = pbx_send(q, TYPE_CONSUMER_REPORT, &r, sizeof(r), 0);
    if (err) {
        report_error("consumer", id, "send its report", err);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

/* Fork a child that runs body(q, id) and exits with its status. Returns the pid, or -1. */
static pid_t start_child(pbx_t *q, int (*body)(pbx_t *, int), int id)
{
    fflush(stdout); /* so the child does not print our buffered lines a second time */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "example_prodcons: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int status = body(q, id);
        pbx_close(q);
        exit(status);
    }
    return pid;
}

/* Wait for a child. It returns 1 if the child exited with status 0. */
static int child_succeeded(pid_t pid, const char *who, int id)
{
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "example_prodcons: waitpid: %s\n", strerror(errno));
            return 0;
        }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    fprintf(stderr, "example_prodcons: %s %d failed\n", who, id);
    return 0;
}

/* Collect the count reports of the given type into reports[0..count-1], by id. */
static int collect_reports(pbx_t *q, long type, struct report *reports, int count)
{
    int seen[NPRODUCERS + NCONSUMERS + 1] = {0};
    for (int i = 0; i < count; i++) {
        struct report r;
        ssize_t n = pbx_recv(q, type, &r, sizeof(r), PBX_NOWAIT, NULL);
        if (n < 0) {
            report_error("parent", 0, "collect a report", n);
            return 0;
        }
        if (n != (ssize_t) sizeof(r) || r.id < 1 || r.id > count || seen[r.id] || r.ntaken < 0 ||
            r.ntaken > TOTAL_JOBS) {
            fprintf(stderr, "example_prodcons: a malformed report\n");
            return 0;
        }
        seen[r.id] = 1;
        reports[r.id - 1] = r;
    }
    return 1;
}

/* Print what the children reported. Check that no job was lost or taken twice, and that each
 * consumer took its urgent jobs before its normal ones. Return 1 if everything adds up. */
static int summarize(const struct report *producers, const struct report *consumers)
{
    int produced[2] = {0, 0}, consumed[2] = {0, 0}, ok = 1;
    int taken[NPRODUCERS + 1][JOBS_PER_PRODUCER + 1];
    memset(taken, 0, sizeof(taken));
    for (int i = 0; i < NPRODUCERS; i++) {
        const struct report *r = &producers[i];
        printf("producer %d sent %d jobs: %d urgent, %d normal\n", r->id, r->urgent + r->normal,
               r->urgent, r->normal);
        produced[0] += r->urgent;
        produced[1] += r->normal;
    }
    printf("consumers take type -99: urgent (U, type 1), then normal (N, type 2), then stop\n");
    for (int i = 0; i < NCONSUMERS; i++) {
        const struct report *r = &consumers[i];
        printf("consumer %d took %d jobs:", r->id, r->ntaken);
        int seen_normal = 0;
        for (int k = 0; k < r->ntaken; k++) {
            const struct job *job = &r->taken[k].job;
            printf(" %c%d.%d", r->taken[k].urgent ? 'U' : 'N', job->producer, job->seq);
            if (job->producer < 1 || job->producer > NPRODUCERS || job->seq < 1 ||
                job->seq > JOBS_PER_PRODUCER || taken[job->producer][job->seq]++) {
                ok = 0; /* an impossible or repeated job; reported below */
                continue;
            }
            if (r->taken[k].urgent && seen_normal)
                ok = 0;
            seen_normal |= !r->taken[k].urgent;
        }
        printf("\n");
        consumed[0] += r->urgent;
        consumed[1] += r->normal;
    }
    printf("produced %d (%d urgent, %d normal), consumed %d (%d urgent, %d normal)\n",
           produced[0] + produced[1], produced[0], produced[1], consumed[0] + consumed[1],
           consumed[0], consumed[1]);
    if (!ok || produced[0] != consumed[0] || produced[1] != consumed[1] ||
        produced[0] + produced[1] != TOTAL_JOBS) {
        fprintf(stderr, "example_prodcons: the jobs do not add up (lost, repeated, or an "
                        "urgent job taken after a normal one)\n");
        return 0;
    }
    return 1;
}

int main(void)
{
    pbx_t *q;
    /* PBX_EXCL, like IPC_CREAT | IPC_EXCL: another run's jobs must not mix with ours. */
    int err = pbx_open(MAILBOX, PBX_CREATE | PBX_EXCL, NULL, &q);
    if (err == -EEXIST) {
        fprintf(stderr,
                "example_prodcons: a mailbox called \"" MAILBOX "\" already exists (another "
                "run, or an interrupted one); set POSTBOX_DIR to an empty directory to run "
                "apart from it\n");
        return EXIT_FAILURE;
    }
    if (err) {
        report_error("parent", 0, "create \"" MAILBOX "\"", err);
        return EXIT_FAILURE;
    }
    printf("%d producers and %d consumers share the mailbox \"%s\"\n", NPRODUCERS, NCONSUMERS,
           MAILBOX);

    pid_t consumer_pids[NCONSUMERS], producer_pids[NPRODUCERS];
    int nconsumers = 0, nproducers = 0, ok = 1;
    while (ok && nconsumers < NCONSUMERS) {
        pid_t pid = start_child(q, consumer_main, nconsumers + 1);
        if (pid < 0)
            ok = 0;
        else
            consumer_pids[nconsumers++] = pid;
    }
    while (ok && nproducers < NPRODUCERS) {
        pid_t pid = start_child(q, producer_main, nproducers + 1);
        if (pid < 0)
            ok = 0;
        else
            producer_pids[nproducers++] = pid;
    }
    for (int i = 0; i < nproducers; i++)
        ok &= child_succeeded(producer_pids[i], "producer", i + 1);

    /* All jobs are queued now, so the stops can only be taken after them. The go messages
     * come last, when the mailbox holds everything the consumers will need. */
    for (int i = 0; ok && i < NCONSUMERS; i++) {
        if ((err = pbx_send(q, TYPE_STOP, NULL, 0, 0)))
            report_error("parent", 0, "send a stop", err);
        ok = !err;
    }
    for (int i = 0; ok && i < NCONSUMERS; i++) {
        if ((err = pbx_send(q, TYPE_GO, NULL, 0, 0)))
            report_error("parent", 0, "send go", err);
        ok = !err;
    }
    int removed = 0;
    if (!ok) {
        /* Wake the consumers with -EIDRM so the waits below end. */
        pbx_remove(q);
        removed = 1;
    }
    for (int i = 0; i < nconsumers; i++)
        ok &= child_succeeded(consumer_pids[i], "consumer", i + 1);

    if (ok) {
        static struct report producers[NPRODUCERS], consumers[NCONSUMERS];
        ok = collect_reports(q, TYPE_PRODUCER_REPORT, producers, NPRODUCERS) &&
             collect_reports(q, TYPE_CONSUMER_REPORT, consumers, NCONSUMERS) &&
             summarize(producers, consumers);
    }
    if (ok) {
        struct pbx_stat st = {0};
        err = pbx_stat(q, &st);
        if (err || st.msgs != 0) {
            fprintf(stderr, "example_prodcons: the mailbox should be empty: %s, %llu left\n",
                    pbx_strerror(err), (unsigned long long) st.msgs);
            ok = 0;
        }
    }
    if (!removed) {
        err = pbx_remove(q);
        if (err) {
            report_error("parent", 0, "remove \"" MAILBOX "\"", err);
            ok = 0;
        }
    }
    if (ok)
        printf("every job was taken exactly once; mailbox empty and removed\n");
    pbx_close(q);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
