"""The inspector: sees every kind of object with its holders and state, changes nothing,
agrees with ipcs/lsipc, and removes exactly what it is told (or only what is stale)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import PREFIX, Names
from tests.helpers import Child, fresh_tmp_commands
from unixipc import (
    PosixMessageQueue,
    PosixSemaphore,
    PosixSharedMemory,
    Ring,
    SharedMutex,
    SysVMessageQueue,
    SysVSemaphoreSet,
    SysVSharedMemory,
    fifo,
    inspect,
    posix_sem,
    posix_shm,
    ring,
    sysv_mq,
    sysv_sem,
    sysv_shm,
)

COMMAND = [sys.executable, "-m", "unixipc"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout)


def _one(items: list[inspect.IPCObject], kind: str, name: str) -> inspect.IPCObject:
    matching = [item for item in items if item.kind == kind and item.name == name]
    assert len(matching) == 1, (kind, name, items)
    return matching[0]


def test_posix_objects_with_their_holders_and_state(
    names: Names, cleanup: Callable[..., None]
) -> None:
    shm_name, sem_name = names.posix("inspect"), names.posix("inspect")
    old = os.umask(0)
    try:
        memory = PosixSharedMemory.create(shm_name, 5000, permissions=0o640)
    finally:
        os.umask(old)
    cleanup(posix_shm.unlink, shm_name)
    semaphore = PosixSemaphore.create(sem_name, value=1)
    cleanup(posix_sem.unlink, sem_name)
    semaphore.close()
    found = inspect.find(prefix=f"/{PREFIX}_inspect_")
    held = _one(found, "posix-shm", shm_name)
    assert (held.uid, held.permissions, held.size, held.state) == (os.getuid(), 0o640, 5000, "live")
    assert {(holder.pid, holder.how) for holder in held.holders} >= {
        (os.getpid(), "open"),
        (os.getpid(), "mapped"),
    }
    assert held.unixipc is None
    assert _one(found, "posix-sem", sem_name).state == "idle"
    assert _one(found, "posix-sem", sem_name).details == {"value": 1, "waiters": 0}
    memory.close()
    idle = _one(inspect.find(["posix-shm"], prefix=shm_name), "posix-shm", shm_name)
    assert (idle.state, idle.holders) == ("idle", ())
    for item in found:
        inspect.remove(item, force=True)
    assert not posix_shm.exists(shm_name)
    assert not posix_sem.exists(sem_name)
    with pytest.raises(inspect.ResourceNotFoundError):
        inspect.remove(idle)


def test_a_posix_semaphores_value_and_waiters_are_read_without_opening_it(
    names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("inspect")
    semaphore = PosixSemaphore.create(name, value=2)
    cleanup(posix_sem.unlink, name)
    cleanup(semaphore.close)

    def counts() -> dict[str, Any]:
        return _one(inspect.find(["posix-sem"], prefix=name), "posix-sem", name).details

    assert counts() == {"value": 2, "waiters": 0}
    semaphore.acquire()
    semaphore.acquire()
    waiter = threading.Thread(target=semaphore.acquire, kwargs={"timeout": 60})
    waiter.start()
    deadline = time.monotonic() + 30
    while counts() != {"value": 0, "waiters": 1} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counts() == {"value": 0, "waiters": 1}
    semaphore.release()
    waiter.join(timeout=30)
    assert counts() == {"value": 0, "waiters": 0}
    assert semaphore.value == 0


def _produce(name: str) -> None:
    with Ring.open(name) as opened:
        opened.send_many([b"a" * 100, b"b" * 10])
        os.kill(os.getpid(), 19)  # SIGSTOP: stay a live producer until killed


def test_a_ring_is_read_from_its_header_without_attaching(
    names: Names, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    name = names.posix("ring")
    made = Ring.create(name, 1 << 16)
    cleanup(ring.unlink, name)
    cleanup(made.close)
    made.declare(consumer=True)
    producer = children(_produce, name)
    deadline = datetime.now().timestamp() + 60
    while made.info().messages < 2:
        assert datetime.now().timestamp() < deadline
        os.sched_yield()
    item = _one(inspect.find(["posix-shm"], prefix=name), "posix-shm", name)
    info = made.info()
    assert item.unixipc == "ring"
    assert item.state == "live"
    details = item.details
    assert (details["capacity"], details["used_bytes"], details["messages"]) == (
        info.capacity,
        info.used_bytes,
        info.messages,
    )
    assert (details["producers"], details["consumers"], details["handles"]) == (1, 1, 2)
    assert details["producer_pids"] == [producer.pid]
    assert details["consumer_pids"] == [os.getpid()]
    assert made.info().attached == 2  # looking took no handle
    producer.kill()
    dead = _one(inspect.find(["posix-shm"], prefix=name), "posix-shm", name)
    assert (dead.state, dead.details["dead_handles"], dead.details["producers"]) == ("live", 1, 0)
    made.close()
    left = _one(inspect.find(["posix-shm"], prefix=name), "posix-shm", name)
    # The survivor buried the dead handle and closed cleanly: idle, not stale (the
    # stale case, a ring whose last handle died, is in the killed-owners scenario).
    assert (left.state, left.details["dead_handles"]) == ("idle", 0)


def test_shared_mutex_shows_its_holder_thread(names: Names, cleanup: Callable[..., None]) -> None:
    name = names.posix("mutex")
    mutex = SharedMutex.create(name)
    cleanup(mutex.unlink)
    cleanup(mutex.close)
    with mutex:
        item = _one(inspect.find(["posix-shm"], prefix=name), "posix-shm", name)
        assert item.unixipc == "shared mutex"
        assert item.details["locked_by_tid"] == os.getpid()  # the main thread's tid
    item = _one(inspect.find(["posix-shm"], prefix=name), "posix-shm", name)
    assert item.details["locked_by_tid"] is None


def test_posix_queues_are_listed_with_their_depth(
    names: Names, cleanup: Callable[..., None]
) -> None:
    name = names.posix("queue")
    with PosixMessageQueue.create(name, max_messages=4, max_message_size=64) as queue:
        cleanup(queue.unlink)
        queue.send(b"12345")
        queue.send(b"678")
        found = inspect.survey(["posix-mq"], prefix=name)
        assert found.notes == []  # listed even where /dev/mqueue is not mounted (we are root)
        item = _one(found.objects, "posix-mq", name)
        assert item.size == item.details["bytes"]
        assert (item.details["messages"], item.details["max_messages"]) == (2, 4)
        assert item.details["max_message_size"] == 64
        assert (os.getpid(), "open") in {(holder.pid, holder.how) for holder in item.holders}
        assert queue.info().current_messages == 2  # reading took nothing


def _lock_and_wait(path: str) -> None:
    with open(path, "w") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        os.kill(os.getpid(), 19)


def test_socket_files_fifos_and_file_locks(names: Names, children: Callable[..., Child]) -> None:
    directory = os.path.dirname(names.path())
    bound, stale, pipe_path, locked = (names.path(stem) for stem in ("s", "stale", "f", "lock"))
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(bound)
        listener.listen()
        with socket.socket(socket.AF_UNIX) as gone:
            gone.bind(stale)
        fifo.mkfifo(pipe_path)
        holder = children(_lock_and_wait, locked)
        deadline = datetime.now().timestamp() + 60
        while not any(item.name == locked for item in inspect.find(["file-lock"])):
            assert datetime.now().timestamp() < deadline
        found = inspect.find(["unix-socket", "fifo", "file-lock"], directories=[directory])
        live = _one(found, "unix-socket", bound)
        assert (live.state, live.details["bound"], live.details["listening"]) == (
            "live",
            True,
            True,
        )
        assert (os.getpid(), "open") in {(h.pid, h.how) for h in live.holders}
        assert _one(found, "unix-socket", stale).state == "stale"
        assert _one(found, "fifo", pipe_path).state == "idle"
        lock = _one(found, "file-lock", locked)
        assert (lock.details["type"], lock.details["mode"], lock.details["pid"]) == (
            "flock",
            "write",
            holder.pid,
        )
        assert [h.pid for h in lock.holders] == [holder.pid]
        refused = cli("rm", "unix-socket", bound)
        assert refused.returncode == 1
        assert f"pid {os.getpid()}" in refused.stderr
        assert cli("rm", "unix-socket", stale).returncode == 0
        assert not os.path.exists(stale)
        holder.kill()
    fifo.unlink(pipe_path)
    os.unlink(bound)


def _sysv_objects(names: Names, cleanup: Callable[..., None]) -> tuple[Any, ...]:
    queue = SysVMessageQueue.create(names.key(), permissions=0o640)
    cleanup(sysv_mq.unlink, queue.key)
    cleanup(queue.close)
    queue.send(b"12345", type=3)
    segment = SysVSharedMemory.create(names.key(), 8192)
    cleanup(sysv_shm.unlink, segment.key)
    cleanup(segment.close)
    doomed = SysVSharedMemory.create(names.key(), 4096)
    doomed.unlink()  # marked for removal: ipcs says "dest", the key reads 0
    cleanup(doomed.close)
    semaphores = SysVSemaphoreSet.create(names.key(), 3, values=[1, 0, 7])
    cleanup(sysv_sem.unlink, semaphores.key)
    cleanup(semaphores.close)
    return queue, segment, doomed, semaphores


def test_system_v_objects_agree_with_ipcs_and_lsipc(
    names: Names, cleanup: Callable[..., None]
) -> None:
    queue, segment, doomed, semaphores = _sysv_objects(names, cleanup)
    before = segment.info()
    listed = cli("--json", "ls", "--kind", "sysv-mq", "--kind", "sysv-shm", "--kind", "sysv-sem")
    assert listed.returncode == 0, listed.stderr
    mine = {item["id"]: item for item in json.loads(listed.stdout)}
    assert segment.info().last_pid == before.last_pid  # nothing attached to look

    ipcs: dict[int, list[str]] = {}
    for flag in ("-q", "-m", "-s"):
        output = subprocess.run(["ipcs", flag], capture_output=True, text=True, check=True).stdout
        for line in output.splitlines():
            fields = line.split()
            if fields and fields[0].startswith("0x"):
                ipcs[int(fields[1])] = fields
    for handle in (queue, segment, doomed, semaphores):
        ours, theirs = mine[handle.id], ipcs[handle.id]
        assert ours["key"] == theirs[0]
        assert int(ours["permissions"], 8) == int(theirs[3], 8)
    assert ipcs[queue.id][4:6] == [str(mine[queue.id]["size"]), "1"]  # used-bytes, messages
    assert mine[queue.id]["details"]["messages"] == 1
    assert ipcs[segment.id][4:6] == ["8192", str(mine[segment.id]["details"]["attached"])]
    assert ipcs[doomed.id][6] == "dest"
    assert mine[doomed.id]["details"]["status"] == ["dest"]
    assert mine[doomed.id]["name"] == "0x00000000"  # not IPC_PRIVATE: it is going away
    assert ipcs[semaphores.id][4] == "3"
    assert mine[semaphores.id]["details"]["values"] == [1, 0, 7]

    lsipc = {}
    columns_of = {
        "-m": "KEY,ID,PERMS,SIZE,NATTCH,STATUS,CPID,LPID",
        "-q": "KEY,ID,PERMS,USEDBYTES,MSGS,LSPID",
        "-s": "KEY,ID,PERMS,NSEMS",
    }
    for flag, columns in columns_of.items():
        output = subprocess.run(
            ["lsipc", flag, "--json", "--bytes", "--numeric-perms", "-o", columns],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for rows in json.loads(output).values():
            lsipc.update({int(row["id"]): row for row in rows})
    shm_row, doomed_row = lsipc[segment.id], lsipc[doomed.id]
    assert int(shm_row["size"]) == mine[segment.id]["size"]
    assert int(shm_row["nattch"]) == mine[segment.id]["details"]["attached"]
    assert int(shm_row["cpid"]) == mine[segment.id]["details"]["creator_pid"] == os.getpid()
    assert int(shm_row["lpid"]) == mine[segment.id]["details"]["last_pid"]
    assert "dest" in doomed_row["status"]
    queue_row = lsipc[queue.id]
    assert (int(queue_row["msgs"]), int(queue_row["usedbytes"])) == (1, 5)
    assert int(queue_row["lspid"]) == mine[queue.id]["details"]["last_send_pid"]
    assert int(lsipc[semaphores.id]["nsems"]) == mine[semaphores.id]["details"]["count"]
    for item in (mine[queue.id], mine[semaphores.id]):
        assert item["details"]["change_time"].endswith("+00:00")

    assert cli("rm", "sysv-mq", hex(queue.key)).returncode == 0  # nobody holds a queue
    assert not sysv_mq.exists(queue.key)
    attached = cli("rm", "sysv-shm", hex(segment.key))
    assert attached.returncode == 1
    assert f"pid {os.getpid()}" in attached.stderr
    assert cli("rm", "sysv-shm", hex(segment.key), "--force").returncode == 0
    assert segment.info().last_pid == before.last_pid  # removing did not attach either
    missing = cli("rm", "sysv-mq", "--id", "2147483000")
    assert missing.returncode == 1
    assert "no sysv-mq object with id 2147483000" in missing.stderr


def test_cli_ls_and_rm_by_prefix(names: Names, cleanup: Callable[..., None]) -> None:
    first, second = names.posix("clirm"), names.posix("clirm")
    for name in (first, second):
        PosixSharedMemory.create(name, 100).close()
        cleanup(posix_shm.unlink, name)
    listed = cli("ls", "--kind", "posix-shm", "--prefix", f"/{PREFIX}_clirm_", "--json")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert sorted(item["name"] for item in items) == sorted([first, second])
    assert {item["permissions"] for item in items} == {"0600"}
    assert {item["state"] for item in items} == {"idle"}
    table = cli("ls", "--kind", "posix-shm", "--prefix", f"/{PREFIX}_clirm_")
    assert table.stdout.startswith("KIND")
    dry = cli("rm", "--prefix", f"/{PREFIX}_clirm_", "--dry-run")
    assert dry.stdout.count("would remove posix-shm") == 2
    assert posix_shm.exists(first)
    assert cli("rm", "posix-shm", first).returncode == 0
    assert not posix_shm.exists(first)
    removed = cli("--json", "rm", "--prefix", f"/{PREFIX}_clirm_")
    assert json.loads(removed.stdout)["name"] == second
    assert not posix_shm.exists(second)
    assert cli("rm", "--prefix", "/").returncode == 1  # refuses to remove everything
    assert cli("rm", "posix-shm").returncode == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        inspect.find(["shm"])
    with pytest.raises(TypeError, match="iterable"):
        inspect.find("posix-shm")
    with pytest.raises(TypeError, match="prefix"):
        inspect.find(prefix=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ stale objects
# Killing owners and removing stale objects happens in a private IPC namespace with
# its own /dev/shm and /tmp: `rm --stale` there can only ever see this test's objects,
# never those of other programs (or other test runs) on this shared machine.

_ISOLATE = f'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && {fresh_tmp_commands()} && exec "$0" "$@"'


def run_isolated(code: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in private IPC and mount namespaces (fresh /dev/shm, /tmp)."""
    command = ["unshare", "--ipc", "--mount", "--propagation", "private", "sh", "-c", _ISOLATE]
    return subprocess.run(
        [*command, sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


def passes(scenario: str) -> None:
    """Run an isolated scenario that prints "scenario passed" at its end."""
    result = run_isolated(scenario)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scenario passed" in result.stdout


# Scenarios start with this: the processes they put in `started` die with them.
REAPER = """
import atexit, os, signal
started = []

@atexit.register
def kill_started():  # even when an assertion fails
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
"""

STALE_SCENARIO = (
    REAPER
    + """
import json, os, signal, subprocess, sys, time
import unixipc
from unixipc import PosixSharedMemory, Ring, inspect, posix_shm

COMMAND = [sys.executable, "-m", "unixipc"]

def cli(*args):
    result = subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60)
    return result

def child(body, uid=None):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            body()
            os.write(ready_w, b"!")
            while True:
                time.sleep(60)
        finally:
            os._exit(1)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"!", "child failed"
    os.close(ready_r)
    return pid

def kill(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)

def leave_a_message():
    keep.append(Ring.create("/dead-ring", 1 << 14))
    keep[-1].send(b"left behind")

keep = []
started = []
def child(body, uid=None, start=child):
    pid = start(body, uid)
    started.append(pid)
    return pid

try:
  dead = [
      child(leave_a_message),
      child(lambda: keep.append(unixipc.listen("mq:///dead-mq"))),
      child(lambda: keep.append(unixipc.listen("sysvmq://0x5e1ec7ed"))),
      child(lambda: keep.append(unixipc.listen("shm://dead-shm"))),
      child(lambda: keep.append(Ring.create("/other-uid", 1 << 14)), uid=4321),
  ]
  alive = [
      child(lambda: keep.append(Ring.create("/live-ring", 1 << 14))),
      child(lambda: keep.append(unixipc.listen("mq:///live-mq"))),
      child(lambda: keep.append(unixipc.listen("sysvmq://0x11feface"))),
  ]
  PosixSharedMemory.create("/plain", 64).close()
  for pid in dead:
      kill(pid)

  listed = json.loads(cli("ls", "--json").stdout)
  state = {(item["kind"], item["name"]): (item["state"], item["unixipc"]) for item in listed}
  print(json.dumps(sorted(f"{k[0]} {k[1]} {v}" for k, v in state.items())))
  assert state[("posix-shm", "/dead-ring")] == ("stale", "ring"), state
  assert state[("posix-mq", "/dead-mq")] == ("stale", "channel listener"), state
  assert state[("posix-shm", "/dead-mq.listener")] == ("stale", "liveness token"), state
  assert state[("sysv-mq", "0x5e1ec7ed")] == ("stale", "channel listener"), state
  assert state[("posix-shm", "/unixipc-sysvmq-5e1ec7ed.listener")][0] == "stale", state
  assert state[("posix-shm", "/dead-shm")] == ("stale", "channel listener (ring)"), state
  assert state[("posix-shm", "/other-uid")] == ("stale", "ring"), state
  assert state[("posix-shm", "/live-ring")] == ("live", "ring"), state
  assert state[("posix-mq", "/live-mq")] == ("live", "channel listener"), state
  assert state[("sysv-mq", "0x11feface")] == ("live", "channel listener"), state
  assert state[("posix-shm", "/plain")] == ("idle", None), state

  expected = {
      "posix-shm /dead-ring", "posix-mq /dead-mq", "posix-shm /dead-mq.listener",
      "sysv-mq 0x5e1ec7ed", "posix-shm /unixipc-sysvmq-5e1ec7ed.listener", "posix-shm /dead-shm",
  }
  dry_run = cli("rm", "--stale", "--dry-run", "--json").stdout
  dry = [json.loads(line) for line in dry_run.splitlines()]
  assert {f"{item['kind']} {item['name']}" for item in dry} == expected, dry
  assert {item["outcome"] for item in dry} == {"would-remove"}
  assert posix_shm.exists("/dead-ring")

  refused = cli("rm", "posix-mq", "/live-mq")
  assert refused.returncode == 1 and f"pid {alive[1]}" in refused.stderr, refused.stderr
  removed = cli("rm", "--stale")
  assert removed.returncode == 0, removed.stderr
  assert len(removed.stdout.splitlines()) == len(expected), removed.stdout
  after = {(item["kind"], item["name"]) for item in json.loads(cli("ls", "--json").stdout)}
  assert not {tuple(name.split(" ", 1)) for name in expected} & after, after
  for survivor in [("posix-shm", "/other-uid"), ("posix-shm", "/live-ring"),
                   ("posix-mq", "/live-mq"), ("posix-shm", "/live-mq.listener"),
                   ("sysv-mq", "0x11feface"), ("posix-shm", "/unixipc-sysvmq-11feface.listener"),
                   ("posix-shm", "/plain")]:
      assert survivor in after, (survivor, after)

  # A live sysvmq listener's queue: refused, then forced; its token goes with it.
  forced = cli("rm", "sysv-mq", "0x11feface", "--force")
  assert forced.returncode == 0, forced.stderr
  after = {(item["kind"], item["name"]) for item in json.loads(cli("ls", "--json").stdout)}
  assert ("posix-shm", "/unixipc-sysvmq-11feface.listener") not in after, after
  for pid in alive:
      kill(pid)
  print("scenario passed")
finally:
    kill_started()
"""
)


def test_killed_owners_show_stale_and_rm_stale_removes_exactly_them() -> None:
    passes(STALE_SCENARIO)


PATH_LISTENERS_SCENARIO = (
    REAPER
    + """
import json, socket, subprocess, sys, time
import unixipc

COMMAND = [sys.executable, "-m", "unixipc"]

def cli(*args):
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60)

def listener(url):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            kept = unixipc.listen(url)
            os.write(ready_w, b"!")
            time.sleep(60)
        finally:
            os._exit(1)
    started.append(pid)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"!", "listener failed"
    return pid

def listed():
    return {(o["kind"], o["name"]): o for o in json.loads(cli("ls", "--json").stdout)}

# /mnt is searched by nobody: its listener is found through its token.
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/mnt"], check=True)
os.mkdir("/tmp/d")
os.mkfifo("/tmp/d/plain-fifo")
plain = socket.socket(socket.AF_UNIX)
plain.bind("/tmp/d/plain-socket")
plain.close()  # a socket file nobody is bound to, not unixipc's
urls = ("unix:///tmp/d/s", "fifo:///tmp/d/f", "unix:///mnt/far", "fifo:///tmp/d/one")
dead = [listener(url) for url in urls]
alive = listener("unix:///tmp/d/live")
for pid in dead:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)

seen = listed()
for kind, path, scheme in [("unix-socket", "/tmp/d/s", "unix"), ("fifo", "/tmp/d/f", "fifo"),
                           ("unix-socket", "/mnt/far", "unix")]:
    item = seen[(kind, path)]
    assert (item["state"], item["unixipc"]) == ("stale", "channel listener"), item
    assert item["details"]["url"] == f"{scheme}://{path}", item
    token = seen[("posix-shm", item["details"]["token"])]
    assert (token["state"], token["unixipc"]) == ("stale", "liveness token"), token
live = seen[("unix-socket", "/tmp/d/live")]
assert (live["state"], live["unixipc"]) == ("live", "channel listener"), live
assert seen[("unix-socket", "/tmp/d/plain-socket")]["unixipc"] is None
assert seen[("fifo", "/tmp/d/plain-fifo")]["unixipc"] is None

# Removed by name: its token goes with it.
one = cli("rm", "fifo", "/tmp/d/one")
assert one.returncode == 0 and "channel listener" in one.stdout, one
assert not os.path.exists("/dev/shm" + seen[("fifo", "/tmp/d/one")]["details"]["token"])

# Asked for alone, a listener's FIFO is still known by its token.
[fifo] = json.loads(cli("ls", "--json", "--kind", "fifo", "--state", "stale").stdout)
assert (fifo["name"], fifo["unixipc"]) == ("/tmp/d/f", "channel listener"), fifo

removed = cli("rm", "--stale", "--json")
assert removed.returncode == 0, removed.stderr
gone = {json.loads(line)["name"] for line in removed.stdout.splitlines()}
assert {"/tmp/d/s", "/tmp/d/f", "/mnt/far"} <= gone, gone
assert not any(name.startswith(("/tmp/d/p", "/tmp/d/live")) for name in gone), gone
assert sorted(os.listdir("/tmp/d")) == ["live", "plain-fifo", "plain-socket"]
assert not os.path.exists("/mnt/far")
tokens = [name for name in os.listdir("/dev/shm") if name.startswith("unixipc-")]
assert len(tokens) == 1 and tokens[0].startswith("unixipc-unix-live-"), tokens

# Another user squatting on a listener's token name cannot stop it (the file is unmarked).
from unixipc.channels.liveness import path_token_name
for scheme in ("unix", "fifo"):
    squat = "/dev/shm" + path_token_name(scheme, "/tmp/d/squatted")
    with open(squat, "wb") as file:
        file.write(b"\\0")
    os.chown(squat, 4321, 4321)
    with unixipc.listen(f"{scheme}:///tmp/d/squatted") as squatted:
        assert os.stat(squat).st_uid == 4321
    os.unlink(squat)

# The names are free again, for a listener that works.
for url in ("unix:///tmp/d/s", "fifo:///tmp/d/f"):
    with unixipc.listen(url) as again:
        assert again.url == url
os.kill(alive, signal.SIGKILL)
os.waitpid(alive, 0)
print("scenario passed")
"""
)


def test_killed_path_listeners_are_stale_and_rm_stale_removes_only_theirs() -> None:
    """unix:// and fifo:// listeners SIGKILLed: ls shows their socket file and FIFO
    as stale channel listeners (through the token named after the path), rm
    --stale removes them and their tokens, and plain socket files and FIFOs stay."""
    passes(PATH_LISTENERS_SCENARIO)


BRIDGE_SCENARIO = """
import json, os, signal, subprocess, sys, threading, time
import unixipc
from unixipc._status import redact

COMMAND = [sys.executable, "-m", "unixipc"]

def cli(*args):
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60)

def bridges():
    return [o for o in json.loads(cli("ls", "--json").stdout) if o["unixipc"] == "bridge"]

def start_bridge(*extra):
    bridge = subprocess.Popen([*COMMAND, "bridge", "unix:///tmp/src", "unix:///tmp/dst",
                               *extra, "--json"],
                              stdout=subprocess.PIPE, text=True)
    started = json.loads(bridge.stdout.readline())
    assert started["status"].startswith("/unixipc-bridge-"), started
    return bridge

def echo(service):
    with service.accept(timeout=30) as channel:
        try:
            while True:
                channel.send(channel.receive(timeout=30), timeout=30)
        except unixipc.EndOfChannel:
            pass

with unixipc.listen("unix:///tmp/dst") as service:
    bridge = start_bridge()
    try:
        echoing = threading.Thread(target=echo, args=(service,))
        echoing.start()
        client = unixipc.connect("unix:///tmp/src", timeout=30)
        for _ in range(3):
            client.send(b"12345", timeout=30)
            assert client.receive(timeout=30) == b"12345"
        stop = threading.Event()
        def keep_sending():
            while not stop.is_set():
                client.send(b"x", timeout=30)
                client.receive(timeout=30)
        sending = threading.Thread(target=keep_sending)
        sending.start()
        try:
            viewed = cli("top", "--once", "--json", "--interval", "0.5")
        finally:
            stop.set()
            sending.join()
        assert viewed.returncode == 0, viewed.stderr
        [row] = [row for row in json.loads(viewed.stdout) if row["unixipc"] == "bridge"]
        details = row["details"]
        assert (details["src"], details["dst"]) == ("unix:///tmp/src", "unix:///tmp/dst"), row
        # A URL's password is never published.
        assert redact("nats://me:secret@host:4222/s") == "nats://me:***@host:4222/s"
        assert details["pid"] == bridge.pid and row["state"] == "live", row
        assert details["src_to_dst_messages"] >= 3 and details["src_to_dst_bytes"] >= 15, row
        assert details["dst_to_src_messages"] >= 3, row
        assert (row["clients"], row["connections"]) == (1, 1), row
        assert row["messages_in_per_s"] > 0 and row["bytes_out_per_s"] > 0, row
        assert row["rates_from"] == "bridge counts", row
        text = cli("top", "--once", "--interval", "0.1").stdout
        assert "bridge" in text and "IN MSG/s" in text, text
        [listed] = bridges()
        assert listed["permissions"] == "0600", listed

        bridge.send_signal(signal.SIGKILL)
        bridge.wait()
        client.close()
        echoing.join()
    finally:
        bridge.kill()
        bridge.wait()
    [dead] = bridges()
    assert dead["state"] == "stale", dead
    removed = cli("rm", "--stale")
    assert "(bridge)" in removed.stdout, removed
    assert bridges() == []

    # A bridge that ends removes its status object.
    bridge = start_bridge("--clients", "1")
    echoing = threading.Thread(target=echo, args=(service,))
    echoing.start()
    with unixipc.connect("unix:///tmp/src", timeout=30) as client:
        client.send(b"one", timeout=30)
        assert client.receive(timeout=30) == b"one"
    echoing.join()
    report = json.loads(bridge.communicate(timeout=30)[0].splitlines()[-1])
    assert report["src_to_dst"] == {"messages": 1, "bytes": 3}, report
    assert bridges() == []
print("scenario passed")
"""


def test_a_bridge_publishes_its_counts_for_ls_and_top() -> None:
    """`unixipc bridge` counts in a status object: top shows its counts and rates,
    ls shows it a bridge with its URLs (no password); SIGKILLed it is stale and
    rm --stale removes it; a bridge that ends removes it itself."""
    passes(BRIDGE_SCENARIO)


def test_a_status_object_that_cannot_be_filled_leaves_nothing() -> None:
    code = """
    import os, subprocess
    from unixipc import IPCError
    from unixipc._status import StatusObject
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", "/dev/shm"], check=True)
    filler = os.open("/dev/shm/filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(filler, bytes(4096)):
            pass
    except OSError:
        pass  # full: what the test wants
    os.close(filler)
    try:
        StatusObject.publish("bridge", "unix:///a\\nunix:///b", {"clients": 1})
    except IPCError as error:
        print("refused:", error)
    else:
        raise AssertionError("published on a full /dev/shm")
    assert os.listdir("/dev/shm") == ["filler"], os.listdir("/dev/shm")
    print("scenario passed")
    """
    passes(code)


def test_json_after_the_subcommand_and_doctor_and_top(names: Names) -> None:
    name, queue_name = names.posix("top"), names.posix("top")
    with (
        Ring.create(name, 1 << 14) as made,
        PosixMessageQueue.create(queue_name, max_messages=2, max_message_size=64) as queue,
    ):
        made.send(b"x" * 100)
        queue.send(b"waiting")
        prefix = f"/{PREFIX}_top_"
        viewed = cli("top", "--once", "--json", "--interval", "0.2", "--prefix", prefix)
        assert viewed.returncode == 0, viewed.stderr
        rows = {row["name"]: row for row in json.loads(viewed.stdout)}
        row = rows[name]
        assert (row["depth"], row["producers"], row["state"]) == (1, 1, "live")
        assert row["bytes_in_per_s"] == 0.0
        if "messages_written" in row["details"]:  # a ring layout that counts messages
            assert (row["messages_in_per_s"], row["rates_from"]) == (0.0, "ring counters")
        else:
            assert row["messages_in_per_s"] is None, row
            assert row["rates_from"].startswith("ring positions: bytes only"), row
        # A queue: the kernel counts no messages, only the depth (and says so).
        row = rows[queue_name]
        assert (row["depth"], row["depth_change_per_s"]) == (1, 0.0), row
        assert (row["messages_in_per_s"], row["bytes_in_per_s"]) == (None, None), row
        assert row["rates_from"] == "depth only: the kernel counts no messages for queues"
        text = cli("top", "--once", "--interval", "0.1", "--prefix", prefix).stdout
        assert "IN MSG/s" in text, text
        assert "-: not counted (queues" in text, text
        made.unlink()
        queue.unlink()
    doctor = cli("doctor", "--json")
    checks = {check["check"]: check for check in json.loads(doctor.stdout)}
    assert {"/dev/shm", "logind RemoveIPC", "RLIMIT_MSGQUEUE", "namespaces"} <= set(checks)
    assert doctor.returncode == (1 if any(c["status"] == "error" for c in checks.values()) else 0)
    assert checks["/dev/shm"]["status"] in ("ok", "warning")


def test_doctor_fails_when_dev_shm_is_full() -> None:
    code = """
    import subprocess, sys, json
    subprocess.run(["umount", "/dev/shm"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"], check=True)
    result = subprocess.run([sys.executable, "-m", "unixipc", "doctor"], capture_output=True,
                            text=True)
    print(result.stdout)
    assert result.returncode == 1, result
    assert "will not fit" in result.stdout and "--shm-size" in result.stdout
    """
    result = run_isolated(code)
    assert result.returncode == 0, result.stdout + result.stderr
