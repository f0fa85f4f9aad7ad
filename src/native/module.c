/* unixipc._native: the system calls Python's standard library cannot reach.
 *
 * Thin by design: each facility's file (posix_mq.c, sysv_sem.c, ...) wraps its
 * calls, releases the GIL while blocking, retries on EINTR after running
 * signal handlers, and raises OSError naming the object. No policy here.
 */
#include "common.h"

/* A new facility adds its init function here (declared in common.h). */
static int (*const facility_inits[])(PyObject *) = {
    unixipc_init_common,
    unixipc_init_deadline_calls,
    unixipc_init_posix_shm,
    unixipc_init_sysv_shm,
    unixipc_init_posix_sem,
    unixipc_init_sysv_sem,
    unixipc_init_posix_mq,
    unixipc_init_sysv_msg,
    unixipc_init_shared_sync,
    unixipc_init_file_lock,
    unixipc_init_signals,
    unixipc_init_ring,
    unixipc_init_doorbell,
    unixipc_init_topic,
    unixipc_init_thread_lock,
};

static int native_exec(PyObject *module)
{
    for (size_t i = 0; i < sizeof(facility_inits) / sizeof(facility_inits[0]); i++) {
        if (facility_inits[i](module) < 0) {
            return -1;
        }
    }
    return PyModule_AddIntConstant(module, "ABI_VERSION", 1);
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "unixipc._native",
    .m_doc = "System calls that Python's standard library cannot reach (private).",
    .m_size = 0,
    .m_slots = native_slots,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
