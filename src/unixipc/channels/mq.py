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
to end a receive asleep in mq_timedreceive. A send to a full queue sleeps in the
kernel in slices of 20 ms (nothing but room wakes mq_timedsend), so it sees a
close() from another thread within one.
"""

from __future__ import annotations

import contextlib
import functools
import select
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import posix_mq
from .._deadline import Deadline
from ..errors import ClosedResourceError, EndOfChannel, IPCError, WouldBlock
from ..posix_mq import PosixMessageQueue
from .core import (
    MAX_SPLIT,
    PERMISSIONS,
    RECEIVE,
    SEND,
    Attempt,
    LinkEnded,
    Option,
    WaitSpec,
    max_size_option,
    positive_option,
)
from .liveness import ListenerToken, TokenLink, TokenPair, remove_tokens
from .pieces import PieceChannel
from .rendezvous import REQUEST_SIZE, TokenClient, TokenInbox, listener_of, new_token, rendezvous
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
    remove_tokens(base)


class MqLink(TokenLink):
    """Two private POSIX queues (receive, send) and the connection's tokens."""

    def __init__(
        self, receive_queue: PosixMessageQueue, send_queue: PosixMessageQueue, tokens: TokenPair
    ) -> None:
        super().__init__(tokens)
        self._rx = receive_queue
        self._tx = send_queue
        self.piece_size = send_queue.max_message_size
        self.rx_piece_size = receive_queue.max_message_size
        self._receive = receive_queue.receive
        self._send = send_queue.send
        self._send_data = functools.partial(send_queue.send, priority=_DATA)

    def put(self, piece: Buffer, *, timeout: float | None) -> None:
        self.waited(SEND, self._send_data, timeout, piece)

    def take(self, *, timeout: float | None) -> bytes:
        if self.peer_said_goodbye:
            raise EndOfChannel
        data, priority = self.waited(RECEIVE, self._receive, timeout)
        if priority == _DATA:
            return data
        if priority == _GOODBYE:
            self.peer_said_goodbye = True
            raise EndOfChannel
        if priority == _WAKE and self.closing:  # ours; from the peer it is garbage
            raise ClosedResourceError
        raise LinkEnded(IPCError, "unexpected control message (the channel is unusable now)")

    def say_goodbye(self) -> None:
        self._send(b"", priority=_GOODBYE, timeout=0)

    def interrupt(self) -> None:
        # The wake-up has the highest priority: a receive asleep takes it at once.
        self.wake_receiver(lambda: self._rx.send(b"", priority=_WAKE, timeout=0))

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._rx.fileno(), self._tx.fileno(), self.probe_interval)

    def close(self, announce: bool) -> None:
        try:
            self.close_tokens(announce)
        finally:
            self._rx.close()
            self._tx.close()


class MqInbox(TokenInbox):
    """The listener's well-known request queue, and its liveness token."""

    def __init__(self, url: str, name: str, options: dict[str, Any]) -> None:
        super().__init__(url, name, options, name + _LISTENER_SUFFIX)
        self._requests = self.made(
            lambda: PosixMessageQueue.create(
                name,
                max_messages=options["backlog"],
                max_message_size=_REQUEST_QUEUE_MESSAGE_SIZE,
                permissions=options["permissions"],
            ),
            lambda: posix_mq.unlink(name),
            posix_mq.KIND,
            name,
        )
        self._fd = self._requests.fileno()

    def next_request(self, timeout: float | None) -> bytes:
        try:
            return self._requests.receive(timeout=0).data
        except WouldBlock:
            if timeout == 0:
                raise
        self._waker.wait(((self._fd, select.POLLIN),), timeout)
        return self._requests.receive(timeout=0).data

    def open_client(self, token: str) -> PieceChannel | None:
        """Open a client's queues and tokens and greet it; None if it is gone or bogus."""
        base = self.stem(token)
        # From then on the names live as long as the two ends hold them.
        with Attempt(lambda: _remove_names(base), quiet=True) as attempt:
            tokens = attempt.keep(TokenPair.for_server(base))
            up = attempt.keep(PosixMessageQueue.open(base + ".up"))
            down = attempt.keep(PosixMessageQueue.open(base + ".down"))
            down.send(b"", priority=_HELLO, timeout=0)
            link = MqLink(up, down, tokens)
            return PieceChannel(self.url, link, max_message_size=self.max_message_size)
        return None

    def remove_client(self, stem: str) -> None:
        _remove_names(stem)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._fd, None)

    def release(self, remove: bool) -> None:
        if remove:
            with contextlib.suppress(IPCError):
                self._requests.unlink()
        self._requests.close()


@dataclass
class _MqClient(TokenClient):
    requests: PosixMessageQueue
    down: PosixMessageQueue

    def ask(self, request: bytes, timeout: float) -> None:
        self.requests.send(request, timeout=timeout)

    def await_greeting(self, timeout: float) -> None:
        data, priority = self.down.receive(timeout=timeout)
        self.check_greeting(priority == _HELLO and not data)


def connect(url: str, name: str, deadline: Deadline, options: dict[str, Any]) -> PieceChannel:
    """Ask the listener ``name`` for a connection and wait until it accepts."""
    token = new_token()
    base = f"{name}.{token}"
    with Attempt(lambda: _remove_names(base)) as attempt:  # the server removed them already
        requests = attempt.borrow(PosixMessageQueue.open(name, read=False, write=True))
        listener = attempt.borrow(ListenerToken.watch(url, name + _LISTENER_SUFFIX))
        tokens = attempt.keep(TokenPair.for_client(base, options["permissions"]))
        up, down = (
            attempt.keep(
                PosixMessageQueue.create(
                    base + suffix,
                    max_messages=options["queue_length"],
                    max_message_size=options["queue_message_size"],
                    permissions=options["permissions"],
                )
            )
            for suffix in _SUFFIXES
        )
        rendezvous(url, _MqClient(url, listener, requests, down), MAGIC, token, deadline)
    return PieceChannel(url, MqLink(down, up, tokens), max_message_size=options["max_message_size"])


listen = listener_of(MAGIC, MqInbox)
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
