"""The inspector finds every kind of object, removes exactly what it is told."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import PREFIX, Names
from unixipc import (
    PosixMessageQueue,
    PosixSemaphore,
    PosixSharedMemory,
    ResourceNotFoundError,
    SysVMessageQueue,
    SysVSemaphoreSet,
    SysVSharedMemory,
    inspect,
    posix_mq,
    posix_sem,
    posix_shm,
    sysv_mq,
    sysv_sem,
    sysv_shm,
)

COMMAND = [sys.executable, "-m", "unixipc.cli.main"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=120)


def _by_kind(items: list[inspect.IPCObject], kind: str) -> list[inspect.IPCObject]:
    return [item for item in items if item.kind == kind]


def test_finds_and_removes_posix_objects(names: Names, cleanup: Callable[..., None]) -> None:
    shm_name, sem_name = names.posix("inspect"), names.posix("inspect")
    old = os.umask(0)
    try:
        memory = PosixSharedMemory.create(shm_name, 5000, permissions=0o640)
    finally:
        os.umask(old)
    cleanup(posix_shm.unlink, shm_name)
    memory.close()
    semaphore = PosixSemaphore.create(sem_name, value=1)
    cleanup(posix_sem.unlink, sem_name)
    semaphore.close()

    found = inspect.find(prefix=f"/{PREFIX}_inspect_")
    assert _by_kind(found, "posix-shm") == [
        inspect.IPCObject("posix-shm", shm_name, os.getuid(), 0o640, 5000)
    ]
    assert [item.name for item in _by_kind(found, "posix-sem")] == [sem_name]
    for item in found:
        inspect.remove(item)
    assert not posix_shm.exists(shm_name)
    assert not posix_sem.exists(sem_name)
    with pytest.raises(ResourceNotFoundError):
        inspect.remove(found[0])


def test_finds_and_removes_system_v_objects(names: Names, cleanup: Callable[..., None]) -> None:
    queue = SysVMessageQueue.create(names.key())
    cleanup(sysv_mq.unlink, queue.key)
    queue.send(b"12345", type=3)
    segment = SysVSharedMemory.create(names.key(), 8192)
    cleanup(sysv_shm.unlink, segment.key)
    semaphores = SysVSemaphoreSet.create(names.key(), 3)
    cleanup(sysv_sem.unlink, semaphores.key)

    everything = inspect.find(["sysv-mq", "sysv-shm", "sysv-sem"])
    mine = {
        item.kind: item for item in everything if item.id in (queue.id, segment.id, semaphores.id)
    }
    assert mine["sysv-mq"].details["qnum"] == 1
    assert mine["sysv-mq"].size == 5
    assert mine["sysv-mq"].key == queue.key
    assert mine["sysv-mq"].name == f"0x{queue.key & 0xFFFFFFFF:08x}"
    assert mine["sysv-shm"].size == 8192
    assert mine["sysv-shm"].details["nattch"] == 1
    assert mine["sysv-sem"].details["nsems"] == 3
    segment.close()
    queue.close()
    semaphores.close()
    for item in mine.values():
        inspect.remove(item)
    assert not sysv_mq.exists(queue.key)
    assert not sysv_shm.exists(segment.key)
    assert not sysv_sem.exists(semaphores.key)


def test_finds_bound_unix_socket_files(names: Names) -> None:
    path = names.path("sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        found = [item for item in inspect.find(["unix-socket"]) if item.name == path]
        assert len(found) == 1
        inspect.remove(found[0])
        assert not os.path.exists(path)


def test_posix_queues_need_the_mqueue_filesystem() -> None:
    if posix_mq.mqueue_mount_point() is None:
        with pytest.raises(inspect.UnsupportedFeature, match="mount -t mqueue"):
            inspect.find(["posix-mq"])
        assert all(item.kind != "posix-mq" for item in inspect.find())
    else:
        assert all(item.kind == "posix-mq" for item in inspect.find(["posix-mq"]))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        inspect.find(["shm"])
    with pytest.raises(TypeError, match="iterable"):
        inspect.find("posix-shm")
    with pytest.raises(TypeError, match="prefix"):
        inspect.find(prefix=3)  # type: ignore[arg-type]


def test_cli_ls_and_rm(names: Names, cleanup: Callable[..., None]) -> None:
    first, second = names.posix("clirm"), names.posix("clirm")
    for name in (first, second):
        PosixSharedMemory.create(name, 100).close()
        cleanup(posix_shm.unlink, name)
    queue = SysVMessageQueue.create(names.key())
    cleanup(sysv_mq.unlink, queue.key)
    queue.close()

    listed = cli("--json", "ls", "--kind", "posix-shm", "--prefix", f"/{PREFIX}_clirm_")
    assert listed.returncode == 0, listed.stderr
    assert sorted(item["name"] for item in json.loads(listed.stdout)) == sorted([first, second])
    table = cli("ls", "--kind", "sysv-mq")
    assert table.stdout.startswith("KIND")
    assert f"0x{queue.key & 0xFFFFFFFF:08x}" in table.stdout

    dry = cli("rm", "--prefix", f"/{PREFIX}_clirm_", "--dry-run")
    assert dry.stdout.count("would remove posix-shm") == 2
    assert posix_shm.exists(first)
    assert posix_shm.exists(second)
    assert cli("rm", "posix-shm", first).returncode == 0
    assert not posix_shm.exists(first)
    assert posix_shm.exists(second)
    removed = cli("--json", "rm", "--prefix", f"/{PREFIX}_clirm_")
    assert json.loads(removed.stdout)["name"] == second
    assert not posix_shm.exists(second)

    assert cli("rm", "sysv-mq", hex(queue.key)).returncode == 0
    assert not sysv_mq.exists(queue.key)
    missing = cli("rm", "sysv-mq", "--id", "2147483000")
    assert missing.returncode == 1
    assert "no sysv-mq object with id 2147483000" in missing.stderr
    assert cli("rm", "--prefix", "/").returncode == 1  # refuses to remove everything
    assert cli("rm", "posix-shm").returncode == 1


def test_finds_a_queue_left_by_a_killed_process(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("killed")
    code = f"""
import os, unixipc
unixipc.PosixMessageQueue.create({name!r}, max_messages=2, max_message_size=64)
os.kill(os.getpid(), 9)
"""
    cleanup(posix_mq.unlink, name)
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == -9
    assert posix_mq.exists(name)  # a kernel object outlives its creator
    with PosixMessageQueue.open(name) as queue:
        queue.unlink()
