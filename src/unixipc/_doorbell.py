"""Doorbells: the readiness descriptors of objects in shared memory (private).

A doorbell is a UNIX datagram socket bound to an abstract address named by 16
random bytes from :mod:`secrets` (no pid, nothing guessable), which its owner
publishes in the object's shared memory. The protocol (``src/native/doorbell.h``):
a waiter sets its bit in an "armed" mask in the shared memory, looks once more,
and sleeps on the socket; a peer that makes progress reads the mask after its
commit and, only if a bit is set, sends one empty datagram. The fast path makes
no system call, and the socket's descriptor is what ``fileno()`` returns, so
``selectors``, ``select.poll``, asyncio's ``add_reader`` and :func:`unixipc.wait`
watch shared memory the way they watch sockets. A datagram means "look again":
stale or foreign ones cost a look, never a message.

Abstract sockets belong to the network namespace: processes sharing a topic
from different network namespaces still exchange messages, but sleep until a
0.2 s slice ends instead of being woken at once.
"""

from __future__ import annotations

import errno
import secrets
import socket

from . import _native

#: How many tries a clash of 128 random bits gets (it never happens; bind can fail).
_BIND_TRIES = 4


class Doorbell:
    """The doorbell of one publisher or subscriber: a bound datagram socket."""

    __slots__ = ("id", "socket")

    def __init__(self) -> None:
        for _ in range(_BIND_TRIES):
            self.id = secrets.token_bytes(_native.DOORBELL_ID_BYTES)
            self.socket = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
            )
            try:
                self.socket.bind(_native.doorbell_address(self.id))
            except OSError as error:
                self.socket.close()
                if error.errno != errno.EADDRINUSE:
                    raise
                continue
            return
        raise OSError(errno.EADDRINUSE, "no free doorbell address")

    def fileno(self) -> int:
        return self.socket.fileno()

    def ring(self) -> None:
        """Make our own descriptor readable (wake our waiters, prime a selector)."""
        _native.doorbell_ring(self.socket.fileno(), self.id)

    def close(self) -> None:
        self.socket.close()
