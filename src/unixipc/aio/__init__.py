"""Channels for asyncio: ``await send/receive`` over every scheme.

::

    listener = await unixipc.aio.listen("unix:///tmp/app.sock")
    channel = await listener.accept()
    await channel.send((await channel.receive()).upper())

    async with await unixipc.aio.connect("unix:///tmp/app.sock", timeout=10) as channel:
        await channel.send(b"hello")

The asynchronous classes wrap the synchronous ones (``.channel``, ``.listener``)
and leave their fast paths untouched: every operation first tries the
synchronous call with ``timeout=0`` and waits only if it would block.

How an operation waits is what the channel declares (its wait spec):

- ``pipe``, ``socketpair``, ``unix``, ``unix-abstract``, ``tcp``, ``fifo``: the
  channel's descriptors with ``loop.add_reader``/``add_writer`` (end-of-file
  tells the loop when the peer goes).
- ``mq``: the queue descriptors the same way, waking every 0.2 s to probe the
  peer's liveness token.
- ``shm``: the doorbells of its two rings (readable when a try may succeed;
  a try that would block arms them) with ``loop.add_reader``, trying again
  every 0.2 s so that the rings look for a dead peer: no helper thread. A
  receiver whose messages come within microseconds of its waiting first waits
  up to 50 µs in the ring's own spin, blocking the loop that long (see
  :mod:`unixipc.aio._spin`: it stops as soon as messages come slower).
- ``sysvmq``: no descriptor to watch; the blocking call runs in
  slices of 0.2 s on one shared pool of helper threads (reused, not one per
  call). A cancelled ``receive`` keeps the message its helper may still have
  taken for the next ``receive``; a cancelled ``send`` may still have sent its
  message.

``close()`` (of the channel, the listener, or their ``.channel``/``.listener``,
from any thread) wakes every task waiting on them with
:class:`ClosedResourceError` at once, and stops watching the descriptors before
they are closed. ``connect`` runs on the helper pool (FIFO and queue connections
wait for the server's ``accept``); cancelling it stops it within 0.2 s and undoes
what it made. One task may send and one receive on a channel at the same time.

Topics (:mod:`unixipc.aio.topic`): ``AsyncSubscriber``, ``AsyncPublisher`` and
``wait`` use the topics' doorbell descriptors: no helper thread at all; so does
``AsyncRing`` (:mod:`unixipc.aio.ring`) with a ring's, and ``wait`` takes rings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import channel as _sync
from .._deadline import Deadline, check_timeout
from .._names import check_bytes_like
from .._resource import Resource
from ..channels import registry
from ..channels.core import Channel, Guarded, Listener, WaitSpec
from ..errors import MessageTooLarge, TimeoutExpired, WouldBlock
from ._spin import Spin
from .ring import AsyncRing as AsyncRing
from .topic import AsyncPublisher as AsyncPublisher
from .topic import AsyncSubscriber as AsyncSubscriber
from .topic import wait as wait

if TYPE_CHECKING:
    from typing_extensions import Buffer, Unpack

    from ..channel import ConnectOptions, ListenOptions, PairKind, PairOptions

__all__ = (
    "AsyncChannel",
    "AsyncListener",
    "AsyncPublisher",
    "AsyncRing",
    "AsyncSubscriber",
    "channel_pair",
    "connect",
    "listen",
    "wait",
)

_T = TypeVar("_T")
_A = TypeVar("_A", bound="AsyncChannel")
# How long a helper thread blocks at a time before looking for cancellation.
_SLICE = 0.2
# How long an idle helper thread waits for more work before it ends.
_HELPER_IDLE = 60.0


class _Helpers:
    """One shared pool of daemon threads for blocking calls that have no descriptor.

    A free thread takes the next call; a new one starts only when all are busy
    (each may block for a long time, so a bounded pool could starve); a thread
    idle for a minute ends. Daemon threads: one still in a slice never delays
    the interpreter's exit.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job and not yet promised one

    def submit(self, function: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        self._jobs.put((function, future))
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle thread will take it
                return future
        threading.Thread(target=self._work, name="unixipc-aio", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            try:
                function, future = self._jobs.get(timeout=_HELPER_IDLE)
            except queue.Empty:
                with self._lock:
                    if self._idle and self._jobs.empty():
                        self._idle -= 1
                        return
                continue
            if future.set_running_or_notify_cancel():
                try:
                    result = function()
                except BaseException as error:
                    future.set_exception(error)
                else:
                    future.set_result(result)
            with self._lock:
                self._idle += 1


_helpers = _Helpers()


class _CancellableDeadline(Deadline):
    """A deadline that a cancelled task can make expire at once (seen within a slice)."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__(timeout)
        self.cancelled = False

    @property
    def blocking(self) -> bool:
        return not self.cancelled and super().blocking

    def remaining(self) -> float | None:
        return 0.0 if self.cancelled else super().remaining()

    def expired(self) -> bool:
        return self.cancelled or super().expired()

    def poll_ms(self) -> int:
        return 0 if self.cancelled else super().poll_ms()


async def _on_helper(function: Callable[[], _T], on_orphan: Callable[[_T], None]) -> _T:
    """Run ``function`` on the helper pool; its result, if the awaiting task was
    cancelled meanwhile, goes to ``on_orphan``."""
    future = _helpers.submit(function)
    waiting = asyncio.wrap_future(future)

    def orphaned(done: concurrent.futures.Future[_T]) -> None:
        if waiting.cancelled() and not done.cancelled() and done.exception() is None:
            on_orphan(done.result())

    future.add_done_callback(orphaned)
    return await waiting


class _LoopWaiter:
    """Watches descriptors for one await in the event loop; the owner's close() wakes it."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, owner: Guarded, watch: tuple[tuple[int, bool], ...]
    ) -> None:
        self._loop = loop
        self._owner = owner
        self._watch = watch
        self.future: asyncio.Future[int] = loop.create_future()
        self._watching = False

    def start(self) -> None:
        for fd, write in self._watch:
            (self._loop.add_writer if write else self._loop.add_reader)(fd, self._ready, fd)
        self._watching = True
        self._owner._waiters.add(self)

    def _ready(self, fd: int) -> None:
        if not self.future.done():
            self.future.set_result(fd)

    def stop(self) -> None:
        """Stop watching (in the loop's thread), before the descriptors can be closed."""
        if self._watching:
            self._watching = False
            for fd, write in self._watch:
                (self._loop.remove_writer if write else self._loop.remove_reader)(fd)
        self._owner._waiters.discard(self)

    def _wake_in_loop(self) -> None:
        self.stop()
        if not self.future.done():
            self.future.set_exception(self._owner._closed_error())

    def wake(self) -> None:
        """Called by the owner's close(), from any thread."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake_in_loop()
            return
        try:
            self._loop.call_soon_threadsafe(self._wake_in_loop)
        except RuntimeError:  # the loop is closed: nothing watches any more
            self._owner._waiters.discard(self)


async def _ready(
    owner: Guarded, watch: tuple[tuple[int, bool], ...], seconds: float | None
) -> int | None:
    """Wait until a descriptor of ``watch`` (fd, for writing) is ready and return it;
    None when ``seconds`` passed. The owner's close() ends the wait with
    ClosedResourceError."""
    waiter = _LoopWaiter(asyncio.get_running_loop(), owner, watch)
    if owner.closed:
        raise owner._closed_error()
    waiter.start()
    try:
        if seconds is None:
            return await waiter.future
        try:
            return await asyncio.wait_for(waiter.future, seconds)
        except asyncio.TimeoutError:
            return None
    finally:
        waiter.stop()


async def _in_slices(
    owner: Guarded,
    call: Callable[[float], _T],
    deadline: Deadline,
    on_orphan: Callable[[_T], None],
    *,
    here: bool = True,
) -> _T:
    """Try ``call(0)`` here (unless ``here`` is False: it may wait even then); if it
    would block, repeat it in slices on the helper pool."""
    if here:
        try:
            return call(0)
        except WouldBlock:
            if deadline.timeout == 0:
                raise
    stop = threading.Event()

    def blocking() -> _T:
        while True:
            left = deadline.remaining()
            wait = _SLICE if left is None else min(_SLICE, left)
            try:
                return call(wait)
            except (WouldBlock, TimeoutExpired):
                if stop.is_set():
                    raise
                if deadline.expired():
                    raise deadline.error(f"waiting on {owner.describe()}") from None

    try:
        return await _on_helper(blocking, on_orphan)
    except asyncio.CancelledError:
        stop.set()
        raise


class _Wrapper:
    """What the asynchronous channel and listener share: the wrapped object's state."""

    _wrapped: Guarded

    @property
    def url(self) -> str:
        """The URL (see the synchronous object's)."""
        return self._wrapped.url

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._wrapped.closed

    def close(self) -> None:
        """Close the synchronous object; idempotent, never waits.

        Tasks waiting on it get ClosedResourceError.
        """
        self._wrapped.close()

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._wrapped!r}>"


class AsyncChannel(_Wrapper):
    """A :class:`unixipc.Channel` for asyncio: ``await send/receive/receive_into``.

    Timeouts, errors and limits are the channel's. ``close()`` does not wait:
    the peer gets EndOfChannel, and tasks waiting on the channel get
    ClosedResourceError.
    """

    def __init__(self, channel: Channel) -> None:
        #: The synchronous channel (pass it to hand this end to another process).
        self.channel = channel
        #: The largest message this end sends or accepts, in bytes.
        self.max_message_size = channel.max_message_size
        #: As :attr:`unixipc.Channel.authenticated`.
        self.authenticated = channel.authenticated
        self._wrapped = channel
        self._stash: list[bytes] = []  # messages a cancelled receive's helper took
        self._spin: Spin | None = None  # made at the first wait on doorbells (shm://)

    def fileno(self) -> int:
        """The channel's descriptor (see :meth:`unixipc.Channel.fileno`).

        Raises:
            UnsupportedFeature: the channel has none.
        """
        return self.channel.fileno()

    async def __aenter__(self: _A) -> _A:
        self.channel.__enter__()
        return self

    async def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Send ``data`` as one message; returns once all of it is handed to the kernel.

        Raises:
            MessageTooLarge, WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,
            ClosedResourceError: as :meth:`unixipc.Channel.send`.
        """
        deadline = Deadline(timeout)
        channel = self.channel
        while True:
            try:
                channel.send(data, timeout=0)
                break
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            spec = channel._wait_spec()
            if spec.write_fd is None:
                await _in_slices(
                    channel, lambda wait: channel.send(data, timeout=wait), deadline, _drop
                )
                return
            await self._wait(spec.write_fd, True, deadline, "sending", spec)
        # The kernel may have taken only part of it: the rest is committed. Finish
        # it while time allows; after that, later operations finish it.
        with contextlib.suppress(WouldBlock, TimeoutExpired):
            while channel._has_tail():
                channel._flush_nowait()
                if channel._has_tail():
                    spec = channel._wait_spec()
                    assert spec.write_fd is not None
                    await self._wait(spec.write_fd, True, deadline, "sending", spec)

    async def receive(self, *, timeout: float | None = None) -> bytes:
        """Wait for the next message and return it.

        Raises:
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied, MessageTooLarge,
            IPCError, ClosedResourceError: as :meth:`unixipc.Channel.receive`.
        """
        deadline = Deadline(timeout)
        if self._stash:
            return self._stash.pop(0)
        channel = self.channel
        spin = self._spin
        if spin is not None:
            message = spin.take(lambda wait: channel.receive(timeout=wait), deadline)
            if message is not None:
                return message
        while True:
            try:
                message = channel.receive(timeout=0)
                if spin is not None:
                    spin.arrived()
                return message
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            spec = channel._wait_spec()
            if spec.read_fd is None:
                return await _in_slices(
                    channel,
                    lambda wait: channel.receive(timeout=wait),
                    deadline,
                    self._stash.append,
                )
            spin = self._spinning(spec)
            await self._wait(spec.read_fd, False, deadline, "receiving", spec)

    async def receive_into(self, buffer: Buffer, *, timeout: float | None = None) -> int:
        """Receive the next message into ``buffer``; return its size.

        Raises:
            MessageTooLarge: it does not fit (it is kept for a later call).
            WouldBlock, TimeoutExpired, EndOfChannel, PeerDied, IPCError,
            ClosedResourceError: as :meth:`unixipc.Channel.receive`.
        """
        view = check_bytes_like(buffer, "buffer")
        if view.readonly:
            raise TypeError("buffer must be writable")
        deadline = Deadline(timeout)
        channel = self.channel
        if self._stash or channel._wait_spec().read_fd is None:
            message = await self.receive(timeout=timeout)
            if len(message) > len(view):
                self._stash.insert(0, message)
                raise MessageTooLarge(
                    f"{channel.describe()}: the next message has {len(message)} bytes, "
                    f"the buffer only {len(view)} (the message is kept)"
                )
            view[: len(message)] = message
            return len(message)
        spin = self._spin
        if spin is not None:
            size = spin.take(lambda wait: channel.receive_into(view, timeout=wait), deadline)
            if size is not None:
                return size
        while True:
            try:
                size = channel.receive_into(view, timeout=0)
                if spin is not None:
                    spin.arrived()
                return size
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            spec = channel._wait_spec()
            assert spec.read_fd is not None
            spin = self._spinning(spec)
            await self._wait(spec.read_fd, False, deadline, "receiving", spec)

    def _spinning(self, spec: WaitSpec) -> Spin | None:
        """A receiver on doorbells (``shm://``) is about to wait in the loop: its
        spin credit (see :mod:`unixipc.aio._spin`), told so."""
        if spec.doorbells:
            if self._spin is None:
                self._spin = Spin()
            self._spin.waiting()
        return self._spin

    async def _wait(
        self, fd: int, write: bool, deadline: Deadline, what: str, spec: WaitSpec
    ) -> None:
        """Wait for ``fd`` until the deadline, probing the peer as the spec says.

        While receiving, a committed tail keeps being written as room appears,
        or a peer waiting for it would never answer.
        """
        channel = self.channel
        interval = spec.probe_interval
        while True:
            left = deadline.remaining()
            if left is not None and left <= 0:
                raise deadline.error(f"{what} on {channel.describe()}")
            wait = interval if left is None else left if interval is None else min(left, interval)
            writable = not spec.doorbells  # a doorbell is read, whichever way we wait
            watch: tuple[tuple[int, bool], ...] = ((fd, write and writable),)
            if not write and channel._has_tail() and spec.write_fd is not None:
                watch += ((spec.write_fd, writable),)
            ready = await _ready(channel, watch, wait)
            if ready == fd or (ready is None and spec.doorbells):
                return  # the caller tries again (a ring's try looks for dead peers)
            if channel.closed:  # closed while this task was not yet watching again
                raise channel._closed_error()
            if ready is not None:
                channel._flush_nowait()
            channel._probe()


def _drop(_: object) -> None:
    """A cancelled send's helper finished: there is nothing to hand over."""


class AsyncListener(_Wrapper):
    """A :class:`unixipc.Listener` for asyncio: ``await accept()``.

    ``close()`` stops listening (see :meth:`unixipc.Listener.close`); tasks
    waiting in :meth:`accept` get ClosedResourceError.
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._wrapped = listener

    async def __aenter__(self) -> AsyncListener:
        return self

    async def accept(self, *, timeout: float | None = None) -> AsyncChannel:
        """Wait for the next client and return a channel to it.

        Raises:
            WouldBlock, TimeoutExpired, ResourceLimitError, ClosedResourceError:
                as :meth:`unixipc.Listener.accept`.
        """
        deadline = Deadline(timeout)
        listener = self.listener
        if listener._authenticates:
            # A handshake waits for its client: never in the event loop's thread.
            channel = await _in_slices(
                listener,
                lambda wait: listener.accept(timeout=wait),
                deadline,
                Resource.close,
                here=False,
            )
            return AsyncChannel(channel)
        while True:
            try:
                return AsyncChannel(listener.accept(timeout=0))
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            fd = listener._wait_spec().read_fd
            if fd is None:
                channel = await _in_slices(
                    listener, lambda wait: listener.accept(timeout=wait), deadline, Resource.close
                )
                return AsyncChannel(channel)
            left = deadline.remaining()
            if (left is not None and left <= 0) or await _ready(
                listener, ((fd, False),), left
            ) is None:
                raise deadline.error(f"accepting on {listener.url}")


async def listen(url: str, **options: Unpack[ListenOptions]) -> AsyncListener:
    """Listen on ``url`` (see :func:`unixipc.listen`) for asyncio.

    Raises:
        as :func:`unixipc.listen`.
    """
    return AsyncListener(_sync.listen(url, **options))


async def connect(
    url: str, *, timeout: float | None = None, **options: Unpack[ConnectOptions]
) -> AsyncChannel:
    """Connect to ``url`` (see :func:`unixipc.connect`) for asyncio.

    The connection is made on the helper pool; cancelling stops it within 0.2 s
    and removes what it had made.

    Raises:
        as :func:`unixipc.connect`.
    """
    registry.parse_url(url)  # bad URLs and timeouts fail here, before any thread
    check_timeout(timeout)
    deadline = _CancellableDeadline(timeout)
    given = dict(options)
    try:
        channel = await _on_helper(lambda: registry.connect(url, deadline, given), Resource.close)
    except asyncio.CancelledError:
        deadline.cancelled = True
        raise
    return AsyncChannel(channel)


def channel_pair(
    kind: PairKind, **options: Unpack[PairOptions]
) -> tuple[AsyncChannel, AsyncChannel]:
    """Two connected ends (see :func:`unixipc.channel_pair`) for asyncio.

    To hand one end to another process, pass its ``.channel``.

    Raises:
        as :func:`unixipc.channel_pair`.
    """
    first, second = registry.pair(kind, dict(options))
    return AsyncChannel(first), AsyncChannel(second)
