"""Moving RPC messages: record marking on TCP, datagrams on UDP, addresses (private).

Record marking (RFC 5531 section 11): a message is sent as fragments, each
preceded by a 4-byte word whose top bit marks the last fragment and whose
other 31 bits give its length. The receiver checks every fragment's length
against what is left of its ``max_message_size`` before reading it, and its
buffer grows only as bytes arrive, so a peer announcing a huge fragment gets
``MessageTooLarge`` and costs nothing.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
from typing import Any

from .._deadline import Deadline, wait_fd
from ..errors import EndOfChannel, IPCError, MessageTooLarge, PeerDied, from_os_error

PROTOCOLS = ("tcp", "udp")
#: The largest fragment record marking can describe.
MAX_FRAGMENT = 0x7FFFFFFF
LAST_FRAGMENT = 0x80000000
#: Default bound on one message, in either direction.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
#: The largest UDP payload over IPv4 (and what the receive buffer holds).
MAX_DATAGRAM = 65507

_U32 = struct.Struct(">I")
_INITIAL_BUFFER = 65536
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)


def check_protocol(protocol: object, argument: str = "protocol") -> str:
    if not isinstance(protocol, str):
        raise TypeError(f"{argument} must be 'tcp' or 'udp', not {type(protocol).__name__}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"{argument} must be 'tcp' or 'udp', not {protocol!r}")
    return protocol


def check_u32(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{argument} must be between 0 and 2**32 - 1, got {value}")
    return value


def check_port(value: object, argument: str = "port", *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if not (0 if allow_zero else 1) <= value <= 65535:
        raise ValueError(f"{argument} must be a port number, got {value}")
    return value


def check_host(value: object, argument: str = "host") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str, not {type(value).__name__}")
    if not value or "\0" in value:
        raise ValueError(f"{argument} must be a host name or address, got {value!r}")
    return value


def check_size(value: object, argument: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{argument} must be between {minimum} and {maximum}, got {value}")
    return value


def resolve(host: str, port: int, protocol: str) -> tuple[int, Any]:
    """(family, socket address) for ``host``, preferring IPv4 as rpcbind's replies do."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    try:
        found = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as error:
        raise from_os_error(OSError(error.errno, error.strerror), "host", host) from error
    found.sort(key=lambda entry: entry[0] != socket.AF_INET)
    family, _, _, _, address = found[0]
    return family, address


def where(host: str, port: int, protocol: str) -> str:
    """A server's address as messages name it: ``localhost:111 (tcp)``."""
    return f"{host}:{port} ({protocol})"


# ---------------------------------------------------------------------------
# Universal addresses (RFC 5665): "h1.h2.h3.h4.p1.p2", or an IPv6 address + ".p1.p2".


def universal_address(host: str, port: int) -> str:
    """The universal address of ``host`` (an IP address) and ``port``: ``127.0.0.1.3.233``."""
    ipaddress.ip_address(host)  # ValueError for anything else
    check_port(port, allow_zero=True)
    return f"{host}.{port >> 8}.{port & 0xFF}"


def parse_universal_address(text: str) -> tuple[str, int]:
    """(IP address, port) from a universal address.

    Raises:
        ValueError: ``text`` is not a universal address of IPv4 or IPv6.
    """
    parts = text.rsplit(".", 2)
    if len(parts) != 3:
        raise ValueError(f"not a universal address: {text!r}")
    host, high, low = parts
    try:
        port_high, port_low = int(high), int(low)
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"not a universal address: {text!r}") from None
    if not (0 <= port_high <= 255 and 0 <= port_low <= 255):
        raise ValueError(f"not a universal address: {text!r}")
    return host, port_high << 8 | port_low


# ---------------------------------------------------------------------------
# Record marking on a stream socket


class RecordStream:
    """Record-marked messages over a connected stream socket, with deadlines.

    The socket is put in non-blocking mode; every wait is a ``poll`` against the
    call's deadline. A receive that runs out of time keeps what it read (the
    next receive goes on from there); a send cut short after part of a message
    went out leaves the stream out of step, which ``broken`` reports.
    """

    def __init__(
        self,
        sock: socket.socket,
        name: str,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        fragment_size: int = MAX_FRAGMENT,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.name = name
        self.max_message_size = max_message_size
        self.fragment_size = fragment_size
        self.broken = False
        self._buffer = bytearray(_INITIAL_BUFFER)
        self._start = self._end = 0
        self._pieces: list[bytes] = []
        self._total = 0

    # Sending

    def send(self, message: bytes | bytearray | memoryview, deadline: Deadline) -> None:
        """Send one message as one or more fragments."""
        size = len(message)
        if size <= self.fragment_size:
            if size <= 4096:
                self._send_all([memoryview(_U32.pack(LAST_FRAGMENT | size) + message)], deadline)
            else:
                self._send_all(
                    [memoryview(_U32.pack(LAST_FRAGMENT | size)), memoryview(message)], deadline
                )
            return
        view = memoryview(message)
        buffers = []
        for start in range(0, size, self.fragment_size):
            piece = view[start : start + self.fragment_size]
            last = LAST_FRAGMENT if start + len(piece) == size else 0
            buffers += [memoryview(_U32.pack(last | len(piece))), piece]
        self._send_all(buffers, deadline)

    def _send_all(self, buffers: list[memoryview], deadline: Deadline) -> None:
        sent_any = False
        sock = self.sock
        while buffers:
            try:
                sent = sock.sendmsg(buffers, (), _NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                try:
                    wait_fd(sock.fileno(), select.POLLOUT, deadline, f"sending to {self.name}")
                except BaseException:
                    self.broken = self.broken or sent_any
                    raise
                continue
            except OSError as error:
                self.broken = True
                raise from_os_error(error, "connection to", self.name) from None
            sent_any = True
            while buffers and sent >= len(buffers[0]):
                sent -= len(buffers[0])
                buffers.pop(0)
            if buffers and sent:
                buffers[0] = buffers[0][sent:]

    # Receiving

    def receive(self, deadline: Deadline) -> bytes:
        """Receive one whole message.

        Raises:
            MessageTooLarge: the fragments announced exceed ``max_message_size``
                (the stream is then out of step: ``broken``).
            EndOfChannel: the peer closed the connection between messages.
            PeerDied: the peer reset the connection or closed it inside a message.
            WouldBlock, TimeoutExpired: the deadline passed (nothing is lost).
        """
        while True:
            self._fill(4, deadline)
            word = _U32.unpack_from(self._buffer, self._start)[0]
            length = word & MAX_FRAGMENT
            if self._total + length > self.max_message_size:
                self.broken = True
                raise MessageTooLarge(
                    f"{self.name}: a message of more than {self.max_message_size} bytes "
                    f"(a fragment of {length} bytes after {self._total})"
                )
            self._fill(4 + length, deadline)
            start = self._start + 4
            self._pieces.append(bytes(self._buffer[start : start + length]))
            self._start = start + length
            self._total += length
            if word & LAST_FRAGMENT:
                message = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
                self._pieces = []
                self._total = 0
                if self._start == self._end and len(self._buffer) > _INITIAL_BUFFER:
                    self._buffer = bytearray(_INITIAL_BUFFER)
                    self._start = self._end = 0
                return message

    def _fill(self, need: int, deadline: Deadline) -> None:
        """Have at least ``need`` bytes buffered from ``_start``; grow only as bytes come."""
        sock = self.sock
        while self._end - self._start < need:
            if self._end == len(self._buffer):
                held = self._end - self._start
                if self._start:
                    self._buffer[:held] = self._buffer[self._start : self._end]
                    self._start, self._end = 0, held
                if held == len(self._buffer):
                    grown = bytearray(min(max(need, 4), 2 * len(self._buffer)))
                    grown[:held] = self._buffer
                    self._buffer = grown
            try:
                count = sock.recv_into(memoryview(self._buffer)[self._end :])
            except (BlockingIOError, InterruptedError):
                wait_fd(sock.fileno(), select.POLLIN, deadline, f"waiting for {self.name}")
                continue
            except OSError as error:
                self.broken = True
                raise from_os_error(error, "connection to", self.name) from None
            if count == 0:
                self.broken = True
                if self._end == self._start and not self._pieces:
                    raise EndOfChannel(f"{self.name} closed the connection")
                raise PeerDied(f"{self.name} closed the connection in the middle of a message")
            self._end += count


def connection_error(error: BaseException) -> bool:
    """True for errors after which a TCP connection cannot be used again."""
    return isinstance(error, (EndOfChannel, PeerDied, MessageTooLarge)) or (
        isinstance(error, IPCError) and isinstance(error, OSError)
    )
