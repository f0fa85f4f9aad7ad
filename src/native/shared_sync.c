/* Process-shared synchronization objects placed in shared memory.
 * Library and system calls: pthread_mutexattr_setpshared / setrobust / settype,
 * pthread_mutex_init, pthread_mutex_clocklock,
 * pthread_mutex_unlock, pthread_mutex_consistent (robust, error-checking,
 * process-shared mutexes); futex(2) FUTEX_WAIT_BITSET, FUTEX_WAKE and
 * FUTEX_WAKE_OP on shared (not private) words; C11 atomics on 32-bit words.
 *
 * Every function takes a writable buffer (anything with the buffer protocol)
 * and a byte offset into it; the address is checked for bounds and alignment
 * on every call, and the buffer export is held for the whole call, so the
 * memory cannot be unmapped while a thread sleeps in it. Mutex and futex calls
 * return the pthread/futex result code (0, EOWNERDEAD, ETIMEDOUT, ...) for the
 * Python layer to interpret; only bad arguments and a raising signal handler
 * raise here.
 */
#include "common.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A blocking mutex wait wakes this often to run Python's signal handlers:
 * glibc restarts the futex wait inside pthread_mutex_lock after a signal, so
 * without this Ctrl-C could not interrupt a thread waiting for a mutex. */
#define SIGNAL_CHECK_NS 50000000 /* 50 ms */

typedef struct {
    Py_buffer view;
    void *address;
} region;

/* Borrow `size` bytes at `offset` of a writable buffer, aligned to `alignment`. */
static int region_get(PyObject *buffer, Py_ssize_t offset, size_t size, size_t alignment,
                      region *out)
{
    if (PyObject_GetBuffer(buffer, &out->view, PyBUF_WRITABLE) < 0) {
        return -1;
    }
    if (offset < 0 || (size_t)out->view.len < size ||
        (size_t)offset > (size_t)out->view.len - size) {
        PyErr_Format(PyExc_ValueError,
                     "offset %zd with %zu bytes lies outside the buffer of %zd bytes", offset,
                     size, out->view.len);
        PyBuffer_Release(&out->view);
        return -1;
    }
    out->address = (char *)out->view.buf + offset;
    if ((uintptr_t)out->address % alignment != 0) {
        PyErr_Format(PyExc_ValueError, "offset %zd is not aligned to %zu bytes in memory", offset,
                     alignment);
        PyBuffer_Release(&out->view);
        return -1;
    }
    return 0;
}

static int parse_region(PyObject *args, const char *format, size_t size, size_t alignment,
                        region *out)
{
    PyObject *buffer;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, format, &buffer, &offset)) {
        return -1;
    }
    return region_get(buffer, offset, size, alignment, out);
}

/* Try once without waiting. Not pthread_mutex_trylock: on a robust mutex that is
 * ENOTRECOVERABLE, glibc's trylock returns that error but leaves the lock word
 * owned by the caller, so every later locker would wait for ever. The timed
 * lock with a deadline in the past takes the same fast path and cleans up. */
static int lock_now(pthread_mutex_t *mutex)
{
    static const struct timespec past = {0, 0};
    int rc = pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &past);
    return rc == ETIMEDOUT ? EBUSY : rc;
}

#define MUTEX_REGION(args, name, out)                                                           \
    parse_region((args), "On:" name, sizeof(pthread_mutex_t), _Alignof(pthread_mutex_t), (out))

/* ---- robust mutexes ----------------------------------------------------------------- */

static PyObject *mutex_init(PyObject *Py_UNUSED(self), PyObject *args)
{
    region r;
    if (MUTEX_REGION(args, "mutex_init", &r) < 0) {
        return NULL;
    }
    pthread_mutexattr_t attributes;
    int rc = pthread_mutexattr_init(&attributes);
    if (rc == 0) {
        rc = pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
        if (rc == 0) {
            rc = pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
        }
        if (rc == 0) {
            rc = pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_ERRORCHECK);
        }
        if (rc == 0) {
            rc = pthread_mutex_init((pthread_mutex_t *)r.address, &attributes);
        }
        pthread_mutexattr_destroy(&attributes);
    }
    PyBuffer_Release(&r.view);
    if (rc != 0) {
        errno = rc;
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *mutex_lock(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer, *deadline_arg;
    Py_ssize_t offset;
    int64_t deadline;
    region r;
    if (!PyArg_ParseTuple(args, "OnO:mutex_lock", &buffer, &offset, &deadline_arg) ||
        unixipc_parse_deadline(deadline_arg, &deadline) < 0 ||
        region_get(buffer, offset, sizeof(pthread_mutex_t), _Alignof(pthread_mutex_t), &r) < 0) {
        return NULL;
    }
    pthread_mutex_t *mutex = r.address;
    /* Uncontended: no need to release the GIL. */
    int rc = lock_now(mutex);
    while (rc == EBUSY) {
        int64_t until = unixipc_monotonic_ns() + SIGNAL_CHECK_NS;
        if (deadline != UNIXIPC_NO_DEADLINE && deadline < until) {
            until = deadline;
        }
        struct timespec at = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
        Py_BEGIN_ALLOW_THREADS
        rc = pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &at);
        Py_END_ALLOW_THREADS
        if (rc == ETIMEDOUT && !unixipc_deadline_passed(deadline)) {
            if (unixipc_after_eintr() < 0) {
                PyBuffer_Release(&r.view);
                return NULL;
            }
            rc = EBUSY; /* a slice ended, not the caller's time */
        }
    }
    PyBuffer_Release(&r.view);
    return PyLong_FromLong(rc);
}

static PyObject *mutex_trylock(PyObject *Py_UNUSED(self), PyObject *args)
{
    region r;
    if (MUTEX_REGION(args, "mutex_trylock", &r) < 0) {
        return NULL;
    }
    int rc = lock_now((pthread_mutex_t *)r.address);
    PyBuffer_Release(&r.view);
    return PyLong_FromLong(rc);
}

static PyObject *mutex_unlock(PyObject *Py_UNUSED(self), PyObject *args)
{
    region r;
    if (MUTEX_REGION(args, "mutex_unlock", &r) < 0) {
        return NULL;
    }
    int rc = pthread_mutex_unlock((pthread_mutex_t *)r.address);
    PyBuffer_Release(&r.view);
    return PyLong_FromLong(rc);
}

static PyObject *mutex_consistent(PyObject *Py_UNUSED(self), PyObject *args)
{
    region r;
    if (MUTEX_REGION(args, "mutex_consistent", &r) < 0) {
        return NULL;
    }
    int rc = pthread_mutex_consistent((pthread_mutex_t *)r.address);
    PyBuffer_Release(&r.view);
    return PyLong_FromLong(rc);
}

/* ---- futexes -------------------------------------------------------------------------- */

#define WORD_REGION(args, name, out)                                                            \
    parse_region((args), "On:" name, sizeof(uint32_t), _Alignof(uint32_t), (out))

static PyObject *futex_wait(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer, *deadline_arg;
    Py_ssize_t offset;
    unsigned int expected;
    int64_t deadline;
    region r;
    if (!PyArg_ParseTuple(args, "OnIO:futex_wait", &buffer, &offset, &expected, &deadline_arg) ||
        unixipc_parse_deadline(deadline_arg, &deadline) < 0 ||
        region_get(buffer, offset, sizeof(uint32_t), _Alignof(uint32_t), &r) < 0) {
        return NULL;
    }
    struct timespec at = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
    int rc;
    for (;;) {
        long result;
        Py_BEGIN_ALLOW_THREADS
        /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
        result = syscall(SYS_futex, r.address, FUTEX_WAIT_BITSET, expected,
                         deadline == UNIXIPC_NO_DEADLINE ? NULL : &at, NULL,
                         FUTEX_BITSET_MATCH_ANY);
        rc = result == 0 ? 0 : errno;
        Py_END_ALLOW_THREADS
        if (rc != EINTR) {
            break;
        }
        if (unixipc_after_eintr() < 0) {
            PyBuffer_Release(&r.view);
            return NULL;
        }
    }
    PyBuffer_Release(&r.view);
    if (rc != 0 && rc != EAGAIN && rc != ETIMEDOUT) {
        errno = rc;
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(rc);
}

static PyObject *futex_wake(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer;
    Py_ssize_t offset;
    int count;
    region r;
    if (!PyArg_ParseTuple(args, "Oni:futex_wake", &buffer, &offset, &count) ||
        region_get(buffer, offset, sizeof(uint32_t), _Alignof(uint32_t), &r) < 0) {
        return NULL;
    }
    long woken = syscall(SYS_futex, r.address, FUTEX_WAKE, count, NULL, NULL, 0);
    PyBuffer_Release(&r.view);
    if (woken < 0) {
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(woken);
}

/* Add to a word and wake its waiters in ONE system call (FUTEX_WAKE_OP with both
 * addresses the same): a process killed around it either did both or neither,
 * so no waiter can sleep on a value that changed without a wake-up. */
static PyObject *futex_add_and_wake(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer;
    Py_ssize_t offset;
    int add, count;
    region r;
    if (!PyArg_ParseTuple(args, "Onii:futex_add_and_wake", &buffer, &offset, &add, &count) ||
        region_get(buffer, offset, sizeof(uint32_t), _Alignof(uint32_t), &r) < 0) {
        return NULL;
    }
    if (add < 0 || add > 2047) { /* the operation's argument has 12 signed bits */
        PyBuffer_Release(&r.view);
        PyErr_SetString(PyExc_ValueError, "add must be between 0 and 2047");
        return NULL;
    }
    long woken = syscall(SYS_futex, r.address, FUTEX_WAKE_OP, count, (void *)0, r.address,
                         FUTEX_OP(FUTEX_OP_ADD, add, FUTEX_OP_CMP_EQ, 0));
    PyBuffer_Release(&r.view);
    if (woken < 0) {
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(woken);
}

/* ---- atomics ----------------------------------------------------------------------- */

static PyObject *atomic_load_u32(PyObject *Py_UNUSED(self), PyObject *args)
{
    region r;
    if (WORD_REGION(args, "atomic_load_u32", &r) < 0) {
        return NULL;
    }
    uint32_t value = atomic_load_explicit((_Atomic uint32_t *)r.address, memory_order_acquire);
    PyBuffer_Release(&r.view);
    return PyLong_FromUnsignedLong(value);
}

static PyObject *atomic_store_u32(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer;
    Py_ssize_t offset;
    unsigned int value;
    region r;
    if (!PyArg_ParseTuple(args, "OnI:atomic_store_u32", &buffer, &offset, &value) ||
        region_get(buffer, offset, sizeof(uint32_t), _Alignof(uint32_t), &r) < 0) {
        return NULL;
    }
    atomic_store_explicit((_Atomic uint32_t *)r.address, value, memory_order_release);
    PyBuffer_Release(&r.view);
    Py_RETURN_NONE;
}

static PyObject *atomic_cas_u32(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer;
    Py_ssize_t offset;
    unsigned int expected, desired;
    region r;
    if (!PyArg_ParseTuple(args, "OnII:atomic_cas_u32", &buffer, &offset, &expected, &desired) ||
        region_get(buffer, offset, sizeof(uint32_t), _Alignof(uint32_t), &r) < 0) {
        return NULL;
    }
    uint32_t seen = expected;
    int swapped = atomic_compare_exchange_strong_explicit(
        (_Atomic uint32_t *)r.address, &seen, desired, memory_order_acq_rel, memory_order_acquire);
    PyBuffer_Release(&r.view);
    return PyBool_FromLong(swapped);
}

static PyObject *buffer_address(PyObject *Py_UNUSED(self), PyObject *buffer)
{
    Py_buffer view;
    if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *address = PyLong_FromVoidPtr(view.buf);
    PyBuffer_Release(&view);
    return address;
}

static PyMethodDef shared_sync_methods[] = {
    {"mutex_init", mutex_init, METH_VARARGS,
     "mutex_init(buffer, offset) -> None\n\n"
     "Initialize a robust, error-checking, process-shared pthread mutex at offset."},
    {"mutex_lock", mutex_lock, METH_VARARGS,
     "mutex_lock(buffer, offset, deadline_ns) -> int\n\n"
     "Lock, waiting until the monotonic deadline; returns the pthread result code."},
    {"mutex_trylock", mutex_trylock, METH_VARARGS,
     "mutex_trylock(buffer, offset) -> int\n\n"
     "Try to lock without waiting; returns the pthread result code (EBUSY if held)."},
    {"mutex_unlock", mutex_unlock, METH_VARARGS,
     "mutex_unlock(buffer, offset) -> int\n\nUnlock; returns the pthread result code."},
    {"mutex_consistent", mutex_consistent, METH_VARARGS,
     "mutex_consistent(buffer, offset) -> int\n\n"
     "Mark a mutex whose owner died consistent again; returns the pthread result code."},
    {"futex_wait", futex_wait, METH_VARARGS,
     "futex_wait(buffer, offset, expected, deadline_ns) -> int\n\n"
     "Sleep while the shared word equals expected: 0 (woken), EAGAIN or ETIMEDOUT."},
    {"futex_wake", futex_wake, METH_VARARGS,
     "futex_wake(buffer, offset, count) -> int\n\nWake up to count waiters; returns how many."},
    {"futex_add_and_wake", futex_add_and_wake, METH_VARARGS,
     "futex_add_and_wake(buffer, offset, add, count) -> int\n\n"
     "Atomically add to the word and wake up to count waiters, in one system call."},
    {"atomic_load_u32", atomic_load_u32, METH_VARARGS,
     "atomic_load_u32(buffer, offset) -> int\n\nAn acquire load of a 32-bit word."},
    {"atomic_store_u32", atomic_store_u32, METH_VARARGS,
     "atomic_store_u32(buffer, offset, value) -> None\n\nA release store of a 32-bit word."},
    {"atomic_cas_u32", atomic_cas_u32, METH_VARARGS,
     "atomic_cas_u32(buffer, offset, expected, desired) -> bool\n\n"
     "Compare and swap a 32-bit word; True if it held expected."},
    {"buffer_address", buffer_address, METH_O,
     "buffer_address(buffer) -> int\n\nThe address of a buffer's first byte."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_shared_sync(PyObject *module)
{
    if (PyModule_AddFunctions(module, shared_sync_methods) < 0 ||
        PyModule_AddIntConstant(module, "MUTEX_SIZE", (long)sizeof(pthread_mutex_t)) < 0 ||
        PyModule_AddIntConstant(module, "MUTEX_ALIGNMENT", (long)_Alignof(pthread_mutex_t)) < 0) {
        return -1;
    }
    return 0;
}
