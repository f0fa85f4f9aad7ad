/* POSIX semaphores, named and memory-based. System calls (library functions):
 * sem_open, sem_close, sem_unlink, sem_init (pshared), sem_wait, sem_trywait,
 * sem_clockwait (CLOCK_MONOTONIC, glibc >= 2.30: a step of the wall clock changes
 * no timeout), sem_post, sem_getvalue.
 *
 * PosixSemaphoreHandle holds the sem_t pointer. A memory-based one also holds
 * a buffer export of the memory it lives in, so that memory cannot be unmapped
 * under it. close() never unlinks and never destroys: other processes may use
 * the semaphore. A handle refuses to close while a thread waits on it. */
#include "common.h"

#include <fcntl.h>
#include <limits.h>
#include <semaphore.h>
#include <stdalign.h>
#include <sys/stat.h>

typedef struct {
    PyObject_HEAD
    sem_t *sem;       /* NULL once closed */
    int named;        /* from sem_open: sem_close it */
    int has_buffer;   /* memory-based: `buffer` is an export to release */
    Py_buffer buffer;
    Py_ssize_t waiting; /* threads inside a blocking call on it */
} PosixSemaphoreHandle;

static PyTypeObject PosixSemaphoreHandleType;

static PosixSemaphoreHandle *new_handle(void)
{
    PosixSemaphoreHandle *handle = PyObject_New(PosixSemaphoreHandle, &PosixSemaphoreHandleType);
    if (handle != NULL) {
        handle->sem = NULL;
        handle->named = 0;
        handle->has_buffer = 0;
        handle->waiting = 0;
    }
    return handle;
}

static PyObject *native_posix_sem_open(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int flags;
    unsigned int mode, value;
    if (!PyArg_ParseTuple(args, "siII:posix_sem_open", &name, &flags, &mode, &value)) {
        return NULL;
    }
    PosixSemaphoreHandle *handle = new_handle();
    if (handle == NULL) {
        return NULL;
    }
    sem_t *sem;
    Py_BEGIN_ALLOW_THREADS
    sem = (flags & O_CREAT) ? sem_open(name, flags, (mode_t)mode, value) : sem_open(name, flags);
    Py_END_ALLOW_THREADS
    if (sem == SEM_FAILED) {
        Py_DECREF(handle);
        return unixipc_raise_errno(name);
    }
    handle->sem = sem;
    handle->named = 1;
    return (PyObject *)handle;
}

static PyObject *native_posix_sem_unlink(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:posix_sem_unlink", &name)) {
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sem_unlink(name);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

/* A memory-based semaphore at `offset` in a writable buffer: checked, exported. */
static PosixSemaphoreHandle *place_in_buffer(PyObject *buffer_object, Py_ssize_t offset)
{
    PosixSemaphoreHandle *handle = new_handle();
    if (handle == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(buffer_object, &handle->buffer, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) <
        0) {
        Py_DECREF(handle);
        return NULL;
    }
    handle->has_buffer = 1;
    if (offset < 0 || handle->buffer.len < (Py_ssize_t)sizeof(sem_t) ||
        offset > handle->buffer.len - (Py_ssize_t)sizeof(sem_t)) {
        PyErr_Format(PyExc_ValueError,
                     "a semaphore needs %zd bytes at offset %zd; the buffer has %zd bytes",
                     (Py_ssize_t)sizeof(sem_t), offset, handle->buffer.len);
        Py_DECREF(handle);
        return NULL;
    }
    char *address = (char *)handle->buffer.buf + offset;
    if ((uintptr_t)address % alignof(sem_t) != 0) {
        PyErr_Format(PyExc_ValueError, "a semaphore must be %zd-byte aligned; offset %zd is not",
                     (Py_ssize_t)alignof(sem_t), offset);
        Py_DECREF(handle);
        return NULL;
    }
    handle->sem = (sem_t *)address;
    return handle;
}

static PyObject *native_posix_sem_init(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer_object;
    Py_ssize_t offset;
    unsigned int value;
    if (!PyArg_ParseTuple(args, "OnI:posix_sem_init", &buffer_object, &offset, &value)) {
        return NULL;
    }
    PosixSemaphoreHandle *handle = place_in_buffer(buffer_object, offset);
    if (handle == NULL) {
        return NULL;
    }
    if (sem_init(handle->sem, 1, value) != 0) {
        Py_DECREF(handle);
        return unixipc_raise_errno(NULL);
    }
    return (PyObject *)handle;
}

static PyObject *native_posix_sem_attach(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *buffer_object;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "On:posix_sem_attach", &buffer_object, &offset)) {
        return NULL;
    }
    return (PyObject *)place_in_buffer(buffer_object, offset);
}

/* ---- handle methods ---------------------------------------------------- */

static int check_usable(PosixSemaphoreHandle *self)
{
    if (self->sem == NULL) {
        PyErr_SetString(PyExc_ValueError, "the semaphore handle is closed");
        return -1;
    }
    return 0;
}

/* acquire(deadline_ns) -> bool: True once acquired, False if the deadline passed. */
static PyObject *handle_acquire(PosixSemaphoreHandle *self, PyObject *arg)
{
    int64_t deadline;
    if (check_usable(self) < 0 || unixipc_parse_deadline(arg, &deadline) < 0) {
        return NULL;
    }
    int rc;
    self->waiting++;
    for (;;) {
        if (deadline == UNIXIPC_NO_DEADLINE) {
            Py_BEGIN_ALLOW_THREADS
            rc = sem_wait(self->sem);
            Py_END_ALLOW_THREADS
        } else {
            struct timespec at;
            at.tv_sec = (time_t)(deadline / 1000000000);
            at.tv_nsec = (long)(deadline % 1000000000);
            Py_BEGIN_ALLOW_THREADS
            rc = sem_clockwait(self->sem, CLOCK_MONOTONIC, &at);
            Py_END_ALLOW_THREADS
        }
        if (rc == 0) {
            self->waiting--;
            Py_RETURN_TRUE;
        }
        if (errno == ETIMEDOUT) {
            self->waiting--;
            Py_RETURN_FALSE;
        }
        if (errno != EINTR) {
            self->waiting--;
            return unixipc_raise_errno(NULL);
        }
        if (unixipc_after_eintr() < 0) {
            self->waiting--;
            return NULL;
        }
    }
}

/* try_acquire() -> bool: sem_trywait; False if it would block. */
static PyObject *handle_try_acquire(PosixSemaphoreHandle *self, PyObject *Py_UNUSED(ignored))
{
    if (check_usable(self) < 0) {
        return NULL;
    }
    for (;;) {
        if (sem_trywait(self->sem) == 0) {
            Py_RETURN_TRUE;
        }
        if (errno == EAGAIN) {
            Py_RETURN_FALSE;
        }
        if (errno != EINTR) {
            return unixipc_raise_errno(NULL);
        }
        if (unixipc_after_eintr() < 0) {
            return NULL;
        }
    }
}

static PyObject *handle_release(PosixSemaphoreHandle *self, PyObject *Py_UNUSED(ignored))
{
    if (check_usable(self) < 0) {
        return NULL;
    }
    if (sem_post(self->sem) != 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *handle_value(PosixSemaphoreHandle *self, PyObject *Py_UNUSED(ignored))
{
    int value;
    if (check_usable(self) < 0) {
        return NULL;
    }
    if (sem_getvalue(self->sem, &value) != 0) {
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(value);
}

static void release_handle(PosixSemaphoreHandle *self)
{
    sem_t *sem = self->sem;
    self->sem = NULL;
    if (sem != NULL && self->named) {
        sem_close(sem);
    }
    if (self->has_buffer) {
        self->has_buffer = 0;
        PyBuffer_Release(&self->buffer);
    }
}

static PyObject *handle_close(PosixSemaphoreHandle *self, PyObject *Py_UNUSED(ignored))
{
    if (self->waiting > 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot close the semaphore while threads wait on it");
        return NULL;
    }
    release_handle(self);
    Py_RETURN_NONE;
}

static void handle_dealloc(PosixSemaphoreHandle *self)
{
    release_handle(self);
    PyObject_Free(self);
}

static PyMethodDef handle_methods[] = {
    {"acquire", (PyCFunction)handle_acquire, METH_O,
     "acquire(deadline_ns) -> bool\n\nsem_wait (deadline -1) or sem_clockwait on "
     "CLOCK_MONOTONIC; False when the deadline passed."},
    {"try_acquire", (PyCFunction)handle_try_acquire, METH_NOARGS,
     "try_acquire() -> bool\n\nsem_trywait; False if it would block."},
    {"release", (PyCFunction)handle_release, METH_NOARGS, "release() -> None\n\nsem_post."},
    {"value", (PyCFunction)handle_value, METH_NOARGS, "value() -> int\n\nsem_getvalue."},
    {"close", (PyCFunction)handle_close, METH_NOARGS,
     "close() -> None\n\nsem_close (named) or release the memory (memory-based). Idempotent."},
    {NULL, NULL, 0, NULL},
};

static PyObject *handle_get_waiting(PosixSemaphoreHandle *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->waiting);
}

static PyGetSetDef handle_getset[] = {
    {"waiting", (getter)handle_get_waiting, NULL,
     "Threads of this process inside acquire() on this handle.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PosixSemaphoreHandleType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "unixipc._native.PosixSemaphoreHandle",
    .tp_doc = "A sem_t: from posix_sem_open, posix_sem_init or posix_sem_attach.",
    .tp_basicsize = sizeof(PosixSemaphoreHandle),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)handle_dealloc,
    .tp_methods = handle_methods,
    .tp_getset = handle_getset,
};

static PyMethodDef posix_sem_methods[] = {
    {"posix_sem_open", native_posix_sem_open, METH_VARARGS,
     "posix_sem_open(name, flags, mode, value) -> PosixSemaphoreHandle\n\nsem_open."},
    {"posix_sem_unlink", native_posix_sem_unlink, METH_VARARGS,
     "posix_sem_unlink(name) -> None\n\nsem_unlink."},
    {"posix_sem_init", native_posix_sem_init, METH_VARARGS,
     "posix_sem_init(buffer, offset, value) -> PosixSemaphoreHandle\n\n"
     "sem_init(pshared=1) at offset in a writable buffer."},
    {"posix_sem_attach", native_posix_sem_attach, METH_VARARGS,
     "posix_sem_attach(buffer, offset) -> PosixSemaphoreHandle\n\n"
     "Use a semaphore already initialized at offset in a writable buffer."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_posix_sem(PyObject *module)
{
    if (PyType_Ready(&PosixSemaphoreHandleType) < 0 ||
        PyModule_AddObjectRef(module, "PosixSemaphoreHandle",
                              (PyObject *)&PosixSemaphoreHandleType) < 0 ||
        PyModule_AddIntConstant(module, "POSIX_SEM_SIZE", (long)sizeof(sem_t)) < 0 ||
        PyModule_AddIntConstant(module, "POSIX_SEM_ALIGNMENT", (long)alignof(sem_t)) < 0 ||
        PyModule_AddIntConstant(module, "POSIX_SEM_VALUE_MAX", (long)SEM_VALUE_MAX) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, posix_sem_methods);
}
