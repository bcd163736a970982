/*
 * info.c — the mailbox management subcommands: create, ls, stat, rm and watch.
 *
 * ls lists shared-memory mailboxes by reading the mailbox directory ($POSTBOX_DIR or
 * /dev/shm) for files named pbx.NAME and opening each one through the public API, exactly as
 * any other process would. A mailbox this user may not open is listed from its file (owner,
 * mode, size), as ipcs lists a queue it cannot read; any other file that does not open as a
 * mailbox (damaged, another version) is reported on one line of standard error and skipped,
 * so one bad file never hides the others. The ls and watch tables fit 80 columns unless
 * --wide is given. Every other subcommand passes the name to pbx_open()
 * unchanged, so it works for every transport the library knows (spool:PATH included). ls,
 * stat and watch only look: they open with PBX_RDONLY, which needs read permission alone and
 * changes nothing in the mailbox (not even its list of participants); so does peers.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char create_help[] =
    "Usage: postbox create NAME [OPTIONS]\n"
    "\n"
    "Create the mailbox NAME (1-200 characters of A-Z a-z 0-9 . _ -). If it exists already,\n"
    "succeed if its limits are those asked for, and fail (exit 3) if they differ.\n"
    "\n"
    "      --max-bytes N      capacity in payload bytes (default 1M)\n"
    "      --max-msgs N       capacity in messages (default 4096)\n"
    "      --max-msg-size N   largest message (default 8K, at most --max-bytes)\n"
    "      --overflow POLICY  what a send into a full mailbox does: block (default; wait\n"
    "                         for room), drop-newest (discard the new message) or\n"
    "                         drop-oldest (discard the oldest until it fits)\n"
    "      --mode MODE        permission bits in octal (default 0600); the umask does\n"
    "                         not apply\n"
    "      --exclusive        fail (exit 3) if the mailbox exists\n"
    "      --shared           accept an existing mailbox that another user owns\n"
    "  -h, --help             show this help\n"
    "\n"
    "Sizes and counts take a suffix K, M or G (powers of 1024): 64K, 1M. --max-bytes is at\n"
    "most 1T for a shared-memory mailbox.\n"
    "\n"
    "An existing mailbox owned by another user is refused (exit 3) unless --shared is given:\n"
    "what you then send, that user can read.\n"
    "\n"
    "Example:\n"
    "  postbox create jobs --max-bytes 64M --max-msg-size 1M --mode 0660\n";

static const char ls_help[] =
    "Usage: postbox ls [--wide | --json | --names]\n"
    "\n"
    "List the shared-memory mailboxes in $POSTBOX_DIR (default /dev/shm), like ipcs -q:\n"
    "NAME, KEY (the System V key of a queue made by the System V drop-in, or -), OWNER,\n"
    "MODE, SIZE (the memory it takes), MSGS and BYTES held, FULL (the fuller of the two, in\n"
    "per cent) and PEERS (live processes that have it open, this command not counted; see\n"
    "postbox peers). --wide adds CAPACITY (messages/bytes), OVERFLOW policy, DROPPED\n"
    "messages, and the last SENDER and RECEIVER: process id and how long ago.\n"
    "\n"
    "      --wide    every column (the default table fits 80 columns)\n"
    "      --json    a JSON array with one object per mailbox (the fields of stat --json)\n"
    "      --names   only the names, one a line\n"
    "  -h, --help    show this help\n"
    "\n"
    "A mailbox this user may not open is listed with the owner, mode and size of its file\n"
    "and ? for the rest, and said so on standard error; any other file that does not open\n"
    "as a mailbox is reported on standard error and skipped.\n"
    "\n"
    "Below the table, one line \"relayed: ROUTE\" for each mailbox a running postbox relay\n"
    "carries to or from another host (docs/relay.md).\n";

static const char stat_help[] =
    "Usage: postbox stat NAME [--json]\n"
    "\n"
    "Show the limits, contents and counters of the mailbox NAME. Looking needs only read\n"
    "permission and changes nothing in the mailbox.\n"
    "\n"
    "      --json    one JSON object; times are nanoseconds since the Epoch (0: never)\n"
    "  -h, --help    show this help\n";

static const char rm_help[] =
    "Usage: postbox rm [-f] NAME...\n"
    "\n"
    "Remove mailboxes, like ipcrm: each name disappears at once, queued messages are\n"
    "discarded, and every process blocked on it gets 'mailbox was removed'. A damaged file\n"
    "that is not a valid mailbox is removed too.\n"
    "\n"
    "  -f, --force   say nothing about mailboxes that do not exist\n"
    "  -h, --help    show this help\n";

static const char watch_help[] =
    "Usage: postbox watch NAME... [OPTIONS]\n"
    "\n"
    "Show the depth and traffic of mailboxes, refreshed until interrupted (Ctrl-C): messages\n"
    "and bytes held, how full, messages sent, received and dropped per second since the\n"
    "last refresh, and processes waiting. On a terminal the screen is redrawn; otherwise\n"
    "one line is printed per mailbox and refresh. Watching needs only read permission.\n"
    "\n"
    "      --interval SEC   seconds between refreshes (default 1)\n"
    "      --count N        stop after N refreshes\n"
    "      --wide           wider columns on a terminal (the default table fits 80\n"
    "                        columns; a longer name is cut to 16 characters)\n"
    "  -h, --help           show this help\n";

/* ---- create ------------------------------------------------------------------------------ */

static int parse_overflow(const char *s, enum pbx_overflow *o)
{
    if (!strcmp(s, "block"))
        *o = PBX_BLOCK;
    else if (!strcmp(s, "drop-newest"))
        *o = PBX_DROP_NEWEST;
    else if (!strcmp(s, "drop-oldest"))
        *o = PBX_DROP_OLDEST;
    else
        return cli_usage("bad value '%s' for --overflow: expected block, drop-newest or "
                         "drop-oldest",
                         s);
    return 0;
}

static int parse_mode(const char *s, uint32_t *mode)
{
    char *end;
    errno = 0;
    unsigned long m = strtoul(s, &end, 8);
    if (*s < '0' || *s > '7' || *end != '\0' || errno || m > 0777)
        return cli_usage("bad value '%s' for --mode: expected octal permission bits like 0640", s);
    *mode = (uint32_t) m;
    return 0;
}

enum { GIVEN_BYTES = 1, GIVEN_MSGS = 2, GIVEN_SIZE = 4, GIVEN_OVERFLOW = 8, GIVEN_MODE = 16 };

/* An existing mailbox satisfies create if every limit the user gave matches and it is the
 * caller's own, or --shared accepts another user's: a mailbox someone else made (with a mode
 * that lets us in) would otherwise be used unawares, and that user read what we send. */
static int check_existing(const char *name, const struct pbx_options *o, int given, int shared)
{
    pbx_t *q;
    struct pbx_stat st;
    int r = pbx_open(name, 0, NULL, &q);
    if (r < 0)
        return cli_fail(name, r);
    r = pbx_stat(q, &st);
    pbx_close(q);
    if (r < 0)
        return cli_fail(name, r);
    if (st.uid != geteuid() && !shared) {
        char user[64];
        cli_user_name(st.uid, user, sizeof user);
        return cli_failf(name,
                         "exists already, owned by %s (mode %04o); give --shared to use "
                         "another user's mailbox",
                         user, st.mode);
    }
    if ((given & GIVEN_BYTES) && st.max_bytes != o->max_bytes)
        return cli_failf(name, "exists already with max-bytes %llu, not %llu",
                         (unsigned long long) st.max_bytes, (unsigned long long) o->max_bytes);
    if ((given & GIVEN_MSGS) && st.max_msgs != o->max_msgs)
        return cli_failf(name, "exists already with max-msgs %u, not %u", st.max_msgs, o->max_msgs);
    if ((given & GIVEN_SIZE) && st.max_msg_size != o->max_msg_size)
        return cli_failf(name, "exists already with max-msg-size %u, not %u", st.max_msg_size,
                         o->max_msg_size);
    if ((given & GIVEN_OVERFLOW) && st.overflow != o->overflow)
        return cli_failf(name, "exists already with overflow %s, not %s",
                         cli_overflow_name(st.overflow), cli_overflow_name(o->overflow));
    if ((given & GIVEN_MODE) && st.mode != o->mode)
        return cli_failf(name, "exists already with mode %04o, not %04o", st.mode, o->mode);
    return EXIT_DONE;
}

/* The largest --max-bytes of a shared-memory mailbox (the library's limit, docs/api.md). */
#define SHM_MAX_BYTES (1ull << 40)

static const char *mailbox_dir(void);

/* The directory in which creating name makes a new entry: $POSTBOX_DIR (or /dev/shm) for a
 * shared-memory mailbox; for spool:PATH, PATH if it exists (its files go there), else its
 * parent. Returns 0, or -1 when there is no such directory to name. */
static int creation_dir(const char *name, char *buf, size_t cap)
{
    if (strncmp(name, "spool:", 6) != 0) {
        snprintf(buf, cap, "%s", mailbox_dir());
        return 0;
    }
    const char *path = name + 6;
    if ((size_t) snprintf(buf, cap, "%s", path) >= cap || !*path)
        return -1;
    if (access(buf, F_OK) == 0)
        return 0;
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        snprintf(buf, cap, ".");
    else if (slash == buf)
        buf[1] = '\0';
    else
        *slash = '\0';
    return 0;
}

int cmd_create(int argc, char **argv)
{
    static const struct option opts[] = {{"max-bytes", required_argument, NULL, 'B'},
                                         {"max-msgs", required_argument, NULL, 'M'},
                                         {"max-msg-size", required_argument, NULL, 'S'},
                                         {"overflow", required_argument, NULL, 'O'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {"exclusive", no_argument, NULL, 'x'},
                                         {"shared", no_argument, NULL, 'X'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct pbx_options o;
    pbx_options_init(&o);
    int c, r, given = 0, flags = PBX_CREATE, shared = 0;
    uint64_t v;
    const char *msgs_arg = "", *bytes_arg = "";
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'B':
            if ((r = cli_parse_size("--max-bytes", optarg, UINT64_MAX >> 1, &v)))
                return r;
            o.max_bytes = v;
            bytes_arg = optarg;
            given |= GIVEN_BYTES;
            break;
        case 'M':
            if ((r = cli_parse_size("--max-msgs", optarg, UINT32_MAX, &v)))
                return r;
            o.max_msgs = (uint32_t) v;
            msgs_arg = optarg;
            given |= GIVEN_MSGS;
            break;
        case 'S':
            if ((r = cli_parse_size("--max-msg-size", optarg, UINT32_MAX, &v)))
                return r;
            o.max_msg_size = (uint32_t) v;
            given |= GIVEN_SIZE;
            break;
        case 'O':
            if ((r = parse_overflow(optarg, &o.overflow)))
                return r;
            given |= GIVEN_OVERFLOW;
            break;
        case 'm':
            if ((r = parse_mode(optarg, &o.mode)))
                return r;
            given |= GIVEN_MODE;
            break;
        case 'x':
            flags |= PBX_EXCL;
            break;
        case 'X':
            shared = 1;
            break;
        case 'h':
            fputs(create_help, stdout);
            return EXIT_DONE;
        default:
            return cli_bad_option(c, argv, opts);
        }
    }
    if ((r = cli_one_mailbox(argc, "too many arguments (one mailbox at a time)")) >= 0)
        return r;
    const char *name = argv[optind];
    /* A small mailbox gets a matching largest message rather than an error. */
    if ((given & (GIVEN_BYTES | GIVEN_SIZE)) == GIVEN_BYTES && o.max_msg_size > o.max_bytes)
        o.max_msg_size = (uint32_t) o.max_bytes;
    if ((given & GIVEN_MSGS) && (o.max_msgs < 1 || o.max_msgs > 16777216))
        return cli_usage("bad value '%s' for --max-msgs: from 1 to 16777216 (16M)", msgs_arg);
    if ((given & GIVEN_BYTES) && o.max_bytes < 1)
        return cli_usage("bad value '0' for --max-bytes: at least 1");
    /* The shared-memory transport's limit (2^40); a spool has none of its own. */
    if (o.max_bytes > SHM_MAX_BYTES && strncmp(name, "spool:", 6) != 0)
        return cli_usage("value '%s' for --max-bytes is too large (at most 1T, %llu bytes, for a "
                         "shared-memory mailbox)",
                         bytes_arg, (unsigned long long) SHM_MAX_BYTES);
    if (o.max_msg_size > o.max_bytes)
        return cli_usage("--max-msg-size %u is larger than --max-bytes %llu", o.max_msg_size,
                         (unsigned long long) o.max_bytes);

    pbx_t *q;
    r = pbx_open(name, flags | PBX_EXCL, &o, &q);
    if (r == -EEXIST && !(flags & PBX_EXCL))
        return check_existing(name, &o, given, shared);
    if (r == -EACCES || r == -EPERM) {
        /* Not the mailbox's mode (there is no mailbox yet): its directory refuses the new file. */
        char dir[4096];
        if (!creation_dir(name, dir, sizeof dir) && access(dir, W_OK | X_OK) != 0)
            return cli_failf(name,
                             "cannot create the mailbox: the directory %s is not writable "
                             "by you (%s)",
                             dir, strerror(errno));
    }
    if (r < 0) {
        if (r == -EINVAL && strncmp(name, "spool:", 6) != 0)
            return cli_failf(name, "invalid mailbox name or limits (names are 1-200 "
                                   "characters of A-Z a-z 0-9 . _ -; max-msgs at most 16M)");
        return cli_fail(name, r);
    }
    pbx_close(q);
    return EXIT_DONE;
}

/* ---- ls and stat --------------------------------------------------------------------------- */

static const char *mailbox_dir(void)
{
    const char *d = getenv("POSTBOX_DIR");
    return d && *d ? d : "/dev/shm";
}

static unsigned percent_full(const struct pbx_stat *st)
{
    double m = st->max_msgs ? (double) st->msgs / st->max_msgs : 0;
    double b = st->max_bytes ? (double) st->bytes / st->max_bytes : 0;
    double f = (m > b ? m : b) * 100;
    return f > 0 && f < 1 ? 1 : (unsigned) (f + 0.5);
}

static void stat_json(FILE *f, const char *name, const struct pbx_stat *st, long peers)
{
    char key[32], user[64];
    cli_sysv_key(name, key, sizeof key);
    cli_user_name(st->uid, user, sizeof user);
    /* A spool's path may be any bytes: not valid UTF-8, it goes out as base64 (as recv --json
     * does with payloads), so that the output stays valid JSON. */
    if (cli_utf8_valid((const unsigned char *) name, strlen(name))) {
        fputs("{\"name\":", f);
        cli_json_string(f, name, strlen(name));
    } else {
        fputs("{\"name_base64\":", f);
        cli_base64(f, (const unsigned char *) name, strlen(name));
    }
    fputs(",\"key\":", f);
    cli_json_string(f, key, strlen(key));
    fputs(",\"owner\":", f);
    cli_json_string(f, user, strlen(user));
    fprintf(f,
            ",\"uid\":%u,\"gid\":%u,\"mode\":\"%04o\",\"msgs\":%llu,\"bytes\":%llu,"
            "\"max_msgs\":%u,\"max_bytes\":%llu,\"max_msg_size\":%u,\"full_percent\":%u,"
            "\"overflow\":\"%s\",\"sent\":%llu,\"received\":%llu,\"dropped\":%llu,"
            "\"last_send_pid\":%d,\"last_send_time\":%lld,\"last_recv_pid\":%d,"
            "\"last_recv_time\":%lld,\"send_waiters\":%u,\"recv_waiters\":%u,"
            "\"repairs\":%llu,\"region_size\":%llu,\"claimed\":%llu,\"peers\":%ld}",
            (unsigned) st->uid, (unsigned) st->gid, st->mode, (unsigned long long) st->msgs,
            (unsigned long long) st->bytes, st->max_msgs, (unsigned long long) st->max_bytes,
            st->max_msg_size, percent_full(st), cli_overflow_name(st->overflow),
            (unsigned long long) st->sent, (unsigned long long) st->received,
            (unsigned long long) st->dropped, (int) st->last_send_pid,
            (long long) st->last_send_time, (int) st->last_recv_pid, (long long) st->last_recv_time,
            st->send_waiters, st->recv_waiters, (unsigned long long) st->repairs,
            (unsigned long long) st->region_size, (unsigned long long) st->claimed, peers);
}

/* The live participants other than this command itself (which has it open to look). */
static ssize_t other_peers(pbx_t *q, struct pbx_peer *out, size_t cap)
{
    struct pbx_peer all[128];
    ssize_t n = pbx_peers(q, all, 128);
    if (n < 0)
        return n;
    size_t k = 0;
    for (ssize_t i = 0; i < n && i < 128; i++) {
        if (all[i].pid == getpid()) {
            if (all[i].handles <= 1)
                continue;
            all[i].handles--;
        }
        if (k < cap)
            out[k] = all[i];
        k++;
    }
    return (ssize_t) k;
}

static int stat_named(const char *name, struct pbx_stat *st, long *peers)
{
    pbx_t *q;
    int r = pbx_open(name, PBX_RDONLY, NULL, &q);
    if (r < 0)
        return r;
    r = pbx_stat(q, st);
    ssize_t n = other_peers(q, NULL, 0);
    *peers = n < 0 ? -1 : (long) n;
    pbx_close(q);
    return r;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Whether s is a name a shared-memory mailbox can have: 1 to PBX_NAME_MAX characters of
 * A-Z a-z 0-9 . _ -, and not . or .. (the library's rule). */
static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PBX_NAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char) *s) && *s != '.' && *s != '_' && *s != '-')
            return 0;
    return 1;
}

/* s on stderr with every byte outside printable ASCII (and the backslash) escaped: \n, \t,
 * \\, \xff. Anyone can make files in the mailbox directory; their names must not be able to
 * forge or split our lines. At most 300 bytes of s are shown. */
static void put_escaped(FILE *f, const char *s)
{
    size_t i = 0;
    for (; s[i] && i < 300; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c == '\\')
            fputs("\\\\", f);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    if (s[i])
        fputs("...", f);
}

/* The names of the files pbx.NAME in the mailbox directory, sorted. A file whose NAME is not
 * a valid mailbox name is reported on stderr (escaped) and left out. */
static int list_names(char ***out, size_t *count)
{
    const char *dir = mailbox_dir();
    DIR *d = opendir(dir);
    if (!d)
        return cli_failf(dir, "cannot read the mailbox directory: %s", strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "pbx.", 4) != 0 || e->d_name[4] == '\0')
            continue;
        if (!valid_name(e->d_name + 4)) {
            fputs("postbox: ", stderr);
            put_escaped(stderr, e->d_name);
            fputs(": not a valid mailbox name (skipped)\n", stderr);
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **more = realloc(names, cap * sizeof *names);
            if (!more)
                break;
            names = more;
        }
        if ((names[n] = strdup(e->d_name + 4)) != NULL)
            n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, by_name);
    *out = names;
    *count = n;
    return 0;
}

struct row {
    char name[PBX_NAME_MAX + 1], key[32], owner[64], mode[8], size[16], msgs[24], bytes[16],
        cap[40], full[8], overflow[16], dropped[24], peers[24], sender[40], receiver[40];
};

/* A mailbox this user may not open: what its file tells (owner, mode, size), as ipcs shows
 * a queue it cannot read; what it holds is unknown ("?"). */
static void fill_row_from_file(struct row *w, const char *name, const struct stat *fs)
{
    snprintf(w->name, sizeof w->name, "%s", name);
    cli_sysv_key(name, w->key, sizeof w->key);
    cli_user_name((unsigned) fs->st_uid, w->owner, sizeof w->owner);
    snprintf(w->mode, sizeof w->mode, "%04o", (unsigned) (fs->st_mode & 07777));
    cli_human_size((uint64_t) fs->st_size, w->size, sizeof w->size);
    char *unknown[] = {w->msgs,    w->bytes, w->cap,    w->full,    w->overflow,
                       w->dropped, w->peers, w->sender, w->receiver};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        strcpy(unknown[i], "?");
}

static void fill_row(struct row *w, const char *name, const struct pbx_stat *st, long peers)
{
    if (peers < 0)
        snprintf(w->peers, sizeof w->peers, "-");
    else
        snprintf(w->peers, sizeof w->peers, "%ld", peers);
    char a[16], b[16];
    snprintf(w->name, sizeof w->name, "%s", name);
    cli_sysv_key(name, w->key, sizeof w->key);
    cli_user_name(st->uid, w->owner, sizeof w->owner);
    snprintf(w->mode, sizeof w->mode, "%04o", st->mode);
    cli_human_size(st->region_size, w->size, sizeof w->size);
    snprintf(w->msgs, sizeof w->msgs, "%llu", (unsigned long long) st->msgs);
    cli_human_size(st->bytes, w->bytes, sizeof w->bytes);
    cli_human_size(st->max_msgs, a, sizeof a);
    cli_human_size(st->max_bytes, b, sizeof b);
    snprintf(w->cap, sizeof w->cap, "%s/%s", a, b);
    snprintf(w->full, sizeof w->full, "%u%%", percent_full(st));
    snprintf(w->overflow, sizeof w->overflow, "%s", cli_overflow_name(st->overflow));
    snprintf(w->dropped, sizeof w->dropped, "%llu", (unsigned long long) st->dropped);
    if (st->last_send_pid) {
        cli_human_age(st->last_send_time, a, sizeof a);
        snprintf(w->sender, sizeof w->sender, "%d %s ago", (int) st->last_send_pid, a);
    } else {
        snprintf(w->sender, sizeof w->sender, "-");
    }
    if (st->last_recv_pid) {
        cli_human_age(st->last_recv_time, a, sizeof a);
        snprintf(w->receiver, sizeof w->receiver, "%d %s ago", (int) st->last_recv_pid, a);
    } else {
        snprintf(w->receiver, sizeof w->receiver, "-");
    }
}

/* The columns: field, title, right-aligned, shown only with --wide (the default table fits an
 * 80-column terminal for names of up to about 20 characters). */
#define ROW_FIELDS(X)                                                                              \
    X(name, "NAME", 0, 0)                                                                          \
    X(key, "KEY", 0, 0)                                                                            \
    X(owner, "OWNER", 0, 0)                                                                        \
    X(mode, "MODE", 0, 0)                                                                          \
    X(size, "SIZE", 1, 0)                                                                          \
    X(msgs, "MSGS", 1, 0)                                                                          \
    X(bytes, "BYTES", 1, 0)                                                                        \
    X(cap, "CAPACITY", 1, 1)                                                                       \
    X(full, "FULL", 1, 0)                                                                          \
    X(overflow, "OVERFLOW", 0, 1)                                                                  \
    X(dropped, "DROPPED", 1, 1)                                                                    \
    X(peers, "PEERS", 1, 0)                                                                        \
    X(sender, "SENDER", 0, 1)                                                                      \
    X(receiver, "RECEIVER", 0, 1)

/* Append s to line at *pos, padded to width w (right-aligned if right). */
static void cell(char *line, size_t cap, size_t *pos, int w, const char *s, int right)
{
    int k = snprintf(line + *pos, cap - *pos, right ? "%*s  " : "%-*s  ", w, s);
    if (k > 0)
        *pos = *pos + (size_t) k < cap ? *pos + (size_t) k : cap - 1;
}

/* Print the line without the padding of its last column. */
static void put_line(char *line, size_t pos)
{
    while (pos > 0 && line[pos - 1] == ' ')
        pos--;
    line[pos] = '\0';
    puts(line);
}

static void print_table(const struct row *rows, size_t n, int wide)
{
    char line[1024];
    size_t pos = 0;
#define WIDTH(f, title, right, wide_only) int w_##f = (int) strlen(title);
    ROW_FIELDS(WIDTH)
#undef WIDTH
    for (size_t i = 0; i < n; i++) {
#define GROW(f, title, right, wide_only)                                                           \
    if ((int) strlen(rows[i].f) > w_##f)                                                           \
        w_##f = (int) strlen(rows[i].f);
        ROW_FIELDS(GROW)
#undef GROW
    }
#define HEAD(f, title, right, wide_only)                                                           \
    if (wide || !wide_only)                                                                        \
        cell(line, sizeof line, &pos, w_##f, title, right);
    ROW_FIELDS(HEAD)
#undef HEAD
    put_line(line, pos);
    for (size_t i = 0; i < n; i++) {
        pos = 0;
#define CELL(f, title, right, wide_only)                                                           \
    if (wide || !wide_only)                                                                        \
        cell(line, sizeof line, &pos, w_##f, rows[i].f, right);
        ROW_FIELDS(CELL)
#undef CELL
        put_line(line, pos);
    }
}

/* Mailboxes a running postbox-relay carries (docs/relay.md): it leaves .pbx-relay.NAME in the
 * mailbox directory, holding the route and its state directory; the relay is running while
 * it holds the lock on STATE/lock. One "relayed:" line each, after the table. */
static void print_relayed(void)
{
    DIR *d = opendir(mailbox_dir());
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, ".pbx-relay.", 11))
            continue;
        char path[4096], route[512] = "", state[3500] = "", line[4096];
        snprintf(path, sizeof path, "%s/%s", mailbox_dir(), e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            if (!strncmp(line, "route ", 6))
                snprintf(route, sizeof route, "%.500s", line + 6);
            else if (!strncmp(line, "state ", 6))
                snprintf(state, sizeof state, "%.3400s", line + 6);
        }
        fclose(f);
        snprintf(path, sizeof path, "%s/lock", state);
        int fd = state[0] ? open(path, O_RDWR | O_CLOEXEC) : -1;
        int running = fd >= 0 && lockf(fd, F_TEST, 0) < 0 && (errno == EACCES || errno == EAGAIN);
        if (fd >= 0)
            close(fd);
        if (running && route[0])
            printf("relayed: %s (postbox relay status --state %s)\n", route, state);
    }
    closedir(d);
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'J'},
                                         {"names", no_argument, NULL, 'N'},
                                         {"wide", no_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c, json = 0, only_names = 0, wide = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'J':
            json = 1;
            break;
        case 'N':
            only_names = 1;
            break;
        case 'w':
            wide = 1;
            break;
        case 'h':
            fputs(ls_help, stdout);
            return EXIT_DONE;
        default:
            return cli_bad_option(c, argv, opts);
        }
    }
    if (optind < argc)
        return cli_usage("unexpected argument '%s' (ls takes no names; see stat)", argv[optind]);
    if (json && only_names)
        return cli_usage("give either --json or --names");

    char **names = NULL;
    size_t n = 0;
    int r = list_names(&names, &n);
    if (r)
        return r;
    struct row *rows = calloc(n ? n : 1, sizeof *rows);
    size_t shown = 0;
    if (json)
        printf("[");
    for (size_t i = 0; i < n; i++) {
        struct pbx_stat st;
        long peers = -1;
        if (only_names) {
            printf("%s\n", names[i]);
            continue;
        }
        r = stat_named(names[i], &st, &peers);
        if (r < 0) {
            char path[4096];
            struct stat fs;
            snprintf(path, sizeof path, "%s/pbx.%s", mailbox_dir(), names[i]);
            if (!json && rows && (r == -EACCES || r == -EPERM) && stat(path, &fs) == 0) {
                fill_row_from_file(&rows[shown++], names[i], &fs);
                fprintf(stderr, "postbox: %s: %s (owner, mode and size shown from its file)\n",
                        names[i], pbx_strerror(r));
            } else {
                fprintf(stderr, "postbox: %s: %s (skipped)\n", names[i], pbx_strerror(r));
            }
            continue;
        }
        if (json) {
            printf(shown ? ",\n " : "\n ");
            stat_json(stdout, names[i], &st, peers);
        } else if (rows) {
            fill_row(&rows[shown], names[i], &st, peers);
        }
        shown++;
    }
    if (json)
        printf(shown ? "\n]\n" : "]\n");
    else if (!only_names && rows)
        print_table(rows, shown, wide);
    if (!json && !only_names)
        print_relayed();
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(rows);
    if (fflush(stdout))
        return cli_failf("ls", "writing standard output: %s", strerror(errno));
    return EXIT_DONE;
}

static void print_when(const char *what, pid_t pid, int64_t t)
{
    if (!pid) {
        printf("%-14s never\n", what);
        return;
    }
    char age[16], date[32];
    cli_human_age(t, age, sizeof age);
    time_t s = (time_t) (t / 1000000000);
    struct tm tm;
    localtime_r(&s, &tm);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%-14s pid %d, %s ago (%s)\n", what, (int) pid, age, date);
}

/* The options of a command that takes only --json and --help: parses them, leaving optind at
 * the first operand. Returns -1 to go on, or the exit status to end with (--help, a bad
 * option). */
static int json_and_help_options(int argc, char **argv, const char *help, int *json)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'J'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'J':
            *json = 1;
            break;
        case 'h':
            fputs(help, stdout);
            return EXIT_DONE;
        default:
            return cli_bad_option(c, argv, opts);
        }
    }
    return -1;
}

/* A refused open for looking (stat, watch, peers), which needs read permission only (PBX_RDONLY):
 * say whose mailbox it is and its mode, as the file shows them, rather than only "permission
 * denied". Returns the exit status. */
static int refused_to_look(const char *name, int err)
{
    char path[4096], user[64];
    struct stat fs;
    snprintf(path, sizeof path, "%s/pbx.%s", mailbox_dir(), name);
    if ((err != -EACCES && err != -EPERM) || !valid_name(name) || stat(path, &fs) != 0)
        return cli_fail(name, err);
    cli_user_name((unsigned) fs.st_uid, user, sizeof user);
    return cli_failf(name, "%s (owner %s, mode %04o): looking at a mailbox needs read access",
                     pbx_strerror(err), user, (unsigned) (fs.st_mode & 07777));
}

int cmd_stat(int argc, char **argv)
{
    int json = 0, done = json_and_help_options(argc, argv, stat_help, &json);
    if (done >= 0)
        return done;
    if ((done = cli_one_mailbox(argc, "too many arguments")) >= 0)
        return done;
    const char *name = argv[optind];
    struct pbx_stat st;
    long peers;
    int r = stat_named(name, &st, &peers);
    if (r < 0)
        return refused_to_look(name, r);
    if (json) {
        stat_json(stdout, name, &st, peers);
        printf("\n");
    } else {
        char key[32], user[64], group[64], size[16];
        struct group *g = getgrgid(st.gid);
        cli_sysv_key(name, key, sizeof key);
        cli_user_name(st.uid, user, sizeof user);
        snprintf(group, sizeof group, "%s", g ? g->gr_name : "?");
        cli_human_size(st.region_size, size, sizeof size);
        printf("%-14s %s\n", "name:", name);
        printf("%-14s %s\n", "key:", key);
        printf("%-14s %s (uid %u), group %s (gid %u)\n", "owner:", user, (unsigned) st.uid, group,
               (unsigned) st.gid);
        printf("%-14s %04o\n", "mode:", st.mode);
        printf("%-14s %llu of %u\n", "messages:", (unsigned long long) st.msgs, st.max_msgs);
        if (st.claimed)
            printf("%-14s %llu (held by receivers until acknowledged)\n",
                   "claimed:", (unsigned long long) st.claimed);
        printf("%-14s %llu of %llu\n", "bytes:", (unsigned long long) st.bytes,
               (unsigned long long) st.max_bytes);
        printf("%-14s %u%%\n", "full:", percent_full(&st));
        printf("%-14s %u bytes\n", "max msg size:", st.max_msg_size);
        printf("%-14s %s\n", "overflow:", cli_overflow_name(st.overflow));
        printf("%-14s %llu sent, %llu received, %llu dropped\n",
               "messages ever:", (unsigned long long) st.sent, (unsigned long long) st.received,
               (unsigned long long) st.dropped);
        print_when("last send:", st.last_send_pid, st.last_send_time);
        print_when("last receive:", st.last_recv_pid, st.last_recv_time);
        printf("%-14s %u senders, %u receivers\n", "waiting now:", st.send_waiters,
               st.recv_waiters);
        if (peers >= 0)
            printf("%-14s %ld (see postbox peers)\n", "participants:", peers);
        printf("%-14s %llu\n", "repairs:", (unsigned long long) st.repairs);
        printf("%-14s %s\n", "memory:", size);
    }
    if (fflush(stdout))
        return cli_failf(name, "writing standard output: %s", strerror(errno));
    return EXIT_DONE;
}

/* ---- rm ------------------------------------------------------------------------------------ */

int cmd_rm(int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c, force = 0, status = EXIT_DONE;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":fh", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            force = 1;
            break;
        case 'h':
            fputs(rm_help, stdout);
            return EXIT_DONE;
        default:
            return cli_bad_option(c, argv, opts);
        }
    }
    if (optind == argc)
        return cli_usage("no mailbox named");
    for (int i = optind; i < argc; i++) {
        int r = pbx_unlink(argv[i]);
        if (r < 0 && !(force && r == -ENOENT))
            status = cli_fail(argv[i], r);
    }
    return status;
}

/* ---- watch --------------------------------------------------------------------------------- */

struct watched {
    const char *name;
    pbx_t *q;
    struct pbx_stat st, prev;
    int err, have_prev;
};

static void rate(char *buf, size_t cap, uint64_t now, uint64_t before, double secs, int have)
{
    if (!have || secs <= 0)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.1f", (double) (now - before) / secs);
}

/* The terminal table fits 80 columns; --wide gives its columns more room (long names, high
 * rates). */
static int watch_wide;

static void watch_refresh(struct watched *w, size_t n, double secs, int tty, double interval)
{
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, tty ? "%H:%M:%S" : "%Y-%m-%dT%H:%M:%S", &tm);
    if (tty) {
        printf("\033[H\033[2J");
        printf("postbox watch: every %.1f s, Ctrl-C to stop                    %s\n\n", interval,
               stamp);
        if (watch_wide)
            printf("%-24s %8s %8s %5s %10s %10s %10s %7s %7s\n", "NAME", "MSGS", "BYTES", "FULL",
                   "SENT/s", "RECV/s", "DROP/s", "SEND-W", "RECV-W");
        else
            printf("%-16s %7s %6s %4s %9s %9s %7s %6s %6s\n", "NAME", "MSGS", "BYTES", "FULL",
                   "SENT/s", "RECV/s", "DROP/s", "SEND-W", "RECV-W");
    }
    for (size_t i = 0; i < n; i++) {
        struct watched *m = &w[i];
        if (m->err == -EIDRM) {
            if (tty)
                printf("%-*s (removed)\n", watch_wide ? 24 : 16, m->name);
            else
                printf("%s %s removed\n", stamp, m->name);
            continue;
        }
        char bytes[16], in[24], out[24], drop[24];
        cli_human_size(m->st.bytes, bytes, sizeof bytes);
        rate(in, sizeof in, m->st.sent, m->prev.sent, secs, m->have_prev);
        rate(out, sizeof out, m->st.received, m->prev.received, secs, m->have_prev);
        rate(drop, sizeof drop, m->st.dropped, m->prev.dropped, secs, m->have_prev);
        if (tty && watch_wide)
            printf("%-24s %8llu %8s %4u%% %10s %10s %10s %7u %7u\n", m->name,
                   (unsigned long long) m->st.msgs, bytes, percent_full(&m->st), in, out, drop,
                   m->st.send_waiters, m->st.recv_waiters);
        else if (tty)
            printf("%-16.16s %7llu %6s %3u%% %9s %9s %7s %6u %6u\n", m->name,
                   (unsigned long long) m->st.msgs, bytes, percent_full(&m->st), in, out, drop,
                   m->st.send_waiters, m->st.recv_waiters);
        else
            printf("%s %s msgs=%llu bytes=%llu full=%u%% sent/s=%s recv/s=%s dropped/s=%s "
                   "send_waiters=%u recv_waiters=%u\n",
                   stamp, m->name, (unsigned long long) m->st.msgs,
                   (unsigned long long) m->st.bytes, percent_full(&m->st), in, out, drop,
                   m->st.send_waiters, m->st.recv_waiters);
    }
    fflush(stdout);
}

int cmd_watch(int argc, char **argv)
{
    static const struct option opts[] = {{"interval", required_argument, NULL, 'i'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"wide", no_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct timespec interval = {1, 0};
    uint64_t count = 0;
    int c, r;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            if ((r = cli_parse_seconds("--interval", optarg, &interval)))
                return r;
            if (interval.tv_sec == 0 && interval.tv_nsec < 10000000)
                return cli_usage("bad value '%s' for --interval: at least 0.01 seconds", optarg);
            break;
        case 'n':
            if ((r = cli_parse_size("--count", optarg, UINT64_MAX, &count)))
                return r;
            if (!count)
                return cli_usage("bad value '0' for --count: at least 1 refresh");
            break;
        case 'w':
            watch_wide = 1;
            break;
        case 'h':
            fputs(watch_help, stdout);
            return EXIT_DONE;
        default:
            return cli_bad_option(c, argv, opts);
        }
    }
    if (optind == argc)
        return cli_usage("no mailbox named");
    size_t n = (size_t) (argc - optind);
    struct watched *w = calloc(n, sizeof *w);
    if (!w)
        return cli_fail("watch", -ENOMEM);
    int status = EXIT_DONE;
    for (size_t i = 0; i < n && status == EXIT_DONE; i++) {
        w[i].name = argv[optind + (int) i];
        r = pbx_open(w[i].name, PBX_RDONLY, NULL, &w[i].q);
        if (r < 0)
            status = refused_to_look(w[i].name, r);
    }
    if (status == EXIT_DONE) {
        int tty = isatty(1);
        cli_catch_stop_signals();
        int64_t step = (int64_t) interval.tv_sec * 1000000000 + interval.tv_nsec;
        int64_t last = cli_now_mono(), next = last;
        for (uint64_t k = 0; !cli_stop && (!count || k < count); k++) {
            int64_t now = cli_now_mono();
            for (size_t i = 0; i < n; i++) {
                w[i].prev = w[i].st;
                w[i].have_prev = k > 0 && !w[i].err;
                w[i].err = pbx_stat(w[i].q, &w[i].st);
            }
            watch_refresh(w, n, (double) (now - last) / 1e9, tty, (double) step / 1e9);
            last = now;
            if (count && k + 1 == count)
                break;
            next += step;
            struct timespec at = {(time_t) (next / 1000000000), (long) (next % 1000000000)};
            while (!cli_stop && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL))
                ;
        }
        if (ferror(stdout))
            status = cli_failf("watch", "writing standard output: %s", strerror(errno));
    }
    for (size_t i = 0; i < n; i++)
        pbx_close(w[i].q);
    free(w);
    return status;
}

static const char peers_help[] =
    "Usage: postbox peers NAME [--json]\n"
    "\n"
    "List the live participants of the mailbox NAME: every process that has it open, with\n"
    "PID, ROLES (opened, sent, received, notify: registered for a signal, watch: polls its\n"
    "descriptor), HANDLES it has open, the NOTIFY signal it registered, and SINCE when (its\n"
    "oldest open handle). A process that died is left out, even if its PID was reused since:\n"
    "participants are told apart by PID and start time. This command only looks (read\n"
    "permission is enough) and is not listed.\n"
    "\n"
    "      --json    a JSON array with one object per participant\n"
    "  -h, --help    show this help\n";

static void roles_text(uint32_t roles, char *buf, size_t cap)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{PBX_PEER_OPENED, "opened"},
                 {PBX_PEER_SENT, "sent"},
                 {PBX_PEER_RECEIVED, "received"},
                 {PBX_PEER_NOTIFY, "notify"},
                 {PBX_PEER_WATCH, "watch"}};
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (roles & names[i].bit) {
            int k = snprintf(buf + pos, cap - pos, "%s%s", pos ? "," : "", names[i].name);
            if (k > 0 && pos + (size_t) k < cap)
                pos += (size_t) k;
        }
}

/* A signal's name as kill -l prints it: SIGUSR1, SIGRTMIN+3; its number if it has none. */
static void signal_name(int sig, char *buf, size_t cap)
{
    const char *abbrev = sig < SIGRTMIN || sig > SIGRTMAX ? sigabbrev_np(sig) : NULL;
    if (abbrev)
        snprintf(buf, cap, "SIG%s", abbrev);
    else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
        snprintf(buf, cap, "SIGRTMIN+%d", sig - SIGRTMIN);
    else
        snprintf(buf, cap, "%d", sig);
}

int cmd_peers(int argc, char **argv)
{
    int json = 0, done = json_and_help_options(argc, argv, peers_help, &json);
    if (done >= 0)
        return done;
    if ((done = cli_one_mailbox(argc, "too many arguments")) >= 0)
        return done;
    const char *name = argv[optind];
    pbx_t *q;
    int r = pbx_open(name, PBX_RDONLY, NULL, &q); /* (looking: read access is enough) */
    if (r < 0)
        return refused_to_look(name, r);
    struct pbx_peer p[128];
    ssize_t n = other_peers(q, p, 128);
    pbx_close(q);
    if (n < 0)
        return cli_fail(name, (int) n);
    if (n > 128)
        n = 128;
    char roles[64], age[16];
    if (json) {
        printf("[");
        for (ssize_t i = 0; i < n; i++) {
            roles_text(p[i].roles, roles, sizeof roles);
            printf("%s\n {\"pid\":%d,\"roles\":\"%s\",\"handles\":%u,\"notify_signo\":%d,"
                   "\"since\":%lld}",
                   i ? "," : "", (int) p[i].pid, roles, p[i].handles, p[i].notify_signo,
                   (long long) p[i].since);
        }
        printf(n ? "\n]\n" : "]\n");
    } else {
        printf("%-8s  %-28s  %7s  %-10s  %s\n", "PID", "ROLES", "HANDLES", "NOTIFY", "SINCE");
        for (ssize_t i = 0; i < n; i++) {
            roles_text(p[i].roles, roles, sizeof roles);
            cli_human_age(p[i].since, age, sizeof age);
            char sig[24] = "-";
            if (p[i].notify_signo)
                signal_name(p[i].notify_signo, sig, sizeof sig);
            printf("%-8d  %-28s  %7u  %-10s  %s ago\n", (int) p[i].pid, roles, p[i].handles, sig,
                   age);
        }
    }
    if (fflush(stdout))
        return cli_failf("peers", "writing standard output: %s", strerror(errno));
    return EXIT_DONE;
}
