"""Byte-stream ends over a file descriptor: the verbs pipes and FIFOs share (private).

Descriptors are kept in non-blocking mode (on the open file description, as
asyncio does) so that every call can honour its timeout: an empty pipe makes
``read`` fail with EAGAIN and the call then waits in ``poll``.

Writing when no reader is left raises :class:`PeerDied`; the process is never
killed by SIGPIPE, even when a program restored SIGPIPE's default action.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable
from multiprocessing import reduction
from typing import Any, TypeVar

from ._deadline import Deadline, wait_fd
from ._names import check_bytes_like, check_int
from ._resource import Resource
from .errors import EndOfChannel, PeerDied, TimeoutExpired, WouldBlock

__all__ = ("PIPE_BUF", "ByteStreamReader", "ByteStreamWriter", "FdResource")

#: Writes of at most this many bytes to a pipe or FIFO are atomic: they are
#: never interleaved with other writers' data (POSIX requires >= 512; Linux: 4096).
PIPE_BUF: int = select.PIPE_BUF

_F = TypeVar("_F", bound="FdResource")


class FdResource(Resource):
    """A resource whose handle is one file descriptor owned by this object."""

    _fd: int = -1

    def __init__(self, fd: int, name: object) -> None:
        self._fd = fd
        self._opened(name)

    def fileno(self) -> int:
        """The file descriptor (in non-blocking mode), e.g. for selectors or asyncio."""
        self._check_open()
        return self._fd

    def _release(self) -> None:
        fd, self._fd = self._fd, -1
        os.close(fd)

    def __reduce__(self) -> tuple[Any, ...]:
        # A descriptor number means nothing in another process; multiprocessing
        # passes the descriptor itself (see register_for_multiprocessing).
        raise TypeError(
            f"cannot pickle {self.describe()}: pass it to a multiprocessing child instead"
        )

    @classmethod
    def _from_fd(cls: type[_F], fd: int, name: object) -> _F:
        end = cls.__new__(cls)
        FdResource.__init__(end, fd, name)
        return end


def _rebuild(cls: type[FdResource], dup: Any, name: object) -> FdResource:
    return cls._from_fd(dup.detach(), name)


def _reduce(end: FdResource) -> tuple[Any, ...]:
    # DupFd duplicates the descriptor into the child under spawn and forkserver
    # (and through multiprocessing's resource sharer for queues).
    return (_rebuild, (type(end), reduction.DupFd(end.fileno()), end._name))


def register_for_multiprocessing(cls: type[FdResource]) -> None:
    """Let multiprocessing pass ``cls`` to a child (plain pickle still refuses)."""
    reduction.register(cls, _reduce)


class ByteStreamReader(FdResource):
    """The reading end of a byte stream: pipe, FIFO or popen."""

    kind = "stream"
    _pending: bytes = b""  # bytes read by an unfinished receive_exactly, given back first

    def receive_some(self, max_bytes: int = 65536, *, timeout: float | None = None) -> bytes:
        """Read between 1 and ``max_bytes`` bytes, waiting until some are available.

        Returns ``b""`` at end of stream (every writer has closed its end).

        Raises:
            WouldBlock: ``timeout=0`` and no data is available.
            TimeoutExpired: nothing arrived within ``timeout`` seconds.
            ClosedResourceError: this end is closed.
        """
        check_int(max_bytes, "max_bytes", minimum=1)
        deadline = Deadline(timeout)
        self._check_open()
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        while True:
            try:
                return os.read(self._fd, max_bytes)
            except BlockingIOError:
                wait_fd(self._fd, select.POLLIN, deadline, f"reading {self.describe()}")

    def receive_into(self, buffer: Any, *, timeout: float | None = None) -> int:
        """Read into a writable bytes-like ``buffer``; return the count (0 at end of stream).

        Raises:
            WouldBlock, TimeoutExpired: as :meth:`receive_some`.
        """
        view = check_bytes_like(buffer, "buffer")
        if view.readonly:
            raise TypeError("buffer must be writable")
        deadline = Deadline(timeout)
        self._check_open()
        if not len(view):
            return 0
        if self._pending:
            count = min(len(view), len(self._pending))
            view[:count] = self._pending[:count]
            self._pending = self._pending[count:]
            return count
        while True:
            try:
                return os.readv(self._fd, [view])
            except BlockingIOError:
                wait_fd(self._fd, select.POLLIN, deadline, f"reading {self.describe()}")

    def receive_exactly(self, n: int, *, timeout: float | None = None) -> bytes:
        """Read exactly ``n`` bytes.

        If time runs out first, the bytes already read are kept and returned
        first by the next receive: nothing is lost.

        Raises:
            EndOfChannel: the stream ended before ``n`` bytes arrived (``partial``
                holds what did arrive).
            WouldBlock, TimeoutExpired: as :meth:`receive_some`.
        """
        check_int(n, "n", minimum=0)
        deadline = Deadline(timeout)
        self._check_open()
        buffer = bytearray(n)
        view = memoryview(buffer)
        got = min(n, len(self._pending))
        view[:got] = self._pending[:got]
        self._pending = self._pending[got:]
        try:
            while got < n:
                try:
                    count = os.readv(self._fd, [view[got:]])
                except BlockingIOError:
                    wait_fd(self._fd, select.POLLIN, deadline, f"reading {self.describe()}")
                    continue
                if count == 0:
                    error = EndOfChannel(f"{self.describe()} ended after {got} of {n} bytes")
                    error.partial = bytes(view[:got])  # type: ignore[attr-defined]
                    raise error
                got += count
        except (WouldBlock, TimeoutExpired, KeyboardInterrupt):
            self._pending = bytes(view[:got]) + self._pending
            raise
        finally:
            view.release()
        return bytes(buffer)


def _blocking_sigpipe_is_fatal() -> bool:
    handler = signal.getsignal(signal.SIGPIPE)
    return handler is signal.SIG_DFL or handler is None


def call_without_sigpipe(call: Callable[[int, Any], int], fd: int, data: Any) -> int:
    """``call(fd, data)`` (a write) turning a broken pipe into an exception, never a
    fatal SIGPIPE.

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


class ByteStreamWriter(FdResource):
    """The writing end of a byte stream: pipe, FIFO or popen."""

    kind = "stream"

    def send_all(self, data: Any, *, timeout: float | None = None) -> None:
        """Write all of ``data`` (any bytes-like object), waiting for room as needed.

        Writes of at most ``PIPE_BUF`` bytes are atomic. If time runs out after
        part of ``data`` went out, the exception's ``bytes_sent`` says how much.

        Raises:
            PeerDied: no reader is left (instead of SIGPIPE).
            WouldBlock: ``timeout=0`` and the pipe is full.
            TimeoutExpired: the data did not fit within ``timeout`` seconds.
            ClosedResourceError: this end is closed.
        """
        view = check_bytes_like(data)
        deadline = Deadline(timeout)
        self._check_open()
        sent = 0
        total = len(view)
        while sent < total:
            try:
                sent += call_without_sigpipe(os.write, self._fd, view[sent:])
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError as error:
                raise PeerDied(
                    error.errno, f"{self.describe()}: no reader is left (sent {sent} bytes)"
                ) from None
            try:
                wait_fd(self._fd, select.POLLOUT, deadline, f"writing {self.describe()}")
            except (WouldBlock, TimeoutExpired) as error:
                error.bytes_sent = sent
                raise
