/*
 * _postbox.c — the CPython extension behind `import postbox`: the Mailbox, Message, Claim,
 * Loan, Stat and Peer types and the exceptions, over the C library (include/postbox.h), linked
 * statically.
 * It is a C extension rather than ctypes or cffi because the per-call cost is the point: a
 * 16-byte send + receive should cost little more than the interpreter's own method calls.
 * Three rules shape every call (docs/python.md states them for users):
 *   - The GIL is held for the first attempt, made with PBX_NOWAIT; it is released only when
 *     the call has to wait, so a call that finds a message (or room) never pays for a GIL
 *     hand-over, and other threads run while one waits.
 *   - EINTR never reaches Python (PEP 475): when a wait is interrupted, the Python signal
 *     handlers run (PyErr_CheckSignals), and if none raised, the wait resumes with the time
 *     that is left. Ctrl-C therefore raises KeyboardInterrupt in a blocked receive.
 *   - A Mailbox counts the calls in flight on its handle (see LIFETIME below), so close() from
 *     one thread while another waits never frees the pbx_t under the waiter.
 * Payloads to send are read through the buffer protocol, so any bytes-like object is sent
 * without an intermediate copy; recv_into() receives into a caller's buffer the same way.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "postbox.h"

/* Receives into a buffer on the stack when the mailbox's largest message fits in it, then
 * copy into a bytes object of the exact size; larger mailboxes receive straight into a bytes
 * object of max_msg_size that is shrunk afterwards. */
#define STACK_RECV_MAX 8192

/* ---- module state ------------------------------------------------------------------------
 * Plain statics: the module is single-phase initialised and not meant for sub-interpreters. */
static PyObject *EmptyError;       /* BlockingIOError, queue.Empty; errno ENOMSG */
static PyObject *FullError;        /* BlockingIOError, queue.Full; errno EAGAIN or ENOBUFS */
static PyObject *RecvTimeoutError; /* Empty, TimeoutError; errno ETIMEDOUT */
static PyObject *SendTimeoutError; /* Full, TimeoutError; errno ETIMEDOUT */
static PyObject *RemovedError;     /* OSError; errno EIDRM */
static PyObject *ReadOnlyError;    /* PermissionError; errno EBADF (a readonly=True handle) */

static PyTypeObject MessageType;
static PyTypeObject StatType;
static PyTypeObject PeerType;
static PyTypeObject MailboxType;
static PyTypeObject ClaimType;

/* Keyword names, interned once; the argument parser compares them by identity first. */
enum kw {
    KW_DATA,
    KW_TYPE,
    KW_BLOCK,
    KW_TIMEOUT,
    KW_SYNC,
    KW_EXCLUDE,
    KW_TRUNCATE,
    KW_BUFFER,
    KW_MESSAGES,
    KW_MAX,
    KW_COUNT
};
static const char *const kw_names[KW_COUNT] = {"data",    "type",     "block",  "timeout",  "sync",
                                               "exclude", "truncate", "buffer", "messages", "max"};
static PyObject *kw_strings[KW_COUNT];

/* Incremented in the child after fork(): see LIFETIME. */
static volatile unsigned long fork_generation;

static void after_fork_in_child(void)
{
    fork_generation++;
}

/* ---- errors ------------------------------------------------------------------------------ */

/* Which exception a negative postbox return raises. `sending` picks the send-side class for
 * -ETIMEDOUT. Errors without a class of their own become OSError(errno, text[, name]), which
 * Python turns into FileNotFoundError, FileExistsError, PermissionError, ... by errno. */
static PyObject *raise_pbx(int err, int sending, PyObject *name)
{
    PyObject *cls;
    PyObject *exc;
    int e = -err;

    switch (e) {
    case ENOMSG:
        cls = EmptyError;
        break;
    case EAGAIN:
    case ENOBUFS:
        cls = sending ? FullError : EmptyError;
        break;
    case ETIMEDOUT:
        cls = sending ? SendTimeoutError : RecvTimeoutError;
        break;
    case EIDRM:
        cls = RemovedError;
        break;
    case EBADF:
        cls = ReadOnlyError;
        break;
    default:
        cls = PyExc_OSError;
        break;
    }
    /* pbx_strerror(-EAGAIN) speaks of a full mailbox; a receive gets it when the lock's holder
     * is stopped (only with block=False: a blocking call waits for the holder). */
    const char *text = (e == EAGAIN && !sending)
                           ? "a process holding the mailbox's lock is stopped; try again"
                           : pbx_strerror(err);

    if (name != NULL)
        exc = PyObject_CallFunction(cls, "isO", e, text, name);
    else
        exc = PyObject_CallFunction(cls, "is", e, text);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *) Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* ---- argument parsing --------------------------------------------------------------------
 * A small vectorcall parser: positional arguments fill out[0..nargs-1] in the order of `order`,
 * keywords are matched against the interned names. Much cheaper than
 * PyArg_ParseTupleAndKeywords, which matters for a 16-byte send. */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      const enum kw *order, int npos, const enum kw *allowed, int nallowed,
                      PyObject **out)
{
    int i;

    for (i = 0; i < KW_COUNT; i++)
        out[i] = NULL;
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional argument%s (%zd given)",
                     fname, npos, npos == 1 ? "" : "s", nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++)
        out[order[i]] = args[i];
    if (kwnames == NULL)
        return 0;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(kwnames); k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int found = -1;

        for (i = 0; i < nallowed && found < 0; i++)
            if (key == kw_strings[allowed[i]])
                found = allowed[i];
        for (i = 0; i < nallowed && found < 0; i++)
            if (PyUnicode_Compare(key, kw_strings[allowed[i]]) == 0)
                found = allowed[i];
        if (found < 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                             key);
            return -1;
        }
        if (out[found] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         kw_names[found]);
            return -1;
        }
        out[found] = args[nargs + k];
    }
    return 0;
}

static int arg_bool(PyObject *o, int dflt)
{
    return o == NULL ? dflt : PyObject_IsTrue(o);
}

static int arg_type(PyObject *o, long dflt, long *out)
{
    if (o == NULL) {
        *out = dflt;
        return 0;
    }
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "message type must be an int, not '%.100s'",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = PyLong_AsLong(o);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* A timeout: None (wait for ever) or a number of seconds >= 0. */
struct wait_spec {
    int block;
    int timed;
    double seconds;
};

static int arg_wait(PyObject *block, PyObject *timeout, struct wait_spec *w)
{
    w->block = arg_bool(block, 1);
    if (w->block < 0)
        return -1;
    w->timed = 0;
    w->seconds = 0;
    if (timeout == NULL || timeout == Py_None)
        return 0;
    w->seconds = PyFloat_AsDouble(timeout);
    if (w->seconds == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(w->seconds) || w->seconds < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number or None");
        return -1;
    }
    w->timed = 1;
    return 0;
}

/* ---- LIFETIME ----------------------------------------------------------------------------
 * pbx_close() must not race with another call on the handle, but Python code may well call
 * close() while another thread waits in recv(). So every call takes the handle with
 * handle_get() and gives it back with handle_put(), both with the GIL held, counting the calls
 * in flight in `users` (the GIL makes the count race-free). close() marks the mailbox closed at
 * once (later calls raise ValueError) and closes the handle itself only if no call is in flight;
 * otherwise the last call to leave closes it. A waiting call is not cut short by close(): it
 * ends as it would have (a message, its timeout, the mailbox's removal, a signal handler's
 * exception). In a child after fork() the calls that were in flight in other threads of the
 * parent do not exist, so the count restarts from zero there (fork_generation). */
typedef struct {
    PyObject_HEAD pbx_t *q;
    PyObject *name; /* str, or None for a private mailbox */
    int users;
    int closed;
    unsigned long generation;
    uint32_t max_msg_size;
    int readonly; /* opened with PBX_RDONLY: only stat() and peers() work */
    PyObject *weakrefs;
} Mailbox;

static pbx_t *handle_get(Mailbox *self)
{
    if (self->generation != fork_generation) {
        self->generation = fork_generation;
        self->users = 0;
    }
    if (self->closed || self->q == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed mailbox");
        return NULL;
    }
    self->users++;
    return self->q;
}

static void handle_release_now(Mailbox *self)
{
    pbx_t *q = self->q;

    self->q = NULL;
    if (q != NULL) {
        /* pbx_close() joins the fd helper thread, if any: let other threads run meanwhile. */
        PyThreadState *ts = PyEval_SaveThread();

        pbx_close(q);
        PyEval_RestoreThread(ts);
    }
}

static void handle_put(Mailbox *self)
{
    if (self->users > 0)
        self->users--;
    if (self->users == 0 && self->closed)
        handle_release_now(self);
}

/* ---- the waiting loop ---------------------------------------------------------------------
 * An operation is tried once with PBX_NOWAIT while holding the GIL; if it would block and the
 * caller allows that, the GIL is released for the wait, which is resumed after signal handlers
 * with the time left. Returns the operation's result, or PBX_PYERR with a Python exception set
 * (a signal handler raised). */
#define PBX_PYERR (-100000)

struct op {
    pbx_t *q;
    long type;
    int flags;
    /* send */
    const void *data;
    size_t len;
    /* receive */
    void *buf;
    size_t cap;
    long type_out;
    uint64_t claim;
    /* batches: msgv[0..n-1] */
    struct pbx_msgv *msgv;
    size_t n;
    enum { OP_SEND, OP_RECV, OP_CLAIM, OP_SENDV, OP_RECVV } kind;
};

static ssize_t op_run(struct op *op, int flags, const struct timespec *ts)
{
    switch (op->kind) {
    case OP_SEND:
        return pbx_timedsend(op->q, op->type, op->data, op->len, flags, ts);
    case OP_RECV:
        return pbx_timedrecv(op->q, op->type, op->buf, op->cap, flags, &op->type_out, ts);
    case OP_CLAIM:
        return pbx_timedclaim(op->q, op->type, op->buf, op->cap, flags, &op->type_out, &op->claim,
                              ts);
    case OP_SENDV:
        return pbx_timedsendv(op->q, op->msgv, op->n, flags, ts);
    case OP_RECVV:
        return pbx_timedrecvv(op->q, op->type, op->msgv, op->n, flags, ts);
    }
    return -EINVAL;
}

static double now_monotonic(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + (double) t.tv_nsec * 1e-9;
}

static void to_timespec(double s, struct timespec *ts)
{
    if (s > 1e15)
        s = 1e15; /* "for ever", without overflowing time_t */
    ts->tv_sec = (time_t) s;
    ts->tv_nsec = (long) ((s - (double) ts->tv_sec) * 1e9);
    if (ts->tv_nsec >= 1000000000L)
        ts->tv_nsec = 999999999L;
    if (ts->tv_nsec < 0)
        ts->tv_nsec = 0;
}

static ssize_t run_blocking(struct op *op, const struct wait_spec *w)
{
    int would_block = (op->kind == OP_SEND || op->kind == OP_SENDV) ? -EAGAIN : -ENOMSG;
    int sync = op->flags & PBX_SYNC;
    int flags = op->flags;
    PyThreadState *ts_gil;
    double deadline = 0;
    ssize_t r;

    if (sync) {
        /* A synchronous send waits for its receiver even under PBX_NOWAIT (which then only
         * asks that one be waiting already): always without the GIL. */
        if (!w->block)
            flags |= PBX_NOWAIT;
    } else {
        /* -EAGAIN from a receive: the lock's holder is stopped (SIGSTOP, a debugger), which
         * only PBX_NOWAIT gives up on; a call that may block waits for it like any other. */
        r = op_run(op, flags | PBX_NOWAIT, NULL);
        if ((r != would_block && r != -EAGAIN) || !w->block)
            return r;
    }
    /* The clock is read once, to resume after a signal with the time left; the first wait is
     * given the caller's timeout as it is. */
    if (w->timed)
        deadline = now_monotonic() + w->seconds;
    for (double left = w->seconds;;) {
        struct timespec ts;
        const struct timespec *tsp = NULL;

        if (w->timed) {
            to_timespec(left > 0 ? left : 0, &ts);
            tsp = &ts;
        }
        ts_gil = PyEval_SaveThread();
        r = op_run(op, flags, tsp);
        PyEval_RestoreThread(ts_gil);
        if (r != -EINTR)
            return r;
        if (PyErr_CheckSignals() < 0)
            return PBX_PYERR;
        if (sync) {
            /* An interrupted synchronous send cannot be resumed: the message may or may not be
             * queued already, and no call waits for its take alone (docs/python.md). */
            return -EINTR;
        }
        if (w->timed && (left = deadline - now_monotonic()) <= 0)
            return -ETIMEDOUT;
    }
}

/* ---- Message, Stat, Peer: struct sequences ----------------------------------------------- */

static PyStructSequence_Field message_fields[] = {
    {"data", "the payload (bytes)"}, {"type", "the message type (int >= 1)"}, {NULL, NULL}};
static PyStructSequence_Desc message_desc = {
    "postbox.Message",
    "A received message: .data (bytes) and .type (int); unpacks as (data, type).", message_fields,
    2};

static PyStructSequence_Field stat_fields[] = {
    {"msgs", "messages held now (queued, claimed, or being copied)"},
    {"bytes", "payload bytes of those messages"},
    {"max_msgs", "capacity in messages"},
    {"max_bytes", "capacity in payload bytes"},
    {"max_msg_size", "largest payload"},
    {"overflow", "overflow policy: BLOCK, DROP_NEWEST or DROP_OLDEST"},
    {"mode", "permission bits"},
    {"uid", "owner"},
    {"gid", "group"},
    {"last_send_pid", "process that sent last (0: none)"},
    {"last_recv_pid", "process that received last (0: none)"},
    {"last_send_time", "time of the last send, seconds since the Epoch (None: never)"},
    {"last_recv_time", "time of the last receive, seconds since the Epoch (None: never)"},
    {"sent", "messages ever queued"},
    {"received", "messages ever taken"},
    {"dropped", "messages ever discarded by the overflow policy"},
    {"repairs", "times a crashed participant's state was repaired"},
    {"send_waiters", "senders waiting for room now"},
    {"recv_waiters", "receivers waiting for a message now"},
    {"region_size", "bytes of shared memory the mailbox occupies"},
    {"claimed", "messages claimed and not yet acknowledged or released"},
    {NULL, NULL}};
static PyStructSequence_Desc stat_desc = {"postbox.Stat", "What Mailbox.stat() reports.",
                                          stat_fields, 21};

static PyStructSequence_Field peer_fields[] = {
    {"pid", "process id"},
    {"roles", "PEER_* bits: OPENED, SENT, RECEIVED, NOTIFY, WATCH"},
    {"since", "when it opened its oldest handle, seconds since the Epoch"},
    {"handles", "handles it has open on the mailbox"},
    {"notify_signal", "the signal it registered with notify(), 0 if none"},
    {NULL, NULL}};
static PyStructSequence_Desc peer_desc = {
    "postbox.Peer", "A live participant of a mailbox (Mailbox.peers()).", peer_fields, 5};

static PyObject *make_message(PyObject *data, long type)
{
    PyObject *m;
    PyObject *t;

    if (data == NULL)
        return NULL;
    m = PyStructSequence_New(&MessageType);
    t = PyLong_FromLong(type);
    if (m == NULL || t == NULL) {
        Py_XDECREF(m);
        Py_XDECREF(t);
        Py_DECREF(data);
        return NULL;
    }
    PyStructSequence_SET_ITEM(m, 0, data);
    PyStructSequence_SET_ITEM(m, 1, t);
    return m;
}

static PyObject *ns_to_seconds(int64_t ns)
{
    if (ns == 0)
        Py_RETURN_NONE;
    return PyFloat_FromDouble((double) ns * 1e-9);
}

/* ---- Mailbox: opening and closing --------------------------------------------------------- */

static int fill_options(struct pbx_options *o, PyObject *mode, PyObject *max_msgs,
                        PyObject *max_bytes, PyObject *max_msg_size, PyObject *overflow,
                        PyObject *durability)
{
    struct {
        PyObject *v;
        const char *what;
        unsigned long long max;
        int is64;
        void *field;
    } f[] = {
        {mode, "mode", 07777, 0, &o->mode},
        {max_msgs, "max_msgs", UINT32_MAX, 0, &o->max_msgs},
        {max_bytes, "max_bytes", UINT64_MAX, 1, &o->max_bytes},
        {max_msg_size, "max_msg_size", UINT32_MAX, 0, &o->max_msg_size},
        {overflow, "overflow", PBX_DROP_OLDEST, 0, &o->overflow},
        {durability, "durability", PBX_DURABLE_NONE, 0, &o->durability},
    };

    pbx_options_init(o);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        unsigned long long v;

        if (f[i].v == NULL || f[i].v == Py_None)
            continue;
        if (!PyLong_Check(f[i].v)) {
            PyErr_Format(PyExc_TypeError, "%s must be an int, not '%.100s'", f[i].what,
                         Py_TYPE(f[i].v)->tp_name);
            return -1;
        }
        v = PyLong_AsUnsignedLongLong(f[i].v);
        if (v == (unsigned long long) -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s out of range", f[i].what);
            return -1;
        }
        if (v > f[i].max) {
            PyErr_Format(PyExc_ValueError, "%s out of range (at most %llu)", f[i].what, f[i].max);
            return -1;
        }
        if (f[i].is64)
            *(uint64_t *) f[i].field = v;
        else if (f[i].field == (void *) &o->overflow)
            o->overflow = (enum pbx_overflow) v;
        else
            *(uint32_t *) f[i].field = (uint32_t) v;
    }
    return 0;
}

/* Called once the handle is open: caches the largest message size for receives. */
static PyObject *mailbox_adopt(PyTypeObject *type, pbx_t *q, PyObject *name)
{
    struct pbx_stat st;
    Mailbox *self;
    int r;

    r = pbx_stat(q, &st);
    if (r < 0) {
        pbx_close(q);
        return raise_pbx(r, 0, name);
    }
    self = (Mailbox *) type->tp_alloc(type, 0);
    if (self == NULL) {
        pbx_close(q);
        return NULL;
    }
    self->q = q;
    self->generation = fork_generation;
    self->max_msg_size = st.max_msg_size;
    Py_INCREF(name);
    self->name = name;
    return (PyObject *) self;
}

static PyObject *Mailbox_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyThreadState *ts;
    static char *kwlist[] = {"name",      "create",       "exclusive", "mode",       "max_msgs",
                             "max_bytes", "max_msg_size", "overflow",  "durability", "readonly",
                             NULL};
    PyObject *name_obj;
    PyObject *path = NULL;
    int create = 0, exclusive = 0, readonly = 0;
    PyObject *mode = NULL, *max_msgs = NULL, *max_bytes = NULL, *max_msg_size = NULL;
    PyObject *overflow = NULL, *durability = NULL;
    struct pbx_options o;
    pbx_t *q = NULL;
    PyObject *res;
    int flags = 0;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$ppOOOOOOp:Mailbox", kwlist, &name_obj, &create,
                                     &exclusive, &mode, &max_msgs, &max_bytes, &max_msg_size,
                                     &overflow, &durability, &readonly))
        return NULL;
    if (!PyUnicode_Check(name_obj)) {
        PyErr_Format(PyExc_TypeError, "mailbox name must be a str, not '%.100s'",
                     Py_TYPE(name_obj)->tp_name);
        return NULL;
    }
    if (!PyUnicode_FSConverter(name_obj, &path))
        return NULL;
    if (exclusive && !create) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "exclusive=True needs create=True");
        return NULL;
    }
    if (readonly && create) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "readonly=True cannot create a mailbox");
        return NULL;
    }
    if (fill_options(&o, mode, max_msgs, max_bytes, max_msg_size, overflow, durability) < 0) {
        Py_DECREF(path);
        return NULL;
    }
    if (create)
        flags |= PBX_CREATE;
    if (exclusive)
        flags |= PBX_EXCL;
    if (readonly)
        flags |= PBX_RDONLY;
    ts = PyEval_SaveThread();
    r = pbx_open(PyBytes_AS_STRING(path), flags, &o, &q);
    PyEval_RestoreThread(ts);
    Py_DECREF(path);
    if (r < 0) {
        if (r == -EINVAL) {
            PyErr_Format(PyExc_ValueError, "cannot open mailbox %R: %s", name_obj, pbx_strerror(r));
            return NULL;
        }
        return raise_pbx(r, 0, name_obj);
    }
    res = mailbox_adopt(type, q, name_obj);
    if (res != NULL)
        ((Mailbox *) res)->readonly = readonly;
    return res;
}

PyDoc_STRVAR(private_doc,
             "private(*, mode=0o600, max_msgs=None, max_bytes=None, max_msg_size=None, "
             "overflow=BLOCK) -> Mailbox\n\n"
             "Create an anonymous mailbox (System V's IPC_PRIVATE). It has no name; children\n"
             "made with os.fork() after this call share it through the inherited object.");

static PyObject *Mailbox_private(PyObject *cls, PyObject *args, PyObject *kwds)
{
    PyThreadState *ts;
    static char *kwlist[] = {"mode", "max_msgs", "max_bytes", "max_msg_size", "overflow", NULL};
    PyObject *mode = NULL, *max_msgs = NULL, *max_bytes = NULL, *max_msg_size = NULL;
    PyObject *overflow = NULL;
    struct pbx_options o;
    pbx_t *q = NULL;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OOOOO:private", kwlist, &mode, &max_msgs,
                                     &max_bytes, &max_msg_size, &overflow))
        return NULL;
    if (fill_options(&o, mode, max_msgs, max_bytes, max_msg_size, overflow, NULL) < 0)
        return NULL;
    ts = PyEval_SaveThread();
    r = pbx_open_private(&o, &q);
    PyEval_RestoreThread(ts);
    if (r < 0) {
        if (r == -EINVAL) {
            PyErr_Format(PyExc_ValueError, "cannot create private mailbox: %s", pbx_strerror(r));
            return NULL;
        }
        return raise_pbx(r, 0, NULL);
    }
    return mailbox_adopt((PyTypeObject *) cls, q, Py_None);
}

static void Mailbox_dealloc(Mailbox *self)
{
    /* No call can be in flight: each holds a reference to self. */
    if (self->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *) self);
    if (self->q != NULL)
        pbx_close(self->q);
    self->q = NULL;
    Py_CLEAR(self->name);
    Py_TYPE(self)->tp_free((PyObject *) self);
}

PyDoc_STRVAR(close_doc, "close()\n\n"
                        "Release the handle. The mailbox and its messages stay. Safe while "
                        "another\nthread waits in a call on this mailbox: that call ends as it "
                        "would have,\nand the handle is released when it returns. Idempotent.");

static PyObject *Mailbox_close(Mailbox *self, PyObject *unused)
{
    (void) unused;
    if (self->generation != fork_generation) {
        self->generation = fork_generation;
        self->users = 0;
    }
    self->closed = 1;
    if (self->users == 0)
        handle_release_now(self);
    Py_RETURN_NONE;
}

static PyObject *Mailbox_enter(Mailbox *self, PyObject *unused)
{
    (void) unused;
    if (self->closed || self->q == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed mailbox");
        return NULL;
    }
    Py_INCREF(self);
    return (PyObject *) self;
}

static PyObject *Mailbox_exit(Mailbox *self, PyObject *args)
{
    (void) args;
    return Mailbox_close(self, NULL);
}

/* ---- Mailbox: send ------------------------------------------------------------------------ */

PyDoc_STRVAR(send_doc,
             "send(data, type=1, *, block=True, timeout=None, sync=False) -> int\n\n"
             "Queue a message: data is any bytes-like object (read in place, not copied\n"
             "first), type an int >= 1. When the mailbox is full a BLOCK mailbox waits for\n"
             "room (block=False: raise Full at once; timeout: raise SendTimeout after that\n"
             "many seconds); DROP_NEWEST raises Full (errno ENOBUFS) and discards this\n"
             "message; DROP_OLDEST discards older ones and returns how many (else 0).\n"
             "sync=True returns only once a receiver has taken the message.");

static const enum kw send_order[] = {KW_DATA, KW_TYPE};
static const enum kw send_allowed[] = {KW_DATA, KW_TYPE, KW_BLOCK, KW_TIMEOUT, KW_SYNC};

static PyObject *Mailbox_send(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *a[KW_COUNT];
    struct wait_spec w;
    struct op op;
    Py_buffer view;
    int have_view = 0;
    int sync;
    ssize_t r;

    if (parse_args("send", args, nargs, kwnames, send_order, 2, send_allowed, 5, a) < 0)
        return NULL;
    if (a[KW_DATA] == NULL) {
        PyErr_SetString(PyExc_TypeError, "send() missing required argument 'data'");
        return NULL;
    }
    memset(&op, 0, sizeof op);
    op.kind = OP_SEND;
    if (arg_type(a[KW_TYPE], 1, &op.type) < 0 || arg_wait(a[KW_BLOCK], a[KW_TIMEOUT], &w) < 0)
        return NULL;
    sync = arg_bool(a[KW_SYNC], 0);
    if (sync < 0)
        return NULL;
    if (op.type < 1) {
        PyErr_SetString(PyExc_ValueError, "message type must be >= 1");
        return NULL;
    }
    if (sync)
        op.flags |= PBX_SYNC;
    if (PyBytes_CheckExact(a[KW_DATA])) {
        op.data = PyBytes_AS_STRING(a[KW_DATA]);
        op.len = (size_t) PyBytes_GET_SIZE(a[KW_DATA]);
    } else {
        if (PyObject_GetBuffer(a[KW_DATA], &view, PyBUF_SIMPLE) < 0)
            return NULL;
        have_view = 1;
        op.data = view.buf;
        op.len = (size_t) view.len;
    }
    op.q = handle_get(self);
    if (op.q == NULL) {
        if (have_view)
            PyBuffer_Release(&view);
        return NULL;
    }
    r = run_blocking(&op, &w);
    handle_put(self);
    if (have_view)
        PyBuffer_Release(&view);
    if (r == PBX_PYERR)
        return NULL;
    if (r < 0)
        return raise_pbx((int) r, 1, NULL);
    return PyLong_FromSsize_t(r);
}

/* ---- Mailbox: receive, peek, recv_into, claim ---------------------------------------------- */

static const enum kw recv_order[] = {KW_TYPE};
static const enum kw recv_allowed[] = {KW_TYPE, KW_BLOCK, KW_TIMEOUT, KW_EXCLUDE, KW_TRUNCATE};
static const enum kw into_order[] = {KW_BUFFER, KW_TYPE};
static const enum kw into_allowed[] = {KW_BUFFER,  KW_TYPE,    KW_BLOCK,
                                       KW_TIMEOUT, KW_EXCLUDE, KW_TRUNCATE};

/* Parses the receive arguments common to recv, peek, claim and recv_into into op and w. */
static int recv_args(PyObject **a, struct op *op, struct wait_spec *w)
{
    int exclude, truncate;

    if (arg_type(a[KW_TYPE], 0, &op->type) < 0 || arg_wait(a[KW_BLOCK], a[KW_TIMEOUT], w) < 0)
        return -1;
    exclude = arg_bool(a[KW_EXCLUDE], 0);
    truncate = arg_bool(a[KW_TRUNCATE], 0);
    if (exclude < 0 || truncate < 0)
        return -1;
    if (exclude) {
        if (op->type <= 0) {
            PyErr_SetString(PyExc_ValueError, "exclude=True needs a type > 0");
            return -1;
        }
        op->flags |= PBX_EXCEPT;
    }
    if (truncate)
        op->flags |= PBX_NOERROR;
    return 0;
}

/* Receives one message into a new bytes object (op->kind and flags set by the caller). */
static PyObject *recv_bytes(Mailbox *self, struct op *op, const struct wait_spec *w)
{
    char stack[STACK_RECV_MAX];
    PyObject *bytes = NULL;
    ssize_t r;

    op->q = handle_get(self);
    if (op->q == NULL)
        return NULL;
    op->buf = stack;
    if (self->max_msg_size <= STACK_RECV_MAX) {
        op->cap = self->max_msg_size;
    } else {
        /* A mailbox for large messages: a message that is there and small still goes through
         * the stack (no max_msg_size allocation); anything else, a long message or a wait,
         * gets a bytes object of the full size. -E2BIG leaves the message queued. */
        op->cap = STACK_RECV_MAX;
        r = op_run(op, (op->flags & ~PBX_NOERROR) | PBX_NOWAIT, NULL);
        if (r >= 0) {
            handle_put(self);
            return PyBytes_FromStringAndSize(stack, r);
        }
        if (r != -E2BIG && ((r != -ENOMSG && r != -EAGAIN) || !w->block)) {
            handle_put(self);
            return raise_pbx((int) r, 0, NULL);
        }
        bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t) self->max_msg_size);
        if (bytes == NULL) {
            handle_put(self);
            return NULL;
        }
        op->buf = PyBytes_AS_STRING(bytes);
        op->cap = self->max_msg_size;
    }
    r = run_blocking(op, w);
    handle_put(self);
    if (r < 0) {
        Py_XDECREF(bytes);
        if (r == PBX_PYERR)
            return NULL;
        return raise_pbx((int) r, 0, NULL);
    }
    if (bytes == NULL)
        return PyBytes_FromStringAndSize(stack, r);
    if (_PyBytes_Resize(&bytes, r) < 0)
        return NULL;
    return bytes;
}

PyDoc_STRVAR(recv_doc,
             "recv(type=0, *, block=True, timeout=None, exclude=False, truncate=False) -> "
             "Message\n\n"
             "Take a message: type 0 the oldest; type > 0 the oldest of that type (with\n"
             "exclude=True, of any other type); type < 0 the oldest of the lowest type <= "
             "-type.\n"
             "Waits for one unless block=False (then raises Empty); timeout in seconds raises\n"
             "RecvTimeout. Returns a Message (.data, .type; unpacks as (data, type)). Raises\n"
             "Removed if the mailbox is removed.");

static PyObject *recv_common(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, const char *fname, int kind, int extra)
{
    PyObject *a[KW_COUNT];
    struct wait_spec w;
    PyObject *data;
    struct op op;

    if (parse_args(fname, args, nargs, kwnames, recv_order, 1, recv_allowed, 5, a) < 0)
        return NULL;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.flags = extra;
    if (recv_args(a, &op, &w) < 0)
        return NULL;
    data = recv_bytes(self, &op, &w);
    return make_message(data, op.type_out);
}

static PyObject *Mailbox_recv(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    return recv_common(self, args, nargs, kwnames, "recv", OP_RECV, 0);
}

PyDoc_STRVAR(peek_doc,
             "peek(type=0, *, block=True, timeout=None, exclude=False, truncate=False) -> "
             "Message\n\n"
             "Like recv(), but the message stays queued.");

static PyObject *Mailbox_peek(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    return recv_common(self, args, nargs, kwnames, "peek", OP_RECV, PBX_PEEK);
}

PyDoc_STRVAR(recv_into_doc,
             "recv_into(buffer, type=0, *, block=True, timeout=None, exclude=False, "
             "truncate=False) -> (nbytes, type)\n\n"
             "Like recv(), but copies the payload into a writable bytes-like object and\n"
             "returns how many bytes it wrote and the message's type. A message longer than\n"
             "the buffer stays queued and raises OSError(E2BIG), unless truncate=True.");

static PyObject *Mailbox_recv_into(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *a[KW_COUNT];
    struct wait_spec w;
    struct op op;
    Py_buffer view;
    ssize_t r;

    if (parse_args("recv_into", args, nargs, kwnames, into_order, 2, into_allowed, 6, a) < 0)
        return NULL;
    if (a[KW_BUFFER] == NULL) {
        PyErr_SetString(PyExc_TypeError, "recv_into() missing required argument 'buffer'");
        return NULL;
    }
    memset(&op, 0, sizeof op);
    op.kind = OP_RECV;
    if (recv_args(a, &op, &w) < 0)
        return NULL;
    if (PyObject_GetBuffer(a[KW_BUFFER], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    op.buf = view.buf;
    op.cap = (size_t) view.len;
    op.q = handle_get(self);
    if (op.q == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    r = run_blocking(&op, &w);
    handle_put(self);
    PyBuffer_Release(&view);
    if (r == PBX_PYERR)
        return NULL;
    if (r < 0)
        return raise_pbx((int) r, 0, NULL);
    return Py_BuildValue("(nl)", (Py_ssize_t) r, op.type_out);
}

/* ---- Mailbox: batches (send_many, recv_many) ----------------------------------------------
 * On top of pbx_sendv()/pbx_recvv() and their timed forms, through run_blocking() as the single
 * calls go: one try with PBX_NOWAIT holding the GIL, the wait without it. */

/* Sets `sent` on the exception being raised (the messages queued before a hard error). */
static PyObject *raise_with_sent(int err, Py_ssize_t sent)
{
    PyObject *et, *ev, *tb, *n;

    raise_pbx(err, 1, NULL);
    if (sent <= 0)
        return NULL;
    PyErr_Fetch(&et, &ev, &tb);
    PyErr_NormalizeException(&et, &ev, &tb);
    n = PyLong_FromSsize_t(sent);
    if (ev != NULL && n != NULL)
        (void) PyObject_SetAttrString(ev, "sent", n); /* fails only on memory: keep the error */
    Py_XDECREF(n);
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    return NULL;
}

PyDoc_STRVAR(send_many_doc,
             "send_many(messages, type=1, *, block=True, timeout=None) -> int\n\n"
             "Queue many messages in order, taking the send lock once for as many as fit:\n"
             "messages is an iterable of bytes-like objects (sent with `type`) or of\n"
             "(data, type) pairs (a received Message is one). Every entry is checked first:\n"
             "a bad type or a payload above max_msg_size raises with nothing sent.\n"
             "Returns how many were processed: all of them, unless block=False found the\n"
             "mailbox full or the timeout ran out after some were queued (then fewer; the\n"
             "rest were not sent). Raises Full / SendTimeout only when none was queued.\n"
             "Another error after some were queued (Removed, ...) is raised with the count\n"
             "in the exception's `sent` attribute. Under DROP_NEWEST a message that found no\n"
             "room is discarded and counted as processed, as send() would discard it.");

static const enum kw send_many_order[] = {KW_MESSAGES, KW_TYPE};
static const enum kw send_many_allowed[] = {KW_MESSAGES, KW_TYPE, KW_BLOCK, KW_TIMEOUT};

static PyObject *Mailbox_send_many(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *a[KW_COUNT];
    struct wait_spec w;
    struct op op;
    PyObject *seq;
    Py_buffer *views = NULL;
    struct pbx_msgv *msgv = NULL;
    Py_ssize_t n, nviews = 0, sent = 0;
    PyObject *result = NULL;
    double deadline = 0;
    long dflt_type;
    ssize_t r;

    if (parse_args("send_many", args, nargs, kwnames, send_many_order, 2, send_many_allowed, 4, a) <
        0)
        return NULL;
    if (a[KW_MESSAGES] == NULL) {
        PyErr_SetString(PyExc_TypeError, "send_many() missing required argument 'messages'");
        return NULL;
    }
    if (arg_type(a[KW_TYPE], 1, &dflt_type) < 0 || arg_wait(a[KW_BLOCK], a[KW_TIMEOUT], &w) < 0)
        return NULL;
    if (dflt_type < 1) {
        PyErr_SetString(PyExc_ValueError, "message type must be >= 1");
        return NULL;
    }
    seq = PySequence_Fast(a[KW_MESSAGES], "send_many() needs an iterable of messages");
    if (seq == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        return PyLong_FromLong(0);
    }
    views = PyMem_Calloc((size_t) n, sizeof *views);
    msgv = PyMem_Calloc((size_t) n, sizeof *msgv);
    if (views == NULL || msgv == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *data = item;
        long type = dflt_type;

        if (PyTuple_Check(item)) {
            if (PyTuple_GET_SIZE(item) != 2) {
                PyErr_Format(PyExc_TypeError,
                             "send_many(): message %zd: a tuple must be (data, type)", i);
                goto out;
            }
            data = PyTuple_GET_ITEM(item, 0);
            if (arg_type(PyTuple_GET_ITEM(item, 1), 1, &type) < 0)
                goto out;
            if (type < 1) {
                PyErr_Format(PyExc_ValueError, "send_many(): message %zd: type must be >= 1", i);
                goto out;
            }
        }
        msgv[i].type = type;
        if (PyBytes_CheckExact(data)) { /* immutable: read in place, no view to hold */
            msgv[i].data = PyBytes_AS_STRING(data);
            msgv[i].len = (size_t) PyBytes_GET_SIZE(data);
            continue;
        }
        if (PyObject_GetBuffer(data, &views[i], PyBUF_SIMPLE) < 0)
            goto out;
        nviews = i + 1;
        msgv[i].data = views[i].buf;
        msgv[i].len = (size_t) views[i].len;
    }
    memset(&op, 0, sizeof op);
    op.kind = OP_SENDV;
    op.q = handle_get(self);
    if (op.q == NULL)
        goto out;
    if (w.timed)
        deadline = now_monotonic() + w.seconds;
    for (;;) {
        op.msgv = msgv + sent;
        op.n = (size_t) (n - sent);
        r = run_blocking(&op, &w);
        if (r == PBX_PYERR) {
            if (sent > 0) { /* a signal handler raised: say how many went before */
                PyObject *et, *ev, *tb, *c = PyLong_FromSsize_t(sent);

                PyErr_Fetch(&et, &ev, &tb);
                PyErr_NormalizeException(&et, &ev, &tb);
                if (ev != NULL && c != NULL && PyObject_SetAttrString(ev, "sent", c) < 0)
                    PyErr_Clear();
                Py_XDECREF(c);
                PyErr_Restore(et, ev, tb);
            }
            break;
        }
        if (r < 0) {
            if (sent > 0 && (r == -EAGAIN || r == -ETIMEDOUT))
                result = PyLong_FromSsize_t(sent);
            else
                raise_with_sent((int) r, sent);
            break;
        }
        sent += r;
        if (sent >= n) {
            result = PyLong_FromSsize_t(sent);
            break;
        }
        /* Stopped at msgv[sent]: its result says why. */
        r = msgv[sent].result;
        if (r == -EINTR) {
            if (PyErr_CheckSignals() < 0) {
                PyObject *et, *ev, *tb, *c = PyLong_FromSsize_t(sent);

                PyErr_Fetch(&et, &ev, &tb);
                PyErr_NormalizeException(&et, &ev, &tb);
                if (ev != NULL && c != NULL && PyObject_SetAttrString(ev, "sent", c) < 0)
                    PyErr_Clear();
                Py_XDECREF(c);
                PyErr_Restore(et, ev, tb);
                break;
            }
        } else if (r != -EAGAIN || !w.block) {
            if (r == -EAGAIN || r == -ETIMEDOUT)
                result = PyLong_FromSsize_t(sent);
            else
                raise_with_sent((int) r, sent);
            break;
        }
        if (w.timed) {
            w.seconds = deadline - now_monotonic();
            if (w.seconds <= 0) {
                result = PyLong_FromSsize_t(sent);
                break;
            }
        }
    }
    handle_put(self);
out:
    for (Py_ssize_t i = 0; i < nviews; i++)
        if (views[i].obj != NULL) /* entries of exact bytes have none */
            PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(msgv);
    Py_DECREF(seq);
    return result;
}

/* recv_many() receives into one scratch area of max x max_msg_size bytes, capped here: a
 * mailbox of large messages takes fewer per call (recv_many returns "up to max" anyway). */
#define RECV_MANY_SCRATCH (1u << 20)

PyDoc_STRVAR(recv_many_doc,
             "recv_many(max, type=0, *, block=True, timeout=None, exclude=False, "
             "truncate=False) -> list[Message]\n\n"
             "Take up to max messages under one take of the receive lock, each selected by\n"
             "type as recv() would select it. Waits (unless block=False: raise Empty) until\n"
             "one matches, then takes what matches without waiting for more: the list has\n"
             "1 to max messages (fewer than max per call when max x max_msg_size exceeds\n"
             "1 MiB). timeout raises RecvTimeout when none matched in time. With\n"
             "truncate=False a message longer than max_msg_size cannot occur.");

static const enum kw recv_many_order[] = {KW_MAX, KW_TYPE};
static const enum kw recv_many_allowed[] = {KW_MAX,     KW_TYPE,    KW_BLOCK,
                                            KW_TIMEOUT, KW_EXCLUDE, KW_TRUNCATE};

static PyObject *Mailbox_recv_many(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *a[KW_COUNT];
    struct wait_spec w;
    struct op op;
    Py_ssize_t max;
    size_t room, n;
    char *scratch;
    PyObject *list;
    ssize_t r;

    if (parse_args("recv_many", args, nargs, kwnames, recv_many_order, 2, recv_many_allowed, 6, a) <
        0)
        return NULL;
    if (a[KW_MAX] == NULL) {
        PyErr_SetString(PyExc_TypeError, "recv_many() missing required argument 'max'");
        return NULL;
    }
    if (!PyLong_Check(a[KW_MAX])) {
        PyErr_Format(PyExc_TypeError, "max must be an int, not '%.100s'",
                     Py_TYPE(a[KW_MAX])->tp_name);
        return NULL;
    }
    max = PyLong_AsSsize_t(a[KW_MAX]);
    if (max == -1 && PyErr_Occurred())
        return NULL;
    if (max < 1) {
        PyErr_SetString(PyExc_ValueError, "max must be >= 1");
        return NULL;
    }
    memset(&op, 0, sizeof op);
    op.kind = OP_RECVV;
    if (recv_args(a, &op, &w) < 0)
        return NULL;
    room = self->max_msg_size > 0 ? self->max_msg_size : 1;
    n = (size_t) max;
    if (n > RECV_MANY_SCRATCH / room)
        n = RECV_MANY_SCRATCH / room > 0 ? RECV_MANY_SCRATCH / room : 1;
    scratch = PyMem_Malloc(n * room);
    op.msgv = PyMem_Calloc(n, sizeof *op.msgv);
    if (scratch == NULL || op.msgv == NULL) {
        PyMem_Free(scratch);
        PyMem_Free(op.msgv);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < n; i++) {
        op.msgv[i].data = scratch + i * room;
        op.msgv[i].len = room;
    }
    op.n = n;
    list = NULL;
    op.q = handle_get(self);
    if (op.q != NULL) {
        r = run_blocking(&op, &w);
        handle_put(self);
        if (r == PBX_PYERR)
            ;
        else if (r < 0)
            raise_pbx((int) r, 0, NULL);
        else if ((list = PyList_New(r)) != NULL) {
            for (ssize_t i = 0; i < r; i++) {
                PyObject *m = make_message(
                    PyBytes_FromStringAndSize(op.msgv[i].data, op.msgv[i].result), op.msgv[i].type);

                if (m == NULL) { /* the messages are taken; only memory can fail here */
                    Py_CLEAR(list);
                    break;
                }
                PyList_SET_ITEM(list, i, m);
            }
        }
    }
    PyMem_Free(scratch);
    PyMem_Free(op.msgv);
    return list;
}

/* ---- Claim -------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD Mailbox *mailbox;
    PyObject *data;
    long type;
    uint64_t id;
    int state; /* 0 held, 1 acknowledged, 2 released */
} Claim;

PyDoc_STRVAR(claim_doc,
             "claim(type=0, *, block=True, timeout=None, exclude=False, truncate=False) -> "
             "Claim\n\n"
             "Receive a message without removing it yet: it is hidden from other receivers\n"
             "until claim.ack() removes it or claim.release() puts it back in its place. As a\n"
             "context manager, the claim is acknowledged on normal exit and released when\n"
             "the block raises. A process that dies holding claims has them put back.\n"
             "block and timeout work as for recv(): a timed claim raises RecvTimeout when no\n"
             "message matched in time, and a message that arrives meanwhile is claimed.");

static PyObject *Mailbox_claim(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *a[KW_COUNT];
    struct wait_spec w;
    struct op op;
    PyObject *data;
    Claim *c;

    if (parse_args("claim", args, nargs, kwnames, recv_order, 1, recv_allowed, 5, a) < 0)
        return NULL;
    memset(&op, 0, sizeof op);
    op.kind = OP_CLAIM;
    if (recv_args(a, &op, &w) < 0)
        return NULL;
    data = recv_bytes(self, &op, &w);
    if (data == NULL)
        return NULL;
    c = PyObject_New(Claim, &ClaimType);
    if (c == NULL) {
        /* Give the message back rather than leave it hidden. */
        pbx_t *q = handle_get(self);

        if (q != NULL) {
            pbx_release(q, op.claim);
            handle_put(self);
        }
        Py_DECREF(data);
        return NULL;
    }
    Py_INCREF(self);
    c->mailbox = self;
    c->data = data;
    c->type = op.type_out;
    c->id = op.claim;
    c->state = 0;
    return (PyObject *) c;
}

static PyObject *claim_settle(Claim *c, int ack)
{
    pbx_t *q;
    int r;

    if (c->state != 0) {
        PyErr_SetString(PyExc_ValueError,
                        c->state == 1 ? "claim already acknowledged" : "claim already released");
        return NULL;
    }
    q = handle_get(c->mailbox);
    if (q == NULL)
        return NULL;
    r = ack ? pbx_ack(q, c->id) : pbx_release(q, c->id);
    handle_put(c->mailbox);
    if (r < 0)
        return raise_pbx(r, 0, NULL);
    c->state = ack ? 1 : 2;
    Py_RETURN_NONE;
}

static PyObject *Claim_ack(Claim *c, PyObject *unused)
{
    (void) unused;
    return claim_settle(c, 1);
}

static PyObject *Claim_release(Claim *c, PyObject *unused)
{
    (void) unused;
    return claim_settle(c, 0);
}

static PyObject *Claim_enter(Claim *c, PyObject *unused)
{
    (void) unused;
    Py_INCREF(c);
    return (PyObject *) c;
}

static PyObject *Claim_exit(Claim *c, PyObject *args)
{
    PyObject *exc_type = PyTuple_Size(args) > 0 ? PyTuple_GetItem(args, 0) : Py_None;
    PyObject *r;

    if (c->state != 0) /* settled inside the block: nothing left to do */
        Py_RETURN_FALSE;
    r = claim_settle(c, exc_type == Py_None);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static void Claim_dealloc(Claim *c)
{
    /* A claim dropped unsettled is released, so its message is not hidden until exit. */
    if (c->state == 0 && c->mailbox != NULL) {
        PyObject *et, *ev, *tb;

        PyErr_Fetch(&et, &ev, &tb);
        if (!c->mailbox->closed && c->mailbox->q != NULL) {
            pbx_t *q = handle_get(c->mailbox);

            if (q != NULL) {
                pbx_release(q, c->id);
                handle_put(c->mailbox);
            }
        }
        PyErr_Restore(et, ev, tb);
    }
    Py_CLEAR(c->mailbox);
    Py_CLEAR(c->data);
    PyObject_Free(c);
}

static PyObject *Claim_repr(Claim *c)
{
    static const char *states[] = {"held", "acknowledged", "released"};

    return PyUnicode_FromFormat("<postbox.Claim id=%llu type=%ld len=%zd %s>",
                                (unsigned long long) c->id, c->type, PyBytes_GET_SIZE(c->data),
                                states[c->state]);
}

static PyObject *Claim_get_type(Claim *c, void *unused)
{
    (void) unused;
    return PyLong_FromLong(c->type);
}

static PyObject *Claim_get_id(Claim *c, void *unused)
{
    (void) unused;
    return PyLong_FromUnsignedLongLong(c->id);
}

static PyObject *Claim_get_data(Claim *c, void *unused)
{
    (void) unused;
    Py_INCREF(c->data);
    return c->data;
}

static PyObject *Claim_get_settled(Claim *c, void *unused)
{
    (void) unused;
    return PyBool_FromLong(c->state != 0);
}

static PyMethodDef Claim_methods[] = {
    {"ack", (PyCFunction) Claim_ack, METH_NOARGS,
     "ack()\n\nAcknowledge: the message is removed for good (a sync sender is released)."},
    {"release", (PyCFunction) Claim_release, METH_NOARGS,
     "release()\n\nGive the message back, in its place, for another receive."},
    {"__enter__", (PyCFunction) Claim_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction) Claim_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Claim_getset[] = {
    {"data", (getter) Claim_get_data, NULL, "the payload (bytes)", NULL},
    {"type", (getter) Claim_get_type, NULL, "the message type", NULL},
    {"id", (getter) Claim_get_id, NULL, "the claim id", NULL},
    {"settled", (getter) Claim_get_settled, NULL, "True once acknowledged or released", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject ClaimType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "postbox.Claim",
    .tp_basicsize = sizeof(Claim),
    .tp_dealloc = (destructor) Claim_dealloc,
    .tp_repr = (reprfunc) Claim_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A claimed message (Mailbox.claim()): .data, .type, .id; ack() or release(),\n"
              "or use it as a context manager.",
    .tp_methods = Claim_methods,
    .tp_getset = Claim_getset,
};

/* ---- Loan: a message read in place (pbx_recv_loan) ----------------------------------------
 * SAFETY. The payload of a receive loan lies in the mailbox's shared memory and is valid only
 * until pbx_return(). A one-piece payload is handed out as a read-only memoryview of the loan
 * object itself (its buffer protocol), and the loan counts the views exported: close() returns
 * the loan only when that count is zero, else raises BufferError and keeps it. Every exported
 * view holds a reference to the loan, so a loan with views cannot be deallocated either; its
 * dealloc returns a loan still held. The loan also holds a call on its Mailbox (handle_get), so
 * Mailbox.close() defers pbx_close() — which would unmap the memory — until the loan ends. A
 * payload in several pieces is copied into bytes (the loan still ends at close()). */

typedef struct {
    PyObject_HEAD Mailbox *mailbox;
    struct pbx_loan loan;
    void *piece;     /* the payload, when it is one piece */
    PyObject *bytes; /* the payload copied, when it is not */
    Py_ssize_t exports;
    int held;
} Loan;

static PyTypeObject LoanType;

static int loan_end(Loan *l)
{
    int r;

    if (!l->held)
        return 0;
    r = pbx_return(&l->loan);
    l->held = 0;
    l->piece = NULL;
    handle_put(l->mailbox);
    return r;
}

PyDoc_STRVAR(recv_loan_doc,
             "recv_loan(type=0, *, block=True, exclude=False) -> Loan\n\n"
             "Select a message as recv() does and lend it in place, without copying:\n"
             "loan.data is a read-only memoryview of the mailbox's memory when the payload\n"
             "lies in one piece (bytes otherwise), loan.type its type. The message is removed\n"
             "when the loan is closed (as a context manager: when the block ends, even by an\n"
             "exception). Every memoryview of the data must be released first, else close()\n"
             "raises BufferError and the loan stays held. No timeout: block=False raises Empty.");

static const enum kw loan_allowed[] = {KW_TYPE, KW_BLOCK, KW_EXCLUDE};

static PyObject *Mailbox_recv_loan(Mailbox *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *a[KW_COUNT];
    struct pbx_loan loan;
    PyThreadState *ts;
    long type;
    int block, exclude, flags = 0;
    ssize_t r;
    pbx_t *q;
    Loan *l;

    if (parse_args("recv_loan", args, nargs, kwnames, recv_order, 1, loan_allowed, 3, a) < 0)
        return NULL;
    if (arg_type(a[KW_TYPE], 0, &type) < 0)
        return NULL;
    block = arg_bool(a[KW_BLOCK], 1);
    exclude = arg_bool(a[KW_EXCLUDE], 0);
    if (block < 0 || exclude < 0)
        return NULL;
    if (exclude) {
        if (type <= 0) {
            PyErr_SetString(PyExc_ValueError, "exclude=True needs a type > 0");
            return NULL;
        }
        flags |= PBX_EXCEPT;
    }
    q = handle_get(self);
    if (q == NULL)
        return NULL;
    memset(&loan, 0, sizeof loan);
    r = pbx_recv_loan(q, type, flags | PBX_NOWAIT, &loan);
    if (block) {
        while (r == -ENOMSG || r == -EAGAIN || r == -EINTR) {
            ts = PyEval_SaveThread();
            r = pbx_recv_loan(q, type, flags, &loan);
            PyEval_RestoreThread(ts);
            if (r == -EINTR && PyErr_CheckSignals() < 0) {
                handle_put(self);
                return NULL;
            }
        }
    }
    if (r < 0) {
        handle_put(self);
        return raise_pbx((int) r, 0, NULL);
    }
    l = PyObject_New(Loan, &LoanType);
    if (l == NULL) {
        pbx_return(&loan); /* taken: only memory failed */
        handle_put(self);
        return NULL;
    }
    Py_INCREF(self);
    l->mailbox = self;
    l->loan = loan;
    l->piece = NULL;
    l->bytes = NULL;
    l->exports = 0;
    l->held = 1; /* from here the loan owns the call on the handle */
    if (loan.len > 0) {
        void *p;
        ssize_t n = pbx_loan_piece(&l->loan, 0, &p);

        if (n == (ssize_t) loan.len) {
            l->piece = p;
        } else if (n > 0) {
            char *dst;

            l->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t) loan.len);
            if (l->bytes == NULL) {
                Py_DECREF(l);
                return NULL;
            }
            dst = PyBytes_AS_STRING(l->bytes);
            for (size_t off = 0; off < loan.len; off += (size_t) n) {
                n = pbx_loan_piece(&l->loan, off, &p);
                if (n <= 0)
                    break;
                memcpy(dst + off, p, (size_t) n);
            }
        }
        if (n <= 0) {
            Py_DECREF(l);
            return raise_pbx(n < 0 ? (int) n : -EBADMSG, 0, NULL);
        }
    } else {
        l->bytes = PyBytes_FromStringAndSize(NULL, 0);
        if (l->bytes == NULL) {
            Py_DECREF(l);
            return NULL;
        }
    }
    return (PyObject *) l;
}

static int Loan_getbuffer(Loan *l, Py_buffer *view, int flags)
{
    if (!l->held || l->piece == NULL) {
        PyErr_SetString(PyExc_BufferError, l->held ? "this loan's payload is in several pieces: "
                                                     "use loan.data (bytes)"
                                                   : "the loan has ended");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *) l, l->piece, (Py_ssize_t) l->loan.len, 1, flags) < 0) {
        view->obj = NULL; /* e.g. a writable buffer was asked for */
        return -1;
    }
    l->exports++;
    return 0;
}

static void Loan_releasebuffer(Loan *l, Py_buffer *view)
{
    (void) view;
    l->exports--;
}

static PyBufferProcs Loan_as_buffer = {(getbufferproc) Loan_getbuffer,
                                       (releasebufferproc) Loan_releasebuffer};

static PyObject *Loan_close(Loan *l, PyObject *unused)
{
    int r;

    (void) unused;
    if (!l->held)
        Py_RETURN_NONE;
    if (l->exports > 0) {
        PyErr_Format(PyExc_BufferError,
                     "%zd memoryview(s) of the loan's payload still exist: release them "
                     "(view.release() or del) before the loan ends",
                     l->exports);
        return NULL;
    }
    r = loan_end(l);
    if (r < 0)
        return raise_pbx(r, 0, NULL);
    Py_RETURN_NONE;
}

static PyObject *Loan_enter(Loan *l, PyObject *unused)
{
    (void) unused;
    Py_INCREF(l);
    return (PyObject *) l;
}

static PyObject *Loan_exit(Loan *l, PyObject *args)
{
    PyObject *exc_type = PyTuple_Size(args) > 0 ? PyTuple_GetItem(args, 0) : Py_None;
    PyObject *r;

    /* The block raised and a view is still referenced (by its traceback, say): do not hide
     * that exception; the loan ends when the last view goes (dealloc). */
    if (exc_type != Py_None && l->exports > 0)
        Py_RETURN_FALSE;
    r = Loan_close(l, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static void Loan_dealloc(Loan *l)
{
    /* No view exists (each holds a reference): returning is safe. */
    if (l->held) {
        PyObject *et, *ev, *tb;

        PyErr_Fetch(&et, &ev, &tb);
        (void) loan_end(l);
        PyErr_Restore(et, ev, tb);
    }
    Py_CLEAR(l->mailbox);
    Py_CLEAR(l->bytes);
    PyObject_Free(l);
}

static PyObject *Loan_get_data(Loan *l, void *unused)
{
    (void) unused;
    if (!l->held) {
        PyErr_SetString(PyExc_ValueError, "the loan has ended");
        return NULL;
    }
    if (l->bytes != NULL) {
        Py_INCREF(l->bytes);
        return l->bytes;
    }
    return PyMemoryView_FromObject((PyObject *) l);
}

static PyObject *Loan_get_type(Loan *l, void *unused)
{
    (void) unused;
    return PyLong_FromLong(l->loan.type);
}

static PyObject *Loan_get_closed(Loan *l, void *unused)
{
    (void) unused;
    return PyBool_FromLong(!l->held);
}

static Py_ssize_t Loan_len(Loan *l)
{
    return (Py_ssize_t) l->loan.len;
}

static PySequenceMethods Loan_as_sequence = {.sq_length = (lenfunc) Loan_len};

static PyMethodDef Loan_methods[] = {
    {"close", (PyCFunction) Loan_close, METH_NOARGS,
     "close()\n\nEnd the loan: the message is removed for good. Raises BufferError (and\n"
     "keeps the loan) while a memoryview of the data exists. Idempotent."},
    {"__enter__", (PyCFunction) Loan_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction) Loan_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Loan_getset[] = {
    {"data", (getter) Loan_get_data, NULL,
     "the payload: a read-only memoryview in place (one piece) or bytes", NULL},
    {"type", (getter) Loan_get_type, NULL, "the message type", NULL},
    {"closed", (getter) Loan_get_closed, NULL, "True once the loan has ended", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject LoanType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "postbox.Loan",
    .tp_basicsize = sizeof(Loan),
    .tp_dealloc = (destructor) Loan_dealloc,
    .tp_as_buffer = &Loan_as_buffer,
    .tp_as_sequence = &Loan_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A message lent in place (Mailbox.recv_loan()): .data, .type, len(); close(),\n"
              "or use it as a context manager. Views of .data must not outlive it.",
    .tp_methods = Loan_methods,
    .tp_getset = Loan_getset,
};

/* ---- Mailbox: the rest -------------------------------------------------------------------- */

PyDoc_STRVAR(stat_doc, "stat() -> Stat\n\nThe mailbox's limits, contents and counters.");

static PyObject *Mailbox_stat(Mailbox *self, PyObject *unused)
{
    struct pbx_stat st;
    PyObject *s;
    pbx_t *q;
    int r;
    int i = 0;

    (void) unused;
    q = handle_get(self);
    if (q == NULL)
        return NULL;
    r = pbx_stat(q, &st);
    handle_put(self);
    if (r < 0)
        return raise_pbx(r, 0, NULL);
    s = PyStructSequence_New(&StatType);
    if (s == NULL)
        return NULL;
#define SET(v)                                                                                     \
    do {                                                                                           \
        PyObject *o_ = (v);                                                                        \
        if (o_ == NULL) {                                                                          \
            Py_DECREF(s);                                                                          \
            return NULL;                                                                           \
        }                                                                                          \
        PyStructSequence_SET_ITEM(s, i++, o_);                                                     \
    } while (0)
    SET(PyLong_FromUnsignedLongLong(st.msgs));
    SET(PyLong_FromUnsignedLongLong(st.bytes));
    SET(PyLong_FromUnsignedLong(st.max_msgs));
    SET(PyLong_FromUnsignedLongLong(st.max_bytes));
    SET(PyLong_FromUnsignedLong(st.max_msg_size));
    SET(PyLong_FromLong((long) st.overflow));
    SET(PyLong_FromUnsignedLong(st.mode));
    SET(PyLong_FromUnsignedLong((unsigned long) st.uid));
    SET(PyLong_FromUnsignedLong((unsigned long) st.gid));
    SET(PyLong_FromLong((long) st.last_send_pid));
    SET(PyLong_FromLong((long) st.last_recv_pid));
    SET(ns_to_seconds(st.last_send_time));
    SET(ns_to_seconds(st.last_recv_time));
    SET(PyLong_FromUnsignedLongLong(st.sent));
    SET(PyLong_FromUnsignedLongLong(st.received));
    SET(PyLong_FromUnsignedLongLong(st.dropped));
    SET(PyLong_FromUnsignedLongLong(st.repairs));
    SET(PyLong_FromUnsignedLong(st.send_waiters));
    SET(PyLong_FromUnsignedLong(st.recv_waiters));
    SET(PyLong_FromUnsignedLongLong(st.region_size));
    SET(PyLong_FromUnsignedLongLong(st.claimed));
#undef SET
    return s;
}

PyDoc_STRVAR(peers_doc, "peers() -> list[Peer]\n\n"
                        "The live processes with this mailbox open: pid, roles (PEER_* bits),\n"
                        "since (seconds since the Epoch), handles, notify_signal.");

static PyObject *Mailbox_peers(Mailbox *self, PyObject *unused)
{
    struct pbx_peer peers[128];
    PyObject *list;
    ssize_t n;
    pbx_t *q;

    (void) unused;
    q = handle_get(self);
    if (q == NULL)
        return NULL;
    n = pbx_peers(q, peers, 128);
    handle_put(self);
    if (n < 0)
        return raise_pbx((int) n, 0, NULL);
    if (n > 128)
        n = 128;
    list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (ssize_t i = 0; i < n; i++) {
        PyObject *p = PyStructSequence_New(&PeerType);

        if (p == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyStructSequence_SET_ITEM(p, 0, PyLong_FromLong((long) peers[i].pid));
        PyStructSequence_SET_ITEM(p, 1, PyLong_FromUnsignedLong(peers[i].roles));
        PyStructSequence_SET_ITEM(p, 2, PyFloat_FromDouble((double) peers[i].since * 1e-9));
        PyStructSequence_SET_ITEM(p, 3, PyLong_FromUnsignedLong(peers[i].handles));
        PyStructSequence_SET_ITEM(p, 4, PyLong_FromLong(peers[i].notify_signo));
        PyList_SET_ITEM(list, i, p);
        for (int k = 0; k < 5; k++)
            if (PyStructSequence_GET_ITEM(p, k) == NULL) {
                Py_DECREF(list);
                return NULL;
            }
    }
    return list;
}

PyDoc_STRVAR(notify_doc,
             "notify(signal, value=0)\n\n"
             "Ask for `signal` (e.g. signal.SIGUSR1) whenever a message arrives in the empty\n"
             "mailbox, with `value` in si_value. signal=0 cancels. Install a handler first.");

static PyObject *Mailbox_notify(Mailbox *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"signal", "value", NULL};
    int signo, value = 0;
    pbx_t *q;
    int r;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|i:notify", kwlist, &signo, &value))
        return NULL;
    if (signo < 0 || signo == SIGKILL || signo == SIGSTOP || signo >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal %d cannot be used for notification", signo);
        return NULL;
    }
    q = handle_get(self);
    if (q == NULL)
        return NULL;
    r = pbx_notify(q, signo, value);
    handle_put(self);
    if (r < 0)
        return raise_pbx(r, 0, NULL);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(fileno_doc,
             "fileno() -> int\n\n"
             "A descriptor that selectors/asyncio report readable while the mailbox holds a\n"
             "message (or was removed). Never read it: call recv(block=False) when readable\n"
             "(Empty is normal: someone else may have been faster). Closed by close().");

static PyObject *Mailbox_fileno(Mailbox *self, PyObject *unused)
{
    PyThreadState *ts;
    pbx_t *q;
    int r;

    (void) unused;
    q = handle_get(self);
    if (q == NULL)
        return NULL;
    ts = PyEval_SaveThread();
    r = pbx_fd(q);
    PyEval_RestoreThread(ts);
    handle_put(self);
    if (r < 0)
        return raise_pbx(r, 0, NULL);
    return PyLong_FromLong(r);
}

PyDoc_STRVAR(remove_doc,
             "remove()\n\n"
             "Remove the mailbox (like msgctl(IPC_RMID)): its name goes at once, waiting\n"
             "callers everywhere raise Removed, queued messages are discarded. The handle\n"
             "still needs close().");

static PyObject *Mailbox_remove(Mailbox *self, PyObject *unused)
{
    PyThreadState *ts;
    pbx_t *q;
    int r;

    (void) unused;
    q = handle_get(self);
    if (q == NULL)
        return NULL;
    ts = PyEval_SaveThread();
    r = pbx_remove(q);
    PyEval_RestoreThread(ts);
    handle_put(self);
    if (r < 0)
        return raise_pbx(r, 0, self->name);
    Py_RETURN_NONE;
}

static PyObject *Mailbox_iternext(Mailbox *self)
{
    struct wait_spec w = {1, 0, 0};
    struct op op;
    PyObject *data;

    memset(&op, 0, sizeof op);
    op.kind = OP_RECV;
    data = recv_bytes(self, &op, &w);
    if (data == NULL) {
        if (PyErr_ExceptionMatches(RemovedError))
            PyErr_Clear(); /* StopIteration */
        return NULL;
    }
    return make_message(data, op.type_out);
}

static PyObject *Mailbox_iter(Mailbox *self)
{
    if (self->closed || self->q == NULL) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed mailbox");
        return NULL;
    }
    Py_INCREF(self);
    return (PyObject *) self;
}

static PyObject *Mailbox_repr(Mailbox *self)
{
    const char *state = self->closed ? " closed" : "";

    if (self->name == Py_None)
        return PyUnicode_FromFormat("<postbox.Mailbox private%s>", state);
    return PyUnicode_FromFormat("<postbox.Mailbox %R%s>", self->name, state);
}

static PyObject *Mailbox_get_closed(Mailbox *self, void *unused)
{
    (void) unused;
    return PyBool_FromLong(self->closed || self->q == NULL);
}

static PyObject *Mailbox_get_name(Mailbox *self, void *unused)
{
    (void) unused;
    Py_INCREF(self->name);
    return self->name;
}

static PyObject *Mailbox_get_max_msg_size(Mailbox *self, void *unused)
{
    (void) unused;
    return PyLong_FromUnsignedLong(self->max_msg_size);
}

static PyObject *Mailbox_get_readonly(Mailbox *self, void *unused)
{
    (void) unused;
    return PyBool_FromLong(self->readonly);
}

static PyMethodDef Mailbox_methods[] = {
    {"send", (PyCFunction) (void (*)(void)) Mailbox_send, METH_FASTCALL | METH_KEYWORDS, send_doc},
    {"recv", (PyCFunction) (void (*)(void)) Mailbox_recv, METH_FASTCALL | METH_KEYWORDS, recv_doc},
    {"peek", (PyCFunction) (void (*)(void)) Mailbox_peek, METH_FASTCALL | METH_KEYWORDS, peek_doc},
    {"recv_into", (PyCFunction) (void (*)(void)) Mailbox_recv_into, METH_FASTCALL | METH_KEYWORDS,
     recv_into_doc},
    {"claim", (PyCFunction) (void (*)(void)) Mailbox_claim, METH_FASTCALL | METH_KEYWORDS,
     claim_doc},
    {"recv_loan", (PyCFunction) (void (*)(void)) Mailbox_recv_loan, METH_FASTCALL | METH_KEYWORDS,
     recv_loan_doc},
    {"send_many", (PyCFunction) (void (*)(void)) Mailbox_send_many, METH_FASTCALL | METH_KEYWORDS,
     send_many_doc},
    {"recv_many", (PyCFunction) (void (*)(void)) Mailbox_recv_many, METH_FASTCALL | METH_KEYWORDS,
     recv_many_doc},
    {"stat", (PyCFunction) Mailbox_stat, METH_NOARGS, stat_doc},
    {"peers", (PyCFunction) Mailbox_peers, METH_NOARGS, peers_doc},
    {"notify", (PyCFunction) (void (*)(void)) Mailbox_notify, METH_VARARGS | METH_KEYWORDS,
     notify_doc},
    {"fileno", (PyCFunction) Mailbox_fileno, METH_NOARGS, fileno_doc},
    {"remove", (PyCFunction) Mailbox_remove, METH_NOARGS, remove_doc},
    {"close", (PyCFunction) Mailbox_close, METH_NOARGS, close_doc},
    {"private", (PyCFunction) (void (*)(void)) Mailbox_private,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS, private_doc},
    {"__enter__", (PyCFunction) Mailbox_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction) Mailbox_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Mailbox_getset[] = {
    {"closed", (getter) Mailbox_get_closed, NULL, "True once close() was called", NULL},
    {"name", (getter) Mailbox_get_name, NULL, "the name it was opened with (None if private)",
     NULL},
    {"max_msg_size", (getter) Mailbox_get_max_msg_size, NULL, "the largest payload it takes", NULL},
    {"readonly", (getter) Mailbox_get_readonly, NULL,
     "True if opened with readonly=True (only stat() and peers() work)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject MailboxType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "postbox._postbox.Mailbox",
    .tp_basicsize = sizeof(Mailbox),
    .tp_dealloc = (destructor) Mailbox_dealloc,
    .tp_repr = (reprfunc) Mailbox_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Mailbox(name, *, create=False, exclusive=False, mode=0o600, max_msgs=None,\n"
              "        max_bytes=None, max_msg_size=None, overflow=BLOCK, durability=None,\n"
              "        readonly=False)\n\n"
              "Open the mailbox called name (\"jobs\", or \"spool:/path\" for a durable spool),\n"
              "creating it with create=True (exclusive=True: it must not exist yet). The\n"
              "limits apply only when this call creates it. readonly=True opens it for looking\n"
              "(read permission is enough): stat() and peers() work, every other call raises\n"
              "ReadOnly. A context manager; iterating receives messages until the mailbox is\n"
              "removed.",
    .tp_weaklistoffset = offsetof(Mailbox, weakrefs),
    .tp_iter = (getiterfunc) Mailbox_iter,
    .tp_iternext = (iternextfunc) Mailbox_iternext,
    .tp_methods = Mailbox_methods,
    .tp_getset = Mailbox_getset,
    .tp_new = Mailbox_new,
};

/* ---- module ------------------------------------------------------------------------------- */

static PyObject *mod_unlink(PyObject *mod, PyObject *arg)
{
    PyThreadState *ts;
    PyObject *path = NULL;
    int r;

    (void) mod;
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "mailbox name must be a str, not '%.100s'",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    if (!PyUnicode_FSConverter(arg, &path))
        return NULL;
    ts = PyEval_SaveThread();
    r = pbx_unlink(PyBytes_AS_STRING(path));
    PyEval_RestoreThread(ts);
    Py_DECREF(path);
    if (r == -EINVAL) {
        PyErr_Format(PyExc_ValueError, "bad mailbox name %R", arg);
        return NULL;
    }
    if (r < 0)
        return raise_pbx(r, 0, arg);
    Py_RETURN_NONE;
}

static PyObject *mod_strerror(PyObject *mod, PyObject *arg)
{
    long e;

    (void) mod;
    e = PyLong_AsLong(arg);
    if (e == -1 && PyErr_Occurred())
        return NULL;
    if (e > 0)
        e = -e;
    if (e < INT_MIN)
        e = INT_MIN;
    return PyUnicode_FromString(pbx_strerror((int) e));
}

static PyMethodDef module_methods[] = {
    {"unlink", mod_unlink, METH_O,
     "unlink(name)\n\nRemove the mailbox called name, as Mailbox.remove() does. Raises\n"
     "FileNotFoundError if there is none."},
    {"strerror", mod_strerror, METH_O,
     "strerror(errno) -> str\n\npostbox's description of an errno value."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "postbox._postbox",
    "The C extension behind the postbox package: see help(postbox).",
    -1,
    module_methods,
    NULL,
    NULL,
    NULL,
    NULL};

static PyObject *new_exception(PyObject *mod, const char *name, const char *doc, PyObject *base1,
                               PyObject *base2)
{
    PyObject *bases = PyTuple_Pack(2, base1, base2);
    PyObject *exc;

    if (bases == NULL)
        return NULL;
    exc = PyErr_NewExceptionWithDoc(name, doc, bases, NULL);
    Py_DECREF(bases);
    if (exc == NULL)
        return NULL;
    if (PyModule_AddObject(mod, strrchr(name, '.') + 1, exc) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    Py_INCREF(exc); /* one reference for the module, one for the static */
    return exc;
}

PyMODINIT_FUNC PyInit__postbox(void);

PyMODINIT_FUNC PyInit__postbox(void)
{
    static const struct {
        const char *name;
        long value;
    } constants[] = {
        {"BLOCK", PBX_BLOCK},
        {"DROP_NEWEST", PBX_DROP_NEWEST},
        {"DROP_OLDEST", PBX_DROP_OLDEST},
        {"DURABLE_ALWAYS", PBX_DURABLE_ALWAYS},
        {"DURABLE_BATCH", PBX_DURABLE_BATCH},
        {"DURABLE_NONE", PBX_DURABLE_NONE},
        {"PEER_OPENED", PBX_PEER_OPENED},
        {"PEER_SENT", PBX_PEER_SENT},
        {"PEER_RECEIVED", PBX_PEER_RECEIVED},
        {"PEER_NOTIFY", PBX_PEER_NOTIFY},
        {"PEER_WATCH", PBX_PEER_WATCH},
        {"NAME_MAX", PBX_NAME_MAX},
    };
    PyObject *queue = NULL;
    PyObject *q_empty = NULL, *q_full = NULL;
    PyObject *mod;

    for (int i = 0; i < KW_COUNT; i++) {
        kw_strings[i] = PyUnicode_InternFromString(kw_names[i]);
        if (kw_strings[i] == NULL)
            return NULL;
    }
    if (pthread_atfork(NULL, NULL, after_fork_in_child) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
        return NULL;
    }
    if (MessageType.tp_name == NULL &&
        (PyStructSequence_InitType2(&MessageType, &message_desc) < 0 ||
         PyStructSequence_InitType2(&StatType, &stat_desc) < 0 ||
         PyStructSequence_InitType2(&PeerType, &peer_desc) < 0))
        return NULL;
    if (PyType_Ready(&MailboxType) < 0 || PyType_Ready(&ClaimType) < 0 ||
        PyType_Ready(&LoanType) < 0)
        return NULL;
    mod = PyModule_Create(&module_def);
    if (mod == NULL)
        return NULL;
    queue = PyImport_ImportModule("queue");
    if (queue == NULL)
        goto fail;
    q_empty = PyObject_GetAttrString(queue, "Empty");
    q_full = PyObject_GetAttrString(queue, "Full");
    if (q_empty == NULL || q_full == NULL)
        goto fail;
    EmptyError = new_exception(mod, "postbox.Empty",
                               "No message matched and the call was not to wait (errno ENOMSG).",
                               PyExc_BlockingIOError, q_empty);
    if (EmptyError == NULL)
        goto fail;
    FullError = new_exception(
        mod, "postbox.Full",
        "The mailbox is full: errno EAGAIN (block=False), or ENOBUFS (DROP_NEWEST discarded it).",
        PyExc_BlockingIOError, q_full);
    if (FullError == NULL)
        goto fail;
    RecvTimeoutError = new_exception(mod, "postbox.RecvTimeout",
                                     "No message matched within the timeout (errno ETIMEDOUT).",
                                     EmptyError, PyExc_TimeoutError);
    if (RecvTimeoutError == NULL)
        goto fail;
    SendTimeoutError = new_exception(mod, "postbox.SendTimeout",
                                     "No room (or, with sync=True, no receiver took the "
                                     "message) within the timeout (errno ETIMEDOUT).",
                                     FullError, PyExc_TimeoutError);
    if (SendTimeoutError == NULL)
        goto fail;
    RemovedError = PyErr_NewExceptionWithDoc(
        "postbox.Removed", "The mailbox was removed (errno EIDRM).", PyExc_OSError, NULL);
    if (RemovedError == NULL || PyModule_AddObject(mod, "Removed", RemovedError) < 0)
        goto fail;
    Py_INCREF(RemovedError);
    ReadOnlyError = PyErr_NewExceptionWithDoc(
        "postbox.ReadOnly",
        "The call needs a read-write handle; this one was opened with readonly=True\n"
        "(errno EBADF, as write(2) on a descriptor opened O_RDONLY).",
        PyExc_PermissionError, NULL);
    if (ReadOnlyError == NULL || PyModule_AddObject(mod, "ReadOnly", ReadOnlyError) < 0)
        goto fail;
    Py_INCREF(ReadOnlyError);

    Py_INCREF(&MailboxType);
    if (PyModule_AddObject(mod, "Mailbox", (PyObject *) &MailboxType) < 0)
        goto fail;
    Py_INCREF(&ClaimType);
    if (PyModule_AddObject(mod, "Claim", (PyObject *) &ClaimType) < 0)
        goto fail;
    Py_INCREF(&LoanType);
    if (PyModule_AddObject(mod, "Loan", (PyObject *) &LoanType) < 0)
        goto fail;
    Py_INCREF(&MessageType);
    if (PyModule_AddObject(mod, "Message", (PyObject *) &MessageType) < 0)
        goto fail;
    Py_INCREF(&StatType);
    if (PyModule_AddObject(mod, "Stat", (PyObject *) &StatType) < 0)
        goto fail;
    Py_INCREF(&PeerType);
    if (PyModule_AddObject(mod, "Peer", (PyObject *) &PeerType) < 0)
        goto fail;
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(mod, constants[i].name, constants[i].value) < 0)
            goto fail;
    if (PyModule_AddStringConstant(mod, "library_version", pbx_version()) < 0)
        goto fail;
    Py_DECREF(queue);
    Py_DECREF(q_empty);
    Py_DECREF(q_full);
    return mod;
fail:
    Py_XDECREF(queue);
    Py_XDECREF(q_empty);
    Py_XDECREF(q_full);
    Py_DECREF(mod);
    return NULL;
}
