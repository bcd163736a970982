/*
 * tr_boost.cpp — Boost.Interprocess message_queue (header-only, libboost-dev).
 *
 * The queue lives in a POSIX shared-memory object made by open() in the orchestrator with
 * max_num_msg = depth and max_msg_size = the payload size; each child opens it by name, as an
 * independent process would, and close() removes it. Sends block when the queue is full and
 * copy the payload in, receives copy it out; all messages have priority 0, so the queue is
 * FIFO. Its waits are a process-shared mutex and condition variables in the segment.
 */
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <cstdio>
#include <new>
#include <unistd.h>

#include "peers.h"

namespace bip = boost::interprocess;

struct tr_chan {
    char name[96];
    bip::message_queue *q;
    char how[64];
};

static int bq_open(const struct tr_params *p, struct tr_chan **out, const char **why)
{
    tr_chan *c = new (std::nothrow) tr_chan();
    if (!c)
        return -ENOMEM;
    std::snprintf(c->name, sizeof(c->name), "pbx-bench.%d.%s.boost", (int) getpid(), p->name);
    try {
        bip::message_queue::remove(c->name);
        bip::message_queue q(bip::create_only, c->name, p->depth, p->msg_size);
    } catch (const bip::interprocess_exception &e) {
        delete c;
        return -EIO;
    }
    std::snprintf(c->how, sizeof(c->how), "max_num_msg = %lu", p->depth);
    *why = c->how;
    *out = c;
    return 0;
}

static int bq_attach(struct tr_chan *c, int sender)
{
    (void) sender;
    try {
        c->q = new bip::message_queue(bip::open_only, c->name);
    } catch (...) {
        c->q = nullptr;
        return -EIO;
    }
    return 0;
}

static void bq_detach(struct tr_chan *c)
{
    delete c->q;
    c->q = nullptr;
}

static int bq_send(struct tr_chan *c, void *buf, size_t len)
{
    try {
        c->q->send(buf, len, 0);
    } catch (...) {
        return -EIO;
    }
    return 0;
}

static ssize_t bq_recv(struct tr_chan *c, void *buf, size_t cap)
{
    bip::message_queue::size_type got = 0;
    unsigned prio = 0;
    try {
        c->q->receive(buf, cap, got, prio);
    } catch (...) {
        return -EIO;
    }
    return (ssize_t) got;
}

static void bq_close(struct tr_chan *c)
{
    if (!c)
        return;
    bip::message_queue::remove(c->name);
    delete c;
}

extern "C" const struct peer_ops peer_boost_ops = {
    "boost",   "Boost.Interprocess message_queue",
    0,         bq_open,
    bq_attach, bq_detach,
    bq_send,   bq_recv,
    bq_close,  NULL,
};
