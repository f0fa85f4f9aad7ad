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
``tls://host:port``        the same inside TLS (certificates; for traffic leaving the host)
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

Who may connect (see docs/design.md, "Security model"): the objects a listener
and a client create are never more open than ``permissions`` (0o600); an
abstract socket admits only our own uid unless ``allowed_uids`` says otherwise;
``allowed_uids``/``allowed_gids`` check a UNIX socket peer's kernel credentials;
``secret`` makes both sides prove a shared secret (HMAC-SHA256 challenge-response)
before any message, on every scheme; ``tls://`` encrypts and checks certificates.
:attr:`Channel.authenticated` says whether this end knows who its peer is.

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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypedDict, overload

from ._deadline import Deadline, check_timeout
from .channels import registry
from .channels.core import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_NETWORK_MAX_MESSAGE_SIZE,
    Channel,
    Listener,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = (
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_NETWORK_MAX_MESSAGE_SIZE",
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

    #: The largest message, in bytes (default 64 MiB; ``tcp``, ``tls``: 1 MiB,
    #: since anyone who reaches the port may connect; not ``sysvmq``, whose limit
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
    #: Every scheme: clients must prove this shared secret (at least 16 bytes;
    #: HMAC-SHA256 challenge-response) before any message; others are dropped.
    secret: bytes
    #: Seconds a new client has for the handshake (secret, TLS) before it is
    #: dropped (default 5).
    handshake_timeout: float
    #: ``unix``, ``unix-abstract``: admit only clients whose uid (kernel
    #: credentials) is one of these, or whose gid is in ``allowed_gids``;
    #: ``"any"`` admits every uid. ``unix-abstract`` admits only our own uid by
    #: default (no file permissions protect it).
    allowed_uids: Iterable[int] | Literal["any"]
    #: ``unix``, ``unix-abstract``: admit clients whose gid is one of these.
    allowed_gids: Iterable[int]
    #: ``tls``: a PEM file with this side's certificate chain (and key, unless
    #: ``private_key`` names another file); required to listen. ``nats``,
    #: ``nats+js``: our client certificate for the NATS server, if it asks for one.
    certificate: str | os.PathLike[str]
    #: ``tls``, ``nats``, ``nats+js``: the PEM file of the private key of ``certificate``.
    private_key: str | os.PathLike[str]
    #: ``tls``: listen: require client certificates signed by these CAs;
    #: connect: trust these CAs for the listener's certificate. ``nats``,
    #: ``nats+js``: trust these CAs for the NATS server's certificate (default:
    #: the system's).
    ca_file: str | os.PathLike[str]
    #: ``nats``, ``nats+js``: the name the server's certificate must carry
    #: (default: the URL's host).
    server_hostname: str
    #: ``tls``, ``nats``, ``nats+js``: a context made by the caller instead of the
    #: options above.
    ssl_context: ssl.SSLContext


class ConnectOptions(TypedDict, total=False):
    """The options of :func:`connect` (each scheme refuses those it does not take)."""

    #: The largest message, in bytes (default 64 MiB; not ``sysvmq``).
    max_message_size: int
    #: Every scheme: prove this shared secret to the listener, and make it prove
    #: it too (see :class:`ListenOptions`).
    secret: bytes
    #: Seconds the handshake (secret, TLS) may take at most (default 5).
    handshake_timeout: float
    #: ``unix``, ``unix-abstract``: the listener's uid must be one of these (or
    #: its gid in ``allowed_gids``): someone else may have bound the name first.
    #: ``unix-abstract`` accepts only our own uid by default; ``"any"``: everyone.
    allowed_uids: Iterable[int] | Literal["any"]
    #: ``unix``, ``unix-abstract``: the listener's gid may be one of these.
    allowed_gids: Iterable[int]
    #: ``tls``: our client certificate (PEM), if the listener asks for one;
    #: ``nats``, ``nats+js``: the same for the NATS server (both ends are its clients).
    certificate: str | os.PathLike[str]
    #: ``tls``, ``nats``, ``nats+js``: the PEM file of its private key.
    private_key: str | os.PathLike[str]
    #: ``tls``: the CAs to verify the listener's certificate with; ``nats``,
    #: ``nats+js``: the NATS server's (default: the system's).
    ca_file: str | os.PathLike[str]
    #: ``tls``, ``nats``, ``nats+js``: the name the peer's certificate must carry
    #: (default: the URL's host).
    server_hostname: str
    #: ``tls``, ``nats``, ``nats+js``: a context made by the caller instead of the
    #: options above.
    ssl_context: ssl.SSLContext
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
    ``("unix-abstract", "name")``; ``tcp://host:port`` -> ``("tcp", (host, port))``
    (``tls`` likewise);
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
    With ``secret``, ``allowed_uids``/``allowed_gids`` (or on ``unix-abstract://``,
    which admits our own uid only by default) or ``tls://``, :meth:`Listener.accept`
    checks each client before returning it and drops those that fail, and goes
    on with the next; such a client has ``handshake_timeout`` seconds to finish
    its handshake, which ``accept`` may spend beyond its own ``timeout``.

    A name whose previous listener died (a socket file, FIFO, queue, ring and
    their liveness tokens) is taken over; when two processes race for it,
    exactly one wins. The death is told by a lock the kernel released, never by
    a process id alone.

    Raises:
        TypeError, ValueError: malformed URL or option.
        ResourceExistsError: the name is taken by a live listener (the message
            names its pid) or by an object that is not a unixipc listener's.
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
        AuthenticationError: the listener refused our proof of ``secret`` or
            failed to prove it, is not one of ``allowed_uids``/``allowed_gids``
            (``unix-abstract://``: our own uid by default), or (``tls://``) its
            certificate did not verify or it refused ours.
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
