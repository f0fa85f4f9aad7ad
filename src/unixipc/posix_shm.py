"""POSIX shared memory: a named region of memory that processes map and share.

Persistence: kernel. The object and its contents live until ``unlink()`` (or a
reboot), even when no process has it open. Opening never registers the object
for removal: only an explicit ``unlink()`` removes it, unlike the resource
tracker of ``multiprocessing.shared_memory``.

Portability: POSIX (shm_open, mmap); on Linux the objects appear in /dev/shm,
which is where ``list_names()`` looks (named POSIX semaphores live there too, as
``sem.<name>``, and are left out).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass

from . import _native
from ._memory import FileMemory, create_file
from ._names import check_group, check_int, check_permissions, check_posix_name, is_valid
from ._resource import all_or_nothing, open_or_create
from .errors import from_os_error

__all__ = (
    "PosixSharedMemory",
    "PosixSharedMemoryInfo",
    "exists",
    "list_names",
    "unlink",
)

KIND = "POSIX shared memory"

#: Where Linux keeps POSIX shared memory objects (and named semaphores, as sem.*).
DEV_SHM = "/dev/shm"


@dataclass(frozen=True)
class PosixSharedMemoryInfo:
    """What ``PosixSharedMemory.info()`` reports (from fstat)."""

    name: str
    size: int
    permissions: int
    uid: int
    gid: int


def exists(name: str) -> bool:
    """True if a POSIX shared memory object called ``name`` exists.

    False for a string that is not a valid name (no object can have it).
    """
    if not is_valid(check_posix_name, name):
        return False
    try:
        fd = _native.shm_open(name, os.O_RDONLY, 0)
    except OSError as error:
        return error.errno == errno.EACCES  # exists, but not ours to open
    os.close(fd)
    return True


def list_names() -> list[str]:
    """The names of every POSIX shared memory object on the system, sorted.

    Read from /dev/shm; named semaphores (``sem.*`` there) are not included.
    """
    try:
        entries = list(os.scandir(DEV_SHM))
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        if entry.name.startswith("sem."):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                names.append("/" + entry.name)
        except OSError:  # removed while we looked
            continue
    return sorted(names)


def unlink(name: str) -> None:
    """Remove the object's name; processes that have it mapped keep their mapping.

    Raises:
        ResourceNotFoundError: no object called ``name``.
        PermissionDeniedError: not allowed to remove it.
    """
    unlink_as(name, KIND)


def unlink_as(name: str, kind: str) -> None:
    """:func:`unlink`, with errors naming the object as ``kind`` (a ring, a topic...)."""
    name = check_posix_name(name)
    try:
        _native.shm_unlink(name)
    except OSError as error:
        raise from_os_error(error, kind, name) from None


def starts_with(name: str, magic: bytes) -> bool:
    """True if ``name`` is an object we can read whose first bytes are ``magic``.

    How the objects built on shared memory (rings, topics) recognise their own.
    """
    name = check_posix_name(name)
    try:
        with open(f"{DEV_SHM}/{name[1:]}", "rb") as memory:
            return memory.read(len(magic)) == magic
    except OSError:
        return False


def names_starting_with(magic: bytes) -> list[str]:
    """The names of the objects in /dev/shm that this user can read and whose
    first bytes are ``magic``, sorted."""
    try:
        entries = os.listdir(DEV_SHM)
    except FileNotFoundError:
        return []
    return sorted(f"/{entry}" for entry in entries if starts_with(f"/{entry}", magic))


class PosixSharedMemory(FileMemory):
    """A mapped POSIX shared memory object; ``buf`` is the memory.

    ``as_array(dtype, shape, offset=0)`` gives a zero-copy NumPy view of it.
    Made by :meth:`create`, :meth:`open` or :meth:`open_or_create`.
    """

    kind = KIND
    _filesystem = DEV_SHM

    @property
    def name(self) -> str:
        """The object's name, such as ``'/jobs'``."""
        return self._where

    @classmethod
    @all_or_nothing
    def create(
        cls,
        name: str,
        size: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
        initialize: Callable[[memoryview], None] | None = None,
    ) -> PosixSharedMemory:
        """Create the object ``name`` of ``size`` bytes (zero-filled) and map it.

        The object appears whole or not at all: it is prepared without a name
        (exactly ``permissions``, whatever the umask; owned by ``group``, a gid
        or a group name, if given; ``size`` bytes of pages allocated, so a full
        /dev/shm is an error now rather than a SIGBUS later), then
        ``initialize(buf)`` runs if given, and only then does ``name`` appear.
        If anything fails (a signal included), nothing is left behind.

        Raises:
            ResourceExistsError: ``name`` exists already.
            ResourceLimitError: no room for ``size`` bytes in /dev/shm.
            PermissionDeniedError: ``group`` is not one of this process's groups.
            ValueError: ``permissions`` let every user write, without
                ``allow_world_writable=True``.
        """
        name = check_posix_name(name)
        check_int(size, "size", minimum=0)
        permissions = check_permissions(permissions, allow_world_writable=allow_world_writable)
        gid = check_group(group)
        if initialize is not None and not callable(initialize):
            raise TypeError("initialize must be a function taking the memory's buffer")
        return create_file(
            DEV_SHM,
            name[1:],
            size,
            permissions=permissions,
            group=gid,
            kind=KIND,
            name=name,
            filesystem=DEV_SHM,
            initialize=initialize,
            make=lambda fd: cls._make(name, fd, None, False),
        )

    @classmethod
    @all_or_nothing
    def open(cls, name: str, *, read_only: bool = False) -> PosixSharedMemory:
        """Map the existing object ``name``, all of it (read-only if asked).

        Raises:
            ResourceNotFoundError: no object called ``name``.
            PermissionDeniedError: its permissions forbid this access.
        """
        name = check_posix_name(name)
        if not isinstance(read_only, bool):
            raise TypeError("read_only must be a bool")
        try:
            fd = _native.shm_open(name, os.O_RDONLY if read_only else os.O_RDWR, 0)
        except OSError as error:
            raise from_os_error(error, KIND, name) from None
        return cls._adopt(name, fd, read_only)

    @classmethod
    @all_or_nothing
    def open_or_create(
        cls,
        name: str,
        size: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> PosixSharedMemory:
        """Open ``name`` if it exists, else create it with ``size`` bytes (as :meth:`create`).

        An existing object keeps its own size.

        Raises:
            PermissionDeniedError: the existing object's permissions forbid writing.
            ResourceLimitError: no room for ``size`` bytes.
        """
        name = check_posix_name(name)
        check_int(size, "size", minimum=0)
        check_permissions(permissions, allow_world_writable=allow_world_writable)
        check_group(group)
        return open_or_create(
            lambda: cls.create(
                name,
                size,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            lambda: cls.open(name),
        )

    def info(self) -> PosixSharedMemoryInfo:
        """Size (now, whatever this mapping's), permissions and owner of the object."""
        self._check_open()
        status = os.fstat(self._fd)
        return PosixSharedMemoryInfo(
            self.name, status.st_size, status.st_mode & 0o7777, status.st_uid, status.st_gid
        )

    def unlink(self) -> None:
        """Remove the object's name (this mapping stays usable until closed).

        Raises:
            ResourceNotFoundError: already removed.
        """
        unlink(self.name)
