"""_native.ThreadLock: threading.Lock's semantics on a futex word (the RPC's locks).

Real threads and real signals; the lock must exclude, time out, be released by any
thread, let signal handlers run while it waits, and serve threading.Condition.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from unixipc._native import ThreadLock

WAIT = 30.0


class Interrupted(Exception):
    pass


def test_it_excludes_under_contention() -> None:
    lock = ThreadLock()
    counter = [0]
    rounds, workers = 2000, 4

    def work() -> None:
        for _ in range(rounds):
            with lock:
                value = counter[0]
                time.sleep(0)  # let another thread run inside, if the lock allowed it
                counter[0] = value + 1

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert counter[0] == rounds * workers
    assert not lock.locked()


def test_acquire_release_and_their_errors() -> None:
    lock = ThreadLock()
    assert not lock.locked()
    assert lock.acquire() is True
    assert lock.locked()
    assert repr(lock).startswith("<locked unixipc._native.ThreadLock")
    assert lock.acquire(False) is False
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=0) is False
    started = time.monotonic()
    assert lock.acquire(True, 0.05) is False
    assert time.monotonic() - started >= 0.04
    lock.release()
    assert lock.acquire(timeout=1.0) is True
    lock.release()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(False, 1)
    with pytest.raises(ValueError, match="non-negative"):
        lock.acquire(timeout=-2)
    with pytest.raises(ValueError, match="non-negative"):
        lock.acquire(timeout=float("nan"))
    with pytest.raises(TypeError, match="unexpected keyword"):
        lock.acquire(wait=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="at most 2"):
        lock.acquire(True, 1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no arguments"):
        ThreadLock(1)  # type: ignore[call-arg]
    assert not lock.locked()  # no failed call left it taken


def test_another_thread_releases_and_wakes_a_waiter() -> None:
    lock = ThreadLock()
    lock.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(lock.acquire(timeout=WAIT)))
    waiter.start()
    time.sleep(0.05)  # most likely asleep in the futex by now
    releaser = threading.Thread(target=lock.release)
    releaser.start()
    releaser.join(WAIT)
    waiter.join(WAIT)
    assert got == [True]
    assert lock.locked()  # now the waiter's
    lock.release()


def test_a_signal_handler_runs_while_it_waits_and_may_end_the_wait() -> None:
    lock = ThreadLock()
    lock.acquire()
    calls: list[int] = []

    def count(signum: int, frame: object) -> None:
        calls.append(signum)

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, count)
    try:
        # A handler that returns: the wait goes on until another thread releases.
        releaser = threading.Timer(0.3, lock.release)
        releaser.start()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert lock.acquire(timeout=WAIT) is True
        releaser.join(WAIT)
        assert calls == [signal.SIGALRM]
        # A handler that raises: the wait ends with its exception, the lock not taken.
        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            lock.acquire()
        assert lock.locked()  # still held by this thread's first acquire
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    lock.release()


def test_it_serves_threading_condition() -> None:
    condition = threading.Condition(ThreadLock())  # type: ignore[arg-type]
    items: list[int] = []
    taken: list[int] = []

    def consume() -> None:
        for _ in range(100):
            with condition:
                assert condition.wait_for(lambda: items, timeout=WAIT)
                taken.append(items.pop(0))

    consumer = threading.Thread(target=consume)
    consumer.start()
    for number in range(100):
        with condition:
            items.append(number)
            condition.notify()
    consumer.join(WAIT)
    assert taken == list(range(100))
