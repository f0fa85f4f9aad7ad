"""What the System V facilities share: keys, ftok, ids and the /proc tables (private).

``ftok`` and ``IPC_PRIVATE`` are exported by ``unixipc``.

System V objects are found by a *key* (an int, often made by ftok(3)) and then
used through an *id* the kernel hands out. Key 0 is IPC_PRIVATE: creating with
it always makes a new object that no key can find again, so such an object is
opened by its id instead. Linux lists every object in /proc/sysvipc/<table>.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Callable
from typing import TypeVar

from . import _native
from ._names import check_int, check_path, check_sysv_key
from ._resource import on_failure
from .errors import IPCError, from_os_error

__all__ = (
    "IPC_PRIVATE",
    "SysVKind",
    "check_id",
    "check_open_key",
    "format_key",
    "ftok",
    "public_key",
    "read_table",
)

_T = TypeVar("_T")

#: The key that always creates a new object, found again only by its id.
IPC_PRIVATE: int = _native.IPC_PRIVATE


def ftok(path: str | os.PathLike[str], proj_id: int) -> int:
    """The System V key that C's ``ftok(path, proj_id)`` gives, in unsigned 32-bit form.

    As glibc does, the key combines the low 8 bits of ``proj_id`` (any int;
    0 works, as in Stevens' programs) with the file's device and inode numbers,
    so every process naming the same existing file and ``proj_id`` gets the
    same key (and a different file, very likely, a different key).

    Raises:
        ResourceNotFoundError: ``path`` does not exist.
    """
    path = check_path(path)
    low_bits = check_int(proj_id, "proj_id") & 0xFF
    try:
        return _native.ftok(path, low_bits)
    except OSError as error:
        raise from_os_error(error, "ftok path", path) from None


def format_key(key: int) -> str:
    """A key as System V tools show it: 0x-prefixed, 8 hex digits."""
    return f"0x{key & 0xFFFFFFFF:08x}"


def public_key(key: int) -> int:
    """A key (signed key_t or unsigned) in the unsigned 32-bit form users see."""
    return key & 0xFFFFFFFF


def check_open_key(key: object, argument: str = "key") -> int:
    """A key that can find an existing object: anything but IPC_PRIVATE."""
    checked = check_sysv_key(key, argument)
    if checked == IPC_PRIVATE:
        raise ValueError(
            f"{argument} IPC_PRIVATE (0) cannot find an existing object: open it by its id"
        )
    return checked


def check_id(value: object, argument: str = "id") -> int:
    """A System V object id (a non-negative int)."""
    checked = check_int(value, argument, minimum=0)
    if checked >= 2**31:
        raise ValueError(f"{argument} must be < 2**31, got {checked}")
    return checked


def read_table(table: str) -> list[dict[str, int]]:
    """The rows of /proc/sysvipc/<table> ("shm", "sem", "msg"), keyed by column name.

    ``perms`` is octal in the file and is returned as its value; the rest are
    decimal. An object removed while we read is simply not there.
    """
    try:
        with open(f"/proc/sysvipc/{table}") as lines:
            header = next(lines).split()
            rows = []
            for line in lines:
                fields = line.split()
                if len(fields) != len(header):
                    continue
                row = {}
                for column, text in zip(header, fields, strict=True):
                    row[column] = int(text, 8) if column == "perms" else int(text)
                rows.append(row)
            return rows
    except (FileNotFoundError, StopIteration):
        return []


class SysVKind:
    """One kind of System V object (segments, semaphore sets): finding, removing,
    creating whole, and what its errors mean, written once for every kind."""

    def __init__(
        self,
        kind: str,
        *,
        find: Callable[[int], int],
        remove: Callable[[int], None],
        set_owner: Callable[[int, int, int], None],
        limits: dict[int, str],
    ) -> None:
        self.kind = kind
        self._find = find
        self._remove = remove
        self._set_owner = set_owner
        self._limits = limits  # errno -> the kernel limit it stands for, on any call

    @staticmethod
    def describe(key: int) -> str:
        """The key as messages show it: IPC_PRIVATE, or 0x-prefixed hex."""
        return "IPC_PRIVATE" if key == IPC_PRIVATE else format_key(key)

    def error(self, error: OSError, what: object, *, gone: int = errno.EIDRM) -> IPCError:
        """The exception for a failed call on an id (EINVAL: no such id, any more)."""
        if error.errno == errno.EINVAL:
            error = OSError(gone, error.strerror)
        limit = self._limits.get(error.errno or 0)
        return from_os_error(error, self.kind, what, limit=limit)

    def find(self, key: int) -> int:
        """The id of the object with ``key``."""
        try:
            return self._find(key)
        except OSError as error:
            raise from_os_error(error, self.kind, self.describe(key)) from None

    def exists(self, key: int) -> bool:
        """True if an object of this kind has ``key`` (even one we may not open)."""
        try:
            self._find(key)
        except OSError as error:
            return error.errno != errno.ENOENT
        return True

    def remove(self, object_id: int, what: object) -> None:
        """IPC_RMID."""
        try:
            self._remove(object_id)
        except OSError as error:
            raise self.error(error, what) from None

    def _remove_quietly(self, object_id: int) -> None:
        with contextlib.suppress(OSError):
            self._remove(object_id)

    def create(
        self,
        key: int,
        permissions: int,
        gid: int | None,
        make: Callable[[int, list[int]], None],
        then: Callable[[int], _T],
        creation_limits: dict[int, str],
    ) -> _T:
        """Create an object whole or not at all: ``make(mode, created)``, then ``then(id)``.

        ``make`` appends the new id to ``created`` before it returns (in C), so
        that whatever fails afterwards (``then``, setting the group, a signal
        handler raising), the object is removed before the error propagates.
        System V ignores the umask, so the mode is exact from the start; with a
        group to set, the object starts with the owner's bits only, so that the
        creator's own group never has access meanwhile, and gets its group and
        mode in one IPC_SET.
        """
        created: list[int] = []
        try:
            try:
                make(permissions if gid is None else permissions & 0o700, created)
            except OSError as error:
                limit = creation_limits.get(error.errno or 0)
                raise from_os_error(error, self.kind, self.describe(key), limit=limit) from None
            # From here on, a failure of the whole creation (of an outer call too)
            # removes the object.
            on_failure(functools.partial(self._remove_quietly, created[0]))
            if gid is not None:
                self._set_owner(created[0], gid, permissions)
            return then(created[0])
        except BaseException as error:
            if created:
                self._remove_quietly(created[0])
            if isinstance(error, OSError) and not isinstance(error, IPCError):
                raise self.error(error, self.describe(key)) from None
            raise
