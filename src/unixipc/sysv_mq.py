"""System V message queues: typed messages in a kernel queue found by a key.

Persistence: kernel. A queue and its messages live until ``unlink()`` (IPC_RMID)
or a reboot, even when no process uses it.

Portability: System V IPC (msgget, msgsnd, msgrcv, msgctl), on every UNIX;
``except_type`` (MSG_EXCEPT) and ``list_ids()`` are Linux-only.

Every message has a type, a positive integer. A receiver asks for type 0 (the
oldest message), a type > 0 (the oldest of that type, or with ``except_type`` of
any other type) or a type < 0 (the oldest of the lowest type <= |type|): the
classic way to multiplex clients over one queue (type = client id). The kernel
has no timed msgsnd/msgrcv; unixipc gives them real timeouts by interrupting
the sleeping call with a per-thread timer signal at the deadline (no polling:
the waiting process uses no CPU).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _native
from ._names import (
    check_bytes_like,
    check_group,
    check_int,
    check_permissions,
    check_sysv_key,
)
from ._queue import QueueBase, native_method, nbytes, plain_timeout, writable_view
from ._resource import all_or_nothing, open_or_create
from ._sysv import IPC_PRIVATE, SysVKind, check_open_key, format_key, public_key
from .errors import (
    IPCError,
    MessageTooLarge,
    PermissionDeniedError,
    UnsupportedFeature,
    from_os_error,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = (
    "SysVMessage",
    "SysVMessageQueue",
    "SysVMessageQueueInfo",
    "exists",
    "list_ids",
    "unlink",
)

KIND = "System V message queue"

_LONG_MAX = 2 ** (8 * struct.calcsize("l") - 1) - 1  # message types are C longs
_ULONG_MAX = 2 ** (8 * struct.calcsize("L")) - 1  # max_bytes is a C unsigned long
_MSG_EXCEPT = _native.MSG_EXCEPT


class SysVMessage(NamedTuple):
    """A message received from a System V queue."""

    data: bytes
    type: int


@dataclass(frozen=True)
class SysVMessageQueueInfo:
    """What ``SysVMessageQueue.info()`` reports (IPC_STAT). ``key`` is in unsigned
    32-bit form (as ``ipcs`` shows it). Times are seconds since the epoch, 0 for
    never."""

    key: int
    id: int
    permissions: int
    uid: int
    gid: int
    creator_uid: int
    creator_gid: int
    current_messages: int
    current_bytes: int
    max_bytes: int
    last_send_pid: int
    last_receive_pid: int
    last_send_time: int
    last_receive_time: int
    last_change_time: int


def _kernel_limit(name: str, default: int) -> int:
    try:
        with open(f"/proc/sys/kernel/{name}") as value:
            return int(value.read())
    except (OSError, ValueError):
        return default


def _check_sysv_permissions(permissions: object, allow_world_writable: bool = True) -> int:
    return check_permissions(permissions, allow_world_writable=allow_world_writable, maximum=0o777)


def _check_send_type(value: object) -> int:
    number = check_int(value, "type", minimum=1)
    if number > _LONG_MAX:
        raise ValueError(f"type must be <= {_LONG_MAX}, got {number}")
    return int(number)


def _check_receive_type(value: object) -> int:
    number = check_int(value, "type")
    if not -_LONG_MAX <= number <= _LONG_MAX:
        raise ValueError(f"type must be between {-_LONG_MAX} and {_LONG_MAX}, got {number}")
    return int(number)


def _check_receive_flags(message_type: int, truncate: object, except_type: object) -> None:
    if not isinstance(truncate, bool) or not isinstance(except_type, bool):
        raise TypeError("truncate and except_type must be bools")
    if except_type:
        if not _MSG_EXCEPT:
            raise UnsupportedFeature("except_type (MSG_EXCEPT) is Linux-only")
        if message_type <= 0:
            raise ValueError(f"except_type needs a type > 0, got {message_type!r}")


def _set_owner(queue_id: int, gid: int, permissions: int) -> None:
    """IPC_SET of the group and mode (the owner and max_bytes stay)."""
    status = _native.msgctl_stat(queue_id)
    _native.msgctl_set(queue_id, status["uid"], gid, permissions, status["max_bytes"])


_QUEUES = SysVKind(
    KIND,
    find=lambda key: _native.msgget(key, 0),
    remove=_native.msgctl_rmid,
    set_owner=_set_owner,
    limits={},
)


def _label(key: int, queue_id: int | None = None) -> str:
    if key != IPC_PRIVATE:
        return format_key(key)
    return "IPC_PRIVATE" if queue_id is None else f"IPC_PRIVATE id {queue_id}"


def _gone(error: OSError) -> OSError:
    """EINVAL from an id means the queue is gone (removed): say EIDRM."""
    return OSError(errno.EIDRM, "") if error.errno == errno.EINVAL else error


# ---- module functions ------------------------------------------------------------


def exists(key: int) -> bool:
    """True if a System V message queue with ``key`` exists (also one we may not open)."""
    return _QUEUES.exists(check_open_key(key))


def unlink(key: int) -> None:
    """Remove the queue with ``key`` now (IPC_RMID); its messages are discarded and
    blocked senders and receivers wake with ResourceNotFoundError.

    Raises:
        ResourceNotFoundError: no queue with ``key``.
        PermissionDeniedError: not its owner or creator.
    """
    key = check_open_key(key)
    _QUEUES.remove(_QUEUES.find(key), format_key(key))


def list_ids() -> list[int]:
    """The ids of every System V message queue in this IPC namespace (from
    /proc/sysvipc/msg), sorted.

    Raises:
        UnsupportedFeature: /proc/sysvipc/msg is missing (not Linux).
    """
    try:
        with open("/proc/sysvipc/msg") as table:
            header = table.readline().split()
            column = header.index("msqid")
            return sorted(int(line.split()[column]) for line in table if line.strip())
    except FileNotFoundError:
        raise UnsupportedFeature(
            "listing System V message queues needs Linux's /proc/sysvipc/msg"
        ) from None


# ---- the queue -------------------------------------------------------------------


class SysVMessageQueue(QueueBase, _native.SysVQueueCore):
    """A System V message queue. ``key`` and ``id`` identify it.

    Use :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`.
    There is no handle to release: ``close()`` only marks this object unusable;
    the queue lives on until ``unlink()``. Pickling sends the id (for spawned
    children), which works for ``IPC_PRIVATE`` queues too.
    """

    kind = KIND
    _factories = ("create", "open", "open_or_create", "open_id")

    def __init__(self, key: int, queue_id: int) -> None:
        """Use :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`."""
        self._key = public_key(key)
        self._queue_id = queue_id
        name = _label(key, queue_id)
        try:
            self._adopt(queue_id, name, SysVMessage)
        except OSError as error:
            raise from_os_error(_gone(error), KIND, name) from None

    @classmethod
    @all_or_nothing
    def create(
        cls,
        key: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SysVMessageQueue:
        """Create a queue with ``key`` (``IPC_PRIVATE``: always a new one).

        The queue is never more open than ``permissions``: it is created
        owner-only, then given ``group`` (a gid or a group name; default: the
        creator's group) and ``permissions`` (IPC_SET). Permissions that let
        every local user write (0o002) are refused unless
        ``allow_world_writable=True``. If anything fails once the queue exists
        (even a KeyboardInterrupt), it is removed before the error propagates.

        Raises:
            ResourceExistsError: a queue with ``key`` exists already.
            ResourceLimitError: the system's queue limit (kernel.msgmni) is reached.
            ValueError: a negative ``key`` (keys are unsigned 32-bit numbers,
                as ``ftok`` returns them), world-writable ``permissions``
                without ``allow_world_writable``, or another bad argument.
        """
        key = check_sysv_key(key)
        permissions = _check_sysv_permissions(permissions, allow_world_writable)
        gid = check_group(group)

        def make(mode: int, created: list[int]) -> None:
            _native.msgget(key, _native.IPC_CREAT | _native.IPC_EXCL | mode, _label(key), created)

        return _QUEUES.create(
            key,
            permissions,
            gid,
            make,
            lambda queue_id: cls._make(key, queue_id),
            {errno.ENOSPC: "kernel.msgmni queues on the system"},
        )

    @classmethod
    def open(cls, key: int) -> SysVMessageQueue:
        """Open the existing queue with ``key``.

        Raises:
            ResourceNotFoundError: no queue with ``key``.
            PermissionDeniedError: its permissions forbid access.
        """
        key = check_open_key(key)
        return cls._make(key, _QUEUES.find(key))

    @classmethod
    def open_or_create(
        cls,
        key: int,
        *,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> SysVMessageQueue:
        """Open the queue with ``key``, creating it (as :meth:`create` does) if
        there is none.

        Raises:
            ResourceLimitError: creating it hit the system's queue limit.
            PermissionDeniedError: the existing queue's permissions forbid access.
        """
        key = check_open_key(key)
        _check_sysv_permissions(permissions, allow_world_writable)
        return open_or_create(
            lambda: cls.create(
                key, permissions=permissions, group=group, allow_world_writable=allow_world_writable
            ),
            lambda: cls.open(key),
        )

    @classmethod
    def open_id(cls, queue_id: int) -> SysVMessageQueue:
        """Use the existing queue whose id is ``queue_id`` (how ``IPC_PRIVATE``
        queues are shared).

        Raises:
            ResourceNotFoundError: no queue with that id.
            PermissionDeniedError: its permissions forbid reading its status.
        """
        check_int(queue_id, "queue_id", minimum=0)
        if queue_id >= 2**31:
            raise ValueError(f"queue_id must be < 2**31, got {queue_id}")
        try:
            key = _native.msgctl_stat(queue_id, f"id {queue_id}")["key"]
        except OSError as error:
            code = errno.ENOENT if error.errno in (errno.EINVAL, errno.EIDRM) else error.errno
            raise from_os_error(OSError(code, ""), KIND, f"id {queue_id}") from None
        return cls._make(key, queue_id)

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        self._check_open()
        return (type(self).open_id, (self._queue_id,))

    @property
    def key(self) -> int:
        """The queue's key in unsigned 32-bit form (``IPC_PRIVATE``, 0, for a
        private queue)."""
        return self._key

    @property
    def id(self) -> int:
        """The queue's id, which every process uses for it once it is found."""
        return self._queue_id

    # -- messages --

    @native_method(_native.SysVQueueCore.send)
    def send(self, message: Buffer, /, *, type: int = 1, timeout: float | None = None) -> None:
        """Put ``message`` (any bytes-like object) on the queue as ``type`` (> 0).

        Blocks while the queue holds its ``max_bytes``: ``timeout=None`` (or
        ``math.inf``) waits, ``0`` tries once, a positive number of seconds
        waits at most that long, measured on the monotonic clock.

        Raises:
            MessageTooLarge: larger than the kernel's msgmax or the queue's
                ``max_bytes`` (nothing is sent; msgsnd would wait forever).
            WouldBlock: ``timeout=0`` and the queue is full.
            TimeoutExpired: still full when ``timeout`` ran out.
            ResourceNotFoundError: the queue was removed (also while waiting).
        """

    @native_method(_native.SysVQueueCore.receive)
    def receive(  # type: ignore[empty-body]
        self,
        *,
        type: int = 0,
        timeout: float | None = None,
        truncate: bool = False,
        except_type: bool = False,
    ) -> SysVMessage:
        """Take a message: ``SysVMessage(data, type)``.

        ``type`` 0 takes the oldest message; > 0 the oldest of that type (of any
        other type with ``except_type``, MSG_EXCEPT); < 0 the oldest of the lowest
        type <= |type|. A message longer than the kernel's msgmax (possible only if
        msgmax was lowered) is cut to it with ``truncate=True`` (MSG_NOERROR);
        without it, MessageTooLarge is raised and the message stays queued.

        Raises:
            WouldBlock: ``timeout=0`` and no matching message.
            TimeoutExpired: no matching message when ``timeout`` ran out.
            MessageTooLarge: see above.
            ResourceNotFoundError: the queue was removed (also while waiting).
        """

    @native_method(_native.SysVQueueCore.receive_into)
    def receive_into(  # type: ignore[empty-body]
        self,
        buffer: Buffer,
        /,
        *,
        type: int = 0,
        timeout: float | None = None,
        truncate: bool = False,
        except_type: bool = False,
    ) -> tuple[int, int]:
        """Receive the next message into ``buffer``; return ``(nbytes, type)``.

        ``type``, ``timeout`` and ``except_type`` as in ``receive``. A message longer
        than ``buffer`` is cut to fit with ``truncate=True``; without it,
        MessageTooLarge is raised and the message stays queued.

        Raises:
            MessageTooLarge: the message does not fit and ``truncate`` is False.
            WouldBlock: ``timeout=0`` and no matching message.
            TimeoutExpired: no matching message when ``timeout`` ran out.
            ResourceNotFoundError: the queue was removed (also while waiting).
        """

    def _send_slow(self, message: object, *, type: object = 1, timeout: object = None) -> None:
        """``send`` for the calls its C fast path does not take: validate, then send."""
        self._check_open()
        size = nbytes(message)
        message_type = _check_send_type(type)
        seconds = plain_timeout(timeout)
        if size > self._send_limit:
            self._refresh_limits()  # another process may have raised max_bytes
            if size > self._send_limit:
                limit = (
                    f"the kernel's msgmax of {self._limit}"
                    if size > self._limit
                    else f"its max_bytes of {self._send_limit}"
                )
                raise MessageTooLarge(
                    f"{self.describe()}: a message of {size} bytes exceeds {limit}"
                )
        _core_send(self, check_bytes_like(message), type=message_type, timeout=seconds)

    def _receive_slow(
        self,
        *,
        type: object = 0,
        timeout: object = None,
        truncate: object = False,
        except_type: object = False,
    ) -> SysVMessage:
        """``receive`` for the calls its C fast path does not take."""
        self._check_open()
        message_type = _check_receive_type(type)
        seconds = plain_timeout(timeout)
        _check_receive_flags(message_type, truncate, except_type)
        return _core_receive(
            self,
            type=message_type,
            timeout=seconds,
            truncate=bool(truncate),
            except_type=bool(except_type),
        )

    def _receive_into_slow(
        self,
        buffer: object,
        *,
        type: object = 0,
        timeout: object = None,
        truncate: object = False,
        except_type: object = False,
    ) -> tuple[int, int]:
        """``receive_into`` for the calls its C fast path does not take."""
        self._check_open()
        message_type = _check_receive_type(type)
        seconds = plain_timeout(timeout)
        _check_receive_flags(message_type, truncate, except_type)
        view = writable_view(buffer)
        return _core_receive_into(
            self,
            view,
            type=message_type,
            timeout=seconds,
            truncate=bool(truncate),
            except_type=bool(except_type),
        )

    def _error(
        self, error: OSError, what: str, timeout: object, size: int | None = None
    ) -> IPCError:
        """The exception for a failed send or receive."""
        self._check_open()
        waited = self._wait_error(error, what, timeout)
        if waited is not None:
            return waited
        if error.errno == errno.E2BIG:
            return MessageTooLarge(
                f"{self.describe()}: the next matching message is larger than {size} bytes; "
                "it stays queued (truncate=True takes it cut to fit)"
            )
        return from_os_error(_gone(error), KIND, self._label)

    # -- control --

    def _stat(self) -> dict[str, int]:
        self._check_open()
        try:
            return _native.msgctl_stat(self._queue_id, self._label)
        except OSError as error:
            raise from_os_error(_gone(error), KIND, self._label) from None

    def info(self) -> SysVMessageQueueInfo:
        """The queue's status (IPC_STAT): owner, permissions, counts, limits, times.

        Raises:
            ResourceNotFoundError: the queue was removed.
        """
        status = self._stat()
        return SysVMessageQueueInfo(
            key=status["key"],
            id=self._queue_id,
            permissions=status["mode"] & 0o777,
            uid=status["uid"],
            gid=status["gid"],
            creator_uid=status["creator_uid"],
            creator_gid=status["creator_gid"],
            current_messages=status["current_messages"],
            current_bytes=status["current_bytes"],
            max_bytes=status["max_bytes"],
            last_send_pid=status["last_send_pid"],
            last_receive_pid=status["last_receive_pid"],
            last_send_time=status["last_send_time"],
            last_receive_time=status["last_receive_time"],
            last_change_time=status["last_change_time"],
        )

    def _set(
        self,
        *,
        permissions: int | None = None,
        gid: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        """IPC_SET: change what is given, keep the rest."""
        status = self._stat()
        mode = status["mode"] & 0o777 if permissions is None else permissions
        new_gid = status["gid"] if gid is None else gid
        new_max = status["max_bytes"] if max_bytes is None else max_bytes
        try:
            _native.msgctl_set(self._queue_id, status["uid"], new_gid, mode, new_max, self._label)
        except OSError as error:
            limit = _kernel_limit("msgmnb", 16384)
            if error.errno == errno.EPERM and new_max > max(limit, status["max_bytes"]):
                raise PermissionDeniedError(
                    error.errno,
                    f"{self.describe()}: raising max_bytes to {new_max}, above the "
                    f"kernel's msgmnb of {limit}, needs CAP_SYS_RESOURCE",
                    self._label,
                ) from None
            raise from_os_error(_gone(error), KIND, self._label) from None
        self._refresh_limits()

    def set_permissions(self, permissions: int, *, allow_world_writable: bool = False) -> None:
        """Change the permission bits (IPC_SET; owner or creator only).

        Raises:
            PermissionDeniedError: not the owner or creator.
            ResourceNotFoundError: the queue was removed.
            ValueError: world-writable without ``allow_world_writable=True``.
        """
        self._set(permissions=_check_sysv_permissions(permissions, allow_world_writable))

    def set_max_bytes(self, max_bytes: int) -> None:
        """Change how many bytes of messages the queue may hold (IPC_SET).

        Anyone allowed to IPC_SET may lower it or raise it up to the kernel's
        msgmnb; going above msgmnb needs CAP_SYS_RESOURCE.

        Raises:
            PermissionDeniedError: above msgmnb without CAP_SYS_RESOURCE, or not
                the owner or creator.
            ResourceNotFoundError: the queue was removed.
            ValueError: ``max_bytes`` is not between 1 and the largest C
                unsigned long.
        """
        check_int(max_bytes, "max_bytes", minimum=1)
        if max_bytes > _ULONG_MAX:
            raise ValueError(f"max_bytes must be at most {_ULONG_MAX}, got {max_bytes}")
        self._set(max_bytes=max_bytes)

    def unlink(self) -> None:
        """Remove the queue now (IPC_RMID): its messages are discarded, and senders
        and receivers blocked on it in any process wake with ResourceNotFoundError.

        Raises:
            ResourceNotFoundError: already removed.
            PermissionDeniedError: not the owner or creator.
        """
        self._check_open()
        try:
            _native.msgctl_rmid(self._queue_id, self._label)
        except OSError as error:
            raise from_os_error(_gone(error), KIND, self._label) from None


# The C methods that the slow paths call with validated arguments.
_core_send = _native.SysVQueueCore._send_plain
_core_receive = _native.SysVQueueCore._receive_plain
_core_receive_into = _native.SysVQueueCore._receive_into_plain
