"""Rules every memory and synchronization facility follows, tested across them.

Names are validated by one rule per namespace before any system call; classes are
made by their factories only; a ``with`` block never loses the user's exception;
lock files and mapped files never follow a symbolic link; ``timeout=math.inf``
blocks; and the gaps real C programs found (semaphore sets made in one step, a
segment grown by another process, ``as_array``'s type).
"""

from __future__ import annotations

import errno
import gc
import math
import os
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy
import pytest

import unixipc
from tests.conftest import Names
from tests.helpers import Child, compile_c
from unixipc import (
    AnonymousSharedMemory,
    FileLock,
    IPCError,
    IPCOSError,
    MappedFile,
    PosixSemaphore,
    PosixSharedMemory,
    RecordLock,
    ResourceExistsError,
    ResourceNotFoundError,
    SharedBarrier,
    SharedCondition,
    SharedMutex,
    SharedRWLock,
    SysVSemaphoreSet,
    SysVSharedMemory,
    TimeoutExpired,
    posix_sem,
    posix_shm,
    sysv_sem,
    sysv_shm,
)

# ---- names ------------------------------------------------------------------------

BAD_NAMES = ["", "/", "/.", "/..", "noslash", "/a/b", "/a\0b", "/\udc80"]


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize(
    "create",
    [
        lambda name: PosixSharedMemory.create(name, 1),
        lambda name: PosixSemaphore.create(name, value=0),
        lambda name: SharedMutex.create(name),
    ],
    ids=["posix-shm", "posix-sem", "shared-mutex"],
)
def test_bad_names_are_refused_with_the_rule(create: Callable[[str], Any], bad: str) -> None:
    with pytest.raises(ValueError, match=r"the rule: '/' then 1 to 25[15] bytes"):
        create(bad)


def test_the_longest_names_the_rule_allows_work(names: Names, cleanup: Callable[..., None]) -> None:
    # A shared memory object's name is a file name (255 bytes); a semaphore's
    # file is "sem." + its name, so it has 251.
    prefix = names.posix("long")
    shm_name = prefix + "x" * (256 - len(prefix))
    sem_name = prefix + "y" * (252 - len(prefix))
    cleanup(posix_shm.unlink, shm_name)
    cleanup(posix_sem.unlink, sem_name)
    with PosixSharedMemory.create(shm_name, 1) as memory:
        assert posix_shm.exists(shm_name)
        memory.unlink()
    with closing(PosixSemaphore.create(sem_name, value=1)) as semaphore:
        assert posix_sem.exists(sem_name)
        semaphore.unlink()
    with pytest.raises(ValueError, match="1 to 255 bytes"):
        PosixSharedMemory.create(shm_name + "x", 1)
    with pytest.raises(ValueError, match="1 to 251 bytes"):
        PosixSemaphore.create(sem_name + "y", value=1)


def test_exists_answers_a_bool_for_any_string(names: Names) -> None:
    for exists in (posix_sem.exists, posix_shm.exists):
        for name in ("noslash", "/..", "", "/a/b", names.posix("absent")):
            assert exists(name) is False
        with pytest.raises(TypeError):
            exists(b"/bytes")  # type: ignore[arg-type]


# ---- construction -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        (PosixSharedMemory, ("/x",)),
        (MappedFile, ("/tmp/x",)),
        (AnonymousSharedMemory, (4096,)),
        (SysVSharedMemory, (0x1234,)),
        (PosixSemaphore, ("/x",)),
        (SysVSemaphoreSet, (0x1234,)),
        (SharedMutex, ("/x",)),
        (SharedCondition, ("/x",)),
        (SharedRWLock, ("/x",)),
        (SharedBarrier, ("/x",)),
        (unixipc.PosixMessageQueue, ("/x",)),
        (unixipc.SysVMessageQueue, (0x1234,)),
        (unixipc.Ring, ("/x",)),
        (unixipc.Topic, ("/x",)),
    ],
)
def test_calling_the_class_says_which_factories_to_use(cls: type, args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match=rf"use {cls.__name__}\.create\(\.\.\.\)"):
        cls(*args)


# ---- with blocks never lose the user's exception ---------------------------------


def _fail_while_viewed(memory: Any, kept: list[Any]) -> None:
    with memory:
        kept.append(memory.as_array(numpy.uint8, 4096))  # outlives the block, as a user's
        kept[0][:4] = [1, 2, 3, 4]
        raise ZeroDivisionError


def _mapped(name: str) -> bool:
    with open("/proc/self/maps") as maps:
        return name in maps.read()


@pytest.mark.parametrize("kind", ["posix-shm", "mapped-file", "sysv-shm"])
def test_an_exception_with_live_views_propagates_with_a_note(
    kind: str, names: Names, cleanup: Callable[..., None]
) -> None:
    if kind == "posix-shm":
        name = names.posix("shm")
        cleanup(posix_shm.unlink, name)
        memory: Any = PosixSharedMemory.create(name, 4096)
        marker = f"/dev/shm{name}"
    elif kind == "mapped-file":
        marker = names.path("map")
        memory = MappedFile.create(marker, 4096)
    else:
        key = names.key()
        cleanup(sysv_shm.unlink, key)
        memory = SysVSharedMemory.create(key, 4096)
        marker = f"SYSV{key:08x}"
    kept: list[Any] = []
    with pytest.raises(ZeroDivisionError) as caught:
        _fail_while_viewed(memory, kept)
    # The user's own exception, with the close problem as a note on it.
    assert "still viewed" in caught.value.__notes__[0]
    assert memory.closed
    # The memory stays mapped while the array lives, and goes with it.
    assert list(kept[0][:4]) == [1, 2, 3, 4]
    assert _mapped(marker)
    kept.clear()
    del caught
    gc.collect()
    assert not _mapped(marker)


def test_a_failed_release_at_the_end_of_with_becomes_a_note(names: Names) -> None:
    lock = RecordLock(names.path("lock"))

    def release_then_fail() -> None:
        with lock:
            lock.release()  # the with block's own release will then fail
            raise RuntimeError("mine")

    with pytest.raises(RuntimeError, match="mine") as caught:
        release_then_fail()
    assert "releasing" in caught.value.__notes__[0]
    assert "not held" in caught.value.__notes__[0]
    with pytest.raises(IPCError, match="not held"), lock:  # no exception of ours: it raises
        lock.release()
    lock.close()


# ---- symbolic links and directories ------------------------------------------------


@pytest.mark.parametrize(
    "lock",
    [lambda path: FileLock(path).acquire(timeout=0), lambda path: RecordLock(path)],
    ids=["FileLock", "RecordLock"],
)
def test_a_planted_symlink_makes_locking_fail(
    lock: Callable[[str], Any], names: Names, tmp_path: Path
) -> None:
    target = tmp_path / "victim"
    link = names.path("lock")
    os.symlink(target, link)
    with pytest.raises(IPCOSError, match="symbolic link") as caught:
        lock(link)
    assert caught.value.errno == errno.ELOOP
    assert not target.exists()  # nothing was created (or locked) through the link
    target.write_bytes(b"precious")
    with pytest.raises(IPCOSError, match="symbolic link"):
        lock(link)
    assert target.read_bytes() == b"precious"


def test_mapped_files_never_follow_a_symlink(names: Names, tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    link = names.path("map")
    os.symlink(target, link)
    with pytest.raises(IPCOSError, match="symbolic link"):
        MappedFile.open(link)
    with pytest.raises(ResourceExistsError):
        MappedFile.create(link, 4096)
    assert target.read_bytes() == b"precious"


def test_a_missing_directory_is_named() -> None:
    for make in (lambda path: RecordLock(path), lambda path: FileLock(path).acquire()):
        with pytest.raises(ResourceNotFoundError, match="the directory '/missing/dir' does not"):
            make("/missing/dir/f")
    with pytest.raises(ResourceNotFoundError, match="directory '/missing/dir' does not exist"):
        MappedFile.create("/missing/dir/f", 10)


# ---- System V semaphore sets a C program made in one step --------------------------

SVSEM_CREATE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/sem.h>
union semun { int val; struct semid_ds *buf; unsigned short *array; };
/* As TLPI's svsem_create: create, set the values, never operate. */
int main(int argc, char **argv)
{
    (void)argc;
    int id = semget((key_t)strtol(argv[1], NULL, 0), 2, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0) { perror("semget"); return 1; }
    unsigned short values[2] = {7, 9};
    union semun arg = {.array = values};
    if (semctl(id, 0, SETALL, arg) < 0) { perror("semctl"); return 1; }
    return 0;
}
"""


def test_a_set_made_by_a_c_program_opens_at_once_when_asked(
    names: Names, cleanup: Callable[..., None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sysv_sem, "INIT_WAIT", 60.0)  # the default wait would be long
    key = names.key()
    cleanup(sysv_sem.unlink, key)
    program = compile_c(SVSEM_CREATE, tmp_path, "svsem_create")
    os.spawnv(os.P_WAIT, program, [str(program), str(key)])
    started = time.monotonic()
    with SysVSemaphoreSet.open(key, wait_for_initialization=False) as semaphores:
        assert semaphores.values == [7, 9]
    assert time.monotonic() - started < 30  # not the 60 s the default would wait
    with pytest.raises(TypeError, match="wait_for_initialization"):
        SysVSemaphoreSet.open(key, wait_for_initialization="no")  # type: ignore[arg-type]
    with SysVSemaphoreSet.open(key, wait_for_initialization=0.2) as semaphores:
        assert semaphores.values == [7, 9]


# ---- remap: following another process's resize ------------------------------------


def _grow_and_write(name: str) -> int:
    with PosixSharedMemory.open(name) as memory:
        memory.resize(3 * 4096)
        memory.buf[2 * 4096] = 77
        return memory.size


def test_remap_follows_a_resize_by_another_process(
    names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("shm")
    with PosixSharedMemory.create(name, 4096) as memory:
        cleanup(posix_shm.unlink, name)
        assert Child(_grow_and_write, name).result() == 3 * 4096
        assert memory.size == 4096  # this mapping keeps its size ...
        assert memory.info().size == 3 * 4096  # ... the object has grown
        view = memory.buf[:1]
        with pytest.raises(IPCError, match=r"cannot remap .* still in use"):
            memory.remap()
        view.release()
        assert memory.remap() == 3 * 4096
        assert memory.size == 3 * 4096
        assert memory.buf[2 * 4096] == 77
        memory.unlink()


# ---- as_array's type ----------------------------------------------------------------

TYPED = """
import numpy
import numpy.typing as npt
from typing_extensions import assert_type
from unixipc import MappedFile, PosixSharedMemory, SysVSharedMemory

def check(memory: PosixSharedMemory, file: MappedFile, segment: SysVSharedMemory) -> None:
    assert_type(memory.as_array(numpy.float64, 4), npt.NDArray[numpy.float64])
    assert_type(file.as_array(numpy.dtype(numpy.int32), (2, 2)), npt.NDArray[numpy.int32])
    assert_type(segment.as_array(numpy.uint8, 4, 8), npt.NDArray[numpy.uint8])
    assert_type(memory.as_array("u1", 4), npt.NDArray[Any])
"""


@pytest.mark.timeout(900)  # mypy reads NumPy's stubs: slow on a loaded machine
def test_as_array_is_typed_by_its_dtype(tmp_path: Path) -> None:
    from mypy import api

    source = tmp_path / "typed.py"
    source.write_text("from typing import Any\n" + TYPED)
    # The project's own cache (make typecheck fills it first) saves reading them again.
    cache = Path(__file__).parent.parent / ".mypy_cache"
    out, err, status = api.run(["--strict", "--cache-dir", str(cache), str(source)])
    assert status == 0, out + err


# ---- timeouts that never run out --------------------------------------------------


def _hold_for_a_while(
    acquire: Callable[[], None], release: Callable[[], None], holders: list[threading.Thread]
) -> None:
    """Hold a lock in another thread for 0.3 s; return once it is held."""
    held = threading.Event()

    def hold() -> None:
        acquire()
        held.set()
        time.sleep(0.3)
        release()

    holder = threading.Thread(target=hold, daemon=True)
    holders.append(holder)
    holder.start()
    assert held.wait(60)


@pytest.mark.parametrize("timeout", [math.inf, 1e12, 2.0**63])
def test_endless_timeouts_block_until_released(
    timeout: float, names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("sem")
    cleanup(posix_sem.unlink, name)
    key = names.key()
    cleanup(sysv_sem.unlink, key)
    mutex_name = names.posix("mutex")
    cleanup(posix_shm.unlink, mutex_name)
    path = names.path("lock")
    holders: list[threading.Thread] = []
    # (with on a semaphore or mutex holds it: closing() only closes)
    with (
        closing(PosixSemaphore.create(name, value=1)) as semaphore,
        SysVSemaphoreSet.create(key, 1, values=[1]) as semaphores,
        closing(SharedMutex.create(mutex_name)) as mutex,
        closing(FileLock(path)) as other,
    ):
        try:
            _hold_for_a_while(semaphore.acquire, semaphore.release, holders)
            semaphore.acquire(timeout=timeout)
            _hold_for_a_while(
                lambda: semaphores.op([(0, -1)]), lambda: semaphores.op([(0, 1)]), holders
            )
            semaphores.op([(0, -1)], timeout=timeout)
            _hold_for_a_while(mutex.acquire, mutex.release, holders)
            mutex.acquire(timeout=timeout)
            mutex.release()
            _hold_for_a_while(other.acquire, other.release, holders)
            with closing(FileLock(path)) as lock:
                lock.acquire(timeout=timeout)
                lock.release()
            with pytest.raises(TimeoutExpired):  # a finite timeout still runs out
                semaphore.acquire(timeout=0.05)
        finally:
            for holder in holders:
                holder.join(60)
