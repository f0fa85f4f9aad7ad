/* System V shared memory. System calls: shmget, shmat, shmdt, shmctl (IPC_STAT, IPC_SET,
 * IPC_RMID).
 *
 * Segments are named by plain integers (key, id). The only object here is
 * SysVAttachment: the address shmat hands out, exported through the buffer
 * protocol (so memoryview and NumPy read it without copying). Its close()
 * detaches (shmdt) and refuses while buffers are exported, so no view can
 * outlive the mapping. None of these calls block. */
#include "common.h"

#include <sys/ipc.h>
#include <sys/shm.h>

typedef struct {
    PyObject_HEAD
    void *address; /* NULL once detached */
    Py_ssize_t size;
    int read_only;
    Py_ssize_t exports;
} SysVAttachment;

static PyObject *native_sysv_shm_create(PyObject *Py_UNUSED(self), PyObject *args)
{
    int key;
    Py_ssize_t size;
    unsigned int permissions;
    PyObject *created;
    if (!PyArg_ParseTuple(args, "inIO!:sysv_shm_create", &key, &size, &permissions, &PyList_Type,
                          &created)) {
        return NULL;
    }
    int id = shmget((key_t)key, (size_t)size, IPC_CREAT | IPC_EXCL | (int)(permissions & 0777));
    if (id < 0) {
        return unixipc_raise_errno(NULL);
    }
    if (unixipc_note_created(created, id) < 0) {
        shmctl(id, IPC_RMID, NULL);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *native_sysv_shm_get(PyObject *Py_UNUSED(self), PyObject *args)
{
    int key;
    if (!PyArg_ParseTuple(args, "i:sysv_shm_get", &key)) {
        return NULL;
    }
    int id = shmget((key_t)key, 0, 0);
    if (id < 0) {
        return unixipc_raise_errno(NULL);
    }
    return PyLong_FromLong(id);
}

static int stat_segment(int id, struct shmid_ds *status)
{
    if (shmctl(id, IPC_STAT, status) < 0) {
        unixipc_raise_errno(NULL);
        return -1;
    }
    return 0;
}

static PyObject *native_sysv_shm_stat(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    struct shmid_ds status;
    if (!PyArg_ParseTuple(args, "i:sysv_shm_stat", &id) || stat_segment(id, &status) < 0) {
        return NULL;
    }
    /* key, uid, gid, cuid, cgid, mode, size, atime, dtime, ctime, cpid, lpid, nattch */
    return Py_BuildValue("(iIIIIInLLLiik)", (int)status.shm_perm.__key, status.shm_perm.uid,
                         status.shm_perm.gid, status.shm_perm.cuid, status.shm_perm.cgid,
                         (unsigned int)status.shm_perm.mode, (Py_ssize_t)status.shm_segsz,
                         (long long)status.shm_atime, (long long)status.shm_dtime,
                         (long long)status.shm_ctime, (int)status.shm_cpid, (int)status.shm_lpid,
                         (unsigned long)status.shm_nattch);
}

static PyObject *native_sysv_shm_set(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    unsigned int gid, mode;
    struct shmid_ds status;
    if (!PyArg_ParseTuple(args, "iII:sysv_shm_set", &id, &gid, &mode) ||
        stat_segment(id, &status) < 0) {
        return NULL;
    }
    status.shm_perm.gid = (gid_t)gid;
    status.shm_perm.mode = (unsigned short)(mode & 0777);
    if (shmctl(id, IPC_SET, &status) < 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *native_sysv_shm_remove(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id;
    if (!PyArg_ParseTuple(args, "i:sysv_shm_remove", &id)) {
        return NULL;
    }
    if (shmctl(id, IPC_RMID, NULL) < 0) {
        return unixipc_raise_errno(NULL);
    }
    Py_RETURN_NONE;
}

/* ---- SysVAttachment ---------------------------------------------------- */

static PyTypeObject SysVAttachmentType;

static PyObject *native_sysv_shm_attach(PyObject *Py_UNUSED(self), PyObject *args)
{
    int id, read_only;
    struct shmid_ds status;
    if (!PyArg_ParseTuple(args, "ip:sysv_shm_attach", &id, &read_only)) {
        return NULL;
    }
    /* The size comes from the kernel, never from the caller: a wrong size
     * would let Python read past the mapping. */
    if (stat_segment(id, &status) < 0) {
        return NULL;
    }
    SysVAttachment *attachment = PyObject_New(SysVAttachment, &SysVAttachmentType);
    if (attachment == NULL) {
        return NULL;
    }
    attachment->address = NULL;
    attachment->size = (Py_ssize_t)status.shm_segsz;
    attachment->read_only = read_only;
    attachment->exports = 0;
    void *address = shmat(id, NULL, read_only ? SHM_RDONLY : 0);
    if (address == (void *)-1) {
        Py_DECREF(attachment);
        return unixipc_raise_errno(NULL);
    }
    attachment->address = address;
    return (PyObject *)attachment;
}

static PyObject *attachment_close(SysVAttachment *self, PyObject *Py_UNUSED(ignored))
{
    if (self->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "cannot detach: views of the segment exist");
        return NULL;
    }
    if (self->address != NULL) {
        void *address = self->address;
        self->address = NULL;
        if (shmdt(address) < 0) {
            return unixipc_raise_errno(NULL);
        }
    }
    Py_RETURN_NONE;
}

static void attachment_dealloc(SysVAttachment *self)
{
    if (self->address != NULL) {
        shmdt(self->address); /* exports hold references, so none is left here */
    }
    PyObject_Free(self);
}

static int attachment_getbuffer(SysVAttachment *self, Py_buffer *view, int flags)
{
    if (self->address == NULL) {
        view->obj = NULL;
        PyErr_SetString(PyExc_ValueError, "the segment is detached");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->address, self->size, self->read_only,
                          flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void attachment_releasebuffer(SysVAttachment *self, Py_buffer *Py_UNUSED(view))
{
    self->exports--;
}

static PyObject *attachment_get_address(SysVAttachment *self, void *Py_UNUSED(closure))
{
    return PyLong_FromVoidPtr(self->address);
}

static PyObject *attachment_get_size(SysVAttachment *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->size);
}

static PyObject *attachment_get_read_only(SysVAttachment *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->read_only);
}

static PyBufferProcs attachment_as_buffer = {
    .bf_getbuffer = (getbufferproc)attachment_getbuffer,
    .bf_releasebuffer = (releasebufferproc)attachment_releasebuffer,
};

static PyMethodDef attachment_methods[] = {
    {"close", (PyCFunction)attachment_close, METH_NOARGS,
     "close() -> None\n\nDetach (shmdt). BufferError while views exist; idempotent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef attachment_getset[] = {
    {"address", (getter)attachment_get_address, NULL, "Where it is attached (0 once detached).",
     NULL},
    {"size", (getter)attachment_get_size, NULL, "The segment's size in bytes.", NULL},
    {"read_only", (getter)attachment_get_read_only, NULL, "Attached with SHM_RDONLY.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SysVAttachmentType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "unixipc._native.SysVAttachment",
    .tp_doc = "A System V shared memory segment attached by sysv_shm_attach(); a buffer.",
    .tp_basicsize = sizeof(SysVAttachment),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)attachment_dealloc,
    .tp_as_buffer = &attachment_as_buffer,
    .tp_methods = attachment_methods,
    .tp_getset = attachment_getset,
};

static PyMethodDef sysv_shm_methods[] = {
    {"sysv_shm_create", native_sysv_shm_create, METH_VARARGS,
     "sysv_shm_create(key, size, permissions, created) -> None\n\n"
     "shmget with IPC_CREAT|IPC_EXCL; the new id is appended to the list `created`."},
    {"sysv_shm_set", native_sysv_shm_set, METH_VARARGS,
     "sysv_shm_set(id, gid, permissions) -> None\n\nshmctl IPC_SET of the group and mode."},
    {"sysv_shm_get", native_sysv_shm_get, METH_VARARGS,
     "sysv_shm_get(key) -> id\n\nshmget of an existing segment."},
    {"sysv_shm_attach", native_sysv_shm_attach, METH_VARARGS,
     "sysv_shm_attach(id, read_only) -> SysVAttachment\n\nshmat (SHM_RDONLY if read_only)."},
    {"sysv_shm_stat", native_sysv_shm_stat, METH_VARARGS,
     "sysv_shm_stat(id) -> (key, uid, gid, cuid, cgid, mode, size, atime, dtime, ctime, cpid, "
     "lpid, nattch)\n\nshmctl IPC_STAT."},
    {"sysv_shm_remove", native_sysv_shm_remove, METH_VARARGS,
     "sysv_shm_remove(id) -> None\n\nshmctl IPC_RMID: removed once the last process detaches."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_sysv_shm(PyObject *module)
{
    if (PyType_Ready(&SysVAttachmentType) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "SysVAttachment", (PyObject *)&SysVAttachmentType) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, sysv_shm_methods);
}
