/* POSIX message queues.
 * System calls: mq_open, mq_close, mq_unlink, mq_getattr, mq_timedsend,
 * mq_timedreceive (mq_send/mq_receive when there is no deadline), mq_notify.
 *
 * On Linux an mqd_t is a file descriptor, so the Python layer handles it as an
 * int. Deadlines are absolute CLOCK_MONOTONIC ns (-1: none); mq_timed* want
 * CLOCK_REALTIME, so the absolute time is recomputed after every EINTR from
 * the same monotonic deadline (a clock step does not shorten or stretch it).
 */
#include "common.h"
#include "queue_fastpath.h"

#include <stddef.h>
#include <structmember.h>

#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* OSError for `error`, naming the object by the str `name` (or nothing). */
static PyObject *raise_error_named(int error, PyObject *name)
{
    const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (text == NULL) {
        PyErr_Clear();
    }
    errno = error; /* after the conversion, which may have changed errno */
    return unixipc_raise_errno(text);
}

static int parse_mqd(PyObject *arg, mqd_t *out)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (mqd_t)value;
    return 0;
}

static PyObject *native_mq_open(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int flags;
    unsigned int mode;
    long max_messages, max_message_size;
    if (!PyArg_ParseTuple(args, "siIll:mq_open", &name, &flags, &mode, &max_messages,
                          &max_message_size)) {
        return NULL;
    }
    struct mq_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.mq_maxmsg = max_messages;
    attr.mq_msgsize = max_message_size;
    /* Attributes only matter when creating; -1 asks for the system defaults. */
    struct mq_attr *attr_arg = (flags & O_CREAT) && max_messages >= 0 ? &attr : NULL;
    mqd_t mqd;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        mqd = mq_open(name, flags, (mode_t)mode, attr_arg);
        Py_END_ALLOW_THREADS
        if (mqd != (mqd_t)-1) {
            return PyLong_FromLong((long)mqd);
        }
        if (errno != EINTR) {
            return unixipc_raise_errno(name);
        }
        if (unixipc_after_eintr() < 0) {
            return NULL;
        }
    }
}

static PyObject *native_mq_close(PyObject *Py_UNUSED(self), PyObject *arg)
{
    mqd_t mqd;
    if (parse_mqd(arg, &mqd) < 0) {
        return NULL;
    }
    if (mq_close(mqd) != 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *native_mq_unlink(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:mq_unlink", &name)) {
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = mq_unlink(name);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

static PyObject *native_mq_getattr(PyObject *Py_UNUSED(self), PyObject *arg)
{
    mqd_t mqd;
    if (parse_mqd(arg, &mqd) < 0) {
        return NULL;
    }
    struct mq_attr attr;
    if (mq_getattr(mqd, &attr) != 0) {
        return unixipc_raise_errno(NULL);
    }
    return Py_BuildValue("(llll)", attr.mq_flags, attr.mq_maxmsg, attr.mq_msgsize,
                         attr.mq_curmsgs);
}

/* An unsigned priority below MQ_PRIO_MAX; anything else (a bool, a negative or
 * too large number) raises OverflowError or TypeError, which the Python layer
 * turns into a ValueError or TypeError naming the argument. */
static int parse_priority(PyObject *arg, unsigned int *out)
{
    if (PyBool_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "priority must be an int, not bool");
        return -1;
    }
    unsigned long value = PyLong_AsUnsignedLong(arg);
    if (value == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (value >= (unsigned long)MQ_PRIO_MAX) {
        PyErr_SetString(PyExc_OverflowError, "priority must be < MQ_PRIO_MAX");
        return -1;
    }
    *out = (unsigned int)value;
    return 0;
}

/* Send with the GIL released, retrying after EINTR with the same deadline.
 * Returns 0, -1 with errno set, or -2 with an exception from a signal handler. */
static int send_with_deadline(mqd_t mqd, const char *data, size_t length, unsigned int priority,
                              int64_t deadline)
{
    int rc;
    int saved_errno;
    for (;;) {
        if (deadline == UNIXIPC_NO_DEADLINE) {
            Py_BEGIN_ALLOW_THREADS
            rc = mq_send(mqd, data, length, priority);
            saved_errno = errno;
            Py_END_ALLOW_THREADS
        } else {
            struct timespec at;
            unixipc_abstime(deadline, CLOCK_REALTIME, &at);
            Py_BEGIN_ALLOW_THREADS
            rc = mq_timedsend(mqd, data, length, priority, &at);
            saved_errno = errno;
            Py_END_ALLOW_THREADS
        }
        if (rc == 0 || saved_errno != EINTR) {
            break;
        }
        if (unixipc_after_eintr() < 0) {
            return -2;
        }
    }
    errno = saved_errno;
    return rc == 0 ? 0 : -1;
}

/* mq_send(mqd, message, priority, deadline_ns, name, max_size) -> None | int
 * Returns the message's length, sending nothing, when it exceeds max_size. */
static PyObject *native_mq_send(PyObject *Py_UNUSED(self), PyObject *const *args,
                                Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "mq_send(mqd, message, priority, deadline_ns, name, max_size)");
        return NULL;
    }
    mqd_t mqd;
    int64_t deadline;
    unsigned int priority;
    if (parse_mqd(args[0], &mqd) < 0 || unixipc_parse_deadline(args[3], &deadline) < 0 ||
        parse_priority(args[2], &priority) < 0) {
        return NULL;
    }
    Py_ssize_t max_size = PyLong_AsSsize_t(args[5]);
    if (max_size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len > max_size) {
        Py_ssize_t length = view.len;
        PyBuffer_Release(&view);
        return PyLong_FromSsize_t(length);
    }
    int rc = send_with_deadline(mqd, view.buf, (size_t)view.len, priority, deadline);
    int error = errno;
    PyBuffer_Release(&view);
    if (rc < 0) {
        return rc == -2 ? NULL : raise_error_named(error, args[4]);
    }
    Py_RETURN_NONE;
}

/* Receive into `buffer` of `size` bytes; returns the length or -1 (errno set),
 * or -2 with a Python exception from a signal handler. */
static Py_ssize_t receive_with_deadline(mqd_t mqd, char *buffer, size_t size, int64_t deadline,
                                        unsigned int *priority)
{
    ssize_t got;
    int saved_errno;
    for (;;) {
        if (deadline == UNIXIPC_NO_DEADLINE) {
            Py_BEGIN_ALLOW_THREADS
            got = mq_receive(mqd, buffer, size, priority);
            saved_errno = errno;
            Py_END_ALLOW_THREADS
        } else {
            struct timespec at;
            unixipc_abstime(deadline, CLOCK_REALTIME, &at);
            Py_BEGIN_ALLOW_THREADS
            got = mq_timedreceive(mqd, buffer, size, priority, &at);
            saved_errno = errno;
            Py_END_ALLOW_THREADS
        }
        if (got >= 0 || saved_errno != EINTR) {
            break;
        }
        if (unixipc_after_eintr() < 0) {
            return -2;
        }
    }
    errno = saved_errno;
    return (Py_ssize_t)got;
}

/* Messages up to this size are received on the stack and copied into a bytes
 * object of their exact length; larger queues receive straight into a bytes
 * object of the queue's message size, which is then shrunk. */
#define STACK_RECEIVE_MAX 8192

/* A new bytes object holding the next message; NULL with *failure set to
 * errno, or to -2 when a Python exception is set. */
static PyObject *receive_bytes(mqd_t mqd, Py_ssize_t size, int64_t deadline,
                               unsigned int *priority, int *failure)
{
    *failure = -2;
    if (size <= STACK_RECEIVE_MAX) {
        char buffer[STACK_RECEIVE_MAX];
        Py_ssize_t got = receive_with_deadline(mqd, buffer, (size_t)size, deadline, priority);
        if (got < 0) {
            *failure = got == -2 ? -2 : errno;
            return NULL;
        }
        return PyBytes_FromStringAndSize(buffer, got);
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        return NULL;
    }
    Py_ssize_t got =
        receive_with_deadline(mqd, PyBytes_AS_STRING(data), (size_t)size, deadline, priority);
    if (got < 0) {
        *failure = got == -2 ? -2 : errno;
        Py_DECREF(data);
        return NULL;
    }
    if (got != size && _PyBytes_Resize(&data, got) < 0) {
        return NULL;
    }
    return data;
}

static int check_result_type(PyObject *type)
{
    if (!PyType_Check(type) || !PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "result_type must be a tuple subclass");
        return -1;
    }
    return 0;
}

/* mq_receive(mqd, size, deadline_ns, name, result_type) -> result_type(data, priority) */
static PyObject *native_mq_receive(PyObject *Py_UNUSED(self), PyObject *const *args,
                                   Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "mq_receive(mqd, size, deadline_ns, name, result_type)");
        return NULL;
    }
    mqd_t mqd;
    int64_t deadline;
    if (check_result_type(args[4]) < 0 || parse_mqd(args[0], &mqd) < 0 ||
        unixipc_parse_deadline(args[2], &deadline) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        }
        return NULL;
    }
    unsigned int priority = 0;
    int failure;
    PyObject *data = receive_bytes(mqd, size, deadline, &priority, &failure);
    if (data == NULL) {
        return failure == -2 ? NULL : raise_error_named(failure, args[3]);
    }
    return uq_pair(args[4], data, PyLong_FromUnsignedLong(priority));
}

/* mq_receive_into(mqd, buffer, deadline_ns, name) -> (nbytes, priority) */
static PyObject *native_mq_receive_into(PyObject *Py_UNUSED(self), PyObject *const *args,
                                        Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "mq_receive_into(mqd, buffer, deadline_ns, name)");
        return NULL;
    }
    mqd_t mqd;
    int64_t deadline;
    if (parse_mqd(args[0], &mqd) < 0 || unixipc_parse_deadline(args[2], &deadline) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    unsigned int priority = 0;
    Py_ssize_t got = receive_with_deadline(mqd, view.buf, (size_t)view.len, deadline, &priority);
    int error = errno;
    PyBuffer_Release(&view);
    if (got < 0) {
        return got == -2 ? NULL : raise_error_named(error, args[3]);
    }
    return Py_BuildValue("(nI)", got, priority);
}

/* ---- the fast path: methods of PosixMessageQueue's C base -------------------- */

typedef struct {
    PyObject_HEAD
    int mqd;               /* -1 once closed */
    Py_ssize_t limit;      /* the queue's max_message_size */
    PyObject *label;       /* the name, for OSError */
    PyObject *result_type; /* Message */
} PosixQueueCore;

static PyObject *core_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                          PyObject *Py_UNUSED(kwargs))
{
    PosixQueueCore *self = (PosixQueueCore *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->mqd = -1; /* never 0: that is standard input */
    }
    return (PyObject *)self;
}

static void core_dealloc(PosixQueueCore *self)
{
    Py_CLEAR(self->label);
    Py_CLEAR(self->result_type);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static const char *const send_keywords[] = {"priority", "timeout"};
static const char *const timeout_keyword[] = {"timeout"};

static PyObject *core_send(PosixQueueCore *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *values[2] = {NULL, Py_None};
    unsigned int priority = 0;
    int64_t deadline;
    int zero;
    Py_buffer view;
    if (nargs != 1 || uq_keywords(kwnames, args + nargs, send_keywords, values, 2) < 0 ||
        !uq_deadline(values[1], &deadline, &zero)) {
        goto slow;
    }
    if (values[0] != NULL) {
        if (!PyLong_CheckExact(values[0])) {
            goto slow;
        }
        unsigned long value = PyLong_AsUnsignedLong(values[0]);
        if (value == (unsigned long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto slow;
        }
        if (value >= (unsigned long)MQ_PRIO_MAX) {
            goto slow;
        }
        priority = (unsigned int)value;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        goto slow;
    }
    if (view.len > self->limit) {
        PyBuffer_Release(&view);
        goto slow;
    }
    int rc = send_with_deadline((mqd_t)self->mqd, view.buf, (size_t)view.len, priority, deadline);
    int error = errno;
    PyBuffer_Release(&view);
    if (rc < 0) {
        return rc == -2 ? NULL
                        : uq_raise_error((PyObject *)self, error, self->label, "send to", values[1], -1);
    }
    Py_RETURN_NONE;
slow:
    return uq_fall_back((PyObject *)self, "_send_slow", args, nargs, kwnames);
}

static PyObject *core_receive(PosixQueueCore *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *timeout = Py_None;
    int64_t deadline;
    int zero;
    if (nargs != 0 || self->result_type == NULL ||
        uq_keywords(kwnames, args + nargs, timeout_keyword, &timeout, 1) < 0 ||
        !uq_deadline(timeout, &deadline, &zero)) {
        return uq_fall_back((PyObject *)self, "_receive_slow", args, nargs, kwnames);
    }
    unsigned int priority = 0;
    int failure;
    PyObject *data = receive_bytes((mqd_t)self->mqd, self->limit, deadline, &priority, &failure);
    if (data == NULL) {
        return failure == -2 ? NULL
                             : uq_raise_error((PyObject *)self, failure, self->label,
                                              "receive from", timeout, -1);
    }
    return uq_pair(self->result_type, data, PyLong_FromUnsignedLong(priority));
}

static PyObject *core_receive_into(PosixQueueCore *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *timeout = Py_None;
    int64_t deadline;
    int zero;
    Py_buffer view;
    if (nargs != 1 || uq_keywords(kwnames, args + nargs, timeout_keyword, &timeout, 1) < 0 ||
        !uq_deadline(timeout, &deadline, &zero)) {
        goto slow;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        goto slow;
    }
    if (view.len < self->limit) { /* the kernel would refuse: let Python explain */
        PyBuffer_Release(&view);
        goto slow;
    }
    unsigned int priority = 0;
    Py_ssize_t got =
        receive_with_deadline((mqd_t)self->mqd, view.buf, (size_t)view.len, deadline, &priority);
    int error = errno;
    PyBuffer_Release(&view);
    if (got < 0) {
        return got == -2 ? NULL
                         : uq_raise_error((PyObject *)self, error, self->label, "receive from",
                                          timeout, -1);
    }
    return Py_BuildValue("(nI)", got, priority);
slow:
    return uq_fall_back((PyObject *)self, "_receive_into_slow", args, nargs, kwnames);
}

static PyMethodDef core_methods[] = {
    {"send", (PyCFunction)(void (*)(void))core_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, message, /, *, priority=0, timeout=None)\n--\n\n"
     "Put ``message`` (any bytes-like object) on the queue with ``priority``.\n\n"
     "Blocks while the queue is full: ``timeout=None`` waits, ``0`` tries once,\n"
     "a positive number of seconds waits at most that long.\n\n"
     "Raises:\n"
     "    MessageTooLarge: larger than ``max_message_size`` (nothing is sent).\n"
     "    WouldBlock: ``timeout=0`` and the queue is full.\n"
     "    TimeoutExpired: still full when ``timeout`` ran out.\n"},
    {"receive", (PyCFunction)(void (*)(void))core_receive, METH_FASTCALL | METH_KEYWORDS,
     "receive($self, /, *, timeout=None)\n--\n\n"
     "Take the oldest message of the highest priority: ``Message(data, priority)``.\n\n"
     "Raises:\n"
     "    WouldBlock: ``timeout=0`` and the queue is empty.\n"
     "    TimeoutExpired: still empty when ``timeout`` ran out.\n"},
    {"receive_into", (PyCFunction)(void (*)(void))core_receive_into,
     METH_FASTCALL | METH_KEYWORDS,
     "receive_into($self, buffer, /, *, timeout=None)\n--\n\n"
     "Receive the next message into ``buffer``; return ``(nbytes, priority)``.\n\n"
     "``buffer`` is a writable bytes-like object of at least ``max_message_size``\n"
     "bytes (the kernel requires room for the largest message the queue accepts).\n\n"
     "Raises:\n"
     "    MessageTooLarge: ``buffer`` is smaller than ``max_message_size`` (no\n"
     "        message is taken).\n"
     "    WouldBlock: ``timeout=0`` and the queue is empty.\n"
     "    TimeoutExpired: still empty when ``timeout`` ran out.\n"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_mqd", T_INT, offsetof(PosixQueueCore, mqd), 0, "the descriptor (-1 once closed)"},
    {"_limit", T_PYSSIZET, offsetof(PosixQueueCore, limit), 0, "max_message_size"},
    {"_label", T_OBJECT, offsetof(PosixQueueCore, label), 0, "the name, for errors"},
    {"_result_type", T_OBJECT, offsetof(PosixQueueCore, result_type), 0,
     "the named tuple receive() returns"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PosixQueueCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "unixipc._native.PosixQueueCore",
    .tp_basicsize = sizeof(PosixQueueCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The C base of PosixMessageQueue: its send and receive fast paths (private).",
    .tp_new = core_new,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_methods = core_methods,
    .tp_members = core_members,
};

/* ---- notification ------------------------------------------------------------ */

/* Runs in a thread that glibc starts for SIGEV_THREAD. It never touches Python:
 * it writes the 4-byte token into the dispatcher's pipe, whose Python thread
 * runs the callback. Both numbers travel in the sigval, so nothing is
 * allocated that a cancelled registration could leak. */
static void notify_by_pipe(union sigval value)
{
    uint64_t packed = (uint64_t)(uintptr_t)value.sival_ptr;
    int fd = (int)(uint32_t)(packed & 0xffffffffu);
    uint32_t token = (uint32_t)(packed >> 32);
    ssize_t written;
    do {
        written = write(fd, &token, sizeof token); /* < PIPE_BUF: atomic */
    } while (written < 0 && errno == EINTR);
}

/* mq_notify_pipe(mqd, pipe_fd, token): on arrival, write token into pipe_fd. */
static PyObject *native_mq_notify_pipe(PyObject *Py_UNUSED(self), PyObject *args)
{
    long mqd;
    int fd;
    unsigned int token;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "liI|z:mq_notify_pipe", &mqd, &fd, &token, &name)) {
        return NULL;
    }
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD;
    event.sigev_notify_function = notify_by_pipe;
    event.sigev_value.sival_ptr =
        (void *)(uintptr_t)(((uint64_t)token << 32) | (uint64_t)(uint32_t)fd);
    if (mq_notify((mqd_t)mqd, &event) != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

/* mq_notify_signal(mqd, signo): on arrival, send signo to this process;
 * signo 0 cancels this process's registration. */
static PyObject *native_mq_notify_signal(PyObject *Py_UNUSED(self), PyObject *args)
{
    long mqd;
    int signo;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "li|z:mq_notify_signal", &mqd, &signo, &name)) {
        return NULL;
    }
    int rc;
    if (signo == 0) {
        rc = mq_notify((mqd_t)mqd, NULL);
    } else {
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_SIGNAL;
        event.sigev_signo = signo;
        event.sigev_value.sival_int = (int)mqd;
        rc = mq_notify((mqd_t)mqd, &event);
    }
    if (rc != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

static PyMethodDef posix_mq_methods[] = {
    {"mq_open", native_mq_open, METH_VARARGS,
     "mq_open(name, flags, mode, max_messages, max_message_size) -> mqd\n\n"
     "Open or create a POSIX message queue; max_messages < 0 uses the system defaults."},
    {"mq_close", native_mq_close, METH_O, "mq_close(mqd) -> None"},
    {"mq_unlink", native_mq_unlink, METH_VARARGS,
     "mq_unlink(name) -> None\n\nRemove a POSIX message queue's name."},
    {"mq_getattr", native_mq_getattr, METH_O,
     "mq_getattr(mqd) -> (flags, max_messages, max_message_size, current_messages)"},
    {"mq_send", (PyCFunction)(void (*)(void))native_mq_send, METH_FASTCALL,
     "mq_send(mqd, message, priority, deadline_ns, name, max_size) -> None | int\n\n"
     "Send; ETIMEDOUT once the monotonic deadline passes (-1: block). A message\n"
     "longer than max_size is not sent: its length is returned instead."},
    {"mq_receive", (PyCFunction)(void (*)(void))native_mq_receive, METH_FASTCALL,
     "mq_receive(mqd, size, deadline_ns, name, result_type) -> result_type(data, priority)\n\n"
     "Receive the oldest message of the highest priority; size must be the queue's\n"
     "message size."},
    {"mq_receive_into", (PyCFunction)(void (*)(void))native_mq_receive_into, METH_FASTCALL,
     "mq_receive_into(mqd, buffer, deadline_ns, name) -> (nbytes, priority)"},
    {"mq_notify_pipe", native_mq_notify_pipe, METH_VARARGS,
     "mq_notify_pipe(mqd, pipe_fd, token, name=None) -> None\n\n"
     "Register for notification; on arrival a C thread writes the 4-byte token into pipe_fd."},
    {"mq_notify_signal", native_mq_notify_signal, METH_VARARGS,
     "mq_notify_signal(mqd, signo, name=None) -> None\n\n"
     "Register for notification by signal; signo 0 removes the registration."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_posix_mq(PyObject *module)
{
    if (PyModule_AddFunctions(module, posix_mq_methods) < 0) {
        return -1;
    }
    if (PyType_Ready(&PosixQueueCoreType) < 0 ||
        PyModule_AddObjectRef(module, "PosixQueueCore", (PyObject *)&PosixQueueCoreType) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "MQ_PRIO_MAX", MQ_PRIO_MAX);
}
