"""System V keys, shared by every System V facility (private; exported by unixipc).

A System V object is found by a key: any 32-bit number agreed between the
processes, ``ftok(path, proj_id)`` (derived from a file that both know), or
``IPC_PRIVATE`` (always a new object, reachable only through its id).
"""

from __future__ import annotations

import os

from . import _native
from ._names import check_int, check_path
from .errors import from_os_error

__all__ = ("IPC_PRIVATE", "format_key", "ftok")

#: The key that always creates a new object, reachable only through its id.
IPC_PRIVATE: int = _native.IPC_PRIVATE


def ftok(path: str | os.PathLike[str], proj_id: int) -> int:
    """The System V key that C's ``ftok(path, proj_id)`` gives (a signed 32-bit int).

    The key combines ``proj_id``'s low 8 bits with the file's device and inode
    numbers, so every process naming the same existing file and ``proj_id``
    gets the same key (and a different file, very likely, a different key).

    Raises:
        ResourceNotFoundError: ``path`` does not exist.
        ValueError: ``proj_id`` is not between 1 and 255.
    """
    path = check_path(path)
    check_int(proj_id, "proj_id")
    if not 1 <= proj_id <= 255:
        raise ValueError(f"proj_id must be between 1 and 255 (ftok uses 8 bits), got {proj_id}")
    try:
        return _native.ftok(path, proj_id)
    except OSError as error:
        raise from_os_error(error, "ftok path", path) from None


def format_key(key: int) -> str:
    """A key as System V tools show it: 0x-prefixed, 8 hex digits."""
    return f"0x{key & 0xFFFFFFFF:08x}"
