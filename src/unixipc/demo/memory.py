"""Demo of shared memory: POSIX, System V and a mapped file, each filled by a forked child."""

from __future__ import annotations

import os
import tempfile
import time
import zlib

from ..mapped_file import MappedFile
from ..posix_shm import PosixSharedMemory
from ..sysv_shm import SysVSharedMemory
from ._common import DemoLine, fork_child, reap

SIZE = 8 * 1024 * 1024
PATTERN = bytes(range(256)) * (SIZE // 256)
EXPECTED = zlib.crc32(PATTERN)


def _check(buf: memoryview, facility: str) -> None:
    if zlib.crc32(buf) != EXPECTED:
        raise RuntimeError(f"{facility} demo: the parent read something else than the child wrote")


def run_shm() -> DemoLine:
    """A child opens a POSIX shared memory object by name and fills it; the parent reads it."""
    name = f"/unixipc-demo-{os.getpid()}"
    start = time.perf_counter()
    with PosixSharedMemory.create(name, SIZE) as memory:
        try:

            def fill() -> None:
                with PosixSharedMemory.open(name) as child_memory:
                    child_memory.buf[:] = PATTERN

            reap(fork_child(fill))
            _check(memory.buf, "shm")
        finally:
            memory.unlink()
    elapsed = time.perf_counter() - start
    return DemoLine(
        "shm", "8 MiB written by a forked child into /dev/shm, read in place by the parent", elapsed
    )


def run_sysv_shm() -> DemoLine:
    """A child attaches an IPC_PRIVATE System V segment by id and fills it."""
    start = time.perf_counter()
    with SysVSharedMemory.create(0, SIZE) as memory:
        try:
            segment_id = memory.id

            def fill() -> None:
                with SysVSharedMemory.open_id(segment_id) as child_memory:
                    child_memory.buf[:] = PATTERN

            reap(fork_child(fill))
            attached = memory.info().attach_count
            _check(memory.buf, "sysv-shm")
        finally:
            memory.unlink()  # gone once we detach
    elapsed = time.perf_counter() - start
    return DemoLine(
        "sysv-shm",
        f"8 MiB written by a forked child into segment id {segment_id}, read in place by the "
        f"parent ({attached} attached at the end)",
        elapsed,
    )


def run_mmap() -> DemoLine:
    """A child maps a file and fills it; the parent reads the file with plain read()."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unixipc-demo-") as directory:
        path = os.path.join(directory, "mapped")
        with MappedFile.create(path, SIZE):

            def fill() -> None:
                with MappedFile.open(path) as child_memory:
                    child_memory.buf[:] = PATTERN
                    child_memory.flush()

            reap(fork_child(fill))
        with open(path, "rb") as file:
            _check(memoryview(file.read()), "mmap")
    elapsed = time.perf_counter() - start
    return DemoLine(
        "mmap",
        "8 MiB written through a forked child's mapping, read back with read(2)",
        elapsed,
    )
