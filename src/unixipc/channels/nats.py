"""``nats://[user:pass@]host:port[,host:port...]/subject``: channels through a NATS server (driver).

Core NATS moves messages between subjects at most once, without presence, and
drops slow consumers; this driver adds what a channel promises on top of it.

Connecting: the listener subscribes to ``subject`` in a queue group (several
listeners on one subject share the clients). A client subscribes to a private
inbox ``_INBOX.<128 random bits>`` and sends HELLO to ``subject`` with that inbox
as the reply subject; the listener's loop makes a private inbox for the connection,
subscribes, answers WELCOME from it and keeps the connection for ``accept`` (like
a kernel's backlog: ``connect`` returns before ``accept``; a process that forked
children to accept behaves differently, see :class:`NatsAcceptor`).
Nobody on the subject: the server's "no responders" reply makes ``connect`` fail
at once (ECONNREFUSED); a full backlog answers REFUSE.

Messages: every NATS message between two ends starts with a 25-byte header
(kind, sequence number, how many of the peer's pieces we received, how many
the user took) and carries at most one piece of :mod:`.pieces` (a channel
message, or a part of one longer than the servers' ``max_payload``).

- *Order, loss, duplicates*: pieces are numbered; the receiver takes only the
  next number, drops duplicates and asks for a resend from the first missing one
  (RESEND) when it sees a later number; every end keeps its pieces until the
  peer's user has taken them. After a reconnection (nats-py moves to another
  server of the cluster) both ends ask for what they missed, and the heartbeat
  tells each end the other's next number, so a piece lost on the way is sent
  again within a heartbeat.
- *Backpressure*: a sender may have at most ``window`` bytes (each piece
  counting 64 bytes more) that the peer's user has not taken; then ``send``
  waits (or times out). The receiver acknowledges what its user took, in the
  header of whatever it sends, at least every quarter window, and always
  before it waits. A peer that sends beyond the window breaks the channel.
- *Liveness*: an idle end sends a STATUS every ``heartbeat`` seconds (the
  smaller of both ends' settings). After two heartbeats of silence it probes:
  a STATUS with its inbox as reply subject, which the server answers with "no
  responders" once the peer's inbox has no subscriber (its process died and its
  connection closed, or it lost its server). Two such answers in a row end the
  channel with :class:`PeerDied` (three to four heartbeats after the death), as
  do our own connection staying down for four heartbeats and, whatever the
  server says, fifteen heartbeats of silence. A peer that is only slow (a loaded
  machine) keeps its subscription, so it is never taken for dead that way.
- *Goodbye*: ``close()`` sends GOODBYE numbered after the last piece, so the peer
  gets :class:`EndOfChannel` after every message, and waits (at most 2 s) until
  the server confirmed it has everything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import secrets
import select
import ssl
import struct
import time
import urllib.parse
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _nats
from .._deadline import Deadline
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    PeerDied,
    TimeoutExpired,
    WouldBlock,
)
from .core import (
    MAX_SPLIT,
    RECEIVE,
    SEND,
    Channel,
    LinkBase,
    LinkEnded,
    Listener,
    Option,
    PeerState,
    WaitSpec,
    Waker,
    max_size_option,
    positive_option,
    refused,
)
from .pieces import PieceChannel

if TYPE_CHECKING:
    from typing_extensions import Buffer

# Handshake: magic, heartbeat (ms), max_payload of our server, window (bytes).
_HANDSHAKE = struct.Struct("!4sIIQ")
_HELLO, _WELCOME, _REFUSE = b"uxn\x01", b"uxn\x02", b"uxn\x03"
# Every message between two ends: kind, sequence number, pieces of the peer's we
# received (the next number we expect), pieces our user took.
_HEADER = struct.Struct("!BQQQ")
HEADER_SIZE = _HEADER.size
# A DATA message carries a run of consecutive pieces, each after its length.
_LENGTH = struct.Struct("!I")
PIECE_OVERHEAD = HEADER_SIZE + _LENGTH.size
_DATA, _GOODBYE, _STATUS, _RESEND = 1, 2, 3, 4
# What a piece costs of the window besides its bytes (so tiny pieces are bounded too).
PIECE_COST = 64
# A peer's window is believed up to this (our memory holds what it has not taken).
_MAX_WINDOW = 1 << 30
# The longest subject we accept (the server's own limit is larger).
_MAX_SUBJECT = 256
# A send this soon after the last write joins the next message instead of making
# its own (a stream goes out in runs of pieces; a lone send goes out at once).
_COALESCE = 50e-6
# Resends of the same thing are at least this far apart (a lost piece is asked
# for again by the next heartbeat).
_RESEND_GAP = 0.05
# Liveness, in heartbeats: after this much silence an end asks the server whether
# the peer's inbox still has a subscriber (a probe: "no responders" means it is
# gone); two such answers in a row end the channel, as does our own connection
# staying down this long, or silence this long whatever the server says.
PROBE_AFTER = 2
DOWN_FOR = 4
SILENT_FOR = 15
# A WELCOME is awaited at most this many heartbeats when connect has no timeout.
_HANDSHAKE_HEARTBEATS = 30
# A HELLO waiting this long where nobody accepts goes to the queue group again.
_BOUNCE = 0.5


@dataclass(frozen=True)
class Address:
    """A parsed ``nats://`` URL: the servers, the credentials and the subject."""

    server: _nats.Server
    subject: str


def _check_subject(subject: str, url: str) -> str:
    tokens = subject.split(".")
    if (
        not subject
        or len(subject) > _MAX_SUBJECT
        or any(not token or token in ("*", ">") for token in tokens)
        or any(character.isspace() or character == "\0" for character in subject)
    ):
        raise ValueError(
            f"nats:// needs a subject after the servers: dot-separated tokens, no "
            f"wildcards (* >) or spaces, at most {_MAX_SUBJECT} characters: {url!r}"
        )
    return subject


def _check_host(host: str, url: str) -> str:
    name, colon, port = host.rpartition(":")
    if host.startswith("[") and (host.endswith("]") or "]:" in host):
        ok = True  # IPv6 in brackets, with or without a port
        if host.endswith("]"):
            port = ""
    elif colon:
        ok = bool(name) and port.isdigit() and int(port) <= 65535 and ":" not in name
    else:
        ok = bool(host) and ":" not in host
    if not ok or any(character in host for character in "/@ \t"):
        raise ValueError(f"nats:// takes host:port servers, such as 127.0.0.1:4222: {url!r}")
    return host if colon and port else f"{host}:4222"


def parse(url: str, rest: str, scheme: str = "nats") -> Address:
    """``[user[:password]@]host[:port][,host[:port]...]/subject`` (port 4222 by default).

    A user without a password is a token (NATS's convention).
    """
    servers, slash, subject = rest.partition("/")
    if not slash:
        raise ValueError(
            f"{scheme}:// takes servers and a subject, such as "
            f"{scheme}://127.0.0.1:4222/jobs: {url!r}"
        )
    user = password = token = None
    userinfo, at, hosts = servers.rpartition("@")
    if at:
        name, colon, secret = userinfo.partition(":")
        if colon:
            user = urllib.parse.unquote(name)
            password = urllib.parse.unquote(secret)
        else:
            token = urllib.parse.unquote(name)
    urls = tuple(f"nats://{_check_host(host, url)}" for host in hosts.split(","))
    server = _nats.Server(urls, user=user, password=password, token=token)
    return Address(server, _check_subject(subject, url))


def _check_seconds(name: str, low: float, high: float) -> Callable[[object], float]:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
        if not (low <= value <= high) or math.isnan(value):
            raise ValueError(f"{name} must be between {low} and {high} seconds, got {value!r}")
        return float(value)

    return check


def _check_queue(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"queue must be a str, not {type(value).__name__}")
    if not value or len(value) > _MAX_SUBJECT or any(c.isspace() or c in "*>" for c in value):
        raise ValueError(
            f"queue must be a NATS queue group name (no spaces or wildcards): {value!r}"
        )
    return value


@dataclass(frozen=True)
class Settings:
    """One end's choices, told to the peer in the handshake."""

    heartbeat: float
    window: int
    max_message_size: int


def _settings(options: dict[str, Any]) -> Settings:
    return Settings(options["heartbeat"], options["window"], options["max_message_size"])


def _path_option(name: str) -> Option:
    def check(value: object) -> str | None:
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(
                f"{name} must be a path (str or os.PathLike), not {type(value).__name__}"
            )
        return os.fspath(value)

    return Option(None, check)


def _check_context(value: object) -> ssl.SSLContext:
    if not isinstance(value, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext, not {type(value).__name__}")
    return value


def _check_hostname(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("server_hostname must be a non-empty str")
    return value


def server_of(address: Address, options: dict[str, Any]) -> _nats.Server:
    """The server to connect to, with TLS when a TLS option is given."""
    files = {name: options.get(name) for name in ("ca_file", "certificate", "private_key")}
    hostname, context = options.get("server_hostname"), options.get("ssl_context")
    if files["private_key"] is not None and files["certificate"] is None:
        raise ValueError("private_key needs certificate (the client certificate it belongs to)")
    if context is not None and any(value is not None for value in files.values()):
        raise ValueError("give ssl_context or ca_file/certificate/private_key, not both")
    if context is None and hostname is None and all(value is None for value in files.values()):
        return address.server
    tls = _nats.Tls(**files, server_hostname=hostname, context=context)
    return dataclasses.replace(address.server, tls=tls)


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)


def _signal(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.eventfd_write(fd, 1)


def _clear(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.eventfd_read(fd)


def _new_inbox() -> str:
    return f"_INBOX.{secrets.token_hex(16)}"


class NatsLink(LinkBase):
    """One end of a ``nats://`` channel (see the module docstring).

    Its state is guarded by the loop lock (:attr:`unixipc._nats.Loop.lock`): the loop
    thread holds it while it handles messages and timers, and ``put`` and the
    acknowledgements take it to write to the connection directly. The received
    pieces are a deque that only the loop thread appends to and only the receiving
    thread pops from.
    """

    probe_interval = None  # the loop wakes the descriptor when the peer is gone
    direct = False

    def __init__(self, url: str, connection: _nats.Connection, settings: Settings) -> None:
        super().__init__()
        self._url = url
        self._settings = settings
        self._pid = os.getpid()
        self._inbox = _new_inbox()
        self._attach(connection)
        self._subscription: Any = None
        self._peer: bytes | None = None  # the peer's inbox, once the handshake is done
        self._refusal: str | None = None  # why a connect failed
        self._writable = False  # the handshake is on the wire: direct writes may follow
        self._payload = connection.max_payload
        self.piece_size = self.rx_piece_size = self._payload - PIECE_OVERHEAD
        self._interval = settings.heartbeat
        self._gone = 0  # probes in a row that found the peer's inbox without a subscriber
        self._down_since: float | None = None
        # Sending.
        self._next = 0  # the number of our next piece
        self._unacked: deque[tuple[int, bytes | None]] = deque()  # not yet taken (None: goodbye)
        self._unacked_cost = 0
        self._peer_window = 0
        self._peer_received = 0
        self._peer_consumed = 0
        self._send_waiting = False
        # Receiving.
        self._expected = 0  # the number of the next piece we take from the peer
        self._rx: deque[bytes] = deque()
        self._in_cost = 0  # loop thread: cost of the pieces received
        self._out_cost = 0  # receiving thread: cost of the pieces taken
        self._consumed = 0  # receiving thread: pieces taken
        self._told_cost = 0  # _out_cost when we last told the peer
        self._told = 0
        self._peer_closed = False
        self._ending: tuple[type[IPCError], str] | None = None
        # Timing.
        self._last_heard = self._last_sent = time.monotonic()
        self._last_ask = 0.0
        self._last_resend = (-1, 0.0)
        self._timer: Any = None
        self._closing = False

    def _attach(self, connection: _nats.Connection) -> None:
        self._connection = connection
        self._lock = connection.owner.lock
        self._rx_fd = _eventfd()
        self._tx_fd = _eventfd()

    # Setting up (loop thread).

    async def subscribe(self) -> None:
        self._subscription = await self._connection.subscribe(self._inbox, self._on_message)
        self._connection.on_reconnect.add(self._reconnected)
        self._connection.on_lost.add(self._lost)

    async def ask(self, subject: str) -> None:
        """The client's side: subscribe to our inbox, then HELLO to the listener."""
        await self.subscribe()
        await self._connection.client.publish(subject, self._handshake(_HELLO), reply=self._inbox)

    async def welcome(self, client_inbox: bytes, hello: bytes) -> None:
        """The listener's side: our inbox, then WELCOME from it (on the wire before we return).

        The PING/PONG makes the server know our inbox before anything we write
        directly, and before the client can answer.
        """
        self._peer_said(hello)
        await self.subscribe()
        self._peer = client_inbox
        client = self._connection.client
        await client.publish(client_inbox.decode(), self._handshake(_WELCOME), reply=self._inbox)
        await client.flush(_nats.FLUSH_WAIT)
        self._start()

    def _handshake(self, magic: bytes) -> bytes:
        settings = self._settings
        milliseconds = max(1, round(settings.heartbeat * 1000))
        return _HANDSHAKE.pack(magic, milliseconds, self._connection.max_payload, settings.window)

    def _peer_said(self, handshake: bytes) -> None:
        """Take the peer's heartbeat, piece size and window from its HELLO/WELCOME."""
        _, milliseconds, max_payload, window = _HANDSHAKE.unpack(handshake)
        payload = min(self._connection.max_payload, max_payload)
        if payload < 1024 or milliseconds == 0 or window == 0:
            raise ValueError("bad handshake")
        self._payload = payload
        self.piece_size = self.rx_piece_size = payload - PIECE_OVERHEAD
        self._interval = min(self._settings.heartbeat, milliseconds / 1000)
        self._peer_window = min(window, _MAX_WINDOW)

    def _start(self) -> None:
        """The connection is made: write directly from now on, and keep the heartbeat."""
        self._writable = True
        self._last_heard = self._last_sent = time.monotonic()
        self._timer = self._connection.owner.loop.call_later(self._interval, self._tick)

    # Messages from the peer (loop thread, lock held).

    def _on_message(self, data: bytes, reply: bytes, headers: bytes) -> None:
        if self._closing or self._ending is not None or self._peer_closed:
            return
        if self._peer is None:
            self._on_handshake(data, reply, headers)
            return
        if headers:
            if headers.startswith(b"NATS/1.0 503"):
                self._no_responders()
            return
        if len(data) < HEADER_SIZE:
            self._fail("a message shorter than a header")
            return
        kind, seq, received, consumed = _HEADER.unpack_from(data)
        self._last_heard = time.monotonic()
        self._gone = 0
        if not consumed <= received <= self._next:
            self._fail("the peer acknowledged pieces that were never sent")
            return
        if consumed > self._peer_consumed:
            self._released(consumed)
        self._peer_received = max(self._peer_received, received)
        if kind == _DATA:
            self._accept(seq, data)
        elif kind == _GOODBYE:
            if seq == self._expected:
                self._expected += 1
                self._peer_closed = True
                self._wake()
            elif seq > self._expected:
                self._ask_resend()
        elif kind == _STATUS:
            if seq > self._expected:
                self._ask_resend()  # it sent pieces that never came
        elif kind == _RESEND:
            if seq > self._expected:
                self._ask_resend()
            self._resend(received)
        else:
            self._fail(f"a message of unknown kind {kind}")

    def _on_handshake(self, data: bytes, reply: bytes, headers: bytes) -> None:
        if headers.startswith(b"NATS/1.0 503"):
            self._refusal = "nobody listens on that subject"
        elif data[:4] == _REFUSE:
            self._refusal = "the listener's backlog is full"
        elif data[:4] == _WELCOME and len(data) == _HANDSHAKE.size and _valid_subject(reply):
            try:
                self._peer_said(data)
            except ValueError:
                self._refusal = "the listener's WELCOME is malformed"
            else:
                self._peer = reply
                self._start()
        else:
            return  # not for us: ignore
        _signal(self._rx_fd)

    def _accept(self, seq: int, data: bytes) -> None:
        """Take the pieces of a run that come next; ask again if some went missing."""
        rx = self._rx
        was_empty = not rx
        limit = self._settings.window + self.rx_piece_size + PIECE_COST
        offset, end = HEADER_SIZE, len(data)
        while offset < end:
            if offset + 4 > end:
                self._fail("a piece cut short")
                return
            (length,) = _LENGTH.unpack_from(data, offset)
            offset += 4
            if length > self.rx_piece_size or offset + length > end:
                self._fail("a piece longer than its message")
                return
            if seq == self._expected:
                self._expected = seq + 1
                rx.append(data[offset : offset + length])
                self._in_cost += length + PIECE_COST
                if self._in_cost - self._out_cost > limit:
                    self._fail("the peer sent more than the window allows")
                    return
            elif seq > self._expected:
                self._ask_resend()
                break
            seq += 1
            offset += length
        if was_empty and rx:
            _signal(self._rx_fd)

    def _released(self, consumed: int) -> None:
        """The peer's user took our pieces before ``consumed``: credit for more."""
        self._peer_consumed = consumed
        unacked = self._unacked
        while unacked and unacked[0][0] < consumed:
            _, piece = unacked.popleft()
            if piece is not None:
                self._unacked_cost -= len(piece) + PIECE_COST
        if self._send_waiting:
            self._send_waiting = False
            _signal(self._tx_fd)

    def _ask_resend(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._last_ask >= _RESEND_GAP:
            self._last_ask = now
            self._write(_RESEND, self._next)

    def _resend(self, start: int) -> None:
        now = time.monotonic()
        last_start, last_time = self._last_resend
        if start == last_start and now - last_time < _RESEND_GAP:
            return
        self._last_resend = (start, now)
        self._flush()
        run: list[bytes] = []
        first = start
        for seq, piece in self._unacked:
            if seq < start:
                continue
            if piece is None:  # the goodbye, always last
                self._emit(first, run)
                run = []
                self._write(_GOODBYE, seq)
            else:
                if not run:
                    first = seq
                run.append(piece)
        self._emit(first, run)

    def _reconnected(self) -> None:
        """Our connection moved to another server: ask for what we missed, tell our next."""
        if self._writable and self._ending is None:
            self._last_ask = time.monotonic()
            self._write(_RESEND, self._next)

    def _lost(self) -> None:
        self._end(PeerDied, "the connection to the NATS server was lost for good")

    def _tick(self) -> None:
        self._timer = None
        if self._closing or self._ending is not None or self._peer_closed:
            return
        now = time.monotonic()
        heartbeat = self._settings.heartbeat
        silent = now - self._last_heard
        if self._connection.client.is_connected:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        elif now - self._down_since > DOWN_FOR * heartbeat:
            self._end(PeerDied, f"the NATS server was out of reach for {DOWN_FOR * heartbeat:g} s")
            return
        if silent > SILENT_FOR * heartbeat:
            self._end(PeerDied, f"no word from the peer for {SILENT_FOR * heartbeat:g} s")
            return
        if silent > PROBE_AFTER * heartbeat:
            self._write(_STATUS, self._next, probe=True)  # "no responders" if it is gone
        elif now - self._last_sent >= self._interval * 0.75:
            self._write(_STATUS, self._next)
        self._timer = self._connection.owner.loop.call_later(self._interval, self._tick)

    def _no_responders(self) -> None:
        """A probe found no subscriber on the peer's inbox (loop thread)."""
        self._gone += 1
        if self._gone >= 2:  # twice, a heartbeat apart, without a word in between
            self._end(
                PeerDied,
                "its inbox lost its subscriber (its process died, or it lost the "
                "NATS server and did not come back)",
            )

    def _fail(self, why: str) -> None:
        self._end(IPCError, f"{why} (the channel is unusable now)")

    def _end(self, error_type: type[IPCError], detail: str) -> None:
        if self._ending is None:
            self._ending = (error_type, detail)
        self._wake()

    def _wake(self) -> None:
        _signal(self._rx_fd)
        _signal(self._tx_fd)

    def _header(self, kind: int, seq: int) -> bytes:
        """A header with our acknowledgements (lock held)."""
        self._told = self._consumed
        self._told_cost = self._out_cost
        return _HEADER.pack(kind, seq, self._expected, self._told)

    def _write(self, kind: int, seq: int, *, probe: bool = False) -> None:
        """Publish a message without pieces to the peer, after what is queued (lock held).

        A probe carries our inbox as its reply subject, so that the server answers
        "no responders" if the peer's inbox has no subscriber any more.
        """
        if self._peer is None or not self._writable:
            return
        self._flush()
        reply = self._inbox.encode() if probe else b""
        if self._connection.write(self._peer, [self._header(kind, seq)], reply):
            self._last_sent = time.monotonic()

    def _emit(self, first: int, pieces: list[bytes]) -> None:
        """Publish the pieces numbered from ``first`` as few messages as fit (lock held)."""
        if not pieces or self._peer is None or not self._writable:
            return
        budget = self._payload - HEADER_SIZE
        parts = [self._header(_DATA, first)]
        size = 0
        for piece in pieces:
            if size and size + 4 + len(piece) > budget:
                self._connection.write(self._peer, parts)
                first += (len(parts) - 1) // 2
                parts = [self._header(_DATA, first)]
                size = 0
            parts += (_LENGTH.pack(len(piece)), piece)
            size += 4 + len(piece)
        if self._connection.write(self._peer, parts):
            self._last_sent = self._last_write = time.monotonic()

    def _flush(self) -> None:
        """Publish the pieces a stream queued (lock held; the loop thread calls it too)."""
        self._flush_due = False
        queued = self._queued
        if queued:
            self._queued = []
            self._emit(self._queued_first, queued)

    _queued: list[bytes] = []
    _queued_first = 0
    _flush_due = False
    _last_write = 0.0

    # The piece link (calling threads).

    def put(self, piece: Buffer, *, timeout: float | None) -> None:
        inside = self.inside
        inside[SEND] = True
        try:
            data = piece if type(piece) is bytes else bytes(piece)
            cost = len(data) + PIECE_COST
            deadline: Deadline | None = None
            while True:
                with self._lock:
                    if self._closing:
                        raise ClosedResourceError
                    self._check_sending()
                    unacked = self._unacked
                    if not unacked or (self._unacked_cost + cost <= self._peer_window):
                        seq = self._next
                        self._next = seq + 1
                        unacked.append((seq, data))
                        self._unacked_cost += cost
                        if self._queued or time.monotonic() - self._last_write < _COALESCE:
                            self._queue(data)  # a stream: goes out with the next ones
                        else:
                            self._emit(seq, [data])
                        return
                    self._send_waiting = True
                    _clear(self._tx_fd)
                deadline = self._wait(self._tx_fd, timeout, deadline)
        finally:
            inside[SEND] = False

    def _queue(self, piece: bytes) -> None:
        """Queue the piece just numbered; the loop thread publishes the run soon (lock held)."""
        if not self._queued:
            self._queued = [piece]
            self._queued_first = self._next - 1
        else:
            self._queued.append(piece)
        if not self._flush_due:
            self._flush_due = True
            self._connection.owner.soon(self._flush)

    def _check_sending(self) -> None:
        if self._peer_closed:
            raise EndOfChannel
        if self._ending is not None:
            raise LinkEnded(*self._ending)

    def _wait(self, fd: int, timeout: float | None, deadline: Deadline | None) -> Deadline:
        """Sleep until ``fd`` is signalled or the time is up (WouldBlock/TimeoutExpired)."""
        if timeout == 0:
            raise WouldBlock
        if deadline is None:
            deadline = Deadline(timeout)
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise TimeoutExpired
        self.waker.wait(((fd, select.POLLIN),), left)
        return deadline

    def take(self, *, timeout: float | None) -> bytes:
        inside = self.inside
        inside[RECEIVE] = True
        try:
            rx = self._rx
            deadline: Deadline | None = None
            while True:
                if rx:
                    piece = rx.popleft()
                    self._consumed += 1
                    self._out_cost += len(piece) + PIECE_COST
                    if self._out_cost - self._told_cost >= self._settings.window >> 2:
                        self._acknowledge()
                    return piece
                _clear(self._rx_fd)
                if rx:
                    continue
                if self._closing:
                    raise ClosedResourceError
                if self._peer_closed:
                    raise EndOfChannel
                if self._ending is not None:
                    raise LinkEnded(*self._ending)
                if self._consumed != self._told:
                    self._acknowledge()  # a sender waiting for room must hear before we sleep
                deadline = self._wait(self._rx_fd, timeout, deadline)
        finally:
            inside[RECEIVE] = False

    def take_into(self, buffer: Buffer, *, timeout: float | None) -> int:
        raise NotImplementedError  # direct is False: the core copies

    def _acknowledge(self) -> None:
        with self._lock:
            if self._ending is None:
                self._write(_STATUS, self._next)

    def peer_state(self) -> PeerState:
        if self._peer_closed:
            return PeerState.CLOSED
        return PeerState.DIED if self._ending is not None else PeerState.ALIVE

    def say_goodbye(self) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            if self._ending is not None or self._peer_closed or not self._writable:
                return
            seq = self._next
            self._next = seq + 1
            self._unacked.append((seq, None))
            self._write(_GOODBYE, seq)
            self._said_goodbye = True

    _said_goodbye = False

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._rx_fd, None)

    def interrupt(self) -> None:
        self._closing = True
        if self._pid == os.getpid():
            self.waker.wake()

    # A forked child that uses its copy takes the conversation over.

    def speak(self) -> None:
        if self._pid == os.getpid():
            return
        old = self._connection
        for fd in (self._rx_fd, self._tx_fd):
            os.close(fd)
        self.waker.close()  # the parent's eventfd: ours is made on first wait
        self.waker = Waker()
        self._pid = os.getpid()
        self._timer = None
        self._writable = False
        connection = _nats.acquire(old.server, _ADOPT_WAIT)
        self._attach(connection)
        try:
            connection.owner.run(self._adopt(), _ADOPT_WAIT, f"taking over {self._url}")
        except BaseException:
            _nats.release(connection)
            raise

    async def _adopt(self) -> None:
        await self.subscribe()
        self._start()
        self._last_ask = time.monotonic()
        self._write(_RESEND, self._next)  # what the parent took off the wire comes again

    # Closing.

    def close(self, announce: bool) -> None:
        self._closing = True
        try:
            if self._pid != os.getpid():
                return  # a forked copy never used here: the parent's objects are not ours
            connection = self._connection
            owner = connection.owner
            if announce and self._said_goodbye and connection.client.is_connected:
                with contextlib.suppress(Exception):
                    owner.run(
                        connection.client.flush(_nats.FLUSH_WAIT), _nats.FLUSH_WAIT, "closing"
                    )
            owner.start(self._detach())
            _nats.release(connection)
        finally:
            for fd in (self._rx_fd, self._tx_fd):
                os.close(fd)
            self.waker.close()

    async def _detach(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._connection.on_reconnect.discard(self._reconnected)
        self._connection.on_lost.discard(self._lost)
        if self._subscription is not None:
            await self._connection.unsubscribe(self._subscription)


_ADOPT_WAIT = 10.0


def _valid_subject(subject: bytes) -> bool:
    return 0 < len(subject) <= _MAX_SUBJECT and not any(byte in b" \t\r\n*>\0" for byte in subject)


class NatsAcceptor:
    """The listener's subscription to the subject, and the clients waiting for accept.

    Like a kernel's backlog, the listener's loop thread answers a HELLO at once
    (the server-side inbox, WELCOME) and keeps the connection for ``accept``, so
    ``connect`` returns before the server accepts. After the listener's process
    forked, it may be its children that accept (a pre-forking server): from then
    on a HELLO that arrives while no thread of the process is in ``accept`` is
    only kept, and if nobody here accepts it within ``_BOUNCE`` it is published to
    the subject again, for another listener of the queue group (with none, it
    comes back here). A forked child that calls ``accept`` takes the listener over
    on a connection of its own. Closing re-publishes the HELLOs still kept (to
    another listener, or "no responders": ECONNREFUSED for the client) and ends
    the connections nobody accepted (EndOfChannel).
    """

    def __init__(self, url: str, address: Address, options: dict[str, Any]) -> None:
        self._url = url
        self._address = address
        self._server = server_of(address, options)
        self._queue = options["queue"]
        self._settings = _settings(options)
        self._max_backlog = options["backlog"]
        self._closing = False
        self._subscription: Any = None
        self._timer: Any = None
        self._fd = -1
        self._adopt(None)

    def _adopt(self, timeout: float | None) -> None:
        """Subscribe to the subject on this process's own connection.

        ``_pid`` changes last: until then :meth:`close` treats the listener as
        the parent's (a child whose subscription failed releases nothing).
        """
        self._forked = False  # set in the parent by a fork: children may accept instead
        self._ready: deque[NatsLink] = deque()  # connections made, waiting for accept
        self._hellos: deque[tuple[bytes, bytes, float]] = deque()  # (reply, HELLO, arrival)
        self._accepting = 0
        self._connection = _nats.acquire(self._server, timeout)
        self._waker = Waker()
        self._fd = _eventfd()
        try:
            self._subscription = self._connection.owner.run(
                self._connection.subscribe(self._address.subject, self._on_hello, self._queue),
                10.0,
                f"listening on {self._url}",
            )
        except BaseException:
            _nats.release(self._connection)
            self._drop_descriptors()
            raise
        self._pid = os.getpid()

    def _drop_descriptors(self) -> None:
        """Close our eventfds (in a forked child: its copies of the parent's), once."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        self._waker.close()

    def _on_hello(self, data: bytes, reply: bytes, headers: bytes) -> None:
        """A client's HELLO (loop thread): kept for accept."""
        if self._closing or len(data) != _HANDSHAKE.size or data[:4] != _HELLO:
            return
        if not _valid_subject(reply):
            return
        if len(self._hellos) + len(self._ready) >= self._max_backlog:
            self._connection.write(reply, [_REFUSE])
            return
        if not self._forked or self._accepting:
            self._connection.owner.loop.create_task(self._welcome_soon(reply, data))
            return
        self._hellos.append((reply, data, time.monotonic()))
        _signal(self._fd)
        if self._timer is None:
            self._timer = self._connection.owner.loop.call_later(_BOUNCE, self._bounce)

    async def _welcome_soon(self, reply: bytes, hello: bytes) -> None:
        """Make the connection now and keep it for accept (loop thread)."""
        connection = self._connection
        _nats.share(connection)
        link = NatsLink(self._url, connection, self._settings)
        try:
            await link.welcome(reply, hello)
        except Exception:
            link.close(False)
            return
        if self._closing:
            link.say_goodbye()
            link.close(False)
            return
        self._ready.append(link)
        _signal(self._fd)

    def _bounce(self) -> None:
        """Hand the HELLOs nobody here accepts to the group again (loop thread)."""
        self._timer = None
        if self._closing or not self._hellos:
            return
        if not self._accepting:
            too_old = time.monotonic() - _BOUNCE
            while self._hellos and self._hellos[0][2] <= too_old:
                try:  # accept may take it meanwhile
                    reply, hello, _ = self._hellos.popleft()
                except IndexError:
                    break
                self._republish(reply, hello)
        if self._hellos:
            self._timer = self._connection.owner.loop.call_later(_BOUNCE, self._bounce)

    def _republish(self, reply: bytes, hello: bytes) -> None:
        self._connection.write(self._address.subject.encode(), [hello], reply)

    def take(self, timeout: float | None) -> Channel | None:
        if self._pid != os.getpid():  # a forked child accepts: its own subscription
            self._drop_descriptors()
            self._adopt(_ADOPT_WAIT)  # a one-time step, like a link's takeover
        self._accepting += 1
        try:
            deadline: Deadline | None = None
            while True:
                if self._closing:
                    raise ClosedResourceError
                if self._ready:
                    link = self._ready.popleft()
                    return self._channel(link)
                try:  # the loop thread may bounce the last one meanwhile
                    reply, hello, _ = self._hellos.popleft()
                except IndexError:
                    pass
                else:
                    return self._welcome(reply, hello)
                _clear(self._fd)
                if self._ready or self._hellos:
                    continue
                if timeout == 0:
                    raise WouldBlock
                if deadline is None:
                    deadline = Deadline(timeout)
                left = deadline.remaining()
                if left is not None and left <= 0:
                    raise TimeoutExpired
                self._waker.wait(((self._fd, select.POLLIN),), left)
        finally:
            self._accepting -= 1

    def _welcome(self, reply: bytes, hello: bytes) -> Channel | None:
        """Make the connection a HELLO asks for; None if it is bogus (accept goes on)."""
        connection = self._connection
        _nats.share(connection)
        link = NatsLink(self._url, connection, self._settings)
        try:
            connection.owner.run(link.welcome(reply, hello), 10.0, f"accepting on {self._url}")
        except (ValueError, IPCError, OSError):
            link.close(False)
            return None
        except BaseException:
            link.close(False)
            raise
        return self._channel(link)

    def _channel(self, link: NatsLink) -> Channel:
        return PieceChannel(self._url, link, max_message_size=self._settings.max_message_size)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._fd, None)

    def interrupt(self) -> None:
        self._closing = True
        if self._pid == os.getpid():
            self._waker.wake()

    def close(self) -> None:
        self._closing = True
        if self._pid != os.getpid():
            self._drop_descriptors()  # the parent's listener: not ours to stop
            return
        try:
            connection = self._connection
            hellos = list(self._hellos)
            self._hellos.clear()
            connection.owner.run(
                self._stop(hellos), _nats.FLUSH_WAIT, f"closing the listener {self._url}"
            )
        except (IPCError, OSError):
            pass  # the server is gone: nothing to hand over
        try:
            while self._ready:  # connections nobody accepted: their clients get EndOfChannel
                link = self._ready.popleft()
                link.say_goodbye()
                link.close(True)
        finally:
            _nats.release(self._connection)
            self._drop_descriptors()

    async def _stop(self, hellos: list[tuple[bytes, bytes, float]]) -> None:
        """Unsubscribe, then hand the waiting clients to the group (or to no one)."""
        if self._timer is not None:
            self._timer.cancel()
        await self._connection.unsubscribe(self._subscription)
        await self._connection.client.flush(_nats.FLUSH_WAIT)  # our interest is gone first
        for reply, hello, _ in hellos:
            self._republish(reply, hello)


_LISTENERS: weakref.WeakSet[NatsAcceptor] = weakref.WeakSet()


def _forked() -> None:
    for acceptor in list(_LISTENERS):
        acceptor._forked = True


os.register_at_fork(after_in_parent=_forked)


def listen(url: str, address: Address, options: dict[str, Any]) -> Listener:
    acceptor = NatsAcceptor(url, address, options)
    _LISTENERS.add(acceptor)
    return Listener(url, acceptor)


def connect(url: str, address: Address, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """Say HELLO on the subject and wait for a listener's WELCOME."""
    settings = _settings(options)
    connection = _nats.acquire(server_of(address, options), deadline.remaining())
    link = NatsLink(url, connection, settings)
    try:
        owner = connection.owner
        owner.run(link.ask(address.subject), deadline.remaining(), f"connecting to {url}")
        limit = Deadline(
            deadline.remaining()
            if not deadline.blocking
            else _HANDSHAKE_HEARTBEATS * settings.heartbeat
        )
        while link._peer is None and link._refusal is None:
            left = limit.remaining()
            if left is not None and left <= 0:
                if deadline.blocking:
                    raise refused(url, f"no listener answered within {limit.timeout:g} s")
                raise deadline.error(f"connecting to {url}")
            ready = link.waker.wait(((link._rx_fd, select.POLLIN),), left)
            if ready:
                _clear(link._rx_fd)
        if link._refusal is not None:
            raise refused(url, link._refusal)
    except BaseException:
        link.close(False)
        raise
    return PieceChannel(url, link, max_message_size=settings.max_message_size)


HEARTBEAT = Option(1.0, _check_seconds("heartbeat", 0.01, 3600.0))
WINDOW = positive_option("window", 4 * 1024 * 1024)
# TLS to the NATS server (both ends are its clients): the same names as tls://.
TLS_OPTIONS: dict[str, Option] = {
    "ca_file": _path_option("ca_file"),
    "certificate": _path_option("certificate"),
    "private_key": _path_option("private_key"),
    "server_hostname": Option(None, _check_hostname),
    "ssl_context": Option(None, _check_context),
}
CONNECT_OPTIONS: dict[str, Option] = {
    "max_message_size": max_size_option(MAX_SPLIT),
    "heartbeat": HEARTBEAT,
    "window": WINDOW,
    **TLS_OPTIONS,
}
LISTEN_OPTIONS: dict[str, Option] = {
    **CONNECT_OPTIONS,
    "backlog": positive_option("backlog", 128),
    "queue": Option("unixipc", _check_queue),
}
