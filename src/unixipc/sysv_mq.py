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
from typing import Any, NamedTuple

from . import _native
from ._deadline import Deadline, check_timeout
from ._names import check_bytes_like, check_int, check_permissions, check_sysv_key
from ._resource import Resource
from ._sysv import IPC_PRIVATE, format_key
from .errors import (
    IPCError,
    MessageTooLarge,
    PermissionDeniedError,
    UnsupportedFeature,
    WouldBlock,
    from_os_error,
)

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
_NO_DEADLINE = -1
# The hot calls, bound once.
_msgsnd = _native.msgsnd
_msgrcv = _native.msgrcv
_IPC_NOWAIT = _native.IPC_NOWAIT
_MSG_NOERROR = _native.MSG_NOERROR
_MSG_EXCEPT = _native.MSG_EXCEPT


class SysVMessage(NamedTuple):
    """A message received from a System V queue."""

    data: bytes
    type: int


@dataclass(frozen=True)
class SysVMessageQueueInfo:
    """What ``SysVMessageQueue.info()`` reports (IPC_STAT). Times are seconds since
    the epoch, 0 for never."""

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


def _check_key_to_open(key: object) -> int:
    value = check_sysv_key(key)
    if value == IPC_PRIVATE:
        raise ValueError("IPC_PRIVATE names no existing queue; use SysVMessageQueue.open_id(id)")
    return value


def _check_sysv_permissions(permissions: object) -> int:
    bits = check_permissions(permissions)
    if bits > 0o777:
        raise ValueError(f"permissions must be between 0 and 0o777 for System V, got {oct(bits)}")
    return bits


def _timeout_flags(timeout: float) -> tuple[int, int]:
    """(flags, deadline_ns) for a timeout that is not None."""
    seconds = check_timeout(timeout)
    if seconds == 0:
        return _IPC_NOWAIT, _NO_DEADLINE
    return 0, Deadline(seconds).as_ns()


def _check_send_type(value: object) -> int:
    number = check_int(value, "type", minimum=1)
    if number > _LONG_MAX:
        raise ValueError(f"type must be <= {_LONG_MAX}, got {number}")
    return number


def _check_receive_type(value: object) -> int:
    number = check_int(value, "type")
    if not -_LONG_MAX <= number <= _LONG_MAX:
        raise ValueError(f"type must be between {-_LONG_MAX} and {_LONG_MAX}, got {number}")
    return number


def _nbytes(message: object) -> int:
    return check_bytes_like(message, "message").nbytes


# ---- module functions ------------------------------------------------------------


def exists(key: int) -> bool:
    """True if a System V message queue with ``key`` exists."""
    key = _check_key_to_open(key)
    try:
        _native.msgget(key, 0)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return False
        if error.errno == errno.EACCES:
            return True
        raise from_os_error(error, KIND, format_key(key)) from None
    return True


def unlink(key: int) -> None:
    """Remove the queue with ``key`` now (IPC_RMID); its messages are discarded and
    blocked senders and receivers wake with ResourceNotFoundError.

    Raises:
        ResourceNotFoundError: no queue with ``key``.
        PermissionDeniedError: not its owner or creator.
    """
    key = _check_key_to_open(key)
    name = format_key(key)
    try:
        _native.msgctl_rmid(_native.msgget(key, 0, name), name)
    except OSError as error:
        raise from_os_error(error, KIND, name) from None


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


class SysVMessageQueue(Resource, _native.SysVQueueCore):
    """A System V message queue. ``key`` and ``id`` identify it.

    Use :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`.
    There is no handle to release: ``close()`` only marks this object unusable;
    the queue lives on until ``unlink()``. Pickling sends the id (for spawned
    children), which works for ``IPC_PRIVATE`` queues too.

    ``send``, ``receive`` and ``receive_into`` are C methods (of the private base
    ``_native.SysVQueueCore``) for well-formed calls; anything unusual goes to
    the Python methods below them, which validate and explain.
    """

    kind = KIND

    def __init__(self, key: int, queue_id: int) -> None:
        """Use :meth:`create`, :meth:`open`, :meth:`open_or_create` or :meth:`open_id`."""
        self._key = key
        self._id = queue_id
        self._queue_id = queue_id
        # The largest message the kernel accepts (msgsnd refuses larger ones),
        # which is also the size receive() makes room for.
        self._max_size = _kernel_limit("msgmax", 8192)
        name = format_key(key) if key != IPC_PRIVATE else f"IPC_PRIVATE id {queue_id}"
        self._label = name
        self._result_type = SysVMessage
        self._opened(name)
        # A message larger than the queue's max_bytes would make msgsnd wait
        # forever: send() refuses it, against this value refreshed when it says no.
        self._send_limit = self._current_send_limit()

    def _current_send_limit(self) -> int:
        try:
            max_bytes = _native.msgctl_stat(self._id)["max_bytes"]
        except OSError:
            return self._max_size  # not allowed to read it (or gone): msgmax only
        return min(self._max_size, max_bytes)

    @classmethod
    def _get(cls, key: int, flags: int) -> SysVMessageQueue:
        name = format_key(key) if key != IPC_PRIVATE else "IPC_PRIVATE"
        try:
            queue_id = _native.msgget(key, flags, name)
        except OSError as error:
            raise from_os_error(error, KIND, name) from None
        return cls(key, queue_id)

    @classmethod
    def create(cls, key: int, *, permissions: int = 0o600) -> SysVMessageQueue:
        """Create a queue with ``key`` (``IPC_PRIVATE``: always a new one).

        Raises:
            ResourceExistsError: a queue with ``key`` exists already.
            ResourceLimitError: the system's queue limit (kernel.msgmni) is reached.
        """
        key = check_sysv_key(key)
        permissions = _check_sysv_permissions(permissions)
        return cls._get(key, _native.IPC_CREAT | _native.IPC_EXCL | permissions)

    @classmethod
    def open(cls, key: int) -> SysVMessageQueue:
        """Open the existing queue with ``key``.

        Raises:
            ResourceNotFoundError: no queue with ``key``.
            PermissionDeniedError: its permissions forbid access.
        """
        return cls._get(_check_key_to_open(key), 0)

    @classmethod
    def open_or_create(cls, key: int, *, permissions: int = 0o600) -> SysVMessageQueue:
        """Open the queue with ``key``, creating it if there is none.

        Raises:
            ResourceLimitError: creating it hit the system's queue limit.
            PermissionDeniedError: the existing queue's permissions forbid access.
        """
        key = _check_key_to_open(key)
        permissions = _check_sysv_permissions(permissions)
        return cls._get(key, _native.IPC_CREAT | permissions)

    @classmethod
    def open_id(cls, queue_id: int) -> SysVMessageQueue:
        """Use the existing queue whose id is ``queue_id`` (how ``IPC_PRIVATE``
        queues are shared).

        Raises:
            ResourceNotFoundError: no queue with that id.
            PermissionDeniedError: its permissions forbid reading its status.
        """
        check_int(queue_id, "queue_id", minimum=0)
        try:
            key = _native.msgctl_stat(queue_id, f"id {queue_id}")["key"]
        except OSError as error:
            code = errno.ENOENT if error.errno in (errno.EINVAL, errno.EIDRM) else error.errno
            raise from_os_error(OSError(code, ""), KIND, f"id {queue_id}") from None
        return cls(key, queue_id)

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        self._check_open()
        return (type(self).open_id, (self._id,))

    @property
    def key(self) -> int:
        """The queue's key (``IPC_PRIVATE``, 0, for a private queue)."""
        return self._key

    @property
    def id(self) -> int:
        """The queue's id, which every process uses for it once it is found."""
        return self._queue_id

    # -- messages --

    def _send_slow(self, message: object, *, type: int = 1, timeout: float | None = None) -> None:
        """``send`` for the calls its C fast path does not take."""
        # One C call checks the type, compares the length with the limit
        # (returning it, unsent, if larger) and sends; when it refuses an
        # argument, the validators below raise the error naming it.
        flags, deadline = (0, -1) if timeout is None else _timeout_flags(timeout)
        try:
            refused = _msgsnd(
                self._id, message, type, flags, deadline, self._label, self._send_limit
            )
        except OSError as error:
            raise self._error(error, "send to", timeout, _nbytes(message)) from None
        except (TypeError, ValueError, OverflowError, BufferError):
            _check_send_type(type)  # raise the error naming the argument
            _nbytes(message)
            raise
        if refused is not None:
            self._check_open()
            self._send_limit = self._current_send_limit()
            if refused <= self._send_limit:  # max_bytes was raised meanwhile
                return self._send_slow(message, type=type, timeout=timeout)
            limit = (
                f"the kernel's msgmax of {self._max_size}"
                if refused > self._max_size
                else f"its max_bytes of {self._send_limit}"
            )
            raise MessageTooLarge(
                f"{self.describe()}: a message of {refused} bytes exceeds {limit}"
            )

    def _receive_slow(
        self,
        *,
        type: int = 0,
        timeout: float | None = None,
        truncate: bool = False,
        except_type: bool = False,
    ) -> SysVMessage:
        """``receive`` for the calls its C fast path does not take."""
        flags, deadline = (0, -1) if timeout is None else _timeout_flags(timeout)
        flags |= self._receive_flags(type, truncate, except_type)
        try:
            return _msgrcv(
                self._id, self._max_size, type, flags, deadline, self._label, SysVMessage
            )
        except OSError as error:
            raise self._error(error, "receive from", timeout, self._max_size) from None
        except (TypeError, OverflowError):
            _check_receive_type(type)  # raise the error naming the argument
            raise

    def _receive_into_slow(
        self,
        buffer: object,
        *,
        type: int = 0,
        timeout: float | None = None,
        truncate: bool = False,
        except_type: bool = False,
    ) -> tuple[int, int]:
        """``receive_into`` for the calls its C fast path does not take."""
        flags, deadline = (0, -1) if timeout is None else _timeout_flags(timeout)
        flags |= self._receive_flags(type, truncate, except_type)
        try:
            return _native.msgrcv_into(self._id, buffer, type, flags, deadline, self._label)  # type: ignore[arg-type]
        except (TypeError, OverflowError, BufferError):
            _check_receive_type(type)
            raise TypeError(
                "buffer must be a writable, contiguous bytes-like object, "
                f"not {buffer.__class__.__name__}"
            ) from None
        except OSError as error:
            raise self._error(error, "receive from", timeout, _nbytes(buffer)) from None

    @staticmethod
    def _receive_flags(message_type: object, truncate: object, except_type: object) -> int:
        if not isinstance(truncate, bool) or not isinstance(except_type, bool):
            raise TypeError("truncate and except_type must be bools")
        flags = _MSG_NOERROR if truncate else 0
        if except_type:
            if not _MSG_EXCEPT:
                raise UnsupportedFeature("except_type (MSG_EXCEPT) is Linux-only")
            if not isinstance(message_type, int) or message_type <= 0:
                raise ValueError(f"except_type needs a type > 0, got {message_type!r}")
            flags |= _MSG_EXCEPT
        return flags

    def _error(
        self, error: OSError, what: str, timeout: float | None, size: int | None = None
    ) -> IPCError:
        """The exception for a failed send or receive (the slow path)."""
        self._check_open()
        code = error.errno
        where = f"{what} {self.describe()}"
        if code == errno.ETIMEDOUT:
            return Deadline(timeout).error(where)
        if code in (errno.EAGAIN, errno.ENOMSG):
            return WouldBlock(f"{where} would block")
        if code == errno.E2BIG:
            return MessageTooLarge(
                f"{self.describe()}: the next matching message is larger than {size} bytes; "
                "it stays queued (truncate=True takes it cut to fit)"
            )
        if code == errno.EINVAL:  # the id names no queue any more
            return from_os_error(OSError(errno.EIDRM, ""), KIND, self._label)
        return from_os_error(error, KIND, self._label)

    # -- control --

    def _stat(self) -> dict[str, int]:
        self._check_open()
        try:
            return _native.msgctl_stat(self._id, self._label)
        except OSError as error:
            if error.errno == errno.EINVAL:  # the id no longer names a queue
                error = OSError(errno.EIDRM, "")
            raise from_os_error(error, KIND, self._label) from None

    def info(self) -> SysVMessageQueueInfo:
        """The queue's status (IPC_STAT): owner, permissions, counts, limits, times.

        Raises:
            ResourceNotFoundError: the queue was removed.
        """
        status = self._stat()
        return SysVMessageQueueInfo(
            key=status["key"],
            id=self._id,
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

    def _set(self, mode: int, max_bytes: int) -> None:
        status = self._stat()
        try:
            _native.msgctl_set(self._id, status["uid"], status["gid"], mode, max_bytes, self._label)
        except OSError as error:
            limit = _kernel_limit("msgmnb", 16384)
            if error.errno == errno.EPERM and max_bytes > max(limit, status["max_bytes"]):
                raise PermissionDeniedError(
                    error.errno,
                    f"{self.describe()}: raising max_bytes to {max_bytes}, above the "
                    f"kernel's msgmnb of {limit}, needs CAP_SYS_RESOURCE",
                    self._label,
                ) from None
            raise from_os_error(error, KIND, self._label) from None

    def set_permissions(self, permissions: int) -> None:
        """Change the permission bits (IPC_SET; owner or creator only).

        Raises:
            PermissionDeniedError: not the owner or creator.
            ResourceNotFoundError: the queue was removed.
        """
        permissions = _check_sysv_permissions(permissions)
        self._set(permissions, self._stat()["max_bytes"])

    def set_max_bytes(self, max_bytes: int) -> None:
        """Change how many bytes of messages the queue may hold (IPC_SET).

        Anyone allowed to IPC_SET may lower it or raise it up to the kernel's
        msgmnb; going above msgmnb needs CAP_SYS_RESOURCE.

        Raises:
            PermissionDeniedError: above msgmnb without CAP_SYS_RESOURCE, or not
                the owner or creator.
            ResourceNotFoundError: the queue was removed.
        """
        check_int(max_bytes, "max_bytes", minimum=1)
        self._set(self._stat()["mode"] & 0o777, max_bytes)
        self._send_limit = min(self._max_size, max_bytes)

    def unlink(self) -> None:
        """Remove the queue now (IPC_RMID): its messages are discarded, and senders
        and receivers blocked on it in any process wake with ResourceNotFoundError.

        Raises:
            ResourceNotFoundError: already removed.
            PermissionDeniedError: not the owner or creator.
        """
        self._check_open()
        try:
            _native.msgctl_rmid(self._id, self._label)
        except OSError as error:
            if error.errno == errno.EINVAL:
                error = OSError(errno.EIDRM, "")
            raise from_os_error(error, KIND, self._label) from None

    def _release(self) -> None:
        self._id = -1  # msgsnd/msgrcv on -1 fail, and the slow path reports "closed"
