/* The core shared by the message queue types (posix_mq.c, sysv_msg.c).
 *
 * A queue's send/receive/receive_into are C methods of a small base type, so
 * that a well-formed call costs no Python frame. They take only the plain
 * case: any argument that is not plainly valid is handed, untouched, to the
 * Python method of the same name with "_slow" appended, which validates and
 * explains, then calls the C method again with plain arguments (so there is
 * one implementation of each operation); a failed system call goes to the
 * Python method `_error(oserror, what, timeout[, size])`, which returns the
 * exception to raise.
 *
 * What the C trusts (the handle, the limits, the result type) lives in the C
 * object, read-only from Python: `_attach` sets it once from the kernel's own
 * answers, `_detach` ends it.
 */
#ifndef UNIXIPC_QUEUE_FASTPATH_H
#define UNIXIPC_QUEUE_FASTPATH_H

#include "common.h"

#include <limits.h>
#include <stddef.h>
#include <structmember.h>

/* ---- range-checked integers from Python -------------------------------------- */

/* An int (not a bool) within [minimum, maximum]; else OverflowError or
 * TypeError, which the Python layer turns into an error naming the argument. */
static inline int uq_parse_long(PyObject *arg, long minimum, long maximum, long *out)
{
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "an int is required, not %.100s", Py_TYPE(arg)->tp_name);
        return -1;
    }
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < minimum || value > maximum) {
        PyErr_Format(PyExc_OverflowError, "%ld is out of range [%ld, %ld]", value, minimum,
                     maximum);
        return -1;
    }
    *out = value;
    return 0;
}

static inline int uq_parse_int(PyObject *arg, int minimum, int maximum, int *out)
{
    long value;
    if (uq_parse_long(arg, minimum, maximum, &value) < 0) {
        return -1;
    }
    *out = (int)value;
    return 0;
}

/* ---- the core object ---------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    int handle;            /* the mqd or msqid; -1 when not attached */
    Py_ssize_t limit;      /* the room receive() makes (POSIX: max_message_size,
                              System V: msgmax) */
    Py_ssize_t send_limit; /* the largest message send() takes here */
    PyObject *label;       /* the name, for OSError */
    PyObject *result_type; /* the NamedTuple receive() returns */
} uq_core;

/* How a queue type reads its limits from the kernel: 0, or -1 with errno set. */
typedef int (*uq_read_limits)(int handle, Py_ssize_t *limit, Py_ssize_t *send_limit);

static PyObject *uq_core_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
                             PyObject *Py_UNUSED(kwargs))
{
    uq_core *self = (uq_core *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->handle = -1; /* never 0: that is standard input */
    }
    return (PyObject *)self;
}

static void uq_core_dealloc(uq_core *self)
{
    Py_CLEAR(self->label);
    Py_CLEAR(self->result_type);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* OSError for `error`, naming the object by the str `name` (or nothing). */
static inline PyObject *uq_raise_named(int error, PyObject *name)
{
    const char *text = name != NULL && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (text == NULL) {
        PyErr_Clear();
    }
    errno = error; /* after the conversion, which may have changed errno */
    return unixipc_raise_errno(text);
}

/* _attach(handle, label, result_type): start using the handle, with the limits
 * read from the kernel. result_type must be a tuple subclass (receive builds
 * it as a 2-tuple in C). */
static inline PyObject *uq_attach(uq_core *self, PyObject *const *args, Py_ssize_t nargs,
                                  uq_read_limits read_limits)
{
    int handle;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_attach(handle, label, result_type)");
        return NULL;
    }
    if (uq_parse_int(args[0], 0, INT_MAX, &handle) < 0) {
        return NULL;
    }
    if (!PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "label must be a str");
        return NULL;
    }
    if (!PyType_Check(args[2]) || !PyType_IsSubtype((PyTypeObject *)args[2], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "result_type must be a tuple subclass");
        return NULL;
    }
    if (self->handle != -1) {
        PyErr_SetString(PyExc_RuntimeError, "this queue is attached already");
        return NULL;
    }
    Py_ssize_t limit, send_limit;
    if (read_limits(handle, &limit, &send_limit) < 0) {
        return uq_raise_named(errno, args[1]);
    }
    Py_INCREF(args[1]);
    Py_XSETREF(self->label, args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(self->result_type, args[2]);
    self->limit = limit;
    self->send_limit = send_limit;
    self->handle = handle;
    Py_RETURN_NONE;
}

/* _detach() -> the handle (-1 if none): the C methods stop using it. */
static PyObject *uq_detach(uq_core *self, PyObject *Py_UNUSED(ignored))
{
    int handle = self->handle;
    self->handle = -1;
    return PyLong_FromLong(handle);
}

/* The attributes Python may read; none can be set from Python. */
static PyMemberDef uq_core_members[] = {
    {"_handle", T_INT, offsetof(uq_core, handle), READONLY, "the descriptor or id (-1: none)"},
    {"_limit", T_PYSSIZET, offsetof(uq_core, limit), READONLY, "the room receive() makes"},
    {"_send_limit", T_PYSSIZET, offsetof(uq_core, send_limit), READONLY,
     "the largest message send() takes"},
    {"_label", T_OBJECT, offsetof(uq_core, label), READONLY, "the name, for errors"},
    {"_result_type", T_OBJECT, offsetof(uq_core, result_type), READONLY,
     "the named tuple receive() returns"},
    {NULL, 0, 0, 0, NULL},
};

/* ---- parsing a call ----------------------------------------------------------- */

/* Fill values[i] (borrowed) from the keyword arguments whose names are
 * names[i]; values keep their defaults when absent. Returns -1, with no
 * exception set, for an unknown keyword: the caller falls back to Python. */
static inline int uq_keywords(PyObject *kwnames, PyObject *const *kwvalues, const char *const *names,
                              PyObject **values, int count)
{
    if (kwnames == NULL) {
        return 0;
    }
    Py_ssize_t given = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < given; k++) {
        PyObject *keyword = PyTuple_GET_ITEM(kwnames, k);
        int found = 0;
        for (int i = 0; i < count; i++) {
            if (PyUnicode_CompareWithASCIIString(keyword, names[i]) == 0) {
                values[i] = kwvalues[k];
                found = 1;
                break;
            }
        }
        if (!found) {
            return -1;
        }
    }
    return 0;
}

/* A timeout that is None or a plain non-negative number becomes a deadline
 * (-1: none, also for math.inf and timeouts too long to end); *zero tells
 * timeout == 0. A float subclass (what _deadline's remaining() returns) is
 * plain too. Returns 0 for anything else (a bool, a negative or NaN number,
 * another type): Python explains. */
static inline int uq_deadline(PyObject *timeout, int64_t *deadline, int *zero)
{
    *zero = 0;
    if (timeout == Py_None) {
        *deadline = UNIXIPC_NO_DEADLINE;
        return 1;
    }
    double seconds;
    if (PyFloat_Check(timeout)) {
        seconds = PyFloat_AS_DOUBLE(timeout);
    } else if (PyLong_CheckExact(timeout)) {
        seconds = PyLong_AsDouble(timeout);
        if (seconds == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    } else {
        return 0;
    }
    if (!(seconds >= 0.0)) { /* also true for NaN */
        return 0;
    }
    *zero = seconds == 0.0;
    *deadline = unixipc_deadline_after(seconds);
    return 1;
}

/* A plain int (exactly int) within [minimum, maximum]; 0 otherwise. */
static inline int uq_plain_long(PyObject *arg, long minimum, long maximum, long *out)
{
    if (!PyLong_CheckExact(arg)) {
        return 0;
    }
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (value < minimum || value > maximum) {
        return 0;
    }
    *out = value;
    return 1;
}

/* The message of a send as a contiguous buffer of at most send_limit bytes: 1,
 * with `view` to release; 0 (nothing to release, no exception) otherwise. */
static inline int uq_message(uq_core *self, PyObject *message, Py_buffer *view)
{
    if (PyObject_GetBuffer(message, view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->len > self->send_limit) {
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* Call the Python method `name` with exactly the arguments this call got.
 * `name` NULL means the call came from that Python method, after validation:
 * then nothing may go back to Python (that would loop); a SystemError says so. */
static inline PyObject *uq_fall_back(PyObject *self, const char *name, PyObject *const *args,
                                     Py_ssize_t nargs, PyObject *kwnames)
{
    if (name == NULL) {
        PyErr_SetString(PyExc_SystemError,
                        "unixipc: a queue's slow path passed on arguments its C path refuses");
        return NULL;
    }
    PyObject *method = PyObject_GetAttrString(self, name);
    if (method == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(method, args, (size_t)nargs, kwnames);
    Py_DECREF(method);
    return result;
}

/* Each operation `verb` is written once as verb_impl(self, args, nargs,
 * kwnames, slow) and has two entries: the public method, which hands what it
 * does not take to Python's `_verb_slow`, and `_verb_plain`, which that Python
 * method calls with validated arguments. */
#define UQ_ENTRIES(verb)                                                                         \
    static PyObject *core_##verb(uq_core *self, PyObject *const *args, Py_ssize_t nargs,         \
                                 PyObject *kwnames)                                              \
    {                                                                                            \
        return verb##_impl(self, args, nargs, kwnames, "_" #verb "_slow");                       \
    }                                                                                            \
    static PyObject *core_##verb##_plain(uq_core *self, PyObject *const *args, Py_ssize_t nargs, \
                                         PyObject *kwnames)                                      \
    {                                                                                            \
        return verb##_impl(self, args, nargs, kwnames, NULL);                                    \
    }

/* The method table entries of an operation: its public method (documented in
 * Python) and its `_verb_plain` twin. */
#define UQ_METHOD_ENTRIES(verb, signature)                                                       \
    {#verb, (PyCFunction)(void (*)(void))core_##verb, METH_FASTCALL | METH_KEYWORDS,            \
     #verb "($self, " signature ")\n--\n\nThe C implementation (see the Python class)."},       \
    {                                                                                            \
        "_" #verb "_plain", (PyCFunction)(void (*)(void))core_##verb##_plain,                    \
            METH_FASTCALL | METH_KEYWORDS,                                                       \
            "_" #verb "_plain($self, " signature ")\n--\n\n" #verb " for validated arguments."  \
    }

/* ---- results and errors ------------------------------------------------------- */

/* After a system call failed with `error` (or -2: a Python exception is set):
 * raise what self._error(oserror, what, timeout[, size]) returns (it may raise
 * itself, e.g. for a closed handle); `size` (the room the receive had) is
 * passed when >= 0. */
static inline PyObject *uq_raise_error(uq_core *self, int error, const char *what,
                                       PyObject *timeout, Py_ssize_t size)
{
    if (error == -2) {
        return NULL;
    }
    uq_raise_named(error, self->label);
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    if (value == NULL) {
        return NULL;
    }
    PyObject *replacement =
        size >= 0
            ? PyObject_CallMethod((PyObject *)self, "_error", "OsOn", value, what, timeout, size)
            : PyObject_CallMethod((PyObject *)self, "_error", "OsO", value, what, timeout);
    Py_DECREF(value);
    if (replacement == NULL) {
        return NULL;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(replacement), replacement);
    Py_DECREF(replacement);
    return NULL;
}

/* A tuple subclass instance (a typing.NamedTuple) holding two new references. */
static inline PyObject *uq_pair(PyObject *result_type, PyObject *first, PyObject *second)
{
    if (first == NULL || second == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(second);
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)result_type;
    PyObject *pair = type->tp_alloc(type, 2);
    if (pair == NULL) {
        Py_DECREF(first);
        Py_DECREF(second);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, first);
    PyTuple_SET_ITEM(pair, 1, second);
    return pair;
}

/* Read-only access for the methods tables of both queue types. */
#define UQ_CORE_METHODS(attach_function)                                                         \
    {"_attach", (PyCFunction)(void (*)(void))(attach_function), METH_FASTCALL,                  \
     "_attach($self, handle, label, result_type, /)\n--\n\nStart using the handle (once)."},              \
    {                                                                                            \
        "_detach", (PyCFunction)uq_detach, METH_NOARGS,                                          \
            "_detach($self, /)\n--\n\nStop using the handle; return it (-1 if none)."                    \
    }

/* The C base type of a queue class, named `name`, with `methods`. */
#define UQ_CORE_TYPE(variable, name, methods)                                                   \
    static PyTypeObject variable = {                                                            \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "unixipc._native." name,                       \
        .tp_basicsize = sizeof(uq_core),                                                        \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,                                   \
        .tp_doc = "The C base of a message queue class: its send and receive (private).",     \
        .tp_new = uq_core_new,                                                                  \
        .tp_dealloc = (destructor)uq_core_dealloc,                                              \
        .tp_methods = (methods),                                                                \
        .tp_members = uq_core_members,                                                          \
    }

#endif
