"""When an asyncio receive on shared memory waits in the ring's own spin (private).

Waiting through the event loop costs a wake-up of the sleeping core (about
24 µs on the project's 2-vCPU VM) and a round of the loop, on each side of a
round trip; a peer that answers within microseconds is caught sooner by the
blocking call of the ring, topic or ``shm://`` channel with a timeout of
:data:`BUDGET`, whose wait spins before it sleeps. That blocks the event loop,
so a receiver spins only while its messages come that soon: each spin that
finds nothing uses up one of :data:`MISSES` credits, and only a message that
came within about the budget of the start of a loop wait gives them back. An
idle or slow stream therefore stops spinning after a few tries, and an idle
waiter costs nothing (issue 18: an asyncio 64 B round trip over ``shm://``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .._deadline import Deadline
from ..errors import TimeoutExpired

_T = TypeVar("_T")

#: The longest a receive blocks the event loop spinning for a message, in seconds.
BUDGET = 50e-6
#: Spins in a row that found nothing before a receiver only waits through the loop.
MISSES = 4
# A wait through the loop this short (a wake-up included) would have been a spin.
_SOON = 2 * BUDGET


class Spin:
    """The spin credit of one asynchronous receiver."""

    __slots__ = ("_credit", "_since", "caught", "tries")

    def __init__(self) -> None:
        self._credit = 0
        self._since: float | None = None
        self.tries = 0  # spins made, and those that took a message (for tests and tuning)
        self.caught = 0

    def take(self, call: Callable[[float], _T], deadline: Deadline) -> _T | None:
        """``call(timeout)`` with the budget as its timeout while the credit lasts;
        None if it has none, or nothing came (the caller then waits in the loop)."""
        self._since = None
        if self._credit <= 0 or deadline.timeout == 0:
            return None
        left = deadline.remaining()
        budget = BUDGET if left is None else min(BUDGET, left)
        if budget <= 0:
            return None
        self.tries += 1
        try:
            result = call(budget)
        except TimeoutExpired:
            self._credit -= 1
            return None
        self.caught += 1
        return result

    def waiting(self) -> None:
        """The receiver starts waiting in the event loop."""
        if self._since is None:
            self._since = time.monotonic()

    def arrived(self) -> None:
        """A message was taken: if it came soon after the loop wait began, spin again."""
        if self._since is not None:
            if time.monotonic() - self._since <= _SOON:
                self._credit = MISSES
            self._since = None
