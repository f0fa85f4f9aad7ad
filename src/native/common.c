/* Deadlines, EINTR handling and errors shared by all facilities.
 * System calls: clock_gettime. */
#include "common.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

int64_t unixipc_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t unixipc_deadline_after(double seconds)
{
    int64_t now = unixipc_monotonic_ns();
    if (!(seconds < (double)(UNIXIPC_FAR_DEADLINE_NS - now) / 1e9)) { /* also inf */
        return UNIXIPC_NO_DEADLINE;
    }
    return now + (int64_t)(seconds * 1e9);
}

void unixipc_time_left(int64_t deadline_ns, struct timespec *out)
{
    int64_t left = deadline_ns - unixipc_monotonic_ns();
    if (left < 0) {
        left = 0;
    }
    out->tv_sec = (time_t)(left / 1000000000);
    out->tv_nsec = (long)(left % 1000000000);
}

/* The largest tv_sec the kernel takes in an absolute timespec (KTIME_SEC_MAX - 1). */
#define FAR_SECONDS ((int64_t)(INT64_MAX / 1000000000) - 1)

void unixipc_abstime(int64_t monotonic_deadline_ns, clockid_t clock, struct timespec *out)
{
    struct timespec now, left;
    unixipc_time_left(monotonic_deadline_ns, &left);
    clock_gettime(clock, &now);
    /* Seconds and nanoseconds apart: their sum in ns overflows for deadlines
     * about 7.4e9 s away (2**63 ns less the clock's current value). */
    int64_t seconds = (int64_t)now.tv_sec;
    long nanoseconds = now.tv_nsec + left.tv_nsec;
    if (nanoseconds >= 1000000000) {
        nanoseconds -= 1000000000;
        seconds += 1;
    }
    if ((int64_t)left.tv_sec > FAR_SECONDS - seconds) {
        seconds = FAR_SECONDS;
    } else {
        seconds += (int64_t)left.tv_sec;
    }
    out->tv_sec = (time_t)seconds;
    out->tv_nsec = nanoseconds;
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

int unixipc_note_created(PyObject *created, long id)
{
    PyObject *number = PyLong_FromLong(id);
    if (number == NULL) {
        return -1;
    }
    int rc = PyList_Append(created, number);
    Py_DECREF(number);
    return rc;
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
    *out = value > UNIXIPC_FAR_DEADLINE_NS ? UNIXIPC_NO_DEADLINE : (int64_t)value;
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
    if (clock < 0 || clock > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "clock_id out of range");
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

/* ---- the exception classes of unixipc.errors -------------------------------- */

static PyObject *error_classes; /* {name: class}, handed over by errors.py */

PyObject *unixipc_error_class(const char *name)
{
    PyObject *cls = error_classes == NULL ? NULL : PyDict_GetItemString(error_classes, name);
    if (cls == NULL && !PyErr_Occurred()) {
        PyErr_Format(PyExc_SystemError,
                     "unixipc._native has no exception class %s: import unixipc (its errors "
                     "module hands the classes over)",
                     name);
    }
    return cls;
}

static PyObject *set_error_classes(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || kwargs == NULL) {
        PyErr_SetString(PyExc_TypeError, "set_error_classes() takes the classes by name");
        return NULL;
    }
    PyObject *name, *cls;
    Py_ssize_t position = 0;
    while (PyDict_Next(kwargs, &position, &name, &cls)) {
        if (!PyExceptionClass_Check(cls)) {
            PyErr_Format(PyExc_TypeError, "set_error_classes(): %U is not an exception class",
                         name);
            return NULL;
        }
    }
    PyObject *classes = PyDict_Copy(kwargs);
    if (classes == NULL) {
        return NULL;
    }
    Py_XSETREF(error_classes, classes);
    Py_RETURN_NONE;
}

static PyMethodDef common_methods[] = {
    {"set_error_classes", (PyCFunction)(void (*)(void))set_error_classes,
     METH_VARARGS | METH_KEYWORDS,
     "set_error_classes(**classes) -> None\n\n"
     "Hand the C core the exception classes it raises (unixipc.errors does, at import)."},
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
    if (PyModule_AddIntConstant(module, "FAR_DEADLINE_NS", (long)UNIXIPC_FAR_DEADLINE_NS) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "NO_DEADLINE", (long)UNIXIPC_NO_DEADLINE);
}

/* ---- deadlines for system calls that have none ------------------------------- */
/* System calls: timer_create, timer_settime, timer_delete, sigaction,
 * pthread_sigmask, sigtimedwait, gettid. */

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* A real-time signal that Python and glibc leave alone. */
#define UNIXIPC_ALARM_SIGNAL (SIGRTMAX - 2)
#define UNIXIPC_ALARM_REPEAT_NS 10000000 /* 10 ms */

int unixipc_deadline_passed(int64_t deadline_ns)
{
    return deadline_ns != UNIXIPC_NO_DEADLINE && unixipc_monotonic_ns() >= deadline_ns;
}

static void alarm_handler(int signo)
{
    (void)signo; /* only here so that the blocked call fails with EINTR */
}

static int alarm_handler_installed = 0; /* guarded by the GIL */

static int install_alarm_handler(void)
{
    if (alarm_handler_installed) {
        return 0;
    }
    struct sigaction current;
    if (sigaction(UNIXIPC_ALARM_SIGNAL, NULL, &current) != 0) {
        unixipc_raise_errno(NULL);
        return -1;
    }
    if (current.sa_handler != SIG_DFL && current.sa_handler != alarm_handler) {
        PyErr_Format(PyExc_RuntimeError,
                     "unixipc needs real-time signal %d (SIGRTMAX-2) for timed waits, "
                     "but the program installed its own handler for it",
                     UNIXIPC_ALARM_SIGNAL);
        return -1;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = alarm_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0; /* no SA_RESTART: the blocked call must return EINTR */
    if (sigaction(UNIXIPC_ALARM_SIGNAL, &action, NULL) != 0) {
        unixipc_raise_errno(NULL);
        return -1;
    }
    alarm_handler_installed = 1;
    return 0;
}

typedef struct {
    timer_t timer;
    sigset_t old_mask;
} deadline_alarm;

static int alarm_arm(deadline_alarm *alarm, int64_t deadline_ns)
{
    if (install_alarm_handler() < 0) {
        return -1;
    }
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = UNIXIPC_ALARM_SIGNAL;
    event.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &event, &alarm->timer) != 0) {
        unixipc_raise_errno(NULL);
        return -1;
    }
    struct itimerspec when;
    when.it_value.tv_sec = (time_t)(deadline_ns / 1000000000);
    when.it_value.tv_nsec = (long)(deadline_ns % 1000000000);
    when.it_interval.tv_sec = 0;
    when.it_interval.tv_nsec = UNIXIPC_ALARM_REPEAT_NS;
    sigset_t ours;
    sigemptyset(&ours);
    sigaddset(&ours, UNIXIPC_ALARM_SIGNAL);
    if (timer_settime(alarm->timer, TIMER_ABSTIME, &when, NULL) != 0 ||
        pthread_sigmask(SIG_UNBLOCK, &ours, &alarm->old_mask) != 0) {
        unixipc_raise_errno(NULL);
        timer_delete(alarm->timer);
        return -1;
    }
    return 0;
}

static void alarm_disarm(deadline_alarm *alarm)
{
    timer_delete(alarm->timer);
    pthread_sigmask(SIG_SETMASK, &alarm->old_mask, NULL);
    /* If the caller had our signal blocked, drop a tick left pending. */
    sigset_t ours;
    sigemptyset(&ours);
    sigaddset(&ours, UNIXIPC_ALARM_SIGNAL);
    struct timespec zero = {0, 0};
    if (sigismember(&alarm->old_mask, UNIXIPC_ALARM_SIGNAL) == 1) {
        while (sigtimedwait(&ours, NULL, &zero) > 0) {
        }
    }
}

long unixipc_call_with_deadline(unixipc_blocking_call call, void *arg, int64_t deadline_ns)
{
    deadline_alarm alarm;
    int armed = 0;
    long result;
    int saved_errno;
    if (deadline_ns != UNIXIPC_NO_DEADLINE) {
        if (alarm_arm(&alarm, deadline_ns) < 0) {
            return -2;
        }
        armed = 1;
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        result = call(arg);
        saved_errno = errno;
        Py_END_ALLOW_THREADS
        if (result >= 0 || saved_errno != EINTR) {
            break;
        }
        if (unixipc_after_eintr() < 0) {
            result = -2;
            break;
        }
        if (unixipc_deadline_passed(deadline_ns)) {
            saved_errno = ETIMEDOUT;
            break;
        }
    }
    if (armed) {
        alarm_disarm(&alarm);
    }
    errno = saved_errno;
    return result;
}

/* A blocking read(2) under a deadline: what the tests use to prove the mechanism. */
typedef struct {
    int fd;
    char *buffer;
    size_t size;
} read_call;

static long do_read(void *arg)
{
    read_call *call = arg;
    return (long)read(call->fd, call->buffer, call->size);
}

static PyObject *blocking_read(PyObject *Py_UNUSED(self), PyObject *args)
{
    int fd;
    Py_ssize_t size;
    PyObject *deadline_arg;
    int64_t deadline;
    if (!PyArg_ParseTuple(args, "inO:blocking_read", &fd, &size, &deadline_arg) ||
        unixipc_parse_deadline(deadline_arg, &deadline) < 0) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size must be >= 0");
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes == NULL) {
        return NULL;
    }
    read_call call = {fd, PyBytes_AS_STRING(bytes), (size_t)size};
    long got = unixipc_call_with_deadline(do_read, &call, deadline);
    if (got < 0) {
        Py_DECREF(bytes);
        return got == -2 ? NULL : unixipc_raise_errno(NULL);
    }
    if (_PyBytes_Resize(&bytes, (Py_ssize_t)got) < 0) {
        return NULL;
    }
    return bytes;
}

static PyMethodDef deadline_methods[] = {
    {"blocking_read", blocking_read, METH_VARARGS,
     "blocking_read(fd, size, deadline_ns) -> bytes\n\n"
     "read(2) on a blocking descriptor, failing with ETIMEDOUT at the monotonic deadline."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_deadline_calls(PyObject *module)
{
    if (PyModule_AddFunctions(module, deadline_methods) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "ALARM_SIGNAL", UNIXIPC_ALARM_SIGNAL);
}
