"""Process-shared mutexes, conditions, read-write locks and barriers that survive crashes.

Each object lives in shared memory: ``X.create(name)`` / ``X.open(name)`` give it a
small POSIX shared memory object of its own, and ``X.in_buffer(buffer, offset,
initialize=...)`` places it in any shared buffer (a ``PosixSharedMemory``, a
shared ``mmap``, ...) next to the data it protects. Every object is built on a
robust, error-checking, process-shared pthread mutex, so a process that dies
while holding one never leaves the others hung:

- ``SharedMutex``: the next ``acquire`` after a holder died raises
  :class:`~unixipc.OwnerDied` *with the lock held*; repair the protected state
  and call ``mark_consistent()``, or ``release()`` without it, after which the
  mutex is permanently unusable and every acquire says so.
- ``SharedCondition``: a condition variable with its own such mutex. A holder
  of the lock that dies: the next thread to take the lock (in ``acquire`` or
  when a ``wait`` takes it back) gets ``OwnerDied``, as above. A waiter that
  dies while waiting: the survivors see nothing, except that ``notify_all`` may
  leave one unused wake-up per dead waiter, which a later ``wait`` consumes as
  a spurious wake-up (it returns True instead of waiting on; ``wait_for``
  rechecks its predicate, so it is unaffected). A notifier killed inside
  ``notify`` either notified or did not: the grant and the wake-up are one
  system call (FUTEX_WAKE_OP).
- ``SharedRWLock``: a writer that dies holding the write lock: the next thread
  to acquire (for reading or writing) gets ``OwnerDied`` holding the lock
  *exclusively*, as a writer; it repairs, calls ``mark_consistent()`` and
  ``release()``. A reader that dies holding a read lock: nothing to repair
  (readers do not write), and its hold is dropped as soon as a writer needs it;
  survivors see nothing. A thread killed inside acquire/release: recovered
  silently. At most 64 read holds exist at once; more readers wait.
- ``SharedBarrier``: a party killed while waiting counts as arrived, and the
  others are released when the remaining parties arrive; a party killed before
  it arrives is indistinguishable from one that is late, so the survivors wait
  until their timeout (use one). A wait that times out withdraws its arrival;
  the barrier stays usable.

Every blocking call takes ``timeout`` (monotonic clock). Mutex waits wake every
50 ms to run Python's signal handlers (glibc restarts a mutex wait after a
signal), so Ctrl-C interrupts them; futex waits are interrupted directly.

Initialization happens once, by the creator, and the object is marked ready
last (a release store of a magic word); openers wait up to ``READY_TIMEOUT``
seconds for a creator still initializing and never use a half-made object. A
``SharedMutex`` is a plain ``pthread_mutex_t`` at byte ``PTHREAD_OFFSET`` of its
``SIZE`` bytes, so C programs can lock the same mutex.

Ownership is per thread, as in pthreads: only the thread that acquired may
release (another gets :class:`~unixipc.PermissionDeniedError`), and acquiring
twice in one thread raises :class:`~unixipc.DeadlockError` instead of hanging.

Persistence: kernel for named objects (until ``unlink()``); as long as the
buffer for objects placed with ``in_buffer``.

Portability: Linux with glibc >= 2.30 (robust mutexes, pthread_mutex_clocklock,
futex(2)).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from . import _native, posix_shm
from ._deadline import Deadline
from ._names import check_bytes_like, check_group, check_int, check_permissions, check_posix_name
from ._resource import Lockable, Resource, all_or_nothing, open_or_create
from .errors import (
    DeadlockError,
    IPCError,
    IPCOSError,
    OwnerDied,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceLimitError,
    TimeoutExpired,
    from_os_error,
)
from .posix_shm import PosixSharedMemory

__all__ = (
    "SharedBarrier",
    "SharedCondition",
    "SharedMutex",
    "SharedRWLock",
    "SharedSyncInfo",
)

_T = TypeVar("_T", bound="_SharedSyncObject")
_PL = TypeVar("_PL", bound="_Plain")
_P = TypeVar("_P")

# ---- layout shared by every object -------------------------------------------------
# offset 0: magic word (0 = fresh, _INITIALIZING, or the kind's magic = ready)
# offset 4: the object's SIZE (guards against another layout)
# offset 8: one word for the kind (barrier: parties; rwlock: write lock held)
# offset 16: the robust pthread mutex; then the kind's own fields.
_MAGIC_AT = 0
_SIZE_AT = 4
_EXTRA_AT = 8
_MUTEX_AT = 16
_ALIGNMENT = max(8, _native.MUTEX_ALIGNMENT)
_MUTEX_STRIDE = -(-_native.MUTEX_SIZE // _ALIGNMENT) * _ALIGNMENT
_INITIALIZING = 0x55584900
_MAGIC_MUTEX = 0x55584D01
_MAGIC_CONDITION = 0x55584301
_MAGIC_RWLOCK = 0x55585201
_MAGIC_BARRIER = 0x55584201
_KIND_BY_MAGIC = {
    _MAGIC_MUTEX: "shared mutex",
    _MAGIC_CONDITION: "shared condition",
    _MAGIC_RWLOCK: "shared rwlock",
    _MAGIC_BARRIER: "shared barrier",
}
_U32 = 1 << 32
_WAKE_STEP = 2047  # FUTEX_WAKE_OP adds at most this much at once


def _inspect(head: bytes) -> dict[str, object] | None:
    """For the inspector: what the first bytes of a shared memory object say, or None.

    A mutex-based object reports the thread id in its robust mutex's lock word
    (glibc: the owner's tid, with the kernel's OWNER_DIED bit), read without locking.
    """
    if len(head) < _MUTEX_AT + 4:
        return None
    magic = int.from_bytes(head[_MAGIC_AT : _MAGIC_AT + 4], "little")
    kind = _KIND_BY_MAGIC.get(magic)
    if kind is None:
        return {"object": "shared sync (being created)"} if magic == _INITIALIZING else None
    word = int.from_bytes(head[_MUTEX_AT : _MUTEX_AT + 4], "little")
    return {
        "object": kind,
        "locked_by_tid": (word & 0x3FFFFFFF) or None,
        "owner_died": bool(word & 0x40000000),
    }


def _round_up(size: int) -> int:
    return -(-size // _ALIGNMENT) * _ALIGNMENT


def _me() -> tuple[int, int]:
    """This thread, in this process (a forked child is a different holder)."""
    return os.getpid(), threading.get_ident()


@dataclass(frozen=True)
class SharedSyncInfo:
    """What ``info()`` reports about a shared synchronization object."""

    kind: str
    #: The POSIX shared memory name, or None for an object placed with in_buffer().
    name: str | None
    #: Byte offset in its buffer (0 for named objects).
    offset: int
    size: int
    #: Only for barriers: how many parties each round needs.
    parties: int | None = None


class _SharedSyncObject(Resource):
    """Placement, initialization, the ready mark and the robust mutex helpers."""

    SIZE: ClassVar[int]
    #: Seconds that open() and in_buffer(initialize=False) wait for a creator
    #: that is still initializing the object.
    READY_TIMEOUT: ClassVar[float] = 5.0
    _MAGIC: ClassVar[int]
    _factories = ("create", "open", "open_or_create", "in_buffer")

    def __init__(
        self, view: memoryview, memory: PosixSharedMemory | None, name: str | None, offset: int
    ) -> None:
        """Use create(), open(), open_or_create() or in_buffer()."""
        self.name = name
        self.offset = offset
        self._view = view
        self._memory = memory
        self._holders: set[tuple[int, int]] = set()
        self._opened(name)

    # -- creation and opening --------------------------------------------------------

    @classmethod
    @all_or_nothing
    def open(cls: type[_T], name: str) -> _T:
        """Open the existing object ``name``, waiting briefly for a creator still initializing it.

        Raises:
            ResourceNotFoundError: no object called ``name``.
            TimeoutExpired: it was not initialized within ``READY_TIMEOUT`` seconds.
            IPCError: the object is not of this kind.
        """
        return cls._open_named(name)

    @classmethod
    def _create_named(
        cls: type[_T],
        name: str,
        permissions: int,
        group: int | str | None,
        allow_world_writable: bool,
        setup: Callable[[memoryview], None],
    ) -> _T:
        name = check_posix_name(name)
        permissions = check_permissions(permissions, allow_world_writable=allow_world_writable)
        gid = check_group(group)
        try:
            # Initialized before its name appears: no opener ever waits for it. If
            # anything fails later, the creation's journal removes it (all_or_nothing).
            memory = PosixSharedMemory.create(
                name,
                cls.SIZE,
                permissions=permissions,
                group=gid,
                allow_world_writable=allow_world_writable,
                initialize=lambda whole: cls._initialize(whole[: cls.SIZE], setup, repr(name)),
            )
        except OSError as error:
            raise from_os_error(error, cls.kind, name) from None
        return cls._make(memory.buf[: cls.SIZE], memory, name, 0)

    @classmethod
    def _open_named(cls: type[_T], name: str) -> _T:
        name = check_posix_name(name)
        deadline = Deadline(cls.READY_TIMEOUT)
        while True:
            try:
                memory = PosixSharedMemory.open(name)
            except OSError as error:
                raise from_os_error(error, cls.kind, name) from None
            size = memory.size
            if size == cls.SIZE:
                break
            magic = _native.atomic_load_u32(memory.buf, _MAGIC_AT) if size >= 4 else 0
            memory.close()
            if size != 0:
                other = _KIND_BY_MAGIC.get(magic)
                what = (
                    f"the memory holds a {other}"
                    if other
                    else f"the shared memory object has {size} bytes, not {cls.SIZE}"
                )
                raise IPCError(f"{cls.kind} {name!r}: {what}, not a {cls.kind}")
            # Size 0: the creator has made the object but not sized it yet.
            if deadline.expired():
                raise cls._never_ready(repr(name))
            time.sleep(0.001)
        view = memory.buf[: cls.SIZE]
        try:
            cls._wait_ready(view, repr(name), deadline)
        except BaseException:
            view.release()
            memory.close()
            raise
        return cls._make(view, memory, name, 0)

    @classmethod
    def _open_or_create_named(
        cls: type[_T], name: str, create: Callable[[], _T], check: Callable[[_T], None]
    ) -> _T:
        def open_and_check() -> _T:
            opened = cls._open_named(name)
            try:
                check(opened)
            except BaseException:
                opened.close()
                raise
            return opened

        return open_or_create(create, open_and_check)

    @classmethod
    def _place(
        cls: type[_T],
        buffer: object,
        offset: int,
        initialize: bool,
        setup: Callable[[memoryview], None],
    ) -> _T:
        if not isinstance(initialize, bool):
            raise TypeError("initialize must be a bool")
        offset = check_int(offset, "offset", minimum=0)
        flat = check_bytes_like(buffer, "buffer")
        if flat.readonly:
            raise TypeError("buffer must be writable")
        if offset + cls.SIZE > len(flat):
            raise ValueError(
                f"a {cls.kind} needs {cls.SIZE} bytes at offset {offset}, "
                f"but the buffer has {len(flat)} bytes"
            )
        if (_native.buffer_address(flat) + offset) % _ALIGNMENT:
            raise ValueError(
                f"offset {offset} is not aligned to {_ALIGNMENT} bytes in memory "
                "(shared memory and mmap start page-aligned: use a multiple of "
                f"{_ALIGNMENT})"
            )
        view = flat[offset : offset + cls.SIZE]
        where = f"at offset {offset} of a buffer"
        try:
            if initialize:
                cls._initialize(view, setup, where)
            else:
                cls._wait_ready(view, where, Deadline(cls.READY_TIMEOUT))
        except BaseException:
            view.release()
            raise
        return cls._make(view, None, None, offset)

    @classmethod
    def _initialize(cls, view: memoryview, setup: Callable[[memoryview], None], where: str) -> None:
        # Claim the region first, so that two initializers cannot both proceed.
        if not _native.atomic_cas_u32(view, _MAGIC_AT, 0, _INITIALIZING):
            raise ResourceExistsError(
                errno.EEXIST,
                f"{cls.kind} {where}: the memory already holds an initialized (or initializing) "
                "object; open it with initialize=False, or zero the region to start afresh",
            )
        try:
            view[_SIZE_AT:] = bytes(len(view) - _SIZE_AT)  # counters and bits start at zero
            _native.mutex_init(view, _MUTEX_AT)
            setup(view)
            _native.atomic_store_u32(view, _SIZE_AT, cls.SIZE)
        except BaseException:
            _native.atomic_store_u32(view, _MAGIC_AT, 0)
            raise
        _native.atomic_store_u32(view, _MAGIC_AT, cls._MAGIC)  # ready: last, a release store

    @classmethod
    def _wait_ready(cls, view: memoryview, where: str, deadline: Deadline) -> None:
        while True:
            magic = _native.atomic_load_u32(view, _MAGIC_AT)
            if magic == cls._MAGIC:
                size = _native.atomic_load_u32(view, _SIZE_AT)
                if size != cls.SIZE:
                    raise IPCError(
                        f"{cls.kind} {where} has a layout of {size} bytes, not {cls.SIZE}: "
                        "made by another version of unixipc?"
                    )
                return
            if magic not in (0, _INITIALIZING):
                other = _KIND_BY_MAGIC.get(magic)
                what = f"a {other}" if other else "not a unixipc object (foreign or corrupt memory)"
                raise IPCError(f"{cls.kind} {where}: the memory holds {what}, not a {cls.kind}")
            if deadline.expired():
                raise cls._never_ready(where)
            time.sleep(0.001)

    @classmethod
    def _never_ready(cls, where: str) -> TimeoutExpired:
        return TimeoutExpired(
            errno.ETIMEDOUT,
            f"{cls.kind} {where} was not initialized within {cls.READY_TIMEOUT:g} s: "
            "its creator may have died while creating it, or the memory is not one",
        )

    # -- the robust mutex ------------------------------------------------------------

    def _lock(self, at: int, deadline: Deadline) -> bool:
        """Lock the mutex at ``at``; True if its previous owner died (now ours, inconsistent)."""
        code = _native.mutex_lock(self._view, at, deadline.as_ns())
        if code == 0:
            return False
        if code == errno.EOWNERDEAD:
            return True
        raise self._mutex_error(code, deadline)

    def _unlock(self, at: int) -> None:
        code = _native.mutex_unlock(self._view, at)
        if code != 0:
            raise self._mutex_error(code)

    def _make_consistent(self, at: int) -> None:
        code = _native.mutex_consistent(self._view, at)
        if code == errno.EINVAL:
            raise IPCError(
                f"{self.describe()} is not in the owner-died state: there is nothing to mark "
                "consistent"
            )
        if code != 0:
            raise self._mutex_error(code)

    def _os_error(self, cls: type[IPCOSError], code: int, message: str) -> IPCOSError:
        if self.name is None:
            return cls(code, message)
        return cls(code, message, self.name)

    def _mutex_error(self, code: int, deadline: Deadline | None = None) -> IPCError:
        described = self.describe()
        if code == errno.ETIMEDOUT and deadline is not None:
            return deadline.error(f"acquiring {described}")
        if code == errno.EDEADLK:
            return self._os_error(
                DeadlockError, code, f"{described} is already held by this thread (not recursive)"
            )
        if code == errno.EPERM:
            return self._os_error(
                PermissionDeniedError, code, f"{described} is not held by this thread"
            )
        if code == errno.ENOTRECOVERABLE:
            return self._os_error(
                IPCOSError,
                code,
                f"{described} is permanently unusable: a holder died and the next holder "
                "released it without mark_consistent(); unlink it and create a new one",
            )
        return from_os_error(OSError(code, os.strerror(code)), self.kind, self.name)

    def _owner_died(self, extra: str = "") -> OwnerDied:
        return OwnerDied(
            f"{self.describe()}: its previous holder died while holding it. This thread now "
            f"holds the lock{extra}: repair the protected state and call mark_consistent(), "
            "or release() to make it permanently unusable"
        )

    def _not_held(self) -> IPCOSError:
        return self._os_error(
            PermissionDeniedError, errno.EPERM, f"{self.describe()} is not held by this thread"
        )

    def _held_here(self) -> bool:
        pid = os.getpid()
        return any(holder_pid == pid for holder_pid, _ in self._holders)

    def _load(self, at: int) -> int:
        return _native.atomic_load_u32(self._view, at)

    def _store(self, at: int, value: int) -> None:
        _native.atomic_store_u32(self._view, at, value % _U32)

    # -- the shared shape ------------------------------------------------------------

    def describe(self) -> str:
        """A short description naming the object, used in messages."""
        if self.name is None:
            return f"{self.kind} at offset {self.offset} of a buffer"
        return f"{self.kind} {self.name!r}"

    def info(self) -> SharedSyncInfo:
        """Kind, name, offset and size of the object."""
        self._check_open()
        return SharedSyncInfo(self.kind, self.name, self.offset, self.SIZE)

    def unlink(self) -> None:
        """Remove the object's name; processes that have it open keep using it.

        Raises:
            IPCError: the object was placed with in_buffer() and has no name.
            ResourceNotFoundError: already removed.
        """
        if self.name is None:
            raise IPCError(f"{self.describe()} has no name to unlink (it was placed in a buffer)")
        posix_shm.unlink(self.name)

    def close(self) -> None:
        """Release this process's mapping. Idempotent; never removes the object.

        Raises:
            IPCError: a thread of this process holds the lock (release it first:
                unmapping a held robust mutex would corrupt the kernel's record of
                this thread's locks), or another thread is blocked in it.
        """
        if self._closed:
            return
        if self._held_here():
            raise IPCError(f"cannot close {self.describe()} while this process holds it")
        try:
            self._view.release()
        except BufferError:
            raise IPCError(
                f"cannot close {self.describe()}: another thread is waiting in it"
            ) from None
        super().close()

    def _release(self) -> None:
        if self._memory is not None:
            self._memory.close()


class _Plain(_SharedSyncObject):
    """The kinds made from a name alone: mutex, condition, rwlock (not the barrier)."""

    @classmethod
    def _setup(cls, view: memoryview) -> None:
        """Initialize the kind's own fields (the counters start at zero)."""

    @classmethod
    @all_or_nothing
    def create(
        cls: type[_PL],
        name: str,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> _PL:
        """Create the object ``name`` (its own POSIX shared memory object, initialized
        before its name appears, exactly ``permissions``, owned by ``group`` if given).

        Raises:
            ResourceExistsError: ``name`` exists already.
            ValueError: ``permissions`` let every user write, without
                ``allow_world_writable=True``.
        """
        return cls._create_named(name, permissions, group, allow_world_writable, cls._setup)

    @classmethod
    @all_or_nothing
    def open_or_create(
        cls: type[_PL],
        name: str,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> _PL:
        """Open ``name`` if it exists, else create it (as ``create``).

        Raises:
            IPCError: the existing object is not of this kind.
        """
        return cls._open_or_create_named(
            name,
            lambda: cls.create(
                name,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            lambda _: None,
        )

    @classmethod
    def in_buffer(cls: type[_PL], buffer: object, offset: int = 0, *, initialize: bool) -> _PL:
        """Place the object at ``offset`` of a writable shared ``buffer`` (``SIZE`` bytes).

        Exactly one process passes ``initialize=True`` (the region's first word
        must be zero: it must not hold an object already); the others pass
        ``initialize=False`` and wait up to ``READY_TIMEOUT`` seconds for it. The
        buffer cannot be unmapped while this object is open.

        Raises:
            ResourceExistsError: ``initialize=True`` but the region already holds one.
            TimeoutExpired: ``initialize=False`` and nobody initialized it in time.
            IPCError: the region holds something else.
        """
        return cls._place(buffer, offset, initialize, cls._setup)


class _MutexLike(_Plain, Lockable):
    """An object whose own robust mutex is its lock (SharedMutex, SharedCondition)."""

    def acquire(self, *, timeout: float | None = None) -> None:
        """Take the lock, waiting up to ``timeout`` seconds (None: forever).

        Raises:
            OwnerDied: the previous holder died holding it; this thread now holds
                the lock. Repair the state, then ``mark_consistent()``.
            WouldBlock: ``timeout=0`` and another thread holds it.
            TimeoutExpired: ``timeout`` ran out.
            DeadlockError: this thread already holds it.
            IPCOSError: the lock is permanently unusable (ENOTRECOVERABLE).
        """
        self._check_open()
        deadline = Deadline(timeout)
        died = self._lock(_MUTEX_AT, deadline)
        self._holders.add(_me())
        if died:
            raise self._owner_died()

    def release(self) -> None:
        """Let the lock go.

        Raises:
            PermissionDeniedError: this thread does not hold it.
        """
        self._check_open()
        self._unlock(_MUTEX_AT)
        self._holders.discard(_me())

    def mark_consistent(self) -> None:
        """After ``OwnerDied``: declare the protected state repaired; the lock stays held.

        Raises:
            IPCError: the lock is not in the owner-died state, or this thread does
                not hold it.
        """
        self._check_open()
        if _me() not in self._holders:
            raise self._not_held()
        self._make_consistent(_MUTEX_AT)

    def _hold(self) -> None:
        self.acquire()


class SharedMutex(_MutexLike):
    """A robust, error-checking, process-shared mutex in shared memory.

    ``with mutex:`` acquires and releases. If a holder dies, the next acquirer
    gets :class:`~unixipc.OwnerDied` with the lock held::

        try:
            mutex.acquire()
        except OwnerDied:
            repair(shared_state)
            mutex.mark_consistent()
        try:
            ...
        finally:
            mutex.release()

    C programs can use the same mutex: it is a plain ``pthread_mutex_t`` at byte
    ``PTHREAD_OFFSET`` of the object's ``SIZE`` bytes.
    """

    kind = "shared mutex"
    #: Where the pthread_mutex_t lies in the object's memory.
    PTHREAD_OFFSET: ClassVar[int] = _MUTEX_AT
    #: Bytes the object occupies (in_buffer needs this much, aligned to 8).
    SIZE: ClassVar[int] = _round_up(_MUTEX_AT + _native.MUTEX_SIZE)
    _MAGIC = _MAGIC_MUTEX


class SharedCondition(_MutexLike):
    """A condition variable shared between processes, with its own robust mutex.

    As ``threading.Condition``: ``with cond:`` takes the lock,
    ``cond.wait(timeout)`` releases it while waiting and takes it back,
    ``notify(n)`` / ``notify_all()`` (with the lock held) wake waiters. If the
    lock's holder died, taking the lock (also inside ``wait``) raises
    ``OwnerDied`` with the lock held; see ``mark_consistent()``.
    """

    kind = "shared condition"
    _GRANTED = _MUTEX_AT + _MUTEX_STRIDE  # futex word: wake-ups granted, ever
    _CONSUMED = _GRANTED + 4  # wake-ups taken by waiters, ever
    _WAITERS = _GRANTED + 8  # waiters not yet granted a wake-up
    SIZE: ClassVar[int] = _round_up(_WAITERS + 4)
    _MAGIC = _MAGIC_CONDITION

    def _available(self) -> int:
        return (self._load(self._GRANTED) - self._load(self._CONSUMED)) % _U32

    def _finish_wait(self, granted: bool) -> None:
        """With the lock held: take a granted wake-up, or stop being counted as a waiter."""
        if granted:
            self._store(self._CONSUMED, self._load(self._CONSUMED) + 1)
        else:
            self._store(self._WAITERS, self._load(self._WAITERS) - 1)

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, sleep until notified or ``timeout``, take the lock back.

        Returns False if the timeout ran out, True otherwise (which, as with any
        condition variable, does not prove the awaited state: recheck it, or use
        ``wait_for``).

        Raises:
            PermissionDeniedError: this thread does not hold the lock.
            OwnerDied: taking the lock back found that its holder had died; this
                thread holds the lock.
        """
        self._check_open()
        me = _me()
        if me not in self._holders:
            raise self._not_held()
        deadline = Deadline(timeout)
        self._store(self._WAITERS, self._load(self._WAITERS) + 1)
        seen = self._load(self._GRANTED)
        self._unlock(_MUTEX_AT)
        self._holders.discard(me)
        while True:
            try:
                outcome = _native.futex_wait(self._view, self._GRANTED, seen, deadline.as_ns())
            except BaseException:  # a signal handler raised (Ctrl-C): leave holding the lock
                self._lock(_MUTEX_AT, Deadline(None))
                self._holders.add(me)
                self._finish_wait(self._available() > 0)
                # If the holder had died, the lock stays inconsistent: releasing it
                # without mark_consistent() makes it unusable, never silently torn.
                raise
            died = self._lock(_MUTEX_AT, Deadline(None))
            self._holders.add(me)
            if self._available() > 0:
                self._finish_wait(True)
                result: bool | None = True
            elif outcome == errno.ETIMEDOUT or died:
                self._finish_wait(False)
                result = False
            else:
                result = None  # someone else took the wake-up: wait on
            if died:
                raise self._owner_died()
            if result is not None:
                return result
            seen = self._load(self._GRANTED)
            self._unlock(_MUTEX_AT)
            self._holders.discard(me)

    def wait_for(self, predicate: Callable[[], _P], timeout: float | None = None) -> _P:
        """Wait until ``predicate()`` is true (checked with the lock held), or ``timeout``.

        Returns the predicate's last value (falsy if the timeout ran out).

        Raises:
            PermissionDeniedError: this thread does not hold the lock.
            OwnerDied: see ``wait``.
        """
        deadline = Deadline(timeout)
        result = predicate()
        while not result:
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (those waiting now). The lock must be held.

        Raises:
            PermissionDeniedError: this thread does not hold the lock.
        """
        self._check_open()
        n = check_int(n, "n", minimum=0)
        if _me() not in self._holders:
            raise self._not_held()
        waiters = self._load(self._WAITERS)
        remaining = min(n, waiters)
        while remaining > 0:
            step = min(remaining, _WAKE_STEP)
            # The grant and the wake-up are one system call; the count is lowered
            # after it, so a notifier killed in between over-counts, never under-counts.
            _native.futex_add_and_wake(self._view, self._GRANTED, step, step)
            waiters -= step
            remaining -= step
            self._store(self._WAITERS, waiters)

    def notify_all(self) -> None:
        """Wake every waiter. The lock must be held.

        Raises:
            PermissionDeniedError: this thread does not hold the lock.
        """
        self._check_open()
        if _me() not in self._holders:
            raise self._not_held()
        self.notify(self._load(self._WAITERS))


class SharedRWLock(_Plain, Lockable):
    """A read-write lock shared between processes that survives crashed holders.

    Many readers or one writer; a waiting writer stops new readers from
    entering (no writer starvation). ``with rwlock.read_lock():`` and
    ``with rwlock.write_lock():``; ``with rwlock:`` takes the write lock.
    Built from robust mutexes (a gate that writers hold, and one slot per
    reader), so the kernel releases a dead holder's part.
    """

    kind = "shared rwlock"
    #: How many read holds can exist at once; further readers wait.
    READ_SLOTS: ClassVar[int] = 64
    _WRITE_HELD = _EXTRA_AT
    _SLOTS_AT = _MUTEX_AT + _MUTEX_STRIDE
    SIZE: ClassVar[int] = _round_up(_SLOTS_AT + READ_SLOTS * _MUTEX_STRIDE)
    _MAGIC = _MAGIC_RWLOCK

    def __init__(
        self, view: memoryview, memory: PosixSharedMemory | None, name: str | None, offset: int
    ) -> None:
        """Use create(), open(), open_or_create() or in_buffer()."""
        super().__init__(view, memory, name, offset)
        self._writers: set[tuple[int, int]] = set()
        self._reads: dict[tuple[int, int], list[int]] = {}

    @classmethod
    def _setup(cls, view: memoryview) -> None:
        for slot in range(cls.READ_SLOTS):
            _native.mutex_init(view, cls._slot(slot))

    @classmethod
    def _slot(cls, index: int) -> int:
        return cls._SLOTS_AT + index * _MUTEX_STRIDE

    def _enter_gate(self, deadline: Deadline, me: tuple[int, int]) -> None:
        """Take the gate mutex; after a dead writer, raise OwnerDied holding it as writer."""
        if self._lock(_MUTEX_AT, deadline):
            if self._load(self._WRITE_HELD):
                self._writers.add(me)
                self._holders.add(me)
                raise self._owner_died(" exclusively, as a writer")
            # It died entering or leaving: nothing it protects was being written.
            self._make_consistent(_MUTEX_AT)

    def _take_slot(self, index: int, deadline: Deadline) -> None:
        """Lock reader slot ``index`` (reclaiming it from a dead reader)."""
        if self._lock(self._slot(index), deadline):
            self._make_consistent(self._slot(index))

    def acquire_read(self, *, timeout: float | None = None) -> None:
        """Take a read (shared) hold, waiting up to ``timeout`` seconds.

        A thread may hold several read holds; each needs its own ``release()``.

        Raises:
            OwnerDied: a writer died holding the lock. This thread now holds the
                lock exclusively, as a writer: repair, ``mark_consistent()``,
                ``release()``.
            WouldBlock, TimeoutExpired: a writer holds or awaits it.
            DeadlockError: this thread holds the write lock.
            IPCOSError: the lock is permanently unusable (ENOTRECOVERABLE).
        """
        self._check_open()
        deadline = Deadline(timeout)
        me = _me()
        if me in self._writers:
            raise self._os_error(
                DeadlockError, errno.EDEADLK, f"{self.describe()}: this thread holds the write lock"
            )
        mine = self._reads.setdefault(me, [])
        start = threading.get_native_id() % self.READ_SLOTS
        order = [(start + k) % self.READ_SLOTS for k in range(self.READ_SLOTS)]
        while True:
            self._enter_gate(deadline, me)
            taken = None
            try:
                for index in order:
                    code = _native.mutex_trylock(self._view, self._slot(index))
                    if code == errno.EOWNERDEAD:  # a dead reader's slot: ours now
                        self._make_consistent(self._slot(index))
                    elif code != 0:
                        continue
                    taken = index
                    break
            finally:
                self._unlock(_MUTEX_AT)
            if taken is not None:
                mine.append(taken)
                self._holders.add(me)
                return
            # Every slot holds a live reader: wait until one lets go, then retry.
            free = [index for index in order if index not in mine]
            if not free:
                raise self._os_error(
                    ResourceLimitError,
                    errno.EAGAIN,
                    f"{self.describe()}: this thread already holds all "
                    f"{self.READ_SLOTS} read holds",
                )
            self._take_slot(free[0], deadline)
            self._unlock(self._slot(free[0]))

    def acquire_write(self, *, timeout: float | None = None) -> None:
        """Take the write (exclusive) lock, waiting up to ``timeout`` seconds.

        Raises:
            OwnerDied: the previous writer died holding it; this thread now holds
                it: repair, ``mark_consistent()``, ``release()``.
            WouldBlock, TimeoutExpired: readers or a writer hold it.
            DeadlockError: this thread already holds it, or holds a read lock
                (there is no upgrade).
            IPCOSError: the lock is permanently unusable (ENOTRECOVERABLE).
        """
        self._check_open()
        deadline = Deadline(timeout)
        me = _me()
        if me in self._writers:
            raise self._mutex_error(errno.EDEADLK)
        if self._reads.get(me):
            raise self._os_error(
                DeadlockError,
                errno.EDEADLK,
                f"{self.describe()}: this thread holds a read lock; release it before "
                "acquiring the write lock (there is no upgrade)",
            )
        self._enter_gate(deadline, me)
        try:
            # New readers wait at the gate; wait for each current reader to leave.
            for index in range(self.READ_SLOTS):
                self._take_slot(index, deadline)
                self._unlock(self._slot(index))
        except BaseException:
            self._unlock(_MUTEX_AT)
            raise
        self._store(self._WRITE_HELD, 1)
        self._writers.add(me)
        self._holders.add(me)

    def release(self) -> None:
        """Release this thread's write lock, or else its most recent read hold.

        Raises:
            PermissionDeniedError: this thread holds neither.
        """
        self._check_open()
        me = _me()
        if me in self._writers:
            self._store(self._WRITE_HELD, 0)
            self._unlock(_MUTEX_AT)
            self._writers.discard(me)
        elif self._reads.get(me):
            index = self._reads[me][-1]
            self._unlock(self._slot(index))
            self._reads[me].pop()
        else:
            raise self._not_held()
        if me not in self._writers and not self._reads.get(me):
            self._holders.discard(me)

    def mark_consistent(self) -> None:
        """After ``OwnerDied``: declare the protected state repaired; the lock stays held.

        Raises:
            IPCError: the lock is not in the owner-died state, or this thread does
                not hold it.
        """
        self._check_open()
        if _me() not in self._writers:
            raise self._not_held()
        self._make_consistent(_MUTEX_AT)

    @contextlib.contextmanager
    def read_lock(self, *, timeout: float | None = None) -> Iterator[SharedRWLock]:
        """``with rwlock.read_lock(timeout=...):`` holds a read lock for the block.

        Raises:
            See ``acquire_read``.
        """
        self.acquire_read(timeout=timeout)
        try:
            yield self
        finally:
            self.release()

    @contextlib.contextmanager
    def write_lock(self, *, timeout: float | None = None) -> Iterator[SharedRWLock]:
        """``with rwlock.write_lock(timeout=...):`` holds the write lock for the block.

        Raises:
            See ``acquire_write``.
        """
        self.acquire_write(timeout=timeout)
        try:
            yield self
        finally:
            self.release()

    def _hold(self) -> None:
        self.acquire_write()


class SharedBarrier(_SharedSyncObject):
    """A reusable barrier for ``parties`` processes (or threads).

    ``wait()`` returns once ``parties`` callers have arrived, with a different
    index from 0 to parties - 1 for each (``if barrier.wait() == 0:`` elects one).
    Unlike ``threading.Barrier``, a wait that times out simply withdraws its
    arrival: the barrier never breaks, and the others keep waiting.
    ``with barrier:`` closes it on exit (a barrier is not a lock).
    """

    kind = "shared barrier"
    #: The largest number of parties a barrier can have.
    MAX_PARTIES: ClassVar[int] = 1024
    _PARTIES = _EXTRA_AT
    _GENERATION = _MUTEX_AT + _MUTEX_STRIDE  # futex word: +1 each time the barrier opens
    _ARRIVALS_GENERATION = _GENERATION + 4  # the generation the arrival bits belong to
    _ARRIVED = _GENERATION + 8  # one bit per arrival index
    SIZE: ClassVar[int] = _round_up(_ARRIVED + MAX_PARTIES // 8)
    _MAGIC = _MAGIC_BARRIER

    @classmethod
    def _setup_for(cls, parties: int) -> Callable[[memoryview], None]:
        def setup(view: memoryview) -> None:
            _native.atomic_store_u32(view, cls._PARTIES, parties)

        return setup

    @classmethod
    def _check_parties(cls, parties: object) -> int:
        value = check_int(parties, "parties", minimum=1)
        if value > cls.MAX_PARTIES:
            raise ValueError(f"parties must be <= {cls.MAX_PARTIES}, got {value}")
        return value

    @classmethod
    @all_or_nothing
    def create(
        cls,
        name: str,
        parties: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SharedBarrier:
        """Create the barrier ``name`` for ``parties`` callers (as ``SharedMutex.create``).

        Raises:
            ResourceExistsError: ``name`` exists already.
        """
        parties = cls._check_parties(parties)
        return cls._create_named(
            name, permissions, group, allow_world_writable, cls._setup_for(parties)
        )

    @classmethod
    @all_or_nothing
    def open_or_create(
        cls,
        name: str,
        parties: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SharedBarrier:
        """Open ``name`` if it exists, else create it for ``parties`` callers.

        Raises:
            IPCError: the existing object is not a shared barrier, or is one for a
                different number of parties.
        """
        parties = cls._check_parties(parties)

        def check(barrier: SharedBarrier) -> None:
            if barrier.parties != parties:
                raise IPCError(
                    f"{barrier.describe()} exists for {barrier.parties} parties, not {parties}"
                )

        return cls._open_or_create_named(
            name,
            lambda: cls.create(
                name,
                parties,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            check,
        )

    @classmethod
    def in_buffer(
        cls, buffer: object, offset: int = 0, *, initialize: bool, parties: int | None = None
    ) -> SharedBarrier:
        """Place a barrier at ``offset`` of a writable shared ``buffer`` (``SIZE`` bytes).

        ``parties`` is required with ``initialize=True`` and must be omitted otherwise.

        Raises:
            ResourceExistsError: ``initialize=True`` but the region already holds one.
            TimeoutExpired: ``initialize=False`` and nobody initialized it in time.
            IPCError: the region holds something else.
        """
        if initialize is True:
            if parties is None:
                raise TypeError("in_buffer(initialize=True) needs parties")
            setup = cls._setup_for(cls._check_parties(parties))
        else:
            if parties is not None:
                raise TypeError("parties is given only with initialize=True")
            setup = cls._setup_for(0)
        return cls._place(buffer, offset, initialize, setup)

    @property
    def parties(self) -> int:
        """How many callers each round of the barrier needs."""
        self._check_open()
        return self._load(self._PARTIES)

    @property
    def n_waiting(self) -> int:
        """How many parties are waiting in the current round (a snapshot)."""
        self._check_open()
        if self._load(self._ARRIVALS_GENERATION) != self._load(self._GENERATION):
            return 0
        bits = self._view[self._ARRIVED : self._ARRIVED + self.MAX_PARTIES // 8]
        return bin(int.from_bytes(bits, "little")).count("1")

    def info(self) -> SharedSyncInfo:
        """Kind, name, offset, size and parties of the barrier."""
        self._check_open()
        return SharedSyncInfo(self.kind, self.name, self.offset, self.SIZE, self.parties)

    def _enter(self, deadline: Deadline) -> None:
        if self._lock(_MUTEX_AT, deadline):
            # A party died inside wait(): every step it takes is one store or one
            # system call, so the state is whole; it either arrived or it did not.
            self._make_consistent(_MUTEX_AT)

    def _arrivals(self) -> int:
        """The arrival bits of the current generation (cleared lazily)."""
        generation = self._load(self._GENERATION)
        view = self._view
        if self._load(self._ARRIVALS_GENERATION) != generation:
            for word in range(self.MAX_PARTIES // 32):
                _native.atomic_store_u32(view, self._ARRIVED + 4 * word, 0)
            self._store(self._ARRIVALS_GENERATION, generation)  # last: the bits are clean
            return 0
        return int.from_bytes(view[self._ARRIVED : self._ARRIVED + self.MAX_PARTIES // 8], "little")

    def _set_arrival(self, index: int, arrived: bool) -> None:
        word = self._ARRIVED + 4 * (index // 32)
        value = self._load(word)
        bit = 1 << (index % 32)
        self._store(word, value | bit if arrived else value & ~bit)

    def wait(self, timeout: float | None = None) -> int:
        """Wait until ``parties`` callers have called ``wait``; return this caller's index.

        Raises:
            WouldBlock: ``timeout=0`` and this caller is not the last to arrive.
            TimeoutExpired: ``timeout`` ran out; this caller's arrival is withdrawn.
        """
        self._check_open()
        deadline = Deadline(timeout)
        self._enter(deadline)
        try:
            parties = self._load(self._PARTIES)
            generation = self._load(self._GENERATION)
            arrived = self._arrivals()
            index = (~arrived & (arrived + 1)).bit_length() - 1  # lowest free index
            if bin(arrived).count("1") + 1 >= parties:
                # The last one: open the barrier and wake everyone in one system call.
                _native.futex_add_and_wake(self._view, self._GENERATION, 1, 0x7FFFFFFF)
                return index
            self._set_arrival(index, True)
        finally:
            self._unlock(_MUTEX_AT)
        while True:
            try:
                outcome = _native.futex_wait(
                    self._view, self._GENERATION, generation, deadline.as_ns()
                )
            except BaseException:
                self._withdraw(generation, index)
                raise
            if self._load(self._GENERATION) != generation:
                return index
            if outcome == errno.ETIMEDOUT:
                if self._withdraw(generation, index):
                    return index
                raise deadline.error(f"waiting at {self.describe()}")

    def _withdraw(self, generation: int, index: int) -> bool:
        """Take back an arrival; True if the barrier opened meanwhile (nothing to take back)."""
        self._enter(Deadline(None))
        try:
            if self._load(self._GENERATION) != generation:
                return True
            self._set_arrival(index, False)
            return False
        finally:
            self._unlock(_MUTEX_AT)
