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
import os
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
    TimeoutExpired,
    WouldBlock,
)
from ..sysv_mq import SysVMessageQueue
from .core import (
    Channel,
    LinkBase,
    LinkEnded,
    Listener,
    Option,
    PeerState,
    WaitSpec,
    Waker,
    refused,
)
from .liveness import (
    Token,
    TokenPair,
    client_is_dead,
    create_token,
    open_token,
    remove_token,
    remove_tokens,
)
from .pieces import PieceChannel
from .rendezvous import SLICE, RendezvousAcceptor, new_token, rendezvous

if TYPE_CHECKING:
    from typing_extensions import Buffer

MAGIC = b"uxs\x02"
_DATA, _HELLO, _GOODBYE, _REFUSED, _WAKE = b"\x00", b"\x01", b"\x02", b"\x03", b"\x04"
_DATA_KIND, _GOODBYE_KIND, _WAKE_KIND = 0, 2, 4
_REQUEST_TYPE = 1
# A send to a full queue waits in the kernel at most this long at a time, so that
# a close() from another thread is seen soon (msgsnd cannot be woken).
_SEND_SLICE = 0.02


def _kernel_limit(name: str, default: int) -> int:
    try:
        with open(f"/proc/sys/kernel/{name}") as value:
            return int(value.read())
    except (OSError, ValueError):
        return default


def max_message_size() -> int:
    """The largest channel message: msgmax (and msgmnb) minus the kind byte."""
    return min(_kernel_limit("msgmax", 8192), _kernel_limit("msgmnb", 16384)) - 1


def token_base(key: int) -> str:
    """The stem of every liveness token of the channels on queue ``key``."""
    return f"/unixipc-sysvmq-{format_key(key)[2:]}"


def _client_id(token: str) -> int:
    """A client's message-type id from its token (60 bits: types 2C+1 fit a long)."""
    return int(token[:15], 16) + 1


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


class SysVLink(LinkBase):
    """A pair of message types of one System V queue, and the connection's tokens."""

    probe_interval = SLICE
    guards_itself = False
    direct_into = False

    def __init__(
        self,
        queue: SysVMessageQueue,
        receive_type: int,
        send_type: int,
        tokens: TokenPair,
        owner: _QueueOwner | None,
    ) -> None:
        self._queue = queue
        self._rx_type = receive_type
        self._tx_type = send_type
        self._tokens = tokens
        self._owner = owner
        self.max_message_size = max_message_size()
        self.piece_size = self.rx_piece_size = self.max_message_size + 1  # never split
        self._buffer = bytearray(self.max_message_size + 1)
        self._view = memoryview(self._buffer)
        self._send = queue.send
        self._receive_into = queue.receive_into
        self.waker = Waker()

    def put(self, piece: Buffer, *, timeout: float | None) -> None:
        message = b"".join((_DATA, piece))
        deadline: Deadline | None = None
        wait = 0.0
        while True:
            try:
                self._send(message, type=self._tx_type, timeout=wait)
                return
            except (WouldBlock, TimeoutExpired):
                if self.waker.woken:
                    raise ClosedResourceError from None
                if deadline is None:
                    deadline = Deadline(timeout)
                left = deadline.remaining()
                if deadline.timeout == 0 or left == 0:
                    raise
                wait = _SEND_SLICE if left is None else min(_SEND_SLICE, left)
            except ResourceNotFoundError:
                raise self._queue_gone() from None

    def take(self, *, timeout: float | None) -> bytes:
        try:
            size, _ = self._receive_into(self._buffer, type=self._rx_type, timeout=timeout)
        except ResourceNotFoundError:
            raise self._queue_gone() from None
        kind = self._buffer[0] if size else -1
        if kind == _DATA_KIND:
            return bytes(self._view[1:size])
        if kind == _GOODBYE_KIND:
            raise EndOfChannel
        if kind == _WAKE_KIND:
            raise ClosedResourceError
        raise LinkEnded(IPCError, f"unexpected message of kind {kind} ({size} bytes)")

    def take_into(self, buffer: Buffer, *, timeout: float | None) -> int:
        raise NotImplementedError  # pragma: no cover - direct_into is False

    def _queue_gone(self) -> Exception:
        """The queue was removed: the peer's token says whether that was a close."""
        state = self.peer_state()
        if state is PeerState.CLOSED:
            return EndOfChannel()
        if state is PeerState.DIED:
            return PeerDied()
        return LinkEnded(ResourceNotFoundError, "the queue was removed under us")

    def peer_state(self) -> PeerState:
        return self._tokens.peer_state()

    def say_goodbye(self) -> None:
        self._send(_GOODBYE, type=self._tx_type, timeout=0)

    def interrupt(self) -> None:
        super().interrupt()
        # A receive asleep in msgrcv takes this at once.
        with contextlib.suppress(IPCError):
            self._send(_WAKE, type=self._rx_type, timeout=0)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(None, None, self.probe_interval)

    def close(self, announce: bool) -> None:
        try:
            if announce:
                # Messages to us (and a wake-up of ours) would otherwise sit in the
                # queue that every connection shares.
                with contextlib.suppress(IPCError):
                    while True:
                        self._receive_into(self._buffer, type=self._rx_type, timeout=0)
            self._tokens.close(announce)
        finally:
            self._queue.close()
            self.waker.close()
            if self._owner is not None:
                self._owner.release()


class SysVInbox:
    """Message type 1 of the listener's queue, and its liveness token."""

    def __init__(self, url: str, key: int, options: dict[str, Any]) -> None:
        self._url = url
        self._key = key
        permissions = options["permissions"]
        queue = SysVMessageQueue.create(key, permissions=permissions)
        self._token_name = token_base(key) + ".listener"
        try:
            self._token = Token(create_token(self._token_name, permissions))
        except BaseException:
            queue.unlink()
            queue.close()
            raise
        self._token.hold()
        self._owner = _QueueOwner(queue)
        self._buffer = bytearray(max_message_size() + 1)
        self._waker = Waker()

    def next_request(self, timeout: float | None) -> bytes:
        size, _ = self._owner.queue.receive_into(self._buffer, type=_REQUEST_TYPE, timeout=timeout)
        request = bytes(self._buffer[:size])
        if request == _WAKE and timeout != 0 and self._waker.woken:
            raise ClosedResourceError
        return request

    def open_client(self, token: str) -> Channel | None:
        base = f"{token_base(self._key)}.{token}"
        client = _client_id(token)
        try:
            tokens = TokenPair.for_server(base)
            if tokens is None:
                return None
            try:
                self._owner.queue.send(_HELLO, type=2 * client + 1, timeout=0)
                queue = SysVMessageQueue.open_id(self._owner.queue.id)
            except (OSError, IPCError):
                tokens.close()
                return None
        finally:
            remove_tokens(base)
        self._owner.acquire()
        link = SysVLink(queue, 2 * client, 2 * client + 1, tokens, self._owner)
        return PieceChannel(self._url, link, max_message_size=link.max_message_size)

    def forget(self, token: str) -> None:
        """Refuse a client still waiting; remove the tokens of one that died."""
        with contextlib.suppress(IPCError):
            self._owner.queue.send(_REFUSED, type=2 * _client_id(token) + 1, timeout=0)
        base = f"{token_base(self._key)}.{token}"
        if client_is_dead(base):
            remove_tokens(base)

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(None, None)

    def interrupt(self) -> None:
        self._waker.wake()
        with contextlib.suppress(IPCError):  # an accept asleep in msgrcv takes it
            self._owner.queue.send(_WAKE, type=_REQUEST_TYPE, timeout=0)

    def close(self, remove: bool) -> None:
        try:
            if remove:
                self._token.mark_closed()
                remove_token(self._token_name)
        finally:
            self._token.close()
            self._waker.close()
            self._owner.release()


def listen(url: str, key: int, options: dict[str, Any]) -> Listener:
    return Listener(url, RendezvousAcceptor(MAGIC, SysVInbox(url, key, options)))


class _SysVClient:
    def __init__(self, url: str, queue: SysVMessageQueue, listener: Token, client: int) -> None:
        self._url = url
        self._queue = queue
        self._listener = listener
        self._client = client
        self._buffer = bytearray(max_message_size() + 1)

    def listener_alive(self) -> bool:
        return self._listener.probe() is PeerState.ALIVE

    def ask(self, request: bytes, timeout: float) -> None:
        try:
            self._queue.send(request, type=_REQUEST_TYPE, timeout=timeout)
        except ResourceNotFoundError:
            raise refused(self._url, "the listener closed") from None

    def await_greeting(self, timeout: float) -> None:
        try:
            size, _ = self._queue.receive_into(
                self._buffer, type=2 * self._client + 1, timeout=timeout
            )
        except ResourceNotFoundError:
            raise refused(self._url, "the listener closed") from None
        answer = bytes(self._buffer[:size])
        if answer == _REFUSED:
            raise refused(self._url, "the listener closed before accepting")
        if answer != _HELLO:
            raise IPCError(f"{self._url!r}: the listener sent a wrong greeting")


def connect(url: str, key: int, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """Ask the listener on queue ``key`` for a connection and wait until it accepts."""
    queue = SysVMessageQueue.open(key)
    opened: list[Any] = [queue]
    token = new_token()
    client = _client_id(token)
    base = f"{token_base(key)}.{token}"
    try:
        try:
            listener = Token(open_token(token_base(key) + ".listener"))
        except OSError:
            raise refused(url, "no unixipc listener owns that queue") from None
        opened.append(listener)
        tokens = TokenPair.for_client(base, 0o600)
        opened.append(tokens)
        rendezvous(url, _SysVClient(url, queue, listener, client), MAGIC, token, deadline)
    except BaseException:
        for thing in reversed(opened):
            thing.close()
        remove_tokens(base)
        raise
    remove_tokens(base)  # the listener did; a listener that did not is covered
    listener.close()
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


LISTEN_OPTIONS: dict[str, Option] = {"permissions": Option(0o600, _check_sysv_permissions)}
CONNECT_OPTIONS: dict[str, Option] = {}
