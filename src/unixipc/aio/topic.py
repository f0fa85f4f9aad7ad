"""Topics for asyncio: ``await`` on shared memory through doorbells, no helper threads.

::

    subscriber = unixipc.aio.AsyncSubscriber(topic.subscribe())
    async for message in subscriber:
        ...
    publisher = unixipc.aio.AsyncPublisher(topic.publisher())
    await publisher.publish(b"frame")
    ready = await unixipc.aio.wait([subscriber_a, subscriber_b, queue], timeout=5)

Every operation first tries the synchronous call with ``timeout=0`` (the fast
path, shared); when that would block it has armed the object's doorbell, and the
task waits for the doorbell's descriptor with ``loop.add_reader``. Waits also end
every 0.2 s to let the object look for dead peers. A subscriber whose messages
come within microseconds first spins up to 50 µs in the topic's own wait
(:mod:`unixipc.aio._spin`). Cancelling a task loses nothing: a message is taken
only by a call that returns it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from .._deadline import Deadline
from ..errors import WouldBlock
from ..topic import Publisher, Subscriber
from ..waitset import SLICE, Waitable, _describe
from ._spin import Spin

__all__ = ("AsyncPublisher", "AsyncSubscriber", "wait")

_T = TypeVar("_T")


async def _readable(fds: list[int], seconds: float | None) -> set[int]:
    """Wait until one of ``fds`` is readable or ``seconds`` pass; return the readable ones."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    fired: set[int] = set()

    def wake(fd: int) -> None:
        fired.add(fd)
        if not woken.done():
            woken.set_result(None)

    registered: list[int] = []
    try:
        for fd in fds:
            if fd not in registered:
                loop.add_reader(fd, wake, fd)
                registered.append(fd)
        if seconds is None:
            await woken
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(woken, seconds)
    finally:
        for fd in registered:
            loop.remove_reader(fd)
    return fired


class _Doorbelled(Protocol):
    """A ring handle, topic publisher or subscriber: what _retry needs of it."""

    def fileno(self) -> int: ...

    def describe(self) -> str: ...


async def _retry(
    obj: _Doorbelled,
    call: Callable[[float], _T],
    timeout: float | None,
    what: str,
    spin: Spin | None = None,
) -> _T:
    """``call(timeout=0)`` until it succeeds, waiting on ``obj``'s doorbell between
    tries (a try that would block arms it) and ending every 0.2 s so that the next
    try looks for dead peers. A receive passes its ``spin``: while its messages come
    soon, ``call`` first gets the spin's budget as its timeout."""
    deadline = Deadline(timeout)
    if spin is not None:
        result = spin.take(call, deadline)
        if result is not None:
            return result
    obj.fileno()  # the doorbell exists before the first try, which arms it
    while True:
        try:
            result = call(0)
        except WouldBlock:
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.error(f"{what} on {obj.describe()}") from None
        else:
            if spin is not None:
                spin.arrived()
            return result
        if spin is not None:
            spin.waiting()
        left = deadline.remaining()
        await _readable([obj.fileno()], SLICE if left is None else min(left, SLICE))


class AsyncSubscriber:
    """A topic :class:`~unixipc.topic.Subscriber` for asyncio: ``await receive()``, ``async for``.

    Timeouts, errors (``MessagesMissed`` included) and limits are the subscriber's.
    """

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self._spin = Spin()

    async def receive(self, *, timeout: float | None = None) -> bytes:
        """The next message.

        Raises:
            MessagesMissed, WouldBlock, TimeoutExpired, ClosedResourceError: as
                ``Subscriber.receive``.
        """
        subscriber = self.subscriber
        return await _retry(
            subscriber,
            lambda wait: subscriber.receive(timeout=wait),
            timeout,
            "receive",
            self._spin,
        )

    async def receive_into(self, buffer: Any, *, timeout: float | None = None) -> int:
        """Copy the next message into ``buffer``; return its length (see ``receive_into``)."""
        subscriber = self.subscriber
        return await _retry(
            subscriber,
            lambda wait: subscriber.receive_into(buffer, timeout=wait),
            timeout,
            "receive_into",
            self._spin,
        )

    async def receive_many(self, max_count: int, *, timeout: float | None = None) -> list[bytes]:
        """At least one and at most ``max_count`` messages (see ``receive_many``)."""
        subscriber = self.subscriber
        return await _retry(
            subscriber,
            lambda wait: subscriber.receive_many(max_count, timeout=wait),
            timeout,
            "receive_many",
            self._spin,
        )

    def fileno(self) -> int:
        """The subscriber's doorbell (so that :func:`wait` takes this object too)."""
        return self.subscriber.fileno()

    def ready(self) -> bool:
        """As ``Subscriber.ready``."""
        return self.subscriber.ready()

    def __aiter__(self) -> AsyncSubscriber:
        return self

    async def __anext__(self) -> bytes:
        return await self.receive()

    def close(self) -> None:
        """Close the subscriber."""
        self.subscriber.close()


class AsyncPublisher:
    """A topic :class:`~unixipc.topic.Publisher` for asyncio: ``await publish(data)``."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish(self, data: Any, *, timeout: float | None = None) -> None:
        """Publish ``data``, waiting (without blocking the loop) while the topic is full.

        Raises:
            MessageTooLarge, WouldBlock, TimeoutExpired, ClosedResourceError: as
                ``Publisher.publish``.
        """
        publisher = self.publisher
        await _retry(
            publisher, lambda wait: publisher.publish(data, timeout=wait), timeout, "publish"
        )

    def fileno(self) -> int:
        """The publisher's doorbell."""
        return self.publisher.fileno()

    def ready(self) -> bool:
        """As ``Publisher.ready``."""
        return self.publisher.ready()

    def close(self) -> None:
        """Close the publisher."""
        self.publisher.close()


async def wait(objects: Iterable[Waitable], *, timeout: float | None = None) -> list[Waitable]:
    """:func:`unixipc.wait` for asyncio: the ready objects, waiting without blocking the loop.

    Raises:
        TypeError: an object has no readiness descriptor.
        WouldBlock: ``timeout=0`` and nothing is ready.
        TimeoutExpired: nothing became ready in time.
    """
    deadline = Deadline(timeout)
    objects = list(objects)
    if not objects:
        raise ValueError("wait() needs at least one object")
    while True:
        entries = [(obj, *_describe(obj)) for obj in objects]
        ready = {id(obj) for obj, _, probe in entries if probe is not None and probe()}
        if not ready:
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.error("wait")
            left = deadline.remaining()
            probing = any(probe is not None for _, _, probe in entries)
            seconds = left if not probing else SLICE if left is None else min(left, SLICE)
            fired = await _readable([fd for _, fd, _ in entries], seconds)
            for obj, fd, probe in entries:
                if fd in fired and (probe is None or probe()):
                    ready.add(id(obj))
        if ready:
            return [obj for obj, _, _ in entries if id(obj) in ready]
