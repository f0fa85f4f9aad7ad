"""Demo of anonymous pipes (a ping-pong with a forked child) and popen."""

from __future__ import annotations

import time

from ..pipe import Pipe, popen
from ._common import DemoLine, fork_child, reap

ROUND_TRIPS = 2000
MESSAGE = b"x" * 64


def run_pipe() -> DemoLine:
    """Ping-pong 64-byte messages with a child over two pipes."""
    to_child_r, to_child_w = Pipe.create()
    to_parent_r, to_parent_w = Pipe.create()

    def echo() -> None:
        to_child_w.close()
        to_parent_r.close()
        for _ in range(ROUND_TRIPS):
            to_parent_w.send_all(to_child_r.receive_exactly(len(MESSAGE)))

    pid = fork_child(echo)
    to_child_r.close()
    to_parent_w.close()
    try:
        start = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            to_child_w.send_all(MESSAGE)
            if to_parent_r.receive_exactly(len(MESSAGE)) != MESSAGE:
                raise RuntimeError("pipe demo: the echo differs")
        elapsed = time.perf_counter() - start
    finally:
        to_child_w.close()
        to_parent_r.close()
        reap(pid)
    per_trip = elapsed / ROUND_TRIPS * 1e6
    return DemoLine(
        "pipe",
        f"{ROUND_TRIPS} round trips of 64 B parent <-> forked child ({per_trip:.1f} us each)",
        elapsed,
    )


def run_popen() -> DemoLine:
    """Read 4 MiB from a shell pipeline's standard output."""
    size = 4 * 1024 * 1024
    start = time.perf_counter()
    total = 0
    with popen(f"head -c {size} /dev/zero", "r") as reader:
        while chunk := reader.receive_some(1 << 20):
            total += len(chunk)
        status = reader.wait()
    elapsed = time.perf_counter() - start
    if total != size or status != 0:
        raise RuntimeError(f"popen demo: got {total} bytes, exit status {status}")
    return DemoLine(
        "popen",
        f"4 MiB from `head -c ... /dev/zero` in a shell ({size / elapsed / 1e6:.0f} MB/s)",
        elapsed,
    )
