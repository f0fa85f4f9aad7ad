"""``fifo:///path``: the classic server FIFO with private FIFOs per client (driver).

The listener creates the well-known FIFO ``path`` and holds it open for reading
and writing (so it never sees end-of-file). A client creates two FIFOs next to
it, ``path.<token>.up`` (client to server) and ``path.<token>.down`` (server to
client), opens them without blocking, and writes a request naming the token
into ``path`` (:mod:`.rendezvous`): a record smaller than PIPE_BUF, so concurrent
clients never interleave. ``accept`` opens both FIFOs without blocking and
without following links, checks that they are FIFOs, removes their names and
writes a greeting down; ``connect`` returns when the greeting arrives. Messages
then travel as frames (:mod:`.frames`) over non-blocking descriptors, with the
same EndOfChannel/PeerDied semantics as pipes.

Garbage written into the well-known FIFO is skipped (the reader resynchronizes
at the next request's magic): it neither crashes nor blocks the listener. A
waiting client gives up when the well-known FIFO has no reader left (POLLERR)
or its name is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
from typing import Any

from .. import fifo
from .._deadline import Deadline
from ..errors import IPCError, PeerDied, from_os_error
from .core import (
    PERMISSIONS,
    Channel,
    Listener,
    Option,
    WaitSpec,
    Waker,
    max_size_option,
    poll_for,
    refused,
)
from .frames import HELLO_FRAME, MAX_FRAME, FramedChannel
from .pipe import PipeLink
from .rendezvous import REQUEST_SIZE, RendezvousAcceptor, new_token, rendezvous, token_of
from .url import check_path_address

MAGIC = b"uxf\x02"
_SUFFIXES = (".up", ".down")


class FifoInbox:
    """The listener's well-known FIFO."""

    def __init__(self, url: str, path: str, options: dict[str, Any]) -> None:
        self._url = url
        self._path = path
        self._max = options["max_message_size"]
        fifo.mkfifo(path, permissions=options["permissions"])
        try:
            # O_RDWR on a FIFO (Linux): opens at once, and we never see end-of-file.
            self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self._identity = os.fstat(self._fd)[1:3]
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise from_os_error(error, "FIFO", path) from None
        self._pending = b""
        self._waker = Waker()

    def next_request(self, timeout: float | None) -> bytes:
        while True:
            record = self._next_record()
            if record is not None:
                return record
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                if timeout == 0 or not self._waker.wait(((self._fd, select.POLLIN),), timeout):
                    raise TimeoutError from None
                timeout = 0  # what came is read at once; the caller waits again
                continue
            self._pending += data

    def _next_record(self) -> bytes | None:
        """The next well-formed request in what was read; garbage is skipped."""
        while len(self._pending) >= REQUEST_SIZE:
            if token_of(MAGIC, self._pending[:REQUEST_SIZE]) is not None:
                record, self._pending = (
                    self._pending[:REQUEST_SIZE],
                    self._pending[REQUEST_SIZE:],
                )
                return record
            found = self._pending.find(MAGIC, 1)  # resynchronize at the next magic
            self._pending = self._pending[found:] if found > 0 else self._pending[-3:]
        return None

    def open_client(self, token: str) -> Channel | None:
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
            _remove(base)
        return FramedChannel(
            self._url, PipeLink(up, down), max_message_size=self._max, expect_hello=False
        )

    def forget(self, token: str) -> None:
        pass  # a waiting client sees the listener gone and removes its own FIFOs

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._fd, None)

    def interrupt(self) -> None:
        self._waker.wake()

    def close(self, remove: bool) -> None:
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            if remove and os.stat(self._path)[1:3] == self._identity:
                os.unlink(self._path)
        os.close(fd)
        self._waker.close()


def _remove(base: str) -> None:
    for suffix in _SUFFIXES:
        with contextlib.suppress(OSError):
            os.unlink(base + suffix)


def _open_fifo_now(path: str, flags: int) -> int:
    """Open a FIFO without blocking and without following links; refuse anything else."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a FIFO")
    return fd


def listen(url: str, path: str, options: dict[str, Any]) -> Listener:
    return Listener(url, RendezvousAcceptor(MAGIC, FifoInbox(url, path, options)))


class _FifoClient:
    """A client between sending its request and the greeting (see rendezvous.Client)."""

    def __init__(self, url: str, path: str, server: int, down: int) -> None:
        self._url = url
        self._path = path
        self._server = server
        self._down = down
        self._identity = os.fstat(server)[1:3]
        self._gone = False

    def listener_alive(self) -> bool:
        # A listener that closes makes its FIFO report POLLERR (no reader left) and
        # removes its name; the name is checked too, because a process forked from
        # the listener's may still hold the FIFO open.
        if self._gone:
            return False
        try:
            return os.stat(self._path)[1:3] == self._identity
        except OSError:
            return False

    def ask(self, request: bytes, timeout: float) -> None:
        try:
            os.write(self._server, request)  # atomic: never interleaved with another client's
            return
        except BlockingIOError:
            events = poll_for(((self._server, select.POLLOUT),), timeout)
        except BrokenPipeError:
            events = {self._server: select.POLLERR}
        self._gone = bool(events.get(self._server, 0) & select.POLLERR)
        raise TimeoutError

    def await_greeting(self, timeout: float) -> None:
        ready = poll_for(((self._down, select.POLLIN), (self._server, 0)), timeout)
        if ready.get(self._down, 0) & (select.POLLIN | select.POLLHUP):
            greeting = os.read(self._down, len(HELLO_FRAME))
            if greeting == HELLO_FRAME:
                return
            if not greeting:
                raise PeerDied(f"{self._url!r}: the listener went away while accepting")
            raise IPCError(f"{self._url!r}: the listener sent a wrong greeting")
        self._gone = bool(ready.get(self._server, 0) & select.POLLERR)
        raise TimeoutError


def connect(url: str, path: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """Ask the listener at ``path`` for a connection and wait until it accepts."""
    try:
        server = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise refused(url, "nobody is listening on the FIFO") from None
        raise from_os_error(error, "FIFO", path) from None
    token = new_token()
    base = f"{path}.{token}"
    up = down = -1
    try:
        if not stat.S_ISFIFO(os.fstat(server).st_mode):
            raise ValueError(f"{path!r} is not a FIFO")
        for suffix in _SUFFIXES:
            fifo.mkfifo(base + suffix, permissions=options["permissions"])
        down = os.open(base + ".down", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # A writer's open needs a reader: hold one for an instant ourselves.
        holder = os.open(base + ".up", os.O_RDWR | os.O_CLOEXEC)
        try:
            up = os.open(base + ".up", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        finally:
            os.close(holder)
        rendezvous(url, _FifoClient(url, path, server, down), MAGIC, token, deadline)
    except BaseException:
        for fd in (up, down):
            if fd >= 0:
                os.close(fd)
        _remove(base)
        raise
    finally:
        os.close(server)
    return FramedChannel(
        url, PipeLink(down, up), max_message_size=options["max_message_size"], expect_hello=False
    )


parse = check_path_address
OPTIONS: dict[str, Option] = {
    "max_message_size": max_size_option(MAX_FRAME),
    "permissions": PERMISSIONS,
}
