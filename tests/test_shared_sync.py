"""Process-shared mutexes, conditions, rwlocks and barriers between real processes."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Names
from tests.helpers import Child, assert_elapsed, compile_c, wait_until
from unixipc import (
    ClosedResourceError,
    DeadlockError,
    IPCError,
    IPCOSError,
    OwnerDied,
    PermissionDeniedError,
    PosixSharedMemory,
    ResourceExistsError,
    ResourceNotFoundError,
    SharedBarrier,
    SharedCondition,
    SharedMutex,
    SharedRWLock,
    TimeoutExpired,
    WouldBlock,
    posix_shm,
    shared_sync,
)


@pytest.fixture
def make(names: Names, cleanup: Callable[..., None]) -> Callable[..., Any]:
    """Create a named sync object that is closed and unlinked at teardown."""

    def create(cls: Any, *args: Any) -> Any:
        name = names.posix(cls.__name__.lower())
        obj = cls.create(name, *args)
        cleanup(posix_shm.unlink, name)
        cleanup(obj.close)
        return obj

    return create


def _touch(path: str) -> None:
    Path(path).touch()


def _open(kind: str, name: str) -> Any:
    cls = {
        "mutex": SharedMutex,
        "condition": SharedCondition,
        "rwlock-write": SharedRWLock,
        "rwlock-read": SharedRWLock,
    }[kind]
    return cls.open(name)


def _hold_and_sleep(kind: str, name: str, ready: str) -> None:
    """Take the lock, say so, and wait to be killed."""
    lock = _open(kind, name)
    if kind == "rwlock-read":
        lock.acquire_read()
    elif kind == "rwlock-write":
        lock.acquire_write()
    else:
        lock.acquire()
    _touch(ready)
    time.sleep(120)


def _try_now(kind: str, name: str) -> str:
    """From another process: can the lock be taken right now?"""
    lock = _open(kind, name)
    try:
        if kind == "rwlock-read":
            lock.acquire_read(timeout=0)
        elif kind == "rwlock-write":
            lock.acquire_write(timeout=0)
        else:
            lock.acquire(timeout=0)
    except WouldBlock:
        return "busy"
    except IPCOSError as error:
        return f"errno {error.errno}"
    lock.release()
    lock.close()
    return "free"


def _kill_holder(kind: str, name: str, names: Names) -> int:
    ready = names.path("ready")
    child = Child(_hold_and_sleep, kind, name, ready)
    try:
        wait_until(lambda: os.path.exists(ready))
    finally:
        child.kill()  # SIGKILL
    assert child.process.exitcode == -signal.SIGKILL
    return child.pid


# ---- creation, opening, placement --------------------------------------------------


@pytest.mark.parametrize("cls", [SharedMutex, SharedCondition, SharedRWLock, SharedBarrier])
def test_create_open_unlink_and_info(cls: Any, names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("sync")
    args = (3,) if cls is SharedBarrier else ()
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        cls.open(name)
    created = cls.create(name, *args, permissions=0o640)
    cleanup(posix_shm.unlink, name)
    assert os.stat(f"/dev/shm{name}").st_mode & 0o777 == 0o640
    with pytest.raises(ResourceExistsError, match="already exists"):
        cls.create(name, *args)
    opened = cls.open(name)
    again = cls.open_or_create(name, *args)
    info = opened.info()
    assert (info.kind, info.name, info.offset, info.size) == (cls.kind, name, 0, cls.SIZE)
    assert info.parties == (3 if cls is SharedBarrier else None)
    for obj in (created, opened, again):
        obj.close()
        obj.close()  # idempotent
    with pytest.raises(ClosedResourceError):
        created.info()
    created.unlink()
    assert not posix_shm.exists(name)
    with pytest.raises(ResourceNotFoundError):
        created.unlink()
    fresh = cls.open_or_create(name, *args)
    cleanup(posix_shm.unlink, name)
    fresh.close()


def test_opening_the_wrong_kind_or_foreign_memory_is_a_clear_error(
    names: Names, cleanup: Callable[..., None], make: Callable[..., Any], monkeypatch: Any
) -> None:
    mutex = make(SharedMutex)
    with pytest.raises(IPCError, match="holds a shared mutex, not a shared condition"):
        SharedCondition.open(mutex.name)
    barrier = make(SharedBarrier, 2)
    with pytest.raises(IPCError, match="exists for 2 parties, not 3"):
        SharedBarrier.open_or_create(barrier.name, 3)
    foreign = names.posix("foreign")
    with PosixSharedMemory.create(foreign, 4096) as memory:
        cleanup(posix_shm.unlink, foreign)
        with pytest.raises(IPCError, match="has 4096 bytes, not 56"):
            SharedMutex.open(foreign)
    garbage = names.posix("garbage")
    with PosixSharedMemory.create(garbage, SharedMutex.SIZE) as memory:
        cleanup(posix_shm.unlink, garbage)
        memory.buf[:4] = b"\xde\xad\xbe\xef"
        with pytest.raises(IPCError, match="not a unixipc object"):
            SharedMutex.open(garbage)
        # A creator that never finished: openers wait READY_TIMEOUT, then say so.
        memory.buf[:4] = bytes(4)
        monkeypatch.setattr(SharedMutex, "READY_TIMEOUT", 0.2)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired, match="creator may have died"):
            SharedMutex.open(garbage)
        assert_elapsed(started, 0.2)


def _open_when_ready(name: str) -> str:
    with SharedCondition.open(name) as cond:
        cond.notify()  # usable: the lock was initialized before the ready mark
    return "ok"


def test_an_opener_waits_for_a_creator_still_initializing(names: Names) -> None:
    name = names.posix("slow")
    memory = PosixSharedMemory.create(name, 0)  # made, not yet sized: as mid-create
    try:
        child = Child(_open_when_ready, name)
        time.sleep(0.1)
        os.ftruncate(memory.fileno(), SharedCondition.SIZE)
        with PosixSharedMemory.open(name) as sized:
            view = sized.buf[: SharedCondition.SIZE]
            shared_sync.SharedCondition._initialize(view, lambda _: None, "test")
            view.release()
        assert child.result() == "ok"
    finally:
        memory.close()
        posix_shm.unlink(name)


def test_in_buffer_places_objects_next_to_their_data(
    names: Names, cleanup: Callable[..., None], monkeypatch: Any
) -> None:
    name = names.posix("region")
    memory = PosixSharedMemory.create(name, 8192)
    cleanup(posix_shm.unlink, name)
    cleanup(memory.close)
    offsets = {SharedMutex: 0, SharedCondition: 64, SharedRWLock: 256, SharedBarrier: 4096}
    memory.buf[4100:4400] = b"\xff" * 300  # garbage where the barrier's fields will be
    placed: list[Any] = []
    for cls, offset in offsets.items():
        extra = {"parties": 1} if cls is SharedBarrier else {}
        placed.append(cls.in_buffer(memory.buf, offset, initialize=True, **extra))
        with pytest.raises(ResourceExistsError, match="already holds"):
            cls.in_buffer(memory.buf, offset, initialize=True, **extra)
    mutex, cond, rwlock, barrier = placed
    assert barrier.n_waiting == 0  # garbage after the first word was cleared
    assert mutex.info().name is None
    assert mutex.info().offset == 0
    with SharedMutex.in_buffer(memory.buf, 0, initialize=False) as same:  # `with` acquires
        assert _try_now_in_buffer(mutex) == "busy"
        same.release()
        same.acquire()
    same.close()
    with cond:
        cond.notify_all()
    with rwlock.read_lock(), rwlock.read_lock():
        pass
    assert barrier.wait() == 0
    with pytest.raises(IPCError, match="no name to unlink"):
        mutex.unlink()
    # The memory cannot be unmapped while objects live in it.
    with pytest.raises(IPCError, match="still in use"):
        memory.close()
    for obj in placed:
        obj.close()
    monkeypatch.setattr(SharedMutex, "READY_TIMEOUT", 0.1)
    with pytest.raises(TimeoutExpired, match="not initialized"):
        SharedMutex.in_buffer(memory.buf, 1024, initialize=False)
    memory.close()


def _try_now_in_buffer(mutex: SharedMutex) -> str:
    result: list[str] = []

    def attempt() -> None:
        try:
            mutex.acquire(timeout=0)
        except WouldBlock:
            result.append("busy")
        else:
            mutex.release()
            result.append("free")

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return result[0]


def test_bad_arguments_are_rejected_before_any_system_call(
    names: Names, cleanup: Callable[..., None]
) -> None:
    with pytest.raises(TypeError, match="name"):
        SharedMutex.create(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        SharedMutex.create("no-slash")
    with pytest.raises(ValueError, match="permissions"):
        SharedMutex.create(names.posix(), permissions=0o10000)
    with pytest.raises(ValueError, match="parties"):
        SharedBarrier.create(names.posix(), 0)
    with pytest.raises(ValueError, match="parties"):
        SharedBarrier.create(names.posix(), SharedBarrier.MAX_PARTIES + 1)
    with pytest.raises(TypeError, match="buffer"):
        SharedMutex.in_buffer(object(), initialize=True)
    with pytest.raises(TypeError, match="writable"):
        SharedMutex.in_buffer(bytes(4096), initialize=True)
    with pytest.raises(TypeError, match="initialize"):
        SharedMutex.in_buffer(bytearray(4096), initialize=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parties"):
        SharedBarrier.in_buffer(bytearray(4096), initialize=True)
    with pytest.raises(TypeError, match="parties"):
        SharedBarrier.in_buffer(bytearray(4096), initialize=False, parties=2)
    name = names.posix("small")
    with PosixSharedMemory.create(name, 4096) as memory:
        cleanup(posix_shm.unlink, name)
        with pytest.raises(ValueError, match="offset"):
            SharedMutex.in_buffer(memory.buf, -8, initialize=True)
        with pytest.raises(ValueError, match=r"needs \d+ bytes at offset 4090"):
            SharedMutex.in_buffer(memory.buf, 4090, initialize=True)
        with pytest.raises(ValueError, match="not aligned"):
            SharedMutex.in_buffer(memory.buf, 4, initialize=True)
        assert bytes(memory.buf[:64]) == bytes(64)  # nothing was touched
    with make_closed_mutex(names, cleanup) as mutex, pytest.raises(TypeError):
        mutex.acquire(timeout="1")  # type: ignore[arg-type]


class make_closed_mutex:  # a tiny context manager used like a function
    def __init__(self, names: Names, cleanup: Callable[..., None]) -> None:
        name = names.posix("m")
        self.mutex = SharedMutex.create(name)
        cleanup(posix_shm.unlink, name)

    def __enter__(self) -> SharedMutex:
        return self.mutex

    def __exit__(self, *exc: object) -> None:
        self.mutex.close()


# ---- mutex semantics ---------------------------------------------------------------


def test_mutex_ownership_is_per_thread_and_errors_are_clear(make: Callable[..., Any]) -> None:
    mutex = make(SharedMutex)
    with pytest.raises(PermissionDeniedError, match="not held by this thread"):
        mutex.release()
    with mutex:
        with pytest.raises(DeadlockError, match="already held by this thread"):
            mutex.acquire(timeout=5)
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                mutex.release()
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert isinstance(errors[0], PermissionDeniedError)
        with pytest.raises(IPCError, match="while this process holds it"):
            mutex.close()
    with pytest.raises(IPCError, match="not in the owner-died state"), mutex:
        mutex.mark_consistent()


def test_mutex_timeouts(make: Callable[..., Any], names: Names) -> None:
    mutex = make(SharedMutex)
    ready = names.path("ready")
    child = Child(_hold_and_sleep, "mutex", mutex.name, ready)
    try:
        wait_until(lambda: os.path.exists(ready))
        with pytest.raises(WouldBlock, match="would block"):
            mutex.acquire(timeout=0)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired, match=r"timed out after 0\.3 s"):
            mutex.acquire(timeout=0.3)
        assert_elapsed(started, 0.3)
    finally:
        child.kill()


def test_a_signal_handler_interrupts_a_blocked_acquire(
    make: Callable[..., Any], names: Names
) -> None:
    mutex = make(SharedMutex)
    ready = names.path("ready")
    child = Child(_hold_and_sleep, "mutex", mutex.name, ready)

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        wait_until(lambda: os.path.exists(ready))
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        started = time.monotonic()
        with pytest.raises(Interrupted):
            mutex.acquire()  # no timeout: only the handler can end this
        assert_elapsed(started, 0.2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        child.kill()


# ---- a holder killed with SIGKILL ----------------------------------------------------


@pytest.mark.parametrize("kind", ["mutex", "condition"])
def test_killed_holder_gives_owner_died_with_the_lock_held_then_recovery(
    kind: str, make: Callable[..., Any], names: Names
) -> None:
    lock = make(SharedMutex if kind == "mutex" else SharedCondition)
    _kill_holder(kind, lock.name, names)
    with pytest.raises(OwnerDied, match="now holds the lock"):
        lock.acquire(timeout=30)
    # The lock is held by us: another process cannot take it.
    assert Child(_try_now, kind, lock.name).result() == "busy"
    lock.mark_consistent()
    lock.release()
    assert Child(_try_now, kind, lock.name).result() == "free"
    with lock:  # as good as new
        pass


def test_release_without_mark_consistent_makes_the_mutex_unusable_for_everyone(
    make: Callable[..., Any], names: Names
) -> None:
    mutex = make(SharedMutex)
    _kill_holder("mutex", mutex.name, names)
    with pytest.raises(OwnerDied):
        mutex.acquire(timeout=30)
    mutex.release()
    for timeout in (None, 0, 5):
        with pytest.raises(IPCOSError, match="permanently unusable") as caught:
            mutex.acquire(timeout=timeout)
        assert caught.value.errno == errno.ENOTRECOVERABLE
    assert Child(_try_now, "mutex", mutex.name).result() == f"errno {errno.ENOTRECOVERABLE}"


def test_killed_writer_gives_the_next_reader_the_lock_exclusively(
    make: Callable[..., Any], names: Names
) -> None:
    rwlock = make(SharedRWLock)
    _kill_holder("rwlock-write", rwlock.name, names)
    with pytest.raises(OwnerDied, match="exclusively, as a writer"):
        rwlock.acquire_read(timeout=30)
    assert Child(_try_now, "rwlock-read", rwlock.name).result() == "busy"
    rwlock.mark_consistent()
    rwlock.release()
    assert Child(_try_now, "rwlock-read", rwlock.name).result() == "free"
    assert Child(_try_now, "rwlock-write", rwlock.name).result() == "free"


def test_killed_reader_never_blocks_a_writer(make: Callable[..., Any], names: Names) -> None:
    rwlock = make(SharedRWLock)
    _kill_holder("rwlock-read", rwlock.name, names)
    with rwlock.write_lock(timeout=30):  # no OwnerDied: readers modify nothing
        assert Child(_try_now, "rwlock-read", rwlock.name).result() == "busy"
    with rwlock.read_lock(timeout=0):
        pass


def _churn(memory_name: str, count: int, ready: str) -> None:
    """Lock and unlock random groups of mutexes for ever (until SIGKILL)."""
    memory = PosixSharedMemory.open(memory_name)
    mutexes = [
        SharedMutex.in_buffer(memory.buf, i * SharedMutex.SIZE, initialize=False)
        for i in range(count)
    ]
    rng = random.Random()
    announced = False
    while True:
        held = []
        for index in rng.sample(range(count), rng.randint(1, 4)):
            try:
                mutexes[index].acquire()
            except OwnerDied:
                mutexes[index].mark_consistent()
            held.append(mutexes[index])
        if not announced:
            _touch(ready)
            announced = True
        for mutex in reversed(held):
            mutex.release()


def test_repeated_kill_rounds_leave_every_mutex_usable(
    names: Names, cleanup: Callable[..., None]
) -> None:
    """Modeled on glibc's robust-mutex stress test: kill a busy child at random moments."""
    count, rounds = 16, 40
    name = names.posix("churn")
    memory = PosixSharedMemory.create(name, count * SharedMutex.SIZE)
    cleanup(posix_shm.unlink, name)
    cleanup(memory.close)
    mutexes = [
        SharedMutex.in_buffer(memory.buf, i * SharedMutex.SIZE, initialize=True)
        for i in range(count)
    ]
    for mutex in mutexes:
        cleanup(mutex.close)
    rng = random.Random(os.getpid())
    owner_died = 0
    for _ in range(rounds):
        ready = names.path("ready")
        child = Child(_churn, name, count, ready)
        try:
            wait_until(lambda: os.path.exists(ready))  # noqa: B023 - used at once
            time.sleep(rng.uniform(0, 0.02))
        finally:
            child.kill()
        for mutex in mutexes:
            try:
                mutex.acquire(timeout=30)
            except OwnerDied:
                owner_died += 1
                mutex.mark_consistent()
            mutex.release()
    assert owner_died > 0  # the child was killed inside a lock at least once
    for mutex in mutexes:  # and every mutex still works normally
        with mutex:
            pass
        assert _try_now_in_buffer(mutex) == "free"


# ---- N processes, one counter, each lock kind ----------------------------------------


def _increment(kind: str, lock_name: str, counter_name: str, times: int) -> int:
    memory = PosixSharedMemory.open(counter_name)
    lock = _open(kind, lock_name)
    counter = memory.buf
    for _ in range(times):
        if kind == "rwlock-write":
            lock.acquire_write()
        else:
            lock.acquire()
        value = int.from_bytes(counter[:8], "little")
        counter[:8] = (value + 1).to_bytes(8, "little")
        lock.release()
    lock.close()
    del counter
    memory.close()
    return times


@pytest.mark.parametrize(
    ("kind", "method"),
    [("mutex", "fork"), ("mutex", "spawn"), ("condition", "fork"), ("rwlock-write", "fork")],
)
def test_processes_incrementing_under_the_lock_lose_nothing(
    kind: str, method: str, make: Callable[..., Any], names: Names, cleanup: Callable[..., None]
) -> None:
    lock = make({"mutex": SharedMutex, "condition": SharedCondition}.get(kind, SharedRWLock))
    counter_name = names.posix("counter")
    memory = PosixSharedMemory.create(counter_name, 8)
    cleanup(posix_shm.unlink, counter_name)
    cleanup(memory.close)
    processes, times = 4, 400
    workers = [
        Child(_increment, kind, lock.name, counter_name, times, method=method)
        for _ in range(processes)
    ]
    assert sum(worker.result() for worker in workers) == processes * times
    assert int.from_bytes(memory.buf[:8], "little") == processes * times


# ---- conditions --------------------------------------------------------------------------


def _wait_once(cond_name: str, state_name: str) -> bool:
    """Count myself as waiting, wait once, count myself as woken."""
    memory = PosixSharedMemory.open(state_name)
    cond = SharedCondition.open(cond_name)
    try:
        with cond:
            memory.buf[0] += 1
            woken = cond.wait(timeout=60)
            memory.buf[1] += 1
    finally:
        cond.close()
        memory.close()
    return woken


@pytest.fixture
def state(names: Names, cleanup: Callable[..., None]) -> Iterator[PosixSharedMemory]:
    name = names.posix("state")
    memory = PosixSharedMemory.create(name, 64)
    cleanup(posix_shm.unlink, name)
    yield memory
    memory.close()


def _under(cond: SharedCondition, read: Callable[[], int]) -> int:
    with cond:
        return read()


def test_notify_wakes_exactly_n_waiters_and_notify_all_the_rest(
    make: Callable[..., Any], state: PosixSharedMemory
) -> None:
    cond = make(SharedCondition)
    waiters = [Child(_wait_once, cond.name, state.name) for _ in range(4)]
    wait_until(lambda: _under(cond, lambda: state.buf[0]) == 4)
    with cond:
        cond.notify(2)
    wait_until(lambda: _under(cond, lambda: state.buf[1]) == 2)
    time.sleep(0.3)  # room for a wrong third wake-up to show
    assert _under(cond, lambda: state.buf[1]) == 2
    with cond:
        cond.notify(0)
        cond.notify_all()
    assert [waiter.result() for waiter in waiters] == [True] * 4
    assert state.buf[1] == 4


def test_wait_timeouts_and_wait_for(make: Callable[..., Any]) -> None:
    cond = make(SharedCondition)
    with pytest.raises(PermissionDeniedError, match="not held"):
        cond.wait(timeout=0)
    with pytest.raises(PermissionDeniedError, match="not held"):
        cond.notify()
    with cond:
        assert cond.wait(timeout=0) is False
        started = time.monotonic()
        assert cond.wait(timeout=0.3) is False
        assert_elapsed(started, 0.3)
        started = time.monotonic()
        assert cond.wait_for(lambda: 0, timeout=0.2) == 0
        assert_elapsed(started, 0.2)
        assert cond.wait_for(lambda: "ready", timeout=0) == "ready"
    with pytest.raises(ValueError, match="n must be"), cond:
        cond.notify(-1)


def test_a_signal_handler_interrupts_wait_which_leaves_holding_the_lock(
    make: Callable[..., Any],
) -> None:
    cond = make(SharedCondition)

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with cond:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            started = time.monotonic()
            with pytest.raises(Interrupted):
                cond.wait()
            assert_elapsed(started, 0.2)
            cond.notify()  # the lock is held again: no PermissionDeniedError
            assert cond.wait(timeout=0) is False  # and no wake-up was left behind
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _notify_later(cond_name: str, state_name: str) -> None:
    memory = PosixSharedMemory.open(state_name)
    cond = SharedCondition.open(cond_name)
    try:
        time.sleep(0.1)
        with cond:
            memory.buf[2] = 1
            cond.notify_all()
    finally:
        cond.close()
        memory.close()


def test_wait_for_a_predicate_set_by_another_process(
    make: Callable[..., Any], state: PosixSharedMemory
) -> None:
    cond = make(SharedCondition)
    child = Child(_notify_later, cond.name, state.name)
    with cond:
        assert cond.wait_for(lambda: state.buf[2] == 1, timeout=60) is True
    child.result()


def _wait_and_die(cond_name: str, ready: str) -> None:
    cond = SharedCondition.open(cond_name)
    with cond:
        _touch(ready)
        cond.wait()  # killed while waiting


def test_a_killed_waiter_does_not_hang_or_starve_the_survivors(
    make: Callable[..., Any], names: Names, state: PosixSharedMemory
) -> None:
    cond = make(SharedCondition)
    ready = names.path("ready")
    doomed = Child(_wait_and_die, cond.name, ready)
    wait_until(lambda: os.path.exists(ready))
    # The doomed child released the lock inside wait(); now it is asleep. Kill it.
    with cond:
        pass
    doomed.kill()
    survivor = Child(_wait_once, cond.name, state.name)
    wait_until(lambda: _under(cond, lambda: state.buf[0]) == 1)
    with cond:
        cond.notify()  # reaches the live waiter, not the dead one
    assert survivor.result() is True
    with cond:  # the lock itself is intact: the dead waiter did not hold it
        cond.notify_all()  # still counts the dead waiter: one wake-up goes unused
        # ... which the next wait consumes as a spurious wake-up (as documented),
        assert cond.wait(timeout=0.1) is True
        # and then the condition is back to normal.
        assert cond.wait(timeout=0.1) is False


def test_a_notifier_killed_holding_the_lock_is_reported_to_the_waiter(
    make: Callable[..., Any], names: Names
) -> None:
    cond = make(SharedCondition)
    ready = names.path("ready")
    results: list[str] = []

    def waiter() -> None:
        with cond:
            _touch(ready)
            try:
                cond.wait(timeout=60)
            except OwnerDied:
                results.append("owner died")
                cond.mark_consistent()

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: os.path.exists(ready))
    holder_ready = names.path("holder")
    holder = Child(_notify_and_die, cond.name, holder_ready)
    wait_until(lambda: os.path.exists(holder_ready))
    holder.kill()  # killed after notify, still holding the lock
    thread.join(60)
    assert results == ["owner died"]


def _notify_and_die(cond_name: str, ready: str) -> None:
    cond = SharedCondition.open(cond_name)
    cond.acquire()
    cond.notify()
    _touch(ready)
    time.sleep(120)


# ---- rwlocks ---------------------------------------------------------------------------


def _read_and_report(name: str, ready: str, release: str) -> None:
    rwlock = SharedRWLock.open(name)
    with rwlock.read_lock(timeout=30):
        _touch(ready)
        wait_until(lambda: os.path.exists(release))
    rwlock.close()


def test_readers_share_and_writers_exclude(make: Callable[..., Any], names: Names) -> None:
    rwlock = make(SharedRWLock)
    ready = [names.path("ready") for _ in range(2)]
    release = names.path("release")
    readers = [Child(_read_and_report, rwlock.name, path, release) for path in ready]
    for path in ready:  # two processes inside the read lock at once
        wait_until(lambda path=path: os.path.exists(path))  # type: ignore[misc]
    with pytest.raises(WouldBlock):
        rwlock.acquire_write(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired):
        rwlock.acquire_write(timeout=0.3)
    assert_elapsed(started, 0.3)
    with rwlock.read_lock(timeout=0):  # readers do not exclude readers
        pass
    _touch(release)
    for reader in readers:
        reader.result()
    with rwlock:  # `with` takes the write lock
        assert Child(_try_now, "rwlock-read", rwlock.name).result() == "busy"
        with pytest.raises(DeadlockError, match="write lock"):
            rwlock.acquire_read(timeout=0)
    with rwlock.read_lock(), pytest.raises(DeadlockError, match="no upgrade"):
        rwlock.acquire_write(timeout=0)
    with pytest.raises(PermissionDeniedError):
        rwlock.release()


def test_many_read_holds_beyond_the_slots_wait_for_a_free_one(
    make: Callable[..., Any],
) -> None:
    rwlock = make(SharedRWLock)
    for _ in range(SharedRWLock.READ_SLOTS):
        rwlock.acquire_read(timeout=0)
    with pytest.raises(IPCError, match="already holds all"):
        rwlock.acquire_read(timeout=0)
    for _ in range(SharedRWLock.READ_SLOTS):
        rwlock.release()
    with rwlock.write_lock(timeout=0):
        pass


# ---- barriers --------------------------------------------------------------------------


def _barrier_rounds(name: str, rounds: int) -> list[int]:
    with SharedBarrier.open(name) as barrier:
        return [barrier.wait(timeout=60) for _ in range(rounds)]


def test_barrier_releases_all_parties_every_round(make: Callable[..., Any]) -> None:
    parties, rounds = 4, 3
    barrier = make(SharedBarrier, parties)
    assert barrier.parties == parties
    others = [Child(_barrier_rounds, barrier.name, rounds) for _ in range(parties - 1)]
    mine = [barrier.wait(timeout=60) for _ in range(rounds)]
    indices = [child.result() for child in others] + [mine]
    for round_number in range(rounds):
        assert sorted(party[round_number] for party in indices) == list(range(parties))


def _die_at_barrier(name: str, ready: str) -> None:
    barrier = SharedBarrier.open(name)
    _touch(ready)
    barrier.wait()


def test_barrier_timeouts_withdraw_the_arrival(make: Callable[..., Any]) -> None:
    barrier = make(SharedBarrier, 2)
    with pytest.raises(WouldBlock):
        barrier.wait(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match=r"timed out after 0\.3 s"):
        barrier.wait(timeout=0.3)  # the other party never came: no hang
    assert_elapsed(started, 0.3)
    assert barrier.n_waiting == 0
    # The timed-out waits withdrew: a full round still needs two.
    other = Child(_barrier_rounds, barrier.name, 1)
    assert sorted([barrier.wait(timeout=60), *other.result()]) == [0, 1]


def test_a_party_killed_while_waiting_still_counts_as_arrived(
    make: Callable[..., Any], names: Names
) -> None:
    barrier = make(SharedBarrier, 3)
    ready = names.path("ready")
    doomed = Child(_die_at_barrier, barrier.name, ready)
    wait_until(lambda: barrier.n_waiting == 1)
    doomed.kill()
    assert barrier.n_waiting == 1
    other = Child(_barrier_rounds, barrier.name, 1)
    mine = barrier.wait(timeout=60)  # the survivors are released: no hang
    (theirs,) = other.result()
    assert mine != theirs
    assert {mine, theirs} < {0, 1, 2}
    assert barrier.n_waiting == 0


# ---- C programs share the same pthread mutex --------------------------------------------

C_PEER = r"""
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* peer NAME MUTEX_OFFSET hold            lock, say "locked", wait for a line, unlock
 * peer NAME MUTEX_OFFSET count N AT      N times: lock, add 1 to the uint64 at AT, unlock */
int main(int argc, char **argv)
{
    if (argc < 4) return 2;
    int fd = shm_open(argv[1], O_RDWR, 0);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) { perror("shm_open"); return 2; }
    char *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 2; }
    pthread_mutex_t *mutex = (pthread_mutex_t *)(base + atol(argv[2]));
    if (strcmp(argv[3], "hold") == 0) {
        int rc = pthread_mutex_lock(mutex);
        if (rc == EOWNERDEAD) {
            printf("ownerdied\n");
            pthread_mutex_consistent(mutex);
        } else if (rc != 0) {
            printf("error %d\n", rc);
            return 1;
        }
        printf("locked\n");
        fflush(stdout);
        char line[16];
        if (fgets(line, sizeof line, stdin) == NULL) return 1;
        pthread_mutex_unlock(mutex);
        printf("unlocked\n");
        return 0;
    }
    long times = atol(argv[4]);
    volatile uint64_t *counter = (volatile uint64_t *)(base + atol(argv[5]));
    for (long i = 0; i < times; i++) {
        if (pthread_mutex_lock(mutex) != 0) return 1;
        uint64_t value = *counter;
        *counter = value + 1;
        pthread_mutex_unlock(mutex);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(C_PEER, tmp_path_factory.mktemp("c"), "mutex_peer", "pthread", "rt")


@pytest.fixture
def start_peer(c_peer: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start the C peer on a mutex; every peer is killed and its pipes closed at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(name: str, *args: str) -> subprocess.Popen[str]:
        peer = subprocess.Popen(
            [str(c_peer), name, str(SharedMutex.PTHREAD_OFFSET), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(peer)
        return peer

    yield start
    for peer in started:
        if peer.poll() is None:
            peer.kill()
        peer.wait()
        for stream in (peer.stdin, peer.stdout):
            if stream is not None:
                stream.close()


def _line(peer: subprocess.Popen[str]) -> str:
    assert peer.stdout is not None
    return peer.stdout.readline()


def test_a_c_program_locks_the_same_pthread_mutex(
    start_peer: Callable[..., subprocess.Popen[str]], make: Callable[..., Any], names: Names
) -> None:
    mutex = make(SharedMutex)
    peer = start_peer(mutex.name, "hold")
    assert _line(peer) == "locked\n"
    with pytest.raises(WouldBlock):
        mutex.acquire(timeout=0)
    assert peer.stdin is not None
    peer.stdin.write("go\n")
    peer.stdin.flush()
    assert _line(peer) == "unlocked\n"
    assert peer.wait(60) == 0
    with mutex:
        pass
    # The C program killed while holding: Python gets OwnerDied.
    peer = start_peer(mutex.name, "hold")
    assert _line(peer) == "locked\n"
    peer.kill()
    peer.wait(60)
    with pytest.raises(OwnerDied):
        mutex.acquire(timeout=30)
    mutex.mark_consistent()
    mutex.release()
    # A Python holder killed: the C program gets EOWNERDEAD.
    _kill_holder("mutex", mutex.name, names)
    out, _ = start_peer(mutex.name, "hold").communicate("go\n", timeout=60)
    assert out == "ownerdied\nlocked\nunlocked\n"


def test_c_and_python_processes_count_under_one_mutex(
    start_peer: Callable[..., subprocess.Popen[str]], names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("mixed")
    memory = PosixSharedMemory.create(name, 4096)
    cleanup(posix_shm.unlink, name)
    cleanup(memory.close)
    mutex = SharedMutex.in_buffer(memory.buf, 0, initialize=True)
    cleanup(mutex.close)
    counter_at, times = 512, 2000
    peers = [start_peer(name, "count", str(times), str(counter_at)) for _ in range(2)]
    counter = memory.buf
    for _ in range(times // 4):
        with mutex:
            value = int.from_bytes(counter[counter_at : counter_at + 8], "little")
            counter[counter_at : counter_at + 8] = (value + 1).to_bytes(8, "little")
    assert [peer.wait(60) for peer in peers] == [0, 0]
    assert int.from_bytes(counter[counter_at : counter_at + 8], "little") == 2 * times + times // 4
    del counter
