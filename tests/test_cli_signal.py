"""``unixipc signal send|wait`` as real, unrelated processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from unixipc import signals

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]


def unixipc_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=120, check=False
    )


def _start_waiter(*args: str) -> subprocess.Popen[str]:
    """Start ``unixipc signal wait ...`` and return once it has blocked its signals."""
    waiter = subprocess.Popen(
        [*COMMAND, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert waiter.stderr is not None
    notice = waiter.stderr.readline()
    assert notice.startswith(f"unixipc signal: pid {waiter.pid} waiting for "), notice
    return waiter


def test_wait_prints_the_value_and_the_sender_of_a_queued_signal() -> None:
    waiter = _start_waiter("--json", "signal", "wait", "USR1", "SIGRTMIN+2", "--timeout", "60")
    try:
        rtmin2 = signal.SIGRTMIN + 2
        sender = subprocess.Popen(
            [*COMMAND, "--json", "signal", "send", str(waiter.pid), "RTMIN+2", "--value", "-42"],
            stdout=subprocess.PIPE,
            text=True,
        )
        sent, _ = sender.communicate(timeout=60)
        output, errors = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
        waiter.wait()
    assert sender.returncode == 0
    assert json.loads(sent) == {
        "pid": waiter.pid,
        "signal": rtmin2,
        "name": "SIGRTMIN+2",
        "value": -42,
    }
    assert waiter.returncode == 0, errors
    assert json.loads(output) == {
        "signal": rtmin2,
        "name": "SIGRTMIN+2",
        "code": -1,
        "pid": sender.pid,
        "uid": os.getuid(),
        "value": -42,
    }


def test_wait_prints_text_for_several_signals() -> None:
    waiter = _start_waiter("signal", "wait", "10", "RTMIN", "--count", "2", "--timeout", "60")
    try:
        # in this order the output is the same whether the waiter wakes between the two
        # sends or after both (standard signals are accepted before real-time ones)
        signals.send(waiter.pid, signal.SIGUSR1)
        signals.send(waiter.pid, "RTMIN", value=7)
        output, errors = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
        waiter.wait()
    assert waiter.returncode == 0, errors
    me = os.getpid()
    assert output.splitlines() == [
        f"SIGUSR1 code=SI_USER pid={me} uid={os.getuid()}",
        f"SIGRTMIN code=SI_QUEUE pid={me} uid={os.getuid()} value=7",
    ]


def test_wait_times_out_with_a_one_line_error() -> None:
    started = time.monotonic()
    result = unixipc_cli("signal", "wait", "USR2", "--timeout", "0.3")
    assert time.monotonic() - started >= 0.3
    assert result.returncode == 1
    notice, error = result.stderr.splitlines()
    assert re.fullmatch(r"unixipc signal: pid \d+ waiting for SIGUSR2", notice)
    assert error == "unixipc signal: error: waiting for SIGUSR2 timed out after 0.3 s"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("signal", "send", "1", "USR9"), 2, "no signal named 'USR9'"),
        (("signal", "wait", "KILL"), 1, "SIGKILL and SIGSTOP cannot be"),
        (("signal", "send", "1", "RTMIN", "--value", "4294967296"), 1, "fit in a C int"),
    ],
)
def test_bad_input_is_reported(args: tuple[str, ...], status: int, message: str) -> None:
    result = unixipc_cli(*args)
    assert result.returncode == status
    assert message in result.stderr


def test_sending_to_a_missing_process() -> None:
    with open("/proc/sys/kernel/pid_max") as pid_max:
        missing = int(pid_max.read()) + 1
    result = unixipc_cli("signal", "send", str(missing), "USR1")
    assert result.returncode == 1
    assert result.stderr == f"unixipc signal: error: process {missing} does not exist\n"
