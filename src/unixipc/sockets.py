"""UNIX domain, TCP and UDP sockets: descriptor passing, credentials, message framing.

Persistence: process. A socket lives while some process holds it open. A UNIX
socket bound to a path leaves a socket *file* behind when it closes; the file is
useless without a listener, and :func:`unix_listen` replaces such a leftover
(but never the file of a live listener). Abstract-namespace addresses
(``abstract=True``) vanish with the last socket, but **have no file
permissions**: any process in the same network namespace can connect, so
check the peer (``allowed_uids``, :func:`peer_credentials`).

Portability: Linux (abstract addresses, SO_PEERCRED, SCM_CREDENTIALS,
MSG_CMSG_CLOEXEC, SOCK_SEQPACKET on UNIX sockets); the rest is POSIX.

The sockets are the standard library's :class:`socket.socket` objects (so they
work with ``selectors``, ``asyncio`` and every library that takes a socket);
listeners are small subclasses whose ``accept`` takes a ``timeout``. The
functions here add what the standard library leaves to every program:

- ``timeout=`` on every blocking call with the project's meaning (``None``
  blocks, ``0`` tries once and raises :class:`WouldBlock`, a positive number
  raises :class:`TimeoutExpired`), whatever the socket's own blocking mode;
- sends never raise SIGPIPE (MSG_NOSIGNAL); a vanished peer (EPIPE,
  ECONNRESET) raises :class:`PeerDied`;
- descriptor passing that never leaks a descriptor (:func:`receive_fds`);
- length-prefixed message framing on stream sockets, with the announced length
  checked against the receiver's maximum before anything is allocated
  (:func:`send_message`, :func:`receive_message`).

Bytes read by a stream call that then runs out of time (for example half of a
frame) are not lost: they are kept for this socket object and returned first by
the next receive call of this module.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import ipaddress
import os
import select
import socket
import stat
import struct
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass
from multiprocessing import reduction
from typing import Any, Final, Literal, TypeVar, overload

from ._deadline import Deadline, wait_fd
from ._names import check_bytes_like, check_group, check_int, check_path, check_permissions
from ._permissions import identity, new_node
from ._resource import all_or_nothing, on_failure
from .errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    TimeoutExpired,
    UnsupportedFeature,
    WouldBlock,
    from_os_error,
)

__all__ = (
    "ANY_UID",
    "FRAME_HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "BoundUnixSocket",
    "Credentials",
    "FramingError",
    "Listener",
    "ReceivedFds",
    "UnixListener",
    "join_group",
    "leave_group",
    "peek",
    "peer_admitted",
    "peer_credentials",
    "receive_datagram",
    "receive_exactly",
    "receive_fds",
    "receive_message",
    "receive_message_into",
    "receive_some",
    "receive_with_credentials",
    "send_all",
    "send_datagram",
    "send_fds",
    "send_message",
    "send_with_credentials",
    "tcp_connect",
    "tcp_listen",
    "udp_socket",
    "unix_connect",
    "unix_listen",
)

Kind = Literal["stream", "datagram", "seqpacket"]
_SOCKET_TYPES: dict[str, int] = {
    "stream": socket.SOCK_STREAM,
    "datagram": socket.SOCK_DGRAM,
    "seqpacket": socket.SOCK_SEQPACKET,
}

#: Longest UNIX socket path: sun_path holds 108 bytes including the final NUL.
UNIX_PATH_MAX = 107
#: Most descriptors one message may carry (the kernel's SCM_MAX_FD).
SCM_MAX_FD = 253

_FD_SIZE = array.array("i").itemsize
# Plain ints: or-ing the socket module's IntFlag members costs more than the system call.
_DONTWAIT = int(socket.MSG_DONTWAIT)
_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_PEEK = int(socket.MSG_PEEK)
_CMSG_CLOEXEC = int(socket.MSG_CMSG_CLOEXEC)
# Not in Python's socket module (linux/in.h, linux/in6.h).
_IP_MULTICAST_ALL = 49
_IPV6_MULTICAST_ALL = 29
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid

_T = TypeVar("_T")


class FramingError(IPCError, ValueError):
    """Bytes from the peer are not a unixipc frame (garbage, or another protocol).

    The stream is out of step after this: close the connection.
    """


@dataclass(frozen=True)
class Credentials:
    """A peer process's identity, as the kernel recorded it (not as the peer claims).

    For :func:`peer_credentials`, the identity at the time the peer called
    connect(2) or socketpair(2). Root (CAP_SYS_ADMIN / CAP_SETUID) can send
    other ids explicitly with SCM_CREDENTIALS.
    """

    pid: int
    uid: int
    gid: int


class ReceivedFds(tuple[bytes, list[int]]):
    """What :func:`receive_fds` returns: unpacks as ``data, fds``.

    ``truncated`` is True when descriptors were dropped: the sender sent more
    than ``max_fds`` (the extra ones that arrived were closed) or the kernel
    cut the control message short (MSG_CTRUNC; it closed those that did not
    fit). The caller now owns every descriptor in ``fds`` and must close them.
    """

    truncated: bool

    def __new__(cls, data: bytes, fds: list[int], truncated: bool = False) -> ReceivedFds:
        self = super().__new__(cls, (data, fds))
        self.truncated = truncated
        return self

    @property
    def data(self) -> bytes:
        """The bytes received with the descriptors."""
        return self[0]

    @property
    def fds(self) -> list[int]:
        """The descriptors received (close-on-exec), owned by the caller."""
        return self[1]

    def __repr__(self) -> str:
        return f"ReceivedFds(data={self[0]!r}, fds={self[1]!r}, truncated={self.truncated})"


# ---------------------------------------------------------------------------
# Describing sockets and translating their errors


def _kind_of(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        return "UNIX socket"
    return "TCP socket" if sock.type == socket.SOCK_STREAM else "UDP socket"


def _unix_name(address: object) -> str:
    if isinstance(address, bytes):  # abstract (Python gives those as bytes)
        return "@" + address[1:].decode(errors="replace")
    return str(address) if address else ""


def _name_of(sock: socket.socket) -> str:
    """A name for messages: the path or address (the peer's when connected)."""
    with contextlib.suppress(OSError):
        if sock.family == socket.AF_UNIX:
            name = _unix_name(sock.getsockname()) or _unix_name(sock.getpeername())
            return name or f"fd {sock.fileno()}"
        with contextlib.suppress(OSError):
            host, port = sock.getpeername()[:2]
            return f"{host}:{port}"
        host, port = sock.getsockname()[:2]
        return f"{host}:{port}"
    return f"fd {sock.fileno()}"


def _describe(sock: socket.socket) -> str:
    return f"{_kind_of(sock)} {_name_of(sock)!r}"


def _os_error(error: OSError, sock: socket.socket) -> IPCError:
    return from_os_error(error, _kind_of(sock), _name_of(sock))


def _check_socket(sock: object, argument: str = "sock") -> socket.socket:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"{argument} must be a socket.socket, not {type(sock).__name__}")
    if sock.fileno() == -1:
        raise ClosedResourceError(f"{argument} is a closed socket")
    return sock


def _check_kind(kind: object) -> int:
    if kind not in _SOCKET_TYPES:
        raise ValueError(f"kind must be 'stream', 'datagram' or 'seqpacket', got {kind!r}")
    return _SOCKET_TYPES[kind]


# ---------------------------------------------------------------------------
# The one loop every blocking call goes through


def _retry(
    sock: socket.socket,
    events: int,
    deadline: Deadline,
    what: Callable[[], str],
    operation: Callable[[int], _T],
) -> _T:
    """Run ``operation(flags)`` until it completes, waiting for ``events`` as needed.

    With no deadline on a socket in blocking mode, ``flags`` is 0: one plain
    blocking system call, in which CPython releases the GIL and, after a
    signal, runs the handlers and retries (PEP 475). Otherwise ``flags`` is
    MSG_DONTWAIT and the waiting happens in poll(2) against our deadline; a
    socket with a Python-level timeout (which makes CPython poll before each
    call with *its* timeout) is polled here first, so that ours rules.
    """
    timeout = sock.gettimeout()
    if timeout is None and deadline.timeout is None:
        flags = 0
    else:
        flags = _DONTWAIT
        if timeout:
            wait_fd(sock.fileno(), events, deadline, what())
    while True:
        try:
            return operation(flags)
        except (BlockingIOError, InterruptedError, TimeoutError):
            pass  # TimeoutError: the socket's own timeout, when a peer stole the data
        except OSError as error:
            raise _os_error(error, sock) from None
        wait_fd(sock.fileno(), events, deadline, what())


class _Leftovers:
    """Bytes read by a call that ran out of time, per socket object, given back first.

    Held weakly: an entry disappears with its socket. (A WeakKeyDictionary
    would do, but its per-call cost shows on the fast path.)
    """

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref[socket.socket], bytes]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __contains__(self, sock: socket.socket) -> bool:
        entry = self._by_id.get(id(sock))
        return entry is not None and entry[0]() is sock

    def get(self, sock: socket.socket) -> bytes:
        entry = self._by_id.get(id(sock))
        return entry[1] if entry is not None and entry[0]() is sock else b""

    def pop(self, sock: socket.socket) -> bytes:
        entry = self._by_id.pop(id(sock), None)
        return entry[1] if entry is not None and entry[0]() is sock else b""

    def put(self, sock: socket.socket, data: bytes) -> None:
        key = id(sock)
        if not data:
            self._by_id.pop(key, None)
            return
        by_id = self._by_id
        reference = weakref.ref(sock, lambda _dead: by_id.pop(key, None))
        by_id[key] = (reference, data)


_pending = _Leftovers()


def _push_back(sock: socket.socket, data: bytes) -> None:
    if data:
        _pending.put(sock, data + _pending.get(sock))


def _take_pending(sock: socket.socket, view: memoryview) -> int:
    pending = _pending.pop(sock) if _pending else b""
    if not pending:
        return 0
    count = min(len(view), len(pending))
    view[:count] = pending[:count]
    _pending.put(sock, pending[count:])
    return count


def _recv_now(sock: socket.socket, size: int, flags: int) -> bytes | None:
    """recv() without waiting at all; None if nothing is there (or the socket
    has a Python-level timeout, with which CPython would wait)."""
    timeout = sock.gettimeout()
    if timeout is not None and timeout > 0:
        return None
    try:
        return sock.recv(size, flags | _DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as error:
        raise _os_error(error, sock) from None


def _recv_into(sock: socket.socket, view: memoryview, deadline: Deadline) -> int:
    return _retry(
        sock,
        select.POLLIN,
        deadline,
        lambda: f"receiving from {_describe(sock)}",
        lambda flags: sock.recv_into(view, len(view), flags),
    )


def _fill(sock: socket.socket, view: memoryview, deadline: Deadline, already: bytes = b"") -> None:
    """Fill ``view`` completely; on running out of time keep ``already`` + what was read."""
    filled = _take_pending(sock, view)
    try:
        while filled < len(view):
            count = _recv_into(sock, view[filled:], deadline)
            if count == 0:
                raise _end_of_channel(
                    f"{_describe(sock)}: the peer closed the stream after "
                    f"{len(already) + filled} of {len(already) + len(view)} bytes",
                    already + bytes(view[:filled]),
                )
            filled += count
    except (WouldBlock, TimeoutExpired, KeyboardInterrupt):
        _push_back(sock, already + bytes(view[:filled]))
        raise


def _first_try_flags(sock: socket.socket, deadline: Deadline) -> int | None:
    """Flags for trying a call at once, or None if CPython would wait with the socket's timeout."""
    timeout = sock.gettimeout()
    if timeout is None:
        return 0 if deadline.timeout is None else _DONTWAIT
    return _DONTWAIT if timeout == 0 else None


def _send_buffers(
    sock: socket.socket, buffers: list[memoryview], deadline: Deadline, sent_total: int = 0
) -> None:
    """Send every byte of ``buffers`` (one sendmsg when the socket has room: no copy)."""
    while buffers:
        try:
            sent = _retry(
                sock,
                select.POLLOUT,
                deadline,
                lambda: f"sending on {_describe(sock)}",
                lambda flags: sock.sendmsg(buffers, (), flags | _NOSIGNAL),
            )
        except (WouldBlock, TimeoutExpired) as error:
            error.bytes_sent = sent_total
            raise
        sent_total += sent
        while buffers and sent >= len(buffers[0]):
            sent -= len(buffers[0])
            buffers.pop(0)
        if buffers and sent:
            buffers[0] = buffers[0][sent:]


# ---------------------------------------------------------------------------
# Byte streams


def send_all(sock: socket.socket, data: Any, *, timeout: float | None = None) -> None:
    """Send all of ``data`` (any bytes-like object) on a stream socket.

    If time runs out after part of ``data`` went out, the exception's
    ``bytes_sent`` says how much.

    Raises:
        PeerDied: the peer has gone (EPIPE, ECONNRESET); never SIGPIPE.
        WouldBlock: ``timeout=0`` and the socket's buffer is full.
        TimeoutExpired: the data did not go out within ``timeout`` seconds.
        ClosedResourceError: ``sock`` is closed.
    """
    view = check_bytes_like(data)
    deadline = Deadline(timeout)
    _check_socket(sock)
    if len(view):
        _send_buffers(sock, [view], deadline)


def receive_some(
    sock: socket.socket, max_bytes: int = 65536, *, timeout: float | None = None
) -> bytes:
    """Receive between 1 and ``max_bytes`` bytes; ``b""`` when the peer closed the stream.

    Raises:
        PeerDied: the connection was reset.
        WouldBlock: ``timeout=0`` and nothing is available.
        TimeoutExpired: nothing arrived within ``timeout`` seconds.
        ClosedResourceError: ``sock`` is closed.
    """
    check_int(max_bytes, "max_bytes", minimum=1)
    deadline = Deadline(timeout)
    _check_socket(sock)
    pending = _pending.pop(sock) if _pending else b""
    if pending:
        _pending.put(sock, pending[max_bytes:])
        return pending[:max_bytes]
    return _retry(
        sock,
        select.POLLIN,
        deadline,
        lambda: f"receiving from {_describe(sock)}",
        lambda flags: sock.recv(max_bytes, flags),
    )


def receive_exactly(sock: socket.socket, n: int, *, timeout: float | None = None) -> bytes:
    """Receive exactly ``n`` bytes from a stream socket.

    If time runs out first, the bytes already read are kept and returned first
    by the next receive call: nothing is lost.

    Raises:
        EndOfChannel: the peer closed the stream first (``partial`` holds what came).
        PeerDied: the connection was reset.
        WouldBlock, TimeoutExpired: as :func:`receive_some`.
    """
    check_int(n, "n", minimum=0)
    deadline = Deadline(timeout)
    _check_socket(sock)
    buffer = bytearray(n)
    _fill(sock, memoryview(buffer), deadline)
    return bytes(buffer)


def peek(sock: socket.socket, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
    """Return up to ``max_bytes`` of the data waiting, without consuming it (MSG_PEEK).

    Waits until some data is available; ``b""`` means the peer closed the
    stream. On a datagram socket, the next datagram (cut to ``max_bytes``).

    Raises:
        WouldBlock, TimeoutExpired: as :func:`receive_some`.
    """
    check_int(max_bytes, "max_bytes", minimum=1)
    deadline = Deadline(timeout)
    _check_socket(sock)
    pending = _pending.get(sock) if _pending else b""
    if pending:
        if len(pending) < max_bytes:
            more = _recv_now(sock, max_bytes - len(pending), _PEEK)
            return pending + (more or b"")
        return pending[:max_bytes]
    return _retry(
        sock,
        select.POLLIN,
        deadline,
        lambda: f"peeking at {_describe(sock)}",
        lambda flags: sock.recv(max_bytes, flags | _PEEK),
    )


# ---------------------------------------------------------------------------
# Message framing on stream sockets

#: A frame is this 8-byte header, then the payload: the magic b"uxf1" (so that
#: garbage or another protocol is recognised at once) and the payload's length
#: as a 32-bit big-endian unsigned integer.
_FRAME_MAGIC = b"uxf1"
_FRAME_HEADER = struct.Struct(">4sI")
FRAME_HEADER_SIZE: int = _FRAME_HEADER.size
#: Largest payload a frame can announce (4 GiB - 1).
MAX_FRAME_SIZE: int = 2**32 - 1


def send_message(sock: socket.socket, data: Any, *, timeout: float | None = None) -> None:
    """Send ``data`` (any bytes-like object, up to 4 GiB - 1) as one frame.

    Header and payload go out in one sendmsg(2) when the socket has room, and
    the payload is never copied. If time runs out after part of the frame went
    out (``bytes_sent`` on the exception counts the 8-byte header too), the
    stream is in the middle of a frame: close the connection.

    Raises:
        MessageTooLarge: ``data`` is larger than :data:`MAX_FRAME_SIZE` (nothing is sent).
        PeerDied: the peer has gone (EPIPE, ECONNRESET); never SIGPIPE.
        WouldBlock: ``timeout=0`` and the socket's buffer is full.
        TimeoutExpired: the frame did not go out within ``timeout`` seconds.
        ClosedResourceError: ``sock`` is closed.
    """
    view = check_bytes_like(data)
    deadline = Deadline(timeout)
    _check_socket(sock)
    if len(view) > MAX_FRAME_SIZE:
        raise MessageTooLarge(
            f"a frame holds at most {MAX_FRAME_SIZE} bytes, not {len(view)} ({_describe(sock)})"
        )
    buffers = [memoryview(_FRAME_HEADER.pack(_FRAME_MAGIC, len(view))), view]
    total = FRAME_HEADER_SIZE + len(view)
    sent = 0
    flags = _first_try_flags(sock, deadline)
    if flags is not None:  # the common case: one system call and done
        try:
            sent = sock.sendmsg(buffers, (), flags | _NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as error:
            raise _os_error(error, sock) from None
        if sent == total:
            return
    if sent >= FRAME_HEADER_SIZE:
        buffers = [view[sent - FRAME_HEADER_SIZE :]]
    elif sent:
        buffers[0] = buffers[0][sent:]
    _send_buffers(sock, buffers, deadline, sent)


def _receive_header(sock: socket.socket, max_size: int, deadline: Deadline) -> tuple[bytes, int]:
    """Read and check a frame header; return it and the payload size it announces."""
    header = bytearray(FRAME_HEADER_SIZE)
    first = None
    flags = None if _pending else _first_try_flags(sock, deadline)
    if flags is not None:  # the common case: the whole header in one system call
        try:
            first = sock.recv(FRAME_HEADER_SIZE, flags)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as error:
            raise _os_error(error, sock) from None
    if first is not None and len(first) == FRAME_HEADER_SIZE:
        return first, _check_header(sock, first, max_size)
    if first:
        _pending.put(sock, first)  # part of a header: _fill takes it first
    try:
        if first == b"":
            raise _end_of_channel("", b"")
        _fill(sock, memoryview(header), deadline)
    except EndOfChannel as error:
        partial: bytes = error.partial  # type: ignore[attr-defined]
        if not partial:
            raise _end_of_channel(f"{_describe(sock)}: the peer closed the stream", b"") from None
        raise _end_of_channel(
            f"{_describe(sock)}: the peer closed the stream in the middle of a frame header",
            partial,
        ) from None
    return bytes(header), _check_header(sock, header, max_size)


def _check_header(sock: socket.socket, header: bytes | bytearray, max_size: int) -> int:
    """The payload size a frame header announces, checked before anything is allocated."""
    magic, size = _FRAME_HEADER.unpack(header)
    if magic != _FRAME_MAGIC:
        raise FramingError(
            f"{_describe(sock)}: not a unixipc frame: the stream starts with "
            f"{bytes(header)!r} (garbage, or another protocol); close the connection"
        )
    if size > max_size:
        raise MessageTooLarge(
            f"{_describe(sock)}: the peer announced a frame of {size} bytes, "
            f"more than the maximum of {max_size}; nothing was allocated; close the connection"
        )
    return int(size)


def receive_message(sock: socket.socket, *, max_size: int, timeout: float | None = None) -> bytes:
    """Receive one frame sent by :func:`send_message` and return its payload.

    The announced length is checked against ``max_size`` *before* any
    allocation, so a peer announcing 4 GB gets an error, not an allocation.
    The payload is read straight into its final buffer. If time runs out in
    the middle of a frame, what was read is kept for the next call.

    Raises:
        MessageTooLarge: the peer announced more than ``max_size`` bytes.
        FramingError: the bytes are not a frame (garbage).
        EndOfChannel: the peer closed the stream: cleanly between frames
            (``partial`` is ``b""``), or in the middle of one (``partial``
            holds the bytes of the unfinished frame, header included).
        PeerDied: the connection was reset.
        WouldBlock: ``timeout=0`` and no complete frame is available.
        TimeoutExpired: no complete frame arrived within ``timeout`` seconds.
        ClosedResourceError: ``sock`` is closed.
    """
    check_int(max_size, "max_size", minimum=0)
    deadline = Deadline(timeout)
    _check_socket(sock)
    header, size = _receive_header(sock, max_size, deadline)
    if size == 0:
        return b""
    if not _pending or sock not in _pending:
        # Fast path: the whole payload is usually there already; recv() then
        # returns it as the final bytes object, with no copy.
        first = _recv_now(sock, size, 0)
        if first is not None:
            if len(first) == size:
                return first
            if not first:
                raise _truncated(sock, header, size)
            _push_back(sock, first)
    buffer = bytearray(size)
    try:
        _fill(sock, memoryview(buffer), deadline, already=header)
    except EndOfChannel as error:
        raise _truncated(sock, error.partial, size) from None  # type: ignore[attr-defined]
    return bytes(buffer)


def _end_of_channel(message: str, partial: bytes) -> EndOfChannel:
    error = EndOfChannel(message)
    error.partial = partial  # type: ignore[attr-defined]
    return error


def _truncated(sock: socket.socket, partial: bytes, size: int) -> EndOfChannel:
    got = len(partial) - FRAME_HEADER_SIZE
    return _end_of_channel(
        f"{_describe(sock)}: the peer closed the stream after {got} of the "
        f"{size} bytes of a frame (truncated frame)",
        partial,
    )


def receive_message_into(sock: socket.socket, buffer: Any, *, timeout: float | None = None) -> int:
    """Receive one frame's payload into the writable ``buffer``; return its length.

    The maximum is ``len(buffer)``; nothing else is allocated.

    Raises:
        MessageTooLarge: the frame does not fit in ``buffer``.
        FramingError, EndOfChannel, PeerDied, WouldBlock, TimeoutExpired:
            as :func:`receive_message`.
    """
    view = check_bytes_like(buffer, "buffer")
    if view.readonly:
        raise TypeError("buffer must be writable")
    deadline = Deadline(timeout)
    _check_socket(sock)
    header, size = _receive_header(sock, len(view), deadline)
    try:
        _fill(sock, view[:size], deadline, already=header)
    except EndOfChannel as error:
        raise _truncated(sock, error.partial, size) from None  # type: ignore[attr-defined]
    return size


# ---------------------------------------------------------------------------
# Datagrams (UDP, UNIX datagram and seqpacket)


def send_datagram(
    sock: socket.socket,
    data: Any,
    address: Any = None,
    *,
    timeout: float | None = None,
) -> None:
    """Send ``data`` as one datagram (or seqpacket record), to ``address`` if given.

    Raises:
        MessageTooLarge: the datagram is larger than the socket allows (EMSGSIZE).
        PeerDied: the connected peer has gone.
        UnsupportedFeature: IPv6 multicast through an interface without a
            multicast route, such as loopback by default (the message says why).
        WouldBlock, TimeoutExpired: the socket's buffer stayed full.
    """
    view = check_bytes_like(data)
    deadline = Deadline(timeout)
    _check_socket(sock)

    def send(flags: int) -> int:
        if address is None:
            return sock.send(view, flags | _NOSIGNAL)
        return sock.sendto(view, flags | _NOSIGNAL, address)

    try:
        _retry(sock, select.POLLOUT, deadline, lambda: f"sending on {_describe(sock)}", send)
    except IPCError as error:
        code = error.errno if isinstance(error, OSError) else None
        if code == errno.EMSGSIZE:
            raise MessageTooLarge(
                f"{_describe(sock)}: a datagram of {len(view)} bytes is too large"
            ) from None
        if code == errno.ENETUNREACH and _is_ipv6_multicast(address):
            raise UnsupportedFeature(
                f"IPv6 multicast to {address[0]} from {_describe(sock)}: the kernel has no "
                "multicast route (ff00::/8) on the chosen interface (ENETUNREACH). Linux "
                "installs that route only on interfaces with the MULTICAST flag, which the "
                "loopback interface lacks by default (`ip link set lo multicast on` adds it). "
                "IPv4 multicast on loopback does not need the route."
            ) from None
        raise


def _is_ipv6_multicast(address: Any) -> bool:
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return False
    try:
        host = ipaddress.ip_address(address[0].split("%")[0])
    except ValueError:
        return False
    return host.version == 6 and host.is_multicast


def receive_datagram(
    sock: socket.socket, max_size: int = 65536, *, timeout: float | None = None
) -> tuple[bytes, Any]:
    """Receive one datagram (or seqpacket record): ``(data, sender address)``.

    Raises:
        MessageTooLarge: the datagram was longer than ``max_size``; the kernel
            has discarded it (MSG_TRUNC), as it does for every datagram socket.
        WouldBlock, TimeoutExpired: nothing arrived in time.
    """
    check_int(max_size, "max_size", minimum=1)
    deadline = Deadline(timeout)
    _check_socket(sock)
    data, _ancillary, flags, address = _retry(
        sock,
        select.POLLIN,
        deadline,
        lambda: f"receiving from {_describe(sock)}",
        lambda flags: sock.recvmsg(max_size, 0, flags),
    )
    if flags & socket.MSG_TRUNC:
        raise MessageTooLarge(
            f"{_describe(sock)}: a datagram longer than max_size={max_size} arrived "
            "and was discarded"
        )
    return data, address


# ---------------------------------------------------------------------------
# Descriptor passing and credentials (UNIX sockets)


def _check_unix(sock: socket.socket, what: str) -> None:
    if sock.family != socket.AF_UNIX:
        raise ValueError(f"{what} works only on UNIX domain sockets, not {_describe(sock)}")


def _fd_number(fd: object) -> int:
    if hasattr(fd, "fileno") and not isinstance(fd, int):
        fd = fd.fileno()
    return check_int(fd, "fds item", minimum=0)


def send_fds(
    sock: socket.socket,
    data: Any,
    fds: Sequence[int | Any],
    *,
    address: Any = None,
    timeout: float | None = None,
) -> None:
    """Send ``data`` with open descriptors ``fds`` attached (SCM_RIGHTS).

    The receiver gets new descriptors for the same open files (the offset and
    status flags are shared). ``fds`` holds ints or objects with ``fileno()``;
    they stay open here. ``data`` must not be empty: on a stream socket the
    descriptors travel with its first byte. ``address`` is for unconnected
    datagram sockets.

    Raises:
        ValueError: empty ``data``, no descriptors, or more than 253 (SCM_MAX_FD).
        PeerDied: the peer has gone; never SIGPIPE.
        ResourceLimitError: the receiver has too many descriptors in flight
            (ETOOMANYREFS / EMFILE).
        WouldBlock, TimeoutExpired: the socket's buffer stayed full.
    """
    view = check_bytes_like(data)
    if not len(view):
        raise ValueError("data must hold at least one byte to carry the descriptors")
    if isinstance(fds, (str, bytes)) or not isinstance(fds, Sequence):
        raise TypeError(f"fds must be a sequence of descriptors, not {type(fds).__name__}")
    numbers = array.array("i", [_fd_number(fd) for fd in fds])
    if not 1 <= len(numbers) <= SCM_MAX_FD:
        raise ValueError(f"fds must hold 1 to {SCM_MAX_FD} descriptors, got {len(numbers)}")
    deadline = Deadline(timeout)
    _check_socket(sock)
    _check_unix(sock, "send_fds")
    control = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, numbers)]

    def send(flags: int) -> int:
        if address is None:
            return sock.sendmsg([view], control, flags | _NOSIGNAL)
        return sock.sendmsg([view], control, flags | _NOSIGNAL, address)

    sent = _retry(
        sock, select.POLLOUT, deadline, lambda: f"sending descriptors on {_describe(sock)}", send
    )
    if sent < len(view):  # a stream took part of it: the descriptors went with that part
        _send_buffers(sock, [view[sent:]], deadline)


def _collect_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds.extend(array.array("i", payload[:usable]))
    return fds


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def receive_fds(
    sock: socket.socket, max_data: int, max_fds: int, *, timeout: float | None = None
) -> ReceivedFds:
    """Receive up to ``max_data`` bytes and up to ``max_fds`` descriptors (SCM_RIGHTS).

    Returns a :class:`ReceivedFds`, which unpacks as ``(data, fds)``; the caller
    owns (and closes) the descriptors, which are close-on-exec. Descriptors
    never leak: any beyond ``max_fds``, and any from a control message the
    kernel truncated (MSG_CTRUNC), are closed and ``result.truncated`` is
    True; the data is still returned. ``max_fds=0`` refuses descriptors.
    ``data`` is ``b""`` (with no descriptors) when a stream peer has closed.

    Raises:
        MessageTooLarge: a datagram was longer than ``max_data`` (it is
            discarded, and the descriptors it carried are closed).
        PeerDied: the connection was reset.
        WouldBlock, TimeoutExpired: nothing arrived in time.
    """
    check_int(max_data, "max_data", minimum=1)
    check_int(max_fds, "max_fds", minimum=0)
    if max_fds > SCM_MAX_FD:
        raise ValueError(f"max_fds must be at most {SCM_MAX_FD}, got {max_fds}")
    deadline = Deadline(timeout)
    _check_socket(sock)
    _check_unix(sock, "receive_fds")
    pending = _pending.pop(sock) if _pending else b""
    if pending:  # bytes read earlier by a timed-out call carry no descriptors
        _pending.put(sock, pending[max_data:])
        return ReceivedFds(pending[:max_data], [])
    control_size = socket.CMSG_SPACE(max(max_fds, 1) * _FD_SIZE)
    data, ancillary, flags, _address = _retry(
        sock,
        select.POLLIN,
        deadline,
        lambda: f"receiving descriptors from {_describe(sock)}",
        lambda flags: sock.recvmsg(max_data, control_size, flags | _CMSG_CLOEXEC),
    )
    fds = _collect_fds(ancillary)
    kept, extra = fds[:max_fds], fds[max_fds:]
    _close_all(extra)
    if flags & socket.MSG_TRUNC and sock.type != socket.SOCK_STREAM:
        _close_all(kept)
        raise MessageTooLarge(
            f"{_describe(sock)}: a message longer than max_data={max_data} arrived and was "
            f"discarded with its {len(fds)} descriptors"
        )
    return ReceivedFds(data, kept, bool(extra) or bool(flags & socket.MSG_CTRUNC))


def peer_credentials(sock: socket.socket) -> Credentials:
    """The connected peer's pid, uid and gid, recorded by the kernel (SO_PEERCRED).

    For a stream or seqpacket UNIX socket (or a socketpair): the identity of the
    process that connected (or listened), at that time.

    Raises:
        ValueError: ``sock`` is not a UNIX domain socket.
        IPCOSError: ``sock`` is not connected (ENOTCONN).
    """
    _check_socket(sock)
    _check_unix(sock, "peer_credentials")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as error:
        raise _os_error(error, sock) from None
    pid, uid, gid = _UCRED.unpack(raw)
    if pid == 0:
        raise from_os_error(
            OSError(errno.ENOTCONN, "not connected"), _kind_of(sock), _name_of(sock)
        )
    return Credentials(pid, uid, gid)


def send_with_credentials(
    sock: socket.socket,
    data: Any,
    *,
    pid: int | None = None,
    uid: int | None = None,
    gid: int | None = None,
    address: Any = None,
    timeout: float | None = None,
) -> None:
    """Send ``data`` with explicit credentials attached (SCM_CREDENTIALS).

    The receiver reads them with :func:`receive_with_credentials` (or C's
    ``recvmsg`` with SO_PASSCRED). Each of ``pid``, ``uid``, ``gid`` defaults to
    this process's own (pid, effective uid and gid), which anyone may send; the
    kernel lets only a privileged process claim others (CAP_SYS_ADMIN for a pid,
    CAP_SETUID for a uid, CAP_SETGID for a gid). ``data`` must not be empty on a
    stream socket (the credentials travel with its first byte). ``address`` is
    for unconnected datagram sockets.

    Raises:
        PermissionDeniedError: the credentials are not ours to claim (EPERM).
        PeerDied: the peer has gone; never SIGPIPE.
        WouldBlock, TimeoutExpired: the socket's buffer stayed full.
    """
    view = check_bytes_like(data)
    credentials = Credentials(
        os.getpid() if pid is None else _check_id(pid, "pid", signed=True),
        os.geteuid() if uid is None else _check_id(uid, "uid"),
        os.getegid() if gid is None else _check_id(gid, "gid"),
    )
    deadline = Deadline(timeout)
    _check_socket(sock)
    _check_unix(sock, "send_with_credentials")
    if not len(view) and sock.type == socket.SOCK_STREAM:
        raise ValueError("data must hold at least one byte to carry the credentials")
    control = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, _UCRED.pack(*astuple(credentials)))]

    def send(flags: int) -> int:
        if address is None:
            return sock.sendmsg([view], control, flags | _NOSIGNAL)
        return sock.sendmsg([view], control, flags | _NOSIGNAL, address)

    sent = _retry(
        sock, select.POLLOUT, deadline, lambda: f"sending credentials on {_describe(sock)}", send
    )
    if sent < len(view):  # a stream took part of it: the credentials went with that part
        _send_buffers(sock, [view[sent:]], deadline)


def _check_id(value: object, argument: str, *, signed: bool = False) -> int:
    number = check_int(value, argument, minimum=0)
    if number >= (2**31 if signed else 2**32 - 1):
        raise ValueError(f"{argument} does not fit its C type, got {number}")
    return number


def receive_with_credentials(
    sock: socket.socket, max_data: int = 65536, *, timeout: float | None = None
) -> tuple[bytes, Credentials | None]:
    """Receive data with its sender's credentials (SCM_CREDENTIALS).

    Turns SO_PASSCRED on for ``sock`` (once on is enough; do it early with
    ``sock.setsockopt(SOL_SOCKET, SO_PASSCRED, 1)`` for a datagram socket, so
    that queued datagrams carry them too). On a stream socket, one call never
    mixes bytes from writes with different credentials. The credentials are
    None only if the kernel attached none. Descriptors sent along are closed.

    Raises:
        MessageTooLarge: a datagram longer than ``max_data`` (discarded).
        WouldBlock, TimeoutExpired, PeerDied: as :func:`receive_some`.
    """
    check_int(max_data, "max_data", minimum=1)
    deadline = Deadline(timeout)
    _check_socket(sock)
    _check_unix(sock, "receive_with_credentials")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    control_size = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(SCM_MAX_FD * _FD_SIZE)
    data, ancillary, flags, _address = _retry(
        sock,
        select.POLLIN,
        deadline,
        lambda: f"receiving from {_describe(sock)}",
        lambda flags: sock.recvmsg(max_data, control_size, flags | _CMSG_CLOEXEC),
    )
    _close_all(_collect_fds(ancillary))
    if flags & socket.MSG_TRUNC and sock.type != socket.SOCK_STREAM:
        raise MessageTooLarge(
            f"{_describe(sock)}: a message longer than max_data={max_data} arrived and was "
            "discarded"
        )
    credentials = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            credentials = Credentials(*_UCRED.unpack(payload[: _UCRED.size]))
    return data, credentials


# ---------------------------------------------------------------------------
# Listeners


class Listener(socket.socket):
    """A listening socket whose :meth:`accept` takes a ``timeout``.

    The listening descriptor is non-blocking (so ``gettimeout()`` is 0.0), as
    selectors and asyncio want it; ``accept`` still blocks as asked. Accepted
    connections are ordinary blocking sockets.
    """

    def accept(self, *, timeout: float | None = None) -> tuple[socket.socket, Any]:
        """Wait for a connection and return ``(connection, address)``.

        Raises:
            WouldBlock: ``timeout=0`` and no connection is waiting.
            TimeoutExpired: none arrived within ``timeout`` seconds.
            ResourceLimitError: out of file descriptors (EMFILE, ENFILE).
            ClosedResourceError: the listener is closed.
        """
        deadline = Deadline(timeout)
        _check_socket(self, "listener")
        while True:
            connection, address = _retry(
                self,
                select.POLLIN,
                deadline,
                lambda: f"accepting on {_describe(self)}",
                self._accept_once,
            )
            if self._admit(connection):
                return connection, address

    def _accept_once(self, flags: int) -> tuple[socket.socket, Any]:
        # The listening descriptor is non-blocking, so accept never waits here.
        try:
            return super().accept()
        except ConnectionAbortedError:  # the client gave up while queued: wait for another
            raise BlockingIOError(errno.EAGAIN, "aborted") from None

    def _admit(self, connection: socket.socket) -> bool:
        return True

    @property
    def address(self) -> Any:
        """The address this socket is bound to (for TCP: ``(host, port)``)."""
        return self.getsockname()


class BoundUnixSocket(socket.socket):
    """A UNIX socket bound to a path (or an abstract name) by :func:`unix_listen`.

    ``close()`` never removes the socket file (a forked child closing its copy
    must not take the name from the parent); ``unlink()``, called before
    ``close()``, does. A leftover file is harmless: the next
    :func:`unix_listen` replaces it.
    """

    path: str = ""
    abstract: bool = False
    _identity: tuple[int, int] | None = None

    def unlink(self) -> bool:
        """Remove the socket file if it still is this socket's; return True if removed.

        A file that another listener has put at the path since is left alone.
        Call it *before* ``close()``: while the socket is open it pins its
        file's inode, so the inode number proves the file is ours; after
        close the number may already belong to a new file. Abstract
        addresses have no file: returns False.

        Raises:
            ClosedResourceError: the socket is already closed.
            PermissionDeniedError: the directory is not writable.
        """
        _check_socket(self, "socket")
        if self.abstract or self._identity is None:
            return False
        with _directory_locked(self.path):
            try:
                info = os.lstat(self.path)
                if (info.st_dev, info.st_ino) != self._identity:
                    return False
                os.unlink(self.path)
            except FileNotFoundError:
                return False
            except OSError as error:
                raise from_os_error(error, "UNIX socket", self.path) from None
        return True


class UnixListener(BoundUnixSocket, Listener):
    """A listening UNIX stream or seqpacket socket (see :func:`unix_listen`).

    With ``allowed_uids`` or ``allowed_gids``, ``accept`` closes connections
    from other users at once (checked with the kernel's SO_PEERCRED) and keeps
    waiting; ``rejected_peers`` counts them. An abstract listener has
    ``allowed_uids == {os.geteuid()}`` unless told otherwise.
    """

    allowed_uids: frozenset[int] | None = None
    allowed_gids: frozenset[int] | None = None
    rejected_peers: int = 0

    def _admit(self, connection: socket.socket) -> bool:
        if peer_admitted(connection, self.allowed_uids, self.allowed_gids):
            return True
        self.rejected_peers += 1
        connection.close()
        return False


def peer_admitted(
    connection: socket.socket, uids: frozenset[int] | None, gids: frozenset[int] | None
) -> bool:
    """Whether the peer of a UNIX ``connection`` may stay: its uid is in ``uids``
    or its gid in ``gids`` (SO_PEERCRED); everyone when both are None."""
    if uids is None and gids is None:
        return True
    try:
        peer = peer_credentials(connection)
    except (OSError, IPCError):
        return False
    return (uids is not None and peer.uid in uids) or (gids is not None and peer.gid in gids)


def _rebuild(
    cls: type[socket.socket], dup: Any, family: int, kind: int, state: dict[str, Any]
) -> Any:
    sock = cls(family, kind, 0, dup.detach())
    sock.__dict__.update(state)
    sock.setblocking(False)  # as unix_listen and tcp_listen made it
    return sock


def _reduce(sock: socket.socket) -> tuple[Any, ...]:
    return (
        _rebuild,
        (type(sock), reduction.DupFd(sock.fileno()), sock.family, sock.type, dict(sock.__dict__)),
    )


for _cls in (Listener, BoundUnixSocket, UnixListener):
    reduction.register(_cls, _reduce)


@contextlib.contextmanager
def _directory_locked(path: str) -> Any:
    """flock(2) the directory of ``path``: unixipc processes check and replace one at a time."""
    try:
        fd = os.open(
            os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        )
    except OSError:
        fd = -1  # bind will report the missing or unreadable directory
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd >= 0:
            os.close(fd)


def _remove_leftover(path: str, identity: tuple[int, int] | None = None) -> bool:
    """Remove a socket file nobody listens on; refuse a live one or a non-socket.
    With ``identity`` (device, inode), a file that is not that one stays (False).

    The probe is a datagram socket: connecting it to a live stream or seqpacket
    socket fails with EPROTOTYPE and to a live datagram socket succeeds, neither
    of which disturbs the live server (no connection is queued); a file with no
    socket behind it gives ECONNREFUSED.
    """
    if not os.path.lexists(path):  # the usual case, without raising and catching
        return False
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise from_os_error(error, "UNIX socket", path) from None
    if identity is not None and (info.st_dev, info.st_ino) != identity:
        return False
    if not stat.S_ISSOCK(info.st_mode):
        raise from_os_error(
            OSError(errno.EEXIST, "exists and is not a socket"), "UNIX socket path", path
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        live = False
    except OSError as error:
        if error.errno != errno.EPROTOTYPE:
            raise from_os_error(error, "UNIX socket", path) from None
        live = True
    else:
        live = True
    finally:
        probe.close()
    if live:
        raise from_os_error(OSError(errno.EADDRINUSE, "in use"), "UNIX socket", path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise from_os_error(error, "UNIX socket", path) from None
    return True


def _unix_address(path: object, abstract: bool) -> tuple[str, str]:
    """(address for bind/connect, name for messages)."""
    if not isinstance(abstract, bool):
        raise TypeError(f"abstract must be a bool, not {type(abstract).__name__}")
    text = check_path(path)
    if len(text.encode()) > UNIX_PATH_MAX - (1 if abstract else 0):
        raise ValueError(
            f"path is too long for a UNIX socket address ({len(text.encode())} bytes, "
            f"at most {UNIX_PATH_MAX - (1 if abstract else 0)}): {text!r}"
        )
    return ("\0" + text, "@" + text) if abstract else (text, text)


#: ``allowed_uids=ANY_UID``: admit every local user, even on an abstract socket.
ANY_UID: Final = "any"


def _id_set(ids: object, argument: str) -> frozenset[int] | None:
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"{argument} must be an iterable of ints")
    checked = frozenset(check_int(one, f"{argument} item", minimum=0) for one in ids)
    if not checked:
        raise ValueError(f"{argument} must not be empty (it would refuse everyone)")
    return checked


def _peer_sets(
    kind: str,
    abstract: bool,
    allowed_uids: object,
    allowed_gids: object,
) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """Who a listener admits: (uids, gids), None meaning no check of that kind.

    An abstract socket has no file permissions, so by default only our own uid
    may connect (the pattern of CPython's CVE-2022-42919); ``ANY_UID`` opens it.
    """
    if allowed_uids == ANY_UID:
        uids = None
    elif allowed_uids is None and allowed_gids is None and abstract:
        if kind == "datagram":
            raise ValueError(
                "an abstract datagram socket takes datagrams from every local user and "
                "has no connections to check: pass allowed_uids=sockets.ANY_UID if that "
                "is meant (and check senders with receive_with_credentials), or bind a "
                "socket file, whose permissions protect it"
            )
        uids = frozenset({os.geteuid()})
    else:
        uids = _id_set(allowed_uids, "allowed_uids")
    gids = _id_set(allowed_gids, "allowed_gids")
    if kind == "datagram" and (uids is not None or gids is not None):
        raise ValueError(
            "allowed_uids and allowed_gids need connections: use kind='stream' or 'seqpacket'"
        )
    return uids, gids


@overload
def unix_listen(
    path: str | os.PathLike[str],
    *,
    kind: Literal["stream", "seqpacket"] = ...,
    permissions: int = ...,
    group: int | str | None = ...,
    allow_world_writable: bool = ...,
    backlog: int = ...,
    abstract: bool = ...,
    allowed_uids: Iterable[int] | Literal["any"] | None = ...,
    allowed_gids: Iterable[int] | None = ...,
) -> UnixListener: ...
@overload
def unix_listen(
    path: str | os.PathLike[str],
    *,
    kind: Literal["datagram"],
    permissions: int = ...,
    group: int | str | None = ...,
    allow_world_writable: bool = ...,
    backlog: int = ...,
    abstract: bool = ...,
    allowed_uids: Literal["any"] | None = ...,
    allowed_gids: None = ...,
) -> BoundUnixSocket: ...
@all_or_nothing
def unix_listen(
    path: str | os.PathLike[str],
    *,
    kind: Kind = "stream",
    permissions: int = 0o600,
    group: int | str | None = None,
    allow_world_writable: bool = False,
    backlog: int = 128,
    abstract: bool = False,
    allowed_uids: Iterable[int] | Literal["any"] | None = None,
    allowed_gids: Iterable[int] | None = None,
) -> UnixListener | BoundUnixSocket:
    """Bind a UNIX socket at ``path`` and, for stream and seqpacket, listen on it.

    A leftover socket file with nobody behind it is replaced; a live listener's
    file is never touched (:class:`ResourceExistsError`), nor is anything that
    is not a socket (a symlink is not followed). unixipc processes take an
    flock(2) on the directory while they check and replace, so two of them
    racing for the same stale path cannot both win.

    The file gets exactly ``permissions`` whatever the umask, and never more
    than that at any moment: it is made owner-only (bind applies the umask,
    which can only take bits away), given ``group`` (a gid or a group name),
    then ``permissions``, through a descriptor that follows no symlink, all
    before listen(2), i.e. before anyone can connect. Connecting needs write
    permission on the file, so permissions that let every local user write
    (0o002) are refused unless ``allow_world_writable=True``.

    ``abstract=True`` uses the Linux abstract namespace (``path`` is then a
    name, not a file). **No file permissions protect it**: any process in the
    network namespace may connect. So an abstract listener admits only this
    process's own effective uid by default (checked with SO_PEERCRED when a
    connection is accepted; others are closed at once and counted in
    ``rejected_peers``): name others with ``allowed_uids``/``allowed_gids``,
    or pass ``allowed_uids=ANY_UID`` to admit everyone. ``permissions`` and
    ``group`` must be left at their defaults there.

    ``allowed_uids`` and ``allowed_gids`` (stream and seqpacket) make
    ``accept`` close connections from users whose uid is in neither set, for
    socket files too.

    A datagram socket (``kind="datagram"``) is bound only: receive with
    :func:`receive_datagram`; peers send from their own bound sockets
    (:func:`unix_connect` binds them automatically). It has no connections to
    check, so an abstract one needs ``allowed_uids=ANY_UID``. Like listeners,
    the returned socket is non-blocking underneath (``gettimeout()`` is 0.0);
    the functions of this module still block as their ``timeout`` says.

    Raises:
        ResourceExistsError: a live socket or a non-socket file is at ``path``,
            or the abstract name is in use.
        ResourceNotFoundError: the directory does not exist.
        PermissionDeniedError: the directory or the leftover file is not
            writable, or ``group`` is not one of ours.
        ValueError, TypeError: bad arguments (before any system call).
    """
    socket_type = _check_kind(kind)
    address, name = _unix_address(path, abstract)
    permissions = check_permissions(
        permissions, allow_world_writable=allow_world_writable, maximum=0o777
    )
    gid = check_group(group)
    if abstract and (permissions != 0o600 or gid is not None):
        raise ValueError(
            "abstract sockets have no file permissions or group; use allowed_uids instead"
        )
    check_int(backlog, "backlog", minimum=0)
    uids, gids = _peer_sets(kind, abstract, allowed_uids, allowed_gids)
    cls: type[BoundUnixSocket] = BoundUnixSocket if kind == "datagram" else UnixListener
    # The object first, the descriptor in it next: whatever interrupts this
    # (a signal handler raising), nothing is left open and unreachable.
    sock = cls.__new__(cls)
    on_failure(sock.close)  # if this creation fails, even after the block below
    try:
        socket.socket.__init__(sock, socket.AF_UNIX, socket_type | socket.SOCK_CLOEXEC)
        if abstract:
            try:
                sock.bind(address)
            except OSError as error:
                raise from_os_error(error, "abstract UNIX socket", name) from None
        else:

            def bind(mode: int) -> None:
                os.fchmod(sock.fileno(), mode)  # the file's mode, less the umask
                sock.bind(address)

            with _directory_locked(address):
                _remove_leftover(address)
                with new_node(
                    address, bind, stat.S_IFSOCK, permissions, gid, "UNIX socket"
                ) as node:
                    sock._identity = identity(os.fstat(node))
        sock.path = name if not abstract else name[1:]
        sock.abstract = abstract
        if isinstance(sock, UnixListener):
            sock.allowed_uids = uids
            sock.allowed_gids = gids
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        if sock._identity is not None:
            with contextlib.suppress(IPCError):
                sock.unlink()
        sock.close()
        raise
    return sock


def unix_connect(
    path: str | os.PathLike[str],
    *,
    kind: Kind = "stream",
    timeout: float | None = None,
    abstract: bool = False,
) -> socket.socket:
    """Connect to the UNIX socket at ``path`` (or the abstract name, with ``abstract``).

    Returns an ordinary blocking, close-on-exec socket. Connecting waits only
    when the listener's backlog is full. A datagram socket is also bound to an
    automatic abstract address, so that the server can answer it.

    Raises:
        ResourceNotFoundError: no socket at ``path``.
        IPCOSError: nobody listens there (ECONNREFUSED) or it is another kind (EPROTOTYPE).
        PermissionDeniedError: the socket file is not writable for us.
        WouldBlock, TimeoutExpired: the backlog stayed full.
    """
    socket_type = _check_kind(kind)
    address, name = _unix_address(path, abstract)
    deadline = Deadline(timeout)
    sock = socket.socket(socket.AF_UNIX, socket_type | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        if kind == "datagram":
            sock.bind("")  # autobind: an abstract address the server can reply to
        pause = 0.001
        while True:
            try:
                sock.connect(address)
                break
            except BlockingIOError:
                # A full backlog: AF_UNIX has no "connect in progress" to poll
                # for, so retry with a growing pause until the deadline.
                left = deadline.remaining()
                if deadline.timeout == 0 or (left is not None and left <= 0):
                    raise deadline.error(f"connecting to UNIX socket {name!r}") from None
                select.select([], [], [], pause if left is None else min(pause, left))
                pause = min(pause * 2, 0.05)
            except OSError as error:
                raise from_os_error(error, "UNIX socket", name) from None
        sock.setblocking(True)
    except BaseException:
        sock.close()
        raise
    return sock


# ---------------------------------------------------------------------------
# TCP and UDP


def _resolve(host: object, port: object, socket_type: int, passive: bool) -> list[Any]:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str such as '127.0.0.1', not {type(host).__name__}")
    port = check_int(port, "port", minimum=0)
    if port > 65535:
        raise ValueError(f"port must be at most 65535, got {port}")
    kind = "TCP" if socket_type == socket.SOCK_STREAM else "UDP"
    try:
        return socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket_type, 0, socket.AI_PASSIVE if passive else 0
        )
    except socket.gaierror as error:
        raise from_os_error(
            OSError(errno.ENOENT, str(error)), f"{kind} address", f"{host}:{port}"
        ) from None


def tcp_listen(host: str, port: int, *, backlog: int = 128, reuse_address: bool = True) -> Listener:
    """Listen for TCP connections on ``host``:``port`` (``port=0``: the kernel picks one).

    ``listener.address`` tells the address and port chosen. ``reuse_address``
    sets SO_REUSEADDR, so a restarted server can bind while old connections
    linger in TIME_WAIT. An IPv6 listener accepts IPv6 only (IPV6_V6ONLY).

    Raises:
        ResourceExistsError: the address is in use (EADDRINUSE).
        ResourceNotFoundError: ``host`` does not resolve.
        PermissionDeniedError: a privileged port.
    """
    check_int(backlog, "backlog", minimum=0)
    family, socket_type, proto, _canonical, address = _resolve(
        host, port, socket.SOCK_STREAM, True
    )[0]
    sock = Listener(family, socket_type | socket.SOCK_CLOEXEC, proto)
    try:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
            sock.listen(backlog)
        except OSError as error:
            raise from_os_error(error, "TCP address", f"{host}:{port}") from None
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def tcp_connect(
    host: str, port: int, *, timeout: float | None = None, no_delay: bool = True
) -> socket.socket:
    """Connect to ``host``:``port`` over TCP; return an ordinary blocking socket.

    Each address ``host`` resolves to is tried in turn within the one
    ``timeout`` (which does not cover name resolution). ``no_delay`` sets
    TCP_NODELAY, right for request/response traffic.

    Raises:
        IPCOSError: refused (ECONNREFUSED) or unreachable.
        ResourceNotFoundError: ``host`` does not resolve.
        WouldBlock, TimeoutExpired: the connection was not made in time.
    """
    deadline = Deadline(timeout)
    last_error: BaseException | None = None
    for family, socket_type, proto, _canonical, address in _resolve(
        host, port, socket.SOCK_STREAM, False
    ):
        sock = socket.socket(family, socket_type | socket.SOCK_CLOEXEC, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code == errno.EINPROGRESS:
                wait_fd(sock.fileno(), select.POLLOUT, deadline, f"connecting to {host}:{port}")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise from_os_error(
                    OSError(code, os.strerror(code)), "TCP address", f"{host}:{port}"
                )
            sock.setblocking(True)
            if no_delay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except (WouldBlock, TimeoutExpired):
            sock.close()
            raise
        except IPCError as error:
            sock.close()
            last_error = error
        except BaseException:
            sock.close()
            raise
    assert last_error is not None
    raise last_error


def udp_socket(
    host: str,
    port: int,
    *,
    broadcast: bool = False,
    reuse_address: bool = False,
    multicast_ttl: int | None = None,
    multicast_loop: bool | None = None,
    multicast_interface: str | int | None = None,
) -> socket.socket:
    """A UDP socket bound to ``host``:``port`` (``port=0``: the kernel picks one).

    ``broadcast`` allows sending to broadcast addresses (SO_BROADCAST).
    ``reuse_address`` (SO_REUSEADDR) lets several sockets bind the same
    multicast group and port. For sending multicast: ``multicast_ttl`` (hops,
    1 = this network only), ``multicast_loop`` (deliver our own datagrams to
    our own host's members; sending through the loopback interface delivers
    them anyway, since lo's transmission *is* a loop), ``multicast_interface``
    (IPv4: the interface's address such as ``"127.0.0.1"``; IPv6: an interface
    name or index). Receiving multicast needs :func:`join_group` too.

    On Linux, IPv4 multicast through loopback works as is; IPv6 multicast
    needs a ff00::/8 route on the interface, which the kernel adds only to
    interfaces flagged MULTICAST (lo is not, by default): sending then raises
    :class:`UnsupportedFeature` saying so.

    Raises:
        ResourceExistsError: the address is in use.
        ResourceNotFoundError: ``host`` does not resolve, or no such interface.
    """
    for flag, value in (("broadcast", broadcast), ("reuse_address", reuse_address)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be a bool, not {type(value).__name__}")
    if multicast_ttl is not None:
        check_int(multicast_ttl, "multicast_ttl", minimum=0)
        if multicast_ttl > 255:
            raise ValueError(f"multicast_ttl must be at most 255, got {multicast_ttl}")
    if multicast_loop is not None and not isinstance(multicast_loop, bool):
        raise TypeError(f"multicast_loop must be a bool, not {type(multicast_loop).__name__}")
    resolved = _resolve(host, port, socket.SOCK_DGRAM, True)
    family, socket_type, proto, _canonical, address = resolved[0]
    interface: int | bytes | None = None
    if multicast_interface is not None:
        if family == socket.AF_INET6:
            interface = _interface_index(multicast_interface)
        else:
            interface = _ipv4_interface(multicast_interface)
    sock = socket.socket(family, socket_type | socket.SOCK_CLOEXEC, proto)
    name = f"{host}:{port}"
    try:
        try:
            if broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6 = family == socket.AF_INET6
            if multicast_ttl is not None:
                if v6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, multicast_ttl)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, multicast_ttl)
            if multicast_loop is not None:
                level, option = (
                    (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP)
                    if v6
                    else (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP)
                )
                sock.setsockopt(level, option, int(multicast_loop))
            if interface is not None:
                if v6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, interface)
                else:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
            sock.bind(address)
        except IPCError:
            raise
        except OSError as error:
            raise from_os_error(error, "UDP socket", name) from None
    except BaseException:
        sock.close()
        raise
    return sock


def _ipv4_interface(interface: object) -> bytes:
    if interface is None:
        return socket.inet_aton("0.0.0.0")
    if not isinstance(interface, str):
        raise TypeError("an IPv4 interface is given by its address, such as '127.0.0.1'")
    try:
        return socket.inet_aton(str(ipaddress.IPv4Address(interface)))
    except ValueError:
        raise ValueError(f"interface must be an IPv4 address, got {interface!r}") from None


def _interface_index(interface: object) -> int:
    if interface is None:
        return 0
    if isinstance(interface, int) and not isinstance(interface, bool):
        return check_int(interface, "interface", minimum=0)
    if isinstance(interface, str):
        try:
            return socket.if_nametoindex(interface)
        except OSError:
            raise from_os_error(
                OSError(errno.ENOENT, "no such interface"), "network interface", interface
            ) from None
    raise TypeError(f"an IPv6 interface is a name or an index, not {type(interface).__name__}")


def _membership(sock: socket.socket, group: object, interface: object, join: bool) -> None:
    _check_socket(sock)
    if not isinstance(group, str):
        raise TypeError(f"group must be a str address, not {type(group).__name__}")
    try:
        address = ipaddress.ip_address(group)
    except ValueError:
        raise ValueError(f"group must be an IP address, got {group!r}") from None
    if not address.is_multicast:
        raise ValueError(f"group must be a multicast address (224.0.0.0/4, ff00::/8), got {group}")
    if address.version == 4:
        if sock.family != socket.AF_INET:
            raise ValueError("an IPv4 group needs an IPv4 socket")
        request = address.packed + _ipv4_interface(interface)
        level, option = (
            socket.IPPROTO_IP,
            (socket.IP_ADD_MEMBERSHIP if join else socket.IP_DROP_MEMBERSHIP),
        )
        deliver_all = _IP_MULTICAST_ALL
    else:
        if sock.family != socket.AF_INET6:
            raise ValueError("an IPv6 group needs an IPv6 socket")
        request = address.packed + struct.pack("@I", _interface_index(interface))
        level, option = (
            socket.IPPROTO_IPV6,
            (socket.IPV6_JOIN_GROUP if join else socket.IPV6_LEAVE_GROUP),
        )
        deliver_all = _IPV6_MULTICAST_ALL
    try:
        if join:
            # Linux delivers to a socket every group that *any* socket on the host
            # joined (IP_MULTICAST_ALL is on by default); turn that off so that this
            # socket gets exactly the groups it joined, and leaving one stops it.
            with contextlib.suppress(OSError):  # kernels before 4.20 lack the IPv6 one
                sock.setsockopt(level, deliver_all, 0)
        sock.setsockopt(level, option, request)
    except OSError as error:
        raise from_os_error(error, "multicast group", group) from None


def join_group(sock: socket.socket, group: str, *, interface: str | int | None = None) -> None:
    """Join the multicast ``group`` on ``interface`` so that ``sock`` receives its datagrams.

    ``interface`` is, for IPv4, the local interface's address (``"127.0.0.1"``
    for loopback; None lets the kernel choose by its routing table), and for
    IPv6 an interface name (``"lo"``) or index. Bind ``sock`` to the group's
    port (or the group address itself) first. Joining also turns Linux's
    IP_MULTICAST_ALL off for ``sock``, so that it receives the groups it joined
    itself, not every group some other socket on the host joined.

    Raises:
        ValueError: ``group`` is not a multicast address, or of the wrong family.
        ResourceExistsError: already a member (EADDRINUSE).
        IPCOSError: the kernel refused (e.g. ENODEV: no such multicast interface).
    """
    _membership(sock, group, interface, True)


def leave_group(sock: socket.socket, group: str, *, interface: str | int | None = None) -> None:
    """Leave a multicast ``group`` joined with :func:`join_group` (same ``interface``).

    Raises:
        ValueError: ``group`` is not a multicast address, or of the wrong family.
        IPCOSError: not a member (EADDRNOTAVAIL).
    """
    _membership(sock, group, interface, False)
