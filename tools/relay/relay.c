/*
 * relay.c — postbox-relay: carries postbox mailboxes between hosts through NATS JetStream,
 * exactly once and in order per origin.
 *
 * OUTBOUND (a local outbox forwarded to MAILBOX on NODE). One loop step:
 *   1. claim a batch from the outbox (pbx_claim, type 0: arrival order);
 *   2. append each message to the route's journal with the next sequence number, fsync;
 *   3. pbx_ack each claim (acked_through advances);
 *   4. publish journalled, unpublished records to pbx.NODE.MAILBOX.TYPE with the Nats-Msg-Id
 *      ORIGIN.INCARNATION.SEQ, asynchronously (see PIPELINE below);
 *   5. take in the pub acks received so far: published_through advances over the acked prefix;
 *      once every journalled record is acked the journal is emptied.
 * A crash before 2 completes leaves the claims to the outbox, which puts them back. A crash
 * between 2 and 3 leaves records whose claims may or may not have been acked: RECOVERY below
 * tells them apart by claim id. A crash after 3 re-publishes from the journal; the stream drops
 * the repeat by its Msg-Id, and where it forgot the id (a server restart, nats-server issue
 * 3272) the receiver's high-water mark drops it. While publishing fails, nothing more is
 * claimed: the backlog stays in the outbox, whose overflow policy then applies to senders.
 *
 * PIPELINE. With --window N larger than --batch, the relay does not wait for a batch's pub
 * acks before claiming the next: up to N records may be published and not yet acked, and
 * steps 1-4 of the next batch run while the acks of the previous ones travel. By default (and
 * always for CALM_MS after a full stream refused a record, see below) the window is one batch,
 * claimed, published and wholly answered before the next: on a loaded 2-CPU host pipelining
 * measured no faster (the relays are bound by CPU, not by waiting; docs/relay.md, Speed) and
 * under back-pressure it stores more records ahead of a refused one, each a gap the receiver
 * must nak and see again. nats.c calls on_pub_ack() on its own thread; it
 * stores the acked sequence in a ring (ACK RING below) that the loop reads. Order is kept
 * because one connection carries every publish of a route and the server stores them in the
 * order they arrive; published_through only moves over a prefix of acked records, so a crash
 * re-publishes everything after the first one not known to be stored. When any publish fails
 * (an error ack, a timeout, a lost link) the route waits for the rest of the window to be
 * answered, then re-publishes from the first unacked record — the first one alone, and the
 * window opens again once it is stored — so a record refused by a full stream goes in before
 * the ones after it are sent again. For a destination that refuses when full (PBX_BLOCK:
 * DiscardNew, MaxMsgs), the window is cut to the stream's MaxMsgs: records stored ahead of a
 * refused one can then never fill the stream and keep it out. And once a full stream has
 * refused a record, the route stops pipelining for CALM_MS: a full stream means the receiver
 * is the slower side, so the pipeline gains nothing there.
 *
 * RECOVERY of unconfirmed records (seq > acked_through at start). The claim id of a message is
 * the same every time it is claimed while it stays in the mailbox, and no two messages in a
 * mailbox share one (include/postbox.h, pbx_claim). A dead relay's claims are put back in their
 * place — before every newer message — once someone looks after dead peers. So until the
 * outbox shows no claims but ours, a claimed message whose id, type, length and checksum equal
 * an unconfirmed record is that record's message come back: it is acked and not journalled
 * again. A message that matches none while dead claims remain is released and looked at again.
 *
 * INBOUND (messages for a local MAILBOX). A durable pull consumer on the stream PBX-NODE-MAILBOX
 * (declared, with the consumer, at start and after every reconnect). For each fetched message,
 * of origin O with sequence S:
 *   S <= hwm(O)        a duplicate: ack it, count it;
 *   S >  hwm(O) + 1    ahead of a missing one: nak it with a delay (the missing one is being
 *                      re-published); after the gap timeout the missing ones are given up on;
 *   S == hwm(O) + 1    deliver: record the DELIVERY INTENT, pbx_send into the mailbox, set
 *                      hwm(O) = S (the commit), clear the intent; after the batch, msync the
 *                      table, then ack the batch to JetStream.
 * DELIVERY INTENT. A crash between pbx_send returning and the commit would deliver S twice.
 * The intent records the destination's pbx_stat().sent before the send and the relay's pid. At
 * start, an active intent whose S is not committed is decided: sent unchanged — not delivered;
 * sent moved and the last sender is the dead relay — delivered (commit S); otherwise another
 * process sent meanwhile and it cannot be told: counted as uncertain and delivered again.
 * For a mailbox only the relay sends to, the decision is exact.
 *
 * CRASH POINTS. PBX_RELAY_CRASH=NAME[:N] makes the relay SIGKILL itself the Nth time (default
 * the first) it passes step NAME; the tests use it. out-published is passed after each round of
 * publishes, out-confirmed each time pub acks move published_through, before it moves. Names:
 * out-claimed, out-journaled, out-acked, out-published, out-confirmed, in-fetched, in-intent,
 * in-delivered, in-committed, in-acked.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <nats/nats.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "postbox.h"
#include "relay.h"

#define OUT_MAGIC   0x706278726f757431ull /* "pbxrout1" */
#define HWM_MAGIC   0x70627872686d7731ull /* "pbxrhmw1" */
#define REC_MAGIC   0x7062786au
#define HDR_RESERVE 1024 /* room kept for the headers below the server's max_payload */

/* ---- small helpers ---------------------------------------------------------------------- */

static const char *prog = "postbox-relay";
static volatile sig_atomic_t stopping;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR && !stopping)
        ;
}

/* CRC-32 (IEEE), for the journal and the end-to-end check of every payload. Eight bytes a
 * step through eight tables ("slicing by 8"): the same values as the bytewise loop, about five
 * times faster — at 4 KiB the checksums were a third of the relays' own CPU time. */
static uint32_t crc_table[8][256];

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

static uint32_t crc32_of(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t c = 0xffffffffu;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; len >= 8; len -= 8, p += 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c; /* little-endian: the first byte is the lowest */
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
            crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
            crc_table[0][hi >> 24];
    }
#endif
    while (len--)
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Crash points (see CRASH POINTS above). */
static const char *crash_name;
static long crash_countdown = 1;

static void crash_point(const char *name)
{
    if (crash_name && !strcmp(crash_name, name) && --crash_countdown == 0) {
        fprintf(stderr, "%s: crash point %s: killing myself\n", prog, name);
        kill(getpid(), SIGKILL);
    }
}

/* A postbox name in a subject token or a stream name: letters and digits stay, every other
 * byte becomes _XX (hex). Injective, and never yields '.', '*', '>' or '-'. */
static void escape_name(char *out, size_t cap, const char *name)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *) name; *p && o + 4 < cap; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
            out[o++] = (char) *p;
        else
            o += (size_t) snprintf(out + o, cap - o, "_%02X", *p);
    }
    out[o] = 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RELAY_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* Map a fixed-size state file shared (created zeroed when missing). */
static void *map_state(const char *path, size_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || ((size_t) st.st_size < size && ftruncate(fd, (off_t) size) < 0))
        die("%s: %s", path, strerror(errno));
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("%s: mmap: %s", path, strerror(errno));
    close(fd);
    return p;
}

static void sync_state(void *p, size_t size)
{
    if (msync(p, size, MS_SYNC) < 0)
        logmsg("msync: %s", strerror(errno));
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        die("%s: %s", path, strerror(errno));
}

/* ---- the dead-letter spool -------------------------------------------------------------- */

/* STATE/dead/SEQ.msg: a few text lines (reason, route, type, length), a blank line, the
 * payload. Written to a temporary name, flushed, renamed. */
static uint64_t dead_seq;

static void dead_letter(const char *state_dir, const char *route, const char *origin, long type,
                        const void *data, size_t len, const char *reason)
{
    char dir[RELAY_PATH_MAX], tmp[RELAY_PATH_MAX + 64], dst[RELAY_PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/dead", state_dir);
    make_dir(dir);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t id = (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec + dead_seq++;
    snprintf(tmp, sizeof tmp, "%s/.tmp.%d", dir, (int) getpid());
    snprintf(dst, sizeof dst, "%s/%020" PRIu64 ".msg", dir, id);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        logmsg("dead letter: %s: %s", tmp, strerror(errno));
        return;
    }
    fprintf(f, "reason: %s\nroute: %s\norigin: %s\ntype: %ld\nlength: %zu\n\n", reason, route,
            origin ? origin : "", type, len);
    fwrite(data, 1, len, f);
    if (fflush(f) != 0 || fsync(fileno(f)) < 0 || fclose(f) != 0 || rename(tmp, dst) < 0)
        logmsg("dead letter: %s: %s", dst, strerror(errno));
    logmsg("dead letter (%s): %s, type %ld, %zu bytes -> %s", route, reason, type, len, dst);
}

/* ---- routes ----------------------------------------------------------------------------- */

struct jrec { /* a journal record's header; the payload follows */
    uint32_t magic;
    uint32_t len;
    uint64_t seq;
    uint64_t claim;
    int64_t type;
    uint32_t crc;  /* of the payload */
    uint32_t hcrc; /* of this header up to here */
};

struct pending { /* a journalled record held in memory until published */
    uint64_t seq;
    uint64_t claim;
    long type;
    uint32_t len;
    uint32_t crc;
    char *data;
    uint64_t sent_at; /* now_ms() when last published (PIPELINE) */
};

/*
 * ACK RING. on_pub_ack() runs on a nats.c thread; the loop must learn which records are
 * stored without a lock. The handler stores the acked record's sequence S into
 * acked[S % ACK_RING] (release); the loop asks whether acked[S % ACK_RING] == S (acquire). At
 * most WINDOW_MAX records are published and unacked at once, and ACK_RING is twice that, so a
 * slot is never reused while its record still waits; a stale slot holds an older sequence,
 * never S. The handler then bumps acks_seen and, if the loop sleeps (R.sleeping), writes to
 * R.wake: the loop sets R.sleeping before it looks at acks_seen a last time, both sequentially
 * consistent, so an ack is either seen or wakes the loop.
 */
#define WINDOW_MAX   8192
#define ACK_RING     (2 * WINDOW_MAX)
#define ACK_WAIT_MS  15000       /* a published record unanswered for this long counts as failed */
#define JOURNAL_MAX  (32u << 20) /* claiming pauses while the journal is this large */
#define CALM_MS      10000       /* no pipelining for this long after a full stream refused */
#define SOFT_DESC    "postbox mailbox; sending relays hold it to max_msgs " /* SOFT LIMIT */
#define LIMITS_MS    2000 /* how often a route reads its destination stream's limits again */
#define SOFT_POLL_MS 20   /* near a soft limit, the stream's count is asked at most this often */

struct route_out {
    char spec[2 * RELAY_NAME_MAX + 16];
    char outbox[RELAY_PATH_MAX];
    char mailbox[RELAY_NAME_MAX + 1];
    char node[RELAY_NAME_MAX + 1];
    char origin[2 * RELAY_NAME_MAX + 2]; /* this relay's node "/" the outbox */
    char subject_prefix[1400];
    char dir[RELAY_PATH_MAX];
    pbx_t *q;
    int fd;
    struct out_state *st;
    int journal;
    struct pending *pend; /* pend[phead..npend): journalled, not yet known to be stored */
    size_t phead, psent;  /* pend[phead..psent): published in this round, ack awaited */
    size_t npend, cappend;
    uint64_t jsize;          /* bytes in the journal */
    char stream[1400];       /* the destination's stream, for its limits */
    int window;              /* records published and unacked at most: --window, or the stream's
                                MaxMsgs when it refuses when full */
    int probe;               /* after a failure: one record at a time until one is stored */
    uint64_t calm_until;     /* after a refusal by a full stream: no pipelining until then */
    _Atomic uint64_t *acked; /* ACK RING */
    atomic_uint_fast64_t acks_seen;
    uint64_t acks_taken;
    uint64_t fail_logged_at;
    struct pending *suspects; /* unconfirmed records of a previous run (RECOVERY) */
    size_t nsuspects;
    jsCtx *js;
    atomic_uint_fast64_t acks_err;
    atomic_int last_err;
    uint64_t retry_at;
    unsigned backoff;
    int publishing_failed;
    /* SOFT LIMIT (a replicated destination, see declare()): the mailbox's max_msgs that this
     * relay holds the stream to, 0 for none; the stream's count when last asked, when, and
     * how many records were stored since. */
    uint64_t soft_max, soft_msgs, soft_stored, soft_at;
    uint64_t limits_at; /* when out_limits() last read the stream */
    struct route_stats stats;
};

struct route_in {
    char mailbox[RELAY_NAME_MAX + 1];
    char stream[1400];
    char filter[1400];
    char dir[RELAY_PATH_MAX];
    pbx_t *q;
    int removed;
    struct pbx_stat qst;
    struct hwm_table *hwm;
    natsSubscription *sub; /* on inbox: the answers to our pull requests (PULL below) */
    char inbox[128];
    char next_subject[1500];
    uint64_t pull_until; /* the newest pull request expires then (0: none open) */
    int pull_left;       /* messages the open requests may still bring (PULL) */
    uint64_t gap_since[HWM_ORIGINS];
    uint64_t lag_at;
    struct route_stats stats;
};

static struct relay {
    const char *node;
    const char *state_dir;
    const char *servers[16];
    int nservers;
    int replicas;
    int batch;
    int window;
    int wake; /* eventfd: a pub ack arrived while the loop slept (ACK RING) */
    atomic_int sleeping;
    unsigned gap_timeout_ms;
    struct route_out outs[32];
    int nouts;
    struct route_in ins[32];
    int nins;
    natsConnection *nc;
    jsCtx *js;
    atomic_int need_declare;
    int declared;
    int64_t max_payload;
    char *buf;
    size_t bufcap;
} R;

/* ---- the journal ------------------------------------------------------------------------ */

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t) w;
    }
    return 0;
}

static uint32_t hcrc_of(const struct jrec *h)
{
    return crc32_of(h, offsetof(struct jrec, hcrc));
}

/* Read the journal left by a previous run: records above published_through go back to the
 * pending list; those above acked_through are also suspects (RECOVERY). A torn tail — a record
 * whose write or flush did not complete — was never acked in the outbox: it is cut off. */
static void journal_load(struct route_out *o)
{
    off_t off = 0, good = 0;
    for (;;) {
        struct jrec h;
        ssize_t r = pread(o->journal, &h, sizeof h, off);
        if (r != (ssize_t) sizeof h || h.magic != REC_MAGIC || h.hcrc != hcrc_of(&h))
            break;
        char *data = malloc(h.len ? h.len : 1);
        if (!data)
            die("out of memory");
        if (pread(o->journal, data, h.len, off + (off_t) sizeof h) != (ssize_t) h.len ||
            crc32_of(data, h.len) != h.crc) {
            free(data);
            break;
        }
        off += (off_t) (sizeof h + h.len);
        good = off;
        struct pending p = {h.seq, h.claim, (long) h.type, h.len, h.crc, data, 0};
        if (h.seq > o->st->acked_through) {
            o->suspects = realloc(o->suspects, (o->nsuspects + 1) * sizeof *o->suspects);
            if (!o->suspects)
                die("out of memory");
            p.data = NULL;
            o->suspects[o->nsuspects++] = p;
            p.data = data;
        }
        if (h.seq > o->st->published_through) {
            if (o->npend == o->cappend) {
                o->cappend = o->cappend ? 2 * o->cappend : 64;
                o->pend = realloc(o->pend, o->cappend * sizeof *o->pend);
                if (!o->pend)
                    die("out of memory");
            }
            o->pend[o->npend++] = p;
        } else {
            free(data);
        }
        if (h.seq >= o->st->next_seq)
            o->st->next_seq = h.seq + 1;
    }
    if (ftruncate(o->journal, good) < 0)
        die("%s/journal: %s", o->dir, strerror(errno));
    o->jsize = (uint64_t) good;
    /* Records at or below acked_through whose ack is known need no suspect check. */
    if (o->nsuspects)
        logmsg("route %s: %zu unconfirmed journal record(s) from a previous run", o->spec,
               o->nsuspects);
    if (o->npend)
        o->stats.republished += o->npend;
}

/* ---- the NATS link ---------------------------------------------------------------------- */

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void) nc;
    (void) closure;
    atomic_store(&R.need_declare, 1);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void) nc;
    (void) closure;
    logmsg("disconnected from NATS; reconnecting");
}

/* nats.c's thread: see ACK RING. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void) js;
    struct route_out *o = closure;
    const char *seqs = NULL;
    if (pa && natsMsgHeader_Get(msg, "Pbx-Seq", &seqs) == NATS_OK && seqs) {
        uint64_t seq = strtoull(seqs, NULL, 10);
        atomic_store_explicit(&o->acked[seq % ACK_RING], seq, memory_order_release);
    } else {
        atomic_fetch_add(&o->acks_err, 1);
        if (pae)
            atomic_store(&o->last_err, (int) pae->ErrCode ? (int) pae->ErrCode : (int) pae->Err);
    }
    natsMsg_Destroy(msg);
    atomic_fetch_add(&o->acks_seen, 1);
    if (atomic_load(&R.sleeping)) {
        uint64_t one = 1;
        if (write(R.wake, &one, sizeof one) < 0) {
            /* the counter is full: the loop wakes anyway */
        }
    }
}

static void link_open(void)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(opts, R.servers, R.nservers);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(opts, 100, 100);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(opts, true, NULL, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
    if (s != NATS_OK)
        die("nats options: %s", natsStatus_GetText(s));
    s = natsConnection_Connect(&R.nc, opts);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
        die("cannot connect to %s: %s", R.servers[0], natsStatus_GetText(s));
    natsOptions_Destroy(opts);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    if (natsConnection_JetStream(&R.js, R.nc, &jo) != NATS_OK)
        die("cannot create a JetStream context");
    for (int i = 0; i < R.nouts; i++) {
        struct route_out *o = &R.outs[i];
        jsOptions_Init(&jo);
        jo.Wait = 5000;
        jo.PublishAsync.AckHandler = on_pub_ack;
        jo.PublishAsync.AckHandlerClosure = o;
        /* Never reached: the window is smaller (PIPELINE), so a publish never stalls. */
        jo.PublishAsync.MaxPending = 2 * WINDOW_MAX;
        if (natsConnection_JetStream(&o->js, R.nc, &jo) != NATS_OK)
            die("cannot create a JetStream context");
    }
    atomic_store(&R.need_declare, 1);
}

static int link_up(void)
{
    return natsConnection_Status(R.nc) == NATS_CONN_STATUS_CONNECTED;
}

/* PIPELINE: a destination stream that refuses when full (DiscardNew) takes a window of at most
 * its MaxMsgs; one with a SOFT LIMIT in its description, at most that. Looked up at every
 * declaration, after a failed publish and every LIMITS_MS; a stream not there yet (its relay
 * has not declared it) leaves the window as it is. */
static void out_limits(struct route_out *o)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    o->limits_at = now_ms();
    if (js_GetStreamInfo(&si, R.js, o->stream, NULL, &jerr) != NATS_OK || !si || !si->Config) {
        jsStreamInfo_Destroy(si);
        return;
    }
    int w = R.window;
    if (si->Config->Discard == js_DiscardNew && si->Config->MaxMsgs > 0 && si->Config->MaxMsgs < w)
        w = (int) si->Config->MaxMsgs;
    const char *d = si->Config->Description;
    o->soft_max = 0;
    if (d && !strncmp(d, SOFT_DESC, strlen(SOFT_DESC)))
        o->soft_max = strtoull(d + strlen(SOFT_DESC), NULL, 10);
    if (o->soft_max && o->soft_max < (uint64_t) w)
        w = (int) o->soft_max;
    o->soft_msgs = si->State.Msgs;
    o->soft_stored = 0;
    o->soft_at = now_ms();
    if (w != o->window)
        logmsg("route %s: window %d (stream %s)", o->spec, w, o->stream);
    o->window = w;
    jsStreamInfo_Destroy(si);
}

/* Declare the inbound routes' streams and consumers; idempotent. Returns 0 when all done. */
static int declare(void)
{
    R.max_payload = natsConnection_GetMaxPayload(R.nc);
    for (int i = 0; i < R.nins; i++) {
        struct route_in *in = &R.ins[i];
        const char *subjects[1] = {in->filter};
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = in->stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Retention = js_WorkQueuePolicy;
        sc.Storage = js_FileStorage;
        sc.Replicas = R.replicas;
        char desc[64];
        if (in->qst.overflow == PBX_BLOCK && in->qst.max_msgs && R.replicas > 1) {
            /* SOFT LIMIT. Not DiscardNew on a replicated stream: JetStream (2.9) applies that
             * limit on each replica by itself, when it applies the message, to a count the
             * work-queue consumer's acks lower on each server at its own moment (the acks are
             * not in the stream's log). Replicas then disagree on which messages were refused:
             * the leader acknowledges a message a follower refused, and once that follower
             * leads, the message is gone (the cluster torture lost thousands so). Instead the
             * stream has no limit and says the mailbox's in its description; the sending
             * relays read it and stop claiming while the stream holds that many. */
            snprintf(desc, sizeof desc, SOFT_DESC "%" PRIu64, (uint64_t) in->qst.max_msgs);
            sc.Description = desc;
        } else if (in->qst.overflow == PBX_BLOCK) {
            /* BACK-PRESSURE: the stream holds at most what the mailbox holds, and refuses more;
             * the sending relay retries and stops claiming, so its outbox fills. */
            sc.Discard = js_DiscardNew;
            sc.MaxMsgs = in->qst.max_msgs ? (int64_t) in->qst.max_msgs : -1;
        }
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_AddStream(&si, R.js, &sc, NULL, &jerr);
        if (s != NATS_OK && jerr == JSStreamNameExistErr)
            s = js_UpdateStream(&si, R.js, &sc, NULL, &jerr);
        jsStreamInfo_Destroy(si);
        if (s != NATS_OK) {
            logmsg("declare stream %s: %s (%d)", in->stream, natsStatus_GetText(s), (int) jerr);
            return -1;
        }
        jsConsumerConfig cc;
        jsConsumerConfig_Init(&cc);
        cc.Durable = "relay";
        cc.AckPolicy = js_AckExplicit;
        cc.AckWait = 5LL * 1000000000LL;
        cc.MaxDeliver = -1;
        cc.MaxAckPending = 8192;
        cc.FilterSubject = in->filter;
        jsConsumerInfo *ci = NULL;
        s = js_AddConsumer(&ci, R.js, in->stream, &cc, NULL, &jerr);
        jsConsumerInfo_Destroy(ci);
        if (s != NATS_OK && jerr != JSConsumerNameExistErr) {
            logmsg("declare consumer on %s: %s (%d)", in->stream, natsStatus_GetText(s),
                   (int) jerr);
            return -1;
        }
        if (!in->sub) {
            natsInbox *ib = NULL;
            s = natsInbox_Create(&ib);
            if (s == NATS_OK) {
                snprintf(in->inbox, sizeof in->inbox, "%s", (const char *) ib);
                natsInbox_Destroy(ib);
                s = natsConnection_SubscribeSync(&in->sub, R.nc, in->inbox);
            }
            if (s == NATS_OK)
                s = natsSubscription_SetPendingLimits(in->sub, -1, -1);
            if (s != NATS_OK) {
                logmsg("subscribe to %s: %s", in->inbox, natsStatus_GetText(s));
                in->sub = NULL;
                return -1;
            }
            /* Through a local buffer: gcc's -Wrestrict cannot tell the two members of R apart
             * (an address-sanitizer build at -O0 reports an overlap). */
            char subject[sizeof in->next_subject];
            snprintf(subject, sizeof subject, "$JS.API.CONSUMER.MSG.NEXT.%s.relay", in->stream);
            memcpy(in->next_subject, subject, sizeof subject);
        }
        in->pull_until = 0; /* a fresh pull request after every (re)declaration */
    }
    for (int i = 0; i < R.nouts; i++)
        out_limits(&R.outs[i]);
    return 0;
}

/* ---- outbound --------------------------------------------------------------------------- */

/* RELAYED MARKERS: `postbox ls` tells which mailboxes are relayed from .pbx-relay.NAME in the
 * mailbox directory ($POSTBOX_DIR or /dev/shm): the route and this relay's state directory,
 * whose lock says whether the relay still runs (a marker a killed relay leaves is ignored). */
static const char *mailbox_dir(void)
{
    const char *d = getenv("POSTBOX_DIR");
    return d && *d ? d : "/dev/shm";
}

static void marker_path(char *out, size_t cap, const char *mailbox)
{
    snprintf(out, cap, "%s/.pbx-relay.%.200s", mailbox_dir(), mailbox);
}

static void marker_write(const char *mailbox, const char *route)
{
    char path[RELAY_PATH_MAX], tmp[RELAY_PATH_MAX + 32], state[RELAY_PATH_MAX];
    marker_path(path, sizeof path, mailbox);
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int) getpid());
    if (!realpath(R.state_dir, state))
        snprintf(state, sizeof state, "%s", R.state_dir);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return; /* only a hint for ls */
    fprintf(f, "route %s\nstate %s\n", route, state);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        unlink(tmp);
}

static void out_open(struct route_out *o, const char *spec)
{
    snprintf(o->spec, sizeof o->spec, "%s", spec);
    const char *eq = strchr(spec, '=');
    const char *at = strrchr(spec, '@');
    if (!at || at == spec || !at[1])
        die("--out %s: expected [OUTBOX=]MAILBOX@NODE", spec);
    const char *m = eq && eq < at ? eq + 1 : spec;
    snprintf(o->mailbox, sizeof o->mailbox, "%.*s", (int) (at - m), m);
    snprintf(o->node, sizeof o->node, "%s", at + 1);
    if (!valid_name(o->mailbox) || !valid_name(o->node))
        die("--out %s: mailbox and node names are 1-200 of [A-Za-z0-9._-]", spec);
    if (eq && eq < at)
        snprintf(o->outbox, sizeof o->outbox, "%.*s", (int) (eq - spec), spec);
    else
        snprintf(o->outbox, sizeof o->outbox, "%.*s.%s", (int) (at - m), m, at + 1);
    char outbox[RELAY_NAME_MAX + 1];
    snprintf(outbox, sizeof outbox, "%.200s", o->outbox);
    snprintf(o->origin, sizeof o->origin, "%s/%s", R.node, outbox);
    char en[640], em[640];
    escape_name(en, sizeof en, o->node);
    escape_name(em, sizeof em, o->mailbox);
    snprintf(o->subject_prefix, sizeof o->subject_prefix, "pbx.%s.%s.", en, em);
    snprintf(o->stream, sizeof o->stream, "PBX-%s-%s", en, em);
    o->window = R.window;
    o->acked = calloc(ACK_RING, sizeof *o->acked);
    if (!o->acked)
        die("out of memory");
    char eo[640];
    escape_name(eo, sizeof eo, o->outbox);
    snprintf(o->dir, sizeof o->dir, "%.3000s/out-%s", R.state_dir, eo);
    make_dir(o->dir);

    int r = pbx_open(o->outbox, PBX_CREATE, NULL, &o->q);
    if (r < 0)
        die("outbox %s: %s", o->outbox, pbx_strerror(r));
    if (strncmp(o->outbox, "spool:", 6)) { /* ls lists shared-memory mailboxes only */
        char route[3 * RELAY_NAME_MAX + 16];
        snprintf(route, sizeof route, "%.200s -> %s@%s", o->outbox, o->mailbox, o->node);
        marker_write(o->outbox, route);
    }
    /* RECOVERY: a dead relay's claims go back in their place before anything newer is taken.
     * Whoever opens the mailbox looks after dead peers (at most every 100 ms): reopen until
     * the outbox shows no claims (the relay is its only consumer). */
    for (int tries = 0; tries < 100; tries++) {
        struct pbx_stat st;
        if (pbx_stat(o->q, &st) < 0 || st.claimed == 0)
            break;
        if (tries == 99)
            logmsg("outbox %s: %" PRIu64 " claim(s) of a live process; going on", o->outbox,
                   st.claimed);
        sleep_ms(110);
        pbx_close(o->q);
        if ((r = pbx_open(o->outbox, 0, NULL, &o->q)) < 0)
            die("outbox %s: %s", o->outbox, pbx_strerror(r));
    }
    o->fd = pbx_fd(o->q);

    char path[RELAY_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/state", o->dir);
    o->st = map_state(path, 4096);
    if (o->st->magic != OUT_MAGIC) {
        memset(o->st, 0, sizeof *o->st);
        if (getrandom(&o->st->incarnation, sizeof o->st->incarnation, 0) !=
            sizeof o->st->incarnation)
            die("getrandom: %s", strerror(errno));
        o->st->next_seq = 1;
        o->st->magic = OUT_MAGIC;
        sync_state(o->st, 4096);
    }
    snprintf(path, sizeof path, "%s/journal", o->dir);
    o->journal = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (o->journal < 0)
        die("%s: %s", path, strerror(errno));
    journal_load(o);
}

static void pend_push(struct route_out *o, struct pending p)
{
    if (o->npend == o->cappend) {
        o->cappend = o->cappend ? 2 * o->cappend : 64;
        o->pend = realloc(o->pend, o->cappend * sizeof *o->pend);
        if (!o->pend)
            die("out of memory");
    }
    o->pend[o->npend++] = p;
}

/* RECOVERY (see the top): is this claimed message an unconfirmed record's? */
static int suspect_match(struct route_out *o, uint64_t claim, long type, size_t len, uint32_t crc)
{
    for (size_t i = 0; i < o->nsuspects; i++) {
        struct pending *s = &o->suspects[i];
        if (s->claim == claim && s->type == type && s->len == len && s->crc == crc) {
            o->suspects[i] = o->suspects[--o->nsuspects];
            return 1;
        }
    }
    return 0;
}

/* Steps 1-3: claim up to max messages, journal them, ack them. Returns how many. */
static int out_take(struct route_out *o, int max)
{
    struct claimed {
        uint64_t claim;
    } *cl = NULL;
    size_t ncl = 0, capcl = 0;
    char *jbuf = NULL;
    size_t jlen = 0, jcap = 0;
    /* Sequences become durable with the journal: next_seq is stored only after the flush, so
     * a crash before it reuses them for the same messages claimed again. */
    uint64_t first_seq = o->st->next_seq, next_seq = first_seq;
    size_t max_len = R.max_payload > HDR_RESERVE ? (size_t) (R.max_payload - HDR_RESERVE) : 0;

    while ((int) ncl < max) {
        long type = 0;
        uint64_t claim = 0;
        ssize_t n = pbx_claim(o->q, 0, R.buf, R.bufcap, PBX_NOWAIT, &type, &claim);
        if (n == -E2BIG) {
            /* Larger than any payload the server takes: take it as a dead letter. */
            char *big = malloc(64u << 20);
            if (!big)
                break;
            n = pbx_claim(o->q, 0, big, 64u << 20, PBX_NOWAIT | PBX_NOERROR, &type, &claim);
            if (n >= 0) {
                dead_letter(R.state_dir, o->spec, o->origin, type, big, (size_t) n,
                            "larger than the relay's buffer");
                o->stats.dead_letters++;
                pbx_ack(o->q, claim);
            }
            free(big);
            continue;
        }
        if (n < 0)
            break;
        crash_point("out-claimed");
        uint32_t crc = crc32_of(R.buf, (size_t) n);
        if (o->nsuspects) {
            if (suspect_match(o, claim, type, (size_t) n, crc)) {
                pbx_ack(o->q, claim); /* its record is in the journal already */
                continue;
            }
            struct pbx_stat st;
            if (pbx_stat(o->q, &st) == 0 && st.claimed > ncl + 1) {
                /* Dead claims not yet put back: look again once they are. */
                pbx_release(o->q, claim);
                break;
            }
            o->nsuspects = 0; /* no dead claims remain: the rest were acked before the crash */
        }
        if (max_len && (size_t) n > max_len) {
            dead_letter(R.state_dir, o->spec, o->origin, type, R.buf, (size_t) n,
                        "larger than the NATS server's max_payload");
            o->stats.dead_letters++;
            pbx_ack(o->q, claim);
            continue;
        }
        struct jrec h = {REC_MAGIC, (uint32_t) n, next_seq++, claim, type, crc, 0};
        h.hcrc = hcrc_of(&h);
        if (jlen + sizeof h + (size_t) n > jcap) {
            jcap = 2 * (jlen + sizeof h + (size_t) n);
            jbuf = realloc(jbuf, jcap);
            if (!jbuf)
                die("out of memory");
        }
        memcpy(jbuf + jlen, &h, sizeof h);
        memcpy(jbuf + jlen + sizeof h, R.buf, (size_t) n);
        jlen += sizeof h + (size_t) n;
        char *data = malloc(n ? (size_t) n : 1);
        if (!data)
            die("out of memory");
        memcpy(data, R.buf, (size_t) n);
        pend_push(o, (struct pending){h.seq, claim, type, (uint32_t) n, crc, data, 0});
        if (ncl == capcl) {
            capcl = capcl ? 2 * capcl : 64;
            cl = realloc(cl, capcl * sizeof *cl);
            if (!cl)
                die("out of memory");
        }
        cl[ncl++].claim = claim;
    }
    if (ncl) {
        int r = write_all(o->journal, jbuf, jlen);
        if (r == 0 && fdatasync(o->journal) < 0)
            r = -errno;
        if (r < 0)
            die("%s/journal: %s", o->dir, strerror(-r));
        o->jsize += jlen;
        o->st->next_seq = next_seq;
        crash_point("out-journaled");
        for (size_t i = 0; i < ncl; i++) {
            int a = pbx_ack(o->q, cl[i].claim);
            if (a < 0)
                logmsg("route %s: ack: %s", o->spec, pbx_strerror(a));
        }
        o->st->acked_through = first_seq + ncl - 1;
        crash_point("out-acked");
    }
    free(cl);
    free(jbuf);
    return (int) ncl;
}

/* Step 4: publish pend[psent..] while fewer than the window are unanswered (PIPELINE).
 * Returns how many were handed to nats.c, or -1 when one could not be. */
static int out_publish(struct route_out *o)
{
    char subject[1500], msgid[1024], seqs[32], inc[32], crcs[16], types[32];
    uint64_t now = now_ms();
    size_t limit = o->probe ? 1 : (size_t) o->window;
    if (R.window <= R.batch || now < o->calm_until) /* a batch at a time, all answered first */
        limit = o->psent > o->phead ? 0 : (size_t) R.batch;
    int sent = 0;
    snprintf(inc, sizeof inc, "%016" PRIx64, o->st->incarnation);
    while (o->psent < o->npend && o->psent - o->phead < limit) {
        struct pending *p = &o->pend[o->psent];
        natsMsg *m = NULL;
        snprintf(subject, sizeof subject, "%s%ld", o->subject_prefix, p->type);
        natsStatus s = natsMsg_Create(&m, subject, NULL, p->data, (int) p->len);
        snprintf(seqs, sizeof seqs, "%" PRIu64, p->seq);
        snprintf(crcs, sizeof crcs, "%08x", p->crc);
        snprintf(types, sizeof types, "%ld", p->type);
        snprintf(msgid, sizeof msgid, "%s.%s.%s", o->origin, inc, seqs);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Pbx-Origin", o->origin);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Pbx-Inc", inc);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Pbx-Seq", seqs);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Pbx-Type", types);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Pbx-Crc", crcs);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msgid;
        po.MaxWait = 5000; /* then on_pub_ack() hears of a timeout */
        if (s == NATS_OK)
            s = js_PublishMsgAsync(o->js, &m, &po); /* takes m on success */
        natsMsg_Destroy(m);
        if (s != NATS_OK) {
            atomic_store(&o->last_err, (int) s);
            return -1;
        }
        p->sent_at = now;
        o->psent++;
        sent++;
    }
    if (sent)
        crash_point("out-published");
    return sent;
}

/* Step 5: take in the pub acks received (ACK RING): published_through moves over the acked
 * prefix. Returns how many records became known stored. */
static size_t out_collect(struct route_out *o)
{
    size_t h = o->phead;
    while (h < o->psent) {
        uint64_t seq = o->pend[h].seq;
        if (atomic_load_explicit(&o->acked[seq % ACK_RING], memory_order_acquire) != seq)
            break;
        h++;
    }
    if (h == o->phead)
        return 0;
    crash_point("out-confirmed");
    size_t n = h - o->phead;
    o->soft_stored += n;
    o->st->published_through = o->pend[h - 1].seq;
    o->stats.published += n;
    for (size_t i = o->phead; i < h; i++)
        free(o->pend[i].data);
    o->phead = h;
    if (o->phead == o->npend) {
        o->phead = o->psent = o->npend = 0;
        /* Everything journalled is stored: the journal starts afresh. */
        if (ftruncate(o->journal, 0) < 0)
            die("%s/journal: %s", o->dir, strerror(errno));
        o->jsize = 0;
    } else if (o->phead >= 1024 && 2 * o->phead >= o->npend) {
        memmove(o->pend, o->pend + o->phead, (o->npend - o->phead) * sizeof *o->pend);
        o->psent -= o->phead;
        o->npend -= o->phead;
        o->phead = 0;
    }
    if (o->probe) {
        o->probe = 0; /* a record was stored after a failure: the window opens again */
        o->backoff = 0;
        if (o->fail_logged_at && now_ms() - o->fail_logged_at <= 5000)
            logmsg("route %s: publishing again", o->spec);
    }
    return n;
}

/* A publish failed (PIPELINE): let every outstanding one be answered, keep what was stored,
 * and re-publish the rest from the first unacked record, one at a time at first. */
static void out_fail(struct route_out *o)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 10000;
    natsStatus s = js_PublishAsyncComplete(o->js, &po);
    out_collect(o);
    uint64_t now = now_ms();
    if (!o->probe && now - o->fail_logged_at > 5000) { /* at most one line in 5 s */
        logmsg("route %s: publish failed (%s, error %d); retrying", o->spec, natsStatus_GetText(s),
               atomic_load(&o->last_err));
        o->fail_logged_at = now;
    }
    o->stats.republished += o->psent - o->phead;
    o->psent = o->phead;
    atomic_store(&o->acks_err, 0);
    o->probe = 1;
    /* The server answered (a JetStream error: the stream is full and refuses, PBX_BLOCK):
     * space comes back as soon as the receiver acks, so look again soon. Otherwise (a
     * timeout, a lost link) back off up to 2 s. */
    if (atomic_load(&o->last_err) >= 10000) {
        o->backoff = 10;
        o->calm_until = now + CALM_MS;
    } else
        o->backoff = o->backoff ? (o->backoff * 2 > 2000 ? 2000 : o->backoff * 2) : 50;
    o->retry_at = now + o->backoff;
    if (link_up())
        out_limits(o);
}

/* SOFT LIMIT: how many more records the destination stream may take, by the count it gave
 * when last asked, the records stored since and those in flight (an over-estimate: a record
 * stored and not yet acked counts twice). Near the limit it asks again, at most every
 * SOFT_POLL_MS; the receiver draining the stream makes room. */
static uint64_t out_soft_room(struct route_out *o)
{
    if (!o->soft_max)
        return UINT64_MAX;
    uint64_t flight = o->npend - o->phead;
    uint64_t est = o->soft_msgs + o->soft_stored + flight;
    uint64_t now = now_ms();
    if (est + (uint64_t) R.batch > o->soft_max && now - o->soft_at >= SOFT_POLL_MS && link_up()) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        o->soft_at = now;
        if (js_GetStreamInfo(&si, R.js, o->stream, NULL, &jerr) == NATS_OK && si) {
            o->soft_msgs = si->State.Msgs;
            o->soft_stored = 0;
            est = o->soft_msgs + flight;
        }
        jsStreamInfo_Destroy(si);
    }
    return est < o->soft_max ? o->soft_max - est : 0;
}

/* Can the route claim more now? (Not while publishing fails, nor with a full window.) */
static int out_can_take(const struct route_out *o)
{
    if (o->probe || o->jsize >= JOURNAL_MAX)
        return 0;
    if (R.window <= R.batch || now_ms() < o->calm_until)
        return o->npend == o->phead;
    return o->npend - o->phead < (size_t) o->window;
}

/* One step of an outbound route. Returns whether it did any work. */
static int out_step(struct route_out *o)
{
    int busy = 0;
    o->acks_taken = atomic_load(&o->acks_seen);
    if (out_collect(o))
        busy = 1;
    uint64_t now = now_ms();
    if (atomic_load(&o->acks_err) ||
        (o->phead < o->psent && now - o->pend[o->phead].sent_at > ACK_WAIT_MS)) {
        out_fail(o);
        return 1;
    }
    if (!link_up() || !R.max_payload || now < o->retry_at)
        return busy;
    if (now - o->limits_at >= LIMITS_MS)
        out_limits(o); /* the destination's relay may have declared (or changed) it since */
    int r = out_publish(o);
    if (r < 0) {
        out_fail(o);
        return 1;
    }
    busy |= r > 0;
    if (out_can_take(o)) {
        size_t room = (size_t) o->window - (o->npend - o->phead);
        uint64_t soft = out_soft_room(o);
        if (soft < room)
            room = (size_t) soft;
        int n = out_take(o, room < (size_t) R.batch ? (int) room : R.batch);
        if (n > 0) {
            busy = 1;
            if (out_publish(o) < 0)
                out_fail(o);
        }
    }
    return busy;
}

/* ---- inbound ---------------------------------------------------------------------------- */

static void in_open(struct route_in *in, const char *mailbox)
{
    if (!valid_name(mailbox))
        die("--in %s: a mailbox name is 1-200 of [A-Za-z0-9._-]", mailbox);
    snprintf(in->mailbox, sizeof in->mailbox, "%s", mailbox);
    char en[640], em[640];
    escape_name(en, sizeof en, R.node);
    escape_name(em, sizeof em, mailbox);
    snprintf(in->stream, sizeof in->stream, "PBX-%s-%s", en, em);
    snprintf(in->filter, sizeof in->filter, "pbx.%s.%s.*", en, em);
    snprintf(in->dir, sizeof in->dir, "%.3000s/in-%s", R.state_dir, em);
    make_dir(in->dir);
    int r = pbx_open(mailbox, PBX_CREATE, NULL, &in->q);
    if (r < 0)
        die("mailbox %s: %s", mailbox, pbx_strerror(r));
    char route[RELAY_NAME_MAX + 16];
    snprintf(route, sizeof route, "-> %s (inbound)", mailbox);
    marker_write(mailbox, route);
    r = pbx_stat(in->q, &in->qst);
    if (r < 0)
        die("mailbox %s: %s", mailbox, pbx_strerror(r));
    char path[RELAY_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/hwm", in->dir);
    in->hwm = map_state(path, sizeof *in->hwm);
    if (in->hwm->magic != HWM_MAGIC) {
        memset(in->hwm, 0, sizeof *in->hwm);
        in->hwm->magic = HWM_MAGIC;
        sync_state(in->hwm, sizeof *in->hwm);
    }
    /* DELIVERY INTENT left by a dead relay (see the top). */
    struct hwm_intent *it = &in->hwm->intent;
    if (it->active && it->slot < HWM_ORIGINS) {
        struct hwm_entry *e = &in->hwm->e[it->slot];
        if (e->hwm + 1 == it->seq) {
            struct pbx_stat st;
            if (pbx_stat(in->q, &st) == 0) {
                if (st.sent == it->sent_before) {
                    /* not delivered: it comes again */
                } else if ((uint64_t) st.last_send_pid == it->pid) {
                    e->hwm = it->seq;
                    in->stats.delivered++;
                } else {
                    in->stats.uncertain++;
                    logmsg("route %s: delivery of %s #%" PRIu64 " uncertain after a crash", mailbox,
                           e->origin, it->seq);
                }
            }
        }
        it->active = 0;
        sync_state(in->hwm, sizeof *in->hwm);
    }
}

static struct hwm_entry *hwm_find(struct route_in *in, const char *origin, uint64_t incarnation,
                                  size_t *slot)
{
    struct hwm_entry *free_e = NULL, *oldest = NULL;
    for (size_t i = 0; i < HWM_ORIGINS; i++) {
        struct hwm_entry *e = &in->hwm->e[i];
        if (!e->origin[0]) {
            if (!free_e)
                free_e = e;
            continue;
        }
        if (e->incarnation == incarnation && !strcmp(e->origin, origin)) {
            *slot = i;
            return e;
        }
        if (!oldest || e->touch < oldest->touch)
            oldest = e;
    }
    struct hwm_entry *e = free_e ? free_e : oldest;
    memset(e, 0, sizeof *e);
    snprintf(e->origin, sizeof e->origin, "%s", origin);
    e->incarnation = incarnation;
    *slot = (size_t) (e - in->hwm->e);
    return e;
}

/* Deliver one message into the destination; 0 delivered or disposed of, -EAGAIN retry later. */
static int in_deliver(struct route_in *in, size_t slot, uint64_t seq, long type, const void *data,
                      size_t len, const char *origin)
{
    struct hwm_entry *e = &in->hwm->e[slot];
    if (in->removed) {
        dead_letter(R.state_dir, in->mailbox, origin, type, data, len,
                    "the destination mailbox was removed");
        in->stats.dead_letters++;
        e->hwm = seq;
        return 0;
    }
    struct pbx_stat st;
    int r = pbx_stat(in->q, &st);
    if (r == 0) {
        struct hwm_intent *it = &in->hwm->intent;
        it->slot = slot;
        it->seq = seq;
        it->sent_before = st.sent;
        it->pid = (uint64_t) getpid();
        atomic_thread_fence(memory_order_release);
        it->active = 1;
        crash_point("in-intent");
        struct timespec to = {0, 100 * 1000000L};
        r = pbx_timedsend(in->q, type, data, len, 0, &to);
    }
    if (r >= 0)
        crash_point("in-delivered");
    if (r >= 0) {
        /* Queued; PBX_DROP_OLDEST returns how many older messages made room for it. */
        in->stats.delivered++;
        in->stats.dropped += (uint64_t) r;
    } else if (r == -ENOBUFS) {
        in->stats.dropped++;
    } else if (r == -ETIMEDOUT || r == -EAGAIN || r == -EINTR) {
        in->hwm->intent.active = 0;
        return -EAGAIN;
    } else if (r == -EIDRM) {
        in->removed = 1;
        in->hwm->intent.active = 0;
        return in_deliver(in, slot, seq, type, data, len, origin);
    } else {
        dead_letter(R.state_dir, in->mailbox, origin, type, data, len, pbx_strerror(r));
        in->stats.dead_letters++;
    }
    e->hwm = seq; /* the commit */
    atomic_thread_fence(memory_order_release);
    in->hwm->intent.active = 0;
    crash_point("in-committed");
    return 0;
}

static int hdr_u64(natsMsg *m, const char *key, uint64_t *v, int base)
{
    const char *s = NULL;
    if (natsMsgHeader_Get(m, key, &s) != NATS_OK || !s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, base);
    if (errno || end == s || *end)
        return -1;
    *v = x;
    return 0;
}

/*
 * PULL. nats.c 3.4.1's natsSubscription_Fetch() was seen, after a stalled server came back,
 * to return more messages than the batch it asked for and to write past its own array. The
 * relay therefore speaks the pull protocol itself, through ordinary core NATS calls: a request
 * to $JS.API.CONSUMER.MSG.NEXT.STREAM.relay (batch, expires) answered on our own inbox; each
 * message's reply subject $JS.ACK.STREAM.relay.DELIVERED.SSEQ.CSEQ.TS.PENDING takes "+ACK" or
 * "-NAK {delay}". Messages answering an older request are as good as any: each is handled on
 * its own, so no count can overflow anything. pull_left counts what the open request may still
 * bring; a new one is sent when it is used up, has expired, or a status (a request ended
 * early) took off what the oldest open one still had (the server fills them oldest first).
 */
#define PULL_EXPIRES_MS 1000

static int pull_request(struct route_in *in)
{
    char req[128];
    snprintf(req, sizeof req, "{\"batch\": %d, \"expires\": %lld}", R.batch,
             (long long) PULL_EXPIRES_MS * 1000000LL);
    if (natsConnection_PublishRequestString(R.nc, in->next_subject, in->inbox, req) != NATS_OK)
        return -1;
    in->pull_until = now_ms() + PULL_EXPIRES_MS + 50;
    in->pull_left += R.batch;
    return 0;
}

static int is_js_msg(natsMsg *m)
{
    const char *r = natsMsg_GetReply(m);
    return r && !strncmp(r, "$JS.ACK.", 8);
}

static uint64_t js_deliveries(natsMsg *m)
{
    /* $JS.ACK.<stream>.<consumer>.<delivered>...; with a domain and account (12 tokens or
     * more), delivered is the seventh token. */
    const char *r = natsMsg_GetReply(m), *tok[16];
    int n = 0;
    for (const char *p = r; p && *p && n < 16; p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL)
        tok[n++] = p;
    if (n == 9)
        return strtoull(tok[4], NULL, 10);
    if (n >= 11)
        return strtoull(tok[6], NULL, 10);
    return 1;
}

static void js_ack(natsMsg *m)
{
    natsConnection_PublishString(R.nc, natsMsg_GetReply(m), "+ACK");
}

static void js_nak(natsMsg *m, int64_t delay_ms)
{
    char body[64];
    snprintf(body, sizeof body, "-NAK {\"delay\": %lld}", (long long) delay_ms * 1000000LL);
    natsConnection_PublishString(R.nc, natsMsg_GetReply(m), body);
}

/* Up to R.batch messages from the inbox, the first waited for up to wait_ms. */
static int pull_fetch(struct route_in *in, natsMsgList *list, int64_t wait_ms)
{
    uint64_t now = now_ms();
    /* Up to two requests open: the server sends the next batch while this one is handled. */
    if (!in->pull_until || now >= in->pull_until)
        in->pull_left = 0;
    while (in->pull_left <= 0 && pull_request(in) == 0)
        ;
    list->Msgs = calloc((size_t) R.batch, sizeof *list->Msgs);
    list->Count = 0;
    if (!list->Msgs)
        return -1;
    int statuses = 0;
    while (list->Count < R.batch && statuses < 4) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, in->sub, list->Count ? 1 : wait_ms);
        if (s != NATS_OK)
            break;
        if (!is_js_msg(m)) {
            /* A status (408 expired, 404 nothing, 409 ...): one request is over. What it would
             * still have brought is not known: with none left open, nothing is expected. */
            statuses++;
            int open = (in->pull_left + R.batch - 1) / R.batch;
            in->pull_left = open > 0 ? (open - 1) * R.batch : 0;
            natsMsg_Destroy(m);
            if (list->Count)
                break;
            while (in->pull_left <= 0 && pull_request(in) == 0)
                ;
            continue;
        }
        if (in->pull_left > 0)
            in->pull_left--;
        list->Msgs[list->Count++] = m;
    }
    return list->Count;
}

/* One step of an inbound route. Returns whether it did any work. */
static int in_step(struct route_in *in, int64_t wait_ms)
{
    if (!in->sub || !link_up())
        return 0;
    natsMsgList list = {0};
    if (pull_fetch(in, &list, wait_ms) <= 0) {
        natsMsgList_Destroy(&list);
        return 0;
    }
    crash_point("in-fetched");
    natsMsg **ack = calloc((size_t) list.Count, sizeof *ack);
    int nack = 0;
    uint64_t now = now_ms();
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        const char *origin = NULL;
        uint64_t inc = 0, seq = 0, type = 0, crc = 0;
        if (natsMsgHeader_Get(m, "Pbx-Origin", &origin) != NATS_OK || !origin ||
            hdr_u64(m, "Pbx-Inc", &inc, 16) || hdr_u64(m, "Pbx-Seq", &seq, 10) ||
            hdr_u64(m, "Pbx-Type", &type, 10) || hdr_u64(m, "Pbx-Crc", &crc, 16) || type < 1 ||
            type > LONG_MAX) {
            dead_letter(R.state_dir, in->mailbox, origin, 0, natsMsg_GetData(m),
                        (size_t) natsMsg_GetDataLength(m), "not a postbox relay message");
            in->stats.dead_letters++;
            ack[nack++] = m;
            continue;
        }
        const void *data = natsMsg_GetData(m);
        size_t len = (size_t) natsMsg_GetDataLength(m);
        uint64_t deliveries = js_deliveries(m);
        if (deliveries > 1)
            in->stats.redeliveries++;
        size_t slot;
        struct hwm_entry *e = hwm_find(in, origin, inc, &slot);
        e->touch = now;
        if (seq <= e->hwm) {
            in->stats.duplicates++;
            ack[nack++] = m;
            continue;
        }
        if (seq > e->hwm + 1) {
            if (!in->gap_since[slot])
                in->gap_since[slot] = now;
            if (now - in->gap_since[slot] < R.gap_timeout_ms) {
                in->stats.gaps++;
                /* Retried later, sooner while the gap is young: a message overtaken by
                 * a re-published one is usually right behind it. */
                js_nak(m, deliveries < 40 ? 50 * (int64_t) deliveries : 2000);
                continue;
            }
            logmsg("route %s: %s: gave up on #%" PRIu64 "-#%" PRIu64 " after the gap timeout",
                   in->mailbox, origin, e->hwm + 1, seq - 1);
            in->stats.skipped += seq - e->hwm - 1;
            e->hwm = seq - 1;
        }
        in->gap_since[slot] = 0;
        if (crc32_of(data, len) != (uint32_t) crc) {
            dead_letter(R.state_dir, in->mailbox, origin, (long) type, data, len,
                        "checksum mismatch");
            in->stats.dead_letters++;
            e->hwm = seq;
            ack[nack++] = m;
            continue;
        }
        if (in_deliver(in, slot, seq, (long) type, data, len, origin) < 0) {
            /* Destination full (PBX_BLOCK): leave this and the rest unacked; they come again
             * in order once the redelivery delay passes. */
            for (int k = i; k < list.Count; k++)
                js_nak(list.Msgs[k], 50);
            break;
        }
        ack[nack++] = m;
    }
    if (nack) {
        /* Commit before ack: the high-water marks reach the disk before JetStream forgets. */
        sync_state(in->hwm, sizeof *in->hwm);
        for (int i = 0; i < nack; i++)
            js_ack(ack[i]);
        crash_point("in-acked");
    }
    free(ack);
    natsMsgList_Destroy(&list);
    return 1;
}

/* ---- status ----------------------------------------------------------------------------- */

static void stats_json(FILE *f, const struct route_stats *s)
{
    fprintf(f,
            "\"published\": %" PRIu64 ", \"republished\": %" PRIu64 ", \"in_flight\": %" PRIu64
            ", \"outbox_depth\": %" PRIu64 ", \"delivered\": %" PRIu64 ", \"duplicates\": %" PRIu64
            ", \"redeliveries\": %" PRIu64 ", \"gaps\": %" PRIu64 ", \"skipped\": %" PRIu64
            ", \"dropped\": %" PRIu64 ", \"dead_letters\": %" PRIu64 ", \"lag\": %" PRIu64
            ", \"uncertain\": %" PRIu64,
            s->published, s->republished, s->in_flight, s->outbox_depth, s->delivered,
            s->duplicates, s->redeliveries, s->gaps, s->skipped, s->dropped, s->dead_letters,
            s->lag, s->uncertain);
}

static void status_write(void)
{
    char tmp[RELAY_PATH_MAX + 32], dst[RELAY_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s/.status.json.tmp", R.state_dir);
    snprintf(dst, sizeof dst, "%s/status.json", R.state_dir);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "{\"pid\": %d, \"node\": \"%s\", \"connected\": %s, \"routes\": [", (int) getpid(),
            R.node, link_up() ? "true" : "false");
    for (int i = 0; i < R.nouts; i++) {
        struct route_out *o = &R.outs[i];
        struct pbx_stat st;
        if (pbx_stat(o->q, &st) == 0)
            o->stats.outbox_depth = st.msgs;
        o->stats.in_flight = o->npend - o->phead;
        fprintf(f,
                "%s\n  {\"direction\": \"out\", \"outbox\": \"%s\", \"mailbox\": \"%s\", \"node\": "
                "\"%s\", \"incarnation\": \"%016" PRIx64 "\", \"next_seq\": %" PRIu64 ", ",
                i ? "," : "", o->outbox, o->mailbox, o->node, o->st->incarnation, o->st->next_seq);
        stats_json(f, &o->stats);
        fputc('}', f);
    }
    for (int i = 0; i < R.nins; i++) {
        struct route_in *in = &R.ins[i];
        if (in->sub && link_up() && now_ms() - in->lag_at > 1000) {
            jsConsumerInfo *ci = NULL;
            jsErrCode jerr = 0;
            if (js_GetConsumerInfo(&ci, R.js, in->stream, "relay", NULL, &jerr) == NATS_OK && ci)
                in->stats.lag = ci->NumPending + (uint64_t) ci->NumAckPending;
            if (ci && getenv("PBX_RELAY_DEBUG"))
                logmsg("consumer: pending %" PRIu64 " ack-pending %" PRId64 " waiting %" PRId64
                       " redelivered %" PRId64,
                       ci->NumPending, ci->NumAckPending, ci->NumWaiting, ci->NumRedelivered);
            jsConsumerInfo_Destroy(ci);
            in->lag_at = now_ms();
        }
        fprintf(f, "%s\n  {\"direction\": \"in\", \"mailbox\": \"%s\", \"stream\": \"%s\", ",
                R.nouts || i ? "," : "", in->mailbox, in->stream);
        stats_json(f, &in->stats);
        fputc('}', f);
    }
    fprintf(f, "\n]}\n");
    if (fclose(f) == 0)
        rename(tmp, dst);
}

/* ---- the daemon ------------------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void) sig;
    stopping = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: postbox-relay [run] --nats URL[,URL...] --node NAME --state DIR\n"
               "                     [--out [OUTBOX=]MAILBOX@NODE]... [--in MAILBOX]...\n"
               "                     [--batch N] [--window N] [--gap-timeout MS] [--replicas N]\n"
               "       postbox-relay status --state DIR [--json]\n"
               "See postbox-relay(1) and docs/relay.md.\n");
}

int relay_status_main(int argc, char **argv);

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "status"))
        return relay_status_main(argc - 1, argv + 1);
    crc32_init();
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    int a = 1;
    if (argc > 1 && !strcmp(argv[1], "run"))
        a = 2;
    const char *outs[32], *ins[32];
    int nouts = 0, nins = 0;
    char *nats = NULL;
    R.batch = 256;
    R.window = 0; /* no pipelining unless asked for (docs/relay.md, Speed) */
    R.gap_timeout_ms = 30000;
    R.replicas = 1;
    for (; a < argc; a += 2) { /* every option takes a value */
        const char *arg = argv[a];
        const char *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(arg, "--nats") && val)
            nats = strdup(val);
        else if (!strcmp(arg, "--node") && val)
            R.node = val;
        else if (!strcmp(arg, "--state") && val)
            R.state_dir = val;
        else if (!strcmp(arg, "--out") && val && nouts < 32)
            outs[nouts++] = val;
        else if (!strcmp(arg, "--in") && val && nins < 32)
            ins[nins++] = val;
        else if (!strcmp(arg, "--batch") && val)
            R.batch = atoi(val);
        else if (!strcmp(arg, "--window") && val)
            R.window = atoi(val);
        else if (!strcmp(arg, "--gap-timeout") && val)
            R.gap_timeout_ms = (unsigned) atoi(val);
        else if (!strcmp(arg, "--replicas") && val)
            R.replicas = atoi(val);
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!nats || !R.node || !R.state_dir || (!nouts && !nins)) {
        usage(stderr);
        return 2;
    }
    if (!valid_name(R.node))
        die("--node %s: a node name is 1-200 of [A-Za-z0-9._-]", R.node);
    if (R.batch < 1 || R.batch > 4096)
        R.batch = 256;
    if (!R.window)
        R.window = R.batch;
    if (R.window < 1 || R.window > WINDOW_MAX)
        die("--window %d: 1 to %d records", R.window, WINDOW_MAX);
    R.wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (R.wake < 0)
        die("eventfd: %s", strerror(errno));
    for (char *save = NULL, *tok = strtok_r(nats, ",", &save); tok && R.nservers < 16;
         tok = strtok_r(NULL, ",", &save))
        R.servers[R.nservers++] = tok;
    const char *cp = getenv("PBX_RELAY_CRASH");
    if (cp && *cp) {
        static char name[64];
        snprintf(name, sizeof name, "%s", cp);
        char *colon = strchr(name, ':');
        if (colon) {
            *colon = 0;
            crash_countdown = atol(colon + 1) > 0 ? atol(colon + 1) : 1;
        }
        crash_name = name;
    }
    make_dir(R.state_dir);
    /* One relay per state directory. */
    char lock[RELAY_PATH_MAX + 32];
    snprintf(lock, sizeof lock, "%s/lock", R.state_dir);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0 || lockf(lfd, F_TLOCK, 0) < 0)
        die("%s: another relay uses this state directory", R.state_dir);
    char pidtxt[32];
    int pl = snprintf(pidtxt, sizeof pidtxt, "%d\n", (int) getpid());
    if (ftruncate(lfd, 0) < 0 || pwrite(lfd, pidtxt, (size_t) pl, 0) != pl)
        die("%s: %s", lock, strerror(errno));

    R.bufcap = 8u << 20;
    R.buf = malloc(R.bufcap);
    if (!R.buf)
        die("out of memory");
    for (int i = 0; i < nouts; i++)
        out_open(&R.outs[R.nouts++], outs[i]);
    for (int i = 0; i < nins; i++)
        in_open(&R.ins[R.nins++], ins[i]);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    link_open();
    logmsg("node %s: %d outbound, %d inbound route(s); state in %s", R.node, R.nouts, R.nins,
           R.state_dir);
    uint64_t status_at = 0;
    while (!stopping) {
        if (link_up() && atomic_exchange(&R.need_declare, 0)) {
            if (declare() < 0) {
                atomic_store(&R.need_declare, 1);
                sleep_ms(200);
            }
        }
        int busy = 0;
        for (int i = 0; i < R.nouts; i++)
            busy |= out_step(&R.outs[i]);
        for (int i = 0; i < R.nins; i++)
            busy |= in_step(&R.ins[i], busy || R.nouts ? 1 : 100);
        if (!busy) {
            if (!link_up() || !R.nouts) {
                if (!R.nins || !link_up())
                    sleep_ms(20);
            } else {
                /* Idle: wait for an outbox to hold a message (pbx_fd) where the route can take
                 * one, for a pub ack (R.wake, see ACK RING), or a short while. */
                struct pollfd pf[33];
                int np = 0;
                for (int i = 0; i < R.nouts; i++)
                    if (R.outs[i].fd >= 0 && out_can_take(&R.outs[i]))
                        pf[np++] = (struct pollfd){R.outs[i].fd, POLLIN, 0};
                pf[np++] = (struct pollfd){R.wake, POLLIN, 0};
                atomic_store(&R.sleeping, 1);
                int acked = 0;
                for (int i = 0; i < R.nouts; i++)
                    acked |= atomic_load(&R.outs[i].acks_seen) != R.outs[i].acks_taken;
                if (!acked)
                    poll(pf, (nfds_t) np, R.nins ? 5 : 50);
                atomic_store(&R.sleeping, 0);
                uint64_t junk;
                if (read(R.wake, &junk, sizeof junk) < 0) {
                    /* EAGAIN: nobody wrote */
                }
            }
        }
        uint64_t now = now_ms();
        if (now - status_at >= 250) {
            status_write();
            status_at = now;
        }
    }
    status_write();
    logmsg("stopping");
    char marker[RELAY_PATH_MAX];
    for (int i = 0; i < R.nouts; i++) {
        marker_path(marker, sizeof marker, R.outs[i].outbox);
        if (strncmp(R.outs[i].outbox, "spool:", 6))
            unlink(marker);
    }
    for (int i = 0; i < R.nins; i++) {
        marker_path(marker, sizeof marker, R.ins[i].mailbox);
        unlink(marker);
        sync_state(R.ins[i].hwm, sizeof *R.ins[i].hwm);
        if (R.ins[i].sub)
            natsSubscription_Destroy(R.ins[i].sub);
        pbx_close(R.ins[i].q);
    }
    for (int i = 0; i < R.nouts; i++) {
        /* What is in flight is re-published at the next start anyway; taking in the acks
         * that are on their way saves the next start that work. */
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 2000;
        if (R.outs[i].psent > R.outs[i].phead && link_up()) {
            js_PublishAsyncComplete(R.outs[i].js, &po);
            out_collect(&R.outs[i]);
        }
        jsCtx_Destroy(R.outs[i].js);
        pbx_close(R.outs[i].q);
    }
    jsCtx_Destroy(R.js);
    natsConnection_Destroy(R.nc);
    nats_Close();
    return 0;
}
