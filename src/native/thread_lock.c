/* ThreadLock: threading.Lock for hot paths (private; used by unixipc.rpc).
 *
 * The semantics are CPython's own lock's: acquire(blocking=True, timeout=-1) lets
 * the GIL go while it waits and runs signal handlers when a signal interrupts it
 * (an exception they raise ends the wait), any thread may release, release() of an
 * unlocked lock is a RuntimeError, and it works as a context manager and under
 * threading.Condition. What differs is the cost of an uncontended pair: one
 * compare-and-swap to take it and one exchange to give it back, on a word of our
 * own, and acquire() without arguments parses none. About 25 ns a pair here against
 * 60 for threading.Lock (a semaphore, and keywords parsed on every acquire); an RPC
 * call takes five such pairs (docs/design.md, "Decisions: RPC").
 *
 * The word is the mutex of "Futexes Are Tricky" (Drepper): 0 free, 1 taken, 2 taken
 * with possible sleepers; a release that finds 2 wakes one sleeper. Private futexes:
 * the lock is for the threads of one process, as threading.Lock is.
 */
#include "common.h"

#include <linux/futex.h>
#include <math.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    uint32_t word;
} ThreadLockObject;

static PyObject *ThreadLock_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "ThreadLock() takes no arguments");
        return NULL;
    }
    return type->tp_alloc(type, 0); /* zeroed: free */
}

static void ThreadLock_dealloc(ThreadLockObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static int try_take(ThreadLockObject *self)
{
    uint32_t free_word = 0;
    return __atomic_compare_exchange_n(&self->word, &free_word, 1, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

/* Wait for the lock until `deadline` (UNIXIPC_NO_DEADLINE: no limit). 1 taken, 0 not
 * in time, -1 with an exception (a signal handler raised). */
static int wait_for_lock(ThreadLockObject *self, int64_t deadline)
{
    /* Mark it contended: whoever holds it wakes a sleeper when giving it back. */
    while (__atomic_exchange_n(&self->word, 2, __ATOMIC_ACQUIRE) != 0) {
        long result = 0;
        int error = 0;
        if (deadline != UNIXIPC_NO_DEADLINE && unixipc_monotonic_ns() >= deadline) {
            return 0;
        }
        struct timespec at, *until = NULL; /* absolute, CLOCK_MONOTONIC */
        if (deadline != UNIXIPC_NO_DEADLINE) {
            unixipc_abstime(deadline, CLOCK_MONOTONIC, &at);
            until = &at;
        }
        Py_BEGIN_ALLOW_THREADS
        result = syscall(SYS_futex, &self->word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 2,
                         until, NULL, FUTEX_BITSET_MATCH_ANY);
        error = errno;
        Py_END_ALLOW_THREADS
        if (result < 0 && error == EINTR && PyErr_CheckSignals() < 0) {
            return -1; /* a handler raised: the wait ends with its exception */
        }
    }
    return 1;
}

static PyObject *acquired(int outcome)
{
    return outcome < 0 ? NULL : PyBool_FromLong(outcome);
}

/* acquire(blocking=True, timeout=-1) -> bool, as threading.Lock.acquire. */
static PyObject *ThreadLock_acquire(ThreadLockObject *self, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs == 0 && kwnames == NULL) { /* the hot path: block until it is ours */
        if (try_take(self)) {
            Py_RETURN_TRUE;
        }
        return acquired(wait_for_lock(self, UNIXIPC_NO_DEADLINE));
    }
    static const char *const names[] = {"blocking", "timeout"};
    PyObject *values[2] = {NULL, NULL};
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)",
                     nargs + nkw);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        values[i] = args[i];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        int slot = -1;
        for (int j = 0; j < 2; j++) {
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0) {
                slot = j;
            }
        }
        if (slot < 0) {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument '%U'",
                         key);
            return NULL;
        }
        if (values[slot] != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got multiple values for argument '%s'",
                         names[slot]);
            return NULL;
        }
        values[slot] = args[nargs + i];
    }
    int blocking = 1;
    if (values[0] != NULL && (blocking = PyObject_IsTrue(values[0])) < 0) {
        return NULL;
    }
    double timeout = -1;
    if (values[1] != NULL) {
        timeout = PyFloat_AsDouble(values[1]);
        if (timeout == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (!blocking && timeout != -1) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
            return NULL;
        }
        if (isnan(timeout) || (timeout < 0 && timeout != -1)) {
            PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
            return NULL;
        }
    }
    if (try_take(self)) {
        Py_RETURN_TRUE;
    }
    if (!blocking || timeout == 0) {
        Py_RETURN_FALSE;
    }
    return acquired(wait_for_lock(self, timeout < 0 ? UNIXIPC_NO_DEADLINE
                                                     : unixipc_deadline_after(timeout)));
}

static PyObject *ThreadLock_release(ThreadLockObject *self, PyObject *Py_UNUSED(ignored))
{
    uint32_t was = __atomic_load_n(&self->word, __ATOMIC_RELAXED);
    if (was == 0) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    if (__atomic_exchange_n(&self->word, 0, __ATOMIC_RELEASE) == 2) {
        syscall(SYS_futex, &self->word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, NULL, NULL, 0);
    }
    Py_RETURN_NONE;
}

static PyObject *ThreadLock_locked(ThreadLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(__atomic_load_n(&self->word, __ATOMIC_RELAXED) != 0);
}

static PyObject *ThreadLock_enter(ThreadLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return ThreadLock_acquire(self, NULL, 0, NULL);
}

static PyObject *ThreadLock_exit(ThreadLockObject *self, PyObject *const *Py_UNUSED(args),
                                 Py_ssize_t Py_UNUSED(nargs))
{
    return ThreadLock_release(self, NULL);
}

static PyObject *ThreadLock_repr(ThreadLockObject *self)
{
    int locked = __atomic_load_n(&self->word, __ATOMIC_RELAXED) != 0;
    return PyUnicode_FromFormat("<%s %s object at %p>", locked ? "locked" : "unlocked",
                                Py_TYPE(self)->tp_name, self);
}

static PyMethodDef ThreadLock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))ThreadLock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool: as threading.Lock.acquire."},
    {"release", (PyCFunction)ThreadLock_release, METH_NOARGS,
     "release() -> None: as threading.Lock.release (RuntimeError if unlocked)."},
    {"locked", (PyCFunction)ThreadLock_locked, METH_NOARGS, "locked() -> bool"},
    {"__enter__", (PyCFunction)ThreadLock_enter, METH_NOARGS, "acquire()"},
    {"__exit__", (PyCFunction)(void (*)(void))ThreadLock_exit, METH_FASTCALL, "release()"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot ThreadLock_slots[] = {
    {Py_tp_doc, "ThreadLock(): threading.Lock whose uncontended acquire() and release() "
                "cost less than half as much (private)."},
    {Py_tp_new, ThreadLock_new},
    {Py_tp_dealloc, ThreadLock_dealloc},
    {Py_tp_repr, ThreadLock_repr},
    {Py_tp_methods, ThreadLock_methods},
    {0, NULL},
};

static PyType_Spec ThreadLock_spec = {
    .name = "unixipc._native.ThreadLock",
    .basicsize = sizeof(ThreadLockObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = ThreadLock_slots,
};

int unixipc_init_thread_lock(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &ThreadLock_spec, NULL);
    if (type == NULL || PyModule_AddObject(module, "ThreadLock", type) < 0) {
        Py_XDECREF(type);
        return -1;
    }
    return 0;
}
