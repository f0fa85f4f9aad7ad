/* Helpers shared by every facility of unixipc._native.
 *
 * Policy lives in Python. The C side gets absolute deadlines (CLOCK_MONOTONIC
 * nanoseconds, or -1 for "block forever") so that a call interrupted by a
 * signal can be retried with exactly the time that is left (PEP 475).
 */
#ifndef UNIXIPC_COMMON_H
#define UNIXIPC_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <time.h>

/* Deadline meaning "no deadline: block until done". */
#define UNIXIPC_NO_DEADLINE ((int64_t)-1)

/* A deadline later than this (about 146 years of uptime, in CLOCK_MONOTONIC
 * ns) is no deadline: a timeout too long to end is the same as none, and no
 * arithmetic on deadlines can overflow. Python's _deadline uses the same value. */
#define UNIXIPC_FAR_DEADLINE_NS ((int64_t)1 << 62)

/* Nanoseconds on CLOCK_MONOTONIC now. */
int64_t unixipc_monotonic_ns(void);

/* The deadline `seconds` from now (a non-negative double, possibly infinite):
 * UNIXIPC_NO_DEADLINE when it lies beyond UNIXIPC_FAR_DEADLINE_NS. */
int64_t unixipc_deadline_after(double seconds);

/* Convert a monotonic deadline to an absolute time on `clock`, for calls that
 * take no other kind (saturating: a far deadline gives a far time, never a
 * wrapped one). Prefer a relative wait on the monotonic clock: a deadline on
 * another clock moves when that clock is stepped. */
void unixipc_abstime(int64_t monotonic_deadline_ns, clockid_t clock, struct timespec *out);

/* What is left of a deadline as a relative timespec (zero once passed), for
 * ppoll, sigtimedwait, semtimedop... which measure it on the monotonic clock. */
void unixipc_time_left(int64_t deadline_ns, struct timespec *out);

/* After a call failed with EINTR: run Python's signal handlers.
 * Returns 0 to retry, -1 if a handler raised (the exception is set).
 * Must be called with the GIL held. */
int unixipc_after_eintr(void);

/* Set OSError from errno, naming the object (`name` may be NULL). Returns NULL. */
PyObject *unixipc_raise_errno(const char *name);

/* Append a newly created object's id to the Python list `created` (an out
 * parameter): the caller then finds it to remove even if a signal handler
 * raises before the returned id is stored. Returns 0, or -1 with an exception. */
int unixipc_note_created(PyObject *created, long id);

/* Parse an int64 deadline argument; -1 means none. */
int unixipc_parse_deadline(PyObject *arg, int64_t *out);

/* True once the monotonic deadline has passed (never for UNIXIPC_NO_DEADLINE). */
int unixipc_deadline_passed(int64_t deadline_ns);

/* Deadlines for blocking system calls that have none (msgsnd, msgrcv, flock,
 * fcntl F_SETLKW, open of a FIFO, ...).
 *
 * unixipc_call_with_deadline runs `call(arg)` with the GIL released. While it
 * blocks, a per-thread POSIX timer sends UNIXIPC_ALARM_SIGNAL to this thread at
 * the deadline and every 10 ms after it (in case the first signal came just
 * before the call started), so the call fails with EINTR and we stop. The
 * thread sleeps in the kernel meanwhile: no polling.
 *
 * Returns the call's non-negative result; or -1 with errno set (ETIMEDOUT when
 * the deadline passed); or -2 with a Python exception set (a signal handler
 * raised, or the timer could not be armed). For timeout=0, callers use the
 * call's own non-blocking flag instead (IPC_NOWAIT, LOCK_NB, ...).
 * Must be called with the GIL held. */
typedef long (*unixipc_blocking_call)(void *arg);
long unixipc_call_with_deadline(unixipc_blocking_call call, void *arg, int64_t deadline_ns);

/* The exception classes of unixipc.errors, by name ("IPCError", "WouldBlock", ...).
 * Python hands them over once, at import (errors.py calls
 * _native.set_error_classes): no C file imports a Python module. Returns a
 * borrowed reference, or NULL with SystemError set if there is no such class. */
PyObject *unixipc_error_class(const char *name);

/* Each facility file defines one of these; module.c calls them in order. */
int unixipc_init_common(PyObject *module);
int unixipc_init_deadline_calls(PyObject *module);
int unixipc_init_posix_shm(PyObject *module);
int unixipc_init_sysv_shm(PyObject *module);
int unixipc_init_posix_sem(PyObject *module);
int unixipc_init_sysv_sem(PyObject *module);
int unixipc_init_posix_mq(PyObject *module);
int unixipc_init_sysv_msg(PyObject *module);
int unixipc_init_shared_sync(PyObject *module);
int unixipc_init_file_lock(PyObject *module);
int unixipc_init_signals(PyObject *module);
int unixipc_init_ring(PyObject *module);
int unixipc_init_doorbell(PyObject *module);
int unixipc_init_topic(PyObject *module);
int unixipc_init_thread_lock(PyObject *module);

#endif
