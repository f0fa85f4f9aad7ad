"""What every shared memory object shares: ``buf``, ``size``, ``as_array`` (private).

A memory object holds a *mapping*: an object exporting the memory through the
buffer protocol (an ``mmap.mmap``, or the C layer's System V attachment) whose
``close()`` refuses with BufferError while views of it are alive. ``buf`` is a
memoryview of the mapping. Unmapping while a memoryview or a NumPy array still
points into the memory would let that view read freed memory (or crash the
process), so closing and resizing refuse with a clear error instead (and a
``with`` block that ends by an exception leaves the memory to its views: it is
unmapped when the last of them goes).

Files that hold memory (POSIX shared memory in /dev/shm, mapped files, named
semaphores) are made by :func:`create_file`: prepared where nobody can reach them
(an ``O_TMPFILE``), then linked under their name, so that the name appears with
its final permissions, group, size, reserved pages and contents, or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import mmap
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast, overload

from ._names import check_int
from ._resource import Resource, on_failure
from .errors import (
    IPCError,
    PermissionDeniedError,
    ResourceLimitError,
    UnsupportedFeature,
    from_os_error,
)

if TYPE_CHECKING:
    import numpy
    import numpy.typing

    _Scalar = TypeVar("_Scalar", bound=numpy.generic)

_F = TypeVar("_F", bound="FileMemory")


class Mapping(Protocol):
    """A buffer-exporting object whose close() raises BufferError while exported."""

    def close(self) -> None: ...


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise UnsupportedFeature(
            "as_array() needs NumPy, which is not installed (pip install numpy)"
        ) from None
    return numpy


def mount_point(path: str) -> str:
    """The mount point of the filesystem holding ``path`` (for messages)."""
    path = os.path.realpath(path)
    with contextlib.suppress(OSError):
        device = os.stat(path).st_dev
        while path != "/":
            parent = os.path.dirname(path)
            if os.stat(parent).st_dev != device:
                break
            path = parent
    return path


def reserve(fd: int, size: int, *, kind: str, name: str, filesystem: str, start: int = 0) -> None:
    """Allocate the pages of ``fd``'s bytes ``start`` .. ``start + size`` now (posix_fallocate).

    A file on tmpfs (``/dev/shm``) that was only sized with ftruncate gets its pages
    at the first write: when the filesystem is full then, the writer dies of SIGBUS,
    which Python cannot catch. Reserving where the library creates or grows the
    memory turns that into a :class:`ResourceLimitError` naming the filesystem and
    its free space, raised by the call that created (or grew) it.
    """
    if size == 0:
        return
    try:
        os.posix_fallocate(fd, start, size)
    except OSError as error:
        code = error.errno if error.errno is not None else 0
        if code not in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM, errno.EINVAL):
            raise
        try:
            stats = os.fstatvfs(fd)
            free = (
                f"{stats.f_bavail * stats.f_frsize} bytes free of {stats.f_blocks * stats.f_frsize}"
            )
        except OSError:
            free = "free space unknown"
        raise ResourceLimitError(
            errno.ENOSPC,
            f"{kind} {name!r}: no room for {size} bytes on {filesystem} ({free})",
            name,
        ) from None


def map_descriptor(fd: int, size: int, read_only: bool) -> mmap.mmap | None:
    """Map ``size`` bytes of ``fd`` shared (None for 0: mmap cannot map zero bytes)."""
    if size == 0:
        return None
    return mmap.mmap(fd, size, access=mmap.ACCESS_READ if read_only else mmap.ACCESS_WRITE)


def _tmpfile_works() -> bool:
    # Linking an O_TMPFILE goes through /proc/self/fd (linkat with AT_EMPTY_PATH
    # needs CAP_DAC_READ_SEARCH).
    return hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def create_file(
    directory: str,
    filename: str,
    size: int,
    *,
    permissions: int,
    group: int | None,
    kind: str,
    name: str,
    filesystem: str,
    make: Callable[[int], _F],
    initialize: Callable[[memoryview], None] | None = None,
) -> _F:
    """Create ``directory/filename`` whole, or not at all; return it mapped, as ``make(fd)``.

    The file is made as an ``O_TMPFILE`` (no name, mode 0), handed at once to
    the object ``make(fd)`` builds (which owns it from then on), given its group
    and then its exact ``permissions`` (no umask), sized, its pages reserved
    (:func:`reserve`), mapped and passed to ``initialize``, and only then linked
    under ``filename``: nobody can open it before it is complete, and it is never
    more open than ``permissions``. Where O_TMPFILE is not supported it is
    created with O_EXCL at mode 0 instead (the name then exists, unreadable,
    while it is prepared). The final symbolic link is never followed.

    Call it inside an :func:`~unixipc._resource.all_or_nothing` creation: if
    anything fails then, a signal handler raising included, the object is closed
    and the name removed (if it is still ours) before the error propagates. A
    name taken meanwhile raises ResourceExistsError.
    """
    try:
        dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise from_os_error(
                OSError(error.errno, error.strerror), "directory", directory
            ) from None
        raise from_os_error(error, kind, name) from None
    try:
        path = os.path.join(directory, filename)
        made = make(_open_unnamed(dir_fd, path, filename, kind, name))
        fd = made._fd
        status = os.fstat(fd)
        identity = (status.st_dev, status.st_ino)
        try:
            if group is not None:
                os.fchown(fd, -1, group)
            os.fchmod(fd, permissions)  # exactly these bits: no umask applied
            os.ftruncate(fd, size)
            reserve(fd, size, kind=kind, name=name, filesystem=filesystem)
            made._set_mapping(map_descriptor(fd, size, read_only=False))
            if initialize is not None:
                initialize(made._buf)
            if status.st_nlink == 0:  # an O_TMPFILE: now it gets its name
                os.link(f"/proc/self/fd/{fd}", filename, dst_dir_fd=dir_fd, follow_symlinks=True)
                _reopen_by_name(made, dir_fd, filename, identity, size)
            # From here on, a failure of the whole creation (of an outer call too)
            # removes the name.
            on_failure(functools.partial(_remove_if_ours, path, identity))
        except BaseException as error:
            # Maybe linked: an interrupt may come as link() returns, before on_failure.
            _remove_if_ours(filename, identity, dir_fd)
            made._discard()
            if isinstance(error, OSError) and not isinstance(error, IPCError):
                raise from_os_error(error, kind, name) from None
            raise
        return made
    finally:
        os.close(dir_fd)


def _open_unnamed(dir_fd: int, path: str, filename: str, kind: str, name: str) -> int:
    """An O_TMPFILE in the directory; or, where not supported, ``filename`` made at mode 0."""
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        if _tmpfile_works():
            try:
                return os.open(".", flags | os.O_TMPFILE, 0, dir_fd=dir_fd)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
        # This filesystem cannot: the name exists at once (mode 0, so unreadable).
        fd = os.open(filename, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0, dir_fd=dir_fd)
        status = os.fstat(fd)
        on_failure(functools.partial(_remove_if_ours, path, (status.st_dev, status.st_ino)))
        return fd
    except OSError as error:
        raise from_os_error(error, kind, name) from None


def _remove_if_ours(path: str, identity: tuple[int, int], dir_fd: int | None = None) -> None:
    """Unlink ``path`` if it is still the file ``identity`` (device, inode) names."""
    with contextlib.suppress(OSError):
        found = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        if (found.st_dev, found.st_ino) == identity:
            os.unlink(path, dir_fd=dir_fd)


def _reopen_by_name(
    made: FileMemory, dir_fd: int, filename: str, identity: tuple[int, int], size: int
) -> None:
    """Hold and map the file through its name now that it has one.

    A descriptor or mapping made from the O_TMPFILE keeps its first, nameless
    path ("/dev/shm/#1234 (deleted)" in /proc, lsof and the inspector), which
    would make a live object look removed.
    """
    fd = os.open(filename, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        status = os.fstat(fd)
        if (status.st_dev, status.st_ino) != identity:
            raise IPCError(f"{made.describe()} was replaced by another file as it was created")
    except BaseException:
        os.close(fd)
        raise
    old, made._fd = made._fd, fd
    os.close(old)
    made._drop_mapping("create")
    made._set_mapping(map_descriptor(fd, size, read_only=False))


def check_shape(shape: object) -> tuple[int, ...]:
    """An array shape: a non-negative int, or a tuple of them."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple):
        raise TypeError(f"shape must be an int or a tuple of ints, not {type(shape).__name__}")
    for extent in shape:
        check_int(extent, "shape", minimum=0)
    return shape


class MemoryBase(Resource):
    """A mapped region of shared memory; subclasses set the mapping and release the handle."""

    read_only: bool = False
    _map: Mapping | None = None
    _buf: memoryview = memoryview(b"")

    def _set_mapping(self, mapping: Mapping | None) -> None:
        """Install a new mapping (None for an empty region) as ``buf``."""
        self._map = mapping
        # An empty region has an empty buffer: mmap cannot map zero bytes.
        self._buf = memoryview(mapping) if mapping is not None else memoryview(b"")  # type: ignore[arg-type]

    def _drop_mapping(self, doing: str) -> None:
        """Unmap, or raise IPCError (changing nothing) while views are alive."""
        in_use = IPCError(
            f"cannot {doing} {self.describe()}: views of its memory are still in use; "
            "release them (del the arrays and memoryviews, close semaphores placed in it) first"
        )
        try:
            self._buf.release()
        except BufferError:
            raise in_use from None
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                self._buf = memoryview(self._map)  # type: ignore[arg-type]  # still usable
                raise in_use from None
        self._map = None
        self._buf = memoryview(b"")

    def close(self) -> None:
        """Unmap and release this process's handle. Idempotent; never removes the object.

        Raises:
            IPCError: views of ``buf`` (memoryviews, NumPy arrays, semaphores placed
                in it) are still alive; release them first. It stays open and usable.
        """
        if self._closed:
            return
        self._drop_mapping("close")
        super().close()

    def _abandon(self) -> None:
        """Close, leaving the mapping to the views still alive (it is unmapped when
        the last of them goes, by reference counting)."""
        if not self._closed:
            self._map = None
            self._buf = memoryview(b"")
            Resource.close(self)

    def _discard(self) -> None:
        try:
            self.close()
        except Exception:
            self._abandon()

    def _close_failed(self, problem: Exception) -> str:
        # The with block ends by an exception while views still point into the memory.
        self._abandon()
        return (
            f"unixipc: {self.describe()} was still viewed (memoryviews or arrays) when the "
            "with block ended; it stays mapped until those views are released"
        )

    @property
    def buf(self) -> memoryview:
        """The shared memory (read-only when opened so)."""
        self._check_open()
        return self._buf

    @property
    def size(self) -> int:
        """The mapped size in bytes."""
        self._check_open()
        return len(self._buf)

    @overload
    def as_array(
        self,
        dtype: type[_Scalar] | numpy.dtype[_Scalar],
        shape: int | tuple[int, ...],
        offset: int = 0,
    ) -> numpy.typing.NDArray[_Scalar]: ...

    @overload
    def as_array(
        self, dtype: numpy.typing.DTypeLike, shape: int | tuple[int, ...], offset: int = 0
    ) -> numpy.typing.NDArray[Any]: ...

    def as_array(
        self, dtype: numpy.typing.DTypeLike, shape: int | tuple[int, ...], offset: int = 0
    ) -> numpy.typing.NDArray[Any]:
        """A NumPy array of ``dtype`` and ``shape`` viewing the memory at ``offset``: no copy.

        Writes through the array are seen by every process that maps the object;
        the array is read-only when the memory is. While the array (or any view
        of it) is alive, ``close()`` refuses: delete it first. Type checkers see
        the element type: ``as_array(numpy.float64, 8)`` is an
        ``NDArray[numpy.float64]``.

        Raises:
            UnsupportedFeature: NumPy is not installed.
            ValueError: the array does not fit in the memory at ``offset``.
        """
        np = _numpy()
        extents = check_shape(shape)
        check_int(offset, "offset", minimum=0)
        self._check_open()
        element = np.dtype(dtype)
        needed = math.prod(extents) * element.itemsize
        if offset + needed > len(self._buf):
            raise ValueError(
                f"an array of shape {extents} and dtype {element} needs {needed} bytes "
                f"at offset {offset}, but {self.describe()} has {len(self._buf)} bytes"
            )
        # frombuffer keeps a buffer export alive for as long as the array lives,
        # which is what makes close() refuse; ndarray(buffer=...) would not.
        flat = np.frombuffer(self._buf, dtype=element, count=math.prod(extents), offset=offset)
        return cast("numpy.typing.NDArray[Any]", flat.reshape(extents))


class FileMemory(MemoryBase):
    """Memory mapped from a file descriptor: POSIX shared memory and mapped files.

    The object owns the descriptor; ``resize`` and ``remap`` change the mapping.
    """

    _factories = ("create", "open", "open_or_create")
    #: Where the files live, for messages (None: the mount point of the file).
    _filesystem: ClassVar[str | None] = None

    def __init__(self, where: str, fd: int, mapping: mmap.mmap | None, read_only: bool) -> None:
        """Use the class's create, open or open_or_create."""
        self._where = where
        self._fd = fd
        self.read_only = read_only
        self._set_mapping(mapping)
        self._opened(where)  # last: from here on close() releases fd and mapping

    @classmethod
    def _adopt(cls: type[_F], where: str, fd: int, read_only: bool) -> _F:
        """The object for an opened descriptor, mapping all of it (closes fd on failure)."""
        try:
            mapping = map_descriptor(fd, os.fstat(fd).st_size, read_only)
        except BaseException as error:
            os.close(fd)
            if isinstance(error, OSError):
                raise from_os_error(error, cls.kind, where) from None
            raise
        try:
            return cls._make(where, fd, mapping, read_only)
        except BaseException:
            if mapping is not None:
                mapping.close()
            os.close(fd)
            raise

    def _filesystem_name(self) -> str:
        return self._filesystem or mount_point(self._where)

    def fileno(self) -> int:
        """The descriptor of the file holding the memory."""
        self._check_open()
        return self._fd

    def resize(self, size: int) -> None:
        """Change the size to ``size`` bytes and map all of it; growing reserves the pages.

        Growing adds zero bytes, allocated now (so that a full filesystem is an
        error here, not a SIGBUS at the first write). Other processes keep their
        mappings at the old size until they call :meth:`remap`; if the object
        shrinks, their access past the new end raises SIGBUS, so shrink only what
        nobody else uses. If growing fails, the size is left as it was.

        Raises:
            IPCError: views of ``buf`` (memoryviews, NumPy arrays, semaphores placed
                in it) are still alive; nothing changed.
            PermissionDeniedError: it was opened read-only.
            ResourceLimitError: no room for ``size`` bytes.
        """
        check_int(size, "size", minimum=0)
        self._check_open()
        if self.read_only:
            raise PermissionDeniedError(
                errno.EBADF,
                f"{self.describe()} was opened read-only: it cannot resize",
                self._where,
            )
        self._drop_mapping("resize")
        try:
            old = os.fstat(self._fd).st_size
            os.ftruncate(self._fd, size)
            try:
                reserve(
                    self._fd, max(0, size - old), start=old, kind=self.kind, name=self._where,
                    filesystem=self._filesystem_name(),
                )  # fmt: skip
            except BaseException:
                os.ftruncate(self._fd, old)
                raise
            self._set_mapping(map_descriptor(self._fd, size, self.read_only))
        except BaseException as error:
            with contextlib.suppress(OSError):  # map whatever size it has now
                self._set_mapping(
                    map_descriptor(self._fd, os.fstat(self._fd).st_size, self.read_only)
                )
            if isinstance(error, OSError) and not isinstance(error, IPCError):
                raise from_os_error(error, self.kind, self._where) from None
            raise

    def remap(self) -> int:
        """Map the object at its current size, after another process resized it; return it.

        ``size`` and ``buf`` describe this process's mapping, which keeps the size
        it had when it was made: another process's ``resize`` is seen only after
        ``remap()`` (``info().size`` always tells the object's size now).

        Raises:
            IPCError: views of ``buf`` are still alive; nothing changed.
        """
        self._check_open()
        size = os.fstat(self._fd).st_size
        if size == len(self._buf):
            return size
        self._drop_mapping("remap")
        try:
            self._set_mapping(map_descriptor(self._fd, size, self.read_only))
        except OSError as error:
            raise from_os_error(error, self.kind, self._where) from None
        return size

    def _release(self) -> None:
        os.close(self._fd)


def is_regular_file(fd: int) -> bool:
    """True if ``fd`` is a regular file (what can be mapped and sized)."""
    return stat.S_ISREG(os.fstat(fd).st_mode)
