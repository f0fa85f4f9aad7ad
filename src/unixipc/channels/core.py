"""The channel core: what a channel end and a listener mean, written once (private).

Every scheme is a *driver* (one module each) that hands the core a *link*: the
connected pair of kernel objects of one end. The core gives it the public shape
(:class:`Channel`, :class:`Listener`) and owns every rule that does not depend on
the facility:

- sticky endings: once the peer is gone, every call raises the same
  :class:`EndOfChannel` / :class:`PeerDied` / :class:`IPCError` again;
- who says goodbye: every end does when closed; a fork or a hand-over to a
  ``multiprocessing`` child makes the copies silent until used in their process;
- closing wakes every waiter (trio's ``notify_closing``): ``close()`` marks the end
  closed, wakes the threads and asyncio tasks waiting in it (:meth:`Link.interrupt`,
  the :class:`Waker`, registered :class:`Waiter`\\ s), waits until they have left the
  link's system calls, and only then lets the driver release its descriptors, so
  that no call ever uses a descriptor number after it was closed;
- the hooks of authentication (:class:`Authenticator`, run by :func:`establish`
  before the first application message) and of event loops (:class:`WaitSpec`).

Two engines build on this: :mod:`.frames` (length-prefixed frames over byte
streams: pipes, FIFOs, sockets) and :mod:`.pieces` (messages split into pieces
over message facilities: POSIX and System V queues, shared-memory rings).
"""

from __future__ import annotations

import enum
import errno
import math
import os
import select
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import reduction
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .._deadline import POLL_MS_MAX, Deadline
from .._names import check_int, check_permissions
from .._resource import Resource
from ..errors import (
    ClosedResourceError,
    EndOfChannel,
    IPCError,
    IPCOSError,
    MessageTooLarge,
    PeerDied,
    UnsupportedFeature,
)
from ..sockets import Credentials

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: The largest message a channel carries unless told otherwise.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
#: The same for the channels a network listener (``tcp://``, ``tls://``) accepts:
#: anyone who can reach the port may connect (nng's default too).
DEFAULT_NETWORK_MAX_MESSAGE_SIZE = 1024 * 1024

# How long close() waits for other threads to leave a link's system calls. Every
# wait of a link is woken by interrupt() or lasts at most a short slice, so this
# only bounds the damage of a driver that breaks that rule.
_CLOSE_WAIT = 10.0

_T = TypeVar("_T")
_C = TypeVar("_C", bound="Channel")

SEND, RECEIVE, PROBE = 0, 1, 2  # roles: indexes of the _inside flags


class PeerState(enum.Enum):
    """What a liveness probe learned about the peer."""

    ALIVE = "alive"
    CLOSED = "closed"
    DIED = "died"


@dataclass(frozen=True)
class WaitSpec:
    """What an event loop watches to wait for a channel end or a listener.

    ``read_fd`` becomes readable when ``receive``/``accept`` with ``timeout=0`` may
    succeed, ``write_fd`` writable when ``send`` may; ``None`` when the transport
    has no descriptor (an event loop then runs the blocking call in slices on an
    executor). While waiting on descriptors, the peer is probed every
    ``probe_interval`` seconds (``None``: the descriptors themselves report it).
    ``doorbells``: both descriptors are doorbells of shared memory (readable, not
    writable, when a try may succeed; a try that would block arms them), and the
    try itself looks for dead peers, so a waiter tries again every
    ``probe_interval``.
    """

    read_fd: int | None
    write_fd: int | None
    probe_interval: float | None = None
    doorbells: bool = False


class LinkEnded(Exception):
    """Raised by a link: the channel cannot go on (the core makes it sticky).

    ``error_type`` is the public exception the channel raises from then on,
    with ``detail`` as the end of its message.
    """

    def __init__(self, error_type: type[IPCError], detail: str) -> None:
        super().__init__(detail)
        self.error_type = error_type
        self.detail = detail


# What a link's call raises when the peer is gone: made sticky by the core.
ENDINGS = (EndOfChannel, PeerDied, LinkEnded)


class Link(Protocol):
    """What every driver's connected end offers the core (both engines).

    A link never decides policy: it moves data, waits as told, and says how it
    can be woken and watched.
    """

    @property
    def inside(self) -> list[bool]:
        """Whether a call is inside the link, by role ([SEND, RECEIVE, PROBE])."""
        ...

    def wait_spec(self) -> WaitSpec:
        """The descriptors an event loop watches for this end (see WaitSpec)."""
        ...

    def interrupt(self) -> None:
        """The end is closing: no call of the link starts from now on, and calls
        asleep in the kernel where only the link can wake them are woken (they
        raise :class:`ClosedResourceError`). Never blocks."""
        ...

    def speak(self) -> None:
        """The end is used in this process from now on (e.g. a ring declares its roles)."""
        ...

    def peer_credentials(self) -> Credentials | None:
        """The peer's pid/uid/gid where the kernel reports them (UNIX sockets), else None."""
        ...

    def close(self, announce: bool) -> None:
        """Release the link's objects; ``announce=False`` hands the conversation
        over silently to another process that holds a copy."""
        ...


class LinkBase:
    """Defaults for links: flags for the calls inside, a waker that interrupt() wakes,
    nothing to declare, no credentials."""

    def __init__(self) -> None:
        #: Whether a call is inside the link ([send, receive, probe]); the engine
        #: or the link's own calls set them, close() waits for them (the channel's
        #: ``_inside`` is this list).
        self.inside = [False, False, False]
        self.waker = Waker()

    def interrupt(self) -> None:
        self.waker.wake()

    def speak(self) -> None:
        pass

    def peer_credentials(self) -> Credentials | None:
        return None

    def passable(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """How to rebuild this link in a multiprocessing child: (factory, arguments)."""
        raise TypeError("connect to its URL in the child instead")


class Waiter(Protocol):
    """Something waiting for a channel outside its system calls (an asyncio task)."""

    def wake(self) -> None:
        """The channel is closing: stop watching its descriptors and raise
        ClosedResourceError; remove yourself from ``_waiters`` once no longer watching."""
        ...


def poll_for(watch: tuple[tuple[int, int], ...], timeout: float | None) -> dict[int, int]:
    """Poll descriptors for events (no waker: nothing else can close them); {} on timeout."""
    poller = select.poll()
    for fd, events in watch:
        poller.register(fd, events)
    return dict(poller.poll(-1 if timeout is None else math.ceil(timeout * 1000)))


class Waker:
    """Lets close() wake a thread that polls a link's descriptors.

    An eventfd, made on the first wait that needs it, is polled with the
    descriptors; :meth:`wake` marks the waker and makes the eventfd readable, and
    every wait then raises :class:`ClosedResourceError`. A link owns one and
    closes it with its descriptors.
    """

    __slots__ = ("_fd", "_pollers", "woken")

    def __init__(self) -> None:
        self._fd = -1
        self.woken = False
        self._pollers: dict[tuple[tuple[int, int], ...], Any] = {}

    def wait(self, watch: tuple[tuple[int, int], ...], timeout: float | None) -> dict[int, int]:
        """Poll ``watch`` (pairs of descriptor and poll events) for up to ``timeout``
        seconds (None: no limit); return the events reported, {} when time ran out.

        Signals run Python's handlers and the wait goes on (PEP 475); an exception
        from a handler (Ctrl-C) propagates as it is.

        Raises:
            ClosedResourceError: the waker was woken (the channel is closing).
        """
        if self._fd < 0:
            self._fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        if self.woken:  # checked after the eventfd exists: see wake()
            raise ClosedResourceError("closed while waiting")
        poller = self._pollers.get(watch)
        if poller is None:
            poller = select.poll()
            merged: dict[int, int] = {}
            for fd, events in watch:
                merged[fd] = merged.get(fd, 0) | events
            for fd, events in merged.items():
                poller.register(fd, events)
            poller.register(self._fd, select.POLLIN)
            self._pollers[watch] = poller
        # poll() takes at most about 24 days: a longer timeout (1e12, inf made
        # finite by a caller) is waited out in pieces of that length.
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            ms = -1
            if end is not None:
                ms = min(math.ceil(max(0.0, end - time.monotonic()) * 1000), POLL_MS_MAX)
            ready = dict(poller.poll(ms))
            if self.woken:
                raise ClosedResourceError("closed while waiting")
            if ready or end is None or time.monotonic() >= end:
                return ready

    def wake(self) -> None:
        self.woken = True
        if self._fd >= 0:
            os.eventfd_write(self._fd, 1)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        self._pollers.clear()
        if fd >= 0:
            os.close(fd)


class Authenticator(Protocol):
    """The step that runs on a new connection before its first application message.

    The security layer implements it (shared secrets, peer credentials); the core
    calls it through :func:`establish`, with the channel's receive limit lowered
    to ``budget`` bytes until it returns.
    """

    #: The largest message the peer may send before it is authenticated.
    budget: int

    def authenticate(self, channel: Channel, *, server: bool, deadline: Deadline) -> bool:
        """Exchange the proofs over ``channel``; True if the peer is authenticated.

        Raise IPCError (the connection is dropped) when the peer fails.
        """
        ...


# The code of the functions that mark a call as inside an object (Guarded.
# _inside): close() looks for them on its own thread's stack (see _mine).
_CALL_CODES: set[Any] = set()


def marks_calls(*functions: Callable[..., Any]) -> None:
    """Declare functions that set ``_inside`` for their whole call (engines' fast paths)."""
    _CALL_CODES.update(function.__code__ for function in functions)


class Guarded(Resource):
    """What channels and listeners share: calls that close() must wake and wait for.

    A call inside a system call of this object is recorded by role (one sender,
    one receiver: a flag, which costs less than a thread id on the fast paths);
    close() wakes them (``_interrupt``, the registered waiters) and waits until
    they left before the descriptors are released.
    """

    def _init_guard(self, inside: list[bool]) -> None:
        # Whether a call is inside this object's system calls ([sender, receiver,
        # prober]), and the event-loop waiters watching it.
        self._inside = inside
        self._waiters: set[Waiter] = set()

    url: str

    def describe(self) -> str:
        """A short description naming it, used in messages."""
        return f"{self.kind} {self.url!r}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url!r} {state}>"

    def _wait_spec(self) -> WaitSpec:
        """What an event loop watches to wait for this object (see WaitSpec)."""
        raise NotImplementedError  # pragma: no cover

    def _readable_fd(self) -> int:
        """The descriptor fileno() gives: readable when a try may succeed."""
        self._check_open()
        fd = self._wait_spec().read_fd
        if fd is None:
            raise UnsupportedFeature(f"{self.describe()} has no file descriptor")
        return fd

    def _closed_error(self) -> ClosedResourceError:
        return ClosedResourceError(f"{self.describe()} is closed")

    def _guarded(self, call: Callable[..., _T], role: int) -> Callable[..., _T]:
        """``call`` marked as inside this object (for close) and refused once closed."""
        inside = self._inside

        def guarded(*args: Any, **options: Any) -> _T:
            inside[role] = True
            try:
                if self._closed:
                    raise self._closed_error()
                return call(*args, **options)
            except ClosedResourceError:
                raise self._closed_error() from None
            finally:
                inside[role] = False

        return guarded

    def _mine(self) -> int:
        """How many of the calls inside belong to the thread running close(): one
        when a signal handler closes what its own thread was blocked in (close()
        must not wait for itself), else none. Looked up on the stack: close() is
        rare, the fast paths stay a flag."""
        owners = self._owners()
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code in _CALL_CODES and frame.f_locals.get("self") in owners:
                return 1
            frame = frame.f_back  # type: ignore[assignment]
        return 0

    def _owners(self) -> tuple[object, ...]:
        """The objects whose calls mark themselves inside this one."""
        return (self,)

    def _others(self, role: int | None = None) -> bool:
        """Whether calls of other threads are inside (in ``role``, or in any)."""
        busy = sum(self._inside) if role is None else self._inside[role]
        return busy > 0 and busy > self._mine()

    def _interrupt(self) -> None:
        """Wake the threads waiting in this object's system calls."""

    def _stop_calls(self) -> None:
        """Wake the other threads and tasks waiting in this object; wait until they left."""
        if not self._others() and not self._waiters:
            return
        self._interrupt()
        for waiter in list(self._waiters):
            waiter.wake()
        give_up = time.monotonic() + _CLOSE_WAIT
        while (self._others() or self._waiters) and time.monotonic() < give_up:
            time.sleep(0.0005)


# The closure _guarded makes (one code object for all of them).
_CALL_CODES.update(
    code
    for code in Guarded._guarded.__code__.co_consts
    if getattr(code, "co_name", "") == "guarded"
)


# Every open channel, so that a fork can make them all silent in both processes.
_LIVE: weakref.WeakSet[Channel] = weakref.WeakSet()


def _forget_use_after_fork() -> None:
    for channel in list(_LIVE):
        channel._set_silent()


os.register_at_fork(after_in_parent=_forget_use_after_fork, after_in_child=_forget_use_after_fork)


class Channel(Guarded):
    """A duplex, message-framed, point-to-point connection to one peer.

    Made by :func:`unixipc.connect`, :meth:`Listener.accept` or
    :func:`unixipc.channel_pair`. Messages go in as any bytes-like object and come
    out as ``bytes``, whole and in order. Every blocking call takes a keyword
    ``timeout``: ``None`` blocks, ``0`` tries once (:class:`WouldBlock`), a positive
    number of seconds raises :class:`TimeoutExpired` when it runs out.

    When the peer called ``close()``, the messages it sent before are still
    delivered, then :class:`EndOfChannel` is raised; when the peer went away
    without closing (its process died), :class:`PeerDied`. A channel may be used
    by one sending and one receiving thread at the same time; ``close()`` from
    any thread wakes them at once with :class:`ClosedResourceError`.
    """

    kind = "channel"

    #: The URL the channel was made from (``"pipe:"`` / ``"socketpair:"`` / ``"shm:"``
    #: for pairs).
    url: str
    #: The largest message this end sends or accepts, in bytes.
    max_message_size: int

    _link: Link

    # A sticky ending: once the peer is gone (or the channel is unusable), every
    # later call raises a fresh exception of this type and message.
    _ending: tuple[type[IPCError], str] | None = None

    # Whether close() tells the peer (EndOfChannel) or stays silent, and whether
    # the end is in use in this process (the link took its roles: a ring declares
    # itself producer and consumer). An end speaks from the start and is in use
    # once made by connect/accept, or once used (send, receive, ``with``) when made
    # by channel_pair. A fork makes every channel silent and unused in both
    # processes, and handing an end to a multiprocessing child does the same to the
    # given copy, until the end is used again. This is what lets every process
    # close the ends it does not use.
    _speaks: bool = True
    _in_use: bool = False
    _authenticated = False

    # The direct calls, for the hot loops of unixipc.rpc: while ``_direct`` is
    # True, a message of at most ``_fast_send`` bytes may go out by
    # ``_direct_send(data)``, and ``_direct_receive()`` returns the next message,
    # whole if it has at most ``_fast_receive`` bytes (else its first piece, which
    # ``_receive_rest`` completes). They are the engine's own calls without the
    # channel's frame: each sends or takes all or nothing, so after any Exception
    # from one, the caller does the same with send()/receive(), which raise the
    # channel's own error. Engines without such calls leave ``_direct`` False.
    _direct = False
    _fast_send = -1
    _fast_receive = -1
    _direct_send: Callable[..., None]
    _direct_receive: Callable[..., bytes]

    def _receive_rest(self, first: bytes) -> bytes:
        raise NotImplementedError  # pragma: no cover - only engines with direct calls

    def _start(self, url: str, link: Link, max_message_size: int, *, in_use: bool) -> None:
        """Call from the engine's __init__ once the link is held."""
        self.url = url
        self._link = link
        self.max_message_size = max_message_size
        self._init_guard(link.inside)
        _LIVE.add(self)
        self._opened(url)
        if in_use:
            self._use()

    @property
    def authenticated(self) -> bool:
        """True when this end knows who its peer is, and False otherwise.

        True after any of: the peer proved the shared ``secret`` (the HMAC
        handshake); the kernel's credentials of a UNIX socket peer passed an
        ``allowed_uids``/``allowed_gids`` check (the default check of
        ``unix-abstract://``, this process's own uid, counts); on ``tls://``,
        the peer's certificate verified against the CA (always for a client; for
        a listener, when it requires client certificates with ``ca_file``).
        File permissions alone (a 0o600 socket file or queue) do not make a
        channel authenticated, nor does a ``channel_pair``.
        """
        return self._authenticated

    def peer_credentials(self) -> Credentials | None:
        """The peer process's pid, uid and gid as the kernel reported them at
        connection time (UNIX sockets and socket pairs); None for other schemes.

        Raises:
            ClosedResourceError: this channel is closed.
        """
        self._check_open()
        return self._link.peer_credentials()

    def _use(self) -> None:
        """The end is used in this process: it speaks, and the link takes its roles."""
        self._speaks = True
        if not self._in_use and not self._closed:
            self._in_use = True
            self._link.speak()
        self._refresh()

    def _set_silent(self) -> None:
        """Another process may go on with this conversation (a fork, a hand-over)."""
        self._speaks = self._in_use = False
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the flags the engine's fast paths test (after a state change)."""

    def __enter__(self: _C) -> _C:
        # Taking an end in a with block is using it: its close will say goodbye.
        self._check_open()
        self._use()
        return self

    def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Send ``data`` (any bytes-like object) as one message.

        A message that goes out in several parts (a long frame, pieces) is
        committed once its first part is out: if time runs out after that, the rest
        is kept and sent before anything else (by the next send, while receiving,
        or by close), so a message is never cut or sent twice;
        :class:`WouldBlock` and :class:`TimeoutExpired` mean nothing was sent.

        Raises:
            MessageTooLarge: ``data`` is larger than :attr:`max_message_size`
                (nothing is sent).
            WouldBlock: ``timeout=0`` and there is no room now (nothing is sent).
            TimeoutExpired: no room within ``timeout`` seconds (nothing is sent).
            EndOfChannel: the peer closed the channel.
            PeerDied: the peer went away without closing (its process died).
            ClosedResourceError: this channel is closed (also when another
                thread closes it during the call).
        """
        raise NotImplementedError  # pragma: no cover - every engine overrides it

    def receive(self, *, timeout: float | None = None) -> bytes:
        """Wait for the next message and return it.

        Raises:
            WouldBlock: ``timeout=0`` and no message is there.
            TimeoutExpired: no message arrived within ``timeout`` seconds.
            EndOfChannel: the peer closed the channel and every message it sent
                has been received.
            PeerDied: the peer went away without closing (its process died).
            MessageTooLarge: the peer's message is larger than
                :attr:`max_message_size` (the channel is unusable from then on).
            IPCError: the peer sent something that is not a valid message (the
                channel is unusable from then on).
            ClosedResourceError: this channel is closed (also when another
                thread closes it during the call).
        """
        raise NotImplementedError  # pragma: no cover

    def receive_into(self, buffer: Buffer, *, timeout: float | None = None) -> int:
        """Receive the next message into the writable bytes-like ``buffer``; return its size.

        Raises:
            MessageTooLarge: the next message does not fit in ``buffer``; it is
                kept, and a later ``receive`` (or a larger buffer) gets it.
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied, IPCError,
            ClosedResourceError: as :meth:`receive`.
        """
        raise NotImplementedError  # pragma: no cover

    def fileno(self) -> int:
        """A descriptor that becomes readable when a message may be received.

        A channel may read ahead, so several messages may already be buffered:
        after the descriptor is reported readable, call ``receive(timeout=0)``
        until it raises :class:`WouldBlock`.

        For ``shm://`` it is the receiving ring's doorbell, which a
        ``receive(timeout=0)`` that would block arms (see :meth:`unixipc.Ring.fileno`).

        Raises:
            UnsupportedFeature: this kind of channel has no descriptor (System V
                queues).
            ClosedResourceError: this channel is closed.
        """
        return self._readable_fd()

    # The contract with event loops (unixipc.aio).

    def _wait_spec(self) -> WaitSpec:
        return self._link.wait_spec()

    def _has_tail(self) -> bool:
        """True while part of a message is committed but not yet handed to the kernel."""
        return False

    def _flush_nowait(self) -> None:
        """Hand over as much of the committed tail as fits now."""

    def _probe(self) -> None:
        """Raise EndOfChannel/PeerDied if the peer is known to be gone."""

    # Endings.

    def _end(self, error_type: type[IPCError], detail: str) -> IPCError:
        """Record that the channel ended (sticky) and return the exception to raise."""
        if self._ending is None:
            self._ending = (error_type, f"{self.describe()}: {detail}")
            self._refresh()
        return self._ended()

    def _ended(self) -> IPCError:
        assert self._ending is not None
        error_type, message = self._ending
        return error_type(message)

    def _ended_by(self, error: BaseException, mid_message: bool = False) -> IPCError:
        """The sticky ending for an ENDINGS exception raised by the link."""
        where = " (in the middle of a message)" if mid_message else ""
        if isinstance(error, LinkEnded):
            return self._end(error.error_type, error.detail + where)
        if isinstance(error, EndOfChannel):
            return self._end(EndOfChannel, CLOSED_BY_PEER + where)
        return self._end(PeerDied, DIED + where)

    def _peer_too_large(self) -> IPCError:
        return self._end(
            MessageTooLarge,
            f"the peer's message is larger than the maximum of {self.max_message_size} bytes "
            "(the channel is unusable now)",
        )

    def _refuse(self, size: int) -> IPCError:
        """The error for a message larger than the maximum (nothing is sent)."""
        if self._closed:
            return self._closed_error()
        return MessageTooLarge(
            f"{self.describe()}: a {size}-byte message is larger than the "
            f"maximum of {self.max_message_size} bytes"
        )

    def _ready_to_send(self) -> None:
        """The checks of a send's slow path: open, in use here, not ended."""
        if self._closed:
            raise self._closed_error()
        if not self._in_use:
            self._use()
        if self._ending is not None:
            raise self._ended()

    def _ready_to_receive(self) -> None:
        """The checks of a receive's slow path: open, in use here (an ending is
        raised only once what the peer sent before it has been received)."""
        if self._closed:
            raise self._closed_error()
        if not self._in_use:
            self._use()

    def _owners(self) -> tuple[object, ...]:
        return (self, self._link)

    def _writers_inside(self) -> bool:
        """Whether another thread may be writing on the link (the goodbye waits for it)."""
        return self._others()

    def _release(self) -> None:
        _LIVE.discard(self)
        self._refresh()  # the fast paths see the end closed from now on
        said = False
        try:
            self._link.interrupt()  # and no call of the link starts any more
            if self._speaks and not self._in_use:  # a pair's end never used: say so
                self._in_use = True
                self._link.speak()
            # Say goodbye first where no other thread writes, so that the peer
            # learns of the close before waking our waiters can disturb it.
            if self._speaks and self._ending is None and not self._writers_inside():
                self._say_goodbye()
                said = True
            self._stop_calls()
            if self._speaks and self._ending is None and not said:
                self._say_goodbye()
        finally:
            self._link.close(self._speaks)

    def _say_goodbye(self) -> None:
        """Finish a committed tail and tell the peer, without waiting (best effort)."""

    # Passing to multiprocessing children (drivers register the reducers).

    def _check_passable(self) -> None:
        self._check_open()

    @classmethod
    def _rebuilt(cls: type[_C], url: str, link: Any, max_message_size: int) -> _C:
        """The end a multiprocessing child rebuilds from a passed link."""
        raise NotImplementedError  # pragma: no cover - every engine overrides it

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            f"cannot pickle {self.describe()}: pass it to a multiprocessing child instead"
        )


def _reduce_channel(channel: Channel) -> tuple[Any, ...]:
    """How multiprocessing passes an end to a child: its link's descriptors, duplicated."""
    channel._check_passable()
    try:
        factory, arguments = channel._link.passable()  # type: ignore[attr-defined]
    except TypeError as error:
        raise TypeError(f"cannot pass {channel.describe()} to another process: {error}") from None
    channel._set_silent()  # given away: its close here must not end the conversation
    return (
        _rebuild_channel,
        (type(channel), channel.url, channel.max_message_size, factory, arguments),
    )


def _rebuild_channel(
    cls: type[Channel], url: str, max_message_size: int, factory: Any, arguments: Any
) -> Channel:
    return cls._rebuilt(url, factory(*arguments), max_message_size)


def passable_by_multiprocessing(cls: type[Channel]) -> None:
    """Let multiprocessing hand ends of this engine to children (plain pickle still refuses)."""
    reduction.register(cls, _reduce_channel)


CLOSED_BY_PEER = "the peer closed the channel"
DIED = "the peer went away without closing the channel (its process died)"


def establish(
    channel: Channel, authenticator: Authenticator | None, *, server: bool, deadline: Deadline
) -> Channel:
    """Run the authentication step on a new connection, before any application message.

    Without an authenticator the channel is authenticated only if its driver
    said so (a verified TLS certificate). A peer that fails makes this raise
    (the caller drops that connection only).
    """
    if authenticator is None:
        return channel
    limit = channel.max_message_size
    channel.max_message_size = min(limit, authenticator.budget)
    channel._refresh()
    try:
        if authenticator.authenticate(channel, server=server, deadline=deadline):
            channel._authenticated = True  # (a driver may have said so already: TLS)
    except BaseException:
        channel.close()
        raise
    finally:
        channel.max_message_size = limit
        channel._refresh()
    return channel


class Acceptor(Protocol):
    """A driver's listening end: what the core's accept loop needs."""

    def take(self, timeout: float | None) -> Channel | None:
        """Wait up to ``timeout`` for the next client; its channel, or None when
        a request turned out stale or bogus (the loop goes on).

        Raises WouldBlock/TimeoutExpired when nothing came in time, and
        ClosedResourceError once :meth:`interrupt` was called.
        """
        ...

    def wait_spec(self) -> WaitSpec:
        """The descriptor that becomes readable when a client is waiting (or None)."""
        ...

    def interrupt(self) -> None:
        """Wake the threads waiting in :meth:`take` (close() from another thread)."""
        ...

    def close(self) -> None:
        """Stop listening; remove the names the listener made (in its creator only)."""
        ...


class Listener(Guarded):
    """Accepts connections on a URL: :func:`unixipc.listen` makes one.

    ``close()`` stops listening (a thread blocked in :meth:`accept` gets
    :class:`ClosedResourceError` at once) and removes the names the listener
    created; channels already accepted stay usable.
    """

    kind = "listener"

    #: The URL clients connect to (for ``tcp://host:0``, the port actually bound).
    url: str

    def __init__(
        self, url: str, acceptor: Acceptor, authenticator: Authenticator | None = None
    ) -> None:
        self.url = url
        self._acceptor = acceptor
        self._authenticator = authenticator
        self._init_guard([False, False, False])
        self._take = self._guarded(acceptor.take, RECEIVE)
        self._opened(url)

    def _require(self, authenticator: Authenticator) -> None:
        """Pass every new connection through ``authenticator`` (before the first accept)."""
        self._authenticator = authenticator

    @property
    def _authenticates(self) -> bool:
        """Whether accept runs a handshake (which may wait for the client)."""
        return self._authenticator is not None

    def accept(self, *, timeout: float | None = None) -> Channel:
        """Wait for the next client and return a channel to it.

        Raises:
            WouldBlock: ``timeout=0`` and no client is waiting.
            TimeoutExpired: no client came within ``timeout`` seconds.
            ResourceLimitError: out of descriptors or queues for a new connection.
            ClosedResourceError: this listener is closed (also when another
                thread closes it during the call).
        """
        deadline = Deadline(timeout)
        self._check_open()
        while True:
            try:
                channel = self._take(deadline.remaining())
            except (BlockingIOError, TimeoutError):
                if deadline.timeout == 0 or deadline.expired():
                    raise deadline.error(f"accepting on {self.url}") from None
                continue
            if channel is None:
                continue
            try:
                return establish(channel, self._authenticator, server=True, deadline=deadline)
            except IPCError:
                continue  # that client failed; the others are still served

    def fileno(self) -> int:
        """A descriptor that becomes readable when a client is waiting to be accepted.

        Raises:
            UnsupportedFeature: this kind of listener has none (System V queues).
            ClosedResourceError: this listener is closed.
        """
        return self._readable_fd()

    def _wait_spec(self) -> WaitSpec:
        return self._acceptor.wait_spec()

    def _interrupt(self) -> None:
        self._acceptor.interrupt()

    def _release(self) -> None:
        try:
            self._stop_calls()
        finally:
            self._acceptor.close()


# Options: each driver declares its options once, with their defaults and checks.


@dataclass(frozen=True)
class Option:
    """One option of a scheme: its default and the check that validates a value."""

    default: object
    check: Callable[[object], object]


def take_options(
    scheme: str, call: str, given: dict[str, Any], declared: dict[str, Option]
) -> dict[str, Any]:
    """The validated options with defaults filled in; TypeError for any not declared."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        accepted = ", ".join(sorted(declared)) or "none"
        raise TypeError(
            f"{call}() got unexpected option(s) {', '.join(unknown)} for {scheme!r} "
            f"(accepted: {accepted})"
        )
    return {
        name: option.check(given[name]) if name in given else option.default
        for name, option in declared.items()
    }


#: The largest max_message_size of a channel that splits messages into pieces.
MAX_SPLIT = 2**31 - 1


def max_size_option(limit: int, default: int = DEFAULT_MAX_MESSAGE_SIZE) -> Option:
    """The max_message_size option of a channel that carries up to ``limit`` bytes."""

    def check(value: object) -> int:
        size = check_int(value, "max_message_size", minimum=1)
        if size > limit:
            raise ValueError(f"max_message_size must be <= {limit}, got {size}")
        return size

    return Option(default, check)


def positive_option(name: str, default: int) -> Option:
    return Option(default, lambda value: check_int(value, name, minimum=1))


#: The permissions option of the objects a listener or client creates.
PERMISSIONS = Option(0o600, check_permissions)


def refused(url: str, why: str) -> IPCOSError:
    """The error of a connect that nobody accepts (errno ECONNREFUSED)."""
    return IPCOSError(errno.ECONNREFUSED, f"cannot connect to {url!r}: {why}", url)


def close_all(things: Sequence[Any]) -> None:
    """Close what a failed connect or accept had opened, newest first (descriptors too)."""
    for thing in reversed(things):
        if isinstance(thing, int):
            os.close(thing)
        else:
            thing.close()


class Attempt:
    """What a connect or accept makes on its way, undone if it fails.

    ``keep(x)`` registers something the new channel will own (closed only if
    the attempt fails); ``borrow(x)`` something needed only on the way (closed
    either way); descriptors (ints) are closed too. ``remove`` runs at the end
    either way: the names of a connection are removed once both ends hold
    them, or when the attempt fails. A ``quiet`` attempt swallows OSError and
    IPCError (an accept that drops one client), so code after the ``with`` runs.
    """

    def __init__(self, remove: Callable[[], None] = lambda: None, *, quiet: bool = False) -> None:
        self._remove = remove
        self._quiet = quiet
        self._kept: list[Any] = []
        self._borrowed: list[Any] = []

    def keep(self, thing: _T) -> _T:
        self._kept.append(thing)
        return thing

    def borrow(self, thing: _T) -> _T:
        self._borrowed.append(thing)
        return thing

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> bool:
        try:
            close_all(self._borrowed + (self._kept if exc_type is not None else []))
        finally:
            self._remove()
        return self._quiet and exc_type is not None and issubclass(exc_type, (OSError, IPCError))
