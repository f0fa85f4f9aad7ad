/* Signals with values. System calls: sigqueue, sigtimedwait (relative
 * timeout: the monotonic clock), signalfd.
 *
 * Python's signal module has kill, pthread_kill, pthread_sigmask and a
 * sigtimedwait whose result lacks si_value; it has no sigqueue and no
 * signalfd. Those three live here. Masks, names and policy stay in Python;
 * signalfd records are read and decoded in Python.
 */
#include "common.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <unistd.h>

/* Fill `set` from a Python iterable of signal numbers. */
static int sigset_from_iterable(PyObject *signals, sigset_t *set)
{
    sigemptyset(set);
    PyObject *iterator = PyObject_GetIter(signals);
    if (iterator == NULL) {
        return -1;
    }
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        long signo = PyLong_AsLong(item);
        Py_DECREF(item);
        if (signo == -1 && PyErr_Occurred()) {
            Py_DECREF(iterator);
            return -1;
        }
        if (signo < 1 || signo >= NSIG || sigaddset(set, (int)signo) != 0) {
            Py_DECREF(iterator);
            PyErr_Format(PyExc_ValueError, "signal number %ld out of range 1..%d", signo,
                         NSIG - 1);
            return -1;
        }
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *native_sigqueue(PyObject *Py_UNUSED(self), PyObject *args)
{
    int pid, signo, value; /* "i" range-checks: 2**32 + pid must not become pid */
    if (!PyArg_ParseTuple(args, "iii:sigqueue", &pid, &signo, &value)) {
        return NULL;
    }
    union sigval sigval;
    memset(&sigval, 0, sizeof(sigval)); /* the kernel copies the whole union */
    sigval.sival_int = value;
    if (sigqueue((pid_t)pid, signo, sigval) != 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *native_sigtimedwait(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *signals;
    PyObject *deadline_arg;
    if (!PyArg_ParseTuple(args, "OO:sigtimedwait", &signals, &deadline_arg)) {
        return NULL;
    }
    sigset_t set;
    int64_t deadline;
    if (sigset_from_iterable(signals, &set) < 0 ||
        unixipc_parse_deadline(deadline_arg, &deadline) < 0) {
        return NULL;
    }
    siginfo_t info;
    for (;;) {
        int signo;
        memset(&info, 0, sizeof(info));
        if (deadline == UNIXIPC_NO_DEADLINE) {
            Py_BEGIN_ALLOW_THREADS
            signo = sigwaitinfo(&set, &info);
            Py_END_ALLOW_THREADS
        } else {
            struct timespec timeout;
            unixipc_time_left(deadline, &timeout);
            Py_BEGIN_ALLOW_THREADS
            signo = sigtimedwait(&set, &info, &timeout);
            Py_END_ALLOW_THREADS
        }
        if (signo > 0) {
            break;
        }
        if (errno == EAGAIN) {
            Py_RETURN_NONE; /* the deadline passed */
        }
        if (errno != EINTR) {
            return unixipc_raise_errno(NULL);
        }
        if (unixipc_after_eintr() < 0) {
            return NULL;
        }
    }
    return Py_BuildValue("(iiiIi)", info.si_signo, info.si_code, (int)info.si_pid,
                         (unsigned int)info.si_uid, info.si_value.sival_int);
}

static PyObject *native_signalfd(PyObject *Py_UNUSED(self), PyObject *signals)
{
    sigset_t set;
    if (sigset_from_iterable(signals, &set) < 0) {
        return NULL;
    }
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(fd);
}

static PyMethodDef signals_methods[] = {
    {"sigqueue", native_sigqueue, METH_VARARGS,
     "sigqueue(pid, signo, value) -> None\n\nQueue a signal carrying the int `value`."},
    {"sigtimedwait", native_sigtimedwait, METH_VARARGS,
     "sigtimedwait(signals, deadline_ns) -> (signo, code, pid, uid, value) | None\n\n"
     "Wait for one of the (blocked) signals until the monotonic deadline (-1: none); "
     "None when it passes. The GIL is released; EINTR runs handlers and retries."},
    {"signalfd", native_signalfd, METH_O,
     "signalfd(signals) -> fd\n\nA new non-blocking, close-on-exec signalfd for the signals."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_signals(PyObject *module)
{
    if (PyModule_AddFunctions(module, signals_methods) < 0) {
        return -1;
    }
    /* The si_code values that tell who sent a signal (the per-signal codes of
     * kernel-raised signals are in Python's own names where it has them). */
    if (PyModule_AddIntConstant(module, "SI_USER", SI_USER) < 0 ||
        PyModule_AddIntConstant(module, "SI_KERNEL", SI_KERNEL) < 0 ||
        PyModule_AddIntConstant(module, "SI_QUEUE", SI_QUEUE) < 0 ||
        PyModule_AddIntConstant(module, "SI_TIMER", SI_TIMER) < 0 ||
        PyModule_AddIntConstant(module, "SI_MESGQ", SI_MESGQ) < 0 ||
        PyModule_AddIntConstant(module, "SI_ASYNCIO", SI_ASYNCIO) < 0 ||
        PyModule_AddIntConstant(module, "SI_SIGIO", SI_SIGIO) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "SI_TKILL", SI_TKILL);
}
