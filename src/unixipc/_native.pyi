# Stub for the C extension unixipc._native, checked by mypy.stubtest.
# Each facility's C file adds its functions here, in its own section.

# common.c
NO_DEADLINE: int
ABI_VERSION: int

ALARM_SIGNAL: int

def monotonic_to_clock(deadline_ns: int, clock_id: int, /) -> int: ...
def blocking_read(fd: int, size: int, deadline_ns: int, /) -> bytes: ...

# posix_shm.c
def shm_open(name: str, flags: int, mode: int, /) -> int: ...
def shm_unlink(name: str, /) -> None: ...
