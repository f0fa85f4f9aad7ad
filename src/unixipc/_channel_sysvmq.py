"""``sysvmq://KEY`` channels over one System V message queue (private).

The classic System V client-server design: one queue, found by its key, that the
listener creates. Message type 1 carries connection requests to the listener. A
client picks a random id C and uses type 2C to the server and 2C+1 back, so each
end of each connection receives only its own messages (msgrcv by type) and no
demultiplexing is needed. Liveness tokens (``_liveness``) named after the key
and C tell a clean close from a death; the listener holds one too, so that a
client waiting to be accepted by a listener that died gives up.

Every queue message starts with one byte saying what it is (data, greeting,
goodbye, refusal). Messages are never split: the largest is the kernel's msgmax
(8 KiB by default) minus that byte, and the whole queue holds msgmnb bytes (16
KiB) shared by every connection, so splitting would let one large message
monopolize what every client shares; larger messages raise MessageTooLarge.

Closing the listener removes the queue (IPC_RMID) once the channels it accepted
in this process are closed too; as with any System V queue, the messages still
in it are discarded then.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
from typing import Any

from ._channel_base import Channel, Listener, closed_error, refused, too_large
from ._deadline import Deadline, check_timeout
from ._liveness import PeerState, Token, create_token, open_token, remove_token
from ._names import check_bytes_like
from ._sysv import format_key
from .errors import (
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    PeerDied,
    ResourceNotFoundError,
    TimeoutExpired,
    WouldBlock,
)
from .sysv_mq import SysVMessageQueue

__all__ = ("SysVChannel", "SysVListener", "connect_sysvmq", "max_message_size")

_DATA, _HELLO, _GOODBYE, _REFUSED = b"\x00", b"\x01", b"\x02", b"\x03"
_DATA_KIND = 0
_REQUEST_TYPE = 1
_REQUEST = struct.Struct("!4sQ")
_REQUEST_MAGIC = b"uxs\x01"
_SLICE = 0.2  # how often a waiting end probes its peer (seconds)
_FOREVER = Deadline(None)
_MAX_CLIENT_ID = 2**40


def _slice(deadline: Deadline) -> float:
    left = deadline.remaining()
    return _SLICE if left is None else min(_SLICE, left)


def _kernel_limit(name: str, default: int) -> int:
    try:
        with open(f"/proc/sys/kernel/{name}") as value:
            return int(value.read())
    except (OSError, ValueError):
        return default


def max_message_size() -> int:
    """The largest channel message: msgmax (and msgmnb) minus the kind byte."""
    return min(_kernel_limit("msgmax", 8192), _kernel_limit("msgmnb", 16384)) - 1


def _token_base(key: int) -> str:
    return f"/unixipc-sysvmq-{format_key(key)[2:]}"


def _client_tokens(key: int, client: int) -> tuple[str, str]:
    base = f"{_token_base(key)}.{client:x}"
    return base + ".c", base + ".s"


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


class SysVChannel(Channel):
    """A channel over a pair of message types of one System V queue."""

    kind = "sysvmq channel"

    def __init__(
        self,
        url: str,
        queue: SysVMessageQueue,
        receive_type: int,
        send_type: int,
        own: Token,
        peer: Token,
        *,
        owner: _QueueOwner | None,
        speaks: bool,
    ) -> None:
        self.url = url
        self.max_message_size = max_message_size()
        self._queue = queue
        self._rx_type = receive_type
        self._tx_type = send_type
        self._own = own
        self._peer = peer
        self._owner = owner
        self._buffer = bytearray(self.max_message_size + 1)
        self._view = memoryview(self._buffer)
        self._kept: bytes | None = None
        self._queue_send = queue.send
        self._queue_receive_into = queue.receive_into
        self._ready = False
        self._track(speaks)
        self._opened(url)
        self._refresh()

    def _refresh(self) -> None:
        self._ready = (
            self._speaks and not self._closed and self._kept is None and self._ending is None
        )

    def send(self, data: Any, *, timeout: float | None = None) -> None:
        """Send ``data`` (any bytes-like object) as one message.

        Raises:
            MessageTooLarge: larger than :attr:`max_message_size` (msgmax - 1).
            WouldBlock: ``timeout=0`` and the queue is full.
            TimeoutExpired: still full after ``timeout`` seconds.
            EndOfChannel: the peer closed the channel.
            PeerDied: the peer went away without closing.
            ClosedResourceError: this channel is closed.
        """
        deadline = _FOREVER if timeout is None else Deadline(timeout)
        if type(data) is not bytes:
            data = check_bytes_like(data)
        if len(data) > self.max_message_size:
            if self._closed:
                raise closed_error(self)
            raise too_large(self, len(data))
        if self._closed:
            raise closed_error(self)
        if not self._speaks:
            self._set_speaks(True)
        if self._ending is not None:
            raise self._ended()
        message = _DATA + data
        while True:
            try:
                self._queue_send(message, type=self._tx_type, timeout=_slice(deadline))
                return
            except (WouldBlock, TimeoutExpired):
                pass
            except ResourceNotFoundError:
                self._queue_gone()
            self._check_peer()
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.error(f"sending on {self.describe()}") from None

    def _check_peer(self) -> None:
        state = self._peer.probe()
        if state is not PeerState.ALIVE:
            raise self._end(*self._ending_for(state))

    def _ending_for(self, state: PeerState) -> tuple[type[IPCError], str]:
        if state is PeerState.CLOSED:
            return EndOfChannel, f"{self.describe()}: the peer closed the channel"
        return PeerDied, f"{self.describe()}: the peer went away without closing (it died)"

    def _queue_gone(self) -> None:
        """The queue was removed: the peer's token says whether that was a close."""
        state = self._peer.probe()
        if state is PeerState.ALIVE:
            raise self._end(
                ResourceNotFoundError, f"{self.describe()}: the queue was removed under us"
            )
        raise self._end(*self._ending_for(state))

    def receive(self, *, timeout: float | None = None) -> bytes:
        """Wait for the next message and return it.

        Raises:
            WouldBlock: ``timeout=0`` and no message is there.
            TimeoutExpired: no message arrived within ``timeout`` seconds.
            EndOfChannel: the peer closed the channel and every message it sent
                has been received.
            PeerDied: the peer went away without closing.
            ClosedResourceError: this channel is closed.
        """
        deadline = _FOREVER if timeout is None else Deadline(timeout)
        if self._ready:
            try:
                size, _ = self._queue_receive_into(
                    self._buffer, type=self._rx_type, timeout=_slice(deadline)
                )
            except (WouldBlock, TimeoutExpired, ResourceNotFoundError):
                pass
            else:
                if size and self._buffer[0] == _DATA_KIND:
                    return bytes(self._view[1:size])
                return self._control(size)
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
        while True:
            wait = 0.0 if self._ending is not None else _slice(deadline)
            try:
                size, _ = self._queue_receive_into(self._buffer, type=self._rx_type, timeout=wait)
            except (WouldBlock, TimeoutExpired):
                pass
            except ResourceNotFoundError:
                self._queue_gone()
            else:
                if size and self._buffer[0] == _DATA_KIND:
                    return bytes(self._view[1:size])
                return self._control(size)
            if self._ending is not None:
                raise self._ended()
            state = self._peer.probe()
            if state is not PeerState.ALIVE:
                # What it sent before it went is still delivered: look once more.
                self._end(*self._ending_for(state))
                continue
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.error(f"receiving on {self.describe()}")

    def _control(self, size: int) -> bytes:
        kind = bytes(self._view[:1])
        if kind == _GOODBYE:
            raise self._end(EndOfChannel, f"{self.describe()}: the peer closed the channel")
        raise self._end(
            IPCError, f"{self.describe()}: unexpected message of kind {kind!r} ({size} bytes)"
        )

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
        if len(message) > len(view):
            self._kept = message
            self._refresh()
            raise MessageTooLarge(
                f"{self.describe()}: the next message has {len(message)} bytes, "
                f"the buffer only {len(view)} (the message is kept)"
            )
        view[: len(message)] = message
        return len(message)

    def _release(self) -> None:
        self._untrack()
        try:
            if self._speaks and self._ending is None:
                with contextlib.suppress(IPCError):
                    self._queue_send(_GOODBYE, type=self._tx_type, timeout=0)
                self._own.mark_closed()
        finally:
            self._own.close()
            self._peer.close()
            self._queue.close()
            if self._owner is not None:
                self._owner.release()
            self._refresh()

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(f"cannot pickle {self.describe()}: connect to its URL in the child")


class SysVListener(Listener):
    """Accepts ``sysvmq://`` connections on one System V queue it creates."""

    kind = "sysvmq listener"

    def __init__(self, url: str, key: int, *, permissions: int) -> None:
        self.url = url
        self._key = key
        queue = SysVMessageQueue.create(key, permissions=permissions)
        self._token_name = _token_base(key) + ".listener"
        try:
            self._token = Token(create_token(self._token_name, permissions))
        except BaseException:
            queue.unlink()
            queue.close()
            raise
        self._token.hold()
        self._owner = _QueueOwner(queue)
        self._opened(url)

    def accept(self, *, timeout: float | None = None) -> SysVChannel:
        """Wait for the next client and return a channel to it.

        Raises:
            WouldBlock: ``timeout=0`` and no client is waiting.
            TimeoutExpired: no client came within ``timeout`` seconds.
            ClosedResourceError: this listener is closed.
        """
        deadline = Deadline(timeout)
        self._check_open()
        queue = self._owner.queue
        while True:
            try:
                request, _ = queue.receive(type=_REQUEST_TYPE, timeout=deadline.remaining())
            except (WouldBlock, TimeoutExpired):
                raise deadline.error(f"accepting on {self.url}") from None
            channel = self._open_client(request)
            if channel is not None:
                return channel

    def _client_of(self, request: bytes) -> int | None:
        if len(request) != _REQUEST.size:
            return None
        magic, client = _REQUEST.unpack(request)
        if magic != _REQUEST_MAGIC or not 1 <= client < _MAX_CLIENT_ID:
            return None
        return int(client)

    def _open_client(self, request: bytes) -> SysVChannel | None:
        client = self._client_of(request)
        if client is None:
            return None
        client_token, server_token = _client_tokens(self._key, client)
        opened: list[Token] = []
        try:
            peer = Token(open_token(client_token))
            opened.append(peer)
            if peer.probe() is not PeerState.ALIVE:
                raise OSError("the client is gone")
            own = Token(open_token(server_token))
            opened.append(own)
            if not own.hold():
                raise OSError("someone holds the server's token")
            self._owner.queue.send(_HELLO, type=2 * client + 1, timeout=0)
        except (OSError, IPCError):
            for token in opened:
                token.close()
            return None
        finally:
            remove_token(client_token)
            remove_token(server_token)
        queue = SysVMessageQueue.open_id(self._owner.queue.id)
        self._owner.acquire()
        return SysVChannel(
            self.url, queue, 2 * client, 2 * client + 1, own, peer, owner=self._owner, speaks=True
        )

    def _release(self) -> None:
        queue = self._owner.queue
        # Refuse the clients still waiting; clean up after those that died.
        with contextlib.suppress(IPCError):
            while True:
                request, _ = queue.receive(type=_REQUEST_TYPE, timeout=0)
                client = self._client_of(request)
                if client is None:
                    continue
                with contextlib.suppress(IPCError):
                    queue.send(_REFUSED, type=2 * client + 1, timeout=0)
                client_token, server_token = _client_tokens(self._key, client)
                with contextlib.suppress(OSError):
                    watcher = Token(open_token(client_token))
                    try:
                        if watcher.probe() is not PeerState.ALIVE:
                            remove_token(client_token)
                            remove_token(server_token)
                    finally:
                        watcher.close()
        if os.getpid() == self._owner.pid:
            self._token.mark_closed()
            remove_token(self._token_name)
        self._token.close()
        self._owner.release()


def connect_sysvmq(url: str, key: int, deadline: Deadline) -> SysVChannel:
    """Ask the listener on queue ``key`` for a connection and wait until it accepts."""
    queue = SysVMessageQueue.open(key)
    opened: list[Any] = [queue]
    client = secrets.randbelow(_MAX_CLIENT_ID - 1) + 1
    client_token, server_token = _client_tokens(key, client)
    try:
        try:
            listener = Token(open_token(_token_base(key) + ".listener"))
        except OSError:
            raise refused(url, "no unixipc listener owns that queue") from None
        opened.append(listener)
        own = Token(create_token(client_token, 0o600))
        opened.append(own)
        own.hold()
        peer = Token(create_token(server_token, 0o600))
        opened.append(peer)
        request = _REQUEST.pack(_REQUEST_MAGIC, client)
        _retry(url, listener, deadline, lambda wait: queue.send(request, type=1, timeout=wait))
        buffer = bytearray(max_message_size() + 1)
        size, _ = _retry(
            url,
            listener,
            deadline,
            lambda wait: queue.receive_into(buffer, type=2 * client + 1, timeout=wait),
        )
        if bytes(buffer[:size]) == _REFUSED:
            raise refused(url, "the listener closed before accepting")
        if bytes(buffer[:size]) != _HELLO:
            raise IPCError(f"{url!r}: the listener sent a wrong greeting")
    except BaseException:
        for thing in reversed(opened):
            thing.close()
        remove_token(client_token)
        remove_token(server_token)
        raise
    remove_token(client_token)  # the listener did; a listener that did not is covered
    remove_token(server_token)
    listener.close()
    return SysVChannel(url, queue, 2 * client + 1, 2 * client, own, peer, owner=None, speaks=True)


def _retry(url: str, listener: Token, deadline: Deadline, call: Any) -> Any:
    """Run ``call(wait)`` in slices while the listener lives, until the deadline."""
    while True:
        try:
            return call(_slice(deadline))
        except (WouldBlock, TimeoutExpired):
            pass
        except ResourceNotFoundError:
            raise refused(url, "the listener closed") from None
        if listener.probe() is not PeerState.ALIVE:
            raise refused(url, "the listener is gone")
        if deadline.timeout == 0 or deadline.expired():
            raise deadline.error(f"connecting to {url} (the listener did not accept)")
