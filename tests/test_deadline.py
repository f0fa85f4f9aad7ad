"""Timeout validation and deadlines (the shared contract of every blocking call)."""

from __future__ import annotations

import math
import os
import select
import time

import pytest

from tests.helpers import assert_elapsed
from unixipc import TimeoutExpired, WouldBlock, _native
from unixipc._deadline import Deadline, check_timeout, wait_fd


@pytest.mark.parametrize("bad", ["1", b"1", [1], True, object()])
def test_timeout_type_is_checked(bad: object) -> None:
    with pytest.raises(TypeError, match="timeout"):
        check_timeout(bad)


@pytest.mark.parametrize("bad", [-0.001, -1, math.nan])
def test_timeout_value_is_checked(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        check_timeout(bad)


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
