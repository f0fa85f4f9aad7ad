/* unixipc._native.RingCore: the Python binding of the shared-memory ring.
 *
 * The algorithm is in ring_core.c (plain C, driven by a C harness in the tests);
 * this file parses and range-checks arguments, lets the GIL go while the core
 * waits (and runs signal handlers when a wait is interrupted), turns the core's
 * outcomes into unixipc.errors exceptions, and keeps the mapping alive: RingCore
 * holds a buffer export of the PosixSharedMemory mapping made by Python, so it
 * cannot be unmapped under the core.
 *
 * Nothing the core trusts can be changed from Python while a call runs: the
 * slot, lock and mapping are changed only by the private methods below, which
 * refuse while calls are in progress, and every integer is range-checked.
 */
#include "callargs.h"
#include "common.h"
#include "doorbell.h"
#include "ring_core.h"

#include <math.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(RING_BELL_ID_BYTES == UNIXIPC_BELL_ID_BYTES, "one doorbell name size");
_Static_assert(RING_BELL_WORDS == UNIXIPC_BELL_MASK_WORDS, "one doorbell mask size");

typedef struct {
    PyObject_HEAD
    Py_buffer buffer;
    int has_buffer;
    struct ring core;
    int busy;              /* calls in progress (they may have let the GIL go) */
    pid_t pid;             /* the process whose handle this is */
    PyObject *description; /* "shared-memory ring '/name'" for messages */
    int bell_fd;           /* our doorbell (owned by Ring._bell in Python); -1: none */
    struct ring_bells bells;
} RingObject;

/* ------------------------------------------------------------------ doorbells */

/* Handles without a doorbell of their own ring others' from this unbound
 * datagram socket, made on first need (maybe without the GIL: a CAS decides). */
static int bell_sender_fd = -1;

static int bell_sender(void)
{
    int fd = __atomic_load_n(&bell_sender_fd, __ATOMIC_ACQUIRE);
    if (fd >= 0) {
        return fd;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    int expected = -1;
    if (!__atomic_compare_exchange_n(&bell_sender_fd, &expected, fd, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        close(fd);
        return expected;
    }
    return fd;
}

static void ring_bell(void *context, const unsigned char *id)
{
    RingObject *self = context;
    int fd = self->bell_fd >= 0 ? self->bell_fd : bell_sender();
    if (fd >= 0) {
        unixipc_bell_ring_one(fd, id);
    }
}

static void drain_bell(void *context)
{
    RingObject *self = context;
    if (self->bell_fd >= 0) {
        unixipc_bell_drain(self->bell_fd);
    }
}

/* ------------------------------------------------------------------ errors */

_Static_assert(RING_NO_DEADLINE == UNIXIPC_NO_DEADLINE, "one meaning of no deadline");
_Static_assert(RING_TRY_ONCE == UNIXIPC_TRY_ONCE, "one meaning of try once");

/* The attribute send_many's exceptions carry (with sent >= 0). */
#define SENT(sent) ((sent) >= 0 ? "messages_sent" : NULL), (sent)

/* Turn a core outcome other than RING_OK into the exception it stands for.
 * `what` names the call; sent >= 0 (send_many) sets messages_sent. Returns NULL. */
static PyObject *raise_status(RingObject *self, int status, const char *what, double seconds,
                              Py_ssize_t sent)
{
    const char *peer = strncmp(what, "send", 4) == 0 ? "consumer" : "producer";
    switch (status) {
    case RING_TIMEOUT:
        if (sent < 0) {
            return unixipc_raise_timeout(what, self->description, seconds);
        }
        if (seconds == 0) {
            return unixipc_raise_error("WouldBlock", SENT(sent), "%s on %U would block", what,
                                       self->description);
        }
        {
            char text[64];
            PyOS_snprintf(text, sizeof text, "%g", seconds);
            return unixipc_raise_error("TimeoutExpired", SENT(sent),
                                       "%s on %U timed out after %s s", what, self->description,
                                       text);
        }
    case RING_CLOSED:
        return unixipc_raise_error("ClosedResourceError", SENT(sent), "%U was closed during %s",
                                   self->description, what);
    case RING_PEER_CLOSED:
        return unixipc_raise_error("EndOfChannel", SENT(sent), "%s on %U: every %s closed it",
                                   what, self->description, peer);
    case RING_PEER_DIED:
        return unixipc_raise_error("PeerDied", SENT(sent),
                                   "%s on %U: every %s is gone and one died", what,
                                   self->description, peer);
    case RING_CORRUPT:
        return unixipc_raise_error(
            "IPCError", SENT(sent),
            "%U is corrupt: %s at position %llu; recreate it (unlink, then create)",
            self->description, self->core.problem,
            (unsigned long long)self->core.problem_position);
    case RING_TOO_LARGE:
        return unixipc_raise_error("MessageTooLarge", SENT(sent),
                                   "a message is larger than the maximum of %llu bytes of %U",
                                   (unsigned long long)self->core.max_message,
                                   self->description);
    case RING_NO_SLOT:
        return unixipc_raise_error("IPCError", SENT(sent), "%U holds no slot in this process",
                                   self->description);
    default: /* RING_INTERRUPTED, RING_REFUSED: the exception is set */
        return NULL;
    }
}

/* ------------------------------------------------------------------ the GIL */

/* How the core lets the GIL go while it waits, and runs signal handlers after EINTR. */
struct gil {
    PyThreadState *state;
};

static void gil_release(void *context)
{
    ((struct gil *)context)->state = PyEval_SaveThread();
}

static void gil_take(void *context)
{
    PyEval_RestoreThread(((struct gil *)context)->state);
}

static int gil_signals(void *context)
{
    (void)context;
    return unixipc_after_eintr() < 0;
}

#define GIL_WAITER(name)                                                                          \
    struct gil name##_gil;                                                                        \
    const struct ring_waiter name = {&name##_gil, gil_release, gil_take, gil_signals}

/* ------------------------------------------------------------------ arguments */

/* An int in [minimum, maximum], else TypeError/ValueError naming it (no truncation). */
static int parse_int(PyObject *object, const char *name, long minimum, long maximum, long *out)
{
    if (PyBool_Check(object) || !PyLong_Check(object)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %s", name, Py_TYPE(object)->tp_name);
        return -1;
    }
    int overflow;
    long value = PyLong_AsLongAndOverflow(object, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow != 0 || value < minimum || value > maximum) {
        PyErr_Format(PyExc_ValueError, "%s must be in [%ld, %ld], got %R", name, minimum, maximum,
                     object);
        return -1;
    }
    *out = value;
    return 0;
}

/* An unsigned 64-bit int, else TypeError/OverflowError (no truncation). */
static int parse_u64(PyObject *object, const char *name, uint64_t *out)
{
    if (PyBool_Check(object) || !PyLong_Check(object)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %s", name, Py_TYPE(object)->tp_name);
        return -1;
    }
    unsigned long long value = PyLong_AsUnsignedLongLong(object);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1; /* OverflowError: negative or 2**64 and more */
    }
    *out = (uint64_t)value;
    return 0;
}

static const char *const DATA_NAMES[] = {"data"};
static const char *const MESSAGES_NAMES[] = {"messages"};
static const char *const BUFFER_NAMES[] = {"buffer"};
static const char *const MAX_COUNT_NAMES[] = {"max_count"};

/* ------------------------------------------------------------------ entering a call */

static int reattach(RingObject *self)
{
    PyObject *result = PyObject_CallMethod((PyObject *)self, "_reattach", NULL);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static PyObject *raise_not_attached(RingObject *self)
{
    if (self->description == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring is not attached");
        return NULL;
    }
    return unixipc_raise_error("ClosedResourceError", NULL, 0, "%U is closed", self->description);
}

static inline int ring_enter(RingObject *self)
{
    if (__builtin_expect(self->core.header == NULL || self->core.slot < 0, 0)) {
        if (self->core.header == NULL) {
            raise_not_attached(self);
            return -1;
        }
        /* A forked child takes a slot of its own on first use (Python code, which
         * may do anything: look again afterwards). */
        if (reattach(self) < 0) {
            return -1;
        }
        if (self->core.header == NULL) {
            raise_not_attached(self);
            return -1;
        }
        if (self->core.slot < 0) {
            raise_status(self, RING_NO_SLOT, "", 0, -1);
            return -1;
        }
    }
    self->busy++;
    return 0;
}

static inline void ring_leave(RingObject *self)
{
    self->busy--;
}

/* The private methods that change what the core trusts refuse while calls run. */
static int refuse_if_busy(RingObject *self, const char *method)
{
    if (self->busy == 0) {
        return 0;
    }
    unixipc_raise_error("IPCError", NULL, 0, "%s() on %U: calls are in progress", method,
                self->description != NULL ? self->description : Py_None);
    return -1;
}

/* ------------------------------------------------------------------ producing */

static PyObject *raise_too_large(RingObject *self, Py_ssize_t index, Py_ssize_t length)
{
    if (index < 0) {
        return unixipc_raise_error("MessageTooLarge", NULL, 0,
                           "a message of %zd bytes is larger than the maximum of %llu bytes of %U",
                           length, (unsigned long long)self->core.max_message, self->description);
    }
    return unixipc_raise_error("MessageTooLarge", NULL, 0,
                       "message %zd of %zd bytes is larger than the maximum of %llu bytes of %U "
                       "(nothing was sent)",
                       index, length, (unsigned long long)self->core.max_message,
                       self->description);
}

static PyObject *Ring_send(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *data, *timeout;
    if (unixipc_parse_call("send", args, nargs, kwnames, 1, DATA_NAMES, &data, &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (unixipc_get_bytes_like(data, &view) < 0) {
        return NULL;
    }
    if (ring_enter(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyObject *result = NULL;
    if ((uint64_t)view.len > self->core.max_message) {
        raise_too_large(self, -1, view.len);
    } else {
        GIL_WAITER(waiter);
        int status = ring_send(&self->core, view.buf, (uint64_t)view.len, deadline, &waiter);
        if (status == RING_OK) {
            result = Py_None;
            Py_INCREF(result);
        } else {
            raise_status(self, status, "send", seconds, -1);
        }
    }
    ring_leave(self);
    PyBuffer_Release(&view);
    return result;
}

/* The messages of send_many as a tuple of our own: a list given by the caller
 * may change (even in another thread, while the core waits without the GIL),
 * and its items with it; the tuple keeps every message alive until we are done. */
static PyObject *own_messages(PyObject *messages)
{
    if (PyList_CheckExact(messages) || PyTuple_CheckExact(messages)) {
        return PySequence_Tuple(messages);
    }
    PyObject *iterator = PyObject_GetIter(messages);
    if (iterator == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "messages must be an iterable of bytes-like objects");
        }
        return NULL;
    }
    PyObject *tuple = PySequence_Tuple(iterator);
    Py_DECREF(iterator);
    return tuple;
}

static PyObject *Ring_send_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    PyObject *messages, *timeout;
    if (unixipc_parse_call("send_many", args, nargs, kwnames, 1, MESSAGES_NAMES, &messages,
                           &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    PyObject *items = own_messages(messages);
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(items);
    struct ring_message *outgoing = PyMem_Malloc(sizeof(*outgoing) * (size_t)(count ? count : 1));
    Py_buffer *views = NULL;
    Py_ssize_t view_count = 0;
    PyObject *result = NULL;
    int entered = 0;
    if (outgoing == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    /* Check every message before sending any (this may run Python code). */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        if (PyBytes_CheckExact(item)) {
            outgoing[i].bytes = PyBytes_AS_STRING(item);
            outgoing[i].length = (uint64_t)PyBytes_GET_SIZE(item);
        } else {
            if (views == NULL) {
                views = PyMem_Malloc(sizeof(Py_buffer) * (size_t)count);
                if (views == NULL) {
                    PyErr_NoMemory();
                    goto out;
                }
            }
            if (unixipc_get_bytes_like(item, &views[view_count]) < 0) {
                goto out;
            }
            outgoing[i].bytes = views[view_count].buf;
            outgoing[i].length = (uint64_t)views[view_count].len;
            view_count++;
        }
    }
    if (ring_enter(self) < 0) {
        goto out;
    }
    entered = 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (outgoing[i].length > self->core.max_message) {
            raise_too_large(self, i, (Py_ssize_t)outgoing[i].length);
            goto out;
        }
    }
    GIL_WAITER(waiter);
    size_t sent;
    int status = ring_send_many(&self->core, outgoing, (size_t)count, &sent, deadline, &waiter);
    if (status == RING_OK) {
        result = Py_None;
        Py_INCREF(result);
    } else {
        raise_status(self, status, "send_many", seconds, (Py_ssize_t)sent);
    }
out:
    if (entered) {
        ring_leave(self);
    }
    for (Py_ssize_t i = 0; i < view_count; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
    PyMem_Free(outgoing);
    Py_DECREF(items);
    return result;
}

/* ------------------------------------------------------------------ consuming */

/* receive(): a bytes object of the message's length (kept if the core looks again). */
static void *bytes_sink(void *context, size_t index, uint32_t length)
{
    PyObject **bytes = context;
    (void)index;
    if (*bytes == NULL || PyBytes_GET_SIZE(*bytes) != (Py_ssize_t)length) {
        Py_XDECREF(*bytes);
        *bytes = PyBytes_FromStringAndSize(NULL, length);
        if (*bytes == NULL) {
            return NULL;
        }
    }
    return PyBytes_AS_STRING(*bytes);
}

struct into {
    RingObject *self;
    Py_buffer *target;
};

/* receive_into(): the caller's buffer, if the message fits (else it stays in the ring). */
static void *into_sink(void *context, size_t index, uint32_t length)
{
    static char nothing[1]; /* an empty buffer may have no address */
    struct into *into = context;
    (void)index;
    if ((Py_ssize_t)length > into->target->len) {
        unixipc_raise_error("MessageTooLarge", NULL, 0,
                    "the next message of %U has %u bytes: more than the buffer's %zd "
                    "(it stays in the ring)",
                    into->self->description, length, into->target->len);
        return NULL;
    }
    return into->target->buf != NULL ? into->target->buf : nothing;
}

/* receive_many(): a bytes object per message, appended to the list (cleared at index 0). */
static void *list_sink(void *context, size_t index, uint32_t length)
{
    PyObject *list = context;
    if (index == 0 && PyList_SetSlice(list, 0, PyList_GET_SIZE(list), NULL) < 0) {
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, length);
    if (bytes == NULL) {
        return NULL;
    }
    int appended = PyList_Append(list, bytes);
    Py_DECREF(bytes);
    return appended < 0 ? NULL : PyBytes_AS_STRING(bytes);
}

static PyObject *Ring_receive(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *timeout;
    if (unixipc_parse_call("receive", args, nargs, kwnames, 0, NULL, NULL, &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (unixipc_parse_timeout(timeout, &deadline, &seconds) < 0 || ring_enter(self) < 0) {
        return NULL;
    }
    GIL_WAITER(waiter);
    PyObject *bytes = NULL;
    uint32_t length;
    int status = ring_receive(&self->core, bytes_sink, &bytes, &length, deadline, &waiter);
    ring_leave(self);
    if (status != RING_OK) {
        Py_XDECREF(bytes);
        return raise_status(self, status, "receive", seconds, -1);
    }
    return bytes;
}

static PyObject *Ring_receive_into(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *buffer, *timeout;
    if (unixipc_parse_call("receive_into", args, nargs, kwnames, 1, BUFFER_NAMES, &buffer,
                           &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    Py_buffer target;
    if (PyObject_GetBuffer(buffer, &target, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "buffer must be a writable C-contiguous bytes-like object, not %s",
                     Py_TYPE(buffer)->tp_name);
        return NULL;
    }
    if (ring_enter(self) < 0) {
        PyBuffer_Release(&target);
        return NULL;
    }
    GIL_WAITER(waiter);
    struct into into = {self, &target};
    uint32_t length;
    int status = ring_receive(&self->core, into_sink, &into, &length, deadline, &waiter);
    ring_leave(self);
    PyBuffer_Release(&target);
    if (status != RING_OK) {
        return raise_status(self, status, "receive_into", seconds, -1);
    }
    return PyLong_FromUnsignedLong(length);
}

static PyObject *Ring_receive_many(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *max_object, *timeout;
    if (unixipc_parse_call("receive_many", args, nargs, kwnames, 1, MAX_COUNT_NAMES, &max_object,
                           &timeout) < 0) {
        return NULL;
    }
    if (PyBool_Check(max_object) || !PyLong_Check(max_object)) {
        PyErr_Format(PyExc_TypeError, "max_count must be an int, not %s",
                     Py_TYPE(max_object)->tp_name);
        return NULL;
    }
    Py_ssize_t max_count = PyLong_AsSsize_t(max_object);
    if (max_count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (max_count < 1) {
        PyErr_Format(PyExc_ValueError, "max_count must be >= 1, got %zd", max_count);
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (unixipc_parse_timeout(timeout, &deadline, &seconds) < 0) {
        return NULL;
    }
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    if (ring_enter(self) < 0) {
        Py_DECREF(list);
        return NULL;
    }
    GIL_WAITER(waiter);
    size_t count;
    int status = ring_receive_many(&self->core, (size_t)max_count, list_sink, list, &count,
                                   deadline, &waiter);
    ring_leave(self);
    if (status != RING_OK) {
        Py_DECREF(list);
        return raise_status(self, status, "receive_many", seconds, -1);
    }
    return list;
}

/* receive_view(): claim one message and return (offset in the mapping, length). */
static PyObject *Ring_view_take(RingObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    PyObject *timeout;
    if (unixipc_parse_call("receive_view", args, nargs, kwnames, 0, NULL, NULL, &timeout) < 0) {
        return NULL;
    }
    int64_t deadline;
    double seconds;
    if (unixipc_parse_timeout(timeout, &deadline, &seconds) < 0 || ring_enter(self) < 0) {
        return NULL;
    }
    if (self->core.view_open) {
        ring_leave(self);
        return unixipc_raise_error("IPCError", NULL, 0,
                           "%U: a receive_view() of this handle is still open; leave its with "
                           "block first (or open another handle)",
                           self->description);
    }
    GIL_WAITER(waiter);
    uint64_t offset;
    uint32_t length;
    int status = ring_view_take(&self->core, &offset, &length, deadline, &waiter);
    ring_leave(self);
    if (status != RING_OK) {
        return raise_status(self, status, "receive_view", seconds, -1);
    }
    return Py_BuildValue("nI", (Py_ssize_t)offset, length);
}

static PyObject *Ring_view_release(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    ring_view_release(&self->core);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ lifecycle */

static PyObject *Ring_attach(RingObject *self, PyObject *args)
{
    PyObject *buffer_object, *description;
    int lock_fd;
    if (!PyArg_ParseTuple(args, "OiU:_attach", &buffer_object, &lock_fd, &description)) {
        return NULL;
    }
    if (self->has_buffer) {
        PyErr_SetString(PyExc_ValueError, "already attached");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer_object, &self->buffer, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    self->has_buffer = 1;
    Py_INCREF(description);
    Py_XSETREF(self->description, description);
    const char *problem = ring_attach(&self->core, self->buffer.buf, (size_t)self->buffer.len);
    if (problem != NULL) {
        PyBuffer_Release(&self->buffer);
        self->has_buffer = 0;
        return unixipc_raise_error("IPCError", NULL, 0, "%U is not a usable unixipc ring: %s",
                                   description,
                           problem);
    }
    self->core.lock_fd = lock_fd;
    self->bells.ring = ring_bell;
    self->bells.drain = drain_bell;
    self->bells.context = self;
    self->core.bells = &self->bells;
    self->pid = getpid();
    Py_RETURN_NONE;
}

/* _set_bell(fd, id): our doorbell (a bound datagram socket that Python keeps
 * open until after _detach) and its name, published in our slot. */
static PyObject *Ring_set_bell(RingObject *self, PyObject *args)
{
    int fd;
    Py_buffer id;
    if (!PyArg_ParseTuple(args, "iy*:_set_bell", &fd, &id)) {
        return NULL;
    }
    if (id.len != RING_BELL_ID_BYTES || fd < 0) {
        PyBuffer_Release(&id);
        PyErr_SetString(PyExc_ValueError, "a doorbell needs a descriptor and a 16-byte id");
        return NULL;
    }
    if (ring_enter(self) < 0) {
        PyBuffer_Release(&id);
        return NULL;
    }
    self->bell_fd = fd;
    ring_set_bell(&self->core, id.buf);
    ring_leave(self);
    PyBuffer_Release(&id);
    Py_RETURN_NONE;
}

/* _ready(for_send) -> bool: the readiness protocol (ring_ready). */
static PyObject *Ring_ready(RingObject *self, PyObject *for_send)
{
    int space = PyObject_IsTrue(for_send);
    if (space < 0 || ring_enter(self) < 0) {
        return NULL;
    }
    int ready = ring_ready(&self->core, space, RING_RECORD_HEADER);
    ring_leave(self);
    return PyBool_FromLong(ready);
}

/* Take a slot for this handle, its liveness held through lock_fd. */
static PyObject *Ring_take_slot(RingObject *self, PyObject *args)
{
    int lock_fd;
    if (!PyArg_ParseTuple(args, "i:_take_slot", &lock_fd) || refuse_if_busy(self, "_take_slot")) {
        return NULL;
    }
    if (self->core.header == NULL) {
        return raise_not_attached(self);
    }
    self->core.lock_fd = lock_fd;
    self->core.slot = -1;
    self->core.roles = 0;
    int index = ring_claim_slot(&self->core, lock_fd, 0);
    if (index == -2) {
        return unixipc_raise_errno(NULL);
    }
    self->core.slot = index;
    return PyLong_FromLong(index);
}

/* Before fork: take a second slot with this handle's roles (and the roles in
 * `extra`: those an end not used yet will take), its lock held through lock_fd,
 * for the child to adopt. While the child holds lock_fd, the roles stay alive
 * even after the parent closes its own handle (as a descriptor inherited by fork
 * keeps a pipe open). Returns the index, -1 if there is nothing to hand over or
 * no free slot. */
static PyObject *Ring_reserve_for_child(RingObject *self, PyObject *args)
{
    int lock_fd;
    unsigned int extra = 0;
    if (!PyArg_ParseTuple(args, "i|I:_reserve_for_child", &lock_fd, &extra)) {
        return NULL;
    }
    uint32_t roles = self->core.roles | (extra & (RING_PRODUCER | RING_CONSUMER));
    if (self->core.header == NULL || self->core.slot < 0 || roles == 0) {
        return PyLong_FromLong(-1);
    }
    int index = ring_claim_slot(&self->core, lock_fd, roles);
    return index == -2 ? unixipc_raise_errno(NULL) : PyLong_FromLong(index);
}

/* In the child after fork: make the slot reserved before the fork ours. */
static PyObject *Ring_adopt_slot(RingObject *self, PyObject *args)
{
    int index, lock_fd;
    if (!PyArg_ParseTuple(args, "ii:_adopt_slot", &index, &lock_fd) ||
        refuse_if_busy(self, "_adopt_slot")) {
        return NULL;
    }
    if (self->core.header == NULL) {
        return raise_not_attached(self);
    }
    if (ring_adopt_slot(&self->core, index, lock_fd) < 0) {
        PyErr_Format(PyExc_ValueError, "slot must be in [0, %d), got %d", RING_SLOT_COUNT, index);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Publish roles now (declare()). */
static PyObject *Ring_declare(RingObject *self, PyObject *roles_object)
{
    long roles;
    if (parse_int(roles_object, "roles", 0, RING_PRODUCER | RING_CONSUMER, &roles) < 0 ||
        ring_enter(self) < 0) {
        return NULL;
    }
    ring_publish_roles(&self->core, (uint32_t)roles);
    ring_leave(self);
    Py_RETURN_NONE;
}

/* In a child after fork: the slot belongs to the parent; take another before use.
 * In the process that owns the handle it changes nothing. */
static PyObject *Ring_forked(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    pid_t pid = getpid();
    if (pid != self->pid) {
        self->pid = pid;
        self->core.slot = -1;
        self->core.roles = 0;
        self->core.lock_fd = -1;
        self->core.view_open = 0;
        self->core.has_bell = 0; /* the doorbell is the parent's: Python drops its copy */
        self->core.pass_on = 0;
        self->bell_fd = -1;
        self->busy = 0; /* the threads that were in calls did not come along */
    }
    Py_RETURN_NONE;
}

/* Another thread is closing: wake our waiters so that they give up. */
static PyObject *Ring_begin_close(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->busy > 0) {
        ring_begin_close(&self->core);
    } else {
        self->core.closing = 1;
    }
    return PyLong_FromLong(self->busy);
}

static PyObject *Ring_busy(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->busy);
}

/* The roles of a slot reserved for a forked child end (the parent's end of
 * the conversation closes for good, and the child was a bystander). */
static PyObject *Ring_revoke_slot(RingObject *self, PyObject *args)
{
    int index;
    if (!PyArg_ParseTuple(args, "i:_revoke_slot", &index)) {
        return NULL;
    }
    ring_revoke_slot(&self->core, index);
    Py_RETURN_NONE;
}

/* Leave: free our slot and, if we were the last producer (consumer) and announce
 * is true, tell the consumers (producers) that the ring was closed. Without
 * announce, the roles are being handed to another process, which takes them
 * when it starts: peers go on waiting. Then drop the mapping. */
static PyObject *Ring_detach(RingObject *self, PyObject *args)
{
    int announce = 1;
    if (!PyArg_ParseTuple(args, "|p:_detach", &announce) || refuse_if_busy(self, "_detach")) {
        return NULL;
    }
    ring_detach(&self->core, announce);
    self->bell_fd = -1;
    if (self->has_buffer) {
        PyBuffer_Release(&self->buffer);
        self->has_buffer = 0;
    }
    Py_RETURN_NONE;
}

/* (capacity, used bytes, messages waiting, producers, consumers, attached handles) */
static PyObject *Ring_snapshot(RingObject *self, PyObject *Py_UNUSED(ignored))
{
    if (ring_enter(self) < 0) {
        return NULL;
    }
    struct ring_snapshot snapshot;
    int status = ring_snapshot(&self->core, &snapshot);
    ring_leave(self);
    if (status != RING_OK) {
        return raise_status(self, status, "info", 0, -1);
    }
    return Py_BuildValue("KKKiii", (unsigned long long)self->core.capacity,
                         (unsigned long long)snapshot.used, (unsigned long long)snapshot.messages,
                         snapshot.producers, snapshot.consumers, snapshot.attached);
}

static PyObject *Ring_get_max_message_size(RingObject *self, void *Py_UNUSED(closure))
{
    if (self->description == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring is not attached");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(self->core.max_message);
}

static PyObject *Ring_get_capacity(RingObject *self, void *Py_UNUSED(closure))
{
    if (self->description == NULL) {
        PyErr_SetString(PyExc_ValueError, "the ring is not attached");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(self->core.capacity);
}

static PyObject *Ring_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    RingObject *self = (RingObject *)PyType_GenericNew(type, args, kwargs);
    if (self != NULL) {
        self->core.slot = -1; /* the rest is zero: not attached */
        self->core.lock_fd = -1;
        self->bell_fd = -1;
    }
    return (PyObject *)self;
}

static void Ring_dealloc(RingObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->has_buffer) {
        PyBuffer_Release(&self->buffer);
        self->has_buffer = 0;
    }
    Py_CLEAR(self->description);
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

/* The buffer's exporter (the memoryview of the mapping) is deliberately not
 * visited: it never leads back to us, and visited, a collection that found it in
 * the same garbage as us could clear it (memoryview's tp_clear drops its managed
 * buffer even while exported) before our dealloc releases it: a crash in
 * memory_dealloc (seen with a Ring left attached by an interrupted create). */
static int Ring_traverse(RingObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

#define VECTOR_METHOD(name, function, doc)                                                        \
    {name, (PyCFunction)(void (*)(void))(function), METH_FASTCALL | METH_KEYWORDS, doc}

static PyMethodDef Ring_methods[] = {
    VECTOR_METHOD("send", Ring_send,
                  "send($self, /, data, *, timeout=None)\n--\n\n"
                  "Append one message (any bytes-like object) to the ring, waiting for space.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: data is longer than max_message_size (nothing sent).\n"
                  "    WouldBlock: timeout=0 and the ring is full.\n"
                  "    TimeoutExpired: still full when the timeout ran out.\n"
                  "    EndOfChannel, PeerDied: the ring is full and every consumer closed it\n"
                  "        (or is gone, one of them by dying).\n"
                  "    ClosedResourceError: this handle is closed.\n"
                  "    IPCError: the ring's shared memory is corrupt (damaged by a process)."),
    VECTOR_METHOD("send_many", Ring_send_many,
                  "send_many($self, /, messages, *, timeout=None)\n--\n\n"
                  "Append every message of an iterable, in order, claiming space for as many\n"
                  "as fit at once. Every message is checked before any is sent.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: one message is too long (nothing sent).\n"
                  "    WouldBlock, TimeoutExpired, EndOfChannel, PeerDied: as send(); the\n"
                  "        exception's messages_sent tells how many went out.\n"
                  "    ClosedResourceError: this handle is closed.\n"
                  "    IPCError: the ring is corrupt."),
    VECTOR_METHOD("receive", Ring_receive,
                  "receive($self, /, *, timeout=None)\n--\n\n"
                  "Take the next message, waiting for one.\n\n"
                  "Raises:\n"
                  "    WouldBlock: timeout=0 and the ring is empty.\n"
                  "    TimeoutExpired: still empty when the timeout ran out.\n"
                  "    EndOfChannel: empty, and the last producer closed the ring.\n"
                  "    PeerDied: empty, and every producer is gone, one of them by dying.\n"
                  "    ClosedResourceError: this handle is closed.\n"
                  "    IPCError: the ring is corrupt."),
    VECTOR_METHOD("receive_into", Ring_receive_into,
                  "receive_into($self, /, buffer, *, timeout=None)\n--\n\n"
                  "Copy the next message into a writable buffer; return its length.\n\n"
                  "Raises:\n"
                  "    MessageTooLarge: the message is longer than the buffer (it stays).\n"
                  "    WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,\n"
                  "    ClosedResourceError, IPCError: as receive()."),
    VECTOR_METHOD("receive_many", Ring_receive_many,
                  "receive_many($self, /, max_count, *, timeout=None)\n--\n\n"
                  "Wait for at least one message, then take up to max_count that are ready\n"
                  "(beyond the first, at most a quarter of the capacity and 512 records per\n"
                  "call).\n\n"
                  "Raises:\n"
                  "    WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,\n"
                  "    ClosedResourceError, IPCError: as receive()."),
    VECTOR_METHOD("_view_take", Ring_view_take,
                  "_view_take($self, /, *, timeout=None)\n--\n\n"
                  "Claim one message for receive_view()."),
    {"_view_release", (PyCFunction)Ring_view_release, METH_NOARGS,
     "Give back the message of receive_view()."},
    {"_attach", (PyCFunction)Ring_attach, METH_VARARGS,
     "_attach(buffer, lock_fd, description): check the layout and keep the mapping."},
    {"_take_slot", (PyCFunction)Ring_take_slot, METH_VARARGS,
     "_take_slot(lock_fd) -> int: take a slot (-1 if none is free)."},
    {"_declare", (PyCFunction)Ring_declare, METH_O, "_declare(roles): publish roles."},
    {"_forked", (PyCFunction)Ring_forked, METH_NOARGS,
     "In a forked child: forget the parent's slot."},
    {"_reserve_for_child", (PyCFunction)Ring_reserve_for_child, METH_VARARGS,
     "_reserve_for_child(lock_fd, extra_roles=0) -> int: before fork, a slot with our roles "
     "(-1: none)."},
    {"_adopt_slot", (PyCFunction)Ring_adopt_slot, METH_VARARGS,
     "_adopt_slot(index, lock_fd): after fork, in the child, make the reserved slot ours."},
    {"_begin_close", (PyCFunction)Ring_begin_close, METH_NOARGS,
     "Make waiting calls give up; return how many are in progress."},
    {"_busy", (PyCFunction)Ring_busy, METH_NOARGS, "How many calls are in progress."},
    {"_detach", (PyCFunction)Ring_detach, METH_VARARGS,
     "_detach(announce=True): leave the ring; announce closes our roles for peers."},
    {"_revoke_slot", (PyCFunction)Ring_revoke_slot, METH_VARARGS,
     "_revoke_slot(index): end the roles of a slot reserved for a child."},
    {"_set_bell", (PyCFunction)Ring_set_bell, METH_VARARGS,
     "_set_bell(fd, id): our doorbell, its name published in our slot."},
    {"_ready", (PyCFunction)Ring_ready, METH_O,
     "_ready(for_send) -> bool: would the call succeed now? If not, the doorbell is armed."},
    {"_snapshot", (PyCFunction)Ring_snapshot, METH_NOARGS,
     "(capacity, used, messages, producers, consumers, attached)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Ring_getset[] = {
    {"max_message_size", (getter)Ring_get_max_message_size, NULL,
     "The largest message this ring carries (half its capacity, less a 16-byte header).", NULL},
    {"capacity", (getter)Ring_get_capacity, NULL, "Bytes of message space in the ring.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Ring_slots[] = {
    {Py_tp_doc, "The native half of unixipc.Ring (private): the mapped ring and its hot path."},
    {Py_tp_new, Ring_new},
    {Py_tp_dealloc, Ring_dealloc},
    {Py_tp_traverse, Ring_traverse},
    {Py_tp_methods, Ring_methods},
    {Py_tp_getset, Ring_getset},
    {0, NULL},
};

static PyType_Spec Ring_spec = {
    .name = "unixipc._native.RingCore",
    .basicsize = sizeof(RingObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Ring_slots,
};

/* ------------------------------------------------------------------ module functions */

/* ring_initialize(buffer, capacity, key): lay out a fresh, zero-filled object. */
static PyObject *native_ring_initialize(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buffer;
    PyObject *capacity_object, *key_object;
    uint64_t capacity, key;
    if (!PyArg_ParseTuple(args, "w*OO:ring_initialize", &buffer, &capacity_object, &key_object)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (parse_u64(capacity_object, "capacity", &capacity) == 0 &&
        parse_u64(key_object, "key", &key) == 0) {
        if (ring_layout(buffer.buf, (size_t)buffer.len, capacity, key) < 0) {
            PyErr_SetString(PyExc_ValueError, "capacity does not fit the buffer or the limits");
        } else {
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&buffer);
    return result;
}

static PyObject *native_ring_test_stop(PyObject *Py_UNUSED(module), PyObject *point_object)
{
    long point;
    if (parse_int(point_object, "point", RING_STOP_NEVER, RING_STOP_CONSUMER_WOKEN, &point) < 0) {
        return NULL;
    }
    ring_test_stop_point = (int)point;
    Py_RETURN_NONE;
}

static PyMethodDef ring_functions[] = {
    {"ring_initialize", native_ring_initialize, METH_VARARGS,
     "ring_initialize(buffer, capacity, key) -> None\n\n"
     "Lay out a ring in zero-filled memory; the magic number is written last."},
    {"ring_test_stop", native_ring_test_stop, METH_O,
     "ring_test_stop(point) -> None\n\n"
     "Tests only: SIGSTOP this process when it reaches the given point (0: never)."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_ring(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec((PyObject *)module, &Ring_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    if (PyModule_AddObject(module, "RingCore", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    if (PyModule_AddFunctions(module, ring_functions) < 0) {
        return -1;
    }
    if (PyModule_AddIntConstant(module, "RING_DATA_OFFSET", RING_DATA_OFFSET) < 0 ||
        PyModule_AddIntConstant(module, "RING_MIN_CAPACITY", RING_MIN_CAPACITY) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "RING_MAX_CAPACITY", (long)RING_MAX_CAPACITY);
}
