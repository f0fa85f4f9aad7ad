"""FIFOs (named pipes): one-way byte streams between unrelated processes.

Persistence: the FIFO's name lives in the filesystem until ``unlink()``; the
data in it lives only while some process has it open.

Portability: POSIX; timed opens use Linux's ``/proc/self/fd`` re-open.

Opening blocks until the other side opens too (POSIX semantics) and honours a
``timeout``. Writes of at most :data:`unixipc.PIPE_BUF` bytes are atomic, so many
clients can write requests into one server FIFO without interleaving: the
classic client-server pattern (see ``examples/fifo_server.py``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from typing import Literal, overload

from ._deadline import Deadline
from ._names import check_group, check_path, check_permissions
from ._permissions import new_node
from ._resource import all_or_nothing
from ._stream import ByteStreamReader, ByteStreamWriter, register_for_multiprocessing
from .errors import ResourceExistsError, from_os_error

__all__ = ("Fifo", "FifoReader", "FifoWriter", "exists", "mkfifo", "unlink")

KIND = "FIFO"

Access = Literal["r", "w"]


@all_or_nothing
def mkfifo(
    path: str | os.PathLike[str],
    *,
    permissions: int = 0o600,
    group: int | str | None = None,
    allow_world_writable: bool = False,
) -> None:
    """Create the FIFO ``path`` with exactly ``permissions``, whatever the umask.

    The FIFO is never more open than ``permissions``: it is made owner-only,
    given ``group`` (a gid or a group name; default: the directory's or the
    creator's group), then ``permissions``, through a descriptor that never
    follows a symlink. Permissions that let every local user write (0o002) are
    refused unless ``allow_world_writable=True``. If a step fails once the FIFO
    exists (even a KeyboardInterrupt), it is removed before the error propagates.

    Raises:
        ResourceExistsError: something already exists at ``path`` (a symlink
            too: it is not followed).
        ResourceNotFoundError: the directory does not exist.
        PermissionDeniedError: the directory is not writable, or ``group`` is
            not one of ours.
    """
    with _new_fifo(path, permissions, group, allow_world_writable):
        pass


def _new_fifo(
    path: str | os.PathLike[str], permissions: object, group: object, allow_world_writable: bool
) -> contextlib.AbstractContextManager[int]:
    """Make the FIFO; the block gets an O_PATH descriptor of it (see ``new_node``)."""
    text = check_path(path)
    bits = check_permissions(permissions, allow_world_writable=allow_world_writable, maximum=0o777)
    gid = check_group(group)
    return new_node(text, lambda mode: os.mkfifo(text, mode), stat.S_IFIFO, bits, gid, KIND)


def exists(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` exists and is a FIFO."""
    path = check_path(path)
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def unlink(path: str | os.PathLike[str]) -> None:
    """Remove the FIFO's name; processes that have it open keep using it.

    Raises:
        ResourceNotFoundError: no FIFO at ``path``.
        ValueError: ``path`` exists but is not a FIFO (it is left alone).
    """
    path = check_path(path)
    try:
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            raise ValueError(f"{path!r} is not a FIFO; refusing to remove it")
        os.unlink(path)
    except OSError as error:
        raise from_os_error(error, KIND, path) from None


def _check_access(access: object) -> Access:
    if access not in ("r", "w"):
        raise ValueError(f"access must be 'r' or 'w', got {access!r}")
    return access


class Fifo:
    """A named pipe. ``Fifo.create/open/open_or_create`` return an opened end.

    ``access="r"`` gives a :class:`FifoReader`, ``"w"`` a :class:`FifoWriter`.
    """

    path: str

    @overload
    @staticmethod
    def create(
        path: str | os.PathLike[str],
        access: Literal["r"],
        *,
        permissions: int = ...,
        group: int | str | None = ...,
        allow_world_writable: bool = ...,
        timeout: float | None = ...,
    ) -> FifoReader: ...
    @overload
    @staticmethod
    def create(
        path: str | os.PathLike[str],
        access: Literal["w"],
        *,
        permissions: int = ...,
        group: int | str | None = ...,
        allow_world_writable: bool = ...,
        timeout: float | None = ...,
    ) -> FifoWriter: ...
    @staticmethod
    @all_or_nothing
    def create(
        path: str | os.PathLike[str],
        access: Access,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
        timeout: float | None = None,
    ) -> FifoReader | FifoWriter:
        """Create the FIFO ``path`` (as :func:`mkfifo` does) and open it for
        ``access`` ("r" or "w").

        Opening waits for the other side (see :meth:`open`) and opens the FIFO
        just made, never what a symlink put at ``path`` meanwhile points to. If
        opening fails (or times out), the FIFO just created is removed again.

        Raises:
            ResourceExistsError: ``path`` already exists.
            WouldBlock, TimeoutExpired: the other side did not open in time.
        """
        access = _check_access(access)
        deadline = Deadline(timeout)
        with _new_fifo(path, permissions, group, allow_world_writable) as node:
            return _open(os.fspath(path), access, deadline, f"/proc/self/fd/{node}")

    @overload
    @staticmethod
    def open(
        path: str | os.PathLike[str], access: Literal["r"], *, timeout: float | None = ...
    ) -> FifoReader: ...
    @overload
    @staticmethod
    def open(
        path: str | os.PathLike[str], access: Literal["w"], *, timeout: float | None = ...
    ) -> FifoWriter: ...
    @staticmethod
    def open(
        path: str | os.PathLike[str], access: Access, *, timeout: float | None = None
    ) -> FifoReader | FifoWriter:
        """Open the existing FIFO ``path`` for ``access`` ("r" or "w").

        As POSIX specifies, opening blocks until the other side opens too:
        ``timeout=None`` waits forever, ``0`` raises :class:`WouldBlock` unless a
        peer is already there, a positive number raises :class:`TimeoutExpired`.

        Raises:
            ResourceNotFoundError: no FIFO at ``path``.
            ValueError: ``path`` is not a FIFO.
            WouldBlock, TimeoutExpired: the other side did not open in time.
        """
        path = check_path(path)
        access = _check_access(access)
        return _open(path, access, Deadline(timeout))

    @overload
    @staticmethod
    def open_or_create(
        path: str | os.PathLike[str],
        access: Literal["r"],
        *,
        permissions: int = ...,
        group: int | str | None = ...,
        allow_world_writable: bool = ...,
        timeout: float | None = ...,
    ) -> FifoReader: ...
    @overload
    @staticmethod
    def open_or_create(
        path: str | os.PathLike[str],
        access: Literal["w"],
        *,
        permissions: int = ...,
        group: int | str | None = ...,
        allow_world_writable: bool = ...,
        timeout: float | None = ...,
    ) -> FifoWriter: ...
    @staticmethod
    @all_or_nothing
    def open_or_create(
        path: str | os.PathLike[str],
        access: Access,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
        timeout: float | None = None,
    ) -> FifoReader | FifoWriter:
        """Open the FIFO ``path`` as :meth:`open` does, creating it first (as
        :meth:`create` does) if it does not exist.

        Raises:
            ValueError: ``path`` exists but is not a FIFO.
            WouldBlock, TimeoutExpired: the other side did not open in time.
        """
        access = _check_access(access)
        deadline = Deadline(timeout)
        try:
            with _new_fifo(path, permissions, group, allow_world_writable) as node:
                return _open(os.fspath(path), access, deadline, f"/proc/self/fd/{node}")
        except ResourceExistsError:
            return _open(check_path(path), access, deadline)

    def unlink(self) -> None:
        """Remove the FIFO's name from the filesystem (this end stays usable).

        Raises:
            ResourceNotFoundError: it was already removed.
        """
        unlink(self.path)


class FifoReader(Fifo, ByteStreamReader):
    """The reading end of a FIFO."""

    kind = KIND


class FifoWriter(Fifo, ByteStreamWriter):
    """The writing end of a FIFO."""

    kind = KIND


register_for_multiprocessing(FifoReader)
register_for_multiprocessing(FifoWriter)


def _open(
    path: str, access: Access, deadline: Deadline, handle: str | None = None
) -> FifoReader | FifoWriter:
    """Open the FIFO ``path``; through ``handle`` (a ``/proc/self/fd`` link to the
    FIFO just made) when given, so that no symlink planted at ``path`` is followed."""
    where = path if handle is None else handle
    flags = (os.O_RDONLY if access == "r" else os.O_WRONLY) | os.O_CLOEXEC
    if deadline.blocking:
        _check_is_fifo(where, path)
        try:
            fd = os.open(where, flags)  # blocks; signals run handlers (PEP 475)
        except OSError as error:
            raise from_os_error(error, KIND, path) from None
    elif access == "w" and deadline.timeout == 0:
        fd = _open_writer_now(where, path, flags)
    else:
        fd = _open_with_deadline(where, path, flags, deadline)
    try:
        os.set_blocking(fd, False)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise ValueError(f"{path!r} is not a FIFO")
    except BaseException:
        os.close(fd)
        raise
    end_type: type[FifoReader] | type[FifoWriter] = FifoReader if access == "r" else FifoWriter
    end = end_type._from_fd(fd, path)
    end.path = path
    return end


def _check_is_fifo(where: str, path: str) -> None:
    try:
        mode = os.stat(where).st_mode
    except OSError as error:
        raise from_os_error(error, KIND, path) from None
    if not stat.S_ISFIFO(mode):
        raise ValueError(f"{path!r} is not a FIFO")


def _open_writer_now(where: str, path: str, flags: int) -> int:
    """A writer's try-once open: O_NONBLOCK fails with ENXIO when no reader is there."""
    _check_is_fifo(where, path)
    try:
        return os.open(where, flags | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise Deadline(0).error(f"opening {KIND} {path!r} for writing") from None
        raise from_os_error(error, KIND, path) from None


# How long a try-once reader open may take to see a writer that is already there.
_READER_TRY_ONCE_GRACE = 0.05


def _open_with_deadline(where: str, path: str, flags: int, deadline: Deadline) -> int:
    """Open with a deadline although open(2) on a FIFO has none.

    A helper thread makes the blocking open of an O_PATH handle (so renaming or
    unlinking the FIFO meanwhile cannot strand it). If time runs out, we release
    the thread by briefly opening the other side without blocking, then close
    both descriptors. The waiting thread uses no CPU.
    """
    try:
        path_fd = os.open(where, os.O_PATH | os.O_CLOEXEC)
    except OSError as error:
        raise from_os_error(error, KIND, path) from None
    try:
        if not stat.S_ISFIFO(os.fstat(path_fd).st_mode):
            raise ValueError(f"{path!r} is not a FIFO")
        handle = f"/proc/self/fd/{path_fd}"
        outcome: list[int | OSError] = []
        done = threading.Event()

        def opener() -> None:
            try:
                outcome.append(os.open(handle, flags))
            except OSError as error:
                outcome.append(error)
            done.set()

        thread = threading.Thread(target=opener, name=f"unixipc-open {path}", daemon=True)
        thread.start()
        finished = False
        try:
            if deadline.timeout == 0:
                finished = done.wait(_READER_TRY_ONCE_GRACE)
            else:
                while not (finished := done.wait(deadline.sleep_seconds())):
                    if deadline.expired():
                        break
        finally:
            if not finished:
                _release_opener(handle, flags, done)
                thread.join()
                if outcome and isinstance(outcome[0], int):
                    os.close(outcome[0])
        if not finished:
            direction = "reading" if flags & os.O_WRONLY == 0 else "writing"
            raise deadline.error(f"opening {KIND} {path!r} for {direction} (no peer opened it)")
        result = outcome[0]
        if isinstance(result, OSError):
            raise from_os_error(result, KIND, path)
        return result
    finally:
        os.close(path_fd)


def _release_opener(handle: str, flags: int, done: threading.Event) -> None:
    """Open the other side without blocking until the blocked open returns."""
    other = os.O_WRONLY if flags & os.O_WRONLY == 0 else os.O_RDONLY
    while not done.is_set():
        try:
            fd = os.open(handle, other | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            done.wait(0.001)  # the thread is between calls: try again
            continue
        done.wait()
        os.close(fd)
