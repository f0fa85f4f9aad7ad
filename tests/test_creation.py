"""Creation is all or nothing, exact, and reserves shared memory: on every memory and
synchronization facility.

- An exception raised at *every* point of a ``create`` where CPython may run a
  signal handler (which is where Ctrl-C's KeyboardInterrupt appears: at a
  function's entry, after any call returns, at a loop's backward jump) leaves
  no object behind.
- A mapping that fails (address-space limit) leaves nothing.
- In a private mount namespace whose /dev/shm is a 1 MiB tmpfs, creating or
  growing past the room raises ResourceLimitError, leaves nothing, and no write
  ever dies of SIGBUS.
- Permissions and group are never more open than asked, at any instant, under
  umask 000, as seen by another process watching the name.
"""

from __future__ import annotations

import contextlib
import dis
import gc
import grp
import os
import resource
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

import unixipc
from tests.conftest import Names
from tests.helpers import Child
from unixipc import (
    FileLock,
    MappedFile,
    PosixMessageQueue,
    PosixSemaphore,
    PosixSharedMemory,
    SharedBarrier,
    SharedMutex,
    SysVMessageQueue,
    SysVSemaphoreSet,
    SysVSharedMemory,
    fifo,
    posix_mq,
    posix_sem,
    posix_shm,
    sockets,
    sysv_mq,
    sysv_sem,
    sysv_shm,
)

_LIBRARY = os.path.dirname(unixipc.__file__)

#: A group that is not this process's own (root may give objects any group).
OTHER_GROUP = next(g for g in grp.getgrall() if g.gr_gid != os.getgid())


def _sysv_row(table: str, key: int) -> tuple[int, int]:
    """(permission bits, gid) of the System V object with ``key``, from /proc."""
    with open(f"/proc/sysvipc/{table}") as lines:
        header = next(lines).split()
        for line in lines:
            row = dict(zip(header, line.split(), strict=False))
            if int(row["key"]) == key:
                return int(row["perms"], 8) & 0o777, int(row["gid"])
    raise LookupError(key)


def _file_owner(path: str) -> tuple[int, int]:
    status = os.stat(path, follow_symlinks=False)
    return stat.S_IMODE(status.st_mode), status.st_gid


@dataclass(frozen=True)
class Facility:
    """How a test makes, finds, inspects and removes one kind of object."""

    place: Callable[[Names], Any]  # a fresh name, path or key
    create: Callable[..., Any]  # create(place, **options) -> the object
    exists: Callable[[Any], bool]
    owner: Callable[[Any], tuple[int, int]]  # (permission bits, gid) as the system shows
    remove: Callable[[Any], None]  # by place, whatever state it is in
    #: True when the object is prepared out of sight and appears exact at once;
    #: False when it starts stricter (no group bits) and is opened up after.
    appears_whole: bool = True


def _unlink_sysv(module: Any) -> Callable[[int], None]:
    def remove(key: int) -> None:
        with contextlib.suppress(OSError):
            module.unlink(key)

    return remove


def _suppressing(function: Callable[[Any], None]) -> Callable[[Any], None]:
    def remove(place: Any) -> None:
        with contextlib.suppress(OSError):
            function(place)

    return remove


FACILITIES = {
    "posix-shm": Facility(
        lambda names: names.posix("shm"),
        lambda name, **options: PosixSharedMemory.create(name, 4096, **options),
        posix_shm.exists,
        lambda name: _file_owner(f"/dev/shm{name}"),
        _suppressing(posix_shm.unlink),
    ),
    "posix-shm-initialized": Facility(
        lambda names: names.posix("shm"),
        lambda name, **options: PosixSharedMemory.create(
            name, 4096, initialize=lambda memory: memory.__setitem__(0, 42), **options
        ),
        posix_shm.exists,
        lambda name: _file_owner(f"/dev/shm{name}"),
        _suppressing(posix_shm.unlink),
    ),
    "mapped-file": Facility(
        lambda names: names.path("map"),
        lambda path, **options: MappedFile.create(path, 4096, **options),
        os.path.lexists,
        _file_owner,
        _suppressing(os.unlink),
    ),
    "posix-sem": Facility(
        lambda names: names.posix("sem"),
        lambda name, **options: PosixSemaphore.create(name, value=3, **options),
        posix_sem.exists,
        lambda name: _file_owner(f"/dev/shm/sem.{name[1:]}"),
        _suppressing(posix_sem.unlink),
    ),
    "shared-mutex": Facility(
        lambda names: names.posix("mutex"),
        lambda name, **options: SharedMutex.create(name, **options),
        posix_shm.exists,
        lambda name: _file_owner(f"/dev/shm{name}"),
        _suppressing(posix_shm.unlink),
    ),
    "shared-barrier": Facility(
        lambda names: names.posix("barrier"),
        lambda name, **options: SharedBarrier.create(name, 3, **options),
        posix_shm.exists,
        lambda name: _file_owner(f"/dev/shm{name}"),
        _suppressing(posix_shm.unlink),
    ),
    "sysv-shm": Facility(
        lambda names: names.key(),
        lambda key, **options: SysVSharedMemory.create(key, 4096, **options),
        sysv_shm.exists,
        lambda key: _sysv_row("shm", key),
        _unlink_sysv(sysv_shm),
        appears_whole=False,
    ),
    "sysv-sem": Facility(
        lambda names: names.key(),
        lambda key, **options: SysVSemaphoreSet.create(key, 2, values=[1, 2], **options),
        sysv_sem.exists,
        lambda key: _sysv_row("sem", key),
        _unlink_sysv(sysv_sem),
        appears_whole=False,
    ),
}


def _mq_owner(name: str) -> tuple[int, int]:
    with PosixMessageQueue.open(name, write=False) as queue:
        info = queue.info()
    return info.permissions, info.gid


class _Node:
    """A FIFO made by mkfifo, as an object the tests can close."""

    def close(self) -> None:
        pass


def _made_fifo(path: str, **options: Any) -> _Node:
    fifo.mkfifo(path, **options)
    return _Node()


# The message queues, FIFOs and socket files follow the same rules.
FACILITIES["posix-mq"] = Facility(
    lambda names: names.posix("mq"),
    lambda name, **options: PosixMessageQueue.create(
        name, max_messages=1, max_message_size=16, **options
    ),
    posix_mq.exists,
    _mq_owner,
    _suppressing(posix_mq.unlink),
    appears_whole=False,
)
FACILITIES["sysv-mq"] = Facility(
    lambda names: names.key(),
    lambda key, **options: SysVMessageQueue.create(key, **options),
    sysv_mq.exists,
    lambda key: _sysv_row("msg", key),
    _unlink_sysv(sysv_mq),
    appears_whole=False,
)
FACILITIES["fifo"] = Facility(
    lambda names: names.path("fifo"),
    _made_fifo,
    os.path.lexists,
    _file_owner,
    _suppressing(os.unlink),
    appears_whole=False,
)
FACILITIES["unix-socket"] = Facility(
    lambda names: names.path("sock"),
    lambda path, **options: sockets.unix_listen(path, **options),
    os.path.lexists,
    _file_owner,
    _suppressing(os.unlink),
    appears_whole=False,
)


class Interrupted(KeyboardInterrupt):
    """What a signal handler raising at that instant would raise."""


# After these, the interpreter checks for pending signals (3.10 after every
# call, 3.11+ after calls that do not inline a Python frame: we take the union).
_CALLS = {"CALL", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_METHOD"}
_OPNAMES: dict[CodeType, dict[int, str]] = {}


def _opname(code: CodeType, offset: int) -> str:
    if code not in _OPNAMES:
        _OPNAMES[code] = {i.offset: i.opname for i in dis.get_instructions(code)}
    return _OPNAMES[code].get(offset, "")


@contextlib.contextmanager
def _interrupt_at(position: int) -> Iterator[list[int]]:
    """Raise Interrupted at the ``position``-th point inside unixipc where a signal
    handler could run: a frame's first instruction, the instruction after a call,
    the target of a backward jump.

    Yields a one-item list that counts those points (when none raised).
    """
    counted = [0]
    # By frame id, forgotten when the frame returns: holding frames would keep
    # their locals (memoryviews...) alive.
    previous: dict[int, tuple[int, str]] = {}

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "return":
            previous.pop(id(frame), None)
        if event != "opcode":
            return local
        offset = frame.f_lasti
        last = previous.get(id(frame))
        previous[id(frame)] = (offset, _opname(frame.f_code, offset))
        if last is not None and last[1] not in _CALLS and offset > last[0]:
            return local  # no signal handler can run here
        counted[0] += 1
        if counted[0] == position + 1:  # once: the cleanup then runs undisturbed
            where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
            raise Interrupted(f"{where} in {frame.f_code.co_name} at {offset}")
        return local

    def calls(frame: FrameType, event: str, arg: object) -> Any:
        # (Python prints and drops what a finalizer raises: nothing to test there.)
        if not frame.f_code.co_filename.startswith(_LIBRARY) or frame.f_code.co_name == "__del__":
            return None
        frame.f_trace_opcodes = True
        return local

    gc.disable()  # a collection would run unrelated code in between
    sys.settrace(calls)
    try:
        yield counted
    finally:
        sys.settrace(None)
        gc.enable()
        previous.clear()


@pytest.mark.parametrize("kind", sorted(FACILITIES))
def test_an_interrupt_anywhere_in_create_leaves_nothing(
    kind: str, names: Names, cleanup: Callable[..., None]
) -> None:
    facility = FACILITIES[kind]
    place = facility.place(names)
    cleanup(facility.remove, place)
    options = {"permissions": 0o640, "group": OTHER_GROUP.gr_gid}
    position = 0
    while True:
        try:
            with _interrupt_at(position) as counted:
                made = facility.create(place, **options)
        except Interrupted as interrupted:
            where = str(interrupted)
        else:
            break
        assert not facility.exists(place), f"{kind}: left behind, interrupted at {where}"
        position += 1
    # The last run went through without an interrupt: every bytecode was tried.
    assert position == counted[0] > 30
    assert facility.exists(place)
    assert facility.owner(place) == (0o640, OTHER_GROUP.gr_gid)
    made.close()
    facility.remove(place)


def _create_under_address_limit(kind: str, place: Any) -> tuple[str, bool]:
    facility = FACILITIES[kind]
    with open("/proc/self/status") as status:
        virtual = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, ((virtual << 10) + (16 << 20), hard))
    cls = PosixSharedMemory if kind == "posix-shm" else MappedFile
    try:
        cls.create(place, 64 << 20)
    except Exception as error:
        return type(error).__name__, facility.exists(place)
    return "created", facility.exists(place)


@pytest.mark.parametrize("kind", ["posix-shm", "mapped-file"])
def test_a_mapping_that_fails_leaves_nothing(
    kind: str, names: Names, cleanup: Callable[..., None]
) -> None:
    facility = FACILITIES[kind]
    place = facility.place(names)
    cleanup(facility.remove, place)
    # 64 MiB do not fit in 16 MiB of address space: mmap fails after the pages
    # were reserved.
    outcome, left = Child(_create_under_address_limit, kind, place).result()
    assert (outcome, left) == ("ResourceLimitError", False)


_SMALL_DEV_SHM = """
import os, errno
from unixipc import (MappedFile, PosixSemaphore, PosixSharedMemory, ResourceLimitError,
                     Ring, SharedMutex)

def refused(create, what, says_free_space=True):
    try:
        create()
    except ResourceLimitError as error:
        message = str(error)
        assert not says_free_space or "/dev/shm" in message and "bytes free" in message, message
    else:
        raise AssertionError(f"{what} was created on a full /dev/shm")
    assert os.listdir("/dev/shm") == ["small"], (what, os.listdir("/dev/shm"))

small = PosixSharedMemory.create("/small", 512 << 10)
refused(lambda: PosixSharedMemory.create("/big", 4 << 20), "a 4 MiB object")
refused(lambda: MappedFile.create("/dev/shm/file", 4 << 20), "a 4 MiB mapped file")
refused(lambda: Ring.create("/ring", 4 << 20), "a 4 MiB ring", says_free_space=False)
small.buf[:] = b"x" * small.size  # every page is there: no SIGBUS
refused(lambda: small.resize(4 << 20), "growing to 4 MiB")
assert small.size == small.info().size == 512 << 10  # the failed growth was undone
assert bytes(small.buf[-3:]) == b"xxx"
free = os.statvfs("/dev/shm").f_bavail * os.statvfs("/dev/shm").f_frsize
with PosixSharedMemory.create("/rest", free) as rest:  # fills /dev/shm exactly
    rest.buf[:] = b"y" * free
    refused_names = ["small", "rest"]
    for create, what in [
        (lambda: PosixSemaphore.create("/sem", value=1), "a semaphore"),
        (lambda: SharedMutex.create("/mutex"), "a shared mutex"),
        (lambda: PosixSharedMemory.create("/one", 1), "a 1-byte object"),
    ]:
        try:
            create()
        except ResourceLimitError:
            pass
        else:
            raise AssertionError(f"{what} was created on a full /dev/shm")
        assert sorted(os.listdir("/dev/shm")) == ["rest", "small"], os.listdir("/dev/shm")
    rest.unlink()
small.close()
small.unlink()
print("ok")
"""


def test_a_full_dev_shm_is_an_error_at_creation_never_a_sigbus() -> None:
    # A private mount namespace whose /dev/shm is a 1 MiB tmpfs, as a small container has.
    script = 'mount -t tmpfs -o size=1M tmpfs /dev/shm && exec "$0" -c "$1"'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, sys.executable,
         _SMALL_DEV_SHM],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.returncode, result.stderr)  # SIGBUS: -7 or 135
    assert result.stdout.strip() == "ok"


def _watch(kind: str, place: Any, stop: str) -> list[tuple[int, int]]:
    """Every (permissions, gid) the object at ``place`` showed until ``stop`` exists."""
    facility = FACILITIES[kind]
    seen: set[tuple[int, int]] = set()
    while not os.path.exists(stop):
        with contextlib.suppress(OSError, LookupError):
            seen.add(facility.owner(place))
    return sorted(seen)


FACILITIES["file-lock"] = Facility(
    lambda names: names.path("lock"),
    lambda path, **options: _locked(FileLock(path, **options)),
    os.path.lexists,
    _file_owner,
    _suppressing(os.unlink),
    appears_whole=False,
)


def _locked(lock: FileLock) -> FileLock:
    lock.acquire()
    return lock


@pytest.mark.parametrize("kind", sorted(FACILITIES))
def test_never_more_open_than_asked_at_any_instant(
    kind: str, names: Names, cleanup: Callable[..., None]
) -> None:
    facility = FACILITIES[kind]
    place = facility.place(names)
    cleanup(facility.remove, place)
    stop = names.path("stop")
    watcher = Child(_watch, kind, place, stop)
    wanted = (0o640, OTHER_GROUP.gr_gid)
    old = os.umask(0)
    try:
        for _ in range(150):
            made = facility.create(place, permissions=0o640, group=OTHER_GROUP.gr_name)
            time.sleep(0.0005)
            made.close()
            facility.remove(place)
    finally:
        os.umask(old)
        Path(stop).touch()
    seen = watcher.result()
    assert wanted in seen  # the watcher did see the objects
    for mode, gid in seen:
        if facility.appears_whole:
            assert (mode, gid) == wanted
        else:  # stricter first: owner bits only until the group is in place
            assert mode & ~0o640 == 0, (mode, gid)
            assert gid == wanted[1] or mode & 0o077 == 0, (mode, gid)


@pytest.mark.parametrize("kind", sorted(FACILITIES))
def test_world_writable_needs_saying_so(
    kind: str, names: Names, cleanup: Callable[..., None]
) -> None:
    facility = FACILITIES[kind]
    place = facility.place(names)
    cleanup(facility.remove, place)
    with pytest.raises(ValueError, match="allow_world_writable=True"):
        facility.create(place, permissions=0o666)
    assert not facility.exists(place)
    old = os.umask(0o022)
    try:
        made = facility.create(place, permissions=0o666, allow_world_writable=True)
    finally:
        os.umask(old)
    assert facility.owner(place)[0] == 0o666
    made.close()


def test_an_initializer_that_fails_leaves_nothing(
    names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("shm")
    cleanup(posix_shm.unlink, name)
    seen: list[bytes] = []

    def initialize(memory: memoryview) -> None:
        seen.append(bytes(memory[:4]))
        assert not posix_shm.exists(name)  # nobody can open it yet
        raise ArithmeticError("bad table")

    with pytest.raises(ArithmeticError, match="bad table"):
        PosixSharedMemory.create(name, 4096, initialize=initialize)
    assert seen == [bytes(4)]
    assert not posix_shm.exists(name)
