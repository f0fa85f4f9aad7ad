"""Timeout validation and deadlines (the shared contract of every blocking call)."""

from __future__ import annotations

import errno
import math
import os
import select
import signal
import time
from collections.abc import Iterator

import pytest

from tests.helpers import Child, assert_elapsed
from unixipc import TimeoutExpired, WouldBlock, _native
from unixipc._deadline import Deadline, check_timeout, wait_fd


@pytest.mark.parametrize("bad", ["1", b"1", [1], True, object()])
def test_timeout_type_is_checked(bad: object) -> None:
    with pytest.raises(TypeError, match="timeout"):
        check_timeout(bad)


@pytest.mark.parametrize("bad", [-0.001, -1, math.nan, -math.inf])
def test_timeout_value_is_checked(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        check_timeout(bad)


@pytest.mark.parametrize(
    ("given", "expected"),
    [(0.0, 0.0), (0.25, 0.25), (2, 2.0), (None, None), (math.inf, None), (10**400, None)],
)
def test_timeout_is_normalised(given: object, expected: float | None) -> None:
    # A float takes a fast path: it must give what the general rules give.
    result = check_timeout(given)
    assert result == expected
    assert type(result) is type(expected)


def test_deadline_kinds() -> None:
    assert Deadline(None).blocking
    assert Deadline(None).remaining() is None
    assert Deadline(None).poll_ms() == -1
    assert Deadline(None).as_ns() == _native.NO_DEADLINE
    assert Deadline(0).expired()
    assert isinstance(Deadline(0).error("x"), WouldBlock)
    assert isinstance(Deadline(1).error("x"), TimeoutExpired)
    assert 900 <= Deadline(1).poll_ms() <= 1000


def test_wait_fd_times_out_on_time() -> None:
    read_fd, write_fd = os.pipe()
    try:
        with pytest.raises(WouldBlock):
            wait_fd(read_fd, select.POLLIN, Deadline(0), "empty pipe")
        started = time.monotonic()
        with pytest.raises(TimeoutExpired, match="empty pipe timed out"):
            wait_fd(read_fd, select.POLLIN, Deadline(0.2), "empty pipe")
        assert_elapsed(started, 0.2)
        os.write(write_fd, b"x")
        assert wait_fd(read_fd, select.POLLIN, Deadline(0), "pipe") & select.POLLIN
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_native_converts_monotonic_deadlines_to_other_clocks() -> None:
    deadline = Deadline(10).as_ns()
    realtime = _native.monotonic_to_clock(deadline, time.CLOCK_REALTIME)
    assert abs(realtime / 1e9 - (time.time() + 10)) < 0.5
    with pytest.raises(ValueError, match="no deadline"):
        _native.monotonic_to_clock(_native.NO_DEADLINE, time.CLOCK_REALTIME)
    with pytest.raises(ValueError, match="deadline"):
        _native.monotonic_to_clock(-5, time.CLOCK_REALTIME)


# --- deadlines for system calls that have none (the C alarm) -----------------


@pytest.fixture
def blocking_pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_a_blocked_call_gives_up_at_its_deadline_without_using_cpu(
    blocking_pipe: tuple[int, int],
) -> None:
    read_fd, _ = blocking_pipe
    cpu = time.process_time()
    started = time.monotonic()
    with pytest.raises(OSError, match="timed out") as caught:
        _native.blocking_read(read_fd, 10, Deadline(0.5).as_ns())
    assert caught.value.errno == errno.ETIMEDOUT
    assert_elapsed(started, 0.5, slack=0.5)
    assert time.process_time() - cpu < 0.1  # it slept in the kernel: no polling


def _write_after(fd: int, delay: float) -> None:
    time.sleep(delay)
    os.write(fd, b"data")


def test_a_blocked_call_returns_what_arrives_before_the_deadline(
    blocking_pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = blocking_pipe
    child = Child(_write_after, write_fd, 0.2)
    assert _native.blocking_read(read_fd, 10, Deadline(30).as_ns()) == b"data"
    assert _native.blocking_read(read_fd, 0, _native.NO_DEADLINE) == b""
    child.result()


def test_signal_handlers_run_and_the_call_continues(blocking_pipe: tuple[int, int]) -> None:
    read_fd, _ = blocking_pipe
    calls: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda number, _: calls.append(number))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.monotonic()
        with pytest.raises(OSError, match="timed out"):
            _native.blocking_read(read_fd, 10, Deadline(0.4).as_ns())
        assert_elapsed(started, 0.4)
        assert calls == [signal.SIGALRM]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_exception_from_a_handler_interrupts_the_call(blocking_pipe: tuple[int, int]) -> None:
    read_fd, _ = blocking_pipe

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            _native.blocking_read(read_fd, 10, _native.NO_DEADLINE)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_works_when_the_thread_blocks_the_alarm_signal_and_restores_the_mask(
    blocking_pipe: tuple[int, int],
) -> None:
    read_fd, _ = blocking_pipe
    ours = {_native.ALARM_SIGNAL}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ours)
    try:
        started = time.monotonic()
        with pytest.raises(OSError, match="timed out"):
            _native.blocking_read(read_fd, 10, Deadline(0.2).as_ns())
        assert_elapsed(started, 0.2)
        assert _native.ALARM_SIGNAL in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        assert _native.ALARM_SIGNAL not in signal.sigpending()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
