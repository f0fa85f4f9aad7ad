"""``sysvmq://KEY``: one System V message queue shared by every connection (driver).

The classic System V client-server design: one queue, found by its key, that the
listener creates. Message type 1 carries connection requests to the listener
(:mod:`.rendezvous`). A client's token gives it an id C; it uses type 2C to the
server and 2C+1 back, so each end of each connection receives only its own
messages (msgrcv by type) and no demultiplexing is needed. Liveness tokens
(:mod:`.liveness`) named after the key and the token tell a clean close from a
death; the listener holds one too, so that a client waiting to be accepted by a
listener that died gives up.

Every queue message starts with one byte saying what it is (data, greeting,
goodbye, refusal, wake-up). Messages are never split: the largest is the
kernel's msgmax (8 KiB by default) minus that byte, and the whole queue holds
msgmnb bytes (16 KiB) shared by every connection, so splitting would let one
large message monopolize what every client shares; larger messages raise
MessageTooLarge.

msgrcv and msgsnd have no descriptor to poll: close() wakes a receive by sending
a wake-up message to its own type; a send to a full queue (which nothing can
wake) waits in slices of 20 ms and sees the close within one. Closing the
listener removes the queue (IPC_RMID) once the channels it accepted in this
process are closed too; as with any System V queue, the messages still in it
are discarded then.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._deadline import Deadline
from .._names import check_permissions, check_sysv_key
from .._sysv import format_key
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    PeerDied,
    ResourceNotFoundError,
)
from ..sysv_mq import KIND, SysVMessageQueue
from ..sysv_mq import _kernel_limit as kernel_limit
from .core import (
    RECEIVE,
    SEND,
    Attempt,
    LinkEnded,
    Option,
    PeerState,
    WaitSpec,
    refused,
)
from .liveness import PROBE_INTERVAL, ListenerToken, TokenLink, TokenPair, remove_tokens
from .pieces import PieceChannel
from .rendezvous import TokenClient, TokenInbox, listener_of, new_token, rendezvous

if TYPE_CHECKING:
    from typing_extensions import Buffer

MAGIC = b"uxs\x02"
_DATA, _HELLO, _GOODBYE, _REFUSED, _WAKE = b"\x00", b"\x01", b"\x02", b"\x03", b"\x04"
_DATA_KIND, _GOODBYE_KIND, _WAKE_KIND = 0, 2, 4
_REQUEST_TYPE = 1


def max_message_size() -> int:
    """The largest channel message: msgmax (and msgmnb) minus the kind byte."""
    return min(kernel_limit("msgmax", 8192), kernel_limit("msgmnb", 16384)) - 1


def token_base(key: int) -> str:
    """The stem of every liveness token of the channels on queue ``key``."""
    return f"/unixipc-sysvmq-{format_key(key)[2:]}"


def _client_id(token: str) -> int:
    """A client's message-type id from its token (60 bits: types 2C+1 fit a long)."""
    return int(token[:15], 16) + 1


def _remove_queue(key: int) -> None:
    """Remove the queue ``key`` (a listener that died left it)."""
    queue = SysVMessageQueue.open(key)
    try:
        queue.unlink()
    finally:
        queue.close()


class _QueueOwner:
    """Removes the queue when the listener and every channel it accepted are closed.

    Only in the process that made the listener: a forked child closing its
    inherited copies never removes what the parent still uses.
    """

    def __init__(self, queue: SysVMessageQueue) -> None:
        self.queue = queue
        self.holders = 1
        self.pid = os.getpid()

    def acquire(self) -> None:
        self.holders += 1

    def release(self) -> None:
        self.holders -= 1
        if self.holders == 0 and os.getpid() == self.pid:
            with contextlib.suppress(IPCError):
                self.queue.unlink()
            self.queue.close()


class SysVLink(TokenLink):
    """A pair of message types of one System V queue, and the connection's tokens."""

    # A send tries IPC_NOWAIT first: a timed msgsnd arms a timer (about 1 us).
    first_waits = (0.0, PROBE_INTERVAL, 0.0)

    def __init__(
        self,
        queue: SysVMessageQueue,
        receive_type: int,
        send_type: int,
        tokens: TokenPair,
        owner: _QueueOwner | None,
    ) -> None:
        super().__init__(tokens)
        self._queue = queue
        self._rx_type = receive_type
        self._tx_type = send_type
        self._owner = owner
        self.max_message_size = max_message_size()
        self.piece_size = self.rx_piece_size = self.max_message_size + 1  # never split
        self._buffer = bytearray(self.max_message_size + 1)
        self._view = memoryview(self._buffer)
        self._send = functools.partial(queue.send, type=send_type)
        self._receive_mine = functools.partial(queue.receive_into, self._buffer, type=receive_type)

    def put(self, piece: Buffer, *, timeout: float | None) -> None:
        try:
            self.waited(SEND, self._send, timeout, b"".join((_DATA, piece)))
        except ResourceNotFoundError:
            raise self._queue_gone() from None

    def take(self, *, timeout: float | None) -> bytes:
        if self.peer_said_goodbye:
            raise EndOfChannel
        try:
            size, _ = self.waited(RECEIVE, self._receive_mine, timeout)
        except ResourceNotFoundError:
            raise self._queue_gone() from None
        kind = self._buffer[0] if size else -1
        if kind == _DATA_KIND:
            return bytes(self._view[1:size])
        if kind == _GOODBYE_KIND:
            self.peer_said_goodbye = True
            raise EndOfChannel
        if kind == _WAKE_KIND and self.closing:  # ours; from the peer it is garbage
            raise ClosedResourceError
        raise LinkEnded(IPCError, f"unexpected message of kind {kind} ({size} bytes)")

    def _queue_gone(self) -> Exception:
        """The queue was removed: the peer's token says whether that was a close."""
        state = self.peer_state()
        if state is PeerState.CLOSED:
            return EndOfChannel()
        if state is PeerState.DIED:
            return PeerDied()
        return LinkEnded(ResourceNotFoundError, "the queue was removed under us")

    def say_goodbye(self) -> None:
        self._send(_GOODBYE, timeout=0)

    def interrupt(self) -> None:
        # Sent to our own type: a receive asleep in msgrcv takes it at once.
        wake = functools.partial(self._queue.send, _WAKE, type=self._rx_type, timeout=0)
        self.wake_receiver(wake)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(None, None, self.probe_interval)

    def close(self, announce: bool) -> None:
        try:
            if announce:
                # Messages to us (and a wake-up of ours) would otherwise sit in the
                # queue that every connection shares.
                with contextlib.suppress(IPCError):
                    while True:
                        self._receive_mine(timeout=0)
            self.close_tokens(announce)
        finally:
            self._queue.close()
            if self._owner is not None:
                self._owner.release()


class SysVInbox(TokenInbox):
    """Message type 1 of the listener's queue, and its liveness token."""

    def __init__(self, url: str, key: int, options: dict[str, Any]) -> None:
        stem = token_base(key)
        super().__init__(url, stem, options, stem + ".listener")
        queue = self.made(
            lambda: SysVMessageQueue.create(key, permissions=options["permissions"]),
            lambda: _remove_queue(key),
            KIND,
            format_key(key),
        )
        self._owner = _QueueOwner(queue)
        self._buffer = bytearray(max_message_size() + 1)

    def next_request(self, timeout: float | None) -> bytes:
        size, _ = self._owner.queue.receive_into(self._buffer, type=_REQUEST_TYPE, timeout=timeout)
        request = bytes(self._buffer[:size])
        if request == _WAKE and timeout != 0 and self._waker.woken:
            raise ClosedResourceError
        return request

    def open_client(self, token: str) -> PieceChannel | None:
        base = self.stem(token)
        client = _client_id(token)
        with Attempt(lambda: remove_tokens(base), quiet=True) as attempt:
            tokens = attempt.keep(TokenPair.for_server(base))
            self._owner.queue.send(_HELLO, type=2 * client + 1, timeout=0)
            queue = SysVMessageQueue.open_id(self._owner.queue.id)
            self._owner.acquire()
            link = SysVLink(queue, 2 * client, 2 * client + 1, tokens, self._owner)
            return PieceChannel(self.url, link, max_message_size=link.max_message_size)
        return None

    def forget(self, token: str) -> None:
        """Refuse a client still waiting; remove the tokens of one that died."""
        with contextlib.suppress(IPCError):
            self._owner.queue.send(_REFUSED, type=2 * _client_id(token) + 1, timeout=0)
        super().forget(token)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(None, None)

    def interrupt(self) -> None:
        super().interrupt()
        with contextlib.suppress(IPCError):  # an accept asleep in msgrcv takes it
            self._owner.queue.send(_WAKE, type=_REQUEST_TYPE, timeout=0)

    def release(self, remove: bool) -> None:
        self._owner.release()


@dataclass
class _SysVClient(TokenClient):
    queue: SysVMessageQueue
    client: int

    def ask(self, request: bytes, timeout: float) -> None:
        try:
            self.queue.send(request, type=_REQUEST_TYPE, timeout=timeout)
        except ResourceNotFoundError:
            raise refused(self.url, "the listener closed") from None

    def await_greeting(self, timeout: float) -> None:
        try:
            answer = self.queue.receive(type=2 * self.client + 1, timeout=timeout).data
        except ResourceNotFoundError:
            raise refused(self.url, "the listener closed") from None
        if answer == _REFUSED:
            raise refused(self.url, "the listener closed before accepting")
        self.check_greeting(answer == _HELLO)


def connect(url: str, key: int, deadline: Deadline, options: dict[str, Any]) -> PieceChannel:
    """Ask the listener on queue ``key`` for a connection and wait until it accepts."""
    token = new_token()
    client = _client_id(token)
    base = f"{token_base(key)}.{token}"
    with Attempt(lambda: remove_tokens(base)) as attempt:  # the listener removed them already
        queue = attempt.keep(SysVMessageQueue.open(key))
        listener = attempt.borrow(ListenerToken.watch(url, token_base(key) + ".listener"))
        tokens = attempt.keep(TokenPair.for_client(base, 0o600))
        rendezvous(url, _SysVClient(url, listener, queue, client), MAGIC, token, deadline)
    link = SysVLink(queue, 2 * client + 1, 2 * client, tokens, None)
    return PieceChannel(url, link, max_message_size=link.max_message_size)


def parse(url: str, rest: str) -> int:
    try:
        key = int(rest, 0)
    except ValueError:
        raise ValueError(f"sysvmq:// takes a key such as 0x1234 or 4660: {url!r}") from None
    if key == 0 or not -(2**31) <= key < 2**32:
        raise ValueError(f"sysvmq:// takes a nonzero 32-bit key (not IPC_PRIVATE): {url!r}")
    return check_sysv_key(key)


def _check_sysv_permissions(value: object) -> int:
    permissions = check_permissions(value)
    if permissions > 0o777:
        raise ValueError(f"permissions must be at most 0o777 for System V, got {permissions:o}")
    return permissions


listen = listener_of(MAGIC, SysVInbox)
LISTEN_OPTIONS: dict[str, Option] = {"permissions": Option(0o600, _check_sysv_permissions)}
CONNECT_OPTIONS: dict[str, Option] = {}
