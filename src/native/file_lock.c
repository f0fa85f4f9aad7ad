/* File locks. System calls: flock(2); fcntl(2) F_SETLK, F_SETLKW, F_GETLK (POSIX
 * record locks, owned by the process) and F_OFD_SETLK, F_OFD_SETLKW, F_OFD_GETLK
 * (open-file-description locks). The kernel has no timeout for the blocking
 * forms: they run under unixipc_call_with_deadline. struct flock's layout is
 * platform-specific, which is why these live in C. */
#include "common.h"

#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#ifdef F_OFD_SETLK
#define HAVE_OFD_LOCKS 1
#else
#define HAVE_OFD_LOCKS 0
#define F_OFD_GETLK (-1)
#define F_OFD_SETLK (-1)
#define F_OFD_SETLKW (-1)
#endif

typedef struct {
    int fd;
    int operation;
} flock_call;

static long do_flock(void *arg)
{
    flock_call *call = arg;
    return flock(call->fd, call->operation);
}

static PyObject *native_flock(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *deadline_arg;
    int64_t deadline;
    flock_call call;
    if (!PyArg_ParseTuple(args, "iiO:flock", &call.fd, &call.operation, &deadline_arg) ||
        unixipc_parse_deadline(deadline_arg, &deadline) < 0) {
        return NULL;
    }
    long rc = unixipc_call_with_deadline(do_flock, &call, deadline);
    if (rc < 0) {
        return rc == -2 ? NULL : unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

typedef struct {
    int fd;
    int command;
    struct flock lock;
} fcntl_call;

static long do_fcntl(void *arg)
{
    fcntl_call *call = arg;
    return fcntl(call->fd, call->command, &call->lock);
}

static int fill_lock(struct flock *lock, int type, long long start, long long length)
{
    memset(lock, 0, sizeof *lock); /* l_pid must be 0 for OFD locks */
    lock->l_type = (short)type;
    lock->l_whence = SEEK_SET;
    lock->l_start = (off_t)start;
    lock->l_len = (off_t)length;
    if ((long long)lock->l_start != start || (long long)lock->l_len != length) {
        PyErr_SetString(PyExc_OverflowError, "start or length does not fit in off_t");
        return -1;
    }
    return 0;
}

static int ofd_command(int ofd, int posix_command, int ofd_command)
{
    if (ofd && !HAVE_OFD_LOCKS) {
        errno = EINVAL;
        return -1;
    }
    return ofd ? ofd_command : posix_command;
}

static PyObject *record_lock(PyObject *Py_UNUSED(self), PyObject *args)
{
    int ofd, type, wait;
    long long start, length;
    PyObject *deadline_arg;
    int64_t deadline;
    fcntl_call call;
    if (!PyArg_ParseTuple(args, "ipiLLpO:record_lock", &call.fd, &ofd, &type, &start, &length,
                          &wait, &deadline_arg) ||
        unixipc_parse_deadline(deadline_arg, &deadline) < 0 ||
        fill_lock(&call.lock, type, start, length) < 0) {
        return NULL;
    }
    call.command = wait ? ofd_command(ofd, F_SETLKW, F_OFD_SETLKW)
                        : ofd_command(ofd, F_SETLK, F_OFD_SETLK);
    if (call.command == -1) {
        return unixipc_raise_errno(NULL);
    }
    long rc;
    if (wait) {
        rc = unixipc_call_with_deadline(do_fcntl, &call, deadline);
    } else {
        rc = do_fcntl(&call);
    }
    if (rc < 0) {
        return rc == -2 ? NULL : unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *record_getlk(PyObject *Py_UNUSED(self), PyObject *args)
{
    int fd, ofd, type;
    long long start, length;
    struct flock lock;
    if (!PyArg_ParseTuple(args, "ipiLL:record_getlk", &fd, &ofd, &type, &start, &length) ||
        fill_lock(&lock, type, start, length) < 0) {
        return NULL;
    }
    int command = ofd_command(ofd, F_GETLK, F_OFD_GETLK);
    if (command == -1 || fcntl(fd, command, &lock) != 0) {
        return unixipc_raise_errno(NULL);
    }
    if (lock.l_type == F_UNLCK) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(iiLL)", (int)lock.l_type, (int)lock.l_pid, (long long)lock.l_start,
                         (long long)lock.l_len);
}

static PyMethodDef file_lock_methods[] = {
    {"flock", native_flock, METH_VARARGS,
     "flock(fd, operation, deadline_ns) -> None\n\n"
     "flock(2); a blocking request fails with ETIMEDOUT at the monotonic deadline."},
    {"record_lock", record_lock, METH_VARARGS,
     "record_lock(fd, ofd, type, start, length, wait, deadline_ns) -> None\n\n"
     "fcntl F_SETLK/F_SETLKW (or the F_OFD_ forms); a waiting request fails with\n"
     "ETIMEDOUT at the monotonic deadline."},
    {"record_getlk", record_getlk, METH_VARARGS,
     "record_getlk(fd, ofd, type, start, length) -> (type, pid, start, length) | None\n\n"
     "fcntl F_GETLK (or F_OFD_GETLK): the first lock that would block this request."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_file_lock(PyObject *module)
{
    if (PyModule_AddFunctions(module, file_lock_methods) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "HAVE_OFD_LOCKS", HAVE_OFD_LOCKS);
}
