"""FIFOs between real, unrelated processes; timed opens; a C client."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Names
from tests.helpers import Child, assert_elapsed, compile_c, fd_count, run_python
from unixipc import (
    PIPE_BUF,
    EndOfChannel,
    Fifo,
    FifoWriter,
    PeerDied,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceNotFoundError,
    TimeoutExpired,
    WouldBlock,
    _permissions,
    fifo,
)


def _write_fifo(path: str, data: bytes) -> int:
    with Fifo.open(path, "w", timeout=30) as writer:
        writer.send_all(data, timeout=30)
    return len(data)


def _read_fifo(path: str, size: int) -> bytes:
    with Fifo.open(path, "r", timeout=30) as reader:
        return reader.receive_exactly(size, timeout=30)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_data_crosses_processes(names: Names, method: str) -> None:
    path = names.path("fifo")
    data = os.urandom(300_000)  # larger than the pipe buffer: the writer must wait
    fifo.mkfifo(path)
    child = Child(_write_fifo, path, data, method=method)
    with Fifo.open(path, "r", timeout=30) as reader:
        assert reader.receive_exactly(len(data), timeout=30) == data
        assert reader.receive_some(timeout=30) == b""
    assert child.result() == len(data)
    fifo.unlink(path)


def test_python_writer_in_an_unrelated_process(names: Names) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    writer = subprocess.Popen(
        [sys.executable, "-c", f"import unixipc; unixipc.Fifo.open({path!r}, 'w').send_all(b'hi')"],
    )
    with Fifo.open(path, "r", timeout=30) as reader:
        assert reader.receive_some(timeout=30) == b"hi"
        assert reader.receive_some(timeout=30) == b""
    assert writer.wait(30) == 0


def test_create_open_exists_unlink(names: Names, children: Callable[..., Child]) -> None:
    path = names.path("fifo")
    assert not fifo.exists(path)
    child = children(_read_when_created, path, 3)
    with Fifo.create(path, "w", timeout=30) as writer:
        assert isinstance(writer, FifoWriter)
        assert isinstance(writer, Fifo)
        assert fifo.exists(path)
        assert writer.path == path
        writer.send_all(b"abc")
        writer.unlink()
        assert not fifo.exists(path)
    assert child.result() == b"abc"


def _read_when_created(path: str, size: int) -> bytes:
    deadline = time.monotonic() + 30
    while not fifo.exists(path):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return _read_fifo(path, size)


@pytest.mark.parametrize("umask", [0o000, 0o077])
@pytest.mark.parametrize("permissions", [0o600, 0o640, 0o666])
def test_permissions_are_exact_whatever_the_umask(
    names: Names, umask: int, permissions: int
) -> None:
    path = names.path("fifo")
    old = os.umask(umask)
    try:
        fifo.mkfifo(path, permissions=permissions, allow_world_writable=bool(permissions & 2))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == permissions
    fifo.unlink(path)


def test_create_refuses_an_existing_path(names: Names) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    with pytest.raises(ResourceExistsError, match="already exists") as caught:
        Fifo.create(path, "r", timeout=0)
    assert caught.value.filename == path
    assert fifo.exists(path)  # the failed create removed nothing
    fifo.unlink(path)


def test_open_needs_an_existing_fifo(names: Names) -> None:
    missing = names.path("missing")
    for timeout in (None, 0, 1):
        with pytest.raises(ResourceNotFoundError, match="does not exist"):
            Fifo.open(missing, "r", timeout=timeout)
    regular = names.path("file")
    Path(regular).write_bytes(b"")
    for timeout in (None, 0, 1):
        with pytest.raises(ValueError, match="not a FIFO"):
            Fifo.open(regular, "w", timeout=timeout)
    with pytest.raises(ValueError, match="not a FIFO"):
        fifo.unlink(regular)
    assert os.path.exists(regular)


def test_open_or_create(names: Names, children: Callable[..., Child]) -> None:
    path = names.path("fifo")
    child = children(_read_when_created, path, 2)
    with Fifo.open_or_create(path, "w", timeout=30) as writer:
        writer.send_all(b"v1")
    assert child.result() == b"v1"
    child = children(_read_fifo, path, 2)
    with Fifo.open_or_create(path, "w", timeout=30) as writer:  # exists now: opened
        writer.send_all(b"v2")
    assert child.result() == b"v2"
    fifo.unlink(path)


def test_writer_open_timeouts(names: Names) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    with pytest.raises(WouldBlock, match="for writing"):
        Fifo.open(path, "w", timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match="no peer"):
        Fifo.open(path, "w", timeout=0.3)
    assert_elapsed(started, 0.3)
    fifo.unlink(path)


def test_reader_open_timeouts_leave_the_fifo_usable(
    names: Names, children: Callable[..., Child]
) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    before = fd_count()
    with pytest.raises(WouldBlock):
        Fifo.open(path, "r", timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match="for reading"):
        Fifo.open(path, "r", timeout=0.3)
    assert_elapsed(started, 0.3)
    assert fd_count() == before  # the helper thread's descriptors are closed
    child = children(_write_fifo, path, b"still works")
    assert _read_fifo(path, 11) == b"still works"
    assert child.result() == 11
    fifo.unlink(path)


def test_try_once_open_succeeds_when_the_peer_is_there(
    names: Names, children: Callable[..., Child]
) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    child = children(_write_fifo, path, b"x")  # blocks in open until we come
    time.sleep(0.2)
    with Fifo.open(path, "r", timeout=0) as reader:
        assert reader.receive_exactly(1, timeout=30) == b"x"
    child.result()
    reader_child = children(_read_fifo, path, 1)
    deadline = time.monotonic() + 30
    while True:  # the reader child may not have opened yet
        try:
            writer = Fifo.open(path, "w", timeout=0)
            break
        except WouldBlock:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    with writer:
        writer.send_all(b"y")
    assert reader_child.result() == b"y"
    fifo.unlink(path)


def test_create_that_times_out_removes_the_fifo(names: Names) -> None:
    path = names.path("fifo")
    with pytest.raises(TimeoutExpired):
        Fifo.create(path, "r", timeout=0.1)
    assert not os.path.exists(path)


def test_blocking_open_is_interrupted_by_ctrl_c(names: Names) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    code = f"""
import signal, unixipc
def stop(*_):
    raise KeyboardInterrupt
signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, 0.2)
try:
    unixipc.Fifo.open({path!r}, "r")
except KeyboardInterrupt:
    print("interrupted")
"""
    assert run_python(code).stdout.strip() == "interrupted"
    fifo.unlink(path)


def test_reader_sees_end_of_stream_and_writer_sees_peer_died(
    names: Names, children: Callable[..., Child]
) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    child = children(_write_fifo, path, b"12")
    with Fifo.open(path, "r", timeout=30) as reader, pytest.raises(EndOfChannel):
        reader.receive_exactly(3, timeout=30)
    child.result()
    child = children(_read_fifo, path, 1)
    with Fifo.open(path, "w", timeout=30) as writer:
        writer.send_all(b"1")
        child.result()  # the reader is gone now
        with pytest.raises(PeerDied):
            writer.send_all(b"more", timeout=5)
    fifo.unlink(path)


def _write_records(path: str, tag: int, count: int) -> int:
    with Fifo.open(path, "w", timeout=30) as writer:
        for _ in range(count):
            writer.send_all(bytes([tag]) * PIPE_BUF, timeout=60)
    return count


def test_writes_up_to_pipe_buf_are_atomic_with_8_writers(names: Names) -> None:
    path = names.path("fifo")
    fifo.mkfifo(path)
    writers, records = 8, 100
    children = [Child(_write_records, path, tag, records) for tag in range(1, writers + 1)]
    counts = dict.fromkeys(range(1, writers + 1), 0)
    # A server keeps a writer of its own open, so that it does not see end of
    # stream between two clients (the textbook trick).
    with Fifo.open(path, "r", timeout=30) as reader, Fifo.open(path, "w", timeout=0):
        for _ in range(writers * records):
            record = reader.receive_exactly(PIPE_BUF, timeout=60)
            assert record == bytes([record[0]]) * PIPE_BUF, "two writers' data interleaved"
            counts[record[0]] += 1
        assert [child.result() for child in children] == [records] * writers
    assert counts == dict.fromkeys(range(1, writers + 1), records)
    fifo.unlink(path)


def test_bad_arguments_fail_before_any_system_call(names: Names) -> None:
    path = names.path("fifo")
    with pytest.raises(ValueError, match="access"):
        Fifo.create(path, "rw")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="path"):
        Fifo.open(b"/tmp/x", "r")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="empty"):
        Fifo.open("", "r")
    with pytest.raises(TypeError, match="permissions"):
        Fifo.create(path, "r", permissions="0600")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="permissions"):
        Fifo.create(path, "r", permissions=0o10000)
    with pytest.raises(TypeError, match="timeout"):
        Fifo.create(path, "r", timeout="1")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="timeout"):
        Fifo.open_or_create(path, "r", timeout=-1)
    assert not os.path.exists(path)  # nothing was created by any of them


C_CLIENT = r"""
/* A C client of the classic FIFO server: make a reply FIFO, send one request
 * "<reply path> <number>\n" into the server FIFO, read the answer. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: client SERVER_FIFO REPLY_FIFO NUMBER\n");
        return 2;
    }
    if (mkfifo(argv[2], 0600) != 0) { perror("mkfifo"); return 1; }
    char request[128];
    memset(request, ' ', sizeof request);
    int n = snprintf(request, sizeof request, "%s %s", argv[2], argv[3]);
    request[n] = ' ';
    int server = open(argv[1], O_WRONLY);
    if (server < 0) { perror("open server"); return 1; }
    ssize_t written = write(server, request, sizeof request);
    if (written != (ssize_t)sizeof request) { perror("write"); return 1; }
    close(server);
    int reply = open(argv[2], O_RDONLY);
    if (reply < 0) { perror("open reply"); return 1; }
    char answer[64] = {0};
    ssize_t got = read(reply, answer, sizeof answer - 1);
    close(reply);
    unlink(argv[2]);
    if (got <= 0) { perror("read"); return 1; }
    printf("%s\n", answer);
    return 0;
}
"""


def test_c_client_talks_to_a_python_fifo_server(names: Names, tmp_path: Path) -> None:
    client = compile_c(C_CLIENT, tmp_path, "fifo_client")
    server_path = names.path("server")
    fifo.mkfifo(server_path)
    clients = [
        subprocess.Popen(
            [str(client), server_path, names.path(f"reply{i}"), str(i * 10)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    with Fifo.open(server_path, "r", timeout=30) as server, Fifo.open(server_path, "w"):
        for _ in clients:
            reply_path, number = server.receive_exactly(128, timeout=30).decode().split()
            with Fifo.open(reply_path, "w", timeout=30) as reply:
                reply.send_all(f"twice {int(number) * 2}".encode())
    outputs = sorted(c.communicate(timeout=30)[0].strip() for c in clients)
    assert [c.returncode for c in clients] == [0, 0, 0]
    assert outputs == ["twice 0", "twice 20", "twice 40"]
    fifo.unlink(server_path)


# ---- groups, world-writable modes, symlinks, all-or-nothing creation --------------------

NOBODY = 65534


def test_a_fifo_gets_its_group_and_is_never_world_writable_unasked(names: Names) -> None:
    path = names.path("fifo")
    old = os.umask(0)
    try:
        fifo.mkfifo(path, permissions=0o660, group=NOBODY)
    finally:
        os.umask(old)
    info = os.stat(path)
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, NOBODY)
    fifo.unlink(path)
    other = names.path("fifo")
    with pytest.raises(ValueError, match="allow_world_writable"):
        fifo.mkfifo(other, permissions=0o666)
    with pytest.raises(ValueError, match="allow_world_writable"):
        Fifo.create(other, "r", permissions=0o622, timeout=0)
    assert not os.path.lexists(other)


def test_a_planted_symlink_is_never_followed(
    names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    os.chmod(target, 0o600)
    path = names.path("fifo")
    os.symlink(target, path)
    with pytest.raises(ResourceExistsError, match="already exists"):
        fifo.mkfifo(path, permissions=0o660)
    os.unlink(path)
    # Swapped in just after mkfifo(3), before the mode is set and the FIFO opened.
    real_mkfifo = os.mkfifo

    def mkfifo_then_swap(where: str, mode: int = 0o666) -> None:
        real_mkfifo(where, mode)
        os.rename(where, where + ".moved")
        os.symlink(target, where)

    monkeypatch.setattr(os, "mkfifo", mkfifo_then_swap)
    with pytest.raises(ResourceExistsError):
        Fifo.create(path, "w", permissions=0o660, timeout=0)
    monkeypatch.undo()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert target.read_text() == "precious"  # never opened for writing
    assert os.path.islink(path)  # not ours: left alone
    os.unlink(path)
    os.unlink(path + ".moved")


@pytest.mark.parametrize("step", ["mode", "interrupted"])
def test_a_create_that_fails_after_mkfifo_leaves_nothing(
    names: Names, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = names.path("fifo")
    error: BaseException = PermissionError(1, "no") if step == "mode" else KeyboardInterrupt()

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(_permissions, "finish", fail)
    for create in (lambda: fifo.mkfifo(path), lambda: Fifo.open_or_create(path, "r", timeout=0)):
        with pytest.raises(PermissionDeniedError if step == "mode" else KeyboardInterrupt):
            create()
        assert not os.path.lexists(path)
    monkeypatch.undo()
    fifo.mkfifo(path)  # the retry works
    fifo.unlink(path)


def test_open_or_create_removes_what_it_created_when_opening_fails(names: Names) -> None:
    path = names.path("fifo")
    with pytest.raises(WouldBlock):
        Fifo.open_or_create(path, "w", timeout=0)  # no reader
    assert not os.path.lexists(path)
    fifo.mkfifo(path)
    with pytest.raises(WouldBlock):
        Fifo.open_or_create(path, "w", timeout=0)
    assert fifo.exists(path)  # not ours to remove: it was there before
    fifo.unlink(path)
