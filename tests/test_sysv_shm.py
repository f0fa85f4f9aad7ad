"""System V shared memory between real processes, checked against ipcs and a C peer."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Names
from tests.helpers import Child, compile_c, wait_until
from unixipc import (
    ClosedResourceError,
    IPCError,
    ResourceExistsError,
    ResourceNotFoundError,
    SysVSharedMemory,
    sysv_shm,
)

ATTACHED, UNLINKED, PAYLOAD = 0, 1, 16


def _attach_then_outlive_the_unlink(key: int) -> bytes:
    with SysVSharedMemory.open(key) as memory:
        memory.buf[ATTACHED] = 1
        wait_until(lambda: memory.buf[UNLINKED] == 1)
        # Removed by the parent, but this process is attached: the memory lives.
        memory.buf[PAYLOAD : PAYLOAD + 5] = b"alive"
        assert memory.info().marked_for_removal
        return bytes(memory.buf[:2])


def test_unlink_removes_the_key_but_the_segment_lives_until_the_last_detach(
    names: Names, cleanup: Callable[..., None]
) -> None:
    key = names.key()
    memory = SysVSharedMemory.create(key, 4096)
    cleanup(sysv_shm.unlink, key)
    cleanup(memory.close)
    child = Child(_attach_then_outlive_the_unlink, key, method="spawn")
    wait_until(lambda: memory.buf[ATTACHED] == 1)
    assert memory.info().attach_count == 2
    memory.unlink()
    assert not sysv_shm.exists(key)  # the key is free at once...
    with pytest.raises(ResourceNotFoundError):
        SysVSharedMemory.open(key)
    assert memory.id in sysv_shm.list_ids()  # ...but the segment is still there
    info = memory.info()
    assert info.marked_for_removal
    assert info.key == 0
    memory.buf[UNLINKED] = 1
    assert child.result() == b"\1\1"
    assert bytes(memory.buf[PAYLOAD : PAYLOAD + 5]) == b"alive"
    assert memory.info().attach_count == 1
    with SysVSharedMemory.open_id(memory.id) as again:  # Linux: still attachable by id
        assert again.size == 4096
    memory.close()
    assert memory.id not in sysv_shm.list_ids()  # the last detach removed it
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        SysVSharedMemory.open_id(memory.id)


def test_create_open_and_their_errors(names: Names, cleanup: Callable[..., None]) -> None:
    key = names.key()
    assert not sysv_shm.exists(key)
    with pytest.raises(ResourceNotFoundError, match=f"System V shared memory '{key:#010x}'"):
        SysVSharedMemory.open(key)
    with SysVSharedMemory.open_or_create(key, 1000, permissions=0o640) as memory:
        cleanup(sysv_shm.unlink, key)
        assert (memory.key, memory.size) == (key, 1000)
        assert sysv_shm.exists(key)
        assert memory.id in sysv_shm.list_ids()
        info = memory.info()
        assert (info.id, info.key, info.size, info.permissions) == (memory.id, key, 1000, 0o640)
        assert (info.uid, info.creator_pid, info.last_pid) == (
            os.getuid(),
            os.getpid(),
            os.getpid(),
        )
        with pytest.raises(ResourceExistsError, match="already exists"):
            SysVSharedMemory.create(key, 1000)
        with SysVSharedMemory.open_or_create(key, 5) as opened:
            assert opened.size == 1000  # an existing segment keeps its size
            assert opened.id == memory.id
            opened.buf[:3] = b"abc"
        assert bytes(memory.buf[:3]) == b"abc"
        with SysVSharedMemory.open(key, read_only=True) as reader:
            assert reader.buf.readonly
            with pytest.raises(TypeError):
                reader.buf[0] = 1
            assert reader.info().attach_count == 2
    sysv_shm.unlink(key)
    with pytest.raises(ResourceNotFoundError):
        sysv_shm.unlink(key)
    with pytest.raises(ClosedResourceError):
        memory.info()


def test_ipc_private_segments_are_found_by_id(cleanup: Callable[..., None]) -> None:
    memory = SysVSharedMemory.create(0, 64)
    cleanup(memory.close)
    cleanup(memory.unlink)
    assert memory.key == 0
    second = SysVSharedMemory.create(0, 64)  # IPC_PRIVATE always makes a new one
    second.unlink()
    second.close()
    assert second.id != memory.id
    with SysVSharedMemory.open_id(memory.id) as again:
        again.buf[:2] = b"hi"
    assert bytes(memory.buf[:2]) == b"hi"
    with pytest.raises(ValueError, match="IPC_PRIVATE"):
        SysVSharedMemory.open(0)
    memory.unlink()
    memory.close()
    assert memory.id not in sysv_shm.list_ids()


def test_close_with_live_views_is_refused(names: Names, cleanup: Callable[..., None]) -> None:
    key = names.key()
    memory = SysVSharedMemory.create(key, 64)
    cleanup(sysv_shm.unlink, key)
    cleanup(memory.close)
    view = memory.buf[4:8]
    with pytest.raises(IPCError, match="still in use"):
        memory.close()
    view[:] = b"1234"
    view.release()
    memory.close()
    memory.close()
    assert sysv_shm.exists(key)  # closing (detaching) never removes


def test_bad_arguments(names: Names) -> None:
    with pytest.raises(TypeError, match="key"):
        SysVSharedMemory.create("0x10", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key"):
        SysVSharedMemory.create(2**32, 10)
    with pytest.raises(ValueError, match="size"):
        SysVSharedMemory.create(names.key(), 0)
    with pytest.raises(ValueError, match="0o777"):
        SysVSharedMemory.create(names.key(), 10, permissions=0o1600)
    with pytest.raises(ValueError, match="shm_id"):
        SysVSharedMemory.open_id(-1)


def _attach_and_stay(key: int, path: str) -> None:
    with SysVSharedMemory.open(key):
        Path(path).touch()
        wait_until(lambda: not os.path.exists(path))


def _ipcs_fields(segment_id: int) -> dict[str, str]:
    output = subprocess.run(
        ["ipcs", "-m", "-i", str(segment_id)], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(re.findall(r"(\w+)=(\S+)", output))
    for name in ("att_time", "det_time", "change_time"):
        match = re.search(rf"{name}=(.*?)\s*$", output, re.MULTILINE)
        assert match, output
        fields[name] = match.group(1).strip()
    return fields


def _ipcs_time(seconds: int) -> str:
    return "Not set" if seconds == 0 else time.ctime(seconds)


def test_info_matches_what_ipcs_reports(names: Names, cleanup: Callable[..., None]) -> None:
    key = names.key()
    flag = names.path("attached")
    with SysVSharedMemory.create(key, 12345, permissions=0o640) as memory:
        cleanup(sysv_shm.unlink, key)
        child = Child(_attach_and_stay, key, flag)
        wait_until(lambda: os.path.exists(flag))
        info = memory.info()
        ipcs = _ipcs_fields(memory.id)
        os.unlink(flag)
        child.result()
    assert int(ipcs["shmid"]) == info.id
    assert int(ipcs["bytes"]) == info.size == 12345
    # The forked child inherited our attachment and made its own: 3 in all.
    assert int(ipcs["nattch"]) == info.attach_count == 3
    assert int(ipcs["cpid"]) == info.creator_pid == os.getpid()
    assert int(ipcs["lpid"]) == info.last_pid == child.pid
    assert int(ipcs["mode"], 8) == info.permissions == 0o640
    assert int(ipcs["uid"]) == info.uid
    assert int(ipcs["gid"]) == info.gid
    assert int(ipcs["cuid"]) == info.creator_uid
    assert int(ipcs["cgid"]) == info.creator_gid
    assert ipcs["att_time"] == _ipcs_time(info.attach_time)
    assert ipcs["det_time"] == _ipcs_time(info.detach_time)
    assert ipcs["change_time"] == _ipcs_time(info.change_time)
    # The summary listing shows the same key and size for this id.
    listing = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=True).stdout
    row = next(line.split() for line in listing.splitlines() if f" {info.id} " in f" {line} ")
    assert (int(row[0], 16), int(row[1]), int(row[4])) == (key, info.id, 12345)


C_WRITER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv)
{
    (void)argc;
    key_t key = (key_t)strtol(argv[1], NULL, 0);
    int id = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0) { perror("shmget"); return 1; }
    char *memory = shmat(id, NULL, 0);
    if (memory == (void *)-1) { perror("shmat"); return 1; }
    strcpy(memory + 100, argv[2]);
    if (shmdt(memory) < 0) { perror("shmdt"); return 1; }
    printf("%d\n", id);
    return 0;
}
"""


def test_a_c_writer_and_a_python_reader_share_a_segment(
    names: Names, cleanup: Callable[..., None], tmp_path: Path
) -> None:
    writer = compile_c(C_WRITER, tmp_path, "shm_writer")
    key = names.key()
    cleanup(sysv_shm.unlink, key)
    done = subprocess.run(
        [str(writer), hex(key), "written by C"], capture_output=True, text=True, check=True
    )
    with SysVSharedMemory.open(key, read_only=True) as memory:
        assert memory.id == int(done.stdout)
        assert memory.size == 4096
        assert bytes(memory.buf[100:113]) == b"written by C\0"
        assert memory.info().creator_pid != os.getpid()
    sysv_shm.unlink(key)
