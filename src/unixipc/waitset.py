"""Waiting on many objects at once: :func:`unixipc.wait` and :class:`WaitSet`.

::

    ready = unixipc.wait([subscriber, queue, sock], timeout=5)
    for obj in ready:
        ...  # a receive on obj would not block now

Anything with a readiness descriptor can be waited on: topic subscribers and
publishers (their doorbells), POSIX message queues, sockets, pipes and FIFOs,
channels with ``fileno()``, or a plain descriptor number. One ``poll(2)`` call
watches all of them: no thread per object.

Objects that also have ``ready()`` (the shared-memory ones, whose descriptor is
a doorbell) are asked before sleeping and after every wake-up, so they are
reported only when a receive would really succeed; a doorbell that rang for a
message another call already took costs a look, not a false report. Other
objects are reported when their descriptor is readable (which includes an end
of file or an error: the receive then says which). Objects with ``ready()`` are
also asked every 0.2 s, so that what a dead peer left behind is repaired even
when nobody rings.

The readiness protocol, for shared-memory objects that adopt doorbells: an
object provides ``fileno()`` and ``ready() -> bool``; ``ready()`` returns True
when the operation would succeed now, and otherwise arms the doorbell so that
``fileno()`` becomes readable when that may have changed.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterable
from typing import Protocol, TypeAlias, runtime_checkable

from ._deadline import Deadline

__all__ = ("HasFileno", "Readiness", "WaitSet", "wait")

#: How often objects with ready() are asked even when nothing rang (seconds).
SLICE = 0.2


@runtime_checkable
class HasFileno(Protocol):
    """An object with a readiness descriptor (a socket, a queue, a pipe end...)."""

    def fileno(self) -> int: ...


@runtime_checkable
class Readiness(HasFileno, Protocol):
    """A shared-memory object with a doorbell: ``ready()`` arms it (see the module)."""

    def ready(self) -> bool: ...


Waitable: TypeAlias = HasFileno | int


def _describe(obj: object) -> tuple[int, Callable[[], bool] | None]:
    """The descriptor to watch and the ready() probe, or TypeError before any call."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        if obj < 0:
            raise ValueError(f"a descriptor must be >= 0, got {obj}")
        return obj, None
    fileno = getattr(obj, "fileno", None)
    if not callable(fileno):
        raise TypeError(
            f"cannot wait on {type(obj).__name__}: it has no fileno() (a readiness descriptor)"
        )
    probe = getattr(obj, "ready", None)
    return fileno(), probe if callable(probe) else None


class WaitSet:
    """A set of objects to wait on together; ``wait()`` returns those that are ready.

    Objects are kept in the order they were added, and ``wait()`` reports them in
    that order. Adding an object twice keeps one entry.
    """

    def __init__(self, objects: Iterable[Waitable] = ()) -> None:
        self._objects: list[Waitable] = []
        for obj in objects:
            self.add(obj)

    def add(self, obj: Waitable) -> None:
        """Watch ``obj`` (anything with ``fileno()``, or a descriptor number).

        Raises:
            TypeError: ``obj`` has no readiness descriptor.
        """
        _describe(obj)
        if not any(existing is obj for existing in self._objects):
            self._objects.append(obj)

    def remove(self, obj: Waitable) -> None:
        """Stop watching ``obj``.

        Raises:
            KeyError: ``obj`` is not in the set.
        """
        for index, existing in enumerate(self._objects):
            if existing is obj:
                del self._objects[index]
                return
        raise KeyError(obj)

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, obj: object) -> bool:
        return any(existing is obj for existing in self._objects)

    def wait(self, *, timeout: float | None = None) -> list[Waitable]:
        """Block until at least one object is ready; return every ready one.

        Raises:
            ValueError: the set is empty (nothing could ever become ready).
            WouldBlock: ``timeout=0`` and nothing is ready.
            TimeoutExpired: nothing became ready in time.
            ClosedResourceError: an object was closed.
        """
        deadline = Deadline(timeout)
        if not self._objects:
            raise ValueError("wait() needs at least one object")
        while True:
            entries = [(obj, *_describe(obj)) for obj in self._objects]
            ready = {id(obj) for obj, _, probe in entries if probe is not None and probe()}
            poller = select.poll()
            for _, fd, _ in entries:
                poller.register(fd, select.POLLIN)
            if ready:
                milliseconds = 0
            else:
                milliseconds = deadline.poll_ms()
                if any(probe is not None for _, _, probe in entries):
                    slice_ms = int(SLICE * 1000)
                    milliseconds = slice_ms if milliseconds < 0 else min(milliseconds, slice_ms)
            fired = {fd for fd, _ in poller.poll(milliseconds)}
            for obj, fd, probe in entries:
                if fd in fired and id(obj) not in ready and (probe is None or probe()):
                    ready.add(id(obj))
            if ready:
                return [obj for obj, _, _ in entries if id(obj) in ready]
            if deadline.expired() or deadline.timeout == 0:
                raise deadline.error("wait")


def wait(objects: Iterable[Waitable], *, timeout: float | None = None) -> list[Waitable]:
    """Block until at least one of ``objects`` is ready; return the ready ones, in order.

    ``objects`` may mix topic subscribers and publishers, POSIX message queues,
    sockets, pipes, channels with ``fileno()`` and descriptor numbers (see
    :mod:`unixipc.waitset`).

    Raises:
        TypeError: an object has no readiness descriptor.
        WouldBlock: ``timeout=0`` and nothing is ready.
        TimeoutExpired: nothing became ready in time.
    """
    return WaitSet(objects).wait(timeout=timeout)
