"""Demo of semaphores: ping-pong between a parent and a forked child."""

from __future__ import annotations

import os
import time

from ..posix_sem import PosixSemaphore
from ..sysv_sem import SysVSemaphoreSet
from ._common import DemoLine, fork_child, reap

ROUND_TRIPS = 2000


def run_sem() -> DemoLine:
    """Two named POSIX semaphores hand a turn back and forth."""
    ping_name = f"/unixipc-demo-ping-{os.getpid()}"
    pong_name = f"/unixipc-demo-pong-{os.getpid()}"
    ping = PosixSemaphore.create(ping_name, value=0)
    pong = PosixSemaphore.create(pong_name, value=0)
    try:

        def answer() -> None:
            child_ping, child_pong = PosixSemaphore.open(ping_name), PosixSemaphore.open(pong_name)
            for _ in range(ROUND_TRIPS):
                child_ping.acquire(timeout=30)
                child_pong.release()
            child_ping.close()
            child_pong.close()

        pid = fork_child(answer)
        start = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            ping.release()
            pong.acquire(timeout=30)
        elapsed = time.perf_counter() - start
        reap(pid)
    finally:
        for semaphore in (ping, pong):
            semaphore.unlink()
            semaphore.close()
    return DemoLine(
        "sem",
        f"{ROUND_TRIPS} round trips parent <-> forked child on two named semaphores "
        f"({elapsed / ROUND_TRIPS * 1e6:.1f} us each)",
        elapsed,
    )


def run_sysv_sem() -> DemoLine:
    """One System V set of two semaphores hands a turn back and forth, with SEM_UNDO."""
    semaphores = SysVSemaphoreSet.create(0, 2)
    try:
        set_id = semaphores.id

        def answer() -> None:
            child = SysVSemaphoreSet.open_id(set_id)
            for _ in range(ROUND_TRIPS):
                child.op([(0, -1), (1, 1)], timeout=30)  # take the ping, give the pong
            child.close()

        pid = fork_child(answer)
        start = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            semaphores.op([(0, 1)])
            semaphores.op([(1, -1)], timeout=30)
        elapsed = time.perf_counter() - start
        reap(pid)
    finally:
        semaphores.unlink()
        semaphores.close()
    return DemoLine(
        "sysv-sem",
        f"{ROUND_TRIPS} round trips parent <-> forked child on one System V set "
        f"({elapsed / ROUND_TRIPS * 1e6:.1f} us each)",
        elapsed,
    )
