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

from typing import TYPE_CHECKING

from ..ring import Ring
from ._spin import Spin
from .topic import _retry

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = ("AsyncRing",)


class AsyncRing:
    """A :class:`unixipc.Ring` handle for asyncio: ``await send/receive``.

    Timeouts, errors and limits are the ring's; ``.ring`` is the handle itself.
    """

    def __init__(self, ring: Ring) -> None:
        self.ring = ring
        self._spin = Spin()

    async def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Append one message, waiting (without blocking the loop) for room.

        Raises:
            as ``Ring.send``.
        """
        ring = self.ring
        await _retry(ring, lambda wait: ring.send(data, timeout=wait), timeout, "send")

    async def receive(self, *, timeout: float | None = None) -> bytes:
        """The next message.

        Raises:
            as ``Ring.receive``.
        """
        ring = self.ring
        return await _retry(
            ring, lambda wait: ring.receive(timeout=wait), timeout, "receive", self._spin
        )

    async def receive_into(self, buffer: Buffer, *, timeout: float | None = None) -> int:
        """Copy the next message into ``buffer``; return its length (see ``Ring.receive_into``)."""
        ring = self.ring
        return await _retry(
            ring,
            lambda wait: ring.receive_into(buffer, timeout=wait),
            timeout,
            "receive_into",
            self._spin,
        )

    async def receive_many(self, max_count: int, *, timeout: float | None = None) -> list[bytes]:
        """At least one and at most ``max_count`` messages (see ``Ring.receive_many``)."""
        ring = self.ring
        return await _retry(
            ring,
            lambda wait: ring.receive_many(max_count, timeout=wait),
            timeout,
            "receive_many",
            self._spin,
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
