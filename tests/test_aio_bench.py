"""The asyncio rows of ``unixipc bench`` (``aio-*``): they run and leave nothing (speed is
never asserted)."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]
ROWS = ("aio-shm", "aio-mq", "aio-unix")


def test_asyncio_round_trips_run_on_both_sides_and_leave_nothing(tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    process = subprocess.Popen(
        [
            *COMMAND,
            "bench",
            "--transports",
            ",".join(ROWS),
            "--sizes",
            "64",
            "--placements",
            "unpinned",
            "--repeats",
            "1",
            "--seconds",
            "0.05",
            "--json-file",
            str(json_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    results = json.loads(json_path.read_text())["results"]
    # Round trips only: an asyncio link has no throughput test.
    assert {(r["transport"], r["test"]) for r in results} == {(row, "latency") for row in ROWS}
    for record in results:
        assert record["status"] == "ok", record
        assert record["round_trips"] > 0, record
        assert record["rtt_median_us"] > 0, record
    assert not glob.glob(f"/dev/shm/uxb{process.pid}*"), "the benchmark leaked shared memory"
