"""Demo of real-time signals carrying values from one process to another."""

from __future__ import annotations

import os
import signal
import socket
import time

from .. import signals, sockets
from ._common import DemoLine, fork_child, reap

COUNT = 100


def run_signal() -> DemoLine:
    """sigqueue 100 values to a forked child that accepts them with sigtimedwait."""
    parent = os.getpid()
    ready, child_ready = socket.socketpair()
    number = signal.SIGRTMIN + 1

    def child() -> None:
        ready.close()
        with signals.blocked(number):  # blocked before the parent may send: they queue
            sockets.send_all(child_ready, b"r", timeout=30)
            for value in range(COUNT):
                info = signals.wait(number, timeout=30)
                if (info.value, info.pid) != (value, parent):
                    raise RuntimeError(f"signal demo: got {info}, expected value {value}")

    with ready:
        pid = fork_child(child)
        child_ready.close()
        try:
            sockets.receive_exactly(ready, 1, timeout=30)
            start = time.perf_counter()
            for value in range(COUNT):
                signals.send(pid, number, value=value)
        finally:
            reap(pid)
        elapsed = time.perf_counter() - start
    return DemoLine(
        "signal",
        f"{COUNT} real-time signals (SIGRTMIN+1) with values 0..{COUNT - 1} queued to a forked "
        "child, accepted in order with the sender's pid (sigqueue -> sigtimedwait)",
        elapsed,
    )
