/*
 * relay.h — what the parts of postbox-relay share: the routes, their durable state and the
 * counters that `postbox relay status` shows.
 *
 * The relay is a program, not a transport: it uses only the public postbox API and links
 * nats.c itself, so the library never depends on NATS. One process serves any number of
 * outbound routes (a local outbox forwarded to MAILBOX on NODE) and inbound routes (messages
 * for a local MAILBOX delivered into it). docs/relay.md explains the protocol; the comments
 * at the top of relay.c say why each step is ordered as it is.
 */
#ifndef PBX_RELAY_H
#define PBX_RELAY_H

#include <stdint.h>

#define RELAY_NAME_MAX 200
#define RELAY_PATH_MAX 4096

/* The durable state of an outbound route (out-ROUTE/state, mapped shared: a store into it
 * survives the relay's death; msync'ed where the text says so). */
struct out_state {
    uint64_t magic;
    uint64_t incarnation;       /* random, chosen when the route's state is first created */
    uint64_t next_seq;          /* the sequence the next journalled message gets (from 1) */
    uint64_t acked_through;     /* journal records <= this have had their outbox claim acked */
    uint64_t published_through; /* journal records <= this are stored in JetStream */
};

/* One origin's high-water mark in an inbound route (in-MAILBOX/hwm, mapped shared). */
#define HWM_ORIGINS 64
struct hwm_entry {
    char origin[232]; /* "NODE/OUTBOX" of the sending relay; empty: a free entry */
    uint64_t incarnation;
    uint64_t hwm;   /* every sequence <= hwm was delivered (or dropped, or dead-lettered) */
    uint64_t touch; /* last use, for eviction when the table is full */
};
/* The delivery in progress (see DELIVERY INTENT in relay.c). */
struct hwm_intent {
    uint64_t active;
    uint64_t slot;
    uint64_t seq;
    uint64_t sent_before; /* the destination's pbx_stat().sent just before pbx_send() */
    uint64_t pid;         /* the relay that sent */
};
struct hwm_table {
    uint64_t magic;
    struct hwm_intent intent;
    struct hwm_entry e[HWM_ORIGINS];
};

/* Counters of a route, written to STATE/status.json for `postbox relay status`. */
struct route_stats {
    uint64_t published;    /* out: messages stored in JetStream (pub ack received) */
    uint64_t republished;  /* out: publishes repeated after a failure or a restart */
    uint64_t in_flight;    /* out: journalled, not yet acknowledged by the stream */
    uint64_t outbox_depth; /* out: messages waiting in the outbox */
    uint64_t delivered;    /* in: messages put into the destination mailbox */
    uint64_t duplicates;   /* in: messages at or below the high-water mark, acked and dropped */
    uint64_t redeliveries; /* in: messages JetStream delivered more than once */
    uint64_t gaps;         /* in: messages arriving ahead of a missing one (nak'ed, retried) */
    uint64_t skipped;      /* in: sequences given up on after the gap timeout */
    uint64_t dropped;      /* in: discarded by the destination's PBX_DROP_* policy */
    uint64_t dead_letters; /* both: messages written to the dead-letter spool */
    uint64_t lag;          /* in: messages in the stream not yet acked by this relay */
    uint64_t uncertain;    /* in: deliveries a crash left undecidable (docs/relay.md) */
};

#endif
