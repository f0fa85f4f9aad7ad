"""The base every unixipc object with a handle shares (private).

``close()`` is idempotent, ``closed`` tells, ``with obj:`` closes on exit, using
a closed object raises :class:`ClosedResourceError`, and an object that is
garbage-collected while still open emits a ResourceWarning (then releases).
Synchronization objects override ``__enter__``/``__exit__`` to acquire/release.
"""

from __future__ import annotations

import contextlib
import warnings
from types import TracebackType
from typing import ClassVar, TypeVar

from .errors import ClosedResourceError

__all__ = ("Resource",)

_R = TypeVar("_R", bound="Resource")


class Resource:
    """A handle on a kernel object owned by this process."""

    #: What the object is, for messages ("FIFO", "POSIX message queue", ...).
    kind: ClassVar[str] = "IPC object"

    _closed: bool = True  # stays True if a subclass __init__ fails early
    _name: object = None

    def _opened(self, name: object) -> None:
        """Call once the handle is held: from now on close() must release it."""
        self._name = name
        self._closed = False

    def _release(self) -> None:
        """Release the handle. Called exactly once."""

    @property
    def closed(self) -> bool:
        """True once close() has been called."""
        return self._closed

    def close(self) -> None:
        """Release this process's handle. Calling it again does nothing.

        Closing never removes the object from the system: that is ``unlink()``.
        """
        if self._closed:
            return
        self._closed = True
        self._release()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError(f"{self.describe()} is closed")

    def describe(self) -> str:
        """A short description naming the object, used in messages."""
        return f"{self.kind} {self._name!r}"

    def __enter__(self: _R) -> _R:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._name!r} {state}>"

    def __del__(self) -> None:
        if self._closed:
            return
        warnings.warn(f"unclosed {self.describe()}", ResourceWarning, stacklevel=2, source=self)
        with contextlib.suppress(Exception):
            self.close()
