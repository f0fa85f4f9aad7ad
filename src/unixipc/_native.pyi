# Stub for the C extension unixipc._native, checked by mypy.stubtest.
# Each facility's C file adds its functions here, in its own section.

from collections.abc import Iterable

# common.c
NO_DEADLINE: int
ABI_VERSION: int

def monotonic_to_clock(deadline_ns: int, clock_id: int, /) -> int: ...

# posix_shm.c
def shm_open(name: str, flags: int, mode: int, /) -> int: ...
def shm_unlink(name: str, /) -> None: ...

# signals.c
SI_QUEUE: int

def sigqueue(pid: int, signo: int, value: int, /) -> None: ...
def sigtimedwait(
    signals: Iterable[int], deadline_ns: int, /
) -> tuple[int, int, int, int, int] | None: ...
def signalfd(signals: Iterable[int], /) -> int: ...
