"""Pieces several adapters share."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable
from typing import Any

from ... import inspect
from ..transport import Link, Plan


def read_limit(path: str, default: int) -> int:
    """An integer kernel limit from /proc/sys (``default`` if it cannot be read)."""
    try:
        with open(path) as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def remove_paths(plan: Plan) -> None:
    """Remove every file this run left in the work directory (FIFOs, sockets)."""
    for path in glob.glob(glob.escape(plan.path("")) + "*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def remove_shared_memory_names(prefix: str) -> None:
    """Remove the POSIX shared memory objects named ``prefix``...: the liveness tokens
    of queue channels, which a listener killed at the time limit cannot remove."""
    for item in inspect.find(["posix-shm"], prefix=prefix):
        quietly(inspect.remove, item)


def quietly(action: Callable[..., Any], *args: Any) -> None:
    """Run a cleanup action; the object may already be gone."""
    with contextlib.suppress(Exception):
        action(*args)


class FixedSizeReceiver:
    """Reads whole ``size``-byte messages from a byte stream into one reused buffer."""

    def __init__(self, receive_into: Callable[[memoryview], int], size: int) -> None:
        self._receive_into = receive_into
        self.buffer = bytearray(size)
        self._view = memoryview(self.buffer)
        self._size = size

    def receive(self) -> bytearray:
        got = self._receive_into(self._view)
        while got < self._size:
            count = self._receive_into(self._view[got:])
            if not count:
                raise EOFError("the stream ended inside a message")
            got += count
        return self.buffer


class SplitLink(Link):
    """A link made of a sending callable, a receiving callable and what to close."""

    def __init__(
        self,
        send: Callable[[Any], Any],
        receive: Callable[[], Any],
        closers: tuple[Callable[[], Any], ...] = (),
    ) -> None:
        self.send = send  # type: ignore[method-assign, assignment]
        self.receive = receive  # type: ignore[method-assign]
        self._closers = closers

    def close(self) -> None:
        for close in self._closers:
            close()
