"""Channels over byte streams: length-prefixed frames on pipes, FIFOs and sockets (private).

Frame: a 4-byte big-endian length, then that many bytes. Two lengths are
reserved: ``HELLO`` (followed by a 4-byte magic, the first frame a socket peer
sends, so that a stranger's bytes are refused) and ``GOODBYE`` (sent by
``close()``, so that the receiver tells a clean close, :class:`EndOfChannel`, from
a peer that went away without closing, :class:`PeerDied`). A length is checked
against ``max_message_size`` before anything is allocated for it.

Hot path: the descriptors are non-blocking; ``send`` makes one system call
(header and payload joined when small, ``sendmsg``/``writev`` of both otherwise);
``receive`` reads ahead into a preallocated buffer, so one system call usually
brings in several messages, and ``receive_into`` reads a large message directly
into the caller's buffer.

Who says goodbye: an end says goodbye when closed once it has been used in this
process (a send, a receive, or entering ``with``) since it was made by
``channel_pair`` or since a fork; a channel made by connect/accept, or received
by a ``multiprocessing`` child, is in use from the start (the copy that was
passed away is not). So every process can close the ends it does not use (the
pipe idiom) without ending the conversation.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable, Sequence
from multiprocessing import reduction
from typing import Any

from ._channel_base import (
    Channel,
    Listener,
    closed_error,
    goodbye_error,
    too_large,
)
from ._deadline import Deadline, check_timeout, wait_fd
from ._names import check_bytes_like
from ._stream import _blocking_sigpipe_is_fatal
from .errors import IPCError, MessageTooLarge, PeerDied, from_os_error

__all__ = (
    "MAX_FRAME",
    "PipeChannel",
    "SocketChannel",
    "SocketListener",
    "StreamChannel",
)

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

#: Read-ahead buffer; grows (once) to hold a larger message whole.
READ_BUFFER = 64 * 1024
# Up to this size one joined buffer is cheaper than a two-buffer sendmsg/writev
# (measured: ~0.25 us less per 64-byte message); above it the copy costs more.
JOIN_BELOW = 4096
# receive_into reads messages at least this large straight into the caller's buffer.
DIRECT_READ = 64 * 1024
# When a send finds the peer gone, read at most this much looking for its goodbye.
_GOODBYE_SEARCH_LIMIT = 8 * 1024 * 1024


class StreamChannel(Channel):
    """A channel of frames over a byte stream (see the module docstring)."""

    kind = "stream channel"

    _rfd: int = -1
    _wfd: int = -1

    def __init__(
        self,
        url: str,
        read_fd: int,
        write_fd: int,
        *,
        max_message_size: int,
        expect_hello: bool,
        speaks: bool,
    ) -> None:
        self.url = url
        self.max_message_size = max_message_size
        self._rfd = read_fd
        self._wfd = write_fd
        self._rbuf = bytearray(READ_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._rstart = 0
        self._rend = 0
        self._unsent = b""  # the tail of a frame the kernel has not taken yet
        self._hello_pending = expect_hello
        self._track(speaks)
        self._opened(url)
        self._refresh()

    # The fast paths test one attribute each; these keep them right.
    def _refresh(self) -> None:
        ready = self._speaks and not self._closed
        self._limit = self.max_message_size if ready and not self._hello_pending else -1
        self._send_ready = ready and not self._unsent and self._ending is None
        # An empty buffer and timeout=None: one read that sleeps in the kernel.
        self._wait_reads = self._limit >= 0 and self._can_block and not self._unsent

    def _read_fd(self) -> int | None:
        return self._rfd

    def _write_fd(self) -> int | None:
        return self._wfd

    def _has_tail(self) -> bool:
        return bool(self._unsent)

    def _flush_nowait(self) -> None:
        self._flush(None)

    # I/O primitives, one set per transport. The first three never block
    # (BlockingIOError instead); with _can_block, the _wait ones sleep in the
    # kernel until they can make progress: one system call for timeout=None.
    _can_block = False
    # With _can_block, frames up to this size go out in one write that sleeps in
    # the kernel; larger ones in non-blocking writes and polls (see the pipes).
    _blocking_send_max = MAX_FRAME

    def _read_into(self, view: memoryview) -> int:
        raise NotImplementedError  # pragma: no cover

    def _write(self, data: Any) -> int:
        raise NotImplementedError  # pragma: no cover

    def _writev(self, buffers: Sequence[Any]) -> int:
        raise NotImplementedError  # pragma: no cover

    def _read_into_wait(self, view: memoryview) -> int:
        raise NotImplementedError  # pragma: no cover

    def _write_wait(self, data: Any) -> int:
        raise NotImplementedError  # pragma: no cover

    def _writev_wait(self, buffers: Sequence[Any]) -> int:
        raise NotImplementedError  # pragma: no cover

    def _grow_write_buffer(self) -> bool:
        """Make the kernel's buffer larger (to fit a goodbye); False if it cannot."""
        raise NotImplementedError  # pragma: no cover

    def fileno(self) -> int:
        """The descriptor that becomes readable when a message may be received.

        The channel reads ahead: after the descriptor is reported readable, call
        ``receive(timeout=0)`` until it raises :class:`WouldBlock`.

        Raises:
            ClosedResourceError: this channel is closed.
        """
        if self._closed:
            raise closed_error(self)
        return self._rfd

    # Sending.

    def send(self, data: Any, *, timeout: float | None = None) -> None:
        """Send ``data`` (any bytes-like object) as one message.

        Returns once the message is handed to the kernel. If time runs out after
        part of a large message went out, the rest is kept and written before
        anything else (by the next ``send``, while receiving, or by ``close``):
        a message is never cut or sent twice; :class:`WouldBlock` and
        :class:`TimeoutExpired` mean that nothing of it was sent.

        Raises:
            MessageTooLarge: larger than :attr:`max_message_size` (nothing sent).
            WouldBlock: ``timeout=0`` and there is no room now.
            TimeoutExpired: no room within ``timeout`` seconds.
            EndOfChannel: the peer closed the channel.
            PeerDied: the peer went away without closing.
            ClosedResourceError: this channel is closed.
        """
        if timeout is not None:
            check_timeout(timeout)
        if type(data) is bytes:
            size = len(data)
        else:
            data = check_bytes_like(data)
            size = len(data)
        if size > self.max_message_size:
            if self._closed:
                raise closed_error(self)
            raise too_large(self, size)
        if self._send_ready:
            try:
                if timeout is None and self._can_block and size <= self._blocking_send_max:
                    if size < JOIN_BELOW:
                        sent = self._write_wait(_pack_header(size) + data)
                    else:
                        sent = self._writev_wait((_pack_header(size), data))
                elif size < JOIN_BELOW:
                    sent = self._write(_pack_header(size) + data)
                else:
                    sent = self._writev((_pack_header(size), data))
            except BlockingIOError:
                sent = 0
            except (BrokenPipeError, ConnectionResetError):
                raise self._peer_gone_on_send() from None
            if sent == size + 4:
                return
            self._send_rest(data, size, sent, _FOREVER if timeout is None else Deadline(timeout))
            return
        if self._closed:
            raise closed_error(self)
        self._send_slow(data, size, timeout)

    def _send_slow(self, data: Any, size: int, timeout: float | None) -> None:
        deadline = Deadline(timeout)
        if not self._speaks:
            self._set_speaks(True)
        if self._ending is not None:
            raise self._ended()
        if self._unsent:
            self._flush(deadline)
        self._send_rest(data, size, 0, deadline)

    def _send_rest(self, data: Any, size: int, sent: int, deadline: Deadline) -> None:
        """Write the frame from offset ``sent`` on, waiting for room as allowed."""
        header = _pack_header(size)
        total = size + 4
        payload = memoryview(data)
        may_wait_in_kernel = deadline.blocking and self._can_block and not self._unsent
        largest_blocking_write = self._blocking_send_max + HEADER.size
        try:
            while sent < total:
                wait_in_kernel = may_wait_in_kernel and total - sent <= largest_blocking_write
                rest = [header[sent:], payload] if sent < 4 else [payload[sent - 4 :]]
                try:
                    sent += self._writev_wait(rest) if wait_in_kernel else self._writev(rest)
                    continue
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    raise self._peer_gone_on_send() from None
                if sent and deadline.timeout == 0:
                    break
                try:
                    wait_fd(self._wfd, select.POLLOUT, deadline, f"sending on {self.describe()}")
                except IPCError:
                    if not sent:
                        raise  # nothing of this message went out
                    break
        except IPCError:
            raise  # the peer is gone: nothing to keep
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
            if not self._unsent:
                break
            if deadline is None:
                return
            wait_fd(self._wfd, select.POLLOUT, deadline, f"sending on {self.describe()}")
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
                self._make_room(self._rend - self._rstart + READ_BUFFER)
                count = self._read_into(self._rview[self._rend :])
                if count == 0:
                    break
                self._rend += count
        position = self._rstart
        while self._rend - position >= 4:
            (length,) = _unpack_header(self._rbuf, position)
            if length == GOODBYE:
                return goodbye_error(self)
            if length == HELLO:
                position += 8
            elif length <= self.max_message_size:
                position += 4 + length
            else:
                break
        return PeerDied(f"{self.describe()}: the peer went away without closing the channel")

    # Receiving.

    def receive(self, *, timeout: float | None = None) -> bytes:
        """Wait for the next message and return it.

        Raises:
            WouldBlock: ``timeout=0`` and no message is there.
            TimeoutExpired: no message arrived within ``timeout`` seconds.
            EndOfChannel: the peer closed the channel and every message it sent
                has been received.
            PeerDied: the peer went away without closing.
            MessageTooLarge: the peer announced a message larger than
                :attr:`max_message_size` (the channel is unusable from then on).
            IPCError: the peer sent something that is not a frame.
            ClosedResourceError: this channel is closed.
        """
        if timeout is not None:
            check_timeout(timeout)
        start = self._rstart
        if self._rend - start >= 4:
            (size,) = _unpack_header(self._rbuf, start)
            end = start + 4 + size
            if size <= self._limit and end <= self._rend:
                self._rstart = end
                return bytes(self._rview[start + 4 : end])
        elif start == self._rend and timeout is None and self._wait_reads:
            # Nothing buffered (the usual case of a ping-pong): one read that sleeps
            # in the kernel, then the frame if it came whole.
            try:
                count = self._read_into_wait(self._rview)
            except ConnectionResetError:
                count = 0
            self._rstart = 0
            self._rend = count
            if count >= 4:
                (size,) = _unpack_header(self._rbuf, 0)
                if size <= self._limit and size + 4 <= count:
                    self._rstart = size + 4
                    return bytes(self._rview[4 : size + 4])
        if self._closed:
            raise closed_error(self)
        deadline = _FOREVER if timeout is None else Deadline(timeout)
        size = self._next_header(deadline)
        if self._rend - self._rstart < 4 + size:
            self._fill(4 + size, deadline)
        start = self._rstart
        self._rstart = end = start + 4 + size
        return bytes(self._rview[start + 4 : end])

    def receive_into(self, buffer: Any, *, timeout: float | None = None) -> int:
        """Receive the next message into the writable bytes-like ``buffer``; return its size.

        Raises:
            MessageTooLarge: the next message does not fit in ``buffer``; it is
                kept for a later call.
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied, IPCError,
            ClosedResourceError: as :meth:`receive`.
        """
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
        if self._closed:
            raise closed_error(self)
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
                try:
                    if deadline.blocking and self._can_block and not self._unsent:
                        count = self._read_into_wait(view[got:size])
                    else:
                        count = self._read_into(view[got:size])
                except BlockingIOError:
                    self._wait_readable(deadline)
                    continue
                except ConnectionResetError:
                    count = 0
                if count == 0:
                    raise self._end(PeerDied, self._died_message(True))
                got += count
        except BaseException:
            self._make_room(4 + got)
            self._rview[0:4] = _pack_header(size)
            self._rview[4 : 4 + got] = view[:got]
            self._rstart, self._rend = 0, 4 + got
            raise

    def _next_header(self, deadline: Deadline) -> int:
        """Wait for the next data frame's header and return its payload size.

        Handles the greeting, the goodbye and lengths over the maximum; the
        header stays in the buffer until the whole frame is consumed.
        """
        if not self._speaks:
            self._set_speaks(True)
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
                    raise self._end(IPCError, self._garbage_message("no greeting"))
                if available < 8:
                    self._fill(8, deadline)
                    continue
                if self._rbuf[self._rstart + 4 : self._rstart + 8] != HELLO_MAGIC:
                    raise self._end(IPCError, self._garbage_message("a wrong greeting"))
                self._rstart += 8
                self._hello_pending = False
                self._refresh()
                continue
            if size <= self.max_message_size:
                return size
            if size == GOODBYE:
                raise goodbye_error(self)
            raise self._end(
                MessageTooLarge,
                f"{self.describe()}: the peer announced a {size}-byte message, more than "
                f"the maximum of {self.max_message_size} bytes (the channel is unusable now)",
            )

    def _garbage_message(self, what: str) -> str:
        return (
            f"{self.describe()}: the peer sent {what}; it is not a unixipc channel "
            "(the channel is unusable now)"
        )

    def _died_message(self, mid_message: bool) -> str:
        where = "in the middle of a message" if mid_message else "without closing the channel"
        return f"{self.describe()}: the peer went away {where} (its process died?)"

    def _make_room(self, need: int) -> None:
        """Make the read-ahead buffer hold ``need`` bytes from ``_rstart`` on."""
        if self._rstart + need <= len(self._rbuf):
            return
        available = self._rend - self._rstart
        if need > len(self._rbuf):
            bigger = bytearray(need + READ_BUFFER)
            bigger[:available] = self._rview[self._rstart : self._rend]
            self._rbuf = bigger
            self._rview = memoryview(bigger)
        else:
            self._rbuf[:available] = self._rbuf[self._rstart : self._rend]
        self._rstart, self._rend = 0, available

    def _fill(self, need: int, deadline: Deadline) -> None:
        """Read until at least ``need`` bytes are buffered from ``_rstart`` on."""
        self._make_room(need)
        while self._rend - self._rstart < need:
            try:
                if deadline.blocking and self._can_block and not self._unsent:
                    count = self._read_into_wait(self._rview[self._rend :])
                else:
                    count = self._read_into(self._rview[self._rend :])
            except BlockingIOError:
                self._wait_readable(deadline)
                continue
            except ConnectionResetError:
                count = 0
            if count == 0:
                raise self._end(PeerDied, self._died_message(self._rend > self._rstart))
            self._rend += count

    def _wait_readable(self, deadline: Deadline) -> None:
        what = f"receiving on {self.describe()}"
        if not self._unsent:
            wait_fd(self._rfd, select.POLLIN, deadline, what)
            return
        # A committed tail is still pending: keep writing it while we wait,
        # or a peer waiting for it would never answer.
        poller = select.poll()
        poller.register(self._rfd, select.POLLIN)
        if self._wfd != self._rfd:
            poller.register(self._wfd, select.POLLOUT)
        else:
            poller.register(self._rfd, select.POLLIN | select.POLLOUT)
        while True:
            ready = dict(poller.poll(deadline.poll_ms()))
            if ready.get(self._wfd, 0) & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                with contextlib.suppress(IPCError):
                    self._flush(None)
                if not self._unsent:
                    poller.unregister(self._wfd)
                    if self._wfd == self._rfd:
                        poller.register(self._rfd, select.POLLIN)
            if ready.get(self._rfd, 0) & (select.POLLIN | select.POLLHUP | select.POLLERR):
                return
            if deadline.expired() or deadline.timeout == 0:
                raise deadline.error(what)

    # Closing.

    def _release(self) -> None:
        self._untrack()
        try:
            if self._speaks and self._ending is None:
                self._say_goodbye()
        finally:
            self._close_descriptors()
            self._refresh()

    def _close_descriptors(self) -> None:
        raise NotImplementedError  # pragma: no cover

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
                        if self._write(GOODBYE_FRAME) == len(GOODBYE_FRAME):
                            return
                        return  # a torn goodbye: the peer sees a cut frame, PeerDied
                    except BlockingIOError:
                        pass
                if attempt == 0 and not self._grow_write_buffer():
                    return

    # Passing to multiprocessing children.

    def _check_passable(self) -> None:
        self._check_open()
        if self._rend > self._rstart or self._unsent:
            raise ValueError(
                f"cannot pass {self.describe()} to another process while messages are "
                "buffered in it"
            )

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            f"cannot pickle {self.describe()}: pass it to a multiprocessing child instead"
        )


def _call_without_sigpipe(call: Callable[[int, Any], int], fd: int, data: Any) -> int:
    """``call(fd, data)`` (os.write/os.writev) turning a broken pipe into an exception.

    Python ignores SIGPIPE, so this is a plain call; if a program restored the
    default action, SIGPIPE is blocked in this thread for the call and the one
    it raised is consumed, never delivered.
    """
    if not _blocking_sigpipe_is_fatal():
        return call(fd, data)
    already = signal.SIGPIPE in signal.sigpending()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        return call(fd, data)
    except BrokenPipeError:
        if not already and signal.SIGPIPE in signal.sigpending():
            signal.sigtimedwait({signal.SIGPIPE}, 0)
        raise
    finally:
        if signal.SIGPIPE not in old:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _pwrite_nowait(fd: int, buffers: Sequence[Any]) -> int:
    return os.pwritev(fd, buffers, -1, os.RWF_NOWAIT)


def _pipes_take_rwf_nowait() -> bool:
    """Whether this kernel honours RWF_NOWAIT on pipes (Linux 5.x and later)."""
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None:
        return False
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        os.preadv(read_fd, (bytearray(1),), -1, flag)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(read_fd)
        os.close(write_fd)
    return False  # pragma: no cover - a read of an empty pipe cannot succeed


_PIPE_NOWAIT = _pipes_take_rwf_nowait()


class PipeChannel(StreamChannel):
    """A channel over two one-way descriptors: two pipes, or two FIFOs."""

    kind = "pipe channel"

    def _read_into(self, view: memoryview) -> int:
        return os.readv(self._rfd, (view,))

    def _write(self, data: Any) -> int:
        return _call_without_sigpipe(os.write, self._wfd, data)

    def _writev(self, buffers: Sequence[Any]) -> int:
        return _call_without_sigpipe(os.writev, self._wfd, buffers)

    def _grow_write_buffer(self) -> bool:
        try:
            size = fcntl.fcntl(self._wfd, fcntl.F_GETPIPE_SZ)
            fcntl.fcntl(self._wfd, fcntl.F_SETPIPE_SZ, size * 2)
        except OSError:
            return False
        return True

    def _close_descriptors(self) -> None:
        rfd, wfd, self._rfd, self._wfd = self._rfd, self._wfd, -1, -1
        try:
            os.close(wfd)
        finally:
            os.close(rfd)


class NowaitPipeChannel(PipeChannel):
    """A channel over two anonymous pipes kept blocking: a receive or send with
    ``timeout=None`` is one system call that sleeps in the kernel, and the tries
    that must not wait say RWF_NOWAIT (anonymous pipes only: FIFOs refuse it)."""

    _can_block = True
    # Only frames of at most PIPE_BUF bytes go out in one blocking write: such a write
    # is all or nothing. A longer one that a signal cuts short returns a partial count,
    # lost if the handler raises (Ctrl-C) as the call returns, which tears the frame;
    # and one blocking write of a frame larger than the pipe sleeps in the kernel at
    # every pipeful until the reader has drained the pipe, so that writer and reader
    # never overlap (measured cross-core, 256 KiB: 1.0 GB/s, and 2.7 GB/s with
    # non-blocking writes and polls).
    _blocking_send_max = select.PIPE_BUF - HEADER.size

    def __init__(self, url: str, read_fd: int, write_fd: int, **options: Any) -> None:
        os.set_blocking(read_fd, True)
        os.set_blocking(write_fd, True)
        super().__init__(url, read_fd, write_fd, **options)

    def _read_into(self, view: memoryview) -> int:
        return os.preadv(self._rfd, (view,), -1, os.RWF_NOWAIT)

    def _write(self, data: Any) -> int:
        return _call_without_sigpipe(_pwrite_nowait, self._wfd, (data,))

    def _writev(self, buffers: Sequence[Any]) -> int:
        return _call_without_sigpipe(_pwrite_nowait, self._wfd, buffers)

    def _read_into_wait(self, view: memoryview) -> int:
        return os.readv(self._rfd, (view,))

    def _write_wait(self, data: Any) -> int:
        return _call_without_sigpipe(os.write, self._wfd, data)

    def _writev_wait(self, buffers: Sequence[Any]) -> int:
        return _call_without_sigpipe(os.writev, self._wfd, buffers)


def _rebuild_pipe_channel(
    cls: type[PipeChannel], read_dup: Any, write_dup: Any, url: str, max_message_size: int
) -> PipeChannel:
    return cls(
        url,
        read_dup.detach(),
        write_dup.detach(),
        max_message_size=max_message_size,
        expect_hello=False,
        speaks=True,  # the receiving process owns it now
    )


def _reduce_pipe_channel(channel: PipeChannel) -> tuple[Any, ...]:
    channel._check_passable()
    channel._set_speaks(False)  # given away: its close here must not end the conversation
    return (
        _rebuild_pipe_channel,
        (
            type(channel),
            reduction.DupFd(channel._rfd),
            reduction.DupFd(channel._wfd),
            channel.url,
            channel.max_message_size,
        ),
    )


reduction.register(PipeChannel, _reduce_pipe_channel)
reduction.register(NowaitPipeChannel, _reduce_pipe_channel)


_SEND_NOWAIT = socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT


class SocketChannel(StreamChannel):
    """A channel over a connected stream socket (socketpair, UNIX, TCP)."""

    kind = "socket channel"

    def __init__(
        self,
        url: str,
        sock: socket.socket,
        *,
        max_message_size: int,
        expect_hello: bool,
        speaks: bool,
    ) -> None:
        sock.setblocking(True)  # tries that must not wait say MSG_DONTWAIT
        self._sock = sock
        # One blocking send only where the kernel makes it all or nothing (see the
        # pipes): on a UNIX socket, a frame that fits one buffer of the kernel's
        # (about 32 KiB); TCP may take part of any frame before it waits. Other frames
        # go out in non-blocking sends and polls, at the same speed (measured).
        self._blocking_send_max = 32 * 1024 - HEADER.size if sock.family == socket.AF_UNIX else -1
        self._recv_into = sock.recv_into
        self._send = sock.send
        self._sendmsg = sock.sendmsg
        fd = sock.fileno()
        super().__init__(
            url,
            fd,
            fd,
            max_message_size=max_message_size,
            expect_hello=expect_hello,
            speaks=speaks,
        )

    _can_block = True

    def _read_into(self, view: memoryview) -> int:
        return self._recv_into(view, 0, socket.MSG_DONTWAIT)

    def _write(self, data: Any) -> int:
        return self._send(data, _SEND_NOWAIT)

    def _writev(self, buffers: Sequence[Any]) -> int:
        return self._sendmsg(buffers, (), _SEND_NOWAIT)

    def _read_into_wait(self, view: memoryview) -> int:
        return self._recv_into(view)

    def _write_wait(self, data: Any) -> int:
        return self._send(data, socket.MSG_NOSIGNAL)

    def _writev_wait(self, buffers: Sequence[Any]) -> int:
        return self._sendmsg(buffers, (), socket.MSG_NOSIGNAL)

    def _grow_write_buffer(self) -> bool:
        try:
            size = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)  # doubles it
        except OSError:
            return False
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > size

    def _close_descriptors(self) -> None:
        self._rfd = self._wfd = -1
        self._sock.close()


def _rebuild_socket_channel(dup: Any, url: str, max_message_size: int) -> SocketChannel:
    sock = socket.socket(fileno=dup.detach())
    sock.setblocking(False)
    return SocketChannel(
        url, sock, max_message_size=max_message_size, expect_hello=False, speaks=True
    )


def _reduce_socket_channel(channel: SocketChannel) -> tuple[Any, ...]:
    channel._check_passable()
    channel._set_speaks(False)
    return (
        _rebuild_socket_channel,
        (reduction.DupFd(channel._sock.fileno()), channel.url, channel.max_message_size),
    )


reduction.register(SocketChannel, _reduce_socket_channel)


_PIPE_FLAGS = os.O_CLOEXEC if _PIPE_NOWAIT else os.O_NONBLOCK | os.O_CLOEXEC


def pipe_pair(max_message_size: int) -> tuple[PipeChannel, PipeChannel]:
    """Two channel ends over two pipes (one per direction)."""
    try:
        a_to_b = os.pipe2(_PIPE_FLAGS)
    except OSError as error:
        raise from_os_error(error, "pipe", "pipe(2)") from None
    try:
        b_to_a = os.pipe2(_PIPE_FLAGS)
    except OSError as error:
        os.close(a_to_b[0])
        os.close(a_to_b[1])
        raise from_os_error(error, "pipe", "pipe(2)") from None
    cls = NowaitPipeChannel if _PIPE_NOWAIT else PipeChannel
    return (
        cls(
            "pipe:",
            b_to_a[0],
            a_to_b[1],
            max_message_size=max_message_size,
            expect_hello=False,
            speaks=False,
        ),
        cls(
            "pipe:",
            a_to_b[0],
            b_to_a[1],
            max_message_size=max_message_size,
            expect_hello=False,
            speaks=False,
        ),
    )


def socket_pair(max_message_size: int) -> tuple[SocketChannel, SocketChannel]:
    """Two channel ends over a UNIX stream socketpair."""
    try:
        first, second = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as error:
        raise from_os_error(error, "socketpair", "socketpair(2)") from None
    ends = []
    for sock in (first, second):
        sock.setblocking(False)
        ends.append(
            SocketChannel(
                "socketpair:",
                sock,
                max_message_size=max_message_size,
                expect_hello=False,
                speaks=False,
            )
        )
    return ends[0], ends[1]


# Stream-socket listeners and clients: unix://, unix-abstract://, tcp://.


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _greet(sock: socket.socket) -> None:
    # A fresh connection always has room for 8 bytes: this never blocks.
    if sock.send(HELLO_FRAME, _SEND_NOWAIT) != len(HELLO_FRAME):
        raise OSError(errno.EAGAIN, "no room for the greeting on a fresh connection")


class SocketListener(Listener):
    """Accepts stream-socket connections (unix://, unix-abstract://, tcp://)."""

    kind = "socket listener"

    def __init__(
        self,
        url: str,
        sock: socket.socket,
        *,
        max_message_size: int,
        path: str | None = None,
    ) -> None:
        self.url = url
        self.max_message_size = max_message_size
        self._sock = sock
        self._path = path  # the socket file this listener made, removed by close()
        self._identity = os.stat(path)[1:3] if path is not None else None
        self._creator = os.getpid()  # a forked child's close leaves the file alone
        self._opened(url)

    def fileno(self) -> int:
        """The listening socket: readable when a client is waiting to be accepted.

        Raises:
            ClosedResourceError: this listener is closed.
        """
        self._check_open()
        return self._sock.fileno()

    def accept(self, *, timeout: float | None = None) -> SocketChannel:
        """Wait for the next client and return a channel to it.

        Raises:
            WouldBlock: ``timeout=0`` and no client is waiting.
            TimeoutExpired: no client came within ``timeout`` seconds.
            ResourceLimitError: out of file descriptors.
            ClosedResourceError: this listener is closed.
        """
        deadline = Deadline(timeout)
        self._check_open()
        while True:
            try:
                sock, _ = self._sock.accept()
            except BlockingIOError:
                wait_fd(self._sock.fileno(), select.POLLIN, deadline, f"accepting on {self.url}")
                continue
            except ConnectionAbortedError:
                continue  # the client gave up before we took it
            except OSError as error:
                raise from_os_error(error, self.kind, self.url) from None
            break
        try:
            _tune(sock)
            # A client that already left still gets its channel: what it sent
            # before closing is there to be received.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                _greet(sock)
        except BaseException:
            sock.close()
            raise
        return SocketChannel(
            self.url, sock, max_message_size=self.max_message_size, expect_hello=True, speaks=True
        )

    def _release(self) -> None:
        self._sock.close()
        if self._path is not None and os.getpid() == self._creator:
            with contextlib.suppress(OSError):
                if os.stat(self._path)[1:3] == self._identity:
                    os.unlink(self._path)


def listen_socket(
    url: str,
    family: int,
    address: Any,
    *,
    backlog: int,
    max_message_size: int,
    permissions: int | None,
) -> SocketListener:
    """Bind and listen; for a UNIX path, chmod before anyone can connect."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    path = address if family == socket.AF_UNIX and not address.startswith("\0") else None
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        if path is not None and permissions is not None:
            try:
                os.chmod(path, permissions)
            except OSError:
                os.unlink(path)
                raise
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE and family == socket.AF_UNIX:
            error = OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        raise from_os_error(error, "listener", url) from None
    if family in (socket.AF_INET, socket.AF_INET6):
        host, port = sock.getsockname()[:2]
        url = f"tcp://[{host}]:{port}" if family == socket.AF_INET6 else f"tcp://{host}:{port}"
    return SocketListener(url, sock, max_message_size=max_message_size, path=path)


def connect_socket(
    url: str, family: int, address: Any, deadline: Deadline, *, max_message_size: int
) -> SocketChannel:
    """Connect within the deadline (the server need not have accepted yet)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        while True:
            code = sock.connect_ex(address)
            if code in (0, errno.EISCONN):
                break
            if code == errno.EINPROGRESS:
                wait_fd(sock.fileno(), select.POLLOUT, deadline, f"connecting to {url}")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    break
            if code == errno.EAGAIN:
                # A UNIX listener's backlog is full: try again shortly.
                if deadline.timeout == 0 or deadline.expired():
                    raise deadline.error(f"connecting to {url}")
                time.sleep(min(0.01, deadline.remaining() or 0.01))
                continue
            if code == errno.EINTR:
                continue
            raise from_os_error(OSError(code, os.strerror(code)), "channel", url)
        _tune(sock)
        _greet(sock)
    except BaseException:
        sock.close()
        raise
    return SocketChannel(
        url, sock, max_message_size=max_message_size, expect_hello=True, speaks=True
    )
