"""Rings for asyncio: ``await`` on a :class:`unixipc.Ring` through its doorbell, no threads.

::

    ring = unixipc.aio.AsyncRing(unixipc.Ring.open("/jobs"))
    await ring.send(b"job")
    job = await ring.receive()

Every operation first tries the synchronous call with ``timeout=0`` (the fast
path, untouched); when that would block it has armed the ring's doorbell, and
the task waits for the doorbell's descriptor with ``loop.add_reader``. Waits end
every 0.2 s so that the next try looks for dead peers. A receiver whose messages
come within microseconds first spins up to 50 µs in the ring's own wait
(:mod:`unixipc.aio._spin`). Cancelling a task loses nothing: a message is taken
only by a call that returns it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .._deadline import Deadline
from ..errors import WouldBlock
from ..ring import Ring
from ..waitset import SLICE
from ._spin import Spin
from .topic import _readable

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ("AsyncRing",)

_T = TypeVar("_T")


class AsyncRing:
    """A :class:`unixipc.Ring` handle for asyncio: ``await send/receive``.

    Timeouts, errors and limits are the ring's; ``.ring`` is the handle itself.
    """

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self._spin = Spin()

    async def _retry(
        self,
        call: Callable[[], _T],
        deadline: Deadline,
        what: str,
        spinning: Callable[[float], _T] | None = None,
    ) -> _T:
        """``call()`` (a try with timeout=0) until it succeeds; a receive passes
        ``spinning(timeout)`` too, to spin first while its messages come soon."""
        ring = self.ring
        ring.fileno()  # the doorbell exists before the first try, which arms it
        spin = self._spin if spinning is not None else None
        if spin is not None and spinning is not None:
            result = spin.take(spinning, deadline)
            if result is not None:
                return result
        while True:
            try:
                result = call()
                if spin is not None:
                    spin.arrived()
                return result
            except WouldBlock:
                if deadline.timeout == 0 or deadline.expired():
                    raise deadline.error(f"{what} on {ring.describe()}") from None
            left = deadline.remaining()
            if spin is not None:
                spin.waiting()
            await _readable([ring.fileno()], SLICE if left is None else min(left, SLICE))

    async def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Append one message, waiting (without blocking the loop) for room.

        Raises:
            as ``Ring.send``.
        """
        await self._retry(lambda: self.ring.send(data, timeout=0), Deadline(timeout), "send")

    async def receive(self, *, timeout: float | None = None) -> bytes:
        """The next message.

        Raises:
            as ``Ring.receive``.
        """
        ring = self.ring
        return await self._retry(
            lambda: ring.receive(timeout=0),
            Deadline(timeout),
            "receive",
            lambda wait: ring.receive(timeout=wait),
        )

    async def receive_into(self, buffer: Buffer, *, timeout: float | None = None) -> int:
        """Copy the next message into ``buffer``; return its length (see ``Ring.receive_into``)."""
        ring = self.ring
        return await self._retry(
            lambda: ring.receive_into(buffer, timeout=0),
            Deadline(timeout),
            "receive_into",
            lambda wait: ring.receive_into(buffer, timeout=wait),
        )

    async def receive_many(self, max_count: int, *, timeout: float | None = None) -> list[bytes]:
        """At least one and at most ``max_count`` messages (see ``Ring.receive_many``)."""
        ring = self.ring
        return await self._retry(
            lambda: ring.receive_many(max_count, timeout=0),
            Deadline(timeout),
            "receive_many",
            lambda wait: ring.receive_many(max_count, timeout=wait),
        )

    def fileno(self) -> int:
        """The ring's doorbell (so that :func:`unixipc.aio.wait` takes this object too)."""
        return self.ring.fileno()

    def ready(self) -> bool:
        """As ``Ring.ready``."""
        return self.ring.ready()

    def close(self) -> None:
        """Close the ring handle."""
        self.ring.close()
