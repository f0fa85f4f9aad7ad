/* System V message queues and ftok.
 * System calls: msgget, msgsnd, msgrcv, msgctl (IPC_STAT, IPC_SET, IPC_RMID);
 * library: ftok.
 *
 * The kernel has no timed msgsnd/msgrcv: a deadline is enforced by
 * unixipc_call_with_deadline (common.c), which interrupts the sleeping call
 * with a per-thread timer signal; timeout 0 is IPC_NOWAIT, chosen by Python.
 */
#include "common.h"
#include "queue_fastpath.h"

#include <stddef.h>
#include <structmember.h>

#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/stat.h>

/* Messages up to this size go through a buffer on the stack (the common case:
 * Linux's default msgmax is 8192); larger ones through malloc. */
#define STACK_MESSAGE_MAX 8192

typedef struct {
    long mtype;
    char mtext[STACK_MESSAGE_MAX];
} stack_message;

static PyObject *raise_error_named(int error, PyObject *name)
{
    const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (text == NULL) {
        PyErr_Clear();
    }
    errno = error;
    return unixipc_raise_errno(text);
}

static int parse_int(PyObject *arg, int *out)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < INT_MIN || value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value does not fit in a C int");
        return -1;
    }
    *out = (int)value;
    return 0;
}

static PyObject *native_ftok(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *path_object;
    int proj_id;
    if (!PyArg_ParseTuple(args, "O&i:ftok", PyUnicode_FSConverter, &path_object, &proj_id)) {
        return NULL;
    }
    const char *path = PyBytes_AS_STRING(path_object);
    key_t key = ftok(path, proj_id);
    if (key == (key_t)-1) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_object);
        Py_DECREF(path_object);
        return NULL;
    }
    Py_DECREF(path_object);
    return PyLong_FromLong((long)key);
}

static PyObject *native_msgget(PyObject *Py_UNUSED(self), PyObject *args)
{
    int key, flags;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "ii|z:msgget", &key, &flags, &name)) {
        return NULL;
    }
    int id = msgget((key_t)key, flags);
    if (id < 0) {
        return unixipc_raise_errno(name);
    }
    return PyLong_FromLong(id);
}

typedef struct {
    int msqid;
    void *message; /* struct msgbuf: long mtype, then the text */
    size_t size;
    long mtype;
    int flags;
} msg_call;

static long do_msgsnd(void *arg)
{
    msg_call *call = arg;
    return (long)msgsnd(call->msqid, call->message, call->size, call->flags);
}

static long do_msgrcv(void *arg)
{
    msg_call *call = arg;
    return (long)msgrcv(call->msqid, call->message, call->size, call->mtype, call->flags);
}

/* A message type as a C long; a bool raises TypeError, and for sending a type
 * below 1 raises OverflowError (the Python layer re-validates to explain). */
static int parse_mtype(PyObject *arg, long minimum, long *out)
{
    if (PyBool_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "type must be an int, not bool");
        return -1;
    }
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < minimum) {
        PyErr_SetString(PyExc_OverflowError, "message type out of range");
        return -1;
    }
    *out = value;
    return 0;
}

/* Send `length` bytes as `mtype` under the deadline. Returns 0, -1 with errno
 * set, or -2 with a Python exception set. */
static int send_message(int msqid, const void *data, Py_ssize_t length, long mtype, int flags,
                        int64_t deadline)
{
    stack_message on_stack;
    stack_message *message = &on_stack;
    if (length > STACK_MESSAGE_MAX) {
        message = malloc(sizeof(long) + (size_t)length);
        if (message == NULL) {
            PyErr_NoMemory();
            return -2;
        }
    }
    message->mtype = mtype;
    memcpy(message->mtext, data, (size_t)length);
    msg_call call = {msqid, message, (size_t)length, mtype, flags};
    long rc = unixipc_call_with_deadline(do_msgsnd, &call, deadline);
    int error = errno;
    if (message != &on_stack) {
        free(message);
    }
    errno = error;
    return rc < 0 ? (int)rc : 0;
}

/* msgsnd(msqid, message, mtype, flags, deadline_ns, name, max_size) -> None | int
 * Returns the message's length, sending nothing, when it exceeds max_size. */
static PyObject *native_msgsnd(PyObject *Py_UNUSED(self), PyObject *const *args,
                               Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "msgsnd(msqid, message, mtype, flags, deadline_ns, name, max_size)");
        return NULL;
    }
    int msqid, flags;
    long mtype;
    int64_t deadline;
    if (parse_int(args[0], &msqid) < 0 || parse_int(args[3], &flags) < 0 ||
        unixipc_parse_deadline(args[4], &deadline) < 0 || parse_mtype(args[2], 1, &mtype) < 0) {
        return NULL;
    }
    Py_ssize_t max_size = PyLong_AsSsize_t(args[6]);
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
    int rc = send_message(msqid, view.buf, view.len, mtype, flags, deadline);
    int error = errno;
    PyBuffer_Release(&view);
    if (rc < 0) {
        return rc == -2 ? NULL : raise_error_named(error, args[5]);
    }
    Py_RETURN_NONE;
}

/* Receive up to `size` bytes into a temporary struct msgbuf, then let `deliver`
 * copy the text where it belongs. Returns what deliver returns; or NULL with
 * *failure = errno, or -2 when a Python exception is set. */
typedef PyObject *(*deliver_message)(const char *text, Py_ssize_t length, long mtype,
                                     void *context);

static PyObject *receive_message(int msqid, Py_ssize_t size, long mtype, int flags,
                                 int64_t deadline, deliver_message deliver, void *context,
                                 int *failure)
{
    *failure = -2;
    stack_message on_stack;
    stack_message *message = &on_stack;
    if (size > STACK_MESSAGE_MAX) {
        message = malloc(sizeof(long) + (size_t)size);
        if (message == NULL) {
            return PyErr_NoMemory();
        }
    }
    msg_call call = {msqid, message, (size_t)size, mtype, flags};
    long got = unixipc_call_with_deadline(do_msgrcv, &call, deadline);
    PyObject *result = NULL;
    if (got == -1) {
        *failure = errno;
    } else if (got >= 0) {
        result = deliver(message->mtext, (Py_ssize_t)got, message->mtype, context);
    }
    if (message != &on_stack) {
        free(message);
    }
    return result;
}

static PyObject *deliver_as_bytes(const char *text, Py_ssize_t length, long mtype, void *context)
{
    return uq_pair((PyObject *)context, PyBytes_FromStringAndSize(text, length),
                   PyLong_FromLong(mtype));
}

static PyObject *deliver_into(const char *text, Py_ssize_t length, long mtype, void *context)
{
    Py_buffer *view = context;
    memcpy(view->buf, text, (size_t)length);
    return Py_BuildValue("(nl)", length, mtype);
}

static int parse_receive_args(PyObject *const *args, int *msqid, long *mtype, int *flags,
                              int64_t *deadline)
{
    return parse_int(args[0], msqid) < 0 || parse_int(args[3], flags) < 0 ||
                   unixipc_parse_deadline(args[4], deadline) < 0 ||
                   parse_mtype(args[2], -LONG_MAX, mtype) < 0
               ? -1
               : 0;
}

/* msgrcv(msqid, size, mtype, flags, deadline_ns, name, result_type)
 *     -> result_type(data, mtype) */
static PyObject *native_msgrcv(PyObject *Py_UNUSED(self), PyObject *const *args,
                               Py_ssize_t nargs)
{
    if (nargs != 7 || !PyType_Check(args[6]) ||
        !PyType_IsSubtype((PyTypeObject *)args[6], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "msgrcv(msqid, size, mtype, flags, deadline_ns, name, "
                                         "result_type: tuple subclass)");
        return NULL;
    }
    int msqid, flags, failure;
    long mtype;
    int64_t deadline;
    if (parse_receive_args(args, &msqid, &mtype, &flags, &deadline) < 0) {
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        }
        return NULL;
    }
    PyObject *result =
        receive_message(msqid, size, mtype, flags, deadline, deliver_as_bytes, args[6], &failure);
    if (result == NULL && failure != -2) {
        return raise_error_named(failure, args[5]);
    }
    return result;
}

/* msgrcv_into(msqid, buffer, mtype, flags, deadline_ns, name) -> (nbytes, mtype) */
static PyObject *native_msgrcv_into(PyObject *Py_UNUSED(self), PyObject *const *args,
                                    Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "msgrcv_into(msqid, buffer, mtype, flags, deadline_ns, name)");
        return NULL;
    }
    int msqid, flags, failure;
    long mtype;
    int64_t deadline;
    if (parse_receive_args(args, &msqid, &mtype, &flags, &deadline) < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    PyObject *result =
        receive_message(msqid, view.len, mtype, flags, deadline, deliver_into, &view, &failure);
    PyBuffer_Release(&view);
    if (result == NULL && failure != -2) {
        return raise_error_named(failure, args[5]);
    }
    return result;
}

/* ---- the fast path: methods of SysVMessageQueue's C base --------------------- */

typedef struct {
    PyObject_HEAD
    int msqid;             /* -1 once closed */
    Py_ssize_t max_size;   /* msgmax: the room receive() makes */
    Py_ssize_t send_limit; /* min(msgmax, the queue's max_bytes) */
    PyObject *label;       /* the key or id, for OSError */
    PyObject *result_type; /* SysVMessage */
} SysVQueueCore;

static PyObject *core_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                          PyObject *Py_UNUSED(kwargs))
{
    SysVQueueCore *self = (SysVQueueCore *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->msqid = -1;
    }
    return (PyObject *)self;
}

static void core_dealloc(SysVQueueCore *self)
{
    Py_CLEAR(self->label);
    Py_CLEAR(self->result_type);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A plain int message type within [minimum, LONG_MAX]; 0 otherwise. */
static int plain_mtype(PyObject *arg, long minimum, long *out)
{
    if (!PyLong_CheckExact(arg)) {
        return 0;
    }
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (value < minimum) {
        return 0;
    }
    *out = value;
    return 1;
}

/* flags and deadline from the timeout: 0 is IPC_NOWAIT. 0 when not plain. */
static int plain_timeout(PyObject *timeout, int *flags, int64_t *deadline)
{
    int zero;
    if (!uq_deadline(timeout, deadline, &zero)) {
        return 0;
    }
    if (zero) {
        *flags |= IPC_NOWAIT;
        *deadline = UNIXIPC_NO_DEADLINE;
    }
    return 1;
}

/* type, timeout, truncate, except_type of receive and receive_into; 0 when
 * anything is not plainly valid. */
static int plain_receive_options(PyObject **values, long *mtype, int *flags, int64_t *deadline)
{
    *flags = 0;
    if (!plain_mtype(values[0], -LONG_MAX, mtype) || !plain_timeout(values[1], flags, deadline)) {
        return 0;
    }
    if (values[2] == Py_True) {
        *flags |= MSG_NOERROR;
    } else if (values[2] != Py_False) {
        return 0;
    }
    if (values[3] == Py_True) {
#ifdef MSG_EXCEPT
        if (*mtype <= 0) {
            return 0;
        }
        *flags |= MSG_EXCEPT;
#else
        return 0;
#endif
    } else if (values[3] != Py_False) {
        return 0;
    }
    return 1;
}

static const char *const send_keywords[] = {"type", "timeout"};
static const char *const receive_keywords[] = {"type", "timeout", "truncate", "except_type"};

static PyObject *core_send(SysVQueueCore *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *values[2] = {NULL, Py_None};
    long mtype = 1;
    int flags = 0;
    int64_t deadline;
    Py_buffer view;
    if (nargs != 1 || uq_keywords(kwnames, args + nargs, send_keywords, values, 2) < 0 ||
        (values[0] != NULL && !plain_mtype(values[0], 1, &mtype)) ||
        !plain_timeout(values[1], &flags, &deadline)) {
        goto slow;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        goto slow;
    }
    if (view.len > self->send_limit) {
        PyBuffer_Release(&view);
        goto slow;
    }
    int rc = send_message(self->msqid, view.buf, view.len, mtype, flags, deadline);
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

static PyObject *zero_object(void)
{
    static PyObject *zero = NULL;
    if (zero == NULL) {
        zero = PyLong_FromLong(0);
    }
    return zero;
}

static PyObject *core_receive(SysVQueueCore *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *values[4] = {zero_object(), Py_None, Py_False, Py_False};
    long mtype;
    int flags, failure;
    int64_t deadline;
    if (nargs != 0 || self->result_type == NULL || values[0] == NULL ||
        uq_keywords(kwnames, args + nargs, receive_keywords, values, 4) < 0 ||
        !plain_receive_options(values, &mtype, &flags, &deadline)) {
        return uq_fall_back((PyObject *)self, "_receive_slow", args, nargs, kwnames);
    }
    PyObject *result = receive_message(self->msqid, self->max_size, mtype, flags, deadline,
                                       deliver_as_bytes, self->result_type, &failure);
    if (result == NULL && failure != -2) {
        return uq_raise_error((PyObject *)self, failure, self->label, "receive from", values[1],
                              self->max_size);
    }
    return result;
}

static PyObject *core_receive_into(SysVQueueCore *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *values[4] = {zero_object(), Py_None, Py_False, Py_False};
    long mtype;
    int flags, failure;
    int64_t deadline;
    Py_buffer view;
    if (nargs != 1 || values[0] == NULL ||
        uq_keywords(kwnames, args + nargs, receive_keywords, values, 4) < 0 ||
        !plain_receive_options(values, &mtype, &flags, &deadline)) {
        goto slow;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        goto slow;
    }
    Py_ssize_t room = view.len;
    PyObject *result = receive_message(self->msqid, room, mtype, flags, deadline, deliver_into,
                                       &view, &failure);
    PyBuffer_Release(&view);
    if (result == NULL && failure != -2) {
        return uq_raise_error((PyObject *)self, failure, self->label, "receive from", values[1],
                              room);
    }
    return result;
slow:
    return uq_fall_back((PyObject *)self, "_receive_into_slow", args, nargs, kwnames);
}

static PyMethodDef core_methods[] = {
    {"send", (PyCFunction)(void (*)(void))core_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, message, /, *, type=1, timeout=None)\n--\n\n"
     "Put ``message`` (any bytes-like object) on the queue as ``type`` (> 0).\n\n"
     "Blocks while the queue holds its ``max_bytes``: ``timeout=None`` waits,\n"
     "``0`` tries once, a positive number of seconds waits at most that long.\n\n"
     "Raises:\n"
     "    MessageTooLarge: larger than the kernel's msgmax or the queue's\n"
     "        ``max_bytes`` (nothing is sent; msgsnd would wait forever).\n"
     "    WouldBlock: ``timeout=0`` and the queue is full.\n"
     "    TimeoutExpired: still full when ``timeout`` ran out.\n"
     "    ResourceNotFoundError: the queue was removed (also while waiting).\n"},
    {"receive", (PyCFunction)(void (*)(void))core_receive, METH_FASTCALL | METH_KEYWORDS,
     "receive($self, /, *, type=0, timeout=None, truncate=False, except_type=False)\n--\n\n"
     "Take a message: ``SysVMessage(data, type)``.\n\n"
     "``type`` 0 takes the oldest message; > 0 the oldest of that type (of any\n"
     "other type with ``except_type``, MSG_EXCEPT); < 0 the oldest of the lowest\n"
     "type <= |type|. A message longer than the kernel's msgmax (possible only if\n"
     "msgmax was lowered) is cut to it with ``truncate=True`` (MSG_NOERROR);\n"
     "without it, MessageTooLarge is raised and the message stays queued.\n\n"
     "Raises:\n"
     "    WouldBlock: ``timeout=0`` and no matching message.\n"
     "    TimeoutExpired: no matching message when ``timeout`` ran out.\n"
     "    MessageTooLarge: see above.\n"
     "    ResourceNotFoundError: the queue was removed (also while waiting).\n"},
    {"receive_into", (PyCFunction)(void (*)(void))core_receive_into,
     METH_FASTCALL | METH_KEYWORDS,
     "receive_into($self, buffer, /, *, type=0, timeout=None, truncate=False, "
     "except_type=False)\n--\n\n"
     "Receive the next message into ``buffer``; return ``(nbytes, type)``.\n\n"
     "``type``, ``timeout`` and ``except_type`` as in ``receive``. A message longer\n"
     "than ``buffer`` is cut to fit with ``truncate=True``; without it,\n"
     "MessageTooLarge is raised and the message stays queued.\n\n"
     "Raises:\n"
     "    MessageTooLarge: the message does not fit and ``truncate`` is False.\n"
     "    WouldBlock: ``timeout=0`` and no matching message.\n"
     "    TimeoutExpired: no matching message when ``timeout`` ran out.\n"
     "    ResourceNotFoundError: the queue was removed (also while waiting).\n"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_id", T_INT, offsetof(SysVQueueCore, msqid), 0, "the queue id (-1 once closed)"},
    {"_max_size", T_PYSSIZET, offsetof(SysVQueueCore, max_size), 0, "msgmax"},
    {"_send_limit", T_PYSSIZET, offsetof(SysVQueueCore, send_limit), 0,
     "the largest message send() takes"},
    {"_label", T_OBJECT, offsetof(SysVQueueCore, label), 0, "the key or id, for errors"},
    {"_result_type", T_OBJECT, offsetof(SysVQueueCore, result_type), 0,
     "the named tuple receive() returns"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SysVQueueCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "unixipc._native.SysVQueueCore",
    .tp_basicsize = sizeof(SysVQueueCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The C base of SysVMessageQueue: its send and receive fast paths (private).",
    .tp_new = core_new,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_methods = core_methods,
    .tp_members = core_members,
};

static PyObject *native_msgctl_stat(PyObject *Py_UNUSED(self), PyObject *args)
{
    int msqid;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "i|z:msgctl_stat", &msqid, &name)) {
        return NULL;
    }
    struct msqid_ds status;
    if (msgctl(msqid, IPC_STAT, &status) != 0) {
        return unixipc_raise_errno(name);
    }
    return Py_BuildValue(
        "{s:i,s:I,s:I,s:I,s:I,s:I,s:k,s:k,s:k,s:i,s:i,s:L,s:L,s:L}", "key",
        (int)status.msg_perm.__key, "uid", (unsigned int)status.msg_perm.uid, "gid",
        (unsigned int)status.msg_perm.gid, "creator_uid", (unsigned int)status.msg_perm.cuid,
        "creator_gid", (unsigned int)status.msg_perm.cgid, "mode",
        (unsigned int)status.msg_perm.mode, "current_messages", (unsigned long)status.msg_qnum,
        "current_bytes", (unsigned long)status.__msg_cbytes, "max_bytes",
        (unsigned long)status.msg_qbytes, "last_send_pid", (int)status.msg_lspid,
        "last_receive_pid", (int)status.msg_lrpid, "last_send_time",
        (long long)status.msg_stime, "last_receive_time", (long long)status.msg_rtime,
        "last_change_time", (long long)status.msg_ctime);
}

/* msgctl_set(msqid, uid, gid, mode, max_bytes, name=None): IPC_SET sets all four. */
static PyObject *native_msgctl_set(PyObject *Py_UNUSED(self), PyObject *args)
{
    int msqid;
    unsigned int uid, gid, mode;
    unsigned long max_bytes;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "iIIIk|z:msgctl_set", &msqid, &uid, &gid, &mode, &max_bytes,
                          &name)) {
        return NULL;
    }
    struct msqid_ds status;
    memset(&status, 0, sizeof status);
    status.msg_perm.uid = (uid_t)uid;
    status.msg_perm.gid = (gid_t)gid;
    status.msg_perm.mode = (unsigned short)mode;
    status.msg_qbytes = (msglen_t)max_bytes;
    if (msgctl(msqid, IPC_SET, &status) != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

static PyObject *native_msgctl_rmid(PyObject *Py_UNUSED(self), PyObject *args)
{
    int msqid;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "i|z:msgctl_rmid", &msqid, &name)) {
        return NULL;
    }
    if (msgctl(msqid, IPC_RMID, NULL) != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

static PyMethodDef sysv_msg_methods[] = {
    {"ftok", native_ftok, METH_VARARGS,
     "ftok(path, proj_id) -> key\n\nThe C library's ftok(3), as a signed key_t."},
    {"msgget", native_msgget, METH_VARARGS,
     "msgget(key, flags, name=None) -> msqid"},
    {"msgsnd", (PyCFunction)(void (*)(void))native_msgsnd, METH_FASTCALL,
     "msgsnd(msqid, message, mtype, flags, deadline_ns, name, max_size) -> None | int\n\n"
     "ETIMEDOUT once the monotonic deadline passes (-1: block). A message longer\n"
     "than max_size is not sent: its length is returned instead."},
    {"msgrcv", (PyCFunction)(void (*)(void))native_msgrcv, METH_FASTCALL,
     "msgrcv(msqid, size, mtype, flags, deadline_ns, name, result_type)\n"
     "    -> result_type(data, mtype)"},
    {"msgrcv_into", (PyCFunction)(void (*)(void))native_msgrcv_into, METH_FASTCALL,
     "msgrcv_into(msqid, buffer, mtype, flags, deadline_ns, name) -> (nbytes, mtype)"},
    {"msgctl_stat", native_msgctl_stat, METH_VARARGS,
     "msgctl_stat(msqid, name=None) -> dict\n\nIPC_STAT, with the fields named."},
    {"msgctl_set", native_msgctl_set, METH_VARARGS,
     "msgctl_set(msqid, uid, gid, mode, max_bytes, name=None) -> None\n\nIPC_SET."},
    {"msgctl_rmid", native_msgctl_rmid, METH_VARARGS,
     "msgctl_rmid(msqid, name=None) -> None\n\nIPC_RMID: remove the queue now."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_sysv_msg(PyObject *module)
{
    if (PyModule_AddFunctions(module, sysv_msg_methods) < 0 || PyType_Ready(&SysVQueueCoreType) < 0 ||
        PyModule_AddObjectRef(module, "SysVQueueCore", (PyObject *)&SysVQueueCoreType) < 0 ||
        PyModule_AddIntConstant(module, "IPC_PRIVATE", (long)IPC_PRIVATE) < 0 ||
        PyModule_AddIntConstant(module, "IPC_CREAT", IPC_CREAT) < 0 ||
        PyModule_AddIntConstant(module, "IPC_EXCL", IPC_EXCL) < 0 ||
        PyModule_AddIntConstant(module, "IPC_NOWAIT", IPC_NOWAIT) < 0 ||
        PyModule_AddIntConstant(module, "MSG_NOERROR", MSG_NOERROR) < 0) {
        return -1;
    }
#ifdef MSG_EXCEPT
    return PyModule_AddIntConstant(module, "MSG_EXCEPT", MSG_EXCEPT);
#else
    return PyModule_AddIntConstant(module, "MSG_EXCEPT", 0); /* 0: not available */
#endif
}
