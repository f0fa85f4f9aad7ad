"""The topic rows of ``unixipc bench``: they run and count right (speed is never asserted)."""

from __future__ import annotations

import glob
import subprocess
import sys

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]


def test_fanout_section_runs_loses_nothing_and_leaves_nothing() -> None:
    process = subprocess.run(
        [*COMMAND, "bench", "--fanout", "--seconds", "0.05", "--no-peers"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    lines = process.stdout.splitlines()
    rows = [line.split() for line in lines if line.strip().startswith("topic")]
    assert len(rows) == 2, process.stdout
    for row in rows:
        lost = row[row.index("GB/s") + 1]
        assert lost == "0", process.stdout  # overflow="block": every subscriber got everything
    assert "idle subscriber blocked in receive()" in process.stdout
    assert not glob.glob("/dev/shm/uxfan*"), "the fan-out benchmark leaked shared memory"


def test_topic_transports_run_a_round_trip_and_a_stream() -> None:
    process = subprocess.run(
        [
            *COMMAND,
            "bench",
            "--transports",
            "topic,topic-batch",
            "--sizes",
            "64",
            "--placements",
            "unpinned",
            "--repeats",
            "1",
            "--seconds",
            "0.05",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert "topic" in process.stdout
    assert "failed" not in process.stdout, process.stdout
