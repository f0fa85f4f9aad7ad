"""System V shared memory: a segment found by an integer key, attached by processes.

Persistence: kernel. A segment lives until it is removed with ``unlink()``
(IPC_RMID) and, after that, until the last process attached to it detaches:
removal takes away the key at once (no new process can find it by key), but
processes still attached keep using the memory, and ``info()`` then reports
``marked_for_removal``. Closing (shmdt) never removes a segment.

Keys: an int (as made by ftok(3)), or 0 (IPC_PRIVATE) for a segment that only
its id finds again (pass ``.id`` to a child and use :meth:`SysVSharedMemory.open_id`).

Memory: a segment's pages come from the kernel's internal shared memory
filesystem, which has no size limit of its own (unlike /dev/shm), so a segment
cannot run out of room after creation and never raises SIGBUS: SHMMAX, SHMALL
and SHMMNI are checked by ``create`` itself (``ResourceLimitError``), and with
strict overcommit (``vm.overcommit_memory=2``) so is the memory. What remains is
the machine running out of memory, which is the OOM killer's affair as for any
memory a process touches; the pages are not touched in advance
(``MADV_POPULATE_WRITE`` would do it, at the price of committing every page of a
large sparse segment at creation).

Portability: System V IPC is in every UNIX; ``list_ids()`` reads the Linux
table /proc/sysvipc/shm.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from . import _native
from ._memory import MemoryBase
from ._names import check_group, check_int, check_permissions, check_sysv_key
from ._resource import all_or_nothing, open_or_create
from ._sysv import SysVKind, check_id, check_open_key, read_table

__all__ = (
    "SysVSharedMemory",
    "SysVSharedMemoryInfo",
    "exists",
    "list_ids",
    "unlink",
)

KIND = "System V shared memory"

_SEGMENTS = SysVKind(
    KIND,
    find=_native.sysv_shm_get,
    remove=_native.sysv_shm_remove,
    set_owner=_native.sysv_shm_set,
    limits={},
)

# shm_perm.mode bit set once IPC_RMID was asked while processes are attached.
_SHM_DEST = 0o1000


@dataclass(frozen=True)
class SysVSharedMemoryInfo:
    """What ``SysVSharedMemory.info()`` reports (shmctl IPC_STAT).

    Times are seconds since the epoch, 0 when it never happened.
    ``key`` becomes 0 (IPC_PRIVATE) once the segment is marked for removal.
    """

    id: int
    key: int
    size: int
    attach_count: int
    creator_pid: int
    last_pid: int
    permissions: int
    uid: int
    gid: int
    creator_uid: int
    creator_gid: int
    attach_time: int
    detach_time: int
    change_time: int
    marked_for_removal: bool


def _stat(shm_id: int, what: object, *, gone: int = errno.EIDRM) -> SysVSharedMemoryInfo:
    try:
        status = _native.sysv_shm_stat(shm_id)
    except OSError as error:
        raise _SEGMENTS.error(error, what, gone=gone) from None
    key, uid, gid, cuid, cgid, mode, size, atime, dtime, ctime, cpid, lpid, nattch = status
    return SysVSharedMemoryInfo(
        id=shm_id,
        key=key,
        size=size,
        attach_count=nattch,
        creator_pid=cpid,
        last_pid=lpid,
        permissions=mode & 0o777,
        uid=uid,
        gid=gid,
        creator_uid=cuid,
        creator_gid=cgid,
        attach_time=atime,
        detach_time=dtime,
        change_time=ctime,
        marked_for_removal=bool(mode & _SHM_DEST),
    )


def exists(key: int) -> bool:
    """True if a System V shared memory segment has the key ``key``."""
    return _SEGMENTS.exists(check_open_key(key))


def list_ids() -> list[int]:
    """The ids of every System V shared memory segment on the system, sorted."""
    return sorted(row["shmid"] for row in read_table("shm"))


def unlink(key: int) -> None:
    """Remove the segment with the key ``key`` (IPC_RMID).

    It disappears once the last attached process detaches; its key is free at once.

    Raises:
        ResourceNotFoundError: no segment has this key.
        PermissionDeniedError: not allowed to remove it.
    """
    key = check_open_key(key)
    _SEGMENTS.remove(_SEGMENTS.find(key), _SEGMENTS.describe(key))


class SysVSharedMemory(MemoryBase):
    """An attached System V shared memory segment; ``buf`` is the memory.

    ``as_array(dtype, shape, offset=0)`` gives a zero-copy NumPy view of it.
    Made by :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`.
    """

    kind = KIND
    _factories = ("create", "open", "open_or_create", "open_id")

    def __init__(self, shm_id: int, key: int, attachment: _native.SysVAttachment) -> None:
        """Use :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`."""
        self.id = shm_id
        self.key = key
        self.read_only = attachment.read_only
        self._set_mapping(attachment)
        self._opened(f"{_SEGMENTS.describe(key)} (id {shm_id})")

    @classmethod
    def _attach(cls, shm_id: int, key: int, read_only: bool) -> SysVSharedMemory:
        try:
            attachment = _native.sysv_shm_attach(shm_id, read_only)
        except OSError as error:
            raise _SEGMENTS.error(error, f"{_SEGMENTS.describe(key)} (id {shm_id})") from None
        return cls._make(shm_id, key, attachment)

    @classmethod
    @all_or_nothing
    def create(
        cls,
        key: int,
        size: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SysVSharedMemory:
        """Create a segment of ``size`` bytes (zero-filled) with ``key`` and attach it.

        ``key`` 0 (IPC_PRIVATE) always creates a new segment, found again by
        ``.id``. The segment has exactly ``permissions`` and, if given, belongs
        to ``group`` (a gid or a group name). If anything fails after the
        segment exists (attaching, a signal), it is removed before the error
        propagates.

        Raises:
            ResourceExistsError: a segment with ``key`` exists already.
            ResourceLimitError: ``size`` is beyond SHMMAX, or SHMALL/SHMMNI is reached.
            ValueError: ``permissions`` let every user write, without
                ``allow_world_writable=True``.
        """
        key = check_sysv_key(key)
        check_int(size, "size", minimum=1)
        permissions = check_permissions(
            permissions, allow_world_writable=allow_world_writable, maximum=0o777
        )
        gid = check_group(group)
        return _SEGMENTS.create(
            key,
            permissions,
            gid,
            lambda mode, created: _native.sysv_shm_create(key, size, mode, created),
            lambda shm_id: cls._attach(shm_id, key, False),
            {errno.EINVAL: "SHMMIN/SHMMAX", errno.ENOSPC: "SHMMNI or SHMALL"},
        )

    @classmethod
    @all_or_nothing
    def open(cls, key: int, *, read_only: bool = False) -> SysVSharedMemory:
        """Attach the existing segment with ``key`` (read-only if asked).

        Raises:
            ResourceNotFoundError: no segment has this key.
            PermissionDeniedError: its permissions forbid this access.
        """
        key = check_open_key(key)
        if not isinstance(read_only, bool):
            raise TypeError("read_only must be a bool")
        return cls._attach(_SEGMENTS.find(key), key, read_only)

    @classmethod
    @all_or_nothing
    def open_id(cls, shm_id: int, *, read_only: bool = False) -> SysVSharedMemory:
        """Attach the segment whose id is ``shm_id`` (how IPC_PRIVATE segments are shared).

        Linux attaches a segment already marked for removal too, while it lives.

        Raises:
            ResourceNotFoundError: no segment has this id (or it was removed).
            PermissionDeniedError: its permissions forbid this access.
        """
        shm_id = check_id(shm_id, "shm_id")
        if not isinstance(read_only, bool):
            raise TypeError("read_only must be a bool")
        key = _stat(shm_id, f"id {shm_id}", gone=errno.ENOENT).key
        return cls._attach(shm_id, key, read_only)

    @classmethod
    @all_or_nothing
    def open_or_create(
        cls,
        key: int,
        size: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SysVSharedMemory:
        """Attach the segment with ``key`` if it exists, else create it (as :meth:`create`).

        An existing segment keeps its own size.

        Raises:
            PermissionDeniedError: the existing segment's permissions forbid writing.
            ResourceLimitError: creating it hit a limit (SHMMAX, SHMALL, SHMMNI).
        """
        key = check_open_key(key)
        check_int(size, "size", minimum=1)
        check_permissions(permissions, allow_world_writable=allow_world_writable, maximum=0o777)
        check_group(group)
        return open_or_create(
            lambda: cls.create(
                key,
                size,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            lambda: cls.open(key),
        )

    def info(self) -> SysVSharedMemoryInfo:
        """Size, attach count, pids, owner, permissions and times (IPC_STAT).

        Raises:
            ResourceNotFoundError: the segment is gone (removed and fully detached
                is impossible while we are attached, so this means a bad id).
        """
        self._check_open()
        return _stat(self.id, self._name)

    def unlink(self) -> None:
        """Mark the segment for removal (IPC_RMID); it goes when the last process detaches.

        Its key is free for a new segment at once; processes attached now
        (this one included) keep using the memory until they close.

        Raises:
            ResourceNotFoundError: already removed by id (not just marked).
            PermissionDeniedError: not allowed to remove it.
        """
        self._check_open()
        _SEGMENTS.remove(self.id, self._name)
