"""Signals, and real-time signals that carry an integer value.

Persistence: none. A signal is pending in the kernel until it is delivered,
accepted by :func:`wait` or read from a :class:`SignalReceiver`; nothing
survives the receiving process.

Portability: Linux. ``send`` with a value uses sigqueue(3), ``wait`` uses
sigtimedwait(2) (so the value arrives, which Python's own
``signal.sigtimedwait`` drops) and :class:`SignalReceiver` uses signalfd(2).

The semantics are the textbook ones, and the tests prove them between real
processes: standard signals (1..31) *merge* (however many are sent while one is
pending, one is delivered); real-time signals (``SIGRTMIN``..``SIGRTMAX``)
*queue*, in order, each with its value; a blocked signal stays pending until it
is unblocked or accepted.

Accepting signals synchronously (``wait``, ``SignalReceiver``) requires them to be
*blocked*, else the kernel may deliver them to a handler or their default action
(which, for most signals, ends the process) before they can be accepted. Block
them with :func:`blocked` before the sender can send, in every thread: threads
inherit the mask of the thread that starts them, so block first, then start
threads. Python runs its own handlers only in the main thread.

Signals are named by number, ``signal.Signals`` member, or a name such as
``"USR1"``, ``"SIGUSR1"``, ``"RTMIN+2"`` or ``"SIGRTMAX-1"`` (see :func:`number`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal as _signal
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from . import _native
from ._deadline import Deadline, wait_fd
from ._names import check_int
from ._resource import Resource
from .errors import ResourceLimitError, from_os_error

__all__ = (
    "SI_MESGQ",
    "SI_QUEUE",
    "SI_TIMER",
    "SI_TKILL",
    "SI_USER",
    "SignalInfo",
    "SignalReceiver",
    "blocked",
    "code_name",
    "name",
    "number",
    "pending",
    "send",
    "send_to_thread",
    "wait",
)

KIND = "signal"

#: si_code of a signal sent by kill(2).
SI_USER: int = _native.SI_USER
#: si_code of a signal sent by sigqueue(3), with a value.
SI_QUEUE: int = _native.SI_QUEUE
#: si_code of a POSIX timer's expiry (timer_create), with the timer's value.
SI_TIMER: int = _native.SI_TIMER
#: si_code of a POSIX message queue's notification (mq_notify), with its value.
SI_MESGQ: int = _native.SI_MESGQ
#: si_code of a signal sent to one thread (tgkill, pthread_kill).
SI_TKILL: int = _native.SI_TKILL

_CODE_NAMES = {
    SI_USER: "SI_USER",
    _native.SI_KERNEL: "SI_KERNEL",
    SI_QUEUE: "SI_QUEUE",
    SI_TIMER: "SI_TIMER",
    SI_MESGQ: "SI_MESGQ",
    _native.SI_ASYNCIO: "SI_ASYNCIO",
    _native.SI_SIGIO: "SI_SIGIO",
    SI_TKILL: "SI_TKILL",
}
# SIGCHLD's own codes (what happened to the child), from <signal.h>.
_CHILD_CODE_NAMES = {
    1: "CLD_EXITED",
    2: "CLD_KILLED",
    3: "CLD_DUMPED",
    4: "CLD_TRAPPED",
    5: "CLD_STOPPED",
    6: "CLD_CONTINUED",
}
# The codes whose siginfo carries a sender's value (si_value).
_CODES_WITH_VALUE = frozenset({SI_QUEUE, SI_TIMER, SI_MESGQ, _native.SI_ASYNCIO})

_UNCATCHABLE = frozenset({_signal.SIGKILL, _signal.SIGSTOP})

SignalSpec = int | str | _signal.Signals


def number(spec: SignalSpec, argument: str = "signal") -> int:
    """The signal number for ``spec``: an int, a ``signal.Signals`` or a name.

    Names may omit the ``SIG`` prefix and are case-insensitive (``"usr1"``,
    ``"SIGUSR1"``); real-time signals are written ``RTMIN``, ``RTMIN+N``,
    ``RTMAX`` or ``RTMAX-N``; a decimal string such as ``"10"`` also works.

    Raises:
        TypeError: ``spec`` is not an int or a str.
        ValueError: no such signal.
    """
    if isinstance(spec, str):
        text = spec.strip().upper()
        if text.isdigit():
            return number(int(text), argument)
        text = text.removeprefix("SIG")
        for base, sign, anchor in (
            ("RTMIN", "+", _signal.SIGRTMIN),
            ("RTMAX", "-", _signal.SIGRTMAX),
        ):
            if text == base:
                return int(anchor)
            if text.startswith(base + sign) and text[len(base) + 1 :].isdigit():
                offset = int(text[len(base) + 1 :])
                value = anchor + offset if sign == "+" else anchor - offset
                if not _signal.SIGRTMIN <= value <= _signal.SIGRTMAX:
                    raise ValueError(f"{argument}: {spec!r} is outside SIGRTMIN..SIGRTMAX")
                return int(value)
        try:
            return int(_signal.Signals["SIG" + text])
        except KeyError:
            raise ValueError(f"{argument}: no signal named {spec!r}") from None
    signo = check_int(spec, argument)
    if not 1 <= signo < _signal.NSIG:
        raise ValueError(f"{argument} must be between 1 and {_signal.NSIG - 1}, got {signo}")
    return int(signo)


def name(signo: int) -> str:
    """The conventional name of signal ``signo``: ``"SIGUSR1"``, ``"SIGRTMIN+2"``..."""
    signo = number(signo, "signo")
    if _signal.SIGRTMIN < signo < _signal.SIGRTMAX:
        return f"SIGRTMIN+{signo - _signal.SIGRTMIN}"
    try:
        return _signal.Signals(signo).name
    except ValueError:
        return f"SIG{signo}"


def code_name(code: int, signo: int | None = None) -> str:
    """The name of an ``si_code``: ``"SI_QUEUE"``, ``"SI_USER"``, ``"SI_MESGQ"``...

    Codes that the kernel gives per signal are named for SIGCHLD (``"CLD_EXITED"``)
    when ``signo`` says so; other codes are shown as their number.
    """
    if signo == _signal.SIGCHLD and code in _CHILD_CODE_NAMES:
        return _CHILD_CODE_NAMES[code]
    return _CODE_NAMES.get(code, str(code))


def pending() -> frozenset[int]:
    """The signals pending for the calling thread or its process (sigpending(2)):
    sent while blocked, not yet delivered or accepted."""
    return frozenset(int(signo) for signo in _signal.sigpending())


def _signal_set(signals: Iterable[SignalSpec] | SignalSpec, *, waitable: bool) -> frozenset[int]:
    if isinstance(signals, (int, str)):
        signals = [signals]
    if not isinstance(signals, Iterable):
        raise TypeError(
            f"signals must be signals or an iterable of them, not {type(signals).__name__}"
        )
    numbers = frozenset(number(spec, "signals") for spec in signals)
    if not numbers:
        raise ValueError("signals must name at least one signal")
    if waitable and numbers & _UNCATCHABLE:
        raise ValueError("SIGKILL and SIGSTOP cannot be blocked, waited for or received")
    return numbers


@dataclass(frozen=True, repr=False)
class SignalInfo:
    """One accepted signal, from its siginfo.

    ``code`` is the siginfo's ``si_code`` (:func:`code_name` names it):
    ``SI_USER`` (0) for kill(2), ``SI_QUEUE`` (-1) for sigqueue(3), ``SI_TIMER``
    (-2) for a POSIX timer, ``SI_MESGQ`` (-3) for a message queue's notification,
    ``SI_TKILL`` (-6) for pthread_kill (or ``SI_USER``, on recent kernels),
    positive for signals raised by the kernel. ``pid`` and ``uid`` identify the
    sender (for ``SI_USER``, ``SI_QUEUE``, ``SI_MESGQ``, ``SI_TKILL``; 0 for a
    timer). ``value`` is the integer the sender attached (sigqueue's value, the
    timer's or the notification's ``sigev_value``), or None when the signal
    carries none. ``repr()`` shows the names, as ``unixipc signal wait`` does:
    ``SignalInfo(signal=SIGRTMIN+2, code=SI_QUEUE, pid=4242, uid=1000, value=7)``.
    """

    signal: int
    code: int
    pid: int
    uid: int
    value: int | None

    @property
    def name(self) -> str:
        """The signal's name, such as ``"SIGUSR1"`` or ``"SIGRTMIN+2"``."""
        return name(self.signal)

    @property
    def code_name(self) -> str:
        """The name of ``code``, such as ``"SI_QUEUE"`` (see :func:`code_name`)."""
        return code_name(self.code, self.signal)

    def __repr__(self) -> str:
        return (
            f"SignalInfo(signal={self.name}, code={self.code_name}, pid={self.pid}, "
            f"uid={self.uid}, value={self.value})"
        )

    @classmethod
    def _from_raw(cls, signo: int, code: int, pid: int, uid: int, value: int) -> SignalInfo:
        if code == SI_TIMER:  # the siginfo's pid and uid fields hold the timer's id and overrun
            pid = uid = 0
        return cls(signo, code, pid, uid, value if code in _CODES_WITH_VALUE else None)


def send(pid: int, signal: SignalSpec, *, value: int | None = None) -> None:
    """Send ``signal`` to the process ``pid``: kill(2), or sigqueue(3) with a ``value``.

    ``value`` is a C ``int`` (-2**31 .. 2**31-1) that the receiver gets in its
    :class:`SignalInfo`. Real-time signals sent with values queue, each with its
    own value; a standard signal may merge with one already pending and the
    value of the merged one is lost (POSIX). Signal 0 only checks that ``pid``
    exists and may be signalled.

    Raises:
        ResourceNotFoundError: no process ``pid`` (ESRCH).
        PermissionDeniedError: not allowed to signal it.
        ResourceLimitError: the receiver's queue of pending signals is full
            (sigqueue's EAGAIN, limited by RLIMIT_SIGPENDING).
        ValueError: ``pid`` does not fit a C pid_t (32 bits), or ``value``
            does not fit a C int.
    """
    pid = check_int(pid, "pid")
    if not -(2**31) <= pid < 2**31:
        raise ValueError(f"pid must fit in a C pid_t (32 bits), got {pid}")
    signo = 0 if signal == 0 else number(signal)
    if value is not None:
        value = check_int(value, "value")
        if not -(2**31) <= value < 2**31:
            raise ValueError(f"value must fit in a C int (32 bits), got {value}")
    try:
        if value is None:
            os.kill(pid, signo)
        else:
            _native.sigqueue(pid, signo, value)
    except OSError as error:
        if error.errno == errno.EAGAIN:
            raise ResourceLimitError(
                error.errno,
                f"{KIND} {name(signo)} to process {pid}: too many signals pending "
                "(RLIMIT_SIGPENDING)",
                str(pid),
            ) from None
        raise from_os_error(error, "process", pid) from None


def send_to_thread(thread: threading.Thread | int, signal: SignalSpec) -> None:
    """Send ``signal`` to one thread of this process (pthread_kill(3)).

    ``thread`` is a started ``threading.Thread`` or a thread identifier
    (``threading.get_ident()``). A handler installed with ``signal.signal``
    still runs in the main thread (a Python rule); the target thread sees the
    signal if it waits for it (``wait`` or a ``SignalReceiver``).

    Raises:
        ResourceNotFoundError: the thread has finished.
        ValueError: the Thread was never started.
    """
    if isinstance(thread, threading.Thread):
        if thread.ident is None:
            raise ValueError(f"thread {thread.name!r} has not been started")
        ident = thread.ident
    else:
        ident = check_int(thread, "thread")
    signo = number(signal)
    try:
        _signal.pthread_kill(ident, signo)
    except OSError as error:
        raise from_os_error(error, "thread", ident) from None


@contextlib.contextmanager
def blocked(signals: Iterable[SignalSpec] | SignalSpec) -> Iterator[frozenset[int]]:
    """Block ``signals`` in the calling thread for the ``with`` block (pthread_sigmask).

    Signals sent meanwhile stay pending; on exit, those this block blocked are
    unblocked again, and any still pending are then delivered (to handlers or
    their default action). Signals that were already blocked stay blocked.
    Yields the set of signal numbers.

    Raises:
        ValueError: SIGKILL or SIGSTOP, or an unknown signal.
    """
    numbers = _signal_set(signals, waitable=True)
    before = _signal.pthread_sigmask(_signal.SIG_BLOCK, numbers)
    try:
        yield numbers
    finally:
        newly = numbers - {int(s) for s in before}
        if newly:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, newly)


def wait(signals: Iterable[SignalSpec] | SignalSpec, *, timeout: float | None = None) -> SignalInfo:
    """Accept one of ``signals`` and return its :class:`SignalInfo` (sigtimedwait(2)).

    A signal already pending is returned at once. The signals are blocked in
    the calling thread while it waits (so one arriving meanwhile cannot reach a
    handler in this thread), and left as they were afterwards; block them
    yourself, with :func:`blocked`, *before* a sender can send, or a signal
    arriving before the call reaches its handler or default action. The GIL is
    released while waiting; other signals run their Python handlers and the
    wait continues (Ctrl-C interrupts it).

    Raises:
        WouldBlock: ``timeout=0`` and none of the signals is pending.
        TimeoutExpired: none arrived within ``timeout`` seconds.
        ValueError: SIGKILL or SIGSTOP, or an unknown signal.
    """
    numbers = _signal_set(signals, waitable=True)
    deadline = Deadline(timeout)
    with blocked(numbers):
        raw = _native.sigtimedwait(numbers, deadline.as_ns())
    if raw is None:
        raise deadline.error(f"waiting for {', '.join(sorted(name(s) for s in numbers))}")
    return SignalInfo._from_raw(*raw)


# struct signalfd_siginfo (128 bytes): ssi_signo, ssi_errno, ssi_code, ssi_pid,
# ssi_uid, ssi_fd, ssi_tid, ssi_band, ssi_overrun, ssi_trapno, ssi_status,
# ssi_int, ... (the rest is not used here).
_SIGNALFD_SIGINFO = struct.Struct("=IiiIIiIIIIii")
_SIGNALFD_SIGINFO_SIZE = 128


class SignalReceiver(Resource):
    """Signals read from a file descriptor (signalfd(2)): for selectors and asyncio.

    Creating the receiver *blocks* ``signals`` in the calling thread, as
    signalfd requires (a signal that is not blocked is delivered the usual way
    and never reaches the descriptor); ``close()`` unblocks those it blocked,
    and any still pending are then delivered normally. Create it, and close
    it, in the same thread, before starting other threads (they inherit the
    mask). ``fileno()`` becomes readable when one of the signals is pending, so
    ``loop.add_reader(receiver.fileno(), ...)`` works in asyncio.

    A forked child inherits the descriptor, but reads only its own signals.
    """

    kind = "signal receiver"

    def __init__(self, signals: Iterable[SignalSpec] | SignalSpec) -> None:
        numbers = _signal_set(signals, waitable=True)
        self.signals: frozenset[int] = numbers
        before = _signal.pthread_sigmask(_signal.SIG_BLOCK, numbers)
        self._unblock = numbers - {int(s) for s in before}
        try:
            self._fd = _native.signalfd(numbers)
        except OSError as error:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, self._unblock)
            raise from_os_error(error, KIND, "signalfd") from None
        self._opened(f"signalfd:{', '.join(sorted(name(s) for s in numbers))}")

    def fileno(self) -> int:
        """The signalfd descriptor (non-blocking, close-on-exec)."""
        self._check_open()
        return self._fd

    def receive(self, *, timeout: float | None = None) -> SignalInfo:
        """Accept one pending signal of this receiver's set and return its information.

        Raises:
            WouldBlock: ``timeout=0`` and none is pending.
            TimeoutExpired: none arrived within ``timeout`` seconds.
            ClosedResourceError: the receiver is closed.
        """
        deadline = Deadline(timeout)
        self._check_open()
        while True:
            try:
                record = os.read(self._fd, _SIGNALFD_SIGINFO_SIZE)
            except BlockingIOError:
                wait_fd(self._fd, select.POLLIN, deadline, f"receiving from {self.describe()}")
                continue
            signo, _errno, code, pid, uid, _fd, *_ignored, value = _SIGNALFD_SIGINFO.unpack_from(
                record
            )
            return SignalInfo._from_raw(signo, code, pid, uid, value)

    def _release(self) -> None:
        fd, self._fd = self._fd, -1
        os.close(fd)
        if self._unblock:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, self._unblock)
