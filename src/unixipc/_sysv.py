"""What the System V facilities share: keys, ftok, ids and the /proc tables (private).

``ftok`` and ``IPC_PRIVATE`` are exported by ``unixipc``.

System V objects are found by a *key* (an int, often made by ftok(3)) and then
used through an *id* the kernel hands out. Key 0 is IPC_PRIVATE: creating with
it always makes a new object that no key can find again, so such an object is
opened by its id instead. Linux lists every object in /proc/sysvipc/<table>.
"""

from __future__ import annotations

import os

from . import _native
from ._names import check_int, check_path, check_sysv_key
from .errors import from_os_error

__all__ = (
    "IPC_PRIVATE",
    "check_id",
    "check_open_key",
    "format_key",
    "ftok",
    "public_key",
    "read_table",
)

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
