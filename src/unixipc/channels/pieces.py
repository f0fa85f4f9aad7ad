"""Messages as pieces over a message facility: POSIX and System V queues, rings (private).

A driver supplies a :class:`PieceLink` that moves one *piece* (a queue message, a
ring record) each way, all or nothing, and keeps message boundaries. A message
shorter than the link's piece size is one piece, as is (no header, no copy); a
longer one goes as pieces of exactly that size followed by a shorter last one
(empty if need be), reassembled by the receiver, which gives up as soon as the
total passes its ``max_message_size``: memory grows only with the pieces that
arrived. Once the first piece of a message is out the message is committed: if
time runs out (or Ctrl-C comes) later, the rest is kept and sent before anything
else, also while the end waits to receive.

A link's calls wait as long as they are told and see the peer's end themselves:
a ring by its own liveness, the queue links by probing the peer's liveness token
between slices of their waits (:mod:`.liveness`); messages the peer sent before
it went are still delivered. A link also keeps a close() from another thread
safe: a ring's close wakes its waiters and waits for them; the queue links mark
their calls inside (``Link.inside``) and stop once interrupted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._deadline import Deadline, check_timeout
from .._names import check_bytes_like
from ..errors import ClosedResourceError, EndOfChannel, IPCError, MessageTooLarge, PeerDied
from .core import (
    CLOSED_BY_PEER,
    DIED,
    ENDINGS,
    Channel,
    Link,
    PeerState,
    passable_by_multiprocessing,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

_T = TypeVar("_T")

# While a committed tail waits for room, a receiving end tries to send it this often.
TAIL_SLICE = 0.01
# What a link's call raises when it did not succeed in time.
_NOT_YET = (BlockingIOError, TimeoutError)


class PieceLink(Link, Protocol):
    """A driver's message end: one piece at a time each way (see the module docstring)."""

    @property
    def piece_size(self) -> int:
        """A piece of exactly this size continues a message (sending)."""
        ...

    @property
    def rx_piece_size(self) -> int:
        """The same for the pieces received."""
        ...

    @property
    def probe_interval(self) -> float | None:
        """Seconds between liveness probes while an event loop waits on the
        descriptors (None: the link's calls see the peer's end themselves)."""
        ...

    @property
    def direct(self) -> bool:
        """True when the calls are a ring's own: take_into reads a piece straight
        into a buffer, and put/take may be called without a timeout (blocking)."""
        ...

    def put(self, piece: Buffer, *, timeout: float | None) -> None:
        """Send one piece within ``timeout``; WouldBlock/TimeoutExpired if no room,
        EndOfChannel/PeerDied/LinkEnded when the peer is gone, ClosedResourceError
        once interrupt() was called (the call marks itself inside the link)."""
        ...

    def take(self, *, timeout: float | None) -> bytes:
        """Receive one piece within ``timeout``; EndOfChannel/PeerDied/LinkEnded
        when the peer is gone and nothing it sent is left (as put otherwise)."""
        ...

    def take_into(self, buffer: Buffer, *, timeout: float | None) -> int:
        """Receive one piece into ``buffer`` (MessageTooLarge keeps it); only if direct."""
        ...

    def peer_state(self) -> PeerState:
        """Probe the peer's liveness (for event loops, with probe_interval)."""
        ...

    def say_goodbye(self) -> None:
        """Tell the peer we closed, without waiting (best effort)."""
        ...


def _ending_for(state: PeerState) -> tuple[type[IPCError], str]:
    return (EndOfChannel, CLOSED_BY_PEER) if state is PeerState.CLOSED else (PeerDied, DIED)


class PieceChannel(Channel):
    """A channel of pieces over a message facility (see the module docstring)."""

    _link: PieceLink

    def __init__(
        self, url: str, link: PieceLink, *, max_message_size: int, in_use: bool = True
    ) -> None:
        self._piece = link.piece_size
        self._rx_piece = link.rx_piece_size
        self._partial: list[bytes] = []  # pieces of a message being reassembled
        self._partial_size = 0
        self._kept: bytes | None = None  # a message receive_into had no room for
        self._tail: list[bytes] = []  # committed pieces the link had no room for yet
        self._start(url, link, max_message_size, in_use=in_use)
        self._put = link.put
        self._take = link.take
        self._take_into = link.take_into if link.direct else None
        if link.direct:  # the channel's direct calls (see Channel._direct)
            self._direct_send = link.put
            self._direct_receive = link.take
        self._refresh()

    @classmethod
    def _rebuilt(cls, url: str, link: Any, max_message_size: int) -> PieceChannel:
        return cls(url, link, max_message_size=max_message_size)

    def _refresh(self) -> None:
        # Sizes that go (come) as one piece and need no other check (the limit
        # changes during a handshake: see core.establish).
        self._fast_send = min(self._piece - 1, self.max_message_size)
        self._fast_receive = min(self._rx_piece - 1, self.max_message_size)
        self._ready = (
            self._in_use
            and not self._closed
            and self._ending is None
            and not self._tail
            and not self._partial
            and self._kept is None
        )
        self._direct = self._ready and self._link.direct

    def _has_tail(self) -> bool:
        return bool(self._tail)

    def _flush_nowait(self) -> None:
        self._flush(None)

    def _probe(self) -> None:
        if self._link.probe_interval is not None:
            state = self._link.peer_state()
            if state is not PeerState.ALIVE:
                raise self._end(*_ending_for(state))

    def _failed(self, error: Exception, what: str, timeout: float | None) -> Exception:
        """What a fast path raises for the exception of a link's call."""
        if isinstance(error, ENDINGS):
            return self._ended_by(error)
        if isinstance(error, ClosedResourceError):
            return self._closed_error()
        if isinstance(error, _NOT_YET):
            return Deadline(timeout).error(f"{what} on {self.describe()}")
        return error

    # Sending.

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        if type(data) is bytes:
            size = len(data)
        else:
            data = check_bytes_like(data)
            size = len(data)
        if timeout is not None:
            check_timeout(timeout)
        if self._ready and size <= self._fast_send:
            try:
                self._put(data, timeout=timeout)
                return
            except Exception as error:
                raise self._failed(error, "sending", timeout) from None
        self._send_slow(data, size, Deadline(timeout))

    def _send_slow(self, data: Any, size: int, deadline: Deadline) -> None:
        if size > self.max_message_size:
            raise self._refuse(size)
        self._ready_to_send()
        if self._tail:
            self._flush(deadline)
        step = self._piece
        view = memoryview(data)
        pieces = [view] if size < step else [view[i : i + step] for i in range(0, size + 1, step)]
        for index, piece in enumerate(pieces):
            try:
                self._call(self._put, deadline, False, piece)
            except _NOT_YET:
                if index == 0:
                    raise  # nothing of this message went out
                self._keep_tail(pieces[index:])
                return
            except IPCError:
                raise  # the peer is gone or this end closed: nothing to keep
            except BaseException:
                if index:  # e.g. Ctrl-C between pieces: the message stays whole
                    self._keep_tail(pieces[index:])
                raise

    def _keep_tail(self, pieces: list[memoryview]) -> None:
        """The message is committed: keep its other pieces (copies) to send before anything."""
        self._tail = [bytes(piece) for piece in pieces]
        self._refresh()

    def _flush(self, deadline: Deadline | None) -> None:
        """Send the committed pieces; without a deadline, only what fits now."""
        while self._tail:
            if deadline is not None:
                self._call(self._put, deadline, False, self._tail[0])
            else:
                try:
                    self._put(self._tail[0], timeout=0)
                except ENDINGS as error:
                    raise self._ended_by(error) from None
                except _NOT_YET:
                    return
            del self._tail[0]
        self._refresh()

    # Waiting.

    def _call(self, call: Callable[..., _T], deadline: Deadline, receiving: bool, *args: Any) -> _T:
        """``call(*args, timeout=...)`` until it succeeds or the deadline passes.

        While a committed tail waits to be sent, a receiver waits in short slices
        and sends what fits between them; once the peer is gone, a receiver still
        gets what it sent before.
        """
        while True:
            if self._ending is not None:
                # Once the peer left, what it sent before is still delivered; after
                # garbage or an oversized message nothing more is.
                if not receiving or self._ending[0] not in (EndOfChannel, PeerDied):
                    raise self._ended()
                try:
                    return call(*args, timeout=0)
                except (BlockingIOError, TimeoutError, *ENDINGS):
                    raise self._ended() from None
            wait = deadline.remaining()
            if receiving and self._tail:
                with contextlib.suppress(IPCError):  # an ending is seen at the loop's top
                    self._flush(None)
                if self._tail:
                    wait = TAIL_SLICE if wait is None else min(wait, TAIL_SLICE)
            try:
                return call(*args, timeout=wait)
            except ENDINGS as error:
                raise self._ended_by(error, bool(self._partial)) from None
            except ClosedResourceError:
                raise self._closed_error() from None
            except _NOT_YET:
                pass
            if deadline.timeout == 0 or deadline.expired():
                what = "receiving" if receiving else "sending"
                raise deadline.error(f"{what} on {self.describe()}")

    # Receiving.

    def receive(self, *, timeout: float | None = None) -> bytes:
        if timeout is not None:
            check_timeout(timeout)
        if self._ready:
            try:
                data = self._take(timeout=timeout)
            except Exception as error:
                raise self._failed(error, "receiving", timeout) from None
            if len(data) <= self._fast_receive:
                return data
            return self._assemble(data, Deadline(timeout))
        return self._assemble(None, self._before_slow_receive(timeout))

    def _receive_rest(self, first: bytes) -> bytes:
        return self._assemble(first, Deadline(None))

    def _before_slow_receive(self, timeout: float | None) -> Deadline:
        deadline = Deadline(timeout)
        self._ready_to_receive()
        return deadline

    def _assemble(self, data: bytes | None, deadline: Deadline) -> bytes:
        """The next message: a kept one, or pieces (kept across timeouts) and the rest."""
        if data is None and self._kept is not None:
            message, self._kept = self._kept, None
            self._refresh()
            return message
        while True:
            if data is None:
                data = self._call(self._take, deadline, True)
            if not self._partial and len(data) < self._rx_piece:
                if len(data) > self.max_message_size:
                    raise self._peer_too_large()
                return data
            self._partial.append(data)
            self._partial_size += len(data)
            self._refresh()
            if self._partial_size > self.max_message_size:
                self._partial = []
                raise self._peer_too_large()
            if len(data) < self._rx_piece:
                message = b"".join(self._partial)
                self._partial = []
                self._partial_size = 0
                self._refresh()
                return message
            data = None

    def receive_into(self, buffer: Buffer, *, timeout: float | None = None) -> int:
        take_into = self._take_into
        if take_into is None:
            return self._receive_then_copy(buffer, timeout)
        if self._ready:
            try:
                size: int = take_into(buffer, timeout=timeout)
            except Exception as error:
                raise self._failed(error, "receiving", timeout) from None
            if size <= self._fast_receive:
                return size
            view = check_bytes_like(buffer, "buffer")
            return self._into_rest(view, size, Deadline(timeout))
        view = _writable(buffer)
        deadline = self._before_slow_receive(timeout)
        if not self._partial:
            if self._ending is not None:
                raise self._ended()
            size = self._call(take_into, deadline, True, view)
            if size <= self._fast_receive:
                return size
            return self._into_rest(view, size, deadline)
        # Pieces kept from an interrupted call come first.
        got = self._partial_size
        if got > len(view):
            raise _too_small(self, len(view))
        view[:got] = b"".join(self._partial)
        self._partial = []
        self._partial_size = 0
        self._refresh()
        return self._into_rest(view, got, deadline)

    def _into_rest(self, view: memoryview, got: int, deadline: Deadline) -> int:
        """Read the rest of a message straight into ``view``, after ``got`` bytes of it.

        ``got`` is a first piece at least as large as our limit allows, or whole
        pieces. If the call is cut short, the pieces already taken are kept for
        the next call.
        """
        assert self._take_into is not None
        try:
            while True:
                if got > self.max_message_size:
                    raise self._peer_too_large()
                if got % self._rx_piece:
                    return got  # the last, shorter piece has arrived
                try:
                    last = self._call(self._take_into, deadline, True, view[got:])
                except MessageTooLarge:
                    if self._ending is not None:
                        raise
                    raise _too_small(self, len(view)) from None
                got += last
                if last < self._rx_piece and got <= self.max_message_size:
                    return got
        except BaseException:
            if self._ending is None:
                self._partial = [bytes(view[:got])]
                self._partial_size = got
                self._refresh()
            raise

    def _receive_then_copy(self, buffer: Buffer, timeout: float | None) -> int:
        """receive_into for links without a direct read: keep what does not fit."""
        view = _writable(buffer)
        if timeout is not None:
            check_timeout(timeout)
        message = self.receive(timeout=timeout)
        size = len(message)
        if size > len(view):
            self._kept = message
            self._refresh()
            raise _too_small(self, len(view), size)
        view[:size] = message
        return size

    # Closing.

    def _say_goodbye(self) -> None:
        with contextlib.suppress(IPCError, OSError):
            self._flush(None)
            if not self._tail:  # else the peer learns of the close from the link
                self._link.say_goodbye()


passable_by_multiprocessing(PieceChannel)


def _writable(buffer: Buffer) -> memoryview:
    view = check_bytes_like(buffer, "buffer")
    if view.readonly:
        raise TypeError("buffer must be writable")
    return view


def _too_small(channel: Channel, room: int, size: int | None = None) -> MessageTooLarge:
    what = "the next message" if size is None else f"the next message has {size} bytes,"
    if size is None:
        what += f" does not fit in a buffer of {room} bytes"
    else:
        what += f" the buffer only {room}"
    return MessageTooLarge(f"{channel.describe()}: {what} (the message is kept)")
