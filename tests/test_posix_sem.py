"""POSIX semaphores, named and memory-based, between real processes and with a C peer."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Names
from tests.helpers import Child, assert_elapsed, compile_c, wait_until
from unixipc import (
    AnonymousSharedMemory,
    ClosedResourceError,
    IPCError,
    PosixSemaphore,
    PosixSharedMemory,
    ResourceExistsError,
    ResourceLimitError,
    ResourceNotFoundError,
    TimeoutExpired,
    WouldBlock,
    posix_sem,
    posix_shm,
)


@pytest.fixture
def semaphore_name(names: Names, cleanup: Callable[..., None]) -> str:
    name = names.posix("sem")
    cleanup(posix_sem.unlink, name)
    return name


def test_create_open_and_their_errors(semaphore_name: str) -> None:
    name = semaphore_name
    assert not posix_sem.exists(name)
    with pytest.raises(ResourceNotFoundError, match=f"POSIX semaphore '{name}' does not exist"):
        PosixSemaphore.open(name)
    old = os.umask(0o077)
    try:
        semaphore = PosixSemaphore.create(name, value=3, permissions=0o640)
    finally:
        os.umask(old)
    try:
        assert posix_sem.exists(name)
        assert name in posix_sem.list_names()
        assert name not in posix_shm.list_names()
        assert stat.S_IMODE(os.stat(f"/dev/shm/sem.{name[1:]}").st_mode) == 0o640
        assert semaphore.info() == posix_sem.PosixSemaphoreInfo(
            name, 3, 0o640, os.getuid(), os.getgid()
        )
        with pytest.raises(ResourceExistsError, match="already exists"):
            PosixSemaphore.create(name, value=0)
        again = PosixSemaphore.open_or_create(name, value=99)
        assert again.value == 3  # an existing semaphore keeps its value
        again.acquire()
        again.close()
        assert semaphore.value == 2
    finally:
        semaphore.close()
    semaphore.close()  # idempotent
    with pytest.raises(ClosedResourceError):
        semaphore.acquire()
    with pytest.raises(ClosedResourceError):
        semaphore.release()
    posix_sem.unlink(name)
    with pytest.raises(ResourceNotFoundError):
        posix_sem.unlink(name)


def test_with_acquires_and_releases(semaphore_name: str) -> None:
    with PosixSemaphore.create(semaphore_name, value=1) as semaphore:
        assert semaphore.value == 0
        with pytest.raises(WouldBlock):
            semaphore.acquire(timeout=0)
    assert semaphore.value == 1
    semaphore.close()


def test_timeouts(semaphore_name: str) -> None:
    semaphore = PosixSemaphore.create(semaphore_name, value=0)
    try:
        with pytest.raises(WouldBlock, match="would block"):
            semaphore.acquire(timeout=0)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired, match=r"timed out after 0\.3 s"):
            semaphore.acquire(timeout=0.3)
        assert_elapsed(started, 0.3)
        semaphore.release()
        semaphore.acquire(timeout=0)
        semaphore.release()
        semaphore.acquire(timeout=5)
        with pytest.raises(ValueError, match="timeout"):
            semaphore.acquire(timeout=-1)
        with pytest.raises(TypeError, match="timeout"):
            semaphore.acquire(timeout="1")  # type: ignore[arg-type]
    finally:
        semaphore.close()


def test_signals_run_their_handlers_and_the_wait_goes_on(semaphore_name: str) -> None:
    semaphore = PosixSemaphore.create(semaphore_name, value=0)
    caught = []
    previous = signal.signal(signal.SIGALRM, lambda *_: caught.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        started = time.monotonic()
        with pytest.raises(TimeoutExpired):
            semaphore.acquire(timeout=0.5)
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert_elapsed(started, 0.5)
        assert len(caught) >= 2

        def interrupt(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(KeyboardInterrupt):
            semaphore.acquire()  # Ctrl-C ends even an unbounded wait
        assert semaphore.value == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        semaphore.close()


def _open_then_acquire(name: str, opened_flag: str) -> str:
    semaphore = PosixSemaphore.open(name)
    Path(opened_flag).touch()
    with semaphore:  # acquired here (waiting for the parent's release)...
        pass  # ...and released on the way out
    semaphore.close()
    return "acquired"


def test_a_release_wakes_a_waiting_process_even_after_unlink(
    semaphore_name: str, names: Names
) -> None:
    semaphore = PosixSemaphore.create(semaphore_name, value=0)
    opened = names.path("opened")
    try:
        child = Child(_open_then_acquire, semaphore_name, opened, method="spawn")
        wait_until(lambda: os.path.exists(opened))
        semaphore.unlink()  # the name goes, the semaphore stays for those using it
        assert not posix_sem.exists(semaphore_name)
        semaphore.release()
        assert child.result() == "acquired"
        assert semaphore.value == 1
    finally:
        semaphore.close()


def test_release_beyond_the_maximum_is_an_error(semaphore_name: str) -> None:
    with pytest.raises(ValueError, match="SEM_VALUE_MAX"):
        PosixSemaphore.create(semaphore_name, value=posix_sem.VALUE_MAX + 1)
    semaphore = PosixSemaphore.create(semaphore_name, value=posix_sem.VALUE_MAX)
    try:
        with pytest.raises(ResourceLimitError, match="SEM_VALUE_MAX"):
            semaphore.release()
        assert semaphore.value == posix_sem.VALUE_MAX
    finally:
        semaphore.close()


def test_close_is_refused_while_another_thread_waits(semaphore_name: str) -> None:
    semaphore = PosixSemaphore.create(semaphore_name, value=0)
    waiter = threading.Thread(target=semaphore.acquire, kwargs={"timeout": 60})
    waiter.start()
    try:
        wait_until(lambda: semaphore._handle.waiting == 1)  # inside acquire() now
        with pytest.raises(IPCError, match="threads wait on it"):
            semaphore.close()
    finally:
        semaphore.release()
        waiter.join(60)
    semaphore.close()


def test_bad_arguments(names: Names) -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        PosixSemaphore.create("x", value=1)
    with pytest.raises(TypeError, match="value"):
        PosixSemaphore.create(names.posix(), value=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value"):
        PosixSemaphore.create(names.posix(), value=-1)
    with pytest.raises(TypeError):
        PosixSemaphore.create(names.posix())  # type: ignore[call-arg]


# -- memory-based -----------------------------------------------------------


def _attach_and_acquire(memory_name: str, offset: int) -> int:
    with PosixSharedMemory.open(memory_name) as memory:
        semaphore = PosixSemaphore.in_buffer(memory, offset)  # already initialized
        semaphore.acquire(timeout=60)
        value = semaphore.value
        semaphore.close()
        return value


@pytest.fixture
def memory(names: Names, cleanup: Callable[..., None]) -> Iterator[PosixSharedMemory]:
    name = names.posix("semmem")
    with PosixSharedMemory.create(name, 4096) as shared:
        cleanup(posix_shm.unlink, name)
        yield shared


def test_a_semaphore_in_shared_memory_works_across_processes(memory: PosixSharedMemory) -> None:
    semaphore = PosixSemaphore.in_buffer(memory, 128, value=0)
    try:
        assert semaphore.name is None
        assert semaphore.info() == posix_sem.PosixSemaphoreInfo(None, 0, None, None, None)
        child = Child(_attach_and_acquire, memory.name, 128, method="spawn")
        semaphore.release()
        semaphore.release()
        assert child.result() == 1
        assert semaphore.value == 1
        with pytest.raises(IPCError, match="still in use"):
            memory.close()  # the semaphore keeps its memory mapped
        with pytest.raises(TypeError, match="no name"):
            semaphore.unlink()
    finally:
        semaphore.close()


def _acquire_inherited(semaphore: PosixSemaphore) -> int:
    semaphore.acquire(timeout=60)
    return semaphore.value


def test_a_semaphore_in_anonymous_memory_works_with_a_forked_child() -> None:
    with AnonymousSharedMemory.create(64) as anonymous:
        semaphore = PosixSemaphore.in_buffer(anonymous.buf, 0, value=0)
        child = Child(_acquire_inherited, semaphore, method="fork")
        semaphore.release()
        assert child.result() == 0
        semaphore.close()


def test_in_buffer_checks_where_it_goes(memory: PosixSharedMemory) -> None:
    size, alignment = PosixSemaphore.SIZE, PosixSemaphore.ALIGNMENT
    with pytest.raises(ValueError, match="aligned"):
        PosixSemaphore.in_buffer(memory, alignment + 1, value=1)
    with pytest.raises(ValueError, match=f"needs {size} bytes"):
        PosixSemaphore.in_buffer(memory, 4096 - size + alignment, value=1)
    with pytest.raises(ValueError, match="offset"):
        PosixSemaphore.in_buffer(memory, -8, value=1)
    with pytest.raises(TypeError, match="writable"):
        PosixSemaphore.in_buffer(bytes(64), 0, value=1)
    with pytest.raises(TypeError):
        PosixSemaphore.in_buffer(12, 0, value=1)
    with (
        PosixSharedMemory.open(memory.name, read_only=True) as reader,
        pytest.raises(TypeError, match="writable"),
    ):
        PosixSemaphore.in_buffer(reader, 0)
    last = PosixSemaphore.in_buffer(memory, 4096 - size, value=7)
    assert last.value == 7
    last.close()
    memory.close()  # possible again once the semaphore let go


# -- a C peer -----------------------------------------------------------------

C_POSTER = r"""
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* named NAME: sem_post the named semaphore; memory SHM OFFSET: the one in shared memory */
int main(int argc, char **argv)
{
    (void)argc;
    usleep(200 * 1000);  /* let the Python side start waiting first */
    sem_t *sem;
    if (strcmp(argv[1], "named") == 0) {
        sem = sem_open(argv[2], 0);
        if (sem == SEM_FAILED) { perror("sem_open"); return 1; }
    } else {
        int fd = shm_open(argv[2], O_RDWR, 0);
        if (fd < 0) { perror("shm_open"); return 1; }
        char *memory = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (memory == MAP_FAILED) { perror("mmap"); return 1; }
        sem = (sem_t *)(memory + atoi(argv[3]));
    }
    if (sem_post(sem) != 0) { perror("sem_post"); return 1; }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_poster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(C_POSTER, tmp_path_factory.mktemp("c"), "poster", "pthread", "rt")


def test_sem_post_from_c_wakes_python(c_poster: Path, semaphore_name: str) -> None:
    semaphore = PosixSemaphore.create(semaphore_name, value=0)
    try:
        poster = subprocess.Popen([str(c_poster), "named", semaphore_name])
        semaphore.acquire(timeout=60)
        assert poster.wait(60) == 0
        assert semaphore.value == 0
    finally:
        semaphore.close()


def test_sem_post_from_c_wakes_python_in_shared_memory(
    c_poster: Path, memory: PosixSharedMemory
) -> None:
    semaphore = PosixSemaphore.in_buffer(memory, 256, value=0)
    try:
        poster = subprocess.Popen([str(c_poster), "memory", memory.name, "256"])
        semaphore.acquire(timeout=60)
        assert poster.wait(60) == 0
        assert semaphore.value == 0
    finally:
        semaphore.close()


def test_an_unclosed_semaphore_warns(semaphore_name: str) -> None:
    semaphore = PosixSemaphore.create(semaphore_name, value=0)
    with pytest.warns(ResourceWarning, match="unclosed POSIX semaphore"):
        del semaphore
