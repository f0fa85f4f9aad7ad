/* Arguments and exceptions of C methods on the hot path (see callargs.h).
 * System calls: clock_gettime. */
#include "callargs.h"

#include <math.h>
#include <string.h>

int unixipc_parse_timeout(PyObject *timeout, int64_t *deadline, double *seconds)
{
    *seconds = -1.0;
    if (timeout == NULL || timeout == Py_None) {
        *deadline = UNIXIPC_NO_DEADLINE;
        return 0;
    }
    if (PyBool_Check(timeout) || !(PyFloat_Check(timeout) || PyLong_Check(timeout))) {
        PyErr_Format(PyExc_TypeError, "timeout must be a number of seconds or None, not %s",
                     Py_TYPE(timeout)->tp_name);
        return -1;
    }
    double value = PyFloat_AsDouble(timeout);
    if (value == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(value) || value < 0) {
        PyErr_Format(PyExc_ValueError, "timeout must be >= 0 seconds or None, got %R", timeout);
        return -1;
    }
    *seconds = value;
    if (value == 0) {
        *deadline = UNIXIPC_TRY_ONCE;
    } else if (value > 1e9) {
        *deadline = UNIXIPC_NO_DEADLINE; /* more than 30 years: forever */
    } else {
        *deadline = unixipc_monotonic_ns() + (int64_t)(value * 1e9);
    }
    return 0;
}

/* Where keyword `key` goes: the timeout or one of the named arguments; NULL if unknown. */
static PyObject **keyword_target(PyObject *key, Py_ssize_t expected, const char *const *names,
                                 PyObject **out, PyObject **timeout)
{
    if (PyUnicode_CompareWithASCIIString(key, "timeout") == 0) {
        return timeout;
    }
    for (Py_ssize_t i = 0; i < expected; i++) {
        if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
            return &out[i];
        }
    }
    return NULL;
}

int unixipc_parse_call(const char *function, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames, Py_ssize_t expected, const char *const *names,
                       PyObject **out, PyObject **timeout)
{
    *timeout = NULL;
    if (nargs > expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional argument%s but %zd were given",
                     function, expected, expected == 1 ? "" : "s", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < expected; i++) {
        out[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t keywords = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < keywords; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        PyObject **target = keyword_target(key, expected, names, out, timeout);
        if (target == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", function,
                         key);
            return -1;
        }
        if (*target != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument %R", function,
                         key);
            return -1;
        }
        *target = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < expected; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

int unixipc_get_bytes_like(PyObject *data, Py_buffer *view)
{
    if (PyObject_GetBuffer(data, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_BufferError) && PyObject_CheckBuffer(data)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "data must be C-contiguous");
    } else if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "data must be a bytes-like object, not %s",
                     Py_TYPE(data)->tp_name);
    }
    return -1;
}

PyObject *unixipc_raise_error(const char *class_name, const char *attribute, Py_ssize_t value,
                              const char *format, ...)
{
    va_list vargs;
    va_start(vargs, format);
    PyObject *message = PyUnicode_FromFormatV(format, vargs);
    va_end(vargs);
    if (message == NULL) {
        return NULL;
    }
    PyObject *cls = unixipc_error_class(class_name); /* borrowed */
    PyObject *error = cls == NULL ? NULL : PyObject_CallOneArg(cls, message);
    Py_DECREF(message);
    if (error != NULL && attribute != NULL) {
        PyObject *number = PyLong_FromSsize_t(value);
        if (number == NULL || PyObject_SetAttrString(error, attribute, number) < 0) {
            Py_CLEAR(error);
        }
        Py_XDECREF(number);
    }
    if (error != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    return NULL;
}

PyObject *unixipc_raise_timeout(const char *what, PyObject *description, double seconds)
{
    if (seconds == 0) {
        return unixipc_raise_error("WouldBlock", NULL, 0, "%s on %U would block", what,
                                   description);
    }
    char text[64];
    PyOS_snprintf(text, sizeof text, "%g", seconds);
    return unixipc_raise_error("TimeoutExpired", NULL, 0, "%s on %U timed out after %s s", what,
                               description, text);
}
