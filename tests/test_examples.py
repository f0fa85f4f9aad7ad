"""The examples run and produce the results the textbooks predict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
