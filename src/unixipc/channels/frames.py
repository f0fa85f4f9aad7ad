"""Messages as length-prefixed frames over a byte stream: pipes, FIFOs, sockets (private).

Frame: a 4-byte big-endian length, then that many bytes. Two lengths are
reserved: ``HELLO`` (followed by a 4-byte magic: the first frame a socket peer
sends, so that a stranger's bytes are refused) and ``GOODBYE`` (sent by
``close()``, so that the receiver tells a clean close, :class:`EndOfChannel`,
from a peer that went away without closing, :class:`PeerDied`). A length is
checked against ``max_message_size`` before anything is allocated for it, and
the read-ahead buffer grows only as far as the frame's bytes have arrived.

A driver supplies a :class:`ByteLink`: a few non-blocking byte primitives on its
descriptors, and, where the kernel lets one call refuse to wait (sockets with
``MSG_DONTWAIT``, anonymous pipes with ``RWF_NOWAIT``), a read that sleeps in the
kernel: with ``timeout=None`` and nothing buffered, a receive is then one system
call. Writes never sleep in the kernel (a thread asleep in write(2) could not be
woken by close()): a frame goes out in non-blocking writes with ``poll`` between,
and once part of it went out it is committed: the rest is kept and written before
anything else, even when a signal handler raises in the middle (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import select
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._deadline import Deadline, check_timeout
from .._names import check_bytes_like
from ..errors import EndOfChannel, IPCError, MessageTooLarge, PeerDied
from .core import (
    CLOSED_BY_PEER,
    RECEIVE,
    SEND,
    Channel,
    Link,
    Waker,
    marks_calls,
    passable_by_multiprocessing,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

HEADER = struct.Struct("!I")
_unpack_header = HEADER.unpack_from
_pack_header = HEADER.pack

GOODBYE = 0xFFFFFFFF
HELLO = 0xFFFFFFFE
HELLO_MAGIC = b"uxc\x01"
HELLO_FRAME = _pack_header(HELLO) + HELLO_MAGIC
GOODBYE_FRAME = _pack_header(GOODBYE)
#: The largest payload a frame can announce (the two lengths above are reserved).
MAX_FRAME = 0xFFFFFFFD

_FOREVER = Deadline(None)

#: Read-ahead buffer; one read often brings in several messages.
READ_BUFFER = 64 * 1024
# The buffer grows for a larger frame only when it is full of bytes that arrived,
# by what it holds, at most this much at a time: memory stays within what the peer
# really sent plus this, whatever length it announced.
GROW_STEP = 4 * 1024 * 1024
# Up to this size one joined buffer is cheaper than a two-buffer sendmsg/writev
# (measured: ~0.25 us less per 64-byte message); above it the copy costs more.
JOIN_BELOW = 4096
# receive_into reads messages at least this large straight into the caller's buffer.
DIRECT_READ = 64 * 1024
# When a send finds the peer gone, read at most this much looking for its goodbye.
_GOODBYE_SEARCH_LIMIT = 8 * 1024 * 1024

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
_WRITABLE = select.POLLOUT | select.POLLHUP | select.POLLERR


class ByteLink(Link, Protocol):
    """A driver's byte-stream end (pipes, FIFOs, sockets).

    ``read``/``write``/``writev`` never wait (BlockingIOError instead) and raise
    BrokenPipeError/ConnectionResetError when the peer's end is gone; with
    ``can_block``, ``read_wait`` sleeps in the kernel until bytes come (and
    ``interrupt()`` wakes it). ``waker`` is polled with the descriptors.
    """

    @property
    def read_fd(self) -> int:
        """The descriptor bytes are read from."""
        ...

    @property
    def write_fd(self) -> int:
        """The descriptor bytes are written to (the same one for a socket)."""
        ...

    @property
    def waker(self) -> Waker:
        """Polled with the descriptors; close() wakes it."""
        ...

    @property
    def can_block(self) -> bool:
        """Whether read_wait may sleep in the kernel."""
        ...

    def read(self, view: memoryview) -> int:
        """Read what is there into ``view``; 0 at end of stream."""
        ...

    def read_wait(self, view: memoryview) -> int:
        """Read into ``view``, sleeping in the kernel until bytes come (can_block)."""
        ...

    def write(self, data: Buffer) -> int:
        """Write what fits now of ``data``; return how much."""
        ...

    def writev(self, buffers: Sequence[Buffer]) -> int:
        """Write what fits now of ``buffers``, in order; return how much."""
        ...

    def grow_write_buffer(self) -> bool:
        """Make the kernel's buffer larger (to fit a goodbye); False if it cannot."""
        ...

    def wake_reader(self) -> None:
        """Wake a thread asleep in ``read_wait`` (close() from another thread)."""
        ...


class FramedChannel(Channel):
    """A channel of frames over a byte stream (see the module docstring)."""

    _link: ByteLink

    def __init__(
        self,
        url: str,
        link: ByteLink,
        *,
        max_message_size: int,
        expect_hello: bool,
        in_use: bool = True,
    ) -> None:
        self._rbuf = bytearray(READ_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._rstart = 0
        self._rend = 0
        self._unsent = b""  # the tail of a frame the kernel has not taken yet
        self._hello_pending = expect_hello
        self._read = link.read
        self._read_wait = link.read_wait
        self._write = link.write
        self._writev = link.writev
        self._can_block = link.can_block
        self._rfd = link.read_fd
        self._wfd = link.write_fd
        self._waker = link.waker
        self._start(url, link, max_message_size, in_use=in_use)
        self._refresh()

    # The fast paths test one attribute each; these keep them right.
    def _refresh(self) -> None:
        ready = self._in_use and not self._closed
        self._limit = self.max_message_size if ready and not self._hello_pending else -1
        self._send_ready = ready and not self._unsent and self._ending is None
        # An empty buffer and timeout=None: one read that sleeps in the kernel.
        self._wait_reads = self._limit >= 0 and self._can_block and not self._unsent

    def _has_tail(self) -> bool:
        return bool(self._unsent)

    def _flush_nowait(self) -> None:
        self._flush(None)

    # Sending.

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        if timeout is not None:
            check_timeout(timeout)
        if type(data) is bytes:
            size = len(data)
        else:
            data = check_bytes_like(data)
            size = len(data)
        if size > self.max_message_size:
            raise self._refuse(size)
        inside = self._inside
        inside[SEND] = True
        try:
            if not self._send_ready:
                self._send_slow(data, size, timeout)
                return
            try:
                if size < JOIN_BELOW:
                    sent = self._write(_pack_header(size) + data)
                else:
                    sent = self._writev((_pack_header(size), data))
            except BlockingIOError:
                sent = 0
            except (BrokenPipeError, ConnectionResetError):
                raise self._peer_gone_on_send() from None
            if sent != size + 4:
                self._send_rest(
                    data, size, sent, _FOREVER if timeout is None else Deadline(timeout)
                )
        finally:
            inside[SEND] = False

    def _send_slow(self, data: Any, size: int, timeout: float | None) -> None:
        deadline = Deadline(timeout)
        self._ready_to_send()
        if self._unsent:
            self._flush(deadline)
        self._send_rest(data, size, 0, deadline)

    def _send_rest(self, data: Any, size: int, sent: int, deadline: Deadline) -> None:
        """Write the frame from offset ``sent`` on, waiting for room as allowed."""
        header = _pack_header(size)
        total = size + 4
        payload = memoryview(data)
        try:
            while sent < total:
                rest: list[Any] = [header[sent:], payload] if sent < 4 else [payload[sent - 4 :]]
                try:
                    sent += self._writev(rest)
                    continue
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    raise self._peer_gone_on_send() from None
                if sent and deadline.timeout == 0:
                    break
                if not self._wait_writable(deadline):
                    if not sent:  # nothing of this message went out
                        raise deadline.error(f"sending on {self.describe()}")
                    break
        except IPCError:
            raise  # the peer is gone or this end closed: nothing to keep
        except BaseException:
            if 0 < sent < total:  # e.g. Ctrl-C while waiting: the frame stays whole
                self._keep_tail(header, payload, sent)
            raise
        if sent < total:
            self._keep_tail(header, payload, sent)

    def _keep_tail(self, header: bytes, payload: memoryview, sent: int) -> None:
        """The frame is committed: keep its tail (a copy, as the caller may reuse
        its buffer) to be written before anything else."""
        self._unsent = header[sent:] + bytes(payload) if sent < 4 else bytes(payload[sent - 4 :])
        self._refresh()

    def _wait_writable(self, deadline: Deadline) -> bool:
        """Wait until the stream takes more bytes; False when time ran out."""
        return bool(self._waker.wait(((self._wfd, _POLLOUT),), deadline.remaining()))

    def _flush(self, deadline: Deadline | None) -> None:
        """Write the pending tail; wait for room unless ``deadline`` is None."""
        while self._unsent:
            try:
                written = self._write(self._unsent)
            except BlockingIOError:
                written = 0
            except (BrokenPipeError, ConnectionResetError):
                self._unsent = b""
                self._refresh()
                raise self._peer_gone_on_send() from None
            self._unsent = self._unsent[written:]
            if not self._unsent or deadline is None:
                break
            if not self._wait_writable(deadline):
                raise deadline.error(f"sending on {self.describe()}")
        self._refresh()

    def _peer_gone_on_send(self) -> IPCError:
        """The peer's end is gone: EndOfChannel if it said goodbye, else PeerDied.

        The goodbye is looked for among the bytes the peer sent, which are read
        ahead but not consumed: every message before it is still received.
        """
        if self._ending is not None:
            return self._ended()
        with contextlib.suppress(OSError):
            while self._rend - self._rstart < _GOODBYE_SEARCH_LIMIT:
                self._make_room(_GOODBYE_SEARCH_LIMIT)
                count = self._read(self._rview[self._rend :])
                if count == 0:
                    break
                self._rend += count
        position = self._rstart
        while self._rend - position >= 4:
            (length,) = _unpack_header(self._rbuf, position)
            if length == GOODBYE:
                return self._end(EndOfChannel, CLOSED_BY_PEER)
            if length == HELLO:
                position += 8
            elif length <= self.max_message_size:
                position += 4 + length
            else:
                break
        return self._end(PeerDied, _died(False))

    # Receiving.

    def receive(self, *, timeout: float | None = None) -> bytes:
        if timeout is not None:
            check_timeout(timeout)
        start = self._rstart
        if self._rend - start >= 4:
            (size,) = _unpack_header(self._rbuf, start)
            end = start + 4 + size
            if size <= self._limit and end <= self._rend:
                self._rstart = end
                return bytes(self._rview[start + 4 : end])
        inside = self._inside
        inside[RECEIVE] = True
        try:
            if start == self._rend and timeout is None and self._wait_reads:
                # Nothing buffered (the usual case of a ping-pong): one read that
                # sleeps in the kernel, then the frame if it came whole.
                try:
                    count = self._read_wait(self._rview)
                except ConnectionResetError:
                    count = 0
                self._rstart = 0
                self._rend = count
                if count >= 4:
                    (size,) = _unpack_header(self._rbuf, 0)
                    if size <= self._limit and size + 4 <= count:
                        self._rstart = size + 4
                        return bytes(self._rview[4 : size + 4])
            self._ready_to_receive()
            deadline = _FOREVER if timeout is None else Deadline(timeout)
            size = self._next_header(deadline)
            if self._rend - self._rstart < 4 + size:
                self._fill(4 + size, deadline)
            start = self._rstart
            self._rstart = end = start + 4 + size
            return bytes(self._rview[start + 4 : end])
        finally:
            inside[RECEIVE] = False

    def receive_into(self, buffer: Buffer, *, timeout: float | None = None) -> int:
        view = check_bytes_like(buffer, "buffer")
        if view.readonly:
            raise TypeError("buffer must be writable")
        if timeout is not None:
            check_timeout(timeout)
        start = self._rstart
        if self._rend - start >= 4:
            size: int = _unpack_header(self._rbuf, start)[0]
            end = start + 4 + size
            if size <= self._limit and end <= self._rend and size <= len(view):
                view[:size] = self._rview[start + 4 : end]
                self._rstart = end
                return size
        inside = self._inside
        inside[RECEIVE] = True
        try:
            self._ready_to_receive()
            deadline = Deadline(timeout)
            size = self._next_header(deadline)
            if size > len(view):
                raise MessageTooLarge(
                    f"{self.describe()}: the next message has {size} bytes, "
                    f"the buffer only {len(view)} (the message is kept)"
                )
            if self._rend - self._rstart < 4 + size:
                if size >= DIRECT_READ:
                    self._read_direct(view, size, deadline)
                    return size
                self._fill(4 + size, deadline)
            start = self._rstart
            view[:size] = self._rview[start + 4 : start + 4 + size]
            self._rstart = start + 4 + size
            return size
        finally:
            inside[RECEIVE] = False

    def _read_some(self, view: memoryview, deadline: Deadline) -> int:
        """One read into ``view``, waiting as the deadline allows; 0 at end of stream."""
        while True:
            try:
                if deadline.blocking and self._can_block and not self._unsent:
                    count = self._read_wait(view)
                else:
                    count = self._read(view)
            except BlockingIOError:
                count = -1  # wait below, outside the handler (Ctrl-C then shows alone)
            except ConnectionResetError:
                count = 0
            if self._closed:  # woken by close(), or closed while we read
                raise self._closed_error()
            if count >= 0:
                return count
            self._wait_readable(deadline)

    def _read_direct(self, view: memoryview, size: int, deadline: Deadline) -> None:
        """Read the rest of a large message straight into ``view``.

        If the wait is cut short, what arrived goes back into the read-ahead
        buffer, so the message is neither lost nor torn.
        """
        got = self._rend - self._rstart - 4
        view[:got] = self._rview[self._rstart + 4 : self._rend]
        self._rstart = self._rend = 0
        try:
            while got < size:
                count = self._read_some(view[got:size], deadline)
                if count == 0:
                    raise self._end(PeerDied, _died(True))
                got += count
        except BaseException:
            self._rstart = self._rend = 0
            self._make_room(4 + got)
            self._rview[0:4] = _pack_header(size)
            self._rview[4 : 4 + got] = view[:got]
            self._rend = 4 + got
            raise

    def _next_header(self, deadline: Deadline) -> int:
        """Wait for the next data frame's header and return its payload size.

        Handles the greeting, the goodbye and lengths over the maximum; the
        header stays in the buffer until the whole frame is consumed.
        """
        while True:
            if self._ending is not None:
                raise self._ended()
            available = self._rend - self._rstart
            if available < 4:
                self._fill(4, deadline)
                continue
            size: int = _unpack_header(self._rbuf, self._rstart)[0]
            if self._hello_pending:
                if size != HELLO:
                    raise self._end(IPCError, _garbage("no greeting"))
                if available < 8:
                    self._fill(8, deadline)
                    continue
                if self._rbuf[self._rstart + 4 : self._rstart + 8] != HELLO_MAGIC:
                    raise self._end(IPCError, _garbage("a wrong greeting"))
                self._rstart += 8
                self._hello_pending = False
                self._refresh()
                continue
            if size <= self.max_message_size:
                return size
            if size == GOODBYE:
                raise self._end(EndOfChannel, CLOSED_BY_PEER)
            raise self._end(
                MessageTooLarge,
                f"the peer announced a {size}-byte message, more than the maximum of "
                f"{self.max_message_size} bytes (the channel is unusable now)",
            )

    def _make_room(self, need: int) -> None:
        """Make room to read more of the ``need`` bytes wanted from ``_rstart`` on.

        Compacts the buffer; grows it only when it is full of bytes that arrived,
        by at most what it holds and GROW_STEP, never to a length merely announced.
        """
        if self._rend < len(self._rbuf):
            return
        available = self._rend - self._rstart
        if available >= need:
            return
        if self._rstart:
            self._rbuf[:available] = self._rbuf[self._rstart : self._rend]
            self._rstart, self._rend = 0, available
            return
        grow = min(need - available, max(READ_BUFFER, min(available, GROW_STEP)))
        bigger = bytearray(available + grow)
        bigger[:available] = self._rview[:available]
        self._rbuf = bigger
        self._rview = memoryview(bigger)

    def _fill(self, need: int, deadline: Deadline) -> None:
        """Read until at least ``need`` bytes are buffered from ``_rstart`` on."""
        while self._rend - self._rstart < need:
            self._make_room(need)
            count = self._read_some(self._rview[self._rend :], deadline)
            if count == 0:
                raise self._end(PeerDied, _died(self._rend > self._rstart))
            self._rend += count

    def _wait_readable(self, deadline: Deadline) -> None:
        what = f"receiving on {self.describe()}"
        while True:
            if not self._unsent:
                if not self._waker.wait(((self._rfd, _POLLIN),), deadline.remaining()):
                    raise deadline.error(what)
                return
            # A committed tail is still pending: keep writing it while we wait,
            # or a peer waiting for it would never answer.
            ready = self._waker.wait(
                ((self._rfd, _POLLIN), (self._wfd, _POLLOUT)), deadline.remaining()
            )
            if not ready:
                raise deadline.error(what)
            if ready.get(self._wfd, 0) & _WRITABLE:
                with contextlib.suppress(IPCError):
                    self._flush(None)
            if ready.get(self._rfd, 0) & _READABLE:
                return

    # Closing.

    def _writers_inside(self) -> bool:
        # A receiver writes only to finish a committed tail; without one, the
        # goodbye may go out before it is woken.
        return self._others(SEND) or (self._others(RECEIVE) and bool(self._unsent))

    def _interrupt(self) -> None:
        if self._others(RECEIVE):
            self._link.wake_reader()

    def _say_goodbye(self) -> None:
        """Finish a pending tail and send the goodbye, without waiting.

        If the kernel's buffer is full, it is enlarged once (pipe size, socket
        send buffer) to fit them; if even that fails the peer will see
        :class:`PeerDied` instead of :class:`EndOfChannel`.
        """
        with contextlib.suppress(OSError, IPCError):
            for attempt in range(2):
                if self._unsent:
                    self._flush(None)
                if not self._unsent:
                    try:
                        self._write(GOODBYE_FRAME)  # a torn goodbye: the peer sees PeerDied
                        return
                    except BlockingIOError:
                        pass
                if attempt == 0 and not self._link.grow_write_buffer():
                    return

    def _check_passable(self) -> None:
        self._check_open()
        if self._rend > self._rstart or self._unsent:
            raise ValueError(
                f"cannot pass {self.describe()} to another process while messages are "
                "buffered in it"
            )

    @classmethod
    def _rebuilt(cls, url: str, link: Any, max_message_size: int) -> FramedChannel:
        return cls(url, link, max_message_size=max_message_size, expect_hello=False)


passable_by_multiprocessing(FramedChannel)
marks_calls(FramedChannel.send, FramedChannel.receive, FramedChannel.receive_into)


def _garbage(what: str) -> str:
    return f"the peer sent {what}; it is not a unixipc channel (the channel is unusable now)"


def _died(mid_message: bool) -> str:
    where = "in the middle of a message" if mid_message else "without closing the channel"
    return f"the peer went away {where} (its process died)"
