"""POSIX semaphores: named (sem_open) and memory-based (sem_init in shared memory).

A semaphore is a counter that never goes below zero: ``acquire()`` decrements
it, waiting while it is zero; ``release()`` increments it and wakes a waiter.
``with sem:`` acquires and releases, as ``threading.Semaphore`` does.

Named semaphores — persistence: kernel. The semaphore lives until ``unlink()``
(or a reboot), even when no process has it open; processes waiting on it when
it is unlinked keep waiting on the (now nameless) semaphore, and a release
through any handle still wakes them. Opening never registers it for removal.

Memory-based semaphores (:meth:`PosixSemaphore.in_buffer`) live inside any
shared memory object (POSIX, System V, a mapped file, an anonymous mapping),
and last as long as that memory. The semaphore keeps the memory mapped: close
the semaphore before the memory.

Timed waits use CLOCK_MONOTONIC (sem_clockwait, glibc >= 2.30), so a change
of the wall clock neither stretches nor cuts them. A semaphore has no owner: if a process dies
while holding it, nothing releases it (System V's SEM_UNDO does; see
:class:`~unixipc.SysVSemaphoreSet`).

Portability: POSIX; on Linux a named semaphore ``/name`` is the file
/dev/shm/sem.name, which is where ``list_names()`` and ``info()`` look, and
how ``create`` makes one whole: the file is prepared without a name (exact
permissions and group, its page reserved, the semaphore initialized) and then
linked into place, as the C library itself does, so it is never more open than
asked and a failed create leaves nothing.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from . import _native
from ._deadline import Deadline
from ._memory import FileMemory, create_file
from ._names import (
    SEMAPHORE_FILE_PREFIX,
    check_group,
    check_int,
    check_permissions,
    check_semaphore_name,
    is_valid,
)
from ._resource import Lockable, Resource, all_or_nothing, open_or_create
from .errors import IPCError, from_os_error

__all__ = (
    "VALUE_MAX",
    "PosixSemaphore",
    "PosixSemaphoreInfo",
    "exists",
    "list_names",
    "unlink",
)

KIND = "POSIX semaphore"

#: The largest value a POSIX semaphore can hold (SEM_VALUE_MAX).
VALUE_MAX: int = _native.POSIX_SEM_VALUE_MAX

_DEV_SHM = "/dev/shm"


@dataclass(frozen=True)
class PosixSemaphoreInfo:
    """What ``PosixSemaphore.info()`` reports.

    For a memory-based semaphore ``name`` is None and so are the file's
    ``permissions``, ``uid`` and ``gid``.
    """

    name: str | None
    value: int
    permissions: int | None
    uid: int | None
    gid: int | None


def _check_value(value: object) -> int:
    checked = check_int(value, "value", minimum=0)
    if checked > VALUE_MAX:
        raise ValueError(f"value must be <= {VALUE_MAX} (SEM_VALUE_MAX), got {checked}")
    return checked


def _filename(name: str) -> str:
    return SEMAPHORE_FILE_PREFIX + name[1:]


def exists(name: str) -> bool:
    """True if a named POSIX semaphore called ``name`` exists.

    False for a string that is not a valid name (no semaphore can have it).
    """
    if not is_valid(check_semaphore_name, name):
        return False
    try:
        handle = _native.posix_sem_open(name, 0, 0, 0)
    except OSError as error:
        return error.errno != errno.ENOENT  # exists, maybe not ours to open
    handle.close()
    return True


def list_names() -> list[str]:
    """The names of every named POSIX semaphore on the system, sorted (from /dev/shm)."""
    try:
        entries = os.listdir(_DEV_SHM)
    except FileNotFoundError:
        return []
    prefix = SEMAPHORE_FILE_PREFIX
    return sorted(
        "/" + entry[len(prefix) :]
        for entry in entries
        if entry.startswith(prefix) and len(entry) > len(prefix)
    )


def unlink(name: str) -> None:
    """Remove the semaphore's name; processes that have it open keep using it.

    Raises:
        ResourceNotFoundError: no semaphore called ``name``.
        PermissionDeniedError: not allowed to remove it.
    """
    name = check_semaphore_name(name)
    try:
        _native.posix_sem_unlink(name)
    except OSError as error:
        raise from_os_error(error, KIND, name) from None


class _SemaphoreFile(FileMemory):
    """The file of a named semaphore while ``create`` prepares it."""

    kind = KIND


class PosixSemaphore(Lockable):
    """A POSIX semaphore, named or placed in shared memory; ``with sem:`` holds it.

    Made by :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`in_buffer`.
    """

    kind = KIND
    _factories = ("create", "open", "open_or_create", "in_buffer")

    #: Bytes a memory-based semaphore takes (sizeof(sem_t)) and its alignment.
    SIZE: int = _native.POSIX_SEM_SIZE
    ALIGNMENT: int = _native.POSIX_SEM_ALIGNMENT

    def __init__(self, handle: _native.PosixSemaphoreHandle, name: str | None, what: str) -> None:
        """Use :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`in_buffer`."""
        self.name = name
        self._handle = handle
        self._opened(what)

    # -- opening -----------------------------------------------------------

    @classmethod
    @all_or_nothing
    def create(
        cls,
        name: str,
        *,
        value: int,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> PosixSemaphore:
        """Create the named semaphore ``name`` holding ``value``.

        The semaphore appears whole: its file is prepared without a name
        (exactly ``permissions`` whatever the umask, owned by ``group`` if given,
        the semaphore initialized) and then linked into place, so no opener ever
        sees it half-made or more open than asked, and a failure (a signal
        included) leaves nothing.

        Raises:
            ResourceExistsError: ``name`` exists already.
            ResourceLimitError: too many open files or no room in /dev/shm.
            ValueError: ``permissions`` let every user write, without
                ``allow_world_writable=True``.
        """
        name = check_semaphore_name(name)
        value = _check_value(value)
        permissions = check_permissions(permissions, allow_world_writable=allow_world_writable)
        gid = check_group(group)

        def initialize(memory: memoryview) -> None:
            _native.posix_sem_init(memory, 0, value).close()

        prepared = create_file(
            _DEV_SHM,
            _filename(name),
            cls.SIZE,
            permissions=permissions,
            group=gid,
            kind=KIND,
            name=name,
            filesystem=_DEV_SHM,
            initialize=initialize,
            make=lambda fd: _SemaphoreFile._make(name, fd, None, False),
        )
        try:
            return cls._make(cls._sem_open(name), name, name)
        finally:
            prepared.close()

    @classmethod
    @all_or_nothing
    def open(cls, name: str) -> PosixSemaphore:
        """Open the existing named semaphore ``name``.

        Raises:
            ResourceNotFoundError: no semaphore called ``name``.
            PermissionDeniedError: its permissions forbid using it.
        """
        name = check_semaphore_name(name)
        return cls._make(cls._sem_open(name), name, name)

    @classmethod
    @all_or_nothing
    def open_or_create(
        cls,
        name: str,
        *,
        value: int,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> PosixSemaphore:
        """Open ``name`` if it exists, else create it holding ``value`` (as :meth:`create`).

        An existing semaphore keeps its own value.

        Raises:
            PermissionDeniedError: the existing semaphore's permissions forbid using it.
            ResourceLimitError: too many open files or no room in /dev/shm.
        """
        name = check_semaphore_name(name)
        _check_value(value)
        check_permissions(permissions, allow_world_writable=allow_world_writable)
        check_group(group)
        return open_or_create(
            lambda: cls.create(
                name,
                value=value,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            lambda: cls.open(name),
        )

    @classmethod
    def in_buffer(
        cls, buffer: object, offset: int = 0, *, value: int | None = None
    ) -> PosixSemaphore:
        """A process-shared semaphore at ``offset`` inside shared memory.

        ``buffer`` is a unixipc memory object (its ``buf`` is used) or any
        writable buffer. With ``value``, the semaphore is initialized there
        (sem_init with pshared): do that once, in one process, before anyone
        uses it. With ``value=None`` it attaches to a semaphore another process
        already initialized. It takes :attr:`SIZE` bytes, and ``offset`` must be
        a multiple of :attr:`ALIGNMENT` from the start of the mapping.

        While it is open, the memory cannot be closed (its views are in use).

        Raises:
            ValueError: it does not fit at ``offset``, or is misaligned.
            TypeError: ``buffer`` is not a writable buffer.
        """
        check_int(offset, "offset", minimum=0)
        if value is not None:
            value = _check_value(value)
        target = getattr(buffer, "buf", buffer)
        what = f"in {buffer.describe()}" if isinstance(buffer, Resource) else "in memory"
        what = f"{what} at offset {offset}"
        try:
            if value is None:
                handle = _native.posix_sem_attach(target, offset)
            else:
                handle = _native.posix_sem_init(target, offset, value)
        except BufferError:
            raise TypeError("buffer must be writable to hold a semaphore") from None
        except OSError as error:
            raise from_os_error(error, KIND, what) from None
        return cls._make(handle, None, what)

    @staticmethod
    def _sem_open(name: str) -> _native.PosixSemaphoreHandle:
        try:
            return _native.posix_sem_open(name, 0, 0, 0)
        except OSError as error:
            raise from_os_error(error, KIND, name) from None

    # -- using -------------------------------------------------------------

    def acquire(self, *, timeout: float | None = None) -> None:
        """Decrement the semaphore, waiting while it is zero.

        ``timeout=None`` waits as long as it takes, ``0`` only tries, a positive
        number of seconds waits at most that long (on the monotonic clock).
        Signals run their handlers meanwhile and the wait goes on.

        Raises:
            WouldBlock: ``timeout=0`` and the value is zero.
            TimeoutExpired: the timeout ran out.
        """
        if self._closed:
            self._check_open()
        try:
            if timeout is None:
                self._handle.acquire(-1)
                return
            deadline = Deadline(timeout)
            if deadline.timeout == 0:
                acquired = self._handle.try_acquire()
            else:
                acquired = self._handle.acquire(deadline.as_ns())
        except OSError as error:
            raise from_os_error(error, KIND, self._name) from None
        if not acquired:
            raise deadline.error(f"acquiring {self.describe()}")

    def release(self) -> None:
        """Increment the semaphore, waking one waiter.

        Raises:
            ResourceLimitError: the value is already VALUE_MAX.
        """
        if self._closed:
            self._check_open()
        try:
            self._handle.release()
        except OSError as error:
            raise from_os_error(error, KIND, self._name, limit="SEM_VALUE_MAX") from None

    @property
    def value(self) -> int:
        """The current value (a snapshot: other processes may change it at once)."""
        self._check_open()
        return self._handle.value()

    def info(self) -> PosixSemaphoreInfo:
        """Name, value and (for a named semaphore) the permissions and owner of its file."""
        self._check_open()
        value = self._handle.value()
        if self.name is None:
            return PosixSemaphoreInfo(None, value, None, None, None)
        try:
            status = os.stat(f"{_DEV_SHM}/{_filename(self.name)}")
        except OSError:  # unlinked, or not a system that keeps them in /dev/shm
            return PosixSemaphoreInfo(self.name, value, None, None, None)
        return PosixSemaphoreInfo(
            self.name, value, status.st_mode & 0o7777, status.st_uid, status.st_gid
        )

    def unlink(self) -> None:
        """Remove the semaphore's name (this handle, and waiters, keep working).

        Raises:
            ResourceNotFoundError: already removed.
            TypeError: a memory-based semaphore has no name (it goes with its memory).
        """
        if self.name is None:
            raise TypeError(f"{self.describe()} has no name to unlink: it lives in its memory")
        unlink(self.name)

    def close(self) -> None:
        """Release this process's handle. Idempotent; never removes the semaphore.

        A memory-based semaphore lets go of its memory, which can then be closed.

        Raises:
            IPCError: other threads of this process are waiting on it.
        """
        if self._closed:
            return
        try:
            self._handle.close()
        except RuntimeError as error:
            raise IPCError(f"cannot close {self.describe()}: {error}") from None
        super().close()

    def _hold(self) -> None:
        self.acquire()
