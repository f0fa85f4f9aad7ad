"""Validation of names, paths, keys and permissions (private).

Everything here raises TypeError or ValueError, naming the argument, before any
system call is made.
"""

from __future__ import annotations

import grp
import os
from collections.abc import Callable

__all__ = (
    "check_bytes_like",
    "check_group",
    "check_int",
    "check_path",
    "check_permissions",
    "check_posix_name",
    "check_semaphore_name",
    "check_sysv_key",
    "is_valid",
)

NAME_MAX = 255
#: How the C library names a semaphore's file in /dev/shm: this prefix + the name's rest.
SEMAPHORE_FILE_PREFIX = "sem."


def check_int(value: object, argument: str, *, minimum: int | None = None) -> int:
    """An int (not a bool), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value}")
    return value


def check_permissions(
    value: object,
    argument: str = "permissions",
    *,
    allow_world_writable: bool = True,
    maximum: int = 0o7777,
) -> int:
    """Permission bits such as 0o600, at most ``maximum``.

    With ``allow_world_writable=False`` (what every creating call passes on from its
    own keyword of that name, default False), bits that let every local user write
    (0o002) are refused: the user must say that they mean it.
    """
    bits = check_int(value, argument)
    if not 0 <= bits <= maximum:
        raise ValueError(f"{argument} must be between 0 and {maximum:#o}, got {bits:#o}")
    if not isinstance(allow_world_writable, bool):
        raise TypeError("allow_world_writable must be a bool")
    if bits & 0o002 and not allow_world_writable:
        raise ValueError(
            f"{argument} {bits:#o} let every local user write; "
            "pass allow_world_writable=True if that is meant"
        )
    return bits


def check_group(value: object, argument: str = "group") -> int | None:
    """A group given as a gid, a group name, or None (the creator's group): its gid."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return grp.getgrnam(value).gr_gid
        except KeyError:
            raise ValueError(f"{argument}: no group called {value!r}") from None
    return check_int(value, argument, minimum=0)


def check_path(value: object, argument: str = "path") -> str:
    """A filesystem path given as str or os.PathLike[str]."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a str or os.PathLike, not {type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise TypeError(f"{argument} must name a str path, not {type(path).__name__}")
    if not path:
        raise ValueError(f"{argument} must not be empty")
    if "\0" in path:
        raise ValueError(f"{argument} must not contain NUL characters")
    return path


def _check_posix_name(value: object, argument: str, longest: int, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be a str such as '/jobs', not {type(value).__name__}")
    rest = value[1:]
    try:
        size = len(rest.encode())
    except UnicodeEncodeError:
        size = -1
    if not value.startswith("/"):
        problem = "must start with '/'"
    elif size < 0:
        problem = "must be encodable as UTF-8"
    elif not 1 <= size <= longest:
        problem = f"must have 1 to {longest} bytes after the '/'{what}"
    elif "/" in rest:
        problem = "must not contain '/' after the first"
    elif "\0" in rest:
        problem = "must not contain NUL characters"
    elif rest in (".", ".."):
        problem = "must not be '/.' or '/..'"
    else:
        return value
    raise ValueError(
        f"{argument} {problem}, got {value!r} (the rule: '/' then 1 to {longest} bytes, "
        "no other '/', no NUL, not '.' or '..')"
    )


def check_posix_name(value: object, argument: str = "name") -> str:
    """A POSIX shared memory or message queue name: '/' and 1..NAME_MAX bytes.

    The kernel keeps each as a file named by what follows the '/', so the rest
    is a file name: at most NAME_MAX (255) bytes, no '/', no NUL, not '.' or '..'.
    """
    return _check_posix_name(value, argument, NAME_MAX, "")


def check_semaphore_name(value: object, argument: str = "name") -> str:
    """A named POSIX semaphore's name: as :func:`check_posix_name`, at most 251 bytes.

    The C library keeps the semaphore as the file ``sem.<rest>`` in /dev/shm, so
    the rest has four bytes less room.
    """
    return _check_posix_name(
        value,
        argument,
        NAME_MAX - len(SEMAPHORE_FILE_PREFIX),
        " (a semaphore's file is 'sem.' + it)",
    )


def is_valid(check: Callable[[object], object], value: object) -> bool:
    """True if ``check`` accepts ``value``; its TypeError still propagates."""
    try:
        check(value)
    except ValueError:
        return False
    return True


def check_sysv_key(value: object, argument: str = "key") -> int:
    """A System V key: an int from 0 (IPC_PRIVATE) to 2**32 - 1, the unsigned
    form in which ``ftok`` returns keys and ``ipcs`` shows them.

    Negative keys are refused (C's key_t is signed, so ``-5`` would silently be
    key 0xfffffffb). Returns the key as the C layer's signed key_t.
    """
    key = check_int(value, argument)
    if not 0 <= key < 2**32:
        raise ValueError(
            f"{argument} must be between 0 and 0xffffffff (keys are unsigned 32-bit "
            f"numbers, as ftok returns them), got {key}"
        )
    return key - 2**32 if key >= 2**31 else key


def check_bytes_like(value: object, argument: str = "data") -> memoryview:
    """A bytes-like object, as a flat memoryview of bytes."""
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{argument} must be a bytes-like object, not {type(value).__name__}"
        ) from None
    if not view.c_contiguous:
        raise ValueError(f"{argument} must be C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view
