"""Every kind of shared memory, one conformance suite: zero-copy NumPy views between
processes, read-only opens that refuse writes, and close() refusing while views live."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy
import pytest

from tests.conftest import Names
from tests.helpers import Child, run_python
from unixipc import (
    AnonymousSharedMemory,
    IPCError,
    MappedFile,
    PosixSharedMemory,
    SysVSharedMemory,
    mapped_file,
    posix_shm,
    sysv_shm,
)
from unixipc._memory import MemoryBase

SHAPE = (4, 8)
SIZE = 4096


@dataclass
class Kind:
    """How to create one kind of memory, and how another process opens it."""

    name: str
    create: Callable[[Names, Callable[..., None]], tuple[MemoryBase, Any]]
    # a module-level function (spawn can import it): (address, read_only) -> memory
    opener: Callable[[Any, bool], MemoryBase]
    method: str = "spawn"


def _open_posix(name: str, read_only: bool) -> MemoryBase:
    return PosixSharedMemory.open(name, read_only=read_only)


def _open_sysv(key: int, read_only: bool) -> MemoryBase:
    return SysVSharedMemory.open(key, read_only=read_only)


def _open_file(path: str, read_only: bool) -> MemoryBase:
    return MappedFile.open(path, read_only=read_only)


_inherited: AnonymousSharedMemory | None = None


def _open_inherited(_: object, read_only: bool) -> MemoryBase:
    assert _inherited is not None  # the forked child's copy of the parent's object
    return _inherited


def _create_posix(names: Names, cleanup: Callable[..., None]) -> tuple[MemoryBase, Any]:
    name = names.posix("arr")
    memory = PosixSharedMemory.create(name, SIZE)
    cleanup(posix_shm.unlink, name)
    return memory, name


def _create_sysv(names: Names, cleanup: Callable[..., None]) -> tuple[MemoryBase, Any]:
    key = names.key()
    memory = SysVSharedMemory.create(key, SIZE)
    cleanup(sysv_shm.unlink, key)
    return memory, key


def _create_file(names: Names, cleanup: Callable[..., None]) -> tuple[MemoryBase, Any]:
    path = names.path("arr")
    memory = MappedFile.create(path, SIZE)
    cleanup(mapped_file.unlink, path)
    return memory, path


def _create_anonymous(names: Names, cleanup: Callable[..., None]) -> tuple[MemoryBase, Any]:
    global _inherited
    _inherited = AnonymousSharedMemory.create(SIZE)
    return _inherited, None


KINDS = [
    Kind("posix", _create_posix, _open_posix),
    Kind("sysv", _create_sysv, _open_sysv),
    Kind("mapped-file", _create_file, _open_file),
    Kind("anonymous", _create_anonymous, _open_inherited, method="fork"),
]


@pytest.fixture(params=KINDS, ids=[kind.name for kind in KINDS])
def memory_and_kind(
    request: pytest.FixtureRequest, names: Names, cleanup: Callable[..., None]
) -> Iterator[tuple[MemoryBase, Any, Kind]]:
    kind: Kind = request.param
    memory, address = kind.create(names, cleanup)
    yield memory, address, kind
    memory.close()


def _add_one_through_a_view(opener: Callable[[Any, bool], MemoryBase], address: Any) -> int:
    memory = opener(address, False)
    array = memory.as_array(numpy.int64, SHAPE, offset=64)
    array += 1  # in place: the other process sees it, nothing is copied
    total = int(array.sum())
    del array
    if memory is not _inherited:  # the fork copied the parent's arrays of it too
        memory.close()
    return total


def _try_writing_read_only(opener: Callable[[Any, bool], MemoryBase], address: Any) -> str:
    memory = opener(address, True)
    assert memory.buf.readonly
    array = memory.as_array(numpy.int64, SHAPE, offset=64)
    assert not array.flags.writeable
    try:
        array[0, 0] = 99
    except ValueError as error:
        outcome = f"refused: {error}"
    else:
        outcome = "written"
    try:
        memory.buf[0] = 1
    except TypeError:
        outcome += "; buf refused"
    del array
    memory.close()
    return outcome


def test_numpy_views_are_shared_between_processes(
    memory_and_kind: tuple[MemoryBase, Any, Kind],
) -> None:
    memory, address, kind = memory_and_kind
    array = memory.as_array(numpy.int64, SHAPE, offset=64)
    array[:] = numpy.arange(32).reshape(SHAPE)
    expected = int(numpy.arange(1, 33).sum())
    assert Child(_add_one_through_a_view, kind.opener, address, method=kind.method).result() == (
        expected
    )
    assert (array == numpy.arange(1, 33).reshape(SHAPE)).all()
    # The bytes really are in the shared memory, at the offset asked for.
    assert bytes(memory.buf[64:72]) == (1).to_bytes(8, "little")
    del array


# An anonymous mapping has no read-only open: children inherit it as it is.
@pytest.mark.parametrize("kind", KINDS[:3], ids=[kind.name for kind in KINDS[:3]])
def test_read_only_opens_refuse_writes(
    kind: Kind, names: Names, cleanup: Callable[..., None]
) -> None:
    memory, address = kind.create(names, cleanup)
    with memory:
        outcome = Child(_try_writing_read_only, kind.opener, address, method=kind.method).result()
        assert outcome.startswith("refused")
        assert outcome.endswith("buf refused")
        assert bytes(memory.buf[64:72]) == bytes(8)


def test_close_refuses_while_an_array_is_alive(
    memory_and_kind: tuple[MemoryBase, Any, Kind],
) -> None:
    memory, _, _ = memory_and_kind
    array = memory.as_array("u1", 16)
    view = array[4:8]  # a view of the view keeps the memory in use too
    del array
    with pytest.raises(IPCError, match="still in use"):
        memory.close()
    view[:] = 5
    assert bytes(memory.buf[4:8]) == b"\5\5\5\5"
    del view
    memory.close()
    assert memory.closed


def test_as_array_checks_its_arguments(memory_and_kind: tuple[MemoryBase, Any, Kind]) -> None:
    memory, _, _ = memory_and_kind
    with pytest.raises(ValueError, match="needs 4104 bytes at offset 8"):
        memory.as_array(numpy.float64, (513,), offset=8)
    with pytest.raises(ValueError, match="offset"):
        memory.as_array("u1", 1, offset=-1)
    with pytest.raises(TypeError, match="shape"):
        memory.as_array("u1", [2, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        memory.as_array("u1", (2, -1))
    with pytest.raises(TypeError):
        memory.as_array("not a dtype", 1)
    assert memory.as_array("u1", 0, offset=SIZE).shape == (0,)
    whole = memory.as_array("u1", SIZE)
    assert whole.shape == (SIZE,)
    del whole


def test_without_numpy_as_array_says_so() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["numpy"] = None  # as if it were not installed
        from unixipc import AnonymousSharedMemory, UnsupportedFeature
        with AnonymousSharedMemory.create(64) as memory:
            try:
                memory.as_array("u1", 8)
            except UnsupportedFeature as error:
                print(error)
        """
    )
    output = run_python(code).stdout
    assert "as_array() needs NumPy, which is not installed" in output


def test_fd_count_is_stable(names: Names, cleanup: Callable[..., None]) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for kind in KINDS:
        memory, _ = kind.create(names, cleanup)
        memory.close()
    assert len(os.listdir("/proc/self/fd")) == before
