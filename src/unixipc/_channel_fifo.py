"""``fifo:///path`` channels: the classic server FIFO with private FIFOs per client (private).

The listener creates the well-known FIFO ``path`` and holds it open for reading
and writing (so it never sees end-of-file). A client creates two FIFOs next to
it, ``path.<token>.up`` (client to server) and ``path.<token>.down`` (server to
client), opens them without blocking, and writes a connection request naming
them into ``path``: a record smaller than PIPE_BUF, so concurrent clients never
interleave. ``accept`` opens both FIFOs without blocking, removes their names
(from then on they live only as long as the two processes hold them) and writes
a greeting down; ``connect`` returns when the greeting arrives, so it waits for
the server to accept. Messages then travel as frames (``_channel_stream``),
with the same EndOfChannel/PeerDied semantics as pipes: a process that dies
closes its descriptors, and the missing goodbye tells the survivor.

A request that names anything but two fresh FIFOs next to the listener is
dropped, and garbage written into the well-known FIFO is skipped: neither
crashes nor blocks the listener.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import select
import stat
import struct

from . import fifo
from ._channel_base import Listener, refused
from ._channel_stream import HELLO_FRAME, PipeChannel
from ._deadline import Deadline, wait_fd
from ._stream import PIPE_BUF
from .errors import IPCError, PeerDied, from_os_error

__all__ = ("FifoListener", "connect_fifo")

KIND = "FIFO listener"

# A connection request: magic, the length of the client's token, the token.
_REQUEST = struct.Struct("!4sH")
_REQUEST_MAGIC = b"uxf\x01"
_TOKEN = re.compile(rb"[0-9a-f]{8,64}")
# While waiting to be accepted, how often a client checks the listener's name.
_NAME_CHECK_MS = 200


class FifoListener(Listener):
    """Accepts ``fifo://`` connections on a well-known FIFO (see the module docstring)."""

    kind = KIND

    def __init__(self, url: str, path: str, *, max_message_size: int, permissions: int) -> None:
        self.url = url
        self.max_message_size = max_message_size
        self._path = path
        fifo.mkfifo(path, permissions=permissions)
        try:
            # O_RDWR on a FIFO (Linux): opens at once, and we never see end-of-file.
            self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self._identity = os.fstat(self._fd)[1:3]
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise from_os_error(error, "FIFO", path) from None
        self._pending = b""
        self._creator = os.getpid()  # a forked child's close leaves the FIFO alone
        self._opened(url)

    def fileno(self) -> int:
        """The well-known FIFO: readable when a connection request is waiting.

        Raises:
            ClosedResourceError: this listener is closed.
        """
        self._check_open()
        return self._fd

    def accept(self, *, timeout: float | None = None) -> PipeChannel:
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
            token = self._next_request()
            if token is None:
                try:
                    data = os.read(self._fd, 65536)
                except BlockingIOError:
                    wait_fd(self._fd, select.POLLIN, deadline, f"accepting on {self.url}")
                    continue
                self._pending += data
                continue
            channel = self._open_client(token)
            if channel is not None:
                return channel

    def _next_request(self) -> str | None:
        """The next complete request's token; garbage is skipped."""
        while len(self._pending) >= _REQUEST.size:
            magic, length = _REQUEST.unpack_from(self._pending)
            if magic != _REQUEST_MAGIC or length > PIPE_BUF:
                # Not a request: resynchronize at the next magic, if any.
                found = self._pending.find(_REQUEST_MAGIC, 1)
                self._pending = self._pending[found:] if found > 0 else b""
                continue
            end = _REQUEST.size + length
            if len(self._pending) < end:
                return None
            token = self._pending[_REQUEST.size : end]
            self._pending = self._pending[end:]
            if _TOKEN.fullmatch(token):
                return token.decode()
        return None

    def _open_client(self, token: str) -> PipeChannel | None:
        """Open a client's two FIFOs and greet it; None if the request is stale or bogus."""
        base = f"{self._path}.{token}"
        up = down = -1
        try:
            up = _open_fifo_now(f"{base}.up", os.O_RDONLY)
            down = _open_fifo_now(f"{base}.down", os.O_WRONLY)  # ENXIO: the client left
            os.write(down, HELLO_FRAME)
        except OSError:
            for fd in (up, down):
                if fd >= 0:
                    os.close(fd)
            return None
        finally:
            for suffix in (".up", ".down"):
                with contextlib.suppress(OSError):
                    os.unlink(base + suffix)
        return PipeChannel(
            self.url,
            up,
            down,
            max_message_size=self.max_message_size,
            expect_hello=False,
            speaks=True,
        )

    def _release(self) -> None:
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            if os.getpid() == self._creator and os.stat(self._path)[1:3] == self._identity:
                os.unlink(self._path)
        os.close(fd)


def _open_fifo_now(path: str, flags: int) -> int:
    """Open a FIFO without blocking and without following links; refuse anything else."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a FIFO")
    return fd


def connect_fifo(
    url: str, path: str, deadline: Deadline, *, max_message_size: int, permissions: int
) -> PipeChannel:
    """Ask the listener at ``path`` for a connection and wait until it accepts."""
    try:
        server = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise refused(url, "nobody is listening on the FIFO") from None
        raise from_os_error(error, "FIFO", path) from None
    base = f"{path}.{secrets.token_hex(8)}"
    names = (f"{base}.up", f"{base}.down")
    up = down = -1
    try:
        if not stat.S_ISFIFO(os.fstat(server).st_mode):
            raise ValueError(f"{path!r} is not a FIFO")
        for name in names:
            fifo.mkfifo(name, permissions=permissions)
        down = os.open(names[1], os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # A writer's open needs a reader: hold one for an instant ourselves.
        holder = os.open(names[0], os.O_RDWR | os.O_CLOEXEC)
        try:
            up = os.open(names[0], os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        finally:
            os.close(holder)
        token = base.rsplit(".", 1)[1].encode()
        _send_request(url, server, _REQUEST.pack(_REQUEST_MAGIC, len(token)) + token, deadline)
        _wait_for_greeting(url, path, server, down, deadline)
    except BaseException:
        for fd in (up, down):
            if fd >= 0:
                os.close(fd)
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(name)
        raise
    finally:
        os.close(server)
    return PipeChannel(
        url, down, up, max_message_size=max_message_size, expect_hello=False, speaks=True
    )


def _send_request(url: str, server: int, request: bytes, deadline: Deadline) -> None:
    if len(request) > PIPE_BUF:
        raise ValueError(f"the FIFO path of {url!r} is too long for an atomic request")
    while True:
        try:
            os.write(server, request)  # atomic: never interleaved with another client's
            return
        except BlockingIOError:
            events = wait_fd(server, select.POLLOUT, deadline, f"connecting to {url}")
            if events & select.POLLERR:
                raise refused(url, "the listener closed") from None
        except BrokenPipeError:
            raise refused(url, "the listener closed") from None


def _wait_for_greeting(url: str, path: str, server: int, down: int, deadline: Deadline) -> None:
    """Wait until the server writes its greeting down (or stops listening).

    A listener that closes makes the well-known FIFO report POLLERR (no reader
    left) and removes its name; the name is checked too, because a process
    forked from the listener's may still hold the FIFO open.
    """
    identity = os.fstat(server)[1:3]
    poller = select.poll()
    poller.register(down, select.POLLIN)
    poller.register(server, 0)  # POLLERR when no reader is left: the listener closed
    while True:
        wait = deadline.poll_ms()
        wait = _NAME_CHECK_MS if wait < 0 else min(wait, _NAME_CHECK_MS)
        for fd, events in poller.poll(wait):
            if fd == server and events & select.POLLERR:
                raise refused(url, "the listener closed before accepting")
            if fd == down and events & (select.POLLIN | select.POLLHUP):
                greeting = os.read(down, len(HELLO_FRAME))
                if greeting != HELLO_FRAME:
                    raise (
                        PeerDied(f"{url!r}: the listener went away while accepting")
                        if not greeting
                        else IPCError(f"{url!r}: the listener sent a wrong greeting")
                    )
                return
        try:
            still_there = os.stat(path)[1:3] == identity
        except OSError:
            still_there = False
        if not still_there:
            raise refused(url, "the listener closed before accepting")
        if deadline.expired() or deadline.timeout == 0:
            raise deadline.error(f"connecting to {url} (the listener did not accept)")
