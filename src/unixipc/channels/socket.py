"""Stream sockets: ``unix://``, ``unix-abstract://``, ``tcp://``, ``channel_pair("socketpair")``.

Frames as in :mod:`.frames`, over a connected stream socket kept blocking: the
tries that must not wait say ``MSG_DONTWAIT``, and a receive with
``timeout=None`` sleeps in recv(2) (close() wakes it with ``shutdown(SHUT_RD)``).
Each side of a URL connection sends HELLO first, so that a stranger's bytes
fail that one channel with :class:`IPCError`. UNIX listeners are made by
:func:`unixipc.sockets.unix_listen`: the socket file never has more than its
``permissions``, and a file left by a dead listener is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from multiprocessing import reduction
from typing import TYPE_CHECKING, Any

from .._deadline import Deadline
from .._proc import _ACCEPTING, holding
from ..errors import IPCError, ResourceExistsError, from_os_error
from ..sockets import (
    Credentials,
    _directory_locked,
    _remove_leftover,
    peer_credentials,
    unix_listen,
)
from . import auth
from .core import (
    DEFAULT_NETWORK_MAX_MESSAGE_SIZE,
    PERMISSIONS,
    Channel,
    LinkBase,
    Listener,
    Option,
    WaitSpec,
    Waker,
    max_size_option,
    positive_option,
)
from .frames import HELLO_FRAME, MAX_FRAME, FramedChannel
from .liveness import ListenerToken, claim_path_token, in_use
from .url import check_path_address

if TYPE_CHECKING:
    from typing_extensions import Buffer

_SEND_NOWAIT = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT
# The longest path a UNIX socket address holds (sun_path, with its NUL).
SUN_PATH_MAX = 107


class SocketLink(LinkBase):
    """A connected stream socket (socketpair, UNIX, TCP)."""

    can_block = True

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        sock.setblocking(True)  # tries that must not wait say MSG_DONTWAIT
        self._sock = sock
        self.read_fd = self.write_fd = sock.fileno()
        self._recv_into = sock.recv_into
        self._send = sock.send
        self._sendmsg = sock.sendmsg

    def read(self, view: memoryview) -> int:
        return self._recv_into(view, 0, socket.MSG_DONTWAIT)

    def read_wait(self, view: memoryview) -> int:
        return self._recv_into(view)

    def write(self, data: Buffer) -> int:
        return self._send(data, _SEND_NOWAIT)

    def writev(self, buffers: Sequence[Buffer]) -> int:
        return self._sendmsg(buffers, (), _SEND_NOWAIT)

    def wake_reader(self) -> None:
        with contextlib.suppress(OSError):  # recv(2) is woken by nothing else
            self._sock.shutdown(socket.SHUT_RD)

    def grow_write_buffer(self) -> bool:
        try:
            size = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)  # doubles it
        except OSError:
            return False
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > size

    def peer_credentials(self) -> Credentials | None:
        if self._sock.family != socket.AF_UNIX:
            return None
        with contextlib.suppress(OSError, IPCError):
            return peer_credentials(self._sock)
        return None

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self.read_fd, self.write_fd)

    def passable(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return _rebuild, (reduction.DupFd(self.read_fd),)

    def close(self, announce: bool) -> None:
        self._sock.close()
        self.waker.close()


def _rebuild(dup: Any) -> SocketLink:
    return SocketLink(socket.socket(fileno=dup.detach()))


def _channel(url: str, sock: socket.socket, max_message_size: int, hello: bool) -> FramedChannel:
    return FramedChannel(
        url, SocketLink(sock), max_message_size=max_message_size, expect_hello=hello
    )


def pair(options: dict[str, Any]) -> tuple[FramedChannel, FramedChannel]:
    """Two channel ends over a UNIX stream socketpair."""
    try:
        first, second = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as error:
        raise from_os_error(error, "socketpair", "socketpair(2)") from None
    size = options["max_message_size"]
    return (
        _channel("socketpair:", first, size, False),
        _channel("socketpair:", second, size, False),
    )


# Listening and connecting.


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _greet(sock: socket.socket) -> None:
    # A fresh connection always has room for 8 bytes: this never blocks.
    if sock.send(HELLO_FRAME, _SEND_NOWAIT) != len(HELLO_FRAME):
        raise OSError(errno.EAGAIN, "no room for the greeting on a fresh connection")


class SocketAcceptor:
    """Accepts stream-socket connections (unix://, unix-abstract://, tcp://)."""

    def __init__(
        self,
        url: str,
        sock: socket.socket,
        max_message_size: int,
        token: ListenerToken | None = None,
    ) -> None:
        self.url = url
        self._sock = sock
        self._token = token  # a unix:// listener's (see _listen_unix)
        self._fd = sock.fileno()
        self._max = max_message_size
        self._waker = Waker()
        self._creator = os.getpid()  # a forked child's close leaves the file alone

    def take(self, timeout: float | None) -> Channel | None:
        try:
            sock, _ = socket.socket.accept(self._sock)
        except (BlockingIOError, ConnectionAbortedError):
            sock = None  # none waiting, or the client gave up before we took it
        except OSError as error:
            raise from_os_error(error, "listener", self.url) from None
        if sock is None:
            if not self._waker.wait(((self._fd, select.POLLIN),), timeout):
                raise TimeoutError
            return None
        try:
            _tune(sock)
            return self.channel_for(sock)
        except BaseException:
            sock.close()
            raise

    def channel_for(self, sock: socket.socket) -> Channel | None:
        """The channel of a connection just accepted (None: drop it)."""
        # A client that already left still gets its channel: what it sent
        # before closing is there to be received.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            _greet(sock)
        return _channel(self.url, sock, self._max, True)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._fd, None)

    def interrupt(self) -> None:
        self._waker.wake()

    def close(self) -> None:
        owner = os.getpid() == self._creator
        try:
            if owner and self._sock.family == socket.AF_UNIX:
                with contextlib.suppress(IPCError, OSError):
                    self._sock.unlink()  # type: ignore[attr-defined]
        finally:
            self._sock.close()
            self._waker.close()
            if self._token is not None:
                self._token.close(owner)  # after the file: it says whose the file is


def _listen_unix(url: str, address: str, options: dict[str, Any], abstract: bool) -> Listener:
    permissions = options.get("permissions", 0o600)  # abstract names have no file
    # A socket file keeps no mark of its maker: the listener holds a token named
    # after its path (liveness.path_token_name), claimed first, so that a dead
    # listener's file is known as unixipc's (`unixipc ls`, `rm --stale`).
    token = None if abstract else claim_path_token("unix", address)
    try:
        # A socket file left by a listener that died is replaced (nobody is bound
        # to it: the kernel unbinds a dead process's sockets); a live one's is not.
        sock = unix_listen(
            address, abstract=abstract, backlog=options["backlog"], permissions=permissions
        )
    except BaseException as error:
        if token is not None:
            token.close(True)
        if not isinstance(error, ResourceExistsError):
            raise
        pids = _bound_by("@" + address if abstract else address)
        if not pids:
            raise
        raise in_use("UNIX socket", address, pids) from None
    return Listener(url, SocketAcceptor(url, sock, options["max_message_size"], token))


def remove_leftover(path: str, identity: tuple[int, int]) -> bool:
    """Remove a dead unix:// listener's socket file (``unixipc rm --stale``, with
    the listener's token held): by the rule that ``listen`` replaces it by, under
    the same directory lock, and only if it is still the file ``identity``."""
    with _directory_locked(path):
        try:
            return _remove_leftover(path, identity)
        except ResourceExistsError:
            return False  # someone listens on it again


def _bound_by(name: str) -> list[int]:
    """The processes holding a listening UNIX socket bound to ``name`` (a path, or
    ``@`` and an abstract name), for messages."""
    inodes = set()
    with contextlib.suppress(OSError), open("/proc/net/unix") as table:
        for row in table.readlines()[1:]:
            fields = row.split()
            if len(fields) > 7 and fields[7] == name and int(fields[3], 16) & _ACCEPTING:
                inodes.add(int(fields[6]))
    return sorted(holding({f"socket:[{inode}]" for inode in inodes}) if inodes else ())


def listen_unix(url: str, path: str, options: dict[str, Any]) -> Listener:
    return _listen_unix(url, path, options, False)


def listen_abstract(url: str, name: str, options: dict[str, Any]) -> Listener:
    return _listen_unix(url, name, options, True)


def bind_tcp(url: str, address: tuple[str, int], backlog: int) -> tuple[socket.socket, str]:
    """A listening TCP socket and the URL it is reached at (its real port)."""
    family, sockaddr = tcp_addresses(url, address[0], address[1], passive=True)[0]
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise from_os_error(error, "listener", url) from None
    host, port = sock.getsockname()[:2]
    scheme = url.partition("://")[0]
    bound = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    return sock, f"{scheme}://{bound}"


def listen_tcp(url: str, address: tuple[str, int], options: dict[str, Any]) -> Listener:
    sock, url = bind_tcp(url, address, options["backlog"])
    return Listener(url, SocketAcceptor(url, sock, options["max_message_size"]))


def connect_unix(url: str, path: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    return _connect(url, socket.AF_UNIX, path, deadline, options["max_message_size"])


def connect_abstract(url: str, name: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    return _connect(url, socket.AF_UNIX, "\0" + name, deadline, options["max_message_size"])


def connect_tcp(
    url: str, address: tuple[str, int], deadline: Deadline, options: dict[str, Any]
) -> Channel:
    return _greeted(url, connect_tcp_socket(url, address, deadline), options["max_message_size"])


def connect_tcp_socket(url: str, address: tuple[str, int], deadline: Deadline) -> socket.socket:
    """A TCP socket connected to the first of the host's addresses that answers."""
    host, port = address
    if port == 0:
        raise ValueError(f"cannot connect to port 0: {url!r}")
    last: Exception | None = None
    for family, sockaddr in tcp_addresses(url, host or "localhost", port, passive=False):
        try:
            return connect_socket(url, family, sockaddr, deadline)
        except OSError as error:  # try the next address of the host
            last = error
    assert last is not None
    raise last


def _connect(
    url: str, family: int, address: Any, deadline: Deadline, max_message_size: int
) -> Channel:
    return _greeted(url, connect_socket(url, family, address, deadline), max_message_size)


def _greeted(url: str, sock: socket.socket, max_message_size: int) -> Channel:
    """The channel of a socket just connected, once our greeting is sent."""
    try:
        # A listener that dropped us at once (a refused uid) is found by the
        # first receive: EndOfChannel or PeerDied, like any peer that left.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            _greet(sock)
    except BaseException:
        sock.close()
        raise
    return _channel(url, sock, max_message_size, True)


def connect_socket(url: str, family: int, address: Any, deadline: Deadline) -> socket.socket:
    """A stream socket connected within the deadline (the server need not have
    accepted yet), non-blocking and tuned."""
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setblocking(False)
        waker = Waker()  # nothing can close this socket while we connect
        try:
            while True:
                code = sock.connect_ex(address)
                if code in (0, errno.EISCONN):
                    break
                if code == errno.EINPROGRESS:
                    if not waker.wait(((sock.fileno(), select.POLLOUT),), deadline.remaining()):
                        raise deadline.error(f"connecting to {url}")
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code == 0:
                        break
                if code == errno.EAGAIN:
                    # A UNIX listener's backlog is full: try again shortly.
                    if deadline.timeout == 0 or deadline.expired():
                        raise deadline.error(f"connecting to {url}")
                    time.sleep(min(0.01, deadline.remaining() or 0.01))
                    continue
                if code == errno.EINTR:
                    continue
                raise from_os_error(OSError(code, os.strerror(code)), "channel", url)
        finally:
            waker.close()
        _tune(sock)
    except BaseException:
        sock.close()
        raise
    return sock


def tcp_addresses(url: str, host: str, port: int, *, passive: bool) -> list[tuple[int, Any]]:
    flags = socket.AI_PASSIVE if passive else 0
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=flags
        )
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve the host of {url!r}: {error.strerror}") from None
    return [(family, address) for family, _, _, _, address in found]


# Addresses.


def parse_unix(url: str, rest: str) -> str:
    path = check_path_address(url, rest)
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise ValueError(f"a UNIX socket path has at most {SUN_PATH_MAX} bytes: {url!r}")
    return path


def parse_abstract(url: str, rest: str) -> str:
    if "\0" in rest or len(rest.encode()) > SUN_PATH_MAX - 1:
        raise ValueError(f"an abstract socket name has 1 to {SUN_PATH_MAX - 1} bytes: {url!r}")
    return rest


def parse_tcp(url: str, rest: str) -> tuple[str, int]:
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


MAX_SIZE = max_size_option(MAX_FRAME)
BACKLOG = positive_option("backlog", 128)
PAIR_OPTIONS: dict[str, Option] = {"max_message_size": MAX_SIZE}
CONNECT_OPTIONS: dict[str, Option] = {"max_message_size": MAX_SIZE}
LISTEN_OPTIONS: dict[str, Option] = {"max_message_size": MAX_SIZE, "backlog": BACKLOG}
# Anyone who reaches the port may connect: a smaller default (see core).
TCP_LISTEN_OPTIONS: dict[str, Option] = {
    "max_message_size": max_size_option(MAX_FRAME, DEFAULT_NETWORK_MAX_MESSAGE_SIZE),
    "backlog": BACKLOG,
}
# The kernel says who the peer is (SO_PEERCRED): both sides may check it. An
# abstract name has no file permissions: by default only our own uid passes.
UNIX_LISTEN_OPTIONS: dict[str, Option] = {
    **LISTEN_OPTIONS,
    "permissions": PERMISSIONS,
    **auth.peer_options(None),
}
UNIX_CONNECT_OPTIONS: dict[str, Option] = {**CONNECT_OPTIONS, **auth.peer_options(None)}
ABSTRACT_LISTEN_OPTIONS: dict[str, Option] = {**LISTEN_OPTIONS, **auth.peer_options(auth.OWN_UID)}
ABSTRACT_CONNECT_OPTIONS: dict[str, Option] = {
    **CONNECT_OPTIONS,
    **auth.peer_options(auth.OWN_UID),
}
