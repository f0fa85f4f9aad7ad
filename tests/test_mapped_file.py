"""Memory-mapped files and anonymous shared mappings between real processes."""

from __future__ import annotations

import os
import pickle
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Names
from tests.helpers import Child
from unixipc import (
    AnonymousSharedMemory,
    ClosedResourceError,
    IPCError,
    IPCOSError,
    MappedFile,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceNotFoundError,
    mapped_file,
)


def _write_at(path: str, offset: int, data: bytes) -> int:
    with MappedFile.open(path) as memory:
        memory.buf[offset : offset + len(data)] = data
        memory.flush()
        return memory.size


def test_two_processes_share_the_file_and_it_persists(
    names: Names, cleanup: Callable[..., None]
) -> None:
    path = names.path("map")
    old = os.umask(0o077)
    try:
        memory = MappedFile.create(path, 8192, permissions=0o640)
    finally:
        os.umask(old)
    cleanup(mapped_file.unlink, path)
    with memory:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        info = memory.info()
        assert (info.path, info.size, info.permissions, info.uid) == (
            path,
            8192,
            0o640,
            os.getuid(),
        )
        assert Child(_write_at, path, 4000, b"from the child", method="spawn").result() == 8192
        assert bytes(memory.buf[4000:4014]) == b"from the child"
        memory.buf[:6] = b"parent"
        memory.flush()  # msync: on disk now, not just in the page cache
        memory.flush(4000, 14)  # a range; the offset is rounded down to a page
        with pytest.raises(ValueError, match="outside"):
            memory.flush(8000, 500)
    data = Path(path).read_bytes()
    assert data[:6] == b"parent"
    assert data[4000:4014] == b"from the child"
    assert len(data) == 8192
    with MappedFile.open(path, read_only=True) as again:  # the contents outlive the mapping
        assert bytes(again.buf[:6]) == b"parent"
        assert again.buf.readonly
        again.flush()  # nothing to write back from a read-only mapping
        with pytest.raises(PermissionDeniedError, match="read-only"):
            again.resize(10)


def test_create_open_and_their_errors(names: Names, cleanup: Callable[..., None]) -> None:
    path = names.path("map")
    with pytest.raises(ResourceNotFoundError, match=f"mapped file '{path}' does not exist"):
        MappedFile.open(path)
    with MappedFile.open_or_create(path, 100) as created:
        cleanup(mapped_file.unlink, path)
        assert created.size == 100
        with pytest.raises(ResourceExistsError, match="already exists"):
            MappedFile.create(path, 10)
        with MappedFile.open_or_create(path, 999) as opened:
            assert opened.size == 100  # an existing file keeps its size
        created.unlink()
        assert not os.path.exists(path)
        created.buf[0] = 1  # still mapped after the name is gone
    with pytest.raises(ResourceNotFoundError):
        mapped_file.unlink(path)
    with pytest.raises(ValueError, match="not a regular file"):
        MappedFile.open("/dev/null", read_only=True)
    with pytest.raises(IPCOSError, match="Is a directory"):
        MappedFile.open(os.path.dirname(path))
    with pytest.raises(ResourceNotFoundError):
        MappedFile.create(os.path.join(path, "no", "such", "dir"), 10)
    with pytest.raises(TypeError, match="path"):
        MappedFile.create(b"/tmp/x", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        MappedFile.create(path, -5)


def test_resize_and_empty_files(names: Names, cleanup: Callable[..., None]) -> None:
    path = names.path("map")
    with MappedFile.create(path, 0) as memory:
        cleanup(mapped_file.unlink, path)
        assert memory.size == 0
        assert bytes(memory.buf) == b""
        memory.resize(5000)
        memory.buf[4990:5000] = b"0123456789"
        assert os.path.getsize(path) == 5000
        view = memory.buf[:1]
        with pytest.raises(IPCError, match="cannot resize"):
            memory.resize(1)
        view.release()
        memory.resize(4995)
        assert bytes(memory.buf[-5:]) == b"01234"
    assert Path(path).read_bytes()[-5:] == b"01234"


def _read_then_write(memory: AnonymousSharedMemory) -> bytes:
    seen = bytes(memory.buf[:5])
    memory.buf[5:10] = b"world"
    return seen


def test_anonymous_memory_is_shared_with_forked_children() -> None:
    with AnonymousSharedMemory.create(64) as memory:
        memory.buf[:5] = b"hello"
        assert Child(_read_then_write, memory, method="fork").result() == b"hello"
        assert bytes(memory.buf[:10]) == b"helloworld"
        with pytest.raises(TypeError, match="only children created by fork"):
            pickle.dumps(memory)
    with pytest.raises(ClosedResourceError):
        _ = memory.buf
    with pytest.raises(ValueError, match="size"):
        AnonymousSharedMemory.create(0)
