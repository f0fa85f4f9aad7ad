"""File locks (flock and fcntl record/OFD locks) between real processes and threads."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Names
from tests.helpers import Child, assert_elapsed, fd_count, wait_until
from unixipc import (
    ClosedResourceError,
    DeadlockError,
    FileLock,
    IPCError,
    LockHolder,
    PosixSharedMemory,
    RecordLock,
    TimeoutExpired,
    WouldBlock,
    posix_shm,
)

# util-linux flock(1), a real peer (Debian always has util-linux).
FLOCK = shutil.which("flock") or "/usr/bin/flock"
COMMAND = [sys.executable, "-m", "unixipc.cli.main"]


def _touch(path: str) -> None:
    Path(path).touch()


def _make_lock(kind: str, path: str) -> FileLock | RecordLock:
    if kind == "flock":
        return FileLock(path)
    return RecordLock(path, per_open_file=kind == "ofd")


def _hold_and_sleep(kind: str, path: str, ready: str, shared: bool) -> None:
    lock = _make_lock(kind, path)
    if isinstance(lock, FileLock):
        lock.acquire(shared=shared)
    else:
        lock.acquire(exclusive=not shared)
    _touch(ready)
    time.sleep(120)


def _try_now(kind: str, path: str, shared: bool) -> str:
    lock = _make_lock(kind, path)
    try:
        if isinstance(lock, FileLock):
            lock.acquire(shared=shared, timeout=0)
        else:
            lock.acquire(exclusive=not shared, timeout=0)
    except WouldBlock:
        return "busy"
    finally:
        lock.close()
    return "free"


@pytest.fixture
def holder(names: Names) -> Iterator[Callable[..., Child]]:
    """Start a child that holds a lock until killed (killed at teardown at the latest)."""
    started: list[Child] = []

    def start(kind: str, path: str, *, shared: bool = False) -> Child:
        ready = names.path("ready")
        child = Child(_hold_and_sleep, kind, path, ready, shared)
        started.append(child)
        wait_until(lambda: os.path.exists(ready))
        return child

    yield start
    for child in started:
        child.kill()


KINDS = ["flock", "posix", "ofd"]


@pytest.mark.parametrize("kind", KINDS)
def test_exclusive_excludes_and_shared_shares_across_processes(
    kind: str, names: Names, holder: Callable[..., Child]
) -> None:
    path = names.path("lock")
    child = holder(kind, path, shared=True)
    assert _try_now(kind, path, True) == "free"
    assert _try_now(kind, path, False) == "busy"
    child.kill()
    child = holder(kind, path)
    assert _try_now(kind, path, True) == "busy"
    assert _try_now(kind, path, False) == "busy"
    child.kill()  # SIGKILL: the kernel releases the lock
    assert child.process.exitcode == -signal.SIGKILL
    assert _try_now(kind, path, False) == "free"


@pytest.mark.parametrize("kind", KINDS)
def test_timeouts_fire_on_time(kind: str, names: Names, holder: Callable[..., Child]) -> None:
    path = names.path("lock")
    holder(kind, path)
    lock = _make_lock(kind, path)
    try:
        with pytest.raises(WouldBlock, match="would block"):
            lock.acquire(timeout=0)
        for timeout in (0.05, 0.3):
            started = time.monotonic()
            with pytest.raises(TimeoutExpired, match="timed out"):
                lock.acquire(timeout=timeout)
            assert_elapsed(started, timeout)
        assert not lock.locked
    finally:
        lock.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_waiter_gets_the_lock_when_the_holder_is_killed(
    kind: str, names: Names, holder: Callable[..., Child]
) -> None:
    path = names.path("lock")
    child = holder(kind, path)
    lock = _make_lock(kind, path)
    got: list[float] = []

    def wait() -> None:
        lock.acquire(timeout=60)
        got.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.1)
    assert not got
    child.kill()
    waiter.join(60)
    assert got
    lock.release()
    lock.close()


def _increment(kind: str, path: str, counter_name: str, times: int) -> int:
    memory = PosixSharedMemory.open(counter_name)
    counter = memory.buf
    lock = _make_lock(kind, path)
    for _ in range(times):
        with lock:
            value = int.from_bytes(counter[:8], "little")
            counter[:8] = (value + 1).to_bytes(8, "little")
    lock.close()
    del counter
    memory.close()
    return times


@pytest.mark.parametrize("kind", KINDS)
def test_processes_incrementing_under_the_lock_lose_nothing(
    kind: str, names: Names, cleanup: Callable[..., None]
) -> None:
    path = names.path("lock")
    counter_name = names.posix("counter")
    memory = PosixSharedMemory.create(counter_name, 8)
    cleanup(posix_shm.unlink, counter_name)
    cleanup(memory.close)
    processes, times = 4, 300
    workers = [Child(_increment, kind, path, counter_name, times) for _ in range(processes)]
    assert sum(worker.result() for worker in workers) == processes * times
    assert int.from_bytes(memory.buf[:8], "little") == processes * times


def _close_inherited(lock: FileLock | RecordLock) -> bool:
    was_locked = lock.locked
    lock.close()
    return was_locked


@pytest.mark.parametrize("kind", KINDS)
def test_a_forked_child_never_releases_the_parents_lock(kind: str, names: Names) -> None:
    path = names.path("lock")
    lock = _make_lock(kind, path)
    lock.acquire()
    # flock and OFD locks belong to the open file, which fork shares: the child's copy
    # of the object must not unlock it when it closes (or is collected).
    assert Child(_close_inherited, lock, method="fork").result() is False
    assert Child(_try_now, kind, path, False).result() == "busy"
    assert lock.locked
    lock.close()
    assert Child(_try_now, kind, path, False).result() == "free"


# ---- FileLock ------------------------------------------------------------------------


def test_file_lock_creates_the_file_and_holds_no_descriptor_when_idle(names: Names) -> None:
    path = names.path("lock")
    before = fd_count()
    lock = FileLock(path, permissions=0o640)
    assert fd_count() == before
    old = os.umask(0o077)
    try:
        with lock:
            assert lock.locked
            assert not lock.shared
            assert fd_count() == before + 1
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert fd_count() == before
    lock.acquire(shared=True)
    assert lock.shared
    with pytest.raises(IPCError, match="already held by this FileLock"):
        lock.acquire(timeout=0)
    lock.close()  # releases
    assert fd_count() == before
    lock.close()
    with pytest.raises(ClosedResourceError):
        lock.acquire()
    with FileLock(path) as other:
        other.release()
        with pytest.raises(IPCError, match="not held"):
            other.release()
        other.acquire()
    with FileLock(names.directory):  # a directory can be locked, as with flock(1)
        pass


def test_file_lock_objects_in_threads_exclude_each_other(names: Names) -> None:
    path = names.path("lock")
    first, second = FileLock(path), FileLock(path)
    first.acquire()
    with pytest.raises(WouldBlock):
        second.acquire(timeout=0)
    first.release()
    second.acquire(timeout=0)
    second.release()


def test_file_lock_bad_arguments(names: Names) -> None:
    with pytest.raises(TypeError, match="path"):
        FileLock(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="permissions"):
        FileLock(names.path(), permissions=-1)
    lock = FileLock(names.path())
    with pytest.raises(TypeError, match="shared"):
        lock.acquire(shared="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        lock.acquire(timeout=-1)
    assert not os.path.exists(lock.path)  # nothing was created


def test_flock_command_and_file_lock_exclude_each_other(names: Names) -> None:
    path = names.path("lock")
    with FileLock(path):
        assert subprocess.run([FLOCK, "-n", path, "true"], check=False).returncode == 1
        assert subprocess.run([FLOCK, "-n", "-s", path, "true"], check=False).returncode == 1
    assert subprocess.run([FLOCK, "-n", path, "true"], check=False).returncode == 0
    with FileLock(path) as lock:
        lock.release()
        lock.acquire(shared=True)
        assert subprocess.run([FLOCK, "-n", "-s", path, "true"], check=False).returncode == 0
        assert subprocess.run([FLOCK, "-n", path, "true"], check=False).returncode == 1
    # flock(1) holding the lock excludes FileLock.
    peer = subprocess.Popen(
        [FLOCK, path, "sh", "-c", "echo locked; read line"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        assert peer.stdin is not None
        assert peer.stdout.readline() == "locked\n"
        lock = FileLock(path)
        with pytest.raises(WouldBlock):
            lock.acquire(timeout=0)
        peer.stdin.write("done\n")
        peer.stdin.close()
        lock.acquire(timeout=60)
        lock.release()
        assert peer.wait(60) == 0
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
        for stream in (peer.stdin, peer.stdout):
            if stream is not None:
                stream.close()


# ---- RecordLock ----------------------------------------------------------------------


def _hold_range(path: str, start: int, length: int, exclusive: bool, ready: str) -> None:
    lock = RecordLock(path, start, length)
    lock.acquire(exclusive=exclusive)
    _touch(ready)
    time.sleep(120)


def test_ranges_and_holder_report_the_other_process(names: Names) -> None:
    path = names.path("records")
    ready = names.path("ready")
    child = Child(_hold_range, path, 10, 10, True, ready)
    try:
        wait_until(lambda: os.path.exists(ready))
        before, after = RecordLock(path, 0, 10), RecordLock(path, 20, 0)
        assert before.holder() is None  # bytes 0..9 and 20.. are free
        assert after.holder() is None
        with before, after:
            pass
        before.close()
        after.close()
        overlapping = RecordLock(path, 15, 1)
        expected = LockHolder(pid=child.pid, exclusive=True, start=10, length=10)
        assert overlapping.holder() == expected
        with pytest.raises(WouldBlock):
            overlapping.acquire(exclusive=False, timeout=0)
        overlapping.close()
    finally:
        child.kill()
    ready = names.path("ready")
    child = Child(_hold_range, path, 0, 0, False, ready)
    try:
        wait_until(lambda: os.path.exists(ready))
        whole = RecordLock(path)
        assert whole.holder(exclusive=True) == LockHolder(child.pid, False, 0, 0)
        assert whole.holder(exclusive=False) is None  # shared does not block shared
        whole.acquire(exclusive=False, timeout=0)
        whole.close()  # releases
    finally:
        child.kill()


def _deadlock_side(path: str, ready: str, go: str) -> str:
    mine = RecordLock(path, 1, 1)
    wanted = RecordLock(mine.fileno(), 0, 1)  # the same descriptor: see the pitfall
    try:
        with mine:
            _touch(ready)
            wait_until(lambda: os.path.exists(go))
            try:
                wanted.acquire(timeout=60)
            except DeadlockError as error:
                return f"deadlock: {error}"
            wanted.release()
            return "acquired"
    finally:
        wanted.close()
        mine.close()


def test_a_deadlock_between_two_processes_is_detected(names: Names) -> None:
    path = names.path("records")
    ready, go = names.path("ready"), names.path("go")
    mine = RecordLock(path, 0, 1)
    mine.acquire()
    child = Child(_deadlock_side, path, ready, go)
    wait_until(lambda: os.path.exists(ready))
    _touch(go)
    wanted = RecordLock(mine.fileno(), 1, 1)
    try:
        wanted.acquire(timeout=60)
    except DeadlockError as error:
        here = f"deadlock: {error}"
        mine.release()  # let the other side through
    else:
        here = "acquired"
        wanted.release()
        mine.release()
    # Exactly one side was told; the kernel picks which.
    outcomes = sorted([here, child.result()])
    assert outcomes[0] == "acquired"
    assert outcomes[1].startswith("deadlock: [Errno 35] record lock on 'fd ")
    assert "would deadlock" in outcomes[1]
    wanted.close()
    mine.close()


def test_ofd_locks_exclude_threads_of_one_process_and_posix_locks_do_not(names: Names) -> None:
    path = names.path("records")
    first = RecordLock(path, per_open_file=True)
    second = RecordLock(path, per_open_file=True)
    first.acquire()
    outcome: list[object] = []

    def other_thread() -> None:
        try:
            second.acquire(timeout=0)
        except WouldBlock:
            outcome.append("busy")
        outcome.append(second.holder())
        second.acquire(timeout=60)  # until the first thread releases
        outcome.append("acquired")
        second.release()

    thread = threading.Thread(target=other_thread)
    thread.start()
    wait_until(lambda: len(outcome) == 2)
    first.release()
    thread.join(60)
    assert outcome == ["busy", LockHolder(None, True, 0, 0), "acquired"]
    first.close()
    second.close()
    # POSIX record locks belong to the process: its threads never exclude each other.
    third, fourth = RecordLock(path), RecordLock(path)
    third.acquire()
    thread = threading.Thread(target=lambda: fourth.acquire(timeout=0))
    thread.start()
    thread.join(60)
    assert fourth.locked
    fourth.close()
    third.close()


def test_closing_any_descriptor_drops_posix_locks_but_not_ofd_locks(names: Names) -> None:
    path = names.path("records")
    posix = RecordLock(path, 0, 1)
    ofd = RecordLock(path, 100, 1, per_open_file=True)
    posix.acquire(timeout=10)
    ofd.acquire(timeout=10)
    assert Child(_try_range, path, 0, 1).result() == "busy"
    # Unrelated code opens and closes the same file: the POSIX lock is gone.
    with open(path, "rb"):
        pass
    assert Child(_try_range, path, 0, 1).result() == "free"
    assert Child(_try_range, path, 100, 1).result() == "busy"
    posix.close()
    ofd.close()


def _try_range(path: str, start: int, length: int) -> str:
    lock = RecordLock(path, start, length)
    try:
        lock.acquire(timeout=0)
    except WouldBlock:
        return "busy"
    finally:
        lock.close()
    return "free"


def test_record_lock_on_a_callers_descriptor_leaves_it_open(names: Names) -> None:
    path = names.path("records")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with RecordLock(fd, 0, 4) as lock:
            assert lock.fileno() == fd
        lock.close()
        os.fstat(fd)  # still open
        read_only = os.open(path, os.O_RDONLY)
        lock = RecordLock(read_only)
        with pytest.raises(IPCError, match="not open for writing"):
            lock.acquire()
        lock.acquire(exclusive=False)
        lock.close()
        os.close(read_only)
    finally:
        os.close(fd)


def test_record_lock_bad_arguments(names: Names) -> None:
    path = names.path("records")
    with pytest.raises(ValueError, match="start"):
        RecordLock(path, -1)
    with pytest.raises(ValueError, match="length"):
        RecordLock(path, 0, -5)
    with pytest.raises(TypeError, match="per_open_file"):
        RecordLock(path, per_open_file=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path_or_fd"):
        RecordLock(b"/tmp/x")  # type: ignore[arg-type]
    assert not os.path.exists(path)
    with pytest.raises(IPCError, match="Bad file descriptor"):
        RecordLock(999_999)


# ---- the unixipc lock command ----------------------------------------------------------


def unixipc(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def test_lock_command_runs_under_the_lock_and_returns_its_status(names: Names) -> None:
    path = names.path("lock")
    inside = unixipc("lock", path, "--", FLOCK, "-n", path, "true")
    assert inside.returncode == 1  # flock(1) cannot get it while we hold it
    shared = unixipc("lock", "--shared", path, "--", FLOCK, "-n", "-s", path, "echo", "shared")
    assert (shared.returncode, shared.stdout) == (0, "shared\n")
    assert unixipc("lock", path, "--", "sh", "-c", "exit 7").returncode == 7
    assert unixipc("lock", path, "--", "sh", "-c", "kill -9 $$").returncode == 128 + 9
    missing = unixipc("lock", path, "--", "no-such-command-here")
    assert missing.returncode == 127
    assert missing.stderr.count("\n") == 1
    assert _try_now("flock", path, False) == "free"  # released after each command


def test_lock_command_times_out_with_a_one_line_error(names: Names) -> None:
    path = names.path("lock")
    peer = subprocess.Popen([FLOCK, path, "sh", "-c", "echo locked; read line"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert peer.stdout is not None
        assert peer.stdout.readline() == "locked\n"
        started = time.monotonic()
        result = unixipc("lock", "--timeout", "0.5", path, "--", "echo", "never")
        assert time.monotonic() - started >= 0.5
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("unixipc lock: error:")
        assert "timed out" in result.stderr
        nowait = unixipc("lock", "--timeout", "0", path, "--", "echo", "never")
        assert (nowait.returncode, nowait.stdout) == (1, "")
        assert "would block" in nowait.stderr
        no_command = unixipc("lock", path)
        assert no_command.returncode == 1
        assert "no command" in no_command.stderr
    finally:
        peer.kill()
        peer.wait()
        for stream in (peer.stdin, peer.stdout):
            if stream is not None:
                stream.close()
