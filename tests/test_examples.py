"""The examples run and produce the results the textbooks predict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import nats_support
from tests.conftest import Names

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def test_fifo_server_with_many_clients() -> None:
    output = run_example("fifo_server.py", "5", "20")
    assert "server answered 100 requests from 5 clients" in output
    expected = sum(n * n for n in range(100))
    assert f"server {expected}, clients {expected}, expected {expected}" in output


def test_producer_consumer_bounded_buffer() -> None:
    output = run_example("producer_consumer.py", "3", "2", "1000", "4")
    assert "3 producers put 3000 items through 4 slots to 2 consumers" in output
    assert "consumed 3000 items, serial-number sum 4498500, expected 4498500" in output
    assert "at the end: 4 free slots, 0 filled" in output


def test_critical_section_with_a_posix_semaphore() -> None:
    output = run_example("critical_section.py", "4", "1000")
    assert "4 processes x 1000 rounds: counter 4000, expected 4000" in output
    assert "at most 1 process(es) inside the critical section at once" in output


def test_critical_section_with_sysv_sem_undo_survives_a_killed_holder() -> None:
    output = run_example("critical_section.py", "3", "1000", "--sysv")
    assert "inside the critical section; SEM_UNDO released it" in output
    assert "3 processes x 1000 rounds: counter 3000, expected 3000" in output


ECHO_SCHEMES = ("unix", "unix-abstract", "tcp", "fifo", "mq", "sysvmq", "shm", "nats")


@pytest.mark.parametrize("scheme", ECHO_SCHEMES)
def test_the_same_echo_program_over_every_url(scheme: str, names: Names) -> None:
    url = {
        "unix": lambda: f"unix://{names.path('echo')}",
        "unix-abstract": lambda: f"unix-abstract://{names.posix('echo')[1:]}",
        "tcp": lambda: "tcp://127.0.0.1:0",
        "fifo": lambda: f"fifo://{names.path('echo')}",
        "mq": lambda: f"mq://{names.posix('echo')}",
        "sysvmq": lambda: f"sysvmq://{names.key():#x}",
        "shm": lambda: f"shm://{names.posix('echo')[1:]}",
        "nats": lambda: nats_support.shared_server().url(names.posix("echo")[1:]),
    }[scheme]()
    output = run_example("echo_any_url.py", url, "3", "50")
    assert "3 clients x 50 requests over " in output
    assert "each client served by a forked server" in output
    assert "answers verified 150, expected 150; failed servers 0" in output
