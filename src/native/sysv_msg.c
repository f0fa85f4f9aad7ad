/* System V message queues and ftok.
 * System calls: msgget, msgsnd, msgrcv, msgctl (IPC_STAT, IPC_SET, IPC_RMID);
 * library: ftok.
 *
 * The kernel has no timed msgsnd/msgrcv: a deadline is enforced by
 * unixipc_call_with_deadline (common.c), which interrupts the sleeping call
 * with a per-thread timer signal; timeout 0 is IPC_NOWAIT, chosen by Python.
 */
#include "common.h"

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
    msg_call call;
    int64_t deadline;
    if (parse_int(args[0], &call.msqid) < 0 || parse_int(args[3], &call.flags) < 0 ||
        unixipc_parse_deadline(args[4], &deadline) < 0 ||
        parse_mtype(args[2], 1, &call.mtype) < 0) {
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
    stack_message on_stack;
    stack_message *message = &on_stack;
    if (view.len > STACK_MESSAGE_MAX) {
        message = malloc(sizeof(long) + (size_t)view.len);
        if (message == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
    }
    message->mtype = call.mtype;
    memcpy(message->mtext, view.buf, (size_t)view.len);
    call.message = message;
    call.size = (size_t)view.len;
    PyBuffer_Release(&view);
    long rc = unixipc_call_with_deadline(do_msgsnd, &call, deadline);
    int error = errno;
    if (message != &on_stack) {
        free(message);
    }
    if (rc < 0) {
        return rc == -2 ? NULL : raise_error_named(error, args[5]);
    }
    Py_RETURN_NONE;
}

/* Receive up to `size` bytes into a temporary struct msgbuf, then let `deliver`
 * copy the text where it belongs. Returns what deliver returns, or NULL. */
typedef PyObject *(*deliver_message)(const char *text, Py_ssize_t length, long mtype,
                                     void *context);

static PyObject *receive_message(PyObject *const *args, Py_ssize_t size, deliver_message deliver,
                                 void *context)
{
    /* args: msqid, <size or buffer>, mtype, flags, deadline_ns, name */
    msg_call call;
    int64_t deadline;
    if (parse_int(args[0], &call.msqid) < 0 || parse_int(args[3], &call.flags) < 0 ||
        unixipc_parse_deadline(args[4], &deadline) < 0) {
        return NULL;
    }
    if (parse_mtype(args[2], -LONG_MAX, &call.mtype) < 0) {
        return NULL;
    }
    stack_message on_stack;
    stack_message *message = &on_stack;
    if (size > STACK_MESSAGE_MAX) {
        message = malloc(sizeof(long) + (size_t)size);
        if (message == NULL) {
            return PyErr_NoMemory();
        }
    }
    call.message = message;
    call.size = (size_t)size;
    long got = unixipc_call_with_deadline(do_msgrcv, &call, deadline);
    int error = errno;
    PyObject *result;
    if (got < 0) {
        result = got == -2 ? NULL : raise_error_named(error, args[5]);
    } else {
        result = deliver(message->mtext, (Py_ssize_t)got, message->mtype, context);
    }
    if (message != &on_stack) {
        free(message);
    }
    return result;
}

static PyObject *deliver_as_bytes(const char *text, Py_ssize_t length, long mtype, void *context)
{
    PyTypeObject *type = context;
    PyObject *data = PyBytes_FromStringAndSize(text, length);
    if (data == NULL) {
        return NULL;
    }
    PyObject *mtype_object = PyLong_FromLong(mtype);
    PyObject *pair = mtype_object == NULL ? NULL : type->tp_alloc(type, 2);
    if (pair == NULL) {
        Py_DECREF(data);
        Py_XDECREF(mtype_object);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, data);
    PyTuple_SET_ITEM(pair, 1, mtype_object);
    return pair;
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
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        }
        return NULL;
    }
    return receive_message(args, size, deliver_as_bytes, args[6]);
}

static PyObject *deliver_into(const char *text, Py_ssize_t length, long mtype, void *context)
{
    Py_buffer *view = context;
    memcpy(view->buf, text, (size_t)length);
    return Py_BuildValue("(nl)", length, mtype);
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
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    PyObject *result = receive_message(args, view.len, deliver_into, &view);
    PyBuffer_Release(&view);
    return result;
}

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
    if (PyModule_AddFunctions(module, sysv_msg_methods) < 0 ||
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
