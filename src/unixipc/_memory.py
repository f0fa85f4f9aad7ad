"""What every shared memory object shares: ``buf``, ``size``, ``as_array`` (private).

A memory object holds a *mapping*: an object exporting the memory through the
buffer protocol (an ``mmap.mmap``, or the C layer's System V attachment) whose
``close()`` refuses with BufferError while views of it are alive. ``buf`` is a
memoryview of the mapping. Unmapping while a memoryview or a NumPy array still
points into the memory would let that view read freed memory (or crash the
process), so closing and resizing refuse with a clear error instead.
"""

from __future__ import annotations

import errno
import math
import os
from typing import TYPE_CHECKING, Any, Protocol, cast

from ._names import check_int
from ._resource import Resource
from .errors import IPCError, ResourceLimitError, UnsupportedFeature

if TYPE_CHECKING:
    import numpy
    import numpy.typing

__all__ = ("Mapping", "MemoryBase", "check_shape", "reserve")


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


def reserve(fd: int, size: int, *, kind: str, name: str, filesystem: str) -> None:
    """Allocate the pages of ``fd``'s first ``size`` bytes now (posix_fallocate).

    A file on tmpfs (``/dev/shm``) that was only sized with ftruncate gets its pages
    at the first write: when the filesystem is full then, the writer dies of SIGBUS,
    which Python cannot catch. Reserving at creation turns that into a
    :class:`ResourceLimitError` naming the filesystem and its free space, raised by
    the call that created the object (which then removes it).
    """
    if size == 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
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

    def as_array(
        self, dtype: numpy.typing.DTypeLike, shape: int | tuple[int, ...], offset: int = 0
    ) -> numpy.typing.NDArray[Any]:
        """A NumPy array of ``dtype`` and ``shape`` viewing the memory at ``offset``: no copy.

        Writes through the array are seen by every process that maps the object;
        the array is read-only when the memory is. While the array (or any view
        of it) is alive, ``close()`` refuses: delete it first.

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
