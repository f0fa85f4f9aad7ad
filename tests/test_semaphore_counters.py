"""N processes increment one counter in shared memory under each kind of semaphore:
the total is exact. The increment is a read, then a write (not atomic), so only
the semaphore's mutual exclusion keeps increments from being lost."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Names
from tests.helpers import Child
from unixipc import (
    PosixSemaphore,
    PosixSharedMemory,
    SysVSemaphoreSet,
    posix_sem,
    posix_shm,
    sysv_sem,
)

PROCESSES = 4
INCREMENTS = 5000
SEMAPHORE_OFFSET = 64  # the counter is at 0, a memory-based semaphore here


def _increment(kind: str, memory_name: str, lock_address: str | int, start: Any) -> int:
    memory = PosixSharedMemory.open(memory_name)
    counter = memory.buf[:8].cast("q")
    if kind == "posix-named":
        named = PosixSemaphore.open(str(lock_address))
        acquire, release, close = named.acquire, named.release, named.close
    elif kind == "posix-memory":
        placed = PosixSemaphore.in_buffer(memory, SEMAPHORE_OFFSET)
        acquire, release, close = placed.acquire, placed.release, placed.close
    else:
        semaphores = SysVSemaphoreSet.open(int(lock_address))
        down, up = [(0, -1)], [(0, 1)]

        def acquire() -> None:
            semaphores.op(down, undo=True)

        def release() -> None:
            semaphores.op(up, undo=True)

        close = semaphores.close
    start.wait(60)  # everyone at once, so that they really contend
    for _ in range(INCREMENTS):
        acquire()
        value = counter[0]
        counter[0] = value + 1
        release()
    close()
    counter.release()
    memory.close()
    return INCREMENTS


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("posix-named", "fork"),
        ("posix-memory", "fork"),
        ("sysv", "fork"),
        ("posix-named", "spawn"),
    ],
)
def test_the_total_is_exact(
    kind: str, method: str, names: Names, cleanup: Callable[..., None]
) -> None:
    memory_name = names.posix("counter")
    memory = PosixSharedMemory.create(memory_name, 4096)
    cleanup(posix_shm.unlink, memory_name)
    cleanup(memory.close)
    lock: PosixSemaphore | SysVSemaphoreSet
    if kind == "posix-named":
        address: str | int = names.posix("lock")
        lock = PosixSemaphore.create(str(address), value=1)
        cleanup(posix_sem.unlink, address)
    elif kind == "posix-memory":
        address = SEMAPHORE_OFFSET
        lock = PosixSemaphore.in_buffer(memory, SEMAPHORE_OFFSET, value=1)
    else:
        address = names.key()
        lock = SysVSemaphoreSet.create(address, 1, values=[1])
        cleanup(sysv_sem.unlink, address)
    cleanup(lock.close)
    start = multiprocessing.get_context(method).Event()
    workers = [
        Child(_increment, kind, memory_name, address, start, method=method)
        for _ in range(PROCESSES)
    ]
    start.set()
    assert sum(worker.result() for worker in workers) == PROCESSES * INCREMENTS
    counter = memory.buf[:8].cast("q")
    assert counter[0] == PROCESSES * INCREMENTS
    counter.release()
    if isinstance(lock, SysVSemaphoreSet):
        assert lock.values == [1]
    else:
        assert lock.value == 1
