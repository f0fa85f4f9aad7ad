"""What the POSIX and System V message queue classes share (private).

Each queue class derives from :class:`QueueBase` and from its C core
(``_native.PosixQueueCore``, ``SysVQueueCore``: see ``queue_fastpath.h``). The
core's ``send``/``receive``/``receive_into`` take well-formed calls without a
Python frame; :func:`native_method` shows them in the public class as its own
methods, with the signature and docstring written there. Anything the C does
not take plainly goes to the class's ``_*_slow`` method, which validates (the
errors name the argument) and calls the C method again with plain arguments;
a failed system call goes to ``_error``. What the C trusts (descriptor or id,
limits, result type) is set once by ``_attach`` from the kernel's answers and
cannot be changed from Python.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from . import _native
from ._deadline import Deadline, check_timeout
from ._names import check_bytes_like
from ._resource import Resource
from .errors import IPCError, WouldBlock

_F = TypeVar("_F", bound=Callable[..., Any])


class _Annotation(str):
    """An annotation kept as text, shown without quotes by help() and inspect."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def native_method(implementation: object) -> Callable[[_F], _F]:
    """Make the decorated method ``implementation`` (a C method of the core),
    presented with the decorated function's name, signature and docstring.

    The function's body never runs. Calls cost one indirect C call more than
    calling the core's method itself.
    """

    def present(template: _F) -> _F:
        method: Any = _native.PublicMethod(implementation)
        signature = inspect.signature(template)
        method.__signature__ = signature.replace(
            parameters=[
                parameter.replace(annotation=_Annotation(parameter.annotation))
                if isinstance(parameter.annotation, str)
                else parameter
                for parameter in signature.parameters.values()
            ],
            return_annotation=_Annotation(signature.return_annotation)
            if isinstance(signature.return_annotation, str)
            else signature.return_annotation,
        )
        for attribute in ("__doc__", "__name__", "__qualname__", "__module__", "__annotations__"):
            setattr(method, attribute, getattr(template, attribute))
        result: _F = method
        return result

    return present


def plain_timeout(timeout: object) -> float | None:
    """Validate ``timeout``; return it in a form the C fast path takes (None or
    a float), keeping the very object when it already is one (a deadline's
    ``remaining()`` remembers the caller's timeout for the error message)."""
    seconds = check_timeout(timeout)
    if seconds is not None and isinstance(timeout, float):
        return timeout
    return seconds


def nbytes(message: object) -> int:
    return check_bytes_like(message, "message").nbytes


def writable_view(buffer: object) -> memoryview:
    """``buffer`` as a flat writable memoryview of bytes, or TypeError naming it."""
    try:
        view = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError:
        view = None
    if view is None or view.readonly or not view.contiguous:
        raise TypeError(
            f"buffer must be a writable, contiguous bytes-like object, not {type(buffer).__name__}"
        )
    return view.cast("B")


class QueueBase(Resource):
    """The Python half of a message queue: attaching, errors, closing."""

    # Provided by the C core (read-only from Python).
    _handle: int
    _limit: int
    _send_limit: int
    _label: str

    def _adopt(self, handle: int, label: str, result_type: type) -> None:
        """Attach the C core to ``handle``, which this object owns from now on:
        ``close()`` releases it, and so does a failure of this call."""
        try:
            self._attach(handle, label, result_type)  # type: ignore[attr-defined]
            self._opened(label)
        except BaseException:
            self._detach()  # type: ignore[attr-defined]
            self._closed = True
            with contextlib.suppress(Exception):
                self._close_handle(handle)
            raise

    def _wait_error(self, error: OSError, what: str, timeout: object) -> IPCError | None:
        """The error for a call that could not wait (timeout 0: WouldBlock) or ran
        out of time (TimeoutExpired); None for other errors."""
        if error.errno not in (errno.ETIMEDOUT, errno.EAGAIN, errno.ENOMSG):
            return None
        where = f"{what} {self.describe()}"
        if timeout is None:
            return WouldBlock(f"{where} would block")
        return Deadline(timeout).error(where)  # type: ignore[arg-type]

    def _close_handle(self, handle: int) -> None:
        """Release the kernel handle that ``_detach`` gave back (if any)."""

    def _release(self) -> None:
        handle = self._detach()  # type: ignore[attr-defined]
        # A stale number could be reused by another open: the C never uses it again.
        if handle >= 0:
            self._close_handle(handle)
