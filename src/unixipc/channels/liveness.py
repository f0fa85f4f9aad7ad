"""Liveness tokens: how a channel end learns that its peer closed or died (private).

A token is a one-byte POSIX shared memory object. Its owner holds an exclusive
``flock`` on it, which the kernel releases when the owner's process dies (and
every process it forked that still holds the descriptor). The peer keeps its own
descriptor on the same object and probes with a non-blocking shared lock: while
the owner lives the probe fails; once it succeeds the owner is gone, and the byte
tells how: ``close()`` writes CLOSED before letting go, a death writes nothing.
A process id alone could be reused; a lock cannot outlive its holder.

For channels whose facility gives no end-of-file (message queues), both tokens
of a connection (``<base>.c``, the client's, and ``<base>.s``, the server's) are
created by the client before it asks to connect; the server takes the lock of
its own token while accepting and removes both names, which from then on live
only as long as the two ends hold them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import time
from collections.abc import Callable
from typing import TypeVar

from .. import _native
from ..errors import ClosedResourceError, EndOfChannel, IPCError, PeerDied, from_os_error
from .core import PROBE, RECEIVE, SEND, LinkBase, PeerState, marks_calls, refused

_T = TypeVar("_T")

KIND = "channel liveness token"
#: How often an end waiting on a queue probes its peer's token (seconds).
PROBE_INTERVAL = 0.2
#: The longest a send to a full queue sleeps in the kernel at a time (seconds).
SEND_SLICE = 0.02

_ALIVE_BYTE = b"\x00"
_CLOSED_BYTE = b"\x01"


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
        remove_token(name)
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


def remove_tokens(base: str) -> None:
    remove_token(base + ".c")
    remove_token(base + ".s")


class TokenPair:
    """A connection end's two tokens: its own (held) and its peer's (probed)."""

    __slots__ = ("_own", "_peer")

    def __init__(self, own: Token, peer: Token) -> None:
        self._own = own
        self._peer = peer

    @classmethod
    def for_client(cls, base: str, permissions: int) -> TokenPair:
        """Create both tokens of a new connection and hold the client's."""
        own = Token(create_token(base + ".c", permissions))
        try:
            own.hold()
            peer = Token(create_token(base + ".s", permissions))
        except BaseException:
            own.close()
            remove_tokens(base)
            raise
        return cls(own, peer)

    @classmethod
    def for_server(cls, base: str) -> TokenPair:
        """Open a client's tokens and hold the server's.

        Raises:
            OSError: the client is gone (or someone else holds the server's token).
        """
        peer = Token(open_token(base + ".c"))
        try:
            own = Token(open_token(base + ".s"))
        except BaseException:
            peer.close()
            raise
        pair = cls(own, peer)
        if peer.probe() is not PeerState.ALIVE or not own.hold():
            pair.close()
            raise OSError("the client is gone")
        return pair

    def peer_state(self) -> PeerState:
        return self._peer.probe()

    def close(self, announce: bool = False) -> None:
        """Let go of both tokens; ``announce`` records a clean close first."""
        if announce:
            self._own.mark_closed()
        self._own.close()
        self._peer.close()


class ListenerToken:
    """The token a listener holds while it listens, so that waiting clients learn
    when it closed or died."""

    def __init__(self, name: str, permissions: int) -> None:
        self._name = name
        self._token = Token(create_token(name, permissions))
        self._token.hold()

    @staticmethod
    def watch(url: str, name: str) -> Token:
        """A client's descriptor on the listener's token ``name``.

        Raises:
            IPCOSError: there is none: no unixipc listener owns the object (ECONNREFUSED).
        """
        try:
            return Token(open_token(name))
        except OSError:
            raise refused(url, "no unixipc listener owns that queue") from None

    def close(self, remove: bool) -> None:
        """Stop listening; ``remove`` (in the listener's process) also removes the name."""
        if remove:
            self._token.mark_closed()
            remove_token(self._name)
        self._token.close()


def client_is_dead(base: str) -> bool:
    """Whether the client that made ``base``'s tokens is gone (False if unknown)."""
    try:
        watcher = Token(open_token(base + ".c"))
    except OSError:
        return False
    try:
        return watcher.probe() is not PeerState.ALIVE
    finally:
        watcher.close()


class TokenLink(LinkBase):
    """What the queue links share: their calls mark themselves inside the link,
    wait in the kernel in slices and probe the peer's token between them."""

    probe_interval = PROBE_INTERVAL
    direct_into = False

    def __init__(self, tokens: TokenPair) -> None:
        super().__init__()
        self._tokens = tokens
        self.closing = False  # set by interrupt(): no call starts any more

    #: The first wait of a call, by role (SEND, RECEIVE, PROBE), in seconds.
    first_waits = (SEND_SLICE, PROBE_INTERVAL, 0.0)

    def waited(
        self, role: int, call: Callable[..., _T], timeout: float | None, piece: object = None
    ) -> _T:
        """``call([piece,] timeout=...)`` within ``timeout``, marked inside the link
        for close(): kernel waits of at most PROBE_INTERVAL to receive (close()
        wakes them with a message), SEND_SLICE to send (a send to a full queue can
        be woken by nothing but room), the peer's token probed every
        PROBE_INTERVAL while waiting and when time runs out. Once the peer is gone
        a receive still gets what it sent before, then EndOfChannel or PeerDied.
        """
        inside = self.inside
        inside[role] = True
        try:
            if self.closing:
                raise ClosedResourceError
            wait = self.first_waits[role]
            if timeout is not None and timeout < wait:
                wait = timeout
            try:
                return call(timeout=wait) if piece is None else call(piece, timeout=wait)
            except (BlockingIOError, TimeoutError):
                return self._more(role, call, timeout, wait, piece)
        finally:
            inside[role] = False

    def _more(
        self,
        role: int,
        call: Callable[..., _T],
        timeout: float | None,
        waited: float,
        piece: object,
    ) -> _T:
        slice_ = SEND_SLICE if role == SEND else PROBE_INTERVAL
        now = time.monotonic()
        end = None if timeout is None else now + timeout - waited
        next_probe = now  # at once: the first wait may have been the whole interval
        last = call if piece is None else functools.partial(call, piece)
        while True:
            left = None if end is None else end - time.monotonic()
            if (left is not None and left <= 0) or time.monotonic() >= next_probe:
                next_probe = time.monotonic() + PROBE_INTERVAL
                state = self._tokens.peer_state()
                if state is not PeerState.ALIVE:
                    if role == RECEIVE:
                        with contextlib.suppress(BlockingIOError, TimeoutError):
                            return last(timeout=0)  # what it sent before it went
                    raise EndOfChannel if state is PeerState.CLOSED else PeerDied
                if left is not None and left <= 0:
                    raise TimeoutError
            try:
                return last(timeout=slice_ if left is None else min(slice_, left))
            except (BlockingIOError, TimeoutError):
                if self.closing:
                    raise ClosedResourceError from None

    def peer_state(self) -> PeerState:
        inside = self.inside
        inside[PROBE] = True
        try:
            return PeerState.ALIVE if self.closing else self._tokens.peer_state()
        finally:
            inside[PROBE] = False

    def take_into(self, buffer: object, *, timeout: float | None) -> int:
        raise NotImplementedError  # pragma: no cover - direct_into is False

    def wake_receiver(self, send_wake_up: Callable[[], object]) -> None:
        """interrupt(): no call starts any more, and a receive asleep in the kernel
        takes the wake-up message ``send_wake_up`` puts in its own queue."""
        self.closing = True
        if self.inside[RECEIVE]:
            with contextlib.suppress(IPCError):
                send_wake_up()

    def close_tokens(self, announce: bool) -> None:
        """Let go of the tokens (``announce``: the peer learns of a clean close)."""
        try:
            self._tokens.close(announce)
        finally:
            self.waker.close()


marks_calls(TokenLink.waited, TokenLink.peer_state)
