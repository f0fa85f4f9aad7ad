"""Signals between real processes: the textbook semantics, values, receivers, C peers.

Every test that blocks signals, installs handlers or receives signals runs in a
forked child, so that pytest's own signal handling (pytest-timeout uses SIGALRM)
is never disturbed; the few that run here restore what they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Child, assert_elapsed, compile_c
from unixipc import (
    ClosedResourceError,
    ResourceLimitError,
    ResourceNotFoundError,
    TimeoutExpired,
    WouldBlock,
    signals,
    sockets,
)
from unixipc.signals import SignalInfo, SignalReceiver

RTMIN = signal.SIGRTMIN
SI_USER = 0
SI_QUEUE = -1
SI_TKILL = -6


@pytest.fixture
def link() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A socketpair for 'ready' / 'sent' handshakes with a child."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def _blocked_mask() -> set[int]:
    return {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])}


def _handshake(link: socket.socket) -> None:
    """In the child: tell the parent we are ready, then wait until it has sent."""
    sockets.send_all(link, b"r", timeout=30)
    assert sockets.receive_exactly(link, 1, timeout=30) == b"s"


def _drain(numbers: list[int]) -> list[SignalInfo]:
    received = []
    while True:
        try:
            received.append(signals.wait(numbers, timeout=0))
        except WouldBlock:
            return received


def _collect(link: socket.socket, numbers: list[int]) -> list[SignalInfo]:
    with signals.blocked(numbers):
        _handshake(link)
        return _drain(numbers)


def _send_after_ready(
    ours: socket.socket, child: Child, sends: list[tuple[int | str, int | None]]
) -> None:
    assert sockets.receive_exactly(ours, 1, timeout=30) == b"r"
    for signo, value in sends:
        signals.send(child.pid, signo, value=value)
    sockets.send_all(ours, b"s", timeout=30)


# --- the textbook semantics, between processes ----------------------------------------


def test_standard_signals_merge(
    link: tuple[socket.socket, socket.socket], children: Callable[..., Child]
) -> None:
    ours, theirs = link
    child = children(_collect, theirs, [signal.SIGUSR1, signal.SIGUSR2])
    sends: list[tuple[int | str, int | None]] = [("USR1", None)] * 5
    sends += [("SIGUSR2", 1), ("SIGUSR2", 2), ("SIGUSR2", 3)]
    _send_after_ready(ours, child, sends)
    received = child.result()
    assert received == [
        SignalInfo(signal.SIGUSR1, SI_USER, os.getpid(), os.getuid(), None),
        SignalInfo(signal.SIGUSR2, SI_QUEUE, os.getpid(), os.getuid(), 1),  # the first one
    ]


def test_real_time_signals_queue_in_order_with_their_values(
    link: tuple[socket.socket, socket.socket], children: Callable[..., Child]
) -> None:
    ours, theirs = link
    child = children(_collect, theirs, [RTMIN + 1, RTMIN + 3])
    sends: list[tuple[int | str, int | None]] = []
    for i in range(10):
        sends.append(("RTMIN+3", 300 + i))
        sends.append((RTMIN + 1, -(2**31) + i))
    _send_after_ready(ours, child, sends)
    received = child.result()
    # all twenty arrive; the lower-numbered real-time signal is delivered first
    assert [(info.signal, info.value) for info in received] == (
        [(RTMIN + 1, -(2**31) + i) for i in range(10)] + [(RTMIN + 3, 300 + i) for i in range(10)]
    )
    assert {(info.code, info.pid, info.uid) for info in received} == {
        (SI_QUEUE, os.getpid(), os.getuid())
    }
    assert received[0].name == "SIGRTMIN+1"


def _pending_until_unblocked(link: socket.socket) -> tuple[bool, int, int]:
    handled: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signo, frame: handled.append(signo))
    with signals.blocked("USR1"):
        _handshake(link)
        pending = signal.SIGUSR1 in signal.sigpending()
        for _ in range(1000):  # plenty of bytecodes for a handler that should not run
            pass
        while_blocked = len(handled)
    deadline = time.monotonic() + 30
    while not handled and time.monotonic() < deadline:
        time.sleep(0.001)
    return pending, while_blocked, len(handled)


def test_a_blocked_signal_stays_pending_until_unblocked(
    link: tuple[socket.socket, socket.socket], children: Callable[..., Child]
) -> None:
    ours, theirs = link
    child = children(_pending_until_unblocked, theirs)
    _send_after_ready(ours, child, [("USR1", None)])
    assert child.result() == (True, 0, 1)


def _receive_with_selectors(link: socket.socket, count: int) -> list[SignalInfo]:
    with SignalReceiver([RTMIN, "USR2"]) as receiver, selectors.DefaultSelector() as selector:
        selector.register(receiver, selectors.EVENT_READ)
        _handshake(link)  # all sent before we read: the kernel's order is what we see
        received: list[SignalInfo] = []
        while len(received) < count:
            assert selector.select(timeout=30), "the signalfd never became readable"
            while True:
                try:
                    received.append(receiver.receive(timeout=0))
                except WouldBlock:
                    break
        return received


def test_a_signal_receiver_works_with_selectors(
    link: tuple[socket.socket, socket.socket], children: Callable[..., Child]
) -> None:
    ours, theirs = link
    child = children(_receive_with_selectors, theirs, 4)
    _send_after_ready(ours, child, [(RTMIN, 7), (RTMIN, 8), (RTMIN, 9), ("USR2", None)])
    received = child.result()
    assert [(info.signal, info.value) for info in received] == [
        (signal.SIGUSR2, None),  # standard signals come before real-time ones
        (RTMIN, 7),
        (RTMIN, 8),
        (RTMIN, 9),
    ]
    assert {info.pid for info in received} == {os.getpid()}


def _receive_with_asyncio(link: socket.socket, count: int) -> list[int | None]:
    async def main() -> list[int | None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        values: list[int | None] = []
        with SignalReceiver([RTMIN + 2]) as receiver:

            def readable() -> None:
                values.append(receiver.receive(timeout=0).value)
                if len(values) == count:
                    done.set_result(None)

            loop.add_reader(receiver.fileno(), readable)
            await loop.sock_sendall(link, b"r")
            await asyncio.wait_for(done, 30)
            loop.remove_reader(receiver.fileno())
        return values

    link.setblocking(False)
    return asyncio.run(main())


def test_a_signal_receiver_works_with_asyncio(
    link: tuple[socket.socket, socket.socket], children: Callable[..., Child]
) -> None:
    ours, theirs = link
    child = children(_receive_with_asyncio, theirs, 5)
    assert sockets.receive_exactly(ours, 1, timeout=30) == b"r"
    for value in range(5):
        signals.send(child.pid, "RTMIN+2", value=value * 1000)
    assert child.result() == [0, 1000, 2000, 3000, 4000]


def _thread_waits() -> tuple[SignalInfo, SignalInfo | None]:
    results: list[SignalInfo] = []
    with signals.blocked("USR2"):  # the thread inherits the mask
        thread = threading.Thread(target=lambda: results.append(signals.wait("USR2", timeout=30)))
        thread.start()
        # pthread_kill targets the thread: only it can accept the signal
        time.sleep(0.05)
        signals.send_to_thread(thread, "USR2")
        thread.join(30)
        try:
            main_got: SignalInfo | None = signals.wait("USR2", timeout=0)
        except WouldBlock:
            main_got = None
    return results[0], main_got


def test_send_to_thread_reaches_that_thread(children: Callable[..., Child]) -> None:
    child = children(_thread_waits)
    info, main_got = child.result()
    assert (info.signal, info.pid) == (signal.SIGUSR2, child.pid)
    assert info.code in (SI_TKILL, SI_USER)  # the kernel version decides
    assert main_got is None


def _send_many(pid: int, count: int) -> None:
    for value in range(count):
        signals.send(pid, RTMIN, value=value)


def _limit_pending_signals(link: socket.socket) -> int:
    resource.setrlimit(resource.RLIMIT_SIGPENDING, (8, 8))
    with signals.blocked(RTMIN):
        _handshake(link)
        return len(_drain([RTMIN]))  # accept them all before unblocking


def test_a_full_signal_queue_is_a_resource_limit(
    link: tuple[socket.socket, socket.socket], children: Callable[..., Child]
) -> None:
    ours, theirs = link
    child = children(_limit_pending_signals, theirs)
    assert sockets.receive_exactly(ours, 1, timeout=30) == b"r"
    with pytest.raises(ResourceLimitError, match="RLIMIT_SIGPENDING"):
        _send_many(child.pid, 100)
    sockets.send_all(ours, b"s", timeout=30)
    assert child.result() <= 8


# --- waiting: timeouts, handlers, masks ---------------------------------------------------


def test_wait_timeouts_and_the_mask_is_restored() -> None:
    before = _blocked_mask()
    with pytest.raises(WouldBlock):
        signals.wait(RTMIN + 5, timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match="SIGRTMIN\\+5"):
        signals.wait([RTMIN + 5], timeout=0.3)
    assert_elapsed(started, 0.3)
    assert _blocked_mask() == before


def _handlers_run_during_a_wait() -> tuple[float, int, bool]:
    calls: list[int] = []
    signal.signal(signal.SIGALRM, lambda signo, frame: calls.append(signo))
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    started = time.monotonic()
    with contextlib.suppress(TimeoutExpired):
        signals.wait("USR2", timeout=0.5)
    return time.monotonic() - started, len(calls), signal.SIGUSR2 in _blocked_mask()


def test_other_signals_run_their_handlers_and_the_wait_goes_on(
    children: Callable[..., Child],
) -> None:
    elapsed, calls, still_blocked = children(_handlers_run_during_a_wait).result()
    assert calls == 1
    assert 0.495 <= elapsed <= 1.5
    assert not still_blocked


class Interrupted(Exception):
    pass


def _a_raising_handler_interrupts_the_wait() -> tuple[str, float, bool]:
    def handler(signo: int, frame: object) -> None:
        raise Interrupted

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    started = time.monotonic()
    try:
        signals.wait("USR2", timeout=30)
    except Interrupted:
        return "interrupted", time.monotonic() - started, signal.SIGUSR2 in _blocked_mask()
    return "not interrupted", 0.0, False


def test_a_raising_handler_interrupts_the_wait(children: Callable[..., Child]) -> None:
    outcome, elapsed, still_blocked = children(_a_raising_handler_interrupts_the_wait).result()
    assert outcome == "interrupted"
    assert elapsed < 10
    assert not still_blocked


def _receiver_restores_the_mask() -> tuple[bool, bool, bool, bool]:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # already blocked before
    receiver = SignalReceiver(["USR1", "USR2"])
    during = {signal.SIGUSR1, signal.SIGUSR2} <= _blocked_mask()
    with pytest.raises(WouldBlock):
        receiver.receive(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        receiver.receive(timeout=0.2)
    assert_elapsed(started, 0.2)
    receiver.close()
    receiver.close()
    with pytest.raises(ClosedResourceError):
        receiver.receive()
    mask = _blocked_mask()
    return during, signal.SIGUSR1 in mask, signal.SIGUSR2 in mask, receiver.closed


def test_a_receiver_blocks_its_signals_and_unblocks_only_those_it_blocked(
    children: Callable[..., Child],
) -> None:
    assert children(_receiver_restores_the_mask).result() == (True, True, False, True)


def test_blocked_restores_only_what_it_changed() -> None:
    before = _blocked_mask()
    with signals.blocked([RTMIN + 6, "RTMIN+7"]) as numbers:
        assert numbers == {RTMIN + 6, RTMIN + 7}
        assert numbers <= _blocked_mask()
    assert _blocked_mask() == before


# --- names, values and bad input -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("USR1", signal.SIGUSR1),
        ("sigusr1", signal.SIGUSR1),
        ("SIGTERM", signal.SIGTERM),
        ("RTMIN", RTMIN),
        ("RTMIN+2", RTMIN + 2),
        ("SIGRTMAX-1", signal.SIGRTMAX - 1),
        ("10", 10),
        (15, 15),
        (signal.SIGINT, signal.SIGINT),
    ],
)
def test_signal_names(spec: int | str, expected: int) -> None:
    assert signals.number(spec) == expected


def test_names_print_back() -> None:
    assert signals.name(signal.SIGUSR1) == "SIGUSR1"
    assert signals.name(RTMIN) == "SIGRTMIN"
    assert signals.name(RTMIN + 2) == "SIGRTMIN+2"
    assert signals.name(signal.SIGRTMAX) == "SIGRTMAX"


def test_bad_input_fails_before_any_system_call() -> None:
    with pytest.raises(ValueError, match="no signal named"):
        signals.number("USR3")
    with pytest.raises(ValueError, match="outside SIGRTMIN"):
        signals.number("RTMIN+40")
    with pytest.raises(ValueError, match="between 1 and"):
        signals.number(65)
    with pytest.raises(TypeError):
        signals.number(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SIGKILL and SIGSTOP"):
        signals.wait("KILL", timeout=0)
    with pytest.raises(ValueError, match="SIGKILL and SIGSTOP"):
        SignalReceiver(["STOP"])
    with pytest.raises(ValueError, match="at least one"):
        signals.wait([], timeout=0)
    with pytest.raises(ValueError, match="32 bits"):
        signals.send(os.getpid(), RTMIN, value=2**31)
    with pytest.raises(TypeError, match="value"):
        signals.send(os.getpid(), RTMIN, value="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not been started"):
        signals.send_to_thread(threading.Thread(target=print), "USR1")


def test_errors_name_the_process() -> None:
    with open("/proc/sys/kernel/pid_max") as pid_max:
        missing = int(pid_max.read()) + 1  # no process can have this pid
    with pytest.raises(ResourceNotFoundError, match=f"process {missing} does not exist"):
        signals.send(missing, "USR1")
    with pytest.raises(ResourceNotFoundError):
        signals.send(missing, RTMIN, value=1)
    signals.send(os.getpid(), 0)  # signal 0: only checks that the process exists


# --- C peers --------------------------------------------------------------------------------

C_SIGWAITINFO = r"""
#include <signal.h>
#include <stdio.h>

int main(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    printf("ready\n");
    fflush(stdout);
    siginfo_t info;
    if (sigwaitinfo(&set, &info) < 0) { perror("sigwaitinfo"); return 1; }
    printf("%d %d %d %d\n", info.si_signo - SIGRTMIN, info.si_code, (int)info.si_pid,
           info.si_value.sival_int);
    return 0;
}
"""

C_SIGQUEUE = r"""
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>

int main(int argc, char **argv) {
    (void)argc;
    union sigval value = {.sival_int = atoi(argv[2])};
    if (sigqueue(atoi(argv[1]), SIGRTMIN + 2, value) != 0) { perror("sigqueue"); return 1; }
    return 0;
}
"""


def test_a_c_program_reads_a_sigqueue_value_with_sigwaitinfo(tmp_path: Path) -> None:
    binary = compile_c(C_SIGWAITINFO, tmp_path, "sigwaitinfo")
    waiter = subprocess.Popen([binary], stdout=subprocess.PIPE, text=True)
    try:
        assert waiter.stdout is not None
        assert waiter.stdout.readline() == "ready\n"
        signals.send(waiter.pid, "RTMIN+1", value=-123456)
        output, _ = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
        waiter.wait()
    assert waiter.returncode == 0
    assert output == f"1 {SI_QUEUE} {os.getpid()} -123456\n"


def _wait_for_c_sender(link: socket.socket) -> SignalInfo:
    with signals.blocked("RTMIN+2"):
        sockets.send_all(link, b"r", timeout=30)
        return signals.wait("RTMIN+2", timeout=30)


def test_wait_gets_the_value_a_c_program_queued(
    tmp_path: Path, link: tuple[socket.socket, socket.socket], children: Callable[..., Child]
) -> None:
    binary = compile_c(C_SIGQUEUE, tmp_path, "sigqueue")
    ours, theirs = link
    child = children(_wait_for_c_sender, theirs)
    assert sockets.receive_exactly(ours, 1, timeout=30) == b"r"
    sender = subprocess.run([binary, str(child.pid), "4242"], check=True, timeout=60)
    info = child.result()
    assert sender.returncode == 0
    assert (info.signal, info.code, info.value, info.uid) == (RTMIN + 2, SI_QUEUE, 4242, 0)
    assert info.pid not in (0, os.getpid(), child.pid)  # the C program's own pid


# --- pids, pending(), names and the values of timers -----------------------------------


def _out_of_range_pid_signals_nobody() -> tuple[str, str, bool]:
    with signals.blocked("USR1"):
        errors = []
        for value in (None, 1):
            try:
                signals.send(2**32 + os.getpid(), "USR1", value=value)
            except ValueError as error:
                errors.append(str(error))
        return errors[0], errors[1], signal.SIGUSR1 in signals.pending()


def test_a_pid_beyond_pid_t_is_refused_not_truncated(children: Callable[..., Child]) -> None:
    without, with_value, signalled = children(_out_of_range_pid_signals_nobody).result()
    assert "pid must fit in a C pid_t" in without
    assert "pid must fit in a C pid_t" in with_value
    assert not signalled  # 2**32 + pid did not become pid
    from unixipc import _native

    with pytest.raises(OverflowError):
        _native.sigqueue(2**32 + os.getpid(), signal.SIGUSR1, 1)


def _pending_then_accepted() -> tuple[frozenset[int], frozenset[int], str]:
    with signals.blocked(["USR2", "RTMIN+2"]):
        before = signals.pending()
        signals.send(os.getpid(), "RTMIN+2", value=7)
        signals.send_to_thread(threading.get_ident(), "USR2")
        during = signals.pending()
        info = signals.wait("RTMIN+2", timeout=30)
        signals.wait("USR2", timeout=30)
        assert signals.pending() == before
        return before, during, repr(info)


def test_pending_lists_blocked_signals_not_yet_accepted(children: Callable[..., Child]) -> None:
    child = children(_pending_then_accepted)
    before, during, shown = child.result()
    assert during - before == {signal.SIGUSR2, RTMIN + 2}
    # Names, as `unixipc signal wait` prints them.
    assert shown == (
        f"SignalInfo(signal=SIGRTMIN+2, code=SI_QUEUE, pid={child.pid}, uid={os.getuid()}, value=7)"
    )


def test_codes_have_names() -> None:
    assert [signals.code_name(code) for code in (0, -1, -2, -3, -6, 128)] == [
        "SI_USER",
        "SI_QUEUE",
        "SI_TIMER",
        "SI_MESGQ",
        "SI_TKILL",
        "SI_KERNEL",
    ]
    assert signals.code_name(1, signal.SIGCHLD) == "CLD_EXITED"
    assert signals.code_name(1) == "1"
    info = SignalInfo(signal.SIGUSR1, 0, 1, 2, None)
    assert (info.name, info.code_name) == ("SIGUSR1", "SI_USER")
    assert repr(info) == "SignalInfo(signal=SIGUSR1, code=SI_USER, pid=1, uid=2, value=None)"


class _SigEvent(ctypes.Structure):
    """struct sigevent on Linux (64 bytes): the value, signal and notify method."""

    _fields_ = (
        ("value", ctypes.c_int64),  # union sigval: sival_int is its low half here
        ("signo", ctypes.c_int),
        ("notify", ctypes.c_int),
        ("rest", ctypes.c_int * 12),
    )


class _ITimerSpec(ctypes.Structure):
    _fields_ = (("interval", ctypes.c_long * 2), ("value", ctypes.c_long * 2))


def _timer_value_arrives() -> tuple[list[tuple[int, int, int | None, int, int]], str]:
    """A POSIX timer (timer_create, SIGEV_SIGNAL) expiring with a value: SI_TIMER."""
    libc = ctypes.CDLL(None, use_errno=True)
    received = []
    with signals.blocked("RTMIN+4"), SignalReceiver("RTMIN+5") as receiver:
        for signo, value in ((RTMIN + 4, 9876), (RTMIN + 5, -5)):
            event = _SigEvent(value=value & 0xFFFFFFFF, signo=signo, notify=0)  # SIGEV_SIGNAL
            timer = ctypes.c_void_p()
            assert (
                libc.timer_create(time.CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer))
                == 0
            )
            when = _ITimerSpec(value=(0, 1_000_000))  # in 1 ms, once
            assert libc.timer_settime(timer, 0, ctypes.byref(when), None) == 0
            info = (
                signals.wait(signo, timeout=30)
                if signo == RTMIN + 4
                else receiver.receive(timeout=30)
            )
            libc.timer_delete(timer)
            received.append((info.signal, info.code, info.value, info.pid, info.uid))
    return received, info.code_name


def test_timer_signals_carry_their_value(children: Callable[..., Child]) -> None:
    received, code_name = children(_timer_value_arrives).result()
    # Through sigtimedwait and through signalfd alike; a timer has no sender.
    assert received == [(RTMIN + 4, -2, 9876, 0, 0), (RTMIN + 5, -2, -5, 0, 0)]
    assert code_name == "SI_TIMER"
