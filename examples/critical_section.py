"""A critical section guarded by a binary semaphore (Dijkstra's P and V).

WORKERS processes each enter the critical section ROUNDS times. Inside, they
update a shared record in two steps that must not interleave: they bump an
``inside`` count (which must then be exactly 1), read the counter, write it
back plus one, and leave. The semaphore starts at 1: ``acquire`` (P) takes it
to 0, so every other process waits; ``release`` (V) gives it back.

``--sysv`` uses a System V semaphore with SEM_UNDO instead, and also shows why
that matters: one extra worker is killed (SIGKILL) while it is inside the
critical section, and the kernel releases the semaphore for it, so the others
carry on. (A POSIX semaphore held by a dead process stays taken for good.)

Run:  python examples/critical_section.py [WORKERS] [ROUNDS] [--sysv]
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sys
import time

from unixipc import PosixSemaphore, PosixSharedMemory, SysVSemaphoreSet

INSIDE, COUNTER, VICTIM_INSIDE = 0, 1, 2  # int64 slots in the shared record


class BinarySemaphore:
    """P and V on either kind of semaphore, opened in this process."""

    def __init__(self, address: str | int) -> None:
        if isinstance(address, str):
            self.posix: PosixSemaphore | None = PosixSemaphore.open(address)
        else:
            self.posix = None
            self.sysv = SysVSemaphoreSet.open_id(address)

    def acquire(self) -> None:
        if self.posix is not None:
            self.posix.acquire()
        else:
            self.sysv.op([(0, -1)], undo=True)  # the kernel gives it back if we die

    def release(self) -> None:
        if self.posix is not None:
            self.posix.release()
        else:
            self.sysv.op([(0, 1)], undo=True)

    def close(self) -> None:
        (self.posix or self.sysv).close()


def worker(memory_name: str, address: str | int, rounds: int) -> int:
    """Enter the critical section ``rounds`` times; return the most processes seen inside."""
    most_inside = 0
    lock = BinarySemaphore(address)
    with PosixSharedMemory.open(memory_name) as memory:
        record = memory.buf.cast("q")
        for _ in range(rounds):
            lock.acquire()
            record[INSIDE] += 1
            most_inside = max(most_inside, record[INSIDE])
            value = record[COUNTER]
            if random.random() < 0.01:
                time.sleep(0)  # give up the processor now and then, mid-update
            record[COUNTER] = value + 1
            record[INSIDE] -= 1
            lock.release()
        record.release()
    lock.close()
    return most_inside


def die_inside(memory_name: str, address: int) -> None:
    """Enter the critical section and never leave (the parent kills us there)."""
    lock = BinarySemaphore(address)
    lock.acquire()
    memory = PosixSharedMemory.open(memory_name)
    memory.buf.cast("q")[VICTIM_INSIDE] = 1
    time.sleep(600)


def main(workers: int = 4, rounds: int = 2000, sysv: bool = False) -> None:
    memory_name = f"/critical-section-{os.getpid()}"
    memory = PosixSharedMemory.create(memory_name, 24)
    address: str | int
    if sysv:
        # IPC_PRIVATE (key 0): a new set that only its id (passed on) finds.
        lock: PosixSemaphore | SysVSemaphoreSet = SysVSemaphoreSet.create(0, 1, values=[1])
        address = lock.id
    else:
        address = f"/critical-section-lock-{os.getpid()}"
        lock = PosixSemaphore.create(address, value=1)
    context = multiprocessing.get_context("fork")
    try:
        if sysv:
            # A process that dies holding the semaphore, before the others start.
            victim = context.Process(target=die_inside, args=(memory_name, address))
            victim.start()
            record = memory.buf.cast("q")
            while record[VICTIM_INSIDE] == 0:
                time.sleep(0.01)
            record.release()
            os.kill(victim.pid or 0, signal.SIGKILL)
            victim.join()
            print(f"killed worker {victim.pid} inside the critical section; SEM_UNDO released it")
        with context.Pool(workers) as pool:
            most = pool.starmap(worker, [(memory_name, address, rounds)] * workers)
        record = memory.buf.cast("q")
        counter = record[COUNTER]
        record.release()
    finally:
        lock.unlink()
        lock.close()
        memory.unlink()
        memory.close()
    print(f"{workers} processes x {rounds} rounds: counter {counter}, expected {workers * rounds}")
    print(f"at most {max(most)} process(es) inside the critical section at once")
    if counter != workers * rounds or max(most) != 1:
        raise SystemExit("mutual exclusion failed")


if __name__ == "__main__":
    numbers = [int(arg) for arg in sys.argv[1:] if arg != "--sysv"]
    main(*numbers[:2], sysv="--sysv" in sys.argv)
