"""The base every unixipc object with a handle shares (private).

``close()`` is idempotent, ``closed`` tells, ``with obj:`` closes on exit, using
a closed object raises :class:`ClosedResourceError`, and an object that is
garbage-collected while still open emits a ResourceWarning (then releases).
:class:`Lockable` objects (semaphores, mutexes, locks) acquire and release in
``with`` instead.

Three rules live here and nowhere else:

- **A ``with`` block never loses the user's exception.** When the block raises
  and the closing (or releasing) at its end fails too, the user's exception
  propagates with the failure attached as a note (``add_note``, Python 3.11+;
  on 3.10 it is kept in ``__notes__``), and ``_close_failed`` lets the object
  give up cleanly what it could not close (memory stays mapped until its last
  view goes, rather than being unmapped under it).
- **Creation is all or nothing.** A creating class method decorated with
  :func:`all_or_nothing` keeps a journal while it runs: every object opened meanwhile
  (``_opened``) and every undo action registered with :func:`on_failure` (such
  as removing a name that just appeared). If the call raises, whatever the
  reason (a signal handler raising KeyboardInterrupt wherever one can run
  included), the journal is undone, newest first, before the error propagates.
  Nested creations (a mutex creating its shared memory) share the outermost
  journal.
- **Objects made by class methods refuse direct construction.** A class that
  lists its ``_factories`` ("create", "open", ...) raises a TypeError naming
  them when called directly, as posix_ipc users will try
  (``PosixSharedMemory('/x')``); those class methods build through ``_make``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, TypeVar, cast

from .errors import ClosedResourceError, ResourceExistsError

_R = TypeVar("_R", bound="Resource")
_L = TypeVar("_L", bound="Lockable")
_T = TypeVar("_T")
_P = ParamSpec("_P")


class _Creating(threading.local):
    #: The undo journal of the creation running in this thread, if any.
    journal: list[object] | None = None


_creating = _Creating()


def on_failure(action: Callable[[], None]) -> None:
    """Run ``action`` if the creation in progress in this thread fails (else nothing)."""
    journal = _creating.journal
    if journal is not None:
        journal.append(action)


def _undo(journal: list[object]) -> None:
    for entry in reversed(journal):
        if isinstance(entry, Resource):
            entry._discard()
        else:
            with contextlib.suppress(Exception):
                cast("Callable[[], None]", entry)()


def all_or_nothing(function: Callable[_P, _T]) -> Callable[_P, _T]:
    """Make a creating call all or nothing (see the module's notes)."""

    @functools.wraps(function)
    def journaled(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        if _creating.journal is not None:  # an outer creation answers for this one
            return function(*args, **kwargs)
        journal: list[object] = []
        try:
            _creating.journal = journal
            made = function(*args, **kwargs)
            _creating.journal = None
            return made
        except BaseException:
            _creating.journal = None
            _undo(journal)
            raise

    return journaled


def add_note(error: BaseException, note: str) -> None:
    """Attach ``note`` to ``error`` (``BaseException.add_note`` where it exists)."""
    adder = getattr(error, "add_note", None)
    if adder is not None:
        adder(note)
        return
    notes = getattr(error, "__notes__", None)  # Python 3.10: kept, not printed
    if isinstance(notes, list):
        notes.append(note)
    else:
        with contextlib.suppress(AttributeError, TypeError):
            error.__notes__ = [note]  # type: ignore[attr-defined]


def open_or_create(create: Callable[[], _T], open_existing: Callable[[], _T]) -> _T:
    """``create()``, or ``open_existing()`` if the name is taken; again if it vanished between."""
    while True:
        try:
            return create()
        except ResourceExistsError:
            pass
        try:
            return open_existing()
        except FileNotFoundError:
            continue  # removed between our two calls: try again


class Resource:
    """A handle on a kernel object owned by this process."""

    #: What the object is, for messages ("FIFO", "POSIX message queue", ...).
    kind: ClassVar[str] = "IPC object"
    #: The class methods that make objects of this class; when not empty,
    #: calling the class directly raises a TypeError that names them.
    _factories: ClassVar[tuple[str, ...]] = ()

    _closed: bool = True  # stays True if a subclass __init__ fails early
    _name: object = None

    def __new__(cls: type[_R], *args: Any, **kwargs: Any) -> _R:
        if cls._factories:
            ways = ", ".join(f"{cls.__name__}.{factory}(...)" for factory in cls._factories)
            raise TypeError(f"{cls.__name__} objects are not made by calling the class: use {ways}")
        return super().__new__(cls)

    @classmethod
    def _make(cls: type[_R], *args: Any, **kwargs: Any) -> _R:
        """Build an object as the class's factories do (the constructor refuses callers)."""
        made = super().__new__(cls)  # the next __new__: object's or a C base's
        cast("Any", made).__init__(*args, **kwargs)
        return made

    def _opened(self, name: object) -> None:
        """Call once the handle is held: from now on close() must release it."""
        self._name = name
        self._closed = False
        journal = _creating.journal  # no call before the append: nothing can interrupt
        if journal is not None:
            journal.append(self)

    def _discard(self) -> None:
        """Close without raising: what an undone creation does with what it opened."""
        with contextlib.suppress(Exception):
            self.close()

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

    def _close_failed(self, problem: Exception) -> str:
        """``close()`` failed while the user's exception propagates out of ``with``.

        Give up what can be given up safely and say what happened (the note).
        """
        return f"unixipc: {self.describe()} could not be closed as well: {problem}"

    def _end_with(
        self,
        finish: Callable[[], None],
        error: BaseException | None,
        explain: Callable[[Exception], str],
    ) -> None:
        """End a ``with`` block by ``finish()``; never let its failure replace ``error``."""
        if error is None:
            finish()
            return
        try:
            finish()
        except Exception as problem:
            add_note(error, explain(problem))

    def __enter__(self: _R) -> _R:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end_with(self.close, exc, self._close_failed)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self._name!r} {state}>"

    def __del__(self) -> None:
        if self._closed:
            return
        warnings.warn(f"unclosed {self.describe()}", ResourceWarning, stacklevel=2, source=self)
        with contextlib.suppress(Exception):
            self.close()


class Lockable(Resource):
    """A resource that ``with`` holds: acquire on entry, release on exit (as in threading)."""

    def _hold(self) -> None:
        """Acquire as ``with`` does: the subclass's acquire with its defaults."""
        raise NotImplementedError

    def release(self) -> None:
        """Let go of what ``with`` (or acquire) took."""
        raise NotImplementedError

    def __enter__(self: _L) -> _L:
        self._hold()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end_with(
            self.release,
            exc,
            lambda problem: f"unixipc: releasing {self.describe()} failed as well: {problem}",
        )
