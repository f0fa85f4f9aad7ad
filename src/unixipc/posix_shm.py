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

import contextlib
import errno
import mmap
import os
from dataclasses import dataclass

from . import _native
from ._memory import MemoryBase, reserve
from ._names import check_int, check_permissions, check_posix_name
from .errors import IPCError, PermissionDeniedError, ResourceExistsError, from_os_error

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
    """True if a POSIX shared memory object called ``name`` exists."""
    name = check_posix_name(name)
    try:
        fd = _native.shm_open(name, os.O_RDONLY, 0)
    except OSError:
        return False
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
    name = check_posix_name(name)
    try:
        _native.shm_unlink(name)
    except OSError as error:
        raise from_os_error(error, KIND, name) from None


class PosixSharedMemory(MemoryBase):
    """A mapped POSIX shared memory object; ``buf`` is the memory.

    ``as_array(dtype, shape, offset=0)`` gives a zero-copy NumPy view of it.
    """

    kind = KIND

    def __init__(self, name: str, fd: int, read_only: bool) -> None:
        """Use :meth:`create`, :meth:`open` or :meth:`open_or_create`."""
        self.name = name
        self.read_only = read_only
        self._fd = fd
        try:
            self._set_mapping(self._map_file(os.fstat(fd).st_size))
        except OSError as error:
            os.close(fd)
            raise from_os_error(error, KIND, name) from None
        self._opened(name)

    def _map_file(self, size: int) -> mmap.mmap | None:
        # mmap cannot map zero bytes: an empty object has an empty buffer.
        access = mmap.ACCESS_READ if self.read_only else mmap.ACCESS_WRITE
        return mmap.mmap(self._fd, size, access=access) if size else None

    @classmethod
    def create(cls, name: str, size: int, *, permissions: int = 0o600) -> PosixSharedMemory:
        """Create the object ``name`` of ``size`` bytes (zero-filled) and map it.

        Raises:
            ResourceExistsError: ``name`` exists already.
            ResourceLimitError: no room for ``size`` bytes.
        """
        name = check_posix_name(name)
        check_int(size, "size", minimum=0)
        permissions = check_permissions(permissions)
        fd = cls._shm_open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, permissions)
        try:
            os.fchmod(fd, permissions)  # exactly these bits, whatever the umask
            os.ftruncate(fd, size)
            reserve(fd, size, kind=KIND, name=name, filesystem="/dev/shm")
        except BaseException as error:
            os.close(fd)
            _native.shm_unlink(name)
            if isinstance(error, OSError) and not isinstance(error, IPCError):
                raise from_os_error(error, KIND, name) from None
            raise
        return cls(name, fd, read_only=False)

    @classmethod
    def open(cls, name: str, *, read_only: bool = False) -> PosixSharedMemory:
        """Map the existing object ``name`` (read-only if asked).

        Raises:
            ResourceNotFoundError: no object called ``name``.
            PermissionDeniedError: its permissions forbid this access.
        """
        name = check_posix_name(name)
        if not isinstance(read_only, bool):
            raise TypeError("read_only must be a bool")
        fd = cls._shm_open(name, os.O_RDONLY if read_only else os.O_RDWR, 0)
        return cls(name, fd, read_only=read_only)

    @classmethod
    def open_or_create(cls, name: str, size: int, *, permissions: int = 0o600) -> PosixSharedMemory:
        """Open ``name`` if it exists, else create it with ``size`` bytes.

        An existing object keeps its own size.

        Raises:
            PermissionDeniedError: the existing object's permissions forbid writing.
            ResourceLimitError: no room for ``size`` bytes.
        """
        name = check_posix_name(name)
        check_int(size, "size", minimum=0)
        check_permissions(permissions)
        while True:
            try:
                return cls.create(name, size, permissions=permissions)
            except ResourceExistsError:
                pass
            try:
                return cls.open(name)
            except FileNotFoundError:
                continue  # removed between our two calls: try again

    @staticmethod
    def _shm_open(name: str, flags: int, permissions: int) -> int:
        try:
            return _native.shm_open(name, flags, permissions)
        except OSError as error:
            raise from_os_error(error, KIND, name) from None

    def resize(self, size: int) -> None:
        """Change the object's size to ``size`` bytes and map all of it.

        Growing adds zero bytes. Other processes keep their mappings at the old
        size (they reopen to see more); if the object shrinks, their access past
        the new end raises SIGBUS, so shrink only what nobody else uses.

        Raises:
            IPCError: views of ``buf`` (memoryviews, NumPy arrays, semaphores placed
                in it) are still alive; nothing changed.
            PermissionDeniedError: the object was opened read-only.
            ResourceLimitError: no room for ``size`` bytes.
        """
        check_int(size, "size", minimum=0)
        self._check_open()
        if self.read_only:
            raise PermissionDeniedError(
                errno.EBADF, f"{self.describe()} was opened read-only: it cannot resize", self.name
            )
        self._drop_mapping("resize")
        try:
            os.ftruncate(self._fd, size)
            self._set_mapping(self._map_file(size))
        except OSError as error:
            with contextlib.suppress(OSError):  # map whatever size it has now
                self._set_mapping(self._map_file(os.fstat(self._fd).st_size))
            raise from_os_error(error, KIND, self.name) from None

    def fileno(self) -> int:
        """The descriptor of the shared memory object."""
        self._check_open()
        return self._fd

    def info(self) -> PosixSharedMemoryInfo:
        """Size, permissions and owner of the object."""
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

    def _release(self) -> None:
        os.close(self._fd)
