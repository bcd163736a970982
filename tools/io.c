/*
 * io.c — postbox send and postbox recv: messages between the shell and a mailbox.
 *
 * Payloads are bytes, not text. send takes exactly the bytes of DATA or of standard input
 * (one message), or, with --lines, one message per input line without its newline. recv
 * writes exactly the payload bytes by default, so a binary message goes through a pipe
 * unchanged; the boundaries between messages are then up to the reader (-n 1 per call,
 * --lines to end each with a newline, or --json for one JSON object per message).
 *
 * recv writes each message before taking the next, and flushes standard output whenever the
 * next receive would have to wait, so a consumer downstream sees every message as soon as
 * postbox has it, while a backlog is drained with few write calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char send_help[] =
    "Usage: postbox send NAME [OPTIONS] [DATA]\n"
    "\n"
    "Send DATA as one message to the mailbox NAME. Without DATA, standard input is read to\n"
    "its end and sent as one message, byte for byte (binary is fine).\n"
    "\n"
    "  -t, --type TYPE    the message's type, 1 or more (default 1)\n"
    "      --lines        send each line of standard input as its own message, without\n"
    "                     its newline (an empty line is an empty message)\n"
    "      --nowait       if the mailbox is full, give up at once (exit 1)\n"
    "      --timeout SEC  if the mailbox is full, wait at most SEC seconds (exit 1)\n"
    "  -h, --help         show this help\n"
    "\n"
    "A message larger than the mailbox's max-msg-size is refused (exit 3). On a mailbox with\n"
    "overflow drop-newest, a message sent while it is full is discarded: send reports it and\n"
    "exits 3 (with --lines, after sending the other lines).\n"
    "\n"
    "Examples:\n"
    "  postbox send jobs 'hello'\n"
    "  postbox send -t 2 jobs < picture.png\n"
    "  seq 100 | postbox send --lines jobs\n";

static const char recv_help[] =
    "Usage: postbox recv NAME [OPTIONS]\n"
    "\n"
    "Receive a message from the mailbox NAME and write its payload to standard output,\n"
    "exactly its bytes, nothing added. Waits until a message arrives unless told otherwise.\n"
    "\n"
    "Which message (the rules of msgrcv):\n"
    "  -t, --type TYPE    0: the oldest (default); > 0: the oldest of that type;\n"
    "                     < 0: the oldest of the lowest type up to -TYPE\n"
    "      --except       with TYPE > 0: the oldest of any other type\n"
    "How:\n"
    "  -n, --count N      receive N messages (default 1)\n"
    "      --follow       keep receiving until interrupted (Ctrl-C, SIGTERM); with --nowait\n"
    "                     or --timeout, until the mailbox stays empty\n"
    "      --nowait       if there is no message, give up at once (exit 1)\n"
    "      --timeout SEC  wait at most SEC seconds for each message (exit 1)\n"
    "      --peek         copy the message but leave it in the mailbox\n"
    "      --claim        claim the message, write it, and acknowledge it only once the\n"
    "                     output is written and flushed; on a write error it is released\n"
    "                     back into its place (nothing is lost if recv dies meanwhile)\n"
    "  -s, --size N       accept messages of at most N bytes (default: the mailbox's\n"
    "                     max-msg-size); a longer one stays queued and recv fails (exit 3)\n"
    "      --noerror      with --size: truncate a longer message to N bytes instead\n"
    "Output:\n"
    "      --lines        write a newline after each message\n"
    "      --show-type    write the type and a tab before each message\n"
    "      --json         one JSON object per line and message:\n"
    "                     {\"type\":T,\"size\":N,\"data\":\"...\"}, or \"base64\" in place of\n"
    "                     \"data\" when the payload is not valid UTF-8\n"
    "  -h, --help         show this help\n"
    "\n"
    "Without --lines or --json, the payloads of several messages (-n, --follow) are written\n"
    "back to back with nothing between them.\n"
    "\n"
    "Examples:\n"
    "  postbox recv jobs > job.bin\n"
    "  postbox recv --lines --follow jobs\n"
    "  postbox recv --json --nowait --follow jobs     # drain the mailbox as JSON\n";

/* Send one message, with the timeout if one was given. */
static int send_one(pbx_t *q, long type, const void *p, size_t n, int flags,
                    const struct timespec *timeout)
{
    return timeout ? pbx_timedsend(q, type, p, n, flags, timeout) : pbx_send(q, type, p, n, flags);
}

static int send_failed(const char *name, int r, size_t len, uint32_t max)
{
    if (r == -EMSGSIZE)
        return cli_failf(name, "%s (%zu bytes; at most %u)", pbx_strerror(r), len, max);
    if (r == -ENOBUFS)
        return cli_failf(name, "mailbox is full: the message was discarded (overflow "
                               "drop-newest)");
    return cli_fail(name, r);
}

/* Standard input for send --lines, read with read(2) so that a signal interrupts a wait for
 * the terminal (no SA_RESTART) and Ctrl-C can say how many lines went. */
struct line_input {
    char buf[65536];
    size_t pos, len;
};

/* The next line, without its newline, into *line (grown as needed, never beyond max + 1 bytes,
 * so that a line longer than the mailbox's largest message is noticed while it is read, not
 * after it is held in memory). Returns the line's length, max + 1 for a longer line (the rest
 * is not read), -1 at the end of input, or -2 with errno set on a read error or a signal. */
static ssize_t read_line(struct line_input *in, char **line, size_t *cap, size_t max)
{
    size_t n = 0;
    int any = 0;
    for (;;) {
        if (in->pos == in->len) {
            ssize_t r = read(0, in->buf, sizeof in->buf);
            if (r < 0) {
                if (errno == EINTR && !cli_stop)
                    continue;
                return -2;
            }
            if (r == 0)
                return any ? (ssize_t) n : -1;
            in->pos = 0;
            in->len = (size_t) r;
        }
        any = 1;
        char *start = in->buf + in->pos;
        char *nl = memchr(start, '\n', in->len - in->pos);
        size_t take = nl ? (size_t) (nl - start) : in->len - in->pos;
        if (n + take > max)
            return (ssize_t) max + 1; /* the rest of the line stays unread */
        if (n + take > *cap) {
            size_t want = *cap ? *cap : 256;
            while (want < n + take)
                want *= 2;
            if (want > max + 1)
                want = max + 1;
            char *p = realloc(*line, want ? want : 1);
            if (!p) {
                errno = ENOMEM;
                return -2;
            }
            *line = p;
            *cap = want;
        }
        memcpy(*line + n, start, take);
        n += take;
        in->pos += take + (nl != NULL);
        if (nl)
            return (ssize_t) n;
    }
}

/* After Ctrl-C or SIGTERM: say how far send got, then die of the signal as the caller
 * expects (the shell reports 130 for Ctrl-C). */
static void interrupted(const char *name, unsigned long long sent)
{
    int sig = cli_stop > 0 ? cli_stop : SIGINT;
    fprintf(stderr, "postbox: %s: interrupted: %llu line%s sent\n", name, sent,
            sent == 1 ? " was" : "s were");
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
}

static int send_lines(const char *name, pbx_t *q, long type, int flags,
                      const struct timespec *timeout, uint32_t max)
{
    static struct line_input in;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long long dropped = 0, lines = 0, sent = 0;
    int status = EXIT_DONE;
    cli_catch_stop_signals();
    while ((n = read_line(&in, &line, &cap, max)) >= 0) {
        lines++;
        if ((size_t) n > max) {
            status = cli_failf(name,
                               "line %llu: %s (longer than %u bytes); the lines before it were "
                               "sent",
                               lines, pbx_strerror(-EMSGSIZE), max);
            break;
        }
        int r = send_one(q, type, line, (size_t) n, flags, timeout);
        if (r >= 0) { /* drop-oldest says how many it discarded to make room */
            sent++;
        } else if (r == -ENOBUFS) {
            dropped++;
        } else if (r == -EINTR && cli_stop) {
            interrupted(name, sent);
        } else if (r == -EAGAIN || r == -ETIMEDOUT) {
            fprintf(stderr, "postbox: %s: %s: line %llu was not sent; %llu line%s before it\n",
                    name, r == -EAGAIN ? "mailbox is full" : "timed out", lines, sent,
                    sent == 1 ? " was sent" : "s were sent");
            status = EXIT_NOMSG;
            break;
        } else {
            status = send_failed(name, r, (size_t) n, max);
            break;
        }
    }
    if (n == -2) {
        if (cli_stop)
            interrupted(name, sent);
        status = cli_failf(name, "reading standard input: %s; %llu lines were sent",
                           strerror(errno), sent);
    }
    if (status == EXIT_DONE && dropped)
        status = cli_failf(name,
                           "mailbox is full: %llu of %llu messages were discarded (overflow "
                           "drop-newest)",
                           dropped, lines);
    free(line);
    return status;
}

/* Read all of standard input, up to max bytes; *len > max means it was longer. */
static int read_input(const char *name, size_t max, char **out, size_t *len)
{
    size_t cap = max + 1, n = 0;
    char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return cli_fail(name, -ENOMEM);
    while (n < cap) {
        ssize_t r = read(0, buf + n, cap - n);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            free(buf);
            return cli_failf(name, "reading standard input: %s", strerror(errno));
        }
        n += (size_t) r;
    }
    *out = buf;
    *len = n;
    return 0;
}

int cmd_send(int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'},    {"nowait", no_argument, NULL, 'N'},
        {"timeout", required_argument, NULL, 'T'}, {"lines", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    long type = 1;
    int flags = 0, lines = 0, c, r;
    struct timespec to, *timeout = NULL;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if ((r = cli_parse_type("--type", optarg, &type)))
                return r;
            break;
        case 'N':
            flags |= PBX_NOWAIT;
            break;
        case 'T':
            if ((r = cli_parse_seconds("--timeout", optarg, &to)))
                return r;
            timeout = &to;
            break;
        case 'l':
            lines = 1;
            break;
        case 'h':
            fputs(send_help, stdout);
            return EXIT_DONE;
        default:
            return cli_bad_option(c, argv, opts);
        }
    }
    int npos = argc - optind;
    if (npos < 1)
        return cli_usage("no mailbox named");
    if (npos > 2)
        return cli_usage("too many arguments (quote DATA that contains spaces)");
    if (type < 1)
        return cli_usage("bad type '%ld' for --type: a message's type is 1 or more", type);
    if (lines && npos == 2)
        return cli_usage("--lines reads standard input; give no DATA");
    const char *name = argv[optind];
    if (npos == 1 && (cli_closed_fds & 1))
        return cli_failf(name, "standard input is closed (give DATA, or redirect it)");

    pbx_t *q;
    if ((r = cli_open(name, &q)))
        return r;
    struct pbx_stat st;
    if ((r = pbx_stat(q, &st)) < 0) {
        pbx_close(q);
        return cli_fail(name, r);
    }
    int status = EXIT_DONE;
    if (lines) {
        if (isatty(0))
            fprintf(stderr,
                    "postbox: %s: sending each line typed as a message; end with "
                    "Ctrl-D\n",
                    name);
        status = send_lines(name, q, type, flags, timeout, st.max_msg_size);
    } else if (npos == 2) {
        const char *data = argv[optind + 1];
        size_t n = strlen(data);
        if ((r = send_one(q, type, data, n, flags, timeout)) < 0)
            status = send_failed(name, r, n, st.max_msg_size);
    } else {
        char *buf = NULL;
        size_t n = 0;
        if (isatty(0))
            fprintf(stderr,
                    "postbox: %s: reading the message from the terminal; end it with "
                    "Ctrl-D\n",
                    name);
        status = read_input(name, st.max_msg_size, &buf, &n);
        if (status == EXIT_DONE) {
            if (n > st.max_msg_size)
                status = cli_failf(name, "%s (standard input is longer than %u bytes)",
                                   pbx_strerror(-EMSGSIZE), st.max_msg_size);
            else if ((r = send_one(q, type, buf, n, flags, timeout)) < 0)
                status = send_failed(name, r, n, st.max_msg_size);
            free(buf);
        }
    }
    pbx_close(q);
    return status;
}

struct recv_args {
    long type;
    int flags;
    const struct timespec *timeout;
    int follow, json, lines, show_type, claim;
    int out_pipe;      /* standard output is a pipe or socket: watch for its reader going away */
    uint64_t claim_id; /* the claim of the message just received (--claim) */
};

/* Whether the reader of standard output has gone away: a pipe whose reader closed it reports
 * POLLERR on the write end, a socket POLLHUP. Nothing is asked for, so nothing else shows. */
static int reader_gone(void)
{
    struct pollfd p = {.fd = 1, .events = 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP));
}

/* A claim that waits: pbx_claim() has no timeout, so wait for the mailbox's descriptor to be
 * readable (at most the time left, and a second at a time so that SIGTERM ends --follow), then
 * claim without waiting. A readable descriptor with nothing of our type: look again shortly. */
static ssize_t claim_waiting(pbx_t *q, struct recv_args *a, char *buf, size_t cap, long *type,
                             int wait)
{
    int64_t deadline = 0;
    if (a->timeout)
        deadline = cli_now_mono() + (int64_t) a->timeout->tv_sec * 1000000000 + a->timeout->tv_nsec;
    int fd = -1;
    for (;;) {
        ssize_t n = pbx_claim(q, a->type, buf, cap, a->flags | PBX_NOWAIT, type, &a->claim_id);
        if (n != -ENOMSG || !wait)
            return n;
        if (cli_stop)
            return -EINTR;
        if (fd < 0 && (fd = pbx_fd(q)) < 0)
            return fd;
        int64_t slice = 1000000000;
        if (a->timeout) {
            int64_t left = deadline - cli_now_mono();
            if (left <= 0)
                return -ETIMEDOUT;
            if (left < slice)
                slice = left;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = 1, .events = 0}};
        if (poll(p, a->out_pipe ? 2 : 1, (int) (slice / 1000000) + 1) > 0) {
            if (a->out_pipe && (p[1].revents & (POLLERR | POLLHUP))) {
                errno = EPIPE;
                return -EPIPE;
            }
            if (p[0].revents)
                usleep(1000); /* readable, but perhaps not for our type: do not spin */
        }
    }
}

/* Wait for a message in slices of at most a second, so that a SIGINT or SIGTERM that lands
 * just before the receive goes to sleep still ends --follow within a second. When standard
 * output is a pipe, the slices are a tenth of a second and the pipe is looked at between
 * them, so that --follow ends soon after its reader goes away (rather than at the next
 * message, which would then be lost). */
static ssize_t recv_waiting(pbx_t *q, const struct recv_args *a, char *buf, size_t cap, long *type)
{
    int64_t deadline = 0;
    if (a->timeout)
        deadline = cli_now_mono() + (int64_t) a->timeout->tv_sec * 1000000000 + a->timeout->tv_nsec;
    for (;;) {
        if (cli_stop)
            return -EINTR;
        if (a->out_pipe && reader_gone()) {
            errno = EPIPE;
            return -EPIPE;
        }
        int64_t slice = a->out_pipe ? 100000000 : 1000000000;
        if (a->timeout) {
            int64_t left = deadline - cli_now_mono();
            if (left <= 0)
                return -ETIMEDOUT;
            if (left < slice)
                slice = left;
        }
        struct timespec ts = {(time_t) (slice / 1000000000), (long) (slice % 1000000000)};
        ssize_t n = pbx_timedrecv(q, a->type, buf, cap, a->flags, type, &ts);
        if (n != -ETIMEDOUT && n != -EINTR)
            return n;
    }
}

static ssize_t recv_one(pbx_t *q, struct recv_args *a, char *buf, size_t cap, long *type)
{
    if (a->claim) {
        ssize_t n = claim_waiting(q, a, buf, cap, type, 0);
        if (n != -ENOMSG || (a->flags & PBX_NOWAIT))
            return n;
        if (fflush(stdout))
            return -EPIPE;
        return claim_waiting(q, a, buf, cap, type, 1);
    }
    /* First without waiting; flush what was written before going to sleep. */
    ssize_t n = pbx_recv(q, a->type, buf, cap, a->flags | PBX_NOWAIT, type);
    if (n != -ENOMSG || (a->flags & PBX_NOWAIT))
        return n;
    if (fflush(stdout))
        return -EPIPE;
    if (a->follow)
        return recv_waiting(q, a, buf, cap, type);
    if (a->timeout)
        return pbx_timedrecv(q, a->type, buf, cap, a->flags, type, a->timeout);
    return pbx_recv(q, a->type, buf, cap, a->flags, type);
}

static void write_message(const struct recv_args *a, const char *buf, size_t n, long type)
{
    if (a->json) {
        printf("{\"type\":%ld,\"size\":%zu,", type, n);
        if (cli_utf8_valid((const unsigned char *) buf, n)) {
            fputs("\"data\":", stdout);
            cli_json_string(stdout, buf, n);
        } else {
            fputs("\"base64\":", stdout);
            cli_base64(stdout, (const unsigned char *) buf, n);
        }
        fputs("}\n", stdout);
        return;
    }
    if (a->show_type)
        printf("%ld\t", type);
    fwrite(buf, 1, n, stdout);
    if (a->lines)
        putchar('\n');
}

int cmd_recv(int argc, char **argv)
{
    static const struct option opts[] = {{"type", required_argument, NULL, 't'},
                                         {"except", no_argument, NULL, 'E'},
                                         {"noerror", no_argument, NULL, 'R'},
                                         {"peek", no_argument, NULL, 'P'},
                                         {"nowait", no_argument, NULL, 'N'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"follow", no_argument, NULL, 'f'},
                                         {"size", required_argument, NULL, 's'},
                                         {"show-type", no_argument, NULL, 'Y'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"lines", no_argument, NULL, 'l'},
                                         {"claim", no_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct recv_args a = {0};
    struct timespec to;
    uint64_t count = 1, size = 0;
    int c, r, count_given = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:n:s:fh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if ((r = cli_parse_type("--type", optarg, &a.type)))
                return r;
            break;
        case 'E':
            a.flags |= PBX_EXCEPT;
            break;
        case 'R':
            a.flags |= PBX_NOERROR;
            break;
        case 'P':
            a.flags |= PBX_PEEK;
            break;
        case 'C':
            a.claim = 1;
            break;
        case 'N':
            a.flags |= PBX_NOWAIT;
            break;
        case 'T':
            if ((r = cli_parse_seconds("--timeout", optarg, &to)))
                return r;
            a.timeout = &to;
            break;
        case 'n':
            if ((r = cli_parse_size("--count", optarg, UINT64_MAX, &count)))
                return r;
            if (count == 0)
                return cli_usage("bad value '0' for --count: receive at least 1 message");
            count_given = 1;
            break;
        case 's':
            if ((r = cli_parse_size("--size", optarg, 1u << 30, &size)))
                return r;
            break;
        case 'f':
            a.follow = 1;
            break;
        case 'Y':
            a.show_type = 1;
            break;
        case 'J':
            a.json = 1;
            break;
        case 'l':
            a.lines = 1;
            break;
        case 'h':
            fputs(recv_help, stdout);
            return EXIT_DONE;
        default:
            return cli_bad_option(c, argv, opts);
        }
    }
    r = cli_one_mailbox(argc, "too many arguments");
    if (r >= 0)
        return r;
    if ((a.flags & PBX_EXCEPT) && a.type <= 0)
        return cli_usage("--except needs a type above 0 (-t TYPE)");
    if ((a.flags & PBX_PEEK) && (a.follow || count > 1))
        return cli_usage("--peek sees the same message each time; use it without -n or "
                         "--follow");
    if (a.claim && (a.flags & PBX_PEEK))
        return cli_usage("give either --claim or --peek");
    if (a.follow && count_given)
        return cli_usage("give either -n COUNT or --follow");
    if ((a.flags & PBX_NOERROR) && !size)
        return cli_usage("--noerror truncates to --size N; give --size too");
    if (a.json && (a.lines || a.show_type))
        return cli_usage("--json already separates messages and shows types; drop --lines "
                         "and --show-type");
    const char *name = argv[optind];
    /* Refuse before taking anything: the message would have nowhere to go. */
    if (cli_closed_fds & 2)
        return cli_failf(name, "standard output is closed");
    struct stat out_st;
    a.out_pipe = a.follow && fstat(1, &out_st) == 0 &&
                 (S_ISFIFO(out_st.st_mode) || S_ISSOCK(out_st.st_mode));

    pbx_t *q;
    if ((r = cli_open(name, &q)))
        return r;
    struct pbx_stat st;
    if ((r = pbx_stat(q, &st)) < 0) {
        pbx_close(q);
        return cli_fail(name, r);
    }
    size_t cap = size ? (size_t) size : st.max_msg_size;
    char *buf = malloc(cap ? cap : 1);
    if (!buf) {
        pbx_close(q);
        return cli_fail(name, -ENOMEM);
    }
    if (a.follow)
        cli_catch_stop_signals();

    int status = EXIT_DONE;
    uint64_t got = 0;
    while (a.follow || got < count) {
        long type = 0;
        ssize_t n = recv_one(q, &a, buf, cap, &type);
        if (n < 0) {
            if (n == -EPIPE) {
                /* The reader went away while we waited: end as a write would have, killed
                 * by SIGPIPE, or, where SIGPIPE is ignored, with the error (exit 3). */
                if (errno == EPIPE) {
                    fflush(stdout);
                    raise(SIGPIPE);
                }
                status = cli_failf(name, "writing standard output: %s", strerror(errno));
            } else if (a.follow && (n == -EINTR || ((n == -ENOMSG || n == -ETIMEDOUT) && got))) {
                status = EXIT_DONE; /* interrupted, or drained: the end of a follow */
            } else if (n == -ENOMSG && a.type == 0) {
                fprintf(stderr, "postbox: %s: mailbox is empty\n", name);
                status = EXIT_NOMSG;
            } else {
                status = cli_fail(name, (int) n);
            }
            break;
        }
        got++;
        write_message(&a, buf, (size_t) n, type);
        if (a.claim) {
            /* Acknowledged only once the output is out of our hands; else back in place. */
            if (fflush(stdout) || ferror(stdout)) {
                int e = errno;
                pbx_release(q, a.claim_id);
                errno = e;
                break;
            }
            if ((r = pbx_ack(q, a.claim_id)) < 0) {
                status = cli_fail(name, r);
                break;
            }
        }
        if (ferror(stdout))
            break;
    }
    if ((fflush(stdout) || ferror(stdout)) && status == EXIT_DONE)
        status = cli_failf(name, "writing standard output: %s", strerror(errno));
    free(buf);
    pbx_close(q);
    return status;
}
