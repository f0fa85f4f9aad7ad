/* POSIX message queues.
 * System calls: mq_open, mq_close, mq_unlink, mq_getattr, mq_send, mq_receive,
 * mq_timedsend, mq_timedreceive, ppoll, mq_notify.
 *
 * On Linux an mqd_t is a file descriptor, so the Python layer handles it as an
 * int. Deadlines are absolute CLOCK_MONOTONIC ns (-1: none). mq_timed* only
 * take CLOCK_REALTIME deadlines, which move when the wall clock is stepped, so
 * a timed call never gives them one: it tries with a time already past (the
 * kernel then fails at once with ETIMEDOUT instead of sleeping) and, while the
 * queue is full (empty), sleeps in ppoll(2) on the queue's descriptor, whose
 * relative timeout the kernel measures on the monotonic clock. A call that can
 * go ahead at once is one system call, as before.
 */
#include "common.h"
#include "queue_fastpath.h"

#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mq_open(name, flags, mode, max_messages, max_message_size, created=None)
 * With a list `created`, the new descriptor is appended to it before returning,
 * so that a creator interrupted as the call returns still finds it. */
static PyObject *native_mq_open(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int flags, mode;
    long max_messages, max_message_size;
    PyObject *created = NULL;
    if (!PyArg_ParseTuple(args, "siill|O!:mq_open", &name, &flags, &mode, &max_messages,
                          &max_message_size, &PyList_Type, &created)) {
        return NULL;
    }
    if (mode < 0 || mode > 07777) {
        PyErr_SetString(PyExc_OverflowError, "mode out of range");
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
            if (created != NULL && unixipc_note_created(created, (long)mqd) < 0) {
                mq_close(mqd);
                return NULL;
            }
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

static int parse_mqd(PyObject *arg, mqd_t *out)
{
    int value;
    if (uq_parse_int(arg, 0, INT_MAX, &value) < 0) {
        return -1;
    }
    *out = (mqd_t)value;
    return 0;
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

/* ---- one timed operation ----------------------------------------------------- */

/* A send or a receive; `timed` is the mq_timed* call, `plain` the blocking one. */
typedef struct {
    mqd_t mqd;
    char *buffer;
    size_t size;
    unsigned int priority; /* in for a send, out for a receive */
    short ready;           /* POLLOUT for a send, POLLIN for a receive */
} mq_call;

static ssize_t call_once(mq_call *call, const struct timespec *at)
{
    if (call->ready == POLLOUT) {
        return at == NULL ? mq_send(call->mqd, call->buffer, call->size, call->priority)
                          : mq_timedsend(call->mqd, call->buffer, call->size, call->priority, at);
    }
    return at == NULL ? mq_receive(call->mqd, call->buffer, call->size, &call->priority)
                      : mq_timedreceive(call->mqd, call->buffer, call->size, &call->priority, at);
}

/* A time already past: the kernel gives up at once instead of sleeping. */
static const struct timespec PAST = {0, 0};

/* Run the call under the deadline, retrying after EINTR (PEP 475). Returns
 * what it returned (>= 0), or -1 with errno set (ETIMEDOUT once the deadline
 * passed), or -2 with a Python exception from a signal handler. */
static ssize_t call_with_deadline(mq_call *call, int64_t deadline)
{
    ssize_t result;
    int saved_errno;
    for (;;) {
        if (deadline == UNIXIPC_NO_DEADLINE) {
            Py_BEGIN_ALLOW_THREADS
            result = call_once(call, NULL);
            saved_errno = errno;
            Py_END_ALLOW_THREADS
        } else {
            result = call_once(call, &PAST); /* never sleeps: the GIL can stay */
            saved_errno = errno;
            if (result < 0 && saved_errno == ETIMEDOUT && !unixipc_deadline_passed(deadline)) {
                struct pollfd wanted = {call->mqd, call->ready, 0};
                struct timespec left;
                unixipc_time_left(deadline, &left);
                Py_BEGIN_ALLOW_THREADS
                result = ppoll(&wanted, 1, &left, NULL);
                saved_errno = errno;
                Py_END_ALLOW_THREADS
                if (result >= 0) {
                    continue; /* ready (or not, if another process was quicker): try again */
                }
            }
        }
        if (result >= 0 || saved_errno != EINTR) {
            break;
        }
        if (unixipc_after_eintr() < 0) {
            return -2;
        }
    }
    errno = saved_errno;
    return result;
}

/* Messages up to this size are received on the stack and copied into a bytes
 * object of their exact length; larger queues receive straight into a bytes
 * object of the queue's message size, which is then shrunk. */
#define STACK_RECEIVE_MAX 8192

/* A new bytes object holding the next message; NULL with *failure set to
 * errno, or to -2 when a Python exception is set. */
static PyObject *receive_bytes(mq_call *call, int64_t deadline, int *failure)
{
    char on_stack[STACK_RECEIVE_MAX];
    PyObject *data = NULL;
    *failure = -2;
    if (call->size <= STACK_RECEIVE_MAX) {
        call->buffer = on_stack;
    } else {
        data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)call->size);
        if (data == NULL) {
            return NULL;
        }
        call->buffer = PyBytes_AS_STRING(data);
    }
    ssize_t got = call_with_deadline(call, deadline);
    if (got < 0) {
        *failure = got == -2 ? -2 : errno;
        Py_XDECREF(data);
        return NULL;
    }
    if (data == NULL) {
        return PyBytes_FromStringAndSize(on_stack, got);
    }
    if ((size_t)got != call->size && _PyBytes_Resize(&data, got) < 0) {
        return NULL;
    }
    return data;
}

/* ---- PosixMessageQueue's C base: its send and receive ------------------------ */

static int read_limits(int handle, Py_ssize_t *limit, Py_ssize_t *send_limit)
{
    struct mq_attr attr;
    if (mq_getattr((mqd_t)handle, &attr) != 0) {
        return -1;
    }
    if (attr.mq_msgsize < 0 || attr.mq_msgsize > PY_SSIZE_T_MAX) {
        errno = EINVAL;
        return -1;
    }
    *limit = *send_limit = (Py_ssize_t)attr.mq_msgsize;
    return 0;
}

static PyObject *core_attach(uq_core *self, PyObject *const *args, Py_ssize_t nargs)
{
    return uq_attach(self, args, nargs, read_limits);
}

static const char *const send_keywords[] = {"priority", "timeout"};
static const char *const timeout_keyword[] = {"timeout"};

static PyObject *send_impl(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, const char *slow)
{
    PyObject *values[2] = {NULL, Py_None};
    long priority = 0;
    int64_t deadline;
    int zero;
    Py_buffer view;
    if (nargs != 1 || uq_keywords(kwnames, args + nargs, send_keywords, values, 2) < 0 ||
        !uq_deadline(values[1], &deadline, &zero) ||
        (values[0] != NULL && !uq_plain_long(values[0], 0, MQ_PRIO_MAX - 1, &priority))) {
        goto slow;
    }
    if (!uq_message(self, args[0], &view)) {
        goto slow;
    }
    mq_call call = {(mqd_t)self->handle, view.buf, (size_t)view.len, (unsigned int)priority,
                    POLLOUT};
    ssize_t rc = call_with_deadline(&call, deadline);
    int error = rc == -2 ? -2 : errno;
    PyBuffer_Release(&view);
    if (rc < 0) {
        return uq_raise_error(self, error, "send to", values[1], -1);
    }
    Py_RETURN_NONE;
slow:
    return uq_fall_back((PyObject *)self, slow, args, nargs, kwnames);
}

static PyObject *receive_impl(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames, const char *slow)
{
    PyObject *timeout = Py_None;
    int64_t deadline;
    int zero, failure;
    if (nargs != 0 || self->result_type == NULL ||
        uq_keywords(kwnames, args + nargs, timeout_keyword, &timeout, 1) < 0 ||
        !uq_deadline(timeout, &deadline, &zero)) {
        return uq_fall_back((PyObject *)self, slow, args, nargs, kwnames);
    }
    mq_call call = {(mqd_t)self->handle, NULL, (size_t)self->limit, 0, POLLIN};
    PyObject *data = receive_bytes(&call, deadline, &failure);
    if (data == NULL) {
        return uq_raise_error(self, failure, "receive from", timeout, -1);
    }
    return uq_pair(self->result_type, data, PyLong_FromUnsignedLong(call.priority));
}

static PyObject *receive_into_impl(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames, const char *slow)
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
    mq_call call = {(mqd_t)self->handle, view.buf, (size_t)view.len, 0, POLLIN};
    ssize_t got = call_with_deadline(&call, deadline);
    int error = got == -2 ? -2 : errno;
    PyBuffer_Release(&view);
    if (got < 0) {
        return uq_raise_error(self, error, "receive from", timeout, -1);
    }
    return Py_BuildValue("(nI)", (Py_ssize_t)got, call.priority);
slow:
    return uq_fall_back((PyObject *)self, slow, args, nargs, kwnames);
}

UQ_ENTRIES(send)
UQ_ENTRIES(receive)
UQ_ENTRIES(receive_into)

static PyMethodDef core_methods[] = {
    UQ_METHOD_ENTRIES(send, "message, /, *, priority=0, timeout=None"),
    UQ_METHOD_ENTRIES(receive, "/, *, timeout=None"),
    UQ_METHOD_ENTRIES(receive_into, "buffer, /, *, timeout=None"),
    UQ_CORE_METHODS(core_attach),
    {NULL, NULL, 0, NULL},
};

UQ_CORE_TYPE(PosixQueueCoreType, "PosixQueueCore", core_methods);

/* ---- public methods that are C methods of a private base -------------------- */

/* A queue's send/receive are C methods of its private C base; the public class
 * shows them as its own through this small descriptor, which carries the
 * signature and docstring written in Python (help() and inspect read those)
 * and forwards calls to the C method at the cost of one indirect call. It is a
 * method descriptor (Py_TPFLAGS_METHOD_DESCRIPTOR), so `queue.send(...)` makes
 * no bound method object. */
typedef struct {
    PyObject_HEAD
    PyObject *target; /* the C base's method descriptor */
    PyObject *dict;   /* __doc__, __name__, __signature__... set from Python */
    vectorcallfunc vectorcall;
} PublicMethod;

static PyObject *public_method_call(PublicMethod *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames)
{
    return PyObject_Vectorcall(self->target, args, nargsf, kwnames);
}

static PyObject *public_method_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *target;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) ||
        !PyArg_ParseTuple(args, "O:PublicMethod", &target)) {
        PyErr_SetString(PyExc_TypeError, "PublicMethod(c_method_descriptor)");
        return NULL;
    }
    if (!PyObject_TypeCheck(target, &PyMethodDescr_Type)) {
        PyErr_SetString(PyExc_TypeError, "PublicMethod wraps a C method descriptor");
        return NULL;
    }
    PublicMethod *self = (PublicMethod *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(target);
    self->target = target;
    self->vectorcall = (vectorcallfunc)public_method_call;
    return (PyObject *)self;
}

static PyObject *public_method_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static int public_method_traverse(PublicMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(self->target);
    Py_VISIT(self->dict);
    return 0;
}

static int public_method_clear(PublicMethod *self)
{
    Py_CLEAR(self->target);
    Py_CLEAR(self->dict);
    return 0;
}

static void public_method_dealloc(PublicMethod *self)
{
    PyObject_GC_UnTrack(self);
    public_method_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject PublicMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "unixipc._native.PublicMethod",
    .tp_basicsize = sizeof(PublicMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR |
                Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = NULL, /* each instance has its own __doc__ */
    .tp_new = public_method_new,
    .tp_dealloc = (destructor)public_method_dealloc,
    .tp_traverse = (traverseproc)public_method_traverse,
    .tp_clear = (inquiry)public_method_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(PublicMethod, vectorcall),
    .tp_descr_get = public_method_get,
    .tp_dictoffset = offsetof(PublicMethod, dict),
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
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
    int mqd, fd;
    long long token;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "iiL|z:mq_notify_pipe", &mqd, &fd, &token, &name)) {
        return NULL;
    }
    if (token < 0 || token > (long long)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "token must fit in 32 bits");
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

/* mq_notify_signal(mqd, signo, value): on arrival, send signo carrying the
 * int value to this process; signo 0 cancels this process's registration. */
static PyObject *native_mq_notify_signal(PyObject *Py_UNUSED(self), PyObject *args)
{
    int mqd, signo, value;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "iii|z:mq_notify_signal", &mqd, &signo, &value, &name)) {
        return NULL;
    }
    int rc;
    if (signo == 0) {
        rc = mq_notify((mqd_t)mqd, NULL);
    } else {
        struct sigevent event;
        memset(&event, 0, sizeof event); /* the kernel copies the whole sigval union */
        event.sigev_notify = SIGEV_SIGNAL;
        event.sigev_signo = signo;
        event.sigev_value.sival_int = value;
        rc = mq_notify((mqd_t)mqd, &event);
    }
    if (rc != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

static PyMethodDef posix_mq_methods[] = {
    {"mq_open", native_mq_open, METH_VARARGS,
     "mq_open(name, flags, mode, max_messages, max_message_size, created=None) -> mqd\n\n"
     "Open or create a POSIX message queue; max_messages < 0 uses the system defaults;\n"
     "the new descriptor is also appended to the list `created`."},
    {"mq_close", native_mq_close, METH_O, "mq_close(mqd) -> None"},
    {"mq_unlink", native_mq_unlink, METH_VARARGS,
     "mq_unlink(name) -> None\n\nRemove a POSIX message queue's name."},
    {"mq_getattr", native_mq_getattr, METH_O,
     "mq_getattr(mqd) -> (flags, max_messages, max_message_size, current_messages)"},
    {"mq_notify_pipe", native_mq_notify_pipe, METH_VARARGS,
     "mq_notify_pipe(mqd, pipe_fd, token, name=None) -> None\n\n"
     "Register for notification; on arrival a C thread writes the 4-byte token into pipe_fd."},
    {"mq_notify_signal", native_mq_notify_signal, METH_VARARGS,
     "mq_notify_signal(mqd, signo, value, name=None) -> None\n\n"
     "Register for notification by signo carrying value; signo 0 removes the registration."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_posix_mq(PyObject *module)
{
    if (PyModule_AddFunctions(module, posix_mq_methods) < 0) {
        return -1;
    }
    if (PyType_Ready(&PosixQueueCoreType) < 0 ||
        PyModule_AddObjectRef(module, "PosixQueueCore", (PyObject *)&PosixQueueCoreType) < 0 ||
        PyType_Ready(&PublicMethodType) < 0 ||
        PyModule_AddObjectRef(module, "PublicMethod", (PyObject *)&PublicMethodType) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "MQ_PRIO_MAX", MQ_PRIO_MAX);
}
