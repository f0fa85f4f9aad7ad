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
zero-copy NumPy view. A mapped file is never reached through a symbolic link:
``create`` makes the file whole (exact permissions, reserved blocks) before its
name appears, and ``open`` refuses a link at the path. Portability: POSIX
mmap/msync (Linux for the O_TMPFILE creation; elsewhere the file is created
with O_EXCL at mode 0 and completed in place); anonymous shared mappings are in
every modern UNIX.
"""

from __future__ import annotations

import errno
import mmap
import os
from dataclasses import dataclass
from typing import NoReturn

from ._memory import FileMemory, MemoryBase, create_file, is_regular_file, mount_point
from ._names import check_group, check_int, check_path, check_permissions
from ._resource import all_or_nothing, open_or_create
from .errors import IPCOSError, from_os_error

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


def _split(path: str) -> tuple[str, str]:
    directory, filename = os.path.split(path)
    if not filename or filename in (".", ".."):
        raise ValueError(f"path must name a file, got {path!r}")
    return directory or ".", filename


class MappedFile(FileMemory):
    """A regular file mapped shared into memory; ``buf`` is the file's contents.

    Made by :meth:`create`, :meth:`open` or :meth:`open_or_create`.
    """

    kind = KIND

    @property
    def path(self) -> str:
        """The file's path, as given."""
        return self._where

    @classmethod
    @all_or_nothing
    def create(
        cls,
        path: str | os.PathLike[str],
        size: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> MappedFile:
        """Create the file ``path`` with ``size`` zero bytes and map it.

        The file appears whole or not at all: exactly ``permissions`` whatever
        the umask, owned by ``group`` (a gid or a group name) if given, and its
        blocks allocated (a full filesystem is an error now, not a SIGBUS at
        the first write). A symbolic link at ``path`` is never followed.

        Raises:
            ResourceExistsError: something exists at ``path`` already.
            ResourceNotFoundError: the directory does not exist.
            ResourceLimitError: no room for ``size`` bytes.
            ValueError: ``permissions`` let every user write, without
                ``allow_world_writable=True``.
        """
        path = check_path(path)
        directory, filename = _split(path)
        check_int(size, "size", minimum=0)
        permissions = check_permissions(permissions, allow_world_writable=allow_world_writable)
        gid = check_group(group)
        return create_file(
            directory,
            filename,
            size,
            permissions=permissions,
            group=gid,
            kind=KIND,
            name=path,
            filesystem=mount_point(directory),
            make=lambda fd: cls._make(path, fd, None, False),
        )

    @classmethod
    @all_or_nothing
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> MappedFile:
        """Map the existing file ``path``, all of it (read-only if asked).

        Raises:
            ResourceNotFoundError: no file at ``path``.
            PermissionDeniedError: its permissions forbid this access.
            IPCOSError: ``path`` is a symbolic link (never followed).
            ValueError: ``path`` is not a regular file.
        """
        path = check_path(path)
        if not isinstance(read_only, bool):
            raise TypeError("read_only must be a bool")
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise IPCOSError(
                    errno.ELOOP,
                    f"{KIND} {path!r} is a symbolic link, which unixipc never follows",
                    path,
                ) from None
            raise from_os_error(error, KIND, path) from None
        try:
            regular = is_regular_file(fd)
        except BaseException:
            os.close(fd)
            raise
        if not regular:
            os.close(fd)
            raise ValueError(f"{path!r} is not a regular file: only those can be mapped")
        return cls._adopt(path, fd, read_only)

    @classmethod
    @all_or_nothing
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        size: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> MappedFile:
        """Open ``path`` if it exists, else create it with ``size`` bytes (as :meth:`create`).

        An existing file keeps its own size.

        Raises:
            ResourceNotFoundError: the directory does not exist.
            PermissionDeniedError: the file's permissions forbid writing.
        """
        path = check_path(path)
        _split(path)
        check_int(size, "size", minimum=0)
        check_permissions(permissions, allow_world_writable=allow_world_writable)
        check_group(group)
        return open_or_create(
            lambda: cls.create(
                path,
                size,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            lambda: cls.open(path),
        )

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

    def info(self) -> MappedFileInfo:
        """Size (now, whatever this mapping's), permissions, owner and modification time."""
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
        super().close()


class AnonymousSharedMemory(MemoryBase):
    """Memory shared with the children this process forks afterwards (MAP_SHARED|MAP_ANONYMOUS).

    It has no name: only ``fork`` passes it on. Spawned and unrelated processes
    need a named object (:class:`~unixipc.PosixSharedMemory`) instead. Made by
    :meth:`create`.
    """

    kind = "anonymous shared memory"
    _factories = ("create",)

    def __init__(self, mapping: mmap.mmap) -> None:
        """Use :meth:`create`."""
        self._set_mapping(mapping)
        self._opened(f"{len(mapping)} bytes")

    @classmethod
    @all_or_nothing
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
        return cls._make(mapping)

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "anonymous shared memory cannot be pickled: it reaches only children "
            "created by fork; use PosixSharedMemory for spawned or unrelated processes"
        )
