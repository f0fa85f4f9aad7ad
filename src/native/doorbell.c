/* Doorbells (see doorbell.h): abstract UNIX datagram sockets named in shared memory.
 * System calls: sendto, recv, poll. */
#include "doorbell.h"

#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* "\0unixipc-bell-" then the id in hex: the abstract address of a doorbell. */
static const char BELL_PREFIX[] = "unixipc-bell-";

static socklen_t bell_address(const unsigned char *id, struct sockaddr_un *address)
{
    static const char hex[] = "0123456789abcdef";
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    char *name = address->sun_path + 1; /* sun_path[0] = 0: the abstract namespace */
    memcpy(name, BELL_PREFIX, sizeof BELL_PREFIX - 1);
    name += sizeof BELL_PREFIX - 1;
    for (int i = 0; i < UNIXIPC_BELL_ID_BYTES; i++) {
        *name++ = hex[id[i] >> 4];
        *name++ = hex[id[i] & 15];
    }
    return (socklen_t)(name - (char *)address);
}

void unixipc_bell_ring_one(int sender_fd, const unsigned char *id)
{
    struct sockaddr_un address;
    socklen_t length = bell_address(id, &address);
    /* An empty datagram: EAGAIN (a full doorbell is readable already) and
     * ECONNREFUSED (its owner is gone) are both fine to ignore. */
    (void)sendto(sender_fd, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&address,
                 length);
}

int unixipc_bells_ring(uint64_t *mask, int sender_fd, unixipc_bell_id_of id_of, void *context)
{
    int rung = 0;
    for (int word = 0; word < UNIXIPC_BELL_MASK_WORDS; word++) {
        if (__atomic_load_n(&mask[word], __ATOMIC_SEQ_CST) == 0) {
            continue;
        }
        uint64_t bits = __atomic_exchange_n(&mask[word], 0, __ATOMIC_SEQ_CST);
        while (bits != 0) {
            int bit = __builtin_ctzll(bits);
            bits &= bits - 1;
            const unsigned char *id = id_of(context, word * 64 + bit);
            if (id != NULL) {
                unixipc_bell_ring_one(sender_fd, id);
                rung++;
            }
        }
    }
    return rung;
}

void unixipc_bell_drain(int fd)
{
    char scrap[16];
    while (recv(fd, scrap, sizeof scrap, MSG_DONTWAIT) >= 0) {
    }
}

int unixipc_bell_sleep(int fd, int64_t deadline_ns)
{
    int milliseconds = -1;
    if (deadline_ns >= 0) {
        int64_t left = deadline_ns - unixipc_monotonic_ns();
        if (left <= 0) {
            return 0;
        }
        /* Round up: poll must not return before the deadline. */
        int64_t ms = (left + 999999) / 1000000;
        milliseconds = ms > 1000000 ? 1000000 : (int)ms;
    }
    struct pollfd watch = {.fd = fd, .events = POLLIN};
    int ready = poll(&watch, 1, milliseconds);
    if (ready < 0) {
        return errno == EINTR ? -1 : 1; /* any other error: let the caller look again */
    }
    return ready > 0;
}

/* doorbell_address(id) -> bytes: the abstract address a doorbell binds to. */
static PyObject *doorbell_address(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer id;
    if (PyObject_GetBuffer(arg, &id, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (id.len != UNIXIPC_BELL_ID_BYTES) {
        PyBuffer_Release(&id);
        PyErr_Format(PyExc_ValueError, "a doorbell id has %d bytes", UNIXIPC_BELL_ID_BYTES);
        return NULL;
    }
    struct sockaddr_un address;
    socklen_t length = bell_address(id.buf, &address);
    PyBuffer_Release(&id);
    return PyBytes_FromStringAndSize(address.sun_path,
                                     (Py_ssize_t)(length - offsetof(struct sockaddr_un, sun_path)));
}

/* doorbell_ring(fd, id): ring a doorbell by its name (close() wakes its own waiters so). */
static PyObject *doorbell_ring(PyObject *Py_UNUSED(module), PyObject *args)
{
    int fd;
    Py_buffer id;
    if (!PyArg_ParseTuple(args, "iy*:doorbell_ring", &fd, &id)) {
        return NULL;
    }
    if (id.len != UNIXIPC_BELL_ID_BYTES) {
        PyBuffer_Release(&id);
        PyErr_Format(PyExc_ValueError, "a doorbell id has %d bytes", UNIXIPC_BELL_ID_BYTES);
        return NULL;
    }
    unixipc_bell_ring_one(fd, id.buf);
    PyBuffer_Release(&id);
    Py_RETURN_NONE;
}

static PyMethodDef doorbell_functions[] = {
    {"doorbell_address", doorbell_address, METH_O,
     "doorbell_address(id) -> bytes\n\n"
     "The abstract UNIX socket address (leading NUL) of the doorbell named by 16 bytes."},
    {"doorbell_ring", doorbell_ring, METH_VARARGS,
     "doorbell_ring(fd, id) -> None\n\n"
     "Send one empty datagram from socket fd to the doorbell named id (errors ignored)."},
    {NULL, NULL, 0, NULL},
};

int unixipc_init_doorbell(PyObject *module)
{
    if (PyModule_AddFunctions(module, doorbell_functions) < 0) {
        return -1;
    }
    return PyModule_AddIntConstant(module, "DOORBELL_ID_BYTES", UNIXIPC_BELL_ID_BYTES);
}
