"""Channels: one duplex message API over every facility, chosen by a URL.

A program moves from a pipe to a message queue to a UNIX socket to another host
to shared memory by changing one URL::

    listener = unixipc.listen("unix:///tmp/app.sock")      # server
    channel = listener.accept(timeout=10)
    channel.send(channel.receive().upper())

    with unixipc.connect("unix:///tmp/app.sock", timeout=10) as channel:   # client
        channel.send(b"hello")
        print(channel.receive(timeout=10))                  # b'HELLO'

=========================  ===========================================================
URL                        how a connection is made
=========================  ===========================================================
``pipe:``                  ``channel_pair("pipe")`` before fork/spawn: two pipes
``socketpair:``            ``channel_pair("socketpair")``: a UNIX stream socketpair
``fifo:///path``           well-known server FIFO; each client makes two private FIFOs
``mq:///name``             well-known POSIX request queue; private queues per client
``sysvmq://KEY``           one System V queue; a message type per client and direction
``unix:///path``           UNIX stream socket, length-prefixed frames
``unix-abstract://name``   the same in Linux's abstract namespace (no file)
``tcp://host:port``        the same over TCP (this is how a program crosses hosts)
``shm://name``             the shared-memory ring, one ring per direction
``nats://host:port/subj``  through a NATS server: HELLO on the subject, an inbox per end
``nats+js://host:port/N``  a durable conversation N in JetStream (at least once)
=========================  ===========================================================

Every channel has the same verbs, errors and timeouts (:class:`Channel`): a peer's
``close()`` gives :class:`EndOfChannel` after its last message; a peer that went
away without closing (its process died) gives :class:`PeerDied`. Bytes from a peer
are untrusted: a frame's length is checked before anything is allocated, memory
grows only with the bytes that really arrive, and garbage makes that one channel
raise :class:`IPCError`, never the listener. ``close()`` from any thread wakes
the threads and tasks blocked in the channel (or listener) with
:class:`ClosedResourceError` at once.

Persistence: a listener's name (socket file, FIFO, queue, shared memory object)
lives until the listener is closed; connections live as long as both ends hold
them. Names made for one connection are removed as soon as both ends have opened
them, or by the survivor when a peer dies.

Portability: Linux (``unix-abstract``, ``fifo`` opened read-write, ``mq`` queues
as descriptors); ``tcp`` talks to any host.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

from ._deadline import Deadline, check_timeout
from .channels import registry
from .channels.core import DEFAULT_MAX_MESSAGE_SIZE, Channel, Listener

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = (
    "DEFAULT_MAX_MESSAGE_SIZE",
    "PAIR_KINDS",
    "SCHEMES",
    "Channel",
    "ConnectOptions",
    "ListenOptions",
    "Listener",
    "PairKind",
    "PairOptions",
    "channel_pair",
    "connect",
    "listen",
    "parse_url",
)

#: The URL schemes :func:`listen` and :func:`connect` understand.
SCHEMES: tuple[str, ...] = tuple(registry.SCHEMES)
#: The kinds :func:`channel_pair` makes.
PAIR_KINDS: tuple[str, ...] = tuple(registry.PAIRS)

#: A kind of :func:`channel_pair`.
PairKind = Literal["pipe", "socketpair", "shm"]


class ListenOptions(TypedDict, total=False):
    """The options of :func:`listen` (each scheme refuses those it does not take)."""

    #: The largest message, in bytes (default 64 MiB; not ``sysvmq``, whose limit
    #: is the kernel's msgmax).
    max_message_size: int
    #: Of the socket file, FIFO, request queue or ring (``unix``, ``fifo``, ``mq``,
    #: ``sysvmq``, ``shm``; default 0o600).
    permissions: int
    #: Connections waiting for ``accept`` (sockets and ``nats`` 128, ``mq`` 8).
    backlog: int
    #: Seconds between a ``nats`` end's heartbeats when idle (default 1.0); an end
    #: that hears nothing for four of its heartbeats raises PeerDied.
    heartbeat: float
    #: Bytes a ``nats`` peer may send that this end's user has not received yet
    #: (default 4 MiB; each message counts 64 bytes more): then its send waits.
    window: int
    #: The NATS queue group of a ``nats`` listener (default "unixipc"): listeners
    #: of one group on one subject share the clients.
    queue: str
    #: ``nats``, ``nats+js``: TLS to the NATS server (both ends are its clients):
    #: trust these CAs for its certificate (default: the system's).
    ca_file: str | os.PathLike[str]
    #: ``nats``, ``nats+js``: our client certificate (PEM), if the server asks for one.
    certificate: str | os.PathLike[str]
    #: ``nats``, ``nats+js``: the PEM file of its private key.
    private_key: str | os.PathLike[str]
    #: ``nats``, ``nats+js``: the name the server's certificate must carry
    #: (default: the URL's host).
    server_hostname: str
    #: ``nats``, ``nats+js``: a context made by the caller instead of the options above.
    ssl_context: ssl.SSLContext


class ConnectOptions(TypedDict, total=False):
    """The options of :func:`connect` (each scheme refuses those it does not take)."""

    #: The largest message, in bytes (default 64 MiB; not ``sysvmq``).
    max_message_size: int
    #: Of the client's FIFOs, queues or rings (``fifo``, ``mq``, ``shm``; 0o600).
    permissions: int
    #: Messages each of an ``mq`` client's two queues holds (default 8).
    queue_length: int
    #: The message size of an ``mq`` client's queues (default 4096); longer
    #: messages travel in pieces of this size.
    queue_message_size: int
    #: Bytes of each of a ``shm`` client's two rings (default 1 MiB).
    capacity: int
    #: As :attr:`ListenOptions.heartbeat` (``nats``).
    heartbeat: float
    #: As :attr:`ListenOptions.window` (``nats``).
    window: int
    #: ``nats``, ``nats+js``: TLS to the NATS server (both ends are its clients):
    #: trust these CAs for its certificate (default: the system's).
    ca_file: str | os.PathLike[str]
    #: ``nats``, ``nats+js``: our client certificate (PEM), if the server asks for one.
    certificate: str | os.PathLike[str]
    #: ``nats``, ``nats+js``: the PEM file of its private key.
    private_key: str | os.PathLike[str]
    #: ``nats``, ``nats+js``: the name the server's certificate must carry
    #: (default: the URL's host).
    server_hostname: str
    #: ``nats``, ``nats+js``: a context made by the caller instead of the options above.
    ssl_context: ssl.SSLContext


class PairOptions(TypedDict, total=False):
    """The options of :func:`channel_pair`."""

    #: The largest message, in bytes (default 64 MiB).
    max_message_size: int
    #: Bytes of each ring of a "shm" pair (default 1 MiB; messages of half of it
    #: or more travel in pieces).
    capacity: int


def parse_url(url: str) -> tuple[str, Any]:
    """Split a channel URL into its scheme and the address that scheme uses.

    ``unix:///tmp/s`` -> ``("unix", "/tmp/s")``; ``unix-abstract://name`` ->
    ``("unix-abstract", "name")``; ``tcp://host:port`` -> ``("tcp", (host, port))``;
    ``fifo:///path`` -> ``("fifo", "/path")``; ``mq:///name`` and ``shm://name`` ->
    a POSIX name ``"/name"``; ``sysvmq://KEY`` -> the key as an int (decimal or 0x).

    Raises:
        TypeError: ``url`` is not a str.
        ValueError: unknown scheme or malformed address.
    """
    scheme, address = registry.parse_url(url)
    return scheme.name, address


def listen(url: str, **options: Unpack[ListenOptions]) -> Listener:
    """Listen for connections on ``url``; clients reach it with :func:`connect`.

    Options: see :class:`ListenOptions`; a scheme refuses any it does not take.

    Raises:
        TypeError, ValueError: malformed URL or option.
        ResourceExistsError: the name is taken (socket file, FIFO, queue, ...).
        IPCOSError: the address is in use (TCP), or another system error.
    """
    return registry.listen(url, dict(options))


def connect(
    url: str, *, timeout: float | None = None, **options: Unpack[ConnectOptions]
) -> Channel:
    """Connect to the listener at ``url`` and return the channel.

    For sockets, ``connect`` returns once the kernel made the connection (the
    server's ``accept`` may come later); for FIFOs, queues and rings it returns
    when the server has accepted, so ``timeout=0`` only succeeds if it does so at
    once.

    Options: see :class:`ConnectOptions`; a scheme refuses any it does not take.

    Raises:
        TypeError, ValueError: malformed URL or option.
        ResourceNotFoundError: nothing is listening at that name.
        IPCOSError: connection refused (errno ECONNREFUSED) or another system error.
        WouldBlock, TimeoutExpired: not connected within ``timeout`` seconds.
    """
    check_timeout(timeout)
    return registry.connect(url, Deadline(timeout), dict(options))


@overload
def channel_pair(
    kind: Literal["pipe", "socketpair"], *, max_message_size: int = ...
) -> tuple[Channel, Channel]: ...
@overload
def channel_pair(
    kind: Literal["shm"], *, max_message_size: int = ..., capacity: int = ...
) -> tuple[Channel, Channel]: ...
def channel_pair(kind: PairKind, **options: Unpack[PairOptions]) -> tuple[Channel, Channel]:
    """Two connected channel ends for related processes: ``kind`` is "pipe", "socketpair" or "shm".

    Make the pair before fork, or pass one end to a ``multiprocessing`` child
    (fork, spawn or forkserver). Each process then uses one end and closes the
    other: after a fork (or once an end is passed to a child) the copies are
    silent until used, so closing the ends a process does not use never ends
    the conversation; the end a process uses tells its peer
    :class:`EndOfChannel` when closed, :class:`PeerDied` if the process dies. Used
    in one process, both ends behave like any connection: closing one gives the
    other :class:`EndOfChannel`.

    Options: see :class:`PairOptions`.

    Raises:
        TypeError, ValueError: unknown kind or option.
        ResourceLimitError: out of descriptors (or shared memory).
    """
    return registry.pair(kind, dict(options))
