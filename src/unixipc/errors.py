"""Exceptions raised by unixipc.

Every exception is an :class:`IPCError`, and also the builtin exception a
Python programmer would already catch for that situation::

    IPCError(Exception)
    ├── ClosedResourceError (ValueError)       used after close()
    ├── WouldBlock (BlockingIOError)           timeout=0 and it would block
    ├── TimeoutExpired (TimeoutError)          a finite timeout ran out
    ├── MessageTooLarge (ValueError)           larger than the object or frame limit
    ├── OwnerDied                              a robust mutex's holder died; state may be torn
    ├── PeerDied (BrokenPipeError)             the other end is gone (died, or no reader left)
    ├── EndOfChannel (EOFError)                the peer closed its end cleanly
    ├── MessagesMissed                         a topic's publishers overtook a subscriber
    ├── AuthenticationError                    a channel peer failed to prove who it is
    ├── UnsupportedFeature (NotImplementedError)  not on this platform or kernel
    └── IPCOSError (OSError)                   errno kept, .filename is the object's name
        ├── ResourceExistsError (FileExistsError)
        ├── ResourceNotFoundError (FileNotFoundError)   also EIDRM: removed while in use
        ├── PermissionDeniedError (PermissionError)
        ├── DeadlockError                      EDEADLK from a record lock
        └── ResourceLimitError                 kernel limit hit; the message names the limit

Operating-system errors are translated in exactly one place,
:func:`from_os_error`, which keeps ``errno`` and the object's name.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = (
    "AuthenticationError",
    "ClosedResourceError",
    "DeadlockError",
    "EndOfChannel",
    "IPCError",
    "IPCOSError",
    "MessageTooLarge",
    "MessagesMissed",
    "OwnerDied",
    "PeerDied",
    "PermissionDeniedError",
    "ResourceExistsError",
    "ResourceLimitError",
    "ResourceNotFoundError",
    "TimeoutExpired",
    "UnsupportedFeature",
    "WouldBlock",
)


class IPCError(Exception):
    """Base class of every exception raised by unixipc."""


class ClosedResourceError(IPCError, ValueError):
    """An object was used after its ``close()``; as with files, it is a ValueError."""


class WouldBlock(IPCError, BlockingIOError):
    """A call made with ``timeout=0`` could not complete without waiting.

    For a partially completed stream write, ``bytes_sent`` tells how much went out.
    """

    bytes_sent: int = 0


class TimeoutExpired(IPCError, TimeoutError):
    """A blocking call with a positive ``timeout`` ran out of time.

    For a partially completed stream write, ``bytes_sent`` tells how much went out.
    """

    bytes_sent: int = 0


class MessageTooLarge(IPCError, ValueError):
    """A message is larger than the object, the facility or the frame limit allows.

    Raised before any system call when sending; raised by a receiver whose buffer
    or limit is too small (the message is not lost where the facility keeps it).
    """


class OwnerDied(IPCError):
    """A robust mutex's previous holder died while holding it.

    The caller now holds the lock. The protected state may be half-updated:
    repair it and call ``mark_consistent()``, or release and the mutex becomes
    permanently unusable.
    """


class PeerDied(IPCError, BrokenPipeError):
    """The other end is gone: its process died, or no reader is left on a pipe.

    unixipc raises this instead of letting SIGPIPE kill the process.
    """


class EndOfChannel(IPCError, EOFError):
    """The peer closed its end cleanly before the expected data arrived."""


class MessagesMissed(IPCError):
    """A topic subscriber with ``overflow="drop"`` was overtaken by its publishers.

    ``count`` is exactly how many messages it lost. The receive that raises
    takes nothing: the next one returns the oldest message still there.
    """

    count: int = 0


class AuthenticationError(IPCError):
    """A channel's peer failed to prove who it is, or is not allowed.

    Raised by ``connect`` when the listener refused our proof of the shared
    ``secret``, failed to prove it in turn, or is not one of the allowed users
    (or its TLS certificate did not verify). A listener drops such a client and
    goes on accepting others; it never raises this from ``accept``.
    """


class UnsupportedFeature(IPCError, NotImplementedError):
    """The platform, kernel or configuration lacks a feature; the message says which."""


class IPCOSError(IPCError, OSError):
    """A system call failed; ``errno`` is kept and ``filename`` names the object."""

    def __str__(self) -> str:
        # The message already names the object; don't repeat the filename.
        if self.errno is None:
            return super().__str__()
        return f"[Errno {self.errno}] {self.strerror}"


class ResourceExistsError(IPCOSError, FileExistsError):
    """Creating an object whose name or key is already taken (EEXIST)."""


class ResourceNotFoundError(IPCOSError, FileNotFoundError):
    """The object does not exist (ENOENT), or was removed while in use (EIDRM)."""


class PermissionDeniedError(IPCOSError, PermissionError):
    """The object's permissions forbid the operation (EACCES, EPERM)."""


class DeadlockError(IPCOSError):
    """The kernel detected a deadlock between record locks (EDEADLK)."""


class ResourceLimitError(IPCOSError):
    """A kernel limit was hit (EMFILE, ENFILE, ENOSPC, ENOMEM, ...); the message names it."""


_BY_ERRNO: dict[int, type[IPCOSError]] = {
    _errno.EEXIST: ResourceExistsError,
    _errno.ENOENT: ResourceNotFoundError,
    _errno.EIDRM: ResourceNotFoundError,
    _errno.EACCES: PermissionDeniedError,
    _errno.EPERM: PermissionDeniedError,
    _errno.EDEADLK: DeadlockError,
    _errno.EMFILE: ResourceLimitError,
    _errno.ENFILE: ResourceLimitError,
    _errno.ENOSPC: ResourceLimitError,
    _errno.ENOMEM: ResourceLimitError,
    # sockets and signals
    _errno.EADDRINUSE: ResourceExistsError,
    _errno.ESRCH: ResourceNotFoundError,
}

_WHAT_HAPPENED: dict[int, str] = {
    _errno.EEXIST: " already exists",
    _errno.ENOENT: " does not exist",
    _errno.EIDRM: " was removed while in use",
    # sockets and signals
    _errno.EADDRINUSE: " is already in use",
    _errno.ESRCH: " does not exist",
}


def from_os_error(
    error: OSError,
    kind: str,
    name: object,
    *,
    limit: str | None = None,
) -> IPCError:
    """Translate an OSError from a system call on the object ``kind`` ``name``.

    ``kind`` is a description such as ``"POSIX message queue"``; ``limit``, when
    given, names the kernel limit that an EMFILE/ENOSPC/EINVAL here stands for,
    and the error becomes a :class:`ResourceLimitError` naming it.
    Returns the exception; the caller raises it ``from error``.
    """
    code = error.errno if error.errno is not None else 0
    if code in (_errno.EAGAIN, _errno.EWOULDBLOCK):
        return WouldBlock(code, f"{kind} {name!r}: operation would block")
    if code == _errno.ETIMEDOUT:
        return TimeoutExpired(code, f"{kind} {name!r}: timed out")
    if code in (_errno.EPIPE, _errno.ECONNRESET):
        return PeerDied(code, f"{kind} {name!r}: the other end is gone")
    what = _WHAT_HAPPENED.get(code) or f": {os.strerror(code)}"
    if limit is not None:
        return ResourceLimitError(code, f"{kind} {name!r}{what} ({limit})", str(name))
    cls = _BY_ERRNO.get(code, IPCOSError)
    return cls(code, f"{kind} {name!r}{what}", str(name))


def _hand_over_to_the_c_core() -> None:
    # The C core raises these classes by name; it never imports a Python module.
    from . import _native

    _native.set_error_classes(**{name: globals()[name] for name in __all__})


_hand_over_to_the_c_core()
