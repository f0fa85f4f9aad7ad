"""``mq:///name`` channels over POSIX message queues (private).

The listener creates the well-known request queue ``/name``. A client creates, all
named ``/name.<token>.*``: two queues (``.up`` to the server, ``.down`` back) with
its own attributes, and two liveness tokens (``.c`` it holds, ``.s`` for the
server, see ``_liveness``); then it sends a request naming the token into
``/name`` and waits for the greeting. ``accept`` opens the four objects, takes
the server's token, removes all four names (from then on they live as long as
the two ends hold them) and sends the greeting. The textbook design shares one
request queue between every client and the server; a private queue per
direction means that one slow connection never stalls another, and the
listener's queue only ever carries connection requests.

Messages: priority 1 carries data, priority 0 the goodbye (so it is received
only after every message sent before it), priority 2 the greeting. A message
shorter than the queue's message size travels as one queue message, as is; a
longer one is split into pieces of exactly the queue's message size followed by
a shorter last piece (empty if need be), and reassembled by the receiver, which
stops as soon as the total passes its ``max_message_size``.

Liveness: a waiting end wakes every ``_SLICE`` seconds to probe its peer's token,
so a peer's death is noticed within that time, and a clean close whose goodbye
found the queue full is still told from a death.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import struct
from typing import Any

from . import posix_mq
from ._channel_base import Channel, Listener, closed_error, refused, too_large
from ._deadline import Deadline, check_timeout
from ._liveness import PeerState, Token, create_token, open_token, remove_token
from ._names import check_bytes_like
from .errors import (
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    PeerDied,
    TimeoutExpired,
    WouldBlock,
)
from .posix_mq import PosixMessageQueue

__all__ = ("MqChannel", "MqListener", "connect_mq")

_GOODBYE, _DATA, _HELLO = 0, 1, 2
# How often a waiting end probes its peer's liveness token (seconds).
_SLICE = 0.2
_REQUEST = struct.Struct("!4s16s")
_REQUEST_MAGIC = b"uxq\x01"
_REQUEST_QUEUE_MESSAGE_SIZE = 64
_TOKEN = re.compile(rb"[0-9a-f]{16}")
_FOREVER = Deadline(None)
_SUFFIXES = (".up", ".down")
_LISTENER_SUFFIX = ".listener"
_TOKEN_SUFFIXES = (".c", ".s")


def _slice(deadline: Deadline) -> float:
    left = deadline.remaining()
    return _SLICE if left is None else min(_SLICE, left)


def _remove_names(base: str) -> None:
    for suffix in _SUFFIXES:
        with contextlib.suppress(OSError, IPCError):
            posix_mq.unlink(base + suffix)
    for suffix in _TOKEN_SUFFIXES:
        remove_token(base + suffix)


class MqChannel(Channel):
    """A channel over two private POSIX message queues (see the module docstring)."""

    kind = "mq channel"

    def __init__(
        self,
        url: str,
        receive_queue: PosixMessageQueue,
        send_queue: PosixMessageQueue,
        own: Token,
        peer: Token,
        *,
        max_message_size: int,
        speaks: bool,
    ) -> None:
        self.url = url
        self.max_message_size = max_message_size
        self._rx = receive_queue
        self._tx = send_queue
        self._own = own
        self._peer = peer
        # A queue message of exactly this size is a piece of a longer message.
        self._piece = send_queue.max_message_size
        self._rx_piece = receive_queue.max_message_size
        self._partial: list[bytes] = []  # pieces of a message being reassembled
        self._partial_size = 0
        self._kept: bytes | None = None  # a message receive_into had no room for
        self._tail: list[bytes] = []  # committed pieces the queue had no room for yet
        self._rx_receive = receive_queue.receive
        self._tx_send = send_queue.send
        self._ready = False
        self._track(speaks)
        self._opened(url)
        self._refresh()

    def _refresh(self) -> None:
        self._ready = (
            self._speaks
            and not self._closed
            and not self._tail
            and not self._partial
            and self._kept is None
            and self._ending is None
        )

    def fileno(self) -> int:
        """The receiving queue's descriptor: readable when a message is waiting.

        Raises:
            ClosedResourceError: this channel is closed.
        """
        if self._closed:
            raise closed_error(self)
        return self._rx.fileno()

    _probe_interval = _SLICE

    def _read_fd(self) -> int | None:
        return self._rx.fileno()

    def _write_fd(self) -> int | None:
        return self._tx.fileno()

    def _has_tail(self) -> bool:
        return bool(self._tail)

    def _flush_nowait(self) -> None:
        self._flush(None)

    def _probe(self) -> None:
        self._check_peer()

    # Sending.

    def send(self, data: Any, *, timeout: float | None = None) -> None:
        """Send ``data`` (any bytes-like object) as one message.

        A message longer than the queue's message size goes in pieces; if time
        runs out after the first piece, the rest is kept and sent before anything
        else (by the next send, while receiving, or by close): a message is never
        cut or sent twice, and WouldBlock/TimeoutExpired mean nothing was sent.

        Raises:
            MessageTooLarge: larger than :attr:`max_message_size` (nothing sent).
            WouldBlock: ``timeout=0`` and the queue is full.
            TimeoutExpired: still full after ``timeout`` seconds.
            EndOfChannel: the peer closed the channel.
            PeerDied: the peer went away without closing.
            ClosedResourceError: this channel is closed.
        """
        deadline = _FOREVER if timeout is None else Deadline(timeout)
        if type(data) is bytes:
            size = len(data)
        else:
            data = check_bytes_like(data)
            size = len(data)
        if size > self.max_message_size:
            if self._closed:
                raise closed_error(self)
            raise too_large(self, size)
        if self._ready and size < self._piece:
            try:
                self._tx_send(data, priority=_DATA, timeout=_slice(deadline))
                return
            except (WouldBlock, TimeoutExpired):
                pass
        self._send_slow(data, size, deadline)

    def _send_slow(self, data: Any, size: int, deadline: Deadline) -> None:
        if self._closed:
            raise closed_error(self)
        if not self._speaks:
            self._set_speaks(True)
        if self._ending is not None:
            raise self._ended()
        if self._tail:
            self._flush(deadline)
        if size < self._piece:
            pieces: list[Any] = [data]
        else:
            view = memoryview(data)
            pieces = [
                view[start : start + self._piece] for start in range(0, size + 1, self._piece)
            ]
        for index, piece in enumerate(pieces):
            try:
                self._put(piece, deadline)
            except (WouldBlock, TimeoutExpired):
                if index == 0:
                    raise  # nothing of this message went out
                self._tail = [bytes(rest) for rest in pieces[index:]]
                self._refresh()
                return

    def _put(self, piece: Any, deadline: Deadline) -> None:
        """Send one queue message, waiting in slices and probing the peer."""
        while True:
            try:
                self._tx_send(piece, priority=_DATA, timeout=_slice(deadline))
                return
            except (WouldBlock, TimeoutExpired):
                pass
            self._check_peer()
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.error(f"sending on {self.describe()}")

    def _flush(self, deadline: Deadline | None) -> None:
        """Send the committed pieces; without a deadline, only what fits now."""
        while self._tail:
            try:
                if deadline is None:
                    self._tx_send(self._tail[0], priority=_DATA, timeout=0)
                else:
                    self._put(self._tail[0], deadline)
            except (WouldBlock, TimeoutExpired):
                if deadline is None:
                    return
                raise
            del self._tail[0]
        self._refresh()

    def _check_peer(self) -> None:
        state = self._peer.probe()
        if state is not PeerState.ALIVE:
            raise self._end(*self._ending_for(state))

    def _ending_for(self, state: PeerState) -> tuple[type[IPCError], str]:
        if state is PeerState.CLOSED:
            return EndOfChannel, f"{self.describe()}: the peer closed the channel"
        return PeerDied, f"{self.describe()}: the peer went away without closing (it died)"

    # Receiving.

    def receive(self, *, timeout: float | None = None) -> bytes:
        """Wait for the next message and return it.

        Raises:
            WouldBlock: ``timeout=0`` and no message is there.
            TimeoutExpired: no message arrived within ``timeout`` seconds.
            EndOfChannel: the peer closed the channel and every message it sent
                has been received.
            PeerDied: the peer went away without closing.
            MessageTooLarge: the peer's message is larger than
                :attr:`max_message_size` (the channel is unusable from then on).
            ClosedResourceError: this channel is closed.
        """
        deadline = _FOREVER if timeout is None else Deadline(timeout)
        if self._ready:
            try:
                data, priority = self._rx_receive(timeout=_slice(deadline))
            except (WouldBlock, TimeoutExpired):
                pass
            else:
                if priority == _DATA and len(data) < self._rx_piece:
                    return data
                return self._assemble(data, priority, deadline)
        return self._receive_slow(deadline)

    def _receive_slow(self, deadline: Deadline) -> bytes:
        if self._closed:
            raise closed_error(self)
        if not self._speaks:
            self._set_speaks(True)
        if self._kept is not None:
            message, self._kept = self._kept, None
            self._refresh()
            return message
        data, priority = self._take(deadline)
        return self._assemble(data, priority, deadline)

    def _assemble(self, data: bytes, priority: int, deadline: Deadline) -> bytes:
        """Turn queue messages into one channel message (pieces kept across timeouts)."""
        while True:
            if priority == _GOODBYE:
                if self._partial:
                    raise self._end(
                        EndOfChannel,
                        f"{self.describe()}: the peer closed in the middle of a message",
                    )
                raise self._end(EndOfChannel, f"{self.describe()}: the peer closed the channel")
            if priority != _DATA:
                raise self._end(IPCError, f"{self.describe()}: unexpected control message")
            if not self._partial and len(data) < self._rx_piece:
                return data
            self._partial.append(data)
            self._partial_size += len(data)
            self._refresh()
            if self._partial_size > self.max_message_size:
                self._partial = []
                raise self._end(
                    MessageTooLarge,
                    f"{self.describe()}: the peer's message is larger than the maximum of "
                    f"{self.max_message_size} bytes (the channel is unusable now)",
                )
            if len(data) < self._rx_piece:
                message = b"".join(self._partial)
                self._partial = []
                self._partial_size = 0
                self._refresh()
                return message
            data, priority = self._take(deadline)

    def _take(self, deadline: Deadline) -> tuple[bytes, int]:
        """One queue message: wait in slices, keep sending a committed tail, probe the peer."""
        while True:
            if self._ending is not None:
                # What the peer sent before it went is still delivered first.
                try:
                    message: tuple[bytes, int] = self._rx_receive(timeout=0)
                except WouldBlock:
                    raise self._ended() from None
                return message
            wait = _slice(deadline)
            if self._tail:
                self._flush(None)
                if self._tail:
                    self._wait_both(wait)
                    wait = 0
            try:
                message = self._rx_receive(timeout=wait)
                return message
            except (WouldBlock, TimeoutExpired):
                pass
            state = self._peer.probe()
            if state is not PeerState.ALIVE:
                self._end(*self._ending_for(state))
                continue
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.error(f"receiving on {self.describe()}")

    def _wait_both(self, seconds: float) -> None:
        poller = select.poll()
        poller.register(self._rx.fileno(), select.POLLIN)
        poller.register(self._tx.fileno(), select.POLLOUT)
        poller.poll(int(seconds * 1000))

    def receive_into(self, buffer: Any, *, timeout: float | None = None) -> int:
        """Receive the next message into the writable bytes-like ``buffer``; return its size.

        Raises:
            MessageTooLarge: the next message does not fit in ``buffer``; it is
                kept for a later call.
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,
            ClosedResourceError: as :meth:`receive`.
        """
        view = check_bytes_like(buffer, "buffer")
        if view.readonly:
            raise TypeError("buffer must be writable")
        if timeout is not None:
            check_timeout(timeout)
        message = self.receive(timeout=timeout)
        size = len(message)
        if size > len(view):
            self._kept = message
            self._refresh()
            raise MessageTooLarge(
                f"{self.describe()}: the next message has {size} bytes, "
                f"the buffer only {len(view)} (the message is kept)"
            )
        view[:size] = message
        return size

    # Closing.

    def _release(self) -> None:
        self._untrack()
        try:
            if self._speaks and self._ending is None:
                with contextlib.suppress(IPCError, OSError):
                    self._flush(None)
                    if not self._tail:  # else the peer learns from the token
                        self._tx_send(b"", priority=_GOODBYE, timeout=0)
                self._own.mark_closed()
        finally:
            self._own.close()
            self._peer.close()
            self._rx.close()
            self._tx.close()
            self._refresh()

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(f"cannot pickle {self.describe()}: connect to its URL in the child")


class MqListener(Listener):
    """Accepts ``mq://`` connections on a well-known POSIX request queue."""

    kind = "mq listener"

    def __init__(
        self, url: str, name: str, *, max_message_size: int, permissions: int, backlog: int
    ) -> None:
        self.url = url
        self.max_message_size = max_message_size
        self._queue_name = name
        self._creator = os.getpid()
        self._requests = PosixMessageQueue.create(
            name,
            max_messages=backlog,
            max_message_size=_REQUEST_QUEUE_MESSAGE_SIZE,
            permissions=permissions,
        )
        try:
            # Held while we listen: a client waiting for a listener that died gives up.
            self._token = Token(create_token(name + _LISTENER_SUFFIX, permissions))
        except BaseException:
            self._requests.unlink()
            self._requests.close()
            raise
        self._token.hold()
        self._opened(url)

    def fileno(self) -> int:
        """The request queue's descriptor: readable when a client is waiting.

        Raises:
            ClosedResourceError: this listener is closed.
        """
        self._check_open()
        return self._requests.fileno()

    def accept(self, *, timeout: float | None = None) -> MqChannel:
        """Wait for the next client and return a channel to it.

        Raises:
            WouldBlock: ``timeout=0`` and no client is waiting.
            TimeoutExpired: no client came within ``timeout`` seconds.
            ClosedResourceError: this listener is closed.
        """
        deadline = Deadline(timeout)
        self._check_open()
        while True:
            try:
                request, _ = self._requests.receive(timeout=deadline.remaining())
            except (WouldBlock, TimeoutExpired):
                raise deadline.error(f"accepting on {self.url}") from None
            channel = self._open_client(request)
            if channel is not None:
                return channel

    def _token_of(self, request: bytes) -> str | None:
        if len(request) != _REQUEST.size:
            return None
        magic, token = _REQUEST.unpack(request)
        if magic != _REQUEST_MAGIC or not _TOKEN.fullmatch(token):
            return None
        return str(token.decode())

    def _open_client(self, request: bytes) -> MqChannel | None:
        """Open a client's queues and tokens and greet it; None if it is gone or bogus."""
        token = self._token_of(request)
        if token is None:
            return None
        base = f"{self._queue_name}.{token}"
        opened: list[Any] = []
        try:
            peer = Token(open_token(base + ".c"))
            opened.append(peer)
            if peer.probe() is not PeerState.ALIVE:
                raise OSError("the client is gone")
            own = Token(open_token(base + ".s"))
            opened.append(own)
            if not own.hold():
                raise OSError("someone holds the server's token")
            up = PosixMessageQueue.open(base + ".up")
            opened.append(up)
            down = PosixMessageQueue.open(base + ".down")
            opened.append(down)
            _remove_names(base)  # from now on they live as long as the two ends
            down.send(b"", priority=_HELLO, timeout=0)
        except (OSError, IPCError):
            for thing in reversed(opened):
                thing.close()
            _remove_names(base)
            return None
        return MqChannel(
            self.url, up, down, own, peer, max_message_size=self.max_message_size, speaks=True
        )

    def _release(self) -> None:
        if os.getpid() != self._creator:  # a forked child's copy: leave the names alone
            self._token.close()
            self._requests.close()
            return
        # Clean up after clients that asked and died; live ones clean up after
        # themselves when they see the listener gone.
        with contextlib.suppress(IPCError):
            while True:
                request, _ = self._requests.receive(timeout=0)
                token = self._token_of(request)
                if token is None:
                    continue
                base = f"{self._queue_name}.{token}"
                try:
                    watcher = Token(open_token(base + ".c"))
                except OSError:
                    continue
                try:
                    if watcher.probe() is not PeerState.ALIVE:
                        _remove_names(base)
                finally:
                    watcher.close()
        self._token.mark_closed()
        remove_token(self._queue_name + _LISTENER_SUFFIX)
        self._token.close()
        with contextlib.suppress(IPCError):
            self._requests.unlink()
        self._requests.close()


def connect_mq(
    url: str,
    name: str,
    deadline: Deadline,
    *,
    max_message_size: int,
    permissions: int,
    queue_length: int,
    queue_message_size: int,
) -> MqChannel:
    """Ask the listener ``name`` for a connection and wait until it accepts."""
    requests = PosixMessageQueue.open(name, read=False, write=True)
    try:
        listener = Token(open_token(name + _LISTENER_SUFFIX))
    except OSError:
        requests.close()
        raise refused(url, "no unixipc listener owns that queue") from None
    token = secrets.token_hex(8)
    base = f"{name}.{token}"
    opened: list[Any] = [requests, listener]
    try:
        own = Token(create_token(base + ".c", permissions))
        opened.append(own)
        own.hold()
        peer = Token(create_token(base + ".s", permissions))
        opened.append(peer)
        queues = []
        for suffix in _SUFFIXES:
            queue = PosixMessageQueue.create(
                base + suffix,
                max_messages=queue_length,
                max_message_size=queue_message_size,
                permissions=permissions,
            )
            opened.append(queue)
            queues.append(queue)
        up, down = queues
        _ask(url, listener, requests, _REQUEST.pack(_REQUEST_MAGIC, token.encode()), deadline)
        _wait_for_greeting(url, listener, down, deadline)
    except BaseException:
        for thing in reversed(opened):
            thing.close()
        _remove_names(base)
        raise
    _remove_names(base)  # the server did; a server that did not is covered
    requests.close()
    listener.close()
    return MqChannel(url, down, up, own, peer, max_message_size=max_message_size, speaks=True)


def _ask(
    url: str, listener: Token, requests: PosixMessageQueue, request: bytes, deadline: Deadline
) -> None:
    while True:
        try:
            requests.send(request, timeout=_slice(deadline))
            return
        except (WouldBlock, TimeoutExpired):
            pass
        if listener.probe() is not PeerState.ALIVE:
            raise refused(url, "the listener is gone")
        if deadline.timeout == 0 or deadline.expired():
            raise deadline.error(f"connecting to {url} (the listener's queue is full)")


def _wait_for_greeting(
    url: str, listener: Token, down: PosixMessageQueue, deadline: Deadline
) -> None:
    while True:
        try:
            data, priority = down.receive(timeout=_slice(deadline))
        except (WouldBlock, TimeoutExpired):
            if listener.probe() is not PeerState.ALIVE:
                raise refused(url, "the listener closed before accepting") from None
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.error(f"connecting to {url} (the listener did not accept)") from None
            continue
        if priority != _HELLO or data:
            raise IPCError(f"{url!r}: the listener sent a wrong greeting")
        return
