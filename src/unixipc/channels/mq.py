"""``mq:///name``: POSIX message queues, a private queue per direction (driver).

The listener creates the well-known request queue ``/name`` and holds a liveness
token ``/name.listener``. A client creates, all named ``/name.<token>.*``: two
queues (``.up`` to the server, ``.down`` back) with its own attributes, and two
liveness tokens (:mod:`.liveness`); then it asks through the request queue
(:mod:`.rendezvous`). ``accept`` opens the four objects, takes the server's
token, removes all four names and sends the greeting. The textbook design shares
one request queue between every client and the server; a private queue per
direction means that one slow connection never stalls another, and the
listener's queue only ever carries connection requests.

Queue messages are the pieces of :mod:`.pieces`. Priorities carry the kind:
data 1, goodbye 0 (so it is received only after every message sent before it),
greeting 2, and 3 for the wake-up that close() sends to its own receiving queue
to end a receive asleep in mq_timedreceive. Sends never sleep in the kernel
(nothing could wake them): they poll the queue's descriptor, which close() can
interrupt.
"""

from __future__ import annotations

import contextlib
import select
from typing import TYPE_CHECKING, Any

from .. import posix_mq
from .._deadline import Deadline
from ..errors import ClosedResourceError, EndOfChannel, IPCError, WouldBlock
from ..posix_mq import PosixMessageQueue
from .core import (
    MAX_SPLIT,
    PERMISSIONS,
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
from .liveness import Token, TokenPair, client_is_dead, create_token, open_token, remove_token
from .liveness import remove_tokens as _remove_tokens
from .pieces import PieceChannel
from .rendezvous import REQUEST_SIZE, SLICE, RendezvousAcceptor, new_token, rendezvous
from .url import posix_name_address

if TYPE_CHECKING:
    from typing_extensions import Buffer

MAGIC = b"uxq\x02"
_GOODBYE, _DATA, _HELLO, _WAKE = 0, 1, 2, 3
_REQUEST_QUEUE_MESSAGE_SIZE = 64
_SUFFIXES = (".up", ".down")
_LISTENER_SUFFIX = ".listener"


def _remove_names(base: str) -> None:
    for suffix in _SUFFIXES:
        with contextlib.suppress(OSError, IPCError):
            posix_mq.unlink(base + suffix)
    _remove_tokens(base)


class MqLink(LinkBase):
    """Two private POSIX queues (receive, send) and the connection's tokens."""

    probe_interval = SLICE
    guards_itself = False
    direct_into = False

    def __init__(
        self, receive_queue: PosixMessageQueue, send_queue: PosixMessageQueue, tokens: TokenPair
    ) -> None:
        self._rx = receive_queue
        self._tx = send_queue
        self._tokens = tokens
        self.piece_size = send_queue.max_message_size
        self.rx_piece_size = receive_queue.max_message_size
        self._receive = receive_queue.receive
        self._send = send_queue.send
        self._tx_fd = send_queue.fileno()
        self.waker = Waker()

    def put(self, piece: Buffer, *, timeout: float | None) -> None:
        try:
            self._send(piece, priority=_DATA, timeout=0)
            return
        except WouldBlock:
            if timeout == 0:
                raise
        self.waker.wait(((self._tx_fd, select.POLLOUT),), timeout)
        self._send(piece, priority=_DATA, timeout=0)

    def take(self, *, timeout: float | None) -> bytes:
        data, priority = self._receive(timeout=timeout)
        if priority == _DATA:
            return data
        if priority == _GOODBYE:
            raise EndOfChannel
        if priority == _WAKE:
            raise ClosedResourceError
        raise LinkEnded(IPCError, "unexpected control message (the channel is unusable now)")

    def take_into(self, buffer: Buffer, *, timeout: float | None) -> int:
        raise NotImplementedError  # pragma: no cover - direct_into is False

    def peer_state(self) -> PeerState:
        return self._tokens.peer_state()

    def say_goodbye(self) -> None:
        self._send(b"", priority=_GOODBYE, timeout=0)

    def interrupt(self) -> None:
        super().interrupt()
        # A receive asleep in mq_timedreceive takes this at once (highest priority).
        with contextlib.suppress(IPCError):
            self._rx.send(b"", priority=_WAKE, timeout=0)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._rx.fileno(), self._tx_fd, self.probe_interval)

    def close(self, announce: bool) -> None:
        try:
            self._tokens.close(announce)
        finally:
            self._rx.close()
            self._tx.close()
            self.waker.close()


class MqInbox:
    """The listener's well-known request queue, and its liveness token."""

    def __init__(self, url: str, name: str, options: dict[str, Any]) -> None:
        self._url = url
        self._name = name
        self._max = options["max_message_size"]
        self._requests = PosixMessageQueue.create(
            name,
            max_messages=options["backlog"],
            max_message_size=_REQUEST_QUEUE_MESSAGE_SIZE,
            permissions=options["permissions"],
        )
        try:
            # Held while we listen: a client waiting for a listener that died gives up.
            self._token = Token(create_token(name + _LISTENER_SUFFIX, options["permissions"]))
        except BaseException:
            self._requests.unlink()
            self._requests.close()
            raise
        self._token.hold()
        self._fd = self._requests.fileno()
        self._waker = Waker()

    def next_request(self, timeout: float | None) -> bytes:
        try:
            return self._requests.receive(timeout=0).data
        except WouldBlock:
            if timeout == 0:
                raise
        self._waker.wait(((self._fd, select.POLLIN),), timeout)
        return self._requests.receive(timeout=0).data

    def open_client(self, token: str) -> Channel | None:
        """Open a client's queues and tokens and greet it; None if it is gone or bogus."""
        base = f"{self._name}.{token}"
        opened: list[Any] = []
        try:
            tokens = TokenPair.for_server(base)
            if tokens is None:
                return None
            opened.append(tokens)
            up = PosixMessageQueue.open(base + ".up")
            opened.append(up)
            down = PosixMessageQueue.open(base + ".down")
            opened.append(down)
            down.send(b"", priority=_HELLO, timeout=0)
        except (OSError, IPCError):
            for thing in reversed(opened):
                thing.close()
            return None
        finally:
            _remove_names(base)  # from now on they live as long as the two ends
        return PieceChannel(self._url, MqLink(up, down, tokens), max_message_size=self._max)

    def forget(self, token: str) -> None:
        base = f"{self._name}.{token}"
        if client_is_dead(base):
            _remove_names(base)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._fd, None)

    def interrupt(self) -> None:
        self._waker.wake()

    def close(self, remove: bool) -> None:
        try:
            if remove:
                self._token.mark_closed()
                remove_token(self._name + _LISTENER_SUFFIX)
                with contextlib.suppress(IPCError):
                    self._requests.unlink()
        finally:
            self._token.close()
            self._requests.close()
            self._waker.close()


def listen(url: str, name: str, options: dict[str, Any]) -> Listener:
    return Listener(url, RendezvousAcceptor(MAGIC, MqInbox(url, name, options)))


class _MqClient:
    def __init__(self, listener: Token, requests: PosixMessageQueue, down: PosixMessageQueue):
        self._listener = listener
        self._requests = requests
        self._down = down

    def listener_alive(self) -> bool:
        return self._listener.probe() is PeerState.ALIVE

    def ask(self, request: bytes, timeout: float) -> None:
        self._requests.send(request, timeout=timeout)

    def await_greeting(self, timeout: float) -> None:
        data, priority = self._down.receive(timeout=timeout)
        if priority != _HELLO or data:
            raise IPCError("the listener sent a wrong greeting")


def connect(url: str, name: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """Ask the listener ``name`` for a connection and wait until it accepts."""
    requests = PosixMessageQueue.open(name, read=False, write=True)
    try:
        listener = Token(open_token(name + _LISTENER_SUFFIX))
    except OSError:
        requests.close()
        raise refused(url, "no unixipc listener owns that queue") from None
    token = new_token()
    base = f"{name}.{token}"
    opened: list[Any] = [requests, listener]
    try:
        tokens = TokenPair.for_client(base, options["permissions"])
        opened.append(tokens)
        queues = []
        for suffix in _SUFFIXES:
            queue = PosixMessageQueue.create(
                base + suffix,
                max_messages=options["queue_length"],
                max_message_size=options["queue_message_size"],
                permissions=options["permissions"],
            )
            opened.append(queue)
            queues.append(queue)
        up, down = queues
        rendezvous(url, _MqClient(listener, requests, down), MAGIC, token, deadline)
    except BaseException:
        for thing in reversed(opened):
            thing.close()
        _remove_names(base)
        raise
    _remove_names(base)  # the server did; a server that did not is covered
    requests.close()
    listener.close()
    link = MqLink(down, up, tokens)
    return PieceChannel(url, link, max_message_size=options["max_message_size"])


parse = posix_name_address
LISTEN_OPTIONS: dict[str, Option] = {
    "max_message_size": max_size_option(MAX_SPLIT),
    "permissions": PERMISSIONS,
    "backlog": positive_option("backlog", 8),
}
CONNECT_OPTIONS: dict[str, Option] = {
    "max_message_size": max_size_option(MAX_SPLIT),
    "permissions": PERMISSIONS,
    "queue_length": positive_option("queue_length", 8),
    "queue_message_size": positive_option("queue_message_size", 4096),
}
assert REQUEST_SIZE <= _REQUEST_QUEUE_MESSAGE_SIZE
