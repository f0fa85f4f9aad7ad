"""Demo of UNIX domain sockets (descriptor passing, credentials) and TCP on loopback."""

from __future__ import annotations

import os
import socket
import tempfile
import time

from .. import sockets
from ._common import DemoLine, fork_child, reap

FILE_SIZE = 1 << 20
ROUND_TRIPS = 2000
MESSAGE = b"x" * 64


def run_unix_socket() -> DemoLine:
    """A forked child opens a file and passes the open descriptor to the parent."""
    with tempfile.TemporaryDirectory(prefix="unixipc-demo-") as directory:
        path = os.path.join(directory, "server.sock")
        start = time.perf_counter()
        with sockets.unix_listen(path) as listener:

            def child() -> None:
                listener.close()
                with tempfile.TemporaryFile(dir=directory) as file:  # no name left at all
                    file.write(b"u" * FILE_SIZE)
                    file.seek(0)
                    with sockets.unix_connect(path, timeout=30) as sock:
                        sockets.send_fds(sock, b"F", [file], timeout=30)
                        if sockets.receive_message(sock, max_size=16, timeout=30) != b"ok":
                            raise RuntimeError("unix socket demo: no acknowledgement")

            pid = fork_child(child)
            try:
                connection, _ = listener.accept(timeout=30)
                with connection:
                    credentials = sockets.peer_credentials(connection)
                    data, fds = sockets.receive_fds(connection, 16, 1, timeout=30)
                    with open(fds[0], "rb") as passed:
                        content = passed.read()
                    sockets.send_message(connection, b"ok", timeout=30)
            finally:
                reap(pid)
            elapsed = time.perf_counter() - start
    if data != b"F" or content != b"u" * FILE_SIZE or credentials.pid != pid:
        raise RuntimeError("unix socket demo: the descriptor or the credentials are wrong")
    return DemoLine(
        "unix-socket",
        "a forked child's open 1 MiB file crossed a UNIX socket as a descriptor (SCM_RIGHTS) "
        f"and was read through it; SO_PEERCRED named the child (pid {credentials.pid})",
        elapsed,
    )


def run_tcp() -> DemoLine:
    """Ping-pong 64-byte frames with a forked child over TCP on 127.0.0.1."""
    with sockets.tcp_listen("127.0.0.1", 0) as listener:
        port = listener.address[1]

        def echo() -> None:
            listener.close()
            with sockets.tcp_connect("127.0.0.1", port, timeout=30) as sock:
                for _ in range(ROUND_TRIPS):
                    request = sockets.receive_message(sock, max_size=len(MESSAGE), timeout=30)
                    sockets.send_message(sock, request, timeout=30)

        pid = fork_child(echo)
        try:
            connection, _ = listener.accept(timeout=30)
            with connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                start = time.perf_counter()
                for _ in range(ROUND_TRIPS):
                    sockets.send_message(connection, MESSAGE, timeout=30)
                    if sockets.receive_message(connection, max_size=64, timeout=30) != MESSAGE:
                        raise RuntimeError("tcp demo: the echo differs")
                elapsed = time.perf_counter() - start
        finally:
            reap(pid)
    per_trip = elapsed / ROUND_TRIPS * 1e6
    return DemoLine(
        "tcp",
        f"{ROUND_TRIPS} round trips of 64 B frames over 127.0.0.1 with a forked child "
        f"({per_trip:.1f} us each)",
        elapsed,
    )
