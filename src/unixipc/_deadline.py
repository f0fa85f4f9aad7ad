"""Timeouts and deadlines shared by every blocking call (private).

``timeout=None`` blocks, ``0`` tries once and raises :class:`WouldBlock`, a
positive number of seconds raises :class:`TimeoutExpired` when it runs out.
``math.inf`` blocks like ``None``, and so does any timeout too long to end
within the uptime of a machine (its deadline would lie beyond
``_native.FAR_DEADLINE_NS``): such values never overflow a C type.

Deadlines use the monotonic clock, never the wall clock, so a clock step in
either direction neither stretches nor cuts a wait. Waiting goes through
``select.poll`` or the C layer, both of which run Python's signal handlers on
EINTR and then continue with the time that is left (PEP 475), so Ctrl-C
interrupts a blocked call.

A layer that passes what is left of its deadline to a lower call passes
``deadline.remaining()``, a float that remembers the timeout the caller gave:
the lower call's :class:`TimeoutExpired` then says "timed out after 1 s", not
"after 0.999996 s".
"""

from __future__ import annotations

import math
import select
import time

from . import _native
from .errors import IPCError, TimeoutExpired, WouldBlock

__all__ = ("Deadline", "Remaining", "check_timeout", "format_seconds", "wait_fd")

NO_DEADLINE_NS: int = _native.NO_DEADLINE
#: A deadline (CLOCK_MONOTONIC ns) beyond this is no deadline: about 146 years of uptime.
FAR_DEADLINE_NS: int = _native.FAR_DEADLINE_NS
#: The longest single sleep handed to an API with its own limit (poll(2) takes an
#: int of milliseconds, threading's waits a time_t): longer waits are loops.
LONGEST_SLEEP = 86400.0
POLL_MS_MAX = 2**31 - 1
_INF = math.inf


def check_timeout(timeout: object, argument: str = "timeout") -> float | None:
    """Validate a timeout argument; return it as a float, or None for 'block'.

    ``math.inf`` (and an int too large for a float) is None: block.
    """
    if timeout.__class__ is float and 0.0 <= timeout < _INF:
        # The common case first: this runs on every timed call of every channel.
        return timeout
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
    return None if value == math.inf else value


def format_seconds(seconds: float) -> str:
    """A number of seconds as the user wrote it: ``1`` for 1.0, ``0.25``, ``1e-06``."""
    text = f"{seconds:g}"
    return text if float(text) == seconds else repr(float(seconds))


class Remaining(float):
    """Seconds left of a deadline, remembering the timeout the deadline was made from."""

    __slots__ = ("given",)
    given: float

    def __new__(cls, seconds: float, given: float) -> Remaining:
        self = super().__new__(cls, seconds)
        self.given = given
        return self


class Deadline:
    """The moment a blocking call gives up, fixed when the call starts."""

    __slots__ = ("_at", "given", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = check_timeout(timeout)
        # What the error message reports: the user's own timeout, also when a
        # layer above passed us what was left of it.
        self.given = getattr(timeout, "given", self.timeout)
        self._at = None if self.timeout is None else time.monotonic() + self.timeout

    @property
    def blocking(self) -> bool:
        """True when there is no deadline at all."""
        return self._at is None

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None when blocking forever."""
        if self._at is None:
            return None
        return Remaining(max(0.0, self._at - time.monotonic()), self.given or 0.0)

    def sleep_seconds(self) -> float | None:
        """What to hand to a wait with its own upper limit (``threading``'s
        waits, ``select``): the time left, at most :data:`LONGEST_SLEEP`, or
        None for forever. Callers loop until the deadline passes."""
        if self._at is None:
            return None
        return min(max(0.0, self._at - time.monotonic()), LONGEST_SLEEP)

    def expired(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def poll_ms(self) -> int:
        """The timeout for poll(2): -1 forever, else milliseconds rounded up
        (at most poll's maximum: callers loop until the deadline passes)."""
        if self._at is None:
            return -1
        left = max(0.0, self._at - time.monotonic())
        return min(math.ceil(left * 1000), POLL_MS_MAX)

    def as_ns(self) -> int:
        """The deadline on CLOCK_MONOTONIC in ns for the C layer, or -1 for none.

        A deadline too far away to matter (beyond ``FAR_DEADLINE_NS``) is none.
        """
        if self._at is None:
            return NO_DEADLINE_NS
        at = self._at * 1e9
        return NO_DEADLINE_NS if at > FAR_DEADLINE_NS else int(at)

    def error(self, what: str) -> IPCError:
        """The exception for running out of time: WouldBlock for 0, else TimeoutExpired."""
        if self.given == 0:
            return WouldBlock(f"{what} would block")
        return TimeoutExpired(f"{what} timed out after {format_seconds(self.given or 0.0)} s")


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
