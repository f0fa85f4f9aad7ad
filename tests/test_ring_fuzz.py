"""A corruption fuzzer: rings damaged from a second mapping while other processes use them.

Producers and consumers run in forked processes, calling every method of the
ring with short timeouts, while this process rewrites positions, record
headers, slots and waiter counts with values chosen to hurt (misaligned, near
the end of the lap, past the capacity, near 2**64). Every call must return or
raise a unixipc exception (IPCError for the damage): no process may crash, hang
(a hang with the GIL held ignores the stop flag), or, in the sanitizer run of
`make test`, make AddressSanitizer or UndefinedBehaviorSanitizer report.

UNIXIPC_RING_FUZZ_SECONDS sets how long it runs (default 6).
"""

from __future__ import annotations

import ctypes
import glob
import json
import mmap
import os
import random
import signal
import struct
import time
import traceback
from pathlib import Path

from tests.conftest import Names
from unixipc import (
    EndOfChannel,
    IPCError,
    PeerDied,
    PosixSharedMemory,
    Ring,
    TimeoutExpired,
    WouldBlock,
    ring,
)

CAPACITY = 4096
DATA = 4096 + 128 * 64
TAIL, HEAD, FREE = 64, 128, 192
FUTEX_WORDS = (256, 260, 320, 324, 384, 388)  # futexes, waiter counts, event words
SECONDS = float(os.environ.get("UNIXIPC_RING_FUZZ_SECONDS", "6"))
EXPECTED = (EndOfChannel, PeerDied, TimeoutExpired, WouldBlock)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int]
_libc.mmap.argtypes.append(ctypes.c_long)
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_PAGE = 4096
_MAP_PRIVATE_ANONYMOUS = 0x22


def _open_guarded(name: str) -> tuple[Ring, int]:
    """Open the ring so that an inaccessible page follows its mapping.

    An access past the mapping then dies of SIGSEGV instead of landing silently in
    whatever mapping came next (AddressSanitizer does not watch mapped files).
    Returns the handle and the guard page's address (0 if the placement failed).
    """
    size = DATA + CAPACITY
    reserved = _libc.mmap(None, size + _PAGE, 0, _MAP_PRIVATE_ANONYMOUS, -1, 0)
    assert reserved not in (None, ctypes.c_void_p(-1).value)
    _libc.munmap(reserved, size)  # the kernel puts the next mapping of this size there
    guard = reserved + size
    try:
        handle = Ring.open(name)
    except BaseException:
        _libc.munmap(guard, _PAGE)
        raise
    piece = ctypes.c_char.from_buffer(handle._memory.buf)
    placed = ctypes.addressof(piece) == reserved
    del piece
    if not placed:
        _libc.munmap(guard, _PAGE)
    return handle, guard if placed else 0


def _work(name: str, role: str, seed: int, stop: mmap.mmap, log: Path) -> None:
    """Call the ring at random until told to stop; record what each call gave."""
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    handle: Ring | None = None
    guard = 0
    buffer = bytearray(CAPACITY)
    while stop[0] == 0:
        roll = rng.random()
        try:
            if handle is None or roll < 0.02:  # (re)open: the layout is checked again
                if handle is not None:
                    handle.close()
                    handle = None
                if guard:
                    _libc.munmap(guard, _PAGE)
                    guard = 0
                time.sleep(0.001)
                handle, guard = _open_guarded(name)
                outcomes["guarded"] = outcomes.get("guarded", 0) + (guard != 0)
            elif role == "producer" and roll < 0.6:
                handle.send(bytes(rng.randrange(handle.max_message_size + 1)), timeout=0.02)
            elif role == "producer":
                sizes = [rng.randrange(300) for _ in range(rng.randrange(1, 12))]
                handle.send_many([bytes(size) for size in sizes], timeout=0.02)
            elif roll < 0.3:
                handle.receive(timeout=0.02)
            elif roll < 0.5:
                handle.receive_into(buffer, timeout=0.02)
            elif roll < 0.7:
                handle.receive_many(rng.randrange(1, 20), timeout=0.02)
            elif roll < 0.9:
                with handle.receive_view(timeout=0.02) as view:
                    bytes(view)
            else:
                handle.info()
            outcome = "ok"
        except EXPECTED as error:
            outcome = type(error).__name__
        except IPCError as error:
            text = str(error)
            outcome = (
                "corrupt"
                if "is corrupt" in text
                else "unusable"  # the layout line was damaged: open refuses the ring
                if "is not a usable unixipc ring" in text
                else f"IPCError: {text}"
            )
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if handle is not None:
        handle.close()
    log.write_text(json.dumps(outcomes))


def _start(name: str, role: str, seed: int, stop: mmap.mmap, log: Path) -> int:
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            _work(name, role, seed, stop, log)
        except BaseException:
            log.write_text(json.dumps({"failed": traceback.format_exc()}))
            status = 3
        finally:
            os._exit(status)
    return pid


def _nasty(rng: random.Random, near: int) -> int:
    """A value worth writing over a position or a length (as a 64-bit word)."""
    choices = (
        0,
        CAPACITY - 8,
        near + 8,
        near + 16 * rng.randrange(64),
        near - 16 * rng.randrange(64),
        near + CAPACITY * rng.randrange(1, 4),
        1 << 63,
        (1 << 64) - 16,
        rng.randrange(2 * CAPACITY),
        rng.getrandbits(64),
    )
    return rng.choice(choices) % (1 << 64)


def _damage(memory: PosixSharedMemory, rng: random.Random) -> None:
    buf = memory.buf

    def word(offset: int) -> int:
        return int(struct.unpack_from("<Q", buf, offset)[0])

    def put(offset: int, value: int, size: int = 8) -> None:
        buf[offset : offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")

    target = rng.randrange(10)
    record = DATA + 16 * rng.randrange(CAPACITY // 16)
    slot = 4096 + 64 * rng.randrange(8)
    if target <= 2:  # a position
        offset = (TAIL, HEAD, FREE)[target]
        put(offset, _nasty(rng, word(offset)))
    elif target == 3:  # a record's length or size
        put(record + rng.choice((0, 4)), _nasty(rng, word(record)), 4)
    elif target == 4:  # a record's tag: a bit flipped, or another kind
        tag = word(record + 8)
        put(record + 8, tag ^ (1 << rng.randrange(64)) if rng.random() < 0.5 else tag | 15)
    elif target == 5:  # a slot's state or roles
        put(slot + rng.choice((0, 4)), rng.randrange(5), 4)
    elif target == 6:  # a slot's published ranges
        offset = slot + 16 + 8 * rng.randrange(6)
        put(offset, _nasty(rng, word(HEAD)))
    elif target == 7:  # a slot's sleepers
        put(slot + 12, rng.getrandbits(32), 4)
    elif target == 8:  # futex words, waiter counts, events
        put(rng.choice(FUTEX_WORDS), rng.getrandbits(32), 4)
    else:  # the layout line, which every open checks
        put(rng.choice((16, 40, 48)), _nasty(rng, CAPACITY))


def _reap(pids: dict[int, str], deadline: float) -> dict[int, int]:
    statuses: dict[int, int] = {}
    while len(statuses) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in statuses:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    statuses[pid] = status
        time.sleep(0.01)
    for pid in pids:
        if pid not in statuses:  # hung: kill it, and fail below
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            statuses[pid] = -1
    return statuses


def test_rings_damaged_while_in_use_give_errors_never_crashes_or_hangs(
    names: Names, tmp_path: Path
) -> None:
    rng = random.Random(int(os.environ.get("UNIXIPC_RING_FUZZ_SEED", "1")))
    totals: dict[str, int] = {}
    problems: list[str] = []
    workers: list[int] = []
    end = time.monotonic() + SECONDS
    rounds = 0
    while time.monotonic() < end:
        rounds += 1
        name = names.posix("fuzz")
        handle = Ring.create(name, CAPACITY)
        stop = mmap.mmap(-1, 1)
        try:
            pids = {}
            for index, role in enumerate(("producer", "producer", "consumer", "consumer")):
                log = tmp_path / f"{rounds}-{index}.json"
                pids[_start(name, role, rng.getrandbits(32), stop, log)] = str(log)
            workers += pids
            with PosixSharedMemory.open(name) as memory:
                time.sleep(0.1)  # undamaged traffic first
                until = time.monotonic() + 0.4
                while time.monotonic() < until:
                    _damage(memory, rng)
                    time.sleep(rng.uniform(0, 0.01))
            stop[0] = 1
            statuses = _reap(pids, time.monotonic() + 60)
        finally:
            stop[0] = 1
            handle.close()
            ring.unlink(name)
            stop.close()
        for pid, status in statuses.items():
            log = Path(pids[pid])
            outcomes = json.loads(log.read_text()) if log.exists() else {}
            if status != 0 or "failed" in outcomes:
                how = "hung" if status == -1 else f"status {status:#x}"
                problems.append(f"round {rounds}: worker {pid} {how}: {outcomes.get('failed')}")
            for outcome, count in outcomes.items():
                if outcome != "failed":
                    totals[outcome] = totals.get(outcome, 0) + count
    reports = os.environ.get("UNIXIPC_SANITIZER_REPORTS")
    if reports:  # the sanitizer run: each process writes its reports to a file of its own
        ours = [path for pid in workers for path in glob.glob(f"{reports}/*.{pid}")]
        problems += [f"sanitizer report {path}:\n{Path(path).read_text()[:3000]}" for path in ours]
    assert not problems, "\n".join(problems)
    unexpected = {key: count for key, count in totals.items() if key.startswith("IPCError")}
    assert not unexpected, unexpected
    assert totals.get("corrupt", 0) > 0, totals  # the damage was seen...
    assert totals.get("ok", 0) > 0, totals  # ...and so was the traffic
