/*
 * postbox.c — the postbox command: main(), the top-level help, and the helpers every
 * subcommand shares (error lines, checked number parsing, human formatting, JSON strings).
 *
 * Every error is one line on standard error that names the mailbox (or the subcommand, for a
 * usage error) and the reason, and the exit status says what kind of failure it was (see
 * cli.h), so that shell scripts can tell "nothing there yet" from "broken".
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const char *cli_command = "";
volatile int cli_stop;
unsigned cli_closed_fds;

static const char top_help[] =
    "Usage: postbox COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Create, inspect and remove postbox mailboxes, and send and receive messages from the\n"
    "shell. Mailboxes live in /dev/shm (or $POSTBOX_DIR) as files named pbx.NAME.\n"
    "\n"
    "Commands:\n"
    "  create NAME        create a mailbox (capacity, overflow policy, permissions)\n"
    "  send NAME [DATA]   send DATA, or standard input, as one message (--lines: one a line)\n"
    "  recv NAME          receive a message and write its bytes to standard output\n"
    "  ls                 list the mailboxes, like ipcs -q\n"
    "  stat NAME          show everything about one mailbox\n"
    "  watch NAME...      show depth and rates live, until interrupted\n"
    "  peers NAME         list the live processes that have a mailbox open\n"
    "  rm NAME...         remove mailboxes, like ipcrm (blocked callers are told)\n"
    "\n"
    "Run 'postbox COMMAND --help' for the options of a command.\n"
    "\n"
    "Example, in two shells:\n"
    "  postbox create jobs\n"
    "  seq 5 | postbox send --lines jobs         # shell 1: five messages\n"
    "  postbox recv --lines --follow jobs        # shell 2: prints them, waits for more\n"
    "  postbox ls\n"
    "  postbox rm jobs\n"
    "\n"
    "Exit status: 0 done, 1 no message or timed out, 2 usage error, 3 any other failure.\n"
    "Documentation: postbox(1), docs/cli.md.\n";

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "postbox%s%s: ", *cli_command ? " " : "", cli_command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "; try 'postbox %s%s--help'\n", cli_command, *cli_command ? " " : "");
    va_end(ap);
    return EXIT_USAGE;
}

int cli_one_mailbox(int argc, const char *too_many)
{
    if (argc - optind < 1)
        return cli_usage("no mailbox named");
    if (argc - optind > 1)
        return cli_usage("%s", too_many);
    return -1;
}

int cli_fail(const char *name, int err)
{
    /* Every -ENOENT the command reports comes from opening a mailbox (the library's text also
     * covers an unheld claim). */
    const char *why = err == -ENOENT ? "no such mailbox" : pbx_strerror(err);
    if (err == -EINVAL && strncmp(name, "spool:", 6) != 0 && strchr(name, '/') == NULL &&
        cli_command && (!strcmp(cli_command, "create") || !strcmp(cli_command, "rm")))
        why = "invalid mailbox name (1-200 characters of A-Z a-z 0-9 . _ -)";
    fprintf(stderr, "postbox: %s: %s\n", *name ? name : "''", why);
    return err == -ENOMSG || err == -EAGAIN || err == -ETIMEDOUT ? EXIT_NOMSG : EXIT_FAIL;
}

int cli_failf(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "postbox: %s: ", *name ? name : "''"); /* an empty name, visibly */
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_FAIL;
}

int cli_bad_option(int c, char **argv, const struct option *opts)
{
    const char *opt = argv[optind - 1];
    if (c == ':')
        return cli_usage("option '%s' needs a value", opt);
    if (optopt && strncmp(opt, "--", 2) != 0)
        return cli_usage("unknown option '-%c'", optopt);
    /* getopt_long says '?' for an abbreviation that fits several options too. */
    if (strncmp(opt, "--", 2) == 0 && opt[2] && opt[2] != '=') {
        size_t len = strcspn(opt + 2, "="), fits = 0, used = 0;
        char list[256] = "";
        for (const struct option *o = opts; o && o->name; o++)
            if (strncmp(o->name, opt + 2, len) == 0 && used < sizeof list) {
                int w =
                    snprintf(list + used, sizeof list - used, "%s--%s", fits ? ", " : "", o->name);
                used += w > 0 ? (size_t) w : 0;
                fits++;
            }
        if (fits > 1)
            return cli_usage("ambiguous option '%.*s' (%s)", (int) len + 2, opt, list);
    }
    return cli_usage("unknown option '%s'", opt);
}

int cli_parse_size(const char *what, const char *s, uint64_t max, uint64_t *out)
{
    const char *p = s;
    uint64_t n = 0;
    if (!isdigit((unsigned char) *p))
        return cli_usage("bad value '%s' for %s: expected a number like 4096, 64K or 1M", s, what);
    for (; isdigit((unsigned char) *p); p++) {
        unsigned d = (unsigned) (*p - '0');
        if (n > (UINT64_MAX - d) / 10)
            return cli_usage("value '%s' for %s is too large (at most %llu)", s, what,
                             (unsigned long long) max);
        n = n * 10 + d;
    }
    unsigned shift = 0;
    switch (*p) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case '\0':
        break;
    default:
        return cli_usage("bad value '%s' for %s: expected a number like 4096, 64K or 1M", s, what);
    }
    if (shift && p[1] != '\0')
        return cli_usage("bad value '%s' for %s: expected a number like 4096, 64K or 1M", s, what);
    if (n > (UINT64_MAX >> shift) || (n << shift) > max)
        return cli_usage("value '%s' for %s is too large (at most %llu)", s, what,
                         (unsigned long long) max);
    *out = n << shift;
    return 0;
}

int cli_parse_type(const char *what, const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || isspace((unsigned char) *s) || *s == '+')
        return cli_usage("bad type '%s' for %s: expected a whole number", s, what);
    if (errno == ERANGE)
        return cli_usage("type '%s' for %s is out of range", s, what);
    *out = v;
    return 0;
}

/* Seconds as a decimal number ("2", "0.5", ".25"); no sign, exponent, hex, inf or nan. */
int cli_parse_seconds(const char *what, const char *s, struct timespec *out)
{
    const char *p = s;
    long long sec = 0;
    long nsec = 0, scale = 100000000;
    int digits = 0;
    for (; isdigit((unsigned char) *p); p++, digits++) {
        if (sec > 100000000)
            return cli_usage("value '%s' for %s is too large", s, what);
        sec = sec * 10 + (*p - '0');
    }
    if (*p == '.')
        for (p++; isdigit((unsigned char) *p); p++, digits++) {
            nsec += (*p - '0') * scale;
            scale /= 10;
        }
    if (!digits || *p != '\0')
        return cli_usage("bad value '%s' for %s: expected seconds, like 5 or 0.5", s, what);
    out->tv_sec = (time_t) sec;
    out->tv_nsec = nsec;
    return 0;
}

int cli_open(const char *name, pbx_t **q)
{
    int r = pbx_open(name, 0, NULL, q);
    return r < 0 ? cli_fail(name, r) : 0;
}

void cli_human_size(uint64_t n, char *buf, size_t cap)
{
    static const char units[] = "KMGTPE";
    if (n < 1024) {
        snprintf(buf, cap, "%llu", (unsigned long long) n);
        return;
    }
    double v = (double) n;
    int u = -1;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (v == (double) (uint64_t) v || v >= 100)
        snprintf(buf, cap, "%.0f%c", v, units[u]);
    else
        snprintf(buf, cap, "%.1f%c", v, units[u]);
}

void cli_human_age(int64_t then_ns, char *buf, size_t cap)
{
    if (then_ns <= 0) {
        snprintf(buf, cap, "-");
        return;
    }
    int64_t s = (cli_now_real() - then_ns) / 1000000000;
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, cap, "%llds", (long long) s);
    else if (s < 7200)
        snprintf(buf, cap, "%lldm", (long long) (s / 60));
    else if (s < 172800)
        snprintf(buf, cap, "%lldh", (long long) (s / 3600));
    else
        snprintf(buf, cap, "%lldd", (long long) (s / 86400));
}

const char *cli_overflow_name(enum pbx_overflow o)
{
    switch (o) {
    case PBX_BLOCK:
        return "block";
    case PBX_DROP_NEWEST:
        return "drop-newest";
    case PBX_DROP_OLDEST:
        return "drop-oldest";
    }
    return "?";
}

void cli_sysv_key(const char *name, char *buf, size_t cap)
{
    unsigned key;
    int end = 0;
    if (sscanf(name, "sysv.0x%8x%n", &key, &end) == 1 && end == 15 && name[end] == '\0')
        snprintf(buf, cap, "0x%08x", key);
    else if (strncmp(name, "sysv.private.", 13) == 0 && name[13] != '\0')
        snprintf(buf, cap, "private");
    else
        snprintf(buf, cap, "-");
}

void cli_user_name(unsigned uid, char *buf, size_t cap)
{
    struct passwd *pw = getpwuid((uid_t) uid);
    if (pw)
        snprintf(buf, cap, "%s", pw->pw_name);
    else
        snprintf(buf, cap, "%u", uid);
}

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cli_now_mono(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t cli_now_real(void)
{
    return clock_ns(CLOCK_REALTIME);
}

void cli_json_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        switch (c) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

int cli_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

void cli_base64(FILE *f, const unsigned char *s, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t) s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t) s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        fputc(tab[(v >> 18) & 63], f);
        fputc(tab[(v >> 12) & 63], f);
        fputc(i + 1 < len ? tab[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < len ? tab[v & 63] : '=', f);
    }
    fputc('"', f);
}

static void on_stop(int sig)
{
    cli_stop = sig; /* which signal, for a command that dies of it after saying where it was */
}

/* No SA_RESTART: a blocked receive or sleep returns at once with EINTR. */
void cli_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static const struct {
    const char *name;
    int (*run)(int, char **);
} commands[] = {
    {"create", cmd_create}, {"send", cmd_send}, {"recv", cmd_recv},   {"ls", cmd_ls},
    {"stat", cmd_stat},     {"rm", cmd_rm},     {"watch", cmd_watch}, {"peers", cmd_peers},
};

/* A closed standard descriptor would be taken by the next open(): a mailbox's descriptor on
 * fd 0 would be read as the message, one on fd 1 written to. Fill each with /dev/null and
 * remember it, so that send and recv can refuse instead. */
static void guard_standard_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (n < 0)
            _exit(EXIT_FAIL); /* nothing safe to do, nowhere to say it */
        if (n != fd) {
            dup2(n, fd);
            close(n);
        }
        cli_closed_fds |= 1u << fd;
    }
}

int main(int argc, char **argv)
{
    guard_standard_fds();
    if (argc < 2)
        return cli_usage("no command given");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (!strcmp(cmd, "help") && argc > 2) {
            char *sub[] = {argv[2], (char *) "--help", NULL};
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    cli_command = commands[i].name;
                    return commands[i].run(2, sub);
                }
            return cli_usage("unknown command '%s'", argv[2]);
        }
        fputs(top_help, stdout);
        return fflush(stdout) ? EXIT_FAIL : EXIT_DONE;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("postbox %d.%d.%d (library %s)\n", PBX_VERSION_MAJOR, PBX_VERSION_MINOR,
               PBX_VERSION_PATCH, pbx_version());
        return fflush(stdout) ? EXIT_FAIL : EXIT_DONE;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) {
            cli_command = commands[i].name;
            return commands[i].run(argc - 1, argv + 1);
        }
    if (!strcmp(cmd, "relay")) {
        /* The relay links nats.c, so it is a program of its own (docs/relay.md): the one
         * beside this one, else the one on PATH. */
        char self[4096], path[4200];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        char *slash = n > 0 ? (self[n] = 0, strrchr(self, '/')) : NULL;
        argv[1] = (char *) "postbox-relay";
        if (slash && (*slash = 0, snprintf(path, sizeof path, "%s/postbox-relay", self) > 0))
            execv(path, argv + 1);
        execvp("postbox-relay", argv + 1);
        fprintf(stderr, "postbox relay: postbox-relay not found (it is built when libnats-dev "
                        "is installed; docs/relay.md)\n");
        return EXIT_FAIL;
    }
    if (cmd[0] == '-')
        return cli_usage("unknown option '%s'", cmd);
    return cli_usage("unknown command '%s'", cmd);
}
