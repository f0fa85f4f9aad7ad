/* System V semaphore sets. System calls: semget, semop/semtimedop, semctl
 * (IPC_STAT, IPC_SET, IPC_RMID, GETALL, SETALL, GETVAL, SETVAL, GETNCNT, GETZCNT, GETPID).
 *
 * Sets are plain integers (key, id). sysv_sem_op applies a list of
 * (index, delta) atomically, with SEM_UNDO and IPC_NOWAIT as asked, and with
 * an absolute CLOCK_MONOTONIC deadline turned into semtimedop's relative
 * timeout on every attempt, so that a retry after EINTR gets only the time
 * that is left. It runs with the GIL released. */
#include "common.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>

/* The caller defines semun (semctl(2)). */
union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

/* Plenty for any set that fits SEMMSL's default; larger ones use the heap. */
#define STACK_ITEMS 64

static PyObject *native_sysv_sem_create(PyObject *Py_UNUSED(self), PyObject *args)
{
    int key, count;
    unsigned int permissions;
    PyObject *created;
    if (!PyArg_ParseTuple(args, "iiIO!:sysv_sem_create", &key, &count, &permissions,
                          &PyList_Type, &created)) {
        return NULL;
    }
    int id = semget((key_t)key, count, IPC_CREAT | IPC_EXCL | (int)(permissions & 0777));
    if (id < 0) {
        return unixipc_raise_errno(NULL);
    }
    if (unixipc_note_created(created, id) < 0) {
        semctl(id, 0, IPC_RMID);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *native_sysv_sem_find(PyObject *Py_UNUSED(self), PyObject *args)
{
    int key;
    if (!PyArg_ParseTuple(args, "i:sysv_sem_find", &key)) {
        return NULL;
    }
    int id = semget((key_t)key, 0, 0);
    if (id < 0) {
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(id);
}

static int stat_set(int id, struct semid_ds *status)
{
    union semun arg = {.buf = status};
    if (semctl(id, 0, IPC_STAT, arg) < 0) {
        unixipc_raise_errno(NULL);
        return -1;
    }
    return 0;
}

static PyObject *native_sysv_sem_stat(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    struct semid_ds status;
    if (!PyArg_ParseTuple(args, "i:sysv_sem_stat", &id) || stat_set(id, &status) < 0) {
        return NULL;
    }
    /* key, uid, gid, cuid, cgid, mode, nsems, otime, ctime */
    return Py_BuildValue("(iIIIIIkLL)", (int)status.sem_perm.__key, status.sem_perm.uid,
                         status.sem_perm.gid, status.sem_perm.cuid, status.sem_perm.cgid,
                         (unsigned int)status.sem_perm.mode, (unsigned long)status.sem_nsems,
                         (long long)status.sem_otime, (long long)status.sem_ctime);
}

static PyObject *native_sysv_sem_set(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    unsigned int gid, mode;
    struct semid_ds status;
    if (!PyArg_ParseTuple(args, "iII:sysv_sem_set", &id, &gid, &mode) ||
        stat_set(id, &status) < 0) {
        return NULL;
    }
    status.sem_perm.gid = (gid_t)gid;
    status.sem_perm.mode = (unsigned short)(mode & 0777);
    union semun arg = {.buf = &status};
    if (semctl(id, 0, IPC_SET, arg) < 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *native_sysv_sem_remove(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    if (!PyArg_ParseTuple(args, "i:sysv_sem_remove", &id)) {
        return NULL;
    }
    if (semctl(id, 0, IPC_RMID) < 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

/* Fill `ops` from a sequence of (index, delta) pairs, checked against the set's size. */
static int parse_operations(PyObject *sequence, struct sembuf *ops, Py_ssize_t count, long size,
                            short flags)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyLong_Check(PyTuple_GET_ITEM(item, 0)) || !PyLong_Check(PyTuple_GET_ITEM(item, 1)) ||
            PyBool_Check(PyTuple_GET_ITEM(item, 0)) || PyBool_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_Format(PyExc_TypeError,
                         "each operation must be a tuple (index, delta) of ints, not %R", item);
            return -1;
        }
        long index = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        long delta = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if ((index == -1 || delta == -1) && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return -1;
            }
            PyErr_Clear();
            index = -1; /* reported as out of range below */
        }
        if (index < 0 || index >= size) {
            PyErr_Format(PyExc_ValueError, "index %R is outside the set of %ld semaphores",
                         PyTuple_GET_ITEM(item, 0), size);
            return -1;
        }
        if (delta < -SHRT_MAX || delta > SHRT_MAX) {
            PyErr_Format(PyExc_ValueError, "delta %R is beyond +-%d", PyTuple_GET_ITEM(item, 1),
                         SHRT_MAX);
            return -1;
        }
        ops[i].sem_num = (unsigned short)index;
        ops[i].sem_op = (short)delta;
        ops[i].sem_flg = flags;
    }
    return 0;
}

/* sysv_sem_op(id, operations, size, undo, nowait, deadline_ns) -> None */
static PyObject *native_sysv_sem_op(PyObject *Py_UNUSED(self), PyObject *const *args,
                                    Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "sysv_sem_op(id, operations, size, undo, nowait, deadline_ns)");
        return NULL;
    }
    long id = PyLong_AsLong(args[0]);
    if (id == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (id < 0 || id > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "id out of range");
        return NULL;
    }
    long size = PyLong_AsLong(args[2]);
    int undo = PyObject_IsTrue(args[3]);
    int nowait = PyObject_IsTrue(args[4]);
    int64_t deadline;
    if ((size == -1 && PyErr_Occurred()) || undo < 0 || nowait < 0 ||
        unixipc_parse_deadline(args[5], &deadline) < 0) {
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(args[1], "operations must be a sequence");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    struct sembuf stack_ops[STACK_ITEMS];
    struct sembuf *ops = stack_ops;
    if (count == 0) {
        Py_DECREF(sequence);
        PyErr_SetString(PyExc_ValueError, "operations must not be empty");
        return NULL;
    }
    if (count > STACK_ITEMS) {
        ops = PyMem_Malloc((size_t)count * sizeof(*ops));
        if (ops == NULL) {
            Py_DECREF(sequence);
            return PyErr_NoMemory();
        }
    }
    short flags = (short)((undo ? SEM_UNDO : 0) | (nowait ? IPC_NOWAIT : 0));
    PyObject *result = NULL;
    if (parse_operations(sequence, ops, count, size, flags) < 0) {
        goto done;
    }
    for (;;) {
        int rc;
        if (deadline == UNIXIPC_NO_DEADLINE) {
            Py_BEGIN_ALLOW_THREADS
            rc = semop((int)id, ops, (size_t)count);
            Py_END_ALLOW_THREADS
        } else {
            /* semtimedop's timeout is relative: recompute it on every attempt.
             * Zero left still tries once without blocking. */
            int64_t left = deadline - unixipc_monotonic_ns();
            if (left < 0) {
                left = 0;
            }
            struct timespec timeout = {.tv_sec = (time_t)(left / 1000000000),
                                       .tv_nsec = (long)(left % 1000000000)};
            Py_BEGIN_ALLOW_THREADS
            rc = semtimedop((int)id, ops, (size_t)count, &timeout);
            Py_END_ALLOW_THREADS
        }
        if (rc == 0) {
            result = Py_NewRef(Py_None);
            break;
        }
        if (errno != EINTR) {
            unixipc_raise_errno(NULL); /* EAGAIN: would block, or the time ran out */
            break;
        }
        if (unixipc_after_eintr() < 0) {
            break;
        }
    }
done:
    if (ops != stack_ops) {
        PyMem_Free(ops);
    }
    Py_DECREF(sequence);
    return result;
}

/* The set's size from IPC_STAT: GETALL and SETALL move exactly that many values. */
static int set_size(int id, Py_ssize_t *count)
{
    struct semid_ds status;
    if (stat_set(id, &status) < 0) {
        return -1;
    }
    *count = (Py_ssize_t)status.sem_nsems;
    return 0;
}

static PyObject *native_sysv_sem_getall(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "i:sysv_sem_getall", &id) || set_size(id, &count) < 0) {
        return NULL;
    }
    unsigned short *values = PyMem_Calloc((size_t)count + 1, sizeof(*values));
    if (values == NULL) {
        return PyErr_NoMemory();
    }
    union semun arg = {.array = values};
    PyObject *result = NULL;
    if (semctl(id, 0, GETALL, arg) < 0) {
        unixipc_raise_errno(NULL);
    } else if ((result = PyTuple_New(count)) != NULL) {
        for (Py_ssize_t i = 0; i < count; i++) {
            PyTuple_SET_ITEM(result, i, PyLong_FromLong(values[i]));
        }
    }
    PyMem_Free(values);
    return result;
}

static PyObject *native_sysv_sem_setall(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    PyObject *given;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "iO:sysv_sem_setall", &id, &given) || set_size(id, &count) < 0) {
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(given, "values must be a sequence");
    if (sequence == NULL) {
        return NULL;
    }
    if (PySequence_Fast_GET_SIZE(sequence) != count) {
        Py_DECREF(sequence);
        return PyErr_Format(PyExc_ValueError, "the set has %zd semaphores, got %zd values", count,
                            PySequence_Fast_GET_SIZE(sequence));
    }
    unsigned short *values = PyMem_Calloc((size_t)count + 1, sizeof(*values));
    if (values == NULL) {
        Py_DECREF(sequence);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        long value = PyLong_AsLong(PySequence_Fast_GET_ITEM(sequence, i));
        if (value == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (value < 0 || value > USHRT_MAX) {
            PyErr_SetString(PyExc_ValueError, "value out of range");
            goto done;
        }
        values[i] = (unsigned short)value;
    }
    union semun arg = {.array = values};
    if (semctl(id, 0, SETALL, arg) < 0) {
        unixipc_raise_errno(NULL);
    } else {
        result = Py_NewRef(Py_None);
    }
done:
    PyMem_Free(values);
    Py_DECREF(sequence);
    return result;
}

static PyObject *get_one(PyObject *args, const char *format, int command)
{
    int id, index;
    if (!PyArg_ParseTuple(args, format, &id, &index)) {
        return NULL;
    }
    int value = semctl(id, index, command);
    if (value < 0) {
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(value);
}

static PyObject *native_sysv_sem_getval(PyObject *Py_UNUSED(self), PyObject *args)
{
    return get_one(args, "ii:sysv_sem_getval", GETVAL);
}

static PyObject *native_sysv_sem_getncnt(PyObject *Py_UNUSED(self), PyObject *args)
{
    return get_one(args, "ii:sysv_sem_getncnt", GETNCNT);
}

static PyObject *native_sysv_sem_getzcnt(PyObject *Py_UNUSED(self), PyObject *args)
{
    return get_one(args, "ii:sysv_sem_getzcnt", GETZCNT);
}

static PyObject *native_sysv_sem_getpid(PyObject *Py_UNUSED(self), PyObject *args)
{
    return get_one(args, "ii:sysv_sem_getpid", GETPID);
}

static PyObject *native_sysv_sem_setval(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id, index;
    union semun arg;
    if (!PyArg_ParseTuple(args, "iii:sysv_sem_setval", &id, &index, &arg.val)) {
        return NULL;
    }
    if (semctl(id, index, SETVAL, arg) < 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyMethodDef sysv_sem_methods[] = {
    {"sysv_sem_create", native_sysv_sem_create, METH_VARARGS,
     "sysv_sem_create(key, count, permissions, created) -> None\n\n"
     "semget with IPC_CREAT|IPC_EXCL; the new id is appended to the list `created`."},
    {"sysv_sem_set", native_sysv_sem_set, METH_VARARGS,
     "sysv_sem_set(id, gid, permissions) -> None\n\nsemctl IPC_SET of the group and mode."},
    {"sysv_sem_find", native_sysv_sem_find, METH_VARARGS,
     "sysv_sem_find(key) -> id\n\nsemget of an existing set."},
    {"sysv_sem_stat", native_sysv_sem_stat, METH_VARARGS,
     "sysv_sem_stat(id) -> (key, uid, gid, cuid, cgid, mode, nsems, otime, ctime)\n\n"
     "semctl IPC_STAT."},
    {"sysv_sem_remove", native_sysv_sem_remove, METH_VARARGS,
     "sysv_sem_remove(id) -> None\n\nsemctl IPC_RMID: waiters wake with EIDRM."},
    {"sysv_sem_op", (PyCFunction)(void (*)(void))native_sysv_sem_op, METH_FASTCALL,
     "sysv_sem_op(id, operations, size, undo, nowait, deadline_ns) -> None\n\n"
     "semop/semtimedop of (index, delta) pairs (index < size), all or none."},
    {"sysv_sem_getall", native_sysv_sem_getall, METH_VARARGS,
     "sysv_sem_getall(id) -> tuple\n\nsemctl GETALL."},
    {"sysv_sem_setall", native_sysv_sem_setall, METH_VARARGS,
     "sysv_sem_setall(id, values) -> None\n\nsemctl SETALL (exactly nsems values)."},
    {"sysv_sem_getval", native_sysv_sem_getval, METH_VARARGS,
     "sysv_sem_getval(id, index) -> int\n\nsemctl GETVAL."},
    {"sysv_sem_setval", native_sysv_sem_setval, METH_VARARGS,
     "sysv_sem_setval(id, index, value) -> None\n\nsemctl SETVAL."},
    {"sysv_sem_getncnt", native_sysv_sem_getncnt, METH_VARARGS,
     "sysv_sem_getncnt(id, index) -> int\n\nsemctl GETNCNT: processes waiting for an increase."},
    {"sysv_sem_getzcnt", native_sysv_sem_getzcnt, METH_VARARGS,
     "sysv_sem_getzcnt(id, index) -> int\n\nsemctl GETZCNT: processes waiting for zero."},
    {"sysv_sem_getpid", native_sysv_sem_getpid, METH_VARARGS,
     "sysv_sem_getpid(id, index) -> int\n\nsemctl GETPID: the last process to operate on it."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_sysv_sem(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "SYSV_SEM_VALUE_MAX", 32767) < 0) { /* SEMVMX */
        return -1;
    }
    return PyModule_AddFunctions(module, sysv_sem_methods);
}
