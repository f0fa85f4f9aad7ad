"""Liveness tokens: how a channel end learns that its peer closed or died (private).

A token is a one-byte POSIX shared memory object. Its owner holds an exclusive
``flock`` on it, which the kernel releases when the owner's process dies (and
every process it forked that still holds the descriptor). The peer keeps its own
descriptor on the same object and probes with a non-blocking shared lock: while
the owner lives the probe fails; once it succeeds the owner is gone, and the byte
tells how: ``close()`` writes CLOSED before letting go, a death writes nothing.
A process id alone could be reused; a lock cannot outlive its holder.

For channels whose facility gives no end-of-file (message queues, shared memory),
both tokens of a connection are created by the client before it asks to connect;
the server takes the lock of its own token while accepting and removes both
names, which from then on live only as long as the two ends hold them.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os

from . import _native
from .errors import from_os_error

__all__ = ("PeerState", "Token", "create_token", "remove_token")

KIND = "channel liveness token"

_ALIVE_BYTE = b"\x00"
_CLOSED_BYTE = b"\x01"


class PeerState(enum.Enum):
    ALIVE = "alive"
    CLOSED = "closed"
    DIED = "died"


def create_token(name: str, permissions: int) -> int:
    """Create the token object ``name`` exclusively; return a descriptor on it."""
    try:
        fd = _native.shm_open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, permissions)
    except OSError as error:
        raise from_os_error(error, KIND, name) from None
    try:
        os.fchmod(fd, permissions)  # shm_open applied the umask
        os.pwrite(fd, _ALIVE_BYTE, 0)
    except OSError as error:
        os.close(fd)
        with contextlib.suppress(OSError):
            _native.shm_unlink(name)
        raise from_os_error(error, KIND, name) from None
    return fd


def open_token(name: str) -> int:
    """A descriptor on the existing token ``name`` (OSError if it is gone)."""
    return _native.shm_open(name, os.O_RDWR, 0)


def remove_token(name: str) -> None:
    with contextlib.suppress(OSError):
        _native.shm_unlink(name)


# For the inspector (unixipc.inspect): the owner holds this lock on the token
# while it lives ((type, mode) as /proc/locks shows it); nobody else ever does.
OWNER_LOCK = ("flock", "write")


def _inspect(fd: int) -> dict[str, object] | None:
    """What the token open on ``fd`` says, read without locking; None if it is no token."""
    if os.fstat(fd).st_size != 1:
        return None
    byte = os.pread(fd, 1, 0)
    if byte not in (_ALIVE_BYTE, _CLOSED_BYTE):
        return None
    return {"closed": byte == _CLOSED_BYTE}


class Token:
    """A descriptor on a token: the owner's (``hold``) or the peer's (``probe``)."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def hold(self) -> bool:
        """Take the owner's lock; False if someone holds it already."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def probe(self) -> PeerState:
        """The owner's state, seen from the peer's descriptor."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return PeerState.ALIVE
        except OSError:
            return PeerState.DIED
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        try:
            closed = os.pread(self._fd, 1, 0) == _CLOSED_BYTE
        except OSError:
            closed = False
        return PeerState.CLOSED if closed else PeerState.DIED

    def mark_closed(self) -> None:
        """Record a clean close (the owner, just before it lets go)."""
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, _CLOSED_BYTE, 0)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
