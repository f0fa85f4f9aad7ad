"""System V semaphore sets between real processes, checked against ipcs and a C peer."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Names
from tests.helpers import Child, assert_elapsed, compile_c, wait_until
from unixipc import (
    ClosedResourceError,
    ResourceExistsError,
    ResourceLimitError,
    ResourceNotFoundError,
    SysVSemaphoreSet,
    TimeoutExpired,
    WouldBlock,
    _native,
    sysv_sem,
)


@pytest.fixture
def key(names: Names, cleanup: Callable[..., None]) -> int:
    chosen = names.key()
    cleanup(sysv_sem.unlink, chosen)
    return chosen


def test_create_open_values_and_errors(key: int) -> None:
    assert not sysv_sem.exists(key)
    with pytest.raises(ResourceNotFoundError, match=f"System V semaphore set '{key:#010x}'"):
        SysVSemaphoreSet.open(key)
    with SysVSemaphoreSet.create(key, 3, values=[1, 2, 3], permissions=0o640) as semaphores:
        assert sysv_sem.exists(key)
        assert semaphores.id in sysv_sem.list_ids()
        assert (len(semaphores), semaphores.key) == (3, key)
        assert semaphores.values == [1, 2, 3]
        info = semaphores.info()
        assert (info.id, info.key, info.count, info.permissions) == (semaphores.id, key, 3, 0o640)
        assert (info.uid, info.creator_uid) == (os.getuid(), os.getuid())
        assert info.last_op_time > 0  # the creation's "ready" mark
        with pytest.raises(ResourceExistsError, match="already exists"):
            SysVSemaphoreSet.create(key, 3)
        with SysVSemaphoreSet.open_or_create(key, 9, values=[0] * 9) as opened:
            assert len(opened) == 3  # an existing set keeps its size and values
            assert opened.values == [1, 2, 3]
            opened.set_values([4, 5, 6])
        assert semaphores.values == [4, 5, 6]
        semaphores.set_value(1, 0)
        assert [semaphores.value(i) for i in range(3)] == [4, 0, 6]
        assert semaphores.last_pid(0) == os.getpid()
        assert semaphores.waiting_for_increase(1) == semaphores.waiting_for_zero(1) == 0
        with SysVSemaphoreSet.open_id(semaphores.id) as by_id:
            assert by_id.key == key
    sysv_sem.unlink(key)
    with pytest.raises(ResourceNotFoundError):
        sysv_sem.unlink(key)
    with pytest.raises(ClosedResourceError):
        semaphores.op([(0, 1)])


def test_ipc_private_sets_are_found_by_id() -> None:
    semaphores = SysVSemaphoreSet.create(0, 1, values=[5])
    try:
        assert semaphores.key == 0
        with SysVSemaphoreSet.open_id(semaphores.id) as again:
            assert again.values == [5]
        with pytest.raises(ValueError, match="IPC_PRIVATE"):
            SysVSemaphoreSet.open(0)
    finally:
        semaphores.unlink()
        semaphores.close()
    assert semaphores.id not in sysv_sem.list_ids()
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        SysVSemaphoreSet.open_id(semaphores.id)


def test_bad_arguments(key: int) -> None:
    with pytest.raises(ValueError, match="count"):
        SysVSemaphoreSet.create(key, 0)
    with pytest.raises(ValueError, match="2 items"):
        SysVSemaphoreSet.create(key, 2, values=[1])
    with pytest.raises(ValueError, match="SEMVMX"):
        SysVSemaphoreSet.create(key, 1, values=[sysv_sem.VALUE_MAX + 1])
    with pytest.raises(TypeError, match="values"):
        SysVSemaphoreSet.create(key, 1, values="1")  # type: ignore[arg-type]
    assert not sysv_sem.exists(key)  # nothing was created by any of those
    with SysVSemaphoreSet.create(key, 2) as semaphores:
        assert semaphores.values == [0, 0]
        with pytest.raises(ValueError, match="outside the set of 2"):
            semaphores.op([(2, 1)])
        with pytest.raises(ValueError, match="outside the set"):
            semaphores.value(5)
        with pytest.raises(ValueError, match="beyond"):
            semaphores.op([(0, 40000)])
        with pytest.raises(ValueError, match="empty"):
            semaphores.op([])
        with pytest.raises(TypeError, match="tuple"):
            semaphores.op([[0, 1]])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="tuple"):
            semaphores.op([(0, True)])
        with pytest.raises(ValueError, match="timeout"):
            semaphores.op([(0, 1)], timeout=-1)
        semaphores.op(iter([(0, 1), (1, 2)]))  # any iterable
        assert semaphores.values == [1, 2]
        with pytest.raises(ResourceLimitError, match="SEMVMX"):
            semaphores.op([(0, sysv_sem.VALUE_MAX)])
        assert semaphores.values == [1, 2]


def test_timeouts_apply_nothing(key: int) -> None:
    with SysVSemaphoreSet.create(key, 2, values=[1, 0]) as semaphores:
        with pytest.raises(WouldBlock, match="would block"):
            semaphores.op([(0, -1), (1, -1)], timeout=0)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired, match=r"timed out after 0\.3 s"):
            semaphores.op([(0, -1), (1, -1)], timeout=0.3)
        assert_elapsed(started, 0.3)
        assert semaphores.values == [1, 0]  # all or nothing: nothing
        semaphores.op([(0, -1)], timeout=0)
        semaphores.op([(1, 0)], timeout=1)  # zero already: no wait
        assert semaphores.values == [0, 0]


def test_signals_run_their_handlers_and_the_wait_goes_on(key: int) -> None:
    caught = []
    previous = signal.signal(signal.SIGALRM, lambda *_: caught.append(1))
    try:
        with SysVSemaphoreSet.create(key, 1) as semaphores:
            signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
            started = time.monotonic()
            with pytest.raises(TimeoutExpired):
                semaphores.op([(0, -1)], timeout=0.5)
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert_elapsed(started, 0.5)
            assert len(caught) >= 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- across processes ----------------------------------------------------------


def _op(key: int, operations: list[tuple[int, int]]) -> str:
    with SysVSemaphoreSet.open(key) as semaphores:
        try:
            semaphores.op(operations, timeout=60)
        except ResourceNotFoundError as error:
            return f"ResourceNotFoundError: {error}"
        return "done"


def test_a_multi_operation_never_half_applies(key: int) -> None:
    with SysVSemaphoreSet.create(key, 2, values=[1, 0]) as semaphores:
        child = Child(_op, key, [(0, -1), (1, -1)])
        wait_until(lambda: semaphores.waiting_for_increase(1) == 1)
        time.sleep(0.05)
        assert semaphores.values == [1, 0]  # the first half did not go through alone
        semaphores.op([(1, 1)])
        assert child.result() == "done"
        assert semaphores.values == [0, 0]
        assert semaphores.last_pid(0) == semaphores.last_pid(1) == child.pid


def _transfer(key: int, rounds: int, forward: bool) -> None:
    # Move one unit between the semaphores: their sum never changes.
    step = [(0, -1), (1, 1)] if forward else [(1, -1), (0, 1)]
    with SysVSemaphoreSet.open(key) as semaphores:
        for _ in range(rounds):
            semaphores.op(step, timeout=60)


def test_a_reader_never_sees_a_transfer_half_done(key: int) -> None:
    with SysVSemaphoreSet.create(key, 2, values=[50, 50]) as semaphores:
        movers = [Child(_transfer, key, 2000, forward) for forward in (True, False, True, False)]
        sums = set()
        while any(mover.process.is_alive() for mover in movers):
            sums.add(sum(semaphores.values))
        for mover in movers:
            mover.result()
        assert sums <= {100}
        assert semaphores.values == [50, 50]


def _wait_for_zero(key: int) -> str:
    return _op(key, [(0, 0)])


def test_wait_for_zero(key: int) -> None:
    with SysVSemaphoreSet.create(key, 1, values=[2]) as semaphores:
        child = Child(_wait_for_zero, key)
        wait_until(lambda: semaphores.waiting_for_zero(0) == 1)
        semaphores.op([(0, -1)])
        assert semaphores.waiting_for_zero(0) == 1  # 1 is not zero: still waiting
        semaphores.op([(0, -1)])
        assert child.result() == "done"
        assert semaphores.waiting_for_zero(0) == 0


def _take_with_undo_and_hang(key: int) -> None:
    with SysVSemaphoreSet.open(key) as semaphores:
        semaphores.op([(0, -1), (1, 5)], undo=True)
        semaphores.op([(2, 1)])  # no undo: this one stays
        time.sleep(120)


def test_sem_undo_reverts_a_killed_process(key: int) -> None:
    with SysVSemaphoreSet.create(key, 3, values=[1, 0, 0]) as semaphores:
        child = Child(_take_with_undo_and_hang, key)
        wait_until(lambda: semaphores.values == [0, 5, 1])
        os.kill(child.pid, signal.SIGKILL)
        child.process.join(60)
        child.kill()
        assert child.process.exitcode == -signal.SIGKILL
        assert semaphores.values == [1, 0, 1]  # the kernel undid what it was asked to


def test_removal_wakes_every_waiter(key: int) -> None:
    semaphores = SysVSemaphoreSet.create(key, 2, values=[0, 1])
    try:
        increase = Child(_op, key, [(0, -1)])
        zero = Child(_op, key, [(1, 0)])
        wait_until(
            lambda: semaphores.waiting_for_increase(0) == 1 and semaphores.waiting_for_zero(1) == 1
        )
        semaphores.unlink()
        for child in (increase, zero):
            outcome = child.result()
            assert outcome.startswith("ResourceNotFoundError: ")
            assert "was removed while in use" in outcome
    finally:
        semaphores.close()


def _create_slowly(key: int, flag: str) -> None:
    # A creator that follows the protocol but takes its time between its steps.
    created: list[int] = []
    _native.sysv_sem_create(key, 2, 0o600, created)
    sem_id = created[0]
    Path(flag).touch()
    time.sleep(0.5)
    _native.sysv_sem_setall(sem_id, [3, 5])
    _native.sysv_sem_op(sem_id, [(0, 1), (0, -1)], 2, False, True, -1)


def test_a_second_opener_waits_for_the_creator(
    key: int, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysv_sem, "INIT_WAIT", 60.0)  # however slow this machine is today
    flag = names.path("created")
    creator = Child(_create_slowly, key, flag)
    wait_until(lambda: os.path.exists(flag))
    with SysVSemaphoreSet.open(key) as semaphores:  # the set exists but is not ready
        assert semaphores.values == [3, 5]
    creator.result()


def _open_or_create_and_add(key: int, start: Any) -> None:
    start.wait(60)
    with SysVSemaphoreSet.open_or_create(key, 2, values=[3, 5]) as semaphores:
        semaphores.op([(1, 1)])


def test_racing_creators_and_openers_never_lose_an_operation(
    key: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysv_sem, "INIT_WAIT", 60.0)  # the forked racers inherit it
    start = multiprocessing.get_context("fork").Event()
    racers = [Child(_open_or_create_and_add, key, start) for _ in range(6)]
    start.set()
    for racer in racers:
        racer.result()
    with SysVSemaphoreSet.open(key) as semaphores:
        # Had anyone added before the creator set [3, 5], its +1 would be lost.
        assert semaphores.values == [3, 5 + 6]


def test_a_set_nobody_operated_on_is_opened_after_a_short_wait(
    key: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysv_sem, "INIT_WAIT", 0.3)
    created: list[int] = []
    _native.sysv_sem_create(key, 1, 0o600, created)  # as ipcmk -S would: never operated on
    sem_id = created[0]
    started = time.monotonic()
    with SysVSemaphoreSet.open(key) as semaphores:
        assert semaphores.id == sem_id
    assert_elapsed(started, 0.3)


# -- ipcs and C ---------------------------------------------------------------


def _wait_on_one(key: int, flag: str) -> None:
    with SysVSemaphoreSet.open(key) as semaphores:
        Path(flag).touch()
        semaphores.op([(1, -1)], timeout=60)


def test_info_matches_what_ipcs_reports(key: int, names: Names) -> None:
    flag = names.path("waiting")
    with SysVSemaphoreSet.create(key, 3, values=[7, 0, 2], permissions=0o640) as semaphores:
        child = Child(_wait_on_one, key, flag)
        wait_until(lambda: semaphores.waiting_for_increase(1) == 1)
        info = semaphores.info()
        output = subprocess.run(
            ["ipcs", "-s", "-i", str(semaphores.id)], capture_output=True, text=True, check=True
        ).stdout
        rows = [
            [int(field) for field in line.split()]
            for line in output.splitlines()
            if re.fullmatch(r"\s*\d+(\s+\d+){4}\s*", line)
        ]
        expected_rows = [
            [
                i,
                semaphores.value(i),
                semaphores.waiting_for_increase(i),
                semaphores.waiting_for_zero(i),
                semaphores.last_pid(i),
            ]
            for i in range(3)
        ]
        semaphores.op([(1, 1)])
        child.result()
    fields = dict(re.findall(r"(\w+)=\s*([^\s,]+)", output))
    assert int(fields["semid"]) == info.id
    assert int(fields["uid"]) == info.uid
    assert int(fields["gid"]) == info.gid
    assert int(fields["cuid"]) == info.creator_uid
    assert int(fields["cgid"]) == info.creator_gid
    assert int(fields["mode"], 8) == info.permissions == 0o640
    assert int(re.search(r"nsems\s*=\s*(\d+)", output).group(1)) == info.count == 3  # type: ignore[union-attr]
    otime = re.search(r"otime\s*=\s*(.*?)\s*$", output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    ctime = re.search(r"ctime\s*=\s*(.*?)\s*$", output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert otime == time.ctime(info.last_op_time)
    assert ctime == time.ctime(info.change_time)
    assert rows == expected_rows
    assert expected_rows[1][2] == 1  # the child was waiting for semaphore 1 to grow


C_READER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>

int main(int argc, char **argv)
{
    (void)argc;
    int id = semget((key_t)strtol(argv[1], NULL, 0), 0, 0);
    if (id < 0) { perror("semget"); return 1; }
    for (int i = 0; i < 2; i++) {
        int value = semctl(id, i, GETVAL);
        int pid = semctl(id, i, GETPID);
        if (value < 0 || pid < 0) { perror("semctl"); return 1; }
        printf("%d %d\n", value, pid);
    }
    return 0;
}
"""


def test_python_semop_is_seen_by_c_semctl(key: int, tmp_path: Path) -> None:
    reader = compile_c(C_READER, tmp_path, "sem_reader")
    with SysVSemaphoreSet.create(key, 2) as semaphores:
        semaphores.op([(0, 3), (1, 7)])
        semaphores.op([(1, -2)])
        output = subprocess.run(
            [str(reader), hex(key)], capture_output=True, text=True, check=True
        ).stdout
    assert output.split("\n")[:2] == [f"3 {os.getpid()}", f"5 {os.getpid()}"]
