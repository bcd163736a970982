/*
 * cli.h — what the parts of the postbox command share: exit codes, error reporting, the
 * checked parsing of numbers, sizes, types and timeouts, and JSON output.
 *
 * The command is built only on the public API (include/postbox.h), like any program a user
 * would write, so that it exercises the library the way users do and can never depend on
 * internals. Each subcommand lives in one function cmd_NAME(argc, argv) that returns the exit
 * status; main() in postbox.c dispatches.
 */
#ifndef PBX_CLI_H
#define PBX_CLI_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "postbox.h"

/* Exit statuses; documented in postbox(1) and docs/cli.md. */
enum {
    EXIT_DONE = 0,  /* done */
    EXIT_NOMSG = 1, /* no message, mailbox stayed full, or timed out */
    EXIT_USAGE = 2, /* bad command line */
    EXIT_FAIL = 3   /* any other failure */
};

/* The subcommand being run ("send", ...), for usage messages. */
extern const char *cli_command;

/* "postbox CMD: <message>; try 'postbox CMD --help'" on stderr; returns EXIT_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For a command that takes exactly one mailbox after its options: -1 when argv[optind] is it,
 * else the usage error ("no mailbox named", or too_many when there are more operands). */
int cli_one_mailbox(int argc, const char *too_many);

/* "postbox: NAME: <pbx_strerror(err)>" on stderr; returns the exit status err calls for
 * (EXIT_NOMSG for -ENOMSG, -EAGAIN and -ETIMEDOUT, EXIT_FAIL otherwise). */
int cli_fail(const char *name, int err);

/* "postbox: NAME: <message>" on stderr; returns EXIT_FAIL. */
int cli_failf(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checked parsing. Each returns 0, or prints a usage error naming the option and returns
 * EXIT_USAGE. what is the option's name as the user wrote it ("--max-bytes"). */
int cli_parse_size(const char *what, const char *s, uint64_t max, uint64_t *out);
int cli_parse_type(const char *what, const char *s, long *out);
int cli_parse_seconds(const char *what, const char *s, struct timespec *out);

/* Open an existing mailbox, reporting failure; returns 0 or an exit status. */
int cli_open(const char *name, pbx_t **q);

/* Human formatting: "1.5M", "64K", "512" (powers of 1024), and "3s", "5m", "2h", "4d". */
void cli_human_size(uint64_t n, char *buf, size_t cap);
void cli_human_age(int64_t then_ns, char *buf, size_t cap);
const char *cli_overflow_name(enum pbx_overflow o);
/* The System V key of a mailbox made by the System V drop-in ("0x0000abcd", "private"),
 * or "-" for any other mailbox. */
void cli_sysv_key(const char *name, char *buf, size_t cap);
/* The user name of uid, or its number. */
void cli_user_name(unsigned uid, char *buf, size_t cap);

/* CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds. */
int64_t cli_now_mono(void);
int64_t cli_now_real(void);

/* JSON output: a string with escapes (len bytes, which must be valid UTF-8). */
void cli_json_string(FILE *f, const char *s, size_t len);
/* Whether len bytes at s are well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int cli_utf8_valid(const unsigned char *s, size_t len);
/* Standard base64 with padding. */
void cli_base64(FILE *f, const unsigned char *s, size_t len);

/* The subcommands. */
int cmd_create(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_recv(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_peers(int argc, char **argv);

/* Signals that end --follow, watch and send --lines: the handler only sets this flag, to the
 * signal's number. */
extern volatile int cli_stop;
void cli_catch_stop_signals(void);

/* Which of the standard descriptors 0, 1, 2 were closed when postbox started (bit fd): each
 * was then opened onto /dev/null, so that no mailbox descriptor can land there. */
extern unsigned cli_closed_fds;

/* Report an option getopt_long rejected ('?' or ':'): a missing value, an unknown option, or
 * an abbreviation that fits more than one of opts; returns EXIT_USAGE. */
struct option;
int cli_bad_option(int c, char **argv, const struct option *opts);

#endif
