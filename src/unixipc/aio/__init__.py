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

How an operation waits, per scheme:

- ``pipe``, ``socketpair``, ``unix``, ``unix-abstract``, ``tcp``, ``fifo``: the
  channel's descriptors with ``loop.add_reader``/``add_writer`` (end-of-file
  tells the loop when the peer goes).
- ``mq``: the queue descriptors with ``add_reader``/``add_writer``, waking every
  0.2 s to probe the peer's liveness token.
- ``sysvmq`` and ``shm``: no descriptor to watch; a helper thread makes the
  blocking call in slices of 0.2 s. A cancelled ``receive`` keeps the message
  its thread may still have taken for the next ``receive``; a cancelled ``send``
  may still have sent its message.

``connect`` runs in a helper thread (FIFO and queue connections wait for the
server's ``accept``); cancelling it stops the thread within 0.2 s and undoes
what it made. One task may send and one receive on a channel at the same time.

Topics (:mod:`unixipc.aio.topic`): ``AsyncSubscriber``, ``AsyncPublisher`` and
``wait`` use the topics' doorbell descriptors: no helper thread at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .. import channel as _sync
from .._channel_base import Channel, Listener
from .._deadline import Deadline, check_timeout
from .._names import check_bytes_like
from .._resource import Resource
from ..errors import MessageTooLarge, TimeoutExpired, WouldBlock
from .topic import AsyncPublisher as AsyncPublisher
from .topic import AsyncSubscriber as AsyncSubscriber
from .topic import wait as wait

__all__ = (
    "AsyncChannel",
    "AsyncListener",
    "AsyncPublisher",
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


def _in_thread(function: Callable[[], _T], on_orphan: Callable[[_T], None]) -> asyncio.Future[_T]:
    """Run ``function`` in a daemon thread; its result if the awaiting task was cancelled
    goes to ``on_orphan``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def deliver(result: _T | None, error: BaseException | None) -> None:
        if future.cancelled():
            if error is None:
                on_orphan(result)  # type: ignore[arg-type]
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = function()
        except BaseException as error:
            outcome: tuple[Any, BaseException | None] = (None, error)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(deliver, *outcome)

    threading.Thread(target=run, name="unixipc-aio", daemon=True).start()
    return future


async def _wait_fd(fd: int, write: bool, seconds: float | None, also_write: int = -1) -> bool:
    """Wait until ``fd`` is ready (True) or ``seconds`` pass (False).

    With ``also_write``, becoming writable wakes the wait too (reported as False).
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[bool] = loop.create_future()

    def wake(value: bool) -> None:
        if not ready.done():
            ready.set_result(value)

    watched: list[tuple[Callable[[int], object], int]] = []
    try:
        if write:
            loop.add_writer(fd, wake, True)
            watched.append((loop.remove_writer, fd))
        else:
            loop.add_reader(fd, wake, True)
            watched.append((loop.remove_reader, fd))
        if also_write >= 0:
            loop.add_writer(also_write, wake, False)
            watched.append((loop.remove_writer, also_write))
        if seconds is None:
            return await ready
        try:
            return await asyncio.wait_for(ready, seconds)
        except asyncio.TimeoutError:
            return False
    finally:
        for remove, watched_fd in watched:
            remove(watched_fd)


class AsyncChannel:
    """A :class:`unixipc.Channel` for asyncio: ``await send/receive/receive_into``.

    Timeouts, errors and limits are the channel's. ``close()`` does not wait.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._stash: list[bytes] = []  # messages a cancelled receive's thread took

    @property
    def url(self) -> str:
        """The channel's URL."""
        return self.channel.url

    @property
    def max_message_size(self) -> int:
        """The largest message this end sends or accepts, in bytes."""
        return self.channel.max_message_size

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self.channel.closed

    def fileno(self) -> int:
        """The channel's descriptor (see :meth:`unixipc.Channel.fileno`).

        Raises:
            UnsupportedFeature: the channel has none.
        """
        return self.channel.fileno()

    def close(self) -> None:
        """Close the channel (the peer gets EndOfChannel); idempotent, never waits."""
        self.channel.close()

    async def __aenter__(self: _A) -> _A:
        self.channel.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AsyncChannel {self.channel!r}>"

    async def send(self, data: Any, *, timeout: float | None = None) -> None:
        """Send ``data`` as one message; returns once all of it is handed to the kernel.

        Raises:
            MessageTooLarge, WouldBlock, TimeoutExpired, EndOfChannel, PeerDied,
            ClosedResourceError: as :meth:`unixipc.Channel.send`.
        """
        deadline = Deadline(timeout)
        channel = self.channel
        fd = channel._write_fd()
        if fd is None:
            await self._threaded(lambda wait: channel.send(data, timeout=wait), deadline, None)
            return
        while True:
            try:
                channel.send(data, timeout=0)
                break
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            await self._wait(fd, True, deadline, "sending")
        # The kernel may have taken only part of it: the rest is committed. Finish
        # it while time allows; after that, later operations finish it.
        with contextlib.suppress(WouldBlock, TimeoutExpired):
            while channel._has_tail():
                channel._flush_nowait()
                if channel._has_tail():
                    await self._wait(fd, True, deadline, "sending")

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
        fd = channel._read_fd()
        if fd is None:
            return await self._threaded(
                lambda wait: channel.receive(timeout=wait), deadline, self._stash.append
            )
        while True:
            try:
                return channel.receive(timeout=0)
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            await self._wait(fd, False, deadline, "receiving")

    async def receive_into(self, buffer: Any, *, timeout: float | None = None) -> int:
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
        fd = channel._read_fd()
        if fd is None or self._stash:
            message = await self.receive(timeout=timeout)
            if len(message) > len(view):
                self._stash.insert(0, message)
                raise MessageTooLarge(
                    f"{channel.describe()}: the next message has {len(message)} bytes, "
                    f"the buffer only {len(view)} (the message is kept)"
                )
            view[: len(message)] = message
            return len(message)
        while True:
            try:
                return channel.receive_into(view, timeout=0)
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            await self._wait(fd, False, deadline, "receiving")

    async def _wait(self, fd: int, write: bool, deadline: Deadline, what: str) -> None:
        """Wait for ``fd`` until the deadline, probing the peer if the channel needs it.

        While receiving, a committed tail keeps being written as room appears,
        or a peer waiting for it would never answer.
        """
        channel = self.channel
        interval = channel._probe_interval
        while True:
            left = deadline.remaining()
            if left is not None and left <= 0:
                raise deadline.error(f"{what} on {channel.describe()}")
            wait = interval if left is None else left if interval is None else min(left, interval)
            tail_fd = -1
            if not write and channel._has_tail():
                tail_fd = channel._write_fd() or -1
            if await _wait_fd(fd, write, wait, tail_fd):
                return
            if tail_fd >= 0:
                channel._flush_nowait()
            channel._probe()

    async def _threaded(
        self,
        call: Callable[[float], _T],
        deadline: Deadline,
        on_orphan: Callable[[_T], None] | None,
    ) -> _T:
        """Try ``call(0)`` here; if it would block, repeat it in slices in a helper thread."""
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
                        raise deadline.error(f"waiting on {self.channel.describe()}") from None

        future = _in_thread(blocking, on_orphan or (lambda _: None))
        try:
            return await future
        except asyncio.CancelledError:
            stop.set()
            raise


class AsyncListener:
    """A :class:`unixipc.Listener` for asyncio: ``await accept()``."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return self.listener.url

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self.listener.closed

    def close(self) -> None:
        """Stop listening (see :meth:`unixipc.Listener.close`); never waits."""
        self.listener.close()

    async def __aenter__(self) -> AsyncListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AsyncListener {self.listener!r}>"

    async def accept(self, *, timeout: float | None = None) -> AsyncChannel:
        """Wait for the next client and return a channel to it.

        Raises:
            WouldBlock, TimeoutExpired, ResourceLimitError, ClosedResourceError:
                as :meth:`unixipc.Listener.accept`.
        """
        deadline = Deadline(timeout)
        listener = self.listener
        fileno = getattr(listener, "fileno", None)
        if fileno is None:
            stop = threading.Event()

            def blocking() -> Channel:
                while True:
                    left = deadline.remaining()
                    wait = _SLICE if left is None else min(_SLICE, left)
                    try:
                        return listener.accept(timeout=wait)
                    except (WouldBlock, TimeoutExpired):
                        if stop.is_set() or deadline.expired():
                            raise

            future = _in_thread(blocking, Resource.close)
            try:
                return AsyncChannel(await future)
            except asyncio.CancelledError:
                stop.set()
                raise
        while True:
            try:
                return AsyncChannel(listener.accept(timeout=0))
            except WouldBlock:
                if deadline.timeout == 0:
                    raise
            left = deadline.remaining()
            if (left is not None and left <= 0) or not await _wait_fd(fileno(), False, left):
                raise deadline.error(f"accepting on {listener.url}")


async def listen(url: str, **options: Any) -> AsyncListener:
    """Listen on ``url`` (see :func:`unixipc.listen`) for asyncio.

    Raises:
        as :func:`unixipc.listen`.
    """
    return AsyncListener(_sync.listen(url, **options))


async def connect(url: str, *, timeout: float | None = None, **options: Any) -> AsyncChannel:
    """Connect to ``url`` (see :func:`unixipc.connect`) for asyncio.

    The connection is made in a helper thread; cancelling stops it within 0.2 s
    and removes what it had made.

    Raises:
        as :func:`unixipc.connect`.
    """
    _sync.parse_url(url)  # bad URLs and timeouts fail here, before any thread
    check_timeout(timeout)
    deadline = _CancellableDeadline(timeout)
    future = _in_thread(lambda: _sync._connect(url, deadline, options), Resource.close)
    try:
        return AsyncChannel(await future)
    except asyncio.CancelledError:
        deadline.cancelled = True
        raise


def channel_pair(kind: str, **options: Any) -> tuple[AsyncChannel, AsyncChannel]:
    """Two connected ends (see :func:`unixipc.channel_pair`) for asyncio.

    To hand one end to another process, pass its ``.channel``.

    Raises:
        as :func:`unixipc.channel_pair`.
    """
    first, second = _sync.channel_pair(kind, **options)
    return AsyncChannel(first), AsyncChannel(second)
