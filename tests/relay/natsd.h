/*
 * natsd.h — the relay tests' own NATS servers and relay processes.
 *
 * A test starts `nats-server -a 127.0.0.1 -p -1 -js -sd STORE --ports_file_dir DIR` as its
 * child, reads the port the server chose from the ports file, and ends it by its pid; a restart
 * reuses the port and the store (a server restarted on the same disk). Every process started
 * here stays in the test's process group, so the harness (tests/harness.h) kills whatever a
 * failed test leaves behind and deletes its directory, with the stores in it.
 *
 * A "host" is a POSTBOX_DIR and a relay state directory under the test's directory; relays run
 * build/tools/postbox-relay with POSTBOX_DIR set to their host's.
 */
#ifndef PBX_TEST_NATSD_H
#define PBX_TEST_NATSD_H

#include <sys/types.h>

struct natsd {
    char dir[512];   /* ports file directory */
    char store[512]; /* JetStream store */
    char url[128];
    int port;
    pid_t pid;
    long max_payload; /* if set before natsd_spawn (see natsd_start_limited): the server's */
    /* Cluster members (natsd_start_cluster): the server name, the route port the server chose,
     * and the routes it is started with. */
    char server_name[16];
    int cluster_port;
    char routes[512];
};

/* Start a three-server JetStream cluster on 127.0.0.1, every port chosen by the servers: the
 * first with a placeholder route (JetStream will not start a cluster without one), the others
 * with a route to the first's port, read from its ports file. */
void natsd_start_cluster(struct natsd d[3], const char *base);
/* Restart member i of a cluster (same ports and store), routed to the other two. */
void natsd_restart_member(struct natsd d[3], int i);

/* Skip the test (77, naming the Debian package) unless nats-server and postbox-relay exist. */
void natsd_require(void);
/* Start a server with its store in base/NAME (port 0: any free port; else that port). Waits
 * until it accepts connections. Returns 0 or fails the test. */
void natsd_start(struct natsd *d, const char *base, const char *name, int port);
/* The same with the server's max_payload set (bytes; through a config file). */
void natsd_start_limited(struct natsd *d, const char *base, const char *name, long max_payload);
/* Start again on the same port and store. */
void natsd_restart(struct natsd *d);
/* Send sig to the server; with SIGKILL or SIGTERM also reap it. */
void natsd_kill(struct natsd *d, int sig);

struct host {
    char name[32];
    char shm[512];   /* its POSTBOX_DIR */
    char state[512]; /* its relay's --state */
    pid_t relay;
};

void host_init(struct host *h, const char *base, const char *name);
/* Make the calling process use h's mailboxes (sets POSTBOX_DIR). */
void host_enter(const struct host *h);
/* Start h's relay: postbox-relay --nats URL --node NAME --state STATE ARGS... (NULL-terminated);
 * crash, if not NULL, goes into PBX_RELAY_CRASH. */
void host_relay_start(struct host *h, const char *url, const char *crash, ...);
/* Wait for h's relay to exit; returns its exit status or 128 + signal. */
int host_relay_wait(struct host *h);
/* Stop h's relay with SIGTERM and reap it. */
void host_relay_stop(struct host *h);
/* A number from h's STATE/status.json: the first "key" after the route whose "direction" is
 * dir; -1 if not there yet. */
long long host_status(const struct host *h, const char *dir, const char *key);
/* Count the files in h's dead-letter spool. */
int host_dead_letters(const struct host *h);
/* Whether some file in h's dead-letter spool contains text. */
int host_dead_letter_says(const struct host *h, const char *text);
/* Run `postbox-relay status --state STATE` for h (args: more arguments, NULL-terminated) and
 * return its output (static buffer, overwritten by the next call); fails the test if it does
 * not exit 0. */
const char *host_relay_status(const struct host *h, ...);

#endif
