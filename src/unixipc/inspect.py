"""Find, describe and remove IPC objects on this machine (the engine of ``unixipc ls/rm``).

It sees what the kernel exposes: POSIX shared memory and named semaphores
(/dev/shm), POSIX message queues (only where the mqueue filesystem is mounted),
System V queues, segments and semaphore sets (/proc/sysvipc), and bound UNIX
domain socket files (/proc/net/unix). FIFOs and mapped files are ordinary files
with no registry, so they are not listed. Every object unixipc itself creates is
one of the listed kinds (rings, shared mutexes and the like live in POSIX shared
memory), including those left behind by crashed processes.

The machine is shared: :func:`find` reports everything, :func:`remove` removes
exactly the one object it is given, and nothing here removes by pattern unless the
caller asks for it explicitly with a name prefix.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import posix_mq, posix_sem, posix_shm, sysv_mq, sysv_sem, sysv_shm
from ._sysv import format_key, read_table
from .errors import ResourceNotFoundError, UnsupportedFeature

__all__ = ("KINDS", "IPCObject", "UnsupportedFeature", "find", "remove")

#: The kinds of object :func:`find` knows, in display order.
KINDS: tuple[str, ...] = (
    "posix-shm",
    "posix-sem",
    "posix-mq",
    "sysv-shm",
    "sysv-sem",
    "sysv-mq",
    "unix-socket",
)

_DEV_SHM = "/dev/shm"


@dataclass(frozen=True)
class IPCObject:
    """One IPC object as the kernel shows it.

    ``name`` is what identifies it to people and to :func:`remove`: the POSIX
    name ('/jobs'), the System V key in hex ('0x1234abcd', or 'IPC_PRIVATE'), or
    the socket path. System V objects also carry their ``id``.
    """

    kind: str
    name: str
    uid: int
    permissions: int
    size: int | None = None
    id: int | None = None
    key: int | None = None
    details: dict[str, int] = field(default_factory=dict)


def find(kinds: Iterable[str] | None = None, *, prefix: str | None = None) -> list[IPCObject]:
    """Every IPC object of the given ``kinds`` (default: all), optionally whose name
    starts with ``prefix`` (POSIX names and socket paths; System V objects have no
    name and are left out when a prefix is given).

    Raises:
        ValueError: an unknown kind.
        UnsupportedFeature: only when ``kinds`` names "posix-mq" alone and the
            mqueue filesystem is not mounted; in a listing of several kinds the
            queues are silently absent instead (see :func:`posix_mq.list_names`).
    """
    wanted = _check_kinds(kinds)
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
    found: list[IPCObject] = []
    for kind in wanted:
        try:
            found.extend(_FINDERS[kind]())
        except UnsupportedFeature:
            if wanted == ("posix-mq",):
                raise
    if prefix is not None:
        found = [item for item in found if item.key is None and item.name.startswith(prefix)]
    return found


def remove(item: IPCObject) -> None:
    """Remove exactly this object (unlink its name, or IPC_RMID by its id).

    Raises:
        ResourceNotFoundError: it is already gone.
        PermissionDeniedError: not yours to remove.
        ValueError: a socket path that is no longer a socket (left alone).
    """
    if item.kind == "posix-shm":
        posix_shm.unlink(item.name)
    elif item.kind == "posix-sem":
        posix_sem.unlink(item.name)
    elif item.kind == "posix-mq":
        posix_mq.unlink(item.name)
    elif item.kind in ("sysv-shm", "sysv-sem", "sysv-mq"):
        if item.id is None:
            raise ValueError(f"{item.kind} {item.name} has no id")
        _remove_sysv(item.kind, item.id)
    elif item.kind == "unix-socket":
        _remove_socket_file(item.name)
    else:
        raise ValueError(f"unknown kind {item.kind!r}; expected one of {', '.join(KINDS)}")


def _check_kinds(kinds: Iterable[str] | None) -> tuple[str, ...]:
    if kinds is None:
        return KINDS
    if isinstance(kinds, str):
        raise TypeError("kinds must be an iterable of kind names, not a str")
    wanted = tuple(kinds)
    for kind in wanted:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return wanted


def _stat_entry(kind: str, name: str, path: str) -> IPCObject | None:
    try:
        status = os.stat(path)
    except OSError:  # removed while we looked
        return None
    return IPCObject(kind, name, status.st_uid, stat.S_IMODE(status.st_mode), status.st_size)


def _find_posix_shm() -> list[IPCObject]:
    items = (_stat_entry("posix-shm", n, _DEV_SHM + n) for n in posix_shm.list_names())
    return [item for item in items if item is not None]


def _find_posix_sem() -> list[IPCObject]:
    items = (_stat_entry("posix-sem", n, f"{_DEV_SHM}/sem.{n[1:]}") for n in posix_sem.list_names())
    return [item for item in items if item is not None]


def _find_posix_mq() -> list[IPCObject]:
    mount_point = posix_mq.mqueue_mount_point()
    names = posix_mq.list_names()  # raises UnsupportedFeature when not mounted
    items = (_stat_entry("posix-mq", n, f"{mount_point}{n}") for n in names)
    return [item for item in items if item is not None]


# /proc/sysvipc/<table>: the id column, and the columns worth showing as details.
_SYSV_TABLES = {
    "sysv-shm": ("shm", "shmid", ("nattch", "cpid", "lpid"), "size"),
    "sysv-sem": ("sem", "semid", ("nsems",), None),
    "sysv-mq": ("msg", "msqid", ("qnum", "lspid", "lrpid"), "cbytes"),
}


def _find_sysv(kind: str) -> list[IPCObject]:
    table, id_column, shown, size_column = _SYSV_TABLES[kind]
    items = []
    for row in read_table(table):
        key = row["key"]
        items.append(
            IPCObject(
                kind,
                "IPC_PRIVATE" if key == 0 else format_key(key),
                row["uid"],
                row["perms"] & 0o777,
                row[size_column] if size_column else None,
                row[id_column],
                key,
                {column: row[column] for column in shown},
            )
        )
    return items


def _find_unix_sockets() -> list[IPCObject]:
    """Socket files bound in the filesystem (abstract addresses have no file to remove)."""
    try:
        with open("/proc/net/unix") as table:
            next(table)
            paths = {line.split()[7] for line in table if len(line.split()) >= 8}
    except (FileNotFoundError, StopIteration):
        return []
    items = []
    for path in sorted(paths):
        if not path.startswith("/"):
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                item = _stat_entry("unix-socket", path, path)
                if item is not None:
                    items.append(item)
    return items


_FINDERS = {
    "posix-shm": _find_posix_shm,
    "posix-sem": _find_posix_sem,
    "posix-mq": _find_posix_mq,
    "sysv-shm": lambda: _find_sysv("sysv-shm"),
    "sysv-sem": lambda: _find_sysv("sysv-sem"),
    "sysv-mq": lambda: _find_sysv("sysv-mq"),
    "unix-socket": _find_unix_sockets,
}


def _remove_sysv(kind: str, object_id: int) -> None:
    handle: sysv_shm.SysVSharedMemory | sysv_sem.SysVSemaphoreSet | sysv_mq.SysVMessageQueue
    if kind == "sysv-shm":
        handle = sysv_shm.SysVSharedMemory.open_id(object_id, read_only=True)
    elif kind == "sysv-sem":
        handle = sysv_sem.SysVSemaphoreSet.open_id(object_id)
    else:
        handle = sysv_mq.SysVMessageQueue.open_id(object_id)
    try:
        handle.unlink()
    finally:
        handle.close()


def _remove_socket_file(path: str) -> None:
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ValueError(f"{path!r} is not a socket file; refusing to remove it")
        os.unlink(path)
    except FileNotFoundError:
        raise ResourceNotFoundError(2, f"socket file {path!r} does not exist", path) from None
