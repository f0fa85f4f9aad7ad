"""System V semaphore sets: arrays of counters changed atomically, with SEM_UNDO.

``op([(index, delta), ...])`` applies every change or none: a negative delta
waits until the semaphore can go down by that much, a positive one adds, and a
delta of 0 waits until the semaphore is zero. With ``undo=True`` the kernel
records the change and reverts it if the process exits or is killed, so a
crashed holder never leaves the others waiting forever.

Persistence: kernel. A set lives until ``unlink()`` (IPC_RMID) or a reboot;
removal is immediate, and processes waiting on it wake with
:class:`~unixipc.ResourceNotFoundError`. ``close()`` only forgets the id in
this process (there is no per-process handle), and ``with semaphores:`` closes.

Creation is race-free: :meth:`SysVSemaphoreSet.create` sets the initial values
and then performs one operation (which sets the set's ``sem_otime``); an
opener that finds ``sem_otime`` still zero waits until it is not, so nobody
uses a set before its values are in place. That is the classic initialization
race (Stevens, UNP vol. 2, 11.2): semget creates a set whose values are zero,
and the creator sets them with a second call, so an opener that came in between
would operate on zeros. A set made by another program that never operated on it
(TLPI's ``svsem_create``, ``ipcmk -S``) is opened as it is after a short wait
(``INIT_WAIT`` seconds), and at once if it is older than that or if the opener
passes ``wait_for_initialization=False``. Creation is all or nothing: if
setting the values fails, or a signal handler raises, the set is removed.

Keys: an int (as made by ftok(3)), or 0 (IPC_PRIVATE) for a set that only its
id finds again (:meth:`SysVSemaphoreSet.open_id`). Portability: System V IPC
is in every UNIX; semtimedop is Linux's; ``list_ids()`` reads /proc/sysvipc/sem.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from . import _native
from ._deadline import Deadline, check_timeout
from ._names import check_group, check_int, check_permissions, check_sysv_key
from ._resource import Resource, all_or_nothing, open_or_create
from ._sysv import SysVKind, check_id, check_open_key, read_table

__all__ = (
    "INIT_WAIT",
    "VALUE_MAX",
    "SysVSemaphoreSet",
    "SysVSemaphoreSetInfo",
    "exists",
    "list_ids",
    "unlink",
)

KIND = "System V semaphore set"

#: The largest value a System V semaphore can hold (SEMVMX).
VALUE_MAX: int = _native.SYSV_SEM_VALUE_MAX

#: Seconds an opener waits (by default) for a creator to finish setting initial values.
INIT_WAIT = 2.0

_SETS = SysVKind(
    KIND,
    find=_native.sysv_sem_find,
    remove=_native.sysv_sem_remove,
    set_owner=_native.sysv_sem_set,
    limits={
        errno.ERANGE: f"SEMVMX: at most {VALUE_MAX}",
        errno.E2BIG: "SEMOPM operations per call",
    },
)


@dataclass(frozen=True)
class SysVSemaphoreSetInfo:
    """What ``SysVSemaphoreSet.info()`` reports (semctl IPC_STAT).

    Times are seconds since the epoch; ``last_op_time`` is 0 until the first operation.
    """

    id: int
    key: int
    count: int
    permissions: int
    uid: int
    gid: int
    creator_uid: int
    creator_gid: int
    last_op_time: int
    change_time: int


def _stat(sem_id: int, what: object, *, gone: int = errno.EIDRM) -> SysVSemaphoreSetInfo:
    try:
        key, uid, gid, cuid, cgid, mode, count, otime, ctime = _native.sysv_sem_stat(sem_id)
    except OSError as error:
        raise _SETS.error(error, what, gone=gone) from None
    return SysVSemaphoreSetInfo(
        id=sem_id,
        key=key,
        count=count,
        permissions=mode & 0o777,
        uid=uid,
        gid=gid,
        creator_uid=cuid,
        creator_gid=cgid,
        last_op_time=otime,
        change_time=ctime,
    )


def exists(key: int) -> bool:
    """True if a System V semaphore set has the key ``key``."""
    return _SETS.exists(check_open_key(key))


def list_ids() -> list[int]:
    """The ids of every System V semaphore set on the system, sorted."""
    return sorted(row["semid"] for row in read_table("sem"))


def unlink(key: int) -> None:
    """Remove the set with the key ``key`` (IPC_RMID); its waiters wake with an error.

    Raises:
        ResourceNotFoundError: no set has this key.
        PermissionDeniedError: not allowed to remove it.
    """
    key = check_open_key(key)
    _SETS.remove(_SETS.find(key), _SETS.describe(key))


def _check_wait(value: object) -> float:
    """``wait_for_initialization``: True (INIT_WAIT), False (0) or seconds."""
    if value is True:
        return INIT_WAIT
    if value is False:
        return 0.0
    seconds = check_timeout(value, "wait_for_initialization")
    if seconds is None:
        raise TypeError("wait_for_initialization must be a bool or a number of seconds")
    return seconds


def _check_values(values: object, count: int) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"values must be a sequence of ints, not {type(values).__name__}")
    checked = [check_int(value, "values", minimum=0) for value in values]
    if len(checked) != count:
        raise ValueError(f"values must have {count} items (one per semaphore), got {len(checked)}")
    if any(value > VALUE_MAX for value in checked):
        raise ValueError(f"values must be <= {VALUE_MAX} (SEMVMX)")
    return checked


class SysVSemaphoreSet(Resource):
    """A System V semaphore set: ``len(s)`` semaphores changed together by ``op()``.

    Made by :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`.
    """

    kind = KIND
    _factories = ("create", "open", "open_or_create", "open_id")

    def __init__(self, sem_id: int, key: int, count: int) -> None:
        """Use :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`."""
        self.id = sem_id
        self.key = key
        self._count = count
        self._opened(f"{_SETS.describe(key)} (id {sem_id})")

    # -- opening -----------------------------------------------------------

    @classmethod
    @all_or_nothing
    def create(
        cls,
        key: int,
        count: int,
        *,
        values: Sequence[int] | None = None,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SysVSemaphoreSet:
        """Create a set of ``count`` semaphores with ``key``, holding ``values`` (else zeros).

        Openers that come while the values are being set wait until they are
        set (see the module's notes). ``key`` 0 (IPC_PRIVATE) always creates a
        new set, found again by ``.id``. The set has exactly ``permissions`` and,
        if given, belongs to ``group`` (a gid or a group name). If anything fails
        after the set exists (a signal included), it is removed.

        Raises:
            ResourceExistsError: a set with ``key`` exists already.
            ResourceLimitError: ``count`` is beyond SEMMSL, or SEMMNI/SEMMNS is reached.
            ValueError: ``permissions`` let every user write, without
                ``allow_world_writable=True``.
        """
        key = check_sysv_key(key)
        check_int(count, "count", minimum=1)
        permissions = check_permissions(
            permissions, allow_world_writable=allow_world_writable, maximum=0o777
        )
        gid = check_group(group)
        initial = None if values is None else _check_values(values, count)

        def ready(sem_id: int) -> SysVSemaphoreSet:
            if initial is not None:
                _native.sysv_sem_setall(sem_id, initial)
            # One operation that changes nothing sets sem_otime: the "ready" mark.
            first = 0 if initial is None else initial[0]
            mark = [(0, 1), (0, -1)] if first < VALUE_MAX else [(0, -1), (0, 1)]
            _native.sysv_sem_op(sem_id, mark, count, False, True, -1)
            return cls._make(sem_id, key, count)

        return _SETS.create(
            key,
            permissions,
            gid,
            lambda mode, created: _native.sysv_sem_create(key, count, mode, created),
            ready,
            {errno.EINVAL: "SEMMSL semaphores per set", errno.ENOSPC: "SEMMNI or SEMMNS"},
        )

    @classmethod
    @all_or_nothing
    def open(cls, key: int, *, wait_for_initialization: bool | float = True) -> SysVSemaphoreSet:
        """Open the existing set with ``key``, once its creator has set its values.

        A set that nobody has operated on yet may still be getting its values
        from its creator (the classic initialization race, see the module's
        notes): by default the opener waits up to ``INIT_WAIT`` seconds for the
        first operation (not at all for a set older than that).
        ``wait_for_initialization`` is that wait: True (the default), False to
        open at once (a set that its program initializes in one step, such as
        TLPI's ``svsem_create``), or a number of seconds.

        Raises:
            ResourceNotFoundError: no set has this key.
            PermissionDeniedError: its permissions forbid using it.
        """
        key = check_open_key(key)
        wait = _check_wait(wait_for_initialization)
        sem_id = _SETS.find(key)
        return cls._make(
            sem_id, key, cls._wait_until_ready(sem_id, _SETS.describe(key), wait).count
        )

    @classmethod
    @all_or_nothing
    def open_id(
        cls, sem_id: int, *, wait_for_initialization: bool | float = True
    ) -> SysVSemaphoreSet:
        """Open the set whose id is ``sem_id`` (how IPC_PRIVATE sets are shared).

        ``wait_for_initialization`` is as for :meth:`open`.

        Raises:
            ResourceNotFoundError: no set has this id.
            PermissionDeniedError: its permissions forbid using it.
        """
        sem_id = check_id(sem_id, "sem_id")
        wait = _check_wait(wait_for_initialization)
        info = cls._wait_until_ready(sem_id, f"id {sem_id}", wait)
        return cls._make(sem_id, info.key, info.count)

    @classmethod
    @all_or_nothing
    def open_or_create(
        cls,
        key: int,
        count: int,
        *,
        values: Sequence[int] | None = None,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SysVSemaphoreSet:
        """Open the set with ``key`` if it exists, else create it as :meth:`create` does.

        An existing set keeps its own size and values.

        Raises:
            PermissionDeniedError: the existing set's permissions forbid using it.
            ResourceLimitError: creating it hit a limit (SEMMSL, SEMMNI, SEMMNS).
        """
        key = check_open_key(key)
        check_int(count, "count", minimum=1)
        check_permissions(permissions, allow_world_writable=allow_world_writable, maximum=0o777)
        check_group(group)
        if values is not None:
            _check_values(values, count)
        return open_or_create(
            lambda: cls.create(
                key,
                count,
                values=values,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            lambda: cls.open(key),
        )

    @staticmethod
    def _wait_until_ready(sem_id: int, what: str, wait: float) -> SysVSemaphoreSetInfo:
        """Wait (at most ``wait`` s) while the set's creator may still be setting its values."""
        info = _stat(sem_id, what, gone=errno.ENOENT)
        # change_time has whole seconds: a set is surely older than INIT_WAIT
        # once a second more than that has passed.
        if info.last_op_time != 0 or time.time() - info.change_time > INIT_WAIT + 1:
            return info
        deadline = Deadline(wait)
        pause = 0.0001
        while info.last_op_time == 0 and not deadline.expired() and wait > 0:
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
            info = _stat(sem_id, what, gone=errno.ENOENT)
        return info

    # -- operations --------------------------------------------------------

    def op(
        self,
        operations: Iterable[tuple[int, int]],
        *,
        undo: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Apply every ``(index, delta)`` at once, or none of them; wait until possible.

        A negative delta waits until that semaphore is at least ``-delta``, a
        positive delta adds to it, and 0 waits until it is zero. The whole list
        is applied atomically when all of it can be. With ``undo=True`` the
        kernel reverts these changes when this process exits or is killed.

        Raises:
            WouldBlock: ``timeout=0`` and it would have to wait.
            TimeoutExpired: the timeout ran out (nothing was applied).
            ResourceNotFoundError: the set was removed (also while waiting).
            ResourceLimitError: a value would exceed VALUE_MAX.
            ValueError: an index outside the set, or a delta beyond +-32767.
        """
        if self._closed:
            self._check_open()
        if not isinstance(operations, (list, tuple)):
            operations = list(operations)
        # The C layer checks each (index, delta) before the system call.
        if timeout is None:
            try:
                _native.sysv_sem_op(self.id, operations, self._count, undo, False, -1)
            except OSError as error:
                raise _SETS.error(error, self._name) from None
            return
        deadline = Deadline(timeout)
        try:
            _native.sysv_sem_op(
                self.id, operations, self._count, undo, deadline.timeout == 0, deadline.as_ns()
            )
        except OSError as error:
            if error.errno == errno.EAGAIN:
                raise deadline.error(f"operating on {self.describe()}") from None
            raise _SETS.error(error, self._name) from None

    # -- values and counts -------------------------------------------------

    def _index(self, index: object) -> int:
        checked = check_int(index, "index", minimum=0)
        if checked >= self._count:
            raise ValueError(f"index {checked} is outside the set of {self._count} semaphores")
        self._check_open()
        return checked

    @property
    def values(self) -> list[int]:
        """Every semaphore's value, read at one instant (GETALL)."""
        self._check_open()
        try:
            return list(_native.sysv_sem_getall(self.id))
        except OSError as error:
            raise _SETS.error(error, self._name) from None

    def set_values(self, values: Sequence[int]) -> None:
        """Set every semaphore's value at once (SETALL); waiters that can go on, wake.

        Undo records for these semaphores are cleared in every process.

        Raises:
            ResourceNotFoundError: the set was removed.
        """
        checked = _check_values(values, self._count)
        self._check_open()
        try:
            _native.sysv_sem_setall(self.id, checked)
        except OSError as error:
            raise _SETS.error(error, self._name) from None

    def value(self, index: int) -> int:
        """The value of semaphore ``index`` (GETVAL)."""
        return self._get(_native.sysv_sem_getval, index)

    def set_value(self, index: int, value: int) -> None:
        """Set semaphore ``index`` to ``value`` (SETVAL); waiters that can go on, wake.

        Raises:
            ResourceNotFoundError: the set was removed.
        """
        index = self._index(index)
        checked = check_int(value, "value", minimum=0)
        if checked > VALUE_MAX:
            raise ValueError(f"value must be <= {VALUE_MAX} (SEMVMX), got {checked}")
        try:
            _native.sysv_sem_setval(self.id, index, checked)
        except OSError as error:
            raise _SETS.error(error, self._name) from None

    def waiting_for_increase(self, index: int) -> int:
        """How many processes wait for semaphore ``index`` to grow (GETNCNT)."""
        return self._get(_native.sysv_sem_getncnt, index)

    def waiting_for_zero(self, index: int) -> int:
        """How many processes wait for semaphore ``index`` to be zero (GETZCNT)."""
        return self._get(_native.sysv_sem_getzcnt, index)

    def last_pid(self, index: int) -> int:
        """The process that last operated on semaphore ``index`` (GETPID; 0 if none)."""
        return self._get(_native.sysv_sem_getpid, index)

    def _get(self, getter: Callable[[int, int], int], index: int) -> int:
        index = self._index(index)
        try:
            return getter(self.id, index)
        except OSError as error:
            raise _SETS.error(error, self._name) from None

    def __len__(self) -> int:
        """The number of semaphores in the set."""
        return self._count

    # -- the object --------------------------------------------------------

    def info(self) -> SysVSemaphoreSetInfo:
        """Key, size, owner, permissions and times (IPC_STAT).

        Raises:
            ResourceNotFoundError: the set was removed.
        """
        self._check_open()
        return _stat(self.id, self._name)

    def unlink(self) -> None:
        """Remove the set now (IPC_RMID): every process waiting on it wakes with an error.

        Raises:
            ResourceNotFoundError: already removed.
            PermissionDeniedError: not allowed to remove it.
        """
        self._check_open()
        _SETS.remove(self.id, self._name)
