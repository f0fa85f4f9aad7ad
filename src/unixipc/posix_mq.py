"""POSIX message queues: named queues of prioritized messages between processes.

Persistence: kernel. A queue and the messages in it live until ``unlink()`` (or a
reboot), even when no process has it open.

Portability: POSIX (mq_open & co). On Linux the queue's descriptor works with
``select``, ``poll``, ``selectors`` and asyncio (``fileno()``); the queues can be
listed only when the mqueue filesystem is mounted (usually on /dev/mqueue).

Each message has a priority (0 to ``MQ_PRIO_MAX - 1``); the oldest message of the
highest priority is received first. A queue has a fixed capacity
(``max_messages``) and message size (``max_message_size``) chosen at creation,
bounded by the sysctls fs.mqueue.msg_max and fs.mqueue.msgsize_max and by each
user's RLIMIT_MSGQUEUE bytes.

Notification (mq_notify): ``request_notification(callback)`` runs ``callback()`` in
a new Python thread when a message arrives in the empty queue. glibc delivers
the notification on a C thread that never touches Python: it writes a token
into a pipe read by one daemon thread per process, which starts the callback's
thread. Nothing therefore waits for the interpreter or holds its lock at
shutdown; a notification that arrives while the interpreter exits is dropped.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import resource
import signal as _signal
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from typing_extensions import Buffer

from . import _native
from ._names import (
    check_bytes_like,
    check_group,
    check_int,
    check_permissions,
    check_posix_name,
)
from ._permissions import creation_mode, finish
from ._queue import QueueBase, native_method, nbytes, plain_timeout, writable_view
from ._resource import all_or_nothing, on_failure, open_or_create
from .errors import (
    IPCError,
    IPCOSError,
    MessageTooLarge,
    UnsupportedFeature,
    from_os_error,
)

__all__ = (
    "MQ_PRIO_MAX",
    "Message",
    "PosixMessageQueue",
    "PosixMessageQueueInfo",
    "exists",
    "list_names",
    "unlink",
)

KIND = "POSIX message queue"

#: Priorities go from 0 to MQ_PRIO_MAX - 1 (32768 on Linux).
MQ_PRIO_MAX: int = _native.MQ_PRIO_MAX

_SYSCTL_DIR = "/proc/sys/fs/mqueue"


class Message(NamedTuple):
    """A message received from a POSIX queue."""

    data: bytes
    priority: int


@dataclass(frozen=True)
class PosixMessageQueueInfo:
    """What ``PosixMessageQueue.info()`` reports (mq_getattr and fstat)."""

    name: str
    max_messages: int
    max_message_size: int
    current_messages: int
    permissions: int
    uid: int
    gid: int


# ---- module functions ------------------------------------------------------------


def exists(name: str) -> bool:
    """True if a POSIX message queue called ``name`` exists."""
    name = check_posix_name(name)
    try:
        mqd = _native.mq_open(name, os.O_RDONLY, 0, -1, -1)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM):
            return True  # there, but not ours to open
        if error.errno == errno.ENOENT:
            return False
        raise from_os_error(error, KIND, name) from None
    _native.mq_close(mqd)
    return True


def unlink(name: str) -> None:
    """Remove the queue's name; processes that have it open keep using it.

    Raises:
        ResourceNotFoundError: no queue called ``name``.
        PermissionDeniedError: not allowed to remove it.
    """
    name = check_posix_name(name)
    try:
        _native.mq_unlink(name)
    except OSError as error:
        raise from_os_error(error, KIND, name) from None


def _unescape_mount_path(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def mqueue_mount_point() -> str | None:
    """Where the mqueue filesystem is mounted in this mount namespace, or None."""
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 3 and fields[2] == "mqueue":
                    return _unescape_mount_path(fields[1])
    except OSError:
        return None
    return None


def list_names() -> list[str]:
    """The names of every POSIX message queue, sorted (e.g. ``['/jobs']``).

    Raises:
        UnsupportedFeature: the mqueue filesystem is not mounted, so the kernel
            offers no way to list the queues.
    """
    mount_point = mqueue_mount_point()
    if mount_point is None:
        raise UnsupportedFeature(
            "listing POSIX message queues needs the mqueue filesystem, which is not "
            "mounted here; as root: mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue"
        )
    return sorted("/" + entry for entry in os.listdir(mount_point))


# ---- errors ----------------------------------------------------------------------


def _read_sysctl(name: str) -> int | None:
    try:
        with open(f"{_SYSCTL_DIR}/{name}") as value:
            return int(value.read())
    except (OSError, ValueError):
        return None


def _open_error(error: OSError, name: str, attributes: tuple[int, int] | None) -> IPCError:
    """The exception for a failed mq_open; ``attributes`` (max_messages,
    max_message_size) are given when creating."""
    code = error.errno
    limit = None
    creating = attributes is not None
    max_messages, max_message_size = attributes or (0, 0)
    if code == errno.EMFILE:
        soft_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        open_files = len(os.listdir("/proc/self/fd"))
        if creating and (soft_nofile == resource.RLIM_INFINITY or open_files < soft_nofile - 1):
            soft = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
            limit = (
                f"RLIMIT_MSGQUEUE is {soft} bytes for all of this user's message queues; "
                f"this one needs more than {max_messages} x {max_message_size} bytes"
            )
        else:
            limit = f"RLIMIT_NOFILE is {soft_nofile} open descriptors per process"
    elif code == errno.ENFILE:
        limit = "the system-wide limit on open files (fs.file-max) is reached"
    elif code == errno.ENOSPC:
        limit = f"fs.mqueue.queues_max is {_read_sysctl('queues_max')} queues on the system"
    elif code == errno.EINVAL and creating:
        msg_max = _read_sysctl("msg_max")
        msgsize_max = _read_sysctl("msgsize_max")
        if msg_max is not None and max_messages > msg_max:
            limit = (
                f"fs.mqueue.msg_max ({_SYSCTL_DIR}/msg_max) is {msg_max}; "
                f"max_messages={max_messages} exceeds it"
            )
        elif msgsize_max is not None and max_message_size > msgsize_max:
            limit = (
                f"fs.mqueue.msgsize_max ({_SYSCTL_DIR}/msgsize_max) is {msgsize_max}; "
                f"max_message_size={max_message_size} exceeds it"
            )
    return from_os_error(error, KIND, name, limit=limit)


def _check_priority(priority: object) -> int:
    value = check_int(priority, "priority", minimum=0)
    if value >= MQ_PRIO_MAX:
        raise ValueError(f"priority must be < MQ_PRIO_MAX ({MQ_PRIO_MAX}), got {value}")
    return int(value)


# ---- notification ----------------------------------------------------------------


class _NotificationDispatcher:
    """One per process: a pipe that C notification threads write tokens into, and
    a daemon thread that reads them and starts each callback in its own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._tokens = itertools.count(1)
        self._pipe: tuple[int, int] | None = None

    def add(self, callback: Callable[[], object]) -> tuple[int, int]:
        """Register ``callback``; return (pipe write descriptor, token)."""
        with self._lock:
            if self._pipe is None:
                read_fd, write_fd = os.pipe()  # close-on-exec: a new program has no thread
                mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, [])
                thread = threading.Thread(
                    target=self._run,
                    args=(read_fd, mask),
                    name="unixipc-mq-notifications",
                    daemon=True,
                )
                thread.start()
                self._pipe = (read_fd, write_fd)
            token = next(self._tokens) & 0xFFFFFFFF
            self._callbacks[token] = callback
            return self._pipe[1], token

    def discard(self, token: int) -> None:
        with self._lock:
            self._callbacks.pop(token, None)

    def _run(self, read_fd: int, mask: set[_signal.Signals]) -> None:
        # Our own thread takes no signal, so that one the program blocks in its
        # threads to wait for (signals.wait) never reaches its default action here.
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
        while True:
            try:
                data = os.read(read_fd, 4 * 256)  # each write is one atomic 4-byte token
            except OSError:
                return  # the pipe was closed in a forked child
            if not data:
                return
            for (token,) in struct.iter_unpack("=I", data):
                with self._lock:
                    callback = self._callbacks.pop(token, None)
                if callback is not None:
                    with contextlib.suppress(RuntimeError):  # interpreter shutting down
                        threading.Thread(
                            target=_with_mask,
                            args=(mask, callback),
                            name="unixipc-mq-notify",
                            daemon=True,
                        ).start()

    def forget_after_fork(self) -> None:
        """In a forked child: the registrations belong to the parent; start afresh."""
        self._lock = threading.Lock()
        self._callbacks = {}
        if self._pipe is not None:
            for fd in self._pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipe = None


def _with_mask(mask: set[_signal.Signals], callback: Callable[[], object]) -> None:
    """Run a callback with the signal mask of the thread that first registered one."""
    _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
    callback()


_dispatcher = _NotificationDispatcher()
os.register_at_fork(after_in_child=_dispatcher.forget_after_fork)


# ---- the queue -------------------------------------------------------------------


class PosixMessageQueue(QueueBase, _native.PosixQueueCore):
    """An open POSIX message queue.

    Use :meth:`create`, :meth:`open` or :meth:`open_or_create`. ``max_messages``
    and ``max_message_size`` are the queue's attributes, read when it was opened.
    """

    kind = KIND
    _factories = ("create", "open", "open_or_create")

    def __init__(self, name: str, mqd: int, readable: bool, writable: bool) -> None:
        """Use :meth:`create`, :meth:`open` or :meth:`open_or_create`.

        Takes ownership of ``mqd``: it is closed if this fails.
        """
        self.name = name
        self.readable = readable
        self.writable = writable
        self._notify_token: int | None = None
        self._notify_signal = False
        try:
            self._adopt(mqd, name, Message)
            try:
                _, max_messages, max_message_size, _ = _native.mq_getattr(mqd)
            except BaseException:
                self.close()
                raise
        except OSError as error:
            raise from_os_error(error, KIND, name) from None
        self.max_messages: int = max_messages
        self.max_message_size: int = max_message_size

    # -- opening --

    @classmethod
    @all_or_nothing
    def create(
        cls,
        name: str,
        *,
        max_messages: int = 10,
        max_message_size: int = 8192,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> PosixMessageQueue:
        """Create the queue ``name`` and open it for reading and writing.

        The queue gets exactly ``permissions``, whatever the umask, and is never
        more open than that: it is created owner-only, given ``group`` (a gid or
        a group name; default: the creator's group), then ``permissions``.
        Permissions that let every local user write (0o002) are refused unless
        ``allow_world_writable=True``. If anything fails once the queue exists
        (even a KeyboardInterrupt), it is removed before the error propagates.

        Raises:
            ResourceExistsError: ``name`` exists already.
            ResourceLimitError: a kernel limit forbids it: the sysctls
                fs.mqueue.msg_max / msgsize_max (attributes too large), the
                user's RLIMIT_MSGQUEUE bytes, or fs.mqueue.queues_max; the
                message names the limit and its value.
            PermissionDeniedError: not allowed to give it ``group``.
            ValueError: world-writable ``permissions`` without
                ``allow_world_writable``, or another bad argument.
        """
        name = check_posix_name(name)
        check_int(max_messages, "max_messages", minimum=1)
        check_int(max_message_size, "max_message_size", minimum=1)
        permissions = check_permissions(
            permissions, allow_world_writable=allow_world_writable, maximum=0o777
        )
        gid = check_group(group)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        created: list[int] = []  # the descriptor, noted by the C as mq_open returns
        # If this creation fails from here on, the name goes (if it was made); the
        # queue object, journaled as it opens, releases its descriptor.
        on_failure(lambda: _native.mq_unlink(name) if created else None)
        try:
            mqd = _native.mq_open(
                name, flags, creation_mode(permissions), max_messages, max_message_size, created
            )
        except OSError as error:
            raise _open_error(error, name, (max_messages, max_message_size)) from None
        queue = cls._make(name, mqd, readable=True, writable=True)
        try:
            finish(mqd, permissions, gid)
        except OSError as error:
            raise from_os_error(error, KIND, name) from None
        return queue

    @classmethod
    def open(cls, name: str, *, read: bool = True, write: bool = True) -> PosixMessageQueue:
        """Open the existing queue ``name`` for reading, writing or both.

        Raises:
            ResourceNotFoundError: no queue called ``name``.
            PermissionDeniedError: its permissions forbid this access.
        """
        name = check_posix_name(name)
        if not isinstance(read, bool) or not isinstance(write, bool):
            raise TypeError("read and write must be bools")
        if not (read or write):
            raise ValueError("open a queue for reading, writing or both (read or write True)")
        flags = os.O_RDWR if read and write else os.O_RDONLY if read else os.O_WRONLY
        try:
            mqd = _native.mq_open(name, flags, 0, -1, -1)
        except OSError as error:
            raise _open_error(error, name, None) from None
        return cls._make(name, mqd, readable=read, writable=write)

    @classmethod
    def open_or_create(
        cls,
        name: str,
        *,
        max_messages: int = 10,
        max_message_size: int = 8192,
        permissions: int = 0o600,
        group: int | str | None = None,
        allow_world_writable: bool = False,
    ) -> PosixMessageQueue:
        """Open ``name`` for reading and writing, creating it (as :meth:`create`
        does) if it does not exist.

        An existing queue keeps its own attributes, permissions and group.

        Raises:
            ResourceLimitError: creating it hit a kernel limit (see :meth:`create`).
            PermissionDeniedError: the existing queue's permissions forbid access.
        """
        name = check_posix_name(name)
        check_permissions(permissions, allow_world_writable=allow_world_writable, maximum=0o777)
        return open_or_create(
            lambda: cls.create(
                name,
                max_messages=max_messages,
                max_message_size=max_message_size,
                permissions=permissions,
                group=group,
                allow_world_writable=allow_world_writable,
            ),
            lambda: cls.open(name),
        )

    # -- messages --

    @native_method(_native.PosixQueueCore.send)
    def send(self, message: Buffer, /, *, priority: int = 0, timeout: float | None = None) -> None:
        """Put ``message`` (any bytes-like object) on the queue with ``priority``.

        Blocks while the queue is full: ``timeout=None`` (or ``math.inf``) waits,
        ``0`` tries once, a positive number of seconds waits at most that long,
        measured on the monotonic clock.

        Raises:
            MessageTooLarge: larger than ``max_message_size`` (nothing is sent).
            WouldBlock: ``timeout=0`` and the queue is full.
            TimeoutExpired: still full when ``timeout`` ran out.
            ValueError: ``priority`` is not between 0 and ``MQ_PRIO_MAX - 1``.
        """

    @native_method(_native.PosixQueueCore.receive)
    def receive(self, *, timeout: float | None = None) -> Message:  # type: ignore[empty-body]
        """Take the oldest message of the highest priority: ``Message(data, priority)``.

        Raises:
            WouldBlock: ``timeout=0`` and the queue is empty.
            TimeoutExpired: still empty when ``timeout`` ran out.
        """

    @native_method(_native.PosixQueueCore.receive_into)
    def receive_into(  # type: ignore[empty-body]
        self, buffer: Buffer, /, *, timeout: float | None = None
    ) -> tuple[int, int]:
        """Receive the next message into ``buffer``; return ``(nbytes, priority)``.

        ``buffer`` is a writable bytes-like object of at least ``max_message_size``
        bytes (the kernel requires room for the largest message the queue accepts).

        Raises:
            MessageTooLarge: ``buffer`` is smaller than ``max_message_size`` (no
                message is taken).
            WouldBlock: ``timeout=0`` and the queue is empty.
            TimeoutExpired: still empty when ``timeout`` ran out.
        """

    def _send_slow(self, message: object, *, priority: object = 0, timeout: object = None) -> None:
        """``send`` for the calls its C fast path does not take: validate, then send."""
        self._check_open()
        size = nbytes(message)
        priority = _check_priority(priority)
        seconds = plain_timeout(timeout)
        if size > self._send_limit:
            raise MessageTooLarge(
                f"{self.describe()}: a message of {size} bytes exceeds its "
                f"max_message_size of {self.max_message_size}"
            )
        _core_send(self, check_bytes_like(message), priority=priority, timeout=seconds)

    def _receive_slow(self, *, timeout: object = None) -> Message:
        """``receive`` for the calls its C fast path does not take."""
        self._check_open()
        return _core_receive(self, timeout=plain_timeout(timeout))

    def _receive_into_slow(self, buffer: object, *, timeout: object = None) -> tuple[int, int]:
        """``receive_into`` for the calls its C fast path does not take."""
        self._check_open()
        seconds = plain_timeout(timeout)
        view = writable_view(buffer)
        if view.nbytes < self._limit:
            raise MessageTooLarge(
                f"{self.describe()}: a buffer of {view.nbytes} bytes is smaller than "
                f"its max_message_size of {self.max_message_size}; no message was taken"
            )
        return _core_receive_into(self, view, timeout=seconds)

    def _error(self, error: OSError, what: str, timeout: object) -> IPCError:
        """The exception for a failed send or receive."""
        self._check_open()
        waited = self._wait_error(error, what, timeout)
        if waited is not None:
            return waited
        code = error.errno
        if code == errno.EBADF:
            access = "writing" if what.startswith("send") else "reading"
            return IPCOSError(code, f"{self.describe()} was not opened for {access}", self.name)
        if code == errno.EMSGSIZE:
            return MessageTooLarge(f"{self.describe()}: message too large")
        return from_os_error(error, KIND, self.name)

    # -- the rest --

    def fileno(self) -> int:
        """The queue's descriptor: on Linux it works with select, poll, selectors
        and asyncio (readable when a message waits, writable when there is room)."""
        self._check_open()
        return self._handle

    def info(self) -> PosixMessageQueueInfo:
        """The queue's attributes, current message count, permissions and owner."""
        self._check_open()
        try:
            _, max_messages, max_message_size, current = _native.mq_getattr(self._handle)
            status = os.fstat(self._handle)
        except OSError as error:
            raise from_os_error(error, KIND, self.name) from None
        return PosixMessageQueueInfo(
            self.name,
            max_messages,
            max_message_size,
            current,
            status.st_mode & 0o7777,
            status.st_uid,
            status.st_gid,
        )

    def request_notification(
        self,
        callback: Callable[[], object] | None = None,
        *,
        signal: int | None = None,
        value: int = 0,
    ) -> None:
        """Ask to be told when a message arrives in the empty queue (mq_notify).

        With ``callback``, ``callback()`` runs in a new thread; with ``signal``,
        that signal is sent to this process carrying ``value`` (a C ``int``),
        which a :func:`unixipc.signals.wait` or ``SignalReceiver`` gets as
        ``SignalInfo.value`` (code ``SI_MESGQ``, with the sender's pid and uid);
        with neither, a request made through this handle is cancelled. As in
        POSIX the request is one-shot (request again to re-arm, e.g. from the
        callback), only one process at a time can hold one, and none fires while
        a process is blocked in ``receive``. A new request through this handle
        replaces its earlier one.

        Raises:
            IPCOSError: another process holds the queue's notification (EBUSY).
        """
        if callback is not None and signal is not None:
            raise ValueError("give a callback or a signal, not both")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        signal_number = None if signal is None else int(check_int(signal, "signal"))
        if signal_number is not None and not 0 < signal_number < _signal.NSIG:
            raise ValueError(
                f"signal must be a signal number (1 to {_signal.NSIG - 1}), got {signal_number}"
            )
        check_int(value, "value")
        if not -(2**31) <= value < 2**31:
            raise ValueError(f"value must fit in a C int (32 bits), got {value}")
        if value and signal_number is None:
            raise ValueError("value goes with a signal: give signal= too")
        self._check_open()
        self._cancel_notification()
        try:
            if callback is not None:
                pipe_fd, token = _dispatcher.add(callback)
                self._notify_token = token
                _native.mq_notify_pipe(self._handle, pipe_fd, token, self.name)
            elif signal_number is not None:
                _native.mq_notify_signal(self._handle, signal_number, value, self.name)
                self._notify_signal = True
        except OSError as error:
            self._forget_notification()
            if error.errno == errno.EBUSY:
                raise IPCOSError(
                    error.errno,
                    f"{self.describe()}: another process already holds its notification",
                    self.name,
                ) from None
            raise from_os_error(error, KIND, self.name) from None

    def _cancel_notification(self) -> None:
        if self._notify_token is not None or self._notify_signal:
            with contextlib.suppress(OSError):
                _native.mq_notify_signal(self._handle, 0, 0, self.name)
            self._forget_notification()

    def _forget_notification(self) -> None:
        if self._notify_token is not None:
            _dispatcher.discard(self._notify_token)
            self._notify_token = None
        self._notify_signal = False

    def unlink(self) -> None:
        """Remove the queue's name (this handle stays usable until closed).

        Raises:
            ResourceNotFoundError: already removed.
        """
        unlink(self.name)

    def _close_handle(self, handle: int) -> None:
        self._forget_notification()  # closing the descriptor cancels it in the kernel
        _native.mq_close(handle)


# The C methods that the slow paths call with validated arguments.
_core_send = _native.PosixQueueCore._send_plain
_core_receive = _native.PosixQueueCore._receive_plain
_core_receive_into = _native.PosixQueueCore._receive_into_plain
