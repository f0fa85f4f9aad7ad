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
import errno
import fcntl
import functools
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from .. import _native
from .._proc import file_locks, holding
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    PeerDied,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceNotFoundError,
    from_os_error,
)
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
    """What the token open on ``fd`` says, read without locking; None if it is no token.

    A path listener's token (:func:`path_token_name`) carries the listener's
    path after its byte: "address" (only a hint: it counts once it hashes back
    to the token's name, see :func:`address_of`)."""
    size = os.fstat(fd).st_size
    if not 1 <= size <= 1 + _MAX_ADDRESS:
        return None
    data = os.pread(fd, size, 0)
    if data[:1] not in (_ALIVE_BYTE, _CLOSED_BYTE):
        return None
    described: dict[str, object] = {"closed": data[:1] == _CLOSED_BYTE}
    if len(data) > 1:
        described["address"] = os.fsdecode(data[1:])
    return described


# Listeners whose name is a path (unix://, fifo://). A socket file or a FIFO
# keeps no mark of who made it once its listener died, so such a listener also
# holds a token named after its path: /unixipc-<scheme>-<file name>-<digest>.listener,
# the digest of the real path (the file name is there for people). Its owner
# lock decides, as for the queue schemes, whether the listener lives; the token
# also holds the path, so that the inspector finds the file wherever it is.
_MAX_ADDRESS = 4096
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")
PATH_TOKEN_PREFIX = "/unixipc-"
PATH_SCHEMES = ("unix", "fifo")


def path_token_name(scheme: str, path: str) -> str:
    """The token a ``scheme`` ("unix" or "fifo") listener at ``path`` holds."""
    real = os.path.realpath(path)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    stem = _UNSAFE.sub("_", os.path.basename(real))[:64]
    return f"{PATH_TOKEN_PREFIX}{scheme}-{stem}-{digest}.listener"


def claim_path_token(scheme: str, path: str) -> ListenerToken | None:
    """The token of a ``scheme`` listener at ``path`` (see :func:`path_token_name`),
    or None when its name is held by something not ours (another uid's object,
    not a token). The token only marks the file as a unixipc listener's (the
    socket's binding, the FIFO's flock decide who may take the path over), so
    another user squatting on the name cannot stop us from listening: the file
    is then simply unmarked. A live listener of ours still raises."""
    try:
        return ListenerToken.claim(path_token_name(scheme, path), 0o600, path)
    except (NotOurs, PermissionDeniedError):
        return None


def address_of(name: str, described: dict[str, object]) -> tuple[str, str] | None:
    """(scheme, path) of the path listener whose token ``name`` says ``described``,
    if its address hashes back to the name (anyone who may write a token could
    write any path in it: a path that does not is ignored)."""
    address = described.get("address")
    if not isinstance(address, str):
        return None
    for scheme in PATH_SCHEMES:
        if name.startswith(f"{PATH_TOKEN_PREFIX}{scheme}-") and (
            path_token_name(scheme, address) == name
        ):
            return scheme, address
    return None


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


# Taking over the name of a listener that died (issue 13). Who owns a name is
# decided by a lock the kernel releases when its holder dies (flock on a token
# or on the listener's FIFO, the lock bytes of a ring), never by a pid. The
# order is always: lock, then check that the name still is the object locked,
# then replace, so that two processes racing for a name (or one racing with
# `unixipc rm --stale`, which does the same) never both win.

# How long a lock held by someone else is tried again before the holder is
# taken to be alive: a cleaner or another claimer holds it only for a moment.
PATIENCE = 0.3


def names_it(path: str, fd: int) -> bool:
    """Whether ``path`` is (still) the file open on ``fd``."""
    try:
        named = os.stat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def owner_pids(fd: int, path: str) -> list[int]:
    """The live processes that hold the file open on ``fd`` locked (/proc/locks),
    or failing that, hold it open (a forked child that inherited the lock)."""
    status = os.fstat(fd)
    pids = {
        entry.pid
        for entry in file_locks()
        if entry.pid is not None
        and (entry.device, entry.inode) == (status.st_dev, status.st_ino)
        and os.path.exists(f"/proc/{entry.pid}")
    }
    if not pids:
        pids = holding({path}) - {os.getpid()}
    return sorted(pids)


def in_use(what: str, name: str, pids: list[int]) -> ResourceExistsError:
    """The error for a name whose owner lives."""
    who = ("pid " + ", ".join(map(str, pids))) if pids else "a live process"
    return ResourceExistsError(
        errno.EEXIST, f"{what} {name!r} is in use by a live listener ({who})", name
    )


class NotOurs(ResourceExistsError):
    """A name that something other than our listener's object holds."""


def not_ours(what: str, name: str, why: str) -> ResourceExistsError:
    return NotOurs(errno.EEXIST, f"{what} {name!r} exists and {why}", name)


def check_mine(fd: int, what: str, name: str) -> None:
    """Refuse to take over what another uid made (its owner chose who may use it)."""
    owner = os.fstat(fd).st_uid
    if owner != os.geteuid():
        raise not_ours(what, name, f"belongs to uid {owner}")


def hold_exclusively(fd: int, what: str, name: str, path: str) -> None:
    """Take the owner's flock on ``fd``; ResourceExistsError naming the owner if it lives."""
    give_up = time.monotonic() + PATIENCE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > give_up:
                raise in_use(what, name, owner_pids(fd, path)) from None
        time.sleep(0.01)


def replace_leftover(
    create: Callable[[], _T], remove: Callable[[], object], taken_over: bool, what: str, name: str
) -> _T:
    """Create a listener's object once its token is held. If the name exists, it
    is the dead listener's leftover when we took its token over: it is replaced;
    else it is not a listener's at all and is left alone."""
    try:
        return create()
    except ResourceExistsError:
        if not taken_over:
            raise not_ours(what, name, "no unixipc listener owns it") from None
    with contextlib.suppress(ResourceNotFoundError):
        remove()
    return create()


class ListenerToken:
    """The token a listener holds while it listens, so that waiting clients learn
    when it closed or died; it also says who owns the listener's names."""

    def __init__(self, name: str, fd: int, taken_over: bool) -> None:
        """Use :meth:`claim`."""
        self._name = name
        self._token = Token(fd)
        #: True when the token was a dead listener's: its other names are leftovers.
        self.taken_over = taken_over

    @classmethod
    def claim(cls, name: str, permissions: int, address: str | None = None) -> ListenerToken:
        """Create the token ``name`` and hold it, or take over the token of a
        listener that died (lock, check that the name is still the token
        locked, then reset it). A path listener's ``address`` is written in it.

        Raises:
            ResourceExistsError: a live listener holds it (the message names its
                pid), or ``name`` is not a token of ours.
        """
        path = "/dev/shm/" + name.lstrip("/")
        give_up = time.monotonic() + PATIENCE
        while True:
            created = True
            try:
                fd = create_token(name, permissions)
            except ResourceExistsError:
                created = False
                try:
                    fd = open_token(name)
                except FileNotFoundError:
                    continue  # removed meanwhile: create it
                except OSError as error:
                    raise from_os_error(error, KIND, name) from None
            try:
                if not created and _inspect(fd) is None:
                    if os.fstat(fd).st_size == 0 and time.monotonic() < give_up:
                        os.close(fd)  # being created this very moment: look again
                        time.sleep(0.01)
                        continue
                    raise not_ours(KIND, name, "is not a unixipc liveness token")
                check_mine(fd, KIND, name)
                hold_exclusively(fd, KIND, name, path)
                if not names_it(path, fd):
                    os.close(fd)  # removed or replaced while we locked: start again
                    continue
                if not created:
                    os.fchmod(fd, permissions)
                    os.ftruncate(fd, 1)
                    os.pwrite(fd, _ALIVE_BYTE, 0)
                if address is not None:
                    os.pwrite(fd, os.fsencode(os.path.realpath(address))[:_MAX_ADDRESS], 1)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            return cls(name, fd, taken_over=not created)

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


@contextlib.contextmanager
def owner_gone(name: str) -> Iterator[str]:
    """Take the owner lock of the token ``name`` for a moment, as a listener
    taking it over would (lock, then check that the name still names what was
    locked): "free" (taken: its owner is gone; what it guards may go, and the
    token after it), "held" (its owner lives, or it was replaced meanwhile) or
    "absent". ``unixipc rm --stale`` decides under it (unixipc.inspect)."""
    try:
        fd = os.open(
            "/dev/shm/" + name.lstrip("/"),
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
        )
    except OSError:
        yield "absent"
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield "held"
            return
        yield "free" if names_it("/dev/shm/" + name.lstrip("/"), fd) else "held"
    finally:
        os.close(fd)


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
    direct = False

    def __init__(self, tokens: TokenPair) -> None:
        super().__init__()
        self._tokens = tokens
        self.closing = False  # set by interrupt(): no call starts any more
        # The peer's goodbye was taken: what a hostile peer queues after it is not delivered.
        self.peer_said_goodbye = False

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
        raise NotImplementedError  # pragma: no cover - direct is False

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
