"""UNIX domain sockets between real processes: files, permissions, descriptors, credentials."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PREFIX, Names
from tests.helpers import Child, assert_elapsed, compile_c, fd_count
from unixipc import (
    ClosedResourceError,
    IPCOSError,
    MessageTooLarge,
    PermissionDeniedError,
    ResourceExistsError,
    ResourceNotFoundError,
    TimeoutExpired,
    WouldBlock,
    _permissions,
    sockets,
)
from unixipc.sockets import BoundUnixSocket, Credentials, UnixListener

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory that an unprivileged child (uid 65534) can enter."""
    directory = tempfile.mkdtemp(prefix=f"{PREFIX}_sock_")
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _become_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _listen(path: str, cleanup: Callable[..., None], **options: object) -> UnixListener:
    listener = sockets.unix_listen(path, **options)  # type: ignore[call-overload]
    cleanup(listener.close)
    assert isinstance(listener, UnixListener)
    return listener


def _accept(listener: UnixListener, cleanup: Callable[..., None]) -> socket.socket:
    connection, _ = listener.accept(timeout=30)
    cleanup(connection.close)
    return connection


# --- children (module level, so that every start method can run them) -------


def _client_round_trip(path: str, kind: str, abstract: bool = False) -> bytes:
    with sockets.unix_connect(path, kind=kind, timeout=30, abstract=abstract) as sock:  # type: ignore[arg-type]
        if kind == "stream":
            sockets.send_message(sock, f"hello from {os.getpid()}".encode(), timeout=30)
            return sockets.receive_message(sock, max_size=100, timeout=30)
        sockets.send_datagram(sock, f"hello from {os.getpid()}".encode(), timeout=30)
        return sockets.receive_datagram(sock, 100, timeout=30)[0]


def _connect_as_nobody(path: str) -> str:
    _become_nobody()
    try:
        with sockets.unix_connect(path, timeout=30) as sock:
            return repr(sockets.receive_some(sock, timeout=30))
    except PermissionDeniedError:
        return "denied"


def _connect_and_report(path: str, as_nobody: bool) -> tuple[int, int, int, bytes]:
    if as_nobody:
        _become_nobody()
    with sockets.unix_connect(path, timeout=30) as sock:
        server = sockets.peer_credentials(sock)
        return server.pid, os.getpid(), os.getuid(), sockets.receive_some(sock, timeout=30)


def _listen_in_child(path: str, ready: socket.socket) -> bytes:
    with sockets.unix_listen(path) as listener:
        ready.sendall(b"r")
        connection, _ = listener.accept(timeout=30)
        with connection:
            return sockets.receive_message(connection, max_size=100, timeout=30)


def _send_an_open_file(path: str, kind: str, directory: str) -> None:
    """Open a file, remove its name, pass only the descriptor, then close everything."""
    file_path = os.path.join(directory, f"passed-{os.getpid()}")
    with open(file_path, "w+b") as file:
        file.write(b"contents written by the sender " * 100)
        file.flush()
        os.unlink(file_path)  # now only the descriptor leads to the data
        with sockets.unix_connect(path, kind=kind, timeout=30) as sock:  # type: ignore[arg-type]
            sockets.send_fds(sock, b"F", [file], timeout=30)
    # the descriptor in flight keeps the file open after the sender closed it


def _send_datagrams_as_nobody(path: str, count: int) -> tuple[int, int]:
    _become_nobody()
    with sockets.unix_connect(path, kind="datagram", timeout=30) as sock:
        for i in range(count):
            sockets.send_datagram(sock, str(i).encode(), timeout=30)
    return os.getpid(), os.getuid()


def _accept_one_from_a_passed_listener(listener: UnixListener) -> bytes:
    with listener:
        connection, _ = listener.accept(timeout=30)
        with connection:
            return sockets.receive_message(connection, max_size=100, timeout=30)


# --- listening and connecting ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["stream", "seqpacket", "datagram"])
def test_a_child_process_connects_and_gets_an_answer(
    names: Names, cleanup: Callable[..., None], children: Callable[..., Child], kind: str
) -> None:
    path = names.path("sock")
    server = sockets.unix_listen(path, kind=kind)  # type: ignore[call-overload]
    cleanup(server.close)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    child = children(_client_round_trip, path, kind)
    if kind == "stream":
        connection = _accept(server, cleanup)
        request = sockets.receive_message(connection, max_size=100, timeout=30)
        sockets.send_message(connection, request.upper(), timeout=30)
    elif kind == "seqpacket":
        connection = _accept(server, cleanup)
        request, _ = sockets.receive_datagram(connection, 100, timeout=30)
        sockets.send_datagram(connection, request.upper(), timeout=30)
    else:
        assert isinstance(server, BoundUnixSocket)
        assert not isinstance(server, UnixListener)
        request, sender = sockets.receive_datagram(server, 100, timeout=30)
        sockets.send_datagram(server, request.upper(), sender, timeout=30)
    assert child.result() == f"HELLO FROM {child.pid}".encode()


def test_a_leftover_socket_file_is_replaced(names: Names, cleanup: Callable[..., None]) -> None:
    path = names.path("stale")
    with socket.socket(socket.AF_UNIX) as crashed:
        crashed.bind(path)  # a server that died without removing its file
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    listener = _listen(path, cleanup)
    with sockets.unix_connect(path, timeout=30) as client:
        sockets.send_all(client, b"ok")
        assert sockets.receive_exactly(_accept(listener, cleanup), 2, timeout=30) == b"ok"


def test_a_live_listener_in_another_process_is_never_replaced(
    names: Names, children: Callable[..., Child]
) -> None:
    path = names.path("live")
    ready, child_ready = socket.socketpair()
    with ready, child_ready:
        child = children(_listen_in_child, path, child_ready)
        assert sockets.receive_some(ready, timeout=30) == b"r"
        inode = os.stat(path).st_ino
        with pytest.raises(ResourceExistsError, match="is already in use") as caught:
            sockets.unix_listen(path)
        assert caught.value.errno == errno.EADDRINUSE
        assert caught.value.filename == path
        assert os.stat(path).st_ino == inode  # the live file was not touched
        with sockets.unix_connect(path, timeout=30) as sock:  # and it still works
            sockets.send_message(sock, b"still served", timeout=30)
        assert child.result() == b"still served"


def _race_for(path: str, start: Any, done: Any) -> str:
    start.wait(30)
    try:
        listener = sockets.unix_listen(path)
    except ResourceExistsError:
        outcome = "lost"
    else:
        outcome = "won"
    done.wait(30)  # the winner keeps listening until every racer has tried
    if outcome == "won":
        listener.close()
    return outcome


def test_racing_processes_replace_a_leftover_file_exactly_once(
    names: Names, children: Callable[..., Child]
) -> None:
    path = names.path("race")
    with socket.socket(socket.AF_UNIX) as crashed:
        crashed.bind(path)
    context = multiprocessing.get_context("fork")
    racers = 6
    start, done = context.Barrier(racers), context.Barrier(racers)
    outcomes = [children(_race_for, path, start, done) for _ in range(racers)]
    assert sorted(child.result() for child in outcomes) == ["lost"] * (racers - 1) + ["won"]


def test_a_file_that_is_not_a_socket_is_refused(names: Names) -> None:
    path = names.path("regular")
    with open(path, "w") as file:
        file.write("precious")
    with pytest.raises(ResourceExistsError, match="already exists"):
        sockets.unix_listen(path)
    with open(path) as file:
        assert file.read() == "precious"


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
@pytest.mark.parametrize("permissions", [0o600, 0o660, 0o666])
def test_the_file_gets_exactly_the_permissions_whatever_the_umask(
    names: Names, cleanup: Callable[..., None], umask: int, permissions: int
) -> None:
    path = names.path("mode")
    old = os.umask(umask)
    try:
        _listen(path, cleanup, permissions=permissions, allow_world_writable=bool(permissions & 2))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == permissions


def test_permission_bits_are_honoured_for_other_users(
    shared_dir: str, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    private = _listen(os.path.join(shared_dir, "private"), cleanup, permissions=0o600)
    assert children(_connect_as_nobody, private.path).result() == "denied"
    public = _listen(
        os.path.join(shared_dir, "public"), cleanup, permissions=0o666, allow_world_writable=True
    )
    child = children(_connect_as_nobody, public.path)
    sockets.send_all(_accept(public, cleanup), b"welcome", timeout=30)
    assert child.result() == repr(b"welcome")
    with pytest.raises(WouldBlock):  # the refused stranger left nothing queued
        private.accept(timeout=0)


def test_allowed_uids_turns_other_users_away(
    shared_dir: str, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    listener = _listen(
        os.path.join(shared_dir, "only-root"),
        cleanup,
        permissions=0o666,
        allow_world_writable=True,
        allowed_uids=[0],
    )
    stranger = children(_connect_and_report, listener.path, True)
    wait_for_queued_connection(listener)
    friend = children(_connect_and_report, listener.path, False)
    connection = _accept(listener, cleanup)  # the stranger's connection is closed, not returned
    assert sockets.peer_credentials(connection) == Credentials(friend.pid, 0, 0)
    sockets.send_all(connection, b"hi friend", timeout=30)
    assert listener.rejected_peers == 1
    server_pid, pid, uid, data = stranger.result()
    assert (server_pid, pid, uid, data) == (os.getpid(), stranger.pid, NOBODY, b"")
    assert friend.result() == (os.getpid(), friend.pid, 0, b"hi friend")
    with pytest.raises(ValueError, match="need connections"):
        sockets.unix_listen(os.path.join(shared_dir, "d"), kind="datagram", allowed_uids=[0])  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="not be empty"):
        sockets.unix_listen(os.path.join(shared_dir, "e"), allowed_uids=[])


def wait_for_queued_connection(listener: socket.socket) -> None:
    """Wait until a connection is queued on ``listener`` (it polls readable)."""
    import select

    poller = select.poll()
    poller.register(listener, select.POLLIN)
    assert poller.poll(30_000), "no connection arrived"


def test_abstract_addresses_have_no_file(
    cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    name = f"{PREFIX}-abstract-{time.monotonic_ns()}"
    listener = _listen(name, cleanup, abstract=True)
    assert listener.abstract
    assert listener.path == name
    assert not os.path.exists(name)
    child = children(_client_round_trip, name, "stream", True)
    connection = _accept(listener, cleanup)
    request = sockets.receive_message(connection, max_size=100, timeout=30)
    sockets.send_message(connection, request.upper(), timeout=30)
    assert child.result() == f"HELLO FROM {child.pid}".encode()
    with pytest.raises(ResourceExistsError, match=f"abstract UNIX socket '@{name}'"):
        sockets.unix_listen(name, abstract=True)
    with pytest.raises(ValueError, match="no file permissions"):
        sockets.unix_listen(name + "x", abstract=True, permissions=0o660)
    assert listener.unlink() is False


def test_close_keeps_the_file_and_unlink_removes_only_its_own(
    names: Names, cleanup: Callable[..., None]
) -> None:
    path = names.path("own")
    first = sockets.unix_listen(path)
    cleanup(first.close)
    first.close()
    assert os.path.exists(path)  # close never removes the name
    with pytest.raises(ClosedResourceError):
        first.unlink()  # the inode is no longer pinned: it cannot prove the file is its own
    replaced = _listen(path, cleanup)  # replaces the leftover
    os.rename(path, path + ".moved")  # someone moved it away and put another socket there
    other = _listen(path, cleanup)
    os.rename(path + ".moved", path + ".other")
    os.rename(path, path + ".keep")
    os.rename(path + ".other", path)
    assert other.unlink() is False  # the file at path is replaced's, not other's
    assert os.path.exists(path)
    assert replaced.unlink() is True
    assert not os.path.exists(path)
    assert replaced.unlink() is False
    os.unlink(path + ".keep")


def test_a_forked_child_closing_its_copy_does_not_take_the_name(
    names: Names, cleanup: Callable[..., None]
) -> None:
    listener = _listen(names.path("fork"), cleanup)
    pid = os.fork()
    if pid == 0:  # the child of a fork-per-connection server closes the listener
        listener.close()
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.path.exists(listener.path)
    with sockets.unix_connect(listener.path, timeout=30):
        _accept(listener, cleanup)


def test_a_listener_passes_to_a_spawned_child(
    names: Names, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    listener = _listen(names.path("spawn"), cleanup)
    child = children(_accept_one_from_a_passed_listener, listener, method="spawn")
    with sockets.unix_connect(listener.path, timeout=30) as sock:
        sockets.send_message(sock, b"to the spawned child", timeout=30)
    assert child.result() == b"to the spawned child"


def test_connect_errors_name_the_socket(names: Names, cleanup: Callable[..., None]) -> None:
    missing = names.path("missing")
    with pytest.raises(ResourceNotFoundError, match=f"UNIX socket '{missing}' does not exist"):
        sockets.unix_connect(missing, timeout=5)
    stale = names.path("refused")
    with socket.socket(socket.AF_UNIX) as crashed:
        crashed.bind(stale)
    with pytest.raises(IPCOSError) as caught:
        sockets.unix_connect(stale, timeout=5)
    assert caught.value.errno == errno.ECONNREFUSED
    listener = _listen(names.path("wrong-kind"), cleanup)
    with pytest.raises(IPCOSError) as caught:
        sockets.unix_connect(listener.path, kind="seqpacket", timeout=5)
    assert caught.value.errno == errno.EPROTOTYPE


def test_bad_arguments_fail_before_any_system_call(names: Names) -> None:
    with pytest.raises(ValueError, match="too long"):
        sockets.unix_listen("/tmp/" + "x" * 200)
    with pytest.raises(ValueError, match="kind must be"):
        sockets.unix_listen(names.path(), kind="raw")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="between 0 and 0o777"):
        sockets.unix_listen(names.path(), permissions=0o4600)
    with pytest.raises(TypeError, match="path must be"):
        sockets.unix_connect(b"/tmp/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backlog"):
        sockets.unix_listen(names.path(), backlog=-1)
    with pytest.raises(ValueError, match="timeout"):
        sockets.unix_connect(names.path(), timeout=-1)
    assert not os.listdir(os.path.dirname(names.path()))


def test_accept_timeouts(names: Names, cleanup: Callable[..., None]) -> None:
    listener = _listen(names.path("accept"), cleanup)
    with pytest.raises(WouldBlock):
        listener.accept(timeout=0)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match="accepting on UNIX socket"):
        listener.accept(timeout=0.3)
    assert_elapsed(started, 0.3)
    listener.close()
    with pytest.raises(ClosedResourceError):
        listener.accept()


def _connect_until_full(path: str, cleanup: Callable[..., None]) -> None:
    for _ in range(10):
        cleanup(sockets.unix_connect(path, timeout=0).close)


def test_connect_waits_while_the_backlog_is_full(
    names: Names, cleanup: Callable[..., None]
) -> None:
    listener = _listen(names.path("backlog"), cleanup, backlog=0)
    with pytest.raises(WouldBlock):  # fill the queue (Linux takes backlog + 1)
        _connect_until_full(listener.path, cleanup)
    started = time.monotonic()
    with pytest.raises(TimeoutExpired, match="connecting"):
        sockets.unix_connect(listener.path, timeout=0.3)
    assert_elapsed(started, 0.3)
    _accept(listener, cleanup)  # room again
    with sockets.unix_connect(listener.path, timeout=30):
        pass


# --- descriptor passing ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stream", "datagram", "seqpacket"])
def test_the_receiver_reads_a_file_the_sender_opened(
    names: Names, cleanup: Callable[..., None], children: Callable[..., Child], kind: str
) -> None:
    server = sockets.unix_listen(names.path("fds"), kind=kind)  # type: ignore[call-overload]
    cleanup(server.close)
    children(_send_an_open_file, server.path, kind, str(names.directory)).result()
    connection = server if kind == "datagram" else _accept(server, cleanup)
    data, fds = received = sockets.receive_fds(connection, 10, 4, timeout=30)
    assert (data, len(fds), received.truncated) == (b"F", 1, False)
    with open(fds[0], "rb") as file:
        assert os.get_inheritable(file.fileno()) is False  # close-on-exec
        file.seek(0)
        assert file.read() == b"contents written by the sender " * 100
    assert not [name for name in os.listdir(names.directory) if name.startswith("passed-")]


def _send_many_fds(sock: socket.socket, count: int) -> None:
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(count)]
    try:
        sockets.send_fds(sock, b"m", fds, timeout=30)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_descriptors_beyond_max_fds_are_closed_and_reported(kind: int) -> None:
    left, right = socket.socketpair(socket.AF_UNIX, kind)
    with left, right:
        before = fd_count()
        _send_many_fds(left, 5)
        data, fds = received = sockets.receive_fds(right, 10, 2, timeout=30)
        assert (data, len(fds), received.truncated) == (b"m", 2, True)
        for fd in fds:
            os.close(fd)
        assert fd_count() == before  # none of the other three leaked
        _send_many_fds(left, 3)
        received = sockets.receive_fds(right, 10, 0, timeout=30)  # refuses descriptors
        assert (received.data, received.fds, received.truncated) == (b"m", [], True)
        assert fd_count() == before
        _send_many_fds(left, 2)
        received = sockets.receive_fds(right, 10, 2, timeout=30)
        assert (len(received.fds), received.truncated) == (2, False)
        for fd in received.fds:
            os.close(fd)
        assert fd_count() == before


def test_an_oversized_datagram_with_descriptors_leaks_nothing() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        before = fd_count()
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        sockets.send_fds(left, b"0123456789", [fd, fd])
        os.close(fd)
        with pytest.raises(MessageTooLarge, match="discarded with its 2 descriptors"):
            sockets.receive_fds(right, 4, 2, timeout=30)
        assert fd_count() == before


def test_send_fds_rejects_bad_input_before_sending() -> None:
    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(ValueError, match="at least one byte"):
            sockets.send_fds(left, b"", [0])
        with pytest.raises(ValueError, match="1 to 253"):
            sockets.send_fds(left, b"x", [])
        with pytest.raises(ValueError, match="1 to 253"):
            sockets.send_fds(left, b"x", [0] * 254)
        with pytest.raises(TypeError, match="sequence"):
            sockets.send_fds(left, b"x", 0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_fds"):
            sockets.receive_fds(right, 1, 254)
        with pytest.raises(WouldBlock):
            sockets.receive_fds(right, 1, 1, timeout=0)
    with socket.socket() as tcp, pytest.raises(ValueError, match="only on UNIX"):
        sockets.send_fds(tcp, b"x", [0])
    with pytest.raises(ClosedResourceError):
        sockets.send_fds(left, b"x", [0])


C_SCM_RIGHTS_RECEIVER = r"""
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    (void)argc;
    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof(address.sun_path) - 1);
    if (connect(sock, (struct sockaddr *)&address, sizeof(address)) != 0) {
        perror("connect");
        return 1;
    }
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union { struct cmsghdr header; char space[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = control.space, .msg_controllen = sizeof(control.space)};
    if (recvmsg(sock, &message, 0) != 1) { perror("recvmsg"); return 1; }
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
    if (cmsg == NULL || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
        fprintf(stderr, "no descriptor\n"); return 1;
    }
    int fd;
    memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
    char buffer[256];
    ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
    if (n < 0) { perror("pread"); return 1; }
    buffer[n] = 0;
    printf("%c %s\n", byte, buffer);
    return 0;
}
"""


def test_a_c_program_receives_a_descriptor_from_python(
    names: Names, cleanup: Callable[..., None], tmp_path: os.PathLike[str]
) -> None:
    import subprocess
    from pathlib import Path

    binary = compile_c(C_SCM_RIGHTS_RECEIVER, Path(tmp_path), "scm_rights_receiver")
    listener = _listen(names.path("c"), cleanup)
    receiver = subprocess.Popen([binary, listener.path], stdout=subprocess.PIPE, text=True)
    file_path = names.path("for-c")
    with open(file_path, "w+") as file:
        file.write("written by Python, read by C")
        file.flush()
        os.unlink(file_path)
        connection = _accept(listener, cleanup)
        sockets.send_fds(connection, b"!", [file], timeout=30)
        output, _ = receiver.communicate(timeout=60)
    assert receiver.returncode == 0
    assert output == "! written by Python, read by C\n"


# --- credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("as_nobody", [False, True])
def test_peer_credentials_are_the_real_pid_and_uid(
    shared_dir: str, cleanup: Callable[..., None], children: Callable[..., Child], as_nobody: bool
) -> None:
    listener = _listen(
        os.path.join(shared_dir, "cred"), cleanup, permissions=0o666, allow_world_writable=True
    )
    child = children(_connect_and_report, listener.path, as_nobody)
    connection = _accept(listener, cleanup)
    expected_id = NOBODY if as_nobody else os.getuid()
    assert sockets.peer_credentials(connection) == Credentials(child.pid, expected_id, expected_id)
    sockets.send_all(connection, b"ok", timeout=30)
    # and the client saw the server's real pid
    assert child.result() == (os.getpid(), child.pid, expected_id, b"ok")


def test_credentials_per_message(
    shared_dir: str, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    server = sockets.unix_listen(
        os.path.join(shared_dir, "percred"),
        kind="datagram",
        permissions=0o666,
        allow_world_writable=True,
    )
    cleanup(server.close)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    child = children(_send_datagrams_as_nobody, server.path, 3)
    received = [sockets.receive_with_credentials(server, 100, timeout=30) for _ in range(3)]
    pid, uid = child.result()
    assert received == [(str(i).encode(), Credentials(pid, uid, NOBODY)) for i in range(3)]
    assert (pid, uid) == (child.pid, NOBODY)


def test_peer_credentials_need_a_connected_unix_socket() -> None:
    with socket.socket(socket.AF_UNIX) as lonely, pytest.raises(IPCOSError) as caught:
        sockets.peer_credentials(lonely)
    assert caught.value.errno == errno.ENOTCONN
    with socket.socket() as tcp, pytest.raises(ValueError, match="only on UNIX"):
        sockets.peer_credentials(tcp)
    left, right = socket.socketpair()
    with left, right:
        assert sockets.peer_credentials(left) == Credentials(os.getpid(), os.getuid(), os.getgid())


def test_sockets_are_close_on_exec(names: Names, cleanup: Callable[..., None]) -> None:
    listener = _listen(names.path("cloexec"), cleanup)
    with sockets.unix_connect(listener.path, timeout=30) as client:
        for sock in (listener, client, _accept(listener, cleanup)):
            assert fcntl.fcntl(sock.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC


# --- explicit credentials, abstract defaults, groups, symlinks, failed creation ----------

C_CREDENTIALS_RECEIVER = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Bind a datagram socket at argv[1] with SO_PASSCRED, say "ready", receive one
 * message and print its text and the credentials attached (TLPI's scm_cred_recv). */
int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    int on = 1;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
        perror("bind");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char data[64];
    union { char buffer[CMSG_SPACE(sizeof(struct ucred))]; struct cmsghdr align; } control;
    struct iovec iov = {data, sizeof data};
    struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                             .msg_controllen = sizeof control.buffer};
    ssize_t n = recvmsg(fd, &message, 0);
    if (n < 0) { perror("recvmsg"); return 1; }
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    if (header == NULL || header->cmsg_type != SCM_CREDENTIALS) { printf("none\n"); return 1; }
    struct ucred credentials;
    memcpy(&credentials, CMSG_DATA(header), sizeof credentials);
    printf("%.*s %d %u %u\n", (int)n, data, (int)credentials.pid, credentials.uid,
           credentials.gid);
    unlink(argv[1]);
    return 0;
}
"""


def test_explicit_credentials_reach_a_c_receiver(names: Names, tmp_path: Path) -> None:
    receiver = compile_c(C_CREDENTIALS_RECEIVER, tmp_path, "cred_receiver")
    path = names.path("cred")
    with subprocess.Popen([str(receiver), path], stdout=subprocess.PIPE, text=True) as peer:
        try:
            assert peer.stdout is not None
            assert peer.stdout.readline() == "ready\n"
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # As root we may claim another existing pid and other ids.
                sockets.send_with_credentials(
                    sock, b"claimed", pid=1, uid=4321, gid=8765, address=path, timeout=30
                )
            output, _ = peer.communicate(timeout=60)
        finally:
            peer.kill()
    assert output == "claimed 1 4321 8765\n"


def _claim_root_as_nobody() -> tuple[str, tuple[bytes, Credentials | None]]:
    _become_nobody()
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with left, right:
        right.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            sockets.send_with_credentials(left, b"x", uid=0, timeout=30)
            refused = "sent"
        except PermissionDeniedError as error:
            refused = f"{type(error).__name__} {error.errno}"
        sockets.send_with_credentials(left, b"mine", timeout=30)  # our own: always allowed
        return refused, sockets.receive_with_credentials(right, 100, timeout=30)


def test_credentials_default_to_our_own_and_others_need_privilege(
    children: Callable[..., Child],
) -> None:
    left, right = socket.socketpair()
    with left, right:
        right.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sockets.send_with_credentials(left, b"hello", timeout=30)
        assert sockets.receive_with_credentials(right, 100, timeout=30) == (
            b"hello",
            Credentials(os.getpid(), os.geteuid(), os.getegid()),
        )
        with pytest.raises(ValueError, match="at least one byte"):
            sockets.send_with_credentials(left, b"", timeout=30)
        with pytest.raises(ValueError, match="uid"):
            sockets.send_with_credentials(left, b"x", uid=2**32, timeout=30)
    child = children(_claim_root_as_nobody)
    refused, (data, credentials) = child.result()
    assert refused == f"PermissionDeniedError {errno.EPERM}"  # uid 0 is not ours to claim
    assert (data, credentials) == (b"mine", Credentials(child.pid, NOBODY, NOBODY))


def _connect_abstract_as_nobody(name: str) -> bytes:
    _become_nobody()
    with sockets.unix_connect(name, timeout=30, abstract=True) as sock:
        return sockets.receive_some(sock, timeout=30)


def test_an_abstract_listener_admits_only_its_own_uid_by_default(
    cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    name = f"{PREFIX}-abstract-own-{time.monotonic_ns()}"
    listener = _listen(name, cleanup, abstract=True)
    assert listener.allowed_uids == {os.geteuid()}  # and says so
    stranger = children(_connect_abstract_as_nobody, name)
    wait_for_queued_connection(listener)
    with pytest.raises(WouldBlock):
        listener.accept(timeout=0)  # the stranger was closed at once, not returned
    assert listener.rejected_peers == 1
    assert stranger.result() == b""  # it saw the connection end
    friend = children(_client_round_trip, name, "stream", True)
    connection = _accept(listener, cleanup)
    request = sockets.receive_message(connection, max_size=100, timeout=30)
    sockets.send_message(connection, request, timeout=30)
    assert friend.result() == f"hello from {friend.pid}".encode()
    # Opening it to everyone is explicit; a datagram one has no connections to check.
    open_listener = _listen(name + "-open", cleanup, abstract=True, allowed_uids=sockets.ANY_UID)
    assert open_listener.allowed_uids is None
    anyone = children(_connect_abstract_as_nobody, name + "-open")
    sockets.send_all(_accept(open_listener, cleanup), b"welcome", timeout=30)
    assert anyone.result() == b"welcome"
    with pytest.raises(ValueError, match="abstract datagram socket takes datagrams from every"):
        sockets.unix_listen(name + "-dgram", kind="datagram", abstract=True)
    datagrams = sockets.unix_listen(
        name + "-dgram", kind="datagram", abstract=True, allowed_uids=sockets.ANY_UID
    )
    datagrams.close()


def test_allowed_gids_admit_a_group(
    shared_dir: str, cleanup: Callable[..., None], children: Callable[..., Child]
) -> None:
    listener = _listen(
        os.path.join(shared_dir, "group"),
        cleanup,
        permissions=0o666,
        allow_world_writable=True,
        allowed_gids=[NOBODY],
    )
    member = children(_connect_and_report, listener.path, True)
    sockets.send_all(_accept(listener, cleanup), b"member", timeout=30)
    assert member.result()[3] == b"member"
    outsider = children(_connect_and_report, listener.path, False)  # root: gid 0
    wait_for_queued_connection(listener)
    with pytest.raises(WouldBlock):
        listener.accept(timeout=0)
    assert outsider.result()[3] == b""


def test_a_socket_file_gets_its_group_and_is_never_world_writable_unasked(
    names: Names, cleanup: Callable[..., None]
) -> None:
    path = names.path("grouped")
    old = os.umask(0)
    try:
        _listen(path, cleanup, permissions=0o660, group=NOBODY)
    finally:
        os.umask(old)
    info = os.stat(path)
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, NOBODY)
    with pytest.raises(ValueError, match="allow_world_writable"):
        sockets.unix_listen(names.path("open"), permissions=0o602)
    with pytest.raises(ValueError, match="no group called"):
        sockets.unix_listen(names.path("nogroup"), group="no-such-group-here")


def test_a_planted_symlink_is_never_followed(
    names: Names, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    os.chmod(target, 0o600)
    path = names.path("planted")
    os.symlink(target, path)
    with pytest.raises(ResourceExistsError, match="already exists"):
        sockets.unix_listen(path, permissions=0o660)
    os.unlink(path)
    # A symlink swapped in just after bind(2), before the mode is set: the
    # file's mode is set through a descriptor that does not follow it.
    real_bind = UnixListener.bind

    def bind_then_swap(sock: UnixListener, address: Any) -> None:
        real_bind(sock, address)
        os.rename(path, path + ".moved")
        os.symlink(target, path)

    monkeypatch.setattr(UnixListener, "bind", bind_then_swap)
    with pytest.raises(ResourceExistsError):
        sockets.unix_listen(path, permissions=0o660)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600  # untouched
    assert os.path.islink(path)  # not ours: left alone
    os.unlink(path)
    os.unlink(path + ".moved")


def test_a_failure_after_bind_removes_the_socket_file(
    names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = names.path("failing")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    for step, error in (("finish", PermissionError(errno.EPERM, "no")), ("finish", None)):
        monkeypatch.setattr(_permissions, step, interrupted if error is None else _raiser(error))
        with pytest.raises(KeyboardInterrupt if error is None else PermissionDeniedError):
            sockets.unix_listen(path)
        assert not os.path.lexists(path)
        monkeypatch.undo()
    monkeypatch.setattr(UnixListener, "listen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sockets.unix_listen(path)
    assert not os.path.lexists(path)
    monkeypatch.undo()
    with sockets.unix_listen(path) as listener:  # and the path is free again
        assert listener.unlink()


def _raiser(error: BaseException) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail
