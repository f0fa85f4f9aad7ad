"""``unixipc shm``, ``sem``, ``sysv-shm`` and ``sysv-sem``, run as real subprocesses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Callable

from tests.conftest import Names
from tests.test_cli import COMMAND, unixipc_cli
from unixipc import (
    PosixSemaphore,
    PosixSharedMemory,
    SysVSemaphoreSet,
    SysVSharedMemory,
    posix_sem,
    posix_shm,
    sysv_sem,
    sysv_shm,
)


def run_ok(*args: str) -> str:
    result = unixipc_cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_shm_create_write_read_info_unlink(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("cli")
    created = json.loads(run_ok("--json", "shm", "create", name, "32", "--permissions", "0640"))
    cleanup(posix_shm.unlink, name)
    assert created == {"kind": "posix-shm", "name": name, "size": 32, "permissions": "0640"}
    assert stat.S_IMODE(os.stat(f"/dev/shm{name}").st_mode) == 0o640
    assert json.loads(run_ok("--json", "shm", "write", name, "hello", "--offset", "4")) == {
        "name": name,
        "offset": 4,
        "bytes": 5,
    }
    with PosixSharedMemory.open(name, read_only=True) as memory:
        assert bytes(memory.buf[:10]) == b"\0\0\0\0hello\0"
    assert run_ok("shm", "read", name, "--offset", "4", "--size", "5") == "hello"
    whole = subprocess.run([*COMMAND, "shm", "read", name], capture_output=True, check=True)
    assert whole.stdout == b"\0\0\0\0hello" + bytes(23)
    info = json.loads(run_ok("--json", "shm", "info", name))
    assert info == {
        "name": name,
        "size": 32,
        "permissions": "0640",
        "uid": os.getuid(),
        "gid": os.getgid(),
    }
    piped = subprocess.run(
        [*COMMAND, "shm", "write", name, "-", "--offset", "30"], input=b"xy", check=True
    )
    assert piped.returncode == 0
    assert run_ok("shm", "read", name, "--offset", "30") == "xy"
    too_far = unixipc_cli("shm", "write", name, "too long", "--offset", "30")
    assert too_far.returncode == 1
    assert too_far.stderr.startswith("unixipc shm: error: --size 8 at offset 30 goes past")
    assert run_ok("shm", "unlink", name) == ""
    missing = unixipc_cli("shm", "info", name)
    assert missing.returncode == 1
    assert f"POSIX shared memory {name!r} does not exist" in missing.stderr


def test_sem_create_wait_post_value_unlink(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("cli")
    run_ok("sem", "create", name, "--value", "1")
    cleanup(posix_sem.unlink, name)
    assert json.loads(run_ok("--json", "sem", "wait", name)) == {"name": name, "value": 0}
    started = time.monotonic()
    timed_out = unixipc_cli("sem", "wait", name, "--timeout", "0.3")
    assert time.monotonic() - started >= 0.3
    assert timed_out.returncode == 1
    assert timed_out.stderr == (
        f"unixipc sem: error: acquiring POSIX semaphore {name!r} timed out after 0.3 s\n"
    )
    waiter = subprocess.Popen(
        [*COMMAND, "--json", "sem", "wait", name, "--timeout", "60"], stdout=subprocess.PIPE
    )
    run_ok("sem", "post", name)  # wakes the waiter, whichever comes first
    output, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0
    assert json.loads(output) == {"name": name, "value": 0}
    run_ok("sem", "post", name)
    run_ok("sem", "post", name)
    assert run_ok("sem", "value", name) == "2\n"
    semaphore = PosixSemaphore.open(name)
    with semaphore:  # acquires one in this process, and releases it
        assert semaphore.value == 1
    semaphore.close()
    run_ok("sem", "unlink", name)
    assert not posix_sem.exists(name)
    assert unixipc_cli("sem", "post", name).returncode == 1


def test_sysv_shm_create_info_unlink(names: Names, cleanup: Callable[..., None]) -> None:
    key = names.key()
    cleanup(sysv_shm.unlink, key)
    created = json.loads(run_ok("--json", "sysv-shm", "create", "--json", hex(key), "4K"))
    assert created["key"] == f"{key:#010x}"
    assert created["size"] == 4096
    with SysVSharedMemory.open(key) as memory:
        before = memory.info()
        assert memory.id == created["id"]
        info = json.loads(run_ok("--json", "sysv-shm", "info", str(key)))
        assert info["id"] == memory.id
        assert info["attached"] == 1  # this test's attachment: info itself never attaches
        assert info["creator_pid"] != os.getpid()
        assert info["permissions"] == "0600"
        assert info["attach_time"].endswith("+00:00")  # ISO 8601
        text = run_ok("sysv-shm", "info", hex(key))
        assert f"key: {key:#010x}" in text
        assert "size: 4096" in text
        after = memory.info()
        assert (after.last_pid, after.attach_time) == (before.last_pid, before.attach_time)
    assert run_ok("sysv-shm", "unlink", hex(key)) == ""
    assert not sysv_shm.exists(key)
    missing = unixipc_cli("sysv-shm", "info", hex(key))
    assert missing.returncode == 1
    assert f"System V shared memory '{key:#010x}' does not exist" in missing.stderr


def test_sysv_shm_ipc_private_by_id() -> None:
    line = run_ok("sysv-shm", "create", "0", "64")
    assert line.startswith("created sysv-shm IPC_PRIVATE: key 0x00000000, id ")
    segment_id = int(line.split("id ")[1].split(",")[0])
    try:
        info = json.loads(run_ok("--json", "sysv-shm", "info", str(segment_id), "--id"))
        assert (info["key"], info["size"]) == ("0x00000000", 64)
    finally:
        run_ok("sysv-shm", "unlink", str(segment_id), "--id")
    assert segment_id not in sysv_shm.list_ids()


def test_sysv_sem_create_op_values_unlink(names: Names, cleanup: Callable[..., None]) -> None:
    key = names.key()
    cleanup(sysv_sem.unlink, key)
    created = json.loads(run_ok("--json", "sysv-sem", "create", hex(key), "3", "--values", "1,0,2"))
    assert created["values"] == [1, 0, 2]
    assert run_ok("sysv-sem", "values", hex(key)) == "1 0 2\n"
    done = json.loads(run_ok("--json", "sysv-sem", "op", hex(key), "0:-1", "1:+2", "2:-2"))
    assert done["values"] == [0, 2, 0]
    with SysVSemaphoreSet.open(key) as semaphores:
        assert semaphores.values == [0, 2, 0]
        assert semaphores.id == created["id"]
    started = time.monotonic()
    blocked = unixipc_cli("sysv-sem", "op", hex(key), "0:-1", "1:-1", "--timeout", "0.3")
    assert time.monotonic() - started >= 0.3
    assert blocked.returncode == 1
    assert "timed out after 0.3 s" in blocked.stderr
    assert run_ok("sysv-sem", "values", str(created["id"]), "--id") == "0 2 0\n"
    assert unixipc_cli("sysv-sem", "op", hex(key), "0-1").returncode == 2
    outside = unixipc_cli("sysv-sem", "op", hex(key), "7:1")
    assert outside.returncode == 1
    assert "outside the set of 3" in outside.stderr
    run_ok("sysv-sem", "unlink", hex(key))
    assert not sysv_sem.exists(key)
