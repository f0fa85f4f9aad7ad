/* Arguments and exceptions of C methods on the hot path (shared helpers).
 *
 * Vectorcall methods take `(positional..., *, timeout=None)`; these helpers parse
 * that shape without building a tuple or a dict, turn `timeout` into an absolute
 * monotonic deadline, and raise the classes of unixipc.errors by name (the
 * classes errors.py handed over: see unixipc_error_class in common.h).
 */
#ifndef UNIXIPC_CALLARGS_H
#define UNIXIPC_CALLARGS_H

#include "common.h"

/* Deadline meaning "try once" (the monotonic clock is far past 0 ns). */
#define UNIXIPC_TRY_ONCE ((int64_t)0)

/* Parse `timeout` (None or seconds >= 0): *deadline becomes UNIXIPC_NO_DEADLINE,
 * UNIXIPC_TRY_ONCE or an absolute CLOCK_MONOTONIC time; *seconds keeps the value
 * for messages (-1 for None). Returns 0, or -1 with TypeError/ValueError set. */
int unixipc_parse_timeout(PyObject *timeout, int64_t *deadline, double *seconds);

/* Accept (names[0], ..., names[expected-1], *, timeout=None) from a vectorcall;
 * the named arguments may also come as keywords. *timeout is NULL if not given. */
int unixipc_parse_call(const char *function, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames, Py_ssize_t expected, const char *const *names,
                       PyObject **out, PyObject **timeout);

/* A message argument: any C-contiguous bytes-like object, as a simple buffer.
 * Returns 0, or -1 with TypeError/ValueError set (naming `data`). */
int unixipc_get_bytes_like(PyObject *data, Py_buffer *view);

/* Raise unixipc.errors.<class_name>(message). With `attribute` not NULL, the
 * exception also gets that attribute set to `value` (e.g. MessagesMissed.count).
 * Always returns NULL. */
PyObject *unixipc_raise_error(const char *class_name, const char *attribute, Py_ssize_t value,
                              const char *format, ...);

/* The exception for a wait that ran out: WouldBlock for timeout=0, else
 * TimeoutExpired naming the seconds. Returns NULL. */
PyObject *unixipc_raise_timeout(const char *what, PyObject *description, double seconds);

#endif
