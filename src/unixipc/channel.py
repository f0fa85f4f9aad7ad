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
=========================  ===========================================================

Every channel has the same verbs, errors and timeouts (:class:`Channel`): a peer's
``close()`` gives :class:`EndOfChannel` after its last message; a peer that went
away without closing (its process died) gives :class:`PeerDied`. Bytes from a peer
are untrusted: a frame's length is checked before anything is allocated, and
garbage makes that one channel raise :class:`IPCError`, never the listener.

Persistence: a listener's name (socket file, FIFO, queue, shared memory object)
lives until the listener is closed; connections live as long as both ends hold
them. Names made for one connection are removed as soon as both ends have opened
them, or by the survivor when a peer dies.

Portability: Linux (``unix-abstract``, ``fifo`` opened read-write, ``mq`` queues
as descriptors); ``tcp`` talks to any host.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from ._channel_base import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Channel,
    Listener,
    check_max_message_size,
    take_options,
)
from ._channel_stream import MAX_FRAME, listen_socket, pipe_pair, socket_pair
from ._deadline import Deadline, check_timeout
from ._names import check_int, check_path, check_permissions, check_sysv_key

__all__ = (
    "DEFAULT_MAX_MESSAGE_SIZE",
    "PAIR_KINDS",
    "SCHEMES",
    "Channel",
    "Listener",
    "channel_pair",
    "connect",
    "listen",
    "parse_url",
)

#: The URL schemes :func:`listen` and :func:`connect` understand.
SCHEMES = ("fifo", "mq", "sysvmq", "unix", "unix-abstract", "tcp", "shm")
#: The kinds :func:`channel_pair` makes.
PAIR_KINDS = ("pipe", "socketpair", "shm")

# The largest max_message_size of a channel that splits messages into pieces.
_MAX_SPLIT = 2**31 - 1
# The longest path a UNIX socket address holds (sun_path, with its NUL).
_SUN_PATH_MAX = 107


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
    if not isinstance(url, str):
        raise TypeError(f"url must be a str such as 'unix:///tmp/s', not {type(url).__name__}")
    scheme, separator, rest = url.partition("://")
    if scheme in ("pipe:", "socketpair:") or url in ("pipe:", "socketpair:"):
        raise ValueError(f"{url!r} has no address: use channel_pair({url.rstrip(':')!r})")
    if not separator or scheme not in SCHEMES:
        raise ValueError(
            f"url must be scheme://address with scheme one of {', '.join(SCHEMES)}; got {url!r}"
        )
    if not rest:
        raise ValueError(f"url {url!r} has no address")
    if scheme in ("unix", "fifo"):
        path = check_path(rest, "url path")
        if scheme == "unix" and len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise ValueError(f"a UNIX socket path has at most {_SUN_PATH_MAX} bytes: {url!r}")
        return scheme, path
    if scheme == "unix-abstract":
        if "\0" in rest or len(rest.encode()) > _SUN_PATH_MAX - 1:
            raise ValueError(f"an abstract socket name has 1 to {_SUN_PATH_MAX - 1} bytes: {url!r}")
        return scheme, rest
    if scheme == "tcp":
        return scheme, _parse_host_port(url, rest)
    if scheme in ("mq", "shm"):
        name = "/" + rest.lstrip("/")
        if len(name) < 2 or "/" in name[1:] or "\0" in name or len(name.encode()) > 200:
            raise ValueError(f"{scheme}:// takes one name of 1 to 199 bytes, no '/': {url!r}")
        return scheme, name
    # sysvmq
    try:
        key = int(rest, 0)
    except ValueError:
        raise ValueError(f"sysvmq:// takes a key such as 0x1234 or 4660: {url!r}") from None
    if key == 0 or not -(2**31) <= key < 2**32:
        raise ValueError(f"sysvmq:// takes a nonzero 32-bit key (not IPC_PRIVATE): {url!r}")
    return scheme, key


def _parse_host_port(url: str, rest: str) -> tuple[str, int]:
    host, colon, port_text = rest.rpartition(":")
    if not colon or not port_text.isdigit():
        raise ValueError(f"tcp:// takes host:port, such as tcp://127.0.0.1:5000: {url!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in {url!r}") from None
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, tcp://[::1]:5000: {url!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"a TCP port is between 0 and 65535: {url!r}")
    return host, port


def _max_size(options: dict[str, Any], limit: int = MAX_FRAME) -> int:
    return check_max_message_size(options["max_message_size"], limit)


def _stream_defaults() -> dict[str, Any]:
    return {"max_message_size": DEFAULT_MAX_MESSAGE_SIZE}


def _tcp_address(url: str, host: str, port: int, *, passive: bool) -> list[tuple[int, Any]]:
    flags = socket.AI_PASSIVE if passive else 0
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=flags
        )
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve the host of {url!r}: {error.strerror}") from None
    return [(family, address) for family, _, _, _, address in found]


def listen(url: str, **options: Any) -> Listener:
    """Listen for connections on ``url``; clients reach it with :func:`connect`.

    Options (keyword arguments; a scheme refuses any it does not take):
        max_message_size: the largest message, in bytes (every scheme; the
            default and the ceiling depend on the facility, see the README).
        permissions: of the socket file or FIFO (``unix``, ``fifo``; 0o600).
        backlog: connections the kernel queues before ``accept`` (sockets; 128).
        Queue and ring schemes take more (see their sections in the README).

    Raises:
        TypeError, ValueError: malformed URL or option.
        ResourceExistsError: the name is taken (socket file, FIFO, queue, ...).
        IPCOSError: the address is in use (TCP), or another system error.
    """
    scheme, address = parse_url(url)
    call = "listen"
    if scheme in ("unix", "unix-abstract", "tcp"):
        defaults = {**_stream_defaults(), "backlog": 128}
        if scheme == "unix":
            defaults["permissions"] = 0o600
        opts = take_options(scheme, call, options, defaults)
        size = _max_size(opts)
        backlog = check_int(opts["backlog"], "backlog", minimum=1)
        permissions = check_permissions(opts["permissions"]) if scheme == "unix" else None
        if scheme == "tcp":
            family, sockaddr = _tcp_address(url, address[0], address[1], passive=True)[0]
            return listen_socket(
                url, family, sockaddr, backlog=backlog, max_message_size=size, permissions=None
            )
        sockaddr = address if scheme == "unix" else "\0" + address
        return listen_socket(
            url,
            socket.AF_UNIX,
            sockaddr,
            backlog=backlog,
            max_message_size=size,
            permissions=permissions,
        )
    if scheme == "fifo":
        from ._channel_fifo import FifoListener

        opts = take_options(scheme, call, options, {**_stream_defaults(), "permissions": 0o600})
        return FifoListener(
            url,
            address,
            max_message_size=_max_size(opts),
            permissions=check_permissions(opts["permissions"]),
        )
    if scheme == "mq":
        from ._channel_mq import MqListener

        opts = take_options(
            scheme, call, options, {**_stream_defaults(), "permissions": 0o600, "backlog": 8}
        )
        return MqListener(
            url,
            address,
            max_message_size=_max_size(opts, _MAX_SPLIT),
            permissions=check_permissions(opts["permissions"]),
            backlog=check_int(opts["backlog"], "backlog", minimum=1),
        )
    if scheme == "sysvmq":
        from ._channel_sysvmq import SysVListener

        opts = take_options(scheme, call, options, {"permissions": 0o600})
        permissions = check_permissions(opts["permissions"])
        if permissions > 0o777:
            raise ValueError(f"permissions must be at most 0o777 for System V, got {permissions:o}")
        return SysVListener(url, check_sysv_key(address), permissions=permissions)
    from ._channel_shm import ShmListener

    opts = take_options(scheme, call, options, {"permissions": 0o600})
    return ShmListener(url, address, permissions=check_permissions(opts["permissions"]))


def connect(url: str, *, timeout: float | None = None, **options: Any) -> Channel:
    """Connect to the listener at ``url`` and return the channel.

    For sockets, ``connect`` returns once the kernel made the connection (the
    server's ``accept`` may come later); for FIFOs, queues and rings it returns
    when the server has accepted, so ``timeout=0`` only succeeds if it does so at
    once.

    Options: ``max_message_size`` (every scheme); ``permissions`` of the client's
    FIFOs or queues (``fifo``, ``mq``; 0o600); see the README per scheme.

    Raises:
        TypeError, ValueError: malformed URL or option.
        ResourceNotFoundError: nothing is listening at that name.
        IPCOSError: connection refused (errno ECONNREFUSED) or another system error.
        WouldBlock, TimeoutExpired: not connected within ``timeout`` seconds.
    """
    check_timeout(timeout)
    return _connect(url, Deadline(timeout), options)


def _connect(url: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """connect() with a deadline made by the caller (unixipc.aio cancels through it)."""
    scheme, address = parse_url(url)
    call = "connect"
    if scheme in ("unix", "unix-abstract", "tcp"):
        from ._channel_stream import connect_socket

        opts = take_options(scheme, call, options, _stream_defaults())
        size = _max_size(opts)
        if scheme == "tcp":
            candidates = _tcp_address(url, address[0] or "localhost", address[1], passive=False)
            if address[1] == 0:
                raise ValueError(f"cannot connect to port 0: {url!r}")
            last: Exception | None = None
            for family, sockaddr in candidates:
                try:
                    return connect_socket(url, family, sockaddr, deadline, max_message_size=size)
                except OSError as error:  # try the next address of the host
                    last = error
            assert last is not None
            raise last
        sockaddr = address if scheme == "unix" else "\0" + address
        return connect_socket(url, socket.AF_UNIX, sockaddr, deadline, max_message_size=size)
    if scheme == "fifo":
        from ._channel_fifo import connect_fifo

        opts = take_options(scheme, call, options, {**_stream_defaults(), "permissions": 0o600})
        return connect_fifo(
            url,
            address,
            deadline,
            max_message_size=_max_size(opts),
            permissions=check_permissions(opts["permissions"]),
        )
    if scheme == "mq":
        from ._channel_mq import connect_mq

        defaults = {
            **_stream_defaults(),
            "permissions": 0o600,
            "queue_length": 8,
            "queue_message_size": 4096,
        }
        opts = take_options(scheme, call, options, defaults)
        return connect_mq(
            url,
            address,
            deadline,
            max_message_size=_max_size(opts, _MAX_SPLIT),
            permissions=check_permissions(opts["permissions"]),
            queue_length=check_int(opts["queue_length"], "queue_length", minimum=1),
            queue_message_size=check_int(
                opts["queue_message_size"], "queue_message_size", minimum=1
            ),
        )
    if scheme == "sysvmq":
        from ._channel_sysvmq import connect_sysvmq

        take_options(scheme, call, options, {})
        return connect_sysvmq(url, check_sysv_key(address), deadline)
    from ._channel_shm import DEFAULT_CAPACITY, connect_shm

    opts = take_options(scheme, call, options, {"capacity": DEFAULT_CAPACITY, "permissions": 0o600})
    return connect_shm(
        url,
        address,
        deadline,
        capacity=_capacity(opts["capacity"]),
        permissions=check_permissions(opts["permissions"]),
    )


def channel_pair(kind: str, **options: Any) -> tuple[Channel, Channel]:
    """Two connected channel ends for related processes: ``kind`` is "pipe", "socketpair" or "shm".

    Make the pair before fork, or pass one end to a ``multiprocessing`` child
    (fork, spawn or forkserver). Each process then uses one end and closes the
    other: an end never used in a process closes silently there, so this never
    ends the conversation; the end a process uses tells its peer
    :class:`EndOfChannel` when closed, :class:`PeerDied` if the process dies.

    Options: ``max_message_size`` ("pipe", "socketpair"); ``capacity`` of each ring
    ("shm", default 1 MiB: the largest message is half of it less 16 bytes).

    Raises:
        TypeError, ValueError: unknown kind or option.
        ResourceLimitError: out of descriptors (or shared memory).
    """
    if kind not in PAIR_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, PAIR_KINDS))}; got {kind!r}")
    if kind == "shm":
        from ._channel_shm import DEFAULT_CAPACITY, shm_pair

        opts = take_options(kind, "channel_pair", options, {"capacity": DEFAULT_CAPACITY})
        return shm_pair(_capacity(opts["capacity"]))
    opts = take_options(kind, "channel_pair", options, _stream_defaults())
    size = _max_size(opts)
    if kind == "pipe":
        return pipe_pair(size)
    return socket_pair(size)


def _capacity(value: object) -> int:
    """A ring's capacity in bytes (its largest message is half of it less 16)."""
    from .ring import MAX_CAPACITY, MIN_CAPACITY

    capacity = check_int(value, "capacity", minimum=MIN_CAPACITY)
    if capacity > MAX_CAPACITY:
        raise ValueError(f"capacity must be <= {MAX_CAPACITY}, got {capacity}")
    return capacity
