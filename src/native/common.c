/* Deadlines, EINTR handling and errors shared by all facilities.
 * System calls: clock_gettime. */
#include "common.h"

#include <errno.h>

int64_t unixipc_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void unixipc_abstime(int64_t monotonic_deadline_ns, clockid_t clock, struct timespec *out)
{
    struct timespec now;
    int64_t left = monotonic_deadline_ns - unixipc_monotonic_ns();
    if (left < 0) {
        left = 0;
    }
    clock_gettime(clock, &now);
    int64_t at = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + left;
    out->tv_sec = (time_t)(at / 1000000000);
    out->tv_nsec = (long)(at % 1000000000);
}

int unixipc_after_eintr(void)
{
    return PyErr_CheckSignals() < 0 ? -1 : 0;
}

PyObject *unixipc_raise_errno(const char *name)
{
    if (name == NULL) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyErr_SetFromErrnoWithFilename(PyExc_OSError, name);
}

int unixipc_parse_deadline(PyObject *arg, int64_t *out)
{
    long long value = PyLong_AsLongLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < -1) {
        PyErr_SetString(PyExc_ValueError, "deadline must be -1 or a monotonic time in ns");
        return -1;
    }
    *out = (int64_t)value;
    return 0;
}

static PyObject *monotonic_to_clock(PyObject *Py_UNUSED(self), PyObject *const *args,
                                    Py_ssize_t nargs)
{
    int64_t deadline;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "monotonic_to_clock(deadline_ns, clock_id)");
        return NULL;
    }
    if (unixipc_parse_deadline(args[0], &deadline) < 0) {
        return NULL;
    }
    long clock = PyLong_AsLong(args[1]);
    if (clock == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (deadline == UNIXIPC_NO_DEADLINE) {
        PyErr_SetString(PyExc_ValueError, "no deadline to convert");
        return NULL;
    }
    struct timespec ts;
    unixipc_abstime(deadline, (clockid_t)clock, &ts);
    return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

static PyMethodDef common_methods[] = {
    {"monotonic_to_clock", (PyCFunction)(void (*)(void))monotonic_to_clock, METH_FASTCALL,
     "monotonic_to_clock(deadline_ns, clock_id) -> int\n\n"
     "The absolute time in ns on clock_id that corresponds to a CLOCK_MONOTONIC deadline."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_common(PyObject *module)
{
    if (PyModule_AddFunctions(module, common_methods) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "NO_DEADLINE", (long)UNIXIPC_NO_DEADLINE);
}
