/* POSIX shared memory names. System calls: shm_open, shm_unlink.
 * Mapping, sizing and closing use Python's mmap and os modules. */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static PyObject *native_shm_open(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    int flags;
    unsigned int mode;
    if (!PyArg_ParseTuple(args, "siI:shm_open", &name, &flags, &mode)) {
        return NULL;
    }
    int fd;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        fd = shm_open(name, flags | O_CLOEXEC, (mode_t)mode);
        Py_END_ALLOW_THREADS
        if (fd >= 0) {
            return PyLong_FromLong(fd);
        }
        if (errno != EINTR || unixipc_after_eintr() < 0) {
            return errno == EINTR ? NULL : unixipc_raise_errno(name);
        }
    }
}

static PyObject *native_shm_unlink(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:shm_unlink", &name)) {
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = shm_unlink(name);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        return unixipc_raise_errno(name);
    }
    Py_RETURN_NONE;
}

static PyMethodDef posix_shm_methods[] = {
    {"shm_open", native_shm_open, METH_VARARGS,
     "shm_open(name, flags, mode) -> fd\n\nOpen a POSIX shared memory object (O_CLOEXEC added)."},
    {"shm_unlink", native_shm_unlink, METH_VARARGS,
     "shm_unlink(name) -> None\n\nRemove a POSIX shared memory object's name."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_posix_shm(PyObject *module)
{
    return PyModule_AddFunctions(module, posix_shm_methods);
}
