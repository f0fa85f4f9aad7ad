"""POSIX shared memory between real processes."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

import pytest

from tests.conftest import Names
from tests.helpers import START_METHODS, Child
from unixipc import (
    ClosedResourceError,
    IPCError,
    PermissionDeniedError,
    PosixSharedMemory,
    ResourceExistsError,
    ResourceLimitError,
    ResourceNotFoundError,
    posix_shm,
)


def _write_in_child(name: str, data: bytes) -> int:
    with PosixSharedMemory.open(name) as memory:
        memory.buf[: len(data)] = data
        return memory.size


@pytest.mark.parametrize("method", START_METHODS)
def test_writes_are_seen_across_processes(
    names: Names, cleanup: Callable[..., None], method: str
) -> None:
    name = names.posix("shm")
    with PosixSharedMemory.create(name, 4096) as memory:
        cleanup(posix_shm.unlink, name)
        assert bytes(memory.buf[:5]) == b"\0" * 5
        assert Child(_write_in_child, name, b"hello", method=method).result() == 4096
        assert bytes(memory.buf[:5]) == b"hello"
        memory.unlink()
    assert not posix_shm.exists(name)


def test_create_open_and_their_errors(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("shm")
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        PosixSharedMemory.open(name)
    old = os.umask(0o077)
    try:
        memory = PosixSharedMemory.create(name, 100, permissions=0o640)
    finally:
        os.umask(old)
    cleanup(posix_shm.unlink, name)
    with memory:
        assert stat.S_IMODE(os.stat(f"/dev/shm{name}").st_mode) == 0o640
        info = memory.info()
        assert (info.name, info.size, info.permissions, info.uid) == (name, 100, 0o640, os.getuid())
        with pytest.raises(ResourceExistsError, match="already exists"):
            PosixSharedMemory.create(name, 100)
        with PosixSharedMemory.open_or_create(name, 999) as again:
            assert again.size == 100  # an existing object keeps its size
        with PosixSharedMemory.open(name, read_only=True) as reader:
            assert reader.buf.readonly
            with pytest.raises(TypeError):
                reader.buf[0] = 1
    posix_shm.unlink(name)
    with pytest.raises(ResourceNotFoundError):
        posix_shm.unlink(name)


def test_close_with_live_views_is_refused_then_works(
    names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("shm")
    memory = PosixSharedMemory.create(name, 64)
    cleanup(posix_shm.unlink, name)
    view = memory.buf[8:16]
    with pytest.raises(IPCError, match="still in use"):
        memory.close()
    assert not memory.closed
    view[0] = 7
    assert memory.buf[8] == 7
    view.release()
    memory.close()
    memory.close()
    with pytest.raises(ClosedResourceError):
        _ = memory.buf


def test_bad_arguments(names: Names) -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        PosixSharedMemory.create("noslash", 10)
    with pytest.raises(ValueError, match="'/'"):
        PosixSharedMemory.create("/a/b", 10)
    with pytest.raises(TypeError, match="size"):
        PosixSharedMemory.create(names.posix(), "10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        PosixSharedMemory.create(names.posix(), -1)
    with pytest.raises(TypeError, match="name"):
        PosixSharedMemory.open(b"/x")  # type: ignore[arg-type]


def _size_seen_by_another_process(name: str) -> int:
    with PosixSharedMemory.open(name, read_only=True) as memory:
        return memory.size


def test_resize_keeps_contents_and_refuses_with_live_views(
    names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("shm")
    with PosixSharedMemory.create(name, 100) as memory:
        cleanup(posix_shm.unlink, name)
        memory.buf[:5] = b"hello"
        memory.resize(10000)
        assert memory.size == memory.info().size == 10000
        assert bytes(memory.buf[:5]) == b"hello"
        assert bytes(memory.buf[5:]) == bytes(9995)
        assert Child(_size_seen_by_another_process, name).result() == 10000
        view = memory.buf[:10]
        with pytest.raises(IPCError, match=r"cannot resize .* still in use"):
            memory.resize(50)
        assert memory.size == 10000  # nothing changed
        view.release()
        memory.resize(3)
        assert bytes(memory.buf) == b"hel"
        memory.resize(0)
        assert memory.size == 0
        assert bytes(memory.buf) == b""
        memory.resize(8)
        assert bytes(memory.buf) == bytes(8)
        with PosixSharedMemory.open(name, read_only=True) as reader:
            with pytest.raises(PermissionDeniedError, match="read-only"):
                reader.resize(100)
            assert reader.size == 8
        with pytest.raises(ValueError, match="size"):
            memory.resize(-1)


def test_list_names_leaves_out_semaphores(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("shm")
    with PosixSharedMemory.create(name, 1):
        cleanup(posix_shm.unlink, name)
        # A named semaphore is a file "sem.<name>" in /dev/shm.
        semaphore_file = f"/dev/shm/sem.{names.posix('sem')[1:]}"
        with open(semaphore_file, "wb"):
            pass
        cleanup(os.unlink, semaphore_file)
        listed = posix_shm.list_names()
        assert name in listed
        assert listed == sorted(listed)
        assert not any(entry.startswith("/sem.") for entry in listed)
        posix_shm.unlink(name)
        assert name not in posix_shm.list_names()


def _open_and_die(name: str) -> None:
    PosixSharedMemory.open(name)
    os._exit(0)  # no close, no cleanup of any kind


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_openers_never_remove_the_object(
    names: Names, cleanup: Callable[..., None], method: str
) -> None:
    name = names.posix("shm")
    with PosixSharedMemory.create(name, 10):
        cleanup(posix_shm.unlink, name)
        child = Child(_write_in_child, name, b"x", method=method)
        assert child.result() == 10
        dying = Child(_open_and_die, name, method=method)
        dying.process.join(60)
        assert dying.process.exitcode == 0
        dying.kill()
        assert posix_shm.exists(name)


@pytest.mark.parametrize("size", [1 << 50, 2**63 - 1])
def test_a_create_too_large_leaves_nothing(names: Names, size: int) -> None:
    name = names.posix("shm")
    with pytest.raises(ResourceLimitError, match="/dev/shm"):
        PosixSharedMemory.create(name, size)
    assert not posix_shm.exists(name)
    with PosixSharedMemory.create(name, 4096) as memory:  # the name is free again
        memory.unlink()
