"""Waiting on a channel so that close() can still stop the waiting thread (private).

Used by the asyncio client's receiving thread and the server's Outbox, which stop
on a flag of their own. (The threaded client and the server's readers block
without a timeout: a channel's close() wakes them.) On a socket (unix,
tcp, socketpair) a blocking ``receive()`` is the fastest wait by far (a timed
one polls first: 7 us more per message), and shutting the socket down for
reading, through a duplicate of its descriptor, wakes it: :func:`socket_waker`.
Every other channel is waited on for at most ``SLICE`` seconds at a time; after
a slice that brought nothing, one more look with ``timeout=0`` checks that the
peer still lives (a shared-memory ring checks its peers only every 0.2 s of a
single wait, so shorter waits alone would never notice a peer that died).
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from typing import Any

from ..channel import Channel
from ..errors import IPCError, TimeoutExpired, UnsupportedFeature

#: How long a waiting thread blocks at a time.
SLICE = 0.1


def receive_slice(receive: Callable[..., bytes], wait: float) -> bytes:
    """``receive`` for at most ``wait`` seconds, then one look that checks the peer.

    Raises:
        WouldBlock: nothing came. Otherwise as ``Channel.receive``.
    """
    try:
        return receive(timeout=wait)
    except TimeoutExpired:
        return receive(timeout=0)


def send_slice(send: Callable[..., None], data: Any, wait: float) -> None:
    """``send`` waiting at most ``wait`` seconds for room, then one try that checks
    the peer.

    Raises:
        WouldBlock: no room (nothing was sent). Otherwise as ``Channel.send``.
    """
    try:
        send(data, timeout=wait)
    except TimeoutExpired:
        send(data, timeout=0)


def socket_waker(channel: Channel) -> Callable[[], None] | None:
    """For a channel over a socket, a function that wakes the thread blocked in its
    ``receive()`` (which then raises :class:`PeerDied`); None for other channels.

    Call it only while the channel is open (under the lock its closer takes): the
    descriptor number may belong to another file once the channel is closed.
    """
    try:
        if channel._wait_spec().doorbells:
            return None  # shm://: fileno() is a doorbell, not the transport
        descriptor = channel.fileno()
        if not stat.S_ISSOCK(os.fstat(descriptor).st_mode):
            return None
    except (UnsupportedFeature, IPCError, OSError):
        return None

    def wake() -> None:
        try:
            with socket.socket(fileno=os.dup(descriptor)) as duplicate:
                duplicate.shutdown(socket.SHUT_RD)  # writing still works: goodbyes go out
        except OSError:
            pass  # the peer is gone already: the reader wakes anyway

    return wake
