"""The synchronous Sun RPC client (private; public as ``unixipc.oncrpc.Client``)."""

from __future__ import annotations

import contextlib
import errno
import random
import select
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from .._deadline import Deadline, check_timeout, wait_fd
from .._names import check_bytes_like
from .._resource import Resource
from ..errors import ClosedResourceError, IPCOSError, MessageTooLarge, from_os_error
from . import xdr
from ._errors import ProgramNotRegistered
from ._message import AUTH_NONE, CALL, CALL_HEADER, RPC_VERSION, check_auth, parse_reply, reply_xid
from ._transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_DATAGRAM,
    RecordStream,
    check_host,
    check_port,
    check_protocol,
    check_size,
    check_u32,
    resolve,
    where,
)

#: A call's default timeout, as the C library's ``clnt_create`` uses.
DEFAULT_TIMEOUT = 25.0
#: UDP: the first retransmission after this many seconds, then twice as long each
#: time, up to ``_MAX_RETRANSMIT``.
DEFAULT_RETRANSMIT = 0.5
_MAX_RETRANSMIT = 4.0
RPCBIND_PORT = 111


class _UseClientTimeout:
    def __repr__(self) -> str:
        return "<the client's timeout>"


#: The default of ``timeout`` on calls: the client's own ``timeout``.
CLIENT_TIMEOUT: Any = _UseClientTimeout()


def check_number(value: object, argument: str, owner: type, attribute: str) -> int:
    """A program or version number, from the argument or the (generated) class."""
    if value is None:
        value = getattr(owner, attribute, None)
        if value is None:
            raise TypeError(f"{argument} is required")
    return check_u32(value, argument)


def connect_stream(family: int, address: Any, deadline: Deadline, name: str) -> socket.socket:
    """A connected, non-blocking TCP socket (the connect honours the deadline)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR):
            wait_fd(sock.fileno(), select.POLLOUT, deadline, f"connecting to {name}")
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise from_os_error(OSError(code, ""), "Sun RPC server", name)
    except BaseException:
        sock.close()
        raise
    return sock


class ClientBase:
    """What the synchronous and the asyncio clients share: options, calls, replies."""

    program: int
    version: int
    _label: str  # "Sun RPC server localhost:111 (tcp)", for messages
    _where: str  # "localhost:111 (tcp)"

    def _configure(
        self,
        host: str,
        program: int | None,
        version: int | None,
        protocol: str,
        port: int | None,
        timeout: float | None,
        auth: Any,
        retransmit: float,
        max_message_size: int,
    ) -> None:
        """Check every argument (before any system call) and keep them."""
        self.host = check_host(host)
        self.program = check_number(program, "program", type(self), "program")
        self.version = check_number(version, "version", type(self), "version")
        self.protocol = check_protocol(protocol)
        self.port: int | None = None if port is None else check_port(port)
        self.timeout = check_timeout(timeout)
        first_retransmit = check_timeout(retransmit, "retransmit")
        if not first_retransmit:
            raise ValueError("retransmit must be a positive number of seconds")
        self.retransmit: float = first_retransmit
        self.max_message_size = check_size(max_message_size, "max_message_size", 64, 1 << 31)
        self.auth = check_auth(auth)
        self._credentials = self.auth.to_xdr() + AUTH_NONE.to_xdr()
        self._xid = random.getrandbits(32)
        self._where = where(self.host, port or 0, self.protocol)
        self._label = f"Sun RPC server {self._where}"

    def describe(self) -> str:
        return f"client of program {self.program} version {self.version} at {self._label}"

    def _call_message(self, procedure: int, arguments: Any) -> tuple[int, bytes]:
        """A new transaction id and the call message (checked against the limits)."""
        check_u32(procedure, "procedure")
        if type(arguments) is not bytes:
            arguments = check_bytes_like(arguments, "arguments")
        xid = self._xid = (self._xid + 1) & 0xFFFFFFFF
        message = (
            CALL_HEADER.pack(xid, CALL, RPC_VERSION, self.program, self.version, procedure)
            + self._credentials
            + arguments
        )
        limit = self.max_message_size if self.protocol == "tcp" else MAX_DATAGRAM
        if len(message) > limit:
            raise MessageTooLarge(
                f"{self.describe()}: a call of {len(message)} bytes exceeds {limit}"
            )
        return xid, message

    def _results_offset(self, reply: bytes, procedure: int) -> int:
        """Where the results start in a reply, or the exception the reply stands for."""
        what = (
            f"program {self.program} version {self.version} procedure {procedure} at {self._label}"
        )
        return parse_reply(reply, what)

    @staticmethod
    def _encode_arguments(
        argument_types: Sequence[xdr.Type[Any]], arguments: Sequence[Any]
    ) -> bytes:
        out = bytearray()
        for argument_type, argument in zip(argument_types, arguments, strict=True):
            out += argument_type.encode(argument)
        return bytes(out)

    def _decode_result(self, reply: bytes, offset: int, result_type: xdr.Type[Any]) -> Any:
        value, end = result_type.decode_from(reply, offset)
        if end != len(reply):
            raise xdr.XdrError(f"{self.describe()}: {len(reply) - end} bytes after the result")
        return value


class Client(ClientBase, Resource):
    """A client of one program version on one server, over TCP or UDP.

    ``Client(host, program, version, protocol="tcp")`` asks the host's rpcbind
    for the port (PMAP ``GETPORT``; RPCBIND ``GETADDR`` for IPv6) unless
    ``port`` is given, then connects (TCP) or sends datagrams to it (UDP).
    A ``host`` starting with ``/`` is the path of a UNIX stream socket (as
    rpcbind's ``/run/rpcbind.sock``, where it knows the caller's uid).
    Classes generated from a ``.x`` file set ``program`` and ``version`` and
    add one method per procedure; here, :meth:`call` takes and returns raw XDR.

    ``timeout`` (seconds, or None to wait for ever) bounds the rpcbind query
    and the connection, and is every call's default; ``call(..., timeout=)``
    overrides it per call. On UDP a call is sent again after ``retransmit``
    seconds without a reply, then after twice as long each time (up to 4 s),
    with the same transaction id, so the server may run it more than once;
    replies are matched by transaction id and others dropped. On TCP a reply
    that arrives after its call timed out is dropped the same way. A TCP
    connection that broke (the server closed it, a send was cut short) is made
    again by the next call; a call is never sent twice on TCP.

    Calls from several threads are made one at a time. ``auth`` is
    :class:`AuthSys` (e.g. ``AuthSys.current()``) or None for AUTH_NONE.
    """

    kind: ClassVar[str] = "Sun RPC client"
    program: int
    version: int

    def __init__(
        self,
        host: str,
        program: int | None = None,
        version: int | None = None,
        *,
        protocol: str = "tcp",
        port: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        auth: Any = None,
        retransmit: float = DEFAULT_RETRANSMIT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._configure(
            host, program, version, protocol, port, timeout, auth, retransmit, max_message_size
        )
        deadline = Deadline(self.timeout)
        if self.host.startswith("/"):  # a UNIX stream socket, such as rpcbind's own
            if self.protocol != "tcp":
                raise ValueError("a UNIX socket path takes protocol='tcp' (a stream)")
            port = 0
            self._where = self.host
            self._family: int = socket.AF_UNIX
            self._address: Any = self.host
        else:
            if port is None:
                port = lookup_port(self.host, self.program, self.version, self.protocol, deadline)
            self._where = where(self.host, port, self.protocol)
            self._family, self._address = resolve(self.host, port, self.protocol)
        self._label = f"Sun RPC server {self._where}"
        self.port = port
        self._lock = threading.Lock()
        self._stream: RecordStream | None = None
        self._datagram: socket.socket | None = None
        if self.protocol == "tcp":
            self._stream = RecordStream(
                connect_stream(self._family, self._address, deadline, self._where),
                self._label,
                self.max_message_size,
            )
        else:
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect(self._address)
            except OSError as error:
                sock.close()
                raise from_os_error(error, "Sun RPC server", self._where) from None
            self._datagram = sock
            # close() from another thread wakes a waiting call through this pair.
            self._wake_reader, self._wake_writer = socket.socketpair()
        self._opened(f"{self.host}:{port}")

    # Calls

    def null(self, *, timeout: float | None = CLIENT_TIMEOUT) -> None:
        """Call procedure 0, which every server answers with nothing (a ping).

        Raises:
            as :meth:`call`.
        """
        self.call(0, b"", timeout=timeout)

    def call(
        self, procedure: int, arguments: Any = b"", *, timeout: float | None = CLIENT_TIMEOUT
    ) -> bytes:
        """Call ``procedure`` with XDR-encoded ``arguments``; return the encoded results.

        Raises:
            ProgramUnavailable, ProgramMismatch, ProcedureUnavailable,
                GarbageArguments, RemoteSystemError, RpcMismatch, AuthError:
                the server refused or failed the call.
            TimeoutExpired: no reply within ``timeout`` (WouldBlock for 0).
            EndOfChannel, PeerDied: the server closed or reset the connection.
            MessageTooLarge: the call or the reply exceeds ``max_message_size``
                (on UDP: a datagram).
            XdrError: the reply is malformed.
            ClosedResourceError: the client is closed.
        """
        reply, offset = self._invoke(procedure, arguments, timeout)
        return reply[offset:]

    def _call_typed(
        self,
        procedure: int,
        argument_types: Sequence[xdr.Type[Any]],
        arguments: Sequence[Any],
        result_type: xdr.Type[Any],
    ) -> Any:
        """Encode ``arguments``, call, decode the result (the generated methods' body)."""
        encoded = self._encode_arguments(argument_types, arguments)
        reply, offset = self._invoke(procedure, encoded, CLIENT_TIMEOUT)
        return self._decode_result(reply, offset, result_type)

    def _invoke(self, procedure: int, arguments: Any, timeout: Any) -> tuple[bytes, int]:
        deadline = Deadline(self.timeout if timeout is CLIENT_TIMEOUT else timeout)
        with self._lock:
            self._check_open()
            xid, message = self._call_message(procedure, arguments)
            if self.protocol == "tcp":
                reply = self._exchange_stream(xid, message, deadline)
            else:
                reply = self._exchange_datagram(xid, message, deadline)
        return reply, self._results_offset(reply, procedure)

    def _exchange_stream(self, xid: int, message: bytes, deadline: Deadline) -> bytes:
        stream = self._stream
        if stream is None:  # the last connection broke: make a new one
            sock = connect_stream(self._family, self._address, deadline, self._where)
            stream = self._stream = RecordStream(sock, self._label, self.max_message_size)
        try:
            stream.send(message, deadline)
            while True:
                reply = stream.receive(deadline)
                if reply_xid(reply) == xid:
                    return reply
                # A late reply to a call that timed out, or garbage: not ours.
        except BaseException:
            if self._closed:
                raise ClosedResourceError(f"{self.describe()} was closed during the call") from None
            if stream.broken:
                self._stream = None
                stream.sock.close()
            raise

    def _exchange_datagram(self, xid: int, message: bytes, deadline: Deadline) -> bytes:
        sock = self._datagram
        assert sock is not None
        interval = self.retransmit
        while True:
            self._send_datagram(sock, message, deadline)
            resend_at = time.monotonic() + interval
            while True:
                left = deadline.remaining()
                wait = resend_at - time.monotonic()
                if left is not None and left <= wait:
                    wait = left
                ready = select.poll()
                ready.register(sock.fileno(), select.POLLIN)
                ready.register(self._wake_reader.fileno(), select.POLLIN)
                if ready.poll(max(0, int(wait * 1000 + 0.999))):
                    reply = self._receive_datagram(sock)
                    if reply is not None and reply_xid(reply) == xid:
                        return reply
                    continue
                if deadline.expired() or deadline.timeout == 0:
                    raise deadline.error(f"calling {self._label}")
                if time.monotonic() >= resend_at:
                    break
            interval = min(interval * 2, _MAX_RETRANSMIT)

    def _send_datagram(self, sock: socket.socket, message: bytes, deadline: Deadline) -> None:
        while True:
            try:
                sock.send(message)
                return
            except (BlockingIOError, InterruptedError):
                wait_fd(sock.fileno(), select.POLLOUT, deadline, f"sending to {self._label}")
            except OSError as error:
                if self._closed:
                    raise ClosedResourceError(f"{self.describe()} is closed") from None
                raise from_os_error(error, "Sun RPC server", self._where) from None

    def _receive_datagram(self, sock: socket.socket) -> bytes | None:
        if self._closed:
            raise ClosedResourceError(f"{self.describe()} was closed during the call")
        try:
            data = sock.recv(MAX_DATAGRAM + 1)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            if self._closed:
                raise ClosedResourceError(f"{self.describe()} is closed") from None
            raise from_os_error(error, "Sun RPC server", self._where) from None
        if self._closed:
            raise ClosedResourceError(f"{self.describe()} was closed during the call")
        return data

    # Closing

    def fileno(self) -> int:
        """The socket's descriptor (-1 while a broken TCP connection awaits the next call)."""
        self._check_open()
        sock = self._datagram if self._stream is None else self._stream.sock
        return -1 if sock is None else sock.fileno()

    def _release(self) -> None:
        # Wake a call waiting in another thread, then close once it has let go.
        sock = self._datagram if self._stream is None else self._stream.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._datagram is not None:
            with contextlib.suppress(OSError):
                self._wake_writer.send(b"x")
        with self._lock:
            if self._stream is not None:
                self._stream.sock.close()
                self._stream = None
            if self._datagram is not None:
                self._datagram.close()
                self._datagram = None
                self._wake_reader.close()
                self._wake_writer.close()


def lookup_port(host: str, program: int, version: int, protocol: str, deadline: Deadline) -> int:
    """Ask rpcbind on ``host`` for the port of a program version.

    Raises:
        ProgramNotRegistered: rpcbind has no such registration.
    """
    from . import rpcbind

    remaining = deadline.remaining()
    family, _ = resolve(host, RPCBIND_PORT, "tcp")
    try:
        # On the protocol asked about: GETADDR answers for its own transport.
        with rpcbind.RpcbindClient(host, protocol=protocol, timeout=remaining) as portmapper:
            if family == socket.AF_INET6:
                address = portmapper.getaddr(program, version, protocol + "6")
                port = rpcbind.parse_universal_address(address)[1] if address else 0
            else:
                port = portmapper.getport(program, version, protocol)
    except IPCOSError as error:  # not running, say: name rpcbind, keep the errno
        raise from_os_error(error, "rpcbind on", host) from error
    if port == 0:
        raise ProgramNotRegistered(
            f"program {program} version {version} is not registered with rpcbind on "
            f"{host} ({protocol})"
        )
    return port
