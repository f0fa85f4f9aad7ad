"""The `unixipc` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import unixipc
from tests.conftest import Names
from unixipc import Fifo, fifo

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]


def unixipc_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_version() -> None:
    result = unixipc_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"unixipc {unixipc.__version__}"


def test_console_script_is_installed() -> None:
    script = os.path.join(os.path.dirname(sys.executable), "unixipc")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert "unixipc" in result.stdout


def test_fifo_create_send_receive_unlink(names: Names) -> None:
    path = names.path("cli")
    created = unixipc_cli("--json", "fifo", "create", path, "--permissions", "0640")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"kind": "fifo", "name": path, "permissions": "0640"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    receiver = subprocess.Popen(
        [*COMMAND, "--json", "fifo", "receive", path, "--timeout", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    sent = unixipc_cli("fifo", "send", path, "hello from the shell", "--timeout", "60")
    assert sent.returncode == 0, sent.stderr
    output, _ = receiver.communicate(timeout=60)
    assert receiver.returncode == 0
    assert json.loads(output) == {
        "path": path,
        "bytes": 20,
        "data": "hello from the shell",
        "encoding": "utf-8",
    }
    assert unixipc_cli("fifo", "unlink", path).returncode == 0
    assert not os.path.exists(path)


def test_fifo_receive_prints_text(names: Names) -> None:
    path = names.path("cli")
    fifo.mkfifo(path)
    receiver = subprocess.Popen(
        [*COMMAND, "fifo", "receive", path, "--timeout", "60"], stdout=subprocess.PIPE, text=True
    )
    with Fifo.open(path, "w", timeout=60) as writer:
        writer.send_all(b"line one\nline two")
    output, _ = receiver.communicate(timeout=60)
    assert output == "line one\nline two\n"
    fifo.unlink(path)


def test_timeout_gives_a_one_line_error_and_status_1(names: Names) -> None:
    path = names.path("cli")
    fifo.mkfifo(path)
    started = time.monotonic()
    result = unixipc_cli("fifo", "receive", path, "--timeout", "0.3")
    assert time.monotonic() - started >= 0.3
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("unixipc fifo: error:")
    assert "timed out" in result.stderr
    fifo.unlink(path)


def test_errors_name_the_object(names: Names) -> None:
    path = names.path("missing")
    result = unixipc_cli("fifo", "unlink", path)
    assert result.returncode == 1
    assert f"FIFO {path!r} does not exist" in result.stderr
    assert unixipc_cli("fifo", "create", path, "--permissions", "999").returncode == 2


def test_demo_runs_every_facility_between_processes() -> None:
    result = unixipc_cli("--json", "demo", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = json.loads(result.stdout)
    facilities = [line["facility"] for line in lines]
    from unixipc.demo import STEPS

    assert facilities == [facility for facility, _ in STEPS]
    for line in lines:
        assert line["seconds"] > 0
        assert line["crossed"]
