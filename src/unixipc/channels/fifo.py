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
import fcntl
import os
import select
import stat
from dataclasses import dataclass
from typing import Any

from .. import fifo
from .._deadline import Deadline
from ..errors import PeerDied, ResourceExistsError, from_os_error
from .core import (
    PERMISSIONS,
    Attempt,
    Channel,
    Option,
    WaitSpec,
    Waker,
    max_size_option,
    poll_for,
    refused,
)
from .frames import HELLO_FRAME, MAX_FRAME, FramedChannel
from .liveness import (
    check_mine,
    claim_path_token,
    hold_exclusively,
    in_use,
    names_it,
    not_ours,
    owner_pids,
)
from .pipe import PipeLink
from .rendezvous import (
    REQUEST_SIZE,
    ClientBase,
    InboxBase,
    listener_of,
    new_token,
    rendezvous,
    token_of,
)
from .url import check_path_address

MAGIC = b"uxf\x02"
_SUFFIXES = (".up", ".down")


class FifoInbox(InboxBase):
    """The listener's well-known FIFO."""

    def __init__(self, url: str, path: str, options: dict[str, Any]) -> None:
        super().__init__(url, path, options)
        # The token says the FIFO is a unixipc listener's, even after its death
        # (liveness.path_token_name); the FIFO's own flock guards the FIFO.
        self._token = claim_path_token("fifo", path)
        try:
            self._fd = _own_fifo(path, options["permissions"])
        except BaseException:
            if self._token is not None:
                self._token.close(True)
            raise
        self._identity = os.fstat(self._fd)[1:3]
        self._pending = b""
        self._waker = Waker()

    def next_request(self, timeout: float | None) -> bytes:
        while True:
            record = self._next_record()
            if record is not None:
                return record
            try:
                self._pending += os.read(self._fd, 65536)
                continue
            except BlockingIOError:
                pass
            if timeout == 0 or not self._waker.wait(((self._fd, select.POLLIN),), timeout):
                raise TimeoutError
            timeout = 0  # what came is read at once; the caller waits again

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
        base = self.stem(token)
        with Attempt(lambda: _remove(base), quiet=True) as attempt:
            up = attempt.keep(_open_fifo_now(f"{base}.up", os.O_RDONLY))
            down = attempt.keep(_open_fifo_now(f"{base}.down", os.O_WRONLY))  # ENXIO: it left
            os.write(down, HELLO_FRAME)
            link = PipeLink(up, down)
            return FramedChannel(
                self.url, link, max_message_size=self.max_message_size, expect_hello=False
            )
        return None

    def forget(self, token: str) -> None:
        pass  # a waiting client sees the listener gone and removes its own FIFOs

    def wait_spec(self) -> WaitSpec:
        return WaitSpec(self._fd, None)

    def interrupt(self) -> None:
        self._waker.wake()

    def close(self, remove: bool) -> None:
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            if remove and os.stat(self.prefix)[1:3] == self._identity:
                os.unlink(self.prefix)
        os.close(fd)
        self._waker.close()
        if self._token is not None:
            self._token.close(remove)  # after the FIFO: it says whose the FIFO is


# O_RDWR on a FIFO (Linux): opens at once, and we never see end-of-file.
_LISTENING = os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def _own_fifo(path: str, permissions: int) -> int:
    """The listener's FIFO, open read-write and flock-ed for as long as we listen
    (the kernel lets the lock go when we die): a new one, or one whose listener
    died, taken over."""
    while True:
        try:
            fifo.mkfifo(path, permissions=permissions)
        except ResourceExistsError:
            fd = _take_over(path, permissions)
            if fd is None:
                continue  # removed meanwhile: make it
            return fd
        try:
            fd = os.open(path, _LISTENING)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise from_os_error(error, "FIFO", path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another listener took it over at once: it is theirs
            pids = owner_pids(fd, path)
            os.close(fd)
            raise in_use("FIFO", path, pids) from None
        return fd


def _take_over(path: str, permissions: int) -> int | None:
    """Open and lock the FIFO at ``path`` if its listener died (None if it is gone).

    Refused: a FIFO that a live listener holds, one that something else reads
    (a dead listener leaves no reader), one of another uid, or no FIFO at all.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC))
        read = True
    except OSError as error:
        if error.errno == errno.ENOENT:
            return None
        if error.errno not in (errno.ENXIO, errno.EISDIR):  # ENXIO: nobody reads it
            raise from_os_error(error, "FIFO", path) from None
        read = False
    try:
        fd = os.open(path, _LISTENING)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise from_os_error(error, "FIFO", path) from None
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise not_ours("FIFO", path, "is not a FIFO")
        check_mine(fd, "FIFO", path)
        hold_exclusively(fd, "FIFO", path, path)
        if read:
            raise not_ours("FIFO", path, "is read by a process that is not a unixipc listener")
        if not names_it(path, fd):
            os.close(fd)
            return None
        os.fchmod(fd, permissions)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


def remove_leftover(path: str, identity: tuple[int, int]) -> bool:
    """Remove a dead fifo:// listener's FIFO (``unixipc rm --stale``, with the
    listener's token held, so no listener takes it over meanwhile): only if it
    is still the FIFO ``identity`` and nobody holds its flock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # gone, or no FIFO we may read
    try:
        status = os.fstat(fd)
        if not stat.S_ISFIFO(status.st_mode) or (status.st_dev, status.st_ino) != identity:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a listener holds it (one started by an older unixipc)
        if not names_it(path, fd):
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


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


@dataclass
class _FifoClient(ClientBase):
    """A client between sending its request and the greeting (see rendezvous.Client)."""

    path: str
    server: int
    down: int
    gone: bool = False

    def listener_alive(self) -> bool:
        # A listener that closes makes its FIFO report POLLERR (no reader left) and
        # removes its name; the name is checked too, because a process forked from
        # the listener's may still hold the FIFO open.
        try:
            return not self.gone and os.stat(self.path)[1:3] == os.fstat(self.server)[1:3]
        except OSError:
            return False

    def ask(self, request: bytes, timeout: float) -> None:
        try:
            os.write(self.server, request)  # atomic: never interleaved with another client's
            return
        except BlockingIOError:
            broken = False
        except BrokenPipeError:
            broken = True
        events = {} if broken else poll_for(((self.server, select.POLLOUT),), timeout)
        self.gone = broken or bool(events.get(self.server, 0) & select.POLLERR)
        raise TimeoutError

    def await_greeting(self, timeout: float) -> None:
        ready = poll_for(((self.down, select.POLLIN), (self.server, 0)), timeout)
        if ready.get(self.down, 0) & (select.POLLIN | select.POLLHUP):
            greeting = os.read(self.down, len(HELLO_FRAME))
            if not greeting:
                raise PeerDied(f"{self.url!r}: the listener went away while accepting")
            self.check_greeting(greeting == HELLO_FRAME)
            return
        self.gone = bool(ready.get(self.server, 0) & select.POLLERR)
        raise TimeoutError


def _open_server(url: str, path: str) -> int:
    try:
        server = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise refused(url, "nobody is listening on the FIFO") from None
        raise from_os_error(error, "FIFO", path) from None
    if not stat.S_ISFIFO(os.fstat(server).st_mode):
        os.close(server)
        raise ValueError(f"{path!r} is not a FIFO")
    return server


def connect(url: str, path: str, deadline: Deadline, options: dict[str, Any]) -> Channel:
    """Ask the listener at ``path`` for a connection and wait until it accepts."""
    token = new_token()
    base = f"{path}.{token}"
    with Attempt(lambda: _remove(base)) as attempt:  # the listener removed them already
        server = attempt.borrow(_open_server(url, path))
        for suffix in _SUFFIXES:
            fifo.mkfifo(base + suffix, permissions=options["permissions"])
        down = attempt.keep(os.open(base + ".down", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        # A writer's open needs a reader: hold one for an instant ourselves.
        holder = os.open(base + ".up", os.O_RDWR | os.O_CLOEXEC)
        try:
            up = attempt.keep(os.open(base + ".up", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        finally:
            os.close(holder)
        rendezvous(url, _FifoClient(url, path, server, down), MAGIC, token, deadline)
    size = options["max_message_size"]
    return FramedChannel(url, PipeLink(down, up), max_message_size=size, expect_hello=False)


listen = listener_of(MAGIC, FifoInbox)
parse = check_path_address
OPTIONS: dict[str, Option] = {
    "max_message_size": max_size_option(MAX_FRAME),
    "permissions": PERMISSIONS,
}
