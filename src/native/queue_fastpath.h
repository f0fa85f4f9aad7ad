/* The fast path shared by the message queue types (posix_mq.c, sysv_msg.c).
 *
 * A queue's send/receive methods are C methods of a small base type, so that a
 * well-formed call costs no Python frame. They handle only the plain case: any
 * argument that is not plainly valid is handed, untouched, to the Python
 * method of the same name with "_slow" appended, which validates and explains
 * (policy stays in Python); a failed system call goes to the Python method
 * `_error(oserror, what, timeout)`, which returns the exception to raise.
 */
#ifndef UNIXIPC_QUEUE_FASTPATH_H
#define UNIXIPC_QUEUE_FASTPATH_H

#include "common.h"

#include <math.h>

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
 * (-1: none); *zero tells timeout == 0. Returns 0 for anything else (a bool,
 * a negative or NaN or huge number, another type): Python explains. */
static inline int uq_deadline(PyObject *timeout, int64_t *deadline, int *zero)
{
    *zero = 0;
    if (timeout == Py_None) {
        *deadline = UNIXIPC_NO_DEADLINE;
        return 1;
    }
    double seconds;
    if (PyFloat_CheckExact(timeout)) {
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
    if (!(seconds >= 0.0) || seconds > 1e9) { /* also false for NaN */
        return 0;
    }
    *zero = seconds == 0.0;
    *deadline = unixipc_monotonic_ns() + (int64_t)(seconds * 1e9);
    return 1;
}

/* Call the Python method `name` with exactly the arguments this call got. */
static inline PyObject *uq_fall_back(PyObject *self, const char *name, PyObject *const *args,
                                     Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *method = PyObject_GetAttrString(self, name);
    if (method == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(method, args, (size_t)nargs, kwnames);
    Py_DECREF(method);
    return result;
}

/* After a system call failed with `error`: raise what self._error(oserror,
 * what, timeout[, size]) returns (it may raise itself, e.g. for a closed
 * handle); `size` (the room the receive had) is passed when >= 0. */
static inline PyObject *uq_raise_error(PyObject *self, int error, PyObject *name, const char *what,
                                       PyObject *timeout, Py_ssize_t size)
{
    const char *text = name != NULL && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (text == NULL) {
        PyErr_Clear();
    }
    errno = error;
    unixipc_raise_errno(text);
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    if (value == NULL) {
        return NULL;
    }
    PyObject *replacement =
        size >= 0 ? PyObject_CallMethod(self, "_error", "OsOn", value, what, timeout, size)
                  : PyObject_CallMethod(self, "_error", "OsO", value, what, timeout);
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

#endif
