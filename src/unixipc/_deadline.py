"""Timeouts and deadlines shared by every blocking call (private).

``timeout=None`` blocks, ``0`` tries once and raises :class:`WouldBlock`, a
positive number of seconds raises :class:`TimeoutExpired` when it runs out.
Deadlines use the monotonic clock. Waiting goes through ``select.poll`` or the
C layer, both of which run Python's signal handlers on EINTR and then continue
with the time that is left (PEP 475), so Ctrl-C interrupts a blocked call.
"""

from __future__ import annotations

import math
import select
import time

from .errors import IPCError, TimeoutExpired, WouldBlock

__all__ = ("Deadline", "check_timeout", "wait_fd")

NO_DEADLINE_NS = -1


def check_timeout(timeout: object, argument: str = "timeout") -> float | None:
    """Validate a timeout argument; return it as a float, or None for 'block'."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"{argument} must be a number of seconds or None, not {type(timeout).__name__}"
        )
    try:
        value = float(timeout)
    except OverflowError:  # an int beyond any float
        value = math.inf if timeout > 0 else -math.inf
    if math.isnan(value) or value < 0:
        raise ValueError(f"{argument} must be >= 0 seconds or None, got {timeout!r}")
    return None if value == math.inf else value  # math.inf blocks, as None does


class Deadline:
    """The moment a blocking call gives up, fixed when the call starts."""

    __slots__ = ("_at", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = check_timeout(timeout)
        self._at = None if self.timeout is None else time.monotonic() + self.timeout

    @property
    def blocking(self) -> bool:
        """True when there is no deadline at all."""
        return self._at is None

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None when blocking forever."""
        if self._at is None:
            return None
        return max(0.0, self._at - time.monotonic())

    def expired(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def poll_ms(self) -> int:
        """The timeout for poll(2): -1 forever, else milliseconds rounded up."""
        left = self.remaining()
        if left is None:
            return -1
        return math.ceil(left * 1000)

    def as_ns(self) -> int:
        """The deadline on CLOCK_MONOTONIC in ns for the C layer, or -1 for none."""
        if self._at is None:
            return NO_DEADLINE_NS
        at = self._at * 1e9
        # A deadline beyond what int64 ns holds (about 292 years) blocks.
        return NO_DEADLINE_NS if at >= 2**63 - 1 else int(at)

    def error(self, what: str) -> IPCError:
        """The exception for running out of time: WouldBlock for 0, else TimeoutExpired."""
        if self.timeout == 0:
            return WouldBlock(f"{what} would block")
        return TimeoutExpired(f"{what} timed out after {self.timeout:g} s")


def wait_fd(fd: int, events: int, deadline: Deadline, what: str) -> int:
    """Wait until ``fd`` reports one of ``events`` (poll flags) or the deadline passes.

    Returns the events reported (which may include POLLHUP/POLLERR). Raises the
    deadline's error when time runs out.
    """
    poller = select.poll()
    poller.register(fd, events)
    while True:
        ready = poller.poll(deadline.poll_ms())
        if ready:
            return ready[0][1]
        if deadline.expired() or deadline.timeout == 0:
            raise deadline.error(what)
