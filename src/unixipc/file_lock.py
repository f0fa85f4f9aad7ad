"""File locks: whole-file ``flock(2)`` locks and ``fcntl(2)`` byte-range (record) locks.

``FileLock(path)`` takes a shared or exclusive lock on a whole file, as the
``flock(1)`` command does (the two exclude each other). It opens the file when
it acquires and closes it when it releases, so an idle FileLock holds no
descriptor and ``with FileLock(path):`` leaves nothing behind.

``RecordLock(path_or_fd, start, length)`` locks a byte range (``length=0``: to
the end of the file, however long it grows). Two kinds, with different owners:

- POSIX record locks (the default) belong to the *process*. Threads of one
  process never exclude each other, two RecordLocks of one process on the same
  file merge their ranges (releasing one releases that range for both), and
  closing ANY descriptor of the file in the process drops ALL its locks on it,
  even one opened by unrelated code (the classic pitfall). In exchange, the
  kernel detects deadlocks between processes: one of them gets
  :class:`~unixipc.DeadlockError` instead of waiting for ever.
- Open-file-description locks (``per_open_file=True``, Linux >= 3.15) belong to
  the open file: each RecordLock opened from a path has its own, so threads of
  one process exclude each other (give each thread its own RecordLock), and
  closing other descriptors does not drop them. No deadlock detection.

The two kinds conflict with each other, even within one process: an OFD lock
waits for the process's own POSIX lock on an overlapping range, and vice versa.

``holder()`` asks the kernel who holds a conflicting lock (F_GETLK): the pid for
POSIX locks, None for OFD locks, which have no single owner.

Timeouts: the kernel has none for these calls. A blocking request runs with a
per-thread timer that interrupts it at the deadline, so it gives up within a few
milliseconds of the timeout while sleeping in the kernel (no polling);
``timeout=0`` uses LOCK_NB / F_SETLK.

Persistence: process. The kernel releases every lock when its holder dies,
however it dies; the lock file itself stays (it is an ordinary file).

Lock files: a missing file is created with exactly ``permissions`` (no umask),
owned by ``group`` if given; it starts with the owner's bits only and gets its
group and then its final bits through the descriptor, so it is never more open
than asked. A symbolic link at the path is never followed: locking it raises
an error instead of locking (or creating) whatever it points to.

Portability: Linux (flock, fcntl record locks; OFD locks need Linux >= 3.15).
On NFS, Linux emulates flock with fcntl locks, so the two kinds then interact.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from . import _native
from ._deadline import Deadline
from ._names import check_group, check_int, check_path, check_permissions
from ._resource import Lockable
from .errors import (
    DeadlockError,
    IPCError,
    IPCOSError,
    ResourceNotFoundError,
    UnsupportedFeature,
    from_os_error,
)

__all__ = ("FileLock", "LockHolder", "RecordLock")

NO_DEADLINE = -1


def _open_lock_file(path: str, flags: int, permissions: int, group: int | None, kind: str) -> int:
    """Open ``path`` for locking, creating it (exactly ``permissions``, ``group``) if missing.

    A directory can be locked too (as flock(1) allows): it is opened read-only.
    A symbolic link is never followed.
    """
    flags |= os.O_CLOEXEC | os.O_NOCTTY | os.O_NOFOLLOW
    while True:
        try:
            try:
                # The owner's bits only until the group and the final bits are set.
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, permissions & 0o700)
            except FileExistsError:
                try:
                    return os.open(path, flags)
                except FileNotFoundError:
                    continue  # removed between our two calls: create it
                except IsADirectoryError:
                    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                if group is not None:
                    os.fchown(fd, -1, group)
                os.fchmod(fd, permissions)  # exactly these bits, whatever the umask
            except BaseException:
                with contextlib.suppress(OSError):  # remove it only if it is still ours
                    if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                        os.unlink(path)
                os.close(fd)
                raise
            return fd
        except OSError as error:
            raise _path_error(error, kind, path) from None


def _path_error(error: OSError, kind: str, path: str) -> IPCError:
    """What a failed open of a lock file means, in words."""
    if error.errno == errno.ELOOP:
        return IPCOSError(
            errno.ELOOP,
            f"{kind} {path!r}: the path is a symbolic link, which unixipc never follows",
            path,
        )
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        directory = os.path.dirname(path) or "."
        return ResourceNotFoundError(
            error.errno,
            f"{kind} {path!r}: the directory {directory!r} does not exist "
            "(or a part of its path is not a directory)",
            path,
        )
    return from_os_error(error, kind, path)


class _OneHolder(Lockable):
    """What FileLock and RecordLock share: one object is one holder (one acquire at
    a time), and a forked child never takes over, or lets go of, its parent's hold."""

    def _start_holding(self) -> None:
        self._state = threading.Lock()
        self._busy = False

    def _is_held(self) -> bool:
        raise NotImplementedError

    def _forget_inherited(self) -> None:
        """In a forked child: the hold is the parent's; forget it without unlocking."""
        raise NotImplementedError

    @property
    def locked(self) -> bool:
        """True while this object holds its lock."""
        self._forget_inherited()
        return self._is_held()

    @contextlib.contextmanager
    def _acquiring(self) -> Iterator[None]:
        """Around one acquire: refuse a second hold, or another thread's acquire meanwhile."""
        self._check_open()
        self._forget_inherited()
        with self._state:
            if self._is_held() or self._busy:
                raise IPCError(
                    f"{self.describe()} is already held by this {type(self).__name__} object"
                )
            self._busy = True
        try:
            yield
        finally:
            self._busy = False

    def _not_held(self) -> IPCError:
        return IPCError(f"{self.describe()} is not held by this {type(self).__name__} object")


class FileLock(_OneHolder):
    """An flock(2) lock on a whole file: shared or exclusive, released when the holder dies.

    ``with FileLock(path):`` holds an exclusive lock for the block. One FileLock
    object is one holder: give each thread its own (they then exclude each other
    as separate processes would). Interoperates with the ``flock(1)`` command.
    """

    kind = "file lock"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> None:
        """Describe the lock; nothing is opened until ``acquire``.

        ``permissions`` and ``group`` (a gid or a group name) apply if acquiring
        creates the file; world-writable permissions need
        ``allow_world_writable=True``.
        """
        self.path = check_path(path)
        self.permissions = check_permissions(permissions, allow_world_writable=allow_world_writable)
        self.group = check_group(group)
        self._fd: int | None = None
        self._pid = 0  # the process that took the lock
        self._shared = False
        self._start_holding()
        self._opened(self.path)

    def _is_held(self) -> bool:
        return self._fd is not None

    def _forget_inherited(self) -> None:
        with self._state:
            fd = self._fd
            if fd is None or self._pid == os.getpid():
                return
            self._fd = None
        os.close(fd)  # never LOCK_UN: that would release the parent's lock

    @property
    def shared(self) -> bool:
        """True if the lock held is shared (meaningful only while ``locked``)."""
        return self._shared

    def acquire(self, *, shared: bool = False, timeout: float | None = None) -> None:
        """Lock the file (creating it if missing), waiting up to ``timeout`` seconds.

        Raises:
            WouldBlock: ``timeout=0`` and another holder has a conflicting lock.
            TimeoutExpired: ``timeout`` ran out.
            IPCError: this object already holds the lock (release it first).
            PermissionDeniedError: the file cannot be opened or created.
            ResourceNotFoundError: the directory does not exist.
            IPCOSError: the path is a symbolic link (never followed).
        """
        if not isinstance(shared, bool):
            raise TypeError("shared must be a bool")
        deadline = Deadline(timeout)
        with self._acquiring():
            fd = _open_lock_file(self.path, os.O_RDONLY, self.permissions, self.group, self.kind)
            try:
                operation = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
                if deadline.timeout == 0:
                    _native.flock(fd, operation | fcntl.LOCK_NB, NO_DEADLINE)
                else:
                    _native.flock(fd, operation, deadline.as_ns())
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.ETIMEDOUT):
                    raise deadline.error(f"locking {self.describe()}") from None
                raise from_os_error(error, self.kind, self.path) from None
            except BaseException:
                os.close(fd)
                raise
            with self._state:
                self._fd = fd
                self._pid = os.getpid()
                self._shared = shared

    def release(self) -> None:
        """Unlock and close the file.

        Raises:
            IPCError: this object does not hold the lock.
        """
        self._check_open()
        self._forget_inherited()
        with self._state:
            fd = self._fd
            if fd is None:
                raise self._not_held()
            self._fd = None
        try:
            # Unlock explicitly: a child that inherited the descriptor would otherwise
            # keep the lock after we close our copy.
            _native.flock(fd, fcntl.LOCK_UN, NO_DEADLINE)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the lock if held; the object cannot be used afterwards. Idempotent."""
        if self._closed:
            return
        self._forget_inherited()
        if self._fd is not None:
            self.release()
        super().close()

    def describe(self) -> str:
        """A short description naming the object, used in messages."""
        return f"{self.kind} on {self.path!r}"

    def _hold(self) -> None:
        self.acquire()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "locked" if self._fd is not None else "unlocked"
        return f"<FileLock {self.path!r} {state}>"

    def __del__(self) -> None:
        # Only a lock still held is a leak; an idle FileLock holds nothing.
        if self._closed or self._fd is None or self._pid != os.getpid():
            if not self._closed:
                self.close()  # at most an inherited descriptor to close
            return
        warnings.warn(f"{self.describe()} collected while locked", ResourceWarning, stacklevel=2)
        self.close()


@dataclass(frozen=True)
class LockHolder:
    """A lock that blocks a request, as F_GETLK reports it."""

    #: The holding process, or None for an OFD lock (it belongs to an open file).
    pid: int | None
    exclusive: bool
    start: int
    #: 0 means to the end of the file, however long it grows.
    length: int


class RecordLock(_OneHolder):
    """An fcntl(2) lock on bytes ``start`` .. ``start + length`` of a file (length 0: to the end).

    ``per_open_file=False`` (POSIX record locks): owned by the process, with
    deadlock detection; see the module documentation for the pitfalls.
    ``per_open_file=True`` (OFD locks): owned by this object's open file.
    ``with lock:`` holds an exclusive lock for the block; ``close()`` closes the
    file if this object opened it.
    """

    kind = "record lock"

    def __init__(
        self,
        path_or_fd: str | os.PathLike[str] | int,
        start: int = 0,
        length: int = 0,
        *,
        per_open_file: bool = False,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> None:
        """Open ``path_or_fd``: a path is created if missing (with exactly
        ``permissions``, owned by ``group`` if given; never through a symbolic
        link); a descriptor stays the caller's, and must be open for writing for
        exclusive locks.

        Raises:
            UnsupportedFeature: ``per_open_file=True`` on a kernel without OFD locks.
            PermissionDeniedError: the file cannot be opened.
            ResourceNotFoundError: the directory does not exist.
            IPCOSError: the path is a symbolic link (never followed).
        """
        self.start = check_int(start, "start", minimum=0)
        self.length = check_int(length, "length", minimum=0)
        if not isinstance(per_open_file, bool):
            raise TypeError("per_open_file must be a bool")
        if per_open_file and not _native.HAVE_OFD_LOCKS:
            raise UnsupportedFeature("open-file-description (OFD) locks are not available here")
        permissions = check_permissions(permissions, allow_world_writable=allow_world_writable)
        gid = check_group(group)
        self.per_open_file = per_open_file
        self._held: bool | None = None  # None: not held; else True for exclusive
        self._held_by = 0  # the process that took the lock
        self._start_holding()
        if isinstance(path_or_fd, int) and not isinstance(path_or_fd, bool):
            fd = check_int(path_or_fd, "path_or_fd", minimum=0)
            try:
                os.fstat(fd)
            except OSError as error:
                raise from_os_error(error, self.kind, f"fd {fd}") from None
            self.path: str | None = None
            self._fd = fd
            self._owns_fd = False
            self._opened(f"fd {fd}")
            return
        path = check_path(path_or_fd, "path_or_fd")
        try:
            self._fd = _open_lock_file(path, os.O_RDWR, permissions, gid, self.kind)
        except PermissionError:
            # Shared locks need only read access.
            self._fd = _open_lock_file(path, os.O_RDONLY, permissions, gid, self.kind)
        self.path = path
        self._owns_fd = True
        self._opened(path)

    def _forget_inherited(self) -> None:
        """In a forked child: the lock is the parent's (POSIX locks are not even
        inherited, and an OFD lock must stay with the parent); never unlock it."""
        with self._state:
            if self._held is not None and self._held_by != os.getpid():
                self._held = None

    def _is_held(self) -> bool:
        return self._held is not None

    def fileno(self) -> int:
        """The descriptor the lock is taken through."""
        self._check_open()
        return self._fd

    def acquire(self, *, exclusive: bool = True, timeout: float | None = None) -> None:
        """Lock the range, waiting up to ``timeout`` seconds.

        Raises:
            WouldBlock: ``timeout=0`` and a conflicting lock is held.
            TimeoutExpired: ``timeout`` ran out.
            DeadlockError: waiting would deadlock with another process (POSIX locks
                only; the kernel picks which process gets this).
            IPCError: this object already holds the range (release it first).
            UnsupportedFeature: the kernel lacks OFD locks.
        """
        if not isinstance(exclusive, bool):
            raise TypeError("exclusive must be a bool")
        deadline = Deadline(timeout)
        with self._acquiring():
            lock_type = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
            try:
                if deadline.timeout == 0:
                    _native.record_lock(
                        self._fd, self.per_open_file, lock_type, self.start, self.length,
                        False, NO_DEADLINE,
                    )  # fmt: skip
                else:
                    _native.record_lock(
                        self._fd, self.per_open_file, lock_type, self.start, self.length,
                        True, deadline.as_ns(),
                    )  # fmt: skip
            except OSError as error:
                raise self._error(error, deadline, exclusive) from None
            with self._state:
                self._held = exclusive
                self._held_by = os.getpid()

    def _error(self, error: OSError, deadline: Deadline, exclusive: bool) -> IPCError:
        code = error.errno
        if code in (errno.EACCES, errno.EAGAIN, errno.ETIMEDOUT):
            return deadline.error(f"locking {self.describe()}")
        if code == errno.EINVAL and self.per_open_file:
            return UnsupportedFeature("this kernel does not support OFD locks (Linux >= 3.15)")
        if code == errno.EBADF:
            mode = "writing" if exclusive else "reading"
            return IPCError(
                f"{self.describe()}: the file is not open for {mode}, which "
                f"{'an exclusive' if exclusive else 'a shared'} lock needs"
            )
        if code == errno.EDEADLK:
            return DeadlockError(
                code,
                f"{self.describe()}: waiting would deadlock with another process "
                "(the kernel picked this request to fail)",
                str(self._name),
            )
        return from_os_error(error, self.kind, self._name)

    def release(self) -> None:
        """Unlock the range.

        Raises:
            IPCError: this object does not hold it.
        """
        self._check_open()
        self._forget_inherited()
        with self._state:
            if self._held is None:
                raise self._not_held()
            self._held = None
        try:
            _native.record_lock(
                self._fd, self.per_open_file, fcntl.F_UNLCK, self.start, self.length,
                False, NO_DEADLINE,
            )  # fmt: skip
        except OSError as error:
            raise from_os_error(error, self.kind, self._name) from None

    def holder(self, *, exclusive: bool = True) -> LockHolder | None:
        """The first lock that would block this range (for an exclusive or shared request).

        Locks held through this object never block it (for POSIX locks: none of
        this process's locks do), so they are not reported.
        """
        self._check_open()
        if not isinstance(exclusive, bool):
            raise TypeError("exclusive must be a bool")
        lock_type = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
        try:
            found = _native.record_getlk(
                self._fd, self.per_open_file, lock_type, self.start, self.length
            )
        except OSError as error:
            raise self._error(error, Deadline(0), exclusive) from None
        if found is None:
            return None
        found_type, pid, start, length = found
        return LockHolder(pid if pid > 0 else None, found_type == fcntl.F_WRLCK, start, length)

    def close(self) -> None:
        """Release the range if held, and close the file if this object opened it.

        Closing a descriptor drops ALL of this process's POSIX record locks on the
        file, including other RecordLocks' (the classic pitfall); OFD locks of
        other objects are unaffected. Idempotent.
        """
        if self._closed:
            return
        self._forget_inherited()
        try:
            if self._held is not None:
                self.release()
        finally:
            super().close()

    def _release(self) -> None:
        if self._owns_fd:
            os.close(self._fd)

    def describe(self) -> str:
        """A short description naming the object, used in messages."""
        kind = "OFD lock" if self.per_open_file else "record lock"
        end = "end" if self.length == 0 else str(self.start + self.length)
        return f"{kind} on {self._name!r} bytes {self.start}..{end}"

    def _hold(self) -> None:
        self.acquire()
