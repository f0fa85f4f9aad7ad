"""Demo of the locks: a robust mutex survives a killed holder; a file lock between processes."""

from __future__ import annotations

import os
import signal
import tempfile
import time

from ..errors import OwnerDied, WouldBlock
from ..file_lock import FileLock
from ..pipe import Pipe
from ..shared_sync import SharedMutex
from ._common import DemoLine, fork_child, reap


def run_mutex() -> DemoLine:
    """A child takes a shared mutex and is SIGKILLed; the parent recovers the mutex."""
    name = f"/unixipc-demo-mutex-{os.getpid()}"
    start = time.perf_counter()
    mutex = SharedMutex.create(name)
    try:
        ready_r, ready_w = Pipe.create()

        def hold() -> None:
            held = SharedMutex.open(name)
            held.acquire()
            ready_w.send_all(b"x")
            time.sleep(60)  # killed long before this ends

        pid = fork_child(hold)
        ready_w.close()
        ready_r.receive_exactly(1, timeout=30)
        ready_r.close()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            mutex.acquire(timeout=30)
        except OwnerDied:
            mutex.mark_consistent()  # the demo has no state to repair
        else:
            raise RuntimeError("mutex demo: the dead holder went unnoticed")
        mutex.release()
        with mutex:  # usable again
            pass
        elapsed = time.perf_counter() - start
    finally:
        mutex.close()
        mutex.unlink()
    return DemoLine(
        "mutex",
        f"holder pid {pid} SIGKILLed inside the lock; parent got OwnerDied, recovered, relocked",
        elapsed,
    )


def run_file_lock() -> DemoLine:
    """A child holds an flock lock; the parent cannot get it, then gets it when the child exits."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unixipc-demo-") as directory:
        path = os.path.join(directory, "lock")
        ready_r, ready_w = Pipe.create()
        go_r, go_w = Pipe.create()

        def hold() -> None:
            with FileLock(path):
                ready_w.send_all(b"x")
                go_r.receive_exactly(1, timeout=30)

        pid = fork_child(hold)
        ready_w.close()
        go_r.close()
        ready_r.receive_exactly(1, timeout=30)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except WouldBlock:
            pass
        else:
            raise RuntimeError("file lock demo: two holders at once")
        go_w.send_all(b"x")
        lock.acquire(timeout=30)
        lock.release()
        reap(pid)
        ready_r.close()
        go_w.close()
        elapsed = time.perf_counter() - start
    return DemoLine(
        "file-lock", f"flock(2) held by child {pid} excluded the parent until released", elapsed
    )
