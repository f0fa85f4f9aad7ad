"""``shm://name`` channels and ``channel_pair("shm")``: a ring per direction (private).

A channel end holds two :class:`unixipc.Ring` handles: it is the only producer of
the ring it sends on and the only consumer of the ring it receives from. The ring
itself tells the rest: a receiver facing an empty ring whose producer closed gets
``EndOfChannel``, whose producer died ``PeerDied`` (its lock byte, released by the
kernel, is noticed within about 0.2 s); a sender facing a full ring whose consumer
is gone likewise. A message shorter than the ring's largest record (half its
``capacity`` less 16 bytes) is one record, with no header and no extra copy; a
longer one goes as records of exactly that size followed by a shorter last one
(empty if need be), reassembled by the receiver (``receive_into`` reads them
straight into the caller's buffer), which gives up as soon as the total passes
its ``max_message_size``.

Connecting to ``shm://name``: the listener creates the well-known ring ``/name``
(small: it carries only 20-byte connection requests) and is its consumer and, so
that it never looks abandoned, also a producer. A client creates its two rings
``/name.<token>.up`` and ``.down``, takes its roles on them, sends a request naming
the token into ``/name`` and waits on ``.down`` for the greeting; ``accept`` opens
both rings, takes the other roles, removes both names (from then on they live as
long as the two ends hold them) and sends the greeting, always the first message
of ``.down``. A client waiting to be accepted gives up when ``/name`` has no live
consumer (the listener closed or died).

A pair makes its two rings under random names, keeps a descriptor on each and
removes the names at once: nothing can be left behind, and an end passed to a
``multiprocessing`` child travels as those descriptors.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
from multiprocessing import reduction
from typing import Any

from . import _native
from ._channel_base import Channel, Listener, closed_error, refused, too_large
from ._deadline import Deadline
from ._names import check_bytes_like
from .errors import (
    EndOfChannel,
    IPCError,
    MessageTooLarge,
    PeerDied,
    TimeoutExpired,
    WouldBlock,
)
from .posix_shm import PosixSharedMemory
from .ring import Ring
from .ring import unlink as unlink_ring

__all__ = ("ShmChannel", "ShmListener", "connect_shm", "shm_pair")

#: The capacity of each ring of a connection unless told otherwise (max message 512 KiB - 16).
DEFAULT_CAPACITY = 1024 * 1024
_REQUEST_RING_CAPACITY = 4096
_REQUEST = struct.Struct("!4s16s")
_REQUEST_MAGIC = b"uxr\x01"
_HELLO = b"unixipc shm channel\x01"
_TOKEN = re.compile(rb"[0-9a-f]{16}")
_SLICE = 0.2  # how often a client waiting to be accepted checks the listener
_TAIL_SLICE = 0.01  # how often a receiver with a committed tail tries to send it


def _slice(deadline: Deadline) -> float:
    left = deadline.remaining()
    return _SLICE if left is None else min(_SLICE, left)


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(IPCError, OSError):
        unlink_ring(name)


def _descriptor(name: str) -> int:
    """A descriptor of our own on the ring's object, for handing the end to a child."""
    return _native.shm_open(name, os.O_RDWR, 0)


class ShmChannel(Channel):
    """A channel over two shared-memory rings (see the module docstring)."""

    kind = "shm channel"

    def __init__(
        self,
        url: str,
        receive_ring: Ring,
        send_ring: Ring,
        descriptors: tuple[int, int],
        *,
        max_message_size: int,
        speaks: bool,
    ) -> None:
        self.url = url
        self._rx = receive_ring
        self._tx = send_ring
        # A forked child inherits our roles on both rings at once, so a parent that
        # closes its copy right after fork (the forking server) does not end the
        # conversation that the child goes on with.
        receive_ring._inherited_by_children = True
        send_ring._inherited_by_children = True
        self._descriptors = descriptors  # (receive ring, send ring), for passing on
        self.max_message_size = max_message_size
        # A record of exactly the ring's largest size is a piece of a longer message.
        self._piece = send_ring.max_message_size
        self._rx_piece = receive_ring.max_message_size
        # Sizes that go (come) as one record and need no other check.
        self._fast_send = min(self._piece - 1, max_message_size)
        self._fast_receive = min(self._rx_piece - 1, max_message_size)
        self._partial: list[bytes] = []  # pieces of a message being reassembled
        self._partial_size = 0
        self._tail: list[bytes] = []  # committed pieces the ring had no room for yet
        self._tx_send = send_ring.send
        self._rx_receive = receive_ring.receive
        self._rx_receive_into = receive_ring.receive_into
        self._ready = False
        self._track(False)
        self._opened(url)
        if speaks:
            self._set_speaks(True)
        self._refresh()

    def _refresh(self) -> None:
        self._ready = (
            self._speaks
            and not self._closed
            and self._ending is None
            and not self._tail
            and not self._partial
        )

    def _set_speaks(self, speaks: bool) -> None:
        if speaks and not self._speaks and not self._closed:
            # Take our roles now: the peer learns of our death even before our first message.
            self._tx.declare(producer=True)
            self._rx.declare(consumer=True)
        super()._set_speaks(speaks)

    def _ring_ended(self, error: IPCError) -> IPCError:
        return self._end(type(error), f"{self.describe()}: {error}")

    # Sending.

    def send(self, data: Any, *, timeout: float | None = None) -> None:
        """Send ``data`` (any bytes-like object) as one message.

        A message of the ring's largest record size or more goes in pieces; if
        time runs out after the first piece, the rest is kept and sent before
        anything else (by the next send, while receiving, or by close): a message
        is never cut or sent twice, and WouldBlock/TimeoutExpired mean nothing was
        sent.

        Raises:
            MessageTooLarge: larger than :attr:`max_message_size` (nothing sent).
            WouldBlock: ``timeout=0`` and the ring is full.
            TimeoutExpired: still full after ``timeout`` seconds.
            EndOfChannel: the peer closed the channel.
            PeerDied: the peer went away without closing.
            ClosedResourceError: this channel is closed.
        """
        if type(data) is bytes:
            size = len(data)
        else:
            data = check_bytes_like(data)
            size = len(data)
        if self._ready and size <= self._fast_send:
            try:
                self._tx_send(data, timeout=timeout)
                return
            except (EndOfChannel, PeerDied) as error:
                raise self._ring_ended(error) from None
        self._send_slow(data, size, Deadline(timeout))

    def _send_slow(self, data: Any, size: int, deadline: Deadline) -> None:
        if self._closed:
            raise closed_error(self)
        if size > self.max_message_size:
            raise too_large(self, size)
        if not self._speaks:
            self._set_speaks(True)
        if self._ending is not None:
            raise self._ended()
        if self._tail:
            self._flush(deadline)
        step = self._piece
        view = memoryview(data)
        pieces = [view] if size < step else [view[i : i + step] for i in range(0, size + 1, step)]
        for index, piece in enumerate(pieces):
            try:
                self._put(piece, deadline.remaining())
            except (WouldBlock, TimeoutExpired):
                if index == 0:
                    raise  # nothing of this message went out
                self._tail = [bytes(rest) for rest in pieces[index:]]
                self._refresh()
                return

    def _put(self, piece: Any, timeout: float | None) -> None:
        try:
            self._tx_send(piece, timeout=timeout)
        except (EndOfChannel, PeerDied) as error:
            raise self._ring_ended(error) from None

    def _flush(self, deadline: Deadline | None) -> None:
        """Send the committed pieces; without a deadline, only what fits now."""
        while self._tail:
            try:
                self._put(self._tail[0], 0 if deadline is None else deadline.remaining())
            except (WouldBlock, TimeoutExpired):
                if deadline is None:
                    return
                raise
            del self._tail[0]
        self._refresh()

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
        if self._ready:
            try:
                data: bytes = self._rx_receive(timeout=timeout)
            except (EndOfChannel, PeerDied) as error:
                raise self._ring_ended(error) from None
            if len(data) <= self._fast_receive:
                return data
            self._partial = [data]
            self._partial_size = len(data)
            self._refresh()
            return self._assemble(Deadline(timeout))
        self._before_slow_receive()
        return self._assemble(Deadline(timeout))

    def _before_slow_receive(self) -> None:
        if self._closed:
            raise closed_error(self)
        if not self._speaks:
            self._set_speaks(True)
        if self._ending is not None:
            raise self._ended()

    def _take(self, deadline: Deadline) -> bytes:
        """One ring record; while a committed tail is pending, keep sending it."""
        while True:
            wait = deadline.remaining()
            if self._tail:
                self._flush(None)
                if self._tail:
                    wait = _TAIL_SLICE if wait is None else min(wait, _TAIL_SLICE)
            try:
                record: bytes = self._rx_receive(timeout=wait)
                return record
            except (WouldBlock, TimeoutExpired):
                if not self._tail or deadline.timeout == 0 or deadline.expired():
                    raise
            except (EndOfChannel, PeerDied) as error:
                raise self._ring_ended(error) from None

    def _assemble(self, deadline: Deadline) -> bytes:
        """The next message: pieces already taken (kept across timeouts) plus the rest."""
        while True:
            try:
                data = self._take(deadline)
            except (EndOfChannel, PeerDied) as error:
                if self._partial:
                    raise type(error)(f"{error} (in the middle of a message)") from None
                raise
            if not self._partial and len(data) <= self._fast_receive:
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

    def receive_into(self, buffer: Any, *, timeout: float | None = None) -> int:
        """Receive the next message into the writable bytes-like ``buffer``; return its size.

        Raises:
            MessageTooLarge: the next message does not fit in ``buffer``; it is
                kept for a later call.
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,
            ClosedResourceError: as :meth:`receive`.
        """
        if self._ready:
            try:
                size: int = self._rx_receive_into(buffer, timeout=timeout)
            except (EndOfChannel, PeerDied) as error:
                raise self._ring_ended(error) from None
            if size <= self._fast_receive:
                return size
            view = check_bytes_like(buffer, "buffer")
            return self._into_rest(view, size, Deadline(timeout))
        view = check_bytes_like(buffer, "buffer")
        if view.readonly:
            raise TypeError("buffer must be writable")
        self._before_slow_receive()
        deadline = Deadline(timeout)
        if not self._partial:
            size = self._rx_receive_into(view, timeout=deadline.remaining())
            if size <= self._fast_receive:
                return size
            return self._into_rest(view, size, deadline)
        # Pieces kept from an interrupted call come first.
        got = self._partial_size
        if got > len(view):
            raise self._too_small(len(view))
        view[:got] = b"".join(self._partial)
        self._partial = []
        self._partial_size = 0
        self._refresh()
        return self._into_rest(view, got, deadline)

    def _into_rest(self, view: memoryview, got: int, deadline: Deadline) -> int:
        """Read the rest of a message straight into ``view``, after ``got`` bytes of it.

        ``got`` is a first record at least as large as our limit allows, or whole
        pieces. If the call is cut short, the pieces already taken are kept for
        the next call.
        """
        try:
            while True:
                if got > self.max_message_size:
                    raise self._end(
                        MessageTooLarge,
                        f"{self.describe()}: the peer's message is larger than the maximum "
                        f"of {self.max_message_size} bytes (the channel is unusable now)",
                    )
                if got % self._rx_piece:
                    return got  # the last, shorter piece has arrived
                if self._tail:
                    self._flush(None)
                try:
                    last = self._rx_receive_into(view[got:], timeout=deadline.remaining())
                except MessageTooLarge:
                    raise self._too_small(len(view)) from None
                except (EndOfChannel, PeerDied) as error:
                    raise type(self._ring_ended(error))(
                        f"{self.describe()}: {error} (in the middle of a message)"
                    ) from None
                got += last
                if last < self._rx_piece and got <= self.max_message_size:
                    return got
        except BaseException:
            if self._ending is None:
                self._partial = [bytes(view[:got])]
                self._partial_size = got
                self._refresh()
            raise

    def _too_small(self, size: int) -> MessageTooLarge:
        return MessageTooLarge(
            f"{self.describe()}: the next message does not fit in a buffer of {size} bytes "
            "(the message is kept)"
        )

    # Closing.

    def _release(self) -> None:
        self._untrack()
        try:
            if self._speaks and self._tail:
                with contextlib.suppress(IPCError):
                    self._flush(None)
            # An end that speaks ends our roles (the peer gets EndOfChannel, even if
            # forked children hold copies); a silent one hands them to the process
            # that goes on with the conversation (a forked or spawned child).
            for ring in (self._tx, self._rx):
                ring._close_announces = self._speaks
                ring.close()
        finally:
            for fd in self._descriptors:
                os.close(fd)
            self._refresh()

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            f"cannot pickle {self.describe()}: pass it to a multiprocessing child instead"
        )


def _rebuild(
    url: str, receive: tuple[str, Any], send: tuple[str, Any], max_message_size: int
) -> ShmChannel:
    rings = []
    descriptors = []
    for name, dup in (receive, send):
        fd = dup.detach()
        descriptors.append(fd)
        rings.append(Ring(PosixSharedMemory._adopt(name, os.dup(fd), False)))
    # The receiving process owns it now: it takes its roles at once.
    return ShmChannel(
        url,
        rings[0],
        rings[1],
        (descriptors[0], descriptors[1]),
        max_message_size=max_message_size,
        speaks=True,
    )


def _reduce(channel: ShmChannel) -> tuple[Any, ...]:
    channel._check_open()
    channel._set_speaks(False)  # given away: closing our copy must not end the conversation
    receive_fd, send_fd = channel._descriptors
    return (
        _rebuild,
        (
            channel.url,
            (channel._rx.name, reduction.DupFd(receive_fd)),
            (channel._tx.name, reduction.DupFd(send_fd)),
            channel.max_message_size,
        ),
    )


reduction.register(ShmChannel, _reduce)


def shm_pair(capacity: int, max_message_size: int) -> tuple[ShmChannel, ShmChannel]:
    """Two channel ends over two rings whose names are already gone."""
    base = f"/unixipc-pair-{os.getpid()}-{secrets.token_hex(6)}"
    names = (base + ".a", base + ".b")  # a: first end to second, b: back
    opened: list[Ring] = []
    descriptors: list[int] = []
    try:
        for name in names:
            opened.append(Ring.create(name, capacity))
            opened.append(Ring.open(name))
            descriptors += [_descriptor(name), _descriptor(name)]
    except BaseException:
        for ring in opened:
            ring.close()
        for fd in descriptors:
            os.close(fd)
        raise
    finally:
        for name in names:
            _unlink_quietly(name)
    a_send, b_receive, b_send, a_receive = opened
    size = max_message_size
    first = ShmChannel(
        "shm:",
        a_receive,
        a_send,
        (descriptors[2], descriptors[0]),
        max_message_size=size,
        speaks=False,
    )
    second = ShmChannel(
        "shm:",
        b_receive,
        b_send,
        (descriptors[1], descriptors[3]),
        max_message_size=size,
        speaks=False,
    )
    return first, second


class ShmListener(Listener):
    """Accepts ``shm://`` connections through a small well-known request ring."""

    kind = "shm listener"

    def __init__(self, url: str, name: str, *, permissions: int, max_message_size: int) -> None:
        self.url = url
        self.max_message_size = max_message_size
        self._ring_name = name
        self._creator = os.getpid()
        self._requests = Ring.create(name, _REQUEST_RING_CAPACITY, permissions=permissions)
        # A producer too, so that the ring never looks abandoned when clients come and go.
        self._requests.declare(producer=True, consumer=True)
        self._opened(url)

    def accept(self, *, timeout: float | None = None) -> ShmChannel:
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
                request = self._requests.receive(timeout=deadline.remaining())
            except (WouldBlock, TimeoutExpired):
                raise deadline.error(f"accepting on {self.url}") from None
            token = self._token_of(request)
            if token is not None:
                channel = self._open_client(token)
                if channel is not None:
                    return channel

    @staticmethod
    def _token_of(request: bytes) -> str | None:
        if len(request) != _REQUEST.size:
            return None
        magic, token = _REQUEST.unpack(request)
        if magic != _REQUEST_MAGIC or not _TOKEN.fullmatch(token):
            return None
        return str(token.decode())

    def _open_client(self, token: str) -> ShmChannel | None:
        base = f"{self._ring_name}.{token}"
        names = (base + ".up", base + ".down")
        opened: list[Any] = []
        try:
            for name in names:
                opened.append(Ring.open(name))
            opened += [_descriptor(name) for name in names]
            up, down, up_fd, down_fd = opened
            if up.info().producers == 0:
                raise IPCError("the client is gone")
            channel = ShmChannel(
                self.url,
                up,
                down,
                (up_fd, down_fd),
                max_message_size=self.max_message_size,
                speaks=True,
            )
        except (IPCError, OSError):
            for thing in opened:
                if isinstance(thing, int):
                    os.close(thing)
                else:
                    thing.close()
            return None
        finally:
            for name in names:
                _unlink_quietly(name)
        try:
            down.send(_HELLO, timeout=0)
        except IPCError:
            channel.close()
            return None
        return channel

    def _release(self) -> None:
        if os.getpid() == self._creator:
            # Remove the rings of clients that asked and died; live ones clean up
            # after themselves when they see the listener gone.
            with contextlib.suppress(IPCError):
                while True:
                    token = self._token_of(self._requests.receive(timeout=0))
                    if token is not None:
                        self._forget_if_dead(f"{self._ring_name}.{token}")
            _unlink_quietly(self._ring_name)
        self._requests.close()

    @staticmethod
    def _forget_if_dead(base: str) -> None:
        try:
            up = Ring.open(base + ".up")
        except IPCError:
            return
        try:
            if up.info().producers == 0:
                _unlink_quietly(base + ".up")
                _unlink_quietly(base + ".down")
        finally:
            up.close()


def connect_shm(
    url: str,
    name: str,
    deadline: Deadline,
    *,
    capacity: int,
    permissions: int,
    max_message_size: int,
) -> ShmChannel:
    """Ask the listener ``name`` for a connection and wait until it accepts."""
    requests = Ring.open(name)
    opened: list[Any] = [requests]
    token = secrets.token_hex(8)
    base = f"{name}.{token}"
    names = (base + ".up", base + ".down")
    try:
        if requests.info().consumers == 0:
            raise refused(url, "no listener is taking requests")
        for ring_name in names:
            opened.append(Ring.create(ring_name, capacity, permissions=permissions))
        up, down = opened[1], opened[2]
        up.declare(producer=True)
        down.declare(consumer=True)
        descriptors = (_descriptor(names[1]), _descriptor(names[0]))
        opened += list(descriptors)
        request = _REQUEST.pack(_REQUEST_MAGIC, token.encode())
        _with_listener(url, requests, deadline, lambda wait: requests.send(request, timeout=wait))
        greeting = _with_listener(url, requests, deadline, lambda wait: down.receive(timeout=wait))
        if greeting != _HELLO:
            raise IPCError(f"{url!r}: the listener sent a wrong greeting")
    except BaseException:
        for thing in reversed(opened):
            if isinstance(thing, int):
                os.close(thing)
            else:
                thing.close()
        for ring_name in names:
            _unlink_quietly(ring_name)
        raise
    for ring_name in names:  # the listener did; a listener that did not is covered
        _unlink_quietly(ring_name)
    requests.close()
    return ShmChannel(url, down, up, descriptors, max_message_size=max_message_size, speaks=True)


def _with_listener(url: str, requests: Ring, deadline: Deadline, call: Any) -> Any:
    """``call(wait)`` in slices while the listener still consumes requests."""
    while True:
        try:
            return call(_slice(deadline))
        except (WouldBlock, TimeoutExpired):
            pass
        except (EndOfChannel, PeerDied):
            raise refused(url, "the listener went away") from None
        if requests.info().consumers == 0:
            raise refused(url, "the listener closed before accepting")
        if deadline.timeout == 0 or deadline.expired():
            raise deadline.error(f"connecting to {url} (the listener did not accept)")
