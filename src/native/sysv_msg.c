/* System V message queues and ftok.
 * System calls: msgget, msgsnd, msgrcv, msgctl (IPC_STAT, IPC_SET, IPC_RMID,
 * IPC_INFO); library: ftok.
 *
 * The kernel has no timed msgsnd/msgrcv: a deadline is enforced by
 * unixipc_call_with_deadline (common.c), which interrupts the sleeping call
 * with a per-thread timer signal on the monotonic clock; timeout 0 is
 * IPC_NOWAIT.
 */
#define _GNU_SOURCE 1 /* struct msginfo, MSG_EXCEPT */
#include "common.h"
#include "queue_fastpath.h"

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

/* ftok(path, proj_id) -> key, in unsigned 32-bit form. */
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
    return PyLong_FromUnsignedLong((unsigned long)(uint32_t)key);
}

/* msgget(key, flags, name=None, created=None) -> msqid; the key in signed or
 * unsigned 32-bit form. With a list `created`, the new id is appended to it
 * before returning, so that a creator interrupted as the call returns still
 * finds (and removes) the queue. */
static PyObject *native_msgget(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    long key;
    int flags;
    if (nargs < 2 || nargs > 4 || (nargs == 4 && !PyList_Check(args[3]))) {
        PyErr_SetString(PyExc_TypeError, "msgget(key, flags, name=None, created: list=None)");
        return NULL;
    }
    if (uq_parse_long(args[0], INT_MIN, (long)UINT32_MAX, &key) < 0 ||
        uq_parse_int(args[1], 0, INT_MAX, &flags) < 0) {
        return NULL;
    }
    int id = msgget((key_t)(uint32_t)key, flags);
    if (id < 0) {
        return uq_raise_named(errno, nargs >= 3 && args[2] != Py_None ? args[2] : NULL);
    }
    if (nargs == 4 && unixipc_note_created(args[3], id) < 0) {
        return NULL;
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

/* The struct msgbuf for `size` bytes of text: on the stack when it fits. */
static stack_message *message_buffer(stack_message *on_stack, size_t size)
{
    if (size <= STACK_MESSAGE_MAX) {
        return on_stack;
    }
    stack_message *message = malloc(sizeof(long) + size);
    if (message == NULL) {
        PyErr_NoMemory();
    }
    return message;
}

/* Send `length` bytes as `mtype` under the deadline. Returns 0, or the errno,
 * or -2 with a Python exception set. */
static int send_message(int msqid, const void *data, Py_ssize_t length, long mtype, int flags,
                        int64_t deadline)
{
    stack_message on_stack;
    stack_message *message = message_buffer(&on_stack, (size_t)length);
    if (message == NULL) {
        return -2;
    }
    message->mtype = mtype;
    memcpy(message->mtext, data, (size_t)length);
    msg_call call = {msqid, message, (size_t)length, mtype, flags};
    long rc = unixipc_call_with_deadline(do_msgsnd, &call, deadline);
    int error = rc == -2 ? -2 : errno;
    if (message != &on_stack) {
        free(message);
    }
    return rc < 0 ? error : 0;
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
    stack_message *message = message_buffer(&on_stack, (size_t)size);
    if (message == NULL) {
        return NULL;
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

/* ---- SysVMessageQueue's C base: its send and receive ------------------------- */

/* receive() makes room for msgmax (the kernel's largest message); send() takes
 * at most that and the queue's max_bytes (a larger message would wait forever).
 * max_bytes stays msgmax if we may not read the queue's status. */
static int read_limits(int handle, Py_ssize_t *limit, Py_ssize_t *send_limit)
{
    struct msginfo info;
    if (msgctl(0, IPC_INFO, (struct msqid_ds *)(void *)&info) < 0) {
        return -1;
    }
    *limit = *send_limit = info.msgmax > 0 ? (Py_ssize_t)info.msgmax : 0;
    struct msqid_ds status;
    if (msgctl(handle, IPC_STAT, &status) == 0) {
        if ((unsigned long)status.msg_qbytes < (unsigned long)*send_limit) {
            *send_limit = (Py_ssize_t)status.msg_qbytes;
        }
    } else if (errno != EACCES) {
        return -1;
    }
    return 0;
}

static PyObject *core_attach(uq_core *self, PyObject *const *args, Py_ssize_t nargs)
{
    return uq_attach(self, args, nargs, read_limits);
}

/* _refresh_limits(): read msgmax and max_bytes again (after IPC_SET, or when a
 * message was refused: another process may have raised max_bytes). */
static PyObject *core_refresh_limits(uq_core *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t limit, send_limit;
    if (self->handle != -1) {
        if (read_limits(self->handle, &limit, &send_limit) < 0) {
            return uq_raise_named(errno, self->label);
        }
        self->limit = limit;
        self->send_limit = send_limit;
    }
    Py_RETURN_NONE;
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
    if (!uq_plain_long(values[0], -LONG_MAX, LONG_MAX, mtype) ||
        !plain_timeout(values[1], flags, deadline)) {
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

static PyObject *send_impl(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames, const char *slow)
{
    PyObject *values[2] = {NULL, Py_None};
    long mtype = 1;
    int flags = 0;
    int64_t deadline;
    Py_buffer view;
    if (nargs != 1 || uq_keywords(kwnames, args + nargs, send_keywords, values, 2) < 0 ||
        (values[0] != NULL && !uq_plain_long(values[0], 1, LONG_MAX, &mtype)) ||
        !plain_timeout(values[1], &flags, &deadline)) {
        goto slow;
    }
    if (!uq_message(self, args[0], &view)) {
        goto slow;
    }
    int error = send_message(self->handle, view.buf, view.len, mtype, flags, deadline);
    PyBuffer_Release(&view);
    if (error != 0) {
        return uq_raise_error(self, error, "send to", values[1], -1);
    }
    Py_RETURN_NONE;
slow:
    return uq_fall_back((PyObject *)self, slow, args, nargs, kwnames);
}

static PyObject *zero_object(void)
{
    static PyObject *zero = NULL;
    if (zero == NULL) {
        zero = PyLong_FromLong(0);
    }
    return zero;
}

/* receive (into == 0) and receive_into (into == 1, the buffer is args[0]). */
static PyObject *receive_either(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, int into, const char *slow)
{
    PyObject *values[4] = {zero_object(), Py_None, Py_False, Py_False};
    long mtype;
    int flags, failure;
    int64_t deadline;
    Py_buffer view;
    if (nargs != into || values[0] == NULL || self->result_type == NULL ||
        uq_keywords(kwnames, args + nargs, receive_keywords, values, 4) < 0 ||
        !plain_receive_options(values, &mtype, &flags, &deadline)) {
        goto slow;
    }
    if (into && PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        goto slow;
    }
    Py_ssize_t room = into ? view.len : self->limit;
    PyObject *result =
        into ? receive_message(self->handle, room, mtype, flags, deadline, deliver_into, &view,
                               &failure)
             : receive_message(self->handle, room, mtype, flags, deadline, deliver_as_bytes,
                               self->result_type, &failure);
    if (into) {
        PyBuffer_Release(&view);
    }
    if (result == NULL) {
        return uq_raise_error(self, failure, "receive from", values[1], room);
    }
    return result;
slow:
    return uq_fall_back((PyObject *)self, slow, args, nargs, kwnames);
}

static PyObject *receive_impl(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, const char *slow)
{
    return receive_either(self, args, nargs, kwnames, 0, slow);
}

static PyObject *receive_into_impl(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames, const char *slow)
{
    return receive_either(self, args, nargs, kwnames, 1, slow);
}

UQ_ENTRIES(send)
UQ_ENTRIES(receive)
UQ_ENTRIES(receive_into)

#define RECEIVE_OPTIONS "type=0, timeout=None, truncate=False, except_type=False"

static PyMethodDef core_methods[] = {
    UQ_METHOD_ENTRIES(send, "message, /, *, type=1, timeout=None"),
    UQ_METHOD_ENTRIES(receive, "/, *, " RECEIVE_OPTIONS),
    UQ_METHOD_ENTRIES(receive_into, "buffer, /, *, " RECEIVE_OPTIONS),
    {"_refresh_limits", (PyCFunction)core_refresh_limits, METH_NOARGS,
     "_refresh_limits($self, /)\n--\n\nRead msgmax and the queue's max_bytes again."},
    UQ_CORE_METHODS(core_attach),
    {NULL, NULL, 0, NULL},
};

UQ_CORE_TYPE(SysVQueueCoreType, "SysVQueueCore", core_methods);

static PyObject *native_msgctl_stat(PyObject *Py_UNUSED(self), PyObject *args)
{
    int msqid;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "i|z:msgctl_stat", &msqid, &name)) {
        return NULL;
    }
    if (msqid < 0) {
        errno = EINVAL;
        return unixipc_raise_errno(name);
    }
    struct msqid_ds status;
    if (msgctl(msqid, IPC_STAT, &status) != 0) {
        return unixipc_raise_errno(name);
    }
    return Py_BuildValue(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:k,s:k,s:k,s:i,s:i,s:L,s:L,s:L}", "key",
        (unsigned int)status.msg_perm.__key, "uid", (unsigned int)status.msg_perm.uid, "gid",
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
    int msqid, mode;
    long long uid, gid;
    PyObject *max_bytes_arg;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "iLLiO|z:msgctl_set", &msqid, &uid, &gid, &mode, &max_bytes_arg,
                          &name)) {
        return NULL;
    }
    unsigned long max_bytes = PyLong_AsUnsignedLong(max_bytes_arg); /* OverflowError if not */
    if (max_bytes == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    if (uid < 0 || uid >= (long long)UINT32_MAX || gid < 0 || gid >= (long long)UINT32_MAX ||
        mode < 0 || mode > 0777) {
        PyErr_SetString(PyExc_OverflowError, "uid, gid or mode out of range");
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
     "ftok(path, proj_id) -> key\n\nThe C library's ftok(3), in unsigned 32-bit form."},
    {"msgget", (PyCFunction)(void (*)(void))native_msgget, METH_FASTCALL,
     "msgget(key, flags, name=None, created=None) -> msqid\n\n"
     "The key in signed or unsigned 32-bit form; a new id is also appended to `created`."},
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
