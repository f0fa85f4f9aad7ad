"""Memory-mapped files and anonymous shared mappings.

:class:`MappedFile` maps a regular file with MAP_SHARED: every process that maps
the same file sees the same memory, and the kernel writes it back to the file
(``flush()`` makes that happen now, with msync). Persistence: filesystem; the
contents outlive every process and a reboot.

:class:`AnonymousSharedMemory` is a MAP_SHARED|MAP_ANONYMOUS mapping with no name
at all: it is shared with the children forked after it was made (not with
spawned or unrelated processes), and disappears when the last of them unmaps it.
Persistence: process.

Both offer ``buf``, ``size`` and ``as_array(dtype, shape, offset=0)``, a
zero-copy NumPy view. Portability: POSIX mmap/msync; anonymous shared mappings
are in every modern UNIX.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
from dataclasses import dataclass
from typing import NoReturn

from ._memory import MemoryBase
from ._names import check_int, check_path, check_permissions
from .errors import PermissionDeniedError, ResourceExistsError, from_os_error

__all__ = ("AnonymousSharedMemory", "MappedFile", "MappedFileInfo", "unlink")

KIND = "mapped file"


@dataclass(frozen=True)
class MappedFileInfo:
    """What ``MappedFile.info()`` reports (from fstat)."""

    path: str
    size: int
    permissions: int
    uid: int
    gid: int
    modified: float


def unlink(path: str | os.PathLike[str]) -> None:
    """Remove the file; processes that have it mapped keep their mapping.

    Raises:
        ResourceNotFoundError: no file at ``path``.
        PermissionDeniedError: not allowed to remove it.
    """
    path = check_path(path)
    try:
        os.unlink(path)
    except OSError as error:
        raise from_os_error(error, KIND, path) from None


class MappedFile(MemoryBase):
    """A regular file mapped shared into memory; ``buf`` is the file's contents."""

    kind = KIND

    def __init__(self, path: str, fd: int, read_only: bool) -> None:
        """Use :meth:`create`, :meth:`open` or :meth:`open_or_create`."""
        self.path = path
        self.read_only = read_only
        self._fd = fd
        try:
            self._set_mapping(self._map_file(os.fstat(fd).st_size))
        except OSError as error:
            os.close(fd)
            raise from_os_error(error, KIND, path) from None
        self._opened(path)

    def _map_file(self, size: int) -> mmap.mmap | None:
        access = mmap.ACCESS_READ if self.read_only else mmap.ACCESS_WRITE
        return mmap.mmap(self._fd, size, access=access) if size else None

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], size: int, *, permissions: int = 0o600
    ) -> MappedFile:
        """Create the file ``path`` with ``size`` zero bytes and map it.

        Raises:
            ResourceExistsError: a file exists at ``path`` already.
            ResourceNotFoundError: the directory does not exist.
            ResourceLimitError: no room for ``size`` bytes.
        """
        path = check_path(path)
        check_int(size, "size", minimum=0)
        permissions = check_permissions(permissions)
        fd = cls._open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, permissions)
        try:
            os.fchmod(fd, permissions)  # exactly these bits, whatever the umask
            os.ftruncate(fd, size)
        except OSError as error:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise from_os_error(error, KIND, path) from None
        return cls(path, fd, read_only=False)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> MappedFile:
        """Map the existing file ``path``, all of it (read-only if asked).

        Raises:
            ResourceNotFoundError: no file at ``path``.
            PermissionDeniedError: its permissions forbid this access.
        """
        path = check_path(path)
        if not isinstance(read_only, bool):
            raise TypeError("read_only must be a bool")
        fd = cls._open(path, os.O_RDONLY if read_only else os.O_RDWR, 0)
        return cls(path, fd, read_only=read_only)

    @classmethod
    def open_or_create(
        cls, path: str | os.PathLike[str], size: int, *, permissions: int = 0o600
    ) -> MappedFile:
        """Open ``path`` if it exists, else create it with ``size`` bytes.

        An existing file keeps its own size.

        Raises:
            ResourceNotFoundError: the directory does not exist.
            PermissionDeniedError: the file's permissions forbid writing.
        """
        path = check_path(path)
        check_int(size, "size", minimum=0)
        check_permissions(permissions)
        while True:
            try:
                return cls.create(path, size, permissions=permissions)
            except ResourceExistsError:
                pass
            try:
                return cls.open(path)
            except FileNotFoundError:
                continue  # removed between our two calls: try again

    @staticmethod
    def _open(path: str, flags: int, permissions: int) -> int:
        try:
            fd = os.open(path, flags | os.O_CLOEXEC, permissions)
        except OSError as error:
            raise from_os_error(error, KIND, path) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"{path!r} is not a regular file: only those can be mapped")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def flush(self, offset: int = 0, size: int | None = None) -> None:
        """Write changed pages back to the file now and wait for it (msync MS_SYNC).

        ``offset`` and ``size`` limit it to a range; ``offset`` is rounded down to
        a page boundary, as msync requires.

        Raises:
            ValueError: the range is outside the mapping.
            IPCOSError: the write-back failed (an I/O error).
        """
        check_int(offset, "offset", minimum=0)
        if size is not None:
            check_int(size, "size", minimum=0)
        self._check_open()
        end = len(self._buf) if size is None else offset + size
        if end > len(self._buf):
            raise ValueError(f"range {offset}..{end} is outside {self.describe()} ({self.size} B)")
        if self._map is None or self.read_only or end == offset:
            return  # nothing this mapping could have changed
        start = offset - offset % mmap.PAGESIZE
        assert isinstance(self._map, mmap.mmap)
        try:
            self._map.flush(start, end - start)
        except OSError as error:
            raise from_os_error(error, KIND, self.path) from None

    def resize(self, size: int) -> None:
        """Change the file's size to ``size`` bytes and map all of it.

        Growing adds zero bytes. Other processes keep their mappings at the old
        size; if the file shrinks, their access past the new end raises SIGBUS.

        Raises:
            IPCError: views of ``buf`` (memoryviews, NumPy arrays) are still alive;
                nothing changed.
            PermissionDeniedError: the file was opened read-only.
            ResourceLimitError: no room for ``size`` bytes.
        """
        check_int(size, "size", minimum=0)
        self._check_open()
        if self.read_only:
            raise PermissionDeniedError(
                errno.EBADF, f"{self.describe()} was opened read-only: it cannot resize", self.path
            )
        self._drop_mapping("resize")
        try:
            os.ftruncate(self._fd, size)
            self._set_mapping(self._map_file(size))
        except OSError as error:
            with contextlib.suppress(OSError):  # map whatever size it has now
                self._set_mapping(self._map_file(os.fstat(self._fd).st_size))
            raise from_os_error(error, KIND, self.path) from None

    def fileno(self) -> int:
        """The descriptor of the file."""
        self._check_open()
        return self._fd

    def info(self) -> MappedFileInfo:
        """Size, permissions, owner and modification time of the file."""
        self._check_open()
        status = os.fstat(self._fd)
        return MappedFileInfo(
            self.path,
            status.st_size,
            status.st_mode & 0o7777,
            status.st_uid,
            status.st_gid,
            status.st_mtime,
        )

    def unlink(self) -> None:
        """Remove the file's name (this mapping stays usable until closed).

        Raises:
            ResourceNotFoundError: already removed.
        """
        unlink(self.path)

    def close(self) -> None:
        """Unmap and close the file. Idempotent; never removes it (that is ``unlink``).

        Changes reach the file whether or not ``flush()`` was called; ``flush()``
        only decides when.

        Raises:
            IPCError: views of ``buf`` are still alive; the file stays mapped.
        """
        if self._closed:
            return
        self._drop_mapping("close")
        super().close()

    def _release(self) -> None:
        os.close(self._fd)


class AnonymousSharedMemory(MemoryBase):
    """Memory shared with the children this process forks afterwards (MAP_SHARED|MAP_ANONYMOUS).

    It has no name: only ``fork`` passes it on. Spawned and unrelated processes
    need a named object (:class:`~unixipc.PosixSharedMemory`) instead.
    """

    kind = "anonymous shared memory"

    def __init__(self, mapping: mmap.mmap) -> None:
        """Use :meth:`create`."""
        self._set_mapping(mapping)
        self._opened(f"{len(mapping)} bytes")

    @classmethod
    def create(cls, size: int) -> AnonymousSharedMemory:
        """Map ``size`` zero bytes, shared with children forked after this call.

        Raises:
            ResourceLimitError: not enough memory.
        """
        check_int(size, "size", minimum=1)
        try:
            mapping = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        except OSError as error:
            raise from_os_error(error, "anonymous shared memory", f"{size} bytes") from None
        return cls(mapping)

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "anonymous shared memory cannot be pickled: it reaches only children "
            "created by fork; use PosixSharedMemory for spawned or unrelated processes"
        )
